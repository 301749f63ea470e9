"""The probes move the right way when the test extension holds memory, fds and threads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import leakmatrix

import psleak

ext = leakmatrix.ext
MiB = 1 << 20


def test_holding_one_mib_grows_mmap_used() -> None:
    # glibc raises its mmap threshold each time a mmapped chunk is freed (mallopt(3),
    # M_MMAP_THRESHOLD): after the other tests, a 1 MiB block may come from the heap. A fresh
    # process has the default 128 KiB threshold.
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import leakmatrix, psleak
before = psleak.malloc_info()
leakmatrix.ext.hold_malloc(1 << 20)
during = psleak.malloc_info()
leakmatrix.ext.release_malloc()
after = psleak.malloc_info()
print(during.mmap_used - before.mmap_used, during.mmap_used - after.mmap_used)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    grew, released = map(int, out.split())
    assert grew >= MiB
    assert released >= MiB


def test_holding_many_small_blocks_grows_heap_used_and_trim_works() -> None:
    before = psleak.malloc_info()
    ext.hold_many(1000, 100)
    try:
        during = psleak.malloc_info()
        assert during["heap_used"] - before["heap_used"] >= 100_000
        assert during.heap_total >= during.heap_used
    finally:
        ext.release_many()
    after = psleak.malloc_info()
    assert after.heap_used < during.heap_used
    assert isinstance(psleak.malloc_trim(), bool)


def test_touched_mmap_grows_rss_and_uss() -> None:
    before = psleak.memory_info()
    ext.hold_mmap(8 * MiB)
    try:
        during = psleak.memory_info()
        assert during.rss - before.rss >= 7 * MiB
        assert during.uss - before.uss >= 7 * MiB
        assert during.vms - before.vms >= 8 * MiB
    finally:
        ext.release_mmap()
    assert psleak.memory_info().rss < during.rss


def _fd(fd: int) -> psleak.FdInfo:
    (info,) = [f for f in psleak.open_fds() if f.fd == fd]
    return info


def test_pipe_eventfd_memfd_and_socket_kinds() -> None:
    r, w = os.pipe()
    efd = os.eventfd(0)
    mfd = os.memfd_create("psleak probe")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _fd(r).kind == "pipe" and _fd(w).kind == "pipe"
        assert _fd(efd).kind == "eventfd"
        m = _fd(mfd)
        assert m.kind == "memfd" and m.path is not None and "psleak probe" in m.path
        s = _fd(server.fileno())
        assert (s.kind, s.family, s.type, s.laddr) == ("socket", "AF_INET", "SOCK_STREAM", f"127.0.0.1:{port}")
        assert s.raddr is None
        count = psleak.fd_count()
        assert count == len(psleak.open_fds())
    finally:
        for fd in (r, w, efd, mfd):
            os.close(fd)
        server.close()
    assert psleak.fd_count() == count - 5


def test_named_native_thread_appears() -> None:
    before = psleak.thread_count()
    tid = ext.start_named_thread("probe-worker")
    try:
        threads = {t.id: t.name for t in psleak.native_threads()}
        assert threads.get(tid) == "probe-worker"
        assert psleak.thread_count() == before + 1
    finally:
        ext.stop_named_thread()
    # A joined thread may stay listed for a moment until the kernel reaps it.
    deadline = time.monotonic() + 1
    while tid in {t.id for t in psleak.native_threads()} and time.monotonic() < deadline:
        time.sleep(0.001)
    assert tid not in {t.id for t in psleak.native_threads()}


def test_info_results_are_plain_data() -> None:
    assert dict(psleak.malloc_info()).keys() == {"heap_used", "mmap_used", "heap_total", "heap_free"}
    assert dict(psleak.memory_info()).keys() == {"rss", "vms", "uss", "pss", "swap"}
    with pytest.raises(AttributeError):
        psleak.malloc_info().heap_used = 1  # type: ignore[misc]
