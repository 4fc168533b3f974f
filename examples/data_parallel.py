"""Data parallel across level-3 Workers, tensor parallel inside each.

One level-4 Worker drives two level-3 Workers, each with two chips; each
level-3 Worker runs in its own child process and initialises its own chips
there. The batch X (rows) is split in two: level-3 Worker i gets rows
X[i] — data parallelism. Inside it, the orch function splits the weight W
by columns over its two chips — tensor parallelism: chip j computes
Y[i][:, j] = X[i] @ W[:, j], then a group task over both chips allreduces the
per-chip sums of squares with chip.barrier(), so each level-3 Worker knows
the squared norm of its Y[i].

Every tensor lives in the level-4 arena and is seen zero-copy by both
levels below: the orch function passes views of what it was given on to its
chips. A level-4 sub-worker checks the result against numpy; the check
waits for both orch tasks because it reads what they wrote.

    python examples/data_parallel.py [--trace run.json]

With --trace, the run's timeline (every level's workers) is written there;
`python -m tierflow trace summary run.json` and `... trace plot run.json -o
run.png` read it (docs/observability.md).
"""
import sys

import numpy as np

import tierflow as tf

ROWS, K, M = 128, 64, 96   # per level-3 Worker: X[i] is ROWS x K, W is K x M


def matmul_block(args, chip):
    x, w, y = args.tensor(0), args.tensor(1), args.tensor(2)
    np.matmul(x, w, out=y)


def allreduce_sumsq(args, chip):
    block, partials, total = args.tensor(0), args.tensor(1), args.tensor(2)
    partials[chip.group_rank] = float(np.square(block, dtype=np.float64).sum())
    chip.barrier()                       # both chips have published their partial
    if chip.group_rank == 0:
        total[0] = partials.sum()
    chip.barrier()


templates = [tf.Worker(level=3, chips=2) for _ in range(2)]
handles = [(t.register_kernel(matmul_block), t.register_kernel(allreduce_sumsq)) for t in templates]
# Both templates registered the same kernels in the same order, so the first
# one's handles are valid on either (see docs/api.md, "Levels above 3").
k_matmul, k_allreduce = handles[0]

TRACE = sys.argv[sys.argv.index("--trace") + 1] if "--trace" in sys.argv[:-1] else None
w4 = tf.Worker(level=4, sub_workers=1, trace=TRACE)
for t in templates:
    w4.add_worker(t)


@w4.orch
def forward(orch, args):
    """Runs on one level-3 Worker: its rows of the batch, W split over 2 chips."""
    x, w, y, partials, total = (args.tensor(i) for i in range(5))
    half = w.shape[1] // 2
    cols = [slice(0, half), slice(half, w.shape[1])]
    for j, c in enumerate(cols):
        orch.submit_next_level(k_matmul, tf.TaskArgs().input(x).input(w[:, c]).output(y[:, c]), worker=j)
    orch.submit_group(k_allreduce, [tf.TaskArgs().input(y[:, c]).inout(partials).inout(total) for c in cols])


@w4.sub
def check(args):
    x, w, y, total = (args.tensor(i) for i in range(4))
    expected = x.astype(np.float64) @ w.astype(np.float64)
    ok = np.allclose(y, expected, rtol=1e-4, atol=1e-3)
    for i in range(2):
        rows = slice(i * ROWS, (i + 1) * ROWS)
        ok = ok and np.isclose(total[i], np.square(expected[rows]).sum(), rtol=1e-4)
    args.tensor(4)[0] = 1 if ok else 0
    print(f"check: max |Y - X@W| = {np.abs(y - expected).max():.2e}, squared norms {total[0]:.1f} {total[1]:.1f}")


def main() -> int:
    rng = np.random.default_rng(0)
    with w4:
        x = w4.share(rng.standard_normal((2 * ROWS, K), dtype=np.float32))
        w = w4.share(rng.standard_normal((K, M), dtype=np.float32))
        y = w4.alloc((2 * ROWS, M), np.float32)
        partials = w4.zeros((2, 2), np.float64)
        total = w4.zeros(2, np.float64)
        verdict = w4.alloc(1, np.int32)
        for i in range(2):                      # data parallel: one level-3 Worker per half of the batch
            rows = slice(i * ROWS, (i + 1) * ROWS)
            w4.submit_next_level(forward, tf.TaskArgs().input(x[rows]).input(w).output(y[rows])
                                 .inout(partials[i]).inout(total[i:i + 1]), worker=i)
        w4.submit_sub(check, tf.TaskArgs().input(x).input(w).input(y).input(total).output(verdict))
        w4.drain()
        ok = bool(verdict[0] == 1)
        per = w4.stats()["tasks_per_worker"]
    print("data_parallel:", "OK" if ok else "MISMATCH", f"(orch tasks: l3 0 ran {per['l3 0']}, l3 1 ran {per['l3 1']})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
