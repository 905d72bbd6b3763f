#!/usr/bin/env bash
# container_image.sh - build the project's Dockerfile, unchanged, into an image on a machine with
# neither a Docker daemon nor a reachable image registry; then run podman with the same settings.
# Used by `make container` and by tests/test_image.py (as scripts/local_llm.sh serves the live tests).
#
#   scripts/container_image.sh [build]        # install what is missing, build, print IMAGE=...
#   scripts/container_image.sh podman ARGS..  # podman with this script's storage and settings
#   scripts/container_image.sh clean          # remove the storage, the stand-in rootfs, the image
#
# What it does (rootful podman from Debian packages; each setting was needed on the test machines):
#  1. apt-get install podman runc debootstrap when missing (about a minute).
#  2. podman settings in $CONTAINER_DIR: storage driver $DRIVER (overlay: ~0.3 s per `podman run`;
#     vfs copies the image per run), cgroup manager cgroupfs, runtime runc (crun refuses hybrid
#     cgroup v1/v2 hosts), and explicit ulimits no higher than podman's own: its defaults
#     (nofile/nproc 1048576) fail with "setrlimit RLIMIT_NOFILE: Operation not permitted" where the
#     sandbox lacks CAP_SYS_RESOURCE.
#  3. The base image. No registry is reachable, so python:3.11-slim-bookworm is replaced by a
#     STAND-IN: Debian bookworm (minbase) from the mirror apt already uses, with its python3 (3.11)
#     and a venv created AT /usr/local, so python, pip and site-packages sit where the official
#     image has them; imported as $BASE_STANDIN and passed as --build-arg BASE_IMAGE (the
#     Dockerfile's default, pinned by digest, is what a machine with a registry builds from). Made
#     once (~2-4 min), kept in $CONTAINER_DIR.
#  4. podman build of ./Dockerfile, host network, the host's CA bundle bind-mounted for the build
#     only (pip reaches PyPI through a TLS-intercepting proxy here; nothing is baked in). Layers are
#     cached: a rebuild after a source change reinstalls only the project (seconds).
#
# Environment (defaults shown):
#   CONTAINER_DIR=~/.cache/source-openai-compatible-image   DRIVER=overlay (or vfs)
#   RUNROOT=/run/soc-podman-$DRIVER   IMAGE=source-openai-compatible:dev   BASE_STANDIN=docker.io/library/python:3.11-slim-bookworm
#   MIRROR=<the Debian mirror in /etc/apt/sources.list.d/debian.sources>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CONTAINER_DIR=${CONTAINER_DIR:-$HOME/.cache/source-openai-compatible-image}
DRIVER=${DRIVER:-overlay}
IMAGE=${IMAGE:-source-openai-compatible:dev}
BASE_STANDIN=${BASE_STANDIN:-docker.io/library/python:3.11-slim-bookworm}
# Podman's transient state. Short on purpose: podman refuses a runroot longer than 50 characters
# in the clean-up command conmon runs when a container exits, and `podman run` then waits 20 s
# for a clean-up that never comes.
RUNROOT=${RUNROOT:-/run/soc-podman-$DRIVER}
export CONTAINERS_CONF=$CONTAINER_DIR/containers.conf CONTAINERS_STORAGE_CONF=$CONTAINER_DIR/storage.conf

say() { echo "[container_image] $*" >&2; }
T() { local s=$1; shift; timeout --kill-after=10 "$s" "$@"; }   # every step is bounded in time

install_tools() {
    local need=() p
    for p in podman runc debootstrap; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
    ((${#need[@]})) || return 0
    [[ $(id -u) == 0 ]] || { say "needs root to apt-get install ${need[*]} (rootful podman)"; exit 1; }
    say "apt-get install ${need[*]} (about a minute)"
    local t0=$SECONDS
    T 600 apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive T 900 apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    say "installed in $((SECONDS - t0)) s"
}

write_config() {
    mkdir -p "$CONTAINER_DIR"
    local nofile nproc
    nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
    [[ $nofile == unlimited ]] && nofile=1048576
    { [[ $nproc == unlimited ]] || ((nproc > 32768)); } && nproc=32768
    cat >"$CONTAINERS_CONF.tmp" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
    cat >"$CONTAINERS_STORAGE_CONF.tmp" <<EOF
[storage]
driver = "$DRIVER"
graphroot = "$CONTAINER_DIR/storage-$DRIVER"
runroot = "$RUNROOT"
EOF
    mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
    mv "$CONTAINERS_STORAGE_CONF.tmp" "$CONTAINERS_STORAGE_CONF"
}

standin_base() {
    podman image exists "$BASE_STANDIN" && return 0
    local rootfs=$CONTAINER_DIR/rootfs mirror=${MIRROR:-} t0=$SECONDS
    if [[ ! -f $rootfs/.debootstrap-ok ]]; then
        if [[ -z $mirror ]]; then
            mirror=$(sed -n 's#^URIs: *\(https\?://[^ ]*/debian\)/\?$#\1#p' \
                /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 || true)
        fi
        mirror=${mirror:-http://deb.debian.org/debian}
        say "making the stand-in base: debootstrap bookworm from $mirror (2-4 min, once)"
        rm -rf "$rootfs"
        T 1500 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" "$mirror" >"$CONTAINER_DIR/debootstrap.log" 2>&1 \
            || { tail -20 "$CONTAINER_DIR/debootstrap.log" >&2; say "debootstrap FAILED"; exit 1; }
        T 300 chroot "$rootfs" /usr/bin/python3 -m venv /usr/local   # /usr/local/bin/{python,pip}
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
        mkdir -p "$rootfs/var/lib/apt/lists/partial"
        touch "$rootfs/.debootstrap-ok"
        say "stand-in rootfs made in $((SECONDS - t0)) s"
    fi
    say "importing the stand-in as $BASE_STANDIN"
    T 600 tar --numeric-owner --xattrs --exclude=./.debootstrap-ok -C "$rootfs" -cf - . \
        | T 600 podman import -q \
            --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
            --change 'LABEL org.opencontainers.image.description=stand-in for python:3.11-slim-bookworm (debootstrap, tests only)' \
            - "$BASE_STANDIN" >/dev/null
}

build() {
    local ca=() t0=$SECONDS
    [[ -f /etc/ssl/certs/ca-certificates.crt ]] \
        && ca=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    say "podman build -t $IMAGE (Dockerfile unchanged, base: the stand-in $BASE_STANDIN)"
    T 1800 podman build --pull=never --isolation chroot --network host "${ca[@]}" \
        --build-arg "BASE_IMAGE=$BASE_STANDIN" -t "$IMAGE" -f Dockerfile . \
        >"$CONTAINER_DIR/build.log" 2>&1 \
        || { tail -30 "$CONTAINER_DIR/build.log" >&2; say "build FAILED, log: $CONTAINER_DIR/build.log"; exit 1; }
    say "built in $((SECONDS - t0)) s"
}

action=${1:-build}
[[ $# -gt 0 ]] && shift
case "$action" in
    build)
        install_tools
        write_config
        # One build at a time per storage (a test session and `make container` may overlap).
        exec 9>"$CONTAINER_DIR/.lock"
        flock 9
        standin_base
        build
        echo "IMAGE=$IMAGE"
        ;;
    podman)
        [[ -f $CONTAINERS_CONF ]] || write_config
        exec podman "$@"
        ;;
    clean)
        if [[ -f $CONTAINERS_STORAGE_CONF ]] && command -v podman >/dev/null; then
            T 120 podman rm -af -t 0 >/dev/null 2>&1 || true
            T 300 podman rmi -af >/dev/null 2>&1 || true
            T 60 podman volume rm -af >/dev/null 2>&1 || true
        fi
        rm -rf "$CONTAINER_DIR"
        ;;
    *) echo "usage: $0 [build|podman ARGS...|clean]" >&2; exit 2 ;;
esac
