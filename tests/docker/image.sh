#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build the Docker image and run it the way docker-compose.yaml does
# (ENVIRONMENT=production, an API key, a fresh named volume on /app/storage),
# but on a non-default PORT: the container must turn healthy through its own
# HEALTHCHECK, which therefore follows PORT. Then: it runs as uid 10001, can
# write its volume (a create answers 201), refuses a request without the key,
# and exits 0 on docker stop. Everything it created is removed at the end.
# The Dockerfile is linted with hadolint first when hadolint is installed.
#
#   tests/docker/image.sh [REPO_ROOT]
#
# Exit 0 pass, 1 fail, 77 skip (no docker client or no reachable daemon).
set -euo pipefail
root="$(cd "${1:-$(dirname "$0")/../..}" && pwd)"
port=18080
key=image-test-key
status=0

if command -v hadolint >/dev/null 2>&1; then
    if hadolint "$root/Dockerfile"; then
        echo "ok - hadolint Dockerfile"
    else
        echo "not ok - hadolint Dockerfile"
        status=1
    fi
else
    echo "# hadolint not installed: Dockerfile lint skipped"
fi

if ! command -v docker >/dev/null 2>&1; then
    echo "skipped: no docker client"
    [ "$status" = 0 ] && exit 77 || exit "$status"
fi
if ! docker info >/dev/null 2>&1; then
    echo "skipped: no docker daemon (docker info failed)"
    [ "$status" = 0 ] && exit 77 || exit "$status"
fi

id="cca-image-test-$$-$RANDOM"
tag="call-center-agents-test:$id"
volume="$id-storage"
log="$(mktemp)"
# shellcheck disable=SC2317  # called through the trap
cleanup() {
    docker rm -f "$id" >/dev/null 2>&1 || true
    docker volume rm "$volume" >/dev/null 2>&1 || true
    docker rmi "$tag" >/dev/null 2>&1 || true
    rm -f "$log"
}
trap cleanup EXIT

check() { # check DESCRIPTION COMMAND...: one ok/not ok line
    local what="$1"
    shift
    if "$@"; then
        echo "ok - $what"
    else
        echo "not ok - $what"
        status=1
    fi
}
fail_logs() {
    echo "--- container logs:"
    docker logs "$id" 2>&1 | tail -n 40
    docker inspect -f '{{json .State.Health}}' "$id" 2>/dev/null || true
}

if ! docker build -t "$tag" "$root" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "not ok - docker build"
    exit 1
fi
echo "ok - docker build"

# The image's HEALTHCHECK command, only probed every second instead of 30 s.
docker run -d --name "$id" -e PORT="$port" -e ENVIRONMENT=production -e API_KEYS="$key" \
    -v "$volume:/app/storage" --health-interval=1s --health-start-period=2s \
    "$tag" >/dev/null

health=""
for _ in $(seq 1 120); do
    health="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")"
    running="$(docker inspect -f '{{.State.Running}}' "$id")"
    if [ "$health" = healthy ] || [ "$health" = unhealthy ] || [ "$running" != true ]; then
        break
    fi
    sleep 1
done
if [ "$health" != healthy ]; then
    echo "not ok - HEALTHCHECK reports healthy with PORT=$port (got '$health')"
    fail_logs
    exit 1
fi
echo "ok - HEALTHCHECK reports healthy with PORT=$port"

in_container() { docker exec "$id" "$@"; }
http_code() { # http_code CURL-ARGS...: the status code of a request inside the container
    in_container curl -s -o /dev/null -w '%{http_code}' "$@"
}
check "runs as uid 10001" test "$(in_container id -u)" = 10001
check "POST /dialogue/create with the key answers 201 (volume writable)" \
    test "$(http_code -X POST -H "Authorization: Bearer $key" \
        -H 'Content-Type: application/json' -d '{"customer_id": "image-test"}' \
        "http://127.0.0.1:$port/api/v1/dialogue/create")" = 201
check "the dialog file is in the volume" \
    in_container sh -c 'ls /app/storage/dialogs/*.json >/dev/null'
check "a request without a key answers 401" \
    test "$(http_code "http://127.0.0.1:$port/api/v1/dialogues")" = 401
check "docker stop: exit code 0 (SIGTERM handled)" sh -c \
    "docker stop -t 40 '$id' >/dev/null && test \"\$(docker inspect -f '{{.State.ExitCode}}' '$id')\" = 0"

[ "$status" = 0 ] || fail_logs
echo "docker image: $([ "$status" = 0 ] && echo "all checks passed" || echo "checks failed")"
exit "$status"
