"""A `tierflow daemon` fed malformed input: every bad message gets a clear
error status (never UNKNOWN, the mark of an unhandled exception), nothing
crashes or hangs, a call without the right token is refused before anything
is read or unpickled, and the daemon still serves a real level-4 Worker
afterwards.

The fuzzing speaks raw gRPC, so it runs in a subprocess (grpc_fuzz.py: this
process must never import grpc, it forks Workers); it writes a JSON summary
that the tests below read. TIERFLOW_FUZZ_EXAMPLES sets the examples per
category (default 150); `pytest -s` prints the figures."""
import json
import os
import secrets
import subprocess
import sys
import time

import cloudpickle
import numpy as np
import pytest

import tierflow as tf
from conftest import wait_until
from remote_rig import HERE, Daemon, probe

# The daemon cannot import this test module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

FUZZ = os.path.join(HERE, "grpc_fuzz.py")
EXAMPLES = int(os.environ.get("TIERFLOW_FUZZ_EXAMPLES", "150"))
ALLOWED = {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "UNAUTHENTICATED",
           "OUT_OF_RANGE"}
METHODS = ["Hello", "Has", "Push", "OpenSession", "Attach", "Run", "Download", "Ready", "Stats"]
FIELD_METHODS = ["Has", "Push", "OpenSession", "Attach", "Run", "Download", "Stats"]
UPLOADS = ["upload:metadata", "upload:truncated", "upload:overlong", "upload:garbage_chunks"]


# -- the level-4 follow-up's functions (shipped to the daemon by value) --------

HANDLES = {}


def triple_plus(args, chip):
    """out = a * 3 + s, on a chip of the daemon."""
    a, out = args.tensor(0), args.tensor(1)
    out[...] = a * 3 + args.scalar(0)


def orch_triple(orch, args):
    """Runs triple_plus on the daemon's chips; returns the input's sum as the
    daemon saw it."""
    orch.submit_next_level(HANDLES["triple_plus"], args)
    orch.drain()
    return float(args.tensor(0).sum())


# -- the fuzz, once for the module ----------------------------------------------

def _print_summary(s):
    print(f"\nfuzz of the daemon: {s['total_tried']} messages in {s['seconds']} s (seed {s['seed']}, "
          f"{EXAMPLES} examples per category)")
    for name, c in s["categories"].items():
        codes = ", ".join(f"{k} {v}" for k, v in sorted(c["codes"].items()))
        print(f"  {name:27} {c['tried']:5} tried ({c['malformed']} malformed, {c['valid']} valid)  {codes}")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """(daemon, summary): a daemon after the whole fuzz ran against it."""
    tmp = tmp_path_factory.mktemp("fuzz")
    d = Daemon(tmp, token=secrets.token_urlsafe(24), chips=2, sub_workers=1)
    try:
        out, marker = str(tmp / "summary.json"), str(tmp / "unpickled.marker")
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, FUZZ, d.address, d.token, "--out", out, "--marker", marker,
                            "--examples", str(EXAMPLES)], capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, f"grpc_fuzz.py failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
        with open(out) as f:
            summary = json.load(f)
        summary["wall_s"] = round(time.monotonic() - t0, 2)
        summary["file"] = out
        _print_summary(summary)
        yield d, summary
    finally:
        code = d.stop()
        assert code == 0, f"the daemon exited with {code}:\n{d.log()[-4000:]}"
        d.assert_clean()


# -- the tests ----------------------------------------------------------------

@pytest.mark.timeout(300)
def test_every_malformed_message_gets_a_clear_error_and_the_daemon_serves_on(fuzzed):
    d, s = fuzzed
    assert s["error"] is None, f"the fuzzer itself failed:\n{s['error']}"
    cats = s["categories"]
    expected = [*(f"bytes:{m}" for m in METHODS), *(f"fields:{m}" for m in FIELD_METHODS),
                *(f"oversized:{m}" for m in [*METHODS, "Upload"]), *UPLOADS, "upload:oversized_metadata",
                "upload:valid", "attach:intervals", "tcp:raw", "noauth"]
    assert sorted(cats) == sorted(expected)
    violations = {name: c["violations"] for name, c in cats.items() if c["violations"]}
    assert not violations, f"answers that break the rules (all of them in {s['file']}):\n" + "\n".join(
        f"  {name}: {v[0][:400]}" + (f" [+{len(v) - 1} more]" if len(v) > 1 else "") for name, v in violations.items())
    for name, c in cats.items():
        least = 2 if name.startswith("oversized:") or name == "upload:oversized_metadata" else \
            3 if name == "upload:valid" else 8 if name == "attach:intervals" else EXAMPLES // 2
        assert c["tried"] >= least, f"{name}: only {c['tried']} messages tried"
        if name == "tcp:raw":
            assert c["connections"]["by_daemon"] == c["tried"], f"the daemon left raw connections open: {c}"
            continue
        errors = {k: v for k, v in c["codes"].items() if k != "OK"}
        assert set(errors) <= ALLOWED, f"{name}: codes outside {sorted(ALLOWED)}: {errors}"
        assert sum(errors.values()) == c["malformed"] and c["codes"].get("OK", 0) == c["valid"], \
            f"{name}: {c['malformed']} malformed and {c['valid']} valid messages, answered {c['codes']}"
    malformed = sum(c["malformed"] for c in cats.values())
    assert malformed >= 0.8 * s["total_tried"]
    # valid messages in between were served (the oracle is not one-sided)
    assert cats["fields:Run"]["valid"] > 0 and cats["upload:valid"]["valid"] == 7
    # after every category: health SERVING and an authenticated Ready
    assert len(s["serving_checks"]) >= len(cats) - 1
    assert all(c["ok"] for c in s["serving_checks"]), s["serving_checks"]
    # the fuzzer's own session lived through it all (its Attach kept beating)
    # and every failed upload and run gave its arena bytes back
    assert s["beats"] >= 10
    before, after = s["arena_free_before_after"]
    assert after == before, f"the daemon's arena lost {before - after} bytes to rejected messages"
    # no unhandled exception on the way: gRPC logs each with a traceback
    log = d.log()
    for mark in ("Traceback", "Exception calling application", "Exception deserializing"):
        assert mark not in log, f"the daemon logged {mark!r}:\n{log[log.index(mark) - 500:][:3000]}"
    assert d.proc.poll() is None


@pytest.mark.timeout(300)
def test_without_the_token_nothing_is_read_or_unpickled(fuzzed):
    _d, s = fuzzed
    c = s["categories"]["noauth"]
    assert c["tried"] >= 100 and c["codes"] == {"UNAUTHENTICATED": c["tried"]}, c["codes"]
    before, after = c["refused_before_after"]
    assert after - before == c["tried"], "a call without the token was not refused by the token check"
    assert c["pushed_before_after"][0] == c["pushed_before_after"][1], "a Push without the token stored a callable"
    assert c["sessions_before_after"][0] == c["sessions_before_after"][1], "a session opened without the token"
    assert c["marker_after_fuzz"] is False, "a payload sent without the token was unpickled"
    # The same Push and Run with the token do unpickle it: the marker could
    # have appeared above.
    control = c["control_with_token"]
    assert control["push"] == "OK" and control["run"] == "OK" and control["marker"] is True, control
    assert control["pushed"] == c["pushed_before_after"][1] + 1


@pytest.mark.timeout(300)
def test_the_fuzzed_daemon_serves_a_real_level4_worker(fuzzed, make_worker):
    d, s = fuzzed
    assert d.proc.poll() is None, f"the daemon died:\n{d.log()[-4000:]}"
    assert probe("health", d.address) == {"status": "SERVING"}
    ready = probe("ready", d.address, d.token)
    assert ready["ok"] and ready["ready"]["state"] == "serving", ready
    assert ready["ready"]["chips"] == {"configured": 2, "alive": 2}
    # the fuzzer's sessions close with its calls (the last as its process ended)
    assert wait_until(lambda: probe("ready", d.address, d.token)["ready"]["sessions"] == 0, 15, 0.2)

    l3 = tf.Worker(level=3, chips=2, sub_workers=1)
    HANDLES["triple_plus"] = l3.register_kernel(triple_plus)
    w4 = make_worker(level=4)
    w4.add_remote(d.address, l3, token=d.token, heartbeat_timeout=5)
    h = w4.register_orch(orch_triple)
    w4.init()
    for n in (7, 300_000):  # inline, and (2.4 MB) through Upload and Download
        a = w4.share(np.arange(n, dtype=np.float64))
        out = w4.zeros(n, np.float64)
        t = w4.submit_next_level(h, tf.TaskArgs().input(a).output(out).scalar(0.5))
        assert t.result(timeout=60) == float(np.arange(n).sum())
        np.testing.assert_array_equal(out, np.arange(n) * 3 + 0.5)
    w4.drain(timeout=30)
    assert "grpc" not in sys.modules, "the pytest process imported grpc (it forks: gRPC does not survive that)"
