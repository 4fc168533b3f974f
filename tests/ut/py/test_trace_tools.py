"""The trace tools (`tierflow trace summary|plot`, tierflow.trace): on a
synthetic trace whose numbers are worked out by hand below, written both as
.json and .json.gz, through the python API and the command line; malformed
files give a message or a counted warning, never a traceback.

The synthetic run, in ms from its start (T0), on 2 processes x 2 threads:

  (1,1) top › sub 0    A load [0,10]   E load [40,45]  flaky#0 failed [46,47]  flaky#1 [47.5,48.5]
  (1,2) top › sub 1    B left [12,30]  H solo [36,56]
  (2,1) l3 › chip 0    C right [11,16] F step [50,52]  G step [52,54]   (F and G touch)
  (2,2) l3 › chip 1    D join [31,35]  I step [55,60]

  dependencies: a diamond A->B, A->C, B->D, C->D and a chain E->F->G->I.
  span 60 ms; the critical path is A B D = 10 + 18 + 4 = 32 ms (the chain
  is 14 ms, the lone H 20 ms).
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

import pytest

import tierflow.trace as tt

T0 = 5_000_000.0          # µs: the clock does not start at zero
TRACKS = {(1, 1): "sub 0", (1, 2): "sub 1", (2, 1): "chip 0", (2, 2): "chip 1"}
PROCESSES = {1: "worker-test (level 4)", 2: "l3 0 (level 3)"}
# task id, name, callable, (pid, tid), start ms, end ms, attempt, outcome
SLICES = [
    (1, "A", "load", (1, 1), 0.0, 10.0, 1, "completed"),
    (5, "E", "load", (1, 1), 40.0, 45.0, 1, "completed"),
    (9, "retry", "flaky", (1, 1), 46.0, 47.0, 1, "failed"),
    (9, "retry", "flaky", (1, 1), 47.5, 48.5, 2, "completed"),
    (2, "B", "left", (1, 2), 12.0, 30.0, 1, "completed"),
    (8, "H", "solo", (1, 2), 36.0, 56.0, 1, "completed"),
    (3, "C", "right", (2, 1), 11.0, 16.0, 1, "completed"),
    (6, "F", "step", (2, 1), 50.0, 52.0, 1, "completed"),
    (7, "G", "step", (2, 1), 52.0, 54.0, 1, "completed"),
    (4, "D", "join", (2, 2), 31.0, 35.0, 1, "completed"),
    (10, "I", "step", (2, 2), 55.0, 60.0, 1, "completed"),
]
EDGES = [(1, 2), (1, 3), (2, 4), (3, 4), (5, 6), (6, 7), (7, 10)]


def us(ms):
    return T0 + ms * 1000.0


def build(edges=EDGES, extra=(), touching_points=True):
    """The trace document. Flow points sit 1 µs inside the slices, except
    F->G, whose points lie exactly on the boundary where F ends and G starts
    (touching_points): the start must go to F, the finish to G."""
    ev = []
    for pid, label in PROCESSES.items():
        ev.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": label}})
        ev.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
    for (pid, tid), name in TRACKS.items():
        ev.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
        ev.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    by_task = {}
    for task, name, call, (pid, tid), t0, t1, attempt, outcome in SLICES:
        ev.append({"ph": "X", "name": name, "cat": "task", "pid": pid, "tid": tid, "ts": us(t0),
                   "dur": (t1 - t0) * 1000.0,
                   "args": {"task": task, "session": "default", "callable": call, "bytes": 4096,
                            "outcome": outcome, "attempt": attempt}})
        by_task[task] = ((pid, tid), t0, t1)
    for e, (p, c) in enumerate(edges, start=1):
        (pp, pt), _, p_end = by_task[p]
        (cp, ct), c_start, _ = by_task[c]
        exact = touching_points and (p, c) == (6, 7)
        ev.append({"ph": "s", "id": e, "cat": "dependency", "name": "dependency", "pid": pp, "tid": pt,
                   "ts": us(p_end) - (0.0 if exact else 1.0)})
        ev.append({"ph": "f", "bp": "e", "id": e, "cat": "dependency", "name": "dependency", "pid": cp,
                   "tid": ct, "ts": us(c_start) + (0.0 if exact else 1.0)})
    ev.extend(extra)
    ev.reverse()      # the file order must not matter (finishes before their starts)
    return {"traceEvents": ev, "displayTimeUnit": "ms",
            "otherData": {"tierflow": "0.1.0", "worker": "worker-test", "clock": "CLOCK_MONOTONIC", "dropped": 0}}


def write(path, doc, lines=False):
    """As one line (json.dumps), or (lines) one event per line as the
    Worker writes it."""
    if lines:
        rest = {k: v for k, v in doc.items() if k != "traceEvents"}
        data = ('{"traceEvents":[\n' + ",\n".join(json.dumps(e, separators=(",", ":")) for e in doc["traceEvents"])
                + "\n]," + json.dumps(rest)[1:] + "\n").encode()
    else:
        data = json.dumps(doc).encode()
    with (gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb")) as f:
        f.write(data)
    return str(path)


def cli(*args, env=None):
    """`python -m tierflow trace ARGS` from outside the source tree (the
    installed package is the one tested)."""
    return subprocess.run([sys.executable, "-m", "tierflow", "trace", *args], capture_output=True, text=True,
                          timeout=60, cwd=tempfile.gettempdir(), env=env)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("trace")
    doc = build()
    return {"json": write(d / "run.json", doc), "gz": write(d / "run.json.gz", doc), "dir": d}


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("kind", ["json", "gz"])
def test_summary_numbers(files, kind):
    s = tt.summarize(tt.load(files[kind]))
    assert s["slices"] == 11 and s["dependencies"] == 7 and s["warnings"] == {}
    assert s["worker"] == "worker-test" and s["dropped"] == 0
    assert s["span_ms"] == approx(60.0)
    assert s["busy_s"] == approx(0.073)
    assert s["outcomes"] == {"completed": 10, "failed": 1}

    calls = [(c["callable"], c["count"], c["total_ms"], c["mean_ms"], c["p50_ms"], c["p99_ms"])
             for c in s["callables"]]
    assert calls == [
        ("solo", 1, approx(20.0), approx(20.0), approx(20.0), approx(20.0)),
        ("left", 1, approx(18.0), approx(18.0), approx(18.0), approx(18.0)),
        ("load", 2, approx(15.0), approx(7.5), approx(5.0), approx(10.0)),     # nearest rank
        ("step", 3, approx(9.0), approx(3.0), approx(2.0), approx(5.0)),
        ("right", 1, approx(5.0), approx(5.0), approx(5.0), approx(5.0)),
        ("join", 1, approx(4.0), approx(4.0), approx(4.0), approx(4.0)),
        ("flaky", 2, approx(2.0), approx(1.0), approx(1.0), approx(1.0)),
    ]

    tracks = [(t["track"], t["slices"], t["busy_s"], t["utilisation"], t["gaps"], t["idle_s"], t["longest_gap_ms"])
              for t in s["tracks"]]
    assert tracks == [
        # gaps 30 (counted), exactly 1 (not longer than 1 ms), 0.5
        ("worker-test (level 4) \u203a sub 0", 4, approx(0.017), approx(17 / 60), 1, approx(0.030), approx(30.0)),
        ("worker-test (level 4) \u203a sub 1", 2, approx(0.038), approx(38 / 60), 1, approx(0.006), approx(6.0)),
        ("l3 0 (level 3) \u203a chip 0", 3, approx(0.009), approx(9 / 60), 1, approx(0.034), approx(34.0)),
        ("l3 0 (level 3) \u203a chip 1", 2, approx(0.009), approx(9 / 60), 1, approx(0.020), approx(20.0)),
    ]

    cp = s["critical_path"]
    assert cp["tasks"] == [1, 2, 4] and cp["n_links"] == 3
    assert cp["length_ms"] == approx(32.0) and cp["span_ms"] == approx(60.0) and cp["ratio"] == approx(32 / 60)
    assert [(k["name"], k["track"], k["start_ms"], k["dur_ms"]) for k in cp["links"]] == [
        ("A", "worker-test (level 4) \u203a sub 0", approx(0.0), approx(10.0)),
        ("B", "worker-test (level 4) \u203a sub 1", approx(12.0), approx(18.0)),
        ("D", "l3 0 (level 3) \u203a chip 1", approx(31.0), approx(4.0)),
    ]


def test_touching_slices_and_the_chain(files):
    """F and G touch at 52 ms and the F->G flow points lie exactly there:
    the start is F's, the finish G's. Without the diamond, the chain
    E F G I (14 ms) is the critical path."""
    trace = tt.load(files["json"])
    src, dst = tt.dependency_edges(trace)
    pairs = sorted(zip(trace.task[src].tolist(), trace.task[dst].tolist()))
    assert pairs == sorted(EDGES)
    chain = tt.summarize(tt.load(write(files["dir"] / "chain.json", build(edges=EDGES[4:]))))["critical_path"]
    # H alone (20 ms) is longer than the chain (14 ms): a slice without edges is a chain of one
    assert chain["tasks"] == [8] and chain["length_ms"] == approx(20.0)
    s = tt.summarize(tt.load(write(files["dir"] / "chain2.json", build(edges=EDGES[4:] + [(8, 10)]))))
    assert s["critical_path"]["tasks"] == [8, 10] and s["critical_path"]["length_ms"] == approx(25.0)


def test_block_reader(files, monkeypatch):
    """Events one per line are parsed in blocks of lines (small blocks here
    so the test trace spans many, and the last one holds the array's end);
    the result is the same as from the one-line file, and a file cut in the
    middle of a line keeps the events before the cut."""
    from tierflow.trace import _read
    reference = tt.summarize(tt.load(files["json"]))
    lines = write(files["dir"] / "lines.json", build(), lines=True)
    monkeypatch.setattr(_read, "BLOCK_CHARS", 300)
    got = tt.summarize(tt.load(lines))
    assert {k: v for k, v in got.items() if k != "file"} == {k: v for k, v in reference.items() if k != "file"}

    one_by_one = []
    doc = _read.Document(lines, _read.read_text(lines))
    decode = doc._decode
    doc._decode = lambda text, pos: one_by_one.append(pos) or decode(text, pos)
    events = list(doc.events())
    assert len(events) == len(build()["traceEvents"]) and 0 < len(one_by_one) < len(events) // 2
    assert doc.other["otherData"]["worker"] == "worker-test" and not doc.truncated

    with open(lines) as f:
        text = f.read()
    cut = files["dir"] / "cut_lines.json"
    cut.write_text(text[: int(len(text) * 0.6)])
    trace = tt.load(str(cut))
    assert trace.warnings["file is cut short (read up to the last whole event)"] == 1 and trace.meta == {}
    assert 0 < len(trace) < 11

    array = files["dir"] / "array.json"          # the JSON Array Format: events only
    array.write_text(json.dumps(build()["traceEvents"]))
    assert tt.summarize(tt.load(str(array)))["critical_path"]["tasks"] == [1, 2, 4]


def test_format_and_top(files):
    s = tt.summarize(tt.load(files["json"]))
    text = tt.format_summary(s, top=2)
    assert "callables by total time (top 2 of 7)" in text and "... 5 more callables" in text
    assert "critical path: 32.000 ms over 3 slices; wall span 60.000 ms; ratio 0.533" in text
    assert "28.3%" in text and "63.3%" in text
    assert json.loads(json.dumps(s)) == s          # plain data: --json works
    many = dict(s, critical_path=dict(s["critical_path"], n_links=33))
    assert "... 30 more" in tt.format_summary(many)


@pytest.mark.parametrize("kind", ["json", "gz"])
def test_cli_summary(files, kind):
    r = cli("summary", files[kind], "--top", "3")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "11 slices on 4 tracks, 7 dependencies, span 60.000 ms (CLOCK_MONOTONIC)" in out
    assert "(top 3 of 7)" in out and "... 4 more callables" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip().startswith(("solo", "left", "load"))]
    assert rows == [["solo", "1", "20.000", "20.000", "20.000", "20.000"],
                    ["left", "1", "18.000", "18.000", "18.000", "18.000"],
                    ["load", "2", "15.000", "7.500", "5.000", "10.000"]]
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("worker-test (level 4) \u203a sub 0"))
    assert line.split()[-6:] == ["4", "0.017", "28.3%", "1", "0.030", "30.000"]
    assert "critical path: 32.000 ms over 3 slices" in out and "warnings" not in out
    j = cli("summary", files[kind], "--json")
    assert j.returncode == 0 and json.loads(j.stdout)["critical_path"]["tasks"] == [1, 2, 4]


def test_malformed_files(files):
    d = files["dir"]
    (d / "text.json").write_text("this is not json {")
    (d / "other.json").write_text('{"foo": 1}')
    (d / "bad.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    cases = [("text.json", "not JSON"), ("other.json", "no \"traceEvents\" list"),
             ("bad.json.gz", "not a valid gzip file"), ("missing.json", "cannot read")]
    for name, message in cases:
        r = cli("summary", str(d / name))
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
        with pytest.raises(tt.TraceError, match=message.replace('"', '.')):
            tt.load(str(d / name))


def test_bad_events_are_counted_warnings(files):
    """A flow point in an idle gap, a flow with no finish, a slice without a
    duration, an event that is no object, a cycle: counted, the rest stands."""
    extra = [
        {"ph": "s", "id": 100, "cat": "dependency", "pid": 1, "tid": 1, "ts": us(20.0)},     # in the 10..40 gap
        {"ph": "f", "bp": "e", "id": 100, "cat": "dependency", "pid": 2, "tid": 2, "ts": us(31.5)},
        {"ph": "s", "id": 101, "cat": "dependency", "pid": 1, "tid": 2, "ts": us(13.0)},     # never finished
        {"ph": "X", "name": "nodur", "pid": 1, "tid": 1, "ts": us(20.0)},
        "not an event",
        {"ph": "i", "name": "instant", "pid": 1, "tid": 1, "ts": us(1.0)},
    ]
    doc = build(extra=extra)
    doc["otherData"]["dropped"] = 3
    path = write(files["dir"] / "warn.json", doc)
    s = tt.summarize(tt.load(path))
    w = s["warnings"]
    assert w["flow point lies in no slice on its track (flow ignored)"] == 1
    assert w["flow start without a matching finish (ignored)"] == 1
    assert w["slice without a numeric ts and dur or without pid/tid (ignored)"] == 1
    assert w["event that is not a JSON object (ignored)"] == 1
    assert w["event of a kind tierflow does not write (ignored)"] == 1
    assert w["events the recorder dropped (otherData.dropped): the trace is incomplete"] == 3
    assert s["slices"] == 11 and s["dependencies"] == 7 and s["critical_path"]["tasks"] == [1, 2, 4]
    r = cli("summary", path)
    assert r.returncode == 0 and "warnings (8):" in r.stdout and "flow point lies in no slice" in r.stdout

    # a cycle (only a malformed file holds one): B->A besides A->B
    cyc = build(edges=EDGES + [(2, 1)])
    s = tt.summarize(tt.load(write(files["dir"] / "cycle.json", cyc)))
    assert s["warnings"] == {"dependency whose consumer starts before its producer ends (clocks apart?)": 1,
                             "slice on a dependency cycle (left out of the critical path)": 4}
    assert s["critical_path"]["tasks"] == [8]      # A, B, D, C are out; H (20 ms) is longest

    # a flow back in time (I ends at 60 ms, B starts at 12): start order is no
    # longer topological, the sweep goes by Kahn's order: E F G I B D = 36 ms
    back = tt.summarize(tt.load(write(files["dir"] / "back.json", build(edges=EDGES + [(10, 2)]))))
    assert back["warnings"] == {"dependency whose consumer starts before its producer ends (clocks apart?)": 1}
    assert back["critical_path"]["tasks"] == [5, 6, 7, 10, 2, 4]
    assert back["critical_path"]["length_ms"] == approx(36.0)

    # a file cut short (the writer killed): read up to the last whole event
    text = json.dumps(build())
    cut = files["dir"] / "cut.json"
    cut.write_text(text[: len(text) // 2])
    r = cli("summary", str(cut))
    assert r.returncode == 0 and "file is cut short" in r.stdout, r.stderr


def _is_png(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def test_plot(files):
    out = files["dir"] / "run.png"
    r = cli("plot", files["gz"], "-o", str(out), "--flows", "--width", "900")
    if not _have_matplotlib():
        assert r.returncode == 2 and "pip install matplotlib" in r.stderr, r.stderr
        return
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(out) > 0 and _is_png(out)[0] == 900
    assert "4 lanes, 11 slices, 7 of 7 dependency arrows" in r.stderr
    info = tt.plot(tt.load(files["json"]), str(files["dir"] / "few.png"), flows=True, max_arrows=3)
    assert info["arrows"] == 3 and info["arrows_total"] == 7 and info["lanes"] == 4
    assert _is_png(files["dir"] / "few.png")


def test_plot_without_matplotlib(files, tmp_path):
    """Where matplotlib is missing (here: hidden by a package that fails to
    import), plot exits 2 and says what to install; summary still works."""
    fake = tmp_path / "nompl" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "nompl")] +
                                                      [p for p in [os.environ.get("PYTHONPATH")] if p]))
    r = cli("plot", files["json"], "-o", str(tmp_path / "x.png"), env=env)
    assert r.returncode == 2 and "pip install matplotlib" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.png").exists()
    assert cli("summary", files["json"], env=env).returncode == 0
