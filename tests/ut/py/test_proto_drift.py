"""The committed protocol code (tierflow/remote/tierflow_remote_pb2.py and
its .pyi) is what grpcio-tools generates from tierflow_remote.proto: change
the .proto, regenerate (the command is in the assertion), commit both."""
import os
import shutil
import subprocess
import sys

import pytest

import tierflow

REMOTE = os.path.join(os.path.dirname(tierflow.__file__), "remote")


def test_the_generated_code_matches_the_proto(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools generates the protocol code (pip install grpcio-tools)")
    shutil.copy(os.path.join(REMOTE, "tierflow_remote.proto"), tmp_path)
    r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.",
                        "tierflow_remote.proto"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in ("tierflow_remote_pb2.py", "tierflow_remote_pb2.pyi"):
        with open(tmp_path / name) as f:
            fresh = f.read()
        with open(os.path.join(REMOTE, name)) as f:
            committed = f.read()
        assert fresh == committed, (
            f"{name} is out of date with tierflow_remote.proto; regenerate it: cd python/tierflow/remote && "
            f"python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. tierflow_remote.proto")


def test_the_protocol_version_is_in_the_package_name():
    from tierflow.remote import wire
    with open(os.path.join(REMOTE, "tierflow_remote.proto")) as f:
        text = f.read()
    assert f"package tierflow.remote.v{wire.PROTOCOL};" in text
    assert wire.SERVICE == f"tierflow.remote.v{wire.PROTOCOL}.Daemon"
