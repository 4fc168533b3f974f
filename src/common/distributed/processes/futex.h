// Futex: process-shared wait/wake on a 32-bit word. The words live in
// MAP_SHARED memory used by several processes, so the non-private operations
// are used on purpose.
#pragma once
#include <atomic>
#include <cstdint>

namespace tierflow {

// Blocks while *word == expected, for at most timeout_ns (< 0: no limit).
// Returns false on timeout. Spurious returns are allowed; callers re-check.
bool futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns = -1);
void futex_wake(std::atomic<uint32_t>* word, int count);
void futex_wake_all(std::atomic<uint32_t>* word);

}  // namespace tierflow
