#!/usr/bin/env bash
# Benchmark of singularity-executor against the fake Mesos agent (not a test: it prints
# figures). Builds the release binary and the bench harness
# (crates/executor/examples/executor_bench.rs), then measures:
#   1. LAUNCH -> TASK_RUNNING latency for a plain command with one embedded artifact (p50, p90),
#      next to the cost of spawning and reaping `/bin/sh -c true` measured in the same run;
#   2. the executor's RSS while it supervises a task (VmRSS median, VmHWM);
#   3. KILL -> SIGTERM received by the task (p50, p90).
#
#   bench/executor.sh           30 launches
#   RUNS=100 bench/executor.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
cargo build --release -q -p singularity-executor --bin singularity-executor --example executor_bench
EXECUTOR_BIN="$REPO/target/release/singularity-executor" \
  RUNS="${RUNS:-30}" \
  "$REPO/target/release/examples/executor_bench"
