#!/usr/bin/env bash
# Installs Debian packages with apt-get, as root or through sudo; fails saying what it could
# not install, and why, when neither apt-get nor the rights to run it are there.
#
#   scripts/apt-install.sh PACKAGE...
set -euo pipefail

if ! command -v apt-get >/dev/null; then
    echo "apt-get is needed to install $* (or install them by hand)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "installing $* needs root" >&2; exit 1; }
    sudo=sudo
fi
echo "installing Debian's $*" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
