// Scheduler: one thread that moves ready tasks onto idle workers and turns
// completions into newly ready tasks.
//
// Its only wait point is the Doorbell: submits, completions (rung by the
// children themselves), death notices and stop() all ring it, and the thread
// sleeps only after a pass that found nothing to do. There is no timed
// polling.
//
// Workers are numbered subs first, then chips. A group task is dispatched
// only when it holds N idle chips at once; the head of the group queue
// reserves idle chips until it has enough, so groups are not starved by
// single-chip work.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/distributed/doorbell.h"
#include "common/distributed/endpoint.h"
#include "common/distributed/group_barrier.h"
#include "common/distributed/ready_queues.h"
#include "common/distributed/task_graph.h"

namespace tierflow {

struct WorkerStats {
  std::string name;
  bool alive = true;
  bool busy = false;
  double busy_seconds = 0;
  uint64_t tasks = 0;
  TaskId running = kNoTask;  // the task on this worker now
};

class Scheduler {
 public:
  // `barriers` holds one GroupBarrier per chip; a group uses the barrier of
  // its rank-0 chip, which no other group can use while that chip is busy.
  Scheduler(TaskGraph& graph, Doorbell& bell, std::vector<Endpoint*> subs, std::vector<Endpoint*> chips,
            GroupBarrier* barriers);
  ~Scheduler();

  void start();
  void stop();  // joins the thread; queued work stays queued

  // Any thread.
  void enqueue(SlotIndex s);
  void report_death(TaskKind kind, uint32_t index, std::string why);
  // A replacement for a dead worker is up.
  void report_birth(TaskKind kind, uint32_t index);
  // Called (on the scheduler thread) with a dead worker's number to ask for a
  // replacement; without it dead workers stay dead. Set before start().
  void set_respawn(std::function<void(uint32_t worker)> respawn) { respawn_ = std::move(respawn); }
  // From now on dead workers are not replaced (used by shutdown).
  // Any thread.
  void stop_respawning() {
    no_respawn_.store(true, std::memory_order_release);
    bell_.ring();
  }
  uint64_t restarts() const { return restarts_.load(std::memory_order_relaxed); }
  // From now on, ready tasks fail without running (used by close()).
  void cancel_pending();

  uint32_t num_subs() const { return n_subs_; }
  uint32_t num_chips() const { return static_cast<uint32_t>(workers_.size()) - n_subs_; }
  std::vector<WorkerStats> worker_stats() const;
  uint64_t queue_depth() const { return depth_.load(std::memory_order_relaxed); }
  uint64_t retried() const { return retried_.load(std::memory_order_relaxed); }

 private:
  struct Worker {
    Endpoint* ep;
    std::string name;
    bool alive = true;
    bool restarting = false;  // dead, a replacement is on its way
    uint32_t crashes = 0;     // deaths since the last completed task
    bool busy = false;
    int64_t reserved_by = -1;  // slot of the group holding this idle chip
    SlotIndex slot = 0;
    uint32_t member = 0;
    std::chrono::steady_clock::time_point started;
  };

  void loop();
  bool take_inbox();
  bool take_deaths();
  bool poll_workers();
  bool dispatch();
  bool dispatch_groups();
  bool fail_unrunnable();
  void post(uint32_t w, SlotIndex s, uint32_t member, uint32_t rank, uint32_t size, uint32_t barrier);
  void member_done(uint32_t w, const Completion& c, bool died, const std::string& why);
  void finish(SlotIndex s, const Outcome& o);
  void settle(std::vector<SlotIndex>& work);
  void route(SlotIndex s);
  void fail_queue(std::deque<SlotIndex>& q, const std::string& why);
  bool live_chip(int32_t c) const;
  bool usable(const Worker& w) const { return w.alive || w.restarting; }
  bool take_births();
  uint32_t chip_worker(int32_t c) const { return n_subs_ + static_cast<uint32_t>(c); }

  TaskGraph& graph_;
  Doorbell& bell_;
  GroupBarrier* barriers_;
  std::vector<Worker> workers_;
  uint32_t n_subs_;
  ReadyQueues queues_;
  std::vector<SlotIndex> work_;  // scratch for settle()

  std::mutex inbox_mu_;
  std::vector<SlotIndex> inbox_;
  std::vector<std::pair<uint32_t, std::string>> deaths_;
  std::vector<uint32_t> births_;
  std::function<void(uint32_t)> respawn_;
  std::atomic<bool> no_respawn_{false};
  std::atomic<uint64_t> restarts_{0};

  mutable std::mutex stats_mu_;
  std::vector<WorkerStats> stats_;
  std::atomic<uint64_t> depth_{0};
  std::atomic<uint64_t> retried_{0};

  std::atomic<bool> stop_{false};
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

}  // namespace tierflow
