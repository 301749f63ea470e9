"""What the reference-count census costs in a process holding a million objects.

psleak takes two censuses per check (before and after the measured runs, never per call):
the reference count of every object the garbage collector tracks and of every object they
refer to. This builds a heap of ``--objects`` objects (a third each: instances of a small
class, lists of two ints, dicts of a string and an int, all kept in one list) and reports,
best of ``--repeat``:

* ``gc.get_objects()``, the list the census starts from;
* the native census (``psleak._psleak.refcount_census``: tp_traverse + Py_REFCNT, a sorted
  vector of 16-byte entries) and its comparison with a later one (``census_growth``);
* the same census written in Python, the peer: a dict ``id -> sys.getrefcount`` over the
  objects and their ``gc.get_referents`` (what a census without a native helper costs);
* a whole ``psleak.check`` of a clean function with the ``refcounts`` checker (the census
  and the ``refs`` metric) and without it.

    python bench/census.py [--objects N] [--repeat R]

Times vary with the machine's load; the ratios printed beside them are the figures to
compare (each pair is measured in the same process, back to back).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import psleak
from psleak import _psleak


class Point:
    def __init__(self, x: int) -> None:
        self.x = x
        self.y = x + 1


def build(n: int) -> list[Any]:
    third = n // 3
    heap: list[Any] = [Point(i) for i in range(third)]
    heap += [[i, i + 1] for i in range(third)]
    heap += [{"key": str(i), "n": i} for i in range(n - 2 * third)]
    return heap


def best(fun: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        out = None
        start = time.perf_counter()
        out = fun()
        times.append(time.perf_counter() - start)
    return min(times), out


def python_census() -> dict[int, int]:
    """The peer: what a census costs in Python (no native helper)."""
    counts: dict[int, int] = {}
    for obj in gc.get_objects():
        counts[id(obj)] = sys.getrefcount(obj)
        for ref in gc.get_referents(obj):
            if id(ref) not in counts:
                counts[id(ref)] = sys.getrefcount(ref)
    return counts


def native_census() -> Any:
    return _psleak.refcount_census(gc.get_objects(), skip_tracked_referents=True, skip_immortal=False)


def peak_bytes(fun: Callable[[], Any]) -> int:
    """Peak Python-allocator memory of ``fun`` (tracemalloc), the result kept."""
    tracemalloc.start()
    try:
        kept = fun()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    return peak


def clean() -> None:
    sum(range(20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)

    heap = build(args.objects)
    gc.collect()
    tracked = len(gc.get_objects())
    print(f"refcount census: {args.objects:,} objects built, {tracked:,} tracked by the collector")

    t_list, _ = best(gc.get_objects, args.repeat)
    t_native, census = best(native_census, args.repeat)
    before = native_census()
    flags = {"skip_tracked_referents": True, "skip_immortal": False}
    t_growth, grown = best(lambda: _psleak.census_growth(before, gc.get_objects(), min_growth=4, **flags), args.repeat)
    t_python, counts = best(python_census, args.repeat)
    python_bytes = peak_bytes(python_census)
    del counts

    rows = [
        ("gc.get_objects()", t_list, ""),
        (f"native census ({len(census):,} objects)", t_native, f"{census.nbytes / 2**20:.1f} MiB held"),
        ("native census + comparison", t_growth, f"{len(grown)} objects grew"),
        ("Python census (dict id -> count)", t_python, f"{python_bytes / 2**20:.1f} MiB peak"),
    ]
    for label, seconds, extra in rows:
        print(f"  {label:<42} {seconds * 1000:8.1f} ms  {extra}")
    print(f"  native census vs Python census: {t_python / t_native:.1f}x faster")

    t_on, _ = best(lambda: psleak.check(clean), args.repeat)
    t_off, _ = best(lambda: psleak.check(clean, checkers=psleak.Checkers.exclude("refcounts")), args.repeat)
    print(
        f"  psleak.check(clean), refcounts on {t_on * 1000:8.1f} ms, off {t_off * 1000:8.1f} ms ({t_on / t_off:.2f}x)"
    )
    del heap


if __name__ == "__main__":
    main()
