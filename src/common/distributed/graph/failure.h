// Failure: why one task did not complete, as one record from the child that
// saw it to the Python TaskError that reports it.
//
// Kinds:
//   Exception        the task's callable raised (or a native kernel returned non-zero)
//   WorkerDied       the process running it died (signal, exit, crash in native code)
//   Timeout          it ran longer than its timeout; its worker was killed and replaced
//   Cancelled        Task.cancel(), an interrupt or a cancelling close() stopped it,
//                    or it depends on a task that was cancelled
//   DependencyFailed it reads bytes that a failed task should have written
// A dependent failure (`cause` set) carries its root cause's message,
// traceback and pickled exception, so a report never hides where it started.
#pragma once
#include <cstdint>
#include <string>

#include "common/distributed/graph/task_id.h"

namespace tierflow {

enum class FailureKind : uint8_t { Exception = 1, WorkerDied, Timeout, Cancelled, DependencyFailed };

inline const char* to_string(FailureKind k) {
  switch (k) {
    case FailureKind::Exception: return "exception";
    case FailureKind::WorkerDied: return "worker_died";
    case FailureKind::Timeout: return "timeout";
    case FailureKind::Cancelled: return "cancelled";
    case FailureKind::DependencyFailed: return "dependency_failed";
  }
  return "unknown";
}

struct Failure {
  TaskId task = kNoTask;
  std::string name;       // the task's name (its callable's unless given at submit)
  std::string worker;     // where it ran ("chip 1"); empty if it never ran
  FailureKind kind = FailureKind::Exception;
  std::string message;    // one readable line, e.g. "ValueError: bad input"
  std::string traceback;  // the child's traceback text (the root cause's for a dependent)
  std::string exception;  // the pickled exception object, or empty
  TaskId cause = kNoTask;  // the root failure of a dependent failure
  uint32_t attempts = 0;   // times the task was started
};

}  // namespace tierflow
