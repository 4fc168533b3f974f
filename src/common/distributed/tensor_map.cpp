#include "common/distributed/tensor_map.h"

namespace tierflow {

void TensorMap::lookup(uint64_t alloc, uint64_t lo, uint64_t hi, bool writes,
                       std::vector<TensorMapHit>* out) const {
  if (lo >= hi) return;
  auto a = allocs_.find(alloc);
  if (a == allocs_.end()) return;
  const Alloc& al = a->second;
  uint64_t from = lo > al.max_len ? lo - al.max_len : 0;
  for (auto it = al.by_lo.lower_bound(from); it != al.by_lo.end() && it->first < hi; ++it) {
    const Entry& e = it->second;
    if (e.hi <= lo) continue;                // ends before us
    if (!writes && !e.writes) continue;      // read after read
    out->push_back(TensorMapHit{e.slot, e.task});
  }
}

void TensorMap::insert(uint64_t alloc, uint64_t lo, uint64_t hi, bool writes, SlotIndex slot, TaskId task) {
  if (lo >= hi) return;
  Alloc& al = allocs_[alloc];
  if (writes) {
    // Drop entries this write covers completely (see header).
    uint64_t from = lo > al.max_len ? lo - al.max_len : 0;
    for (auto it = al.by_lo.lower_bound(from); it != al.by_lo.end() && it->first < hi;) {
      if (it->first >= lo && it->second.hi <= hi && it->second.task != task)
        it = al.by_lo.erase(it);
      else
        ++it;
    }
  }
  al.by_lo.emplace(lo, Entry{hi, slot, task, writes});
  if (hi - lo > al.max_len) al.max_len = hi - lo;
}

void TensorMap::retire(uint64_t alloc, uint64_t lo, TaskId task) {
  auto a = allocs_.find(alloc);
  if (a == allocs_.end()) return;
  auto range = a->second.by_lo.equal_range(lo);
  for (auto it = range.first; it != range.second;) {
    if (it->second.task == task && it->second.slot != kTombstone)
      it = a->second.by_lo.erase(it);
    else
      ++it;
  }
  if (a->second.by_lo.empty()) allocs_.erase(a);
}

void TensorMap::entomb(uint64_t alloc, uint64_t lo, TaskId task, TaskId root) {
  auto a = allocs_.find(alloc);
  if (a == allocs_.end()) return;
  auto range = a->second.by_lo.equal_range(lo);
  for (auto it = range.first; it != range.second; ++it)
    if (it->second.task == task && it->second.slot != kTombstone) {
      it->second.slot = kTombstone;
      it->second.task = root;
    }
}

void TensorMap::clear_tombstones() {
  for (auto a = allocs_.begin(); a != allocs_.end();) {
    auto& m = a->second.by_lo;
    for (auto it = m.begin(); it != m.end();) {
      if (it->second.slot == kTombstone)
        it = m.erase(it);
      else
        ++it;
    }
    if (m.empty())
      a = allocs_.erase(a);
    else
      ++a;
  }
}

size_t TensorMap::size() const {
  size_t n = 0;
  for (auto& kv : allocs_) n += kv.second.by_lo.size();
  return n;
}

}  // namespace tierflow
