/*
 * tierflow native chip kernels: the C ABI.
 *
 * A kernel is a C function in a shared library:
 *
 *     int my_kernel(const tf_args* args, const tf_chip* chip);
 *
 * registered with w.register_kernel(tf.NativeKernel("libmine.so", "my_kernel")).
 * Each chip process dlopen()s the library once when it starts and calls the
 * function for every task, without entering Python. Return 0 for success;
 * any other value fails the task (kind "exception") with that code and the
 * message set with chip->set_error(), if any.
 *
 * Tensor data pointers are valid in the chip's address space for the
 * duration of the call. Inputs must not be written.
 */
#ifndef TIERFLOW_KERNEL_H
#define TIERFLOW_KERNEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TF_ABI_VERSION 1
#define TF_MAX_DIMS 8

/* DLPack type codes. */
enum tf_dtype_code { TF_INT = 0, TF_UINT = 1, TF_FLOAT = 2, TF_BFLOAT = 4, TF_COMPLEX = 5, TF_BOOL = 6 };
/* Access tags: TF_INOUT == TF_INPUT | TF_OUTPUT. */
enum tf_tag { TF_INPUT = 1, TF_OUTPUT = 2, TF_INOUT = 3, TF_NO_DEP = 4 };

typedef struct tf_tensor {
  void* data;           /* element [0, ..., 0] */
  uint8_t dtype_code;   /* enum tf_dtype_code */
  uint8_t dtype_bits;   /* 32 for float32 */
  uint8_t tag;          /* enum tf_tag */
  uint8_t ndim;
  int64_t shape[TF_MAX_DIMS];
  int64_t strides[TF_MAX_DIMS]; /* in bytes */
} tf_tensor;

typedef struct tf_scalar {
  int32_t is_float; /* 0: use .i, 1: use .f */
  int32_t reserved;
  int64_t i;
  double f;
} tf_scalar;

typedef struct tf_args {
  int32_t num_tensors;
  int32_t num_scalars;
  const tf_tensor* tensors;
  const tf_scalar* scalars;
} tf_args;

typedef struct tf_chip tf_chip;
struct tf_chip {
  int32_t chip_id;
  int32_t group_rank;
  int32_t group_size;
  int32_t abi_version; /* TF_ABI_VERSION */
  /* Waits for every member of the group; returns 0, or -1 if the barrier
     was broken because another member failed or died (then return non-zero). */
  int (*barrier)(const tf_chip* chip);
  /* Sets the message reported when the kernel returns non-zero. */
  void (*set_error)(const tf_chip* chip, const char* message);
  void* impl; /* private to tierflow */
};

typedef int (*tf_kernel_fn)(const tf_args* args, const tf_chip* chip);

#ifdef __cplusplus
}
#endif

#endif /* TIERFLOW_KERNEL_H */
