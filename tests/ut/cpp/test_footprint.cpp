// Footprint: canonical forms, and overlaps/covers/subtract against byte sets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <ostream>
#include <random>
#include <vector>

#include "common/distributed/graph/footprint.h"

using namespace tierflow;

namespace tierflow {
// Readable failure messages.
void PrintTo(const Footprint& f, std::ostream* os) {
  *os << "{base " << f.base << ", end " << f.end << ", run " << f.run << ", dims";
  for (int i = 0; i < f.ndim; ++i) *os << " (" << f.count[i] << ", " << f.stride[i] << ")";
  *os << "}";
}
}  // namespace tierflow

namespace {

TensorDesc view(uint64_t offset, int itemsize, std::vector<int64_t> shape, std::vector<int64_t> strides) {
  TensorDesc d;
  d.offset = offset;
  d.dtype.bits = static_cast<uint8_t>(itemsize * 8);
  d.ndim = static_cast<uint8_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    d.shape[i] = shape[i];
    d.strides[i] = strides[i];
  }
  return d;
}

// Byte set as a bitmap over [0, size).
using Bytes = std::vector<uint8_t>;

Bytes bytes_of(const TensorDesc& d, size_t size) {
  Bytes b(size, 0);
  int64_t n = 1;
  for (int i = 0; i < d.ndim; ++i) n *= d.shape[i];
  for (int64_t flat = 0; flat < n; ++flat) {
    int64_t off = static_cast<int64_t>(d.offset), rest = flat;
    for (int i = d.ndim - 1; i >= 0; --i) {
      off += (rest % d.shape[i]) * d.strides[i];
      rest /= d.shape[i];
    }
    for (int r = 0; r < d.dtype.itemsize(); ++r) b.at(static_cast<size_t>(off + r)) = 1;
  }
  return b;
}

Bytes bytes_of(const Footprint& f, size_t size) {
  Bytes b(size, 0);
  if (f.empty()) return b;
  uint64_t n = 1;
  for (int i = 0; i < f.ndim; ++i) n *= f.count[i];
  for (uint64_t flat = 0; flat < n; ++flat) {
    uint64_t off = f.base, rest = flat;
    for (int i = f.ndim - 1; i >= 0; --i) {
      off += (rest % f.count[i]) * f.stride[i];
      rest /= f.count[i];
    }
    for (uint64_t r = 0; r < f.run; ++r) b.at(off + r) = 1;
  }
  return b;
}

bool any_common(const Bytes& a, const Bytes& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] && b[i]) return true;
  return false;
}

bool subset(const Bytes& inner, const Bytes& outer) {
  for (size_t i = 0; i < inner.size(); ++i)
    if (inner[i] && !outer[i]) return false;
  return true;
}

// The canonical-form invariants of the header, and span == [lowest, highest].
void expect_canonical(const Footprint& f, const Bytes& want) {
  ASSERT_EQ(bytes_of(f, want.size()), want);
  if (f.empty()) return;
  for (int i = 0; i < f.ndim; ++i) {
    EXPECT_GT(f.count[i], 1u);
    EXPECT_GT(f.stride[i], f.run);
    if (i > 0) {
    EXPECT_GT(f.stride[i - 1], f.stride[i]);
  }
    if (i > 0) {
    EXPECT_NE(f.stride[i - 1], f.stride[i] * f.count[i]);
  }
  }
  size_t lo = std::find(want.begin(), want.end(), 1) - want.begin();
  size_t hi = want.rend() - std::find(want.rbegin(), want.rend(), 1);
  EXPECT_EQ(f.base, lo);
  EXPECT_EQ(f.end, hi);
}

// int64[2, 20000]: row stride 160000; column block [c0, c1).
Footprint cols(uint64_t c0, uint64_t c1) { return Footprint::box(c0 * 8, {{2, 160000}}, (c1 - c0) * 8); }

}  // namespace

TEST(Footprint, DenseAndEmpty) {
  EXPECT_EQ(Footprint::of(view(16, 8, {3, 4}, {32, 8})), Footprint::range(16, 112));
  EXPECT_TRUE(Footprint::range(5, 5).empty());
  EXPECT_TRUE(Footprint::range(6, 5).empty());
  Footprint e = Footprint::of(view(40, 4, {3, 0}, {4, 4}));
  EXPECT_TRUE(e.empty());
  EXPECT_EQ(e.base, 40u);
  Footprint s = Footprint::of(view(40, 4, {}, {}));  // 0-d: one element
  EXPECT_EQ(s, Footprint::range(40, 44));
}

TEST(Footprint, CanonicalFOrderNegativeAndBroadcast) {
  // F-order int64[3, 4] is as dense as C-order.
  EXPECT_EQ(Footprint::of(view(0, 8, {3, 4}, {8, 24})), Footprint::range(0, 96));
  // x[::-1] of int32[10]: element 0 sits at the highest address.
  EXPECT_EQ(Footprint::of(view(36, 4, {10}, {-4})), Footprint::range(0, 40));
  // x[::-2, ::-1] of int8[4, 6] starting at element (3, 5).
  Footprint f = Footprint::of(view(23, 1, {2, 6}, {-12, -1}));
  EXPECT_EQ(f, Footprint::box(6, {{2, 12}}, 6));
  // Broadcast dims touch nothing new; count-1 dims vanish.
  EXPECT_EQ(Footprint::of(view(8, 8, {5, 3, 1}, {0, 8, 1000})), Footprint::range(8, 32));
  // Equal strides collapse (as_strided with repeated stride).
  EXPECT_EQ(Footprint::of(view(0, 4, {3, 3}, {4, 4})), Footprint::range(0, 20));
}

TEST(Footprint, CanonicalMergesAndAbsorbs) {
  // x[:, :, 0:4] of int8[2, 3, 8]: rows of 8 with 4 used, dims 0 and 1 continue each other.
  EXPECT_EQ(Footprint::of(view(0, 1, {2, 3, 4}, {24, 8, 1})), Footprint::box(0, {{6, 8}}, 4));
  // A column block of int64[2, 20000].
  Footprint c = Footprint::of(view(32, 8, {2, 4}, {160000, 8}));
  EXPECT_EQ(c.ndim, 1);
  EXPECT_EQ(c.count[0], 2u);
  EXPECT_EQ(c.stride[0], 160000u);
  EXPECT_EQ(c.run, 32u);
  EXPECT_EQ(c.base, 32u);
  EXPECT_EQ(c.end, 160064u);
  // x[0::2] of int8[10].
  EXPECT_EQ(Footprint::of(view(0, 1, {5}, {2})), Footprint::box(0, {{5, 2}}, 1));
  // box() canonicalises: full rows become one dense run; the order of dims does not matter.
  EXPECT_EQ(Footprint::box(0, {{4, 8}, {3, 32}}, 8), Footprint::box(0, {{3, 32}}, 32));
  EXPECT_EQ(Footprint::box(0, {{2, 100}, {3, 10}}, 10), Footprint::box(0, {{2, 100}}, 30));
  // Transposed 3-D: [2, 3, 4] int16 seen as (4, 2, 3) with strides (2, 24, 8) is dense.
  EXPECT_EQ(Footprint::of(view(0, 2, {4, 2, 3}, {2, 24, 8})), Footprint::range(0, 48));
}

TEST(Footprint, ColumnsAndTiles) {
  EXPECT_FALSE(overlaps(cols(0, 4), cols(4, 8)));
  EXPECT_TRUE(overlaps(cols(0, 4), cols(3, 8)));
  EXPECT_FALSE(overlaps(cols(19996, 20000), cols(0, 4)));
  // A dense range inside row 0 meets only the columns it crosses.
  EXPECT_FALSE(overlaps(cols(0, 4), Footprint::range(32, 160000)));
  EXPECT_TRUE(overlaps(cols(0, 4), Footprint::range(31, 40)));
  EXPECT_TRUE(overlaps(cols(0, 4), Footprint::range(160000, 160001)));
  // 2-D blocking of int32[8, 8] into 4x4 tiles: row stride 32.
  auto tile = [](uint64_t i, uint64_t j) { return Footprint::box(i * 4 * 32 + j * 16, {{4, 32}}, 16); };
  for (uint64_t a = 0; a < 4; ++a)
    for (uint64_t b = 0; b < 4; ++b) EXPECT_EQ(overlaps(tile(a / 2, a % 2), tile(b / 2, b % 2)), a == b);
}

TEST(Footprint, EvenOddAndThreeD) {
  Footprint even = Footprint::of(view(0, 4, {8}, {8})), odd = Footprint::of(view(4, 4, {8}, {8}));
  EXPECT_FALSE(overlaps(even, odd));
  EXPECT_TRUE(overlaps(even, Footprint::of(view(0, 4, {4}, {16}))));
  // x[:, ::2] and x[:, 1::2] of int64[3, 6].
  EXPECT_FALSE(overlaps(Footprint::of(view(0, 8, {3, 3}, {48, 16})), Footprint::of(view(8, 8, {3, 3}, {48, 16}))));
  // int8[4, 5, 6]: x[:, 1:3, 2:4] vs x[:, 3:5, 2:4] and vs x[1, :, 3].
  Footprint a = Footprint::of(view(6 + 2, 1, {4, 2, 2}, {30, 6, 1}));
  Footprint b = Footprint::of(view(18 + 2, 1, {4, 2, 2}, {30, 6, 1}));
  Footprint c = Footprint::of(view(30 + 3, 1, {5}, {6}));
  EXPECT_FALSE(overlaps(a, b));
  EXPECT_TRUE(overlaps(a, c));
  EXPECT_TRUE(overlaps(b, c));
  EXPECT_FALSE(overlaps(c, Footprint::of(view(30 + 4, 1, {5}, {6}))));
  // Negative strides: x[::-2] touches the odd elements of int16[8].
  EXPECT_FALSE(overlaps(Footprint::of(view(14, 2, {4}, {-4})), Footprint::of(view(0, 2, {4}, {4}))));
  EXPECT_TRUE(overlaps(Footprint::of(view(14, 2, {4}, {-4})), Footprint::of(view(6, 2, {2}, {2}))));
}

TEST(Footprint, Covers) {
  EXPECT_TRUE(covers(Footprint::range(0, 320000), cols(4, 8)));
  EXPECT_TRUE(covers(cols(0, 8), cols(4, 8)));
  EXPECT_TRUE(covers(cols(0, 8), Footprint::range(160000, 160064)));
  EXPECT_FALSE(covers(cols(0, 8), Footprint::range(160000, 160065)));
  EXPECT_FALSE(covers(cols(4, 8), cols(0, 8)));
  EXPECT_TRUE(covers(cols(0, 4), Footprint::range(0, 0)));
  EXPECT_FALSE(covers(Footprint::range(0, 0), cols(0, 4)));
  // A 4x4 tile covers its 2x2 sub-tile of int32[8, 8]; not the neighbouring one.
  Footprint t = Footprint::box(0, {{4, 32}}, 16);
  EXPECT_TRUE(covers(t, Footprint::box(32 + 4, {{2, 32}}, 8)));
  EXPECT_FALSE(covers(t, Footprint::box(32 + 12, {{2, 32}}, 8)));
}

TEST(Footprint, SubtractWholeMinusColumnBlockGivesTwoPieces) {
  std::vector<Footprint> out;
  ASSERT_TRUE(subtract(Footprint::range(0, 320000), cols(4, 8), &out));
  ASSERT_EQ(out.size(), 2u);
  std::sort(out.begin(), out.end(), [](const Footprint& x, const Footprint& y) { return x.base < y.base; });
  EXPECT_EQ(out[0], cols(0, 4));
  EXPECT_EQ(out[1], cols(8, 20000));
}

TEST(Footprint, SubtractBasics) {
  std::vector<Footprint> out;
  ASSERT_TRUE(subtract(Footprint::range(0, 100), Footprint::range(40, 60), &out));
  EXPECT_EQ(out, (std::vector<Footprint>{Footprint::range(0, 40), Footprint::range(60, 100)}));
  out.clear();
  ASSERT_TRUE(subtract(cols(0, 4), cols(0, 8), &out));  // covered: nothing left
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(subtract(cols(0, 4), cols(4, 8), &out));  // disjoint: a itself
  EXPECT_EQ(out, std::vector<Footprint>{cols(0, 4)});
  out.clear();
  // A column block minus its first row leaves its second row.
  ASSERT_TRUE(subtract(cols(0, 4), Footprint::range(0, 160000), &out));
  EXPECT_EQ(out, std::vector<Footprint>{Footprint::range(160000, 160032)});
  out.clear();
  // Even elements minus a dense middle: two strided pieces.
  ASSERT_TRUE(subtract(Footprint::box(0, {{8, 8}}, 4), Footprint::range(16, 40), &out));
  EXPECT_EQ(out.size(), 2u);
  // Steps 2 and 3 do not nest: a is cut slice by slice, exactly.
  out.clear();
  ASSERT_TRUE(subtract(Footprint::box(0, {{6, 2}}, 1), Footprint::box(0, {{4, 3}}, 1), &out));
  EXPECT_EQ(out, (std::vector<Footprint>{Footprint::box(2, {{2, 2}}, 1), Footprint::box(8, {{2, 2}}, 1)}));
  // ...but not beyond a bounded number of slices: false, and *out untouched.
  out.assign(1, Footprint::range(1, 2));
  EXPECT_FALSE(subtract(Footprint::box(0, {{1000, 2}}, 1), Footprint::box(0, {{1000, 3}}, 1), &out));
  EXPECT_EQ(out, std::vector<Footprint>{Footprint::range(1, 2)});
  EXPECT_FALSE(covers(Footprint::box(0, {{1000, 3}}, 2), Footprint::box(0, {{1000, 2}}, 1)));
}

namespace {

// A random array (up to 4 dims, random memory order) and random views of it:
// slices with steps (negative too), dropped and broadcast dims, transposes.
struct ViewGen {
  std::mt19937_64 rng;
  int64_t itemsize = 1, base = 0;
  std::vector<int64_t> shape, strides;
  size_t arena = 0;

  explicit ViewGen(uint64_t seed) : rng(seed) {}
  int64_t uni(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }

  void new_array(int max_dims) {
    static const int64_t kItem[] = {1, 2, 4, 8};
    itemsize = kItem[uni(0, 3)];
    int nd = static_cast<int>(uni(1, max_dims));
    shape.assign(nd, 0);
    for (auto& s : shape) s = uni(1, 6);
    std::vector<int> order(nd);  // memory order: order[0] is the outermost axis
    std::iota(order.begin(), order.end(), 0);
    if (uni(0, 2) == 0) std::shuffle(order.begin(), order.end(), rng);
    strides.assign(nd, 0);
    int64_t acc = itemsize;
    for (int k = nd - 1; k >= 0; --k) {
      strides[order[k]] = acc;
      acc *= shape[order[k]];
    }
    base = uni(0, 40);
    arena = static_cast<size_t>(base + acc + 8);
  }

  TensorDesc random_view() {
    TensorDesc d = view(static_cast<uint64_t>(base), static_cast<int>(itemsize), {}, {});
    std::vector<int64_t> sh, st;
    int64_t off = base;
    for (size_t i = 0; i < shape.size(); ++i) {
      int64_t n = shape[i];
      int kind = static_cast<int>(uni(0, 9));
      if (kind == 0) {  // integer index: the dim disappears
        off += uni(0, n - 1) * strides[i];
        continue;
      }
      static const int64_t kStep[] = {1, 1, 1, 2, 3, -1, -2};
      int64_t step = kind <= 3 ? 1 : kStep[uni(0, 6)];
      int64_t start = uni(0, n - 1);
      int64_t most = step > 0 ? (n - start + step - 1) / step : start / -step + 1;
      int64_t cnt = uni(0, 30) == 0 ? 0 : uni(1, most);
      off += start * strides[i];
      sh.push_back(cnt);
      st.push_back(step * strides[i]);
    }
    if (uni(0, 9) == 0) {  // broadcast dim
      sh.push_back(uni(2, 3));
      st.push_back(0);
    }
    std::vector<size_t> perm(sh.size());
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    d.offset = static_cast<uint64_t>(off);
    d.ndim = static_cast<uint8_t>(sh.size());
    for (size_t k = 0; k < sh.size(); ++k) {
      d.shape[k] = sh[perm[k]];
      d.strides[k] = st[perm[k]];
    }
    return d;
  }

  // Either a view or (one time in five) a dense byte range inside the array.
  TensorDesc random_access() {
    if (uni(0, 4) != 0) return random_view();
    int64_t lo = uni(base, static_cast<int64_t>(arena) - 8), hi = uni(lo, static_cast<int64_t>(arena) - 8);
    return view(static_cast<uint64_t>(lo), 1, {hi - lo}, {1});
  }
};

struct Stats {
  int cases = 0, overlapping = 0, overlap_false_pos = 0, covers_missed = 0, subtract_failed = 0;
  int nested_failed = 0;  // covers() or subtract() conservative although the layout nests
};

// Whether the strides of a and b together nest (each a multiple of the next smaller).
bool nested(const Footprint& a, const Footprint& b) {
  std::vector<uint64_t> s(a.stride, a.stride + a.ndim);
  s.insert(s.end(), b.stride, b.stride + b.ndim);
  std::sort(s.rbegin(), s.rend());
  for (size_t i = 0; i + 1 < s.size(); ++i)
    if (s[i] % s[i + 1] != 0) return false;
  return true;
}

void check_pair(const TensorDesc& da, const TensorDesc& db, size_t arena, Stats* st) {
  Bytes ba = bytes_of(da, arena), bb = bytes_of(db, arena);
  Footprint a = Footprint::of(da), b = Footprint::of(db);
  expect_canonical(a, ba);
  expect_canonical(b, bb);
  ++st->cases;
  bool common = any_common(ba, bb);
  st->overlapping += common;
  bool ov = overlaps(a, b);
  ASSERT_EQ(ov, overlaps(b, a));
  if (common) {
    ASSERT_TRUE(ov) << "missed overlap";
  }
  st->overlap_false_pos += ov && !common;

  bool inside = subset(bb, ba);
  bool cv = covers(a, b);
  if (!inside) {
    ASSERT_FALSE(cv) << "covers() claimed bytes it does not hold";
  }
  st->covers_missed += inside && !cv;
  st->nested_failed += inside && !cv && nested(a, b);

  std::vector<Footprint> pieces{Footprint::range(1, 2)};  // a sentinel *out must keep
  if (!subtract(a, b, &pieces)) {
    ASSERT_EQ(pieces.size(), 1u);
    ++st->subtract_failed;
    st->nested_failed += nested(a, b);
    return;
  }
  ASSERT_LE(pieces.size(), 17u);
  Bytes got(arena, 0);
  for (size_t i = 1; i < pieces.size(); ++i) {
    ASSERT_FALSE(pieces[i].empty());
    Bytes p = bytes_of(pieces[i], arena);
    expect_canonical(pieces[i], p);
    ASSERT_FALSE(any_common(p, got)) << "pieces overlap";
    for (size_t k = 0; k < arena; ++k) got[k] |= p[k];
  }
  for (size_t k = 0; k < arena; ++k) ASSERT_EQ(got[k], ba[k] && !bb[k]) << "byte " << k;
}

}  // namespace

TEST(Footprint, RandomViewsAgainstByteSets) {
  for (int max_dims : {1, 2, 3, 4}) {
    ViewGen g(0x5eed0000u + static_cast<uint64_t>(max_dims));
    Stats st;
    for (int arr = 0; arr < 400; ++arr) {
      g.new_array(max_dims);
      for (int k = 0; k < 12; ++k) {
        TensorDesc a = g.random_access(), b = g.random_access();
        check_pair(a, b, g.arena, &st);
        if (HasFatalFailure()) return;
      }
    }
    std::printf("[ dims<=%d ] %d pairs, %d overlapping; overlaps false positives %d, "
                "covers conservative %d, subtract fallbacks %d (%d of them on nested strides)\n",
                max_dims, st.cases, st.overlapping, st.overlap_false_pos, st.covers_missed, st.subtract_failed,
                st.nested_failed);
    // Nested strides never fall back; others only beyond the slice bounds.
    EXPECT_EQ(st.nested_failed, 0);
    EXPECT_LE(st.subtract_failed, st.overlapping / 200);
    EXPECT_LE(st.covers_missed, st.overlapping / 200);
    if (max_dims <= 3) {
    EXPECT_EQ(st.overlap_false_pos, 0);
  }
    EXPECT_LE(st.overlap_false_pos, st.cases / 1000);
  }
}

// Views drawn from one regular family (blocks of rows, columns, tiles, even/odd of
// a C-order matrix or a dense range) always nest: covers() and subtract() are exact.
TEST(Footprint, RegularBlockingsAreExact) {
  std::mt19937_64 rng(77);
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  Stats st;
  for (int iter = 0; iter < 4000; ++iter) {
    int64_t rows = 8, cols = 8, item = 4, row = cols * item;
    size_t arena = static_cast<size_t>(rows * row);
    auto block = [&]() {
      int kind = static_cast<int>(uni(0, 3));
      if (kind == 0) {  // dense range
        int64_t lo = uni(0, rows * row - 1), hi = uni(lo, rows * row);
        return view(static_cast<uint64_t>(lo), 1, {hi - lo}, {1});
      }
      int64_t bw = int64_t{1} << uni(0, 3), bh = int64_t{1} << uni(0, 3);
      int64_t c0 = uni(0, cols / bw - 1) * bw, r0 = uni(0, rows / bh - 1) * bh;
      if (kind == 1) return view(static_cast<uint64_t>(c0 * item), 4, {rows, bw}, {row, item});  // columns
      if (kind == 2) return view(static_cast<uint64_t>(r0 * row + c0 * item), 4, {bh, bw}, {row, item});  // tile
      return view(static_cast<uint64_t>(uni(0, 1) * item), 4, {rows, cols / 2}, {row, 2 * item});  // even/odd
    };
    check_pair(block(), block(), arena, &st);
    if (HasFatalFailure()) return;
  }
  std::printf("[ regular ] %d pairs: overlaps false positives %d, covers conservative %d, subtract fallbacks %d\n",
              st.cases, st.overlap_false_pos, st.covers_missed, st.subtract_failed);
  EXPECT_EQ(st.overlap_false_pos, 0);
  EXPECT_EQ(st.covers_missed, 0);
  EXPECT_EQ(st.subtract_failed, 0);
}
