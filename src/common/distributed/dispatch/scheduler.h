// Scheduler: one thread that moves ready tasks onto idle workers and turns
// completions into newly ready tasks.
//
// Its only wait point is the Doorbell: submits, completions (rung by the
// children themselves), death notices, cancellations and stop() all ring it,
// and the thread sleeps only after a pass that found nothing to do — at most
// until the nearest task timeout. There is no other timed polling.
//
// Workers are numbered subs first, then chips. Ready tasks wait in the
// ReadySet, which decides between sessions (weighted round robin). A group
// task is dispatched only when it holds N idle chips at once; the one group
// at the head (across all sessions) reserves idle chips until it has enough,
// so groups are not starved by single-chip work.
//
// Watchdogs: a task past its timeout, and a cancelled task still running
// after its grace, has its worker killed through the kill hook; the death
// then fails it as "timeout" / "cancelled" and the worker is replaced.
#pragma once
#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/distributed/adaptive_spin.h"
#include "common/distributed/processes/doorbell.h"
#include "common/distributed/dispatch/endpoint.h"
#include "common/distributed/dispatch/ready_set.h"
#include "common/distributed/graph/stats_collector.h"
#include "common/distributed/graph/task_graph.h"
#include "common/distributed/graph/trace_recorder.h"

namespace tierflow {

// One unfinished task as explain() sees it.
struct TaskReport {
  struct Producer {
    TaskId id;
    std::string name;
    TaskState state;
  };
  TaskId id = kNoTask;
  std::string name, session;
  TaskKind kind = TaskKind::Sub;
  TaskState state = TaskState::Pending;
  std::vector<std::string> workers;   // running: where (one per member of a group)
  double running_s = 0;               // running: for how long, this attempt
  uint32_t attempts = 0;
  int64_t queued_ahead = -1;          // ready: tasks of its session queued before it
  std::vector<Producer> waits_on;     // pending: its producers that have not finished
};

class Scheduler {
 public:
  // `next` are the next-level workers (chips at level 3, lower-level
  // Workers above it), named `next_kind` + index in stats and messages. A
  // group meets at the rendezvous of its rank-0 member's endpoint, which no
  // other group can use while that member is busy.
  Scheduler(TaskGraph& graph, Doorbell& bell, std::vector<Endpoint*> subs, std::vector<Endpoint*> next,
            std::string next_kind = "chip");
  ~Scheduler();

  // Hooks, set before start(). respawn(worker): ask for a replacement of a
  // dead worker (without it dead workers stay dead). kill(worker): kill the
  // worker's process (without it timeouts and cancellation cannot stop a
  // running task).
  void set_respawn(std::function<void(uint32_t worker)> respawn) { respawn_ = std::move(respawn); }
  void set_kill(std::function<void(uint32_t worker)> kill) { kill_ = std::move(kill); }
  // Where the scheduler reports what a user wants in their log (a death, a
  // replacement, a retry, a timeout, cancellations): a level (Python's
  // logging levels) and a line. Called on this thread, only when such a
  // thing happens. Set before start().
  void set_note(std::function<void(int level, std::string text)> note) { note_ = std::move(note); }
  // Records every task run for a trace (set before start()).
  void set_trace(TraceRecorder* trace) { trace_ = trace; }
  // Any thread: every unfinished task — running where and for how long,
  // queued behind how many, or waiting on which producers. Built on the
  // scheduler thread, the only one that moves a task out of pending, ready
  // or running, so what it reads of those tasks holds still. Empty (and
  // *answered false) when the scheduler does not answer within timeout_ms.
  std::vector<TaskReport> explain(int64_t timeout_ms, bool* answered);
  void start();
  void stop();  // joins the thread; queued work stays queued

  // Any thread.
  void enqueue(SlotIndex s);
  void report_death(TaskKind kind, uint32_t index, std::string why);
  void report_birth(TaskKind kind, uint32_t index);  // a replacement for a dead worker is up
  // From now on dead workers are not replaced (shutdown, or no fork server).
  void stop_respawning() {
    no_respawn_.store(true, std::memory_order_release);
    bell_.ring();
  }
  // A task was cancelled (TaskGraph::cancel succeeded): fail it now, even
  // while its producers run.
  void cancelled(SlotIndex s, TaskId id);
  // Sessions cancelled tasks (Session::cancel_before): fail the queued ones
  // now; with `stop_running`, also kill the workers running them.
  void sweep_cancelled(bool stop_running);

  uint64_t restarts() const { return restarts_.load(std::memory_order_relaxed); }
  uint32_t num_subs() const { return n_subs_; }
  uint32_t num_chips() const { return static_cast<uint32_t>(workers_.size()) - n_subs_; }
  std::vector<WorkerStats> worker_stats() const { return stats_.workers(); }
  uint64_t queue_depth() const { return depth_.load(std::memory_order_relaxed); }
  uint64_t retried() const { return retried_.load(std::memory_order_relaxed); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Worker {
    Endpoint* ep;
    std::string name;
    bool alive = true;
    bool restarting = false;  // dead, a replacement is on its way
    bool took_task = false;   // this process has been given a task
    uint32_t crashes = 0;     // deaths before taking a first task, in a row
    bool busy = false;
    int64_t reserved_by = -1;  // slot of the group holding this idle chip
    SlotIndex slot = 0;
    uint32_t member = 0;
    Clock::time_point started;
    bool has_deadline = false;
    Clock::time_point deadline;
    bool killing = false;  // killed on purpose: its death fails the task as kill_kind
    FailureKind kill_kind = FailureKind::WorkerDied;
    std::string kill_reason;
  };

  void loop();
  bool take_inbox();
  bool take_deaths();
  bool take_births();
  bool take_cancels();
  bool take_explains();
  std::vector<TaskReport> snapshot() const;
  bool poll_workers();
  bool dispatch();
  bool dispatch_groups();
  bool fail_unrunnable();
  bool check_deadlines();
  bool sweep_queues();
  void kill_cancelled_running();
  int64_t ns_to_next_deadline() const;
  // Whether a popped entry may run now: false for a stale one (its task
  // finished while queued) and for a cancelled one (then finished here).
  bool claim(const ReadyEntry& e);
  bool stale(const ReadyEntry& e) const;
  void drop_group_head();
  void post(uint32_t w, SlotIndex s, uint32_t member, uint32_t rank, uint32_t size, uint32_t barrier);
  void member_done(uint32_t w, TaskResult&& result, bool died, const std::string& why);
  void kill_worker(uint32_t w, FailureKind kind, std::string reason);
  void finish(SlotIndex s, Outcome&& o);
  void settle(std::vector<SlotIndex>& work);
  void route(SlotIndex s);
  // Fails every queued task `which` selects, as worker_died with `why`.
  bool fail_queued(const std::function<bool(const ReadyEntry&)>& which, const std::string& why);
  bool is_cancelled(const TaskSlot& t) const;
  std::string cancel_reason(const TaskSlot& t) const;
  bool live_chip(int32_t c) const;
  bool usable(const Worker& w) const { return w.alive || w.restarting; }
  uint32_t chip_worker(int32_t c) const { return n_subs_ + static_cast<uint32_t>(c); }
  std::string next_name(int64_t c) const { return next_kind_ + " " + std::to_string(c); }
  std::string next_plural() const { return next_kind_ == "chip" ? "chips" : next_kind_ + " workers"; }

  TaskGraph& graph_;
  Doorbell& bell_;
  AdaptiveSpin spin_{kWaitSpins};  // before sleeping on the bell after useful work
  std::string next_kind_;  // "chip", "l3", ...
  std::vector<Worker> workers_;
  uint32_t n_subs_;
  ReadySet ready_;
  ReadyEntry head_;        // the group reserving chips, if has_head_
  bool has_head_ = false;
  std::vector<SlotIndex> work_;  // scratch for settle()
  uint32_t n_deadlines_ = 0;

  std::mutex inbox_mu_;
  std::vector<SlotIndex> inbox_;
  std::vector<std::pair<uint32_t, std::string>> deaths_;
  std::vector<uint32_t> births_;
  std::vector<ReadyEntry> cancels_;
  struct ExplainRequest {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::vector<TaskReport> out;
  };
  std::vector<std::shared_ptr<ExplainRequest>> explains_;
  std::atomic<bool> explain_asked_{false};  // lets a pass skip the inbox lock when nobody asked
  bool sweep_ = false, stop_running_ = false;
  std::function<void(uint32_t)> respawn_, kill_;
  std::function<void(int, std::string)> note_;
  TraceRecorder* trace_ = nullptr;
  std::vector<uint32_t> callable_names_[2];  // interned, per kind (sub; chip and group), on first sight
  void record_run(uint32_t wi, const TaskSlot& t, const TaskResult& r, bool died, bool killed);
  void note(int level, std::string text) {
    if (note_) note_(level, std::move(text));
  }
  // Queued tasks a session cancelled before they started, however the pass
  // met them (taken from the inbox, swept from a queue, popped): counted,
  // then one log line per pass for all of them (note_dropped()).
  void count_dropped(const TaskSlot& t);
  void note_dropped();
  uint64_t dropped_ = 0;
  std::string dropped_reason_;
  std::string task_label(const TaskSlot& t) const;
  std::atomic<bool> no_respawn_{false};
  std::atomic<uint64_t> restarts_{0};

  StatsCollector stats_;
  std::atomic<uint64_t> depth_{0};
  std::atomic<uint64_t> retried_{0};

  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tierflow
