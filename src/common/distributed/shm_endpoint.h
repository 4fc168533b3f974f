// ShmEndpoint: the parent's side of a child's Mailbox (see mailbox.h).
#pragma once
#include "common/distributed/endpoint.h"
#include "common/distributed/mailbox.h"

namespace tierflow {

class ShmEndpoint final : public Endpoint {
 public:
  explicit ShmEndpoint(Mailbox& box) : box_(box) {}
  void post(const Dispatch& d) override;
  bool poll(TaskResult* out) override;
  void stop() override;
  void reset() override;

 private:
  void publish(uint32_t state);
  Mailbox& box_;
};

}  // namespace tierflow
