// Footprint: the exact set of arena bytes a tensor view touches, and the set
// algebra dependency inference needs on it: overlap, containment, difference.
//
// Two views of one array conflict only if they share a byte, not merely if
// their spans intersect: the column blocks c[:, 0:4] and c[:, 4:8] of a
// row-major matrix interleave within one span and never touch.
//
// All offsets, strides and spans are below 2^48, so every sum the algebra
// forms (at most 2 * kMaxDims terms, each at most a span) fits an int64.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

#include "common/distributed/graph/tensor_desc.h"

namespace tierflow {

// The exact bytes a tensor view touches, in canonical form:
//   bytes = { base + sum_d i_d*stride[d] + r : 0 <= i_d < count[d], 0 <= r < run }
// Canonical: no dim with count 1 or stride 0 (broadcast), strides positive and sorted
// descending, a dim whose stride <= run is absorbed into the run (run = (n-1)*s + run),
// and dims e, e+1 with stride[e] == stride[e+1]*count[e+1] are merged. ndim == 0: dense.
struct Footprint {
  uint64_t base = 0;  // arena offset of the lowest byte touched
  uint64_t end = 0;   // one past the highest byte touched (span is [base, end))
  uint64_t run = 0;   // bytes per contiguous run; 0 = empty (touches nothing)
  uint8_t ndim = 0;
  uint64_t count[kMaxDims] = {};
  uint64_t stride[kMaxDims] = {};
  bool empty() const { return run == 0; }
  bool dense() const { return ndim == 0; }
  // Any shape and strides (negative, zero); a shape with a 0 is empty (base = d.offset).
  static Footprint of(const TensorDesc& d);
  // Dense [lo, hi); lo >= hi is empty.
  static Footprint range(uint64_t lo, uint64_t hi);
  // The bytes { base + sum i_d*stride_d + r }, canonicalised; for tests and callers.
  // Throws std::invalid_argument when the canonical form needs more than kMaxDims dims.
  static Footprint box(uint64_t base, std::initializer_list<std::pair<uint64_t, uint64_t>> count_stride,
                       uint64_t run);
};

bool operator==(const Footprint& a, const Footprint& b);
inline bool operator!=(const Footprint& a, const Footprint& b) { return !(a == b); }

// Whether a and b share at least one byte. Exact unless the search exceeds its
// work budget (irregular strides only), in which case it answers true.
bool overlaps(const Footprint& a, const Footprint& b);

// Whether every byte of inner is in outer. Exact for a dense outer, and
// wherever subtract(inner, outer) is; otherwise false (conservative).
bool covers(const Footprint& outer, const Footprint& inner);

// The bytes of `a` that are not in `b`, as disjoint footprints appended to *out (none when
// b covers a; {a} when they do not overlap). Returns false, leaving *out untouched, when the
// difference cannot be expressed exactly within a small number of pieces (cap 16).
//
// Exact for two dense footprints, and whenever the strides of a and b together form a
// nested layout (each a multiple of the next smaller one) in which neither view wraps
// across a digit boundary: mixed-radix coordinates turn both into unions of boxes.
// Strides that do not nest (steps on odd-sized axes) are handled by cutting the
// footprint with more dims into its outermost slices, at most 64 per cut and 256
// steps in all; beyond those bounds the answer is false.
bool subtract(const Footprint& a, const Footprint& b, std::vector<Footprint>* out);

namespace detail {

constexpr int kMaxSubtractPieces = 16;

// One axis of a view before canonicalisation: n steps of s bytes (s >= 0).
struct Dim {
  int64_t n;
  int64_t s;
};

// Canonicalises { base + sum i_d*s_d + r : 0 <= i_d < n_d, 0 <= r < run } into *out.
// dims[] is scratch (reordered). Returns false when the result needs more than kMaxDims dims.
bool canonicalise(int64_t base, Dim* dims, int nd, int64_t run, Footprint* out);

}  // namespace detail

}  // namespace tierflow
