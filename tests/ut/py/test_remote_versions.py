"""A client refuses a daemon whose protocol, Python, cloudpickle or numpy
version would not run its functions, with a table of both sides; a daemon
without the chips the template needs is refused too."""
import sys

import cloudpickle
import pytest

import tierflow as tf
import tierflow.remote.wire as wire
from remote_rig import Daemon

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def orch(o, args):
    pass


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("versions"), chips=1, sub_workers=0)
    yield d
    d.stop_ok()


HANDLE = []


def level4(daemon, chips=1, sub_workers=0):
    w4 = tf.Worker(level=4)
    w4.add_remote(daemon.address, tf.Worker(level=3, chips=chips, sub_workers=sub_workers), token=daemon.token)
    HANDLE[:] = [w4.register_orch(orch)]
    return w4


@pytest.mark.parametrize("field,value", [("python", "3.2.1"), ("cloudpickle", "0.0.1"), ("protocol", 99),
                                         ("numpy", "0.9.0")])
def test_a_version_mismatch_is_refused_with_both_sides_named(daemon, monkeypatch, field, value):
    real = wire.versions()
    monkeypatch.setattr(wire, "versions", lambda: {**real, field: value})  # the client's side only
    w4 = level4(daemon)
    with pytest.raises(tf.RemoteError) as e:
        w4.init()
    w4.close()
    text = str(e.value)
    assert daemon.address in text and f"versions differ ({field})" in text
    row = next(line for line in text.splitlines() if line.strip().startswith(field))
    assert str(value) in row and str(real[field]) in row and "differs" in row


def test_a_python_patch_release_difference_is_accepted(daemon, monkeypatch):
    real = wire.versions()
    major, minor, _ = real["python"].split(".")
    monkeypatch.setattr(wire, "versions", lambda: {**real, "python": f"{major}.{minor}.999"})
    w4 = level4(daemon)
    with w4:
        w4.submit_next_level(HANDLE[0], None).wait(60)


def test_a_daemon_with_too_few_chips_is_refused(daemon):
    w4 = level4(daemon, chips=3)
    with pytest.raises(tf.RemoteError, match=r"has 1 chip\(s\) and 0 sub-worker\(s\); template .* needs 3 and 0"):
        w4.init()
    w4.close()


def test_the_versions_compared_are_the_ones_cloudpickle_needs():
    v = wire.versions()
    assert wire.version_mismatch(v, dict(v)) is None
    assert wire.version_mismatch(v, {**v, "tierflow": "9.9.9"}) is None  # reported, not refused
    assert "python" in wire.version_mismatch(v, {**v, "python": "2.7.18"})
