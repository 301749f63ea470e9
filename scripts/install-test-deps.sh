#!/usr/bin/env bash
# System packages the test suite uses beyond a compiler and Python headers:
# libjemalloc2, to check that a replacement allocator (LD_PRELOAD) is detected and reported
# rather than silently blinding the heap metric (tests/test_verdicts.py).
# Installs with apt when run as root (CI is); otherwise says what is missing and goes on:
# the tests that need it are skipped with that reason.
set -euo pipefail
pkgs=(libjemalloc2)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "note: not installed (needs root and apt): ${missing[*]}; the tests that use them are skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# apt-get update only when the package lists do not know the package yet.
apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
