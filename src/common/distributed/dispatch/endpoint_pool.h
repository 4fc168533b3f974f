// EndpointPool: the workers one level schedules over, whatever they are —
// local child processes behind shared-memory mailboxes (LocalChildren), or,
// later, Workers on other hosts behind a network transport. The Engine owns
// one pool and never learns what carries the bytes.
//
// Workers are numbered subs first, then next-level workers (chips at level
// 3, lower-level Workers above it). Each worker has its Endpoint (posting,
// polling, its own payload limit and group rendezvous) and a name; the pool
// reports deaths and births to the scheduler, and replaces or kills a worker
// when the scheduler asks.
#pragma once
#include <cstdint>
#include <string>

#include "common/distributed/dispatch/endpoint.h"
#include "common/distributed/processes/doorbell.h"

namespace tierflow {

class Scheduler;

class EndpointPool {
 public:
  virtual ~EndpointPool() = default;
  virtual uint32_t num_subs() const = 0;
  virtual uint32_t num_next() const = 0;
  // "chip" at level 3; the lower level's name ("l3", ...) above it.
  virtual const std::string& next_kind() const = 0;
  virtual Endpoint& endpoint(uint32_t worker) = 0;
  virtual const std::string& name(uint32_t worker) const = 0;
  // The scheduler's wake-up, rung by the workers when a task finishes.
  virtual Doorbell& doorbell() = 0;
  // Wires deaths and births to `scheduler`, gives it the kill hook (and,
  // with `replace_dead`, the respawn hook), and starts the pool's threads.
  virtual void connect(Scheduler& scheduler, bool replace_dead) = 0;
  // Asks every worker to leave once idle and waits for them (killing those
  // that do not within `timeout_ms`); no worker is replaced afterwards.
  virtual void stop_workers(int64_t timeout_ms) = 0;
  // After the scheduler stopped: joins the pool's threads, delivers what is
  // left of the workers' output and lets go of shared memory.
  virtual void join() = 0;
  // A forked copy of the owner: forget everything without touching it.
  virtual void abandon() = 0;
  // The operating-system process of a worker (0 when it has none).
  virtual int pid_of(uint32_t worker) const = 0;
};

}  // namespace tierflow
