// EventId: a GUID, written lowercase 8-4-4-4-12 and accepted in any case (docs/wire-format.md).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace mqds {

struct Uuid {
  std::array<std::uint8_t, 16> bytes{};

  std::string to_string() const;
  static std::optional<Uuid> parse(std::string_view text);
  // A version-4 (random) UUID from 128 bits of randomness; the caller supplies the randomness so
  // the protocol core stays deterministic.
  static Uuid v4_from(std::uint64_t high, std::uint64_t low);

  friend auto operator<=>(const Uuid&, const Uuid&) = default;
};

}  // namespace mqds

template <>
struct std::hash<mqds::Uuid> {
  std::size_t operator()(const mqds::Uuid& u) const noexcept {
    std::size_t h = 0;
    for (auto b : u.bytes) h = h * 131 + b;
    return h;
  }
};
