/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the URL route table (http_routes.c cca_http_match), fed the
 * way start_request (http_server.c) feeds it: MHD's decoded path as a C
 * string, one trailing '/' dropped, cut to CCA_HTTP_MAX_PATH - 1 bytes, into
 * the request's allow[64] and segment_id[128] buffers. The "{id}" segment then
 * goes through cca_uuid_canonical, the only gate to a file name.
 * Input: byte 0 picks the method (GET, POST, DELETE, PUT, PATCH, HEAD,
 * OPTIONS, or the raw next bytes up to a space), the rest is the path.
 * Invariants checked: a found route has the request's method and its pattern
 * matches the path segment by segment; a 405 lists allowed methods; the
 * segment never holds '/' and fits its buffer; a segment accepted as an id is
 * a canonical UUID (no "..", no "%2e").
 */
#include <stdbool.h>
#include <string.h>

#include "cca/common.h"
#include "fuzz.h"
#include "http_int.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    return 0;
}

/* Independent re-check of a match: literal bytes equal, "{id}" a non-empty segment. */
static bool pattern_matches(const char *pattern, const char *path)
{
    while (*pattern != '\0') {
        if (strncmp(pattern, "{id}", 4) == 0) {
            size_t n = strcspn(path, "/");

            if (n == 0)
                return false;
            pattern += 4;
            path += n;
        } else if (*pattern++ != *path++) {
            return false;
        }
    }
    return *path == '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET",   "POST", "DELETE", "PUT",
                                          "PATCH", "HEAD", "OPTIONS"};
    char method[16];
    char path[CCA_HTTP_MAX_PATH];
    char allow[64];
    char segment[128];
    const struct cca_http_route *route;
    const char *p;
    size_t len;
    bool known = true;

    if (size == 0)
        return 0;
    p = (const char *)data + 1;
    len = size - 1;
    if (data[0] % 8 < CCA_ARRAY_SIZE(methods)) {
        (void)snprintf(method, sizeof(method), "%s", methods[data[0] % 8]);
    } else {
        /* A raw token, as MHD would pass any method (the request's method[16]). */
        const char *sp = memchr(p, ' ', len);
        size_t n = sp != NULL ? (size_t)(sp - p) : 0;

        (void)snprintf(method, sizeof(method), "%.*s", (int)(n < 15 ? n : 15), p);
        if (strlen(method) != (n < 15 ? n : 15))
            return 0; /* a NUL inside: not a C-string method */
        p += n + (sp != NULL);
        len -= n + (sp != NULL);
    }
    /* MHD's url is a C string. */
    len = strnlen(p, len);
    if (len > 1 && p[len - 1] == '/')
        len--;
    if (len >= sizeof(path))
        len = sizeof(path) - 1;
    memcpy(path, p, len);
    path[len] = '\0';

    memset(segment, 0, sizeof(segment));
    route = cca_http_match(method, path, &known, allow, sizeof(allow), segment,
                           sizeof(segment));
    FUZZ_CHECK(memchr(allow, '\0', sizeof(allow)) != NULL);
    FUZZ_CHECK(memchr(segment, '\0', sizeof(segment)) != NULL);
    FUZZ_CHECK(strchr(segment, '/') == NULL);
    if (route != NULL) {
        char canon[37];

        FUZZ_CHECK(known);
        FUZZ_CHECK(strcmp(route->method, method) == 0);
        FUZZ_CHECK(pattern_matches(route->pattern, path));
        FUZZ_CHECK(cca_http_route_at(cca_http_route_index(route)) == route);
        if (strstr(route->pattern, "{id}") != NULL) {
            FUZZ_CHECK(segment[0] != '\0');
            if (cca_uuid_canonical(segment, canon)) {
                /* Accepted ids are whole path segments, never a truncated one. */
                const char *at = strstr(path, segment);

                FUZZ_CHECK(at != NULL && at > path && at[-1] == '/');
                FUZZ_CHECK(at[strlen(segment)] == '/' || at[strlen(segment)] == '\0');
                FUZZ_CHECK(strlen(canon) == 36);
                FUZZ_CHECK(strspn(canon, "0123456789abcdef-") == 36);
            }
        }
    } else if (known) {
        FUZZ_CHECK(allow[0] != '\0');
    } else {
        /* No pattern matches the path. */
        for (size_t i = 0; i < cca_http_route_count(); i++)
            FUZZ_CHECK(!pattern_matches(cca_http_route_at(i)->pattern, path));
    }
    return 0;
}
