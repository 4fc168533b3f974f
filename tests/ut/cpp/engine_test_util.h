// Helpers shared by the engine tests: requests over fake byte ranges.
#pragma once
#include <initializer_list>
#include <tuple>

#include "common/distributed/orchestrator.h"

namespace tierflow::test {

// One access: [lo, hi) of allocation 0 with a tag.
struct Access {
  uint64_t lo, hi;
  AccessTag tag;
};

inline TaskArgs args_of(std::initializer_list<Access> accesses) {
  TaskArgs a;
  for (auto& x : accesses) {
    TensorDesc d;
    d.lo = x.lo;
    d.hi = x.hi;
    d.offset = x.lo;
    d.tag = x.tag;
    d.ndim = 1;
    d.dtype = DType{1, 8};
    d.shape[0] = static_cast<int64_t>(x.hi - x.lo);
    d.strides[0] = 1;
    a.tensors.push_back(d);
  }
  return a;
}

inline SubmitRequest request(std::initializer_list<Access> accesses, TaskKind kind = TaskKind::Sub) {
  SubmitRequest r;
  r.kind = kind;
  r.members.push_back(args_of(accesses));
  return r;
}

constexpr AccessTag In = AccessTag::Input, Out = AccessTag::Output, InOut = AccessTag::InOut;

inline Outcome ok() { return Outcome{}; }
inline Outcome failed(const char* why = "boom") {
  Outcome o;
  o.ok = false;
  o.kind = "exception";
  o.message = why;
  return o;
}

}  // namespace tierflow::test
