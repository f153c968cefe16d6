#!/usr/bin/env bash
# Benchmark of the task log pipeline (not a test: it prints figures). Builds the release
# executor as deploy/install.sh does, then, in one run and on the same disk:
#   1. write path: a task printing 512 MiB of 100-byte lines through the executor (standalone
#      `run`, rotation every 1 MiB, gzip on) against the same command appending straight to a
#      file; ratio of median times (target: executor throughput >= 0.8x of the direct write);
#   2. compression: the pipeline's in-process gzip of one 64 MiB segment against the `gzip`
#      binary at the same level (-6): MB/s and CPU seconds per GiB;
#   3. the executor's peak RSS while logging at full speed.
#
#   bench/logs.sh                 3 runs of each
#   RUNS=5 MIB=256 bench/logs.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
RUNS=${RUNS:-3}
MIB=${MIB:-512}
BYTES=$((MIB * 1024 * 1024))

cargo build --release -q --bins
cargo build --release -q -p singularity-logs --example compress_bench
EXECUTOR="$REPO/target/release/singularity-executor"
COMPRESS="$REPO/target/release/examples/compress_bench"

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
COMMAND="yes $LINE | head -c $BYTES"
printf '{"requestId":"bench","id":"d1","executorData":{"cmd":"%s"}}' "$COMMAND" >"$WORK/task.json"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

direct=() executor=() rss=()
for i in $(seq 1 "$RUNS"); do
  rm -f "$WORK/direct.log"
  t=$( { /usr/bin/time -f '%e' sh -c "$COMMAND >> '$WORK/direct.log'"; } 2>&1 )
  direct+=("$t")
  rm -rf "$WORK/sandbox"
  mkdir -p "$WORK/sandbox"
  out=$( { /usr/bin/time -f '%e %M' "$EXECUTOR" --config-dir "$WORK/etc" run "$WORK/task.json" \
    --sandbox "$WORK/sandbox" >/dev/null 2>"$WORK/executor.err"; } 2>&1 | tail -1)
  executor+=("${out% *}")
  rss+=("${out#* }")
  rotated=$(find "$WORK/sandbox" -name 'service.log-*.gz' | wc -l)
done
rm -f "$WORK/direct.log"
d=$(printf '%s\n' "${direct[@]}" | median)
e=$(printf '%s\n' "${executor[@]}" | median)
r=$(printf '%s\n' "${rss[@]}" | median)
echo "write path, $MIB MiB of 100-byte lines, median of $RUNS:"
echo "  direct append:                 ${d} s  ($(awk -v s="$d" -v m="$MIB" 'BEGIN{printf "%.0f", m/s}') MiB/s)"
echo "  through the executor:          ${e} s  ($(awk -v s="$e" -v m="$MIB" 'BEGIN{printf "%.0f", m/s}') MiB/s, $rotated rotations)"
echo "  executor throughput / direct:  $(awk -v d="$d" -v e="$e" 'BEGIN{printf "%.2f", d/e}')x  (target >= 0.8x)"
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
  rm -f "$WORK/seg.log.gz"
  gz+=("$( { /usr/bin/time -f '%e %U %S' gzip -6 -c "$SEG" >"$WORK/seg.gzip"; } 2>&1 | tail -1)")
done
report() {
  local name=$1; shift
  local wall cpu
  wall=$(printf '%s\n' "$@" | awk '{print $1}' | median)
  cpu=$(printf '%s\n' "$@" | awk '{print $2 + $3}' | median)
  echo "  $name: $(awk -v w="$wall" -v s="$SIZE" 'BEGIN{printf "%.0f", s/1048576/w}') MB/s, \
$(awk -v c="$cpu" -v s="$SIZE" 'BEGIN{printf "%.2f", c*1073741824/s}') CPU-s/GiB"
}
echo "compression of a $((SIZE / 1048576)) MiB segment at level 6, median of $RUNS:"
report "in-process (flate2)" "${ours[@]}"
report "gzip binary        " "${gz[@]}"
