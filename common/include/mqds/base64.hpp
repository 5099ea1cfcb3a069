// Standard Base64 (RFC 4648, with padding), the wire form of fragment Data. Provided by the same
// crypto backend as hashing, so the project carries no hand-written codec.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mqds {

std::size_t base64_encoded_size(std::size_t raw_size_bytes);
// Writes exactly base64_encoded_size(bytes.size()) characters to out (no terminator).
void base64_encode_into(std::span<const std::uint8_t> bytes, char* out);
std::string base64_encode(std::span<const std::uint8_t> bytes);

// Strict: only the standard alphabet, length a multiple of 4, padding only at the end and
// canonical. Returns false (and leaves out unspecified) on any deviation.
bool base64_decode(std::string_view text, std::vector<std::uint8_t>& out);

}  // namespace mqds
