#!/usr/bin/env bash
# Installs the Understudy agent on a node: the release build of `understudy`, the preload library
# QEMU loads for dirty tracking, the systemd unit, the docs, and /etc/understudy.
# Run from the repository after ./Deploy/install.sh. Idempotent.
#   ./Deploy/install-agent.sh            then: write /etc/understudy/VM.toml (see Deploy/examples/)
#                                        and:  systemctl enable --now understudy@VM
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
swift build -c release --product understudy
swift build -c release --product UnderstudyPreload
bin="$(swift build -c release --show-bin-path)"
install -D -m 0755 "$bin/understudy" /usr/local/bin/understudy
install -D -m 0755 "$bin/libUnderstudyPreload.so" /usr/local/lib/understudy/libUnderstudyPreload.so
install -D -m 0644 "$here/systemd/understudy@.service" /etc/systemd/system/understudy@.service
install -D -m 0644 docs/OPERATIONS.md /usr/local/share/doc/understudy/OPERATIONS.md
install -d -m 0700 /etc/understudy /var/lib/understudy
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "install-agent.sh: installed $(/usr/local/bin/understudy version | head -1)"
