"""Build the ``_leakmatrix`` C test extension.

``build()`` compiles ``tests/ext/_leakmatrix.c`` into
``tests/ext/_leakmatrix<EXT_SUFFIX>`` with gcc, using the include
directory and extension suffix of the running interpreter. It only
compiles when the shared object is missing or older than the source, and
writes to a temporary name first and then renames it, so that two
processes building at the same time never see (or produce) a half-written
file.

It also builds ``tests/ext/libleakmatrix_dl.so`` from
``tests/ext/leakmatrix_dl.c``: a small plain-C library (no Python) that
the extension loads with ``dlopen()`` during a check (the
``leak_site_dlopen`` case), found next to the extension. Both are built
with ``-g`` so that a leak report can name the allocating function and
``file:line``.

Run it directly with ``python tests/build_ext.py [--force]``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
EXT_DIR = HERE / "ext"
SOURCE = EXT_DIR / "_leakmatrix.c"
MODULE = "_leakmatrix"

CFLAGS = ["-shared", "-fPIC", "-O1", "-g", "-pthread", "-Wall", "-Werror"]
# the extension calls dlopen/dladdr: part of libc since glibc 2.34, libdl before
LDLIBS = ["-ldl"]

DL_SOURCE = EXT_DIR / "leakmatrix_dl.c"
DL_LIBRARY = "libleakmatrix_dl.so"  # the name _leakmatrix.c dlopens


def target_path() -> pathlib.Path:
    """Path of the shared object for the running interpreter."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return EXT_DIR / f"{MODULE}{suffix}"


def dl_library_path() -> pathlib.Path:
    """Path of the dlopen'ed helper library (next to the extension)."""
    return EXT_DIR / DL_LIBRARY


def _up_to_date(target: pathlib.Path, source: pathlib.Path | None = None) -> bool:
    source = SOURCE if source is None else source
    try:
        return target.stat().st_mtime >= source.stat().st_mtime
    except FileNotFoundError:
        return False


def _compiler() -> str:
    cc = os.environ.get("CC", "gcc").split()[0]
    if shutil.which(cc) is None:
        msg = f"C compiler {cc!r} not found (set CC or install gcc)"
        raise RuntimeError(msg)
    return cc


def _compile(source: pathlib.Path, target: pathlib.Path, extra: list[str], libs: list[str]) -> None:
    """Compile ``source`` into the shared object ``target``, atomically."""
    if not source.is_file():
        msg = f"extension source not found: {source}"
        raise RuntimeError(msg)
    # unique temp name in the same directory: os.replace is then atomic
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".so.tmp", dir=target.parent)
    os.close(fd)
    cmd = [_compiler(), *CFLAGS, *extra, str(source), "-o", tmp, *libs]  # libraries after the source
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = (
                f"building {target.name} failed (exit {proc.returncode})\n"
                f"command: {' '.join(cmd)}\n"
                f"{proc.stderr.strip()}"
            )
            raise RuntimeError(msg)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build(force: bool = False) -> pathlib.Path:
    """Compile the extension and its dlopen'ed library if needed; return the extension's path."""
    target = target_path()
    if force or not _up_to_date(target):
        if not SOURCE.is_file():
            msg = f"extension source not found: {SOURCE}"
            raise RuntimeError(msg)
        include = sysconfig.get_paths()["include"]
        if not (pathlib.Path(include) / "Python.h").is_file():
            msg = f"Python.h not found in {include} (Python headers missing?)"
            raise RuntimeError(msg)
        _compile(SOURCE, target, [f"-I{include}"], LDLIBS)
    library = dl_library_path()
    if force or not _up_to_date(library, DL_SOURCE):
        _compile(DL_SOURCE, library, [], [])
    return target


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    force = "--force" in argv or "-f" in argv
    try:
        path = build(force=force)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
