// TaskGraph + Orchestrator driven by hand: the test plays the scheduler and
// calls graph.finish() itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <initializer_list>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/distributed/orchestrator.h"

using namespace tierflow;

namespace {

constexpr AccessTag In = AccessTag::Input, Out = AccessTag::Output, InOut = AccessTag::InOut;

struct Acc {
  uint64_t lo, hi;
  AccessTag tag;
};

TaskArgs args(std::initializer_list<Acc> acc) {
  TaskArgs a;
  for (auto& x : acc) {
    TensorDesc d;  // no arena: block stays 0, lo/hi are plain byte ranges
    d.offset = d.lo = x.lo;
    d.hi = x.hi;
    d.tag = x.tag;
    d.ndim = 1;
    d.dtype = DType{1, 8};
    d.shape[0] = static_cast<int64_t>(x.hi - x.lo);
    d.strides[0] = 1;
    a.tensors.push_back(d);
  }
  return a;
}

Outcome ok() { return Outcome{}; }
Outcome boom() {
  Outcome o;
  o.ok = false;
  o.kind = "exception";
  o.message = "ValueError: boom";
  return o;
}
Outcome dep_failed() {
  Outcome o;
  o.ok = false;
  o.kind = "dependency_failed";
  return o;
}

struct T {
  SlotIndex slot;
  TaskId id;
};

struct Rig {
  TaskGraph graph;
  std::vector<SlotIndex> sunk;  // handed to the "scheduler" by submit()
  Orchestrator orch;

  explicit Rig(uint32_t window, size_t payload = 1 << 16)
      : graph(window, nullptr), orch(graph, [this](SlotIndex s) { sunk.push_back(s); }, payload) {}

  T submit(std::initializer_list<Acc> acc, const std::function<void()>& on_wait = {}) {
    SubmitRequest r;
    r.members.push_back(args(acc));
    auto p = orch.submit(std::move(r), on_wait);
    return T{p.first, p.second};
  }
  std::vector<SlotIndex> finish(T t, const Outcome& o = ok()) {
    std::vector<SlotIndex> ready;
    graph.finish(t.slot, o, &ready);
    return ready;
  }
  const char* state(T t) const { return to_string(const_cast<TaskGraph&>(graph).state_of(t.slot, t.id)); }
  bool sunk_has(T t) const { return std::find(sunk.begin(), sunk.end(), t.slot) != sunk.end(); }
  uint32_t live() { return graph.ring().in_use(); }
};

using Slots = std::vector<SlotIndex>;

}  // namespace

TEST(Orchestrator, IndependentTasksAreHandedOverAtOnce) {
  Rig r(8);
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{8, 16, Out}});  // adjacent, disjoint
  T c = r.submit({{100, 108, In}});
  EXPECT_EQ(r.sunk, (Slots{a.slot, b.slot, c.slot}));
  EXPECT_STREQ(r.state(a), "pending");
  EXPECT_LT(a.id, b.id);
  EXPECT_LT(b.id, c.id);
  EXPECT_EQ(r.graph.counters().submitted, 3u);
  EXPECT_EQ(r.graph.counters().outstanding, 3u);
}

TEST(Orchestrator, ConsumerIsReadyOnlyWhenEveryProducerFinished) {
  Rig r(8);
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{8, 16, Out}});
  T c = r.submit({{0, 16, In}});  // RAW on both
  EXPECT_FALSE(r.sunk_has(c));
  EXPECT_EQ(r.graph.slot(c.slot).producers.size(), 2u);
  EXPECT_EQ(r.finish(a), Slots{});
  EXPECT_STREQ(r.state(c), "pending");
  EXPECT_EQ(r.finish(b), Slots{c.slot});
  EXPECT_FALSE(r.sunk_has(c)) << "a ready consumer is handed over by finish(), not by the sink";
  EXPECT_EQ(r.graph.slot(c.slot).poisoned_by.load(), kNoTask);
}

TEST(Orchestrator, WriteAfterReadAndWriteAfterWaitForTheirPredecessor) {
  Rig r(8);
  T rd = r.submit({{0, 8, In}});
  T rd2 = r.submit({{0, 8, In}});  // read after read: independent
  EXPECT_EQ(r.sunk, (Slots{rd.slot, rd2.slot}));
  T w = r.submit({{4, 12, Out}});  // WAR on both readers
  T w2 = r.submit({{0, 4, InOut}});  // WAR on the readers, not on w (disjoint)
  EXPECT_FALSE(r.sunk_has(w));
  EXPECT_FALSE(r.sunk_has(w2));
  EXPECT_EQ(r.finish(rd), Slots{});
  auto ready = r.finish(rd2);
  std::sort(ready.begin(), ready.end());
  Slots want{w.slot, w2.slot};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(ready, want);
  T w3 = r.submit({{11, 20, Out}});  // WAW on w
  EXPECT_FALSE(r.sunk_has(w3));
  EXPECT_EQ(r.finish(w), Slots{w3.slot});
}

TEST(Orchestrator, ConsumedOnlyAfterFinishedAndConsumersFinished) {
  Rig r(8);
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{0, 8, In}});
  EXPECT_EQ(r.finish(a), Slots{b.slot});
  EXPECT_STREQ(r.state(a), "completed") << "b still holds a consumer ref on a";
  EXPECT_EQ(r.live(), 2u);
  r.finish(b);
  EXPECT_STREQ(r.state(a), "consumed");
  EXPECT_STREQ(r.state(b), "consumed");
  EXPECT_EQ(r.live(), 0u);
  EXPECT_FALSE(r.graph.failure_of(a.id).has_value());
  EXPECT_TRUE(r.graph.all_finished());
}

TEST(Orchestrator, ScopeRefKeepsFinishedTasksUntilScopeEnd) {
  Rig r(8);
  r.orch.scope_begin();
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{0, 8, In}});
  r.finish(a);
  r.finish(b);
  EXPECT_STREQ(r.state(a), "completed");
  EXPECT_STREQ(r.state(b), "completed");
  EXPECT_EQ(r.live(), 2u);
  r.orch.scope_end();
  EXPECT_STREQ(r.state(a), "consumed");
  EXPECT_STREQ(r.state(b), "consumed");
  EXPECT_EQ(r.live(), 0u);
  EXPECT_THROW(r.orch.scope_end(), std::logic_error);
}

TEST(Orchestrator, ScopeEndNeverConsumesAnUnfinishedTask) {
  Rig r(8);
  r.orch.scope_begin();
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{0, 8, In}});
  r.orch.scope_end();
  EXPECT_EQ(r.orch.scope_depth(), 0u);
  EXPECT_STREQ(r.state(a), "pending");
  EXPECT_STREQ(r.state(b), "pending");
  r.finish(a);
  EXPECT_STREQ(r.state(a), "completed") << "its consumer b has not finished";
  r.finish(b);
  EXPECT_STREQ(r.state(a), "consumed");
  EXPECT_STREQ(r.state(b), "consumed");
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, NewTaskTakesARefOnACompletedProducerStillHeldByAScope) {
  Rig r(8);
  r.orch.scope_begin();
  T a = r.submit({{0, 8, Out}});
  EXPECT_TRUE(r.finish(a).empty());
  EXPECT_STREQ(r.state(a), "completed");
  EXPECT_EQ(r.graph.slot(a.slot).refs.load(), 1);  // the scope's
  r.sunk.clear();
  T b = r.submit({{0, 8, In}});
  EXPECT_EQ(r.sunk, Slots{b.slot}) << "producer already finished: the consumer is ready at once";
  EXPECT_EQ(r.graph.slot(b.slot).producers, Slots{a.slot});
  EXPECT_EQ(r.graph.slot(a.slot).refs.load(), 2);  // scope + b
  r.orch.scope_end();
  EXPECT_STREQ(r.state(a), "completed") << "b's ref outlives the scope";
  r.finish(b);
  EXPECT_STREQ(r.state(a), "consumed");
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, TwoTensorsOnOneProducerTakeOneRef) {
  Rig r(8);
  T a = r.submit({{0, 16, Out}});
  T b = r.submit({{0, 8, In}, {8, 16, InOut}});
  EXPECT_EQ(r.graph.slot(b.slot).producers, Slots{a.slot});
  EXPECT_EQ(r.finish(a), Slots{b.slot});
  r.finish(b);
  EXPECT_EQ(r.live(), 0u) << "a leaked reference keeps a slot forever";
}

TEST(Orchestrator, GroupMembersNeverDependOnTheirOwnTask) {
  Rig r(8);
  SubmitRequest g;
  g.kind = TaskKind::Group;
  g.members.push_back(args({{0, 8, InOut}}));
  g.members.push_back(args({{0, 8, InOut}}));
  auto p = r.orch.submit(std::move(g));
  EXPECT_EQ(r.sunk, Slots{p.first});
  EXPECT_TRUE(r.graph.slot(p.first).producers.empty());
}

TEST(Orchestrator, FailurePoisonsConsumersWithTheRootId) {
  Rig r(8);
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{0, 8, In}, {8, 16, Out}});
  T c = r.submit({{8, 16, In}});
  T d = r.submit({{100, 108, Out}});  // unrelated
  // The producer fails: its consumer is handed over (to be failed by the scheduler side).
  EXPECT_EQ(r.finish(a, boom()), Slots{b.slot});
  EXPECT_EQ(r.graph.slot(b.slot).poisoned_by.load(), a.id);
  EXPECT_EQ(r.graph.slot(c.slot).poisoned_by.load(), kNoTask);
  EXPECT_STREQ(r.state(a), "failed");
  EXPECT_EQ(r.finish(b, dep_failed()), Slots{c.slot});
  EXPECT_EQ(r.graph.slot(c.slot).poisoned_by.load(), a.id) << "the root, not the intermediate task";
  r.finish(c, dep_failed());
  r.finish(d);
  auto fb = r.graph.failure_of(b.id), fc = r.graph.failure_of(c.id), fa = r.graph.failure_of(a.id);
  ASSERT_TRUE(fa && fb && fc);
  EXPECT_EQ(fa->kind, "exception");
  EXPECT_EQ(fa->cause, kNoTask);
  EXPECT_EQ(fb->kind, "dependency_failed");
  EXPECT_EQ(fb->cause, a.id);
  EXPECT_EQ(fc->cause, a.id);
  EXPECT_FALSE(r.graph.failure_of(d.id).has_value());
  // Everything is consumed now; the failed ones still report "failed".
  EXPECT_EQ(r.live(), 0u);
  EXPECT_STREQ(r.state(a), "failed");
  EXPECT_STREQ(r.state(b), "failed");
  EXPECT_STREQ(r.state(c), "failed");
  EXPECT_STREQ(r.state(d), "consumed");
  auto cnt = r.graph.counters();
  EXPECT_EQ(cnt.completed, 1u);
  EXPECT_EQ(cnt.failed, 3u);
  EXPECT_EQ(cnt.outstanding, 0u);
}

TEST(Orchestrator, FailedProducerHeldByScopePoisonsANewConsumerAtOnce) {
  Rig r(8);
  r.orch.scope_begin();
  T a = r.submit({{0, 8, Out}});
  r.finish(a, boom());
  r.sunk.clear();
  T b = r.submit({{4, 6, In}});
  EXPECT_EQ(r.sunk, Slots{b.slot});
  EXPECT_EQ(r.graph.slot(b.slot).poisoned_by.load(), a.id);
  r.finish(b, dep_failed());
  r.orch.scope_end();
  EXPECT_EQ(r.live(), 0u);
  EXPECT_EQ(r.graph.failure_of(b.id)->cause, a.id);
}

TEST(Orchestrator, ConsumedFailedTaskStillPoisonsItsBytesUntilCleared) {
  Rig r(8);
  T a = r.submit({{0, 8, Out}});
  r.finish(a, boom());
  EXPECT_EQ(r.live(), 0u);
  r.sunk.clear();
  T b = r.submit({{0, 8, In}});
  EXPECT_EQ(r.sunk, Slots{b.slot});
  EXPECT_EQ(r.graph.slot(b.slot).poisoned_by.load(), a.id);
  r.finish(b, dep_failed());
  T unrelated = r.submit({{8, 16, In}});
  EXPECT_EQ(r.graph.slot(unrelated.slot).poisoned_by.load(), kNoTask);
  r.finish(unrelated);
  r.graph.clear_failed_ranges();
  T c = r.submit({{0, 8, In}});
  EXPECT_EQ(r.graph.slot(c.slot).poisoned_by.load(), kNoTask);
  r.finish(c);
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, WindowExhaustedWhenScopesHoldTheWholeWindow) {
  Rig r(4);
  r.orch.scope_begin();
  std::vector<T> ts;
  ts.push_back(r.submit({{0, 8, Out}}));
  ts.push_back(r.submit({{8, 16, Out}}));
  r.orch.scope_begin();
  ts.push_back(r.submit({{16, 24, Out}}));
  ts.push_back(r.submit({{24, 32, Out}}));
  for (auto& t : ts) r.finish(t);  // finished, but held by the scopes
  try {
    r.submit({{32, 40, Out}});
    FAIL() << "expected WindowExhausted";
  } catch (const WindowExhausted& e) {
    EXPECT_NE(std::string(e.what()).find("4"), std::string::npos) << e.what();
  }
  EXPECT_EQ(r.live(), 4u);
  EXPECT_EQ(r.graph.counters().submitted, 4u);
  r.orch.scope_end();  // frees two slots
  T t = r.submit({{32, 40, Out}});
  EXPECT_STREQ(r.state(t), "pending");
  r.finish(t);
  r.orch.scope_end();
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, BlockedSubmitCanBeAbandonedByOnWaitOrResumedByAFinish) {
  Rig r(2);
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{8, 16, Out}});
  int calls = 0;
  struct Interrupted {};
  EXPECT_THROW(r.submit({{16, 24, Out}},
                        [&] {
                          if (++calls == 2) throw Interrupted{};
                        }),
               Interrupted);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(r.graph.counters().submitted, 2u);
  EXPECT_EQ(r.live(), 2u);

  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    std::vector<SlotIndex> ready;
    r.graph.finish(a.slot, ok(), &ready);
  });
  T c = r.submit({{16, 24, Out}});  // blocks until a is consumed
  finisher.join();
  EXPECT_EQ(c.slot, a.slot) << "the only free slot is a's";
  EXPECT_STREQ(r.state(a), "consumed");
  EXPECT_STREQ(r.state(c), "pending");
  r.finish(b);
  r.finish(c);
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, TakeFailuresReportsEachFailureOnce) {
  Rig r(8);
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{8, 16, Out}});
  T c = r.submit({{0, 8, In}});
  r.finish(a, boom());
  r.finish(b, boom());
  r.finish(c, dep_failed());
  auto f = r.graph.take_failures();
  ASSERT_EQ(f.size(), 3u);
  std::set<TaskId> ids;
  for (auto& x : f) {
    ids.insert(x.task);
    if (x.task == c.id) EXPECT_EQ(x.cause, a.id);
  }
  EXPECT_EQ(ids, (std::set<TaskId>{a.id, b.id, c.id}));
  EXPECT_TRUE(r.graph.take_failures().empty());
  T d = r.submit({{200, 208, Out}});
  r.finish(d, boom());
  f = r.graph.take_failures();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].task, d.id);
  EXPECT_TRUE(r.graph.take_failures().empty());
  EXPECT_TRUE(r.graph.failure_of(a.id).has_value()) << "taking failures does not forget them";
}

TEST(Orchestrator, InvalidRequestsTakeNoSlot) {
  Rig r(4, /*payload=*/64);
  SubmitRequest empty;
  EXPECT_THROW(r.orch.submit(std::move(empty)), std::invalid_argument);
  SubmitRequest big;
  big.members.push_back(args({{0, 8, In}}));  // one TensorDesc is larger than 64 bytes
  EXPECT_THROW(r.orch.submit(std::move(big)), std::invalid_argument);
  EXPECT_EQ(r.live(), 0u);
  EXPECT_EQ(r.graph.counters().submitted, 0u);
  EXPECT_TRUE(r.sunk.empty());
}
