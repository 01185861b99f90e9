#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: formatting,
# lints, then every unit, integration and doc test (the real binary, real
# processes, real files). Installs nothing today: the suite needs only the
# Rust toolchain. Later suites add what they need here (apt, pip).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
