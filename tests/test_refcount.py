"""References taken and never given back: the census, the rule that judges it, the report.

Leaks are made with ``ctypes.pythonapi.Py_IncRef`` (a reference taken by C code and never
given back) and with the ``_leakmatrix`` extension's refleak functions; each has a clean
twin that keeps a bounded number of references (caches, interned strings, imports, class
attributes that change, exceptions, the check's own closures).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from leakmatrix import RefTarget, ext

import psleak
from psleak import _psleak, _refcount
from psleak._refcount import MIN_GROWTH, keeps_pace, subjects

incref = ctypes.pythonapi.Py_IncRef
incref.argtypes = [ctypes.py_object]
incref.restype = None


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # PYTHONMALLOC not set: expected
        yield


class Case(psleak.MemoryLeakTestCase):
    def runTest(self) -> None:
        pass


def execute(fun: Any, *args: Any, **knobs: Any) -> psleak.Report:
    return Case().execute(fun, *args, **knobs)


# --- the rule (synthetic series: growth per window, calls per window)


@pytest.mark.parametrize(
    ("growth", "calls", "leaks"),
    [
        ([400, 200, 800], [400, 200, 800], True),  # one reference per call
        ([40, 20, 80], [400, 200, 800], True),  # one call in ten
        ([4, 2, 8], [400, 200, 800], True),  # one in a hundred: the smallest seen
        ([400, 200], [400, 200], True),  # while confirming: so far so good
        ([3, 2, 8], [400, 200, 800], False),  # below MIN_GROWTH over the runs
        ([256, 0, 0], [400, 200, 800], False),  # a cache that filled during the runs
        ([256, 100, 0], [400, 200, 800], False),  # ... during the first window
        ([120, 50, -40], [400, 200, 800], False),  # held for a while, then let go
        ([140, 140, 150], [400, 200, 800], False),  # the same rise whatever the window
        ([144, 60, 40], [400, 200, 800], False),  # a cache filling ever more slowly
        ([400, 40, 800], [400, 200, 800], False),  # a window that lags
    ],
)
def test_keeps_pace(growth: list[int], calls: list[int], leaks: bool) -> None:
    assert keeps_pace(growth, calls) is leaks


@pytest.mark.parametrize(("growth", "calls"), [([], []), ([1], [1, 2]), ([5, 5], [10, 0])])
def test_keeps_pace_rejects_bad_series(growth: list[int], calls: list[int]) -> None:
    with pytest.raises(ValueError, match="growth and calls"):
        keeps_pace(growth, calls)


# --- subjects: what the function holds on to, with its role


def _f(*args: Any, **kwargs: Any) -> None:
    pass


class Holder:
    def method(self) -> None:
        pass


def test_subjects_unwrap_partial_bound_method_and_closure() -> None:
    a, b, h = RefTarget("a"), RefTarget("b"), Holder()
    roles = {role: obj for role, obj in subjects(functools.partial(_f, a, key=b))}
    assert roles["argument 0"] is a
    assert roles["argument key="] is b
    assert roles["function"] is _f
    assert {role for role, obj in subjects(h.method) if obj is h} == {"bound self"}

    def closure() -> None:
        _f(a)

    assert ("closure variable 'a'", a) in [(r, o) for r, o in subjects(closure) if o is a]


def test_subjects_see_through_execute_wrappers() -> None:
    a = RefTarget("a")
    report = execute(ext.clean_incref_arg, a)
    assert report.clean
    # execute() wraps the call in closures of psleak's own; the argument keeps its role.
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(ext.leak_incref_arg, a)
    (found, *_) = info.value.report.data["refcounts"]
    assert found["role"] == "argument 0"


def test_is_immortal() -> None:
    assert not _refcount.is_immortal(RefTarget("x"))
    assert _refcount.is_immortal(None) is (sys.version_info >= (3, 12))


# --- the census


def test_census_does_not_see_itself() -> None:
    """Two censuses with nothing in between: no count rose by MIN_GROWTH. The census makes
    no Python object while it reads counts, so its own work cannot show."""
    gc.collect()
    flags = {"skip_tracked_referents": True, "skip_immortal": sys.version_info >= (3, 12)}
    before = _psleak.refcount_census(gc.get_objects(), **flags)
    grown = _psleak.census_growth(before, gc.get_objects(), min_growth=MIN_GROWTH, **flags)
    assert grown == []
    assert len(before) > before.tracked > 0
    assert before.nbytes <= 16 * 2 * len(before)


def test_census_finds_a_count_that_rose() -> None:
    target = RefTarget("census")
    holder = {"target": target}  # reachable from a tracked object
    flags = {"skip_tracked_referents": True, "skip_immortal": False}
    before = _psleak.refcount_census(gc.get_objects(), **flags)
    for _ in range(10):
        incref(target)
    grown = _psleak.census_growth(before, gc.get_objects(), min_growth=MIN_GROWTH, **flags)
    found = [(was, now) for obj, was, now in grown if obj is target]
    assert len(found) == 1
    was, now = found[0]
    assert now - was == 10
    for _ in range(10):
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(target))
    del holder


def test_census_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError):
        _psleak.refcount_census((1, 2), skip_tracked_referents=True, skip_immortal=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _psleak.census_growth(None, [], min_growth=1, skip_tracked_referents=True, skip_immortal=False)  # type: ignore[arg-type]


# --- leaks found, both ways, and their report


def test_argument_leak_reported_as_execute_f_v() -> None:
    v = RefTarget("v")
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(ext.leak_incref_arg, v)
    exc = info.value
    assert isinstance(exc, psleak.MemoryLeakError)
    report = exc.report
    assert report.verdict == "memory_leak"
    assert not report.clean
    assert report.data["outcome"]["findings"][0]["metric"] == "refs"
    (found, *_) = report.data["refcounts"]
    assert found["type"] == "leakmatrix.RefTarget"
    assert found["repr"] == "RefTarget('v')"
    assert found["refs_per_call"] == pytest.approx(1.0)
    assert found["refs"] == found["calls"]
    assert "leaks references: 1.00 refs/call to leakmatrix.RefTarget RefTarget('v') (argument 0)" in str(exc)
    json.loads(report.to_json())


def test_argument_leak_reported_through_a_lambda() -> None:
    v = RefTarget("v")
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(lambda: ext.leak_incref_arg(v))
    (found, *_) = info.value.report.data["refcounts"]
    assert found["repr"] == "RefTarget('v')"
    assert found["role"] == "closure variable 'v'"


def test_rare_argument_leak() -> None:
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(ext.leak_incref_arg_rare, RefTarget("rare"))
    (found, *_) = info.value.report.data["refcounts"]
    assert found["refs_per_call"] == pytest.approx(0.1, abs=0.02)


def test_module_global_leak_without_arguments() -> None:
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(ext.leak_incref_global)
    (found, *_) = info.value.report.data["refcounts"]
    assert found["repr"] == repr(ext.refleak_global)
    assert found["role"] is None


def test_heap_type_dealloc_leak_says_what_it_means() -> None:
    """A heap type whose count rises as instances are made and freed: the report says it is
    a tp_dealloc without Py_DECREF(Py_TYPE(self)); another object's entry has no hint."""
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(ext.leak_heaptype_dealloc)
    (found, *_) = info.value.report.data["refcounts"]
    assert found["repr"] == repr(ext.LeakyDealloc)
    assert found["hint"] == _refcount.HEAP_TYPE_HINT
    assert "Py_DECREF(Py_TYPE(self))" in info.value.report.text
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(ext.leak_incref_global)
    assert "hint" not in info.value.report.data["refcounts"][0]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal since 3.12: its count never changes")
def test_none_leak_before_312() -> None:
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(lambda: incref(None))
    (found, *_) = info.value.report.data["refcounts"]
    assert found["type"] == "NoneType"


def test_rare_leak_of_an_object_the_function_does_not_hold() -> None:
    # One call in 200: the 400 calls of the runs leave 2 references, under MIN_GROWTH. The
    # census spans 1,000 calls (more are made after the runs while they are cheap), and the
    # windows are sized to show 32.
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(ext.leak_incref_global_rare)
    (found, *_) = info.value.report.data["refcounts"]
    assert found["repr"] == repr(ext.refleak_global)
    assert found["refs_per_call"] == pytest.approx(1 / 200, rel=0.3)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal since 3.12: its count never changes")
def test_rare_none_leak_after_other_checks() -> None:
    # None's count moves by a few either way between two readings; a leak on one call in
    # 50, after a few other checks, rose by 2 in a window of 200 calls instead of 4.
    for fun in (ext.clean_incref_global, ext.leak_posix_memalign, ext.leak_calloc):
        psleak.check(fun)
    with pytest.raises(psleak.RefcountLeakError) as info:
        execute(ext.leak_incref_none_rare)  # built for Python < 3.12 only
    assert info.value.report.data["refcounts"][0]["type"] == "NoneType"


def test_the_census_spans_more_calls_than_cheap_runs() -> None:
    census = _refcount.Census(unfreeze=False)
    # 400 calls of 2 us: 600 more, 1.2 ms.
    assert census.wanted(400, 2e-6) == 600 and census.span == _refcount.SPAN_CALLS
    # 400 calls of 1 ms: 2 more fit in 2 ms.
    assert census.wanted(400, 1e-3) == 2 and census.span == 402
    # Enough calls already, or a cost unknown: none.
    assert census.wanted(4000, 2e-6) == 0 and census.span == 4000
    assert census.wanted(400, 0.0) == 0 and census.span == 400
    # A census whose first reading took 20 ms (a loaded machine, a large process): the
    # calls may take half as long, 10 ms.
    census.seconds = 0.020
    assert census.wanted(400, 1e-3) == 10 and census.span == 410
    assert census.wanted(400, 7e-6) == 600
    # The core makes them after the runs (as many as fit), counted in the total; for a
    # function this cheap the runs span them already (a third run makes up 1,000 calls).
    report = psleak.check(ext.clean_incref_global)
    assert report.clean
    made = report.data["warmup_calls"] + 1 + sum(r["calls"] for r in report.data["runs"])
    assert made <= report.data["total_calls"] <= max(made, _refcount.SPAN_CALLS + 11), report.text


def test_psleak_check_and_refcounts_checker() -> None:
    v = RefTarget("check")
    report = psleak.check(functools.partial(ext.leak_incref_arg, v))
    assert report.verdict == "memory_leak"
    assert report.data["outcome"]["findings"][0]["metric"] == "refs"
    assert isinstance(report.exception(), psleak.RefcountLeakError)
    off = psleak.check(functools.partial(ext.leak_incref_arg, v), checkers=psleak.Checkers.exclude("refcounts"))
    assert off.clean


def test_exported() -> None:
    assert "RefcountLeakError" in psleak.__all__
    assert psleak.RefcountLeakError.__module__ == "psleak"
    assert issubclass(psleak.RefcountLeakError, psleak.MemoryLeakError)
    assert "refcounts" in psleak.Checkers.names()


# --- clean twins: a bounded number of references kept


_cache: dict[int, Any] = {}


def _ring_of(n: int) -> Any:
    ring: list[Any] = []

    def keep(v: Any) -> None:
        ring.append(v)
        if len(ring) > n:
            del ring[0]

    return keep


class Bumped:
    count = 0

    def __init__(self, tag: int) -> None:
        self.tag = tag


def _bump_class() -> None:
    # changes the class (a new type version tag per call): CPython's type attribute
    # cache fills with references to the attribute names; psleak clears it
    Bumped.count += 1
    Bumped(1)


@functools.lru_cache(maxsize=64)
def _memo(x: Any) -> Any:
    return (x, x)


def _raise_and_catch() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        pass


def _import_inside() -> None:
    import colorsys  # noqa: F401 - the first call imports, the others find sys.modules

    __import__("json")


def _intern() -> None:
    sys.intern("psleak-" + str(len(_cache)))


def _warn_once() -> None:
    warnings.warn("psleak twin", UserWarning, stacklevel=1)


@pytest.mark.parametrize(
    ("fun", "args"),
    [
        (ext.clean_incref_arg, (RefTarget("clean"),)),
        (ext.clean_incref_arg_rare, (RefTarget("clean rare"),)),
        (ext.clean_incref_global, ()),
        (ext.lookalike_ref_ring, (RefTarget("ring"),)),
        (_ring_of(300), (RefTarget("python ring"),)),
        (_memo, (RefTarget("memo"),)),
        (_bump_class, ()),
        (_raise_and_catch, ()),
        (_import_inside, ()),
        (_intern, ()),
        (_warn_once, ()),
        (Holder().method, ()),
        (functools.partial(_f, None), ()),
    ],
    ids=lambda v: getattr(v, "__qualname__", type(v).__name__),
)
def test_bounded_references_are_clean(fun: Any, args: tuple[Any, ...]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = execute(fun, *args)
    assert report.clean, report.text


def test_program_frozen_objects_still_checked() -> None:
    """A program that froze its objects itself: the census notes what it cannot see and
    still finds a leak on an argument (the partial execute() makes is not frozen)."""
    gc.freeze()
    try:
        with pytest.raises(psleak.RefcountLeakError):
            execute(ext.leak_incref_arg, RefTarget("frozen"))
        report = execute(ext.clean_incref_arg, RefTarget("frozen"))
        assert report.clean
        assert any("gc.freeze()" in note for note in report.data["notes"])
        assert "note: refcount census: objects frozen" in report.text
    finally:
        gc.unfreeze()


def test_execute_w_exc_and_the_pytest_fixture() -> None:
    """The other front ends: a function that raises on every call (its exceptions are let
    go) is clean; the leakcheck fixture names the argument as execute() does."""
    from psleak.pytest_plugin import LeakCheck

    assert Case().execute_w_exc(KeyError, {}.__getitem__, "missing").clean
    with pytest.raises(psleak.RefcountLeakError) as info:
        LeakCheck({})(ext.leak_incref_arg, RefTarget("fixture"))
    (found, *_) = info.value.report.data["refcounts"]
    assert (found["repr"], found["role"]) == ("RefTarget('fixture')", "argument 0")


def test_slow_census_is_mentioned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_refcount, "SLOW_CENSUS", 0.0)
    report = execute(ext.clean_incref_arg, RefTarget("slow"))
    assert report.clean
    (note,) = [n for n in report.data["notes"] if n.startswith("refcount census:")]
    assert 'Checkers.exclude("refcounts") skips it' in note
    assert f"note: {note}" in report.text


def test_no_census_after_runs_that_found_a_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    # The census after the runs walks the whole heap; its candidates are only confirmed
    # for a clean verdict, so a leak found by the runs skips it. A clean check takes it.
    taken: list[str] = []
    monkeypatch.setattr(_refcount.Census, "before", lambda self, *_: taken.append("before"))
    monkeypatch.setattr(_refcount.Census, "after", lambda self, *_: taken.append("after"))
    kept: list[bytes] = []
    leaky = psleak.check(lambda: kept.append(bytes(1000)))
    assert not leaky.clean
    assert taken == ["before"]
    taken.clear()
    assert psleak.check(ext.clean_incref_arg, RefTarget("clean")).clean
    assert taken == ["before", "after"]


def test_type_names_survive_metatypes_that_shadow_module() -> None:
    # Cython's _common_types_metatype gives its instances a __module__ attribute: on the
    # metatype itself, type.__module__ then returns the descriptor, not a string.
    class Meta(type):
        __module__ = property(lambda self: "instances' module")  # type: ignore[assignment]

    assert _refcount.type_name(Meta) == "test_type_names_survive_metatypes_that_shadow_module.<locals>.Meta"
    assert _refcount.type_name(int) == "int"
    assert _refcount.type_name(RefTarget) == "leakmatrix.RefTarget"


def test_type_names_survive_types_without_a_module() -> None:
    # PyType_FromSpec with a name that has no dot leaves __module__ unset: reading it
    # raises AttributeError, which must not break the report.
    class Slot(ctypes.Structure):
        _fields_ = [("slot", ctypes.c_int), ("pfunc", ctypes.c_void_p)]

    class Spec(ctypes.Structure):
        _fields_ = [
            ("name", ctypes.c_char_p),
            ("basicsize", ctypes.c_int),
            ("itemsize", ctypes.c_int),
            ("flags", ctypes.c_uint),
            ("slots", ctypes.POINTER(Slot)),
        ]

    slots = (Slot * 1)(Slot(0, None))
    spec = Spec(b"NoModule", 16, 0, 0, slots)
    from_spec = ctypes.pythonapi.PyType_FromSpec
    from_spec.restype = ctypes.py_object
    from_spec.argtypes = [ctypes.POINTER(Spec)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "has no __module__ attribute"
        tp = from_spec(ctypes.byref(spec))
        assert _refcount.type_name(tp) == "NoModule"
