#include "common/distributed/engine.h"

#include "common/distributed/current_pid.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace tierflow {

Engine::Engine(uint32_t window, std::shared_ptr<SharedRegion> region, std::shared_ptr<Arena> arena, uint32_t subs,
               uint32_t chips, ForkServerLink& link, bool replace_dead)
    : owner_pid_(current_pid()), subs_(subs), chips_(chips), region_(std::move(region)), graph_(window, std::move(arena)) {
  // Arguments are checked before anything is taken over: refused, the link
  // keeps its resources and its owner cleans them up.
  if (region_->num_mailboxes() < subs + chips)
    throw std::invalid_argument("the control region has " + std::to_string(region_->num_mailboxes()) +
                                " mailboxes for " + std::to_string(subs + chips) + " children");
  if (link.children().size() != subs + chips || !link.owns())
    throw std::invalid_argument("the fork server link does not hold the " + std::to_string(subs + chips) +
                                " children this engine needs");
  // Names and pids first (cannot throw after the link is released)...
  for (uint32_t i = 0; i < subs + chips; ++i)
    names_.push_back(i < subs ? "sub " + std::to_string(i) : "chip " + std::to_string(i - subs));
  std::vector<int> pids(subs + chips, 0);
  std::vector<std::pair<int, std::string>> outputs;
  outputs.reserve(link.children().size());
  for (auto& c : link.children()) {
    uint32_t w = c.kind == TaskKind::Sub ? c.index : subs + c.index;
    pids[w] = c.pid;
    if (c.output_fd >= 0) outputs.emplace_back(c.output_fd, "[" + names_[w] + "] ");
  }
  // ...then the owners of the descriptors: from here on, a throw destroys
  // the members built so far, and their destructors close what they own
  // (the Reaper kills the server, the pump closes the pipes).
  std::unique_ptr<OutputPump> pump(new OutputPump(std::move(outputs), STDERR_FILENO));
  int server_pid = link.pid(), pidfd = link.pidfd(), sock = link.sock_fd();
  link.release();
  pump_ = std::move(pump);
  reaper_.reset(new Reaper(sock, server_pid, pidfd, names_, pids, ReaperCallbacks{}));

  std::vector<Endpoint*> sub_eps, chip_eps;
  for (uint32_t i = 0; i < subs + chips; ++i) {
    endpoints_.emplace_back(new ShmEndpoint(region_->mailbox(i)));
    (i < subs ? sub_eps : chip_eps).push_back(endpoints_.back().get());
  }
  scheduler_.reset(new Scheduler(graph_, region_->doorbell(), sub_eps, chip_eps, &region_->barrier(0)));
  Scheduler* sched = scheduler_.get();
  sink_ = [sched](SlotIndex s) { sched->enqueue(s); };
  default_ = std::make_shared<Session>(0, "default", graph_, sink_, kMailboxPayload);
  sessions_.push_back(default_);

  OutputPump* pump_raw = pump_.get();
  auto kind_of = [subs](uint32_t w) { return w < subs ? TaskKind::Sub : TaskKind::Chip; };
  auto index_of = [subs](uint32_t w) { return w < subs ? w : w - subs; };
  ReaperCallbacks cb;
  cb.on_death = [sched, kind_of, index_of](uint32_t w, const std::string& why) {
    sched->report_death(kind_of(w), index_of(w), why);
  };
  std::vector<std::string> names = names_;
  cb.on_spawn = [sched, pump_raw, names, kind_of, index_of](uint32_t w, int, int fd) {
    if (fd >= 0) pump_raw->add_source(fd, "[" + names[w] + "] ");
    sched->report_birth(kind_of(w), index_of(w));
  };
  cb.on_server_gone = [sched] { sched->stop_respawning(); };
  reaper_->set_callbacks(std::move(cb));
  Reaper* reaper = reaper_.get();
  if (replace_dead) scheduler_->set_respawn([reaper](uint32_t w) { reaper->request_spawn(w); });
  scheduler_->set_kill([reaper](uint32_t w) { reaper->kill_one(w); });

  pump_->start();
  reaper_->start();
  scheduler_->start();
}

Engine::~Engine() {
  if (!owned_by_this_process()) {
    // A forked copy: the threads, children and descriptors are the
    // creator's. Stopping them from here would shut the creator's pool down,
    // and joining threads that do not exist in this process is undefined, so
    // the copy lets go of everything without running a destructor.
    (void)scheduler_.release();
    (void)reaper_.release();
    (void)pump_.release();
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
  auto s = std::make_shared<Session>(id, name, graph_, sink_, kMailboxPayload, weight);
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
  for (auto& ep : endpoints_) ep->stop();
  // Idle children leave on EXIT; the server then kills and reaps any that
  // did not, and exits itself.
  reaper_->wait_all_exited(2000);
  reaper_->quit(2000);
  scheduler_->stop();
  reaper_->stop();
  pump_->finish(1000);
  for (auto& s : all) s->orchestrator().end_all_scopes();
  // Nothing touches the shared memory any more: let it go, so a closed
  // Worker holds no mapping that no array needs.
  graph_.drop_arena();
  region_.reset();
}

}  // namespace tierflow
