#!/usr/bin/env bash
# Client-visible failover stall, measured over many kills:
#
#   bash scripts/failover-stall.sh [primary|ingress] [RUNS]
#
# Builds the hotpair binary, then runs the ignored netns test
# stall_statistics_<victim>: RUNS times (default 20) a duplex lab, a 50 MB
# download at 20 MB/s from the client namespace, SIGKILL of the victim (n1 =
# primary by default, n2 = ingress) once 20 MiB arrived; each download must
# complete with the right SHA-256. The stall of a kill is the longest time the
# client's file did not grow from the kill on (sampled every 10 ms). Prints
# every stall and the median / max. Needs root; about 10 s per kill.
#
# Environment: HOTPAIR_REPL_NET=dedicated for a dedicated replication network,
# HOTPAIR_BIN to test another binary (e.g. target/release/hotpair).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

victim="${1:-primary}"
runs="${2:-20}"
case "$victim" in
    primary | ingress) ;;
    *)
        echo "usage: $0 [primary|ingress] [RUNS]" >&2
        exit 2
        ;;
esac
if [ "$(id -u)" -ne 0 ]; then
    echo "needs root (network namespaces)" >&2
    exit 1
fi

cargo build -p hotpair
HOTPAIR_STALL_RUNS="$runs" cargo test -p hotpair-netns-tests --test "failover_${victim}_crash" \
    -- --ignored --exact "stall_statistics_${victim}" --nocapture 2>&1 |
    tee /dev/stderr | grep -E 'STALL SUMMARY' || {
    echo "stall statistics failed (see above)" >&2
    exit 1
}
