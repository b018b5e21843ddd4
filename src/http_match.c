/* SPDX-License-Identifier: MIT */
/*
 * The URL matcher: method and path to a row of a route table handed to it
 * (struct cca_http_table). It owns no table: http_routes.c holds the
 * service's rows and handlers, http_server.c matches every request over the
 * table cca_http_new gave it, so the matcher depends on neither.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "http_int.h"

/*
 * The shape of each row, computed once (cca_http_table_init): the literal
 * prefix before "{id}" (the whole pattern when it has none) and the pattern's
 * length, so that most rows are refused by one length check or one memcmp.
 * Patterns hold at most one "{id}", the only use of '{' in the table.
 */
bool cca_http_table_init(struct cca_http_table *t, const struct cca_http_route *rows,
                         size_t n)
{
    if (n > CCA_HTTP_MAX_ROUTES)
        return false;
    t->rows = rows;
    t->n = n;
    for (size_t i = 0; i < n; i++) {
        struct cca_http_route_shape *sh = &t->shapes[i];
        const char *brace = strchr(rows[i].pattern, '{');

        sh->len = strlen(rows[i].pattern);
        sh->has_id = brace != NULL;
        sh->prefix = brace != NULL ? (size_t)(brace - rows[i].pattern) : sh->len;
    }
    return true;
}

size_t cca_http_table_index(const struct cca_http_table *t,
                            const struct cca_http_route *route)
{
    return (size_t)(route - t->rows);
}

/*
 * Does @path (@path_len bytes) match row @i? "{id}" takes one non-empty
 * segment into @seg (may be NULL), cut to @seg_size - 1 bytes.
 */
static bool row_matches(const struct cca_http_table *t, size_t i, const char *path,
                        size_t path_len, char *seg, size_t seg_size)
{
    const struct cca_http_route_shape *sh = &t->shapes[i];
    const char *rest;
    const char *slash;
    size_t n;

    if (!sh->has_id)
        return path_len == sh->len && memcmp(t->rows[i].pattern, path, path_len) == 0;
    if (path_len <= sh->prefix || memcmp(t->rows[i].pattern, path, sh->prefix) != 0)
        return false;
    rest = path + sh->prefix;
    /* The segment, then the pattern after "{id}" and the path must be equal. */
    slash = memchr(rest, '/', path_len - sh->prefix);
    n = slash != NULL ? (size_t)(slash - rest) : path_len - sh->prefix;
    if (n == 0 || strcmp(t->rows[i].pattern + sh->prefix + 4, rest + n) != 0)
        return false;
    if (seg != NULL && seg_size > 0) {
        size_t k = n < seg_size ? n : seg_size - 1;

        memcpy(seg, rest, k);
        seg[k] = '\0';
    }
    return true;
}

/* Append ", " (unless first) and @method to @allow like snprintf: cut, never unended. */
static size_t allow_append(char *allow, size_t allow_size, size_t used,
                           const char *method)
{
    const char *parts[2] = {used ? ", " : "", method};

    for (size_t p = 0; p < 2; p++) {
        for (const char *c = parts[p]; *c != '\0'; c++, used++) {
            if (used + 1 < allow_size) {
                allow[used] = *c;
                allow[used + 1] = '\0';
            }
        }
    }
    return used;
}

/* Does @allow ("GET, DELETE") list @method? */
static bool allow_has(const char *allow, const char *method)
{
    size_t n = strlen(method);

    for (const char *a = allow; *a != '\0';) {
        size_t k = strcspn(a, ",");

        if (k == n && memcmp(a, method, n) == 0)
            return true;
        a += k;
        while (*a == ',' || *a == ' ')
            a++;
    }
    return false;
}

const struct cca_http_route *cca_http_table_match(const struct cca_http_table *t,
                                                  const char *method, const char *path,
                                                  bool *ret_path_known, char *allow,
                                                  size_t allow_size, char *ret_segment,
                                                  size_t segment_size)
{
    const struct cca_http_route *found = NULL;
    bool literal = false;
    bool matches[CCA_HTTP_MAX_ROUTES];
    size_t used = 0;
    size_t path_len = strlen(path);

    /* A path that a literal pattern matches ("create", "cleanup") is never an {id}. */
    for (size_t i = 0; i < t->n; i++) {
        matches[i] = row_matches(t, i, path, path_len, NULL, 0);
        literal |= matches[i] && !t->shapes[i].has_id;
    }
    *ret_path_known = false;
    if (allow_size > 0)
        allow[0] = '\0';
    for (size_t i = 0; i < t->n; i++) {
        if (!matches[i] || (literal && t->shapes[i].has_id))
            continue;
        *ret_path_known = true;
        if (!allow_has(allow, t->rows[i].method))
            used = allow_append(allow, allow_size, used, t->rows[i].method);
        if (found == NULL && strcmp(t->rows[i].method, method) == 0) {
            found = &t->rows[i];
            (void)row_matches(t, i, path, path_len, ret_segment, segment_size);
        }
    }
    return found;
}
