#!/usr/bin/env bash
# Installs what `dialtone serve` needs at run time beyond its own binary: espeak-ng for <Say>.
set -euo pipefail
command -v espeak-ng >/dev/null && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "espeak-ng is missing; install it as root (apt-get install espeak-ng)" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends espeak-ng
