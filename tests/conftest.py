"""Which tests apply where. The suite runs natively on Linux and, for Windows, under Wine
(``make test-windows``). Tests marked ``posix`` need POSIX (file descriptors,
``LD_PRELOAD``); on Windows they are skipped, and so are the modules below, which build
their C code with the host's gcc, read Linux probes, or start many interpreters."""

from __future__ import annotations

import os
import sys

import pytest

WINDOWS = sys.platform == "win32"

collect_ignore = (
    [
        "test_matrix.py",  # the leak matrix: a C extension built with gcc, POSIX fds
        "test_leakmatrix_ext.py",
        "test_refcount.py",  # its refleak cases are in the same gcc-built extension
        "test_refcount_numpy.py",  # numpy venvs of this host (make numpy-venvs)
        "test_sites.py",  # native allocation sites: Linux tracking, the gcc-built extension
        "test_probes.py",  # Linux probes (/proc, eventfd, memfd)
        "test_stdlib_clean.py",  # six fresh interpreters per case: too slow under Wine
        "test_cli.py",  # a fresh interpreter per case: a minute under Wine, and a start can fail there
    ]
    if WINDOWS
    else ["test_windows.py"]
)


# Python objects in pymalloc's arenas, counted by the `blocks` metric. Under
# PYTHONMALLOC=malloc (as the benchmarks run) they are plain malloc blocks, tracked and
# judged as native ones: tests marked `pymalloc` check what only pymalloc shows.
PYMALLOC = os.environ.get("PYTHONMALLOC", "") in ("", "pymalloc", "pymalloc_debug")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    posix = pytest.mark.skip(reason="POSIX only (file descriptors, LD_PRELOAD)")
    pymalloc = pytest.mark.skip(reason="counts pymalloc's blocks: PYTHONMALLOC is set")
    for item in items:
        if WINDOWS and "posix" in item.keywords:
            item.add_marker(posix)
        if not PYMALLOC and "pymalloc" in item.keywords:
            item.add_marker(pymalloc)
