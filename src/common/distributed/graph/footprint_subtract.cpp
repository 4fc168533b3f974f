// subtract(): the difference of two footprints.
//
// The strides of both views, sorted descending, form the layout S_0 > ... > S_{m-1};
// it is nested when each S_e is a multiple of S_{e+1}. Relative to an origin O, a
// byte x then has unique mixed-radix coordinates
//   x - O = c_0*S_0 + ... + c_{m-1}*S_{m-1} + c_m,
// c_0 any integer, c_e in [0, S_{e-1}/S_e), c_m (the byte digit) in [0, S_{m-1}).
// A view is the product of its segments (see Segment), each a range of digit
// values, and a range is a union of a few boxes (a partial head cell, full
// cells, a partial tail cell, recursively per level). Box differences are boxes
// again, and a box maps back to a footprint. Strides that do not nest fall back
// to cutting one footprint into its outermost slices (subtract_step).
#include <algorithm>

#include "common/distributed/graph/footprint.h"

namespace tierflow {

namespace {

// Up to kMaxDims distinct strides plus the byte digit; pairs with more distinct
// strides are cut into slices first (see subtract_step).
constexpr int kLevels = kMaxDims + 1;
constexpr int kMaxBoxes = 48;
constexpr int kOriginBudget = 1024;
constexpr int kPeelBudget = 256;     // subtract steps per call, over all peeled slices
constexpr uint64_t kMaxPeel = 64;    // slices one peel may visit

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

struct Layout {
  int m = 0;               // stride levels 0..m-1; level m is the byte digit
  int64_t cell[kLevels];   // bytes per unit of digit e; cell[m] = 1
  int64_t radix[kLevels];  // digit e in [0, radix[e]) for e >= 1; digit 0 is unbounded

  int level_of(int64_t s) const {
    for (int e = 0; e < m; ++e)
      if (cell[e] == s) return e;
    return -1;
  }
};

struct Box {
  int64_t lo[kLevels], hi[kLevels];
};

struct Boxes {
  Box b[kMaxBoxes];
  int n = 0;
  bool push(const Box& x) {
    if (n == kMaxBoxes) return false;
    b[n++] = x;
    return true;
  }
};

bool make_layout(const Footprint& a, const Footprint& b, Layout* L) {
  int64_t s[2 * kMaxDims];
  int m = 0;
  for (int i = 0; i < a.ndim; ++i) s[m++] = static_cast<int64_t>(a.stride[i]);
  for (int i = 0; i < b.ndim; ++i) s[m++] = static_cast<int64_t>(b.stride[i]);
  std::sort(s, s + m, [](int64_t x, int64_t y) { return x > y; });
  m = static_cast<int>(std::unique(s, s + m) - s);
  if (m >= kLevels) return false;
  for (int e = 0; e + 1 < m; ++e)
    if (s[e] % s[e + 1] != 0) return false;
  L->m = m;
  for (int e = 0; e < m; ++e) {
    L->cell[e] = s[e];
    L->radix[e] = e == 0 ? 0 : s[e - 1] / s[e];
  }
  L->cell[m] = 1;
  L->radix[m] = s[m - 1];
  return true;
}

// A footprint in a layout, as segments: each of its dims (outermost first) owns
// the levels from just below the previous dim's level down to its own, and its
// index range is a range of values of those digits in units of its stride; the
// run owns the levels below the smallest stride, in bytes. A dense footprint is
// one segment over all levels. The footprint is the product of its segments,
// exactly when no segment's range carries into the level above it.
struct Segment {
  int first, last;  // levels first..last; values in units of cell[last]
  int64_t count;
};

struct Side {
  int k = 0;
  Segment seg[kMaxDims + 1];
};

Side side_of(const Footprint& f, const Layout& L) {
  Side x;
  int prev = -1;
  for (int i = 0; i < f.ndim; ++i) {
    int lev = L.level_of(static_cast<int64_t>(f.stride[i]));
    x.seg[x.k++] = Segment{prev + 1, lev, static_cast<int64_t>(f.count[i])};
    prev = lev;
  }
  x.seg[x.k++] = Segment{prev + 1, L.m, static_cast<int64_t>(f.run)};
  return x;
}

// The value of a segment's digits, in units of its last level.
int64_t segment_value(const Layout& L, const Segment& g, const int64_t* digit) {
  int64_t v = 0;
  for (int e = g.first; e <= g.last; ++e) v += digit[e] * (L.cell[e] / L.cell[g.last]);
  return v;
}

// Whether the segment's range, starting at these digits, stays inside one
// unit of the level above it. The top segment (first == 0) never carries.
bool segment_fits(const Layout& L, const Segment& g, const int64_t* digit) {
  return g.first == 0 || segment_value(L, g, digit) + g.count <= L.cell[g.first - 1] / L.cell[g.last];
}

// Chooses the digits delta_e (e = m..1) of b.base - a.base, each in
// (-radix_e, radix_e), so that with a's digits alpha_e = max(0, -delta_e) and
// b's beta_e = max(0, delta_e) no segment of either side carries. Smaller
// digits only loosen that limit, so trying both representatives of each digit
// (bottom-up, depth-first, checking a segment once all its digits are chosen)
// is complete.
struct OriginSearch {
  const Layout& L;
  const Side& A;
  const Side& B;
  int64_t alpha[kLevels], beta[kLevels];
  int budget = kOriginBudget;

  // Segments whose digits all lie below level e are complete on entering e.
  bool fits_below(int e) const {
    for (int i = 0; i < A.k; ++i)
      if (A.seg[i].first == e + 1 && !segment_fits(L, A.seg[i], alpha)) return false;
    for (int i = 0; i < B.k; ++i)
      if (B.seg[i].first == e + 1 && !segment_fits(L, B.seg[i], beta)) return false;
    return true;
  }

  bool solve(int e, int64_t v) {
    if (--budget < 0 || !fits_below(e)) return false;
    if (e == 0) return true;
    int64_t R = L.radix[e];
    int64_t d = v - floor_div(v, R) * R;
    for (int64_t digit : {d, d - R}) {
      if (digit == -R) continue;
      alpha[e] = digit < 0 ? -digit : 0;
      beta[e] = digit > 0 ? digit : 0;
      if (solve(e - 1, (v - digit) / R)) return true;
    }
    return false;
  }
};

// Appends the boxes of the range [lo, hi) of values of levels e..last (in
// units of cell[last]; signed when e == 0) under the prefix `pre`: a partial
// head cell, full cells, a partial tail cell, recursively per level.
bool decompose(const Layout& L, int64_t lo, int64_t hi, int e, int last, Box pre, Boxes* out) {
  if (e == last) {
    pre.lo[e] = lo;
    pre.hi[e] = hi;
    return out->push(pre);
  }
  int64_t c = L.cell[e] / L.cell[last];
  int64_t qlo = floor_div(lo, c), rlo = lo - qlo * c;
  int64_t qhi = floor_div(hi, c), rhi = hi - qhi * c;
  if (qlo == qhi) {
    pre.lo[e] = qlo;
    pre.hi[e] = qlo + 1;
    return decompose(L, rlo, rhi, e + 1, last, pre, out);
  }
  if (rlo > 0) {
    pre.lo[e] = qlo;
    pre.hi[e] = qlo + 1;
    if (!decompose(L, rlo, c, e + 1, last, pre, out)) return false;
    ++qlo;
  }
  if (qlo < qhi) {
    Box full = pre;
    full.lo[e] = qlo;
    full.hi[e] = qhi;
    for (int f = e + 1; f <= last; ++f) {
      full.lo[f] = 0;
      full.hi[f] = L.radix[f];
    }
    if (!out->push(full)) return false;
  }
  if (rhi > 0) {
    pre.lo[e] = qhi;
    pre.hi[e] = qhi + 1;
    return decompose(L, 0, rhi, e + 1, last, pre, out);
  }
  return true;
}

// The boxes of a footprint whose base lies at offset y0 from the origin: the
// product of its segments' boxes. *spare is scratch.
bool boxes_of(const Layout& L, const Side& x, int64_t y0, Boxes* out, Boxes* spare) {
  int64_t digit[kLevels], v = y0;
  for (int e = L.m; e >= 1; --e) {
    digit[e] = v - floor_div(v, L.radix[e]) * L.radix[e];
    v = floor_div(v, L.radix[e]);
  }
  digit[0] = v;
  Boxes *cur = out, *next = spare;
  cur->n = 0;
  cur->push(Box{});
  for (int i = 0; i < x.k; ++i) {
    const Segment& g = x.seg[i];
    int64_t lo = segment_value(L, g, digit);
    next->n = 0;
    for (int j = 0; j < cur->n; ++j)
      if (!decompose(L, lo, lo + g.count, g.first, g.last, cur->b[j], next)) return false;
    std::swap(cur, next);
  }
  if (cur != out) {
    out->n = cur->n;
    std::copy(cur->b, cur->b + cur->n, out->b);
  }
  return true;
}

// x minus y, as disjoint boxes: peel off, axis by axis, the parts of x below
// and above y's range, then clip x to that range.
bool box_diff(const Box& x, const Box& y, int levels, Boxes* out) {
  for (int e = 0; e < levels; ++e)
    if (x.hi[e] <= y.lo[e] || y.hi[e] <= x.lo[e]) return out->push(x);
  Box cur = x;
  for (int e = 0; e < levels; ++e) {
    if (cur.lo[e] < y.lo[e]) {
      Box p = cur;
      p.hi[e] = y.lo[e];
      if (!out->push(p)) return false;
      cur.lo[e] = y.lo[e];
    }
    if (cur.hi[e] > y.hi[e]) {
      Box p = cur;
      p.lo[e] = y.hi[e];
      if (!out->push(p)) return false;
      cur.hi[e] = y.hi[e];
    }
  }
  return true;
}

// Joins boxes that agree on every axis but one, on which they touch.
void coalesce(Boxes* bx, int levels) {
  for (bool joined = true; joined;) {
    joined = false;
    for (int i = 0; i < bx->n && !joined; ++i)
      for (int j = i + 1; j < bx->n && !joined; ++j) {
        Box& p = bx->b[i];
        const Box& q = bx->b[j];
        int axis = -1, differ = 0;
        for (int e = 0; e < levels && differ < 2; ++e)
          if (p.lo[e] != q.lo[e] || p.hi[e] != q.hi[e]) {
            axis = e;
            ++differ;
          }
        if (differ != 1 || (p.hi[axis] != q.lo[axis] && q.hi[axis] != p.lo[axis])) continue;
        p.lo[axis] = std::min(p.lo[axis], q.lo[axis]);
        p.hi[axis] = std::max(p.hi[axis], q.hi[axis]);
        bx->b[j] = bx->b[--bx->n];
        joined = true;
      }
  }
}

bool to_footprint(const Layout& L, int64_t origin, const Box& x, Footprint* f) {
  detail::Dim dims[kLevels];
  int64_t base = origin;
  for (int e = 0; e <= L.m; ++e) base += x.lo[e] * L.cell[e];
  for (int e = 0; e < L.m; ++e) dims[e] = detail::Dim{x.hi[e] - x.lo[e], L.cell[e]};
  return detail::canonicalise(base, dims, L.m, x.hi[L.m] - x.lo[L.m], f);
}

// The layout method: both footprints as boxes in the mixed-radix coordinates
// of their common nested layout. Appends to *out only on success.
bool subtract_nested(const Footprint& a, const Footprint& b, std::vector<Footprint>* out) {
  Layout L;
  if (!make_layout(a, b, &L)) return false;
  Side sa = side_of(a, L), sb = side_of(b, L);
  OriginSearch os{L, sa, sb, {}, {}};
  os.alpha[0] = os.beta[0] = 0;
  int64_t delta = static_cast<int64_t>(b.base) - static_cast<int64_t>(a.base);
  if (!os.solve(L.m, delta)) return false;
  int64_t origin = static_cast<int64_t>(a.base);
  for (int e = 1; e <= L.m; ++e) origin -= os.alpha[e] * L.cell[e];

  const int levels = L.m + 1;
  Boxes ba, bb, spare;
  if (!boxes_of(L, sa, static_cast<int64_t>(a.base) - origin, &ba, &spare)) return false;
  if (!boxes_of(L, sb, static_cast<int64_t>(b.base) - origin, &bb, &spare)) return false;
  Boxes *cur = &ba, *next = &spare;
  for (int j = 0; j < bb.n; ++j) {
    next->n = 0;
    for (int i = 0; i < cur->n; ++i)
      if (!box_diff(cur->b[i], bb.b[j], levels, next)) return false;
    std::swap(cur, next);
  }
  coalesce(cur, levels);
  if (cur->n > detail::kMaxSubtractPieces) return false;
  size_t before = out->size();
  for (int i = 0; i < cur->n; ++i) {
    out->emplace_back();
    if (!to_footprint(L, origin, cur->b[i], &out->back())) {
      out->resize(before);
      return false;
    }
  }
  return true;
}

// Indices [i, i + n) of f's outermost dim, canonical again (dropping the dim when n == 1).
Footprint outer_slice(const Footprint& f, uint64_t i, uint64_t n) {
  Footprint g = f;
  g.base = f.base + i * f.stride[0];
  g.count[0] = n;
  if (n == 1) {
    std::copy(f.count + 1, f.count + f.ndim, g.count);
    std::copy(f.stride + 1, f.stride + f.ndim, g.stride);
    g.count[f.ndim - 1] = g.stride[f.ndim - 1] = 0;
    --g.ndim;
  }
  g.end = g.base + g.run;
  for (int d = 0; d < g.ndim; ++d) g.end += (g.count[d] - 1) * g.stride[d];
  return g;
}

// The outer indices of f whose slices' spans meet [lo, hi), as [*first, *last];
// false when there are none.
bool outer_range(const Footprint& f, uint64_t lo, uint64_t hi, uint64_t* first, uint64_t* last) {
  int64_t s = static_cast<int64_t>(f.stride[0]), n = static_cast<int64_t>(f.count[0]);
  int64_t w = static_cast<int64_t>(f.end - f.base) - (n - 1) * s;  // one slice's span
  int64_t rel_lo = static_cast<int64_t>(lo) - static_cast<int64_t>(f.base);
  int64_t rel_hi = static_cast<int64_t>(hi) - static_cast<int64_t>(f.base);
  int64_t i0 = std::max<int64_t>(0, -floor_div(-(rel_lo - w + 1), s));
  int64_t i1 = std::min<int64_t>(n - 1, floor_div(rel_hi - 1, s));
  *first = static_cast<uint64_t>(i0);
  *last = static_cast<uint64_t>(i1);
  return i0 <= i1;
}

bool subtract_step(const Footprint& a, const Footprint& b, std::vector<Footprint>* out, int* budget);

// a minus b slice by slice of a's outermost dim: slices b misses stay grouped,
// covered ones go, the others recurse. Needs slices with disjoint spans.
bool peel_a(const Footprint& a, const Footprint& b, std::vector<Footprint>* out, int* budget) {
  uint64_t n = a.count[0], first, last;
  if (a.end - a.base - (n - 1) * a.stride[0] > a.stride[0]) return false;
  if (!outer_range(a, b.base, b.end, &first, &last)) return false;  // never: a and b overlap
  if (last - first >= kMaxPeel) return false;
  uint64_t keep = 0;  // start of the run of untouched slices ending at i
  for (uint64_t i = first; i <= last; ++i) {
    Footprint s = outer_slice(a, i, 1);
    if (!overlaps(s, b)) continue;
    if (i > keep) out->push_back(outer_slice(a, keep, i - keep));
    keep = i + 1;
    if (!subtract_step(s, b, out, budget)) return false;
  }
  if (n > keep) out->push_back(outer_slice(a, keep, n - keep));
  return true;
}

// a minus b, subtracting b's outermost slices one after another.
bool peel_b(const Footprint& a, const Footprint& b, std::vector<Footprint>* out, int* budget) {
  uint64_t first, last;
  if (!outer_range(b, a.base, a.end, &first, &last)) return false;
  if (last - first >= kMaxPeel) return false;
  std::vector<Footprint> cur{a}, next;
  for (uint64_t i = first; i <= last && !cur.empty(); ++i) {
    Footprint s = outer_slice(b, i, 1);
    next.clear();
    for (auto& p : cur)
      if (!subtract_step(p, s, &next, budget)) return false;
    if (next.size() > static_cast<size_t>(detail::kMaxSubtractPieces)) return false;
    cur.swap(next);
  }
  out->insert(out->end(), cur.begin(), cur.end());
  return true;
}

// Appends a minus b (possibly in partial pieces on failure: the caller rolls back).
bool subtract_step(const Footprint& a, const Footprint& b, std::vector<Footprint>* out, int* budget) {
  if (--*budget < 0) return false;
  if (a.empty()) return true;
  if (!overlaps(a, b)) {
    out->push_back(a);
    return true;
  }
  if (b.dense() && b.base <= a.base && a.end <= b.end) return true;
  if (a.dense() && b.dense()) {
    if (a.base < b.base) out->push_back(Footprint::range(a.base, b.base));
    if (b.end < a.end) out->push_back(Footprint::range(b.end, a.end));
    return true;
  }
  if (subtract_nested(a, b, out)) return true;
  // Strides that do not nest: split the footprint with more dims along its outermost one.
  if (a.ndim >= b.ndim) return peel_a(a, b, out, budget);
  return peel_b(a, b, out, budget);
}

}  // namespace

bool subtract(const Footprint& a, const Footprint& b, std::vector<Footprint>* out) {
  size_t before = out->size();
  int budget = kPeelBudget;
  if (subtract_step(a, b, out, &budget) && out->size() - before <= static_cast<size_t>(detail::kMaxSubtractPieces))
    return true;
  out->resize(before);
  return false;
}

}  // namespace tierflow
