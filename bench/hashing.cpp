// SHA-256 throughput of the compiled-in backend over 1 MiB buffers, next to what `openssl speed`
// measures on the same machine in the same run: machines are noisy, so the ratio is the figure
// to compare across runs, not the absolute MB/s.
#include "hashing.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mqds/hash.hpp"

namespace mqds::bench {

namespace {

constexpr std::size_t buffer_bytes = std::size_t{1} << 20;
constexpr double measure_seconds = 2.0;

double backend_mbps() {
  std::vector<std::uint8_t> buffer(buffer_bytes);
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& b : buffer) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::uint8_t>(x);
  }

  Sha256 hasher;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  std::size_t hashed_bytes = 0;
  std::uint8_t sink = 0;  // keeps the digests observable so nothing is optimised away
  double elapsed = 0;
  do {
    hasher.update(buffer);
    sink ^= hasher.finish().digest[0];
    buffer[0] = sink;
    hashed_bytes += buffer_bytes;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  } while (elapsed < measure_seconds);
  return static_cast<double>(hashed_bytes) / elapsed / 1e6;
}

bool openssl_on_path() {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::string_view dirs(path);
  while (true) {
    const std::size_t colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    // An empty PATH entry means the current directory.
    const std::string candidate = std::string(dir.empty() ? "." : dir) + "/openssl";
    if (access(candidate.c_str(), X_OK) == 0) return true;
    if (colon == std::string_view::npos) return false;
    dirs.remove_prefix(colon + 1);
  }
}

// With -mr, `openssl speed` prints one "+F:<index>:sha256:<bytes per second>" line per block size
// instead of a table in 1000s of bytes per second, which is easier to parse reliably.
std::optional<double> openssl_speed_mbps() {
  FILE* pipe = popen("openssl speed -mr -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null", "r");
  if (pipe == nullptr) return std::nullopt;
  std::optional<double> result;
  char line[512];
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    const std::string text(line);
    if (text.rfind("+F:", 0) != 0) continue;
    const std::size_t colon = text.rfind(':');
    char* end = nullptr;
    const double bytes_per_second = std::strtod(text.c_str() + colon + 1, &end);
    if (end != text.c_str() + colon + 1 && bytes_per_second > 0) result = bytes_per_second / 1e6;
  }
  if (pclose(pipe) != 0) return std::nullopt;
  return result;
}

}  // namespace

void run_hashing(Report& report) {
  const double ours = backend_mbps();
  report.add(
      "hashing",
      std::string("SHA-256 of 1 MiB buffers, mqds (") + std::string(crypto_backend_name()) + ")",
      ours, "MB/s");
  if (!openssl_on_path()) {
    report.failed("hashing", "openssl is not on PATH: no baseline (apt-get install openssl)");
    return;
  }
  const std::optional<double> baseline = openssl_speed_mbps();
  if (!baseline) {
    report.failed("hashing", "openssl speed gave no sha256 result");
    return;
  }
  report.add("hashing", "SHA-256 of 1 MiB buffers, openssl speed -evp sha256", *baseline, "MB/s");
  report.target("hashing", ours / *baseline, 0.9);
}

}  // namespace mqds::bench
