/* SPDX-License-Identifier: MIT */
/*
 * The handlers of the human side's routes (docs/OPERATORS.md, openapi.yaml):
 * operator registration and administration, an operator's own routes (me,
 * status, dialogs, next, events), the queue, and the dialog routes operators
 * and customers use around a human (take, reply, handoff, messages, queue
 * position, rating, events). Changes go to the engine like every dialog
 * change; reads come from the engine, the store (operator records) and the
 * desk (live state).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/mem.h"
#include "cca/operator.h"

#include "http_int.h"
#include "http_sse.h"

/* ---- submitting with a finish ------------------------------------------------------ */

json_t *cca_http_finish_message(struct cca_http_request *r, json_t *result,
                                unsigned *status, void *cls)
{
    const char *owner = json_string_value(json_object_get(result, "owner"));

    (void)r;
    (void)cls;
    if (json_is_null(json_object_get(result, "response")) && owner != NULL &&
        strcmp(owner, "agent") != 0)
        *status = 202;
    return json_incref(result);
}

/* ---- small helpers ----------------------------------------------------------------- */

static bool operator_path_id(struct cca_http_request *r, char id[37])
{
    if (cca_uuid_canonical(r->segment_id, id))
        return true;
    cca_http_respond_error(r, 404, "not_found",
                           "not an operator id: operator ids are UUIDs (RFC 9562)");
    return false;
}

/* The committed dialog @id into *ret_doc; false (and a 404/5xx sent) when it cannot be
 * read. */
static bool read_dialog(struct cca_http_request *r, const char *id, json_t **ret_doc)
{
    struct cca_error err = {0};
    cca_rc rc = cca_engine_get_dialog(r->http->engine, id, ret_doc, &err);

    if (rc == CCA_OK)
        return true;
    if (rc == CCA_ERR_NOT_FOUND)
        cca_http_respond_error(r, 404, "not_found", "no dialog with this id");
    else
        cca_http_respond_rc(r, rc, &err);
    return false;
}

/* Does the operator of @r hold dialog @id? */
static bool owns(struct cca_http_request *r, const char *id)
{
    char owner[37] = "";

    return cca_desk_owner(r->http->desk, id, owner) == CCA_OWNER_OPERATOR &&
           strcmp(owner, r->operator_id) == 0;
}

/* CSAT of the dialogs an operator had: {ratings, mean, by_score [1..5]}. */
static json_t *csat_view(const unsigned long by_score[5])
{
    json_t *csat = json_object();
    json_t *by = json_array();
    unsigned long n = 0;
    unsigned long sum = 0;

    for (int i = 0; i < 5; i++) {
        n += by_score[i];
        sum += by_score[i] * (unsigned long)(i + 1);
        (void)json_array_append_new(by, json_integer((json_int_t)by_score[i]));
    }
    (void)json_object_set_new(csat, "ratings", json_integer((json_int_t)n));
    (void)json_object_set_new(csat, "mean",
                              n > 0 ? json_real((double)sum / (double)n) : json_null());
    (void)json_object_set_new(csat, "by_score", by);
    return csat;
}

/*
 * @view (an operator view, changed in place) with the desk's live state:
 * "open_dialogs", and "last_seen_at" / "last_dialog_closed_at" when the desk
 * knows newer ones than the record (they are kept in memory between writes).
 * Returns @view.
 */
static json_t *with_live(struct cca_http_request *r, json_t *view)
{
    const char *id = json_string_value(json_object_get(view, "operator_id"));
    struct cca_desk_operator_info info = {0};
    char at[CCA_TIME_LEN];

    if (id == NULL || !cca_desk_operator(r->http->desk, id, &info))
        info.open_dialogs = 0;
    (void)json_object_set_new(view, "open_dialogs", json_integer(info.open_dialogs));
    if (info.last_seen_ms > 0) {
        cca_time_format(info.last_seen_ms, at);
        (void)json_object_set_new(view, "last_seen_at", json_string(at));
    }
    if (info.last_closed_ms > 0) {
        cca_time_format(info.last_closed_ms, at);
        (void)json_object_set_new(view, "last_dialog_closed_at", json_string(at));
    }
    (void)json_object_set_new(view, "csat", csat_view(info.csat));
    return view;
}

/* ---- operator records ----------------------------------------------------------------
 */

/* Answer the operator view of @id: the committed record plus the desk's live count. */
static void respond_operator(struct cca_http_request *r, const char *id)
{
    struct cca_error err = {0};
    json_t *doc = NULL;
    cca_rc rc;

    rc = cca_engine_get_operator(r->http->engine, id, &doc, &err);
    if (rc == CCA_ERR_NOT_FOUND) {
        cca_http_respond_error(r, 404, "not_found", "no operator with this id");
        return;
    }
    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    cca_http_respond_json(r, 200, with_live(r, cca_operator_public_view(doc)));
    json_decref(doc);
}

/* An operator view from the engine (the public record): plus the live "open_dialogs". */
static json_t *finish_operator(struct cca_http_request *r, json_t *result,
                               unsigned *status, void *cls)
{
    json_t *body = json_copy(result);

    (void)status;
    (void)cls;
    if (json_object_get(body, "name") != NULL) /* a view; a delete has no name */
        (void)with_live(r, body);
    return body;
}

/* The bearer token of a new operator: only ever in the 201 body, wiped after. */
struct new_token {
    char token[CCA_OPERATOR_TOKEN_LEN + 1];
};

static void new_token_free(void *cls)
{
    struct new_token *t = cls;

    explicit_bzero(t->token, sizeof(t->token));
    free(t);
}

/* 201 {"operator_id", "token", "operator"}: the token is never stored, so added here. */
static json_t *finish_created(struct cca_http_request *r, json_t *result,
                              unsigned *status, void *cls)
{
    struct new_token *t = cls;
    json_t *id = json_object_get(result, "operator_id");
    json_t *view = json_copy(json_object_get(result, "operator"));
    json_t *body = json_object();

    (void)status;
    (void)with_live(r, view);
    (void)json_object_set(body, "operator_id", id);
    (void)json_object_set_new(body, "token", json_string(t->token));
    (void)json_object_set_new(body, "operator", view);
    return body;
}

/* Does @reg carry the configured secret or one of the configured PINs? */
static bool credential_ok(const struct cca_config *cfg,
                          const struct cca_operator_reg *reg)
{
    if (reg->secret != NULL)
        return cca_operator_secret_equal(reg->secret, strlen(reg->secret),
                                         cfg->operator_secret,
                                         strlen(cfg->operator_secret));
    if (reg->pin != NULL)
        return cca_operator_pin_allowed(reg->pin, strlen(reg->pin), cfg->operator_pins);
    return false;
}

/*
 * Make the operator of @reg: a new id and token, the record, the engine's
 * create. @actor NULL: the operator registers themself.
 */
static void create_operator(struct cca_http_request *r,
                            const struct cca_operator_reg *reg, bool self)
{
    struct cca_engine_request req = {.op = CCA_OP_OPERATOR_CREATE,
                                     .render = cca_http_view_outcome};
    struct new_token *t = cca_xcalloc(1, sizeof(*t));
    char hash[65];
    char id[37];

    if (cca_operator_token_new(t->token, hash) != CCA_OK) {
        new_token_free(t);
        cca_http_respond_error(r, 500, "internal", "could not make a token; retry later");
        return;
    }
    cca_uuid_new(id);
    req.operator_doc = cca_operator_new_doc(id, reg, hash, cca_time_wall_ms());
    (void)snprintf(req.target, sizeof(req.target), "%s", id);
    cca_http_actor(r, &req);
    if (self)
        (void)snprintf(req.actor, sizeof(req.actor), "operator:%s", id);
    cca_http_submit_finish(r, &req, finish_created, NULL, t, new_token_free);
}

void cca_http_handle_register(struct cca_http_request *r)
{
    const struct cca_config *cfg = r->http->cfg;
    struct cca_operator_reg reg = {0};
    struct cca_operator_reg probe = {0};
    struct cca_error err = {0};
    bool refuse = false;
    cca_rc rc;

    if (!cfg->operator_secret[0] && !cfg->operator_pins[0]) {
        cca_http_respond_error(r, 403, "registration_closed",
                               "self-registration is off: an admin creates operators "
                               "(POST /api/v1/operators)");
        goto out;
    }
    rc = cca_operator_parse_register(r->body, r->body_len, true,
                                     cfg->operator_max_dialogs, &reg, &err);
    /*
     * A body that is valid but for its credential (missing, both, malformed)
     * is answered like a wrong credential: the answer never says which.
     */
    if (rc == CCA_ERR_INVALID)
        refuse = cca_operator_parse_register(r->body, r->body_len, false,
                                             cfg->operator_max_dialogs, &probe,
                                             NULL) == CCA_OK;
    if (rc != CCA_OK && !refuse) {
        cca_http_respond_rc(r, rc, &err);
        goto out;
    }
    if (refuse || !credential_ok(cfg, &reg)) {
        (void)snprintf(r->www_authenticate, sizeof(r->www_authenticate),
                       "Bearer realm=\"call-center-agents\"");
        cca_http_respond_error(r, 401, "unauthorized",
                               "the registration secret or PIN is not valid");
        goto out;
    }
    create_operator(r, &reg, true);
out:
    cca_operator_reg_cleanup(&probe);
    cca_operator_reg_cleanup(&reg);
}

void cca_http_handle_operator_create(struct cca_http_request *r)
{
    struct cca_operator_reg reg = {0};
    struct cca_error err = {0};
    cca_rc rc;

    rc = cca_operator_parse_register(r->body, r->body_len, false,
                                     r->http->cfg->operator_max_dialogs, &reg, &err);
    if (rc != CCA_OK)
        cca_http_respond_rc(r, rc, &err);
    else
        create_operator(r, &reg, false);
    cca_operator_reg_cleanup(&reg);
}

/* Oldest first (created_at, then the id): a stable order for a list in no order. */
static int by_created(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a;
    json_t *y = *(json_t *const *)b;
    int64_t tx = cca_operator_get_time(x, "created_at");
    int64_t ty = cca_operator_get_time(y, "created_at");

    if (tx != ty)
        return tx < ty ? -1 : 1;
    return strcmp(json_string_value(json_object_get(x, "operator_id")),
                  json_string_value(json_object_get(y, "operator_id")));
}

/* What a colleague sees of an operator (transfers): no profile, times or ratings. */
static json_t *team_view(struct cca_http_request *r, json_t *doc)
{
    static const char *const keep[] = {"operator_id", "name",        "languages",
                                       "skills",      "max_dialogs", "status"};
    json_t *live = with_live(r, cca_operator_public_view(doc));
    json_t *view = json_object();

    for (size_t i = 0; i < CCA_ARRAY_SIZE(keep); i++)
        (void)json_object_set(view, keep[i], json_object_get(live, keep[i]));
    (void)json_object_set(view, "open_dialogs", json_object_get(live, "open_dialogs"));
    json_decref(live);
    return view;
}

/* {"items": [...]}: every operator, oldest first, in @view's shape. */
static void respond_operators(struct cca_http_request *r,
                              json_t *(*view)(struct cca_http_request *, json_t *))
{
    json_t *docs = cca_engine_list_operators(r->http->engine);
    size_t n = json_array_size(docs);
    json_t **v = cca_xcalloc(n > 0 ? n : 1, sizeof(*v));
    json_t *items = json_array();
    json_t *out = json_object();

    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(docs, i);
    qsort(v, n, sizeof(*v), by_created);
    for (size_t i = 0; i < n; i++)
        (void)json_array_append_new(items, view(r, v[i]));
    (void)json_object_set_new(out, "items", items);
    free(v);
    json_decref(docs);
    cca_http_respond_json(r, 200, out);
}

static json_t *admin_view(struct cca_http_request *r, json_t *doc)
{
    return with_live(r, cca_operator_public_view(doc));
}

void cca_http_handle_operator_list(struct cca_http_request *r)
{
    respond_operators(r, admin_view);
}

void cca_http_handle_team(struct cca_http_request *r)
{
    respond_operators(r, team_view);
}

void cca_http_handle_operator_get(struct cca_http_request *r)
{
    char id[37];

    if (operator_path_id(r, id))
        respond_operator(r, id);
}

void cca_http_handle_me(struct cca_http_request *r)
{
    respond_operator(r, r->operator_id);
}

/* PATCH an operator's record (@id); @admin may change max_dialogs. */
static void patch_operator(struct cca_http_request *r, const char *id, bool admin)
{
    struct cca_engine_request req = {.op = CCA_OP_OPERATOR_UPDATE,
                                     .render = cca_http_view_outcome};
    struct cca_operator_patch patch = {0};
    struct cca_error err = {0};
    cca_rc rc;

    rc = cca_operator_parse_patch(r->body, r->body_len, true, &patch, &err);
    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    if (!admin && patch.has_max_dialogs) {
        cca_operator_patch_cleanup(&patch);
        cca_http_respond_error(r, 403, "forbidden",
                               "max_dialogs can only be changed by an admin");
        return;
    }
    req.patch = cca_xmalloc(sizeof(*req.patch));
    *req.patch = patch;
    (void)snprintf(req.target, sizeof(req.target), "%s", id);
    cca_http_actor(r, &req);
    cca_http_submit_finish(r, &req, finish_operator, "not_found", NULL, NULL);
}

void cca_http_handle_operator_patch(struct cca_http_request *r)
{
    char id[37];

    if (operator_path_id(r, id))
        patch_operator(r, id, true);
}

void cca_http_handle_me_patch(struct cca_http_request *r)
{
    patch_operator(r, r->operator_id, false);
}

void cca_http_handle_operator_delete(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_OPERATOR_DELETE,
                                     .render = cca_http_view_outcome};
    char id[37];

    if (!operator_path_id(r, id))
        return;
    (void)snprintf(req.target, sizeof(req.target), "%s", id);
    cca_http_actor(r, &req);
    cca_http_submit_finish(r, &req, finish_operator, NULL, NULL, NULL);
}

void cca_http_handle_me_status(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_OPERATOR_UPDATE,
                                     .render = cca_http_view_outcome,
                                     .has_status = true};
    struct cca_error err = {0};
    cca_rc rc;

    rc = cca_http_parse_operator_status(r->body, r->body_len, &req.status, &err);
    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    (void)snprintf(req.target, sizeof(req.target), "%s", r->operator_id);
    cca_http_actor(r, &req);
    cca_http_submit_finish(r, &req, finish_operator, NULL, NULL, NULL);
}

/* ---- an operator's dialogs and the queue
 * ----------------------------------------------- */

void cca_http_handle_me_dialogs(struct cca_http_request *r)
{
    json_t *ids = cca_desk_operator_dialogs(r->http->desk, r->operator_id);
    json_t *items = json_array();
    json_t *out = json_object();
    json_t *v;
    size_t i;

    json_array_foreach (ids, i, v) {
        json_t *doc = NULL;
        json_t *item;

        /* A dialog that cannot be read now (deleted meanwhile) is left out. */
        if (cca_engine_get_dialog(r->http->engine, json_string_value(v), &doc, NULL) !=
            CCA_OK)
            continue;
        item = cca_dialog_summary_view(doc);
        (void)json_object_set(item, "owner", json_object_get(doc, "owner"));
        (void)json_array_append_new(items, item);
        json_decref(doc);
    }
    (void)json_object_set_new(out, "items", items);
    json_decref(ids);
    cca_http_respond_json(r, 200, out);
}

/* Take dialog @id ("" for the first queued one the operator may take). */
static void take(struct cca_http_request *r, const char *id, const char *not_found)
{
    struct cca_engine_request req = {.op = CCA_OP_TAKE, .render = cca_http_view_outcome};

    (void)snprintf(req.id, sizeof(req.id), "%s", id);
    cca_http_actor(r, &req);
    cca_http_submit_finish(r, &req, NULL, not_found, NULL, NULL);
}

void cca_http_handle_me_next(struct cca_http_request *r)
{
    take(r, "", "queue_empty");
}

void cca_http_handle_take(struct cca_http_request *r)
{
    char id[37];

    if (cca_http_path_id(r, id))
        take(r, id, NULL);
}

void cca_http_handle_queue(struct cca_http_request *r)
{
    const char *limit = cca_http_query(r, "limit");
    unsigned long n = 100;

    if (!r->operator_id[0] && !r->admin) {
        cca_http_respond_error(r, 403, "forbidden",
                               "the queue is for operators and admin keys");
        return;
    }
    if (limit != NULL && !cca_http_parse_uint(limit, 1, 1000, &n)) {
        cca_http_respond_error(r, 422, "validation_error",
                               "limit must be an integer from 1 to 1000");
        return;
    }
    cca_http_respond_json(r, 200,
                          cca_desk_queue_view(r->http->desk, cca_time_wall_ms(), n));
}

/* ---- dialogs around a human
 * ------------------------------------------------------------ */

void cca_http_handle_reply(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_REPLY, .render = cca_http_view_outcome};
    struct cca_error err = {0};
    cca_rc rc;

    if (!cca_http_path_id(r, req.id))
        return;
    /* Whether it is theirs is the engine's decision, after a close queued before. */
    rc = cca_http_parse_reply(r->body, r->body_len, &req.text, &err);
    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    cca_http_actor(r, &req);
    cca_http_submit_finish(r, &req, NULL, NULL, NULL, NULL);
}

void cca_http_handle_handoff(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_HANDOFF,
                                     .render = cca_http_view_outcome};
    struct cca_http_handoff h = {0};
    struct cca_error err = {0};
    cca_rc rc;

    if (!cca_http_path_id(r, req.id))
        return;
    rc = cca_http_parse_handoff(r->body, r->body_len, &h, &err);
    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    /*
     * An operator hands back or transfers only their own dialogs and asks for
     * a human only for one they may see (the engine decides again, in order).
     */
    if (r->operator_id[0] &&
        !(h.to == CCA_OWNER_QUEUE
              ? cca_desk_visible(r->http->desk, req.id, r->operator_id)
              : owns(r, req.id))) {
        cca_http_handoff_cleanup(&h);
        cca_http_respond_error(r, 403, "forbidden",
                               "an operator may hand back or transfer only their own "
                               "dialogs");
        return;
    }
    req.handoff_to = h.to;
    req.agent = h.agent;
    req.reason = h.reason; /* stolen */
    h.reason = NULL;
    (void)snprintf(req.target, sizeof(req.target), "%s", h.operator_id);
    cca_http_handoff_cleanup(&h);
    cca_http_actor(r, &req);
    cca_http_submit_finish(r, &req, NULL, NULL, NULL, NULL);
}

void cca_http_handle_messages(struct cca_http_request *r)
{
    const char *after = cca_http_query(r, "after");
    json_t *doc = NULL;
    json_t *items;
    json_t *messages;
    json_t *out;
    bool found = true;
    char id[37];

    if (!cca_http_path_id(r, id))
        return;
    if (r->operator_id[0] && !cca_desk_visible(r->http->desk, id, r->operator_id)) {
        cca_http_respond_error(r, 403, "forbidden",
                               "an operator may read only their own and queued dialogs");
        return;
    }
    if (!read_dialog(r, id, &doc))
        return;
    items = cca_dialog_messages_after(doc, after, &found);
    if (after != NULL && !found) {
        json_decref(items);
        json_decref(doc);
        cca_http_respond_error(r, 404, "message_not_found",
                               "no message with this id in the dialog");
        return;
    }
    messages = json_object_get(doc, "messages");
    out = json_object();
    (void)json_object_set_new(out, "dialog_id", json_string(id));
    (void)json_object_set_new(out, "items", items);
    if (json_array_size(messages) > 0)
        (void)json_object_set(
            out, "last_message_id",
            json_object_get(json_array_get(messages, json_array_size(messages) - 1),
                            "id"));
    else
        (void)json_object_set_new(out, "last_message_id", json_null());
    json_decref(doc);
    cca_http_respond_json(r, 200, out);
}

void cca_http_handle_dialog_queue(struct cca_http_request *r)
{
    json_t *doc = NULL;
    json_t *out;
    size_t position;
    double eta;
    char id[37];

    if (!cca_http_path_id(r, id) || !read_dialog(r, id, &doc))
        return;
    json_decref(doc);
    if (!cca_desk_position(r->http->desk, id, &position, &eta)) {
        cca_http_respond_error(r, 409, "not_queued", "the dialog is not in the queue");
        return;
    }
    out = json_object();
    (void)json_object_set_new(out, "dialog_id", json_string(id));
    (void)json_object_set_new(out, "position", json_integer((json_int_t)position));
    (void)json_object_set_new(out, "estimated_wait_s",
                              eta >= 0 ? json_integer((json_int_t)(eta + 0.999))
                                       : json_null());
    cca_http_respond_json(r, 200, out);
}

/* 201 for a new rating, 200 (the same body) when it repeats the stored one. */
static json_t *finish_rating(struct cca_http_request *r, json_t *result, unsigned *status,
                             void *cls)
{
    json_t *body = json_copy(result);

    (void)r;
    (void)cls;
    if (json_object_get(body, "_repeat") != NULL) {
        *status = 200;
        (void)json_object_del(body, "_repeat");
    }
    return body;
}

void cca_http_handle_rating(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_RATE, .render = cca_http_view_outcome};
    struct cca_error err = {0};
    json_t *doc = NULL;
    const char *status;
    bool open;
    cca_rc rc;

    if (!cca_http_path_id(r, req.id))
        return;
    rc = cca_http_parse_rating(r->body, r->body_len, &req.score, &req.text, &err);
    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    if (!read_dialog(r, req.id, &doc)) {
        free(req.text);
        return;
    }
    /*
     * Checked here because the engine's conflict has one code per route
     * (rating_exists); a closed dialog never opens again, so this stays true.
     */
    status = json_string_value(json_object_get(doc, "status"));
    open = status == NULL || strcmp(status, "closed") != 0;
    json_decref(doc);
    if (open) {
        free(req.text);
        cca_http_respond_error(r, 409, "dialog_open",
                               "only a closed dialog can be rated");
        return;
    }
    cca_http_actor(r, &req);
    cca_http_submit_finish(r, &req, finish_rating, NULL, NULL, NULL);
}

/* ---- event streams
 * ---------------------------------------------------------------------- */

void cca_http_handle_me_events(struct cca_http_request *r)
{
    char topic[CCA_EVENTS_TOPIC_MAX + 1];
    const char *topics[2] = {topic, "operators"};

    (void)snprintf(topic, sizeof(topic), "operator:%s", r->operator_id);
    cca_desk_touch(r->http->desk, r->operator_id, cca_time_wall_ms());
    cca_http_sse_respond(r, r->http->events, topics, CCA_ARRAY_SIZE(topics));
}

void cca_http_handle_dialog_events(struct cca_http_request *r)
{
    char topic[CCA_EVENTS_TOPIC_MAX + 1];
    const char *topics[1] = {topic};
    json_t *doc = NULL;
    char id[37];

    if (!cca_http_path_id(r, id) || !read_dialog(r, id, &doc))
        return;
    json_decref(doc);
    (void)snprintf(topic, sizeof(topic), "dialog:%s", id);
    cca_http_sse_respond(r, r->http->events, topics, CCA_ARRAY_SIZE(topics));
}
