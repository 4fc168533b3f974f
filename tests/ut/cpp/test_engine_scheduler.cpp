// Scheduler with in-process fake workers (WorkerThreads on real mailboxes).
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <vector>

#include "common/distributed/scheduler.h"
#include "common/distributed/worker_thread.h"
#include "engine_test_util.h"

using namespace tierflow;
using namespace tierflow::test;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kStress = 20000;
#else
constexpr int kStress = 100000;
#endif

namespace {
enum Callable : uint32_t { kOk = 0, kFail = 1, kBarrier = 2, kFailRank1 = 3 };

struct Rig {
  Doorbell bell;
  TaskGraph graph;
  std::vector<GroupBarrier> barriers;
  std::vector<std::unique_ptr<WorkerThread>> workers;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<Orchestrator> orch;
  std::mutex mu;
  std::vector<std::pair<int, uint32_t>> ran;  // (worker, group rank)
  std::atomic<int> runs{0};

  explicit Rig(uint32_t window, int subs = 2, int chips = 4) : graph(window, nullptr), barriers(chips) {
    std::vector<Endpoint*> sub_eps, chip_eps;
    for (int i = 0; i < subs + chips; ++i) {
      workers.emplace_back(new WorkerThread(bell, [this, i](const Request& r, std::string* err) {
        return body(i, r, err);
      }));
      (i < subs ? sub_eps : chip_eps).push_back(&workers.back()->endpoint());
    }
    sched.reset(new Scheduler(graph, bell, sub_eps, chip_eps, barriers.data()));
    Scheduler* s = sched.get();
    orch.reset(new Orchestrator(graph, [s](SlotIndex slot) { s->enqueue(slot); }, 1 << 16));
    sched->start();
  }
  ~Rig() {
    sched->stop();
    workers.clear();
  }

  bool body(int worker, const Request& r, std::string* err) {
    runs.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(mu);
      ran.emplace_back(worker, r.group_rank);
    }
    switch (r.callable) {
      case kFail: *err = "Traceback\nValueError: fake"; return false;
      case kBarrier: return barriers[r.barrier].wait();
      case kFailRank1:
        if (r.group_rank == 1) {
          *err = "RuntimeError: rank 1";
          return false;
        }
        return barriers[r.barrier].wait();
      default: return true;
    }
  }

  TaskId submit(TaskKind kind, uint32_t callable, std::initializer_list<Access> acc, int32_t target = -1) {
    SubmitRequest r = request(acc, kind);
    r.callable = callable;
    r.target = target;
    return orch->submit(std::move(r)).second;
  }
  bool drain(int64_t ms = 60000) { return graph.wait_until([&] { return graph.all_finished(); }, ms, {}); }
};
}  // namespace

TEST(Scheduler, RunsSubAndChipTasks) {
  Rig rig(16);
  for (int i = 0; i < 100; ++i) rig.submit(i % 2 ? TaskKind::Chip : TaskKind::Sub, kOk, {});
  ASSERT_TRUE(rig.drain());
  EXPECT_EQ(rig.graph.counters().completed, 100u);
  for (auto& r : rig.ran) EXPECT_LT(r.first, 6);
}

TEST(Scheduler, DirectedChipTasksRunOnThatChip) {
  Rig rig(16);
  for (int i = 0; i < 20; ++i) rig.submit(TaskKind::Chip, kOk, {}, 2);
  ASSERT_TRUE(rig.drain());
  for (auto& r : rig.ran) EXPECT_EQ(r.first, 2 + 2);  // chip 2 is worker 4 (after 2 subs)
}

TEST(Scheduler, GroupRunsOnDistinctChipsAtOnceAndCompletesOnce) {
  Rig rig(16);
  SubmitRequest g;
  g.kind = TaskKind::Group;
  g.callable = kBarrier;
  for (int i = 0; i < 4; ++i) g.members.push_back(args_of({}));
  rig.orch->submit(std::move(g));
  ASSERT_TRUE(rig.drain(20000));  // the barrier needs all four at the same time
  std::set<int> chips;
  std::set<uint32_t> ranks;
  for (auto& r : rig.ran) {
    chips.insert(r.first);
    ranks.insert(r.second);
  }
  EXPECT_EQ(chips, (std::set<int>{2, 3, 4, 5}));
  EXPECT_EQ(ranks, (std::set<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(rig.graph.counters().completed, 1u);
}

TEST(Scheduler, GroupFailsWhenAMemberFailsAndOthersAreReleased) {
  Rig rig(16);
  SubmitRequest g;
  g.kind = TaskKind::Group;
  g.callable = kFailRank1;
  for (int i = 0; i < 3; ++i) g.members.push_back(args_of({}));
  TaskId id = rig.orch->submit(std::move(g)).second;
  ASSERT_TRUE(rig.drain(20000));
  auto fs = rig.graph.take_failures();
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0].task, id);
  EXPECT_EQ(fs[0].kind, "exception");
  EXPECT_EQ(fs[0].message, "RuntimeError: rank 1");
}

TEST(Scheduler, FailurePoisonsDependentsButNotIndependentWork) {
  Rig rig(16);
  TaskId root = rig.submit(TaskKind::Sub, kFail, {{0, 8, Out}});
  TaskId dep = rig.submit(TaskKind::Chip, kOk, {{0, 8, In}, {8, 16, Out}});
  TaskId dep2 = rig.submit(TaskKind::Sub, kOk, {{8, 16, In}});
  rig.submit(TaskKind::Sub, kOk, {{100, 108, Out}});
  ASSERT_TRUE(rig.drain());
  auto fs = rig.graph.take_failures();
  ASSERT_EQ(fs.size(), 3u);
  EXPECT_EQ(fs[0].task, root);
  EXPECT_EQ(fs[0].message, "ValueError: fake");
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(fs[i].kind, "dependency_failed");
    EXPECT_EQ(fs[i].cause, root);
    EXPECT_TRUE(fs[i].task == dep || fs[i].task == dep2);
  }
  EXPECT_EQ(rig.graph.counters().completed, 1u);
  EXPECT_EQ(rig.runs.load(), 2);  // the dependents never ran
}

TEST(Scheduler, DeadChipFailsWorkDirectedToIt) {
  Rig rig(16);
  rig.sched->report_death(TaskKind::Chip, 3, "chip 3 (pid 1) died: killed by signal SIGKILL");
  TaskId t = rig.submit(TaskKind::Chip, kOk, {}, 3);
  rig.submit(TaskKind::Chip, kOk, {});  // any chip still works
  ASSERT_TRUE(rig.drain());
  auto fs = rig.graph.take_failures();
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0].task, t);
  EXPECT_EQ(fs[0].kind, "worker_died");
  EXPECT_EQ(rig.graph.counters().completed, 1u);
}

TEST(Scheduler, StressManyTasksNoLostWakeups) {
  Rig rig(64);
  std::mt19937 rng(42);
  for (int i = 0; i < kStress; ++i) {
    uint64_t lo = rng() % 4096, len = 1 + rng() % 64;
    AccessTag tag = std::array<AccessTag, 3>{In, Out, InOut}[rng() % 3];
    TaskKind kind = rng() % 2 ? TaskKind::Sub : TaskKind::Chip;
    rig.submit(kind, kOk, {{lo, lo + len, tag}}, kind == TaskKind::Chip && rng() % 4 == 0 ? int32_t(rng() % 4) : -1);
  }
  ASSERT_TRUE(rig.drain(600000));
  auto c = rig.graph.counters();
  EXPECT_EQ(c.completed, static_cast<uint64_t>(kStress));
  EXPECT_EQ(c.failed, 0u);
  EXPECT_EQ(rig.runs.load(), kStress);
  EXPECT_TRUE(rig.graph.wait_until([&] { return rig.graph.ring().in_use() == 0; }, 10000, {}));
}

TEST(Scheduler, LongFailedChainFailsWithoutRecursion) {
  Rig rig(20000);
  rig.submit(TaskKind::Sub, kFail, {{0, 8, Out}});
  for (int i = 1; i < 10000; ++i) rig.submit(TaskKind::Sub, kOk, {{0, 8, InOut}});
  ASSERT_TRUE(rig.drain());
  EXPECT_EQ(rig.graph.counters().failed, 10000u);
  EXPECT_EQ(rig.runs.load(), 1);
}
