#!/usr/bin/env bash
# Tests the release artifacts in dist/ (built by scripts/dist.sh) as a user installs them, not the source tree:
#   1. SHA256SUMS checks, and no artifact carries debug info; each binary is under 40 MiB.
#   2. The C SDK installs with one command into a new prefix; the C example compiles against it with pkg-config
#      alone and runs without LD_LIBRARY_PATH (the shared library through the run path the .pc file gives, and the
#      static one); its XPT files are byte-identical to the released CLI's; the prefix still works once moved.
#   3. The wheel installs with pip into a new virtual environment and passes the Python suite there
#      (bindings-python/test.sh with TRIALPORT_PY_WHEEL).
#   4. The released CLI runs the demo, and verifies the demo's audit trail.
#   5. The SBOM is CycloneDX JSON that names every Rust crate each artifact links and the Python packages.
# Usage: scripts/test-dist.sh       (from anywhere, after scripts/dist.sh)
# Needs: gcc, pkg-config, readelf, nm, python3 with venv (PyPI), tar, sha256sum.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
dist="$repo/dist"
step() { printf -- '-- test-dist: %s (at %d s)\n' "$*" "$SECONDS"; }
fail() {
  echo "test-dist: $*" >&2
  exit 1
}
for tool in gcc pkg-config readelf nm "${PYTHON:-python3}" tar sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is needed and missing"
done
[ -f "$dist/SHA256SUMS" ] || fail "dist/SHA256SUMS is missing: run scripts/dist.sh first"
work="$(mktemp -d "${TMPDIR:-/tmp}/trialport-dist.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Nothing may come from the environment: each artifact must find what it needs by itself.
unset LD_LIBRARY_PATH LIBRARY_PATH C_INCLUDE_PATH CPATH PKG_CONFIG_PATH TRIALPORT_HOME TRIALPORT_CREDENTIAL

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)"
major="${version%%.*}"
sdks=("$dist"/trialport-c-"$version"-*.tar.gz)
wheels=("$dist"/trialport-"$version"-cp311-abi3-*.whl)
sboms=("$dist"/trialport-"$version".cdx.json)
for f in "$dist/trialport" "${sdks[@]}" "${wheels[@]}" "${sboms[@]}"; do
  [ -f "$f" ] || fail "missing in dist/: $f"
done
[ "${#sdks[@]}" = 1 ] && [ "${#wheels[@]}" = 1 ] || fail "expected one C SDK and one wheel in dist/"
sdk="${sdks[0]}"
wheel="${wheels[0]}"
sbom="${sboms[0]}"
cli="$dist/trialport"
limit=$((40 * 1024 * 1024))

# An ELF file carries no debug sections and no symbol table (stripped), and is under 40 MiB.
released_binary() {
  local file="$1" what="$2" size sections
  size="$(stat -c %s "$file")"
  [ "$size" -lt "$limit" ] || fail "$what is $size bytes: over 40 MiB"
  sections="$(readelf -S -W "$file" | sed -n 's/^ *\[ *[0-9]*\] \([^ ]*\).*/\1/p')"
  if grep -E '^\.(debug_|symtab$)' <<<"$sections"; then fail "$what carries debug info or a symbol table"; fi
  printf '   %-40s %6.1f MiB, stripped, no debug info\n' "$what" "$(awk "BEGIN {print $size / 1048576}")"
}

step "checksums and sizes"
(cd "$dist" && sha256sum --quiet --strict -c SHA256SUMS) || fail "dist/SHA256SUMS does not match dist/"
listed="$(awk '{print $2}' "$dist/SHA256SUMS" | sort | paste -sd' ' -)"
present="$(cd "$dist" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | sort | paste -sd' ' -)"
[ "$listed" = "$present" ] || fail "SHA256SUMS lists [$listed], dist/ holds [$present]"
released_binary "$cli" "trialport (CLI)"

step "C SDK: install $(basename "$sdk") into a new prefix with one command"
prefix="$work/opt/trialport"
mkdir -p "$prefix"
tar -xzf "$sdk" -C "$prefix" --strip-components=1
lib="$prefix/lib"
for f in "libtrialport.so.$version" libtrialport.a include/trialport.h pkgconfig/trialport.pc; do
  case "$f" in include/*) f="../$f" ;; esac
  [ -f "$lib/$f" ] || fail "the SDK has no lib/$f"
done
[ "$(readlink "$lib/libtrialport.so.$major")" = "libtrialport.so.$version" ] \
  || fail "lib/libtrialport.so.$major is not a link to libtrialport.so.$version"
[ "$(readlink "$lib/libtrialport.so")" = "libtrialport.so.$major" ] \
  || fail "lib/libtrialport.so is not a link to libtrialport.so.$major"
for f in LICENSE README.md; do
  [ -f "$prefix/share/doc/trialport/$f" ] || fail "the SDK has no share/doc/trialport/$f"
done
soname="$(readelf -d "$lib/libtrialport.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
[ "$soname" = "libtrialport.so.$major" ] \
  || fail "libtrialport.so.$version has soname '$soname', not libtrialport.so.$major"
released_binary "$lib/libtrialport.so.$version" "libtrialport.so.$version"
others="$(nm -D --defined-only "$lib/libtrialport.so.$version" | awk '{print $NF}' | grep -v '^tp_' || true)"
[ -z "$others" ] || fail "libtrialport.so exports symbols other than tp_*: $others"
static_size="$(stat -c %s "$lib/libtrialport.a")"
printf '   %-40s %6.1f MiB\n' "libtrialport.a" "$(awk "BEGIN {print $static_size / 1048576}")"

step "C SDK: the example, built with pkg-config alone, runs without LD_LIBRARY_PATH"
export PKG_CONFIG_PATH="$lib/pkgconfig"
[ "$(pkg-config --modversion trialport)" = "$version" ] || fail "pkg-config does not find trialport $version"
example="$repo/examples/c/export_csv_dir.c"
cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -O2)
# shellcheck disable=SC2046
gcc "${cflags[@]}" "$example" -o "$work/export_csv_dir" $(pkg-config --cflags --libs trialport)
needed="$(readelf -d "$work/export_csv_dir" | sed -n 's/.*Shared library: \[\(libtrialport[^]]*\)\]/\1/p')"
[ "$needed" = "libtrialport.so.$major" ] || fail "the example needs '$needed', not libtrialport.so.$major"
# shellcheck disable=SC2046
gcc "${cflags[@]}" "$example" -o "$work/export_csv_dir_static" $(pkg-config --cflags trialport) \
  "$(pkg-config --variable=libdir trialport)/libtrialport.a" \
  $(pkg-config --static --libs-only-l trialport | sed 's/-ltrialport//')
if readelf -d "$work/export_csv_dir_static" | grep 'libtrialport'; then
  fail "the static example still needs libtrialport.so"
fi

study="$work/studies/S1"
mkdir -p "$study"
printf 'STUDYID,USUBJID,AGE,SEX,RFSTDTC\nS1,S1-001,63,F,2024-01-05\nS1,S1-002,64,M,2024-02-11\n' >"$study/DM.csv"
printf 'STUDYID,USUBJID,AESEQ,AETERM\nS1,S1-001,1,HEADACHE\nS1,S1-002,1,NAUSEA\nS1,S1-002,2,DIZZINESS\n' \
  >"$study/AE.csv"
for kind in shared static; do
  bin="$work/export_csv_dir"
  [ "$kind" = shared ] || bin="$work/export_csv_dir_static"
  mkdir -p "$work/out-$kind"
  "$bin" "$work/home-$kind" "$work/studies" S1 "$work/out-$kind" >"$work/example-$kind.out" \
    || fail "the C example ($kind library) failed"
  for ds in dm ae; do
    [ -s "$work/out-$kind/$ds.xpt" ] || fail "the C example ($kind library) wrote no $ds.xpt"
    "$cli" convert "$study/${ds^^}.csv" -o "$work/convert-$ds.xpt" >/dev/null
    python3 "$repo/scripts/xpt-cmp.py" "$work/out-$kind/$ds.xpt" "$work/convert-$ds.xpt" \
      || fail "$ds.xpt of the C example ($kind) differs from the released CLI's convert"
    rm -f "$work/convert-$ds.xpt"
  done
  echo "   $kind library: dm.xpt and ae.xpt byte-identical to dist/trialport convert (but for the time stamps)"
done

step "C SDK: the prefix moved elsewhere still builds programs (the .pc paths follow the file)"
mv "$work/opt" "$work/moved"
export PKG_CONFIG_PATH="$work/moved/trialport/lib/pkgconfig"
# shellcheck disable=SC2046
gcc "${cflags[@]}" "$example" -o "$work/export_csv_dir_moved" $(pkg-config --cflags --libs trialport)
mkdir -p "$work/out-moved"
"$work/export_csv_dir_moved" "$work/home-moved" "$work/studies" S1 "$work/out-moved" >/dev/null \
  || fail "the C example built against the moved SDK failed"
python3 "$repo/scripts/xpt-cmp.py" "$work/out-moved/dm.xpt" "$work/out-shared/dm.xpt" || fail "the example built against the moved SDK differs"
unset PKG_CONFIG_PATH

step "Python: $(basename "$wheel") into a new virtual environment, and the Python suite"
# The native module, taken out of the wheel, is a released binary too.
native="$("${PYTHON:-python3}" - "$wheel" "$work/_trialport.so" <<'PY'
import re, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
names = [n for n in wheel.namelist() if re.fullmatch(r"trialport/_trialport[^/]*\.so", n)]
if len(names) != 1:
    sys.exit(f"the wheel has {len(names)} native modules trialport/_trialport*.so, not one")
if not any(re.fullmatch(r"trialport-[^/]*\.dist-info/licenses/LICENSE", n) for n in wheel.namelist()):
    sys.exit("the wheel carries no .dist-info/licenses/LICENSE")
open(sys.argv[2], "wb").write(wheel.read(names[0]))
print(names[0])
PY
)"
released_binary "$work/_trialport.so" "$native (in the wheel)"
TRIALPORT_PY_WHEEL="$wheel" TRIALPORT_PY_VENV="$target/dist-py-venv" bindings-python/test.sh
rm -rf "$target/dist-py-venv" # about 700 MB, made anew by the next run anyway

step "CLI: dist/trialport runs the demo"
"$cli" --version
"$cli" demo --out "$work/demo" --json >"$work/demo.json" || fail "dist/trialport demo failed"
"${PYTHON:-python3}" - "$work/demo.json" <<'PY'
import json, sys
demo = json.load(open(sys.argv[1]))
jobs = demo["jobs"]
if demo["failed"] != 0 or not jobs:
    sys.exit(f"the demo ran {len(jobs)} jobs, {demo['failed']} failed")
print(f"   demo: {len(jobs)} jobs, none failed, {demo['audit_events']} audit events")
PY
"$cli" --home "$work/demo/home" --credential "$(cat "$work/demo/demo.key")" --json audit verify >"$work/verify.json"
grep '"verified": true' "$work/verify.json" >/dev/null || fail "dist/trialport audit verify: $(cat "$work/verify.json")"

step "SBOM: every crate the artifacts link (cargo tree) and the Python packages, with the artifacts' SHA-256"
{
  cargo tree --locked --quiet -e normal --prefix none -f '{p}' -p trialport-cli -p trialport-c
  cargo tree --locked --quiet -e normal --prefix none -f '{p}' -p trialport-python --features extension-module
} >"$work/tree.txt"
"${PYTHON:-python3}" - "$sbom" "$version" "$work/tree.txt" "$cli" "$sdk" "$wheel" <<'PY'
import hashlib, json, os, sys

sbom, version, tree, *artifacts = sys.argv[1:]
doc = json.load(open(sbom, encoding="utf-8"))
if (doc.get("bomFormat"), doc.get("specVersion")) != ("CycloneDX", "1.5"):
    sys.exit("the SBOM is not CycloneDX 1.5")
components = doc["components"]
listed = {(c["name"], c["version"]) for c in components if c.get("purl", "").startswith("pkg:cargo/")}
linked = set()
for line in open(tree, encoding="utf-8"):
    words = line.split()
    if len(words) >= 2 and words[1].startswith("v"):
        linked.add((words[0], words[1][1:]))
missing = sorted(linked - listed)
if not linked or missing:
    sys.exit(f"the SBOM lacks {len(missing)} of the {len(linked)} crates cargo tree lists: {missing[:10]}")
pypi = {c["name"].lower(): c["version"] for c in components if c.get("purl", "").startswith("pkg:pypi/")}
for name in ("pyarrow", "polars", "pandas"):
    if name not in pypi:
        sys.exit(f"the SBOM has no Python package {name}")
if pypi.get("trialport") != version:
    sys.exit(f"the SBOM's Python trialport is {pypi.get('trialport')}, not {version}")
by_ref = {c["bom-ref"]: c for c in components}
for path in artifacts:
    c = by_ref.get("artifact:" + os.path.basename(path))
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if c is None or {"alg": "SHA-256", "content": digest} not in c.get("hashes", []):
        sys.exit(f"the SBOM has no component with the SHA-256 of {os.path.basename(path)}")
print(f"   {len(linked)} linked crates all listed (of {len(listed)}), {len(pypi)} Python packages, 3 artifact hashes")
PY

echo "test-dist: all checks passed"
