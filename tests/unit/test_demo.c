/* SPDX-License-Identifier: MIT */
/*
 * The demo data generator (include/cca/demo.h), run as the CLI runs it, into
 * temporary storage directories read back through the store: the counts, that
 * every document validates and tells a story the service could have written
 * (owner transitions by the state machine, times in order, statuses matching
 * owners), the mix (closed, rated, escalated, open), determinism (same seed:
 * the same files; another seed: others; a rerun: the same documents), the
 * usage errors, a locked directory, and the summary with its working tokens.
 */
#include "cca_test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/assign.h"
#include "cca/common.h"
#include "cca/config.h"
#include "cca/customer.h"
#include "cca/demo.h"
#include "cca/dialog.h"
#include "cca/handoff.h"
#include "cca/operator.h"
#include "cca/record.h"
#include "cca/store.h"
#include "cca/store_file.h"
#include "cca/text.h"

#define DATA_DIR CCA_SOURCE_ROOT "/data"
#define LEXICON  CCA_SOURCE_ROOT "/data/routing/lexicon.json"
#define DAY_MS   ((int64_t)86400000)

static struct cca_config cfg;

static int group_setup(void **state)
{
    struct cca_error err = {0};

    (void)state;
    if (cca_config_load(&cfg, NULL, NULL, NULL, &err) != CCA_OK) {
        fprintf(stderr, "config: %s\n", err.msg);
        return -1;
    }
    (void)snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", DATA_DIR);
    (void)snprintf(cfg.lexicon_path, sizeof(cfg.lexicon_path), "%s", LEXICON);
    cfg.storage_fsync = false; /* temporary directories: nothing to keep */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    cca_text_thread_cleanup();
    return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

static void make_dir(char ret[64])
{
    (void)snprintf(ret, 64, "/tmp/cca-demo-XXXXXX");
    assert_non_null(mkdtemp(ret));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* cca_demo_cli with "demo-data --storage @dir" and the NULL-terminated @args. */
static int run_args(const char *dir, const char *const *args)
{
    char *argv[32];
    int argc = 0;

    argv[argc++] = (char *)"demo-data";
    if (dir != NULL) {
        argv[argc++] = (char *)"--storage";
        argv[argc++] = (char *)dir;
    }
    for (size_t i = 0; args[i] != NULL && argc < 31; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    return cca_demo_cli(&cfg, argc, argv);
}

#define RUN(dir, ...) run_args((dir), (const char *const[]){__VA_ARGS__, NULL})

/* Everything in a storage directory, by collection: objects id -> document. */
struct loaded {
    json_t *coll[CCA_STORE_COLL__COUNT];
};

static void on_load(void *ctx, enum cca_store_coll coll, const char *id, json_t *doc,
                    size_t bytes)
{
    struct loaded *l = ctx;

    (void)bytes;
    assert_true((unsigned)coll < CCA_STORE_COLL__COUNT);
    assert_null(json_object_get(l->coll[coll], id)); /* one document per id */
    assert_int_equal(json_object_set_new(l->coll[coll], id, doc), 0);
}

static void on_report(void *ctx, const char *what, const char *why)
{
    (void)ctx;
    fail_msg("the store skipped %s: %s", what, why);
}

static void load(const char *dir, struct loaded *ret)
{
    struct cca_store_file_params sp = {.dir = dir,
                                       .fsync = false,
                                       .max_file_bytes = (size_t)64 << 20,
                                       .checkpoint_ms = 0,
                                       .max_segment_bytes = (size_t)16 << 20};
    struct cca_store *store = NULL;
    struct cca_error err = {0};

    for (int c = 0; c < CCA_STORE_COLL__COUNT; c++)
        ret->coll[c] = json_object();
    if (cca_store_file_new(&sp, &store, &err) != CCA_OK)
        fail_msg("open %s: %s", dir, err.msg);
    if (cca_store_load(store, on_load, on_report, ret, &err) != CCA_OK)
        fail_msg("load %s: %s", dir, err.msg);
    cca_store_free(store);
}

static void loaded_cleanup(struct loaded *l)
{
    for (int c = 0; c < CCA_STORE_COLL__COUNT; c++)
        json_decref(l->coll[c]);
}

static int64_t time_of(json_t *v)
{
    int64_t ms = 0;

    if (!cca_time_parse(json_string_value(v), &ms))
        fail_msg("not a time: %s",
                 json_string_value(v) ? json_string_value(v) : "(null)");
    return ms;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* The bytes of file @dir/@name into a new buffer (*ret_len); NULL if missing. */
static char *slurp(const char *dir, const char *name, size_t *ret_len)
{
    char path[512];
    struct stat st;
    char *buf;
    FILE *f;

    (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    assert_int_equal(fstat(fileno(f), &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
    buf[st.st_size] = '\0';
    (void)fclose(f);
    *ret_len = (size_t)st.st_size;
    return buf;
}

/* The sorted names of the .json files in @dir: a JSON array. */
static json_t *json_files(const char *dir)
{
    json_t *names = json_array();
    struct dirent **list = NULL;
    int n = scandir(dir, &list, NULL, alphasort);

    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(list[i]->d_name);

        if (len > 5 && strcmp(list[i]->d_name + len - 5, ".json") == 0)
            (void)json_array_append_new(names, json_string(list[i]->d_name));
        free(list[i]);
    }
    free(list);
    return names;
}

/* Do @a and @b hold the same .json files, byte for byte, under @sub? */
static void assert_same_files(const char *a, const char *b, const char *sub)
{
    char da[512], db[512];
    json_t *na, *nb, *v;
    size_t i;

    (void)snprintf(da, sizeof(da), "%s/%s", a, sub);
    (void)snprintf(db, sizeof(db), "%s/%s", b, sub);
    na = json_files(da);
    nb = json_files(db);
    assert_true(json_array_size(na) > 0);
    assert_true(json_equal(na, nb));
    json_array_foreach (na, i, v) {
        size_t la = 0, lb = 0;
        char *ba = slurp(da, json_string_value(v), &la);
        char *bb = slurp(db, json_string_value(v), &lb);

        assert_non_null(ba);
        assert_non_null(bb);
        if (la != lb || memcmp(ba, bb, la) != 0)
            fail_msg("%s/%s differs between the two runs", sub, json_string_value(v));
        free(ba);
        free(bb);
    }
    json_decref(na);
    json_decref(nb);
}

/* The start of the current UTC day (the generator's window end), Unix ms. */
static int64_t today_ms(void)
{
    int64_t now = cca_time_wall_ms();

    return now - now % DAY_MS;
}

/* ---- one dialog, checked --------------------------------------------------------- */

struct mix {
    size_t closed, rated, escalated, open_active, open_queued, open_assigned;
    size_t requeued, transferred, handed_back, direct;
};

/* The owner transitions of @doc follow cca_owner_next, each from where the last
 * one left it, and end where "owner" says; the escalation's reason is a trigger. */
static void check_transitions(json_t *doc, struct mix *m)
{
    json_t *list = json_object_get(json_object_get(doc, "metadata"), "transitions");
    enum cca_owner at = CCA_OWNER_AGENT;
    int64_t prev_ms = 0;
    size_t i;
    json_t *t;

    json_array_foreach (list, i, t) {
        enum cca_owner from, to, expect;
        enum cca_owner_event ev = CCA_OWNER_EV__COUNT;

        for (int e = 0; e < CCA_OWNER_EV__COUNT; e++) {
            if (strcmp(cca_owner_event_name((enum cca_owner_event)e), str(t, "event")) ==
                0)
                ev = (enum cca_owner_event)e;
        }
        assert_true(ev < CCA_OWNER_EV__COUNT);
        assert_true(cca_owner_parse(str(t, "from"), &from));
        assert_true(cca_owner_parse(str(t, "to"), &to));
        assert_int_equal(from, at);
        assert_true(cca_owner_next(from, ev, &expect));
        assert_int_equal(to, expect);
        assert_true(time_of(json_object_get(t, "at")) >= prev_ms);
        prev_ms = time_of(json_object_get(t, "at"));
        assert_non_null(str(t, "actor"));
        assert_non_null(str(t, "reason"));
        if (to == CCA_OWNER_OPERATOR)
            assert_non_null(str(t, "operator_id"));
        if (from == CCA_OWNER_OPERATOR)
            assert_non_null(str(t, "prev_operator_id"));
        if (i == 0) {
            const char *r = str(t, "reason");

            assert_true(strcmp(r, "customer_request") == 0 ||
                        strcmp(r, "supervisor") == 0 || strcmp(r, "degraded") == 0 ||
                        strcmp(r, "api") == 0);
            m->direct += to == CCA_OWNER_OPERATOR;
        }
        m->requeued += ev == CCA_OWNER_EV_REQUEUE;
        m->transferred += ev == CCA_OWNER_EV_TRANSFER;
        m->handed_back += ev == CCA_OWNER_EV_HANDBACK;
        at = to;
    }
    assert_int_equal(cca_dialog_get_owner(doc, NULL), at);
    m->escalated += json_array_size(list) > 0;
}

/* The message before the first escalation asked for a person when that was why. */
static void check_request(json_t *doc)
{
    json_t *first = json_array_get(
        json_object_get(json_object_get(doc, "metadata"), "transitions"), 0);
    json_t *messages = json_object_get(doc, "messages");
    const char *asked = NULL;
    size_t i;
    json_t *msg;

    if (first == NULL || strcmp(str(first, "reason"), "customer_request") != 0)
        return;
    json_array_foreach (messages, i, msg) {
        if (time_of(json_object_get(msg, "timestamp")) >
            time_of(json_object_get(first, "at")))
            break;
        if (strcmp(str(msg, "role"), "customer") == 0)
            asked = str(msg, "content");
    }
    assert_non_null(asked);
    assert_true(cca_handoff_wants_human(asked, strlen(asked)));
}

static void check_dialog(const struct loaded *l, const char *id, json_t *doc,
                         int64_t from_ms, int64_t to_ms, struct mix *m)
{
    struct cca_error err = {0};
    json_t *messages = json_object_get(doc, "messages");
    int64_t created, last = 0;
    enum cca_dialog_status st;
    enum cca_owner owner;
    char key[37];
    struct cca_record rec;
    size_t i;
    json_t *msg;

    if (cca_dialog_validate(doc, id, &err) != CCA_OK)
        fail_msg("dialog %s: %s", id, err.msg);
    /* Its customer has a profile; its operators are operators. */
    cca_customer_key(str(doc, "customer_id"), key);
    assert_non_null(json_object_get(l->coll[CCA_STORE_CUSTOMERS], key));
    created = time_of(json_object_get(doc, "created_at"));
    assert_true(created >= from_ms);
    assert_true(created < to_ms);
    assert_true(json_array_size(messages) >= 2);
    json_array_foreach (messages, i, msg) {
        int64_t t = time_of(json_object_get(msg, "timestamp"));

        assert_true(t >= created && t >= last && t < to_ms);
        last = t;
        if (strcmp(str(msg, "role"), "operator") == 0)
            assert_non_null(
                json_object_get(l->coll[CCA_STORE_OPERATORS], str(msg, "operator_id")));
        if (strcmp(str(msg, "role"), "system") == 0)
            assert_non_null(str(msg, "kind"));
    }
    check_transitions(doc, m);
    check_request(doc);
    st = cca_dialog_get_status(doc);
    owner = cca_dialog_get_owner(doc, NULL);
    if (st == CCA_DIALOG_CLOSED) {
        m->closed++;
        /* The closing notices, when the desk held it, are the last messages. */
        assert_true(time_of(json_object_get(doc, "closed_at")) >= last);
        assert_true(time_of(json_object_get(doc, "closed_at")) < to_ms);
        assert_non_null(str(doc, "close_reason"));
        assert_true(json_is_object(json_object_get(doc, "summary")));
    } else {
        assert_null(json_object_get(doc, "rating"));
        if (owner == CCA_OWNER_QUEUE) {
            assert_int_equal(st, CCA_DIALOG_QUEUED);
            m->open_queued++;
        } else if (owner == CCA_OWNER_OPERATOR) {
            assert_int_equal(st, CCA_DIALOG_ASSIGNED);
            m->open_assigned++;
        } else {
            assert_true(st == CCA_DIALOG_ACTIVE || st == CCA_DIALOG_ESCALATED);
            m->open_active++;
        }
    }
    if (json_object_get(doc, "rating") != NULL) {
        json_int_t score =
            json_integer_value(json_object_get(json_object_get(doc, "rating"), "score"));

        assert_true(score >= 1 && score <= 5);
        assert_true(time_of(json_object_get(json_object_get(doc, "rating"), "rated_at")) <
                    to_ms);
        m->rated++;
    }
    /* What the reports make of it agrees. */
    cca_record_of(doc, &rec);
    assert_string_equal(rec.dialog_id, id);
    assert_int_equal(rec.status, st);
    assert_int_equal(rec.trigger != CCA_TRIGGER_NONE,
                     json_array_size(json_object_get(json_object_get(doc, "metadata"),
                                                     "transitions")) > 0);
    cca_record_cleanup(&rec);
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_counts_and_validity(void **state)
{
    char dir[64];
    struct loaded l;
    struct mix m = {0};
    int64_t end = today_ms();
    struct cca_error err = {0};
    const char *id;
    json_t *doc;

    (void)state;
    make_dir(dir);
    assert_int_equal(RUN(dir, "--operators", "3", "--customers", "7", "--dialogs", "150",
                         "--seed", "11", "--days", "5", "--quiet"),
                     0);
    load(dir, &l);
    assert_int_equal(json_object_size(l.coll[CCA_STORE_OPERATORS]), 3);
    assert_int_equal(json_object_size(l.coll[CCA_STORE_CUSTOMERS]), 7);
    assert_int_equal(json_object_size(l.coll[CCA_STORE_DIALOGS]), 150);
    json_object_foreach (l.coll[CCA_STORE_OPERATORS], id, doc) {
        json_t *profile = json_object_get(doc, "profile");

        const char *d_id;
        json_t *d;
        unsigned held = 0;

        if (cca_operator_validate(doc, id, &err) != CCA_OK)
            fail_msg("operator %s: %s", id, err.msg);
        /* Offline, or busy with the open dialogs they hold, within their limit: an
         * operator going offline would hand those back to the queue. */
        json_object_foreach (l.coll[CCA_STORE_DIALOGS], d_id, d) {
            const char *holder = NULL;

            if (cca_dialog_get_status(d) != CCA_DIALOG_CLOSED &&
                cca_dialog_get_owner(d, &holder) == CCA_OWNER_OPERATOR &&
                strcmp(holder, id) == 0)
                held++;
        }
        assert_true(held <= cca_operator_get_max(doc));
        assert_int_equal(cca_operator_get_status(doc),
                         held > 0 ? CCA_OPERATOR_BUSY : CCA_OPERATOR_OFFLINE);
        assert_non_null(str(profile, "full_name"));
        assert_non_null(str(profile, "city"));
        assert_non_null(str(profile, "birth_date"));
        assert_non_null(str(profile, "position"));
        assert_true(json_is_integer(json_object_get(profile, "experience")));
    }
    json_object_foreach (l.coll[CCA_STORE_CUSTOMERS], id, doc) {
        static const char *const keys[] = {"full_name", "city",  "birth_date", "position",
                                           "phone",     "email", "language"};

        if (cca_customer_validate(doc, id, &err) != CCA_OK)
            fail_msg("customer %s: %s", id, err.msg);
        assert_int_equal(strncmp(str(doc, "customer_id"), "demo-cust-", 10), 0);
        /* Every field passed the profile rules (merge drops what does not). */
        for (size_t k = 0; k < CCA_ARRAY_SIZE(keys); k++)
            assert_non_null(str(doc, keys[k]));
        assert_true(json_is_integer(json_object_get(doc, "experience")));
    }
    json_object_foreach (l.coll[CCA_STORE_DIALOGS], id, doc)
        check_dialog(&l, id, doc, end - 5 * DAY_MS, today_ms(), &m);
    /* The mix: about 80% closed, 70% of those rated, 40% escalated, some open. */
    assert_true(m.closed >= 90 && m.closed <= 140);
    assert_true(m.rated > m.closed / 2 && m.rated < m.closed);
    assert_true(m.escalated >= 35 && m.escalated <= 90);
    assert_true(m.open_active > 0);
    assert_true(m.open_queued > 0);
    assert_true(m.open_assigned > 0);
    assert_true(m.direct > 0);
    assert_true(m.transferred + m.handed_back + m.requeued > 0);
    loaded_cleanup(&l);
    rm_rf(dir);
}

static void test_same_seed_same_files(void **state)
{
    char a[64], b[64], c[64];
    struct loaded la, lb;
    int64_t day = today_ms();
    const char *id;
    json_t *doc;

    (void)state;
    make_dir(a);
    make_dir(b);
    make_dir(c);
    assert_int_equal(RUN(a, "--seed", "5", "--dialogs", "60", "--quiet"), 0);
    assert_int_equal(RUN(b, "--seed=5", "--dialogs=60", "--quiet"), 0);
    /* Fewer dialogs: the same first ones (each dialog has its own stream). */
    assert_int_equal(RUN(c, "--seed", "5", "--dialogs", "20", "--quiet"), 0);
    if (today_ms() != day) {
        printf("# the UTC day changed during the test: times moved, not compared\n");
        goto out;
    }
    assert_same_files(a, b, ".");
    assert_same_files(a, b, "customers");
    load(a, &la);
    load(b, &lb);
    /* The same operators, with new tokens: never derived from the seed. */
    assert_int_equal(json_object_size(la.coll[CCA_STORE_OPERATORS]), 5);
    json_object_foreach (la.coll[CCA_STORE_OPERATORS], id, doc) {
        json_t *other = json_object_get(lb.coll[CCA_STORE_OPERATORS], id);

        assert_non_null(other);
        assert_string_equal(str(doc, "name"), str(other, "name"));
        assert_string_not_equal(cca_operator_get_token_hash(doc),
                                cca_operator_get_token_hash(other));
    }
    loaded_cleanup(&la);
    loaded_cleanup(&lb);
    load(c, &la);
    assert_int_equal(json_object_size(la.coll[CCA_STORE_DIALOGS]), 20);
    json_object_foreach (la.coll[CCA_STORE_DIALOGS], id, doc) {
        char name[64];
        size_t len_a = 0, len_c = 0;
        char *fa, *fc;

        (void)snprintf(name, sizeof(name), "%s.json", id);
        fa = slurp(a, name, &len_a);
        fc = slurp(c, name, &len_c);
        assert_non_null(fa);
        assert_non_null(fc);
        assert_true(len_a == len_c && memcmp(fa, fc, len_a) == 0);
        free(fa);
        free(fc);
    }
    loaded_cleanup(&la);
out:
    rm_rf(a);
    rm_rf(b);
    rm_rf(c);
}

static void test_other_seed_other_data(void **state)
{
    char a[64], b[64];
    struct loaded la, lb;
    size_t same_profiles = 0;
    const char *id;
    json_t *doc;

    (void)state;
    make_dir(a);
    make_dir(b);
    assert_int_equal(RUN(a, "--seed", "5", "--dialogs", "30", "--quiet"), 0);
    assert_int_equal(RUN(b, "--seed", "6", "--dialogs", "30", "--quiet"), 0);
    load(a, &la);
    load(b, &lb);
    json_object_foreach (la.coll[CCA_STORE_DIALOGS], id, doc)
        assert_null(json_object_get(lb.coll[CCA_STORE_DIALOGS], id));
    json_object_foreach (la.coll[CCA_STORE_OPERATORS], id, doc)
        assert_null(json_object_get(lb.coll[CCA_STORE_OPERATORS], id));
    /* The same customer ids (demo-cust-0001 ...), other people. */
    assert_int_equal(json_object_size(lb.coll[CCA_STORE_CUSTOMERS]), 10);
    json_object_foreach (la.coll[CCA_STORE_CUSTOMERS], id, doc) {
        json_t *other = json_object_get(lb.coll[CCA_STORE_CUSTOMERS], id);

        assert_non_null(other);
        same_profiles += json_equal(doc, other);
    }
    assert_true(same_profiles < 10);
    loaded_cleanup(&la);
    loaded_cleanup(&lb);
    rm_rf(a);
    rm_rf(b);
}

static void test_rerun_replaces(void **state)
{
    char dir[64];
    struct loaded first, again;
    const char *id;
    json_t *doc;

    (void)state;
    make_dir(dir);
    assert_int_equal(RUN(dir, "--seed", "9", "--dialogs", "40", "--quiet"), 0);
    load(dir, &first);
    assert_int_equal(RUN(dir, "--seed", "9", "--dialogs", "40", "--quiet"), 0);
    load(dir, &again);
    assert_int_equal(json_object_size(again.coll[CCA_STORE_DIALOGS]), 40);
    assert_int_equal(json_object_size(again.coll[CCA_STORE_CUSTOMERS]), 10);
    assert_int_equal(json_object_size(again.coll[CCA_STORE_OPERATORS]), 5);
    if (json_object_size(first.coll[CCA_STORE_DIALOGS]) == 40) {
        json_object_foreach (first.coll[CCA_STORE_DIALOGS], id, doc)
            assert_true(
                json_equal(doc, json_object_get(again.coll[CCA_STORE_DIALOGS], id)));
    }
    loaded_cleanup(&first);
    loaded_cleanup(&again);
    rm_rf(dir);
}

static char *captured(int fd, const char *dir, const char *const *args, int *ret_code);

static void test_bad_arguments(void **state)
{
    static const char *const bad[][3] = {
        {"--operators", "0", NULL},     {"--operators", "1001", NULL},
        {"--customers", "0", NULL},     {"--customers", "1000001", NULL},
        {"--dialogs", "-1", NULL},      {"--dialogs", "1000001", NULL},
        {"--days", "0", NULL},          {"--days", "3651", NULL},
        {"--seed", "x", NULL},          {"--seed", "18446744073709551616", NULL},
        {"--operators=2x", NULL, NULL}, {"--dialogs", " 5", NULL},
        {"--operators", NULL, NULL},    {"--storage", "", NULL},
        {"--bogus", NULL, NULL},        {"extra", NULL, NULL},
    };
    char dir[64];
    json_t *files;

    (void)state;
    make_dir(dir);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bad); i++) {
        if (run_args(dir, bad[i]) != 2)
            fail_msg("%s %s was accepted", bad[i][0], bad[i][1] ? bad[i][1] : "");
    }
    /* Refused before the storage was touched: not even the lock file. */
    files = json_files(dir);
    assert_int_equal(json_array_size(files), 0);
    json_decref(files);
    assert_int_equal(access(dir, F_OK), 0);
    {
        char lock[128];

        (void)snprintf(lock, sizeof(lock), "%s/%s", dir, CCA_STORE_FILE_LOCK);
        assert_int_equal(access(lock, F_OK), -1);
    }
    /* The largest seed, the bounds themselves, and --help are fine. */
    assert_int_equal(RUN(dir, "--seed", "18446744073709551615", "--operators", "1",
                         "--customers", "1", "--dialogs", "0", "--days", "3650",
                         "--quiet"),
                     0);
    rm_rf(dir);
}

static void test_help(void **state)
{
    const char *const args[] = {"--help", NULL};
    int code = -1;
    char *out;

    (void)state;
    out = captured(1, NULL, args, &code);
    assert_int_equal(code, 0);
    assert_non_null(strstr(out, "Usage: call-center-agents demo-data"));
    free(out);
}

/* Run with fd @fd (1 or 2) going to a file; returns its contents (free) and the code. */
static char *captured(int fd, const char *dir, const char *const *args, int *ret_code)
{
    char path[] = "/tmp/cca-demo-out-XXXXXX";
    int out = mkstemp(path);
    int saved = dup(fd);
    size_t len = 0;
    char *text;
    char *slash;

    assert_true(out >= 0 && saved >= 0);
    (void)fflush(stdout);
    (void)fflush(stderr);
    assert_true(dup2(out, fd) >= 0);
    *ret_code = run_args(dir, args);
    (void)fflush(stdout);
    (void)fflush(stderr);
    assert_true(dup2(saved, fd) >= 0);
    (void)close(saved);
    (void)close(out);
    slash = strrchr(path, '/');
    *slash = '\0';
    text = slurp(path, slash + 1, &len);
    *slash = '/';
    (void)unlink(path);
    assert_non_null(text);
    return text;
}

static void test_locked_storage(void **state)
{
    struct cca_store_file_params sp = {.fsync = false,
                                       .max_file_bytes = (size_t)1 << 20,
                                       .checkpoint_ms = 0,
                                       .max_segment_bytes = (size_t)1 << 20};
    struct cca_store *server = NULL;
    struct cca_error err = {0};
    const char *const args[] = {"--dialogs", "5", "--quiet", NULL};
    char dir[64];
    char *said;
    int code = -1;
    struct loaded l;

    (void)state;
    make_dir(dir);
    sp.dir = dir;
    /* The server's lock (an flock on another open file: refused in this process too). */
    assert_int_equal(cca_store_file_new(&sp, &server, &err), CCA_OK);
    said = captured(2, dir, args, &code);
    assert_int_equal(code, 1);
    assert_non_null(strstr(said, "in use by a running server"));
    free(said);
    cca_store_free(server);
    load(dir, &l);
    assert_int_equal(json_object_size(l.coll[CCA_STORE_DIALOGS]), 0);
    loaded_cleanup(&l);
    /* Once the server is gone it works. */
    assert_int_equal(run_args(dir, args), 0);
    rm_rf(dir);
}

static void test_summary(void **state)
{
    const char *const args[] = {"--seed", "3", "--dialogs", "40", NULL};
    static const char *const heads[] = {"=== All dialogs (40) ===",
                                        "=== Dialogs of customer demo-cust-",
                                        "=== Dialogs of operator ",
                                        "=== Profiles: 5 operators, 10 customers ===",
                                        "... and 30 more",
                                        "/api/v1/exports/dialogs?format=csv",
                                        "/api/v1/stats"};
    char dir[64];
    char *out;
    const char *p;
    int code = -1;
    size_t tokens = 0;
    struct loaded l;

    (void)state;
    make_dir(dir);
    out = captured(1, dir, args, &code);
    assert_int_equal(code, 0);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(heads); i++) {
        if (strstr(out, heads[i]) == NULL)
            fail_msg("the summary lacks \"%s\":\n%s", heads[i], out);
    }
    /* Each token line: "<name>  <operator_id>  <token>"; the token is theirs. */
    load(dir, &l);
    for (p = strstr(out, CCA_OPERATOR_TOKEN_PREFIX); p != NULL;
         p = strstr(p + 1, CCA_OPERATOR_TOKEN_PREFIX)) {
        char token[CCA_OPERATOR_TOKEN_LEN + 1];
        char id[37];
        char hash[65];
        json_t *op;

        if (p < out + 38 || p[-1] != ' ' || p[-2] != ' ')
            continue; /* the curl line's copy */
        (void)snprintf(token, sizeof(token), "%s", p);
        (void)snprintf(id, sizeof(id), "%s", p - 38);
        assert_true(cca_operator_token_looks_valid(token, strlen(token)));
        op = json_object_get(l.coll[CCA_STORE_OPERATORS], id);
        if (op == NULL)
            fail_msg("no operator %s", id);
        cca_operator_token_hash(token, strlen(token), hash);
        assert_string_equal(hash, cca_operator_get_token_hash(op));
        tokens++;
    }
    assert_int_equal(tokens, 5);
    loaded_cleanup(&l);
    free(out);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_validity),
        cmocka_unit_test(test_same_seed_same_files),
        cmocka_unit_test(test_other_seed_other_data),
        cmocka_unit_test(test_rerun_replaces),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_locked_storage),
        cmocka_unit_test(test_summary),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
