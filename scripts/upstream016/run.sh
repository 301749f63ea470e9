#!/usr/bin/env bash
# Runs the public-API test suite of psleak 0.1.6 (the package this one replaces) against
# OUR psleak. The sdist is downloaded at test time from PyPI, never committed; its
# tests/test_ext.c is built with its own tests/build_ext.py; its tests/ run from a scratch
# directory without its psleak.py, so `import psleak` is ours (installed in the venv).
# The tests skipped, each with its reason, are listed in scripts/upstream016/conftest.py.
# Usage: scripts/upstream016/run.sh [python] [pytest args...]; default python .venv/bin/python.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${1:-$root/.venv/bin/python}
shift || true
# Absolute: the suite runs from a scratch directory. (No symlink resolution: a venv's
# python must keep its path to find its site-packages.)
[[ $py == /* || $py != */* ]] || py=$PWD/$py
version=0.1.6
work=$root/target/upstream-$version
mkdir -p "$work"
sdist=$work/psleak-$version.tar.gz
if [[ ! -f $sdist ]]; then
    "$py" -m pip download -q --no-deps --no-binary :all: "psleak==$version" -d "$work"
fi
rm -rf "$work/src" "$work/run"
mkdir -p "$work/src" "$work/run"
tar -xzf "$sdist" -C "$work/src" --strip-components=1
cp -r "$work/src/tests" "$work/run/tests"
cp "$here/conftest.py" "$work/run/conftest.py"
# Its own ini file, so that pytest does not take ours (this directory is inside the repo).
printf '[pytest]\n' >"$work/run/pytest.ini"
cd "$work/run"
# Its build script imports psutil and setuptools (the venv has both: see the Makefile).
"$py" tests/build_ext.py build_ext --inplace -q >build.log 2>&1 || { cat build.log; exit 1; }
"$py" -c "import test_ext"
# 0.1.6's own test environment (its Makefile): PYTHONMALLOC=malloc, unbuffered, warnings on;
# then again with pymalloc, where 0.1.6 itself would skip every check and ours runs them.
# Our pytest plugin stays loaded, as in a user's environment; xdist is off (checks measure
# the whole process).
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=always
for mode in malloc default; do
    echo "== psleak 0.1.6's test suite against ours, PYTHONMALLOC=$mode"
    if [[ $mode == malloc ]]; then export PYTHONMALLOC=malloc; else unset PYTHONMALLOC; fi
    "$py" -m pytest -q -p no:xdist -p no:cacheprovider -rs tests "$@"
done
