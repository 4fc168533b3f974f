"""Children's stdout/stderr in the three output modes, from a subprocess so
the parent's real file descriptors are observed."""
import os
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

SCRIPT = textwrap.dedent("""
    import ctypes, os, sys
    import tierflow as tf
    mode = sys.argv[1]
    w = tf.Worker(level=3, chips=2, sub_workers=4, output=mode)
    libc = ctypes.CDLL(None)
    @w.sub
    def chatty(args):
        n = args.scalar(0)
        tag = args.scalar(1)
        for i in range(n):
            print(f"py {tag} {i} " + "x" * (i % 50))
        os.write(1, b"raw-fd1 %d\\n" % tag)
        libc.printf(b"c-printf %d\\n", ctypes.c_int(tag))
        libc.fflush(None)
        sys.stderr.write(f"err {tag}\\n")
    @w.kernel
    def chip_says(args, chip):
        print(f"kernel on chip {chip.chip_id}")
        sys.stdout.write("partial-no-newline")
    with w:
        for tag in range(4):
            w.submit_sub(chatty, tf.TaskArgs().scalar(int(sys.argv[2])).scalar(tag))
        w.submit_next_level(chip_says, worker=1)
        w.drain()
    print("parent done", flush=True)
""")


def run(mode, lines):
    return subprocess.run([sys.executable, "-c", SCRIPT, mode, str(lines)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.timeout(180)
def test_prefix_mode_delivers_every_line_once_with_its_prefix():
    n = 10000
    p = run("prefix", n)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "parent done" in p.stdout
    lines = p.stderr.splitlines()
    py = Counter()
    printer = {}
    for line in lines:
        assert line.startswith(("[sub 0] ", "[sub 1] ", "[sub 2] ", "[sub 3] ", "[chip 1] ")), line
        body = line.split("] ", 1)[1]
        if body.startswith("py "):
            _, tag, i, *rest = body.split(" ")
            assert (rest[0] if rest else "") == "x" * (int(i) % 50), line  # never cut mid-line
            py[(int(tag), int(i))] += 1
            printer.setdefault(int(tag), set()).add(line.split("]", 1)[0])
    assert len(py) == 4 * n and set(py.values()) == {1}
    # Four children printed at once, each task's lines from one child.
    assert all(len(p) == 1 for p in printer.values()) and len(set.union(*printer.values())) == 4
    for tag in range(4):
        for what in (f"raw-fd1 {tag}", f"c-printf {tag}", f"err {tag}"):
            assert sum(1 for line in lines if line.endswith("] " + what)) == 1, what
    assert "[chip 1] kernel on chip 1" in lines
    assert "[chip 1] partial-no-newline" in lines


@pytest.mark.timeout(120)
def test_directory_mode_writes_one_log_per_child(tmp_path):
    logs = tmp_path / "logs"
    p = run(str(logs), 3)
    assert p.returncode == 0, p.stderr[-2000:]
    files = sorted(os.listdir(logs))
    assert files == ["chip-0.log", "chip-1.log", "sub-0.log", "sub-1.log", "sub-2.log", "sub-3.log"]
    subs = "".join((logs / f"sub-{i}.log").read_text() for i in range(4))
    for tag in range(4):
        assert f"py {tag} 2 xx" in subs and f"c-printf {tag}" in subs and f"err {tag}" in subs
    assert "kernel on chip 1" in (logs / "chip-1.log").read_text()
    assert "[sub" not in p.stderr


@pytest.mark.timeout(120)
def test_inherit_mode_writes_to_the_parent_descriptors_unchanged():
    p = run("inherit", 2)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "py 3 1 x" in p.stdout and "c-printf 2" in p.stdout and "raw-fd1 0" in p.stdout
    assert "err 1" in p.stderr
    assert "[sub" not in p.stdout + p.stderr
