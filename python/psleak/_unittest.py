"""``MemoryLeakTestCase``: the unittest front end, a drop-in for psleak 0.1.6's."""

from __future__ import annotations

import functools
import unittest
from collections.abc import Callable
from typing import Any, ClassVar

from . import _core
from ._checkers import Checkers


class LeakTest:
    """One generated test for :meth:`MemoryLeakTestCase.auto_generate`: the function, its
    positional arguments, and knobs for :meth:`MemoryLeakTestCase.execute`."""

    __slots__ = ("args", "execute_kwargs", "fun")

    def __init__(self, fun: Callable[..., Any], *args: Any, **execute_kwargs: Any) -> None:
        if not callable(fun):
            raise TypeError(f"'fun' must be callable (got {fun!r})")
        unknown = set(execute_kwargs) - set(_core.KNOBS)
        if unknown:
            raise TypeError(f"LeakTest got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        self.fun = fun
        self.args = args
        self.execute_kwargs = execute_kwargs

    def __repr__(self) -> str:
        return f"LeakTest({_core.qualname(self.fun)}, args={self.args!r}, {self.execute_kwargs!r})"


class MemoryLeakTestCase(unittest.TestCase):
    """A ``unittest.TestCase`` whose :meth:`execute` fails the test when a function leaks
    memory or leaves resources open.

    Class attributes are the defaults of every :meth:`execute` call; set them on a subclass,
    or on this class to change them everywhere.
    """

    #: Calls before measuring (lazy initialisation, caches).
    warmup_times: ClassVar[int] = _core.DEFAULTS["warmup_times"]
    #: Calls in the first measured run; later runs double it, up to 16 times.
    times: ClassVar[int] = _core.DEFAULTS["times"]
    #: Most measured runs.
    retries: ClassVar[int] = _core.DEFAULTS["retries"]
    #: Growth per run tolerated: bytes for every metric, or a dict per metric
    #: (``heap``, ``mmap``, ``anon`` (or ``uss``, its name in psleak 0.1.6), ``rss``, ``vms``,
    #: ``blocks``); a number of bytes lets through bytes/512 Python blocks.
    tolerance: ClassVar[int | dict[str, int]] = _core.DEFAULTS["tolerance"]
    #: Called before each precise measurement, to empty your own caches.
    trim_callback: ClassVar[Callable[[], Any] | None] = None
    #: Which checks run.
    checkers: ClassVar[Checkers] = _core.DEFAULTS["checkers"]
    #: Most the process may grow during a check (bytes); growing further is a leak.
    memory_budget: ClassVar[int] = _core.DEFAULTS["memory_budget"]
    #: Count native allocations exactly and say where leaks allocate (Linux, glibc);
    #: False judges from the allocator's and the kernel's counters alone.
    track_native: ClassVar[bool] = _core.DEFAULTS["track_native"]
    #: 0: quiet; 1: print the report of every check; 2: also a line per run.
    verbosity: ClassVar[int] = 0

    @classmethod
    def auto_generate(cls) -> dict[str, LeakTest]:
        """Override to return ``{name: LeakTest(...)}``; each entry becomes a method
        ``test_leak_<name>``."""
        return {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        generated = cls.auto_generate()
        if not isinstance(generated, dict):
            raise TypeError(f"{cls.__name__}.auto_generate() must return a dict (got {type(generated).__name__})")
        for name, entry in generated.items():
            if not isinstance(entry, LeakTest):
                raise TypeError(f"{cls.__name__}.auto_generate()[{name!r}] must be a LeakTest (got {entry!r})")
            test_name = f"test_leak_{name}"
            if test_name in cls.__dict__:
                raise RuntimeError(f"{cls.__name__} already defines {test_name}")
            setattr(cls, test_name, _generated_test(test_name, entry))

    def call(self, fun: Callable[[], Any]) -> Any:
        """Every call of the function under test goes through here; override to wrap it."""
        return fun()

    def execute(
        self,
        fun: Callable[..., Any],
        *args: Any,
        warmup_times: int | None = None,
        times: int | None = None,
        retries: int | None = None,
        tolerance: int | dict[str, int] | None = None,
        trim_callback: Callable[[], Any] | None = None,
        checkers: Checkers | None = None,
        memory_budget: int | None = None,
        verbosity: int | None = None,
    ) -> _core.Report:
        """Checks ``fun(*args)`` for leaks; fails the test with a :class:`psleak.Error`
        subclass if it leaks. Keyword arguments override the class attributes. Returns the
        report."""
        if not callable(fun):
            raise TypeError(f"'fun' must be callable (got {fun!r})")
        target = functools.partial(fun, *args) if args else fun
        call = self.call

        def through_hook() -> Any:
            return call(target)

        given = {
            "warmup_times": warmup_times,
            "times": times,
            "retries": retries,
            "tolerance": tolerance,
            "trim_callback": trim_callback,
            "checkers": checkers,
            "memory_budget": memory_budget,
            "verbosity": verbosity,
        }
        return self._run(through_hook, _core.qualname(fun), given, subject=target)

    def _run(self, fun: Callable[[], Any], name: str, given: dict[str, Any], subject: object = None) -> _core.Report:
        """Checks ``fun`` (already going through :meth:`call`) with the knobs in ``given``
        (None: the class attribute)."""
        knobs = _core.resolve_knobs(self, **{k: given.get(k) for k in _core.KNOBS})
        report = _core.check(fun, name=name, subject=subject, **knobs)
        report.raise_for_leak()
        return report

    def execute_w_exc(
        self,
        exc: type[BaseException] | tuple[type[BaseException], ...],
        fun: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> _core.Report:
        """Like :meth:`execute`, for a function that must raise ``exc`` on every call; the
        test fails if a call does not raise. Other exceptions propagate."""
        target = functools.partial(fun, *args) if args else fun
        name = _core.qualname(fun)

        def expect_raise() -> None:
            try:
                self.call(target)
            except exc:
                return
            self.fail(f"{name!r} did not raise {exc}")

        unknown = set(kwargs) - set(_core.KNOBS)
        if unknown:
            raise TypeError(f"execute_w_exc() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        return self._run(expect_raise, name, kwargs)


def _generated_test(test_name: str, entry: LeakTest) -> Callable[[MemoryLeakTestCase], None]:
    def test(self: MemoryLeakTestCase) -> None:
        # One callable, as psleak 0.1.6 passes it: a subclass may override
        # execute(self, fun, **kwargs) without positional arguments.
        fun = functools.partial(entry.fun, *entry.args) if entry.args else entry.fun
        self.execute(fun, **entry.execute_kwargs)

    test.__name__ = test.__qualname__ = test_name
    test.__doc__ = f"Leak test of {_core.qualname(entry.fun)} (generated)."
    return test
