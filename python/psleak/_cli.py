"""The ``psleak`` command (``python -m psleak``), and the parsing of knobs given as text,
which the pytest plugin shares.

``psleak check MODULE:FUNCTION`` runs the check of :func:`psleak.check` on a function and
prints its report; ``psleak info`` shows what the probes see in the current process.

Exit codes of ``psleak check``: 0 nothing leaked, 1 a leak was found, 2 the check could not
run: bad arguments or knobs, a target that cannot be imported or called, a probe missing on
this platform, or an exception raised by the function itself. Errors are one line on
stderr; ``--traceback`` adds the Python traceback.

This module imports nothing native at import time (the pytest plugin imports it in every
pytest run); :mod:`psleak` is imported by the commands that need it.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import IO, Any, NoReturn

from ._checkers import Checkers

#: Knobs that can be given as text (command line, ini file): name → (metavar, help).
TEXT_KNOBS: dict[str, tuple[str, str]] = {
    "times": ("N", "calls in the first measured run; each later run doubles it"),
    "warmup_times": ("N", "calls before measuring (lazy initialisation, caches)"),
    "retries": (
        "N",
        "most measured runs (default 10), each doubling the calls up to 16x times; a check stops "
        "earlier, clean after two clean runs in a row, leaking after four that grew with the calls",
    ),
    "tolerance": (
        "BYTES|METRIC=BYTES,...",
        "growth per run tolerated, in bytes: for every byte metric (blocks, a count of Python objects, "
        "get the bytes over 512), or per metric, e.g. heap=100,rss=4096",
    ),
    "checkers": ("NAME,...", "the checkers to enable, e.g. memory,fds; all (the default) enables every one"),
    "memory_budget": ("BYTES", "most the process may grow during a check, e.g. 128MiB"),
}

_SIZE = re.compile(r"(\d+)\s*(|b|k|kib|m|mib|g|gib)", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}


def parse_int(text: str) -> int:
    """A count: ``"200"``. Raises ValueError."""
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer (got {text!r})") from None


def parse_size(text: str) -> int:
    """Bytes: ``"4096"``, ``"4KiB"``, ``"64M"`` (K, M, G are powers of 1024). Raises
    ValueError."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected bytes, such as 4096 or 64MiB (got {text!r})")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_tolerance(text: str) -> int | dict[str, int]:
    """``"100"`` (every metric) or ``"heap=100,rss=4KiB"`` (per metric). Metric names are
    checked with the other knobs. Raises ValueError."""
    if "=" not in text:
        return parse_size(text)
    out: dict[str, int] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected METRIC=BYTES (got {item.strip()!r})")
        out[key.strip()] = parse_size(value)
    return out


def parse_checkers(text: str) -> Checkers:
    """``"memory,fds"``: only those checkers on; ``"all"``: every one. Raises ValueError."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError(f"expected checker names (valid: {', '.join(Checkers.names())})")
    if names == ("all",):
        return Checkers()
    return Checkers.only(*names)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "times": parse_int,
    "warmup_times": parse_int,
    "retries": parse_int,
    "tolerance": parse_tolerance,
    "checkers": parse_checkers,
    "memory_budget": parse_size,
}


def parse_knob(name: str, text: str) -> Any:
    """The value of knob ``name`` (one of :data:`TEXT_KNOBS`) given as text, validated like
    every knob. Raises ValueError or TypeError saying what is wrong (without the name)."""
    value = _PARSERS[name](text)
    validate_knob(name, value)
    return value


def validate_knob(name: str, value: Any) -> None:
    """Raises TypeError or ValueError if ``value`` is not valid for knob ``name``. Imports
    the native module (the validation is the core's)."""
    from . import _core  # noqa: PLC0415 - native: only when a knob is given

    _core.resolve_knobs(None, **{name: value})


def option(name: str) -> str:
    """The command line option of a knob: ``warmup_times`` → ``--warmup-times``."""
    return "--" + name.replace("_", "-")


# --- the command


class _UsageError(Exception):
    """The check cannot run; the message is one line."""


class _Parser(argparse.ArgumentParser):
    """Errors on one line: ``psleak check: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``psleak`` command."""
    parser = _Parser(prog="psleak", description="Leak checks for Python C extensions and native code.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    check = sub.add_parser(
        "check",
        help="check a function for leaks",
        description=(
            "Call MODULE:FUNCTION many times and report whether the process keeps growing or a "
            "call leaves resources open. Exit code: 0 clean, 1 leak, 2 the check could not run "
            "(bad arguments, unimportable target, or the function raised)."
        ),
    )
    check.add_argument(
        "target",
        metavar="MODULE:FUNCTION",
        help="a module importable from the current directory (or a .py file) and a function in it; "
        "FUNCTION may be dotted: Class.method",
    )
    check.add_argument("--args", metavar="JSON", default="[]", help="positional arguments, a JSON array")
    check.add_argument("--kwargs", metavar="JSON", default="{}", help="keyword arguments, a JSON object")
    for name, (metavar, text) in TEXT_KNOBS.items():
        check.add_argument(option(name), dest=name, metavar=metavar, help=text)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--svg", metavar="FILE", help="also write the runs as an SVG chart to FILE")
    check.add_argument("--traceback", action="store_true", help="show the Python traceback of errors")
    check.set_defaults(run=_check)

    info = sub.add_parser(
        "info",
        help="what the probes see in this process",
        description="malloc statistics, memory, open file descriptors and native threads of this process",
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit code."""
    ns = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = ns.run
    try:
        return run(ns)
    except _UsageError as e:
        if getattr(ns, "traceback", False) and e.__cause__ is not None:
            traceback.print_exception(type(e.__cause__), e.__cause__, e.__cause__.__traceback__)
        print(f"psleak {ns.command}: error: {e}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 130


def _import_psleak() -> Any:
    try:
        import psleak  # noqa: PLC0415 - the native module loads only when a command runs
        from psleak import _core, _probes  # noqa: F401, PLC0415 - they load it
    except ImportError as e:
        raise _UsageError(f"cannot load psleak's native module: {e}") from e
    return psleak


# --- psleak check


def _check(ns: argparse.Namespace) -> int:
    psleak = _import_psleak()
    knobs = _knobs(ns)
    args = _json_arg("--args", ns.args, list)
    kwargs = _json_arg("--kwargs", ns.kwargs, dict)
    fun = resolve_target(ns.target)  # last: importing the module may be slow or have effects
    target = functools.partial(fun, *args, **kwargs)

    def call() -> Any:
        try:
            return target()
        except Exception as e:
            raise _Raised(e) from e

    progress = _Progress(sys.stderr) if _isatty(sys.stderr) else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            report = psleak.check(call, name=ns.target, progress=progress, **knobs)
    except _Raised as e:
        exc = e.exc
        raise _UsageError(f"{ns.target!r} raised {type(exc).__name__}: {exc}") from exc
    except psleak.ProbeError as e:
        raise _UsageError(f"probe unavailable: {e}") from e
    finally:
        if progress is not None:
            progress.clear()
    if ns.svg:
        try:
            with open(ns.svg, "w", encoding="utf-8") as f:
                f.write(report.to_svg())
        except OSError as e:
            raise _UsageError(f"--svg: cannot write {ns.svg!r}: {e.strerror}") from e
    sys.stdout.write((report.to_json() if ns.json else report.text) + "\n")
    return 0 if report.clean else 1


class _Raised(Exception):
    """Carries an exception raised by the function under test through the check."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(exc)
        self.exc = exc


def _knobs(ns: argparse.Namespace) -> dict[str, Any]:
    knobs = {}
    for name in TEXT_KNOBS:
        text = getattr(ns, name)
        if text is None:
            continue
        try:
            knobs[name] = parse_knob(name, text)
        except (TypeError, ValueError) as e:
            raise _UsageError(f"{option(name)}: {e}") from e
    return knobs


def _json_arg(opt: str, text: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise _UsageError(f"{opt}: invalid JSON: {e}") from e
    if not isinstance(value, kind):
        expected = "array" if kind is list else "object"
        raise _UsageError(f"{opt}: expected a JSON {expected} (got {text!r})")
    return value


def resolve_target(spec: str) -> Callable[..., Any]:
    """The callable named by ``MODULE:FUNCTION``. MODULE is a dotted module name, importable
    from the current directory as with ``python -m``, or the path of a ``.py`` file;
    FUNCTION may be dotted (``Class.method``). Raises :class:`_UsageError`."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _UsageError(f"expected MODULE:FUNCTION (got {spec!r})")
    obj: Any = _import_module(module_name)
    done: list[str] = []
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            where = repr(f"{module_name}:{'.'.join(done)}") if done else f"module {module_name!r}"
            raise _UsageError(f"{where} has no attribute {part!r}") from e
        done.append(part)
    if not callable(obj):
        raise _UsageError(f"{spec!r} is not callable (it is {type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def _import_module(name: str) -> Any:
    try:
        if name.endswith(".py"):
            return _import_file(name)
        cwd = os.getcwd()
        if "" not in sys.path and cwd not in sys.path:
            sys.path.insert(0, cwd)  # as `python -m` does
        return importlib.import_module(name)
    except _UsageError:
        raise
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise _UsageError(f"no module named {e.name!r} (looked in the current directory and sys.path)") from e
        raise _UsageError(f"importing {name!r} failed: {type(e).__name__}: {e}") from e
    except Exception as e:
        raise _UsageError(f"importing {name!r} failed: {type(e).__name__}: {e}") from e


def _import_file(path: str) -> Any:
    if not os.path.isfile(path):
        raise _UsageError(f"no such file: {path!r}")
    name = os.path.splitext(os.path.basename(path))[0]
    if name in sys.modules:  # do not shadow a module already loaded (json.py...)
        name = f"_psleak_target_{name}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _UsageError(f"cannot import {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickle, dataclasses... look the module up there
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))  # as `python path.py` does
    spec.loader.exec_module(module)
    return module


def _show_warning(  # noqa: PLR0917 - the signature of warnings.showwarning
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
) -> None:
    print(f"psleak check: {category.__name__}: {message}", file=sys.stderr)  # noqa: T201


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """The ``progress`` callback of a check on a terminal: one line, rewritten."""

    def __init__(self, stream: IO[str]) -> None:
        from ._psleak import format_bytes  # noqa: PLC0415 - native: loaded by now

        self.stream = stream
        self.shown = False
        self.format_bytes = format_bytes

    def __call__(self, p: dict[str, Any]) -> None:
        format_bytes = self.format_bytes
        parts = [f"run {p['run']}/{p['max_runs']}: {p['calls']} calls"]
        for metric, value in dict(p["growth"]).items():
            if value:
                amount = format_bytes(abs(value)) if metric != "blocks" else str(abs(value))
                parts.append(f"{metric} {'+' if value > 0 else '-'}{amount}")
        self.stream.write("\r\x1b[K" + ", ".join(parts))
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erases the line."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


# --- psleak info


def _info(ns: argparse.Namespace) -> int:
    psleak = _import_psleak()
    data: dict[str, Any] = {
        "pid": os.getpid(),
        "version": psleak.__version__,
        "build_profile": psleak.BUILD_PROFILE,
    }
    errors: dict[str, str] = {}
    probes: dict[str, Callable[[], Any]] = {
        "malloc": lambda: psleak.malloc_info()._asdict(),
        "memory": lambda: psleak.memory_info()._asdict(),
        "fds": lambda: [fd._asdict() for fd in psleak.open_fds()],
        "threads": lambda: [t._asdict() for t in psleak.native_threads()],
    }
    for key, probe in probes.items():
        try:
            data[key] = probe()
        except OSError as e:  # ProbeError: not available here
            data[key] = None
            errors[key] = str(e)
    data["errors"] = errors
    if ns.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        from ._psleak import format_bytes  # noqa: PLC0415 - loaded by now

        sys.stdout.write(_info_text(data, format_bytes))
    return 0


def _info_text(data: dict[str, Any], format_bytes: Callable[[float], str]) -> str:
    lines = [f"psleak {data['version']} ({data['build_profile']}), process {data['pid']}"]

    def section(title: str, key: str, rows: list[str]) -> None:
        lines.append("")
        lines.append(title)
        if data[key] is None:
            lines.append(f"  unavailable: {data['errors'][key]}")
        else:
            lines.extend("  " + r for r in rows)

    def sizes(key: str) -> list[str]:
        return [f"{k:<11}{format_bytes(v):>12}" for k, v in (data[key] or {}).items()]

    section("malloc", "malloc", sizes("malloc"))
    section("memory", "memory", sizes("memory"))
    fds = data["fds"] or []
    section(
        f"open file descriptors ({len(fds)})",
        "fds",
        [f"{'fd':>4}  {'kind':<12} description"] + [f"{d['fd']:>4}  {d['kind']:<12} {_describe_fd(d)}" for d in fds],
    )
    threads = data["threads"] or []
    section(
        f"native threads ({len(threads)})",
        "threads",
        [f"{'id':>8}  name"] + [f"{t['id']:>8}  {t['name']}" for t in threads],
    )
    return "\n".join(lines) + "\n"


def _describe_fd(d: dict[str, Any]) -> str:
    if d.get("family") or d.get("type"):
        parts = [p for p in (d.get("family"), d.get("type")) if p]
        parts += [f"{k}={d[k]}" for k in ("laddr", "raddr") if d.get(k)]
        return " ".join(parts)
    return str(d.get("path") or d.get("name") or d.get("target") or "")
