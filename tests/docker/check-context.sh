#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Docker build context (what `COPY . /src` can see) holds only what the
# image build needs: never .env, storage/, build*/ directories or
# tools/node_modules. Computed from .dockerignore by tests/docker/dockerignore.py,
# a port of docker's own matcher (moby/patternmatcher, BuildKit's walk), so no
# docker daemon is needed.
#
#   tests/docker/check-context.sh [REPO_ROOT]
#
# Exit 0 pass, 1 fail, 77 skip (python3 missing). CCA_DOCKER_CONTEXT_CONFIGURE=0
# leaves out the `meson setup` of the context.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${1:-$here/../..}"
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 not found"
    exit 77
fi
exec python3 -B "$here/check_context.py" "$root"
