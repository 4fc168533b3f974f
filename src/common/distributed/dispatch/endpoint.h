// Endpoint: how the scheduler talks to one worker, whatever carries the bytes
// (a shared-memory mailbox to a child process today, a network transport for
// remote levels later). The scheduler posts one task at a time to an idle
// endpoint and polls busy ones after each doorbell ring; an endpoint rings
// the scheduler's doorbell when its task finishes.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/distributed/graph/task_args.h"
#include "common/distributed/graph/task_id.h"
#include "common/distributed/graph/task_result.h"

namespace tierflow {

struct Dispatch {
  TaskKind kind = TaskKind::Sub;
  uint32_t callable = 0;
  const TaskArgs* args = nullptr;
  uint32_t group_rank = 0;
  uint32_t group_size = 1;
  uint32_t barrier = 0;
  bool stamp = false;  // the level traces: the worker stamps when it took and answered the request
};

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  // Starts a task; the endpoint must be idle. Never blocks.
  virtual void post(const Dispatch& d) = 0;
  // True once the posted task finished; fills `out` and makes the endpoint idle.
  virtual bool poll(TaskResult* out) = 0;
  // The largest encoded TaskArgs this endpoint can carry (a submit past it
  // is refused before it takes a slot).
  virtual size_t max_payload() const = 0;
  // Asks the worker to leave once idle.
  virtual void stop() = 0;
  // Makes the channel fresh for a replacement worker (the old one is dead).
  virtual void reset() {}
  // Group rendezvous, owned by the endpoint of a group's rank-0 member and
  // named by Dispatch::barrier in every member's post. arm_group(n) readies
  // it for n members before any member is posted; break_group() releases
  // members waiting in it because another member failed, died or returned
  // without reaching it. Endpoints whose workers never meet do nothing.
  virtual void arm_group(uint32_t size) { (void)size; }
  virtual void break_group() {}
};

}  // namespace tierflow
