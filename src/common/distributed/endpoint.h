// Endpoint: how the scheduler talks to one worker, whatever carries the bytes
// (a shared-memory mailbox to a child process today, a network transport for
// remote levels later). The scheduler posts one task at a time to an idle
// endpoint and polls busy ones after each doorbell ring; an endpoint rings
// the scheduler's doorbell when its task finishes.
#pragma once
#include <cstdint>

#include "common/distributed/task_args.h"
#include "common/distributed/task_id.h"
#include "common/distributed/task_result.h"

namespace tierflow {

struct Dispatch {
  TaskKind kind = TaskKind::Sub;
  uint32_t callable = 0;
  const TaskArgs* args = nullptr;
  uint32_t group_rank = 0;
  uint32_t group_size = 1;
  uint32_t barrier = 0;
};

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  // Starts a task; the endpoint must be idle. Never blocks.
  virtual void post(const Dispatch& d) = 0;
  // True once the posted task finished; fills `out` and makes the endpoint idle.
  virtual bool poll(TaskResult* out) = 0;
  // Asks the worker to leave once idle.
  virtual void stop() = 0;
  // Makes the channel fresh for a replacement worker (the old one is dead).
  virtual void reset() {}
};

}  // namespace tierflow
