/* SPDX-License-Identifier: MIT */
/*
 * The standby's answers while another instance is active on the database
 * (standby.h). Nothing here reads the store or acts on a request: every answer
 * is a constant, so a proxy may retry anything it sent here elsewhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cca/http.h"
#include "cca/log.h"
#include "cca/mem.h"
#include "cca/metrics.h"
#include "cca/standby.h"

#define LIVE_BODY "{\"status\":\"alive\",\"role\":\"standby\"}"
#define READY_BODY                                                                       \
    "{\"status\":\"not_ready\",\"reasons\":[\"standby: another instance is active on "   \
    "this database\"]}"
#define REFUSE_BODY                                                                      \
    "{\"detail\":\"this instance is a standby: another instance serves this database; "  \
    "retry (a load balancer sends the request there)\",\"code\":\"standby\"}"

struct cca_standby {
    struct MHD_Daemon *daemon;
    int listen_fd; /* ours; the daemon serves a dup(2) of it */
    unsigned port;
};

/* /metrics: the one gauge that says what this instance is (text format 0.0.4). */
static enum MHD_Result answer_metrics(struct MHD_Connection *conn)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (out == NULL)
        return MHD_NO;
    cca_metrics_single(out, CCA_STANDBY_METRIC, "gauge", CCA_STANDBY_METRIC_HELP, 1);
    (void)fclose(out);
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                  "text/plain; version=0.0.4; charset=utf-8");
    ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **req_cls)
{
    bool read_only = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    const char *body = REFUSE_BODY;
    unsigned status = MHD_HTTP_SERVICE_UNAVAILABLE;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    (void)cls;
    (void)version;
    (void)upload_data;
    /* A request with a body is answered after it, which is read and dropped. */
    if (*req_cls == NULL) {
        *req_cls = conn;
        if (!read_only)
            return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (read_only && strcmp(url, "/metrics") == 0)
        return answer_metrics(conn);
    if (read_only && strcmp(url, "/api/v1/health/live") == 0) {
        body = LIVE_BODY;
        status = MHD_HTTP_OK;
    } else if (read_only && strcmp(url, "/api/v1/health/ready") == 0) {
        body = READY_BODY;
    }
    resp = MHD_create_response_from_buffer(strlen(body), (void *)body,
                                           MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status != MHD_HTTP_OK)
        (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt,
                                                          va_list ap)
{
    char buf[256];

    (void)cls;
    (void)vsnprintf(buf, sizeof(buf), fmt, ap);
    buf[strcspn(buf, "\r\n")] = '\0';
    cca_log(LOG_WARNING, "standby: http='%s'", buf);
}

cca_rc cca_standby_start(const struct cca_config *cfg, struct cca_standby **ret,
                         struct cca_error *reterr)
{
    struct cca_standby *sb = cca_xcalloc(1, sizeof(*sb));
    struct sockaddr_storage ss = {0};
    socklen_t slen = sizeof(ss);
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    int mhd_fd = -1;
    cca_rc rc;

    sb->listen_fd = -1;
    rc = cca_http_listen(cfg, &sb->listen_fd, reterr);
    if (rc != CCA_OK)
        goto out;
    if (getsockname(sb->listen_fd, (struct sockaddr *)&ss, &slen) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "getsockname: %s", strerror(errno));
        goto out;
    }
    if (ss.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
        sb->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        sb->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    /*
     * libmicrohttpd closes the socket it serves when it stops; a duplicate
     * shares the listening socket (and its backlog), so ours stays open.
     * MHD_USE_ITC: the daemon's thread is woken through its own pipe, never
     * by shutdown(2) of the socket, which would end the duplicate's listening.
     */
    mhd_fd = fcntl(sb->listen_fd, F_DUPFD_CLOEXEC, 0);
    if (mhd_fd < 0) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "dup: %s", strerror(errno));
        goto out;
    }
    sb->daemon = MHD_start_daemon(
        flags, (uint16_t)sb->port, NULL, NULL, answer, NULL, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, mhd_fd, MHD_OPTION_CONNECTION_TIMEOUT,
        10u, MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_END);
    if (sb->daemon == NULL) {
        /* libmicrohttpd 0.9.75 closes the socket on some of its failure paths. */
        mhd_fd = -1;
        rc = cca_error_set(reterr, CCA_ERR_IO, "cannot start the standby's HTTP daemon");
        goto out;
    }
    mhd_fd = -1; /* the daemon's now */
    *ret = sb;
    sb = NULL;
out:
    if (mhd_fd >= 0)
        close(mhd_fd);
    cca_standby_free(sb);
    return rc;
}

unsigned cca_standby_port(const struct cca_standby *sb)
{
    return sb->port;
}

int cca_standby_promote(struct cca_standby *sb)
{
    int fd;

    if (sb == NULL)
        return -1;
    if (sb->daemon != NULL)
        MHD_stop_daemon(sb->daemon);
    fd = sb->listen_fd;
    free(sb);
    return fd;
}

void cca_standby_free(struct cca_standby *sb)
{
    int fd = cca_standby_promote(sb);

    if (fd >= 0)
        close(fd);
}
