#include "common/distributed/processes/native_kernel.h"

#include <dlfcn.h>

#include <cstring>
#include <stdexcept>

namespace tierflow {

static_assert(TF_MAX_DIMS == kMaxDims, "the C ABI and the engine agree on the rank limit");

void NativeKernelTable::add(uint32_t callable, const std::string& path, const std::string& symbol) {
  // RTLD_LOCAL: kernels of different libraries do not see each other's symbols.
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) throw std::invalid_argument("cannot load native kernel library '" + path + "': " + dlerror());
  dlerror();
  void* sym = dlsym(lib, symbol.c_str());
  if (sym == nullptr)
    throw std::invalid_argument("native kernel symbol '" + symbol + "' not found in '" + path + "'");
  if (fns_.size() <= callable) fns_.resize(callable + 1, nullptr);
  fns_[callable] = reinterpret_cast<tf_kernel_fn>(sym);
}

namespace {
struct ChipImpl {
  GroupBarrier* barrier;
  std::string* error;
};

int chip_barrier(const tf_chip* chip) {
  if (chip->group_size <= 1) return 0;
  auto* impl = static_cast<ChipImpl*>(chip->impl);
  return impl->barrier->wait() ? 0 : -1;
}

void chip_set_error(const tf_chip* chip, const char* message) {
  auto* impl = static_cast<ChipImpl*>(chip->impl);
  impl->error->assign(message ? message : "");
}
}  // namespace

TaskResult NativeKernelTable::run(tf_kernel_fn fn, const Request& req, char* const* bases, int32_t chip_id,
                                  GroupBarrier* barrier) {
  tf_tensor tensors_small[8];
  std::vector<tf_tensor> tensors_big;
  size_t nt = req.args.tensors.size();
  tf_tensor* tensors = tensors_small;
  if (nt > 8) {
    tensors_big.resize(nt);
    tensors = tensors_big.data();
  }
  for (size_t i = 0; i < nt; ++i) {
    const TensorDesc& d = req.args.tensors[i];
    tf_tensor& t = tensors[i];
    if (d.space >= kMaxSpaces || bases[d.space] == nullptr)
      return TaskResult::failure("RuntimeError: tensor " + std::to_string(i) + " names arena space " +
                                     std::to_string(d.space) + ", which this chip does not map",
                                 "");
    t.data = bases[d.space] + d.offset;
    t.dtype_code = d.dtype.code;
    t.dtype_bits = d.dtype.bits;
    t.tag = static_cast<uint8_t>(d.tag);
    t.ndim = d.ndim;
    std::memcpy(t.shape, d.shape, sizeof t.shape);
    std::memcpy(t.strides, d.strides, sizeof t.strides);
  }
  std::vector<tf_scalar> scalars(req.args.scalars.size());
  for (size_t i = 0; i < scalars.size(); ++i) {
    const Scalar& s = req.args.scalars[i];
    scalars[i].is_float = s.kind == Scalar::Float;
    scalars[i].reserved = 0;
    scalars[i].i = s.kind == Scalar::Int ? s.i : static_cast<int64_t>(s.f);
    scalars[i].f = s.kind == Scalar::Float ? s.f : static_cast<double>(s.i);
  }
  tf_args args{static_cast<int32_t>(nt), static_cast<int32_t>(scalars.size()), tensors, scalars.data()};
  std::string message;
  ChipImpl impl{barrier, &message};
  tf_chip chip{chip_id, static_cast<int32_t>(req.group_rank), static_cast<int32_t>(req.group_size), TF_ABI_VERSION,
               &chip_barrier, &chip_set_error, &impl};
  int rc = fn(&args, &chip);
  if (rc == 0) return TaskResult{};
  std::string text = "NativeKernelError: kernel returned " + std::to_string(rc) + (message.empty() ? "" : ": " + message);
  TaskResult r = TaskResult::failure(text, text + "\n");
  r.types = "tierflow.NativeKernelError|builtins.Exception|builtins.BaseException";
  return r;
}

}  // namespace tierflow
