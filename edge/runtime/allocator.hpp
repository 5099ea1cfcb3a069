// How much freed memory glibc keeps instead of handing it back to the kernel.
//
// The programs receive and send fragments of about 1 MiB all along, allocated and freed one after
// the other. With glibc's defaults each of them goes back to the kernel when freed and is faulted
// in, zeroed, again for the next: 400,000 page faults and a third of the time of a 1 GiB get,
// and a tenth of mqds-edge's time while receiving (seen with perf). Blocks up to
// `mmap_threshold_bytes` then come from the heap, and the heap keeps up to `trim_threshold_bytes`
// free. glibc refuses an mmap threshold above 32 MiB on 64-bit (and ignores it silently).
#pragma once

#include <malloc.h>

#include <cstddef>

namespace mqds::runtime {

inline void keep_freed_memory(std::size_t mmap_threshold_bytes, std::size_t trim_threshold_bytes) {
  ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold_bytes));
  ::mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold_bytes));
}

}  // namespace mqds::runtime
