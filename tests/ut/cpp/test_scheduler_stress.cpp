// Scheduler under load, with a real Arena: fake workers (WorkerThreads, 2
// subs + 4 chips) really read and write the arena cells their tasks name, and
// every task carries the values a one-by-one run in submission order would
// see. Any lost dependency, lost wake-up or double run shows up as a wrong
// value, a failed task or a drain that times out.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/rigs.h"

using namespace tierflow;
using namespace tierflow::test;
using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kStress = 20000;
#else
constexpr int kStress = 100000;
#endif
constexpr int kSubs = 2, kChips = 4, kAllocs = 4, kCells = 32;

enum Callable : uint32_t { kMem = 0, kGate = 1, kRecord = 2 };

struct Rig {
  std::shared_ptr<Arena> arena;
  std::vector<std::atomic<int>> runs, where;  // per tag
  std::mutex mu;
  std::string first_error;
  std::vector<int64_t> order;
  std::atomic<bool> gate{false}, gate_entered{false};
  LevelRig level;
  TaskGraph& graph;
  std::vector<GroupBarrier>& barriers;

  Rig(uint32_t window, int tags)
      : arena(std::make_shared<Arena>(1 << 16)), runs(tags), where(tags),
        level(window, kSubs, kChips, [this](int w, const Request& r, std::string* e) { return body(w, r, e); },
              arena),
        graph(level.graph), barriers(level.barriers) {}
  ~Rig() {
    gate = true;
    level.teardown();
  }
  Orchestrator* orch_ptr() { return &level.orch(); }

  bool fail(std::string* err, const std::string& why) {
    *err = why;
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = why;
    return false;
  }

  // scalars[j] belongs to tensor j; the last scalar is the task's tag.
  bool body(int w, const Request& r, std::string* err) {
    int64_t tag = r.args.scalars.back().i;
    runs[tag].fetch_add(1);
    where[tag].store(w);
    if (r.callable == kGate) {
      gate_entered = true;
      while (!gate.load()) std::this_thread::sleep_for(1ms);
      return true;
    }
    if (r.callable == kRecord) {
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(tag);
      return true;
    }
    std::string wrong = check_and_apply(r, arena->base());
    if (!wrong.empty()) return fail(err, "task " + std::to_string(tag) + " " + wrong);
    if (r.kind == TaskKind::Group && !barriers[r.barrier].wait()) return fail(err, "barrier broken");
    return true;
  }

  bool drain(int64_t ms = kWaitMs) { return level.drain(ms); }
  template <class F>
  static bool until(F cond) {
    return eventually(cond);
  }
};

Scalar scalar(int64_t v) { return int_scalar(v); }

}  // namespace

TEST(SchedulerStress, HundredThousandMixedTasksMatchASequentialRun) {
  const int n = kStress;
  Rig r(64, n);
  std::vector<uint64_t> blocks;
  for (int k = 0; k < kAllocs; ++k) {
    blocks.push_back(r.arena->allocate(kCells * 8));
    std::memset(r.arena->base() + blocks.back(), 0, kCells * 8);
  }
  const uint64_t owner_bytes = r.arena->bytes_in_use();
  std::vector<std::array<uint64_t, kCells>> model(kAllocs);
  for (auto& m : model) m.fill(0);
  // Expected worker range per tag: [lo, hi].
  std::vector<std::pair<int, int>> allowed(n);
  std::vector<bool> is_group(n, false);
  std::mt19937 rng(2024);

  auto access = [&](TaskArgs& a, int k, bool read_only) {
    int c = static_cast<int>(rng() % kCells);
    int len = 1 + static_cast<int>(rng() % std::min(6, kCells - c));
    unsigned sel = read_only ? 0 : rng() % 100;
    AccessTag tag = sel < 40 ? AccessTag::Input : sel < 80 ? AccessTag::InOut : AccessTag::Output;
    uint64_t v = 0;
    if (tag == AccessTag::Output) {
      v = 1 + rng() % 1000;
      for (int i = 0; i < len; ++i) model[k][c + i] = v;
    } else {
      for (int i = 0; i < len; ++i) v += model[k][c + i];
      if (tag == AccessTag::InOut)
        for (int i = 0; i < len; ++i) model[k][c + i] += 1;
    }
    a.tensors.push_back(cells_desc(blocks[k], c, len, tag));
    a.scalars.push_back(scalar(static_cast<int64_t>(v)));
  };

  for (int i = 0; i < n; ++i) {
    SubmitRequest req;
    unsigned sel = rng() % 100;
    if (sel < 2) {  // a group of two readers
      req.kind = TaskKind::Group;
      int k = static_cast<int>(rng() % kAllocs);
      for (int m = 0; m < 2; ++m) {
        TaskArgs a;
        access(a, k, /*read_only=*/true);
        a.scalars.push_back(scalar(i));
        req.members.push_back(std::move(a));
      }
      // Both members read the same model state: copy member 0's range.
      req.members[1] = req.members[0];
      allowed[i] = {kSubs, kSubs + kChips - 1};
      is_group[i] = true;
    } else {
      TaskArgs a;
      int k1 = static_cast<int>(rng() % kAllocs);
      access(a, k1, false);
      if (rng() % 3 == 0) access(a, (k1 + 1 + static_cast<int>(rng() % (kAllocs - 1))) % kAllocs, false);
      a.scalars.push_back(scalar(i));
      req.members.push_back(std::move(a));
      if (sel < 45) {
        req.kind = TaskKind::Sub;
        allowed[i] = {0, kSubs - 1};
      } else if (sel < 80) {
        req.kind = TaskKind::Chip;
        allowed[i] = {kSubs, kSubs + kChips - 1};
      } else {
        req.kind = TaskKind::Chip;
        req.target = static_cast<int32_t>(rng() % kChips);
        allowed[i] = {kSubs + req.target, kSubs + req.target};
      }
    }
    r.level.orch().submit(std::move(req));
  }

  ASSERT_TRUE(r.drain()) << "drain timed out: " << r.graph.counters().outstanding << " of " << n
                         << " tasks never finished (lost wake-up?)";
  auto c = r.graph.counters();
  EXPECT_EQ(c.submitted, uint64_t(n));
  EXPECT_EQ(c.completed, uint64_t(n));
  EXPECT_EQ(c.failed, 0u) << r.first_error;
  EXPECT_EQ(r.first_error, "");
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(r.runs[i].load(), is_group[i] ? 2 : 1) << "task " << i;
    int w = r.where[i].load();
    ASSERT_TRUE(w >= allowed[i].first && w <= allowed[i].second) << "task " << i << " ran on worker " << w;
  }
  for (int k = 0; k < kAllocs; ++k)
    for (int cell = 0; cell < kCells; ++cell)
      ASSERT_EQ(reinterpret_cast<uint64_t*>(r.arena->base() + blocks[k])[cell], model[k][cell])
          << "alloc " << k << " cell " << cell;
  // Every slot and every task reference on the arena comes back.
  EXPECT_TRUE(r.until([&] { return r.graph.ring().in_use() == 0; }));
  EXPECT_TRUE(r.until([&] { return r.arena->bytes_in_use() == owner_bytes; }));
  EXPECT_EQ(r.arena->live_blocks(), size_t(kAllocs));
}

TEST(SchedulerStress, DirectedTasksRunInSubmissionOrder) {
  // ReadyQueues keeps "one FIFO per chip". Tasks queued behind a busy chip
  // must run on it in the order they were submitted.
  constexpr int kTasks = 64;
  Rig r(128, kTasks + 1);
  auto submit = [&](uint32_t callable, int64_t tag) {
    SubmitRequest req;
    req.kind = TaskKind::Chip;
    req.callable = callable;
    req.target = 0;
    TaskArgs a;
    a.scalars.push_back(scalar(tag));
    req.members.push_back(std::move(a));
    r.level.orch().submit(std::move(req));
  };
  submit(kGate, kTasks);
  ASSERT_TRUE(r.until([&] { return r.gate_entered.load(); }));
  for (int i = 0; i < kTasks; ++i) submit(kRecord, i);
  r.gate = true;
  ASSERT_TRUE(r.drain());
  std::vector<int64_t> want(kTasks);
  for (int i = 0; i < kTasks; ++i) want[i] = i;
  EXPECT_EQ(r.order, want);
}

// stop() right after the scheduler finished a pass: the stop must never be
// slept through (the loop takes its doorbell ticket before it reads the stop
// flag). A lost stop hangs join(); the watchdog turns that into a failure.
TEST(SchedulerStop, AStopRightAfterAPassIsNeverSleptThrough) {
  using namespace std::chrono_literals;
  for (int i = 0; i < 300; ++i) {
    Doorbell bell;
    TaskGraph graph(8, nullptr);
    Scheduler sched(graph, bell, {}, {});
    sched.start();
    std::atomic<bool> ringing{true};
    std::thread ringer([&] {  // keeps the scheduler making passes
      while (ringing.load()) bell.ring();
    });
    std::this_thread::sleep_for(std::chrono::microseconds(20 + i % 40));
    ringing = false;
    ringer.join();
    auto stopped = std::async(std::launch::async, [&] { sched.stop(); });
    if (stopped.wait_for(10s) != std::future_status::ready) {
      ADD_FAILURE() << "Scheduler::stop() hung in round " << i;
      std::abort();  // the scheduler thread can never be joined now
    }
  }
}

