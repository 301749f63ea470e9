"""numpy 1.24.0's ``ndarray.fill(v)`` on an object array keeps one reference to ``v`` per
call (fixed in 1.24.1 by numpy pull request #22798, "Fix refcounting errors found
using pytest-leaks"): psleak must report it both as
``execute(arr.fill, v)`` and as ``execute(lambda: arr.fill(v))``, and pass 1.24.1.

Each numpy lives in its own venv (``make numpy-venvs``: ``.venv-numpy-1.24.0``,
``.venv-numpy-1.24.1``); the check runs there with this checkout's psleak on
``PYTHONPATH`` (the native module is abi3: one build serves every Python 3.9+). A version
whose venv is missing is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import json, sys, warnings
import numpy as np
import psleak

warnings.simplefilter("ignore", RuntimeWarning)

class Case(psleak.MemoryLeakTestCase):
    def runTest(self):
        pass

arr = np.empty(8, dtype=object)
v = object()
out = {"numpy": np.__version__}
for how, fun, args in [("arg", arr.fill, (v,)), ("lambda", lambda: arr.fill(v), ())]:
    try:
        Case().execute(fun, *args)
        out[how] = {"verdict": "clean"}
    except psleak.Error as e:
        out[how] = {"verdict": type(e).__name__, "refcounts": e.report.data.get("refcounts"),
                    "text": str(e)}
print(json.dumps(out))
"""


def run(version: str) -> dict:
    python = ROOT / f".venv-numpy-{version}" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no {python.parent.parent.name} (make numpy-venvs)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    proc = subprocess.run(
        [str(python), "-c", SCRIPT], check=False, capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["numpy"] == version
    return out


def test_numpy_1_24_0_object_fill_leaks_references() -> None:
    out = run("1.24.0")
    for how, role in (("arg", "argument 0"), ("lambda", None)):
        assert out[how]["verdict"] == "RefcountLeakError", out[how]
        (found, *_) = out[how]["refcounts"]
        assert found["type"] == "object"
        assert found["role"] == role
        assert found["refs_per_call"] == pytest.approx(1.0)


def test_numpy_1_24_1_object_fill_is_clean() -> None:
    out = run("1.24.1")
    assert out["arg"] == {"verdict": "clean"}
    assert out["lambda"] == {"verdict": "clean"}


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:xdist"]))
