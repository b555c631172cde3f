#!/usr/bin/env bash
# Build a busybox initramfs that loads the virtio modules and runs a test program.
#
#   build-initramfs.sh OUTPUT.cpio.gz PROGRAM.c [MORE.c ...]
#
# Each PROGRAM.c is compiled with `gcc -static -O2` into /usr/bin/PROGRAM (name = file name
# without .c). At boot /init runs the program named by `understudy.run=NAME` (default: the
# first one given here) with stdout/stderr on the serial console. See README.md for all
# kernel command line parameters.
#
# Kernel and modules come from fetch-kernel.sh's cache (${UNDERSTUDY_GUEST_DIR}); it is run
# first and does nothing when the cache is complete. Extra compiler flags:
# UNDERSTUDY_GUEST_CFLAGS. The output is rebuilt only when an input changed (the input
# digest is kept next to it in OUTPUT.inputs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'build-initramfs: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -ge 2 ]] || { echo "usage: $0 OUTPUT.cpio.gz PROGRAM.c [MORE.c ...]" >&2; exit 2; }
output="$1"; shift
sources=("$@")

# Build products must not end up tracked in the repository; an ignored path (.build/) is
# fine. Checked before creating any directory, so a refused path leaves nothing behind.
probe="$(dirname "$output")"
while [[ ! -d "$probe" ]]; do probe="$(dirname "$probe")"; done
if command -v git >/dev/null 2>&1 && git -C "$probe" rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
   ! git -C "$probe" check-ignore -q "$(cd "$probe" && pwd)/${output#"$probe"/}"; then
    die "$output is inside a git work tree and not ignored; choose a path outside the repo"
fi
mkdir -p "$(dirname "$output")"
output="$(cd "$(dirname "$output")" && pwd)/$(basename "$output")"

names=()
declare -A seen=()
for src in "${sources[@]}"; do
    [[ -f "$src" && "$src" == *.c ]] || die "not a .c file: $src"
    name="$(basename "$src" .c)"
    [[ -z "${seen[$name]:-}" ]] || die "two programs named $name"
    seen[$name]=1
    names+=("$name")
done

command -v gcc >/dev/null 2>&1 || die "gcc not found (apt-get install gcc libc6-dev)"

# The initramfs has no shared libraries, so busybox must be the static build. Debian's
# busybox-static conflicts with (replaces) the dynamic busybox package; that is intended.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
    log "installing busybox-static"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >&2; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >&2
    fi
fi
# Read the whole list before filtering: an early-exiting grep would SIGPIPE dpkg-query,
# which pipefail turns into a failure.
busybox_files="$(dpkg-query -L busybox-static)"
busybox="$(grep '/bin/busybox$' <<<"$busybox_files" | head -n1 || true)"
[[ -x "$busybox" ]] || die "busybox-static installed but its binary is missing"
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is dynamically linked"; fi

guest_dir="$("$here/fetch-kernel.sh" | tail -n1)"
moddir="$guest_dir/modules"
[[ -f "$moddir/load-order" ]] || die "no module load order in $moddir"

# Cheap rebuild check: everything that ends up in the image, plus how it was made.
digest="$(
    {
        sha256sum "${BASH_SOURCE[0]}" "$busybox" "$guest_dir/kernel-release" "$moddir/load-order" | cut -d' ' -f1
        while IFS= read -r m; do sha256sum "$moddir/$m.ko" | cut -d' ' -f1; done < "$moddir/load-order"
        for i in "${!sources[@]}"; do printf '%s ' "${names[$i]}"; sha256sum "${sources[$i]}" | cut -d' ' -f1; done
        gcc -dumpfullversion -dumpversion
        printf 'cflags=%s\n' "${UNDERSTUDY_GUEST_CFLAGS:-}"
    } | sha256sum | cut -d' ' -f1
)"
if [[ -s "$output" && -f "$output.inputs" && "$(cat "$output.inputs")" == "$digest" ]]; then
    log "up to date: $output"
    printf '%s\n' "$output"
    exit 0
fi

stage="$(mktemp -d)"
chmod 755 "$stage"  # becomes the guest's / (mktemp makes it 0700)
tmp_out="$output.tmp.$$"
trap 'rm -rf "$stage" "$tmp_out"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib/modules,etc/understudy,proc,sys,dev,tmp,run,root,mnt}

cp "$busybox" "$stage/bin/busybox"
# Links at build time rather than `busybox --install` in /init: fewer steps before the
# program starts, and the image is the same on every boot.
for applet in $("$busybox" --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$stage/bin/$applet"
done

while IFS= read -r m; do
    cp "$moddir/$m.ko" "$stage/lib/modules/$m.ko"
done < "$moddir/load-order"
cp "$moddir/load-order" "$stage/lib/modules/load-order"

for i in "${!sources[@]}"; do
    # shellcheck disable=SC2086 # UNDERSTUDY_GUEST_CFLAGS is a list of flags
    gcc -static -O2 -Wall ${UNDERSTUDY_GUEST_CFLAGS:-} -o "$stage/usr/bin/${names[$i]}" "${sources[$i]}" ||
        die "compiling ${sources[$i]} failed"
done
printf '%s\n' "${names[@]}" > "$stage/etc/understudy/programs"

cat > "$stage/init" <<'INIT'
#!/bin/busybox sh
# PID 1 of an Understudy test guest. Must never exit: the kernel panics when init does.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
log() { echo "understudy-init: $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
# The kernel may have started us without a console (no /dev/console in the image).
exec </dev/console >/dev/console 2>&1
hostname understudy-guest

run=""; ip=""; gw=""; on_exit="hang"; klog=3
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        understudy.run=*)  run="${arg#*=}" ;;
        understudy.ip=*)   ip="${arg#*=}" ;;
        understudy.gw=*)   gw="${arg#*=}" ;;
        understudy.exit=*) on_exit="${arg#*=}" ;;
        understudy.klog=*) klog="${arg#*=}" ;;
    esac
done
[ -n "$run" ] || run="$(head -n1 /etc/understudy/programs)"

# Dependencies first (fetch-kernel.sh wrote the order from each module's depends=).
while read -r m; do
    insmod "/lib/modules/$m.ko" || log "warning: insmod $m failed"
done < /lib/modules/load-order

# virtio_net registers eth0 while probing; give that a moment, but only when the machine
# has a virtio network device (virtio device id 1) at all.
has_virtio_net=""
for d in /sys/bus/virtio/devices/*/device; do
    [ -f "$d" ] && [ "$(cat "$d")" = 0x0001 ] && has_virtio_net=1
done
if [ -n "$has_virtio_net" ]; then
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do usleep 20000; i=$((i + 1)); done
fi

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    [ -n "$ip" ] && { ip addr add "$ip" dev eth0 || log "warning: cannot set address $ip"; }
    [ -n "$gw" ] && { ip route add default via "$gw" || log "warning: cannot set gateway $gw"; }
    log "eth0 up ${ip:-without address}"
fi

prog="/usr/bin/$run"
[ -x "$prog" ] || prog="$(command -v "$run" || true)"

tty=/dev/ttyS0
[ -c "$tty" ] || tty=/dev/console
# Programs' lines should end in plain \n so tests can match them exactly; and kernel
# messages printed in the middle of a line would corrupt it, so keep the console to
# critical ones from here on (understudy.klog=7 shows everything).
stty -F "$tty" -onlcr 2>/dev/null || true
echo "$klog" > /proc/sys/kernel/printk

if [ -n "$prog" ]; then
    log "running $run"
    "$prog" <"$tty" >"$tty" 2>&1
    log "$run exited with status $?"
else
    log "error: no program $run"
fi

case "$on_exit" in
    poweroff) poweroff -f ;;
    reboot)   reboot -f ;;
    shell)    exec setsid cttyhack sh ;;
esac
while :; do sleep 3600; done
INIT
chmod 755 "$stage/init"

# Fixed timestamps and sorted entries: the same inputs give the same image bytes.
find "$stage" -exec touch -h -d @0 {} +
(cd "$stage" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null | gzip -9n) > "$tmp_out"
mv "$tmp_out" "$output"
printf '%s\n' "$digest" > "$output.inputs"
log "wrote $output ($(wc -c < "$output") bytes; programs: ${names[*]}; kernel $(cat "$guest_dir/kernel-release"))"
printf '%s\n' "$output"
