#!/usr/bin/env bash
# Fetch the Debian cloud kernel and the virtio (+ ext4) modules a test guest needs.
#
# Leaves in the cache directory (default ${UNDERSTUDY_GUEST_DIR:-/var/cache/understudy/guest}):
#   vmlinuz               the kernel image
#   kernel-release        e.g. 6.1.0-56-cloud-amd64 (written last: its presence means "complete")
#   config                the kernel's build config (to check what is built in)
#   modules/*.ko          uncompressed modules, flat
#   modules/load-order    module names, dependencies first, one per line (insmod in this order)
#   modules/builtin       requested names that are built into this kernel (nothing to load)
#
# Idempotent: once kernel-release exists the script only prints the cache path.
# Set UNDERSTUDY_GUEST_REFRESH=1 to fetch again (e.g. after a kernel security update), or
# UNDERSTUDY_KERNEL_PACKAGE=linux-image-... to pin a versioned image package.
# Prints the cache directory on stdout; everything else goes to stderr.
set -euo pipefail

cache_dir="${UNDERSTUDY_GUEST_DIR:-/var/cache/understudy/guest}"
meta_package="linux-image-cloud-amd64"

# Wanted modules. Names missing from both the module tree and modules.builtin are fatal only
# for the ones the guest cannot work without; the rest moved between module/built-in/absent
# across kernel versions (virtio_pci_legacy_dev is new in 5.x, ext4's helpers are built in
# on the cloud kernel), so their absence is reported, not fatal.
required_modules=(virtio virtio_ring virtio_pci virtio_net virtio_blk)
optional_modules=(virtio_pci_modern_dev virtio_pci_legacy_dev net_failover failover
                  ext4 jbd2 mbcache crc16 crc32c_generic libcrc32c)

log() { printf 'fetch-kernel: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_complete() {
    [[ -s "$cache_dir/kernel-release" && -s "$cache_dir/vmlinuz" && -f "$cache_dir/modules/load-order" ]]
}

# Refuse to write into a git work tree (unless the path is ignored, like .build/): the
# cache holds a 14 MB kernel and build products that must never be committed.
guard_not_in_repo() {
    local probe="$cache_dir"
    while [[ ! -d "$probe" ]]; do probe="$(dirname "$probe")"; done
    if command -v git >/dev/null 2>&1 && git -C "$probe" rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
       ! git -C "$probe" check-ignore -q "$cache_dir"; then
        die "cache directory $cache_dir is inside a git work tree; set UNDERSTUDY_GUEST_DIR elsewhere"
    fi
}

if [[ "${UNDERSTUDY_GUEST_REFRESH:-0}" != 1 ]] && is_complete; then
    printf '%s\n' "$cache_dir"
    exit 0
fi

guard_not_in_repo
mkdir -p "$cache_dir"

# Parallel test runs may all call this on a cold cache; let one do the work.
exec 9>"$cache_dir/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [[ "${UNDERSTUDY_GUEST_REFRESH:-0}" != 1 ]] && is_complete; then
    printf '%s\n' "$cache_dir"
    exit 0
fi

work="$(mktemp -d "$cache_dir/.work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The metapackage only depends on the current versioned image package; that one carries
# the kernel and modules. A fresh machine may have no package lists yet, so update only then.
versioned_package() {
    apt-cache depends "$meta_package" 2>/dev/null |
        awk '$1 ~ /^\|?Depends:$/ && $2 ~ /^linux-image-/ { print $2; exit }'
}

package="${UNDERSTUDY_KERNEL_PACKAGE:-}"
updated=0
if [[ -z "$package" ]]; then
    package="$(versioned_package || true)"
    if [[ -z "$package" ]]; then
        log "$meta_package unknown to apt; running apt-get update"
        apt-get update -qq >&2
        updated=1
        package="$(versioned_package || true)"
    fi
    [[ -n "$package" ]] || die "cannot resolve $meta_package to a versioned linux-image package"
fi
log "kernel package: $package"

# Sandbox user root: apt's _apt user cannot write into a root-owned mktemp directory.
download() { (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$package" >&2); }
if ! download; then
    # Stale lists name a version the mirror has already replaced (security updates).
    [[ $updated == 1 ]] && die "apt-get download $package failed"
    log "download failed; running apt-get update and retrying"
    apt-get update -qq >&2
    download || die "apt-get download $package failed"
fi

deb=("$work"/*.deb)
[[ -f "${deb[0]}" ]] || die "no .deb downloaded"
dpkg -x "${deb[0]}" "$work/root"

vmlinuz=("$work"/root/boot/vmlinuz-*)
[[ -f "${vmlinuz[0]}" ]] || die "no boot/vmlinuz-* in ${deb[0]}"
release="${vmlinuz[0]##*/vmlinuz-}"
moddir="$work/root/lib/modules/$release"
[[ -d "$moddir" ]] || die "no lib/modules/$release in ${deb[0]}"
log "kernel release: $release"

# The .deb ships no modules.dep (depmod runs in postinst) and Debian 12 machines need not
# have kmod, so read each module's own "depends=" from its .modinfo strings instead.
# Module names treat '-' and '_' alike (file crc32c-intel.ko is module crc32c_intel).
declare -A module_path=()
while IFS= read -r -d '' f; do
    base="${f##*/}"; base="${base%%.ko*}"
    module_path["${base//-/_}"]="$f"
done < <(find "$moddir" \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \) -print0)

declare -A builtin=()
if [[ -f "$moddir/modules.builtin" ]]; then
    while IFS= read -r line; do
        base="${line##*/}"; base="${base%%.ko*}"
        builtin["${base//-/_}"]=1
    done < "$moddir/modules.builtin"
fi

mkdir -p "$work/out/modules"

decompress_to() { # src dst
    case "$1" in
        *.ko)     cp "$1" "$2" ;;
        *.ko.xz)  xz -dc "$1" > "$2" ;;
        *.ko.zst) zstd -qdc "$1" > "$2" ;;
        *.ko.gz)  gzip -dc "$1" > "$2" ;;
    esac
}

module_depends() { # uncompressed .ko -> dependency names, one per line
    tr '\0' '\n' < "$1" | sed -n 's/^depends=//p' | head -n1 | tr ',' '\n' | sed '/^$/d; s/-/_/g'
}

declare -A state=()   # "" unseen, 1 visiting, 2 done
order=()
builtin_hits=()

visit() { # name required(0/1)
    local name="$1" req="$2" dep
    case "${state[$name]:-}" in
        2) return 0 ;;
        1) die "module dependency cycle at $name" ;;
    esac
    if [[ -z "${module_path[$name]:-}" ]]; then
        state[$name]=2
        if [[ -n "${builtin[$name]:-}" ]]; then
            builtin_hits+=("$name")
        elif [[ $req == 1 ]]; then
            die "module $name is neither a module nor built into $release"
        else
            log "note: $name is not in $release (neither module nor built-in)"
        fi
        return 0
    fi
    state[$name]=1
    decompress_to "${module_path[$name]}" "$work/out/modules/$name.ko"
    # A module's own dependencies are always required, whatever asked for it.
    while IFS= read -r dep; do visit "$dep" 1; done < <(module_depends "$work/out/modules/$name.ko")
    state[$name]=2
    order+=("$name")
}

for m in "${required_modules[@]}"; do visit "$m" 1; done
for m in "${optional_modules[@]}"; do visit "$m" 0; done

printf '%s\n' "${order[@]}" > "$work/out/modules/load-order"
printf '%s\n' "${builtin_hits[@]+"${builtin_hits[@]}"}" | sed '/^$/d' > "$work/out/modules/builtin"
cp "${vmlinuz[0]}" "$work/out/vmlinuz"
cp "$work/root/boot/config-$release" "$work/out/config" 2>/dev/null || true

# Replace the previous contents piecewise; kernel-release goes last so a crash mid-way
# leaves an incomplete (and therefore retried) cache, never a mixed one.
rm -f "$cache_dir/kernel-release"
rm -rf "$cache_dir/modules"
mv "$work/out/modules" "$cache_dir/modules"
mv "$work/out/vmlinuz" "$cache_dir/vmlinuz"
[[ -f "$work/out/config" ]] && mv "$work/out/config" "$cache_dir/config"
printf '%s\n' "$release" > "$work/out/kernel-release"
mv "$work/out/kernel-release" "$cache_dir/kernel-release"

log "modules (load order): ${order[*]}"
log "built in: ${builtin_hits[*]:-none}"
printf '%s\n' "$cache_dir"
