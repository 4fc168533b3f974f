// ChildPort: the child's side of its Mailbox. A child process (or, in the C++
// tests, a WorkerThread) loops: wait() for a request, run it, complete().
#pragma once
#include <string>

#include "common/distributed/doorbell.h"
#include "common/distributed/mailbox.h"
#include "common/distributed/task_args.h"
#include "common/distributed/task_id.h"

namespace tierflow {

struct Request {
  TaskKind kind = TaskKind::Sub;
  uint32_t callable = 0;
  uint32_t group_rank = 0;
  uint32_t group_size = 1;
  uint32_t barrier = 0;
  TaskArgs args;
};

class ChildPort {
 public:
  ChildPort(Mailbox& box, Doorbell& bell) : box_(box), bell_(bell) {}
  // Blocks (a bounded spin, then a futex sleep: an idle child uses no CPU)
  // until a request arrives; false when the parent asks the child to exit.
  bool wait(Request* out);
  // Reports the result of the current request and rings the doorbell.
  // `error` (traceback text) is truncated to fit the mailbox, with a marker.
  void complete(bool ok, const std::string& error);

 private:
  Mailbox& box_;
  Doorbell& bell_;
};

}  // namespace tierflow
