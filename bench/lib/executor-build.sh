# shellcheck shell=bash
# Sourced by the executor benchmarks. Builds the executor exactly as deploy/install.sh does
# (`cargo build --release --bins`) and keeps a copy of it, because building a bench harness
# afterwards (with the executor's dev-dependencies) may unify features differently.
#
#   build_executor_for_bench HARNESS   sets EXECUTOR_BIN (the copy) and HARNESS_BIN

build_executor_for_bench() {
  local harness=$1
  cargo build --release -q --bins
  BENCH_BIN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/se-bench-bin-XXXXXX")
  trap 'rm -rf "$BENCH_BIN_DIR"' EXIT
  cp "$REPO/target/release/singularity-executor" "$BENCH_BIN_DIR/"
  EXECUTOR_BIN="$BENCH_BIN_DIR/singularity-executor"
  cargo build --release -q -p singularity-executor --example "$harness"
  # shellcheck disable=SC2034 # read by the sourcing script
  HARNESS_BIN="$REPO/target/release/examples/$harness"
  export EXECUTOR_BIN
}
