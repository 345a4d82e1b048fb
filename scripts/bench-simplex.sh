#!/usr/bin/env bash
# Simplex benchmark: one hotpair node against nginx, same lab, same client.
#
#   sudo bash scripts/bench-simplex.sh [--out FILE]
#
# 1. installs wrk and nginx if missing, builds target/release/hotpair,
# 2. `hotpair lab up --prefix hpbench`, then adds namespace hpbench-ng with a
#    veth ng0 (10.77.0.20/24) whose peer `ng` joins br0 in hpbench-sw, and
#    runs nginx there (1 worker, sendfile, tcp_nodelay, no access log) on the
#    lab's docroot,
# 3. for 1k/5k/50k files and 1/32 connections runs
#    `wrk -t1 -c<C> -d5s --latency` from hpbench-client against hotpair
#    (10.77.0.10) and nginx (10.77.0.20) back to back, ROUNDS rounds (the
#    order of the two servers alternates from round to round),
# 4. prints a Markdown table of the per-cell medians (and writes it to FILE
#    with --out).
#
# Exits non-zero if any run had socket errors or non-2xx/3xx responses (or
# produced no result). Everything it creates (nginx, hpbench-ng, the lab, the
# temp dir) is removed on exit. Needs root.
#
# Environment (for quick checks; the defaults are the benchmark):
#   ROUNDS=3  DURATION=5s  SIZES="1k 5k 50k"  CONNS="1 32"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/sbin:/sbin"

PREFIX=hpbench
NG_NS="$PREFIX-ng"
SW_NS="$PREFIX-sw"
CLIENT_NS="$PREFIX-client"
HP_ADDR=10.77.0.10
NG_ADDR=10.77.0.20
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5s}"
SIZES="${SIZES:-1k 5k 50k}"
CONNS="${CONNS:-1 32}"
WRK_TIMEOUT=30 # hard bound per wrk run, seconds
OUT=""
BIN=target/release/hotpair

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="${2:?--out needs a file}"; shift 2 ;;
        --out=*) OUT="${1#--out=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"

# ---- 1. tools -----------------------------------------------------------------
apt_install() { # apt_install PKG... ; `apt-get update` only when needed
    if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ]; then
        apt-get update -qq
    fi
    if ! apt-get install -y -qq --no-install-recommends "$@"; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "$@"
    fi
}
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v curl >/dev/null 2>&1 || missing+=(curl) # pre-flight content check
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    # Installing nginx must not start a system nginx: block service starts
    # for the duration of the install (unless a policy is already in place).
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    pkgs=()
    for m in "${missing[@]}"; do
        [ "$m" = nginx ] || pkgs+=("$m")
    done
    rc=0
    if [ "${#pkgs[@]}" -gt 0 ]; then apt_install "${pkgs[@]}" || rc=$?; fi
    if [ "$rc" -eq 0 ] && ! command -v nginx >/dev/null 2>&1; then
        apt_install nginx-light || apt_install nginx || rc=$?
    fi
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die "package installation failed"
fi
command -v wrk >/dev/null && command -v nginx >/dev/null || die "wrk/nginx still missing"

# ---- build --------------------------------------------------------------------
log "cargo build --release -p hotpair"
cargo build --release -p hotpair >&2
[ -x "$BIN" ] || die "$BIN not built"

# ---- 2. lab + nginx namespace, torn down on exit ------------------------------
TMP="$(mktemp -d /tmp/hpbench.XXXXXX)"
NGINX_PID=""
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -TERM "$NGINX_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
    fi
    ip netns del "$NG_NS" 2>/dev/null # also removes the veth pair
    "$BIN" lab down --prefix "$PREFIX" >/dev/null 2>&1 \
        || echo "warning: 'hotpair lab down --prefix $PREFIX' failed" >&2
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of an interrupted earlier run (lab up removes its own).
ip netns del "$NG_NS" 2>/dev/null || true

log "hotpair lab up --prefix $PREFIX"
"$BIN" lab up --prefix "$PREFIX" >&2
DOCROOT="/run/hotpair/lab-$PREFIX/docroot"
[ -f "$DOCROOT/1k.bin" ] || die "no docroot at $DOCROOT"

log "namespace $NG_NS: veth ng0 $NG_ADDR/24, peer ng on br0 in $SW_NS"
ip netns add "$NG_NS"
ip netns exec "$NG_NS" sh -c 'for c in all default; do
    f=/proc/sys/net/ipv6/conf/$c/disable_ipv6; [ -e $f ] && echo 1 > $f; done; true'
ip -n "$NG_NS" link set lo up
ip -n "$SW_NS" link add ng type veth peer name ng0 netns "$NG_NS"
ip -n "$SW_NS" link set ng master br0 up
ip -n "$NG_NS" addr add "$NG_ADDR/24" dev ng0
ip -n "$NG_NS" link set ng0 up

cat > "$TMP/nginx.conf" <<EOF
# hotpair's stack is one thread: give nginx one worker too.
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000000;
    keepalive_timeout 65s;
    client_body_temp_path $TMP/client_body;
    proxy_temp_path $TMP/proxy;
    server {
        listen $NG_ADDR:80;
        location /static/ { alias $DOCROOT/; }
    }
}
EOF
log "starting nginx in $NG_NS"
ip netns exec "$NG_NS" nginx -p "$TMP" -e "$TMP/error.log" -c "$TMP/nginx.conf" \
    >"$TMP/nginx.out" 2>&1 &
NGINX_PID=$!

# Both servers must serve (and serve the same bytes) before measuring.
fetch() { # fetch ADDR PATH -> body on stdout
    ip netns exec "$CLIENT_NS" curl -sf --max-time 10 -o - "http://$1$2"
}
for _ in $(seq 50); do
    fetch "$NG_ADDR" /static/1k.bin >/dev/null 2>&1 && break
    kill -0 "$NGINX_PID" 2>/dev/null || { cat "$TMP/nginx.out" "$TMP/error.log" >&2 2>/dev/null; die "nginx exited"; }
    sleep 0.1
done
for size in $SIZES; do
    want="$(sha256sum < "$DOCROOT/$size.bin" | cut -d' ' -f1)"
    for addr in "$HP_ADDR" "$NG_ADDR"; do
        got="$(fetch "$addr" "/static/$size.bin" | sha256sum | cut -d' ' -f1)"
        [ "$got" = "$want" ] || die "http://$addr/static/$size.bin: status not 2xx or body differs from the docroot file"
    done
done
log "both servers serve identical bytes for: $SIZES"

# ---- 3. measure -----------------------------------------------------------------
# parse_wrk FILE -> "rps p50_us p99_us sock_errors non2xx" ("- - - 1 0" if no result)
parse_wrk() {
    awk '
        function us(v) {
            if (v ~ /us$/) return v + 0;
            if (v ~ /ms$/) return (v + 0) * 1000;
            if (v ~ /m$/)  return (v + 0) * 60e6;
            if (v ~ /s$/)  return (v + 0) * 1e6;
            return v + 0;
        }
        /^Requests\/sec:/ { rps = $2 }
        /^ +50% / { p50 = us($2) }
        /^ +99% / { p99 = us($2) }
        /Socket errors:/ { gsub(",", ""); sock = $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { non = $NF }
        END {
            if (rps == "" || p50 == "" || p99 == "") { print "- - - 1 0"; exit }
            printf "%s %s %s %d %d\n", rps, p50, p99, sock + 0, non + 0
        }' "$1"
}

median() { # median NUMBER... (lower median for an even count)
    printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else print a[int((NR + 1) / 2)] }'
}

fmt_lat() { # microseconds -> human
    awk -v u="$1" 'BEGIN {
        if (u == "-") print "-";
        else if (u < 1000) printf "%.0fus\n", u;
        else if (u < 1e6) printf "%.2fms\n", u / 1000;
        else printf "%.2fs\n", u / 1e6 }'
}

mkdir -p "$TMP/runs"
runs_total=0
for size in $SIZES; do for c in $CONNS; do runs_total=$((runs_total + 2 * ROUNDS)); done; done
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $runs_total wrk runs of $DURATION"

run=0
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="hotpair nginx"; else order="nginx hotpair"; fi
    for size in $SIZES; do
        for c in $CONNS; do
            for srv in $order; do
                if [ "$srv" = hotpair ]; then addr="$HP_ADDR"; else addr="$NG_ADDR"; fi
                run=$((run + 1))
                f="$TMP/runs/$srv-$size-c$c-r$round.txt"
                timeout -k 5 "$WRK_TIMEOUT" ip netns exec "$CLIENT_NS" \
                    wrk -t1 -c"$c" -d"$DURATION" --latency "http://$addr/static/$size.bin" \
                    >"$f" 2>&1 || echo "(wrk exit status $?)" >>"$f"
                read -r rps p50 p99 sock non < <(parse_wrk "$f")
                printf '%s %s %s %s %s %s %s %s\n' "$srv" "$size" "$c" "$round" \
                    "$rps" "$p50" "$p99" "$((sock + non))" >>"$TMP/results"
                printf '    [%2d/%d] round %d %-7s %-4s c=%-2s %10s req/s  p50 %-8s p99 %-8s errors %s\n' \
                    "$run" "$runs_total" "$round" "$srv" "$size" "$c" "$rps" \
                    "$(fmt_lat "$p50")" "$(fmt_lat "$p99")" "$((sock + non))" >&2
                if [ "$((sock + non))" -gt 0 ] || [ "$rps" = "-" ]; then
                    echo "    --- wrk output ($srv $size c=$c round $round) ---" >&2
                    sed 's/^/    | /' "$f" >&2
                fi
            done
        done
    done
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 4. report ------------------------------------------------------------------
fmt_rps() { awk -v r="$1" 'BEGIN { if (r == "-") print "-"; else printf "%.0f\n", r }'; }
field() { # field SERVER SIZE CONNS COLUMN -> values over the rounds
    awk -v s="$1" -v z="$2" -v c="$3" -v k="$4" '$1 == s && $2 == z && $3 == c { print $k }' "$TMP/results"
}
table="$TMP/table.md"
{
    echo "| size | conns | hotpair req/s | nginx req/s | ratio | hotpair p50/p99 | nginx p50/p99 | errors |"
    echo "|---|---|---|---|---|---|---|---|"
    for size in $SIZES; do
        for c in $CONNS; do
            # shellcheck disable=SC2046
            hp_rps="$(median $(field hotpair "$size" "$c" 5))"
            ng_rps="$(median $(field nginx "$size" "$c" 5))"
            hp_p50="$(median $(field hotpair "$size" "$c" 6))"
            hp_p99="$(median $(field hotpair "$size" "$c" 7))"
            ng_p50="$(median $(field nginx "$size" "$c" 6))"
            ng_p99="$(median $(field nginx "$size" "$c" 7))"
            hp_err="$(field hotpair "$size" "$c" 8 | awk '{ s += $1 } END { print s + 0 }')"
            ng_err="$(field nginx "$size" "$c" 8 | awk '{ s += $1 } END { print s + 0 }')"
            ratio="$(awk -v a="$hp_rps" -v b="$ng_rps" 'BEGIN {
                if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }')"
            if [ "$hp_err" -eq 0 ] && [ "$ng_err" -eq 0 ]; then errs=0
            else errs="hotpair $hp_err, nginx $ng_err"; fi
            printf '| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s |\n' \
                "$size" "$c" "$(fmt_rps "$hp_rps")" "$(fmt_rps "$ng_rps")" "$ratio" \
                "$(fmt_lat "$hp_p50")" "$(fmt_lat "$hp_p99")" \
                "$(fmt_lat "$ng_p50")" "$(fmt_lat "$ng_p99")" "$errs"
        done
    done
} >"$table"

cat "$table"
if [ -n "$OUT" ]; then
    cp "$table" "$OUT"
    log "table written to $OUT"
fi

bad="$(awk '$8 != 0 || $5 == "-"' "$TMP/results" | wc -l)"
if [ "$bad" -gt 0 ]; then
    echo "FAIL: $bad of $runs_total runs had socket errors, non-2xx/3xx responses or no result" >&2
    exit 1
fi
log "all $runs_total runs clean (no socket errors, no non-2xx/3xx)"
