#!/usr/bin/env bash
# Benchmark of singularity-executor's daemonless containers (the OCI runtime, runc here)
# against the fake Mesos agent, next to the real Docker engine of scripts/services.sh in the
# same run (not a test: it prints figures). Builds the release binary as deploy/install.sh
# does and the harness (crates/executor/examples/oci_bench.rs), then measures:
#   1. LAUNCH -> TASK_RUNNING of a `type: MESOS` container whose image is already unpacked,
#      against `docker run -d` of the same image (target <= 0.5x);
#   2. the memory of the process supervising one container: the OCI runtime's `run` against
#      dockerd's containerd-shim-runc-v2 (RSS and PSS).
# Needs root (runc) and the Debian runc package.
#
#   bench/oci-runtime.sh           20 containers
#   RUNS=50 bench/oci-runtime.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
bash scripts/services.sh up >/dev/null
# shellcheck disable=SC1091
. "$REPO/.services/env"
SOCKET=${DOCKER_HOST#unix://}
# shellcheck source=bench/lib/executor-build.sh
. "$REPO/bench/lib/executor-build.sh"
build_executor_for_bench oci_bench
RUNS="${RUNS:-20}" DOCKER_SOCKET="$SOCKET" OCI_RUNTIME="${OCI_RUNTIME:-/usr/sbin/runc}" "$HARNESS_BIN"
