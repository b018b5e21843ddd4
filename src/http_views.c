/* SPDX-License-Identifier: MIT */
/*
 * REST response bodies (openapi.yaml) made from what the engine did: the one
 * place that knows the API's field names for dialog operations.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cca/dialog.h"
#include "cca/engine.h"
#include "cca/operator.h"
#include "cca/router.h"

#include "http_int.h"

static json_t *agent_json(enum cca_agent a)
{
    const char *name = cca_agent_name(a);

    return name != NULL ? json_string(name) : json_null();
}

/* The 201 body of a create: the new dialog and the reply to initial_message. */
static json_t *create_view(const struct cca_engine_outcome *o)
{
    static const char *const copied[] = {
        "dialog_id",     "customer_id", "customer_info", "assigned_agent",
        "current_agent", "status",      "priority",      "source"};
    const struct cca_turn *t = o->turn;
    json_t *r = json_object();

    for (size_t i = 0; i < CCA_ARRAY_SIZE(copied); i++)
        (void)json_object_set(r, copied[i], json_object_get(o->doc, copied[i]));
    (void)json_object_set_new(r, "response", t ? json_string(t->reply) : json_null());
    (void)json_object_set_new(r, "route", t ? cca_route_to_json(&t->route) : json_null());
    (void)json_object_set_new(r, "degraded", json_boolean(t && t->degraded));
    (void)json_object_set_new(r, "tokens_used", json_integer(t ? t->tokens : 0));
    (void)json_object_set(r, "created_at", json_object_get(o->doc, "created_at"));
    return r;
}

/* {"position", "estimated_wait_s"} of a queued dialog, else null. */
static json_t *queue_json(const struct cca_engine_outcome *o)
{
    json_t *q;

    if (o->owner != CCA_OWNER_QUEUE)
        return json_null();
    q = json_object();
    (void)json_object_set_new(q, "position", json_integer((json_int_t)o->position));
    (void)json_object_set_new(q, "estimated_wait_s",
                              o->eta_s >= 0 ? json_integer((json_int_t)ceil(o->eta_s))
                                            : json_null());
    return q;
}

static json_t *owner_json(enum cca_owner owner)
{
    const char *name = cca_owner_name(owner);

    return json_string(name != NULL ? name : "agent");
}

/*
 * The body of a message: the reply and how it was routed, and who owns the
 * dialog now. A message stored for a human (human_turn) has no reply: the
 * route answers 202 (cca_http_finish_message).
 */
static json_t *message_view(const struct cca_engine_outcome *o)
{
    const struct cca_turn *t = o->human_turn ? NULL : o->turn;
    bool handoff = t != NULL && t->previous != CCA_AGENT_NONE;
    json_t *r = json_object();

    (void)json_object_set_new(r, "dialog_id", json_string(o->dialog_id));
    (void)json_object_set_new(r, "message_id", json_string(o->message_id));
    if (t != NULL)
        (void)json_object_set_new(r, "current_agent", agent_json(t->route.agent));
    else
        (void)json_object_set(r, "current_agent",
                              json_object_get(o->doc, "current_agent"));
    (void)json_object_set_new(r, "previous_agent",
                              t != NULL ? agent_json(t->previous) : json_null());
    (void)json_object_set_new(r, "handoff_reason",
                              handoff ? json_string(t->handoff_reason) : json_null());
    (void)json_object_set_new(r, "response",
                              t != NULL ? json_string(t->reply) : json_null());
    (void)json_object_set(r, "status", json_object_get(o->doc, "status"));
    (void)json_object_set_new(r, "tokens_used", json_integer(t != NULL ? t->tokens : 0));
    (void)json_object_set_new(r, "processing_time",
                              json_real(round(o->processing_s * 1e6) / 1e6));
    (void)json_object_set_new(r, "route",
                              t != NULL ? cca_route_to_json(&t->route) : json_null());
    (void)json_object_set_new(r, "degraded", json_boolean(t != NULL && t->degraded));
    (void)json_object_set_new(r, "owner", owner_json(o->owner));
    (void)json_object_set_new(r, "queue", queue_json(o));
    return r;
}

static const char *escalation_name(enum cca_desk_escalation e)
{
    switch (e) {
        case CCA_DESK_ASSIGNED:
            return "assigned";
        case CCA_DESK_QUEUED:
            return "queued";
        case CCA_DESK_FULL:
            return "full";
        case CCA_DESK_ALREADY:
            return "already";
    }
    return "already";
}

/* POST /dialogue/{id}/handoff: who owns the dialog now. */
static json_t *handoff_view(const struct cca_engine_outcome *o)
{
    json_t *r = json_object();

    (void)json_object_set_new(r, "dialog_id", json_string(o->dialog_id));
    (void)json_object_set(r, "status", json_object_get(o->doc, "status"));
    (void)json_object_set_new(r, "owner", owner_json(o->owner));
    (void)json_object_set_new(
        r, "operator_id", o->operator_id[0] ? json_string(o->operator_id) : json_null());
    (void)json_object_set_new(r, "queue", queue_json(o));
    (void)json_object_set_new(r, "escalation",
                              o->escalated ? json_string(escalation_name(o->escalation))
                                           : json_null());
    return r;
}

/* The stored message @id of @doc; the last message when there is none with that id. */
static json_t *find_message(json_t *doc, const char *id)
{
    json_t *messages = json_object_get(doc, "messages");
    size_t n = json_array_size(messages);

    for (size_t i = n; id != NULL && i > 0; i--) {
        json_t *m = json_array_get(messages, i - 1);
        const char *mid = json_string_value(json_object_get(m, "id"));

        if (mid != NULL && strcmp(mid, id) == 0)
            return m;
    }
    return n > 0 ? json_array_get(messages, n - 1) : NULL;
}

/* POST /dialogue/{id}/reply: the operator's message as stored. */
static json_t *reply_view(const struct cca_engine_outcome *o)
{
    json_t *m = find_message(o->doc, o->message_id);
    json_t *r = json_object();

    (void)json_object_set_new(r, "dialog_id", json_string(o->dialog_id));
    (void)json_object_set(r, "message_id", json_object_get(m, "id"));
    (void)json_object_set(r, "timestamp", json_object_get(m, "timestamp"));
    (void)json_object_set(r, "status", json_object_get(o->doc, "status"));
    (void)json_object_set_new(r, "owner", owner_json(o->owner));
    return r;
}

/*
 * POST /dialogue/{id}/rating: {"dialog_id", "rating"}. A repeat of the stored
 * rating carries "_repeat": true, which the route's finish removes (the
 * answer is then 200, the same body).
 */
static json_t *rating_view(const struct cca_engine_outcome *o)
{
    json_t *r = json_object();

    (void)json_object_set_new(r, "dialog_id", json_string(o->dialog_id));
    (void)json_object_set(r, "rating", json_object_get(o->doc, "rating"));
    if (o->rating_repeat)
        (void)json_object_set_new(r, "_repeat", json_true());
    return r;
}

/*
 * Operator creates: {"operator_id", "operator"} (the route's finish adds the
 * token); updates: the operator view; deletes: {"success", "operator_id"}.
 * The live "open_dialogs" is added by the route's finish (the desk's count).
 */
static json_t *operator_view(const struct cca_engine_outcome *o)
{
    json_t *r;

    if (o->op == CCA_OP_OPERATOR_DELETE) {
        r = json_object();
        (void)json_object_set_new(r, "success", json_true());
        (void)json_object_set(r, "operator_id",
                              json_object_get(o->operator_doc, "operator_id"));
        return r;
    }
    if (o->op == CCA_OP_OPERATOR_UPDATE)
        return cca_operator_public_view(o->operator_doc);
    r = json_object();
    (void)json_object_set(r, "operator_id",
                          json_object_get(o->operator_doc, "operator_id"));
    (void)json_object_set_new(r, "operator", cca_operator_public_view(o->operator_doc));
    return r;
}

static json_t *deleted_view(const struct cca_engine_outcome *o)
{
    json_t *r = json_object();
    char msg[96];

    (void)snprintf(msg, sizeof(msg), "Dialog %s deleted", o->dialog_id);
    (void)json_object_set_new(r, "success", json_true());
    (void)json_object_set_new(r, "dialog_id", json_string(o->dialog_id));
    (void)json_object_set_new(r, "message", json_string(msg));
    return r;
}

static json_t *cleanup_view(const struct cca_engine_outcome *o)
{
    json_t *r = json_object();
    char msg[96];

    if (o->op == CCA_OP_CLEANUP_INACTIVE) {
        (void)json_object_set_new(r, "message", json_string("Cleanup finished"));
        (void)json_object_set_new(r, "closed_dialogs", json_integer(o->count));
        (void)json_object_set_new(r, "inactivity_timeout_s",
                                  json_integer(o->inactivity_timeout_s));
        return r;
    }
    (void)snprintf(msg, sizeof(msg), "Deleted %u closed dialogs older than %u days",
                   o->count, o->older_than_days);
    (void)json_object_set_new(r, "deleted_count", json_integer(o->count));
    (void)json_object_set_new(r, "older_than_days", json_integer(o->older_than_days));
    (void)json_object_set_new(r, "message", json_string(msg));
    return r;
}

json_t *cca_http_view_outcome(const struct cca_engine_outcome *o)
{
    switch (o->op) {
        case CCA_OP_CREATE:
            return create_view(o);
        case CCA_OP_MESSAGE:
            return message_view(o);
        case CCA_OP_CLOSE:
            return cca_dialog_close_view(o->doc);
        case CCA_OP_DELETE:
            return deleted_view(o);
        case CCA_OP_CLEANUP_INACTIVE:
        case CCA_OP_CLEANUP_CLOSED:
            return cleanup_view(o);
        case CCA_OP_HANDOFF:
            return handoff_view(o);
        case CCA_OP_REPLY:
            return reply_view(o);
        case CCA_OP_TAKE:
            return json_incref(o->doc); /* the dialog document, as GET shows it */
        case CCA_OP_RATE:
            return rating_view(o);
        case CCA_OP_OPERATOR_CREATE:
        case CCA_OP_OPERATOR_UPDATE:
        case CCA_OP_OPERATOR_DELETE:
            return operator_view(o);
        case CCA_OP_MOVE:
            return NULL; /* internal: nobody waits for a body */
        case CCA_OP_CUSTOMER_PUT:
            return o->customer_doc != NULL ? json_incref(o->customer_doc) : NULL;
        case CCA_OP_PUT:
            return NULL; /* the Telegram channel's own documents: no REST body */
    }
    return json_object();
}

json_t *cca_http_view_page(const struct cca_engine_page *page, bool full)
{
    json_t *out = json_object();
    json_t *items = json_array();

    for (size_t i = 0; i < page->n; i++)
        (void)json_array_append_new(items, full ? json_incref(page->docs[i])
                                                : cca_dialog_summary_view(page->docs[i]));
    (void)json_object_set_new(out, "items", items);
    (void)json_object_set_new(out, "next_cursor",
                              page->next_cursor[0] ? json_string(page->next_cursor)
                                                   : json_null());
    return out;
}
