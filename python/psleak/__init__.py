"""psleak: leak checks for Python C extensions and native code.

Call a function many times and fail when the process keeps growing (malloc, mmap, Python
objects) or when one call leaves resources open (file descriptors, threads, gc garbage).
The engine is written in Rust (``psleak._psleak``); this package is its Python face.

Names are imported on first use: the pytest plugin (``psleak.pytest_plugin``) is loaded in
every pytest run of an environment where psleak is installed, and importing it imports this
package, which must therefore not load the native module by itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._checkers import Checkers
    from ._core import DEFAULTS, TOLERANCE_KEYS, Finding, LeakedResource, Report, check, report_schema
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

    __version__: str
    #: ``"release"`` or ``"debug"``: how the native module was built.
    BUILD_PROFILE: str

#: The module of each public name.
_WHERE: dict[str, str] = {
    "Checkers": "_checkers",
    **dict.fromkeys(
        ("DEFAULTS", "TOLERANCE_KEYS", "Finding", "LeakedResource", "Report", "check", "report_schema"), "_core"
    ),
    **dict.fromkeys(
        (
            "Error",
            "MemoryLeakError",
            "RefcountLeakError",
            "UncollectableGarbageError",
            "UnclosedFdError",
            "UnclosedHandleError",
            "UnclosedHeapCreateError",
            "UnclosedNativeThreadError",
            "UnclosedPythonThreadError",
            "UnclosedResourceError",
        ),
        "_errors",
    ),
    "GCDebugger": "_gc",
    **dict.fromkeys(
        (
            "FdInfo",
            "MallocInfo",
            "MemoryInfo",
            "ThreadInfo",
            "fd_count",
            "malloc_info",
            "malloc_trim",
            "memory_info",
            "native_threads",
            "open_fds",
            "thread_count",
        ),
        "_probes",
    ),
    "ProbeError": "_psleak",
    "LeakTest": "_unittest",
    "MemoryLeakTestCase": "_unittest",
    "__version__": "_psleak",
    "BUILD_PROFILE": "_psleak",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'psleak' has no attribute {name!r}")
    # A submodule already imported is an attribute of this package: use it rather than
    # import it again, which would make a second copy of its classes when something took
    # it out of sys.modules (as pytester does after each in-process run).
    loaded = globals().get(module) or importlib.import_module(f"{__name__}.{module}")
    value = getattr(loaded, name)
    globals()[name] = value  # from now on, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "BUILD_PROFILE",
    "DEFAULTS",
    "TOLERANCE_KEYS",
    "Checkers",
    "Error",
    "FdInfo",
    "Finding",
    "GCDebugger",
    "LeakTest",
    "LeakedResource",
    "MallocInfo",
    "MemoryInfo",
    "MemoryLeakError",
    "MemoryLeakTestCase",
    "ProbeError",
    "RefcountLeakError",
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
    "report_schema",
    "thread_count",
]
