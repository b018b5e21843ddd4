/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the request headers and paths a static file's answer depends
 * on (web.c): Accept-Encoding, If-None-Match and the path lookup, each fed as
 * MHD hands them over (a NUL-terminated string).
 * Input: byte 0 picks the parser (mod 3), the rest is the value.
 * Invariants checked: no read past the string (ASan); a found file's path is
 * the input or the input is its directory; an If-None-Match that is exactly
 * a file's tag matches it, and one that does not name the tag never does
 * unless it holds "*".
 */
#include <stdbool.h>
#include <string.h>

#include "cca/web.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    return 0;
}

static bool is_dir_of(const char *in, const char *path)
{
    static const char *const dirs[][2] = {{"/console", "/console/index.html"},
                                          {"/docs", "/docs/index.html"}};

    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(dirs[i][0]);

        if (strcmp(path, dirs[i][1]) == 0 && strncmp(in, dirs[i][0], n) == 0 &&
            (in[n] == '\0' || strcmp(in + n, "/") == 0))
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;
    const struct cca_web_asset *a;

    if (size < 1 || size > 8192)
        return 0;
    s = cca_xstrndup((const char *)data + 1, size - 1); /* stops at an inner NUL */
    switch (data[0] % 3) {
        case 0:
            (void)cca_web_accepts_gzip(s);
            break;
        case 1:
            a = cca_web_at((size_t)data[0] % cca_web_count());
            if (cca_web_etag_matches(s, a->etag)) {
                FUZZ_CHECK(strstr(s, a->etag + 1) != NULL || strchr(s, '*') != NULL);
            } else {
                FUZZ_CHECK(strcmp(s, a->etag) != 0);
            }
            break;
        default:
            a = cca_web_find(s);
            if (a != NULL)
                FUZZ_CHECK(strcmp(a->path, s) == 0 || is_dir_of(s, a->path));
            break;
    }
    free(s);
    return 0;
}
