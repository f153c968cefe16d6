#!/usr/bin/env bash
# Installs the singularity-agent daemons on a Mesos agent.
#
#   deploy/install.sh [--prefix /usr/local] [--no-build] [--cron]
#
# Builds the release binaries of the product crates (unless --no-build), copies the daemon
# binaries to PREFIX/bin, the unit files from systemd/ to /etc/systemd/system (with --cron, or
# without systemd, the cleanup's crontab file deploy/cron.d/ to /etc/cron.d instead of its
# timer), and the example
# YAML configuration of each class those daemons read to /etc only where no configuration of
# that class exists yet in any format, so an existing Singularity agent keeps its files.
# Nothing from testing/ (the fake Mesos agent, the S3 test server) is built or installed.
# Nothing is started: run `singularity-<daemon> --check-config`, then enable the units (for the
# cleanup: `systemctl enable --now singularity-executor-cleanup.timer`).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
build=1
cron=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --cron) cron=1; shift ;;
        *) echo "usage: $0 [--prefix DIR] [--no-build] [--cron]" >&2; exit 2 ;;
    esac
done

# Each daemon is the binary of the package of the same name.
daemons=(singularity-executor singularity-executor-cleanup singularity-s3-uploader
    singularity-s3-downloader)
# The configuration classes they read (config/yaml/<class>.yaml).
classes=(singularity.base singularity.executor singularity.executor.cleanup singularity.s3base
    singularity.s3uploader singularity.s3downloader)

if [ "$build" = 1 ]; then
    packages=()
    for d in "${daemons[@]}"; do packages+=(-p "$d"); done
    cargo build --release --bins "${packages[@]}"
fi

for d in "${daemons[@]}"; do
    if [ ! -x "target/release/$d" ]; then
        echo "target/release/$d is missing: run without --no-build" >&2
        exit 1
    fi
done

install -d "$prefix/bin"
for d in "${daemons[@]}"; do
    install -m 0755 "target/release/$d" "$prefix/bin/$d"
    echo "installed $prefix/bin/$d"
done

if [ -d /etc/systemd/system ]; then
    for unit in systemd/*.service systemd/*.timer; do
        if [ "$cron" = 1 ] && [ "${unit%.timer}" != "$unit" ]; then
            continue
        fi
        sed "s#/usr/local/bin/#$prefix/bin/#g" "$unit" >"/etc/systemd/system/$(basename "$unit")"
        echo "installed /etc/systemd/system/$(basename "$unit")"
    done
else
    cron=1
fi
if [ "$cron" = 1 ]; then
    install -d /etc/cron.d
    sed "s#/usr/local/bin/#$prefix/bin/#g" deploy/cron.d/singularity-executor-cleanup \
        >/etc/cron.d/singularity-executor-cleanup
    chmod 0644 /etc/cron.d/singularity-executor-cleanup
    echo "installed /etc/cron.d/singularity-executor-cleanup"
fi

# The consolidated example config/yaml/singularity.yaml is for --config only.
for name in "${classes[@]}"; do
    example="config/yaml/$name.yaml"
    if ls "/etc/$name".{properties,yaml,toml} >/dev/null 2>&1; then
        echo "kept existing /etc/$name.*"
    else
        install -m 0644 "$example" "/etc/$name.yaml"
        echo "installed /etc/$name.yaml (edit the directories and credentials)"
    fi
done
