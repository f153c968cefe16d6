#!/usr/bin/env bash
# Installs the singularity-agent daemons on a Mesos agent.
#
#   deploy/install.sh [--prefix /usr/local] [--no-build]
#
# Builds the release binaries (unless --no-build), copies every daemon binary that exists to
# PREFIX/bin, the unit files from systemd/ to /etc/systemd/system, the cron entry from deploy/
# to /etc/cron.d, and the example YAML configuration to /etc only where no configuration of that
# class exists yet in any format, so an existing Singularity agent keeps its files. Nothing is
# started: run `singularity-<daemon> --check-config`, then enable the units.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "usage: $0 [--prefix DIR] [--no-build]" >&2; exit 2 ;;
    esac
done

daemons=(singularity-executor singularity-executor-cleanup singularity-s3-uploader singularity-s3-downloader)

if [ "$build" = 1 ]; then
    cargo build --release --bins
fi

install -d "$prefix/bin"
for d in "${daemons[@]}"; do
    if [ -x "target/release/$d" ]; then
        install -m 0755 "target/release/$d" "$prefix/bin/$d"
        echo "installed $prefix/bin/$d"
    fi
done

if [ -d /etc/systemd/system ]; then
    for unit in systemd/*.service systemd/*.timer; do
        [ -e "$unit" ] || continue
        sed "s#/usr/local/bin/#$prefix/bin/#g" "$unit" >"/etc/systemd/system/$(basename "$unit")"
        echo "installed /etc/systemd/system/$(basename "$unit")"
    done
fi

if [ -d /etc/cron.d ]; then
    for cron in deploy/cron.d/*; do
        [ -e "$cron" ] || continue
        install -m 0644 "$cron" "/etc/cron.d/$(basename "$cron")"
        echo "installed /etc/cron.d/$(basename "$cron")"
    done
fi

for example in config/yaml/singularity.*.yaml; do
    name=$(basename "$example" .yaml)
    [ "$name" = singularity ] && continue   # the consolidated example is for --config only
    if ls "/etc/$name".{properties,yaml,toml} >/dev/null 2>&1; then
        echo "kept existing /etc/$name.*"
    else
        install -m 0644 "$example" "/etc/$name.yaml"
        echo "installed /etc/$name.yaml (edit the directories and credentials)"
    fi
done
