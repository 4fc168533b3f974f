#include "common/distributed/engine.h"

#include "common/distributed/current_pid.h"

#include <signal.h>
#include <unistd.h>

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
  sessions_.emplace_back(new Session(0, "default", graph_, [sched](SlotIndex s) { sched->enqueue(s); },
                                     kMailboxPayload));

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

void Engine::wait_all(int64_t timeout_ms, const std::function<void()>& on_slice) {
  for (auto& s : sessions_) {
    Session* sp = s.get();
    sp->wait_until([sp] { return sp->drained(); }, timeout_ms, on_slice);
  }
}

void Engine::cancel_session(Session& session, const std::string& reason, int64_t grace_ms,
                            const std::function<void()>& on_slice) {
  session.cancel_before(graph_.next_id(), reason);
  scheduler_->sweep_cancelled(false);
  auto drained = [&session] { return session.drained(); };
  if (session.wait_until(drained, grace_ms, on_slice)) return;
  scheduler_->sweep_cancelled(true);
  session.wait_until(drained, 5000, on_slice);
}

void Engine::shutdown(bool cancel, int64_t grace_ms, const std::function<void()>& on_slice) {
  if (stopped_) return;
  if (cancel) {
    TaskId next = graph_.next_id();
    for (auto& s : sessions_) s->cancel_before(next, "the Worker is closing");
    scheduler_->sweep_cancelled(false);
    if (!graph_.all_finished()) {
      wait_all(grace_ms, on_slice);
      if (!graph_.all_finished()) {
        scheduler_->sweep_cancelled(true);
        wait_all(5000, {});
      }
    }
  } else {
    wait_all(-1, on_slice);
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
  // Nothing touches the shared memory any more: let it go, so a closed
  // Worker holds no mapping that no array needs.
  graph_.drop_arena();
  region_.reset();
}

}  // namespace tierflow
