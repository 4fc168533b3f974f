// TensorMap: conflict rules at byte granularity.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "common/distributed/tensor_map.h"

using namespace tierflow;

namespace {
std::vector<TaskId> hits(const TensorMap& m, uint64_t alloc, uint64_t lo, uint64_t hi, bool writes) {
  std::vector<TensorMapHit> out;
  m.lookup(alloc, lo, hi, writes, &out);
  std::vector<TaskId> ids;
  for (auto& h : out) ids.push_back(h.task);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}
}  // namespace

TEST(TensorMap, ReadAfterWrite) {
  TensorMap m;
  m.insert(1, 0, 64, true, 0, 10);
  EXPECT_EQ(hits(m, 1, 0, 64, false), std::vector<TaskId>{10});
}

TEST(TensorMap, WriteAfterRead) {
  TensorMap m;
  m.insert(1, 0, 64, false, 0, 10);
  EXPECT_EQ(hits(m, 1, 32, 40, true), std::vector<TaskId>{10});
}

TEST(TensorMap, WriteAfterWrite) {
  TensorMap m;
  m.insert(1, 16, 32, true, 0, 10);
  EXPECT_EQ(hits(m, 1, 0, 17, true), std::vector<TaskId>{10});
}

TEST(TensorMap, ReadAfterReadDoesNotConflict) {
  TensorMap m;
  m.insert(1, 0, 64, false, 0, 10);
  EXPECT_TRUE(hits(m, 1, 0, 64, false).empty());
}

TEST(TensorMap, AdjacentAndDisjointRangesDoNotConflict) {
  TensorMap m;
  m.insert(1, 0, 8, true, 0, 10);
  EXPECT_TRUE(hits(m, 1, 8, 16, true).empty());
  EXPECT_TRUE(hits(m, 1, 100, 200, true).empty());
  EXPECT_EQ(hits(m, 1, 7, 9, false), std::vector<TaskId>{10});
}

TEST(TensorMap, DifferentAllocationsDoNotConflict) {
  TensorMap m;
  m.insert(1, 0, 64, true, 0, 10);
  EXPECT_TRUE(hits(m, 2, 0, 64, true).empty());
}

TEST(TensorMap, LongEarlierEntryIsFoundFromFarInside) {
  TensorMap m;
  m.insert(1, 0, 1 << 20, true, 0, 10);
  for (uint64_t i = 1; i < 100; ++i) m.insert(1, (1 << 20) + i * 8, (1 << 20) + i * 8 + 8, false, 1, 10 + i);
  EXPECT_EQ(hits(m, 1, 500000, 500008, false), std::vector<TaskId>{10});
}

TEST(TensorMap, RetireRemovesOnlyThatTask) {
  TensorMap m;
  m.insert(1, 0, 8, false, 0, 10);
  m.insert(1, 0, 8, false, 1, 11);
  m.retire(1, 0, 10);
  EXPECT_EQ(hits(m, 1, 0, 8, true), std::vector<TaskId>{11});
  m.retire(1, 0, 11);
  EXPECT_EQ(m.size(), 0u);
}

TEST(TensorMap, CoveringWriterPrunesOlderEntries) {
  TensorMap m;
  m.insert(1, 8, 16, true, 0, 10);
  m.insert(1, 20, 24, false, 1, 11);
  m.insert(1, 0, 32, true, 2, 12);  // covers both
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(hits(m, 1, 8, 16, false), std::vector<TaskId>{12});
}

TEST(TensorMap, PartialOverlapIsNotPruned) {
  TensorMap m;
  m.insert(1, 8, 16, true, 0, 10);
  m.insert(1, 12, 32, true, 1, 11);
  EXPECT_EQ(hits(m, 1, 8, 9, false), std::vector<TaskId>{10});
}

TEST(TensorMap, TombstoneOfAFailedTaskKeepsConflictingUntilCleared) {
  TensorMap m;
  m.insert(1, 0, 8, true, 3, 10);
  m.entomb(1, 0, 10, 7);  // task 10 failed with root cause 7
  std::vector<TensorMapHit> out;
  m.lookup(1, 0, 8, false, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].slot, kTombstone);
  EXPECT_EQ(out[0].task, 7u);
  m.retire(1, 0, 10);  // retiring the task does not drop its tombstone
  EXPECT_EQ(m.size(), 1u);
  m.clear_tombstones();
  EXPECT_EQ(m.size(), 0u);
}

TEST(TensorMap, ThousandsOfDisjointSlicesStayExact) {
  TensorMap m;
  constexpr uint64_t kSlices = 5000;
  for (uint64_t i = 0; i < kSlices; ++i) m.insert(1, i * 64, i * 64 + 64, true, 0, i + 1);
  for (uint64_t i = 0; i < kSlices; i += 97) {
    EXPECT_EQ(hits(m, 1, i * 64 + 8, i * 64 + 16, false), std::vector<TaskId>{i + 1});
    EXPECT_EQ(hits(m, 1, i * 64 + 60, i * 64 + 68, false).size(), i + 1 < kSlices ? 2u : 1u);
  }
}
