/* SPDX-License-Identifier: MIT */
/*
 * Replay main for the fuzz targets (the dav1d pattern): runs
 * LLVMFuzzerInitialize when the target defines it, then LLVMFuzzerTestOneInput
 * once per file named on the command line or found (non-recursively, sorted,
 * hidden files skipped) in a directory named there. Lets gcc builds and
 * ordinary test runs execute every corpus entry and crash reproducer.
 * Exit status: 0, or 1 when an argument is unreadable or no input was found.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Weak: a target without an initialiser leaves it NULL. */
extern int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0;
    size_t len = 0;
    size_t n;
    int rc = 1;

    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    do {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = cca_xrealloc(buf, cap);
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        goto out;
    }
    /* An exact-size copy, so ASan sees any read past the input's end. */
    {
        uint8_t *exact = cca_xmalloc(len ? len : 1);

        memcpy(exact, buf, len);
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
        (void)LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    (*count)++;
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;
    int rc = 0;

    if (d == NULL) {
        fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        names = cca_xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = cca_xstrdup(de->d_name);
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        size_t plen = strlen(dir) + strlen(names[i]) + 2;
        char *path = cca_xmalloc(plen);
        struct stat st;

        (void)snprintf(path, plen, "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc |= run_file(path, count);
        free(path);
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int rc = 0;

    if (LLVMFuzzerInitialize != NULL)
        (void)LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
        } else if (S_ISDIR(st.st_mode)) {
            rc |= run_dir(argv[i], &count);
        } else {
            rc |= run_file(argv[i], &count);
        }
    }
    printf("replayed %zu inputs\n", count);
    if (count == 0) {
        fprintf(stderr, "replay: no inputs (usage: %s DIR|FILE...)\n", argv[0]);
        rc = 1;
    }
    return rc;
}
