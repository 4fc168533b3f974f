// SharedRegion: the control memory shared by the parent and its children —
// the scheduler's doorbell, one mailbox per child and one group barrier per
// chip. MAP_SHARED|MAP_ANONYMOUS, mapped before fork, so it has the same
// address everywhere and leaves nothing in /dev/shm.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/distributed/processes/doorbell.h"
#include "common/distributed/processes/group_barrier.h"
#include "common/distributed/processes/mailbox.h"

namespace tierflow {

class SharedRegion {
 public:
  SharedRegion(uint32_t mailboxes, uint32_t barriers);
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  Doorbell& doorbell() { return *doorbell_; }
  Mailbox& mailbox(uint32_t i) { return mailboxes_[i]; }
  GroupBarrier& barrier(uint32_t i) { return barriers_[i]; }
  uint32_t num_mailboxes() const { return n_mailboxes_; }
  // See Arena::forget_mapping().
  void forget_mapping();
  uint32_t num_barriers() const { return n_barriers_; }

 private:
  void* base_ = nullptr;
  size_t bytes_ = 0;
  uint32_t n_mailboxes_, n_barriers_;
  Doorbell* doorbell_ = nullptr;
  Mailbox* mailboxes_ = nullptr;
  GroupBarrier* barriers_ = nullptr;
};

}  // namespace tierflow
