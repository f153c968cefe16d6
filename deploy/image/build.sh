#!/usr/bin/env bash
# Builds the agent image singularity-agent:<version> (and :latest) on the local engine, offline:
# a root filesystem holding the four daemons, the shared libraries they link, a POSIX shell for
# plain tasks and CA certificates, imported as an image (no base image, no registry).
#
#   deploy/image/build.sh [--profile release|debug] [--no-build] [--docker-host unix:///path]
#
# Prints the image reference on its last line. See docs/agent-container.md for running it.
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=release
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --docker-host) export DOCKER_HOST=$2; shift 2 ;;
        *) echo "usage: $0 [--profile release|debug] [--no-build] [--docker-host URL]" >&2; exit 2 ;;
    esac
done
case "$profile" in
    release) cargo_profile=(--release) ;;
    debug) cargo_profile=() ;;
    *) echo "image: unknown profile '$profile' (release or debug)" >&2; exit 2 ;;
esac

daemons=(singularity-executor singularity-executor-cleanup singularity-s3-uploader
    singularity-s3-downloader)
if [ "$build" = 1 ]; then
    packages=()
    for d in "${daemons[@]}"; do packages+=(-p "$d"); done
    cargo build "${cargo_profile[@]}" --bins "${packages[@]}"
fi
for d in "${daemons[@]}"; do
    if [ ! -x "target/$profile/$d" ]; then
        echo "image: target/$profile/$d is missing: run without --no-build" >&2
        exit 1
    fi
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
image=singularity-agent
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/$image-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT

install -d "$rootfs/usr/bin" "$rootfs/bin" "$rootfs/etc/ssl/certs" "$rootfs/var/lib/singularity" \
    "$rootfs/run/singularity" "$rootfs/etc/singularity-examples"
install -d -m 1777 "$rootfs/tmp"
for d in "${daemons[@]}"; do
    install -m 0755 "target/$profile/$d" "$rootfs/usr/bin/$d"
done
# Plain tasks run through /bin/sh -c, as in Singularity's runner.
install -m 0755 "$(readlink -f /bin/sh)" "$rootfs/bin/sh"

# The shared libraries (and the loader) of every binary, at the paths they were linked with.
for binary in "$rootfs"/usr/bin/* "$rootfs/bin/sh"; do
    ldd "$binary" | awk '/=> \//{print $3} /^\t\//{print $1}'
done | sort -u | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done

install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' \
    >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
install -m 0644 config/yaml/*.yaml "$rootfs/etc/singularity-examples/"

tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -c . | docker import \
    --change 'ENV PATH=/usr/bin:/bin' \
    --change "LABEL org.opencontainers.image.title=$image org.opencontainers.image.version=$version" \
    --change 'CMD ["/usr/bin/singularity-executor", "--help"]' \
    - "$image:$version" >/dev/null
docker tag "$image:$version" "$image:latest"
echo "$image:$version"
