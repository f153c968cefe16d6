#!/usr/bin/env bash
# Runs every test of the workspace against real services.
#
# Installs and starts what the tests need (dockerd, docker-registry with a busybox image, an
# S3-protocol server, s5cmd and boto3, the mkfs tools) through scripts/services.sh, runs the
# tests, and stops the services it started by pid. Extra arguments go to `cargo test`.
#   --keep-services   leave the services running afterwards (faster reruns)
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
args=()
for a in "$@"; do
    case "$a" in
        --keep-services) keep=1 ;;
        *) args+=("$a") ;;
    esac
done

scripts/services.sh up
if [ "$keep" = 0 ]; then
    trap 'scripts/services.sh down' EXIT
fi
set -a
# shellcheck disable=SC1091
. .services/env
set +a

# The daemons the cross-daemon tests (tests/e2e) run as subprocesses, built first with the
# same profile, so the build inside those tests has nothing left to do.
cargo build --bins -p singularity-executor -p singularity-executor-cleanup \
    -p singularity-s3-uploader -p singularity-s3-downloader
cargo test --workspace --all-targets "${args[@]}"
cargo test --workspace --doc "${args[@]}"
