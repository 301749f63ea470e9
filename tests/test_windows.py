"""Windows leaks caught from Python: a C extension built with mingw
(``tests/windows/_winleakext.c``) leaks malloc'd memory, a ``HeapCreate`` heap and an event
handle; each twin frees what it made. Run under Wine by ``make test-windows`` (the directory
of the built extension is in ``PSLEAK_WINEXT_DIR``)."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

import pytest

import psleak
from psleak import Checkers, MemoryLeakTestCase


def _ext() -> ModuleType:
    folder = os.environ.get("PSLEAK_WINEXT_DIR")
    if not folder:
        pytest.fail("PSLEAK_WINEXT_DIR: the folder of _winleakext.pyd (make test-windows builds it)")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("_winleakext")
    finally:
        sys.path.remove(folder)


ext = _ext()


class WinExtTest(MemoryLeakTestCase):
    def test_malloc_leak_is_a_memory_leak(self) -> None:
        with pytest.raises(psleak.MemoryLeakError) as info:
            self.execute(ext.leak_malloc)
        assert "(heap)" in str(info.value).splitlines()[0], info.value

    def test_malloc_twin_passes(self) -> None:
        self.execute(ext.clean_malloc)

    def test_heapcreate_leak(self) -> None:
        with pytest.raises(psleak.UnclosedHeapCreateError) as info:
            self.execute(ext.leak_heapcreate)
        assert str(info.value).startswith("detected 1 unclosed HeapCreate() call after calling"), info.value

    def test_heapcreate_twin_passes(self) -> None:
        self.execute(ext.clean_heapcreate)

    def test_handle_leak_names_the_type(self) -> None:
        with pytest.raises(psleak.UnclosedHandleError) as info:
            self.execute(ext.leak_handle)
        assert ": Event" in str(info.value), info.value

    def test_handle_twin_passes(self) -> None:
        self.execute(ext.clean_handle)

    def test_handles_checker_can_be_turned_off(self) -> None:
        self.execute(ext.leak_handle, checkers=Checkers.exclude("handles", "memory"))


def test_backend_and_probes() -> None:
    assert psleak._psleak.BACKEND == "windows"
    info = psleak.malloc_info()
    assert info.heap_used > 0
    assert info.heap_total >= info.heap_used
    assert psleak.thread_count() >= 1
    with pytest.raises(psleak.ProbeError, match="no file descriptors"):
        psleak.fd_count()
