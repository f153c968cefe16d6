#!/usr/bin/env bash
# Benchmark of singularity-executor's Docker runtime against the fake Mesos agent and the real
# engine of scripts/services.sh (not a test: it prints figures). Builds the release binary as
# deploy/install.sh does and the harness (crates/executor/examples/docker_bench.rs), then
# measures:
#   1. LAUNCH -> TASK_RUNNING for a container, against `docker run -d` of the same image in
#      the same run (target <= 1.1x);
#   2. KILL -> SIGTERM seen inside the container (target <= 50 ms).
#
#   bench/executor-docker.sh           20 containers
#   RUNS=50 bench/executor-docker.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
bash scripts/services.sh up >/dev/null
# shellcheck disable=SC1091
. "$REPO/.services/env"
SOCKET=${DOCKER_HOST#unix://}
# shellcheck source=bench/lib/executor-build.sh
. "$REPO/bench/lib/executor-build.sh"
build_executor_for_bench docker_bench
RUNS="${RUNS:-20}" DOCKER_SOCKET="$SOCKET" "$HARNESS_BIN"
