#include "common/distributed/processes/shm_endpoint.h"

#include <cassert>

#include "common/distributed/processes/futex.h"

namespace tierflow {

void ShmEndpoint::publish(uint32_t state) {
  // seq_cst store then seq_cst load of child_waiting pairs with the child's
  // seq_cst store of child_waiting then load of state: one of us sees the
  // other, so the child is either awake or woken (see ChildPort::wait).
  box_.state.store(state, std::memory_order_seq_cst);
  if (box_.child_waiting.load(std::memory_order_seq_cst) != 0) futex_wake(&box_.state, 1);
}

void ShmEndpoint::post(const Dispatch& d) {
  assert(box_.state.load(std::memory_order_relaxed) == kIdle);
  box_.kind = static_cast<uint32_t>(d.kind);
  box_.callable = d.callable;
  box_.group_rank = d.group_rank;
  box_.group_size = d.group_size;
  box_.barrier = d.barrier;
  box_.stamp = d.stamp ? 1 : 0;
  size_t n = d.args->encode(box_.payload, kMailboxPayload);
  assert(n != 0 && "payload size is checked at submit");
  box_.request_len = static_cast<uint32_t>(n);
  publish(kPosted);
}

bool ShmEndpoint::poll(TaskResult* out) {
  if (box_.state.load(std::memory_order_acquire) != kDone) return false;
  *out = TaskResult::decode(box_.ok == 1, box_.payload, box_.result_len);
  out->lost = box_.ok == 2;
  out->t_start_ns = box_.t_start_ns;
  out->t_end_ns = box_.t_end_ns;
  box_.state.store(kIdle, std::memory_order_relaxed);
  return true;
}

void ShmEndpoint::stop() { publish(kExit); }

void ShmEndpoint::reset() {
  // The old child is dead and the new one is forked only after this returns
  // (the spawn request is sent afterwards), so a plain store suffices.
  // `child_waiting` is left as the old child left it: a stale 1 costs one
  // futex wake that finds no sleeper, while clearing it under a worker that
  // is in fact still waiting would lose its next wake-up.
  box_.state.store(kIdle, std::memory_order_release);
}

}  // namespace tierflow
