/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL store against a throwaway server that this test starts
 * itself (tests/pg/pg.sh: initdb into a temporary directory, a Unix socket
 * there, no TCP port). Skipped when the server binaries are missing.
 *
 * Migrations (from empty, twice, a newer schema refused), round trips of
 * every collection (json_equal, Unicode), a turn writes only its new message
 * rows (xmin of the old rows unchanged), group commit, removal, load, SQL-like
 * text stored verbatim and ids refused before any query, a server crash in
 * the middle of commits (every acknowledged change survives; failures
 * reported; recovery with backoff), and no password in any message.
 */
#include "cca_test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cca/dialog.h"
#include "cca/store.h"
#include "cca/store_pg.h"
#include "../pg/pg_test.h"
#include "store_waiter.h"

static char conninfo[256]; /* DATABASE_URL of the throwaway server */
static PGconn *admin;      /* the test's own connection, for checks */

/* ---- the throwaway server --------------------------------------------------------- */

static PGresult *q(const char *sql)
{
    PGresult *r = PQexec(admin, sql);

    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    return r;
}

/* The first column of the first row of @sql as a number. */
static long q_long(const char *sql)
{
    PGresult *r = q(sql);
    long v = PQntuples(r) > 0 ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : -1;

    PQclear(r);
    return v;
}

static void admin_connect(void)
{
    for (int i = 0; i < 100; i++) {
        PQfinish(admin);
        admin = PQconnectdb(conninfo);
        if (PQstatus(admin) == CONNECTION_OK)
            return;
        usleep(100 * 1000);
    }
    fail_msg("cannot connect: %s", PQerrorMessage(admin));
}

/* Every test starts from an empty database. */
static int empty_db(void **state)
{
    (void)state;
    if (admin == NULL || PQstatus(admin) != CONNECTION_OK)
        admin_connect();
    PQclear(q("DROP TABLE IF EXISTS messages, dialogs, operators, customers, telegram,"
              " instance_epoch,"
              " schema_version CASCADE"));
    return 0;
}

static struct cca_store_pg_params params(void)
{
    struct cca_store_pg_params p = {.conninfo = conninfo,
                                    .pool_size = 3,
                                    .statement_timeout_ms = 5000,
                                    .lock_wait_ms = 2000};

    return p;
}

static struct cca_store *open_store(void)
{
    struct cca_store_pg_params p = params();
    struct cca_store *s = NULL;
    struct cca_error err = {0};

    if (cca_store_pg_new(&p, &s, &err) != CCA_OK)
        fail_msg("cca_store_pg_new: %s", err.msg);
    assert_string_equal(cca_store_backend(s), "postgres");
    return s;
}

/* ---- waiting for changes ---------------------------------------------------------- */

static void wait_done(int n)
{
    assert_true(waiter_wait(n, 30) >= n);
}

/* Commit and wait; returns the rc. */
static cca_rc commit_wait(struct cca_store *s, enum cca_store_coll coll, const char *id,
                          json_t *old_doc, json_t *new_doc)
{
    waiter_reset();
    cca_store_commit(s, coll, id, old_doc, new_doc, on_done, NULL);
    wait_done(1);
    return w.last_rc;
}

static cca_rc remove_wait(struct cca_store *s, enum cca_store_coll coll, const char *id)
{
    waiter_reset();
    cca_store_remove(s, coll, id, on_done, NULL);
    wait_done(1);
    return w.last_rc;
}

/* The value of one metric series of @s ("name{labels}"), -1 when absent. */
static double metric(struct cca_store *s, const char *series)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    double v = -1;
    char *p;

    cca_store_render_metrics(s, f);
    fclose(f);
    for (p = buf; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        size_t n = strlen(series);

        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    }
    free(buf);
    return v;
}

/* ---- documents ----------------------------------------------------------------------
 */

static json_t *new_dialog(char id[37], const char *customer)
{
    struct cca_dialog_create c = {.customer_id = (char *)customer,
                                  .name = (char *)"Анна Š 😀",
                                  .priority = (char *)"normal",
                                  .source = (char *)"api"};

    cca_uuid_new(id);
    return cca_dialog_new_doc(id, &c, 1736937000000);
}

static json_t *with_turn(json_t *doc, const char *text)
{
    struct cca_route route = {.agent = CCA_AGENT_SALES, .method = CCA_ROUTE_KEYWORD};
    char a[37], b[37];
    struct cca_dialog_turn t = {
        .customer_msg_id = a,
        .agent_msg_id = b,
        .text = text,
        .route = &route,
        .agent = CCA_AGENT_SALES,
        .previous = CCA_AGENT_NONE,
        .reply = "Тарифы: 990 ₽ — «подробнее» 🙂",
        .tokens = 42,
        .received_ms = 1736937000000,
        .replied_ms = 1736937000120,
        .processing_s = 0.123456};

    cca_uuid_new(a);
    cca_uuid_new(b);
    return cca_dialog_with_turn(doc, &t);
}

static json_t *with_operator_message(json_t *doc, const char *text)
{
    json_t *channel = json_pack("{s:s, s:I, s:{s:s}}", "type", "telegram", "chat_id",
                                (json_int_t)-1001234567890LL, "media", "kind", "photo");
    char id[37];
    struct cca_dialog_message m = {.id = id,
                                   .role = "operator",
                                   .content = text,
                                   .operator_id = "00000000-0000-4000-8000-00000000000a",
                                   .operator_name = "Ольга",
                                   .at_ms = 1736937005000,
                                   .channel = channel};
    json_t *out;

    cca_uuid_new(id);
    out = cca_dialog_with_message(doc, &m);
    json_decref(channel);
    return out;
}

static void assert_read_equal(struct cca_store *s, enum cca_store_coll coll,
                              const char *id, json_t *want)
{
    struct cca_error err = {0};
    json_t *got = NULL;
    size_t bytes = 0;

    if (cca_store_read(s, coll, id, &got, &bytes, &err) != CCA_OK)
        fail_msg("read %s: %s", id, err.msg);
    {
        /* Equal as JSON and written out the same: every key in its order. */
        char *a = json_dumps(got, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        char *b = json_dumps(want, JSON_INDENT(1) | JSON_PRESERVE_ORDER);

        if (!json_equal(got, want) || strcmp(a, b) != 0)
            fail_msg("read differs:\n%s\nwanted:\n%s", a, b);
        free(a);
        free(b);
    }
    assert_true(bytes > 0);
    json_decref(got);
}

/* What a load found: coll/id -> document. */
static void on_load(void *ctx, enum cca_store_coll coll, const char *id, json_t *doc,
                    size_t bytes)
{
    char key[64];

    (void)bytes;
    (void)snprintf(key, sizeof(key), "%s/%s", cca_store_coll_name(coll), id);
    (void)json_object_set_new(ctx, key, doc);
}

static void on_report(void *ctx, const char *what, const char *why)
{
    (void)ctx;
    fprintf(stderr, "# report: %s: %s\n", what, why);
}

static json_t *load_all(struct cca_store *s)
{
    struct cca_error err = {0};
    json_t *all = json_object();

    if (cca_store_load(s, on_load, on_report, all, &err) != CCA_OK)
        fail_msg("load: %s", err.msg);
    return all;
}

/* ---- migrations -------------------------------------------------------------------- */

static void test_migrations(void **state)
{
    struct cca_store_pg_params p = params();
    struct cca_error err = {0};
    struct cca_store *s = NULL;
    unsigned from = 99, to = 99;
    char sql[200];

    (void)state;
    assert_int_equal(cca_store_pg_migrate(&p, &from, &to, &err), CCA_OK);
    assert_int_equal(from, 0);
    assert_int_equal(to, cca_store_pg_schema_version());
    assert_int_equal(q_long("SELECT count(*) FROM information_schema.tables WHERE"
                            " table_schema = 'public' AND table_name IN ('dialogs',"
                            " 'messages', 'operators', 'customers', 'telegram',"
                            " 'schema_version', 'instance_epoch')"),
                     7);
    /* Twice: nothing to do, nothing recorded twice. */
    assert_int_equal(cca_store_pg_migrate(&p, &from, &to, &err), CCA_OK);
    assert_int_equal(from, cca_store_pg_schema_version());
    assert_int_equal(to, cca_store_pg_schema_version());
    assert_int_equal(q_long("SELECT count(*) FROM schema_version"),
                     cca_store_pg_schema_version());
    /* The start applies nothing more either. */
    s = open_store();
    cca_store_free(s);
    assert_int_equal(q_long("SELECT count(*) FROM schema_version"),
                     cca_store_pg_schema_version());

    /* A schema from the future: refused at start and by migrate, untouched. */
    (void)snprintf(sql, sizeof(sql),
                   "INSERT INTO schema_version (version, description) VALUES (%u, 'x')",
                   cca_store_pg_schema_version() + 1);
    PQclear(q(sql));
    s = NULL;
    assert_int_equal(cca_store_pg_new(&p, &s, &err), CCA_ERR_CONFLICT);
    assert_null(s);
    assert_non_null(strstr(err.msg, "newer than this binary knows"));
    fprintf(stderr, "# %s\n", err.msg);
    assert_int_equal(cca_store_pg_migrate(&p, NULL, NULL, &err), CCA_ERR_CONFLICT);
    assert_int_equal(q_long("SELECT count(*) FROM schema_version"),
                     cca_store_pg_schema_version() + 1);
}

/* Two migrations at once: the advisory lock lets one apply, the other finds it done. */
static void *migrate_thread(void *arg)
{
    struct cca_store_pg_params p = params();
    struct cca_error err = {0};

    *(cca_rc *)arg = cca_store_pg_migrate(&p, NULL, NULL, &err);
    return NULL;
}

static void test_concurrent_migrations(void **state)
{
    pthread_t t[4];
    cca_rc rc[4];

    (void)state;
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, migrate_thread, &rc[i]);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(rc[i], CCA_OK);
    }
    assert_int_equal(q_long("SELECT count(*) FROM schema_version"),
                     cca_store_pg_schema_version());
}

/* ---- one server per database ------------------------------------------------------- */

static void test_instance_lock(void **state)
{
    struct cca_store_pg_params p = params();
    struct cca_error err = {0};
    struct cca_store *s1, *s2 = NULL;

    (void)state;
    s1 = open_store();
    p.lock_wait_ms = 0;
    assert_int_equal(cca_store_pg_new(&p, &s2, &err), CCA_ERR_UNAVAILABLE);
    assert_null(s2);
    assert_non_null(strstr(
        err.msg, "another call-center-agents instance is active on this database"));
    assert_non_null(strstr(err.msg, "backend pid"));
    fprintf(stderr, "# %s\n", err.msg);
    /* migrate does not need it (its own transaction lock). */
    assert_int_equal(cca_store_pg_migrate(&p, NULL, NULL, &err), CCA_OK);
    cca_store_free(s1);
    s2 = open_store(); /* released by the free */
    cca_store_free(s2);
}

/* End the session holding the instance lock (as when the database drops it). */
static void end_lock_holder(void)
{
    char sql[320];

    (void)snprintf(
        sql, sizeof(sql),
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = "
        "'advisory' AND granted AND objsubid = 1 AND objid = "
        "(%lld & 4294967295)::oid",
        (long long)CCA_STORE_PG_INSTANCE_KEY);
    assert_int_equal(q_long(sql), 1); /* one holder, now gone */
}

/*
 * @s1's writer session ends and a second store takes the lock before s1's
 * writer reconnects (its backoff, 100 ms doubling, or its 1 s probe); if s1
 * was first, its session is ended again. Returns the second store.
 */
static struct cca_store *take_over(void)
{
    struct cca_store_pg_params p = params();
    struct cca_error err = {0};
    struct cca_store *s2 = NULL;

    p.lock_wait_ms = 300;
    for (int i = 0; i < 20 && s2 == NULL; i++) {
        end_lock_holder();
        if (cca_store_pg_new(&p, &s2, &err) != CCA_OK)
            assert_int_equal(err.code, CCA_ERR_UNAVAILABLE);
    }
    assert_non_null(s2);
    return s2;
}

/* Commit @doc through @s until its health says fenced; every commit fails. */
static void wait_fenced(struct cca_store *s, const char *id, json_t *doc)
{
    struct cca_store_health h = {0};

    for (int i = 0; i < 100; i++) {
        cca_store_get_health(s, &h);
        if (h.fenced)
            break;
        assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, NULL, doc), CCA_ERR_IO);
        (void)usleep(100000);
    }
    assert_true(h.fenced);
    assert_false(h.writable);
    assert_non_null(strstr(h.last_error, "another call-center-agents instance"));
}

/*
 * Fencing: the holder is cut off (its writer's session ended), another store
 * takes the instance lock, and the first, reconnecting, finds it taken: its
 * changes fail and its health says fenced, for good: once the other is gone
 * and the lock free again, it still never writes.
 */
static void test_fencing(void **state)
{
    struct cca_store_health h;
    struct cca_store *s1, *s2;
    char id[37];
    json_t *doc;

    (void)state;
    s1 = open_store();
    cca_store_get_health(s1, &h);
    assert_false(h.fenced);
    s2 = take_over();
    doc = new_dialog(id, "fenced");
    wait_fenced(s1, id, doc);
    assert_int_equal(commit_wait(s2, CCA_STORE_DIALOGS, id, NULL, doc), CCA_OK);
    cca_store_free(s2);        /* the lock is free now */
    (void)usleep(1500 * 1000); /* s1's probe would have taken it */
    assert_int_equal(commit_wait(s1, CCA_STORE_DIALOGS, id, NULL, doc), CCA_ERR_IO);
    cca_store_get_health(s1, &h);
    assert_true(h.fenced);
    assert_int_equal(q_long("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
                     0);
    json_decref(doc);
    cca_store_free(s1);
}

/*
 * The fencing token: the holder is cut off, another store takes the lock,
 * writes and goes away, all before the first reconnects. The lock is free
 * then, but the instance epoch moved: the first is fenced, and what the
 * other wrote stays as it is.
 */
static void test_fencing_token(void **state)
{
    struct cca_store *s1, *s2;
    char id[37];
    json_t *doc, *doc2;

    (void)state;
    s1 = open_store();
    doc = new_dialog(id, "first");
    assert_int_equal(commit_wait(s1, CCA_STORE_DIALOGS, id, NULL, doc), CCA_OK);
    s2 = take_over();
    doc2 = with_turn(doc, "written by the second store");
    assert_int_equal(commit_wait(s2, CCA_STORE_DIALOGS, id, doc, doc2), CCA_OK);
    cca_store_free(s2);
    wait_fenced(s1, id, doc);
    s2 = open_store();
    assert_read_equal(s2, CCA_STORE_DIALOGS, id, doc2);
    json_decref(doc);
    json_decref(doc2);
    cca_store_free(s1);
    cca_store_free(s2);
}

/* ---- round trips ------------------------------------------------------------------- */

static json_t *fixture(const char *name)
{
    char path[512];
    json_error_t jerr;
    json_t *doc;

    (void)snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/%s", CCA_SOURCE_ROOT, name);
    doc = json_load_file(path, 0, &jerr);
    if (doc == NULL)
        fail_msg("%s: %s", path, jerr.text);
    return doc;
}

static void test_round_trips(void **state)
{
    struct cca_store *s;
    json_t *all, *v[6], *other[3];
    char id[37], ids[3][37];
    const char *fixtures[] = {"export/dialog-closed-rated.json",
                              "dialog_load/odd-metadata.json"};
    char fid[2][37];

    (void)state;
    s = open_store();
    /* A dialog through its life: create, turns, an operator message, rating, close. */
    v[0] = new_dialog(id, "cust-1");
    v[1] = with_turn(v[0], "Какие у вас тарифы? 🤔 ¿Qué? 中文");
    v[2] = with_turn(v[1], "A \"quoted\" \\ backslash\nnew line\ttab");
    v[3] = with_operator_message(v[2], "Здравствуйте! Я оператор.");
    v[4] = cca_dialog_with_rating(v[3], 5, "Отлично 👍", 1736937009000);
    v[5] = cca_dialog_closed(v[4], "resolved", 1736937010000);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, i ? v[i - 1] : NULL, v[i]),
                         CCA_OK);
        assert_read_equal(s, CCA_STORE_DIALOGS, id, v[i]);
    }
    assert_int_equal(
        q_long("SELECT count(*) FROM messages m JOIN dialogs d ON d.id = m.dialog_id"
               " WHERE d.status = 'closed'"),
        (long)json_array_size(json_object_get(v[5], "messages")));
    /* Real documents from the fixtures (stored under their own ids). */
    for (int i = 0; i < 2; i++) {
        json_t *doc = fixture(fixtures[i]);

        (void)snprintf(fid[i], sizeof(fid[i]), "%s",
                       json_string_value(json_object_get(doc, "dialog_id")));
        assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, fid[i], NULL, doc), CCA_OK);
        assert_read_equal(s, CCA_STORE_DIALOGS, fid[i], doc);
        json_decref(doc);
    }
    /* The other collections. */
    other[0] = json_pack("{s:s, s:s, s:i, s:b, s:[s,s], s:n}", "name", "Ольга Петрова",
                         "token_sha256", "ab12", "max_dialogs", 3, "on_shift", 1,
                         "skills", "продажи", "tech", "note");
    other[1] = json_pack("{s:s, s:s, s:{s:s}, s:f}", "customer_id", "cust-1", "language",
                         "ru", "profile", "город", "Москва", "score", 0.25);
    other[2] = json_pack("{s:I, s:{s:I}}", "offset", (json_int_t)9007199254740993LL,
                         "cursors", "x", (json_int_t)-5);
    for (int c = 0; c < 3; c++) {
        cca_uuid_new(ids[c]);
        assert_int_equal(
            commit_wait(s, (enum cca_store_coll)(c + 1), ids[c], NULL, other[c]), CCA_OK);
        assert_read_equal(s, (enum cca_store_coll)(c + 1), ids[c], other[c]);
    }
    /* A second version replaces the first. */
    json_object_set_new(other[0], "on_shift", json_false());
    assert_int_equal(commit_wait(s, CCA_STORE_OPERATORS, ids[0], NULL, other[0]), CCA_OK);
    assert_read_equal(s, CCA_STORE_OPERATORS, ids[0], other[0]);
    cca_store_free(s);

    /* Load (a new store, as at the next start) returns every document. */
    s = open_store();
    all = load_all(s);
    assert_int_equal(json_object_size(all), 3 + 3);
    {
        char key[64];

        (void)snprintf(key, sizeof(key), "dialogs/%s", id);
        assert_true(json_equal(json_object_get(all, key), v[5]));
        for (int c = 0; c < 3; c++) {
            (void)snprintf(key, sizeof(key), "%s/%s",
                           cca_store_coll_name((enum cca_store_coll)(c + 1)), ids[c]);
            assert_true(json_equal(json_object_get(all, key), other[c]));
        }
    }
    /* Not found. */
    {
        struct cca_error err = {0};
        json_t *doc = NULL;
        char nid[37];

        cca_uuid_new(nid);
        assert_int_equal(cca_store_read(s, CCA_STORE_DIALOGS, nid, &doc, NULL, &err),
                         CCA_ERR_NOT_FOUND);
        assert_int_equal(cca_store_read(s, CCA_STORE_TELEGRAM, nid, &doc, NULL, &err),
                         CCA_ERR_NOT_FOUND);
    }
    cca_store_free(s);
    json_decref(all);
    for (int i = 0; i < 6; i++)
        json_decref(v[i]);
    for (int c = 0; c < 3; c++)
        json_decref(other[c]);
}

/* ---- a turn appends rows ----------------------------------------------------------- */

/* "seq:xmin,seq:xmin,..." of the dialog's message rows. */
static void xmins(const char *id, char *buf, size_t size)
{
    char sql[200];
    PGresult *r;
    size_t used = 0;

    (void)snprintf(sql, sizeof(sql),
                   "SELECT seq, xmin::text FROM messages WHERE dialog_id = '%s'"
                   " ORDER BY seq",
                   id);
    r = q(sql);
    buf[0] = '\0';
    for (int i = 0; i < PQntuples(r) && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s:%s,", PQgetvalue(r, i, 0),
                                 PQgetvalue(r, i, 1));
    PQclear(r);
}

static long row_xmin(const char *id, int seq)
{
    char sql[200];

    (void)snprintf(sql, sizeof(sql),
                   "SELECT xmin::text::bigint FROM messages WHERE dialog_id = '%s'"
                   " AND seq = %d",
                   id, seq);
    return q_long(sql);
}

static void test_append_only(void **state)
{
    struct cca_store *s;
    json_t *d0, *d1, *d2, *d3, *d4, *d5;
    char id[37], before[512], after[512], sql[200];
    long x0, x1, x2;

    (void)state;
    s = open_store();
    d0 = new_dialog(id, "cust-2");
    d1 = with_turn(d0, "first");
    d2 = with_turn(d1, "second");
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, NULL, d0), CCA_OK);
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, d0, d1), CCA_OK);
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, d1, d2), CCA_OK);
    xmins(id, before, sizeof(before));
    (void)snprintf(sql, sizeof(sql),
                   "SELECT count(*) FROM messages WHERE dialog_id = '%s'", id);
    assert_int_equal(q_long(sql), 4);

    /* One more turn: two new rows, the four old ones untouched (same xmin). */
    d3 = with_turn(d2, "third");
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, d2, d3), CCA_OK);
    assert_int_equal(q_long(sql), 6);
    xmins(id, after, sizeof(after));
    assert_int_equal(strncmp(before, after, strlen(before)), 0);
    assert_read_equal(s, CCA_STORE_DIALOGS, id, d3);

    /* An earlier message changed (not something dialog.c does): only its row. */
    x0 = row_xmin(id, 0);
    x1 = row_xmin(id, 1);
    x2 = row_xmin(id, 2);
    {
        json_t *msgs = json_copy(json_object_get(d3, "messages"));
        json_t *m1 = json_copy(json_array_get(msgs, 1));

        d4 = json_copy(d3);
        json_object_set_new(m1, "content", json_string("edited: ответ"));
        json_array_set_new(msgs, 1, m1);
        json_object_set_new(d4, "messages", msgs);
    }
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, d3, d4), CCA_OK);
    assert_int_equal(row_xmin(id, 0), x0);
    assert_true(row_xmin(id, 1) != x1);
    assert_int_equal(row_xmin(id, 2), x2);
    assert_read_equal(s, CCA_STORE_DIALOGS, id, d4);

    /*
     * Without the old version (a caller that lost it; or a COMMIT whose answer
     * was lost and is retried from an older version): every row rewritten and
     * rows past the new end removed, so the rows always equal the document.
     */
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, NULL, d2), CCA_OK);
    assert_int_equal(q_long(sql), 4);
    assert_read_equal(s, CCA_STORE_DIALOGS, id, d2);
    d5 = with_turn(d2, "after a lost answer");
    /* From d1 while the database holds d2 (its seq 2, 3 exist): upserted, not refused. */
    json_decref(d5);
    d5 = with_turn(d1, "retried from an older version");
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, d1, d5), CCA_OK);
    assert_int_equal(q_long(sql), 4);
    assert_read_equal(s, CCA_STORE_DIALOGS, id, d5);

    cca_store_free(s);
    json_decref(d0);
    json_decref(d1);
    json_decref(d2);
    json_decref(d3);
    json_decref(d4);
    json_decref(d5);
}

/* ---- group commit ------------------------------------------------------------------ */

#define GC_THREADS 4
#define GC_EACH    50

struct gc_arg {
    struct cca_store *s;
    json_t *docs[GC_EACH];
    char ids[GC_EACH][37];
};

static void *gc_thread(void *p)
{
    struct gc_arg *a = p;

    for (int i = 0; i < GC_EACH; i++)
        cca_store_commit(a->s, CCA_STORE_DIALOGS, a->ids[i], NULL, a->docs[i], on_done,
                         NULL);
    return NULL;
}

static void test_group_commit(void **state)
{
    static struct gc_arg args[GC_THREADS];
    pthread_t t[GC_THREADS];
    struct cca_store *s;
    double batches;
    json_t *all;

    (void)state;
    s = open_store();
    for (int k = 0; k < GC_THREADS; k++) {
        args[k].s = s;
        for (int i = 0; i < GC_EACH; i++) {
            json_t *d = new_dialog(args[k].ids[i], "cust-gc");

            args[k].docs[i] = with_turn(d, "group");
            json_decref(d);
        }
    }
    waiter_reset();
    for (int k = 0; k < GC_THREADS; k++)
        pthread_create(&t[k], NULL, gc_thread, &args[k]);
    for (int k = 0; k < GC_THREADS; k++)
        pthread_join(t[k], NULL);
    wait_done(GC_THREADS * GC_EACH);
    assert_int_equal(w.failed, 0);
    batches = metric(s, "cca_store_pg_batches_total{result=\"ok\"}");
    fprintf(stderr, "# %d commits in %.0f transactions\n", GC_THREADS * GC_EACH, batches);
    assert_true(batches >= 1);
    assert_true(batches < GC_THREADS * GC_EACH);
    assert_int_equal(metric(s, "cca_store_writes_total{result=\"ok\"}"),
                     GC_THREADS * GC_EACH);
    assert_true(metric(s, "cca_store_batch_size_count") >= 1);
    assert_true(metric(s, "cca_store_pg_query_duration_seconds_count{kind=\"write\"}") >=
                GC_THREADS * GC_EACH);
    cca_store_free(s);
    s = open_store();
    all = load_all(s);
    assert_int_equal(json_object_size(all), GC_THREADS * GC_EACH);
    for (int k = 0; k < GC_THREADS; k++) {
        for (int i = 0; i < GC_EACH; i++) {
            char key[64];

            (void)snprintf(key, sizeof(key), "dialogs/%s", args[k].ids[i]);
            assert_true(json_equal(json_object_get(all, key), args[k].docs[i]));
            json_decref(args[k].docs[i]);
        }
    }
    json_decref(all);
    cca_store_free(s);
}

/* ---- removal ----------------------------------------------------------------------- */

static void test_remove(void **state)
{
    struct cca_store *s;
    struct cca_error err = {0};
    json_t *d0, *d1, *doc = NULL, *op;
    char id[37], oid[37], sql[200];

    (void)state;
    s = open_store();
    d0 = new_dialog(id, "cust-3");
    d1 = with_turn(d0, "bye");
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, NULL, d1), CCA_OK);
    assert_int_equal(remove_wait(s, CCA_STORE_DIALOGS, id), CCA_OK);
    assert_int_equal(cca_store_read(s, CCA_STORE_DIALOGS, id, &doc, NULL, &err),
                     CCA_ERR_NOT_FOUND);
    (void)snprintf(sql, sizeof(sql),
                   "SELECT count(*) FROM messages WHERE dialog_id = '%s'", id);
    assert_int_equal(q_long(sql), 0);
    /* Missing is fine; so is another collection. */
    assert_int_equal(remove_wait(s, CCA_STORE_DIALOGS, id), CCA_OK);
    op = json_pack("{s:s}", "name", "x");
    cca_uuid_new(oid);
    assert_int_equal(commit_wait(s, CCA_STORE_OPERATORS, oid, NULL, op), CCA_OK);
    assert_int_equal(remove_wait(s, CCA_STORE_OPERATORS, oid), CCA_OK);
    assert_int_equal(cca_store_read(s, CCA_STORE_OPERATORS, oid, &doc, NULL, &err),
                     CCA_ERR_NOT_FOUND);
    /* Created again after a removal. */
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, NULL, d0), CCA_OK);
    assert_read_equal(s, CCA_STORE_DIALOGS, id, d0);
    cca_store_free(s);
    json_decref(d0);
    json_decref(d1);
    json_decref(op);
}

/* ---- hostile text and ids ---------------------------------------------------------- */

static void test_injection(void **state)
{
    static const char *const texts[] = {
        "'); DROP TABLE dialogs; --",
        "\"; DELETE FROM messages WHERE true; --",
        "$1 $2 ::jsonb E'\\x00' \\\\",
        "Robert'); DROP TABLE students;-- 🙂",
    };
    static const char *const bad_ids[] = {
        "x'; DROP TABLE dialogs; --",
        "00000000-0000-4000-8000-00000000000Z",
        "00000000-0000-4000-8000-00000000000A", /* upper case: not canonical */
        "",
    };
    struct cca_store *s;
    struct cca_error err = {0};
    json_t *d0, *d = NULL, *prev, *doc = NULL, *bad, *good;
    char id[37], gid[37];

    (void)state;
    s = open_store();
    d0 = new_dialog(id, "x' OR '1'='1");
    prev = json_incref(d0);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(texts); i++) {
        d = with_turn(prev, texts[i]);
        json_decref(prev);
        prev = d;
    }
    assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, id, NULL, d), CCA_OK);
    assert_read_equal(s, CCA_STORE_DIALOGS, id, d);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bad_ids); i++) {
        assert_int_equal(
            cca_store_read(s, CCA_STORE_DIALOGS, bad_ids[i], &doc, NULL, &err),
            CCA_ERR_INVALID);
        assert_int_equal(commit_wait(s, CCA_STORE_DIALOGS, bad_ids[i], NULL, d0),
                         CCA_ERR_INVALID);
        assert_int_equal(remove_wait(s, CCA_STORE_DIALOGS, bad_ids[i]), CCA_ERR_INVALID);
    }
    assert_int_equal(q_long("SELECT count(*) FROM dialogs"), 1);
    assert_int_equal(q_long("SELECT count(*) FROM messages"), 2 * CCA_ARRAY_SIZE(texts));

    /* U+0000 (the store does not keep it) fails that change alone, not its batch. */
    bad = json_pack("{s:s%}", "name", "a\0b", (size_t)3);
    good = json_pack("{s:s}", "name", "fine");
    cca_uuid_new(gid);
    waiter_reset();
    cca_store_commit(s, CCA_STORE_OPERATORS, id, NULL, bad, on_done, NULL);
    cca_store_commit(s, CCA_STORE_OPERATORS, gid, NULL, good, on_done, NULL);
    wait_done(2);
    assert_int_equal(w.failed, 1);
    assert_read_equal(s, CCA_STORE_OPERATORS, gid, good);
    assert_int_equal(cca_store_read(s, CCA_STORE_OPERATORS, id, &doc, NULL, &err),
                     CCA_ERR_NOT_FOUND);
    /* The TEXT \u0000 (a backslash, then u0000), as a customer may type it, is kept. */
    json_decref(good);
    good = json_pack("{s:s}", "name", "a\\u0000b \\\\u0000");
    assert_int_equal(commit_wait(s, CCA_STORE_OPERATORS, gid, NULL, good), CCA_OK);
    assert_read_equal(s, CCA_STORE_OPERATORS, gid, good);
    cca_store_free(s);
    json_decref(d0);
    json_decref(d);
    json_decref(bad);
    json_decref(good);
}

/* ---- a bad change inside a pipelined batch ----------------------------------------- */

#define PB_MAX (CCA_STORE_PG_PIPELINE_MAX + 20) /* two pipeline segments */

/*
 * Commit @n operators as ONE batch, the one at @bad refused by the database
 * (a CHECK constraint on the name: SQLSTATE 23514), and check that only it
 * failed, the others were committed and the connection was kept. The batch is
 * made whole by holding the writer on a table lock (with one change of its
 * own) while it fills.
 */
static void pipelined_batch(struct cca_store *s, int n, int bad)
{
    static char ids[PB_MAX][37];
    static json_t *docs[PB_MAX];
    struct cca_error err = {0};
    double batches = metric(s, "cca_store_pg_batches_total{result=\"ok\"}");
    double sizes = metric(s, "cca_store_batch_size_count");
    double reconnects = metric(s, "cca_store_pg_reconnects_total");
    long rows = q_long("SELECT count(*) FROM operators");
    json_t *blocker = json_pack("{s:s}", "name", "first"), *doc = NULL;
    char bid[37];

    for (int i = 0; i < n; i++) {
        cca_uuid_new(ids[i]);
        docs[i] = json_pack("{s:s, s:i}", "name", i == bad ? "refused" : "ok", "i", i);
    }
    PQclear(q("BEGIN"));
    PQclear(q("LOCK TABLE operators IN SHARE MODE"));
    waiter_reset();
    cca_uuid_new(bid);
    cca_store_commit(s, CCA_STORE_OPERATORS, bid, NULL, blocker, on_done, NULL);
    for (int i = 0; i < 500; i++) {
        if (q_long("SELECT count(*) FROM pg_locks WHERE NOT granted") >= 1)
            break;
        usleep(10 * 1000);
    }
    assert_int_equal(q_long("SELECT count(*) FROM pg_locks WHERE NOT granted"), 1);
    for (int i = 0; i < n; i++)
        cca_store_commit(s, CCA_STORE_OPERATORS, ids[i], NULL, docs[i], on_done, NULL);
    PQclear(q("COMMIT"));
    wait_done(n + 1);

    assert_int_equal(w.failed, 1);
    assert_non_null(strstr(w.last_msg, "cca_test_refused"));
    /* the blocker's batch and ours; no reconnection */
    assert_int_equal(metric(s, "cca_store_pg_batches_total{result=\"ok\"}"), batches + 2);
    assert_int_equal(metric(s, "cca_store_batch_size_count"), sizes + 2);
    assert_int_equal(metric(s, "cca_store_pg_reconnects_total"), reconnects);
    assert_int_equal(q_long("SELECT count(*) FROM operators"), rows + n);
    for (int i = 0; i < n; i++) {
        if (i == bad)
            assert_int_equal(
                cca_store_read(s, CCA_STORE_OPERATORS, ids[i], &doc, NULL, &err),
                CCA_ERR_NOT_FOUND);
        else
            assert_read_equal(s, CCA_STORE_OPERATORS, ids[i], docs[i]);
        json_decref(docs[i]);
    }
    json_decref(blocker);
}

/*
 * A refused change in the middle of a pipelined batch (the server skips the
 * rest of the pipeline; rollback, each change alone), and one in the second
 * pipeline segment of a batch larger than CCA_STORE_PG_PIPELINE_MAX (the
 * first segment's writes, in the same transaction, are rolled back too).
 */
static void test_pipeline_bad_change(void **state)
{
    struct cca_store *s;
    json_t *op = json_pack("{s:s}", "name", "after");
    char id[37];

    (void)state;
    s = open_store();
    PQclear(q("ALTER TABLE operators ADD CONSTRAINT cca_test_refused"
              " CHECK (doc->>'name' <> 'refused')"));
    pipelined_batch(s, 20, 10);
    pipelined_batch(s, PB_MAX, CCA_STORE_PG_PIPELINE_MAX + 10);
    /* and the writer goes on */
    cca_uuid_new(id);
    assert_int_equal(commit_wait(s, CCA_STORE_OPERATORS, id, NULL, op), CCA_OK);
    cca_store_free(s);
    json_decref(op);
}

/* ---- a crash of the server in the middle of commits ------------------------------- */

#define CRASH_MAX 4000

struct crash_run {
    struct cca_store *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    int acked;   /* acknowledged (CCA_OK) */
    int failed;  /* reported failed */
    int pending; /* in flight */
    char ids[CRASH_MAX][37];
    json_t *docs[CRASH_MAX];
    bool ok[CRASH_MAX];
};

static struct crash_run cr;

static void crash_done(void *ctx, cca_rc rc, size_t bytes, const struct cca_error *err)
{
    intptr_t i = (intptr_t)ctx;

    (void)bytes;
    (void)err;
    pthread_mutex_lock(&cr.lock);
    if (rc == CCA_OK) {
        cr.acked++;
        cr.ok[i] = true;
    } else {
        assert_int_equal(rc, CCA_ERR_IO);
        cr.failed++;
    }
    cr.pending--;
    pthread_cond_broadcast(&cr.cond);
    pthread_mutex_unlock(&cr.lock);
}

/* Commits, 8 in flight at a time, until told to stop. */
static void *crash_writer(void *arg)
{
    (void)arg;
    for (intptr_t i = 0; i < CRASH_MAX; i++) {
        json_t *d;

        pthread_mutex_lock(&cr.lock);
        while (cr.pending >= 8 && !cr.stop)
            pthread_cond_wait(&cr.cond, &cr.lock);
        if (cr.stop) {
            pthread_mutex_unlock(&cr.lock);
            break;
        }
        cr.pending++;
        pthread_mutex_unlock(&cr.lock);
        d = new_dialog(cr.ids[i], "cust-crash");
        cr.docs[i] = with_turn(d, "crash");
        json_decref(d);
        cca_store_commit(cr.s, CCA_STORE_DIALOGS, cr.ids[i], NULL, cr.docs[i], crash_done,
                         (void *)i);
        usleep(2000);
    }
    pthread_mutex_lock(&cr.lock);
    while (cr.pending > 0)
        pthread_cond_wait(&cr.cond, &cr.lock);
    pthread_mutex_unlock(&cr.lock);
    return NULL;
}

static int counts(int *failed)
{
    int acked;

    pthread_mutex_lock(&cr.lock);
    acked = cr.acked;
    *failed = cr.failed;
    pthread_mutex_unlock(&cr.lock);
    return acked;
}

static void test_crash_and_recovery(void **state)
{
    struct cca_store_health h;
    struct cca_error err = {0};
    pthread_t t;
    json_t *all, *doc = NULL;
    int failed = 0, acked, acked_at_kill;
    int64_t t0, took;
    char nid[37];

    (void)state;
    memset(&cr, 0, sizeof(cr));
    pthread_mutex_init(&cr.lock, NULL);
    pthread_cond_init(&cr.cond, NULL);
    cr.s = open_store();
    pthread_create(&t, NULL, crash_writer, NULL);
    while (counts(&failed) < 50)
        usleep(10000);

    /* The server dies (immediate: no checkpoint, like a power cut for the clients). */
    acked_at_kill = counts(&failed);
    assert_int_equal(pg_sh("kill", NULL, 0), 0);
    t0 = cca_time_mono_ms();
    while (counts(&failed), failed < 5 && cca_time_mono_ms() - t0 < 20000)
        usleep(10000);
    assert_true(failed >= 5);
    /* Health says so within the probe's bound, and reads fail fast. */
    do {
        cca_store_get_health(cr.s, &h);
        usleep(50000);
    } while (h.writable && cca_time_mono_ms() - t0 < 5000);
    assert_false(h.writable);
    assert_non_null(strstr(h.last_error, "dialog storage"));
    fprintf(stderr, "# down: %s\n", h.last_error);
    t0 = cca_time_mono_ms();
    cca_uuid_new(nid);
    assert_int_equal(cca_store_read(cr.s, CCA_STORE_DIALOGS, nid, &doc, NULL, &err),
                     CCA_ERR_IO);
    assert_true(cca_time_mono_ms() - t0 < 1000);
    sleep(1); /* the backoff grows meanwhile */

    /* Back: the writer reconnects (backoff <= 5 s) and commits succeed again. */
    assert_int_equal(pg_sh("restart", NULL, 0), 0);
    t0 = cca_time_mono_ms();
    acked = counts(&failed);
    while (counts(&failed) < acked + 50 && cca_time_mono_ms() - t0 < 30000)
        usleep(20000);
    took = cca_time_mono_ms() - t0;
    assert_true(counts(&failed) >= acked + 50);
    fprintf(stderr,
            "# acked %d before the kill, %d failed, commits again %lld ms after "
            "the restart\n",
            acked_at_kill, failed, (long long)took);
    cca_store_get_health(cr.s, &h);
    assert_true(h.writable);
    assert_true(metric(cr.s, "cca_store_pg_reconnects_total") >= 1);
    assert_true(metric(cr.s, "cca_store_pg_batches_total{result=\"error\"}") >= 1);
    pthread_mutex_lock(&cr.lock);
    cr.stop = true;
    pthread_cond_broadcast(&cr.cond);
    pthread_mutex_unlock(&cr.lock);
    pthread_join(t, NULL);
    cca_store_free(cr.s);

    /* Every acknowledged change is there; nothing failed was reported OK. */
    cr.s = open_store();
    all = load_all(cr.s);
    for (int i = 0; i < CRASH_MAX && cr.docs[i] != NULL; i++) {
        char key[64];

        (void)snprintf(key, sizeof(key), "dialogs/%s", cr.ids[i]);
        if (cr.ok[i])
            assert_true(json_equal(json_object_get(all, key), cr.docs[i]));
        json_decref(cr.docs[i]);
    }
    json_decref(all);
    cca_store_free(cr.s);
}

/* ---- no secret in messages --------------------------------------------------------- */

static void test_no_password_in_messages(void **state)
{
    struct cca_store_pg_params p = params();
    struct cca_error err = {0};
    struct cca_store *s = NULL;
    char desc[200];

    (void)state;
    p.conninfo = "host=/nonexistent-cca dbname=postgres user=cca password=hunter2-secret";
    assert_int_equal(cca_store_pg_new(&p, &s, &err), CCA_ERR_IO);
    assert_null(strstr(err.msg, "hunter2"));
    fprintf(stderr, "# %s\n", err.msg);
    p.conninfo = "postgresql://cca:hunter2-secret@/postgres?host=/nonexistent-cca&bad=1";
    assert_int_not_equal(cca_store_pg_new(&p, &s, &err), CCA_OK);
    assert_null(strstr(err.msg, "hunter2"));
    p.conninfo = "host=/x password='hunter2-secret dbname";
    assert_int_equal(cca_store_pg_migrate(&p, NULL, NULL, &err), CCA_ERR_INVALID);
    assert_null(strstr(err.msg, "hunter2"));
    cca_store_pg_describe("host=db.example port=5433 dbname=cca user=u password=hunter2",
                          desc, sizeof(desc));
    assert_string_equal(desc, "host=db.example port=5433 dbname=cca");
    cca_store_pg_describe("postgresql://u:hunter2@db.example/cca", desc, sizeof(desc));
    assert_null(strstr(desc, "hunter2"));
    assert_non_null(strstr(desc, "dbname=cca"));
    p = params();
    p.pool_size = 1;
    assert_int_equal(cca_store_pg_new(&p, &s, &err), CCA_ERR_INVALID);
}

static void admin_finish(void)
{
    PQfinish(admin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_migrations, empty_db),
        cmocka_unit_test_setup(test_concurrent_migrations, empty_db),
        cmocka_unit_test_setup(test_instance_lock, empty_db),
        cmocka_unit_test_setup(test_fencing, empty_db),
        cmocka_unit_test_setup(test_fencing_token, empty_db),
        cmocka_unit_test_setup(test_round_trips, empty_db),
        cmocka_unit_test_setup(test_append_only, empty_db),
        cmocka_unit_test_setup(test_group_commit, empty_db),
        cmocka_unit_test_setup(test_remove, empty_db),
        cmocka_unit_test_setup(test_injection, empty_db),
        cmocka_unit_test_setup(test_pipeline_bad_change, empty_db),
        cmocka_unit_test_setup(test_no_password_in_messages, empty_db),
        cmocka_unit_test_setup(test_crash_and_recovery, empty_db),
    };

    return pg_test_main("/tmp/cca-pg-XXXXXX", tests, CCA_ARRAY_SIZE(tests), conninfo,
                        sizeof(conninfo), NULL, admin_finish);
}
