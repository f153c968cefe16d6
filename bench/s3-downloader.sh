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
#   2. 50 x 20 MiB:   50 concurrent POSTs vs one s5cmd cp of the 50 objects
#   3. 16 identical concurrent POSTs of the 1 GiB object vs 1 POST
#   4. peak RSS of the daemon (VmHWM) during each of the above
# and, for 1 and 2, the CPU seconds the daemon (or s5cmd) and the S3 server used, and the
# load average when each measurement started: the server shares the machine, so CPU spent
# by the client is time taken from the server.
#
# Needs: cargo, curl, md5sum, s5cmd (scripts/services.sh up installs it), ~6 GiB free in
# BENCH_DIR (default: a new directory under /var/tmp). Everything started here is stopped by
# pid on exit. Environment: RUNS, BENCH_DIR, KEEP=1 (keep BENCH_DIR), DAEMON (another build
# of the daemon to measure, e.g. a copy of an earlier one), and the daemon's transfer settings
# DOWNLOAD_PART_SIZE_BYTES, DOWNLOAD_PART_CONCURRENCY, NUM_DOWNLOADER_THREADS (defaults: the
# shipped ones).
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
    env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL -u AWS_CA_BUNDLE \
        AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" AWS_REGION="$REGION" \
        AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        "$S5CMD" --endpoint-url "$S3_ENDPOINT" "$@"
}

# --- objects -------------------------------------------------------------------------------
log "writing and uploading 1 x 1 GiB and 50 x 20 MiB of random data"
SRC="$BENCH_DIR/src"
mkdir -p "$SRC/small"
head -c 1G /dev/urandom >"$SRC/big.bin"
for i in $(seq -w 1 50); do head -c 20M /dev/urandom >"$SRC/small/$i.bin"; done
s5 cp "$SRC/big.bin" "s3://$BUCKET/big/big.bin" >/dev/null
s5 cp "$SRC/small/*" "s3://$BUCKET/small/" >/dev/null
BIG_MD5=$(md5sum "$SRC/big.bin" | cut -d' ' -f1)
declare -A SMALL_MD5
for f in "$SRC"/small/*.bin; do
    SMALL_MD5[$(basename "$f")]=$(md5sum "$f" | cut -d' ' -f1)
done
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
    AWS_EC2_METADATA_DISABLED=true RUST_LOG=warn "$DAEMON" --config-dir "$ETC" 2>>"$BENCH_DIR/daemon.log" &
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
post() {
    local code
    code=$(curl -sS -o "$BENCH_DIR/answer.$BASHPID" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' \
        --data-binary "{\"targetDirectory\":\"$4\",\"timeoutMillis\":600000,\"s3Artifact\":{\"name\":\"$2\",\"filename\":\"$2\",\"md5sum\":\"$3\",\"s3Bucket\":\"$BUCKET\",\"s3ObjectKey\":\"$1\"}}" \
        "http://127.0.0.1:$DL_PORT/download")
    [ "$code" = 200 ] || die "POST $1 answered $code: $(cat "$BENCH_DIR/answer.$BASHPID")"
    rm -f "$BENCH_DIR/answer.$BASHPID"
}
export -f post die log
export BENCH_DIR BUCKET DL_PORT

declare -a T_FETCH_BIG T_S5_BIG T_DL_BIG T_S5_SMALL T_DL_SMALL T_ONE T_SIXTEEN HWM_BIG HWM_SMALL HWM_SIXTEEN
declare -a C_S5_BIG C_DL_BIG C_S5_SMALL C_DL_SMALL S_S5_BIG S_DL_BIG S_S5_SMALL S_DL_SMALL LOADS

for run in $(seq "$RUNS"); do
    log "run $run of $RUNS"
    OUT="$BENCH_DIR/out"

    # 1. 1 x 1 GiB; the order alternates between runs.
    for who in $( ((run % 2)) && echo "s5cmd daemon" || echo "daemon s5cmd"); do
        rm -rf "$OUT" "${MESOS:?}"/*
        mkdir -p "$OUT"
        sync
        if [ "$who" = s5cmd ]; then
            LOADS+=("$(load1)")
            server=$(cpu_of "$S3_PID")
            times >"$BENCH_DIR/times.0"
            t=$(now)
            s5 cp "s3://$BUCKET/big/big.bin" "$OUT/big.bin" >/dev/null
            T_S5_BIG+=("$(elapsed "$t")")
            times >"$BENCH_DIR/times.1"
            S_S5_BIG+=("$(minus "$(cpu_of "$S3_PID")" "$server")")
            C_S5_BIG+=("$(minus "$(children_cpu "$BENCH_DIR/times.1")" "$(children_cpu "$BENCH_DIR/times.0")")")
        else
            start_daemon
            LOADS+=("$(load1)")
            server=$(cpu_of "$S3_PID")
            daemon=$(cpu_of "$DAEMON_PID")
            t=$(now)
            post big/big.bin big.bin "$BIG_MD5" "$MESOS/task-big"
            T_DL_BIG+=("$(elapsed "$t")")
            S_DL_BIG+=("$(minus "$(cpu_of "$S3_PID")" "$server")")
            C_DL_BIG+=("$(minus "$(cpu_of "$DAEMON_PID")" "$daemon")")
            T_FETCH_BIG+=("$(metric s3_downloader_download_duration_seconds_sum)")
            stop_daemon
            HWM_BIG+=("$HWM")
            [ "$(md5sum "$MESOS/task-big/big.bin" | cut -d' ' -f1)" = "$BIG_MD5" ] || die "big.bin placed wrong"
        fi
    done

    # 2. 50 x 20 MiB.
    for who in $( ((run % 2)) && echo "s5cmd daemon" || echo "daemon s5cmd"); do
        rm -rf "$OUT" "${MESOS:?}"/*
        mkdir -p "$OUT"
        sync
        if [ "$who" = s5cmd ]; then
            LOADS+=("$(load1)")
            server=$(cpu_of "$S3_PID")
            times >"$BENCH_DIR/times.0"
            t=$(now)
            s5 cp "s3://$BUCKET/small/*" "$OUT/" >/dev/null
            T_S5_SMALL+=("$(elapsed "$t")")
            times >"$BENCH_DIR/times.1"
            S_S5_SMALL+=("$(minus "$(cpu_of "$S3_PID")" "$server")")
            C_S5_SMALL+=("$(minus "$(children_cpu "$BENCH_DIR/times.1")" "$(children_cpu "$BENCH_DIR/times.0")")")
        else
            start_daemon
            LOADS+=("$(load1)")
            server=$(cpu_of "$S3_PID")
            daemon=$(cpu_of "$DAEMON_PID")
            t=$(now)
            for name in "${!SMALL_MD5[@]}"; do
                echo "small/$name $name ${SMALL_MD5[$name]} $MESOS/task-${name%.bin}"
            done | xargs -P 50 -L 1 bash -c 'post "$@"' _
            T_DL_SMALL+=("$(elapsed "$t")")
            S_DL_SMALL+=("$(minus "$(cpu_of "$S3_PID")" "$server")")
            C_DL_SMALL+=("$(minus "$(cpu_of "$DAEMON_PID")" "$daemon")")
            stop_daemon
            HWM_SMALL+=("$HWM")
            [ "$(find "$MESOS" -name '*.bin' | wc -l)" = 50 ] || die "not all 50 objects placed"
        fi
    done

    # 3. 16 identical concurrent requests vs one, 1 GiB, cold each time.
    rm -rf "$OUT" "${MESOS:?}"/*
    sync
    start_daemon
    LOADS+=("$(load1)")
    t=$(now)
    post big/big.bin big.bin "$BIG_MD5" "$MESOS/task-one"
    T_ONE+=("$(elapsed "$t")")
    stop_daemon
    rm -rf "${MESOS:?}"/*
    sync
    start_daemon
    LOADS+=("$(load1)")
    t=$(now)
    for _ in $(seq 16); do
        echo "big/big.bin big.bin $BIG_MD5 $MESOS/task-same"
    done | xargs -P 16 -L 1 bash -c 'post "$@"' _
    T_SIXTEEN+=("$(elapsed "$t")")
    stop_daemon
    HWM_SIXTEEN+=("$HWM")
done
rm -rf "$BENCH_DIR/out" "${MESOS:?}"/*

s5_big=$(printf '%s\n' "${T_S5_BIG[@]}" | median)
dl_big=$(printf '%s\n' "${T_DL_BIG[@]}" | median)
s5_small=$(printf '%s\n' "${T_S5_SMALL[@]}" | median)
dl_small=$(printf '%s\n' "${T_DL_SMALL[@]}" | median)
fetch_big=$(printf '%s\n' "${T_FETCH_BIG[@]}" | median)
one=$(printf '%s\n' "${T_ONE[@]}" | median)
sixteen=$(printf '%s\n' "${T_SIXTEEN[@]}" | median)
max_kib() { printf '%s\n' "$@" | sort -n | tail -1; }
med() { printf '%s\n' "$@" | median; }
load_min=$(printf '%s\n' "${LOADS[@]}" | sort -g | head -1)
load_max=$(printf '%s\n' "${LOADS[@]}" | sort -g | tail -1)
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

cat <<EOF

singularity-s3-downloader vs s5cmd $("$S5CMD" version 2>/dev/null | head -1), $RUNS runs, medians (seconds)
settings: ${DOWNLOAD_PART_SIZE_BYTES:-default} part size, ${DOWNLOAD_PART_CONCURRENCY:-default} parts in flight, ${NUM_DOWNLOADER_THREADS:-default} downloads at once

| case | daemon | s5cmd | daemon / s5cmd |
|---|---|---|---|
| 1 x 1 GiB, cold | $dl_big | $s5_big | $(ratio "$dl_big" "$s5_big") |
| (of which S3 to cache) | $fetch_big | | |
| 50 x 20 MiB, cold | $dl_small | $s5_small | $(ratio "$dl_small" "$s5_small") |

| case | 16 identical requests | 1 request | ratio |
|---|---|---|---|
| 1 GiB, cold | $sixteen | $one | $(ratio "$sixteen" "$one") |

| CPU seconds, medians | daemon | S3 server | s5cmd | S3 server |
|---|---|---|---|---|
| 1 x 1 GiB | $(med "${C_DL_BIG[@]}") | $(med "${S_DL_BIG[@]}") | $(med "${C_S5_BIG[@]}") | $(med "${S_S5_BIG[@]}") |
| 50 x 20 MiB | $(med "${C_DL_SMALL[@]}") | $(med "${S_DL_SMALL[@]}") | $(med "${C_S5_SMALL[@]}") | $(med "${S_S5_SMALL[@]}") |

| peak RSS of the daemon (VmHWM, MiB) | max over runs |
|---|---|
| during 1 x 1 GiB | $(mib "$(max_kib "${HWM_BIG[@]}")") |
| during 50 x 20 MiB | $(mib "$(max_kib "${HWM_SMALL[@]}")") |
| during 16 x 1 GiB identical | $(mib "$(max_kib "${HWM_SIXTEEN[@]}")") |

load average (1 min) at the start of the measurements: $load_min to $load_max, $(nproc) CPUs
raw: s5cmd 1 GiB ${T_S5_BIG[*]} | daemon 1 GiB ${T_DL_BIG[*]} (S3 to cache ${T_FETCH_BIG[*]}) | s5cmd 50x20 MiB ${T_S5_SMALL[*]} | daemon 50x20 MiB ${T_DL_SMALL[*]} | 1 request ${T_ONE[*]} | 16 requests ${T_SIXTEEN[*]}
EOF
