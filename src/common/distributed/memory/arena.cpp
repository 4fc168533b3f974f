#include "common/distributed/memory/arena.h"

#include "common/distributed/processes/current_pid.h"

#include <sys/mman.h>

#include <cassert>
#include <cerrno>
#include <cstring>

namespace tierflow {

namespace {
uint64_t round_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }
}  // namespace

void reserve_inaccessible(void* base, size_t bytes) {
  if (base == nullptr) return;
  mmap(base, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}

Arena::Arena(uint64_t bytes) : size_(round_up(bytes, kAlign)), owner_pid_(current_pid()) {
  if (bytes == 0) throw std::invalid_argument("arena_bytes must be positive");
  // MAP_NORESERVE: a large arena costs nothing until pages are touched.
  void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throw std::runtime_error("cannot map a shared arena of " + std::to_string(size_) +
                             " bytes: " + std::strerror(errno) + "; pass a smaller arena_bytes");
  base_ = static_cast<char*>(p);
  blocks_[0] = Block{size_, 0, 0};
  insert_free(0, size_);
}

Arena::~Arena() {
  if (base_ != nullptr) munmap(base_, size_);
}

void Arena::insert_free(uint64_t off, uint64_t size) { free_by_size_.emplace(size, off); }

void Arena::erase_free(uint64_t off, uint64_t size) {
  auto range = free_by_size_.equal_range(size);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second == off) {
      free_by_size_.erase(it);
      return;
    }
  }
  assert(false && "free block missing from the size index");
}

uint64_t Arena::allocate(uint64_t bytes) {
  if (current_pid() != owner_pid_)
    throw std::logic_error("this arena belongs to process " + std::to_string(owner_pid_) +
                           "; a forked process (a task, or a copy made with os.fork) cannot allocate from it");
  if (bytes > size_)  // also keeps the rounding below from wrapping around
    throw ArenaExhausted("arena exhausted: cannot allocate " + std::to_string(bytes) + " bytes from an arena of " +
                         std::to_string(size_) + " bytes; pass a larger arena_bytes to tf.Worker");
  uint64_t need = round_up(bytes == 0 ? 1 : bytes, kAlign);
  std::lock_guard<std::mutex> lock(mu_);
  auto fit = free_by_size_.lower_bound(need);
  if (fit == free_by_size_.end())
    throw ArenaExhausted("arena exhausted: cannot allocate " + std::to_string(bytes) + " bytes from an arena of " +
                         std::to_string(size_) + " bytes (" + std::to_string(in_use_) +
                         " in use); pass a larger arena_bytes to tf.Worker or drop references to unused arrays");
  uint64_t off = fit->second, have = fit->first;
  free_by_size_.erase(fit);
  blocks_[off] = Block{need, 1, next_gen_++};
  if (have > need) {
    blocks_[off + need] = Block{have - need, 0, 0};
    insert_free(off + need, have - need);
  }
  in_use_ += need;
  return off;
}

BlockRef Arena::block_of(uint64_t lo, uint64_t hi) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.upper_bound(lo);
  if (it == blocks_.begin()) throw std::invalid_argument("address is not inside the arena");
  --it;
  if (it->second.refs == 0 || hi > it->first + it->second.size)
    throw std::invalid_argument("tensor does not lie inside one live arena allocation");
  return BlockRef{it->first, it->second.gen};
}

bool Arena::live(const BlockRef& ref) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(ref.offset);
  return it != blocks_.end() && it->second.refs > 0 && it->second.gen == ref.gen;
}

void Arena::retain(uint64_t block) {
  if (current_pid() != owner_pid_) return;  // see release()
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(block);
  assert(it != blocks_.end() && it->second.refs > 0);
  ++it->second.refs;
}

void Arena::release(uint64_t block) {
  // In a forked copy the bookkeeping is a private snapshot that nobody
  // reads, and its mutex may have been copied locked (another thread held it
  // at the fork): an array freed there must not touch it.
  if (current_pid() != owner_pid_) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(block);
  assert(it != blocks_.end() && it->second.refs > 0);
  if (--it->second.refs != 0) return;
  in_use_ -= it->second.size;
  // Coalesce with free neighbours so a freed region can serve a larger request.
  auto next = std::next(it);
  if (next != blocks_.end() && next->second.refs == 0) {
    erase_free(next->first, next->second.size);
    it->second.size += next->second.size;
    blocks_.erase(next);
  }
  if (it != blocks_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.refs == 0) {
      erase_free(prev->first, prev->second.size);
      prev->second.size += it->second.size;
      blocks_.erase(it);
      it = prev;
    }
  }
  insert_free(it->first, it->second.size);
}

void Arena::forget_mapping() { reserve_inaccessible(base_, size_); }

uint64_t Arena::bytes_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

size_t Arena::live_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (auto& kv : blocks_) n += kv.second.refs > 0;
  return n;
}

}  // namespace tierflow
