#include "common/distributed/graph/footprint.h"

#include <algorithm>
#include <cassert>
#include <stdexcept>

namespace tierflow {

namespace detail {

bool canonicalise(int64_t base, Dim* dims, int nd, int64_t run, Footprint* out) {
  *out = Footprint{};
  out->base = out->end = static_cast<uint64_t>(base);
  if (run <= 0) return true;
  int m = 0;
  for (int i = 0; i < nd; ++i) {
    if (dims[i].n <= 0) return true;  // no element: empty
    if (dims[i].n > 1 && dims[i].s > 0) dims[m++] = dims[i];
  }
  // Ascending by stride; equal strides collapse (i*s + j*s spans 0..n1+n2-2 steps).
  for (int i = 1; i < m; ++i)  // insertion sort: a handful of dims
    for (int j = i; j > 0 && dims[j - 1].s > dims[j].s; --j) std::swap(dims[j - 1], dims[j]);
  int k = 0;
  for (int i = 0; i < m; ++i) {
    if (k > 0 && dims[k - 1].s == dims[i].s)
      dims[k - 1].n += dims[i].n - 1;
    else
      dims[k++] = dims[i];
  }
  m = k;
  // A dim whose stride does not exceed the run makes the shifted runs touch:
  // the union is one longer run. Only the smallest dims can qualify, since the
  // first dim that leaves a gap keeps every larger one from being absorbed.
  int first = 0;
  while (first < m && dims[first].s <= run) {
    run += (dims[first].n - 1) * dims[first].s;
    ++first;
  }
  // Merge a dim into the next smaller one when it continues it exactly.
  k = 0;
  for (int i = first; i < m; ++i) {
    if (k > 0 && dims[i].s == dims[k - 1].s * dims[k - 1].n)
      dims[k - 1].n *= dims[i].n;
    else
      dims[k++] = dims[i];
  }
  if (k > kMaxDims) return false;
  int64_t reach = run;
  out->run = static_cast<uint64_t>(run);
  out->ndim = static_cast<uint8_t>(k);
  for (int i = 0; i < k; ++i) {
    out->count[i] = static_cast<uint64_t>(dims[k - 1 - i].n);
    out->stride[i] = static_cast<uint64_t>(dims[k - 1 - i].s);
    reach += (dims[k - 1 - i].n - 1) * dims[k - 1 - i].s;
  }
  out->end = static_cast<uint64_t>(base + reach);
  return true;
}

}  // namespace detail

Footprint Footprint::of(const TensorDesc& d) {
  assert(d.ndim <= kMaxDims);
  // Fast path, the common case: a C-contiguous view is one dense range.
  {
    int64_t expect = d.dtype.itemsize(), n = 1;
    bool dense = true;
    for (int i = d.ndim - 1; i >= 0 && dense; --i) {
      if (d.shape[i] == 0) return range(d.offset, d.offset);
      dense = d.shape[i] == 1 || d.strides[i] == expect;
      expect *= d.shape[i];
      n *= d.shape[i];
    }
    if (dense) return range(d.offset, d.offset + static_cast<uint64_t>(n) * d.dtype.itemsize());
  }
  detail::Dim dims[kMaxDims];
  int64_t base = static_cast<int64_t>(d.offset);
  for (int i = 0; i < d.ndim; ++i) {
    if (d.shape[i] == 0) return range(d.offset, d.offset);
    int64_t n = d.shape[i], s = d.strides[i];
    if (s < 0) {  // walk the axis from its lowest address
      base += (n - 1) * s;
      s = -s;
    }
    dims[i] = detail::Dim{n, s};
  }
  assert(base >= 0);
  Footprint f;
  bool ok = detail::canonicalise(base, dims, d.ndim, d.dtype.itemsize(), &f);
  assert(ok);  // d.ndim <= kMaxDims, and canonicalising never adds dims
  (void)ok;
  return f;
}

Footprint Footprint::range(uint64_t lo, uint64_t hi) {
  Footprint f;
  f.base = f.end = lo;
  if (lo < hi) {
    f.end = hi;
    f.run = hi - lo;
  }
  return f;
}

Footprint Footprint::box(uint64_t base, std::initializer_list<std::pair<uint64_t, uint64_t>> count_stride,
                         uint64_t run) {
  std::vector<detail::Dim> dims;
  dims.reserve(count_stride.size());
  for (auto& cs : count_stride)
    dims.push_back(detail::Dim{static_cast<int64_t>(cs.first), static_cast<int64_t>(cs.second)});
  Footprint f;
  if (!detail::canonicalise(static_cast<int64_t>(base), dims.data(), static_cast<int>(dims.size()),
                            static_cast<int64_t>(run), &f))
    throw std::invalid_argument("Footprint::box: more than kMaxDims dims after canonicalisation");
  return f;
}

bool operator==(const Footprint& a, const Footprint& b) {
  if (a.empty() || b.empty()) return a.empty() && b.empty();
  if (a.base != b.base || a.run != b.run || a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; ++i)
    if (a.count[i] != b.count[i] || a.stride[i] != b.stride[i]) return false;
  return true;
}

namespace {

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }  // b > 0

// A byte is shared iff some integer vector k, k_e in [lo_e, hi_e], puts
// t = sum k_e*s_e into [L, H] (see overlaps()). Terms are sorted by stride
// descending; mn/mx are the suffix minimum and maximum of t.
struct Search {
  int m = 0;
  int64_t lo[2 * kMaxDims], hi[2 * kMaxDims], s[2 * kMaxDims];
  int64_t mn[2 * kMaxDims + 1], mx[2 * kMaxDims + 1];
  int budget = 4096;

  // 1: found, 0: none, -1: budget exhausted.
  int solve(int e, int64_t L, int64_t H) {
    if (L <= mn[e] && mx[e] <= H) return 1;  // every k works
    if (e == m - 1) {
      int64_t k0 = std::max(lo[e], ceil_div(L, s[e])), k1 = std::min(hi[e], floor_div(H, s[e]));
      return k0 <= k1 ? 1 : 0;
    }
    // Only k_e that leave [L, H] - k_e*s_e reachable by the inner terms.
    int64_t k0 = std::max(lo[e], ceil_div(L - mx[e + 1], s[e]));
    int64_t k1 = std::min(hi[e], floor_div(H - mn[e + 1], s[e]));
    for (int64_t k = k0; k <= k1; ++k) {
      if (--budget < 0) return -1;
      int r = solve(e + 1, L - k * s[e], H - k * s[e]);
      if (r != 0) return r;
    }
    return 0;
  }

  void add(int64_t l, int64_t h, int64_t stride) {
    for (int i = 0; i < m; ++i)
      if (s[i] == stride) {  // equal strides: the k ranges add
        lo[i] += l;
        hi[i] += h;
        return;
      }
    int i = m++;
    for (; i > 0 && s[i - 1] < stride; --i) {
      lo[i] = lo[i - 1];
      hi[i] = hi[i - 1];
      s[i] = s[i - 1];
    }
    lo[i] = l;
    hi[i] = h;
    s[i] = stride;
  }
};

}  // namespace

// a's bytes are a + sum i_e*sa_e + r, b's are b + sum j_f*sb_f + q. They meet iff
// sum i_e*sa_e - sum j_f*sb_f = (b - a) + q - r for some indices, i.e. iff
// t = sum k_e*s_e lies in [d - ra + 1, d + rb - 1] with k_e in [0, na_e - 1] for
// a's dims and in [-(nb_f - 1), 0] for b's. A depth-first search over the
// terms, outermost first, tries only the k_e whose remainder the inner terms
// can still reach and solves the innermost term by division.
bool overlaps(const Footprint& a, const Footprint& b) {
  if (a.empty() || b.empty()) return false;
  if (a.end <= b.base || b.end <= a.base) return false;
  if (a.dense() && b.dense()) return true;
  if (a.dense() && a.base <= b.base && b.end <= a.end) return true;
  if (b.dense() && b.base <= a.base && a.end <= b.end) return true;
  Search q;
  for (int i = 0; i < a.ndim; ++i)
    q.add(0, static_cast<int64_t>(a.count[i]) - 1, static_cast<int64_t>(a.stride[i]));
  for (int i = 0; i < b.ndim; ++i)
    q.add(1 - static_cast<int64_t>(b.count[i]), 0, static_cast<int64_t>(b.stride[i]));
  q.mn[q.m] = q.mx[q.m] = 0;
  for (int e = q.m - 1; e >= 0; --e) {
    q.mn[e] = q.mn[e + 1] + q.lo[e] * q.s[e];
    q.mx[e] = q.mx[e + 1] + q.hi[e] * q.s[e];
  }
  int64_t d = static_cast<int64_t>(b.base) - static_cast<int64_t>(a.base);
  int64_t L = d - static_cast<int64_t>(a.run) + 1, H = d + static_cast<int64_t>(b.run) - 1;
  if (L > q.mx[0] || H < q.mn[0]) return false;
  // An exhausted budget answers "overlap": a false conflict costs parallelism,
  // a missed one would break correctness.
  return q.solve(0, L, H) != 0;
}

bool covers(const Footprint& outer, const Footprint& inner) {
  if (inner.empty()) return true;
  if (outer.empty()) return false;
  if (inner.base < outer.base || inner.end > outer.end) return false;
  if (outer.dense() || inner == outer) return true;
  if (outer.ndim == 1 && (inner.dense() || (inner.ndim == 1 && inner.stride[0] == outer.stride[0]))) {
    // One row length s: inner's runs start r bytes into rows q.. of outer, and
    // must end within outer's run there (a run reaching past it meets a gap).
    uint64_t s = outer.stride[0], d = inner.base - outer.base, q = d / s, r = d % s;
    uint64_t rows = inner.dense() ? 1 : inner.count[0];
    return r + inner.run <= outer.run && q + rows <= outer.count[0];
  }
  std::vector<Footprint> rest;
  return subtract(inner, outer, &rest) && rest.empty();
}

}  // namespace tierflow
