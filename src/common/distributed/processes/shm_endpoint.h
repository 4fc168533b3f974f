// ShmEndpoint: the parent's side of a child's Mailbox (see mailbox.h).
#pragma once
#include "common/distributed/dispatch/endpoint.h"
#include "common/distributed/processes/group_barrier.h"
#include "common/distributed/processes/mailbox.h"

namespace tierflow {

class ShmEndpoint final : public Endpoint {
 public:
  // `barrier`: the shared-memory barrier this worker's groups meet at when
  // it is their rank-0 member (its index is what members are told), or
  // null for a worker that never leads a group.
  ShmEndpoint(Mailbox& box, GroupBarrier* barrier = nullptr) : box_(box), barrier_(barrier) {}
  void post(const Dispatch& d) override;
  bool poll(TaskResult* out) override;
  size_t max_payload() const override { return kMailboxPayload; }
  void stop() override;
  void reset() override;
  void arm_group(uint32_t size) override {
    if (barrier_ != nullptr) barrier_->arm(size);
  }
  void break_group() override {
    if (barrier_ != nullptr) barrier_->break_it();
  }

 private:
  void publish(uint32_t state);
  Mailbox& box_;
  GroupBarrier* barrier_;
};

}  // namespace tierflow
