/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <math.h>

#include <jansson.h>

#include "cca/dialog.h"
#include "cca/record.h"

/*
 * Every expected value below is worked out by hand from the times the scenario
 * sets (T0 plus whole offsets), never read back from the code under test.
 */
#define T0     1700000000000LL /* 2023-11-14T22:13:20.000Z */
#define SEC    1000LL
#define DAY    (86400LL * SEC)
#define DLG_1  "d1111111-1111-4111-8111-111111111111"
#define DLG_2  "d2222222-2222-4222-8222-222222222222"
#define DLG_3  "d3333333-3333-4333-8333-333333333333"
#define DLG_4  "d4444444-4444-4444-8444-444444444444"
#define OP_A   "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
#define OP_B   "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
#define OP_NOT "cccccccc-cccc-4ccc-8ccc-cccccccccccc"

/* ---- building documents with the real builders ----------------------------------- */

static json_t *new_doc(const char *id, const char *customer_id, const char *name,
                       const char *source, int64_t created_ms)
{
    struct cca_dialog_create c = {.customer_id = (char *)customer_id,
                                  .name = (char *)name,
                                  .priority = (char *)"normal",
                                  .source = (char *)source};

    return cca_dialog_new_doc(id, &c, created_ms);
}

/* Each helper below takes @doc (steals it) and returns the next version. */
static json_t *turn(json_t *doc, enum cca_agent agent, enum cca_agent previous,
                    int64_t received_ms, int64_t replied_ms, long tokens)
{
    struct cca_route route;
    struct cca_dialog_turn t;
    json_t *next;

    memset(&route, 0, sizeof(route));
    route.agent = agent;
    route.method = CCA_ROUTE_KEYWORD;
    route.best = CCA_AGENT_NONE;
    memset(&t, 0, sizeof(t));
    t.customer_msg_id = "11111111-1111-4111-8111-111111111111";
    t.agent_msg_id = "22222222-2222-4222-8222-222222222222";
    t.text = "Помогите";
    t.route = &route;
    t.agent = agent;
    t.previous = previous;
    t.handoff_reason = previous != CCA_AGENT_NONE ? "routing" : NULL;
    t.reply = "Конечно";
    t.tokens = tokens;
    t.received_ms = received_ms;
    t.replied_ms = replied_ms;
    next = cca_dialog_with_turn(doc, &t);
    json_decref(doc);
    return next;
}

static json_t *transition(json_t *doc, enum cca_owner_event ev, enum cca_owner from,
                          enum cca_owner to, const char *op, const char *prev,
                          const char *reason, int64_t at_ms)
{
    struct cca_dialog_transition t = {
        .event = ev,
        .from = from,
        .to = to,
        .operator_id = op,
        .operator_name = op != NULL ? "Анна" : NULL,
        .prev_operator_id = prev,
        .actor = "system",
        .reason = reason,
        .requeued = from == CCA_OWNER_OPERATOR && to == CCA_OWNER_QUEUE,
        .queue_seq = to == CCA_OWNER_QUEUE ? 1 : 0,
        .at_ms = at_ms,
    };
    json_t *next = cca_dialog_with_transition(doc, &t);

    json_decref(doc);
    return next;
}

static json_t *message(json_t *doc, const char *role, const char *op, int64_t at_ms)
{
    struct cca_dialog_message m = {
        .id = "33333333-3333-4333-8333-333333333333",
        .role = role,
        .content = "текст",
        .operator_id = op,
        .operator_name = op != NULL ? "Анна" : NULL,
        .kind = strcmp(role, "system") == 0 ? "notice" : NULL,
        .at_ms = at_ms,
    };
    json_t *next = cca_dialog_with_message(doc, &m);

    json_decref(doc);
    return next;
}

static json_t *closed(json_t *doc, const char *reason, int64_t at_ms)
{
    json_t *next = cca_dialog_closed(doc, reason, at_ms);

    json_decref(doc);
    return next;
}

static json_t *rated(json_t *doc, int score, int64_t at_ms)
{
    json_t *next = cca_dialog_with_rating(doc, score, NULL, at_ms);

    json_decref(doc);
    return next;
}

/*
 * Scenario 1, AI only: two turns (tech_support then sales), closed.
 * first response: customer at T0+1s, tech_support replies at T0+3.5s -> 2500 ms.
 */
static json_t *doc_ai_only(void)
{
    json_t *d = new_doc(DLG_1, "cust-1", "Иван", "web", T0);

    d = turn(d, CCA_AGENT_TECH_SUPPORT, CCA_AGENT_NONE, T0 + 1 * SEC, T0 + 3500, 100);
    d = turn(d, CCA_AGENT_SALES, CCA_AGENT_TECH_SUPPORT, T0 + 10 * SEC, T0 + 12 * SEC,
             50);
    return closed(d, "resolved", T0 + 60 * SEC);
}

/*
 * Scenario 2, the whole human path, created a day after scenario 1:
 *   +1s customer, +2s tech_support (first response 1000 ms)
 *   +5s   escalation agent -> queue, customer_request
 *   +35s  assign to A (queue wait 30000 ms)
 *   +40s  customer; +50s A (A's first reply 15000, first human 45000); +60s A
 *   +100s requeue from A; +130s assign to B; +131s B (B's first reply 1000)
 *   +200s closed (handle 200 - 35 = 165000 ms); +210s rated 4 (B, the last owner)
 */
#define C2 (T0 + DAY)
static json_t *doc_human(void)
{
    json_t *d = new_doc(DLG_2, "cust-2", "Пётр", "telegram", C2);

    d = turn(d, CCA_AGENT_TECH_SUPPORT, CCA_AGENT_NONE, C2 + 1 * SEC, C2 + 2 * SEC, 30);
    d = transition(d, CCA_OWNER_EV_ENQUEUE, CCA_OWNER_AGENT, CCA_OWNER_QUEUE, NULL, NULL,
                   "customer_request", C2 + 5 * SEC);
    d = message(d, "system", NULL, C2 + 5 * SEC);
    d = transition(d, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR, OP_A,
                   NULL, "backlog", C2 + 35 * SEC);
    d = message(d, "customer", NULL, C2 + 40 * SEC);
    d = message(d, "operator", OP_A, C2 + 50 * SEC);
    d = message(d, "operator", OP_A, C2 + 60 * SEC);
    d = transition(d, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR, CCA_OWNER_QUEUE, NULL,
                   OP_A, "reply_timeout", C2 + 100 * SEC);
    d = transition(d, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR, OP_B,
                   NULL, "backlog", C2 + 130 * SEC);
    d = message(d, "operator", OP_B, C2 + 131 * SEC);
    d = closed(d, "resolved", C2 + 200 * SEC);
    return rated(d, 4, C2 + 210 * SEC);
}

/*
 * Scenario 3, open: the supervisor answers (+1s/+2s, first response 1000 ms), and
 * A takes it straight from the agents at +3s (queue wait 0); A has not answered.
 */
#define C3 (T0 + 2 * DAY)
static json_t *doc_open_assigned(void)
{
    json_t *d = new_doc(DLG_3, "cust-1", "Иван", "web", C3);

    d = turn(d, CCA_AGENT_SUPERVISOR, CCA_AGENT_NONE, C3 + 1 * SEC, C3 + 2 * SEC, 20);
    return transition(d, CCA_OWNER_EV_ASSIGN, CCA_OWNER_AGENT, CCA_OWNER_OPERATOR, OP_A,
                      NULL, "supervisor", C3 + 3 * SEC);
}

static void record_of(json_t *doc, struct cca_record *ret)
{
    assert_int_equal(cca_dialog_validate(doc, NULL, NULL), CCA_OK); /* realistic */
    cca_record_of(doc, ret);
    json_decref(doc);
}

/* ---- cca_record_of ------------------------------------------------------------------
 */

static void test_ai_only_contained(void **state)
{
    struct cca_record r;

    (void)state;
    record_of(doc_ai_only(), &r);
    assert_string_equal(r.dialog_id, DLG_1);
    assert_string_equal(r.customer_id, "cust-1");
    assert_string_equal(r.customer_name, "Иван");
    assert_string_equal(r.channel, "web");
    assert_string_equal(r.close_reason, "resolved");
    assert_int_equal(r.created_ms, T0);
    assert_int_equal(r.closed_ms, T0 + 60 * SEC);
    assert_int_equal(r.status, CCA_DIALOG_CLOSED);
    assert_int_equal(r.agents, (1u << CCA_AGENT_TECH_SUPPORT) | (1u << CCA_AGENT_SALES));
    assert_int_equal(r.last_agent, CCA_AGENT_SALES);
    assert_int_equal(r.messages, 4);
    assert_int_equal(r.tokens, 150);
    assert_int_equal(r.tokens_by_agent[CCA_AGENT_TECH_SUPPORT], 100);
    assert_int_equal(r.tokens_by_agent[CCA_AGENT_SALES], 50);
    assert_int_equal(r.tokens_by_agent[CCA_AGENT_SUPERVISOR], 0);
    assert_int_equal(r.first_response_ms, 2500);
    assert_int_equal(r.escalated_ms, 0);
    assert_int_equal(r.trigger, CCA_TRIGGER_NONE);
    assert_int_equal(r.queue_wait_ms, -1);
    assert_int_equal(r.first_human_ms, -1);
    assert_int_equal(r.handle_ms, -1);
    assert_false(r.human);
    assert_int_equal(r.owner_operator, -1);
    assert_int_equal(r.csat, 0);
    assert_int_equal(r.nops, 0);
    assert_null(r.ops);
    cca_record_cleanup(&r);
}

static void test_human_path(void **state)
{
    struct cca_record r;

    (void)state;
    record_of(doc_human(), &r);
    assert_string_equal(r.dialog_id, DLG_2);
    assert_string_equal(r.channel, "telegram");
    assert_int_equal(r.status, CCA_DIALOG_CLOSED);
    assert_int_equal(r.created_ms, C2);
    assert_int_equal(r.closed_ms, C2 + 200 * SEC);
    assert_int_equal(r.messages, 7); /* 2 AI turn + system + customer + 3 operator */
    assert_int_equal(r.agents, 1u << CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.tokens, 30);
    assert_int_equal(r.first_response_ms, 1000);
    assert_int_equal(r.escalated_ms, C2 + 5 * SEC);
    assert_int_equal(r.trigger, CCA_TRIGGER_REQUEST);
    assert_int_equal(r.queue_wait_ms, 30000);
    assert_int_equal(r.first_human_ms, 45000);
    assert_int_equal(r.handle_ms, 165000);
    assert_true(r.human);
    assert_int_equal(r.csat, 4);
    assert_int_equal(r.nops, 2);

    assert_string_equal(r.ops[0].operator_id, OP_A);
    assert_int_equal(r.ops[0].messages, 2);
    assert_int_equal(r.ops[0].assigned_ms, C2 + 35 * SEC);
    assert_int_equal(r.ops[0].first_reply_ms, 15000);
    assert_false(r.ops[0].last_owner);
    assert_false(r.ops[0].rated);

    assert_string_equal(r.ops[1].operator_id, OP_B);
    assert_int_equal(r.ops[1].messages, 1);
    assert_int_equal(r.ops[1].assigned_ms, C2 + 130 * SEC);
    assert_int_equal(r.ops[1].first_reply_ms, 1000);
    assert_true(r.ops[1].last_owner);
    assert_true(r.ops[1].rated);
    /* closing does not change the owner: B still holds the (closed) dialog */
    assert_int_equal(r.owner_operator, 1);

    assert_int_equal(cca_record_find_op(&r, OP_A), 0);
    assert_int_equal(cca_record_find_op(&r, OP_B), 1);
    assert_int_equal(cca_record_find_op(&r, OP_NOT), -1);
    assert_int_equal(cca_record_find_op(&r, NULL), -1);
    assert_int_equal(cca_record_find_op(NULL, OP_A), -1);
    cca_record_cleanup(&r);
}

static void test_open_assigned_supervisor(void **state)
{
    struct cca_record r;

    (void)state;
    record_of(doc_open_assigned(), &r);
    assert_int_equal(r.status, CCA_DIALOG_ASSIGNED);
    assert_int_equal(r.closed_ms, 0);
    assert_null(r.close_reason);
    assert_int_equal(r.last_agent, CCA_AGENT_SUPERVISOR);
    assert_int_equal(r.agents, 1u << CCA_AGENT_SUPERVISOR);
    assert_int_equal(r.tokens_by_agent[CCA_AGENT_SUPERVISOR], 20);
    assert_int_equal(r.first_response_ms, 1000);
    assert_int_equal(r.trigger, CCA_TRIGGER_SUPERVISOR);
    assert_int_equal(r.escalated_ms, C3 + 3 * SEC);
    assert_int_equal(r.queue_wait_ms, 0); /* taken at once */
    assert_int_equal(r.first_human_ms, -1);
    assert_int_equal(r.handle_ms, -1); /* still open */
    assert_true(r.human);
    assert_int_equal(r.nops, 1);
    assert_int_equal(r.owner_operator, 0);
    assert_string_equal(r.ops[0].operator_id, OP_A);
    assert_int_equal(r.ops[0].assigned_ms, C3 + 3 * SEC);
    assert_int_equal(r.ops[0].first_reply_ms, -1);
    assert_int_equal(r.ops[0].messages, 0);
    assert_true(r.ops[0].last_owner);
    assert_false(r.ops[0].rated);
    assert_int_equal(r.csat, 0);
    cca_record_cleanup(&r);
}

/* Degraded: queued, the customer stopped waiting (back to the AI), then closed. */
static void test_degraded_not_contained(void **state)
{
    struct cca_record r;
    json_t *d = new_doc(DLG_4, NULL, NULL, "api", T0);

    (void)state;
    d = turn(d, CCA_AGENT_TECH_SUPPORT, CCA_AGENT_NONE, T0 + 1 * SEC, T0 + 9 * SEC, 0);
    d = transition(d, CCA_OWNER_EV_ENQUEUE, CCA_OWNER_AGENT, CCA_OWNER_QUEUE, NULL, NULL,
                   "degraded", T0 + 10 * SEC);
    d = transition(d, CCA_OWNER_EV_HANDBACK, CCA_OWNER_QUEUE, CCA_OWNER_AGENT, NULL, NULL,
                   "customer_left", T0 + 70 * SEC);
    d = closed(d, "timeout", T0 + 100 * SEC);
    record_of(d, &r);
    assert_null(r.customer_id);
    assert_null(r.customer_name);
    assert_int_equal(r.status, CCA_DIALOG_CLOSED);
    assert_int_equal(r.first_response_ms, 8000);
    assert_int_equal(r.trigger, CCA_TRIGGER_DEGRADED);
    assert_int_equal(r.escalated_ms, T0 + 10 * SEC);
    assert_int_equal(r.queue_wait_ms, -1); /* never reached an operator */
    assert_int_equal(r.first_human_ms, -1);
    assert_int_equal(r.handle_ms, -1);
    assert_false(r.human);
    assert_int_equal(r.nops, 0);
    assert_int_equal(r.owner_operator, -1);
    cca_record_cleanup(&r);
}

/* Any other reason is an API handoff; only the first escalation counts. */
static void test_api_trigger_first_escalation(void **state)
{
    struct cca_record r;
    json_t *d = new_doc(DLG_4, "c", NULL, "web", T0);

    (void)state;
    d = turn(d, CCA_AGENT_SALES, CCA_AGENT_NONE, T0 + 1 * SEC, T0 + 2 * SEC, 5);
    d = transition(d, CCA_OWNER_EV_ENQUEUE, CCA_OWNER_AGENT, CCA_OWNER_QUEUE, NULL, NULL,
                   "crm_rule", T0 + 4 * SEC);
    d = transition(d, CCA_OWNER_EV_HANDBACK, CCA_OWNER_QUEUE, CCA_OWNER_AGENT, NULL, NULL,
                   "customer_left", T0 + 6 * SEC);
    d = transition(d, CCA_OWNER_EV_ENQUEUE, CCA_OWNER_AGENT, CCA_OWNER_QUEUE, NULL, NULL,
                   "customer_request", T0 + 20 * SEC);
    d = transition(d, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR, OP_B,
                   NULL, "backlog", T0 + 27 * SEC);
    d = message(d, "operator", OP_B, T0 + 30 * SEC);
    record_of(d, &r);
    assert_int_equal(r.trigger, CCA_TRIGGER_API);
    assert_int_equal(r.escalated_ms, T0 + 4 * SEC);
    assert_int_equal(r.queue_wait_ms, 23000);  /* from the first escalation */
    assert_int_equal(r.first_human_ms, 26000); /* idem */
    assert_int_equal(r.status, CCA_DIALOG_ASSIGNED);
    assert_int_equal(r.owner_operator, 0);
    assert_int_equal(r.ops[0].first_reply_ms, 3000);
    cca_record_cleanup(&r);

    /* a null reason is "anything else" too */
    d = new_doc(DLG_4, "c", NULL, "web", T0);
    d = transition(d, CCA_OWNER_EV_ENQUEUE, CCA_OWNER_AGENT, CCA_OWNER_QUEUE, NULL, NULL,
                   NULL, T0 + 4 * SEC);
    record_of(d, &r);
    assert_int_equal(r.trigger, CCA_TRIGGER_API);
    assert_int_equal(r.first_response_ms, -1); /* no customer message at all */
    cca_record_cleanup(&r);
}

/* Transfer A -> B, then B hands back to the AI, and the dialog closes later. */
static void test_transfer_handback(void **state)
{
    struct cca_record r;
    json_t *d = new_doc(DLG_4, "c", NULL, "web", T0);

    (void)state;
    d = turn(d, CCA_AGENT_TECH_SUPPORT, CCA_AGENT_NONE, T0 + 1 * SEC, T0 + 2 * SEC, 5);
    d = transition(d, CCA_OWNER_EV_ASSIGN, CCA_OWNER_AGENT, CCA_OWNER_OPERATOR, OP_A,
                   NULL, "customer_request", T0 + 10 * SEC);
    d = transition(d, CCA_OWNER_EV_TRANSFER, CCA_OWNER_OPERATOR, CCA_OWNER_OPERATOR, OP_B,
                   OP_A, "transfer", T0 + 20 * SEC);
    d = message(d, "operator", OP_B, T0 + 25 * SEC);
    d = transition(d, CCA_OWNER_EV_HANDBACK, CCA_OWNER_OPERATOR, CCA_OWNER_AGENT, NULL,
                   OP_B, "done", T0 + 40 * SEC);
    d = closed(d, "resolved", T0 + 90 * SEC);
    d = rated(d, 5, T0 + 95 * SEC);
    record_of(d, &r);
    assert_int_equal(r.trigger, CCA_TRIGGER_REQUEST);
    assert_int_equal(r.queue_wait_ms, 0);
    assert_int_equal(r.first_human_ms, 15000);
    assert_int_equal(r.handle_ms, 80000);   /* first assignment (+10s) to close (+90s) */
    assert_int_equal(r.owner_operator, -1); /* the AI owns it again */
    assert_int_equal(r.nops, 2);
    assert_false(r.ops[0].last_owner);
    assert_int_equal(r.ops[0].first_reply_ms, -1);
    assert_true(r.ops[1].last_owner);
    assert_int_equal(r.ops[1].first_reply_ms, 5000);
    assert_true(r.ops[1].rated); /* the rating names the previous owner, B */
    assert_int_equal(r.csat, 5);
    cca_record_cleanup(&r);
}

static void test_minimal_and_garbage(void **state)
{
    struct cca_record r;
    json_t *doc;
    const char *garbage =
        "{\"dialog_id\": 42, \"customer_id\": 7, \"customer_info\": \"x\","
        " \"status\": \"bogus\", \"created_at\": \"yesterday\", \"closed_at\": "
        "\"2023-11-14T22:13:21Z\","
        " \"current_agent\": \"robot\", \"source\": [], \"close_reason\": {},"
        " \"messages\": [1, {\"role\": 5},"
        "  {\"role\": \"customer\", \"timestamp\": \"garbage\"},"
        "  {\"role\": \"agent\", \"timestamp\": \"2023-11-14T22:13:21Z\","
        "   \"agent_type\": \"robot\", \"tokens\": \"x\"},"
        "  {\"role\": \"operator\", \"timestamp\": null, \"operator_id\": 5}],"
        " \"metadata\": {\"total_tokens\": \"lots\", \"transitions\": [null, 3,"
        "  {\"from\": \"agent\", \"to\": \"operator\", \"at\": \"never\","
        "   \"operator_id\": \"not-a-uuid\", \"reason\": 7}]},"
        " \"owner\": {\"kind\": \"operator\", \"operator_id\": \"not-a-uuid\"},"
        " \"rating\": {\"score\": 9, \"operator_id\": 3}}";

    (void)state;
    doc = json_object();
    cca_record_of(doc, &r);
    assert_string_equal(r.dialog_id, "");
    assert_null(r.customer_id);
    assert_null(r.customer_name);
    assert_null(r.channel);
    assert_null(r.close_reason);
    assert_int_equal(r.created_ms, 0);
    assert_int_equal(r.closed_ms, 0);
    assert_int_equal(r.status, CCA_DIALOG_ACTIVE);
    assert_int_equal(r.last_agent, CCA_AGENT_NONE);
    assert_int_equal(r.messages, 0);
    assert_int_equal(r.tokens, 0);
    assert_int_equal(r.first_response_ms, -1);
    assert_int_equal(r.queue_wait_ms, -1);
    assert_int_equal(r.first_human_ms, -1);
    assert_int_equal(r.handle_ms, -1);
    assert_int_equal(r.trigger, CCA_TRIGGER_NONE);
    assert_int_equal(r.owner_operator, -1);
    assert_int_equal(r.csat, 0);
    assert_int_equal(r.nops, 0);
    cca_record_cleanup(&r);
    json_decref(doc);

    doc = json_loads(garbage, 0, NULL);
    assert_non_null(doc);
    cca_record_of(doc, &r);
    assert_string_equal(r.dialog_id, "");
    assert_null(r.customer_id);
    assert_null(r.customer_name);
    assert_null(r.channel);
    assert_null(r.close_reason);
    assert_int_equal(r.created_ms, 0);
    assert_int_equal(r.status, CCA_DIALOG_ACTIVE);
    assert_int_equal(r.closed_ms, 0); /* not closed: closed_at does not count */
    assert_int_equal(r.last_agent, CCA_AGENT_NONE);
    assert_int_equal(r.messages, 5);
    assert_int_equal(r.tokens, 0);
    assert_int_equal(r.agents, 0);
    assert_int_equal(r.first_response_ms, -1); /* the customer's time is garbage */
    assert_int_equal(r.trigger, CCA_TRIGGER_API);
    assert_int_equal(r.escalated_ms, 0); /* escalated, at no known time */
    assert_int_equal(r.queue_wait_ms, -1);
    assert_int_equal(r.first_human_ms, -1);
    assert_true(r.human);
    assert_int_equal(r.nops, 0); /* not a UUID: no operator entry */
    assert_int_equal(r.owner_operator, -1);
    assert_int_equal(r.csat, 0);
    cca_record_cleanup(&r);
    json_decref(doc);

    /* not even an object */
    doc = json_array();
    cca_record_of(doc, &r);
    assert_int_equal(r.messages, 0);
    assert_int_equal(r.handle_ms, -1);
    cca_record_cleanup(&r);
    json_decref(doc);
    cca_record_cleanup(NULL);
}

/* Hand-made message and transition objects (not what the builders write). */
static json_t *raw_msg(const char *role, const char *op, const char *ts)
{
    return json_pack("{s:s, s:s?, s:s}", "role", role, "operator_id", op, "timestamp",
                     ts);
}

static json_t *raw_tr(const char *from, const char *to, const char *op,
                      const char *reason, const char *at)
{
    return json_pack("{s:s, s:s, s:s?, s:s, s:s}", "from", from, "to", to, "operator_id",
                     op, "reason", reason, "at", at);
}

/*
 * Well-typed but out of the ordinary (hand-edited, or a clock stepped back): an
 * agent -> agent entry is no escalation; the escalation's time is unparsable (so
 * nothing is measured from it); the customer writes twice before any answer; A
 * is assigned at +10 s and writes at +20 s, +15 s and +5 s (out of order, the
 * last before the assignment); closed at +8 s, "before" the assignment.
 * T0 = 22:13:20.
 */
static void test_odd_order(void **state)
{
    struct cca_record r;
    json_t *messages = json_array();
    json_t *transitions = json_array();
    json_t *doc;

    (void)state;
    (void)json_array_append_new(messages,
                                raw_msg("customer", NULL, "2023-11-14T22:13:21.000Z"));
    (void)json_array_append_new(messages,
                                raw_msg("customer", NULL, "2023-11-14T22:13:22.000Z"));
    (void)json_array_append_new(messages,
                                raw_msg("operator", OP_A, "2023-11-14T22:13:40.000Z"));
    (void)json_array_append_new(messages,
                                raw_msg("operator", OP_A, "2023-11-14T22:13:35.000Z"));
    (void)json_array_append_new(messages,
                                raw_msg("operator", OP_A, "2023-11-14T22:13:25.000Z"));
    (void)json_array_append_new(
        transitions, raw_tr("agent", "agent", NULL, "degraded", "2023-11-14T22:13:21Z"));
    (void)json_array_append_new(transitions,
                                raw_tr("agent", "queue", NULL, "supervisor", "soon"));
    (void)json_array_append_new(transitions, raw_tr("queue", "operator", OP_A, "backlog",
                                                    "2023-11-14T22:13:30Z"));
    doc = json_pack("{s:s, s:s, s:s, s:s, s:o, s:{s:o}, s:{s:s, s:s}}", "dialog_id",
                    DLG_4, "status", "closed", "created_at", "2023-11-14T22:13:20Z",
                    "closed_at", "2023-11-14T22:13:28.000Z", "messages", messages,
                    "metadata", "transitions", transitions, "owner", "kind", "operator",
                    "operator_id", OP_A);
    assert_non_null(doc);
    cca_record_of(doc, &r);
    assert_int_equal(r.created_ms, T0);
    assert_int_equal(r.closed_ms, T0 + 8 * SEC);
    assert_int_equal(r.messages, 5);
    assert_int_equal(r.trigger, CCA_TRIGGER_SUPERVISOR);
    assert_int_equal(r.escalated_ms, 0);
    assert_int_equal(r.queue_wait_ms, -1);  /* from an unknown time */
    assert_int_equal(r.first_human_ms, -1); /* idem */
    /* from the first customer message (+1 s) to the next answer in order (+20 s) */
    assert_int_equal(r.first_response_ms, 19000);
    assert_int_equal(r.handle_ms, 0); /* closed "before" the assignment */
    assert_true(r.human);
    assert_int_equal(r.nops, 1);
    assert_int_equal(r.owner_operator, 0);
    assert_int_equal(r.ops[0].assigned_ms, T0 + 10 * SEC);
    assert_int_equal(r.ops[0].messages, 3);
    assert_int_equal(r.ops[0].first_reply_ms, 5000); /* +15 s, the earliest after +10 s */
    cca_record_cleanup(&r);
    json_decref(doc);
}

static void test_copy_is_deep(void **state)
{
    struct cca_record r;
    struct cca_record c;

    (void)state;
    record_of(doc_human(), &r);
    cca_record_copy(&r, &c);
    assert_ptr_not_equal(c.ops, r.ops);
    assert_ptr_not_equal(c.customer_id, r.customer_id);
    cca_record_cleanup(&r);
    assert_null(r.ops);
    assert_int_equal(r.nops, 0);
    assert_string_equal(c.dialog_id, DLG_2);
    assert_string_equal(c.customer_id, "cust-2");
    assert_string_equal(c.customer_name, "Пётр");
    assert_string_equal(c.channel, "telegram");
    assert_string_equal(c.close_reason, "resolved");
    assert_int_equal(c.nops, 2);
    assert_string_equal(c.ops[1].operator_id, OP_B);
    assert_int_equal(c.ops[1].first_reply_ms, 1000);
    assert_int_equal(c.handle_ms, 165000);
    cca_record_cleanup(&c);

    /* a record without strings or operators copies too */
    record_of(doc_open_assigned(), &r);
    assert_null(r.close_reason);
    cca_record_copy(&r, &c);
    assert_null(c.close_reason);
    assert_int_equal(c.nops, 1);
    cca_record_cleanup(&r);
    cca_record_cleanup(&c);
}

static void test_trigger_names(void **state)
{
    (void)state;
    assert_string_equal(cca_record_trigger_name(CCA_TRIGGER_NONE), "none");
    assert_string_equal(cca_record_trigger_name(CCA_TRIGGER_REQUEST), "customer_request");
    assert_string_equal(cca_record_trigger_name(CCA_TRIGGER_SUPERVISOR), "supervisor");
    assert_string_equal(cca_record_trigger_name(CCA_TRIGGER_DEGRADED), "degraded");
    assert_string_equal(cca_record_trigger_name(CCA_TRIGGER_API), "api");
    assert_string_equal(cca_record_trigger_name(CCA_TRIGGER__COUNT), "none");
    assert_string_equal(cca_record_trigger_name((enum cca_record_trigger) - 3), "none");
}

/* ---- filters ----------------------------------------------------------------------- */

static void test_filters(void **state)
{
    struct cca_record r[3];
    struct cca_record_filter f;
    /* which of r[0..2] match, as a 3-bit mask */
#define MATCHES()                                                                        \
    ((cca_record_matches(&r[0], &f) ? 1 : 0) | (cca_record_matches(&r[1], &f) ? 2 : 0) | \
     (cca_record_matches(&r[2], &f) ? 4 : 0))

    (void)state;
    record_of(doc_ai_only(), &r[0]);       /* cust-1, T0, closed, tech+sales */
    record_of(doc_human(), &r[1]);         /* cust-2, T0+1d, closed, tech, A B */
    record_of(doc_open_assigned(), &r[2]); /* cust-1, T0+2d, assigned, supervisor, A */

    cca_record_filter_init(&f);
    assert_null(f.customer_id);
    assert_null(f.operator_id);
    assert_int_equal(f.agent, -1);
    assert_int_equal(f.status, -1);
    assert_int_equal(f.from_ms, 0);
    assert_int_equal(f.to_ms, 0);
    assert_int_equal(MATCHES(), 7);

    f.customer_id = "cust-1";
    assert_int_equal(MATCHES(), 5);
    f.customer_id = "cust-9";
    assert_int_equal(MATCHES(), 0);
    cca_record_filter_init(&f);

    f.operator_id = OP_A;
    assert_int_equal(MATCHES(), 6);
    f.operator_id = OP_B;
    assert_int_equal(MATCHES(), 2);
    f.operator_id = OP_NOT;
    assert_int_equal(MATCHES(), 0);
    cca_record_filter_init(&f);

    f.agent = CCA_AGENT_TECH_SUPPORT;
    assert_int_equal(MATCHES(), 3);
    f.agent = CCA_AGENT_SALES;
    assert_int_equal(MATCHES(), 1);
    f.agent = CCA_AGENT_SUPERVISOR;
    assert_int_equal(MATCHES(), 4);
    f.agent = 40; /* no such agent: nothing, and no undefined shift */
    assert_int_equal(MATCHES(), 0);
    cca_record_filter_init(&f);

    f.status = CCA_DIALOG_CLOSED;
    assert_int_equal(MATCHES(), 3);
    f.status = CCA_DIALOG_ASSIGNED;
    assert_int_equal(MATCHES(), 4);
    f.status = CCA_DIALOG_QUEUED;
    assert_int_equal(MATCHES(), 0);
    cca_record_filter_init(&f);

    f.from_ms = C2; /* inclusive */
    assert_int_equal(MATCHES(), 6);
    f.from_ms = C2 + 1;
    assert_int_equal(MATCHES(), 4);
    f.from_ms = 0;
    f.to_ms = C2; /* exclusive */
    assert_int_equal(MATCHES(), 1);
    f.to_ms = C2 + 1;
    assert_int_equal(MATCHES(), 3);
    f.from_ms = C2;
    f.to_ms = C3;
    assert_int_equal(MATCHES(), 2);

    /* fields combine */
    cca_record_filter_init(&f);
    f.customer_id = "cust-1";
    f.operator_id = OP_A;
    assert_int_equal(MATCHES(), 4);
    f.status = CCA_DIALOG_CLOSED;
    assert_int_equal(MATCHES(), 0);
#undef MATCHES
    for (int i = 0; i < 3; i++)
        cca_record_cleanup(&r[i]);
}

/* ---- statistics -------------------------------------------------------------------- */

/* @o at a dotted @path ("csat.distribution.4"); NULL when absent. */
static json_t *at(json_t *o, const char *path)
{
    char key[64];

    while (o != NULL && *path != '\0') {
        size_t n = strcspn(path, ".");

        assert_true(n < sizeof(key));
        memcpy(key, path, n);
        key[n] = '\0';
        o = json_object_get(o, key);
        path += n + (path[n] == '.');
    }
    return o;
}

static void assert_num(json_t *o, const char *path, double want)
{
    json_t *v = at(o, path);

    if (!json_is_number(v))
        fail_msg("%s: not a number", path);
    if (fabs(json_number_value(v) - want) > 1e-9)
        fail_msg("%s: %.9f, want %.9f", path, json_number_value(v), want);
}

static void assert_int_at(json_t *o, const char *path, long long want)
{
    json_t *v = at(o, path);

    if (!json_is_integer(v))
        fail_msg("%s: not an integer", path);
    assert_int_equal(json_integer_value(v), want);
}

static void assert_null_at(json_t *o, const char *path)
{
    if (!json_is_null(at(o, path)))
        fail_msg("%s: not null", path);
}

/* A record that applies to nothing: every duration -1. */
static void blank(struct cca_record *r)
{
    memset(r, 0, sizeof(*r));
    r->last_agent = CCA_AGENT_NONE;
    r->first_response_ms = -1;
    r->queue_wait_ms = -1;
    r->first_human_ms = -1;
    r->handle_ms = -1;
    r->owner_operator = -1;
}

static void test_stats_empty(void **state)
{
    struct cca_stats *s = cca_stats_new(NULL);
    json_t *j = cca_stats_service_json(s);
    json_t *o;

    (void)state;
    assert_int_at(j, "dialogs.total", 0);
    assert_int_equal(json_object_size(at(j, "dialogs.by_status")), 5);
    assert_int_at(j, "dialogs.by_status.active", 0);
    assert_int_at(j, "dialogs.by_status.escalated", 0);
    assert_int_at(j, "dialogs.by_status.closed", 0);
    assert_int_at(j, "dialogs.by_status.queued", 0);
    assert_int_at(j, "dialogs.by_status.assigned", 0);
    assert_true(json_is_object(at(j, "dialogs.by_channel")));
    assert_int_equal(json_object_size(at(j, "dialogs.by_channel")), 0);
    assert_int_at(j, "messages", 0);
    assert_int_at(j, "ai.closed", 0);
    assert_int_at(j, "ai.contained", 0);
    assert_null_at(j, "ai.containment_rate");
    assert_int_at(j, "escalations.total", 0);
    assert_int_at(j, "escalations.abandoned", 0);
    assert_null_at(j, "escalations.rate");
    assert_int_equal(json_object_size(at(j, "escalations.by_trigger")), 4);
    assert_int_at(j, "escalations.by_trigger.customer_request", 0);
    assert_int_at(j, "escalations.by_trigger.supervisor", 0);
    assert_int_at(j, "escalations.by_trigger.degraded", 0);
    assert_int_at(j, "escalations.by_trigger.api", 0);
    {
        const char *d[] = {"queue_wait_s", "first_human_response_s", "handle_time_s",
                           "first_response_s"};

        for (size_t i = 0; i < CCA_ARRAY_SIZE(d); i++) {
            json_t *v = at(j, d[i]);

            assert_int_at(v, "count", 0);
            assert_null_at(v, "p50");
            assert_null_at(v, "p90");
            assert_null_at(v, "mean");
        }
    }
    assert_int_at(j, "csat.count", 0);
    assert_null_at(j, "csat.average");
    assert_int_equal(json_object_size(at(j, "csat.distribution")), 5);
    for (int i = 1; i <= 5; i++) {
        char p[32];

        snprintf(p, sizeof(p), "csat.distribution.%d", i);
        assert_int_at(j, p, 0);
    }
    assert_int_at(j, "tokens.total", 0);
    assert_int_equal(json_object_size(at(j, "tokens.by_agent")), 3);
    assert_int_at(j, "tokens.by_agent.tech_support", 0);
    assert_int_at(j, "tokens.by_agent.sales", 0);
    assert_int_at(j, "tokens.by_agent.supervisor", 0);
    json_decref(j);

    o = cca_stats_operator_json(s);
    assert_int_at(o, "dialogs_handled", 0);
    assert_int_at(o, "open_now", 0);
    assert_int_at(o, "closed", 0);
    assert_int_at(o, "messages_sent", 0);
    assert_int_at(o, "first_response_s.count", 0);
    assert_null_at(o, "first_response_s.p50");
    assert_null_at(o, "handle_time_s.mean");
    assert_null_at(o, "csat.average");
    assert_int_at(o, "csat.distribution.3", 0);
    json_decref(o);
    cca_stats_free(s);
    cca_stats_free(NULL);
}

static void test_stats_percentiles(void **state)
{
    struct cca_stats *s = cca_stats_new(NULL);
    /* 1..10 s, out of order: p50 = rank 5 = 5 s, p90 = rank 9 = 9 s, mean 5.5 s */
    const int64_t fr[10] = {7000, 1000, 10000, 3000, 5000, 2000, 9000, 4000, 8000, 6000};
    /* four values: p50 rank ceil(2) = 2 -> 0.2 s; p90 rank ceil(3.6) = 4 -> 0.4 s */
    const int64_t handle[4] = {400, 100, 300, 200};
    json_t *j;

    (void)state;
    for (size_t i = 0; i < 10; i++) {
        struct cca_record r;

        blank(&r);
        r.first_response_ms = fr[i];
        if (i < 4)
            r.handle_ms = handle[i];
        if (i == 0)
            r.queue_wait_ms = 7; /* one value: every figure is it */
        if (i < 2)
            r.first_human_ms = i + 1; /* 1 and 2 ms: mean 1.5 ms, to the ms: 2 ms */
        cca_stats_add(s, &r);
    }
    j = cca_stats_service_json(s);
    assert_int_at(j, "first_response_s.count", 10);
    assert_num(j, "first_response_s.p50", 5.0);
    assert_num(j, "first_response_s.p90", 9.0);
    assert_num(j, "first_response_s.mean", 5.5);
    assert_int_at(j, "handle_time_s.count", 4);
    assert_num(j, "handle_time_s.p50", 0.2);
    assert_num(j, "handle_time_s.p90", 0.4);
    assert_num(j, "handle_time_s.mean", 0.25);
    assert_int_at(j, "queue_wait_s.count", 1);
    assert_num(j, "queue_wait_s.p50", 0.007);
    assert_num(j, "queue_wait_s.p90", 0.007);
    assert_num(j, "queue_wait_s.mean", 0.007);
    assert_int_at(j, "first_human_response_s.count", 2);
    assert_num(j, "first_human_response_s.p50", 0.001);
    assert_num(j, "first_human_response_s.p90", 0.002);
    assert_num(j, "first_human_response_s.mean", 0.002);
    assert_int_at(j, "dialogs.total", 10);
    assert_int_at(j, "dialogs.by_status.active", 10);
    assert_int_at(j, "dialogs.by_channel.unknown", 10);
    json_decref(j);

    /* 11 values: p90 rank ceil(9.9) = 10, p50 rank ceil(5.5) = 6 */
    {
        struct cca_record r;

        blank(&r);
        r.first_response_ms = 11000;
        cca_stats_add(s, &r);
    }
    j = cca_stats_service_json(s);
    assert_num(j, "first_response_s.p50", 6.0);
    assert_num(j, "first_response_s.p90", 10.0);
    assert_num(j, "first_response_s.mean", 6.0);
    json_decref(j);
    cca_stats_free(s);
}

/* Rates, csat, channels, tokens and statuses over hand-made records. */
static void test_stats_rates_and_counts(void **state)
{
    struct cca_stats *s = cca_stats_new(NULL);
    struct cca_record r;
    json_t *j;
    char web[] = "web";
    /* status, trigger, csat, channel, messages, tokens, tech, sales, supervisor */
    const struct {
        enum cca_dialog_status st;
        enum cca_record_trigger tr;
        int csat;
        char *channel;
        uint32_t messages;
        int64_t tokens[4];
    } rows[] = {
        {CCA_DIALOG_CLOSED, CCA_TRIGGER_NONE, 5, web, 4, {100, 60, 40, 0}},
        {CCA_DIALOG_CLOSED, CCA_TRIGGER_REQUEST, 4, web, 6, {10, 10, 0, 0}},
        {CCA_DIALOG_QUEUED, CCA_TRIGGER_DEGRADED, 0, NULL, 3, {0, 0, 0, 0}},
        {CCA_DIALOG_ACTIVE, CCA_TRIGGER_NONE, 4, NULL, 2, {7, 0, 0, 7}},
        {CCA_DIALOG_ESCALATED, CCA_TRIGGER_NONE, 0, web, 1, {0, 0, 0, 0}},
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(rows); i++) {
        blank(&r);
        r.status = rows[i].st;
        r.trigger = rows[i].tr;
        r.csat = rows[i].csat;
        r.channel = rows[i].channel; /* borrowed by the fold only for the call */
        r.messages = rows[i].messages;
        r.tokens = rows[i].tokens[0];
        for (int a = 0; a < CCA_AGENT__COUNT; a++) {
            r.tokens_by_agent[a] = rows[i].tokens[a + 1];
            if (r.tokens_by_agent[a] > 0) /* the agents that answered */
                r.agents |= 1u << a;
        }
        cca_stats_add(s, &r);
    }
    j = cca_stats_service_json(s);
    assert_int_at(j, "dialogs.total", 5);
    assert_int_at(j, "dialogs.by_agent.tech_support", 2);
    assert_int_at(j, "dialogs.by_agent.sales", 1);
    assert_int_at(j, "dialogs.by_agent.supervisor", 1);
    assert_int_at(j, "dialogs.by_status.closed", 2);
    assert_int_at(j, "dialogs.by_status.queued", 1);
    assert_int_at(j, "dialogs.by_status.active", 1);
    assert_int_at(j, "dialogs.by_status.escalated", 1);
    assert_int_at(j, "dialogs.by_status.assigned", 0);
    assert_int_equal(json_object_size(at(j, "dialogs.by_channel")), 2);
    assert_int_at(j, "dialogs.by_channel.web", 3);
    assert_int_at(j, "dialogs.by_channel.unknown", 2);
    assert_int_at(j, "messages", 16);
    assert_int_at(j, "ai.closed", 2);
    assert_int_at(j, "ai.contained", 1);
    assert_num(j, "ai.containment_rate", 0.5);
    assert_int_at(j, "escalations.total", 2);
    /* the closed customer_request row had no operator; the degraded one is open */
    assert_int_at(j, "escalations.abandoned", 1);
    assert_num(j, "escalations.rate", 0.4);
    assert_int_at(j, "escalations.by_trigger.customer_request", 1);
    assert_int_at(j, "escalations.by_trigger.degraded", 1);
    assert_int_at(j, "escalations.by_trigger.supervisor", 0);
    assert_int_at(j, "escalations.by_trigger.api", 0);
    assert_int_at(j, "csat.count", 3);
    assert_num(j, "csat.average", 13.0 / 3.0);
    assert_int_at(j, "csat.distribution.1", 0);
    assert_int_at(j, "csat.distribution.2", 0);
    assert_int_at(j, "csat.distribution.3", 0);
    assert_int_at(j, "csat.distribution.4", 2);
    assert_int_at(j, "csat.distribution.5", 1);
    assert_int_at(j, "tokens.total", 117);
    assert_int_at(j, "tokens.by_agent.tech_support", 70);
    assert_int_at(j, "tokens.by_agent.sales", 40);
    assert_int_at(j, "tokens.by_agent.supervisor", 7);
    json_decref(j);
    cca_stats_free(s);
}

/* The service fold over the three realistic dialogs. */
static void test_stats_service_real(void **state)
{
    struct cca_record r[3];
    struct cca_stats *s = cca_stats_new(NULL);
    json_t *j;

    (void)state;
    record_of(doc_ai_only(), &r[0]);
    record_of(doc_human(), &r[1]);
    record_of(doc_open_assigned(), &r[2]);
    for (int i = 0; i < 3; i++)
        cca_stats_add(s, &r[i]);
    j = cca_stats_service_json(s);
    assert_int_at(j, "dialogs.total", 3);
    assert_int_at(j, "dialogs.by_status.closed", 2);
    assert_int_at(j, "dialogs.by_status.assigned", 1);
    assert_int_at(j, "dialogs.by_channel.web", 2);
    assert_int_at(j, "dialogs.by_channel.telegram", 1);
    assert_int_at(j, "messages", 13);
    assert_int_at(j, "ai.closed", 2);
    assert_int_at(j, "ai.contained", 1);
    assert_num(j, "ai.containment_rate", 0.5);
    assert_int_at(j, "escalations.total", 2);
    assert_num(j, "escalations.rate", 2.0 / 3.0);
    assert_int_at(j, "escalations.by_trigger.customer_request", 1);
    assert_int_at(j, "escalations.by_trigger.supervisor", 1);
    /* queue waits 30 s and 0 s: p50 rank 1 = 0, p90 rank 2 = 30 */
    assert_int_at(j, "queue_wait_s.count", 2);
    assert_num(j, "queue_wait_s.p50", 0.0);
    assert_num(j, "queue_wait_s.p90", 30.0);
    assert_num(j, "queue_wait_s.mean", 15.0);
    assert_int_at(j, "first_human_response_s.count", 1);
    assert_num(j, "first_human_response_s.p50", 45.0);
    assert_int_at(j, "handle_time_s.count", 1);
    assert_num(j, "handle_time_s.p90", 165.0);
    /* first responses 2.5, 1, 1 s: p50 rank 2 = 1, p90 rank 3 = 2.5, mean 1.5 */
    assert_int_at(j, "first_response_s.count", 3);
    assert_num(j, "first_response_s.p50", 1.0);
    assert_num(j, "first_response_s.p90", 2.5);
    assert_num(j, "first_response_s.mean", 1.5);
    assert_int_at(j, "csat.count", 1);
    assert_num(j, "csat.average", 4.0);
    assert_int_at(j, "csat.distribution.4", 1);
    assert_int_at(j, "tokens.total", 200);
    assert_int_at(j, "tokens.by_agent.tech_support", 130);
    assert_int_at(j, "tokens.by_agent.sales", 50);
    assert_int_at(j, "tokens.by_agent.supervisor", 20);
    json_decref(j);
    cca_stats_free(s);
    for (int i = 0; i < 3; i++)
        cca_record_cleanup(&r[i]);
}

static void test_stats_operator(void **state)
{
    struct cca_record r[3];
    struct cca_stats *a = cca_stats_new(OP_A);
    struct cca_stats *b = cca_stats_new("BBBBBBBB-BBBB-4BBB-8BBB-BBBBBBBBBBBB");
    struct cca_stats *none = cca_stats_new(OP_NOT);
    json_t *j;

    (void)state;
    record_of(doc_ai_only(), &r[0]);
    record_of(doc_human(), &r[1]);
    record_of(doc_open_assigned(), &r[2]);
    for (int i = 0; i < 3; i++) {
        cca_stats_add(a, &r[i]);
        cca_stats_add(b, &r[i]);
        cca_stats_add(none, &r[i]);
    }

    /* A: the human dialog (requeued away, closed) and the open one they hold */
    j = cca_stats_operator_json(a);
    assert_int_at(j, "dialogs_handled", 2);
    assert_int_at(j, "open_now", 1);
    assert_int_at(j, "closed", 1);
    assert_int_at(j, "messages_sent", 2);
    assert_int_at(j, "first_response_s.count", 1);
    assert_num(j, "first_response_s.p50", 15.0);
    assert_num(j, "first_response_s.mean", 15.0);
    assert_int_at(j, "handle_time_s.count", 0); /* not the last owner of the closed one */
    assert_null_at(j, "handle_time_s.p50");
    assert_int_at(j, "csat.count", 0);
    assert_null_at(j, "csat.average");
    json_decref(j);
    /* the service figures of an operator's fold cover only their dialogs */
    j = cca_stats_service_json(a);
    assert_int_at(j, "dialogs.total", 2);
    json_decref(j);

    /* B (asked for in upper case): closed the human dialog, rated 4 */
    j = cca_stats_operator_json(b);
    assert_int_at(j, "dialogs_handled", 1);
    assert_int_at(j, "open_now", 0);
    assert_int_at(j, "closed", 1);
    assert_int_at(j, "messages_sent", 1);
    assert_int_at(j, "first_response_s.count", 1);
    assert_num(j, "first_response_s.p90", 1.0);
    assert_int_at(j, "handle_time_s.count", 1);
    assert_num(j, "handle_time_s.p50", 165.0);
    assert_int_at(j, "csat.count", 1);
    assert_num(j, "csat.average", 4.0);
    assert_int_at(j, "csat.distribution.4", 1);
    assert_int_at(j, "csat.distribution.5", 0);
    json_decref(j);

    /* csat counts where they are rated, not where they were the last owner */
    {
        struct cca_record x;
        struct cca_record_op op = {.operator_id = OP_A,
                                   .assigned_ms = T0,
                                   .first_reply_ms = -1,
                                   .last_owner = true,
                                   .rated = false};

        blank(&x);
        x.status = CCA_DIALOG_CLOSED;
        x.csat = 2;
        x.ops = &op;
        x.nops = 1;
        cca_stats_add(a, &x);
        j = cca_stats_operator_json(a);
        assert_int_at(j, "dialogs_handled", 3);
        assert_int_at(j, "closed", 2);
        assert_int_at(j, "csat.count", 0);
        assert_int_at(j, "csat.distribution.2", 0);
        json_decref(j);
    }

    j = cca_stats_operator_json(none);
    assert_int_at(j, "dialogs_handled", 0);
    assert_int_at(j, "messages_sent", 0);
    json_decref(j);

    cca_stats_free(a);
    cca_stats_free(b);
    cca_stats_free(none);
    for (int i = 0; i < 3; i++)
        cca_record_cleanup(&r[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ai_only_contained),
        cmocka_unit_test(test_human_path),
        cmocka_unit_test(test_open_assigned_supervisor),
        cmocka_unit_test(test_degraded_not_contained),
        cmocka_unit_test(test_api_trigger_first_escalation),
        cmocka_unit_test(test_transfer_handback),
        cmocka_unit_test(test_minimal_and_garbage),
        cmocka_unit_test(test_odd_order),
        cmocka_unit_test(test_copy_is_deep),
        cmocka_unit_test(test_trigger_names),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_stats_empty),
        cmocka_unit_test(test_stats_percentiles),
        cmocka_unit_test(test_stats_rates_and_counts),
        cmocka_unit_test(test_stats_service_real),
        cmocka_unit_test(test_stats_operator),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
