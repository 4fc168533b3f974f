// TaskId: engine-wide, strictly increasing, never reused. 0 means "none".
// A slot index is reused; a TaskId is not, so (slot, id) tells whether a slot
// still holds the task a caller asks about.
#pragma once
#include <cstdint>

namespace tierflow {

using TaskId = uint64_t;
using SlotIndex = uint32_t;
constexpr TaskId kNoTask = 0;

// What runs a task: a Python sub-worker, one chip, or N chips at once.
enum class TaskKind : uint8_t { Sub = 0, Chip = 1, Group = 2 };

}  // namespace tierflow
