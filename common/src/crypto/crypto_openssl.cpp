// Hashing and Base64 through OpenSSL's libcrypto, the default backend: EVP picks the CPU's SHA
// extensions, and libmosquitto already links libcrypto, so this adds no dependency.
#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "base64_rules.hpp"
#include "mqds/base64.hpp"
#include "mqds/hash.hpp"

namespace mqds {

namespace {

[[noreturn]] void throw_openssl_error(const char* what) {
  std::string message = std::string("OpenSSL: ") + what + " failed";
  // Drain the whole queue so a later, unrelated call does not report this failure.
  bool first = true;
  while (const unsigned long code = ERR_get_error()) {
    if (first) {
      char text[256];
      ERR_error_string_n(code, text, sizeof text);
      message += ": ";
      message += text;
      first = false;
    }
  }
  throw std::runtime_error(message);
}

// EVP_EncodeBlock and EVP_DecodeBlock take int lengths: larger inputs go through in chunks that
// are whole Base64 groups, so only the last chunk can carry padding.
constexpr std::size_t groups_per_chunk = std::size_t{1} << 28;
constexpr std::size_t encode_chunk_bytes = groups_per_chunk * 3;
constexpr std::size_t decode_chunk_chars = groups_per_chunk * 4;

}  // namespace

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;

  State() {
    ctx = EVP_MD_CTX_new();
    if (ctx == nullptr) throw_openssl_error("EVP_MD_CTX_new");
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
      EVP_MD_CTX_free(ctx);
      throw_openssl_error("EVP_DigestInit_ex");
    }
  }
  ~State() { EVP_MD_CTX_free(ctx); }
  State(const State&) = delete;
  State& operator=(const State&) = delete;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return;
  if (EVP_DigestUpdate(state_->ctx, bytes.data(), bytes.size()) != 1) {
    throw_openssl_error("EVP_DigestUpdate");
  }
}

Hash Sha256::finish() {
  Hash hash;
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(state_->ctx, hash.digest.data(), &length) != 1) {
    throw_openssl_error("EVP_DigestFinal_ex");
  }
  if (length != Hash::size_bytes)
    throw std::runtime_error("OpenSSL: SHA-256 digest of unexpected length");
  // Re-initialising with the same digest reuses the context's provider state: no new allocation.
  if (EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1) {
    throw_openssl_error("EVP_DigestInit_ex");
  }
  return hash;
}

void base64_encode_into(std::span<const std::uint8_t> bytes, char* out) {
  if (bytes.empty()) return;
  // EVP_EncodeBlock appends a NUL that out has no room for: encode everything up to the last
  // group in place (its NUL lands where the next group goes), and the last group via a buffer.
  const std::size_t tail_bytes = bytes.size() % 3 == 0 ? 3 : bytes.size() % 3;
  std::span<const std::uint8_t> head = bytes.first(bytes.size() - tail_bytes);
  auto* dst = reinterpret_cast<unsigned char*>(out);
  while (!head.empty()) {
    const std::size_t chunk = std::min(head.size(), encode_chunk_bytes);
    const int written = EVP_EncodeBlock(dst, head.data(), static_cast<int>(chunk));
    dst += written;
    head = head.subspan(chunk);
  }
  unsigned char last[5];
  EVP_EncodeBlock(last, bytes.data() + (bytes.size() - tail_bytes), static_cast<int>(tail_bytes));
  std::copy_n(last, 4, dst);
}

bool base64_decode(std::string_view text, std::vector<std::uint8_t>& out) {
  const std::optional<std::size_t> decoded_size = base64_rules::validate(text);
  if (!decoded_size) return false;
  // EVP_DecodeBlock writes 3 bytes per group, padding included, so size for whole groups first.
  out.resize(text.size() / 4 * 3);
  std::size_t written = 0;
  while (!text.empty()) {
    const std::size_t chunk = std::min(text.size(), decode_chunk_chars);
    const int result =
        EVP_DecodeBlock(out.data() + written, reinterpret_cast<const unsigned char*>(text.data()),
                        static_cast<int>(chunk));
    if (result < 0) return false;
    written += static_cast<std::size_t>(result);
    text.remove_prefix(chunk);
  }
  out.resize(*decoded_size);
  return true;
}

}  // namespace mqds
