#!/usr/bin/env bash
# Thin wrapper over `hotpair bench --only files,latency,openloop`: logged, static and sync-static side by side: peak throughput, latency, the fixed-rate distribution (Fig. 4, 5, 6).
# See docs/benchmarks.md. Needs root.
#
#   bash scripts/bench-policies.sh [--out DIR] [other hotpair bench options, e.g. --quick]
#
# Builds target/release/hotpair; the report goes to DIR/report.md
# (default bench-out/bench-policies).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p hotpair-cli
args=("$@")
[[ " $* " == *" --out "* ]] || args+=(--out "bench-out/bench-policies")
exec target/release/hotpair bench --only files,latency,openloop "${args[@]}"
