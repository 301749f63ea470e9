#!/usr/bin/env bash
# Type-checks and lints the core crate (lib, tests, examples) for x86_64-apple-darwin and
# aarch64-apple-darwin: clippy with warnings denied, std built from source (-Zbuild-std).
# No Apple SDK or linker is needed, and nothing is linked or run: this proves the macOS
# backend compiles and is lint-clean, not that it works (../shared/CROSS-PLATFORM.md, 2).
#
# Uses Debian's rustc-web toolchain (scripts/install-cross.sh installs it): its rust-web-src
# is the std source of exactly that rustc, which -Zbuild-std needs; RUSTC_BOOTSTRAP=1 lets
# the stable compiler take -Z flags. /usr/bin comes first in PATH so that rustup's proxies,
# if any, do not shadow Debian's cargo, rustc and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-cross.sh
export PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1
# Its own target directory: a std built for other targets, and Debian's rustc, must not
# mix with the host build in target/.
export CARGO_TARGET_DIR="$PWD/target/macos"
echo "check-macos: $(cargo --version), $(rustc --version)"
cargo clippy -Zbuild-std -p psleak --all-targets \
    --target x86_64-apple-darwin --target aarch64-apple-darwin -- -D warnings
