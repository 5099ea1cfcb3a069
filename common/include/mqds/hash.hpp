// SHA-256 digests and the one hashing interface of the project.
//
// The backend is chosen at build time (MQDS_CRYPTO=openssl, the default, or mbedtls): OpenSSL's EVP
// uses the CPU's SHA extensions and was measured 6x faster than mbedTLS 2.28 on the reference
// machine; mbedTLS stays buildable for boards that ship it instead of libcrypto.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mqds {

// The only algorithm of the service. Compared case-insensitively on input (docs/wire-format.md).
inline constexpr std::string_view hash_algorithm_sha256 = "SHA256";
bool is_sha256_name(std::string_view name);

struct Hash {
  static constexpr std::size_t size_bytes = 32;
  std::array<std::uint8_t, size_bytes> digest{};

  // 64 uppercase hexadecimal characters, the wire form.
  std::string to_hex() const;
  // Accepts upper or lower case; nullopt unless exactly 64 hex characters.
  static std::optional<Hash> from_hex(std::string_view text);

  // The first 8 digest bytes, big-endian: uniformly distributed, used by placement.
  std::uint64_t prefix_u64() const;

  friend auto operator<=>(const Hash&, const Hash&) = default;
};

// Incremental SHA-256 over any number of update() calls.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::span<const std::uint8_t> bytes);
  // Returns the digest and resets the state so the object can hash the next input.
  Hash finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

Hash sha256(std::span<const std::uint8_t> bytes);
inline Hash sha256(std::string_view bytes) {
  return sha256(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

// FNV-1a (64 bits) of a text: a cheap, stable, well-spread number for an identifier. Not a
// cryptographic hash; placement (placement.hpp) scores clients with it, so it is part of the
// protocol.
constexpr std::uint64_t fnv1a64(std::string_view text) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

// Name of the backend compiled in ("openssl" or "mbedtls"), for logs and benchmarks.
std::string_view crypto_backend_name();

}  // namespace mqds

template <>
struct std::hash<mqds::Hash> {
  std::size_t operator()(const mqds::Hash& h) const noexcept { return h.prefix_u64(); }
};
