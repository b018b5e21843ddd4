/* SPDX-License-Identifier: MIT */
/*
 * Crash consistency: the real server, driven by 16 concurrent clients creating
 * dialogs and sending messages, is killed with SIGKILL at random moments and
 * restarted on the same DIALOGS_STORAGE_PATH, round after round.
 *
 * After every kill, before the restart: every <uuid>.json is exactly one JSON
 * document (RFC 8259) that is a valid dialog, checked twice: by jansson here
 * and by Python's json.load over the directory, the way an ops script reads
 * it; temporary files of interrupted checkpoints are counted. After every
 * restart (the journal replayed into the files): no temporary file is left;
 * every file is valid, is named after its dialog_id, and GET serves
 * the dialog it holds byte for byte; every request that got a 2xx is on disk with exactly
 * the content its response reported (dialog id, created_at, customer name; customer text,
 * message id and agent reply of each turn); each dialog holds its customer messages in
 * the order they were sent, with no gap and no extra; no text and no message id
 * appears twice. Requests whose response never arrived may or may not be on disk
 * (killed after the write, before the reply): counted as unacknowledged_on_disk,
 * never as losses, and held to the same rules from then on.
 *
 * Two modes: offline (no OPENAI_API_KEY) and with the fake OpenAI (latency
 * 20-100 ms per round, so turns are waiting on the LLM at the kill; the test
 * checks that the replies came from it, degraded=false).
 *
 * Figures (TAP comments): acknowledged = 2xx responses; on_disk = of those, found
 * on disk with the reported content; unacknowledged = requests that got no
 * response (in flight at the kill, or sent after it and refused);
 * unacknowledged_on_disk = of those, found on disk; tmp_after_kill = temporary
 * files found between the kill and the restart, cut_appends_after_kill = files
 * ending in a cut change line then, kills_mid_write = rounds with at least one of
 * either (the kill fell inside a write); files_plain_json_checks = directories
 * that python3 -c 'json.load every *.json' accepted after a kill.
 *
 * The kill schedule comes from a seeded PRNG; the seed is printed as a TAP
 * comment and CCA_CRASH_SEED=<n> replays it (thread interleaving is not
 * replayable, the kill moments are). CCA_CRASH_ROUNDS=<n> overrides the number of
 * offline rounds (LLM rounds: a third of it, at least 5).
 */
#include "cca_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cca/common.h"
#include "cca/dialog.h"
#include "cca/mem.h"
#include "cca/store.h"
#include "cca/store_file.h"

#include "harness.h"

#define N_THREADS   16
#define ROUNDS_OFF  30
#define ROUNDS_LLM  10
#define MAX_DIAG    12   /* problem lines printed per mode */
#define ACK_WAIT_MS 2000 /* longest wait for an ack target before killing anyway */
#define FILE_CAP    (8 << 20)

static uint64_t g_seed;

/* ---- small helpers ------------------------------------------------------------------
 */

/* splitmix64: one PRNG step. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned rnd_below(uint64_t *s, unsigned n)
{
    return (unsigned)(rnd(s) % n);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Out of memory aborts (cca_x*): no cmocka assertion may run on a client thread. */
static char *xstrdup(const char *s)
{
    return cca_xstrdup(s != NULL ? s : "");
}

/*
 * Whole file into a new NUL-terminated buffer sized from fstat (meson sets
 * MALLOC_PERTURB_, which fills every allocation: no large fixed buffers); NULL if
 * unreadable or too large.
 */
static char *read_all(const char *path, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    size_t got = 0;

    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || st.st_size > FILE_CAP)
        goto out;
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

        if (n <= 0) {
            free(buf);
            buf = NULL;
            goto out;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    *ret_len = got;
out:
    close(fd);
    return buf;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool str_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* ".<anything>.tmp": the store's temporary file pattern (store_file.c is_tmp_file). */
static bool is_tmp_name(const char *name)
{
    size_t len = strlen(name);

    return name[0] == '.' && len > 4 && strcmp(name + len - 4, ".tmp") == 0;
}

/* "<canonical uuid>.json": the id into @id. */
static bool is_dialog_name(const char *name, char id[37])
{
    char canon[37];

    if (strlen(name) != 36 + 5 || strcmp(name + 36, ".json") != 0)
        return false;
    memcpy(id, name, 36);
    id[36] = '\0';
    return cca_uuid_canonical(id, canon) && strcmp(canon, id) == 0;
}

/* ---- the model of what the clients did -----------------------------------------------
 */

enum disk_state { D_UNKNOWN = 0, D_PRESENT, D_ABSENT };

/*
 * struct item - one customer text sent to a dialog (the initial message of a
 * create, or a message). @msg_id and @reply: what the 2xx reported (@acked), or
 * what the disk showed the first time an unacknowledged one was found there.
 */
struct item {
    char *text;
    char *reply;
    char msg_id[37];
    bool acked;
    bool counted; /* acked and seen on disk: counted in on_disk once */
    enum disk_state disk;
};

/*
 * struct dlg - one dialog. @adopted: found on disk although its create got no
 * response (the kill hit after the write); such dialogs get no new messages.
 */
struct dlg {
    char id[37];
    char name[64];
    char created_at[40];
    bool adopted;
    bool create_counted;
    bool touched; /* changed in the current round */
    struct item *items;
    size_t n;
    size_t cap;
};

struct crash;

/* struct worker - one client thread; its dialogs persist across rounds. */
struct worker {
    struct crash *c;
    int idx;
    uint64_t rng;
    unsigned seq;
    struct dlg **dlgs;
    size_t n;
    size_t cap;
    char **pending; /* customer names of creates that got no response */
    size_t npend;
    size_t cappend;
    unsigned long bad; /* responses other than 2xx or no response */
    long bad_status;
    char bad_body[200];
};

struct crash {
    const char *mode;
    bool llm;
    char dir[64];
    char dialogs[128];
    struct proc srv;
    struct proc fake;
    int round;
    atomic_bool stop;
    atomic_ulong acks_round;
    atomic_ulong llm_replies; /* llm mode: acknowledged turns with degraded=false */
    struct worker w[N_THREADS];
    struct dlg **adopted;
    size_t nadopted;
    size_t capadopted;
    unsigned diag;
    /* figures */
    unsigned long acknowledged;
    unsigned long on_disk;
    unsigned long lost;
    unsigned long duplicated;
    unsigned long torn;
    unsigned long python_checks; /* directories python3 json.load accepted */
    unsigned long tmp_left;
    unsigned long unacked_sent;
    unsigned long unacked_on_disk;
    unsigned long tmp_after_kill;
    unsigned long cut_after_kill; /* files ending in a cut append after a kill */
    unsigned long mid_write_kills;
    unsigned long mismatched;
    unsigned long unexpected;
    unsigned long unknown_files;
    unsigned long get_mismatch;
    unsigned long get_checked;
    unsigned long bad_status;
    unsigned long planted;
    unsigned long llm_in_flight; /* llm mode: fake requests in flight at the kills */
    unsigned long files;
};

#define DIAG(c, ...)                                                                     \
    do {                                                                                 \
        if ((c)->diag++ < MAX_DIAG) {                                                    \
            printf("# crash: mode=%s round=%d: ", (c)->mode, (c)->round);                \
            printf(__VA_ARGS__);                                                         \
            printf("\n");                                                                \
        }                                                                                \
    } while (0)

static struct item *dlg_add(struct dlg *d, const char *text)
{
    struct item *it;

    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->items = cca_xrealloc(d->items, d->cap * sizeof(*d->items));
    }
    it = &d->items[d->n++];
    memset(it, 0, sizeof(*it));
    it->text = xstrdup(text);
    return it;
}

static void dlg_free(struct dlg *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->items[i].text);
        free(d->items[i].reply);
    }
    free(d->items);
    free(d);
}

static void push_ptr(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *arr = cca_xrealloc(*arr, *cap * sizeof(**arr));
    }
    (*arr)[(*n)++] = p;
}

/* ---- the client threads --------------------------------------------------------------
 */

static const char *const phrases[] = {
    "Не работает приложение, не могу войти в аккаунт",
    "Какие у вас тарифы и сколько стоит Профи?",
    "Хочу вернуть деньги, позовите руководителя!",
    "The app crashes when I try to log in",
    "What plans do you have and what do they cost?",
    "I want a refund, this is unacceptable",
    "hello",
    "Спасибо, понятно",
};

/* A unique customer text: a routing phrase and a tag naming mode, round, thread, seq. */
static void make_text(struct worker *w, char *buf, size_t size)
{
    (void)snprintf(buf, size, "%s [m-%s-r%d-t%d-s%u]",
                   phrases[rnd_below(&w->rng, CCA_ARRAY_SIZE(phrases))], w->c->mode,
                   w->c->round, w->idx, w->seq++);
}

static void note_bad(struct worker *w, const struct h_resp *resp)
{
    w->bad++;
    w->bad_status = resp->status;
    (void)snprintf(w->bad_body, sizeof(w->bad_body), "%.150s",
                   resp->raw != NULL ? resp->raw : "");
}

/* One create; false when the thread should stop (no response or an error). */
static bool do_create(struct worker *w)
{
    struct crash *c = w->c;
    char name[64];
    char text[256];
    bool initial = rnd_below(&w->rng, 2) == 0;
    json_t *body = json_object();
    char *bytes;
    struct h_req req = {.method = "POST", .path = "/api/v1/dialogue/create"};
    struct h_resp resp;
    bool ok = false;

    (void)snprintf(name, sizeof(name), "c-%s-r%d-t%d-s%u", c->mode, c->round, w->idx,
                   w->seq++);
    (void)json_object_set_new(body, "customer_info", json_pack("{s:s}", "name", name));
    if (initial) {
        make_text(w, text, sizeof(text));
        (void)json_object_set_new(body, "initial_message", json_string(text));
    }
    bytes = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    push_ptr((void ***)&w->pending, &w->npend, &w->cappend, xstrdup(name));
    req.body = bytes;
    if (h_request(c->srv.port, &req, &resp) == 201 && resp.json != NULL &&
        jstr(resp.json, "dialog_id") != NULL && jstr(resp.json, "created_at") != NULL &&
        (!initial || jstr(resp.json, "response") != NULL)) {
        struct dlg *d = cca_xcalloc(1, sizeof(*d));

        (void)snprintf(d->id, sizeof(d->id), "%s", jstr(resp.json, "dialog_id"));
        (void)snprintf(d->name, sizeof(d->name), "%s", name);
        (void)snprintf(d->created_at, sizeof(d->created_at), "%s",
                       jstr(resp.json, "created_at"));
        d->touched = true;
        if (initial) {
            struct item *it = dlg_add(d, text);

            it->acked = true;
            it->counted = true; /* part of the create: one request, one ack */
            it->reply = xstrdup(jstr(resp.json, "response"));
        }
        push_ptr((void ***)&w->dlgs, &w->n, &w->cap, d);
        free(w->pending[--w->npend]);
        if (c->llm && initial && json_is_false(json_object_get(resp.json, "degraded")))
            atomic_fetch_add(&c->llm_replies, 1);
        atomic_fetch_add(&c->acks_round, 1);
        ok = true;
    } else if (resp.status != 0) {
        note_bad(w, &resp);
    }
    h_resp_free(&resp);
    free(bytes);
    return ok;
}

/* One message to one of the thread's dialogs; false when the thread should stop. */
static bool do_message(struct worker *w)
{
    struct crash *c = w->c;
    struct dlg *d = w->dlgs[rnd_below(&w->rng, (unsigned)w->n)];
    char text[256];
    char path[128];
    json_t *body;
    char *bytes;
    struct item *it;
    struct h_req req = {.method = "POST"};
    struct h_resp resp;
    bool ok = false;

    make_text(w, text, sizeof(text));
    body = json_pack("{s:s}", "message", text);
    bytes = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    it = dlg_add(d, text);
    d->touched = true;
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", d->id);
    req.path = path;
    req.body = bytes;
    if (h_request(c->srv.port, &req, &resp) == 200 && resp.json != NULL &&
        str_eq(jstr(resp.json, "dialog_id"), d->id) &&
        jstr(resp.json, "message_id") != NULL && jstr(resp.json, "response") != NULL) {
        it->acked = true;
        it->reply = xstrdup(jstr(resp.json, "response"));
        (void)snprintf(it->msg_id, sizeof(it->msg_id), "%s",
                       jstr(resp.json, "message_id"));
        if (c->llm && json_is_false(json_object_get(resp.json, "degraded")))
            atomic_fetch_add(&c->llm_replies, 1);
        atomic_fetch_add(&c->acks_round, 1);
        ok = true;
    } else if (resp.status != 0) {
        note_bad(w, &resp);
    }
    h_resp_free(&resp);
    free(bytes);
    return ok;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    while (!atomic_load(&w->c->stop)) {
        bool create = w->n == 0 || rnd_below(&w->rng, 4) == 0;

        if (!(create ? do_create(w) : do_message(w)))
            break; /* the server is gone (or answered an error: counted) */
    }
    return NULL;
}

/* ---- inspecting the directory --------------------------------------------------------
 */

/* struct dfile - one <uuid>.json on disk. */
struct dfile {
    char id[37];
    json_t *doc;
    char *bytes;
    size_t len;
    bool matched;
};

struct disk {
    struct dfile *f;
    size_t n;
    size_t cap;
};

static int dfile_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dfile *)a)->id, ((const struct dfile *)b)->id);
}

/* Keep dialog @id (a canonical UUID) with its document @doc (borrowed) in @dk. */
static void disk_add(struct disk *dk, const char *id, json_t *doc)
{
    struct dfile *f;

    if (dk->n == dk->cap) {
        dk->cap = dk->cap ? dk->cap * 2 : 256;
        dk->f = realloc(dk->f, dk->cap * sizeof(*dk->f));
        assert_non_null(dk->f);
    }
    f = &dk->f[dk->n++];
    memcpy(f->id, id, 37);
    f->doc = json_incref(doc);
    f->bytes = cca_dialog_dump(doc, &f->len);
    f->matched = false;
}

static struct dfile *disk_find(struct disk *dk, const char *id)
{
    struct dfile key;

    (void)snprintf(key.id, sizeof(key.id), "%s", id);
    return bsearch(&key, dk->f, dk->n, sizeof(*dk->f), dfile_cmp);
}

static void disk_free(struct disk *dk)
{
    for (size_t i = 0; i < dk->n; i++) {
        json_decref(dk->f[i].doc);
        free(dk->f[i].bytes);
    }
    free(dk->f);
    memset(dk, 0, sizeof(*dk));
}

/*
 * Read the directory: every <uuid>.json must be exactly one JSON document and
 * a valid dialog of that id (cca_store_file_parse), else it is torn. Returns
 * the number of temporary files seen; *ret_cut (may be NULL) gets the number
 * of files in the format of earlier versions (a document and change lines:
 * only planted ones). @keep (may be NULL) receives the dialogs, as GET serves
 * them.
 */
static unsigned long scan_dir(struct crash *c, struct disk *keep, unsigned long *ret_cut)
{
    DIR *d = opendir(c->dialogs);
    struct dirent *de;
    unsigned long tmps = 0;

    if (d == NULL)
        return 0; /* killed before the server made it */
    while ((de = readdir(d)) != NULL) {
        char path[512];
        char id[37];
        size_t len = 0;
        char *bytes;
        json_t *doc = NULL;
        json_t *strict = NULL;
        struct cca_store_file_parsed parsed;
        struct cca_error err = {0};
        size_t nl = strlen(de->d_name);

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (is_tmp_name(de->d_name)) {
            tmps++;
            continue;
        }
        if (nl < 5 || strcmp(de->d_name + nl - 5, ".json") != 0 ||
            !is_dialog_name(de->d_name, id))
            continue; /* not ours to judge (.gitkeep and the like) */
        (void)snprintf(path, sizeof(path), "%s/%s", c->dialogs, de->d_name);
        bytes = read_all(path, &len);
        if (bytes != NULL)
            strict = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, NULL);
        if (bytes == NULL || strict == NULL ||
            cca_store_file_parse(CCA_STORE_DIALOGS, bytes, len, id, &doc, &parsed,
                                 &err) != CCA_OK) {
            c->torn++;
            DIAG(c, "TORN %s: %s", de->d_name,
                 bytes == NULL    ? "unreadable"
                 : strict == NULL ? "not exactly one JSON document"
                                  : err.msg);
            json_decref(strict);
            json_decref(doc);
            free(bytes);
            continue;
        }
        json_decref(strict);
        free(bytes);
        if (parsed.legacy && ret_cut != NULL)
            (*ret_cut)++;
        if (keep != NULL)
            disk_add(keep, id, doc);
        json_decref(doc);
    }
    closedir(d);
    if (keep != NULL && keep->n > 0) /* qsort(NULL, 0, ...) is undefined */
        qsort(keep->f, keep->n, sizeof(*keep->f), dfile_cmp);
    return tmps;
}

/*
 * PostgreSQL mode: what the restarted server serves stands for the directory.
 * Every dialog of GET /api/v1/dialogues?view=full (all pages) into @keep, with
 * cca_dialog_dump's bytes, which check_get then compares with GET
 * /api/v1/dialogue/{id}. A document that is not a valid dialog counts as torn.
 */
static void scan_api(struct crash *c, struct disk *keep)
{
    char cursor[256] = "";

    for (;;) {
        char path[512];
        json_t *j = NULL;
        json_t *items;
        const char *next;
        long st;

        (void)snprintf(path, sizeof(path), "/api/v1/dialogues?view=full&limit=100%s%s",
                       cursor[0] ? "&cursor=" : "", cursor);
        st = h_http(c->srv.port, "GET", path, NULL, NULL, &j, NULL, NULL, 0);
        if (st != 200)
            fail_msg("GET %s: %ld", path, st);
        items = json_object_get(j, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *doc = json_array_get(items, i);
            const char *id = jstr(doc, "dialog_id");
            struct cca_error err = {0};

            if (id == NULL || strlen(id) != 36 ||
                cca_dialog_validate(doc, id, &err) != CCA_OK) {
                c->torn++;
                DIAG(c, "TORN dialog %s: %s", id ? id : "?", err.msg);
                continue;
            }
            disk_add(keep, id, doc);
        }
        next = jstr(j, "next_cursor");
        if (next == NULL) {
            json_decref(j);
            break;
        }
        assert_true(strlen(next) < sizeof(cursor));
        (void)snprintf(cursor, sizeof(cursor), "%s", next);
        json_decref(j);
    }
    if (keep->n > 0)
        qsort(keep->f, keep->n, sizeof(*keep->f), dfile_cmp);
}

/*
 * Plant what an interrupted write leaves: a garbage temporary file of an unknown
 * dialog, a truncated temporary copy of an existing dialog, and a cut append
 * (half a change line) at the end of another dialog's file. The start-up scan
 * must remove all three and serve the committed dialogs.
 */
static void plant_tmp_files(struct crash *c)
{
    char uuid[37];
    char path[512];
    struct disk dk = {0};
    unsigned long torn = c->torn;
    FILE *f;

    (void)mkdir(c->dialogs, 0750);
    cca_uuid_new(uuid);
    (void)snprintf(path, sizeof(path), "%s/.%s.json.tmp", c->dialogs, uuid);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"dialog_id\": \"", f);
    fclose(f);
    c->planted++;
    (void)scan_dir(c, &dk, NULL);
    c->torn = torn; /* the caller's scan counted them already */
    for (size_t i = 0; i < dk.n; i++) {
        (void)snprintf(path, sizeof(path), "%s/.%s.json.tmp", c->dialogs, dk.f[i].id);
        if (access(path, F_OK) != 0) {
            f = fopen(path, "w");
            assert_non_null(f);
            fwrite(dk.f[i].bytes, 1, dk.f[i].len / 2, f);
            fclose(f);
            c->planted++;
            if (i + 1 < dk.n) {
                (void)snprintf(path, sizeof(path), "%s/%s.json", c->dialogs,
                               dk.f[i + 1].id);
                f = fopen(path, "a");
                assert_non_null(f);
                fputs("[{\"op\":\"add\",\"path\":\"/messages/-\",\"value\":{\"id\":\"",
                      f);
                fclose(f);
                c->planted++;
            }
            break;
        }
    }
    disk_free(&dk);
}

/* ---- verification after a restart ----------------------------------------------------
 */

/* The customer messages of @doc (indexes into messages), each followed by a reply. */
static size_t customer_msgs(struct crash *c, json_t *doc, size_t *idx, size_t max)
{
    json_t *msgs = json_object_get(doc, "messages");
    size_t n = 0;

    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);

        if (!str_eq(jstr(m, "role"), "customer"))
            continue;
        if (!str_eq(jstr(json_array_get(msgs, i + 1), "role"), "agent")) {
            c->mismatched++;
            DIAG(c, "dialog %s: customer message %zu has no agent reply",
                 jstr(doc, "dialog_id"), i);
        }
        if (n < max)
            idx[n++] = i;
    }
    return n;
}

/* Check one modelled dialog against its file; update the figures. */
static void verify_dialog(struct crash *c, struct dlg *d, struct disk *dk)
{
    struct dfile *f = disk_find(dk, d->id);
    json_t *msgs;
    size_t *idx;
    size_t nc;
    size_t p = 0;

    if (f == NULL) {
        unsigned long acked = d->adopted ? 0 : 1;

        for (size_t i = 0; i < d->n; i++)
            acked += d->items[i].acked || d->items[i].disk == D_PRESENT;
        c->lost += acked;
        DIAG(c, "LOST dialog %s (%s): no file, %lu acknowledged requests", d->id, d->name,
             acked);
        return;
    }
    f->matched = true;
    if (!str_eq(jstr(json_object_get(f->doc, "customer_info"), "name"), d->name) ||
        !str_eq(jstr(f->doc, "created_at"), d->created_at)) {
        c->mismatched++;
        DIAG(c, "dialog %s: name/created_at differ from the create response", d->id);
    } else if (!d->adopted && !d->create_counted) {
        d->create_counted = true;
        c->on_disk++;
    }
    msgs = json_object_get(f->doc, "messages");
    idx = calloc(json_array_size(msgs) + 1, sizeof(*idx));
    assert_non_null(idx);
    nc = customer_msgs(c, f->doc, idx, json_array_size(msgs) + 1);
    /* The customer texts on disk are the sent ones in order: acknowledged ones never
     * missing, an unacknowledged one present or absent for good. */
    for (size_t i = 0; i < d->n; i++) {
        struct item *it = &d->items[i];
        json_t *cm = p < nc ? json_array_get(msgs, idx[p]) : NULL;
        json_t *am = p < nc ? json_array_get(msgs, idx[p] + 1) : NULL;

        if (cm != NULL && str_eq(jstr(cm, "content"), it->text)) {
            const char *reply = jstr(am, "content");
            const char *id = jstr(cm, "id");

            p++;
            if (!it->acked && it->disk == D_UNKNOWN) {
                c->unacked_on_disk++;
                it->reply = xstrdup(reply);
                (void)snprintf(it->msg_id, sizeof(it->msg_id), "%s", id ? id : "");
            } else if (it->disk == D_ABSENT) {
                c->unexpected++;
                DIAG(c, "dialog %s: '%s' appeared after being absent", d->id, it->text);
            }
            it->disk = D_PRESENT;
            if (!str_eq(reply, it->reply) ||
                (it->msg_id[0] != '\0' && !str_eq(id, it->msg_id))) {
                c->mismatched++;
                DIAG(c, "dialog %s: '%s' stored with reply/id other than reported", d->id,
                     it->text);
            } else if (it->acked && !it->counted) {
                it->counted = true;
                c->on_disk++;
            }
        } else if (it->acked || it->disk == D_PRESENT) {
            c->lost++;
            DIAG(c, "LOST dialog %s: '%s' (%s)", d->id, it->text,
                 it->acked ? "acknowledged" : "seen on disk before");
        } else {
            it->disk = D_ABSENT;
        }
    }
    if (p < nc) {
        c->unexpected += nc - p;
        DIAG(c, "dialog %s: %zu customer messages on disk beyond the sent ones", d->id,
             nc - p);
    }
    free(idx);
}

/* A file no create response named: an unacknowledged create that reached the disk. */
static void adopt_file(struct crash *c, struct dfile *f)
{
    const char *name = jstr(json_object_get(f->doc, "customer_info"), "name");
    json_t *msgs = json_object_get(f->doc, "messages");
    struct dlg *d;
    size_t *idx;
    size_t nc;
    bool found = false;

    for (int t = 0; t < N_THREADS && !found; t++) {
        struct worker *w = &c->w[t];

        for (size_t i = 0; i < w->npend && !found; i++) {
            if (str_eq(w->pending[i], name)) {
                found = true;
                free(w->pending[i]);
                w->pending[i] = w->pending[--w->npend];
            }
        }
    }
    if (!found) {
        /* Either a second file for one create, or a file nobody asked for. */
        c->unknown_files++;
        DIAG(c, "file %s.json (customer '%s') matches no unanswered create", f->id,
             name ? name : "?");
        return;
    }
    c->unacked_on_disk++;
    d = calloc(1, sizeof(*d));
    assert_non_null(d);
    memcpy(d->id, f->id, 37);
    (void)snprintf(d->name, sizeof(d->name), "%s", name);
    (void)snprintf(d->created_at, sizeof(d->created_at), "%s",
                   jstr(f->doc, "created_at"));
    d->adopted = true;
    d->touched = true;
    idx = calloc(json_array_size(msgs) + 1, sizeof(*idx));
    assert_non_null(idx);
    nc = customer_msgs(c, f->doc, idx, json_array_size(msgs) + 1);
    for (size_t i = 0; i < nc; i++) {
        json_t *cm = json_array_get(msgs, idx[i]);
        struct item *it = dlg_add(d, jstr(cm, "content"));

        it->disk = D_PRESENT;
        it->reply = xstrdup(jstr(json_array_get(msgs, idx[i] + 1), "content"));
        (void)snprintf(it->msg_id, sizeof(it->msg_id), "%s", jstr(cm, "id"));
    }
    free(idx);
    push_ptr((void ***)&c->adopted, &c->nadopted, &c->capadopted, d);
    f->matched = true;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* No customer text and no message id twice, across all files. */
static void check_duplicates(struct crash *c, struct disk *dk)
{
    size_t cap = 1024;
    size_t nt = 0;
    size_t ni = 0;
    const char **texts = malloc(cap * sizeof(*texts));
    const char **ids = malloc(cap * sizeof(*ids));

    assert_non_null(texts);
    assert_non_null(ids);
    for (size_t i = 0; i < dk->n; i++) {
        json_t *msgs = json_object_get(dk->f[i].doc, "messages");

        for (size_t k = 0; k < json_array_size(msgs); k++) {
            json_t *m = json_array_get(msgs, k);

            if (nt + 1 >= cap || ni + 1 >= cap) {
                cap *= 2;
                texts = realloc(texts, cap * sizeof(*texts));
                ids = realloc(ids, cap * sizeof(*ids));
                assert_non_null(texts);
                assert_non_null(ids);
            }
            if (jstr(m, "id") != NULL)
                ids[ni++] = jstr(m, "id");
            if (str_eq(jstr(m, "role"), "customer") && jstr(m, "content") != NULL)
                texts[nt++] = jstr(m, "content");
        }
    }
    qsort(texts, nt, sizeof(*texts), str_cmp);
    qsort(ids, ni, sizeof(*ids), str_cmp);
    for (size_t i = 1; i < nt; i++) {
        if (strcmp(texts[i], texts[i - 1]) == 0) {
            c->duplicated++;
            DIAG(c, "DUPLICATE customer text '%s'", texts[i]);
        }
    }
    for (size_t i = 1; i < ni; i++) {
        if (strcmp(ids[i], ids[i - 1]) == 0) {
            c->duplicated++;
            DIAG(c, "DUPLICATE message id %s", ids[i]);
        }
    }
    free(texts);
    free(ids);
}

struct getbuf {
    char *data;
    size_t len;
};

static size_t on_get_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct getbuf *b = ud;
    size_t n = size * nmemb;

    b->data = realloc(b->data, b->len + n + 1);
    assert_non_null(b->data);
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    return n;
}

/*
 * GET /api/v1/dialogue/{id} must return the file's bytes. One keep-alive handle
 * (@curl) for all of a round's GETs: a fresh connection per GET costs several
 * scheduler wake-ups, which on a loaded 2-core machine add up to seconds.
 */
static void check_get(struct crash *c, CURL *curl, struct dfile *f)
{
    char url[128];
    struct getbuf b = {NULL, 0};
    long status = 0;

    (void)snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/v1/dialogue/%s",
                   c->srv.port, f->id);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_get_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    c->get_checked++;
    if (status != 200 || b.len != f->len || memcmp(b.data, f->bytes, f->len) != 0) {
        c->get_mismatch++;
        DIAG(c, "GET %s: status %ld, %zu bytes, file %zu bytes", f->id, status, b.len,
             f->len);
    }
    free(b.data);
}

/* After a restart: the whole model against the directory and the server. */
static void verify(struct crash *c, bool all_gets, uint64_t *rng)
{
    struct disk dk = {0};
    unsigned long cuts = 0;
    unsigned long tmps = 0;
    CURL *curl;

    if (h_store_pg())
        scan_api(c, &dk); /* the database, through the server */
    else
        tmps = scan_dir(c, &dk, &cuts);

    c->tmp_left += tmps + cuts;
    if (tmps > 0 || cuts > 0)
        DIAG(c, "%lu temporary files and %lu cut appends left after the restart", tmps,
             cuts);
    c->files = dk.n;
    for (int t = 0; t < N_THREADS; t++) {
        for (size_t i = 0; i < c->w[t].n; i++)
            verify_dialog(c, c->w[t].dlgs[i], &dk);
    }
    for (size_t i = 0; i < c->nadopted; i++)
        verify_dialog(c, c->adopted[i], &dk);
    for (size_t i = 0; i < dk.n; i++) {
        if (!dk.f[i].matched)
            adopt_file(c, &dk.f[i]);
    }
    check_duplicates(c, &dk);
    curl = curl_easy_init();
    assert_non_null(curl);
    /* GET: every dialog touched this round (and all in the last round), a sample of
     * the rest. */
    for (int t = 0; t <= N_THREADS; t++) {
        struct dlg **arr = t < N_THREADS ? c->w[t].dlgs : c->adopted;
        size_t n = t < N_THREADS ? c->w[t].n : c->nadopted;

        for (size_t i = 0; i < n; i++) {
            struct dfile *f = disk_find(&dk, arr[i]->id);

            if (f != NULL && (all_gets || arr[i]->touched || rnd_below(rng, 50) == 0))
                check_get(c, curl, f);
            arr[i]->touched = false;
        }
    }
    curl_easy_cleanup(curl);
    disk_free(&dk);
}

/* ---- the rounds ----------------------------------------------------------------------
 */

/*
 * The promise to ops, checked as they would: Python's json.load accepts every
 * <storage>/<uuid>.json (the command of the store documentation). A directory
 * that fails counts as torn; without python3 it is not counted at all.
 */
static void python_json_check(struct crash *c)
{
    char cmd[512];
    int rc;

    (void)snprintf(cmd, sizeof(cmd),
                   "python3 -c 'import json,glob,sys; [json.load(open(f)) for f in "
                   "glob.glob(sys.argv[1]+\"/*.json\")]' '%s' 2>&1",
                   c->dialogs);
    rc = system(cmd);
    if (rc == -1 || (WIFEXITED(rc) && WEXITSTATUS(rc) == 127))
        return; /* no python3: the jansson check above still ran */
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        c->torn++;
        DIAG(c, "python3 json.load failed on %s after round %d", c->dialogs, c->round);
    } else {
        c->python_checks++;
    }
}

static void server_start(struct crash *c)
{
    char base_url[128];
    const char *offline[] = {"RATE_LIMIT_RPS=0", NULL};
    const char *llm[] = {"OPENAI_API_KEY=sk-test", base_url, "LLM_BACKOFF_MS=50",
                         "RATE_LIMIT_RPS=0", NULL};

    (void)snprintf(base_url, sizeof(base_url), "OPENAI_BASE_URL=http://127.0.0.1:%u/v1",
                   c->fake.port);
    h_server_start(&c->srv, c->dir, c->llm ? llm : offline);
}

/* SIGKILL the server and reap it (its pid cannot be reused before). */
static void server_kill(struct crash *c)
{
    assert_true(c->srv.pid > 0);
    h_kill(&c->srv);
}

static void run_rounds(struct crash *c, int rounds, uint64_t seed)
{
    uint64_t rng = seed;
    uint64_t sample_rng = seed ^ 0xA5A5A5A5u; /* GET samples: not part of the schedule */
    int64_t t_start = now_ms();

    (void)snprintf(c->dialogs, sizeof(c->dialogs), "%s/dialogs", c->dir);
    for (int t = 0; t < N_THREADS; t++) {
        c->w[t].c = c;
        c->w[t].idx = t;
    }
    server_start(c);
    for (c->round = 0; c->round < rounds; c->round++) {
        pthread_t th[N_THREADS];
        unsigned kind = rnd_below(&rng, 3);
        unsigned target = 0;
        unsigned long acks;
        unsigned long tmps;
        unsigned long cuts = 0;
        char how[64];
        int64_t t0;
        int64_t t1;
        int64_t t2;

        if (c->llm) {
            char action[64];

            (void)snprintf(action, sizeof(action), "{\"delay_ms\":%u}",
                           20 + rnd_below(&rng, 81));
            assert_int_equal(h_fake_post(&c->fake, "/_fake/default", action), 200);
        }
        atomic_store(&c->stop, false);
        atomic_store(&c->acks_round, 0);
        for (int t = 0; t < N_THREADS; t++) {
            c->w[t].rng = rnd(&rng);
            assert_int_equal(pthread_create(&th[t], NULL, worker_main, &c->w[t]), 0);
        }
        /* Three kinds of kill: 0-60 ms after the clients start (first writes in
         * flight), after 1-40 acks, after 80-250 acks; plus 0-9 ms of jitter. */
        t0 = now_ms();
        if (kind == 0) {
            unsigned ms = rnd_below(&rng, 60);

            (void)snprintf(how, sizeof(how), "after %u ms", ms);
            sleep_ms(ms);
        } else {
            unsigned jitter = rnd_below(&rng, 10);

            target = kind == 1 ? 1 + rnd_below(&rng, 40) : 80 + rnd_below(&rng, 170);
            while (atomic_load(&c->acks_round) < target && now_ms() - t0 < ACK_WAIT_MS)
                sleep_ms(1);
            sleep_ms(jitter);
            (void)snprintf(how, sizeof(how), "after %u acks + %u ms", target, jitter);
        }
        if (c->llm) {
            json_t *st = h_fake_get(&c->fake, "/_fake/stats");

            c->llm_in_flight +=
                (unsigned long)json_integer_value(json_object_get(st, "in_flight"));
            json_decref(st);
        }
        server_kill(c);
        atomic_store(&c->stop, true);
        for (int t = 0; t < N_THREADS; t++)
            assert_int_equal(pthread_join(th[t], NULL), 0);
        acks = atomic_load(&c->acks_round);
        c->acknowledged += acks;

        /* Before the restart: the committed files are whole; count interrupted writes. */
        tmps = 0;
        if (c->round > 0 ? !h_store_pg()
                         : h_file_store("the files after a kill (whole, json.load, "
                                        "temporary files planted); the database is "
                                        "checked through the restarted server")) {
            tmps = scan_dir(c, NULL, &cuts);
            python_json_check(c);
            c->tmp_after_kill += tmps;
            c->cut_after_kill += cuts;
            c->mid_write_kills += tmps + cuts > 0;
            if (c->round == 0)
                plant_tmp_files(c);
        }
        t1 = now_ms();
        server_start(c);
        t2 = now_ms();
        verify(c, c->round == rounds - 1, &sample_rng);
        printf("# crash: mode=%s round=%d kill %s: acks=%lu tmp_after_kill=%lu "
               "files=%lu (ms: traffic+kill %ld, restart %ld, verify %ld)\n",
               c->mode, c->round, how, acks, tmps, c->files, (long)(t1 - t0),
               (long)(t2 - t1), (long)(now_ms() - t2));
    }
    assert_int_equal(h_stop(&c->srv), 0);
    for (int t = 0; t < N_THREADS; t++) {
        struct worker *w = &c->w[t];

        c->bad_status += w->bad;
        if (w->bad > 0)
            printf("# crash: thread %d: %lu error responses, last %ld %s\n", t, w->bad,
                   w->bad_status, w->bad_body);
        for (size_t i = 0; i < w->n; i++) {
            for (size_t k = 0; k < w->dlgs[i]->n; k++)
                c->unacked_sent += !w->dlgs[i]->items[k].acked;
        }
        c->unacked_sent += w->npend; /* creates never answered and not on disk */
    }
    for (size_t i = 0; i < c->nadopted; i++)
        c->unacked_sent++;
    printf("# crash: mode=%s rounds=%d acknowledged=%lu on_disk=%lu lost=%lu "
           "duplicated=%lu torn_files=%lu tmp_left=%lu files_plain_json_checks=%lu\n",
           c->mode, rounds, c->acknowledged, c->on_disk, c->lost, c->duplicated, c->torn,
           c->tmp_left, c->python_checks);
    printf("# crash: mode=%s unacknowledged=%lu unacknowledged_on_disk=%lu "
           "tmp_after_kill=%lu cut_appends_after_kill=%lu kills_mid_write=%lu "
           "planted_tmp=%lu mismatched=%lu "
           "unexpected=%lu unknown_files=%lu get_checked=%lu get_mismatch=%lu "
           "error_responses=%lu dialogs_on_disk=%lu llm_replies=%lu "
           "llm_calls_in_flight_at_kills=%lu seconds=%ld\n",
           c->mode, c->unacked_sent, c->unacked_on_disk, c->tmp_after_kill,
           c->cut_after_kill, c->mid_write_kills, c->planted, c->mismatched,
           c->unexpected, c->unknown_files, c->get_checked, c->get_mismatch,
           c->bad_status, c->files, (unsigned long)atomic_load(&c->llm_replies),
           c->llm_in_flight, (long)((now_ms() - t_start) / 1000));
    fflush(stdout);

    assert_true(c->acknowledged > 0);
    assert_int_equal(c->lost, 0);
    assert_int_equal(c->duplicated, 0);
    assert_int_equal(c->torn, 0);
    assert_int_equal(c->tmp_left, 0);
    assert_int_equal(c->mismatched, 0);
    assert_int_equal(c->unexpected, 0);
    assert_int_equal(c->unknown_files, 0);
    assert_int_equal(c->get_mismatch, 0);
    assert_int_equal(c->bad_status, 0);
    assert_int_equal(c->on_disk, c->acknowledged);
    if (c->llm)
        assert_true(atomic_load(&c->llm_replies) > 0);
}

static void crash_free(struct crash *c)
{
    for (int t = 0; t < N_THREADS; t++) {
        struct worker *w = &c->w[t];

        for (size_t i = 0; i < w->n; i++)
            dlg_free(w->dlgs[i]);
        for (size_t i = 0; i < w->npend; i++)
            free(w->pending[i]);
        free(w->dlgs);
        free(w->pending);
    }
    for (size_t i = 0; i < c->nadopted; i++)
        dlg_free(c->adopted[i]);
    free(c->adopted);
    free(c);
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);

    return v != NULL && atoi(v) > 0 ? atoi(v) : def;
}

static void test_crash_offline(void **state)
{
    struct crash *c = calloc(1, sizeof(*c));

    (void)state;
    assert_non_null(c);
    c->mode = "offline";
    h_tmpdir(c->dir);
    run_rounds(c, env_int("CCA_CRASH_ROUNDS", ROUNDS_OFF), g_seed);
    crash_free(c);
}

static void test_crash_llm(void **state)
{
    struct crash *c = calloc(1, sizeof(*c));
    int rounds = env_int("CCA_CRASH_ROUNDS", 0) / 3;
    json_t *stats;

    (void)state;
    assert_non_null(c);
    c->mode = "llm";
    c->llm = true;
    h_tmpdir(c->dir);
    h_fake_start(&c->fake, c->dir, 50);
    run_rounds(c, rounds >= 5 ? rounds : ROUNDS_LLM, g_seed ^ 0x5bd1e995u);
    stats = h_fake_get(&c->fake, "/_fake/stats");
    printf("# crash: mode=llm fake_requests=%lld fake_bad_requests=%lld\n",
           (long long)json_integer_value(json_object_get(stats, "requests")),
           (long long)json_integer_value(json_object_get(stats, "bad_requests")));
    assert_int_equal(json_integer_value(json_object_get(stats, "bad_requests")), 0);
    json_decref(stats);
    assert_int_equal(h_stop(&c->fake), 0);
    crash_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_crash_offline, h_kill_all),
        cmocka_unit_test_teardown(test_crash_llm, h_kill_all),
    };
    const char *seed = getenv("CCA_CRASH_SEED");
    int rc;

    if (seed != NULL && *seed != '\0') {
        g_seed = strtoull(seed, NULL, 10);
    } else {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        g_seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
                 ((uint64_t)getpid() << 32);
    }
    printf("# crash: seed=%" PRIu64
           " (replay the kill schedule with CCA_CRASH_SEED=%" PRIu64 ")\n",
           g_seed, g_seed);
    fflush(stdout);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    h_remove_tmpdirs();
    return rc;
}
