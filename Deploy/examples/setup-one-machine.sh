#!/usr/bin/env bash
# Prepares this machine for the example pair (primary.toml, backup.toml): the test guest's
# initramfs, certificates, both nodes' disks, and a private network standing in for the LAN:
# a bridge with the two nodes' TAP devices and a client namespace, "understudy-client", at
# 10.77.0.1, from which the guest's counter service (10.77.0.2:7000) can be reached:
#   ip netns exec understudy-client busybox nc 10.77.0.2 7000     # then type n, s, ...
# Idempotent; `setup-one-machine.sh remove` undoes the network part. Needs `understudy` on PATH
# (./Deploy/install.sh installs it, as does the Debian package).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
guest=/var/cache/understudy/guest
data=/var/lib/understudy/counter-vm

if [[ "${1:-}" == remove ]]; then
    ip netns delete understudy-client 2>/dev/null || true
    for link in us-tap-p us-tap-b us-br0 us-veth0; do ip link delete "$link" 2>/dev/null || true; done
    exit 0
fi

command -v understudy >/dev/null 2>&1 ||
    { echo "setup-one-machine.sh: understudy is not on PATH; run ./Deploy/install.sh first (README.md)" >&2; exit 1; }
bash "$here/../guest/build-initramfs.sh" "$guest/initramfs-counter.cpio.gz" \
    "$here/../guest/counter.c" "$here/../guest/counter-service.c" >/dev/null
[[ -f /etc/understudy/certs/ca.pem ]] || understudy certs init --dir /etc/understudy/certs --nodes primary,backup

# The primary's disk (ext4, for the counter service) and the backup's replica of the same size.
mkdir -p "$data"
if [[ ! -f "$data/primary-disk.img" ]]; then
    truncate -s 256M "$data/primary-disk.img"
    mkfs.ext4 -q -F "$data/primary-disk.img"
fi
[[ -f "$data/backup-disk.img" ]] || truncate -s 256M "$data/backup-disk.img"

ip netns add understudy-client 2>/dev/null || true
ip link show us-br0 >/dev/null 2>&1 || { ip link add us-br0 type bridge; ip link set us-br0 up; }
for tap in us-tap-p us-tap-b; do
    ip link show "$tap" >/dev/null 2>&1 || ip tuntap add dev "$tap" mode tap
    ip link set "$tap" master us-br0 up
done
if ! ip link show us-veth0 >/dev/null 2>&1; then
    ip link add us-veth0 type veth peer name eth0 netns understudy-client
    ip link set us-veth0 master us-br0 up
    ip -n understudy-client addr add 10.77.0.1/24 dev eth0
    ip -n understudy-client link set eth0 up
fi
echo "ready: start the backup, then the primary (see README.md, 'Protecting a VM')"
