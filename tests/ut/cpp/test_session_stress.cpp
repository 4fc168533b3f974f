// Many submitting threads, each with its own session, against one level of
// fake workers (2 subs + 4 chips). Each thread's tasks read and write its own
// allocations and its own rows of one shared allocation, with the values a
// one-by-one run of that thread's program would see; all threads also bump
// one shared counter. A lost dependency across sessions, a race in the map,
// the window or the ready set shows up as a wrong value, a lost bump or a
// drain that times out; TSan and ASan builds run the same test.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/rigs.h"

using namespace tierflow;
using namespace tierflow::test;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kTotalTasks = 16000;
#else
constexpr int kTotalTasks = 80000;
#endif
constexpr int kSubs = 2, kChips = 4, kCells = 16;
enum Callable : uint32_t { kMem = 0, kBump = 1 };

struct Stress {
  std::shared_ptr<Arena> arena = std::make_shared<Arena>(1 << 20);
  std::mutex mu;
  std::string first_error;
  LevelRig level;

  explicit Stress(uint32_t window)
      : level(window, kSubs, kChips, [this](int, const Request& r, std::string* e) { return body(r, e); }, arena) {}
  ~Stress() { level.teardown(); }

  bool fail(std::string* err, const std::string& why) {
    *err = why;
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = why;
    return false;
  }

  // scalars[j] belongs to tensor j: the sum a sequential run reads, or the
  // value an output writes.
  bool body(const Request& r, std::string* err) {
    if (r.callable == kBump) {
      ++*reinterpret_cast<uint64_t*>(arena->base() + r.args.tensors[0].offset);
      return true;
    }
    std::string wrong = check_and_apply(r, arena->base());
    return wrong.empty() || fail(err, wrong);
  }
};

}  // namespace

class SessionStress : public ::testing::TestWithParam<int> {};

TEST_P(SessionStress, EverySessionSeesItsOwnSequentialRun) {
  const int threads = GetParam();
  const int per_thread = kTotalTasks / threads;
  Stress r(64);
  // Each thread: two allocations of its own and a row of the shared one.
  uint64_t shared = r.arena->allocate(uint64_t(threads) * kCells * 8);
  uint64_t counter = r.arena->allocate(8);
  std::memset(r.arena->base() + shared, 0, size_t(threads) * kCells * 8);
  std::memset(r.arena->base() + counter, 0, 8);
  std::vector<std::array<uint64_t, 3>> blocks(threads);
  for (int t = 0; t < threads; ++t) {
    for (int k = 0; k < 2; ++k) {
      blocks[t][k] = r.arena->allocate(kCells * 8);
      std::memset(r.arena->base() + blocks[t][k], 0, kCells * 8);
    }
    blocks[t][2] = shared + uint64_t(t) * kCells * 8;
  }
  std::vector<std::array<std::array<uint64_t, kCells>, 3>> models(threads);
  for (auto& m : models)
    for (auto& b : m) b.fill(0);
  std::vector<std::unique_ptr<Session>> sessions;
  Scheduler* sched = r.level.sched.get();
  for (int t = 0; t < threads; ++t) {
    sessions.emplace_back(new Session(uint32_t(t + 1), "s" + std::to_string(t), r.level.graph,
                                      [sched](SlotIndex s) { sched->enqueue(s); }, kMailboxPayload, 1 + t % 3));
    r.level.graph.ring().set_weight(uint32_t(t + 1), 1 + t % 3);
  }
  std::atomic<int> bumps{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng(1000 + t);
      auto& model = models[t];
      for (int i = 0; i < per_thread; ++i) {
        SubmitRequest req;
        req.kind = rng() % 2 ? TaskKind::Sub : TaskKind::Chip;
        TaskArgs a;
        if (rng() % 10 == 0) {
          req.callable = kBump;
          a.tensors.push_back(cells_desc(counter, 0, 1, AccessTag::InOut));
          bumps.fetch_add(1);
        } else {
          req.callable = kMem;
          for (int n = 1 + int(rng() % 2); n > 0; --n) {
            int k = int(rng() % 3), c = int(rng() % kCells);
            int len = 1 + int(rng() % std::min(4, kCells - c));
            unsigned sel = rng() % 100;
            AccessTag tag = sel < 40 ? AccessTag::Input : sel < 75 ? AccessTag::InOut : AccessTag::Output;
            uint64_t v = 0;
            if (tag == AccessTag::Output) {
              v = 1 + rng() % 1000;
              for (int x = 0; x < len; ++x) model[k][c + x] = v;
            } else {
              for (int x = 0; x < len; ++x) v += model[k][c + x];
              if (tag == AccessTag::InOut)
                for (int x = 0; x < len; ++x) model[k][c + x] += 1;
            }
            a.tensors.push_back(cells_desc(blocks[t][k], c, len, tag));
            a.scalars.push_back(int_scalar(static_cast<int64_t>(v)));
          }
        }
        req.members.push_back(std::move(a));
        sessions[t]->orchestrator().submit(std::move(req));
      }
      Session* s = sessions[t].get();
      EXPECT_TRUE(s->wait_drained(kWaitMs, {})) << "session " << t << " never drained";
    });
  for (auto& th : ts) th.join();
  EXPECT_EQ(r.first_error, "");
  for (int t = 0; t < threads; ++t) {
    auto c = sessions[t]->counters();
    EXPECT_EQ(c.submitted, uint64_t(per_thread));
    EXPECT_EQ(c.completed, uint64_t(per_thread)) << "session " << t;
    for (int k = 0; k < 3; ++k)
      for (int cell = 0; cell < kCells; ++cell)
        ASSERT_EQ(reinterpret_cast<uint64_t*>(r.arena->base() + blocks[t][k])[cell], models[t][k][cell])
            << "session " << t << " buffer " << k << " cell " << cell;
  }
  EXPECT_EQ(*reinterpret_cast<uint64_t*>(r.arena->base() + counter), uint64_t(bumps.load()));
  EXPECT_TRUE(eventually([&] { return r.level.graph.ring().in_use() == 0; }));
}

INSTANTIATE_TEST_SUITE_P(Threads, SessionStress, ::testing::Values(1, 2, 4, 8));
