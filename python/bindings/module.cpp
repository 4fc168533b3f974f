// tierflow._core: the private extension. Registration only.
#include "bindings.h"

NB_MODULE(_core, m) {
  m.doc() = "tierflow's C++ engine (private; use the tierflow package)";
  // Tasks and arrays a program still holds when the interpreter exits (in
  // module globals, in a daemon callback thread) are released by the
  // process's exit, not by Python's teardown; that is not a leak to report.
  nb::set_leak_warnings(false);
  tierflow::py::bind_task_args(m);
  tierflow::py::bind_arena(m);
  tierflow::py::bind_engine(m);
  tierflow::py::bind_session(m);
  tierflow::py::bind_task(m);
  tierflow::py::bind_child_port(m);
}
