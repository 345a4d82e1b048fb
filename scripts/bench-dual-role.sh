#!/usr/bin/env bash
# Thin wrapper over `hotpair bench --only generate`: peak throughput of generate for simplex, duplex and dual-role, CPU time per request (Fig. 2 and 3).
# See docs/benchmarks.md. Needs root.
#
#   bash scripts/bench-dual-role.sh [--out DIR] [other hotpair bench options, e.g. --quick]
#
# Builds target/release/hotpair; the report goes to DIR/report.md
# (default bench-out/bench-dual-role).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p hotpair-cli
args=("$@")
[[ " $* " == *" --out "* ]] || args+=(--out "bench-out/bench-dual-role")
exec target/release/hotpair bench --only generate "${args[@]}"
