"""The command line: ``python -m psleak check`` and ``python -m psleak info``, run as
subprocesses from this directory, with the targets in tests/cli_targets.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def psleak(*args: str, cwd: Path = HERE, stderr: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m psleak ARGS`` in ``cwd`` (this directory: cli_targets is importable
    only because the current directory is on sys.path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "psleak", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=60,
        check=False,
    )


# --- psleak check


def test_clean_target_exits_0() -> None:
    r = psleak("check", "cli_targets:clean")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("'cli_targets:clean' is clean\n")
    assert "run   calls" in r.stdout
    assert "Traceback" not in r.stderr and "\r" not in r.stderr  # no progress off a terminal


def test_leaking_target_exits_1_with_the_report() -> None:
    r = psleak("check", "cli_targets:leak", "--times", "50")
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("'cli_targets:leak' leaks ~") and "B/call (heap)" in lines[0], r.stdout
    assert lines[1].split()[:3] == ["run", "calls", "heap"]
    assert lines[2].split()[:2] == ["1", "50"]


def test_args_and_kwargs_are_passed() -> None:
    r = psleak("check", "cli_targets:leak_bytes", "--args", "[1000]", "--kwargs", '{"times": 4}', "--times", "20")
    assert r.returncode == 1, r.stderr
    assert "KiB/call (heap)" in r.stdout.splitlines()[0]  # ~4000 B per call


def test_dotted_function_and_file_path() -> None:
    assert psleak("check", "cli_targets:Target.clean", "--times", "50").returncode == 0
    assert psleak("check", "tests/cli_targets.py:clean", "--times", "50", cwd=HERE.parent).returncode == 0


def test_json_output_parses() -> None:
    r = psleak("check", "cli_targets:leak", "--times", "50", "--json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["name"] == "cli_targets:leak"
    assert data["outcome"]["verdict"] == "memory_leak"
    assert data["runs"][0]["calls"] == 50


@pytest.mark.pymalloc
def test_python_leak_json_validates_and_names_only_user_frames() -> None:
    import jsonschema

    import psleak as package

    r = psleak("check", "cli_targets:py_leak", "--times", "50", "--json")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    jsonschema.validate(data, package.report_schema())
    # the object (133 B), not the reallocation of the list that holds them
    assert data["lead_metric"] == "blocks" and 100 <= data["bytes_per_call"] <= 200
    frames = data["where"][0]["frames"]
    # The CLI's own frames (runpy, psleak's entry point and package) are left out.
    assert [Path(f["file"]).name for f in frames] == ["cli_targets.py"], frames


def test_knobs_are_applied() -> None:
    r = psleak(
        "check",
        "cli_targets:clean",
        "--json",
        "--times=7",
        "--warmup-times=3",
        "--retries=2",
        "--tolerance=heap=100,rss=4KiB",
        "--memory-budget=32MiB",
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["runs"][0]["calls"], data["warmup_calls"], data["memory_budget"]) == (7, 3, 32 << 20)
    assert len(data["runs"]) <= 2
    # heap and rss as given (the others 0), page metrics at least their 16-page floor, and
    # blocks the least byte tolerance (0) over 512
    assert data["thresholds"] == {
        "heap": 100,
        "mmap": 0,
        "anon": 65536,
        "rss": 65536,
        "vms": 65536,
        "blocks": 0,
        "refs": 0,
        "native_blocks": 0,
        "native_bytes": 0,
    }


def test_fd_leak_exits_1() -> None:
    r = psleak("check", "cli_targets:fd_leak", "--checkers", "fds")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("detected 2 unclosed file descriptors after calling 'cli_targets:fd_leak' 1 time\n* fd ")
    assert "pipe" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cli_targets"], "expected MODULE:FUNCTION (got 'cli_targets')"),
        (["no_such_module:f"], "no module named 'no_such_module'"),
        (["cli_targets:nope"], "module 'cli_targets' has no attribute 'nope'"),
        (["cli_targets:Target.nope"], "'cli_targets:Target' has no attribute 'nope'"),
        (["cli_targets:NOT_CALLABLE"], "'cli_targets:NOT_CALLABLE' is not callable (it is int)"),
        (["missing.py:f"], "no such file: 'missing.py'"),
        (["cli_targets:clean", "--args", "[1"], "--args: invalid JSON: "),
        (["cli_targets:clean", "--args", '{"a": 1}'], "--args: expected a JSON array"),
        (["cli_targets:clean", "--kwargs", "[]"], "--kwargs: expected a JSON object"),
        (["cli_targets:clean", "--times", "0"], "--times: times must be >= 2 (got 0)"),
        (["cli_targets:clean", "--times", "many"], "--times: expected an integer (got 'many')"),
        (["cli_targets:clean", "--memory-budget", "1k"], "--memory-budget: memory_budget must be >= 1048576"),
        (["cli_targets:clean", "--tolerance", "heap=1,bogus=2"], "--tolerance: invalid tolerance key 'bogus'"),
        (["cli_targets:clean", "--tolerance", "heap"], "--tolerance: expected bytes"),
        (["cli_targets:clean", "--checkers", "memory,nope"], "--checkers: invalid checker names: 'nope'"),
        (["cli_targets:raises"], "'cli_targets:raises' raised ValueError: bad input"),
        (["cli_targets:clean", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    r = psleak("check", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    error = r.stderr.splitlines()[-1]
    assert error.startswith(("psleak check: error: ", "psleak: error: ")) and message in error, r.stderr


def test_no_command_is_a_usage_error() -> None:
    r = psleak()
    assert r.returncode == 2
    assert r.stderr.startswith("psleak: error: the following arguments are required: COMMAND")


def test_import_error_of_the_module_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('at import')\n")
    r = psleak("check", "broken:f", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "psleak check: error: importing 'broken' failed: RuntimeError: at import"


def test_traceback_option_shows_the_traceback() -> None:
    r = psleak("check", "cli_targets:raises", "--traceback")
    assert r.returncode == 2
    assert "Traceback (most recent call last)" in r.stderr
    assert 'raise ValueError("bad input")' in r.stderr
    assert r.stderr.splitlines()[-1] == "psleak check: error: 'cli_targets:raises' raised ValueError: bad input"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty")
def test_progress_on_a_terminal() -> None:
    import pty

    main, secondary = pty.openpty()
    try:
        r = psleak("check", "cli_targets:leak", "--times", "50", stderr=secondary)
    finally:
        os.close(secondary)
    out = b""
    while True:
        try:
            chunk = os.read(main, 1 << 16)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert r.returncode == 1
    text = out.decode()
    assert "\r\x1b[Krun 1/10: 50 calls, heap +" in text
    assert re.search(r"\r\x1b\[Krun 4/10: \d+ calls, heap \+", text), text
    assert text.endswith("\r\x1b[K")  # the line is erased before the report
    assert "run 1/10" not in r.stdout


def test_the_psleak_script() -> None:
    script = Path(sys.executable).with_name("psleak")
    if not script.exists():
        pytest.skip("the psleak script is not installed next to this Python")
    r = subprocess.run(
        [str(script), "check", "cli_targets:clean", "--times", "50"],
        cwd=HERE,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr


# --- psleak info


def test_info_text() -> None:
    r = psleak("info")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("psleak ")
    for heading in ("malloc", "memory", "open file descriptors (", "native threads ("):
        assert f"\n{heading}" in out, out
    assert "rss" in out and "heap_used" in out


def test_info_json() -> None:
    r = psleak("info", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data) >= {"pid", "version", "malloc", "memory", "fds", "threads", "errors"}
    assert data["memory"]["rss"] > 0
    assert data["malloc"]["heap_used"] > 0
    assert [t["id"] for t in data["threads"]][:1] == [data["pid"]]
    assert {0, 1} <= {fd["fd"] for fd in data["fds"]}
    assert all({"fd", "kind", "path"} <= set(fd) for fd in data["fds"])


def test_svg_chart_is_written(tmp_path: Path) -> None:
    out = tmp_path / "report.svg"
    result = psleak("check", "cli_targets:leak", "--svg", str(out))
    assert result.returncode == 1
    svg = out.read_text()
    assert svg.startswith("<svg") and "leaks ~" in svg
    assert svg.count("<polyline") >= 5
    result = psleak("check", "cli_targets:clean", "--svg", str(tmp_path / "missing" / "x.svg"))
    assert result.returncode == 2
    assert "--svg: cannot write" in result.stderr
