#include "tracker_plugin.hpp"

// mosquitto_broker.h must come before mosquitto_plugin.h (header bug #2350).
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "mqds/os.hpp"
#include "mqds/query.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mqds::plugin {

namespace {

constexpr std::int64_t tick_missing_ms = 1'000;

int mosquitto_level(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return MOSQ_LOG_DEBUG;
    case LogLevel::info: return MOSQ_LOG_INFO;
    case LogLevel::notice: return MOSQ_LOG_NOTICE;
    case LogLevel::warning: return MOSQ_LOG_WARNING;
    case LogLevel::error: return MOSQ_LOG_ERR;
  }
  return MOSQ_LOG_INFO;
}

// `bytes` in memory from mosquitto_malloc, with the trailing NUL the broker's payloads have: the
// broker frees a payload it was given (a publish that succeeded, a replaced message payload) with
// its own counting free, so no other memory may be handed to it. nullptr when out of memory; the
// caller then owns nothing.
void* broker_copy(std::string_view bytes) {
  void* copy = mosquitto_malloc(bytes.size() + 1);
  if (!copy) return nullptr;
  if (!bytes.empty()) std::memcpy(copy, bytes.data(), bytes.size());
  static_cast<char*>(copy)[bytes.size()] = '\0';
  return copy;
}

// MOSQ_ERR_* for a machine's verdict on a message; a rewrite replaces its payload, or refuses it
// when the copy cannot be made.
int apply_verdict(const MessageResult& result, mosquitto_evt_message& event) {
  if (result.verdict == Verdict::drop) return MOSQ_ERR_ACL_DENIED;
  if (result.verdict == Verdict::rewrite) {
    void* rewritten = broker_copy(result.rewritten_payload);
    if (!rewritten) return MOSQ_ERR_ACL_DENIED;
    event.payload = rewritten;  // the broker frees the original
    event.payloadlen = static_cast<std::uint32_t>(result.rewritten_payload.size());
  }
  return MOSQ_ERR_SUCCESS;
}

}  // namespace

using os::monotonic_ms;

namespace {

TrackerStore open_store(const Options& options) {
  try {
    return TrackerStore(options.data_dir, options.map_size_bytes);
  } catch (const std::exception& e) {
    throw std::runtime_error(
        "plugin_opt_data_dir " + options.data_dir + ": " + e.what() +
        " (the broker runs as its `user`, mosquitto by default, which must own this directory: "
        "install -d -o mosquitto -g mosquitto " +
        options.data_dir + ")");
  }
}

}  // namespace

TrackerPlugin::TrackerPlugin(Options options)
    : options_(std::move(options)),
      store_(open_store(options_)),
      random_(std::make_unique<SplitMix64>(os::random_seed())),
      fetch_(options_.fetch),
      acl_(options_.ingest, fetch_),
      edges_(options_.edges),
      metrics_(options_.metrics_interval_ms) {
  const auto stored_size = store_.fragment_size_bytes();
  if (stored_size && *stored_size != options_.tracker.fragment_size_bytes)
    throw std::runtime_error(
        "plugin_opt_fragment_size is " + std::to_string(options_.tracker.fragment_size_bytes) +
        " but the data in " + options_.data_dir + " was cut at " + std::to_string(*stored_size) +
        " bytes: set it back, or start with an empty data_dir");
  if (!stored_size) store_.set_fragment_size(options_.tracker.fragment_size_bytes);
  tracker_ = std::make_unique<Tracker>(options_.tracker, store_.load(), *random_);
  receiver_ = std::make_unique<ingest::Receiver>(options_.ingest,
                                                 options_.tracker.fragment_size_bytes, store_);
  last_tick_ms_ = monotonic_ms();
  if (!options_.edges.enabled())
    mosquitto_log_printf(MOSQ_LOG_NOTICE,
                         "mqds: nobody may join as a torrent server; name who may in "
                         "plugin_opt_edge_users");
  else if (edges_.binds_ids())
    mosquitto_log_printf(
        MOSQ_LOG_NOTICE,
        "mqds: a torrent server's client id must be its username, and only that user may connect "
        "with it (plugin_opt_edge_ids username): the broker must check usernames (password_file, "
        "an auth plugin, or certificates with use_identity_as_username)");
  if (!options_.ingest.enabled())
    mosquitto_log_printf(MOSQ_LOG_NOTICE,
                         "mqds: uploads are disabled; allow them with plugin_opt_ingest_users");
  if (!fetch_.enabled())
    mosquitto_log_printf(MOSQ_LOG_NOTICE,
                         "mqds: fetching is disabled; allow it with plugin_opt_fetch_users");
  take(tracker_->start(last_tick_ms_));
  flush();
}

void TrackerPlugin::take(Output output) {
  for (const auto& line : output.logs)
    mosquitto_log_printf(mosquitto_level(line.level), "mqds: %s", line.text.c_str());
  for (auto& effect : output.storage) pending_effects_.push_back(std::move(effect));
  for (auto& p : output.publishes) {
    if (p.staged) {
      // Encoded now, while the content is certainly staged, in the encoding its receiver accepts.
      // A repair's content is not staged: the tracker holds it in its round, and it is encoded
      // from there; the plugin keeps no copy of it but the encoded publish.
      const auto& d = *p.staged;
      PendingPublish pending{std::move(p.topic), {}, p.to.value_or(""), false, nullptr, 0};
      const auto encode = [&](std::span<const std::uint8_t> data) {
        const std::size_t size = staged_delivery_size(d, data.size());
        pending.encoded.reset(mosquitto_malloc(size + 1));
        if (!pending.encoded) return;
        encode_staged_delivery_into(d, data, static_cast<char*>(pending.encoded.get()), size);
        static_cast<char*>(pending.encoded.get())[size] = '\0';
        pending.encoded_size = size;
      };
      bool found = true;
      if (d.content) {
        const std::string& content = *d.content;
        encode(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(content.data()),
                                             content.size()));
      } else {
        found = store_.read_staged(d.hash, encode);
      }
      if (!found) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: fragment %s is not in staging; delivery skipped",
                             d.hash.to_hex().c_str());
        continue;
      }
      if (!pending.encoded) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: out of memory delivering fragment %s",
                             d.hash.to_hex().c_str());
        continue;
      }
      pending_publishes_.push_back(std::move(pending));
    } else {
      pending_publishes_.push_back(
          {std::move(p.topic), std::move(p.payload), p.to.value_or(""), false, nullptr, 0});
    }
  }
  for (auto& request : output.fetch_requests) pending_fetch_requests_.push_back(std::move(request));
}

void TrackerPlugin::flush(bool ticking) {
  // Uploaded fragments are staged, a verified file goes to the tracker, and its "published" answer
  // queues behind the tracker's FileInfoPublished: all of it is committed in the one transaction
  // below, and only then published.
  const auto now = monotonic_ms();
  const ingest::StillNeeded still_needed = [this](const Hash& h) { return tracker_->is_staged(h); };
  ingest::Flushed flushed = receiver_->flush(now, ticking, still_needed);
  take(std::move(flushed.output));
  for (const auto& upload : flushed.verified) {
    IngestResult added =
        tracker_->add_file(now, upload.digest.hash, upload.digest.metadata, upload.staged_sizes);
    take(std::move(added.output));
    take(receiver_->finish(upload, added.error, still_needed));
  }
  receiver_->keep_parts_in_progress(pending_effects_);
  if (!pending_effects_.empty()) {
    try {
      store_.apply(pending_effects_);
    } catch (const std::exception& e) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: storing the tracker's state failed (%s)", e.what());
      restart_from_store("its last changes could not be stored");
      return;
    }
    pending_effects_.clear();
  }
  std::vector<PendingPublish> publishes;
  publishes.swap(pending_publishes_);
  for (auto& p : publishes) {
    // The broker frees the payload on success only.
    if (!p.encoded) {
      p.encoded.reset(broker_copy(p.payload));
      if (!p.encoded) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: out of memory publishing on %s", p.topic.c_str());
        continue;
      }
      p.encoded_size = p.payload.size();
    }
    const int rc = mosquitto_broker_publish(p.to.empty() ? nullptr : p.to.c_str(), p.topic.c_str(),
                                            static_cast<int>(p.encoded_size), p.encoded.get(),
                                            p.retain ? 0 : 2, p.retain, nullptr);
    if (rc == MOSQ_ERR_SUCCESS) {
      (void)p.encoded.release();  // the broker's now
    } else {
      mosquitto_log_printf(MOSQ_LOG_WARNING, "mqds: publishing on %s failed: %s", p.topic.c_str(),
                           mosquitto_strerror(rc));
    }
  }
  // After the events: a repair's requests go to holders the events already speak of. One that
  // cannot be published is not retried here: the tracker's fetch times out and asks the next
  // holder.
  std::vector<fetch::OutgoingRequest> requests;
  requests.swap(pending_fetch_requests_);
  for (const auto& request : requests) (void)publish_fetch_request(request);
}

bool TrackerPlugin::publish_fetch_request(const fetch::OutgoingRequest& request) {
  const auto failed = [&](const char* why) {
    mosquitto_log_printf(MOSQ_LOG_WARNING, "mqds: a repair's fetch request on %s failed: %s",
                         request.topic.c_str(), why);
    return false;
  };
  // MQTT 5 request/response: the edge answers on the Response Topic with the Correlation Data.
  // Both values are the tracker's (a topic of its own and a token of at most
  // fetch::correlation_bytes_max bytes), within the property's 16-bit length.
  if (request.correlation_data.size() > fetch::correlation_bytes_max)
    return failed("its Correlation Data is too long");
  mosquitto_property* properties = nullptr;
  // mosquitto_property_add_* allocate with the broker's own counting allocator, which frees the
  // list after the publish (or with mosquitto_property_free_all here, when it is not taken).
  if (mosquitto_property_add_string(&properties, MQTT_PROP_RESPONSE_TOPIC,
                                    request.response_topic.c_str()) != MOSQ_ERR_SUCCESS ||
      mosquitto_property_add_binary(
          &properties, MQTT_PROP_CORRELATION_DATA, request.correlation_data.data(),
          static_cast<std::uint16_t>(request.correlation_data.size())) != MOSQ_ERR_SUCCESS) {
    mosquitto_property_free_all(&properties);
    return failed("out of memory");
  }
  std::unique_ptr<void, BrokerFree> payload(broker_copy(request.payload));
  if (!payload) {
    mosquitto_property_free_all(&properties);
    return failed("out of memory");
  }
  // To every subscriber of the request topic (the edge subscribes to its own), at QoS 1, not
  // retained: the broker takes the payload and the properties when the call succeeds.
  const int rc = mosquitto_broker_publish(nullptr, request.topic.c_str(),
                                          static_cast<int>(request.payload.size()), payload.get(),
                                          1, false, properties);
  if (rc != MOSQ_ERR_SUCCESS) {
    mosquitto_property_free_all(&properties);
    return failed(mosquitto_strerror(rc));
  }
  (void)payload.release();
  return true;
}

void TrackerPlugin::BrokerFree::operator()(void* memory) const {
  mosquitto_free(memory);
}

void TrackerPlugin::restart_from_store(const char* why) {
  // Nothing of the failed batch was stored, so nothing of it may be published: the tracker is
  // rebuilt from what is durable, and TrackerHello makes every client rejoin against it.
  mosquitto_log_printf(MOSQ_LOG_ERR, "mqds: restarting the tracker from its store: %s", why);
  pending_effects_.clear();
  pending_publishes_.clear();
  pending_fetch_requests_.clear();  // the repairs that asked are gone with the tracker
  tracker_ = std::make_unique<Tracker>(options_.tracker, store_.load(), *random_);
  // Uploads in memory believed parts durable that were not: they resume from the store at `begin`.
  receiver_ = std::make_unique<ingest::Receiver>(options_.ingest,
                                                 options_.tracker.fragment_size_bytes, store_);
  take(tracker_->start(monotonic_ms()));
}

void TrackerPlugin::flush_if_no_tick() {
  const auto now = monotonic_ms();
  if (now - last_tick_ms_ < tick_missing_ms) return;
  if (!warned_no_tick_) {
    warned_no_tick_ = true;
    mosquitto_log_printf(
        MOSQ_LOG_WARNING,
        "mqds: the broker sends no TICK (per_listener_settings true?): timeouts run only when "
        "messages arrive; set per_listener_settings false");
  }
  take(tracker_->on_tick(now));
  flush();
}

int TrackerPlugin::on_acl_check(const mosquitto_evt_acl_check& event) {
  if (!event.topic) return MOSQ_ERR_PLUGIN_DEFER;
  const std::string_view payload(static_cast<const char*>(event.payload),
                                 event.payload ? event.payloadlen : 0);
  AclDecision decision;
  if (event.access == MOSQ_ACL_WRITE) {
    // A PUBLISH, or a will about to be sent; the plugin's own publishes are not checked.
    const char* client_id = mosquitto_client_id(event.client);
    Write write;
    write.client_id = client_id ? client_id : "";
    write.username = mosquitto_client_username(event.client);
    write.protocol_version = mosquitto_client_protocol_version(event.client);
    write.topic = event.topic;
    write.payload = payload;
    write.retain = event.retain;
    decision = acl_.judge_write(monotonic_ms(), write);
    // Counted and logged as they were when only MESSAGE judged them.
    if (decision.tracker_topic)
      take(tracker_->on_message(monotonic_ms(), std::string(write.client_id), write.topic, payload)
               .output);
    if (decision.fetch)
      if (auto line = fetch_.refused(monotonic_ms(), *decision.fetch, write.client_id,
                                     write.username, write.topic))
        mosquitto_log_printf(mosquitto_level(line->level), "mqds: %s", line->text.c_str());
  } else if (event.access == MOSQ_ACL_READ) {
    const char* reader = mosquitto_client_id(event.client);
    decision = acl_.judge_read(monotonic_ms(), reader ? reader : "", event.topic, payload);
  }  // SUBSCRIBE and UNSUBSCRIBE are the broker's ACLs' alone
  if (decision.log)
    mosquitto_log_printf(mosquitto_level(decision.log->level), "mqds: %s",
                         decision.log->text.c_str());
  switch (decision.verdict) {
    case AclVerdict::refuse: return MOSQ_ERR_ACL_DENIED;
    case AclVerdict::allow: return MOSQ_ERR_SUCCESS;
    case AclVerdict::no_opinion:
    case AclVerdict::watch: break;
  }
  return MOSQ_ERR_PLUGIN_DEFER;
}

int TrackerPlugin::on_acl_fallback(const mosquitto_evt_acl_check& event) {
  // $CONTROL is never granted by default (the dynamic-security plugin's rule as well).
  const bool control = event.topic && std::string_view(event.topic).substr(0, 9) == "$CONTROL/";
  if (options_.acl_fallback == AclFallback::allow && !control) return MOSQ_ERR_SUCCESS;
  const auto now = monotonic_ms();
  if (!fallback_logged_ || now - fallback_logged_ms_ >= fallback_log_interval_ms) {
    fallback_logged_ = true;
    fallback_logged_ms_ = now;
    const char* client_id = mosquitto_client_id(event.client);
    mosquitto_log_printf(
        MOSQ_LOG_WARNING,
        "mqds: no ACL decided on access %d to %.160s by client '%.160s', so the broker denies it "
        "(unless an older auth plugin allows it). A broker without acl_file or ACL plugin denies "
        "everything this way: set plugin_opt_acl_fallback allow",
        event.access, event.topic ? event.topic : "", client_id ? client_id : "");
  }
  return MOSQ_ERR_PLUGIN_DEFER;
}

int TrackerPlugin::on_message(mosquitto_evt_message& event) {
  acl_.published();  // a publish, not a will: it is judged here
  if (!event.topic) return MOSQ_ERR_SUCCESS;
  if (ingest::Receiver::handles(event.topic)) return on_ingest(event);
  if (FetchGate::kind(event.topic) != FetchGate::Kind::none) return on_fetch(event);
  if (std::string_view(event.topic).substr(0, query_prefix.size()) == query_prefix)
    return on_query(event);
  const auto type = event_type_for_topic(event.topic);
  if (!type) return MOSQ_ERR_SUCCESS;
  const char* sender = mosquitto_client_id(event.client);
  const std::string_view payload(static_cast<const char*>(event.payload),
                                 event.payload ? event.payloadlen : 0);
  MessageResult result;
  const char* username = mosquitto_client_username(event.client);
  auto refusal =
      is_tracker_issued(*type) ? std::nullopt : edges_.refusal(sender ? sender : "", username);
  if (refusal) {
    if (auto line =
            edges_.refused(monotonic_ms(), sender ? sender : "", username, event.topic, *refusal))
      mosquitto_log_printf(mosquitto_level(line->level), "mqds: %s", line->text.c_str());
    // Answered once per connection: in mosquitto 2.0.11 an answer to one client whose queue is
    // full is never freed (docs/mosquitto-plugin.md), so a client that floods joins and never
    // reads must not be answered each time. It was told why the first time.
    const bool answer = edges_.first_refusal(sender ? sender : "");
    result =
        tracker_->on_unauthorised(sender ? sender : "", event.topic, std::move(*refusal), answer);
  } else {
    result = tracker_->on_message(monotonic_ms(), sender ? sender : "", event.topic, payload);
  }
  take(std::move(result.output));
  // A goodbye whose stamped copy cannot be made is refused: unstamped, it would name nobody.
  const int rc = apply_verdict(result, event);
  flush_if_no_tick();
  return rc;
}

int TrackerPlugin::on_basic_auth(const char* client_id, const char* username) {
  if (!client_id) return MOSQ_ERR_PLUGIN_DEFER;
  const ClientId id(client_id);
  const bool known = tracker_->view().is_registered(id) || tracker_->holdings().count(id) != 0;
  const auto verdict = edges_.judge_connect(monotonic_ms(), id, username, known);
  if (verdict.log)
    mosquitto_log_printf(mosquitto_level(verdict.log->level), "mqds: %s",
                         verdict.log->text.c_str());
  return verdict.refuse ? MOSQ_ERR_AUTH : MOSQ_ERR_PLUGIN_DEFER;
}

int TrackerPlugin::on_ingest(mosquitto_evt_message& event) {
  const char* sender = mosquitto_client_id(event.client);
  const std::string_view payload(static_cast<const char*>(event.payload),
                                 event.payload ? event.payloadlen : 0);
  MessageResult result =
      receiver_->on_message(monotonic_ms(), sender ? sender : "",
                            options_.ingest.permission(mosquitto_client_username(event.client)),
                            event.topic, payload, tracker_->view().files());
  take(std::move(result.output));
  flush_if_no_tick();
  // A chunk's content is for the tracker only (the rewrite empties it), and is never retained.
  if (result.verdict == Verdict::rewrite) event.retain = false;
  return apply_verdict(result, event);
}

namespace {

// A value mosquitto_property_read_string/read_binary copied for us. In 2.0.x those copies come from
// plain calloc (lib/property_mosq.c; seen in Debian's 2.0.11 binary), not from the broker's counted
// allocator, so they go back with free(): mosquitto_free would lower $SYS/broker/heap/current by
// memory it never counted, as mosquitto_broker_publish_copy does the other way round.
struct PropertyCopy {
  void* data = nullptr;
  PropertyCopy() = default;
  PropertyCopy(const PropertyCopy&) = delete;
  PropertyCopy& operator=(const PropertyCopy&) = delete;
  ~PropertyCopy() { std::free(data); }
};

// Reads the request's Response Topic and the length of its Correlation Data into `request`. A
// property that is there but cannot be copied (out of memory) makes the request unreadable
// rather than absent: an absent Correlation Data is allowed, an unread one must not be.
void read_request_properties(const mosquitto_property* properties, FetchRequest& request,
                             PropertyCopy& response_topic, PropertyCopy& correlation) {
  if (!properties) return;
  if (mosquitto_property_read_string(properties, MQTT_PROP_RESPONSE_TOPIC, nullptr, false)) {
    char* value = nullptr;
    const bool read = mosquitto_property_read_string(properties, MQTT_PROP_RESPONSE_TOPIC, &value,
                                                     false) != nullptr;
    response_topic.data = value;
    if (read && value)
      request.response_topic = std::string_view(value);
    else
      request.properties_readable = false;
  }
  if (mosquitto_property_read_binary(properties, MQTT_PROP_CORRELATION_DATA, nullptr, nullptr,
                                     false)) {
    void* value = nullptr;
    std::uint16_t length = 0;
    const bool read = mosquitto_property_read_binary(properties, MQTT_PROP_CORRELATION_DATA, &value,
                                                     &length, false) != nullptr;
    correlation.data = value;
    if (read) {
      request.correlation_bytes = length;
      request.correlation = std::string_view(static_cast<const char*>(value), value ? length : 0);
    } else {
      request.properties_readable = false;
    }
  }
}

// Calls `visit(name, value)` for each of the first `scan_max` User Properties of a message, with
// either null when it could not be copied (out of memory); stops early when `visit` returns false.
// Bounded work whatever a client sends.
template <class Visit>
void visit_user_properties(const mosquitto_property* properties, std::size_t scan_max,
                           Visit visit) {
  const mosquitto_property* at = properties;
  bool skip = false;
  for (std::size_t seen = 0; seen < scan_max; ++seen) {
    at = mosquitto_property_read_string_pair(at, MQTT_PROP_USER_PROPERTY, nullptr, nullptr, skip);
    if (!at) return;
    skip = true;
    PropertyCopy name, value;
    char* name_text = nullptr;
    char* value_text = nullptr;
    mosquitto_property_read_string_pair(at, MQTT_PROP_USER_PROPERTY, &name_text, &value_text,
                                        false);
    name.data = name_text;
    value.data = value_text;
    if (!visit(static_cast<const char*>(name_text), static_cast<const char*>(value_text))) return;
  }
}

// The values of the Receipt User Properties (fetch::property_receipt) of a message, at most
// `count_max` of them and among its first `scan_max` User Properties. One that cannot be copied
// (out of memory) is skipped: its answer stays owed.
std::vector<std::string> read_receipts(const mosquitto_property* properties, std::size_t count_max,
                                       std::size_t scan_max) {
  std::vector<std::string> receipts;
  visit_user_properties(properties, scan_max, [&](const char* name, const char* value) {
    if (name && value && std::string_view(name) == fetch::property_receipt)
      receipts.emplace_back(value);
    return receipts.size() < count_max;
  });
  return receipts;
}

// A response's Correlation Data into `response`; false when it is there but could not be read.
bool read_response_correlation(const mosquitto_property* properties, FetchResponse& response,
                               PropertyCopy& correlation) {
  if (!properties || !mosquitto_property_read_binary(properties, MQTT_PROP_CORRELATION_DATA,
                                                     nullptr, nullptr, false))
    return true;
  void* value = nullptr;
  std::uint16_t length = 0;
  const bool read = mosquitto_property_read_binary(properties, MQTT_PROP_CORRELATION_DATA, &value,
                                                   &length, false) != nullptr;
  correlation.data = value;
  if (!read) return false;
  response.correlation = std::string_view(static_cast<const char*>(value), value ? length : 0);
  return true;
}

}  // namespace

int TrackerPlugin::refuse_fetch(const mosquitto_evt_message& event, FetchRefusal why) {
  const char* client_id = mosquitto_client_id(event.client);
  if (auto line = fetch_.refused(monotonic_ms(), why, client_id ? client_id : "",
                                 mosquitto_client_username(event.client), event.topic))
    mosquitto_log_printf(mosquitto_level(line->level), "mqds: %s", line->text.c_str());
  return MOSQ_ERR_ACL_DENIED;
}

int TrackerPlugin::on_fetch(mosquitto_evt_message& event) {
  const char* client_id = mosquitto_client_id(event.client);
  const std::string_view topic(event.topic);
  const auto refuse = [&](FetchRefusal why) { return refuse_fetch(event, why); };

  switch (FetchGate::kind(topic)) {
    case FetchGate::Kind::none: return MOSQ_ERR_SUCCESS;
    case FetchGate::Kind::other: return refuse(FetchRefusal::not_a_fetch_topic);
    case FetchGate::Kind::request: {
      FetchRequest request;
      request.topic = topic;
      request.client_id = client_id ? client_id : "";
      request.username = mosquitto_client_username(event.client);
      request.protocol_version = mosquitto_client_protocol_version(event.client);
      request.payload_bytes = event.payloadlen;
      request.payload = std::string_view(static_cast<const char*>(event.payload),
                                         event.payload ? event.payloadlen : 0);
      request.retain = event.retain;
      PropertyCopy response_topic, correlation;
      read_request_properties(event.properties, request, response_topic, correlation);
      const auto receipts = read_receipts(event.properties, FetchGate::receipts_per_request_max,
                                          4 * FetchGate::receipts_per_request_max);
      request.receipts.assign(receipts.begin(), receipts.end());
      if (const auto why = fetch_.judge_request(request)) return refuse(*why);
      if (const auto why = fetch_.admit(monotonic_ms(), request)) return refuse(*why);
      return MOSQ_ERR_SUCCESS;  // unchanged, to the edge subscribed to its request topic
    }
    case FetchGate::Kind::response:
      if (FetchGate::is_tracker_response(topic)) return on_tracker_response(event);
      break;
  }

  FetchResponse response;
  response.topic = topic;
  response.responder = client_id ? client_id : "";
  response.payload_bytes = event.payloadlen;
  PropertyCopy correlation;
  if (!read_response_correlation(event.properties, response, correlation))
    return refuse(FetchRefusal::properties_unreadable);
  // An edge's answer has a few User Properties (Status, Size, Offset, Receipt), in any order.
  const auto receipt = read_receipts(event.properties, 1, 16);
  if (!receipt.empty()) response.receipt = receipt.front();
  // Only the edge a request went to answers it, once.
  const auto judged = fetch_.answer(monotonic_ms(), response);
  if (const auto* why = std::get_if<FetchRefusal>(&judged)) return refuse(*why);
  // One copy of at most response_payload_bytes_max bytes: bounded work on the broker's thread.
  void* payload = broker_copy(std::string_view(static_cast<const char*>(event.payload),
                                               event.payload ? event.payloadlen : 0));
  if (!payload) return refuse(FetchRefusal::delivery_failed);
  // The original's properties (Correlation Data, User Properties...) are handed on, not copied:
  // mosquitto_property_copy_all allocates with plain malloc in 2.0.x while the broker frees
  // property values with its counting free, so every copied response would lower
  // $SYS/broker/heap/current by the size of its values until it wraps (measured, see
  // FetchHeapTest). The event gives its list up instead of replacing it (the 2.0.11 leak is of a
  // list replaced by another): the refused original is freed without it, and the broker frees the
  // list once, after the delivery.
  mosquitto_property* properties = event.properties;
  event.properties = nullptr;
  // To the requester alone: published to the response topic's subscribers, where the ACL check
  // lets only the client the topic names read it (AclGate::judge_read), and the original is
  // refused below so that no subscriber of its topic, `#` included, ever sees the edge's copy.
  // Not published to the requester by client id: mosquitto 2.0.11 never frees a message published
  // to one client that the client's queue has no room for (loop.c single_publish leaves it in the
  // message store with no reference, and nothing compacts the store), so a requester that does
  // not read, with max_queued_bytes set, would make the broker keep every response it was sent
  // after it left (measured: 318 responses of 1 MiB, 113 MiB kept). Through the subscribers the
  // broker frees what it drops, so its limits for every client bound what waits for one.
  //
  // At QoS 0: the broker keeps nothing of it once the socket took it and queues nothing for an
  // offline session, so the Receipt a requester echoes proves the bytes left the broker. At QoS 1
  // a client that read but never acknowledged, or a persistent session that went offline, would
  // keep the broker holding answers its budget no longer counts. A lost answer costs the
  // requester its timeout, and it asks another holder.
  const int rc = mosquitto_broker_publish(nullptr, event.topic, static_cast<int>(event.payloadlen),
                                          payload, 0, false, properties);
  if (rc != MOSQ_ERR_SUCCESS) {
    mosquitto_free(payload);
    event.properties = properties;  // still the original's, freed with it
    fetch_.undelivered(std::get<std::string_view>(judged), response);
    return refuse(FetchRefusal::delivery_failed);
  }
  fetch_.delivered(event.payloadlen);
  return MOSQ_ERR_ACL_DENIED;
}

namespace {

// Every User Property of a message as (name, value), at most `count_max`. nullopt when one could
// not be copied (out of memory).
std::optional<fetch::UserProperties> read_user_properties(const mosquitto_property* properties,
                                                          std::size_t count_max) {
  fetch::UserProperties pairs;
  bool copied = true;
  visit_user_properties(properties, count_max, [&](const char* name, const char* value) {
    copied = name && value;
    if (copied) pairs.emplace_back(name, value);
    return copied;
  });
  if (!copied) return std::nullopt;
  return pairs;
}

}  // namespace

int TrackerPlugin::on_tracker_response(mosquitto_evt_message& event) {
  const char* client_id = mosquitto_client_id(event.client);
  const std::string_view topic(event.topic);
  const auto refuse = [&](FetchRefusal why) { return refuse_fetch(event, why); };
  // Only a torrent server the tracker has registered answers its repairs: it asks none other.
  if (!client_id || !tracker_->view().is_registered(ClientId(client_id)))
    return refuse(FetchRefusal::tracker_response_not_from_edge);
  if (event.retain) return refuse(FetchRefusal::bad_response_topic);
  // At most one chunk, and a little for an edge with a slightly different chunk size: the copy
  // below is bounded work on the broker's thread.
  if (event.payloadlen > FetchGate::response_payload_bytes_max)
    return refuse(FetchRefusal::response_too_large);
  fetch::IncomingResponse response;
  response.topic = topic;
  if (event.properties &&
      mosquitto_property_read_binary(event.properties, MQTT_PROP_CORRELATION_DATA, nullptr, nullptr,
                                     false)) {
    PropertyCopy correlation;
    void* value = nullptr;
    std::uint16_t length = 0;
    if (!mosquitto_property_read_binary(event.properties, MQTT_PROP_CORRELATION_DATA, &value,
                                        &length, false))
      return refuse(FetchRefusal::properties_unreadable);
    correlation.data = value;
    if (value) response.correlation_data.assign(static_cast<const char*>(value), length);
  }
  // An edge's answer has a few (Status, Size, Offset or Reason, Receipt); the first of each name
  // counts, so more than this is nothing an edge sends.
  constexpr std::size_t user_properties_max = 16;
  auto properties = read_user_properties(event.properties, user_properties_max);
  if (!properties) return refuse(FetchRefusal::properties_unreadable);
  response.user_properties = std::move(*properties);
  if (event.payload && event.payloadlen)
    response.payload.assign(static_cast<const char*>(event.payload), event.payloadlen);
  // The tracker ignores (and counts) an answer to no repair in progress; it verifies the fragment
  // by its hash before it delivers anything.
  take(tracker_->on_fetch_response(monotonic_ms(), std::move(response)));
  flush_if_no_tick();
  return MOSQ_ERR_ACL_DENIED;  // consumed: no subscriber ever sees it
}

int TrackerPlugin::on_query(mosquitto_evt_message& event) {
  const char* client_id = mosquitto_client_id(event.client);
  const char* username = mosquitto_client_username(event.client);
  // Those who may put files in or get them out may see what is there.
  const bool allowed = options_.fetch.allows(username) || options_.ingest.allows(username);
  const auto refuse = [&](const char* why) {
    if (queries_refused_logged_ < queries_refused_logged_max) {
      ++queries_refused_logged_;
      mosquitto_log_printf(MOSQ_LOG_NOTICE, "mqds: refused a query from '%.160s': %s",
                           client_id ? client_id : "", why);
    }
    return MOSQ_ERR_ACL_DENIED;
  };
  if (std::string_view(event.topic) != query::request_topic)
    return refuse("only the tracker answers under mqds/query/");
  if (!allowed) return refuse("this user is in neither fetch_users nor ingest_users");
  if (!client_id || event.retain) return refuse("a query is not retained");
  FetchRequest read;  // the same two properties a fetch request carries
  PropertyCopy response_topic, correlation;
  read_request_properties(event.properties, read, response_topic, correlation);
  if (!read.response_topic ||
      query::requester_of_response_topic(*read.response_topic) != std::string_view(client_id))
    return refuse("its Response Topic must be mqds/query/response/<its own client id>[/...]");
  if (read.correlation_bytes && *read.correlation_bytes > fetch::correlation_bytes_max)
    return refuse("its Correlation Data is too long");

  const std::string_view payload(static_cast<const char*>(event.payload),
                                 event.payload ? event.payloadlen : 0);
  const auto decoded = query::decode_request(payload);
  std::string answer;
  if (!decoded) {
    query::Answer refused;
    refused.error = decoded.error().to_string();
    answer = query::encode_answer(refused);
  } else {
    // Away edges and repairs as the tracker sees them now, on its own clock.
    const auto facts = query::repair_facts(*tracker_, monotonic_ms());
    answer = query::encode_answer(
        query::answer(tracker_->view(), options_.tracker.replicas, *decoded, &facts));
  }
  void* copy = broker_copy(answer);
  if (!copy) return refuse("out of memory");
  // The request's own properties (its Response Topic and Correlation Data) go with the answer,
  // handed over rather than copied, for the reason on_fetch gives.
  mosquitto_property* properties = event.properties;
  event.properties = nullptr;
  const std::string topic(*read.response_topic);
  if (mosquitto_broker_publish(client_id, topic.c_str(), static_cast<int>(answer.size()), copy, 1,
                               false, properties) != MOSQ_ERR_SUCCESS) {
    mosquitto_free(copy);
    event.properties = properties;
    return refuse("the answer could not be queued");
  }
  return MOSQ_ERR_SUCCESS;
}

void TrackerPlugin::on_disconnect(const char* client_id) {
  if (!client_id) return;  // a socket that never sent CONNECT
  fetch_.forget_requester(client_id);
  edges_.forget(client_id);
  receiver_->on_disconnect(client_id);
  take(tracker_->on_disconnect(monotonic_ms(), client_id));
  flush_if_no_tick();
}

void TrackerPlugin::on_tick() {
  last_tick_ms_ = monotonic_ms();
  acl_.loop_passed();
  if (last_tick_ms_ - fetch_expired_ms_ >= fetch_expiry_interval_ms) {
    fetch_.expire(last_tick_ms_);
    fetch_expired_ms_ = last_tick_ms_;
  }
  take(tracker_->on_tick(last_tick_ms_));
  for (auto& [topic, value] :
       metrics_.due(last_tick_ms_, *tracker_, {fetch_.metrics(), acl_.metrics(), edges_.metrics()}))
    pending_publishes_.push_back({std::move(topic), std::move(value), {}, true, nullptr, 0});
  flush(true);
}

}  // namespace mqds::plugin
