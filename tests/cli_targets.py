"""Functions for tests/test_cli.py to check with ``python -m psleak check cli_targets:NAME``
(run from this directory)."""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

NOT_CALLABLE = 42


def clean() -> None:
    """Frees what it allocates."""
    libc.free(libc.malloc(64))


def leak() -> None:
    """64 bytes never freed."""
    libc.malloc(64)


def leak_bytes(size: int, *, times: int = 1) -> None:
    """``size * times`` bytes never freed."""
    libc.malloc(size * times)


HOARD: list[bytes] = []


def py_leak() -> None:
    """One Python object kept per call."""
    HOARD.append(bytes(100))


def fd_leak() -> None:
    """A pipe never closed."""
    os.pipe()


def raises() -> None:
    """Fails on every call."""
    raise ValueError("bad input")


class Target:
    """For dotted names: ``cli_targets:Target.clean``."""

    @staticmethod
    def clean() -> None:
        """Frees what it allocates."""
        clean()
