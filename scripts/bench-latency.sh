#!/usr/bin/env bash
# Thin wrapper over `hotpair bench --only latency`: mean/p50/p99 latency at one outstanding request, generate and files, every configuration (Fig. 5).
# See docs/benchmarks.md. Needs root.
#
#   bash scripts/bench-latency.sh [--out DIR] [other hotpair bench options, e.g. --quick]
#
# Builds target/release/hotpair; the report goes to DIR/report.md
# (default bench-out/bench-latency).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p hotpair-cli
args=("$@")
[[ " $* " == *" --out "* ]] || args+=(--out "bench-out/bench-latency")
exec target/release/hotpair bench --only latency "${args[@]}"
