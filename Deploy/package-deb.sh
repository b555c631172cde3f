#!/usr/bin/env bash
# Builds the Debian package of the Understudy agent, for hosts without a Swift toolchain:
#
#   Deploy/package-deb.sh [OUT_DIR]      (default OUT_DIR: .build/package)
#
# Writes OUT_DIR/understudy_<version>_<arch>.deb and prints its path on stdout (progress goes
# to stderr). The package holds
#   /usr/bin/understudy                             the release build, Swift runtime linked in statically
#   /usr/lib/understudy/libUnderstudyPreload.so     the preload library QEMU loads (found there with no flag)
#   /lib/systemd/system/understudy@.service         the unit, pointing at /usr/bin/understudy
#   /usr/share/doc/understudy/                      README, OPERATIONS, PROTOCOL; examples/: the configurations
#   /etc/understudy, /var/lib/understudy            empty, owner-only
# and depends on the shared libraries the two binaries link (dpkg-shlibdeps: libc6, libssl3,
# liblz4-1, libxxhash0) plus the programs the agent runs: qemu-system-x86, qemu-utils
# (qemu-img, for drills) and iproute2 (ip, for TAPs and namespaces). Nothing from the toolchain:
# the script refuses a binary that still links a library of it.
#
# Idempotent: the build is incremental (Deploy/install.sh runs the same one, so after it only the
# packaging is left) and the package is replaced atomically. Needs the toolchain and dpkg-dev.
# UNDERSTUDY_DEB_MAINTAINER overrides the Maintainer field.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
log() { printf 'package-deb: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -le 1 ]] || { echo "usage: $0 [OUT_DIR]" >&2; exit 2; }
out_dir="${1:-$repo/.build/package}"
maintainer="${UNDERSTUDY_DEB_MAINTAINER:-Understudy maintainers <root@localhost>}"

command -v swift >/dev/null 2>&1 || die "the Swift 6 toolchain is not on PATH (it builds the package; the hosts need none)"
for tool in dpkg-deb dpkg-shlibdeps ldd; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install dpkg-dev)"
done
toolchain="$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")"   # e.g. /opt/swift/usr

# The same flags as Deploy/install.sh, so that one release build serves both.
source "$here/release-build.sh"
log "building understudy and the preload library (swift build $(release_build_flags "$repo" | tr "\n" " "))"
bin="$(release_build "$repo")"
binary="$bin/understudy"
preload="$bin/libUnderstudyPreload.so"

# What the binaries still load at run time: system libraries only. A library from the toolchain
# (the Swift runtime, Foundation, ICU, dispatch) would be missing on a host without it.
for file in "$binary" "$preload"; do
    linked="$(ldd "$file")" || die "ldd $file failed"
    if grep -q "not found" <<<"$linked"; then die "$file links a library that is not found: $(grep "not found" <<<"$linked" | tr -s ' \t\n' ' ')"; fi
    from_toolchain="$(grep -F "$toolchain/" <<<"$linked" || true)"
    from_toolchain+="$(grep -E '(libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime)[^ ]*\.so' <<<"$linked" || true)"
    [[ -z "$from_toolchain" ]] || die "$file still links the Swift toolchain's libraries: $(tr -s ' \t\n' ' ' <<<"$from_toolchain")"
    log "$(basename "$file") links: $(awk '{ print $1 }' <<<"$linked" | grep -v '^linux-vdso' | sort | tr '\n' ' ')"
done

# The version is the code's: understudy --version prints "understudy 0.1.0 (replication protocol v1)".
version="$("$binary" --version | awk 'NR == 1 { print $2 }')"
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "cannot read a Debian version from '$("$binary" --version | head -n1)'"
arch="$(dpkg --print-architecture)"
name="understudy_${version}_${arch}"

mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
stage="$out_dir/$name"
rm -rf "$stage"
install -D -m 0755 "$binary" "$stage/usr/bin/understudy"
install -D -m 0644 "$preload" "$stage/usr/lib/understudy/libUnderstudyPreload.so"
# The unit in the repository names the from-source install under /usr/local; the package installs under /usr.
install -d -m 0755 "$stage/lib/systemd/system"
sed 's#/usr/local/#/usr/#g' "$here/systemd/understudy@.service" > "$stage/lib/systemd/system/understudy@.service"
chmod 0644 "$stage/lib/systemd/system/understudy@.service"
! grep -q /usr/local/ "$stage/lib/systemd/system/understudy@.service" || die "the packaged unit still names /usr/local"
doc="$stage/usr/share/doc/understudy"
install -D -m 0644 -t "$doc" "$repo/README.md" "$repo/docs/OPERATIONS.md" "$repo/docs/PROTOCOL.md"
# The configurations only: setup-one-machine.sh builds the test guest from the repository with gcc.
(cd "$here/examples" && find . -name '*.toml' -print0) | while IFS= read -r -d '' config; do
    install -D -m 0644 "$here/examples/$config" "$doc/examples/${config#./}"
done
install -D -m 0644 "$here/witness/etcd.default" "$doc/examples/witness/etcd.default"
install -d -m 0700 "$stage/etc/understudy" "$stage/var/lib/understudy"

# Shared-library dependencies with the minimum versions the libraries' shlibs files give.
shlibs_dir="$(mktemp -d)"
trap 'rm -rf "$shlibs_dir"' EXIT
mkdir "$shlibs_dir/debian"
printf 'Source: understudy\n\nPackage: understudy\nArchitecture: any\n' > "$shlibs_dir/debian/control"
shlibs="$(cd "$shlibs_dir" && dpkg-shlibdeps -O -e"$stage/usr/bin/understudy" -e"$stage/usr/lib/understudy/libUnderstudyPreload.so" 2>/dev/null)" ||
    die "dpkg-shlibdeps failed: $(cd "$shlibs_dir" && dpkg-shlibdeps -O -e"$stage/usr/bin/understudy" 2>&1 | tail -n 3 | tr '\n' ' ')"
shlibs="${shlibs#shlibs:Depends=}"
[[ -n "$shlibs" ]] || die "dpkg-shlibdeps found no library dependencies"

install -d -m 0755 "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<EOF
Package: understudy
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: $shlibs, qemu-system-x86, qemu-utils, iproute2
Recommends: ovmf
Section: admin
Priority: optional
Description: Remus-style fault-tolerant VM replication
 Understudy keeps a hot standby of a running QEMU virtual machine on a second
 host: the primary agent checkpoints the VM many times per second and streams
 each checkpoint over mutually authenticated TLS to the backup agent, holds the
 VM's network output until the backup acknowledged it, and the backup resumes
 the VM from the last checkpoint when the primary dies.
EOF
# systemd learns about the unit (and forgets it) without a reboot.
for script in postinst postrm; do
    printf '#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n' > "$stage/DEBIAN/$script"
    chmod 0755 "$stage/DEBIAN/$script"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"

deb="$out_dir/$name.deb"
dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb.tmp" >/dev/null
mv "$deb.tmp" "$deb"
rm -rf "$stage"
log "wrote $deb ($(du -h "$deb" | cut -f1)); Depends: $shlibs, qemu-system-x86, qemu-utils, iproute2"
printf '%s\n' "$deb"
