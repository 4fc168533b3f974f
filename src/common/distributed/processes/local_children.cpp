#include "common/distributed/processes/local_children.h"

#include <stdexcept>
#include <utility>

#include "common/distributed/dispatch/scheduler.h"

namespace tierflow {

LocalChildren::LocalChildren(std::shared_ptr<SharedRegion> region, uint32_t subs, uint32_t next,
                             std::string next_kind, ForkServerLink& link, OutputTarget output)
    : subs_(subs), next_(next), next_kind_(std::move(next_kind)), prefix_path_(std::move(output.path)),
      region_(std::move(region)) {
  // Arguments are checked before anything is taken over: refused, the link
  // keeps its resources and its owner cleans them up.
  if (region_->num_mailboxes() < subs + next)
    throw std::invalid_argument("the control region has " + std::to_string(region_->num_mailboxes()) +
                                " mailboxes for " + std::to_string(subs + next) + " children");
  if (link.children().size() != subs + next || !link.owns())
    throw std::invalid_argument("the fork server link does not hold the " + std::to_string(subs + next) +
                                " children this level needs");
  // Names and pids first (cannot throw after the link is released)...
  for (uint32_t i = 0; i < subs + next; ++i)
    names_.push_back(i < subs ? "sub " + std::to_string(i) : next_kind_ + " " + std::to_string(i - subs));
  std::vector<int> pids(subs + next, 0);
  std::vector<std::pair<int, std::string>> outputs;
  outputs.reserve(link.children().size());
  for (auto& c : link.children()) {
    uint32_t w = c.kind == TaskKind::Sub ? c.index : subs + c.index;
    pids[w] = c.pid;
    if (c.output_fd >= 0) outputs.emplace_back(c.output_fd, "[" + prefix_path_ + names_[w] + "] ");
  }
  // ...then the owners of the descriptors: from here on, a throw destroys
  // the members built so far, and their destructors close what they own
  // (the Reaper kills the server, the pump closes the pipes).
  std::unique_ptr<OutputPump> pump(new OutputPump(std::move(outputs), output.fd));
  int server_pid = link.pid(), pidfd = link.pidfd(), sock = link.sock_fd();
  link.release();
  pump_ = std::move(pump);
  reaper_.reset(new Reaper(sock, server_pid, pidfd, names_, pids, ReaperCallbacks{}));
  // A group leads with its rank-0 next-level worker: that worker's barrier.
  for (uint32_t i = 0; i < subs + next; ++i)
    endpoints_.emplace_back(new ShmEndpoint(region_->mailbox(i), i < subs ? nullptr : &region_->barrier(i - subs)));
}

LocalChildren::~LocalChildren() = default;

void LocalChildren::connect(Scheduler& scheduler, bool replace_dead) {
  Scheduler* sched = &scheduler;
  OutputPump* pump = pump_.get();
  uint32_t subs = subs_;
  auto kind_of = [subs](uint32_t w) { return w < subs ? TaskKind::Sub : TaskKind::Chip; };
  auto index_of = [subs](uint32_t w) { return w < subs ? w : w - subs; };
  ReaperCallbacks cb;
  cb.on_death = [sched, kind_of, index_of](uint32_t w, const std::string& why) {
    sched->report_death(kind_of(w), index_of(w), why);
  };
  std::vector<std::string> prefixes;
  for (auto& n : names_) prefixes.push_back("[" + prefix_path_ + n + "] ");
  cb.on_spawn = [sched, pump, prefixes, kind_of, index_of](uint32_t w, int, int fd) {
    if (fd >= 0) pump->add_source(fd, prefixes[w]);
    sched->report_birth(kind_of(w), index_of(w));
  };
  cb.on_server_gone = [sched] { sched->stop_respawning(); };
  reaper_->set_callbacks(std::move(cb));
  Reaper* reaper = reaper_.get();
  if (replace_dead) scheduler.set_respawn([reaper](uint32_t w) { reaper->request_spawn(w); });
  scheduler.set_kill([reaper](uint32_t w) { reaper->kill_one(w); });
  pump_->start();
  reaper_->start();
}

void LocalChildren::stop_workers(int64_t timeout_ms) {
  for (auto& ep : endpoints_) ep->stop();
  // Idle children leave on EXIT; the server then kills and reaps any that
  // did not, and exits itself.
  reaper_->wait_all_exited(timeout_ms);
  reaper_->quit(timeout_ms);
}

void LocalChildren::join() {
  reaper_->stop();
  pump_->finish(1000);
  region_.reset();  // nothing touches the control region any more
}

void LocalChildren::abandon() {
  // The threads, children and descriptors are the creator's: stopping them
  // from a forked copy would shut the creator's pool down, and joining
  // threads that do not exist in this process is undefined.
  (void)reaper_.release();
  (void)pump_.release();
}

}  // namespace tierflow
