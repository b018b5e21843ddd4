/* SPDX-License-Identifier: MIT */
/*
 * The throwaway PostgreSQL server of the store_pg tests (tests/pg/pg.sh), for
 * test_store_pg.c and test_store_pg_e2e.c: one per test program, in @pgdir.
 */
#ifndef CCA_PG_TEST_H
#define CCA_PG_TEST_H

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
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

#endif
