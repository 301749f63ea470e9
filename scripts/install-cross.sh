#!/usr/bin/env bash
# Installs the cross toolchain of ../shared/CROSS-PLATFORM.md (route 1a): Debian's rustc-web,
# cargo-web, rust-web-src (its std source, for -Zbuild-std) and rust-web-clippy, all of one
# version, in one apt call; with "windows", also mingw-w64 (linker) and wine64 (test runner).
# Idempotent: skips apt when everything is already there. Needs root (CI runs as root).
set -euo pipefail
pkgs=(rustc-web cargo-web rust-web-src rust-web-clippy)
if [[ "${1:-}" == "windows" ]]; then
    pkgs+=(gcc-mingw-w64-x86-64 wine64)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -q
    "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi
