#!/usr/bin/env bash
# Benchmark of singularity-executor against the fake Mesos agent (not a test: it prints
# figures). Builds the release binary as deploy/install.sh does and the bench harness
# (crates/executor/examples/executor_bench.rs), then measures:
#   1. LAUNCH -> TASK_RUNNING latency for a plain command with one embedded artifact (p50, p90),
#      next to the cost of spawning and reaping `/bin/sh -c true` measured in the same run;
#   2. the executor's RSS while it supervises a task (VmRSS median, VmHWM);
#   3. KILL -> SIGTERM received by the task (p50, p90).
# It also reports whether the link-time code layout (crates/executor/hot-symbols.txt) matches
# the build, since the RSS depends on it.
#
#   bench/executor.sh           30 launches
#   RUNS=100 bench/executor.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=bench/lib/executor-build.sh
. "$REPO/bench/lib/executor-build.sh"
build_executor_for_bench executor_bench
report_symbol_order
RUNS="${RUNS:-30}" "$HARNESS_BIN"
