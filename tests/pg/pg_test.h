/* SPDX-License-Identifier: MIT */
/*
 * The throwaway PostgreSQL server of the store_pg tests (tests/pg/pg.sh), for
 * test_store_pg.c and test_store_pg_e2e.c: one per test program, in @pgdir.
 */
#ifndef CCA_PG_TEST_H
#define CCA_PG_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char pgdir[96]; /* the server's directory (a temporary one's pg/) */

/* Run tests/pg/pg.sh @cmd on @pgdir; its first line of output into @out (may be NULL). */
static int pg_sh(const char *cmd, char *out, size_t size)
{
    char line[512];
    FILE *p;
    int st;

    (void)snprintf(line, sizeof(line), "%s/tests/pg/pg.sh %s %s", CCA_SOURCE_ROOT, cmd,
                   pgdir);
    p = popen(line, "r");
    if (p == NULL)
        return -1;
    if (out != NULL) {
        out[0] = '\0';
        if (fgets(out, (int)size, p) != NULL)
            out[strcspn(out, "\n")] = '\0';
    }
    while (fgets(line, sizeof(line), p) != NULL)
        ;
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * A child that stops the server when this process ends, however it ends (a
 * failed assertion, a sanitizer abort, a kill): it waits for the end of a
 * pipe whose only writer is us. Returns our end (close it to stop the server).
 */
static int start_guard(void)
{
    int fds[2];
    pid_t pid;
    char c;

    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        close(fds[1]);
        while (read(fds[0], &c, 1) > 0)
            ;
        _exit(pg_sh("stop", NULL, 0) == 0 ? 0 : 1);
    }
    close(fds[0]);
    return fds[1];
}

/*
 * pg_test_main - the main() of a test program on a throwaway server: a
 * temporary directory from @tmpl ("/tmp/cca-…-XXXXXX", searchable by the
 * server's user), the server started in its pg/, @ready (may be NULL) told its
 * URL (also in @url, @size bytes), the cmocka group @tests (@n of them) run,
 * @done (may be NULL) called, the server stopped and the directory removed
 * (by the guard: however the process ends). Without the server binaries the
 * program is a TAP skip ("1..0 # SKIP", exit 0: meson's TAP parser takes 77
 * as a failure). Returns the exit status.
 */
static int pg_test_main(const char *tmpl, const struct CMUnitTest *tests, size_t n,
                        char *url, size_t size, void (*ready)(const char *url),
                        void (*done)(void))
{
    char tmp[64];
    int guard;
    int rc;

    (void)snprintf(tmp, sizeof(tmp), "%s", tmpl);
    if (mkdtemp(tmp) == NULL || chmod(tmp, 0711) != 0) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    (void)snprintf(pgdir, sizeof(pgdir), "%s/pg", tmp);
    rc = pg_sh("start", url, size);
    if (rc == 77) {
        (void)rmdir(tmp);
        printf(
            "1..0 # SKIP no PostgreSQL server binaries (apt-get install postgresql)\n");
        return 0;
    }
    if (rc != 0) {
        (void)rmdir(tmp);
        fprintf(stderr, "tests/pg/pg.sh start failed (%d)\n", rc);
        return 1;
    }
    guard = start_guard();
    if (ready != NULL)
        ready(url);
    rc = _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
    if (done != NULL)
        done();
    /* The guard stops the server and removes its directory once we close our end. */
    close(guard);
    (void)wait(NULL);
    (void)rmdir(tmp);
    return rc;
}

#endif
