// TensorDesc: one task tensor as it crosses a process boundary: an offset into
// a shared arena (never a pointer), which arena (`space`), dtype, shape and
// byte strides.
#pragma once
#include <cstdint>

#include "common/distributed/graph/access_tag.h"

namespace tierflow {

constexpr int kMaxDims = 8;
// Arenas a task tensor may live in: its own level's (space 0) and those of
// up to kMaxSpaces - 1 levels above, which every process below them maps at
// the same address.
constexpr int kMaxSpaces = 8;

struct DType {
  uint8_t code = 0;  // DLPack type code: 0 int, 1 uint, 2 float, 4 bfloat, 5 complex, 6 bool
  uint8_t bits = 0;
  uint16_t itemsize() const { return static_cast<uint16_t>((bits + 7) / 8); }
};

struct TensorDesc {
  uint64_t offset = 0;  // byte offset of element [0,...,0] from its arena's base
  uint64_t block = 0;   // arena offset of the allocation this tensor lies in
  uint64_t lo = 0;      // [lo, hi): arena byte range the view spans
  uint64_t hi = 0;
  DType dtype;
  AccessTag tag = AccessTag::Input;
  uint8_t ndim = 0;
  uint8_t space = 0;  // 0: the arena of the level running the task; k: the one k levels above
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in bytes

  // Byte extent of a view relative to its first element: [lo_rel, hi_rel).
  void span(int64_t* lo_rel, int64_t* hi_rel) const {
    int64_t lo_r = 0, hi_r = 0;
    for (int d = 0; d < ndim; ++d) {
      if (shape[d] == 0) { *lo_rel = *hi_rel = 0; return; }
      int64_t reach = (shape[d] - 1) * strides[d];
      if (reach < 0) lo_r += reach; else hi_r += reach;
    }
    *lo_rel = lo_r;
    *hi_rel = hi_r + dtype.itemsize();
  }
};

struct Scalar {
  enum Kind : uint8_t { Int = 0, Float = 1 } kind = Int;
  union {
    int64_t i;
    double f;
  };
  Scalar() : i(0) {}
};

}  // namespace tierflow
