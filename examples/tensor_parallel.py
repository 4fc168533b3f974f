"""Tensor parallelism on simulated chips.

C = A @ B is split by columns over 4 chips: chip i computes its column block
C[:, i] = A @ B[:, i] (a directed task per chip). A group task then runs on all
4 chips at once and allreduces a partial statistic (each chip's block sum)
with chip.barrier(): every chip publishes its partial, meets the others, and
reads the total. Finally a sub-worker checks the result against numpy.

The engine infers all dependencies: the allreduce waits for the four matmul
blocks because it reads what they wrote, and the check waits for both. The
blocks themselves run at the same time: C[:, i] are strided views of one
matrix whose spans overlap, but the engine tracks the bytes a view actually
touches, and no two column blocks share one.
"""
import sys

import numpy as np

import tierflow as tf

CHIPS = 4
N, K, M = 256, 128, 64 * CHIPS

w = tf.Worker(level=3, chips=CHIPS, sub_workers=1, window=64)


@w.kernel
def matmul_block(args, chip):
    a, b, c = args.tensor(0), args.tensor(1), args.tensor(2)
    np.matmul(a, b, out=c)


@w.kernel
def allreduce_sum(args, chip):
    block, partials, total = args.tensor(0), args.tensor(1), args.tensor(2)
    partials[chip.group_rank] = block.sum()   # publish my partial
    chip.barrier()                            # everyone has published
    total[chip.group_rank] = partials.sum()   # every rank holds the reduced value
    chip.barrier()


@w.sub
def check(args):
    a, b, c, total = (args.tensor(i) for i in range(4))
    expected = a.astype(np.float64) @ b.astype(np.float64)
    ok = np.allclose(c, expected, rtol=1e-4, atol=1e-3) and np.allclose(total, expected.sum(), rtol=1e-4)
    args.tensor(4)[0] = 1 if ok else 0
    print(f"check: max |C - A@B| = {np.abs(c - expected).max():.2e}, allreduce total = {total[0]:.4f}")


def main() -> int:
    rng = np.random.default_rng(0)
    with w:
        a = w.share(rng.standard_normal((N, K), dtype=np.float32))
        b = w.share(rng.standard_normal((K, M), dtype=np.float32))
        c = w.alloc((N, M), np.float32)
        partials = w.alloc(CHIPS, np.float64)
        total = w.alloc(CHIPS, np.float64)
        verdict = w.alloc(1, np.int32)
        cols = M // CHIPS

        with w.scope():
            # Four independent tasks: disjoint column blocks of c.
            for i in range(CHIPS):
                blk = slice(i * cols, (i + 1) * cols)
                w.submit_next_level(matmul_block, tf.TaskArgs().input(a).input(b[:, blk]).output(c[:, blk]),
                                    worker=i)
            w.submit_group(allreduce_sum, [
                tf.TaskArgs().input(c[:, i * cols:(i + 1) * cols]).inout(partials).inout(total)
                for i in range(CHIPS)
            ])
            w.submit_sub(check, tf.TaskArgs().input(a).input(b).input(c).input(total).output(verdict))
        w.drain()
        ok = bool(verdict[0] == 1)
    print("tensor_parallel:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
