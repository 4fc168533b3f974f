// The scheduler as its observers see it: explain() snapshots, built on the
// scheduler thread between two passes (the only thread that moves a task out
// of pending, ready or running, so what they read holds still), and the
// trace record of each run. Same class as scheduler.cpp; kept apart because
// none of it decides where or when a task runs.
#include <algorithm>
#include <chrono>

#include "common/distributed/dispatch/scheduler.h"
#include "common/distributed/graph/session.h"

namespace tierflow {

std::vector<TaskReport> Scheduler::explain(int64_t timeout_ms, bool* answered) {
  auto req = std::make_shared<ExplainRequest>();
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    explains_.push_back(req);
    explain_asked_.store(true, std::memory_order_release);
  }
  bell_.ring();
  std::unique_lock<std::mutex> lock(req->mu);
  *answered = req->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms),
                               [&] { return req->done; });
  return *answered ? std::move(req->out) : std::vector<TaskReport>();
}

bool Scheduler::take_explains() {
  if (!explain_asked_.load(std::memory_order_acquire)) return false;  // the usual pass: no lock
  std::vector<std::shared_ptr<ExplainRequest>> reqs;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    explain_asked_.store(false, std::memory_order_relaxed);
    if (explains_.empty()) return false;
    reqs.swap(explains_);
  }
  std::vector<TaskReport> snap = snapshot();
  for (auto& r : reqs) {
    {
      std::lock_guard<std::mutex> lock(r->mu);
      r->out = snap;
      r->done = true;
    }
    r->cv.notify_all();
  }
  return true;
}

std::vector<TaskReport> Scheduler::snapshot() const {
  // Who runs what, and how many of each session's ready tasks come first.
  std::vector<std::vector<uint32_t>> on(graph_.window());
  for (uint32_t i = 0; i < workers_.size(); ++i)
    if (workers_[i].busy) on[workers_[i].slot].push_back(i);
  std::vector<int64_t> ahead(graph_.window(), -1);
  std::vector<int64_t> per_session;
  ready_.for_each([&](const ReadyEntry& e) {
    if (stale(e)) return;
    if (per_session.size() <= e.session) per_session.resize(e.session + 1, 0);
    ahead[e.slot] = per_session[e.session]++;
  });
  if (has_head_ && !stale(head_)) ahead[head_.slot] = 0;
  auto now = Clock::now();
  std::vector<TaskReport> out;
  for (SlotIndex s = 0; s < graph_.window(); ++s) {
    const TaskSlot& t = graph_.slot(s);
    TaskId id = t.id.load(std::memory_order_acquire);
    if (id == kNoTask) continue;
    TaskState st = t.state.load(std::memory_order_acquire);
    if (st != TaskState::Pending && st != TaskState::Ready && st != TaskState::Running) continue;
    // A task still being wired by its submitter is not there yet.
    if (!t.wired.load(std::memory_order_acquire)) continue;
    TaskReport r;
    r.id = id;
    r.name = graph_.name_of(t);
    r.session = t.session != nullptr ? t.session->name() : "";
    r.kind = t.kind;
    r.state = st;
    r.attempts = t.attempts;
    if (st == TaskState::Running) {
      for (uint32_t w : on[s]) {
        r.workers.push_back(workers_[w].name);
        r.running_s = std::chrono::duration<double>(now - workers_[w].started).count();
      }
    } else if (st == TaskState::Ready) {
      r.queued_ahead = ahead[s];
    } else {
      // Each producer is held by this task's reference: its slot keeps its task.
      for (SlotIndex p : t.producers) {
        const TaskSlot& prod = graph_.slot(p);
        TaskState ps = prod.state.load(std::memory_order_acquire);
        if (ps == TaskState::Pending || ps == TaskState::Ready || ps == TaskState::Running)
          r.waits_on.push_back(TaskReport::Producer{prod.id.load(std::memory_order_acquire), graph_.name_of(prod), ps});
      }
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const TaskReport& a, const TaskReport& b) { return a.id < b.id; });
  return out;
}

void Scheduler::record_run(uint32_t wi, const TaskSlot& t, const TaskResult& r, bool died, bool killed) {
  const Worker& w = workers_[wi];
  TraceRun run{};
  run.task = t.id.load(std::memory_order_relaxed);
  // A worker that died stamped nothing: the scheduler's own times stand in.
  auto ns = [](Clock::time_point p) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(p.time_since_epoch()).count();
  };
  run.t_start_ns = r.t_start_ns != 0 ? r.t_start_ns : ns(w.started);
  run.t_end_ns = r.t_end_ns != 0 ? r.t_end_ns : ns(Clock::now());
  if (run.t_end_ns < run.t_start_ns) run.t_end_ns = run.t_start_ns;
  uint64_t bytes = 0;
  if (w.member < t.members.size())
    for (const TensorDesc& d : t.members[w.member].tensors) {
      uint64_t n = d.dtype.itemsize();
      for (int k = 0; k < d.ndim; ++k) n *= static_cast<uint64_t>(d.shape[k]);
      bytes += n;
    }
  run.bytes = bytes;
  run.worker = wi;
  // Interned once per callable: no string is built per task.
  std::vector<uint32_t>& known = callable_names_[t.kind == TaskKind::Sub ? 0 : 1];
  if (known.size() <= t.callable) known.resize(t.callable + 1, UINT32_MAX);
  if (known[t.callable] == UINT32_MAX) known[t.callable] = trace_->intern(graph_.callable_name(t.kind, t.callable));
  run.callable = known[t.callable];
  run.name = t.name.empty() ? run.callable : trace_->intern(t.name);
  run.session = trace_->intern(t.session != nullptr ? t.session->name() : "");
  run.attempt = static_cast<uint16_t>(t.attempts);
  FailureKind kind = !died ? (r.lost ? FailureKind::WorkerDied : FailureKind::Exception)
                           : killed ? w.kill_kind : FailureKind::WorkerDied;
  run.outcome = r.ok && !died ? 0 : static_cast<uint8_t>(kind);  // FailureKind counts from 1
  run.kind = static_cast<uint8_t>(t.kind);
  trace_->run(run);
}

}  // namespace tierflow
