// The mailbox round trip stamps times only when asked: a traced level gets
// the times its worker took and answered a request (ordered, on the host's
// monotonic clock); an untraced one pays no clock reads and reports zeros.
#include <gtest/gtest.h>

#include <thread>

#include "common/distributed/processes/child_port.h"
#include "common/distributed/processes/doorbell.h"
#include "common/distributed/processes/mailbox.h"
#include "common/distributed/processes/shm_endpoint.h"

using namespace tierflow;

namespace {
TaskResult round_trip(bool stamp) {
  Mailbox box;
  Doorbell bell;
  ShmEndpoint ep(box);
  ChildPort port(box, bell);
  TaskArgs args;
  Dispatch d;
  d.args = &args;
  d.stamp = stamp;
  std::thread child([&] {
    Request req;
    EXPECT_TRUE(port.wait(&req));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    port.complete(TaskResult{});
  });
  ep.post(d);
  TaskResult r;
  while (!ep.poll(&r)) std::this_thread::yield();
  child.join();
  return r;
}
}  // namespace

TEST(MailboxStamps, ATracedRequestCarriesTheWorkersOwnTimes) {
  TaskResult r = round_trip(true);
  EXPECT_GT(r.t_start_ns, 0);
  EXPECT_GE(r.t_end_ns - r.t_start_ns, 2000000) << "the 2 ms the worker spent";
}

TEST(MailboxStamps, AnUntracedRequestIsNotStamped) {
  TaskResult r = round_trip(false);
  EXPECT_EQ(r.t_start_ns, 0);
  EXPECT_EQ(r.t_end_ns, 0);
}
