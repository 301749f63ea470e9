"""Which checks :meth:`MemoryLeakTestCase.execute` runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Checkers:
    """Switches for each check; all on by default.

    ``memory``: growth over many calls. ``fds``: file descriptors left open (POSIX).
    ``handles``: handles left open (Windows; ignored elsewhere). ``c_threads``: native
    threads left running. ``py_threads``: Python threads left running. ``gcgarbage``:
    objects left to the cyclic garbage collector. ``refcounts``: reference counts that
    rise with the calls (a reference census before and after the memory runs; needs
    ``memory``).
    """

    memory: bool = True
    fds: bool = True
    handles: bool = True
    c_threads: bool = True
    py_threads: bool = True
    gcgarbage: bool = True
    refcounts: bool = True

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The names of the checkers."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def _check_names(cls, names: tuple[str, ...]) -> None:
        unknown = [n for n in names if n not in cls.names()]
        if unknown:
            valid = ", ".join(cls.names())
            raise ValueError(f"invalid checker names: {', '.join(map(repr, unknown))} (valid: {valid})")

    @classmethod
    def only(cls, *names: str) -> Checkers:
        """Only the named checkers on."""
        cls._check_names(names)
        return cls(**{n: n in names for n in cls.names()})

    @classmethod
    def exclude(cls, *names: str) -> Checkers:
        """Every checker but the named ones."""
        cls._check_names(names)
        return cls(**{n: n not in names for n in cls.names()})
