"""The check shared by every Python front end (unittest class, pytest plugin, CLI).

It validates the knobs, wraps the function and the Python-side hooks (garbage collection,
Python threads, gc garbage, allocated blocks) and hands them to the Rust core, which calls
the function, measures and decides. This module never judges: it turns the core's report
into a :class:`Report` and, for a leak, into the matching exception.
"""

from __future__ import annotations

import gc
import json
import linecache
import os
import sys
import threading
import tracemalloc
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from . import _psleak
from ._checkers import Checkers
from ._errors import (
    Error,
    MemoryLeakError,
    UnclosedFdError,
    UnclosedHandleError,
    UnclosedHeapCreateError,
    UnclosedNativeThreadError,
    UnclosedPythonThreadError,
    UnclosedResourceError,
    UncollectableGarbageError,
)
from ._gc import GCDebugger

#: Knob defaults, the same as psleak 0.1.6's, plus ``memory_budget``.
DEFAULTS: dict[str, Any] = {
    "warmup_times": 10,
    "times": 200,
    "retries": 10,
    "tolerance": 0,
    "trim_callback": None,
    "checkers": Checkers(),
    "memory_budget": _psleak.DEFAULT_MEMORY_BUDGET,
}
KNOBS = tuple(DEFAULTS)
#: The metrics a check measures, in report order.
METRICS: tuple[str, ...] = tuple(_psleak.METRICS)
#: The metrics in bytes (all but ``blocks``, a count).
BYTE_METRICS: tuple[str, ...] = tuple(m for m in METRICS if m != "blocks")
#: Older names of metrics, accepted in ``tolerance`` dicts: psleak 0.1.6 calls the
#: private anonymous memory ``uss``.
METRIC_ALIASES: dict[str, str] = {"uss": "anon"} if "anon" in METRICS else {}
#: Keys accepted in a ``tolerance`` dict.
TOLERANCE_KEYS: tuple[str, ...] = METRICS + tuple(METRIC_ALIASES)

_EXCEPTIONS: dict[str, type[UnclosedResourceError]] = {
    "fd": UnclosedFdError,
    "handle": UnclosedHandleError,
    "heap_create": UnclosedHeapCreateError,
    "native_thread": UnclosedNativeThreadError,
    "runtime_thread": UnclosedPythonThreadError,
    "gc_object": UncollectableGarbageError,
}


def qualname(obj: Any) -> str:
    """A readable name for a function, method, partial or callable object."""
    func = getattr(obj, "func", None)  # functools.partial
    if func is not None and not hasattr(obj, "__qualname__"):
        return qualname(func)
    return str(getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj))))


def _check_type(name: str, value: Any, types: type | tuple[type, ...]) -> None:
    # bool is an int subclass; a count given as True is a mistake.
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in _as_tuple(types)):
        return
    expected = " or ".join(t.__name__ for t in _as_tuple(types))
    raise TypeError(f"{name!r} must be instance of {expected} (got {value!r})")


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _check_min(name: str, value: int, minimum: int) -> None:
    # psleak 0.1.6's wording ("times must be >= 2"): code written for it matches on it.
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum} (got {value!r})")


def resolve_knobs(source: Any = None, **overrides: Any) -> dict[str, Any]:
    """The knobs for one check: ``overrides`` that are not None win over the attributes of
    ``source`` (a test case or its class), which win over :data:`DEFAULTS`. Validated."""
    knobs = {}
    for name in KNOBS:
        value = overrides.get(name)
        if value is None and source is not None:
            value = getattr(source, name, None)
        knobs[name] = DEFAULTS[name] if value is None and name != "trim_callback" else value
    unknown = set(overrides) - set(KNOBS)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    validate_knobs(**knobs)
    return knobs


def validate_knobs(
    *,
    warmup_times: Any,
    times: Any,
    retries: Any,
    tolerance: Any,
    trim_callback: Any,
    checkers: Any,
    memory_budget: Any,
) -> None:
    """Raises TypeError or ValueError naming the first bad knob."""
    # times >= 2 as in psleak 0.1.6: a first run of one call measures nothing but noise,
    # and code written for 0.1.6 expects times=1 to be refused.
    for name, value, minimum in (("warmup_times", warmup_times, 0), ("times", times, 2), ("retries", retries, 1)):
        _check_type(name, value, int)
        _check_min(name, value, minimum)
    _check_type("memory_budget", memory_budget, int)
    _check_min("memory_budget", memory_budget, 1 << 20)
    if memory_budget >= 1 << 64:
        raise ValueError(f"'memory_budget' must be < 2**64 bytes (got {memory_budget!r})")
    _check_type("tolerance", tolerance, (int, dict))
    if isinstance(tolerance, dict):
        for key, value in tolerance.items():
            if key not in TOLERANCE_KEYS:
                raise ValueError(f"invalid tolerance key {key!r} (valid: {', '.join(TOLERANCE_KEYS)})")
            if key in METRIC_ALIASES and METRIC_ALIASES[key] in tolerance:
                raise ValueError(f"tolerance names {key!r} and {METRIC_ALIASES[key]!r}, the same metric: give one")
            _check_type(f"tolerance[{key!r}]", value, int)
            _check_min(f"{key!r} tolerance", value, 0)
    else:
        _check_min("tolerance", tolerance, 0)
    if trim_callback is not None and not callable(trim_callback):
        raise TypeError(f"'trim_callback' must be callable or None (got {trim_callback!r})")
    _check_type("checkers", checkers, Checkers)


#: pymalloc's largest block, bytes (CPython's Objects/obmalloc.c, SMALL_REQUEST_THRESHOLD):
#: larger objects are malloc'd and show in the heap metric themselves.
_LARGEST_PYMALLOC_BLOCK = 512


def tolerance_per_metric(tolerance: int | dict[str, int]) -> dict[str, int]:
    """The tolerance of each metric for the core, from the user's ``tolerance``.

    Tolerances are bytes, as in psleak 0.1.6; ``blocks`` is a count of objects. A byte
    tolerance ``T`` tolerates ``T // 512`` blocks: a small object takes a pymalloc block of
    at most 512 bytes, so the blocks let through stand for at most ``T`` bytes (larger objects
    are malloc'd and judged in the heap metric). Applying ``T`` to the count itself would let
    ``T`` objects a run through: ``tolerance=4096`` would miss a leak of one object per call.
    A dict names the metrics it tolerates (``uss`` is accepted for ``anon``, as psleak 0.1.6
    names it); those it omits get 0, and ``blocks``, unless named, the least of its byte
    tolerances over 512.
    """
    if isinstance(tolerance, int):
        per_metric = dict.fromkeys(BYTE_METRICS, tolerance)
    else:
        per_metric = dict.fromkeys(BYTE_METRICS, 0)
        per_metric.update({METRIC_ALIASES.get(k, k): v for k, v in tolerance.items() if k != "blocks"})
    blocks = tolerance.get("blocks") if isinstance(tolerance, dict) else None
    if blocks is None:
        blocks = min(per_metric.values()) // _LARGEST_PYMALLOC_BLOCK
    return {**per_metric, "blocks": blocks}


class LeakedResource:
    """A resource a call left open, as described by the core. ``kind`` (``fd``,
    ``native_thread``, ``runtime_thread``...), ``description`` (one line), ``path`` (files),
    ``number`` (fd number or thread id)."""

    __slots__ = ("description", "kind", "number", "path")

    def __init__(self, kind: str, description: str, path: str | None, number: int | None) -> None:
        self.kind = kind
        self.description = description
        self.path = path
        self.number = number

    @property
    def fd(self) -> int | None:
        """The descriptor number, for file descriptors."""
        return self.number if self.kind == "fd" else None

    def __repr__(self) -> str:
        return self.description


class Report:
    """What a check measured and decided. ``data`` is the core's report as a dict (the same
    as ``psleak check --json`` prints), ``text`` the report for people."""

    def __init__(
        self, data: dict[str, Any], text: str, gc_objects: Mapping[str, Any] | None = None, svg: str = ""
    ) -> None:
        self.data = data
        self.text = text
        self._gc_objects = dict(gc_objects or {})
        self._svg = svg

    @property
    def name(self) -> str:
        """The function's name."""
        return str(self.data["name"])

    @property
    def verdict(self) -> str:
        """``clean``, ``memory_leak`` or ``resource_leak``."""
        return str(self.data["outcome"]["verdict"])

    @property
    def clean(self) -> bool:
        """True when nothing leaked."""
        return self.verdict == "clean"

    @property
    def verdict_line(self) -> str:
        """The one-line verdict."""
        return self.text.splitlines()[0]

    @property
    def runs(self) -> list[dict[str, Any]]:
        """Each run: ``calls``, ``growth`` per metric, ``budget_stop``."""
        return [
            {"calls": r["calls"], "growth": dict(zip(METRICS, r["growth"])), "budget_stop": r["budget_stop"]}
            for r in self.data["runs"]
        ]

    @property
    def bytes_per_call(self) -> float | None:
        """Growth per call of the leaking metric, for a memory leak."""
        if self.verdict != "memory_leak":
            return None
        return float(self.data["outcome"]["findings"][0]["per_call"])

    def to_json(self) -> str:
        """The report as JSON."""
        return json.dumps(self.data, indent=2)

    def to_svg(self) -> str:
        """The runs as an SVG chart: cumulative growth of each metric against calls."""
        return self._svg

    def exception(self) -> Error | None:
        """The exception this report stands for, or None when clean."""
        outcome = self.data["outcome"]
        if outcome["verdict"] == "memory_leak":
            return MemoryLeakError(self.text, report=self)
        if outcome["verdict"] != "resource_leak":
            return None
        leak = outcome["leaks"][0]
        cls = _EXCEPTIONS[leak["kind"]]
        extras: list[Any] = []
        for r in leak["leaked"]:
            if leak["kind"] == "gc_object" and r["id"] in self._gc_objects:
                extras.append(self._gc_objects[r["id"]])
            else:
                extras.append(LeakedResource(r["kind"], r["description"], r["path"], r["number"]))
        exc = cls(leak["count"], self.name, extras=extras, calls=leak["calls"], report=self)
        # The remaining lines (other leaking kinds, cost, notes) complete the message.
        rest = self.text.split("\n")[1 + len(leak["leaked"]) :]
        if rest:
            exc.args = (exc.args[0] + "\n" + "\n".join(rest),)
        return exc

    def raise_for_leak(self) -> None:
        """Raises the matching :class:`psleak.Error` subclass unless the report is clean."""
        exc = self.exception()
        if exc is not None:
            raise exc

    def __repr__(self) -> str:
        return f"<psleak.Report {self.verdict_line!r}>"

    def __str__(self) -> str:
        return self.text


_warned_pythonmalloc = False


def _warn_pythonmalloc() -> None:
    global _warned_pythonmalloc  # noqa: PLW0603 - warn once per process
    if _warned_pythonmalloc or os.environ.get("PYTHONMALLOC") == "malloc":
        return
    _warned_pythonmalloc = True
    warnings.warn(
        "PYTHONMALLOC=malloc is not set: Python objects live in pymalloc's arenas, which the "
        "heap metric does not see; psleak counts them exactly with sys.getallocatedblocks() "
        "instead, and every check still runs",
        RuntimeWarning,
        stacklevel=3,
    )


class _PythonHooks:
    """The Python side of a check: settling, block counts, Python threads, gc garbage."""

    def __init__(self, checkers: Checkers, trim_callback: Callable[[], Any] | None) -> None:
        self.checkers = checkers
        self.trim_callback = trim_callback
        self.gc_debugger: GCDebugger | None = None
        self.gc_objects: dict[str, Any] = {}
        self.froze = False

    def open(self) -> None:
        """Freezes what exists before the check (gc.freeze): the full collection before
        every sample then only walks objects made during the check, instead of the whole
        heap (171 ms per collection in a process holding a million dicts). Skipped when
        the program uses gc.freeze itself, so that its frozen objects stay as they are."""
        if gc.get_freeze_count() == 0:
            gc.collect()
            gc.freeze()
            self.froze = True

    def settle(self) -> None:
        if self.trim_callback is not None:
            self.trim_callback()
        gc.collect()

    def resources(self, phase: str) -> list[dict[str, str]]:
        out = []
        if self.checkers.gcgarbage and phase == "before_call":
            self.gc_debugger = GCDebugger().__enter__()
        if self.checkers.gcgarbage and phase == "after_call":
            out.extend(self._garbage())
        if self.checkers.py_threads:
            for t in threading.enumerate():
                if t.is_alive():
                    out.append({"kind": "py_thread", "id": str(t.ident), "description": repr(t)})
        return out

    def _garbage(self) -> list[dict[str, str]]:
        dbg, self.gc_debugger = self.gc_debugger, None
        if dbg is None:
            return []
        dbg.__exit__(None, None, None)
        out = []
        for obj in dbg.leaked_objects():
            key = str(id(obj))
            self.gc_objects[key] = obj
            text = repr(obj)
            out.append(
                {"kind": "gc_object", "id": key, "description": text if len(text) <= 200 else text[:197] + "..."}
            )
        return out

    def close(self) -> None:
        """Unfreezes, and leaves gc debugging if the function raised in the middle of the
        check."""
        if self.gc_debugger is not None:
            self.gc_debugger.__exit__(None, None, None)
            self.gc_debugger = None
        if self.froze:
            gc.unfreeze()
            self.froze = False


def check(
    fun: Callable[[], Any],
    *,
    name: str | None = None,
    progress: Callable[[dict[str, Any]], Any] | None = None,
    **knobs: Any,
) -> Report:
    """Runs a leak check of ``fun`` (called with no arguments) and returns the
    :class:`Report`. Knobs not given take :data:`DEFAULTS`. Exceptions raised by ``fun``
    propagate."""
    if not callable(fun):
        raise TypeError(f"'fun' must be callable (got {fun!r})")
    k = resolve_knobs(None, **knobs)
    checkers: Checkers = k["checkers"]
    if checkers.memory:
        _warn_pythonmalloc()
    tolerance = tolerance_per_metric(k["tolerance"])
    hooks = _PythonHooks(checkers, k["trim_callback"])
    try:
        hooks.open()
        data, text, svg = _psleak.run_check(
            fun,
            name=name or qualname(fun),
            warmup=k["warmup_times"],
            times=k["times"],
            retries=k["retries"],
            tolerance=tolerance,
            memory_budget=k["memory_budget"],
            memory=checkers.memory,
            fds=checkers.fds,
            threads=checkers.c_threads,
            settle=hooks.settle,
            blocks=sys.getallocatedblocks,
            resources=hooks.resources if (checkers.py_threads or checkers.gcgarbage) else None,
            progress=progress,
        )
    finally:
        hooks.close()
    if data["outcome"]["verdict"] == "memory_leak":
        sites = allocation_sites(fun, data)
        if sites:
            data["where"] = sites
            text = _insert_where(text, sites)
    return Report(data, text, hooks.gc_objects, svg)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def allocation_sites(fun: Callable[[], Any], data: dict[str, Any], top: int = 3) -> list[dict[str, Any]]:
    """Where a leak found by the core allocates: calls ``fun`` again under ``tracemalloc``
    and returns the places whose allocations grew with the calls, largest first. Each is
    ``{"bytes_per_call", "blocks_per_call", "traceback": [(file, line, code), ...]}``,
    innermost frame last.

    tracemalloc sees what goes through Python's allocators (objects, ``PyMem_*``), not a
    raw C ``malloc``: for those the list is empty and the report stays as it was. Skipped when
    tracemalloc is already tracing (the caller's own measurement is not disturbed). The calls
    are sized to stay within a quarter of the memory budget.
    """
    if tracemalloc.is_tracing():
        return []
    per_call = max(float(data["outcome"]["findings"][0]["per_call"]), 1.0)
    calls = int(min(200, max(10, data["memory_budget"] / 4 / per_call)))
    tracemalloc.start(16)
    try:
        fun()
        gc.collect()
        before = tracemalloc.take_snapshot()
        for _ in range(calls):
            fun()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, linecache.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback")
    sites = []
    for stat in stats:
        # Growth that keeps pace with the calls, not a one-off.
        if stat.count_diff < calls // 2 or stat.size_diff <= 0:
            continue
        frames = [f for f in stat.traceback if not f.filename.startswith(_PACKAGE_DIR)]
        tb = [(f.filename, f.lineno, linecache.getline(f.filename, f.lineno).strip()) for f in frames[-4:]]
        if tb:
            sites.append(
                {"bytes_per_call": stat.size_diff / calls, "blocks_per_call": stat.count_diff / calls, "traceback": tb}
            )
        if len(sites) == top:
            break
    return sites


def _insert_where(text: str, sites: list[dict[str, Any]]) -> str:
    lines = ["allocated (tracemalloc, innermost frame last):"]
    for site in sites:
        size = _psleak.format_bytes(site["bytes_per_call"])
        lines.append(f"  ~{size}/call, {site['blocks_per_call']:.1f} blocks/call from:")
        for filename, lineno, code in site["traceback"]:
            lines.append(f"    {filename}:{lineno}" + (f": {code}" if code else ""))
    first, _, rest = text.partition("\n")
    return "\n".join([first, *lines, rest]) if rest else "\n".join([first, *lines])
