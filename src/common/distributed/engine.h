// Engine: one level's runtime — the task graph and its sessions, and the
// scheduler thread — over an EndpointPool of workers. Built only after every
// child of the pool was forked: the constructor is where the engine's
// threads start.
//
// Data flow of one task:
//   Session::orchestrator().submit()   caller's thread: slot (its session's
//                                      share of the window), TensorMap, edges
//     -> Scheduler inbox -> ReadySet (per-session FIFOs, weighted round robin)
//     -> Endpoint::post (for LocalChildren: ShmEndpoint, mailbox i)
//     -> the worker runs it and rings the doorbell
//     -> Scheduler::poll_workers -> TaskGraph::finish -> Session::on_finish
//     -> consumers settle; the last reference consumes the slot.
//
// Nothing here knows a level number or what carries the bytes: a level-3
// engine schedules chips, a level-4 engine level-3 Workers, through the same
// code. An Engine is bound to the process that built it: in a forked copy
// (a task, or the user's os.fork()) it does nothing at all.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/distributed/dispatch/endpoint_pool.h"
#include "common/distributed/event_log.h"
#include "common/distributed/dispatch/scheduler.h"
#include "common/distributed/graph/session.h"
#include "common/distributed/graph/task_graph.h"
#include "common/distributed/graph/trace_recorder.h"
#include "common/distributed/memory/arena.h"

namespace tierflow {

class Engine {
 public:
  // Takes the pool (a throw destroys it, which releases its workers).
  // `trace`: record every run and edge for a timeline (TraceRecorder),
  // holding at most trace_runs runs and twice as many edges.
  Engine(uint32_t window, std::shared_ptr<Arena> arena, std::unique_ptr<EndpointPool> pool,
         bool replace_dead = true, bool trace = false, size_t trace_runs = size_t(1) << 22);
  ~Engine();

  TaskGraph& graph() { return graph_; }
  Scheduler& scheduler() { return *scheduler_; }
  // Deaths, replacements, retries, timeouts and cancellations, for the
  // user's log; closed once the engine has stopped.
  EventLog& events() { return events_; }
  // The trace's recorder; null when the engine does not trace.
  TraceRecorder* trace() { return trace_.get(); }
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
  uint32_t num_subs() const { return pool_->num_subs(); }
  uint32_t num_chips() const { return pool_->num_next(); }
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
  int pid_of(uint32_t worker) const { return pool_->pid_of(worker); }
  std::string worker_name(uint32_t worker) const { return pool_->name(worker); }

 private:
  void wait_all(const std::vector<std::shared_ptr<Session>>& sessions, int64_t timeout_ms,
                const std::function<void()>& on_slice);

  const int owner_pid_;
  TaskGraph graph_;
  std::unique_ptr<EndpointPool> pool_;
  size_t max_payload_ = 0;  // the smallest of the endpoints' limits
  EventLog events_;  // declared before the scheduler that writes to it: it outlives it
  std::unique_ptr<TraceRecorder> trace_;  // likewise
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
