// Session: its records (failures, results, done notifications), its waits
// and its cancellation epoch — driven through a hand-driven graph, and under
// concurrent finishes and waiters at several thread counts.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/rigs.h"

using namespace tierflow;
using namespace tierflow::test;

namespace {

constexpr AccessTag Out = AccessTag::Output;

struct T {
  SlotIndex slot;
  TaskId id;
};

T submit(GraphRig& r, uint64_t lo) {
  SubmitRequest req;
  req.members.push_back(byte_args({{lo, lo + 8, Out}}));
  auto p = r.orch().submit(std::move(req));
  return T{p.first, p.second};
}

}  // namespace

TEST(Session, RecordsComeBeforeTheCountDrops) {
  GraphRig r(8);
  T a = submit(r, 0), b = submit(r, 8);
  EXPECT_FALSE(r.session.drained());
  Outcome ok;
  ok.value = "pickled 42";
  r.finish(a.slot, std::move(ok));
  r.finish(b.slot, exception_outcome());
  EXPECT_TRUE(r.session.drained());
  auto c = r.session.counters();
  EXPECT_EQ(c.submitted, 2u);
  EXPECT_EQ(c.completed, 1u);
  EXPECT_EQ(c.failed, 1u);
  std::string v;
  EXPECT_TRUE(r.session.take_result(a.id, &v));
  EXPECT_EQ(v, "pickled 42");
  EXPECT_FALSE(r.session.take_result(a.id, &v)) << "a value is moved out once";
  EXPECT_FALSE(r.session.take_result(b.id, &v));
  auto f = r.session.take_failures();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].task, b.id);
  EXPECT_TRUE(r.session.take_failures().empty());
  EXPECT_EQ(r.session.failure_kind(b.id), FailureKind::Exception);
}

TEST(Session, ANoneValueIsNotStoredAndDroppedValuesAreGone) {
  GraphRig r(8);
  T a = submit(r, 0), b = submit(r, 8);
  r.finish(a.slot);
  EXPECT_FALSE(r.session.may_hold_results());
  Outcome ok;
  ok.value = "x";
  r.finish(b.slot, std::move(ok));
  EXPECT_TRUE(r.session.may_hold_results());
  r.session.drop_result(b.id);
  EXPECT_FALSE(r.session.may_hold_results());
}

TEST(Session, WatchReportsEachWatchedFinishOnce) {
  GraphRig r(8);
  T a = submit(r, 0), b = submit(r, 8);
  auto finished = [&](T t) { return [&r, t] { return r.graph.task_finished(t.slot, t.id); }; };
  EXPECT_TRUE(r.session.watch(a.id, finished(a)));
  r.finish(a.slot);
  r.finish(b.slot);  // not watched
  EXPECT_EQ(r.session.take_done(0, {}), std::vector<TaskId>{a.id});
  EXPECT_TRUE(r.session.take_done(0, {}).empty());
  EXPECT_FALSE(r.session.watch(b.id, finished(b))) << "already finished: the caller acts at once";
}

TEST(Session, CancelBeforeCoversEarlierTasksOnly) {
  GraphRig r(8);
  T a = submit(r, 0);
  r.session.cancel_before(r.graph.next_id(), "interrupted");
  T b = submit(r, 8);
  EXPECT_TRUE(r.session.cancelled(a.id));
  EXPECT_FALSE(r.session.cancelled(b.id));
  EXPECT_EQ(r.session.cancel_reason(), "interrupted");
  r.session.cancel_before(1, "an older epoch never moves it back");
  EXPECT_TRUE(r.session.cancelled(a.id));
  r.finish(a.slot);
  r.finish(b.slot);
}

class SessionThreads : public ::testing::TestWithParam<int> {};

TEST_P(SessionThreads, WaitersSeeEveryFinishOfConcurrentFinishers) {
  // `threads` finishers complete tasks of one session while as many waiters
  // wait for all of them and a watcher collects watched ids: no finish is
  // lost, no waiter sleeps through the last one (TSan checks the rest).
  const int threads = GetParam();
  constexpr int kPerThread = 400;
  GraphRig r(threads * kPerThread + 8);
  std::vector<T> tasks;
  for (int i = 0; i < threads * kPerThread; ++i) tasks.push_back(submit(r, uint64_t(i) * 8));
  size_t watched = 0;
  for (size_t i = 0; i < tasks.size(); i += 7) {
    T t = tasks[i];
    watched += r.session.watch(t.id, [&r, t] { return r.graph.task_finished(t.slot, t.id); });
  }
  std::atomic<int> waited{0}, waited_tasks{0};
  std::vector<std::thread> ts;
  for (int w = 0; w < threads; ++w)
    ts.emplace_back([&] {
      if (r.session.wait_drained(kWaitMs, {})) waited.fetch_add(1);
    });
  for (int w = 0; w < threads; ++w)
    ts.emplace_back([&, w] {
      // Each waits for one task near the end of its finisher's run.
      T t = tasks[size_t(w) * kPerThread + kPerThread - 3];
      if (r.session.wait_task(t.id, [&r, t] { return r.graph.task_finished(t.slot, t.id); }, kWaitMs, {}))
        waited_tasks.fetch_add(1);
    });
  std::atomic<size_t> seen{0};
  std::thread watcher([&] {
    while (seen.load() < watched) seen.fetch_add(r.session.take_done(50, {}).size());
  });
  std::mutex finish_mu;  // TaskGraph::finish is the scheduler's: one at a time
  for (int f = 0; f < threads; ++f)
    ts.emplace_back([&, f] {
      for (int i = 0; i < kPerThread; ++i) {
        std::lock_guard<std::mutex> lock(finish_mu);
        r.finish(tasks[size_t(f) * kPerThread + i].slot);
      }
    });
  for (auto& t : ts) t.join();
  watcher.join();
  EXPECT_EQ(waited.load(), threads);
  EXPECT_EQ(waited_tasks.load(), threads);
  EXPECT_EQ(seen.load(), watched);
  EXPECT_EQ(r.session.counters().completed, uint64_t(threads) * kPerThread);
}

INSTANTIATE_TEST_SUITE_P(Threads, SessionThreads, ::testing::Values(1, 2, 4, 8));
