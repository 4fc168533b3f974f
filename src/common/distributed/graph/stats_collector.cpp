#include "common/distributed/graph/stats_collector.h"

#include "common/distributed/graph/session.h"
#include "common/distributed/graph/task_slot.h"

namespace tierflow {

namespace {
constexpr uint8_t kQueued = 1, kRunning = 2;

void leave_phase(const TaskSlot& t) {
  if (t.observed == kQueued) t.session->note_queued(-1);
  if (t.observed == kRunning) t.session->note_running(-1);
  t.observed = 0;
}
}  // namespace

StatsCollector::StatsCollector(std::vector<std::string> worker_names)
    : names_(std::move(worker_names)), counters_(new Counters[names_.size()]) {}

void StatsCollector::ready(const TaskSlot& t) {
  leave_phase(t);  // a retried task comes back from running
  t.session->note_queued(+1);
  t.observed = kQueued;
}

void StatsCollector::started(const TaskSlot& t, uint32_t worker, uint32_t member) {
  Counters& c = counters_[worker];
  c.busy.store(true, std::memory_order_relaxed);
  c.running.store(t.id.load(std::memory_order_relaxed), std::memory_order_relaxed);
  if (member == 0 && t.observed == kQueued) {
    t.session->note_queued(-1);
    t.session->note_running(+1);
    t.observed = kRunning;
  }
}

void StatsCollector::member_done(const TaskSlot& t, uint32_t worker, uint32_t, int64_t busy_ns) {
  Counters& c = counters_[worker];
  c.busy.store(false, std::memory_order_relaxed);
  c.running.store(kNoTask, std::memory_order_relaxed);
  c.tasks.fetch_add(1, std::memory_order_relaxed);
  c.busy_ns.fetch_add(busy_ns, std::memory_order_relaxed);
  t.session->note_busy(worker, busy_ns);
}

void StatsCollector::finished(const TaskSlot& t, bool) { leave_phase(t); }

void StatsCollector::worker_died(uint32_t worker) { counters_[worker].alive.store(false, std::memory_order_relaxed); }

void StatsCollector::worker_born(uint32_t worker) { counters_[worker].alive.store(true, std::memory_order_relaxed); }

std::vector<WorkerStats> StatsCollector::workers() const {
  std::vector<WorkerStats> out(names_.size());
  for (size_t i = 0; i < names_.size(); ++i) {
    const Counters& c = counters_[i];
    out[i].name = names_[i];
    out[i].alive = c.alive.load(std::memory_order_relaxed);
    out[i].busy = c.busy.load(std::memory_order_relaxed);
    out[i].running = c.running.load(std::memory_order_relaxed);
    out[i].tasks = c.tasks.load(std::memory_order_relaxed);
    out[i].busy_seconds = static_cast<double>(c.busy_ns.load(std::memory_order_relaxed)) * 1e-9;
  }
  return out;
}

}  // namespace tierflow
