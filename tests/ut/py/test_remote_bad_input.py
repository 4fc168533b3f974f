"""add_remote() refuses what cannot work, at the call, saying how to fix it."""
import pytest

import tierflow as tf


def test_only_a_level_4_worker_adds_remotes(tmp_path):
    l3 = tf.Worker(level=3, chips=1)
    for level in (3, 5):
        w = tf.Worker(level=level)
        with pytest.raises(tf.WorkerStateError, match="needs a level-4 Worker"):
            w.add_remote("127.0.0.1:7070", l3, token="t")


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:http", ":7070", "127.0.0.1:70000", 7070, None])
def test_an_address_must_be_host_and_port(address):
    w4 = tf.Worker(level=4)
    with pytest.raises(ValueError, match="host:port|port"):
        w4.add_remote(address, tf.Worker(level=3, chips=1), token="t")


def test_the_template_is_an_uninitialised_level_3_worker():
    w4 = tf.Worker(level=4)
    with pytest.raises(TypeError, match="level 3 as its template"):
        w4.add_remote("127.0.0.1:7070", object(), token="t")
    with pytest.raises(ValueError, match="must be a level-3 Worker"):
        w4.add_remote("127.0.0.1:7070", tf.Worker(level=4), token="t")
    l3 = tf.Worker(level=3, chips=1)
    l3.alloc(4)
    with pytest.raises(tf.WorkerStateError, match="owns no memory"):
        w4.add_remote("127.0.0.1:7070", l3, token="t")


def test_a_template_serves_one_parent_as_often_as_it_is_added():
    w4, other = tf.Worker(level=4), tf.Worker(level=4)
    l3 = tf.Worker(level=3, chips=1)
    assert w4.add_remote("127.0.0.1:7070", l3, token="t") == 0
    with pytest.raises(ValueError, match="already added to"):
        other.add_remote("127.0.0.1:7071", l3, token="t")
    with pytest.raises(ValueError, match="already added to"):
        other.add_worker(l3)
    # As in the contract's example: one template, local and remote; indices continue.
    assert w4.add_worker(l3) == 1
    assert w4.add_remote("127.0.0.1:7071", l3, token="t") == 2


def test_token_tls_and_timeouts_are_checked(tmp_path):
    w4 = tf.Worker(level=4)
    with pytest.raises(TypeError, match="non-empty str"):
        w4.add_remote("127.0.0.1:7070", tf.Worker(level=3), token="  ")
    with pytest.raises(TypeError, match="non-empty str"):
        w4.add_remote("127.0.0.1:7070", tf.Worker(level=3), token=1234)
    with pytest.raises(FileNotFoundError, match="CA certificate"):
        w4.add_remote("127.0.0.1:7070", tf.Worker(level=3), token="t", tls=str(tmp_path / "missing.pem"))
    for bad in (0, -1, 1e9, True, "10"):
        with pytest.raises(ValueError, match="heartbeat_timeout"):
            w4.add_remote("127.0.0.1:7070", tf.Worker(level=3), token="t", heartbeat_timeout=bad)


def test_add_remote_after_init_is_refused():
    w4 = tf.Worker(level=4, sub_workers=1)
    w4.init()
    try:
        with pytest.raises(tf.WorkerStateError, match="before init"):
            w4.add_remote("127.0.0.1:7070", tf.Worker(level=3), token="t")
    finally:
        w4.close()


def test_an_unreachable_daemon_fails_init_with_its_address_and_init_can_be_retried():
    w4 = tf.Worker(level=4)
    # A port nothing listens on (bound and closed at once).
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    w4.add_remote(f"127.0.0.1:{port}", tf.Worker(level=3), token="t", connect_timeout=0.5)
    for _ in range(2):
        with pytest.raises(tf.RemoteError, match=f"cannot reach a tierflow daemon at 127.0.0.1:{port}"):
            w4.init()
    w4.close()
