/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/dialog.h"
#include "cca/mem.h"

static const char *const status_names[CCA_DIALOG_STATUS__COUNT] = {
    [CCA_DIALOG_ACTIVE] = "active",     [CCA_DIALOG_ESCALATED] = "escalated",
    [CCA_DIALOG_CLOSED] = "closed",     [CCA_DIALOG_QUEUED] = "queued",
    [CCA_DIALOG_ASSIGNED] = "assigned",
};

const char *cca_dialog_status_name(enum cca_dialog_status s)
{
    if ((int)s < 0 || (size_t)s >= CCA_ARRAY_SIZE(status_names))
        return "active";
    return status_names[s];
}

bool cca_dialog_status_parse(const char *name, enum cca_dialog_status *ret)
{
    for (size_t i = 0; name != NULL && i < CCA_ARRAY_SIZE(status_names); i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *ret = (enum cca_dialog_status)i;
            return true;
        }
    }
    return false;
}

void cca_dialog_create_cleanup(struct cca_dialog_create *c)
{
    if (c == NULL)
        return;
    free(c->customer_id);
    free(c->name);
    free(c->phone);
    free(c->email);
    free(c->initial_message);
    free(c->source);
    free(c->priority);
    memset(c, 0, sizeof(*c));
}

static json_t *str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *time_json(int64_t ms)
{
    char buf[CCA_TIME_LEN];

    cca_time_format(ms, buf);
    return json_string(buf);
}

static json_t *agent_json(enum cca_agent a)
{
    return str_or_null(cca_agent_name(a));
}

json_t *cca_dialog_new_doc(const char *id, const struct cca_dialog_create *c,
                           int64_t now_ms)
{
    json_t *doc = json_object();
    json_t *info = json_object();
    json_t *meta = json_object();

    (void)json_object_set_new(info, "name", str_or_null(c->name));
    (void)json_object_set_new(info, "phone", str_or_null(c->phone));
    (void)json_object_set_new(info, "email", str_or_null(c->email));
    (void)json_object_set_new(info, "customer_id", str_or_null(c->customer_id));
    (void)json_object_set_new(meta, "total_tokens", json_integer(0));
    (void)json_object_set_new(meta, "processing_times", json_array());
    (void)json_object_set_new(meta, "handoffs", json_array());

    (void)json_object_set_new(doc, "dialog_id", json_string(id));
    (void)json_object_set_new(doc, "customer_id", str_or_null(c->customer_id));
    (void)json_object_set_new(doc, "customer_info", info);
    (void)json_object_set_new(doc, "status", json_string("active"));
    (void)json_object_set_new(doc, "assigned_agent", json_null());
    (void)json_object_set_new(doc, "current_agent", json_null());
    (void)json_object_set_new(doc, "priority",
                              json_string(c->priority ? c->priority : "normal"));
    (void)json_object_set_new(doc, "source", json_string(c->source ? c->source : "api"));
    (void)json_object_set_new(doc, "created_at", time_json(now_ms));
    (void)json_object_set_new(doc, "updated_at", time_json(now_ms));
    (void)json_object_set_new(doc, "closed_at", json_null());
    (void)json_object_set_new(doc, "close_reason", json_null());
    (void)json_object_set_new(doc, "summary", json_null());
    (void)json_object_set_new(doc, "messages", json_array());
    (void)json_object_set_new(doc, "metadata", meta);
    return doc;
}

static json_t *message_json(const char *id, const char *role, const char *content,
                            int64_t at_ms, enum cca_agent agent)
{
    json_t *m = json_object();

    (void)json_object_set_new(m, "id", json_string(id));
    (void)json_object_set_new(m, "role", json_string(role));
    (void)json_object_set_new(m, "content", json_string(content));
    (void)json_object_set_new(m, "timestamp", time_json(at_ms));
    (void)json_object_set_new(m, "agent_type", agent_json(agent));
    return m;
}

/* A shallow copy of @doc[key] (an object or array) set into @copy: copy-on-write. */
static json_t *cow_child(json_t *copy, json_t *doc, const char *key)
{
    json_t *child = json_copy(json_object_get(doc, key));

    if (child == NULL)
        child = strcmp(key, "metadata") == 0 ? json_object() : json_array();
    (void)json_object_set_new(copy, key, child);
    return child;
}

json_t *cca_dialog_with_turn(json_t *doc, const struct cca_dialog_turn *t)
{
    json_t *copy = json_copy(doc);
    json_t *messages = cow_child(copy, doc, "messages");
    json_t *meta = cow_child(copy, doc, "metadata");
    json_t *times = cow_child(meta, json_object_get(doc, "metadata"), "processing_times");
    json_t *customer;
    json_t *reply;
    json_int_t total = json_integer_value(json_object_get(meta, "total_tokens"));

    customer =
        message_json(t->customer_msg_id, "customer", t->text, t->received_ms, t->agent);
    (void)json_object_set_new(customer, "route", cca_route_to_json(t->route));
    if (t->channel != NULL)
        (void)json_object_set(customer, "channel", t->channel);
    (void)json_array_append_new(messages, customer);

    reply = message_json(t->agent_msg_id, "agent", t->reply, t->replied_ms, t->agent);
    (void)json_object_set_new(reply, "tokens", json_integer(t->tokens));
    (void)json_object_set_new(reply, "latency_ms", json_integer(t->latency_ms));
    (void)json_object_set_new(reply, "degraded", json_boolean(t->degraded));
    (void)json_array_append_new(messages, reply);

    if (json_is_null(json_object_get(doc, "assigned_agent")))
        (void)json_object_set_new(copy, "assigned_agent", agent_json(t->agent));
    (void)json_object_set_new(copy, "current_agent", agent_json(t->agent));
    if (t->agent == CCA_AGENT_SUPERVISOR)
        (void)json_object_set_new(copy, "status", json_string("escalated"));
    (void)json_object_set_new(copy, "updated_at", time_json(t->replied_ms));
    /* A stored total can be any integer (hand-edited file): saturate, never wrap. */
    if (__builtin_add_overflow(total, (json_int_t)t->tokens, &total))
        total = t->tokens > 0 ? LLONG_MAX : LLONG_MIN;
    (void)json_object_set_new(meta, "total_tokens", json_integer(total));
    (void)json_array_append_new(times, json_real(round(t->processing_s * 1e6) / 1e6));

    if (t->previous != CCA_AGENT_NONE) {
        json_t *handoffs = cow_child(meta, json_object_get(doc, "metadata"), "handoffs");
        json_t *h = json_object();

        (void)json_object_set_new(h, "from", agent_json(t->previous));
        (void)json_object_set_new(h, "to", agent_json(t->agent));
        (void)json_object_set_new(
            h, "reason", json_string(t->handoff_reason ? t->handoff_reason : "routing"));
        (void)json_object_set_new(h, "at", time_json(t->received_ms));
        (void)json_array_append_new(handoffs, h);
    }
    return copy;
}

static bool record_live(json_t *rec, int64_t now_ms, int64_t ttl_ms)
{
    int64_t at;

    return json_is_object(rec) &&
           cca_time_parse(json_string_value(json_object_get(rec, "created_at")), &at) &&
           now_ms - at < ttl_ms;
}

json_t *cca_dialog_find_idempotency(json_t *doc, const char *key, const char *operation,
                                    int64_t now_ms, int64_t ttl_ms)
{
    json_t *records = json_object_get(json_object_get(doc, "metadata"), "idempotency");
    json_t *rec;
    size_t i;

    json_array_foreach (records, i, rec) {
        const char *k = json_string_value(json_object_get(rec, "key"));
        const char *o = json_string_value(json_object_get(rec, "operation"));

        if (k != NULL && o != NULL && strcmp(k, key) == 0 && strcmp(o, operation) == 0 &&
            record_live(rec, now_ms, ttl_ms))
            return rec;
    }
    return NULL;
}

const char *cca_dialog_idempotency_hash(json_t *rec)
{
    return json_string_value(json_object_get(rec, "request_hash"));
}

json_t *cca_dialog_idempotency_response(json_t *rec)
{
    return json_object_get(rec, "response");
}

const char *cca_dialog_create_key(json_t *doc, int64_t now_ms, int64_t ttl_ms)
{
    json_t *records = json_object_get(json_object_get(doc, "metadata"), "idempotency");
    json_t *rec;
    size_t i;

    json_array_foreach (records, i, rec) {
        const char *o = json_string_value(json_object_get(rec, "operation"));

        if (o != NULL && strcmp(o, "create") == 0 && record_live(rec, now_ms, ttl_ms))
            return json_string_value(json_object_get(rec, "key"));
    }
    return NULL;
}

json_t *cca_dialog_with_idempotency(json_t *doc, const char *key, const char *operation,
                                    const char *request_hash, json_t *response,
                                    int64_t now_ms, int64_t ttl_ms, size_t max_records)
{
    json_t *copy = json_copy(doc);
    json_t *meta = cow_child(copy, doc, "metadata");
    json_t *old = json_object_get(meta, "idempotency");
    json_t *records = json_array();
    json_t *rec;
    size_t i;

    json_array_foreach (old, i, rec) {
        if (record_live(rec, now_ms, ttl_ms))
            (void)json_array_append(records, rec);
    }
    if (max_records > 0 && json_array_size(records) >= max_records) {
        /* Full: keep the newest half (records are in the order they were added). */
        size_t drop = json_array_size(records) - max_records / 2;

        while (drop-- > 0)
            (void)json_array_remove(records, 0);
    }
    rec = json_object();
    (void)json_object_set_new(rec, "key", json_string(key));
    (void)json_object_set_new(rec, "operation", json_string(operation));
    (void)json_object_set_new(rec, "request_hash", json_string(request_hash));
    (void)json_object_set_new(rec, "created_at", time_json(now_ms));
    (void)json_object_set(rec, "response", response);
    (void)json_array_append_new(records, rec);
    (void)json_object_set_new(meta, "idempotency", records);
    return copy;
}

/* A one-line human summary of how the dialog went, from its own data. */
static char *resolution_text(json_t *doc, const char *reason)
{
    json_t *messages = json_object_get(doc, "messages");
    json_t *handoffs = json_object_get(json_object_get(doc, "metadata"), "handoffs");
    const char *assigned = cca_dialog_get_str(doc, "assigned_agent");
    const char *current = cca_dialog_get_str(doc, "current_agent");
    const char *first = NULL;
    char who[160];
    char path[160] = "";
    char *out;
    size_t i;
    json_t *m;
    size_t n;

    json_array_foreach (messages, i, m) {
        if (strcmp(json_string_value(json_object_get(m, "role")) ?: "", "customer") ==
            0) {
            first = json_string_value(json_object_get(m, "content"));
            break;
        }
    }
    if (assigned == NULL) {
        (void)snprintf(path, sizeof(path), "no agent");
    } else {
        size_t used = (size_t)snprintf(path, sizeof(path), "%s", assigned);
        json_t *h;

        json_array_foreach (handoffs, i, h) {
            const char *to = json_string_value(json_object_get(h, "to"));

            if (used < sizeof(path))
                used += (size_t)snprintf(path + used, sizeof(path) - used, " -> %s",
                                         to ? to : "?");
        }
    }
    /* Who closed it: the operator who owned it, else the AI agent. */
    if (cca_dialog_get_owner(doc, NULL) == CCA_OWNER_OPERATOR)
        (void)snprintf(who, sizeof(who), "operator %s",
                       json_string_value(cca_dialog_owner_field(doc, "operator_name"))
                           ?: "?");
    else
        (void)snprintf(who, sizeof(who), "%s", current ? current : "no agent");
    n = strlen(path) + strlen(who) + strlen(reason) + (first ? strlen(first) : 0) + 128;
    out = cca_xmalloc(n);
    if (first != NULL) {
        /* Quote at most 80 bytes of the first request, cut on a UTF-8 boundary. */
        size_t len = strlen(first);

        if (len > 80) {
            len = 80;
            while (len > 0 && ((unsigned char)first[len] & 0xC0) == 0x80)
                len--;
        }
        (void)snprintf(
            out, n,
            "Closed (%s) by %s after %zu messages; agents: %s; first request: \"%.*s%s\"",
            reason, who, json_array_size(messages), path, (int)len, first,
            len < strlen(first) ? "..." : "");
    } else {
        (void)snprintf(out, n, "Closed (%s) with no customer messages", reason);
    }
    return out;
}

json_t *cca_dialog_closed(json_t *doc, const char *reason, int64_t now_ms)
{
    json_t *copy = json_copy(doc);
    json_t *summary = json_object();
    int64_t created = cca_dialog_get_time(doc, "created_at");
    json_t *meta = json_object_get(doc, "metadata");
    char *resolution = resolution_text(doc, reason);
    double minutes = created > 0 ? (double)(now_ms - created) / 60000.0 : 0.0;

    (void)json_object_set_new(summary, "total_messages",
                              json_integer((json_int_t)cca_dialog_message_count(doc)));
    (void)json_object_set_new(
        summary, "total_tokens",
        json_integer(json_integer_value(json_object_get(meta, "total_tokens"))));
    (void)json_object_set_new(
        summary, "duration_minutes",
        json_real(round((minutes < 0 ? 0 : minutes) * 100.0) / 100.0));
    (void)json_object_set_new(summary, "resolution", json_string(resolution));
    free(resolution);

    (void)json_object_set_new(copy, "status", json_string("closed"));
    (void)json_object_set_new(copy, "updated_at", time_json(now_ms));
    (void)json_object_set_new(copy, "closed_at", time_json(now_ms));
    (void)json_object_set_new(copy, "close_reason", json_string(reason));
    (void)json_object_set_new(copy, "summary", summary);
    return copy;
}

static bool is_str_or_null(json_t *v)
{
    return v != NULL && (json_is_string(v) || json_is_null(v));
}

cca_rc cca_dialog_validate(json_t *doc, const char *expected_id, struct cca_error *reterr)
{
    static const char *const time_keys[] = {"created_at", "updated_at"};
    const char *id = json_string_value(json_object_get(doc, "dialog_id"));
    char canon[37];
    enum cca_dialog_status st;
    enum cca_agent agent;
    json_t *messages = json_object_get(doc, "messages");
    json_t *m;
    size_t i;
    int64_t ms;

    if (!json_is_object(doc))
        return cca_error_set(reterr, CCA_ERR_INVALID, "not a JSON object");
    if (id == NULL || !cca_uuid_canonical(id, canon) || strcmp(canon, id) != 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "dialog_id is not a canonical UUID");
    if (expected_id != NULL && strcmp(id, expected_id) != 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "dialog_id does not match the file name");
    if (!cca_dialog_status_parse(json_string_value(json_object_get(doc, "status")), &st))
        return cca_error_set(reterr, CCA_ERR_INVALID, "bad status");
    if (!is_str_or_null(json_object_get(doc, "current_agent")) ||
        (json_is_string(json_object_get(doc, "current_agent")) &&
         !cca_agent_parse(cca_dialog_get_str(doc, "current_agent"), &agent)))
        return cca_error_set(reterr, CCA_ERR_INVALID, "bad current_agent");
    for (i = 0; i < CCA_ARRAY_SIZE(time_keys); i++) {
        if (!cca_time_parse(json_string_value(json_object_get(doc, time_keys[i])), &ms))
            return cca_error_set(reterr, CCA_ERR_INVALID, "bad %s", time_keys[i]);
    }
    if (!json_is_object(json_object_get(doc, "customer_info")) ||
        !json_is_object(json_object_get(doc, "metadata")))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "customer_info or metadata missing");
    if (!json_is_array(messages))
        return cca_error_set(reterr, CCA_ERR_INVALID, "messages is not an array");
    json_array_foreach (messages, i, m) {
        if (!json_is_string(json_object_get(m, "content")) ||
            !json_is_string(json_object_get(m, "role")) ||
            !json_is_string(json_object_get(m, "id")))
            return cca_error_set(reterr, CCA_ERR_INVALID, "message %zu is malformed", i);
    }
    return CCA_OK;
}

/*
 * @value's bytes with @flags and a trailing newline, NUL-terminated, in one
 * pass (json_dumps; jansson allocates with cca_xmalloc, mem.c).
 */
static char *dump_line(json_t *value, size_t flags, size_t *ret_len)
{
    char *buf = json_dumps(value, flags);
    size_t len;

    if (buf == NULL)
        abort(); /* only for a value that is not an object or array: a caller bug */
    len = strlen(buf);
    buf = cca_xrealloc(buf, len + 2);
    buf[len] = '\n';
    buf[len + 1] = '\0';
    *ret_len = len + 1;
    return buf;
}

char *cca_dialog_dump(json_t *doc, size_t *ret_len)
{
    return dump_line(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10),
                     ret_len);
}

char *cca_dialog_dump_change(json_t *patch, size_t *ret_len)
{
    return dump_line(patch, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10),
                     ret_len);
}

json_t *cca_dialog_llm_history(json_t *doc, unsigned max)
{
    json_t *messages = json_object_get(doc, "messages");
    json_t *out = json_array();
    size_t n = json_array_size(messages);
    size_t start = n > max ? n - max : 0;

    for (size_t i = start; i < n; i++) {
        json_t *m = json_array_get(messages, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *item;

        if (role == NULL || strcmp(role, "system") == 0)
            continue;
        item = json_object();
        (void)json_object_set_new(
            item, "role",
            json_string(strcmp(role, "customer") == 0 ? "user" : "assistant"));
        (void)json_object_set(item, "content", json_object_get(m, "content"));
        (void)json_array_append_new(out, item);
    }
    return out;
}

static void copy_field(json_t *dst, json_t *src, const char *key)
{
    json_t *v = json_object_get(src, key);

    (void)json_object_set(dst, key, v != NULL ? v : json_null());
}

static json_t *customer_name(json_t *doc)
{
    return str_or_null(json_string_value(
        json_object_get(json_object_get(doc, "customer_info"), "name")));
}

json_t *cca_dialog_status_view(json_t *doc)
{
    json_t *v = json_object();

    copy_field(v, doc, "dialog_id");
    copy_field(v, doc, "status");
    copy_field(v, doc, "current_agent");
    (void)json_object_set_new(v, "message_count",
                              json_integer((json_int_t)cca_dialog_message_count(doc)));
    copy_field(v, doc, "created_at");
    copy_field(v, doc, "updated_at");
    (void)json_object_set_new(v, "customer_name", customer_name(doc));
    return v;
}

/* The list item is the status view plus what a list filters on. */
json_t *cca_dialog_summary_view(json_t *doc)
{
    json_t *v = cca_dialog_status_view(doc);

    copy_field(v, doc, "customer_id");
    copy_field(v, doc, "priority");
    copy_field(v, doc, "source");
    return v;
}

json_t *cca_dialog_close_view(json_t *doc)
{
    json_t *v = json_object();

    copy_field(v, doc, "dialog_id");
    copy_field(v, doc, "status");
    (void)json_object_set(v, "reason", json_object_get(doc, "close_reason"));
    copy_field(v, doc, "closed_at");
    copy_field(v, doc, "summary");
    return v;
}

enum cca_dialog_status cca_dialog_get_status(json_t *doc)
{
    enum cca_dialog_status s = CCA_DIALOG_ACTIVE;

    (void)cca_dialog_status_parse(json_string_value(json_object_get(doc, "status")), &s);
    return s;
}

enum cca_agent cca_dialog_get_agent(json_t *doc)
{
    enum cca_agent a = CCA_AGENT_NONE;

    (void)cca_agent_parse(json_string_value(json_object_get(doc, "current_agent")), &a);
    return a;
}

const char *cca_dialog_get_str(json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

size_t cca_dialog_message_count(json_t *doc)
{
    return json_array_size(json_object_get(doc, "messages"));
}

int64_t cca_dialog_get_time(json_t *doc, const char *key)
{
    int64_t ms = 0;

    (void)cca_time_parse(json_string_value(json_object_get(doc, key)), &ms);
    return ms;
}

/* ---- the human side ----------------------------------------------------------- */

json_t *cca_dialog_owner_field(json_t *doc, const char *key)
{
    return json_object_get(json_object_get(doc, "owner"), key);
}

enum cca_owner cca_dialog_get_owner(json_t *doc, const char **ret_operator_id)
{
    enum cca_owner o = CCA_OWNER_AGENT;

    (void)cca_owner_parse(json_string_value(cca_dialog_owner_field(doc, "kind")), &o);
    if (ret_operator_id != NULL)
        *ret_operator_id =
            o == CCA_OWNER_OPERATOR
                ? json_string_value(cca_dialog_owner_field(doc, "operator_id"))
                : NULL;
    return o;
}

json_t *cca_dialog_with_transition(json_t *doc, const struct cca_dialog_transition *t)
{
    json_t *copy = json_copy(doc);
    json_t *meta = cow_child(copy, doc, "metadata");
    json_t *list = json_copy(json_object_get(meta, "transitions"));
    json_t *owner = json_object();
    json_t *rec = json_object();
    json_t *waiting = cca_dialog_owner_field(doc, "waiting_since");
    enum cca_dialog_status st = cca_dialog_get_status(doc);

    if (!json_is_array(list)) {
        json_decref(list);
        list = json_array();
    }
    (void)json_object_set_new(owner, "kind", json_string(cca_owner_name(t->to)));
    (void)json_object_set_new(owner, "operator_id", str_or_null(t->operator_id));
    (void)json_object_set_new(owner, "operator_name", str_or_null(t->operator_name));
    (void)json_object_set_new(owner, "since", time_json(t->at_ms));
    /* The customer waits for a human from the escalation until the AI is back. */
    if (t->to == CCA_OWNER_AGENT)
        waiting = json_null();
    else if (t->from != CCA_OWNER_AGENT && json_is_string(waiting))
        waiting = json_incref(waiting);
    else
        waiting = time_json(t->at_ms);
    (void)json_object_set_new(owner, "waiting_since", waiting);
    (void)json_object_set_new(owner, "requeued", json_boolean(t->requeued));
    (void)json_object_set_new(owner, "replied", json_false());
    if (t->to == CCA_OWNER_QUEUE && t->queue_seq > 0)
        (void)json_object_set_new(owner, "queue_seq",
                                  json_integer((json_int_t)t->queue_seq));
    (void)json_object_set_new(copy, "owner", owner);

    (void)json_object_set_new(rec, "at", time_json(t->at_ms));
    (void)json_object_set_new(rec, "event", json_string(cca_owner_event_name(t->event)));
    (void)json_object_set_new(rec, "from", json_string(cca_owner_name(t->from)));
    (void)json_object_set_new(rec, "to", json_string(cca_owner_name(t->to)));
    (void)json_object_set_new(rec, "operator_id", str_or_null(t->operator_id));
    (void)json_object_set_new(rec, "prev_operator_id", str_or_null(t->prev_operator_id));
    (void)json_object_set_new(rec, "actor", str_or_null(t->actor));
    (void)json_object_set_new(rec, "reason", str_or_null(t->reason));
    (void)json_array_append_new(list, rec);
    (void)json_object_set_new(meta, "transitions", list);

    if (st != CCA_DIALOG_CLOSED) {
        if (t->to == CCA_OWNER_QUEUE)
            st = CCA_DIALOG_QUEUED;
        else if (t->to == CCA_OWNER_OPERATOR)
            st = CCA_DIALOG_ASSIGNED;
        else
            st = cca_dialog_get_agent(doc) == CCA_AGENT_SUPERVISOR ? CCA_DIALOG_ESCALATED
                                                                   : CCA_DIALOG_ACTIVE;
        (void)json_object_set_new(copy, "status",
                                  json_string(cca_dialog_status_name(st)));
    }
    (void)json_object_set_new(copy, "updated_at", time_json(t->at_ms));
    return copy;
}

json_t *cca_dialog_with_replied(json_t *doc)
{
    json_t *copy = json_copy(doc);
    json_t *owner = json_copy(json_object_get(doc, "owner"));

    if (owner == NULL)
        owner = json_object();
    (void)json_object_set_new(owner, "replied", json_true());
    (void)json_object_set_new(copy, "owner", owner);
    return copy;
}

/* @m as it is stored (the message object). A new reference. */
static json_t *message_object(const struct cca_dialog_message *m)
{
    json_t *o = json_object();

    (void)json_object_set_new(o, "id", json_string(m->id));
    (void)json_object_set_new(o, "role", json_string(m->role));
    (void)json_object_set_new(o, "content", json_string(m->content));
    (void)json_object_set_new(o, "timestamp", time_json(m->at_ms));
    (void)json_object_set_new(o, "agent_type", json_null());
    if (m->operator_id != NULL) {
        (void)json_object_set_new(o, "operator_id", json_string(m->operator_id));
        (void)json_object_set_new(o, "operator_name", str_or_null(m->operator_name));
    }
    if (m->kind != NULL)
        (void)json_object_set_new(o, "kind", json_string(m->kind));
    if (m->channel != NULL)
        (void)json_object_set(o, "channel", m->channel);
    return o;
}

json_t *cca_dialog_with_message(json_t *doc, const struct cca_dialog_message *m)
{
    json_t *copy = json_copy(doc);
    json_t *messages = cow_child(copy, doc, "messages");

    (void)json_array_append_new(messages, message_object(m));
    (void)json_object_set_new(copy, "updated_at", time_json(m->at_ms));
    return copy;
}

json_t *cca_dialog_with_rating(json_t *doc, int score, const char *comment,
                               int64_t now_ms)
{
    json_t *copy = json_copy(doc);
    json_t *r = json_object();
    const char *last_op = NULL;
    json_t *list = json_object_get(json_object_get(doc, "metadata"), "transitions");

    /* The last operator who owned it, from the recorded transitions. */
    for (size_t i = json_array_size(list); i-- > 0 && last_op == NULL;) {
        json_t *t = json_array_get(list, i);

        last_op = json_string_value(json_object_get(t, "operator_id"));
        if (last_op == NULL)
            last_op = json_string_value(json_object_get(t, "prev_operator_id"));
    }
    (void)json_object_set_new(r, "score", json_integer(score));
    (void)json_object_set_new(r, "comment", str_or_null(comment));
    (void)json_object_set_new(r, "rated_at", time_json(now_ms));
    (void)json_object_set_new(r, "operator_id", str_or_null(last_op));
    (void)json_object_set(r, "agent", json_object_get(doc, "current_agent"));
    (void)json_object_set_new(copy, "rating", r);
    return copy;
}

json_t *cca_dialog_with_language(json_t *doc, const char *code)
{
    json_t *copy;
    const char *now = json_string_value(json_object_get(doc, "language"));

    if (now != NULL && strcmp(now, code) == 0)
        return json_incref(doc);
    copy = json_copy(doc);
    (void)json_object_set_new(copy, "language", json_string(code));
    return copy;
}

json_t *cca_dialog_messages_after(json_t *doc, const char *after_id, bool *ret_found)
{
    json_t *messages = json_object_get(doc, "messages");
    json_t *out = json_array();
    size_t n = json_array_size(messages);
    size_t start = 0;

    *ret_found = after_id == NULL;
    for (size_t i = n; after_id != NULL && i-- > 0;) {
        const char *id =
            json_string_value(json_object_get(json_array_get(messages, i), "id"));

        if (id != NULL && strcmp(id, after_id) == 0) {
            start = i + 1;
            *ret_found = true;
            break;
        }
    }
    for (size_t i = *ret_found ? start : n; i < n; i++)
        (void)json_array_append(out, json_array_get(messages, i));
    return out;
}
