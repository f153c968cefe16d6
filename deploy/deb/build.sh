#!/usr/bin/env bash
# Builds the singularity-agent Debian package.
#
#   deploy/deb/build.sh [--profile release|debug] [--no-build] [--out DIR]
#
# The package holds the four daemons in /usr/bin, their systemd units and the cleanup timer in
# /lib/systemd/system, the cleanup's cron.d file, one example YAML configuration per class in /etc
# (conffiles: an upgrade never overwrites an edited one), the directories those configurations
# name under /var/lib/singularity and /var/log/singularity, and the docs. Nothing from testing/ is
# packaged. Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=release
build=1
out=target/deb
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: $0 [--profile release|debug] [--no-build] [--out DIR]" >&2; exit 2 ;;
    esac
done
# A debug package is for tests: fast gzip instead of xz for its large binaries.
case "$profile" in
    release) cargo_profile=(--release); compression=(-Zxz) ;;
    debug) cargo_profile=(); compression=(-Zgzip -z1) ;;
    *) echo "deb: unknown profile '$profile' (release or debug)" >&2; exit 2 ;;
esac

daemons=(singularity-executor singularity-executor-cleanup singularity-s3-uploader
    singularity-s3-downloader)
# The configuration classes the daemons read (config/yaml/<class>.yaml).
classes=(singularity.base singularity.executor singularity.executor.cleanup singularity.s3base
    singularity.s3uploader singularity.s3downloader)

if [ "$build" = 1 ]; then
    packages=()
    for d in "${daemons[@]}"; do packages+=(-p "$d"); done
    cargo build "${cargo_profile[@]}" --bins "${packages[@]}"
fi
for d in "${daemons[@]}"; do
    if [ ! -x "target/$profile/$d" ]; then
        echo "deb: target/$profile/$d is missing: run without --no-build" >&2
        exit 1
    fi
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
name=singularity-agent
stage=$(mktemp -d "${TMPDIR:-/tmp}/$name-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root

install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/cron.d" \
    "$root/usr/share/doc/$name"
# The directories the example configurations name: --check-config (each unit's ExecStartPre)
# refuses a directory that does not exist.
install -d "$root/var/lib/singularity/tasks" "$root/var/lib/singularity/artifacts" \
    "$root/var/lib/singularity/s3uploader" "$root/var/lib/singularity/logwatcher" \
    "$root/var/lib/singularity/cleanup" "$root/var/log/singularity"
for d in "${daemons[@]}"; do
    install -m 0755 "target/$profile/$d" "$root/usr/bin/$d"
done
# The units name /usr/local/bin (deploy/install.sh's default prefix); the package uses /usr/bin.
for unit in systemd/*.service systemd/*.timer; do
    [ -e "$unit" ] || continue
    sed 's#/usr/local/bin/#/usr/bin/#g' "$unit" >"$root/lib/systemd/system/$(basename "$unit")"
    chmod 0644 "$root/lib/systemd/system/$(basename "$unit")"
done
for cron in deploy/cron.d/*; do
    [ -e "$cron" ] || continue
    sed 's#/usr/local/bin/#/usr/bin/#g' "$cron" >"$root/etc/cron.d/$(basename "$cron")"
    chmod 0644 "$root/etc/cron.d/$(basename "$cron")"
done
for class in "${classes[@]}"; do
    install -m 0644 "config/yaml/$class.yaml" "$root/etc/$class.yaml"
done
install -m 0644 README.md "$root/usr/share/doc/$name/README.md"
install -d "$root/usr/share/doc/$name/docs"
install -m 0644 docs/*.md "$root/usr/share/doc/$name/docs/"
install -d "$root/usr/share/doc/$name/examples"
cp -r config/properties config/toml config/yaml "$root/usr/share/doc/$name/examples/"
find "$root/usr/share/doc/$name/examples" -type f -exec chmod 0644 {} +
printf 'singularity-agent\nLicense: Apache-2.0\n' >"$root/usr/share/doc/$name/copyright"

# Every file under /etc is a conffile: dpkg keeps an operator's edits across upgrades.
(cd "$root" && find etc -type f | sort | sed 's#^#/#') >"$root/DEBIAN/conffiles"

installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: singularity-agent maintainers <maintainers@singularity-agent.invalid>
Installed-Size: $installed_kb
Depends: libc6 (>= 2.34)
Recommends: systemd
Section: admin
Priority: optional
Homepage: https://github.com/singularity-agent/singularity-agent
Description: Singularity agent daemons for Mesos agents
 The agent side of HubSpot Singularity: the custom Mesos executor, the hourly
 executor cleanup, the S3 log uploader and the S3 artifact downloader. They
 read Singularity's configuration files and write its task and metadata files.
CONTROL

# Units are installed, not enabled or started: the operator edits /etc first.
cat >"$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
# Not for an installation into another root (dpkg --root sets DPKG_ROOT).
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || true
fi
POSTINST
cp "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/${name}_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compression[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
