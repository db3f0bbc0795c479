#!/usr/bin/env bash
# Build cost of adopting the attribute: a clean release build of a one-function binary using
# `#[exclusive]` (lockmacro-runtime) versus the same binary using proc-lock's `#[proc_lock]`,
# each in a fresh target directory, alternating, 3 runs each; prints the medians and the ratio.
# Usage: lockmacro-runtime/benches/build_cost.sh   (from anywhere; needs crates.io or a warm cache)
set -euo pipefail
# The crate directory, so that the script also works from the packaged crate.
crate=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/ours/src" "$work/peer/src"
cat > "$work/ours/Cargo.toml" <<TOML
[package]
name = "ours"
version = "0.0.0"
edition = "2021"
[dependencies]
lockmacro-runtime = { path = "$crate" }
[workspace]
TOML
cat > "$work/ours/src/main.rs" <<'RS'
#[lockmacro_runtime::exclusive(name = "build-cost")]
fn main() {}
RS
cat > "$work/peer/Cargo.toml" <<'TOML'
[package]
name = "peer"
version = "0.0.0"
edition = "2021"
[dependencies]
proc-lock = "0.4"
[workspace]
TOML
cat > "$work/peer/src/main.rs" <<'RS'
#[proc_lock::proc_lock(name = "build-cost")]
fn main() {}
RS

for crate in ours peer; do (cd "$work/$crate" && cargo fetch -q); done

build() { # crate -> seconds
  local dir="$work/$1" target="$work/target-$1-$2"
  local start end
  start=$(date +%s.%N)
  (cd "$dir" && CARGO_TARGET_DIR="$target" cargo build -q --release --offline)
  end=$(date +%s.%N)
  rm -rf "$target"
  echo "$end - $start" | bc
}

ours=(); peer=()
for run in 1 2 3; do
  ours+=("$(build ours "$run")")
  peer+=("$(build peer "$run")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
o=$(median "${ours[@]}"); p=$(median "${peer[@]}")
echo "clean release build, median of 3 (jobs: $(nproc) cores)"
echo "  lockmacro-runtime #[exclusive]  ${o} s   (runs: ${ours[*]})"
echo "  proc-lock #[proc_lock]          ${p} s   (runs: ${peer[*]})"
echo "  ratio                           $(echo "scale=2; $o / $p" | bc)x"
