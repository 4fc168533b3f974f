#include "common/distributed/processes/child_port.h"

#include <chrono>

#include "common/distributed/processes/futex.h"

namespace tierflow {

namespace {
// steady_clock is CLOCK_MONOTONIC on Linux: one clock for every process of
// the host, so a parent compares the stamps of all its children.
int64_t monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

bool ChildPort::wait(Request* out) {
  uint32_t s = box_.state.load(std::memory_order_acquire);
  spin_.spin([&] {
    s = box_.state.load(std::memory_order_acquire);
    return s == kPosted || s == kExit;
  });
  while (s != kPosted && s != kExit) {
    box_.child_waiting.store(1, std::memory_order_seq_cst);
    s = box_.state.load(std::memory_order_seq_cst);
    if (s != kPosted && s != kExit) futex_wait(&box_.state, s);
    box_.child_waiting.store(0, std::memory_order_relaxed);
    s = box_.state.load(std::memory_order_acquire);
  }
  if (s == kExit) return false;
  out->kind = static_cast<TaskKind>(box_.kind);
  out->callable = box_.callable;
  out->group_rank = box_.group_rank;
  out->group_size = box_.group_size;
  out->barrier = box_.barrier;
  out->args = TaskArgs::decode(box_.payload, box_.request_len);
  stamp_ = box_.stamp != 0;
  box_.t_start_ns = stamp_ ? monotonic_ns() : 0;
  group_size_ = out->group_size;
  barrier_ = out->barrier;
  return true;
}

void ChildPort::complete(const TaskResult& result) {
  if (group_size_ > 1 && barriers_ != nullptr) barriers_[barrier_].break_it();
  size_t n = result.encode(box_.payload, kMailboxPayload);
  box_.ok = result.ok ? 1 : result.lost ? 2 : 0;
  box_.t_end_ns = stamp_ ? monotonic_ns() : 0;
  box_.result_len = static_cast<uint32_t>(n);
  // POSTED -> DONE; an EXIT posted meanwhile (shutdown) is left in place so
  // the next wait() sees it.
  uint32_t expected = kPosted;
  box_.state.compare_exchange_strong(expected, kDone, std::memory_order_release, std::memory_order_relaxed);
  bell_.ring();
}

}  // namespace tierflow
