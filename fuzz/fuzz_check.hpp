// What every fuzz target shares: a contract check that stops the run with a message libFuzzer keeps
// beside the crashing input, and a guard that turns an escaping exception into a crash.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

namespace mqds::fuzz {

// The decoder broke its contract: say which, and crash so libFuzzer saves the input.
[[noreturn]] inline void contract_broken(std::string_view what, std::string_view detail = {}) {
  std::fprintf(stderr, "contract broken: %.*s\n", static_cast<int>(what.size()), what.data());
  if (!detail.empty())
    std::fprintf(stderr, "  %.*s\n", static_cast<int>(detail.size()), detail.data());
  std::abort();
}

inline void check(bool holds, std::string_view what, std::string_view detail = {}) {
  if (!holds) contract_broken(what, detail);
}

// Runs `body`; an exception that escapes it is a broken contract (decoders return an Error).
template <class Body>
void no_throw(std::string_view what, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    contract_broken(what, e.what());
  } catch (...) {
    contract_broken(what, "a non-standard exception");
  }
}

}  // namespace mqds::fuzz
