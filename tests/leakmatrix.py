"""The leak matrix: a catalogue of leaking functions and their clean twins.

Importing this module builds (if needed) and imports the ``_leakmatrix``
C extension (``tests/ext/_leakmatrix.c``, see ``build_ext.py``) and
defines ``CASES``, a list of :class:`Case`. Each case is a zero-argument
callable plus the name of the psleak exception class a leak detector must
raise for it (``expect``), or ``None`` when the function is clean and must
not be reported. It is shared by the pytest suite and the benchmark.

Groups (``Case.kind``):

``malloc``
    C heap leaks through the malloc family: ``malloc`` of 8 B, 16 B,
    4 KiB and 256 KiB (above glibc's initial mmap threshold, memset so
    every page is resident), ``calloc``, ``realloc`` (a fresh block grown
    and lost), ``strdup``, ``posix_memalign``; an intermittent leak (64 B
    lost on one call in ten), a rare one (200 B lost on one call in 500:
    none in the first 400 calls), 8 B a call appended to one buffer that
    ``realloc`` grows by an eighth when full (no new block in any run),
    32 B lost on every third call after a 75 KB
    cache filled by the first 150 calls (the first run grows far faster
    than the leak), and a 1 KiB block lost by a joined worker
    thread (i.e. in another malloc arena). Each ``leak_*`` has a
    ``clean_*`` twin doing the same work and freeing.
``mmap``
    Anonymous mappings never unmapped: 64 KiB, and 1 MiB (the "large
    leak", meant to be caught early), every page touched.
``pyalloc``
    ``PyMem_Malloc(64)`` / ``PyObject_Malloc(64)`` never freed.
``refcount``
    Reference-count bugs: a missing ``Py_DECREF`` on a new 100-byte bytes,
    a list of 10 ints, a big int; an extra ``Py_INCREF`` on a returned
    bytes; a ``PyObject_GetBuffer`` on a fresh bytearray never released.
``fd``
    One leaked file descriptor (two for pipe / socketpair) per call, for
    every kind of fd: regular file (``/dev/null`` and a temp-file path
    bound with :func:`functools.partial`), pipe, TCP / UDP socket, unix
    socketpair, eventfd, memfd, epoll, timerfd, signalfd, inotify, dup.
``native_thread``
    A C thread named ``leaky-worker`` that blocks forever and is never
    joined, vs a named thread that exits and is joined.
``python_thread``
    A ``threading.Thread`` (daemon) blocked on an Event that is never set,
    vs a thread started and joined.
``python_memory``
    Unbounded growth of a module-level list (a new 100-byte bytes appended
    per call) vs a bounded ``functools.lru_cache(maxsize=500)`` queried
    with ever-changing keys.
``garbage``
    A reference cycle of plain objects created per call (and one whose
    objects define ``__del__``). CPython collects these, but with
    ``gc.DEBUG_SAVEALL`` they show up in ``gc.garbage``, which psleak
    reports as ``UncollectableGarbageError``; the twin creates the same
    objects without a cycle.
``refleak``
    References taken and never given back, which grow no memory: ``Py_INCREF`` of an
    argument (as numpy 1.24.0's ``ndarray.fill(v)`` on an object array), passed as
    ``execute(f, v)`` (``Case.args``) and through a closure (``execute(lambda: f(v))``);
    of an argument on one call in ten; of a module-level object, no argument at all; of a
    heap type by its instances' ``tp_dealloc`` (no ``Py_DECREF(Py_TYPE(self))``). Each
    has a twin that gives the reference back; the look-alike keeps the last 256 arguments
    (a bounded cache of references).
``lookalike``
    Clean code whose profile resembles a leak and must NOT be reported:
    a bounded cache (one ``malloc(128)`` per call into 1000 static slots,
    never freed), a lazily initialised 64 KiB global, a scratch buffer
    grown by ``realloc`` up to 64 KiB and reused, a 64 MiB temporary
    (touched, freed), fragmentation from mixed sizes freed in a different
    order, open+close of a file / pipe / socket, a thread created and
    joined.

``churn``
    (issue 9) A steady 16 B/call ``malloc`` leak hidden beside churn: a
    Python list of 1000-byte buffers cleared every 500 calls, or a ~2 KB
    reference cycle per call (run with ``Checkers.exclude("gcgarbage")``).
``arena``
    (issue 9) 64 B/call bump-allocated from 1 MiB ``mmap``'ed chunks: no
    ``malloc``, no new mapping for 16k calls, only RSS grows; the twin
    resets the arena after each call.
``native_site``
    (issue 10) Native leaks whose allocating call a report must name, each
    in a distinctive ``lm_site_*`` C function recorded in ``Case.site``:
    ``malloc``, ``calloc``, ``realloc``, ``posix_memalign``, ``strdup`` and
    ``opendir`` (allocated inside libc), ``mmap``, a persistent worker
    thread, a short-lived thread per call, a library loaded with
    ``dlopen`` during the check, the same library opened and closed again
    by every call (unmapped when the report names the frames), 64 B on
    every 100th call, 16 B/call beside
    a native cache of 1000-byte buffers flushed every 500 calls, one
    buffer replaced on every call by a copy 32 B larger (only the latest
    copy is ever alive).

Issue 9 also adds an fd leaked on every 50th call (``fd``, run with
``Checkers.only("fds")``), a Python thread left to exit ~2.5 ms after
the call vs one that never exits (``python_thread``), a 1-object-per-call
leak under ``tolerance=4096`` (``python_memory``), and two look-alikes: a
bounded cache of 150 entries of 250 KiB and an amortised buffer doubling
up to 4 MiB then reused.

``Case.knobs`` holds the ``execute()`` keyword arguments a case must run
with, as plain values (``checkers`` as ``("only" | "exclude", name,
...)``); :meth:`Case.execute_kwargs` turns them into the arguments of a
given psleak module (ours or 0.1.6). ``Case.site`` is the expected
allocation site of a native leak: ``(function, source file name)``.
``Case.pending`` names the issue whose engine work the case waits for:
today's engine judges it wrongly, and the suite expects that (see
``PENDING``).

``Case.heavy`` marks cases that consume a lot of memory when called many
times (the 256 KiB / 64 KiB / 1 MiB per-call leaks) or are slow (the
64 MiB temporary): run them under ``ulimit -v`` or with a detector that
stops early.

:func:`cleanup` undoes what the fd / thread / list-growth leaks left
behind (closes leaked fds, wakes and joins leaked threads, empties the
growing list); it is test hygiene and not part of any case.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable

try:  # tests/ is a package
    from . import build_ext
except ImportError:  # tests/ is on sys.path (pytest rootdir / script)
    _here = os.path.dirname(os.path.abspath(__file__))
    if _here not in sys.path:
        sys.path.insert(0, _here)
    import build_ext

MEMORY = "MemoryLeakError"
FD = "UnclosedFdError"
NATIVE_THREAD = "UnclosedNativeThreadError"
PYTHON_THREAD = "UnclosedPythonThreadError"
GARBAGE = "UncollectableGarbageError"
REFCOUNT = "RefcountLeakError"

EXPECTATIONS = (MEMORY, FD, NATIVE_THREAD, PYTHON_THREAD, GARBAGE, REFCOUNT)

KINDS = (
    "malloc",
    "mmap",
    "pyalloc",
    "refcount",
    "fd",
    "native_thread",
    "python_thread",
    "python_memory",
    "garbage",
    "refleak",
    "lookalike",
    # [matrix] issue 9 / issue 10
    "churn",
    "arena",
    "native_site",
)

# [matrix] Cases that today's engine judges wrongly, with the issue whose work fixes them.
# tests/test_matrix.py marks them xfail (not strict: a fix shows as XPASS); bench/matrix.py
# still runs and scores them. Remove a name once the engine gets it right every time.
# Measured on main at 84d7a6d (bench/matrix.py --only ours --repeat 3, both allocators):
# every one of these was wrong in every run.
PENDING: dict[str, str] = (
    {}
    if sys.platform.startswith("linux")
    else {
        # Counters alone cannot see these; exact allocation tracking (issue 10, Linux
        # only so far) does.
        "leak_churn_pylist": "issue 10",  # 16 B/call under a 500 KB cache's flushes
        "leak_site_rare": "issue 10",  # 64 B per 100 calls: served from glibc's tcache
        "leak_site_churn": "issue 10",  # as leak_churn_pylist
        "leak_rare": "issue 10",  # 200 B per 500 calls: two blocks in 1,000 calls
        "leak_appended": "issue 10",  # 8 B/call into one buffer: 6-13 KiB of heap a run
    }
)


def load_extension(force_build: bool = False):
    """Build (if needed) and import the ``_leakmatrix`` extension."""
    mod = sys.modules.get("_leakmatrix")
    if mod is not None:
        return mod
    path = build_ext.build(force=force_build)
    loader = importlib.machinery.ExtensionFileLoader("_leakmatrix", str(path))
    spec = importlib.util.spec_from_file_location("_leakmatrix", str(path), loader=loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_leakmatrix"] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules["_leakmatrix"]
        raise
    return mod


ext = load_extension()


@dataclass(frozen=True)
class Case:
    name: str
    fun: Callable[[], object]
    expect: str | None  # psleak exception class name, None == clean
    kind: str
    note: str = ""
    heavy: bool = False
    # execute() keyword arguments as plain values; "checkers" as ("only" | "exclude", names...)
    knobs: tuple[tuple[str, Any], ...] = ()
    # the expected allocation site of a native leak: (C function, source file name)
    site: tuple[str, str] | None = None
    args: tuple = ()  # positional arguments: execute(fun, *args)

    @property
    def leaks(self) -> bool:
        return self.expect is not None

    @property
    def pending(self) -> str:
        """The issue this case waits for (``PENDING``), or "" when today's engine must get it right."""
        return PENDING.get(self.name, "")

    def execute_kwargs(self, psleak: Any) -> dict[str, Any]:
        """``knobs`` as keyword arguments of ``psleak.MemoryLeakTestCase.execute`` (ours or 0.1.6)."""
        kwargs: dict[str, Any] = {}
        for key, value in self.knobs:
            if key == "checkers":
                how, *names = value
                kwargs[key] = getattr(psleak.Checkers, how)(*names)
            else:
                kwargs[key] = value
        return kwargs

    def __post_init__(self):
        if self.expect is not None and self.expect not in EXPECTATIONS:
            msg = f"{self.name}: unknown expectation {self.expect!r}"
            raise ValueError(msg)
        if self.kind not in KINDS:
            msg = f"{self.name}: unknown kind {self.kind!r}"
            raise ValueError(msg)
        for key, value in self.knobs:
            if key == "checkers" and (not isinstance(value, tuple) or value[:1] not in (("only",), ("exclude",))):
                msg = f"{self.name}: checkers knob must be ('only' | 'exclude', name, ...), got {value!r}"
                raise ValueError(msg)
        if self.site is not None and (self.expect is None or len(self.site) != 2):
            msg = f"{self.name}: site must be (function, file) and only on a leak, got {self.site!r}"
            raise ValueError(msg)


# --- temp file for the path-taking fd cases

# One fixed per-user directory, reused by every run (and by concurrent
# processes: the file is only ever opened, never written), so that runs
# ending in os._exit() or a crash leave nothing new behind.
_TMPDIR = os.path.join(tempfile.gettempdir(), f"psleak-leakmatrix-{os.getuid()}")
os.makedirs(_TMPDIR, mode=0o700, exist_ok=True)
TMPFILE = os.path.join(_TMPDIR, "fd-case.tmp")
with open(TMPFILE, "ab"):
    pass


# --- pure-Python cases

_never_set = threading.Event()
_py_threads: list[threading.Thread] = []


def leak_py_thread():
    """Start a daemon thread blocked on an Event nobody sets."""
    t = threading.Thread(target=_never_set.wait, name="leaky-py-thread", daemon=True)
    t.start()
    _py_threads.append(t)


def clean_py_thread():
    """Start a thread and join it."""
    t = threading.Thread(target=int, name="clean-py-thread", daemon=True)
    t.start()
    t.join()


def release_python_threads() -> int:
    """Wake and join the threads started by leak_py_thread()."""
    global _never_set
    threads = list(_py_threads)
    _py_threads.clear()
    event, _never_set = _never_set, threading.Event()
    event.set()
    for t in threads:
        t.join()
    return len(threads)


_growth: list[bytes] = []


def leak_py_list_growth():
    """Append a new 100-byte bytes to a module-level list."""
    _growth.append(bytes(100))


@functools.lru_cache(maxsize=500)
def _cached(key):
    return bytes(100)


_keys = itertools.count()


def clean_py_bounded_cache():
    """Query a bounded lru_cache(maxsize=500) with a new key every call."""
    _cached(next(_keys))


class _Node:
    def __init__(self, tag=0):
        self.tag = tag
        self.peer = None


class _NodeWithDel(_Node):
    finalized = 0

    def __del__(self):
        # must not break the cycle (self.peer = None would let it be freed)
        type(self).finalized += 1


def leak_py_cycle():
    """Create a two-object reference cycle of plain objects."""
    a, b = _Node(1), _Node(2)
    a.peer = b
    b.peer = a


def clean_py_no_cycle():
    """Create the same two objects, without the cycle."""
    a, b = _Node(1), _Node(2)
    a.peer = b


def leak_py_cycle_del():
    """Create a two-object reference cycle of objects with __del__."""
    a, b = _NodeWithDel(1), _NodeWithDel(2)
    a.peer = b
    b.peer = a


def clean_py_no_cycle_del():
    """Create the same __del__ objects, without the cycle."""
    a, b = _NodeWithDel(1), _NodeWithDel(2)
    a.peer = b


# --- [matrix] issue 9 pure-Python cases


def _sleep_then_exit() -> None:
    time.sleep(0.0025)  # needs the GIL again to return


def _sleep_then_block(event: threading.Event) -> None:
    time.sleep(0.0025)
    event.wait()  # set only by release_python_threads()


def leak_py_thread_unjoined():
    """Start a thread and return without joining it; it never exits."""
    t = threading.Thread(target=_sleep_then_block, args=(_never_set,), name="stuck-py-thread", daemon=True)
    t.start()
    _py_threads.append(t)


def clean_py_thread_unjoined():
    """Start a thread and return without joining it; it exits ~2.5 ms after the call."""
    t = threading.Thread(target=_sleep_then_exit, name="late-py-thread", daemon=True)
    t.start()  # not kept: a list of every thread started would itself grow with calls


_objects: list[object] = []


def leak_py_object_per_call():
    """Keep one new Python object per call (run with tolerance=4096)."""
    _objects.append(object())


def clean_py_object_per_call():
    """Create the same object and drop it (run with tolerance=4096)."""
    _objects.append(object())
    _objects.pop()


# --- the catalogue


def _pair(stem, kind, expect, note, heavy=False):
    """A leak_<stem> case and its clean_<stem> twin from the extension."""
    leak = getattr(ext, f"leak_{stem}")
    clean = getattr(ext, f"clean_{stem}")
    return [
        Case(f"leak_{stem}", leak, expect, kind, note, heavy),
        Case(f"clean_{stem}", clean, None, kind, note, heavy),
    ]


def _leak_twin(stem, kind, expect, note, *, knobs=(), site=None, fun_source=None):
    """Like ``_pair``, with knobs and a site; ``fun_source`` is the extension or this module."""
    source = ext if fun_source is None else fun_source
    return [
        Case(f"leak_{stem}", getattr(source, f"leak_{stem}"), expect, kind, note, knobs=knobs, site=site),
        Case(f"clean_{stem}", getattr(source, f"clean_{stem}"), None, kind, note, knobs=knobs),
    ]


def _partial(fun, *args):
    p = functools.partial(fun, *args)
    # psleak reports fun.__qualname__ / __name__; partials have neither
    p.__name__ = p.__qualname__ = f"{fun.__name__}(path)"  # type: ignore[attr-defined]
    return p


def _build_cases() -> list[Case]:
    c: list[Case] = []
    # malloc family
    c += _pair("malloc_small", "malloc", MEMORY, "malloc(16)")
    c += _pair("malloc_tiny", "malloc", MEMORY, "malloc(8)")
    c += _pair("malloc_page", "malloc", MEMORY, "malloc(4096)")
    c += _pair("malloc_huge", "malloc", MEMORY, "malloc(256 KiB), memset", heavy=True)
    c += _pair("calloc", "malloc", MEMORY, "calloc(32, 8)")
    c += _pair("realloc", "malloc", MEMORY, "malloc(16) realloc'd to 512")
    c += _pair("strdup", "malloc", MEMORY, "strdup(70 chars)")
    c += _pair("posix_memalign", "malloc", MEMORY, "posix_memalign(64, 256)")
    c += _pair("intermittent", "malloc", MEMORY, "malloc(64) every 10th call")
    c += _pair("rare", "malloc", MEMORY, "malloc(200) every 500th call")
    c += _pair("appended", "malloc", MEMORY, "8 B/call appended to one buffer grown by realloc")
    c += _pair("after_fill", "malloc", MEMORY, "malloc(32) every 3rd call after a 75 KB cache filled")
    c += _pair("thread_malloc", "malloc", MEMORY, "malloc(1 KiB) in a joined thread")
    # mmap
    c += _pair("mmap", "mmap", MEMORY, "mmap 64 KiB, touched", heavy=True)
    c += _pair("mmap_large", "mmap", MEMORY, "mmap 1 MiB, touched", heavy=True)
    # Python allocators / refcounts
    c += _pair("pymem_malloc", "pyalloc", MEMORY, "PyMem_Malloc(64)")
    c += _pair("pyobject_malloc", "pyalloc", MEMORY, "PyObject_Malloc(64)")
    c += _pair("missing_decref_bytes", "refcount", MEMORY, "bytes(100) not DECREF'd")
    c += _pair("missing_decref_list", "refcount", MEMORY, "list of 10 ints not DECREF'd")
    c += _pair("missing_decref_long", "refcount", MEMORY, "10**60 not DECREF'd")
    c += _pair("extra_incref", "refcount", MEMORY, "returns bytes(100), +1 ref")
    c += _pair("buffer", "refcount", MEMORY, "bytearray(1024) buffer not released")
    # fds
    c += _pair("fd_open", "fd", FD, "open('/dev/null')")
    c += [
        Case(
            "leak_fd_open_path",
            _partial(ext.leak_fd_open, TMPFILE),
            FD,
            "fd",
            "open(<temp file>)",
        ),
        Case(
            "clean_fd_open_path",
            _partial(ext.clean_fd_open, TMPFILE),
            None,
            "fd",
            "open(<temp file>)",
        ),
    ]
    for stem, note in [
        ("fd_pipe", "pipe2()"),
        ("fd_tcp_socket", "socket(AF_INET, SOCK_STREAM)"),
        ("fd_udp_socket", "socket(AF_INET, SOCK_DGRAM)"),
        ("fd_socketpair", "socketpair(AF_UNIX)"),
        ("fd_eventfd", "eventfd()"),
        ("fd_memfd", "memfd_create()"),
        ("fd_epoll", "epoll_create1()"),
        ("fd_timerfd", "timerfd_create()"),
        ("fd_signalfd", "signalfd()"),
        ("fd_inotify", "inotify_init1()"),
        ("fd_dup", "dup()"),
    ]:
        c += _pair(stem, "fd", FD, note)
    # threads
    c += _pair(
        "native_thread",
        "native_thread",
        NATIVE_THREAD,
        "pthread named 'leaky-worker', blocked, never joined",
    )
    c += [
        Case(
            "leak_py_thread",
            leak_py_thread,
            PYTHON_THREAD,
            "python_thread",
            "daemon threading.Thread blocked on an Event",
        ),
        Case(
            "clean_py_thread",
            clean_py_thread,
            None,
            "python_thread",
            "threading.Thread started and joined",
        ),
        # Python memory
        Case(
            "leak_py_list_growth",
            leak_py_list_growth,
            MEMORY,
            "python_memory",
            "module-level list += bytes(100)",
        ),
        Case(
            "clean_py_bounded_cache",
            clean_py_bounded_cache,
            None,
            "python_memory",
            "lru_cache(maxsize=500), new key per call",
        ),
        # gc garbage
        Case(
            "leak_py_cycle",
            leak_py_cycle,
            GARBAGE,
            "garbage",
            "2-object cycle of plain objects",
        ),
        Case(
            "clean_py_no_cycle",
            clean_py_no_cycle,
            None,
            "garbage",
            "same objects, no cycle",
        ),
        Case(
            "leak_py_cycle_del",
            leak_py_cycle_del,
            GARBAGE,
            "garbage",
            "2-object cycle of objects with __del__",
        ),
        Case(
            "clean_py_no_cycle_del",
            clean_py_no_cycle_del,
            None,
            "garbage",
            "same __del__ objects, no cycle",
        ),
    ]
    # clean look-alikes
    for name, note, heavy in [
        ("bounded_cache", "1000-slot static cache of malloc(128)", False),
        ("lazy_global", "malloc(64 KiB) on first call", False),
        ("growing_buffer", "realloc'd scratch buffer up to 64 KiB", False),
        ("large_temp", "malloc(64 MiB), touched, freed", True),
        ("fragmentation", "mixed sizes freed out of order", False),
        ("fd_roundtrip", "open+close file, pipe, socket", False),
        ("thread_join", "thread created and joined", False),
    ]:
        fun = getattr(ext, f"lookalike_{name}")
        c.append(Case(f"lookalike_{name}", fun, None, "lookalike", note, heavy))
    c += _matrix_cases()
    c += _refleak_cases()
    return c


def _matrix_cases() -> list[Case]:
    """[matrix] The issue 9 and issue 10 cases (see the module docstring)."""
    c: list[Case] = []
    src = "_leakmatrix.c"
    no_garbage = (("checkers", ("exclude", "gcgarbage")),)
    # issue 9: steady leaks beside churn, a private arena
    for stem, kind, note, knobs, fun in [
        (
            "churn_pylist",
            "churn",
            "malloc(16) + list of bytes(1000) cleared every 500 calls",
            (),
            "lm_site_pylist_churn_alloc",
        ),
        (
            "cycle_malloc",
            "churn",
            "malloc(16) + ~2 KB reference cycle, gcgarbage off",
            no_garbage,
            "lm_site_cycle_alloc",
        ),
    ]:
        c += _leak_twin(stem, kind, MEMORY, note, knobs=knobs, site=(fun, src))
    c += _leak_twin("private_arena", "arena", MEMORY, "64 B/call bump-allocated from 1 MiB mmap'ed chunks")
    # issue 9: resources compared across runs, threads given time to exit, tolerance in bytes
    c += _leak_twin(
        "fd_every_50th",
        "fd",
        FD,
        "open('/dev/null') on every 50th call, fds only",
        knobs=(("checkers", ("only", "fds")),),
    )
    c += _leak_twin(
        "py_thread_unjoined",
        "python_thread",
        PYTHON_THREAD,
        "thread not joined: never exits / exits ~2.5 ms after the call",
        fun_source=sys.modules[__name__],
    )
    c += _leak_twin(
        "py_object_per_call",
        "python_memory",
        MEMORY,
        "one object() kept per call, tolerance=4096",
        knobs=(("tolerance", 4096),),
        fun_source=sys.modules[__name__],
    )
    # issue 9: clean look-alikes
    c.append(
        Case(
            "lookalike_bounded_cache_large",
            ext.lookalike_bounded_cache_large,
            None,
            "lookalike",
            "150-entry cache of 250 KiB blocks (37.5 MiB), oldest evicted",
        )
    )
    c.append(
        Case(
            "lookalike_amortised_buffer",
            ext.lookalike_amortised_buffer,
            None,
            "lookalike",
            "1 KiB/call into a buffer doubling up to 4 MiB, then reused",
        )
    )
    # issue 10: native leaks with a known allocation site
    for stem, note, site in [
        ("site_malloc", "malloc(48)", ("lm_site_malloc", src)),
        ("site_calloc", "calloc(10, 24)", ("lm_site_calloc", src)),
        ("site_realloc", "buffer grown by realloc to 320 B", ("lm_site_realloc", src)),
        ("site_posix_memalign", "posix_memalign(64, 192)", ("lm_site_posix_memalign", src)),
        ("site_strdup", "strdup (inside libc)", ("lm_site_strdup", src)),
        ("site_opendir", "opendir('/') (inside libc), fd closed, DIR lost", ("lm_site_opendir", src)),
        ("site_mmap", "mmap 8 KiB, touched", ("lm_site_mmap", src)),
        ("site_worker", "malloc(80) in a persistent worker thread", ("lm_site_worker_alloc", src)),
        ("site_thread", "malloc(112) in a short-lived thread per call", ("lm_site_thread_alloc", src)),
        ("site_dlopen", "malloc(144) in a library dlopen'ed by the check", ("lm_dl_alloc", "leakmatrix_dl.c")),
        (
            "site_dlclose",
            "malloc(144) in a library each call dlopens and dlcloses",
            ("lm_dl_alloc", "leakmatrix_dl.c"),
        ),
        ("site_rare", "malloc(64) on every 100th call", ("lm_site_rare_alloc", src)),
        ("site_churn", "malloc(16) + 1000-byte buffers freed every 500 calls", ("lm_site_churn_alloc", src)),
        ("site_grown_copy", "one buffer replaced by a copy 32 B larger per call", ("lm_site_grown_copy_alloc", src)),
        ("site_table", "malloc(56) through a pointer in data (as xmlMalloc)", ("lm_site_table_alloc", src)),
    ]:
        c += _leak_twin(stem, "native_site", MEMORY, note, site=site)
    return c


# --- references taken and never given back (kind "refleak")


class RefTarget:
    """A long-lived argument whose count the refleak cases raise (or not)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"RefTarget({self.name!r})"


def _closure_case(name: str, fun: Callable[[object], object], expect: str | None, note: str) -> Case:
    target = RefTarget(name)

    def call():
        return fun(target)

    call.__name__ = call.__qualname__ = f"{name}(lambda)"
    return Case(name, call, expect, "refleak", note)


def _refleak_cases() -> list[Case]:
    c: list[Case] = []
    for stem, note in [
        ("incref_arg", "Py_INCREF(arg), never given back"),
        ("incref_arg_rare", "Py_INCREF(arg) kept on one call in ten"),
    ]:
        for prefix, expect in (("leak_", REFCOUNT), ("clean_", None)):
            fun = getattr(ext, prefix + stem)
            c.append(Case(prefix + stem, fun, expect, "refleak", note, args=(RefTarget(prefix + stem),)))
    c.append(_closure_case("leak_incref_arg_closure", ext.leak_incref_arg, REFCOUNT, "Py_INCREF(v) in a lambda"))
    c.append(_closure_case("clean_incref_arg_closure", ext.clean_incref_arg, None, "Py_INCREF(v) in a lambda"))
    c += _pair("incref_global", "refleak", REFCOUNT, "Py_INCREF(module-level object), no argument")
    c += _pair("heaptype_dealloc", "refleak", REFCOUNT, "heap type's tp_dealloc without Py_DECREF(type)")
    # rare leaks on objects the function does not hold: only the census sees them
    c += _pair("incref_global_rare", "refleak", REFCOUNT, "Py_INCREF(module-level object) kept on one call in 200")
    if sys.version_info < (3, 12):  # None is immortal since 3.12: its count never changes
        c += _pair("incref_none_rare", "refleak", REFCOUNT, "Py_INCREF(None) kept on one call in 50")
    c.append(
        Case(
            "lookalike_ref_ring",
            ext.lookalike_ref_ring,
            None,
            "refleak",
            "keeps the last 256 arguments",
            args=(RefTarget("lookalike_ref_ring"),),
        )
    )
    return c


CASES: list[Case] = _build_cases()
_BY_NAME = {case.name: case for case in CASES}
assert len(_BY_NAME) == len(CASES), "duplicate case names"


def cases(
    kind: str | Iterable[str] | None = None,
    *,
    leaking: bool | None = None,
    heavy: bool | None = None,
) -> list[Case]:
    """Return the cases, optionally filtered.

    kind: a kind or an iterable of kinds (see ``KINDS``).
    leaking: True for leaks only, False for clean cases only.
    heavy: True / False to keep only heavy / light cases.
    """
    if kind is None:
        kinds = None
    elif isinstance(kind, str):
        kinds = {kind}
    else:
        kinds = set(kind)
    if kinds is not None:
        unknown = kinds - set(KINDS)
        if unknown:
            msg = f"unknown kind(s): {sorted(unknown)}"
            raise ValueError(msg)
    return [
        c
        for c in CASES
        if (kinds is None or c.kind in kinds)
        and (leaking is None or c.leaks == leaking)
        and (heavy is None or c.heavy == heavy)
    ]


def by_name(name: str) -> Case:
    """Return the case called ``name`` (KeyError if there is none)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        msg = f"no leak-matrix case named {name!r}"
        raise KeyError(msg) from None


def cleanup() -> None:
    """Undo the resources left behind by the leaking cases (test hygiene).

    Closes the fds leaked by the ``fd`` cases, wakes and joins the
    ``leaky-worker`` native threads and the leaked Python threads, and
    empties the lists grown by ``leak_py_list_growth`` and
    ``leak_py_object_per_call``, joins the threads ``clean_py_thread_unjoined``
    left to exit, and unloads the library ``leak_site_dlopen`` loaded (so
    that the next check loads it again while it runs). Memory leaked by
    the C functions is, by design, lost for good.
    """
    ext.close_leaked_fds()
    ext.release_leaked_threads()
    release_python_threads()
    _growth.clear()
    # [matrix]
    _objects.clear()
    ext.unload_dl_library()  # the next check loads it again, while it runs
    for t in threading.enumerate():
        if t.name == "late-py-thread":
            t.join()


__all__ = [
    "CASES",
    "EXPECTATIONS",
    "KINDS",
    "PENDING",
    "TMPFILE",
    "Case",
    "by_name",
    "cases",
    "cleanup",
    "ext",
    "load_extension",
    "release_python_threads",
]
