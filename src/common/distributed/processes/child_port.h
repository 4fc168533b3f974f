// ChildPort: the child's side of its Mailbox. A child process (or, in the C++
// tests, a WorkerThread) loops: wait() for a request, run it, complete().
#pragma once

#include "common/distributed/adaptive_spin.h"
#include "common/distributed/processes/doorbell.h"
#include "common/distributed/processes/group_barrier.h"
#include "common/distributed/processes/mailbox.h"
#include "common/distributed/graph/task_args.h"
#include "common/distributed/graph/task_id.h"
#include "common/distributed/graph/task_result.h"

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
  // `barriers`: the group barriers of this level (indexed by Request::barrier),
  // or null when no group task can reach this worker.
  ChildPort(Mailbox& box, Doorbell& bell, GroupBarrier* barriers = nullptr)
      : box_(box), bell_(bell), barriers_(barriers) {}
  // Blocks (an adaptive spin, then a futex sleep: an idle child uses no CPU)
  // until a request arrives; false when the parent asks the child to exit.
  bool wait(Request* out);
  // Reports the result of the current request and rings the doorbell. A
  // failure record is shortened to fit the mailbox (see TaskResult). A group
  // member leaving breaks its barrier first: no later round can complete
  // without it, and the break must land before DONE lets the scheduler re-arm
  // the barrier for another group.
  void complete(const TaskResult& result);

 private:
  Mailbox& box_;
  Doorbell& bell_;
  GroupBarrier* barriers_;
  uint32_t group_size_ = 1, barrier_ = 0;  // of the request being served
  bool stamp_ = false;                     // its times are wanted (Mailbox::stamp)
  // Up to ~60 us: long enough for a chip inside a level-4 chain, whose next
  // request comes a level-4 round trip after its last answer; a fan-out's
  // worker whose requests queue behind other processes learns to stop.
  AdaptiveSpin spin_{kChildSpins};
};

}  // namespace tierflow
