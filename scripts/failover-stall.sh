#!/usr/bin/env bash
# Thin wrapper over `hotpair bench --only stall`: the client-visible failover
# stall, median and max over RUNS kills (default 20) of each victim (primary,
# owner), with SIGKILL and with SIGSTOP (a frozen node: no kernel resets the
# link). A fresh duplex lab per kill, a 50 MiB download at 20 MB/s, every
# download checked by SHA-256. See docs/benchmarks.md. Needs root.
#
#   bash scripts/failover-stall.sh [RUNS] [--out DIR]
#
# (The old first argument primary|owner is accepted and ignored: both
# victims are measured. The netns test stall_statistics_<victim> still exists:
# HOTPAIR_STALL_RUNS=N cargo test -p hotpair-netns-tests --test
# failover_<victim>_crash -- --ignored stall_statistics_<victim> --nocapture.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${1:-}" in primary | owner | ingress) shift ;; esac
runs=20
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then runs="$1"; shift; fi
cargo build --release -q -p hotpair-cli
args=("$@")
[[ " $* " == *" --out "* ]] || args+=(--out bench-out/failover-stall)
exec target/release/hotpair bench --only stall --kills "$runs" "${args[@]}"
