# Sourced by the scripts that debootstrap a Debian root (guest/build-debian.sh, test-install.sh).
# debian_mirror prints the Debian archive apt already uses (deb822 .sources or one-line .list),
# not the security one, or UNDERSTUDY_DEBIAN_MIRROR when set; fails when there is none.
debian_mirror() {
    if [[ -n "${UNDERSTUDY_DEBIAN_MIRROR:-}" ]]; then printf '%s\n' "$UNDERSTUDY_DEBIAN_MIRROR"; return; fi
    local url
    url="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' |
           grep -E '/debian/?$' | head -n1 || true)"
    [[ -n "$url" ]] || url="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                             awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' |
                             grep -E '/debian/?$' | head -n1 || true)"
    if [[ -z "$url" ]]; then
        printf 'no Debian mirror in /etc/apt/sources.list*; set UNDERSTUDY_DEBIAN_MIRROR\n' >&2
        return 1
    fi
    printf '%s\n' "${url%/}"
}
