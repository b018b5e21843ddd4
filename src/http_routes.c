/* SPDX-License-Identifier: MIT */
/*
 * The service's URL route table and the handlers of the dialog routes, / and
 * /openapi.yaml (the health and /metrics handlers are in http_health.c and
 * http_metrics.c). cca_http_new (http.c) hands the table to the server.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uuid.h>

#include "cca/dialog.h"
#include "cca/mem.h"

#include "http_int.h"

void cca_http_actor(const struct cca_http_request *r, struct cca_engine_request *req)
{
    if (r->operator_id[0]) {
        (void)snprintf(req->actor, sizeof(req->actor), "operator:%s", r->operator_id);
        (void)snprintf(req->actor_operator, sizeof(req->actor_operator), "%s",
                       r->operator_id);
    } else {
        (void)snprintf(req->actor, sizeof(req->actor), "%s",
                       r->admin ? "admin" : "client");
        req->actor_operator[0] = '\0';
    }
}

/*
 * On a shared route an operator sees only their own and queued dialogs
 * (cca_desk_visible): false (and a 403 sent) otherwise. Keys see every dialog.
 */
static bool may_see(struct cca_http_request *r, const char *id)
{
    if (!r->operator_id[0] || cca_desk_visible(r->http->desk, id, r->operator_id))
        return true;
    cca_http_respond_error(r, 403, "forbidden",
                           "an operator may read only their own and queued dialogs");
    return false;
}

#define IDEMPOTENCY_KEY_MAX 255

/*
 * The Idempotency-Key of @r (draft-ietf-httpapi-idempotency-key-header: an
 * sf-string; the quotes are optional here) into req->idempotency_key (for a
 * create by an API key client: a hash of key and client, see below), and the
 * request's fingerprint into req->request_hash: a name-based UUID (RFC 9562
 * section 5.5, SHA-1, uuid_generate_sha1(3)) of the route, the dialog id and
 * the body re-serialised with sorted keys, so a retry that reorders keys or
 * whitespace is still the same request. Create keys are scoped to the API
 * key that sent them (r->api_key), so two clients cannot collide or see
 * each other's dialogs through a key; message keys live in their dialog.
 * Returns false with a 400 sent when
 * the header is malformed; true otherwise (also without the header).
 */
static bool idempotency(struct cca_http_request *r, struct cca_engine_request *req)
{
    static const uuid_t ns = {0x6b, 0x1e, 0x2a, 0x51, 0x0c, 0x3d, 0x4f, 0x8e,
                              0x9a, 0x57, 0x21, 0xd4, 0x7c, 0x90, 0x13, 0xe6};
    const char *v =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key");
    size_t len = v != NULL ? strlen(v) : 0;
    json_t *body;
    char *canon;
    char *name;
    uuid_t out;

    if (v == NULL)
        return true;
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    for (size_t i = 0; i < len; i++) {
        if (v[i] < 0x21 || v[i] > 0x7e || v[i] == '"' || v[i] == '\\')
            len = 0;
    }
    if (len == 0 || len > IDEMPOTENCY_KEY_MAX) {
        cca_http_respond_error(r, 400, "invalid_idempotency_key",
                               "Idempotency-Key must be 1..255 visible ASCII characters");
        return false;
    }
    /*
     * Create keys are global: scope them to the caller's API key. The stored
     * key is then a one-way hash of API key and key, so a dialog (readable by
     * every client) never shows anything derived from an API key alone.
     */
    if (req->op == CCA_OP_CREATE && r->api_key != NULL) {
        name = cca_xmalloc(r->api_key_len + len + 2);
        (void)sprintf(name, "%.*s:%.*s", (int)r->api_key_len, r->api_key, (int)len, v);
        uuid_generate_sha1(out, ns, name, strlen(name));
        free(name);
        req->idempotency_key = cca_xmalloc(37);
        uuid_unparse_lower(out, req->idempotency_key);
    } else {
        req->idempotency_key = cca_xstrndup(v, len);
    }
    body = json_loadb(r->body ? r->body : "", r->body_len, 0, NULL);
    canon = body != NULL
                ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                : cca_xstrdup("");
    name = cca_xmalloc(strlen(r->route->method) + strlen(r->route->pattern) +
                       strlen(req->id) + strlen(canon) + 4);
    (void)sprintf(name, "%s %s %s\n%s", r->route->method, r->route->pattern, req->id,
                  canon);
    uuid_generate_sha1(out, ns, name, strlen(name));
    uuid_unparse_lower(out, req->request_hash);
    free(name);
    free(canon);
    json_decref(body);
    return true;
}

static void h_create(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_CREATE,
                                     .render = cca_http_view_outcome};
    struct cca_error err = {0};
    cca_rc rc = cca_http_parse_create(r->body, r->body_len, &req.create, &err);

    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    if (!idempotency(r, &req)) {
        cca_dialog_create_cleanup(&req.create);
        return;
    }
    cca_http_actor(r, &req);
    cca_http_submit(r, &req);
}

static void h_message(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_MESSAGE,
                                     .render = cca_http_view_outcome};
    struct cca_error err = {0};
    cca_rc rc;

    if (!cca_http_path_id(r, req.id))
        return;
    rc = cca_http_parse_message(r->body, r->body_len, &req.text, &err);
    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    if (!idempotency(r, &req)) {
        free(req.text);
        return;
    }
    cca_http_actor(r, &req);
    /* 202 when the message waits for a human (no AI answer). */
    cca_http_submit_finish(r, &req, cca_http_finish_message, NULL, NULL, NULL);
}

/* A read of dialog @id failed with @rc: 404 for a missing one, else as the rc table. */
static void respond_read_error(struct cca_http_request *r, cca_rc rc,
                               const struct cca_error *err)
{
    if (rc == CCA_ERR_NOT_FOUND)
        cca_http_respond_error(r, 404, "not_found", "no dialog with this id");
    else
        cca_http_respond_rc(r, rc, err);
}

static void h_get(struct cca_http_request *r)
{
    struct cca_error err = {0};
    char id[37];
    char *bytes;
    size_t len;
    cca_rc rc;

    if (!cca_http_path_id(r, id) || !may_see(r, id))
        return;
    rc = cca_engine_get_document(r->http->engine, id, &bytes, &len, &err);
    if (rc != CCA_OK) {
        respond_read_error(r, rc, &err);
        return;
    }
    /*
     * Handed to MHD as is, no second copy. With cca_engine_get_document_ref the
     * committed bytes themselves go out (cca_http_respond_shared + an unref).
     */
    cca_http_respond_shared(r, 200, "application/json; charset=utf-8", bytes, len, free,
                            bytes);
}

static void h_status(struct cca_http_request *r)
{
    struct cca_error err = {0};
    char id[37];
    json_t *doc = NULL;
    cca_rc rc;

    if (!cca_http_path_id(r, id) || !may_see(r, id))
        return;
    rc = cca_engine_get_dialog(r->http->engine, id, &doc, &err);
    if (rc != CCA_OK) {
        respond_read_error(r, rc, &err);
        return;
    }
    cca_http_respond_json(r, 200, cca_dialog_status_view(doc));
    json_decref(doc);
}

static void h_close(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_CLOSE, .render = cca_http_view_outcome};
    struct cca_error err = {0};
    cca_rc rc;

    if (!cca_http_path_id(r, req.id))
        return;
    if (r->operator_id[0]) {
        char owner[37] = "";

        if (cca_desk_owner(r->http->desk, req.id, owner) != CCA_OWNER_OPERATOR ||
            strcmp(owner, r->operator_id) != 0) {
            cca_http_respond_error(r, 403, "forbidden",
                                   "an operator may close only their own dialogs");
            return;
        }
    }
    rc = cca_http_parse_close(r->body, r->body_len, cca_http_query(r, "reason"),
                              &req.reason, &err);
    if (rc != CCA_OK) {
        cca_http_respond_rc(r, rc, &err);
        return;
    }
    cca_http_actor(r, &req);
    cca_http_submit(r, &req);
}

static void h_delete(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_DELETE,
                                     .render = cca_http_view_outcome};
    const char *force = cca_http_query(r, "force");

    if (!cca_http_path_id(r, req.id))
        return;
    if (force != NULL && !cca_http_parse_bool(force, &req.force)) {
        cca_http_respond_error(r, 422, "validation_error", "force must be true or false");
        return;
    }
    cca_http_actor(r, &req);
    cca_http_submit(r, &req);
}

static void h_cleanup(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_CLEANUP_INACTIVE,
                                     .render = cca_http_view_outcome};

    cca_http_actor(r, &req);
    cca_http_submit(r, &req);
}

static void h_cleanup_closed(struct cca_http_request *r)
{
    struct cca_engine_request req = {.op = CCA_OP_CLEANUP_CLOSED,
                                     .render = cca_http_view_outcome};
    const char *days = cca_http_query(r, "older_than_days");
    unsigned long v = 7;

    if (days != NULL && !cca_http_parse_uint(days, 1, 3650, &v)) {
        cca_http_respond_error(r, 422, "validation_error",
                               "older_than_days must be an integer from 1 to 3650");
        return;
    }
    req.older_than_days = (unsigned)v;
    cca_http_actor(r, &req);
    cca_http_submit(r, &req);
}

bool cca_http_query_status_agent(struct cca_http_request *r, int *ret_status,
                                 int *ret_agent)
{
    const char *status = cca_http_query(r, "status");
    const char *agent = cca_http_query(r, "agent");

    *ret_status = -1;
    *ret_agent = -1;
    if (status != NULL) {
        enum cca_dialog_status st;

        if (!cca_dialog_status_parse(status, &st)) {
            cca_http_respond_error(r, 422, "validation_error",
                                   "status must be active, escalated, queued, "
                                   "assigned or closed");
            return false;
        }
        *ret_status = (int)st;
    }
    if (agent != NULL) {
        enum cca_agent a;

        if (!cca_agent_parse(agent, &a)) {
            cca_http_respond_error(r, 422, "validation_error",
                                   "agent must be tech_support, sales or supervisor");
            return false;
        }
        *ret_agent = (int)a;
    }
    return true;
}

static void h_list(struct cca_http_request *r)
{
    struct cca_engine_query q = {.status = -1, .agent = -1, .limit = 20};
    const char *limit = cca_http_query(r, "limit");
    const char *view = cca_http_query(r, "view");
    struct cca_error err = {0};
    unsigned long lim;
    struct cca_engine_page page;

    q.customer_id = cca_http_query(r, "customer_id");
    q.cursor = cca_http_query(r, "cursor");
    if (!cca_http_query_status_agent(r, &q.status, &q.agent))
        return;
    if (limit != NULL) {
        if (!cca_http_parse_uint(limit, 1, 100, &lim)) {
            cca_http_respond_error(r, 422, "validation_error",
                                   "limit must be an integer from 1 to 100");
            return;
        }
        q.limit = (unsigned)lim;
    }
    if (view != NULL && strcmp(view, "summary") != 0 && strcmp(view, "full") != 0) {
        cca_http_respond_error(r, 422, "validation_error",
                               "view must be summary or full");
        return;
    }
    if (cca_engine_list(r->http->engine, &q, &page, &err) != CCA_OK) {
        cca_http_respond_error(r, 422, "validation_error", err.msg);
        return;
    }
    cca_http_respond_json(
        r, 200, cca_http_view_page(&page, view != NULL && strcmp(view, "full") == 0));
    cca_engine_page_cleanup(&page);
}

static void h_root(struct cca_http_request *r)
{
    json_t *o = json_object();

    (void)json_object_set_new(o, "name", json_string("call-center-agents"));
    (void)json_object_set_new(o, "version", json_string(r->http->version));
    (void)json_object_set_new(o, "environment", json_string(r->http->cfg->environment));
    (void)json_object_set_new(o, "api_docs", json_string("/openapi.yaml"));
    (void)json_object_set_new(o, "docs", json_string("/docs"));
    (void)json_object_set_new(o, "console", json_string("/console"));
    (void)json_object_set_new(o, "health_check", json_string("/api/v1/health"));
    cca_http_respond_json(r, 200, o);
}

/* ---- the URL route table ------------------------------------------------------------
 */

#define D "/api/v1/dialogue"
#define O "/api/v1/operators"

/*
 * First match wins: literal segments ("cleanup", "me") come before "{id}".
 * SHARED routes take an API key or an operator token; their handlers keep an
 * operator to their own and queued dialogs.
 */
static const struct cca_http_route routes[] = {
    {"POST", D "/create", h_create, 201, NULL, CCA_ACCESS_CLIENT},
    {"DELETE", D "/cleanup", h_cleanup, 200, NULL, CCA_ACCESS_ADMIN},
    {"DELETE", D "/cleanup/closed", h_cleanup_closed, 200, NULL, CCA_ACCESS_ADMIN},
    {"POST", D "/{id}/message", h_message, 200, "dialog_closed", CCA_ACCESS_CLIENT},
    {"GET", D "/{id}", h_get, 200, NULL, CCA_ACCESS_SHARED},
    {"GET", D "/{id}/history", h_get, 200, NULL, CCA_ACCESS_SHARED},
    {"GET", D "/{id}/status", h_status, 200, NULL, CCA_ACCESS_SHARED},
    {"POST", D "/{id}/close", h_close, 200, "dialog_closed", CCA_ACCESS_SHARED},
    {"DELETE", D "/{id}", h_delete, 200, "dialog_open", CCA_ACCESS_ADMIN},
    {"POST", D "/{id}/take", cca_http_handle_take, 200, "not_queued",
     CCA_ACCESS_OPERATOR},
    {"POST", D "/{id}/reply", cca_http_handle_reply, 200, "dialog_closed",
     CCA_ACCESS_OPERATOR},
    {"POST", D "/{id}/handoff", cca_http_handle_handoff, 200, "handoff_refused",
     CCA_ACCESS_SHARED},
    {"GET", D "/{id}/messages", cca_http_handle_messages, 200, NULL, CCA_ACCESS_SHARED},
    {"GET", D "/{id}/queue", cca_http_handle_dialog_queue, 200, NULL, CCA_ACCESS_CLIENT},
    {"POST", D "/{id}/rating", cca_http_handle_rating, 201, "rating_exists",
     CCA_ACCESS_CLIENT},
    {"GET", D "/{id}/events", cca_http_handle_dialog_events, 200, NULL,
     CCA_ACCESS_CLIENT},
    {"GET", "/api/v1/dialogues", h_list, 200, NULL, CCA_ACCESS_CLIENT},
    {"POST", O "/register", cca_http_handle_register, 201, "conflict",
     CCA_ACCESS_REGISTER},
    {"POST", O, cca_http_handle_operator_create, 201, "conflict", CCA_ACCESS_ADMIN},
    {"GET", O, cca_http_handle_operator_list, 200, NULL, CCA_ACCESS_ADMIN},
    {"GET", O "/team", cca_http_handle_team, 200, NULL, CCA_ACCESS_OPERATOR},
    {"GET", O "/me", cca_http_handle_me, 200, NULL, CCA_ACCESS_OPERATOR},
    {"PATCH", O "/me", cca_http_handle_me_patch, 200, NULL, CCA_ACCESS_OPERATOR},
    {"PUT", O "/me/status", cca_http_handle_me_status, 200, NULL, CCA_ACCESS_OPERATOR},
    {"GET", O "/me/dialogs", cca_http_handle_me_dialogs, 200, NULL, CCA_ACCESS_OPERATOR},
    {"POST", O "/me/next", cca_http_handle_me_next, 200, "not_queued",
     CCA_ACCESS_OPERATOR},
    {"GET", O "/me/events", cca_http_handle_me_events, 200, NULL, CCA_ACCESS_OPERATOR},
    {"GET", O "/me/stats", cca_http_handle_me_stats, 200, NULL, CCA_ACCESS_OPERATOR},
    {"GET", O "/{id}/stats", cca_http_handle_operator_stats, 200, NULL,
     CCA_ACCESS_SHARED},
    {"GET", O "/{id}", cca_http_handle_operator_get, 200, NULL, CCA_ACCESS_ADMIN},
    {"PATCH", O "/{id}", cca_http_handle_operator_patch, 200, NULL, CCA_ACCESS_ADMIN},
    {"DELETE", O "/{id}", cca_http_handle_operator_delete, 200, NULL, CCA_ACCESS_ADMIN},
    {"GET", "/api/v1/queue", cca_http_handle_queue, 200, NULL, CCA_ACCESS_SHARED},
    {"GET", "/api/v1/customers/{id}", cca_http_handle_customer_get, 200, NULL,
     CCA_ACCESS_SHARED},
    {"PUT", "/api/v1/customers/{id}", cca_http_handle_customer_put, 200, NULL,
     CCA_ACCESS_SHARED},
    {"GET", "/api/v1/customers/{id}/history", cca_http_handle_customer_history, 200, NULL,
     CCA_ACCESS_SHARED},
    {"GET", "/api/v1/exports/dialogs", cca_http_handle_export_dialogs, 200, NULL,
     CCA_ACCESS_ADMIN},
    {"GET", "/api/v1/exports/profiles", cca_http_handle_export_profiles, 200, NULL,
     CCA_ACCESS_ADMIN},
    {"GET", "/api/v1/stats", cca_http_handle_stats, 200, NULL, CCA_ACCESS_ADMIN},
    {"GET", "/api/v1/health", cca_http_handle_health, 200, NULL, CCA_ACCESS_PUBLIC},
    {"GET", "/api/v1/health/detailed", cca_http_handle_health_detailed, 200, NULL,
     CCA_ACCESS_CLIENT},
    {"GET", "/api/v1/health/ready", cca_http_handle_ready, 200, NULL, CCA_ACCESS_PUBLIC},
    {"GET", "/api/v1/health/live", cca_http_handle_live, 200, NULL, CCA_ACCESS_PUBLIC},
    {"GET", "/", h_root, 200, NULL, CCA_ACCESS_PUBLIC},
    /*
     * Static files (the spec, the console, the docs; the pages call the API with
     * the user's key), also for HEAD (RFC 9110 9.1: wherever GET is).
     */
    {"GET", "/openapi.yaml", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"HEAD", "/openapi.yaml", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"GET", "/console", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"HEAD", "/console", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"GET", "/console/{id}", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"HEAD", "/console/{id}", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"GET", "/docs", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"HEAD", "/docs", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"GET", "/docs/{id}", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"HEAD", "/docs/{id}", cca_http_handle_web, 200, NULL, CCA_ACCESS_PUBLIC},
    {"GET", "/metrics", cca_http_handle_metrics, 200, NULL, CCA_ACCESS_PUBLIC},
    /* Telegram authenticates with its secret token header, not an API key. */
    {"POST", "/api/v1/telegram/webhook", cca_http_handle_telegram_webhook, 200, NULL,
     CCA_ACCESS_PUBLIC},
};
_Static_assert(CCA_ARRAY_SIZE(routes) <= CCA_HTTP_MAX_ROUTES,
               "raise CCA_HTTP_MAX_ROUTES");

static struct cca_http_table table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    (void)cca_http_table_init(&table, routes, CCA_ARRAY_SIZE(routes)); /* fits, above */
}

const struct cca_http_table *cca_http_routes(void)
{
    (void)pthread_once(&table_once, table_init);
    return &table;
}

size_t cca_http_route_count(void)
{
    return CCA_ARRAY_SIZE(routes);
}

size_t cca_http_route_index(const struct cca_http_route *route)
{
    return (size_t)(route - routes);
}

const struct cca_http_route *cca_http_route_at(size_t i)
{
    return i < CCA_ARRAY_SIZE(routes) ? &routes[i] : NULL;
}

const struct cca_http_route *cca_http_match(const char *method, const char *path,
                                            bool *ret_path_known, char *allow,
                                            size_t allow_size, char *ret_segment,
                                            size_t segment_size)
{
    return cca_http_table_match(cca_http_routes(), method, path, ret_path_known, allow,
                                allow_size, ret_segment, segment_size);
}
