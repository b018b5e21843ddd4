/* SPDX-License-Identifier: MIT */
/*
 * The human side's document work (include/cca/handoff.h): the "ask for a
 * person" lexicon, the customer-facing texts in Russian and English, and a
 * desk move as a document change plus its events.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cca/handoff.h"
#include "cca/mem.h"

/* ---- asking for a person ------------------------------------------------------- */

/*
 * Phrases that ask for a person. Matched on stems as consecutive tokens, so
 * "позовите оператора" also covers "позови оператора" and "позовите
 * операторa, пожалуйста". Articles and "please" are not tokens here.
 */
static const char *const phrases[] = {
    /* Russian */
    "позовите оператора",
    "позови оператора",
    "позвать оператора",
    "зовите оператора",
    "нужен оператор",
    "хочу оператора",
    "дайте оператора",
    "соедините с оператором",
    "соедините с человеком",
    "соединить с оператором",
    "переключите на оператора",
    "переключите на человека",
    "переведите на оператора",
    "с живым человеком",
    "живой человек",
    "живой оператор",
    "живого человека",
    "поговорить с человеком",
    "поговорить с оператором",
    "связаться с оператором",
    "позовите человека",
    "нужен человек",
    "хочу с человеком",
    "реальный человек",
    /* English */
    "talk to human",
    "speak to human",
    "talk to person",
    "speak to person",
    "talk with human",
    "speak with human",
    "talk to operator",
    "speak to operator",
    "talk to agent",
    "speak to agent",
    "talk to someone",
    "speak to someone",
    "talk to real",
    "speak to real",
    "real person",
    "live person",
    "real human",
    "human agent",
    "live agent",
    "human operator",
    "want human",
    "need human",
    "connect me to operator",
    "transfer me to human",
    "transfer me to operator",
    "get me human",
};

/* A message that is this one word asks for a person. */
static const char *const single[] = {"оператор", "оператора", "человек", "operator",
                                     "human",    "agent",     "person"};

static const char *const skip[] = {"a",          "an", "the", "please",
                                   "пожалуйста", "me", "мне", "меня"};

#define MAX_PHRASE_TOKENS 6

struct phrase {
    size_t n;
    char stem[MAX_PHRASE_TOKENS][64];
};

static struct phrase compiled[CCA_ARRAY_SIZE(phrases)];
static char single_stems[CCA_ARRAY_SIZE(single)][64];
static pthread_once_t compiled_once = PTHREAD_ONCE_INIT;

static bool skipped(const char *word)
{
    for (size_t i = 0; i < CCA_ARRAY_SIZE(skip); i++) {
        if (strcmp(word, skip[i]) == 0)
            return true;
    }
    return false;
}

static void compile(void)
{
    for (size_t i = 0; i < CCA_ARRAY_SIZE(phrases); i++) {
        struct cca_text_tokens t = {0};

        if (cca_text_analyze(phrases[i], strlen(phrases[i]), &t) == CCA_OK) {
            for (size_t k = 0; k < t.count && compiled[i].n < MAX_PHRASE_TOKENS; k++) {
                if (!skipped(t.word[k]))
                    (void)snprintf(compiled[i].stem[compiled[i].n++], 64, "%s",
                                   t.stem[k]);
            }
        }
        cca_text_tokens_cleanup(&t);
    }
    for (size_t i = 0; i < CCA_ARRAY_SIZE(single); i++) {
        struct cca_text_tokens t = {0};

        if (cca_text_analyze(single[i], strlen(single[i]), &t) == CCA_OK && t.count == 1)
            (void)snprintf(single_stems[i], 64, "%s", t.stem[0]);
        cca_text_tokens_cleanup(&t);
    }
}

bool cca_handoff_wants_human(const char *text, size_t len)
{
    struct cca_text_tokens t = {0};
    const char *stems[CCA_TEXT_MAX_TOKENS];
    size_t n = 0;
    bool found = false;

    (void)pthread_once(&compiled_once, compile);
    if (cca_text_analyze(text, len, &t) != CCA_OK)
        goto out;
    for (size_t k = 0; k < t.count; k++) {
        if (!skipped(t.word[k]))
            stems[n++] = t.stem[k];
    }
    for (size_t i = 0; n == 1 && i < CCA_ARRAY_SIZE(single) && !found; i++)
        found = single_stems[i][0] != '\0' && strcmp(stems[0], single_stems[i]) == 0;
    for (size_t p = 0; p < CCA_ARRAY_SIZE(compiled) && !found; p++) {
        const struct phrase *ph = &compiled[p];

        for (size_t at = 0; ph->n > 0 && at + ph->n <= n && !found; at++) {
            size_t k = 0;

            while (k < ph->n && strcmp(stems[at + k], ph->stem[k]) == 0)
                k++;
            found = k == ph->n;
        }
    }
out:
    cca_text_tokens_cleanup(&t);
    return found;
}

cca_rc cca_handoff_parse_triggers(const char *csv, unsigned *ret,
                                  struct cca_error *reterr)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"request", CCA_HANDOFF_REQUEST},
                 {"supervisor", CCA_HANDOFF_SUPERVISOR},
                 {"degraded", CCA_HANDOFF_DEGRADED},
                 {"none", 0}};
    unsigned bits = 0;
    const char *p = csv != NULL ? csv : "";

    while (*p != '\0') {
        size_t n;
        bool known = false;

        while (*p == ' ' || *p == ',')
            p++;
        n = strcspn(p, ", ");
        if (n == 0)
            break;
        for (size_t i = 0; i < CCA_ARRAY_SIZE(names); i++) {
            if (strlen(names[i].name) == n && strncmp(p, names[i].name, n) == 0) {
                bits |= names[i].bit;
                known = true;
            }
        }
        if (!known)
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "HUMAN_HANDOFF: unknown trigger '%.*s' (request, "
                                 "supervisor, degraded)",
                                 (int)(n > 32 ? 32 : n), p);
        p += n;
    }
    *ret = bits;
    return CCA_OK;
}

/* ---- texts ------------------------------------------------------------------------ */

struct notice {
    const char *what;
    const char *text[CCA_LANG__COUNT]; /* [CCA_LANG_EN], [CCA_LANG_RU] */
};

static const struct notice notices[] = {
    {"queued",
     {"All our operators are busy right now. You are number %zu in the queue.",
      "Все операторы сейчас заняты. Вы в очереди, ваш номер %zu."}},
    {"wait", {" The estimated wait is about %s.", " Ожидание около %s."}},
    {"assigned",
     {"%s from our support team has joined the conversation.",
      "К диалогу подключился оператор %s."}},
    {"requeued",
     {"Your operator had to leave; you are back in the queue, number %zu.",
      "Оператор не может продолжить диалог. Вы снова в очереди, ваш номер %zu."}},
    {"transferred",
     {"Your conversation has been passed to %s.", "Диалог передан оператору %s."}},
    {"handed_back",
     {"You are back with our virtual assistant; write your question and it will answer.",
      "Вам снова отвечает виртуальный помощник: напишите ваш вопрос."}},
    {"full",
     {"No operator can take your conversation right now; our virtual assistant will "
      "keep helping you.",
      "Сейчас ни один оператор не может принять диалог; вам продолжит помогать "
      "виртуальный помощник."}},
    {"position",
     {"You are still in the queue, number %zu. An operator will answer soon.",
      "Вы по-прежнему в очереди, ваш номер %zu. Оператор скоро ответит."}},
    {"closing",
     {"This conversation is closed. Thank you for contacting us!",
      "Диалог завершён. Спасибо за обращение!"}},
    {"csat",
     {"Please rate this conversation from 1 (bad) to 5 (excellent).",
      "Пожалуйста, оцените разговор от 1 (плохо) до 5 (отлично)."}},
};

const char *cca_handoff_notice(const char *what, enum cca_lang lang)
{
    if ((unsigned)lang >= CCA_LANG__COUNT)
        lang = CCA_LANG_RU;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(notices); i++) {
        if (strcmp(notices[i].what, what) == 0)
            return notices[i].text[lang];
    }
    return "";
}

/* "N min" / "N мин" (at least 1), or "" when unknown. */
static void wait_text(double eta_s, enum cca_lang lang, char *buf, size_t size)
{
    long min;

    buf[0] = '\0';
    if (eta_s < 0 || !isfinite(eta_s))
        return;
    min = (long)ceil(eta_s / 60.0);
    if (min < 1)
        min = 1;
    (void)snprintf(buf, size, lang == CCA_LANG_RU ? "%ld мин" : "%ld min", min);
}

/* The queue notice with the wait, when one is known. */
static void queued_text(const char *what, size_t position, double eta_s,
                        enum cca_lang lang, char *buf, size_t size)
{
    char wait[32];
    size_t n;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    n = (size_t)snprintf(buf, size, cca_handoff_notice(what, lang), position);
    wait_text(eta_s, lang, wait, sizeof(wait));
    if (wait[0] != '\0' && n < size)
        (void)snprintf(buf + n, size - n, cca_handoff_notice("wait", lang), wait);
#pragma GCC diagnostic pop
}

enum cca_lang cca_handoff_dialog_lang(json_t *doc)
{
    const char *code = json_string_value(json_object_get(doc, "language"));
    json_t *messages = json_object_get(doc, "messages");

    if (code != NULL)
        return strcmp(code, "en") == 0 ? CCA_LANG_EN : CCA_LANG_RU;
    for (size_t i = json_array_size(messages); i-- > 0;) {
        json_t *m = json_array_get(messages, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *text = json_string_value(json_object_get(m, "content"));

        if (role != NULL && text != NULL && strcmp(role, "customer") == 0)
            return cca_text_detect_lang(text, strlen(text));
    }
    return CCA_LANG_RU;
}

struct cca_desk_need cca_handoff_need(json_t *doc)
{
    struct cca_desk_need need = {.priority = CCA_PRIORITY_NORMAL};
    enum cca_agent agent = cca_dialog_get_agent(doc);

    need.language = CCA_OPERATOR_LANG_BIT(cca_handoff_dialog_lang(doc));
    need.skill = agent != CCA_AGENT_NONE ? CCA_OPERATOR_SKILL_BIT(agent) : 0;
    (void)cca_priority_parse(cca_dialog_get_str(doc, "priority"), &need.priority);
    return need;
}

/* ---- events
 * ---------------------------------------------------------------------------- */

void cca_handoff_events_add(json_t *events, const char *topic_kind, const char *id,
                            const char *type, json_t *data)
{
    json_t *e = json_object();
    char topic[64];

    if (id != NULL)
        (void)snprintf(topic, sizeof(topic), "%s:%s", topic_kind, id);
    else
        (void)snprintf(topic, sizeof(topic), "%s", topic_kind);
    (void)json_object_set_new(e, "topic", json_string(topic));
    (void)json_object_set_new(e, "type", json_string(type));
    (void)json_object_set_new(e, "data", data);
    (void)json_array_append_new(events, e);
}

void cca_handoff_message_event(json_t *events, const char *dialog_id, json_t *msg,
                               const char *operator_id)
{
    json_t *data = json_copy(msg); /* shallow: the message's children are immutable */

    (void)json_object_set_new(data, "dialog_id", json_string(dialog_id));
    if (operator_id != NULL && operator_id[0] != '\0')
        cca_handoff_events_add(events, "operator", operator_id, "message",
                               json_incref(data));
    cca_handoff_events_add(events, "dialog", dialog_id, "message", data);
}

json_t *cca_handoff_with_system(json_t *doc, const char *kind, const char *text,
                                int64_t now_ms, json_t *events)
{
    char id[37];
    struct cca_dialog_message m = {
        .id = id, .role = "system", .content = text, .kind = kind, .at_ms = now_ms};
    json_t *out;
    json_t *messages;

    cca_uuid_new(id);
    out = cca_dialog_with_message(doc, &m);
    messages = json_object_get(out, "messages");
    cca_handoff_message_event(events, cca_dialog_get_str(doc, "dialog_id"),
                              json_array_get(messages, json_array_size(messages) - 1),
                              NULL);
    return out;
}

static json_t *str_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

/* The "owner" event's data. */
static json_t *owner_data(const struct cca_desk_move *m)
{
    json_t *d = json_object();

    (void)json_object_set_new(d, "dialog_id", json_string(m->dialog_id));
    (void)json_object_set_new(d, "owner", json_string(cca_owner_name(m->to)));
    (void)json_object_set_new(d, "operator_id", str_or_null(m->operator_id));
    (void)json_object_set_new(d, "operator_name", str_or_null(m->operator_name));
    (void)json_object_set_new(d, "event", json_string(cca_owner_event_name(m->event)));
    (void)json_object_set_new(d, "reason", str_or_null(m->reason));
    if (m->to == CCA_OWNER_QUEUE) {
        (void)json_object_set_new(d, "position", json_integer((json_int_t)m->position));
        (void)json_object_set_new(d, "estimated_wait_s",
                                  m->eta_s >= 0 ? json_integer((json_int_t)m->eta_s)
                                                : json_null());
    }
    return d;
}

json_t *cca_handoff_apply(json_t *doc, const struct cca_desk_move *m, json_t *events)
{
    struct cca_dialog_transition t = {
        .event = m->event,
        .from = m->from,
        .to = m->to,
        .operator_id = m->operator_id[0] ? m->operator_id : NULL,
        .operator_name = m->operator_name[0] ? m->operator_name : NULL,
        .prev_operator_id = m->prev_operator_id[0] ? m->prev_operator_id : NULL,
        .actor = m->actor,
        .reason = m->reason,
        .requeued = m->requeued,
        .queue_seq = m->queue_seq,
        .at_ms = m->at_ms};
    enum cca_lang lang = cca_handoff_dialog_lang(doc);
    const char *kind = NULL;
    char text[512] = "";
    json_t *next = cca_dialog_with_transition(doc, &t);
    json_t *out;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    switch (m->event) {
        case CCA_OWNER_EV_ENQUEUE:
            kind = "queue";
            queued_text("queued", m->position, m->eta_s, lang, text, sizeof(text));
            break;
        case CCA_OWNER_EV_REQUEUE:
            kind = "requeued";
            queued_text("requeued", m->position, m->eta_s, lang, text, sizeof(text));
            break;
        case CCA_OWNER_EV_ASSIGN:
            kind = "assigned";
            (void)snprintf(text, sizeof(text), cca_handoff_notice("assigned", lang),
                           m->operator_name);
            break;
        case CCA_OWNER_EV_TRANSFER:
            kind = "transferred";
            (void)snprintf(text, sizeof(text), cca_handoff_notice("transferred", lang),
                           m->operator_name);
            break;
        case CCA_OWNER_EV_HANDBACK:
            kind = "handed_back";
            (void)snprintf(text, sizeof(text), "%s",
                           cca_handoff_notice("handed_back", lang));
            break;
        default:
            break;
    }
#pragma GCC diagnostic pop
    cca_handoff_events_add(events, "dialog", m->dialog_id, "owner", owner_data(m));
    if (m->to == CCA_OWNER_OPERATOR)
        cca_handoff_events_add(events, "operator", m->operator_id, "assigned",
                               owner_data(m));
    if (m->prev_operator_id[0] != '\0' &&
        strcmp(m->prev_operator_id, m->operator_id) != 0) {
        json_t *d = owner_data(m);

        /* Why the previous operator lost it: the cause, not the caller's text. */
        (void)json_object_set_new(
            d, "reason",
            json_string(m->event == CCA_OWNER_EV_TRANSFER   ? "transfer"
                        : m->event == CCA_OWNER_EV_HANDBACK ? "handback"
                                                            : m->reason));
        (void)json_object_set_new(d, "detail", str_or_null(m->reason));
        cca_handoff_events_add(events, "operator", m->prev_operator_id, "unassigned", d);
    }
    if (kind == NULL || text[0] == '\0')
        return next;
    out = cca_handoff_with_system(next, kind, text, m->at_ms, events);
    json_decref(next);
    return out;
}
