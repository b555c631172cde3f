#!/usr/bin/env bash
# Tests both ways of installing Understudy; CI runs it after Deploy/install.sh (the README's test command).
#
#   Deploy/test-install.sh [source|package [DEB]]        (default: both; root)
#
# source   The README's path as a newcomer walks it after ./Deploy/install.sh: a fresh login shell
#          finds `understudy` (this checkout's build), and "Protecting a VM"'s set-up,
#          Deploy/examples/setup-one-machine.sh, runs from that shell, twice (it is idempotent),
#          after which `setup-one-machine.sh remove` removes its network. It all happens in private
#          mount and network namespaces, with throwaway overlays on /etc, /var/lib and
#          /var/cache/understudy and a tmpfs on /run: the host keeps nothing of it.
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

[[ $(id -u) == 0 ]] || fail "run as root (namespaces, overlays, chroot)"
part="${1:-both}"
[[ "$part" =~ ^(source|package|both)$ ]] || { echo "usage: $0 [source|package [DEB]]" >&2; exit 2; }

# Runs in a new mount namespace: mounts made inside vanish with it, also when a check fails.
# Overlays need an upper directory outside overlayfs and the directories they cover: a tmpfs here.
isolated() { # DIRECTORY... -- COMMAND: COMMAND with an overlay on each DIRECTORY, in its own mount namespace
    local scratch status=0
    scratch="$(mktemp -d)"
    unshare --mount --propagation private -- bash -euo pipefail -c '
        scratch="$1"; shift
        mount -t tmpfs tmpfs "$scratch"
        i=0
        while [[ "$1" != -- ]]; do
            mkdir "$scratch/upper$i" "$scratch/work$i"
            mount -t overlay overlay -o "lowerdir=$1,upperdir=$scratch/upper$i,workdir=$scratch/work$i" "$1"
            i=$((i + 1)); shift
        done
        shift
        exec "$@"' isolated "$scratch" "$@" || status=$?
    rmdir "$scratch"
    return "$status"
}

test_from_source() {
    local login=(env -i "HOME=$HOME" TERM=dumb LC_ALL=C.UTF-8 bash -l -c)
    local found built
    found="$("${login[@]}" 'command -v understudy')" ||
        fail "a fresh login shell finds no understudy (PATH=$("${login[@]}" 'echo $PATH')): ./Deploy/install.sh puts it there"
    built="$(release_build_flags "$repo" | xargs -d '\n' swift build --show-bin-path)/understudy"
    cmp -s "$found" "$built" || fail "$found is not this checkout's build ($built): run ./Deploy/install.sh"
    "${login[@]}" 'understudy --version' >/dev/null || fail "understudy --version fails in a login shell"

    # The newcomer's commands, in the repository, from a login shell; then what they must have made.
    isolated /etc /var/lib /var/cache/understudy -- unshare --net -- bash -euo pipefail -c '
        fail() { printf "test-install: FAILED: %s\n" "$*" >&2; exit 1; }
        newcomer=("${@:2}")
        mount -t tmpfs tmpfs /run
        cd "$1"
        for run in first second; do
            "${newcomer[@]}" Deploy/examples/setup-one-machine.sh >/dev/null || fail "setup-one-machine.sh failed ($run run)"
        done
        certs=/etc/understudy/certs
        for node in primary backup; do
            openssl verify -CAfile "$certs/ca.pem" "$certs/$node.pem" >/dev/null || fail "no certificate for $node signed by $certs/ca.pem"
            [[ -s "$certs/$node.key" ]] || fail "no key for $node in $certs"
        done
        disks=/var/lib/understudy/counter-vm
        [[ "$(blkid -o value -s TYPE "$disks/primary-disk.img")" == ext4 ]] || fail "the primary disk is not ext4"
        [[ "$(stat -c %s "$disks/backup-disk.img")" == "$(stat -c %s "$disks/primary-disk.img")" ]] ||
            fail "the replica disk is not the primary disk'"'"'s size"
        [[ -s /var/cache/understudy/guest/initramfs-counter.cpio.gz ]] || fail "no test guest initramfs"
        bridged="$(ip -o link show master us-br0 | awk -F": " "{ print \$2 }" | cut -d@ -f1 | sort | tr "\n" " ")"
        [[ "$bridged" == "us-tap-b us-tap-p us-veth0 " ]] || fail "us-br0 holds \"$bridged\", not both TAPs and the client link"
        ip -n understudy-client -o addr show eth0 | grep -q "inet 10.77.0.1/24" || fail "the client namespace has no 10.77.0.1/24"
        "${newcomer[@]}" "Deploy/examples/setup-one-machine.sh remove" || fail "setup-one-machine.sh remove failed"
        [[ -z "$(ip netns list)" ]] && ! ip link show us-br0 >/dev/null 2>&1 || fail "remove left the namespace or the bridge"
    ' newcomer "$repo" "${login[@]}"
}

test_package() {
    local deb="${1:-}"
    if [[ -z "$deb" ]]; then deb="$("$here/package-deb.sh")" || fail "package-deb.sh failed"; fi
    [[ -f "$deb" ]] || fail "no package at $deb"
    local depends version
    depends="$(dpkg-deb -f "$deb" Depends)"
    version="$(dpkg-deb -f "$deb" Version)"
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
    isolated "$cache/tree" -- bash -euo pipefail -c '
        fail() { printf "test-install: FAILED: %s\n" "$*" >&2; exit 1; }
        cache="$1" deb="$2" depends="$3" version="$4"
        root="$cache/tree"
        mount -t proc proc "$root/proc"
        mount --bind /dev "$root/dev"
        mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
        mount --bind "$cache/apt-lists" "$root/var/lib/apt/lists"
        cp /etc/resolv.conf "$root/etc/resolv.conf"
        cp "$deb" "$root/tmp/understudy.deb"
        in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive "$@"; }
        apt=(apt-get -qq -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0)
        started=$SECONDS
        in_root "${apt[@]}" update || fail "apt-get update in the clean root failed"
        in_root "${apt[@]}" --no-install-recommends satisfy "$depends" >/dev/null || fail "apt cannot satisfy the package'"'"'s Depends: $depends"
        printf "test-install: the Depends installed in %d s\n" $((SECONDS - started)) >&2
        in_root dpkg -i /tmp/understudy.deb >/dev/null || fail "dpkg -i understudy.deb failed"
        [[ "$(in_root bash -l -c "command -v understudy")" == /usr/bin/understudy ]] || fail "a login shell in the root finds no /usr/bin/understudy"
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
        executable="$(sed -n "s/^ExecStart=\([^ ]*\).*/\1/p" "$root$unit")"
        [[ -x "$root$executable" ]] || fail "$unit starts \"$executable\", which the package does not install"
        in_root dpkg --purge understudy >/dev/null || fail "dpkg --purge understudy failed"
        [[ ! -e "$root/usr/bin/understudy" && ! -e "$root/usr/lib/understudy" ]] || fail "dpkg --purge left files behind"
        printf "test-install: %s\n" "$reported"
    ' package "$cache" "$deb" "$depends" "$version"
}

started=$SECONDS
if [[ "$part" == source || "$part" == both ]]; then
    test_from_source
    log "from source: a login shell finds understudy; setup-one-machine.sh runs twice and is removed ($((SECONDS - started)) s)"
fi
if [[ "$part" == package || "$part" == both ]]; then
    started=$SECONDS
    test_package "${2:-}"
    log "package: installed with dpkg -i in a clean Debian root, runs, purged ($((SECONDS - started)) s)"
fi
