/* SPDX-License-Identifier: MIT */
/*
 * The human side's document work (include/cca/handoff.h): the "ask for a
 * person" lexicon, HUMAN_HANDOFF parsing, the customer-facing texts, a desk
 * move applied to a dialog document (owner, status, transitions, the system
 * message, the events) and what a dialog needs of an operator.
 */
#include "cca_test.h"

#include <jansson.h>

#include "cca/desk.h"
#include "cca/dialog.h"
#include "cca/handoff.h"
#include "cca/operator.h"
#include "cca/text.h"

#define NOW 1700000000000LL /* Unix ms, 2023-11-14 */
#define SEC 1000LL

#define DIALOG "d0000000-0000-4000-8000-000000000001"
#define OP_A   "00000000-0000-4000-8000-00000000000a"
#define OP_B   "00000000-0000-4000-8000-00000000000b"

/* ---- asking for a person ----------------------------------------------------- */

static bool wants(const char *s)
{
    return cca_handoff_wants_human(s, strlen(s));
}

static void expect_all(const char *const *v, size_t n, bool expected)
{
    size_t bad = 0;

    for (size_t i = 0; i < n; i++) {
        if (wants(v[i]) != expected) {
            print_error("wants_human(\"%s\") should be %s\n", v[i],
                        expected ? "true" : "false");
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* Requests for a person, in several inflections and word orders. */
static void test_wants_human_requests(void **state)
{
    static const char *const yes[] = {
        "Позовите оператора!",
        "позови оператора пожалуйста",
        "Позовите, пожалуйста, оператора",
        "позовите мне оператора",
        "хочу поговорить с живым человеком",
        "нужен живой человек",
        "Можно живого оператора?",
        "Соедините с оператором",
        "соедините меня с оператором",
        "Переключите на оператора",
        "переведите меня на оператора",
        "Хочу оператора",
        "Дайте мне оператора",
        "позовите человека",
        "Оператор",
        "ОПЕРАТОР!!!",
        "Оператора!",
        "I want to talk to a human",
        "I would like to speak to a human agent",
        "Can I speak to a real person?",
        "real person please",
        "I need a human",
        "speak with a human",
        "Could you connect me to an operator",
        "Agent, please",
        "operator",
        "Human",
        "agent",
    };

    (void)state;
    expect_all(yes, CCA_ARRAY_SIZE(yes), true);
}

/*
 * Ordinary support messages. Decided: a word like "оператор", "operator",
 * "human" or "agent" asks for a person only when it is the whole message
 * (with "please" / "пожалуйста") or part of a request phrase; used in passing
 * ("мой мобильный оператор", "human resources", "the operation") it does not.
 */
static void test_wants_human_ordinary(void **state)
{
    static const char *const no[] = {
        "Не работает интернет",
        "Сколько стоит тариф Pro?",
        "The app crashes when I log in",
        "Я человек, а не робот",
        "Hello, I have a question about my invoice",
        "Помогите настроить роутер",
        "",
        "   ",
        "?!",
    };

    (void)state;
    expect_all(no, CCA_ARRAY_SIZE(no), false);
    /* invalid UTF-8 */
    assert_false(cca_handoff_wants_human("\xff\xfe", 2));
    assert_false(cca_handoff_wants_human("оператор\xff", strlen("оператор") + 1));
    /* the length counts, not the NUL */
    assert_false(cca_handoff_wants_human("Не работает. Позовите оператора", 11));
}

/*
 * The words of the lexicon used in passing, not as a request. Fails while the
 * phrases "оператора пожалуйста", "operator please", "human please" and "agent
 * please" compile to the single stems "оператор", "oper", "human", "agent"
 * ("please" / "пожалуйста" are skipped tokens), which then match anywhere.
 */
static void test_wants_human_word_in_passing(void **state)
{
    static const char *const no[] = {
        "мой мобильный оператор не ловит",
        "оператор связи списал деньги",
        "Какой у вас оператор фискальных данных?",
        "human resources department email",
        "The operation failed",
        "My operating system is Windows 11",
        "Which agent handles refunds?",
    };

    (void)state;
    expect_all(no, CCA_ARRAY_SIZE(no), false);
}

/* ---- HUMAN_HANDOFF -------------------------------------------------------------- */

static void test_parse_triggers(void **state)
{
    struct cca_error err = {0};
    unsigned bits = 99;

    (void)state;
    assert_int_equal(
        cca_handoff_parse_triggers("request,supervisor,degraded", &bits, &err), CCA_OK);
    assert_int_equal(bits,
                     CCA_HANDOFF_REQUEST | CCA_HANDOFF_SUPERVISOR | CCA_HANDOFF_DEGRADED);
    assert_int_equal(cca_handoff_parse_triggers("request", &bits, NULL), CCA_OK);
    assert_int_equal(bits, CCA_HANDOFF_REQUEST);
    assert_int_equal(cca_handoff_parse_triggers(" degraded , request ", &bits, &err),
                     CCA_OK);
    assert_int_equal(bits, CCA_HANDOFF_REQUEST | CCA_HANDOFF_DEGRADED);
    assert_int_equal(cca_handoff_parse_triggers("supervisor,,supervisor,", &bits, &err),
                     CCA_OK);
    assert_int_equal(bits, CCA_HANDOFF_SUPERVISOR);
    /* none */
    bits = 99;
    assert_int_equal(cca_handoff_parse_triggers("", &bits, &err), CCA_OK);
    assert_int_equal(bits, 0);
    bits = 99;
    assert_int_equal(cca_handoff_parse_triggers("none", &bits, &err), CCA_OK);
    assert_int_equal(bits, 0);
    bits = 99;
    assert_int_equal(cca_handoff_parse_triggers("  ", &bits, &err), CCA_OK);
    assert_int_equal(bits, 0);
    bits = 99;
    assert_int_equal(cca_handoff_parse_triggers(NULL, &bits, &err), CCA_OK);
    assert_int_equal(bits, 0);
    /* unknown entries: named, the result untouched */
    bits = 99;
    assert_int_equal(cca_handoff_parse_triggers("request,bogus", &bits, &err),
                     CCA_ERR_INVALID);
    assert_int_equal(err.code, CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "bogus"));
    assert_int_equal(bits, 99);
    assert_int_equal(cca_handoff_parse_triggers("Request", &bits, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "Request"));
    assert_int_equal(cca_handoff_parse_triggers("requests", &bits, NULL),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_handoff_parse_triggers("request;degraded", &bits, NULL),
                     CCA_ERR_INVALID);
    assert_int_equal(bits, 99);
}

/* ---- texts ------------------------------------------------------------------------ */

static void test_notices(void **state)
{
    static const char *const what[] = {"full", "position", "closing", "csat"};

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(what); i++) {
        const char *ru = cca_handoff_notice(what[i], CCA_LANG_RU);
        const char *en = cca_handoff_notice(what[i], CCA_LANG_EN);

        assert_true(ru[0] != '\0' && en[0] != '\0');
        assert_string_not_equal(ru, en);
        assert_true(cca_text_detect_lang(ru, strlen(ru)) == CCA_LANG_RU);
        assert_true(cca_text_detect_lang(en, strlen(en)) == CCA_LANG_EN);
    }
    assert_non_null(strstr(cca_handoff_notice("position", CCA_LANG_RU), "%zu"));
    assert_non_null(strstr(cca_handoff_notice("position", CCA_LANG_EN), "%zu"));
    assert_string_equal(cca_handoff_notice("no such notice", CCA_LANG_EN), "");
    /* a language out of range falls back to Russian */
    assert_string_equal(cca_handoff_notice("closing", (enum cca_lang)7),
                        cca_handoff_notice("closing", CCA_LANG_RU));
}

/* ---- documents ----------------------------------------------------------------------
 */

static json_t *new_dialog(const char *lang, const char *agent, const char *priority)
{
    char customer[] = "c-1";
    char name[] = "Иван";
    char source[] = "api";
    char prio[32];
    struct cca_dialog_create c = {
        .customer_id = customer, .name = name, .source = source, .priority = prio};
    json_t *doc;

    (void)snprintf(prio, sizeof(prio), "%s", priority != NULL ? priority : "normal");
    doc = cca_dialog_new_doc(DIALOG, &c, NOW);

    /* the test owns this fresh document: set fields in place */
    if (lang != NULL)
        (void)json_object_set_new(doc, "language", json_string(lang));
    if (agent != NULL)
        (void)json_object_set_new(doc, "current_agent", json_string(agent));
    return doc;
}

static struct cca_desk_move move(enum cca_owner_event ev, enum cca_owner from,
                                 const char *op, const char *op_name, const char *prev,
                                 const char *reason, int64_t at)
{
    struct cca_desk_move m;

    memset(&m, 0, sizeof(m));
    (void)snprintf(m.dialog_id, sizeof(m.dialog_id), "%s", DIALOG);
    m.event = ev;
    m.from = from;
    assert_true(cca_owner_next(from, ev, &m.to));
    (void)snprintf(m.operator_id, sizeof(m.operator_id), "%s", op ? op : "");
    (void)snprintf(m.operator_name, sizeof(m.operator_name), "%s",
                   op_name ? op_name : "");
    (void)snprintf(m.prev_operator_id, sizeof(m.prev_operator_id), "%s",
                   prev ? prev : "");
    m.reason = reason;
    (void)snprintf(m.actor, sizeof(m.actor), "%s", "system");
    m.eta_s = -1;
    m.at_ms = at;
    return m;
}

static const char *time_str(int64_t ms, char buf[CCA_TIME_LEN])
{
    cca_time_format(ms, buf);
    return buf;
}

/* Event @i of @events has @topic and @type; returns its data. */
static json_t *event_at(json_t *events, size_t i, const char *topic, const char *type)
{
    json_t *e = json_array_get(events, i);

    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "topic")), topic);
    assert_string_equal(json_string_value(json_object_get(e, "type")), type);
    assert_non_null(json_object_get(e, "data"));
    return json_object_get(e, "data");
}

static json_t *last_message(json_t *doc)
{
    json_t *msgs = json_object_get(doc, "messages");

    return json_array_get(msgs, json_array_size(msgs) - 1);
}

static json_t *last_transition(json_t *doc)
{
    json_t *list = json_object_get(json_object_get(doc, "metadata"), "transitions");

    assert_true(json_is_array(list));
    return json_array_get(list, json_array_size(list) - 1);
}

static const char *owner_str(json_t *doc, const char *key)
{
    return json_string_value(cca_dialog_owner_field(doc, key));
}

/*
 * Apply @m to @doc and check copy-on-write: @doc serialises the same before
 * and after. Returns the new document.
 */
static json_t *apply_cow(json_t *doc, const struct cca_desk_move *m, json_t *events)
{
    char *before = json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT);
    json_t *copy = json_deep_copy(doc);
    json_t *out = cca_handoff_apply(doc, m, events);
    char *after = json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT);

    assert_non_null(out);
    assert_ptr_not_equal(out, doc);
    assert_string_equal(before, after);
    assert_true(json_equal(doc, copy));
    free(before);
    free(after);
    json_decref(copy);
    return out;
}

/* The full life: enqueue, assign from the queue, requeue, hand back (Russian). */
static void test_apply_russian(void **state)
{
    char t0[CCA_TIME_LEN];
    char t1[CCA_TIME_LEN];
    json_t *doc = new_dialog("ru", "tech_support", NULL);
    json_t *events = json_array();
    json_t *d1;
    json_t *d2;
    json_t *d3;
    json_t *d4;
    json_t *data;
    json_t *msg;
    json_t *tr;
    struct cca_desk_move m;

    (void)state;
    (void)time_str(NOW + 1 * SEC, t0);

    /* ENQUEUE: position 2, about 150 s -> "3 мин" */
    m = move(CCA_OWNER_EV_ENQUEUE, CCA_OWNER_AGENT, NULL, NULL, NULL, "customer_request",
             NOW + 1 * SEC);
    (void)snprintf(m.actor, sizeof(m.actor), "customer");
    m.position = 2;
    m.eta_s = 150;
    d1 = apply_cow(doc, &m, events);
    assert_string_equal(json_string_value(json_object_get(d1, "status")), "queued");
    assert_int_equal(cca_dialog_get_status(d1), CCA_DIALOG_QUEUED);
    assert_int_equal(cca_dialog_get_owner(d1, NULL), CCA_OWNER_QUEUE);
    assert_string_equal(owner_str(d1, "kind"), "queue");
    assert_string_equal(owner_str(d1, "waiting_since"), t0);
    assert_string_equal(owner_str(d1, "since"), t0);
    assert_true(json_is_null(cca_dialog_owner_field(d1, "operator_id")));
    assert_true(json_is_false(cca_dialog_owner_field(d1, "requeued")));
    tr = last_transition(d1);
    assert_string_equal(json_string_value(json_object_get(tr, "event")), "enqueue");
    assert_string_equal(json_string_value(json_object_get(tr, "from")), "agent");
    assert_string_equal(json_string_value(json_object_get(tr, "to")), "queue");
    assert_string_equal(json_string_value(json_object_get(tr, "actor")), "customer");
    assert_string_equal(json_string_value(json_object_get(tr, "reason")),
                        "customer_request");
    assert_string_equal(json_string_value(json_object_get(tr, "at")), t0);
    assert_int_equal(cca_dialog_message_count(d1), 1);
    msg = last_message(d1);
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "system");
    assert_string_equal(json_string_value(json_object_get(msg, "kind")), "queue");
    assert_string_equal(json_string_value(json_object_get(msg, "content")),
                        "Все операторы сейчас заняты. Вы в очереди, ваш номер 2. "
                        "Ожидание около 3 мин.");
    assert_string_equal(json_string_value(json_object_get(msg, "timestamp")), t0);
    assert_int_equal(json_array_size(events), 2);
    data = event_at(events, 0, "dialog:" DIALOG, "owner");
    assert_string_equal(json_string_value(json_object_get(data, "dialog_id")), DIALOG);
    assert_string_equal(json_string_value(json_object_get(data, "owner")), "queue");
    assert_string_equal(json_string_value(json_object_get(data, "event")), "enqueue");
    assert_int_equal(json_integer_value(json_object_get(data, "position")), 2);
    assert_int_equal(json_integer_value(json_object_get(data, "estimated_wait_s")), 150);
    assert_true(json_is_null(json_object_get(data, "operator_id")));
    data = event_at(events, 1, "dialog:" DIALOG, "message");
    assert_string_equal(json_string_value(json_object_get(data, "dialog_id")), DIALOG);
    assert_string_equal(json_string_value(json_object_get(data, "content")),
                        json_string_value(json_object_get(msg, "content")));
    assert_string_equal(json_string_value(json_object_get(data, "id")),
                        json_string_value(json_object_get(msg, "id")));

    /* ASSIGN from the queue: operator joined; waiting_since kept */
    json_array_clear(events);
    m = move(CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, OP_A, "Анна", NULL, "backlog",
             NOW + 60 * SEC);
    d2 = apply_cow(d1, &m, events);
    assert_string_equal(json_string_value(json_object_get(d2, "status")), "assigned");
    {
        const char *who = NULL;

        assert_int_equal(cca_dialog_get_owner(d2, &who), CCA_OWNER_OPERATOR);
        assert_string_equal(who, OP_A);
    }
    assert_string_equal(owner_str(d2, "operator_name"), "Анна");
    assert_string_equal(owner_str(d2, "waiting_since"), t0);
    assert_string_equal(owner_str(d2, "since"), time_str(NOW + 60 * SEC, t1));
    assert_true(json_is_false(cca_dialog_owner_field(d2, "replied")));
    tr = last_transition(d2);
    assert_string_equal(json_string_value(json_object_get(tr, "event")), "assign");
    assert_string_equal(json_string_value(json_object_get(tr, "from")), "queue");
    assert_string_equal(json_string_value(json_object_get(tr, "to")), "operator");
    assert_string_equal(json_string_value(json_object_get(tr, "operator_id")), OP_A);
    assert_true(json_is_null(json_object_get(tr, "prev_operator_id")));
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(d2, "metadata"), "transitions")),
        2);
    msg = last_message(d2);
    assert_int_equal(cca_dialog_message_count(d2), 2);
    assert_string_equal(json_string_value(json_object_get(msg, "kind")), "assigned");
    assert_string_equal(json_string_value(json_object_get(msg, "content")),
                        "К диалогу подключился оператор Анна.");
    assert_int_equal(json_array_size(events), 3);
    data = event_at(events, 0, "dialog:" DIALOG, "owner");
    assert_string_equal(json_string_value(json_object_get(data, "owner")), "operator");
    assert_string_equal(json_string_value(json_object_get(data, "operator_id")), OP_A);
    assert_string_equal(json_string_value(json_object_get(data, "operator_name")),
                        "Анна");
    assert_null(json_object_get(data, "position"));
    data = event_at(events, 1, "operator:" OP_A, "assigned");
    assert_string_equal(json_string_value(json_object_get(data, "dialog_id")), DIALOG);
    (void)event_at(events, 2, "dialog:" DIALOG, "message");

    /* REQUEUE: back in the queue, number 1, no estimate */
    json_array_clear(events);
    m = move(CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR, NULL, NULL, OP_A, "reply_timeout",
             NOW + 200 * SEC);
    m.requeued = true;
    m.position = 1;
    d3 = apply_cow(d2, &m, events);
    assert_string_equal(json_string_value(json_object_get(d3, "status")), "queued");
    assert_string_equal(owner_str(d3, "kind"), "queue");
    assert_true(json_is_true(cca_dialog_owner_field(d3, "requeued")));
    assert_true(json_is_null(cca_dialog_owner_field(d3, "operator_id")));
    assert_string_equal(owner_str(d3, "waiting_since"), t0); /* waiting all along */
    tr = last_transition(d3);
    assert_string_equal(json_string_value(json_object_get(tr, "event")), "requeue");
    assert_string_equal(json_string_value(json_object_get(tr, "prev_operator_id")), OP_A);
    assert_true(json_is_null(json_object_get(tr, "operator_id")));
    assert_string_equal(json_string_value(json_object_get(tr, "reason")),
                        "reply_timeout");
    msg = last_message(d3);
    assert_string_equal(json_string_value(json_object_get(msg, "kind")), "requeued");
    assert_string_equal(json_string_value(json_object_get(msg, "content")),
                        "Оператор не может продолжить диалог. Вы снова в очереди, ваш "
                        "номер 1.");
    assert_int_equal(json_array_size(events), 3);
    (void)event_at(events, 0, "dialog:" DIALOG, "owner");
    data = event_at(events, 1, "operator:" OP_A, "unassigned");
    assert_string_equal(json_string_value(json_object_get(data, "reason")),
                        "reply_timeout");
    (void)event_at(events, 2, "dialog:" DIALOG, "message");

    /* HANDBACK from the queue (the customer stopped waiting): back to the AI */
    json_array_clear(events);
    m = move(CCA_OWNER_EV_HANDBACK, CCA_OWNER_QUEUE, NULL, NULL, NULL, "customer_left",
             NOW + 300 * SEC);
    d4 = apply_cow(d3, &m, events);
    assert_string_equal(json_string_value(json_object_get(d4, "status")), "active");
    assert_int_equal(cca_dialog_get_owner(d4, NULL), CCA_OWNER_AGENT);
    assert_string_equal(owner_str(d4, "kind"), "agent");
    assert_true(json_is_null(cca_dialog_owner_field(d4, "waiting_since")));
    msg = last_message(d4);
    assert_string_equal(json_string_value(json_object_get(msg, "kind")), "handed_back");
    assert_string_equal(json_string_value(json_object_get(msg, "content")),
                        "Вам снова отвечает виртуальный помощник: напишите ваш вопрос.");
    assert_int_equal(json_array_size(events), 2);
    data = event_at(events, 0, "dialog:" DIALOG, "owner");
    assert_string_equal(json_string_value(json_object_get(data, "owner")), "agent");
    assert_string_equal(json_string_value(json_object_get(data, "event")), "handback");
    (void)event_at(events, 1, "dialog:" DIALOG, "message");
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(d4, "metadata"), "transitions")),
        4);
    assert_int_equal(cca_dialog_message_count(d4), 4);
    /* every step's input is intact */
    assert_int_equal(cca_dialog_message_count(doc), 0);
    assert_null(json_object_get(doc, "owner"));
    assert_int_equal(cca_dialog_message_count(d1), 1);
    assert_int_equal(cca_dialog_message_count(d2), 2);
    assert_string_equal(owner_str(d2, "kind"), "operator");

    json_decref(events);
    json_decref(doc);
    json_decref(d1);
    json_decref(d2);
    json_decref(d3);
    json_decref(d4);
}

/* Assign straight from the AI, transfer, hand back from an operator (English). */
static void test_apply_english(void **state)
{
    char t0[CCA_TIME_LEN];
    json_t *doc = new_dialog("en", "supervisor", NULL);
    json_t *events = json_array();
    json_t *d1;
    json_t *d2;
    json_t *d3;
    json_t *d0;
    json_t *data;
    json_t *msg;
    json_t *tr;
    struct cca_desk_move m;

    (void)state;
    /* ENQUEUE in English, with the wait (30 s rounds up to 1 min) */
    m = move(CCA_OWNER_EV_ENQUEUE, CCA_OWNER_AGENT, NULL, NULL, NULL, "customer_request",
             NOW);
    m.position = 3;
    m.eta_s = 30;
    d0 = apply_cow(doc, &m, events);
    assert_string_equal(json_string_value(json_object_get(last_message(d0), "content")),
                        "All our operators are busy right now. You are number 3 in the "
                        "queue. The estimated wait is about 1 min.");
    json_decref(d0);
    /* without an estimate: no wait sentence */
    json_array_clear(events);
    m.eta_s = -1;
    d0 = apply_cow(doc, &m, events);
    assert_string_equal(json_string_value(json_object_get(last_message(d0), "content")),
                        "All our operators are busy right now. You are number 3 in the "
                        "queue.");
    json_decref(d0);

    /* ASSIGN from the AI: no queue event */
    json_array_clear(events);
    (void)time_str(NOW + 5 * SEC, t0);
    m = move(CCA_OWNER_EV_ASSIGN, CCA_OWNER_AGENT, OP_A, "Anna", NULL, "customer_request",
             NOW + 5 * SEC);
    d1 = apply_cow(doc, &m, events);
    assert_string_equal(json_string_value(json_object_get(d1, "status")), "assigned");
    assert_string_equal(owner_str(d1, "operator_id"), OP_A);
    assert_string_equal(owner_str(d1, "waiting_since"), t0);
    msg = last_message(d1);
    assert_string_equal(json_string_value(json_object_get(msg, "content")),
                        "Anna from our support team has joined the conversation.");
    assert_int_equal(json_array_size(events), 3);
    (void)event_at(events, 0, "dialog:" DIALOG, "owner");
    (void)event_at(events, 1, "operator:" OP_A, "assigned");
    (void)event_at(events, 2, "dialog:" DIALOG, "message");

    /* TRANSFER to Boris */
    json_array_clear(events);
    m = move(CCA_OWNER_EV_TRANSFER, CCA_OWNER_OPERATOR, OP_B, "Boris", OP_A, "transfer",
             NOW + 50 * SEC);
    (void)snprintf(m.actor, sizeof(m.actor), "operator:%s", OP_A);
    d2 = apply_cow(d1, &m, events);
    assert_string_equal(json_string_value(json_object_get(d2, "status")), "assigned");
    assert_string_equal(owner_str(d2, "operator_id"), OP_B);
    assert_string_equal(owner_str(d2, "operator_name"), "Boris");
    assert_string_equal(owner_str(d2, "waiting_since"), t0);
    tr = last_transition(d2);
    assert_string_equal(json_string_value(json_object_get(tr, "event")), "transfer");
    assert_string_equal(json_string_value(json_object_get(tr, "from")), "operator");
    assert_string_equal(json_string_value(json_object_get(tr, "to")), "operator");
    assert_string_equal(json_string_value(json_object_get(tr, "operator_id")), OP_B);
    assert_string_equal(json_string_value(json_object_get(tr, "prev_operator_id")), OP_A);
    assert_string_equal(json_string_value(json_object_get(tr, "actor")),
                        "operator:" OP_A);
    msg = last_message(d2);
    assert_string_equal(json_string_value(json_object_get(msg, "kind")), "transferred");
    assert_string_equal(json_string_value(json_object_get(msg, "content")),
                        "Your conversation has been passed to Boris.");
    assert_int_equal(json_array_size(events), 4);
    data = event_at(events, 0, "dialog:" DIALOG, "owner");
    assert_string_equal(json_string_value(json_object_get(data, "event")), "transfer");
    data = event_at(events, 1, "operator:" OP_B, "assigned");
    assert_string_equal(json_string_value(json_object_get(data, "operator_name")),
                        "Boris");
    (void)event_at(events, 2, "operator:" OP_A, "unassigned");
    (void)event_at(events, 3, "dialog:" DIALOG, "message");

    /* HANDBACK from Boris; the supervisor had it, so it is escalated again */
    json_array_clear(events);
    m = move(CCA_OWNER_EV_HANDBACK, CCA_OWNER_OPERATOR, NULL, NULL, OP_B, "operator_done",
             NOW + 90 * SEC);
    d3 = apply_cow(d2, &m, events);
    assert_string_equal(json_string_value(json_object_get(d3, "status")), "escalated");
    assert_string_equal(owner_str(d3, "kind"), "agent");
    assert_true(json_is_null(cca_dialog_owner_field(d3, "operator_id")));
    assert_true(json_is_null(cca_dialog_owner_field(d3, "waiting_since")));
    msg = last_message(d3);
    assert_string_equal(json_string_value(json_object_get(msg, "kind")), "handed_back");
    assert_string_equal(json_string_value(json_object_get(msg, "content")),
                        "You are back with our virtual assistant; write your question "
                        "and it will answer.");
    assert_int_equal(json_array_size(events), 3);
    (void)event_at(events, 0, "dialog:" DIALOG, "owner");
    data = event_at(events, 1, "operator:" OP_B, "unassigned");
    /* The cause for the operator; the caller's own reason goes in "detail". */
    assert_string_equal(json_string_value(json_object_get(data, "reason")), "handback");
    assert_string_equal(json_string_value(json_object_get(data, "detail")),
                        "operator_done");
    (void)event_at(events, 2, "dialog:" DIALOG, "message");

    json_decref(events);
    json_decref(doc);
    json_decref(d1);
    json_decref(d2);
    json_decref(d3);
}

/* The language comes from the last customer message when none is recorded. */
static void test_apply_detected_language(void **state)
{
    json_t *doc = new_dialog(NULL, NULL, NULL);
    json_t *events = json_array();
    json_t *out;
    struct cca_desk_move m;

    (void)state;
    (void)json_object_set_new(doc, "messages",
                              json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "customer",
                                        "content", "Здравствуйте, у меня вопрос", "role",
                                        "customer", "content", "Hello, I need a human"));
    m = move(CCA_OWNER_EV_ASSIGN, CCA_OWNER_AGENT, OP_A, "Anna", NULL, "customer_request",
             NOW);
    out = apply_cow(doc, &m, events);
    assert_string_equal(json_string_value(json_object_get(last_message(out), "content")),
                        "Anna from our support team has joined the conversation.");
    json_decref(out);
    json_decref(events);
    json_decref(doc);
}

/* A closed dialog keeps its status whatever the move. */
static void test_apply_closed(void **state)
{
    json_t *doc = new_dialog("ru", NULL, NULL);
    json_t *closed = cca_dialog_closed(doc, "resolved", NOW + SEC);
    json_t *events = json_array();
    json_t *out;
    struct cca_desk_move m;

    (void)state;
    m = move(CCA_OWNER_EV_HANDBACK, CCA_OWNER_OPERATOR, NULL, NULL, OP_A, "closed",
             NOW + 2 * SEC);
    out = apply_cow(closed, &m, events);
    assert_string_equal(json_string_value(json_object_get(out, "status")), "closed");
    assert_string_equal(owner_str(out, "kind"), "agent");
    json_decref(out);
    json_decref(events);
    json_decref(closed);
    json_decref(doc);
}

/* A move made by the desk, applied. */
static void test_apply_desk_move(void **state)
{
    struct cca_desk_params p = {.queue_max = 5, .default_handle_s = 120, .seed = 1};
    struct cca_desk *desk = cca_desk_new(&p);
    struct cca_desk_moves mv = {0};
    struct cca_desk_need need;
    json_t *doc = new_dialog("ru", "sales", "high");
    json_t *events = json_array();
    json_t *out;

    (void)state;
    need = cca_handoff_need(doc);
    assert_int_equal(
        cca_desk_escalate(desk, DIALOG, &need, "customer_request", "customer", NOW, &mv),
        CCA_DESK_QUEUED);
    assert_int_equal(mv.n, 1);
    out = apply_cow(doc, &mv.v[0], events);
    assert_string_equal(json_string_value(json_object_get(out, "status")), "queued");
    /* nobody on shift: position, no estimate */
    assert_string_equal(json_string_value(json_object_get(last_message(out), "content")),
                        "Все операторы сейчас заняты. Вы в очереди, ваш номер 1.");
    json_decref(out);
    cca_desk_moves_cleanup(&mv);
    cca_desk_free(desk);
    json_decref(events);
    json_decref(doc);
}

/* ---- system messages and message events -----------------------------------------------
 */

static void test_with_system(void **state)
{
    json_t *doc = new_dialog("ru", NULL, NULL);
    json_t *events = json_array();
    json_t *out;
    json_t *msg;
    json_t *data;
    json_t *m2;

    (void)state;
    out = cca_handoff_with_system(
        doc, "closing", cca_handoff_notice("closing", CCA_LANG_RU), NOW, events);
    assert_int_equal(cca_dialog_message_count(doc), 0);
    assert_int_equal(cca_dialog_message_count(out), 1);
    msg = last_message(out);
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "system");
    assert_string_equal(json_string_value(json_object_get(msg, "kind")), "closing");
    assert_string_equal(json_string_value(json_object_get(msg, "content")),
                        "Диалог завершён. Спасибо за обращение!");
    assert_int_equal(strlen(json_string_value(json_object_get(msg, "id"))), 36);
    assert_int_equal(json_array_size(events), 1);
    data = event_at(events, 0, "dialog:" DIALOG, "message");
    assert_string_equal(json_string_value(json_object_get(data, "kind")), "closing");
    /* the event's data is a copy: the document's message has no dialog_id */
    assert_null(json_object_get(msg, "dialog_id"));

    /* to the operator's stream too */
    json_array_clear(events);
    m2 = json_pack("{s:s, s:s}", "id", "m-1", "content", "hi");
    cca_handoff_message_event(events, DIALOG, m2, OP_A);
    assert_int_equal(json_array_size(events), 2);
    data = event_at(events, 0, "operator:" OP_A, "message");
    assert_string_equal(json_string_value(json_object_get(data, "dialog_id")), DIALOG);
    (void)event_at(events, 1, "dialog:" DIALOG, "message");
    assert_null(json_object_get(m2, "dialog_id"));
    json_array_clear(events);
    cca_handoff_message_event(events, DIALOG, m2, "");
    assert_int_equal(json_array_size(events), 1);
    cca_handoff_events_add(events, "operators", NULL, "queue", json_object());
    (void)event_at(events, 1, "operators", "queue");

    json_decref(m2);
    json_decref(out);
    json_decref(events);
    json_decref(doc);
}

/* ---- what a dialog needs
 * ----------------------------------------------------------------- */

static void test_need(void **state)
{
    struct cca_desk_need n;
    json_t *doc;

    (void)state;
    doc = new_dialog("en", "sales", "urgent");
    n = cca_handoff_need(doc);
    assert_int_equal(n.language, CCA_OPERATOR_LANG_BIT(CCA_LANG_EN));
    assert_int_equal(n.skill, CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SALES));
    assert_int_equal(n.priority, CCA_PRIORITY_URGENT);
    json_decref(doc);

    doc = new_dialog("ru", "tech_support", "low");
    n = cca_handoff_need(doc);
    assert_int_equal(n.language, CCA_OPERATOR_LANG_BIT(CCA_LANG_RU));
    assert_int_equal(n.skill, CCA_OPERATOR_SKILL_BIT(CCA_AGENT_TECH_SUPPORT));
    assert_int_equal(n.priority, CCA_PRIORITY_LOW);
    json_decref(doc);

    /* no agent yet: any skill; an unknown priority: normal */
    doc = new_dialog("ru", NULL, "whatever");
    n = cca_handoff_need(doc);
    assert_int_equal(n.skill, 0);
    assert_int_equal(n.priority, CCA_PRIORITY_NORMAL);
    json_decref(doc);

    /* no language recorded: the last customer message decides, else Russian */
    doc = new_dialog(NULL, "supervisor", "high");
    assert_int_equal(cca_handoff_dialog_lang(doc), CCA_LANG_RU);
    (void)json_object_set_new(doc, "messages",
                              json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "customer",
                                        "content", "My router is broken", "role", "agent",
                                        "content", "Понял, проверим"));
    n = cca_handoff_need(doc);
    assert_int_equal(n.language, CCA_OPERATOR_LANG_BIT(CCA_LANG_EN));
    assert_int_equal(n.skill, CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SUPERVISOR));
    assert_int_equal(n.priority, CCA_PRIORITY_HIGH);
    json_decref(doc);

    /* a recorded language wins over the messages */
    doc = new_dialog("ru", NULL, NULL);
    (void)json_object_set_new(
        doc, "messages",
        json_pack("[{s:s, s:s}]", "role", "customer", "content", "Hello there"));
    assert_int_equal(cca_handoff_dialog_lang(doc), CCA_LANG_RU);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wants_human_requests),
        cmocka_unit_test(test_wants_human_ordinary),
        cmocka_unit_test(test_wants_human_word_in_passing),
        cmocka_unit_test(test_parse_triggers),
        cmocka_unit_test(test_notices),
        cmocka_unit_test(test_apply_russian),
        cmocka_unit_test(test_apply_english),
        cmocka_unit_test(test_apply_detected_language),
        cmocka_unit_test(test_apply_closed),
        cmocka_unit_test(test_apply_desk_move),
        cmocka_unit_test(test_with_system),
        cmocka_unit_test(test_need),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
