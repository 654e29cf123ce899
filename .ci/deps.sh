#!/usr/bin/env bash
# Dependency policy (deny.toml) and unused dependencies:
#
#   1. cargo deny check bans licenses sources: allowed licences only, no `*`
#      requirements, crates.io as the only source; duplicate versions are
#      warnings (deny.toml lists the remaining ones and why). Advisories are
#      not checked: the RustSec database cannot be downloaded here.
#   2. cargo machete: a dependency declared in a Cargo.toml but never used in
#      that crate's code fails the build.
#
# cargo-deny checks the product workspace; machete reads every Cargo.toml
# under the repository, so bench/ and fuzz/ (separate workspaces) too.
#
# Idempotent: the tools are installed, at the pinned versions, only when the
# installed ones differ. cargo-deny takes a few minutes to build the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
say() { printf '\n=== %s\n' "$*"; }
started=$SECONDS

cargo_deny_version=0.20.2
cargo_machete_version=0.9.2

if [ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $cargo_deny_version" ]; then
  say "installing cargo-deny $cargo_deny_version"
  cargo install --locked "cargo-deny@$cargo_deny_version"
fi
# cargo-machete has no --version; cargo's install record says which is there.
if ! cargo install --list 2>/dev/null | grep -qx "cargo-machete v$cargo_machete_version:"; then
  say "installing cargo-machete $cargo_machete_version"
  cargo install --locked "cargo-machete@$cargo_machete_version"
fi

say "cargo deny check bans licenses sources"
cargo deny --locked check bans licenses sources

say "cargo machete (unused dependencies)"
cargo machete

say "dependency checks passed in $((SECONDS - started)) s"
