// Scheduler with fake workers: WorkerThreads on real mailboxes, 2 subs and 4
// chips, one GroupBarrier per chip. Bodies are picked by the task's callable.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/rigs.h"

using namespace tierflow;
using namespace tierflow::test;
using namespace std::chrono_literals;

namespace {

constexpr int kSubs = 2, kChips = 4;

enum Callable : uint32_t { kOk, kFail, kBarrier, kFailRank1, kGate, kGateFail, kRank0FailRank1Late };

struct Run {
  int worker;
  uint32_t rank;
};

struct Rig {
  std::mutex mu;
  std::multimap<int64_t, Run> runs;  // tag -> where it ran
  std::atomic<int> in_barrier{0}, max_in_barrier{0}, bodies{0};
  std::atomic<bool> gate{false}, gate_entered{false}, late_started{false}, late_wait_result{true};
  LevelRig level;
  TaskGraph& graph;
  Session& session;
  Doorbell& bell;
  std::unique_ptr<Scheduler>& sched;
  std::vector<GroupBarrier>& barriers;

  explicit Rig(uint32_t window, bool start = true)
      : level(window, kSubs, kChips, [this](int w, const Request& r, std::string* e) { return body(w, r, e); },
              nullptr, start),
        graph(level.graph), session(*level.session), bell(level.bell), sched(level.sched), barriers(level.barriers) {}
  ~Rig() {
    gate = true;
    level.teardown();
  }

  bool body(int w, const Request& r, std::string* err) {
    bodies.fetch_add(1);
    int64_t tag = r.args.scalars.empty() ? -1 : r.args.scalars[0].i;
    {
      std::lock_guard<std::mutex> lock(mu);
      runs.emplace(tag, Run{w, r.group_rank});
    }
    switch (r.callable) {
      case kOk: return true;
      case kFail:
        *err = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n";
        return false;
      case kBarrier: {
        int now = in_barrier.fetch_add(1) + 1;
        int seen = max_in_barrier.load();
        while (now > seen && !max_in_barrier.compare_exchange_weak(seen, now)) {
        }
        bool ok = barriers[r.barrier].wait();
        in_barrier.fetch_sub(1);
        if (!ok) *err = "RuntimeError: barrier broken";
        return ok;
      }
      case kFailRank1:
        if (r.group_rank == 1) {
          *err = "RuntimeError: rank 1 failed";
          return false;
        }
        if (!barriers[r.barrier].wait()) {
          *err = "RuntimeError: barrier broken";
          return false;
        }
        return true;
      case kRank0FailRank1Late:
        if (r.group_rank == 0) {
          *err = "RuntimeError: rank 0 failed";
          return false;
        }
        late_started = true;
        std::this_thread::sleep_for(300ms);  // arrives long after its peer failed
        late_wait_result = barriers[r.barrier].wait();
        if (!late_wait_result) *err = "RuntimeError: barrier broken";
        return late_wait_result.load();
      case kGate:
      case kGateFail:
        gate_entered = true;
        while (!gate.load()) std::this_thread::sleep_for(1ms);
        if (r.callable == kGateFail) *err = "RuntimeError: gate failed";
        return r.callable == kGate;
    }
    return false;
  }

  TaskId submit(TaskKind kind, uint32_t callable, int64_t tag, std::initializer_list<Acc> acc = {},
                int32_t target = -1) {
    SubmitRequest r;
    r.kind = kind;
    r.callable = callable;
    r.target = target;
    r.members.push_back(byte_args(acc, {tag}));
    return level.submit(std::move(r));
  }
  TaskId group(uint32_t callable, int64_t tag, uint32_t n, std::vector<int32_t> chips = {}) {
    SubmitRequest r;
    r.kind = TaskKind::Group;
    r.callable = callable;
    for (uint32_t i = 0; i < n; ++i) r.members.push_back(byte_args({}, {tag}));
    r.group_chips = std::move(chips);
    return level.submit(std::move(r));
  }
  bool drain(int64_t ms = kWaitMs) { return level.drain(ms); }
  template <class F>
  static bool until(F cond) {
    return eventually(cond);
  }
  std::vector<Run> ran(int64_t tag) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<Run> out;
    auto range = runs.equal_range(tag);
    for (auto it = range.first; it != range.second; ++it) out.push_back(it->second);
    return out;
  }
  std::optional<Failure> failure(TaskId id) { return session.failure_of(id); }
};

}  // namespace

TEST(Scheduler, TasksCompleteOnTheRightKindOfWorker) {
  Rig r(16);
  std::vector<TaskId> ids;
  for (int i = 0; i < 40; ++i)
    ids.push_back(r.submit(i % 2 ? TaskKind::Chip : TaskKind::Sub, kOk, i, {{uint64_t(i) * 8, uint64_t(i) * 8 + 8, AccessTag::Output}}));
  ASSERT_TRUE(r.drain());
  EXPECT_EQ(r.graph.counters().completed, 40u);
  EXPECT_EQ(r.graph.counters().failed, 0u);
  for (int i = 0; i < 40; ++i) {
    auto where = r.ran(i);
    ASSERT_EQ(where.size(), 1u) << "task " << i << " ran " << where.size() << " times";
    if (i % 2) EXPECT_GE(where[0].worker, kSubs) << "chip task on a sub-worker";
    else EXPECT_LT(where[0].worker, kSubs) << "sub task on a chip";
  }
  uint64_t total = 0;
  for (auto& s : r.sched->worker_stats()) {
    EXPECT_TRUE(s.alive);
    EXPECT_FALSE(s.busy);
    total += s.tasks;
  }
  EXPECT_EQ(total, 40u);
}

TEST(Scheduler, DirectedChipTasksRunOnThatChip) {
  Rig r(16);
  for (int i = 0; i < 40; ++i) r.submit(TaskKind::Chip, kOk, i, {}, i % kChips);
  ASSERT_TRUE(r.drain());
  for (int i = 0; i < 40; ++i) {
    auto where = r.ran(i);
    ASSERT_EQ(where.size(), 1u);
    EXPECT_EQ(where[0].worker, kSubs + i % kChips) << "task " << i;
  }
}

TEST(Scheduler, GroupRunsAllMembersOnDistinctChipsAtOnce) {
  Rig r(32);
  std::vector<TaskId> groups;
  for (int g = 0; g < 10; ++g) {
    groups.push_back(r.group(kBarrier, 100 + g, kChips));
    r.submit(TaskKind::Chip, kOk, 200 + g);  // single-chip work in between
  }
  ASSERT_TRUE(r.drain());
  EXPECT_EQ(r.graph.counters().failed, 0u);
  EXPECT_EQ(r.max_in_barrier.load(), kChips) << "members of one group must be inside the barrier together";
  for (int g = 0; g < 10; ++g) {
    auto where = r.ran(100 + g);
    ASSERT_EQ(where.size(), size_t(kChips));
    std::set<int> chips;
    std::set<uint32_t> ranks;
    for (auto& w : where) {
      EXPECT_GE(w.worker, kSubs);
      chips.insert(w.worker);
      ranks.insert(w.rank);
    }
    EXPECT_EQ(chips.size(), size_t(kChips)) << "group " << g << " reused a chip";
    EXPECT_EQ(ranks, (std::set<uint32_t>{0, 1, 2, 3}));
  }
}

TEST(Scheduler, GroupFailsWhenOneMemberFailsAndPeersAreReleased) {
  Rig r(16);
  TaskId g = r.group(kFailRank1, 1, kChips);
  ASSERT_TRUE(r.drain(20000)) << "members waiting for the failed rank were not released";
  auto f = r.failure(g);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FailureKind::Exception);
  EXPECT_EQ(f->message, "RuntimeError: rank 1 failed");
  auto where = r.ran(1);
  ASSERT_EQ(where.size(), size_t(kChips));
  for (auto& w : where) {
    if (w.rank == 1) {
      EXPECT_EQ(f->worker, "chip " + std::to_string(w.worker - kSubs));
    }
  }
  // The barrier works again for the next group.
  TaskId ok = r.group(kBarrier, 2, kChips);
  ASSERT_TRUE(r.drain());
  EXPECT_FALSE(r.failure(ok).has_value());
}

TEST(Scheduler, BarrierIsNotReusedWhileAFailedGroupStillHasAMemberRunning) {
  // g1 on chips {0,1}: rank 0 fails at once, rank 1 reaches the barrier
  // 300 ms later. g2 on chips {0,2} uses the same barrier (its rank-0 chip
  // is chip 0) and is dispatched as soon as chip 0 is idle. Rank 1 of g1
  // must still see its own barrier broken, and g2 must complete.
  // (A group's chips stay reserved until every member returned, so the
  // barrier is never re-armed under a late member.)
  Rig r(16);
  TaskId g1 = r.group(kRank0FailRank1Late, 1, 2, {0, 1});
  ASSERT_TRUE(r.until([&] { return r.late_started.load(); }));  // g1 is out of the queue
  TaskId g2 = r.group(kBarrier, 2, 2, {0, 2});
  bool drained = r.drain(5000);
  EXPECT_TRUE(drained) << "hang: the late member of g1 joined g2's round of barrier 0";
  EXPECT_FALSE(r.late_wait_result.load()) << "g1's late member passed a barrier its peer never reached";
  EXPECT_TRUE(r.failure(g1).has_value());
  EXPECT_FALSE(r.failure(g2).has_value()) << r.failure(g2)->message;
}

TEST(Scheduler, FailurePoisonsDependentsWithTheRootCause) {
  Rig r(16);
  TaskId a = r.submit(TaskKind::Sub, kFail, 1, {{0, 8, AccessTag::Output}});
  TaskId b = r.submit(TaskKind::Chip, kOk, 2, {{0, 8, AccessTag::Input}, {64, 72, AccessTag::Output}});
  TaskId c = r.submit(TaskKind::Sub, kOk, 3, {{64, 72, AccessTag::InOut}});
  TaskId d = r.submit(TaskKind::Sub, kOk, 4, {{128, 136, AccessTag::InOut}});
  ASSERT_TRUE(r.drain());
  auto fa = r.failure(a), fb = r.failure(b), fc = r.failure(c);
  ASSERT_TRUE(fa && fb && fc);
  EXPECT_EQ(fa->kind, FailureKind::Exception);
  EXPECT_EQ(fa->message, "ValueError: boom");
  EXPECT_NE(fa->traceback.find("Traceback"), std::string::npos);
  EXPECT_EQ(fb->kind, FailureKind::DependencyFailed);
  EXPECT_EQ(fb->cause, a);
  EXPECT_EQ(fc->kind, FailureKind::DependencyFailed);
  EXPECT_EQ(fc->cause, a);
  EXPECT_FALSE(r.failure(d).has_value());
  EXPECT_TRUE(r.ran(2).empty()) << "a poisoned task must not run";
  EXPECT_TRUE(r.ran(3).empty());
  EXPECT_EQ(r.ran(4).size(), 1u);
  EXPECT_EQ(r.session.take_failures().size(), 3u);
}

TEST(Scheduler, DeathOfAChipFailsWorkDirectedToIt) {
  Rig r(32);
  TaskId running = r.submit(TaskKind::Chip, kGate, 1, {}, 1);
  ASSERT_TRUE(r.until([&] { return r.gate_entered.load(); }));
  std::vector<TaskId> queued;  // behind the gated task on chip 1
  for (int i = 0; i < 3; ++i) queued.push_back(r.submit(TaskKind::Chip, kOk, 10 + i, {}, 1));
  r.sched->report_death(TaskKind::Chip, 1, "chip 1 (pid 42) died: killed by signal SIGKILL");
  ASSERT_TRUE(r.drain());
  auto f = r.failure(running);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FailureKind::WorkerDied);
  EXPECT_EQ(f->worker, "chip 1");
  EXPECT_EQ(f->message, "chip 1 (pid 42) died: killed by signal SIGKILL");
  for (TaskId q : queued) {
    auto fq = r.failure(q);
    ASSERT_TRUE(fq.has_value());
    EXPECT_EQ(fq->kind, FailureKind::WorkerDied);
    EXPECT_NE(fq->message.find("chip 1 is dead"), std::string::npos) << fq->message;
  }
  EXPECT_FALSE(r.sched->worker_stats()[kSubs + 1].alive);
  // New work: directed to the dead chip fails, any-chip work avoids it, a
  // group that needs every chip fails.
  TaskId late = r.submit(TaskKind::Chip, kOk, 20, {}, 1);
  for (int i = 0; i < 12; ++i) r.submit(TaskKind::Chip, kOk, 30 + i);
  TaskId g = r.group(kBarrier, 50, kChips);
  ASSERT_TRUE(r.drain());
  ASSERT_TRUE(r.failure(late).has_value());
  EXPECT_EQ(r.failure(late)->kind, FailureKind::WorkerDied);
  for (int i = 0; i < 12; ++i) {
    auto where = r.ran(30 + i);
    ASSERT_EQ(where.size(), 1u);
    EXPECT_NE(where[0].worker, kSubs + 1) << "ran on the dead chip";
  }
  ASSERT_TRUE(r.failure(g).has_value());
  EXPECT_NE(r.failure(g)->message.find("only 3 are alive"), std::string::npos);
  EXPECT_EQ(r.ran(10).size() + r.ran(11).size() + r.ran(12).size() + r.ran(20).size(), 0u);
  // Let the gated body return and its completion land before teardown.
  uint32_t seq = r.bell.seq.load();
  r.gate = true;
  EXPECT_TRUE(r.until([&] { return r.bell.seq.load() != seq; }));
}

TEST(Scheduler, ChainOfTenThousandFailsFromItsHeadWithoutRecursion) {
  constexpr int kChain = 10000;
  Rig r(kChain + 16);
  std::vector<TaskId> ids;
  ids.push_back(r.submit(TaskKind::Sub, kGateFail, 0, {{0, 8, AccessTag::InOut}}));
  for (int i = 1; i < kChain; ++i)
    ids.push_back(r.submit(i % 3 ? TaskKind::Sub : TaskKind::Chip, kOk, i, {{0, 8, AccessTag::InOut}}));
  EXPECT_EQ(r.graph.counters().outstanding, uint64_t(kChain)) << "the whole chain is pending behind its head";
  r.gate = true;
  ASSERT_TRUE(r.drain());
  auto c = r.graph.counters();
  EXPECT_EQ(c.failed, uint64_t(kChain));
  EXPECT_EQ(c.completed, 0u);
  EXPECT_EQ(r.bodies.load(), 1) << "only the head may run";
  EXPECT_EQ(r.failure(ids[0])->kind, FailureKind::Exception);
  for (int i = 1; i < kChain; ++i) {
    auto f = r.failure(ids[i]);
    ASSERT_TRUE(f.has_value()) << i;
    ASSERT_EQ(f->kind, FailureKind::DependencyFailed) << i;
    ASSERT_EQ(f->cause, ids[0]) << i;
  }
  EXPECT_EQ(r.session.take_failures().size(), size_t(kChain));
}

// --- watchdogs, retries, cancellation, crash-loop accounting --------------

TEST(Scheduler, ATaskPastItsTimeoutHasItsWorkerKilledAndFailsAsTimeout) {
  Rig r(16);
  SubmitRequest req;
  req.kind = TaskKind::Chip;
  req.callable = kGate;
  req.target = 2;
  req.timeout_ms = 100;
  req.members.push_back(byte_args({}, {1}));
  TaskId t = r.level.submit(std::move(req));
  ASSERT_TRUE(r.drain(20000)) << "the watchdog never fired";
  auto f = r.failure(t);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, FailureKind::Timeout);
  EXPECT_EQ(f->worker, "chip 2");
  EXPECT_NE(f->message.find("timeout of 0.1 s"), std::string::npos) << f->message;
  EXPECT_FALSE(r.sched->worker_stats()[kSubs + 2].alive) << "the kill hook reported it dead";
  r.gate = true;
}

TEST(Scheduler, ExceptionsAreRetriedOnlyWhenTheirClassIsListed) {
  std::atomic<int> calls{0};
  LevelRig level(8, 1, 0, LevelRig::ResultBody([&](int, const Request& req) {
    ++calls;
    if (calls.load() > req.args.scalars[0].i) return TaskResult{};
    TaskResult r = TaskResult::failure("ValueError: flaky", "Traceback\nValueError: flaky\n");
    r.types = "builtins.ValueError|builtins.Exception|builtins.BaseException";
    return r;
  }));
  auto submit = [&](int64_t fails, uint32_t retries, std::vector<std::string> retry_on) {
    calls = 0;
    SubmitRequest req;
    req.kind = TaskKind::Sub;
    req.retries = retries;
    if (!retry_on.empty()) req.retry_on = std::make_shared<const std::vector<std::string>>(retry_on);
    req.members.push_back(byte_args({}, {fails}));
    TaskId t = level.submit(std::move(req));
    EXPECT_TRUE(level.drain());
    return level.session->failure_of(t);
  };
  EXPECT_FALSE(submit(2, 3, {"builtins.Exception"}).has_value()) << "two failures, then success";
  EXPECT_EQ(calls.load(), 3);
  auto f = submit(5, 2, {"builtins.ValueError"});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->attempts, 3u) << "the budget is retries + 1 runs";
  f = submit(1, 3, {"builtins.KeyError"});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->attempts, 1u) << "a ValueError is not a KeyError: no retry";
  f = submit(1, 3, {});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->attempts, 1u) << "without retry_on, exceptions are never retried";
  EXPECT_EQ(level.sched->retried(), 4u);
}

TEST(Scheduler, CancellingAQueuedTaskFailsItAtOnceAndItNeverRuns) {
  Rig r(64);
  TaskId gated = r.submit(TaskKind::Chip, kGate, 1, {}, 0);
  ASSERT_TRUE(r.until([&] { return r.gate_entered.load(); }));
  SubmitRequest req;
  req.kind = TaskKind::Chip;
  req.callable = kOk;
  req.target = 0;
  req.members.push_back(byte_args({{0, 8, AccessTag::Output}}, {2}));
  auto queued = r.level.orch().submit(std::move(req));
  TaskId reader = r.submit(TaskKind::Sub, kOk, 3, {{0, 8, AccessTag::Input}});
  ASSERT_TRUE(r.graph.cancel(queued.first, queued.second));
  r.sched->cancelled(queued.first, queued.second);
  ASSERT_TRUE(r.until([&] { return r.failure(reader).has_value(); }));
  EXPECT_EQ(r.failure(queued.second)->kind, FailureKind::Cancelled);
  EXPECT_EQ(r.failure(reader)->kind, FailureKind::Cancelled);
  EXPECT_EQ(r.failure(reader)->cause, queued.second);
  r.gate = true;
  ASSERT_TRUE(r.drain());
  EXPECT_TRUE(r.ran(2).empty());
  EXPECT_TRUE(r.ran(3).empty());
  EXPECT_FALSE(r.failure(gated).has_value());
}

TEST(Scheduler, ASessionCancelFailsQueuedAndPendingWorkAndStopsRunningWork) {
  Rig r(256);
  TaskId running = r.submit(TaskKind::Chip, kGate, 1, {{0, 8, AccessTag::Output}}, 1);
  ASSERT_TRUE(r.until([&] { return r.gate_entered.load(); }));
  std::vector<TaskId> later;
  for (int i = 0; i < 50; ++i) later.push_back(r.submit(TaskKind::Chip, kOk, 100 + i, {{0, 8, AccessTag::InOut}}));
  for (int i = 0; i < 50; ++i) later.push_back(r.submit(TaskKind::Chip, kOk, 200 + i, {}, 1));
  r.session.cancel_before(r.graph.next_id(), "interrupted");
  r.sched->sweep_cancelled(true);  // also stop what runs
  ASSERT_TRUE(r.drain(20000));
  EXPECT_EQ(r.failure(running)->kind, FailureKind::Cancelled);
  EXPECT_NE(r.failure(running)->message.find("interrupted"), std::string::npos);
  for (TaskId t : later) EXPECT_EQ(r.failure(t)->kind, FailureKind::Cancelled) << t;
  EXPECT_EQ(r.bodies.load(), 1);
  // Later submits are not cancelled.
  TaskId fresh = r.submit(TaskKind::Sub, kOk, 999);
  ASSERT_TRUE(r.drain());
  EXPECT_FALSE(r.failure(fresh).has_value());
  r.gate = true;
}

// However a pass meets a session's cancelled tasks — still in the inbox,
// already queued — a backlog is one log line, with its count and reason.
TEST(Scheduler, ACancelledBacklogIsOneLogLineWhereverItWaited) {
  // Declared before the rig: the scheduler thread writes them until the
  // rig's destructor stops it.
  std::mutex mu;
  std::vector<std::string> lines;
  Rig r(256, /*start=*/false);
  auto noted = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return !lines.empty();
  };
  r.sched->set_note([&](int, std::string text) {
    std::lock_guard<std::mutex> lock(mu);
    lines.push_back(std::move(text));
  });
  std::vector<TaskId> backlog;
  for (int i = 0; i < 30; ++i) backlog.push_back(r.submit(TaskKind::Sub, kOk, i));  // in the inbox: no scheduler yet
  r.session.cancel_before(r.graph.next_id(), "the Worker is closing");
  r.sched->sweep_cancelled(false);
  r.sched->start();
  ASSERT_TRUE(r.drain());
  for (TaskId t : backlog) EXPECT_EQ(r.failure(t)->kind, FailureKind::Cancelled) << t;
  EXPECT_EQ(r.bodies.load(), 0);
  // The pass writes its line after it settled the tasks, so a drain may
  // return first (CI saw it); the line follows within that pass.
  ASSERT_TRUE(r.until(noted));
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0], "cancelled 30 queued task(s) before they started: the Worker is closing");
    lines.clear();
  }
  // Queued behind a running task this time: swept from the ready queue.
  TaskId running = r.submit(TaskKind::Chip, kGate, 100, {}, 0);
  ASSERT_TRUE(r.until([&] { return r.gate_entered.load(); }));
  std::vector<TaskId> queued;
  for (int i = 0; i < 20; ++i) queued.push_back(r.submit(TaskKind::Chip, kOk, 200 + i, {}, 0));  // behind it on chip 0
  ASSERT_TRUE(r.until([&] { return r.sched->queue_depth() == 20; }));
  r.session.cancel_before(r.graph.next_id(), "interrupted");
  r.sched->sweep_cancelled(false);
  ASSERT_TRUE(r.until(noted));
  r.gate = true;
  ASSERT_TRUE(r.drain());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "cancelled 20 queued task(s) before they started: interrupted");
  for (TaskId t : queued) EXPECT_EQ(r.failure(t)->kind, FailureKind::Cancelled) << t;
  (void)running;
}

TEST(Scheduler, DeathsOfWorkersThatRanTasksNeverExhaustReplacement) {
  Rig r(16);
  std::atomic<int> respawns{0};
  // Installed before any death; start() already ran, but the hook is read on
  // the scheduler thread only at a death, after this store (the death is
  // reported through the inbox mutex).
  r.sched->set_respawn([&](uint32_t w) {
    respawns.fetch_add(1);
    r.sched->report_birth(TaskKind::Chip, w - kSubs);
  });
  for (int i = 0; i < 8; ++i) {
    TaskId t = r.submit(TaskKind::Chip, kOk, i, {}, 0);
    ASSERT_TRUE(r.drain());
    ASSERT_FALSE(r.failure(t).has_value());
    r.sched->report_death(TaskKind::Chip, 0, "chip 0 died");
    ASSERT_TRUE(r.until([&] { return respawns.load() == i + 1; }));
  }
  // Now deaths before any task: these count, and replacement stops after 5.
  for (int i = 0; i < 8; ++i) {
    if (i <= 5) {
      ASSERT_TRUE(r.until([&] { return r.sched->worker_stats()[kSubs].alive; }));
    }
    r.sched->report_death(TaskKind::Chip, 0, "chip 0 died at start");
    ASSERT_TRUE(r.until([&] { return !r.sched->worker_stats()[kSubs].alive || respawns.load() > 8 + i; }));
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(respawns.load(), 8 + 5);
  EXPECT_FALSE(r.sched->worker_stats()[kSubs].alive);
}
