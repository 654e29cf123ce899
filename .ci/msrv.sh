#!/usr/bin/env bash
# Honest MSRV: the workspace's `rust-version` must be at least every locked
# package's own `rust-version`. Cargo.lock decides which versions build, so a
# dependency that declares a newer Rust than the workspace makes the promise
# false (cargo's MSRV-aware resolver only picks versions when resolving; it
# does not stop a lock from holding newer ones).
#
# Checked: the product workspace and bench/ (its own workspace and lock), each
# with `cargo metadata --locked --all-features`, i.e. every package in the
# resolved graph for every target platform and feature. Not checked: fuzz/,
# which builds only with nightly-only flags (cargo-fuzz's -Zsanitizer, through
# RUSTC_BOOTSTRAP=1 in .ci/run), so `rust-version` promises nothing for it,
# and whose lock `cargo fuzz build` refreshes (it is not run --locked).
#
# Fails listing the packages that need a newer Rust than the workspace says.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n=== %s\n' "$*"; }
started=$SECONDS

if ! command -v python3 >/dev/null 2>&1; then
  say "installing python3"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3
fi

# The workspace's promise, from [workspace.package].
msrv=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c '
import json, sys
versions = {p["rust_version"] for p in json.load(sys.stdin)["packages"] if p.get("rust_version")}
if len(versions) != 1:
    sys.exit(f"msrv: expected one rust-version across the workspace members, found {sorted(versions)}")
print(versions.pop())')
say "MSRV check: workspace rust-version is $msrv"

check() {
  local dir=$1 label=$2
  (
    cd "$dir"
    cargo metadata --format-version 1 --locked --all-features |
      python3 -c '
import json, sys
msrv, where = sys.argv[1], sys.argv[2]
def key(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))
meta = json.load(sys.stdin)
resolved = {node["id"] for node in meta["resolve"]["nodes"]}
needs = sorted(
    ((p["rust_version"], p["name"], p["version"])
     for p in meta["packages"]
     if p["id"] in resolved and p.get("rust_version") and key(p["rust_version"]) > key(msrv)),
    key=lambda row: (key(row[0]), row[1]), reverse=True)
declared = [p["rust_version"] for p in meta["packages"] if p["id"] in resolved and p.get("rust_version")]
highest = max(declared, key=key, default="none")
print(f"{where}: {len(resolved)} locked packages, highest rust-version {highest}")
if needs:
    print(f"{where}: these need a newer Rust than the workspace rust-version {msrv}:", file=sys.stderr)
    for rust, name, version in needs:
        print(f"  {name} {version}: rust-version {rust}", file=sys.stderr)
    sys.exit(1)' "$msrv" "$label"
  )
}

status=0
check . "the workspace (Cargo.lock)" || status=1
check bench "bench (bench/Cargo.lock)" || status=1
if [ $status -ne 0 ]; then
  echo "msrv: raise rust-version in Cargo.toml (and the README's toolchain line), or pin the packages above to older versions" >&2
  exit 1
fi
say "MSRV check passed in $((SECONDS - started)) s"
