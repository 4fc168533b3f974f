// Engine: one level's runtime once its children exist — the task graph, the
// scheduler thread, the reaper and output-pump threads, and the parent's side
// of every child mailbox. Built only after every child was forked: the
// constructor is where the engine's threads start.
//
// Workers are numbered subs first, then chips; worker i uses mailbox i of the
// SharedRegion.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/distributed/arena.h"
#include "common/distributed/orchestrator.h"
#include "common/distributed/output_pump.h"
#include "common/distributed/reaper.h"
#include "common/distributed/scheduler.h"
#include "common/distributed/shared_region.h"
#include "common/distributed/shm_endpoint.h"
#include "common/distributed/task_graph.h"

namespace tierflow {

struct ChildProcess {
  TaskKind kind;   // Sub or Chip
  uint32_t index;  // within its kind
  int pid;
  int output_fd;   // read end of its output pipe, or -1 (ownership passes to the engine)
};

// The fork server that forked the children and replaces dead ones.
struct ForkServer {
  int pid;
  int pidfd;    // ownership passes to the engine
  int sock_fd;  // ownership passes to the engine
  bool replace_dead = true;
};

class Engine {
 public:
  Engine(uint32_t window, std::shared_ptr<SharedRegion> region, std::shared_ptr<Arena> arena, uint32_t subs,
         uint32_t chips, std::vector<ChildProcess> children, ForkServer server);
  ~Engine();

  TaskGraph& graph() { return graph_; }
  Scheduler& scheduler() { return *scheduler_; }
  Orchestrator& orchestrator() { return *orchestrator_; }
  uint32_t num_subs() const { return subs_; }
  uint32_t num_chips() const { return chips_; }

  // Stops the level. With `cancel`, tasks that have not started fail and
  // running ones get `grace_ms` to finish before their children are killed;
  // without it, everything submitted runs first. Then the children are asked
  // to exit (and killed if they do not within a second), and the threads are
  // joined. `on_slice` runs every 100 ms of waiting and may throw.
  void shutdown(bool cancel, int64_t grace_ms, const std::function<void()>& on_slice);
  bool stopped() const { return stopped_; }
  int pid_of(uint32_t worker) const { return reaper_->pid_of(worker); }
  std::string worker_name(uint32_t worker) const { return names_[worker]; }

 private:
  uint32_t subs_, chips_;
  std::vector<std::string> names_;
  std::shared_ptr<SharedRegion> region_;
  TaskGraph graph_;
  std::vector<std::unique_ptr<ShmEndpoint>> endpoints_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Orchestrator> orchestrator_;
  std::unique_ptr<Reaper> reaper_;
  std::unique_ptr<OutputPump> pump_;
  bool stopped_ = false;
};

}  // namespace tierflow
