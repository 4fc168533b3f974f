"""The private extension's typed stubs (`tierflow/_core.pyi`, generated from
the built module by nanobind's stubgen) are checked for drift: the shipped stub
must equal the reviewed copy in tests/ut/py/stubs/, so a change to a binding's
signature or docstring shows up in review as a change to that file."""
import difflib
import os
import re

import tierflow
from tierflow import _core

HERE = os.path.dirname(os.path.abspath(__file__))
REVIEWED = os.path.join(HERE, "stubs", "_core.pyi")
SHIPPED = os.path.join(os.path.dirname(tierflow.__file__), "_core.pyi")


def test_shipped_stub_matches_the_reviewed_copy():
    assert os.path.exists(SHIPPED), "the wheel must ship tierflow/_core.pyi"
    with open(REVIEWED) as f:
        reviewed = f.read().splitlines()
    with open(SHIPPED) as f:
        shipped = f.read().splitlines()
    diff = "\n".join(difflib.unified_diff(reviewed, shipped, "reviewed", "shipped", lineterm=""))
    assert not diff, (
        "the bindings changed but tests/ut/py/stubs/_core.pyi did not; review the diff, "
        f"then copy {SHIPPED} over it:\n{diff}")


def test_every_core_name_the_package_uses_exists_and_is_stubbed():
    with open(SHIPPED) as f:
        stub = f.read()
    package = os.path.dirname(tierflow.__file__)
    used = set()
    for name in os.listdir(package):
        if name.endswith(".py"):
            with open(os.path.join(package, name)) as f:
                used |= set(re.findall(r"(?<![\w.])_core\.([A-Za-z_][A-Za-z0-9_]*)", f.read()))
    assert used, "the package should use its extension"
    missing = sorted(n for n in used if not hasattr(_core, n))
    assert not missing, f"the package uses names its extension lacks: {missing}"
    unstubbed = sorted(n for n in used if not re.search(rf"^(class|def) {n}\b|^{n}\b", stub, re.M))
    assert not unstubbed, f"names used by the package but absent from the stub: {unstubbed}"
