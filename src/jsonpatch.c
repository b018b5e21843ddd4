/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/jsonpatch.h"
#include "cca/mem.h"

/* Longest JSON Pointer the diff builds or the apply accepts, in bytes. */
#define PATH_MAX_BYTES 1024

/* The patch being built; @failed: a change cannot be expressed (see the header). */
struct diff {
    json_t *patch;
    bool failed;
};

static void add_op(struct diff *d, const char *op, const char *path, json_t *value)
{
    json_t *o;

    if (path[0] == '\0') {
        /* The whole document: no pointer names it for "replace" here. */
        d->failed = true;
        return;
    }
    o = json_object();
    (void)json_object_set_new(o, "op", json_string(op));
    (void)json_object_set_new(o, "path", json_string(path));
    if (value != NULL)
        (void)json_object_set(o, "value", value);
    (void)json_array_append_new(d->patch, o);
}

/* @path + "/" + @key escaped (RFC 6901 section 3: "~" -> "~0", "/" -> "~1"). */
static bool child_path(char *out, size_t size, const char *path, const char *key)
{
    size_t n = strlen(path);

    if (n + 1 >= size)
        return false;
    memcpy(out, path, n);
    out[n++] = '/';
    for (; *key; key++) {
        const char *esc = *key == '~' ? "~0" : *key == '/' ? "~1" : NULL;
        size_t k = esc ? 2 : 1;

        if (n + k >= size)
            return false;
        memcpy(out + n, esc ? esc : key, k);
        n += k;
    }
    out[n] = '\0';
    return true;
}

/* @from's elements are the first elements of @to, as the same values. */
static bool is_prefix(json_t *from, json_t *to)
{
    size_t n = json_array_size(from);

    if (json_array_size(to) < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (json_array_get(from, i) != json_array_get(to, i))
            return false;
    }
    return true;
}

static void diff_value(struct diff *d, const char *path, json_t *from, json_t *to);

static void diff_object(struct diff *d, const char *path, json_t *from, json_t *to)
{
    char sub[PATH_MAX_BYTES];
    const char *key;
    json_t *value;

    json_object_foreach (to, key, value) {
        json_t *old = json_object_get(from, key);

        if (old == value)
            continue;
        if (!child_path(sub, sizeof(sub), path, key))
            d->failed = true;
        else if (old == NULL)
            add_op(d, "add", sub, value);
        else
            diff_value(d, sub, old, value);
    }
    json_object_foreach (from, key, value) {
        if (json_object_get(to, key) != NULL)
            continue;
        if (!child_path(sub, sizeof(sub), path, key))
            d->failed = true;
        else
            add_op(d, "remove", sub, NULL);
    }
}

static void diff_value(struct diff *d, const char *path, json_t *from, json_t *to)
{
    if (from == to)
        return;
    if (json_is_object(from) && json_is_object(to)) {
        diff_object(d, path, from, to);
    } else if (json_is_array(from) && json_is_array(to) && is_prefix(from, to)) {
        char sub[PATH_MAX_BYTES];

        if (!child_path(sub, sizeof(sub), path, "-")) {
            d->failed = true;
            return;
        }
        /* "-" is the position after the last element (RFC 6902 section 4.1). */
        for (size_t i = json_array_size(from); i < json_array_size(to); i++)
            add_op(d, "add", sub, json_array_get(to, i));
    } else if (json_is_array(to) || json_is_object(to) || !json_equal(from, to)) {
        add_op(d, "replace", path, to);
    }
}

json_t *cca_jsonpatch_diff(json_t *from, json_t *to)
{
    struct diff d = {.patch = json_array()};

    diff_value(&d, "", from, to);
    if (d.failed) {
        json_decref(d.patch);
        return NULL;
    }
    return d.patch;
}

/* An array index token (RFC 6901 section 4: no leading zeros); false if not one. */
static bool parse_index(const char *token, size_t *ret)
{
    char *end;
    unsigned long long v;

    if (token[0] < '0' || token[0] > '9' || (token[0] == '0' && token[1] != '\0'))
        return false;
    errno = 0;
    v = strtoull(token, &end, 10);
    if (*end != '\0' || errno != 0 || v > (unsigned long long)SIZE_MAX)
        return false;
    *ret = (size_t)v;
    return true;
}

/*
 * Split @path into the parent container and the last reference token
 * (unescaped into @token). Returns the parent, or NULL with @why set.
 */
static json_t *resolve_parent(json_t *doc, const char *path, char *token, size_t size,
                              const char **why)
{
    json_t *cur = doc;
    const char *p = path;

    if (p[0] != '/') {
        *why = "path must start with '/' (the whole document cannot be replaced)";
        return NULL;
    }
    for (;;) {
        size_t n = 0;

        p++; /* skip '/' */
        while (*p != '\0' && *p != '/') {
            char c = *p++;

            if (c == '~') {
                if (*p != '0' && *p != '1') {
                    *why = "bad '~' escape in path";
                    return NULL;
                }
                c = *p++ == '0' ? '~' : '/';
            }
            if (n + 1 >= size) {
                *why = "path token too long";
                return NULL;
            }
            token[n++] = c;
        }
        token[n] = '\0';
        if (*p == '\0')
            return cur;
        /* An intermediate token: descend. */
        if (json_is_object(cur)) {
            cur = json_object_get(cur, token);
        } else if (json_is_array(cur)) {
            size_t i;

            cur = parse_index(token, &i) ? json_array_get(cur, i) : NULL;
        } else {
            cur = NULL;
        }
        if (cur == NULL) {
            *why = "path does not exist";
            return NULL;
        }
    }
}

static const char *apply_one(json_t *doc, json_t *operation)
{
    const char *op = json_string_value(json_object_get(operation, "op"));
    const char *path = json_string_value(json_object_get(operation, "path"));
    json_t *value = json_object_get(operation, "value");
    char token[PATH_MAX_BYTES];
    const char *why = NULL;
    json_t *parent;
    bool add;
    bool rep;
    bool rem;
    size_t idx;

    if (op == NULL || path == NULL)
        return "operation needs string 'op' and 'path'";
    add = strcmp(op, "add") == 0;
    rep = strcmp(op, "replace") == 0;
    rem = strcmp(op, "remove") == 0;
    if (!add && !rep && !rem)
        return "unsupported op (only add, remove, replace)";
    if (!rem && value == NULL)
        return "operation needs a 'value'";
    parent = resolve_parent(doc, path, token, sizeof(token), &why);
    if (parent == NULL)
        return why;
    if (json_is_object(parent)) {
        bool exists = json_object_get(parent, token) != NULL;

        if (!add && !exists)
            return "member does not exist";
        if (rem)
            return json_object_del(parent, token) == 0 ? NULL : "cannot remove";
        return json_object_set(parent, token, value) == 0 ? NULL : "cannot set";
    }
    if (!json_is_array(parent))
        return "parent is not a container";
    if (add && strcmp(token, "-") == 0)
        return json_array_append(parent, value) == 0 ? NULL : "cannot append";
    if (!parse_index(token, &idx))
        return "bad array index";
    if (add)
        return idx <= json_array_size(parent) &&
                       json_array_insert(parent, idx, value) == 0
                   ? NULL
                   : "array index out of bounds";
    if (idx >= json_array_size(parent))
        return "array index out of bounds";
    if (rem)
        return json_array_remove(parent, idx) == 0 ? NULL : "cannot remove";
    return json_array_set(parent, idx, value) == 0 ? NULL : "cannot set";
}

cca_rc cca_jsonpatch_apply(json_t *doc, json_t *patch, struct cca_error *reterr)
{
    json_t *operation;
    size_t i;

    if (!json_is_array(patch))
        return cca_error_set(reterr, CCA_ERR_INVALID, "a JSON Patch must be an array");
    json_array_foreach (patch, i, operation) {
        const char *why = json_is_object(operation) ? apply_one(doc, operation)
                                                    : "operation is not an object";

        if (why != NULL)
            return cca_error_set(reterr, CCA_ERR_INVALID, "patch operation %zu: %s", i,
                                 why);
    }
    return CCA_OK;
}
