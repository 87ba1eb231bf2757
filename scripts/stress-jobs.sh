#!/usr/bin/env bash
# The full-size concurrency and crash runs of issue 12, beyond the bounded sizes of the test suite:
# 16 processes x 20 waiting exports on one home, 10 rounds, alone and with a `trialport worker` beside them.
# Sizes can be changed through the same variables. Takes several minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
export TRIALPORT_STRESS_PROCESSES="${TRIALPORT_STRESS_PROCESSES:-16}"
export TRIALPORT_STRESS_EXPORTS="${TRIALPORT_STRESS_EXPORTS:-20}"
export TRIALPORT_STRESS_ROUNDS="${TRIALPORT_STRESS_ROUNDS:-10}"
echo "stress: ${TRIALPORT_STRESS_PROCESSES} processes x ${TRIALPORT_STRESS_EXPORTS} exports x ${TRIALPORT_STRESS_ROUNDS} rounds"
cargo test --locked -p trialport-cli --test concurrency -- --test-threads 1 --nocapture
cargo test --locked -p trialport-cli --test crash_safety -- --test-threads 1 --nocapture
