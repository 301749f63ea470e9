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
import sys
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
#: The checks made in a test: [checks, leaks, seconds].
_ITEM_CHECKS = pytest.StashKey[list[float]]()
#: The attribute of a test report carrying its checks; pytest-xdist sends a report's
#: attributes from the workers to the controller (TestReport keeps unknown keywords).
_REPORT_ATTR = "psleak_checks"

_MARKER_HELP = (
    "leakcheck(**knobs): check for leaks. With the leakcheck fixture: that test's knobs; without it: "
    "the test body is called repeatedly and must not leak (warmup_times, times, retries, tolerance, "
    "trim_callback, checkers, memory_budget, verbosity)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--leakcheck-<knob>`` options and ``leakcheck_<knob>`` ini keys."""
    group = parser.getgroup("psleak", "leak checks (psleak)")
    group.addoption(
        "--no-leakcheck",
        dest="no_leakcheck",
        action="store_true",
        default=None,
        help="skip every leak check: the leakcheck fixture calls the function once, a test marked "
        "leakcheck runs once; nothing is measured (ini: no_leakcheck)",
    )
    parser.addini("no_leakcheck", "psleak: skip every leak check (true/false)", type="bool", default=False)
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
    config.pluginmanager.register(_Summary(config), "psleak-summary")


def _disabled(config: pytest.Config) -> bool:
    """``--no-leakcheck`` or the ini key ``no_leakcheck``."""
    option = config.getoption("no_leakcheck")
    return bool(config.getini("no_leakcheck") if option is None else option)


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


def _checks_so_far() -> list[float]:
    """[checks, leaks, seconds] of this process so far: every check counts, whichever front
    end made it (fixture, marker, MemoryLeakTestCase, psleak.check). Zeros while the native
    module is not loaded: no check can have run."""
    # The package's attribute, as `from . import _core` finds it (pytester's in-process runs
    # take submodules out of sys.modules, not off the package).
    core = vars(sys.modules[__package__]).get("_core") if __package__ in sys.modules else None
    return list(getattr(core, "STATS", (0, 0, 0.0)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Counts the checks the test made, for the terminal summary."""
    before = _checks_so_far()
    yield
    made = [after - b for after, b in zip(_checks_so_far(), before)]
    if made[0]:
        item.stash[_ITEM_CHECKS] = made


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Puts the checks of the test on its call report (so xdist workers send them)."""
    outcome = yield
    checks = item.stash.get(_ITEM_CHECKS, None)
    if checks and call.when == "call":
        setattr(outcome.get_result(), _REPORT_ATTR, list(checks))


class _Summary:
    """Adds up the checks of the session's tests (from xdist workers' reports too) and
    prints the terminal summary. A plugin object per config, so that nested sessions
    (pytester) keep their own counts."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.checks = 0
        self.leaks = 0
        self.seconds = 0.0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        checks = getattr(report, _REPORT_ATTR, None)
        if checks:
            self.checks += int(checks[0])
            self.leaks += int(checks[1])
            self.seconds += float(checks[2])

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """When checks ran: how many, what they found, and what made them less reliable.
        Nothing in a session without checks."""
        if not self.checks or hasattr(self.config, "workerinput"):
            return  # nothing to say, or an xdist worker: the controller says it
        tr = terminalreporter
        tr.write_sep("-", "psleak")
        found = f"{self.leaks} found leaking" if self.leaks else "none leaked"
        plural = "s" if self.checks != 1 else ""
        tr.write_line(f"{self.checks} leak check{plural} in {self.seconds:.2f} s: {found}")
        if os.environ.get("PYTHONMALLOC") != "malloc":
            tr.write_line(
                "PYTHONMALLOC=malloc not set: Python objects were counted as pymalloc blocks (exactly) and "
                "sized by tracemalloc, C allocations as heap bytes"
            )
        if _parallel(self.config):
            tr.write_line(
                "tests ran in parallel (xdist): each worker checked its own process, where execnet's I/O "
                "thread allocates beside the test: noise the runs had to outlast, and slower checks"
            )


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
    if "leakcheck" in getattr(item, "fixturenames", ()) or _disabled(item.config):
        return  # the fixture runs the checks, with these knobs as defaults; or none runs
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
        try:
            raise exc
        finally:
            del exc  # held by this frame, in its traceback: a cycle (see Report.raise_for_leak)


class LeakCheck:
    """The ``leakcheck`` fixture. Call it like
    :meth:`psleak.MemoryLeakTestCase.execute`: ``leakcheck(fun, *args, **knobs)``.

    ``defaults`` holds the knobs of the command line, ini file and ``leakcheck`` markers
    of the test; keyword arguments of a call win over them. ``reports`` lists the reports
    of the checks made so far in the test. ``disabled`` (``--no-leakcheck``): each call
    calls the function once and returns None.
    """

    def __init__(self, defaults: dict[str, Any], item: pytest.Item | None = None, *, disabled: bool = False) -> None:
        self.defaults = defaults
        self.reports: list[Report] = []
        self.item = item
        self.disabled = disabled

    def __call__(self, fun: Callable[..., Any], *args: Any, **knobs: Any) -> Report | None:
        """Checks ``fun(*args)`` for leaks; fails the test with a :class:`psleak.Error`
        subclass and the full report if it leaks. Returns the report (None under
        ``--no-leakcheck``, where the function is called once)."""
        __tracebackhide__ = True
        if not callable(fun):
            raise TypeError(f"'fun' must be callable (got {fun!r})")
        if self.disabled:
            fun(*args)
            return None
        from . import _core  # noqa: PLC0415 - native: only for tests that ask

        given = {k: v for k, v in knobs.items() if v is not None}
        resolved = _core.resolve_knobs(None, **{**self.defaults, **given})
        report = _core.check(fun, *args, **resolved)
        self.reports.append(report)
        _raise_for_leak(report)
        return report

    def __repr__(self) -> str:
        return f"<leakcheck fixture {self.defaults!r}>"


@pytest.fixture
def leakcheck(request: pytest.FixtureRequest) -> LeakCheck:
    """``leakcheck(fun, *args, **knobs)``: fails the test if ``fun(*args)`` leaks memory
    or leaves resources open (psleak); returns the report. Knobs: warmup_times, times,
    retries, tolerance, trim_callback, checkers, memory_budget, verbosity; their defaults
    come from the command line (--leakcheck-times...), the ini file (leakcheck_times...) and
    @pytest.mark.leakcheck(**knobs). Under --no-leakcheck, calls ``fun(*args)`` once."""
    return LeakCheck(_defaults(request.node), request.node, disabled=_disabled(request.config))
