// Hashing and Base64 through mbedTLS 2.28, for boards that ship it instead of libcrypto. Its
// SHA-256 is plain software (6x slower than OpenSSL's on the reference machine), hence not the
// default; it behaves identically, which the same unit tests check on both builds.
#include <mbedtls/base64.h>
#include <mbedtls/sha256.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "base64_rules.hpp"
#include "mqds/base64.hpp"
#include "mqds/hash.hpp"

namespace mqds {

namespace {

void check_mbedtls(int result, const char* what) {
  if (result != 0) {
    throw std::runtime_error(std::string("mbedTLS: ") + what + " failed with " +
                             std::to_string(result));
  }
}

}  // namespace

struct Sha256::State {
  mbedtls_sha256_context ctx;

  State() {
    mbedtls_sha256_init(&ctx);
    const int result = mbedtls_sha256_starts_ret(&ctx, /*is224=*/0);
    if (result != 0) {
      mbedtls_sha256_free(&ctx);
      check_mbedtls(result, "mbedtls_sha256_starts_ret");
    }
  }
  ~State() { mbedtls_sha256_free(&ctx); }
  State(const State&) = delete;
  State& operator=(const State&) = delete;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return;
  check_mbedtls(mbedtls_sha256_update_ret(&state_->ctx, bytes.data(), bytes.size()),
                "mbedtls_sha256_update_ret");
}

Hash Sha256::finish() {
  Hash hash;
  check_mbedtls(mbedtls_sha256_finish_ret(&state_->ctx, hash.digest.data()),
                "mbedtls_sha256_finish_ret");
  check_mbedtls(mbedtls_sha256_starts_ret(&state_->ctx, /*is224=*/0), "mbedtls_sha256_starts_ret");
  return hash;
}

void base64_encode_into(std::span<const std::uint8_t> bytes, char* out) {
  if (bytes.empty()) return;
  // mbedtls_base64_encode appends a NUL that out has no room for: encode everything up to the
  // last group in place (its NUL lands where the last group goes), and the last group via a buffer.
  const std::size_t tail_bytes = bytes.size() % 3 == 0 ? 3 : bytes.size() % 3;
  const std::size_t head_bytes = bytes.size() - tail_bytes;
  auto* dst = reinterpret_cast<unsigned char*>(out);
  std::size_t written = 0;
  if (head_bytes > 0) {
    check_mbedtls(mbedtls_base64_encode(dst, base64_rules::encoded_size(head_bytes) + 1, &written,
                                        bytes.data(), head_bytes),
                  "mbedtls_base64_encode");
  }
  unsigned char last[5];
  std::size_t last_written = 0;
  check_mbedtls(mbedtls_base64_encode(last, sizeof last, &last_written, bytes.data() + head_bytes,
                                      tail_bytes),
                "mbedtls_base64_encode");
  std::copy_n(last, 4, dst + written);
}

bool base64_decode(std::string_view text, std::vector<std::uint8_t>& out) {
  // mbedTLS skips line breaks and ignores unused bits on its own, so the shared rules decide first.
  const std::optional<std::size_t> decoded_size = base64_rules::validate(text);
  if (!decoded_size) return false;
  out.resize(*decoded_size);
  if (text.empty()) return true;
  std::size_t written = 0;
  const int result =
      mbedtls_base64_decode(out.data(), out.size(), &written,
                            reinterpret_cast<const unsigned char*>(text.data()), text.size());
  return result == 0 && written == *decoded_size;
}

}  // namespace mqds
