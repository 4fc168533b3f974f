"""Fuzzes a running `tierflow daemon` with malformed input, from a process of
its own (the pytest process must not load gRPC: it forks). Used by
test_remote_fuzz.py.

    grpc_fuzz.py ADDRESS TOKEN --out SUMMARY.json --marker PATH [--seed N] [--examples N]

Every message is sent with an oracle's expectation: a message that breaks
the protocol must be answered with a non-OK status from a small set (never
UNKNOWN, which is an unhandled exception in the daemon) and a non-empty
details text; the few generated messages that turn out valid must be
served. Categories:

  bytes:M       random and mutated bytes as method M's request
  fields:M      well-formed messages with absurd fields (shapes, dtypes,
                tags, keys, sessions, counts) for method M
  oversized:M   a request above the daemon's 16 MiB receive limit
  upload:*      Upload streams with bad metadata, too few or too many bytes,
                garbage chunks, oversized metadata
  attach:*      Attach intervals (NaN, inf, negative...) on fresh sessions
  tcp:*         raw bytes written to the port with a plain socket
  noauth        every method without the token or with a wrong one

After each category the daemon must still answer a health Check with
SERVING and an authenticated Ready. The summary (JSON) goes to --out."""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import random
import resource
import socket
import struct
import sys
import threading
import time
import traceback

import cloudpickle
import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, assume, given, seed, settings
from hypothesis import strategies as st

from tierflow.remote import tierflow_remote_pb2 as pb

SERVICE = "/tierflow.remote.v1.Daemon/"
ALLOWED = {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "UNAUTHENTICATED",
           "OUT_OF_RANGE"}
MAX_MESSAGE = 16 << 20
CALL_TIMEOUT = 10.0
KINDS = {1: "sub", 2: "kernel", 3: "native", 4: "orch"}
REQUESTS = {"Hello": pb.HelloRequest, "Has": pb.HasRequest, "Push": pb.PushRequest, "OpenSession": pb.OpenRequest,
            "Attach": pb.AttachRequest, "Run": pb.RunRequest, "Download": pb.DownloadRequest,
            "Ready": pb.ReadyRequest, "Stats": pb.StatsRequest}
STREAMING = {"Attach", "Download"}   # unary request, streamed reply
LITTLE = sys.byteorder == "little"


def key_of(kind: str, payload: bytes) -> bytes:
    """sha256(kind, NUL, payload): written out here, not imported, so the
    fuzzer does not share the daemon's code for what it checks."""
    return hashlib.sha256(kind.encode() + b"\0" + payload).digest()


def echo(orch, args):
    """The fuzzer's orch function: runs only for a valid Run."""
    return "echo"


class Marker:
    """Unpickling this creates the marker file: proof that the daemon
    unpickled a payload."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# -- the oracle -------------------------------------------------------------

SUPPORTED = {("b", 1), ("i", 1), ("i", 2), ("i", 4), ("i", 8), ("u", 1), ("u", 2), ("u", 4), ("u", 8), ("f", 2),
             ("f", 4), ("f", 8), ("c", 8), ("c", 16)}
VALID_DTYPES = sorted({np.dtype(f"{k}{n}").str for k, n in SUPPORTED if k != "b"} | {"|b1"})
BAD_DTYPES = ["O", "V8", "V0", "S0", "S3", "U4", "<U1", "M8", "m8", "i4,i4", "(2,)i4", "garbage", "", " ", "i0",
              "f0", "float128", "complex256", "f16", "c32", "g", "G", "object", "[('a', 'i4')]", "<f4\0",
              ">f4" if LITTLE else "<f4", ">i8" if LITTLE else "<i8", ">c16" if LITTLE else "<c16", "i1" * 40]


def dtype_ok(text: str):
    """The dtype a task tensor may have (numbers and booleans the engine
    takes, native byte order); None otherwise."""
    try:
        dt = np.dtype(text)
    except Exception:
        return None
    if dt.hasobject or dt.fields is not None or dt.subdtype is not None or (dt.kind, dt.itemsize) not in SUPPORTED:
        return None
    if dt.itemsize > 1 and dt.byteorder not in ("=", "|", "<" if LITTLE else ">"):
        return None
    return dt


def tensor_verdict(t, arena: int):
    """"valid", "invalid" or "unsure" for one Tensor of a RunRequest (with
    no staged source)."""
    if t.tag not in (1, 2, 3, 4):
        return "invalid"
    dt = dtype_ok(t.dtype)
    if dt is None:
        return "invalid"
    dims = list(t.shape)
    if len(dims) > 8:
        return "invalid"
    if math.prod(dims) * dt.itemsize != t.nbytes or t.nbytes > arena:
        return "invalid"
    source = t.WhichOneof("source")
    if t.tag == 2:
        if source is not None:
            return "invalid"
    elif source != "data" or len(t.data) != t.nbytes:
        return "invalid"
    if t.nbytes == 0:
        nonzero = math.prod(d for d in dims if d) * dt.itemsize
        if nonzero >= 1 << 63:
            return "invalid"  # no numpy array has that shape
        if nonzero > arena:
            return "unsure"
    return "valid"


# -- the fuzzer -------------------------------------------------------------

class Fuzzer:
    def __init__(self, address: str, token: str, marker: str, seed_: int):
        self.address = address
        self.token = token
        self.marker = marker
        self.seed = seed_
        self.md = (("authorization", f"Bearer {token}"),)
        opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1),
                ("grpc.enable_retries", 0)]
        self.channel = grpc.insecure_channel(address, options=opts)
        grpc.channel_ready_future(self.channel).result(timeout=20)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.categories = {}
        self.serving_checks = []
        self.dead = False
        self.cat = None
        hello = self.unary("Hello", pb.HelloRequest().SerializeToString())
        assert hello[0] == "OK", hello
        h = pb.HelloReply.FromString(hello[2])
        self.chips, self.subs, self.arena = h.chips, h.sub_workers, h.arena_bytes
        self.echo_payload = cloudpickle.dumps(echo, protocol=5)
        self.echo_key = key_of("orch", self.echo_payload)
        code, _, raw = self.unary("Push", pb.PushRequest(kind=4, key=self.echo_key, payload=self.echo_payload,
                                                          name="echo").SerializeToString())
        assert code == "OK", (code, raw)
        self.session = self.open_session("fuzz")
        self.attach_call = self.attach(self.session, 0.5)
        self.beats = 0
        threading.Thread(target=self._beat, args=(self.attach_call,), daemon=True).start()
        self.ready0 = self.ready()

    # -- calls
    def unary(self, method, raw, md=None, timeout=CALL_TIMEOUT):
        fn = self.channel.unary_unary(SERVICE + method, request_serializer=None, response_deserializer=None)
        try:
            return "OK", "", fn(raw, metadata=self.md if md is None else md, timeout=timeout)
        except grpc.RpcError as e:
            return e.code().name, e.details() or "", b""

    def streaming(self, method, raw, md=None, limit=None):
        fn = self.channel.unary_stream(SERVICE + method, request_serializer=None, response_deserializer=None)
        call = fn(raw, metadata=self.md if md is None else md, timeout=CALL_TIMEOUT)
        out = []
        try:
            for m in call:
                out.append(m)
                if limit is not None and len(out) >= limit:
                    call.cancel()
                    return "OK", "", out
            return "OK", "", out
        except grpc.RpcError as e:
            return e.code().name, e.details() or "", out

    def call(self, method, raw, md=None):
        if method in STREAMING:
            code, details, out = self.streaming(method, raw, md, limit=1)
            return code, details, b"".join(out)
        return self.unary(method, raw, md)

    def upload(self, chunks, md):
        fn = self.channel.stream_unary(SERVICE + "Upload", request_serializer=None, response_deserializer=None)
        try:
            return "OK", "", fn(iter(chunks), metadata=md, timeout=CALL_TIMEOUT)
        except grpc.RpcError as e:
            return e.code().name, e.details() or "", b""

    def open_session(self, name):
        code, details, raw = self.unary("OpenSession", pb.OpenRequest(name=name).SerializeToString())
        assert code == "OK", (code, details)
        return pb.OpenReply.FromString(raw).session

    def attach(self, sid, interval):
        fn = self.channel.unary_stream(SERVICE + "Attach", request_serializer=pb.AttachRequest.SerializeToString,
                                       response_deserializer=pb.Beat.FromString)
        return fn(pb.AttachRequest(session=sid, interval_s=interval), metadata=self.md)

    def _beat(self, call):
        try:
            for _ in call:
                self.beats += 1
        except grpc.RpcError:
            pass

    def ready(self):
        code, details, raw = self.unary("Ready", b"")
        return json.loads(pb.ReadyReply.FromString(raw).json) if code == "OK" else {"error": f"{code}: {details}"}

    def serving(self, after):
        try:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(
                self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT).status)
        except grpc.RpcError as e:
            status = e.code().name
        r = self.ready()
        ok = status == "SERVING" and r.get("state") == "serving"
        self.serving_checks.append({"after": after, "health": status, "ready": r.get("state", r.get("error")),
                                    "ok": ok})
        if not ok:
            self.dead = True
        elif not self.session_alive():  # a violation closed it: say so, and go on with a new one
            self.cat["violations"].append("the fuzzer's own session was closed by this category's messages")
            self.attach_call.cancel()
            self.session = self.open_session("fuzz")
            self.attach_call = self.attach(self.session, 0.5)
            threading.Thread(target=self._beat, args=(self.attach_call,), daemon=True).start()
        return ok

    def session_alive(self):
        code, _, _ = self.unary("Stats", pb.StatsRequest(session=self.session).SerializeToString())
        return code == "OK"

    # -- bookkeeping
    def category(self, name):
        self.cat = self.categories.setdefault(name, {"tried": 0, "malformed": 0, "valid": 0, "codes": {},
                                                     "violations": [], "seconds": 0.0})
        return self.cat

    def check(self, what, code, details, expect, sample=b"", core=False):
        """One answer against the oracle: `expect` is a set of codes (a
        malformed message) or {"OK"} (a valid one). core: gRPC's transport
        may refuse the call before the daemon's code sees it, sometimes
        without details (counted apart)."""
        c = self.cat
        c["tried"] += 1
        c["codes"][code] = c["codes"].get(code, 0) + 1
        malformed = "OK" not in expect
        c["malformed" if malformed else "valid"] += 1
        bad = None
        if code not in expect:
            bad = f"{what}: expected {sorted(expect)}, got {code}: {details[:300]}"
        elif malformed and not details.strip():
            if core:
                c["core_refusals_without_details"] = c.get("core_refusals_without_details", 0) + 1
            else:
                bad = f"{what}: {code} without details"
        if bad:
            if len(c["violations"]) < 8:
                c["violations"].append(bad + (f" [request {bytes(sample[:200]).hex()}]" if sample else ""))
            raise AssertionError(bad)

    def run_category(self, name, test):
        c = self.category(name)
        t0 = time.monotonic()
        print(f"grpc_fuzz: {name}", file=sys.stderr, flush=True)
        if not self.dead:
            try:
                seed(self.seed)(test)()
            except Exception as e:  # a violation: hypothesis shrank it; its text is in violations
                msg = f"{type(e).__name__}: {str(e)[:400]}"
                if not any(msg[:80] in v for v in c["violations"]):
                    c["violations"].append(msg)
                if not isinstance(e, AssertionError):
                    c["violations"].append(traceback.format_exc()[-1500:])
            self.serving(name)
        c["seconds"] = round(time.monotonic() - t0, 2)


# -- strategies ---------------------------------------------------------------

def texts(max_size=40):
    return st.text(st.characters(exclude_categories=("Cs",)), max_size=max_size)


ascii_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
u64 = st.integers(0, (1 << 64) - 1)


@st.composite
def mutated(draw, base: bytes):
    """`base` with bytes flipped, cut, inserted or appended."""
    b = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "append", "truncate"]))
        pos = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[pos] ^= draw(st.integers(1, 255))
        elif op == "cut" and b:
            del b[pos:pos + draw(st.integers(1, 8))]
        elif op == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "append":
            b += draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del b[pos:]
    return bytes(b)


def unknown_fields():
    """Serialized fields with numbers no message of the protocol uses."""
    field = st.tuples(st.integers(16, 2000), st.sampled_from([0, 2, 5]), st.binary(max_size=12), u64)

    def enc(fields):
        out = b""
        for num, wt, data, n in fields:
            out += _varint(num << 3 | wt)
            if wt == 0:
                out += _varint(n)
            elif wt == 2:
                out += _varint(len(data)) + data
            else:
                out += struct.pack("<I", n & 0xFFFFFFFF)
        return out
    return st.lists(field, max_size=3).map(enc)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


# -- the categories -----------------------------------------------------------

def categories(f: Fuzzer, n: int):
    S = settings(max_examples=n, deadline=5000, database=None, suppress_health_check=list(HealthCheck),
                 derandomize=False, print_blob=False)
    few = settings(S, max_examples=2)

    # samples of valid requests to mutate
    samples = {
        "Hello": pb.HelloRequest(client=pb.Versions(protocol=1, tierflow="0.1.0", python="3.11.7")),
        "Has": pb.HasRequest(keys=[f.echo_key, b"k" * 32]),
        "Push": pb.PushRequest(kind=4, key=f.echo_key, payload=f.echo_payload, name="echo"),
        "OpenSession": pb.OpenRequest(name="x", weight=3, chips=1, sub_workers=1),
        "Attach": pb.AttachRequest(session="a" * 32, interval_s=1.0),
        "Run": pb.RunRequest(session="b" * 32, orch=f.echo_key, tensors=[pb.Tensor(tag=1, dtype="<i8", shape=[2],
                                                                                       nbytes=16, data=b"\0" * 16)],
                             scalars=[pb.Scalar(i=3)], name="t"),
        "Download": pb.DownloadRequest(session=f.session, staged="abc"),
        "Ready": pb.ReadyRequest(),
        "Stats": pb.StatsRequest(session=f.session),
    }

    def verdict_parsed(method, m):
        """The codes the daemon may answer a request that parsed."""
        if method in ("Hello", "Ready"):
            return {"OK"}
        if method == "Stats":
            return {"OK"} if m.session in ("", f.session) else {"NOT_FOUND"}
        if method == "Has":
            return {"OK"} if len(m.keys) <= 65536 and all(len(k) == 32 for k in m.keys) else {"INVALID_ARGUMENT"}
        if method == "Push":
            if m.kind not in KINDS or len(m.key) != 32 or key_of(KINDS[m.kind], m.payload) != m.key:
                return {"INVALID_ARGUMENT"}
            return {"OK"}
        if method == "OpenSession":
            if m.chips > f.chips or m.sub_workers > f.subs:
                return {"FAILED_PRECONDITION"}
            return {"OK"} if (m.weight or 1) <= 1_000_000 else {"INVALID_ARGUMENT"}
        if method == "Attach":
            if m.session != f.session:
                return {"NOT_FOUND", "INVALID_ARGUMENT"}
            return None  # would attach the fuzzer's own session a second time
        if method == "Download":  # the fuzzer leaves no staged output behind
            return {"NOT_FOUND"}
        if method == "Run":
            return {"NOT_FOUND"} if m.session != f.session else None
        raise AssertionError(method)

    def raw_expect(method, raw):
        try:
            m = REQUESTS[method].FromString(raw)
        except DecodeError:
            return {"INVALID_ARGUMENT"}
        return verdict_parsed(method, m)

    # 1. random and mutated bytes, every method
    def bytes_test_of(method):
        base = samples[method].SerializeToString()

        @S
        @given(raw=st.one_of(st.binary(max_size=300), mutated(base)), extra=st.one_of(st.just(b""), unknown_fields()))
        def bytes_test(raw, extra):
            raw = raw + extra
            expect = raw_expect(method, raw)
            assume(expect is not None)
            if method == "OpenSession" and expect == {"OK"}:
                assume(False)  # a valid request would open a session
            if method == "Push" and expect == {"OK"}:
                assume(pb.PushRequest.FromString(raw).key == f.echo_key)  # stores nothing new
            code, details, reply = f.call(method, raw)
            f.check(f"{method} of {len(raw)} bytes", code, details, expect, raw)
        return bytes_test

    for method in REQUESTS:
        f.run_category(f"bytes:{method}", bytes_test_of(method))

    # 2. well-formed messages with absurd fields
    key32 = st.binary(min_size=32, max_size=32)
    bad_key = st.binary(max_size=80).filter(lambda k: len(k) != 32)

    too_many = [os.urandom(32) for _ in range(65537)]

    @S
    @given(keys=st.lists(st.one_of(key32, bad_key), max_size=12), many=st.integers(0, 7), extra=unknown_fields())
    def has_test(keys, many, extra):
        if many == 0:
            keys = too_many + keys
        m = pb.HasRequest(keys=keys)
        expect = verdict_parsed("Has", m)
        code, details, raw = f.unary("Has", m.SerializeToString() + extra)
        f.check(f"Has of {len(keys)} keys", code, details, expect)
        if code == "OK":  # a valid request: random keys are missing, the fuzzer's own is not
            missing = set(pb.HasReply.FromString(raw).missing)
            assert missing == {k for k in keys if k != f.echo_key}, "Has answered a wrong missing set"
    f.run_category("fields:Has", has_test)

    pushed0 = f.ready().get("catalog", {}).get("pushed")

    @S
    @given(kind=st.one_of(st.sampled_from([1, 2, 3, 4]), st.integers(-(1 << 31), (1 << 31) - 1)),
           payload=st.binary(max_size=200), how=st.sampled_from(["len", "random", "other_kind", "flip", "none"]),
           klen=st.integers(0, 80).filter(lambda n: n != 32), name=texts(300), extra=unknown_fields(),
           d=st.data())
    def push_test(kind, payload, how, klen, name, extra, d):
        kname = KINDS.get(kind, "orch")
        if how == "len":
            key = d.draw(st.binary(min_size=klen, max_size=klen))
        elif how == "random":
            key = d.draw(key32)
        elif how == "other_kind":
            key = key_of(d.draw(st.sampled_from([k for k in KINDS.values() if k != kname])), payload)
        elif how == "flip":
            key = bytearray(key_of(kname, payload))
            key[d.draw(st.integers(0, 31))] ^= 1 << d.draw(st.integers(0, 7))
            key = bytes(key)
        else:
            key = b""
        m = pb.PushRequest(kind=kind, key=key, payload=payload, name=name)
        expect = verdict_parsed("Push", m)
        assume(expect != {"OK"})
        code, details, _ = f.unary("Push", m.SerializeToString() + extra)
        f.check(f"Push kind {kind} key {how}", code, details, expect)
    f.run_category("fields:Push", push_test)
    pushed1 = f.ready().get("catalog", {}).get("pushed")
    f.cat["catalog_pushed_before_after"] = [pushed0, pushed1]
    if pushed0 != pushed1:
        f.cat["violations"].append(f"malformed pushes stored callables: pushed {pushed0} -> {pushed1}")

    big32 = st.integers(0, (1 << 32) - 1)

    @S
    @given(chips=big32, subs=big32, weight=big32, name=texts(200), extra=unknown_fields())
    def open_test(chips, subs, weight, name, extra):
        m = pb.OpenRequest(name=name, weight=weight, chips=chips, sub_workers=subs)
        expect = verdict_parsed("OpenSession", m)
        assume(expect != {"OK"})
        code, details, _ = f.unary("OpenSession", m.SerializeToString() + extra)
        f.check(f"OpenSession chips={chips} subs={subs} weight={weight}", code, details, expect)
    f.run_category("fields:OpenSession", open_test)

    @S
    @given(session=texts(), extra=unknown_fields())
    def stats_test(session, extra):
        assume(session not in ("", f.session))
        code, details, _ = f.unary("Stats", pb.StatsRequest(session=session).SerializeToString() + extra)
        f.check("Stats of an unknown session", code, details, {"NOT_FOUND"})
    f.run_category("fields:Stats", stats_test)

    @S
    @given(session=texts(), staged=texts(), own=st.booleans(), extra=unknown_fields())
    def download_test(session, staged, own, extra):
        if own:
            session = f.session
        assume(session != f.session or own)
        m = pb.DownloadRequest(session=session, staged=staged)
        code, details, _ = f.streaming("Download", m.SerializeToString() + extra)
        f.check(f"Download of {'an unknown id' if own else 'an unknown session'}", code, details, {"NOT_FOUND"})
    f.run_category("fields:Download", download_test)

    @S
    @given(session=texts(), interval=st.one_of(st.floats(), st.just(math.nan)), own_nan=st.booleans(),
           extra=unknown_fields())
    def attach_test(session, interval, own_nan, extra):
        if own_nan:  # NaN on the fuzzer's own session: refused, and the session stays
            m, expect = pb.AttachRequest(session=f.session, interval_s=math.nan), {"INVALID_ARGUMENT"}
        else:
            assume(session != f.session)
            m = pb.AttachRequest(session=session, interval_s=interval)
            expect = {"NOT_FOUND", "INVALID_ARGUMENT"} if math.isnan(interval) else {"NOT_FOUND"}
        code, details, _ = f.streaming("Attach", m.SerializeToString() + extra, limit=3)
        f.check(f"Attach interval {m.interval_s} of {'its own' if own_nan else 'an unknown'} session", code,
                details, expect)
        assert f.session_alive(), "an Attach call closed the fuzzer's session"
    f.run_category("fields:Attach", attach_test)

    # Run: a valid request, then mutations that each make it invalid
    valid_dtype = st.sampled_from(VALID_DTYPES)

    @st.composite
    def tensor(draw):
        tag = draw(st.sampled_from([1, 2, 3, 4]))
        dt = np.dtype(draw(valid_dtype))
        shape = draw(st.lists(st.integers(0, 6), max_size=4))
        nbytes = math.prod(shape) * dt.itemsize
        t = pb.Tensor(tag=tag, dtype=dt.str, shape=shape, nbytes=nbytes)
        if tag != 2:
            t.data = draw(st.binary(min_size=nbytes, max_size=nbytes))
        return t

    def mut_tag(t, d):
        t.tag = d(st.one_of(st.just(0), st.integers(5, (1 << 31) - 1), st.integers(-(1 << 31), -1)))

    def mut_dtype(t, d):
        t.dtype = d(st.one_of(st.sampled_from(BAD_DTYPES), texts(12).filter(lambda s: dtype_ok(s) is None)))

    def mut_nbytes(t, d):
        delta = d(st.integers(-(1 << 20), 1 << 20).filter(lambda x: x != 0))
        t.nbytes = t.nbytes + delta if t.nbytes + delta >= 0 else t.nbytes - delta

    def mut_huge(t, d):
        item = np.dtype(t.dtype).itemsize if dtype_ok(t.dtype) is not None else 1
        any_dim = st.integers(1, (1 << 64) - 1)
        if d(st.booleans()):  # larger than the arena (or than 64 bits)
            dims = d(st.lists(any_dim, max_size=3))
            dims.insert(d(st.integers(0, len(dims))), d(st.integers(f.arena + 1, (1 << 64) - 1)))
            size = math.prod(dims) * item
            t.ClearField("shape")
            t.shape.extend(dims)
            t.nbytes = size if size < 1 << 64 else d(u64)
        else:  # zero bytes, with dimensions no array can have
            if d(st.booleans()):
                dims = [d(st.integers(1 << 63, (1 << 64) - 1)), *d(st.lists(any_dim, max_size=2))]
            else:
                dims = d(st.lists(st.integers(1 << 32, 1 << 62), min_size=2, max_size=3))
            dims.insert(d(st.integers(0, len(dims))), 0)
            t.ClearField("shape")
            t.shape.extend(dims)
            t.nbytes = 0
            if t.tag != 2:
                t.data = b""

    def mut_dims(t, d):
        t.shape.extend([1] * max(d(st.integers(9, 40)) - len(t.shape), 9 - len(t.shape), 0))

    def mut_data(t, d):
        if t.tag == 2:
            if d(st.booleans()):
                t.data = d(st.binary(max_size=64))
            else:
                t.staged = d(texts())
        elif d(st.booleans()):
            t.ClearField("data")
        else:  # bounded: after mut_huge, nbytes can be far beyond this machine's memory
            n = d(st.integers(0, min(t.nbytes, 1 << 16) + 64).filter(lambda k: k != t.nbytes))
            t.data = bytes(n)

    def mut_staged(t, d):
        if t.tag == 2:
            t.tag = d(st.sampled_from([1, 3, 4]))
        t.staged = d(texts())

    tensor_muts = {"tag": mut_tag, "dtype": mut_dtype, "nbytes": mut_nbytes, "huge": mut_huge, "dims": mut_dims,
                   "data": mut_data, "staged": mut_staged}

    @st.composite
    def run_case(draw):
        m = pb.RunRequest(session=f.session, orch=f.echo_key, name=draw(texts()))
        m.tensors.extend(draw(st.lists(tensor(), max_size=6)))
        for _ in range(draw(st.integers(0, 4))):
            m.scalars.add(**draw(st.one_of(st.builds(dict, i=st.integers(-(1 << 63), (1 << 63) - 1)),
                                           st.builds(dict, f=st.floats()))))
        what = [] if draw(st.booleans()) and draw(st.booleans()) else draw(st.lists(st.sampled_from(
            ["tensor", "tensor", "tensor", "tensor", "tensor", "tensor", "many_tensors", "many_scalars",
             "empty_scalar", "orch", "session"]), min_size=1, max_size=2, unique=True))  # [] : a valid control
        expect = {"OK"}
        if "tensor" in what:
            if not m.tensors:
                m.tensors.append(draw(tensor()))
            for _ in range(draw(st.integers(1, 3))):
                i = draw(st.integers(0, len(m.tensors) - 1))
                name = draw(st.sampled_from(sorted(tensor_muts)))
                tensor_muts[name](m.tensors[i], draw)
                what.append(f"tensor {i} {name}")
            expect = {"INVALID_ARGUMENT"}
        if "many_tensors" in what:
            n = draw(st.integers(4097 - len(m.tensors), 4200 - len(m.tensors)))
            m.tensors.extend([pb.Tensor(tag=1, dtype="|u1", shape=[1], nbytes=1, data=b"x")] * n)
            expect = {"INVALID_ARGUMENT"}
        if "many_scalars" in what:
            m.scalars.extend([pb.Scalar(i=1)] * draw(st.integers(4097, 4200)))
            expect = {"INVALID_ARGUMENT"}
        if "empty_scalar" in what:
            m.scalars.add()
            expect = {"INVALID_ARGUMENT"}
        if expect == {"OK"}:  # no tensor mutation: the tensors' own verdicts (a 0-size tensor may be odd)
            verdicts = {tensor_verdict(t, f.arena) for t in m.tensors}
            if "unsure" in verdicts:
                expect = {"OK", "INVALID_ARGUMENT"}
        if "orch" in what:
            m.orch = draw(st.binary(max_size=64).filter(lambda k: k != f.echo_key))
            expect = {"FAILED_PRECONDITION"}
        if "session" in what:
            m.session = draw(texts().filter(lambda s: s != f.session))
            expect = {"NOT_FOUND"}
        return m, what, expect

    @S
    @given(case=run_case(), extra=unknown_fields())
    def run_test(case, extra):
        m, what, expect = case
        counts = f.cat.setdefault("mutations", {})
        for w in what or ["none (valid)"]:
            k = w.split()[-1] if w.startswith("tensor ") else w
            counts[k] = counts.get(k, 0) + 1
        if expect == {"INVALID_ARGUMENT"} and not {"session", "orch"} & set(what):
            # each mutation breaks the protocol: the oracle must agree
            assert any(tensor_verdict(t, f.arena) == "invalid" for t in m.tensors) or \
                {"many_tensors", "many_scalars", "empty_scalar"} & set(what), f"mutations {what} left it valid"
        code, details, raw = f.unary("Run", m.SerializeToString() + extra)
        f.check(f"Run ({', '.join(what) or 'valid'})", code, details, expect)
        if code == "OK":
            rep = pb.RunReply.FromString(raw)
            assert rep.ok and pickle.loads(rep.value) == "echo", f"a valid Run failed: {rep.failure.message}"
            got = {o.index: o for o in rep.outputs}
            for i, t in enumerate(m.tensors):
                if t.tag == 1:
                    assert i not in got, f"input tensor {i} came back"
                    continue
                assert got[i].WhichOneof("source") == "data" and len(got[i].data) == t.nbytes
                if t.tag != 2:
                    assert got[i].data == t.data, f"tensor {i} came back changed"
    f.run_category("fields:Run", run_test)

    # 3. oversized requests (above the 16 MiB receive limit), every method
    def oversized_test_of(method):
        @few
        @given(over=st.integers(1, 1 << 20))
        def oversized_test(over):
            filler = b"\x00" * (MAX_MESSAGE + over)
            raw = b"\xfa\x3e" + _varint(len(filler)) + filler  # field 999, bytes
            if method == "Upload":
                md = f.md + (("tierflow-session", f.session), ("tierflow-nbytes", str(len(raw))))
                code, details, _ = f.upload([b"\x0a" + _varint(len(filler)) + filler], md)
            else:
                code, details, _ = f.call(method, raw)
            f.check(f"{method} of {len(raw):,} bytes", code, details, {"RESOURCE_EXHAUSTED"})
        return oversized_test

    for method in [*REQUESTS, "Upload"]:
        f.run_category(f"oversized:{method}", oversized_test_of(method))

    # 4. Upload streams
    def chunk(data):
        return b"\x0a" + _varint(len(data)) + data

    def splits(d, data):
        cuts = sorted(d(st.lists(st.integers(0, len(data)), max_size=4)))
        edges = [0, *cuts, len(data)]
        return [chunk(data[a:b]) for a, b in zip(edges, edges[1:])]

    def valid_int(text):
        try:
            return 0 < int(text) <= f.arena
        except ValueError:
            return False

    @S
    @given(session=st.one_of(st.none(), ascii_text, st.just("own")),
           nbytes=st.one_of(st.none(), ascii_text.filter(lambda s: not valid_int(s)), st.just("0"),
                            st.integers(-(1 << 70), 0).map(str), st.integers(f.arena + 1, 1 << 70).map(str),
                            st.just("9" * 5000), st.just("12")),
           data=st.binary(max_size=64), data_strategy=st.data())
    def upload_md_test(session, nbytes, data, data_strategy):
        sid = f.session if session == "own" else session
        md = list(f.md)
        if sid is not None:
            md.append(("tierflow-session", sid))
        if nbytes is not None:
            md.append(("tierflow-nbytes", nbytes))
        if sid == f.session:
            assume(not (nbytes is not None and valid_int(nbytes)))
            expect = {"INVALID_ARGUMENT"}
        else:
            expect = {"NOT_FOUND"}
        code, details, _ = f.upload(splits(data_strategy.draw, data), tuple(md))
        f.check(f"Upload with session {str(sid)[:20]!r} nbytes {str(nbytes)[:20]!r}", code, details, expect)
    f.run_category("upload:metadata", upload_md_test)

    @S
    @given(n=st.integers(1, 1 << 18), short=st.integers(1, 1 << 18), d=st.data())
    def truncated_test(n, short, d):
        data = os.urandom(max(0, n - short))
        md = f.md + (("tierflow-session", f.session), ("tierflow-nbytes", str(n)))
        code, details, _ = f.upload(splits(d.draw, data), md)
        f.check(f"Upload of {len(data)} of {n} bytes", code, details, {"INVALID_ARGUMENT"})
    f.run_category("upload:truncated", truncated_test)

    @S
    @given(n=st.integers(1, 1 << 16), more=st.integers(1, 1 << 16), d=st.data())
    def overlong_test(n, more, d):
        data = os.urandom(n + more)
        md = f.md + (("tierflow-session", f.session), ("tierflow-nbytes", str(n)))
        code, details, _ = f.upload(splits(d.draw, data), md)
        f.check(f"Upload of {len(data)} bytes for {n}", code, details, {"INVALID_ARGUMENT"})
    f.run_category("upload:overlong", overlong_test)

    def is_chunk(b):
        """A Chunk{data} as protobuf writes it (one field 1, shortest length)."""
        try:
            m = pb.Chunk.FromString(b)
        except DecodeError:
            return False
        return pb.Chunk(data=m.data).SerializeToString() == b

    @st.composite
    def garbage_chunk(draw):
        data = draw(st.binary(max_size=32))
        good = chunk(data)
        kind = draw(st.sampled_from(["random", "tag", "trailing", "short", "long", "varint", "two_fields",
                                     "other_field"]))
        if kind == "random":
            g = draw(st.binary(min_size=1, max_size=64))
        elif kind == "tag":
            g = bytes([draw(st.integers(0, 255).filter(lambda x: x != 0x0A))]) + good[1:]
        elif kind == "trailing":
            g = good + draw(st.binary(min_size=1, max_size=8))
        elif kind == "short":
            g = b"\x0a" + _varint(len(data) + draw(st.integers(1, 1 << 30))) + data
        elif kind == "long":
            g = b"\x0a" + _varint(len(data)) + data + b"\x00" * draw(st.integers(1, 8))
        elif kind == "varint":
            g = b"\x0a" + b"\xff" * draw(st.integers(1, 12))
        elif kind == "two_fields":
            g = good + chunk(draw(st.binary(max_size=8)))
        else:
            g = b"\x12" + _varint(len(data)) + data
        assume(not is_chunk(g) and not (len(g) and g[0] == 0x0A and _single_field(g)))
        return g

    @S
    @given(before=st.binary(max_size=64), garbage=garbage_chunk(), after=st.booleans())
    def garbage_test(before, garbage, after):
        """nbytes counts the good chunks only: a daemon that skipped the
        garbage would accept the stream."""
        after = after or not before
        chunks = [chunk(before), garbage] + ([chunk(b"x")] if after else [])
        md = f.md + (("tierflow-session", f.session), ("tierflow-nbytes", str(len(before) + after)))
        code, details, _ = f.upload(chunks, md)
        f.check(f"Upload with a garbage chunk {garbage[:24].hex()}", code, details, {"INVALID_ARGUMENT"})
    f.run_category("upload:garbage_chunks", garbage_test)

    @few
    @given(size=st.integers(17 << 10, 64 << 10), where=st.sampled_from(["session", "nbytes", "keys"]))
    def big_md_test(size, where):
        md = list(f.md)
        if where == "keys":
            md += [(f"x-fuzz-{i}", "v" * 60) for i in range(size // 64)]
            md += [("tierflow-session", f.session), ("tierflow-nbytes", "4")]
        elif where == "session":
            md += [("tierflow-session", "s" * size), ("tierflow-nbytes", "4")]
        else:
            md += [("tierflow-session", f.session), ("tierflow-nbytes", "1" * size)]
        code, details, _ = f.upload([chunk(b"abcd")], tuple(md))
        f.check(f"Upload with {size:,} bytes of metadata in {where}", code, details, {"RESOURCE_EXHAUSTED"},
                core=where == "keys")
    f.run_category("upload:oversized_metadata", big_md_test)

    def valid_upload(n):
        """A valid Upload, staged into a valid Run, and back (inline or by
        Download): the path the fuzz surrounds works."""
        data = os.urandom(n)
        md = f.md + (("tierflow-session", f.session), ("tierflow-nbytes", str(n)))
        code, details, raw = f.upload([chunk(data[i:i + (1 << 20)]) for i in range(0, n, 1 << 20)], md)
        f.check(f"valid Upload of {n} bytes", code, details, {"OK"})
        m = pb.RunRequest(session=f.session, orch=f.echo_key, tensors=[pb.Tensor(
            tag=3, dtype="|u1", shape=[n], nbytes=n, staged=pb.UploadReply.FromString(raw).staged)])
        code, details, raw = f.unary("Run", m.SerializeToString())
        f.check("Run of a staged upload", code, details, {"OK"})
        out = pb.RunReply.FromString(raw).outputs[0]
        if out.WhichOneof("source") == "data":
            back = out.data
        else:
            code, details, msgs = f.streaming("Download", pb.DownloadRequest(
                session=f.session, staged=out.staged).SerializeToString())
            f.check("Download of a staged output", code, details, {"OK"})
            back = b"".join(pb.Chunk.FromString(x).data for x in msgs)
        assert back == data, f"a staged tensor of {n} bytes came back changed"

    c = f.category("upload:valid")
    for size in (1, 4096, (1 << 20) + 3):
        try:
            valid_upload(size)
        except Exception as e:
            text = f"a valid upload of {size} bytes: {type(e).__name__}: {e}"
            if not any(str(e)[:60] in v for v in c["violations"]):
                c["violations"].append(text)
    f.serving("upload:valid")

    # 5. Attach intervals on fresh sessions: beats come at a sane pace
    @settings(S, max_examples=8)
    @given(interval=st.one_of(st.sampled_from([math.inf, -math.inf, -1.0, 0.0, 1e-300, 5e-324, 1e300]),
                              st.floats(allow_nan=False)), name=texts(100).filter(bool))
    def interval_test(interval, name):
        """A valid Attach: it beats at once, then at most every 50 ms."""
        sid = f.open_session(name)
        fn = f.channel.unary_stream(SERVICE + "Attach", request_serializer=pb.AttachRequest.SerializeToString,
                                    response_deserializer=pb.Beat.FromString)
        call = fn(pb.AttachRequest(session=sid, interval_s=interval), metadata=f.md, timeout=0.5)
        beats, code, details = 0, "OK", ""
        try:
            for _ in call:
                beats += 1
                if beats > 50:
                    break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                code, details = e.code().name, e.details() or ""
        finally:
            call.cancel()
        f.check(f"Attach interval {interval}", code, details, {"OK"})
        assert 1 <= beats <= 12, f"Attach with interval {interval} beat {beats} times in 0.5 s (at most every 50 ms)"
    f.run_category("attach:intervals", interval_test)

    # 6. raw bytes on the TCP port, not gRPC at all
    host, port = f.address.rsplit(":", 1)
    closed = {"by_daemon": 0, "timeout": 0}

    def raw_tcp(data):
        s = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(3)
            while True:
                try:
                    if not s.recv(65536):
                        closed["by_daemon"] += 1
                        return
                except socket.timeout:
                    closed["timeout"] += 1
                    return
                except ConnectionResetError:
                    closed["by_daemon"] += 1
                    return
        finally:
            s.close()

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    @st.composite
    def h2_frames(draw):
        out = PREFACE
        for _ in range(draw(st.integers(1, 6))):
            payload = draw(st.binary(max_size=64))
            ftype = draw(st.integers(0, 12))
            out += struct.pack(">I", len(payload))[1:] + bytes([ftype, draw(st.integers(0, 255))]) + \
                struct.pack(">I", draw(st.integers(0, (1 << 32) - 1))) + payload
        return out

    @S
    @given(data=st.one_of(st.binary(min_size=1, max_size=4096), h2_frames(),
                          st.just(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                          st.binary(min_size=1, max_size=64).map(lambda b: PREFACE[:len(PREFACE) // 2] + b)))
    def tcp_test(data):
        f.cat["tried"] += 1
        f.cat["codes"]["bytes_sent"] = f.cat["codes"].get("bytes_sent", 0) + len(data)
        raw_tcp(data)
    f.run_category("tcp:raw", tcp_test)
    f.cat["connections"] = dict(closed)
    f.cat["malformed"] = f.cat["tried"]

    # 7. no token, or a wrong one: nothing is read, nothing unpickled
    marker_payload = pickle.dumps(Marker(f.marker), protocol=5)
    marker_key = key_of("orch", marker_payload)
    r0 = f.ready()
    wrong = st.one_of(st.none(), st.just(f.token), st.just("Bearer"), st.just("Bearer "),
                      st.just("bearer " + f.token), st.just("Bearer " + f.token[:-1]),
                      st.just("Bearer " + f.token + "x"), st.just("Basic " + f.token),
                      st.just("Bearer  " + f.token), ascii_text.map(lambda s: "Bearer " + s))
    valid_for = {
        "Hello": pb.HelloRequest(), "Has": pb.HasRequest(keys=[marker_key]),
        "Push": pb.PushRequest(kind=4, key=marker_key, payload=marker_payload, name="marker"),
        "OpenSession": pb.OpenRequest(name="intruder"), "Attach": pb.AttachRequest(session=f.session, interval_s=1),
        "Run": pb.RunRequest(session=f.session, orch=marker_key), "Download": pb.DownloadRequest(session=f.session),
        "Ready": pb.ReadyRequest(), "Stats": pb.StatsRequest(session=f.session)}

    @settings(S, max_examples=max(n, 150))
    @given(method=st.sampled_from([*REQUESTS, "Upload"]), auth=wrong, valid=st.booleans(),
           raw=st.binary(max_size=200))
    def noauth_test(method, auth, valid, raw):
        assume(auth != "Bearer " + f.token)
        md = () if auth is None else (("authorization", auth),)
        if method == "Upload":
            md += (("tierflow-session", f.session), ("tierflow-nbytes", "5"))
            code, details, _ = f.upload([chunk(b"hello")] if valid else [raw], md)
        else:
            code, details, _ = f.call(method, valid_for[method].SerializeToString() if valid else raw, md)
        f.check(f"{method} with authorization {auth!r:.30}", code, details, {"UNAUTHENTICATED"})
    f.run_category("noauth", noauth_test)
    r1 = f.ready()
    c = f.categories["noauth"]
    c["refused_before_after"] = [r0.get("refused_calls"), r1.get("refused_calls")]
    c["pushed_before_after"] = [r0.get("catalog", {}).get("pushed"), r1.get("catalog", {}).get("pushed")]
    c["sessions_before_after"] = [r0.get("sessions"), r1.get("sessions")]
    c["marker_after_fuzz"] = os.path.exists(f.marker)
    # The same Push and Run with the token do unpickle (the marker appears):
    # the check above could have seen it.
    code, details, _ = f.unary("Push", valid_for["Push"].SerializeToString())
    code2, details2, _ = f.unary("Run", valid_for["Run"].SerializeToString())
    c["control_with_token"] = {"push": code, "run": code2, "marker": os.path.exists(f.marker),
                               "pushed": f.ready().get("catalog", {}).get("pushed")}
    f.serving("noauth control")


def _single_field(g):
    """True when g is field 1 (bytes) once, its length in any varint form:
    the daemon's raw Chunk reader takes that as a chunk."""
    n, shift, i = 0, 0, 1
    while i < len(g) and shift <= 35:
        b = g[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return i + n == len(g)
    return False


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("token")
    p.add_argument("--out", required=True)
    p.add_argument("--marker", required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--examples", type=int, default=150)
    a = p.parse_args(argv)
    # a generator bug that builds a giant message fails here with MemoryError,
    # instead of the machine's OOM killer choosing among everyone's processes
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30 if hard == resource.RLIM_INFINITY else min(8 << 30, hard), hard))
    s = a.seed if a.seed is not None else random.randrange(1 << 32)
    random.seed(s)
    t0 = time.monotonic()
    f = Fuzzer(a.address, a.token, a.marker, s)
    error = None
    try:
        categories(f, a.examples)
    except Exception:
        error = traceback.format_exc()[-3000:]
    # the fuzzer's session: no leak of arena bytes by the failed uploads and runs. A handler
    # thread of a call the client already gave up on may still hold its buffer for a moment:
    # wait (bounded) for the arena to come back rather than read it at one instant.
    deadline = time.monotonic() + 15.0
    while True:
        r = f.ready()
        if r.get("arena", {}).get("free_bytes") == f.ready0["arena"]["free_bytes"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    f.attach_call.cancel()
    summary = {
        "seed": s, "seconds": round(time.monotonic() - t0, 2), "error": error,
        "total_tried": sum(c["tried"] for c in f.categories.values()),
        "categories": f.categories, "serving_checks": f.serving_checks,
        "arena_free_before_after": [f.ready0["arena"]["free_bytes"], r.get("arena", {}).get("free_bytes")],
        "beats": f.beats,
    }
    with open(a.out, "w") as fh:
        json.dump(summary, fh, indent=1)
    print(json.dumps({"total_tried": summary["total_tried"], "seconds": summary["seconds"]}))


if __name__ == "__main__":
    main(sys.argv[1:])
