# Sourced by scripts/test-windows.sh (and handy by hand: `. scripts/windows-env.sh`): the
# environment of ../shared/CROSS-PLATFORM.md route 1a. Debian's rustc/cargo/rustdoc/clippy
# 1.96 come first in PATH because rust-web-src is *their* std source (-Zbuild-std needs the
# exact one); the cross build products stay under target/ so `make clean` removes them.
export PATH=/usr/bin:$PATH
export RUSTC_BOOTSTRAP=1
export PSLEAK_WIN_TARGET=x86_64-pc-windows-gnu
export CARGO_TARGET_DIR="${PSLEAK_ROOT:?}/target/windows"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
# The runner is wine64 itself: the `wine` wrapper warns about wine32 on every run.
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64
export WINEPREFIX="${PSLEAK_ROOT}/target/windows/wineprefix"
# Keeps real errors (WINEDEBUG=-all would hide the bcryptprimitives load failure: exit 53,
# no output) and hides the harmless display-driver lines.
export WINEDEBUG=fixme-all,err-winediag,err-systray,err-ole
export WINEDLLOVERRIDES="mscoree,mshtml="
