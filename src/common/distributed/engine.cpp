#include "common/distributed/engine.h"

#include <signal.h>
#include <unistd.h>

namespace tierflow {

Engine::Engine(uint32_t window, std::shared_ptr<SharedRegion> region, std::shared_ptr<Arena> arena, uint32_t subs,
               uint32_t chips, std::vector<ChildProcess> children)
    : subs_(subs), chips_(chips), region_(std::move(region)), graph_(window, std::move(arena)) {
  std::vector<Endpoint*> sub_eps, chip_eps;
  for (uint32_t i = 0; i < subs + chips; ++i) {
    endpoints_.emplace_back(new ShmEndpoint(region_->mailbox(i)));
    (i < subs ? sub_eps : chip_eps).push_back(endpoints_.back().get());
  }
  scheduler_.reset(new Scheduler(graph_, region_->doorbell(), sub_eps, chip_eps, &region_->barrier(0)));
  Scheduler* sched = scheduler_.get();
  orchestrator_.reset(new Orchestrator(graph_, [sched](SlotIndex s) { sched->enqueue(s); }, kMailboxPayload));

  std::vector<WatchedChild> watched;
  std::vector<std::pair<TaskKind, uint32_t>> ids;
  std::vector<std::pair<int, std::string>> outputs;
  for (auto& c : children) {
    std::string name = (c.kind == TaskKind::Sub ? "sub " : "chip ") + std::to_string(c.index);
    watched.push_back(WatchedChild{name, c.pid, c.pidfd});
    ids.emplace_back(c.kind, c.index);
    if (c.output_fd >= 0) outputs.emplace_back(c.output_fd, "[" + name + "] ");
  }
  reaper_.reset(new Reaper(std::move(watched), [sched, ids](size_t i, const std::string& why) {
    sched->report_death(ids[i].first, ids[i].second, why);
  }));
  pump_.reset(new OutputPump(std::move(outputs), STDERR_FILENO));

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
      reaper_->kill_all(SIGKILL);
      graph_.wait_until(all_done, 5000, {});
    }
  } else {
    graph_.wait_until(all_done, -1, on_slice);
  }
  stopped_ = true;
  for (auto& ep : endpoints_) ep->stop();
  if (!reaper_->wait_all_exited(2000)) {
    reaper_->kill_all(SIGKILL);
    reaper_->wait_all_exited(5000);
  }
  scheduler_->stop();
  reaper_->stop();
  pump_->finish(1000);
}

}  // namespace tierflow
