/* SPDX-License-Identifier: MIT */
/* Private to the http_*.c files and their unit tests. */
#ifndef CCA_HTTP_INT_H
#define CCA_HTTP_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <microhttpd.h>

#include "cca/access.h"
#include "cca/desk.h"
#include "cca/dialog.h"
#include "cca/events.h"
#include "cca/operator.h"
#include "cca/engine.h"
#include "cca/http.h"
#include "cca/web.h"

#define CCA_HTTP_MAX_PATH 1024

struct cca_http {
    const struct cca_config *cfg;
    struct cca_engine *engine;
    struct cca_store *store;
    struct cca_llm *llm;
    struct cca_telegram *telegram;
    const char *version;
    struct MHD_Daemon *daemon;
    unsigned port;
    int64_t started_mono;
    atomic_int quiesced;
    atomic_int open_requests; /* created and not yet completed */
    /* Access control (src/access.c), fixed after cca_http_new. */
    struct cca_access_keys *keys;              /* no keys: the API is open */
    struct cca_access_limiter *client_limiter; /* NULL: RATE_LIMIT_RPS=0 */
    struct cca_access_limiter *dialog_limiter; /* NULL: DIALOG_RATE_LIMIT_PER_MIN=0 */
    struct cca_access_limiter
        *register_limiter; /* OPERATOR_REGISTER_PER_MIN per address */
    struct cca_desk *desk; /* the human side: operator tokens, visibility, the queue */
    struct cca_events *events; /* live events (SSE) */
    struct cca_access_cors *cors;
    struct cca_http_metrics *metrics;    /* http_server.c */
    const struct cca_http_table *routes; /* the URL route table; borrowed, static */
};

struct cca_http_request;
typedef void (*cca_http_handler_fn)(struct cca_http_request *r);

/* Releases a response body (free, or a reference drop); @cls as given. */
typedef void (*cca_http_release_fn)(void *cls);

/*
 * Who may call a route (http_server.c authorize): anyone (health, /,
 * /openapi.yaml, /metrics); any valid API key once API_KEYS are configured;
 * an admin key (ADMIN_API_KEYS: DELETE, cleanups, operator administration);
 * an operator token only (the operator's own routes); a key or an operator
 * token (SHARED: the handler limits an operator to their own dialogs); or
 * anyone, rate-limited per address by OPERATOR_REGISTER_PER_MIN (REGISTER).
 */
enum cca_http_access {
    CCA_ACCESS_PUBLIC,
    CCA_ACCESS_CLIENT,
    CCA_ACCESS_ADMIN,
    CCA_ACCESS_OPERATOR,
    CCA_ACCESS_SHARED,
    CCA_ACCESS_REGISTER,
};

/* One row of the URL route table: "{id}" matches one path segment. */
struct cca_http_route {
    const char *method;
    const char *pattern;
    cca_http_handler_fn handler;
    int success_status;   /* for engine-backed handlers */
    const char *conflict; /* error code of CCA_ERR_CONFLICT for this route */
    enum cca_http_access access;
};

/* ---- http_match.c: URL matching over a route table ----------------------------- */

#define CCA_HTTP_MAX_ROUTES 64

/* A row's literal prefix before "{id}" (the whole pattern without one), its length. */
struct cca_http_route_shape {
    size_t prefix;
    size_t len;
    bool has_id;
};

/*
 * A route table: @n rows (borrowed, static) and their shapes. First match in
 * row order wins, but a path that a literal pattern matches ("cleanup") never
 * matches an "{id}" row. Immutable after cca_http_table_init, so shared by
 * every thread without a lock.
 */
struct cca_http_table {
    const struct cca_http_route *rows;
    size_t n;
    struct cca_http_route_shape shapes[CCA_HTTP_MAX_ROUTES];
};

/*
 * cca_http_table_init - make @t the table of the @n rows at @rows (borrowed;
 * each pattern holds at most one "{id}"). Returns false, @t untouched, when
 * @n exceeds CCA_HTTP_MAX_ROUTES.
 */
bool cca_http_table_init(struct cca_http_table *t, const struct cca_http_route *rows,
                         size_t n);

/*
 * cca_http_table_match - find the row of @t for @method and @path. Returns the
 * row, or NULL with *ret_path_known set when the path exists for other
 * methods (405; @allow gets the allowed methods, comma separated, cut to
 * @allow_size). @ret_segment gets the "{id}" segment if any, cut to
 * @segment_size - 1 bytes. Thread-safe.
 */
const struct cca_http_route *cca_http_table_match(const struct cca_http_table *t,
                                                  const char *method, const char *path,
                                                  bool *ret_path_known, char *allow,
                                                  size_t allow_size, char *ret_segment,
                                                  size_t segment_size);

/* cca_http_table_index - the index of @route, a row of @t, in @t. */
size_t cca_http_table_index(const struct cca_http_table *t,
                            const struct cca_http_route *route);

/* Per-request state: created on MHD's first call, freed in NOTIFY_COMPLETED. */
struct cca_http_request {
    struct cca_http *http;
    struct MHD_Connection *conn;
    char request_id[37];
    int64_t start_mono;
    int64_t start_us;
    char method[16];
    char path[CCA_HTTP_MAX_PATH];
    const struct cca_http_route *route;
    char segment_id[256]; /* raw "{id}" segment (a customer_id: 50 code points), validated
                             by the handler */
    char *body;
    size_t body_len;
    bool body_too_large;
    bool suspended;
    /* The response, filled synchronously or by the engine before resuming. */
    bool ready;
    unsigned status;
    char *resp; /* the body, borrowed until resp_release(resp_release_cls) */
    size_t resp_len;
    cca_http_release_fn resp_release; /* NULL: nothing to release */
    void *resp_release_cls;
    const char *content_type;
    /*
     * A streamed response (http_sse.c) made with MHD_create_response_from_callback:
     * queued instead of @resp, with the same headers; owned until queued.
     */
    struct MHD_Response *stream;
    char allow[64];
    /* Extra response headers (queue()), empty when not sent. */
    char cors_origin[256]; /* Access-Control-Allow-Origin: "*" or the origin */
    bool preflight;        /* a CORS preflight answer: Access-Control-Allow-* */
    char www_authenticate[80];
    unsigned retry_after; /* seconds; 0: no Retry-After */
    /* Access and metrics bookkeeping. */
    bool has_key;         /* a valid API key was presented */
    uint32_t key_index;   /* its index (cca_access_keys_check), never the key */
    bool admin;           /* an admin key (or an open API: no keys configured) */
    char operator_id[37]; /* the operator whose token was presented, "" if none */
    /* The valid key presented, borrowed from MHD's header (NULL without one). */
    const char *api_key;
    size_t api_key_len;
    size_t metric_route;    /* route slot for metrics: a table index or "unmatched" */
    bool sent_early;        /* answered on the socket before the body was complete */
    bool queued;            /* answer_early queued the response through MHD */
    bool bad_framing;       /* ambiguous message length (RFC 9112 6.3): close after */
    const char *error_code; /* "code" of an error answer, for the request log */
    /* A static file's answer (http_web.c): its validators and coding headers. */
    struct {
        const struct cca_web_asset *asset; /* NULL: not a static file */
        const char *etag;                  /* of the representation sent */
        bool gzip;                         /* Content-Encoding: gzip */
    } web;
};

/* ---- http_views.c: REST bodies of engine outcomes (pure) -------------------- */

/*
 * cca_http_view_outcome - the REST body of an operation's outcome (the
 * engine's cca_engine_render_fn): create -> the 201 body, message -> the
 * message response, close -> the close view, delete -> {success, dialog_id,
 * message}, cleanups -> their counts (openapi.yaml). Returns a new reference.
 */
json_t *cca_http_view_outcome(const struct cca_engine_outcome *o);

/*
 * cca_http_view_page - GET /dialogues: {"items": [summary views, or whole
 * dialogs when @full], "next_cursor": string|null}. Returns a new reference.
 */
json_t *cca_http_view_page(const struct cca_engine_page *page, bool full);

/* ---- http_json.c: validation and error bodies (pure, unit-tested) ---------- */

/*
 * cca_http_parse_create - validate a create body (both shapes, see openapi.yaml).
 * Returns CCA_OK and fills *ret (caller cleans up), CCA_ERR_PARSE (empty or not
 * JSON: 400), CCA_ERR_INVALID (not an object, or a rule broken: 422, the field named).
 */
cca_rc cca_http_parse_create(const char *body, size_t len, struct cca_dialog_create *ret,
                             struct cca_error *reterr);

/* cca_http_parse_message - {"message", "message_type"?}; *ret_text is new. */
cca_rc cca_http_parse_message(const char *body, size_t len, char **ret_text,
                              struct cca_error *reterr);

/*
 * cca_http_parse_close - optional body {"reason"} or @query_reason (may be
 * NULL); the body wins; default "manual". *ret_reason is new.
 */
cca_rc cca_http_parse_close(const char *body, size_t len, const char *query_reason,
                            char **ret_reason, struct cca_error *reterr);

/* cca_http_parse_reply - an operator's reply {"message"}: 1..2000 characters, not blank.
 */
cca_rc cca_http_parse_reply(const char *body, size_t len, char **ret_text,
                            struct cca_error *reterr);

/* cca_http_parse_operator_status - {"status": "available"|"busy"|"offline"}. */
cca_rc cca_http_parse_operator_status(const char *body, size_t len,
                                      enum cca_operator_status *ret_status,
                                      struct cca_error *reterr);

/*
 * struct cca_http_handoff - a handoff body: {"to": "human", "reason"?} (@to
 * CCA_OWNER_QUEUE), {"to": "ai", "agent"?, "reason"?} (CCA_OWNER_AGENT, @agent
 * CCA_AGENT_NONE when absent) or {"to": "operator", "operator_id", "reason"?}
 * (CCA_OWNER_OPERATOR, @operator_id canonical). @reason is new or NULL.
 */
struct cca_http_handoff {
    enum cca_owner to;
    char *reason;
    enum cca_agent agent;
    char operator_id[37];
};

/* cca_http_parse_handoff - validate a handoff body into *ret (cca_http_handoff_cleanup).
 */
cca_rc cca_http_parse_handoff(const char *body, size_t len, struct cca_http_handoff *ret,
                              struct cca_error *reterr);

/* cca_http_handoff_cleanup - free what @h owns and zero it. Accepts NULL. */
void cca_http_handoff_cleanup(struct cca_http_handoff *h);

/*
 * cca_http_parse_rating - {"score": integer 1..5, "comment"?: string of at most
 * 1000 characters or null}; *ret_comment is new or NULL.
 */
cca_rc cca_http_parse_rating(const char *body, size_t len, int *ret_score,
                             char **ret_comment, struct cca_error *reterr);

/* cca_http_parse_uint - a decimal in [@min, @max] (digits only); false for anything else.
 */
bool cca_http_parse_uint(const char *s, unsigned long min, unsigned long max,
                         unsigned long *ret);

/* cca_http_parse_bool - true/false, 1/0, yes/no, on/off, t/f, y/n (any case). */
bool cca_http_parse_bool(const char *s, bool *ret);

/* cca_http_status_of - the HTTP status for @rc (one table). */
unsigned cca_http_status_of(cca_rc rc);

/* cca_http_code_of - the error "code" for @rc, unless the route overrides it. */
const char *cca_http_code_of(cca_rc rc);

/*
 * cca_http_error_body - {"detail": @detail, "code": @code} serialised.
 * Returns a new buffer; its length in *ret_len.
 */
char *cca_http_error_body(const char *code, const char *detail, size_t *ret_len);

/* ---- http_server.c: the server and responding ----------------------------------- */

/*
 * cca_http_server_new - cca_http_new over the route table @routes (borrowed,
 * must outlive the server): every request is matched over it. http.c passes
 * the service's table (cca_http_routes); the server never calls http_routes.c.
 */
cca_rc cca_http_server_new(const struct cca_http_params *params,
                           const struct cca_http_table *routes,
                           struct cca_http **ret_http, struct cca_error *reterr);

/* Respond with @body (stolen reference) serialised. */
void cca_http_respond_json(struct cca_http_request *r, unsigned status, json_t *body);

/* Respond with the error shape. */
void cca_http_respond_error(struct cca_http_request *r, unsigned status, const char *code,
                            const char *detail);

/* Respond with raw bytes (stolen, malloc'd). */
void cca_http_respond_raw(struct cca_http_request *r, unsigned status,
                          const char *content_type, char *bytes, size_t len);

/*
 * cca_http_respond_shared - respond with the @len bytes at @bytes without
 * copying them: they stay borrowed, unchanged, until @release(@cls) is called,
 * exactly once, from any thread, once the response is sent or dropped (also
 * when this response is replaced by another before it is queued). @release
 * may be NULL for static bytes. @content_type is borrowed (static).
 */
void cca_http_respond_shared(struct cca_http_request *r, unsigned status,
                             const char *content_type, const char *bytes, size_t len,
                             cca_http_release_fn release, void *cls);

/*
 * cca_http_submit - hand @req to the engine and suspend the connection; the
 * engine's outcome becomes the response (route->success_status on success).
 */
void cca_http_submit(struct cca_http_request *r, struct cca_engine_request *req);

/*
 * cca_http_finish_fn shapes a successful engine
 * result before it is sent: @result is borrowed (it may be shared with a
 * committed document: never change it); returns the body (a new reference)
 * and may change *status (route->success_status on entry). @cls as given.
 *
 * cca_http_submit_finish - cca_http_submit, with a successful result passed
 * through @finish (NULL: as is) and CCA_ERR_NOT_FOUND answered with code
 * @not_found (NULL: the rc table's). @cls is released with @release (may be
 * NULL) exactly once, after the answer or when the engine refuses the request.
 */
typedef json_t *(*cca_http_finish_fn)(struct cca_http_request *r, json_t *result,
                                      unsigned *status, void *cls);
void cca_http_submit_finish(struct cca_http_request *r, struct cca_engine_request *req,
                            cca_http_finish_fn finish, const char *not_found, void *cls,
                            cca_http_release_fn release);

/*
 * cca_http_async - suspend the connection and start an asynchronous operation:
 * @start(@arg, done, ctx) must return CCA_OK and later call done(ctx, rc,
 * result, err) exactly once, from any thread (as cca_engine_done_fn), or
 * return another rc without calling it, detail in @err (answered at once with
 * its status; CCA_ERR_UNAVAILABLE as 503). The result becomes the response as
 * for cca_http_submit.
 */
typedef cca_rc (*cca_http_async_fn)(void *arg, cca_engine_done_fn done, void *ctx,
                                    struct cca_error *err);
void cca_http_async(struct cca_http_request *r, cca_http_async_fn start, void *arg);

/*
 * cca_http_path_id - the dialog id of the URL ("{id}") canonicalised into @id;
 * false, with a 404 sent, when it is no UUID.
 */
bool cca_http_path_id(struct cca_http_request *r, char id[37]);

/* cca_http_respond_rc - the error answer of @rc (the rc table), detail from @err. */
void cca_http_respond_rc(struct cca_http_request *r, cca_rc rc,
                         const struct cca_error *err);

/* cca_http_query - a query argument of the request, or NULL. Borrowed. */
const char *cca_http_query(struct cca_http_request *r, const char *name);

/* ---- http_request_id.c ------------------------------------------------------- */

/*
 * cca_http_request_id_new - a new random (version 4, RFC 9562 section 5.4)
 * UUID for X-Request-Id into @ret_buf, lower case. Unique, not secret: a
 * per-thread xoshiro256** generator seeded once from getrandom(2), with
 * cca_uuid_new as the fallback. Thread-safe (thread-local state), no system
 * call after a thread's first id.
 */
void cca_http_request_id_new(char ret_buf[37]);

/* ---- http_health.c: handlers of the health routes ----------------------------- */

/*
 * GET /api/v1/health (200, or 503 when storage is not writable), .../detailed
 * (the same plus dialog counts, storage and LLM details), .../ready (200, or
 * 503 with reasons) and .../live (always 200).
 */
void cca_http_handle_health(struct cca_http_request *r);
void cca_http_handle_health_detailed(struct cca_http_request *r);
void cca_http_handle_ready(struct cca_http_request *r);
void cca_http_handle_live(struct cca_http_request *r);

/* ---- http_routes.c: the service's URL route table and its handlers ------------- */

/* cca_http_routes - the service's route table, built on first use. Thread-safe. */
const struct cca_http_table *cca_http_routes(void);

/*
 * cca_http_match - cca_http_table_match over cca_http_routes(); and the
 * table's size, a row's index, row @i (or NULL). For tests and fuzz_url.
 */
const struct cca_http_route *cca_http_match(const char *method, const char *path,
                                            bool *ret_path_known, char *allow,
                                            size_t allow_size, char *ret_segment,
                                            size_t segment_size);
size_t cca_http_route_count(void);
size_t cca_http_route_index(const struct cca_http_route *route);
const struct cca_http_route *cca_http_route_at(size_t i);

/*
 * cca_http_query_status_agent - the ?status= (a dialog status name) and
 * ?agent= (an agent name) of @r into *ret_status and *ret_agent, -1 when
 * absent. False, with a 422 sent, for an unknown name.
 */
bool cca_http_query_status_agent(struct cca_http_request *r, int *ret_status,
                                 int *ret_agent);

/*
 * cca_http_actor - fill req->actor ("operator:<id>", "admin" or "client") and
 * req->actor_operator from who presented what on @r.
 */
void cca_http_actor(const struct cca_http_request *r, struct cca_engine_request *req);

/* The handlers of the human side's routes live in http_operators.c (the table above
 * lists them). */

/* cca_http_finish_message - a message's status: 202 when no AI answer (a human owns it).
 */
json_t *cca_http_finish_message(struct cca_http_request *r, json_t *result,
                                unsigned *status, void *cls);

void cca_http_handle_register(struct cca_http_request *r);
void cca_http_handle_telegram_webhook(struct cca_http_request *r); /* http_telegram.c */

/*
 * cca_http_handle_web - GET or HEAD of an embedded static file (http_web.c):
 * the console, the API docs, openapi.yaml; 404 for a path with no file.
 */
void cca_http_handle_web(struct cca_http_request *r);

void cca_http_handle_operator_create(struct cca_http_request *r);
void cca_http_handle_operator_list(struct cca_http_request *r);
/* GET /operators/team: every operator as a colleague sees them (transfers). */
void cca_http_handle_team(struct cca_http_request *r);
void cca_http_handle_operator_get(struct cca_http_request *r);
void cca_http_handle_operator_patch(struct cca_http_request *r);
void cca_http_handle_operator_delete(struct cca_http_request *r);
void cca_http_handle_me(struct cca_http_request *r);
void cca_http_handle_me_patch(struct cca_http_request *r);
void cca_http_handle_me_status(struct cca_http_request *r);
void cca_http_handle_me_dialogs(struct cca_http_request *r);
void cca_http_handle_me_next(struct cca_http_request *r);
void cca_http_handle_me_events(struct cca_http_request *r);
void cca_http_handle_queue(struct cca_http_request *r);
void cca_http_handle_take(struct cca_http_request *r);
void cca_http_handle_reply(struct cca_http_request *r);
void cca_http_handle_handoff(struct cca_http_request *r);
void cca_http_handle_messages(struct cca_http_request *r);
void cca_http_handle_dialog_queue(struct cca_http_request *r);
void cca_http_handle_rating(struct cca_http_request *r);
void cca_http_handle_dialog_events(struct cca_http_request *r);

/*
 * The support records' handlers (http_records.c, docs/RECORDS.md): customer
 * profiles (GET/PUT /customers/{customer_id}), a customer's history as a file,
 * the streamed dialog and profile exports, the service's and an operator's
 * statistics.
 */
void cca_http_handle_customer_get(struct cca_http_request *r);
void cca_http_handle_customer_put(struct cca_http_request *r);
void cca_http_handle_customer_history(struct cca_http_request *r);
void cca_http_handle_export_dialogs(struct cca_http_request *r);
void cca_http_handle_export_profiles(struct cca_http_request *r);
void cca_http_handle_stats(struct cca_http_request *r);
void cca_http_handle_operator_stats(struct cca_http_request *r);
void cca_http_handle_me_stats(struct cca_http_request *r);

/* ---- http_metrics.c: GET /metrics --------------------------------------------- */

/* Why access control refused a request: cca_http_rejected_total{reason}. */
enum cca_http_reject {
    CCA_HTTP_REJ_UNAUTHORIZED,
    CCA_HTTP_REJ_FORBIDDEN,
    CCA_HTTP_REJ_RATE_LIMITED,
    CCA_HTTP_REJ_CORS,
    CCA_HTTP_REJ__N
};

/*
 * The HTTP server's counters: made and counted by http_server.c, rendered by
 * http_metrics.c. Every counter lives in a fixed array indexed by fixed label
 * sets, which travel with it; no label carries an id. Route slots
 * 0 .. nroutes - 2 are the route table's rows, the last one is "unmatched"
 * (no route for the path).
 */
struct cca_http_metrics {
    const char *const *methods; /* [nmethods]: "GET", ..., the last "other" */
    size_t nmethods;
    const unsigned *statuses; /* [nstatuses]: 200, ..., the last 0 ("other") */
    size_t nstatuses;
    const char *const *reject_names; /* [CCA_HTTP_REJ__N] */
    size_t nroutes;
    _Atomic uint64_t *requests; /* [route][method][status] */
    struct cca_hist *durations; /* [route] */
    _Atomic uint64_t rejected[CCA_HTTP_REJ__N];
};

/*
 * cca_http_metrics_render - write every metric family of the service in the
 * Prometheus text format to @out: the HTTP ones (h->metrics) and those of the
 * engine, LLM client, store and process. Thread-safe.
 */
void cca_http_metrics_render(struct cca_http *h, FILE *out);

/*
 * cca_http_server_metrics_render - the HTTP families alone (h->metrics):
 * cca_http_requests_total{method,route,status}, cca_http_request_duration_seconds{route},
 * connection and rejection counters. Thread-safe.
 */
void cca_http_server_metrics_render(struct cca_http *h, FILE *out);

/* GET /metrics: cca_http_metrics_render as text/plain; version=0.0.4. */
void cca_http_handle_metrics(struct cca_http_request *r);

#endif
