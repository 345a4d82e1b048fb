#!/usr/bin/env bash
# Builds hotpair's OCI image with no registry (packaging/oci/Dockerfile is
# FROM scratch): stages a root filesystem from this machine — the hotpair
# binary (debug info stripped), the entrypoint, and sh, ip, curl, sha256sum,
# sleep, cat with the shared libraries ldd names — and runs `docker build`
# on it.
#
#   bash packaging/oci/build.sh [--bin PATH] [--repo NAME] [--no-latest]
#                               [--prune-older-than DURATION]
#
#   --bin PATH    the hotpair binary (default: $HOTPAIR_BIN, else
#                 target/release/hotpair)
#   --repo NAME   image repository (default: hotpair); the image is tagged
#                 NAME:<key> and, unless --no-latest, NAME:latest
#   --prune-older-than DURATION
#                 then remove this script's images of NAME older than
#                 DURATION (docker's `until` filter, e.g. 2h) that no
#                 container uses (the tests pass 2h: each binary they test
#                 leaves a ~50 MB image otherwise)
#
# glibc: the image carries this machine's glibc (and libm, libgcc_s, the
# loader), copied with the binary, not a base image's. The build refuses a
# binary this glibc cannot run (built on a newer system), and records the
# origin in the image's labels org.hotpair.glibc and
# org.hotpair.glibc-needed (packaging/oci/README.md).
#
# The key is the SHA-256 of everything that goes into the image (the binary,
# the recipe, each staged tool and library); when NAME:<key> exists the
# build is skipped. Prints the image reference (NAME:<key>) as the last line
# of stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
bin="${HOTPAIR_BIN:-$repo_root/target/release/hotpair}"
repo=hotpair
latest=1
prune=
while [ "$#" -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --repo) repo="$2"; shift 2 ;;
        --no-latest) latest=0; shift ;;
        --prune-older-than) prune="$2"; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
log() { echo "build.sh: $*" >&2; }

[ -x "$bin" ] || { log "no hotpair binary at $bin (cargo build --release -p hotpair-cli, or --bin PATH)"; exit 1; }

# The tools the image carries, found on this machine: destination → source.
PATH="$PATH:/usr/sbin:/sbin"
declare -A tools=(
    [/usr/bin/dash]="$(command -v dash)"
    [/usr/sbin/ip]="$(command -v ip)"
    [/usr/bin/curl]="$(command -v curl)"
    [/usr/bin/sha256sum]="$(command -v sha256sum)"
    [/usr/bin/sleep]="$(command -v sleep)"
    [/usr/bin/cat]="$(command -v cat)"
)
for dst in "${!tools[@]}"; do
    [ -n "${tools[$dst]}" ] || { log "missing on this machine: $(basename "$dst") (apt-get install dash iproute2 curl coreutils)"; exit 1; }
done

# Every shared library (and the loader) the binary and the tools load.
libs() {
    ldd "$@" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(0x/ { print $1 }' | sort -u
}
mapfile -t libraries < <(libs "$bin" "${tools[@]}")
[ "${#libraries[@]}" -gt 0 ] || { log "ldd found no libraries: is $bin a dynamic Linux binary?"; exit 1; }

# glibc: the image carries this machine's (the libc, loader, libm and
# libgcc_s ldd resolves above), not a base image's, so the binary must run
# on this machine's glibc. A binary built on a newer system (GLIBC_2.38
# symbols, say, on a 2.36 machine) would fail in every container with
# "version `GLIBC_2.38' not found": refuse it here, by name.
unresolved="$(ldd "$bin" "${tools[@]}" 2>&1 | grep -E 'not found' || true)"
if [ -n "$unresolved" ]; then
    log "this machine's libraries do not satisfy $bin or a tool (the image would carry them as they are):"
    printf '%s\n' "$unresolved" | sed 's/^/build.sh:   /' >&2
    log "build the binary on this machine (cargo build --release -p hotpair-cli) or on one with a glibc no newer than this one's ($(getconf GNU_LIBC_VERSION 2>/dev/null || echo unknown)), or run build.sh where it was built"
    exit 1
fi
libc_path="$(printf '%s\n' "${libraries[@]}" | grep -E '/libc\.so\.6$' | head -n 1 || true)"
[ -n "$libc_path" ] || { log "$bin does not load glibc's libc.so.6 (musl? static?): this recipe stages glibc's libraries only"; exit 1; }
# The staged libc's own banner, e.g. "GNU C Library (Debian GLIBC
# 2.36-9+deb12u14) stable release version 2.36.".
glibc_banner="$("$libc_path" 2>/dev/null | head -n 1 || true)"
glibc_have="$(printf '%s\n' "$glibc_banner" | sed -nE 's/.*release version ([0-9]+\.[0-9]+).*/\1/p')"
[ -n "$glibc_have" ] || glibc_have="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')"
# The newest glibc symbol version the binary asks for (binutils' objdump;
# without it ldd's check above stands alone).
glibc_need=
if command -v objdump >/dev/null; then
    glibc_need="$(objdump -T "$bin" 2>/dev/null | grep -oE 'GLIBC_[0-9]+\.[0-9]+(\.[0-9]+)?' | sed 's/GLIBC_//' | sort -uV | tail -n 1)"
    if [ -n "$glibc_need" ] && [ -n "$glibc_have" ] \
        && [ "$(printf '%s\n%s\n' "$glibc_need" "$glibc_have" | sort -V | tail -n 1)" != "$glibc_have" ]; then
        log "$bin needs glibc $glibc_need, this machine's ($libc_path) is $glibc_have: build the binary here or on an older system"
        exit 1
    fi
fi
os_name="$( . /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}" || echo unknown)"
glibc_origin="glibc ${glibc_have:-unknown} from the build host ($os_name: ${glibc_banner:-$libc_path})"
log "$glibc_origin; the binary needs glibc ${glibc_need:-(objdump missing: not computed)}"

# The cache key: the binary, the recipe, each tool and library.
bin_digest="$(sha256sum "$bin" | cut -d' ' -f1)"
key="$( {
    echo "$bin_digest"
    sha256sum "$here/Dockerfile" "$here/entrypoint.sh" "${BASH_SOURCE[0]}" | cut -d' ' -f1
    for dst in $(printf '%s\n' "${!tools[@]}" | sort); do echo "$dst $(sha256sum "${tools[$dst]}" | cut -d' ' -f1)"; done
    for l in "${libraries[@]}"; do echo "$l $(sha256sum "$l" | cut -d' ' -f1)"; done
} | sha256sum | cut -c1-16 )"
image="$repo:$key"

# Only now: the checks above (the binary, the tools, glibc) need no Docker.
command -v docker >/dev/null || { log "docker is not installed"; exit 1; }

if docker image inspect "$image" >/dev/null 2>&1; then
    log "$image exists (same binary, recipe, tools): not rebuilt"
else
    t0=$SECONDS
    stage="$(mktemp -d /tmp/hotpair-oci.XXXXXX)"
    trap 'rm -rf "$stage"' EXIT
    root="$stage/rootfs"
    mkdir -p "$root"/{usr/bin,usr/sbin,usr/local/bin,bin,etc/hotpair,run/hotpair,tmp,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    if command -v strip >/dev/null; then
        strip --strip-debug -o "$root/usr/bin/hotpair" "$bin"
    else
        cp "$bin" "$root/usr/bin/hotpair"
    fi
    chmod 755 "$root/usr/bin/hotpair"
    install -m 755 "$here/entrypoint.sh" "$root/usr/local/bin/hotpair-entrypoint"
    for dst in "${!tools[@]}"; do cp -L "${tools[$dst]}" "$root$dst"; done
    cp "$root/usr/bin/dash" "$root/bin/sh"
    for l in "${libraries[@]}"; do
        mkdir -p "$root$(dirname "$l")"
        cp -L "$l" "$root$l"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
    printf 'root:x:0:\n' > "$root/etc/group"
    printf 'hosts: files\n' > "$root/etc/nsswitch.conf"
    cp "$here/Dockerfile" "$stage/Dockerfile"
    log "building $image from $bin ($(du -sh "$root" | cut -f1) staged)"
    # The classic builder: nothing to pull (BuildKit needs the buildx
    # plugin, and may want a Dockerfile frontend image).
    DOCKER_BUILDKIT=0 docker build -q --build-arg "HOTPAIR_DIGEST=$bin_digest" \
        --build-arg "HOTPAIR_GLIBC=$glibc_origin" --build-arg "HOTPAIR_GLIBC_NEEDED=${glibc_need:-unknown}" \
        --label "org.hotpair.key=$key" --label "org.hotpair.repo=$repo" \
        -t "$image" "$stage" >&2
    log "built $image in $((SECONDS - t0)) s"
fi
if [ "$latest" = 1 ]; then docker tag "$image" "$repo:latest"; fi
if [ -n "$prune" ]; then
    # In use (a container of it exists, even stopped): docker refuses.
    docker image prune -a -f --filter "label=org.hotpair.repo=$repo" \
        --filter "until=$prune" >&2 || log "pruning old $repo images failed (ignored)"
fi
echo "$image"
