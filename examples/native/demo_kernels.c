/*
 * Example native chip kernels written against tierflow's C ABI
 * (tierflow/kernel.h). The tests and the benchmarks use them; build your own
 * the same way:  cc -shared -fPIC -I$(python -c "import tierflow; print(tierflow.get_include())") ...
 */
#include <stddef.h>
#include <stdint.h>

#include "tierflow/kernel.h"

/* Number of elements of a C-contiguous tensor, or -1 if it is not contiguous. */
static int64_t contiguous_count(const tf_tensor* t) {
  int64_t n = 1, expect = t->dtype_bits / 8;
  for (int d = t->ndim - 1; d >= 0; --d) {
    if (t->shape[d] != 1 && t->strides[d] != expect) return -1;
    expect *= t->shape[d];
    n *= t->shape[d];
  }
  return n;
}

/* Checks the tensor count and dtype, and (when `contiguous`) that every
   tensor is C-contiguous. */
static int check_tensors(const tf_chip* chip, const tf_args* a, int tensors, int code, int bits, int contiguous) {
  if (a->num_tensors < tensors) {
    chip->set_error(chip, "too few tensors");
    return 22;
  }
  for (int i = 0; i < a->num_tensors; ++i) {
    if (a->tensors[i].dtype_code != code || a->tensors[i].dtype_bits != bits) {
      chip->set_error(chip, "unexpected dtype");
      return 22;
    }
    if (contiguous && contiguous_count(&a->tensors[i]) < 0) {
      chip->set_error(chip, "tensor is not contiguous");
      return 22;
    }
  }
  return 0;
}

static int check(const tf_chip* chip, const tf_args* a, int tensors, int code, int bits) {
  return check_tensors(chip, a, tensors, code, bits, 1);
}

int tf_noop(const tf_args* args, const tf_chip* chip) {
  (void)args;
  (void)chip;
  return 0;
}

/* tensor 0 (int64, inout) += 1 */
int tf_add_one_i64(const tf_args* a, const tf_chip* chip) {
  int rc = check(chip, a, 1, TF_INT, 64);
  if (rc) return rc;
  int64_t* x = (int64_t*)a->tensors[0].data;
  int64_t n = contiguous_count(&a->tensors[0]);
  for (int64_t i = 0; i < n; ++i) x[i] += 1;
  return 0;
}

/* tensor 0 (float32, output) = scalar 0 */
int tf_fill_f32(const tf_args* a, const tf_chip* chip) {
  int rc = check(chip, a, 1, TF_FLOAT, 32);
  if (rc) return rc;
  float v = (float)a->scalars[0].f;
  float* x = (float*)a->tensors[0].data;
  int64_t n = contiguous_count(&a->tensors[0]);
  for (int64_t i = 0; i < n; ++i) x[i] = v;
  return 0;
}

/* last tensor (float32, output) = sum of the others (float32, input) */
int tf_sum_f32(const tf_args* a, const tf_chip* chip) {
  int rc = check(chip, a, 2, TF_FLOAT, 32);
  if (rc) return rc;
  const tf_tensor* out = &a->tensors[a->num_tensors - 1];
  float* y = (float*)out->data;
  int64_t n = contiguous_count(out);
  for (int64_t i = 0; i < n; ++i) y[i] = 0.0f;
  for (int k = 0; k + 1 < a->num_tensors; ++k) {
    const float* x = (const float*)a->tensors[k].data;
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
  }
  return 0;
}

/* W4 diamond steps on element 0 of int64 tensors (any strides: W4c passes
   columns of one matrix). */
int tf_set_i64(const tf_args* a, const tf_chip* chip) { /* out = s0 */
  int rc = check_tensors(chip, a, 1, TF_INT, 64, 0);
  if (rc) return rc;
  *(int64_t*)a->tensors[0].data = a->scalars[0].i;
  return 0;
}

int tf_axpb_i64(const tf_args* a, const tf_chip* chip) { /* out = in * s0 + s1 */
  int rc = check_tensors(chip, a, 2, TF_INT, 64, 0);
  if (rc) return rc;
  *(int64_t*)a->tensors[1].data = *(const int64_t*)a->tensors[0].data * a->scalars[0].i + a->scalars[1].i;
  return 0;
}

int tf_add2_i64(const tf_args* a, const tf_chip* chip) { /* out = in0 + in1 */
  int rc = check_tensors(chip, a, 3, TF_INT, 64, 0);
  if (rc) return rc;
  *(int64_t*)a->tensors[2].data = *(const int64_t*)a->tensors[0].data + *(const int64_t*)a->tensors[1].data;
  return 0;
}

/* Group allreduce: tensor 0 (float64, input) is this member's block;
   tensor 1 (float64[group_size], inout) the partials; tensor 2
   (float64[group_size], inout) receives the total at [rank]. */
int tf_allreduce_f64(const tf_args* a, const tf_chip* chip) {
  int rc = check(chip, a, 3, TF_FLOAT, 64);
  if (rc) return rc;
  const double* block = (const double*)a->tensors[0].data;
  double* partials = (double*)a->tensors[1].data;
  double* total = (double*)a->tensors[2].data;
  int64_t n = contiguous_count(&a->tensors[0]);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += block[i];
  partials[chip->group_rank] = s;
  if (chip->barrier(chip) != 0) return 5;
  double t = 0;
  for (int r = 0; r < chip->group_size; ++r) t += partials[r];
  total[chip->group_rank] = t;
  return chip->barrier(chip) != 0 ? 5 : 0;
}

/* Always fails, with a message. */
int tf_fail(const tf_args* a, const tf_chip* chip) {
  (void)a;
  chip->set_error(chip, "deliberate failure");
  return 7;
}
