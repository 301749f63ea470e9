"""The Python API: compatibility with psleak 0.1.6's names and knobs, validation, and the
verdicts on small leaks made through ctypes (no compiled test extension needed)."""

from __future__ import annotations

import ctypes
import gc
import os
import socket
import sys
import tempfile
import threading
import time
import unittest

import pytest

import psleak
from psleak import Checkers, LeakTest, MemoryLeakTestCase

# The C runtime Python itself uses: glibc here, the UCRT on Windows.
libc = ctypes.CDLL("ucrtbase") if sys.platform == "win32" else ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


def c_leak() -> None:
    libc.malloc(64)


def c_clean() -> None:
    libc.free(libc.malloc(64))


class Case(MemoryLeakTestCase):
    def runTest(self) -> None:  # a TestCase needs a method to be instantiated
        pass


@pytest.fixture
def case() -> Case:
    return Case()


# --- probes


def test_malloc_info_is_a_mapping_and_has_attributes() -> None:
    info = psleak.malloc_info()
    for key in ("heap_used", "mmap_used", "heap_total"):
        assert isinstance(info[key], int)
        assert getattr(info, key) == info[key]
    assert set(info) >= {"heap_used", "mmap_used", "heap_total"}
    assert info.heap_total >= info.heap_used - info.mmap_used or info.heap_total > 0
    with pytest.raises(KeyError):
        info["nope"]


def test_malloc_trim_returns_bool() -> None:
    assert isinstance(psleak.malloc_trim(), bool)


def _under_wine() -> bool:
    return sys.platform == "win32" and hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


def test_memory_info_fields() -> None:
    m = psleak.memory_info()
    if _under_wine():  # Wine reports no private bytes (uss) and no commit charge (vms)
        assert m.rss > 0 and m.vms > 0
        return
    assert m.rss > 0 and m.vms >= m.rss and 0 < m.uss <= m.rss


def test_version_and_profile() -> None:
    assert psleak.__version__
    assert psleak.BUILD_PROFILE in ("release", "debug")


def test_probe_error_is_an_oserror() -> None:
    assert issubclass(psleak.ProbeError, OSError)


# --- compatibility of names


def test_exception_hierarchy() -> None:
    assert issubclass(psleak.Error, AssertionError)
    for cls in (
        psleak.MemoryLeakError,
        psleak.UnclosedResourceError,
        psleak.UnclosedFdError,
        psleak.UnclosedHandleError,
        psleak.UnclosedHeapCreateError,
        psleak.UnclosedNativeThreadError,
        psleak.UnclosedPythonThreadError,
        psleak.UncollectableGarbageError,
    ):
        assert issubclass(cls, psleak.Error)
    for cls in (psleak.UnclosedFdError, psleak.UncollectableGarbageError):
        assert issubclass(cls, psleak.UnclosedResourceError)


def test_unclosed_resource_error_can_be_built_like_the_reference() -> None:
    e = psleak.UnclosedFdError(2, "fun", extras=["a", "b"])
    assert (e.count, e.fun_name) == (2, "fun")
    assert str(e).startswith("detected 2 unclosed file descriptors after calling 'fun' 1 time\n* 'a'")


def test_class_defaults() -> None:
    assert MemoryLeakTestCase.warmup_times == 10
    assert MemoryLeakTestCase.times == 200
    assert MemoryLeakTestCase.retries == 10
    assert MemoryLeakTestCase.tolerance == 0
    assert MemoryLeakTestCase.trim_callback is None
    assert MemoryLeakTestCase.checkers == Checkers()
    assert MemoryLeakTestCase.verbosity == 0
    assert issubclass(MemoryLeakTestCase, unittest.TestCase)


def test_checkers_only_and_exclude() -> None:
    c = Checkers.only("fds", "memory")
    assert c.fds and c.memory and not (c.handles or c.c_threads or c.py_threads or c.gcgarbage)
    c = Checkers.exclude("memory")
    assert not c.memory and c.fds and c.gcgarbage
    with pytest.raises(ValueError, match="'bogus'"):
        Checkers.only("bogus", "fds")
    with pytest.raises(ValueError, match="'nope'"):
        Checkers.exclude("nope")
    with pytest.raises(AttributeError):
        c.memory = True  # type: ignore[misc]


# --- validation


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"times": "10"}, TypeError, "'times' must be instance of int (got '10')"),
        ({"warmup_times": 1.5}, TypeError, "'warmup_times' must be instance of int (got 1.5)"),
        ({"retries": None, "times": True}, TypeError, "'times' must be instance of int (got True)"),
        ({"tolerance": "x"}, TypeError, "'tolerance' must be instance of int or dict"),
        ({"times": 0}, ValueError, "times must be >= 2 (got 0)"),
        ({"retries": 0}, ValueError, "retries must be >= 1"),
        ({"warmup_times": -1}, ValueError, "warmup_times must be >= 0"),
        ({"tolerance": -1}, ValueError, "tolerance must be >= 0"),
        ({"tolerance": {"x": 1}}, ValueError, "invalid tolerance key 'x'"),
        ({"tolerance": {"heap": -5}}, ValueError, "'heap' tolerance must be >= 0 (got -5)"),
        ({"times": 1}, ValueError, "times must be >= 2 (got 1)"),
        ({"trim_callback": 3}, TypeError, "'trim_callback' must be callable"),
        ({"checkers": "fds"}, TypeError, "'checkers' must be instance of Checkers"),
        ({"memory_budget": 10}, ValueError, "memory_budget must be >= 1048576"),
        # Past what the core counts in: named, not an OverflowError of the conversion.
        ({"times": 2**70}, ValueError, "times must be < 2**63"),
        ({"retries": 2**40}, ValueError, "retries must be < 2**32"),
        ({"tolerance": 2**80}, ValueError, "tolerance must be < 2**63"),
        ({"tolerance": {"rss": 2**64}}, ValueError, "'rss' tolerance must be < 2**63"),
    ],
)
def test_bad_knobs_are_named(case: Case, kwargs: dict, exc: type, message: str) -> None:
    with pytest.raises(exc) as info:
        case.execute(c_clean, **kwargs)
    assert message in str(info.value)


def test_fun_must_be_callable(case: Case) -> None:
    with pytest.raises(TypeError, match="'fun' must be callable"):
        case.execute(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'fun' must be callable"):
        psleak.check("nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'name' must be instance of str"):
        psleak.check(c_clean, name=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'progress' must be callable"):
        psleak.check(c_clean, progress="x")  # type: ignore[arg-type]


def test_tolerance_dict_keys_of_the_reference_are_accepted(case: Case) -> None:
    case.execute(c_clean, tolerance={"heap": 0, "mmap": 0, "uss": 0, "rss": 0, "vms": 0})


def test_byte_tolerance_applies_to_blocks_as_bytes() -> None:
    from psleak._core import tolerance_per_metric

    per_metric = tolerance_per_metric(4096)
    assert per_metric["heap"] == 4096
    assert per_metric["blocks"] == 8  # 4096 B of pymalloc blocks of at most 512 B
    assert tolerance_per_metric({"heap": 100})["blocks"] == 0  # the others are 0
    assert tolerance_per_metric({"heap": 0, "blocks": 3})["blocks"] == 3


def test_byte_tolerance_still_catches_one_object_per_call(case: Case) -> None:
    hoard = []

    def grow() -> None:
        hoard.append(object())  # 16 bytes: invisible to every byte metric under pymalloc

    with pytest.raises(psleak.MemoryLeakError):
        case.execute(grow, tolerance=4096)


# --- verdicts


def test_c_leak_fails_with_report(case: Case) -> None:
    with pytest.raises(psleak.MemoryLeakError) as info:
        case.execute(c_leak)
    text = str(info.value)
    first = text.splitlines()[0]
    assert first.startswith("'c_leak' leaks ~80 B/call (heap)") or "B/call (heap)" in first, text
    assert "runs grew" in first
    assert "run   calls" in text
    report = info.value.report
    assert report.verdict == "memory_leak"
    # glibc counts malloc's 16-byte chunk header; Windows heaps count the 64 bytes asked for.
    assert (64 if sys.platform == "win32" else 70) <= report.bytes_per_call <= 90


def test_clean_function_passes_quickly(case: Case) -> None:
    report = case.execute(c_clean)
    assert report.clean
    # Two runs, and a third that makes up 1,000 calls, which the refcount census spans
    # too (it makes no calls of its own then): a leak on one call in 500 shows there.
    assert sum(r["calls"] for r in report.data["runs"]) <= 1000, report.text
    assert report.data["total_calls"] <= 1000 + 11, report.text


def slow_clean() -> None:
    time.sleep(0.025)


def slow_c_leak() -> None:
    libc.malloc(64)
    time.sleep(0.025)


def test_slow_function_gets_a_shorter_warm_up_and_first_run(case: Case) -> None:
    report = case.execute(slow_clean)
    assert report.clean
    data = report.data
    assert 3 <= data["warmup_calls"] < 10, data["warmup_calls"]
    assert 10 <= data["runs"][0]["calls"] <= 25, data["runs"][0]["calls"]
    assert any("instead of 200" in n and "warm-up calls instead of 10" in n for n in data["notes"]), data["notes"]


def test_slow_function_keeps_the_warm_up_and_times_it_was_given(case: Case) -> None:
    report = case.execute(slow_clean, warmup_times=6, times=12, retries=2)
    assert report.data["warmup_calls"] == 6
    assert report.data["runs"][0]["calls"] == 12
    assert not any("instead of" in n for n in report.data["notes"])


def test_slow_leak_is_still_found(case: Case) -> None:
    with pytest.raises(psleak.MemoryLeakError) as info:
        case.execute(slow_c_leak)
    assert info.value.report.data["runs"][0]["calls"] < 200


def test_args_are_passed(case: Case) -> None:
    seen: set[int] = set()  # adding the same element again does not grow it
    case.execute(seen.add, 1, times=5, retries=1, warmup_times=0)
    assert seen == {1}


def test_call_hook_sees_every_call() -> None:
    calls = [0]  # a counter: appending to a list would itself grow with calls

    class Hooked(Case):
        def call(self, fun):  # type: ignore[no-untyped-def]
            calls[0] += 1
            return fun()

    report = Hooked().execute(c_clean)
    assert calls[0] == report.data["total_calls"]


def test_base_class_attributes_take_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MemoryLeakTestCase, "times", 7)
    monkeypatch.setattr(MemoryLeakTestCase, "warmup_times", 3)
    report = Case().execute(c_clean)
    assert report.runs[0]["calls"] == 7
    assert report.data["warmup_calls"] == 3


def test_execute_kwargs_override_class_attributes(case: Case) -> None:
    report = case.execute(c_clean, times=11, warmup_times=0)
    assert report.runs[0]["calls"] == 11


def test_execute_w_exc(case: Case) -> None:
    def raises() -> None:
        raise ValueError("boom")

    case.execute_w_exc(ValueError, raises)
    with pytest.raises(AssertionError, match="did not raise"):
        case.execute_w_exc(ValueError, c_clean)
    with pytest.raises(KeyError):
        case.execute_w_exc(ValueError, lambda: {}["k"])


def test_exception_from_fun_propagates(case: Case) -> None:
    def boom() -> None:
        raise RuntimeError("from fun")

    with pytest.raises(RuntimeError, match="from fun"):
        case.execute(boom)


def test_no_skip_without_pythonmalloc(monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    report = case.execute(c_clean)  # runs, does not raise SkipTest
    assert report.clean


def test_python_object_leak_is_caught_and_located(case: Case) -> None:
    hoard = []

    def grow() -> None:
        hoard.append(bytes(100))  # the leaking line

    with pytest.raises(psleak.MemoryLeakError) as info:
        case.execute(grow)
    text = str(info.value)
    assert "allocated (tracemalloc" in text
    assert "hoard.append(bytes(100))  # the leaking line" in text
    report = info.value.report
    (site,) = report.data["where"][:1]
    assert 100 <= site["bytes_per_call"] <= 200
    assert site["frames"][-1]["file"] == __file__
    # No harness frames (pytest, pluggy, unittest, psleak): the test's own lines only.
    assert {f["file"] for f in site["frames"]} == {__file__}, site["frames"]
    # The verdict leads with the objects' size, not the heap's arena-sized growth: their
    # count under pymalloc, the tracked blocks' bytes under PYTHONMALLOC=malloc.
    assert report.findings[0].metric in ("blocks", "native_bytes")
    assert 100 <= report.bytes_per_call <= 200
    first = text.splitlines()[0]
    assert f"leaks ~{psleak._psleak.format_bytes(report.bytes_per_call)}/call" in first, first


def test_large_leak_stops_at_the_budget(case: Case) -> None:
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    held = []

    def big() -> None:
        p = libc.malloc(1 << 20)
        libc.memset(p, 1, 1 << 20)
        held.append(p)

    try:
        with pytest.raises(psleak.MemoryLeakError, match="memory budget") as info:
            case.execute(big)
        report = info.value.report
        assert report.data["peak_growth"] <= report.data["memory_budget"] + (8 << 20)
        assert report.data["seconds"] < 5
    finally:
        for p in held:
            libc.free(p)


# --- resources


@pytest.mark.posix
def test_pipe_leak_is_described(case: Case) -> None:
    fds: list[int] = []
    try:
        with pytest.raises(psleak.UnclosedFdError) as info:
            case.execute(lambda: fds.extend(os.pipe()), checkers=Checkers.only("fds"))
        e = info.value
        assert e.count == 2
        assert e.fun_name == "test_pipe_leak_is_described.<locals>.<lambda>"
        first, *rest = str(e).splitlines()
        assert first == f"detected 2 unclosed file descriptors after calling {e.fun_name!r} 1 time"
        assert rest[0].startswith("* fd ") and "pipe" in rest[0]
        assert "peak growth" not in str(e)  # nothing about memory: it was not measured
        assert all(x.kind == "fd" for x in e.extras)
        assert "pipe" in str(e)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.posix
def test_file_leak_has_path(case: Case) -> None:
    files = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "a file with spaces")
        with open(path, "w"):
            pass
        try:
            with pytest.raises(psleak.UnclosedFdError) as info:
                case.execute(lambda: files.append(open(path)), checkers=Checkers.only("fds"))  # noqa: SIM115
            assert [x.path for x in info.value.extras] == [path]
        finally:
            for f in files:
                f.close()


@pytest.mark.posix
def test_socket_leak_names_its_type(case: Case) -> None:
    socks = []
    try:
        with pytest.raises(psleak.UnclosedFdError, match="SOCK_STREAM"):
            case.execute(lambda: socks.append(socket.socket()), checkers=Checkers.only("fds"))
    finally:
        for s in socks:
            s.close()


def test_python_thread_leak(case: Case) -> None:
    stop = threading.Event()
    try:
        with pytest.raises(psleak.UnclosedPythonThreadError, match="1 unclosed Python thread"):
            case.execute(lambda: threading.Thread(target=stop.wait, daemon=True).start())
    finally:
        stop.set()


def test_joined_thread_is_clean(case: Case) -> None:
    def run() -> None:
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()

    case.execute(run, times=50)


def test_gc_cycle_is_reported(case: Case) -> None:
    class Node:
        pass

    def cycle() -> None:
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]

    with pytest.raises(psleak.UncollectableGarbageError) as info:
        case.execute(cycle, checkers=Checkers.only("gcgarbage"))
    assert info.value.count == 2
    assert all(isinstance(o, Node) for o in info.value.extras)


def test_gc_debugger_context_manager() -> None:
    class Node:
        pass

    def cycle() -> None:
        a = Node()
        a.me = a  # type: ignore[attr-defined]

    with psleak.GCDebugger() as dbg:
        c_clean()
    dbg.check(c_clean)
    with psleak.GCDebugger() as dbg:
        cycle()
    with pytest.raises(psleak.UncollectableGarbageError):
        dbg.check(cycle)


def test_gc_debugger_is_transient() -> None:
    dbg = psleak.GCDebugger()
    main = threading.main_thread()
    for obj in (1, 2.0, True, "s", b"b", None, main, ValueError("x"), [1, (2, [main]), {"k": main}]):
        assert dbg.is_transient(obj), obj

    class Node:
        pass

    assert not dbg.is_transient(Node())
    assert not dbg.is_transient([1, Node()])


# --- auto_generate


def test_auto_generate_passes_one_callable_to_execute() -> None:
    # As in psleak 0.1.6: a subclass may override execute(self, fun, **kwargs).
    seen: list[tuple[object, dict]] = []
    called: list[tuple[int, int]] = []

    def f(a: int, b: int) -> None:
        called.append((a, b))

    class Overridden(MemoryLeakTestCase):
        @classmethod
        def auto_generate(cls):  # type: ignore[no-untyped-def]
            return {"f": LeakTest(f, 1, 2, times=7)}

        def execute(self, fun, **kwargs):  # type: ignore[no-untyped-def, override]
            fun()
            seen.append((fun, kwargs))

    Overridden("test_leak_f").test_leak_f()
    assert called == [(1, 2)]
    assert seen[0][1] == {"times": 7}


def test_auto_generate_makes_test_methods() -> None:
    class Generated(MemoryLeakTestCase):
        @classmethod
        def auto_generate(cls):  # type: ignore[no-untyped-def]
            return {"clean": LeakTest(c_clean), "args": LeakTest(libc.free, None, times=5)}

    assert callable(Generated.test_leak_clean)
    assert callable(Generated.test_leak_args)
    result = unittest.TextTestRunner(stream=open(os.devnull, "w")).run(  # noqa: SIM115
        unittest.defaultTestLoader.loadTestsFromTestCase(Generated)
    )
    assert result.wasSuccessful(), result.failures + result.errors


def test_auto_generate_rejects_bad_entries() -> None:
    with pytest.raises(TypeError, match="must return a dict"):

        class NotDict(MemoryLeakTestCase):
            @classmethod
            def auto_generate(cls):  # type: ignore[no-untyped-def]
                return [LeakTest(c_clean)]

    with pytest.raises(TypeError, match="must be a LeakTest"):

        class NotLeakTest(MemoryLeakTestCase):
            @classmethod
            def auto_generate(cls):  # type: ignore[no-untyped-def]
                return {"x": c_clean}

    with pytest.raises(RuntimeError, match="already defines test_leak_x"):

        class Clash(MemoryLeakTestCase):
            def test_leak_x(self) -> None:
                pass

            @classmethod
            def auto_generate(cls):  # type: ignore[no-untyped-def]
                return {"x": LeakTest(c_clean)}


def test_a_check_leaves_no_garbage_and_can_be_checked_itself() -> None:
    # The function's subjects were gathered by a nested function calling itself: a
    # reference cycle, 9 objects of garbage per check, which a check enclosing it reported
    # as a leak of uncollectable objects.
    def empty() -> None:
        pass

    psleak.check(empty)
    gc.collect()
    psleak.check(empty)
    assert gc.collect() == 0
    report = psleak.check(lambda: psleak.check(empty, times=10, retries=2), times=10, retries=2)
    assert report.clean, report.text
    # A failed check's exception was held by the frame that raised it, in its traceback.
    leak = psleak.check(lambda: leaked.append(bytearray(64)))
    gc.collect()
    with pytest.raises(psleak.MemoryLeakError):
        leak.raise_for_leak()
    assert gc.collect() == 0


leaked: list[bytearray] = []
