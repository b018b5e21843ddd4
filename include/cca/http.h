/* SPDX-License-Identifier: MIT */
#ifndef CCA_HTTP_H
#define CCA_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "cca/common.h"
#include "cca/config.h"
#include "cca/engine.h"
#include "cca/llm.h"
#include "cca/store.h"
#include "cca/telegram.h"

/*
 * The HTTP server: libmicrohttpd with its epoll thread pool and suspend/resume
 * (MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME). A request that
 * changes a dialog is handed to the engine and its connection suspended; the
 * engine's completion resumes it. Worker threads never wait on the LLM or the
 * disk. The URL route table lives in http_routes.c; the API is openapi.yaml.
 */

struct cca_http_params {
    const struct cca_config *cfg;  /* borrowed, outlives the server */
    struct cca_engine *engine;     /* borrowed */
    struct cca_store *store;       /* borrowed */
    struct cca_llm *llm;           /* borrowed, NULL in offline mode */
    struct cca_desk *desk;         /* borrowed: operators, tokens, the queue */
    struct cca_events *events;     /* borrowed: live events for the SSE routes */
    struct cca_telegram *telegram; /* borrowed, NULL without the channel: /metrics */
    const char *version;           /* e.g. "0.1.0"; borrowed */
    bool has_listen_fd;            /* serve @listen_fd instead of binding HOST:PORT */
    int listen_fd;                 /* a listening socket (cca_http_listen), stolen */
};

struct cca_http;

/* The Prometheus gauge of /metrics: 0 here, 1 on a standby (standby.h). */
#define CCA_STANDBY_METRIC "cca_standby"
#define CCA_STANDBY_METRIC_HELP                                                          \
    "1 on a standby (another instance is active on the database), 0 on the instance "    \
    "that serves"

/*
 * cca_http_new - start listening on cfg->host:cfg->port (port 0 picks a free
 * port, see cca_http_port), or serve params->listen_fd when has_listen_fd
 * (stolen even on failure: the standby's socket on promotion, standby.h). Returns CCA_OK
 * and a new server in *ret_http, or CCA_ERR_INVALID (bad HOST) / CCA_ERR_IO (cannot bind)
 * with detail in @reterr.
 */
cca_rc cca_http_new(const struct cca_http_params *params, struct cca_http **ret_http,
                    struct cca_error *reterr) CCA_WUR;

/*
 * cca_http_listen - a listening TCP socket on cfg->host:cfg->port (port 0
 * picks a free one): SO_REUSEADDR (a restart binds while old connections sit
 * in TIME_WAIT), never SO_REUSEPORT (a second server must not share the port
 * and split the clients), non-blocking, close-on-exec, backlog SOMAXCONN.
 * Returns CCA_OK and the socket in *ret_fd (new: the caller closes it or gives
 * it to cca_http_new); CCA_ERR_INVALID when HOST is not an IPv4 or IPv6
 * address; CCA_ERR_IO when the port is taken (the holder's PID when /proc
 * tells) or the socket calls fail. Thread-safe.
 */
cca_rc cca_http_listen(const struct cca_config *cfg, int *ret_fd,
                       struct cca_error *reterr) CCA_WUR;

/* cca_http_port - the TCP port actually bound. Thread-safe. */
unsigned cca_http_port(const struct cca_http *http);

/*
 * cca_http_quiesce - stop serving: every request that arrives from now on, on
 * a new or an open connection, gets 503 "unavailable" and its connection is
 * closed (new connections are still accepted until cca_http_free, see
 * http_server.c). Requests in flight continue. Thread-safe; idempotent.
 */
void cca_http_quiesce(struct cca_http *http);

/*
 * cca_http_wait_idle - wait until every request has been answered and its
 * response handed to the socket, or until @deadline_ms (cca_time_mono_ms).
 * Returns true when idle. Call after cca_http_quiesce, before cca_http_free,
 * so that answers of the last turns are not cut off. Thread-safe.
 */
bool cca_http_wait_idle(struct cca_http *http, int64_t deadline_ms);

/*
 * cca_http_free - stop the server. Every suspended request must have been
 * resumed (cca_engine_drain first). Accepts NULL.
 */
void cca_http_free(struct cca_http *http);

#endif
