// tierflow._core: the private extension. Registration only.
#include "bindings.h"

NB_MODULE(_core, m) {
  m.doc() = "tierflow's C++ engine (private; use the tierflow package)";
  tierflow::py::bind_task_args(m);
  tierflow::py::bind_arena(m);
  tierflow::py::bind_engine(m);
  tierflow::py::bind_session(m);
  tierflow::py::bind_task(m);
  tierflow::py::bind_child_port(m);
}
