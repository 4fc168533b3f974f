#include "common/distributed/graph/tensor_map.h"

#include <algorithm>
#include <cassert>
#include <iterator>

namespace tierflow {

namespace {

// Where an access is indexed: its bucket's modulus, its key there, and the
// extent (span or run) the bucket's filter must allow for.
struct Place {
  uint64_t modulus;
  uint64_t key;
  uint64_t ext;
};

Place place_of(const Footprint& fp) {
  if (!fp.dense()) {
    uint64_t m = fp.stride[fp.ndim - 1];  // canonical: the smallest stride, > run
    bool regular = true;
    for (int i = 0; i + 1 < fp.ndim; ++i) regular = regular && fp.stride[i] % m == 0;
    if (regular) return Place{m, fp.base % m, fp.run};
  }
  return Place{0, fp.base, fp.end - fp.base};
}

// Whether every byte of fp lies in the columns [*col, *col + *run) mod m.
bool columns_of(const Footprint& fp, uint64_t m, uint64_t* col, uint64_t* run) {
  if (fp.run >= m) return false;
  for (int i = 0; i < fp.ndim; ++i)
    if (fp.stride[i] % m != 0) return false;
  *col = fp.base % m;
  *run = fp.run;
  return true;
}

bool spans_meet(const Footprint& a, const Footprint& b) { return a.base < b.end && b.base < a.end; }

}  // namespace

template <class A, class F>
void TensorMap::for_each_candidate(A& al, const Footprint& fp, bool with_readers, F&& f) {
  for (auto& b : al.buckets) {
    for (int side = 0; side < (with_readers ? 2 : 1); ++side) {
      auto& index = side == 0 ? b.writers : b.readers;
      // Keys in [from, to): every task's entries under them.
      auto at = [&](uint64_t key) { return index.lower_bound(Key{key, kNoTask}); };
      auto scan = [&](auto it, auto stop) {
        for (; it != stop; ++it)
          if (spans_meet(it->second.fp, fp)) f(b, it);
      };
      if (b.modulus == 0) {
        uint64_t from = fp.base > b.max_ext ? fp.base - b.max_ext : 0;
        scan(at(from), at(fp.end));
        continue;
      }
      uint64_t m = b.modulus, col = 0, run = 0;
      if (!columns_of(fp, m, &col, &run) || b.max_ext + run - 1 >= m) {
        scan(index.begin(), index.end());
        continue;
      }
      // Keys (col - max_run, col + run) mod m, split where the circle wraps.
      uint64_t start = (col + m - (b.max_ext - 1)) % m, stop = start + b.max_ext + run - 1;
      scan(at(start), at(std::min(stop, m)));
      if (stop > m) scan(index.begin(), at(stop - m));
    }
  }
}

void TensorMap::erase(Alloc& al, Bucket& b, Iter it) {
  if (it->second.tomb()) {
    --al.tombstones;
    --tombstones_;
  }
  --al.entries;
  --entries_;
  b.of(it->second).erase(it);
}

void TensorMap::lookup(uint64_t alloc, const Footprint& fp, bool reads, bool writes,
                       std::vector<TensorMapHit>* out) const {
  if (fp.empty() || (!reads && !writes)) return;
  auto a = allocs_.find(alloc);
  if (a == allocs_.end()) return;
  // A read conflicts only with writers: read-only entries are not visited.
  for_each_candidate(a->second, fp, writes, [&](const Bucket&, auto it) {
    const Entry& e = it->second;
    bool carries = reads && e.writes;
    if (e.tomb() && !carries) return;  // a write-only access is not ordered after a consumed task
    if (!overlaps(e.fp, fp)) return;
    out->push_back(e.tomb() ? TensorMapHit{kTombstone, e.root, true} : TensorMapHit{e.slot, e.task, carries});
  });
}

void TensorMap::insert(uint64_t alloc, const Footprint& fp, bool reads, bool writes, SlotIndex slot, TaskId task) {
  if (fp.empty() || (!reads && !writes)) return;
  Alloc& al = allocs_[alloc];
  if (writes) {
    // Collect first: cutting an entry inserts its pieces into the bucket being scanned.
    std::vector<std::pair<Bucket*, Iter>> hit;
    for_each_candidate(al, fp, true, [&](Bucket& b, Iter it) {
      if (it->second.task != task && overlaps(it->second.fp, fp)) hit.emplace_back(&b, it);
    });
    std::vector<Footprint> rest;
    for (auto& h : hit) {
      Bucket& b = *h.first;
      Entry& e = h.second->second;
      if (!e.writes) {
        if (covers(fp, e.fp)) erase(al, b, h.second);
        continue;
      }
      rest.clear();
      if (!subtract(e.fp, fp, &rest)) continue;  // no exact remainder: keep it whole
      if (rest.empty()) {
        erase(al, b, h.second);
        continue;
      }
      // The pieces keep the entry's key: the index filters were computed for
      // the access that created it, a superset of every piece.
      e.fp = rest[0];
      for (size_t i = 1; i < rest.size(); ++i) {
        Entry piece = e;
        piece.fp = rest[i];
        b.writers.emplace_hint(h.second, h.second->first, piece);  // only writers are cut
        ++al.entries;
        ++entries_;
        if (piece.tomb()) {
          ++al.tombstones;
          ++tombstones_;
        }
      }
    }
  }
  Place p = place_of(fp);
  auto b = std::find_if(al.buckets.begin(), al.buckets.end(), [&](const Bucket& x) { return x.modulus == p.modulus; });
  if (b == al.buckets.end()) {
    al.buckets.emplace_back();
    b = al.buckets.end() - 1;
    b->modulus = p.modulus;
  }
  b->max_ext = std::max(b->max_ext, p.ext);
  Entry e{fp, slot, task, kNoTask, reads, writes};
  b->of(e).emplace(Key{p.key, task}, e);
  ++al.entries;
  ++entries_;
}

void TensorMap::retire(uint64_t alloc, const Footprint& fp, TaskId task) { release(alloc, fp, task, kNoTask); }

void TensorMap::entomb(uint64_t alloc, const Footprint& fp, TaskId task, TaskId root) {
  assert(root != kNoTask);
  release(alloc, fp, task, root);
}

// With root == kNoTask every live piece goes; otherwise write pieces turn into
// tombstones and read-only pieces go. All pieces of the access sit under the
// key its own footprint gives (see insert()).
void TensorMap::release(uint64_t alloc, const Footprint& fp, TaskId task, TaskId root) {
  if (fp.empty()) return;
  auto a = allocs_.find(alloc);
  if (a == allocs_.end()) return;
  Alloc& al = a->second;
  Place p = place_of(fp);
  for (auto& b : al.buckets) {
    if (b.modulus != p.modulus) continue;
    for (Index* index : {&b.writers, &b.readers}) {
      auto range = index->equal_range(Key{p.key, task});
      for (auto it = range.first; it != range.second;) {
        Entry& e = it->second;
        auto next = std::next(it);
        if (!e.tomb()) {
          if (root != kNoTask && e.writes) {
            e.slot = kTombstone;
            e.root = root;
            ++al.tombstones;
            ++tombstones_;
          } else {
            erase(al, b, it);
          }
        }
        it = next;
      }
    }
  }
  if (al.entries == 0) allocs_.erase(a);
}

void TensorMap::forget(uint64_t alloc) {
  auto a = allocs_.find(alloc);
  if (a == allocs_.end()) return;
  entries_ -= a->second.entries;
  tombstones_ -= a->second.tombstones;
  allocs_.erase(a);
}

std::vector<uint64_t> TensorMap::allocs_with_tombstones() const {
  std::vector<uint64_t> out;
  for (auto& kv : allocs_)
    if (kv.second.tombstones > 0) out.push_back(kv.first);
  std::sort(out.begin(), out.end());
  return out;
}

size_t TensorMap::size() const { return entries_; }

size_t TensorMap::tombstones() const { return tombstones_; }

}  // namespace tierflow
