#!/usr/bin/env bash
# Benchmark of the task log pipeline (not a test: it prints figures). Builds the release
# executor, then, in one run and on the same disk:
#   1. write path: a task printing 512 MiB of 100-byte lines through the executor (standalone
#      `run`, rotation every 1 MiB, gzip on) against the same script appending straight to a
#      file. The script times its own writing (from its first byte to its last, the time the
#      pipeline makes it take); ratio of median times (target: executor throughput >= 0.8x of
#      the direct write). The executor's whole run (start, the compression backlog drained at
#      teardown) is printed next to it;
#   2. compression: the pipeline's in-process gzip of one 64 MiB segment against the `gzip`
#      binary at the same level (-6): MB/s and CPU seconds per GiB;
#   3. the executor's peak RSS while logging at full speed (`time -f %M`: the largest of the
#      executor and the task's processes, which are `sh`, `yes` and `head`).
#
#   bench/logs.sh                 3 runs of each
#   RUNS=5 MIB=256 bench/logs.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
RUNS=${RUNS:-3}
MIB=${MIB:-512}
BYTES=$((MIB * 1024 * 1024))

# Only what is measured: the executor binary and the compression harness.
cargo build --release -q -p singularity-executor --bin singularity-executor
cargo build --release -q -p singularity-logs --example compress_bench
EXECUTOR="$REPO/target/release/singularity-executor"
COMPRESS="$REPO/target/release/examples/compress_bench"

mkdir -p "$REPO/target/tmp"
WORK=$(mktemp -d "$REPO/target/tmp/se-bench-logs-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"/{etc,meta,tail,cache,tasks,logrotate.d,cron.d}
cat >"$WORK/etc/singularity.base.yaml" <<YAML
s3UploaderMetadataDirectory: $WORK/meta
logWatcherMetadataDirectory: $WORK/tail
YAML
echo "artifactCacheDirectory: $WORK/cache" >"$WORK/etc/singularity.s3base.yaml"
cat >"$WORK/etc/singularity.executor.yaml" <<YAML
globalTaskDefinitionDirectory: $WORK/tasks
defaultRunAsUser: $(id -un)
logrotateConfDirectory: $WORK/logrotate.d
logrotateHourlyConfDirectory: $WORK/logrotate.d/hourly
cronDirectory: $WORK/cron.d
maxServiceLogSizeMb: 1
YAML
LINE=$(printf 'x%.0s' $(seq 1 99))
# The task: BYTES of 100-byte lines on stdout; its writing time in ns into the file "$1".
cat >"$WORK/task.sh" <<SH
start=\$(date +%s%N)
yes $LINE | head -c $BYTES
end=\$(date +%s%N)
echo \$((end - start)) >"\$1"
SH
printf '{"requestId":"bench","id":"d1","executorData":{"cmd":"sh %s %s","defaultS3Bucket":"bench"}}' \
  "$WORK/task.sh" "$WORK/task-time" >"$WORK/task.json"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
seconds() { awk '{printf "%.3f\n", $1 / 1e9}' "$1"; }

direct=() executor=() whole=() rss=()
for i in $(seq 1 "$RUNS"); do
  rm -f "$WORK/direct.log"
  sh "$WORK/task.sh" "$WORK/task-time" >>"$WORK/direct.log"
  direct+=("$(seconds "$WORK/task-time")")
  rm -f "$WORK/direct.log"
  rm -rf "$WORK/sandbox"
  mkdir -p "$WORK/sandbox"
  /usr/bin/time -o "$WORK/time.out" -f '%e %M' "$EXECUTOR" --config-dir "$WORK/etc" \
    run "$WORK/task.json" --sandbox "$WORK/sandbox" >/dev/null 2>"$WORK/executor.err"
  out=$(tail -1 "$WORK/time.out")
  executor+=("$(seconds "$WORK/task-time")")
  whole+=("${out% *}")
  rss+=("${out#* }")
  rotated=$(find "$WORK/sandbox" -name 'service.log-*.gz' | wc -l)
  written=$(find "$WORK/sandbox" -name 'service.log-*.gz' -exec zcat {} + | wc -c)
  [ "$written" -eq "$BYTES" ] || { echo "the rotated logs hold $written bytes, not $BYTES" >&2; exit 1; }
done
d=$(printf '%s\n' "${direct[@]}" | median)
e=$(printf '%s\n' "${executor[@]}" | median)
w=$(printf '%s\n' "${whole[@]}" | median)
r=$(printf '%s\n' "${rss[@]}" | median)
mibs() { awk -v s="$1" -v m="$MIB" 'BEGIN{printf "%.0f", m/s}'; }
echo "write path, $MIB MiB of 100-byte lines, median of $RUNS (runs: direct ${direct[*]}; executor ${executor[*]}):"
echo "  direct append:                 ${d} s  ($(mibs "$d") MiB/s)"
echo "  through the executor:          ${e} s  ($(mibs "$e") MiB/s, $rotated rotations, all gzipped)"
echo "  executor throughput / direct:  $(awk -v d="$d" -v e="$e" 'BEGIN{printf "%.2f", d/e}')x  (target >= 0.8x)"
echo "  executor run, start to exit:   ${w} s  (with teardown and the last compressions)"
echo "  executor peak RSS:             $((r / 1024)) MiB"

# Compression of one segment of real-looking text (the executor's own sources, repeated).
SEG="$WORK/segment"
while [ "$(stat -c %s "$SEG" 2>/dev/null || echo 0)" -lt $((64 * 1024 * 1024)) ]; do
  cat crates/*/src/*.rs >>"$SEG"
done
SIZE=$(stat -c %s "$SEG")
ours=() gz=()
for i in $(seq 1 "$RUNS"); do
  cp "$SEG" "$WORK/seg.log"
  ours+=("$( { /usr/bin/time -f '%e %U %S' "$COMPRESS" "$WORK/seg.log" 6; } 2>&1 | tail -1)")
  ours_size=$(stat -c %s "$WORK/seg.log.gz")
  rm -f "$WORK/seg.log.gz"
  gz+=("$( { /usr/bin/time -f '%e %U %S' gzip -6 -c "$SEG" >"$WORK/seg.gzip"; } 2>&1 | tail -1)")
done
gz_size=$(stat -c %s "$WORK/seg.gzip")
report() {
  local name=$1 out=$2; shift 2
  local wall cpu
  wall=$(printf '%s\n' "$@" | awk '{print $1}' | median)
  cpu=$(printf '%s\n' "$@" | awk '{print $2 + $3}' | median)
  echo "  $name: $(awk -v w="$wall" -v s="$SIZE" 'BEGIN{printf "%.0f", s/1048576/w}') MiB/s, \
$(awk -v c="$cpu" -v s="$SIZE" 'BEGIN{printf "%.2f", c*1073741824/s}') CPU-s/GiB, \
output $(awk -v o="$out" -v s="$SIZE" 'BEGIN{printf "%.1f", 100*o/s}')% of the input"
}
echo "compression of a $((SIZE / 1048576)) MiB segment at level 6, median of $RUNS:"
report "in-process (flate2)" "$ours_size" "${ours[@]}"
report "gzip binary        " "$gz_size" "${gz[@]}"
