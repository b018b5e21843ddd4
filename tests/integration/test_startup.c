/* SPDX-License-Identifier: MIT */
/*
 * Start-up and operations, as a new user meets them: the version command, one
 * server per port and per storage directory, configuration messages that name
 * what the user wrote, production without API keys, storage files that are
 * not regular files, stop signals during start-up, a damaged dialog file, and
 * what the detailed health page shows to whom. The real server binary, each
 * case in its own temporary directory.
 */
#include "cca_test.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/common.h"

#include "harness.h"

#define KEY     "ck-3e1d9a7f-startup"
#define EXIT_MS 10000

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Run the binary to its end (@cmd NULL: serve); returns its output (new). */
static char *run(const char *dir, const char *const *env, const char *cmd,
                 int *ret_status)
{
    char log[128];
    pid_t pid;

    (void)snprintf(log, sizeof(log), "%s/run.log", dir);
    pid = h_server_spawn(dir, env, cmd, log);
    *ret_status = h_wait_exit(pid, EXIT_MS);
    if (*ret_status == -2) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        fail_msg("the server did not exit (see %s)", log);
    }
    return h_read_text(log);
}

static void test_version(void **state)
{
    static const char *const cmds[] = {"--version", "version"};
    char dir[64];
    int status;

    (void)state;
    h_tmpdir(dir);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cmds); i++) {
        char *out = run(dir, NULL, cmds[i], &status);

        assert_int_equal(status, 0);
        if (strncmp(out, "call-center-agents ", 19) != 0 ||
            !(out[19] >= '0' && out[19] <= '9') || strchr(out, '\n') == NULL ||
            strchr(out, '\n')[1] != '\0')
            fail_msg("%s printed '%s'", cmds[i], out);
        free(out);
    }
    {
        char *out = run(dir, NULL, "no-such-command", &status);

        assert_int_equal(status, 1);
        assert_non_null(strstr(out, "unknown command 'no-such-command'"));
        free(out);
    }
}

/* A second server on a busy port exits and names the port and the holder. */
static void test_same_port(void **state)
{
    struct proc a = {0};
    char dir_a[64], dir_b[64];
    char port_env[32];
    char want[128];
    const char *env[] = {port_env, NULL};
    int status;
    char *out;

    (void)state;
    h_tmpdir(dir_a);
    h_tmpdir(dir_b);
    h_server_start(&a, dir_a, NULL);
    (void)snprintf(port_env, sizeof(port_env), "PORT=%u", a.port);
    out = run(dir_b, env, NULL, &status);
    assert_int_equal(status, 1);
    (void)snprintf(want, sizeof(want),
                   "port %u on 127.0.0.1 is already in use by process %ld", a.port,
                   (long)a.pid);
    if (strstr(out, want) == NULL)
        fail_msg("no '%s' in:\n%s", want, out);
    assert_null(strstr(out, "event=listening"));
    free(out);
    /* The first server alone keeps serving. */
    assert_int_equal(
        h_http(a.port, "GET", "/api/v1/health/live", NULL, NULL, NULL, NULL, NULL, 0),
        200);
    assert_int_equal(h_stop(&a), 0);
}

/* A second server on the same storage directory exits naming it and the holder. */
static void test_same_storage(void **state)
{
    struct proc a = {0};
    char dir_a[64], dir_b[64];
    char storage_env[128];
    char want[192];
    const char *env[] = {storage_env, NULL};
    int status;
    char *out;

    (void)state;
    H_FILE_STORE_ONLY("the storage directory's lock (one server per database: "
                      "test_store_pg, store_pg_e2e)");
    h_tmpdir(dir_a);
    h_tmpdir(dir_b);
    h_server_start(&a, dir_a, NULL);
    (void)snprintf(storage_env, sizeof(storage_env), "DIALOGS_STORAGE_PATH=%s/dialogs",
                   dir_a);
    out = run(dir_b, env, NULL, &status);
    assert_int_equal(status, 1);
    (void)snprintf(want, sizeof(want),
                   "storage directory %s/dialogs is in use by another server (pid %ld)",
                   dir_a, (long)a.pid);
    if (strstr(out, want) == NULL)
        fail_msg("no '%s' in:\n%s", want, out);
    assert_null(strstr(out, "event=listening"));
    free(out);
    /* A SIGKILL leaves no stale lock: the next server starts on the directory. */
    h_kill(&a);
    h_server_start(&a, dir_a, NULL);
    assert_int_equal(h_stop(&a), 0);
}

/* Configuration as the user wrote it: the .env line, level names, no MHD notice. */
static void test_config_messages(void **state)
{
    struct proc a = {0};
    char dir[64];
    char path[128];
    FILE *f;
    int status;
    char *out;

    (void)state;
    h_tmpdir(dir);
    (void)snprintf(path, sizeof(path), "%s/.env", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("# settings\nLOG_LEVEL=info\nTHREADS=abc\n", f);
    fclose(f);
    out = run(dir, NULL, NULL, &status);
    assert_int_equal(status, 1);
    if (strstr(out, ".env:3: THREADS='abc' is not an integer") == NULL)
        fail_msg("the error does not name .env and its line:\n%s", out);
    free(out);
    assert_int_equal(unlink(path), 0);

    h_server_start(&a, dir, NULL);
    assert_int_equal(
        h_http(a.port, "GET", "/api/v1/dialogue/abc", NULL, NULL, NULL, NULL, NULL, 0),
        404);
    assert_int_equal(h_stop(&a), 0);
    out = h_read_text(a.log);
    assert_non_null(strstr(out, " LOG_LEVEL=info "));
    assert_non_null(strstr(out, " OPENAI_TEMPERATURE='' "));
    assert_null(strstr(out, "nan"));
    assert_null(strstr(out, "MHD_OPTION_EXTERNAL_LOGGER"));
    /* A 4xx request line carries the error code. */
    assert_non_null(strstr(out, "path='/api/v1/dialogue/abc' status=404 code=not_found"));
    free(out);
}

/* A non-UUID path id says so (and stays 404, as the spec documents). */
static void test_not_a_uuid(void **state)
{
    struct proc a = {0};
    char dir[64];
    json_t *j = NULL;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&a, dir, NULL);
    assert_int_equal(
        h_http(a.port, "GET", "/api/v1/dialogue/abc", NULL, NULL, &j, NULL, NULL, 0),
        404);
    assert_string_equal(json_string_value(json_object_get(j, "code")), "not_found");
    assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "UUID"));
    json_decref(j);
    assert_int_equal(h_stop(&a), 0);
}

/* ENVIRONMENT=production with no API key refuses to start unless asked for. */
static void test_production_needs_keys(void **state)
{
    static const char *const open_env[] = {"ENVIRONMENT=production", NULL};
    static const char *const allowed[] = {"ENVIRONMENT=production",
                                          "ALLOW_ANONYMOUS=true", NULL};
    static const char *const keyed[] = {"ENVIRONMENT=production", "API_KEYS=" KEY, NULL};
    struct proc a = {0};
    char dir[64];
    int status;
    char *out;

    (void)state;
    h_tmpdir(dir);
    out = run(dir, open_env, NULL, &status);
    assert_int_equal(status, 1);
    assert_non_null(strstr(out, "ENVIRONMENT=production needs API_KEYS"));
    assert_non_null(strstr(out, "ALLOW_ANONYMOUS=true"));
    assert_null(strstr(out, "event=listening"));
    free(out);
    h_server_start(&a, dir, allowed);
    assert_int_equal(h_stop(&a), 0);
    h_server_start(&a, dir, keyed);
    assert_int_equal(h_stop(&a), 0);
}

/* /health/detailed needs a key once keys are set; the orchestrator probes do not. */
static void test_health_detailed_needs_key(void **state)
{
    static const char *const env[] = {"API_KEYS=" KEY, NULL};
    static const char *const with_key[] = {"Authorization: Bearer " KEY, NULL};
    static const char *const public_paths[] = {"/api/v1/health", "/api/v1/health/ready",
                                               "/api/v1/health/live"};
    struct proc a = {0};
    char dir[64];
    struct h_req rq = {.method = "GET", .path = "/api/v1/health/detailed"};
    struct h_resp resp;
    char where[64]; /* the storage: its path, or the database's name */

    (void)state;
    h_tmpdir(dir);
    if (h_store_pg())
        h_database_name(dir, where);
    else
        (void)snprintf(where, sizeof(where), "%s", dir);
    h_server_start(&a, dir, env);
    assert_int_equal(h_request(a.port, &rq, &resp), 401);
    assert_null(strstr(resp.raw, where)); /* no storage path for strangers */
    h_resp_free(&resp);
    rq.headers = with_key;
    assert_int_equal(h_request(a.port, &rq, &resp), 200);
    assert_non_null(strstr(resp.raw, where));
    h_resp_free(&resp);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(public_paths); i++)
        assert_int_equal(
            h_http(a.port, "GET", public_paths[i], NULL, NULL, NULL, NULL, NULL, 0), 200);
    assert_int_equal(h_stop(&a), 0);
}

/* A FIFO named like a dialog does not hang start-up; SIGTERM works during start-up. */
static void test_fifo_and_stop_during_startup(void **state)
{
    struct proc a = {0};
    char dir[64];
    char path[192];
    char lexicon_env[256];
    const char *env[] = {lexicon_env, NULL};
    char log[128];
    char *out;
    pid_t pid;

    (void)state;
    h_tmpdir(dir);
    if (h_file_store("a FIFO named like a dialog in dialogs/")) {
        (void)snprintf(path, sizeof(path), "%s/dialogs", dir);
        assert_int_equal(mkdir(path, 0750), 0);
        (void)snprintf(path, sizeof(path),
                       "%s/dialogs/33333333-3333-4333-8333-333333333333.json", dir);
        assert_int_equal(mkfifo(path, 0640), 0);
        h_server_start(&a, dir, NULL);
        assert_int_equal(
            h_http(a.port, "GET", "/api/v1/health/live", NULL, NULL, NULL, NULL, NULL, 0),
            200);
        assert_int_equal(h_stop(&a), 0);
        out = h_read_text(a.log);
        assert_non_null(strstr(out, "33333333-3333-4333-8333-333333333333.json' "
                                    "reason='not a regular file, ignoring'"));
        free(out);
    }

    /* A lexicon that is a FIFO blocks start-up in open(2): SIGTERM still stops it. */
    (void)snprintf(path, sizeof(path), "%s/lexicon.fifo", dir);
    assert_int_equal(mkfifo(path, 0640), 0);
    (void)snprintf(lexicon_env, sizeof(lexicon_env), "ROUTING_LEXICON_PATH=%s", path);
    (void)snprintf(log, sizeof(log), "%s/blocked.log", dir);
    pid = h_server_spawn(dir, env, NULL, log);
    sleep_ms(500);
    assert_int_equal(h_wait_exit(pid, 10), -2); /* still starting */
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(h_wait_exit(pid, EXIT_MS), 0);
    out = h_read_text(log);
    assert_non_null(strstr(out, "stop requested during start-up"));
    free(out);
}

/* Insert @line before line @n (1-based) of the journal segment in @dir. */
static void damage_journal(const char *dir, size_t n, const char *line, char *ret_name)
{
    char path[256];
    char *text;
    char *p;
    DIR *d = opendir(dir);
    struct dirent *de;
    FILE *f;

    assert_non_null(d);
    ret_name[0] = '\0';
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "journal-", 8) == 0)
            (void)snprintf(ret_name, 64, "%.63s", de->d_name);
    }
    closedir(d);
    assert_true(ret_name[0] != '\0');
    (void)snprintf(path, sizeof(path), "%s/%s", dir, ret_name);
    text = h_read_text(path);
    p = text;
    for (size_t k = 1; k < n; k++) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fwrite(text, 1, (size_t)(p - text), f);
    fputs(line, f);
    fputs(p, f);
    fclose(f);
    free(text);
}

/*
 * A SIGKILL with turns only in the journal, and a damaged line in the journal
 * before the second turn: the dialog is served up to the damage, what followed
 * is reported, and the damaged segment is kept aside.
 */
static void test_damaged_dialog(void **state)
{
    static const char *const env[] = {"STORAGE_CHECKPOINT_MS=1000", NULL};
    struct proc a = {0};
    char dir[64];
    char id[37];
    char path[192];
    char body[64];
    char segment[64];
    json_t *j = NULL;
    int aside = 0;
    DIR *d;
    struct dirent *de;
    char *out;

    (void)state;
    H_FILE_STORE_ONLY("a damaged line in the journal: the file store's");
    h_tmpdir(dir);
    h_server_start(&a, dir, env);
    h_create(a.port, NULL, id);
    for (int i = 1; i <= 3; i++) {
        (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", id);
        (void)snprintf(body, sizeof(body), "{\"message\":\"Question number %d\"}", i);
        assert_int_equal(h_http(a.port, "POST", path, body, NULL, NULL, NULL, NULL, 0),
                         200);
    }
    h_kill(&a); /* the turns are in the journal, maybe not yet in the file */
    /* Lines: the create, turn 1, turn 2, turn 3. Damage before turn 2. */
    (void)snprintf(path, sizeof(path), "%s/dialogs", dir);
    damage_journal(path, 3, "{\"lsn\":3,\"coll\":\"dialogs\",\"id\":\"x\",\"pat\n",
                   segment);
    h_server_start(&a, dir, NULL);
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s", id);
    assert_int_equal(h_http(a.port, "GET", path, NULL, NULL, &j, NULL, NULL, 0), 200);
    assert_int_equal(json_array_size(json_object_get(j, "messages")), 2);
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(j, "messages"), 0), "content")),
        "Question number 1");
    json_decref(j);
    /* The salvaged dialog takes new turns. */
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", id);
    assert_int_equal(h_http(a.port, "POST", path, "{\"message\":\"Again\"}", NULL, NULL,
                            NULL, NULL, 0),
                     200);
    assert_int_equal(h_stop(&a), 0);
    out = h_read_text(a.log);
    assert_non_null(strstr(out, "line 3' reason='damaged: not JSON; replay stops here'"));
    assert_non_null(strstr(out, "damaged: 2 later lines were not replayed"));
    assert_non_null(strstr(out, "damaged segment kept as"));
    free(out);
    (void)snprintf(path, sizeof(path), "%s/dialogs", dir);
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        aside += strncmp(de->d_name, segment, strlen(segment)) == 0 &&
                 strstr(de->d_name, ".damaged-") != NULL;
    closedir(d);
    assert_int_equal(aside, 1);
}

/*
 * A descriptor limit too small for MAX_CONNECTIONS: a warning with the numbers,
 * MAX_CONNECTIONS lowered to fit, and the server still serves. Runs last: it
 * lowers this process's hard limit, which only root can raise back.
 */
static void test_descriptor_limit(void **state)
{
    struct rlimit old, small = {256, 256};
    struct proc a = {0};
    char dir[64];
    char *out;

    (void)state;
    h_tmpdir(dir);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    if (old.rlim_max < 256)
        skip();
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &small), 0);
    h_server_start(&a, dir, NULL); /* MAX_CONNECTIONS=4096 by default */
    (void)setrlimit(RLIMIT_NOFILE, &old);
    for (int i = 0; i < 20; i++)
        assert_int_equal(
            h_http(a.port, "GET", "/api/v1/health/live", NULL, NULL, NULL, NULL, NULL, 0),
            200);
    assert_int_equal(h_stop(&a), 0);
    out = h_read_text(a.log);
    if (strstr(out, "RLIMIT_NOFILE=256 (hard 256) is below the 4160 descriptors "
                    "MAX_CONNECTIONS=4096 needs") == NULL ||
        strstr(out, "MAX_CONNECTIONS lowered to 192") == NULL)
        fail_msg("no descriptor warning in:\n%s", out);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_version, h_kill_all),
        cmocka_unit_test_teardown(test_same_port, h_kill_all),
        cmocka_unit_test_teardown(test_same_storage, h_kill_all),
        cmocka_unit_test_teardown(test_config_messages, h_kill_all),
        cmocka_unit_test_teardown(test_not_a_uuid, h_kill_all),
        cmocka_unit_test_teardown(test_production_needs_keys, h_kill_all),
        cmocka_unit_test_teardown(test_health_detailed_needs_key, h_kill_all),
        cmocka_unit_test_teardown(test_fifo_and_stop_during_startup, h_kill_all),
        cmocka_unit_test_teardown(test_damaged_dialog, h_kill_all),
        cmocka_unit_test_teardown(test_descriptor_limit, h_kill_all),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    h_remove_tmpdirs();
    return rc;
}
