// Arena: best-fit blocks, reference counts, coalescing, exhaustion.
#include <gtest/gtest.h>

#include <string>

#include "common/distributed/arena.h"

using namespace tierflow;

TEST(Arena, AllocationsAreAlignedAndDisjoint) {
  Arena a(1 << 16);
  uint64_t x = a.allocate(10), y = a.allocate(100);
  EXPECT_EQ(x % Arena::kAlign, 0u);
  EXPECT_EQ(y % Arena::kAlign, 0u);
  EXPECT_GE(y, x + 64);
  EXPECT_EQ(a.live_blocks(), 2u);
}

TEST(Arena, BlockIsFreedWhenTheLastReferenceGoes) {
  Arena a(4096);
  uint64_t x = a.allocate(4096);
  a.retain(x);
  a.release(x);
  EXPECT_THROW(a.allocate(64), ArenaExhausted);
  a.release(x);
  EXPECT_EQ(a.bytes_in_use(), 0u);
  EXPECT_EQ(a.allocate(4096), x);
}

TEST(Arena, FreedNeighboursCoalesce) {
  Arena a(3 * 1024);
  uint64_t x = a.allocate(1024), y = a.allocate(1024), z = a.allocate(1024);
  a.release(x);
  a.release(z);
  a.release(y);  // merges with both neighbours
  EXPECT_EQ(a.allocate(3 * 1024), 0u);
}

TEST(Arena, ExhaustionNamesSizeAndRequest) {
  Arena a(1024);
  try {
    a.allocate(5000);
    FAIL();
  } catch (const ArenaExhausted& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("5000"), std::string::npos);
    EXPECT_NE(m.find("1024"), std::string::npos);
  }
}

TEST(Arena, BlockOfValidatesRanges) {
  Arena a(4096);
  uint64_t x = a.allocate(256);
  EXPECT_EQ(a.block_of(x + 10, x + 20), x);
  EXPECT_THROW(a.block_of(x + 200, x + 300), std::invalid_argument);  // runs past the block
  EXPECT_THROW(a.block_of(2048, 2056), std::invalid_argument);        // free memory
}
