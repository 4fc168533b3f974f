"""The bulk channel (large tensors on a socket beside gRPC) asks for the
token before anything else, refuses what is not its protocol, and a
refusal disturbs nobody."""
import socket
import struct
import sys

import cloudpickle
import numpy as np
import pytest

import tierflow as tf
from remote_rig import Daemon

cloudpickle.register_pickle_by_value(sys.modules[__name__])

HEAD = struct.Struct("<4sBHBBQ")
REPLY = struct.Struct("<BI")


def bump(args, chip):
    args.tensor(0)[...] += 1


H = {}


def orch(o, args):
    o.submit_next_level(H["k"], tf.TaskArgs().inout(args.tensor(0)))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("bulk"), chips=1, sub_workers=0, arena_bytes=1 << 28)
    assert d.ready["data_port"] > 0
    yield d
    d.stop_ok()
    d.assert_clean()


def ask(daemon, payload: bytes):
    """Sends raw bytes to the bulk port; returns (status, text) or None if it hung up without a reply."""
    host = daemon.address.rpartition(":")[0]
    with socket.create_connection((host, daemon.ready["data_port"]), timeout=15) as s:
        s.sendall(payload)
        head = b""
        while len(head) < REPLY.size:
            got = s.recv(REPLY.size - len(head))
            if not got:
                return None
            head += got
        status, n = REPLY.unpack(head)
        text = b""
        while len(text) < n:
            text += s.recv(n - len(text))
        assert s.recv(1) == b""  # and then it hangs up
        return status, text.decode()


def request(token: bytes, session: bytes = b"0" * 32, op: bytes = b"U", nbytes: int = 16) -> bytes:
    return HEAD.pack(b"TFD1", op[0], len(token), len(session), 0, nbytes) + token + session


def test_a_wrong_or_missing_token_is_refused_before_anything_is_read(daemon):
    assert ask(daemon, request(b"wrong")) == (2, "missing or wrong token")
    assert ask(daemon, request(b"")) == (2, "missing or wrong token")


def test_the_right_token_with_an_unknown_session_is_refused(daemon):
    status, text = ask(daemon, request(daemon.token.encode()))
    assert status == 3 and "unknown session" in text


def test_bytes_that_are_not_the_protocol_are_refused(daemon):
    http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[:HEAD.size]  # a header's worth (more would be unread at the hang-up)
    assert ask(daemon, http)[0] == 1
    assert ask(daemon, HEAD.pack(b"TFD1", ord("X"), 0, 0, 0, 0))[0] == 1


def test_a_client_goes_on_using_it_after_others_were_refused(daemon):
    l3 = tf.Worker(level=3, chips=1)
    H["k"] = l3.register_kernel(bump)
    w4 = tf.Worker(level=4)
    w4.add_remote(daemon.address, l3, token=daemon.token)
    o = w4.register_orch(orch)
    with w4:
        x = w4.share(np.arange(3 << 20, dtype=np.uint8))  # 3 MiB: through the bulk channel
        want = x + 1
        w4.submit_next_level(o, tf.TaskArgs().inout(x)).wait(60)
        assert ask(daemon, request(b"wrong")) == (2, "missing or wrong token")
        w4.submit_next_level(o, tf.TaskArgs().inout(x)).wait(60)
        np.testing.assert_array_equal(x, want + 1)


def test_random_bytes_on_the_bulk_port_are_refused_and_the_daemon_goes_on(daemon):
    """Fuzz: random headers (some with the right magic), random lengths, the
    right token with random sessions and sizes. Every one is answered with
    a refusal or a hang-up, quickly; the channel still serves afterwards."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    token = daemon.token.encode()
    tried = []

    header = st.builds(lambda magic, op, tl, sl, il, n: HEAD.pack(magic, op, tl, sl, il, n),
                       st.sampled_from([b"TFD1", b"TFD2", b"\0\0\0\0"]), st.integers(0, 255),
                       st.integers(0, 5000), st.integers(0, 255), st.integers(0, 255), st.integers(0, 2 ** 64 - 1))
    authed = st.builds(lambda op, sess, n: HEAD.pack(b"TFD1", op, len(token), len(sess), 0, n) + token + sess,
                       st.sampled_from([ord("U"), ord("D")]), st.binary(min_size=0, max_size=64),
                       st.sampled_from([0, 1, 2 ** 40, 2 ** 64 - 1]))

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(header, authed, st.binary(min_size=HEAD.size, max_size=HEAD.size)))
    def one(payload):
        tried.append(payload)
        host = daemon.address.rpartition(":")[0]
        with socket.create_connection((host, daemon.ready["data_port"]), timeout=15) as s:
            try:
                s.sendall(payload)
                head = s.recv(REPLY.size)
            except ConnectionResetError:
                return  # it hung up: refused without a word
            if head:  # a reply is always a refusal here
                assert REPLY.unpack(head.ljust(REPLY.size, b"\0"))[0] != 0 or len(head) < REPLY.size

    one()
    assert len(tried) >= 100
    print(f"bulk channel fuzz: {len(tried)} requests tried")
    test_a_client_goes_on_using_it_after_others_were_refused(daemon)
