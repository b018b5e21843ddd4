/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/dialog.h"
#include "cca/store.h"

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int failed;
    cca_rc last_rc;
};

static struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
                          CCA_OK};

static void on_done(void *ctx, cca_rc rc, const struct cca_error *err)
{
    (void)ctx;
    (void)err;
    pthread_mutex_lock(&w.lock);
    w.done++;
    if (rc != CCA_OK)
        w.failed++;
    w.last_rc = rc;
    pthread_cond_broadcast(&w.cond);
    pthread_mutex_unlock(&w.lock);
}

static void wait_done(int n)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&w.lock);
    while (w.done < n) {
        if (pthread_cond_timedwait(&w.cond, &w.lock, &ts) != 0)
            break;
    }
    assert_int_equal(w.done, n);
    pthread_mutex_unlock(&w.lock);
}

static void reset(void)
{
    w.done = w.failed = 0;
    w.last_rc = CCA_OK;
}

struct scan {
    int loaded;
    int skipped;
};

static void on_load(void *ctx, const char *id, json_t *doc, char *bytes, size_t len)
{
    struct scan *s = ctx;

    (void)id;
    (void)len;
    s->loaded++;
    json_decref(doc);
    free(bytes);
}

static void on_skip(void *ctx, const char *name, const char *why)
{
    struct scan *s = ctx;

    (void)name;
    (void)why;
    s->skipped++;
}

static char *make_doc(char id[37], size_t *len)
{
    struct cca_dialog_create c = {
        .name = (char *)"Anna", .priority = (char *)"normal", .source = (char *)"api"};
    json_t *doc;
    char *bytes;

    cca_uuid_new(id);
    doc = cca_dialog_new_doc(id, &c, cca_time_wall_ms());
    bytes = cca_dialog_dump(doc, len);
    json_decref(doc);
    return bytes;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Remove this test's own directory tree (never a glob: tests run in parallel). */
static void remove_tree(const char *dir)
{
    char cmd[128];

    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_write_scan_remove(void **state)
{
    char dir[] = "/tmp/cca-store-XXXXXX";
    char sub[64];
    struct cca_store_params p = {.dir = sub, .fsync = true, .max_file_bytes = 1 << 20};
    struct cca_store *s = NULL;
    struct scan sc = {0};
    char id[37];
    char tmp[80];
    size_t len;
    char *bytes;

    (void)state;
    assert_non_null(mkdtemp(dir));
    (void)snprintf(sub, sizeof(sub), "%s/a/dialogs", dir); /* created with parents */
    assert_int_equal(cca_store_new(&p, &s, NULL), CCA_OK);
    bytes = make_doc(id, &len);
    reset();
    cca_store_write(s, id, bytes, len, on_done, NULL);
    wait_done(1);
    assert_int_equal(w.failed, 0);
    /* Leftovers of a crash: a temp file, a corrupt file and a foreign file. */
    (void)snprintf(tmp, sizeof(tmp), ".%s.json.tmp",
                   "00000000-0000-4000-8000-000000000001");
    write_text(sub, tmp, "{\"half\":");
    write_text(sub, "00000000-0000-4000-8000-000000000002.json", "{\"torn\":");
    write_text(sub, "notes.txt", "hello");
    assert_int_equal(cca_store_scan(s, on_load, on_skip, &sc, NULL), CCA_OK);
    assert_int_equal(sc.loaded, 1);
    assert_int_equal(sc.skipped, 3);
    assert_int_equal(count_files(sub), 3); /* corrupt and foreign files are kept */
    {
        char path[200];
        struct stat st;

        (void)snprintf(path, sizeof(path), "%s/%s", sub, tmp);
        assert_int_not_equal(stat(path, &st), 0); /* the temp file is gone */
    }
    reset();
    cca_store_remove(s, id, on_done, NULL);
    wait_done(1);
    assert_int_equal(w.failed, 0);
    assert_int_equal(count_files(sub), 2);
    cca_store_free(s);
    free(bytes);
    remove_tree(dir);
}

struct writer_arg {
    struct cca_store *store;
    char *bytes[50];
    char ids[50][37];
    size_t lens[50];
};

static void *writer(void *arg)
{
    struct writer_arg *a = arg;

    for (int i = 0; i < 50; i++)
        cca_store_write(a->store, a->ids[i], a->bytes[i], a->lens[i], on_done, NULL);
    return NULL;
}

static void test_group_commit_many_writers(void **state)
{
    char dir[] = "/tmp/cca-store-XXXXXX";
    struct cca_store_params p = {.dir = dir, .fsync = true, .max_file_bytes = 1 << 20};
    struct cca_store *s = NULL;
    struct writer_arg args[4];
    pthread_t th[4];
    struct scan sc = {0};

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(cca_store_new(&p, &s, NULL), CCA_OK);
    reset();
    for (int t = 0; t < 4; t++) {
        args[t].store = s;
        for (int i = 0; i < 50; i++)
            args[t].bytes[i] = make_doc(args[t].ids[i], &args[t].lens[i]);
        pthread_create(&th[t], NULL, writer, &args[t]);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    wait_done(200);
    assert_int_equal(w.failed, 0);
    assert_int_equal(cca_store_scan(s, on_load, on_skip, &sc, NULL), CCA_OK);
    assert_int_equal(sc.loaded, 200);
    assert_int_equal(sc.skipped, 0);
    cca_store_free(s);
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < 50; i++)
            free(args[t].bytes[i]);
    }
    remove_tree(dir);
}

static void test_write_failure_reported(void **state)
{
    char dir[] = "/tmp/cca-store-XXXXXX";
    struct cca_store_params p = {.dir = dir, .fsync = true, .max_file_bytes = 1 << 20};
    struct cca_store *s = NULL;
    struct cca_store_health h;
    char id[37];
    size_t len;
    char *bytes;

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(cca_store_new(&p, &s, NULL), CCA_OK);
    cca_store_get_health(s, &h);
    assert_true(h.writable);
    assert_true(h.free_bytes > 0);
    assert_int_equal(rmdir(dir), 0); /* the directory vanishes under the store */
    bytes = make_doc(id, &len);
    reset();
    cca_store_write(s, id, bytes, len, on_done, NULL);
    wait_done(1);
    assert_int_equal(w.failed, 1);
    assert_int_equal(w.last_rc, CCA_ERR_IO);
    cca_store_get_health(s, &h);
    assert_false(h.writable);
    assert_true(h.last_error[0] != '\0');
    cca_store_free(s);
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_scan_remove),
        cmocka_unit_test(test_group_commit_many_writers),
        cmocka_unit_test(test_write_failure_reported),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
