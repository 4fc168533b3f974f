// tf.TaskArgs and tf.Tag. Tensors are read through the buffer protocol
// (PyBUF_RECORDS_RO gives byte strides), the cheapest path for numpy arrays.
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <cstring>
#include <string>

#include "bindings.h"

namespace tierflow::py {

using namespace nb::literals;

namespace {

DType parse_format(const char* fmt, Py_ssize_t itemsize) {
  // Tasks see tensors in native byte order; a foreign-order view would be
  // read as native, silently wrong, so it is refused.
  constexpr bool little = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
  const char foreign = little ? '>' : '<';
  if ((*fmt == foreign || (little && *fmt == '!')) && itemsize > 1)
    throw nb::value_error((std::string("a task tensor must be in native byte order, got buffer format '") + fmt +
                           "'; convert it with a.astype(a.dtype.newbyteorder('='))")
                              .c_str());
  while (*fmt == '<' || *fmt == '=' || *fmt == '@' || *fmt == '!' || *fmt == '>') ++fmt;
  DType d;
  d.bits = static_cast<uint8_t>(itemsize * 8);
  if (std::strcmp(fmt, "?") == 0) {
    d.code = 6;
  } else if (std::strlen(fmt) == 1 && std::strchr("bhilq", fmt[0])) {
    d.code = 0;
  } else if (std::strlen(fmt) == 1 && std::strchr("BHILQ", fmt[0])) {
    d.code = 1;
  } else if (std::strlen(fmt) == 1 && std::strchr("efd", fmt[0])) {
    d.code = 2;
  } else if (fmt[0] == 'Z' && std::strchr("fd", fmt[1]) && fmt[2] == 0) {
    d.code = 5;
  } else {
    throw nb::type_error((std::string("unsupported tensor dtype (buffer format '") + fmt +
                          "'); use a numeric numpy dtype such as float32, float64, int32 or int64")
                             .c_str());
  }
  return d;
}

PyTaskArgs& add_tensor(PyTaskArgs& self, nb::handle obj, AccessTag tag) {
  if (self.sealed()) throw std::logic_error("this TaskArgs belongs to a running task; build a new one");
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_RECORDS_RO) != 0) {
    PyErr_Clear();
    throw nb::type_error(("a task tensor must be a numpy array allocated with w.alloc() or w.share(), got " +
                          std::string(Py_TYPE(obj.ptr())->tp_name))
                             .c_str());
  }
  struct Release {
    Py_buffer* v;
    ~Release() { PyBuffer_Release(v); }
  } release{&view};
  if (view.ndim > kMaxDims)
    throw nb::value_error(("a task tensor has at most " + std::to_string(kMaxDims) + " dimensions").c_str());
  if (writes(tag) && view.readonly)
    throw nb::value_error("a read-only array cannot be an output or inout tensor");
  TensorDesc d;
  d.dtype = parse_format(view.format ? view.format : "B", view.itemsize);
  d.tag = tag;
  d.ndim = static_cast<uint8_t>(view.ndim);
  for (int i = 0; i < view.ndim; ++i) {
    d.shape[i] = view.shape[i];
    d.strides[i] = view.strides ? view.strides[i] : 0;
    if (d.strides[i] % view.itemsize != 0)
      throw nb::value_error("tensor strides must be multiples of the item size; pass a copy made by w.share()");
  }
  auto addr = reinterpret_cast<uint64_t>(view.buf);
  int64_t lo_rel, hi_rel;
  d.span(&lo_rel, &hi_rel);
  d.offset = addr;  // absolute until submit rebases it on the arena
  d.lo = addr + lo_rel;
  d.hi = addr + hi_rel;
  if (lo_rel == hi_rel) d.lo = d.hi = addr;
  self.args.tensors.push_back(d);
  self.keep.push_back(nb::borrow(obj));
  return self;
}

// numpy's scalar base classes, looked up once (numpy is imported by then:
// every tensor is a numpy array).
struct NumpyScalars {
  nb::object bool_, integer, floating, ndarray;
};
const NumpyScalars& numpy_scalars() {
  static NumpyScalars* t = [] {
    nb::module_ np = nb::module_::import_("numpy");
    return new NumpyScalars{np.attr("bool_"), np.attr("integer"), np.attr("floating"), np.attr("ndarray")};
  }();
  return *t;
}

bool isinstance_of(PyObject* o, const nb::object& type) { return PyObject_IsInstance(o, type.ptr()) == 1; }

Scalar int_scalar(PyObject* o) {
  nb::object i = nb::steal(PyNumber_Index(o));
  if (!i.is_valid()) throw nb::python_error();
  int overflow = 0;
  Scalar s;
  s.kind = Scalar::Int;
  s.i = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow != 0) throw nb::value_error("TaskArgs.scalar(): the integer does not fit in 64 bits");
  return s;
}

// Accepts exactly ints and floats, Python or numpy: bool (Python or numpy)
// is the int 0 or 1, as in Python; complex, Decimal, Fraction, strings and
// 0-d arrays are refused rather than silently converted.
PyTaskArgs& add_scalar(PyTaskArgs& self, nb::handle x) {
  Scalar s;
  PyObject* o = x.ptr();
  if (PyBool_Check(o)) {
    s.kind = Scalar::Int;
    s.i = o == Py_True ? 1 : 0;
  } else if (PyFloat_Check(o)) {
    s.kind = Scalar::Float;
    s.f = PyFloat_AsDouble(o);
  } else if (PyLong_Check(o)) {
    s = int_scalar(o);
  } else {
    const NumpyScalars& np = numpy_scalars();
    if (isinstance_of(o, np.bool_)) {
      s.kind = Scalar::Int;
      s.i = PyObject_IsTrue(o) == 1 ? 1 : 0;
    } else if (isinstance_of(o, np.integer)) {
      s = int_scalar(o);
    } else if (isinstance_of(o, np.floating)) {
      s.kind = Scalar::Float;
      s.f = PyFloat_AsDouble(o);
      if (s.f == -1.0 && PyErr_Occurred()) throw nb::python_error();
    } else if (isinstance_of(o, np.ndarray)) {
      throw nb::type_error("TaskArgs.scalar() takes an int or a float, got a numpy array; pass a Python "
                           "number (x.item() for a 0-d array) or put the array in the arena as a tensor");
    } else {
      throw nb::type_error(("TaskArgs.scalar() takes an int or a float (Python or numpy), got " +
                            std::string(Py_TYPE(o)->tp_name) + "; convert it with int(x) or float(x)")
                               .c_str());
    }
  }
  self.args.scalars.push_back(s);
  return self;
}

const TensorDesc& desc_at(const PyTaskArgs& self, int64_t i) {
  auto n = static_cast<int64_t>(self.args.tensors.size());
  if (i < 0) i += n;
  if (i < 0 || i >= n)
    throw nb::index_error(("tensor index " + std::to_string(i) + " out of range: the task has " +
                           std::to_string(n) + " tensor(s)")
                              .c_str());
  return self.args.tensors[static_cast<size_t>(i)];
}

}  // namespace

char* PyTaskArgs::data_of(const TensorDesc& d) const {
  if (d.space >= kMaxSpaces || bases[d.space] == nullptr)
    throw std::logic_error("a task tensor names arena space " + std::to_string(d.space) +
                           ", which this process does not map");
  return bases[d.space] + d.offset;
}

namespace {

nb::object tensor_at(nb::handle self_h, int64_t i) {
  PyTaskArgs& self = nb::cast<PyTaskArgs&>(self_h);
  const TensorDesc& d = desc_at(self, i);
  if (!self.decoded()) {
    nb::object t = self.keep[static_cast<size_t>(i < 0 ? i + self.keep.size() : i)];
    if (self.received && d.tag == AccessTag::Input) {  // the task sees an input read-only
      nb::object v = t.attr("view")();
      v.attr("flags").attr("writeable") = false;
      return v;
    }
    return t;
  }
  size_t shape[kMaxDims];
  int64_t strides[kMaxDims];
  for (int k = 0; k < d.ndim; ++k) {
    shape[k] = static_cast<size_t>(d.shape[k]);
    strides[k] = d.strides[k] / d.dtype.itemsize();
  }
  nb::dlpack::dtype dt{d.dtype.code, d.dtype.bits, 1};
  void* data = self.data_of(d);
  // The owner is the TaskArgs: the arena mapping outlives it in a child.
  if (d.tag == AccessTag::Input)
    return nb::ndarray<nb::numpy, nb::ro>(data, d.ndim, shape, self_h, strides, dt).cast();
  return nb::ndarray<nb::numpy>(data, d.ndim, shape, self_h, strides, dt).cast();
}

}  // namespace

void bind_task_args(nb::module_& m) {
  nb::enum_<AccessTag>(m, "Tag", "How a task touches a tensor")
      .value("INPUT", AccessTag::Input)
      .value("OUTPUT", AccessTag::Output)
      .value("INOUT", AccessTag::InOut)
      .value("NO_DEP", AccessTag::NoDep);

  nb::class_<PyTaskArgs>(m, "TaskArgs",
                         "Tensors and scalars of one task. Build with .input/.output/.inout/.no_dep/.scalar; "
                         "read inside a task with .tensor(i)/.scalar(i)/.tag(i).")
      .def(nb::init<>())
      .def("input", [](PyTaskArgs& s, nb::handle t) -> PyTaskArgs& { return add_tensor(s, t, AccessTag::Input); },
           nb::rv_policy::reference, "t"_a.none(),
           "Adds arena array `t` (or a view of one) that the task reads; it sees it read-only. Returns self.")
      .def("output", [](PyTaskArgs& s, nb::handle t) -> PyTaskArgs& { return add_tensor(s, t, AccessTag::Output); },
           nb::rv_policy::reference, "t"_a.none(),
           "Adds an arena array the task overwrites without reading it. Returns self.")
      .def("inout", [](PyTaskArgs& s, nb::handle t) -> PyTaskArgs& { return add_tensor(s, t, AccessTag::InOut); },
           nb::rv_policy::reference, "t"_a.none(), "Adds an arena array the task reads and writes. Returns self.")
      .def("no_dep", [](PyTaskArgs& s, nb::handle t) -> PyTaskArgs& { return add_tensor(s, t, AccessTag::NoDep); },
           nb::rv_policy::reference, "t"_a.none(),
           "Adds an arena array whose accesses the engine does not track (no dependency at all). Returns self.")
      .def("tensor", &tensor_at, "i"_a,
           "Inside a task: tensor i as a numpy array of the submitted shape, dtype and strides (read-only for an "
           "input). On a builder: the array that was added.")
      .def("tag", [](const PyTaskArgs& s, int64_t i) { return desc_at(s, i).tag; }, "i"_a,
           "How the task touches tensor i: a tf.Tag")
      // One name, two roles (as the contract has it): while building, add a
      // scalar; inside a task, read scalar i.
      .def("scalar", [](nb::handle self_h, nb::handle x) -> nb::object {
             PyTaskArgs& s = nb::cast<PyTaskArgs&>(self_h);
             if (!s.sealed()) {
               add_scalar(s, x);
               return nb::borrow(self_h);
             }
             int64_t i = nb::cast<int64_t>(x);
             auto n = static_cast<int64_t>(s.args.scalars.size());
             if (i < 0) i += n;
             if (i < 0 || i >= n)
               throw nb::index_error(("scalar index out of range: the task has " + std::to_string(n) +
                                      " scalar(s)").c_str());
             const Scalar& v = s.args.scalars[static_cast<size_t>(i)];
             if (v.kind == Scalar::Float) return nb::float_(v.f);
             return nb::int_(v.i);
           }, "x"_a.none(),
           "On a builder: adds the scalar x (an int or a float, Python or numpy; a bool is 0 or 1) and returns "
           "self. Inside a task: returns scalar number x.")
      .def("_as_received", [](nb::handle self_h) -> nb::object {
             nb::cast<PyTaskArgs&>(self_h).received = true;
             return nb::borrow(self_h);
           }, "Hands this builder to an orch function as a task's arguments (used by the daemon). Returns self.")
      .def_prop_ro("num_tensors", [](const PyTaskArgs& s) { return s.args.tensors.size(); }, "How many tensors")
      .def_prop_ro("num_scalars", [](const PyTaskArgs& s) { return s.args.scalars.size(); }, "How many scalars")
      .def("__repr__", [](const PyTaskArgs& s) {
        return "TaskArgs(" + std::to_string(s.args.tensors.size()) + " tensors, " +
               std::to_string(s.args.scalars.size()) + " scalars)";
      });
}

}  // namespace tierflow::py
