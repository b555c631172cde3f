#!/usr/bin/env bash
# Installs everything Understudy needs to build, test and run on Debian 12 (bookworm).
# Idempotent: packages already present are not touched, so a second run does nothing.
set -euo pipefail

packages=(
  libssl-dev        # TLS 1.3 and certificates (system OpenSSL 3)
  liblz4-dev        # page and disk-write compression
  libxxhash-dev     # XXH3: the content checksum of frames and of the backup's journal
  openssl           # the openssl CLI, for inspecting certificates
  qemu-system-x86   # runs the protected VM
  qemu-utils        # qemu-io and qemu-img: the NBD server's tests use them as clients
  e2fsprogs         # mkfs.ext4 and e2fsck for the test guest's replicated disk
  iproute2          # ip: TAP devices, bridges and network namespaces
  busybox-static    # the test guest's userland
  gcc               # builds the test guest's programs (statically)
  libc6-dev
  etcd-server       # the witness (etcd 3.4, v3 HTTP gateway): fencing tests start their own
  clamav            # clamscan and sigtool: the inspection tests scan the replica with a signature made on the spot
  fdisk             # sfdisk: the partition tables of the Debian guest's boot disks (Deploy/guest/build-debian-disk.sh)
  dosfstools        # mkfs.vfat: the UEFI disk's EFI system partition
  mtools            # fills that FAT partition inside the image file, no mount needed
  grub-pc-bin       # GRUB for BIOS (i386-pc) on the BIOS boot disk
  grub-efi-amd64-bin  # GRUB for UEFI (x86_64-efi) on the UEFI boot disk
  ovmf              # UEFI firmware for QEMU: /usr/share/OVMF/OVMF_CODE_4M.fd and OVMF_VARS_4M.fd
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "install.sh: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v swift >/dev/null 2>&1; then
  echo "install.sh: the Swift 6 toolchain is not on PATH; install it from swift.org first" >&2
  exit 1
fi
# The test guest's kernel (Debian's cloud kernel), fetched once into a cache outside the repo.
"$(dirname "$0")/guest/fetch-kernel.sh" >/dev/null
echo "install.sh: all dependencies present"
