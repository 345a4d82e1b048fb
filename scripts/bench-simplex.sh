#!/usr/bin/env bash
# Thin wrapper over `hotpair bench --only nginx`: simplex and duplex against nginx (kernel TCP, same files, same bridge), 1/5/50 KB, 1 and 32 connections.
# See docs/benchmarks.md. Needs root.
#
#   bash scripts/bench-simplex.sh [--out DIR] [other hotpair bench options, e.g. --quick]
#
# Builds target/release/hotpair; the report goes to DIR/report.md
# (default bench-out/bench-simplex).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p hotpair-cli
args=("$@")
[[ " $* " == *" --out "* ]] || args+=(--out "bench-out/bench-simplex")
exec target/release/hotpair bench --only nginx "${args[@]}"
