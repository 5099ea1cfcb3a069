// The strict Base64 rules shared by both crypto backends, so that a payload accepted by a board
// built with mbedTLS is accepted by a broker built with OpenSSL and vice versa. Neither library
// is strict enough on its own (checked against OpenSSL 3.0 and mbedTLS 2.28): EVP_DecodeBlock
// trims surrounding whitespace, reports padding as zero bytes and takes "Zg=a" or "Z===";
// mbedtls_base64_decode skips line breaks and trailing spaces; both ignore unused bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mqds::base64_rules {

inline constexpr std::size_t encoded_size(std::size_t raw_size_bytes) {
  return raw_size_bytes / 3 * 4 + (raw_size_bytes % 3 == 0 ? 0 : 4);
}

// The 6-bit value of a character of the standard alphabet, or -1.
inline constexpr int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// The decoded size of text if it follows RFC 4648 section 4 to the letter (padding required,
// canonical unused bits per section 3.5), nullopt otherwise.
inline std::optional<std::size_t> validate(std::string_view text) {
  const std::size_t n = text.size();
  if (n % 4 != 0) return std::nullopt;
  if (n == 0) return std::size_t{0};

  std::size_t padding = 0;
  if (text[n - 1] == '=') padding = text[n - 2] == '=' ? 2 : 1;
  for (std::size_t i = 0; i < n - padding; ++i) {
    if (sextet(text[i]) < 0) return std::nullopt;
  }
  // The unused low bits of the last data character must be zero, so that every content has
  // exactly one accepted text and a text can be compared without decoding it.
  const int last = sextet(text[n - padding - 1]);
  if (padding == 2 && (last & 0x0F) != 0) return std::nullopt;
  if (padding == 1 && (last & 0x03) != 0) return std::nullopt;
  return n / 4 * 3 - padding;
}

}  // namespace mqds::base64_rules
