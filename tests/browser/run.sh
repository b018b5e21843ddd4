#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# run.sh SERVER_BINARY OUT_DIR - the browser tests (tests/browser/*.test.mjs)
# in Debian's chromium, headless, driven by playwright-core (pinned in
# tools/package.json; the browser comes from Debian, nothing is downloaded).
# Each test file starts its own servers (PORT=0, temporary storage) through
# tests/browser/harness.mjs. Screenshots and logs go to OUT_DIR; with
# CCA_SCREENSHOTS_DIR set they are also copied there (docs/console/).
#
# Exit: 0 pass, 1 a test failed, 77 skip (node, playwright-core or chromium
# missing: scripts/test installs them), 99 harness error.
set -u

root=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd) || exit 99
[ $# -eq 2 ] || { echo "usage: $0 SERVER_BINARY OUT_DIR" >&2; exit 99; }
chromium=${CCA_CHROMIUM:-/usr/bin/chromium}

if ! command -v node >/dev/null 2>&1; then
    echo "SKIP: node not found (scripts/test needs Node.js for the browser tests)" >&2
    exit 77
fi
if [ ! -f "$root/tools/node_modules/playwright-core/package.json" ]; then
    echo "SKIP: playwright-core missing; run: npm ci --prefix tools" >&2
    exit 77
fi
if [ ! -x "$chromium" ]; then
    echo "SKIP: $chromium missing; run: apt-get install chromium" >&2
    exit 77
fi

mkdir -p "$2" || exit 99
export CCA_SERVER=$1 CCA_BROWSER_OUT=$2 CCA_ROOT=$root CCA_CHROMIUM=$chromium
export CCA_DATA_DIR=${CCA_DATA_DIR:-$root/data}
# One file at a time: each drives a browser and servers on a 2-core machine.
exec node --test --test-concurrency=1 --test-reporter=spec "$root"/tests/browser/*.test.mjs
