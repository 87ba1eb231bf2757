#!/usr/bin/env bash
# Runs every check and test of trialport, installing what it needs first.
# Usage: scripts/test-all.sh            (from anywhere; CI calls it through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's heading says when it starts (seconds since the run began), so a slow step is found from the log.
step() { printf '\n== %s == (at %d s)\n' "$*" "$SECONDS"; }

# One-shot builds gain nothing from incremental compilation, which costs time and many GB of disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "toolchain"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi
cargo --version

step "system tools"
# need_tool CMD PACKAGE: installs Debian's PACKAGE when CMD is missing (as root with apt-get), else stops the run.
need_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
  else
    echo "$1 is missing and cannot be installed here: install $2" >&2
    exit 1
  fi
}
# xmllint checks the generated Define-XML and ODM documents in the format tests.
need_tool xmllint libxml2-utils
xmllint --version 2>&1 | sed -n 1p  # sed reads to the end: `head` would SIGPIPE xmllint under pipefail
# pdftoppm renders every page of the generated PDFs in the report checks.
need_tool pdftoppm poppler-utils
pdftoppm -v 2>&1 | sed -n 1p
# strace stops a process opening the home at each of its locks, in the concurrency tests.
need_tool strace strace
strace -V | sed -n 1p
# Free disk, so a run that fails for space says so: the memory check alone writes about 2 GB of artifacts at a time.
df -h . "${TMPDIR:-/tmp}"

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The engine without its embedded store: SQLite is a feature of core (on by default), never a requirement.
cargo check --locked --quiet -p trialport-core --no-default-features

step "docs"
# The CLI is excluded: its doc comments are clap help text, where <PLACEHOLDERS> are meant literally.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --exclude trialport-cli --no-deps --locked --quiet

step "tests: build"
cargo test --workspace --locked --no-run --quiet
step "tests: run"
cargo test --workspace --locked
# The Rust embedding example of the README, run as a user would.
cargo run --locked --quiet -p trialport-examples --example embed

step "python (builds the wheel into a venv, runs stubtest, mypy and pytest)"
bindings-python/test.sh

step "reports (the demo's PDF, HTML and XLSX reports read by pypdf, pdftoppm and openpyxl)"
cargo build -p trialport-cli --locked --quiet
"${CARGO_TARGET_DIR:-target}/py-venv/bin/python" scripts/check-reports.py "${CARGO_TARGET_DIR:-target}/debug/trialport"

step "C library (header check, symbols, C tests under valgrind against .so and .a, C++ header, example vs CLI)"
bindings-c/test.sh

step "HTTP service conformance (schemathesis against a live trialport serve, about 30 s after the build)"
server/schemathesis.sh

step "HTTP service under load, bounded (8 clients for 5 s over HTTP and in process, then SIGTERM mid-load)"
benches/http-load.sh --quick

step "release (scripts/dist.sh builds dist/; scripts/test-dist.sh tests the installed SDK, wheel, CLI and SBOM)"
scripts/dist.sh
scripts/test-dist.sh

step "memory check (5,000,000 rows through the job path, peak RSS under 300 MB)"
if [ -x benches/memcheck.sh ]; then
  benches/memcheck.sh
else
  echo "benches/memcheck.sh missing" >&2
  exit 1
fi

echo
echo "all checks passed in $SECONDS s"
