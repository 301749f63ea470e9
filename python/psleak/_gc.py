"""Finding objects that a call leaves to the cyclic garbage collector."""

from __future__ import annotations

import gc
import threading
import types
from typing import Any, Callable

from ._errors import UncollectableGarbageError

# Objects that end up in cycles as a matter of course (a caught exception references its
# traceback, which references the frame holding the exception) and vanish with them.
_TRANSIENT = (types.FrameType, types.TracebackType, BaseException, threading.Thread)
# Objects that reference no other object: they can be in garbage only as a cycle's payload.
_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray)


def _only_transient(obj: Any, seen: set[int]) -> bool:
    if id(obj) in seen:
        return True
    seen.add(id(obj))
    if isinstance(obj, _TRANSIENT + _LEAVES):
        return True
    if isinstance(obj, dict):
        return all(_only_transient(k, seen) and _only_transient(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return all(_only_transient(o, seen) for o in obj)
    return False


def _qualname(fun: Callable[..., Any]) -> str:
    return getattr(fun, "__qualname__", getattr(fun, "__name__", repr(fun)))


class GCDebugger:
    """Context manager that records what the cyclic garbage collector finds while the block
    runs: with ``gc.DEBUG_SAVEALL`` on, every object the collector would free is kept in
    ``gc.garbage`` instead, so cycles the block created can be listed.

    >>> with GCDebugger() as dbg:
    ...     fun()
    >>> dbg.check(fun)   # raises UncollectableGarbageError if fun left cycles
    """

    def __init__(self) -> None:
        self.before: list[Any] = []
        self.after: list[Any] = []
        self._debug = 0

    def __enter__(self) -> GCDebugger:
        self._debug = gc.get_debug()
        gc.collect()
        self.before = list(gc.garbage)
        gc.set_debug(self._debug | gc.DEBUG_SAVEALL)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            gc.collect()
            known = {id(o) for o in self.before}
            self.after = [o for o in gc.garbage if id(o) not in known]
            # Give back what we saved: the objects are freed once nothing refers to them.
            gc.garbage[:] = self.before
        finally:
            gc.set_debug(self._debug)

    @staticmethod
    def is_transient(obj: Any) -> bool:
        """Whether ``obj`` is something that ends up in garbage as a matter of course and
        is not a leak: a scalar (numbers, strings, bytes, None), a frame, a traceback, an
        exception, a thread object, or a list, tuple, set or dict holding only such."""
        return _only_transient(obj, set())

    def leaked_objects(self) -> list[Any]:
        """Objects collected during the block that are not transient (see
        :meth:`is_transient`)."""
        leaked = [o for o in self.after if not self.is_transient(o)]
        # An instance's __dict__ is part of the instance: report the instance only.
        owned = {id(d) for o in leaked if isinstance(d := getattr(o, "__dict__", None), dict)}
        return [o for o in leaked if id(o) not in owned]

    def check(self, fun: Callable[..., Any]) -> None:
        """Raises :class:`UncollectableGarbageError` if the block left garbage."""
        leaked = self.leaked_objects()
        if leaked:
            raise UncollectableGarbageError(len(leaked), _qualname(fun), extras=leaked)
