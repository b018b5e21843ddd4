#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The compose profile "postgres" (docker-compose.yaml): PostgreSQL, two instances
# and nginx (deploy/nginx/cca.conf). Brings it up under a throwaway project name
# on non-default ports, then: ready through the proxy, a create through it, the
# active instance killed (SIGKILL), ready and the dialog served again through
# the proxy by the other one. Everything is removed at the end (down -v).
# The same setup without Docker, on loopback, is tests/integration/test_nginx_pair.py.
#
#   tests/docker/compose.sh [REPO_ROOT]
#
# Exit 0 pass, 1 fail, 77 skip (no docker client, no daemon, or no compose plugin).
set -euo pipefail
root="$(cd "${1:-$(dirname "$0")/../..}" && pwd)"
status=0

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "skipped: no docker client or no reachable daemon"
    exit 77
fi
if ! docker compose version >/dev/null 2>&1; then
    echo "skipped: no docker compose plugin"
    exit 77
fi

project="cca-compose-test-$$"
export PROXY_PORT=18090 PORT=18091 API_KEYS=compose-test-key POSTGRES_PASSWORD="pw-$RANDOM$RANDOM"
dc() { docker compose -p "$project" -f "$root/docker-compose.yaml" --profile postgres "$@"; }
# shellcheck disable=SC2317  # called through the trap
cleanup() { dc down -v --rmi local --remove-orphans >/dev/null 2>&1 || true; }
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
proxy_code() { # proxy_code PATH [CURL-ARGS...]: the status code through nginx
    local path="$1"
    shift
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $API_KEYS" "$@" \
        "http://127.0.0.1:$PROXY_PORT$path" || true
}
# shellcheck disable=SC2317  # called through check
wait_ready() { # wait_ready SECONDS: readiness through the proxy answers 200
    for _ in $(seq 1 "$(($1 * 5))"); do
        [ "$(proxy_code /api/v1/health/ready)" = 200 ] && return 0
        sleep 0.2
    done
    return 1
}

check "docker compose config is valid" dc config -q
if ! dc up -d --build nginx >/tmp/"$project".log 2>&1; then
    tail -n 60 /tmp/"$project".log
    rm -f /tmp/"$project".log
    echo "not ok - docker compose --profile postgres up -d --build nginx"
    exit 1
fi
rm -f /tmp/"$project".log
check "ready through nginx" wait_ready 180
body="$(curl -s -H "Authorization: Bearer $API_KEYS" -H 'Content-Type: application/json' \
    -d '{"customer_id":"compose-test"}' "http://127.0.0.1:$PROXY_PORT/api/v1/dialogue/create")"
id="$(printf '%s' "$body" | sed -n 's/.*"dialog_id":"\([0-9a-f-]*\)".*/\1/p')"
check "create through nginx" test -n "$id"

active=""
actives=0
for s in cca-a cca-b; do
    if dc exec -T "$s" curl -fsS -o /dev/null http://127.0.0.1:8000/api/v1/health/ready; then
        active="$s"
        actives=$((actives + 1))
    fi
done
check "exactly one instance is active (ready), the other a standby" test "$actives" = 1
if [ -n "$active" ]; then
    dc kill -s SIGKILL "$active" >/dev/null
    check "ready through nginx again after SIGKILL of $active" wait_ready 60
    check "the dialog is served after the takeover" \
        test "$(proxy_code "/api/v1/dialogue/$id")" = 200
fi
if [ "$status" != 0 ]; then
    dc ps
    dc logs --tail 40
fi
echo "docker compose profile postgres: $([ "$status" = 0 ] && echo "all checks passed" || echo "checks failed")"
exit "$status"
