"""psutil's own leak tests as a real client: psleak vs psleak 0.1.6, or psleak alone as a CI check.

psutil 7.2.2 ships ``tests/test_memleaks.py``: about 90 ``MemoryLeakTestCase`` tests written
for psleak 0.1.6 (``retries = 30``) over psutil's C extension. This script runs that file
unchanged under our psleak and under psleak 0.1.6 from PyPI, with ``PYTHONMALLOC=malloc``
as psutil's ``make test-memleaks`` does, and compares failures and total time (issue 10).

Everything is fetched and built at run time, never committed:

* the psutil 7.2.2 sdist: ``pip download --no-deps --no-binary :all: psutil==7.2.2`` into
  ``target/psutil-client/``, extracted there and built in place (``setup.py build_ext -i``,
  as psutil's own ``make build`` does: it needs gcc and the Python headers). Both tools
  import this one build, from the source tree, exactly as psutil's test suite expects;
* ``.venv-psutil``: the test tools (pytest, pytest-xdist and pytest-instafail, which
  psutil's ``[tool.pytest]`` config loads with ``-p``) plus setuptools for the build. Our
  psleak is the one ``make develop`` built: a ``.pth`` file puts this checkout's
  ``python/`` directory on the path, the way maturin's editable install does in ``.venv``;
* ``.venv-psutil-psleak016``: the same test tools plus ``psleak==0.1.6``.

Both venvs are created with the interpreter that runs this script (``.venv/bin/python``
under ``make``), so the in-place build suits both. With pytest 9, psutil's config needs
``-o verbosity_subtests=0`` (its ``[tool.pytest]`` table gives the value as a string).

Modes:

    python bench/psutil_client.py [--rounds 10]   # ours and 0.1.6 alternately, N rounds each
    python bench/psutil_client.py --check         # ours once; exit 1 on any failed test
    options: --only ours|theirs, -k EXPR (pytest's -k), --timeout S (per run, default 1800)

A round runs the whole file once under each tool, one process each, alternating which goes
first so that machine noise hits both alike. Printed: each run's outcome and wall time
(pytest start to exit), the failed tests of each tool with how many runs they failed in, the
median total time of each, the ratio ours/theirs, and issue 10's targets (0 failures of
ours; ours' median time <= 0.5x 0.1.6's) marked PASS / MISS. Each run's full pytest output
is kept in ``target/psutil-client/logs/``; a JSON summary goes to
``bench/results/psutil-<timestamp>.json``. Exit status: 0, or 1 when ``--check`` saw a
failure, 2 when a run errored (no tests collected, crash, timeout) or the set-up failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "psutil-client"
RESULTS = ROOT / "bench" / "results"
PSUTIL_VERSION = "7.2.2"
REFERENCE_VERSION = "0.1.6"
VENVS = {"ours": ROOT / ".venv-psutil", "theirs": ROOT / ".venv-psutil-psleak016"}
TOOLS = ("ours", "theirs")
LABEL = {"ours": "psleak (this checkout)", "theirs": f"psleak {REFERENCE_VERSION}"}
# What psutil's pytest config loads (-p xdist, -p instafail); same versions for both tools.
TEST_TOOLS = ["pytest>=9,<10", "pytest-xdist>=3,<4", "pytest-instafail>=0.5,<1", "setuptools>=61"]
TEST_FILE = "tests/test_memleaks.py"
# issue 10's targets
MAX_TIME_RATIO = 0.5

# pytest's summary line: "==== 2 failed, 88 passed, 4 skipped in 21.07s ===="
SUMMARY_RE = re.compile(r"^=+ (?P<counts>.*?) in (?P<secs>[0-9.]+)s(?: \([0-9:]+\))? =+$", re.MULTILINE)
COUNT_RE = re.compile(r"(\d+) (failed|passed|skipped|errors?|xfailed|xpassed|deselected|warnings?)")
# "-rfE" short summary: "FAILED tests/test_memleaks.py::TestX::test_y - MemoryLeakError: ..."
FAILED_RE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


class SetupError(RuntimeError):
    """The sdist, a venv or the build could not be prepared."""


def say(text: str) -> None:
    """Progress on stderr, flushed (the runs are long)."""
    print(text, file=sys.stderr, flush=True)


def run_checked(cmd: Sequence[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a set-up command; raise SetupError with its output when it fails."""
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        msg = f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}"
        raise SetupError(msg)
    return proc.stdout


# --- set-up


def fetch_sdist(python: Path) -> Path:
    """Download and extract the psutil sdist (once); return the source tree."""
    src = WORK / f"psutil-{PSUTIL_VERSION}"
    if (src / "setup.py").is_file() and (src / TEST_FILE).is_file():
        return src
    download = WORK / "download"
    download.mkdir(parents=True, exist_ok=True)
    say(f"downloading the psutil {PSUTIL_VERSION} sdist into {download}")
    spec = f"psutil=={PSUTIL_VERSION}"
    pip = [str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    run_checked([*pip, spec, "-d", str(download)], "pip download")
    archives = sorted(download.glob(f"psutil-{PSUTIL_VERSION}.tar.gz"))
    if not archives:
        msg = f"pip download left no psutil-{PSUTIL_VERSION}.tar.gz in {download}"
        raise SetupError(msg)
    with tarfile.open(archives[0]) as tar:
        # the "data" filter refuses absolute paths, links out of the tree, devices (PEP 706)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(WORK, filter="data")
        else:  # Python < 3.8.17 / 3.11.4: no filters
            tar.extractall(WORK)  # the sdist comes from PyPI, fetched by pip
    if not (src / TEST_FILE).is_file():
        msg = f"{archives[0].name} has no {TEST_FILE}"
        raise SetupError(msg)
    return src


def venv_python(tool: str) -> Path:
    """The interpreter of ``tool``'s venv."""
    return VENVS[tool] / "bin" / "python"


def ensure_venv(tool: str, base_python: Path) -> Path:
    """Create ``tool``'s venv if needed and install what it lacks; return its interpreter."""
    venv = VENVS[tool]
    python = venv_python(tool)
    packages = list(TEST_TOOLS)
    if tool == "theirs":
        packages.append(f"psleak=={REFERENCE_VERSION}")
    stamp = venv / ".psutil-client-installed"
    wanted = json.dumps(packages)
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        say(f"creating {venv}")
        run_checked([str(base_python), "-m", "venv", str(venv)], "venv creation")
    say(f"installing {' '.join(packages)} into {venv}")
    run_checked([str(python), "-m", "pip", "install", "-q", *packages], "pip install")
    if tool == "ours":
        # Our psleak as `make develop` built it: python/psleak with _psleak.abi3.so inside.
        purelib = run_checked(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "purelib"
        ).strip()
        (Path(purelib) / "psleak-checkout.pth").write_text(str(ROOT / "python") + "\n")
    stamp.write_text(wanted)
    return python


def check_tool(tool: str, python: Path) -> str:
    """Import psleak in ``tool``'s venv; return a one-line description of what it imports."""
    code = (
        "import psleak, sys\n"
        "from importlib.metadata import PackageNotFoundError, version\n"
        "try: v = version('psleak')\n"
        "except PackageNotFoundError: v = 'checkout'\n"
        "print(v, psleak.__file__)"
    )
    out = run_checked([str(python), "-c", code], f"importing psleak in {VENVS[tool]}").strip()
    ver, _, where = out.partition(" ")
    if tool == "theirs" and ver != REFERENCE_VERSION:
        msg = f"{VENVS[tool]} imports psleak {ver}, not {REFERENCE_VERSION}"
        raise SetupError(msg)
    if tool == "ours":
        if not where.startswith(str(ROOT / "python")):
            msg = f"{VENVS[tool]} imports psleak from {where}, not from this checkout (run `make develop`)"
            raise SetupError(msg)
        # the compiled module must be there too (`make develop` puts it in python/psleak)
        run_checked([str(python), "-c", "import psleak._psleak"], "importing psleak._psleak (run `make develop`)")
    return f"psleak {ver} from {where}"


def build_psutil(src: Path, python: Path) -> None:
    """Build psutil's C extension in place (once), as psutil's ``make build`` does."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    built = list((src / "psutil").glob("_psutil_*.so"))
    if not built:
        say(f"building psutil {PSUTIL_VERSION} in place in {src} (gcc, Python headers)")
        run_checked([str(python), "setup.py", "build_ext", "-i"], "building psutil", cwd=src, env=base_env())
    run_checked(
        [str(python), "-c", f"import psutil; assert psutil.__version__ == {PSUTIL_VERSION!r}, psutil.__version__"],
        f"importing the built psutil (extension suffix here: {suffix})",
        cwd=src,
        env=base_env(),
    )


def base_env() -> dict[str, str]:
    """Our environment minus what would change what the children import."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.pop("PYTHONMALLOC", None)
    return env


def test_env() -> dict[str, str]:
    """The environment of psutil's ``make test-memleaks`` (without PSUTIL_DEBUG's chatter)."""
    env = base_env()
    env.update(
        PYTHONMALLOC="malloc",
        PSUTIL_TESTING="1",
        PYTHONUNBUFFERED="1",
        # psutil's Makefile sets it: only the plugins its config names (-p) are loaded
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    return env


# --- one run


@dataclass
class RunResult:
    """One run of the test file under one tool."""

    round: int
    tool: str
    exit_code: int
    wall_s: float
    pytest_s: float | None
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    log: str = ""
    timed_out: bool = False

    @property
    def outcome(self) -> str:
        """ "passed", "failed" (tests failed) or "error" (pytest could not run them)."""
        if self.timed_out or self.exit_code not in (0, 1):
            return "error"
        return "failed" if self.exit_code == 1 else "passed"

    def line(self) -> str:
        """One line for the progress log."""
        counts = ", ".join(f"{n} {k}" for k, n in self.counts.items()) or "no summary"
        extra = " (timeout)" if self.timed_out else ""
        return f"{LABEL[self.tool]}: {self.outcome}{extra}, {counts}, {self.wall_s:.1f} s"


def run_tests(tool: str, python: Path, src: Path, rnd: int, *, select: str | None, timeout: float) -> RunResult:
    """Run psutil's test_memleaks.py once under ``tool``; keep the log."""
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{tool}-round{rnd}.log"
    cmd = [str(python), "-m", "pytest", TEST_FILE, "-o", "verbosity_subtests=0", "-p", "no:cacheprovider", "-rfE"]
    cmd += ["--durations=5"]
    if select:
        cmd += ["-k", select]
    timed_out = False
    start = time.perf_counter()
    with open(log, "w") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=src, env=test_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            timed_out = True
    wall = time.perf_counter() - start
    text = log.read_text(errors="replace")
    counts: dict[str, int] = {}
    pytest_s = None
    summaries = list(SUMMARY_RE.finditer(text))
    if summaries:
        last = summaries[-1]
        pytest_s = float(last.group("secs"))
        for n, kind in COUNT_RE.findall(last.group("counts")):
            counts[kind] = int(n)
    failed = sorted(set(FAILED_RE.findall(text)))
    return RunResult(rnd, tool, code, wall, pytest_s, counts, failed, str(log), timed_out)


# --- reporting


def summarize(results: Sequence[RunResult], tools: Sequence[str]) -> dict[str, dict[str, object]]:
    """Per tool: runs, failed runs, errors, failures per test, median time."""
    out: dict[str, dict[str, object]] = {}
    for tool in tools:
        mine = [r for r in results if r.tool == tool]
        if not mine:
            continue
        per_test = Counter(t for r in mine for t in r.failed)
        out[tool] = {
            "runs": len(mine),
            "failed_runs": sum(r.outcome == "failed" for r in mine),
            "error_runs": sum(r.outcome == "error" for r in mine),
            "failed_tests": dict(per_test.most_common()),
            "median_s": statistics.median(round(r.wall_s, 1) for r in mine),
            "times_s": [round(r.wall_s, 1) for r in mine],
        }
    return out


def print_summary(sums: dict[str, dict[str, object]], rounds: int) -> float | None:
    """Print failures and times per tool and the ratio; return the ratio (None without both)."""
    print()
    print(
        f"psutil {PSUTIL_VERSION} {TEST_FILE}, PYTHONMALLOC=malloc, {rounds} round(s), "
        f"{dt.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores"
    )
    for tool, s in sums.items():
        times = ", ".join(f"{t:.1f}" for t in s["times_s"])  # type: ignore[attr-defined]
        print(
            f"  {LABEL[tool]:24} median {s['median_s']:.1f} s  (runs: {times})  "
            f"failed runs {s['failed_runs']}/{s['runs']}, errored {s['error_runs']}"
        )
        failed = s["failed_tests"]
        assert isinstance(failed, dict)
        for test, n in failed.items():
            print(f"      failed in {n}/{s['runs']} run(s): {test}")
    ratio = None
    if "ours" in sums and "theirs" in sums:
        ours_s, theirs_s = sums["ours"]["median_s"], sums["theirs"]["median_s"]
        assert isinstance(ours_s, float) and isinstance(theirs_s, float)
        ratio = ours_s / theirs_s
        print(f"  ratio ours/theirs (median total time): {ratio:.2f}")
    if "ours" in sums:
        print("targets (issue 10):")
        ok = sums["ours"]["failed_runs"] == 0 and sums["ours"]["error_runs"] == 0
        print(f"  {'PASS' if ok else 'MISS'}  0 failures of ours: {sums['ours']['failed_runs']} failed run(s)")
        if ratio is not None:
            status = "PASS" if ratio <= MAX_TIME_RATIO else "MISS"
            print(f"  {status}  ours' median time <= {MAX_TIME_RATIO}x psleak {REFERENCE_VERSION}'s: {ratio:.2f}")
    return ratio


# --- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="rounds of the comparison (default 10)")
    ap.add_argument("--check", action="store_true", help="run once under ours only; exit 1 on a failure")
    ap.add_argument("--only", choices=TOOLS, help="run one tool only")
    ap.add_argument("-k", dest="select", help="pytest -k expression (a subset of the tests)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run before it is killed")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if args.timeout <= 0:
        ap.error("--timeout must be > 0")
    if args.check and args.only == "theirs":
        ap.error("--check runs ours only")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Set up, run the rounds, print and save the comparison."""
    args = parse_args(argv)
    tools = ["ours"] if args.check else ([args.only] if args.only else list(TOOLS))
    rounds = 1 if args.check else args.rounds
    if shutil.which("gcc") is None and "CC" not in os.environ:
        say("gcc not found: psutil's C extension cannot be built")
        return 2
    base = Path(sys.executable)
    try:
        pythons = {t: ensure_venv(t, base) for t in tools}
        for t in tools:
            say(f"{t}: {check_tool(t, pythons[t])}")
        src = fetch_sdist(pythons[tools[0]])
        build_psutil(src, pythons[tools[0]])
    except SetupError as e:
        say(str(e))
        return 2

    results: list[RunResult] = []
    for rnd in range(1, rounds + 1):
        order = tools if rnd % 2 else list(reversed(tools))  # alternate who goes first
        for tool in order:
            r = run_tests(tool, pythons[tool], src, rnd, select=args.select, timeout=args.timeout)
            results.append(r)
            say(f"[round {rnd}/{rounds}] {r.line()}")
            for test in r.failed:
                say(f"    FAILED {test}")
            if r.outcome == "error":
                say(f"    see {r.log}")

    sums = summarize(results, tools)
    ratio = print_summary(sums, rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"psutil-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    data = {
        "psutil": PSUTIL_VERSION,
        "reference": REFERENCE_VERSION,
        "rounds": rounds,
        "select": args.select,
        "summary": sums,
        "ratio_ours_theirs": ratio,
        "runs": [asdict(r) | {"outcome": r.outcome} for r in results],
    }
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}; logs in {(WORK / 'logs').relative_to(ROOT)}")
    if any(r.outcome == "error" for r in results):
        return 2
    if args.check and any(r.outcome == "failed" for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
