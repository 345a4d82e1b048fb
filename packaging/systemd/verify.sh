#!/usr/bin/env bash
# Checks packaging/systemd/hotpair.service with `systemd-analyze verify`
# (and prints its `systemd-analyze security` exposure), failing on any
# complaint — verify exits 0 on a line it ignores, so its output must be
# empty too. The unit names /usr/local/bin/hotpair; a copy naming the binary
# under test ($HOTPAIR_BIN, else target/debug/hotpair) is what gets checked,
# since verify also wants the ExecStart program to exist.
#
#   bash packaging/systemd/verify.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${HOTPAIR_BIN:-$here/../../target/debug/hotpair}"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
[ -x "$bin" ] || { echo "verify.sh: no hotpair binary at $bin (cargo build -p hotpair-cli)" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze is missing (apt-get install systemd)" >&2; exit 1; }

tmp="$(mktemp -d /tmp/hotpair-unit.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/hotpair#$bin#g" "$here/hotpair.service" > "$tmp/hotpair.service"
set +e
said="$(systemd-analyze verify "$tmp/hotpair.service" 2>&1)"
rc=$?
set -e
if [ "$rc" -ne 0 ] || [ -n "$said" ]; then
    echo "systemd-analyze verify hotpair.service: exit $rc" >&2
    printf '%s\n' "$said" >&2
    exit 1
fi
echo "systemd-analyze verify hotpair.service: clean"
# --offline needs systemd 250 or later; the score is information, not a gate.
systemd-analyze security --offline=yes "$tmp/hotpair.service" 2>/dev/null | tail -1 || true
