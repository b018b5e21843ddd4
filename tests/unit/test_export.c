/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <csv.h>
#include <jansson.h>

#include "cca/dialog.h"
#include "cca/export.h"
#include "cca/operator.h"
#include "cca/record.h"
#include "cca/router.h"
#include "cca/text.h"

#define T0    1736937000123LL /* 2025-01-15T10:30:00.123Z */
#define D1    "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
#define D2    "5c3e7a91-0d2f-4b6e-8a14-7f9c2d1e3b50"
#define OP_A  "0b6f2c7e-4f7a-4c1e-9f3d-2a5b8c9d0e1f"
#define OP_B  "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
#define HASH  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define MSG_1 "11111111-1111-4111-8111-111111111111"
#define MSG_2 "22222222-2222-4222-8222-222222222222"
#define MSG_3 "33333333-3333-4333-8333-333333333333"
#define MSG_4 "44444444-4444-4444-8444-444444444444"

/* ---- helpers ----------------------------------------------------------------- */

static json_t *parse_json(const char *s)
{
    json_error_t jerr;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &jerr);

    if (j == NULL)
        fail_msg("bad JSON (%s): %s", jerr.text, s);
    return j;
}

/* What libcsv reads: an array of rows, each an array of field strings. */
struct csv_read {
    json_t *rows;
    json_t *row;
};

static void on_field(void *s, size_t len, void *ctx)
{
    struct csv_read *p = ctx;
    json_t *f = json_stringn(s != NULL ? s : "", len);

    if (f == NULL)
        fail_msg("a field is not UTF-8");
    if (p->row == NULL)
        p->row = json_array();
    (void)json_array_append_new(p->row, f);
}

static void on_row(int c, void *ctx)
{
    struct csv_read *p = ctx;

    (void)c;
    (void)json_array_append_new(p->rows, p->row != NULL ? p->row : json_array());
    p->row = NULL;
}

/* Parses @len bytes of CSV in libcsv's strict mode; fails the test on an error. */
static json_t *read_csv(const char *data, size_t len)
{
    struct csv_parser parser;
    struct csv_read p = {.rows = json_array()};

    assert_int_equal(csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI), 0);
    if (csv_parse(&parser, data, len, on_field, on_row, &p) != len)
        fail_msg("csv_parse: %s", csv_strerror(csv_error(&parser)));
    if (csv_fini(&parser, on_field, on_row, &p) != 0)
        fail_msg("csv_fini: %s", csv_strerror(csv_error(&parser)));
    csv_free(&parser);
    assert_null(p.row);
    return p.rows;
}

/* A row of @n fields (NULL reads as ""), as read_csv gives it. */
static json_t *row_of(size_t n, const char *const *fields)
{
    json_t *row = json_array();

    for (size_t i = 0; i < n; i++)
        (void)json_array_append_new(row, json_string(fields[i] ? fields[i] : ""));
    return row;
}

#define ROW(...)                                                                         \
    row_of(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *),                 \
           (const char *[]){__VA_ARGS__})

static void assert_json_equal(json_t *got, json_t *want)
{
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_ENCODE_ANY);

        fail_msg("got %s\nwant %s", g, w);
    }
}

/* @b's bytes as a C string (a NUL after them, not counted). */
static const char *cstr(struct cca_export_buf *b)
{
    cca_export_buf_add(b, "", 1);
    b->len--;
    return b->data;
}

/* The buffer's bytes equal the C string @want. */
static void assert_buf(const struct cca_export_buf *b, const char *want)
{
    size_t n = strlen(want);

    if (b->len != n || memcmp(b->data, want, n) != 0)
        fail_msg("got  [%.*s]\nwant [%s]", (int)b->len, b->data ? b->data : "", want);
}

/* No control byte but LF, and valid UTF-8. */
static void assert_clean_text(const struct cca_export_buf *b)
{
    assert_true(cca_text_is_utf8(b->data, b->len));
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];

        if ((c < 0x20 && c != '\n') || c == 0x7F)
            fail_msg("control byte 0x%02x at %zu", c, i);
        if (c == 0xC2 && i + 1 < b->len && (unsigned char)b->data[i + 1] >= 0x80 &&
            (unsigned char)b->data[i + 1] <= 0x9F)
            fail_msg("C1 control at %zu", i);
    }
}

/* ---- formats and the buffer -------------------------------------------------- */

static void test_formats(void **state)
{
    const unsigned all = CCA_EXPORT_BIT(CCA_EXPORT_JSON) |
                         CCA_EXPORT_BIT(CCA_EXPORT_NDJSON) |
                         CCA_EXPORT_BIT(CCA_EXPORT_CSV) | CCA_EXPORT_BIT(CCA_EXPORT_TXT);
    enum cca_export_format f = CCA_EXPORT_TXT;

    (void)state;
    assert_true(cca_export_format_parse("csv", all, &f));
    assert_int_equal(f, CCA_EXPORT_CSV);
    assert_true(cca_export_format_parse("ndjson", all, &f));
    assert_int_equal(f, CCA_EXPORT_NDJSON);
    assert_false(cca_export_format_parse("CSV", all, &f));
    assert_false(cca_export_format_parse("csv ", all, &f));
    assert_false(cca_export_format_parse("", all, &f));
    assert_false(cca_export_format_parse(NULL, all, &f));
    assert_false(
        cca_export_format_parse("txt", all & ~CCA_EXPORT_BIT(CCA_EXPORT_TXT), &f));
    assert_int_equal(f, CCA_EXPORT_NDJSON); /* untouched on failure */
    assert_string_equal(cca_export_format_name(CCA_EXPORT_JSON), "json");
    assert_string_equal(cca_export_format_name(CCA_EXPORT_TXT), "txt");
    assert_null(cca_export_format_name(CCA_EXPORT__COUNT));
    assert_null(cca_export_format_name((enum cca_export_format) - 1));
    assert_string_equal(cca_export_content_type(CCA_EXPORT_JSON), "application/json");
    assert_string_equal(cca_export_content_type(CCA_EXPORT_NDJSON),
                        "application/x-ndjson");
    assert_string_equal(cca_export_content_type(CCA_EXPORT_CSV),
                        "text/csv; charset=utf-8");
    assert_string_equal(cca_export_content_type(CCA_EXPORT_TXT),
                        "text/plain; charset=utf-8");
}

static void test_buf(void **state)
{
    struct cca_export_buf b = {0};

    (void)state;
    for (int i = 0; i < 10000; i++) {
        char c = (char)('a' + i % 26);

        cca_export_buf_add(&b, &c, 1);
        assert_true(b.cap >= b.len);
    }
    assert_int_equal(b.len, 10000);
    assert_true(b.cap < 2 * 10000 + 256); /* doubling, not one block per byte */
    cca_export_buf_add(&b, "xyz", 0);
    assert_int_equal(b.len, 10000);
    cca_export_buf_consume(&b, 3);
    assert_int_equal(b.len, 9997);
    assert_int_equal(b.data[0], 'd');
    assert_int_equal(b.data[9996], 'a' + 9999 % 26);
    cca_export_buf_consume(&b, 0);
    assert_int_equal(b.len, 9997);
    cca_export_buf_consume(&b, 9997);
    assert_int_equal(b.len, 0);
    cca_export_buf_add(&b, "ok", 2);
    assert_buf(&b, "ok");
    cca_export_buf_cleanup(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    cca_export_buf_cleanup(&b);
    cca_export_buf_cleanup(NULL);
}

/* ---- CSV --------------------------------------------------------------------- */

static const struct {
    const char *in;
    const char *out; /* bytes written */
    bool guarded;    /* read back with a leading ' */
} csv_cases[] = {
    {"plain", "plain", false},
    {"a,b", "\"a,b\"", false},
    {"say \"hi\"", "\"say \"\"hi\"\"\"", false},
    {"\"", "\"\"\"\"", false},
    {"l1\r\nl2", "\"l1\r\nl2\"", false},
    {"l1\nl2", "\"l1\nl2\"", false},
    {" lead", "\" lead\"", false},
    {"trail ", "\"trail \"", false},
    {"tab\t", "\"tab\t\"", false},
    {"in side", "in side", false},
    {"", "", false},
    {NULL, "", false},
    {"Иванов Иван", "Иванов Иван", false},
    {"Иванов, Иван", "\"Иванов, Иван\"", false},
    {"a=b", "a=b", false},
    {"'quoted", "'quoted", false},
    {"=1+1", "'=1+1", true},
    {"@SUM(A1)", "'@SUM(A1)", true},
    {"\t=1", "'\t=1", true},
    {"\r=1", "\"'\r=1\"", true},
    {"+A1", "'+A1", true},
    {"-cmd", "'-cmd", true},
    {"-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0", true},
    {"=HYPERLINK(\"http://x\",\"y\")", "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
     true},
    {"=a ", "\"'=a \"", true},
    {"+7 999 123-45-67", "+7 999 123-45-67", false},
    {"+7 (999) 123-45-67", "+7 (999) 123-45-67", false},
    {"-5", "-5", false},
    {"-1.500", "-1.500", false},
    {"- 5", "- 5", false},
    {"+", "+", false},
    {"-", "-", false},
    {"-5 items", "'-5 items", true},
};

static void test_csv_fields(void **state)
{
    struct cca_export_buf b = {0};
    json_t *want = json_array();
    json_t *rows;

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(csv_cases); i++) {
        b.len = 0;
        cca_export_csv_field(&b, csv_cases[i].in, true);
        if (b.len != strlen(csv_cases[i].out) ||
            memcmp(b.data ? b.data : "", csv_cases[i].out, b.len) != 0)
            fail_msg("case %zu: got [%.*s] want [%s]", i, (int)b.len, b.data,
                     csv_cases[i].out);
    }

    /* All of them in one row, read back by libcsv. */
    b.len = 0;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(csv_cases); i++) {
        const char *in = csv_cases[i].in ? csv_cases[i].in : "";
        char field[128];

        (void)snprintf(field, sizeof(field), "%s%s", csv_cases[i].guarded ? "'" : "", in);
        (void)json_array_append_new(want, json_string(field));
        cca_export_csv_field(&b, csv_cases[i].in, i == 0);
    }
    cca_export_csv_end(&b);
    assert_memory_equal(b.data + b.len - 2, "\r\n", 2);
    rows = read_csv(b.data, b.len);
    assert_int_equal(json_array_size(rows), 1);
    assert_json_equal(json_array_get(rows, 0), want);
    json_decref(rows);
    json_decref(want);

    /* Separators and row ends. */
    b.len = 0;
    cca_export_csv_field(&b, "a", true);
    cca_export_csv_field(&b, NULL, false);
    cca_export_csv_field(&b, "b", false);
    cca_export_csv_end(&b);
    cca_export_csv_field(&b, "c", true);
    cca_export_csv_end(&b);
    assert_buf(&b, "a,,b\r\nc\r\n");
    cca_export_buf_cleanup(&b);
}

static void test_csv_bom(void **state)
{
    struct cca_export_buf b = {0};
    json_t *rows;
    json_t *want;

    (void)state;
    cca_export_csv_bom(&b);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "\xEF\xBB\xBF", 3);
    cca_export_csv_field(&b, "Имя", true);
    cca_export_csv_field(&b, "x,y", false);
    cca_export_csv_end(&b);
    assert_buf(&b, "\xEF\xBB\xBFИмя,\"x,y\"\r\n");
    rows = read_csv(b.data + 3, b.len - 3);
    want = json_pack("[[ss]]", "Имя", "x,y");
    assert_json_equal(rows, want);
    json_decref(want);
    json_decref(rows);
    cca_export_buf_cleanup(&b);
}

/* ---- dialogs ----------------------------------------------------------------- */

#define DIALOG_HEADER                                                                    \
    "dialog_id,customer_id,customer_name,channel,agents,operators,operator_ids,status,"  \
    "created_at,closed_at,messages,tokens,first_response_s,queue_wait_s,"                \
    "first_human_response_s,handle_time_s,escalation_trigger,csat,close_reason\r\n"

static void test_dialog_csv(void **state)
{
    struct cca_record_op ops[2] = {
        {.operator_id = OP_A, .messages = 2, .assigned_ms = T0 + 5000},
        {.operator_id = OP_B, .messages = 1, .assigned_ms = T0 + 9000},
    };
    struct cca_record r = {
        .dialog_id = D1,
        .customer_id = (char *)"cust-42",
        .customer_name = (char *)"Иванов, Иван",
        .channel = (char *)"telegram",
        .close_reason = (char *)"resolved",
        .created_ms = T0,
        .closed_ms = T0 + 600000,
        .status = CCA_DIALOG_CLOSED,
        .agents = (1u << CCA_AGENT_SUPERVISOR) | (1u << CCA_AGENT_TECH_SUPPORT),
        .last_agent = CCA_AGENT_SUPERVISOR,
        .messages = 7,
        .tokens = 1234,
        .first_response_ms = 1500,
        .escalated_ms = T0 + 4000,
        .queue_wait_ms = 0,
        .first_human_ms = 61001,
        .handle_ms = 540005,
        .trigger = CCA_TRIGGER_SUPERVISOR,
        .human = true,
        .owner_operator = -1,
        .csat = 5,
        .ops = ops,
        .nops = 2,
    };
    struct cca_record open = {
        .dialog_id = D2,
        .customer_id = (char *)"=cmd",
        .channel = (char *)"api",
        .created_ms = T0,
        .status = CCA_DIALOG_ACTIVE,
        .last_agent = CCA_AGENT_NONE,
        .first_response_ms = 999,
        .queue_wait_ms = -1,
        .first_human_ms = -1,
        .handle_ms = -1,
        .owner_operator = -1,
    };
    struct cca_export_buf b = {0};
    json_t *names = json_pack("{ss}", OP_A, "Анна");
    json_t *rows;
    json_t *want;

    (void)state;
    cca_export_dialog_csv_header(&b);
    assert_buf(&b, DIALOG_HEADER);

    b.len = 0;
    cca_export_dialog_csv_row(&b, &r, names);
    /* Lists hold ';': quoted, so a spreadsheet splitting on ';' keeps one cell. */
    assert_buf(&b, D1 ",cust-42,\"Иванов, Иван\",telegram,\"tech_support;supervisor\","
                      "\"Анна;" OP_B "\",\"" OP_A ";" OP_B
                      "\",closed,2025-01-15T10:30:00.123Z,"
                      "2025-01-15T10:40:00.123Z,7,1234,1.500,0.000,61.001,540.005,"
                      "supervisor,5,resolved\r\n");

    /* Nothing applies: empty fields; no names object: the ids stand in. */
    b.len = 0;
    cca_export_dialog_csv_row(&b, &open, NULL);
    assert_buf(&b,
               D2 ",'=cmd,,api,,,,active,2025-01-15T10:30:00.123Z,,0,0,0.999,,,,,,\r\n");
    b.len = 0;
    cca_export_dialog_csv_row(&b, &r, NULL);
    assert_non_null(
        strstr(cstr(&b), ",\"" OP_A ";" OP_B "\",\"" OP_A ";" OP_B "\",closed,"));

    /* The whole file reads back with 19 fields a row. */
    b.len = 0;
    cca_export_dialog_csv_header(&b);
    cca_export_dialog_csv_row(&b, &r, names);
    cca_export_dialog_csv_row(&b, &open, names);
    rows = read_csv(b.data, b.len);
    assert_int_equal(json_array_size(rows), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(json_array_size(json_array_get(rows, i)), 19);
    want = ROW(D1, "cust-42", "Иванов, Иван", "telegram", "tech_support;supervisor",
               "Анна;" OP_B, OP_A ";" OP_B, "closed", "2025-01-15T10:30:00.123Z",
               "2025-01-15T10:40:00.123Z", "7", "1234", "1.500", "0.000", "61.001",
               "540.005", "supervisor", "5", "resolved");
    assert_json_equal(json_array_get(rows, 1), want);
    json_decref(want);
    want = ROW(D2, "'=cmd", "", "api", "", "", "", "active", "2025-01-15T10:30:00.123Z",
               "", "0", "0", "0.999", "", "", "", "", "", "");
    assert_json_equal(json_array_get(rows, 2), want);
    json_decref(want);
    json_decref(rows);
    json_decref(names);
    cca_export_buf_cleanup(&b);
}

/* ---- JSON and NDJSON --------------------------------------------------------- */

static void test_json_array(void **state)
{
    json_t *items = json_pack("[{si}{ss}{s[ii]sn}]", "a", 1, "b", "я", "c", 1, 2, "d");
    json_t *five = json_integer(5);
    struct cca_export_buf b = {0};
    json_t *got;
    json_t *want;

    (void)state;
    /* 0 items */
    cca_export_json_open(&b, CCA_EXPORT_JSON);
    cca_export_json_close(&b, CCA_EXPORT_JSON);
    assert_buf(&b, "[]\n");
    got = parse_json(cstr(&b));
    assert_true(json_is_array(got));
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);

    /* 1 item: compact, Cyrillic unescaped */
    b.len = 0;
    cca_export_json_open(&b, CCA_EXPORT_JSON);
    cca_export_json_item(&b, CCA_EXPORT_JSON, json_array_get(items, 1), 0);
    cca_export_json_close(&b, CCA_EXPORT_JSON);
    assert_buf(&b, "[{\"b\":\"я\"}]\n");
    got = parse_json(cstr(&b));
    want = json_pack("[O]", json_array_get(items, 1));
    assert_json_equal(got, want);
    json_decref(want);
    json_decref(got);

    /* 3 items, keys in stored order */
    b.len = 0;
    cca_export_json_open(&b, CCA_EXPORT_JSON);
    for (size_t i = 0; i < 3; i++)
        cca_export_json_item(&b, CCA_EXPORT_JSON, json_array_get(items, i), i);
    cca_export_json_close(&b, CCA_EXPORT_JSON);
    assert_buf(&b, "[{\"a\":1},\n{\"b\":\"я\"},\n{\"c\":[1,2],\"d\":null}]\n");
    got = parse_json(cstr(&b));
    assert_json_equal(got, items);
    json_decref(got);

    /* A scalar is written as such; TXT and CSV write nothing. */
    b.len = 0;
    cca_export_json_open(&b, CCA_EXPORT_JSON);
    cca_export_json_item(&b, CCA_EXPORT_JSON, json_array_get(items, 0), 0);
    cca_export_json_item(&b, CCA_EXPORT_JSON, five, 1);
    cca_export_json_item(&b, CCA_EXPORT_JSON, NULL, 2);
    cca_export_json_close(&b, CCA_EXPORT_JSON);
    assert_buf(&b, "[{\"a\":1},\n5,\nnull]\n");
    json_decref(five);
    b.len = 0;
    cca_export_json_open(&b, CCA_EXPORT_TXT);
    cca_export_json_item(&b, CCA_EXPORT_CSV, json_array_get(items, 0), 0);
    cca_export_json_close(&b, CCA_EXPORT_TXT);
    assert_int_equal(b.len, 0);

    json_decref(items);
    cca_export_buf_cleanup(&b);
}

static void test_ndjson(void **state)
{
    json_t *items = json_pack("[{si}{ss}{s{ss}}]", "a", 1, "b", "я\nты", "c", "d", "e");
    struct cca_export_buf b = {0};
    const char *p;
    size_t n = 0;

    (void)state;
    cca_export_json_open(&b, CCA_EXPORT_NDJSON);
    assert_int_equal(b.len, 0);
    for (size_t i = 0; i < 3; i++)
        cca_export_json_item(&b, CCA_EXPORT_NDJSON, json_array_get(items, i), i);
    cca_export_json_close(&b, CCA_EXPORT_NDJSON);
    assert_buf(&b, "{\"a\":1}\n{\"b\":\"я\\nты\"}\n{\"c\":{\"d\":\"e\"}}\n");
    /* Each line is one of the items. */
    p = b.data;
    while (p < b.data + b.len) {
        const char *nl = memchr(p, '\n', (size_t)(b.data + b.len - p));
        json_error_t jerr;
        json_t *j;

        assert_non_null(nl);
        j = json_loadb(p, (size_t)(nl - p), 0, &jerr);
        assert_non_null(j);
        assert_json_equal(j, json_array_get(items, n));
        json_decref(j);
        n++;
        p = nl + 1;
    }
    assert_int_equal(n, 3);
    json_decref(items);
    cca_export_buf_cleanup(&b);
}

/* ---- dialog documents and a customer's history ------------------------------- */

static void fill_turn(struct cca_dialog_turn *t, struct cca_route *route,
                      enum cca_agent agent, const char *text, const char *reply,
                      int64_t at_ms)
{
    memset(route, 0, sizeof(*route));
    route->agent = agent;
    route->method = CCA_ROUTE_KEYWORD;
    route->confidence = 0.9;
    route->best = agent;
    memset(t, 0, sizeof(*t));
    t->customer_msg_id = MSG_1;
    t->agent_msg_id = MSG_2;
    t->text = text;
    t->route = route;
    t->agent = agent;
    t->previous = CCA_AGENT_NONE;
    t->reply = reply;
    t->tokens = 42;
    t->latency_ms = 7;
    t->received_ms = at_ms;
    t->replied_ms = at_ms + 1000;
    t->processing_s = 1.0;
}

/* Replaces *doc with @next (a new reference). */
static void step(json_t **doc, json_t *next)
{
    json_decref(*doc);
    *doc = next;
}

/*
 * Dialog 1: a named customer, the AI (multi-line reply), an operator (with a
 * tab and a control character), a system notice; closed, rated, and carrying
 * an idempotency record.
 */
static json_t *dialog_one(void)
{
    struct cca_dialog_create c = {.customer_id = (char *)"cust-42",
                                  .name = (char *)"Иван",
                                  .source = (char *)"web"};
    struct cca_dialog_message op = {.id = MSG_3,
                                    .role = "operator",
                                    .content = "Здравствуйте,\tчем помочь?\x01",
                                    .operator_id = OP_A,
                                    .operator_name = "Анна",
                                    .at_ms = T0 + 60000};
    struct cca_dialog_message sys = {.id = MSG_4,
                                     .role = "system",
                                     .content = "Оператор закрыл диалог",
                                     .kind = "notice",
                                     .at_ms = T0 + 120000};
    struct cca_dialog_turn t;
    struct cca_route route;
    json_t *resp = json_pack("{sb}", "ok", 1);
    json_t *doc = cca_dialog_new_doc(D1, &c, T0);

    fill_turn(&t, &route, CCA_AGENT_TECH_SUPPORT, "Не работает интернет",
              "Попробуйте:\n1. Перезагрузить роутер\r\n2. Проверить кабель\n", T0 + 1000);
    step(&doc, cca_dialog_with_turn(doc, &t));
    step(&doc, cca_dialog_with_idempotency(doc, "key-1", "message", "h1", resp, T0 + 1000,
                                           86400000, 10));
    step(&doc, cca_dialog_with_message(doc, &op));
    step(&doc, cca_dialog_with_message(doc, &sys));
    step(&doc, cca_dialog_closed(doc, "resolved", T0 + 120000));
    step(&doc, cca_dialog_with_rating(doc, 4, "Спасибо!\nВсё работает", T0 + 130000));
    json_decref(resp);
    return doc;
}

/* Dialog 2: a customer without a name, sales, an operator without a name; open. */
static json_t *dialog_two(void)
{
    struct cca_dialog_create c = {.customer_id = (char *)"cust-42",
                                  .source = (char *)"api"};
    struct cca_dialog_message op = {.id = MSG_3,
                                    .role = "operator",
                                    .content = "Line1\n\nLine3",
                                    .operator_id = OP_B,
                                    .at_ms = T0 + 3600000 + 5000};
    struct cca_dialog_turn t;
    struct cca_route route;
    json_t *doc = cca_dialog_new_doc(D2, &c, T0 + 3600000);

    fill_turn(&t, &route, CCA_AGENT_SALES, "Сколько стоит?", "990 ₽", T0 + 3600000);
    step(&doc, cca_dialog_with_turn(doc, &t));
    step(&doc, cca_dialog_with_message(doc, &op));
    return doc;
}

static void test_dialog_doc(void **state)
{
    json_t *doc = dialog_one();
    json_t *before = json_deep_copy(doc);
    json_t *out = cca_export_dialog_doc(doc);
    json_t *meta = json_object_get(doc, "metadata");
    json_t *out_meta = json_object_get(out, "metadata");
    json_t *plain;
    json_t *same;
    const char *key;
    json_t *v;

    (void)state;
    assert_non_null(json_object_get(meta, "idempotency"));
    assert_ptr_not_equal(out, doc);
    assert_ptr_not_equal(out_meta, meta);
    assert_null(json_object_get(out_meta, "idempotency"));
    /* The input is untouched, the rest shared. */
    assert_json_equal(doc, before);
    assert_ptr_equal(json_object_get(out, "messages"), json_object_get(doc, "messages"));
    assert_ptr_equal(json_object_get(out_meta, "processing_times"),
                     json_object_get(meta, "processing_times"));
    assert_int_equal(json_object_size(out_meta) + 1, json_object_size(meta));
    json_object_foreach (doc, key, v) {
        if (strcmp(key, "metadata") != 0)
            assert_ptr_equal(json_object_get(out, key), v);
    }
    /* Without records: the document itself. */
    plain = dialog_two();
    same = cca_export_dialog_doc(plain);
    assert_ptr_equal(same, plain);
    assert_int_equal(plain->refcount, 2);
    json_decref(same);
    json_decref(plain);
    json_decref(out);
    json_decref(before);
    json_decref(doc);
}

#define HISTORY_TXT                                                                                             \
    "History of customer cust-42 (Иван Иванов)\n"                                                     \
    "\n"                                                                                                        \
    "=== Dialog " D1 " · 2025-01-15 10:30:00 UTC · closed ===\n"                                              \
    "[2025-01-15 10:30:01 UTC] Customer (Иван): Не работает интернет\n"                   \
    "[2025-01-15 10:30:02 UTC] AI tech_support: Попробуйте:\n"                                        \
    "  1. Перезагрузить роутер\n"                                                            \
    "  2. Проверить кабель\n"                                                                    \
    "[2025-01-15 10:31:00 UTC] Operator Анна: Здравствуйте, чем помочь?\xEF\xBF\xBD\n" \
    "[2025-01-15 10:32:00 UTC] System: Оператор закрыл диалог\n"                            \
    "Closed 2025-01-15 10:32:00 UTC: resolved\n"                                                                \
    "Rating: 4/5 — Спасибо!\n"                                                                         \
    "  Всё работает\n"                                                                               \
    "\n"                                                                                                        \
    "=== Dialog " D2 " · 2025-01-15 11:30:00 UTC · active ===\n"                                              \
    "[2025-01-15 11:30:00 UTC] Customer: Сколько стоит?\n"                                          \
    "[2025-01-15 11:30:01 UTC] AI sales: 990 ₽\n"                                                             \
    "[2025-01-15 11:30:05 UTC] Operator " OP_B ": Line1\n"                                                      \
    "\n"                                                                                                        \
    "  Line3\n"

static void history(struct cca_export_buf *b, enum cca_export_format fmt, json_t *d1,
                    json_t *d2)
{
    cca_export_history_open(b, fmt, "cust-42", "Иван Иванов");
    cca_export_history_dialog(b, fmt, d1, 0);
    cca_export_history_dialog(b, fmt, d2, 1);
    cca_export_history_close(b, fmt);
}

static void test_history_txt(void **state)
{
    json_t *d1 = dialog_one();
    json_t *d2 = dialog_two();
    json_t *before = json_deep_copy(d1);
    struct cca_export_buf b = {0};

    (void)state;
    history(&b, CCA_EXPORT_TXT, d1, d2);
    assert_buf(&b, HISTORY_TXT);
    assert_clean_text(&b);
    assert_json_equal(d1, before);

    /* Title without a name; no dialogs. */
    b.len = 0;
    cca_export_history_open(&b, CCA_EXPORT_TXT, "c-1", NULL);
    cca_export_history_close(&b, CCA_EXPORT_TXT);
    assert_buf(&b, "History of customer c-1\n");
    b.len = 0;
    cca_export_history_open(&b, CCA_EXPORT_TXT, "c-1", "");
    assert_buf(&b, "History of customer c-1\n");

    json_decref(before);
    json_decref(d1);
    json_decref(d2);
    cca_export_buf_cleanup(&b);
}

static void test_history_csv(void **state)
{
    json_t *d1 = dialog_one();
    json_t *d2 = dialog_two();
    struct cca_export_buf b = {0};
    json_t *rows;
    json_t *want;

    (void)state;
    history(&b, CCA_EXPORT_CSV, d1, d2);
    assert_int_equal(
        memcmp(b.data, "dialog_id,timestamp,role,who,operator_id,agent,text\r\n", 53), 0);
    rows = read_csv(b.data, b.len);
    want = json_array();
    (void)json_array_append_new(want, ROW("dialog_id", "timestamp", "role", "who",
                                          "operator_id", "agent", "text"));
    (void)json_array_append_new(want, ROW(D1, "2025-01-15T10:30:01.123Z", "customer",
                                          "Customer (Иван)", "", "tech_support",
                                          "Не работает интернет"));
    (void)json_array_append_new(
        want, ROW(D1, "2025-01-15T10:30:02.123Z", "agent", "AI tech_support", "",
                  "tech_support",
                  "Попробуйте:\n1. Перезагрузить роутер\r\n2. Проверить кабель\n"));
    (void)json_array_append_new(want, ROW(D1, "2025-01-15T10:31:00.123Z", "operator",
                                          "Operator Анна", OP_A, "",
                                          "Здравствуйте,\tчем помочь?\x01"));
    (void)json_array_append_new(want, ROW(D1, "2025-01-15T10:32:00.123Z", "system",
                                          "System", "", "", "Оператор закрыл диалог"));
    (void)json_array_append_new(want, ROW(D2, "2025-01-15T11:30:00.123Z", "customer",
                                          "Customer", "", "sales", "Сколько стоит?"));
    (void)json_array_append_new(want, ROW(D2, "2025-01-15T11:30:01.123Z", "agent",
                                          "AI sales", "", "sales", "990 ₽"));
    (void)json_array_append_new(want, ROW(D2, "2025-01-15T11:30:05.123Z", "operator",
                                          "Operator " OP_B, OP_B, "", "Line1\n\nLine3"));
    assert_json_equal(rows, want);
    json_decref(want);
    json_decref(rows);
    json_decref(d1);
    json_decref(d2);
    cca_export_buf_cleanup(&b);
}

static void test_history_json(void **state)
{
    json_t *d1 = dialog_one();
    json_t *d2 = dialog_two();
    json_t *e1 = cca_export_dialog_doc(d1);
    struct cca_export_buf b = {0};
    json_t *got;
    json_t *want;
    const char *p;

    (void)state;
    history(&b, CCA_EXPORT_JSON, d1, d2);
    assert_int_equal(b.data[0], '[');
    assert_memory_equal(b.data + b.len - 2, "]\n", 2);
    assert_null(strstr(cstr(&b), "idempotency"));
    got = parse_json(cstr(&b));
    want = json_pack("[OO]", e1, d2);
    assert_json_equal(got, want);
    json_decref(want);
    json_decref(got);

    b.len = 0;
    history(&b, CCA_EXPORT_NDJSON, d1, d2);
    p = memchr(b.data, '\n', b.len);
    assert_non_null(p);
    assert_int_equal(b.data[b.len - 1], '\n');
    assert_ptr_equal(memchr(p + 1, '\n', b.len - (size_t)(p + 1 - b.data)),
                     b.data + b.len - 1);
    assert_null(strstr(cstr(&b), "idempotency"));

    /* No dialogs: still an array. */
    b.len = 0;
    cca_export_history_open(&b, CCA_EXPORT_JSON, "c", NULL);
    cca_export_history_close(&b, CCA_EXPORT_JSON);
    assert_buf(&b, "[]\n");

    json_decref(e1);
    json_decref(d1);
    json_decref(d2);
    cca_export_buf_cleanup(&b);
}

/* Text that is not clean: controls, malformed UTF-8, line breaks in names. */
static void test_history_txt_sanitized(void **state)
{
    static const char content[] = "a\x00"
                                  "b\x1b[31mc\x7f"
                                  "d\xc2\x85"
                                  "e\xff"
                                  "f\rg\r\n\r\nh\n\n";
    json_t *doc = json_pack(
        "{ss ss s{ss} s[{ss so ss} {ss ss ss} {ss ss ss} {si}]}", "dialog_id", "x\ny",
        "status", "act\tive", "customer_info", "name", "Ivan\r\nthe\x02Great", "messages",
        "role", "customer", "content", json_stringn_nocheck(content, sizeof(content) - 1),
        "timestamp", "2025-01-15T10:30:00Z", "role", "operator", "operator_id", "op\n1",
        "content", "", "role", "robot", "timestamp", "yesterday", "content", "\t", "x",
        1);
    struct cca_export_buf b = {0};
    json_t *empty = json_object();
    const char *want;

    (void)state;
    assert_non_null(doc);
    cca_export_history_dialog(&b, CCA_EXPORT_TXT, doc, 0);
    assert_buf(&b, "\n=== Dialog x y · ? · act ive ===\n"
                   "[2025-01-15 10:30:00 UTC] Customer (Ivan the\xEF\xBF\xBDGreat): "
                   "a\xEF\xBF\xBD"
                   "b\xEF\xBF\xBD[31mc\xEF\xBF\xBD"
                   "d\xEF\xBF\xBD"
                   "e\xEF\xBF\xBD"
                   "f\n  g\n\n  h\n"
                   "[?] Operator op 1: \n"
                   "[yesterday] robot:  \n"
                   "[?] ?: \n");
    assert_clean_text(&b);

    /* Not a dialog at all: nothing breaks. */
    b.len = 0;
    cca_export_history_dialog(&b, CCA_EXPORT_TXT, empty, 0);
    assert_buf(&b, "\n=== Dialog  · ? ·  ===\n");
    b.len = 0;
    cca_export_history_dialog(&b, CCA_EXPORT_CSV, empty, 0);
    assert_int_equal(b.len, 0);
    /* CSV keeps the bytes as they are: one row per message. */
    cca_export_history_dialog(&b, CCA_EXPORT_CSV, doc, 0);
    want = "\"x\ny\",2025-01-15T10:30:00Z,customer,\"Customer "
           "(Ivan\r\nthe\x02Great)\",,,a\r\n";
    assert_memory_equal(b.data, want, strlen(want)); /* C strings: the NUL ends it */
    assert_memory_equal(b.data + b.len - 2, "\r\n", 2);
    json_decref(empty);
    json_decref(doc);
    cca_export_buf_cleanup(&b);
}

/* ---- profiles ---------------------------------------------------------------- */

#define PROFILE_HEADER                                                                   \
    "kind,id,name,full_name,city,birth_date,position,experience,phone,email,language,"   \
    "status,max_dialogs,created_at\r\n"

static json_t *customer_doc(void)
{
    return parse_json(
        "{\"customer_id\": \"cust-42\", \"full_name\": \"Иванов Иван\","
        " \"city\": \"Москва\", \"birth_date\": \"1990-05-01\","
        " \"position\": null, \"experience\": 5,"
        " \"phone\": \"+7 999 123-45-67\", \"email\": \"ivan@example.com\","
        " \"language\": \"ru\", \"created_at\": \"2025-01-15T10:30:00.123Z\","
        " \"updated_at\": \"2025-01-16T10:30:00.123Z\"}");
}

static json_t *operator_doc(void)
{
    struct cca_operator_reg reg = {
        .name = (char *)"Анна",
        .languages =
            CCA_OPERATOR_LANG_BIT(CCA_LANG_RU) | CCA_OPERATOR_LANG_BIT(CCA_LANG_EN),
        .max_dialogs = 5,
        .profile = parse_json("{\"full_name\": \"Анна Смирнова\", \"city\": \"Казань\","
                              " \"position\": \"Старший оператор\","
                              " \"experience\": \"3 года\"}"),
    };
    json_t *doc = cca_operator_new_doc(OP_A, &reg, HASH, T0);

    json_decref(reg.profile);
    return doc;
}

static void test_profiles_csv(void **state)
{
    json_t *cust = customer_doc();
    json_t *op = operator_doc();
    json_t *op_before = json_deep_copy(op);
    struct cca_export_buf b = {0};
    json_t *rows;

    (void)state;
    cca_export_profile_csv_header(&b);
    assert_buf(&b, PROFILE_HEADER);
    b.len = 0;
    cca_export_profile_row(&b, CCA_EXPORT_CSV, cust, false, 0);
    assert_buf(&b, "customer,cust-42,,Иванов Иван,Москва,1990-05-01,,5,+7 999 123-45-67,"
                   "ivan@example.com,ru,,,2025-01-15T10:30:00.123Z\r\n");
    b.len = 0;
    cca_export_profile_row(&b, CCA_EXPORT_CSV, op, true, 1);
    assert_buf(&b, "operator," OP_A ",Анна,Анна Смирнова,Казань,,Старший оператор,3 года,"
                   ",,\"ru;en\",offline,5,2025-01-15T10:30:00.123Z\r\n");
    assert_null(strstr(cstr(&b), HASH));
    assert_json_equal(op, op_before);

    /* The file reads back, 14 fields a row. */
    b.len = 0;
    cca_export_csv_bom(&b);
    cca_export_profile_csv_header(&b);
    cca_export_profile_row(&b, CCA_EXPORT_CSV, op, true, 0);
    cca_export_profile_row(&b, CCA_EXPORT_CSV, cust, false, 1);
    rows = read_csv(b.data + 3, b.len - 3);
    assert_int_equal(json_array_size(rows), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(json_array_size(json_array_get(rows, i)), 14);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 2), 8)),
                        "+7 999 123-45-67");
    json_decref(rows);

    /* Not an object, or TXT: nothing. */
    b.len = 0;
    cca_export_profile_row(&b, CCA_EXPORT_CSV, NULL, true, 0);
    cca_export_profile_row(&b, CCA_EXPORT_JSON, NULL, false, 0);
    cca_export_profile_row(&b, CCA_EXPORT_TXT, cust, false, 0);
    assert_int_equal(b.len, 0);

    json_decref(op_before);
    json_decref(cust);
    json_decref(op);
    cca_export_buf_cleanup(&b);
}

#define NDJSON_OP "{\"kind\":\"operator\",\"id\":\"" OP_A "\",\"name\":\"Анна\","

static void test_profiles_json(void **state)
{
    json_t *cust = customer_doc();
    json_t *op = operator_doc();
    struct cca_export_buf b = {0};
    json_t *got;
    json_t *item;
    void *it;

    (void)state;
    cca_export_json_open(&b, CCA_EXPORT_JSON);
    cca_export_profile_row(&b, CCA_EXPORT_JSON, op, true, 0);
    cca_export_profile_row(&b, CCA_EXPORT_JSON, cust, false, 1);
    cca_export_json_close(&b, CCA_EXPORT_JSON);
    assert_null(strstr(cstr(&b), HASH));
    assert_null(strstr(cstr(&b), "token_sha256"));
    got = parse_json(cstr(&b));
    assert_int_equal(json_array_size(got), 2);

    item = json_array_get(got, 0);
    it = json_object_iter(item);
    assert_string_equal(json_object_iter_key(it), "kind");
    assert_string_equal(json_object_iter_key(json_object_iter_next(item, it)), "id");
    assert_string_equal(json_string_value(json_object_get(item, "kind")), "operator");
    assert_string_equal(json_string_value(json_object_get(item, "id")), OP_A);
    assert_string_equal(json_string_value(json_object_get(item, "name")), "Анна");
    assert_string_equal(json_string_value(json_object_get(item, "full_name")),
                        "Анна Смирнова");
    assert_string_equal(json_string_value(json_object_get(item, "experience")), "3 года");
    assert_int_equal(json_integer_value(json_object_get(item, "max_dialogs")), 5);
    assert_true(json_is_array(json_object_get(item, "languages")));
    assert_null(json_object_get(item, "operator_id"));
    assert_null(json_object_get(item, "profile"));

    item = json_array_get(got, 1);
    it = json_object_iter(item);
    assert_string_equal(json_object_iter_key(it), "kind");
    assert_string_equal(json_string_value(json_object_get(item, "kind")), "customer");
    assert_string_equal(json_string_value(json_object_get(item, "id")), "cust-42");
    assert_null(json_object_get(item, "customer_id"));
    assert_int_equal(json_integer_value(json_object_get(item, "experience")), 5);
    assert_true(json_is_null(json_object_get(item, "position")));
    assert_string_equal(json_string_value(json_object_get(item, "city")), "Москва");
    assert_int_equal(json_object_size(item), json_object_size(cust) + 1);
    json_decref(got);

    /* NDJSON: one line each. */
    b.len = 0;
    cca_export_profile_row(&b, CCA_EXPORT_NDJSON, op, true, 0);
    cca_export_profile_row(&b, CCA_EXPORT_NDJSON, cust, false, 1);
    assert_null(strstr(cstr(&b), HASH));
    assert_int_equal(b.data[b.len - 1], '\n');
    assert_non_null(memchr(b.data, '\n', b.len - 1));
    assert_int_equal(strncmp(b.data, NDJSON_OP, strlen(NDJSON_OP)), 0);

    json_decref(cust);
    json_decref(op);
    cca_export_buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),      cmocka_unit_test(test_buf),
        cmocka_unit_test(test_csv_fields),   cmocka_unit_test(test_csv_bom),
        cmocka_unit_test(test_dialog_csv),   cmocka_unit_test(test_json_array),
        cmocka_unit_test(test_ndjson),       cmocka_unit_test(test_dialog_doc),
        cmocka_unit_test(test_history_txt),  cmocka_unit_test(test_history_csv),
        cmocka_unit_test(test_history_json), cmocka_unit_test(test_history_txt_sanitized),
        cmocka_unit_test(test_profiles_csv), cmocka_unit_test(test_profiles_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
