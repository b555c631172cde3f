#!/usr/bin/env bash
# Installs the Understudy agent on a node from the repository: what Deploy/install.sh installs (the
# Debian packages, the release build of `understudy` in /usr/local/bin, the preload library QEMU
# loads for dirty tracking), plus the systemd unit, the docs and /etc/understudy. Idempotent.
# A host without the Swift toolchain installs the Debian package instead (Deploy/package-deb.sh).
#   ./Deploy/install-agent.sh            then: write /etc/understudy/VM.toml (see Deploy/examples/)
#                                        and:  systemctl enable --now understudy@VM
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/install.sh"
install -D -m 0644 "$here/systemd/understudy@.service" /etc/systemd/system/understudy@.service
install -D -m 0644 "$here/../docs/OPERATIONS.md" /usr/local/share/doc/understudy/OPERATIONS.md
install -d -m 0700 /etc/understudy /var/lib/understudy
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "install-agent.sh: installed $(/usr/local/bin/understudy --version) and understudy@.service"
