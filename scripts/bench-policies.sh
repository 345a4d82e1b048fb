#!/usr/bin/env bash
# Content policies side by side (DESIGN §3): simplex, and duplex with /static/
# under `logged`, `static` and `sync-static`, each node held to NODE_CPUS CPUs
# (`lab up --node-cpus`): four labs, measured interleaved, ROUNDS rounds,
# medians. Latency at one outstanding request (wrk -c1: mean, p50, p99) for
# each size; peak throughput with CONNS connections for the PEAK_SIZES.
#
#   bash scripts/bench-policies.sh [--out FILE]
#
# Env: NODE_CPUS (0.5), ROUNDS (3), DURATION (5s), CONNS (32),
# SIZES ("1k 5k 50k"), PEAK_SIZES ("5k 50k").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=""
[ "${1:-}" = "--out" ] && OUT="$2"
NODE_CPUS="${NODE_CPUS:-0.5}"; ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-5s}"
CONNS="${CONNS:-32}"; SIZES="${SIZES:-1k 5k 50k}"; PEAK_SIZES="${PEAK_SIZES:-5k 50k}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build --release -q -p hotpair
BIN=target/release/hotpair
CONFIGS="simplex logged static sync-static"
prefix() { case "$1" in simplex) echo hpcp1;; logged) echo hpcp2;; static) echo hpcp3;; sync-static) echo hpcp4;; esac; }
cleanup() { for c in $CONFIGS; do "$BIN" lab down --prefix "$(prefix "$c")" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
"$BIN" lab up --prefix hpcp1 --mode simplex --node-cpus "$NODE_CPUS" >/dev/null
for c in logged static sync-static; do
    "$BIN" lab up --prefix "$(prefix "$c")" --mode duplex --static-policy "$c" --node-cpus "$NODE_CPUS" >/dev/null
done
tmp=$(mktemp -d)
to_us() { # wrk latency like 115.00us / 1.20ms / 2.00s -> microseconds
    python3 -c "import sys;v=sys.argv[1];m={'us':1,'ms':1000,'s':1000000};u=[k for k in ('us','ms','s') if v.endswith(k)][0];print(round(float(v[:-len(u)])*m[u]))" "$1"
}
wrk_run() { # prefix conns size -> "rps mean_us p50_us p99_us"
    local o
    o=$(ip netns exec "$1-client" wrk -t"$([ "$2" -gt 1 ] && echo 2 || echo 1)" -c"$2" -d"$DURATION" --latency "http://10.77.0.10/static/$3.bin")
    if echo "$o" | grep -qE "Socket errors|Non-2xx"; then echo "errors in run ($1 $2 $3): $o" >&2; exit 1; fi
    echo "$(echo "$o" | awk '/Requests\/sec/{print $2}') $(to_us "$(echo "$o" | awk '$1=="Latency"{print $2; exit}')") $(to_us "$(echo "$o" | awk '$1=="50%"{print $2}')") $(to_us "$(echo "$o" | awk '$1=="99%"{print $2}')")"
}
for r in $(seq "$ROUNDS"); do
    echo "round $r/$ROUNDS" >&2
    for s in $SIZES; do for c in $CONFIGS; do wrk_run "$(prefix "$c")" 1 "$s" >> "$tmp/lat.$s.$c"; done; done
    for s in $PEAK_SIZES; do for c in $CONFIGS; do wrk_run "$(prefix "$c")" "$CONNS" "$s" >> "$tmp/peak.$s.$c"; done; done
done
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
col() { awk "{print \$$1}" "$2" | median; }
{
echo "Each node held to $NODE_CPUS CPU; medians of $ROUNDS rounds of $DURATION; /static/ files."
echo
echo "Latency, one outstanding request (mean / p50 / p99, µs):"
echo
echo "| size | simplex | logged | static | sync-static | static/logged mean | static/simplex mean |"
echo "|---|---|---|---|---|---|---|"
for s in $SIZES; do
    row="| $s"
    for c in $CONFIGS; do row="$row | $(col 2 "$tmp/lat.$s.$c") / $(col 3 "$tmp/lat.$s.$c") / $(col 4 "$tmp/lat.$s.$c")"; done
    ls=$(col 2 "$tmp/lat.$s.static"); ll=$(col 2 "$tmp/lat.$s.logged"); lx=$(col 2 "$tmp/lat.$s.simplex")
    echo "$row | $(python3 -c "print(f'{$ls/$ll:.2f}x')") | $(python3 -c "print(f'{$ls/$lx:.2f}x')") |"
done
echo
echo "Peak throughput with $CONNS connections (requests/s):"
echo
echo "| size | simplex | logged | static | sync-static | static/logged |"
echo "|---|---|---|---|---|---|"
for s in $PEAK_SIZES; do
    row="| $s"
    for c in $CONFIGS; do row="$row | $(col 1 "$tmp/peak.$s.$c")"; done
    echo "$row | $(python3 -c "print(f'{$(col 1 "$tmp/peak.$s.static")/$(col 1 "$tmp/peak.$s.logged"):.2f}x')") |"
done
} | tee ${OUT:+"$OUT"}
rm -rf "$tmp"
