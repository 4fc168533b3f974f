// Arena: the shared-memory heap that holds every task tensor.
//
// One MAP_SHARED|MAP_ANONYMOUS region, mapped before the children are forked,
// so it sits at the same address in every process and no name appears in
// /dev/shm: the kernel frees it when the last process that maps it exits.
// Only the parent allocates. A block carries a reference count: one per
// Python owner object and one per unfinished task that names it, so memory
// is reused only when neither can touch it any more.
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
  // ArenaExhausted naming the arena size and the request.
  uint64_t allocate(uint64_t bytes);
  // Finds the live block holding [lo, hi) (arena offsets); returns its offset
  // or throws std::invalid_argument.
  uint64_t block_of(uint64_t lo, uint64_t hi) const;
  void retain(uint64_t block);
  void release(uint64_t block);  // frees and coalesces at zero

  uint64_t bytes_in_use() const;
  size_t live_blocks() const;

 private:
  struct Block {
    uint64_t size;
    uint32_t refs;  // 0 = free
  };
  void insert_free(uint64_t off, uint64_t size);
  void erase_free(uint64_t off, uint64_t size);

  char* base_ = nullptr;
  uint64_t size_ = 0;
  mutable std::mutex mu_;
  std::map<uint64_t, Block> blocks_;              // every block, free or not, by offset
  std::multimap<uint64_t, uint64_t> free_by_size_;  // size -> offset (best fit)
  uint64_t in_use_ = 0;
};

}  // namespace tierflow
