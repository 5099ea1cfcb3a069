// MQDS_ASSERT: a check of what the code itself guarantees (a precondition, a postcondition, an
// invariant), not of what a peer sent. It stays on in release builds: a broken invariant found
// at once, with where it broke, costs far less than a view that silently drifts from the truth.
// Keep what it evaluates cheap; an expensive check belongs in the simulation's checker.
//
// A failure throws AssertionFailure. The adapters catch it at their boundary like any other
// exception (the plugin logs it and refuses the message, the daemon stops and is restarted), so
// a bug never crosses a C callback; tests and the simulation report it with the seed.
#pragma once

#include <stdexcept>

namespace mqds {

class AssertionFailure : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

[[noreturn]] void assertion_failed(const char* condition, const char* file, int line);

}  // namespace mqds

#define MQDS_ASSERT(condition) \
  ((condition) ? static_cast<void>(0) : ::mqds::assertion_failed(#condition, __FILE__, __LINE__))
