# shellcheck shell=bash
# Sourced by bench/executor.sh. The memory one more task costs a host: N standalone executors
# (`singularity-executor run`), each supervising `sleep`, and per executor the mean of
#   RSS  resident pages, shared ones counted in full (what `ps` shows);
#   PSS  proportional set size: each shared page divided by the processes mapping it;
#   USS  unique set size: pages no other process maps (Private_Clean + Private_Dirty),
# from /proc/<pid>/smaps_rollup. Code pages of the binary are shared by every executor, so
# at 20 tasks PSS and USS are the per-task figures that multiply; RSS of one is not.
#
#   measure_executor_memory N   prints one line: N, RSS, PSS, USS (MiB per executor)

# smaps_field PID FIELD: a kB field of /proc/PID/smaps_rollup.
smaps_field() {
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/smaps_rollup"
}

measure_executor_memory() {
  local n=$1 dir i pid ready
  dir=$(mktemp -d "${TMPDIR:-/tmp}/se-bench-memory-XXXXXX")
  mkdir -p "$dir"/{etc,tasks,s3,tail,cache,logrotate.d}
  cat >"$dir/etc/singularity.base.yaml" <<YAML
s3UploaderMetadataDirectory: $dir/s3
logWatcherMetadataDirectory: $dir/tail
YAML
  echo "artifactCacheDirectory: $dir/cache" >"$dir/etc/singularity.s3base.yaml"
  cat >"$dir/etc/singularity.executor.yaml" <<YAML
globalTaskDefinitionDirectory: $dir/tasks
defaultRunAsUser: $(id -un)
logrotateConfDirectory: $dir/logrotate.d
YAML
  local pids=()
  for ((i = 1; i <= n; i++)); do
    cat >"$dir/task-$i.json" <<JSON
{"requestId": "bench-memory", "id": "d$i", "taskId": "bench-memory-d$i-1700000000000-$i-host-local",
 "executorData": {"cmd": "sleep 1000"}}
JSON
    RUST_LOG=warn "$EXECUTOR_BIN" --config-dir "$dir/etc" run "$dir/task-$i.json" \
      --sandbox "$dir/sandbox-$i" >"$dir/executor-$i.out" 2>&1 &
    pids+=($!)
  done
  # Measure once every task runs: its status line is printed by then.
  for ((i = 1; i <= n; i++)); do
    ready=0
    for _ in $(seq 1 300); do
      if grep -q '^TASK_RUNNING' "$dir/executor-$i.out" 2>/dev/null; then ready=1; break; fi
      sleep 0.1
    done
    if ((ready == 0)); then
      echo "executor $i never reported TASK_RUNNING:" >&2
      cat "$dir/executor-$i.out" >&2
      kill "${pids[@]}" 2>/dev/null || true
      return 1
    fi
  done
  sleep 0.5
  local rss=0 pss=0 uss=0
  for pid in "${pids[@]}"; do
    rss=$((rss + $(smaps_field "$pid" Rss)))
    pss=$((pss + $(smaps_field "$pid" Pss)))
    uss=$((uss + $(smaps_field "$pid" Private_Clean) + $(smaps_field "$pid" Private_Dirty)))
  done
  awk -v n="$n" -v r="$rss" -v p="$pss" -v u="$uss" 'BEGIN {
    printf "%3d executor%s: RSS %5.2f MiB  PSS %5.2f MiB  USS %5.2f MiB per executor\n",
      n, n == 1 ? " " : "s", r / n / 1024, p / n / 1024, u / n / 1024 }'
  # SIGTERM kills each task as a Mesos KILL would; the executors then exit.
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$dir"
}
