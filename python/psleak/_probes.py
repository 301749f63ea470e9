"""What the process looks like now: malloc statistics, memory, descriptors, threads.

Every function reads the live process through the Rust core; see the README for costs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from . import _psleak


class _FieldMapping(Mapping[str, Any]):
    """Lets a frozen dataclass be read as a mapping too: ``info["heap_used"]``."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def _asdict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class MallocInfo(_FieldMapping):
    """The allocator's view, in bytes. ``heap_used``: in use in malloc's arenas (all
    threads' arenas); ``mmap_used``: in malloc's own mmapped chunks (large blocks);
    ``heap_total``: what the arenas hold from the OS; ``heap_free``: free inside them."""

    heap_used: int
    mmap_used: int
    heap_total: int
    heap_free: int


@dataclass(frozen=True)
class MemoryInfo(_FieldMapping):
    """The process's memory as the kernel accounts it, in bytes: ``rss`` resident,
    ``vms`` virtual, ``uss`` private resident (what freeing the process would return),
    ``pss`` proportional, ``swap`` swapped out."""

    rss: int
    vms: int
    uss: int
    pss: int
    swap: int


@dataclass(frozen=True)
class FdInfo(_FieldMapping):
    """An open file descriptor. ``kind`` is one of ``file``, ``directory``, ``pipe``,
    ``socket``, ``eventfd``, ``epoll``, ``timerfd``, ``signalfd``, ``inotify``,
    ``fanotify``, ``memfd``, ``pidfd``, ``anon_inode``, ``char_device``, ``block_device``,
    ``other``. Sockets fill ``family`` (``AF_INET``...), ``type`` (``SOCK_STREAM``...),
    ``laddr`` and ``raddr``."""

    fd: int
    kind: str
    path: str | None
    target: str
    family: str | None = None
    type: str | None = None
    laddr: str | None = None
    raddr: str | None = None
    name: str | None = None

    @classmethod
    def _from_core(cls, d: dict[str, Any]) -> FdInfo:
        return cls(
            fd=d["fd"],
            kind=d["kind"],
            path=d.get("path"),
            target=d["target"],
            family=d.get("family"),
            type=d.get("socktype"),
            laddr=d.get("local"),
            raddr=d.get("remote"),
            name=d.get("name"),
        )


@dataclass(frozen=True)
class ThreadInfo(_FieldMapping):
    """A native thread: kernel thread id and name."""

    id: int
    name: str


def malloc_info() -> MallocInfo:
    """The allocator's statistics (glibc ``mallinfo2``). Raises :class:`ProbeError` where
    the allocator has none (musl, other platforms)."""
    return MallocInfo(**_psleak.malloc_stats())


def malloc_trim() -> bool:
    """Gives free heap memory back to the OS (``malloc_trim(0)``); True if any was."""
    return _psleak.malloc_trim()


def memory_info() -> MemoryInfo:
    """rss, vms, uss, pss and swap of this process (``/proc/self/statm`` and
    ``/proc/self/smaps_rollup``)."""
    return MemoryInfo(**_psleak.process_memory())


def fd_count() -> int:
    """How many file descriptors are open (cheap: no description)."""
    return _psleak.fd_count()


def open_fds() -> list[FdInfo]:
    """Every open file descriptor, described."""
    return [FdInfo._from_core(d) for d in _psleak.fd_list()]


def thread_count() -> int:
    """How many native threads the process has (Python threads included)."""
    return _psleak.thread_count()


def native_threads() -> list[ThreadInfo]:
    """Every native thread of the process, with its id and name."""
    return [ThreadInfo(**d) for d in _psleak.thread_list()]
