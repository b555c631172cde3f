#!/usr/bin/env bash
# Installs everything Understudy needs to build, test and run on Debian 12 (bookworm), and
# `understudy` itself: the release build in /usr/local/bin, the preload library QEMU loads in
# /usr/local/lib/understudy. Idempotent: packages already present are not touched and the build is
# incremental (a few minutes the first time, seconds after).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

packages=(
  libssl-dev        # TLS 1.3 and certificates (system OpenSSL 3)
  liblz4-dev        # page and disk-write compression
  libxxhash-dev     # XXH3: the content checksum of frames and of the backup's journal
  openssl           # the openssl CLI, for inspecting certificates
  qemu-system-x86   # runs the protected VM
  qemu-utils        # qemu-io and qemu-img: the NBD server's tests use them as clients
  ovmf              # UEFI firmware (OVMF_CODE_4M.fd, OVMF_VARS_4M.fd) for vm.firmware = "uefi"
  e2fsprogs         # mkfs.ext4 and e2fsck for the test guest's replicated disk
  iproute2          # ip: TAP devices, bridges and network namespaces
  busybox-static    # the test guest's userland
  gcc               # builds the test guest's programs (statically)
  libc6-dev
  etcd-server       # the witness (etcd 3.4, v3 HTTP gateway): fencing tests start their own
  clamav            # clamscan and sigtool: the inspection tests scan the replica with a signature made on the spot
  dpkg-dev          # dpkg-shlibdeps: the Debian package's library dependencies (package-deb.sh)
  debootstrap       # the clean Debian root the package is tested in (test-install.sh)
  fdisk             # sfdisk: the partition tables of the Debian guest's boot disks (Deploy/guest/build-debian-disk.sh)
  dosfstools        # mkfs.vfat: the UEFI disk's EFI system partition
  mtools            # fills that FAT partition inside the image file, no mount needed
  grub-pc-bin       # GRUB for BIOS (i386-pc) on the BIOS boot disk
  grub-efi-amd64-bin  # GRUB for UEFI (x86_64-efi) on the UEFI boot disk
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ((${#missing[@]} > 0)); then
  echo "install.sh: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v swift >/dev/null 2>&1; then
  echo "install.sh: the Swift 6 toolchain is not on PATH; install it from swift.org first" >&2
  exit 1
fi
# The test guest's kernel (Debian's cloud kernel), fetched once into a cache outside the repo.
"$here/guest/fetch-kernel.sh" >/dev/null

# `understudy` on PATH, as the README's "Protecting a VM" and the examples expect it: built by the
# user, installed under /usr/local (where Deploy/install-agent.sh's unit looks for it).
source "$here/release-build.sh"
echo "install.sh: building understudy (release; a few minutes the first time)"
bin="$(release_build "$(cd "$here/.." && pwd)")"
$sudo install -D -m 0755 "$bin/understudy" /usr/local/bin/understudy
$sudo install -D -m 0644 "$bin/libUnderstudyPreload.so" /usr/local/lib/understudy/libUnderstudyPreload.so
echo "install.sh: all dependencies present; installed $(/usr/local/bin/understudy --version) in /usr/local/bin"
