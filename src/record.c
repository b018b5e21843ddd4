/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/assign.h"
#include "cca/mem.h"
#include "cca/record.h"

static const char *const trigger_names[CCA_TRIGGER__COUNT] = {
    [CCA_TRIGGER_NONE] = "none",
    [CCA_TRIGGER_REQUEST] = "customer_request",
    [CCA_TRIGGER_SUPERVISOR] = "supervisor",
    [CCA_TRIGGER_DEGRADED] = "degraded",
    [CCA_TRIGGER_API] = "api",
};

const char *cca_record_trigger_name(enum cca_record_trigger t)
{
    if ((int)t < 0 || t >= CCA_TRIGGER__COUNT)
        return "none";
    return trigger_names[t];
}

static enum cca_record_trigger trigger_of(const char *reason)
{
    for (int t = CCA_TRIGGER_REQUEST; reason != NULL && t < CCA_TRIGGER_API; t++) {
        if (strcmp(reason, trigger_names[t]) == 0)
            return (enum cca_record_trigger)t;
    }
    return CCA_TRIGGER_API;
}

/* ---- one record ------------------------------------------------------------------ */

static char *dup_str(json_t *v)
{
    const char *s = json_string_value(v);

    return s != NULL ? cca_xstrdup(s) : NULL;
}

static bool time_of(json_t *v, int64_t *ret_ms)
{
    return cca_time_parse(json_string_value(v), ret_ms);
}

static bool is_owner(json_t *t, const char *key, enum cca_owner want)
{
    enum cca_owner o;

    return cca_owner_parse(json_string_value(json_object_get(t, key)), &o) && o == want;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    int64_t s;

    /* Hand-edited files can hold any integer: saturate rather than wrap (UB). */
    if (__builtin_add_overflow(a, b, &s))
        s = b > 0 ? INT64_MAX : INT64_MIN;
    return s;
}

/*
 * The duration from @from_ms to @to_ms, never negative: a wall clock stepped back
 * between two events (NTP) must not yield a negative wait that drags a mean below
 * zero; "at once" is the honest reading.
 */
static int64_t span(int64_t from_ms, int64_t to_ms)
{
    int64_t d;

    if (__builtin_sub_overflow(to_ms, from_ms, &d))
        d = to_ms > from_ms ? INT64_MAX : 0;
    return d > 0 ? d : 0;
}

int cca_record_find_op(const struct cca_record *r, const char *operator_id)
{
    for (size_t i = 0; r != NULL && operator_id != NULL && i < r->nops; i++) {
        if (strcmp(r->ops[i].operator_id, operator_id) == 0)
            return (int)i;
    }
    return -1;
}

/* What the transitions pass leaves for the messages pass. */
struct scan {
    bool esc_known; /* escalated, at a known time (r->escalated_ms) */
    bool first_op;  /* an operator owned it */
    bool first_op_known;
    int64_t first_op_ms;
};

/*
 * The operator @id's entry, appended (assigned at @at_ms, 0 if unknown) when new.
 * Returns its index, or -1 for an id that is not a UUID (then it counts nowhere).
 * One entry per operator, however often they got it back; the array doubles, so
 * the pass stays linear and the record small (the index keeps one per dialog).
 */
static int add_op(struct cca_record *r, size_t *cap, const char *id, int64_t at_ms)
{
    char canon[37];
    int i;

    if (!cca_uuid_canonical(id, canon))
        return -1;
    i = cca_record_find_op(r, canon);
    if (i >= 0)
        return i;
    if (r->nops == *cap) {
        *cap = *cap ? 2 * *cap : 2;
        r->ops = cca_xrealloc(r->ops, *cap * sizeof(*r->ops));
    }
    memset(&r->ops[r->nops], 0, sizeof(r->ops[0]));
    memcpy(r->ops[r->nops].operator_id, canon, sizeof(canon));
    r->ops[r->nops].assigned_ms = at_ms;
    r->ops[r->nops].first_reply_ms = -1;
    return (int)r->nops++;
}

static void scan_transitions(struct cca_record *r, json_t *list, struct scan *sc)
{
    size_t cap = 0;
    size_t i;
    json_t *t;
    int last = -1;

    json_array_foreach (list, i, t) {
        int64_t at = 0;
        bool has_at = time_of(json_object_get(t, "at"), &at);
        int op;

        if (r->trigger == CCA_TRIGGER_NONE && is_owner(t, "from", CCA_OWNER_AGENT) &&
            !is_owner(t, "to", CCA_OWNER_AGENT)) {
            r->trigger = trigger_of(json_string_value(json_object_get(t, "reason")));
            r->escalated_ms = has_at ? at : 0;
            sc->esc_known = has_at;
        }
        if (!is_owner(t, "to", CCA_OWNER_OPERATOR))
            continue;
        r->human = true;
        if (!sc->first_op) {
            sc->first_op = true;
            sc->first_op_known = has_at;
            sc->first_op_ms = at;
            if (sc->esc_known && has_at)
                r->queue_wait_ms = span(r->escalated_ms, at);
        }
        op = add_op(r, &cap, json_string_value(json_object_get(t, "operator_id")),
                    has_at ? at : 0);
        if (op >= 0)
            last = op;
    }
    if (last >= 0)
        r->ops[last].last_owner = true;
}

static void scan_messages(struct cca_record *r, json_t *list, const struct scan *sc)
{
    size_t i;
    json_t *m;
    bool customer = false;
    int64_t customer_ms = 0;

    json_array_foreach (list, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        int64_t at = 0;
        bool has_at = time_of(json_object_get(m, "timestamp"), &at);
        bool ai;
        int op;

        if (role == NULL)
            continue;
        if (strcmp(role, "customer") == 0) {
            if (!customer && has_at) {
                customer = true;
                customer_ms = at;
            }
            continue;
        }
        ai = strcmp(role, "agent") == 0;
        if (!ai && strcmp(role, "operator") != 0)
            continue;
        if (customer && has_at && r->first_response_ms < 0)
            r->first_response_ms = span(customer_ms, at);
        if (ai) {
            enum cca_agent a;
            json_t *tokens = json_object_get(m, "tokens");

            if (cca_agent_parse(json_string_value(json_object_get(m, "agent_type")),
                                &a)) {
                r->agents |= 1u << a;
                if (json_is_integer(tokens))
                    r->tokens_by_agent[a] =
                        add_sat(r->tokens_by_agent[a], json_integer_value(tokens));
            }
            continue;
        }
        if (sc->esc_known && has_at && r->first_human_ms < 0)
            r->first_human_ms = span(r->escalated_ms, at);
        op = cca_record_find_op(r, json_string_value(json_object_get(m, "operator_id")));
        if (op < 0)
            continue;
        r->ops[op].messages++;
        /* The earliest of their messages since the assignment, whatever the order. */
        if (has_at && r->ops[op].assigned_ms != 0 && at >= r->ops[op].assigned_ms) {
            int64_t d = span(r->ops[op].assigned_ms, at);

            if (r->ops[op].first_reply_ms < 0 || d < r->ops[op].first_reply_ms)
                r->ops[op].first_reply_ms = d;
        }
    }
}

void cca_record_of(json_t *doc, struct cca_record *ret)
{
    json_t *meta = json_object_get(doc, "metadata");
    json_t *messages = json_object_get(doc, "messages");
    json_t *rating = json_object_get(doc, "rating");
    json_t *total = json_object_get(meta, "total_tokens");
    json_t *score = json_object_get(rating, "score");
    const char *id = json_string_value(json_object_get(doc, "dialog_id"));
    const char *owner_id = NULL;
    struct scan sc = {0};
    int rated;

    memset(ret, 0, sizeof(*ret));
    if (id != NULL && strlen(id) < sizeof(ret->dialog_id))
        memcpy(ret->dialog_id, id, strlen(id) + 1);
    ret->customer_id = dup_str(json_object_get(doc, "customer_id"));
    ret->customer_name =
        dup_str(json_object_get(json_object_get(doc, "customer_info"), "name"));
    ret->channel = dup_str(json_object_get(doc, "source"));
    ret->close_reason = dup_str(json_object_get(doc, "close_reason"));
    (void)time_of(json_object_get(doc, "created_at"), &ret->created_ms);
    ret->status = cca_dialog_get_status(doc);
    if (ret->status == CCA_DIALOG_CLOSED)
        (void)time_of(json_object_get(doc, "closed_at"), &ret->closed_ms);
    ret->last_agent = cca_dialog_get_agent(doc);
    ret->messages = json_array_size(messages) > UINT32_MAX
                        ? UINT32_MAX
                        : (uint32_t)json_array_size(messages);
    ret->tokens = json_is_integer(total) ? json_integer_value(total) : 0;
    ret->first_response_ms = -1;
    ret->queue_wait_ms = -1;
    ret->first_human_ms = -1;
    ret->handle_ms = -1;
    ret->owner_operator = -1;

    /* Transitions first: the messages pass needs the operators and the escalation. */
    scan_transitions(ret, json_object_get(meta, "transitions"), &sc);
    scan_messages(ret, messages, &sc);

    if (ret->closed_ms != 0 && sc.first_op_known)
        ret->handle_ms = span(sc.first_op_ms, ret->closed_ms);
    if (cca_dialog_get_owner(doc, &owner_id) == CCA_OWNER_OPERATOR)
        ret->owner_operator = cca_record_find_op(ret, owner_id);
    if (json_is_integer(score) && json_integer_value(score) >= 1 &&
        json_integer_value(score) <= 5)
        ret->csat = (int)json_integer_value(score);
    rated = cca_record_find_op(ret,
                               json_string_value(json_object_get(rating, "operator_id")));
    if (rated >= 0)
        ret->ops[rated].rated = true;
}

void cca_record_cleanup(struct cca_record *r)
{
    if (r == NULL)
        return;
    free(r->customer_id);
    free(r->customer_name);
    free(r->channel);
    free(r->close_reason);
    free(r->ops);
    memset(r, 0, sizeof(*r));
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? cca_xstrdup(s) : NULL;
}

void cca_record_copy(const struct cca_record *src, struct cca_record *ret)
{
    *ret = *src;
    ret->customer_id = dup_or_null(src->customer_id);
    ret->customer_name = dup_or_null(src->customer_name);
    ret->channel = dup_or_null(src->channel);
    ret->close_reason = dup_or_null(src->close_reason);
    ret->ops = NULL;
    if (src->nops > 0) {
        ret->ops = cca_xmalloc(src->nops * sizeof(*src->ops));
        memcpy(ret->ops, src->ops, src->nops * sizeof(*src->ops));
    }
}

/* ---- filters --------------------------------------------------------------------- */

void cca_record_filter_init(struct cca_record_filter *f)
{
    memset(f, 0, sizeof(*f));
    f->agent = -1;
    f->status = -1;
}

bool cca_record_matches(const struct cca_record *r, const struct cca_record_filter *f)
{
    if (f->customer_id != NULL &&
        (r->customer_id == NULL || strcmp(r->customer_id, f->customer_id) != 0))
        return false;
    if (f->operator_id != NULL && cca_record_find_op(r, f->operator_id) < 0)
        return false;
    /* An agent that does not exist answered in no dialog (and must not be shifted). */
    if (f->agent >= 0 &&
        (f->agent >= CCA_AGENT__COUNT || (r->agents & (1u << f->agent)) == 0))
        return false;
    if (f->status >= 0 && (int)r->status != f->status)
        return false;
    if (f->from_ms != 0 && r->created_ms < f->from_ms)
        return false;
    if (f->to_ms != 0 && r->created_ms >= f->to_ms)
        return false;
    return true;
}

/* ---- statistics ------------------------------------------------------------------ */

/* A growable array of durations (ms): percentiles need every value. */
struct vec {
    int64_t *v;
    size_t n;
    size_t cap;
};

static void vec_push(struct vec *a, int64_t x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 16;
        a->v = cca_xrealloc(a->v, a->cap * sizeof(*a->v));
    }
    a->v[a->n++] = x;
}

/* Rating counts: [0] the number of ratings, [1..5] per score. */
struct csat {
    uint64_t n[6];
};

static void csat_add(struct csat *c, int score)
{
    if (score >= 1 && score <= 5) {
        c->n[0]++;
        c->n[score]++;
    }
}

struct cca_stats {
    bool per_op;
    char operator_id[37];
    /* the service (the whole fold; for an operator, the dialogs they owned) */
    uint64_t total;
    uint64_t by_status[CCA_DIALOG_STATUS__COUNT];
    uint64_t by_agent[CCA_AGENT__COUNT]; /* dialogs each AI agent answered in */
    json_t *by_channel;                  /* channel -> integer, counted in place */
    int64_t messages;
    uint64_t closed;
    uint64_t contained;
    uint64_t escalations;
    uint64_t abandoned; /* escalated, closed, no operator ever had it */
    uint64_t by_trigger[CCA_TRIGGER__COUNT];
    struct vec first_response;
    struct vec queue_wait;
    struct vec first_human;
    struct vec handle;
    struct csat csat;
    int64_t tokens;
    int64_t tokens_by_agent[CCA_AGENT__COUNT];
    /* the operator's part */
    uint64_t open_now;
    int64_t messages_sent;
    struct vec op_first_reply;
    struct vec op_handle;
    struct csat op_csat;
};

struct cca_stats *cca_stats_new(const char *operator_id)
{
    struct cca_stats *s = cca_xcalloc(1, sizeof(*s));

    if (operator_id != NULL) {
        s->per_op = true;
        /* Canonical when it is a UUID, so an upper-case id still finds its dialogs. */
        if (!cca_uuid_canonical(operator_id, s->operator_id)) {
            strncpy(s->operator_id, operator_id, sizeof(s->operator_id) - 1);
            s->operator_id[sizeof(s->operator_id) - 1] = '\0';
        }
    }
    s->by_channel = json_object();
    return s;
}

static void count_channel(json_t *map, const char *channel)
{
    json_t *n = json_object_get(map, channel);

    if (n == NULL)
        (void)json_object_set_new(map, channel, json_integer(1));
    else
        (void)json_integer_set(n, json_integer_value(n) + 1);
}

void cca_stats_add(struct cca_stats *s, const struct cca_record *r)
{
    bool closed = r->status == CCA_DIALOG_CLOSED;
    int op = -1;

    if (s->per_op) {
        op = cca_record_find_op(r, s->operator_id);
        if (op < 0)
            return;
    }
    s->total++;
    if ((int)r->status >= 0 && r->status < CCA_DIALOG_STATUS__COUNT)
        s->by_status[r->status]++;
    count_channel(s->by_channel, r->channel != NULL ? r->channel : "unknown");
    for (int a = 0; a < CCA_AGENT__COUNT; a++)
        if (r->agents & (1u << a))
            s->by_agent[a]++;
    s->messages = add_sat(s->messages, r->messages);
    if (closed) {
        s->closed++;
        if (r->trigger == CCA_TRIGGER_NONE)
            s->contained++;
    }
    if (r->trigger != CCA_TRIGGER_NONE && (int)r->trigger > 0 &&
        r->trigger < CCA_TRIGGER__COUNT) {
        s->escalations++;
        s->by_trigger[r->trigger]++;
        if (closed && !r->human)
            s->abandoned++;
    }
    if (r->first_response_ms >= 0)
        vec_push(&s->first_response, r->first_response_ms);
    if (r->queue_wait_ms >= 0)
        vec_push(&s->queue_wait, r->queue_wait_ms);
    if (r->first_human_ms >= 0)
        vec_push(&s->first_human, r->first_human_ms);
    if (r->handle_ms >= 0)
        vec_push(&s->handle, r->handle_ms);
    csat_add(&s->csat, r->csat);
    s->tokens = add_sat(s->tokens, r->tokens);
    for (int a = 0; a < CCA_AGENT__COUNT; a++)
        s->tokens_by_agent[a] = add_sat(s->tokens_by_agent[a], r->tokens_by_agent[a]);
    if (op < 0)
        return;

    if (!closed && r->owner_operator == op)
        s->open_now++;
    s->messages_sent = add_sat(s->messages_sent, r->ops[op].messages);
    if (r->ops[op].first_reply_ms >= 0)
        vec_push(&s->op_first_reply, r->ops[op].first_reply_ms);
    if (r->ops[op].last_owner && r->handle_ms >= 0)
        vec_push(&s->op_handle, r->handle_ms);
    if (r->ops[op].rated)
        csat_add(&s->op_csat, r->csat);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static json_t *seconds(int64_t ms)
{
    return json_real((double)ms / 1000.0);
}

/* Nearest rank: the value at 1-based rank ceil(@pct / 100 * n), in integers. */
static json_t *percentile(const int64_t *sorted, size_t n, unsigned pct)
{
    size_t rank = (pct * n + 99) / 100;

    return seconds(sorted[rank > 0 ? rank - 1 : 0]);
}

/* {"count", "p50", "p90", "mean"} of @a; sorts a copy (the fold stays const). */
static json_t *durations_json(const struct vec *a)
{
    json_t *o = json_object();
    int64_t *sorted = NULL;
    double sum = 0;

    (void)json_object_set_new(o, "count", json_integer((json_int_t)a->n));
    if (a->n == 0) {
        (void)json_object_set_new(o, "p50", json_null());
        (void)json_object_set_new(o, "p90", json_null());
        (void)json_object_set_new(o, "mean", json_null());
        goto out;
    }
    sorted = cca_xmalloc(a->n * sizeof(*sorted));
    memcpy(sorted, a->v, a->n * sizeof(*sorted));
    qsort(sorted, a->n, sizeof(*sorted), cmp_i64);
    for (size_t i = 0; i < a->n; i++)
        sum += (double)sorted[i];
    (void)json_object_set_new(o, "p50", percentile(sorted, a->n, 50));
    (void)json_object_set_new(o, "p90", percentile(sorted, a->n, 90));
    /* The mean to the millisecond, like every other duration. */
    (void)json_object_set_new(o, "mean", json_real(round(sum / (double)a->n) / 1000.0));
out:
    free(sorted);
    return o;
}

static json_t *rate_json(uint64_t num, uint64_t den)
{
    return den > 0 ? json_real((double)num / (double)den) : json_null();
}

static json_t *csat_json(const struct csat *c)
{
    json_t *o = json_object();
    json_t *dist = json_object();
    uint64_t sum = 0;

    for (int i = 1; i <= 5; i++) {
        char key[2] = {(char)('0' + i), '\0'};

        sum += (uint64_t)i * c->n[i];
        (void)json_object_set_new(dist, key, json_integer((json_int_t)c->n[i]));
    }
    (void)json_object_set_new(o, "count", json_integer((json_int_t)c->n[0]));
    (void)json_object_set_new(o, "average", rate_json(sum, c->n[0]));
    (void)json_object_set_new(o, "distribution", dist);
    return o;
}

json_t *cca_stats_service_json(const struct cca_stats *s)
{
    json_t *o = json_object();
    json_t *dialogs = json_object();
    json_t *by_status = json_object();
    json_t *ai = json_object();
    json_t *esc = json_object();
    json_t *by_trigger = json_object();
    json_t *tokens = json_object();
    json_t *by_agent = json_object();
    json_t *dialogs_by_agent = json_object();

    for (int i = 0; i < CCA_DIALOG_STATUS__COUNT; i++)
        (void)json_object_set_new(by_status,
                                  cca_dialog_status_name((enum cca_dialog_status)i),
                                  json_integer((json_int_t)s->by_status[i]));
    (void)json_object_set_new(dialogs, "total", json_integer((json_int_t)s->total));
    (void)json_object_set_new(dialogs, "by_status", by_status);
    (void)json_object_set_new(dialogs, "by_channel", json_deep_copy(s->by_channel));
    for (int a = 0; a < CCA_AGENT__COUNT; a++)
        (void)json_object_set_new(dialogs_by_agent, cca_agent_name((enum cca_agent)a),
                                  json_integer((json_int_t)s->by_agent[a]));
    (void)json_object_set_new(dialogs, "by_agent", dialogs_by_agent);
    (void)json_object_set_new(o, "dialogs", dialogs);
    (void)json_object_set_new(o, "messages", json_integer(s->messages));

    (void)json_object_set_new(ai, "closed", json_integer((json_int_t)s->closed));
    (void)json_object_set_new(ai, "contained", json_integer((json_int_t)s->contained));
    (void)json_object_set_new(ai, "containment_rate", rate_json(s->contained, s->closed));
    (void)json_object_set_new(o, "ai", ai);

    for (int t = CCA_TRIGGER_REQUEST; t < CCA_TRIGGER__COUNT; t++)
        (void)json_object_set_new(by_trigger, trigger_names[t],
                                  json_integer((json_int_t)s->by_trigger[t]));
    (void)json_object_set_new(esc, "total", json_integer((json_int_t)s->escalations));
    (void)json_object_set_new(esc, "rate", rate_json(s->escalations, s->total));
    (void)json_object_set_new(esc, "abandoned", json_integer((json_int_t)s->abandoned));
    (void)json_object_set_new(esc, "by_trigger", by_trigger);
    (void)json_object_set_new(o, "escalations", esc);

    (void)json_object_set_new(o, "queue_wait_s", durations_json(&s->queue_wait));
    (void)json_object_set_new(o, "first_human_response_s",
                              durations_json(&s->first_human));
    (void)json_object_set_new(o, "handle_time_s", durations_json(&s->handle));
    (void)json_object_set_new(o, "first_response_s", durations_json(&s->first_response));
    (void)json_object_set_new(o, "csat", csat_json(&s->csat));

    for (int a = 0; a < CCA_AGENT__COUNT; a++)
        (void)json_object_set_new(by_agent, cca_agent_name((enum cca_agent)a),
                                  json_integer(s->tokens_by_agent[a]));
    (void)json_object_set_new(tokens, "total", json_integer(s->tokens));
    (void)json_object_set_new(tokens, "by_agent", by_agent);
    (void)json_object_set_new(o, "tokens", tokens);
    return o;
}

json_t *cca_stats_operator_json(const struct cca_stats *s)
{
    json_t *o = json_object();

    (void)json_object_set_new(o, "dialogs_handled", json_integer((json_int_t)s->total));
    (void)json_object_set_new(o, "open_now", json_integer((json_int_t)s->open_now));
    (void)json_object_set_new(o, "closed", json_integer((json_int_t)s->closed));
    (void)json_object_set_new(o, "messages_sent", json_integer(s->messages_sent));
    (void)json_object_set_new(o, "first_response_s", durations_json(&s->op_first_reply));
    (void)json_object_set_new(o, "handle_time_s", durations_json(&s->op_handle));
    (void)json_object_set_new(o, "csat", csat_json(&s->op_csat));
    return o;
}

void cca_stats_free(struct cca_stats *s)
{
    if (s == NULL)
        return;
    json_decref(s->by_channel);
    free(s->first_response.v);
    free(s->queue_wait.v);
    free(s->first_human.v);
    free(s->handle.v);
    free(s->op_first_reply.v);
    free(s->op_handle.v);
    free(s);
}
