#include "common/distributed/graph/task_args.h"

#include <cstring>
#include <stdexcept>
#include <type_traits>

namespace tierflow {

static_assert(std::is_trivially_copyable<TensorDesc>::value, "TensorDesc crosses processes by memcpy");
static_assert(std::is_trivially_copyable<Scalar>::value, "Scalar crosses processes by memcpy");

namespace {
struct Header {
  uint32_t tensors;
  uint32_t scalars;
};
}  // namespace

size_t TaskArgs::encoded_size() const {
  return sizeof(Header) + tensors.size() * sizeof(TensorDesc) + scalars.size() * sizeof(Scalar);
}

size_t TaskArgs::encode(char* buf, size_t cap) const {
  size_t need = encoded_size();
  if (need > cap) return 0;
  Header h{static_cast<uint32_t>(tensors.size()), static_cast<uint32_t>(scalars.size())};
  std::memcpy(buf, &h, sizeof h);
  char* p = buf + sizeof h;
  if (!tensors.empty()) std::memcpy(p, tensors.data(), tensors.size() * sizeof(TensorDesc));
  p += tensors.size() * sizeof(TensorDesc);
  if (!scalars.empty()) std::memcpy(p, scalars.data(), scalars.size() * sizeof(Scalar));
  return need;
}

TaskArgs TaskArgs::decode(const char* buf, size_t len) {
  Header h;
  if (len < sizeof h) throw std::runtime_error("task payload truncated");
  std::memcpy(&h, buf, sizeof h);
  TaskArgs a;
  size_t need = sizeof h + size_t(h.tensors) * sizeof(TensorDesc) + size_t(h.scalars) * sizeof(Scalar);
  if (len < need) throw std::runtime_error("task payload truncated");
  a.tensors.resize(h.tensors);
  a.scalars.resize(h.scalars);
  const char* p = buf + sizeof h;
  if (h.tensors) std::memcpy(a.tensors.data(), p, h.tensors * sizeof(TensorDesc));
  p += h.tensors * sizeof(TensorDesc);
  if (h.scalars) std::memcpy(static_cast<void*>(a.scalars.data()), p, h.scalars * sizeof(Scalar));
  return a;
}

}  // namespace tierflow
