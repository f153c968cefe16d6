#!/usr/bin/env bash
# Benchmark of singularity-executor-cleanup: one run over TASKS finished task definitions with
# their sandboxes (default 2000), against the Singularity API stand-in
# (singularity-fake-singularity) on loopback. Not a test: it prints figures and a ratio.
#
#   bench/executor-cleanup.sh
#   TASKS=5000 bench/executor-cleanup.sh
#
# Each sandbox is a copy of one made by the real executor (standalone `run`): app/ with a few
# files, the task definition and its upload metadata, and, as an executor killed mid-task
# leaves it, a live service.log of LINES lines (default 2000, ~55 KiB) with nothing rotated. Singularity reports every task finished 30 minutes ago, so each one is
# cleaned in full: logs rotated and compressed, tail file, metadata finished, app/ removed,
# definition deleted. Measured: wall time and peak RSS (VmHWM) of the cleanup run, and the
# same file work done by a named peer on a fresh copy of the tree in the same run: `gzip` of
# each service.log, `tail` into the tail file, `rm -rf app` and `rm` of the definition, over
# `xargs -P 8` (8 = the default cleanupThreads).
#
# Needs: cargo, python3, ~200 MiB free in BENCH_DIR (default: a new directory under
# /var/tmp). Everything started here is stopped by pid on exit. Environment: TASKS, LINES,
# BENCH_DIR, KEEP=1 (keep BENCH_DIR), PROFILE (release | dev, default release), BUILD=0 (use
# the binaries already built).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TASKS=${TASKS:-2000}
LINES=${LINES:-2000}
PROFILE=${PROFILE:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case "$PROFILE" in
    release) BIN=$TARGET_DIR/release ;;
    dev) BIN=$TARGET_DIR/debug ;;
    *) echo "PROFILE must be release or dev" >&2; exit 2 ;;
esac

log() { printf '%s\n' "bench: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/bench-executor-cleanup.XXXXXX)}
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$BENCH_DIR"; fi
}
trap cleanup EXIT

if [ "${BUILD:-1}" = 1 ]; then
    log "building (profile $PROFILE)"
    (cd "$REPO" && cargo build --quiet --profile "$PROFILE" -p singularity-executor-cleanup \
        -p singularity-fake-singularity && cargo build --quiet -p singularity-executor)
fi
EXECUTOR=$TARGET_DIR/debug/singularity-executor
CLEANUP=$BIN/singularity-executor-cleanup
FAKE=$BIN/singularity-fake-singularity

# One agent layout; `make_tree DIR` fills DIR/agent with TASKS copies of the template task.
mkdir -p "$BENCH_DIR/template"
make_config() {
    local root=$1
    mkdir -p "$root"/{etc,sandbox,tasks,s3-metadata,tail-metadata,results,cache,logrotate.d/hourly,cron.d}
    cat >"$root/etc/singularity.base.yaml" <<EOF
s3UploaderMetadataDirectory: $root/s3-metadata
logWatcherMetadataDirectory: $root/tail-metadata
hostname: bench-host
EOF
    echo "artifactCacheDirectory: $root/cache" >"$root/etc/singularity.s3base.yaml"
    cat >"$root/etc/singularity.executor.yaml" <<EOF
globalTaskDefinitionDirectory: $root/tasks
defaultRunAsUser: $(id -un)
logrotateConfDirectory: $root/logrotate.d
logrotateHourlyConfDirectory: $root/logrotate.d/hourly
cronDirectory: $root/cron.d
s3UploaderBucket: bench-logs
EOF
}

log "making the template task with the real executor"
T=$BENCH_DIR/template
make_config "$T"
TEMPLATE_ID="bench-dep1-1700000000000-1-benchhost-rack1"
cat >"$T/task.json" <<EOF
{"taskId": "$TEMPLATE_ID", "requestId": "bench", "id": "dep1",
 "executorData": {"cmd": "for i in \$(seq 1 $LINES); do echo line \$i of the task output; done; mkdir -p data; for f in a b c d; do head -c 4096 /dev/urandom > data/\$f; done", "embeddedArtifacts": [], "user": "$(id -un)"}}
EOF
"$EXECUTOR" --config-dir "$T/etc" run "$T/task.json" --sandbox "$T/sandbox" >/dev/null 2>"$T/executor.log" ||
    die "the executor failed: $(cat "$T/executor.log")"

# TASKS copies under $1, the definitions and metadata rewritten with each copy's id and paths.
make_tree() {
    local root=$1
    make_config "$root"
    python3 - "$T" "$root" "$TEMPLATE_ID" "$TASKS" "$LINES" <<'PY'
import json, os, shutil, sys
template, root, tid, count, lines = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
service_log = "".join("line %d of the task output\n" % i for i in range(1, lines + 1))
src_dir = os.path.join(template, "sandbox", tid)
definition_path = os.path.join(template, "tasks", tid + ".task.json")
definition = open(definition_path).read()
# The copies keep the template's write time: its executor is dead, and a pid reused since
# must not look like a live executor of a definition written later.
written = os.stat(definition_path)
metas = [n for n in os.listdir(os.path.join(template, "s3-metadata")) if n.startswith(tid)]
for n in range(count):
    new = tid.replace("bench-dep1", "bench%05d-dep1" % n)
    dest = os.path.join(root, "sandbox", new)
    shutil.copytree(src_dir, dest, symlinks=True)
    # As an executor killed mid-task leaves it: every line in a live service.log, nothing
    # rotated yet.
    shutil.rmtree(os.path.join(dest, "logs"), ignore_errors=True)
    os.makedirs(os.path.join(dest, "logs"), exist_ok=True)
    for stale in ("tail_of_finished_service.log",):
        if os.path.exists(os.path.join(dest, stale)):
            os.remove(os.path.join(dest, stale))
    with open(os.path.join(dest, "service.log"), "w") as log:
        log.write(service_log)
    text = definition.replace(tid, new).replace(template, root)
    copy = os.path.join(root, "tasks", new + ".task.json")
    open(copy, "w").write(text)
    os.utime(copy, (written.st_atime, written.st_mtime))
    for m in metas:
        body = open(os.path.join(template, "s3-metadata", m)).read()
        open(os.path.join(root, "s3-metadata", m.replace(tid, new)), "w").write(body.replace(tid, new).replace(template, root))
PY
}

log "making $TASKS sandboxes for the cleanup"
A=$BENCH_DIR/cleanup
make_tree "$A"
log "making $TASKS sandboxes for the peer"
P=$BENCH_DIR/peer
make_tree "$P"

# Singularity's state: every task finished 30 minutes ago, one other task active.
python3 - "$A" "$TASKS" "$TEMPLATE_ID" >"$BENCH_DIR/state.json" <<'PY'
import json, sys, time
root, count, tid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
at = int(time.time() * 1000) - 30 * 60 * 1000
histories = {}
for n in range(count):
    new = tid.replace("bench-dep1", "bench%05d-dep1" % n)
    histories[new] = {"taskId": new, "state": "TASK_FINISHED", "timestamp": at}
print(json.dumps({"agentId": "bench-agent", "agentHostname": "bench-host",
                  "activeTaskIds": ["other-dep1-1-1-benchhost-rack1"],
                  "decommissionedHosts": [], "histories": histories}))
PY
"$FAKE" --state "$BENCH_DIR/state.json" --credentials X-Bench:token >"$BENCH_DIR/fake.out" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$BENCH_DIR/fake.out" ] && break; sleep 0.05; done
API=$(head -n1 "$BENCH_DIR/fake.out")
[ -n "$API" ] || die "the API stand-in did not start"
cat >"$A/etc/singularity.executor.cleanup.yaml" <<EOF
singularityHosts: [${API#http://}]
singularityContextPath: singularity/api
singularityClientCredentials: {headerName: X-Bench, token: token}
executorCleanupResultsDirectory: $A/results
mesosAgentStateUrl: $API/slave(1)/state
maxStartDelaySeconds: 0
EOF

log "cleanup run over $TASKS tasks"
sync
start=$(now)
"$CLEANUP" --config-dir "$A/etc" 2>"$BENCH_DIR/cleanup.log" &
pid=$!
hwm=0
while kill -0 "$pid" 2>/dev/null; do
    v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$hwm" ] && hwm=$v
    sleep 0.02
done
wait "$pid" || die "the cleanup failed: $(tail -5 "$BENCH_DIR/cleanup.log")"
cleanup_s=$(elapsed "$start")
results=$(cat "$A"/results/*.cleanup.json)
cleaned=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["successfullyCleanedTasks"])' "$results")
[ "$cleaned" = "$TASKS" ] || die "cleaned $cleaned of $TASKS: $results"
left=$(find "$A/tasks" -name '*.task.json' | wc -l)
[ "$left" = 0 ] || die "$left definitions left"

log "peer run (gzip + tail + rm over xargs -P 8)"
sync
start=$(now)
find "$P/tasks" -name '*.task.json' -print0 | xargs -0 -P 8 -n 25 sh -c '
    for def; do
        id=$(basename "$def" .task.json)
        dir='"$P"'/sandbox/$id
        tail -n 500 "$dir/service.log" > "$dir/tail_of_finished_service.log"
        gzip "$dir/service.log" && mv "$dir/service.log.gz" "$dir/logs/service.log-bench.log.gz"
        rm -rf "$dir/app"
        rm -f "$def"
    done' sh
peer_s=$(elapsed "$start")

cat <<EOF
executor cleanup, $TASKS finished tasks ($LINES-line service.log each), profile $PROFILE
  singularity-executor-cleanup:  ${cleanup_s} s wall, peak RSS $(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }') MiB, $cleaned cleaned
  peer (gzip+tail+rm, xargs -P8): ${peer_s} s wall
  ratio cleanup / peer:          $(ratio "$cleanup_s" "$peer_s")
  target: <= 10 s wall
EOF
