"""psleak's exceptions. All derive from :class:`Error`, an ``AssertionError``, so a leak
fails a test like any failed assertion."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Error(AssertionError):
    """Base class of every leak psleak reports."""


class MemoryLeakError(Error):
    """Memory keeps growing with calls: ``malloc`` without ``free``, ``mmap`` without
    ``munmap``, Python objects never released (missing ``Py_DECREF``), ``PyMem_Malloc``
    without ``PyMem_Free``.

    ``report`` holds the full report (a :class:`psleak.Report`) when psleak raised it.
    """

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class RefcountLeakError(MemoryLeakError):
    """References taken and never given back: an object's reference count rises with the
    calls (a ``Py_INCREF`` without its ``Py_DECREF``) although memory may not grow at all,
    as when the object is an argument, a module global or ``None``. A subclass of
    :class:`MemoryLeakError`, so ``except MemoryLeakError`` clauses catch it too.

    Its report is a memory leak led by the ``refs`` metric;
    ``report.data["refcounts"]`` lists the objects: ``type``, ``repr``, ``role``
    (``"argument 0"``, ``"bound self"``... when the object is one the function holds),
    ``refs_per_call``, ``refs`` and ``calls``.
    """


class UnclosedResourceError(Error):
    """A call left resources open. ``count`` is how many more there were after the calls
    than before, ``fun_name`` the function, ``extras`` the new resources, described."""

    resource_name = "resource"
    verb = "unclosed"

    def __init__(
        self,
        count: int,
        fun_name: str,
        extras: Iterable[Any] | None = None,
        *,
        calls: int = 1,
        report: Any = None,
    ) -> None:
        self.count = count
        self.fun_name = fun_name
        self.extras = list(extras) if extras is not None else None
        self.calls = calls
        self.report = report
        noun = self.resource_name + ("s" if count != 1 else "")
        times = "time" if calls == 1 else "times"
        # No colon after the first line: pytest's short summary shows that line alone.
        message = f"detected {count} {self.verb} {noun} after calling {fun_name!r} {calls} {times}"
        if self.extras:
            message += "".join(f"\n* {extra!r}" for extra in self.extras)
        super().__init__(message)


class UnclosedFdError(UnclosedResourceError):
    """A file descriptor of any kind (file, pipe, socket, eventfd, memfd, epoll...) was left
    open. POSIX."""

    resource_name = "file descriptor"


class UnclosedHandleError(UnclosedResourceError):
    """A handle was left open (missing ``CloseHandle``). Windows."""

    resource_name = "handle"


class UnclosedHeapCreateError(UnclosedResourceError):
    """``HeapCreate`` without ``HeapDestroy``. Windows."""

    resource_name = "HeapCreate() call"


class UnclosedNativeThreadError(UnclosedResourceError):
    """A native thread was left running (``pthread_create`` without ``pthread_join``)."""

    resource_name = "native C thread"


class UnclosedPythonThreadError(UnclosedResourceError):
    """A ``threading.Thread`` was started and is still running."""

    resource_name = "Python thread"


class UncollectableGarbageError(UnclosedResourceError):
    """A call left objects that only the cyclic garbage collector can free (reference
    cycles), or that it cannot free at all."""

    resource_name = "GC object"
    verb = "uncollectable"


# Failures read `psleak.MemoryLeakError`, the public name, not the private module's.
for _cls in (
    Error,
    MemoryLeakError,
    RefcountLeakError,
    UnclosedResourceError,
    UnclosedFdError,
    UnclosedHandleError,
    UnclosedHeapCreateError,
    UnclosedNativeThreadError,
    UnclosedPythonThreadError,
    UncollectableGarbageError,
):
    _cls.__module__ = "psleak"
