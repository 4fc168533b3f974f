// Engine over an EndpointPool that is not a set of child processes: worker
// threads behind mailboxes, named as the next level of a level-4 Worker.
// The engine must run sessions, groups (rendezvous behind the endpoints),
// deaths and shutdown through the pool interface alone, with several
// submitting threads at once.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/distributed/engine.h"
#include "common/distributed/processes/worker_thread.h"
#include "common/rigs.h"

using namespace tierflow;
using namespace tierflow::test;

namespace {

class ThreadPool final : public EndpointPool {
 public:
  using Body = std::function<TaskResult(uint32_t worker, const Request&, GroupBarrier* barriers)>;
  ThreadPool(uint32_t subs, uint32_t next, Body body)
      : subs_(subs), next_(next), barriers_(next > 0 ? next : 1) {
    for (uint32_t i = 0; i < subs + next; ++i) {
      names_.push_back(i < subs ? "sub " + std::to_string(i) : "l3 " + std::to_string(i - subs));
      GroupBarrier* b = i < subs ? nullptr : &barriers_[i - subs];
      GroupBarrier* all = barriers_.data();
      workers_.emplace_back(new WorkerThread(
          bell_, WorkerThread::ResultBody([body, i, all](const Request& r) { return body(i, r, all); }), b));
    }
  }
  uint32_t num_subs() const override { return subs_; }
  uint32_t num_next() const override { return next_; }
  const std::string& next_kind() const override { return kind_; }
  Endpoint& endpoint(uint32_t w) override { return workers_[w]->endpoint(); }
  const std::string& name(uint32_t w) const override { return names_[w]; }
  Doorbell& doorbell() override { return bell_; }
  void connect(Scheduler& s, bool) override {
    uint32_t subs = subs_;
    s.set_kill([&s, subs](uint32_t w) {
      s.report_death(w < subs ? TaskKind::Sub : TaskKind::Chip, w < subs ? w : w - subs, "killed on purpose");
    });
    connected = true;
  }
  void stop_workers(int64_t) override {
    for (auto& w : workers_) w->endpoint().stop();
    stopped = true;
  }
  void join() override {
    for (auto& b : barriers_) b.break_it();
    workers_.clear();
    joined = true;
  }
  void abandon() override {}
  int pid_of(uint32_t) const override { return 0; }

  bool connected = false, stopped = false, joined = false;

 private:
  uint32_t subs_, next_;
  std::string kind_ = "l3";
  Doorbell bell_;
  std::vector<GroupBarrier> barriers_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<WorkerThread>> workers_;
};

SubmitRequest request(TaskKind kind, std::initializer_list<Acc> acc, int32_t target = -1) {
  SubmitRequest r;
  r.kind = kind;
  r.target = target;
  r.members.push_back(byte_args(acc));
  return r;
}

}  // namespace

TEST(EnginePool, NamesItsNextLevelByThePoolsKindAndShutsDownThroughIt) {
  std::atomic<int> ran{0};
  auto* pool = new ThreadPool(1, 2, [&](uint32_t, const Request&, GroupBarrier*) {
    ran.fetch_add(1);
    return TaskResult{};
  });
  {
    Engine engine(16, nullptr, std::unique_ptr<EndpointPool>(pool));
    EXPECT_TRUE(pool->connected);
    EXPECT_EQ(engine.worker_name(2), "l3 1");
    EXPECT_EQ(engine.num_chips(), 2u);
    auto& orch = engine.default_session()->orchestrator();
    orch.submit(request(TaskKind::Chip, {{0, 8, AccessTag::InOut}}, 1));
    orch.submit(request(TaskKind::Sub, {{0, 8, AccessTag::InOut}}));
    SubmitRequest bad = request(TaskKind::Chip, {}, 5);
    orch.submit(std::move(bad));
    engine.default_session()->wait_drained(-1, {});
    auto failures = engine.default_session()->take_failures();
    ASSERT_EQ(failures.size(), 1u);
    EXPECT_EQ(failures[0].message, "l3 5 does not exist") << "messages name the pool's kind, not 'chip'";
    engine.shutdown(false, 1000, {});
    EXPECT_TRUE(pool->stopped && pool->joined);
  }
  EXPECT_EQ(ran.load(), 2);
}

TEST(EnginePool, GroupsMeetAtTheRendezvousBehindTheirLeadersEndpoint) {
  std::atomic<int> passed{0};
  auto* pool = new ThreadPool(0, 4, [&](uint32_t, const Request& r, GroupBarrier* barriers) {
    if (r.group_size > 1 && barriers[r.barrier].wait()) passed.fetch_add(1);
    return TaskResult{};
  });
  Engine engine(64, nullptr, std::unique_ptr<EndpointPool>(pool));
  auto& orch = engine.default_session()->orchestrator();
  for (int g = 0; g < 20; ++g) {
    SubmitRequest r;
    r.kind = TaskKind::Group;
    for (int m = 0; m < 2; ++m) r.members.push_back(byte_args({{uint64_t(16 * m), uint64_t(16 * m + 8), AccessTag::InOut}}));
    orch.submit(std::move(r));
  }
  engine.default_session()->wait_drained(-1, {});
  EXPECT_TRUE(engine.default_session()->take_failures().empty());
  EXPECT_EQ(passed.load(), 40) << "every member passed the barrier its group's leader armed";
  engine.shutdown(false, 1000, {});
}

class EnginePoolThreads : public ::testing::TestWithParam<int> {};

// Many sessions on many threads through one pool: every task runs once, in
// its session's dependency order (each session increments its own counter
// in place; a lost ordering would be a lost increment).
TEST_P(EnginePoolThreads, SessionsOnManyThreadsShareThePool) {
  const int threads = GetParam(), per = 300;
  std::vector<std::atomic<int>> counters(static_cast<size_t>(threads));
  for (auto& c : counters) c = 0;
  auto* pool = new ThreadPool(2, 2, [&](uint32_t, const Request& r, GroupBarrier*) {
    auto& c = counters[static_cast<size_t>(r.args.scalars[0].i)];
    int seen = c.load();
    std::this_thread::yield();
    c.store(seen + 1);  // not atomic as a whole: only dependencies keep it exact
    return TaskResult{};
  });
  Engine engine(32, nullptr, std::unique_ptr<EndpointPool>(pool));
  std::vector<std::thread> clients;
  for (int t = 0; t < threads; ++t)
    clients.emplace_back([&, t] {
      auto s = engine.open_session("client " + std::to_string(t), 1 + t % 3);
      for (int i = 0; i < per; ++i) {
        SubmitRequest r;
        r.kind = i % 2 ? TaskKind::Sub : TaskKind::Chip;
        r.members.push_back(byte_args({{uint64_t(64 * t), uint64_t(64 * t + 8), AccessTag::InOut}}, {t}));
        s->orchestrator().submit(std::move(r));
      }
      engine.close_session(s, false, 1000, {});
      EXPECT_TRUE(s->take_failures().empty());
    });
  for (auto& c : clients) c.join();
  for (auto& c : counters) EXPECT_EQ(c.load(), per);
  engine.shutdown(false, 1000, {});
}

INSTANTIATE_TEST_SUITE_P(Threads, EnginePoolThreads, ::testing::Values(1, 2, 4, 8));

TEST(EnginePool, ALostCompletionFailsTheTaskAsWorkerDiedAndTheWorkerStays) {
  // What a remote client reports when its daemon is gone: the task fails as
  // worker_died with the client's message; retries apply; nothing is replaced.
  std::atomic<int> calls{0};
  auto* pool = new ThreadPool(0, 1, [&](uint32_t, const Request&, GroupBarrier*) {
    if (calls.fetch_add(1) == 0) {
      TaskResult r = TaskResult::failure("l3 0: the daemon at 10.0.0.7:7070 stopped answering");
      r.lost = true;
      return r;
    }
    return TaskResult{};
  });
  Engine engine(16, nullptr, std::unique_ptr<EndpointPool>(pool));
  auto& orch = engine.default_session()->orchestrator();
  orch.submit(request(TaskKind::Chip, {{0, 8, AccessTag::InOut}}));
  engine.default_session()->wait_drained(-1, {});
  auto failures = engine.default_session()->take_failures();
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].kind, FailureKind::WorkerDied);
  EXPECT_EQ(failures[0].message, "l3 0: the daemon at 10.0.0.7:7070 stopped answering");
  SubmitRequest again = request(TaskKind::Chip, {{8, 16, AccessTag::InOut}});
  again.retries = 1;
  calls.store(0);
  orch.submit(std::move(again));
  engine.default_session()->wait_drained(-1, {});
  EXPECT_TRUE(engine.default_session()->take_failures().empty()) << "the retry ran on the same, living worker";
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(engine.scheduler().restarts(), 0u);
  engine.shutdown(false, 1000, {});
}

TEST(EnginePool, ExplainSeesRunningQueuedAndWaitingTasksAndTheirProducers) {
  std::atomic<bool> release{false};
  auto* pool = new ThreadPool(0, 1, [&](uint32_t, const Request&, GroupBarrier*) {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return TaskResult{};
  });
  Engine engine(16, nullptr, std::unique_ptr<EndpointPool>(pool));
  auto& orch = engine.default_session()->orchestrator();
  TaskId a = orch.submit(request(TaskKind::Chip, {{0, 8, AccessTag::InOut}})).second;
  TaskId b = orch.submit(request(TaskKind::Chip, {{0, 8, AccessTag::Input}})).second;   // reads what a writes
  TaskId c = orch.submit(request(TaskKind::Chip, {{64, 72, AccessTag::InOut}})).second;  // independent
  std::vector<TaskReport> r;
  for (int i = 0; i < 2000; ++i) {  // until a runs and c is queued
    bool answered = false;
    r = engine.scheduler().explain(1000, &answered);
    ASSERT_TRUE(answered);
    if (r.size() == 3 && r[0].state == TaskState::Running && r[2].state == TaskState::Ready) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].id, a);
  ASSERT_EQ(r[0].workers.size(), 1u);
  EXPECT_EQ(r[0].workers[0], "l3 0");
  EXPECT_EQ(r[1].id, b);
  EXPECT_EQ(r[1].state, TaskState::Pending);
  ASSERT_EQ(r[1].waits_on.size(), 1u);
  EXPECT_EQ(r[1].waits_on[0].id, a);
  EXPECT_EQ(r[1].waits_on[0].state, TaskState::Running);
  EXPECT_EQ(r[2].id, c);
  EXPECT_EQ(r[2].queued_ahead, 0);
  release.store(true);
  engine.default_session()->wait_drained(-1, {});
  bool answered = false;
  EXPECT_TRUE(engine.scheduler().explain(1000, &answered).empty());
  engine.shutdown(false, 1000, {});
}

// explain() from one thread while several submit chains: every report it
// builds is consistent (TSan checks the reads of tasks being wired).
TEST(EnginePoolStress, ExplainWhileSeveralThreadsSubmit) {
  for (int threads : {1, 2, 4, 8}) {
    auto* pool = new ThreadPool(0, 2, [&](uint32_t, const Request&, GroupBarrier*) { return TaskResult{}; });
    Engine engine(64, nullptr, std::unique_ptr<EndpointPool>(pool));
    std::atomic<int> running{threads};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        auto s = engine.open_session("s" + std::to_string(t), 1);
        for (int i = 0; i < 300; ++i)
          s->orchestrator().submit(request(TaskKind::Chip, {{uint64_t(64 * t), uint64_t(64 * t + 8), AccessTag::InOut}}));
        s->wait_drained(-1, {});
        engine.close_session(s, false, 1000, {});
        running.fetch_sub(1);
      });
    int reports = 0;
    while (running.load() > 0) {
      bool answered = false;
      for (const TaskReport& r : engine.scheduler().explain(1000, &answered)) {
        for (const auto& p : r.waits_on) EXPECT_LT(p.id, r.id) << "a producer is older than its consumer";
        if (r.state == TaskState::Running) {
          EXPECT_FALSE(r.workers.empty());
        }
        if (r.state != TaskState::Pending) {
          EXPECT_TRUE(r.waits_on.empty());
        }
        ++reports;
      }
    }
    for (auto& t : ts) t.join();
    engine.shutdown(false, 1000, {});
    (void)reports;
  }
}
