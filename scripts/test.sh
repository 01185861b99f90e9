#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: formatting,
# lints, then every unit, integration and doc test (the real binary, real
# processes, real files, real clients). Installs what the tests need that a
# fresh machine may lack: curl (the HTTP client of the end-to-end tests) and
# procps (kill).
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    type -P "$1" >/dev/null && return
    echo "== installing $2"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -q "$2" >/dev/null 2>&1 ||
        { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$2" >/dev/null; }
    type -P "$1" >/dev/null || { echo "could not install $2 (needed for $1)" >&2; exit 1; }
}
need curl curl
need kill procps

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
