/* SPDX-License-Identifier: MIT */
/*
 * Support records (docs/RECORDS.md) against the real server binary, black box:
 * the demo data generator, the dialog and profile exports, customer profiles
 * and histories, the statistics, who may see what, bad input, clients that
 * leave in the middle of an export, and restarts. Offline mode (no LLM),
 * loopback ports picked by the kernel, temp dirs. The CSV is read by Python's
 * csv module (tests/integration/records_check.py), not by our own code.
 *
 * test_csv_matches_stats: `demo-data --operators 5 --customers 12 --dialogs
 *   150 --seed 7` into a store, the server on it; the CSV export recomputed by
 *   records_check.py equals GET /stats (counts, rates, CSAT, tokens and the
 *   nearest-rank percentiles of the four durations), also for a window
 *   (from/to) of both; bom=true adds EF BB BF and still parses.
 * test_json_exports: NDJSON and JSON have the CSV's dialogs in its order, each
 *   a whole dialog with messages and without metadata.idempotency; the
 *   filters customer_id, operator_id, status, agent, from/to (times and
 *   dates) give exactly the rows of the CSV that match; headers per format.
 * test_profiles: kind=customers/operators/all in CSV, JSON and NDJSON hold
 *   the demo's 12 customers and 5 operators, and no token anywhere.
 * test_customers: a dialog's customer_info makes the profile; PUT 201 then
 *   200, overwrites and clears; a later dialog changes nothing; 422
 *   bad bodies, 404 unknown customers; the history as txt, json and csv;
 *   limit bounds.
 * test_access: with keys, exports and /stats need an admin key; an operator
 *   gets their own statistics after escalate / take / reply / close / rate 5,
 *   403 on another's; the customer and history of their open dialog (200),
 *   not after its close nor of a customer they never had (403).
 * test_bad_input: 422 for an unknown format, a bad date, from after to, a
 *   date that does not exist, an operator id that is not a UUID, and more.
 * test_disconnect: 2,000 demo dialogs; clients that leave after the first
 *   chunk of NDJSON, CSV and JSON exports; the server still answers and
 *   exports everything, and stops cleanly (under ASan a leak or a
 *   use-after-free in the export stream fails the server's exit status).
 * test_restart: /stats and the CSV are the same after a clean restart and
 *   after SIGKILL (minus generated_at).
 */
#include "cca_test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cca/common.h"
#include "harness.h"

#define CLIENT "ck-rec-client-93ab7e"
#define ADMIN  "ak-rec-admin-5d21f0"
#define SECRET "rec-operator-secret-4e17"

#define DEMO_OPERATORS 5
#define DEMO_CUSTOMERS 12
#define DEMO_DIALOGS   150
#define BIG_DIALOGS    2000

#define CT_CSV    "text/csv; charset=utf-8"
#define CT_NDJSON "application/x-ndjson"
#define CT_JSON   "application/json"
#define CT_TXT    "text/plain; charset=utf-8"

#define DIALOG_COLUMNS                                                                   \
    "dialog_id,customer_id,customer_name,channel,agents,operators,operator_ids,status,"  \
    "created_at,closed_at,messages,tokens,first_response_s,queue_wait_s,"                \
    "first_human_response_s,handle_time_s,escalation_trigger,csat,close_reason"
#define PROFILE_COLUMNS                                                                  \
    "kind,id,name,full_name,city,birth_date,position,experience,phone,email,language,"   \
    "status,max_dialogs,created_at"
#define HISTORY_COLUMNS "dialog_id,timestamp,role,who,operator_id,agent,text"

/* ---- small helpers ------------------------------------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Every JSON value a test kept: freed at the end of the test (pool_free). */
static json_t *g_pool;

static json_t *keep(json_t *j)
{
    if (g_pool == NULL)
        g_pool = json_array();
    if (j != NULL)
        (void)json_array_append_new(g_pool, j);
    return j;
}

static int pool_free(void **state)
{
    json_decref(g_pool);
    g_pool = NULL;
    return h_kill_all(state);
}

static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
    static char buf[32][2048];
    static unsigned n;
    char *b = buf[n++ % 32];
    va_list ap;

    va_start(ap, f);
    (void)vsnprintf(b, 2048, f, ap);
    va_end(ap);
    return b;
}

/* "/api/v1/dialogue/<id><suffix>". */
static const char *dpath(const char *id, const char *suffix)
{
    return fmt("/api/v1/dialogue/%s%s", id, suffix);
}

/* @o at a dotted path ("owner.kind", "items.0.dialog_id"); NULL when absent. */
static json_t *jget(json_t *o, const char *path)
{
    char key[128];

    while (o != NULL && *path != '\0') {
        size_t n = strcspn(path, ".");

        (void)snprintf(key, sizeof(key), "%.*s", (int)n, path);
        if (json_is_array(o))
            o = json_array_get(o, (size_t)atoi(key));
        else
            o = json_object_get(o, key);
        path += n + (path[n] == '.');
    }
    return o;
}

static const char *js(json_t *o, const char *path)
{
    const char *s = json_string_value(jget(o, path));

    return s != NULL ? s : "(none)";
}

static long long ji(json_t *o, const char *path)
{
    json_t *v = jget(o, path);

    return json_is_integer(v) ? (long long)json_integer_value(v)
                              : (json_is_real(v) ? (long long)json_real_value(v) : -1);
}

static double jr(json_t *o, const char *path)
{
    json_t *v = jget(o, path);

    return json_is_number(v) ? json_number_value(v) : -1.0;
}

static void dump(const char *what, json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

    printf("# %s: %.3000s\n", what, s != NULL ? s : "(no JSON)");
    free(s);
}

/*
 * One JSON request with a bearer @auth (may be NULL); fails the test unless
 * the status is @want. Returns the body (borrowed from the pool; may be NULL).
 */
static json_t *expect_(int line, unsigned port, const char *method, const char *path,
                       const char *auth, const char *body, long want)
{
    json_t *j = NULL;
    long st = h_call(port, method, path, auth, body, &j);

    keep(j);
    if (st != want) {
        printf("# line %d: %s %s body=%.500s\n#   -> %ld (want %ld)\n", line, method,
               path, body ? body : "", st, want);
        dump("response", j);
        fail_msg("line %d: %s %s: status %ld, want %ld", line, method, path, st, want);
    }
    return j;
}

#define EXPECT(port, m, path, auth, body, want)                                          \
    expect_(__LINE__, port, m, path, auth, body, want)

/* The status must be @a or @b. */
static void expect_either_(int line, unsigned port, const char *method, const char *path,
                           const char *auth, const char *body, long a, long b)
{
    json_t *j = NULL;
    long st = h_call(port, method, path, auth, body, &j);

    keep(j);
    if (st != a && st != b) {
        dump("response", j);
        fail_msg("line %d: %s %s %.200s: status %ld, want %ld or %ld", line, method, path,
                 body ? body : "", st, a, b);
    }
}

#define EXPECT_EITHER(port, m, path, auth, body, a, b)                                   \
    expect_either_(__LINE__, port, m, path, auth, body, a, b)

#define ASSERT_JS(j, path, want)                                                         \
    do {                                                                                 \
        if (strcmp(js(j, path), want) != 0) {                                            \
            dump("object", j);                                                           \
            fail_msg("line %d: %s is '%s', want '%s'", __LINE__, path, js(j, path),      \
                     want);                                                              \
        }                                                                                \
    } while (0)

#define ASSERT_JI(j, path, want)                                                         \
    do {                                                                                 \
        if (ji(j, path) != (long long)(want)) {                                          \
            dump("object", j);                                                           \
            fail_msg("line %d: %s is %lld, want %lld", __LINE__, path, ji(j, path),      \
                     (long long)(want));                                                 \
        }                                                                                \
    } while (0)

/*
 * GET @path with a bearer @auth (may be NULL) into @resp (h_resp_free);
 * fails the test unless the status is @want (the body is printed).
 */
static void get_raw_(int line, unsigned port, const char *path, const char *auth,
                     long want, struct h_resp *resp)
{
    char hdr[300];
    const char *headers[] = {hdr, NULL};
    struct h_req req = {
        .method = "GET", .path = path, .headers = auth != NULL ? headers : NULL};

    if (auth != NULL)
        (void)snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", auth);
    if (h_request(port, &req, resp) != want) {
        printf("# line %d: GET %s -> %ld (want %ld): %.600s\n", line, path, resp->status,
               want, resp->raw ? resp->raw : "");
        fail_msg("line %d: GET %s: status %ld, want %ld", line, path, resp->status, want);
    }
}

#define GET_RAW(port, path, auth, want, resp)                                            \
    get_raw_(__LINE__, port, path, auth, want, resp)

/* The response header @name must be @want (exact, or a prefix when @prefix). */
static void header_is_(int line, const struct h_resp *r, const char *name,
                       const char *want, bool prefix)
{
    char v[512];

    if (!h_resp_header(r, name, v, sizeof(v)))
        fail_msg("line %d: no %s header", line, name);
    if (prefix ? strncmp(v, want, strlen(want)) != 0 : strcmp(v, want) != 0)
        fail_msg("line %d: %s is '%s', want %s'%s'", line, name, v,
                 prefix ? "a prefix " : "", want);
}

#define HEADER_IS(r, name, want) header_is_(__LINE__, r, name, want, false)

/*
 * A download: Content-Type @ctype, "Content-Disposition: attachment;
 * filename="<stem>-YYYYMMDD.<ext>"".
 */
static void download_headers_(int line, const struct h_resp *r, const char *ctype,
                              const char *stem, const char *ext)
{
    char v[512];
    char want[160];
    const char *name;
    size_t n;

    header_is_(line, r, "Content-Type", ctype, false);
    if (!h_resp_header(r, "Content-Disposition", v, sizeof(v)))
        fail_msg("line %d: no Content-Disposition", line);
    name = strstr(v, "filename=\"");
    if (strncmp(v, "attachment;", 11) != 0 || name == NULL)
        fail_msg("line %d: Content-Disposition '%s' is not an attachment with a file "
                 "name",
                 line, v);
    /* "<stem>-", eight digits, ".<ext>" and the closing quote */
    n = (size_t)snprintf(want, sizeof(want), "filename=\"%s-", stem);
    if (strncmp(name, want, n) != 0 || strspn(name + n, "0123456789") != 8 ||
        strcmp(name + n + 8, fmt(".%s\"", ext)) != 0)
        fail_msg("line %d: Content-Disposition '%s': want filename \"%s-<date>.%s\"",
                 line, v, stem, ext);
}

#define DOWNLOAD_HEADERS(r, ctype, stem, ext)                                            \
    download_headers_(__LINE__, r, ctype, stem, ext)

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* @s URL-encoded (one of 8 rotating buffers). */
static const char *esc(const char *s)
{
    static char buf[8][512];
    static unsigned n;
    char *b = buf[n++ % 8];
    char *e = curl_easy_escape(NULL, s, 0);

    assert_non_null(e);
    (void)snprintf(b, 512, "%s", e);
    curl_free(e);
    return b;
}

/*
 * Run tests/integration/records_check.py with @args (already shell-quoted);
 * its lines are echoed as TAP comments. Returns its exit status; the number
 * after "rows=" (if printed) goes to *ret_rows (may be NULL; -1 if none).
 */
static int check(long *ret_rows, const char *args)
{
    char cmd[4096];
    char line[2048];
    FILE *p;
    int st;

    (void)snprintf(cmd, sizeof(cmd),
                   "python3 '%s/tests/integration/records_check.py' %s 2>&1",
                   CCA_SOURCE_ROOT, args);
    if (ret_rows != NULL)
        *ret_rows = -1;
    p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p) != NULL) {
        const char *rows = strstr(line, "rows=");

        printf("%s%s", line[0] == '#' ? "" : "# ", line);
        if (rows != NULL && ret_rows != NULL)
            *ret_rows = atol(rows + 5);
    }
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Print the last lines of file @path as TAP comments. */
static void print_tail(const char *path)
{
    char *text = h_read_text(path);
    size_t n = strlen(text);
    const char *start = n > 3000 ? text + n - 3000 : text;

    for (const char *l = start; *l != '\0';) {
        size_t len = strcspn(l, "\n");

        printf("#   %.*s\n", (int)len, l);
        l += len + (l[len] == '\n');
    }
    free(text);
}

/*
 * PostgreSQL mode: `call-center-agents import --from-files @storage` into the
 * database of @dir (the harness's), so that the server started on @dir serves
 * the demo data demo-data wrote as files.
 */
static void import_demo(const char *dir, const char *storage)
{
    char url[1024] = "DATABASE_URL=";
    char datadir[600];
    char log[128];
    char *argv[] = {(char *)"call-center-agents", (char *)"import",
                    (char *)"--from-files", (char *)storage, NULL};
    char *envp[] = {datadir, (char *)"LOG_LEVEL=warning", (char *)"STORE=postgres", url,
                    NULL};
    int64_t t0 = cca_time_mono_ms();

    assert_true(h_database_url(dir, url + 13, sizeof(url) - 13));
    (void)snprintf(datadir, sizeof(datadir), "DATA_DIR=%s", getenv("CCA_DATA_DIR"));
    (void)snprintf(log, sizeof(log), "%s/import.log", dir);
    if (h_run(dir, argv, envp, log, 300000) != 0) {
        print_tail(log);
        fail_msg("call-center-agents import --from-files %s failed", storage);
    }
    printf("# postgres mode: demo data imported in %.1f s\n",
           (double)(cca_time_mono_ms() - t0) / 1000.0);
}

/*
 * `call-center-agents demo-data --operators @ops --customers @customers
 * --dialogs @dialogs --seed @seed --storage @dir/dialogs [--quiet]`, from @dir
 * (no stray .env), with the server's DATA_DIR; fails the test unless it exits 0
 * within 5 minutes.
 */
static void run_demo(const char *dir, int ops, int customers, int dialogs, int seed,
                     bool quiet)
{
    char storage[128];
    char datadir[600];
    char log[128];
    char a_ops[16];
    char a_cus[16];
    char a_dia[16];
    char a_seed[16];
    char *argv[] = {(char *)"call-center-agents",
                    (char *)"demo-data",
                    (char *)"--operators",
                    a_ops,
                    (char *)"--customers",
                    a_cus,
                    (char *)"--dialogs",
                    a_dia,
                    (char *)"--seed",
                    a_seed,
                    (char *)"--storage",
                    storage,
                    quiet ? (char *)"--quiet" : NULL,
                    NULL};
    char *envp[] = {datadir, (char *)"LOG_LEVEL=warning", NULL};
    int64_t t0 = cca_time_mono_ms();
    int status;

    assert_non_null(getenv("CCA_DATA_DIR"));
    (void)snprintf(storage, sizeof(storage), "%s/dialogs", dir);
    (void)snprintf(datadir, sizeof(datadir), "DATA_DIR=%s", getenv("CCA_DATA_DIR"));
    (void)snprintf(log, sizeof(log), "%s/demo.log", dir);
    (void)snprintf(a_ops, sizeof(a_ops), "%d", ops);
    (void)snprintf(a_cus, sizeof(a_cus), "%d", customers);
    (void)snprintf(a_dia, sizeof(a_dia), "%d", dialogs);
    (void)snprintf(a_seed, sizeof(a_seed), "%d", seed);
    status = h_run(dir, argv, envp, log, 300000);
    if (status != 0) {
        printf(
            "# demo-data exited with %d (-1: a signal, -2: out of time); its output:\n",
            status);
        print_tail(log);
        fail_msg(
            "call-center-agents demo-data --operators %d --customers %d --dialogs %d "
            "--seed %d --storage %s failed",
            ops, customers, dialogs, seed, storage);
    }
    printf("# demo-data: %d operators, %d customers, %d dialogs (seed %d) in %.1f s\n",
           ops, customers, dialogs, seed, (double)(cca_time_mono_ms() - t0) / 1000.0);
    if (h_store_pg())
        import_demo(dir, storage);
}

static const char *const g_env[] = {"API_KEYS=" CLIENT, "ADMIN_API_KEYS=" ADMIN,
                                    "OPERATOR_SECRET=" SECRET, NULL};

/* The demo's store in a new temp dir @dir and the server on it, with keys. */
static json_t *stats(unsigned port, const char *query);

/*
 * Wait until /stats stands still for a second (at most 15 s): the server may
 * change stored dialogs by itself just after start-up (the demo's assigned
 * dialogs whose operator never answered are requeued by the reply timeout).
 * Not a timing assertion: a server that never settles fails the comparisons
 * that follow.
 */
static void wait_quiet(unsigned port)
{
    json_t *last = stats(port, "");
    int same = 0;

    for (int i = 0; i < 60 && same < 4; i++) {
        json_t *now;

        sleep_ms(250);
        now = stats(port, "");
        same = json_equal(now, last) ? same + 1 : 0;
        json_decref(last);
        last = now;
    }
    json_decref(last);
}

static void demo_server(char dir[64], struct proc *srv, int dialogs, bool quiet)
{
    h_tmpdir(dir);
    run_demo(dir, DEMO_OPERATORS, DEMO_CUSTOMERS, dialogs, 7, quiet);
    h_server_start(srv, dir, g_env);
    wait_quiet(srv->port);
}

/* GET /api/v1/stats@query as admin, without generated_at (new reference). */
static json_t *stats(unsigned port, const char *query)
{
    json_t *j = NULL;
    long st = h_call(port, "GET", fmt("/api/v1/stats%s", query), ADMIN, NULL, &j);

    if (st != 200 || !json_is_object(j)) {
        dump("stats", j);
        json_decref(j);
        fail_msg("GET /api/v1/stats%s: %ld", query, st);
    }
    if (!json_is_string(json_object_get(j, "generated_at"))) {
        dump("stats", j);
        fail_msg("stats without generated_at");
    }
    (void)json_object_del(j, "generated_at");
    return j;
}

/*
 * The CSV export of the window @query ("" or "&from=...&to=..."; with bom=true
 * when @bom), with the /stats of the same window taken before and after it,
 * equal (nothing changed meanwhile: a server that still changes records by
 * itself gets three tries). The CSV goes to @csv_path, the statistics to
 * @stats_path. Returns the statistics (new reference).
 */
static json_t *csv_and_stats(unsigned port, const char *query_arg, bool bom,
                             const char *csv_arg, const char *stats_arg)
{
    char query[512];
    char csv_path[256];
    char stats_path[256];

    /* copies: @*_arg may live in fmt's rotating buffers */
    (void)snprintf(query, sizeof(query), "%s", query_arg);
    (void)snprintf(csv_path, sizeof(csv_path), "%s", csv_arg);
    (void)snprintf(stats_path, sizeof(stats_path), "%s", stats_arg);
    for (int attempt = 0; attempt < 3; attempt++) {
        json_t *before = stats(port, fmt("?%s", query));
        struct h_resp r;
        json_t *after;

        GET_RAW(
            port,
            fmt("/api/v1/exports/dialogs?format=csv%s%s", query, bom ? "&bom=true" : ""),
            ADMIN, 200, &r);
        DOWNLOAD_HEADERS(&r, CT_CSV, "dialogs", "csv");
        after = stats(port, fmt("?%s", query));
        if (json_equal(before, after)) {
            char *text = json_dumps(after, JSON_INDENT(1));

            write_file(csv_path, r.raw, r.raw_len);
            write_file(stats_path, text, strlen(text));
            free(text);
            h_resp_free(&r);
            json_decref(before);
            return after;
        }
        dump("stats before the export", before);
        dump("stats after the export", after);
        printf("# the statistics changed during the export (try %d)\n", attempt + 1);
        h_resp_free(&r);
        json_decref(before);
        json_decref(after);
        sleep_ms(500);
    }
    fail_msg("the statistics never stood still around a CSV export");
    return NULL;
}

/* Dialogs of an NDJSON body: every line a JSON object (new array). */
static json_t *ndjson_items(const char *body, size_t len)
{
    json_t *items = json_array();
    size_t line = 0;

    for (size_t i = 0; i < len;) {
        const char *nl = memchr(body + i, '\n', len - i);
        size_t n = nl != NULL ? (size_t)(nl - (body + i)) : len - i;
        json_error_t e;
        json_t *j;

        line++;
        if (nl == NULL)
            fail_msg("NDJSON line %zu does not end with a newline: %.200s", line,
                     body + i);
        j = json_loadb(body + i, n, 0, &e);
        if (!json_is_object(j))
            fail_msg("NDJSON line %zu is not a JSON object (%s): %.300s", line, e.text,
                     body + i);
        (void)json_array_append_new(items, j);
        i += n + 1;
    }
    return items;
}

/* Every exported dialog is whole: an id, messages, no metadata.idempotency. */
static void check_dialog_items(json_t *items)
{
    json_t *d;
    size_t i;

    json_array_foreach (items, i, d) {
        if (strlen(js(d, "dialog_id")) != 36 ||
            json_array_size(json_object_get(d, "messages")) == 0 ||
            !json_is_string(json_object_get(d, "created_at"))) {
            dump("item", d);
            fail_msg("exported dialog %zu has no dialog_id, messages or created_at", i);
        }
        if (jget(d, "metadata.idempotency") != NULL) {
            dump("item", d);
            fail_msg("exported dialog %s carries metadata.idempotency",
                     js(d, "dialog_id"));
        }
    }
}

/* The dialog ids of @items, one per line, into @path. */
static void write_ids(json_t *items, const char *path)
{
    FILE *f = fopen(path, "w");
    json_t *d;
    size_t i;

    assert_non_null(f);
    json_array_foreach (items, i, d)
        fprintf(f, "%s\n", js(d, "dialog_id"));
    assert_int_equal(fclose(f), 0);
}

/* The NDJSON export @query ("&..."), checked, as an array (new). */
static json_t *export_ndjson(unsigned port, const char *query)
{
    struct h_resp r;
    json_t *items;

    GET_RAW(port, fmt("/api/v1/exports/dialogs?format=ndjson%s", query), ADMIN, 200, &r);
    DOWNLOAD_HEADERS(&r, CT_NDJSON, "dialogs", "ndjson");
    items = ndjson_items(r.raw, r.raw_len);
    h_resp_free(&r);
    check_dialog_items(items);
    return items;
}

/* The JSON export @query ("&..."), checked (new array). */
static json_t *export_json(unsigned port, const char *query)
{
    struct h_resp r;
    json_t *items;

    GET_RAW(port, fmt("/api/v1/exports/dialogs?format=json%s", query), ADMIN, 200, &r);
    DOWNLOAD_HEADERS(&r, CT_JSON, "dialogs", "json");
    items = r.json;
    r.json = NULL;
    if (!json_is_array(items))
        fail_msg("the JSON export is not one JSON array: %.300s", r.raw);
    h_resp_free(&r);
    check_dialog_items(items);
    return items;
}

/* The ids of two arrays of dialogs are the same, in the same order. */
static void same_ids(const char *what, json_t *a, json_t *b)
{
    if (json_array_size(a) != json_array_size(b))
        fail_msg("%s: %zu against %zu dialogs", what, json_array_size(a),
                 json_array_size(b));
    for (size_t i = 0; i < json_array_size(a); i++) {
        if (strcmp(js(json_array_get(a, i), "dialog_id"),
                   js(json_array_get(b, i), "dialog_id")) != 0)
            fail_msg("%s: dialog %zu is %s against %s", what, i,
                     js(json_array_get(a, i), "dialog_id"),
                     js(json_array_get(b, i), "dialog_id"));
    }
}

/* ---- a: the CSV export recomputes /stats -------------------------------------- */

static void test_csv_matches_stats(void **state)
{
    char dir[64];
    struct proc srv = {0};
    struct h_resp plain;
    struct h_resp bom;
    json_t *st;
    json_t *all;
    const char *from;
    const char *to;
    long rows;

    (void)state;
    demo_server(dir, &srv, DEMO_DIALOGS, false);
    st = keep(csv_and_stats(srv.port, "", false, fmt("%s/dialogs.csv", dir),
                            fmt("%s/stats.json", dir)));
    dump("stats", st);
    ASSERT_JI(st, "dialogs.total", DEMO_DIALOGS);
    /* a demo worth checking: figures in every section */
    if (ji(st, "ai.closed") < 1 || ji(st, "escalations.total") < 1 ||
        ji(st, "csat.count") < 1 || ji(st, "handle_time_s.count") < 1 ||
        ji(st, "queue_wait_s.count") < 1 || ji(st, "first_response_s.count") < 1)
        fail_msg("the demo's 150 dialogs leave a section of /stats empty");
    assert_int_equal(
        check(&rows, fmt("rows '%s/dialogs.csv' --columns %s", dir, DIALOG_COLUMNS)), 0);
    assert_int_equal(rows, DEMO_DIALOGS);
    assert_int_equal(check(NULL, fmt("stats '%s/dialogs.csv' '%s/stats.json'", dir, dir)),
                     0);

    /* a window: the middle third of the dialogs by created_at */
    all = keep(export_json(srv.port, ""));
    assert_int_equal(json_array_size(all), DEMO_DIALOGS);
    from = js(json_array_get(all, DEMO_DIALOGS / 3), "created_at");
    to = js(json_array_get(all, 2 * DEMO_DIALOGS / 3), "created_at");
    printf("# window %s .. %s\n", from, to);
    st = keep(csv_and_stats(srv.port, fmt("&from=%s&to=%s", esc(from), esc(to)), false,
                            fmt("%s/window.csv", dir), fmt("%s/window.json", dir)));
    ASSERT_JS(st, "from", from);
    if (ji(st, "dialogs.total") <= 0 || ji(st, "dialogs.total") >= DEMO_DIALOGS)
        fail_msg("the window holds %lld of %d dialogs", ji(st, "dialogs.total"),
                 DEMO_DIALOGS);
    assert_int_equal(check(NULL, fmt("stats '%s/window.csv' '%s/window.json'", dir, dir)),
                     0);
    assert_int_equal(
        check(NULL, fmt("rows '%s/window.csv' --columns %s", dir, DIALOG_COLUMNS)), 0);

    /* bom=true: EF BB BF, then the same bytes as without; still parses */
    for (int attempt = 0;; attempt++) {
        struct h_resp again;
        bool still;

        GET_RAW(srv.port, "/api/v1/exports/dialogs?format=csv", ADMIN, 200, &plain);
        GET_RAW(srv.port, "/api/v1/exports/dialogs?format=csv&bom=true", ADMIN, 200,
                &bom);
        GET_RAW(srv.port, "/api/v1/exports/dialogs?format=csv", ADMIN, 200, &again);
        still = again.raw_len == plain.raw_len &&
                memcmp(again.raw, plain.raw, plain.raw_len) == 0;
        h_resp_free(&again);
        if (still)
            break;
        h_resp_free(&plain);
        h_resp_free(&bom);
        if (attempt == 2)
            fail_msg("the CSV export never stood still");
        sleep_ms(500);
    }
    DOWNLOAD_HEADERS(&bom, CT_CSV, "dialogs", "csv");
    if (bom.raw_len < 3 || memcmp(bom.raw, "\xEF\xBB\xBF", 3) != 0)
        fail_msg("bom=true: the body starts %02x %02x %02x", (unsigned char)bom.raw[0],
                 (unsigned char)bom.raw[1], (unsigned char)bom.raw[2]);
    if (plain.raw_len >= 3 && memcmp(plain.raw, "\xEF\xBB\xBF", 3) == 0)
        fail_msg("a byte order mark without bom=true");
    if (bom.raw_len != plain.raw_len + 3 ||
        memcmp(bom.raw + 3, plain.raw, plain.raw_len) != 0)
        fail_msg("bom=true changes more than the first three bytes (%zu against %zu)",
                 bom.raw_len, plain.raw_len);
    if (strncmp(plain.raw, DIALOG_COLUMNS "\r\n", strlen(DIALOG_COLUMNS) + 2) != 0)
        fail_msg("the CSV does not start with its header and CRLF: %.300s", plain.raw);
    h_resp_free(&plain);
    h_resp_free(&bom);
    /* and Python reads the file with its BOM (utf-8-sig) into the same figures */
    keep(csv_and_stats(srv.port, "", true, fmt("%s/bom.csv", dir),
                       fmt("%s/bom.json", dir)));
    assert_int_equal(check(NULL, fmt("stats '%s/bom.csv' '%s/bom.json'", dir, dir)), 0);
    {
        char *head = h_read_text(fmt("%s/bom.csv", dir));

        assert_memory_equal(head, "\xEF\xBB\xBF" DIALOG_COLUMNS,
                            3 + strlen(DIALOG_COLUMNS));
        free(head);
    }
    GET_RAW(srv.port, "/api/v1/exports/dialogs?format=csv&bom=false", ADMIN, 200, &plain);
    assert_true(plain.raw_len >= 3 && memcmp(plain.raw, "\xEF\xBB\xBF", 3) != 0);
    h_resp_free(&plain);
    assert_int_equal(h_stop(&srv), 0);
    h_remove_tmpdirs();
}

/* ---- b: NDJSON and JSON, filters --------------------------------------------- */

/* The first value found at @key of an operator transition in @items. */
static const char *an_operator(json_t *items)
{
    json_t *d;
    size_t i;

    json_array_foreach (items, i, d) {
        json_t *t;
        size_t k;

        json_array_foreach (jget(d, "metadata.transitions"), k, t) {
            if (strcmp(js(t, "to"), "operator") == 0 &&
                json_is_string(json_object_get(t, "operator_id")))
                return js(t, "operator_id");
        }
    }
    return NULL;
}

/* The agent_type of the first AI message of the @nth dialog with one. */
static const char *an_agent(json_t *items, int nth)
{
    json_t *d;
    size_t i;

    json_array_foreach (items, i, d) {
        json_t *m;
        size_t k;

        json_array_foreach (json_object_get(d, "messages"), k, m) {
            if (strcmp(js(m, "role"), "agent") == 0 &&
                json_is_string(json_object_get(m, "agent_type"))) {
                if (nth-- == 0)
                    return js(m, "agent_type");
                break;
            }
        }
    }
    return NULL;
}

/*
 * The export filtered by @query (curl-escaped "&k=v..."): NDJSON ids equal
 * the rows of the full CSV at @csv that records_check.py finds with @args;
 * JSON and CSV exports of the same filter hold the same number of dialogs.
 */
static void check_filter(unsigned port, const char *dir, const char *csv,
                         const char *query_arg, const char *args_arg)
{
    char query[512];
    char args[512];
    json_t *nd;
    json_t *arr;
    struct h_resp r;
    long rows;

    /* copies: @*_arg may live in fmt's rotating buffers */
    (void)snprintf(query, sizeof(query), "%s", query_arg);
    (void)snprintf(args, sizeof(args), "%s", args_arg);
    nd = export_ndjson(port, query);
    arr = export_json(port, query);

    write_ids(nd, fmt("%s/got.ids", dir));
    if (check(NULL, fmt("subset '%s' '%s/got.ids' --label '%s' %s", csv, dir, query,
                        args)) != 0)
        fail_msg("filter %s: the NDJSON export is not the CSV's subset", query);
    same_ids(fmt("filter %s: JSON against NDJSON", query), arr, nd);
    GET_RAW(port, fmt("/api/v1/exports/dialogs?format=csv%s", query), ADMIN, 200, &r);
    write_file(fmt("%s/sub.csv", dir), r.raw, r.raw_len);
    h_resp_free(&r);
    assert_int_equal(
        check(&rows, fmt("rows '%s/sub.csv' --columns %s", dir, DIALOG_COLUMNS)), 0);
    if (rows != (long)json_array_size(nd))
        fail_msg("filter %s: CSV %ld rows, NDJSON %zu dialogs", query, rows,
                 json_array_size(nd));
    json_decref(nd);
    json_decref(arr);
}

static void test_json_exports(void **state)
{
    char dir[64];
    struct proc srv = {0};
    char csv[128];
    char idem[37];
    const char *idem_hdrs[] = {"Authorization: Bearer " CLIENT,
                               "Idempotency-Key: rec-idem-7f3c1a", NULL};
    struct h_req req;
    struct h_resp r;
    json_t *nd;
    json_t *arr;
    json_t *d;
    json_t *doc;
    const char *cid;
    const char *op;
    const char *agent;
    const char *from;
    const char *to;
    char day[11];
    size_t i;
    size_t n;
    long rows;
    bool found = false;

    (void)state;
    demo_server(dir, &srv, DEMO_DIALOGS, true);
    /* one dialog of ours with a stored idempotency record */
    d = EXPECT(
        srv.port, "POST", "/api/v1/dialogue/create", CLIENT,
        "{\"customer_id\":\"idem-customer\",\"customer_info\":{\"name\":\"Idem\"}}", 201);
    (void)snprintf(idem, sizeof(idem), "%s", js(d, "dialog_id"));
    req = (struct h_req){.method = "POST",
                         .path = dpath(idem, "/message"),
                         .body = "{\"message\":\"Не работает интернет\"}",
                         .headers = idem_hdrs};
    h_request(srv.port, &req, &r);
    if (r.status != 200 && r.status != 202)
        fail_msg("POST message with an Idempotency-Key: %ld %.300s", r.status, r.raw);
    h_resp_free(&r);
    doc = EXPECT(srv.port, "GET", dpath(idem, ""), ADMIN, NULL, 200);
    printf("# GET /dialogue shows metadata.idempotency: %s\n",
           jget(doc, "metadata.idempotency") != NULL ? "yes" : "no");

    (void)snprintf(csv, sizeof(csv), "%s/dialogs.csv", dir);
    keep(csv_and_stats(srv.port, "", false, csv, fmt("%s/stats.json", dir)));
    assert_int_equal(check(&rows, fmt("rows '%s' --columns %s", csv, DIALOG_COLUMNS)), 0);
    assert_int_equal(rows, DEMO_DIALOGS + 1);

    nd = keep(export_ndjson(srv.port, ""));
    arr = keep(export_json(srv.port, ""));
    n = json_array_size(nd);
    assert_int_equal(n, DEMO_DIALOGS + 1);
    same_ids("JSON against NDJSON", arr, nd);
    for (i = 0; i < n; i++) {
        if (!json_equal(json_array_get(nd, i), json_array_get(arr, i)))
            fail_msg("dialog %zu differs between NDJSON and JSON", i);
    }
    /* the CSV's dialogs, in its order */
    write_ids(nd, fmt("%s/got.ids", dir));
    assert_int_equal(
        check(NULL, fmt("subset '%s' '%s/got.ids' --label all --nonempty", csv, dir)), 0);
    json_array_foreach (nd, i, d) {
        if (strcmp(js(d, "dialog_id"), idem) == 0) {
            found = true;
            if (json_array_size(json_object_get(d, "messages")) < 1)
                fail_msg("our dialog has no messages in the export");
        }
    }
    assert_true(found);

    /* the filters, each against the CSV */
    cid = js(json_array_get(nd, 0), "customer_id");
    op = an_operator(nd);
    agent = an_agent(nd, 0);
    assert_non_null(op);
    assert_non_null(agent);
    from = js(json_array_get(nd, n / 3), "created_at");
    to = js(json_array_get(nd, 2 * n / 3), "created_at");
    (void)snprintf(day, sizeof(day), "%.10s",
                   js(json_array_get(nd, n / 2), "created_at"));
    check_filter(srv.port, dir, csv, fmt("&customer_id=%s", esc(cid)),
                 fmt("--customer_id '%s' --proper", cid));
    check_filter(srv.port, dir, csv, "&customer_id=idem-customer",
                 "--customer_id idem-customer --proper");
    check_filter(srv.port, dir, csv, fmt("&operator_id=%s", op),
                 fmt("--operator_id %s --proper", op));
    check_filter(srv.port, dir, csv, "&status=closed", "--status closed --proper");
    check_filter(srv.port, dir, csv, "&status=active", "--status active");
    check_filter(srv.port, dir, csv, fmt("&agent=%s", agent),
                 fmt("--agent %s --proper", agent));
    check_filter(srv.port, dir, csv, "&agent=sales", "--agent sales");
    check_filter(srv.port, dir, csv, "&agent=supervisor", "--agent supervisor");
    check_filter(srv.port, dir, csv, fmt("&from=%s&to=%s", esc(from), esc(to)),
                 fmt("--from %s --to %s --proper", from, to));
    check_filter(srv.port, dir, csv, fmt("&from=%s", day),
                 fmt("--from %s --nonempty", day));
    check_filter(srv.port, dir, csv, fmt("&to=%s", day), fmt("--to %s --nonempty", day));
    check_filter(srv.port, dir, csv, fmt("&status=closed&agent=%s", agent),
                 fmt("--status closed --agent %s", agent));
    check_filter(srv.port, dir, csv, fmt("&operator_id=%s&status=closed", op),
                 fmt("--operator_id %s --status closed", op));
    /* no match: an empty export ("[]" for JSON, nothing for NDJSON, a header for CSV) */
    GET_RAW(srv.port, "/api/v1/exports/dialogs?format=json&customer_id=nobody-at-all",
            ADMIN, 200, &r);
    if (strcmp(r.raw, "[]\n") != 0)
        fail_msg("an empty JSON export is '%s', want \"[]\\n\"", r.raw);
    h_resp_free(&r);
    GET_RAW(srv.port, "/api/v1/exports/dialogs?format=ndjson&customer_id=nobody-at-all",
            ADMIN, 200, &r);
    assert_int_equal(r.raw_len, 0);
    h_resp_free(&r);
    GET_RAW(srv.port, "/api/v1/exports/dialogs?format=csv&customer_id=nobody-at-all",
            ADMIN, 200, &r);
    assert_string_equal(r.raw, DIALOG_COLUMNS "\r\n");
    h_resp_free(&r);
    /* no format: CSV */
    GET_RAW(srv.port, "/api/v1/exports/dialogs", ADMIN, 200, &r);
    DOWNLOAD_HEADERS(&r, CT_CSV, "dialogs", "csv");
    h_resp_free(&r);
    assert_int_equal(h_stop(&srv), 0);
    h_remove_tmpdirs();
}

/* ---- c: the profile database ------------------------------------------------- */

/* Items of @items whose "kind" is @kind. */
static size_t count_kind(json_t *items, const char *kind)
{
    json_t *it;
    size_t i;
    size_t n = 0;

    json_array_foreach (items, i, it)
        n += strcmp(js(it, "kind"), kind) == 0;
    return n;
}

static void no_token(const char *what, const struct h_resp *r)
{
    if (memmem(r->raw, r->raw_len, "token", 5) != NULL ||
        memmem(r->raw, r->raw_len, "cco_", 4) != NULL)
        fail_msg("%s: the body mentions a token: %.400s", what,
                 (const char *)memmem(r->raw, r->raw_len, "token", 5));
}

static void test_profiles(void **state)
{
    static const struct {
        const char *kind;
        const char *item_kind; /* NULL: both */
        size_t customers;
        size_t operators;
    } cases[] = {
        {"customers", "customer", DEMO_CUSTOMERS, 0},
        {"operators", "operator", 0, DEMO_OPERATORS},
        {"all", NULL, DEMO_CUSTOMERS, DEMO_OPERATORS},
        {NULL, NULL, DEMO_CUSTOMERS, DEMO_OPERATORS}, /* no kind: all */
    };
    char dir[64];
    struct proc srv = {0};
    struct h_resp r;
    json_t *items;
    json_t *list;
    long rows;

    (void)state;
    demo_server(dir, &srv, DEMO_DIALOGS, true);
    list = EXPECT(srv.port, "GET", "/api/v1/operators", ADMIN, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(list, "items")), DEMO_OPERATORS);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *q = cases[c].kind != NULL ? fmt("&kind=%s", cases[c].kind) : "";
        size_t want = cases[c].customers + cases[c].operators;

        /* CSV */
        GET_RAW(srv.port, fmt("/api/v1/exports/profiles?format=csv%s", q), ADMIN, 200,
                &r);
        DOWNLOAD_HEADERS(&r, CT_CSV, "profiles", "csv");
        no_token(fmt("profiles CSV%s", q), &r);
        write_file(fmt("%s/profiles.csv", dir), r.raw, r.raw_len);
        h_resp_free(&r);
        assert_int_equal(
            check(&rows, fmt("rows '%s/profiles.csv' --columns %s%s%s", dir,
                             PROFILE_COLUMNS, cases[c].item_kind ? " --kind " : "",
                             cases[c].item_kind ? cases[c].item_kind : "")),
            0);
        if (rows != (long)want)
            fail_msg("profiles CSV%s: %ld rows, want %zu", q, rows, want);

        /* JSON */
        GET_RAW(srv.port, fmt("/api/v1/exports/profiles?format=json%s", q), ADMIN, 200,
                &r);
        DOWNLOAD_HEADERS(&r, CT_JSON, "profiles", "json");
        no_token(fmt("profiles JSON%s", q), &r);
        items = keep(r.json);
        r.json = NULL;
        if (!json_is_array(items))
            fail_msg("profiles JSON%s is not an array: %.300s", q, r.raw);
        h_resp_free(&r);
        if (count_kind(items, "customer") != cases[c].customers ||
            count_kind(items, "operator") != cases[c].operators ||
            json_array_size(items) != want) {
            dump("profiles", items);
            fail_msg("profiles JSON%s: %zu customers, %zu operators of %zu items; want "
                     "%zu and %zu",
                     q, count_kind(items, "customer"), count_kind(items, "operator"),
                     json_array_size(items), cases[c].customers, cases[c].operators);
        }
        /* operators first, each with an id */
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *it = json_array_get(items, i);

            if (strcmp(js(it, "id"), "(none)") == 0 ||
                (i < cases[c].operators && strcmp(js(it, "kind"), "operator") != 0)) {
                dump("item", it);
                fail_msg("profiles JSON%s: item %zu has no id or is out of order", q, i);
            }
        }

        /* NDJSON */
        GET_RAW(srv.port, fmt("/api/v1/exports/profiles?format=ndjson%s", q), ADMIN, 200,
                &r);
        DOWNLOAD_HEADERS(&r, CT_NDJSON, "profiles", "ndjson");
        no_token(fmt("profiles NDJSON%s", q), &r);
        items = keep(ndjson_items(r.raw, r.raw_len));
        h_resp_free(&r);
        assert_int_equal(json_array_size(items), want);
    }
    /* kind must be one of three */
    EXPECT(srv.port, "GET", "/api/v1/exports/profiles?kind=robots", ADMIN, NULL, 422);
    EXPECT(srv.port, "GET", "/api/v1/exports/profiles?format=txt", ADMIN, NULL, 422);
    assert_int_equal(h_stop(&srv), 0);
    h_remove_tmpdirs();
}

/* A customer_id one character too long (51). */
static const char *long_id(void)
{
    static char id[52];

    memset(id, 'x', 51);
    id[51] = '\0';
    return id;
}

/* ---- d: customers ------------------------------------------------------------- */

/* GET /customers/@cid until @path is @want (profiles are filled after the
 * dialog's commit), at most 3 s. Returns the last answer. */
static json_t *wait_customer(unsigned port, const char *cid, const char *path,
                             const char *want)
{
    json_t *j = NULL;

    for (int i = 0; i < 150; i++) {
        j = EXPECT(port, "GET", fmt("/api/v1/customers/%s", cid), CLIENT, NULL, 200);
        if (strcmp(js(j, path), want) == 0)
            return j;
        sleep_ms(20);
    }
    dump("customer", j);
    fail_msg("customer %s: %s is '%s', want '%s'", cid, path, js(j, path), want);
    return NULL;
}

static bool has_dialog(json_t *list, const char *id)
{
    json_t *d;
    size_t i;

    json_array_foreach (list, i, d) {
        if (strcmp(js(d, "dialog_id"), id) == 0)
            return true;
    }
    return false;
}

static void test_customers(void **state)
{
    static const char *const bad_bodies[] = {
        "{}",
        "{\"phone\":\"no digits here\"}",
        "{\"email\":\"not-an-email\"}",
        "{\"language\":\"fr\"}",
        "{\"nickname\":\"Vanya\"}",
        "{\"birth_date\":\"2026-13-45\"}",
        "{\"full_name\":42}",
        "{\"experience\":500}",
        "[\"full_name\"]",
    };
    char dir[64];
    struct proc srv = {0};
    char d1[37];
    char d2[37];
    char d3[37];
    json_t *j;
    struct h_resp r;
    long rows;
    char *p;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, g_env);

    /* a dialog's customer_info makes the profile */
    j = EXPECT(srv.port, "POST", "/api/v1/dialogue/create", CLIENT,
               "{\"customer_id\":\"cust-d\",\"customer_info\":{\"name\":\"Иван Петров\","
               "\"phone\":\"+7 900 123-45-67\",\"email\":\"ivan@example.com\"},"
               "\"initial_message\":\"Здравствуйте, не работает интернет дома\"}",
               201);
    (void)snprintf(d1, sizeof(d1), "%s", js(j, "dialog_id"));
    j = wait_customer(srv.port, "cust-d", "customer.full_name", "Иван Петров");
    ASSERT_JS(j, "customer.customer_id", "cust-d");
    ASSERT_JS(j, "customer.phone", "+7 900 123-45-67");
    ASSERT_JS(j, "customer.email", "ivan@example.com");
    ASSERT_JI(j, "dialog_count", 1);
    assert_true(has_dialog(json_object_get(j, "dialogs"), d1));
    assert_true(json_is_string(jget(j, "customer.created_at")));

    /* PUT: 201 for a new id, then 200; it overwrites */
    j = EXPECT(srv.port, "PUT", "/api/v1/customers/new-customer-1", CLIENT,
               "{\"city\":\"Казань\",\"full_name\":\"Олег\"}", 201);
    ASSERT_JS(j, "city", "Казань");
    j = EXPECT(srv.port, "PUT", "/api/v1/customers/new-customer-1", CLIENT,
               "{\"city\":\"Москва\"}", 200);
    ASSERT_JS(j, "city", "Москва");
    ASSERT_JS(j, "full_name", "Олег"); /* a field not named is kept */
    j = EXPECT(srv.port, "GET", "/api/v1/customers/new-customer-1", CLIENT, NULL, 200);
    ASSERT_JS(j, "customer.city", "Москва");
    ASSERT_JI(j, "dialog_count", 0);
    assert_int_equal(json_array_size(json_object_get(j, "dialogs")), 0);

    /* PUT overwrites what the dialog filled, and null clears */
    j = EXPECT(srv.port, "PUT", "/api/v1/customers/cust-d", CLIENT,
               "{\"full_name\":\"Иван Иванович Петров\",\"email\":null,"
               "\"birth_date\":\"1990-05-17\",\"language\":\"ru\"}",
               200);
    ASSERT_JS(j, "full_name", "Иван Иванович Петров");
    assert_true(json_is_null(json_object_get(j, "email")));
    ASSERT_JS(j, "birth_date", "1990-05-17");

    /* a later dialog with another name, phone and email changes nothing: a profile
     * is made from its first dialog; what PUT wrote or cleared stays */
    j = EXPECT(srv.port, "POST", "/api/v1/dialogue/create", CLIENT,
               "{\"customer_id\":\"cust-d\",\"customer_info\":{\"name\":\"Someone Else\","
               "\"phone\":\"+7 999 000-00-00\",\"email\":\"new@example.com\"},"
               "\"initial_message\":\"Хочу подключить новый тариф\"}",
               201);
    (void)snprintf(d2, sizeof(d2), "%s", js(j, "dialog_id"));
    wait_quiet(srv.port); /* the profile's fill from the dialog, if any, is done */
    j = EXPECT(srv.port, "GET", "/api/v1/customers/cust-d", CLIENT, NULL, 200);
    assert_true(json_is_null(json_object_get(json_object_get(j, "customer"), "email")));
    ASSERT_JS(j, "customer.full_name", "Иван Иванович Петров");
    ASSERT_JS(j, "customer.phone", "+7 900 123-45-67");
    ASSERT_JI(j, "dialog_count", 2);
    assert_true(has_dialog(json_object_get(j, "dialogs"), d1));
    assert_true(has_dialog(json_object_get(j, "dialogs"), d2));
    /* the newest first */
    ASSERT_JS(j, "dialogs.0.dialog_id", d2);
    j = EXPECT(srv.port, "GET", "/api/v1/customers/cust-d?limit=1", CLIENT, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "dialogs")), 1);
    ASSERT_JI(j, "dialog_count", 2);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-d?limit=0", CLIENT, NULL, 422);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-d?limit=101", CLIENT, NULL, 422);

    /* bad bodies: 422 (400 for what is not JSON at all) */
    for (size_t i = 0; i < sizeof(bad_bodies) / sizeof(bad_bodies[0]); i++) {
        json_t *e = NULL;
        long st = h_call(srv.port, "PUT", "/api/v1/customers/cust-d", CLIENT,
                         bad_bodies[i], &e);

        keep(e);
        if (st != 422) {
            dump("response", e);
            fail_msg("PUT /customers/cust-d %s: %ld, want 422", bad_bodies[i], st);
        }
    }
    EXPECT_EITHER(srv.port, "PUT", "/api/v1/customers/cust-d", CLIENT, "not json", 400,
                  422);
    /* the profile is unchanged by them */
    j = EXPECT(srv.port, "GET", "/api/v1/customers/cust-d", CLIENT, NULL, 200);
    ASSERT_JS(j, "customer.full_name", "Иван Иванович Петров");

    /* unknown customers: 404 */
    EXPECT(srv.port, "GET", "/api/v1/customers/nobody-here", CLIENT, NULL, 404);
    EXPECT(srv.port, "GET", "/api/v1/customers/nobody-here/history", CLIENT, NULL, 404);
    EXPECT(srv.port, "GET", fmt("/api/v1/customers/%s", long_id()), CLIENT, NULL, 404);

    /* the history: txt (default), json, csv */
    j = EXPECT(srv.port, "POST", "/api/v1/dialogue/create", CLIENT,
               "{\"customer_id\":\"other-customer\",\"initial_message\":\"Привет\"}",
               201);
    (void)snprintf(d3, sizeof(d3), "%s", js(j, "dialog_id"));
    GET_RAW(srv.port, "/api/v1/customers/cust-d/history", CLIENT, 200, &r);
    DOWNLOAD_HEADERS(&r, CT_TXT, "history-cust-d", "txt");
    printf("# history:\n");
    for (p = r.raw; *p != '\0' && p < r.raw + 1500;) {
        size_t len = strcspn(p, "\n");

        printf("#   %.*s\n", (int)len, p);
        p += len + (p[len] == '\n');
    }
    if (strstr(r.raw, "cust-d") == NULL || strstr(r.raw, d1) == NULL ||
        strstr(r.raw, d2) == NULL || strstr(r.raw, d3) != NULL ||
        strstr(r.raw, "Здравствуйте, не работает интернет дома") == NULL ||
        strstr(r.raw, "Хочу подключить новый тариф") == NULL ||
        strstr(r.raw, "UTC] Customer") == NULL || strstr(r.raw, "UTC] AI ") == NULL ||
        strstr(r.raw, "Customer (Иван Петров)") == NULL)
        fail_msg("the TXT history lacks the customer's dialogs, messages, times or "
                 "authors");
    /* oldest first */
    assert_true(strstr(r.raw, d1) < strstr(r.raw, d2));
    h_resp_free(&r);
    GET_RAW(srv.port, "/api/v1/customers/cust-d/history?format=json", CLIENT, 200, &r);
    DOWNLOAD_HEADERS(&r, CT_JSON, "history-cust-d", "json");
    if (!json_is_array(r.json) || json_array_size(r.json) != 2)
        fail_msg("the JSON history is not an array of 2 dialogs: %.300s", r.raw);
    ASSERT_JS(r.json, "0.dialog_id", d1);
    ASSERT_JS(r.json, "1.dialog_id", d2);
    check_dialog_items(r.json);
    h_resp_free(&r);
    GET_RAW(srv.port, "/api/v1/customers/cust-d/history?format=csv", CLIENT, 200, &r);
    DOWNLOAD_HEADERS(&r, CT_CSV, "history-cust-d", "csv");
    write_file(fmt("%s/history.csv", dir), r.raw, r.raw_len);
    h_resp_free(&r);
    assert_int_equal(
        check(&rows, fmt("rows '%s/history.csv' --columns %s --contains '%s'", dir,
                         HISTORY_COLUMNS, "Хочу подключить новый тариф")),
        0);
    if (rows < 4)
        fail_msg("the CSV history has %ld rows for two dialogs with a turn each", rows);
    /* limit: 1 gives the newest dialog; 0 and 1001 are refused */
    GET_RAW(srv.port, "/api/v1/customers/cust-d/history?format=json&limit=1", CLIENT, 200,
            &r);
    if (!json_is_array(r.json) || json_array_size(r.json) != 1)
        fail_msg("history limit=1: %.300s", r.raw);
    ASSERT_JS(r.json, "0.dialog_id", d2);
    h_resp_free(&r);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-d/history?format=json&limit=1000",
           CLIENT, NULL, 200);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-d/history?limit=0", CLIENT, NULL,
           422);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-d/history?limit=1001", CLIENT, NULL,
           422);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-d/history?limit=ten", CLIENT, NULL,
           422);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-d/history?format=ndjson", CLIENT,
           NULL, 422);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-d/history?format=xml", CLIENT, NULL,
           422);
    /* a profile survives a restart */
    assert_int_equal(h_stop(&srv), 0);
    h_server_start(&srv, dir, g_env);
    j = EXPECT(srv.port, "GET", "/api/v1/customers/new-customer-1", CLIENT, NULL, 200);
    ASSERT_JS(j, "customer.city", "Москва");
    j = EXPECT(srv.port, "GET", "/api/v1/customers/cust-d", CLIENT, NULL, 200);
    ASSERT_JS(j, "customer.full_name", "Иван Иванович Петров");
    assert_true(json_is_null(json_object_get(json_object_get(j, "customer"), "email")));
    ASSERT_JI(j, "dialog_count", 2);
    assert_int_equal(h_stop(&srv), 0);
    h_remove_tmpdirs();
}

/* ---- e: who sees what ---------------------------------------------------------- */

struct op {
    char id[37];
    char token[128];
};

static void register_op(unsigned port, const char *name, struct op *o)
{
    json_t *j = EXPECT(port, "POST", "/api/v1/operators/register", NULL,
                       fmt("{\"secret\":\"" SECRET "\",\"name\":\"%s\","
                           "\"languages\":[\"ru\",\"en\"]}",
                           name),
                       201);

    (void)snprintf(o->id, sizeof(o->id), "%s", js(j, "operator_id"));
    (void)snprintf(o->token, sizeof(o->token), "%s", js(j, "token"));
    assert_int_equal(strlen(o->id), 36);
    assert_true(strlen(o->token) > 10);
}

/* GET the dialog until owner.kind is @kind (and owner.operator_id @op_id), 5 s. */
static json_t *wait_owner(unsigned port, const char *id, const char *kind,
                          const char *op_id)
{
    json_t *j = NULL;

    for (int i = 0; i < 250; i++) {
        json_decref(j);
        j = NULL;
        if (h_call(port, "GET", dpath(id, ""), ADMIN, NULL, &j) == 200 &&
            strcmp(js(j, "owner.kind"), kind) == 0 &&
            (op_id == NULL || strcmp(js(j, "owner.operator_id"), op_id) == 0))
            return keep(j);
        sleep_ms(20);
    }
    dump("dialog", j);
    fail_msg("dialog %s: owner is %s/%s, want %s/%s", id, js(j, "owner.kind"),
             js(j, "owner.operator_id"), kind, op_id ? op_id : "-");
    return NULL;
}

static void test_access(void **state)
{
    static const char *const admin_only[] = {
        "/api/v1/exports/dialogs",
        "/api/v1/exports/dialogs?format=ndjson",
        "/api/v1/exports/profiles",
        "/api/v1/stats",
    };
    char dir[64];
    struct proc srv = {0};
    struct op a;
    struct op b;
    char c1[37];
    char c2[37];
    json_t *j;
    json_t *st = NULL;
    struct h_resp r;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, g_env);
    register_op(srv.port, "Анна Петрова", &a);
    register_op(srv.port, "Bob Stone", &b);
    EXPECT(srv.port, "PUT", "/api/v1/operators/me/status", b.token,
           "{\"status\":\"offline\"}", 200);
    EXPECT(srv.port, "PUT", "/api/v1/operators/me/status", a.token,
           "{\"status\":\"available\"}", 200);

    /* exports and global stats: admin key only */
    for (size_t i = 0; i < sizeof(admin_only) / sizeof(admin_only[0]); i++) {
        EXPECT(srv.port, "GET", admin_only[i], CLIENT, NULL, 403);
        EXPECT(srv.port, "GET", admin_only[i], NULL, NULL, 401);
        EXPECT_EITHER(srv.port, "GET", admin_only[i], "ck-not-a-key-at-all", NULL, 401,
                      403);
        EXPECT_EITHER(srv.port, "GET", admin_only[i], a.token, NULL, 401, 403);
        EXPECT(srv.port, "GET", admin_only[i], ADMIN, NULL, 200);
    }

    /* the flow: escalate, A gets it, replies, closes, the customer rates 5 */
    j = EXPECT(srv.port, "POST", "/api/v1/dialogue/create", CLIENT,
               "{\"customer_id\":\"cust-e\",\"customer_info\":{\"name\":\"Мария\"}}",
               201);
    (void)snprintf(c1, sizeof(c1), "%s", js(j, "dialog_id"));
    EXPECT_EITHER(srv.port, "POST", dpath(c1, "/message"), CLIENT,
                  "{\"message\":\"Позовите оператора, пожалуйста\"}", 200, 202);
    (void)wait_owner(srv.port, c1, "operator", a.id);
    EXPECT(srv.port, "POST", dpath(c1, "/reply"), a.token,
           "{\"message\":\"Здравствуйте, это Анна. Чем помочь?\"}", 200);
    /* while the dialog is A's: A sees the customer and their history; B does not */
    GET_RAW(srv.port, "/api/v1/customers/cust-e/history", a.token, 200, &r);
    if (strstr(r.raw, "Здравствуйте, это Анна. Чем помочь?") == NULL ||
        strstr(r.raw, "Позовите оператора, пожалуйста") == NULL ||
        strstr(r.raw, "Operator ") == NULL)
        fail_msg("A's customer's history lacks the conversation: %.800s", r.raw);
    h_resp_free(&r);
    j = EXPECT(srv.port, "GET", "/api/v1/customers/cust-e", a.token, NULL, 200);
    ASSERT_JI(j, "dialog_count", 1);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-e/history", b.token, NULL, 403);
    EXPECT(srv.port, "POST", dpath(c1, "/close"), a.token, "{\"reason\":\"resolved\"}",
           200);
    EXPECT(srv.port, "POST", dpath(c1, "/rating"), CLIENT, "{\"score\":5}", 201);
    /* another customer whom A never had */
    j = EXPECT(srv.port, "POST", "/api/v1/dialogue/create", CLIENT,
               "{\"customer_id\":\"cust-other\",\"customer_info\":{\"name\":\"Пётр\"},"
               "\"initial_message\":\"Как оплатить счёт?\"}",
               201);
    (void)snprintf(c2, sizeof(c2), "%s", js(j, "dialog_id"));

    /* A's own statistics (the rating is counted after its commit: up to 3 s) */
    for (int i = 0; i < 150; i++) {
        st = EXPECT(srv.port, "GET", "/api/v1/operators/me/stats", a.token, NULL, 200);
        if (ji(st, "csat.count") == 1)
            break;
        sleep_ms(20);
    }
    dump("A's stats", st);
    ASSERT_JS(st, "operator_id", a.id);
    ASSERT_JI(st, "dialogs_handled", 1);
    ASSERT_JI(st, "closed", 1);
    ASSERT_JI(st, "open_now", 0);
    if (ji(st, "messages_sent") < 1)
        fail_msg("messages_sent is %lld, want >= 1", ji(st, "messages_sent"));
    ASSERT_JI(st, "csat.count", 1);
    if (jr(st, "csat.average") != 5.0)
        fail_msg("csat.average is %g, want 5", jr(st, "csat.average"));
    ASSERT_JI(st, "csat.distribution.5", 1);
    ASSERT_JI(st, "first_response_s.count", 1);
    ASSERT_JI(st, "handle_time_s.count", 1);
    if (!json_is_object(json_object_get(st, "time_in_status_s")))
        fail_msg("no time_in_status_s");
    /* the same through /operators/{id}/stats, for A and for an admin */
    j = EXPECT(srv.port, "GET", fmt("/api/v1/operators/%s/stats", a.id), a.token, NULL,
               200);
    ASSERT_JI(j, "dialogs_handled", 1);
    j = EXPECT(srv.port, "GET", fmt("/api/v1/operators/%s/stats", a.id), ADMIN, NULL,
               200);
    ASSERT_JI(j, "dialogs_handled", 1);
    ASSERT_JI(j, "csat.count", 1);
    /* B handled nothing */
    j = EXPECT(srv.port, "GET", "/api/v1/operators/me/stats", b.token, NULL, 200);
    ASSERT_JI(j, "dialogs_handled", 0);
    ASSERT_JI(j, "csat.count", 0);
    /* someone else's statistics: 403 */
    EXPECT(srv.port, "GET", fmt("/api/v1/operators/%s/stats", b.id), a.token, NULL, 403);
    EXPECT(srv.port, "GET", fmt("/api/v1/operators/%s/stats", a.id), b.token, NULL, 403);
    EXPECT(srv.port, "GET", fmt("/api/v1/operators/%s/stats", a.id), CLIENT, NULL, 403);
    EXPECT_EITHER(srv.port, "GET", "/api/v1/operators/me/stats", CLIENT, NULL, 401, 403);
    EXPECT(srv.port, "GET",
           "/api/v1/operators/00000000-0000-4000-8000-000000000000/stats", ADMIN, NULL,
           404);
    /* the global figures agree */
    j = EXPECT(srv.port, "GET", "/api/v1/stats", ADMIN, NULL, 200);
    ASSERT_JI(j, "dialogs.total", 2);
    ASSERT_JI(j, "escalations.by_trigger.customer_request", 1);
    ASSERT_JI(j, "csat.count", 1);
    ASSERT_JI(j, "ai.closed", 1);
    ASSERT_JI(j, "ai.contained", 0);

    /* closed: the customer is no longer A's; a key still sees the whole history */
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-e/history", a.token, NULL, 403);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-e", a.token, NULL, 403);
    GET_RAW(srv.port, "/api/v1/customers/cust-e/history", CLIENT, 200, &r);
    if (strstr(r.raw, "Operator ") == NULL || strstr(r.raw, "Rating: 5/5") == NULL)
        fail_msg("the customer's history lacks the operator or the rating: %.800s",
                 r.raw);
    h_resp_free(&r);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-other/history", a.token, NULL, 403);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-other", a.token, NULL, 403);
    EXPECT(srv.port, "PUT", "/api/v1/customers/cust-other", a.token,
           "{\"city\":\"Тверь\"}", 403);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-e/history", b.token, NULL, 403);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-other/history", CLIENT, NULL, 200);
    EXPECT(srv.port, "GET", "/api/v1/customers/cust-other/history", NULL, NULL, 401);
    assert_int_equal(h_stop(&srv), 0);
    h_remove_tmpdirs();
}

/* ---- f: bad input ------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    static const char *const bad[] = {
        "/api/v1/exports/dialogs?format=xml",
        "/api/v1/exports/dialogs?format=txt",
        "/api/v1/exports/dialogs?format=CSV",
        "/api/v1/exports/dialogs?from=yesterday",
        "/api/v1/exports/dialogs?from=2026-12-08&to=2026-12-01",
        "/api/v1/exports/dialogs?from=2026-12-01T10:00:00Z&to=2026-12-01T10:00:00Z",
        "/api/v1/exports/dialogs?to=2026-02-31",
        "/api/v1/exports/dialogs?from=2026-04-31",
        "/api/v1/exports/dialogs?from=2026-02-30T10:00:00Z",
        "/api/v1/exports/dialogs?from=2026-13-01",
        "/api/v1/exports/dialogs?from=2026-12-1",
        "/api/v1/exports/dialogs?operator_id=not-a-uuid",
        "/api/v1/exports/dialogs?status=sleeping",
        "/api/v1/exports/dialogs?agent=robot",
        "/api/v1/exports/dialogs?bom=maybe",
        "/api/v1/exports/profiles?format=xml",
        "/api/v1/exports/profiles?kind=robots",
        "/api/v1/stats?from=yesterday",
        "/api/v1/stats?to=2026-02-31",
        "/api/v1/stats?from=2026-12-08&to=2026-12-01",
    };
    char dir[64];
    struct proc srv = {0};
    json_t *j;
    int misses = 0;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, g_env);
    /* every one is tried, each miss printed; then the test fails if any missed */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *e = NULL;
        long st = h_call(srv.port, "GET", bad[i], ADMIN, NULL, &e);

        keep(e);
        if (st != 422 || strcmp(js(e, "code"), "validation_error") != 0) {
            printf("# FAILED: GET %s -> %ld, want 422 validation_error\n", bad[i], st);
            dump("response", e);
            misses++;
        }
    }
    /* a customer_id of 51 characters */
    j = EXPECT(srv.port, "GET", fmt("/api/v1/exports/dialogs?customer_id=%s", long_id()),
               ADMIN, NULL, 422);
    ASSERT_JS(j, "code", "validation_error");
    /* the good forms of the same parameters */
    EXPECT(srv.port, "GET", "/api/v1/exports/dialogs?from=2026-12-01&to=2026-12-01",
           ADMIN, NULL, 200); /* "to" a date: that whole day */
    EXPECT(srv.port, "GET",
           "/api/v1/exports/dialogs?from=2026-12-01T10:00:00Z&to=2026-12-02T00:00:00Z",
           ADMIN, NULL, 200);
    EXPECT(srv.port, "GET", "/api/v1/exports/dialogs?to=2024-02-29", ADMIN, NULL, 200);
    EXPECT(srv.port, "GET",
           "/api/v1/exports/dialogs?format=ndjson&operator_id="
           "00000000-0000-4000-8000-000000000000",
           ADMIN, NULL, 200);
    EXPECT(srv.port, "GET", "/api/v1/exports/dialogs?status=closed&agent=sales", ADMIN,
           NULL, 200);
    j = EXPECT(srv.port, "GET", "/api/v1/stats?from=2026-12-01&to=2026-12-01", ADMIN,
               NULL, 200);
    ASSERT_JS(j, "from", "2026-12-01T00:00:00.000Z");
    ASSERT_JS(j, "to", "2026-12-02T00:00:00.000Z");
    ASSERT_JI(j, "dialogs.total", 0);
    assert_true(json_is_null(jget(j, "first_response_s.p50")));
    assert_true(json_is_null(jget(j, "csat.average")));
    j = EXPECT(srv.port, "GET", "/api/v1/stats", ADMIN, NULL, 200);
    assert_true(json_is_null(json_object_get(j, "from")));
    assert_int_equal(h_stop(&srv), 0);
    if (misses > 0)
        fail_msg("%d bad requests were not refused with 422", misses);
    h_remove_tmpdirs();
}

/* ---- g: clients that leave mid-export ---------------------------------------- */

struct cut {
    size_t bytes;
    int chunks;
};

/* Take the first chunk, then refuse the next: libcurl ends the transfer. */
static size_t cut_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct cut *c = ud;

    (void)ptr;
    if (c->chunks++ > 0)
        return 0;
    c->bytes += size * nmemb;
    return size * nmemb;
}

/* GET @path as admin and hang up after the first chunk of the body. */
static void export_and_leave(unsigned port, const char *path)
{
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Authorization: Bearer " ADMIN);
    struct cut cut = {0};
    char url[512];
    long status = 0;
    CURLcode rc;

    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cut_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &cut);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 16384L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (status != 200 || rc != CURLE_WRITE_ERROR || cut.bytes == 0)
        fail_msg("GET %s: status %ld, curl '%s' after %zu bytes: want 200 and a cut "
                 "after the first chunk (is the export shorter than one chunk?)",
                 path, status, curl_easy_strerror(rc), cut.bytes);
}

/* An NDJSON export read slowly (a chunk every 20 ms) on its own thread. */
struct slow {
    unsigned port;
    atomic_size_t bytes;
    atomic_bool stop;
    long status;
    CURLcode rc;
};

static size_t slow_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct slow *s = ud;

    (void)ptr;
    if (atomic_load(&s->stop))
        return 0;
    atomic_fetch_add(&s->bytes, size * nmemb);
    sleep_ms(20);
    return size * nmemb;
}

/* A small receive buffer, so that the export is still being written at the stop. */
static int small_rcvbuf(void *ud, curl_socket_t fd, curlsocktype purpose)
{
    int size = 4096;

    (void)ud;
    (void)purpose;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    return CURL_SOCKOPT_OK;
}

static void *slow_reader(void *arg)
{
    struct slow *s = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Authorization: Bearer " ADMIN);
    char url[256];

    (void)snprintf(url, sizeof(url),
                   "http://127.0.0.1:%u/api/v1/exports/dialogs?format=ndjson", s->port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, slow_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 1024L);
    curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, small_rcvbuf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    s->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return NULL;
}

static void test_disconnect(void **state)
{
    char dir[64];
    struct proc srv = {0};
    struct h_resp r;
    json_t *items;
    json_t *st;
    long rows;

    (void)state;
    demo_server(dir, &srv, BIG_DIALOGS, true);
    for (int i = 0; i < 5; i++)
        export_and_leave(srv.port, "/api/v1/exports/dialogs?format=ndjson");
    for (int i = 0; i < 3; i++) {
        export_and_leave(srv.port, "/api/v1/exports/dialogs?format=json");
        export_and_leave(srv.port, "/api/v1/exports/dialogs?format=csv");
    }
    export_and_leave(srv.port,
                     "/api/v1/exports/dialogs?format=ndjson&status=closed&agent=sales");
    /* still answering, and a whole export after them */
    EXPECT(srv.port, "GET", "/api/v1/health", NULL, NULL, 200);
    st = keep(stats(srv.port, ""));
    ASSERT_JI(st, "dialogs.total", BIG_DIALOGS);
    items = keep(export_ndjson(srv.port, ""));
    assert_int_equal(json_array_size(items), BIG_DIALOGS);
    GET_RAW(srv.port, "/api/v1/exports/dialogs?format=csv", ADMIN, 200, &r);
    write_file(fmt("%s/dialogs.csv", dir), r.raw, r.raw_len);
    h_resp_free(&r);
    assert_int_equal(
        check(&rows, fmt("rows '%s/dialogs.csv' --columns %s", dir, DIALOG_COLUMNS)), 0);
    assert_int_equal(rows, BIG_DIALOGS);
    /*
     * A slow reader still connected when the server stops: the export is cut
     * and freed, and the exit is clean (under ASan a leak or a use-after-free
     * in the export stream fails it).
     */
    {
        struct slow slow = {.port = srv.port};
        pthread_t t;
        int rc;

        assert_int_equal(pthread_create(&t, NULL, slow_reader, &slow), 0);
        for (int i = 0; i < 500 && atomic_load(&slow.bytes) == 0; i++)
            sleep_ms(10);
        if (atomic_load(&slow.bytes) == 0) {
            atomic_store(&slow.stop, true);
            pthread_join(t, NULL);
            fail_msg("the slow export sent nothing in 5 s (status %ld)", slow.status);
        }
        rc = h_stop(&srv);
        atomic_store(&slow.stop, true);
        pthread_join(t, NULL);
        printf("# slow reader: %zu bytes before the stop, curl '%s'\n",
               atomic_load(&slow.bytes), curl_easy_strerror(slow.rc));
        assert_int_equal(rc, 0);
    }
    h_remove_tmpdirs();
}

/* ---- h: restarts --------------------------------------------------------------- */

static void compare_stats(const char *when, json_t *a, json_t *b)
{
    if (!json_equal(a, b)) {
        dump("stats before", a);
        dump(fmt("stats after %s", when), b);
        fail_msg("/stats differ after %s", when);
    }
}

static void test_restart(void **state)
{
    char dir[64];
    struct proc srv = {0};
    char c1[37];
    char c2[37];
    struct op a;
    struct h_resp r;
    json_t *before;
    json_t *after;
    json_t *j;
    char *csv;

    (void)state;
    demo_server(dir, &srv, DEMO_DIALOGS, true);
    /* changes made through the API too: a queued escalation, a closed rated one */
    register_op(srv.port, "Ольга", &a);
    j = EXPECT(srv.port, "POST", "/api/v1/dialogue/create", CLIENT,
               "{\"customer_id\":\"cust-h\",\"customer_info\":{\"name\":\"Лев\"},"
               "\"initial_message\":\"Не работает интернет\"}",
               201);
    (void)snprintf(c1, sizeof(c1), "%s", js(j, "dialog_id"));
    EXPECT(srv.port, "POST", dpath(c1, "/close"), CLIENT, "{\"reason\":\"resolved\"}",
           200);
    EXPECT(srv.port, "POST", dpath(c1, "/rating"), CLIENT, "{\"score\":4}", 201);
    j = EXPECT(srv.port, "POST", "/api/v1/dialogue/create", CLIENT,
               "{\"customer_id\":\"cust-h\",\"customer_info\":{\"name\":\"Лев\"}}", 201);
    (void)snprintf(c2, sizeof(c2), "%s", js(j, "dialog_id"));
    EXPECT(srv.port, "POST", dpath(c2, "/handoff"), CLIENT, "{\"to\":\"human\"}", 200);
    wait_quiet(srv.port);

    before = keep(stats(srv.port, ""));
    ASSERT_JI(before, "dialogs.total", DEMO_DIALOGS + 2);
    GET_RAW(srv.port, "/api/v1/exports/dialogs?format=csv", ADMIN, 200, &r);
    csv = r.raw;
    r.raw = NULL;
    h_resp_free(&r);
    j = keep(stats(srv.port, ""));
    compare_stats("nothing (two calls in a row)", before, j);

    /* a clean restart */
    assert_int_equal(h_stop(&srv), 0);
    h_server_start(&srv, dir, g_env);
    wait_quiet(srv.port);
    after = keep(stats(srv.port, ""));
    compare_stats("a restart", before, after);
    GET_RAW(srv.port, "/api/v1/exports/dialogs?format=csv", ADMIN, 200, &r);
    if (strcmp(r.raw, csv) != 0)
        fail_msg("the CSV export differs after a restart");
    h_resp_free(&r);

    /* SIGKILL: the journal's replay gives the same records */
    h_kill(&srv);
    h_server_start(&srv, dir, g_env);
    wait_quiet(srv.port);
    after = keep(stats(srv.port, ""));
    compare_stats("SIGKILL and a restart", before, after);
    GET_RAW(srv.port, "/api/v1/exports/dialogs?format=csv", ADMIN, 200, &r);
    if (strcmp(r.raw, csv) != 0)
        fail_msg("the CSV export differs after SIGKILL and a restart");
    h_resp_free(&r);
    free(csv);
    assert_int_equal(h_stop(&srv), 0);
    h_remove_tmpdirs();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_csv_matches_stats, pool_free),
        cmocka_unit_test_teardown(test_json_exports, pool_free),
        cmocka_unit_test_teardown(test_profiles, pool_free),
        cmocka_unit_test_teardown(test_customers, pool_free),
        cmocka_unit_test_teardown(test_access, pool_free),
        cmocka_unit_test_teardown(test_bad_input, pool_free),
        cmocka_unit_test_teardown(test_disconnect, pool_free),
        cmocka_unit_test_teardown(test_restart, pool_free),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    h_remove_tmpdirs();
    return rc;
}
