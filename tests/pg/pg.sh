#!/bin/sh
# SPDX-License-Identifier: MIT
# A throwaway PostgreSQL server for the tests (docs/internals/store_pg.md):
#
#   tests/pg/pg.sh start DIR     initdb into DIR/data, start it on a Unix socket
#                                in DIR (no TCP port), print the DATABASE_URL
#   tests/pg/pg.sh stop DIR      stop it (fast) and remove DIR
#   tests/pg/pg.sh kill DIR      stop it at once (immediate: a crash), keep DIR
#   tests/pg/pg.sh restart DIR   start it again after a kill
#   tests/pg/pg.sh url DIR       print the DATABASE_URL only
#
# Exit 77 (the meson/automake "skip" code) when the server binaries are missing.
# initdb refuses to run as root: as root, DIR is given to the `postgres` system
# user that Debian's package creates and the binaries run as that user
# (runuser), so every parent of DIR must be searchable by others (o+x); as
# anyone else they run directly. The socket path DIR/.s.PGSQL.5432 must fit in
# 107 bytes. A failed start removes DIR.
set -eu

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 start|stop|kill|restart|url DIR" >&2
    exit 2
fi

# The newest installed version (Debian: /usr/lib/postgresql/<major>/bin), or PG_BIN.
find_bin() {
    if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then
        echo "$PG_BIN"
        return 0
    fi
    best=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] || continue
        v="${d%/bin}"
        v="${v##*/}"
        case "$v" in *[!0-9]*) continue ;; esac
        if [ -z "$best" ] || [ "$v" -gt "${best##*:}" ]; then
            best="$d:$v"
        fi
    done
    [ -n "$best" ] || return 1
    echo "${best%:*}"
}

bin="$(find_bin)" || {
    echo "pg.sh: no PostgreSQL server binaries (apt-get install postgresql), skipping" >&2
    exit 77
}

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

url() {
    echo "host=$dir dbname=postgres user=cca"
}

start_server() {
    # -k: the socket directory; no TCP listener; fsync stays on (durability is
    # what the tests check).
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
        -o "-k $dir -c listen_addresses='' -c max_connections=40" start >/dev/null
}

case "$cmd" in
    start)
        if [ -e "$dir/data" ]; then
            echo "pg.sh: $dir/data exists" >&2
            exit 1
        fi
        mkdir -p "$dir"
        if [ "$(id -u)" -eq 0 ]; then
            if ! id postgres >/dev/null 2>&1; then
                echo "pg.sh: running as root and no 'postgres' user to run initdb as, skipping" >&2
                exit 77
            fi
            chown postgres: "$dir"
            chmod 0700 "$dir"
            if ! runuser -u postgres -- test -w "$dir"; then
                echo "pg.sh: user postgres cannot reach $dir: every parent must be searchable (chmod o+x)" >&2
                rm -rf "$dir"
                exit 1
            fi
        fi
        ok=0
        if as_owner "$bin/initdb" -D "$dir/data" --auth=trust --username=cca \
            --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 && start_server; then
            ok=1
        fi
        if [ "$ok" -ne 1 ]; then
            echo "pg.sh: could not start a server in $dir:" >&2
            tail -n 20 "$dir/initdb.log" "$dir/log" >&2 2>/dev/null || true
            as_owner "$bin/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true
            rm -rf "$dir"
            exit 1
        fi
        url
        ;;
    restart)
        start_server
        url
        ;;
    url)
        url
        ;;
    kill)
        as_owner "$bin/pg_ctl" -D "$dir/data" stop -m immediate -w >/dev/null 2>&1 || true
        ;;
    stop)
        if [ -e "$dir/data/postmaster.pid" ]; then
            as_owner "$bin/pg_ctl" -D "$dir/data" stop -m fast -w >/dev/null 2>&1 ||
                as_owner "$bin/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true
        fi
        rm -rf "$dir"
        ;;
    *)
        echo "usage: $0 start|stop|kill|restart|url DIR" >&2
        exit 2
        ;;
esac
