#!/usr/bin/env bash
# One sample task, end to end, on this machine: builds singularity-executor,
# singularity-s3-downloader and the S3 test server, then in a new temp directory
#   - serves an S3 bucket holding a sample tarball (app/run.sh),
#   - starts the downloader,
#   - runs the executor standalone (`singularity-executor run task.json`): it stages the
#     tarball through the downloader plus an embedded artifact, runs the task, writes the
#     task definition and the log upload metadata,
# and prints where the sandbox, service.log and upload metadata are.
#
#   scripts/run.sh              debug build
#   scripts/run.sh --release    release build
#
# Needs cargo, tar, gzip, md5sum and curl. Leaves the temp directory for inspection.
set -euo pipefail

cd "$(dirname "$0")/.."
profile=debug
cargo_flags=()
if [[ "${1:-}" == "--release" ]]; then
  profile=release
  cargo_flags=(--release)
fi

echo "==> building (cargo build ${cargo_flags[*]:-})"
# --bins, not --bin NAME: `--bin` would select that one target across every listed package.
cargo build "${cargo_flags[@]}" -q --bins \
  -p singularity-executor -p singularity-s3-downloader -p singularity-test-support
bin="$PWD/target/$profile"

work="$(mktemp -d "${TMPDIR:-/tmp}/singularity-run.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

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
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "not answering: $1" >&2
  return 1
}

mkdir -p "$work"/{etc,s3/sample-artifacts,cache,tasks,s3-metadata,tail-metadata,logrotate.d,sandbox,build/app}

# The sample artifact: a tarball whose app/run.sh the task runs.
cat > "$work/build/app/run.sh" <<'EOF'
#!/bin/sh
echo "hello from $TASK_ID"
echo "running as $(id -un) in $(pwd)"
echo "embedded config says: $(cat ../config/greeting.txt)"
EOF
chmod +x "$work/build/app/run.sh"
tar -C "$work/build" -czf "$work/s3/sample-artifacts/app.tar.gz" app
artifact_md5="$(md5sum "$work/s3/sample-artifacts/app.tar.gz" | cut -d' ' -f1)"

s3_port="$(free_port)"
downloader_port="$(free_port)"

echo "==> S3 test server on 127.0.0.1:$s3_port (bucket sample-artifacts)"
"$bin/singularity-test-s3" --addr "127.0.0.1:$s3_port" --root "$work/s3" \
  --access-key sample-access --secret-key sample-secret-key >"$work/s3.log" 2>&1 &
pids+=($!)

cat > "$work/etc/singularity.base.yaml" <<EOF
s3UploaderMetadataDirectory: $work/s3-metadata
logWatcherMetadataDirectory: $work/tail-metadata
EOF
cat > "$work/etc/singularity.s3base.yaml" <<EOF
artifactCacheDirectory: $work/cache
s3AccessKey: sample-access
s3SecretKey: sample-secret-key
s3Endpoint: http://127.0.0.1:$s3_port
s3PathStyleAccess: true
s3Region: us-east-1
localDownloadHttpPort: $downloader_port
EOF
cat > "$work/etc/singularity.executor.yaml" <<EOF
globalTaskDefinitionDirectory: $work/tasks
defaultRunAsUser: $(id -un)
logrotateConfDirectory: $work/logrotate.d
logrotateHourlyConfDirectory: $work/logrotate.d/hourly
cronDirectory: $work/cron.d
useLocalDownloadService: true
EOF
cat > "$work/etc/singularity.s3downloader.yaml" <<EOF
allowedTargetDirectories:
  - $work/sandbox
EOF

echo "==> singularity-s3-downloader on 127.0.0.1:$downloader_port"
"$bin/singularity-s3-downloader" --config-dir "$work/etc" >"$work/downloader.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$downloader_port/healthz"

greeting_b64="$(printf 'hello, embedded artifact\n' | base64 | tr -d '\n')"
cat > "$work/task.json" <<EOF
{
  "requestId": "sample-request",
  "id": "deploy1",
  "env": {"SAMPLE": "yes"},
  "executorData": {
    "cmd": "./run.sh",
    "s3Artifacts": [
      {"name": "app", "filename": "app.tar.gz", "md5sum": "$artifact_md5",
       "s3Bucket": "sample-artifacts", "s3ObjectKey": "app.tar.gz"}
    ],
    "embeddedArtifacts": [
      {"name": "greeting", "filename": "greeting.txt", "content": "$greeting_b64",
       "targetFolderRelativeToTask": "config"}
    ],
    "defaultS3Bucket": "sample-task-logs",
    "s3UploaderKeyPattern": "%requestId/%Y/%m/%taskId_%index-%s-%filename"
  }
}
EOF

echo "==> singularity-executor run task.json"
set +e
"$bin/singularity-executor" --config-dir "$work/etc" run "$work/task.json" \
  --sandbox "$work/sandbox" 2>"$work/executor.log"
status=$?
set -e

task_dir="$(find "$work/sandbox" -mindepth 1 -maxdepth 1 -type d | head -n 1)"
echo
echo "exit code:        $status"
echo "sandbox:          $work/sandbox"
echo "task directory:   $task_dir"
echo "service.log:      $task_dir/service.log"
echo "task definition:  $(ls "$work"/tasks/*.task.json 2>/dev/null || echo none)"
echo "upload metadata:  $(ls "$work"/s3-metadata/*.s3.json 2>/dev/null || echo none)"
echo "executor log:     $work/executor.log"
echo "downloader log:   $work/downloader.log"
echo
echo "--- service.log"
cat "$task_dir/service.log" 2>/dev/null || true
exit "$status"
