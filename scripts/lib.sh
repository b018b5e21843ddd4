#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Shared by scripts/run, scripts/test and scripts/bench: install what is
# missing (Debian 12 packages) and build with meson.
set -euo pipefail

CCA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Build and runtime dependencies (house style 8.9: system packages only).
# libcmocka-dev is here, not in the test list: tests/meson.build needs it to
# configure at all, so scripts/run, scripts/bench and scripts/fuzz need it too.
CCA_BUILD_PKGS=(gcc pkg-config meson ninja-build libmicrohttpd-dev libjansson-dev uuid-dev
                libcurl4-openssl-dev libutf8proc-dev libstemmer-dev libcmocka-dev libssl-dev
                libcsv-dev zlib1g-dev libpq-dev)
# For the test suite: curl and python3 (tests/contract/prism.sh,
# tests/docker/check-context.sh), clang-format (the style test), chromium and
# fonts with Latin and Cyrillic glyphs (tests/browser: the console and /docs;
# screenshots), Node.js and npm where the machine has none (the pinned npm
# tools of tools/package.json), PostgreSQL's server binaries (tests/pg/pg.sh
# starts a throwaway server for the postgres store's tests; no service runs) and
# nginx (tests/integration/test_nginx_pair.py runs deploy/nginx/cca.conf in
# front of two instances, on loopback).
CCA_TEST_PKGS=(curl clang-format python3 chromium fonts-dejavu-core fonts-liberation
               postgresql nginx)

cca_missing_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

# cca_install PKG... : apt-get install what is missing (as root), else say how.
cca_install() {
    local missing
    mapfile -t missing < <(cca_missing_pkgs "$@")
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "Missing packages. Run as root:" >&2
        echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "Installing: ${missing[*]}" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2
}

# cca_build DIR [meson options...] : configure once, then build.
cca_build() {
    local dir="$1"
    shift
    if [ ! -f "$CCA_ROOT/$dir/build.ninja" ]; then
        meson setup "$CCA_ROOT/$dir" "$CCA_ROOT" "$@" >&2
    fi
    ninja -C "$CCA_ROOT/$dir" >&2
}
