/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <jansson.h>

#include "cca/dialog.h"

static json_t *new_doc(void)
{
    struct cca_dialog_create c = {.customer_id = (char *)"c-1",
                                  .name = (char *)"Иван",
                                  .priority = (char *)"high",
                                  .source = (char *)"web"};

    return cca_dialog_new_doc("3f1c2a9e-8d4b-4f0e-9a51-2b7c6d8e9f10", &c, 1700000000123);
}

static void fill_turn(struct cca_dialog_turn *t, struct cca_route *route,
                      enum cca_agent agent, enum cca_agent previous)
{
    memset(route, 0, sizeof(*route));
    route->agent = agent;
    route->method = CCA_ROUTE_KEYWORD;
    route->confidence = 0.9;
    memset(t, 0, sizeof(*t));
    t->customer_msg_id = "11111111-1111-4111-8111-111111111111";
    t->agent_msg_id = "22222222-2222-4222-8222-222222222222";
    t->text = "Какие у вас тарифы?";
    t->route = route;
    t->agent = agent;
    t->previous = previous;
    t->handoff_reason = previous != CCA_AGENT_NONE ? "keyword: sales:тариф" : NULL;
    t->reply = "Базовый 990 ₽";
    t->tokens = 42;
    t->latency_ms = 7;
    t->received_ms = 1700000001000;
    t->replied_ms = 1700000002000;
    t->processing_s = 1.0;
}

static void test_new_doc(void **state)
{
    json_t *doc = new_doc();

    (void)state;
    assert_int_equal(
        cca_dialog_validate(doc, "3f1c2a9e-8d4b-4f0e-9a51-2b7c6d8e9f10", NULL), CCA_OK);
    assert_string_equal(cca_dialog_get_str(doc, "status"), "active");
    assert_string_equal(cca_dialog_get_str(doc, "created_at"),
                        "2023-11-14T22:13:20.123Z");
    assert_int_equal(cca_dialog_get_agent(doc), CCA_AGENT_NONE);
    assert_int_equal(cca_dialog_message_count(doc), 0);
    json_decref(doc);
}

static void test_turns_are_copy_on_write(void **state)
{
    struct cca_dialog_turn t;
    struct cca_route route;
    json_t *doc = new_doc();
    json_t *d1;
    json_t *d2;
    json_t *handoffs;

    (void)state;
    fill_turn(&t, &route, CCA_AGENT_TECH_SUPPORT, CCA_AGENT_NONE);
    d1 = cca_dialog_with_turn(doc, &t);
    assert_int_equal(cca_dialog_message_count(doc), 0); /* the input is untouched */
    assert_int_equal(cca_dialog_message_count(d1), 2);
    assert_string_equal(cca_dialog_get_str(d1, "assigned_agent"), "tech_support");

    fill_turn(&t, &route, CCA_AGENT_SALES, CCA_AGENT_TECH_SUPPORT);
    d2 = cca_dialog_with_turn(d1, &t);
    assert_int_equal(cca_dialog_message_count(d1), 2);
    assert_int_equal(cca_dialog_message_count(d2), 4);
    assert_string_equal(cca_dialog_get_str(d2, "assigned_agent"), "tech_support");
    assert_string_equal(cca_dialog_get_str(d2, "current_agent"), "sales");
    handoffs = json_object_get(json_object_get(d2, "metadata"), "handoffs");
    assert_int_equal(json_array_size(handoffs), 1);
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(d1, "metadata"), "handoffs")), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(handoffs, 0), "from")),
        "tech_support");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d2, "metadata"),
                                                        "total_tokens")),
                     84);
    assert_int_equal(cca_dialog_validate(d2, NULL, NULL), CCA_OK);
    json_decref(doc);
    json_decref(d1);
    json_decref(d2);
}

static void test_escalation_and_close(void **state)
{
    struct cca_dialog_turn t;
    struct cca_route route;
    json_t *doc = new_doc();
    json_t *d1;
    json_t *d2;
    json_t *closed;
    json_t *summary;
    json_t *view;

    (void)state;
    fill_turn(&t, &route, CCA_AGENT_SUPERVISOR, CCA_AGENT_NONE);
    d1 = cca_dialog_with_turn(doc, &t);
    assert_int_equal(cca_dialog_get_status(d1), CCA_DIALOG_ESCALATED);
    fill_turn(&t, &route, CCA_AGENT_SALES, CCA_AGENT_SUPERVISOR);
    d2 = cca_dialog_with_turn(d1, &t);
    assert_int_equal(cca_dialog_get_status(d2),
                     CCA_DIALOG_ESCALATED); /* stays escalated */
    closed = cca_dialog_closed(d2, "problem_resolved", 1700000000123 + 15 * 60000);
    assert_int_equal(cca_dialog_get_status(d2), CCA_DIALOG_ESCALATED);
    assert_int_equal(cca_dialog_get_status(closed), CCA_DIALOG_CLOSED);
    summary = json_object_get(closed, "summary");
    assert_int_equal(json_integer_value(json_object_get(summary, "total_messages")), 4);
    assert_int_equal(json_integer_value(json_object_get(summary, "total_tokens")), 84);
    assert_true(json_real_value(json_object_get(summary, "duration_minutes")) == 15.0);
    assert_non_null(strstr(json_string_value(json_object_get(summary, "resolution")),
                           "supervisor -> sales"));
    view = cca_dialog_close_view(closed);
    assert_string_equal(json_string_value(json_object_get(view, "reason")),
                        "problem_resolved");
    json_decref(view);
    view = cca_dialog_status_view(closed);
    assert_string_equal(json_string_value(json_object_get(view, "customer_name")),
                        "Иван");
    assert_int_equal(json_integer_value(json_object_get(view, "message_count")), 4);
    json_decref(view);
    json_decref(doc);
    json_decref(d1);
    json_decref(d2);
    json_decref(closed);
}

static void test_dump_and_history(void **state)
{
    struct cca_dialog_turn t;
    struct cca_route route;
    json_t *doc = new_doc();
    json_t *d1;
    json_t *hist;
    char *bytes;
    size_t len;

    (void)state;
    fill_turn(&t, &route, CCA_AGENT_SALES, CCA_AGENT_NONE);
    d1 = cca_dialog_with_turn(doc, &t);
    bytes = cca_dialog_dump(d1, &len);
    assert_int_equal(bytes[len - 1], '\n');
    assert_non_null(strstr(bytes, "Какие у вас тарифы?")); /* Cyrillic unescaped */
    assert_non_null(strstr(bytes, "\n  \"dialog_id\""));   /* 2-space indent */
    hist = cca_dialog_llm_history(d1, 20);
    assert_int_equal(json_array_size(hist), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(hist, 0), "role")), "user");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(hist, 1), "role")), "assistant");
    json_decref(hist);
    hist = cca_dialog_llm_history(d1, 1);
    assert_int_equal(json_array_size(hist), 1);
    json_decref(hist);
    free(bytes);
    json_decref(doc);
    json_decref(d1);
}

static void test_validate_rejects(void **state)
{
    json_t *doc = new_doc();
    struct cca_error err = {0};

    (void)state;
    assert_int_equal(
        cca_dialog_validate(doc, "00000000-0000-4000-8000-000000000000", &err),
        CCA_ERR_INVALID);
    (void)json_object_set_new(doc, "status", json_string("weird"));
    assert_int_equal(cca_dialog_validate(doc, NULL, &err), CCA_ERR_INVALID);
    (void)json_object_set_new(doc, "status", json_string("active"));
    (void)json_object_set_new(doc, "dialog_id", json_string("../../etc/passwd"));
    assert_int_equal(cca_dialog_validate(doc, NULL, &err), CCA_ERR_INVALID);
    json_decref(doc);
}

static void test_ids_and_time(void **state)
{
    char buf[37];
    char ts[CCA_TIME_LEN];
    int64_t ms = 0;

    (void)state;
    assert_true(cca_uuid_canonical("3F1C2A9E-8D4B-4F0E-9A51-2B7C6D8E9F10", buf));
    assert_string_equal(buf, "3f1c2a9e-8d4b-4f0e-9a51-2b7c6d8e9f10");
    assert_false(cca_uuid_canonical("{3f1c2a9e-8d4b-4f0e-9a51-2b7c6d8e9f10}", buf));
    assert_false(cca_uuid_canonical("../3f1c2a9e-8d4b-4f0e-9a51-2b7c6d8e9f", buf));
    assert_false(cca_uuid_canonical("", buf));
    cca_time_format(1700000000123, ts);
    assert_string_equal(ts, "2023-11-14T22:13:20.123Z");
    assert_true(cca_time_parse(ts, &ms));
    assert_int_equal(ms, 1700000000123);
    assert_true(cca_time_parse("2023-11-14T22:13:20Z", &ms));
    assert_int_equal(ms, 1700000000000);
    assert_false(cca_time_parse("2023-11-14T22:13:20", &ms));
}

/* Idempotency records: found while younger than the TTL, pruned after it, copy-on-write.
 */
static void test_idempotency_records(void **state)
{
    const int64_t t0 = 1700000000000, ttl = 60000;
    json_t *doc = new_doc();
    json_t *resp = json_pack("{s:s}", "response", "first");
    json_t *a =
        cca_dialog_with_idempotency(doc, "k1", "message", "h1", resp, t0, ttl, 100);
    json_t *b;
    json_t *rec;

    (void)state;
    assert_null(cca_dialog_find_idempotency(doc, "k1", "message", t0, ttl));
    rec = cca_dialog_find_idempotency(a, "k1", "message", t0 + ttl - 1, ttl);
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(rec, "request_hash")), "h1");
    assert_true(json_equal(json_object_get(rec, "response"), resp));
    assert_null(cca_dialog_find_idempotency(a, "k1", "create", t0, ttl));
    assert_null(cca_dialog_find_idempotency(a, "k2", "message", t0, ttl));
    assert_null(cca_dialog_find_idempotency(a, "k1", "message", t0 + ttl, ttl));
    /* Adding after the TTL drops the old record; the older document keeps it. */
    b = cca_dialog_with_idempotency(a, "k2", "create", "h2", resp, t0 + ttl, ttl, 100);
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(b, "metadata"), "idempotency")),
        1);
    assert_non_null(cca_dialog_find_idempotency(b, "k2", "create", t0 + ttl, ttl));
    assert_non_null(cca_dialog_find_idempotency(a, "k1", "message", t0, ttl));
    assert_int_equal(cca_dialog_validate(b, NULL, NULL), CCA_OK);
    json_decref(b);
    json_decref(a);
    json_decref(resp);
    json_decref(doc);
}

/* At most max_records per dialog: a full list keeps its newest half, then grows. */
static void test_idempotency_cap(void **state)
{
    const int64_t t0 = 1700000000000, ttl = 60000;
    json_t *doc = new_doc();
    json_t *resp = json_pack("{s:s}", "response", "r");
    size_t peak = 0;

    (void)state;
    for (int i = 0; i < 50; i++) {
        char key[16];
        json_t *next;
        size_t n;

        (void)snprintf(key, sizeof(key), "k%d", i);
        next =
            cca_dialog_with_idempotency(doc, key, "message", "h", resp, t0 + i, ttl, 8);
        json_decref(doc);
        doc = next;
        n = json_array_size(
            json_object_get(json_object_get(doc, "metadata"), "idempotency"));
        assert_true(n >= 1 && n <= 8);
        peak = n > peak ? n : peak;
        /* The newest key is always there. */
        assert_non_null(cca_dialog_find_idempotency(doc, key, "message", t0 + i, ttl));
    }
    assert_int_equal(peak, 8);
    /* After 50 adds with a cap of 8: the newest 4 survive the last cut, then more. */
    assert_non_null(cca_dialog_find_idempotency(doc, "k49", "message", t0 + 49, ttl));
    assert_null(cca_dialog_find_idempotency(doc, "k40", "message", t0 + 49, ttl));
    json_decref(resp);
    json_decref(doc);
}

/* A dialog an operator held is closed "by operator <name>", and keeps its owner. */
static void test_closed_by_operator(void **state)
{
    json_t *doc = new_doc();
    struct cca_dialog_transition t = {.event = CCA_OWNER_EV_ASSIGN,
                                      .from = CCA_OWNER_AGENT,
                                      .to = CCA_OWNER_OPERATOR,
                                      .operator_id =
                                          "9b2f8c1e-4a7d-4c3b-8e21-5f6a7b8c9d0e",
                                      .operator_name = "Анна",
                                      .actor = "customer",
                                      .reason = "customer_request",
                                      .at_ms = 1700000001000};
    struct cca_dialog_message m = {.id = "1f1c2a9e-8d4b-4f0e-9a51-2b7c6d8e9f11",
                                   .role = "customer",
                                   .content = "Позовите оператора",
                                   .at_ms = 1700000000500};
    json_t *d1 = cca_dialog_with_message(doc, &m);
    json_t *d2 = cca_dialog_with_transition(d1, &t);
    json_t *d3 = cca_dialog_closed(d2, "resolved", 1700000002000);
    const char *res =
        json_string_value(json_object_get(json_object_get(d3, "summary"), "resolution"));

    (void)state;
    assert_non_null(res);
    assert_non_null(strstr(res, "Closed (resolved) by operator Анна after 1 messages"));
    assert_string_equal(cca_dialog_status_name(cca_dialog_get_status(d2)), "assigned");
    assert_string_equal(cca_dialog_status_name(cca_dialog_get_status(d3)), "closed");
    assert_int_equal(cca_dialog_get_owner(d3, NULL), CCA_OWNER_OPERATOR);
    json_decref(d3);
    json_decref(d2);
    json_decref(d1);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_doc),
        cmocka_unit_test(test_idempotency_cap),
        cmocka_unit_test(test_turns_are_copy_on_write),
        cmocka_unit_test(test_escalation_and_close),
        cmocka_unit_test(test_dump_and_history),
        cmocka_unit_test(test_validate_rejects),
        cmocka_unit_test(test_ids_and_time),
        cmocka_unit_test(test_idempotency_records),
        cmocka_unit_test(test_closed_by_operator),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
