#!/bin/sh
# SPDX-License-Identifier: MIT
#
# lint.sh - lint openapi.yaml with the pinned Redocly CLI (rules: redocly.yaml).
# Exit 0 when clean, 1 on lint errors, 77 (skip) when the dev tools are not
# installed (run `npm ci --prefix tools`), 99 on a harness error.
set -u

root=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd) || exit 99
redocly="$root/tools/node_modules/.bin/redocly"

if [ ! -x "$redocly" ]; then
    echo "SKIP: $redocly not found; run: npm ci --prefix tools" >&2
    exit 77
fi

cd "$root" || exit 99
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
    "$redocly" lint --config redocly.yaml openapi.yaml
rc=$?
case $rc in
0) exit 0 ;;
1) exit 1 ;;
*) echo "lint.sh: redocly exited with $rc" >&2; exit 99 ;;
esac
