/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the export writers (export.c).
 * Input, read two ways:
 *  - as CSV fields: the bytes split at every NUL and US (0x1F) byte, at most
 *    MAX_FIELDS fields. They are written as one row (without and with the
 *    byte order mark) and as the text fields of a dialog CSV row whose
 *    durations and times come from the input's first bytes; libcsv reads
 *    every row back in strict mode.
 *  - as JSON: when the bytes are a JSON object, it is written as a dialog in
 *    every history format, as an exported dialog document, and as a customer
 *    and an operator profile in every profile format.
 * Invariants checked: export.h's contracts. Every field reads back byte for
 * byte, or with one leading quote exactly when the CSV injection rule applies;
 * one CRLF row a call; durations read back as the very milliseconds; history
 * TXT is valid UTF-8 with no control character but LF; JSON and NDJSON output
 * parses back to the exported documents; CSV output parses with the promised
 * number of columns; an operator's JSON never carries token_sha256; the input
 * document is never changed.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <csv.h>

#include "cca/export.h"
#include "cca/record.h"
#include "cca/text.h"
#include "fuzz.h"

#define MAX_FIELDS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    return 0;
}

/* ---- reading CSV back -------------------------------------------------------- */

struct field {
    char *s;
    size_t len;
};

struct readback {
    struct field *f; /* the fields of every row, in order */
    size_t nf;
    size_t cap;
    size_t rows;
    size_t row_fields[8]; /* fields of the first 8 rows */
    size_t cur;           /* fields of the current row */
};

static void on_field(void *s, size_t len, void *ctx)
{
    struct readback *r = ctx;

    if (r->nf == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->f = cca_xrealloc(r->f, r->cap * sizeof(*r->f));
    }
    r->f[r->nf].s = cca_xmalloc(len + 1);
    if (len > 0)
        memcpy(r->f[r->nf].s, s, len);
    r->f[r->nf].s[len] = '\0';
    r->f[r->nf].len = len;
    r->nf++;
    r->cur++;
}

static void on_row(int c, void *ctx)
{
    struct readback *r = ctx;

    (void)c;
    if (r->rows < CCA_ARRAY_SIZE(r->row_fields))
        r->row_fields[r->rows] = r->cur;
    r->rows++;
    r->cur = 0;
}

static void readback_free(struct readback *r)
{
    for (size_t i = 0; i < r->nf; i++)
        free(r->f[i].s);
    free(r->f);
    memset(r, 0, sizeof(*r));
}

/* libcsv in strict mode must read all of @s[0..len). */
static void read_csv(const char *s, size_t len, struct readback *r)
{
    struct csv_parser p;

    memset(r, 0, sizeof(*r));
    FUZZ_CHECK(csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) == 0);
    FUZZ_CHECK(csv_parse(&p, s, len, on_field, on_row, r) == len);
    FUZZ_CHECK(csv_fini(&p, on_field, on_row, r) == 0);
    csv_free(&p);
    FUZZ_CHECK(r->cur == 0); /* every row ended */
}

/*
 * @got is what a reader gets for the written field @want: @want itself, or
 * @want after one quote exactly when export.h's injection rule applies.
 */
static void check_field(const struct field *got, const char *want)
{
    size_t n = strlen(want);
    bool guarded =
        got->len == n + 1 && got->s[0] == '\'' && memcmp(got->s + 1, want, n) == 0;
    bool formula = n > 0 && strchr("=@\t\r", want[0]) != NULL;
    bool sign = n > 0 && (want[0] == '+' || want[0] == '-');
    bool plain_number = true;

    for (size_t i = 1; sign && i < n; i++) {
        if (strchr("0123456789 .,()/-", want[i]) == NULL)
            plain_number = false;
    }
    if (!guarded)
        FUZZ_CHECK(got->len == n && memcmp(got->s, want, n) == 0);
    FUZZ_CHECK(guarded == (formula || (sign && !plain_number)));
}

/* ---- CSV rows ---------------------------------------------------------------- */

static void check_row(const char *const *fields, size_t n, bool bom)
{
    struct cca_export_buf b = {0};
    struct readback r;
    size_t skip = bom ? 3 : 0;

    if (bom)
        cca_export_csv_bom(&b);
    for (size_t i = 0; i < n; i++)
        cca_export_csv_field(&b, fields[i], i == 0);
    cca_export_csv_end(&b);
    FUZZ_CHECK(b.len >= skip + 2);
    FUZZ_CHECK(!bom || memcmp(b.data, "\xEF\xBB\xBF", 3) == 0);
    FUZZ_CHECK(memcmp(b.data + b.len - 2, "\r\n", 2) == 0);
    read_csv(b.data + skip, b.len - skip, &r);
    if (n == 1 && fields[0][0] == '\0') {
        /* A row of one empty field is an empty line, which readers skip. */
        FUZZ_CHECK(r.rows == 0 || (r.rows == 1 && r.nf == 1 && r.f[0].len == 0));
    } else {
        FUZZ_CHECK(r.rows == 1);
        FUZZ_CHECK(r.nf == n);
        for (size_t i = 0; i < n; i++)
            check_field(&r.f[i], fields[i]);
    }
    readback_free(&r);
    cca_export_buf_cleanup(&b);
}

/* A duration field: empty for -1, else [-]seconds.mmm giving back exactly @ms. */
static void check_seconds(const struct field *f, int64_t ms)
{
    const char *p = f->s;
    uint64_t secs = 0;
    uint64_t frac = 0;
    uint64_t u;
    bool neg = false;

    if (ms == -1) {
        FUZZ_CHECK(f->len == 0);
        return;
    }
    if (*p == '-') {
        neg = true;
        p++;
    }
    FUZZ_CHECK(*p >= '0' && *p <= '9');
    for (; *p >= '0' && *p <= '9'; p++)
        secs = secs * 10 + (uint64_t)(*p - '0');
    FUZZ_CHECK(*p++ == '.');
    for (int i = 0; i < 3; i++, p++) {
        FUZZ_CHECK(*p >= '0' && *p <= '9');
        frac = frac * 10 + (uint64_t)(*p - '0');
    }
    FUZZ_CHECK(*p == '\0');
    FUZZ_CHECK(neg == (ms < 0));
    u = ms < 0 ? -(uint64_t)ms : (uint64_t)ms;
    FUZZ_CHECK(secs == u / 1000 && frac == u % 1000);
}

static int64_t take_i64(const uint8_t *data, size_t size, size_t at)
{
    int64_t v = -1;

    if (size >= at + 8)
        memcpy(&v, data + at, 8);
    return v;
}

static void check_dialog_row(const char *const *fields, size_t n, const uint8_t *data,
                             size_t size)
{
    static const char op_id[] = "0b6f2c7e-4f7a-4c1e-9f3d-2a5b8c9d0e1f";
    struct cca_record_op op = {.first_reply_ms = -1};
    struct cca_record r = {0};
    struct cca_export_buf b = {0};
    struct readback rb;
    json_t *names = json_object();
    const char *text[5];
    bool named = false;

    for (size_t i = 0; i < 5; i++)
        text[i] = i < n ? fields[i] : NULL;
    memcpy(op.operator_id, op_id, sizeof(op_id));
    /* json_object_set_new refuses a NULL value (a name that is not UTF-8). */
    if (text[4] != NULL)
        named = json_object_set_new(names, op_id,
                                    json_stringn(text[4], strlen(text[4]))) == 0;
    memcpy(r.dialog_id, op_id, sizeof(op_id));
    r.customer_id = (char *)text[0];
    r.customer_name = (char *)text[1];
    r.channel = (char *)text[2];
    r.close_reason = (char *)text[3];
    /* Times within years 1970..9999 (cca_time_format's range); durations any. */
    r.created_ms = (int64_t)((uint64_t)take_i64(data, size, 0) % 253402300800000ULL);
    r.closed_ms = (int64_t)((uint64_t)take_i64(data, size, 8) % 253402300800000ULL);
    r.first_response_ms = take_i64(data, size, 0);
    r.queue_wait_ms = take_i64(data, size, 8);
    r.first_human_ms = take_i64(data, size, 16);
    r.handle_ms = take_i64(data, size, 24);
    r.status = (enum cca_dialog_status)(size % CCA_DIALOG_STATUS__COUNT);
    r.trigger = (enum cca_record_trigger)(size % CCA_TRIGGER__COUNT);
    r.agents = (uint32_t)size;
    r.csat = (int)(size % 6);
    r.ops = &op;
    r.nops = 1;

    cca_export_dialog_csv_row(&b, &r, names);
    read_csv(b.data, b.len, &rb);
    FUZZ_CHECK(rb.rows == 1 && rb.nf == 19);
    for (size_t i = 0; i < 3; i++) /* customer_id, customer_name, channel */
        check_field(&rb.f[1 + i], text[i] != NULL ? text[i] : "");
    check_field(&rb.f[18], text[3] != NULL ? text[3] : ""); /* close_reason */
    check_field(&rb.f[5], named ? text[4] : op_id);         /* operators */
    FUZZ_CHECK(strcmp(rb.f[6].s, op_id) == 0);
    FUZZ_CHECK((rb.f[9].len == 0) == (r.closed_ms == 0));
    check_seconds(&rb.f[12], r.first_response_ms);
    check_seconds(&rb.f[13], r.queue_wait_ms);
    check_seconds(&rb.f[14], r.first_human_ms);
    check_seconds(&rb.f[15], r.handle_ms);
    FUZZ_CHECK((rb.f[16].len == 0) == (r.trigger == CCA_TRIGGER_NONE));
    FUZZ_CHECK((rb.f[17].len == 0) == (r.csat == 0));
    readback_free(&rb);
    cca_export_buf_cleanup(&b);
    json_decref(names);
}

static void check_fields(const uint8_t *data, size_t size)
{
    char *copy = cca_xmalloc(size + 1);
    const char *fields[MAX_FIELDS];
    size_t n = 0;
    size_t start = 0;

    memcpy(copy, data, size);
    copy[size] = '\0';
    for (size_t i = 0; i <= size && n < MAX_FIELDS; i++) {
        if (i == size || copy[i] == '\0' || copy[i] == 0x1F) {
            copy[i] = '\0';
            fields[n++] = copy + start;
            start = i + 1;
        }
    }
    check_row(fields, n, false);
    check_row(fields, n, true);
    check_dialog_row(fields, n, data, size);
    free(copy);
}

/* ---- documents --------------------------------------------------------------- */

/* Valid UTF-8, and no control byte but LF (C1 controls included). */
static void check_text(const struct cca_export_buf *b)
{
    FUZZ_CHECK(cca_text_is_utf8(b->data, b->len));
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];

        FUZZ_CHECK(c >= 0x20 || c == '\n');
        FUZZ_CHECK(c != 0x7F);
        if (c == 0xC2 && i + 1 < b->len)
            FUZZ_CHECK((unsigned char)b->data[i + 1] < 0x80 ||
                       (unsigned char)b->data[i + 1] > 0x9F);
    }
}

/* CSV that libcsv reads, every row of @cols fields. */
static void check_csv_columns(const struct cca_export_buf *b, size_t cols)
{
    struct readback r;

    read_csv(b->data, b->len, &r);
    FUZZ_CHECK(r.nf == r.rows * cols);
    for (size_t i = 0; i < r.rows && i < CCA_ARRAY_SIZE(r.row_fields); i++)
        FUZZ_CHECK(r.row_fields[i] == cols);
    readback_free(&r);
}

/* @b holds a JSON array (@ndjson false) or NDJSON lines of @n items equal to @want. */
static void check_json_out(const struct cca_export_buf *b, bool ndjson, size_t n,
                           json_t *want)
{
    json_error_t jerr;
    json_t *got;

    if (!ndjson) {
        got = json_loadb(b->data, b->len, 0, &jerr);
        FUZZ_CHECK(json_is_array(got) && json_array_size(got) == n);
        for (size_t i = 0; i < n && want != NULL; i++)
            FUZZ_CHECK(json_equal(json_array_get(got, i), want));
        json_decref(got);
        return;
    }
    for (size_t i = 0, at = 0; i < n; i++) {
        const char *nl = memchr(b->data + at, '\n', b->len - at);

        FUZZ_CHECK(nl != NULL);
        got = json_loadb(b->data + at, (size_t)(nl - b->data) - at, 0, &jerr);
        FUZZ_CHECK(got != NULL);
        FUZZ_CHECK(want == NULL || json_equal(got, want));
        json_decref(got);
        at = (size_t)(nl - b->data) + 1;
        if (i + 1 == n)
            FUZZ_CHECK(at == b->len);
    }
}

static void check_history(json_t *doc)
{
    static const enum cca_export_format fmts[] = {CCA_EXPORT_TXT, CCA_EXPORT_CSV,
                                                  CCA_EXPORT_JSON, CCA_EXPORT_NDJSON};
    const char *cid = json_string_value(json_object_get(doc, "customer_id"));
    const char *name =
        json_string_value(json_object_get(json_object_get(doc, "customer_info"), "name"));
    json_t *exported = cca_export_dialog_doc(doc);
    json_t *want;
    json_error_t jerr;
    char *dumped;

    FUZZ_CHECK(json_object_get(json_object_get(exported, "metadata"), "idempotency") ==
               NULL);
    /* Reals are written with 10 digits (cca_dialog_dump_change): compare like that. */
    dumped = json_dumps(exported, JSON_COMPACT | JSON_REAL_PRECISION(10));
    FUZZ_CHECK(dumped != NULL);
    want = json_loads(dumped, 0, &jerr);
    FUZZ_CHECK(want != NULL);
    free(dumped);
    for (size_t f = 0; f < CCA_ARRAY_SIZE(fmts); f++) {
        struct cca_export_buf b = {0};

        cca_export_history_open(&b, fmts[f], cid, name);
        cca_export_history_dialog(&b, fmts[f], doc, 0);
        cca_export_history_dialog(&b, fmts[f], doc, 1);
        cca_export_history_close(&b, fmts[f]);
        if (fmts[f] == CCA_EXPORT_TXT)
            check_text(&b);
        else if (fmts[f] == CCA_EXPORT_CSV)
            check_csv_columns(&b, 7);
        else
            check_json_out(&b, fmts[f] == CCA_EXPORT_NDJSON, 2, want);
        cca_export_buf_cleanup(&b);
    }
    json_decref(want);
    json_decref(exported);
}

static void check_profiles(json_t *doc)
{
    for (int op = 0; op < 2; op++) {
        struct cca_export_buf b = {0};
        json_error_t jerr;
        json_t *item;

        cca_export_profile_row(&b, CCA_EXPORT_CSV, doc, op, 0);
        check_csv_columns(&b, 14);
        b.len = 0;
        cca_export_json_open(&b, CCA_EXPORT_JSON);
        cca_export_profile_row(&b, CCA_EXPORT_JSON, doc, op, 0);
        cca_export_profile_row(&b, CCA_EXPORT_JSON, doc, op, 1);
        cca_export_json_close(&b, CCA_EXPORT_JSON);
        check_json_out(&b, false, 2, NULL);
        b.len = 0;
        cca_export_profile_row(&b, CCA_EXPORT_NDJSON, doc, op, 0);
        check_json_out(&b, true, 1, NULL);
        item = json_loadb(b.data, b.len, 0, &jerr);
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(item, "kind")),
                          op ? "operator" : "customer") == 0);
        FUZZ_CHECK(json_object_get(item, "id") != NULL);
        if (op)
            FUZZ_CHECK(json_object_get(item, "token_sha256") == NULL);
        json_decref(item);
        cca_export_buf_cleanup(&b);
    }
}

static void check_document(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)data, size, 0, &jerr);
    json_t *before;

    if (!json_is_object(doc)) {
        json_decref(doc);
        return;
    }
    before = json_deep_copy(doc);
    check_history(doc);
    check_profiles(doc);
    FUZZ_CHECK(json_equal(doc, before)); /* borrowed means unchanged */
    json_decref(before);
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_fields(data, size);
    check_document(data, size);
    return 0;
}
