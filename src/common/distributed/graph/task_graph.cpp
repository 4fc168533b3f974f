#include "common/distributed/graph/task_graph.h"

#include <algorithm>
#include <cassert>

#include "common/distributed/graph/trace_recorder.h"

#include "common/distributed/graph/session.h"

namespace tierflow {

TaskGraph::TaskGraph(uint32_t window, std::shared_ptr<Arena> arena)
    : arena_(std::move(arena)), ring_(window), slots_(new TaskSlot[window]) {}

void TaskGraph::set_callable_names(TaskKind kind, std::vector<std::string> names) {
  std::lock_guard<std::mutex> lock(names_mu_);
  callable_names_[static_cast<int>(kind)] = std::move(names);
}

std::string TaskGraph::callable_name(TaskKind kind, uint32_t callable) const {
  // A group runs a kernel, as a chip task does.
  std::lock_guard<std::mutex> lock(names_mu_);
  const auto& names = callable_names_[static_cast<int>(kind == TaskKind::Group ? TaskKind::Chip : kind)];
  if (callable < names.size()) return names[callable];
  return (kind == TaskKind::Sub ? "sub #" : "kernel #") + std::to_string(callable);
}

TaskId TaskGraph::begin(SlotIndex s, Session* session, bool in_scope) {
  TaskSlot& t = slots_[s];
  TaskId id = next_id_.fetch_add(1, std::memory_order_acq_rel);
  t.session = session;
  t.session_id = session->id();
  t.producers.clear();
  t.members_done = 0;
  t.attempts = 0;
  t.retries_left = t.retries;
  t.running_on.clear();
  t.failed.reset();
  t.value.clear();
  {
    std::lock_guard<std::mutex> lock(t.mu);
    t.fanout.clear();
    t.finished = false;
    t.early = false;
    t.root_cause = kNoTask;
  }
  t.refs.store(in_scope ? 2 : 1, std::memory_order_relaxed);
  t.fanin.store(1, std::memory_order_relaxed);  // wiring guard, dropped by wire()
  t.poisoned_by.store(kNoTask, std::memory_order_relaxed);
  t.wired.store(false, std::memory_order_relaxed);
  t.claim.store(id, std::memory_order_relaxed);
  t.observed = 0;
  // Release: whoever sees this state sees `wired` cleared (explain()).
  t.state.store(TaskState::Pending, std::memory_order_release);
  // Publishing the id last (release) lets state_of() tell a reused slot apart.
  t.id.store(id, std::memory_order_release);
  submitted_.fetch_add(1, std::memory_order_relaxed);
  outstanding_.fetch_add(1, std::memory_order_acq_rel);
  session->on_submit();
  for (ScheduleObserver* o : observers_) o->submitted(t);
  return id;
}

namespace {
bool try_ref(TaskSlot& p) {
  int32_t r = p.refs.load(std::memory_order_relaxed);
  while (r > 0)
    if (p.refs.compare_exchange_weak(r, r + 1, std::memory_order_acq_rel)) return true;
  return false;
}

bool failed_state(TaskState s) { return s == TaskState::Failed || s == TaskState::Cancelled; }
}  // namespace

bool TaskGraph::wire(SlotIndex s) {
  TaskSlot& t = slots_[s];
  // Scratch reused across submits on this thread: wiring allocates nothing
  // once warm.
  thread_local std::vector<Footprint> fps;
  thread_local std::vector<TensorMapHit> hits;
  thread_local std::vector<uint8_t> carries;
  fps.clear();
  hits.clear();
  carries.clear();
  TaskId id = t.id.load(std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(map_mu_);
    // Look up every tensor before inserting any, so a task never depends on
    // itself (a group's members share one task).
    size_t k = 0;
    for (auto& m : t.members)
      for (auto& d : m.tensors) {
        fps.push_back(Footprint::of(d));
        if (tracked(d.tag)) map_.lookup(t.blocks[k].gen, fps.back(), reads(d.tag), writes(d.tag), &hits);
        ++k;
      }
    k = 0;
    for (auto& m : t.members)
      for (auto& d : m.tensors) {
        if (tracked(d.tag)) map_.insert(t.blocks[k].gen, fps[k], reads(d.tag), writes(d.tag), s, id);
        ++k;
      }
    // One edge per producer; it carries a failure if any access does.
    std::sort(hits.begin(), hits.end(), [](const TensorMapHit& a, const TensorMapHit& b) {
      return a.task != b.task ? a.task < b.task : a.carries > b.carries;
    });
    hits.erase(std::unique(hits.begin(), hits.end(),
                           [](const TensorMapHit& a, const TensorMapHit& b) { return a.task == b.task; }),
               hits.end());
    for (auto& h : hits) {
      if (trace_ != nullptr) trace_->edge(h.task, id);  // to finished producers too
      if (h.slot == kTombstone) {
        if (h.carries) poison(t, h.task);
      } else if (try_ref(slots_[h.slot])) {
        t.producers.push_back(h.slot);
        carries.push_back(h.carries);
        for (ScheduleObserver* o : observers_) o->edge(h.task, id, h.carries);
      } else if (h.carries) {
        // Its count reached zero: it finished and is being consumed on another
        // thread, which waits for map_mu_ to retire its entries. The slot
        // cannot be reused meanwhile; its failure must still reach us.
        TaskSlot& gone = slots_[h.slot];
        if (failed_state(gone.state.load(std::memory_order_acquire))) {
          std::lock_guard<std::mutex> slot_lock(gone.mu);
          poison(t, gone.root_cause);
        }
      }
    }
  }
  for (size_t i = 0; i < t.producers.size(); ++i) {
    TaskSlot& prod = slots_[t.producers[i]];
    std::lock_guard<std::mutex> lock(prod.mu);
    if (!prod.finished) {
      t.fanin.fetch_add(1, std::memory_order_relaxed);
      prod.fanout.push_back(FanoutEdge{s, carries[i] != 0});
    } else if (carries[i] && failed_state(prod.state.load(std::memory_order_relaxed))) {
      poison(t, prod.root_cause);
    }
  }
  t.wired.store(true, std::memory_order_release);
  // Dropping the guard publishes the descriptor (acq_rel pairs with finish()).
  return t.fanin.fetch_sub(1, std::memory_order_acq_rel) == 1;
}

bool TaskGraph::try_start(SlotIndex s) {
  TaskSlot& t = slots_[s];
  uint64_t id = t.id.load(std::memory_order_relaxed);
  uint64_t expect = id;
  bool ok = t.claim.compare_exchange_strong(expect, id | kClaimStarted, std::memory_order_acq_rel) ||
            expect == (id | kClaimStarted);
  if (ok) t.state.store(TaskState::Running, std::memory_order_release);
  return ok;
}

bool TaskGraph::cancel(SlotIndex s, TaskId id) {
  uint64_t expect = id;
  return slots_[s].claim.compare_exchange_strong(expect, id | kClaimCancelled, std::memory_order_acq_rel);
}

Outcome TaskGraph::not_run(TaskId root, const std::string& reason) const {
  Outcome o;
  o.ok = false;
  Failure& f = o.failure;
  if (root == kNoTask) {
    f.kind = FailureKind::Cancelled;
    f.message = "cancelled: " + reason;
    return o;
  }
  std::shared_ptr<const Failure> r;
  {
    std::lock_guard<std::mutex> lock(roots_mu_);
    auto it = roots_.find(root);
    if (it != roots_.end()) r = it->second;
  }
  f.cause = root;
  std::string who = "task " + std::to_string(root) + (r ? " (" + r->name + ")" : "");
  if (r && r->kind == FailureKind::Cancelled) {
    f.kind = FailureKind::Cancelled;
    f.message = "cancelled: it reads what " + who + " should have written, and that task was cancelled";
  } else {
    f.kind = FailureKind::DependencyFailed;
    f.message = "did not run: it reads what " + who + " should have written, and that task failed" +
                (r ? " (" + std::string(to_string(r->kind)) + "): " + r->message : "");
  }
  if (r) {
    f.traceback = r->traceback;
    f.exception = r->exception;
  }
  return o;
}

void TaskGraph::finish(SlotIndex s, Outcome&& o, std::vector<SlotIndex>* ready) {
  TaskSlot& t = slots_[s];
  TaskId id = t.id.load(std::memory_order_relaxed);
  thread_local std::vector<FanoutEdge> fanout;
  fanout.clear();
  TaskId root = kNoTask;
  if (!o.ok) {
    o.failure.task = id;
    o.failure.name = name_of(t);
    if (o.failure.attempts == 0) o.failure.attempts = t.attempts;
    root = o.failure.cause != kNoTask ? o.failure.cause : id;
    if (root == id) {
      std::lock_guard<std::mutex> lock(roots_mu_);
      roots_[id] = std::make_shared<const Failure>(o.failure);
    }
  }
  {
    std::lock_guard<std::mutex> lock(t.mu);
    t.finished = true;
    t.root_cause = root;
    TaskState st = o.ok ? TaskState::Completed
                        : o.failure.kind == FailureKind::Cancelled ? TaskState::Cancelled : TaskState::Failed;
    t.state.store(st, std::memory_order_release);
    fanout.swap(t.fanout);
  }
  (o.ok ? completed_ : failed_).fetch_add(1, std::memory_order_relaxed);
  for (ScheduleObserver* obs : observers_) obs->finished(t, o.ok);
  for (const FanoutEdge& e : fanout) {
    TaskSlot& cons = slots_[e.consumer];
    if (!o.ok && e.carries) poison(cons, root);
    if (cons.fanin.fetch_sub(1, std::memory_order_acq_rel) == 1) ready->push_back(e.consumer);
  }
  for (SlotIndex p : t.producers) release(p);
  if (arena_)
    for (const BlockRef& b : t.blocks)
      if (b.space == 0) arena_->release(b.offset);  // lent blocks are the level above's to release
  t.session->on_finish(id, o.ok ? nullptr : &o.failure, std::move(o.value));
  outstanding_.fetch_sub(1, std::memory_order_acq_rel);
  release(s);
}

void TaskGraph::finish_early(SlotIndex s, Outcome&& o, std::vector<SlotIndex>* ready) {
  TaskSlot& t = slots_[s];
  {
    std::lock_guard<std::mutex> lock(t.mu);
    t.early = true;
  }
  t.refs.fetch_add(1, std::memory_order_relaxed);  // the guard: we hold our own ref until finish() drops it
  finish(s, std::move(o), ready);
}

bool TaskGraph::settle_early(SlotIndex s) {
  TaskSlot& t = slots_[s];
  {
    std::lock_guard<std::mutex> lock(t.mu);
    if (!t.early) return false;
    t.early = false;
  }
  release(s);
  return true;
}

void TaskGraph::release(SlotIndex s) {
  if (slots_[s].refs.fetch_sub(1, std::memory_order_acq_rel) == 1) consume(s);
}

void TaskGraph::consume(SlotIndex s) {
  TaskSlot& t = slots_[s];
  TaskId id = t.id.load(std::memory_order_relaxed);
  bool failed = failed_state(t.state.load(std::memory_order_acquire));
  TaskId root = kNoTask;
  if (failed) {
    std::lock_guard<std::mutex> slot_lock(t.mu);
    root = t.root_cause;
  }
  {
    std::lock_guard<std::mutex> lock(map_mu_);
    size_t k = 0;
    for (auto& m : t.members)
      for (auto& d : m.tensors) {
        const BlockRef& b = t.blocks[k++];
        if (!tracked(d.tag)) continue;
        Footprint fp = Footprint::of(d);
        if (failed) {
          // What it should have written stays poisoned for readers until
          // overwritten or freed; what it only read is released.
          map_.entomb(b.gen, fp, id, root);
          if (writes(d.tag)) block_of_alloc_.emplace(b.gen, b.offset);
        } else {
          map_.retire(b.gen, fp, id);
        }
      }
    if (block_of_alloc_.size() > sweep_at_) sweep_freed_allocations();
  }
  for (ScheduleObserver* o : observers_) o->consumed(t);
  uint32_t sid = t.session_id;
  t.state.store(TaskState::Consumed, std::memory_order_release);
  ring_.release(sid, s);
}

// map_mu_ held. A freed allocation is a new allocation when its memory is
// handed out again (it gets a new generation), so its tombstones can never
// match again; this only returns their memory.
void TaskGraph::sweep_freed_allocations() {
  if (arena_) {
    for (auto it = block_of_alloc_.begin(); it != block_of_alloc_.end();) {
      bool live = (it->first & LentMemory::kLentGen) ? lent_.in_loan(it->first)
                                                      : arena_->live(BlockRef{it->second, it->first});
      if (!live) {
        map_.forget(it->first);
        it = block_of_alloc_.erase(it);
      } else {
        ++it;
      }
    }
  }
  sweep_at_ = std::max<size_t>(64, 2 * block_of_alloc_.size());
}

TaskState TaskGraph::state_of(SlotIndex s, TaskId id) const {
  const TaskSlot& t = slots_[s];
  if (t.id.load(std::memory_order_acquire) == id) {
    TaskState st = t.state.load(std::memory_order_acquire);
    // Re-check: the slot may have been reused between the two loads.
    if (t.id.load(std::memory_order_acquire) == id) return st;
  }
  return TaskState::Consumed;
}

GraphCounters TaskGraph::counters() const {
  GraphCounters c;
  c.submitted = submitted_.load();
  c.completed = completed_.load();
  c.failed = failed_.load();
  c.outstanding = outstanding_.load();
  c.live = ring_.in_use();
  return c;
}

}  // namespace tierflow
