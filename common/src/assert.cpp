#include "mqds/assert.hpp"

#include <string>

namespace mqds {

void assertion_failed(const char* condition, const char* file, int line) {
  throw AssertionFailure(std::string("assertion failed: ") + condition + " (" + file + ":" +
                         std::to_string(line) + ")");
}

}  // namespace mqds
