"""Run one leak-matrix case under whichever ``psleak`` the running interpreter imports.

The child process of ``bench/matrix.py``: executed with ``.venv/bin/python`` it runs our
psleak, with ``.venv-psleak016/bin/python`` it runs psleak 0.1.6 from PyPI. Both are
driven the same way, with default settings (plus the case's own knobs, ``case.knobs``):
``psleak.MemoryLeakTestCase().execute(case.fun, **case.execute_kwargs(psleak))`` in a
TestCase subclass with a runTest method, exactly as ``tests/test_matrix.py`` does.

    python bench/run_case.py CASE RESULT_JSON    # run one case, write its result
    python bench/run_case.py --list              # print the catalogue as JSON

The result file gets one JSON object: ``outcome`` is ``"raised"`` (a ``psleak.Error``,
class name in ``exception``), ``"clean"``, ``"skipped"`` (``unittest.SkipTest``) or
``"error"`` (any other exception: ``exception``, ``errno``, ``message``), plus
``execute_s`` (instantiation + execute(), measured here) and the tool's version. The file
is opened before the case runs and, should the case exhaust the address space, a
preformatted record is written without allocating (see ``_write_oom``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import unittest
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

# Written when the case ran out of memory: a bytes constant, so that reporting it needs no
# allocation (the leaked memory is still held: the address space may be full).
_OOM_RECORD = b'{"outcome": "error", "exception": "MemoryError", "errno": null, "message": "out of memory"}\n'


def _tool() -> tuple[Any, str]:
    """Import psleak and return it with its installed version."""
    import psleak

    try:
        from importlib.metadata import version

        ver = version("psleak")
    except Exception:  # a source checkout without metadata
        ver = str(getattr(psleak, "__version__", "?"))
    return psleak, ver


def list_cases() -> None:
    """Print the leak matrix as a JSON list (name, kind, expect, heavy, note, knobs, site, pending)."""
    import leakmatrix

    rows = [
        {
            "name": c.name,
            "kind": c.kind,
            "expect": c.expect,
            "heavy": c.heavy,
            "note": c.note,
            "knobs": {k: v for k, v in c.knobs},
            "site": c.site,
            "pending": c.pending,
        }
        for c in leakmatrix.CASES
    ]
    print(json.dumps(rows))


def _write_oom(fd: int) -> None:
    """Record an out-of-memory outcome on ``fd`` without allocating."""
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, _OOM_RECORD)
    except OSError:
        pass


def run(name: str, result_path: str) -> None:
    """Run case ``name`` once under ``execute()`` and write its result to ``result_path``."""
    fd = os.open(result_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    psleak, ver = _tool()
    import leakmatrix

    case = leakmatrix.by_name(name)

    class Case(psleak.MemoryLeakTestCase):  # type: ignore[misc,name-defined]
        def runTest(self) -> None:
            pass

    result: dict[str, Any] = {"tool_version": ver, "pythonmalloc": os.environ.get("PYTHONMALLOC")}
    start = time.perf_counter()
    try:
        Case().execute(case.fun, *case.args, **case.execute_kwargs(psleak))
        result["outcome"] = "clean"
    except unittest.SkipTest as e:
        result.update(outcome="skipped", message=str(e))
    except psleak.Error as e:
        result.update(outcome="raised", exception=type(e).__name__, message=str(e)[:2000])
    except MemoryError:
        _write_oom(fd)
        os._exit(3)
    except BaseException as e:
        errno = getattr(e, "errno", None)
        result.update(
            outcome="error",
            exception=type(e).__name__,
            errno=errno if isinstance(errno, int) else None,
            message=str(e)[:2000],
        )
    result["execute_s"] = time.perf_counter() - start
    try:
        os.write(fd, (json.dumps(result) + "\n").encode())
    except MemoryError:
        _write_oom(fd)
        os._exit(3)
    os.close(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    # Leaked native threads block forever and leaked fds stay open: end the process at once
    # rather than through interpreter finalisation (each case has its own process).
    os._exit(0)


def main() -> None:
    """Command line: ``--list``, or ``CASE RESULT_JSON``."""
    args = sys.argv[1:]
    if args == ["--list"]:
        list_cases()
    elif len(args) == 2:
        run(args[0], args[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
