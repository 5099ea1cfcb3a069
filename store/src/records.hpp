// How the stores lay out hashes, numbers and file records as LMDB bytes (both stores share it).
// A record that does not parse is corruption: it throws, and the adapter refuses to start on it.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include "mqds/events.hpp"

namespace mqds::records {

inline std::string_view key_of(const Hash& hash) {
  return {reinterpret_cast<const char*>(hash.digest.data()), Hash::size_bytes};
}

inline Hash hash_of(std::string_view bytes) {
  if (bytes.size() != Hash::size_bytes)
    throw std::runtime_error("store: a hash key has " + std::to_string(bytes.size()) + " bytes");
  Hash hash;
  std::memcpy(hash.digest.data(), bytes.data(), Hash::size_bytes);
  return hash;
}

inline std::string u64_bytes(std::uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<char>(value >> (8 * i));
  return bytes;
}

inline std::uint64_t u64_of(std::string_view bytes) {
  if (bytes.size() < 8)
    throw std::runtime_error("store: a number has " + std::to_string(bytes.size()) + " bytes");
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i)
    value |= std::uint64_t{static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)])}
             << (8 * i);
  return value;
}

inline std::string file_bytes(const FileMetadata& file) {
  std::string bytes = u64_bytes(static_cast<std::uint64_t>(file.size_bytes));
  for (const auto& hash : file.fragment_sequence) bytes += key_of(hash);
  return bytes;
}

inline FileMetadata file_of(std::string_view bytes) {
  if (bytes.size() < 8 || (bytes.size() - 8) % Hash::size_bytes != 0)
    throw std::runtime_error("store: a file record is malformed");
  FileMetadata file{static_cast<std::int64_t>(u64_of(bytes)), {}};
  for (std::size_t at = 8; at < bytes.size(); at += Hash::size_bytes)
    file.fragment_sequence.push_back(hash_of(bytes.substr(at, Hash::size_bytes)));
  return file;
}

}  // namespace mqds::records
