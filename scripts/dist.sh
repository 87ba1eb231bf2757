#!/usr/bin/env bash
# Builds the release artifacts of trialport into dist/ (replacing what was there):
#   trialport                                  the CLI, one executable for the build's platform
#   trialport-c-VERSION-TRIPLE.tar.gz          the C SDK: lib/libtrialport.so.VERSION with its .so.0 and .so links,
#                                              lib/libtrialport.a, lib/pkgconfig/trialport.pc (relocatable),
#                                              include/trialport.h, share/doc/trialport/{LICENSE,README.md}
#   trialport-VERSION-cp311-abi3-*.whl         the Python package, one wheel for CPython 3.11 and later (abi3)
#   trialport-VERSION.cdx.json                 CycloneDX SBOM: the Rust crates in each artifact, the Python packages
#   SHA256SUMS                                 sha256sum -c SHA256SUMS checks every file above
# All are built with the `dist` cargo profile (Cargo.toml: no debug info, stripped, thin LTO).
# scripts/test-dist.sh tests them as installed; scripts/test-all.sh runs both.
#
# Usage: scripts/dist.sh            (from anywhere)
# Needs: cargo, python3 with venv (PyPI), tar, gzip, sha256sum. Installs into target/: maturin and cyclonedx-bom
# (a virtual environment, target/dist-tools) and cargo-cyclonedx (compiled once, target/tools).
# Environment: CARGO_TARGET_DIR; SOURCE_DATE_EPOCH (the time in the tarball and the SBOM; default: the time of the
# last commit, so that the same commit gives the same tarball). It is passed to the packaging steps only: the C
# build scripts (cc) rebuild when it changes, and with them every crate above sqlite and zstd.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
dist="$repo/dist"
profile=dist
step() { printf -- '-- dist: %s (at %d s)\n' "$*" "$SECONDS"; }
fail() {
  echo "dist: $*" >&2
  exit 1
}
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
for tool in cargo rustc "${PYTHON:-python3}" tar gzip sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is needed and missing"
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)"
major="${version%%.*}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
[ -n "$version" ] && [ -n "$triple" ] || fail "cannot read the version from Cargo.toml or the host from rustc -vV"
epoch="${SOURCE_DATE_EPOCH:-}"
if [ -z "$epoch" ]; then epoch="$(git log -1 --format=%ct 2>/dev/null || date +%s)"; fi
soname="libtrialport.so.$major"
sdk_name="trialport-c-$version-$triple"
stage="$target/dist-stage"
rm -rf "$dist" "$stage"
mkdir -p "$dist" "$stage"

step "tools: maturin and cyclonedx-bom (target/dist-tools), cargo-cyclonedx 0.5 (target/tools)"
tools_venv="$target/dist-tools"
if [ ! -x "$tools_venv/bin/python" ]; then "${PYTHON:-python3}" -m venv "$tools_venv"; fi
"$tools_venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2" "cyclonedx-bom>=7,<8"
cyclonedx_root="$target/tools"
cargo_cyclonedx="$cyclonedx_root/bin/cargo-cyclonedx"
if ! "$cargo_cyclonedx" cyclonedx --version 2>/dev/null | grep -E ' 0\.5\.[0-9]+$' >/dev/null; then
  # --debug: an unoptimised build compiles faster, and the tool runs for about a second.
  cargo install cargo-cyclonedx --version '~0.5.9' --locked --debug --root "$cyclonedx_root" --quiet
fi

step "CLI and C library (cargo profile $profile, soname $soname)"
TRIALPORT_C_SONAME="$soname" cargo build --locked --profile "$profile" -p trialport-cli -p trialport-c
out="$target/$profile"

step "CLI"
install -m 0755 "$out/trialport" "$dist/trialport"
"$dist/trialport" --version >/dev/null || fail "the built CLI does not run"

step "C SDK ($sdk_name.tar.gz)"
sdk="$stage/$sdk_name"
mkdir -p "$sdk/lib/pkgconfig" "$sdk/include" "$sdk/share/doc/trialport"
install -m 0755 "$out/libtrialport.so" "$sdk/lib/libtrialport.so.$version"
ln -s "libtrialport.so.$version" "$sdk/lib/$soname"
ln -s "$soname" "$sdk/lib/libtrialport.so"
install -m 0644 "$out/libtrialport.a" "$sdk/lib/libtrialport.a"
install -m 0644 bindings-c/include/trialport.h "$sdk/include/trialport.h"
sed -e "s|@VERSION@|$version|" bindings-c/trialport.pc.in >"$sdk/lib/pkgconfig/trialport.pc"
chmod 0644 "$sdk/lib/pkgconfig/trialport.pc"
install -m 0644 LICENSE "$sdk/share/doc/trialport/LICENSE"
install -m 0644 bindings-c/README.md "$sdk/share/doc/trialport/README.md"
install -m 0644 examples/c/export_csv_dir.c "$sdk/share/doc/trialport/export_csv_dir.c"
# Deterministic: names sorted, owner root, every time SOURCE_DATE_EPOCH, no name or time in the gzip header.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  -C "$stage" -cf - "$sdk_name" | gzip -9 -n >"$dist/$sdk_name.tar.gz"

step "Python wheel (abi3, cargo profile $profile)"
"$tools_venv/bin/maturin" build --quiet --locked --profile "$profile" -m bindings-python/Cargo.toml \
  -i "$tools_venv/bin/python" --out "$stage/wheel"
wheels=("$stage"/wheel/trialport-"$version"-cp311-abi3-*.whl)
[ "${#wheels[@]}" = 1 ] && [ -f "${wheels[0]}" ] || fail "expected one abi3 wheel in $stage/wheel, found: ${wheels[*]}"
install -m 0644 "${wheels[0]}" "$dist/"
wheel="$dist/$(basename "${wheels[0]}")"

step "SBOM (CycloneDX 1.5): the Rust crates of each artifact (cargo-cyclonedx), the Python packages (cyclonedx-py)"
sbom="$dist/trialport-$version.cdx.json"
boms="$stage/sbom"
mkdir -p "$boms"
# cargo-cyclonedx writes <name>.json beside every Cargo.toml of the workspace: take the three shipped, leave none.
bom_name="trialport-dist-sbom"
remove_tree_boms() { find "$repo" -path "$target" -prune -o -name "$bom_name.json" -type f -exec rm -f {} +; }
trap remove_tree_boms EXIT
SOURCE_DATE_EPOCH="$epoch" "$cargo_cyclonedx" cyclonedx --quiet --format json --spec-version 1.5 \
  --target "$triple" --no-build-deps --override-filename "$bom_name" --manifest-path Cargo.toml
for crate in cli:trialport-cli bindings-c:trialport-c bindings-python:trialport-python; do
  [ -f "${crate%%:*}/$bom_name.json" ] || fail "cargo-cyclonedx wrote no SBOM for ${crate#*:}"
  mv "${crate%%:*}/$bom_name.json" "$boms/${crate#*:}.json"
done
remove_tree_boms
# The Python side: the wheel with its optional extras, installed into a new environment that then holds nothing else.
pyenv="$stage/sbom-python"
"${PYTHON:-python3}" -m venv "$pyenv"
"$pyenv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel[pyarrow,polars,pandas]"
"$pyenv/bin/python" -m pip uninstall --quiet --yes pip setuptools 2>/dev/null \
  || "$pyenv/bin/python" -m pip uninstall --quiet --yes pip
SOURCE_DATE_EPOCH="$epoch" "$tools_venv/bin/cyclonedx-py" environment --sv 1.5 --output-reproducible --mc-type library \
  -o "$boms/python.json" "$pyenv/bin/python"
# One document: the release, its three artifacts (with their SHA-256), each artifact's Rust package and crates, and
# the Python packages; checked against the CycloneDX 1.5 schema.
SOURCE_DATE_EPOCH="$epoch" "$tools_venv/bin/python" - "$boms" "$sbom" "$version" "$repo" \
  "$dist/trialport" "$dist/$sdk_name.tar.gz" "$wheel" <<'PY'
import hashlib, json, os, sys
from datetime import datetime, timezone

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

boms, out, version, repo, cli, sdk, wheel = sys.argv[1:]


def load(name):
    with open(os.path.join(boms, name), encoding="utf-8") as f:
        # Local packages are named by their path on the build machine: make it relative to the source tree.
        return json.loads(f.read().replace("file://" + repo, "file://."))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


components, dependencies, tools = {}, {}, {}


def add(bom):
    for c in bom.get("components", []):
        components.setdefault(c["bom-ref"], c)
    for d in bom.get("dependencies", []):
        dependencies.setdefault(d["ref"], set()).update(d.get("dependsOn", []))
    t = bom.get("metadata", {}).get("tools", {})
    for c in t.get("components", []) if isinstance(t, dict) else t:  # 1.5 allows a list of the older tool form
        tools[c["name"]] = {"type": "application", "name": c["name"], "version": c.get("version", "")}


rust = {}
for package in ("trialport-cli", "trialport-c", "trialport-python"):
    bom = load(package + ".json")
    top = bom["metadata"]["component"]
    components.setdefault(top["bom-ref"], top)
    rust[package] = top["bom-ref"]
    add(bom)
python = load("python.json")
add(python)
# The wheel was installed from a file, so cyclonedx-py gives it no package URL: it is the one PyPI will serve.
pypi = [ref for ref, c in components.items() if (c["name"], c.get("version")) == ("trialport", version)]
if len(pypi) != 1:
    sys.exit(f"the Python SBOM has {len(pypi)} trialport {version} packages, not one")
components[pypi[0]].setdefault("purl", f"pkg:pypi/trialport@{version}")

release = f"trialport-release@{version}"
artifacts = []
for path, kind, package, extra in (
    (cli, "application", "trialport-cli", []),
    (sdk, "library", "trialport-c", []),
    (wheel, "library", "trialport-python", pypi),
):
    ref = f"artifact:{os.path.basename(path)}"
    components[ref] = {
        "type": kind,
        "bom-ref": ref,
        "name": os.path.basename(path),
        "version": version,
        "hashes": [{"alg": "SHA-256", "content": sha256(path)}],
        "licenses": [{"license": {"id": "Apache-2.0"}}],
    }
    dependencies[ref] = {rust[package], *extra}
    artifacts.append(ref)
dependencies[release] = set(artifacts)
known = set(components) | {release}
dangling = sorted({r for r, d in dependencies.items() for r in (r, *d)} - known)
if dangling:
    sys.exit(f"the SBOM's dependencies name components it does not list: {dangling[:5]}")

epoch = int(os.environ["SOURCE_DATE_EPOCH"])
doc = {
    "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
    "bomFormat": "CycloneDX",
    "specVersion": "1.5",
    "version": 1,
    "metadata": {
        "timestamp": datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tools": {"components": sorted(tools.values(), key=lambda c: c["name"])},
        "component": {
            "type": "application",
            "bom-ref": release,
            "name": "trialport",
            "version": version,
            "description": "trialport release: the CLI, the C SDK and the Python wheel",
            "licenses": [{"license": {"id": "Apache-2.0"}}],
        },
    },
    "components": sorted(components.values(), key=lambda c: c["bom-ref"]),
    "dependencies": [{"ref": r, "dependsOn": sorted(d)} for r, d in sorted(dependencies.items())],
}
text = json.dumps(doc, indent=1, sort_keys=False) + "\n"
errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
if errors:
    sys.exit(f"the merged SBOM is not valid CycloneDX 1.5: {errors}")
for leak in (repo, os.path.expanduser("~") + "/"):
    if leak in text:
        sys.exit(f"the SBOM names a path of the build machine: {leak}")
with open(out, "w", encoding="utf-8") as f:
    f.write(text)
print(f"   {len(components)} components: 3 artifacts, "
      f"{sum(1 for c in components.values() if c.get('purl', '').startswith('pkg:cargo/'))} Rust crates, "
      f"{sum(1 for c in components.values() if c.get('purl', '').startswith('pkg:pypi/'))} Python packages")
PY

step "SHA256SUMS"
(cd "$dist" && sha256sum -- trialport "$sdk_name.tar.gz" "$(basename "$wheel")" "$(basename "$sbom")" >SHA256SUMS)

step "sizes"
for f in "$dist"/*; do printf '%10s  %s\n' "$(du -k --apparent-size "$f" | cut -f1)K" "$(basename "$f")"; done
printf '%10s  %s\n' "$(du -k --apparent-size "$out/libtrialport.so" | cut -f1)K" "(in the SDK) libtrialport.so.$version"
printf '%10s  %s\n' "$(du -k --apparent-size "$out/libtrialport.a" | cut -f1)K" "(in the SDK) libtrialport.a"
# The staging directory holds a copy of everything and the SBOM's Python environment (about 600 MB).
rm -rf "$stage"
echo "dist: built into dist/"
