"""Native chip kernels through the C ABI (tierflow/kernel.h)."""
import os
import shutil
import subprocess

import numpy as np
import pytest

import tierflow as tf
from tierflow.native import demo_kernels_path

LIB = demo_kernels_path()


def test_header_is_shipped():
    assert os.path.isfile(os.path.join(tf.get_include(), "tierflow", "kernel.h"))


def test_missing_library_or_symbol_fails_at_registration_naming_both():
    with pytest.raises(FileNotFoundError, match="no_such_lib.so"):
        tf.NativeKernel("/tmp/no_such_lib.so", "k")
    with pytest.raises(ValueError, match="'no_such_symbol'.*_demo_kernels.so"):
        tf.NativeKernel(LIB, "no_such_symbol")


@pytest.mark.timeout(60)
def test_group_allreduce_in_c_on_four_chips():
    w = tf.Worker(level=3, chips=4, window=16)
    ar = w.register_kernel(tf.NativeKernel(LIB, "tf_allreduce_f64"))
    with w:
        blocks = [w.share(np.arange(10, dtype=np.float64) * (r + 1)) for r in range(4)]
        partials, total = w.alloc(4, np.float64), w.alloc(4, np.float64)
        w.submit_group(ar, [tf.TaskArgs().input(blocks[r]).inout(partials).inout(total) for r in range(4)])
        w.drain()
        assert np.array_equal(partials, [45.0 * (r + 1) for r in range(4)])
        assert np.array_equal(total, [450.0] * 4)


@pytest.mark.timeout(60)
def test_chain_of_native_kernels_and_python_kernels_mix():
    w = tf.Worker(level=3, chips=2, window=8)
    add1 = w.register_kernel(tf.NativeKernel(LIB, "tf_add_one_i64"))

    @w.kernel
    def times2(args, chip):
        args.tensor(0)[...] *= 2

    with w:
        x = w.alloc(8, np.int64)
        x[:] = 0
        for i in range(60):
            w.submit_next_level(add1 if i % 3 else times2, tf.TaskArgs().inout(x))
        w.drain()
    expected = 0
    for i in range(60):
        expected = expected + 1 if i % 3 else expected * 2
    assert np.all(x == expected)


@pytest.mark.timeout(60)
def test_nonzero_return_fails_with_code_and_message():
    w = tf.Worker(level=3, chips=1, window=8)
    fail = w.register_kernel(tf.NativeKernel(LIB, "tf_fail"))
    with w:
        out = w.alloc(1, np.int64)
        err = w.submit_next_level(fail, tf.TaskArgs().output(out)).exception(timeout=10)
        f = err.failures[0]
        assert f.kind == "exception" and "returned 7" in f.message and "deliberate failure" in f.message
        assert isinstance(err.__cause__, tf.NativeKernelError) and "returned 7" in str(err.__cause__)
        dep = w.submit_next_level(fail, tf.TaskArgs().input(out)).exception(timeout=10)
        assert dep.failures[0].kind == "dependency_failed"
        assert isinstance(dep.__cause__, tf.NativeKernelError), "a dependent carries the root's cause"
        with pytest.raises(tf.TaskError):
            w.drain()


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_a_user_library_built_against_get_include(tmp_path):
    src = tmp_path / "mine.c"
    src.write_text(
        '#include "tierflow/kernel.h"\n'
        "int scale(const tf_args* a, const tf_chip* c) {\n"
        "  double* x = (double*)a->tensors[0].data;\n"
        "  for (int64_t i = 0; i < a->tensors[0].shape[0]; ++i) x[i] *= a->scalars[0].f + c->chip_id;\n"
        "  return 0;\n}\n")
    lib = tmp_path / "libmine.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-I", tf.get_include(), str(src), "-o", str(lib)], check=True)
    w = tf.Worker(level=3, chips=2, window=8)
    k = w.register_kernel(tf.NativeKernel(str(lib), "scale"))
    with w:
        x = w.share(np.ones(5))
        w.submit_next_level(k, tf.TaskArgs().inout(x).scalar(2.5), worker=1)
        w.drain()
    assert np.all(x == 3.5)
