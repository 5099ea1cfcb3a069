#include "mqds/os.hpp"

#include <sys/random.h>
#include <time.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

namespace mqds::os {

std::int64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

std::uint64_t random_seed() {
  std::uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != static_cast<ssize_t>(sizeof seed)) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    seed ^= static_cast<std::uint64_t>(ts.tv_nsec) * 0x9E3779B97F4A7C15ull ^
            static_cast<std::uint64_t>(ts.tv_sec);
  }
  return seed;
}

std::uint64_t KernelRandom::next_u64() {
  std::uint64_t value = 0;
  auto* bytes = reinterpret_cast<char*>(&value);
  std::size_t got = 0;
  while (got < sizeof value) {
    const ssize_t n = ::getrandom(bytes + got, sizeof value - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw std::runtime_error(std::string("no random bytes from the kernel: ") +
                               std::strerror(errno));
    got += static_cast<std::size_t>(n);
  }
  return value;
}

}  // namespace mqds::os
