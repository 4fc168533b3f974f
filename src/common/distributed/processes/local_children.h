// LocalChildren: the EndpointPool of one level's own child processes — the
// control region (a mailbox per child, the doorbell, one group barrier per
// next-level worker), the fork server that forks and reaps them (through
// the Reaper), and the OutputPump that carries their output.
//
// Built from a ForkServerLink once every child exists; it takes over the
// link's server, socket and pipes before anything can fail, and a throw
// from its constructor releases what it took (the Reaper kills the server,
// whose children die with it).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/distributed/dispatch/endpoint_pool.h"
#include "common/distributed/processes/fork_server_link.h"
#include "common/distributed/processes/output_pump.h"
#include "common/distributed/processes/reaper.h"
#include "common/distributed/processes/shared_region.h"
#include "common/distributed/processes/shm_endpoint.h"

namespace tierflow {

struct OutputTarget {
  int fd = 2;              // where "[name] line" goes
  std::string path;        // prepended to every name: "l3 0 " gives "[l3 0 chip 1] line"
};

class LocalChildren final : public EndpointPool {
 public:
  LocalChildren(std::shared_ptr<SharedRegion> region, uint32_t subs, uint32_t next, std::string next_kind,
                ForkServerLink& link, OutputTarget output = {});
  ~LocalChildren() override;

  uint32_t num_subs() const override { return subs_; }
  uint32_t num_next() const override { return next_; }
  const std::string& next_kind() const override { return next_kind_; }
  Endpoint& endpoint(uint32_t worker) override { return *endpoints_[worker]; }
  const std::string& name(uint32_t worker) const override { return names_[worker]; }
  Doorbell& doorbell() override { return region_->doorbell(); }
  void connect(Scheduler& scheduler, bool replace_dead) override;
  void stop_workers(int64_t timeout_ms) override;
  void join() override;
  void abandon() override;
  int pid_of(uint32_t worker) const override { return reaper_->pid_of(worker); }

 private:
  uint32_t subs_, next_;
  std::string next_kind_;
  std::vector<std::string> names_;
  std::string prefix_path_;
  std::shared_ptr<SharedRegion> region_;
  std::unique_ptr<OutputPump> pump_;
  std::unique_ptr<Reaper> reaper_;
  std::vector<std::unique_ptr<ShmEndpoint>> endpoints_;
};

}  // namespace tierflow
