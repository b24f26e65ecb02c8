#!/usr/bin/env bash
# Makes the root filesystem of cashflow/debian:bookworm as a tarball, from Debian's packages only:
#   mkrootfs.sh OUT.tar MIRROR
# debootstrap (minbase + ca-certificates + tzdata), then the same container tweaks the official
# debian:bookworm-slim image has (apt sources with updates and security, no services started by
# package scripts, apt lists and caches dropped, no docs/man pages/translations), then the
# pending security updates. Needs root (debootstrap, chroot). Called by ../build.sh, which caches
# the tarball; this file's content is the cache key, so any change here re-runs debootstrap.
set -euo pipefail

out=${1:?usage: mkrootfs.sh OUT.tar MIRROR}
mirror=${2:?usage: mkrootfs.sh TARBALL MIRROR}
suite=bookworm
security_mirror=${mirror%/debian}/debian-security

[ "$(id -u)" -eq 0 ] || { echo "mkrootfs: debootstrap and chroot need root" >&2; exit 1; }

work=$(mktemp -d "$(dirname "$out")/rootfs.XXXXXX")
rootfs=$work/rootfs
mounts_below() { awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r; }
cleanup() {
  local m
  for m in $(mounts_below); do umount -l "$m" || true; done
  if [ -n "$(mounts_below)" ]; then
    echo "mkrootfs: $work still has mounts; left in place" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

echo "mkrootfs: debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase --include=ca-certificates,tzdata "$suite" "$rootfs" "$mirror"

echo "mkrootfs: container tweaks (apt sources, policy-rc.d, slim dpkg excludes)"
rm -f "$rootfs/etc/apt/sources.list"
cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# Package scripts must not start services inside an image build.
printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"

# apt: drop downloaded .debs after installing, no translations, no suggested packages kept.
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' > "$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"

# dpkg: no docs, man pages or translations from later installs (as in debian:*-slim).
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
echo 'force-unsafe-io' > "$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"

echo "mkrootfs: security and point-release updates (apt-get upgrade in chroot)"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -euc 'apt-get update -qq; apt-get upgrade -y -qq -o Dpkg::Options::=--force-confdef; apt-get clean'
umount "$rootfs/proc"

echo "mkrootfs: slimming and removing host traces"
# What the excludes above keep out of later installs, removed from what debootstrap installed.
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/*
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/root/.cache
find "$rootfs/var/cache/apt" "$rootfs/var/log" -type f -delete
# Docker provides /dev, /proc, /sys, resolv.conf, hostname and hosts at run time. Nothing may be
# mounted below the rootfs when its /dev is emptied.
if [ -n "$(mounts_below)" ]; then
  echo "mkrootfs: something is still mounted below $rootfs; not emptying its /dev" >&2
  exit 1
fi
rm -rf "${rootfs:?}"/dev/* "${rootfs:?}"/proc/* "${rootfs:?}"/sys/*
: > "$rootfs/etc/resolv.conf"
: > "$rootfs/etc/hostname"
rm -f "$rootfs/etc/machine-id" "$rootfs/var/lib/dbus/machine-id"

echo "mkrootfs: writing $out"
tar --numeric-owner -C "$rootfs" -cf "$out.tmp" .
mv "$out.tmp" "$out"
