// A session: submit, scopes, drain and the failure records. The submit path
// converts with the GIL held, then builds the graph with it released (it may
// block on the window, checking for signals every 100 ms).
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <string>

#include "bindings.h"

namespace tierflow::py {

using namespace nb::literals;

namespace {

// A submit's tensors as offsets into their arenas (spaces). A builder holds
// absolute addresses: those in this level's arena become space 0, those in
// an arena of a level above (lent by its running task, see LentMemory) that
// level's space; anything else is refused. A TaskArgs an orch function
// received is already in offsets, one level up: it is passed on as it is.
TaskArgs rebase(const PyTaskArgs& a, Engine& engine) {
  const Arena* arena = engine.graph().arena();
  if (arena == nullptr) throw std::logic_error("the Worker is closed");
  TaskArgs out = a.args;
  LentMemory& lent = engine.graph().lent();
  if (a.decoded()) {
    if (lent.num_ancestors() == 0)
      throw nb::value_error("this TaskArgs came from a running task; build a new one to submit");
    for (TensorDesc& d : out.tensors) {
      if (d.space + 1 >= kMaxSpaces) throw nb::value_error("tensors nest deeper than tierflow supports");
      d.space = static_cast<uint8_t>(d.space + 1);
    }
    return out;
  }
  auto base = reinterpret_cast<uint64_t>(arena->base());
  for (size_t i = 0; i < out.tensors.size(); ++i) {
    TensorDesc& d = out.tensors[i];
    uint64_t b = base;
    bool inside = d.lo >= base && d.hi <= base + arena->size() && d.offset >= base && d.offset <= base + arena->size();
    if (!inside) {
      int space = lent.space_of(d.lo, d.hi);
      if (space == 0)
        throw nb::value_error(("tensor " + std::to_string(i) +
                               " is not in this Worker's shared arena; task tensors must be arrays from "
                               "w.alloc() or w.share() (or views of them): w.share(array) copies one in")
                                  .c_str());
      b = lent.base_of(space);
      d.space = static_cast<uint8_t>(space);
    }
    d.offset -= b;
    d.lo -= b;
    d.hi -= b;
  }
  return out;
}

// Submits with the GIL held unless the submit has to wait for a slot: the
// engine's part takes well under a microsecond, and giving the GIL up for
// it would make every submit of several Python threads a thread switch.
nb::object submit(PySession& s, SubmitRequest&& req) {
  TaskKind kind = req.kind;
  uint32_t callable = req.callable;
  std::string name = req.name;
  PyThreadState* released = nullptr;
  struct Reacquire {
    PyThreadState*& state;
    ~Reacquire() {
      if (state != nullptr) PyEval_RestoreThread(state);
    }
  } reacquire{released};
  std::pair<SlotIndex, TaskId> got = s.session->orchestrator().submit(
      std::move(req), check_signals, [&released] { released = PyEval_SaveThread(); });
  if (released != nullptr) {
    PyEval_RestoreThread(released);
    released = nullptr;
  }
  return make_task(s, got.first, got.second, kind, callable, std::move(name));
}

}  // namespace

void bind_session(nb::module_& m) {
  nb::class_<PySession>(m, "Session")
      .def("submit", [](PySession& s, int kind, uint32_t callable, int32_t target, nb::list members,
                        std::vector<int32_t> group_chips, std::string name, uint32_t retries,
                        std::optional<std::vector<std::string>> retry_on, nb::handle timeout) {
        SubmitRequest req;
        req.kind = static_cast<TaskKind>(kind);
        req.callable = callable;
        req.target = target;
        req.group_chips = std::move(group_chips);
        req.name = std::move(name);
        req.retries = retries;
        if (retry_on && !retry_on->empty())
          req.retry_on = std::make_shared<const std::vector<std::string>>(std::move(*retry_on));
        req.timeout_ms = to_ms(timeout);
        for (nb::handle h : members) req.members.push_back(rebase(nb::cast<const PyTaskArgs&>(h), *s.engine));
        return submit(s, std::move(req));
      }, "kind"_a, "callable"_a, "target"_a, "members"_a, "group_chips"_a, "name"_a, "retries"_a,
         "retry_on"_a.none(), "timeout"_a.none())
      .def("submit_one", [](PySession& s, int kind, uint32_t callable, int32_t target, const PyTaskArgs& args) {
        // The common case (one member, no options) without list conversions.
        SubmitRequest req;
        req.kind = static_cast<TaskKind>(kind);
        req.callable = callable;
        req.target = target;
        req.members.push_back(rebase(args, *s.engine));
        return submit(s, std::move(req));
      }, "kind"_a, "callable"_a, "target"_a, "args"_a)
      .def("scope_begin", [](PySession& s) { s.session->orchestrator().scope_begin(); })
      .def("scope_end", [](PySession& s) { s.session->orchestrator().scope_end(); })
      .def_prop_ro("scope_depth", [](PySession& s) { return s.session->orchestrator().scope_depth(); })
      .def("drain", [](PySession& s, nb::handle timeout) {
        int64_t ms = to_ms(timeout);
        Session* sess = s.session.get();
        nb::gil_scoped_release nogil;
        return sess->wait_drained(ms, check_signals);
      }, "timeout"_a.none(), "Waits for every task of the session; False on timeout")
      .def("take_failures", [](PySession& s) {
        nb::list out;
        for (auto& f : s.session->take_failures()) out.append(failure_tuple(f));
        return out;
      }, "The failures no drain has reported yet, as tuples")
      .def("stats", [](PySession& s) { return session_stats(*s.session, *s.engine); })
      .def_prop_ro("name", [](PySession& s) { return s.session->name(); })
      .def_prop_ro("weight", [](PySession& s) { return s.session->weight(); })
      .def_prop_ro("closed", [](PySession& s) { return s.session->closed(); })
      .def("close", [](PySession& s, bool cancel, double grace) {
        std::shared_ptr<Engine> eng = s.engine;
        std::shared_ptr<Session> sess = s.session;
        if (eng->stopped()) return;
        nb::gil_scoped_release nogil;
        eng->close_session(sess, cancel, static_cast<int64_t>(grace * 1000), cancel ? std::function<void()>() : check_signals);
      }, "cancel"_a, "grace"_a, "Refuses new submits, waits for the session's tasks, ends its scopes, removes it")
      .def_prop_ro("key", [](PySession& s) { return reinterpret_cast<uintptr_t>(s.session.get()); },
                   "Identifies the session while anything refers to it")
      .def("cancel_pending", [](PySession& s, const std::string& reason, double grace) {
        Engine& eng = *s.engine;
        if (eng.stopped()) return;
        nb::gil_scoped_release nogil;
        eng.cancel_session(*s.session, reason, static_cast<int64_t>(grace * 1000), {});
      }, "reason"_a, "grace"_a,
         "Cancels the session's tasks that have not started; stops those still running after `grace` s")
      .def("take_done", [](PySession& s, nb::handle timeout) {
        int64_t ms = to_ms(timeout);
        std::vector<TaskId> ids;
        {
          nb::gil_scoped_release nogil;
          ids = s.session->take_done(ms, {});
        }
        return ids;
      }, "timeout"_a.none(), "Ids of watched tasks that finished since the last call");
}

}  // namespace tierflow::py
