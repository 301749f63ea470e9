"""Sanity checks of the _leakmatrix test extension and its catalogue.

These tests do not use psleak: they only check that the extension builds
and imports, that every catalogued function runs, and that the probe
helpers hold / release what they document.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import build_ext
import leakmatrix
from leakmatrix import ext

PAGE = os.sysconf("SC_PAGESIZE")
MIB = 1 << 20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def num_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_names() -> dict[int, str]:
    names = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names[int(tid)] = f.read().strip()
        except (FileNotFoundError, ProcessLookupError):  # exited meanwhile (ENOENT or ESRCH)
            pass
    return names


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.fixture(autouse=True)
def _hygiene():
    yield
    leakmatrix.cleanup()
    ext.release_malloc()
    ext.release_many()
    ext.release_mmap()
    ext.stop_named_thread()


# --- build / import


def test_build_is_cached_and_importable():
    path = build_ext.build()
    assert path.is_file()
    assert path == build_ext.target_path()
    mtime = path.stat().st_mtime_ns
    assert build_ext.build() == path
    assert path.stat().st_mtime_ns == mtime  # up to date: not rebuilt
    assert ext.__file__ == str(path)


def test_build_failure_raises_runtime_error(tmp_path, monkeypatch):
    bad = tmp_path / "_leakmatrix.c"
    bad.write_text("this is not C;\n")
    monkeypatch.setattr(build_ext, "SOURCE", bad)
    monkeypatch.setattr(build_ext, "EXT_DIR", tmp_path)
    with pytest.raises(RuntimeError, match="failed"):
        build_ext.build(force=True)
    # no temp file left behind, no target produced
    assert [p.name for p in tmp_path.iterdir()] == ["_leakmatrix.c"]


# --- catalogue


def test_catalogue_shape():
    names = [c.name for c in leakmatrix.CASES]
    assert len(names) == len(set(names))
    for case in leakmatrix.CASES:
        assert callable(case.fun)
        assert case.expect in (None, *leakmatrix.EXPECTATIONS)
        assert case.kind in leakmatrix.KINDS
        if case.name.startswith("leak_"):
            assert case.expect is not None, case.name
            # every leak has a clean case of the same kind
            assert leakmatrix.cases(case.kind, leaking=False), case.name
            twin = "clean_" + case.name[5:]
            if case.kind not in ("python_memory", "garbage"):
                assert leakmatrix.by_name(twin).expect is None
        else:
            assert case.expect is None, case.name
    kinds = {c.kind for c in leakmatrix.CASES}
    assert kinds == set(leakmatrix.KINDS)
    assert {c.expect for c in leakmatrix.CASES} == {
        None,
        *leakmatrix.EXPECTATIONS,
    }


def test_filters():
    fd = leakmatrix.cases("fd")
    assert fd and all(c.kind == "fd" for c in fd)
    both = leakmatrix.cases(["fd", "mmap"])
    assert {c.kind for c in both} == {"fd", "mmap"}
    assert all(c.leaks for c in leakmatrix.cases(leaking=True))
    assert not any(c.leaks for c in leakmatrix.cases(leaking=False))
    assert all(c.heavy for c in leakmatrix.cases(heavy=True))
    assert leakmatrix.by_name("leak_malloc_small").fun is ext.leak_malloc_small
    with pytest.raises(KeyError):
        leakmatrix.by_name("nope")
    with pytest.raises(ValueError):
        leakmatrix.cases("nope")


def test_every_extension_function_is_catalogued():
    catalogued = {getattr(c.fun, "func", c.fun) for c in leakmatrix.CASES}
    for name in dir(ext):
        if name.startswith(("leak_", "clean_", "lookalike_")):
            assert getattr(ext, name) in catalogued, name


@pytest.mark.parametrize("case", leakmatrix.cases(leaking=False), ids=lambda c: c.name)
def test_clean_case_runs(case):
    fds = num_fds()
    for _ in range(3):
        case.fun(*case.args)
    if case.kind in ("fd", "lookalike"):
        assert num_fds() == fds


@pytest.mark.parametrize("case", leakmatrix.cases(leaking=True), ids=lambda c: c.name)
def test_leak_case_runs(case):
    fds = num_fds()
    threads = threading.active_count()
    case.fun(*case.args)
    if case.expect == leakmatrix.FD:
        for _ in range(100):  # leak_fd_every_50th leaks on one call in 50
            if num_fds() > fds:
                break
            case.fun()
        assert num_fds() > fds
    if case.expect == leakmatrix.PYTHON_THREAD:
        assert threading.active_count() == threads + 1
    if case.expect == leakmatrix.GARBAGE:
        old = gc.get_debug()
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            case.fun()
            gc.collect()
            assert len(gc.garbage) >= 2
        finally:
            gc.set_debug(old)
            gc.garbage.clear()
    leakmatrix.cleanup()
    assert num_fds() == fds
    assert threading.active_count() == threads


def test_clean_twin_leaves_no_garbage():
    old = gc.get_debug()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(5):
            leakmatrix.clean_py_no_cycle()
            leakmatrix.clean_py_no_cycle_del()
        gc.collect()
        assert gc.garbage == []
    finally:
        gc.set_debug(old)
        gc.garbage.clear()


# --- fd functions


def test_fd_leaks_return_their_fds():
    fd = ext.leak_fd_open()
    assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/null"
    r, w = ext.leak_fd_pipe()
    assert os.readlink(f"/proc/self/fd/{r}").startswith("pipe:")
    os.write(w, b"x")
    assert os.read(r, 1) == b"x"
    fd = ext.leak_fd_open(leakmatrix.TMPFILE)
    assert os.readlink(f"/proc/self/fd/{fd}") == leakmatrix.TMPFILE
    d = ext.leak_fd_dup(w)
    assert os.readlink(f"/proc/self/fd/{d}").startswith("pipe:")
    assert ext.close_leaked_fds() == 5
    assert ext.close_leaked_fds() == 0
    for fd in (r, w, d):
        with pytest.raises(OSError):
            os.fstat(fd)


def test_fd_errors_are_oserrors(tmp_path):
    with pytest.raises(OSError):
        ext.leak_fd_open(str(tmp_path / "missing-dir" / "f"))
    with pytest.raises(OSError):
        ext.clean_fd_dup(999_999)


# --- native threads


def test_leak_native_thread_is_named_and_parked():
    tid = ext.leak_native_thread()
    assert task_names().get(tid) == "leaky-worker"
    assert ext.leaked_thread_count() == 1
    time.sleep(0.05)
    assert task_names().get(tid) == "leaky-worker"  # still there
    assert ext.release_leaked_threads() == 1
    # Joined, it may stay listed for a moment until the kernel reaps it.
    assert wait_for(lambda: tid not in task_names(), timeout=1.0)
    assert ext.leaked_thread_count() == 0


def wait_until_listed_only(before, timeout=1.0):
    """The tasks listed once a joined thread is reaped: the kernel clears the joined tid
    before it unlists the task, so a thread may be listed for a moment after pthread_join."""
    deadline = time.monotonic() + timeout
    while set(task_names()) - before and time.monotonic() < deadline:
        time.sleep(0.001)
    return set(task_names()) - before


def test_clean_native_thread_is_gone():
    before = set(task_names())
    ext.clean_native_thread()
    assert wait_until_listed_only(before) == set()


def test_named_thread_helper():
    before = set(task_names())
    tid = ext.start_named_thread("probe-thread")
    assert isinstance(tid, int)
    assert task_names().get(tid) == "probe-thread"
    with pytest.raises(RuntimeError):
        ext.start_named_thread("second")
    assert ext.stop_named_thread() is True
    # The helper's thread is gone (joined; the kernel may list it for a moment after the
    # join). Other threads of the process may come and go meanwhile: only ours is asked.
    deadline = time.monotonic() + 1.0
    while tid in task_names() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert tid not in task_names()
    assert tid not in before
    assert ext.stop_named_thread() is False
    with pytest.raises(ValueError):
        ext.start_named_thread("x" * 16)


# --- memory helpers


def test_hold_mmap_grows_rss():
    base = rss()
    ext.hold_mmap(8 * MIB)
    assert rss() - base >= 7 * MIB
    assert ext.release_mmap() == 8 * MIB
    assert rss() - base < 2 * MIB
    assert ext.release_mmap() == 0


def fresh_rss() -> int:
    """rss after giving free heap memory back to the kernel: earlier tests (a check that
    leaked 100 MiB, then freed it, with smaller blocks allocated above it) may have left
    glibc's heap full of resident free pages that the next malloc would reuse."""
    import ctypes

    ctypes.CDLL(None).malloc_trim(0)
    return rss()


def test_hold_malloc_grows_rss():
    base = fresh_rss()
    ext.hold_malloc(16 * MIB)
    assert rss() - base >= 15 * MIB
    assert ext.release_malloc() == 16 * MIB
    assert fresh_rss() - base < 2 * MIB  # given back (mmap'd by glibc, or trimmed)


def test_hold_many_grows_rss():
    base = fresh_rss()
    ext.hold_many(4096, 4096)  # 16 MiB in page-sized blocks
    # some blocks may land in free heap memory that was already resident
    assert rss() - base >= 12 * MIB
    assert ext.release_many() == 4096


def test_hold_helpers_validate_arguments():
    with pytest.raises(ValueError):
        ext.hold_malloc(0)
    with pytest.raises(ValueError):
        ext.hold_mmap(-1)
    with pytest.raises(ValueError):
        ext.hold_many(1, 0)
    with pytest.raises(MemoryError):
        ext.hold_malloc(1 << 60)
    with pytest.raises(OSError):
        ext.hold_mmap(1 << 60)


def test_mmap_large_leak_is_resident():
    base = rss()
    for _ in range(8):
        ext.leak_mmap_large()
    assert rss() - base >= 7 * MIB


def test_intermittent_leaks_one_call_in_ten():
    # behavioural smoke test: runs 100 times without error
    for _ in range(100):
        ext.leak_intermittent()
        ext.clean_intermittent()


def test_lookalikes_are_bounded():
    n = 0
    for _ in range(1100):
        n = ext.lookalike_bounded_cache()
    assert n == 1000
    sizes = [ext.lookalike_growing_buffer() for _ in range(40)]
    assert max(sizes) == 64 * 1024


def test_extra_incref_returns_bytes():
    b = ext.leak_extra_incref()
    assert b == b"x" * 100
    assert sys.getrefcount(b) == 3  # b, getrefcount's arg, the extra ref
    assert sys.getrefcount(ext.clean_extra_incref()) == 2  # temp + arg


def test_buffer_leak_pins_the_exporter():
    ba = bytearray(10)
    ext.clean_buffer(ba)
    ba.extend(b"ok")  # no export left: resizable
    ext.leak_buffer(ba)
    with pytest.raises(BufferError):
        ba.extend(b"no")  # a buffer is still exported


# --- [matrix] issue 9 / issue 10 cases


def test_pending_names_exist():
    for name in leakmatrix.PENDING:
        assert leakmatrix.by_name(name).pending == leakmatrix.PENDING[name]


def test_sites_are_symbols_of_the_built_objects():
    """Every recorded site names a function present (with debug info) in the object it names."""
    import subprocess

    objects = {
        "_leakmatrix.c": build_ext.target_path(),
        "leakmatrix_dl.c": build_ext.dl_library_path(),
    }
    sited = [c for c in leakmatrix.CASES if c.site is not None]
    assert {c.name for c in sited} >= {f"leak_site_{s}" for s in ("malloc", "dlopen", "worker", "opendir")}
    for case in sited:
        function, source = case.site
        assert case.kind in ("native_site", "churn"), case.name
        assert (build_ext.EXT_DIR / source).is_file(), case.name
        with open(build_ext.EXT_DIR / source) as f:
            assert f"\n{function}(" in f.read(), f"{case.name}: {function} not defined in {source}"
        out = subprocess.run(["nm", str(objects[source])], capture_output=True, text=True, check=False).stdout
        assert f" {function}\n" in out, f"{case.name}: {function} not a symbol of {objects[source].name}"


def test_execute_kwargs_build_the_knobs():
    import psleak

    fds = leakmatrix.by_name("leak_fd_every_50th").execute_kwargs(psleak)
    assert fds == {"checkers": psleak.Checkers.only("fds")}
    assert leakmatrix.by_name("leak_py_object_per_call").execute_kwargs(psleak) == {"tolerance": 4096}
    assert leakmatrix.by_name("leak_site_malloc").execute_kwargs(psleak) == {}
    with pytest.raises(ValueError, match="checkers"):
        leakmatrix.Case("x", int, None, "malloc", knobs=(("checkers", "fds"),))
    with pytest.raises(ValueError, match="site"):
        leakmatrix.Case("x", int, None, "malloc", site=("f", "f.c"))


def test_dl_library_is_loaded_by_the_first_call_and_unloaded_by_cleanup():
    ext.unload_dl_library()
    assert not ext.dl_library_loaded()
    ext.clean_site_dlopen()
    assert ext.dl_library_loaded()
    with open("/proc/self/maps") as f:
        assert build_ext.DL_LIBRARY in f.read()
    leakmatrix.cleanup()
    assert not ext.dl_library_loaded()
    assert ext.unload_dl_library() is False


def test_dlclose_cases_leave_the_library_unmapped():
    ext.unload_dl_library()
    for fun in (ext.clean_site_dlclose, ext.leak_site_dlclose):
        fun()
        assert not ext.dl_library_loaded()
        with open("/proc/self/maps") as f:
            assert build_ext.DL_LIBRARY not in f.read()


def test_site_worker_is_one_persistent_thread():
    ext.clean_site_worker()
    names = task_names()
    for _ in range(20):
        ext.leak_site_worker()
        ext.clean_site_worker()
    assert task_names() == names
    assert list(names.values()).count("lm-site-worker") == 1


def test_site_opendir_leaks_no_fd():
    fds = num_fds()
    for _ in range(10):
        ext.leak_site_opendir()
        ext.clean_site_opendir()
    assert num_fds() == fds


def test_fd_every_50th_leaks_one_fd_in_50():
    fds = num_fds()
    for _ in range(100):
        ext.leak_fd_every_50th()
        ext.clean_fd_every_50th()
    assert num_fds() - fds == 2


def test_private_arena_grows_rss_only():
    base = rss()
    for _ in range(64 * 256):  # 1 MiB of 64 B objects: one page per 64 calls
        ext.leak_private_arena()
    assert rss() - base >= 768 * 1024
    base = rss()
    for _ in range(64 * 256):
        ext.clean_private_arena()
    assert rss() - base < 256 * 1024


def test_bounded_lookalikes_stop_growing():
    for _ in range(200):
        n = ext.lookalike_bounded_cache_large()
    assert n == 150
    caps = [ext.lookalike_amortised_buffer() for _ in range(10_000)]
    assert max(caps) == 4 * MIB
    assert caps[-1] == 4 * MIB


def test_unjoined_python_threads():
    threads = threading.active_count()
    leakmatrix.clean_py_thread_unjoined()
    assert wait_for(lambda: threading.active_count() == threads)
    leakmatrix.leak_py_thread_unjoined()
    time.sleep(0.02)
    assert threading.active_count() == threads + 1
    leakmatrix.cleanup()
    assert threading.active_count() == threads


# --- references taken and never given back (kind "refleak")


@pytest.mark.parametrize(
    ("fun", "calls", "taken"),
    [
        (ext.leak_incref_arg, 20, 20),
        (ext.clean_incref_arg, 20, 0),
        (ext.leak_incref_arg_rare, 20, 2),
        (ext.clean_incref_arg_rare, 20, 0),
        (ext.lookalike_ref_ring, 300, 256),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_refleak_functions_take_references(fun, calls, taken):
    target = leakmatrix.RefTarget("probe")
    if fun is ext.leak_incref_arg_rare:
        while True:  # start on a call number that is a multiple of ten
            before = sys.getrefcount(target)
            fun(target)
            if sys.getrefcount(target) > before:
                break
    before = sys.getrefcount(target)
    for _ in range(calls):
        fun(target)
    after = sys.getrefcount(target)
    assert after - before == taken
    if fun is ext.lookalike_ref_ring:
        # the ring gives the references back as other objects take their slots
        for _ in range(256):
            fun(None)
        after = sys.getrefcount(target)
        assert after == before


def test_refleak_global_is_a_module_attribute():
    before = sys.getrefcount(ext.refleak_global)
    ext.leak_incref_global()
    ext.clean_incref_global()
    after = sys.getrefcount(ext.refleak_global)  # outside the assert: pytest keeps its operands
    assert after == before + 1


@pytest.mark.parametrize(("fun", "kept"), [(ext.leak_heaptype_dealloc, 5), (ext.clean_heaptype_dealloc, 0)])
def test_refleak_heaptype_dealloc(fun, kept):
    tp = ext.LeakyDealloc if fun is ext.leak_heaptype_dealloc else ext.CleanDealloc
    before = sys.getrefcount(tp)
    for _ in range(5):
        fun()
    after = sys.getrefcount(tp)
    assert after - before == kept
