// answer_when_drained: a next-level worker's request is answered by the
// thread whose finish drains the request's work — with the value, after the
// loan ended — and only when none of that work failed; the serving thread
// learns which, whether the work finishes before it arms, while it spins or
// while it sleeps. Repeated at several finisher counts (TSan checks the
// hand-over between the finishers, the answer and the waiting thread).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "common/distributed/processes/child_port.h"
#include "common/distributed/processes/doorbell.h"
#include "common/distributed/processes/drain_reply.h"
#include "common/distributed/processes/mailbox.h"
#include "common/distributed/processes/shm_endpoint.h"
#include "common/rigs.h"

using namespace tierflow;
using namespace tierflow::test;

namespace {

// One request posted and taken: the child side is ready to answer it.
struct Served {
  Mailbox box;
  Doorbell bell;
  ShmEndpoint ep{box};
  ChildPort port{box, bell};
  TaskArgs args;
  Served() {
    Dispatch d;
    d.args = &args;
    ep.post(d);
    Request req;
    EXPECT_TRUE(port.wait(&req));
  }
  bool answered(TaskResult* r) { return ep.poll(r); }
};

std::vector<std::pair<SlotIndex, TaskId>> submit_n(GraphRig& r, int n) {
  std::vector<std::pair<SlotIndex, TaskId>> out;
  for (int i = 0; i < n; ++i) {
    SubmitRequest req;
    req.members.push_back(byte_args({{uint64_t(i) * 8, uint64_t(i) * 8 + 8, AccessTag::Output}}));
    out.push_back(r.orch().submit(std::move(req)));
  }
  return out;
}

// A loan of one view, so the test can see it end.
void lend_one(LentMemory& lent, std::vector<char>& bytes) {
  lent.set_ancestors({{bytes.data(), bytes.size()}});
  LentView v;
  v.space = 1;
  v.block = 0;
  v.lo = 0;
  v.hi = 8;
  lent.lend({v});
}

}  // namespace

TEST(DrainReply, NothingOutstandingIsAnsweredAtOnceOnTheCallingThread) {
  GraphRig r(8);
  Served s;
  std::vector<char> above(64);
  lend_one(r.graph.lent(), above);
  ASSERT_TRUE(r.graph.lent().in_loan(r.graph.lent().block_of(1, 0, 8).gen));
  EXPECT_TRUE(answer_when_drained(s.port, r.session, r.graph.lent(), "value"));
  TaskResult res;
  ASSERT_TRUE(s.answered(&res));
  EXPECT_TRUE(res.ok);
  EXPECT_EQ(res.value, "value");
  EXPECT_THROW(r.graph.lent().block_of(1, 0, 8), std::invalid_argument) << "the loan ended before the answer";
}

TEST(DrainReply, FailedWorkIsLeftToTheCaller) {
  GraphRig r(8);
  Served s;
  std::vector<char> above(64);
  lend_one(r.graph.lent(), above);
  auto slots = submit_n(r, 2);
  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the waiter is asleep by then
    r.finish(slots[0].first, exception_outcome());
    r.finish(slots[1].first);
  });
  EXPECT_FALSE(answer_when_drained(s.port, r.session, r.graph.lent(), "value"));
  finisher.join();
  TaskResult res;
  EXPECT_FALSE(s.answered(&res)) << "the request stays open for the failure report";
  EXPECT_NO_THROW(r.graph.lent().block_of(1, 0, 8)) << "the loan is the caller's to end";
  EXPECT_EQ(r.session.take_failures().size(), 1u) << "the failure is still there to drain";
  s.port.complete(TaskResult::failure("reported by the caller", ""));
  ASSERT_TRUE(s.answered(&res));
  EXPECT_FALSE(res.ok);
}

class DrainReplyThreads : public ::testing::TestWithParam<int> {};

TEST_P(DrainReplyThreads, TheLastFinishAnswersOnceWithTheValueAfterEveryTask) {
  // Many requests in a row, as a level-3 process serves them: `threads`
  // finishers complete each request's tasks (one finish at a time, as the
  // scheduler does) while the serving thread waits; every request is
  // answered exactly once, never before its last task finished.
  const int threads = GetParam();
  constexpr int kRequests = 200, kTasks = 6;
  GraphRig r(kTasks * 2 + 8);
  std::mutex finish_mu;
  for (int q = 0; q < kRequests; ++q) {
    Served s;
    auto slots = submit_n(r, kTasks);
    std::vector<std::thread> ts;
    for (int f = 0; f < threads; ++f)
      ts.emplace_back([&, f] {
        if (q % 3 == 1) std::this_thread::sleep_for(std::chrono::microseconds(300));  // past the spin
        for (int i = f; i < kTasks; i += threads) {
          std::lock_guard<std::mutex> lock(finish_mu);
          r.finish(slots[i].first);
        }
      });
    if (q % 3 == 2)  // all finished before the serving thread arms
      for (auto& t : ts) t.join();
    std::string value = "answer " + std::to_string(q);
    ASSERT_TRUE(answer_when_drained(s.port, r.session, r.graph.lent(), value));
    for (auto& [slot, id] : slots) EXPECT_TRUE(r.graph.task_finished(slot, id)) << "answered before its work finished";
    TaskResult res;
    ASSERT_TRUE(s.answered(&res)) << "answered before the call returned";
    EXPECT_EQ(res.value, value);
    EXPECT_FALSE(s.answered(&res)) << "answered once";
    for (auto& t : ts)
      if (t.joinable()) t.join();
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, DrainReplyThreads, ::testing::Values(1, 2, 4, 8));
