/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/mem.h"

static void oom(size_t size)
{
    char line[96];
    int n =
        snprintf(line, sizeof(line), "fatal: out of memory allocating %zu bytes\n", size);

    /* write(2) rather than stdio or cca_log: neither may allocate here. */
    if (n > 0)
        (void)!write(STDERR_FILENO, line, (size_t)n);
    abort();
}

void *cca_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    if (p == NULL)
        oom(size);
    return p;
}

void *cca_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL)
        oom(n * size);
    return p;
}

void *cca_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);

    if (q == NULL)
        oom(size);
    return q;
}

char *cca_xstrdup(const char *s)
{
    return cca_xstrndup(s, strlen(s));
}

char *cca_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = cca_xmalloc(len + 1);

    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void cca_mem_install_jansson(void)
{
    json_set_alloc_funcs(cca_xmalloc, free);
}
