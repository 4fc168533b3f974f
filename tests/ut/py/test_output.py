"""Children's stdout/stderr (contract section 1, output=): "prefix" puts
each line on the parent's stderr as "[sub 0] ...", a directory gets one log
file per child, "inherit" passes the parent's descriptors through."""
import os
import subprocess
import sys
import textwrap

import pytest

import tierflow as tf


def say(args):
    print("hello")
    print(f"sub line {args.scalar(0)}", file=sys.stderr)


def ksay(args, chip):
    print(f"kernel hello from {chip.chip_id}")


def make(worker_factory, output, chips=1, subs=1):
    w = worker_factory(chips=chips, sub_workers=subs, output=output)
    w.h = {"say": w.register_sub(say), "ksay": w.register_kernel(ksay)}
    w.init()
    return w


@pytest.mark.timeout(60)
def test_prefix_lines_reach_the_parent_stderr(worker_factory, capfd):
    w = make(worker_factory, "prefix")
    w.submit_sub(w.h["say"], tf.TaskArgs().scalar(7))
    w.submit_next_level(w.h["ksay"], worker=0)
    w.drain(timeout=30)
    w.close()  # every line is delivered by the time close() returns
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert "[sub 0] hello" in lines
    assert "[sub 0] sub line 7" in lines
    assert "[chip 0] kernel hello from 0" in lines
    assert "hello" not in out


@pytest.mark.timeout(60)
def test_prefix_is_the_default(worker_factory, capfd):
    w = worker_factory(sub_workers=1)
    h = w.register_sub(say)
    w.init()
    w.submit_sub(h, tf.TaskArgs().scalar(1))
    w.drain(timeout=30)
    w.close()
    assert "[sub 0] hello" in capfd.readouterr().err.splitlines()


@pytest.mark.timeout(60)
def test_prefix_names_each_sub_worker(worker_factory, capfd):
    w = worker_factory(sub_workers=3)

    @w.sub
    def who(args):
        print("who", args.scalar(0))

    w.init()
    for i in range(30):
        w.submit_sub(who, tf.TaskArgs().scalar(i))
    w.drain(timeout=30)
    w.close()
    lines = [line for line in capfd.readouterr().err.splitlines() if " who " in line]
    assert len(lines) == 30
    assert all(line[:7] in ("[sub 0]", "[sub 1]", "[sub 2]") for line in lines), lines
    assert sorted(int(line.rsplit(" ", 1)[1]) for line in lines) == list(range(30))


@pytest.mark.timeout(60)
def test_directory_gets_one_log_file_per_child(worker_factory, tmp_path, capfd):
    logs = tmp_path / "logs"
    w = make(worker_factory, str(logs), chips=2, subs=1)
    w.submit_sub(w.h["say"], tf.TaskArgs().scalar(3))
    w.submit_next_level(w.h["ksay"], worker=0)
    w.submit_next_level(w.h["ksay"], worker=1)
    w.drain(timeout=30)
    w.close()
    assert sorted(os.listdir(logs)) == ["chip-0.log", "chip-1.log", "sub-0.log"]
    sub_log = (logs / "sub-0.log").read_text().splitlines()
    assert "hello" in sub_log and "sub line 3" in sub_log
    assert "kernel hello from 0" in (logs / "chip-0.log").read_text().splitlines()
    assert "kernel hello from 1" in (logs / "chip-1.log").read_text().splitlines()
    out, err = capfd.readouterr()
    assert "hello" not in out + err


@pytest.mark.timeout(60)
def test_directory_accepts_a_path_object(worker_factory, tmp_path):
    w = make(worker_factory, tmp_path, chips=0, subs=1)
    w.submit_sub(w.h["say"], tf.TaskArgs().scalar(4))
    w.drain(timeout=30)
    w.close()
    assert "hello" in (tmp_path / "sub-0.log").read_text()


@pytest.mark.timeout(60)
def test_inherit_writes_to_the_parent_descriptors(worker_factory, capfd):
    w = make(worker_factory, "inherit")
    w.submit_sub(w.h["say"], tf.TaskArgs().scalar(9))
    w.submit_next_level(w.h["ksay"])
    w.drain(timeout=30)
    w.close()
    out, err = capfd.readouterr()
    # Whole lines are not promised in this mode (children share the fds).
    assert out.count("hello") == 2 and "kernel hello from 0" in out
    assert "sub line 9" in err
    assert "[sub" not in out + err and "[chip" not in out + err


SCRIPT = textwrap.dedent("""
    import sys
    import tierflow as tf
    w = tf.Worker(level=3, chips=1, sub_workers=1, output=sys.argv[1])
    @w.sub
    def hello(args):
        print("hello")
    @w.kernel
    def khello(args, chip):
        print("hello from the chip")
    with w:
        w.submit_sub(hello)
        w.submit_next_level(khello)
        w.drain()
    print("parent done")
""")


@pytest.mark.timeout(120)
def test_prefix_in_a_fresh_interpreter():
    p = subprocess.run([sys.executable, "-c", SCRIPT, "prefix"], capture_output=True, text=True, timeout=100)
    assert p.returncode == 0, p.stderr
    assert "[sub 0] hello" in p.stderr.splitlines()
    assert "[chip 0] hello from the chip" in p.stderr.splitlines()
    assert p.stdout.splitlines() == ["parent done"]


@pytest.mark.timeout(120)
def test_inherit_in_a_fresh_interpreter():
    p = subprocess.run([sys.executable, "-c", SCRIPT, "inherit"], capture_output=True, text=True, timeout=100)
    assert p.returncode == 0, p.stderr
    # "inherit" promises the descriptors, not whole lines: two children may
    # interleave their writes, so count the text instead of comparing lines.
    assert p.stdout.count("hello") == 2 and p.stdout.count("hello from the chip") == 1
    assert p.stdout.endswith("parent done\n") and "[sub" not in p.stdout + p.stderr
