#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The curl walk-through of docs/OPERATORS.md, rerunnable: starts the server on
# a free port with a temporary storage directory, runs each step and prints
# the command and its answer (pretty-printed with python3 -m json.tool).
#   docs/examples/operators-walkthrough.sh [path/to/call-center-agents]
set -euo pipefail
bin="${1:-build/call-center-agents}"
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
OPERATOR_SECRET=s3cret-shift OPERATOR_PINS=4821 HOST=127.0.0.1 PORT="$port" \
    DIALOGS_STORAGE_PATH="$dir/dialogs" LOG_LEVEL=warning "$bin" 2>"$dir/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/api/v1/health/live" >/dev/null && break; sleep 0.1; done
B="http://localhost:8000/api/v1" # what the transcript shows
U="http://127.0.0.1:$port/api/v1"
step() { # step TITLE METHOD PATH [BODY] [TOKEN]
    local title="$1" method="$2" path="$3" body="${4:-}" token="${5:-}" args=()
    echo "### $title"
    echo
    echo '```'
    printf '$ curl -s -X %s %s%s' "$method" "$B" "$path"
    [ -n "$token" ] && printf ' -H "Authorization: Bearer $%s"' "$6"
    [ -n "$body" ] && printf " \\\\\n    -H 'Content-Type: application/json' -d '%s'" "$body"
    echo
    [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' -d "$body")
    out="$(curl -s -w '\n%{http_code}' -X "$method" "${args[@]}" "$U$path")"
    code="${out##*$'\n'}"
    echo "HTTP $code"
    python3 -c 'import json,sys
d = json.loads(sys.argv[1])
if sys.argv[3]:  # FIELDS: show only these (dotted) fields
    sub = {}
    for path in sys.argv[3].split(","):
        v = d
        for k in path.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        sub[path] = v
    d = sub
lines = json.dumps(d, indent=4, ensure_ascii=False).splitlines()
n = int(sys.argv[2])
print("\n".join(lines[:n] + (["    …"] if len(lines) > n else [])))' "${out%$'\n'*}" "${LINES_MAX:-40}" "${FIELDS:-}"
    echo '```'
    echo
    last="${out%$'\n'*}"
}
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); 
for k in sys.argv[2].split("."): d=d[k]
print(d)' "$last" "$1"; }

step "Anna registers with the shared secret" POST /operators/register \
    '{"secret":"s3cret-shift","name":"Анна Петрова","languages":["ru","en"],"max_dialogs":1}'
TOKEN_A="$(field token)"; A="$(field operator_id)"
step "Boris registers with a PIN" POST /operators/register '{"pin":"4821","name":"Boris"}'
step "Anna goes available" PUT /operators/me/status '{"status":"available"}' "$TOKEN_A" TOKEN_A
step "Customer 1 opens a dialog" POST /dialogue/create '{"customer_info":{"name":"Иван"}}'
C1="$(field dialog_id)"
LINES_MAX=25 step "Customer 1 asks for a human: assigned to Anna" POST "/dialogue/$C1/message" \
    '{"message":"Позовите оператора, пожалуйста"}'
M1="$(field message_id)"
step "Customer 2 opens a dialog" POST /dialogue/create '{"customer_info":{"name":"John"}}'
C2="$(field dialog_id)"
LINES_MAX=25 step "Customer 2 asks for a person: Anna is full, so the queue" POST "/dialogue/$C2/message" \
    '{"message":"I want to talk to a human"}'
step "Customer 2's place in the queue" GET "/dialogue/$C2/queue"
step "The queue, as an operator sees it" GET /queue "" "$TOKEN_A" TOKEN_A
step "Anna replies to customer 1" POST "/dialogue/$C1/reply" \
    '{"message":"Здравствуйте, Иван! Я Анна, чем помочь?"}' "$TOKEN_A" TOKEN_A
step "Customer 1 polls for what came after their request" GET "/dialogue/$C1/messages?after=$M1"
LINES_MAX=25 step "Customer 1 writes again: stored for Anna, the AI stays silent (202)" POST "/dialogue/$C1/message" \
    '{"message":"Не приходит счёт за октябрь"}'
LINES_MAX=20 step "Anna closes; the queue head (customer 2) is hers at once" POST "/dialogue/$C1/close" \
    '{"reason":"resolved"}' "$TOKEN_A" TOKEN_A
step "Anna's dialogs now" GET /operators/me/dialogs "" "$TOKEN_A" TOKEN_A
step "Customer 1 rates the dialog" POST "/dialogue/$C1/rating" '{"score":5,"comment":"Быстро и по делу"}'
FIELDS=status,owner,metadata.transitions,rating LINES_MAX=80 \
    step "Customer 1's dialog: its owner and ownership history" GET "/dialogue/$C1" ""
FIELDS=messages LINES_MAX=80 step "Customer 2's messages: the queue notice, then Anna" GET "/dialogue/$C2" ""
