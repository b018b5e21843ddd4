/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <uuid.h>

#include "cca/access.h"
#include "cca/log.h"
#include "cca/mem.h"
#include "cca/metrics.h"
#include "cca/text.h"

#include "http_int.h"

/* ---- HTTP metrics: counted here, rendered by http_metrics.c -------------------------
 */

/* Fixed label sets: every counter lives in a fixed array, no label carries an id. */
static const char *const metric_methods[] = {"GET",    "POST", "PUT",     "PATCH",
                                             "DELETE", "HEAD", "OPTIONS", "other"};
#define N_METHODS CCA_ARRAY_SIZE(metric_methods)
static const unsigned metric_statuses[] = {200, 201, 204, 400, 401, 403, 404,
                                           405, 408, 409, 413, 415, 422, 429,
                                           500, 502, 503, 504, 0 /* other */};
#define N_STATUSES CCA_ARRAY_SIZE(metric_statuses)

static const char *const reject_names[] = {"unauthorized", "forbidden", "rate_limited",
                                           "cors"};
_Static_assert(CCA_ARRAY_SIZE(reject_names) == CCA_HTTP_REJ__N, "a name per reason");

/* @nroutes: the route table's rows; one slot more for "unmatched". */
static struct cca_http_metrics *metrics_new(size_t nroutes)
{
    struct cca_http_metrics *m = cca_xcalloc(1, sizeof(*m));

    m->methods = metric_methods;
    m->nmethods = N_METHODS;
    m->statuses = metric_statuses;
    m->nstatuses = N_STATUSES;
    m->reject_names = reject_names;
    m->nroutes = nroutes + 1;
    m->requests =
        cca_xcalloc(m->nroutes * N_METHODS * N_STATUSES, sizeof(m->requests[0]));
    m->durations = cca_xcalloc(m->nroutes, sizeof(m->durations[0]));
    for (size_t i = 0; i < m->nroutes; i++)
        cca_hist_init(&m->durations[i], cca_hist_seconds_bounds, cca_hist_seconds_n);
    return m;
}

static void metrics_free(struct cca_http_metrics *m)
{
    if (m == NULL)
        return;
    free(m->requests);
    free(m->durations);
    free(m);
}

static size_t method_slot(const char *method)
{
    for (size_t i = 0; i + 1 < N_METHODS; i++) {
        if (strcmp(metric_methods[i], method) == 0)
            return i;
    }
    return N_METHODS - 1;
}

static size_t status_slot(unsigned status)
{
    for (size_t i = 0; i + 1 < N_STATUSES; i++) {
        if (metric_statuses[i] == status)
            return i;
    }
    return N_STATUSES - 1;
}

static void metrics_count(struct cca_http_request *r)
{
    struct cca_http_metrics *m = r->http->metrics;
    size_t route = r->metric_route < m->nroutes ? r->metric_route : m->nroutes - 1;
    size_t i = (route * N_METHODS + method_slot(r->method)) * N_STATUSES +
               status_slot(r->status);

    atomic_fetch_add_explicit(&m->requests[i], 1, memory_order_relaxed);
    cca_hist_observe_us(&m->durations[route], cca_time_mono_us() - r->start_us);
}

static void reject(struct cca_http_request *r, enum cca_http_reject why)
{
    atomic_fetch_add_explicit(&r->http->metrics->rejected[why], 1, memory_order_relaxed);
}

/* Release the body of @r, if any. */
static void release_resp(struct cca_http_request *r)
{
    if (r->resp_release != NULL)
        r->resp_release(r->resp_release_cls);
    r->resp = NULL;
    r->resp_release = NULL;
    r->resp_release_cls = NULL;
}

void cca_http_respond_shared(struct cca_http_request *r, unsigned status,
                             const char *content_type, const char *bytes, size_t len,
                             cca_http_release_fn release, void *cls)
{
    release_resp(r);
    r->status = status;
    r->resp = (char *)bytes; /* never written to: MHD only sends it */
    r->resp_len = len;
    r->resp_release = release;
    r->resp_release_cls = cls;
    r->content_type = content_type;
    r->ready = true;
}

void cca_http_respond_raw(struct cca_http_request *r, unsigned status,
                          const char *content_type, char *bytes, size_t len)
{
    cca_http_respond_shared(r, status, content_type, bytes, len, free, bytes);
}

void cca_http_respond_json(struct cca_http_request *r, unsigned status, json_t *body)
{
    char *s =
        json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));

    json_decref(body);
    cca_http_respond_raw(r, status, "application/json", s, strlen(s));
}

void cca_http_respond_error(struct cca_http_request *r, unsigned status, const char *code,
                            const char *detail)
{
    size_t len;
    char *s = cca_http_error_body(code, detail, &len);

    r->error_code = code; /* static strings: route and table codes */
    cca_http_respond_raw(r, status, "application/json", s, len);
}

bool cca_http_path_id(struct cca_http_request *r, char id[37])
{
    if (cca_uuid_canonical(r->segment_id, id))
        return true;
    cca_http_respond_error(r, 404, "not_found",
                           "not a dialog id: dialog ids are UUIDs (RFC 9562), so no "
                           "dialog has this one");
    return false;
}

void cca_http_respond_rc(struct cca_http_request *r, cca_rc rc,
                         const struct cca_error *err)
{
    cca_http_respond_error(r, cca_http_status_of(rc), cca_http_code_of(rc), err->msg);
}

const char *cca_http_query(struct cca_http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct call {
    struct cca_http_request *r;
    cca_http_finish_fn finish;
    const char *not_found;
    void *cls;
    cca_http_release_fn release;
};

static void call_free(struct call *c)
{
    if (c->release != NULL)
        c->release(c->cls);
    free(c);
}

/* Engine thread: the outcome becomes the response (through the finish function,
 * if any), then the connection resumes. */
static void call_done(void *ctx, cca_rc rc, json_t *result, const struct cca_error *err)
{
    struct call *c = ctx;
    struct cca_http_request *r = c->r;
    unsigned status = (unsigned)r->route->success_status;
    json_t *body;
    const char *code;

    if (rc == CCA_OK) {
        if (result == NULL)
            result = json_object();
        body = c->finish != NULL ? c->finish(r, result, &status, c->cls)
                                 : json_incref(result);
        json_decref(result);
        cca_http_respond_json(r, status, body);
    } else {
        code = cca_http_code_of(rc);
        if (rc == CCA_ERR_CONFLICT && r->route->conflict != NULL)
            code = r->route->conflict;
        if (rc == CCA_ERR_NOT_FOUND && c->not_found != NULL)
            code = c->not_found;
        cca_http_respond_error(r, cca_http_status_of(rc), code, err->msg);
    }
    call_free(c);
    MHD_resume_connection(r->conn);
}

/* Suspend @r, then start(arg, call_done, c); an rc from start is answered at once. */
static void suspend_start(struct cca_http_request *r, struct call *c,
                          cca_http_async_fn start, void *arg)
{
    struct cca_error err = {0};
    cca_rc rc;

    c->r = r;
    /* Suspend before starting: the answer may come before this returns. */
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    rc = start(arg, call_done, c, &err);
    if (rc != CCA_OK) {
        call_free(c);
        if (rc == CCA_ERR_UNAVAILABLE)
            cca_http_respond_error(
                r, 503, "unavailable",
                "the service is overloaded or shutting down; retry later");
        else
            cca_http_respond_rc(r, rc, &err);
        MHD_resume_connection(r->conn);
    }
}

struct engine_start {
    struct cca_engine *engine;
    struct cca_engine_request *req;
};

static cca_rc engine_start(void *arg, cca_engine_done_fn done, void *ctx,
                           struct cca_error *err)
{
    struct engine_start *s = arg;

    (void)err;
    return cca_engine_submit(s->engine, s->req, done, ctx);
}

void cca_http_submit_finish(struct cca_http_request *r, struct cca_engine_request *req,
                            cca_http_finish_fn finish, const char *not_found, void *cls,
                            cca_http_release_fn release)
{
    struct call *c = cca_xcalloc(1, sizeof(*c));
    struct engine_start s = {r->http->engine, req};

    c->finish = finish;
    c->not_found = not_found;
    c->cls = cls;
    c->release = release;
    suspend_start(r, c, engine_start, &s);
}

void cca_http_async(struct cca_http_request *r, cca_http_async_fn start, void *arg)
{
    suspend_start(r, cca_xcalloc(1, sizeof(struct call)), start, arg);
}

void cca_http_submit(struct cca_http_request *r, struct cca_engine_request *req)
{
    cca_http_submit_finish(r, req, NULL, NULL, NULL, NULL);
}

#define REALM              "Bearer realm=\"call-center-agents\""
#define CORS_EXPOSE        "X-Request-Id, Retry-After, WWW-Authenticate"
#define CORS_ALLOW_HEADERS "Authorization, Content-Type, X-API-Key, Idempotency-Key"
#define CORS_MAX_AGE       "600"

struct header {
    const char *name;
    const char *value;
};

/* The headers of @r's response besides the body's length: one list for both paths. */
static size_t response_headers(struct cca_http_request *r, struct header *hv, size_t max,
                               char *retry_buf, size_t retry_size)
{
    size_t n = 0;

#define ADD(nm, val)                                                                     \
    do {                                                                                 \
        if (n < max)                                                                     \
            hv[n++] = (struct header){(nm), (val)};                                      \
    } while (0)
    if (r->status != 204)
        ADD(MHD_HTTP_HEADER_CONTENT_TYPE,
            r->content_type ? r->content_type : "application/json");
    ADD("X-Request-Id", r->request_id);
    if (r->allow[0])
        ADD(MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->www_authenticate[0])
        ADD(MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->www_authenticate);
    if (r->retry_after > 0) {
        (void)snprintf(retry_buf, retry_size, "%u", r->retry_after);
        ADD(MHD_HTTP_HEADER_RETRY_AFTER, retry_buf);
    }
    /* Static files: validators, coding and the page's security policy. */
    if (r->web.asset != NULL) {
        ADD(MHD_HTTP_HEADER_ETAG, r->web.etag);
        ADD(MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        if (r->web.asset->gzip)
            ADD(MHD_HTTP_HEADER_VARY, "Accept-Encoding");
        if (r->web.gzip && r->status == 200)
            ADD(MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
        ADD("Content-Security-Policy", CCA_WEB_CSP);
        ADD("X-Content-Type-Options", "nosniff");
        ADD("Referrer-Policy", "no-referrer");
    }
    /* With CORS on, every answer depends on Origin (caches must key on it). */
    if (cca_access_cors_enabled(r->http->cors))
        ADD(MHD_HTTP_HEADER_VARY, "Origin");
    if (r->cors_origin[0]) {
        ADD("Access-Control-Allow-Origin", r->cors_origin);
        if (r->preflight) {
            ADD("Access-Control-Allow-Methods", r->allow);
            ADD("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
            ADD("Access-Control-Max-Age", CORS_MAX_AGE);
        } else {
            ADD("Access-Control-Expose-Headers", CORS_EXPOSE);
        }
    }
    /* Body refused unread (413 or earlier checks): the connection cannot be reused. */
    if (r->status == 503 || r->body_too_large || r->bad_framing ||
        atomic_load(&r->http->quiesced))
        ADD(MHD_HTTP_HEADER_CONNECTION, "close");
#undef ADD
    return n;
}

/* Queue the response; @keep: copy the body (r->resp stays ours) instead of handing it
 * over. */
static enum MHD_Result queue_response(struct cca_http_request *r, bool keep)
{
    struct MHD_Response *resp;
    struct header hv[24];
    char retry[16];
    size_t n;
    enum MHD_Result ret;

    if (r->stream != NULL) {
        resp = r->stream; /* a stream: headers as any answer, body from its reader */
        r->stream = NULL;
    } else if (keep) {
        resp =
            MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_MUST_COPY);
    } else {
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            r->resp_len, r->resp, r->resp_release, r->resp_release_cls);
        if (resp != NULL) { /* MHD releases the body now */
            r->resp = NULL;
            r->resp_release = NULL;
            r->resp_release_cls = NULL;
        }
    }
    if (resp == NULL)
        return MHD_NO;
    n = response_headers(r, hv, CCA_ARRAY_SIZE(hv), retry, sizeof(retry));
    for (size_t i = 0; i < n; i++)
        (void)MHD_add_response_header(resp, hv[i].name, hv[i].value);
    ret = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result queue(struct cca_http_request *r)
{
    return queue_response(r, false);
}

/* Write all of @buf to the non-blocking socket @fd, waiting at most ~1 s in total. */
static bool send_all(int fd, const char *buf, size_t len)
{
    for (int waits = 0; len > 0 && waits < 100;) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);

        if (w > 0) {
            buf += w;
            len -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};

            (void)poll(&p, 1, 10);
            waits++;
        } else {
            return false;
        }
    }
    return len == 0;
}

/*
 * Set while this thread returns MHD_NO on purpose after answer_early: MHD then
 * logs "Application reported internal error", which is expected here.
 */
static _Thread_local bool closing_on_purpose;

/*
 * Answer while the body is still arriving (a chunked body crossed MAX_BODY_BYTES).
 * libmicrohttpd 0.9.75 accepts MHD_queue_response only right after the headers
 * or after the whole body (MHD_CONNECTION_HEADERS_PROCESSED or _FOOTERS_RECEIVED;
 * verified: it returns MHD_NO from the upload callback), so newer versions get
 * the ordinary path and 0.9.75 gets the response written on the socket here,
 * which MHD is not writing to while it reads a body, then MHD_NO so that MHD
 * closes the connection without reading the rest.
 */
static enum MHD_Result answer_early(struct cca_http_request *r)
{
    const union MHD_ConnectionInfo *ci;
    struct header hv[24];
    char retry[16];
    char *text = NULL;
    size_t text_len = 0;
    size_t n;
    FILE *f;

    if (queue_response(r, true) == MHD_YES) {
        r->queued = true; /* newer libmicrohttpd: queued mid-upload */
        return MHD_YES;
    }
    n = response_headers(r, hv, CCA_ARRAY_SIZE(hv), retry, sizeof(retry));
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    f = open_memstream(&text, &text_len);
    if (ci == NULL || f == NULL) {
        if (f != NULL)
            fclose(f);
        free(text);
        return MHD_NO;
    }
    fprintf(f, "HTTP/1.1 %u %s\r\n", r->status, MHD_get_reason_phrase_for(r->status));
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s: %s\r\n", hv[i].name, hv[i].value);
    fprintf(f, "Content-Length: %zu\r\n\r\n", r->resp_len);
    if (r->resp_len > 0)
        fwrite(r->resp, 1, r->resp_len, f);
    fclose(f);
    if (send_all(ci->connect_fd, text, text_len)) {
        r->sent_early = true;
        closing_on_purpose = true;
        (void)shutdown(ci->connect_fd, SHUT_WR); /* FIN now, after the response */
    }
    free(text);
    return MHD_NO;
}

/* application/json, optionally with parameters such as charset=utf-8. */
static bool is_json_type(const char *ct)
{
    size_t n = strlen("application/json");

    return ct != NULL && strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static const char *header(struct cca_http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/*
 * A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method, Fetch
 * standard section 3.2.2) on a known path, when CORS_ORIGINS is set: 204 with the
 * path's methods, or 403 for an origin not listed. Needs no API key. Returns
 * true when it answered.
 */
static bool cors_preflight(struct cca_http_request *r)
{
    if (!cca_access_cors_enabled(r->http->cors) || strcmp(r->method, "OPTIONS") != 0 ||
        r->allow[0] == '\0' || header(r, "Origin") == NULL ||
        header(r, "Access-Control-Request-Method") == NULL)
        return false;
    if (r->cors_origin[0] == '\0') {
        reject(r, CCA_HTTP_REJ_CORS);
        cca_http_respond_error(r, 403, "cors_forbidden",
                               "this origin is not allowed (CORS_ORIGINS)");
        return true;
    }
    r->preflight = true;
    cca_http_respond_raw(r, 204, NULL, NULL, 0);
    return true;
}

static void unauthorized(struct cca_http_request *r, bool presented, const char *detail)
{
    reject(r, CCA_HTTP_REJ_UNAUTHORIZED);
    (void)snprintf(r->www_authenticate, sizeof(r->www_authenticate), "%s%s", REALM,
                   presented ? ", error=\"invalid_token\"" : "");
    cca_http_respond_error(r, 401, "unauthorized", detail);
}

/*
 * An operator token (RFC 6750 bearer, "cco_..."): looked up by its SHA-256 in
 * the desk, so a revoked operator fails at once. Returns false when it
 * answered 401.
 */
static bool authorize_operator(struct cca_http_request *r, const char *token, size_t len)
{
    char hex[65];

    if (cca_operator_token_looks_valid(token, len)) {
        cca_operator_token_hash(token, len, hex);
        if (cca_desk_authenticate(r->http->desk, hex, cca_time_wall_ms(), r->operator_id))
            return true;
    }
    unauthorized(r, true, "the operator token is not valid (revoked, or never issued)");
    return false;
}

/*
 * Who may call (enum cca_http_access): API keys (RFC 6750 "Authorization:
 * Bearer <key>" or "X-API-Key: <key>") once keys are configured, admin keys
 * for admin routes, operator tokens for operator routes and, besides keys,
 * for the shared ones (r->operator_id is then set and the handler limits the
 * operator to their own dialogs). Returns false when it answered 401 or 403.
 */
static bool authorize(struct cca_http_request *r)
{
    const struct cca_access_keys *keys = r->http->keys;
    enum cca_http_access access = r->route->access;
    const char *token = NULL;
    size_t len = 0;
    enum cca_access_key_class cls = CCA_ACCESS_KEY_NONE;
    bool bearer;

    if (access == CCA_ACCESS_PUBLIC || access == CCA_ACCESS_REGISTER)
        return true;
    bearer = cca_access_bearer(header(r, MHD_HTTP_HEADER_AUTHORIZATION), &token, &len);
    if (bearer && len > 4 && memcmp(token, "cco_", 4) == 0 &&
        (access == CCA_ACCESS_OPERATOR || access == CCA_ACCESS_SHARED))
        return authorize_operator(r, token, len);
    if (access == CCA_ACCESS_OPERATOR) {
        unauthorized(r, bearer,
                     "an operator token is required: Authorization: Bearer "
                     "<token> (POST /api/v1/operators/register)");
        return false;
    }
    if (cca_access_keys_count(keys) == 0) {
        r->admin = true; /* an open API: every route is open (README, Security) */
        return true;
    }
    if (!bearer) {
        token = header(r, "X-API-Key");
        len = token != NULL ? strlen(token) : 0;
    }
    if (len > 0)
        cls = cca_access_keys_check(keys, token, len, &r->key_index);
    if (cls == CCA_ACCESS_KEY_NONE) {
        unauthorized(r, len > 0,
                     len > 0 ? "the API key is not valid"
                             : "an API key is required: Authorization: "
                               "Bearer <key> or X-API-Key: <key>");
        return false;
    }
    if (access == CCA_ACCESS_ADMIN && cls != CCA_ACCESS_KEY_ADMIN) {
        reject(r, CCA_HTTP_REJ_FORBIDDEN);
        cca_http_respond_error(r, 403, "forbidden",
                               "this endpoint needs an admin API key");
        return false;
    }
    r->has_key = true;
    r->admin = cls == CCA_ACCESS_KEY_ADMIN;
    r->api_key = token;
    r->api_key_len = len;
    return true;
}

/*
 * The client's bucket identity: the key's index, or the peer address (IPv4, or
 * the /64 of IPv6, the block one host usually controls). Returns its length.
 */
static size_t client_identity(struct cca_http_request *r, unsigned char id[20])
{
    const union MHD_ConnectionInfo *ci;
    const struct sockaddr *sa;

    if (r->has_key) {
        id[0] = 'k';
        memcpy(id + 1, &r->key_index, sizeof(r->key_index));
        return 1 + sizeof(r->key_index);
    }
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    sa = ci != NULL ? ci->client_addr : NULL;
    if (sa != NULL && sa->sa_family == AF_INET) {
        id[0] = '4';
        memcpy(id + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 5;
    }
    if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct in6_addr *a =
            &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

        if (IN6_IS_ADDR_V4MAPPED(a)) {
            id[0] = '4';
            memcpy(id + 1, &a->s6_addr[12], 4);
            return 5;
        }
        id[0] = '6';
        memcpy(id + 1, a->s6_addr, 8);
        return 9;
    }
    id[0] = '?';
    return 1;
}

static bool is_message_route(const struct cca_http_route *route)
{
    const char *suffix = "/{id}/message";
    size_t n = strlen(route->pattern);
    size_t k = strlen(suffix);

    return strcmp(route->method, "POST") == 0 && n > k &&
           strcmp(route->pattern + n - k, suffix) == 0;
}

static void too_many(struct cca_http_request *r, unsigned retry_after, const char *what)
{
    char detail[160];

    reject(r, CCA_HTTP_REJ_RATE_LIMITED);
    r->retry_after = retry_after;
    (void)snprintf(detail, sizeof(detail), "rate limit reached (%s); retry after %u s",
                   what, retry_after);
    cca_http_respond_error(r, 429, "rate_limited", detail);
}

/* RATE_LIMIT_RPS per client, DIALOG_RATE_LIMIT_PER_MIN per dialog. False: 429 sent. */
static bool rate_limit(struct cca_http_request *r)
{
    struct cca_http *h = r->http;
    int64_t now = cca_time_mono_us();
    unsigned retry = 1;
    char id[37];

    if (r->route->access == CCA_ACCESS_REGISTER) {
        unsigned char who[20];
        size_t n;

        r->has_key = false; /* per address: registration is before any key */
        n = client_identity(r, who);
        if (!cca_access_limiter_take(h->register_limiter, who, n, now, &retry)) {
            too_many(r, retry, "OPERATOR_REGISTER_PER_MIN per client address");
            return false;
        }
        return true;
    }
    if (r->route->access == CCA_ACCESS_PUBLIC)
        return true;
    if (h->client_limiter != NULL) {
        unsigned char who[20];
        size_t n = client_identity(r, who);

        if (!cca_access_limiter_take(h->client_limiter, who, n, now, &retry)) {
            too_many(r, retry,
                     r->has_key ? "RATE_LIMIT_RPS per API key"
                                : "RATE_LIMIT_RPS per client address");
            return false;
        }
    }
    if (h->dialog_limiter != NULL && is_message_route(r->route) &&
        cca_uuid_canonical(r->segment_id, id) &&
        !cca_access_limiter_take(h->dialog_limiter, id, 36, now, &retry)) {
        too_many(r, retry, "DIALOG_RATE_LIMIT_PER_MIN messages for this dialog");
        return false;
    }
    return true;
}

/*
 * The checks, in order: shutting down (503), CORS preflight (204/403), no route
 * (404/405), API key (401/403), rate limits (429), body size, type and encoding
 * (413/415/400), then the handler. None of them needs the body, so a body too
 * large can be refused by any of them before it is read.
 */
static void dispatch(struct cca_http_request *r)
{
    const char *ct;

    if (atomic_load(&r->http->quiesced)) {
        cca_http_respond_error(r, 503, "unavailable", "the service is shutting down");
        return;
    }
    if (cors_preflight(r))
        return;
    if (r->route == NULL) {
        if (r->allow[0])
            cca_http_respond_error(r, 405, "method_not_allowed",
                                   "method not allowed here");
        else
            cca_http_respond_error(r, 404, "not_found", "no such endpoint");
        return;
    }
    if (!authorize(r) || !rate_limit(r))
        return;
    if (r->body_too_large) {
        char detail[96];

        (void)snprintf(detail, sizeof(detail), "request body is larger than %zu bytes",
                       r->http->cfg->max_body_bytes);
        cca_http_respond_error(r, 413, "body_too_large", detail);
        return;
    }
    if (r->body_len > 0) {
        ct = header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!is_json_type(ct)) {
            cca_http_respond_error(
                r, 415, "unsupported_media_type",
                "request bodies must be Content-Type: application/json");
            return;
        }
        if (!cca_text_is_utf8(r->body, r->body_len)) {
            cca_http_respond_error(r, 400, "invalid_utf8",
                                   "request body is not valid UTF-8");
            return;
        }
    }
    r->route->handler(r);
}

/* The metrics slot of a path known only for other methods (405, preflight). */
static size_t known_path_slot(const struct cca_http_table *routes, const char *path,
                              const char *allow)
{
    char method[16];
    char other[64];
    char seg[8];
    bool known;
    size_t n = strcspn(allow, ",");
    const struct cca_http_route *route;

    (void)snprintf(method, sizeof(method), "%.*s", (int)(n < 15 ? n : 15), allow);
    route = cca_http_table_match(routes, method, path, &known, other, sizeof(other), seg,
                                 sizeof(seg));
    return route != NULL ? cca_http_table_index(routes, route) : routes->n;
}

/* The value of hex digit @c (which isxdigit accepted). */
static unsigned hex_value(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/*
 * MHD_OPTION_UNESCAPE_CALLBACK: percent-decode @s in place like MHD's default,
 * except "%00", which stays as it is: a decoded NUL would cut the path short,
 * and "/api/v1/dialogue/<id>%00.json" would answer for "/api/v1/dialogue/<id>".
 * Returns the new length.
 */
static size_t unescape_keep_nul(void *cls, struct MHD_Connection *conn, char *s)
{
    char *w = s;

    (void)cls;
    (void)conn;
    for (const char *p = s; *p != '\0'; p++) {
        if (p[0] == '%' && isxdigit((unsigned char)p[1]) &&
            isxdigit((unsigned char)p[2])) {
            unsigned v = hex_value(p[1]) * 16 + hex_value(p[2]);

            if (v != 0) {
                *w++ = (char)v;
                p += 2;
                continue;
            }
        }
        *w++ = *p;
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* MHD_get_connection_values iterator: Content-Length values and Transfer-Encoding. */
struct framing {
    unsigned lengths;         /* Content-Length header fields */
    bool lengths_differ;      /* two of them disagree */
    const char *first_length; /* borrowed from MHD */
    bool transfer_encoding;
};

static enum MHD_Result scan_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct framing *f = cls;

    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->transfer_encoding = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (f->lengths++ == 0)
            f->first_length = value;
        else if (strcmp(f->first_length, value != NULL ? value : "") != 0)
            f->lengths_differ = true;
    }
    return MHD_YES;
}

/*
 * RFC 9112 section 6.3: a message with both Transfer-Encoding and
 * Content-Length, or with Content-Length fields that disagree, has no clear
 * length; a server must answer 400 and close the connection (items 3 and 5),
 * or whatever it reads as the next request may have been smuggled in the body.
 */
static bool framing_is_clear(struct MHD_Connection *conn)
{
    struct framing f = {0};

    (void)MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_framing, &f);
    return !(f.transfer_encoding && f.lengths > 0) && !f.lengths_differ;
}

static void start_request(struct cca_http *h, struct cca_http_request *r,
                          struct MHD_Connection *conn, const char *url,
                          const char *method)
{
    bool known = false;
    size_t len = strlen(url);
    size_t n;
    const char *cl;
    const char *origin;

    r->http = h;
    r->conn = conn;
    r->start_us = cca_time_mono_us();
    r->start_mono = r->start_us / 1000; /* the same clock as cca_time_mono_ms */
    cca_http_request_id_new(r->request_id);
    n = strnlen(method, sizeof(r->method) - 1); /* like snprintf "%s", cut */
    memcpy(r->method, method, n);
    r->method[n] = '\0';
    /* One trailing slash is tolerated: "/api/v1/health/" is "/api/v1/health". */
    if (len > 1 && url[len - 1] == '/')
        len--;
    if (len >= sizeof(r->path))
        len = sizeof(r->path) - 1;
    memcpy(r->path, url, len);
    r->path[len] = '\0';
    r->route =
        cca_http_table_match(h->routes, method, r->path, &known, r->allow,
                             sizeof(r->allow), r->segment_id, sizeof(r->segment_id));
    if (r->route != NULL || !known)
        r->allow[0] = '\0';
    if (r->route != NULL)
        r->metric_route = cca_http_table_index(h->routes, r->route);
    else if (r->allow[0])
        r->metric_route = known_path_slot(h->routes, r->path, r->allow);
    else
        r->metric_route = h->routes->n;
    origin = header(r, "Origin");
    origin = cca_access_cors_allow_origin(h->cors, origin);
    if (origin != NULL && strlen(origin) < sizeof(r->cors_origin))
        memcpy(r->cors_origin, origin, strlen(origin) + 1);
    cl = header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > h->cfg->max_body_bytes)
        r->body_too_large = true;
    r->bad_framing = !framing_is_clear(conn);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct cca_http *h = cls;
    struct cca_http_request *r = *req_cls;

    (void)version;
    closing_on_purpose = false;
    if (r == NULL) {
        r = cca_xcalloc(1, sizeof(*r));
        *req_cls = r;
        atomic_fetch_add(&h->open_requests, 1);
        start_request(h, r, conn, url, method);
        if (!r->body_too_large && !r->bad_framing)
            return MHD_YES;
        /* Declared too large, or no clear length: answer now, without the body. */
        cca_log_set_request_id(r->request_id);
        if (r->bad_framing)
            cca_http_respond_error(r, 400, "bad_framing",
                                   "ambiguous message length: Content-Length with "
                                   "Transfer-Encoding, or Content-Length values that "
                                   "differ (RFC 9112 section 6.3)");
        else
            dispatch(r);
        return queue(r);
    }
    cca_log_set_request_id(r->request_id);
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;

        *upload_data_size = 0;
        if (r->body_too_large || r->ready)
            return MHD_YES; /* discard the rest */
        if (r->body_len + n > h->cfg->max_body_bytes) {
            /* A chunked body crossed the cap: refuse now, not after reading it all. */
            r->body_too_large = true;
            free(r->body);
            r->body = NULL;
            r->body_len = 0;
            dispatch(r);
            return answer_early(r);
        }
        r->body = cca_xrealloc(r->body, r->body_len + n + 1);
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
    if (r->queued)
        return MHD_YES; /* answer_early already queued the response */
    if (r->ready)
        return queue(r);
    if (r->suspended)
        return MHD_YES; /* spurious call while waiting on the engine */
    dispatch(r);
    if (r->ready && !r->suspended)
        return queue(r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct cca_http_request *r = *req_cls;
    bool ok;

    (void)cls;
    (void)conn;
    if (r == NULL)
        return;
    ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK || r->sent_early;
    if ((ok ? LOG_INFO : LOG_NOTICE) <= cca_log_level) { /* else skip the snprintf */
        cca_log_set_request_id(r->request_id);
        cca_log(ok ? LOG_INFO : LOG_NOTICE,
                "request method=%s path='%.200s' status=%u%s%s duration_ms=%lld%s%s",
                r->method, r->path, r->status, r->error_code ? " code=" : "",
                r->error_code ? r->error_code : "",
                (long long)(cca_time_mono_ms() - r->start_mono), ok ? "" : " aborted=1",
                r->sent_early ? " early=1" : "");
    }
    cca_log_set_request_id(NULL);
    /* Only answered requests count: a client that left early has no status. */
    if (ok && r->ready)
        metrics_count(r);
    atomic_fetch_sub(&r->http->open_requests, 1);
    free(r->body);
    release_resp(r);
    if (r->stream != NULL) /* made, never queued: its free callback releases the stream */
        MHD_destroy_response(r->stream);
    free(r);
    *req_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void mhd_logger(void *cls, const char *fmt,
                                                             va_list ap)
{
    char buf[512];
    size_t n;

    (void)cls;
    (void)vsnprintf(buf, sizeof(buf), fmt, ap);
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (closing_on_purpose &&
        strstr(buf, "Application reported internal error") != NULL) {
        closing_on_purpose = false;
        cca_log(LOG_DEBUG, "libmicrohttpd: %s (early answer, expected)", buf);
        return;
    }
    /* A client that leaves an open event stream: normal, not news (http_sse.c). */
    if (strstr(buf, "application error generating response") != NULL ||
        strstr(buf, "Failed to send the chunked response body") != NULL) {
        cca_log(LOG_DEBUG, "libmicrohttpd: %s", buf);
        return;
    }
    cca_log(LOG_NOTICE, "libmicrohttpd: %s", buf);
}

/* Bounded rate-limit tables: a flood of addresses or ids cannot grow memory. */
#define LIMITER_CAPACITY 65536

/* Keys, rate limits and CORS from @cfg; the one warning when the API is open. */
static cca_rc setup_access(struct cca_http *h, const struct cca_config *cfg,
                           struct cca_error *reterr)
{
    cca_rc rc;

    rc = cca_access_keys_new(cfg->api_keys, cfg->api_keys_file, cfg->admin_api_keys,
                             &h->keys, reterr);
    if (rc == CCA_OK)
        rc = cca_access_cors_new(cfg->cors_origins, &h->cors, reterr);
    if (rc != CCA_OK)
        return rc;
    if (cca_access_keys_count(h->keys) == 0) {
        /* A production deployment with an open API is refused unless asked for. */
        if (strcmp(cfg->environment, "production") == 0 && !cfg->allow_anonymous)
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "ENVIRONMENT=production needs API_KEYS or API_KEYS_FILE "
                                 "(set ALLOW_ANONYMOUS=true to serve an open API on "
                                 "purpose)");
        cca_log(LOG_WARNING, "API_KEYS is not set: the API is open to anyone who can "
                             "reach it");
    }
    if (cfg->rate_limit_rps > 0)
        h->client_limiter = cca_access_limiter_new(
            cfg->rate_limit_rps, (double)cfg->rate_limit_burst, LIMITER_CAPACITY);
    if (cfg->dialog_rate_limit_per_min > 0)
        h->dialog_limiter = cca_access_limiter_new(
            (double)cfg->dialog_rate_limit_per_min / 60.0,
            (double)cfg->dialog_rate_limit_per_min, LIMITER_CAPACITY);
    /* Registration guesses a secret or PIN: limited per address, always. */
    h->register_limiter =
        cca_access_limiter_new((double)cfg->operator_register_per_min / 60.0,
                               (double)cfg->operator_register_per_min, LIMITER_CAPACITY);
    return CCA_OK;
}

/* The inode of the socket listening on TCP @port in /proc/net/@table, 0 if none. */
static unsigned long listener_inode(const char *table, unsigned port)
{
    char path[64];
    char line[512];
    unsigned long inode = 0;
    FILE *f;

    (void)snprintf(path, sizeof(path), "/proc/net/%s", table);
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    while (inode == 0 && fgets(line, sizeof(line), f) != NULL) {
        unsigned lport, state;
        unsigned long ino;

        /* "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode" */
        if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*u %*u %lu", &lport,
                   &state, &ino) == 3 &&
            lport == port && state == 0x0A /* TCP_LISTEN */)
            inode = ino;
    }
    fclose(f);
    return inode;
}

/*
 * The process holding the socket that listens on @port, found through /proc
 * (needs the rights to read other processes' descriptors), or 0.
 */
static long port_holder(unsigned port)
{
    unsigned long inode = listener_inode("tcp", port);
    char want[48];
    long pid = 0;
    DIR *procs;
    struct dirent *p;

    if (inode == 0)
        inode = listener_inode("tcp6", port);
    if (inode == 0 || (procs = opendir("/proc")) == NULL)
        return 0;
    (void)snprintf(want, sizeof(want), "socket:[%lu]", inode);
    while (pid == 0 && (p = readdir(procs)) != NULL) {
        char dir[64];
        DIR *fds;
        struct dirent *fd;

        if (!isdigit((unsigned char)p->d_name[0]))
            continue;
        (void)snprintf(dir, sizeof(dir), "/proc/%.20s/fd", p->d_name);
        fds = opendir(dir);
        if (fds == NULL)
            continue;
        while (pid == 0 && (fd = readdir(fds)) != NULL) {
            char link[64];
            ssize_t n = readlinkat(dirfd(fds), fd->d_name, link, sizeof(link) - 1);

            if (n > 0 && (link[n] = '\0', strcmp(link, want) == 0))
                pid = strtol(p->d_name, NULL, 10);
        }
        closedir(fds);
    }
    closedir(procs);
    return pid;
}

/*
 * The listening socket, made here rather than by libmicrohttpd so that a busy
 * port is reported as such (http.h, cca_http_listen).
 */
cca_rc cca_http_listen(const struct cca_config *cfg, int *ret_fd,
                       struct cca_error *reterr)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    int fd = -1;
    int one = 1;
    cca_rc rc = CCA_OK;

    if (inet_pton(AF_INET, cfg->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)cfg->port);
        len = sizeof(*sin);
    } else if (inet_pton(AF_INET6, cfg->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)cfg->port);
        len = sizeof(*sin6);
    } else {
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "HOST='%s' is not an IPv4 or IPv6 address", cfg->host);
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cca_error_set(reterr, CCA_ERR_IO, "cannot create a socket: %s",
                             strerror(errno));
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        long pid = e == EADDRINUSE ? port_holder(cfg->port) : 0;

        if (pid > 0)
            rc = cca_error_set(reterr, CCA_ERR_IO,
                               "port %u on %s is already in use by process %ld",
                               cfg->port, cfg->host, pid);
        else
            rc = cca_error_set(
                reterr, CCA_ERR_IO, "cannot listen on %s:%u: %s%s", cfg->host, cfg->port,
                strerror(e), e == EADDRINUSE ? " (another process holds the port)" : "");
        goto out;
    }
    if (listen(fd, SOMAXCONN) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "cannot listen on %s:%u: %s", cfg->host,
                           cfg->port, strerror(errno));
        goto out;
    }
    *ret_fd = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

cca_rc cca_http_server_new(const struct cca_http_params *p,
                           const struct cca_http_table *routes,
                           struct cca_http **ret_http, struct cca_error *reterr)
{
    struct cca_http *h = cca_xcalloc(1, sizeof(*h));
    const union MHD_DaemonInfo *info;
    unsigned flags =
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    int listen_fd = p->has_listen_fd ? p->listen_fd : -1; /* stolen: closed on failure */
    cca_rc rc = CCA_OK;

    h->cfg = p->cfg;
    h->engine = p->engine;
    h->store = p->store;
    h->llm = p->llm;
    h->telegram = p->telegram;
    h->desk = p->desk;
    h->events = p->events;
    h->version = p->version;
    h->started_mono = cca_time_mono_ms();
    h->routes = routes;
    h->metrics = metrics_new(routes->n);
    rc = setup_access(h, p->cfg, reterr);
    if (rc != CCA_OK)
        goto out;
    if (!p->has_listen_fd) {
        rc = cca_http_listen(p->cfg, &listen_fd, reterr);
        if (rc != CCA_OK)
            goto out;
    }
    {
        struct sockaddr_storage ss = {0};
        socklen_t slen = sizeof(ss);

        if (getsockname(listen_fd, (struct sockaddr *)&ss, &slen) == 0 &&
            ss.ss_family == AF_INET6)
            flags |= MHD_USE_IPv6;
    }
    /* The logger first: libmicrohttpd logs options given before it to stderr. */
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)p->cfg->port, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, h, MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)p->cfg->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)p->cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->cfg->connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, p->cfg->connection_memory_limit,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_keep_nul, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
    if (h->daemon == NULL) {
        /* libmicrohttpd 0.9.75 closes the socket on some of its failure paths. */
        listen_fd = -1;
        rc = cca_error_set(reterr, CCA_ERR_IO, "cannot start the HTTP daemon on %s:%u",
                           p->cfg->host, p->cfg->port);
        goto out;
    }
    listen_fd = -1; /* libmicrohttpd closes it in MHD_stop_daemon */
    h->port = p->cfg->port;
    {
        struct sockaddr_storage bound;
        socklen_t blen = sizeof(bound);

        info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_LISTEN_FD);
        if (info != NULL &&
            getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen) == 0)
            h->port = ntohs(bound.ss_family == AF_INET6
                                ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                : ((struct sockaddr_in *)&bound)->sin_port);
    }
    *ret_http = h;
    h = NULL;
out:
    if (listen_fd >= 0)
        close(listen_fd);
    cca_http_free(h);
    return rc;
}

unsigned cca_http_port(const struct cca_http *h)
{
    return h->port;
}

void cca_http_quiesce(struct cca_http *h)
{
    /*
     * Only a flag: every request from now on gets 503 and its connection is
     * closed. MHD_quiesce_daemon is not used: in libmicrohttpd 0.9.75 with a
     * thread pool and epoll it marks each worker quiesced and then removes the
     * listening socket from that worker's epoll set, while the worker, seeing
     * the mark, may already have removed it; the second epoll_ctl fails and
     * the library aborts ("Failed to remove listen FD from epoll set"). Seen
     * twice in clean-clone runs, once after keeping the socket open did not
     * help. The socket closes in cca_http_free.
     */
    atomic_store(&h->quiesced, 1);
}

bool cca_http_wait_idle(struct cca_http *h, int64_t deadline_ms)
{
    while (atomic_load(&h->open_requests) > 0) {
        if (cca_time_mono_ms() >= deadline_ms)
            return false;
        (void)usleep(10000);
    }
    return true;
}

void cca_http_free(struct cca_http *h)
{
    if (h == NULL)
        return;
    if (h->daemon != NULL)
        MHD_stop_daemon(h->daemon);
    cca_access_keys_free(h->keys);
    cca_access_limiter_free(h->client_limiter);
    cca_access_limiter_free(h->dialog_limiter);
    cca_access_limiter_free(h->register_limiter);
    cca_access_cors_free(h->cors);
    metrics_free(h->metrics);
    free(h);
}
