// Ring: the `window` task slots of a level, shared by its sessions, with
// back-pressure.
//
// Slots are released in any order. A slot index is handed out again only
// after release(), which the engine calls once the task is consumed, so a
// slot never holds two live tasks.
//
// Sharing: a session's share is window * weight / (total weight of the
// sessions holding or waiting for slots). A session below its share may take
// any free slot; one at or above it only when no waiting session is below
// its own. So a session with a deep backlog fills the window when alone, yet
// cannot keep a newcomer waiting: freed slots go to sessions below their
// share first, and none idles while someone may have it.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/distributed/graph/task_id.h"

namespace tierflow {

class Ring {
 public:
  explicit Ring(uint32_t window);

  uint32_t window() const { return window_; }
  // Sessions are numbered by the engine; weight >= 1.
  void set_weight(uint32_t session, uint32_t weight);
  // Takes a free slot for `session`, or returns false if none may be taken now.
  bool try_acquire(uint32_t session, SlotIndex* out);
  // Blocks until a slot may be taken. Every `slice` of waiting it calls
  // `on_wait()`, which may throw to abandon the wait (signals, deadlock
  // detection); the ring is unchanged then.
  SlotIndex acquire(uint32_t session, const std::function<void()>& on_wait,
                    std::chrono::milliseconds slice = std::chrono::milliseconds(100));
  void release(uint32_t session, SlotIndex slot);
  uint32_t in_use() const;
  uint32_t held(uint32_t session) const;
  // The most slots `session` can count on: the whole window while no other
  // session holds or waits for slots, else its share.
  uint32_t obtainable(uint32_t session) const;

 private:
  struct Holder {
    uint32_t weight = 1;
    uint32_t held = 0;
    uint32_t waiting = 0;
    std::condition_variable freed;  // its threads wait for a slot on it
  };
  Holder& holder(uint32_t session);
  bool may_take(uint32_t session) const;  // mu_ held
  uint32_t share(uint32_t session) const;  // mu_ held
  SlotIndex take(uint32_t session);        // mu_ held, a slot is free
  // A freed slot wakes one thread of the session the share rule favours:
  // waking every waiter for one slot would make them fight over it.
  void wake_one();                         // mu_ held

  const uint32_t window_;
  mutable std::mutex mu_;
  std::vector<SlotIndex> free_;                  // LIFO: a recently used slot is warm in cache
  std::vector<std::unique_ptr<Holder>> holders_;  // by session
  uint32_t waiters_ = 0;
};

}  // namespace tierflow
