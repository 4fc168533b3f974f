"""Soak: a million no-op tasks streamed through a small window. The parent's
memory must not grow with the number of tasks run."""
import os

import pytest

import tierflow as tf


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.timeout(600)
def test_one_million_tasks_rss_growth_under_50_mib():
    w = tf.Worker(level=3, sub_workers=2, window=256)

    @w.sub
    def noop(args):
        pass

    with w:
        args = tf.TaskArgs()
        marks = {}
        for i in range(1, 1_000_001):
            w.submit_sub(noop, args)
            if i in (100_000, 1_000_000):
                marks[i] = rss_bytes()
        w.drain()
        stats = w.stats()
    growth = marks[1_000_000] - marks[100_000]
    print(f"soak: RSS at 100k tasks {marks[100_000] / 2**20:.1f} MiB, at 1M {marks[1_000_000] / 2**20:.1f} MiB, "
          f"growth {growth / 2**20:.2f} MiB")
    assert stats["completed"] == 1_000_000 and stats["failed"] == 0
    assert growth < 50 * 2**20
