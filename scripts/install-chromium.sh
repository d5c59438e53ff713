#!/usr/bin/env bash
# Makes sure Debian's chromium is installed: tests/report.rs renders `pgcairn report`'s page in
# headless Chromium to check that its charts are laid out and drawn. Idempotent; apt-get runs as
# root, or through sudo (scripts/apt-install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v chromium >/dev/null; then
    exit 0
fi
exec scripts/apt-install.sh chromium
