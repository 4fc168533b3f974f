"""The README's example program runs and checks its own result."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("script, stdout, stderr", [
    ("tensor_parallel.py", "tensor_parallel: OK", "[sub 0] check:"),
    ("two_clients.py", "item 13 is corrupt", None),
    ("data_parallel.py", "data_parallel: OK (orch tasks: l3 0 ran 1, l3 1 ran 1)", "[sub 0] check:"),
    ("remote_data_parallel.py", "ran 3 chip tasks for this client", None),
])
def test_example_runs_and_checks_itself(script, stdout, stderr):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script)],
                       capture_output=True, text=True, timeout=100)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{script[:-3]}: OK" in p.stdout
    assert stdout in p.stdout
    if stderr is not None:
        assert stderr in p.stderr
