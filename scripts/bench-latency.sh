#!/usr/bin/env bash
# Latency of one outstanding request, simplex vs duplex (reply logging), for
# 1 KB, 5 KB and 50 KB files: two labs side by side (separate namespaces),
# measured interleaved with wrk -t1 -c1, ROUNDS rounds, medians reported.
#
#   bash scripts/bench-latency.sh [--out FILE]
#
# Env: ROUNDS (3), DURATION (5s), SIZES ("1k 5k 50k").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=""
[ "${1:-}" = "--out" ] && OUT="$2"
ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-5s}"; SIZES="${SIZES:-1k 5k 50k}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build --release -q -p hotpair
BIN=target/release/hotpair
cleanup() { "$BIN" lab down --prefix hplat1 >/dev/null 2>&1 || true; "$BIN" lab down --prefix hplat2 >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$BIN" lab up --prefix hplat1 --mode simplex >/dev/null
"$BIN" lab up --prefix hplat2 --mode duplex >/dev/null
tmp=$(mktemp -d)
to_us() { # wrk latency like 115.00us / 1.20ms / 2.00s -> microseconds
    python3 -c "import sys;v=sys.argv[1];m={'us':1,'ms':1000,'s':1000000};u=[k for k in ('us','ms','s') if v.endswith(k)][0];print(round(float(v[:-len(u)])*m[u]))" "$1"
}
run() { # prefix size -> "rps p50us p99us"
    local o; o=$(ip netns exec "$1-client" wrk -t1 -c1 -d"$DURATION" --latency "http://10.77.0.10/static/$2.bin")
    if echo "$o" | grep -qE "Socket errors|Non-2xx"; then echo "errors in run: $o" >&2; exit 1; fi
    echo "$(echo "$o" | awk '/Requests\/sec/{print $2}') $(to_us "$(echo "$o" | awk '$1=="50%"{print $2}')") $(to_us "$(echo "$o" | awk '$1=="99%"{print $2}')")"
}
for r in $(seq "$ROUNDS"); do
    for s in $SIZES; do
        for mode in 1 2; do run "hplat$mode" "$s" >> "$tmp/$s.$mode"; done
    done
done
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
{
echo "| size | simplex p50 | simplex p99 | duplex p50 | duplex p99 | simplex req/s | duplex req/s |"
echo "|---|---|---|---|---|---|---|"
for s in $SIZES; do
    sp50=$(awk '{print $2}' "$tmp/$s.1" | median); sp99=$(awk '{print $3}' "$tmp/$s.1" | median)
    dp50=$(awk '{print $2}' "$tmp/$s.2" | median); dp99=$(awk '{print $3}' "$tmp/$s.2" | median)
    srps=$(awk '{print $1}' "$tmp/$s.1" | median); drps=$(awk '{print $1}' "$tmp/$s.2" | median)
    echo "| $s | ${sp50} µs | ${sp99} µs | ${dp50} µs | ${dp99} µs | $srps | $drps |"
done
} | tee ${OUT:+"$OUT"}
rm -rf "$tmp"
