// Arena and SharedRegion handles. w.alloc() gets a uint8 numpy array over a
// fresh block whose base object releases the block's Python reference.
#include <nanobind/ndarray.h>
#include <nanobind/stl/shared_ptr.h>

#include <memory>

#include "bindings.h"
#include "common/distributed/memory/arena.h"
#include "common/distributed/processes/shared_region.h"

namespace tierflow::py {

using namespace nb::literals;

namespace {
struct BlockOwner {
  std::shared_ptr<Arena> arena;  // keeps the mapping alive while any array views it
  uint64_t block;
};
}  // namespace

void bind_arena(nb::module_& m) {
  nb::exception<ArenaExhausted>(m, "ArenaExhausted", PyExc_MemoryError);

  nb::class_<Arena>(m, "Arena", nb::is_weak_referenceable())
      .def(nb::new_([](uint64_t bytes) { return std::make_shared<Arena>(bytes); }), "bytes"_a)
      .def_prop_ro("size", &Arena::size)
      .def_prop_ro("base_address", [](const Arena& a) { return reinterpret_cast<uintptr_t>(a.base()); })
      .def_prop_ro("bytes_in_use", &Arena::bytes_in_use)
      .def_prop_ro("live_blocks", &Arena::live_blocks)
      .def("contains_address", [](const Arena& a, uintptr_t p) { return a.contains(reinterpret_cast<void*>(p)); })
      .def("forget_mapping", &Arena::forget_mapping,
           "In a forked process that does not use this arena: drop its pages, keep the addresses inaccessible");

  m.def("arena_alloc", [](std::shared_ptr<Arena> arena, uint64_t nbytes) {
    uint64_t off = arena->allocate(nbytes);
    auto* owner = new BlockOwner{arena, off};
    nb::capsule cap(owner, [](void* p) noexcept {
      auto* o = static_cast<BlockOwner*>(p);
      o->arena->release(o->block);
      delete o;
    });
    size_t shape[1] = {static_cast<size_t>(nbytes)};
    return nb::ndarray<nb::numpy, uint8_t>(arena->base() + off, 1, shape, cap).cast();
  }, "arena"_a, "nbytes"_a, "A uint8 array of nbytes over a new arena block");

  nb::class_<SharedRegion>(m, "SharedRegion", nb::is_weak_referenceable())
      .def(nb::new_([](uint32_t mailboxes, uint32_t barriers) {
             return std::make_shared<SharedRegion>(mailboxes, barriers);
           }), "mailboxes"_a, "barriers"_a)
      .def("forget_mapping", &SharedRegion::forget_mapping,
           "In a forked process that does not use this region: drop its pages, keep the addresses inaccessible");
}

}  // namespace tierflow::py
