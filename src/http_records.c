/* SPDX-License-Identifier: MIT */
/*
 * The handlers of the support records (docs/RECORDS.md, openapi.yaml):
 * customer profiles, a customer's history as a file, the dialog and profile
 * exports, and the service's and an operator's statistics.
 *
 * Statistics fold the engine's per-dialog records (record.h) under its lock,
 * without reading a document. Exports and histories are streamed: the ids are
 * selected once from the index (48 bytes each), then each item is read (the
 * CSV export: its record; JSON: the stored document, outside the cache) and
 * written when MHD asks for more bytes, so an export holds one item at a time
 * whatever the number of dialogs, and a client that leaves frees it at once
 * (MHD calls export_free).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/customer.h"
#include "cca/export.h"
#include "cca/log.h"
#include "cca/mem.h"
#include "cca/operator.h"
#include "cca/record.h"

#include "http_int.h"

/* Bytes an export asks MHD to take per call (its block). */
#define EXPORT_BLOCK (64 * 1024)
/* A history: the customer's most recent dialogs, at most this many. */
#define HISTORY_LIMIT_DEFAULT 100
#define HISTORY_LIMIT_MAX     1000
/* GET /customers/{id}: their most recent dialogs listed. */
#define CUSTOMER_DIALOGS_DEFAULT 20
#define CUSTOMER_DIALOGS_MAX     100

/* ---- query parsing ------------------------------------------------------- */

/*
 * A "from" or "to" query value: RFC 3339 UTC (cca_time_parse) or a date
 * YYYY-MM-DD (midnight UTC; as "to", the end of that day, so the day counts).
 * NULL or absent leaves *ret 0 (open end). False with a 422 sent otherwise.
 */
static bool parse_when(struct cca_http_request *r, const char *name, bool end,
                       int64_t *ret)
{
    const char *s = cca_http_query(r, name);
    struct tm tm = {0};
    struct tm back;
    const char *p;
    time_t t;

    *ret = 0;
    if (s == NULL)
        return true;
    if (cca_time_parse(s, ret))
        return true;
    p = strptime(s, "%Y-%m-%d", &tm);
    if (p != NULL && *p == '\0' && strlen(s) == 10) {
        struct tm asked = tm; /* timegm normalises tm in place */

        t = timegm(&tm);
        /* strptime takes 2026-02-31; the calendar does not. */
        if (gmtime_r(&t, &back) != NULL && back.tm_mday == asked.tm_mday &&
            back.tm_mon == asked.tm_mon) {
            *ret = ((int64_t)t + (end ? 86400 : 0)) * 1000;
            return true;
        }
    }
    {
        char detail[160];

        (void)snprintf(detail, sizeof(detail),
                       "%s must be an RFC 3339 UTC time (2026-12-07T10:00:00Z) or a "
                       "date (2026-12-07)",
                       name);
        cca_http_respond_error(r, 422, "validation_error", detail);
    }
    return false;
}

/* from/to into @f; false with a 422 sent when malformed or from is not before to. */
static bool parse_window(struct cca_http_request *r, struct cca_record_filter *f)
{
    if (!parse_when(r, "from", false, &f->from_ms) ||
        !parse_when(r, "to", true, &f->to_ms))
        return false;
    if (f->from_ms > 0 && f->to_ms > 0 && f->from_ms >= f->to_ms) {
        cca_http_respond_error(r, 422, "validation_error", "from must be before to");
        return false;
    }
    return true;
}

/* ?format= among @allowed (default @def); false with a 422 sent. */
static bool parse_format(struct cca_http_request *r, unsigned allowed,
                         enum cca_export_format def, enum cca_export_format *ret)
{
    const char *s = cca_http_query(r, "format");
    char detail[96];
    size_t n = 0;

    *ret = def;
    if (s == NULL || cca_export_format_parse(s, allowed, ret))
        return true;
    n += (size_t)snprintf(detail, sizeof(detail), "format must be one of:");
    for (int f = 0; f < CCA_EXPORT__COUNT && n < sizeof(detail); f++) {
        if (allowed & CCA_EXPORT_BIT(f))
            n += (size_t)snprintf(detail + n, sizeof(detail) - n, " %s",
                                  cca_export_format_name((enum cca_export_format)f));
    }
    cca_http_respond_error(r, 422, "validation_error", detail);
    return false;
}

/* The customer_id of the URL; false with a 404 sent when it is none. */
static bool customer_path_id(struct cca_http_request *r)
{
    if (cca_customer_id_valid(r->segment_id, strlen(r->segment_id)))
        return true;
    cca_http_respond_error(
        r, 404, "not_found",
        "not a customer id: 1 to 50 characters, no control characters");
    return false;
}

/* ---- who may see a customer ---------------------------------------------- */

struct holder {
    const char *operator_id;
    bool found;
};

/* Is this open dialog the operator's now? */
static void held_by(void *ctx, const struct cca_record *rec)
{
    struct holder *h = ctx;

    if (rec->status != CCA_DIALOG_CLOSED && rec->owner_operator >= 0 &&
        (size_t)rec->owner_operator < rec->nops &&
        strcmp(rec->ops[rec->owner_operator].operator_id, h->operator_id) == 0)
        h->found = true;
}

/*
 * An operator sees a customer (profile, history) while one of the customer's
 * dialogs is assigned to them: what they need to answer, no more; keys see
 * every customer. False with a 403 sent.
 */
static bool may_see_customer(struct cca_http_request *r, const char *cid)
{
    struct holder h = {.operator_id = r->operator_id};
    struct cca_record_filter f;

    if (r->operator_id[0] == '\0')
        return true;
    cca_record_filter_init(&f);
    f.customer_id = cid;
    f.operator_id = r->operator_id;
    cca_engine_fold_records(r->http->engine, &f, held_by, &h);
    if (h.found)
        return true;
    cca_http_respond_error(r, 403, "forbidden",
                           "none of this customer's open dialogs is assigned to you");
    return false;
}

/* ---- the streamed exports ------------------------------------------------ */

enum export_kind { EXPORT_DIALOGS, EXPORT_PROFILES, EXPORT_HISTORY };

struct export_stream {
    struct cca_http *http; /* borrowed: the server outlives its connections */
    enum export_kind kind;
    enum cca_export_format fmt;
    char (*ids)[37]; /* dialogs, or customers (profiles), oldest first */
    size_t n;
    size_t next;
    json_t *operators; /* profiles: the operator records still to write (array) */
    size_t next_op;
    json_t *names;                   /* dialogs CSV: operator_id -> name */
    struct cca_record_filter filter; /* dialogs: rows are checked again when written */
    char filter_customer[256];
    char filter_operator[37];
    size_t index; /* items written */
    bool closed;
    bool failed;
    struct cca_export_buf buf;
};

static void export_free(void *cls)
{
    struct export_stream *s = cls;

    if (s == NULL)
        return;
    free(s->ids);
    json_decref(s->operators);
    json_decref(s->names);
    cca_export_buf_cleanup(&s->buf);
    free(s);
}

/*
 * The stored document @id of @coll, or NULL: deleted since the selection
 * (skipped) or unreadable (the export fails: a file it cannot read must not
 * vanish from it silently).
 */
static json_t *export_doc(struct export_stream *s, enum cca_store_coll coll,
                          const char *id)
{
    struct cca_error err = {0};
    json_t *doc = NULL;
    cca_rc rc = cca_engine_read(s->http->engine, coll, id, &doc, &err);

    if (rc == CCA_OK)
        return doc;
    if (rc != CCA_ERR_NOT_FOUND) {
        cca_log(LOG_ERR, "export: %s", err.msg);
        s->failed = true;
    }
    return NULL;
}

/* Write the next item (or the end) into the buffer. */
static void export_step(struct export_stream *s)
{
    const char *id;
    json_t *doc;

    if (s->kind == EXPORT_PROFILES && s->next_op < json_array_size(s->operators)) {
        cca_export_profile_row(&s->buf, s->fmt,
                               json_array_get(s->operators, s->next_op++), true,
                               s->index++);
        return;
    }
    if (s->next >= s->n) {
        if (s->kind == EXPORT_HISTORY)
            cca_export_history_close(&s->buf, s->fmt);
        else if (s->fmt != CCA_EXPORT_CSV)
            cca_export_json_close(&s->buf, s->fmt);
        s->closed = true;
        return;
    }
    id = s->ids[s->next++];
    if (s->kind == EXPORT_DIALOGS && s->fmt == CCA_EXPORT_CSV) {
        struct cca_record rec = {0};

        /* A dialog that changed since the selection is written only if it still
         * matches (status=active must not list a dialog closed meanwhile). */
        if (cca_engine_get_record(s->http->engine, id, &rec) == CCA_OK &&
            cca_record_matches(&rec, &s->filter))
            cca_export_dialog_csv_row(&s->buf, &rec, s->names);
        cca_record_cleanup(&rec);
        return;
    }
    doc = export_doc(
        s, s->kind == EXPORT_PROFILES ? CCA_STORE_CUSTOMERS : CCA_STORE_DIALOGS, id);
    if (doc == NULL)
        return;
    if (s->kind == EXPORT_PROFILES) {
        cca_export_profile_row(&s->buf, s->fmt, doc, false, s->index++);
    } else if (s->kind == EXPORT_HISTORY) {
        cca_export_history_dialog(&s->buf, s->fmt, doc, s->index++);
    } else {
        json_t *out = cca_export_dialog_doc(doc);

        cca_export_json_item(&s->buf, s->fmt, out, s->index++);
        json_decref(out);
    }
    json_decref(doc);
}

/* MHD worker: the next bytes of the export (chunked transfer encoding). */
static ssize_t export_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct export_stream *s = cls;
    size_t n;

    (void)pos;
    if (atomic_load(&s->http->quiesced))
        return MHD_CONTENT_READER_END_WITH_ERROR; /* shutting down: cut, not complete */
    while (s->buf.len < max && !s->closed && !s->failed)
        export_step(s);
    if (s->failed)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (s->buf.len == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    n = s->buf.len < max ? s->buf.len : max;
    memcpy(out, s->buf.data, n);
    cca_export_buf_consume(&s->buf, n);
    return (ssize_t)n;
}

/* A file name safe in a header: @stem with [A-Za-z0-9._-] kept, others '_'. */
static void safe_name(const char *stem, char *out, size_t size)
{
    size_t i = 0;

    for (; stem[i] != '\0' && i + 1 < size; i++) {
        unsigned char c = (unsigned char)stem[i];

        out[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '-'
                     ? (char)c
                     : '_';
    }
    out[i] = '\0';
}

/* Answer @r with the stream @s (stolen), as a download "<stem>-<time>.<ext>". */
static void export_respond(struct cca_http_request *r, struct export_stream *s,
                           const char *stem)
{
    struct MHD_Response *resp;
    char disposition[200];
    char name[80];
    char now[CCA_TIME_LEN];

    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, EXPORT_BLOCK, export_read,
                                             s, export_free);
    if (resp == NULL) {
        export_free(s);
        cca_http_respond_error(r, 500, "internal", "cannot create the export");
        return;
    }
    cca_time_format(cca_time_wall_ms(), now);
    safe_name(stem, name, sizeof(name));
    /* RFC 6266: attachment, an ASCII file name (quoted, nothing to escape in it). */
    (void)snprintf(disposition, sizeof(disposition),
                   "attachment; filename=\"%s-%.4s%.2s%.2s.%s\"", name, now, now + 5,
                   now + 8, cca_export_format_name(s->fmt));
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disposition);
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->stream != NULL)
        MHD_destroy_response(r->stream);
    r->stream = resp;
    r->status = 200;
    r->content_type = cca_export_content_type(s->fmt);
    r->ready = true;
}

static struct export_stream *export_new(struct cca_http_request *r, enum export_kind kind,
                                        enum cca_export_format fmt)
{
    struct export_stream *s = cca_xcalloc(1, sizeof(*s));

    s->http = r->http;
    s->kind = kind;
    s->fmt = fmt;
    cca_record_filter_init(&s->filter);
    return s;
}

/* operator_id -> name of every operator record (the CSV's operator names). */
static json_t *operator_names(struct cca_http_request *r)
{
    json_t *docs = cca_engine_list_operators(r->http->engine);
    json_t *names = json_object();
    json_t *doc;
    size_t i;

    json_array_foreach (docs, i, doc) {
        const char *id = json_string_value(json_object_get(doc, "operator_id"));
        const char *name = cca_operator_get_name(doc);

        if (id != NULL && name != NULL)
            (void)json_object_set_new(names, id, json_string(name));
    }
    json_decref(docs);
    return names;
}

/* ?bom=true|false (CSV only); false with a 422 sent. */
static bool parse_bom(struct cca_http_request *r, bool *ret)
{
    const char *s = cca_http_query(r, "bom");

    *ret = false;
    if (s == NULL || cca_http_parse_bool(s, ret))
        return true;
    cca_http_respond_error(r, 422, "validation_error", "bom must be true or false");
    return false;
}

void cca_http_handle_export_dialogs(struct cca_http_request *r)
{
    const char *op = cca_http_query(r, "operator_id");
    struct cca_record_filter f;
    enum cca_export_format fmt;
    struct export_stream *s;
    char op_id[37];
    bool bom;

    cca_record_filter_init(&f);
    f.customer_id = cca_http_query(r, "customer_id");
    if (!parse_format(r,
                      CCA_EXPORT_BIT(CCA_EXPORT_JSON) |
                          CCA_EXPORT_BIT(CCA_EXPORT_NDJSON) |
                          CCA_EXPORT_BIT(CCA_EXPORT_CSV),
                      CCA_EXPORT_CSV, &fmt) ||
        !parse_window(r, &f) || !parse_bom(r, &bom) ||
        !cca_http_query_status_agent(r, &f.status, &f.agent))
        return;
    if (op != NULL) {
        if (!cca_uuid_canonical(op, op_id)) {
            cca_http_respond_error(r, 422, "validation_error",
                                   "operator_id must be an operator id (a UUID)");
            return;
        }
        f.operator_id = op_id;
    }
    if (f.customer_id != NULL &&
        !cca_customer_id_valid(f.customer_id, strlen(f.customer_id))) {
        cca_http_respond_error(r, 422, "validation_error",
                               "customer_id must have 1 to 50 characters");
        return;
    }
    s = export_new(r, EXPORT_DIALOGS, fmt);
    s->ids = cca_engine_select(r->http->engine, CCA_STORE_DIALOGS, &f, &s->n);
    /* The filter's strings are the request's: the stream keeps its own copies. */
    s->filter = f;
    if (f.customer_id != NULL) {
        (void)snprintf(s->filter_customer, sizeof(s->filter_customer), "%s",
                       f.customer_id);
        s->filter.customer_id = s->filter_customer;
    }
    if (f.operator_id != NULL) {
        memcpy(s->filter_operator, op_id, sizeof(s->filter_operator));
        s->filter.operator_id = s->filter_operator;
    }
    if (fmt == CCA_EXPORT_CSV) {
        s->names = operator_names(r);
        if (bom)
            cca_export_csv_bom(&s->buf);
        cca_export_dialog_csv_header(&s->buf);
    } else {
        cca_export_json_open(&s->buf, fmt);
    }
    export_respond(r, s, "dialogs");
}

static int by_created(const void *a, const void *b)
{
    int64_t x = cca_operator_get_time(*(json_t *const *)a, "created_at");
    int64_t y = cca_operator_get_time(*(json_t *const *)b, "created_at");

    return x < y ? -1 : x > y;
}

void cca_http_handle_export_profiles(struct cca_http_request *r)
{
    const char *kind = cca_http_query(r, "kind");
    bool customers = true;
    bool operators = true;
    enum cca_export_format fmt;
    struct export_stream *s;
    bool bom;

    if (!parse_format(r,
                      CCA_EXPORT_BIT(CCA_EXPORT_JSON) |
                          CCA_EXPORT_BIT(CCA_EXPORT_NDJSON) |
                          CCA_EXPORT_BIT(CCA_EXPORT_CSV),
                      CCA_EXPORT_CSV, &fmt) ||
        !parse_bom(r, &bom))
        return;
    if (kind != NULL && strcmp(kind, "all") != 0) {
        customers = strcmp(kind, "customers") == 0;
        operators = strcmp(kind, "operators") == 0;
        if (!customers && !operators) {
            cca_http_respond_error(r, 422, "validation_error",
                                   "kind must be customers, operators or all");
            return;
        }
    }
    s = export_new(r, EXPORT_PROFILES, fmt);
    if (operators) {
        json_t *docs = cca_engine_list_operators(r->http->engine);
        size_t n = json_array_size(docs);
        json_t **v = cca_xcalloc(n + 1, sizeof(*v));

        for (size_t i = 0; i < n; i++)
            v[i] = json_array_get(docs, i);
        qsort(v, n, sizeof(*v), by_created);
        s->operators = json_array();
        for (size_t i = 0; i < n; i++)
            (void)json_array_append(s->operators, v[i]);
        free(v);
        json_decref(docs);
    }
    if (customers)
        s->ids = cca_engine_select(r->http->engine, CCA_STORE_CUSTOMERS, NULL, &s->n);
    if (fmt == CCA_EXPORT_CSV) {
        if (bom)
            cca_export_csv_bom(&s->buf);
        cca_export_profile_csv_header(&s->buf);
    } else {
        cca_export_json_open(&s->buf, fmt);
    }
    export_respond(r, s, "profiles");
}

/* ---- customers ----------------------------------------------------------- */

/*
 * The stored profile of @cid (new reference), or, when none is stored (dialogs
 * from before profiles existed), an empty one that was never written: its
 * times are null.
 */
static json_t *profile_of(struct cca_http_request *r, const char *cid, bool *ret_stored)
{
    char key[37];
    json_t *doc = NULL;

    cca_customer_key(cid, key);
    *ret_stored =
        cca_engine_read(r->http->engine, CCA_STORE_CUSTOMERS, key, &doc, NULL) == CCA_OK;
    if (*ret_stored)
        return doc;
    doc = cca_customer_merge(NULL, cid, &(struct cca_customer_fields){0}, true, 0);
    (void)json_object_set_new(doc, "created_at", json_null());
    (void)json_object_set_new(doc, "updated_at", json_null());
    return doc;
}

void cca_http_handle_customer_get(struct cca_http_request *r)
{
    const char *cid = r->segment_id;
    const char *limit = cca_http_query(r, "limit");
    unsigned long lim = CUSTOMER_DIALOGS_DEFAULT;
    struct cca_record_filter f;
    json_t *out;
    json_t *list;
    char(*ids)[37];
    size_t n = 0;
    bool stored;

    if (!customer_path_id(r))
        return;
    if (limit != NULL && !cca_http_parse_uint(limit, 1, CUSTOMER_DIALOGS_MAX, &lim)) {
        cca_http_respond_error(r, 422, "validation_error",
                               "limit must be an integer from 1 to 100");
        return;
    }
    if (!may_see_customer(r, cid))
        return;
    cca_record_filter_init(&f);
    f.customer_id = cid;
    ids = cca_engine_select(r->http->engine, CCA_STORE_DIALOGS, &f, &n);
    out = json_object();
    (void)json_object_set_new(out, "customer", profile_of(r, cid, &stored));
    if (!stored && n == 0) {
        json_decref(out);
        free(ids);
        cca_http_respond_error(r, 404, "not_found", "no customer with this id");
        return;
    }
    /* The newest first, as GET /dialogues lists them. */
    list = json_array();
    for (size_t i = n; i-- > 0 && json_array_size(list) < lim;) {
        json_t *doc = NULL;

        if (cca_engine_read(r->http->engine, CCA_STORE_DIALOGS, ids[i], &doc, NULL) !=
            CCA_OK)
            continue;
        (void)json_array_append_new(list, cca_dialog_summary_view(doc));
        json_decref(doc);
    }
    (void)json_object_set_new(out, "dialogs", list);
    (void)json_object_set_new(out, "dialog_count", json_integer((json_int_t)n));
    free(ids);
    cca_http_respond_json(r, 200, out);
}

/* The engine's result of a PUT: {"customer": profile, "created": bool}. */
static json_t *render_customer(const struct cca_engine_outcome *o)
{
    json_t *out = json_object();

    (void)json_object_set(out, "customer", o->customer_doc);
    (void)json_object_set_new(out, "created", json_boolean(o->created));
    return out;
}

static json_t *finish_customer(struct cca_http_request *r, json_t *result,
                               unsigned *status, void *cls)
{
    (void)r;
    (void)cls;
    if (json_is_true(json_object_get(result, "created")))
        *status = 201;
    return json_incref(json_object_get(result, "customer"));
}

void cca_http_handle_customer_put(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_CUSTOMER_PUT,
                                     .render = render_customer};
    struct cca_customer_fields f = {0};
    struct cca_error err = {0};
    cca_rc rc;

    if (!customer_path_id(r) || !may_see_customer(r, r->segment_id))
        return;
    rc = cca_customer_parse_put(r->body, r->body_len, &f, &err);
    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    req.customer = cca_xmalloc(sizeof(*req.customer));
    *req.customer = f;
    req.text = cca_xstrdup(r->segment_id);
    cca_customer_key(r->segment_id, req.target);
    cca_http_actor(r, &req);
    cca_http_submit_finish(r, &req, finish_customer, NULL, NULL, NULL);
}

void cca_http_handle_customer_history(struct cca_http_request *r)
{
    const char *cid = r->segment_id;
    const char *limit = cca_http_query(r, "limit");
    unsigned long lim = HISTORY_LIMIT_DEFAULT;
    struct cca_record_filter f;
    enum cca_export_format fmt;
    struct export_stream *s;
    json_t *profile;
    char stem[80];
    bool stored;

    if (!customer_path_id(r) ||
        !parse_format(r,
                      CCA_EXPORT_BIT(CCA_EXPORT_TXT) | CCA_EXPORT_BIT(CCA_EXPORT_JSON) |
                          CCA_EXPORT_BIT(CCA_EXPORT_CSV),
                      CCA_EXPORT_TXT, &fmt))
        return;
    if (limit != NULL && !cca_http_parse_uint(limit, 1, HISTORY_LIMIT_MAX, &lim)) {
        cca_http_respond_error(r, 422, "validation_error",
                               "limit must be an integer from 1 to 1000");
        return;
    }
    if (!may_see_customer(r, cid))
        return;
    s = export_new(r, EXPORT_HISTORY, fmt);
    cca_record_filter_init(&f);
    f.customer_id = cid;
    s->ids = cca_engine_select(r->http->engine, CCA_STORE_DIALOGS, &f, &s->n);
    profile = profile_of(r, cid, &stored);
    if (!stored && s->n == 0) {
        json_decref(profile);
        export_free(s);
        cca_http_respond_error(r, 404, "not_found", "no customer with this id");
        return;
    }
    /* The most recent @lim dialogs, oldest first. */
    if (s->n > lim)
        s->next = s->n - lim;
    cca_export_history_open(&s->buf, fmt, cid,
                            json_string_value(json_object_get(profile, "full_name")));
    json_decref(profile);
    (void)snprintf(stem, sizeof(stem), "history-%s", cid);
    export_respond(r, s, stem);
}

/* ---- statistics ---------------------------------------------------------- */

static void fold_one(void *ctx, const struct cca_record *rec)
{
    cca_stats_add(ctx, rec);
}

/* {"from", "to"} of the window (null for an open end) and "generated_at", into @out. */
static void window_json(json_t *out, const struct cca_record_filter *f)
{
    char t[CCA_TIME_LEN];

    cca_time_format(cca_time_wall_ms(), t);
    (void)json_object_set_new(out, "generated_at", json_string(t));
    cca_time_format(f->from_ms, t);
    (void)json_object_set_new(out, "from", f->from_ms > 0 ? json_string(t) : json_null());
    cca_time_format(f->to_ms, t);
    (void)json_object_set_new(out, "to", f->to_ms > 0 ? json_string(t) : json_null());
}

void cca_http_handle_stats(struct cca_http_request *r)
{
    struct cca_record_filter f;
    struct cca_stats *st;
    json_t *out = json_object();
    json_t *figures;

    cca_record_filter_init(&f);
    if (!parse_window(r, &f)) {
        json_decref(out);
        return;
    }
    st = cca_stats_new(NULL);
    cca_engine_fold_records(r->http->engine, &f, fold_one, st);
    window_json(out, &f);
    figures = cca_stats_service_json(st);
    (void)json_object_update(out, figures);
    json_decref(figures);
    cca_stats_free(st);
    cca_http_respond_json(r, 200, out);
}

/* GET /operators/{id}/stats and /operators/me/stats for operator @id. */
static void operator_stats(struct cca_http_request *r, const char *id)
{
    static const char *const names[CCA_OPERATOR_STATUS__COUNT] = {"available", "busy",
                                                                  "offline"};
    struct cca_record_filter f;
    struct cca_stats *st;
    int64_t ms[CCA_OPERATOR_STATUS__COUNT];
    json_t *doc = NULL;
    json_t *out;
    json_t *times;
    json_t *figures;

    cca_record_filter_init(&f);
    if (!parse_window(r, &f))
        return;
    if (cca_engine_get_operator(r->http->engine, id, &doc, NULL) != CCA_OK) {
        cca_http_respond_error(r, 404, "not_found", "no operator with this id");
        return;
    }
    f.operator_id = id;
    st = cca_stats_new(id);
    cca_engine_fold_records(r->http->engine, &f, fold_one, st);
    out = json_object();
    (void)json_object_set_new(out, "operator_id", json_string(id));
    (void)json_object_set_new(out, "name", json_string(cca_operator_get_name(doc)));
    (void)json_object_set_new(
        out, "status",
        json_string(cca_operator_status_name(cca_operator_get_status(doc))));
    window_json(out, &f);
    figures = cca_stats_operator_json(st);
    (void)json_object_update(out, figures);
    json_decref(figures);
    /* Time per status: over the record's whole life, not the window. */
    cca_operator_time_in_status(doc, cca_time_wall_ms(), ms);
    times = json_object();
    for (int i = 0; i < CCA_OPERATOR_STATUS__COUNT; i++)
        (void)json_object_set_new(times, names[i], json_real((double)ms[i] / 1000.0));
    (void)json_object_set_new(out, "time_in_status_s", times);
    cca_stats_free(st);
    json_decref(doc);
    cca_http_respond_json(r, 200, out);
}

void cca_http_handle_operator_stats(struct cca_http_request *r)
{
    char id[37];

    if (!cca_uuid_canonical(r->segment_id, id)) {
        cca_http_respond_error(r, 404, "not_found",
                               "not an operator id: operator ids are UUIDs (RFC 9562)");
        return;
    }
    /* An operator sees their own figures; a key other than an admin's none. */
    if (r->operator_id[0] != '\0' ? strcmp(r->operator_id, id) != 0 : !r->admin) {
        cca_http_respond_error(r, 403, "forbidden",
                               r->operator_id[0] != '\0'
                                   ? "an operator sees only their own statistics"
                                   : "operator statistics need an admin key");
        return;
    }
    operator_stats(r, id);
}

void cca_http_handle_me_stats(struct cca_http_request *r)
{
    operator_stats(r, r->operator_id);
}
