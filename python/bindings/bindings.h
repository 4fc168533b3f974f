// Shared declarations of the tierflow._core bindings. Each bind_<component>.cpp
// only converts arguments and forwards to the engine; module.cpp registers.
#pragma once
#include <nanobind/nanobind.h>

#include <vector>

#include "common/distributed/task_args.h"

namespace nb = nanobind;

namespace tierflow::py {

// tf.TaskArgs. Two roles: a builder in the submitting process (tensor
// descriptors hold absolute addresses; `keep` holds the arrays until submit
// has pinned their arena blocks), and a view of a received task inside a
// child (descriptors hold arena offsets; `base` is the arena in this process).
struct PyTaskArgs {
  TaskArgs args;
  std::vector<nb::object> keep;
  char* base = nullptr;  // non-null: decoded in a child
};

// Runs a blocking call in 100 ms slices with the GIL released, checking for
// signals (KeyboardInterrupt) between slices; throws nb::python_error then.
void check_signals();

void bind_task_args(nb::module_& m);
void bind_arena(nb::module_& m);
void bind_engine(nb::module_& m);
void bind_child_port(nb::module_& m);

}  // namespace tierflow::py
