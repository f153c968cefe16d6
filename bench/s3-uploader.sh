#!/usr/bin/env bash
# Benchmark of singularity-s3-uploader against s5cmd, both writing to the same S3-protocol
# server (singularity-test-s3, s3s-fs on loopback) in the same run. Not a test: it prints
# figures and ratios.
#
#   bench/s3-uploader.sh            3 runs of cases 1 and 2 (medians reported), 1 of case 3
#   RUNS=5 bench/s3-uploader.sh
#
# Measured (release builds, a fresh uploader daemon per run, shipped defaults):
#   1. 1000 x 64 KiB: from dropping an uploadImmediately metadata file to its deletion (the
#      uploader deletes it once every file is uploaded, confirmed by S3 and deleted locally,
#      so the last object is visible by then) vs `s5cmd cp` of the same files.
#   2. 1 x 1 GiB: the same.
#   3. a watched directory of 100 000 small files, uploaded by a regular uploader: time and
#      peak RSS.
#   Peak RSS of the daemon (VmHWM) for each; the CPU time (user + system) each side spent,
#   which moves less than wall time when other work shares the machine; the 1-minute load
#   average before each run.
#
# Needs: cargo, python3, s5cmd (scripts/services.sh up installs it), ~4 GiB free in BENCH_DIR
# (default: a new directory under /var/tmp). Everything started here is stopped by pid on
# exit. Environment: RUNS, BENCH_DIR, KEEP=1 (keep BENCH_DIR), SMALL_FILES (default 100000),
# CASES (default "small big many").
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
SMALL_FILES=${SMALL_FILES:-100000}
CASES=${CASES:-small big many}
want() { [[ " $CASES " == *" $1 "* ]]; }
ACCESS_KEY=bench-access-key
SECRET_KEY=bench-secret-key-0123456789
REGION=us-east-1

log() { printf '%s\n' "bench: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
hwm_mb() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)
# CPU seconds (user + system) a running process has used so far.
cpu_s() { awk -v hz="$CLK_TCK" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# The Go binary itself, not the Python wrapper on PATH (whose start-up would be timed too).
S5CMD=${S5CMD:-}
if [ -z "$S5CMD" ] && [ -f "$REPO/.services/env" ]; then
    S5CMD=$(sed -n "s/^export SINGULARITY_TEST_S5CMD='\(.*\)'$/\1/p" "$REPO/.services/env")
fi
S5CMD=${S5CMD:-$(command -v s5cmd || true)}
if [ -z "$S5CMD" ] || [ ! -x "$S5CMD" ]; then
    die "s5cmd not found: run scripts/services.sh up"
fi

BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/se-bench-ul-XXXXXX)}
mkdir -p "$BENCH_DIR"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$BENCH_DIR"
    fi
}
trap cleanup EXIT

log "building release binaries"
(cd "$REPO" && cargo build --release -q -p singularity-s3-uploader -p singularity-test-support \
    --bin singularity-s3-uploader --bin singularity-test-s3)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}/release
UPLOADER=$TARGET/singularity-s3-uploader

PORT=$(free_port)
ENDPOINT=http://127.0.0.1:$PORT
mkdir -p "$BENCH_DIR/s3"
"$TARGET/singularity-test-s3" --addr "127.0.0.1:$PORT" --root "$BENCH_DIR/s3" \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >"$BENCH_DIR/s3.out" 2>"$BENCH_DIR/s3.err" &
PIDS+=($!)
for _ in $(seq 100); do
    grep -q "listening on" "$BENCH_DIR/s3.out" 2>/dev/null && break
    sleep 0.05
done
grep -q "listening on" "$BENCH_DIR/s3.out" || die "the S3 server did not start"

s5() {
    env -u AWS_PROFILE -u AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID=$ACCESS_KEY \
        AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=$REGION AWS_EC2_METADATA_DISABLED=true \
        "$S5CMD" --endpoint-url "$ENDPOINT" "$@"
}

# Makes `count` files of `size` bytes in `dir` (random content).
make_files() {
    python3 - "$1" "$2" "$3" <<'EOF'
import os, sys
d, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d, exist_ok=True)
block = os.urandom(min(size, 1 << 20))
for i in range(count):
    with open(os.path.join(d, f"f{i:06d}.log.gz"), "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(os.urandom(n) if size <= 65536 else block[:n])
            left -= n
EOF
}

# Starts the uploader over $1 (metadata dir) in run dir $2, config extra in $3; sets
# UPLOADER_PID.
start_uploader() {
    local meta=$1 run=$2 extra=${3:-}
    mkdir -p "$meta" "$run/lw" "$run/cache"
    cat >"$run/uploader.yaml" <<EOF
base:
  s3UploaderMetadataDirectory: $meta
  logWatcherMetadataDirectory: $run/lw
s3:
  artifactCacheDirectory: $run/cache
  s3Endpoint: $ENDPOINT
  s3PathStyleAccess: true
  s3Region: $REGION
  s3AccessKey: $ACCESS_KEY
  s3SecretKey: $SECRET_KEY
s3uploader:
  ledgerPath: $run/ledger.db
$extra
EOF
    AWS_EC2_METADATA_DISABLED=true RUST_LOG=warn "$UPLOADER" --config-dir "$run" \
        --config "$run/uploader.yaml" >/dev/null 2>"$run/uploader.log" &
    UPLOADER_PID=$!
    PIDS+=("$UPLOADER_PID")
    # Ready once the metadata directory is watched.
    sleep 0.5
}

stop_uploader() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Metadata for directory $1, bucket $2, key prefix $3; $4 true for an immediate uploader
# (which skips the open-file check), false for a regular one (which checks /proc).
metadata_json() {
    local check_open=true
    [ "$4" = true ] && check_open=false
    printf '{"directory":"%s","fileGlob":"*.log.gz","s3Bucket":"%s","s3KeyFormat":"%s/%%filename","finished":%s,"uploadImmediately":%s,"checkIfOpen":%s,"uploaderType":"S3","gcsCredentials":{}}' \
        "$1" "$2" "$3" "$4" "$4" "$check_open"
}

# One timed run of case $1 (name): $2 files of $3 bytes, run number $4. Appends
# "<uploader s> <s5cmd s> <peak RSS MB> <uploader CPU s> <s5cmd CPU s> <load>" to
# $BENCH_DIR/results-<name>.
run_case() {
    local name=$1 count=$2 size=$3 run=$4
    local src=$BENCH_DIR/src-$name
    [ -d "$src" ] || make_files "$src" "$count" "$size"
    local bucket_s5=s5-$name-$run bucket_up=up-$name-$run
    mkdir -p "$BENCH_DIR/s3/$bucket_s5" "$BENCH_DIR/s3/$bucket_up"
    sync

    local start t_s5 t_up load cpu_s5
    load=$(load1)
    start=$(now)
    cpu_s5=$(
        TIMEFORMAT='%U %S'
        { time s5 --log error cp "$src/*" "s3://$bucket_s5/$name/" >/dev/null 2>"$BENCH_DIR/s5.err"; } 2>&1 |
            awk '{ printf "%.2f", $1 + $2 }'
    )
    t_s5=$(elapsed "$start")

    local work=$BENCH_DIR/work-$name-$run
    cp -r "$src" "$work"
    sync
    local rundir=$BENCH_DIR/run-$name-$run
    start_uploader "$rundir/meta" "$rundir"
    local pid=$UPLOADER_PID cpu_before cpu_up
    cpu_before=$(cpu_s "$pid")
    start=$(now)
    metadata_json "$work" "$bucket_up" "$name" true >"$rundir/meta/.bench.tmp"
    mv "$rundir/meta/.bench.tmp" "$rundir/meta/bench.s3.json"
    while [ -e "$rundir/meta/bench.s3.json" ]; do sleep 0.01; done
    t_up=$(elapsed "$start")
    cpu_up=$(awk -v a="$cpu_before" -v b="$(cpu_s "$pid")" 'BEGIN { printf "%.2f", b - a }')
    local hwm
    hwm=$(hwm_mb "$pid")
    stop_uploader "$pid"
    local listed
    listed=$(s5 ls "s3://$bucket_up/$name/*" | wc -l)
    [ "$listed" = "$count" ] || die "$name: $listed objects uploaded, expected $count"
    [ -z "$(ls -A "$work")" ] || die "$name: files left in $work"
    rm -rf "$BENCH_DIR/s3/$bucket_s5" "$BENCH_DIR/s3/$bucket_up" "$work"
    log "$name: uploader $t_up s (CPU $cpu_up s), s5cmd $t_s5 s (CPU $cpu_s5 s), ratio $(ratio "$t_up" "$t_s5"), peak RSS $hwm MB, load $load"
    echo "$t_up $t_s5 $hwm $cpu_up $cpu_s5 $load" >>"$BENCH_DIR/results-$name"
}

report() {
    local name=$1 results=$2
    local up s5 hwm paired cpu_up cpu_s5 loads
    up=$(awk '{ print $1 }' <<<"$results" | median)
    s5=$(awk '{ print $2 }' <<<"$results" | median)
    hwm=$(awk '{ print $3 }' <<<"$results" | sort -g | tail -1)
    # Each run's two sides share the machine's state of the moment: the median of the
    # per-run ratios is the steadier figure when the load moves between runs.
    paired=$(awk '{ printf "%.3f\n", $1 / $2 }' <<<"$results" | median)
    cpu_up=$(awk '{ print $4 }' <<<"$results" | median)
    cpu_s5=$(awk '{ print $5 }' <<<"$results" | median)
    loads=$(awk '{ printf "%s%s", sep, $6; sep = "," }' <<<"$results")
    printf '%-16s uploader %7.3f s   s5cmd %7.3f s   ratio %s (per-run median %.2f)   CPU %s s vs %s s   peak RSS %s MB   load %s\n' \
        "$name" "$up" "$s5" "$(ratio "$up" "$s5")" "$paired" "$cpu_up" "$cpu_s5" "$hwm" "$loads"
}

for run in $(seq "$RUNS"); do
    if want small; then
        log "run $run/$RUNS: 1000 x 64 KiB"
        run_case small 1000 65536 "$run"
    fi
    if want big; then
        log "run $run/$RUNS: 1 x 1 GiB"
        run_case big 1 1073741824 "$run"
    fi
done

if want many; then
    log "case 3: a watched directory of $SMALL_FILES small files"
    many=$BENCH_DIR/many
    make_files "$many" "$SMALL_FILES" 512
    sync
    rundir=$BENCH_DIR/run-many
    start_uploader "$rundir/meta" "$rundir" "  checkUploadsEverySeconds: 5"
    pid=$UPLOADER_PID
    mkdir -p "$BENCH_DIR/s3/up-many"
    load_many=$(load1)
    cpu_before=$(cpu_s "$pid")
    start=$(now)
    metadata_json "$many" up-many many false >"$rundir/meta/.many.tmp"
    mv "$rundir/meta/.many.tmp" "$rundir/meta/many.s3.json"
    while [ -n "$(find "$many" -maxdepth 1 -type f -print -quit)" ]; do
        sleep 0.5
    done
    t_many=$(elapsed "$start")
    cpu_many=$(awk -v a="$cpu_before" -v b="$(cpu_s "$pid")" 'BEGIN { printf "%.1f", b - a }')
    peak=$(hwm_mb "$pid")
    stop_uploader "$pid"
fi

echo
echo "singularity-s3-uploader vs s5cmd cp, same server, medians of $RUNS (lower ratio is better)"
if want small; then report "1000 x 64 KiB" "$(cat "$BENCH_DIR/results-small")"; fi
if want big; then report "1 x 1 GiB" "$(cat "$BENCH_DIR/results-big")"; fi
if want many; then
    printf '%-16s uploader %7.3f s   (%s files of 512 B, regular uploader)   CPU %s s   peak RSS %s MB   load %s\n' \
        "$SMALL_FILES files" "$t_many" "$SMALL_FILES" "$cpu_many" "$peak" "$load_many"
fi
