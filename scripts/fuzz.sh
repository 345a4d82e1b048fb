#!/usr/bin/env bash
# Coverage-guided fuzzing of hotpair's input-facing state machines with
# AFL++ through cargo-afl, on the stable toolchain (libFuzzer / cargo fuzz
# need nightly). Targets (fuzz/src/): http_conn, wire, engine, replica, tls_record,
# tls_unit.
#
#   bash scripts/fuzz.sh                  # = --short: 25 s per target
#   bash scripts/fuzz.sh --long 3600      # an hour per target
#   bash scripts/fuzz.sh --short wire     # some targets only
#   FUZZ_JOBS=2 bash scripts/fuzz.sh ...  # targets run this many at a time
#
# 1. installs cargo-afl (crates.io; its install builds AFL++) if missing,
# 2. builds the targets instrumented, into fuzz/target/afl,
# 3. runs afl-fuzz on each, seeded from fuzz/corpus/<target>, output in
#    fuzz/out/<target> (not committed),
# 4. prints execs, execs/s, corpus size and crashes per target, and exits
#    non-zero if a target crashed: the inputs are in
#    fuzz/out/<target>/default/crashes/. Replay one with
#    FUZZ_TRACE=1 cargo run --manifest-path fuzz/Cargo.toml --example replay -- <target> <file>
#    and, once fixed, commit it under fuzz/crashes/<target>/ (the corpus
#    replay in `cargo test` runs those too).
#
# Minimise a grown queue back into the committed corpus:
#   cargo afl cmin -i fuzz/out/<t>/default/queue -o /tmp/min -- fuzz/target/afl/release/<t>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=25
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --short) seconds=25 ;;
        --long) seconds="${2:?--long needs SECONDS}"; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        http_conn|wire|engine|replica|tls_record|tls_unit) targets+=("$1") ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[ "${#targets[@]}" -gt 0 ] || targets=(http_conn wire engine replica tls_record tls_unit)
jobs="${FUZZ_JOBS:-$(nproc)}"

step() { printf '\n==> %s\n' "$*"; }

# ---- 1. cargo-afl (and AFL++) ------------------------------------------------
AFL_VERSION=0.18.2
if ! cargo afl --version 2>/dev/null | grep -q "cargo-afl $AFL_VERSION"; then
    step "cargo install cargo-afl $AFL_VERSION (builds AFL++; a few minutes)"
    cargo install cargo-afl --version "$AFL_VERSION" --locked
fi
if ! ls "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-*/afl.rs-"$AFL_VERSION"/afl/bin/afl-fuzz >/dev/null 2>&1; then
    step "cargo afl config --build (AFL++ runtime for this rustc)"
    cargo afl config --build --force
fi

# ---- 2. instrumented build ---------------------------------------------------
step "cargo afl build --release --features afl (fuzz/target/afl)"
export CARGO_TARGET_DIR="$PWD/fuzz/target/afl"
cargo afl build --release --features afl --manifest-path fuzz/Cargo.toml --bins

# ---- 3. fuzz -------------------------------------------------------------------
# No core_pattern or CPU governor tuning in a container; no UI; don't pin
# CPUs (shared machine).
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 \
    AFL_NO_AFFINITY=1 AFL_SKIP_CRASHES=1

fuzz_one() {
    local t="$1" out="fuzz/out/$1"
    mkdir -p "$out"
    # -t: ms per input (the engine runs smoltcp); -V: seconds of fuzzing.
    cargo afl fuzz -i "fuzz/corpus/$t" -o "$out" -t 2000 -V "$seconds" \
        "$CARGO_TARGET_DIR/release/$t" >"$out/afl.log" 2>&1 || {
        echo "afl-fuzz failed for $t; last lines of $out/afl.log:" >&2
        tail -20 "$out/afl.log" >&2
        return 1
    }
}

step "fuzzing ${targets[*]}: ${seconds} s each, $jobs at a time"
pids=()
for t in "${targets[@]}"; do
    rm -rf "fuzz/out/$t"
    fuzz_one "$t" &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done

# ---- 4. report -----------------------------------------------------------------
step "results"
stat() { grep -m1 "^$2 " "$1" | sed 's/.*: //'; }
printf '%-10s %12s %10s %8s %8s %8s\n' target execs execs/s corpus crashes hangs
crashed=0
for t in "${targets[@]}"; do
    s="fuzz/out/$t/default/fuzzer_stats"
    if [ ! -f "$s" ]; then
        printf '%-10s (no stats: see fuzz/out/%s/afl.log)\n' "$t" "$t"
        failed=1
        continue
    fi
    printf '%-10s %12s %10s %8s %8s %8s\n' "$t" "$(stat "$s" execs_done)" \
        "$(stat "$s" execs_per_sec)" "$(stat "$s" corpus_count)" \
        "$(stat "$s" saved_crashes)" "$(stat "$s" saved_hangs)"
    n="$(stat "$s" saved_crashes)"
    if [ "${n:-0}" != 0 ]; then
        crashed=1
        echo "  crashes of $t: fuzz/out/$t/default/crashes/" >&2
    fi
done
[ "$crashed" = 0 ] && [ "$failed" = 0 ]
