"""The report as people and tools meet it: JSON named by metric and validated against the
schema the package ships, typed accessors, the headline, resource-leak messages."""

from __future__ import annotations

import ctypes
import json
import os
import sys

import jsonschema
import pytest

import psleak
from psleak import Checkers

# The C runtime Python itself uses: glibc here, the UCRT on Windows.
libc = ctypes.CDLL("ucrtbase") if sys.platform == "win32" else ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

SCHEMA = psleak.report_schema()
HOARD: list[object] = []


def grow(n: int) -> None:
    HOARD.append(bytes(100 * n))  # 133 bytes a call, one object


def c_leak() -> None:
    libc.malloc(200)


def c_clean() -> None:
    libc.free(libc.malloc(64))


def validate(report: psleak.Report) -> dict:
    data = json.loads(report.to_json())
    jsonschema.validate(data, SCHEMA)
    assert data == report.data
    return data


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema_version"]["const"] == 2


@pytest.mark.pymalloc
def test_python_leak_json_names_its_metrics() -> None:
    HOARD.clear()
    report = psleak.check(grow, 1)
    data = validate(report)
    assert data["schema_version"] == 2
    assert data["runs"][0]["growth"]["blocks"] == data["runs"][0]["calls"]
    assert set(data["thresholds"]) == set(data["noise"]) == set(data["enabled"]) == set(psleak._core.METRICS)
    assert "anon" in data["runs"][0]["growth"] and "uss" not in data["runs"][0]["growth"]
    assert data["lead_metric"] == "blocks"
    assert data["where"][0]["frames"][-1]["code"] == "HOARD.append(bytes(100 * n))  # 133 bytes a call, one object"
    HOARD.clear()


def test_schema_rejects_positional_metrics() -> None:
    data = psleak.check(c_clean).data
    data["runs"][0]["growth"] = list(data["runs"][0]["growth"].values())  # the old, unnamed form
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)
    del data["runs"][0]
    data["schema_version"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


@pytest.mark.pymalloc
def test_findings_and_bytes_per_call_are_typed() -> None:
    HOARD.clear()
    report = psleak.check(grow, 1)
    lead = report.findings[0]
    assert isinstance(lead, psleak.Finding)
    assert (lead.metric, lead.unit) == ("blocks", "blocks")
    assert 0.9 <= lead.per_call <= 1.1 and lead.runs_grown >= 1 and lead.runs_total >= lead.runs_grown
    assert all(f.unit == "bytes" for f in report.findings[1:])
    # bytes, not blocks: what tracemalloc saw the objects take
    assert report.bytes_per_call is not None and 120 <= report.bytes_per_call <= 200
    assert report.verdict_line.startswith("'grow' leaks ~1")
    HOARD.clear()


def test_c_leak_leads_with_the_heap() -> None:
    report = psleak.check(c_leak)
    validate(report)
    assert report.findings[0].metric == "heap"
    assert report.bytes_per_call is not None and 200 <= report.bytes_per_call <= 240
    assert "(heap)" in report.verdict_line
    assert "of at most 10 runs (retries)" in report.text


def test_clean_and_resource_reports_validate() -> None:
    clean = psleak.check(c_clean)
    data = validate(clean)
    assert (clean.findings, clean.bytes_per_call, data["lead_metric"], data["where"]) == ([], None, None, [])
    fds: list[int] = []
    try:
        # A pipe is two descriptors on POSIX, two handles (wrapped by the CRT's fds) on Windows.
        checker = "handles" if sys.platform == "win32" else "fds"
        leak = psleak.check(lambda: fds.extend(os.pipe()), checkers=Checkers.only(checker))
    finally:
        for fd in fds:
            os.close(fd)
    data = validate(leak)
    first, *rest = leak.text.splitlines()
    assert not first.endswith(":")
    kind = "handle" if sys.platform == "win32" else "fd"
    assert rest[0].startswith(f"* {kind} ")
    assert "peak growth" not in leak.text
    assert data["outcome"]["leaks"][0]["kind"] == kind


def test_check_passes_arguments_and_verbosity(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[int, str]] = []
    report = psleak.check(lambda a, b: seen.append((a, b)) or seen.clear(), 1, "x", times=5, verbosity=2)
    assert report.clean
    err = capsys.readouterr().err
    assert "psleak: run 1/10: 5 calls" in err
    assert "<lambda>' is clean\n" in err and "(budget 64.0 MiB)" in err  # verbosity 1: the report
    with pytest.raises(ValueError, match="verbosity must be >= 0"):
        psleak.check(c_clean, verbosity=-1)


def test_uss_is_an_alias_of_anon_in_tolerances() -> None:
    from psleak._core import tolerance_per_metric

    assert tolerance_per_metric({"uss": 5})["anon"] == 5
    with pytest.raises(ValueError, match="same metric"):
        psleak.check(c_clean, tolerance={"uss": 1, "anon": 1})
