# shellcheck shell=bash
# Sourced by the executor benchmarks. Builds the executor exactly as deploy/install.sh does
# (`cargo build --release --bins`: the workspace's feature set, hence the symbol names that
# crates/executor/hot-symbols.txt lists) and keeps a copy of it, because building a bench
# harness afterwards (with the executor's dev-dependencies) may unify features differently.
#
#   build_executor_for_bench HARNESS   sets EXECUTOR_BIN (the copy) and HARNESS_BIN
#   report_symbol_order                prints how much of the hot-symbol list the build uses

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

report_symbol_order() {
  local list="$REPO/crates/executor/hot-symbols.txt" listed present
  [[ -f $list ]] || { echo "symbol order: no $list"; return; }
  listed=$(grep -vc '^#' "$list" || true)
  present=$(nm --defined-only "$EXECUTOR_BIN" | awk '{print $3}' | sort -u |
    comm -12 - <(grep -v '^#' "$list" | sort -u) | wc -l)
  echo "symbol order: $present of $listed hot functions listed in crates/executor/hot-symbols.txt are in this build"
  if ((present * 10 < listed * 9)); then
    echo "  the list is stale (dependencies or compiler changed): run bench/executor-symbol-order.sh"
  fi
}
