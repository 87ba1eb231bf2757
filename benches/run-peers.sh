#!/usr/bin/env bash
# trialport vs its peers, in one sitting: sets up the Python environment (target/bench-venv), builds tp_bench,
# builds and installs the Python package ./bindings-python into that venv (release profile, for the py_tp_* cases),
# generates the LB data with ../shared/bench/gen_lb.py, then runs benches/peers.py (arguments are passed on,
# e.g. --reps 5, --only csv, --no-ceiling). The table is printed and saved under target/bench-results/.
#
# Environment: BENCH_DATA (input, default <tmpdir>/perfdata), BENCH_OUT (scratch, default <tmpdir>/perfout),
# PEER_BENCH_DIR (the harness, default ../shared/bench), PYTHON (to create the venv, default python3),
# TP_SKIP_PY_BUILD=1 (keep the trialport package already installed in the venv, e.g. to re-run quickly).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
bench="$(cd "${PEER_BENCH_DIR:-$repo/../shared/bench}" && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
venv="$target/bench-venv"
tmp="${TMPDIR:-/tmp}"
export BENCH_DATA="${BENCH_DATA:-$tmp/perfdata}"
export BENCH_OUT="${BENCH_OUT:-$tmp/perfout}"

if [ ! -x /usr/bin/time ]; then
    echo "run-peers: /usr/bin/time is missing; installing the 'time' package" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq time
    else
        echo "run-peers: run 'sudo apt-get install time' first" >&2
        exit 1
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "run-peers: creating $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import numpy, pyarrow, polars, pandas, pyreadstat, xlsxwriter, openpyxl, maturin' \
    2>/dev/null; then
    echo "run-peers: installing the peers (and maturin) into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet numpy pyarrow polars pandas pyreadstat xlsxwriter openpyxl \
        "maturin>=1.9,<2"
fi

echo "run-peers: building tp_bench (release)" >&2
(cd "$repo" && cargo build --release -p trialport-benches --bin tp_bench)

if [ "${TP_SKIP_PY_BUILD:-0}" != 1 ] || ! "$venv/bin/python" -c 'import trialport' 2>/dev/null; then
    # As bindings-python/test.sh installs it, but with the release profile: the py_tp_* figures need it.
    echo "run-peers: building the trialport Python package (release) into $venv" >&2
    (export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
     MATURIN_PEP517_ARGS="--profile release" python -m pip install --quiet --disable-pip-version-check \
         --no-build-isolation --no-deps --force-reinstall "$repo/bindings-python")
fi

for n in 1000000 100000; do
    if [ ! -f "$BENCH_DATA/lb_$n.parquet" ]; then
        "$venv/bin/python" "$bench/gen_lb.py" "$n" "$BENCH_DATA"
    fi
done

echo "run-peers: load before the run: $(uptime)" >&2
exec "$venv/bin/python" "$here/peers.py" --tp-bench "$target/release/tp_bench" \
    --harness "$bench/bench_peers.py" --py "$venv/bin/python" "$@"
