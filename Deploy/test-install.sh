#!/usr/bin/env bash
# Tests both ways of installing Understudy; CI runs it after Deploy/install.sh (the README's test command).
#
#   Deploy/test-install.sh [source|package [DEB]]        (default: both; root)
#
# source   The README's path as a newcomer walks it after ./Deploy/install.sh, each command in a
#          fresh login shell from the repository: `understudy` is on PATH (this checkout's build);
#          "Protecting a VM": Deploy/examples/setup-one-machine.sh (run twice: it is idempotent),
#          `understudy run` with backup.toml and primary.toml until `understudy status` says the
#          VM is protected, the client asks the guest's counter service; then, the agents gone,
#          `setup-one-machine.sh remove` removes its network. It all runs in private mount,
#          network and PID namespaces, with throwaway overlays on /etc, /var/lib and
#          /var/cache/understudy and tmpfs on /run and /dev/shm: the host keeps nothing of it, and
#          no agent or QEMU outlives the namespace.
# package  Deploy/package-deb.sh builds the package (install.sh's build serves it), or DEB is
#          tested. A clean Debian root without /opt/swift (debootstrap --variant=minbase, cached in
#          /var/cache/understudy/pkgtest-root and used through a throwaway overlay) gets the
#          package's Depends from the Debian mirror with apt, then the package with `dpkg -i`;
#          there `understudy --version`, `understudy certs init`, the preload library and the
#          unit must work, and `dpkg --purge` must remove it.
# Prints what each part took; exits non-zero at the first failure, saying what failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
source "$here/release-build.sh"
source "$here/debian-mirror.sh"
log() { printf 'test-install: %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

# Runs FUNCTION (defined in this file) with ARGUMENTS in new namespaces (unshare's NAMESPACE
# options), with a throwaway overlay on each DIRECTORY. Mounts made inside vanish with the mount
# namespace, also when a check fails; overlays need upper directories outside overlayfs: a tmpfs.
#   isolated NAMESPACE_OPTION... -- DIRECTORY... -- FUNCTION ARGUMENT...
isolated() {
    local options=() scratch status=0
    while [[ "$1" != -- ]]; do options+=("$1"); shift; done
    shift
    scratch="$(mktemp -d)"
    # The inner shell gets this file's functions, and `repo` through the environment.
    repo="$repo" unshare --mount --propagation private "${options[@]}" -- bash -euo pipefail -c "$(declare -f)
        overlay_then \"\$@\"" isolated "$scratch" "$@" || status=$?
    rmdir "$scratch"
    return "$status"
}

overlay_then() { # SCRATCH DIRECTORY... -- FUNCTION ARGUMENT...
    local scratch="$1" i=0
    shift
    mount -t tmpfs tmpfs "$scratch"
    while [[ "$1" != -- ]]; do
        mkdir "$scratch/upper$i" "$scratch/work$i"
        mount -t overlay overlay -o "lowerdir=$1,upperdir=$scratch/upper$i,workdir=$scratch/work$i" "$1"
        i=$((i + 1))
        shift
    done
    shift
    "$@"
}

# Each command as the newcomer types it: a fresh login shell (root's PATH from /etc/profile), in the repository.
newcomer() { env -i "HOME=$HOME" TERM=dumb LC_ALL=C.UTF-8 bash -l -c "cd '$repo' && $1"; }

test_from_source() {
    local found built
    found="$(newcomer 'command -v understudy')" ||
        fail "a fresh login shell finds no understudy (PATH=$(newcomer 'echo $PATH')): ./Deploy/install.sh puts it there"
    built="$(release_build_flags "$repo" | xargs -d '\n' swift build --show-bin-path)/understudy"
    cmp -s "$found" "$built" || fail "$found is not this checkout's build ($built): run ./Deploy/install.sh"
    isolated --net --pid --fork --mount-proc -- /etc /var/lib /var/cache/understudy -- protect_a_vm
}

# Inside the namespaces: the README's "Protecting a VM", then what its commands must have made.
protect_a_vm() {
    mount -t tmpfs tmpfs /run
    mount -t tmpfs tmpfs /dev/shm
    ip link set lo up
    local run
    for run in first second; do
        newcomer 'Deploy/examples/setup-one-machine.sh' >/dev/null || fail "setup-one-machine.sh failed ($run run)"
    done
    local certs=/etc/understudy/certs node
    for node in primary backup; do
        openssl verify -CAfile "$certs/ca.pem" "$certs/$node.pem" >/dev/null || fail "no certificate for $node signed by $certs/ca.pem"
        [[ -s "$certs/$node.key" ]] || fail "no key for $node in $certs"
    done
    local disks=/var/lib/understudy/counter-vm bridged
    [[ "$(blkid -o value -s TYPE "$disks/primary-disk.img")" == ext4 ]] || fail "the primary disk is not ext4"
    [[ "$(stat -c %s "$disks/backup-disk.img")" == "$(stat -c %s "$disks/primary-disk.img")" ]] ||
        fail "the replica disk is not as large as the primary disk"
    bridged="$(ip -o link show master us-br0 | awk -F': ' '{ print $2 }' | cut -d@ -f1 | sort | tr '\n' ' ')"
    [[ "$bridged" == "us-tap-b us-tap-p us-veth0 " ]] || fail "us-br0 holds \"$bridged\", not both TAPs and the client link"
    [[ "$(ip -n understudy-client -o addr show eth0)" == *"inet 10.77.0.1/24"* ]] || fail "the client namespace has no 10.77.0.1/24: $(ip -n understudy-client -o addr show eth0 2>&1)"

    # Not jobs of this shell (disown), which would report them "Killed" at the end.
    local agents=()
    newcomer 'understudy run --config Deploy/examples/backup.toml' > /run/backup.log 2>&1 &
    agents+=($!)
    newcomer 'understudy run --config Deploy/examples/primary.toml' > /run/primary.log 2>&1 &
    agents+=($!)
    disown -a
    agents_failed() { fail "$1; the primary's log ends: $(tail -n 5 /run/primary.log); the backup's: $(tail -n 5 /run/backup.log)"; }
    local status="" deadline=$((SECONDS + 180))
    until grep -q '"state":"protecting"' <<<"$status" && ! grep -q '"committedEpoch":0,' <<<"$status"; do
        ((SECONDS < deadline)) || agents_failed "the VM is not protected after 180 s (status: $status)"
        sleep 1
        status="$(newcomer 'understudy status --config Deploy/examples/primary.toml --json' 2>&1)" || true
    done
    # Protected says nothing about the guest's own services: the first checkpoint can commit
    # before the guest has booted far enough to listen (seen: refused 1.3 s after the start).
    # So an unanswered connection is tried again for a minute; a wrong answer fails at once.
    local replies listening=$((SECONDS + 60))
    while :; do
        replies="$(printf 'n\nn\n' | newcomer 'timeout 20 ip netns exec understudy-client busybox nc 10.77.0.2 7000' 2>/dev/null | tr '\n' ' ')" || true
        [[ -z "$replies" ]] && ((SECONDS < listening)) || break
        sleep 1
    done
    [[ "$replies" =~ ^([0-9]+)\ ([0-9]+)\ $ ]] && ((BASH_REMATCH[2] == BASH_REMATCH[1] + 1)) ||
        agents_failed "the guest's counter service answered \"$replies\" to n, n"

    # This shell is the PID namespace's init: -1 reaches every other process in it (the agents, their QEMUs).
    log "protected (epoch $(grep -o '"committedEpoch":[0-9]*' <<<"$status" | cut -d: -f2) committed); the guest's counter answered $replies"
    kill -KILL -1 2>/dev/null || true
    local tries=0
    while kill -0 "${agents[@]}" 2>/dev/null && ((tries++ < 100)); do sleep 0.1; done
    newcomer 'Deploy/examples/setup-one-machine.sh remove' || fail "setup-one-machine.sh remove failed"
    [[ -z "$(ip netns list)" ]] && ! ip link show us-br0 >/dev/null 2>&1 || fail "remove left the namespace or the bridge"
}

test_package() {
    local deb="${1:-}"
    if [[ -z "$deb" ]]; then deb="$("$here/package-deb.sh")" || fail "package-deb.sh failed"; fi
    [[ -f "$deb" ]] || fail "no package at $deb"
    local depends
    depends="$(dpkg-deb -f "$deb" Depends)"
    if grep -qiE 'swift|foundation|dispatch|icu' <<<"$depends"; then fail "the package depends on the toolchain: $depends"; fi

    # The clean root, made once: Debian's minimal base from the mirror apt uses, nothing else.
    local cache=/var/cache/understudy/pkgtest-root mirror suite=bookworm inputs
    mirror="$(debian_mirror)" || fail "no Debian mirror"
    inputs="$(printf 'debootstrap --variant=minbase %s %s\n' "$suite" "$mirror")"
    mkdir -p "$cache/apt-archives/partial" "$cache/apt-lists/partial"
    exec 9>"$cache/.lock"
    flock 9
    if [[ ! -f "$cache/ready" || "$(cat "$cache/ready")" != "$inputs" || ! -x "$cache/tree/usr/bin/dpkg" ]]; then
        local started=$SECONDS
        log "making the clean root: $inputs (once; a few minutes)"
        rm -f "$cache/ready"
        rm -rf "$cache/tree"
        debootstrap --variant=minbase "$suite" "$cache/tree" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
            fail "debootstrap failed; see $cache/debootstrap.log ($(tail -n 3 "$cache/debootstrap.log" | tr '\n' ' '))"
        printf '%s\n' "$inputs" > "$cache/ready"
        log "clean root made in $((SECONDS - started)) s"
    fi
    [[ ! -e "$cache/tree/opt/swift" ]] || fail "$cache/tree has /opt/swift: not a clean root"
    # A throwaway overlay of it; apt's lists and downloads are kept between runs (they are not installed software).
    isolated -- "$cache/tree" -- install_in_clean_root "$cache" "$deb"
}

# Inside the mount namespace, ROOT overlaid: the package as a host without the toolchain gets it.
install_in_clean_root() { # CACHE DEB
    local cache="$1" deb="$2" root="$1/tree"
    mount -t proc proc "$root/proc"
    mount --bind /dev "$root/dev"
    mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
    mount --bind "$cache/apt-lists" "$root/var/lib/apt/lists"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    cp "$deb" "$root/tmp/understudy.deb"
    in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive "$@"; }
    local apt=(apt-get -qq -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0) started=$SECONDS
    in_root "${apt[@]}" update || fail "apt-get update in the clean root failed"
    in_root "${apt[@]}" --no-install-recommends satisfy "$(dpkg-deb -f "$deb" Depends)" >/dev/null 2>&1 ||
        fail "apt cannot install the package's Depends: $(dpkg-deb -f "$deb" Depends)"
    log "the Depends installed in $((SECONDS - started)) s"
    in_root dpkg -i /tmp/understudy.deb >/dev/null || fail "dpkg -i understudy.deb failed"

    local reported version node file missing preloaded unit executable
    [[ "$(in_root bash -l -c 'command -v understudy')" == /usr/bin/understudy ]] || fail "a login shell in the root finds no /usr/bin/understudy"
    version="$(dpkg-deb -f "$deb" Version)"
    reported="$(in_root understudy --version)" || fail "understudy --version fails without the toolchain"
    [[ "$reported" == "understudy $version "* ]] || fail "understudy --version says \"$reported\", the package is $version"
    in_root understudy certs init --dir /root/certs --nodes a,b >/dev/null || fail "understudy certs init fails without the toolchain"
    for node in a b; do
        openssl verify -CAfile "$root/root/certs/ca.pem" "$root/root/certs/$node.pem" >/dev/null || fail "certs init made no valid certificate for $node"
    done
    for file in /usr/bin/understudy /usr/lib/understudy/libUnderstudyPreload.so; do
        missing="$(in_root ldd "$file" | grep "not found" || true)"
        [[ -z "$missing" ]] || fail "$file needs libraries the root lacks: $missing"
    done
    # ld.so only warns when a preloaded library cannot be loaded, and the program runs without it.
    preloaded="$(in_root env LD_PRELOAD=/usr/lib/understudy/libUnderstudyPreload.so true 2>&1)" &&
        [[ -z "$preloaded" ]] || fail "the preload library does not load: $preloaded"
    unit=/lib/systemd/system/understudy@.service
    executable="$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$root$unit")"
    [[ -x "$root$executable" ]] || fail "$unit starts \"$executable\", which the package does not install"
    in_root dpkg --purge understudy >/dev/null || fail "dpkg --purge understudy failed"
    [[ ! -e "$root/usr/bin/understudy" && ! -e "$root/usr/lib/understudy" ]] || fail "dpkg --purge left files behind"
    log "in the clean root: $reported"
}

[[ $(id -u) == 0 ]] || fail "run as root (namespaces, overlays, chroot)"
part="${1:-both}"
[[ "$part" =~ ^(source|package|both)$ ]] || { echo "usage: $0 [source|package [DEB]]" >&2; exit 2; }
started=$SECONDS
if [[ "$part" == source || "$part" == both ]]; then
    test_from_source
    log "from source: understudy on a login shell's PATH; set-up, protection and removal as in the README ($((SECONDS - started)) s)"
fi
if [[ "$part" == package || "$part" == both ]]; then
    started=$SECONDS
    test_package "${2:-}"
    log "package: installed with dpkg -i in a clean Debian root, runs, purged ($((SECONDS - started)) s)"
fi
