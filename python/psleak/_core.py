"""The check shared by every Python front end (unittest class, pytest plugin, CLI).

It validates the knobs, wraps the function and the Python-side hooks (garbage collection,
Python threads, gc garbage, allocated blocks) and hands them to the Rust core, which calls
the function, measures and decides. This module never judges: it turns the core's report
into a :class:`Report` and, for a leak, into the matching exception.
"""

from __future__ import annotations

import functools
import gc
import json
import linecache
import logging
import math
import os
import sys
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from . import _psleak, _refcount
from ._checkers import Checkers
from ._errors import (
    Error,
    MemoryLeakError,
    RefcountLeakError,
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
    "verbosity": 0,
    "track_native": True,
}
KNOBS = tuple(DEFAULTS)
#: The metrics a check measures, in report order.
METRICS: tuple[str, ...] = tuple(_psleak.METRICS)
#: The metrics in bytes (all but the counts ``blocks``, ``refs`` and ``native_blocks``).
BYTE_METRICS: tuple[str, ...] = tuple(m for m in METRICS if m not in ("blocks", "refs", "native_blocks"))
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


def _check_min(name: str, value: int, minimum: int, bits: int = 63) -> None:
    # psleak 0.1.6's wording ("times must be >= 2"): code written for it matches on it.
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum} (got {value!r})")
    # The core counts in 64-bit integers (runs in 32 bits).
    if value >= 1 << bits:
        raise ValueError(f"{name} must be < 2**{bits} (got {value!r})")


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
    verbosity: Any = 0,
    track_native: Any = True,
) -> None:
    """Raises TypeError or ValueError naming the first bad knob."""
    _check_type("track_native", track_native, bool)
    # times >= 2 as in psleak 0.1.6: a first run of one call measures nothing but noise,
    # and code written for 0.1.6 expects times=1 to be refused.
    for name, value, minimum, bits in (
        ("warmup_times", warmup_times, 0, 63),
        ("times", times, 2, 63),
        ("retries", retries, 1, 32),
    ):
        _check_type(name, value, int)
        _check_min(name, value, minimum, bits)
    _check_type("memory_budget", memory_budget, int)
    _check_min("memory_budget", memory_budget, 1 << 20, 64)
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
    _check_type("verbosity", verbosity, int)
    _check_min("verbosity", verbosity, 0)


#: pymalloc's largest block, bytes (CPython's Objects/obmalloc.c, SMALL_REQUEST_THRESHOLD):
#: larger objects are malloc'd and show in the heap metric themselves.
_LARGEST_PYMALLOC_BLOCK = 512
#: glibc's smallest malloc chunk on 64-bit, bytes (malloc.c: MINSIZE).
_SMALLEST_MALLOC_CHUNK = 32


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
    named = tolerance if isinstance(tolerance, dict) else {}
    blocks = named.get("blocks")
    if blocks is None:
        # Over the metrics 0.1.6 knows: a dict written for it names no native metric.
        blocks = min(v for k, v in per_metric.items() if k != "native_bytes") // _LARGEST_PYMALLOC_BLOCK
    # The tracked survivors are the heap's and mmap's own blocks counted exactly: unless
    # named, they get the lesser of those two tolerances (so that excusing mmap alone does
    # not excuse the heap through them), and their count the bytes over glibc's smallest
    # chunk (32 B), so the blocks let through stand for at most that many bytes.
    if "native_bytes" not in named:
        per_metric["native_bytes"] = min(per_metric["heap"], per_metric["mmap"])
    native_blocks = named.get("native_blocks")
    if native_blocks is None:
        native_blocks = per_metric["native_bytes"] // _SMALLEST_MALLOC_CHUNK
    return {**per_metric, "blocks": blocks, "native_blocks": native_blocks}


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


def report_schema() -> dict[str, Any]:
    """The JSON Schema of reports (:meth:`Report.to_json`, ``psleak check --json``), shipped
    in this package as ``report.schema.json``."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report.schema.json")
    with open(path, encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema


class Finding:
    """One metric on which memory leaks: ``metric`` (``heap``, ``blocks``...), ``per_call``
    (growth per call, in ``unit``), ``unit`` (``"bytes"``, ``"blocks"`` for Python's block
    count, ``"refs"`` for references to what the function holds), ``runs_grown`` of
    ``runs_total`` measured runs grew, ``reason`` (``consistent``, ``persistent`` or
    ``budget``)."""

    __slots__ = ("metric", "per_call", "reason", "runs_grown", "runs_total", "unit")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.metric = str(data["metric"])
        self.per_call = float(data["per_call"])
        self.unit = self.metric if self.metric in ("blocks", "refs") else "bytes"
        self.runs_grown = int(data["runs_grown"])
        self.runs_total = int(data["runs_total"])
        self.reason = str(data["reason"])

    def __repr__(self) -> str:
        rate = f"{self.per_call:.4g} {self.unit}/call"
        return f"<Finding {self.metric}: {rate}, {self.runs_grown} of {self.runs_total} runs grew>"


class Report:
    """What a check measured and decided. ``data`` is the report as a dict (the JSON
    document of ``psleak check --json``, described by ``report.schema.json`` in this
    package), ``text`` the report for people."""

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
        """Each run: ``calls``, ``growth`` (a dict by metric name), ``budget_stop``."""
        return [
            {"calls": r["calls"], "growth": dict(r["growth"]), "budget_stop": r["budget_stop"]}
            for r in self.data["runs"]
        ]

    @property
    def findings(self) -> list[Finding]:
        """The metrics on which memory leaks, the one the verdict leads with first (the one
        that best measures what leaks); empty unless memory leaks."""
        found = [Finding(f) for f in self.data["outcome"].get("findings", [])]
        lead = self.data.get("lead_metric")
        return sorted(found, key=lambda f: f.metric != lead)

    @property
    def bytes_per_call(self) -> float | None:
        """What leaks per call, in bytes: the leading finding's rate, or for leaked Python
        objects the bytes tracemalloc saw them take. None when nothing leaks, or when leaked
        objects were only counted (tracemalloc was busy)."""
        value = self.data.get("bytes_per_call")
        return None if value is None else float(value)

    def to_json(self) -> str:
        """The report as JSON."""
        return json.dumps(self.data, indent=2)

    def to_svg(self) -> str:
        """The runs as an SVG chart: cumulative growth of each metric against calls."""
        return self._svg

    def exception(self) -> Error | None:
        """The exception this report stands for, or None when clean. Its message is the
        report's text."""
        outcome = self.data["outcome"]
        if _refcount.is_refcount_leak(outcome):
            return RefcountLeakError(self.text, report=self)
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
        exc.args = (self.text,)  # the same first lines, then other kinds, cost and notes
        return exc

    def raise_for_leak(self) -> None:
        """Raises the matching :class:`psleak.Error` subclass unless the report is clean."""
        exc = self.exception()
        if exc is not None:
            try:
                raise exc
            finally:
                # This frame, in the traceback, would hold the exception: a cycle, left as
                # garbage by every failed check.
                del exc

    def __repr__(self) -> str:
        return f"<psleak.Report {self.verdict_line!r}>"

    def __str__(self) -> str:
        return self.text


class _CaptureGate:
    """Lets the first call of the function feed log and warning capture, and keeps the
    later calls from feeding it.

    pytest's logging handlers keep every record and its warnings recorder every warning
    (``warnings.catch_warnings(record=True)``): a function that logs or warns would grow
    them on every call and look like a leak. What a capture keeps is the harness's growth,
    not the function's. After the first call, records stop at pytest's handlers (a filter)
    and warnings at a ``warnings.showwarning`` that drops them; filters still apply, so a
    warning turned into an error still raises. :meth:`open` puts everything back.
    """

    def __init__(self, fun: Callable[[], Any]) -> None:
        self.fun = fun
        self.first = True
        self.handlers: list[logging.Handler] = []
        self.showwarning: Any = None
        self.dropped = 0

    def __call__(self) -> Any:
        if not self.first:
            return self.fun()
        self.first = False
        try:
            return self.fun()
        finally:
            self._close()

    def _drop_record(self, record: logging.LogRecord) -> bool:
        self.dropped += 1
        return False

    def _drop_warning(self, *args: Any, **kwargs: Any) -> None:
        self.dropped += 1

    def _close(self) -> None:
        self.handlers = [h for h in logging.getLogger().handlers if type(h).__module__.startswith("_pytest.")]
        for h in self.handlers:
            h.addFilter(self._drop_record)
        self.showwarning = warnings.showwarning
        warnings.showwarning = self._drop_warning

    def open(self) -> None:
        for h in self.handlers:
            h.removeFilter(self._drop_record)
        self.handlers = []
        if self.showwarning is not None:
            warnings.showwarning = self.showwarning
            self.showwarning = None


class _PythonHooks:
    """The Python side of a check: settling, block counts, Python threads, gc garbage."""

    def __init__(self, checkers: Checkers, trim_callback: Callable[[], Any] | None) -> None:
        self.checkers = checkers
        self.trim_callback = trim_callback
        #: Whether the memory runs found a leak (see :meth:`runs_decided`).
        self.leaked = False
        self.gc_debugger: GCDebugger | None = None
        self.gc_objects: dict[str, Any] = {}
        self.froze = False
        self.census: _refcount.Census | None = None

    def open(self) -> None:
        """Freezes what exists before the check (gc.freeze): the full collection before
        every sample then only walks objects made during the check, instead of the whole
        heap (171 ms per collection in a process holding a million dicts). Skipped when
        the program uses gc.freeze itself, so that its frozen objects stay as they are.

        Only the young generations are collected first: a full collection here walked the
        whole heap once per check (31 ms a check in psutil's test process, more than all
        of its calls), and garbage that was already old is frozen with the rest, where it
        neither frees nor changes anything during the check; the first collection after
        :meth:`close` unfreezes everything takes it."""
        if gc.get_freeze_count() == 0:
            gc.collect(1)
            gc.freeze()
            self.froze = True
        if self.checkers.refcounts:
            self.census = _refcount.Census(unfreeze=self.froze)

    def settle(self) -> None:
        if self.trim_callback is not None:
            self.trim_callback()
        gc.collect()
        # CPython's type attribute cache holds the name of each lookup it caches, in one
        # of 4,096 slots picked by the name's address: a function that builds the same name
        # afresh on every call (PyObject_GetAttrString) leaves a few of them alive per run,
        # for tens of thousands of calls, at a steady rate (psutil's disk_io_counters():
        # 0.05 blocks a call, reported as a leak). Emptied before every sample.
        _refcount.clear_caches()

    def runs_decided(self, leaked: bool, calls: int, seconds_per_call: float) -> int:
        """The core's question once the runs are decided: how many more calls to make
        before the resources after them are taken (the census's span, see
        :meth:`_refcount.Census.wanted`)."""
        self.leaked = leaked
        if self.census is None or leaked:
            return 0
        return self.census.wanted(calls, seconds_per_call)

    def resources(self, phase: str) -> list[dict[str, str]]:
        out = []
        if self.census is not None and phase == "before_runs":
            self.census.before()
        # After runs that found a leak the census is not taken: its candidates would only
        # be confirmed for a clean verdict (4-5 ms a check).
        if self.census is not None and phase == "after_runs" and not self.leaked:
            self.census.after()
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


#: The checks made in this process: [checks, leaks found, seconds]. The pytest plugin reads
#: it around each test for its summary.
STATS: list[float] = [0, 0, 0.0]


def check(
    fun: Callable[..., Any],
    /,
    *args: Any,
    name: str | None = None,
    progress: Callable[[dict[str, Any]], Any] | None = None,
    subject: object = None,
    **knobs: Any,
) -> Report:
    """Runs a leak check of ``fun(*args)`` and returns the :class:`Report`. Knobs not given
    take :data:`DEFAULTS`; ``verbosity=1`` prints the report to stderr, ``2`` also a line
    per run. Exceptions raised by ``fun`` propagate. ``subject``: the user's callable when ``fun``
    wraps it (its arguments and ``self`` are the objects whose counts the ``refs`` metric
    follows); ``fun(*args)`` by default."""
    if not callable(fun):
        raise TypeError(f"'fun' must be callable (got {fun!r})")
    if name is not None:
        _check_type("name", name, str)
    if progress is not None and not callable(progress):
        raise TypeError(f"'progress' must be callable or None (got {progress!r})")
    k = resolve_knobs(None, **knobs)
    checkers: Checkers = k["checkers"]
    if progress is None and k["verbosity"] >= 2:
        progress = _print_progress
    started = time.perf_counter()
    target = functools.partial(fun, *args) if args else fun
    gate = _CaptureGate(target)
    hooks = _PythonHooks(checkers, k["trim_callback"])
    held = _refcount.HeldReferences(target if subject is None else subject) if checkers.refcounts else None
    try:
        hooks.open()
        try:
            core = _psleak.run_check(
                gate,
                name=name or qualname(fun),
                # Defaults are passed as None: the core may shorten them for a slow function
                # (a warm-up of a tenth of a second, runs of half a second); a warmup_times
                # or times the user chose is kept as it is.
                warmup=None if k["warmup_times"] == DEFAULTS["warmup_times"] else k["warmup_times"],
                times=None if k["times"] == DEFAULTS["times"] else k["times"],
                retries=k["retries"],
                tolerance=tolerance_per_metric(k["tolerance"]),
                memory_budget=k["memory_budget"],
                memory=checkers.memory,
                fds=checkers.fds,
                threads=checkers.c_threads,
                handles=checkers.handles,
                track_native=k["track_native"],
                settle=hooks.settle,
                blocks=sys.getallocatedblocks,
                refs=held,
                resources=hooks.resources
                if (checkers.py_threads or checkers.gcgarbage or checkers.refcounts)
                else None,
                progress=progress,
                runs_decided=hooks.runs_decided,
            )
            data, text = _refcount.judged(core.data(), core.text(), held, hooks.census, gate, hooks.settle, target)
        finally:
            hooks.close()
        if (
            data["outcome"]["verdict"] == "memory_leak"
            and not _refcount.is_refcount_leak(data["outcome"])
            and not _native_code_explains(data)
        ):
            for site in allocation_sites(gate, data):
                core.add_site("tracemalloc", site["bytes_per_call"], site["blocks_per_call"], site["traceback"])
            data, text = core.data(), core.text()
        if hooks.census is not None:
            data, text = _refcount.with_notes(data, text, hooks.census.notes)
    finally:
        gate.open()
    report = Report(data, text, hooks.gc_objects, core.svg())
    STATS[0] += 1
    STATS[1] += 0 if report.clean else 1
    STATS[2] += time.perf_counter() - started
    if k["verbosity"] >= 1:
        print(report.text, file=sys.stderr, flush=True)  # noqa: T201 - verbosity 1 asks for it
    return report


def _print_progress(p: dict[str, Any]) -> None:
    print(f"psleak: run {p['run']}/{p['max_runs']}: {p['calls']} calls", file=sys.stderr, flush=True)  # noqa: T201 - verbosity 2 asks for it


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: Modules of test harnesses and launchers: their frames are the same for every leak.
_HARNESS_MODULES = ("pluggy", "_pytest", "pytest", "unittest", "runpy", "xdist", "execnet", "psleak")
#: Entry scripts of harnesses (console scripts), by name.
_HARNESS_SCRIPTS = ("pytest", "py.test", "psleak", "__main__.py")


def _harness_paths() -> tuple[str, ...]:
    """Files and directories whose frames belong to the harness, not to the code under
    test: the packages (directories) and modules (files) of :data:`_HARNESS_MODULES` that
    are loaded, and the entry script when it is a harness's."""
    paths = [_PACKAGE_DIR + os.sep]
    for name in _HARNESS_MODULES:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if not file:
            continue
        file = os.path.abspath(file)
        paths.append(os.path.dirname(file) + os.sep if hasattr(module, "__path__") else file)
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(script) in _HARNESS_SCRIPTS:
        paths.append(script)
    return tuple(paths)


def _is_harness(filename: str, paths: tuple[str, ...]) -> bool:
    return filename.startswith("<frozen ") or os.path.abspath(filename).startswith(paths)


def _is_runtime_object(path: str | None) -> bool:
    """Whether a shared object or program is the interpreter's own (libpython, or the
    python executable it is linked into)."""
    if not path:
        return False
    if os.path.basename(path).startswith("libpython"):
        return True
    return os.path.realpath(path) == os.path.realpath(sys.executable)


def _native_code_explains(data: dict[str, Any]) -> bool:
    """Whether allocation tracking already says where the leak is, in native code other
    than the interpreter's (an extension, a C library): the lead finding counts survivors
    and a site has such a frame. tracemalloc would then only repeat the Python line that
    called in (the native site has it) at the cost of 400 more calls and three snapshots."""
    findings = data["outcome"].get("findings") or [{}]
    if not str(findings[0].get("metric", "")).startswith("native_"):
        return False
    return any(
        not frame.get("python") and frame.get("object") and not _is_runtime_object(frame["object"])
        for site in data.get("sites") or ()
        for frame in site["frames"]
    )


# Longest one of tracemalloc's windows should take, seconds (see allocation_sites).
WINDOW_SECONDS = 0.25

# Blocks a tracemalloc window should see at the leak's block rate, and the fewest calls it
# makes (see allocation_sites).
WINDOW_BLOCKS = 32
MIN_WINDOW_CALLS = 20


def allocation_sites(fun: Callable[[], Any], data: dict[str, Any], top: int = 3) -> list[dict[str, Any]]:
    """Where a leak found by the core allocates: calls ``fun`` again under ``tracemalloc``
    and returns the places whose allocations grew with the calls, largest first. Each is
    ``{"bytes_per_call", "blocks_per_call", "traceback": [(file, line, code), ...]}``,
    innermost frame last, without the frames of test harnesses (pytest, pluggy, unittest,
    runpy, psleak itself).

    tracemalloc sees what goes through Python's allocators (objects, ``PyMem_*``), not a
    raw C ``malloc``: for those the list is empty. Skipped when tracemalloc is already
    tracing (the caller's own measurement is not disturbed). The calls, two windows of up
    to 200, are sized to stay within a quarter of the memory budget and, for a slow
    function, to a quarter of a second each; when the leak's block rate is known, to the
    calls that leave 32 of its blocks (at least 20): under tracemalloc every allocation of
    the calls is traced, and 400 calls of a function making 200 allocations cost half the
    check.
    """
    if tracemalloc.is_tracing():
        return []
    byte_rates = [float(f["per_call"]) for f in data["outcome"]["findings"] if f["metric"] != "blocks"]
    per_call = max([1.0, *byte_rates])
    # Two windows of `calls` calls each, together within a quarter of the budget, and for
    # a slow function a quarter of a second each (at least 10 calls: a leak it sees must
    # grow on half of them).
    calls = int(min(200, max(10, data["memory_budget"] / 8 / per_call)))
    seconds_per_call = float(data.get("seconds") or 0.0) / max(1, int(data.get("total_calls") or 0))
    if seconds_per_call > 0:
        calls = min(calls, max(10, int(WINDOW_SECONDS / seconds_per_call)))
    # A site is reported when it grew by half a block a call or more in both windows: a
    # window of 32 blocks at the fastest rate found shows every such site.
    block_rates = [
        float(f["per_call"])
        for f in data["outcome"]["findings"]
        if f["metric"] in ("blocks", "native_blocks") and float(f["per_call"]) > 0
    ]
    if block_rates:
        calls = min(calls, max(MIN_WINDOW_CALLS, math.ceil(WINDOW_BLOCKS / max(block_rates))))
    # tracemalloc's and linecache's own allocations are left out after comparing, by the
    # innermost frame of each traceback (what a Filter matches): filtering every trace of
    # every snapshot with fnmatch cost more than the calls.
    ignore = {tracemalloc.__file__, linecache.__file__}
    tracemalloc.start(16)
    try:
        snapshots: list[tracemalloc.Snapshot] = []
        fun()
        for _ in range(3):
            if snapshots:
                for _ in range(calls):
                    fun()
            gc.collect()
            snapshots.append(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    # A container the leak appends to is reallocated now and then; its old array, allocated
    # before tracing began, is never seen freed, so a window holding a reallocation counts
    # the whole new array. Of two windows, the smaller growth is the one without it.
    windows = [
        {
            stat.traceback: stat
            for stat in later.compare_to(earlier, "traceback")
            if stat.traceback[-1].filename not in ignore
        }
        for earlier, later in zip(snapshots, snapshots[1:])
    ]
    harness = _harness_paths()
    sites: list[dict[str, Any]] = []
    for traceback, first in windows[0].items():
        second = windows[1].get(traceback)
        if second is None:
            continue
        # Growth that keeps pace with the calls in both windows, not a one-off.
        if min(first.count_diff, second.count_diff) < calls // 2 or min(first.size_diff, second.size_diff) <= 0:
            continue
        frames = [f for f in traceback if not _is_harness(f.filename, harness)]
        tb = [(f.filename, f.lineno, linecache.getline(f.filename, f.lineno).strip() or None) for f in frames[-4:]]
        if tb:
            sites.append(
                {
                    "bytes_per_call": min(first.size_diff, second.size_diff) / calls,
                    "blocks_per_call": min(first.count_diff, second.count_diff) / calls,
                    "traceback": tb,
                }
            )
    sites.sort(key=lambda site: -float(site["bytes_per_call"]))
    return sites[:top]
