/* SPDX-License-Identifier: MIT */
/*
 * Export formats (export.h): CSV rows, JSON arrays and NDJSON lines, and a
 * customer's history as text. Every writer appends to a struct cca_export_buf,
 * so the HTTP layer can stream any number of items and drain between them.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <csv.h>
#include <jansson.h>

#include "cca/common.h"
#include "cca/dialog.h"
#include "cca/export.h"
#include "cca/mem.h"
#include "cca/operator.h"
#include "cca/record.h"

static const char *const format_names[CCA_EXPORT__COUNT] = {
    [CCA_EXPORT_JSON] = "json",
    [CCA_EXPORT_NDJSON] = "ndjson",
    [CCA_EXPORT_CSV] = "csv",
    [CCA_EXPORT_TXT] = "txt",
};

static const char *const content_types[CCA_EXPORT__COUNT] = {
    [CCA_EXPORT_JSON] = "application/json",
    [CCA_EXPORT_NDJSON] = "application/x-ndjson",
    [CCA_EXPORT_CSV] = "text/csv; charset=utf-8",
    [CCA_EXPORT_TXT] = "text/plain; charset=utf-8",
};

bool cca_export_format_parse(const char *s, unsigned allowed, enum cca_export_format *ret)
{
    if (s == NULL)
        return false;
    for (unsigned i = 0; i < CCA_EXPORT__COUNT; i++) {
        if (strcmp(s, format_names[i]) == 0 && (allowed & CCA_EXPORT_BIT(i)) != 0) {
            *ret = (enum cca_export_format)i;
            return true;
        }
    }
    return false;
}

const char *cca_export_format_name(enum cca_export_format fmt)
{
    if ((unsigned)fmt >= CCA_EXPORT__COUNT)
        return NULL;
    return format_names[fmt];
}

const char *cca_export_content_type(enum cca_export_format fmt)
{
    if ((unsigned)fmt >= CCA_EXPORT__COUNT)
        return NULL;
    return content_types[fmt];
}

/* ---- buffer ------------------------------------------------------------------ */

/* Room for @n more bytes; doubling keeps a long export's appends O(1) amortised. */
static char *reserve(struct cca_export_buf *b, size_t n)
{
    size_t need;

    if (__builtin_add_overflow(b->len, n, &need))
        abort(); /* more than the address space: a caller bug */
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;

        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        b->data = cca_xrealloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

void cca_export_buf_add(struct cca_export_buf *b, const char *s, size_t n)
{
    if (n == 0)
        return;
    memcpy(reserve(b, n), s, n);
    b->len += n;
}

static void add_str(struct cca_export_buf *b, const char *s)
{
    cca_export_buf_add(b, s, strlen(s));
}

void cca_export_buf_consume(struct cca_export_buf *b, size_t n)
{
    assert(n <= b->len);
    if (n > b->len)
        n = b->len;
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void cca_export_buf_cleanup(struct cca_export_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* @b's bytes as a C string (a NUL after them, not counted in len). */
static const char *buf_cstr(struct cca_export_buf *b)
{
    *reserve(b, 1) = '\0';
    return b->data;
}

/* ---- CSV --------------------------------------------------------------------- */

void cca_export_csv_bom(struct cca_export_buf *b)
{
    cca_export_buf_add(b, "\xEF\xBB\xBF", 3);
}

/*
 * A '+' or '-' field is a formula to a spreadsheet unless it is a number or a
 * phone number. Only digits, spaces and . , ( ) / - may follow the sign: any
 * formula that does harm needs a letter (a function, a cell, DDE's cmd|...)
 * or another operator, and "-2+3+cmd|' /C calc'!A0" passes a check of the
 * second character alone.
 */
static bool sign_is_number(const char *s, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (strchr("0123456789 .,()/-", s[i]) == NULL)
            return false;
    }
    return true;
}

static bool needs_guard(const char *s, size_t n)
{
    if (n == 0)
        return false;
    switch (s[0]) {
        case '=':
        case '@':
        case '\t':
        case '\r':
            return true;
        case '+':
        case '-':
            return !sign_is_number(s, n);
        default:
            return false;
    }
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Quote when RFC 4180 must (comma, quote, CR, LF), when a spreadsheet that
 * splits on semicolons (ru, de locales) would split, and when a reader would trim:
 * libcsv and most spreadsheets drop spaces and tabs around an unquoted field.
 * With the guard the field starts with the quote character, never blank.
 */
static bool needs_quotes(const char *s, size_t n, bool guard)
{
    if (n == 0)
        return false;
    if ((!guard && is_blank(s[0])) || is_blank(s[n - 1]))
        return true;
    return strpbrk(s, ",;\"\r\n") != NULL;
}

void cca_export_csv_field(struct cca_export_buf *b, const char *s, bool first)
{
    size_t n = s != NULL ? strlen(s) : 0;
    bool guard = needs_guard(s, n);
    char *tmp = NULL;
    const char *src = s;
    size_t src_len = n;
    size_t need;

    if (!first)
        cca_export_buf_add(b, ",", 1);
    if (!needs_quotes(s, n, guard)) {
        if (guard)
            cca_export_buf_add(b, "'", 1);
        cca_export_buf_add(b, s, n);
        goto out;
    }
    if (guard) {
        /* csv_write takes one contiguous source; this case is rare. */
        tmp = cca_xmalloc(n + 1);
        tmp[0] = '\'';
        memcpy(tmp + 1, s, n);
        src = tmp;
        src_len = n + 1;
    }
    need = csv_write(NULL, 0, src, src_len);
    (void)csv_write(reserve(b, need), need, src, src_len);
    b->len += need;
out:
    free(tmp);
}

void cca_export_csv_end(struct cca_export_buf *b)
{
    cca_export_buf_add(b, "\r\n", 2);
}

/* ---- dialogs ----------------------------------------------------------------- */

static const char *const dialog_columns[] = {
    "dialog_id",
    "customer_id",
    "customer_name",
    "channel",
    "agents",
    "operators",
    "operator_ids",
    "status",
    "created_at",
    "closed_at",
    "messages",
    "tokens",
    "first_response_s",
    "queue_wait_s",
    "first_human_response_s",
    "handle_time_s",
    "escalation_trigger",
    "csat",
    "close_reason",
};

static void header_row(struct cca_export_buf *b, const char *const *cols, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cca_export_csv_field(b, cols[i], i == 0);
    cca_export_csv_end(b);
}

void cca_export_dialog_csv_header(struct cca_export_buf *b)
{
    header_row(b, dialog_columns, CCA_ARRAY_SIZE(dialog_columns));
}

/* A char[37] id of a record as a C string, even if its owner forgot the NUL. */
static void id_field(struct cca_export_buf *b, const char id[37], bool first)
{
    char tmp[37];

    memcpy(tmp, id, 36);
    tmp[36] = '\0';
    cca_export_csv_field(b, tmp, first);
}

static void time_field(struct cca_export_buf *b, int64_t ms)
{
    char buf[CCA_TIME_LEN];

    if (ms == 0) {
        cca_export_csv_field(b, NULL, false);
        return;
    }
    cca_time_format(ms, buf);
    cca_export_csv_field(b, buf, false);
}

/*
 * Milliseconds as seconds with 3 decimals in integer arithmetic: "%.3f" of
 * ms / 1000.0 rounds a binary fraction and can be a millisecond off for large
 * values, and the CSV must show the very millisecond the statistics folded.
 */
static void seconds_field(struct cca_export_buf *b, int64_t ms)
{
    char buf[32];
    uint64_t u = ms < 0 ? -(uint64_t)ms : (uint64_t)ms;

    if (ms == -1) {
        cca_export_csv_field(b, NULL, false);
        return;
    }
    (void)snprintf(buf, sizeof(buf), "%s%" PRIu64 ".%03" PRIu64, ms < 0 ? "-" : "",
                   u / 1000, u % 1000);
    cca_export_csv_field(b, buf, false);
}

static void int_field(struct cca_export_buf *b, long long v)
{
    char buf[24];

    (void)snprintf(buf, sizeof(buf), "%lld", v);
    cca_export_csv_field(b, buf, false);
}

/* Appends @s to the list in @tmp, ";" between items. */
static void list_add(struct cca_export_buf *tmp, const char *s)
{
    if (tmp->len > 0)
        cca_export_buf_add(tmp, ";", 1);
    add_str(tmp, s);
}

void cca_export_dialog_csv_row(struct cca_export_buf *b, const struct cca_record *r,
                               json_t *names)
{
    struct cca_export_buf tmp = {0};
    char id[37];

    id_field(b, r->dialog_id, true);
    cca_export_csv_field(b, r->customer_id, false);
    cca_export_csv_field(b, r->customer_name, false);
    cca_export_csv_field(b, r->channel, false);

    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        if ((r->agents & (1u << a)) != 0)
            list_add(&tmp, cca_agent_name((enum cca_agent)a));
    }
    cca_export_csv_field(b, buf_cstr(&tmp), false);

    tmp.len = 0;
    for (size_t i = 0; i < r->nops; i++) {
        const char *name;

        memcpy(id, r->ops[i].operator_id, 36);
        id[36] = '\0';
        name = json_string_value(json_object_get(names, id));
        list_add(&tmp, name != NULL ? name : id);
    }
    cca_export_csv_field(b, buf_cstr(&tmp), false);

    tmp.len = 0;
    for (size_t i = 0; i < r->nops; i++) {
        memcpy(id, r->ops[i].operator_id, 36);
        id[36] = '\0';
        list_add(&tmp, id);
    }
    cca_export_csv_field(b, buf_cstr(&tmp), false);

    cca_export_csv_field(b, cca_dialog_status_name(r->status), false);
    time_field(b, r->created_ms);
    time_field(b, r->closed_ms);
    int_field(b, (long long)r->messages);
    int_field(b, (long long)r->tokens);
    seconds_field(b, r->first_response_ms);
    seconds_field(b, r->queue_wait_ms);
    seconds_field(b, r->first_human_ms);
    seconds_field(b, r->handle_ms);
    cca_export_csv_field(
        b, r->trigger == CCA_TRIGGER_NONE ? NULL : cca_record_trigger_name(r->trigger),
        false);
    if (r->csat == 0)
        cca_export_csv_field(b, NULL, false);
    else
        int_field(b, r->csat);
    cca_export_csv_field(b, r->close_reason, false);
    cca_export_csv_end(b);
    cca_export_buf_cleanup(&tmp);
}

/* ---- JSON and NDJSON --------------------------------------------------------- */

void cca_export_json_open(struct cca_export_buf *b, enum cca_export_format fmt)
{
    if (fmt == CCA_EXPORT_JSON)
        cca_export_buf_add(b, "[", 1);
}

void cca_export_json_item(struct cca_export_buf *b, enum cca_export_format fmt,
                          json_t *doc, size_t index)
{
    char *line;
    size_t len;

    if (fmt != CCA_EXPORT_JSON && fmt != CCA_EXPORT_NDJSON)
        return;
    if (json_is_object(doc) || json_is_array(doc)) {
        line = cca_dialog_dump_change(doc, &len);
    } else {
        /* cca_dialog_dump_change takes containers only; a scalar item is a caller's
         * choice, not a reason to abort the export. */
        line = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
        if (line == NULL)
            line = cca_xstrdup("null");
        len = strlen(line);
        line = cca_xrealloc(line, len + 2);
        line[len++] = '\n';
        line[len] = '\0';
    }
    if (fmt == CCA_EXPORT_JSON) {
        if (index > 0)
            cca_export_buf_add(b, ",\n", 2);
        len--; /* the array's separator replaces the line's newline */
    }
    cca_export_buf_add(b, line, len);
    free(line);
}

void cca_export_json_close(struct cca_export_buf *b, enum cca_export_format fmt)
{
    if (fmt == CCA_EXPORT_JSON)
        cca_export_buf_add(b, "]\n", 2);
}

json_t *cca_export_dialog_doc(json_t *doc)
{
    json_t *meta = json_object_get(doc, "metadata");
    json_t *copy;
    json_t *meta_copy;

    if (json_object_get(meta, "idempotency") == NULL)
        return json_incref(doc);
    /* Two shallow copies: the messages and everything else stay shared. */
    copy = json_copy(doc);
    meta_copy = json_copy(meta);
    (void)json_object_del(meta_copy, "idempotency");
    (void)json_object_set_new(copy, "metadata", meta_copy);
    return copy;
}

/* ---- a customer's history ---------------------------------------------------- */

/*
 * How text reaches a TXT line: TEXT_LINE keeps it on one line (a line break
 * becomes a space), TEXT_BLOCK continues it on lines indented by two spaces.
 */
enum text_mode { TEXT_LINE, TEXT_BLOCK };

/* The length of the well-formed UTF-8 sequence at @s[0..n) (RFC 3629), 0 if none. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *ret_cp)
{
    uint32_t cp;
    size_t len;

    if (s[0] < 0x80) {
        *ret_cp = s[0];
        return 1;
    }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        cp = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        cp = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *ret_cp = cp;
    return len;
}

#define REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

/*
 * @s[0..n) onto a TXT line. People read this file in any viewer, so it holds
 * valid UTF-8 and no control character but LF: a CR LF, CR or LF is a line
 * break, a tab a space, and every other control (C0, DEL, C1) or malformed
 * byte U+FFFD. In TEXT_BLOCK trailing line breaks are dropped and the indent
 * is written before a continuation line's first character, so blank lines
 * carry no trailing spaces.
 */
static void put_text(struct cca_export_buf *b, const char *str, size_t n,
                     enum text_mode mode)
{
    const unsigned char *s = (const unsigned char *)str;
    bool indent = false;
    size_t i = 0;

    if (s == NULL)
        return;
    if (mode == TEXT_BLOCK) {
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
            n--;
    }
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_seq(s + i, n - i, &cp);

        if (len == 0) {
            cp = 0xFFFD;
            len = 1;
        }
        if (cp == '\r' || cp == '\n') {
            if (cp == '\r' && i + 1 < n && s[i + 1] == '\n')
                len = 2;
            i += len;
            if (mode == TEXT_LINE) {
                cca_export_buf_add(b, " ", 1);
            } else {
                cca_export_buf_add(b, "\n", 1);
                indent = true;
            }
            continue;
        }
        if (indent) {
            cca_export_buf_add(b, "  ", 2);
            indent = false;
        }
        if (cp == '\t')
            cca_export_buf_add(b, " ", 1);
        else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0xFFFD)
            cca_export_buf_add(b, REPLACEMENT, 3);
        else
            cca_export_buf_add(b, (const char *)s + i, len);
        i += len;
    }
}

static void put_json_text(struct cca_export_buf *b, json_t *v, enum text_mode mode)
{
    if (json_is_string(v))
        put_text(b, json_string_value(v), json_string_length(v), mode);
}

static void put_line(struct cca_export_buf *b, const char *s)
{
    put_text(b, s, s != NULL ? strlen(s) : 0, TEXT_LINE);
}

/*
 * A stored RFC 3339 time as "YYYY-MM-DD HH:MM:SS UTC"; what cca_time_parse
 * does not read is shown as stored, a missing time as "?".
 */
static void put_time(struct cca_export_buf *b, json_t *v)
{
    const char *s = json_string_value(v);
    int64_t ms;
    time_t t;
    struct tm tm;
    char buf[64];

    if (s == NULL) {
        cca_export_buf_add(b, "?", 1);
        return;
    }
    if (!cca_time_parse(s, &ms)) {
        put_json_text(b, v, TEXT_LINE);
        return;
    }
    t = (time_t)(ms / 1000 - (ms % 1000 < 0));
    if (gmtime_r(&t, &tm) == NULL) {
        put_json_text(b, v, TEXT_LINE);
        return;
    }
    (void)snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d UTC",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec);
    add_str(b, buf);
}

static const char *obj_str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* Who wrote @m in @doc, as the TXT and CSV history show it, appended to @who. */
static void who_of(struct cca_export_buf *who, json_t *doc, json_t *m)
{
    const char *role = obj_str(m, "role");
    const char *s;

    if (role == NULL) {
        add_str(who, "?");
    } else if (strcmp(role, "customer") == 0) {
        s = obj_str(json_object_get(doc, "customer_info"), "name");
        add_str(who, "Customer");
        if (nonempty(s)) {
            add_str(who, " (");
            add_str(who, s);
            add_str(who, ")");
        }
    } else if (strcmp(role, "agent") == 0) {
        s = obj_str(m, "agent_type");
        add_str(who, "AI");
        if (nonempty(s)) {
            add_str(who, " ");
            add_str(who, s);
        }
    } else if (strcmp(role, "operator") == 0) {
        s = obj_str(m, "operator_name");
        if (!nonempty(s))
            s = obj_str(m, "operator_id");
        add_str(who, "Operator");
        if (nonempty(s)) {
            add_str(who, " ");
            add_str(who, s);
        }
    } else if (strcmp(role, "system") == 0) {
        add_str(who, "System");
    } else {
        add_str(who, role);
    }
}

static const char *const history_columns[] = {
    "dialog_id", "timestamp", "role", "who", "operator_id", "agent", "text",
};

void cca_export_history_open(struct cca_export_buf *b, enum cca_export_format fmt,
                             const char *customer_id, const char *customer_name)
{
    switch (fmt) {
        case CCA_EXPORT_TXT:
            add_str(b, "History of customer ");
            put_line(b, customer_id);
            if (nonempty(customer_name)) {
                add_str(b, " (");
                put_line(b, customer_name);
                add_str(b, ")");
            }
            add_str(b, "\n");
            break;
        case CCA_EXPORT_CSV:
            header_row(b, history_columns, CCA_ARRAY_SIZE(history_columns));
            break;
        case CCA_EXPORT_JSON:
        case CCA_EXPORT_NDJSON:
            cca_export_json_open(b, fmt);
            break;
        default:
            break;
    }
}

static void history_txt(struct cca_export_buf *b, json_t *doc)
{
    struct cca_export_buf who = {0};
    json_t *messages = json_object_get(doc, "messages");
    json_t *rating = json_object_get(doc, "rating");
    json_t *m;
    size_t i;

    add_str(b, "\n=== Dialog ");
    put_json_text(b, json_object_get(doc, "dialog_id"), TEXT_LINE);
    add_str(b, " · ");
    put_time(b, json_object_get(doc, "created_at"));
    add_str(b, " · ");
    put_json_text(b, json_object_get(doc, "status"), TEXT_LINE);
    add_str(b, " ===\n");

    json_array_foreach (messages, i, m) {
        add_str(b, "[");
        put_time(b, json_object_get(m, "timestamp"));
        add_str(b, "] ");
        who.len = 0;
        who_of(&who, doc, m);
        put_text(b, who.data, who.len, TEXT_LINE);
        add_str(b, ": ");
        put_json_text(b, json_object_get(m, "content"), TEXT_BLOCK);
        add_str(b, "\n");
    }
    if (json_is_string(json_object_get(doc, "closed_at"))) {
        add_str(b, "Closed ");
        put_time(b, json_object_get(doc, "closed_at"));
        if (nonempty(obj_str(doc, "close_reason"))) {
            add_str(b, ": ");
            put_json_text(b, json_object_get(doc, "close_reason"), TEXT_LINE);
        }
        add_str(b, "\n");
    }
    if (json_is_integer(json_object_get(rating, "score"))) {
        char buf[32];

        (void)snprintf(buf, sizeof(buf), "Rating: %" JSON_INTEGER_FORMAT "/5",
                       json_integer_value(json_object_get(rating, "score")));
        add_str(b, buf);
        if (nonempty(obj_str(rating, "comment"))) {
            add_str(b, " — ");
            put_json_text(b, json_object_get(rating, "comment"), TEXT_BLOCK);
        }
        add_str(b, "\n");
    }
    cca_export_buf_cleanup(&who);
}

static void history_csv(struct cca_export_buf *b, json_t *doc)
{
    struct cca_export_buf who = {0};
    json_t *messages = json_object_get(doc, "messages");
    const char *dialog_id = obj_str(doc, "dialog_id");
    json_t *m;
    size_t i;

    json_array_foreach (messages, i, m) {
        who.len = 0;
        who_of(&who, doc, m);
        cca_export_csv_field(b, dialog_id, true);
        cca_export_csv_field(b, obj_str(m, "timestamp"), false);
        cca_export_csv_field(b, obj_str(m, "role"), false);
        cca_export_csv_field(b, buf_cstr(&who), false);
        cca_export_csv_field(b, obj_str(m, "operator_id"), false);
        cca_export_csv_field(b, obj_str(m, "agent_type"), false);
        cca_export_csv_field(b, obj_str(m, "content"), false);
        cca_export_csv_end(b);
    }
    cca_export_buf_cleanup(&who);
}

void cca_export_history_dialog(struct cca_export_buf *b, enum cca_export_format fmt,
                               json_t *doc, size_t index)
{
    json_t *item;

    switch (fmt) {
        case CCA_EXPORT_TXT:
            history_txt(b, doc);
            break;
        case CCA_EXPORT_CSV:
            history_csv(b, doc);
            break;
        case CCA_EXPORT_JSON:
        case CCA_EXPORT_NDJSON:
            item = cca_export_dialog_doc(doc);
            cca_export_json_item(b, fmt, item, index);
            json_decref(item);
            break;
        default:
            break;
    }
}

void cca_export_history_close(struct cca_export_buf *b, enum cca_export_format fmt)
{
    cca_export_json_close(b, fmt);
}

/* ---- profiles ---------------------------------------------------------------- */

static const char *const profile_columns[] = {
    "kind",       "id",    "name",  "full_name", "city",   "birth_date",  "position",
    "experience", "phone", "email", "language",  "status", "max_dialogs", "created_at",
};

/* The columns read from an operator's "profile" object, not from the top level. */
static bool is_profile_column(const char *col)
{
    static const char *const keys[] = {"full_name", "city", "birth_date", "position",
                                       "experience"};

    for (size_t i = 0; i < CCA_ARRAY_SIZE(keys); i++) {
        if (strcmp(col, keys[i]) == 0)
            return true;
    }
    return false;
}

/*
 * A JSON value as one CSV cell into @tmp: strings as they are, numbers in
 * decimal, booleans as true/false, arrays of those joined with ";" (an
 * operator's languages), null, absent and objects empty.
 */
static void cell_of(struct cca_export_buf *tmp, json_t *v, bool top)
{
    char buf[64];
    json_t *item;
    size_t i;

    if (v == NULL)
        return;
    switch (json_typeof(v)) {
        case JSON_STRING:
            add_str(tmp, json_string_value(v));
            break;
        case JSON_INTEGER:
            (void)snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
                           json_integer_value(v));
            add_str(tmp, buf);
            break;
        case JSON_REAL:
            (void)snprintf(buf, sizeof(buf), "%.17g", json_real_value(v));
            add_str(tmp, buf);
            break;
        case JSON_TRUE:
            add_str(tmp, "true");
            break;
        case JSON_FALSE:
            add_str(tmp, "false");
            break;
        case JSON_ARRAY:
            if (!top)
                break;
            json_array_foreach (v, i, item) {
                if (i > 0)
                    add_str(tmp, ";");
                cell_of(tmp, item, false);
            }
            break;
        default:
            break;
    }
}

static void profile_csv(struct cca_export_buf *b, json_t *src, bool is_operator)
{
    struct cca_export_buf tmp = {0};
    json_t *profile = is_operator ? json_object_get(src, "profile") : src;

    cca_export_csv_field(b, is_operator ? "operator" : "customer", true);
    cca_export_csv_field(b, obj_str(src, is_operator ? "operator_id" : "customer_id"),
                         false);
    for (size_t c = 2; c < CCA_ARRAY_SIZE(profile_columns); c++) {
        const char *col = profile_columns[c];
        json_t *v = json_object_get(is_profile_column(col) ? profile : src, col);

        /* An operator speaks a list of languages; a customer has one. */
        if (v == NULL && is_operator && strcmp(col, "language") == 0)
            v = json_object_get(src, "languages");
        tmp.len = 0;
        cell_of(&tmp, v, true);
        cca_export_csv_field(b, buf_cstr(&tmp), false);
    }
    cca_export_csv_end(b);
    cca_export_buf_cleanup(&tmp);
}

/*
 * {"kind", "id", then @src's fields in stored order}: the id key is not
 * repeated, and an operator's "profile" object is spread in its place so both
 * kinds carry full_name, city, ... at the top level.
 */
static json_t *profile_item(json_t *src, bool is_operator)
{
    const char *id_key = is_operator ? "operator_id" : "customer_id";
    json_t *item = json_object();
    const char *key;
    json_t *v;

    (void)json_object_set_new(item, "kind",
                              json_string(is_operator ? "operator" : "customer"));
    (void)json_object_set(item, "id", json_object_get(src, id_key));
    if (json_object_get(item, "id") == NULL)
        (void)json_object_set_new(item, "id", json_null());
    json_object_foreach (src, key, v) {
        if (strcmp(key, id_key) == 0 || strcmp(key, "kind") == 0 ||
            strcmp(key, "id") == 0)
            continue;
        if (is_operator && strcmp(key, "profile") == 0 && json_is_object(v)) {
            const char *pkey;
            json_t *pv;

            /* A profile never holds the hash (operator.h); a hand-made file might. */
            json_object_foreach (v, pkey, pv) {
                if (strcmp(pkey, "kind") != 0 && strcmp(pkey, "id") != 0 &&
                    strcmp(pkey, "token_sha256") != 0)
                    (void)json_object_set(item, pkey, pv);
            }
            continue;
        }
        (void)json_object_set(item, key, v);
    }
    return item;
}

void cca_export_profile_csv_header(struct cca_export_buf *b)
{
    header_row(b, profile_columns, CCA_ARRAY_SIZE(profile_columns));
}

void cca_export_profile_row(struct cca_export_buf *b, enum cca_export_format fmt,
                            json_t *doc, bool is_operator, size_t index)
{
    /* Everything of an operator goes through the public view: never the token hash. */
    json_t *src = is_operator ? cca_operator_public_view(doc) : json_incref(doc);
    json_t *item = NULL;

    if (!json_is_object(src))
        goto out;
    switch (fmt) {
        case CCA_EXPORT_CSV:
            profile_csv(b, src, is_operator);
            break;
        case CCA_EXPORT_JSON:
        case CCA_EXPORT_NDJSON:
            item = profile_item(src, is_operator);
            cca_export_json_item(b, fmt, item, index);
            break;
        default:
            break;
    }
out:
    json_decref(item);
    json_decref(src);
}
