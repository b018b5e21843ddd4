/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>

#include "cca/dialog.h"
#include "cca/store.h"
#include "cca/store_file.h"
#include "harness.h"

static char tmpdirs[32][64];

void h_tmpdir(char dir[64])
{
    (void)snprintf(dir, 64, "/tmp/cca-it-XXXXXX");
    assert_non_null(mkdtemp(dir));
    for (size_t i = 0; i < sizeof(tmpdirs) / sizeof(tmpdirs[0]); i++) {
        if (tmpdirs[i][0] == '\0') {
            memcpy(tmpdirs[i], dir, 64);
            break;
        }
    }
}

/* ---- PostgreSQL mode (tests/pg/suite.sh, docs/internals/store_pg.md) ---- */

bool h_store_pg(void)
{
    const char *s = getenv("CCA_TEST_STORE");

    return s != NULL && strcmp(s, "postgres") == 0;
}

bool h_file_store(const char *why)
{
    if (!h_store_pg())
        return true;
    print_message("# skip in postgres mode: %s\n", why);
    return false;
}

int h_dialogs_listed(unsigned port, const char *auth)
{
    char cursor[256] = "";
    int n = 0;

    for (;;) {
        char path[512];
        json_t *j = NULL;
        const char *next;

        (void)snprintf(path, sizeof(path), "/api/v1/dialogues?limit=100%s%s",
                       cursor[0] ? "&cursor=" : "", cursor);
        if (h_call(port, "GET", path, auth, NULL, &j) != 200) {
            json_decref(j);
            return -1;
        }
        n += (int)json_array_size(json_object_get(j, "items"));
        next = json_string_value(json_object_get(j, "next_cursor"));
        (void)snprintf(cursor, sizeof(cursor), "%s", next != NULL ? next : "");
        json_decref(j);
        if (cursor[0] == '\0')
            return n;
    }
}

/*
 * The database of directory @dir: its last component with every byte outside
 * [a-z0-9] lowered or replaced by '_', then a hash (FNV-1a, 64 bits) of the
 * whole path, so that names differing only in case or punctuation differ. Only
 * [a-z0-9_], 63 bytes at most (PostgreSQL's NAMEDATALEN - 1).
 */
void h_database_name(const char *dir, char name[64])
{
    const char *base = strrchr(dir, '/');
    uint64_t h = 14695981039346656037ULL;
    size_t n = 0;

    for (const char *c = dir; *c != '\0'; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    base = base != NULL ? base + 1 : dir;
    for (; *base != '\0' && n < 40; base++) {
        char c = *base;

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        name[n++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '_';
    }
    (void)snprintf(name + n, 64 - n, "_%016" PRIx64, h);
    for (const char *c = name; *c != '\0'; c++)
        assert_true((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_');
}

/* The throwaway server's URL (CCA_TEST_DATABASE_URL), with dbname=@dbname. */
static void pg_conninfo(const char *dbname, char *out, size_t size)
{
    const char *base = getenv("CCA_TEST_DATABASE_URL");
    PQconninfoOption *opts;
    char *errmsg = NULL;
    size_t len = 0;

    if (base == NULL || base[0] == '\0')
        fail_msg(
            "CCA_TEST_STORE=postgres needs CCA_TEST_DATABASE_URL (tests/pg/suite.sh)");
    opts = PQconninfoParse(base, &errmsg);
    if (opts == NULL)
        fail_msg("CCA_TEST_DATABASE_URL: %s", errmsg != NULL ? errmsg : "out of memory");
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? dbname : o->val;

        if (v == NULL)
            continue;
        /* keyword='value', with ' and \ escaped by a backslash */
        len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%s%s='",
                                len > 0 ? " " : "", o->keyword);
        for (; *v != '\0' && len + 4 < size; v++) {
            if (*v == '\'' || *v == '\\')
                out[len++] = '\\';
            out[len++] = *v;
        }
        if (len + 2 >= size)
            fail_msg("CCA_TEST_DATABASE_URL is too long");
        out[len++] = '\'';
        out[len] = '\0';
    }
    PQconninfoFree(opts);
}

static void pg_quiet(void *arg, const char *message)
{
    (void)arg, (void)message; /* NOTICEs (DROP DATABASE IF EXISTS of none) */
}

/* A connection to the throwaway server's own database (the URL as given). */
static PGconn *pg_admin(void)
{
    PGconn *c = PQconnectdb(getenv("CCA_TEST_DATABASE_URL"));

    PQsetNoticeProcessor(c, pg_quiet, NULL);
    if (PQstatus(c) != CONNECTION_OK) {
        print_error("cannot connect to CCA_TEST_DATABASE_URL: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

bool h_database_url(const char *dir, char *url, size_t size)
{
    const char *param[1];
    char name[64];
    char sql[128];
    PGconn *c;
    PGresult *r;
    bool exists;

    url[0] = '\0';
    if (!h_store_pg())
        return false;
    h_database_name(dir, name);
    pg_conninfo(name, url, size);
    c = pg_admin();
    assert_non_null(c);
    param[0] = name;
    r = PQexecParams(c, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, param,
                     NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("pg_database: %s", PQerrorMessage(c));
    exists = PQntuples(r) > 0;
    PQclear(r);
    if (!exists) {
        const char *state;

        /* @name is [a-z0-9_] only (pg_dbname): quoted, it needs no escaping. */
        (void)snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", name);
        r = PQexec(c, sql);
        state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        /* 42P04: another process of the test created it meanwhile */
        if (PQresultStatus(r) != PGRES_COMMAND_OK &&
            (state == NULL || strcmp(state, "42P04") != 0))
            fail_msg("%s: %s", sql, PQerrorMessage(c));
        PQclear(r);
    }
    PQfinish(c);
    return true;
}

/* Drop the databases of h_tmpdir's directories (their servers are gone). */
static void pg_drop_tmpdirs(void)
{
    PGconn *c;

    if (!h_store_pg() || (c = pg_admin()) == NULL)
        return;
    for (size_t i = 0; i < sizeof(tmpdirs) / sizeof(tmpdirs[0]); i++) {
        char name[64];
        char sql[128];

        if (tmpdirs[i][0] == '\0')
            continue;
        h_database_name(tmpdirs[i], name);
        (void)snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)",
                       name);
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
}

void h_remove_tmpdirs(void)
{
    pg_drop_tmpdirs();
    for (size_t i = 0; i < sizeof(tmpdirs) / sizeof(tmpdirs[0]); i++) {
        char cmd[128];

        if (tmpdirs[i][0] == '\0')
            continue;
        (void)snprintf(cmd, sizeof(cmd), "rm -rf '%.63s'", tmpdirs[i]);
        (void)system(cmd);
        tmpdirs[i][0] = '\0';
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Poll @path until it contains @needle; return the file text (new) or fail. */
static char *wait_for(const char *path, const char *needle, pid_t pid)
{
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(path, "r");
        int status;

        if (f != NULL) {
            char *buf = calloc(1, 1 << 20);
            size_t n = fread(buf, 1, (1 << 20) - 1, f);

            fclose(f);
            buf[n] = '\0';
            if (strstr(buf, needle) != NULL)
                return buf;
            free(buf);
        }
        if (waitpid(pid, &status, WNOHANG) == pid)
            fail_msg("process %d exited before printing '%s' (see %s)", (int)pid, needle,
                     path);
        sleep_ms(10);
    }
    fail_msg("timeout waiting for '%s' in %s", needle, path);
    return NULL;
}

/* Children still running; a failed assertion leaves them for h_kill_all. */
static pid_t children[16];

static void track(pid_t pid, bool add)
{
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
        if (add ? children[i] == 0 : children[i] == pid) {
            children[i] = add ? pid : 0;
            return;
        }
    }
}

int h_kill_all(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
    return 0;
}

static pid_t spawn(const char *exe, char *const argv[], char *const envp[],
                   const char *log)
{
    pid_t pid;

    (void)unlink(log); /* never read a previous run's log */
    pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        (void)prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (fd < 0)
            _exit(99);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
        if (envp != NULL)
            execve(exe, argv, envp);
        else
            execv(exe, argv);
        _exit(99);
    }
    track(pid, true);
    return pid;
}

void h_fake_start(struct proc *p, const char *dir, unsigned latency_ms)
{
    const char *exe = getenv("FAKE_OPENAI");
    char lat[32];
    char *text;
    char *argv[] = {(char *)"fake_openai",
                    (char *)"--port",
                    (char *)"0",
                    (char *)"--latency-ms",
                    lat,
                    NULL};

    assert_non_null(exe);
    (void)snprintf(lat, sizeof(lat), "%u", latency_ms);
    (void)snprintf(p->log, sizeof(p->log), "%s/fake.log", dir);
    p->pid = spawn(exe, argv, NULL, p->log);
    text = wait_for(p->log, "port=", p->pid);
    p->port = (unsigned)atoi(strstr(text, "port=") + 5);
    free(text);
    assert_true(p->port > 0);
}

pid_t h_server_spawn(const char *dir, const char *const *env, const char *cmd,
                     const char *log)
{
    char *envp[64];
    char storage[128];
    char datadir[512];
    char *argv[] = {(char *)"call-center-agents", (char *)cmd, NULL};
    char dburl[1024] = "DATABASE_URL=";
    char cwd[512];
    int n = 0;
    pid_t pid;

    assert_non_null(getenv("CCA_SERVER"));
    assert_non_null(getenv("CCA_DATA_DIR"));
    /* The caller's settings first: getenv(3) takes the first of a repeated name. */
    for (int i = 0; env != NULL && env[i] != NULL && n < 56; i++)
        envp[n++] = (char *)env[i];
    if (h_database_url(dir, dburl + 13, sizeof(dburl) - 13)) {
        envp[n++] = (char *)"STORE=postgres";
        envp[n++] = dburl;
    }
    (void)snprintf(storage, sizeof(storage), "DIALOGS_STORAGE_PATH=%s/dialogs", dir);
    (void)snprintf(datadir, sizeof(datadir), "DATA_DIR=%s", getenv("CCA_DATA_DIR"));
    envp[n++] = (char *)"PORT=0";
    envp[n++] = (char *)"HOST=127.0.0.1";
    envp[n++] = storage;
    envp[n++] = datadir;
    envp[n++] = (char *)"LOG_LEVEL=info";
    envp[n] = NULL;
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    pid = spawn(getenv("CCA_SERVER"), argv, envp, log);
    assert_int_equal(chdir(cwd), 0);
    return pid;
}

int h_wait_exit(pid_t pid, long timeout_ms)
{
    int status = 0;

    for (long i = 0; i < timeout_ms / 10; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            track(pid, false);
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        sleep_ms(10);
    }
    return -2;
}

int h_run(const char *dir, char *const argv[], char *const envp[], const char *log,
          long timeout_ms)
{
    char cwd[512];
    pid_t pid;
    int st;

    assert_non_null(getenv("CCA_SERVER"));
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    pid = spawn(getenv("CCA_SERVER"), argv, envp, log);
    assert_int_equal(chdir(cwd), 0);
    st = h_wait_exit(pid, timeout_ms);
    if (st == -2) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        track(pid, false);
    }
    return st;
}

char *h_read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 1 << 20);
    size_t n;

    assert_non_null(text);
    if (f == NULL)
        return text;
    n = fread(text, 1, (1 << 20) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

void h_server_start(struct proc *p, const char *dir, const char *const *env)
{
    const char *exe = getenv("CCA_SERVER");
    const char *data = getenv("CCA_DATA_DIR");
    char *envp[64];
    char storage[128];
    char datadir[512];
    char dburl[1024] = "DATABASE_URL=";
    char *text;
    char *port;
    char *argv[] = {(char *)"call-center-agents", NULL};
    int n = 0;

    assert_non_null(exe);
    assert_non_null(data);
    (void)snprintf(storage, sizeof(storage), "DIALOGS_STORAGE_PATH=%s/dialogs", dir);
    (void)snprintf(datadir, sizeof(datadir), "DATA_DIR=%s", data);
    envp[n++] = (char *)"PORT=0";
    envp[n++] = (char *)"HOST=127.0.0.1";
    envp[n++] = storage;
    envp[n++] = datadir;
    envp[n++] = (char *)"LOG_LEVEL=info";
    for (int i = 0; env != NULL && env[i] != NULL && n < 58; i++)
        envp[n++] = (char *)env[i];
    /* After the caller's: a test's own STORE/DATABASE_URL wins (getenv(3)). */
    if (h_database_url(dir, dburl + 13, sizeof(dburl) - 13)) {
        envp[n++] = (char *)"STORE=postgres";
        envp[n++] = dburl;
    }
    envp[n] = NULL;
    (void)snprintf(p->log, sizeof(p->log), "%s/server.log", dir);
    /* Run from @dir so that no stray .env of the developer is read. */
    {
        char cwd[512];

        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_int_equal(chdir(dir), 0);
        p->pid = spawn(exe, argv, envp, p->log);
        assert_int_equal(chdir(cwd), 0);
    }
    text = wait_for(p->log, "event=listening", p->pid);
    port = strstr(strstr(text, "event=listening"), "port=");
    assert_non_null(port);
    p->port = (unsigned)atoi(port + 5);
    free(text);
    assert_true(p->port > 0);
}

void h_kill(struct proc *p)
{
    if (p->pid <= 0)
        return;
    track(p->pid, false);
    kill(p->pid, SIGKILL);
    (void)waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

/* The last lines of a child's log on stderr, as TAP comments. */
static void dump_log_tail(const char *path)
{
    char line[512];
    long lines = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL)
        lines++;
    rewind(f);
    for (long i = 0; fgets(line, sizeof(line), f) != NULL; i++) {
        if (i >= lines - 15)
            fprintf(stderr, "#   %s", line);
    }
    fclose(f);
}

int h_stop(struct proc *p)
{
    int status = 0;

    if (p->pid <= 0)
        return -1;
    track(p->pid, false);
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 3000; i++) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            /* Died by a signal: say which, with the end of its log, before failing. */
            fprintf(stderr, "# process died by signal %d; log %s:\n", WTERMSIG(status),
                    p->log);
            dump_log_tail(p->log);
            return -1;
        }
        sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    return -1;
}

struct buf {
    char *data;
    size_t len;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;

    b->data = realloc(b->data, b->len + n + 1);
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* Response headers, appended raw ("Name: value\r\n" lines), capped. */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct h_resp *r = ud;
    size_t n = size * nmemb;
    size_t have = strlen(r->headers);

    if (have + n < sizeof(r->headers)) {
        memcpy(r->headers + have, ptr, n);
        r->headers[have + n] = '\0';
    }
    return n;
}

long h_request(unsigned port, const struct h_req *req, struct h_resp *resp)
{
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    struct buf b = {calloc(1, 1), 0};
    char url[2048];
    char ct[256];

    memset(resp, 0, sizeof(*resp));
    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, req->path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (req->body != NULL) {
        (void)snprintf(ct, sizeof(ct), "Content-Type: %s",
                       req->ctype ? req->ctype : "application/json");
        hdrs = curl_slist_append(hdrs, ct);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE,
                         (long)(req->body_len ? req->body_len : strlen(req->body)));
    }
    for (const char *const *h = req->headers; h != NULL && *h != NULL; h++)
        hdrs = curl_slist_append(hdrs, *h);
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->json = json_loadb(b.data, b.len, 0, NULL);
    resp->raw = b.data;
    resp->raw_len = b.len;
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return resp->status;
}

bool h_resp_header(const struct h_resp *resp, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);

    for (const char *p = resp->headers; *p != '\0';) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol ? (size_t)(eol - p) : strlen(p);

        if (len > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;

            while (*v == ' ')
                v++;
            (void)snprintf(out, size, "%.*s", (int)(p + len - v), v);
            return true;
        }
        p += len + (eol ? 2 : 0);
    }
    return false;
}

void h_resp_free(struct h_resp *resp)
{
    json_decref(resp->json);
    free(resp->raw);
    resp->json = NULL;
    resp->raw = NULL;
}

long h_http(unsigned port, const char *method, const char *path, const char *body,
            const char *ctype, json_t **ret_json, char **ret_raw, char *ret_allow,
            size_t allow_size)
{
    struct h_req req = {.method = method, .path = path, .body = body, .ctype = ctype};
    struct h_resp resp;
    long status = h_request(port, &req, &resp);

    if (ret_allow != NULL && !h_resp_header(&resp, "Allow", ret_allow, allow_size))
        ret_allow[0] = '\0';
    if (ret_json != NULL) {
        *ret_json = resp.json;
        resp.json = NULL;
    }
    if (ret_raw != NULL) {
        *ret_raw = resp.raw;
        resp.raw = NULL;
    }
    h_resp_free(&resp);
    return status;
}

double h_metric(unsigned port, const char *series)
{
    char *raw = NULL;
    size_t n = strlen(series);
    double v = -1;

    if (h_http(port, "GET", "/metrics", NULL, NULL, NULL, &raw, NULL, 0) != 200) {
        free(raw);
        return -1;
    }
    for (const char *line = raw; line != NULL && *line != '\0';) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            v = strtod(line + n + 1, NULL);
            break;
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    free(raw);
    return v;
}

long h_fake_post(const struct proc *fake, const char *path, const char *body)
{
    return h_http(fake->port, "POST", path, body, NULL, NULL, NULL, NULL, 0);
}

json_t *h_fake_get(const struct proc *fake, const char *path)
{
    json_t *j = NULL;

    assert_int_equal(h_http(fake->port, "GET", path, NULL, NULL, &j, NULL, NULL, 0), 200);
    assert_non_null(j);
    return j;
}

int h_threads(pid_t pid)
{
    char path[64];
    char line[256];
    int n = -1;
    FILE *f;

    (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "Threads:", 8) == 0)
            n = atoi(line + 8);
    }
    fclose(f);
    return n;
}

void h_create(unsigned port, const char *initial, char id[37])
{
    char body[4096];
    json_t *j = NULL;
    long st;

    if (initial != NULL)
        (void)snprintf(
            body, sizeof(body),
            "{\"customer_info\":{\"name\":\"Test\"},\"initial_message\":\"%s\"}",
            initial);
    else
        (void)snprintf(body, sizeof(body), "{\"customer_info\":{\"name\":\"Test\"}}");
    st = h_http(port, "POST", "/api/v1/dialogue/create", body, NULL, &j, NULL, NULL, 0);
    assert_int_equal(st, 201);
    (void)snprintf(id, 37, "%s", json_string_value(json_object_get(j, "dialog_id")));
    json_decref(j);
}

char *h_dialog_file(const char *path, const char *id)
{
    struct cca_store_file_parsed parsed;
    json_t *strict;
    json_t *doc = NULL;
    char *bytes = NULL;
    char *out = NULL;
    size_t len = 0;
    size_t cap = 0;
    size_t n;
    FILE *f = fopen(path, "rb");

    if (f == NULL)
        return NULL;
    do {
        if (len == cap)
            bytes = realloc(bytes, cap = cap ? cap * 2 : 65536);
        n = fread(bytes + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    /* Exactly one JSON document, as any JSON tool reads it (no trailing data). */
    strict = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, NULL);
    if (strict != NULL &&
        cca_store_file_parse(CCA_STORE_DIALOGS, bytes, len, id, &doc, &parsed, NULL) ==
            CCA_OK &&
        !parsed.legacy)
        out = cca_dialog_dump(doc, &n);
    json_decref(strict);
    json_decref(doc);
    free(bytes);
    return out;
}

char *h_dialog_file_wait(const char *path, const char *id, const char *want)
{
    char *got = NULL;

    for (int i = 0; i < 300; i++) {
        free(got);
        got = h_dialog_file(path, id);
        if (got != NULL && strcmp(got, want) == 0)
            return got;
        sleep_ms(10);
    }
    return got;
}

/* ---- operators (issue 11): JSON calls with a bearer, Server-Sent Events ---- */

long h_call(unsigned port, const char *method, const char *path, const char *auth,
            const char *body, json_t **ret_json)
{
    char hdr[512];
    const char *headers[] = {hdr, NULL};
    struct h_req req = {.method = method,
                        .path = path,
                        .body = body,
                        .headers = auth != NULL ? headers : NULL};
    struct h_resp resp;
    long status;

    if (auth != NULL)
        (void)snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", auth);
    status = h_request(port, &req, &resp);
    if (ret_json != NULL) {
        *ret_json = resp.json;
        resp.json = NULL;
    }
    h_resp_free(&resp);
    return status;
}

struct h_sse {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    CURL *curl;
    struct curl_slist *hdrs;
    char url[512];
    long status;
    char ctype[128];
    bool body_seen;
    bool done;
    atomic_bool stop;
    char *buf; /* bytes of the frame being received */
    size_t len;
    json_t *frames; /* {"id","event","data"} */
    json_t *taken;  /* booleans, parallel to frames */
};

/* One complete frame (its lines, \n-separated, no trailing blank line). */
static void sse_frame(struct h_sse *s, char *text)
{
    char id[128] = "";
    char event[128] = "message";
    char *data = NULL;
    size_t dlen = 0;
    bool any = false;
    json_t *parsed;
    json_t *f;
    char *save = NULL;

    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *v = strchr(line, ':');
        size_t nlen = v ? (size_t)(v - line) : strlen(line);

        if (line[0] == ':' || nlen == 0)
            continue; /* a comment (heartbeat) */
        if (v != NULL) {
            v++;
            if (*v == ' ')
                v++;
        } else {
            v = line + nlen;
        }
        if (nlen == 2 && strncmp(line, "id", 2) == 0) {
            (void)snprintf(id, sizeof(id), "%s", v);
            any = true;
        } else if (nlen == 5 && strncmp(line, "event", 5) == 0) {
            (void)snprintf(event, sizeof(event), "%s", v);
            any = true;
        } else if (nlen == 4 && strncmp(line, "data", 4) == 0) {
            size_t vl = strlen(v);

            data = realloc(data, dlen + vl + 2);
            if (dlen > 0)
                data[dlen++] = '\n';
            memcpy(data + dlen, v, vl);
            dlen += vl;
            data[dlen] = '\0';
            any = true;
        }
    }
    if (!any)
        return; /* only retry: or comments */
    parsed = data != NULL ? json_loads(data, 0, NULL) : json_null();
    if (parsed == NULL)
        parsed = json_string(data);
    f = json_pack("{s:s, s:s, s:o}", "id", id, "event", event, "data", parsed);
    (void)json_array_append_new(s->frames, f);
    (void)json_array_append_new(s->taken, json_false());
    free(data);
}

static size_t sse_on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct h_sse *s = ud;
    size_t n = size * nmemb;

    if (atomic_load(&s->stop))
        return 0;
    pthread_mutex_lock(&s->mu);
    s->body_seen = true;
    for (size_t i = 0; i < n; i++) {
        if (ptr[i] == '\r')
            continue;
        s->buf = realloc(s->buf, s->len + 2);
        s->buf[s->len++] = ptr[i];
        s->buf[s->len] = '\0';
        if (s->len >= 2 && s->buf[s->len - 1] == '\n' && s->buf[s->len - 2] == '\n') {
            s->buf[s->len - 2] = '\0';
            sse_frame(s, s->buf);
            s->len = 0;
            s->buf[0] = '\0';
        }
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return n;
}

static size_t sse_on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct h_sse *s = ud;
    size_t n = size * nmemb;
    char line[512];

    (void)snprintf(line, sizeof(line), "%.*s", (int)(n < 511 ? n : 511), ptr);
    line[strcspn(line, "\r\n")] = '\0';
    pthread_mutex_lock(&s->mu);
    if (strncmp(line, "HTTP/", 5) == 0 && strchr(line, ' ') != NULL)
        s->status = atol(strchr(line, ' ') + 1);
    else if (strncasecmp(line, "Content-Type:", 13) == 0) {
        const char *v = line + 13;

        while (*v == ' ')
            v++;
        (void)snprintf(s->ctype, sizeof(s->ctype), "%.127s", v);
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int sse_on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c,
                           curl_off_t d)
{
    struct h_sse *s = ud;

    (void)a, (void)b, (void)c, (void)d;
    return atomic_load(&s->stop) ? 1 : 0;
}

static void *sse_thread(void *arg)
{
    struct h_sse *s = arg;

    (void)curl_easy_perform(s->curl);
    pthread_mutex_lock(&s->mu);
    s->done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Absolute CLOCK_REALTIME deadline @ms from now (for pthread_cond_timedwait). */
static struct timespec sse_deadline(long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

struct h_sse *h_sse_open(unsigned port, const char *path, const char *auth,
                         const char *last_event_id)
{
    struct h_sse *s = calloc(1, sizeof(*s));
    char hdr[600];
    struct timespec dl = sse_deadline(5000);

    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->frames = json_array();
    s->taken = json_array();
    s->buf = calloc(1, 1);
    atomic_init(&s->stop, false);
    (void)snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%u%s", port, path);
    s->hdrs = curl_slist_append(s->hdrs, "Accept: text/event-stream");
    if (auth != NULL) {
        (void)snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", auth);
        s->hdrs = curl_slist_append(s->hdrs, hdr);
    }
    if (last_event_id != NULL) {
        (void)snprintf(hdr, sizeof(hdr), "Last-Event-ID: %s", last_event_id);
        s->hdrs = curl_slist_append(s->hdrs, hdr);
    }
    s->curl = curl_easy_init();
    curl_easy_setopt(s->curl, CURLOPT_URL, s->url);
    curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, sse_on_data);
    curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->curl, CURLOPT_HEADERFUNCTION, sse_on_header);
    curl_easy_setopt(s->curl, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(s->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(s->curl, CURLOPT_XFERINFOFUNCTION, sse_on_progress);
    curl_easy_setopt(s->curl, CURLOPT_XFERINFODATA, s);
    curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->curl, CURLOPT_TIMEOUT, 600L);
    if (pthread_create(&s->thread, NULL, sse_thread, s) != 0)
        abort();
    pthread_mutex_lock(&s->mu);
    while (!s->done && (s->status == 0 || (s->status == 200 && !s->body_seen))) {
        if (pthread_cond_timedwait(&s->cond, &s->mu, &dl) != 0)
            break;
    }
    pthread_mutex_unlock(&s->mu);
    return s;
}

long h_sse_status(struct h_sse *s, char *ctype)
{
    long st;

    pthread_mutex_lock(&s->mu);
    st = s->status;
    if (ctype != NULL)
        (void)snprintf(ctype, 128, "%s", s->ctype);
    pthread_mutex_unlock(&s->mu);
    return st;
}

static bool sse_match(json_t *f, const char *type, const char *dialog_id)
{
    const char *ev = json_string_value(json_object_get(f, "event"));
    json_t *inner = json_object_get(json_object_get(f, "data"), "data");
    const char *did = json_string_value(json_object_get(inner, "dialog_id"));

    if (type != NULL && (ev == NULL || strcmp(ev, type) != 0))
        return false;
    return dialog_id == NULL || (did != NULL && strcmp(did, dialog_id) == 0);
}

json_t *h_sse_wait(struct h_sse *s, const char *type, const char *dialog_id,
                   long timeout_ms)
{
    struct timespec dl = sse_deadline(timeout_ms);
    json_t *got = NULL;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (size_t i = 0; i < json_array_size(s->frames); i++) {
            json_t *f = json_array_get(s->frames, i);

            if (!json_is_true(json_array_get(s->taken, i)) &&
                sse_match(f, type, dialog_id)) {
                (void)json_array_set_new(s->taken, i, json_true());
                got = json_deep_copy(f);
                break;
            }
        }
        if (got != NULL || s->done)
            break;
        if (pthread_cond_timedwait(&s->cond, &s->mu, &dl) != 0)
            break;
    }
    pthread_mutex_unlock(&s->mu);
    return got;
}

size_t h_sse_count(struct h_sse *s, const char *type, const char *dialog_id)
{
    size_t n = 0;

    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < json_array_size(s->frames); i++)
        n += sse_match(json_array_get(s->frames, i), type, dialog_id);
    pthread_mutex_unlock(&s->mu);
    return n;
}

json_t *h_sse_frames(struct h_sse *s)
{
    json_t *copy;

    pthread_mutex_lock(&s->mu);
    copy = json_deep_copy(s->frames);
    pthread_mutex_unlock(&s->mu);
    return copy;
}

void h_sse_close(struct h_sse *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stop, true);
    (void)pthread_join(s->thread, NULL);
    curl_easy_cleanup(s->curl);
    curl_slist_free_all(s->hdrs);
    json_decref(s->frames);
    json_decref(s->taken);
    free(s->buf);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
