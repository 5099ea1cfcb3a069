#include "mqds/view.hpp"

#include "mqds/assert.hpp"

#include <algorithm>
#include <string>

namespace mqds {

void DistributionView::put_file(const Hash& hash, FileMetadata metadata) {
  files_[hash] = std::move(metadata);
}

void DistributionView::remove_file(const Hash& hash) {
  files_.erase(hash);
}

void DistributionView::put_fragment(const Hash& hash, std::int64_t size_bytes) {
  MQDS_ASSERT(size_bytes > 0);
  auto [it, inserted] = fragments_.try_emplace(hash, FragmentMetadata{size_bytes});
  if (inserted || it->second.size_bytes == size_bytes) return;
  // A size change for a stored fragment would make every holder's used bytes wrong; the join check
  // never lets two sizes for one hash in, so correcting the cache here is only belt and braces.
  const std::int64_t delta = size_bytes - it->second.size_bytes;
  it->second.size_bytes = size_bytes;
  for (auto& [id, meta] : clients_)
    if (meta.stored_fragments.count(hash)) used_bytes_[id] += delta;
}

void DistributionView::remove_fragment(const Hash& hash) {
  auto it = fragments_.find(hash);
  if (it == fragments_.end()) return;
  for (auto& [id, meta] : clients_)
    if (meta.stored_fragments.erase(hash)) used_bytes_[id] -= it->second.size_bytes;
  fragments_.erase(it);
}

void DistributionView::put_client(const ClientId& id, ClientMetadata metadata) {
  std::int64_t used = 0;
  for (auto it = metadata.stored_fragments.begin(); it != metadata.stored_fragments.end();) {
    auto fragment = fragments_.find(*it);
    if (fragment == fragments_.end()) {
      it = metadata.stored_fragments.erase(it);
    } else {
      used += fragment->second.size_bytes;
      ++it;
    }
  }
  MQDS_ASSERT(used >= 0);
  clients_[id] = std::move(metadata);
  used_bytes_[id] = used;
}

std::optional<std::string> DistributionView::check_invariants() const {
  if (used_bytes_.size() != clients_.size())
    return "the used-bytes cache has " + std::to_string(used_bytes_.size()) + " entries for " +
           std::to_string(clients_.size()) + " clients";
  for (const auto& [hash, fragment] : fragments_)
    if (fragment.size_bytes <= 0) return "fragment " + hash.to_hex() + " has no positive size";
  for (const auto& [id, meta] : clients_) {
    std::int64_t used = 0;
    for (const auto& hash : meta.stored_fragments) {
      const auto fragment = fragments_.find(hash);
      if (fragment == fragments_.end())
        return "client " + id + " stores " + hash.to_hex() + ", which has no metadata";
      used += fragment->second.size_bytes;
    }
    const auto cached = used_bytes_.find(id);
    if (cached == used_bytes_.end() || cached->second != used)
      return "client " + id + " uses " + std::to_string(used) + " bytes, the cache says " +
             (cached == used_bytes_.end() ? std::string("nothing")
                                          : std::to_string(cached->second));
  }
  if (fragment_size_bytes_ > 0)
    for (const auto& [hash, file] : files_)
      if (!expected_fragment_sizes(file, fragment_size_bytes_))
        return "file " + hash.to_hex() + " does not match its size at the fragment size";
  return std::nullopt;
}

void DistributionView::remove_client(const ClientId& id) {
  clients_.erase(id);
  used_bytes_.erase(id);
}

void DistributionView::apply_registered(const ClientRegistered& event) {
  for (const auto& [hash, file] : event.added_files) put_file(hash, file);
  for (const auto& [hash, fragment] : event.added_fragments)
    put_fragment(hash, fragment.size_bytes);
  put_client(event.client_identifier, event.info);
}

void DistributionView::apply_ended(const FragmentDistributionEnded& event) {
  put_fragment(event.hash, event.size_bytes);
  for (const auto& receiver : event.receivers) {
    auto client = clients_.find(receiver);
    if (client == clients_.end()) continue;  // left before Ended: it does not store the fragment
    if (client->second.stored_fragments.insert(event.hash).second)
      used_bytes_.at(receiver) += event.size_bytes;
  }
}

std::int64_t DistributionView::used_bytes(const ClientId& id) const {
  auto it = used_bytes_.find(id);
  return it == used_bytes_.end() ? 0 : it->second;
}

std::optional<std::int64_t> DistributionView::free_bytes(const ClientId& id) const {
  auto it = clients_.find(id);
  if (it == clients_.end() || !it->second.capacity_bytes) return std::nullopt;
  return *it->second.capacity_bytes - used_bytes(id);
}

bool DistributionView::holds(const ClientId& id, const Hash& fragment) const {
  auto it = clients_.find(id);
  return it != clients_.end() && it->second.stored_fragments.count(fragment) != 0;
}

std::size_t DistributionView::holder_count(const Hash& fragment) const {
  std::size_t count = 0;
  for (const auto& [id, meta] : clients_) count += meta.stored_fragments.count(fragment);
  return count;
}

std::vector<ClientId> DistributionView::holders(const Hash& fragment) const {
  std::vector<ClientId> result;
  for (const auto& [id, meta] : clients_)
    if (meta.stored_fragments.count(fragment)) result.push_back(id);
  return result;
}

std::optional<std::vector<std::int64_t>> DistributionView::expected_fragment_sizes(
    const FileMetadata& file, std::int64_t fragment_size_bytes) {
  if (fragment_size_bytes <= 0 || file.size_bytes < 0) return std::nullopt;
  const std::int64_t count = (file.size_bytes + fragment_size_bytes - 1) / fragment_size_bytes;
  if (count != static_cast<std::int64_t>(file.fragment_sequence.size())) return std::nullopt;
  std::vector<std::int64_t> sizes(static_cast<std::size_t>(count), fragment_size_bytes);
  if (count > 0) sizes.back() = file.size_bytes - (count - 1) * fragment_size_bytes;
  return sizes;
}

namespace {

std::string join_names(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) {
    if (!text.empty()) text += ", ";
    text += name;
  }
  return text;
}

// Records the size every fragment of `file` must have; false if that contradicts what is already
// recorded (the same hash at two sizes cannot be the same content).
bool expect_sizes(const FileMetadata& file, std::int64_t fragment_size_bytes,
                  std::map<Hash, std::int64_t>& expected, bool commit) {
  auto sizes = DistributionView::expected_fragment_sizes(file, fragment_size_bytes);
  if (!sizes) return false;
  for (std::size_t i = 0; i < sizes->size(); ++i) {
    auto it = expected.find(file.fragment_sequence[i]);
    if (it != expected.end() && it->second != (*sizes)[i]) return false;
  }
  if (commit)
    for (std::size_t i = 0; i < sizes->size(); ++i)
      expected.emplace(file.fragment_sequence[i], (*sizes)[i]);
  return true;
}

}  // namespace

JoinPlan DistributionView::plan_join(
    const ClientId& id, const ClientJoinRequested& request,
    const std::map<ClientId, std::set<std::string>>& endpoints_claimed,
    const std::set<Hash>& named_for_client) const {
  // One code, the first check that fails in the order fragment size, hash algorithm, endpoint:
  // the specification's ReasonCode is one value of ClientJoinDeniedCode, and the reference
  // implementation cannot read a combination. The Reason names every cause.
  JoinDenial denied{0, {}};
  std::vector<std::string> reasons;
  const auto fail = [&](std::uint32_t code, std::string why) {
    if (denied.reason_code == 0) denied.reason_code = code;
    reasons.push_back(std::move(why));
  };
  if (request.fragment_size_bytes && *request.fragment_size_bytes != fragment_size_bytes_)
    fail(denial::wrong_fragment_size,
         "FragmentSize " + std::to_string(*request.fragment_size_bytes) +
             " differs from the service's " + std::to_string(fragment_size_bytes_));
  if (!is_sha256_name(request.hash_algorithm))
    fail(denial::wrong_hash_algorithm,
         "HashAlgorithm '" + request.hash_algorithm + "' is not the service's SHA256");
  std::vector<std::string> conflicting;
  auto check_endpoints = [&](const ClientId& other, const std::set<std::string>& endpoints) {
    if (other == id) return;
    for (const auto& endpoint : endpoints)
      if (request.endpoints.count(endpoint))
        conflicting.push_back(endpoint + " (used by " + other + ")");
  };
  for (const auto& [other, meta] : clients_) check_endpoints(other, meta.endpoints);
  for (const auto& [other, endpoints] : endpoints_claimed) check_endpoints(other, endpoints);
  if (!conflicting.empty())
    fail(denial::endpoint_conflict, "Endpoints already in use: " + join_names(conflicting));
  if (denied.reason_code != 0) {
    denied.reason = join_names(reasons);
    return denied;
  }

  JoinAcceptance plan;
  // The sizes the service's files prescribe; the service's own files are consistent by induction.
  std::map<Hash, std::int64_t> expected;
  for (const auto& [hash, file] : files_) expect_sizes(file, fragment_size_bytes_, expected, true);

  for (const auto& [hash, file] : request.known_file_infos) {
    auto known = files_.find(hash);
    if (known != files_.end()) {
      if (!(known->second == file)) {
        plan.remove_file_infos.insert(hash);
        plan.add_file_infos.emplace(hash, known->second);
      }
    } else if (expect_sizes(file, fragment_size_bytes_, expected, true)) {
      plan.new_files.emplace(hash, file);
    } else {
      plan.remove_file_infos.insert(hash);
    }
  }
  for (const auto& [hash, file] : files_)
    if (!request.known_file_infos.count(hash)) plan.add_file_infos.emplace(hash, file);

  // A fragment whose size contradicts the files or the view conflicts with the service: the
  // client deletes it. One that no file references (an orphan) is no conflict: the specification
  // has the client keep and announce it, and so it does unless it asked to delete orphans.
  const bool remove_orphans = request.extensions.count(std::string(extension_remove_orphans)) != 0;
  auto keep_or_remove = [&](const Hash& hash, const FragmentMetadata& fragment) {
    auto size = expected.find(hash);
    bool keep = size != expected.end() && size->second == fragment.size_bytes;
    if (size == expected.end() && !remove_orphans) {
      auto known = fragments_.find(hash);
      keep = known == fragments_.end() || known->second.size_bytes == fragment.size_bytes;
    }
    if (!keep) {
      plan.remove_fragment_infos.insert(hash);
      return;
    }
    plan.client.stored_fragments.insert(hash);
    if (!fragments_.count(hash)) plan.new_fragments.emplace(hash, fragment);
  };
  for (const auto& [hash, fragment] : request.stored_fragments) keep_or_remove(hash, fragment);
  for (const auto& [hash, fragment] : request.obtained_fragments) {
    if (request.stored_fragments.count(hash)) continue;
    if (named_for_client.count(hash))
      keep_or_remove(hash, fragment);
    else
      plan.remove_fragment_infos.insert(hash);  // no Ended named this client: not its replica
  }
  for (const auto& [hash, fragment] : fragments_)
    if (!plan.client.stored_fragments.count(hash)) plan.add_fragment_infos.emplace(hash, fragment);

  for (const auto& [other, meta] : clients_)
    if (other != id) plan.clients.emplace(other, meta);
  plan.client.endpoints = request.endpoints;
  plan.client.capacity_bytes = request.capacity_bytes;
  return plan;
}

bool DistributionView::still_consistent(const JoinAcceptance& acceptance) const {
  for (const auto& [hash, file] : acceptance.new_files) {
    auto known = files_.find(hash);
    if (known != files_.end() && !(known->second == file)) return false;
  }
  for (const auto& [hash, fragment] : acceptance.new_fragments) {
    auto known = fragments_.find(hash);
    if (known != fragments_.end() && known->second.size_bytes != fragment.size_bytes) return false;
  }
  return true;
}

}  // namespace mqds
