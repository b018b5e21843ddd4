/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include "cca/dialog.h"

#include "http_int.h"

static cca_rc create(const char *body, struct cca_dialog_create *c, struct cca_error *err)
{
    memset(c, 0, sizeof(*c));
    return cca_http_parse_create(body, strlen(body), c, err);
}

static void test_create_shapes(void **state)
{
    struct cca_dialog_create c;
    struct cca_error err = {0};

    (void)state;
    /* README shape */
    assert_int_equal(
        create("{\"customer_id\":\"customer_123\",\"initial_message\":\"Привет\"}", &c,
               &err),
        CCA_OK);
    assert_string_equal(c.customer_id, "customer_123");
    assert_null(c.name);
    assert_string_equal(c.initial_message, "Привет");
    assert_string_equal(c.source, "api");
    assert_string_equal(c.priority, "normal");
    cca_dialog_create_cleanup(&c);
    /* seed code shape, unknown fields ignored */
    assert_int_equal(
        create("{\"customer_info\":{\"name\":\"Иван\",\"phone\":\"+7 999\","
               "\"email\":\"i@example.com\",\"customer_id\":\"c7\"},"
               "\"initial_message\":\"\",\"source\":\"web\",\"priority\":\"urgent\","
               "\"extra\":1}",
               &c, &err),
        CCA_OK);
    assert_string_equal(c.name, "Иван");
    assert_string_equal(c.customer_id, "c7");
    assert_null(c.initial_message); /* "" means none */
    assert_string_equal(c.priority, "urgent");
    cca_dialog_create_cleanup(&c);
    assert_int_equal(create("{}", &c, &err), CCA_OK);
    cca_dialog_create_cleanup(&c);
}

static void test_create_rejects(void **state)
{
    static const struct {
        const char *body;
        cca_rc rc;
        const char *field;
    } cases[] = {
        {"", CCA_ERR_PARSE, "empty"},
        {"{\"a\":", CCA_ERR_PARSE, "malformed"},
        {"{\"a\":1,\"a\":2}", CCA_ERR_PARSE, "malformed"},
        {"[1]", CCA_ERR_INVALID, "object"},
        {"{\"customer_info\":{}}", CCA_ERR_INVALID, "customer_info.name"},
        {"{\"customer_info\":{\"name\":\"\"}}", CCA_ERR_INVALID, "customer_info.name"},
        {"{\"customer_info\":{\"name\":5}}", CCA_ERR_INVALID, "customer_info.name"},
        {"{\"customer_info\":{\"name\":\"A\",\"phone\":\"abc\"}}", CCA_ERR_INVALID,
         "phone"},
        {"{\"customer_info\":{\"name\":\"A\",\"email\":\"nope\"}}", CCA_ERR_INVALID,
         "email"},
        {"{\"customer_info\":[]}", CCA_ERR_INVALID, "customer_info"},
        {"{\"priority\":\"asap\"}", CCA_ERR_INVALID, "priority"},
        {"{\"source\":null}", CCA_ERR_INVALID, "source"},
        {"{\"initial_message\":42}", CCA_ERR_INVALID, "initial_message"},
        {"{\"customer_id\":\"a\",\"customer_info\":{\"name\":\"A\",\"customer_id\":\"b\"}"
         "}",
         CCA_ERR_INVALID, "differ"},
    };
    struct cca_dialog_create c;

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        struct cca_error err = {0};

        assert_int_equal(create(cases[i].body, &c, &err), cases[i].rc);
        if (strstr(err.msg, cases[i].field) == NULL)
            fail_msg("case %zu: '%s' does not name '%s'", i, err.msg, cases[i].field);
        cca_dialog_create_cleanup(&c);
    }
}

static void test_lengths_are_code_points(void **state)
{
    char body[16384];
    char name[1024] = "";
    struct cca_dialog_create c;
    struct cca_error err = {0};

    (void)state;
    for (int i = 0; i < 100; i++)
        strcat(name, "Ж"); /* 100 code points, 200 bytes */
    (void)snprintf(body, sizeof(body), "{\"customer_info\":{\"name\":\"%s\"}}", name);
    assert_int_equal(create(body, &c, &err), CCA_OK);
    cca_dialog_create_cleanup(&c);
    strcat(name, "Ж");
    (void)snprintf(body, sizeof(body), "{\"customer_info\":{\"name\":\"%s\"}}", name);
    assert_int_equal(create(body, &c, &err), CCA_ERR_INVALID);
}

static void test_message(void **state)
{
    char *text = NULL;
    struct cca_error err = {0};
    char big[8200] = "{\"message\":\"";

    (void)state;
    assert_int_equal(
        cca_http_parse_message("{\"message\":\"hi\",\"message_type\":\"user\"}",
                               strlen("{\"message\":\"hi\",\"message_type\":\"user\"}"),
                               &text, &err),
        CCA_OK);
    assert_string_equal(text, "hi");
    free(text);
    text = NULL;
    assert_int_equal(cca_http_parse_message("{\"message\":\"  \"}",
                                            strlen("{\"message\":\"  \"}"), &text, &err),
                     CCA_ERR_INVALID);
    /* Blank in Unicode: separators, line/paragraph separators, format characters. */
    {
        static const char *const blanks[] = {
            "\\u00a0\\u00a0", "\\u3000",        "\\u2028",        "\\u2029", "\\u200b",
            "\\ufeff",        "\\u2003 \\t\\n", "\\u180e\\u200d", "\\u034f",
        };

        for (size_t i = 0; i < CCA_ARRAY_SIZE(blanks); i++) {
            char body[128];

            (void)snprintf(body, sizeof(body), "{\"message\":\"%s\"}", blanks[i]);
            text = NULL;
            if (cca_http_parse_message(body, strlen(body), &text, &err) !=
                CCA_ERR_INVALID)
                fail_msg("%s was accepted as a message", body);
            assert_null(text);
            assert_non_null(strstr(err.msg, "blank"));
        }
    }
    /* ... and one visible character among them is a message. */
    assert_int_equal(cca_http_parse_message("{\"message\":\"\\u3000?\\u200b\"}",
                                            strlen("{\"message\":\"\\u3000?\\u200b\"}"),
                                            &text, &err),
                     CCA_OK);
    free(text);
    text = NULL;
    assert_int_equal(
        cca_http_parse_message("{\"message\":\"x\",\"message_type\":\"system\"}",
                               strlen("{\"message\":\"x\",\"message_type\":\"system\"}"),
                               &text, &err),
        CCA_ERR_INVALID);
    assert_int_equal(cca_http_parse_message("{}", strlen("{}"), &text, &err),
                     CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "message"));
    for (int i = 0; i < 2001; i++)
        strcat(big, "я");
    strcat(big, "\"}");
    assert_int_equal(cca_http_parse_message(big, strlen(big), &text, &err),
                     CCA_ERR_INVALID);
    assert_null(text);
}

static void test_close(void **state)
{
    char *reason = NULL;
    struct cca_error err = {0};

    (void)state;
    assert_int_equal(cca_http_parse_close("", strlen(""), NULL, &reason, &err), CCA_OK);
    assert_string_equal(reason, "manual");
    free(reason);
    assert_int_equal(cca_http_parse_close("", strlen(""), "from_query", &reason, &err),
                     CCA_OK);
    assert_string_equal(reason, "from_query");
    free(reason);
    assert_int_equal(cca_http_parse_close("{\"reason\":\"body\"}",
                                          strlen("{\"reason\":\"body\"}"), "q", &reason,
                                          &err),
                     CCA_OK);
    assert_string_equal(reason, "body");
    free(reason);
    assert_int_equal(cca_http_parse_close("{\"reason\":\"\"}",
                                          strlen("{\"reason\":\"\"}"), NULL, &reason,
                                          &err),
                     CCA_ERR_INVALID);
}

static cca_rc parse_s(cca_rc (*fn)(const char *, size_t, char **, struct cca_error *),
                      const char *body, char **ret, struct cca_error *err)
{
    *ret = NULL;
    return fn(body, strlen(body), ret, err);
}

static void test_reply(void **state)
{
    struct cca_error err = {0};
    char *text = NULL;

    (void)state;
    assert_int_equal(
        parse_s(cca_http_parse_reply, "{\"message\":\"Здравствуйте!\"}", &text, &err),
        CCA_OK);
    assert_string_equal(text, "Здравствуйте!");
    free(text);
    assert_int_equal(
        parse_s(cca_http_parse_reply, "{\"message\":\" \\u00a0\"}", &text, &err),
        CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "blank"));
    assert_int_equal(parse_s(cca_http_parse_reply, "{}", &text, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "message"));
    assert_int_equal(parse_s(cca_http_parse_reply, "{\"message\":7}", &text, &err),
                     CCA_ERR_INVALID);
    assert_int_equal(parse_s(cca_http_parse_reply, "", &text, &err), CCA_ERR_PARSE);
    assert_int_equal(parse_s(cca_http_parse_reply, "{\"message\":", &text, &err),
                     CCA_ERR_PARSE);
    assert_null(text);
}

static void test_operator_status(void **state)
{
    static const char *const bad[] = {"{}", "{\"status\":\"away\"}", "{\"status\":1}",
                                      "{\"status\":null}", "[]"};
    enum cca_operator_status st = CCA_OPERATOR_OFFLINE;
    struct cca_error err = {0};

    (void)state;
    assert_int_equal(cca_http_parse_operator_status("{\"status\":\"available\"}",
                                                    strlen("{\"status\":\"available\"}"),
                                                    &st, &err),
                     CCA_OK);
    assert_int_equal(st, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_http_parse_operator_status("{\"status\":\"busy\"}",
                                                    strlen("{\"status\":\"busy\"}"), &st,
                                                    &err),
                     CCA_OK);
    assert_int_equal(st, CCA_OPERATOR_BUSY);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bad); i++) {
        st = CCA_OPERATOR_BUSY;
        assert_int_equal(
            cca_http_parse_operator_status(bad[i], strlen(bad[i]), &st, &err),
            CCA_ERR_INVALID);
        assert_int_equal(st, CCA_OPERATOR_BUSY); /* untouched */
    }
    assert_int_equal(cca_http_parse_operator_status("", 0, &st, &err), CCA_ERR_PARSE);
}

static cca_rc handoff(const char *body, struct cca_http_handoff *h, struct cca_error *err)
{
    memset(h, 0, sizeof(*h));
    return cca_http_parse_handoff(body, strlen(body), h, err);
}

static void test_handoff(void **state)
{
    static const struct {
        const char *body;
        const char *field;
    } bad[] = {
        {"{}", "to"},
        {"{\"to\":\"robot\"}", "to"},
        {"{\"to\":\"human\",\"reason\":\"\"}", "reason"},
        {"{\"to\":\"ai\",\"agent\":\"router\"}", "agent"},
        {"{\"to\":\"human\",\"agent\":\"sales\"}", "agent"},
        {"{\"to\":\"operator\"}", "operator_id"},
        {"{\"to\":\"operator\",\"operator_id\":\"nope\"}", "operator_id"},
        {"{\"to\":\"ai\",\"operator_id\":\"9b2f8c1e-4a7d-4c3b-8e21-5f6a7b8c9d0e\"}",
         "operator_id"},
    };
    struct cca_http_handoff h;
    struct cca_error err = {0};

    (void)state;
    assert_int_equal(
        handoff("{\"to\":\"human\",\"reason\":\"customer asked\"}", &h, &err), CCA_OK);
    assert_int_equal(h.to, CCA_OWNER_QUEUE);
    assert_string_equal(h.reason, "customer asked");
    assert_int_equal(h.agent, CCA_AGENT_NONE);
    cca_http_handoff_cleanup(&h);
    assert_null(h.reason);
    assert_int_equal(handoff("{\"to\":\"ai\",\"agent\":\"sales\"}", &h, &err), CCA_OK);
    assert_int_equal(h.to, CCA_OWNER_AGENT);
    assert_int_equal(h.agent, CCA_AGENT_SALES);
    assert_null(h.reason);
    cca_http_handoff_cleanup(&h);
    assert_int_equal(handoff("{\"to\":\"ai\",\"agent\":null}", &h, &err), CCA_OK);
    assert_int_equal(h.agent, CCA_AGENT_NONE);
    cca_http_handoff_cleanup(&h);
    assert_int_equal(handoff("{\"to\":\"operator\",\"operator_id\":\"9B2F8C1E-4A7D-4C3B-"
                             "8E21-5F6A7B8C9D0E\"}",
                             &h, &err),
                     CCA_OK);
    assert_int_equal(h.to, CCA_OWNER_OPERATOR);
    assert_string_equal(h.operator_id, "9b2f8c1e-4a7d-4c3b-8e21-5f6a7b8c9d0e");
    cca_http_handoff_cleanup(&h);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bad); i++) {
        assert_int_equal(handoff(bad[i].body, &h, &err), CCA_ERR_INVALID);
        if (strstr(err.msg, bad[i].field) == NULL)
            fail_msg("case %zu: '%s' does not name '%s'", i, err.msg, bad[i].field);
    }
    assert_int_equal(handoff("{\"to\":", &h, &err), CCA_ERR_PARSE);
}

static void test_rating(void **state)
{
    static const char *const bad[] = {
        "{}",
        "{\"score\":0}",
        "{\"score\":6}",
        "{\"score\":4.0}",
        "{\"score\":\"5\"}",
        "{\"score\":true}",
        "{\"score\":5,\"comment\":5}",
    };
    struct cca_error err = {0};
    char *comment = NULL;
    int score = 0;

    (void)state;
    assert_int_equal(
        cca_http_parse_rating("{\"score\":5,\"comment\":\"Спасибо\"}",
                              strlen("{\"score\":5,\"comment\":\"Спасибо\"}"), &score,
                              &comment, &err),
        CCA_OK);
    assert_int_equal(score, 5);
    assert_string_equal(comment, "Спасибо");
    free(comment);
    comment = NULL;
    assert_int_equal(cca_http_parse_rating("{\"score\":1,\"comment\":null}",
                                           strlen("{\"score\":1,\"comment\":null}"),
                                           &score, &comment, &err),
                     CCA_OK);
    assert_int_equal(score, 1);
    assert_null(comment);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bad); i++) {
        assert_int_equal(
            cca_http_parse_rating(bad[i], strlen(bad[i]), &score, &comment, &err),
            CCA_ERR_INVALID);
        assert_null(comment);
    }
}

static void test_bool(void **state)
{
    bool b = false;

    (void)state;
    assert_true(cca_http_parse_bool("YES", &b) && b);
    assert_true(cca_http_parse_bool("0", &b) && !b);
    assert_false(cca_http_parse_bool("maybe", &b));
}

/*
 * The rc -> status/code table of http_json.c, row by row, in enum order. A new
 * cca_rc without a row here fails the test: decide its status and code here
 * and in http_json.c (and openapi.yaml) together.
 */
static const struct {
    cca_rc rc;
    unsigned status;
    const char *code;
} status_rows[] = {
    {CCA_OK, 200, "ok"},
    {CCA_ERR_INVALID, 422, "validation_error"},
    {CCA_ERR_PARSE, 400, "invalid_json"},
    {CCA_ERR_NOT_FOUND, 404, "not_found"},
    {CCA_ERR_CONFLICT, 409, "conflict"},
    {CCA_ERR_LIMIT, 409, "limit_reached"},
    {CCA_ERR_MISMATCH, 422, "idempotency_key_reused"},
    {CCA_ERR_TOO_LARGE, 413, "body_too_large"},
    {CCA_ERR_IO, 503, "storage_unavailable"},
    {CCA_ERR_NO_SPACE, 507, "insufficient_storage"},
    {CCA_ERR_UPSTREAM, 502, "upstream_error"},
    {CCA_ERR_TIMEOUT, 504, "timeout"},
    {CCA_ERR_UNAVAILABLE, 503, "unavailable"},
    {CCA_ERR_INTERNAL, 500, "internal"},
    {CCA_ERR_FORBIDDEN, 403, "forbidden"},
};

static void test_status_table(void **state)
{
    static const int outside[] = {-1, CCA_ERR__LAST, 999};

    (void)state;
    if (CCA_ARRAY_SIZE(status_rows) != CCA_ERR__LAST)
        fail_msg("%zu expected rows for %d cca_rc values: every rc needs one",
                 CCA_ARRAY_SIZE(status_rows), (int)CCA_ERR__LAST);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(status_rows); i++) {
        cca_rc rc = status_rows[i].rc;
        unsigned status = cca_http_status_of(rc);
        const char *code = cca_http_code_of(rc);

        if ((size_t)rc != i)
            fail_msg("row %zu is for rc %d (%s): rows follow the enum", i, (int)rc,
                     cca_strerror(rc));
        if (status != status_rows[i].status)
            fail_msg("rc %s: status %u, expected %u", cca_strerror(rc), status,
                     status_rows[i].status);
        if (code == NULL || strcmp(code, status_rows[i].code) != 0)
            fail_msg("rc %s: code '%s', expected '%s'", cca_strerror(rc),
                     code ? code : "(null)", status_rows[i].code);
    }
    /* Values outside the enum are a bug of the caller: 500 "internal". */
    for (size_t i = 0; i < CCA_ARRAY_SIZE(outside); i++) {
        assert_int_equal(cca_http_status_of((cca_rc)outside[i]), 500);
        assert_string_equal(cca_http_code_of((cca_rc)outside[i]), "internal");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_shapes),
        cmocka_unit_test(test_create_rejects),
        cmocka_unit_test(test_lengths_are_code_points),
        cmocka_unit_test(test_message),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_reply),
        cmocka_unit_test(test_operator_status),
        cmocka_unit_test(test_handoff),
        cmocka_unit_test(test_rating),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_status_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
