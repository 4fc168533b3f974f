// LentMemory: tensors of the levels above, lent to this level for one task
// of theirs — resolved by space, tracked by a per-loan generation, never
// retained or freed here, and safe to query from several submitting threads.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/distributed/memory/lent_memory.h"
#include "common/rigs.h"

using namespace tierflow;
using namespace tierflow::test;

namespace {

std::vector<std::pair<const char*, uint64_t>> fake_arenas(const std::vector<char>& a, const std::vector<char>& b) {
  return {{a.data(), a.size()}, {b.data(), b.size()}};
}

TensorDesc lent_desc(uint8_t space, uint64_t lo, uint64_t hi, AccessTag tag) {
  TensorDesc d = bytes_desc(lo, hi, tag);
  d.space = space;
  return d;
}

}  // namespace

TEST(LentMemory, FindsTheSpaceOfAnAbsoluteRange) {
  std::vector<char> up(4096), up2(1024);
  LentMemory m;
  m.set_ancestors(fake_arenas(up, up2));
  auto a = reinterpret_cast<uint64_t>(up.data()), b = reinterpret_cast<uint64_t>(up2.data());
  EXPECT_EQ(m.space_of(a, a + 10), 1);
  EXPECT_EQ(m.space_of(b + 1000, b + 1024), 2);
  EXPECT_EQ(m.space_of(b + 1000, b + 1025), 0) << "a range running past the arena is in none";
  EXPECT_EQ(m.base_of(2), b);
  EXPECT_EQ(m.num_ancestors(), 2u);
  std::vector<std::pair<const char*, uint64_t>> too_many(kMaxSpaces, {up.data(), 1});
  EXPECT_THROW(m.set_ancestors(too_many), std::invalid_argument);
}

TEST(LentMemory, ViewsOfOneAllocationShareAGenerationThatNoLoanReuses) {
  std::vector<char> up(4096), up2(1024);
  LentMemory m;
  m.set_ancestors(fake_arenas(up, up2));
  m.lend({LentView{1, 0, 0, 64}, LentView{1, 0, 128, 192}, LentView{1, 256, 256, 512}, LentView{2, 0, 0, 8}});
  BlockRef a = m.block_of(1, 10, 20), b = m.block_of(1, 130, 192), c = m.block_of(1, 300, 301), d = m.block_of(2, 0, 8);
  EXPECT_EQ(a.gen, b.gen) << "two views of the allocation at 0";
  EXPECT_NE(a.gen, c.gen);
  EXPECT_NE(a.gen, d.gen) << "the same offset in another space is another allocation";
  for (const BlockRef& r : {a, b, c, d}) {
    EXPECT_NE(r.gen & LentMemory::kLentGen, 0u) << "never a generation an Arena hands out";
    EXPECT_TRUE(m.in_loan(r.gen));
  }
  EXPECT_EQ(a.space, 1);
  EXPECT_EQ(c.offset, 256u);
  EXPECT_THROW(m.block_of(1, 60, 70), std::invalid_argument) << "runs past the lent view";
  EXPECT_THROW(m.block_of(1, 64, 128), std::invalid_argument) << "between two lent views of one allocation";
  m.lend({LentView{1, 0, 0, 64}});
  BlockRef again = m.block_of(1, 10, 20);
  EXPECT_NE(again.gen, a.gen) << "bytes lent again are a new allocation to dependency tracking";
  EXPECT_FALSE(m.in_loan(a.gen));
  m.end_loan();
  EXPECT_THROW(m.block_of(1, 10, 20), std::invalid_argument);
  EXPECT_THROW(m.lend({LentView{3, 0, 0, 8}}), std::invalid_argument) << "no third arena above";
}

TEST(LentMemory, LentTensorsAreOrderedWithinALoanAndForgottenAfterIt) {
  std::vector<char> up(4096), up2(64);
  GraphRig rig(16);
  rig.graph.lent().set_ancestors(fake_arenas(up, up2));
  rig.graph.lent().lend({LentView{1, 0, 0, 256}});
  auto submit = [&](std::vector<TensorDesc> descs) {
    SubmitRequest r;
    TaskArgs a;
    a.tensors = std::move(descs);
    r.members.push_back(std::move(a));
    return rig.orch().submit(std::move(r));
  };
  auto w = submit({lent_desc(1, 0, 128, AccessTag::Output)});
  auto r = submit({lent_desc(1, 64, 65, AccessTag::Input)});
  auto other = submit({lent_desc(1, 128, 256, AccessTag::InOut)});
  ASSERT_EQ(rig.sunk.size(), 2u) << "the reader waits for the writer; disjoint bytes do not";
  EXPECT_EQ(rig.sunk[0], w.first);
  EXPECT_EQ(rig.sunk[1], other.first);
  EXPECT_EQ(rig.graph.slot(w.first).members[0].tensors[0].block, 0u) << "submit records the allocation";
  EXPECT_THROW(submit({lent_desc(1, 200, 300, AccessTag::Input)}), std::invalid_argument);
  EXPECT_EQ(rig.graph.ring().in_use(), 3u) << "a refused tensor takes no slot";
  // The writer fails: what it should have written is poisoned for the reader...
  auto ready = rig.finish(w.first, exception_outcome());
  EXPECT_EQ(rig.graph.slot(r.first).poisoned_by.load(), w.second);
  rig.finish(r.first, rig.not_run(r.first));
  rig.finish(other.first);
  // ...and only within that loan: the next task of the level above lends
  // the same bytes afresh, and a reader of them is not poisoned.
  rig.graph.lent().lend({LentView{1, 0, 0, 256}});
  auto fresh = submit({lent_desc(1, 64, 65, AccessTag::Input)});
  EXPECT_EQ(rig.graph.slot(fresh.first).poisoned_by.load(), 0u);
  EXPECT_EQ(rig.sunk.back(), fresh.first);
  rig.finish(fresh.first);
  EXPECT_EQ(rig.graph.ring().in_use(), 0u);
}

class LentMemoryThreads : public ::testing::TestWithParam<int> {};

// Submitting threads resolve lent tensors while the loan is replaced under
// them (as when a level-3 process moves on to its next level-4 task): every
// lookup either resolves inside the loan it saw or is refused, never torn.
TEST_P(LentMemoryThreads, LookupsRaceLoansWithoutTearing) {
  std::vector<char> up(1 << 16), up2(64);
  LentMemory m;
  m.set_ancestors(fake_arenas(up, up2));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> found{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < GetParam(); ++t)
    threads.emplace_back([&, t] {
      uint64_t i = static_cast<uint64_t>(t);
      while (!stop.load(std::memory_order_relaxed)) {
        uint64_t lo = (i++ * 64) % 4096;
        try {
          BlockRef b = m.block_of(1, lo, lo + 8);
          EXPECT_NE(b.gen & LentMemory::kLentGen, 0u);
          EXPECT_EQ(b.offset, lo / 1024 * 1024);
          found.fetch_add(1, std::memory_order_relaxed);
        } catch (const std::invalid_argument&) {
          refused.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  auto lookups = [&] { return found.load() + refused.load(); };
  // Each loan stays until every thread looked at least once more (bounded
  // wait), so lookups meet live loans, replaced loans and no loan at all.
  auto let_them_look = [&] {
    uint64_t seen = lookups();
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
    while (lookups() < seen + static_cast<uint64_t>(GetParam()) && std::chrono::steady_clock::now() < until)
      std::this_thread::yield();
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<LentView> views;
    for (uint64_t b = 0; b < 4096; b += 1024)
      if ((round + b / 1024) % 2 == 0) views.push_back(LentView{1, b, b, b + 1024});
    m.lend(views);
    let_them_look();
    if (round % 3 == 0) {
      m.end_loan();
      let_them_look();
    }
  }
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_GT(found.load(), 0u);
  EXPECT_GT(refused.load(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Threads, LentMemoryThreads, ::testing::Values(1, 2, 4, 8));
