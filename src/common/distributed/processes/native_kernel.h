// NativeKernelTable: the compiled kernels a chip process runs without
// entering Python (ABI: python/tierflow/include/tierflow/kernel.h).
// Built once per chip process at start; read-only afterwards.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/distributed/processes/child_port.h"
#include "common/distributed/processes/group_barrier.h"
#include "common/distributed/graph/task_result.h"
#include "tierflow/kernel.h"

namespace tierflow {

class NativeKernelTable {
 public:
  NativeKernelTable() = default;
  NativeKernelTable(const NativeKernelTable&) = delete;
  NativeKernelTable& operator=(const NativeKernelTable&) = delete;

  // dlopen()s `path` (once per path) and resolves `symbol` for callable id
  // `callable`. Throws std::invalid_argument naming the path and symbol.
  void add(uint32_t callable, const std::string& path, const std::string& symbol);
  tf_kernel_fn find(uint32_t callable) const {
    return callable < fns_.size() ? fns_[callable] : nullptr;
  }

  // Runs one request on this chip. A non-zero return is a failure whose
  // message names the code and the kernel's tf_chip.set_error text.
  // `bases[k]`: the arena of space k in this process (see TensorDesc::space).
  static TaskResult run(tf_kernel_fn fn, const Request& req, char* const* bases, int32_t chip_id,
                        GroupBarrier* barrier);

 private:
  std::vector<tf_kernel_fn> fns_;
};

}  // namespace tierflow
