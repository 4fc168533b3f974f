// TaskArgs: the tensors and scalars of one task (or one group member), and
// their encoding into a mailbox payload. The encoding is flat POD: a count
// header, then TensorDesc records, then Scalar records; it contains arena
// offsets only, so it means the same thing in every process.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/distributed/graph/tensor_desc.h"

namespace tierflow {

struct TaskArgs {
  std::vector<TensorDesc> tensors;
  std::vector<Scalar> scalars;

  size_t encoded_size() const;
  // Writes the encoding into buf; returns bytes written, or 0 if it does not fit.
  size_t encode(char* buf, size_t cap) const;
  // Parses an encoding produced by encode(); throws std::runtime_error if corrupt.
  static TaskArgs decode(const char* buf, size_t len);
};

}  // namespace tierflow
