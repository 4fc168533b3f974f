// TraceRecorder: what a timeline trace needs — every task run, with the
// times its worker stamped, and every dependency edge — recorded into
// buffers allocated when tracing is switched on, on paths that already run:
//  - runs by the scheduler thread, in member_done() (the only writer);
//  - edges by wire(), under the graph's map mutex (one writer at a time),
//    including edges to producers that already finished;
// each array is fixed in size (its pages are touched only as it fills) and
// published by an atomic count, so a snapshot from any thread copies a
// consistent prefix without a lock. When an array is full, further records
// are counted as dropped, never reallocated. Names are interned: a run
// carries an index; new names (a task name or session seen for the first
// time) take a mutex, repeats do not. The file is written elsewhere, from a
// snapshot, when the Worker closes or flushes.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/distributed/graph/task_id.h"

namespace tierflow {

// One task run on one worker (a group member, an attempt). Plain data: the
// Python layer reads an array of these as a numpy structured array.
struct TraceRun {
  TaskId task;
  int64_t t_start_ns;  // CLOCK_MONOTONIC, stamped where the task ran
  int64_t t_end_ns;
  uint64_t bytes;      // the member's tensor bytes
  uint32_t worker;     // the level's worker index
  uint32_t name;       // interned task name
  uint32_t session;    // interned session name
  uint32_t callable;   // interned callable name
  uint16_t attempt;
  uint8_t outcome;     // 0 completed, else its FailureKind (1 exception, 2 worker_died, ...)
  uint8_t kind;        // TaskKind
  uint32_t pad;
};
static_assert(sizeof(TraceRun) == 56, "TraceRun is read as a fixed layout by the Python layer");

struct TraceEdge {
  TaskId producer;
  TaskId consumer;
};

class TraceRecorder {
 public:
  TraceRecorder(size_t max_runs, size_t max_edges);

  // Scheduler thread.
  void run(const TraceRun& r);
  uint32_t intern(const std::string& s);
  // Under the graph's map mutex.
  void edge(TaskId producer, TaskId consumer);

  struct Snapshot {
    std::vector<TraceRun> runs;
    std::vector<TraceEdge> edges;
    std::vector<std::string> names;
    uint64_t dropped_runs = 0, dropped_edges = 0;
  };
  // Any thread: a copy of everything recorded so far.
  Snapshot snapshot() const;

 private:
  size_t max_runs_, max_edges_;
  std::unique_ptr<TraceRun[]> runs_;
  std::unique_ptr<TraceEdge[]> edges_;
  std::atomic<size_t> n_runs_{0}, n_edges_{0};
  std::atomic<uint64_t> dropped_runs_{0}, dropped_edges_{0};
  mutable std::mutex names_mu_;  // taken to add a name, and by snapshot()
  std::unordered_map<std::string, uint32_t> index_;
  std::vector<std::string> names_;
};

}  // namespace tierflow
