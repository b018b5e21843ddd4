#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# prism.sh SERVER_BINARY - live contract test of the server against openapi.yaml.
#
# Starts SERVER_BINARY offline (no OPENAI_API_KEY) on a free port with a
# temporary dialog store, puts `prism proxy --errors` in front of it and sends
# a scenario that calls every documented operation plus the main error
# statuses, Idempotency-Key replays, GET /metrics and the support records
# (customer profiles, histories, streamed exports, statistics). A request
# FAILS when its status differs from the expected one or when Prism adds an
# `sl-violations` header (the response, its headers or its status code do not
# match openapi.yaml). Then both are restarted with API keys, admin keys, a
# tiny rate limit and CORS_ORIGINS for the 401, 403, 429 and CORS cases.
#
# Streamed downloads (histories, exports: chunked) go through Prism too: it
# reads the whole body, then validates the status, the headers and the body
# (JSON against its schema; CSV, NDJSON and text against the patterns of
# their string schemas: the header row, one object per line, the title line).
#
# Prism answers some requests itself and never forwards them: a malformed JSON
# body (Prism parses JSON bodies first) and a method the path does not
# document (405 NO_METHOD_MATCHED_ERROR). Those cases are sent straight to the
# server ("direct" lines) and their error body ({"detail","code"}, Content-Type,
# Allow header) is checked by this script instead.
#
# Exit: 0 pass, 1 contract failures (or the server did not come up),
# 77 skip (tools/node_modules missing: run `npm ci --prefix tools`), 99 harness
# error. Set PRISM_SH_KEEP=1 to keep the temporary directory with the logs.
set -u

root=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd) || exit 99
prism="$root/tools/node_modules/.bin/prism"
spec="$root/openapi.yaml"

if [ ! -x "$prism" ]; then
    echo "SKIP: $prism not found; run: npm ci --prefix tools" >&2
    exit 77
fi
if [ $# -ne 1 ]; then
    echo "usage: $0 SERVER_BINARY" >&2
    exit 99
fi
for tool in curl python3 setsid; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool is not installed" >&2
        exit 77
    fi
done
case $1 in
/*) server=$1 ;;
*) server="$PWD/$1" ;;
esac
if [ ! -x "$server" ]; then
    echo "prism.sh: $server is not an executable" >&2
    exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cca-prism.XXXXXX") || exit 99
server_pid=
prism_pid=
failures=0
total=0

# shellcheck disable=SC2317 # called from the EXIT trap
stop() {
    # Our own children only, by pid. Prism runs in its own session (setsid),
    # so its process group id is its pid and the group holds nothing else.
    if [ -n "$prism_pid" ]; then
        kill -TERM -- "-$prism_pid" 2>/dev/null || kill -TERM "$prism_pid" 2>/dev/null
        wait "$prism_pid" 2>/dev/null
        prism_pid=
    fi
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
        server_pid=
    fi
}

# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
    stop
    if [ "${PRISM_SH_KEEP:-0}" = 1 ]; then
        echo "logs kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 99' INT TERM HUP

show_logs() {
    echo "---- server log (last 40 lines) ----" >&2
    tail -n 40 "$tmp/server.log" >&2 2>/dev/null
    if [ -f "$tmp/prism.log" ]; then
        echo "---- prism log (last 40 lines) ----" >&2
        tail -n 40 "$tmp/prism.log" >&2
    fi
}

# ---------------------------------------------------------------------------
# 1. Start the server (offline, port 0, temporary storage). The working
#    directory is $tmp so that no ./.env of the caller (which may hold an
#    OPENAI_API_KEY) is read; the server serves ./openapi.yaml, so link it.
#    start_server [VAR=VALUE...] - extra settings for this instance; sets
#    server_pid, server_port and direct, or exits 1.
mkdir -p "$tmp/dialogs" || exit 99
ln -s "$spec" "$tmp/openapi.yaml" || exit 99
start_server() {
    (
        cd "$tmp" || exit 99
        exec env -u OPENAI_API_KEY -u API_KEYS -u API_KEYS_FILE -u ADMIN_API_KEYS \
            -u RATE_LIMIT_RPS -u RATE_LIMIT_BURST -u DIALOG_RATE_LIMIT_PER_MIN \
            -u CORS_ORIGINS -u IDEMPOTENCY_TTL_S \
            PORT=0 HOST=127.0.0.1 \
            DIALOGS_STORAGE_PATH="$tmp/dialogs" \
            DATA_DIR="$root/data" \
            MAX_BODY_BYTES=65536 \
            "$@" \
            "$server"
    ) >"$tmp/server.log" 2>&1 &
    server_pid=$!

    server_port=
    for _ in $(seq 100); do
        server_port=$(grep -m1 'event=listening' "$tmp/server.log" 2>/dev/null |
            grep -o '\bport=[0-9]\+' | head -n1 | cut -d= -f2)
        [ -n "$server_port" ] && break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            wait "$server_pid"
            echo "FAIL: the server exited with status $? before listening" >&2
            server_pid=
            show_logs
            exit 1
        fi
        sleep 0.1
    done
    if [ -z "$server_port" ]; then
        echo "FAIL: no 'event=listening ... port=N' line in the server log after 10 s" >&2
        show_logs
        exit 1
    fi
    direct="http://127.0.0.1:$server_port"

    # 3. Wait for liveness (public: needs no API key).
    local live='' code=''
    for _ in $(seq 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$direct/api/v1/health/live")
        if [ "$code" = 200 ]; then
            live=1
            break
        fi
        sleep 0.1
    done
    if [ -z "$live" ]; then
        echo "FAIL: GET /api/v1/health/live did not answer 200 within 10 s (last: $code)" >&2
        show_logs
        exit 1
    fi
    echo "server: pid $server_pid on $direct"
}

# 4. Start Prism in validation-proxy mode on a free port, in front of $direct.
start_prism() {
    (
        cd "$root" || exit 99
        exec setsid "$prism" proxy -h 127.0.0.1 -p 0 --multiprocess=false \
            "$spec" "$direct" --errors --validate-request=false
    ) >"$tmp/prism.log" 2>&1 &
    prism_pid=$!

    prism_port=
    for _ in $(seq 600); do
        prism_port=$(grep -m1 'Prism is listening' "$tmp/prism.log" 2>/dev/null |
            sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\).*/\1/p')
        [ -n "$prism_port" ] && break
        if ! kill -0 "$prism_pid" 2>/dev/null; then
            echo "ERROR: prism exited before listening" >&2
            prism_pid=
            show_logs
            exit 99
        fi
        sleep 0.1
    done
    if [ -z "$prism_port" ]; then
        echo "ERROR: prism did not log 'Prism is listening' within 60 s" >&2
        show_logs
        exit 99
    fi
    proxy="http://127.0.0.1:$prism_port"
    echo "prism:  pid $prism_pid on $proxy"
    echo
}

start_server OPERATOR_SECRET=prism-operator-secret
start_prism

# ---------------------------------------------------------------------------
# Helpers.
#
# Request bodies are sent as compact JSON without escapes: Prism re-serializes
# a JSON body with JSON.stringify but forwards the client's Content-Length, so
# the two byte strings must be identical.

body="$tmp/body"
headers="$tmp/headers"

# json_get FILE EXPR - print EXPR evaluated on the JSON in FILE as `d`
# (e.g. "d['dialog_id']"); empty output when that fails.
json_get() {
    python3 - "$1" "$2" <<'EOF' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
v = eval(sys.argv[2], {"d": d})
print("" if v is None else v)
EOF
}

# header_value NAME - value of response header NAME (last response), or empty.
header_value() {
    tr -d '\r' <"$headers" | awk -v n="$1" '
        { split($0, a, ":"); if (tolower(a[1]) == tolower(n)) { sub(/^[^:]*:[ \t]*/, ""); v = $0 } }
        END { print v }'
}

report() { # report OK|FAIL STATUS METHOD PATH LABEL [DETAIL...]
    local verdict=$1 status=$2 method=$3 path=$4 label=$5
    shift 5
    total=$((total + 1))
    if [ "$verdict" = OK ]; then
        printf 'ok    %s %-6s %s  (%s)\n' "$status" "$method" "$path" "$label"
    else
        failures=$((failures + 1))
        printf 'FAIL  %s %-6s %s  (%s)\n' "$status" "$method" "$path" "$label"
        local line
        for line in "$@"; do
            printf '        %s\n' "$line"
        done
        printf '        body: %s\n' "$(head -c 600 "$body" 2>/dev/null | tr '\n' ' ')"
    fi
}

# p EXPECTED METHOD PATH LABEL [CURL_ARGS...] - one request through Prism.
p() {
    local expected=$1 method=$2 path=$3 label=$4
    shift 4
    local status
    : >"$body"
    : >"$headers"
    status=$(curl -sS --max-time 60 -o "$body" -D "$headers" -w '%{http_code}' \
        -X "$method" "$@" "$proxy$path" 2>"$tmp/curl.err") || status=000
    local problems=()
    [ "$status" = "$expected" ] || problems+=("expected status $expected, got $status $(cat "$tmp/curl.err")")
    local violations
    violations=$(header_value sl-violations)
    [ -z "$violations" ] || problems+=("sl-violations: $violations")
    if [ ${#problems[@]} -eq 0 ]; then
        report OK "$status" "$method" "$path" "$label"
    else
        report FAIL "$status" "$method" "$path" "$label" "${problems[@]}"
    fi
}

# d EXPECTED ERROR_CODE METHOD PATH LABEL [CURL_ARGS...] - one request straight
# to the server (for what Prism would answer itself); checks the status, the
# JSON error body {"detail": string, "code": ERROR_CODE} and its Content-Type.
# With ALLOW="GET DELETE" set, also checks a 405's Allow header: it must list
# those methods and not METHOD.
d() {
    local expected=$1 errcode=$2 method=$3 path=$4 label=$5
    shift 5
    local status
    : >"$body"
    : >"$headers"
    status=$(curl -sS --max-time 60 -o "$body" -D "$headers" -w '%{http_code}' \
        -X "$method" "$@" "$direct$path" 2>"$tmp/curl.err") || status=000
    local problems=()
    [ "$status" = "$expected" ] || problems+=("expected status $expected, got $status $(cat "$tmp/curl.err")")
    local ctype
    ctype=$(header_value content-type)
    case $ctype in
    application/json | application/json\;*) ;;
    *) problems+=("Content-Type is '$ctype', expected application/json") ;;
    esac
    local shape
    shape=$(python3 - "$body" "$errcode" <<'EOF' 2>&1
import json, sys
try:
    b = json.load(open(sys.argv[1], encoding="utf-8"))
except Exception as e:
    sys.exit("body is not JSON: %s" % e)
if not isinstance(b, dict) or set(b) != {"detail", "code"}:
    sys.exit("body must be exactly {detail, code}, got keys %s" % (sorted(b) if isinstance(b, dict) else type(b).__name__))
if not isinstance(b["detail"], str) or not b["detail"]:
    sys.exit("detail must be a non-empty string")
if b["code"] != sys.argv[2]:
    sys.exit("code is %r, expected %r" % (b["code"], sys.argv[2]))
EOF
    ) || problems+=("$shape")
    if [ -n "${ALLOW:-}" ]; then
        local allow m
        allow=$(header_value allow)
        if [ -z "$allow" ]; then
            problems+=("no Allow header")
        elif ! printf '%s' "$allow" | grep -Eq '^[A-Z]+(, ?[A-Z]+)*$'; then
            problems+=("Allow header '$allow' is not a comma-separated method list")
        else
            for m in $ALLOW; do
                printf '%s' "$allow" | tr -s ', ' '\n' | grep -qx "$m" ||
                    problems+=("Allow '$allow' lacks $m")
            done
            ! printf '%s' "$allow" | tr -s ', ' '\n' | grep -qx "$method" ||
                problems+=("Allow '$allow' lists the refused method $method")
        fi
    fi
    if [ ${#problems[@]} -eq 0 ]; then
        report OK "$status" "$method" "$path" "direct: $label"
    else
        report FAIL "$status" "$method" "$path" "direct: $label" "${problems[@]}"
    fi
}

# check LABEL DETAIL COMMAND... - a check that is not a status (a header, a
# field, two responses compared): passes when COMMAND succeeds.
check() {
    local label=$1 detail=$2
    shift 2
    total=$((total + 1))
    if "$@"; then
        printf 'ok    ---            %s\n' "$label"
    else
        failures=$((failures + 1))
        printf 'FAIL  ---            %s\n        %s\n' "$label" "$detail"
        printf '        body: %s\n' "$(head -c 600 "$body" 2>/dev/null | tr '\n' ' ')"
    fi
}

# check_code CODE - the last response's error code is CODE (two codes may
# share a status, e.g. 422 validation_error and idempotency_key_reused).
check_code() {
    local got
    got=$(json_get "$body" "d['code']")
    check "error code $1" "code is '$got', expected '$1'" test "$got" = "$1"
}

# not COMMAND... - succeeds when COMMAND fails.
# shellcheck disable=SC2317 # called through check
not() { ! "$@"; }

# matches STRING REGEX - STRING matches the extended regular expression REGEX.
# shellcheck disable=SC2317 # called through check
matches() { printf '%s' "$1" | grep -Eq "$2"; }

# check_header NAME REGEX - the last response has header NAME matching REGEX.
check_header() {
    local got
    got=$(header_value "$1")
    check "header $1: $2" "header $1 is '$got'" matches "$got" "$2"
}

# check_download NAME FORMAT CONTENT_TYPE_REGEX - the last response is the file
# "NAME-YYYYMMDD.FORMAT" of that media type, not to be cached.
check_download() {
    check_header content-disposition "^attachment; filename=\"$1-[0-9]{8}\\.$2\"\$"
    check_header cache-control '^no-store$'
    check_header content-type "$3"
}

# py_check LABEL PYTHON - a check of the last body: PYTHON runs with `raw`
# (the bytes), `text` (decoded UTF-8) and `args` (the extra arguments) and
# passes unless it raises or exits non-zero.
py_check() {
    local label=$1 code=$2 out rc
    shift 2
    out=$(python3 - "$body" "$code" "$@" 2>&1 <<'PYEOF'
import csv, io, json, sys
raw = open(sys.argv[1], "rb").read()
text = raw.decode("utf-8")
args = sys.argv[3:]
exec(sys.argv[2])
PYEOF
    )
    rc=$?
    check "$label" "${out##*$'\n'}" test "$rc" = 0
}

J=(-H 'Content-Type: application/json' --data-binary)
unknown=00000000-0000-4000-8000-000000000000

# ---------------------------------------------------------------------------
# 5. The scenario.

echo "== service and health"
p 200 GET / "service info"
p 200 GET /openapi.yaml "this document"
if ! cmp -s "$body" "$spec"; then
    total=$((total + 1))
    failures=$((failures + 1))
    echo "FAIL  GET /openapi.yaml did not return the bytes of $spec"
fi
echo "== static files: the console and the API docs"
p 200 GET /console "console page"
p 200 GET /console/console.js "console script"
p 200 GET /console/favicon.svg "console icon"
p 200 GET /docs "API docs page"
docs_etag=$(header_value etag)
p 304 GET /docs "If-None-Match: the same page" -H "If-None-Match: $docs_etag"
p 200 GET /docs/swagger-ui.css "Swagger UI style sheet"
p 404 GET /console/no-such-file.js "no such file"
p 200 HEAD /console "the page's headers, no body" --head
p 200 HEAD /docs/swagger-ui.css "a file's headers, no body" --head
p 200 GET /api/v1/health "health"
p 200 GET /api/v1/health/detailed "detailed health"
p 200 GET /api/v1/health/ready "readiness"
p 200 GET /api/v1/health/live "liveness"

echo "== create"
p 201 POST /api/v1/dialogue/create "full shape, initial message" "${J[@]}" \
    '{"customer_info":{"name":"Иван Петров","phone":"+7 900 123-45-67","email":"ivan@example.com","customer_id":"customer_123"},"initial_message":"Не работает приложение, не могу войти в аккаунт","source":"web","priority":"high"}'
id_a=$(json_get "$body" "d['dialog_id']")
p 201 POST /api/v1/dialogue/create "README shape" "${J[@]}" \
    '{"customer_id":"customer_456","initial_message":"Сколько стоит тариф Профи?"}'
id_b=$(json_get "$body" "d['dialog_id']")
p 201 POST /api/v1/dialogue/create "full shape, no message, charset, unknown field" \
    -H 'Content-Type: application/json; charset=utf-8' --data-binary \
    '{"customer_info":{"name":"Anna Smith","email":null},"initial_message":null,"x_unknown":1}'
id_c=$(json_get "$body" "d['dialog_id']")
p 201 POST /api/v1/dialogue/create "README shape, empty initial message" "${J[@]}" \
    '{"customer_id":"customer_789","initial_message":"","priority":"urgent"}'
id_d=$(json_get "$body" "d['dialog_id']")

# When a create above failed the contract, Prism replaced the body and the id
# is lost: create the same dialog straight on the server so that the rest of
# the scenario still runs and reports everything else.
fallback_create() { # fallback_create JSON -> prints the new dialog_id or nothing
    curl -sS --max-time 60 -o "$tmp/fallback" -H 'Content-Type: application/json' \
        --data-binary "$1" "$direct/api/v1/dialogue/create" >/dev/null 2>&1
    json_get "$tmp/fallback" "d['dialog_id']"
}
[ -n "$id_a" ] || id_a=$(fallback_create '{"customer_info":{"name":"Иван Петров","customer_id":"customer_123"},"initial_message":"Не работает приложение"}')
[ -n "$id_b" ] || id_b=$(fallback_create '{"customer_id":"customer_456","initial_message":"Сколько стоит тариф Профи?"}')
[ -n "$id_c" ] || id_c=$(fallback_create '{"customer_info":{"name":"Anna Smith"}}')
[ -n "$id_d" ] || id_d=$(fallback_create '{"customer_id":"customer_789"}')
if [ -z "$id_a" ] || [ -z "$id_b" ] || [ -z "$id_c" ] || [ -z "$id_d" ]; then
    echo "FAIL: could not create the dialogs the rest of the scenario needs" >&2
    show_logs
    exit 1
fi

echo "== messages"
p 200 POST "/api/v1/dialogue/$id_a/message" "Russian, sales topic" "${J[@]}" \
    '{"message":"А сколько стоит тариф Профи и можно ли оплатить картой?"}'
p 200 POST "/api/v1/dialogue/$id_a/message" "English, message_type user" "${J[@]}" \
    '{"message":"The app still crashes when I log in, error 500","message_type":"user"}'
p 200 POST "/api/v1/dialogue/$id_a/message" "escalation wording" "${J[@]}" \
    '{"message":"Это уже третий раз! Позовите руководителя, я буду жаловаться."}'
p 200 POST "/api/v1/dialogue/$id_c/message" "first message of an empty dialog" "${J[@]}" \
    '{"message":"Hello, I would like to upgrade my plan"}'

echo "== read"
p 200 GET "/api/v1/dialogue/$id_a" "get"
p 200 GET "/api/v1/dialogue/$id_a/history" "history"
p 200 GET "/api/v1/dialogue/$id_a/status" "status"
p 200 GET "/api/v1/dialogue/$id_d" "get, no messages"
p 200 GET "/api/v1/dialogue/$id_d/status" "status, no messages"

echo "== list"
p 200 GET /api/v1/dialogues "default page"
p 200 GET "/api/v1/dialogues?limit=2" "first page of 2"
cursor=$(json_get "$body" "d['next_cursor']")
if [ -n "$cursor" ]; then
    enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$cursor")
    p 200 GET "/api/v1/dialogues?limit=2&cursor=$enc" "second page via cursor"
else
    total=$((total + 1))
    failures=$((failures + 1))
    echo "FAIL  first page of 2 (of 4 dialogs) has no next_cursor"
fi
p 200 GET "/api/v1/dialogues?customer_id=customer_123&view=full" "customer filter, full view"
p 200 GET "/api/v1/dialogues?status=active&view=summary&limit=100" "status filter"
p 200 GET "/api/v1/dialogues?agent=tech_support" "agent filter"
p 200 GET "/api/v1/dialogues?status=closed&agent=sales&limit=1" "filters with no match"

echo "== close"
p 200 POST "/api/v1/dialogue/$id_b/close" "reason in body" "${J[@]}" '{"reason":"problem_resolved"}'
p 200 POST "/api/v1/dialogue/$id_b/close" "already closed" "${J[@]}" '{"reason":"again"}'
p 200 POST "/api/v1/dialogue/$id_c/close?reason=duplicate" "reason in query, no body"
p 200 POST "/api/v1/dialogue/$id_d/close" "default reason"
p 200 GET "/api/v1/dialogue/$id_b" "get closed (summary set)"
p 200 GET "/api/v1/dialogues?status=closed&view=full" "closed dialogs, full view"

echo "== delete and maintenance"
p 409 DELETE "/api/v1/dialogue/$id_a" "not closed, no force"
p 409 DELETE "/api/v1/dialogue/$id_a?force=false" "not closed, force=false"
p 200 DELETE "/api/v1/dialogue/$id_a?force=true" "force"
p 200 DELETE "/api/v1/dialogue/$id_b" "closed, no force"
p 200 DELETE "/api/v1/dialogue/$id_c?force=no" "closed, force=no"
p 200 DELETE /api/v1/dialogue/cleanup "close inactive"
p 200 DELETE "/api/v1/dialogue/cleanup/closed?older_than_days=30" "purge closed, 30 days"
p 200 DELETE /api/v1/dialogue/cleanup/closed "purge closed, default"

# A fresh open dialog for the error cases, so that a 4xx cannot come from the
# dialog being closed.
p 201 POST /api/v1/dialogue/create "dialog for the error cases" "${J[@]}" '{"customer_info":{"name":"Ошибкин"}}'
id_e=$(json_get "$body" "d['dialog_id']")
[ -n "$id_e" ] || id_e=$(fallback_create '{"customer_info":{"name":"Ошибкин"}}')
[ -n "$id_e" ] || id_e=$unknown

echo "== errors: 404"
p 404 GET "/api/v1/dialogue/$unknown" "unknown id"
p 404 GET "/api/v1/dialogue/$unknown/history" "unknown id"
p 404 GET "/api/v1/dialogue/$unknown/status" "unknown id"
p 404 GET /api/v1/dialogue/not-a-uuid/status "malformed id"
p 404 POST "/api/v1/dialogue/$unknown/message" "unknown id" "${J[@]}" '{"message":"Алло?"}'
p 404 POST "/api/v1/dialogue/$unknown/close" "unknown id"
p 404 DELETE "/api/v1/dialogue/$unknown?force=true" "unknown id"
p 404 POST /api/v1/telegram/webhook "no Telegram webhook (polling or no channel)" \
    -H 'X-Telegram-Bot-Api-Secret-Token: x' "${J[@]}" '{"update_id":1}'
p 404 GET "/api/v1/dialogue/$id_a" "deleted dialog"

echo "== errors: 409"
p 409 POST "/api/v1/dialogue/$id_d/message" "message to a closed dialog" "${J[@]}" '{"message":"Ещё вопрос"}'

echo "== errors: 413, 415"
python3 -c 'import sys; sys.stdout.write("{\"customer_info\":{\"name\":\"Big\"},\"initial_message\":\"" + "a" * 102400 + "\"}")' >"$tmp/big.json"
p 413 POST /api/v1/dialogue/create "100 KB body, limit 64 KiB" -H 'Content-Type: application/json' --data-binary "@$tmp/big.json"
p 415 POST /api/v1/dialogue/create "text/plain" -H 'Content-Type: text/plain' --data-binary '{"customer_id":"c1"}'
p 415 POST "/api/v1/dialogue/$id_e/message" "text/plain" -H 'Content-Type: text/plain' --data-binary 'hello'

echo "== errors: 422"
p 201 POST /api/v1/dialogue/create "anonymous dialog (no customer at all)" "${J[@]}" '{"initial_message":"Привет"}'
p 422 POST /api/v1/dialogue/create "empty name" "${J[@]}" '{"customer_info":{"name":""}}'
p 422 POST /api/v1/dialogue/create "bad priority" "${J[@]}" '{"customer_info":{"name":"Иван"},"priority":"asap"}'
p 422 POST /api/v1/dialogue/create "name not a string" "${J[@]}" '{"customer_info":{"name":42}}'
p 422 POST /api/v1/dialogue/create "body not an object" "${J[@]}" '[1,2]'
p 422 POST "/api/v1/dialogue/$id_e/message" "empty message" "${J[@]}" '{"message":""}'
p 422 POST "/api/v1/dialogue/$id_e/message" "message_type agent" "${J[@]}" '{"message":"Hi","message_type":"agent"}'
p 422 POST "/api/v1/dialogue/$id_e/message" "missing message" "${J[@]}" '{"text":"Hi"}'
p 422 POST "/api/v1/dialogue/$id_e/close" "empty reason" "${J[@]}" '{"reason":""}'
p 422 DELETE "/api/v1/dialogue/$id_e?force=maybe" "bad force"
p 422 DELETE "/api/v1/dialogue/cleanup/closed?older_than_days=0" "older_than_days 0"
p 422 DELETE "/api/v1/dialogue/cleanup/closed?older_than_days=abc" "older_than_days not a number"
p 422 GET "/api/v1/dialogues?limit=0" "limit 0"
p 422 GET "/api/v1/dialogues?limit=101" "limit 101"
p 422 GET "/api/v1/dialogues?status=open" "bad status"
p 422 GET "/api/v1/dialogues?agent=router" "bad agent"
p 422 GET "/api/v1/dialogues?view=compact" "bad view"
p 422 GET "/api/v1/dialogues?cursor=not-a-cursor" "bad cursor"

echo "== errors Prism would answer itself (sent direct)"
d 400 invalid_json POST /api/v1/dialogue/create "malformed JSON" "${J[@]}" '{"customer_id":'
d 400 invalid_json POST "/api/v1/dialogue/$id_e/message" "malformed JSON" "${J[@]}" '{"message":"hi"'
printf '{"customer_id":"\xff\xfe"}' >"$tmp/bad-utf8.json"
d 400 invalid_utf8 POST /api/v1/dialogue/create "invalid UTF-8" -H 'Content-Type: application/json' --data-binary "@$tmp/bad-utf8.json"
ALLOW="GET DELETE" d 405 method_not_allowed PUT "/api/v1/dialogue/$id_e" "PUT on a dialog"
ALLOW="POST" d 405 method_not_allowed GET "/api/v1/dialogue/$id_e/message" "GET on message"
ALLOW="GET" d 405 method_not_allowed POST /api/v1/health "POST on health"
ALLOW="GET" d 405 method_not_allowed DELETE /api/v1/dialogues "DELETE on the list"
ALLOW="DELETE" d 405 method_not_allowed GET /api/v1/dialogue/cleanup/closed "GET on purge"

echo "== idempotency: Idempotency-Key on create"
key_body='{"customer_info":{"name":"Повтор"},"source":"web","priority":"low"}'
p 201 POST /api/v1/dialogue/create "Idempotency-Key, first request" "${J[@]}" "$key_body" \
    -H 'Idempotency-Key: prism-create-1'
cp "$body" "$tmp/first-create"
id_k=$(json_get "$body" "d['dialog_id']")
p 201 POST /api/v1/dialogue/create "same key, same body: replay" "${J[@]}" "$key_body" \
    -H 'Idempotency-Key: prism-create-1'
check "the replay is the first response byte for byte" "bodies differ" \
    cmp -s "$tmp/first-create" "$body"
p 201 POST /api/v1/dialogue/create "same key quoted, keys reordered: replay" "${J[@]}" \
    '{"priority":"low","source":"web","customer_info":{"name":"Повтор"}}' \
    -H 'Idempotency-Key: "prism-create-1"'
check "same dialog_id" "dialog_id is not $id_k" \
    test "$(json_get "$body" "d['dialog_id']")" = "$id_k"
p 422 POST /api/v1/dialogue/create "same key, another body" "${J[@]}" \
    '{"customer_info":{"name":"Другой"}}' -H 'Idempotency-Key: prism-create-1'
check_code idempotency_key_reused
p 400 POST /api/v1/dialogue/create "key with a space" "${J[@]}" "$key_body" \
    -H 'Idempotency-Key: two words'
check_code invalid_idempotency_key
p 400 POST /api/v1/dialogue/create "key of 256 characters" "${J[@]}" "$key_body" \
    -H "Idempotency-Key: $(printf '%0256d' 0)"
check_code invalid_idempotency_key
[ -n "$id_k" ] || id_k=$(fallback_create "$key_body")

echo "== idempotency: Idempotency-Key on message"
p 200 POST "/api/v1/dialogue/$id_k/message" "Idempotency-Key, first request" "${J[@]}" \
    '{"message":"Сколько стоит тариф Профи?"}' -H 'Idempotency-Key: prism-msg-1'
cp "$body" "$tmp/first-message"
msg_k=$(json_get "$body" "d['message_id']")
p 200 POST "/api/v1/dialogue/$id_k/message" "same key, same message: replay" "${J[@]}" \
    '{"message":"Сколько стоит тариф Профи?"}' -H 'Idempotency-Key: prism-msg-1'
check "the replay is the first response byte for byte" "bodies differ" \
    cmp -s "$tmp/first-message" "$body"
p 422 POST "/api/v1/dialogue/$id_k/message" "same key, another message" "${J[@]}" \
    '{"message":"А другой тариф?"}' -H 'Idempotency-Key: prism-msg-1'
check_code idempotency_key_reused
p 400 POST "/api/v1/dialogue/$id_k/message" "empty quoted key" "${J[@]}" \
    '{"message":"Сколько стоит тариф Профи?"}' -H 'Idempotency-Key: ""'
check_code invalid_idempotency_key
p 200 GET "/api/v1/dialogue/$id_k/status" "after the replays"
check "one turn only: message_count 2" "message_count is not 2" \
    test "$(json_get "$body" "d['message_count']")" = 2
p 200 GET "/api/v1/dialogue/$id_k" "document with metadata.idempotency"
check "two idempotency records (create, message)" "metadata.idempotency is not [create, message]" \
    test "$(json_get "$body" "','.join(r['operation'] for r in d['metadata']['idempotency'])")" = create,message
p 200 POST "/api/v1/dialogue/$id_k/close" "close the keyed dialog"
p 200 POST "/api/v1/dialogue/$id_k/message" "replay on the closed dialog" "${J[@]}" \
    '{"message":"Сколько стоит тариф Профи?"}' -H 'Idempotency-Key: prism-msg-1'
check "still the first reply" "bodies differ" cmp -s "$tmp/first-message" "$body"
p 200 POST "/api/v1/dialogue/$id_e/message" "same key, another dialog: a new turn" "${J[@]}" \
    '{"message":"Сколько стоит тариф Профи?"}' -H 'Idempotency-Key: prism-msg-1'
check "a new message_id" "message_id repeats $msg_k" \
    test "$(json_get "$body" "d['message_id']")" != "$msg_k"

echo "== metrics"
p 200 GET /metrics "Prometheus text format"
check_header content-type '^text/plain; version=0\.0\.4; charset=utf-8$'
check "cca_http_requests_total is a counter" "no '# TYPE cca_http_requests_total counter'" \
    grep -qx '# TYPE cca_http_requests_total counter' "$body"
check "cca_idempotent_replays_total counts the 4 replays" "cca_idempotent_replays_total < 4" \
    test "$(awk '$1 == "cca_idempotent_replays_total" { print int($2) }' "$body")" -ge 4
check "no label carries an id" "a UUID appears in /metrics" \
    not grep -Eq '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-' "$body"

echo "== operators"
p 401 POST /api/v1/operators/register "wrong secret" "${J[@]}" '{"secret":"nope","name":"Ольга"}'
check_code unauthorized
p 401 POST /api/v1/operators/register "no secret" "${J[@]}" '{"name":"Ольга"}'
p 422 POST /api/v1/operators/register "empty name" "${J[@]}" '{"secret":"prism-operator-secret","name":""}'
p 201 POST /api/v1/operators/register "self-registration" "${J[@]}" \
    '{"secret":"prism-operator-secret","name":"Ольга","languages":["ru","en"],"profile":{"city":"Казань"}}'
op_token=$(json_get "$body" "d['token']")
op=(-H "Authorization: Bearer $op_token")
p 201 POST /api/v1/operators "created by an admin (open API)" "${J[@]}" '{"name":"Иван","max_dialogs":2}'
op2_id=$(json_get "$body" "d['operator_id']")
[ -n "$op2_id" ] || op2_id=$unknown
p 200 GET /api/v1/operators "list"
p 200 GET "/api/v1/operators/$op2_id" "get"
p 404 GET "/api/v1/operators/$unknown" "unknown operator"
p 200 PATCH "/api/v1/operators/$op2_id" "admin patch" "${J[@]}" '{"max_dialogs":4}'
p 401 GET /api/v1/operators/me "no operator token"
p 200 GET /api/v1/operators/me "me" "${op[@]}"
p 200 GET /api/v1/operators/team "colleagues, for transfers" "${op[@]}"
p 401 GET /api/v1/operators/team "no operator token"
p 403 PATCH /api/v1/operators/me "max_dialogs by the operator" "${J[@]}" '{"max_dialogs":9}' "${op[@]}"
p 200 PATCH /api/v1/operators/me "own name" "${J[@]}" '{"name":"Ольга П."}' "${op[@]}"
p 422 PUT /api/v1/operators/me/status "bad status" "${J[@]}" '{"status":"away"}' "${op[@]}"
p 200 GET /api/v1/queue "empty queue" "${op[@]}"
p 201 POST /api/v1/dialogue/create "dialog for the operators" "${J[@]}" '{"customer_info":{"name":"Клиент"}}'
id_h=$(json_get "$body" "d['dialog_id']")
[ -n "$id_h" ] || id_h=$(fallback_create '{"customer_info":{"name":"Клиент"}}')
p 200 POST "/api/v1/dialogue/$id_h/handoff" "to a human: queued (nobody on shift)" "${J[@]}" '{"to":"human","reason":"customer_request"}'
p 200 GET "/api/v1/dialogue/$id_h/queue" "place in the queue"
p 202 POST "/api/v1/dialogue/$id_h/message" "message while queued" "${J[@]}" '{"message":"Алло, есть кто-нибудь?"}'
p 200 GET "/api/v1/queue?limit=10" "queue with one dialog" "${op[@]}"
p 200 GET "/api/v1/dialogue/$id_h" "operator reads a queued dialog" "${op[@]}"
p 403 GET "/api/v1/dialogue/$id_e" "operator reads a dialog not theirs" "${op[@]}"
check_code forbidden
p 403 POST "/api/v1/dialogue/$id_e/close" "operator closes a dialog not theirs" "${op[@]}"
p 200 POST "/api/v1/dialogue/$id_h/take" "take" "${op[@]}"
p 409 POST "/api/v1/dialogue/$id_h/take" "take again" "${op[@]}"
check_code not_queued
p 404 POST /api/v1/operators/me/next "nothing queued" "${op[@]}"
check_code queue_empty
p 200 GET /api/v1/operators/me/dialogs "own dialogs" "${op[@]}"
p 200 POST "/api/v1/dialogue/$id_h/reply" "reply" "${J[@]}" '{"message":"Здравствуйте! Ольга на связи."}' "${op[@]}"
reply_id=$(json_get "$body" "d['message_id']")
p 202 POST "/api/v1/dialogue/$id_h/message" "customer answers the operator" "${J[@]}" '{"message":"Спасибо, жду"}'
p 200 GET "/api/v1/dialogue/$id_h/messages?after=$reply_id" "messages after the reply" "${op[@]}"
p 200 GET "/api/v1/dialogue/$id_h/messages" "every message"
p 404 GET "/api/v1/dialogue/$id_h/messages?after=$unknown" "unknown message id"
check_code message_not_found
p 409 GET "/api/v1/dialogue/$id_h/queue" "not queued"
p 200 GET "/api/v1/dialogue/$id_h/status" "status assigned" "${op[@]}"
p 200 POST "/api/v1/dialogue/$id_h/handoff" "back to the AI" "${J[@]}" '{"to":"ai","agent":"sales"}' "${op[@]}"
p 409 POST "/api/v1/dialogue/$id_h/handoff" "back to the AI again" "${J[@]}" '{"to":"ai"}'
check_code handoff_refused
p 422 POST "/api/v1/dialogue/$id_h/handoff" "transfer without operator_id" "${J[@]}" '{"to":"operator"}'
p 409 POST "/api/v1/dialogue/$id_h/rating" "rating an open dialog" "${J[@]}" '{"score":5}'
check_code dialog_open
p 200 POST "/api/v1/dialogue/$id_h/close" "close"
p 201 POST "/api/v1/dialogue/$id_h/rating" "rating" "${J[@]}" '{"score":5,"comment":"Спасибо"}'
p 200 POST "/api/v1/dialogue/$id_h/rating" "the same rating again" "${J[@]}" '{"score":5,"comment":"Спасибо"}'
p 409 POST "/api/v1/dialogue/$id_h/rating" "another score" "${J[@]}" '{"score":2}'
check_code rating_exists
p 422 POST "/api/v1/dialogue/$id_h/rating" "score 6" "${J[@]}" '{"score":6}'
p 200 PUT /api/v1/operators/me/status "status busy" "${J[@]}" '{"status":"busy"}' "${op[@]}"
p 200 DELETE "/api/v1/operators/$op2_id" "revoke"
p 404 GET "/api/v1/operators/$op2_id" "revoked operator"

# Event streams never end, so Prism (which waits for the whole body) is not
# in front of them: sent direct for 2 s, the headers and first frame checked.
echo "== event streams (sent direct)"
for sse in "/api/v1/dialogue/$id_h/events" "/api/v1/operators/me/events"; do
    : >"$headers"
    sse_status=$(curl -sS --max-time 2 -o "$body" -D "$headers" -w '%{http_code}' \
        "${op[@]}" -H 'Last-Event-ID: 0-0' "$direct$sse" 2>/dev/null)
    check "GET $sse: 200" "status $sse_status" test "$sse_status" = 200
    check_header content-type '^text/event-stream'
    check_header cache-control '^no-store$'
    check "GET $sse: starts with retry: 3000" "no retry frame" grep -qx 'retry: 3000' "$body"
done

# ---------------------------------------------------------------------------
# Support records (open API: no keys, so every key route is an admin's).
# Downloads (histories, exports) are streamed with chunked transfer encoding;
# Prism reads the whole body before it answers, then validates the status,
# the headers (Content-Disposition, Cache-Control) and the body: JSON against
# its schema, CSV, NDJSON and text against the patterns of their string
# schemas (the header row, one JSON object per line, the title line). The
# script checks the rest: the file name, the rows and lines themselves, and
# on one direct request the chunked encoding.

# A window that holds every dialog of this run: from yesterday to today (UTC;
# "to" as a date counts the whole day).
yesterday=$(python3 -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) - d.timedelta(days=1)).strftime("%Y-%m-%d"))')
today=$(python3 -c 'import datetime as d; print(d.datetime.now(d.timezone.utc).strftime("%Y-%m-%d"))')
tomorrow=$(python3 -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) + d.timedelta(days=1)).strftime("%Y-%m-%d"))')
long_id=$(printf 'c%.0s' $(seq 51))

echo "== records: customer profiles"
p 201 POST /api/v1/dialogue/create "dialog with customer_info (fills the profile)" "${J[@]}" \
    '{"customer_info":{"name":"Мария Соколова","phone":"+7 901 555-12-34","email":"maria@example.com","customer_id":"customer_rec"},"initial_message":"Не работает приложение, не могу войти","source":"web"}'
id_r=$(json_get "$body" "d['dialog_id']")
[ -n "$id_r" ] || id_r=$(fallback_create '{"customer_info":{"name":"Мария Соколова","phone":"+7 901 555-12-34","email":"maria@example.com","customer_id":"customer_rec"},"initial_message":"Не работает приложение, не могу войти","source":"web"}')
[ -n "$id_r" ] || id_r=$unknown
p 201 POST /api/v1/dialogue/create "a second dialog of the customer" "${J[@]}" \
    '{"customer_id":"customer_rec","initial_message":"Сколько стоит тариф Профи?"}'
p 200 GET /api/v1/customers/customer_rec "profile filled from the dialog"
check "full_name, phone and email from customer_info" "the profile does not hold customer_info" \
    test "$(json_get "$body" "'|'.join([d['customer']['full_name'], d['customer']['phone'], d['customer']['email']])")" = \
    "Мария Соколова|+7 901 555-12-34|maria@example.com"
check "dialog_count 2" "dialog_count is not 2" test "$(json_get "$body" "d['dialog_count']")" = 2
p 201 PUT /api/v1/customers/customer_new "first PUT: created" "${J[@]}" \
    '{"full_name":"Новый Клиент","city":"Москва","language":"ru","experience":3}'
p 200 PUT /api/v1/customers/customer_new "second PUT: changed" "${J[@]}" \
    '{"city":null,"experience":"три года","email":"new@example.com"}'
check "null clears city" "city is not null" test "$(json_get "$body" "d['city'] is None")" = True
p 200 PUT /api/v1/customers/customer_rec "PUT on a profile a dialog made" "${J[@]}" \
    '{"city":"Казань","birth_date":"1990-05-17","position":"бухгалтер","experience":7}'
p 200 GET "/api/v1/customers/customer_rec?limit=1" "profile and one dialog"
check "PUT kept full_name, set city" "full_name or city wrong" \
    test "$(json_get "$body" "d['customer']['full_name'] + '|' + d['customer']['city']")" = "Мария Соколова|Казань"
check "limit=1: one dialog listed, dialog_count 2" "dialogs/dialog_count wrong" \
    test "$(json_get "$body" "'%d/%d' % (len(d['dialogs']), d['dialog_count'])")" = 1/2
p 200 GET /api/v1/customers/customer_new "profile without dialogs"
p 404 GET /api/v1/customers/nobody_here "unknown customer"
check_code not_found
p 404 GET "/api/v1/customers/$long_id" "not a customer id (51 characters)"
p 422 GET "/api/v1/customers/customer_rec?limit=0" "limit 0"
p 422 GET "/api/v1/customers/customer_rec?limit=101" "limit 101"
p 422 PUT /api/v1/customers/customer_rec "unknown field" "${J[@]}" '{"city":"Казань","nickname":"Маша"}'
check_code validation_error
p 422 PUT /api/v1/customers/customer_rec "no field" "${J[@]}" '{}'
p 422 PUT /api/v1/customers/customer_rec "language de" "${J[@]}" '{"language":"de"}'
p 422 PUT /api/v1/customers/customer_rec "birth_date 1990-02-30" "${J[@]}" '{"birth_date":"1990-02-30"}'
p 422 PUT /api/v1/customers/customer_rec "experience 81" "${J[@]}" '{"experience":81}'
p 422 PUT /api/v1/customers/customer_rec "email without a dot in the domain" "${J[@]}" '{"email":"maria@example"}'
p 422 PUT /api/v1/customers/customer_rec "body not an object" "${J[@]}" '[1]'
p 415 PUT /api/v1/customers/customer_rec "text/plain" -H 'Content-Type: text/plain' --data-binary '{"city":"Казань"}'
d 400 invalid_json PUT /api/v1/customers/customer_rec "malformed JSON" "${J[@]}" '{"city":'
ALLOW="GET PUT" d 405 method_not_allowed DELETE /api/v1/customers/customer_rec "DELETE on a customer"

echo "== records: a customer's history"
p 200 GET /api/v1/customers/customer_rec/history "default: text"
check_download history-customer_rec txt '^text/plain; charset=utf-8$'
check "text: title line with the name" "first line is not the title" \
    test "$(head -n 1 "$body")" = "History of customer customer_rec (Мария Соколова)"
check "text: a header per dialog" "not 2 '=== Dialog' lines" \
    test "$(grep -c '^=== Dialog ' "$body")" = 2
p 200 GET "/api/v1/customers/customer_rec/history?format=json" "json"
check_download history-customer_rec json '^application/json'
check "json: both dialogs, oldest first" "not [$id_r, ...]" \
    test "$(json_get "$body" "str(len(d)) + d[0]['dialog_id']")" = "2$id_r"
p 200 GET "/api/v1/customers/customer_rec/history?format=csv&limit=1" "csv, the last dialog only"
check_download history-customer_rec csv '^text/csv; charset=utf-8$'
py_check "csv: one dialog's messages, 7 columns per row" '
rows = list(csv.reader(io.StringIO(text, newline="")))
assert rows[0] == ["dialog_id", "timestamp", "role", "who", "operator_id", "agent", "text"], rows[0]
assert len(rows) >= 3, "expected the customer message and the reply"
assert all(len(r) == 7 for r in rows), "a row without 7 fields"
assert len({r[0] for r in rows[1:]}) == 1, "more than one dialog"
assert rows[1][0] != args[0], "limit=1 did not keep the newest dialog"
' "$id_r"
p 404 GET /api/v1/customers/nobody_here/history "unknown customer"
p 422 GET "/api/v1/customers/customer_rec/history?format=ndjson" "format ndjson"
p 422 GET "/api/v1/customers/customer_rec/history?limit=0" "limit 0"
p 422 GET "/api/v1/customers/customer_rec/history?limit=1001" "limit 1001"

echo "== records: what an operator may see"
p 200 GET /api/v1/operators/me "the operator's id" "${op[@]}"
op_id=$(json_get "$body" "d['operator_id']")
[ -n "$op_id" ] || op_id=$unknown
p 403 GET /api/v1/customers/customer_rec "operator who holds none of the customer's dialogs" "${op[@]}"
check_code forbidden
p 403 GET /api/v1/customers/customer_rec/history "operator who holds none of the customer's dialogs" "${op[@]}"
p 403 PUT /api/v1/customers/customer_rec "operator who holds none of the customer's dialogs" "${J[@]}" '{"city":"Уфа"}' "${op[@]}"
p 200 PUT /api/v1/operators/me/status "available: takes the next handoff" "${J[@]}" '{"status":"available"}' "${op[@]}"
p 200 POST "/api/v1/dialogue/$id_r/handoff" "to a person: assigned to the operator" "${J[@]}" '{"to":"human","reason":"customer_request"}'
p 200 GET /api/v1/customers/customer_rec "the operator holds one of the customer's open dialogs" "${op[@]}"
p 200 GET "/api/v1/customers/customer_rec/history?format=txt" "history, by that operator" "${op[@]}"
p 200 PUT /api/v1/customers/customer_rec "PUT by that operator" "${J[@]}" '{"position":"главный бухгалтер"}' "${op[@]}"
p 200 POST "/api/v1/dialogue/$id_r/reply" "the operator answers" "${J[@]}" '{"message":"Здравствуйте, Мария! Сейчас разберёмся."}' "${op[@]}"
p 200 POST "/api/v1/dialogue/$id_r/close" "the operator closes" "${J[@]}" '{"reason":"problem_resolved"}' "${op[@]}"
p 201 POST "/api/v1/dialogue/$id_r/rating" "rated 5" "${J[@]}" '{"score":5}'
p 200 PUT /api/v1/operators/me/status "busy again" "${J[@]}" '{"status":"busy"}' "${op[@]}"

echo "== records: dialog export"
p 200 GET /api/v1/exports/dialogs "default: csv"
check_download dialogs csv '^text/csv; charset=utf-8$'
cp "$body" "$tmp/export-all.csv"
py_check "csv: 19 columns, the handed-off dialog's row" '
rows = list(csv.reader(io.StringIO(text, newline="")))
head = rows[0]
assert len(head) == 19 and head[0] == "dialog_id" and head[-1] == "close_reason", head
assert all(len(r) == 19 for r in rows), "a row without 19 fields"
row = dict(zip(head, [r for r in rows if r[0] == args[0]][0]))
want = {"customer_id": "customer_rec", "customer_name": "Мария Соколова", "channel": "web",
        "status": "closed", "operator_ids": args[1], "escalation_trigger": "customer_request",
        "csat": "5", "close_reason": "problem_resolved"}
bad = {k: row[k] for k in want if row[k] != want[k]}
assert not bad, "unexpected %r" % bad
assert row["handle_time_s"] and "." in row["handle_time_s"], "no handle time"
' "$id_r" "$op_id"
p 200 GET "/api/v1/exports/dialogs?format=csv&bom=true" "csv with a byte order mark"
check "starts with EF BB BF" "no byte order mark" test "$(head -c 3 "$body" | od -An -tx1 | tr -d ' ')" = efbbbf
p 200 GET "/api/v1/exports/dialogs?format=json" "json"
check_download dialogs json '^application/json'
py_check "json: an array of dialogs, no metadata.idempotency" '
items = json.loads(text)
assert isinstance(items, list) and len(items) >= 2, "not an array of dialogs"
assert not any("idempotency" in i["metadata"] for i in items), "metadata.idempotency exported"
'
p 200 GET "/api/v1/exports/dialogs?format=ndjson" "ndjson"
check_download dialogs ndjson '^application/x-ndjson$'
py_check "ndjson: one dialog per line, as many as CSV rows" '
lines = text.split("\n")
assert lines[-1] == "", "no final LF"
docs = [json.loads(l) for l in lines[:-1]]
assert all(isinstance(x, dict) and "dialog_id" in x for x in docs), "a line is not a dialog"
rows = list(csv.reader(open(args[0], encoding="utf-8", newline="")))
assert len(docs) == len(rows) - 1, "%d lines, %d CSV rows" % (len(docs), len(rows) - 1)
' "$tmp/export-all.csv"
p 200 GET "/api/v1/exports/dialogs?format=json&customer_id=customer_rec&operator_id=$op_id&agent=tech_support&status=closed&from=$yesterday&to=$today" "every filter"
check "the filters keep exactly the handed-off dialog" "not [$id_r]" \
    test "$(json_get "$body" "','.join(x['dialog_id'] for x in d)")" = "$id_r"
p 200 GET "/api/v1/exports/dialogs?format=ndjson&from=2100-01-01" "nothing matches: empty ndjson"
check "empty body" "not empty" test ! -s "$body"
p 200 GET "/api/v1/exports/dialogs?status=queued&agent=sales&bom=no" "nothing matches: csv header only"
check "header row only" "more than the header" test "$(wc -l <"$body")" = 1
p 422 GET "/api/v1/exports/dialogs?format=xml" "format xml"
check_code validation_error
p 422 GET "/api/v1/exports/dialogs?format=txt" "format txt"
p 422 GET "/api/v1/exports/dialogs?from=yesterday" "from not a date"
p 422 GET "/api/v1/exports/dialogs?to=$today%2010:00" "to with a space"
p 422 GET "/api/v1/exports/dialogs?from=$tomorrow&to=$yesterday" "from after to"
p 422 GET "/api/v1/exports/dialogs?status=open" "status open"
p 422 GET "/api/v1/exports/dialogs?agent=robot" "agent robot"
p 422 GET "/api/v1/exports/dialogs?operator_id=not-a-uuid" "operator_id not a UUID"
p 422 GET "/api/v1/exports/dialogs?customer_id=$long_id" "customer_id of 51 characters"
p 422 GET "/api/v1/exports/dialogs?bom=maybe" "bom maybe"
ALLOW="GET" d 405 method_not_allowed POST /api/v1/exports/dialogs "POST on the export"
# Prism reads a stream whole and answers with a Content-Length: the chunked
# encoding is checked on the server itself.
: >"$headers"
stream_status=$(curl -sS --max-time 60 -o "$body" -D "$headers" -w '%{http_code}' \
    "$direct/api/v1/exports/dialogs?format=ndjson" 2>/dev/null)
check "direct: GET /api/v1/exports/dialogs: 200" "status $stream_status" test "$stream_status" = 200
check_header transfer-encoding '^chunked$'

echo "== records: statistics"
p 200 GET /api/v1/stats "every dialog"
py_check "stats count the dialogs the CSV export lists" '
s = json.loads(text)
rows = list(csv.reader(open(args[0], encoding="utf-8", newline="")))
assert s["dialogs"]["total"] == len(rows) - 1, "total %d, CSV rows %d" % (s["dialogs"]["total"], len(rows) - 1)
assert s["from"] is None and s["to"] is None, "from/to not null"
assert s["escalations"]["by_trigger"]["customer_request"] >= 1, "no customer_request escalation"
assert s["csat"]["count"] >= 2 and s["csat"]["distribution"]["5"] >= 2, "ratings missing"
assert s["handle_time_s"]["count"] >= 1 and s["handle_time_s"]["p50"] is not None, "no handle time"
' "$tmp/export-all.csv"
p 200 GET "/api/v1/stats?from=$yesterday&to=$today" "window of dates"
check "a date as to counts the whole day" "from/to not [${yesterday}T00:00:00.000Z, ${tomorrow}T00:00:00.000Z)" \
    test "$(json_get "$body" "d['from'] + ' ' + d['to']")" = "${yesterday}T00:00:00.000Z ${tomorrow}T00:00:00.000Z"
p 200 GET "/api/v1/stats?from=${yesterday}T00:00:00.5Z&to=${tomorrow}T00:00:00%2B00:00" "window of RFC 3339 times"
p 200 GET "/api/v1/stats?from=2100-01-01" "empty window: percentiles and rates null"
check "no dialog, null p50 and rates" "unexpected figures" \
    test "$(json_get "$body" "[d['dialogs']['total'], d['first_response_s']['p50'], d['escalations']['rate'], d['csat']['average']]")" = "[0, None, None, None]"
p 422 GET "/api/v1/stats?from=yesterday" "from not a date"
check_code validation_error
p 422 GET "/api/v1/stats?to=2026-13-01" "month 13"
p 422 GET "/api/v1/stats?from=${today}T10:00:00%2B03:00" "offset other than UTC"
p 422 GET "/api/v1/stats?from=$today&to=$today%20" "to with a trailing space"
p 422 GET "/api/v1/stats?from=$tomorrow&to=$today" "from equal to to (to is the end of the day)"
ALLOW="GET" d 405 method_not_allowed POST /api/v1/stats "POST on stats"

echo "== records: operator statistics"
p 201 POST /api/v1/operators "another operator (admin, open API)" "${J[@]}" '{"name":"Пётр"}'
op3_id=$(json_get "$body" "d['operator_id']")
op3=(-H "Authorization: Bearer $(json_get "$body" "d['token']")")
[ -n "$op3_id" ] || op3_id=$unknown
p 200 GET /api/v1/operators/me/stats "own statistics" "${op[@]}"
py_check "the operator's dialogs, reply, handle time and rating" '
s = json.loads(text)
assert s["operator_id"] == args[0], "operator_id %r" % s["operator_id"]
assert s["dialogs_handled"] >= 2 and s["closed"] >= 2, "dialogs %r" % s
assert s["messages_sent"] >= 2 and s["first_response_s"]["count"] >= 2, "replies"
assert s["handle_time_s"]["count"] >= 1, "no handle time"
assert s["csat"]["count"] >= 1 and s["csat"]["distribution"]["5"] >= 1, "no rating"
t = s["time_in_status_s"]
assert t["available"] > 0 and t["busy"] > 0 and t["offline"] > 0, "time in status %r" % t
' "$op_id"
p 200 GET "/api/v1/operators/me/stats?from=$yesterday&to=$today" "own statistics, window" "${op[@]}"
p 200 GET /api/v1/operators/me/stats "an operator with no dialog: nulls" "${op3[@]}"
check "dialogs_handled 0, p50 null, no CSAT average" "unexpected figures" \
    test "$(json_get "$body" "[d['dialogs_handled'], d['handle_time_s']['p50'], d['csat']['average']]")" = "[0, None, None]"
p 200 GET "/api/v1/operators/$op_id/stats" "by id with the operator's own token" "${op[@]}"
p 200 GET "/api/v1/operators/$op_id/stats?to=$today" "by id, admin (open API)"
p 403 GET "/api/v1/operators/$op3_id/stats" "another operator's statistics" "${op[@]}"
check_code forbidden
p 404 GET "/api/v1/operators/$unknown/stats" "unknown operator"
p 404 GET /api/v1/operators/not-a-uuid/stats "not an operator id"
p 401 GET /api/v1/operators/me/stats "no operator token"
p 422 GET "/api/v1/operators/me/stats?from=yesterday" "from not a date" "${op[@]}"
p 422 GET "/api/v1/operators/$op_id/stats?from=$today&to=$yesterday" "from after to"

echo "== records: profile export"
p 200 GET "/api/v1/exports/profiles?format=json" "json, every kind"
check_download profiles json '^application/json'
py_check "operators first, then customers, no token hash" '
items = json.loads(text)
kinds = [i["kind"] for i in items]
assert kinds == sorted(kinds, key=lambda k: k != "operator"), "order %r" % kinds
assert "customer_rec" in [i["id"] for i in items], "customer_rec missing"
assert args[0] in [i["id"] for i in items], "operator missing"
assert not any("token_sha256" in i or "token" in i for i in items), "a token in the export"
' "$op_id"
p 200 GET "/api/v1/exports/profiles?format=ndjson&kind=customers" "ndjson, customers"
check_download profiles ndjson '^application/x-ndjson$'
py_check "ndjson: customers only, one per line" '
items = [json.loads(l) for l in text.split("\n")[:-1]]
assert items and all(i["kind"] == "customer" for i in items), "kinds %r" % [i["kind"] for i in items]
'
p 200 GET "/api/v1/exports/profiles?format=json&kind=operators" "json, operators"
p 422 GET "/api/v1/exports/profiles?kind=bots" "kind bots"
p 422 GET "/api/v1/exports/profiles?format=txt" "format txt"
p 422 GET "/api/v1/exports/profiles?format=csv&bom=2" "bom 2"
p 200 GET "/api/v1/exports/profiles?kind=operators&bom=yes" "csv, operators, byte order mark"
check_download profiles csv '^text/csv; charset=utf-8$'
py_check "csv: 14 columns, the operators" '
assert raw.startswith(b"\xef\xbb\xbf"), "no byte order mark"
rows = list(csv.reader(io.StringIO(text[1:], newline="")))
assert len(rows[0]) == 14 and rows[0][0] == "kind", rows[0]
assert all(len(r) == 14 for r in rows), "a row without 14 fields"
assert {r[0] for r in rows[1:]} == {"operator"}, "not only operators"
'
p 200 GET /api/v1/exports/profiles "csv, every kind"
py_check "csv: the customer's row" '
rows = list(csv.reader(io.StringIO(text, newline="")))
row = dict(zip(rows[0], [r for r in rows if r[:2] == ["customer", "customer_rec"]][0]))
want = {"full_name": "Мария Соколова", "city": "Казань", "birth_date": "1990-05-17",
        "position": "главный бухгалтер", "experience": "7", "phone": "+7 901 555-12-34"}
bad = {k: row[k] for k in want if row[k] != want[k]}
assert not bad, "unexpected %r" % bad
'

# ---------------------------------------------------------------------------
# Restart both with access control on: three client keys (one only for the
# rate limit, one for the records; buckets are per key), two admin keys (one
# for the records), 3 requests per key and then one per 100 s, one CORS
# origin.
echo
echo "== restart with API_KEYS, ADMIN_API_KEYS, RATE_LIMIT_RPS, CORS_ORIGINS"
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "FAIL: the server is no longer running" >&2
    failures=$((failures + 1))
fi
stop
mv "$tmp/server.log" "$tmp/server-open.log"
mv "$tmp/prism.log" "$tmp/prism-open.log"
start_server API_KEYS=prism-client-key,prism-limited-key,prism-records-key \
    ADMIN_API_KEYS=prism-admin-key,prism-records-admin \
    RATE_LIMIT_RPS=0.01 RATE_LIMIT_BURST=3 CORS_ORIGINS=https://app.example.com
start_prism
client=(-H 'Authorization: Bearer prism-client-key')
admin=(-H 'Authorization: Bearer prism-admin-key')

echo "== access: 401"
p 401 GET /api/v1/dialogues "no key"
check_code unauthorized
check_header www-authenticate '^Bearer realm="call-center-agents"$'
p 401 GET /api/v1/dialogues "unknown key" -H 'Authorization: Bearer not-a-key'
check_header www-authenticate '^Bearer realm="call-center-agents", error="invalid_token"$'
p 401 POST /api/v1/dialogue/create "no key" "${J[@]}" '{"customer_id":"c1"}'
p 401 DELETE /api/v1/dialogue/cleanup "no key"
p 401 GET "/api/v1/dialogue/$id_k" "unknown X-API-Key" -H 'X-API-Key: not-a-key'

echo "== access: public operations need no key"
p 200 GET /api/v1/health "health"
p 200 GET /api/v1/health/live "liveness"
p 200 GET / "service info"
p 200 GET /metrics "metrics"

echo "== access: client and admin keys"
p 201 POST /api/v1/dialogue/create "Bearer client key" "${J[@]}" '{"customer_id":"c1"}' "${client[@]}"
p 200 GET "/api/v1/dialogue/$id_k/status" "X-API-Key client key (dialog from before the restart)" \
    -H 'X-API-Key: prism-client-key'
p 403 DELETE /api/v1/dialogue/cleanup "client key" "${client[@]}"
check_code forbidden
p 403 DELETE /api/v1/dialogue/cleanup/closed "client key" "${client[@]}"
p 403 DELETE "/api/v1/dialogue/$id_k?force=true" "client key" "${client[@]}"
p 200 DELETE /api/v1/dialogue/cleanup "admin key" "${admin[@]}"
p 401 GET /api/v1/operators/me "an API key on an operator route" "${client[@]}"
check_code unauthorized
p 403 POST /api/v1/operators/register "no OPERATOR_SECRET or OPERATOR_PINS" "${J[@]}" '{"secret":"x","name":"A"}'
check_code registration_closed
p 200 DELETE "/api/v1/dialogue/$id_k" "admin key in X-API-Key" -H 'X-API-Key: prism-admin-key'

# Keys of their own, so that the 3 requests of each bucket suffice: refusals
# by the access check (401, 403 for a key that is not an admin's) use no
# token; a handler's 403 (operator statistics) uses one.
echo "== access: records"
records_client=(-H 'Authorization: Bearer prism-records-key')
records_admin=(-H 'X-API-Key: prism-records-admin')
p 401 GET /api/v1/exports/dialogs "no key"
check_code unauthorized
p 401 GET /api/v1/stats "an operator token on an admin route" "${op[@]}"
p 401 GET /api/v1/operators/me/stats "an API key on an operator route" "${records_client[@]}"
p 403 GET /api/v1/exports/dialogs "client key" "${records_client[@]}"
check_code forbidden
p 403 GET /api/v1/exports/profiles "client key" "${records_client[@]}"
p 403 GET /api/v1/stats "client key" "${records_client[@]}"
p 403 GET "/api/v1/operators/$op_id/stats" "client key: not an admin's" "${records_client[@]}"
check_code forbidden
p 200 GET /api/v1/customers/customer_rec "client key: any key reads customers" "${records_client[@]}"
p 200 GET "/api/v1/exports/dialogs?format=ndjson&customer_id=customer_rec" "admin key" "${records_admin[@]}"
p 200 GET /api/v1/stats "admin key" "${records_admin[@]}"
p 200 GET "/api/v1/operators/$op_id/stats" "admin key" "${records_admin[@]}"

echo "== access: 429 (RATE_LIMIT_BURST=3 for a key of its own)"
limited=(-H 'Authorization: Bearer prism-limited-key')
for i in 1 2 3; do
    p 200 GET "/api/v1/dialogues?limit=1" "request $i of the burst" "${limited[@]}"
done
p 429 GET "/api/v1/dialogues?limit=1" "bucket empty" "${limited[@]}"
check_code rate_limited
check_header retry-after '^[1-9][0-9]*$'
p 200 GET /api/v1/health/live "public operations are not limited" "${limited[@]}"
p 200 GET /api/v1/dialogues "other keys have their own bucket" "${client[@]}"

# Preflights are generic (described in info.description, not operations of
# openapi.yaml), and Prism adds CORS headers of its own: sent direct.
echo "== CORS (sent direct)"
d 403 cors_forbidden OPTIONS /api/v1/dialogue/create "preflight, origin not listed" \
    -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: POST'
: >"$headers"
pre=$(curl -sS --max-time 60 -o "$body" -D "$headers" -w '%{http_code}' -X OPTIONS \
    -H 'Origin: https://app.example.com' -H 'Access-Control-Request-Method: POST' \
    -H 'Access-Control-Request-Headers: authorization, content-type, idempotency-key' \
    "$direct/api/v1/dialogue/create" 2>"$tmp/curl.err") || pre=000
check "preflight, origin listed, no key: 204" "status $pre" test "$pre" = 204
check_header access-control-allow-origin '^https://app\.example\.com$'
check_header access-control-allow-methods '^POST$'
check_header access-control-allow-headers 'Idempotency-Key'
check_header vary '^Origin$'
: >"$headers"
curl -sS --max-time 60 -o "$body" -D "$headers" -H 'Origin: https://app.example.com' \
    "$direct/api/v1/health/live" >/dev/null 2>&1
check_header access-control-allow-origin '^https://app\.example\.com$'
check_header access-control-expose-headers 'Retry-After'

# 6. Verdict.
echo
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "FAIL: the server is no longer running" >&2
    failures=$((failures + 1))
fi
if [ "$failures" -ne 0 ]; then
    echo "prism.sh: $failures of $total checks FAILED"
    show_logs
    exit 1
fi
echo "prism.sh: all $total checks passed"
exit 0
