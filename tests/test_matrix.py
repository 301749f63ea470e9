"""The leak matrix under psleak's default knobs: every leak fails with the right exception
class, every clean twin and look-alike passes.

Each case runs in this process, one after the other (the suite runs with ``-p no:xdist``);
what a leaking case left behind (fds, threads) is cleaned up after it, so that it cannot
pollute the next case's resource counts. Memory it leaked stays leaked, which the next
case's verdict must tolerate: it measures growth, not level.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import leakmatrix

import psleak


@pytest.fixture(autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    leakmatrix.cleanup()


class Case(psleak.MemoryLeakTestCase):
    def runTest(self) -> None:
        pass


def _param(case: leakmatrix.Case) -> object:
    """The case as a parameter; xfail (not strict) while it waits for engine work (``leakmatrix.PENDING``)."""
    if case.pending:
        reason = f"today's engine misjudges it: pending {case.pending} (leakmatrix.PENDING)"
        return pytest.param(case, marks=pytest.mark.xfail(reason=reason, strict=False))
    return case


@pytest.mark.parametrize("case", [_param(c) for c in leakmatrix.CASES], ids=lambda c: c.name)
def test_matrix_case(case: leakmatrix.Case) -> None:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # PYTHONMALLOC not set: expected
        try:
            report = Case().execute(case.fun, *case.args, **case.execute_kwargs(psleak))
        except psleak.Error as e:
            got = type(e).__name__
            assert got == case.expect, f"{case.name}: expected {case.expect}, got {got}:\n{e}"
            elapsed = time.perf_counter() - start
            report = getattr(e, "report", None)
            if report is not None:
                # A leak never grows the process past the memory budget (64 MiB) by more
                # than one call's worth.
                assert report.data["peak_growth"] <= report.data["memory_budget"] + (4 << 20), report.text
            assert elapsed < 30, f"{case.name} took {elapsed:.1f} s"
            return
    assert case.expect is None, f"{case.name}: expected {case.expect}, got a clean verdict:\n{report.text}"
