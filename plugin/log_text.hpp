// Client-supplied text in the plugin's log lines: bounded, and never cut inside a UTF-8 character.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mqds::plugin {

// At most `bytes_max` bytes of `text` for a log line, cut at a UTF-8 character boundary.
inline std::string shortened(std::string_view text, std::size_t bytes_max) {
  if (text.size() <= bytes_max) return std::string(text);
  std::size_t end = bytes_max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end)) + "...";
}

}  // namespace mqds::plugin
