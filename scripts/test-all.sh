#!/usr/bin/env bash
# Runs every check and test of trialport, installing what it needs first.
# Usage: scripts/test-all.sh            (from anywhere; CI calls it through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

step "toolchain"
if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi
cargo --version

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "tests"
cargo test --workspace --locked

step "memory check (5,000,000 rows through the job path, peak RSS under 300 MB)"
if [ -x benches/memcheck.sh ]; then
  benches/memcheck.sh
else
  echo "benches/memcheck.sh missing" >&2
  exit 1
fi

echo
echo "all checks passed"
