#include "common/distributed/graph/orchestrator.h"

#include "common/distributed/graph/session.h"

namespace tierflow {

Orchestrator::Orchestrator(TaskGraph& graph, Session& session, ReadySink sink, size_t payload_limit)
    : graph_(graph), session_(session), sink_(std::move(sink)), payload_limit_(payload_limit) {}

void Orchestrator::check_payload(const TaskArgs& args) const {
  if (args.encoded_size() > payload_limit_)
    throw std::invalid_argument("task has too many tensors/scalars: its description takes " +
                                std::to_string(args.encoded_size()) + " bytes, the mailbox holds " +
                                std::to_string(payload_limit_) + "; split it into several tasks");
}

// A submit that would block, while this session's own open scopes hold all
// it can ever count on — the whole window alone, its share beside other
// sessions — could only be unblocked by this session: it raises instead.
void Orchestrator::check_exhausted() const {
  uint64_t held, depth;
  {
    std::lock_guard<std::mutex> lock(scope_mu_);
    held = scopes_.held();
    depth = scopes_.depth();
  }
  uint32_t can_get = graph_.ring().obtainable(session_.id());
  if (held < can_get) return;
  std::string what = can_get == graph_.window() ? "all " + std::to_string(graph_.window()) + " task slots"
                                                : std::to_string(held) + " task slots, this session's share of the " +
                                                      std::to_string(graph_.window()) + "-slot window,";
  throw WindowExhausted("window exhausted: " + what + " are held by the " + std::to_string(depth) +
                        " scope(s) this submitter keeps open (scope depth " + std::to_string(depth) +
                        "); end a scope before submitting more, or pass a larger window to tf.Worker");
}

std::pair<SlotIndex, TaskId> Orchestrator::submit(SubmitRequest req, const std::function<void()>& on_wait,
                                                  const std::function<void()>& before_block) {
  if (req.members.empty()) throw std::invalid_argument("a task needs at least one member");
  session_.enter_submit();
  struct Exit {
    Session& s;
    ~Exit() { s.exit_submit(); }
  } exit_guard{session_};
  // Resolved before a slot is taken, so a bad tensor leaves the window untouched.
  thread_local std::vector<BlockRef> blocks;
  blocks.clear();
  Arena* arena = graph_.arena();
  for (auto& m : req.members) {
    check_payload(m);
    for (auto& d : m.tensors) {
      // An empty view touches no bytes but must still name arena memory.
      uint64_t hi = d.hi > d.lo ? d.hi : d.lo + 1;
      BlockRef b;
      if (d.space != 0) b = graph_.lent().block_of(d.space, d.lo, hi);
      else if (arena != nullptr) b = arena->block_of(d.lo, hi);
      d.block = b.offset;  // tells a level below which views share an allocation
      blocks.push_back(b);
    }
  }

  SlotIndex s;
  uint32_t sid = session_.id();
  if (!graph_.ring().try_acquire(sid, &s)) {
    check_exhausted();
    if (before_block) before_block();
    s = graph_.ring().acquire(sid, [&] {
      if (session_.closed()) throw SessionClosed("session '" + session_.name() + "' closed while waiting for a slot");
      check_exhausted();
      if (on_wait) on_wait();
    });
  }
  std::unique_lock<std::mutex> scope_lock(scope_mu_);
  bool in_scope = scopes_.inside();
  TaskSlot& t = graph_.slot(s);
  t.kind = req.kind;
  t.callable = req.callable;
  t.target = req.target;
  t.members = std::move(req.members);
  t.group_chips = std::move(req.group_chips);
  t.name = std::move(req.name);
  t.retries = req.retries;
  t.retry_on = std::move(req.retry_on);
  t.timeout_ms = req.timeout_ms;
  t.blocks.assign(blocks.begin(), blocks.end());
  if (arena != nullptr)
    for (const BlockRef& b : t.blocks)
      if (b.space == 0) arena->retain(b.offset);
  TaskId id = graph_.begin(s, &session_, in_scope);
  if (in_scope) scopes_.add(s);
  scope_lock.unlock();
  if (graph_.wire(s)) sink_(s);
  return {s, id};
}

void Orchestrator::scope_begin() {
  std::lock_guard<std::mutex> lock(scope_mu_);
  scopes_.open();
}

void Orchestrator::scope_end() {
  std::vector<SlotIndex> done;
  {
    std::lock_guard<std::mutex> lock(scope_mu_);
    if (!scopes_.inside()) throw std::logic_error("scope_end() without a matching scope_begin()");
    done = scopes_.close();
  }
  for (SlotIndex s : done) graph_.release(s);
}

uint32_t Orchestrator::scope_depth() const {
  std::lock_guard<std::mutex> lock(scope_mu_);
  return scopes_.depth();
}

void Orchestrator::end_all_scopes() {
  for (;;) {
    std::vector<SlotIndex> done;
    {
      std::lock_guard<std::mutex> lock(scope_mu_);
      if (!scopes_.inside()) return;
      done = scopes_.close();
    }
    for (SlotIndex s : done) graph_.release(s);
  }
}

}  // namespace tierflow
