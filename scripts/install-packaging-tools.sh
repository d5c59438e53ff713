#!/usr/bin/env bash
# Makes sure the tools tests/packaging.rs checks the completions, man pages and systemd units
# with are installed: zsh and fish (each parses its completion script; fish also completes
# with it), groff and man (render every man page), systemd-analyze (verifies the units).
# Idempotent: what is already there is not installed again. apt-get runs as root, or through
# sudo (scripts/apt-install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v zsh >/dev/null || missing+=(zsh)
command -v fish >/dev/null || missing+=(fish)
command -v groff >/dev/null || missing+=(groff-base)
command -v man >/dev/null || missing+=(man-db)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
exec scripts/apt-install.sh "${missing[@]}"
