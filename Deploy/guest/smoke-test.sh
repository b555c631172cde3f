#!/usr/bin/env bash
# Boot the counter guest under QEMU the way the agent does (shared file-backed RAM, serial
# to a file, QMP on a unix socket), check that COUNTER lines appear and increase, and time
# a QMP stop / xen-save-devices-state / cont cycle. Cleans up everything it started.
#
#   smoke-test.sh [EXTRA KERNEL ARGS...]     e.g. understudy.dirty_pages_per_sec=0
#
# Needs qemu-system-x86_64 and python3. Work files go to a fresh directory under /tmp
# (kept on failure for inspection) and guest RAM to /dev/shm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'smoke-test: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

accel="${UNDERSTUDY_ACCEL:-tcg}"   # KVM is unusable on the PVM machines (DESIGN.md)
work="$(mktemp -d /tmp/understudy-smoke.XXXXXX)"
ram="/dev/shm/understudy-smoke-$$-ram"
devstate="/dev/shm/understudy-smoke-$$-dev"
serial="$work/serial.log"
qmp="$work/qmp.sock"
qemu_pid=""
ok=0

cleanup() {
    if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -f "$ram" "$devstate" "$qmp"
    if [[ $ok == 1 ]]; then rm -rf "$work"; else log "work files kept in $work"; fi
}
trap cleanup EXIT

guest_dir="$("$here/fetch-kernel.sh" | tail -n1)"
initrd="$("$here/build-initramfs.sh" "$work/counter.cpio.gz" "$here/counter.c" | tail -n1)"

t0=$(date +%s.%N)
qemu-system-x86_64 -accel "$accel" \
    -machine pc,memory-backend=ram \
    -object "memory-backend-file,id=ram,size=256M,share=on,mem-path=$ram" -m 256M \
    -nodefaults -no-user-config -vga none -display none -monitor none \
    -serial "file:$serial" -qmp "unix:$qmp,server=on,wait=off" \
    -kernel "$guest_dir/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 $*" \
    >"$work/qemu.out" 2>&1 &
qemu_pid=$!

# First COUNTER line: the boot time a test harness will actually wait for.
first=""
for _ in $(seq 1 300); do
    kill -0 "$qemu_pid" 2>/dev/null || die "qemu exited: $(cat "$work/qemu.out")"
    if grep -q '^COUNTER [0-9]*$' "$serial" 2>/dev/null; then first=$(date +%s.%N); break; fi
    sleep 0.05
done
[[ -n "$first" ]] || die "no COUNTER line within 15 s"
log "first COUNTER line after $(awk -v a="$first" -v b="$t0" 'BEGIN { printf "%.2f", a - b }') s (QEMU start to line in serial log)"
sleep 1

python3 - "$qmp" "$devstate" <<'PY'
import json, socket, sys, time
sock_path, devstate = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.connect(sock_path)
f = s.makefile("rw")
def reply():
    while True:
        msg = json.loads(f.readline())
        if "event" not in msg:
            return msg
json.loads(f.readline())  # greeting
def cmd(name, **args):
    req = {"execute": name}
    if args: req["arguments"] = args
    t = time.perf_counter()
    f.write(json.dumps(req) + "\n"); f.flush()
    r = reply()
    ms = (time.perf_counter() - t) * 1000
    if "error" in r: sys.exit(f"{name}: {r['error']}")
    return ms
cmd("qmp_capabilities")
for i in range(5):
    t = time.perf_counter()
    a = cmd("stop")
    b = cmd("xen-save-devices-state", filename=devstate, live=False)
    c = cmd("cont")
    total = (time.perf_counter() - t) * 1000
    import os
    print(f"smoke-test: QMP cycle {i}: stop {a:.2f} ms, xen-save-devices-state {b:.2f} ms "
          f"({os.path.getsize(devstate)} bytes), cont {c:.2f} ms, paused {total:.2f} ms", file=sys.stderr)
    time.sleep(0.2)
PY

sleep 1
mapfile -t values < <(sed -n 's/^COUNTER \([0-9][0-9]*\)$/\1/p' "$serial")
[[ ${#values[@]} -ge 5 ]] || die "only ${#values[@]} COUNTER lines"
for ((i = 1; i < ${#values[@]}; i++)); do
    (( values[i] >= values[i-1] )) || die "counter went backwards: ${values[i-1]} -> ${values[i]}"
done
(( values[-1] > values[0] )) || die "counter does not advance"
log "${#values[@]} COUNTER lines, ${values[0]} .. ${values[-1]}, non-decreasing"
grep -v '^COUNTER ' "$serial" | grep -E 'understudy-init|counter:' >&2 || true
ok=1
log PASS
