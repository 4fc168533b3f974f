// ScheduleObserver: what the engine tells those who watch the schedule —
// every task's submit, each dependency edge as it is wired (also to a
// producer that already finished), readiness, each member's start and end
// on a worker, the finish, the consumption, and workers dying and coming back.
//
// Calls come from the thread that makes the transition: a submitting thread
// for submitted/edge, the scheduler for ready/started/member_done/finished
// and the worker events, whichever thread drops the last reference for
// consumed. An observer is called on the hot path: it must be cheap, must not
// block and must not allocate in the common case. The engine's statistics
// are the first observer; a trace recorder is another.
#pragma once
#include <cstdint>

#include "common/distributed/graph/task_id.h"

namespace tierflow {

struct TaskSlot;

class ScheduleObserver {
 public:
  virtual ~ScheduleObserver() = default;
  virtual void submitted(const TaskSlot&) {}
  virtual void edge(TaskId /*producer*/, TaskId /*consumer*/, bool /*carries*/) {}
  virtual void ready(const TaskSlot&) {}
  virtual void started(const TaskSlot&, uint32_t /*worker*/, uint32_t /*member*/) {}
  virtual void member_done(const TaskSlot&, uint32_t /*worker*/, uint32_t /*member*/, int64_t /*busy_ns*/) {}
  virtual void finished(const TaskSlot&, bool /*ok*/) {}
  virtual void consumed(const TaskSlot&) {}
  virtual void worker_died(uint32_t /*worker*/) {}
  virtual void worker_born(uint32_t /*worker*/) {}
};

}  // namespace tierflow
