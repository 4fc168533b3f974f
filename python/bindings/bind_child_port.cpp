// The child's side: wait for a request, report the result, meet at a group
// barrier. Every wait releases the GIL. Results cross as bytes, so no text a
// task produces (invalid UTF-8, lone surrogates) can make reporting fail.
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>

#include <memory>

#include "bindings.h"
#include "common/distributed/memory/arena.h"
#include "common/distributed/processes/child_port.h"
#include "common/distributed/processes/drain_reply.h"
#include "common/distributed/processes/native_kernel.h"
#include "common/distributed/processes/shared_region.h"

namespace tierflow::py {

using namespace nb::literals;

namespace {
struct PyChildPort {
  std::shared_ptr<SharedRegion> region;
  std::shared_ptr<Arena> arena;
  ChildPort port;
  int32_t chip_id;
  NativeKernelTable native;
  std::vector<std::shared_ptr<Arena>> ancestors;  // arenas of the levels above: spaces 1, 2, ...
  std::array<char*, kMaxSpaces> bases{};
  PyChildPort(std::shared_ptr<SharedRegion> r, std::shared_ptr<Arena> a, uint32_t mailbox, int32_t chip)
      : region(checked(std::move(r), mailbox)), arena(std::move(a)),
        port(region->mailbox(mailbox), region->doorbell(), &region->barrier(0)), chip_id(chip) {
    bases[0] = arena->base();
  }

  static std::shared_ptr<SharedRegion> checked(std::shared_ptr<SharedRegion> r, uint32_t mailbox) {
    if (mailbox >= r->num_mailboxes())
      throw std::invalid_argument("mailbox " + std::to_string(mailbox) + " does not exist in this control region");
    return r;
  }

  // Serves native-kernel requests entirely in C++ (GIL released); returns
  // the first request that needs Python, or false on exit.
  bool next_python_request(Request* req) {
    for (;;) {
      if (!port.wait(req)) return false;
      tf_kernel_fn fn = native.find(req->callable);
      if (fn == nullptr) return true;
      port.complete(NativeKernelTable::run(fn, *req, bases.data(), chip_id, &region->barrier(req->barrier)));
    }
  }
};

std::string bytes_of(nb::bytes b) { return std::string(b.c_str(), b.size()); }
}  // namespace

void bind_child_port(nb::module_& m) {
  nb::class_<PyChildPort>(m, "ChildPort")
      .def(nb::init<std::shared_ptr<SharedRegion>, std::shared_ptr<Arena>, uint32_t, int32_t>(), "region"_a,
           "arena"_a, "mailbox"_a, "chip_id"_a = -1)
      .def("add_native", [](PyChildPort& p, uint32_t callable, const std::string& path, const std::string& symbol) {
        p.native.add(callable, path, symbol);
      }, "callable"_a, "path"_a, "symbol"_a, "Serve `callable` with a C kernel from a shared library")
      .def("add_ancestor_arena", [](PyChildPort& p, std::shared_ptr<Arena> a) {
        size_t space = p.ancestors.size() + 1;
        if (space >= static_cast<size_t>(kMaxSpaces))
          throw std::invalid_argument("tierflow nests at most " + std::to_string(kMaxSpaces) + " levels of arenas");
        p.bases[space] = a->base();
        p.ancestors.push_back(std::move(a));
      }, "arena"_a, "Maps the arena of the next level up as the next space (1, 2, ...): tensors of tasks sent by a "
                    "Worker of this process's level may live there")
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
        args->bases = p.bases;
        nb::object a = nb::cast(args, nb::rv_policy::take_ownership);
        return nb::make_tuple(req.callable, req.group_rank, req.group_size, req.barrier, a);
      }, "Blocks until the next request: (callable, rank, size, barrier, TaskArgs), or None to exit")
      .def("complete", [](PyChildPort& p, nb::bytes value) {
        TaskResult r;
        r.value = bytes_of(value);
        p.port.complete(r);
      }, "value"_a, "Reports success with the pickled return value (b'' for None)")
      .def("complete_when_drained", [](PyChildPort& p, PySession& s, nb::bytes value) {
        std::string v = bytes_of(value);
        nb::gil_scoped_release nogil;
        return answer_when_drained(p.port, *s.session, s.engine->graph().lent(), std::move(v));
      }, "session"_a, "value"_a,
         "Answers the current request with `value` as soon as everything submitted to `session` has finished, "
         "ending the loan of its tensors first — from the thread whose finish drains it. Blocks until then; "
         "False (nothing answered, the loan and the failures left to the caller) when some of that work failed")
      .def("fail", [](PyChildPort& p, nb::bytes message, nb::bytes traceback, nb::bytes types, nb::bytes exception) {
        TaskResult r = TaskResult::failure(bytes_of(message), bytes_of(traceback));
        r.types = bytes_of(types);
        r.exception = bytes_of(exception);
        p.port.complete(r);
      }, "message"_a, "traceback"_a, "types"_a, "exception"_a,
         "Reports a failure (UTF-8 text; shortened to fit the mailbox at character boundaries)")
      .def("lost", [](PyChildPort& p, nb::bytes message, nb::bytes traceback) {
        TaskResult r = TaskResult::failure(bytes_of(message), bytes_of(traceback));
        r.lost = true;
        p.port.complete(r);
      }, "message"_a, "traceback"_a,
         "Reports that what runs this request behind this worker is gone (a remote daemon): the task fails as "
         "worker_died, retries apply, and this worker keeps serving")
      .def("run_native", [](PyChildPort& p, uint32_t callable, uint32_t rank, uint32_t size, uint32_t barrier,
                            const PyTaskArgs& args) {
        tf_kernel_fn fn = p.native.find(callable);
        if (fn == nullptr)
          throw std::invalid_argument("callable " + std::to_string(callable) + " has no native kernel here");
        Request req;
        req.kind = size > 1 ? TaskKind::Group : TaskKind::Chip;
        req.callable = callable;
        req.group_rank = rank;
        req.group_size = size;
        req.barrier = barrier;
        req.args = args.args;
        TaskResult r;
        {
          nb::gil_scoped_release nogil;
          r = NativeKernelTable::run(fn, req, p.bases.data(), p.chip_id, &p.region->barrier(barrier));
          p.port.complete(r);
        }
      }, "callable"_a, "rank"_a, "size"_a, "barrier"_a, "args"_a,
         "Runs and answers one request (returned by wait()) with the native kernel added for `callable` after "
         "this child started (add_native): a kernel that reached the child at run time")
      .def_prop_ro_static("max_value_bytes", [](nb::handle) { return kMailboxPayload; },
                          "The largest pickled return value a task can send back")
      .def("barrier", [](PyChildPort& p, uint32_t index) {
        nb::gil_scoped_release nogil;
        return p.region->barrier(index).wait();
      }, "index"_a, "Meets the other members of the group; False if the barrier was broken");
}

}  // namespace tierflow::py
