// The parent's engine: construction from the forked children, shutdown,
// cancellation, pids and stats. Arguments are converted with the GIL held;
// every call that can block runs with the GIL released and checks for
// signals every 100 ms.
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
#include "common/distributed/processes/local_children.h"

namespace tierflow::py {

using namespace nb::literals;

void check_signals() {
  nb::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw nb::python_error();
}

int64_t to_ms(nb::handle timeout) {
  if (timeout.is_none()) return -1;
  double t = nb::cast<double>(timeout);
  if (t < 0 || std::isnan(t)) throw nb::value_error("timeout must be None or a non-negative number of seconds");
  // Beyond a century is "no limit"; the clock cannot add it without overflowing.
  if (t > 3.0e9) return -1;
  return static_cast<int64_t>(std::ceil(t * 1000.0));
}

nb::tuple failure_tuple(const Failure& f) {
  nb::object cause = f.cause == kNoTask ? nb::none() : nb::object(nb::int_(f.cause));
  nb::object worker = f.worker.empty() ? nb::none() : nb::object(nb::str(f.worker.c_str(), f.worker.size()));
  auto text = [](const std::string& s) {
    // Children's text is UTF-8 by construction; anything else is replaced, never an error.
    return nb::steal<nb::str>(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace"));
  };
  nb::object exc = f.exception.empty() ? nb::none() : nb::object(nb::bytes(f.exception.data(), f.exception.size()));
  return nb::make_tuple(f.task, worker, to_string(f.kind), text(f.message), text(f.traceback), cause, text(f.name),
                        f.attempts, exc);
}

nb::dict session_stats(const Session& s, const Engine& engine) {
  SessionCounters c = s.counters();
  nb::dict d;
  d["submitted"] = c.submitted;
  d["completed"] = c.completed;
  d["failed"] = c.failed;
  d["outstanding"] = c.outstanding;
  d["queue_depth"] = c.queued;
  d["running"] = c.running;
  // Per worker, like the Worker's own busy_seconds; the sum as busy_total.
  nb::dict busy;
  for (uint32_t w = 0; w < c.busy_by_worker.size(); ++w) busy[engine.worker_name(w).c_str()] = c.busy_by_worker[w];
  d["busy_seconds"] = busy;
  d["busy_total"] = c.busy_seconds;
  d["weight"] = s.weight();
  return d;
}

namespace {

struct PyEngine {
  std::shared_ptr<Engine> engine;
  Engine& get() {
    if (!engine) throw std::logic_error("the engine is closed");
    return *engine;
  }
};

}  // namespace

void bind_engine(nb::module_& m) {
  nb::exception<WindowExhausted>(m, "WindowExhausted", PyExc_RuntimeError);
  // tf.WorkerClosed: a submit that reaches a closing session or Worker.
  nb::exception<SessionClosed>(m, "WorkerClosed", PyExc_RuntimeError);

  nb::class_<ForkServerLink>(m, "ForkServerLink",
                             "The parent's hold on a fork server and its children until an Engine takes them over; "
                             "dropping it unused kills the server and closes every descriptor.")
      .def("__init__", [](ForkServerLink* self, int pid, int pidfd, int sock_fd,
                          std::vector<std::tuple<int, uint32_t, int, int>> children) {
        std::vector<ChildProcess> procs;
        for (auto& c : children)
          procs.push_back(ChildProcess{std::get<0>(c) == 0 ? TaskKind::Sub : TaskKind::Chip, std::get<1>(c),
                                       std::get<2>(c), std::get<3>(c)});
        new (self) ForkServerLink(pid, pidfd, sock_fd, std::move(procs));
      }, "pid"_a, "pidfd"_a, "sock_fd"_a, "children"_a)
      .def_prop_ro("owns", &ForkServerLink::owns)
      .def("abandon", &ForkServerLink::abandon, "Kills the server and closes every descriptor (idempotent)");

  nb::class_<PyEngine>(m, "Engine")
      .def("__init__", [](PyEngine* self, uint32_t window, std::shared_ptr<SharedRegion> region,
                          std::shared_ptr<Arena> arena, uint32_t subs, uint32_t chips, ForkServerLink& link,
                          bool replace_dead, std::string next_kind, int output_fd, std::string output_path,
                          bool trace) {
        // The level's own children are its pool of endpoints.
        std::unique_ptr<EndpointPool> pool(new LocalChildren(std::move(region), subs, chips, std::move(next_kind),
                                                             link, OutputTarget{output_fd, std::move(output_path)}));
        new (self) PyEngine{std::make_shared<Engine>(window, std::move(arena), std::move(pool), replace_dead, trace)};
      }, "window"_a, "region"_a, "arena"_a, "subs"_a, "chips"_a, "link"_a, "replace_dead"_a = true,
         "next_kind"_a = "chip", "output_fd"_a = 2, "output_path"_a = "", "trace"_a = false,
         "Starts a level over its forked children: `chips` next-level workers named `next_kind` i (chips at level "
         "3); their prefixed output goes to `output_fd`, each name after `output_path`")
      .def("set_ancestor_arenas", [](PyEngine& e, std::vector<std::shared_ptr<Arena>> arenas) {
        std::vector<std::pair<const char*, uint64_t>> spans;
        for (auto& a : arenas) spans.emplace_back(a->base(), a->size());
        e.get().graph().lent().set_ancestors(std::move(spans));
      }, "arenas"_a, "The arenas of the levels above, nearest first: their tensors, lent by a running task, are valid "
                     "task tensors here")
      .def("lend", [](PyEngine& e, const PyTaskArgs& args) {
        if (!args.decoded()) throw nb::value_error("lend() takes the TaskArgs of a received task");
        std::vector<LentView> views;
        for (const TensorDesc& d : args.args.tensors) {
          if (d.space + 1 >= kMaxSpaces) throw nb::value_error("tensors nest deeper than tierflow supports");
          views.push_back(LentView{static_cast<uint8_t>(d.space + 1), d.block, d.lo, d.hi});
        }
        e.get().graph().lent().lend(views);
      }, "args"_a, "Lends the tensors of a task of the level above (received as `args`) to this level until end_loan()")
      .def("end_loan", [](PyEngine& e) { e.get().graph().lent().end_loan(); })
      .def("set_callable_names", [](PyEngine& e, int kind, std::vector<std::string> names) {
        e.get().graph().set_callable_names(static_cast<TaskKind>(kind), std::move(names));
      }, "kind"_a, "names"_a)
      .def("default_session", [](PyEngine& e) { return PySession{e.engine, e.get().default_session()}; })
      .def("open_session", [](PyEngine& e, const std::string& name, uint32_t weight) {
        return PySession{e.engine, e.get().open_session(name, weight)};
      }, "name"_a, "weight"_a)
      .def("take_events", [](PyEngine& e, double timeout_s) {
        // Holds the engine while waiting: the log thread may outlive close().
        std::shared_ptr<Engine> eng = e.engine;
        bool open = true;
        std::vector<EventLog::Event> got;
        if (!eng) return nb::make_tuple(nb::list(), false);
        {
          nb::gil_scoped_release nogil;
          got = eng->events().take(static_cast<int64_t>(timeout_s * 1000), &open);
        }
        nb::list lines;
        for (auto& ev : got) lines.append(nb::make_tuple(ev.level, ev.text));
        return nb::make_tuple(lines, open);
      }, "timeout_s"_a,
         "Waits up to timeout_s for the engine's log lines (deaths, replacements, retries, timeouts, cancellations): "
         "([(level, text), ...], open); open is False once the engine stopped and every line was taken")
      .def("explain", [](PyEngine& e, double timeout_s) -> nb::object {
        Engine& eng = e.get();
        bool answered = false;
        std::vector<TaskReport> reports;
        {
          nb::gil_scoped_release nogil;
          reports = eng.scheduler().explain(static_cast<int64_t>(timeout_s * 1000), &answered);
        }
        if (!answered) return nb::none();
        nb::list out;
        for (const TaskReport& r : reports) {
          nb::dict d;
          d["id"] = r.id;
          d["name"] = r.name;
          d["session"] = r.session;
          d["kind"] = static_cast<int>(r.kind);
          d["state"] = to_string(r.state);
          d["workers"] = r.workers;
          d["running_s"] = r.running_s;
          d["attempts"] = r.attempts;
          d["queued_ahead"] = r.queued_ahead;
          nb::list waits;
          for (const auto& p : r.waits_on) waits.append(nb::make_tuple(p.id, p.name, to_string(p.state)));
          d["waits_on"] = waits;
          out.append(d);
        }
        return out;
      }, "timeout_s"_a,
         "Every unfinished task, as the scheduler sees it (see Scheduler::explain); None if it did not answer in time")
      .def("trace_snapshot", [](PyEngine& e) -> nb::object {
        std::shared_ptr<Engine> eng = e.engine;  // also after close: the records stay
        if (!eng || eng->trace() == nullptr) return nb::none();
        TraceRecorder::Snapshot s;
        {
          nb::gil_scoped_release nogil;
          s = eng->trace()->snapshot();
        }
        nb::dict d;
        d["runs"] = nb::bytes(reinterpret_cast<const char*>(s.runs.data()), s.runs.size() * sizeof(TraceRun));
        d["edges"] = nb::bytes(reinterpret_cast<const char*>(s.edges.data()), s.edges.size() * sizeof(TraceEdge));
        d["names"] = s.names;
        d["dropped_runs"] = s.dropped_runs;
        d["dropped_edges"] = s.dropped_edges;
        std::vector<std::string> workers;
        for (uint32_t w = 0; w < eng->num_subs() + eng->num_chips(); ++w) workers.push_back(eng->worker_name(w));
        d["workers"] = workers;
        return d;
      }, "The trace records so far (runs and edges as raw arrays of TraceRun / TraceEdge, interned names, worker "
         "names), or None when this engine does not trace")
      .def_prop_ro("owned_by_this_process", [](PyEngine& e) { return e.get().owned_by_this_process(); })
      .def("pids", [](PyEngine& e) {
        Engine& eng = e.get();
        nb::dict d;
        for (uint32_t w = 0; w < eng.num_subs() + eng.num_chips(); ++w) d[eng.worker_name(w).c_str()] = eng.pid_of(w);
        return d;
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
        nb::dict sessions;
        for (auto& s : eng.sessions()) sessions[s->name().c_str()] = session_stats(*s, eng);
        d["sessions"] = sessions;
        return d;
      })
      .def("shutdown", [](PyEngine& e, bool cancel, double grace) {
        // Idempotent; the engine object stays queryable (tasks, failures, stats).
        Engine& eng = e.get();
        nb::gil_scoped_release nogil;
        eng.shutdown(cancel, static_cast<int64_t>(grace * 1000), cancel ? std::function<void()>() : check_signals);
      }, "cancel"_a, "grace"_a);
}

}  // namespace tierflow::py
