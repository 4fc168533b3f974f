// StatsCollector: the engine's counters, kept by observing the schedule.
// Per worker: alive, busy, the task running on it, tasks run and busy time;
// per session (in the Session itself): queued, running and busy time.
// Written by the scheduler thread only, read by anyone: every field is an
// atomic with relaxed order (a snapshot may mix two passes, never tears a
// value), so statistics cost the dispatch path no lock.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/distributed/graph/schedule_observer.h"

namespace tierflow {

struct WorkerStats {
  std::string name;
  bool alive = true;
  bool busy = false;
  double busy_seconds = 0;
  uint64_t tasks = 0;
  TaskId running = kNoTask;  // the task on this worker now
};

class StatsCollector final : public ScheduleObserver {
 public:
  explicit StatsCollector(std::vector<std::string> worker_names);

  void ready(const TaskSlot& t) override;
  void started(const TaskSlot& t, uint32_t worker, uint32_t member) override;
  void member_done(const TaskSlot& t, uint32_t worker, uint32_t member, int64_t busy_ns) override;
  void finished(const TaskSlot& t, bool ok) override;
  void worker_died(uint32_t worker) override;
  void worker_born(uint32_t worker) override;

  std::vector<WorkerStats> workers() const;

 private:
  struct Counters {
    std::atomic<bool> alive{true}, busy{false};
    std::atomic<TaskId> running{kNoTask};
    std::atomic<uint64_t> tasks{0};
    std::atomic<int64_t> busy_ns{0};
  };
  std::vector<std::string> names_;
  std::unique_ptr<Counters[]> counters_;
};

}  // namespace tierflow
