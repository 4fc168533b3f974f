// TensorMap: dependency inference over byte ranges of allocations.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "common/distributed/tensor_map.h"

using namespace tierflow;

namespace {

constexpr bool R = false, W = true;

// Task ids a lookup reports, deduplicated and sorted.
std::vector<TaskId> hits(const TensorMap& m, uint64_t alloc, uint64_t lo, uint64_t hi, bool writes) {
  std::vector<TensorMapHit> out;
  m.lookup(alloc, lo, hi, writes, &out);
  std::set<TaskId> ids;
  for (auto& h : out) ids.insert(h.task);
  return {ids.begin(), ids.end()};
}

using Ids = std::vector<TaskId>;

}  // namespace

TEST(TensorMap, EmptyMapHasNoConflicts) {
  TensorMap m;
  EXPECT_EQ(hits(m, 0, 0, 100, W), Ids{});
  EXPECT_EQ(m.size(), 0u);
}

TEST(TensorMap, ReadAfterWriteConflicts) {
  TensorMap m;
  m.insert(0, 0, 16, W, /*slot=*/3, /*task=*/10);
  std::vector<TensorMapHit> out;
  m.lookup(0, 4, 8, R, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].slot, 3u);
  EXPECT_EQ(out[0].task, 10u);
}

TEST(TensorMap, WriteAfterReadConflicts) {
  TensorMap m;
  m.insert(0, 0, 16, R, 1, 10);
  EXPECT_EQ(hits(m, 0, 8, 24, W), Ids{10});
}

TEST(TensorMap, WriteAfterWriteConflicts) {
  TensorMap m;
  m.insert(0, 0, 16, W, 1, 10);
  EXPECT_EQ(hits(m, 0, 15, 16, W), Ids{10});
}

TEST(TensorMap, ReadAfterReadDoesNotConflict) {
  TensorMap m;
  m.insert(0, 0, 16, R, 1, 10);
  m.insert(0, 0, 16, R, 2, 11);
  EXPECT_EQ(hits(m, 0, 0, 16, R), Ids{});
  // ...but a writer then depends on both readers.
  EXPECT_EQ(hits(m, 0, 0, 16, W), (Ids{10, 11}));
}

TEST(TensorMap, AdjacentRangesDoNotConflict) {
  TensorMap m;
  m.insert(0, 0, 8, W, 1, 10);
  EXPECT_EQ(hits(m, 0, 8, 16, W), Ids{});
  EXPECT_EQ(hits(m, 0, 8, 16, R), Ids{});
  m.insert(0, 8, 16, W, 2, 11);
  EXPECT_EQ(hits(m, 0, 0, 8, W), Ids{10});
  EXPECT_EQ(hits(m, 0, 8, 16, W), Ids{11});
  // One byte across the boundary touches both.
  EXPECT_EQ(hits(m, 0, 7, 9, R), (Ids{10, 11}));
}

TEST(TensorMap, OverlapVersusDisjoint) {
  TensorMap m;
  m.insert(0, 100, 200, W, 1, 10);
  EXPECT_EQ(hits(m, 0, 0, 100, R), Ids{});    // ends where it starts
  EXPECT_EQ(hits(m, 0, 200, 300, R), Ids{});  // starts where it ends
  EXPECT_EQ(hits(m, 0, 0, 101, R), Ids{10});
  EXPECT_EQ(hits(m, 0, 199, 300, R), Ids{10});
  EXPECT_EQ(hits(m, 0, 120, 130, R), Ids{10});  // inside
  EXPECT_EQ(hits(m, 0, 0, 1000, R), Ids{10});   // around
}

TEST(TensorMap, EmptyRangeNeitherConflictsNorIsRecorded) {
  TensorMap m;
  m.insert(0, 0, 16, W, 1, 10);
  EXPECT_EQ(hits(m, 0, 8, 8, W), Ids{});
  m.insert(0, 4, 4, W, 2, 11);
  EXPECT_EQ(m.size(), 1u);
}

TEST(TensorMap, DifferentAllocationsDoNotConflict) {
  TensorMap m;
  m.insert(/*alloc=*/64, 0, 16, W, 1, 10);
  EXPECT_EQ(hits(m, 128, 0, 16, W), Ids{});
  EXPECT_EQ(hits(m, 64, 0, 16, W), Ids{10});
}

TEST(TensorMap, RetireRemovesOnlyThatTasksEntry) {
  TensorMap m;
  m.insert(0, 0, 16, R, 1, 10);
  m.insert(0, 0, 16, R, 2, 11);
  m.insert(0, 32, 48, W, 3, 12);
  EXPECT_EQ(m.size(), 3u);
  m.retire(0, 0, 10);
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(hits(m, 0, 0, 64, W), (Ids{11, 12}));
  m.retire(0, 0, 999);   // unknown task: no-op
  m.retire(7, 0, 11);    // unknown alloc: no-op
  EXPECT_EQ(m.size(), 2u);
  m.retire(0, 0, 11);
  m.retire(0, 32, 12);
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(hits(m, 0, 0, 64, W), Ids{});
}

TEST(TensorMap, WriterFullyCoveringAnOlderEntryPrunesIt) {
  TensorMap m;
  m.insert(0, 8, 16, W, 1, 10);
  m.insert(0, 16, 24, R, 2, 11);
  m.insert(0, 20, 40, W, 3, 12);  // not covered by [0,24)
  m.insert(0, 0, 24, W, 4, 13);   // covers 10 and 11
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(hits(m, 0, 0, 24, R), (Ids{12, 13}));
  EXPECT_EQ(hits(m, 0, 8, 16, R), Ids{13});
  // Retiring the pruned task later is harmless.
  m.retire(0, 8, 10);
  EXPECT_EQ(m.size(), 2u);
}

TEST(TensorMap, ReaderDoesNotPruneAndPartialWriterDoesNotPrune) {
  TensorMap m;
  m.insert(0, 8, 16, W, 1, 10);
  m.insert(0, 0, 24, R, 2, 11);   // a reader never prunes
  m.insert(0, 12, 24, W, 3, 12);  // covers only part of 10
  EXPECT_EQ(hits(m, 0, 8, 9, R), Ids{10});
  EXPECT_EQ(m.size(), 3u);
}

TEST(TensorMap, TaskDoesNotPruneItsOwnEntries) {
  TensorMap m;
  m.insert(0, 0, 8, R, 1, 10);
  m.insert(0, 0, 16, W, 1, 10);  // same task: e.g. two tensors of one group
  EXPECT_EQ(m.size(), 2u);
}

TEST(TensorMap, TombstoneReportsRootFailureUntilCleared) {
  TensorMap m;
  m.insert(0, 0, 16, W, 5, 10);
  m.insert(0, 32, 48, W, 6, 11);
  m.entomb(0, 0, 10, /*root=*/7);
  std::vector<TensorMapHit> out;
  m.lookup(0, 0, 8, R, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].slot, kTombstone);
  EXPECT_EQ(out[0].task, 7u);
  m.retire(0, 0, 7);  // retire never drops a tombstone
  EXPECT_EQ(m.size(), 2u);
  m.clear_tombstones();
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(hits(m, 0, 0, 64, W), Ids{11});
}

TEST(TensorMap, ThousandsOfDisjointSlicesLookupStaysCorrect) {
  constexpr uint64_t kSlices = 5000, kLen = 16;
  TensorMap m;
  for (uint64_t i = 0; i < kSlices; ++i) m.insert(1, i * kLen, (i + 1) * kLen, W, static_cast<SlotIndex>(i), 1000 + i);
  ASSERT_EQ(m.size(), kSlices);
  for (uint64_t i = 0; i < kSlices; ++i) {
    ASSERT_EQ(hits(m, 1, i * kLen + 3, i * kLen + 9, R), Ids{1000 + i}) << i;
    ASSERT_EQ(hits(m, 1, i * kLen, (i + 1) * kLen, W), Ids{1000 + i}) << i;
  }
  // A range over several slices reports exactly those.
  EXPECT_EQ(hits(m, 1, 10 * kLen + 1, 13 * kLen, R), (Ids{1010, 1011, 1012}));
  // A long entry raises max_len; lookups far from its start must still find it.
  m.insert(1, kSlices * kLen, kSlices * kLen + 4096, R, 9, 99);
  EXPECT_EQ(hits(m, 1, kSlices * kLen + 4000, kSlices * kLen + 4001, W), Ids{99});
  for (uint64_t i = 0; i < kSlices; i += 97)
    ASSERT_EQ(hits(m, 1, i * kLen + 3, i * kLen + 9, R), Ids{1000 + i}) << i;
  // Retire every other slice; the rest stay found, the retired ones are gone.
  for (uint64_t i = 0; i < kSlices; i += 2) m.retire(1, i * kLen, 1000 + i);
  EXPECT_EQ(m.size(), kSlices / 2 + 1);
  for (uint64_t i = 0; i < kSlices; ++i) {
    Ids want = i % 2 ? Ids{1000 + i} : Ids{};
    ASSERT_EQ(hits(m, 1, i * kLen, (i + 1) * kLen, W), want) << i;
  }
}

TEST(TensorMap, LongEntryFoundAfterManySmallOnesInsertedBehindIt) {
  // Entry starting far left of the query but still overlapping it.
  TensorMap m;
  m.insert(2, 0, 100000, R, 1, 1);
  for (uint64_t i = 1; i < 2000; ++i) m.insert(2, i * 40, i * 40 + 8, R, 2, 1 + i);
  EXPECT_EQ(hits(m, 2, 99990, 99999, W), Ids{1});
  auto v = hits(m, 2, 40, 48, W);
  EXPECT_EQ(v, (Ids{1, 2}));
}
