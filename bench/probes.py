"""Probe cost: psleak's memory snapshot vs psutil's, and execute()'s per-call overhead.

A full memory snapshot is what a leak check takes at each measurement: the allocator's
statistics plus rss, vms and uss. psutil's equivalent is ``heap_info()`` plus
``Process().memory_full_info()`` (what psleak 0.1.6 calls). psleak reads uss as the
kernel's RssAnon counter (/proc/self/status); psutil, and psleak's exact
``memory_info()``, read /proc/self/smaps_rollup, which walks the page tables: the "exact
uss" row shows that cost too. Both run in this process,
interleaved in rounds, so machine noise hits both alike; the ratios are what to read.

execute()'s per-call overhead is measured on an empty function, for ours and, side by side,
for psleak 0.1.6 (run in its venv, ``.venv-psleak016``, which ``bench/matrix.py`` creates,
in a subprocess with PYTHONMALLOC=malloc, without which 0.1.6 skips): the time of
``MemoryLeakTestCase().execute(empty)`` divided by the calls it made, everything included.

    python bench/probes.py [--rounds N] [--json PATH] [--no-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psleak
from psleak import _psleak


def per_call_us(fun: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fun()
    return (time.perf_counter() - start) / n * 1e6


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, n: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fun in cases.items():
            samples[name].append(per_call_us(fun, n))
    return {k: statistics.median(v) for k, v in samples.items()}


EXECUTE_REPS = 5

# Runs in the interpreter under test: MemoryLeakTestCase().execute(empty) EXECUTE_REPS times,
# printing (calls, seconds) of each as JSON. The calls are counted by overriding call(),
# which psleak 0.1.6 invokes once per call of the function (one attribute increment more,
# tens of ns); ours reports its count in the returned Report.
_EXECUTE_SCRIPT = """
import json, sys, time, psleak

def empty():
    pass

class Case(psleak.MemoryLeakTestCase):
    calls = 0

    def runTest(self):
        pass

    if not hasattr(psleak, "check"):  # 0.1.6: count the calls
        def call(self, fun):
            Case.calls += 1
            return fun()

out = []
for _ in range(int(sys.argv[1])):
    case = Case()
    Case.calls = 0
    start = time.perf_counter()
    report = case.execute(empty)
    elapsed = time.perf_counter() - start
    calls = report.data["total_calls"] if report is not None else Case.calls
    out.append((calls, elapsed))
print(json.dumps(out))
"""


def execute_overhead(python: Path | str, reps: int = EXECUTE_REPS) -> dict[str, Any]:
    """Median per-call cost of ``MemoryLeakTestCase().execute(empty)`` under ``python``.

    Runs in a fresh subprocess with PYTHONMALLOC=malloc (psleak 0.1.6 skips without it).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONMALLOC"] = "malloc"
    out = subprocess.run(
        [str(python), "-c", _EXECUTE_SCRIPT, str(reps)], capture_output=True, text=True, check=True, env=env
    ).stdout
    samples = [(int(c), float(s)) for c, s in json.loads(out)]
    per_call = sorted(s / c for c, s in samples)
    median = statistics.median(per_call)
    calls, seconds = min(samples, key=lambda cs: abs(cs[1] / cs[0] - median))
    return {"calls": calls, "seconds": seconds, "us_per_call": median * 1e6, "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--n", type=int, default=300, help="calls per round and case")
    ap.add_argument("--json", help="write the figures as JSON to this path")
    ap.add_argument("--no-reference", action="store_true", help="skip psleak 0.1.6 (its venv is created if missing)")
    args = ap.parse_args()

    try:
        import psutil
    except ImportError:
        sys.exit("psutil is needed for the comparison: pip install psutil")
    proc = psutil.Process()

    def ours_snapshot() -> None:
        # What a check samples: uss read as the kernel's RssAnon counter.
        _psleak.malloc_stats()
        _psleak.memory_counters()

    def ours_exact() -> None:
        # The exact USS of memory_info(), from smaps_rollup like psutil's.
        _psleak.malloc_stats()
        _psleak.process_memory()

    def psutil_snapshot() -> None:
        psutil.heap_info()
        proc.memory_full_info()

    def ours_quick() -> None:
        _psleak.malloc_stats()
        _psleak.memory_quick()

    def psutil_quick() -> None:
        psutil.heap_info()
        proc.memory_info()

    cases = {
        "snapshot: psleak (malloc stats + rss/vms/uss)": ours_snapshot,
        "snapshot: psutil (heap_info + memory_full_info)": psutil_snapshot,
        "exact uss: psleak (malloc stats + smaps_rollup)": ours_exact,
        "quick: psleak (malloc stats + rss/vms)": ours_quick,
        "quick: psutil (heap_info + memory_info)": psutil_quick,
        "fd count: psleak": _psleak.fd_count,
        "fd count: psutil num_fds": proc.num_fds,
        "thread count: psleak": _psleak.thread_count,
        "thread count: psutil num_threads": proc.num_threads,
    }
    res = interleaved(cases, args.rounds, args.n)

    # execute() overhead: a check of an empty function, and of the same function called
    # in a plain loop the same number of times.
    def empty() -> None:
        pass

    t = time.perf_counter()
    report = psleak.check(empty)
    check_s = time.perf_counter() - t
    calls = report.data["total_calls"]
    loop_us = per_call_us(empty, calls)

    print(
        f"psleak {psleak.__version__} ({psleak.BUILD_PROFILE}), psutil {psutil.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}; median of {args.rounds} rounds"
    )
    print(f"{'probe':52} {'µs/call':>9}")
    for k, v in res.items():
        print(f"{k:52} {v:9.2f}")
    pairs = [
        (
            "snapshot",
            "snapshot: psleak (malloc stats + rss/vms/uss)",
            "snapshot: psutil (heap_info + memory_full_info)",
        ),
        (
            "exact uss",
            "exact uss: psleak (malloc stats + smaps_rollup)",
            "snapshot: psutil (heap_info + memory_full_info)",
        ),
        ("quick", "quick: psleak (malloc stats + rss/vms)", "quick: psutil (heap_info + memory_info)"),
        ("fd count", "fd count: psleak", "fd count: psutil num_fds"),
        ("thread count", "thread count: psleak", "thread count: psutil num_threads"),
    ]
    print()
    ratios = {}
    for label, ours, theirs in pairs:
        ratios[label] = res[theirs] / res[ours]
        print(f"{label:14} psleak is {ratios[label]:5.1f}x cheaper than psutil")
    print(
        f"\ncheck of an empty function: {calls} calls in {check_s * 1000:.1f} ms "
        f"({check_s / calls * 1e6:.2f} µs/call all included; a bare Python loop: {loop_us:.3f} µs/call)"
    )

    # execute() of an empty function, ours and psleak 0.1.6's, each in a fresh process
    overhead = {"psleak": execute_overhead(sys.executable)}
    if not args.no_reference:
        import matrix  # bench/matrix.py: creates or reuses the psleak 0.1.6 venv

        overhead["psleak 0.1.6"] = execute_overhead(matrix.ensure_reference(matrix.REFERENCE_VENV, "python3"))
    print(f"\nMemoryLeakTestCase().execute(empty), PYTHONMALLOC=malloc, median of {EXECUTE_REPS} (fresh process):")
    for name, o in overhead.items():
        print(
            f"  {name:14} {o['calls']:6} calls in {o['seconds'] * 1000:7.1f} ms = {o['us_per_call']:7.2f} µs/call"
            " all included; runs: " + ", ".join(f"{c} calls/{t * 1000:.1f} ms" for c, t in o["samples"])
        )
    if "psleak 0.1.6" in overhead:
        ours_o, ref_o = overhead["psleak"], overhead["psleak 0.1.6"]
        print(
            f"  per call, psleak 0.1.6 / psleak = {ref_o['us_per_call'] / ours_o['us_per_call']:.2f};"
            f" per execute(), {ref_o['seconds'] / ours_o['seconds']:.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "probes_us": res,
                    "ratios": ratios,
                    "check_empty_s": check_s,
                    "check_empty_calls": calls,
                    "execute_empty": overhead,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
