"""A daemon is secure by default: it always needs its token (generated into
a 0600 file when there is none), answers only the health service without
one, listens beyond loopback only with TLS or an explicit --insecure, and a
refused client never disturbs the others."""
import os
import stat
import subprocess
import sys

import cloudpickle
import numpy as np
import pytest

import tierflow as tf
from remote_rig import Daemon, probe

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def inc(args, chip):
    args.tensor(0)[...] += 1


def orch(o, args):
    o.submit_next_level(K[0], tf.TaskArgs().inout(args.tensor(0)))


K = []


def client(address, token, tls=None, connect_timeout=10.0):
    l3 = tf.Worker(level=3, chips=1)
    K[:] = [l3.register_kernel(inc)]
    w4 = tf.Worker(level=4)
    w4.add_remote(address, l3, token=token, tls=tls, connect_timeout=connect_timeout)
    o = w4.register_orch(orch)
    return w4, o


def works(w4, o, n: int = 4) -> bool:
    x = w4.zeros(n, np.int64)
    w4.submit_next_level(o, tf.TaskArgs().inout(x)).wait(60)
    return bool((x == 1).all())


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("security"), chips=1, sub_workers=0)
    yield d
    d.stop_ok()
    d.assert_clean()


def test_a_missing_token_file_gets_a_new_random_token_readable_only_by_its_owner(daemon):
    mode = stat.S_IMODE(os.stat(daemon.token_file).st_mode)
    assert mode == 0o600
    assert len(daemon.token) >= 32
    assert daemon.token_file in daemon.log()  # its path is logged


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_a_wrong_or_missing_token_is_refused_at_init_and_others_keep_working(daemon, token, monkeypatch):
    monkeypatch.delenv("TIERFLOW_TOKEN", raising=False)
    good, o_good = client(daemon.address, daemon.token)
    with good:
        assert works(good, o_good)
        bad, _ = client(daemon.address, token)
        with pytest.raises(tf.RemoteError, match="refused the token"):
            bad.init()
        bad.close()
        assert works(good, o_good)  # the refused client disturbed nobody
    assert "missing or wrong token" in daemon.log()


def test_the_token_can_come_from_the_environment(daemon, monkeypatch):
    monkeypatch.setenv("TIERFLOW_TOKEN", daemon.token)
    w4, o = client(daemon.address, None)
    with w4:
        assert works(w4, o)


def test_health_answers_without_a_token_and_everything_else_needs_it(daemon):
    assert probe("health", daemon.address) == {"status": "SERVING"}
    refused = probe("ready", daemon.address, "")
    assert refused["ok"] is False and refused["code"] == "UNAUTHENTICATED"
    ready = probe("ready", daemon.address, daemon.token)
    assert ready["ok"] and ready["ready"]["state"] == "serving"
    r = ready["ready"]
    assert r["chips"] == {"configured": 1, "alive": 1} and r["auth"]["transport"] == "local"
    assert r["refused_calls"] >= 1


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "10.213.99.1:0"])
def test_a_non_loopback_address_needs_tls_or_insecure(tmp_path, listen):
    r = subprocess.run([sys.executable, "-m", "tierflow", "daemon", "--listen", listen, "--chips", "1",
                        "--token-file", str(tmp_path / "t")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "not a loopback address, without TLS" in r.stderr and "--insecure" in r.stderr


def _self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate here: {r.stderr.strip()[:200]}")
    return str(cert), str(key)


def test_tls_with_a_self_signed_certificate(tmp_path):
    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("the openssl command is not installed")
    cert, key = _self_signed(tmp_path)
    d = Daemon(tmp_path, chips=1, sub_workers=0, extra=["--tls-cert", cert, "--tls-key", key])
    try:
        assert d.ready["auth"]["transport"] == "tls"
        w4, o = client(d.address, d.token, tls=cert)
        with w4:
            assert works(w4, o)
            assert works(w4, o, n=1 << 19)  # 4 MiB: through the bulk channel, over TLS too
        plain, _ = client(d.address, d.token, connect_timeout=2.0)  # plaintext to a TLS daemon
        with pytest.raises(tf.RemoteError, match="cannot reach"):
            plain.init()
        plain.close()
    finally:
        d.stop_ok()
