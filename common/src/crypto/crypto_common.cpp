// The parts of the crypto interface that do not depend on the backend.
#include "base64_rules.hpp"
#include "mqds/base64.hpp"
#include "mqds/hash.hpp"

namespace mqds {

std::string_view crypto_backend_name() {
  return MQDS_CRYPTO_BACKEND;
}

std::size_t base64_encoded_size(std::size_t raw_size_bytes) {
  return base64_rules::encoded_size(raw_size_bytes);
}

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  std::string text(base64_encoded_size(bytes.size()), '\0');
  base64_encode_into(bytes, text.data());
  return text;
}

}  // namespace mqds
