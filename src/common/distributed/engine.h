// Engine: one level's runtime once its children exist — the task graph and
// its sessions, the scheduler thread, the reaper and output-pump threads,
// and the parent's side of every child mailbox. Built only after every child
// was forked: the constructor is where the engine's threads start.
//
// Data flow of one task:
//   Session::orchestrator().submit()   caller's thread: slot (its session's
//                                      share of the window), TensorMap, edges
//     -> Scheduler inbox -> ReadySet (per-session FIFOs, weighted round robin)
//     -> ShmEndpoint::post (Mailbox i)
//     -> child: ChildPort::wait, run, ChildPort::complete, Doorbell::ring
//     -> Scheduler::poll_workers -> TaskGraph::finish -> Session::on_finish
//     -> consumers settle; the last reference consumes the slot.
//
// Workers are numbered subs first, then chips; worker i uses mailbox i of the
// SharedRegion. An Engine is bound to the process that built it: in a forked
// copy (a task, or the user's os.fork()) it does nothing at all.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/distributed/arena.h"
#include "common/distributed/fork_server_link.h"
#include "common/distributed/output_pump.h"
#include "common/distributed/reaper.h"
#include "common/distributed/scheduler.h"
#include "common/distributed/session.h"
#include "common/distributed/shared_region.h"
#include "common/distributed/shm_endpoint.h"
#include "common/distributed/task_graph.h"

namespace tierflow {

class Engine {
 public:
  // Takes over every resource of `link` before anything can fail, and
  // releases what it started if its construction throws.
  Engine(uint32_t window, std::shared_ptr<SharedRegion> region, std::shared_ptr<Arena> arena, uint32_t subs,
         uint32_t chips, ForkServerLink& link, bool replace_dead = true);
  ~Engine();

  TaskGraph& graph() { return graph_; }
  Scheduler& scheduler() { return *scheduler_; }
  const std::shared_ptr<Session>& default_session() const { return default_; }

  // A new session of this level (any thread): cheap — a table entry, no
  // process, no memory of its own beyond its records. Throws SessionClosed
  // once the engine is stopping.
  std::shared_ptr<Session> open_session(const std::string& name, uint32_t weight);
  // Refuses new submits, then (with `cancel`: after cancelling what has not
  // started, as cancel_session) waits for every task of the session, ends
  // its open scopes and removes it from the table. Its records live on in the
  // Session object for as long as anything (a Task) refers to it.
  void close_session(const std::shared_ptr<Session>& session, bool cancel, int64_t grace_ms,
                     const std::function<void()>& on_slice);
  // The open sessions, the default one first.
  std::vector<std::shared_ptr<Session>> sessions() const;
  uint32_t num_subs() const { return subs_; }
  uint32_t num_chips() const { return chips_; }
  bool owned_by_this_process() const;

  // Cancels every task of `session` that has not started (failed as
  // "cancelled: <reason>"), gives running ones `grace_ms` and then kills
  // their workers (they are replaced), and waits until the session has no
  // task left. `on_slice` runs every 100 ms of waiting and may throw.
  void cancel_session(Session& session, const std::string& reason, int64_t grace_ms,
                      const std::function<void()>& on_slice);
  // Stops the level. With `cancel`, every session is cancelled as above;
  // without it, everything submitted runs first. Then the children are asked
  // to exit (and killed if they do not within 2 s), the threads are joined,
  // and the arena and control region are let go (the task records stay).
  void shutdown(bool cancel, int64_t grace_ms, const std::function<void()>& on_slice);
  bool stopped() const { return stopped_; }
  int pid_of(uint32_t worker) const { return reaper_->pid_of(worker); }
  std::string worker_name(uint32_t worker) const { return names_[worker]; }

 private:
  void wait_all(const std::vector<std::shared_ptr<Session>>& sessions, int64_t timeout_ms,
                const std::function<void()>& on_slice);

  const int owner_pid_;
  uint32_t subs_, chips_;
  std::vector<std::string> names_;
  std::shared_ptr<SharedRegion> region_;
  TaskGraph graph_;
  std::unique_ptr<Reaper> reaper_;
  std::unique_ptr<OutputPump> pump_;
  std::vector<std::unique_ptr<ShmEndpoint>> endpoints_;
  std::unique_ptr<Scheduler> scheduler_;
  Orchestrator::ReadySink sink_;
  mutable std::mutex sessions_mu_;                 // guards sessions_, retired_, stopping_
  std::vector<std::shared_ptr<Session>> sessions_;  // by id; null: free
  std::vector<std::shared_ptr<Session>> retired_;   // closed, some task slot still held
  std::shared_ptr<Session> default_;
  bool stopping_ = false;
  bool stopped_ = false;
};

}  // namespace tierflow
