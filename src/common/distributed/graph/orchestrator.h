// Orchestrator: builds the graph on a session's submitting thread. One per
// Session; every session's Orchestrator shares the level's TaskGraph.
//
// submit(): resolve every tensor to its arena allocation, take a slot
// (blocking for back-pressure, within the session's share of the window),
// wire the task to the earlier tasks it conflicts with, register it with the
// innermost scope, and hand it to the scheduler when it has no unfinished
// producer. Several threads may submit to one session at once (they share
// its scopes); the graph, the map and the window are safe for that.
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/distributed/graph/scope.h"
#include "common/distributed/graph/task_graph.h"

namespace tierflow {

class Session;

class WindowExhausted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SubmitRequest {
  TaskKind kind = TaskKind::Sub;
  uint32_t callable = 0;
  int32_t target = -1;               // chip index or -1
  std::vector<TaskArgs> members;     // tensors carry arena offsets (offset/lo/hi)
  std::vector<int32_t> group_chips;  // explicit chips of a group, or empty
  std::string name;                  // empty: the callable's name
  uint32_t retries = 0;              // re-runs allowed after a death or a retry_on exception
  RetryOn retry_on;                  // exception class names retried, or null
  int64_t timeout_ms = -1;           // running time per attempt; < 0: no limit
};

class Orchestrator {
 public:
  using ReadySink = std::function<void(SlotIndex)>;
  // `payload_limit`: the most bytes one member's encoded args may take.
  Orchestrator(TaskGraph& graph, Session& session, ReadySink sink, size_t payload_limit);

  // Returns (slot, id). `before_block` runs once, right before the submit
  // would block on the window (the binding releases the GIL there: a submit
  // that finds a free slot never gives it up, so threads submitting at once
  // do not hand the GIL back and forth per task). `on_wait` runs every
  // 100 ms while blocked and may throw (the caller's signal check). Throws
  // std::invalid_argument for a bad request, WindowExhausted when the
  // caller's own open scopes hold all this session can count on.
  std::pair<SlotIndex, TaskId> submit(SubmitRequest req, const std::function<void()>& on_wait = {},
                                      const std::function<void()>& before_block = {});

  void scope_begin();
  void scope_end();
  uint32_t scope_depth() const;
  // Ends every open scope (the session is closing).
  void end_all_scopes();

 private:
  void check_payload(const TaskArgs& args) const;
  void check_exhausted() const;

  TaskGraph& graph_;
  Session& session_;
  ReadySink sink_;
  size_t payload_limit_;
  mutable std::mutex scope_mu_;  // guards scopes_
  ScopeStack scopes_;
};

}  // namespace tierflow
