#include "common/distributed/engine.h"

#include <signal.h>
#include <unistd.h>

namespace tierflow {

Engine::Engine(uint32_t window, std::shared_ptr<SharedRegion> region, std::shared_ptr<Arena> arena, uint32_t subs,
               uint32_t chips, std::vector<ChildProcess> children, ForkServer server)
    : subs_(subs), chips_(chips), region_(std::move(region)), graph_(window, std::move(arena)) {
  std::vector<Endpoint*> sub_eps, chip_eps;
  for (uint32_t i = 0; i < subs + chips; ++i) {
    endpoints_.emplace_back(new ShmEndpoint(region_->mailbox(i)));
    (i < subs ? sub_eps : chip_eps).push_back(endpoints_.back().get());
    names_.push_back(i < subs ? "sub " + std::to_string(i) : "chip " + std::to_string(i - subs));
  }
  scheduler_.reset(new Scheduler(graph_, region_->doorbell(), sub_eps, chip_eps, &region_->barrier(0)));
  Scheduler* sched = scheduler_.get();
  orchestrator_.reset(new Orchestrator(graph_, [sched](SlotIndex s) { sched->enqueue(s); }, kMailboxPayload));

  // Mailbox i belongs to worker i: subs first, then chips.
  std::vector<int> pids(subs + chips, 0);
  std::vector<std::pair<int, std::string>> outputs;
  for (auto& c : children) {
    uint32_t w = c.kind == TaskKind::Sub ? c.index : subs + c.index;
    pids[w] = c.pid;
    if (c.output_fd >= 0) outputs.emplace_back(c.output_fd, "[" + names_[w] + "] ");
  }
  pump_.reset(new OutputPump(std::move(outputs), STDERR_FILENO));
  OutputPump* pump = pump_.get();
  auto kind_of = [subs](uint32_t w) { return w < subs ? TaskKind::Sub : TaskKind::Chip; };
  auto index_of = [subs](uint32_t w) { return w < subs ? w : w - subs; };
  ReaperCallbacks cb;
  cb.on_death = [sched, kind_of, index_of](uint32_t w, const std::string& why) {
    sched->report_death(kind_of(w), index_of(w), why);
  };
  std::vector<std::string> names = names_;
  cb.on_spawn = [sched, pump, names, kind_of, index_of](uint32_t w, int, int fd) {
    if (fd >= 0) pump->add_source(fd, "[" + names[w] + "] ");
    sched->report_birth(kind_of(w), index_of(w));
  };
  cb.on_server_gone = [sched] { sched->stop_respawning(); };
  reaper_.reset(new Reaper(server.sock_fd, server.pid, server.pidfd, names_, pids, std::move(cb)));
  Reaper* reaper = reaper_.get();
  if (server.replace_dead) scheduler_->set_respawn([reaper](uint32_t w) { reaper->request_spawn(w); });

  pump_->start();
  reaper_->start();
  scheduler_->start();
}

Engine::~Engine() {
  if (!stopped_) {
    try {
      shutdown(true, 1000, {});
    } catch (...) {
    }
  }
}

void Engine::shutdown(bool cancel, int64_t grace_ms, const std::function<void()>& on_slice) {
  if (stopped_) return;
  auto all_done = [this] { return graph_.all_finished(); };
  if (cancel) {
    scheduler_->cancel_pending();
    if (!graph_.wait_until(all_done, grace_ms, on_slice)) {
      scheduler_->stop_respawning();
      reaper_->kill_all(SIGKILL);
      graph_.wait_until(all_done, 5000, {});
    }
  } else {
    graph_.wait_until(all_done, -1, on_slice);
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
}

}  // namespace tierflow
