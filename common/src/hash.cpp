// The backend-independent half of hashing: the wire form of digests and the one-shot helper. The
// incremental state lives in src/crypto/crypto_<backend>.cpp.
#include "mqds/hash.hpp"

namespace mqds {

namespace {

constexpr char ascii_upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

constexpr int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

bool is_sha256_name(std::string_view name) {
  if (name.size() != hash_algorithm_sha256.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    // ASCII only, independent of the process locale.
    if (ascii_upper(name[i]) != hash_algorithm_sha256[i]) return false;
  }
  return true;
}

std::string Hash::to_hex() const {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string text(size_bytes * 2, '\0');
  for (std::size_t i = 0; i < size_bytes; ++i) {
    text[2 * i] = digits[digest[i] >> 4];
    text[2 * i + 1] = digits[digest[i] & 0x0F];
  }
  return text;
}

std::optional<Hash> Hash::from_hex(std::string_view text) {
  if (text.size() != size_bytes * 2) return std::nullopt;
  Hash hash;
  for (std::size_t i = 0; i < size_bytes; ++i) {
    const int high = hex_value(text[2 * i]);
    const int low = hex_value(text[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    hash.digest[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  return hash;
}

std::uint64_t Hash::prefix_u64() const {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < sizeof value; ++i) value = value << 8 | digest[i];
  return value;
}

Hash sha256(std::span<const std::uint8_t> bytes) {
  Sha256 hasher;
  hasher.update(bytes);
  return hasher.finish();
}

}  // namespace mqds
