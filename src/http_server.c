/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "cca/log.h"
#include "cca/mem.h"
#include "cca/text.h"

#include "http_int.h"

void cca_http_respond_raw(struct cca_http_request *r, unsigned status,
                          const char *content_type, char *bytes, size_t len)
{
    free(r->resp);
    r->status = status;
    r->resp = bytes;
    r->resp_len = len;
    r->content_type = content_type;
    r->ready = true;
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

    cca_http_respond_raw(r, status, "application/json", s, len);
}

const char *cca_http_query(struct cca_http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* Engine thread: the outcome becomes the response, then the connection resumes. */
static void on_engine_done(void *ctx, cca_rc rc, json_t *result,
                           const struct cca_error *err)
{
    struct cca_http_request *r = ctx;

    if (rc == CCA_OK) {
        cca_http_respond_json(r, (unsigned)r->route->success_status, result);
    } else {
        const char *code = cca_http_code_of(rc);

        if (rc == CCA_ERR_CONFLICT && r->route->conflict != NULL)
            code = r->route->conflict;
        cca_http_respond_error(r, cca_http_status_of(rc), code, err->msg);
    }
    MHD_resume_connection(r->conn);
}

void cca_http_submit(struct cca_http_request *r, struct cca_engine_request *req)
{
    /* Suspend before submitting: the engine may answer before this returns. */
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    if (cca_engine_submit(r->http->engine, req, on_engine_done, r) != CCA_OK) {
        cca_http_respond_error(r, 503, "unavailable",
                               "the service is overloaded or shutting down; retry later");
        MHD_resume_connection(r->conn);
    }
}

static enum MHD_Result queue(struct cca_http_request *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer_with_free_callback(r->resp_len, r->resp, free);
    r->resp = NULL; /* MHD owns it now */
    if (resp == NULL)
        return MHD_NO;
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                  r->content_type ? r->content_type : "application/json");
    (void)MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (r->allow[0])
        (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->status == 503 || atomic_load(&r->http->quiesced))
        (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* application/json, optionally with parameters such as charset=utf-8. */
static bool is_json_type(const char *ct)
{
    size_t n = strlen("application/json");

    return ct != NULL && strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static void dispatch(struct cca_http_request *r)
{
    const char *ct;

    if (atomic_load(&r->http->quiesced)) {
        cca_http_respond_error(r, 503, "unavailable", "the service is shutting down");
        return;
    }
    if (r->route == NULL) {
        if (r->allow[0])
            cca_http_respond_error(r, 405, "method_not_allowed",
                                   "method not allowed here");
        else
            cca_http_respond_error(r, 404, "not_found", "no such endpoint");
        return;
    }
    if (r->body_too_large) {
        char detail[96];

        (void)snprintf(detail, sizeof(detail), "request body is larger than %zu bytes",
                       r->http->cfg->max_body_bytes);
        cca_http_respond_error(r, 413, "body_too_large", detail);
        return;
    }
    if (r->body_len > 0) {
        ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_TYPE);
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

static void start_request(struct cca_http *h, struct cca_http_request *r,
                          struct MHD_Connection *conn, const char *url,
                          const char *method)
{
    bool known = false;
    size_t len = strlen(url);
    const char *cl;

    r->http = h;
    r->conn = conn;
    r->start_mono = cca_time_mono_ms();
    cca_uuid_new(r->request_id);
    (void)snprintf(r->method, sizeof(r->method), "%s", method);
    /* One trailing slash is tolerated: "/api/v1/health/" is "/api/v1/health". */
    if (len > 1 && url[len - 1] == '/')
        len--;
    if (len >= sizeof(r->path))
        len = sizeof(r->path) - 1;
    memcpy(r->path, url, len);
    r->path[len] = '\0';
    r->route = cca_http_match(method, r->path, &known, r->allow, sizeof(r->allow),
                              r->segment_id, sizeof(r->segment_id));
    if (r->route != NULL || !known)
        r->allow[0] = '\0';
    cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > h->cfg->max_body_bytes)
        r->body_too_large = true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct cca_http *h = cls;
    struct cca_http_request *r = *req_cls;

    (void)version;
    if (r == NULL) {
        r = cca_xcalloc(1, sizeof(*r));
        *req_cls = r;
        atomic_fetch_add(&h->open_requests, 1);
        start_request(h, r, conn, url, method);
        if (!r->body_too_large)
            return MHD_YES;
        /* Declared too large: answer now, without reading the body. */
        cca_log_set_request_id(r->request_id);
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
            r->body_too_large = true;
            free(r->body);
            r->body = NULL;
            r->body_len = 0;
            return MHD_YES;
        }
        r->body = cca_xrealloc(r->body, r->body_len + n + 1);
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
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

    (void)cls;
    (void)conn;
    if (r == NULL)
        return;
    cca_log_set_request_id(r->request_id);
    cca_log(toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? LOG_INFO : LOG_NOTICE,
            "request method=%s path='%.200s' status=%u duration_ms=%lld%s", r->method,
            r->path, r->status, (long long)(cca_time_mono_ms() - r->start_mono),
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    cca_log_set_request_id(NULL);
    atomic_fetch_sub(&r->http->open_requests, 1);
    free(r->body);
    free(r->resp);
    free(r);
    *req_cls = NULL;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    size_t n;

    (void)cls;
    (void)vsnprintf(buf, sizeof(buf), fmt, ap);
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    cca_log(LOG_NOTICE, "libmicrohttpd: %s", buf);
}

cca_rc cca_http_new(const struct cca_http_params *p, struct cca_http **ret_http,
                    struct cca_error *reterr)
{
    struct cca_http *h = cca_xcalloc(1, sizeof(*h));
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    const union MHD_DaemonInfo *info;
    unsigned flags =
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    cca_rc rc = CCA_OK;

    h->cfg = p->cfg;
    h->engine = p->engine;
    h->store = p->store;
    h->llm = p->llm;
    h->version = p->version;
    h->started_mono = cca_time_mono_ms();
    if (inet_pton(AF_INET, p->cfg->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)p->cfg->port);
    } else if (inet_pton(AF_INET6, p->cfg->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)p->cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "HOST='%s' is not an IPv4 or IPv6 address", p->cfg->host);
        goto out;
    }
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)p->cfg->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
        &ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)p->cfg->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)p->cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->cfg->connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, p->cfg->connection_memory_limit,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_logger, h, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    if (h->daemon == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_IO,
                           "cannot listen on %s:%u (in use, or no rights?)", p->cfg->host,
                           p->cfg->port);
        goto out;
    }
    info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : p->cfg->port;
    *ret_http = h;
    h = NULL;
out:
    cca_http_free(h);
    return rc;
}

unsigned cca_http_port(const struct cca_http *h)
{
    return h->port;
}

void cca_http_quiesce(struct cca_http *h)
{
    int fd;

    if (atomic_exchange(&h->quiesced, 1))
        return;
    fd = MHD_quiesce_daemon(h->daemon);
    if (fd >= 0)
        close(fd);
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
    free(h);
}

void cca_http_server_metrics_render(struct cca_http *h, FILE *out)
{
    (void)h;
    (void)out; /* TODO(access/metrics helper): HTTP request families */
}
