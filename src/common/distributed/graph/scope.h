// ScopeStack: the open scopes of one submitter. Each task submitted inside a
// scope holds one reference that is dropped when the scope ends, so the
// scope's finished work is retired together; ending a scope never blocks.
// Not thread-safe by itself: its Orchestrator guards it with a mutex.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "common/distributed/graph/task_id.h"

namespace tierflow {

class ScopeStack {
 public:
  void open() { frames_.emplace_back(); }
  bool inside() const { return !frames_.empty(); }
  uint32_t depth() const { return static_cast<uint32_t>(frames_.size()); }
  void add(SlotIndex s) { frames_.back().push_back(s); ++held_; }
  // Tasks held by open scopes; none of them can be consumed before the
  // submitter ends its scopes.
  uint64_t held() const { return held_; }
  // Pops the innermost scope and returns the slots whose scope ref to drop.
  std::vector<SlotIndex> close() {
    std::vector<SlotIndex> out = std::move(frames_.back());
    frames_.pop_back();
    held_ -= out.size();
    return out;
  }

 private:
  std::vector<std::vector<SlotIndex>> frames_;
  uint64_t held_ = 0;
};

}  // namespace tierflow
