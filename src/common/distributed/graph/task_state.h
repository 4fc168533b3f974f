// TaskState: the life of one task slot.
//
//   pending -> ready -> running -> completed -------------> consumed
//      |         |         |
//      |         |         +------> failed | cancelled ---> consumed
//      +---------+------------------^
//
// A task is consumed only after it finished (completed, failed or
// cancelled) and every reference on it (its own, each consumer's, its
// scope's) was released. All transitions happen in TaskGraph.
#pragma once
#include <cstdint>

namespace tierflow {

enum class TaskState : uint8_t { Pending, Ready, Running, Completed, Failed, Cancelled, Consumed };

inline const char* to_string(TaskState s) {
  switch (s) {
    case TaskState::Pending: return "pending";
    case TaskState::Ready: return "ready";
    case TaskState::Running: return "running";
    case TaskState::Completed: return "completed";
    case TaskState::Failed: return "failed";
    case TaskState::Cancelled: return "cancelled";
    case TaskState::Consumed: return "consumed";
  }
  return "unknown";
}

inline bool finished(TaskState s) { return s >= TaskState::Completed; }

}  // namespace tierflow
