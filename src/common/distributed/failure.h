// Failure: why one task did not complete. `kind` is "exception",
// "worker_died" or "dependency_failed"; `cause` names the root failed task of
// a dependency failure (0 otherwise).
#pragma once
#include <string>

#include "common/distributed/task_id.h"

namespace tierflow {

struct Failure {
  TaskId task = kNoTask;
  std::string worker;
  std::string kind;
  std::string message;
  std::string traceback;
  TaskId cause = kNoTask;
};

}  // namespace tierflow
