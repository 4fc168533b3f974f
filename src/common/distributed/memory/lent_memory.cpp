#include "common/distributed/memory/lent_memory.h"

#include <stdexcept>
#include <string>

namespace tierflow {

void LentMemory::set_ancestors(std::vector<std::pair<const char*, uint64_t>> arenas) {
  if (arenas.size() + 1 > static_cast<size_t>(kMaxSpaces))
    throw std::invalid_argument("tierflow nests at most " + std::to_string(kMaxSpaces) + " levels of arenas");
  std::lock_guard<std::mutex> lock(mu_);
  ancestors_ = std::move(arenas);
}

int LentMemory::space_of(uint64_t lo, uint64_t hi) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < ancestors_.size(); ++i) {
    auto base = reinterpret_cast<uint64_t>(ancestors_[i].first);
    if (lo >= base && hi <= base + ancestors_[i].second) return static_cast<int>(i + 1);
  }
  return 0;
}

uint64_t LentMemory::base_of(int space) const {
  std::lock_guard<std::mutex> lock(mu_);
  return reinterpret_cast<uint64_t>(ancestors_.at(static_cast<size_t>(space - 1)).first);
}

size_t LentMemory::num_ancestors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ancestors_.size();
}

void LentMemory::lend(const std::vector<LentView>& views) {
  std::lock_guard<std::mutex> lock(mu_);
  loan_.clear();
  ++epoch_;
  uint64_t next = 0;
  for (const LentView& v : views) {
    if (v.space == 0 || v.space > ancestors_.size())
      throw std::invalid_argument("a lent tensor names arena space " + std::to_string(v.space) + " but this level has " +
                                  std::to_string(ancestors_.size()) + " arena(s) above it");
    uint64_t gen = 0;
    for (const Entry& e : loan_)  // views of one allocation share its generation
      if (e.view.space == v.space && e.view.block == v.block) gen = e.gen;
    if (gen == 0) gen = kLentGen | (epoch_ << 24) | next++;
    loan_.push_back(Entry{v, gen});
  }
}

void LentMemory::end_loan() {
  std::lock_guard<std::mutex> lock(mu_);
  loan_.clear();
  ++epoch_;
}

bool LentMemory::in_loan(uint64_t gen) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Entry& e : loan_)
    if (e.gen == gen) return true;
  return false;
}

BlockRef LentMemory::block_of(uint8_t space, uint64_t lo, uint64_t hi) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Entry& e : loan_)
    if (e.view.space == space && lo >= e.view.lo && hi <= e.view.hi) return BlockRef{e.view.block, e.gen, space};
  throw std::invalid_argument(
      "a task tensor lies in the arena of a level above, outside every tensor the running orch task was given; "
      "an orch function may pass on its task's tensors (or views of them), and nothing else of the level above");
}

}  // namespace tierflow
