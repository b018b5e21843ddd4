/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL store (include/cca/store_pg.h, docs/internals/store_pg.md).
 *
 * Threads: the writer owns its connection and the job queue's batches, each
 * one transaction sent in libpq's pipeline mode (one round trip per batch of
 * up to CCA_STORE_PG_PIPELINE_MAX changes); it also probes the database when
 * idle, which is all health() looks at. Readers (cca_store_read from any
 * thread, and load) borrow one of the other connections under @rlock. Nothing
 * here logs: errors go back as cca_rc plus a message that never holds the
 * connection string.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cca/dialog.h"
#include "cca/mem.h"
#include "cca/metrics.h"
#include "cca/store_pg.h"

#include "store_pg_int.h"

/* Seconds libpq may take to connect, unless the connection string says. */
#define CONNECT_TIMEOUT_S "5"

/* The top-level members of a dialog in the order dialog.c makes them, for reads. */
static const char *const dialog_order[] = {
    "dialog_id",     "customer_id",  "customer_info", "status",     "assigned_agent",
    "current_agent", "priority",     "source",        "created_at", "updated_at",
    "closed_at",     "close_reason", "summary",       "messages",   "metadata",
};

/* ---- statements (constant text: every value is a parameter) ----------------------- */

/* $1 id, $2 status, $3 customer_id, $4 created ms, $5 updated ms, $6 messages kept
 * (rows at or past it go), $7 [[seq, message], ...] to write, $8 message_count,
 * $9 the document without its messages. */
static const char sql_dialog_put[] =
    "WITH del AS (DELETE FROM messages WHERE dialog_id = $1::uuid AND seq >= $6::int),"
    " ins AS (INSERT INTO messages (dialog_id, seq, msg)"
    "  SELECT $1::uuid, (e->>0)::int, e->1 FROM json_array_elements($7::json) AS e"
    "  ON CONFLICT (dialog_id, seq) DO UPDATE SET msg = EXCLUDED.msg)"
    " INSERT INTO dialogs (id, status, customer_id, created_at, updated_at,"
    "  message_count, doc)"
    " VALUES ($1::uuid, $2, $3, to_timestamp($4::bigint / 1000.0),"
    "  to_timestamp($5::bigint / 1000.0), $8::int, $9::json)"
    " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,"
    "  customer_id = EXCLUDED.customer_id, created_at = EXCLUDED.created_at,"
    "  updated_at = EXCLUDED.updated_at, message_count = EXCLUDED.message_count,"
    "  doc = EXCLUDED.doc";

static const char sql_dialog_get[] =
    "SELECT d.doc::text, d.message_count,"
    " (SELECT coalesce(json_agg(m.msg ORDER BY m.seq), '[]')::text"
    "  FROM messages m WHERE m.dialog_id = d.id)"
    " FROM dialogs d WHERE d.id = $1::uuid";

static const char sql_dialog_all[] =
    "SELECT d.id::text, d.doc::text, d.message_count,"
    " (SELECT coalesce(json_agg(m.msg ORDER BY m.seq), '[]')::text"
    "  FROM messages m WHERE m.dialog_id = d.id)"
    " FROM dialogs d ORDER BY d.id";

/* The other collections: one table each, same shape. Names are from this table only. */
struct coll_sql {
    const char *put;
    const char *get;
    const char *del;
    const char *all;
};

#define DOC_SQL(t)                                                                       \
    {                                                                                    \
        "INSERT INTO " t " (id, doc, updated_at) VALUES ($1::uuid, $2::json, now())"     \
        " ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, updated_at = "              \
        "EXCLUDED.updated_at",                                                           \
            "SELECT doc::text FROM " t " WHERE id = $1::uuid",                           \
            "DELETE FROM " t " WHERE id = $1::uuid",                                     \
            "SELECT id::text, doc::text FROM " t " ORDER BY id"                          \
    }

static const struct coll_sql coll_sql[CCA_STORE_COLL__COUNT] = {
    [CCA_STORE_DIALOGS] = {sql_dialog_put, sql_dialog_get,
                           "DELETE FROM dialogs WHERE id = $1::uuid", sql_dialog_all},
    [CCA_STORE_OPERATORS] = DOC_SQL("operators"),
    [CCA_STORE_CUSTOMERS] = DOC_SQL("customers"),
    [CCA_STORE_TELEGRAM] = DOC_SQL("telegram"),
};

/* Prepared statement names: "p<coll><kind>", kind one of "pgd" (put, get, del). */
static void stmt_name(enum cca_store_coll coll, char kind, char buf[8])
{
    (void)snprintf(buf, 8, "c%d%c", (int)coll, kind);
}

/* ---- state ------------------------------------------------------------------------- */

enum job_kind { JOB_COMMIT, JOB_REMOVE };

struct job {
    struct job *next;
    enum job_kind kind;
    enum cca_store_coll coll;
    char id[37];
    bool bad_id;     /* not a canonical UUID: failed without a query */
    json_t *old_doc; /* references of our own */
    json_t *new_doc;
    cca_store_done_fn done;
    void *ctx;
    /* The statement's parameters, made once by job_params (pv points into them). */
    char stmt[8];
    int npv;
    const char *pv[9];
    char *json[2]; /* JSON texts (ours) */
    char created[24], updated[24], count[16];
    size_t bytes; /* parameters sent */
    cca_rc rc;
    struct cca_error err;
};

struct pg_metrics {
    struct cca_hist batch_seconds; /* BEGIN .. COMMIT */
    struct cca_hist batch_size;
    struct cca_hist write_seconds; /* one change's statement */
    struct cca_hist read_seconds;  /* one read */
    struct cca_hist probe_seconds;
    _Atomic uint64_t batches_ok;
    _Atomic uint64_t batches_error;
    _Atomic uint64_t writes_ok;
    _Atomic uint64_t writes_error;
    _Atomic uint64_t reconnects;
    _Atomic uint64_t connect_errors;
    _Atomic uint64_t reads;
    _Atomic uint64_t read_errors;
};

struct pgstore {
    char *conninfo; /* secret */
    char *password; /* from conninfo, to scrub messages; may be NULL */
    char location[256];
    unsigned stmt_timeout_ms;

    /* The writer thread and its queue, under @lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head;
    struct job *tail;
    bool stop;
    pthread_t writer;
    bool writer_started;
    PGconn *wconn;        /* writer thread only (and new() before it starts) */
    unsigned backoff_ms;  /* writer only: the delay after the next failure */
    int64_t retry_at_us;  /* writer only: no connect before (cca_time_mono_us) */
    int64_t last_work_us; /* writer only: last batch or probe */
    bool ever_connected;  /* writer only */
    char epoch[24];       /* the instance_epoch our taking of the lock made (text) */

    /* Health, under @hlock. */
    pthread_mutex_t hlock;
    bool up;              /* the writer's connection is open */
    bool fenced;          /* another instance held the instance lock since we took it */
    int64_t ok_at_us;     /* last successful query of the writer */
    char last_error[160]; /* why the last one failed */

    /* The readers, under @rlock. */
    pthread_mutex_t rlock;
    pthread_cond_t rcond;
    PGconn **readers;
    bool *busy;
    unsigned nreaders;

    struct pg_metrics metrics;
};

/* ---- errors ------------------------------------------------------------------------ */

/*
 * A libpq message on one line, capped, with the password (if any) blotted out:
 * libpq does not print passwords, but a message quoting a malformed
 * connection string could.
 */
static void clean_msg(const struct pgstore *s, const char *in, char *out, size_t size)
{
    size_t n = 0;

    if (in == NULL)
        in = "";
    for (; *in != '\0' && n + 1 < size; in++) {
        if (s != NULL && s->password != NULL && s->password[0] != '\0' &&
            strncmp(in, s->password, strlen(s->password)) == 0) {
            for (const char *r = "***"; *r != '\0' && n + 1 < size; r++)
                out[n++] = *r;
            in += strlen(s->password) - 1;
            continue;
        }
        out[n++] = (*in == '\n' || *in == '\r' || *in == '\t') ? ' ' : *in;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static cca_rc conn_error(const struct pgstore *s, PGconn *c, const char *what,
                         struct cca_error *err)
{
    char msg[140];

    clean_msg(s, c != NULL ? PQerrorMessage(c) : "out of memory", msg, sizeof(msg));
    return cca_error_set(err, CCA_ERR_IO, "database %s: %s", what, msg);
}

static cca_rc result_error(const struct pgstore *s, const PGresult *r, const char *what,
                           struct cca_error *err)
{
    char msg[140];

    clean_msg(s, r != NULL ? PQresultErrorMessage(r) : "no result", msg, sizeof(msg));
    return cca_error_set(err, CCA_ERR_IO, "database %s: %s", what, msg);
}

/* The SQLSTATE of @r ("" when none: the connection went away before an answer). */
static const char *sqlstate(const PGresult *r)
{
    const char *st = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    return st != NULL ? st : "";
}

/* A failure that is the connection's, not the statement's: reset it. */
static bool conn_lost(PGconn *c, const PGresult *r)
{
    const char *st = sqlstate(r);

    return c == NULL || PQstatus(c) != CONNECTION_OK || st[0] == '\0' ||
           strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0 ||
           strncmp(st, "53", 2) == 0;
}

/* A failure caused by the data of one change (another change may succeed). */
static bool data_error(const PGresult *r)
{
    const char *st = sqlstate(r);

    return strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0;
}

/* ---- connections ------------------------------------------------------------------- */

static bool exec_ok(PGconn *c, const char *sql, PGresult **ret)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (ret != NULL)
        *ret = r;
    else
        PQclear(r);
    return ok;
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Open one connection: UTF-8, the statement timeout. New, or NULL with @err. */
static PGconn *connect_one(const struct pgstore *s, struct cca_error *err)
{
    /*
     * Ours first: with expand_dbname, the string's own settings win over them.
     * Over TCP, keepalives and tcp_user_timeout bound how long a query can
     * wait on a peer that vanished without a reset (the statement_timeout is
     * the server's, it cannot help then); a Unix socket ignores them.
     */
    const char *const keys[] = {"connect_timeout",
                                "application_name",
                                "keepalives",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                "tcp_user_timeout",
                                "dbname",
                                NULL};
    const char *const vals[] = {
        CONNECT_TIMEOUT_S, "call-center-agents", "1", "10", "5", "3",
        "15000",           s->conninfo,          NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    const char *pv[1];
    char timeout[16];
    PGresult *r;

    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        (void)conn_error(s, c, "connection failed", err);
        PQfinish(c);
        return NULL;
    }
    /* Notices ("relation ... already exists, skipping") are not ours to print. */
    (void)PQsetNoticeProcessor(c, ignore_notice, NULL);
    if (PQsetClientEncoding(c, "UTF8") != 0) {
        (void)conn_error(s, c, "cannot use UTF8", err);
        PQfinish(c);
        return NULL;
    }
    (void)snprintf(timeout, sizeof(timeout), "%u", s->stmt_timeout_ms);
    pv[0] = timeout;
    r = PQexecParams(c, "SELECT set_config('statement_timeout', $1, false)", 1, NULL, pv,
                     NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        (void)result_error(s, r, "cannot set statement_timeout", err);
        PQclear(r);
        PQfinish(c);
        return NULL;
    }
    PQclear(r);
    return c;
}

/* Prepare every statement on @c (after the migrations: the tables must exist). */
static cca_rc prepare_all(const struct pgstore *s, PGconn *c, struct cca_error *err)
{
    static const char kinds[] = "pgd";

    for (int coll = 0; coll < CCA_STORE_COLL__COUNT; coll++) {
        for (int k = 0; kinds[k] != '\0'; k++) {
            const char *sql = kinds[k] == 'p'   ? coll_sql[coll].put
                              : kinds[k] == 'g' ? coll_sql[coll].get
                                                : coll_sql[coll].del;
            char name[8];
            PGresult *r;

            stmt_name((enum cca_store_coll)coll, kinds[k], name);
            r = PQprepare(c, name, sql, 0, NULL);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                cca_rc rc = result_error(s, r, "cannot prepare a statement", err);

                PQclear(r);
                return rc;
            }
            PQclear(r);
        }
    }
    return CCA_OK;
}

/* ---- migrations -------------------------------------------------------------------- */

unsigned cca_store_pg_schema_version(void)
{
    return cca_store_pg_migrations[cca_store_pg_migrations_n - 1].version;
}

/* Apply what is missing on @c, in one transaction under the advisory lock. */
static cca_rc migrate_conn(const struct pgstore *s, PGconn *c, unsigned *ret_from,
                           unsigned *ret_to, struct cca_error *err)
{
    const unsigned known = cca_store_pg_schema_version();
    const char *enc = PQparameterStatus(c, "server_encoding");
    char key[32];
    const char *pv[2];
    PGresult *r = NULL;
    unsigned cur = 0;
    cca_rc rc = CCA_OK;

    if (enc == NULL || strcmp(enc, "UTF8") != 0)
        return cca_error_set(err, CCA_ERR_CONFLICT,
                             "database encoding is %s; the store needs UTF8 "
                             "(CREATE DATABASE ... ENCODING 'UTF8')",
                             enc != NULL ? enc : "unknown");
    if (!exec_ok(c, "BEGIN", &r)) {
        rc = result_error(s, r, "cannot begin the migration", err);
        goto out;
    }
    PQclear(r);
    (void)snprintf(key, sizeof(key), "%lld", (long long)CCA_STORE_PG_LOCK_KEY);
    pv[0] = key;
    r = PQexecParams(c, "SELECT pg_advisory_xact_lock($1::bigint)", 1, NULL, pv, NULL,
                     NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = result_error(s, r, "cannot take the migration lock", err);
        goto out;
    }
    PQclear(r);
    if (!exec_ok(c,
                 "CREATE TABLE IF NOT EXISTS schema_version ("
                 " version integer PRIMARY KEY,"
                 " description text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 &r)) {
        rc = result_error(s, r, "cannot create schema_version", err);
        goto out;
    }
    PQclear(r);
    if (!exec_ok(c, "SELECT coalesce(max(version), 0) FROM schema_version", &r) ||
        PQntuples(r) != 1) {
        rc = result_error(s, r, "cannot read schema_version", err);
        goto out;
    }
    cur = (unsigned)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    r = NULL;
    if (cur > known) {
        rc = cca_error_set(err, CCA_ERR_CONFLICT,
                           "database schema version %u is newer than this binary knows "
                           "(%u): run a newer call-center-agents, or point DATABASE_URL "
                           "at another database",
                           cur, known);
        goto out;
    }
    for (unsigned i = 0; i < cca_store_pg_migrations_n; i++) {
        const struct cca_store_pg_migration *m = &cca_store_pg_migrations[i];
        char ver[16];

        if (m->version <= cur)
            continue;
        if (!exec_ok(c, m->sql, &r)) {
            char why[100];

            clean_msg(s, PQresultErrorMessage(r), why, sizeof(why));
            rc = cca_error_set(err, CCA_ERR_IO, "database migration %u (%s) failed: %s",
                               m->version, m->description, why);
            goto out;
        }
        PQclear(r);
        (void)snprintf(ver, sizeof(ver), "%u", m->version);
        pv[0] = ver;
        pv[1] = m->description;
        r = PQexecParams(c,
                         "INSERT INTO schema_version (version, description)"
                         " VALUES ($1::int, $2)",
                         2, NULL, pv, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = result_error(s, r, "cannot record a migration", err);
            goto out;
        }
        PQclear(r);
    }
    r = NULL;
    if (!exec_ok(c, "COMMIT", &r)) {
        rc = result_error(s, r, "cannot commit the migration", err);
        goto out;
    }
    if (ret_from != NULL)
        *ret_from = cur;
    if (ret_to != NULL)
        *ret_to = known;
out:
    PQclear(r);
    if (rc != CCA_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

/* ---- one server per database ------------------------------------------------------- */

/*
 * Take the instance lock (a session advisory lock, held while @c lives) within
 * @wait_ms: only its holder writes, so of several instances on one database
 * one is active and the others wait as standbys (main.c, standby.h); held by
 * another, CCA_ERR_UNAVAILABLE. A crashed holder's session ends when its
 * connection does: at once for a dead process, after the server's TCP
 * keepalive for a vanished host (the holder is named in the message, for
 * pg_terminate_backend).
 */
static cca_rc take_instance_lock(const struct pgstore *s, PGconn *c, unsigned wait_ms,
                                 struct cca_error *err)
{
    char key[32];
    const char *pv[1] = {key};
    int64_t until = cca_time_mono_ms() + wait_ms;
    PGresult *r;
    cca_rc rc;

    (void)snprintf(key, sizeof(key), "%lld", (long long)CCA_STORE_PG_INSTANCE_KEY);
    for (;;) {
        struct timespec ts = {0, 200 * 1000000L};
        bool got;

        r = PQexecParams(c, "SELECT pg_try_advisory_lock($1::bigint)", 1, NULL, pv, NULL,
                         NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = result_error(s, r, "cannot take the instance lock", err);
            PQclear(r);
            return rc;
        }
        got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        if (got)
            return CCA_OK;
        if (cca_time_mono_ms() >= until)
            break;
        (void)nanosleep(&ts, NULL);
    }
    /* Who holds it: for the message (and pg_terminate_backend if it is a dead host). */
    r = PQexecParams(c,
                     "SELECT a.pid, coalesce(host(a.client_addr), 'local'),"
                     " a.backend_start::text FROM pg_locks l"
                     " JOIN pg_stat_activity a ON a.pid = l.pid"
                     " WHERE l.locktype = 'advisory' AND l.granted"
                     " AND l.objid = ($1::bigint & 4294967295)::oid"
                     " AND l.classid = ($1::bigint >> 32)::oid AND l.objsubid = 1",
                     1, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
        rc = cca_error_set(err, CCA_ERR_UNAVAILABLE,
                           "another call-center-agents instance is active on this "
                           "database (backend pid %.12s from %.40s since %.32s)",
                           PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    else
        rc = cca_error_set(err, CCA_ERR_UNAVAILABLE,
                           "another call-center-agents instance is active on this "
                           "database");
    PQclear(r);
    return rc;
}

/* ---- documents ↔ rows -------------------------------------------------------------- */

static char *dump(json_t *v, size_t *ret_len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    if (s == NULL)
        s = cca_xstrdup("null"); /* only out of memory; cca_xmalloc aborts first */
    if (ret_len != NULL)
        *ret_len = strlen(s);
    return s;
}

/*
 * U+0000 in a string: jansson reads it only when asked (JSON_ALLOW_NUL), which
 * the load and reads do not, and the request parsers never let one in. Such a
 * change is refused alone, before the batch, rather than stored unreadable.
 */
static bool has_nul(const char *json)
{
    /* A \u0000 escape, unless its backslash is itself escaped: "\\\\u0000" (an odd
     * number of backslashes before it) is a backslash and the text u0000. */
    for (const char *p = strstr(json, "\\u0000"); p != NULL;
         p = strstr(p + 1, "\\u0000")) {
        size_t n = 0;

        while (p - n > json && *(p - n - 1) == '\\')
            n++;
        if (n % 2 == 0)
            return true;
    }
    return false;
}

/* The milliseconds of an RFC 3339 member of @doc as text into @buf, or NULL. */
static const char *time_param(json_t *doc, const char *key, char buf[24])
{
    int64_t ms;

    if (!cca_time_parse(json_string_value(json_object_get(doc, key)), &ms))
        return NULL;
    (void)snprintf(buf, 24, "%" PRId64, ms);
    return buf;
}

/* The string member @key of @doc, or NULL (SQL NULL). */
static const char *str_param(json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

/*
 * The messages of @new_doc to write, as [[seq, message], ...] (new): those
 * beyond @old_doc's, and earlier ones that changed (dialog.c only appends, so
 * normally none; compared by pointer first: copy-on-write versions share
 * their unchanged messages). Without @old_doc every message is written.
 */
static json_t *changed_messages(json_t *old_doc, json_t *new_doc)
{
    json_t *om = old_doc != NULL ? json_object_get(old_doc, "messages") : NULL;
    json_t *nm = json_object_get(new_doc, "messages");
    size_t on = json_is_array(om) ? json_array_size(om) : 0;
    size_t nn = json_is_array(nm) ? json_array_size(nm) : 0;
    json_t *out = json_array();

    for (size_t i = 0; i < nn; i++) {
        json_t *n = json_array_get(nm, i);

        if (i < on) {
            json_t *o = json_array_get(om, i);

            if (o == n || json_equal(o, n))
                continue;
        }
        json_t *pair = json_array();

        (void)json_array_append_new(pair, json_integer((json_int_t)i));
        (void)json_array_append(pair, n);
        (void)json_array_append_new(out, pair);
    }
    return out;
}

/*
 * Make the statement and parameters of @j, once (a retry sends them again),
 * on the writer thread. False, with j->rc and j->err, for a change that
 * cannot be stored whatever the database says: an id that is not a canonical
 * UUID, or a U+0000 in a string (has_nul) of what would be sent. For
 * a dialog that is only its changed messages and the rest of the document:
 * the unchanged messages went in, checked, with an earlier change.
 */
static bool job_params(struct job *j)
{
    size_t l0 = 0, l1 = 0;

    if (j->bad_id) {
        j->rc = cca_error_set(&j->err, CCA_ERR_INVALID, "%s id is not a canonical UUID",
                              cca_store_coll_name(j->coll));
        return false;
    }
    j->pv[0] = j->id;
    if (j->kind == JOB_REMOVE) {
        stmt_name(j->coll, 'd', j->stmt);
        j->npv = 1;
    } else if (j->coll == CCA_STORE_DIALOGS) {
        json_t *rest = json_copy(j->new_doc); /* shallow */
        json_t *msgs = json_object_get(j->new_doc, "messages");
        json_t *changed = changed_messages(j->old_doc, j->new_doc);

        (void)json_object_del(rest, "messages");
        j->json[0] = dump(changed, &l0);
        j->json[1] = dump(rest, &l1);
        json_decref(changed);
        json_decref(rest);
        (void)snprintf(j->count, sizeof(j->count), "%zu", json_array_size(msgs));
        j->pv[1] = str_param(j->new_doc, "status");
        j->pv[2] = str_param(j->new_doc, "customer_id");
        j->pv[3] = time_param(j->new_doc, "created_at", j->created);
        j->pv[4] = time_param(j->new_doc, "updated_at", j->updated);
        j->pv[5] = j->count; /* message rows kept: those below it */
        j->pv[6] = j->json[0];
        j->pv[7] = json_is_array(msgs) ? j->count : NULL;
        j->pv[8] = j->json[1];
        stmt_name(j->coll, 'p', j->stmt);
        j->npv = 9;
    } else {
        j->json[0] = dump(j->new_doc, &l0);
        j->pv[1] = j->json[0];
        stmt_name(j->coll, 'p', j->stmt);
        j->npv = 2;
    }
    j->bytes = l0 + l1;
    if ((j->json[0] != NULL && has_nul(j->json[0])) ||
        (j->json[1] != NULL && has_nul(j->json[1]))) {
        j->rc = cca_error_set(&j->err, CCA_ERR_IO,
                              "%s %s holds U+0000, which the store does not keep",
                              cca_store_coll_name(j->coll), j->id);
        return false;
    }
    return true;
}

/* Queue @j on @c in pipeline mode (its result is read later, in order). */
static bool send_job(PGconn *c, const struct job *j)
{
    return PQsendQueryPrepared(c, j->stmt, j->npv, j->pv, NULL, NULL, 0) == 1;
}

/* ---- the writer -------------------------------------------------------------------- */

static void health_ok(struct pgstore *s)
{
    pthread_mutex_lock(&s->hlock);
    s->up = true;
    s->ok_at_us = cca_time_mono_us();
    s->last_error[0] = '\0';
    pthread_mutex_unlock(&s->hlock);
}

static void health_fail(struct pgstore *s, const struct cca_error *err)
{
    pthread_mutex_lock(&s->hlock);
    s->up = s->wconn != NULL;
    (void)snprintf(s->last_error, sizeof(s->last_error), "%s", err->msg);
    pthread_mutex_unlock(&s->hlock);
}

/* Drop the writer's connection; the next connect waits the backoff. */
static void writer_reset(struct pgstore *s)
{
    PQfinish(s->wconn);
    s->wconn = NULL;
    s->retry_at_us = cca_time_mono_us() + (int64_t)s->backoff_ms * 1000;
    s->backoff_ms = s->backoff_ms * 2 > CCA_STORE_PG_BACKOFF_MAX_MS
                        ? CCA_STORE_PG_BACKOFF_MAX_MS
                        : s->backoff_ms * 2;
    pthread_mutex_lock(&s->hlock);
    s->up = false;
    pthread_mutex_unlock(&s->hlock);
}

/*
 * The fencing token. Every time a store takes the instance lock at its start
 * (cca_store_pg_new: a server, or an import) it adds one to instance_epoch
 * and keeps the value. A writer that lost its session and takes the lock
 * again reads it back: another value means another instance held the lock
 * meanwhile, and may have written, so everything this one holds in memory is
 * stale, even if that instance is gone again.
 */
static cca_rc epoch_take(const struct pgstore *s, PGconn *c, char out[24],
                         struct cca_error *err)
{
    PGresult *r =
        PQexec(c, "UPDATE instance_epoch SET n = n + 1 WHERE id = 1 RETURNING n");
    cca_rc rc = CCA_OK;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        rc = result_error(s, r, "cannot advance the instance epoch", err);
    else
        (void)snprintf(out, 24, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

/* CCA_OK when the epoch is still @s's; CCA_ERR_UNAVAILABLE when another took it. */
static cca_rc epoch_check(const struct pgstore *s, PGconn *c, struct cca_error *err)
{
    PGresult *r = PQexec(c, "SELECT n FROM instance_epoch WHERE id = 1");
    cca_rc rc = CCA_OK;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        rc = result_error(s, r, "cannot read the instance epoch", err);
    else if (strcmp(PQgetvalue(r, 0, 0), s->epoch) != 0)
        rc = cca_error_set(err, CCA_ERR_UNAVAILABLE,
                           "another call-center-agents instance held this database "
                           "while this one was cut off (instance epoch %.20s, ours %s)",
                           PQgetvalue(r, 0, 0), s->epoch);
    PQclear(r);
    return rc;
}

/* The writer's connection, (re)opened when the backoff allows. */
static cca_rc writer_conn(struct pgstore *s, struct cca_error *err)
{
    PGconn *c;
    cca_rc rc;

    if (s->wconn != NULL && PQstatus(s->wconn) == CONNECTION_OK)
        return CCA_OK;
    if (s->wconn != NULL)
        writer_reset(s);
    if (s->fenced) /* for good: never take the lock again (health says why) */
        return cca_error_set(
            err, CCA_ERR_IO,
            "fenced: another call-center-agents instance took this database over");
    if (cca_time_mono_us() < s->retry_at_us) {
        pthread_mutex_lock(&s->hlock);
        rc = cca_error_set(err, CCA_ERR_IO, "%s",
                           s->last_error[0] ? s->last_error : "database unreachable");
        pthread_mutex_unlock(&s->hlock);
        return rc;
    }
    c = connect_one(s, err);
    if (c == NULL) {
        atomic_fetch_add_explicit(&s->metrics.connect_errors, 1, memory_order_relaxed);
        writer_reset(s);
        return CCA_ERR_IO;
    }
    rc = prepare_all(s, c, err);
    if (rc == CCA_OK)
        rc = take_instance_lock(s, c, 0, err); /* lost with the old session */
    if (rc == CCA_OK)
        rc = epoch_check(s, c, err); /* nobody else held it meanwhile */
    if (rc != CCA_OK) {
        PQfinish(c); /* releases the lock if we had it */
        writer_reset(s);
        if (rc != CCA_ERR_UNAVAILABLE)
            return rc;
        /* Another instance holds or held it while we were cut off: stop for good. */
        pthread_mutex_lock(&s->hlock);
        s->fenced = true;
        pthread_mutex_unlock(&s->hlock);
        health_fail(s, err);
        return CCA_ERR_IO;
    }
    s->wconn = c;
    s->backoff_ms = CCA_STORE_PG_BACKOFF_MIN_MS;
    if (s->ever_connected)
        atomic_fetch_add_explicit(&s->metrics.reconnects, 1, memory_order_relaxed);
    s->ever_connected = true;
    health_ok(s);
    return CCA_OK;
}

/*
 * Send one pipeline segment: BEGIN if @begin, then the changes from *@jp
 * that were not refused early (only *@jp if @single), at most
 * CCA_STORE_PG_PIPELINE_MAX, then COMMIT if none is left, then the sync
 * point. *@jp moves past what was sent. False when libpq could not send
 * (the connection).
 */
static bool send_segment(PGconn *c, bool begin, bool single, struct job **jp,
                         unsigned *ret_nwrites, bool *ret_commit)
{
    struct job *j = *jp;
    unsigned n = 0;

    if (begin && PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1)
        return false;
    for (; j != NULL && n < CCA_STORE_PG_PIPELINE_MAX; j = single ? NULL : j->next) {
        if (j->rc != CCA_OK)
            continue;
        if (!send_job(c, j))
            return false;
        n++;
    }
    while (j != NULL && j->rc != CCA_OK) /* refused early: no segment for them */
        j = j->next;
    *jp = j;
    *ret_nwrites = n;
    *ret_commit = j == NULL;
    if (*ret_commit && PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) != 1)
        return false;
    return PQpipelineSync(c) == 1;
}

/*
 * Read the results of one pipeline segment, in the order it was sent: BEGIN
 * if @begin, @nwrites changes, COMMIT if @commit, then the sync point. After
 * a failure the server skips the rest of the segment (PGRES_PIPELINE_ABORTED)
 * and the transaction is aborted. Returns CCA_OK when every step succeeded;
 * else the first failure in @err, with *ret_data when it was a change's data
 * (class 22/23) and *ret_lost when the connection is the cause (reading stops
 * there: no more results will come).
 */
static cca_rc read_segment(struct pgstore *s, PGconn *c, int64_t t0, bool begin,
                           unsigned nwrites, bool commit, struct cca_error *err,
                           bool *ret_data, bool *ret_lost)
{
    unsigned n = (begin ? 1 : 0) + nwrites + (commit ? 1 : 0);
    cca_rc rc = CCA_OK;
    PGresult *r;

    for (unsigned i = 0; i < n; i++) {
        bool write = !(begin && i == 0) && !(commit && i == n - 1);
        const char *what = write             ? "write failed"
                           : begin && i == 0 ? "BEGIN failed"
                                             : "COMMIT failed";
        ExecStatusType st;

        r = PQgetResult(c);
        st = PQresultStatus(r); /* PGRES_FATAL_ERROR for NULL */
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && rc == CCA_OK) {
            rc = result_error(s, r, what, err);
            *ret_data = write && data_error(r);
        }
        if (write) /* a change: from the segment's send to its result */
            cca_hist_observe_us(&s->metrics.write_seconds, cca_time_mono_us() - t0);
        if (r == NULL || (st == PGRES_FATAL_ERROR && conn_lost(c, r))) {
            PQclear(r);
            goto lost;
        }
        PQclear(r);
        r = PQgetResult(c); /* the NULL that ends each statement's results */
        if (r != NULL) {
            PQclear(r);
            if (rc == CCA_OK)
                rc = cca_error_set(err, CCA_ERR_IO, "database %s: unexpected result",
                                   what);
            goto lost;
        }
    }
    r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
        if (rc == CCA_OK)
            rc = result_error(s, r, "pipeline sync failed", err);
        PQclear(r);
        goto lost;
    }
    PQclear(r);
    return rc;
lost:
    *ret_data = false;
    *ret_lost = true;
    return rc;
}

/*
 * Run @jobs (those not refused early; only the first if @single) in one
 * transaction, in pipeline mode: BEGIN, one statement per change and COMMIT
 * are sent together and their results read after one round trip (a batch
 * larger than CCA_STORE_PG_PIPELINE_MAX changes takes one round trip per
 * that many, still one transaction). Returns CCA_OK once COMMIT succeeded;
 * else the error in @err, and *ret_data true when a change's data was the
 * cause (the connection is fine, the transaction rolled back).
 */
static cca_rc run_transaction(struct pgstore *s, struct job *jobs, bool single,
                              struct cca_error *err, bool *ret_data)
{
    PGconn *c = s->wconn;
    struct job *j = jobs;
    bool begin = true, lost = false;
    cca_rc rc = CCA_OK;

    *ret_data = false;
    if (PQenterPipelineMode(c) != 1) {
        rc = conn_error(s, c, "cannot enter pipeline mode", err);
        lost = true;
        goto out;
    }
    while (rc == CCA_OK) {
        int64_t t0 = cca_time_mono_us();
        unsigned nwrites;
        bool commit;

        if (!send_segment(c, begin, single, &j, &nwrites, &commit)) {
            rc = conn_error(s, c, "write failed", err);
            lost = true;
            break;
        }
        rc = read_segment(s, c, t0, begin, nwrites, commit, err, ret_data, &lost);
        if (commit || lost)
            break;
        begin = false;
    }
    if (!lost && PQexitPipelineMode(c) != 1) {
        if (rc == CCA_OK)
            rc = conn_error(s, c, "cannot leave pipeline mode", err);
        lost = true;
    }
out:
    if (rc != CCA_OK && (lost || PQstatus(c) != CONNECTION_OK)) {
        *ret_data = false;
        writer_reset(s);
    } else if (rc != CCA_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
        PQclear(PQexec(c, "ROLLBACK"));
    }
    return rc;
}

static void run_batch(struct pgstore *s, struct job *batch)
{
    struct cca_error err = {0};
    unsigned n = 0, live = 0;
    int64_t t0 = cca_time_mono_us();
    bool data = false;
    cca_rc rc = CCA_OK;

    for (struct job *j = batch; j != NULL; j = j->next) {
        n++;
        if (job_params(j))
            live++;
    }
    if (live > 0) {
        rc = writer_conn(s, &err);
        if (rc == CCA_OK)
            rc = run_transaction(s, batch, false, &err, &data);
        if (rc != CCA_OK && data && s->wconn != NULL) {
            /* One change's data: the others on their own, so one bad change fails alone.
             */
            for (struct job *j = batch; j != NULL; j = j->next) {
                bool d2;

                if (j->rc == CCA_OK && s->wconn != NULL &&
                    run_transaction(s, j, true, &j->err, &d2) != CCA_OK)
                    j->rc = CCA_ERR_IO;
                else if (j->rc == CCA_OK && s->wconn == NULL)
                    j->rc = cca_error_set(&j->err, CCA_ERR_IO, "%s", err.msg);
            }
            rc = CCA_OK;
        } else if (rc != CCA_OK) {
            for (struct job *j = batch; j != NULL; j = j->next) {
                if (j->rc == CCA_OK) {
                    j->rc = rc == CCA_ERR_INVALID ? CCA_ERR_IO : rc;
                    j->err = err;
                    j->err.code = j->rc;
                }
            }
        }
        cca_hist_observe_us(&s->metrics.batch_seconds, cca_time_mono_us() - t0);
        cca_hist_observe(&s->metrics.batch_size, live);
        atomic_fetch_add_explicit(rc == CCA_OK ? &s->metrics.batches_ok
                                               : &s->metrics.batches_error,
                                  1, memory_order_relaxed);
        if (rc == CCA_OK)
            health_ok(s);
        else
            health_fail(s, &err);
    }
    s->last_work_us = cca_time_mono_us();
    for (struct job *j = batch, *next; j != NULL; j = next) {
        next = j->next;
        atomic_fetch_add_explicit(j->rc == CCA_OK ? &s->metrics.writes_ok
                                                  : &s->metrics.writes_error,
                                  1, memory_order_relaxed);
        j->done(j->ctx, j->rc, j->rc == CCA_OK ? j->bytes : 0, &j->err);
        json_decref(j->old_doc);
        json_decref(j->new_doc);
        free(j->json[0]);
        free(j->json[1]);
        free(j);
    }
}

/* Idle: one SELECT 1 (or a reconnection when the backoff allows). */
static void probe(struct pgstore *s)
{
    struct cca_error err = {0};
    int64_t t0 = cca_time_mono_us();
    PGresult *r;

    s->last_work_us = t0;
    if (writer_conn(s, &err) != CCA_OK) {
        health_fail(s, &err);
        return;
    }
    r = PQexecParams(s->wconn, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0);
    cca_hist_observe_us(&s->metrics.probe_seconds, cca_time_mono_us() - t0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        health_ok(s);
    } else {
        (void)result_error(s, r, "probe failed", &err);
        if (conn_lost(s->wconn, r))
            writer_reset(s);
        health_fail(s, &err);
    }
    PQclear(r);
}

static void *writer_main(void *arg)
{
    struct pgstore *s = arg;

    (void)pthread_setname_np(pthread_self(), "cca-pg-write"); /* top -H, perf, gdb */

    for (;;) {
        struct job *batch;
        bool stop;

        pthread_mutex_lock(&s->lock);
        while (s->head == NULL && !s->stop) {
            int64_t due = s->last_work_us + (int64_t)CCA_STORE_PG_PROBE_MS * 1000;
            int64_t wait_us = due - cca_time_mono_us();
            struct timespec ts;

            if (wait_us <= 0)
                break;
            (void)clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += wait_us / 1000000;
            ts.tv_nsec += (long)(wait_us % 1000000) * 1000;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            (void)pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        }
        batch = s->head;
        s->head = s->tail = NULL;
        stop = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (batch != NULL)
            run_batch(s, batch);
        else if (stop)
            break; /* stop requested and nothing left */
        else
            probe(s);
    }
    return NULL;
}

static void enqueue(struct pgstore *s, struct job *j)
{
    pthread_mutex_lock(&s->lock);
    if (s->tail != NULL)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static struct job *job_new(enum job_kind kind, enum cca_store_coll coll, const char *id,
                           cca_store_done_fn done, void *ctx)
{
    struct job *j = cca_xcalloc(1, sizeof(*j));
    char canon[37];

    j->kind = kind;
    j->coll = coll;
    j->bad_id = (unsigned)coll >= CCA_STORE_COLL__COUNT || id == NULL ||
                !cca_uuid_canonical(id, canon) || strcmp(canon, id) != 0;
    if (!j->bad_id)
        memcpy(j->id, canon, sizeof(j->id));
    else
        j->coll = CCA_STORE_DIALOGS; /* for the message only */
    j->done = done;
    j->ctx = ctx;
    return j;
}

static void pg_commit(void *impl, enum cca_store_coll coll, const char *id,
                      json_t *old_doc, json_t *new_doc, cca_store_done_fn done, void *ctx)
{
    struct job *j = job_new(JOB_COMMIT, coll, id, done, ctx);

    j->old_doc = json_incref(old_doc);
    j->new_doc = json_incref(new_doc);
    enqueue(impl, j);
}

static void pg_remove(void *impl, enum cca_store_coll coll, const char *id,
                      cca_store_done_fn done, void *ctx)
{
    enqueue(impl, job_new(JOB_REMOVE, coll, id, done, ctx));
}

/* ---- readers ----------------------------------------------------------------------- */

/* Borrow a reader connection (waits for a free one); its index in *ret_i. */
static cca_rc reader_take(struct pgstore *s, unsigned *ret_i, struct cca_error *err)
{
    unsigned i;
    bool up;

    pthread_mutex_lock(&s->rlock);
    for (;;) {
        for (i = 0; i < s->nreaders && s->busy[i]; i++)
            ;
        if (i < s->nreaders)
            break;
        pthread_cond_wait(&s->rcond, &s->rlock);
    }
    s->busy[i] = true;
    pthread_mutex_unlock(&s->rlock);
    if (s->readers[i] != NULL && PQstatus(s->readers[i]) == CONNECTION_OK) {
        *ret_i = i;
        return CCA_OK;
    }
    PQfinish(s->readers[i]);
    s->readers[i] = NULL;
    pthread_mutex_lock(&s->hlock);
    up = s->up;
    pthread_mutex_unlock(&s->hlock);
    if (up) {
        /* The writer reaches the database: so may we (a connect, at most its timeout). */
        s->readers[i] = connect_one(s, err);
        if (s->readers[i] != NULL && prepare_all(s, s->readers[i], err) != CCA_OK) {
            PQfinish(s->readers[i]);
            s->readers[i] = NULL;
        }
    } else {
        /* The writer is in its backoff: answer at once, no HTTP thread waits on a dead
         * host. */
        pthread_mutex_lock(&s->hlock);
        (void)cca_error_set(err, CCA_ERR_IO, "%s",
                            s->last_error[0] ? s->last_error : "database unreachable");
        pthread_mutex_unlock(&s->hlock);
    }
    if (s->readers[i] == NULL) {
        pthread_mutex_lock(&s->rlock);
        s->busy[i] = false;
        pthread_cond_signal(&s->rcond);
        pthread_mutex_unlock(&s->rlock);
        return CCA_ERR_IO;
    }
    *ret_i = i;
    return CCA_OK;
}

/* Give it back; a connection that broke is closed (the next borrower reconnects). */
static void reader_give(struct pgstore *s, unsigned i)
{
    if (s->readers[i] != NULL && (PQstatus(s->readers[i]) != CONNECTION_OK ||
                                  PQtransactionStatus(s->readers[i]) != PQTRANS_IDLE)) {
        PQfinish(s->readers[i]);
        s->readers[i] = NULL;
    }
    pthread_mutex_lock(&s->rlock);
    s->busy[i] = false;
    pthread_cond_signal(&s->rcond);
    pthread_mutex_unlock(&s->rlock);
}

static json_t *parse(const char *text, const char *what, struct cca_error *err)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

    if (v == NULL)
        (void)cca_error_set(err, CCA_ERR_INVALID, "%s: stored JSON does not parse: %s",
                            what, jerr.text);
    return v;
}

/*
 * The dialog @id from its row: @rest_s (the document without messages),
 * @count_s (message_count, NULL or "" when the document had none) and
 * @msgs_s (the message rows as an array, by seq). A new document with the
 * members in dialog.c's order, others after them; or NULL with @err.
 */
static json_t *assemble(const char *id, const char *rest_s, const char *count_s,
                        const char *msgs_s, struct cca_error *err)
{
    json_t *rest = parse(rest_s, id, err);
    json_t *msgs = rest != NULL ? parse(msgs_s, id, err) : NULL;
    json_t *doc = NULL;
    bool has_msgs = count_s != NULL && count_s[0] != '\0';
    const char *key;
    json_t *v;

    if (msgs == NULL)
        goto out;
    if (!json_is_object(rest) || !json_is_array(msgs) ||
        (has_msgs && json_array_size(msgs) != strtoul(count_s, NULL, 10)) ||
        (!has_msgs && json_array_size(msgs) != 0)) {
        (void)cca_error_set(err, CCA_ERR_INVALID,
                            "dialog %s: %zu message rows, the dialog row says %s", id,
                            json_array_size(msgs), has_msgs ? count_s : "none");
        goto out;
    }
    doc = json_object();
    for (size_t i = 0; i < CCA_ARRAY_SIZE(dialog_order); i++) {
        if (strcmp(dialog_order[i], "messages") == 0) {
            if (has_msgs)
                (void)json_object_set(doc, "messages", msgs);
        } else if ((v = json_object_get(rest, dialog_order[i])) != NULL) {
            (void)json_object_set(doc, dialog_order[i], v);
        }
    }
    json_object_foreach (rest, key, v) {
        if (json_object_get(doc, key) == NULL)
            (void)json_object_set(doc, key, v);
    }
out:
    json_decref(rest);
    json_decref(msgs);
    return doc;
}

static cca_rc pg_read(void *impl, enum cca_store_coll coll, const char *id,
                      json_t **ret_doc, size_t *ret_bytes, struct cca_error *reterr)
{
    struct pgstore *s = impl;
    char canon[37];
    char name[8];
    const char *pv[1];
    PGresult *r = NULL;
    json_t *doc = NULL;
    size_t bytes = 0;
    int64_t t0 = cca_time_mono_us();
    unsigned i = 0;
    bool taken = false;
    cca_rc rc;

    if ((unsigned)coll >= CCA_STORE_COLL__COUNT || id == NULL ||
        !cca_uuid_canonical(id, canon) || strcmp(canon, id) != 0)
        return cca_error_set(reterr, CCA_ERR_INVALID, "id is not a canonical UUID");
    rc = reader_take(s, &i, reterr);
    if (rc != CCA_OK)
        goto out;
    taken = true;
    pv[0] = canon;
    stmt_name(coll, 'g', name);
    r = PQexecPrepared(s->readers[i], name, 1, pv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && conn_lost(s->readers[i], r)) {
        /* A connection the database dropped (a restart): once more on a new one. */
        PQclear(r);
        r = NULL;
        PQfinish(s->readers[i]);
        s->readers[i] = NULL;
        reader_give(s, i);
        taken = false;
        rc = reader_take(s, &i, reterr);
        if (rc != CCA_OK)
            goto out;
        taken = true;
        r = PQexecPrepared(s->readers[i], name, 1, pv, NULL, NULL, 0);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = result_error(s, r, "read failed", reterr);
        goto out;
    }
    if (PQntuples(r) == 0) {
        rc = cca_error_set(reterr, CCA_ERR_NOT_FOUND, "%s %s not found",
                           cca_store_coll_name(coll), canon);
        goto out;
    }
    if (coll == CCA_STORE_DIALOGS) {
        doc = assemble(canon, PQgetvalue(r, 0, 0),
                       PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1),
                       PQgetvalue(r, 0, 2), reterr);
        bytes = (size_t)PQgetlength(r, 0, 0) + (size_t)PQgetlength(r, 0, 2);
    } else {
        doc = parse(PQgetvalue(r, 0, 0), canon, reterr);
        bytes = (size_t)PQgetlength(r, 0, 0);
    }
    if (doc == NULL) {
        rc = CCA_ERR_INVALID;
        goto out;
    }
    *ret_doc = doc;
    if (ret_bytes != NULL)
        *ret_bytes = bytes;
out:
    PQclear(r);
    if (taken)
        reader_give(s, i);
    cca_hist_observe_us(&s->metrics.read_seconds, cca_time_mono_us() - t0);
    atomic_fetch_add_explicit(rc == CCA_OK || rc == CCA_ERR_NOT_FOUND
                                  ? &s->metrics.reads
                                  : &s->metrics.read_errors,
                              1, memory_order_relaxed);
    return rc;
}

/* ---- load -------------------------------------------------------------------------- */

/* Stream every row of @coll (single-row mode: memory bounded by one document). */
static cca_rc load_coll(struct pgstore *s, PGconn *c, enum cca_store_coll coll,
                        cca_store_load_fn load, cca_store_report_fn report, void *ctx,
                        struct cca_error *reterr)
{
    PGresult *r = NULL;
    cca_rc rc = CCA_OK;

    if (!PQsendQueryParams(c, coll_sql[coll].all, 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsetSingleRowMode(c))
        return conn_error(s, c, "load failed", reterr);
    while ((r = PQgetResult(c)) != NULL) {
        struct cca_error perr = {0};
        json_t *doc;
        const char *id;
        size_t bytes;

        if (PQresultStatus(r) == PGRES_TUPLES_OK) { /* the end */
            PQclear(r);
            continue;
        }
        if (PQresultStatus(r) != PGRES_SINGLE_TUPLE) {
            if (rc == CCA_OK)
                rc = result_error(s, r, "load failed", reterr);
            PQclear(r);
            continue; /* drain */
        }
        id = PQgetvalue(r, 0, 0);
        if (coll == CCA_STORE_DIALOGS) {
            doc = assemble(id, PQgetvalue(r, 0, 1),
                           PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2),
                           PQgetvalue(r, 0, 3), &perr);
            bytes = (size_t)PQgetlength(r, 0, 1) + (size_t)PQgetlength(r, 0, 3);
            if (doc != NULL && cca_dialog_validate(doc, id, &perr) != CCA_OK) {
                json_decref(doc);
                doc = NULL;
            }
        } else {
            doc = parse(PQgetvalue(r, 0, 1), id, &perr);
            bytes = (size_t)PQgetlength(r, 0, 1);
        }
        if (doc != NULL && rc == CCA_OK) {
            load(ctx, coll, id, doc, bytes);
        } else if (doc == NULL && report != NULL) {
            char what[80];

            (void)snprintf(what, sizeof(what), "postgres %s %s",
                           cca_store_coll_name(coll), id);
            report(ctx, what, perr.msg);
        } else {
            json_decref(doc);
        }
        PQclear(r);
    }
    return rc;
}

static cca_rc pg_load(void *impl, cca_store_load_fn load, cca_store_report_fn report,
                      void *ctx, struct cca_error *reterr)
{
    struct pgstore *s = impl;
    PGresult *r = NULL;
    unsigned i = 0;
    cca_rc rc;

    rc = reader_take(s, &i, reterr);
    if (rc != CCA_OK)
        return rc;
    /* One snapshot for every collection. */
    if (!exec_ok(s->readers[i], "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &r)) {
        rc = result_error(s, r, "load failed", reterr);
        goto out;
    }
    for (int coll = 0; coll < CCA_STORE_COLL__COUNT && rc == CCA_OK; coll++)
        rc = load_coll(s, s->readers[i], (enum cca_store_coll)coll, load, report, ctx,
                       reterr);
    PQclear(r);
    r = NULL;
    if (!exec_ok(s->readers[i], rc == CCA_OK ? "COMMIT" : "ROLLBACK", &r) && rc == CCA_OK)
        rc = result_error(s, r, "load failed", reterr);
out:
    PQclear(r);
    reader_give(s, i);
    return rc;
}

/* ---- health and metrics ------------------------------------------------------------ */

static void pg_health(void *impl, struct cca_store_health *ret)
{
    struct pgstore *s = impl;
    int64_t now = cca_time_mono_us();

    memset(ret, 0, sizeof(*ret));
    (void)snprintf(ret->location, sizeof(ret->location), "%s", s->location);
    pthread_mutex_lock(&s->hlock);
    ret->writable = s->up && now - s->ok_at_us <= (int64_t)CCA_STORE_PG_HEALTHY_MS * 1000;
    ret->fenced = s->fenced;
    if (!ret->writable)
        (void)snprintf(ret->last_error, sizeof(ret->last_error), "dialog storage: %.140s",
                       s->last_error[0] ? s->last_error
                                        : "database did not answer within 2 s");
    pthread_mutex_unlock(&s->hlock);
}

static void pg_metrics(void *impl, FILE *out)
{
    struct pgstore *s = impl;
    struct pg_metrics *m = &s->metrics;
    struct cca_store_health h;
    unsigned busy = 0;

    pg_health(s, &h);
    pthread_mutex_lock(&s->rlock);
    for (unsigned i = 0; i < s->nreaders; i++)
        busy += s->busy[i];
    pthread_mutex_unlock(&s->rlock);
    cca_metrics_hist_family(out, "cca_store_flush_duration_seconds",
                            "Time to write one batch of changes and COMMIT it",
                            &m->batch_seconds);
    cca_metrics_hist_family(out, "cca_store_batch_size",
                            "Changes per transaction (group commit)", &m->batch_size);
    cca_metrics_results(
        out, "cca_store_writes_total", "Changes committed (ok) or failed (error)",
        (double)atomic_load(&m->writes_ok), (double)atomic_load(&m->writes_error));
    cca_metrics_results(out, "cca_store_pg_batches_total",
                        "Transactions of the writer: committed (ok) or failed (error)",
                        (double)atomic_load(&m->batches_ok),
                        (double)atomic_load(&m->batches_error));
    cca_metrics_single(out, "cca_store_pg_reconnects_total", "counter",
                       "Times the writer connected again after losing the database",
                       (double)atomic_load(&m->reconnects));
    cca_metrics_single(out, "cca_store_pg_connect_errors_total", "counter",
                       "Failed connection attempts of the writer",
                       (double)atomic_load(&m->connect_errors));
    cca_metrics_results(out, "cca_store_pg_reads_total",
                        "Reads answered (ok, including not found) or failed (error)",
                        (double)atomic_load(&m->reads),
                        (double)atomic_load(&m->read_errors));
    cca_metrics_family(out, "cca_store_pg_query_duration_seconds", "histogram",
                       "Time of one statement: a change in a batch (write), a read, the "
                       "writer's idle probe");
    cca_metrics_hist(out, "cca_store_pg_query_duration_seconds", "kind=\"write\"",
                     &m->write_seconds);
    cca_metrics_hist(out, "cca_store_pg_query_duration_seconds", "kind=\"read\"",
                     &m->read_seconds);
    cca_metrics_hist(out, "cca_store_pg_query_duration_seconds", "kind=\"probe\"",
                     &m->probe_seconds);
    cca_metrics_family(out, "cca_store_pg_pool_connections", "gauge",
                       "Reader connections of the pool, borrowed (busy) or not (idle)");
    cca_metrics_sample(out, "cca_store_pg_pool_connections", "state=\"busy\"", busy);
    cca_metrics_sample(out, "cca_store_pg_pool_connections", "state=\"idle\"",
                       (double)(s->nreaders - busy));
    cca_metrics_single(out, "cca_store_pg_up", "gauge",
                       "1 while the database answered the writer within 2 s", h.writable);
}

/* ---- life cycle -------------------------------------------------------------------- */

void cca_store_pg_describe(const char *conninfo, char *buf, size_t size)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo != NULL ? conninfo : "", NULL);
    const char *host = NULL, *port = NULL, *db = NULL;

    if (opts == NULL) {
        (void)snprintf(buf, size, "(invalid connection string)");
        return;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
    }
    (void)snprintf(buf, size, "host=%.100s port=%.10s dbname=%.60s",
                   host != NULL && host[0] ? host : "(default)",
                   port != NULL && port[0] ? port : "(default)",
                   db != NULL && db[0] ? db : "(default)");
    PQconninfoFree(opts);
}

static void pg_free(void *impl)
{
    struct pgstore *s = impl;

    if (s == NULL)
        return;
    if (s->writer_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer, NULL);
    }
    if (s->wconn != NULL && PQstatus(s->wconn) == CONNECTION_OK) {
        /* Released now, not when the backend gets round to exiting: a next start may
         * follow. */
        char key[32];
        const char *pv[1] = {key};

        (void)snprintf(key, sizeof(key), "%lld", (long long)CCA_STORE_PG_INSTANCE_KEY);
        PQclear(PQexecParams(s->wconn, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL,
                             pv, NULL, NULL, 0));
    }
    PQfinish(s->wconn);
    for (unsigned i = 0; i < s->nreaders; i++)
        PQfinish(s->readers[i]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->hlock);
    pthread_mutex_destroy(&s->rlock);
    pthread_cond_destroy(&s->rcond);
    free(s->readers);
    free(s->busy);
    if (s->conninfo != NULL)
        explicit_bzero(s->conninfo, strlen(s->conninfo));
    if (s->password != NULL)
        explicit_bzero(s->password, strlen(s->password));
    free(s->conninfo);
    free(s->password);
    free(s);
}

static const struct cca_store_ops pg_ops = {
    .name = "postgres",
    .load = pg_load,
    .read = pg_read,
    .commit = pg_commit,
    .remove = pg_remove,
    .health = pg_health,
    .metrics = pg_metrics,
    .free = pg_free,
};

/* A store not yet connected: parameters checked, the password kept for scrubbing. */
static cca_rc store_init(const struct cca_store_pg_params *params, struct pgstore **ret,
                         struct cca_error *reterr)
{
    PQconninfoOption *opts;
    struct pgstore *s;
    char desc[200];

    if (params->conninfo == NULL || params->conninfo[0] == '\0')
        return cca_error_set(reterr, CCA_ERR_INVALID, "DATABASE_URL is empty");
    if (params->pool_size < 2 || params->pool_size > 16)
        return cca_error_set(reterr, CCA_ERR_INVALID, "DATABASE_POOL_SIZE must be 2..16");
    if (params->statement_timeout_ms == 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "DATABASE_STATEMENT_TIMEOUT_MS must be above 0");
    /* Never quote libpq's parse message: it may echo the string, password included. */
    opts = PQconninfoParse(params->conninfo, NULL);
    if (opts == NULL)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "DATABASE_URL is not a libpq connection string or URI");
    s = cca_xcalloc(1, sizeof(*s));
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0')
            s->password = cca_xstrdup(o->val);
    }
    PQconninfoFree(opts);
    s->conninfo = cca_xstrdup(params->conninfo);
    s->stmt_timeout_ms = params->statement_timeout_ms;
    cca_store_pg_describe(params->conninfo, desc, sizeof(desc));
    (void)snprintf(s->location, sizeof(s->location), "postgresql %s", desc);
    s->backoff_ms = CCA_STORE_PG_BACKOFF_MIN_MS;
    s->nreaders = params->pool_size - 1;
    s->readers = cca_xcalloc(s->nreaders, sizeof(*s->readers));
    s->busy = cca_xcalloc(s->nreaders, sizeof(*s->busy));
    cca_hist_init(&s->metrics.batch_seconds, cca_hist_seconds_bounds, cca_hist_seconds_n);
    cca_hist_init(&s->metrics.batch_size, cca_hist_batch_bounds, cca_hist_batch_n);
    cca_hist_init(&s->metrics.write_seconds, cca_hist_seconds_bounds, cca_hist_seconds_n);
    cca_hist_init(&s->metrics.read_seconds, cca_hist_seconds_bounds, cca_hist_seconds_n);
    cca_hist_init(&s->metrics.probe_seconds, cca_hist_seconds_bounds, cca_hist_seconds_n);
    pthread_mutex_init(&s->lock, NULL);
    {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->cond, &ca);
        pthread_condattr_destroy(&ca);
    }
    pthread_mutex_init(&s->hlock, NULL);
    pthread_mutex_init(&s->rlock, NULL);
    pthread_cond_init(&s->rcond, NULL);
    *ret = s;
    return CCA_OK;
}

/* A store not yet started and its first connection; the caller frees *ret
 * (pg_free) and *ret_conn (PQfinish) whatever this returns (both start NULL). */
static cca_rc store_connect(const struct cca_store_pg_params *params,
                            struct pgstore **ret, PGconn **ret_conn,
                            struct cca_error *reterr)
{
    cca_rc rc = store_init(params, ret, reterr);

    if (rc != CCA_OK)
        return rc;
    *ret_conn = connect_one(*ret, reterr);
    return *ret_conn != NULL ? CCA_OK : CCA_ERR_IO;
}

cca_rc cca_store_pg_migrate(const struct cca_store_pg_params *params, unsigned *ret_from,
                            unsigned *ret_to, struct cca_error *reterr)
{
    struct pgstore *s = NULL;
    PGconn *c = NULL;
    cca_rc rc;

    rc = store_connect(params, &s, &c, reterr);
    if (rc == CCA_OK)
        rc = migrate_conn(s, c, ret_from, ret_to, reterr);
    PQfinish(c);
    pg_free(s);
    return rc;
}

cca_rc cca_store_pg_new(const struct cca_store_pg_params *params,
                        struct cca_store **ret_store, struct cca_error *reterr)
{
    struct pgstore *s = NULL;
    PGconn *c = NULL;
    cca_rc rc;

    rc = store_connect(params, &s, &c, reterr);
    if (rc == CCA_OK)
        rc = take_instance_lock(s, c, params->lock_wait_ms, reterr);
    if (rc == CCA_OK)
        rc = migrate_conn(s, c, NULL, NULL, reterr);
    if (rc == CCA_OK)
        rc = epoch_take(s, c, s->epoch, reterr);
    if (rc == CCA_OK)
        rc = prepare_all(s, c, reterr);
    if (rc != CCA_OK)
        goto out;
    s->wconn = c;
    c = NULL;
    s->ever_connected = true;
    s->last_work_us = cca_time_mono_us();
    health_ok(s);
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "cannot start the writer thread");
        goto out;
    }
    s->writer_started = true;
    *ret_store = cca_store_new(&pg_ops, s);
    s = NULL;
out:
    PQfinish(c);
    pg_free(s);
    return rc;
}
