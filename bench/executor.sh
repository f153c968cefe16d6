#!/usr/bin/env bash
# Benchmark of singularity-executor against the fake Mesos agent (not a test: it prints
# figures). Builds the release binary as deploy/install.sh does and the bench harness
# (crates/executor/examples/executor_bench.rs), then measures:
#   1. LAUNCH -> TASK_RUNNING latency for a plain command with one embedded artifact (p50, p90),
#      next to the cost of spawning and reaping `/bin/sh -c true` measured in the same run;
#   2. the executor's RSS while it supervises a task (VmRSS median, VmHWM);
#   3. KILL -> SIGTERM received by the task (p50, p90);
#   4. the memory per executor with 1 and with 20 standalone executors each supervising a task:
#      RSS, PSS and USS (bench/lib/executor-memory.sh). PSS at 20 is the per-task cost on a
#      host (target <= 2.5 MiB); the Java executor, the peer, is given a 128 MB heap per task.
#
#   bench/executor.sh           30 launches
#   RUNS=100 bench/executor.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=bench/lib/executor-build.sh
. "$REPO/bench/lib/executor-build.sh"
# shellcheck source=bench/lib/executor-memory.sh
. "$REPO/bench/lib/executor-memory.sh"
build_executor_for_bench executor_bench
RUNS="${RUNS:-30}" "$HARNESS_BIN"
echo "memory per executor while each supervises a task (target: PSS <= 2.5 MiB at 20):"
measure_executor_memory 1
measure_executor_memory 20
