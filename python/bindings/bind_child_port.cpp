// The child's side: wait for a request, report the result, meet at a group
// barrier. Every wait releases the GIL.
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>

#include <memory>

#include "bindings.h"
#include "common/distributed/arena.h"
#include "common/distributed/child_port.h"
#include "common/distributed/native_kernel.h"
#include "common/distributed/shared_region.h"

namespace tierflow::py {

using namespace nb::literals;

namespace {
struct PyChildPort {
  std::shared_ptr<SharedRegion> region;
  std::shared_ptr<Arena> arena;
  ChildPort port;
  int32_t chip_id;
  NativeKernelTable native;
  PyChildPort(std::shared_ptr<SharedRegion> r, std::shared_ptr<Arena> a, uint32_t mailbox, int32_t chip)
      : region(std::move(r)), arena(std::move(a)), port(region->mailbox(mailbox), region->doorbell()), chip_id(chip) {}

  // Serves native-kernel requests entirely in C++ (GIL released); returns
  // the first request that needs Python, or false on exit.
  bool next_python_request(Request* req) {
    for (;;) {
      if (!port.wait(req)) return false;
      tf_kernel_fn fn = native.find(req->callable);
      if (fn == nullptr) return true;
      std::string error;
      bool ok = NativeKernelTable::run(fn, *req, arena->base(), chip_id, &region->barrier(req->barrier), &error);
      port.complete(ok, error);
    }
  }
};
}  // namespace

void bind_child_port(nb::module_& m) {
  nb::class_<PyChildPort>(m, "ChildPort")
      .def(nb::init<std::shared_ptr<SharedRegion>, std::shared_ptr<Arena>, uint32_t, int32_t>(), "region"_a,
           "arena"_a, "mailbox"_a, "chip_id"_a = -1)
      .def("add_native", [](PyChildPort& p, uint32_t callable, const std::string& path, const std::string& symbol) {
        p.native.add(callable, path, symbol);
      }, "callable"_a, "path"_a, "symbol"_a, "Serve `callable` with a C kernel from a shared library")
      .def("wait", [](PyChildPort& p) -> nb::object {
        Request req;
        bool got;
        {
          nb::gil_scoped_release nogil;
          got = p.next_python_request(&req);
        }
        if (!got) return nb::none();
        auto* args = new PyTaskArgs();
        args->args = std::move(req.args);
        args->base = p.arena->base();
        nb::object a = nb::cast(args, nb::rv_policy::take_ownership);
        return nb::make_tuple(req.callable, req.group_rank, req.group_size, req.barrier, a);
      }, "Blocks until the next request: (callable, rank, size, barrier, TaskArgs), or None to exit")
      .def("complete", [](PyChildPort& p, bool ok, const std::string& error) { p.port.complete(ok, error); },
           "ok"_a, "error"_a = "")
      .def("barrier", [](PyChildPort& p, uint32_t index) {
        nb::gil_scoped_release nogil;
        return p.region->barrier(index).wait();
      }, "index"_a, "Meets the other members of the group; False if the barrier was broken");
}

}  // namespace tierflow::py
