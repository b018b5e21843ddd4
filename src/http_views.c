/* SPDX-License-Identifier: MIT */
/*
 * REST response bodies (openapi.yaml) made from what the engine did: the one
 * place that knows the API's field names for dialog operations.
 */
#include <math.h>
#include <stdio.h>

#include <jansson.h>

#include "cca/dialog.h"
#include "cca/engine.h"
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

/* The 200 body of a message: the reply and how it was routed. */
static json_t *message_view(const struct cca_engine_outcome *o)
{
    const struct cca_turn *t = o->turn;
    bool handoff = t->previous != CCA_AGENT_NONE;
    json_t *r = json_object();

    (void)json_object_set_new(r, "dialog_id", json_string(o->dialog_id));
    (void)json_object_set_new(r, "message_id", json_string(o->message_id));
    (void)json_object_set_new(r, "current_agent", agent_json(t->route.agent));
    (void)json_object_set_new(r, "previous_agent", agent_json(t->previous));
    (void)json_object_set_new(r, "handoff_reason",
                              handoff ? json_string(t->handoff_reason) : json_null());
    (void)json_object_set_new(r, "response", json_string(t->reply));
    (void)json_object_set(r, "status", json_object_get(o->doc, "status"));
    (void)json_object_set_new(r, "tokens_used", json_integer(t->tokens));
    (void)json_object_set_new(r, "processing_time",
                              json_real(round(o->processing_s * 1e6) / 1e6));
    (void)json_object_set_new(r, "route", cca_route_to_json(&t->route));
    (void)json_object_set_new(r, "degraded", json_boolean(t->degraded));
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
