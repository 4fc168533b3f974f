// Arena: best-fit allocator with reference counts over one shared mapping.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/distributed/memory/arena.h"

using namespace tierflow;

TEST(Arena, SizeIsRoundedAndMemoryIsUsable) {
  Arena a(1000);
  EXPECT_EQ(a.size(), 1024u);
  EXPECT_EQ(a.bytes_in_use(), 0u);
  uint64_t off = a.allocate(100);
  EXPECT_EQ(off % Arena::kAlign, 0u);
  EXPECT_EQ(a.bytes_in_use(), 128u);
  std::memset(a.base() + off, 0xab, 100);
  EXPECT_TRUE(a.contains(a.base() + off));
  EXPECT_TRUE(a.contains(a.base() + a.size() - 1));
  EXPECT_FALSE(a.contains(a.base() + a.size()));
  EXPECT_THROW(Arena(0), std::invalid_argument);
}

TEST(Arena, AllocateReleaseAndCoalesce) {
  Arena a(512);
  std::vector<uint64_t> b;
  for (int i = 0; i < 4; ++i) b.push_back(a.allocate(128));
  EXPECT_EQ(b, (std::vector<uint64_t>{0, 128, 256, 384}));
  EXPECT_EQ(a.live_blocks(), 4u);
  EXPECT_EQ(a.bytes_in_use(), 512u);
  EXPECT_THROW(a.allocate(1), ArenaExhausted);

  // Two free neighbours in the middle merge into one 256-byte hole.
  a.release(b[1]);
  a.release(b[2]);
  EXPECT_EQ(a.live_blocks(), 2u);
  EXPECT_EQ(a.bytes_in_use(), 256u);
  uint64_t mid = a.allocate(256);
  EXPECT_EQ(mid, 128u);
  a.release(mid);

  // Freed out of order, all blocks merge back into the whole arena.
  a.release(b[3]);  // merges with the hole on its left
  a.release(b[0]);  // merges with the hole on its right
  EXPECT_EQ(a.live_blocks(), 0u);
  EXPECT_EQ(a.bytes_in_use(), 0u);
  EXPECT_EQ(a.allocate(512), 0u);
}

TEST(Arena, CoalescesOnBothSidesAtOnce) {
  Arena a(384);
  uint64_t x = a.allocate(128), y = a.allocate(128), z = a.allocate(128);
  a.release(x);
  a.release(z);
  EXPECT_THROW(a.allocate(256), ArenaExhausted);  // 256 free, but in two pieces
  a.release(y);                                   // joins left and right holes
  EXPECT_EQ(a.allocate(384), 0u);
}

TEST(Arena, BestFitPicksTheSmallestHoleThatFits) {
  Arena a(1024);
  uint64_t p0 = a.allocate(64);   // 0
  uint64_t big = a.allocate(256); // 64
  uint64_t p1 = a.allocate(64);   // 320
  uint64_t mid = a.allocate(128); // 384
  uint64_t p2 = a.allocate(64);   // 512; tail [576, 1024) = 448 free
  ASSERT_EQ(big, 64u);
  ASSERT_EQ(mid, 384u);
  a.release(big);
  a.release(mid);
  // Holes: 256 @ 64, 128 @ 384, 448 @ 576.
  EXPECT_EQ(a.allocate(100), 384u);  // 128 hole, not the first or largest one
  EXPECT_EQ(a.allocate(200), 64u);   // 256 hole
  EXPECT_EQ(a.allocate(448), 576u);  // tail exactly
  EXPECT_THROW(a.allocate(1), ArenaExhausted);
  (void)p0, (void)p1, (void)p2;
}

TEST(Arena, ExhaustionMessageNamesArenaSizeAndRequest) {
  Arena a(4096);
  a.allocate(4000);
  try {
    a.allocate(12345);
    FAIL() << "expected ArenaExhausted";
  } catch (const ArenaExhausted& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("12345"), std::string::npos) << m;
    EXPECT_NE(m.find("4096"), std::string::npos) << m;
  }
  // ArenaExhausted is a runtime_error, so generic handlers catch it.
  EXPECT_THROW(a.allocate(1 << 20), std::runtime_error);
  EXPECT_EQ(a.live_blocks(), 1u);  // failed requests leave no trace
  EXPECT_EQ(a.bytes_in_use(), 4032u);
}

TEST(Arena, HugeRequestThrowsInsteadOfWrappingAround) {
  // round_up(bytes, 64) would wrap to 0 for bytes > 2^64 - 64 and "fit"
  // any hole; allocate() must refuse such a request instead.
  Arena a(4096);
  for (uint64_t huge : {std::numeric_limits<uint64_t>::max(), std::numeric_limits<uint64_t>::max() - 10}) {
    bool threw = false;
    uint64_t off = 0;
    try {
      off = a.allocate(huge);
    } catch (const ArenaExhausted&) {
      threw = true;
    }
    EXPECT_TRUE(threw) << "allocate(" << huge << ") returned offset " << off << " with live_blocks() == "
                       << a.live_blocks() << "; allocate(64) now returns " << a.allocate(64) << " too";
  }
}

TEST(Arena, BlockOfValidatesRanges) {
  Arena a(1024);
  uint64_t x = a.allocate(128);  // [0, 128)
  uint64_t y = a.allocate(64);   // [128, 192)
  EXPECT_EQ(a.block_of(0, 128).offset, x);
  EXPECT_EQ(a.block_of(10, 20).offset, x);
  EXPECT_EQ(a.block_of(127, 128).offset, x);
  EXPECT_EQ(a.block_of(128, 192).offset, y);
  EXPECT_EQ(a.block_of(150, 151).offset, y);
  // Straddles two blocks.
  EXPECT_THROW(a.block_of(120, 130), std::invalid_argument);
  // Past the end of the last live block, in free space.
  EXPECT_THROW(a.block_of(128, 193), std::invalid_argument);
  EXPECT_THROW(a.block_of(200, 210), std::invalid_argument);
  // Past the end of the arena.
  EXPECT_THROW(a.block_of(2000, 2001), std::invalid_argument);
  // A freed block is no longer a valid target.
  a.release(x);
  EXPECT_THROW(a.block_of(10, 20), std::invalid_argument);
  EXPECT_EQ(a.block_of(130, 140).offset, y);
}

TEST(Arena, RefsKeepABlockAliveUntilTheLastRelease) {
  Arena a(256);
  uint64_t x = a.allocate(256);
  a.retain(x);
  a.retain(x);
  a.release(x);
  a.release(x);
  EXPECT_EQ(a.live_blocks(), 1u);
  EXPECT_EQ(a.bytes_in_use(), 256u);
  EXPECT_EQ(a.block_of(0, 1).offset, x);
  EXPECT_THROW(a.allocate(64), ArenaExhausted);
  a.release(x);
  EXPECT_EQ(a.live_blocks(), 0u);
  EXPECT_EQ(a.bytes_in_use(), 0u);
  EXPECT_EQ(a.allocate(64), 0u);
}

TEST(Arena, RandomAllocReleaseKeepsAccountingConsistent) {
  Arena a(64 * 1024);
  std::mt19937 rng(7);
  struct Live {
    uint64_t off, size;
  };
  std::vector<Live> live;
  uint64_t expect_in_use = 0;
  for (int i = 0; i < 20000; ++i) {
    if (live.empty() || rng() % 3 != 0) {
      uint64_t want = 1 + rng() % 2000;
      uint64_t need = (want + 63) / 64 * 64;
      try {
        uint64_t off = a.allocate(want);
        ASSERT_EQ(off % 64, 0u);
        ASSERT_LE(off + need, a.size());
        for (auto& l : live) ASSERT_TRUE(off + need <= l.off || l.off + l.size <= off) << "overlapping blocks";
        live.push_back({off, need});
        expect_in_use += need;
      } catch (const ArenaExhausted&) {
        ASSERT_GT(expect_in_use + need, 0u);
      }
    } else {
      size_t k = rng() % live.size();
      a.release(live[k].off);
      expect_in_use -= live[k].size;
      live[k] = live.back();
      live.pop_back();
    }
    ASSERT_EQ(a.bytes_in_use(), expect_in_use);
    ASSERT_EQ(a.live_blocks(), live.size());
  }
  for (auto& l : live) a.release(l.off);
  EXPECT_EQ(a.bytes_in_use(), 0u);
  EXPECT_EQ(a.allocate(64 * 1024), 0u);  // everything coalesced back
}

TEST(Arena, EveryAllocationGetsANewGeneration) {
  Arena a(1024);
  uint64_t x = a.allocate(64);
  BlockRef first = a.block_of(x, x + 64);
  EXPECT_NE(first.gen, 0u);
  EXPECT_TRUE(a.live(first));
  a.release(x);
  EXPECT_FALSE(a.live(first));
  uint64_t y = a.allocate(64);  // the same bytes again...
  ASSERT_EQ(x, y);
  BlockRef second = a.block_of(y, y + 64);
  EXPECT_NE(second.gen, first.gen) << "...but a new allocation";
  EXPECT_FALSE(a.live(first));
  EXPECT_TRUE(a.live(second));
}
