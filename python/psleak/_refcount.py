"""References taken and never given back.

A missing ``Py_DECREF`` on an object that lives on (an argument, a module global, ``None``
before Python 3.12) grows no memory: only the object's reference count rises, one per call.
Two mechanisms find it:

* **The census.** Before the measured runs and after them, the native module reads the
  reference count of every object the garbage collector tracks and of every object they
  refer to (``None``, ints, strings, objects of C types without GC support), without
  creating a Python object (see ``crates/psleak-python/src/census.rs``). Objects whose
  count rose by :data:`MIN_GROWTH` or more are *candidates*; a leak is confirmed by calling
  the function again over windows of other sizes (:func:`keeps_pace`). A census walks the
  heap: a few tenths of a second per million objects counted (``bench/census.py``), and 16
  bytes per object held while the runs last; it is taken twice per check, never per call.
* **The subjects.** The function under test and what it holds (a bound method's ``self``,
  a ``functools.partial``'s function and arguments, a closure's variables:
  :func:`subjects`). The sum of their counts is sampled with the memory metrics after each
  run and judged by the verdict engine as the exact metric ``refs``
  (:class:`HeldReferences`), by the same rules as a memory leak; the report names the
  subject whose count rose.

Immortal objects (Python 3.12+) never change count and are skipped.
"""

from __future__ import annotations

import array
import functools
import gc
import sys
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

from . import _psleak

#: A count must rise at least this much between the two censuses to be looked at again.
MIN_GROWTH = 4
#: Most candidates confirmed (the largest rises).
MAX_CANDIDATES = 16
#: A window keeps pace when its growth is at least this share of what the rate of the
#: windows before it predicts for its calls.
PACE = 0.5
#: Confirmation windows, as multiples of the calls between the two censuses: half as many,
#: then twice as many, so that growth is seen over three sizes of window (a count that rises
#: by about the same amount whatever the window, like a cache filling slowly at random,
#: is told from one that rises with the calls).
WINDOWS = (0.5, 2.0)
#: A census slower than this (seconds, both walks) is mentioned in the report, with the
#: way to skip it.
SLOW_CENSUS = 0.25
#: Fewest calls in a confirmation window: a check of a few calls confirms over more.
MIN_WINDOW = 64
#: The windows are sized from at most this many calls of the runs: a function the memory
#: check ran 16,000 times (allocator noise) is not called 40,000 times more.
MAX_BASE = 2000
#: Calls the census should span (between its two readings): a leak on one call in 200
#: leaves 2 references over the 400 calls of a clean function's runs, under MIN_GROWTH, and
#: 5 over 1,000. The core makes more calls after the runs while they stay cheap
#: (SPAN_SECONDS, at the cost of a call in the runs).
SPAN_CALLS = 1000
#: Longest the calls added to the census's span may take, seconds, at the least: about a
#: fifth of what the census itself costs in a small process...
SPAN_SECONDS = 0.002
#: ...or this share of what the census's first reading took, when more: on a loaded
#: machine the calls are slower, and 2 ms gave a leak on one call in 200 a span of 670
#: calls (3 references, under MIN_GROWTH) in 3 checks of 12; the census is slower there
#: too.
SPAN_SHARE = 0.5
#: Growth the windows are sized to show at the slowest candidate's rate, when the runs'
#: calls give less: the counts of shared objects (``None``, ``True``, small ints) move by
#: a few either way between two readings whatever the calls (the collector, frames), and a
#: reference to ``None`` leaked on one call in 50 rose by 2 instead of 4 in a window of
#: 200 calls, below the pace, and was called clean.
WINDOW_GROWTH = 32
#: ...but a window sized for it takes at most this long (seconds), given the cost of a call
#: in the runs: a slow function is not called for minutes to confirm a rare leak.
WINDOW_SECONDS = 0.5


def is_immortal(obj: object) -> bool:
    """Whether ``obj`` is immortal (CPython 3.12+): its count never changes."""
    probe: Callable[[object], bool] | None = getattr(sys, "_is_immortal", None)
    if probe is not None:  # 3.14+
        return bool(probe(obj))
    if sys.version_info >= (3, 12):
        # Include/object.h, _Py_IsImmortal(): (int32_t)ob_refcnt < 0 on 64-bit builds.
        return bool(sys.getrefcount(obj) & 0x8000_0000)
    return False


def short_repr(obj: object, limit: int = 80) -> str:
    """``repr(obj)`` cut to ``limit`` characters; a placeholder if repr fails."""
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not hide the finding
        text = f"<{type(obj).__qualname__} object at {id(obj):#x}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def subjects(fun: object, depth: int = 3) -> list[tuple[str, object]]:
    """What the function under test holds on to, each with the role the report gives it:
    the function, a bound method's ``self``, a ``functools.partial``'s function, arguments
    and keyword arguments, a closure's variables; unwrapped ``depth`` levels deep. psleak's
    own wrappers (``execute()``'s) are unwrapped without a role of their own."""
    out: list[tuple[str, object]] = []
    seen: set[int] = set()
    # Depth first, in order, from a stack: a nested function calling itself would be a
    # reference cycle, garbage left by every check (and reported by an enclosing one).
    stack: list[tuple[str, object, int]] = [("the function", fun, 0)]
    while stack:
        role, obj, level = stack.pop()
        if id(obj) in seen or level > depth:
            continue
        seen.add(id(obj))
        own = _module_of(obj).startswith("psleak")
        if own and not isinstance(obj, types.FunctionType):
            continue  # psleak's own hooks (execute()'s bound call hook): nothing of the user's
        if role and not own:
            out.append((role, obj))
        prefix = f"{role} " if role and role != "the function" and not own else ""
        inner: list[tuple[str, object, int]] = []
        if isinstance(obj, functools.partial):
            inner.append((f"{prefix}function", obj.func, level + 1))
            inner += [(f"{prefix}argument {i}", arg, level + 1) for i, arg in enumerate(obj.args)]
            inner += [(f"{prefix}argument {key}=", arg, level + 1) for key, arg in obj.keywords.items()]
        elif isinstance(obj, types.MethodType):
            inner.append((f"{prefix}bound self", obj.__self__, level + 1))
        elif isinstance(obj, types.FunctionType) and obj.__closure__:
            for name, cell in zip(obj.__code__.co_freevars, obj.__closure__):
                try:
                    value = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                inner.append((f"{prefix}closure variable {name!r}" if not own else "", value, level + 1))
        stack += reversed(inner)
    return out


def _module_of(obj: object) -> str:
    try:
        module = getattr(obj, "__module__", None)
    except Exception:  # an object whose attributes raise is still a subject
        return ""
    return module if isinstance(module, str) else ""


class Candidate:
    """An object whose count rose during the runs, and its growth per window. (A plain
    class: a dataclass would compile its methods when psleak is first used.)"""

    __slots__ = ("calls", "growth", "obj")

    def __init__(self, obj: object, growth: list[int], calls: list[int]) -> None:
        self.obj = obj
        self.growth = growth
        self.calls = calls

    @property
    def per_call(self) -> float:
        return sum(self.growth) / max(1, sum(self.calls))


def keeps_pace(growth: Sequence[int], calls: Sequence[int]) -> bool:
    """The rule for reference leaks, given a count's growth over successive windows of
    ``calls`` calls (``growth[0]``/``calls[0]``: between the censuses, i.e. the runs). A
    count leaks when

    * it rose by :data:`MIN_GROWTH` or more over the runs;
    * it rose in every later window, by at least :data:`PACE` times what the rate of the
      windows before it predicts for that window's calls;
    * once windows of at least three sizes are in, the least-squares line through the
      (calls, growth) points rises and passes near the origin (offset at most a quarter of
      what the rate gives an average window), as the verdict engine asks of memory leaks.

    A leak's count rises in proportion to calls. A bounded cache that filled stops rising;
    a count that moves up and down (objects kept for a while, then let go) fails the pace;
    a cache that fills slowly at random rises by about as much in a short window as in a
    long one, which the line through the origin rejects.
    """
    if len(growth) != len(calls) or not growth or min(calls) <= 0:
        raise ValueError("growth and calls must be non-empty, of equal length, calls > 0")
    if growth[0] < MIN_GROWTH:
        return False
    for i in range(1, len(growth)):
        rate = sum(growth[:i]) / sum(calls[:i])
        if growth[i] < 1 or growth[i] < PACE * rate * calls[i]:
            return False
    return len(set(calls)) < 3 or _through_origin(growth, calls)


def _through_origin(growth: Sequence[int], calls: Sequence[int]) -> bool:
    n = len(growth)
    mean_c = sum(calls) / n
    mean_g = sum(growth) / n
    var = sum((c - mean_c) ** 2 for c in calls)
    if var == 0:
        return False
    rate = sum((c - mean_c) * (g - mean_g) for c, g in zip(calls, growth)) / var
    offset = mean_g - rate * mean_c
    return rate > 0 and offset <= 0.25 * rate * mean_c


def clear_caches() -> None:
    """Empties CPython's type attribute cache (Objects/typeobject.c, ``type_cache``): each
    of its 4096 entries holds a reference to an attribute name, and a class whose
    attributes change gets a new version tag, so that lookups of the same name fill new
    entries: the count of a name like ``'__init__'`` rises by hundreds over a few thousand
    calls, then stops. Clearing it before each reading keeps that out of the counts."""
    clear: Callable[[], object] | None = getattr(sys, "_clear_type_cache", None)
    if clear is not None:
        clear()


class Census:
    """The census of one check: :meth:`before` and :meth:`after` around the runs (from the
    resources hook, outside the calls), then :meth:`confirm`. ``unfreeze``: psleak froze the
    collector's objects for the check (gc.get_objects() omits frozen objects; unfreezing
    and freezing again only move lists, O(1))."""

    def __init__(self, unfreeze: bool) -> None:
        self._unfreeze = unfreeze
        self._before: Any = None
        self._grown: list[tuple[object, int]] = []
        self._frozen_by_program = False
        self.counted = 0
        self.seconds = 0.0
        #: Calls between the two readings (see :meth:`wanted`; 0: not told).
        self.span = 0

    @property
    def notes(self) -> list[str]:
        """What the report should say of the census."""
        out = []
        if self._frozen_by_program:
            out.append(
                "refcount census: objects frozen with gc.freeze() by the program are counted "
                "only where other objects refer to them"
            )
        if self.seconds > SLOW_CENSUS:
            out.append(
                f"refcount census: {self.counted:,} objects counted before and after the runs "
                f'in {self.seconds:.2f} s; Checkers.exclude("refcounts") skips it'
            )
        return out

    def _take(self, before: Any) -> Any:
        started = time.perf_counter()
        gc.collect()
        clear_caches()
        if self._unfreeze:
            gc.unfreeze()
        try:
            objects = gc.get_objects()
            # Objects the program froze itself are not in the list: count them as referents.
            user_frozen = gc.get_freeze_count() > 0
            self._frozen_by_program |= user_frozen
            immortal = sys.version_info >= (3, 12)
            if before is None:
                return _psleak.refcount_census(objects, skip_tracked_referents=not user_frozen, skip_immortal=immortal)
            return _psleak.census_growth(
                before, objects, min_growth=MIN_GROWTH, skip_tracked_referents=not user_frozen, skip_immortal=immortal
            )
        finally:
            objects = []
            if self._unfreeze:
                gc.freeze()
            self.seconds += time.perf_counter() - started

    def before(self) -> None:
        """The census before the runs."""
        self._before = self._take(None)
        self.counted = len(self._before)

    def wanted(self, calls: int, seconds_per_call: float) -> int:
        """Calls to make after runs that made ``calls`` since :meth:`before`, at about
        ``seconds_per_call`` each, before :meth:`after`: towards :data:`SPAN_CALLS`, within
        :data:`SPAN_SECONDS` or :data:`SPAN_SHARE` of the first reading's time (none when
        the cost of a call is unknown)."""
        more = 0
        if 0 < calls < SPAN_CALLS and seconds_per_call > 0:
            limit = max(SPAN_SECONDS, SPAN_SHARE * self.seconds)
            more = max(0, min(SPAN_CALLS - calls, int(limit / seconds_per_call)))
        self.span = calls + more
        return more

    def after(self) -> None:
        """The census after the runs: the objects whose count rose by MIN_GROWTH or more."""
        if self._before is None:
            return
        grown = self._take(self._before)
        self._before = None
        self._grown = [(obj, after - before) for obj, before, after in grown[:MAX_CANDIDATES]]

    def confirm(
        self, fun: Callable[[], Any], settle: Callable[[], Any], calls: int, seconds_per_call: float = 0.0
    ) -> list[Candidate]:
        """Calls ``fun`` over the confirmation windows and returns the candidates whose
        counts kept pace (:func:`keeps_pace`) since the census before the runs (``calls``
        calls ago), largest rate first. Only the candidates are read (``sys.getrefcount``),
        so a window costs its calls and nothing per object. The windows are sized from
        the runs' calls, or larger, to show :data:`WINDOW_GROWTH` at the slowest
        candidate's rate within :data:`WINDOW_SECONDS` (``seconds_per_call``: what a
        call cost in the runs, 0 if unknown)."""
        calls = self.span or calls
        alive = [Candidate(obj, [growth], [calls]) for obj, growth in self._grown if calls > 0]
        self._grown = []
        if not alive:
            return []
        base = float(min(calls, MAX_BASE))
        need = WINDOW_GROWTH / min(c.per_call for c in alive)
        if seconds_per_call > 0:
            need = min(need, WINDOW_SECONDS / seconds_per_call / max(WINDOWS))
        base = max(base, need)
        for factor in WINDOWS:
            if not alive:
                break
            window = max(MIN_WINDOW, int(base * factor))
            settle()
            clear_caches()
            start = _counts(alive)
            for _ in range(window):
                fun()
            settle()
            clear_caches()
            for c, was, now in zip(alive, start, _counts(alive)):
                c.growth.append(now - was)
                c.calls.append(window)
            alive = [c for c in alive if keeps_pace(c.growth, c.calls)]
        return sorted(alive, key=lambda c: -c.per_call)

    @property
    def pending(self) -> bool:
        """Whether candidates await confirmation."""
        return bool(self._grown)


def _counts(candidates: Sequence[Candidate]) -> list[int]:
    """The candidates' reference counts, read at one place for every window: a count read in
    a comprehension and then in a loop differed by one (``None``'s) with nothing between."""
    return [sys.getrefcount(c.obj) for c in candidates]


class HeldReferences:
    """The ``refs`` metric: the sum of the counts of the objects the function holds
    (:func:`subjects`, immortal ones left out), sampled by the driver after each run. The
    counts of the first and the latest sample are kept, to name the subject that rose, in
    arrays made beforehand: a sample allocates nothing that outlives it, so that it cannot
    show in ``blocks``, sampled just before."""

    def __init__(self, fun: object) -> None:
        self.subjects = [(role, obj) for role, obj in subjects(fun) if not is_immortal(obj)]
        self.first = array.array("q", bytes(8 * len(self.subjects)))
        self.last = array.array("q", bytes(8 * len(self.subjects)))
        self.samples = 0

    def __call__(self) -> int:
        total = 0
        for i, (_, obj) in enumerate(self.subjects):
            count = sys.getrefcount(obj)
            self.last[i] = count
            if self.samples == 0:
                self.first[i] = count
            total += count
        self.samples += 1
        return total

    def grown(self, calls: int) -> list[dict[str, Any]]:
        """Report entries for the subjects whose count rose since the first sample."""
        out = []
        for (role, obj), was, now in zip(self.subjects, self.first, self.last):
            if now > was:
                out.append(_entry(obj, role, now - was, calls))
        return sorted(out, key=lambda f: -f["refs_per_call"])


def findings(leaks: Sequence[Candidate], fun: object) -> list[dict[str, Any]]:
    """The confirmed leaks as report entries: type, short repr, role, refs/call, calls."""
    roles = {id(obj): role for role, obj in subjects(fun)}
    return [_entry(c.obj, roles.get(id(c.obj)), sum(c.growth), sum(c.calls)) for c in leaks]


def type_name(tp: type) -> str:
    """``module.qualname`` of a type (``qualname`` alone for builtins). A metatype may hold
    a descriptor for its instances' ``__module__`` where its own module would be (Cython's
    ``_common_types_metatype``): then the qualname alone, not the descriptor's repr."""
    try:
        module = type.__dict__["__module__"].__get__(tp)
    except AttributeError:  # a heap type made from a spec whose name has no module part
        module = None
    qualname = type.__dict__["__qualname__"].__get__(tp)
    if not isinstance(module, str) or module == "builtins":
        return str(qualname)
    return f"{module}.{qualname}"


#: ``Py_TPFLAGS_HEAPTYPE`` (Include/object.h).
_HEAPTYPE = 1 << 9

#: What a heap type's count rising says, in the report.
HEAP_TYPE_HINT = (
    "each instance of a heap type holds a reference to it: a count that rises as instances "
    "are made and freed is a tp_dealloc without Py_DECREF(Py_TYPE(self)), which heap types "
    "need since Python 3.8"
)


def _entry(obj: object, role: str | None, refs: int, calls: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": type_name(type(obj)),
        "repr": short_repr(obj),
        "role": role,
        "refs_per_call": refs / max(1, calls),
        "refs": refs,
        "calls": calls,
    }
    if isinstance(obj, type) and obj.__flags__ & _HEAPTYPE:
        out["hint"] = HEAP_TYPE_HINT
    return out


def describe(name: str, found: Sequence[dict[str, Any]]) -> str:
    """The report's lines for reference leaks."""
    first = found[0]
    lines = [f"'{name}' leaks references: {first['refs_per_call']:.2f} refs/call to {_what(first)}"]
    for f in found:
        lines.append(f"  {_what(f)}: +{f['refs']} refs over {f['calls']} calls ({f['refs_per_call']:.2f} refs/call)")
        if "hint" in f:
            lines.append(f"    {f['hint']}")
    return "\n".join(lines)


def _what(f: dict[str, Any]) -> str:
    role = f" ({f['role']})" if f["role"] else ""
    return f"{f['type']} {f['repr']}{role}"


def judged(  # noqa: PLR0917 - the pieces of one check, handed over at one call site
    data: dict[str, Any],
    text: str,
    held: HeldReferences | None,
    census: Census | None,
    fun: Callable[[], Any],
    settle: Callable[[], Any],
    subject: object,
) -> tuple[dict[str, Any], str]:
    """The core's report with reference leaks named: a leak on the ``refs`` metric gets the
    subjects whose counts rose; a clean report with census candidates gets them confirmed
    (calling ``fun``) and, if any holds, becomes a reference leak."""
    if held is not None and is_refcount_leak(data["outcome"]):
        found = held.grown(sum(r["calls"] for r in data["runs"]))
        if found:
            return as_refcount_leak(data, text, found, data["outcome"])
    if census is not None and census.pending and data["outcome"]["verdict"] == "clean":
        calls = sum(r["calls"] for r in data["runs"])
        seconds_per_call = float(data.get("seconds") or 0.0) / max(1, int(data.get("total_calls") or 0))
        leaks = census.confirm(fun, settle, calls, seconds_per_call)
        if leaks:
            first = leaks[0]
            finding = {
                "metric": "refs",
                "per_call": first.per_call,
                "runs_grown": len(first.growth),
                "runs_total": len(first.growth),
                "reason": "consistent",
            }
            outcome = {"verdict": "memory_leak", "findings": [finding]}
            return as_refcount_leak(data, text, findings(leaks, subject), outcome)
    return data, text


def is_refcount_leak(outcome: dict[str, Any]) -> bool:
    """Whether an outcome is a memory leak led by the ``refs`` metric."""
    findings = outcome.get("findings") or [{}]
    return bool(outcome["verdict"] == "memory_leak" and findings[0].get("metric") == "refs")


def as_refcount_leak(
    data: dict[str, Any], text: str, found: list[dict[str, Any]], outcome: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """``data`` with ``outcome`` (a memory leak on ``refs``) and the ``found`` objects as
    ``refcounts``; ``text`` led by the lines that name them."""
    data = {**data, "outcome": outcome, "refcounts": found, "lead_metric": "refs", "bytes_per_call": None}
    rest = text.partition("\n")[2]
    return data, describe(str(data["name"]), found) + ("\n" + rest if rest else "")


def with_notes(data: dict[str, Any], text: str, notes: Sequence[str]) -> tuple[dict[str, Any], str]:
    """``data`` and ``text`` with the census's notes added."""
    if not notes:
        return data, text
    data = {**data, "notes": [*data.get("notes", []), *notes]}
    return data, text + "".join(f"\nnote: {n}" for n in notes)
