"""psleak: leak checks for Python C extensions and native code.

Call a function many times and fail when the process keeps growing (malloc, mmap, Python
objects) or when one call leaves resources open (file descriptors, threads, gc garbage).
The engine is written in Rust (``psleak._psleak``); this package is its Python face.
"""

from __future__ import annotations

from . import _psleak
from ._checkers import Checkers
from ._core import DEFAULTS, TOLERANCE_KEYS, LeakedResource, Report, check
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
from ._probes import (
    FdInfo,
    MallocInfo,
    MemoryInfo,
    ThreadInfo,
    fd_count,
    malloc_info,
    malloc_trim,
    memory_info,
    native_threads,
    open_fds,
    thread_count,
)
from ._psleak import ProbeError
from ._unittest import LeakTest, MemoryLeakTestCase

__version__: str = _psleak.__version__
#: ``"release"`` or ``"debug"``: how the native module was built.
BUILD_PROFILE: str = _psleak.BUILD_PROFILE

__all__ = [
    "BUILD_PROFILE",
    "DEFAULTS",
    "TOLERANCE_KEYS",
    "Checkers",
    "Error",
    "FdInfo",
    "GCDebugger",
    "LeakTest",
    "LeakedResource",
    "MallocInfo",
    "MemoryInfo",
    "MemoryLeakError",
    "MemoryLeakTestCase",
    "ProbeError",
    "Report",
    "ThreadInfo",
    "UnclosedFdError",
    "UnclosedHandleError",
    "UnclosedHeapCreateError",
    "UnclosedNativeThreadError",
    "UnclosedPythonThreadError",
    "UnclosedResourceError",
    "UncollectableGarbageError",
    "__version__",
    "check",
    "fd_count",
    "malloc_info",
    "malloc_trim",
    "memory_info",
    "native_threads",
    "open_fds",
    "thread_count",
]
