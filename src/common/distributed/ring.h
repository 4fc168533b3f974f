// Ring: a free-list allocator of `window` task slots with back-pressure.
//
// Slots are released in any order. A slot index is handed out again only
// after release(), which the engine calls once the task is consumed, so a
// slot never holds two live tasks.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "common/distributed/task_id.h"

namespace tierflow {

class Ring {
 public:
  explicit Ring(uint32_t window);

  uint32_t window() const { return window_; }
  // Takes a free slot, or returns false if none is free.
  bool try_acquire(SlotIndex* out);
  // Blocks until a slot is free. Every `slice` of waiting it calls
  // `on_wait()`, which may throw to abandon the wait (signals, deadlock
  // detection); the ring is unchanged then.
  SlotIndex acquire(const std::function<void()>& on_wait,
                    std::chrono::milliseconds slice = std::chrono::milliseconds(100));
  void release(SlotIndex slot);
  uint32_t in_use() const;

 private:
  const uint32_t window_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::vector<SlotIndex> free_;  // LIFO: a recently used slot is warm in cache
  uint32_t waiters_ = 0;
};

}  // namespace tierflow
