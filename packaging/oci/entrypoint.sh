#!/bin/sh
# hotpair's container entrypoint (packaging/oci/): gives the node the
# container's LAN, then runs it as PID 1.
#
#   docker run --cap-add NET_ADMIN --device /dev/net/tun \
#       -v ./n1.toml:/etc/hotpair/node.toml:ro -v /srv/www:/srv/www:ro IMAGE
#
# With no arguments, or arguments starting with `node`, it first builds what
# docs/operations.md ("Give hotpair the LAN") builds on a host, inside the
# container's network namespace:
#
#   - a bridge ($HOTPAIR_BRIDGE, default br-lan) holding the container's
#     interface ($HOTPAIR_LAN_IF, default eth0) and the node's TAP,
#   - the interface's IPv4 addresses and default route moved to the bridge
#     (the replication link runs between these kernel addresses),
#   - the TAP (vnet_hdr), named as the config's `tap = "..."` line says
#     (else $HOTPAIR_TAP, default hotpair0),
#
# then execs `hotpair node --config $HOTPAIR_CONFIG` (default
# /etc/hotpair/node.toml), so `docker stop` (SIGTERM) reaches the node: it
# hands its connections to its peer (Leaving) and exits. Any other
# arguments run hotpair as given: `docker run IMAGE pair …`, `docker exec
# CONTAINER hotpair status`.
#
# Idempotent: a bridge that exists already is left as it is. Where the TAP
# is in a bridge already (the host made it: `--network host` on a machine
# given the LAN as docs/operations.md shows), or with HOTPAIR_SETUP_NET=0,
# the network is left alone; an interface that is already some bridge's
# port is never taken.
set -eu

CONFIG="${HOTPAIR_CONFIG:-/etc/hotpair/node.toml}"
BR="${HOTPAIR_BRIDGE:-br-lan}"
LAN="${HOTPAIR_LAN_IF:-eth0}"

say() { echo "hotpair-entrypoint: $*" >&2; }
die() { say "$*"; exit 1; }

if [ "$#" -gt 0 ] && [ "$1" != node ]; then
    exec /usr/bin/hotpair "$@"
fi
if [ "$#" -eq 0 ]; then
    set -- node --config "$CONFIG"
fi

# The config given on the command line, if any.
prev=
for a in "$@"; do
    [ "$prev" = --config ] && CONFIG="$a"
    prev="$a"
done
[ -r "$CONFIG" ] || die "no config at $CONFIG: mount one (-v ./n1.toml:$CONFIG:ro; hotpair pair writes them)"

# The TAP's name: the config's `tap = "…"` line (as `hotpair pair` writes it).
TAP=
while IFS= read -r line; do
    case "$line" in
        'tap = "'*'"'*)
            t="${line#tap = \"}"
            TAP="${t%%\"*}"
            break
            ;;
    esac
done < "$CONFIG"
TAP="${TAP:-${HOTPAIR_TAP:-hotpair0}}"

# --check before touching the network: a bad config is named and nothing changes.
/usr/bin/hotpair node --config "$CONFIG" --check >/dev/null

[ -c /dev/net/tun ] || die "/dev/net/tun is missing: run with --device /dev/net/tun"

# Given the LAN already (--network host on a machine set up as in
# docs/operations.md, or HOTPAIR_SETUP_NET=0): change nothing.
if [ -e "/sys/class/net/$TAP/master" ]; then
    m="$(cd "/sys/class/net/$TAP/master" && pwd -P)"
    say "TAP $TAP is in bridge ${m##*/} already: network left as it is; exec hotpair $*"
    exec /usr/bin/hotpair "$@"
fi
if [ "${HOTPAIR_SETUP_NET:-1}" = 0 ]; then
    say "HOTPAIR_SETUP_NET=0: network left as it is; exec hotpair $*"
    exec /usr/bin/hotpair "$@"
fi

if ! ip link show dev "$BR" >/dev/null 2>&1; then
    ip link show dev "$LAN" >/dev/null 2>&1 || die "no interface $LAN (set HOTPAIR_LAN_IF)"
    # Never take a port of someone else's bridge (the host's, under --network host).
    [ ! -e "/sys/class/net/$LAN/master" ] \
        || die "$LAN is in a bridge already: give the TAP its bridge yourself (docs/operations.md) or set HOTPAIR_LAN_IF"
    # The addresses and default route the container was given, before the move.
    addrs=$(ip -o -4 addr show dev "$LAN" | while read -r _ _ _ cidr _; do printf '%s ' "$cidr"; done)
    addrs="${addrs% }"
    gw=$(ip -4 route show default dev "$LAN" | while read -r _ _ via _; do echo "$via"; break; done)
    read -r mac < "/sys/class/net/$LAN/address"
    ip link add "$BR" type bridge forward_delay 0 \
        || die "cannot create bridge $BR: run with --cap-add NET_ADMIN"
    # The bridge keeps the interface's MAC: the kernel's address does not
    # change its MAC on the LAN.
    ip link set dev "$BR" address "$mac"
    ip link set dev "$LAN" master "$BR"
    ip -4 addr flush dev "$LAN"
    for cidr in $addrs; do ip addr add "$cidr" dev "$BR"; done
    ip link set dev "$BR" up
    ip link set dev "$LAN" up
    [ -z "$gw" ] || ip route replace default via "$gw" dev "$BR"
    say "bridge $BR: $LAN ($mac) with ${addrs:-no address}${gw:+, default via $gw}"
fi
if ! ip link show dev "$TAP" >/dev/null 2>&1; then
    ip tuntap add dev "$TAP" mode tap vnet_hdr \
        || die "cannot create TAP $TAP: run with --cap-add NET_ADMIN --device /dev/net/tun"
fi
ip link set dev "$TAP" master "$BR" up
say "TAP $TAP on $BR; exec hotpair $*"
exec /usr/bin/hotpair "$@"
