#!/bin/sh
# SPDX-License-Identifier: MIT
# The integration and reliability suites against PostgreSQL (STORE=postgres;
# docs/internals/store_pg.md, "Tests"):
#
#   tests/pg/suite.sh BUILD_DIR [meson test args...]
#
# Starts one throwaway PostgreSQL server (tests/pg/pg.sh) in a temporary
# directory under /tmp (its parents must be searchable by the `postgres` user
# when run as root), exports CCA_TEST_STORE=postgres and CCA_TEST_DATABASE_URL
# (the harness gives every server it starts a database of its own on it), runs
# the two suites of BUILD_DIR without rebuilding (log: BUILD_DIR/meson-logs/
# testlog-postgres.*, the file store's testlog.* is kept) and always stops the
# server. Exit 77 when the PostgreSQL server binaries are missing; otherwise
# meson test's exit code. Extra arguments go to meson test (e.g. a test name).
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: $0 BUILD_DIR [meson test args...]" >&2
    exit 2
fi
build="$(cd "$1" && pwd)"
shift
here="$(cd "$(dirname "$0")" && pwd)"

tmp="$(mktemp -d /tmp/cca-pgsuite-XXXXXX)"
chmod 0755 "$tmp"
pgdir="$tmp/pg"
cleanup() {
    "$here/pg.sh" stop "$pgdir" || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rc=0
url="$("$here/pg.sh" start "$pgdir")" || rc=$?
if [ "$rc" -eq 77 ]; then
    echo "suite.sh: no PostgreSQL server binaries: the postgres mode of the suites is skipped" >&2
    exit 77
elif [ "$rc" -ne 0 ]; then
    echo "suite.sh: could not start a PostgreSQL server (pg.sh exit $rc)" >&2
    exit 1
fi

CCA_TEST_STORE=postgres
CCA_TEST_DATABASE_URL="$url"
export CCA_TEST_STORE CCA_TEST_DATABASE_URL
echo "suite.sh: STORE=postgres, server $url" >&2
rc=0
meson test -C "$build" --no-rebuild --suite integration --suite reliability \
    --print-errorlogs --num-processes 2 --logbase testlog-postgres "$@" || rc=$?
exit "$rc"
