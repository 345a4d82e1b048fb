#!/usr/bin/env bash
# hotpair's test command (CI runs it through .ci/run):
#
#   bash scripts/test.sh
#
# 1. installs what the tests need, only if missing (apt: curl wrk python3
#    iproute2 nginx tcpdump procps hping3 slowhttptest fonts-dejavu-core
#    systemd (for systemd-analyze) postgresql python3-psycopg2 (the lab's
#    `--app orders`) docker-compose python3-yaml (packaging/compose and
#    packaging/k8s) chromium (the browser test); rustup: rustfmt clippy),
# 2. cargo fmt --check, clippy with -D warnings, builds the hotpair binary,
#    checks packaging/systemd/hotpair.service with systemd-analyze verify,
# 3. runs the unit tests, the fuzz corpus replay (fuzz/) and a 15 s AFL++
#    run of each fuzz target (scripts/fuzz.sh), the simulation's
#    full failover matrix (SIM_FULL=0: the capped one), then the
#    network-namespace tests (netns-tests/) against target/debug/hotpair
#    (or $HOTPAIR_BIN), then `hotpair bench --quick`.
#
# Non-interactive. The netns tests need root; without root they print
# "NETNS TEST SKIPPED", and with CI set they fail instead of skipping.
# Each netns test builds its own lab (namespaces t<pid><n>-*) and removes it.
# The Docker tests (netns-tests/tests/docker_*.rs: the OCI image of
# packaging/oci/, the compose file of packaging/compose/ and the systemd
# unit, each a pair of containers on a Docker network of its own) need a
# running Docker engine, which this script does not install (it installs
# docker-compose, the client): without one they print "DOCKER TEST
# SKIPPED", and fail under CI.
# The failover tests (netns-tests/tests/failover_*_crash.rs) run their duplex
# labs one at a time; knobs: HOTPAIR_FAILOVER_RUNS / HOTPAIR_FAILOVER_SEED (the
# random-moment kills), HOTPAIR_REPL_NET=dedicated, HOTPAIR_FAILOVER_PARALLEL=1.
# Stall statistics over 20 kills: bash scripts/failover-stall.sh (hotpair bench --only stall).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
NETNS_TEST_THREADS="${NETNS_TEST_THREADS:-2}"

step() { printf '\n==> %s\n' "$*"; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# ---- 1. tools ---------------------------------------------------------------
step "checking test tools"
missing=()
need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1 \
        || missing+=("$2")
}
need curl curl
need wrk wrk
need python3 python3
need ip iproute2
need nginx nginx
need tcpdump tcpdump
need ps procps
need sysctl procps
need setsid util-linux
need setpriv util-linux       # hotpair lab up --app orders: PostgreSQL as `postgres`
need hping3 hping3             # netns-tests/tests/hostile_clients.rs: SYN flood
need slowhttptest slowhttptest # netns-tests/tests/hostile_clients.rs: slow headers
need nft nftables             # hotpair lab partition (netns-tests/tests/partition.rs)
need openssl openssl           # netns-tests/tests/failover_tls.rs: s_client session resumption
need systemd-analyze systemd   # packaging/systemd/verify.sh
need docker-compose docker-compose # netns-tests/tests/docker_compose.rs, packaging_manifests.rs
need chromium chromium         # netns-tests/tests/failover_browser.rs: headless Chromium over HTTPS
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core) # bench plots' text
# netns-tests/tests/app_orders.rs (`hotpair lab up --app orders`): the
# PostgreSQL server binaries, and psycopg2 for Debian's own python3 (which
# the lab runs the app with). Installing postgresql creates Debian's `main`
# cluster; the policy below keeps it from starting, and were it running it
# would not matter: the lab's server runs in a namespace of its own with
# its socket in the lab's state directory, never on the system's port or
# in /var/run/postgresql.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
/usr/bin/python3 -c 'import psycopg2' >/dev/null 2>&1 || missing+=(python3-psycopg2)
# packaging/check-manifests.py (netns-tests/tests/packaging_manifests.rs):
# the Kubernetes and compose files parsed with Debian's python3.
/usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || missing+=(python3-yaml)
if [ "${#missing[@]}" -gt 0 ]; then
    # de-duplicate
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if ! is_root; then
        echo "missing packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}"
    # Installing nginx (or postgresql) must not start a system nginx (or
    # PostgreSQL cluster): block service starts
    # for the duration of the install (unless a policy is already in place).
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        own_policy=1
        trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; own_policy=0; fi
else
    echo "all present"
fi

if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi

# ---- 2. lint and build ------------------------------------------------------
step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The node core is sans-IO: no tokio under the replicator (DESIGN §6).
step "cargo tree -p hotpair-replicator: no tokio"
if cargo tree -p hotpair-replicator -e normal --prefix none | grep -q '^tokio '; then
    echo "hotpair-replicator depends on tokio; the node core must stay sans-IO" >&2
    exit 1
fi

step "cargo build -p hotpair-cli"
cargo build -p hotpair-cli

step "systemd unit: systemd-analyze verify (packaging/systemd/verify.sh)"
bash packaging/systemd/verify.sh

# ---- 3. tests -----------------------------------------------------------------
step "unit tests: cargo test --workspace --exclude hotpair-netns-tests --exclude hotpair-sim"
cargo test --workspace --exclude hotpair-netns-tests --exclude hotpair-sim

# Fuzz targets (fuzz/, its own workspace; docs/testing.md "Fuzzing"): lint
# them, then replay every committed corpus input and fixed crash through the
# same harnesses AFL++ runs, plus seeded random inputs — deterministic, a few
# seconds once built. Then a short coverage-guided run of each target
# (AFL++ through cargo-afl, 15 s each, two at a time): scripts/fuzz.sh
# installs cargo-afl and builds AFL++ the first time (a few minutes), then
# builds the targets instrumented; a crash fails the run. FUZZ_SECONDS=0
# skips it (saying so); `bash scripts/fuzz.sh --long SECONDS` for real runs.
step "fuzz corpus replay: cargo test --manifest-path fuzz/Cargo.toml"
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
cargo test --manifest-path fuzz/Cargo.toml
FUZZ_SECONDS="${FUZZ_SECONDS:-15}"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
    step "fuzzing: bash scripts/fuzz.sh --long $FUZZ_SECONDS (every target)"
    bash scripts/fuzz.sh --long "$FUZZ_SECONDS"
else
    echo "FUZZING SKIPPED: FUZZ_SECONDS=0 (no coverage-guided run of the fuzz targets)" >&2
fi

# The deterministic simulation: every kill step of every scenario, both
# victims, both kill variants, on a clean LAN; under loss, four seeds that
# between them kill each victim/variant at every step once (SIM_FULL=0
# for the capped matrix, ~40 s in a debug build), built optimised with debug
# assertions and overflow checks on (profile `sim`). It includes the HTTPS
# matrix (sim/tests/tls_failover.rs: every step of the TLS handshake
# window, clean and lossy, the ring sampled; ~75 s under SIM_FULL).
SIM_FULL="${SIM_FULL:-1}"
step "simulation: cargo test --profile sim -p hotpair-sim (SIM_FULL=$SIM_FULL)"
SIM_FULL="$SIM_FULL" cargo test --profile sim -p hotpair-sim -- --nocapture

step "netns tests: cargo test -p hotpair-netns-tests (test threads: $NETNS_TEST_THREADS)"
if ! is_root; then
    echo "NOTE: not root; the netns tests will be skipped (or fail if CI is set)" >&2
fi
cargo test -p hotpair-netns-tests -- --test-threads="$NETNS_TEST_THREADS"

# Smoke test of `hotpair bench` end to end (every configuration, nginx, stalls,
# report, plots; ~2-3 min, debug build: its numbers mean nothing). Needs root.
step "bench smoke test: hotpair bench --quick"; if is_root; then "${HOTPAIR_BIN:-target/debug/hotpair}" bench --quick --out "$(mktemp -d /tmp/hotpair-bench-quick.XXXXXX)"; else echo "NOTE: not root; bench smoke test skipped" >&2; fi

step "all checks passed"
