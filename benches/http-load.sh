#!/usr/bin/env bash
# Load on the HTTP service (benches/src/bin/http_load.rs): clients on loopback mixing list, get, formats and small
# exports, over HTTP (`trialport serve`) and through the in-process engine, then a run that sends SIGTERM to the
# server mid-load. Exits non-zero on any 5xx, lost job, failed `audit verify`, or a SIGTERM that does not end in
# exit 0 with no job left running.
#
# Usage: benches/http-load.sh            full size, release build: 64 clients for 60 s per mode, then SIGTERM 20 s
#                                        into a 64-client run (about 3 minutes after the build)
#        benches/http-load.sh --quick    bounded, debug build (CI): 8 clients for 5 s per mode, then SIGTERM 3 s
#                                        into an 8-client run (about 30 s after the build)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"

if [ "${1:-}" = --quick ]; then
    profile=debug
    clients=8 seconds=5 sigterm_after=3
    (cd "$repo" && cargo build --quiet --locked -p trialport-cli -p trialport-benches --bin trialport --bin http_load)
else
    profile=release
    clients=64 seconds=60 sigterm_after=20
    (cd "$repo" && cargo build --quiet --locked --release -p trialport-cli -p trialport-benches --bin trialport \
        --bin http_load)
fi
bin="$target/$profile"

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
echo "== $clients clients for ${seconds}s: in-process engine, then HTTP =="
"$bin/http_load" --clients "$clients" --seconds "$seconds" --mode both --trialport "$bin/trialport"
echo "== $clients clients over HTTP, SIGTERM after ${sigterm_after}s =="
"$bin/http_load" --clients "$clients" --seconds "$seconds" --mode http --sigterm-after "$sigterm_after" \
    --trialport "$bin/trialport"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
