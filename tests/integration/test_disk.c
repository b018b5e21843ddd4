/* SPDX-License-Identifier: MIT */
/*
 * Disk faults, black box: the server's dialog storage is a tiny tmpfs that is
 * filled up, then remounted larger; and a tmpfs remounted read-only, then
 * read-write. Writes must fail with the documented error (507
 * insufficient_storage, 503 storage_unavailable), never leave a dialog file
 * that is not one plain JSON document, keep every acknowledged dialog as it
 * was acknowledged (GET, and its file once the checkpointer could write it),
 * make /api/v1/health/ready report the storage, and work again (readiness
 * too) once the fault is gone, without a restart; after a restart every
 * acknowledged dialog is still there.
 *
 * Mounting needs CAP_SYS_ADMIN: without it the whole program reports a TAP
 * skip ("1..0 # SKIP ...").
 */
#include "cca_test.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"

#define MAX_DIALOGS 64

/* The tmpfs of the running test; unmounted by teardown whatever happened. */
static char mnt[128];

/* One acknowledged dialog: its id and GET's bytes after its last 2xx. */
struct acked {
    char id[37];
    char *doc;
};

static struct acked acked[MAX_DIALOGS];
static size_t n_acked;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static void forget_acked(void)
{
    for (size_t i = 0; i < n_acked; i++)
        free(acked[i].doc);
    n_acked = 0;
}

static int teardown(void **state)
{
    (void)h_kill_all(state);
    if (mnt[0] != '\0')
        (void)umount2(mnt, MNT_DETACH);
    mnt[0] = '\0';
    forget_acked();
    return 0;
}

/* Mount a tmpfs of @size on @dir/dialogs (the server's storage). */
static void mount_storage(const char *dir, const char *size)
{
    char opts[64];

    (void)snprintf(mnt, sizeof(mnt), "%s/dialogs", dir);
    assert_int_equal(mkdir(mnt, 0750), 0);
    (void)snprintf(opts, sizeof(opts), "size=%s,mode=0750", size);
    assert_int_equal(mount("tmpfs", mnt, "tmpfs", 0, opts), 0);
}

static void remount_storage(unsigned long flags, const char *size)
{
    char opts[64];

    (void)snprintf(opts, sizeof(opts), "size=%s", size);
    assert_int_equal(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT | flags, opts), 0);
}

static struct acked *find_acked(const char *id)
{
    for (size_t i = 0; i < n_acked; i++) {
        if (strcmp(acked[i].id, id) == 0)
            return &acked[i];
    }
    return NULL;
}

/* A 2xx for @id: remember the file as it is now. */
/* Remember @id's acknowledged version, as GET serves it now. */
static void snapshot(unsigned port, const char *id)
{
    struct acked *a = find_acked(id);
    char path[128];

    if (a == NULL) {
        assert_true(n_acked < MAX_DIALOGS);
        a = &acked[n_acked++];
        (void)snprintf(a->id, sizeof(a->id), "%s", id);
    } else {
        free(a->doc);
        a->doc = NULL;
    }
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s", id);
    assert_int_equal(h_http(port, "GET", path, NULL, NULL, NULL, &a->doc, NULL, 0), 200);
    assert_non_null(a->doc);
}

/*
 * The storage after a fault: every acknowledged dialog served as acknowledged;
 * every dialog file one plain JSON document of an acknowledged dialog (with
 * @files_current, also equal to it: the checkpointer has caught up); nothing
 * else but the lock, journal segments and transient temporary files.
 */
static void assert_storage_intact(unsigned port, bool files_current)
{
    DIR *d = opendir(mnt);
    struct dirent *de;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        char id[37];
        struct acked *a;
        char path[256];
        char *doc;
        size_t len = strlen(de->d_name);

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, ".lock") == 0 || strncmp(de->d_name, "journal-", 8) == 0 ||
            strcmp(de->d_name, "operators") == 0 || /* the operators collection */
            strcmp(de->d_name, "customers") == 0 || /* customer profiles */
            strcmp(de->d_name, "telegram") == 0 ||  /* the Telegram channel's */
            (de->d_name[0] == '.' && len > 4 &&
             strcmp(de->d_name + len - 4, ".tmp") == 0))
            continue;
        assert_int_equal(len, 36 + 5);
        assert_string_equal(de->d_name + 36, ".json");
        memcpy(id, de->d_name, 36);
        id[36] = '\0';
        a = find_acked(id);
        if (a == NULL)
            fail_msg("file of a dialog never acknowledged: %s", de->d_name);
        (void)snprintf(path, sizeof(path), "%s/%s", mnt, de->d_name);
        doc = files_current ? h_dialog_file_wait(path, id, a->doc)
                            : h_dialog_file(path, id);
        if (doc == NULL)
            fail_msg("%s is not one plain JSON dialog", de->d_name);
        if (files_current)
            assert_string_equal(doc, a->doc);
        free(doc);
    }
    closedir(d);
    if (files_current) {
        /* Every acknowledged dialog's file, once the checkpointer caught up. */
        for (size_t i = 0; i < n_acked; i++) {
            char path[256];
            char *doc;

            (void)snprintf(path, sizeof(path), "%s/%.36s.json", mnt, acked[i].id);
            doc = h_dialog_file_wait(path, acked[i].id, acked[i].doc);
            if (doc == NULL || strcmp(doc, acked[i].doc) != 0)
                fail_msg("%s.json is not the acknowledged dialog", acked[i].id);
            free(doc);
        }
    }
    for (size_t i = 0; i < n_acked; i++) {
        char path[128];
        char *raw = NULL;

        (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%.36s", acked[i].id);
        assert_int_equal(h_http(port, "GET", path, NULL, NULL, NULL, &raw, NULL, 0), 200);
        assert_non_null(raw);
        assert_string_equal(raw, acked[i].doc);
        free(raw);
    }
}

/* The error shape {"detail": "...", "code": @code}. */
static void assert_error(json_t *j, const char *code)
{
    assert_non_null(j);
    assert_true(json_is_object(j));
    assert_int_equal(json_object_size(j), 2);
    assert_string_equal(json_string_value(json_object_get(j, "code")), code);
    assert_true(json_string_length(json_object_get(j, "detail")) > 0);
}

/* /api/v1/health/ready is 503 and one reason names the storage and @what. */
static void assert_not_ready(unsigned port, const char *what)
{
    json_t *j = NULL;
    json_t *reasons;
    bool named = false;

    assert_int_equal(
        h_http(port, "GET", "/api/v1/health/ready", NULL, NULL, &j, NULL, NULL, 0), 503);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "not_ready");
    reasons = json_object_get(j, "reasons");
    for (size_t i = 0; i < json_array_size(reasons); i++) {
        const char *r = json_string_value(json_array_get(reasons, i));

        print_message("# ready reason: %s\n", r);
        named = named || (strstr(r, "storage") != NULL && strstr(r, what) != NULL);
    }
    assert_true(named);
    json_decref(j);
    /* The overall health agrees. */
    assert_int_equal(h_http(port, "GET", "/api/v1/health", NULL, NULL, &j, NULL, NULL, 0),
                     503);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(j, "components"), "dialog_storage")),
                        "unhealthy");
    json_decref(j);
}

/* Readiness comes back without any write; the probe runs at most once a second. */
static void wait_ready(unsigned port)
{
    long st = 0;

    for (int i = 0; i < 100 && st != 200; i++) {
        if (i > 0)
            sleep_ms(100);
        st = h_http(port, "GET", "/api/v1/health/ready", NULL, NULL, NULL, NULL, NULL, 0);
    }
    assert_int_equal(st, 200);
}

/* POST /api/v1/dialogue/create; returns the status, the id in @id on 201. */
static long create(unsigned port, char id[37], json_t **ret_json)
{
    json_t *j = NULL;
    long st = h_http(port, "POST", "/api/v1/dialogue/create",
                     "{\"customer_info\":{\"name\":\"Disk\"},\"initial_message\":"
                     "\"My app does not start after the update\"}",
                     NULL, &j, NULL, NULL, 0);

    if (st == 201)
        (void)snprintf(id, 37, "%s", json_string_value(json_object_get(j, "dialog_id")));
    if (ret_json != NULL)
        *ret_json = j;
    else
        json_decref(j);
    return st;
}

/* A message of about 1900 bytes; returns the status. */
static long big_message(unsigned port, const char *id, json_t **ret_json)
{
    static const char words[] = "my account login fails with an error again ";
    char text[1901];
    char body[2100];
    char path[128];
    json_t *j = NULL;
    long st;

    for (size_t i = 0; i < sizeof(text) - 1; i++)
        text[i] = words[i % (sizeof(words) - 1)];
    text[sizeof(text) - 1] = '\0';
    (void)snprintf(body, sizeof(body), "{\"message\":\"%s\"}", text);
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", id);
    st = h_http(port, "POST", path, body, NULL, &j, NULL, NULL, 0);
    if (ret_json != NULL)
        *ret_json = j;
    else
        json_decref(j);
    return st;
}

static void test_full_disk(void **state)
{
    char dir[64];
    struct proc srv = {0};
    char id[37] = "";
    char failed_id[37] = "";
    json_t *j = NULL;
    long st = 0;
    int requests = 0;
    int failures = 0;
    size_t messages = 0;

    (void)state;
    H_FILE_STORE_ONLY("a full tmpfs under dialogs/: the file store's disk");
    h_tmpdir(dir);
    mount_storage(dir, "128k");
    h_server_start(&srv, dir, NULL);
    wait_ready(srv.port);

    /* Fill: new dialogs, two big messages each, until a write is refused. */
    while (requests < 400) {
        requests++;
        st = create(srv.port, id, &j);
        if (st != 201)
            break;
        json_decref(j);
        snapshot(srv.port, id);
        for (int m = 0; m < 2; m++) {
            requests++;
            st = big_message(srv.port, id, &j);
            if (st != 200) {
                (void)snprintf(failed_id, sizeof(failed_id), "%s", id);
                break;
            }
            json_decref(j);
            messages++;
            snapshot(srv.port, id);
        }
        if (st != 200)
            break;
    }
    print_message("# full disk after %d requests: %zu dialogs and %zu messages "
                  "acknowledged, then %ld\n",
                  requests, n_acked, messages, st);
    assert_int_equal(st, 507);
    assert_error(j, "insufficient_storage");
    json_decref(j);
    failures++;
    assert_true(n_acked >= 2);

    /* No partial file, earlier dialogs intact and served, readiness says full. */
    assert_storage_intact(srv.port, false);
    assert_not_ready(srv.port, "full");
    /* The same write keeps failing the same way while the disk is full. */
    for (int i = 0; i < 3 && failed_id[0] != '\0'; i++) {
        assert_int_equal(big_message(srv.port, failed_id, &j), 507);
        assert_error(j, "insufficient_storage");
        json_decref(j);
        failures++;
    }
    assert_storage_intact(srv.port, false);
    assert_not_ready(srv.port, "full");
    assert_int_equal(
        h_http(srv.port, "GET", "/api/v1/dialogues", NULL, NULL, NULL, NULL, NULL, 0),
        200);

    /* Space returns: readiness first (no write needed), then writes. */
    remount_storage(0, "4m");
    wait_ready(srv.port);
    if (failed_id[0] != '\0') {
        assert_int_equal(big_message(srv.port, failed_id, NULL), 200);
        snapshot(srv.port, failed_id);
    }
    assert_int_equal(create(srv.port, id, NULL), 201);
    snapshot(srv.port, id);
    assert_int_equal(big_message(srv.port, id, NULL), 200);
    snapshot(srv.port, id);
    assert_storage_intact(srv.port, true);
    print_message("# %d requests refused with 507; %zu dialog files intact\n", failures,
                  n_acked);
    /* A restart (after a SIGKILL) finds every acknowledged dialog. */
    h_kill(&srv);
    h_server_start(&srv, dir, NULL);
    assert_storage_intact(srv.port, true);
    assert_int_equal(h_stop(&srv), 0);
    assert_int_equal(umount2(mnt, 0), 0);
    mnt[0] = '\0';
    forget_acked();
}

static void test_read_only(void **state)
{
    char dir[64];
    struct proc srv = {0};
    char id[37];
    char ids[3][37];
    json_t *j = NULL;

    (void)state;
    H_FILE_STORE_ONLY("a read-only tmpfs under dialogs/: the file store's disk");
    h_tmpdir(dir);
    mount_storage(dir, "1m");
    h_server_start(&srv, dir, NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(create(srv.port, ids[i], NULL), 201);
        assert_int_equal(big_message(srv.port, ids[i], NULL), 200);
        snapshot(srv.port, ids[i]);
    }
    wait_ready(srv.port);
    /* Files current: no checkpoint holds a file open for writing (remount: EBUSY). */
    assert_storage_intact(srv.port, true);

    remount_storage(MS_RDONLY, "1m");
    assert_not_ready(srv.port, "read-only");
    assert_int_equal(big_message(srv.port, ids[0], &j), 503);
    assert_error(j, "storage_unavailable");
    json_decref(j);
    assert_int_equal(create(srv.port, id, &j), 503);
    assert_error(j, "storage_unavailable");
    json_decref(j);
    assert_storage_intact(srv.port, false); /* reads still work, nothing changed */
    assert_not_ready(srv.port, "read-only");

    remount_storage(0, "1m");
    wait_ready(srv.port);
    assert_int_equal(big_message(srv.port, ids[0], NULL), 200);
    snapshot(srv.port, ids[0]);
    assert_int_equal(create(srv.port, id, NULL), 201);
    snapshot(srv.port, id);
    assert_storage_intact(srv.port, true);
    assert_int_equal(h_stop(&srv), 0);
    assert_int_equal(umount2(mnt, 0), 0);
    mnt[0] = '\0';
    forget_acked();
}

/* Can this process mount a tmpfs at all? Else say why in @why. */
static bool can_mount(char *why, size_t why_size)
{
    char dir[64];
    bool ok;

    h_tmpdir(dir);
    ok = mount("tmpfs", dir, "tmpfs", 0, "size=64k") == 0;
    if (!ok)
        (void)snprintf(why, why_size, "%s", strerror(errno));
    else
        (void)umount2(dir, 0);
    return ok;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_full_disk, teardown),
        cmocka_unit_test_teardown(test_read_only, teardown),
    };
    char why[128];
    int rc;

    if (!can_mount(why, sizeof(why))) {
        h_remove_tmpdirs();
        printf("1..0 # SKIP cannot mount tmpfs: %s\n", why);
        return 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    h_remove_tmpdirs();
    return rc;
}
