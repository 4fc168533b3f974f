// AccessTag: how a task touches one tensor. A typed bit-set: INOUT is
// INPUT|OUTPUT, NO_DEP is outside both and is never tracked.
#pragma once
#include <cstdint>

namespace tierflow {

enum class AccessTag : uint8_t { Input = 1, Output = 2, InOut = 3, NoDep = 4 };

inline bool reads(AccessTag t) { return (static_cast<uint8_t>(t) & 1u) != 0; }
inline bool writes(AccessTag t) { return (static_cast<uint8_t>(t) & 2u) != 0; }
inline bool tracked(AccessTag t) { return t != AccessTag::NoDep; }
inline bool valid_tag(uint8_t raw) { return raw >= 1 && raw <= 4; }

}  // namespace tierflow
