#include "common/distributed/orchestrator.h"

namespace tierflow {

Orchestrator::Orchestrator(TaskGraph& graph, ReadySink sink, size_t payload_limit)
    : graph_(graph), sink_(std::move(sink)), payload_limit_(payload_limit) {}

void Orchestrator::resolve(TaskArgs& args) const {
  if (args.encoded_size() > payload_limit_)
    throw std::invalid_argument("task has too many tensors/scalars: its description takes " +
                                std::to_string(args.encoded_size()) + " bytes, the mailbox holds " +
                                std::to_string(payload_limit_) + "; split it into several tasks");
  Arena* arena = graph_.arena();
  for (auto& d : args.tensors) {
    if (arena == nullptr) {
      d.block = 0;
      continue;
    }
    // An empty view touches no bytes but must still name arena memory.
    d.block = arena->block_of(d.lo, d.hi > d.lo ? d.hi : d.lo + 1);
  }
}

void Orchestrator::check_exhausted() const {
  if (scopes_.held() >= graph_.window())
    throw WindowExhausted("window exhausted: all " + std::to_string(graph_.window()) +
                          " task slots are held by the " + std::to_string(scopes_.depth()) +
                          " scope(s) this submitter keeps open (scope depth " + std::to_string(scopes_.depth()) +
                          "); end a scope before submitting more, or pass a larger window to tf.Worker");
}

std::pair<SlotIndex, TaskId> Orchestrator::submit(SubmitRequest req, const std::function<void()>& on_wait) {
  if (req.members.empty()) throw std::invalid_argument("a task needs at least one member");
  for (auto& m : req.members) resolve(m);

  SlotIndex s;
  if (!graph_.ring().try_acquire(&s)) {
    check_exhausted();
    s = graph_.ring().acquire([&] {
      check_exhausted();
      if (on_wait) on_wait();
    });
  }
  bool in_scope = scopes_.inside();
  TaskSlot& t = graph_.slot(s);
  t.kind = req.kind;
  t.callable = req.callable;
  t.target = req.target;
  t.members = std::move(req.members);
  t.group_chips = std::move(req.group_chips);
  t.retries_left = req.retries;
  TaskId id = graph_.begin(s, in_scope);
  if (Arena* arena = graph_.arena()) {
    for (auto& m : t.members)
      for (auto& d : m.tensors) {
        arena->retain(d.block);
        t.blocks.push_back(d.block);
      }
  }
  if (in_scope) scopes_.add(s);
  if (graph_.wire(s)) sink_(s);
  return {s, id};
}

void Orchestrator::scope_end() {
  if (!scopes_.inside()) throw std::logic_error("scope_end() without a matching scope_begin()");
  for (SlotIndex s : scopes_.close()) graph_.release(s);
}

}  // namespace tierflow
