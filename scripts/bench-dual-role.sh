#!/usr/bin/env bash
# Peak throughput of `generate` (the paper's CPU-bound dynamic content) for
# simplex (one node), duplex and dual-role, each node held to NODE_CPUS CPUs
# by a cgroup (`lab up --node-cpus`) to emulate separate hosts: three labs
# side by side, measured interleaved, ROUNDS rounds, medians reported, with
# the ratio dual-role / duplex (the paper: 1.67x at 50 KB; bound 2x).
#
#   bash scripts/bench-dual-role.sh [--out FILE]
#
# Env: NODE_CPUS (0.5), ROUNDS (3), DURATION (8s), CONNS (32: total
# connections; dual-role splits them over its two addresses, as round-robin
# DNS would), SIZES ("5000 50000").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=""
[ "${1:-}" = "--out" ] && OUT="$2"
NODE_CPUS="${NODE_CPUS:-0.5}"; ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-8s}"
CONNS="${CONNS:-32}"; SIZES="${SIZES:-5000 50000}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build --release -q -p hotpair
BIN=target/release/hotpair
cleanup() { for p in hpdr1 hpdr2 hpdr3; do "$BIN" lab down --prefix "$p" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
"$BIN" lab up --prefix hpdr1 --mode simplex --node-cpus "$NODE_CPUS" >/dev/null
"$BIN" lab up --prefix hpdr2 --mode duplex --node-cpus "$NODE_CPUS" >/dev/null
"$BIN" lab up --prefix hpdr3 --mode dual-role --node-cpus "$NODE_CPUS" >/dev/null
tmp=$(mktemp -d)
wrk_rps() { # prefix address connections size -> requests/s (fails on errors)
    local o
    o=$(ip netns exec "$1-client" wrk -t2 -c"$3" -d"$DURATION" "http://$2/non-deterministic/bench?size=$4")
    if echo "$o" | grep -qE "Socket errors|Non-2xx"; then echo "errors in run ($1 $2): $o" >&2; exit 1; fi
    echo "$o" | awk '/Requests\/sec/{print $2}'
}
for r in $(seq "$ROUNDS"); do
    for s in $SIZES; do
        wrk_rps hpdr1 10.77.0.10 "$CONNS" "$s" >> "$tmp/$s.simplex"
        wrk_rps hpdr2 10.77.0.10 "$CONNS" "$s" >> "$tmp/$s.duplex"
        # Both addresses at once, half the clients each.
        half=$((CONNS / 2))
        wrk_rps hpdr3 10.77.0.10 "$half" "$s" > "$tmp/a" &
        wrk_rps hpdr3 10.77.0.11 "$half" "$s" > "$tmp/b"
        wait
        python3 -c "import sys;print(float(open(sys.argv[1]).read())+float(open(sys.argv[2]).read()))" "$tmp/a" "$tmp/b" >> "$tmp/$s.dual"
    done
done
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
{
echo "generate, peak requests/s with $CONNS connections, each node held to $NODE_CPUS CPU (medians of $ROUNDS rounds of $DURATION)"
echo
echo "| size | simplex (1 node) | duplex | dual-role | dual-role / duplex | dual-role / simplex |"
echo "|---|---|---|---|---|---|"
for s in $SIZES; do
    a=$(median < "$tmp/$s.simplex"); b=$(median < "$tmp/$s.duplex"); c=$(median < "$tmp/$s.dual")
    echo "| $((s / 1000)) KB | $a | $b | $c | $(python3 -c "print(f'{$c/$b:.2f}x')") | $(python3 -c "print(f'{$c/$a:.2f}x')") |"
done
} | tee ${OUT:+"$OUT"}
rm -rf "$tmp"
