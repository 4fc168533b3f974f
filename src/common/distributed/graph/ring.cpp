#include "common/distributed/graph/ring.h"

#include <cassert>
#include <stdexcept>

namespace tierflow {

Ring::Ring(uint32_t window) : window_(window) {
  if (window == 0) throw std::invalid_argument("window must be at least 1");
  free_.reserve(window);
  for (uint32_t i = window; i > 0; --i) free_.push_back(i - 1);
}

Ring::Holder& Ring::holder(uint32_t session) {
  while (session >= holders_.size()) holders_.emplace_back(new Holder());
  return *holders_[session];
}

void Ring::set_weight(uint32_t session, uint32_t weight) {
  std::lock_guard<std::mutex> lock(mu_);
  holder(session).weight = weight == 0 ? 1 : weight;
}

uint32_t Ring::share(uint32_t session) const {
  uint64_t total = 0;
  for (const auto& h : holders_)
    if (h->held != 0 || h->waiting != 0) total += h->weight;
  const Holder& me = *holders_[session];
  if (me.held == 0 && me.waiting == 0) total += me.weight;
  uint64_t s = uint64_t(window_) * me.weight / (total == 0 ? 1 : total);
  return static_cast<uint32_t>(s == 0 ? 1 : s);
}

bool Ring::may_take(uint32_t session) const {
  if (free_.empty()) return false;
  if (holders_[session]->held < share(session)) return true;
  // At or above its share: only if no other waiting session is below its own
  // (work-conserving: a free slot never idles while someone may have it).
  for (size_t i = 0; i < holders_.size(); ++i)
    if (i != session && holders_[i]->waiting != 0 && holders_[i]->held < share(static_cast<uint32_t>(i)))
      return false;
  return true;
}

SlotIndex Ring::take(uint32_t session) {
  SlotIndex s = free_.back();
  free_.pop_back();
  ++holders_[session]->held;
  return s;
}

bool Ring::try_acquire(uint32_t session, SlotIndex* out) {
  std::lock_guard<std::mutex> lock(mu_);
  holder(session);
  if (!may_take(session)) return false;
  *out = take(session);
  return true;
}

SlotIndex Ring::acquire(uint32_t session, const std::function<void()>& on_wait, std::chrono::milliseconds slice) {
  std::unique_lock<std::mutex> lock(mu_);
  Holder& me = holder(session);
  auto until = std::chrono::steady_clock::now() + slice;
  while (!may_take(session)) {
    // Pass a wake-up on that this session cannot use (its share changed).
    if (!free_.empty() && waiters_ != 0) wake_one();
    ++me.waiting;
    ++waiters_;
    std::cv_status st = me.freed.wait_until(lock, until);
    --waiters_;
    --me.waiting;
    if (st == std::cv_status::timeout && !may_take(session)) {
      if (on_wait) {
        lock.unlock();
        on_wait();
        lock.lock();
      }
      until = std::chrono::steady_clock::now() + slice;
    }
  }
  SlotIndex s = take(session);
  // More slots may have come free at once: the next waiter is owed one.
  if (!free_.empty() && waiters_ != 0) wake_one();
  return s;
}

void Ring::release(uint32_t session, SlotIndex slot) {
  std::lock_guard<std::mutex> lock(mu_);
  assert(slot < window_ && free_.size() < window_);
  assert(session < holders_.size() && holders_[session]->held > 0);
  free_.push_back(slot);
  --holders_[session]->held;
  if (waiters_ != 0) wake_one();
}

void Ring::wake_one() {
  Holder* pick = nullptr;
  for (size_t i = 0; i < holders_.size(); ++i) {
    Holder& h = *holders_[i];
    if (h.waiting == 0) continue;
    if (h.held < share(static_cast<uint32_t>(i))) {
      pick = &h;
      break;
    }
    if (pick == nullptr) pick = &h;
  }
  if (pick != nullptr) pick->freed.notify_one();
}

uint32_t Ring::in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return window_ - static_cast<uint32_t>(free_.size());
}

uint32_t Ring::held(uint32_t session) const {
  std::lock_guard<std::mutex> lock(mu_);
  return session < holders_.size() ? holders_[session]->held : 0;
}

uint32_t Ring::obtainable(uint32_t session) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (session >= holders_.size()) return window_;
  for (size_t i = 0; i < holders_.size(); ++i)
    if (i != session && (holders_[i]->held != 0 || holders_[i]->waiting != 0)) return share(session);
  return window_;
}

}  // namespace tierflow
