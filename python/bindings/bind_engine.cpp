// The parent's engine: submit, scopes, waits, failures, stats, shutdown.
// Arguments are converted with the GIL held; every call that can block runs
// with the GIL released and checks for signals every 100 ms.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <memory>
#include <string>

#include "bindings.h"
#include "common/distributed/engine.h"

namespace tierflow::py {

using namespace nb::literals;

void check_signals() {
  nb::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw nb::python_error();
}

namespace {

int64_t to_ms(nb::handle timeout) {
  if (timeout.is_none()) return -1;
  double t = nb::cast<double>(timeout);
  if (t < 0 || std::isnan(t)) throw nb::value_error("timeout must be None or a non-negative number of seconds");
  return static_cast<int64_t>(std::ceil(t * 1000.0));
}

// Rebases a builder's absolute addresses on the arena; rejects anything else.
TaskArgs rebase(const PyTaskArgs& a, const Arena* arena) {
  if (a.base != nullptr) throw nb::value_error("this TaskArgs came from a running task; build a new one to submit");
  TaskArgs out = a.args;
  auto base = reinterpret_cast<uint64_t>(arena->base());
  for (size_t i = 0; i < out.tensors.size(); ++i) {
    TensorDesc& d = out.tensors[i];
    bool inside = d.lo >= base && d.hi <= base + arena->size() && d.offset >= base && d.offset <= base + arena->size();
    if (!inside)
      throw nb::value_error(("tensor " + std::to_string(i) +
                             " is not in this Worker's shared arena; task tensors must be arrays from "
                             "w.alloc() or w.share() (or views of them): w.share(array) copies one in")
                                .c_str());
    d.offset -= base;
    d.lo -= base;
    d.hi -= base;
  }
  return out;
}

nb::tuple failure_tuple(const Failure& f) {
  nb::object cause = f.cause == kNoTask ? nb::none() : nb::object(nb::int_(f.cause));
  nb::object worker = f.worker.empty() ? nb::none() : nb::object(nb::str(f.worker.c_str()));
  return nb::make_tuple(f.task, worker, f.kind, f.message, f.traceback, cause);
}

struct PyEngine {
  std::unique_ptr<Engine> engine;
  Engine& get() {
    if (!engine) throw std::logic_error("the engine is closed");
    return *engine;
  }
};

}  // namespace

void bind_engine(nb::module_& m) {
  nb::exception<WindowExhausted>(m, "WindowExhausted", PyExc_RuntimeError);

  nb::class_<PyEngine>(m, "Engine")
      .def("__init__", [](PyEngine* self, uint32_t window, std::shared_ptr<SharedRegion> region,
                          std::shared_ptr<Arena> arena, uint32_t subs, uint32_t chips,
                          std::vector<std::tuple<int, uint32_t, int, int>> children,
                          std::tuple<int, int, int, bool> server) {
        std::vector<ChildProcess> procs;
        for (auto& c : children)
          procs.push_back(ChildProcess{std::get<0>(c) == 0 ? TaskKind::Sub : TaskKind::Chip, std::get<1>(c),
                                       std::get<2>(c), std::get<3>(c)});
        ForkServer fs{std::get<0>(server), std::get<1>(server), std::get<2>(server), std::get<3>(server)};
        new (self) PyEngine{std::make_unique<Engine>(window, std::move(region), std::move(arena), subs, chips,
                                                     std::move(procs), fs)};
      }, "window"_a, "region"_a, "arena"_a, "subs"_a, "chips"_a, "children"_a, "server"_a)
      .def("pids", [](PyEngine& e) {
        Engine& eng = e.get();
        nb::dict d;
        for (uint32_t w = 0; w < eng.num_subs() + eng.num_chips(); ++w) d[eng.worker_name(w).c_str()] = eng.pid_of(w);
        return d;
      })
      .def("submit", [](PyEngine& e, int kind, uint32_t callable, int32_t target, nb::list members,
                        std::vector<int32_t> group_chips, uint32_t retries) {
        Engine& eng = e.get();
        SubmitRequest req;
        req.kind = static_cast<TaskKind>(kind);
        req.callable = callable;
        req.target = target;
        req.group_chips = std::move(group_chips);
        req.retries = retries;
        for (nb::handle h : members) req.members.push_back(rebase(nb::cast<const PyTaskArgs&>(h), eng.graph().arena()));
        nb::gil_scoped_release nogil;
        return eng.orchestrator().submit(std::move(req), check_signals);
      }, "kind"_a, "callable"_a, "target"_a, "members"_a, "group_chips"_a, "retries"_a = 0)
      .def("submit_one", [](PyEngine& e, int kind, uint32_t callable, int32_t target, const PyTaskArgs& args) {
        // The common case (one member, no group, no retries) without list conversions.
        Engine& eng = e.get();
        SubmitRequest req;
        req.kind = static_cast<TaskKind>(kind);
        req.callable = callable;
        req.target = target;
        req.members.push_back(rebase(args, eng.graph().arena()));
        nb::gil_scoped_release nogil;
        return eng.orchestrator().submit(std::move(req), check_signals);
      }, "kind"_a, "callable"_a, "target"_a, "args"_a)
      .def("scope_begin", [](PyEngine& e) { e.get().orchestrator().scope_begin(); })
      .def("scope_end", [](PyEngine& e) { e.get().orchestrator().scope_end(); })
      .def_prop_ro("scope_depth", [](PyEngine& e) { return e.get().orchestrator().scope_depth(); })
      .def("state", [](PyEngine& e, SlotIndex s, TaskId id) { return std::string(to_string(e.get().graph().state_of(s, id))); })
      .def("done", [](PyEngine& e, SlotIndex s, TaskId id) { return e.get().graph().task_finished(s, id); })
      .def("wait_task", [](PyEngine& e, SlotIndex s, TaskId id, nb::handle timeout) {
        int64_t ms = to_ms(timeout);
        TaskGraph& g = e.get().graph();
        nb::gil_scoped_release nogil;
        return g.wait_until([&] { return g.task_finished(s, id); }, ms, check_signals);
      }, "slot"_a, "id"_a, "timeout"_a.none())
      .def("drain", [](PyEngine& e, nb::handle timeout) {
        int64_t ms = to_ms(timeout);
        TaskGraph& g = e.get().graph();
        nb::gil_scoped_release nogil;
        return g.wait_until([&] { return g.all_finished(); }, ms, check_signals);
      }, "timeout"_a.none())
      .def("take_failures", [](PyEngine& e) {
        nb::list out;
        for (auto& f : e.get().graph().take_failures()) out.append(failure_tuple(f));
        return out;
      })
      .def("clear_failed_ranges", [](PyEngine& e) { e.get().graph().clear_failed_ranges(); })
      .def("failure", [](PyEngine& e, TaskId id) -> nb::object {
        auto f = e.get().graph().failure_of(id);
        if (!f) return nb::none();
        return failure_tuple(*f);
      })
      .def("stats", [](PyEngine& e) {
        Engine& eng = e.get();
        GraphCounters c = eng.graph().counters();
        nb::dict d;
        d["submitted"] = c.submitted;
        d["completed"] = c.completed;
        d["failed"] = c.failed;
        d["live_tasks"] = c.live;
        d["outstanding"] = c.outstanding;
        d["queue_depth"] = eng.scheduler().queue_depth();
        d["retried"] = eng.scheduler().retried();
        d["restarts"] = eng.scheduler().restarts();
        nb::dict busy, alive, tasks, running;
        for (auto& w : eng.scheduler().worker_stats()) {
          busy[w.name.c_str()] = w.busy_seconds;
          alive[w.name.c_str()] = w.alive;
          tasks[w.name.c_str()] = w.tasks;
          if (w.running != kNoTask) running[w.name.c_str()] = w.running;
        }
        d["busy_seconds"] = busy;
        d["alive"] = alive;
        d["tasks_per_worker"] = tasks;
        d["running"] = running;
        return d;
      })
      .def("shutdown", [](PyEngine& e, bool cancel, double grace) {
        // Idempotent; the engine object stays queryable (failures, stats).
        Engine& eng = e.get();
        nb::gil_scoped_release nogil;
        eng.shutdown(cancel, static_cast<int64_t>(grace * 1000), cancel ? std::function<void()>() : check_signals);
      }, "cancel"_a, "grace"_a);
}

}  // namespace tierflow::py
