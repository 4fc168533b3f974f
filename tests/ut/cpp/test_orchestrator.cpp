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

#include "common/rigs.h"

using namespace tierflow;
using namespace tierflow::test;

namespace {

constexpr AccessTag In = AccessTag::Input, Out = AccessTag::Output, InOut = AccessTag::InOut;

struct T {
  SlotIndex slot;
  TaskId id;
};

struct Rig : GraphRig {
  explicit Rig(uint32_t window, size_t payload = 1 << 16, std::shared_ptr<Arena> arena = nullptr)
      : GraphRig(window, payload, std::move(arena)) {}
  Orchestrator& orch_() { return orch(); }

  T submit(std::initializer_list<Acc> acc, const std::function<void()>& on_wait = {}) {
    SubmitRequest r;
    r.members.push_back(byte_args(acc));
    auto p = orch().submit(std::move(r), on_wait);
    return T{p.first, p.second};
  }
  T submit_descs(std::vector<TensorDesc> descs) {
    SubmitRequest r;
    TaskArgs a;
    a.tensors = std::move(descs);
    r.members.push_back(std::move(a));
    auto p = orch().submit(std::move(r));
    return T{p.first, p.second};
  }
  std::vector<SlotIndex> finish(T t, Outcome o = ok_outcome()) { return GraphRig::finish(t.slot, std::move(o)); }
  // Finishes a task the way the scheduler finishes one a failure reached.
  std::vector<SlotIndex> finish_not_run(T t) { return GraphRig::finish(t.slot, not_run(t.slot)); }
  const char* state(T t) const { return to_string(graph.state_of(t.slot, t.id)); }
  bool sunk_has(T t) const { return std::find(sunk.begin(), sunk.end(), t.slot) != sunk.end(); }
  uint32_t live() { return graph.ring().in_use(); }
  TaskId poisoned(T t) { return graph.slot(t.slot).poisoned_by.load(); }
  std::optional<Failure> failure(T t) { return session.failure_of(t.id); }
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
  EXPECT_FALSE(r.failure(a).has_value());
  EXPECT_TRUE(r.session.drained());
}

TEST(Orchestrator, ScopeRefKeepsFinishedTasksUntilScopeEnd) {
  Rig r(8);
  r.orch().scope_begin();
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{0, 8, In}});
  r.finish(a);
  r.finish(b);
  EXPECT_STREQ(r.state(a), "completed");
  EXPECT_STREQ(r.state(b), "completed");
  EXPECT_EQ(r.live(), 2u);
  r.orch().scope_end();
  EXPECT_STREQ(r.state(a), "consumed");
  EXPECT_STREQ(r.state(b), "consumed");
  EXPECT_EQ(r.live(), 0u);
  EXPECT_THROW(r.orch().scope_end(), std::logic_error);
}

TEST(Orchestrator, ScopeEndNeverConsumesAnUnfinishedTask) {
  Rig r(8);
  r.orch().scope_begin();
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{0, 8, In}});
  r.orch().scope_end();
  EXPECT_EQ(r.orch().scope_depth(), 0u);
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
  r.orch().scope_begin();
  T a = r.submit({{0, 8, Out}});
  EXPECT_TRUE(r.finish(a).empty());
  EXPECT_STREQ(r.state(a), "completed");
  EXPECT_EQ(r.graph.slot(a.slot).refs.load(), 1);  // the scope's
  r.sunk.clear();
  T b = r.submit({{0, 8, In}});
  EXPECT_EQ(r.sunk, Slots{b.slot}) << "producer already finished: the consumer is ready at once";
  EXPECT_EQ(r.graph.slot(b.slot).producers, Slots{a.slot});
  EXPECT_EQ(r.graph.slot(a.slot).refs.load(), 2);  // scope + b
  r.orch().scope_end();
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
  g.members.push_back(byte_args({{0, 8, InOut}}));
  g.members.push_back(byte_args({{0, 8, InOut}}));
  auto p = r.orch().submit(std::move(g));
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
  EXPECT_EQ(r.finish(a, exception_outcome()), Slots{b.slot});
  EXPECT_EQ(r.graph.slot(b.slot).poisoned_by.load(), a.id);
  EXPECT_EQ(r.graph.slot(c.slot).poisoned_by.load(), kNoTask);
  EXPECT_STREQ(r.state(a), "failed");
  EXPECT_EQ(r.finish_not_run(b), Slots{c.slot});
  EXPECT_EQ(r.graph.slot(c.slot).poisoned_by.load(), a.id) << "the root, not the intermediate task";
  r.finish_not_run(c);
  r.finish(d);
  auto fb = r.failure(b), fc = r.failure(c), fa = r.failure(a);
  ASSERT_TRUE(fa && fb && fc);
  EXPECT_EQ(fa->kind, FailureKind::Exception);
  EXPECT_EQ(fa->cause, kNoTask);
  EXPECT_EQ(fb->kind, FailureKind::DependencyFailed);
  EXPECT_NE(fb->message.find("ValueError: boom"), std::string::npos) << "a dependent carries its root's message";
  EXPECT_EQ(fb->traceback, fa->traceback);
  EXPECT_EQ(fb->cause, a.id);
  EXPECT_EQ(fc->cause, a.id);
  EXPECT_FALSE(r.failure(d).has_value());
  // Everything is consumed now; the session's records still say which failed.
  EXPECT_EQ(r.live(), 0u);
  for (T t : {a, b, c, d}) EXPECT_STREQ(r.state(t), "consumed");
  EXPECT_EQ(r.session.failure_kind(a.id), FailureKind::Exception);
  EXPECT_EQ(r.session.failure_kind(b.id), FailureKind::DependencyFailed);
  EXPECT_EQ(r.session.failure_kind(c.id), FailureKind::DependencyFailed);
  EXPECT_FALSE(r.session.failure_kind(d.id).has_value());
  auto cnt = r.graph.counters();
  EXPECT_EQ(cnt.completed, 1u);
  EXPECT_EQ(cnt.failed, 3u);
  EXPECT_EQ(cnt.outstanding, 0u);
}

TEST(Orchestrator, FailedProducerHeldByScopePoisonsANewConsumerAtOnce) {
  Rig r(8);
  r.orch().scope_begin();
  T a = r.submit({{0, 8, Out}});
  r.finish(a, exception_outcome());
  r.sunk.clear();
  T b = r.submit({{4, 6, In}});
  EXPECT_EQ(r.sunk, Slots{b.slot});
  EXPECT_EQ(r.graph.slot(b.slot).poisoned_by.load(), a.id);
  r.finish_not_run(b);
  r.orch().scope_end();
  EXPECT_EQ(r.live(), 0u);
  EXPECT_EQ(r.failure(b)->cause, a.id);
}

TEST(Orchestrator, ConsumedFailedTaskPoisonsItsBytesUntilAnOutputOverwritesThem) {
  Rig r(8);
  T a = r.submit({{0, 8, Out}});
  r.finish(a, exception_outcome());
  EXPECT_EQ(r.live(), 0u);
  r.sunk.clear();
  T b = r.submit({{0, 8, In}});
  EXPECT_EQ(r.sunk, Slots{b.slot});
  EXPECT_EQ(r.poisoned(b), a.id);
  r.finish_not_run(b);
  T unrelated = r.submit({{8, 16, In}});
  EXPECT_EQ(r.poisoned(unrelated), kNoTask);
  r.finish(unrelated);
  T again = r.submit({{2, 4, In}});
  EXPECT_EQ(r.poisoned(again), a.id) << "poison does not wear off by itself";
  r.finish_not_run(again);
  T over = r.submit({{0, 8, Out}});  // overwrites every poisoned byte: runs
  EXPECT_EQ(r.poisoned(over), kNoTask);
  r.finish(over);
  T c = r.submit({{0, 8, In}});
  EXPECT_EQ(r.poisoned(c), kNoTask);
  r.finish(c);
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, FailureReachesOnlyTheReadersOfWhatItShouldHaveWritten) {
  Rig r(16);
  T reader_of_x = r.submit({{0, 8, In}, {100, 108, Out}});  // reads x, writes y
  T fails = r.submit({{100, 108, In}, {200, 208, Out}});    // reads y, should write z
  // fails depends on reader_of_x (RAW on y); reader_of_x finishes fine.
  r.finish(reader_of_x);
  T war = r.submit({{100, 108, Out}});     // overwrites what `fails` only read: ordering, no poison
  T waw = r.submit({{200, 208, Out}});     // overwrites what it should have written: runs
  T raw = r.submit({{200, 204, In}});      // reads the overwritten bytes: runs
  T partial = r.submit({{204, 212, InOut}});  // reads bytes of waw's write only
  r.finish(fails, exception_outcome());
  EXPECT_EQ(r.poisoned(war), kNoTask);
  EXPECT_EQ(r.poisoned(waw), kNoTask);
  EXPECT_EQ(r.poisoned(raw), kNoTask);
  EXPECT_EQ(r.poisoned(partial), kNoTask);
  // A reader wired before the overwrite is reached, one after it is not.
  T fails2 = r.submit({{300, 316, Out}});
  T early = r.submit({{300, 304, In}});
  T overwrite_half = r.submit({{300, 308, Out}});
  T late_read_new = r.submit({{300, 308, In}});
  T late_read_old = r.submit({{308, 316, In}});
  r.finish(fails2, exception_outcome());
  EXPECT_EQ(r.poisoned(early), fails2.id);
  EXPECT_EQ(r.poisoned(overwrite_half), kNoTask);
  EXPECT_EQ(r.poisoned(late_read_new), kNoTask) << "those bytes were overwritten in submission order first";
  EXPECT_EQ(r.poisoned(late_read_old), fails2.id);
  for (T t : {war, waw, raw, partial, overwrite_half, late_read_new}) r.finish(t);
  r.finish_not_run(early);
  r.finish_not_run(late_read_old);
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, AFailedReaderPoisonsNothing) {
  Rig r(8);
  T rd = r.submit({{0, 8, In}});
  r.finish(rd, exception_outcome());
  T w = r.submit({{0, 8, InOut}});
  T rd2 = r.submit({{0, 8, In}});
  EXPECT_EQ(r.poisoned(w), kNoTask);
  r.finish(w);
  EXPECT_EQ(r.poisoned(rd2), kNoTask);
  r.finish(rd2);
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, ColumnBlocksOfOneMatrixAreIndependent) {
  // int64[4, 16], column blocks of 4: spans overlap, bytes do not.
  Rig r(16);
  constexpr int64_t kPitch = 16 * 8;
  std::vector<T> blocks;
  for (int b = 0; b < 4; ++b) blocks.push_back(r.submit_descs({view_desc(b * 4 * 8, 4, 4, kPitch, 8, InOut)}));
  for (T t : blocks) EXPECT_TRUE(r.sunk_has(t)) << "column block " << t.id << " waited for another one";
  T whole = r.submit_descs({view_desc(0, 4, 16, kPitch, 8, In)});
  EXPECT_EQ(r.graph.slot(whole.slot).producers.size(), 4u);
  T even_rows = r.submit_descs({view_desc(0, 2, 16, 2 * kPitch, 8, Out)});  // rows 0 and 2
  T odd_rows = r.submit_descs({view_desc(kPitch, 2, 16, 2 * kPitch, 8, Out)});  // rows 1 and 3
  EXPECT_EQ(r.graph.slot(even_rows.slot).producers.size(), 5u);  // WAR on `whole`, WAW on every block
  EXPECT_EQ(r.graph.slot(odd_rows.slot).producers.size(), 5u) << "odd rows do not depend on even rows";
  for (T t : blocks) r.finish(t);
  r.finish(whole);
  r.finish(even_rows);
  r.finish(odd_rows);
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, AFreedAllocationIsANewOneWhenItsMemoryIsReused) {
  auto arena = std::make_shared<Arena>(4096);
  Rig r(8, 1 << 16, arena);
  uint64_t a = arena->allocate(64);
  T fails = r.submit({{a, a + 64, Out}});
  r.finish(fails, exception_outcome());
  arena->release(a);                  // the user's last reference goes
  uint64_t b = arena->allocate(64);   // best fit: the same bytes
  ASSERT_EQ(a, b);
  T fresh = r.submit({{b, b + 64, In}});
  EXPECT_EQ(r.poisoned(fresh), kNoTask) << "a new allocation inherited an old failure";
  r.finish(fresh);
  arena->release(b);
  EXPECT_EQ(r.live(), 0u);
}

TEST(Orchestrator, CancelClaimsATaskThatHasNotStartedAndOnlyThat) {
  Rig r(8);
  T a = r.submit({{0, 8, Out}});
  T b = r.submit({{0, 8, In}});
  EXPECT_TRUE(r.graph.try_start(a.slot));
  EXPECT_FALSE(r.graph.cancel(a.slot, a.id)) << "a started task cannot be cancelled";
  EXPECT_TRUE(r.graph.try_start(a.slot)) << "a retry starts again";
  EXPECT_TRUE(r.graph.cancel(b.slot, b.id));
  EXPECT_FALSE(r.graph.try_start(b.slot)) << "a cancelled task must not start";
  EXPECT_FALSE(r.graph.cancel(b.slot, b.id + 100)) << "a CAS against another id fails";
  // b is pending on a: finished early, it stays unconsumed until a finishes.
  std::vector<SlotIndex> ready;
  r.graph.finish_early(b.slot, r.graph.not_run(kNoTask, "Task.cancel() was called"), &ready);
  EXPECT_STREQ(r.state(b), "cancelled");
  EXPECT_EQ(r.live(), 2u);
  EXPECT_EQ(r.finish(a), Slots{b.slot});
  EXPECT_TRUE(r.graph.settle_early(b.slot));
  EXPECT_EQ(r.live(), 0u);
  EXPECT_EQ(r.session.failure_of(b.id)->kind, FailureKind::Cancelled);
}

TEST(Orchestrator, WindowExhaustedWhenScopesHoldTheWholeWindow) {
  Rig r(4);
  r.orch().scope_begin();
  std::vector<T> ts;
  ts.push_back(r.submit({{0, 8, Out}}));
  ts.push_back(r.submit({{8, 16, Out}}));
  r.orch().scope_begin();
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
  r.orch().scope_end();  // frees two slots
  T t = r.submit({{32, 40, Out}});
  EXPECT_STREQ(r.state(t), "pending");
  r.finish(t);
  r.orch().scope_end();
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
    r.graph.finish(a.slot, ok_outcome(), &ready);
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
  r.finish(a, exception_outcome());
  r.finish(b, exception_outcome());
  r.finish_not_run(c);
  auto f = r.session.take_failures();
  ASSERT_EQ(f.size(), 3u);
  std::set<TaskId> ids;
  for (auto& x : f) {
    ids.insert(x.task);
    if (x.task == c.id) {
      EXPECT_EQ(x.cause, a.id);
    }
  }
  EXPECT_EQ(ids, (std::set<TaskId>{a.id, b.id, c.id}));
  EXPECT_TRUE(r.session.take_failures().empty());
  T d = r.submit({{200, 208, Out}});
  r.finish(d, exception_outcome());
  f = r.session.take_failures();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].task, d.id);
  EXPECT_TRUE(r.session.take_failures().empty());
  EXPECT_TRUE(r.failure(a).has_value()) << "taking failures does not forget them";
}

TEST(Orchestrator, InvalidRequestsTakeNoSlot) {
  Rig r(4, /*payload=*/64);
  SubmitRequest empty;
  EXPECT_THROW(r.orch().submit(std::move(empty)), std::invalid_argument);
  SubmitRequest big;
  big.members.push_back(byte_args({{0, 8, In}}));  // one TensorDesc is larger than 64 bytes
  EXPECT_THROW(r.orch().submit(std::move(big)), std::invalid_argument);
  EXPECT_EQ(r.live(), 0u);
  EXPECT_EQ(r.graph.counters().submitted, 0u);
  EXPECT_TRUE(r.sunk.empty());
}
