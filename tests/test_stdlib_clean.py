"""No false positive on allocator-churning standard library functions, in either allocator
mode (each in a fresh process, three times: the churn is random)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("stdlib_clean.py")


@pytest.mark.parametrize("pythonmalloc", ["", "malloc"], ids=["pymalloc", "PYTHONMALLOC=malloc"])
def test_stdlib_functions_are_clean(pythonmalloc: str) -> None:
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    if pythonmalloc:
        env["PYTHONMALLOC"] = pythonmalloc
    for _ in range(3):
        out = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, check=True).stdout
        assert out.strip().endswith("false positives: 0"), out
