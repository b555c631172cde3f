# Sourced by install.sh, package-deb.sh and test-install.sh: one release build of the agent serves
# the from-source install and the Debian package alike. The Swift runtime is linked in statically
# so that the binary runs where no toolchain is. --static-swift-stdlib changes every compile
# command, so this build has its own scratch directory: sharing .build with `swift build -c
# release` (the benchmarks) would rebuild everything each time the other one ran.

# release_build_flags REPO: the flags of that build, one per line.
release_build_flags() {
    printf '%s\n' --package-path "$1" -c release --static-swift-stdlib --scratch-path "$1/.build-static"
}

# release_build REPO: builds `understudy` and the preload library; prints the directory holding them.
# The preload library is compiled here as the plain C library it is: SwiftPM links every library
# product with swiftc, whose start-up object makes it need libswiftCore.so from the toolchain
# (and would load the Swift runtime into QEMU). Fails when a step fails, also in a command
# substitution (where bash drops `set -e`).
release_build() {
    local flags bin
    mapfile -t flags < <(release_build_flags "$1")
    swift build "${flags[@]}" --product understudy >&2 &&
        bin="$(swift build "${flags[@]}" --show-bin-path)" &&
        "${CC:-cc}" -O2 -fPIC -shared -pthread -I "$1/Sources/CUnderstudyPreload/include" \
            -o "$bin/libUnderstudyPreload.so" "$1/Sources/CUnderstudyPreload/preload.c" &&
        printf '%s\n' "$bin"
}
