// The C++ half of tf.Task: identity, state and the engine calls a future
// needs (wait, failure record, return value, cancel, watch). tierflow's
// Python Task subclasses it and adds the concurrent.futures API; submit
// creates instances of that subclass directly, which costs about as much as
// a plain Python object.
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>

#include <string>

#include "bindings.h"

namespace tierflow::py {

using namespace nb::literals;

namespace {

nb::handle g_task_type;  // the Python subclass, registered at import

TaskState state_of(const PyTask& t, bool* failed_for_good, bool* cancelled_for_good) {
  TaskState st = t.engine->graph().state_of(t.slot, t.id);
  *failed_for_good = *cancelled_for_good = false;
  if (st == TaskState::Consumed) {
    // The slot moved on; a failure record outlives it.
    if (auto k = t.session->failure_kind(t.id)) {
      *cancelled_for_good = *k == FailureKind::Cancelled;
      *failed_for_good = !*cancelled_for_good;
    }
  }
  return st;
}

std::string state_name(const PyTask& t) {
  bool failed, cancelled;
  TaskState st = state_of(t, &failed, &cancelled);
  if (failed) return "failed";
  if (cancelled) return "cancelled";
  return to_string(st);
}

}  // namespace

nb::object make_task(const PySession& s, SlotIndex slot, TaskId id, TaskKind kind, uint32_t callable,
                     std::string name) {
  nb::handle type = g_task_type.is_valid() ? g_task_type : nb::type<PyTask>();
  nb::object o = nb::inst_alloc(type);
  new (nb::inst_ptr<PyTask>(o)) PyTask{s.engine, s.session, slot, id, kind, callable, std::move(name)};
  nb::inst_mark_ready(o);
  return o;
}

void bind_task(nb::module_& m) {
  nb::class_<PyTask>(m, "TaskBase", "The engine's side of a tf.Task")
      .def_ro("id", &PyTask::id, "The task's id: unique within its Worker, increasing in submission order")
      .def_ro("_slot", &PyTask::slot)
      .def_prop_ro("name", [](const PyTask& t) {
        return t.name.empty() ? t.engine->graph().callable_name(t.kind, t.callable) : t.name;
      }, "The name given at submit, or the callable's name")
      .def_prop_ro("state", &state_name,
                   "'pending', 'ready', 'running', 'completed', 'failed', 'cancelled' or 'consumed'")
      .def("done", [](const PyTask& t) {
        bool f, c;
        return finished(state_of(t, &f, &c));
      }, "True once the task completed, failed or was cancelled")
      .def("running", [](const PyTask& t) {
        bool f, c;
        return state_of(t, &f, &c) == TaskState::Running;
      }, "True while the task runs on a worker")
      .def("cancelled", [](const PyTask& t) {
        bool f, c;
        return state_of(t, &f, &c) == TaskState::Cancelled || c;
      }, "True if the task was cancelled (by cancel(), an interrupt, a cancelling close(), or because a task it "
         "depends on was cancelled)")
      .def("_wait", [](const PyTask& t, nb::handle timeout) {
        int64_t ms = to_ms(timeout);
        TaskGraph& g = t.engine->graph();
        SlotIndex slot = t.slot;
        TaskId id = t.id;
        nb::gil_scoped_release nogil;
        return t.session->wait_task(id, [&g, slot, id] { return g.task_finished(slot, id); }, ms, check_signals);
      }, "timeout"_a.none())
      .def("_failure", [](const PyTask& t) -> nb::object {
        auto f = t.session->failure_of(t.id);
        if (!f) return nb::none();
        return failure_tuple(*f);
      })
      .def("_take_value", [](const PyTask& t) -> nb::object {
        std::string v;
        if (!t.session->take_result(t.id, &v)) return nb::none();
        return nb::bytes(v.data(), v.size());
      }, "The pickled return value, once (None: the task returned None)")
      .def("_cancel", [](const PyTask& t) {
        TaskGraph& g = t.engine->graph();
        if (!g.cancel(t.slot, t.id)) return false;
        t.engine->scheduler().cancelled(t.slot, t.id);
        // The scheduler finishes it at its next pass (even while producers
        // still run); waiting for that makes done() and cancelled() true as
        // soon as cancel() returns, as for a concurrent.futures.Future.
        SlotIndex slot = t.slot;
        TaskId id = t.id;
        nb::gil_scoped_release nogil;
        t.session->wait_task(id, [&g, slot, id] { return g.task_finished(slot, id); }, 5000, {});
        return true;
      })
      .def("_watch", [](const PyTask& t) {
        TaskGraph& g = t.engine->graph();
        SlotIndex slot = t.slot;
        TaskId id = t.id;
        return t.session->watch(id, [&g, slot, id] { return g.task_finished(slot, id); });
      }, "Asks to hear of the task's finish via Session.take_done; False if it already finished")
      .def_prop_ro("_session", [](const PyTask& t) { return PySession{t.engine, t.session}; });

  m.def("set_task_type", [](nb::handle type) {
    if (!nb::type_check(type) || !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(type.ptr()),
                                                   reinterpret_cast<PyTypeObject*>(nb::type<PyTask>().ptr())))
      throw nb::type_error("set_task_type() needs a subclass of TaskBase");
    type.inc_ref();
    g_task_type = type;
  }, "type"_a, "Registers the Python subclass that submit returns");
}

}  // namespace tierflow::py
