"""The README's example program runs and checks its own result."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.timeout(120)
def test_tensor_parallel_example():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "tensor_parallel.py")],
                       capture_output=True, text=True, timeout=100)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "tensor_parallel: OK" in p.stdout
    assert "[sub 0] check:" in p.stderr


@pytest.mark.timeout(120)
def test_two_clients_example():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "two_clients.py")],
                       capture_output=True, text=True, timeout=100)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "two_clients: OK" in p.stdout
    assert "item 13 is corrupt" in p.stdout
