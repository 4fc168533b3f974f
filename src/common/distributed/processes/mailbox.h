// Mailbox: the shared-memory channel between the scheduler and one child.
//
//   parent                              child
//   write request + payload
//   state = POSTED (seq_cst), wake  ->  wait until state != IDLE (futex)
//                                       run the task
//                                       write result into payload
//   poll: state == DONE (acquire)   <-  state = DONE (release), ring doorbell
//   read result, state = IDLE
//   ...
//   state = EXIT, wake              ->  child leaves its loop
//
// Exactly one side writes the request/result fields at a time, and the
// state word's release/acquire hands them over. Control traffic never shares
// a channel with the child's stdout/stderr.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tierflow {

constexpr size_t kMailboxPayload = 64 * 1024;

enum MailboxState : uint32_t { kIdle = 0, kPosted = 1, kDone = 2, kExit = 3 };

struct alignas(64) Mailbox {
  std::atomic<uint32_t> state{kIdle};
  std::atomic<uint32_t> child_waiting{0};  // set while the child sleeps on `state`
  // Request (parent writes while IDLE).
  uint32_t kind = 0;
  uint32_t callable = 0;
  uint32_t group_rank = 0;
  uint32_t group_size = 1;
  uint32_t barrier = 0;
  uint32_t request_len = 0;
  uint32_t stamp = 0;  // 1: stamp t_start_ns / t_end_ns (the level traces)
  // Result (child writes while POSTED).
  uint32_t ok = 1;  // 1 ok, 0 failed, 2 lost (TaskResult::lost)
  uint32_t result_len = 0;
  // When the child took the request and when it answered (CLOCK_MONOTONIC
  // ns), if asked to (`stamp`): a trace shows the time a task ran where it
  // ran; an untraced level pays no clock reads on the round trip.
  int64_t t_start_ns = 0;
  int64_t t_end_ns = 0;
  alignas(64) char payload[kMailboxPayload];
};

}  // namespace tierflow
