#!/usr/bin/env bash
# Peak-memory check of the export job path: builds the memcheck binary in release and runs it (a fresh process
# per format; exits non-zero when a job fails, writes a wrong row count, or peaks above 300 MB).
# Arguments are passed on: --quick (200,000 rows), --rows N, --xlsx-rows N, --formats csv,parquet, --limit-mb MB.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"

(cd "$repo" && cargo build --release -p trialport-benches --bin memcheck)
exec "$target/release/memcheck" "$@"
