"""psleak's pytest plugin: the ``leakcheck`` fixture and the ``leakcheck`` marker.

* ``leakcheck(fun, *args, **knobs)`` checks ``fun(*args)`` exactly like
  :meth:`psleak.MemoryLeakTestCase.execute` (same knobs, same exceptions, same report),
  fails the test with the leak report, and returns the :class:`psleak.Report`.
* ``@pytest.mark.leakcheck(**knobs)`` sets the knobs of the fixture for one test (or a
  class, a module with ``pytestmark``). On a test that does not use the fixture, the test
  body itself is checked: it is called repeatedly with its fixtures, which are set up and
  torn down once, outside the measurement. One line turns an existing test into a leak test.
* Defaults of every check: ``--leakcheck-times``, ``--leakcheck-warmup-times``,
  ``--leakcheck-retries``, ``--leakcheck-tolerance``, ``--leakcheck-checkers``,
  ``--leakcheck-memory-budget`` and the ini keys ``leakcheck_times``... The command line
  wins over the ini file; the marker and the fixture's keyword arguments win over both.

pytest loads this plugin in every run of an environment where psleak is installed, so it
imports no native code until a test asks for a leak check; tests that do not ask are not
measured. ``-p no:psleak`` disables it.
"""

from __future__ import annotations

import functools
import inspect
import os
import unittest
from typing import TYPE_CHECKING, Any

import pytest

from . import _cli  # pure Python, like this module

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._core import Report

#: The knobs from the command line and the ini file, parsed and validated.
_CONFIG_KNOBS = pytest.StashKey[dict[str, Any]]()
#: Set on a test whose body the marker checks: its resolved knobs.
_LOOP_KNOBS = pytest.StashKey[dict[str, Any]]()

_MARKER_HELP = (
    "leakcheck(**knobs): check for leaks. With the leakcheck fixture: that test's knobs; without it: "
    "the test body is called repeatedly and must not leak (warmup_times, times, retries, tolerance, "
    "trim_callback, checkers, memory_budget)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--leakcheck-<knob>`` options and ``leakcheck_<knob>`` ini keys."""
    group = parser.getgroup("psleak", "leak checks (psleak)")
    for name, (metavar, text) in _cli.TEXT_KNOBS.items():
        group.addoption(
            _option(name),
            dest=f"leakcheck_{name}",
            metavar=metavar,
            default=None,
            help=f"{text} (for every leak check; ini: leakcheck_{name})",
        )
        parser.addini(f"leakcheck_{name}", f"psleak, for every leak check: {text}", default="")


def pytest_configure(config: pytest.Config) -> None:
    """Registers the marker; parses and validates the knobs of the command line and ini
    file (a bad value is a usage error naming the option)."""
    config.addinivalue_line("markers", _MARKER_HELP)
    config.stash[_CONFIG_KNOBS] = _config_knobs(config)


def _option(name: str) -> str:
    return "--leakcheck-" + name.replace("_", "-")


def _config_knobs(config: pytest.Config) -> dict[str, Any]:
    knobs = {}
    for name in _cli.TEXT_KNOBS:
        text = config.getoption(f"leakcheck_{name}")
        source = _option(name)
        if text is None:
            text = config.getini(f"leakcheck_{name}")
            source = f"ini option leakcheck_{name}"
        if not isinstance(text, str) or not text.strip():
            continue
        try:
            knobs[name] = _cli.parse_knob(name, text)
        except (TypeError, ValueError) as e:
            raise pytest.UsageError(f"{source}: {e}") from None
        except ImportError as e:
            raise pytest.UsageError(f"{source}: psleak's native module cannot be loaded: {e}") from None
    return knobs


def pytest_report_header(config: pytest.Config) -> list[str]:
    """What makes leak checks less reliable in this run, in a line or two."""
    lines = []
    if os.environ.get("PYTHONMALLOC") != "malloc":
        lines.append(
            "psleak: PYTHONMALLOC=malloc not set: Python objects are checked as pymalloc blocks (an exact "
            "count, sizes from tracemalloc), C allocations as heap bytes; every check runs"
        )
    if _parallel(config):
        lines.append(
            "psleak: tests run in parallel (xdist): each worker checks its own process, where execnet's "
            "I/O thread allocates beside the test: noise the runs must outlast, and slower checks"
        )
    return lines


def _parallel(config: pytest.Config) -> bool:
    if os.environ.get("PYTEST_XDIST_WORKER") or hasattr(config, "workerinput"):
        return True
    numprocesses = getattr(config.option, "numprocesses", None)
    return bool(numprocesses) and getattr(config.option, "dist", "no") != "no"


def _marker_knobs(item: pytest.Item) -> dict[str, Any] | None:
    """The knobs of the ``leakcheck`` markers of ``item`` (the closest wins), or None when
    it has none. Raises TypeError naming an unknown knob."""
    __tracebackhide__ = True
    marks = list(item.iter_markers("leakcheck"))
    if not marks:
        return None
    from . import _core  # noqa: PLC0415 - native: only for tests that ask

    knobs: dict[str, Any] = {}
    for mark in reversed(marks):  # farthest first: class, then function
        if mark.args:
            raise TypeError(f"@pytest.mark.leakcheck takes keyword arguments only (got {mark.args!r})")
        unknown = sorted(set(mark.kwargs) - set(_core.KNOBS))
        if unknown:
            raise TypeError(
                f"@pytest.mark.leakcheck got unexpected keyword argument(s): {', '.join(unknown)} "
                f"(valid: {', '.join(_core.KNOBS)})"
            )
        knobs.update(mark.kwargs)
    return knobs


def _defaults(item: pytest.Item) -> dict[str, Any]:
    """The knobs of a check in ``item``: command line and ini file, then markers."""
    return {**_stashed(item.config), **(_marker_knobs(item) or {})}


def _stashed(config: pytest.Config) -> dict[str, Any]:
    knobs: dict[str, Any] = config.stash.get(_CONFIG_KNOBS, {})
    return knobs


def _resolve(knobs: dict[str, Any]) -> dict[str, Any]:
    from . import _core  # noqa: PLC0415 - native: only for tests that ask

    return _core.resolve_knobs(None, **knobs)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Validates the marker before any fixture is set up; marks the tests whose body the
    marker checks."""
    __tracebackhide__ = True
    marker = _marker_knobs(item)
    if marker is None:
        return
    try:
        knobs = _resolve({**_stashed(item.config), **marker})
    except (TypeError, ValueError) as e:
        raise type(e)(f"@pytest.mark.leakcheck: {e}") from None
    if "leakcheck" in getattr(item, "fixturenames", ()):
        return  # the fixture runs the checks, with these knobs as defaults
    cls = getattr(item, "cls", None)
    if not isinstance(item, pytest.Function) or (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
        raise TypeError(
            "@pytest.mark.leakcheck without the leakcheck fixture works on pytest test functions only; "
            "in a unittest.TestCase use psleak.MemoryLeakTestCase.execute()"
        )
    if inspect.iscoroutinefunction(item.obj) or inspect.isasyncgenfunction(item.obj):
        raise TypeError("@pytest.mark.leakcheck cannot call an async test function repeatedly")
    item.stash[_LOOP_KNOBS] = knobs


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Calls the body of a test marked ``leakcheck`` (without the fixture) repeatedly,
    through the check; its fixtures are the ones set up once for the test."""
    knobs = pyfuncitem.stash.get(_LOOP_KNOBS, None)
    if knobs is None:
        return None  # pytest calls the test once
    __tracebackhide__ = True
    from . import _core  # noqa: PLC0415 - native: only for tests that ask

    funcargs = pyfuncitem.funcargs
    body = functools.partial(pyfuncitem.obj, **{arg: funcargs[arg] for arg in pyfuncitem._fixtureinfo.argnames})
    report = _core.check(body, name=pyfuncitem.name, **knobs)
    _raise_for_leak(report)
    return True


def _raise_for_leak(report: Report) -> None:
    # report.raise_for_leak(), raised from here so that the traceback stops at the test.
    __tracebackhide__ = True
    exc = report.exception()
    if exc is not None:
        raise exc


class LeakCheck:
    """The ``leakcheck`` fixture. Call it like
    :meth:`psleak.MemoryLeakTestCase.execute`: ``leakcheck(fun, *args, **knobs)``.

    ``defaults`` holds the knobs of the command line, ini file and ``leakcheck`` markers
    of the test; keyword arguments of a call win over them. ``reports`` lists the reports
    of the checks made so far in the test.
    """

    def __init__(self, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.reports: list[Report] = []

    def __call__(self, fun: Callable[..., Any], *args: Any, **knobs: Any) -> Report:
        """Checks ``fun(*args)`` for leaks; fails the test with a :class:`psleak.Error`
        subclass and the full report if it leaks. Returns the report."""
        __tracebackhide__ = True
        from . import _core  # noqa: PLC0415 - native: only for tests that ask

        if not callable(fun):
            raise TypeError(f"'fun' must be callable (got {fun!r})")
        given = {k: v for k, v in knobs.items() if v is not None}
        resolved = _core.resolve_knobs(None, **{**self.defaults, **given})
        target = functools.partial(fun, *args) if args else fun
        report = _core.check(target, name=_core.qualname(fun), **resolved)
        self.reports.append(report)
        _raise_for_leak(report)
        return report

    def __repr__(self) -> str:
        return f"<leakcheck fixture {self.defaults!r}>"


@pytest.fixture
def leakcheck(request: pytest.FixtureRequest) -> LeakCheck:
    """``leakcheck(fun, *args, **knobs)``: fails the test if ``fun(*args)`` leaks memory
    or leaves resources open (psleak); returns the report. Knobs: warmup_times, times,
    retries, tolerance, trim_callback, checkers, memory_budget; their defaults come from
    the command line (--leakcheck-times...), the ini file (leakcheck_times...) and
    @pytest.mark.leakcheck(**knobs)."""
    return LeakCheck(_defaults(request.node))
