#!/usr/bin/env bash
# Installs the Debian packages goat needs beside its venv, when they are missing:
#   bubblewrap  the local sandbox (task code never runs unisolated on the host)
#   chromium    the UI tests drive the Dagster webserver in headless Chromium
# Usage: scripts/debian-packages.sh PACKAGE...   (called by `make install` / `make test`)
# As root it runs apt-get; otherwise `sudo -n apt-get` when sudo needs no password; otherwise it
# says what to install and fails. GOAT_SANDBOX_BWRAP=0 (run without isolation on purpose) skips
# bubblewrap.
set -euo pipefail

need=()
for pkg in "$@"; do
  case "$pkg" in
    bubblewrap)
      off="${GOAT_SANDBOX_BWRAP:-}"
      case "${off,,}" in 0|false|no|off) continue ;; esac
      cmd=bwrap ;;
    *) cmd="$pkg" ;;
  esac
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "goat needs ${need[*]} (not found on PATH) and this is not a Debian/Ubuntu system:" \
       "install ${need[*]} with your package manager, then run make again." >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "goat needs the Debian packages ${need[*]}: run  sudo apt-get install ${need[*]}  then make again." >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}" >&2
"${SUDO[@]}" apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need[@]}" >&2
