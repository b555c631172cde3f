#!/usr/bin/env bash
# Build a Debian 12 VM for benchmarks: systemd, PostgreSQL 15 with a `bench` database
# (`pgbench -i -s 5`), a static address in the test subnet, the cloud kernel.
#
# Leaves in the cache directory (default ${UNDERSTUDY_DEBIAN_DIR:-/var/cache/understudy/debian}):
#   tree/        the debootstrap root (the benches run pgbench and psql from it with chroot)
#   root.img     raw ext4 image of tree/ (sparse, 3 GiB; the guest's /dev/vda, no partition table)
#   vmlinuz      the kernel of linux-image-cloud-amd64 installed in tree/
#   initrd.img   its initramfs (virtio modules listed in /etc/initramfs-tools/modules)
#   ready        written last: the digest of the build's inputs; a changed script or mirror rebuilds
#
# Boot it with: root=/dev/vda rw console=ttyS0 (see Deploy/guest/README.md). The guest has
# 10.77.0.2/24 on its first NIC and PostgreSQL listening on all addresses, trusting 10.77.0.0/24.
#
# Idempotent: when `ready` matches the inputs the script only prints the cache path.
# UNDERSTUDY_DEBIAN_REFRESH=1 rebuilds anyway; UNDERSTUDY_DEBIAN_MIRROR=URL overrides the
# mirror (default: the Debian mirror apt is configured with). Runs as root on Debian 12.
# Prints the cache directory on stdout; progress goes to stderr.
set -euo pipefail

cache_dir="${UNDERSTUDY_DEBIAN_DIR:-/var/cache/understudy/debian}"
suite="bookworm"
guest_address="10.77.0.2/24"
client_subnet="10.77.0.0/24"
disk_size="3G"
pgbench_scale=5

log() { printf 'build-debian: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot and mounts need it)"

# shellcheck source=../debian-mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/../debian-mirror.sh"
mirror_url="$(debian_mirror)" || die "no Debian mirror"
inputs="$(printf 'script %s\nmirror %s\nsuite %s\n' "$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)" "$mirror_url" "$suite")"

is_ready() {
    [[ -f "$cache_dir/ready" && "$(cat "$cache_dir/ready")" == "$inputs" && -s "$cache_dir/root.img" &&
       -s "$cache_dir/vmlinuz" && -s "$cache_dir/initrd.img" && -d "$cache_dir/tree" ]]
}

if [[ "${UNDERSTUDY_DEBIAN_REFRESH:-0}" != 1 ]] && is_ready; then
    printf '%s\n' "$cache_dir"
    exit 0
fi

mkdir -p "$cache_dir"
# Two builds at once would debootstrap into the same tree: let one do the work.
exec 9>"$cache_dir/.lock"
flock 9
if [[ "${UNDERSTUDY_DEBIAN_REFRESH:-0}" != 1 ]] && is_ready; then
    printf '%s\n' "$cache_dir"
    exit 0
fi

started=$SECONDS
tree="$cache_dir/tree"
mounts=()
cluster_started=0

cleanup() {
    local status=$?
    if [[ $cluster_started == 1 ]]; then
        chroot "$tree" pg_ctlcluster 15 main stop -m fast >&2 2>&1 || true
    fi
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
    rm -f "$cache_dir/root.img.tmp"
    [[ $status == 0 ]] || log "FAILED after $((SECONDS - started)) s (status $status); $cache_dir is incomplete and will be rebuilt"
}
trap cleanup EXIT

in_tree() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$tree" "$@"; }

mount_into_tree() { # type target
    mkdir -p "$tree/$2"
    mount -t "$1" "$1" "$tree/$2"
    mounts+=("$tree/$2")
}

# `ready` goes first and comes back last, so an interrupted build is never taken for a complete one.
rm -f "$cache_dir/ready"
for mounted in $(awk -v t="$tree" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$mounted"; done
rm -rf "$tree" "$cache_dir/root.img" "$cache_dir/vmlinuz" "$cache_dir/initrd.img"

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
    fi
fi
command -v mkfs.ext4 >/dev/null 2>&1 || die "mkfs.ext4 not found (apt-get install e2fsprogs)"

log "[1/6] debootstrap --variant=minbase $suite from $mirror_url (takes a few minutes)"
debootstrap --variant=minbase --include=systemd-sysv,udev,iproute2,initramfs-tools,zstd \
    "$suite" "$tree" "$mirror_url" > "$cache_dir/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $cache_dir/debootstrap.log (last lines: $(tail -n 3 "$cache_dir/debootstrap.log" | tr '\n' ' '))"

mount_into_tree proc proc
mount_into_tree sysfs sys
mount_into_tree tmpfs dev/shm
mount_into_tree tmpfs run

log "[2/6] configuring: no documentation, virtio modules in the initramfs, network, serial console"
# Keep the image small: documentation and translations are never read in a benchmark guest.
cat > "$tree/etc/dpkg/dpkg.cfg.d/01-understudy-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
# Services must not start inside the build chroot (PostgreSQL's postinst would try).
printf '#!/bin/sh\nexit 101\n' > "$tree/usr/sbin/policy-rc.d"
chmod 755 "$tree/usr/sbin/policy-rc.d"

# The cloud kernel has the virtio drivers as modules; only the listed ones go into the
# initramfs (MODULES=list), which keeps it small and quick to unpack under TCG.
printf '%s\n' virtio_pci virtio_blk virtio_net >> "$tree/etc/initramfs-tools/modules"
sed -i 's/^MODULES=.*/MODULES=list/' "$tree/etc/initramfs-tools/initramfs.conf"

echo understudy-debian > "$tree/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 understudy-debian\n' > "$tree/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 0\n' > "$tree/etc/fstab"
# A fixed machine id: every benchmark boots a fresh copy, none of them is a first boot.
printf '%s\n' "$(printf 'understudy-debian' | sha256sum | cut -c1-32)" > "$tree/etc/machine-id"
mkdir -p "$tree/etc/systemd/network"
cat > "$tree/etc/systemd/network/10-understudy.network" <<EOF
[Match]
Name=en* eth*

[Network]
Address=$guest_address
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
in_tree passwd -d root >/dev/null

log "[3/6] installing linux-image-cloud-amd64 and postgresql (15) in the tree"
in_tree apt-get update -qq >&2
in_tree apt-get install -y -qq --no-install-recommends linux-image-cloud-amd64 postgresql > "$cache_dir/apt.log" 2>&1 ||
    die "apt-get install in the tree failed; see $cache_dir/apt.log (last lines: $(tail -n 3 "$cache_dir/apt.log" | tr '\n' ' '))"
in_tree systemctl enable systemd-networkd.service >/dev/null 2>&1
# Nothing waits for "online" (PostgreSQL listens on the wildcard address), and the periodic
# maintenance jobs would only add noise to a benchmark.
in_tree systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer fstrim.timer >/dev/null 2>&1

log "[4/6] PostgreSQL: listening on the guest's address, trusting $client_subnet; pgbench -i -s $pgbench_scale"
conf=/etc/postgresql/15/main
[[ -f "$tree$conf/postgresql.conf" ]] || die "no $conf/postgresql.conf in the tree: the main cluster was not created"
cat >> "$tree$conf/postgresql.conf" <<'EOF'

# Understudy benchmark guest (Deploy/guest/build-debian.sh)
listen_addresses = '*'
EOF
printf 'host all all %s trust\n' "$client_subnet" >> "$tree$conf/pg_hba.conf"
in_tree pg_ctlcluster 15 main start >&2
cluster_started=1
in_tree runuser -u postgres -- createdb bench
in_tree runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -i -q -s "$pgbench_scale" bench > "$cache_dir/pgbench-init.log" 2>&1 ||
    die "pgbench -i failed; see $cache_dir/pgbench-init.log"
# A clean shutdown writes a checkpoint: the guest starts without crash recovery.
in_tree pg_ctlcluster 15 main stop -m fast >&2
cluster_started=0

rm -f "$tree/usr/sbin/policy-rc.d"
in_tree apt-get clean
rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin "$tree"/var/log/*.log "$tree"/tmp/*

for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[$i]}"; done
mounts=()

log "[5/6] kernel and initramfs"
kernels=("$tree"/boot/vmlinuz-*)
initrds=("$tree"/boot/initrd.img-*)
[[ ${#kernels[@]} == 1 && -f "${kernels[0]}" ]] || die "expected one kernel in $tree/boot, found: ${kernels[*]}"
[[ ${#initrds[@]} == 1 && -f "${initrds[0]}" ]] || die "expected one initramfs in $tree/boot, found: ${initrds[*]}"
cp "${kernels[0]}" "$cache_dir/vmlinuz"
cp "${initrds[0]}" "$cache_dir/initrd.img"

log "[6/6] root.img: $disk_size sparse ext4 made from the tree (mkfs.ext4 -d)"
truncate -s "$disk_size" "$cache_dir/root.img.tmp"
mkfs.ext4 -q -F -L understudy-root -d "$tree" "$cache_dir/root.img.tmp" >&2
mv "$cache_dir/root.img.tmp" "$cache_dir/root.img"

printf '%s\n' "$inputs" > "$cache_dir/ready.tmp"
mv "$cache_dir/ready.tmp" "$cache_dir/ready"
log "done in $((SECONDS - started)) s: kernel ${kernels[0]##*/vmlinuz-}, tree $(du -sh "$tree" | cut -f1), root.img $(du -h "$cache_dir/root.img" | cut -f1) used of $disk_size"
printf '%s\n' "$cache_dir"
