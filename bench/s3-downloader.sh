#!/usr/bin/env bash
# Benchmark of singularity-s3-downloader against s5cmd, both reading the same S3-protocol
# server (singularity-test-s3, s3s-fs on loopback) in the same run. Not a test: it prints
# figures and ratios.
#
#   bench/s3-downloader.sh            3 runs (medians reported)
#   RUNS=5 bench/s3-downloader.sh
#
# Measured, each with a cold cache (a fresh daemon over an empty cache directory):
#   1. 1 x 1 GiB:     POST /download (download, md5 check, copy into the target) vs s5cmd cp
#   2. 50 x 20 MiB:   50 POSTs sent at once by one curl process vs one s5cmd cp of the 50
#                     objects
#   3. 16 identical POSTs of the 1 GiB object, sent at once, vs 1 POST
#   4. peak RSS of the daemon (VmHWM) during each of the above
# and, for 1 and 2, the CPU seconds the daemon (or s5cmd) and the S3 server used, and the
# load average when each measurement started.
#
# CPU placement (CPUS):
#   split   the S3 server runs on CPU 0 and the clients (daemon, s5cmd, curl) on the others,
#           as on an agent, where S3 is another machine: this measures the time to download;
#   shared  every process may run on every CPU: the clients take their CPU from the server's,
#           so on a small machine this compares how much CPU each client uses;
#   both    (default) both placements in each run; case 3 runs in the last one.
#
# Needs: cargo, curl, md5sum, taskset, s5cmd (scripts/services.sh up installs it), ~6 GiB free
# in BENCH_DIR (default: a new directory under /var/tmp). Everything started here is stopped
# by pid on exit. Environment: RUNS, CPUS, CASES (default "big small same": cases 1, 2, 3),
# BENCH_DIR, KEEP=1 (keep BENCH_DIR), DAEMON (another build of the daemon to measure, e.g. a
# copy of an earlier one), and the daemon's transfer settings DOWNLOAD_PART_SIZE_BYTES,
# DOWNLOAD_PART_CONCURRENCY, NUM_DOWNLOADER_THREADS (defaults: the shipped ones).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
BUCKET=bench
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
# CPU seconds (user + system) a live process has used.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# CPU seconds (user + system) of this shell's finished children, from `times` output in $1.
children_cpu() { awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$1"; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
load1() { cut -d' ' -f1 /proc/loadavg; }

CASES=${CASES:-big small same}
want() { [[ " $CASES " == *" $1 "* ]]; }
CPUS=${CPUS:-both}
case $CPUS in
    both) PLACEMENTS="split shared" ;;
    split | shared) PLACEMENTS=$CPUS ;;
    *) die "CPUS must be split, shared or both, not '$CPUS'" ;;
esac
LAST_CPU=$(($(nproc) - 1))
if [[ $PLACEMENTS == *split* ]]; then
    ((LAST_CPU >= 1)) || die "CPUS=split needs at least 2 CPUs"
    command -v taskset >/dev/null || die "taskset not found (util-linux)"
fi
PLACEMENT=shared
# The prefix that runs a client (daemon, s5cmd, curl) on the CPUs of the current placement;
# taskset executes the command itself, so $! stays the client's pid.
CLIENT=()
# place_server: moves every thread of the S3 server to the CPUs of the current placement
# and sets CLIENT for it.
place_server() {
    local cpus="0-$LAST_CPU"
    CLIENT=()
    if [ "$PLACEMENT" = split ]; then
        cpus=0
        CLIENT=(taskset -c "1-$LAST_CPU")
    fi
    taskset -a -p -c "$cpus" "$S3_PID" >/dev/null
}

# The Go binary itself, not the Python wrapper on PATH (whose start-up would be timed too).
S5CMD=${S5CMD:-}
if [ -z "$S5CMD" ] && [ -f "$REPO/.services/env" ]; then
    S5CMD=$(sed -n "s/^export SINGULARITY_TEST_S5CMD='\(.*\)'$/\1/p" "$REPO/.services/env")
fi
S5CMD=${S5CMD:-$(command -v s5cmd || true)}
if [ -z "$S5CMD" ] || [ ! -x "$S5CMD" ]; then
    die "s5cmd not found: run scripts/services.sh up"
fi
command -v curl >/dev/null || die "curl not found"

BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/se-bench-dl-XXXXXX)}
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
(cd "$REPO" && cargo build --release --quiet -p singularity-s3-downloader -p singularity-test-support --bins)
DAEMON=${DAEMON:-$REPO/target/release/singularity-s3-downloader}
S3_SERVER="$REPO/target/release/singularity-test-s3"

# --- S3 server -----------------------------------------------------------------------------
S3_PORT=$(free_port)
S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
mkdir -p "$BENCH_DIR/s3/$BUCKET"
"$S3_SERVER" --addr "127.0.0.1:$S3_PORT" --root "$BENCH_DIR/s3" \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >"$BENCH_DIR/s3.out" 2>"$BENCH_DIR/s3.log" &
S3_PID=$!
PIDS+=("$S3_PID")
for _ in $(seq 100); do
    grep -q listening "$BENCH_DIR/s3.out" 2>/dev/null && break
    sleep 0.1
done
grep -q listening "$BENCH_DIR/s3.out" || die "the S3 server did not start: $(cat "$BENCH_DIR/s3.log")"

s5() {
    "${CLIENT[@]}" env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL -u AWS_CA_BUNDLE \
        AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" AWS_REGION="$REGION" \
        AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        "$S5CMD" --endpoint-url "$S3_ENDPOINT" "$@"
}

# --- objects -------------------------------------------------------------------------------
log "writing and uploading the objects (random data)"
SRC="$BENCH_DIR/src"
mkdir -p "$SRC/small"
BIG_MD5=
if want big || want same; then
    head -c 1G /dev/urandom >"$SRC/big.bin"
    s5 cp "$SRC/big.bin" "s3://$BUCKET/big/big.bin" >/dev/null
    BIG_MD5=$(md5sum "$SRC/big.bin" | cut -d' ' -f1)
fi
declare -A SMALL_MD5
if want small; then
    for i in $(seq -w 1 50); do head -c 20M /dev/urandom >"$SRC/small/$i.bin"; done
    s5 cp "$SRC/small/*" "s3://$BUCKET/small/" >/dev/null
    for f in "$SRC"/small/*.bin; do
        SMALL_MD5[$(basename "$f")]=$(md5sum "$f" | cut -d' ' -f1)
    done
fi
rm -rf "$SRC"

# --- daemon --------------------------------------------------------------------------------
ETC="$BENCH_DIR/etc"
MESOS="$BENCH_DIR/mesos"
mkdir -p "$ETC" "$BENCH_DIR/meta/uploader" "$BENCH_DIR/meta/logwatcher" "$MESOS" "$BENCH_DIR/cache"
DL_PORT=$(free_port)
cat >"$ETC/singularity.base.yaml" <<EOF
s3UploaderMetadataDirectory: $BENCH_DIR/meta/uploader
logWatcherMetadataDirectory: $BENCH_DIR/meta/logwatcher
EOF
cat >"$ETC/singularity.s3base.yaml" <<EOF
artifactCacheDirectory: $BENCH_DIR/cache
s3AccessKey: $ACCESS_KEY
s3SecretKey: $SECRET_KEY
s3Endpoint: $S3_ENDPOINT
s3PathStyleAccess: true
s3Region: $REGION
localDownloadHttpPort: $DL_PORT
EOF
{
    echo "allowedTargetDirectories: [$MESOS]"
    echo "artifactCacheMaxBytes: 8589934592"
    [ -n "${DOWNLOAD_PART_SIZE_BYTES:-}" ] && echo "downloadPartSizeBytes: $DOWNLOAD_PART_SIZE_BYTES"
    [ -n "${DOWNLOAD_PART_CONCURRENCY:-}" ] && echo "downloadPartConcurrency: $DOWNLOAD_PART_CONCURRENCY"
    [ -n "${NUM_DOWNLOADER_THREADS:-}" ] && echo "numDownloaderThreads: $NUM_DOWNLOADER_THREADS"
    true
} >"$ETC/singularity.s3downloader.yaml"
"$DAEMON" --config-dir "$ETC" --check-config >/dev/null || die "invalid bench configuration"

DAEMON_PID=
start_daemon() {
    rm -rf "$BENCH_DIR/cache"
    mkdir -p "$BENCH_DIR/cache"
    AWS_EC2_METADATA_DISABLED=true RUST_LOG=warn "${CLIENT[@]}" "$DAEMON" --config-dir "$ETC" 2>>"$BENCH_DIR/daemon.log" &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    for _ in $(seq 200); do
        curl -fsS "http://127.0.0.1:$DL_PORT/healthz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    die "the daemon did not start: $(tail -5 "$BENCH_DIR/daemon.log")"
}
# Stops the daemon, leaving its peak RSS in KiB in HWM. Not for a subshell: it waits for
# its child.
HWM=
stop_daemon() {
    local status=0
    HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID" || status=$?
    [ "$status" = 0 ] || die "the daemon exited with $status"
}

# metric NAME: the value of an unlabelled sample of the daemon's /metrics.
metric() {
    curl -fsS "http://127.0.0.1:$DL_PORT/metrics" | awk -v name="$1" '$1 == name { printf "%.3f", $2 }'
}

# post KEY FILENAME MD5 TARGET: one download request; fails unless the answer is 200.
# prepare_posts NAME: reads "KEY FILENAME MD5 TARGET" lines and writes a curl config that
# sends them all at once from one process (as an executor staging several artifacts does),
# so that starting 50 shells and curls is not timed as the daemon's.
prepare_posts() {
    local dir="$BENCH_DIR/posts-$1" n=0 key name md5 target
    rm -rf "$dir"
    mkdir -p "$dir"
    while read -r key name md5 target; do
        n=$((n + 1))
        printf '{"targetDirectory":"%s","timeoutMillis":600000,"s3Artifact":{"name":"%s","filename":"%s","md5sum":"%s","s3Bucket":"%s","s3ObjectKey":"%s"}}' \
            "$target" "$name" "$name" "$md5" "$BUCKET" "$key" >"$dir/$n.json"
        echo "$target" >>"$dir/targets"
        {
            ((n > 1)) && echo next
            echo "url = \"http://127.0.0.1:$DL_PORT/download\""
            echo 'header = "Content-Type: application/json"'
            echo "data-binary = \"@$dir/$n.json\""
            echo "output = \"$dir/$n.answer\""
            printf '%s\n' 'write-out = "%{http_code}\n"'
        } >>"$dir/curl.config"
    done
}
# make_targets NAME: creates the target directories of the posts prepared as NAME, as an
# executor creates the task's directory before it stages artifacts.
make_targets() {
    xargs mkdir -p <"$BENCH_DIR/posts-$1/targets"
}
# post_prepared NAME: sends what prepare_posts NAME prepared; fails unless every answer is 200.
post_prepared() {
    local dir="$BENCH_DIR/posts-$1" codes
    codes=$("${CLIENT[@]}" curl -sS --no-progress-meter --parallel --parallel-immediate --parallel-max 64 --config "$dir/curl.config") ||
        die "curl failed for $1"
    if [ "$(grep -c '^200$' <<<"$codes")" != "$(find "$dir" -name '*.json' | wc -l)" ]; then
        die "not every request of $1 answered 200: $(sort <<<"$codes" | uniq -c | tr '\n' ' ') $(cat "$dir"/*.answer)"
    fi
}

# Samples by "placement:measure", space-separated.
declare -A T
add() { T[$1]="${T[$1]:-} $2"; }
values() { tr ' ' '\n' <<<"${T[$1]:-}" | sed '/^$/d'; }

# compare CASE SOURCE DEST CHECK: downloads CASE's objects with s5cmd (`cp SOURCE DEST`) and
# with a fresh daemon (the posts prepared as CASE), in an order alternating between runs,
# and records the times and CPU seconds under the current placement; CHECK verifies what
# the daemon placed.
compare() {
    local c=$1 who server daemon t
    for who in $( ((run % 2)) && echo "s5cmd daemon" || echo "daemon s5cmd"); do
        rm -rf "$OUT" "${MESOS:?}"/*
        mkdir -p "$OUT"
        sync
        if [ "$who" = s5cmd ]; then
            add load "$(load1)"
            server=$(cpu_of "$S3_PID")
            times >"$BENCH_DIR/times.0"
            t=$(now)
            s5 cp "$2" "$3" >/dev/null
            add "$P:s5_$c" "$(elapsed "$t")"
            times >"$BENCH_DIR/times.1"
            add "$P:s5_${c}_server_cpu" "$(minus "$(cpu_of "$S3_PID")" "$server")"
            add "$P:s5_${c}_cpu" "$(minus "$(children_cpu "$BENCH_DIR/times.1")" "$(children_cpu "$BENCH_DIR/times.0")")"
        else
            make_targets "$c"
            start_daemon
            add load "$(load1)"
            server=$(cpu_of "$S3_PID")
            daemon=$(cpu_of "$DAEMON_PID")
            t=$(now)
            post_prepared "$c"
            add "$P:dl_$c" "$(elapsed "$t")"
            add "$P:dl_${c}_server_cpu" "$(minus "$(cpu_of "$S3_PID")" "$server")"
            add "$P:dl_${c}_cpu" "$(minus "$(cpu_of "$DAEMON_PID")" "$daemon")"
            add "$P:fetch_$c" "$(metric s3_downloader_download_duration_seconds_sum)"
            stop_daemon
            add "$P:hwm_$c" "$HWM"
            "$4"
        fi
    done
}
check_big() {
    [ "$(md5sum "$MESOS/task-big/big.bin" | cut -d' ' -f1)" = "$BIG_MD5" ] || die "big.bin placed wrong"
}
check_small() {
    [ "$(find "$MESOS" -name '*.bin' | wc -l)" = 50 ] || die "not all 50 objects placed"
}

echo "big/big.bin big.bin $BIG_MD5 $MESOS/task-big" | prepare_posts big
echo "big/big.bin big.bin $BIG_MD5 $MESOS/task-one" | prepare_posts one
for _ in $(seq 16); do
    echo "big/big.bin big.bin $BIG_MD5 $MESOS/task-same"
done | prepare_posts same
for name in "${!SMALL_MD5[@]}"; do
    echo "small/$name $name ${SMALL_MD5[$name]} $MESOS/task-${name%.bin}"
done | prepare_posts small

# timed DAEMON_CASE SAMPLE: the time a fresh daemon takes to answer the posts prepared as
# DAEMON_CASE, from a cold cache.
timed() {
    rm -rf "$OUT" "${MESOS:?}"/*
    make_targets "$1"
    sync
    start_daemon
    add load "$(load1)"
    local t
    t=$(now)
    post_prepared "$1"
    add "$2" "$(elapsed "$t")"
    stop_daemon
}

for run in $(seq "$RUNS"); do
    log "run $run of $RUNS"
    OUT="$BENCH_DIR/out"
    for PLACEMENT in $PLACEMENTS; do
        place_server
        P=$PLACEMENT
        # 1. 1 x 1 GiB.
        want big && compare big "s3://$BUCKET/big/big.bin" "$OUT/big.bin" check_big
        # 2. 50 x 20 MiB.
        want small && compare small "s3://$BUCKET/small/*" "$OUT/" check_small
    done
    # 3. 16 identical concurrent requests vs one, 1 GiB, cold each time (last placement).
    if want same; then
        timed one one
        timed same sixteen
        add hwm_sixteen "$HWM"
    fi
done
rm -rf "$BENCH_DIR/out" "${MESOS:?}"/*

med() { values "$1" | median; }
max_mib() { values "$1" | sort -n | tail -1 | awk '{ printf "%.1f", $1 / 1024 }'; }
raw() { echo "${T[$1]:-}"; }

cat <<EOF

singularity-s3-downloader vs s5cmd $("$S5CMD" version 2>/dev/null | head -1), $RUNS runs, medians (seconds)
settings: ${DOWNLOAD_PART_SIZE_BYTES:-default} part size, ${DOWNLOAD_PART_CONCURRENCY:-default} parts in flight, ${NUM_DOWNLOADER_THREADS:-default} downloads at once
EOF
for P in $PLACEMENTS; do
    want big || want small || break
    echo
    if [ "$P" = split ]; then
        echo "CPUs split: the S3 server on CPU 0, the clients on CPUs 1-$LAST_CPU"
    else
        echo "CPUs shared: the S3 server and the clients on all $(nproc) CPUs"
    fi
    echo
    echo "| case | daemon | s5cmd | daemon / s5cmd | CPU s: daemon, S3 server | CPU s: s5cmd, S3 server |"
    echo "|---|---|---|---|---|---|"
    for c in big small; do
        want "$c" || continue
        label="1 x 1 GiB, cold"
        [ "$c" = small ] && label="50 x 20 MiB, cold"
        echo "| $label | $(med "$P:dl_$c") | $(med "$P:s5_$c") | $(ratio "$(med "$P:dl_$c")" "$(med "$P:s5_$c")") | $(med "$P:dl_${c}_cpu"), $(med "$P:dl_${c}_server_cpu") | $(med "$P:s5_${c}_cpu"), $(med "$P:s5_${c}_server_cpu") |"
    done
    want big && echo "| (1 GiB: S3 to cache) | $(med "$P:fetch_big") | | | | |"
    echo
    echo "raw: s5cmd 1 GiB: $(raw "$P:s5_big") | daemon 1 GiB: $(raw "$P:dl_big") | s5cmd 50 x 20 MiB: $(raw "$P:s5_small") | daemon 50 x 20 MiB: $(raw "$P:dl_small")"
done
if want same; then
    cat <<EOF

| case ($PLACEMENT CPUs) | 16 identical requests | 1 request | ratio |
|---|---|---|---|
| 1 GiB, cold | $(med sixteen) | $(med one) | $(ratio "$(med sixteen)" "$(med one)") |
EOF
fi
echo
echo "| peak RSS of the daemon (VmHWM, MiB) | max over runs |"
echo "|---|---|"
for P in $PLACEMENTS; do
    want big && echo "| during 1 x 1 GiB ($P CPUs) | $(max_mib "$P:hwm_big") |"
    want small && echo "| during 50 x 20 MiB ($P CPUs) | $(max_mib "$P:hwm_small") |"
done
want same && echo "| during 16 x 1 GiB identical | $(max_mib hwm_sixteen) |"
cat <<EOF

load average (1 min) at the start of the measurements: $(values load | sort -g | head -1) to $(values load | sort -g | tail -1), $(nproc) CPUs
raw: 1 request: $(raw one) | 16 requests: $(raw sixteen)
EOF
