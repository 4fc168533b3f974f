#include "common/distributed/scheduler.h"

#include <algorithm>
#include <cassert>

namespace tierflow {

namespace {
// The last non-empty line of a Python traceback is "Type: message".
std::string last_line(const std::string& text) {
  size_t end = text.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return text;
  size_t start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1));
}
}  // namespace

Scheduler::Scheduler(TaskGraph& graph, Doorbell& bell, std::vector<Endpoint*> subs, std::vector<Endpoint*> chips,
                     GroupBarrier* barriers)
    : graph_(graph), bell_(bell), barriers_(barriers), n_subs_(static_cast<uint32_t>(subs.size())),
      queues_(static_cast<uint32_t>(chips.size())) {
  auto add = [this](Endpoint* ep, std::string name) {
    Worker w;
    w.ep = ep;
    w.name = std::move(name);
    workers_.push_back(w);
  };
  for (size_t i = 0; i < subs.size(); ++i) add(subs[i], "sub " + std::to_string(i));
  for (size_t i = 0; i < chips.size(); ++i) add(chips[i], "chip " + std::to_string(i));
  for (auto& w : workers_) {
    WorkerStats ws;
    ws.name = w.name;
    stats_.push_back(ws);
  }
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() { thread_ = std::thread([this] { loop(); }); }

void Scheduler::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_release);
  bell_.ring();
  thread_.join();
}

void Scheduler::enqueue(SlotIndex s) {
  bool first;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    first = inbox_.empty();
    inbox_.push_back(s);
  }
  // A non-empty inbox has already rung the bell and has not been taken yet
  // (take_inbox empties it under the same mutex), so one ring per batch is
  // enough: the scheduler cannot sleep through it.
  if (first) bell_.ring();
}

void Scheduler::report_death(TaskKind kind, uint32_t index, std::string why) {
  uint32_t w = kind == TaskKind::Sub ? index : n_subs_ + index;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    deaths_.emplace_back(w, std::move(why));
  }
  bell_.ring();
}

void Scheduler::report_birth(TaskKind kind, uint32_t index) {
  uint32_t w = kind == TaskKind::Sub ? index : n_subs_ + index;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    births_.push_back(w);
  }
  bell_.ring();
}

bool Scheduler::take_births() {
  std::vector<uint32_t> births;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (births_.empty()) return false;
    births.swap(births_);
  }
  for (uint32_t i : births) {
    Worker& w = workers_[i];
    if (w.alive) continue;
    w.alive = true;
    w.restarting = false;
    restarts_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_[i].alive = true;
  }
  return true;
}

void Scheduler::cancel_pending() {
  cancel_.store(true, std::memory_order_release);
  bell_.ring();
}

std::vector<WorkerStats> Scheduler::worker_stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

void Scheduler::loop() {
  constexpr int kSpins = 500;
  bool recently_busy = false;
  while (!stop_.load(std::memory_order_acquire)) {
    uint32_t ticket = bell_.prepare();
    bool progress = take_deaths();
    progress |= take_births();
    progress |= poll_workers();
    progress |= take_inbox();
    if (cancel_.load(std::memory_order_acquire)) {
      fail_queue(queues_.sub, "cancelled: the Worker is closing");
      fail_queue(queues_.any_chip, "cancelled: the Worker is closing");
      fail_queue(queues_.groups, "cancelled: the Worker is closing");
      for (auto& q : queues_.directed) fail_queue(q, "cancelled: the Worker is closing");
    }
    progress |= dispatch();
    depth_.store(queues_.depth(), std::memory_order_relaxed);
    // Spin briefly only right after useful work: a busy pipeline hands the
    // next completion over without a wake-up, an idle Worker sleeps at once.
    if (!progress) bell_.wait(ticket, recently_busy ? kSpins : 0);
    recently_busy = progress;
  }
}

bool Scheduler::take_inbox() {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (inbox_.empty()) return false;
    work_.swap(inbox_);
  }
  settle(work_);
  return true;
}

bool Scheduler::take_deaths() {
  std::vector<std::pair<uint32_t, std::string>> deaths;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (deaths_.empty()) return false;
    deaths.swap(deaths_);
  }
  for (auto& d : deaths) {
    Worker& w = workers_[d.first];
    if (!w.alive) continue;
    w.alive = false;
    w.reserved_by = -1;
    {
      std::lock_guard<std::mutex> lock(stats_mu_);
      stats_[d.first].alive = false;
    }
    if (w.busy) {
      Completion c;
      // A child that finished its task and then died delivers the result.
      if (w.ep->poll(&c))
        member_done(d.first, c, false, "");
      else
        member_done(d.first, c, true, d.second);
    }
    // A worker that keeps dying without finishing anything is not replaced
    // forever (e.g. a callable that crashes the process at start).
    constexpr uint32_t kMaxCrashLoop = 5;
    if (respawn_ && !no_respawn_.load(std::memory_order_acquire) && ++w.crashes <= kMaxCrashLoop) {
      w.restarting = true;
      w.ep->reset();
      respawn_(d.first);
    }
  }
  return true;
}

bool Scheduler::poll_workers() {
  bool any = false;
  Completion c;
  for (uint32_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (w.busy && w.alive && w.ep->poll(&c)) {
      member_done(i, c, false, "");
      any = true;
    }
  }
  return any;
}

void Scheduler::member_done(uint32_t wi, const Completion& c, bool died, const std::string& why) {
  Worker& w = workers_[wi];
  SlotIndex s = w.slot;
  w.busy = false;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_[wi].busy = false;
    stats_[wi].running = kNoTask;
    stats_[wi].busy_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - w.started).count();
    stats_[wi].tasks += 1;
  }
  TaskSlot& t = graph_.slot(s);
  bool ok = c.ok && !died;
  if (!died) w.crashes = 0;
  // A death outranks the exceptions it causes in the other members of a group
  // (released from the barrier), so the group is reported, and retried, as
  // worker_died.
  if (!ok && (!t.member_failed || (died && t.fail_kind != "worker_died"))) {
    bool first = !t.member_failed;
    t.member_failed = true;
    t.fail_worker = w.name;
    if (died) {
      t.fail_kind = "worker_died";
      t.fail_message = why;
      t.fail_traceback = "";
    } else {
      t.fail_kind = "exception";
      t.fail_message = last_line(c.error);
      t.fail_traceback = c.error;
    }
    // Release the other members of a group from the barrier.
    if (first && t.kind == TaskKind::Group) barriers_[t.running_on[0] - n_subs_].break_it();
  }
  if (++t.members_done < t.members.size()) {
    // Keep this chip out of other work until the whole group has returned:
    // the group's barrier (its rank-0 chip's) must not be re-armed by another
    // group while a member of this one may still call it.
    if (t.kind == TaskKind::Group && w.alive) w.reserved_by = s;
    return;
  }
  if (t.kind == TaskKind::Group)
    for (auto& other : workers_)
      if (other.reserved_by == static_cast<int64_t>(s)) other.reserved_by = -1;
  if (t.member_failed && t.fail_kind == "worker_died" && t.retries_left > 0) {
    --t.retries_left;
    t.members_done = 0;
    t.member_failed = false;
    retried_.fetch_add(1, std::memory_order_relaxed);
    route(s);
    return;
  }
  Outcome o;
  o.ok = !t.member_failed;
  if (!o.ok) {
    o.kind = t.fail_kind;
    o.worker = t.fail_worker;
    o.message = t.fail_message;
    o.traceback = t.fail_traceback;
  }
  finish(s, o);
}

void Scheduler::finish(SlotIndex s, const Outcome& o) {
  std::vector<SlotIndex> ready;
  graph_.finish(s, o, &ready);
  settle(ready);
}

// Routes tasks whose producers are all finished: to a ready queue, or, when a
// producer failed (or the Worker is closing), straight to failure, which may
// in turn settle its own consumers. A worklist, not recursion: a failed chain
// of 100k tasks must not overflow the stack.
void Scheduler::settle(std::vector<SlotIndex>& work) {
  // Front to back, appending as failures make more tasks settle: tasks reach
  // their queues in the order they became ready (submission order for a batch).
  for (size_t i = 0; i < work.size(); ++i) {
    SlotIndex s = work[i];
    TaskSlot& t = graph_.slot(s);
    TaskId root = t.poisoned_by.load(std::memory_order_acquire);
    bool cancel = cancel_.load(std::memory_order_acquire);
    if (root == kNoTask && !cancel) {
      route(s);
      continue;
    }
    Outcome o;
    o.ok = false;
    o.kind = "dependency_failed";
    o.message = root != kNoTask
                    ? "task " + std::to_string(t.id.load()) + " did not run: task " + std::to_string(root) + " failed"
                    : "cancelled: the Worker is closing";
    graph_.finish(s, o, &work);
  }
  work.clear();
}

void Scheduler::route(SlotIndex s) {
  TaskSlot& t = graph_.slot(s);
  t.state.store(TaskState::Ready, std::memory_order_release);
  switch (t.kind) {
    case TaskKind::Sub: queues_.sub.push_back(s); break;
    case TaskKind::Chip:
      if (t.target >= static_cast<int32_t>(num_chips())) {
        Outcome o;
        o.ok = false;
        o.kind = "worker_died";
        o.message = "chip " + std::to_string(t.target) + " does not exist";
        finish(s, o);
      } else if (t.target >= 0)
        queues_.directed[t.target].push_back(s);
      else
        queues_.any_chip.push_back(s);
      break;
    case TaskKind::Group: queues_.groups.push_back(s); break;
  }
}

void Scheduler::post(uint32_t wi, SlotIndex s, uint32_t member, uint32_t rank, uint32_t size, uint32_t barrier) {
  Worker& w = workers_[wi];
  TaskSlot& t = graph_.slot(s);
  Dispatch d;
  d.kind = t.kind;
  d.callable = t.callable;
  d.args = &t.members[member];
  d.group_rank = rank;
  d.group_size = size;
  d.barrier = barrier;
  t.state.store(TaskState::Running, std::memory_order_release);
  w.busy = true;
  w.reserved_by = -1;
  w.slot = s;
  w.member = member;
  w.started = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_[wi].busy = true;
    stats_[wi].running = t.id.load(std::memory_order_relaxed);
  }
  w.ep->post(d);
}

bool Scheduler::live_chip(int32_t c) const {
  return c >= 0 && static_cast<uint32_t>(c) < num_chips() && usable(workers_[chip_worker(c)]);
}

void Scheduler::fail_queue(std::deque<SlotIndex>& q, const std::string& why) {
  while (!q.empty()) {
    SlotIndex s = q.front();
    q.pop_front();
    Outcome o;
    o.ok = false;
    bool cancel = why.rfind("cancelled", 0) == 0;
    o.kind = cancel ? "dependency_failed" : "worker_died";
    o.message = why;
    finish(s, o);
  }
}

// Work that no live worker can ever run fails instead of waiting forever.
bool Scheduler::fail_unrunnable() {
  bool any = false;
  // Replacements that were asked for but can no longer come (shutdown, or
  // the fork server is gone) must not keep work waiting.
  if (no_respawn_.load(std::memory_order_acquire))
    for (auto& w : workers_) w.restarting = false;
  bool sub_alive = false, chip_alive = false;
  for (uint32_t i = 0; i < workers_.size(); ++i) (i < n_subs_ ? sub_alive : chip_alive) |= usable(workers_[i]);
  if (!sub_alive && !queues_.sub.empty()) {
    fail_queue(queues_.sub, "no live sub-worker is left to run this task");
    any = true;
  }
  if (!chip_alive && !queues_.any_chip.empty()) {
    fail_queue(queues_.any_chip, "no live chip is left to run this task");
    any = true;
  }
  for (uint32_t c = 0; c < num_chips(); ++c)
    if (!usable(workers_[chip_worker(c)]) && !queues_.directed[c].empty()) {
      fail_queue(queues_.directed[c], "chip " + std::to_string(c) + " is dead; the task was directed to it");
      any = true;
    }
  return any;
}

bool Scheduler::dispatch_groups() {
  bool any = false;
  while (!queues_.groups.empty()) {
    SlotIndex g = queues_.groups.front();
    TaskSlot& t = graph_.slot(g);
    uint32_t n = static_cast<uint32_t>(t.members.size());
    std::vector<int32_t> chips;
    std::string dead;
    if (!t.group_chips.empty()) {
      for (int32_t c : t.group_chips)
        if (!live_chip(c)) dead = "chip " + std::to_string(c) + " of the group is dead or does not exist";
      chips = t.group_chips;
    } else {
      uint32_t live = 0;
      for (uint32_t c = 0; c < num_chips(); ++c) live += usable(workers_[chip_worker(c)]);
      if (live < n)
        dead = "the group needs " + std::to_string(n) + " chips but only " + std::to_string(live) + " are alive";
    }
    if (!dead.empty()) {
      for (auto& w : workers_)
        if (w.reserved_by == g) w.reserved_by = -1;
      queues_.groups.pop_front();
      Outcome o;
      o.ok = false;
      o.kind = "worker_died";
      o.message = dead;
      finish(g, o);
      any = true;
      continue;
    }
    if (chips.empty()) {
      // Keep chips already reserved, then reserve more idle ones.
      for (uint32_t c = 0; c < num_chips(); ++c)
        if (workers_[chip_worker(c)].reserved_by == g) chips.push_back(static_cast<int32_t>(c));
      for (uint32_t c = 0; c < num_chips() && chips.size() < n; ++c) {
        Worker& w = workers_[chip_worker(c)];
        if (w.alive && !w.busy && w.reserved_by == -1) {
          w.reserved_by = g;
          chips.push_back(static_cast<int32_t>(c));
        }
      }
      if (chips.size() < n) return any;
    } else {
      bool all_idle = true;
      for (int32_t c : chips) {
        Worker& w = workers_[chip_worker(c)];
        if (w.alive && !w.busy && w.reserved_by == -1) w.reserved_by = g;
        all_idle &= w.alive && !w.busy && w.reserved_by == g;
      }
      if (!all_idle) return any;
    }
    queues_.groups.pop_front();
    uint32_t barrier = static_cast<uint32_t>(chips[0]);
    barriers_[barrier].arm(n);
    t.running_on.clear();
    for (int32_t c : chips) t.running_on.push_back(chip_worker(c));
    for (uint32_t i = 0; i < n; ++i) post(chip_worker(chips[i]), g, i, i, n, barrier);
    any = true;
  }
  return any;
}

bool Scheduler::dispatch() {
  bool any = fail_unrunnable();
  for (uint32_t i = 0; i < n_subs_ && !queues_.sub.empty(); ++i) {
    Worker& w = workers_[i];
    if (w.alive && !w.busy) {
      SlotIndex s = queues_.sub.front();
      queues_.sub.pop_front();
      post(i, s, 0, 0, 1, 0);
      any = true;
    }
  }
  any |= dispatch_groups();
  for (uint32_t c = 0; c < num_chips(); ++c) {
    Worker& w = workers_[chip_worker(c)];
    if (!w.alive || w.busy || w.reserved_by != -1) continue;
    std::deque<SlotIndex>* q = !queues_.directed[c].empty() ? &queues_.directed[c]
                               : !queues_.any_chip.empty()  ? &queues_.any_chip
                                                            : nullptr;
    if (q == nullptr) continue;
    SlotIndex s = q->front();
    q->pop_front();
    post(chip_worker(c), s, 0, 0, 1, c);
    any = true;
  }
  return any;
}

}  // namespace tierflow
