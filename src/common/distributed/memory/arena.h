// Arena: the shared-memory heap that holds every task tensor.
//
// One MAP_SHARED|MAP_ANONYMOUS region, mapped before the children are forked,
// so it sits at the same address in every process and no name appears in
// /dev/shm: the kernel frees it when the last process that maps it exits.
// Only the process that created the arena allocates: a forked copy has a
// private copy of the bookkeeping, so allocating there would hand out bytes
// the owner also hands out. A block carries a reference count: one per
// Python owner object and one per unfinished task that names it, so memory
// is reused only when neither can touch it any more. Every allocation gets a
// generation number that is never reused, so "the same bytes" after a free
// and a new allocation are a different allocation to dependency tracking.
//
// Thread-safety: every method locks `mu_`; the arena is called from the
// Python thread (alloc, owner release) and the scheduler (task release).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

namespace tierflow {

class ArenaExhausted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One live allocation: its offset (for reference counting) and its
// generation (for dependency tracking; 0 is never a generation).
struct BlockRef {
  uint64_t offset = 0;
  uint64_t gen = 0;
  uint8_t space = 0;  // not 0: lent by a level above, which holds the reference (see LentMemory)
};

// Replaces [base, base + bytes) of this process's address space by an
// inaccessible private reservation (used by forget_mapping()).
void reserve_inaccessible(void* base, size_t bytes);

class Arena {
 public:
  static constexpr uint64_t kAlign = 64;

  explicit Arena(uint64_t bytes);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  char* base() const { return base_; }
  uint64_t size() const { return size_; }
  bool contains(const void* p) const {
    auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(base_);
    return a >= b && a < b + size_;
  }

  // Returns the offset of a new block with one reference. Throws
  // ArenaExhausted naming the arena size and the request, and
  // std::logic_error when called in a process other than the creator.
  uint64_t allocate(uint64_t bytes);
  // Finds the live block holding [lo, hi) (arena offsets) or throws
  // std::invalid_argument.
  BlockRef block_of(uint64_t lo, uint64_t hi) const;
  // True while the allocation `ref` names is still live.
  bool live(const BlockRef& ref) const;
  void retain(uint64_t block);
  void release(uint64_t block);  // frees and coalesces at zero

  // In a forked process that does not use this arena: drops the shared
  // pages from this process (their memory is freed once its users exit) and
  // keeps the addresses reserved but inaccessible, so a stray access faults
  // instead of reading another mapping.
  void forget_mapping();

  uint64_t bytes_in_use() const;
  size_t live_blocks() const;

 private:
  struct Block {
    uint64_t size;
    uint32_t refs;  // 0 = free
    uint64_t gen;   // of the allocation while refs > 0
  };
  void insert_free(uint64_t off, uint64_t size);
  void erase_free(uint64_t off, uint64_t size);

  char* base_ = nullptr;
  uint64_t size_ = 0;
  mutable std::mutex mu_;
  std::map<uint64_t, Block> blocks_;              // every block, free or not, by offset
  std::multimap<uint64_t, uint64_t> free_by_size_;  // size -> offset (best fit)
  uint64_t in_use_ = 0;
  uint64_t next_gen_ = 1;
  int owner_pid_;
};

}  // namespace tierflow
