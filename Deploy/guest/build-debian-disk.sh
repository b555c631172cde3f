#!/usr/bin/env bash
# Build the Debian 12 guest of build-debian.sh as a VM that boots from its own partitioned disk
# with GRUB, the way people's VMs do: a BIOS and a UEFI variant, and a second disk that holds
# PostgreSQL's data.
#
# Runs build-debian.sh first (which does nothing when its image is ready) and reuses its tree/;
# the tree itself is never changed (the edits go to an overlay). Leaves in the output directory
# (default ${UNDERSTUDY_DEBIAN_DISK_DIR:-<debian cache>/disk}):
#   disk-bios.img  3 GiB sparse: MBR, one ext4 root partition (1 MiB on), GRUB for i386-pc in the
#                  MBR and the gap before the partition; boots with SeaBIOS (`pc` or `q35`)
#   disk-uefi.img  3 GiB sparse: GPT, an EFI system partition (FAT32, 64 MiB) holding GRUB for
#                  x86_64-efi at the removable path EFI/BOOT/BOOTX64.EFI, and an ext4 root;
#                  boots with OVMF (q35)
#   data.img       1 GiB sparse ext4 without a partition table: /var/lib/postgresql (the
#                  `bench` database), mounted by both variants by UUID
#   ready          written last: the digest of the inputs (this script, the tree's build, GRUB)
#
# Both variants boot /boot/vmlinuz-* with root=UUID=<their root> ro console=ttyS0 quiet, give the
# NIC with MAC 52:54:00:77:00:02 the address 10.77.0.2/24 whatever its name (systemd-networkd
# matches the MAC), and run PostgreSQL 15 from the second disk. Copy the files before booting.
#
# Needs no partition-table support in the host kernel and no loop device: mke2fs and mkfs.fat
# write each file system at its partition's offset in the image file, mtools fills the FAT, and
# the GRUB images are written in place the way grub-bios-setup would. Runs as root (overlayfs).
# Idempotent; UNDERSTUDY_DEBIAN_DISK_REFRESH=1 rebuilds anyway. Prints the output directory on
# stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
disk_size="3G"
esp_mib=64
data_size="1G"
mac="52:54:00:77:00:02"
guest_address="10.77.0.2/24"
grub_lib=/usr/lib/grub

log() { printf 'build-debian-disk: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (the edits to the tree go through an overlay mount)"
for tool in sfdisk mkfs.ext4 mkfs.vfat mmd mcopy grub-mkimage; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run Deploy/install.sh (fdisk, dosfstools, mtools, grub-pc-bin, grub-efi-amd64-bin)"
done
for platform in i386-pc x86_64-efi; do
    [[ -f "$grub_lib/$platform/moddep.lst" ]] || die "no GRUB for $platform in $grub_lib: run Deploy/install.sh"
done

base="$("$here/build-debian.sh")"
tree="$base/tree"
out="${UNDERSTUDY_DEBIAN_DISK_DIR:-$base/disk}"
inputs="$(printf 'script %s\nbase %s @ %s\ngrub %s\n' "$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)" \
    "$(sha256sum < "$base/ready" | cut -d' ' -f1)" "$(stat -c %Y "$base/ready")" \
    "$(dpkg-query -W -f='${Version} ' grub-pc-bin grub-efi-amd64-bin)")"

is_ready() {
    [[ -f "$out/ready" && "$(cat "$out/ready")" == "$inputs" && -s "$out/disk-bios.img" && -s "$out/disk-uefi.img" &&
       -s "$out/data.img" ]]
}

if [[ "${UNDERSTUDY_DEBIAN_DISK_REFRESH:-0}" != 1 ]] && is_ready; then
    printf '%s\n' "$out"
    exit 0
fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if [[ "${UNDERSTUDY_DEBIAN_DISK_REFRESH:-0}" != 1 ]] && is_ready; then
    printf '%s\n' "$out"
    exit 0
fi

started=$SECONDS
stage="$out/.stage"
merged="$stage/merged"

cleanup() {
    local status=$?
    if mountpoint -q "$merged" 2>/dev/null; then umount "$merged" || umount -l "$merged"; fi
    rm -rf "$stage" "$out"/*.tmp
    [[ $status == 0 ]] || log "FAILED after $((SECONDS - started)) s (status $status); $out is incomplete and will be rebuilt"
}
trap cleanup EXIT

rm -f "$out/ready"
if mountpoint -q "$merged" 2>/dev/null; then umount -l "$merged"; fi
rm -rf "$stage" "$out/disk-bios.img" "$out/disk-uefi.img" "$out/data.img"

# Fixed identifiers, so that a rebuild makes the same disks and the boot configuration can name them.
uuid_of() {
    local h
    h="$(printf 'understudy-debian-%s' "$1" | sha256sum | cut -c1-32)"
    printf '%s-%s-4%s-8%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" "${h:17:3}" "${h:20:12}"
}
data_uuid="$(uuid_of data)"
esp_serial="$(printf 'understudy-debian-esp' | sha256sum | cut -c1-8 | tr a-f A-F)"

kernels=("$tree"/boot/vmlinuz-*)
[[ ${#kernels[@]} == 1 && -f "${kernels[0]}" ]] || die "expected one kernel in $tree/boot, found: ${kernels[*]}"
release="${kernels[0]##*/vmlinuz-}"
[[ -f "$tree/boot/initrd.img-$release" ]] || die "no $tree/boot/initrd.img-$release"
[[ -d "$tree/var/lib/postgresql/15/main" ]] || die "no PostgreSQL cluster in $tree/var/lib/postgresql/15/main"

# The partition (start and size, in 512-byte sectors) numbered $2 in image $1.
partition() {
    sfdisk --dump "$1" | sed -n "s|^$1$2 *: *start= *\([0-9]*\), *size= *\([0-9]*\).*|\1 \2|p"
}

# An ext4 file system made from $merged inside partition $2 of image $1 (mke2fs writes at the
# offset itself; nodiscard keeps it from punching holes outside its range).
make_root() {
    local image=$1 number=$2 uuid=$3 start size
    read -r start size < <(partition "$image" "$number")
    [[ -n "$start" ]] || die "no partition $number in $image"
    mkfs.ext4 -q -F -L understudy-root -U "$uuid" -E "offset=$((start * 512)),nodiscard" -d "$merged" \
        "$image" "$((size / 2))k" >&2
}

# The root's boot configuration: fstab, GRUB's modules for $1 (what grub-install copies) and grub.cfg.
configure_root() {
    local platform=$1 partmap=$2 uuid=$3 esp_line=$4
    {
        printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$uuid"
        printf 'UUID=%s /var/lib/postgresql ext4 defaults 0 2\n' "$data_uuid"
        [[ -z "$esp_line" ]] || printf '%s\n' "$esp_line"
    } > "$merged/etc/fstab"
    rm -rf "$merged/boot/grub" "$merged/boot/efi"
    [[ -z "$esp_line" ]] || install -d -m 700 "$merged/boot/efi"
    mkdir -p "$merged/boot/grub/$platform"
    cp "$grub_lib/$platform"/*.mod "$grub_lib/$platform"/*.lst "$merged/boot/grub/$platform/"
    {
        printf '# Written by Deploy/guest/build-debian-disk.sh\nset default=0\nset timeout=0\n'
        # SeaBIOS has no console without a display; OVMF already mirrors its console to the serial port.
        [[ $platform != i386-pc ]] ||
            printf 'serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n'
        printf "menuentry 'Debian GNU/Linux 12 (understudy, %s)' {\n" "$platform"
        printf '    insmod %s\n    insmod ext2\n' "$partmap"
        printf '    search --no-floppy --fs-uuid --set=root %s\n' "$uuid"
        printf '    linux /boot/vmlinuz-%s root=UUID=%s ro console=ttyS0 quiet\n' "$release" "$uuid"
        printf '    initrd /boot/initrd.img-%s\n}\n' "$release"
    } > "$merged/boot/grub/grub.cfg"
}

# GRUB's first stage finds the root by UUID and reads the rest (normal.mod, grub.cfg) from it.
early_config() {
    printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\n' "$1" > "$stage/early-$1.cfg"
    printf '%s\n' "$stage/early-$1.cfg"
}

log "[1/5] overlay on $tree: the root on the first disk, PostgreSQL's data moved to the second"
mkdir -p "$stage/upper" "$stage/work" "$merged"
mount -t overlay overlay -o "lowerdir=$tree,upperdir=$stage/upper,workdir=$stage/work" "$merged"
# The mount point stays (owned by postgres); the cluster lives on data.img.
rm -rf "$merged/var/lib/postgresql/15"
# Names differ between machine types (ens3 on pc, enp0s2 or enp1s0 on q35): match the NIC by its address.
cat > "$merged/etc/systemd/network/10-understudy.network" <<EOF
[Match]
MACAddress=$mac

[Network]
Address=$guest_address
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF

log "[2/5] data.img: $data_size ext4 with /var/lib/postgresql"
truncate -s "$data_size" "$out/data.img.tmp"
# The file system's root becomes the mount point: owned by postgres like the directory it covers.
mkfs.ext4 -q -F -L understudy-data -U "$data_uuid" -E "nodiscard,root_owner=$(stat -c %u:%g "$tree/var/lib/postgresql")" \
    -d "$tree/var/lib/postgresql" "$out/data.img.tmp" >&2

log "[3/5] disk-bios.img: MBR, ext4 root, GRUB i386-pc"
bios_uuid="$(uuid_of root-bios)"
image="$out/disk-bios.img.tmp"
truncate -s "$disk_size" "$image"
printf 'label: dos\nlabel-id: 0x%s\nstart=2048, type=83, bootable\n' "$(printf 'bios' | sha256sum | cut -c1-8)" |
    sfdisk -q "$image" >&2
configure_root i386-pc part_msdos "$bios_uuid" ""
make_root "$image" 1 "$bios_uuid"
grub-mkimage -O i386-pc -o "$stage/core.img" -p /boot/grub -c "$(early_config "$bios_uuid")" biosdisk part_msdos ext2 search
core_sectors=$(( ($(stat -c %s "$stage/core.img") + 511) / 512 ))
((core_sectors < 2047)) || die "core.img needs $core_sectors sectors; only 2047 lie before the partition"
# What grub-bios-setup does: boot.img's code into the MBR (the partition table stays), its
# boot-drive check turned into two NOPs for a hard disk (offset 0x66), and core.img from
# sector 1, where boot.img looks by default; core.img's own block list already says
# "the next sectors".
dd if="$grub_lib/i386-pc/boot.img" of="$image" bs=440 count=1 conv=notrunc status=none
printf '\x90\x90' | dd of="$image" bs=1 seek=$((0x66)) conv=notrunc status=none
dd if="$stage/core.img" of="$image" bs=512 seek=1 conv=notrunc status=none

log "[4/5] disk-uefi.img: GPT, EFI system partition with EFI/BOOT/BOOTX64.EFI, ext4 root"
uefi_uuid="$(uuid_of root-uefi)"
image="$out/disk-uefi.img.tmp"
truncate -s "$disk_size" "$image"
{
    printf 'label: gpt\nlabel-id: %s\n' "$(uuid_of gpt)"
    printf 'start=2048, size=%dMiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=%s, name="EFI system partition"\n' \
        "$esp_mib" "$(uuid_of esp-partition)"
    printf 'type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=%s, name="understudy-root"\n' "$(uuid_of root-partition)"
} | sfdisk -q "$image" >&2
configure_root x86_64-efi part_gpt "$uefi_uuid" \
    "UUID=${esp_serial:0:4}-${esp_serial:4:4} /boot/efi vfat umask=0077,nofail 0 0"
make_root "$image" 2 "$uefi_uuid"
read -r esp_start esp_size < <(partition "$image" 1)
mkfs.vfat -F 32 -s 1 -n ESP -i "$esp_serial" --offset="$esp_start" "$image" "$((esp_size / 2))" >/dev/null
grub-mkimage -O x86_64-efi -o "$stage/BOOTX64.EFI" -p /boot/grub -c "$(early_config "$uefi_uuid")" part_gpt ext2 search
# The removable path needs no boot entry in the firmware's variables: OVMF finds it on any disk.
export MTOOLS_SKIP_CHECK=1
mmd -i "$image@@$((esp_start * 512))" ::/EFI ::/EFI/BOOT
mcopy -i "$image@@$((esp_start * 512))" "$stage/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

log "[5/5] done: the overlay goes"
umount "$merged"
for name in data disk-bios disk-uefi; do mv "$out/$name.img.tmp" "$out/$name.img"; done
printf '%s\n' "$inputs" > "$out/ready.tmp"
mv "$out/ready.tmp" "$out/ready"
log "done in $((SECONDS - started)) s: kernel $release; root UUIDs bios $bios_uuid, uefi $uefi_uuid; data $data_uuid"
printf '%s\n' "$out"
