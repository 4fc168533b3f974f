// Shared declarations of the tierflow._core bindings. Each bind_<component>.cpp
// only converts arguments and forwards to the engine; module.cpp registers.
#pragma once
#include <nanobind/nanobind.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/distributed/engine.h"
#include "common/distributed/graph/task_args.h"

namespace nb = nanobind;

namespace tierflow::py {

// tf.TaskArgs. Two roles: a builder in the submitting process (tensor
// descriptors hold absolute addresses; `keep` holds the arrays until submit
// has pinned their arena blocks), and a view of a received task inside a
// child (descriptors hold offsets into the arena of their space; `bases`
// are those arenas in this process).
struct PyTaskArgs {
  TaskArgs args;
  std::vector<nb::object> keep;
  std::array<char*, kMaxSpaces> bases{};  // bases[0] non-null: decoded in a child
  bool decoded() const { return bases[0] != nullptr; }
  // Built here but handed to an orch function as a task's arguments (a
  // daemon runs a remote task so): reads like a decoded one (scalar(i)
  // reads, input tensors are read-only, nothing can be added), submits like
  // a builder (its tensors are this process's own arena arrays).
  bool received = false;
  bool sealed() const { return decoded() || received; }
  // Tensor i's data in this process; throws if its arena is not mapped here.
  char* data_of(const TensorDesc& d) const;
};

// One session of an engine, as Python holds it. The shared_ptr keeps the
// engine's records (task states, failures, results) alive after the Worker
// closed, for as long as any Task or session object refers to them.
struct PySession {
  std::shared_ptr<Engine> engine;
  std::shared_ptr<Session> session;
};

// The C++ half of tf.Task (its Python subclass adds the futures API). Its
// destructor drops a return value nobody fetched.
struct PyTask {
  std::shared_ptr<Engine> engine;
  std::shared_ptr<Session> session;
  SlotIndex slot;
  TaskId id;
  TaskKind kind;
  uint32_t callable;
  std::string name;  // given at submit; empty: the callable's
  ~PyTask() {
    if (session != nullptr && session->may_hold_results()) session->drop_result(id);
  }
};

// Throws nb::python_error when a signal (Ctrl-C) is pending; called between
// the 100 ms slices of every blocking wait, with the GIL released around it.
void check_signals();
// Milliseconds from a timeout in seconds (None: -1, no limit; inf: no limit).
int64_t to_ms(nb::handle timeout);
// A new tf.Task (of the Python type registered with set_task_type) for a
// task just submitted.
nb::object make_task(const PySession& s, SlotIndex slot, TaskId id, TaskKind kind, uint32_t callable,
                     std::string name);
nb::tuple failure_tuple(const Failure& f);
nb::dict session_stats(const Session& s, const Engine& engine);

void bind_task_args(nb::module_& m);
void bind_arena(nb::module_& m);
void bind_engine(nb::module_& m);
void bind_session(nb::module_& m);
void bind_task(nb::module_& m);
void bind_child_port(nb::module_& m);

}  // namespace tierflow::py
