#include "common/distributed/engine.h"

#include "common/distributed/processes/current_pid.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

namespace tierflow {

Engine::Engine(uint32_t window, std::shared_ptr<Arena> arena, std::unique_ptr<EndpointPool> pool,
               bool replace_dead, bool trace, size_t trace_runs)
    : owner_pid_(current_pid()), graph_(window, std::move(arena)), pool_(std::move(pool)) {
  if (trace) {
    trace_.reset(new TraceRecorder(trace_runs, 2 * trace_runs));
    graph_.set_trace(trace_.get());
  }
  uint32_t n = pool_->num_subs() + pool_->num_next();
  std::vector<Endpoint*> sub_eps, next_eps;
  max_payload_ = SIZE_MAX;
  for (uint32_t i = 0; i < n; ++i) {
    Endpoint& ep = pool_->endpoint(i);
    (i < pool_->num_subs() ? sub_eps : next_eps).push_back(&ep);
    max_payload_ = std::min(max_payload_, ep.max_payload());
  }
  if (n == 0) max_payload_ = 0;
  scheduler_.reset(new Scheduler(graph_, pool_->doorbell(), sub_eps, next_eps, pool_->next_kind()));
  Scheduler* sched = scheduler_.get();
  EventLog* events = &events_;
  sched->set_note([events](int level, std::string text) { events->push(level, std::move(text)); });
  sched->set_trace(trace_.get());
  sink_ = [sched](SlotIndex s) { sched->enqueue(s); };
  default_ = std::make_shared<Session>(0, "default", graph_, sink_, max_payload_);
  default_->count_workers(n);
  sessions_.push_back(default_);
  pool_->connect(*scheduler_, replace_dead);
  scheduler_->start();
}

Engine::~Engine() {
  if (!owned_by_this_process()) {
    // A forked copy: the threads, children and descriptors are the
    // creator's. Stopping them from here would shut the creator's pool down,
    // and joining threads that do not exist in this process is undefined, so
    // the copy lets go of everything without running a destructor.
    (void)scheduler_.release();
    pool_->abandon();
    (void)pool_.release();
    return;
  }
  if (!stopped_) {
    try {
      shutdown(true, 1000, {});
    } catch (...) {
    }
  }
}

bool Engine::owned_by_this_process() const { return current_pid() == owner_pid_; }

std::shared_ptr<Session> Engine::open_session(const std::string& name, uint32_t weight) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  if (stopping_) throw SessionClosed("the Worker is closing; no session can be opened");
  // A closed session's id is free again once none of its slots is held: the
  // window counts slots per id.
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [this](const std::shared_ptr<Session>& s) { return graph_.ring().held(s->id()) == 0; }),
                 retired_.end());
  uint32_t id = 1;
  auto busy = [this](uint32_t i) {
    if (i < sessions_.size() && sessions_[i]) return true;
    for (auto& r : retired_)
      if (r->id() == i) return true;
    return false;
  };
  while (busy(id)) ++id;
  if (id >= sessions_.size()) sessions_.resize(id + 1);
  auto s = std::make_shared<Session>(id, name, graph_, sink_, max_payload_, weight);
  s->count_workers(num_subs() + num_chips());
  graph_.ring().set_weight(id, s->weight());
  sessions_[id] = s;
  return s;
}

void Engine::close_session(const std::shared_ptr<Session>& session, bool cancel, int64_t grace_ms,
                           const std::function<void()>& on_slice) {
  session->close_submits();
  if (cancel) {
    cancel_session(*session, "the session is closing", grace_ms, on_slice);
  } else {
    session->wait_drained(-1, on_slice);
  }
  session->orchestrator().end_all_scopes();
  std::lock_guard<std::mutex> lock(sessions_mu_);
  uint32_t id = session->id();
  if (id != 0 && id < sessions_.size() && sessions_[id] == session) {
    sessions_[id].reset();
    if (graph_.ring().held(id) != 0) retired_.push_back(session);
  }
}

std::vector<std::shared_ptr<Session>> Engine::sessions() const {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  std::vector<std::shared_ptr<Session>> out;
  for (auto& s : sessions_)
    if (s) out.push_back(s);
  return out;
}

void Engine::wait_all(const std::vector<std::shared_ptr<Session>>& sessions, int64_t timeout_ms,
                      const std::function<void()>& on_slice) {
  for (auto& s : sessions) s->wait_drained(timeout_ms, on_slice);
}

void Engine::cancel_session(Session& session, const std::string& reason, int64_t grace_ms,
                            const std::function<void()>& on_slice) {
  session.cancel_before(graph_.next_id(), reason);
  scheduler_->sweep_cancelled(false);
  if (session.wait_drained(grace_ms, on_slice)) return;
  scheduler_->sweep_cancelled(true);
  session.wait_drained(5000, on_slice);
}

void Engine::shutdown(bool cancel, int64_t grace_ms, const std::function<void()>& on_slice) {
  if (stopped_) return;
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    stopping_ = true;
    for (auto& s : sessions_)
      if (s) all.push_back(s);
  }
  // No submit may start once we wait: everything submitted is then counted.
  for (auto& s : all) s->close_submits();
  if (cancel) {
    TaskId next = graph_.next_id();
    for (auto& s : all) s->cancel_before(next, "the Worker is closing");
    scheduler_->sweep_cancelled(false);
    if (!graph_.all_finished()) {
      wait_all(all, grace_ms, on_slice);
      if (!graph_.all_finished()) {
        scheduler_->sweep_cancelled(true);
        wait_all(all, 5000, {});
      }
    }
  } else {
    wait_all(all, -1, on_slice);
  }
  stopped_ = true;
  scheduler_->stop_respawning();
  pool_->stop_workers(2000);
  scheduler_->stop();
  pool_->join();
  events_.close();  // the scheduler wrote its last line
  for (auto& s : all) s->orchestrator().end_all_scopes();
  // Nothing touches the shared memory any more: let it go, so a closed
  // Worker holds no mapping that no array needs.
  graph_.drop_arena();
}

}  // namespace tierflow
