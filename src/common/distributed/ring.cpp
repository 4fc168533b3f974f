#include "common/distributed/ring.h"

#include <cassert>
#include <stdexcept>

namespace tierflow {

Ring::Ring(uint32_t window) : window_(window) {
  if (window == 0) throw std::invalid_argument("window must be at least 1");
  free_.reserve(window);
  for (uint32_t i = window; i > 0; --i) free_.push_back(i - 1);
}

bool Ring::try_acquire(SlotIndex* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty()) return false;
  *out = free_.back();
  free_.pop_back();
  return true;
}

SlotIndex Ring::acquire(const std::function<void()>& on_wait, std::chrono::milliseconds slice) {
  std::unique_lock<std::mutex> lock(mu_);
  while (free_.empty()) {
    ++waiters_;
    bool got = freed_.wait_for(lock, slice, [&] { return !free_.empty(); });
    --waiters_;
    if (got) break;
    if (on_wait) {
      lock.unlock();
      on_wait();
      lock.lock();
    }
  }
  SlotIndex s = free_.back();
  free_.pop_back();
  return s;
}

void Ring::release(SlotIndex slot) {
  std::lock_guard<std::mutex> lock(mu_);
  assert(slot < window_ && free_.size() < window_);
  free_.push_back(slot);
  if (waiters_ != 0) freed_.notify_one();
}

uint32_t Ring::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return window_ - static_cast<uint32_t>(free_.size());
}

}  // namespace tierflow
