#!/usr/bin/env bash
# The heartbeat gap under a flood of TLS handshakes (issue 18): a duplex
# lab serving HTTPS (`lab up --tls`), CLIENTS parallel loops of full
# handshakes from the client namespace (`openssl s_time -new`, one
# handshake per connection, no resumption) for SECONDS. The primary does
# every handshake (on its worker pool), and any link message counts as
# life: the longest gap between two link segments from the primary to the
# owner (captured in the owner's namespace) is how long the owner heard
# nothing, the heartbeat gap. Prints it (and the same without the flood,
# for comparison), the owner's heartbeat misses, and the handshakes done.
# Needs root (and tcpdump, openssl).
#
#   scripts/tls-handshake-flood.sh [CLIENTS] [SECONDS]   (default 8 10)
set -euo pipefail
CLIENTS="${1:-8}"
SECONDS_RUN="${2:-10}"
BIN="${HOTPAIR_BIN:-$(dirname "$0")/../target/debug/hotpair}"
PREFIX="hsf$$"
STATE="/run/hotpair/lab-$PREFIX"
trap '"$BIN" lab down --prefix "$PREFIX" >/dev/null 2>&1 || true' EXIT
"$BIN" lab up --prefix "$PREFIX" --mode duplex --tls >/dev/null 2>&1
owner_status() { "$BIN" status --json --socket "$STATE/n2.sock"; }
misses() { owner_status | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["addresses"][0]["peer"]["heartbeat_misses_total"])'; }
tmp=$(mktemp -d)
clients=()
# The longest gap between link segments from the primary (n1, 10.77.0.1)
# in capture $1 between epoch times $2 and $3, in ms.
gap() {
    tcpdump -tt -n -r "$1" 2>/dev/null |
        awk -v from="$2" -v to="$3" '$1 >= from && $1 <= to {
            if (n++) { d = $1 - p; if (d > m) m = d } p = $1 }
            END { printf "%.1f", m * 1000 }'
}
capture() {
    ip netns exec "$PREFIX-n2" tcpdump -i any -n -s 64 -U -w "$1" \
        'tcp and src host 10.77.0.1 and port 7700' >/dev/null 2>&1 &
    cap_pid=$!
    sleep 0.5
}
capture "$tmp/idle.pcap"
idle_from=$(date +%s.%N)
sleep "$SECONDS_RUN"
idle_to=$(date +%s.%N)
kill -INT "$cap_pid"; wait "$cap_pid" || true
before=$(misses)
capture "$tmp/flood.pcap"
# The flood's window, less its first and last half second (ramping).
flood_from=$(echo "$(date +%s.%N) + 0.5" | bc)
for i in $(seq "$CLIENTS"); do
    ip netns exec "$PREFIX-client" openssl s_time -connect 10.77.0.10:443 -new \
        -CAfile "$STATE/tls/ca.pem" -time "$SECONDS_RUN" >"$tmp/s_time.$i" 2>&1 &
    clients+=($!)
done
flood_to=$(echo "$(date +%s.%N) + $SECONDS_RUN - 0.5" | bc)
for p in "${clients[@]}"; do wait "$p" || true; done
kill -INT "$cap_pid"; wait "$cap_pid" || true
after=$(misses)
total=$(cat "$tmp"/s_time.* | awk '/connections in [0-9.]+ real/ {n+=$1} END {print n+0}')
echo "handshake flood: $CLIENTS clients x ${SECONDS_RUN}s: $total full handshakes ($(( total / SECONDS_RUN ))/s)"
echo "longest gap between link messages from the primary: $(gap "$tmp/flood.pcap" "$flood_from" "$flood_to") ms under the flood, $(gap "$tmp/idle.pcap" "$idle_from" "$idle_to") ms idle (heartbeat every 100 ms, timeout 500 ms); owner's heartbeat misses during the flood: $((after - before))"
rm -rf "$tmp"
