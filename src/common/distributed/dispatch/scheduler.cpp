#include "common/distributed/dispatch/scheduler.h"

#include <algorithm>
#include <cassert>
#include <cstdio>

#include "common/distributed/graph/session.h"

namespace tierflow {

namespace {

// How much a member's failure says about the group: a deliberate stop
// outranks a death, which outranks an exception, which outranks the
// "barrier broken" errors a failure causes in the other members; so the
// group is reported — and retried — by its real cause, whichever member's
// report arrives first.
constexpr char kBarrierBroken[] = "tierflow.BarrierBroken";
// Levels of the lines for the user's log (set_note): Python's logging levels.
constexpr int kLogDebug = 10, kLogInfo = 20, kLogWarning = 30;

int rank(FailureKind k, const std::string& types) {
  switch (k) {
    case FailureKind::Exception: return types.compare(0, sizeof kBarrierBroken - 1, kBarrierBroken) == 0 ? 1 : 2;
    case FailureKind::WorkerDied: return 3;
    case FailureKind::Timeout: return 4;
    case FailureKind::Cancelled: return 5;
    case FailureKind::DependencyFailed: return 0;
  }
  return 0;
}

// `types` is the failed exception's MRO as "module.QualName|..." names.
bool retry_matches(const std::string& types, const std::vector<std::string>& wanted) {
  size_t start = 0;
  while (start <= types.size()) {
    size_t end = types.find('|', start);
    if (end == std::string::npos) end = types.size();
    for (const std::string& w : wanted)
      if (types.compare(start, end - start, w) == 0) return true;
    start = end + 1;
  }
  return false;
}

std::string seconds(int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(ms) / 1000.0);
  return buf;
}

}  // namespace

namespace {
std::vector<std::string> worker_names(size_t subs, size_t next, const std::string& next_kind) {
  std::vector<std::string> names;
  for (size_t i = 0; i < subs; ++i) names.push_back("sub " + std::to_string(i));
  for (size_t i = 0; i < next; ++i) names.push_back(next_kind + " " + std::to_string(i));
  return names;
}
}  // namespace

Scheduler::Scheduler(TaskGraph& graph, Doorbell& bell, std::vector<Endpoint*> subs, std::vector<Endpoint*> chips,
                     std::string next_kind)
    : graph_(graph), bell_(bell), next_kind_(std::move(next_kind)), n_subs_(static_cast<uint32_t>(subs.size())),
      ready_(static_cast<uint32_t>(chips.size())), stats_(worker_names(subs.size(), chips.size(), next_kind_)) {
  std::vector<std::string> names = worker_names(subs.size(), chips.size(), next_kind_);
  for (size_t i = 0; i < subs.size() + chips.size(); ++i) {
    Worker w;
    w.ep = i < subs.size() ? subs[i] : chips[i - subs.size()];
    w.name = names[i];
    workers_.push_back(w);
  }
  graph_.add_observer(&stats_);
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

void Scheduler::cancelled(SlotIndex s, TaskId id) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    ReadyEntry e;
    e.slot = s;
    e.id = id;
    cancels_.push_back(e);
  }
  bell_.ring();
}

void Scheduler::sweep_cancelled(bool stop_running) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    sweep_ = true;
    stop_running_ |= stop_running;
  }
  bell_.ring();
}

void Scheduler::loop() {
  bool recently_busy = false;
  for (;;) {
    // The ticket is taken before stop_ is read: a stop() between the two
    // (stop_ set, then the bell rung) either shows in stop_ or makes the
    // ticket stale, so the wait below returns at once. Read the other way
    // round, a stop landing between them was slept through forever.
    uint32_t ticket = bell_.prepare();
    if (stop_.load(std::memory_order_acquire)) break;
    bool progress = take_deaths();
    progress |= take_births();
    progress |= poll_workers();
    progress |= take_inbox();
    progress |= take_cancels();
    take_explains();  // reads only: no progress
    progress |= check_deadlines();
    progress |= dispatch();
    depth_.store(ready_.depth() + (has_head_ ? 1 : 0), std::memory_order_relaxed);
    note_dropped();
    // Spin only right after useful work, and only as long as spinning has
    // been paying (AdaptiveSpin): a busy pipeline hands the next completion
    // over without a wake-up, an idle Worker sleeps at once.
    if (!progress) bell_.wait(ticket, recently_busy ? &spin_ : nullptr, ns_to_next_deadline());
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
    w.took_task = false;
    restarts_.fetch_add(1, std::memory_order_relaxed);
    note(kLogInfo, w.name + " is back: a replacement process took over");
    for (ScheduleObserver* o : graph_.observers()) o->worker_born(i);
  }
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
    for (ScheduleObserver* o : graph_.observers()) o->worker_died(d.first);
    // A worker this scheduler killed (timeout, cancel) was reported when
    // the kill was decided, and workers end when the level stops; any
    // other death is news.
    if (w.killing || no_respawn_.load(std::memory_order_acquire))
      note(kLogDebug, d.second);
    else if (w.busy)
      note(kLogWarning, d.second + ", while it ran " + task_label(graph_.slot(w.slot)));
    else
      note(kLogWarning, d.second + " (it was idle)");
    if (w.busy) {
      TaskResult r;
      // A child that finished its task and then died delivers the result.
      if (w.ep->poll(&r))
        member_done(d.first, std::move(r), false, "");
      else
        member_done(d.first, std::move(r), true, d.second);
    }
    w.killing = false;
    // A process that dies before it ever takes a task (a callable that
    // crashes the process at start, say) is not replaced forever; deaths that
    // tasks cause never count, so the pool keeps its size.
    constexpr uint32_t kMaxCrashLoop = 5;
    if (!w.took_task) ++w.crashes;
    if (respawn_ && !no_respawn_.load(std::memory_order_acquire) && w.crashes <= kMaxCrashLoop) {
      w.restarting = true;
      w.ep->reset();
      respawn_(d.first);
    } else if (respawn_ && !no_respawn_.load(std::memory_order_acquire)) {
      note(kLogWarning, w.name + " died " + std::to_string(w.crashes) +
                            " times in a row before taking a task; it is not replaced any more");
    }
  }
  return true;
}

bool Scheduler::take_cancels() {
  std::vector<ReadyEntry> cancels;
  bool sweep, stop_running;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    if (cancels_.empty() && !sweep_) return false;
    cancels.swap(cancels_);
    sweep = sweep_;
    stop_running = stop_running_;
    sweep_ = stop_running_ = false;
  }
  for (const ReadyEntry& c : cancels) {
    TaskSlot& t = graph_.slot(c.slot);
    if (t.id.load(std::memory_order_relaxed) != c.id) continue;
    // Only this thread moves a task out of pending or ready, so what the
    // state says now holds until we act.
    TaskState st = t.state.load(std::memory_order_acquire);
    if (st == TaskState::Pending) {
      std::vector<SlotIndex> ready;
      graph_.finish_early(c.slot, graph_.not_run(kNoTask, cancel_reason(t)), &ready);
      settle(ready);
    } else if (st == TaskState::Ready) {
      finish(c.slot, graph_.not_run(kNoTask, cancel_reason(t)));  // its queue entry goes stale
    }
  }
  if (sweep) sweep_queues();
  if (stop_running) kill_cancelled_running();
  return true;
}

bool Scheduler::sweep_queues() {
  std::vector<ReadyEntry> drop;
  ready_.remove_if([&](const ReadyEntry& e) {
    if (stale(e)) return true;  // nothing to finish
    if (!is_cancelled(graph_.slot(e.slot))) return false;
    drop.push_back(e);
    return true;
  });
  if (has_head_ && !stale(head_) && is_cancelled(graph_.slot(head_.slot))) {
    drop.push_back(head_);
    drop_group_head();
  }
  for (const ReadyEntry& e : drop) {
    count_dropped(graph_.slot(e.slot));
    finish(e.slot, graph_.not_run(kNoTask, cancel_reason(graph_.slot(e.slot))));
  }
  return !drop.empty();
}

void Scheduler::count_dropped(const TaskSlot& t) {
  if (dropped_++ == 0) dropped_reason_ = cancel_reason(t);
}

void Scheduler::note_dropped() {
  if (dropped_ == 0) return;
  note(kLogInfo, "cancelled " + std::to_string(dropped_) + " queued task(s) before they started: " + dropped_reason_);
  dropped_ = 0;
}

void Scheduler::kill_cancelled_running() {
  for (uint32_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (!w.busy || w.killing) continue;
    const TaskSlot& t = graph_.slot(w.slot);
    if (is_cancelled(t))
      kill_worker(i, FailureKind::Cancelled,
                  "cancelled: " + cancel_reason(t) + "; it was still running on " + w.name + " and was stopped");
  }
}

void Scheduler::kill_worker(uint32_t wi, FailureKind kind, std::string reason) {
  Worker& w = workers_[wi];
  if (!kill_ || !w.alive) return;
  w.killing = true;
  w.kill_kind = kind;
  w.kill_reason = std::move(reason);
  note(kind == FailureKind::Timeout ? kLogWarning : kLogInfo, w.kill_reason);
  kill_(wi);
}

int64_t Scheduler::ns_to_next_deadline() const {
  if (n_deadlines_ == 0) return -1;
  Clock::time_point next = Clock::time_point::max();
  for (const Worker& w : workers_)
    if (w.has_deadline && !w.killing) next = std::min(next, w.deadline);
  if (next == Clock::time_point::max()) return -1;
  auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(next - Clock::now()).count();
  return left < 0 ? 0 : left;
}

bool Scheduler::check_deadlines() {
  if (n_deadlines_ == 0) return false;
  auto now = Clock::now();
  bool any = false;
  for (uint32_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (!w.has_deadline || w.killing || w.deadline > now) continue;
    const TaskSlot& t = graph_.slot(w.slot);
    kill_worker(i, FailureKind::Timeout,
                "task " + std::to_string(t.id.load(std::memory_order_relaxed)) + " (" + graph_.name_of(t) +
                    ") ran longer than its timeout of " + seconds(t.timeout_ms) + " s on " + w.name +
                    "; the worker was killed and is being replaced");
    any = true;
  }
  return any;
}

bool Scheduler::poll_workers() {
  bool any = false;
  TaskResult r;
  for (uint32_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (w.busy && w.alive && w.ep->poll(&r)) {
      member_done(i, std::move(r), false, "");
      any = true;
    }
  }
  return any;
}

void Scheduler::member_done(uint32_t wi, TaskResult&& r, bool died, const std::string& why) {
  Worker& w = workers_[wi];
  SlotIndex s = w.slot;
  w.busy = false;
  if (w.has_deadline) {
    w.has_deadline = false;
    --n_deadlines_;
  }
  bool killed = w.killing && died;
  TaskSlot& t = graph_.slot(s);
  int64_t busy_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - w.started).count();
  for (ScheduleObserver* o : graph_.observers()) o->member_done(t, wi, w.member, busy_ns);
  if (trace_ != nullptr) record_run(wi, t, r, died, killed);
  if (!died) w.crashes = 0;
  if (r.ok && !died) {
    if (w.member == 0) t.value = std::move(r.value);
  } else {
    FailureKind kind = !died ? (r.lost ? FailureKind::WorkerDied : FailureKind::Exception)
                             : killed ? w.kill_kind : FailureKind::WorkerDied;
    bool first = !t.failed;
    if (first || rank(kind, r.types) > rank(t.failed->failure.kind, t.failed->types)) {
      if (first) t.failed.reset(new TaskSlot::AttemptFailure());
      Failure& f = t.failed->failure;
      f = Failure{};
      f.worker = w.name;
      f.kind = kind;
      f.attempts = t.attempts;
      t.failed->types.clear();
      if (!died) {
        f.message = std::move(r.message);
        f.traceback = std::move(r.traceback);
        f.exception = std::move(r.exception);
        t.failed->types = std::move(r.types);
      } else {
        f.message = killed ? w.kill_reason : why;
      }
      // Release the other members of a group from the barrier (a member that
      // returns breaks it itself; a dead one cannot).
      if (first && t.kind == TaskKind::Group) workers_[t.running_on[0]].ep->break_group();
    }
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
  if (t.failed && t.retries_left > 0 && !is_cancelled(t)) {
    FailureKind k = t.failed->failure.kind;
    bool retry = k == FailureKind::WorkerDied ||
                 (k == FailureKind::Exception && t.retry_on && retry_matches(t.failed->types, *t.retry_on));
    if (retry) {
      note(kLogInfo, task_label(t) + " failed (" + to_string(k) + " on " + t.failed->failure.worker +
                         ") and is retried: attempt " + std::to_string(t.attempts + 1) + " of " +
                         std::to_string(t.attempts + t.retries_left));
      --t.retries_left;
      t.members_done = 0;
      t.failed.reset();
      t.value.clear();
      retried_.fetch_add(1, std::memory_order_relaxed);
      route(s);
      return;
    }
  }
  Outcome o;
  o.ok = !t.failed;
  if (o.ok) {
    o.value = std::move(t.value);
  } else {
    o.failure = std::move(t.failed->failure);
    t.failed.reset();
  }
  finish(s, std::move(o));
}

void Scheduler::finish(SlotIndex s, Outcome&& o) {
  std::vector<SlotIndex> ready;
  graph_.finish(s, std::move(o), &ready);
  settle(ready);
}

bool Scheduler::is_cancelled(const TaskSlot& t) const {
  return graph_.cancel_claimed(t) || t.session->cancelled(t.id.load(std::memory_order_relaxed));
}

std::string Scheduler::cancel_reason(const TaskSlot& t) const {
  if (graph_.cancel_claimed(t)) return "Task.cancel() was called";
  return t.session->cancel_reason();
}

// Routes tasks whose producers are all finished: to a ready queue, or, when a
// failure reached them (or they were cancelled), straight to failure, which
// may in turn settle their own consumers. A worklist, not recursion: a failed
// chain of 100k tasks must not overflow the stack.
void Scheduler::settle(std::vector<SlotIndex>& work) {
  // Front to back, appending as failures make more tasks settle: tasks reach
  // their queues in the order they became ready (submission order for a batch).
  for (size_t i = 0; i < work.size(); ++i) {
    SlotIndex s = work[i];
    if (graph_.settle_early(s)) continue;
    TaskSlot& t = graph_.slot(s);
    TaskId root = t.poisoned_by.load(std::memory_order_acquire);
    if (root != kNoTask)
      graph_.finish(s, graph_.not_run(root, ""), &work);
    else if (is_cancelled(t)) {
      if (!graph_.cancel_claimed(t)) count_dropped(t);  // a session's cancel (Task.cancel() is the caller's own)
      graph_.finish(s, graph_.not_run(kNoTask, cancel_reason(t)), &work);
    }
    else
      route(s);
  }
  work.clear();
}

void Scheduler::route(SlotIndex s) {
  TaskSlot& t = graph_.slot(s);
  if (t.kind == TaskKind::Chip && t.target >= static_cast<int32_t>(num_chips())) {
    Outcome o;
    o.ok = false;
    o.failure.kind = FailureKind::WorkerDied;
    o.failure.message = next_name(t.target) + " does not exist";
    finish(s, std::move(o));
    return;
  }
  graph_.mark_ready(s);
  for (ScheduleObserver* o : graph_.observers()) o->ready(t);
  ReadyEntry e;
  e.slot = s;
  e.id = t.id.load(std::memory_order_relaxed);
  e.kind = t.kind;
  e.target = t.kind == TaskKind::Chip ? t.target : -1;
  e.cost = t.kind == TaskKind::Group ? static_cast<uint32_t>(t.members.size()) : 1;
  e.session = t.session_id;
  ready_.set_weight(e.session, t.session->weight());
  ready_.push(e);
}

bool Scheduler::stale(const ReadyEntry& e) const {
  const TaskSlot& t = graph_.slot(e.slot);
  return t.id.load(std::memory_order_relaxed) != e.id || t.state.load(std::memory_order_acquire) != TaskState::Ready;
}

bool Scheduler::claim(const ReadyEntry& e) {
  if (stale(e)) return false;  // finished while queued (cancelled)
  TaskSlot& t = graph_.slot(e.slot);
  if (t.session->cancelled(e.id) || !graph_.try_start(e.slot)) {
    if (!graph_.cancel_claimed(t)) count_dropped(t);
    finish(e.slot, graph_.not_run(kNoTask, cancel_reason(t)));
    return false;
  }
  return true;
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
  d.stamp = trace_ != nullptr;
  if (member == 0) ++t.attempts;
  w.busy = true;
  w.took_task = true;
  w.reserved_by = -1;
  w.slot = s;
  w.member = member;
  w.started = Clock::now();
  if (t.timeout_ms >= 0) {
    w.has_deadline = true;
    w.deadline = w.started + std::chrono::milliseconds(t.timeout_ms);
    ++n_deadlines_;
  }
  for (ScheduleObserver* o : graph_.observers()) o->started(t, wi, member);
  w.ep->post(d);
}

bool Scheduler::live_chip(int32_t c) const {
  return c >= 0 && static_cast<uint32_t>(c) < num_chips() && usable(workers_[chip_worker(c)]);
}

bool Scheduler::fail_queued(const std::function<bool(const ReadyEntry&)>& which, const std::string& why) {
  std::vector<ReadyEntry> doomed;
  ready_.remove_if([&](const ReadyEntry& e) {
    if (!which(e)) return false;
    if (!stale(e)) doomed.push_back(e);
    return true;
  });
  for (const ReadyEntry& e : doomed) {
    Outcome o;
    o.ok = false;
    o.failure.kind = FailureKind::WorkerDied;
    o.failure.message = why;
    finish(e.slot, std::move(o));
  }
  return !doomed.empty();
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
  if (!sub_alive && ready_.has_sub())
    any |= fail_queued([](const ReadyEntry& e) { return e.kind == TaskKind::Sub; },
                       "no live sub-worker is left to run this task");
  if (!chip_alive && ready_.has_any_chip())
    any |= fail_queued([](const ReadyEntry& e) { return e.kind == TaskKind::Chip && e.target < 0; },
                       "no live " + next_kind_ + " is left to run this task");
  for (uint32_t c = 0; c < num_chips(); ++c)
    if (!usable(workers_[chip_worker(c)]) && ready_.has_directed(c))
      any |= fail_queued(
          [c](const ReadyEntry& e) { return e.kind == TaskKind::Chip && e.target == static_cast<int32_t>(c); },
          next_name(c) + " is dead; the task was directed to it");
  return any;
}

void Scheduler::drop_group_head() {
  for (auto& w : workers_)
    if (w.reserved_by == static_cast<int64_t>(head_.slot)) w.reserved_by = -1;
  has_head_ = false;
}

bool Scheduler::dispatch_groups() {
  bool any = false;
  for (;;) {
    if (!has_head_) {
      if (!ready_.pop_group(&head_)) return any;
      has_head_ = true;
    }
    if (stale(head_)) {  // finished (cancelled) while waiting for chips
      drop_group_head();
      any = true;
      continue;
    }
    SlotIndex g = head_.slot;
    TaskSlot& t = graph_.slot(g);
    uint32_t n = static_cast<uint32_t>(t.members.size());
    std::vector<int32_t> chips;
    std::string dead;
    if (!t.group_chips.empty()) {
      for (int32_t c : t.group_chips)
        if (!live_chip(c)) dead = next_name(c) + " of the group is dead or does not exist";
      chips = t.group_chips;
    } else {
      uint32_t live = 0;
      for (uint32_t c = 0; c < num_chips(); ++c) live += usable(workers_[chip_worker(c)]);
      if (live < n)
        dead = "the group needs " + std::to_string(n) + " " + next_plural() + " but only " + std::to_string(live) + " are alive";
    }
    if (!dead.empty()) {
      drop_group_head();
      Outcome o;
      o.ok = false;
      o.failure.kind = FailureKind::WorkerDied;
      o.failure.message = dead;
      finish(g, std::move(o));
      any = true;
      continue;
    }
    int64_t me = static_cast<int64_t>(g);
    if (chips.empty()) {
      // Keep chips already reserved, then reserve more idle ones.
      for (uint32_t c = 0; c < num_chips(); ++c)
        if (workers_[chip_worker(c)].reserved_by == me) chips.push_back(static_cast<int32_t>(c));
      for (uint32_t c = 0; c < num_chips() && chips.size() < n; ++c) {
        Worker& w = workers_[chip_worker(c)];
        if (w.alive && !w.busy && w.reserved_by == -1) {
          w.reserved_by = me;
          chips.push_back(static_cast<int32_t>(c));
        }
      }
      if (chips.size() < n) return any;
    } else {
      bool all_idle = true;
      for (int32_t c : chips) {
        Worker& w = workers_[chip_worker(c)];
        if (w.alive && !w.busy && w.reserved_by == -1) w.reserved_by = me;
        all_idle &= w.alive && !w.busy && w.reserved_by == me;
      }
      if (!all_idle) return any;
    }
    ReadyEntry head = head_;
    drop_group_head();
    any = true;
    if (!claim(head)) continue;
    uint32_t barrier = static_cast<uint32_t>(chips[0]);
    workers_[chip_worker(chips[0])].ep->arm_group(n);
    t.running_on.clear();
    for (int32_t c : chips) t.running_on.push_back(chip_worker(c));
    for (uint32_t i = 0; i < n; ++i) post(chip_worker(chips[i]), g, i, i, n, barrier);
  }
}

bool Scheduler::dispatch() {
  bool any = fail_unrunnable();
  ReadyEntry e;
  for (uint32_t i = 0; i < n_subs_ && ready_.has_sub(); ++i) {
    Worker& w = workers_[i];
    if (!w.alive || w.busy) continue;
    while (ready_.pop_sub(&e)) {
      any = true;
      if (!claim(e)) continue;
      post(i, e.slot, 0, 0, 1, 0);
      break;
    }
  }
  any |= dispatch_groups();
  for (uint32_t c = 0; c < num_chips(); ++c) {
    Worker& w = workers_[chip_worker(c)];
    if (!w.alive || w.busy || w.reserved_by != -1) continue;
    while (ready_.pop_chip(c, &e)) {
      any = true;
      if (!claim(e)) continue;
      post(chip_worker(c), e.slot, 0, 0, 1, c);
      break;
    }
  }
  return any;
}

std::string Scheduler::task_label(const TaskSlot& t) const {
  return "task " + std::to_string(t.id.load(std::memory_order_relaxed)) + " (" + graph_.name_of(t) + ")";
}

}  // namespace tierflow
