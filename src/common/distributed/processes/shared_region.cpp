#include "common/distributed/processes/shared_region.h"

#include "common/distributed/memory/arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

namespace tierflow {

namespace {
size_t align_up(size_t n) { return (n + 63) / 64 * 64; }
}  // namespace

SharedRegion::SharedRegion(uint32_t mailboxes, uint32_t barriers)
    : n_mailboxes_(mailboxes), n_barriers_(barriers == 0 ? 1 : barriers) {
  size_t off_mail = align_up(sizeof(Doorbell));
  size_t off_bar = off_mail + align_up(sizeof(Mailbox) * (mailboxes == 0 ? 1 : mailboxes));
  bytes_ = off_bar + align_up(sizeof(GroupBarrier) * n_barriers_);
  base_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base_ == MAP_FAILED) throw std::runtime_error(std::string("cannot map the control region: ") + std::strerror(errno));
  char* b = static_cast<char*>(base_);
  doorbell_ = new (b) Doorbell();
  mailboxes_ = reinterpret_cast<Mailbox*>(b + off_mail);
  for (uint32_t i = 0; i < mailboxes; ++i) new (&mailboxes_[i]) Mailbox();
  barriers_ = reinterpret_cast<GroupBarrier*>(b + off_bar);
  for (uint32_t i = 0; i < n_barriers_; ++i) new (&barriers_[i]) GroupBarrier();
}

void SharedRegion::forget_mapping() { reserve_inaccessible(base_, bytes_); }

SharedRegion::~SharedRegion() {
  if (base_ != nullptr && base_ != MAP_FAILED) munmap(base_, bytes_);
}

}  // namespace tierflow
