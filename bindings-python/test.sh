#!/usr/bin/env bash
# Builds the Python package and runs its checks: creates a virtual environment (target/py-venv), installs maturin,
# pytest and the test extras, builds and installs ./bindings-python into it (pip, the PEP 517 path users take),
# checks the stubs against the compiled module (mypy.stubtest) and the package's types (mypy --strict), runs the
# pytest suite (no test collected is a failure) and the examples.
#
# Usage: bindings-python/test.sh [pytest args...]      (from anywhere)
# Environment: PYTHON (creates the venv, default python3), CARGO_TARGET_DIR, TRIALPORT_PY_PROFILE (cargo profile of
# the native module: dev (default, quick to build) or release); TRIALPORT_PY_WHEEL: a built wheel (scripts/dist.sh)
# to test instead: it is installed with pip into a new virtual environment (TRIALPORT_PY_VENV, default
# target/py-wheel-venv), and nothing is built.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
profile="${TRIALPORT_PY_PROFILE:-dev}"
wheel="${TRIALPORT_PY_WHEEL:-}"
if [ -n "$wheel" ]; then
    [ -f "$wheel" ] || { echo "TRIALPORT_PY_WHEEL: no such file: $wheel" >&2; exit 1; }
    wheel="$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")"
    venv="${TRIALPORT_PY_VENV:-$target/py-wheel-venv}"
else
    venv="${TRIALPORT_PY_VENV:-$target/py-venv}"
fi

step() { printf '\n== python: %s == (at %d s)\n' "$*" "$SECONDS"; }

step "virtual environment ($venv)"
if [ -n "$wheel" ]; then
    # A wheel is tested as a user installs it: into an environment that has seen no other build.
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
tools=(pytest pyarrow polars pandas openpyxl pyreadstat mypy pyjwt cryptography jsonschema pypdf)
if [ -z "$wheel" ]; then tools+=("maturin>=1.9,<2"); fi
python -m pip install --quiet --disable-pip-version-check "${tools[@]}"

if [ -n "$wheel" ]; then
    step "install $(basename "$wheel")"
    python -m pip install --quiet --disable-pip-version-check "$wheel"
else
    step "build and install ./bindings-python (cargo profile $profile)"
    # Stripped: the debug symbols of a dev build make a 300 MB module that is slow to pack and install.
    MATURIN_PEP517_ARGS="--profile $profile --strip" python -m pip install --quiet --disable-pip-version-check \
        --no-build-isolation --no-deps --force-reinstall "$here"
fi

# Checks run from outside the source tree, so that they import the installed package; and make sure they do.
cd "$target"
python - "$venv" <<'PY'
import os, sys
import trialport, trialport._trialport as native
venv = os.path.realpath(sys.argv[1])
for module in (trialport, native):
    path = os.path.realpath(module.__file__ or "")
    if not path.startswith(venv + os.sep):
        sys.exit(f"{module.__name__} is imported from {path}, not from the environment {venv}")
print(f"trialport {trialport.__version__} from {os.path.dirname(native.__file__ or '')}")
PY

step "stubs match the compiled module"
python -m mypy.stubtest trialport._trialport

step "types of the public API"
python -m mypy --strict --no-incremental "$here/python/trialport"

step "pytest"
set +e
python -m pytest -p no:cacheprovider -q "$here/tests" "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no test: that is a failure" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    exit "$status"
fi

step "examples"
examples_out="$(mktemp -d)"
trap 'rm -rf "$examples_out"' EXIT
python "$repo/examples/python/export_polars.py" "$examples_out/files" >/dev/null
python "$repo/examples/python/engine_audit_hook.py" "$examples_out/home" >/dev/null

echo
echo "python: all checks passed"
