// Shared harness of the engine tests: TaskArgs over plain byte ranges, a
// graph driven by hand (the test plays the scheduler), and a whole level
// without processes — TaskGraph, one Session and a Scheduler over
// WorkerThreads, in-process fake workers on real mailboxes.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/distributed/dispatch/scheduler.h"
#include "common/distributed/graph/session.h"
#include "common/distributed/processes/worker_thread.h"

namespace tierflow::test {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int64_t kWaitMs = 300000;
#else
constexpr int64_t kWaitMs = 60000;
#endif

// A contiguous byte range [lo, hi) of the one allocation a graph without an
// arena has, and how a task touches it.
struct Acc {
  uint64_t lo, hi;
  AccessTag tag;
};

inline TensorDesc bytes_desc(uint64_t lo, uint64_t hi, AccessTag tag) {
  TensorDesc d;
  d.offset = d.lo = lo;
  d.hi = hi;
  d.tag = tag;
  d.ndim = 1;
  d.dtype = DType{1, 8};
  d.shape[0] = static_cast<int64_t>(hi - lo);
  d.strides[0] = 1;
  return d;
}

// `len` uint64 cells from cell `cell` of the allocation at `block`.
inline TensorDesc cells_desc(uint64_t block, int cell, int len, AccessTag tag) {
  TensorDesc d = bytes_desc(block + uint64_t(cell) * 8, block + uint64_t(cell + len) * 8, tag);
  d.dtype = DType{1, 64};
  d.shape[0] = len;
  d.strides[0] = 8;
  return d;
}

// A 2-D strided view: rows x cols elements of `item` bytes, rows `pitch` bytes apart.
inline TensorDesc view_desc(uint64_t offset, int64_t rows, int64_t cols, int64_t pitch, uint8_t item, AccessTag tag) {
  TensorDesc d;
  d.offset = offset;
  d.tag = tag;
  d.ndim = 2;
  d.dtype = DType{1, static_cast<uint8_t>(item * 8)};
  d.shape[0] = rows;
  d.shape[1] = cols;
  d.strides[0] = pitch;
  d.strides[1] = item;
  int64_t lo, hi;
  d.span(&lo, &hi);
  d.lo = offset + static_cast<uint64_t>(lo);
  d.hi = offset + static_cast<uint64_t>(hi);
  return d;
}

inline Scalar int_scalar(int64_t v) {
  Scalar s;
  s.i = v;
  return s;
}

inline TaskArgs byte_args(std::initializer_list<Acc> acc, std::initializer_list<int64_t> scalars = {}) {
  TaskArgs a;
  for (auto& x : acc) a.tensors.push_back(bytes_desc(x.lo, x.hi, x.tag));
  for (int64_t v : scalars) a.scalars.push_back(int_scalar(v));
  return a;
}

// The stress tests' task body over uint64 cells: scalars[j] belongs to tensor
// j — the sum a sequential run reads there, or the value an output writes.
// Checks every read against it, then applies the writes (inout adds 1).
// Returns "" or what was wrong.
inline std::string check_and_apply(const Request& r, char* base) {
  for (size_t j = 0; j < r.args.tensors.size(); ++j) {
    const TensorDesc& d = r.args.tensors[j];
    auto* p = reinterpret_cast<uint64_t*>(base + d.offset);
    size_t n = (d.hi - d.lo) / 8;
    uint64_t want = static_cast<uint64_t>(r.args.scalars[j].i);
    if (d.tag == AccessTag::Input || d.tag == AccessTag::InOut) {
      uint64_t sum = 0;
      for (size_t k = 0; k < n; ++k) sum += p[k];
      if (sum != want)
        return "tensor " + std::to_string(j) + ": read " + std::to_string(sum) + ", a sequential run reads " +
               std::to_string(want);
    }
    if (d.tag == AccessTag::InOut)
      for (size_t k = 0; k < n; ++k) p[k] += 1;
    else if (d.tag == AccessTag::Output)
      for (size_t k = 0; k < n; ++k) p[k] = want;
  }
  return "";
}

inline Outcome ok_outcome() { return Outcome{}; }
inline Outcome exception_outcome(const std::string& message = "ValueError: boom") {
  Outcome o;
  o.ok = false;
  o.failure.kind = FailureKind::Exception;
  o.failure.message = message;
  o.failure.traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1\n" + message + "\n";
  return o;
}

template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  auto t0 = std::chrono::steady_clock::now();
  while (!cond()) {
    if (std::chrono::steady_clock::now() - t0 > limit) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// The graph of one session, driven by hand: tasks handed to the scheduler
// at submit are collected in `sunk`; the test finishes tasks itself.
struct GraphRig {
  TaskGraph graph;
  std::vector<SlotIndex> sunk;
  Session session;

  explicit GraphRig(uint32_t window, size_t payload = 1 << 16, std::shared_ptr<Arena> arena = nullptr)
      : graph(window, std::move(arena)), session(0, "test", graph, [this](SlotIndex s) { sunk.push_back(s); }, payload) {}

  Orchestrator& orch() { return session.orchestrator(); }
  std::vector<SlotIndex> finish(SlotIndex s, Outcome o = ok_outcome()) {
    std::vector<SlotIndex> ready;
    graph.finish(s, std::move(o), &ready);
    return ready;
  }
  // The outcome a scheduler gives a poisoned task.
  Outcome not_run(SlotIndex s) const { return graph.not_run(graph.slot(s).poisoned_by.load(), ""); }
};

// A level of `subs` + `chips` WorkerThreads running `body(worker, request,
// &error)`; one GroupBarrier per chip. The kill hook reports the worker dead
// (a thread cannot be killed; its late completion is ignored).
struct LevelRig {
  using Body = std::function<bool(int worker, const Request&, std::string* error)>;

  Doorbell bell;
  TaskGraph graph;
  std::vector<GroupBarrier> barriers;
  std::vector<std::unique_ptr<WorkerThread>> workers;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<Session> session;
  int subs;

  using ResultBody = std::function<TaskResult(int worker, const Request&)>;

  // `start`: false leaves the scheduler to the test (set hooks, then
  // sched->start()); submits wait in its inbox meanwhile.
  LevelRig(uint32_t window, int n_subs, int n_chips, Body body, std::shared_ptr<Arena> arena = nullptr,
           bool start = true)
      : LevelRig(window, n_subs, n_chips,
                 ResultBody([body](int w, const Request& r) {
                   std::string err;
                   return body(w, r, &err) ? TaskResult{} : TaskResult::from_traceback(err);
                 }),
                 std::move(arena), start) {}

  LevelRig(uint32_t window, int n_subs, int n_chips, ResultBody body, std::shared_ptr<Arena> arena = nullptr,
           bool start = true)
      : graph(window, std::move(arena)), barriers(n_chips > 0 ? n_chips : 1), subs(n_subs) {
    std::vector<Endpoint*> sub_eps, chip_eps;
    for (int i = 0; i < n_subs + n_chips; ++i) {
      workers.emplace_back(
          new WorkerThread(bell, WorkerThread::ResultBody([body, i](const Request& r) { return body(i, r); }),
                           i < n_subs ? nullptr : &barriers[static_cast<size_t>(i - n_subs)]));
      (i < n_subs ? sub_eps : chip_eps).push_back(&workers.back()->endpoint());
    }
    sched.reset(new Scheduler(graph, bell, sub_eps, chip_eps));
    Scheduler* s = sched.get();
    int ns = n_subs;
    sched->set_kill([s, ns](uint32_t w) {
      bool sub = static_cast<int>(w) < ns;
      s->report_death(sub ? TaskKind::Sub : TaskKind::Chip, sub ? w : w - ns, "killed on purpose");
    });
    session.reset(new Session(0, "test", graph, [s](SlotIndex slot) { s->enqueue(slot); }, kMailboxPayload));
    if (start) sched->start();
  }
  // Call from the test's own destructor first if its bodies block on test state.
  void teardown() {
    if (!sched) return;
    // Release any member stuck on a barrier so every body returns before the
    // workers are told to exit.
    for (auto& b : barriers) b.break_it();
    drain(5000);
    sched->stop();
    workers.clear();
    sched.reset();
  }
  ~LevelRig() { teardown(); }

  Orchestrator& orch() { return session->orchestrator(); }
  bool drain(int64_t ms = kWaitMs) {
    return session->wait_drained(ms, {});
  }
  TaskId submit(SubmitRequest r) { return orch().submit(std::move(r)).second; }
};

}  // namespace tierflow::test
