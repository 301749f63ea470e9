"""The pytest plugin (psleak.pytest_plugin), run through pytest's own ``pytester``: the
``leakcheck`` fixture, the ``leakcheck`` marker, defaults from the ini file and the command
line, the report header, ``-p no:psleak``, and what happens in suites that do not use it.

Inner runs are in-process (fast) unless they need a fresh interpreter: native imports,
pytest-xdist.
"""

from __future__ import annotations

import sys

import pytest

pytest_plugins = ("pytester",)

#: A helper module for the inner test files: leaks through ctypes, no compiled extension.
LEAKS = """
import ctypes
import os
import sys

libc = ctypes.CDLL("ucrtbase") if sys.platform == "win32" else ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


def c_leak():
    libc.malloc(64)


def c_clean():
    libc.free(libc.malloc(64))


FDS = []


def fd_leak():
    FDS.extend(os.pipe())


def close_fds():
    while FDS:
        os.close(FDS.pop())
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory with the ``leaks`` helper module."""
    pytester.makepyfile(leaks=LEAKS)
    return pytester


# --- the fixture


def test_fixture_passes_a_clean_function_and_returns_the_report(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import psleak
        from leaks import c_clean, libc

        def test_clean(leakcheck):
            report = leakcheck(c_clean, times=50)
            assert isinstance(report, psleak.Report)
            assert report.clean and report.runs[0]["calls"] == 50
            assert leakcheck.reports == [report]

        def test_args_are_passed(leakcheck):
            seen = []
            leakcheck(seen.append, 1, times=5, retries=1, warmup_times=0, checkers=psleak.Checkers.only("fds"))
            assert set(seen) == {1}
        """
    )
    inner.runpytest().assert_outcomes(passed=2)


def test_fixture_fails_a_leak_with_the_full_report(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        from leaks import c_leak

        def test_leaky(leakcheck):
            leakcheck(c_leak, times=50)
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*leakcheck(c_leak, times=50)",
            "E *MemoryLeakError: 'c_leak' leaks ~* B/call (heap): * runs grew",
            "E *run   calls        heap*",
            "E *noise floor*",
            "E *calls (10 warm-up) in * s; * of at most 10 runs (retries); peak growth *",
            "test_fixture_fails_a_leak_with_the_full_report.py:4: MemoryLeakError",
        ]
    )
    result.stdout.no_fnmatch_line("*pytest_plugin.py*")  # psleak's frames are hidden


@pytest.mark.posix  # an fd leak through os.pipe (a handle leak on Windows)
def test_fixture_raises_the_exceptions_of_execute(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        import psleak
        from leaks import c_clean, close_fds, fd_leak

        def test_fd_leak(leakcheck):
            try:
                with pytest.raises(psleak.UnclosedFdError) as info:
                    leakcheck(fd_leak, checkers=psleak.Checkers.only("fds"))
            finally:
                close_fds()
            assert info.value.count == 2 and "pipe" in str(info.value)

        def test_bad_knob(leakcheck):
            with pytest.raises(ValueError, match="times must be >= 2"):
                leakcheck(c_clean, times=0)
            with pytest.raises(TypeError, match="unexpected keyword argument"):
                leakcheck(c_clean, bogus=1)
            with pytest.raises(TypeError, match="'fun' must be callable"):
                leakcheck(42)

        def test_exception_propagates(leakcheck):
            def boom():
                raise KeyError("from fun")
            with pytest.raises(KeyError, match="from fun"):
                leakcheck(boom)
        """
    )
    inner.runpytest().assert_outcomes(passed=3)


# --- the marker


def test_marker_checks_the_test_body_with_fixtures_set_up_once(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        from leaks import c_clean, c_leak

        FIXTURE = {"setup": 0, "teardown": 0}
        CALLS = [0]

        @pytest.fixture
        def resource():
            FIXTURE["setup"] += 1
            yield "resource"
            FIXTURE["teardown"] += 1

        @pytest.mark.leakcheck(times=50)
        def test_clean_body(resource):
            assert resource == "resource"
            CALLS[0] += 1
            c_clean()

        @pytest.mark.leakcheck(times=50)
        def test_leaky_body(resource):
            c_leak()

        @pytest.mark.leakcheck
        def test_failing_body():
            assert 1 == 2

        def test_zz_counts():
            assert FIXTURE == {"setup": 2, "teardown": 2}
            assert CALLS[0] >= 111  # warm-up, the resource check's call, two runs of 50
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_leaky_body _*",
            "E *MemoryLeakError: 'test_leaky_body' leaks ~* B/call (heap)*",
            "*run   calls        heap*",
            "*_ test_failing_body _*",
            "E *assert 1 == 2",
        ]
    )


def test_marker_on_class_and_function_sets_the_fixture_defaults(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        from leaks import c_clean

        @pytest.mark.leakcheck(times=7, warmup_times=3)
        class TestMarked:
            def test_class_marker(self, leakcheck):
                report = leakcheck(c_clean)
                assert (report.runs[0]["calls"], report.data["warmup_calls"]) == (7, 3)

            @pytest.mark.leakcheck(times=9)
            def test_function_marker_wins(self, leakcheck):
                report = leakcheck(c_clean)
                assert (report.runs[0]["calls"], report.data["warmup_calls"]) == (9, 3)

            def test_kwargs_win(self, leakcheck):
                report = leakcheck(c_clean, times=5, warmup_times=None)
                assert (report.runs[0]["calls"], report.data["warmup_calls"]) == (5, 3)
        """
    )
    inner.runpytest().assert_outcomes(passed=3)


def test_bad_marker_is_an_error_naming_it(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import unittest
        import pytest

        SET_UP = []

        @pytest.fixture
        def resource():
            SET_UP.append(1)

        @pytest.mark.leakcheck(bogus=1)
        def test_unknown(resource):
            pass

        @pytest.mark.leakcheck(times=0)
        def test_bad_value(leakcheck):
            pass

        @pytest.mark.leakcheck(50)
        def test_positional():
            pass

        class TestCase(unittest.TestCase):
            @pytest.mark.leakcheck
            def test_unittest(self):
                pass

        def test_zz_no_fixture_was_set_up():
            assert SET_UP == []
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(errors=4, passed=1)
    result.stdout.fnmatch_lines_random(
        [
            "E   TypeError: @pytest.mark.leakcheck got unexpected keyword argument(s): bogus (valid: warmup_times, *)",
            "E   ValueError: @pytest.mark.leakcheck: times must be >= 2 (got 0)",
            "E   TypeError: @pytest.mark.leakcheck takes keyword arguments only (got (50,))",
            "E   TypeError: @pytest.mark.leakcheck without the leakcheck fixture works on pytest test functions *",
        ]
    )


def test_unmarked_tests_are_not_measured(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        from leaks import c_leak

        def test_plain():
            c_leak()
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(passed=1)
    assert _psleak_lines(result) == []  # psleak.check never ran


# --- defaults from the ini file and the command line

PRECEDENCE = """
import pytest
from leaks import c_clean

def test_config(leakcheck):
    r = leakcheck(c_clean)
    print("CONFIG", r.runs[0]["calls"], r.data["warmup_calls"], r.data["memory_budget"], r.data["thresholds"])

@pytest.mark.leakcheck(times=17)
def test_marker(leakcheck):
    r = leakcheck(c_clean)
    print("MARKER", r.runs[0]["calls"], r.data["warmup_calls"])

@pytest.mark.leakcheck(times=17)
def test_kwargs(leakcheck):
    print("KWARGS", leakcheck(c_clean, times=19).runs[0]["calls"])
"""


def test_ini_then_command_line_then_marker_then_kwargs(inner: pytest.Pytester) -> None:
    inner.makeini(
        """
        [pytest]
        leakcheck_times = 11
        leakcheck_warmup_times = 2
        leakcheck_memory_budget = 32MiB
        leakcheck_tolerance = heap=100,rss=4KiB
        """
    )
    inner.makepyfile(PRECEDENCE)
    result = inner.runpytest("-s")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*CONFIG 11 2 33554432 {'anon': 65536, 'blocks': 0, 'heap': 100, 'mmap': 0, "
            "'native_blocks': 0, 'native_bytes': 0, 'refs': 0, 'rss': 65536, 'vms': 65536}",
            "*MARKER 17 2",
            "*KWARGS 19",
        ]
    )

    result = inner.runpytest("-s", "--leakcheck-times=13", "--leakcheck-tolerance", "7", "--leakcheck-retries=3")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*CONFIG 13 2 33554432 {'anon': 65536, 'blocks': 0, 'heap': 7, 'mmap': 7, "
            "'native_blocks': 0, 'native_bytes': 7, 'refs': 0, 'rss': 65536, 'vms': 65536}",
            "*MARKER 17 2",
            "*KWARGS 19",
        ]
    )


def test_checkers_option(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        from leaks import c_leak

        def test_leak_unseen(leakcheck):
            report = leakcheck(c_leak)
            assert report.clean and report.runs == []  # memory not checked
        """
    )
    inner.runpytest("--leakcheck-checkers=fds,c_threads").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--leakcheck-times=0"], "", "*--leakcheck-times: times must be >= 2 (got 0)*"),
        (["--leakcheck-warmup-times=many"], "", "*--leakcheck-warmup-times: expected an integer (got 'many')*"),
        (["--leakcheck-tolerance=heap=1,bogus=2"], "", "*--leakcheck-tolerance: invalid tolerance key 'bogus'*"),
        (["--leakcheck-checkers=memory,nope"], "", "*--leakcheck-checkers: invalid checker names: 'nope'*"),
        (["--leakcheck-memory-budget=10"], "", "*--leakcheck-memory-budget: memory_budget must be >= 1048576*"),
        ([], "leakcheck_retries = x", "*ini option leakcheck_retries: expected an integer (got 'x')*"),
        (["--leakcheck-retries=2"], "leakcheck_retries = x", None),  # the command line wins
    ],
)
def test_bad_option_is_a_usage_error(inner: pytest.Pytester, args: list[str], ini: str, message: str | None) -> None:
    inner.makeini(f"[pytest]\n{ini}\n")
    inner.makepyfile("def test_nothing():\n    pass\n")
    result = inner.runpytest(*args)
    if message is None:
        result.assert_outcomes(passed=1)
    else:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([message])


# --- what the session prints, -p no:psleak, --no-leakcheck, suites that do not use the plugin


def _psleak_lines(result: pytest.RunResult) -> list[str]:
    # What the plugin prints: its summary section and lines. (pytest itself lists installed
    # plugins, "plugins: psleak-0.2.0", and the rootdir may contain the word.)
    said = ("- psleak -", "psleak:", "PYTHONMALLOC", "leak check", "in parallel")
    return [line for line in result.outlines + result.errlines if any(s in line for s in said)]


def test_session_without_checks_prints_nothing_of_psleak(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner.makepyfile("def test_nothing():\n    pass\n")
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    result = inner.runpytest()
    result.assert_outcomes(passed=1)
    assert _psleak_lines(result) == []


def test_summary_says_what_ran_and_what_is_less_reliable(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner.makepyfile(
        """
        import pytest
        import psleak
        from leaks import c_clean, c_leak

        def test_clean(leakcheck):
            leakcheck(c_clean, times=20)

        def test_leaky(leakcheck):
            leakcheck(c_leak, times=20)

        @pytest.mark.leakcheck(times=20)
        def test_body():
            c_clean()

        class TestCase(psleak.MemoryLeakTestCase):  # counted too, like any check in a test
            def test_clean(self):
                self.execute(c_clean, times=20)
        """
    )
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    result = inner.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*- psleak -*", "4 leak checks in * s: 1 found leaking", "PYTHONMALLOC=malloc not set: *"]
    )
    monkeypatch.setenv("PYTHONMALLOC", "malloc")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    result = inner.runpytest("-k", "clean")
    result.stdout.fnmatch_lines(["2 leak checks in * s: none leaked", "tests ran in parallel (xdist)*"])
    result.stdout.no_fnmatch_line("PYTHONMALLOC*")


LOGS_AND_WARNINGS = """
import logging
import warnings

import pytest

log = logging.getLogger("inner")


def chatty():
    log.warning("called %d", 1)
    warnings.warn("old API", DeprecationWarning)


def test_fixture(leakcheck, caplog):
    leakcheck(chatty)
    # the first call reached pytest's capture; the measured ones did not
    assert [r.getMessage() for r in caplog.records] == ["called 1"]


@pytest.mark.leakcheck
def test_marker():
    chatty()
"""


def test_logging_and_warnings_are_not_leaks(inner: pytest.Pytester) -> None:
    # pytest's default plugins: its logging handlers keep every record, its warnings
    # recorder every warning (DeprecationWarning: "always").
    inner.makepyfile(LOGS_AND_WARNINGS)
    result = inner.runpytest()
    result.assert_outcomes(passed=2, warnings=2)  # one warning a test: the first call's


def test_warnings_turned_into_errors_still_raise(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import warnings
        import pytest

        def test_error(leakcheck):
            def warns():
                warnings.warn("old API", DeprecationWarning)

            with pytest.raises(DeprecationWarning):
                leakcheck(warns, times=10)
        """
    )
    inner.runpytest("-W", "error::DeprecationWarning").assert_outcomes(passed=1)


def test_capture_is_restored_after_a_check(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import logging
        import warnings

        def test_after(leakcheck, caplog):
            show = warnings.showwarning
            leakcheck(logging.getLogger("x").warning, "during", times=10)
            assert warnings.showwarning is show
            logging.getLogger("x").warning("after")
            assert [r.getMessage() for r in caplog.records] == ["during", "after"]
        """
    )
    inner.runpytest().assert_outcomes(passed=1)


def test_no_leakcheck_runs_bodies_once(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        from leaks import c_leak

        CALLS = []

        def test_fixture(leakcheck):
            assert leakcheck(CALLS.append, "fixture") is None
            leakcheck(c_leak)  # would fail: not measured

        @pytest.mark.leakcheck(times=50)
        def test_marker():
            CALLS.append("marker")
            c_leak()

        def test_counts():
            assert CALLS == ["fixture", "marker"]
        """
    )
    result = inner.runpytest("--no-leakcheck")
    result.assert_outcomes(passed=3)
    assert _psleak_lines(result) == []
    inner.makeini("[pytest]\nno_leakcheck = true\n")
    inner.runpytest().assert_outcomes(passed=3)


def test_verbosity_per_call(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        from leaks import c_clean

        def test_fixture(leakcheck, capsys):
            leakcheck(c_clean, times=10, verbosity=2)
            err = capsys.readouterr().err
            assert "psleak: run 1/" in err and "'c_clean' is clean" in err

        @pytest.mark.leakcheck(times=10, verbosity=1)
        def test_marker():
            c_clean()
        """
    )
    result = inner.runpytest("-s")
    result.assert_outcomes(passed=2)
    result.stderr.fnmatch_lines(["'test_marker' is clean"])


def test_disabled_with_p_no_psleak(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        from leaks import c_leak

        CALLS = [0]

        @pytest.mark.leakcheck
        def test_leaky_body():
            CALLS[0] += 1
            c_leak()

        def test_called_once():
            assert CALLS == [1]
        """
    )
    result = inner.runpytest("-p", "no:psleak")
    result.assert_outcomes(passed=2)  # and a PytestUnknownMarkWarning, in a fresh process
    result.stdout.no_fnmatch_line("psleak:*")
    result.stdout.no_fnmatch_line("plugins:*psleak*")


def test_unrelated_suite_does_not_load_the_native_module(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import sys

        def test_unrelated():
            loaded = sorted(m for m in sys.modules if m.startswith("psleak"))
            assert "psleak.pytest_plugin" in loaded
            assert "psleak._psleak" not in loaded, loaded
        """
    )
    result = inner.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["plugins:*psleak*"])


#: Runs pytest in an interpreter where importing psleak's native module fails.
NO_NATIVE = """
import importlib.abc
import sys

class Unimportable(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "psleak._psleak":
            raise ImportError("simulated: no native module")
        return None

sys.meta_path.insert(0, Unimportable())
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_plugin_without_native_module_does_not_break_other_tests(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_unrelated="""
        def test_unrelated():
            assert True
        """,
        test_uses_psleak="""
        import pytest

        def test_fixture(leakcheck):
            leakcheck(print)

        @pytest.mark.leakcheck
        def test_marker():
            pass
        """,
    )
    result = inner.run(sys.executable, "-c", NO_NATIVE, "-p", "no:cacheprovider", "-rfE")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines_random(
        [
            "FAILED *test_fixture - ImportError: simulated*",
            "ERROR *test_marker - ImportError: simulated*",
        ]
    )


# --- pytest-xdist


XDIST_CASES = """
import pytest
import psleak
from leaks import c_clean, c_leak, close_fds, fd_leak

@pytest.mark.parametrize("i", range(4))
def test_clean(leakcheck, i):
    leakcheck(c_clean)

@pytest.mark.parametrize("i", range(4))
def test_leak(leakcheck, i):
    leakcheck(c_leak)

@pytest.mark.parametrize("i", range(2))
@pytest.mark.leakcheck
def test_marked_clean(i):
    c_clean()

@pytest.mark.parametrize("i", range(2))
@pytest.mark.leakcheck
def test_marked_leak(i):
    c_leak()

@pytest.mark.parametrize("i", range(2))
def test_fd_leak(leakcheck, i):
    try:
        leakcheck(fd_leak, checkers=psleak.Checkers.only("fds"))
    finally:
        close_fds()
"""


def test_verdicts_hold_under_xdist(inner: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    inner.makepyfile(test_cases=XDIST_CASES)
    result = inner.runpytest_subprocess("-n", "2", "-p", "xdist", "-rf")
    result.assert_outcomes(passed=6, failed=8)
    result.stdout.fnmatch_lines(["tests ran in parallel (xdist)*"])
    failed = sorted(line.split()[1] for line in result.outlines if line.startswith("FAILED "))
    expected = [
        f"test_cases.py::{name}[{i}]"
        for name, n in (("test_fd_leak", 2), ("test_leak", 4), ("test_marked_leak", 2))
        for i in range(n)
    ]
    assert failed == expected
    result.stdout.fnmatch_lines(
        ["E *UnclosedFdError: detected 2 unclosed file descriptors after calling 'fd_leak' 1 time"]
    )
