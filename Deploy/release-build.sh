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
# Fails when a build fails, also in a command substitution (where bash drops `set -e`).
release_build() {
    local flags
    mapfile -t flags < <(release_build_flags "$1")
    swift build "${flags[@]}" --product understudy >&2 &&
        swift build "${flags[@]}" --product UnderstudyPreload >&2 &&
        swift build "${flags[@]}" --show-bin-path
}
