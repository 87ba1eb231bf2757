#!/usr/bin/env bash
# Conformance of the live service to its committed OpenAPI document: starts `trialport serve` on a loopback port
# over a fresh home with a small study, and runs schemathesis (PyPI, into target/st-venv) with every check and the
# examples, coverage, fuzzing and stateful phases (the stateful phase follows the document's links: export ->
# get_job -> download/cancel). Bounded: ST_MAX_EXAMPLES cases per operation (default 20) and ST_TIMEOUT seconds
# in all (default 900). Then SIGTERM must stop the server with exit 0 and the audit trail must verify.
#
# Usage: server/schemathesis.sh            (from anywhere; CARGO_TARGET_DIR, PYTHON, ST_MAX_EXAMPLES, ST_TIMEOUT and
#                                          ST_SEED are honoured)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
venv="$target/st-venv"
max_examples="${ST_MAX_EXAMPLES:-20}"
budget="${ST_TIMEOUT:-900}"
# A fixed seed by default, so CI runs are repeatable; ST_SEED=random (or a number) explores further.
seed="${ST_SEED:-20261206}"
if [ "$seed" = random ]; then seed="$RANDOM$RANDOM"; fi

step() { printf '\n== schemathesis: %s == (at %d s)\n' "$*" "$SECONDS"; }

step "virtual environment ($venv)"
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==4.32.5"
"$venv/bin/st" --version

step "build trialport"
(cd "$repo" && cargo build --quiet --locked -p trialport-cli)
tp="$target/debug/trialport"

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

step "home with study DEMO01"
mkdir -p "$work/source/DEMO01"
printf 'STUDYID,USUBJID,SITEID,ARM,AGE,SEX\n' > "$work/source/DEMO01/DM.csv"
printf 'STUDYID,USUBJID,AESEQ,AETERM,AESER,AESEV\n' > "$work/source/DEMO01/AE.csv"
for i in $(seq 1 40); do
    printf 'DEMO01,DEMO01-%03d,S%d,%s,%d,%s\n' "$i" $((i % 3)) "$([ $((i % 2)) = 0 ] && echo PLACEBO || echo DRUG)" \
        $((30 + i)) "$([ $((i % 2)) = 0 ] && echo F || echo M)" >> "$work/source/DEMO01/DM.csv"
    printf 'DEMO01,DEMO01-%03d,1,HEADACHE,%s,MILD\n' "$i" "$([ $((i % 5)) = 0 ] && echo Y || echo N)" \
        >> "$work/source/DEMO01/AE.csv"
done
env -u TRIALPORT_HOME -u TRIALPORT_CREDENTIAL "$tp" --home "$work/home" init --source "$work/source" --org acme \
    > "$work/init.json"
key="$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$work/init.json")"

step "serve"
env -u TRIALPORT_CREDENTIAL "$tp" --home "$work/home" serve --listen 127.0.0.1:0 --metrics-listen off --workers 2 \
    --drain-seconds 10 > "$work/ready" 2> "$work/serve.log" &
server_pid=$!
for _ in $(seq 1 200); do
    [ -s "$work/ready" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.05
done
addr="$("$venv/bin/python" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listen"])' "$work/ready")"
echo "listening on $addr"

step "run (at most $max_examples cases per operation, ${budget}s in all)"
set +e
# From the scratch directory: schemathesis keeps a cache (.schemathesis/) in its working directory.
(cd "$work" && timeout "$budget" "$venv/bin/st" --config-file "$here/schemathesis.toml" run "$repo/docs/openapi.json" --url "http://$addr" \
    -H "Authorization: ApiKey $key" --checks all --max-examples "$max_examples" --workers 1 --seed "$seed" \
    --request-timeout 30 --generation-database none --no-color)
status=$?
set -e
if [ "$status" -eq 124 ]; then echo "schemathesis did not finish within ${budget}s" >&2; fi

step "SIGTERM"
kill -TERM "$server_pid"
set +e
wait "$server_pid"
exit_code=$?
set -e
server_pid=""
if [ "$exit_code" -ne 0 ]; then
    echo "serve exited $exit_code after SIGTERM" >&2
    tail -n 20 "$work/serve.log" >&2
    exit 1
fi
errors="$(grep -c '"status":5[0-9][0-9]' "$work/serve.log" || true)"
echo "requests answered with 5xx: $errors"
env -u TRIALPORT_HOME "$tp" --home "$work/home" --credential "ApiKey $key" audit verify
exit "$status"
