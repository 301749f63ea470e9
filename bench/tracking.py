"""Cost of exact native allocation tracking: clean allocation-heavy functions, per call,
with tracking on vs off; and what locating a leak costs.

Two functions, each making about 100 allocations a call:

* ``json.loads`` of a 36-record document, run under ``PYTHONMALLOC=malloc`` (the script
  re-executes itself with it, as psutil's suite runs): every dict, string and int is a
  ``malloc`` (about 100 a call: its result alone holds 101 blocks, tracemalloc says),
  beside the parsing work a real function does. The target (<= 1.5x) is read here.
* the leak matrix's ``hold_many(100, 64)``: 100 ``malloc(64)`` blocks written and kept, the
  previous call's 100 freed, in C and nothing else. The worst case: a bare allocator loop,
  where the hooks' own cost (two indirect calls, a table insert and a removal, about 30 ns
  a malloc/free pair) is the same order as glibc's fast path.

The time per call is read from the checks themselves (each run's wall time over its calls,
warm-up and sampling excluded), for checks with ``track_native=True`` and ``False``
interleaved in rounds, so that machine noise hits both alike; the median ratio is what to
read.

The where run (stack capture, after a leak is confirmed) is timed apart: a check of a
48 B/call leak with tracking on (verdict and sites) against the same check with tracking
off (verdict only).

    python bench/tracking.py [--rounds N] [--times N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import leakmatrix

import psleak


def per_call_in_runs(report: psleak.Report) -> float:
    """Seconds per call inside the measured runs of a check."""
    runs = report.data["runs"]
    return sum(r["seconds"] for r in runs) / sum(r["calls"] for r in runs)


DOC = json.dumps([{"key": i, "value": "x" * (i % 7), "ok": i % 2 == 0} for i in range(36)])


def parse() -> None:
    json.loads(DOC)


def ratio(fun: Any, rounds: int, times: int, notes: set[str]) -> tuple[float, float, float]:
    """Median per-call seconds with tracking off and on, and the median of the ratios."""
    samples: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for track in (False, True):
            report = psleak.check(fun, times=times, track_native=track)
            if not report.clean:
                raise SystemExit(f"the clean function was judged leaking:\n{report.text}")
            samples[track].append(per_call_in_runs(report))
            notes.update(n for n in report.data["notes"] if "not tracked" in n)
    ratios = [t / f for t, f in zip(samples[True], samples[False])]
    return statistics.median(samples[False]), statistics.median(samples[True]), statistics.median(ratios)


def main() -> None:
    if os.environ.get("PYTHONMALLOC") != "malloc":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONMALLOC": "malloc"})
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--times", type=int, default=2000, help="calls in a check's first run (default 2000)")
    ap.add_argument("--json", help="write the figures as JSON to this path")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    ext = leakmatrix.load_extension()

    def heavy() -> None:
        ext.hold_many(100, 64)

    notes: set[str] = set()
    json_off, json_on, json_ratio = ratio(parse, args.rounds, args.times, notes)
    off, on, c_ratio = ratio(heavy, args.rounds, args.times, notes)
    ext.release_many()

    locate: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(max(1, args.rounds // 2)):
        for track in (False, True):
            start = time.perf_counter()
            report = psleak.check(ext.leak_site_malloc, track_native=track)
            locate[track].append(time.perf_counter() - start)
            assert not report.clean
    leakmatrix.cleanup()

    print(f"native allocation tracking, per call inside the runs (median of {args.rounds} interleaved rounds)")
    print(f"  {'function':<52} {'off':>9} {'on':>9} {'on/off':>7}")
    print(
        f"  {'json.loads, 36 records (~100 mallocs), PYTHONMALLOC=malloc':<52} "
        f"{json_off * 1e6:7.2f}us {json_on * 1e6:7.2f}us {json_ratio:6.2f}x  (target <= 1.5x)"
    )
    print(
        f"  {'hold_many(100, 64): bare C malloc/free loop':<52} "
        f"{off * 1e6:7.2f}us {on * 1e6:7.2f}us {c_ratio:6.2f}x  (worst case)"
    )
    print("a 48 B/call leak, whole check (verdict; with tracking also the where run and its sites)")
    print(f"  tracking off             {statistics.median(locate[False]):9.3f} s")
    print(f"  tracking on              {statistics.median(locate[True]):9.3f} s")
    for n in sorted(notes):
        print(f"  note: {n}")
    if args.json:
        figures: dict[str, Any] = {
            "json_per_call_off_s": json_off,
            "json_per_call_on_s": json_on,
            "json_ratio": json_ratio,
            "c_loop_per_call_off_s": off,
            "c_loop_per_call_on_s": on,
            "c_loop_ratio": c_ratio,
            "leak_check_off_s": statistics.median(locate[False]),
            "leak_check_on_s": statistics.median(locate[True]),
        }
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
