#include "common/distributed/graph/trace_recorder.h"

namespace tierflow {

TraceRecorder::TraceRecorder(size_t max_runs, size_t max_edges)
    : max_runs_(max_runs), max_edges_(max_edges), runs_(new TraceRun[max_runs]), edges_(new TraceEdge[max_edges]) {
  names_.push_back("");
  index_.emplace("", 0);
}

void TraceRecorder::run(const TraceRun& r) {
  size_t n = n_runs_.load(std::memory_order_relaxed);  // this thread is the only writer
  if (n >= max_runs_) {
    dropped_runs_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  runs_[n] = r;
  n_runs_.store(n + 1, std::memory_order_release);
}

void TraceRecorder::edge(TaskId producer, TaskId consumer) {
  size_t n = n_edges_.load(std::memory_order_relaxed);  // writers hold the map mutex
  if (n >= max_edges_) {
    dropped_edges_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  edges_[n] = TraceEdge{producer, consumer};
  n_edges_.store(n + 1, std::memory_order_release);
}

uint32_t TraceRecorder::intern(const std::string& s) {
  // Only this (the scheduler) thread inserts, so reading without the mutex
  // is safe; inserting takes it, because snapshot() reads from elsewhere.
  auto it = index_.find(s);
  if (it != index_.end()) return it->second;
  std::lock_guard<std::mutex> lock(names_mu_);
  uint32_t i = static_cast<uint32_t>(names_.size());
  names_.push_back(s);
  index_.emplace(s, i);
  return i;
}

TraceRecorder::Snapshot TraceRecorder::snapshot() const {
  Snapshot s;
  size_t nr = n_runs_.load(std::memory_order_acquire);
  size_t ne = n_edges_.load(std::memory_order_acquire);
  s.runs.assign(runs_.get(), runs_.get() + nr);
  s.edges.assign(edges_.get(), edges_.get() + ne);
  {
    std::lock_guard<std::mutex> lock(names_mu_);
    s.names = names_;
  }
  s.dropped_runs = dropped_runs_.load(std::memory_order_relaxed);
  s.dropped_edges = dropped_edges_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace tierflow
