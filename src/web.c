/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "cca/mem.h"
#include "web_int.h"

/*
 * The embedded static files (include/cca/web.h) and the HTTP rules of static
 * files: content coding (RFC 9110 12.5.3) and If-None-Match (RFC 9110 13.1.2).
 */

const struct cca_web_asset *cca_web_find(const char *path)
{
    static const struct {
        const char *dir;
        const char *index;
    } dirs[] = {{"/console", "/console/index.html"}, {"/docs", "/docs/index.html"}};
    size_t lo = 0;
    size_t hi = cca_web_table_len;

    for (size_t i = 0; i < CCA_ARRAY_SIZE(dirs); i++) {
        size_t n = strlen(dirs[i].dir);

        if (strncmp(path, dirs[i].dir, n) == 0 &&
            (path[n] == '\0' || (path[n] == '/' && path[n + 1] == '\0'))) {
            path = dirs[i].index;
            break;
        }
    }
    while (lo < hi) { /* the generator sorts the table by path */
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(path, cca_web_table[mid].path);

        if (c == 0)
            return &cca_web_table[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t cca_web_count(void)
{
    return cca_web_table_len;
}

const struct cca_web_asset *cca_web_at(size_t i)
{
    return i < cca_web_table_len ? &cca_web_table[i] : NULL;
}

/* Skip optional whitespace (RFC 9110 5.6.3: OWS is spaces and tabs). */
static const char *ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/*
 * The q-value of one list element's parameters at @s (after the coding),
 * up to the next ',' or the end; 1 without one (RFC 9110 12.4.2). *@end gets
 * where the element ends.
 */
static double element_q(const char *s, const char **end)
{
    double q = 1.0;

    for (;;) {
        s = ows(s);
        if (*s != ';')
            break;
        s = ows(s + 1);
        if ((s[0] == 'q' || s[0] == 'Q') && s[1] == '=') {
            char *after;

            q = strtod(s + 2, &after);
            if (after == s + 2 || q < 0 || q > 1)
                q = 0; /* malformed: treat as refused */
            s = after;
        }
        while (*s != '\0' && *s != ';' && *s != ',')
            s++;
    }
    while (*s != '\0' && *s != ',')
        s++;
    *end = s;
    return q;
}

bool cca_web_accepts_gzip(const char *accept_encoding)
{
    const char *s = accept_encoding;
    double gzip_q = -1; /* not named */
    double any_q = -1;

    if (s == NULL)
        return false;
    while (*s != '\0') {
        const char *tok = ows(s);
        size_t n = strcspn(tok, " \t;,");
        const char *end;
        double q = element_q(tok + n, &end);

        if ((n == 4 && strncasecmp(tok, "gzip", 4) == 0) ||
            (n == 6 && strncasecmp(tok, "x-gzip", 6) == 0))
            gzip_q = q;
        else if (n == 1 && tok[0] == '*')
            any_q = q;
        s = *end == ',' ? end + 1 : end;
    }
    return gzip_q >= 0 ? gzip_q > 0 : any_q > 0;
}

bool cca_web_etag_matches(const char *if_none_match, const char *etag)
{
    const char *s = if_none_match;
    size_t etag_len = strlen(etag);

    if (s == NULL)
        return false;
    s = ows(s);
    if (s[0] == '*' && *ows(s + 1) == '\0')
        return true;
    while (*s != '\0') {
        const char *close;

        s = ows(s);
        if (s[0] == 'W' && s[1] == '/')
            s += 2; /* weak comparison: the opaque-tags alone */
        if (*s != '"')
            return false;
        close = strchr(s + 1, '"');
        if (close == NULL)
            return false;
        if ((size_t)(close + 1 - s) == etag_len && memcmp(s, etag, etag_len) == 0)
            return true;
        s = ows(close + 1);
        if (*s == ',')
            s++;
        else if (*s != '\0')
            return false;
    }
    return false;
}

cca_rc cca_web_gunzip(const struct cca_web_asset *a, char **ret)
{
    z_stream z = {0};
    char *out = NULL;
    cca_rc rc = CCA_ERR_INTERNAL;
    int zr;

    *ret = NULL;
    if (!a->gzip)
        return CCA_ERR_INVALID;
    if (a->len > UINT_MAX || a->size >= UINT_MAX)
        return CCA_ERR_INTERNAL;
    /* 16 + MAX_WBITS: a gzip wrapper, not zlib's (zlib.h, inflateInit2). */
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return CCA_ERR_INTERNAL;
    out = cca_xmalloc(a->size + 1);       /* + 1: avail_out > 0 proves the end was seen */
    z.next_in = (unsigned char *)a->data; /* zlib does not write its input */
    z.avail_in = (unsigned)a->len;
    z.next_out = (unsigned char *)out;
    z.avail_out = (unsigned)a->size + 1;
    zr = inflate(&z, Z_FINISH);
    if (zr != Z_STREAM_END || z.total_out != a->size)
        goto out;
    *ret = out;
    out = NULL;
    rc = CCA_OK;
out:
    (void)inflateEnd(&z);
    free(out);
    return rc;
}
