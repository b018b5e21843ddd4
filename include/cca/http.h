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
};

struct cca_http;

/*
 * cca_http_new - start listening on cfg->host:cfg->port (port 0 picks a free
 * port, see cca_http_port). Returns CCA_OK and a new server in *ret_http, or
 * CCA_ERR_INVALID (bad HOST) / CCA_ERR_IO (cannot bind) with detail in @reterr.
 */
cca_rc cca_http_new(const struct cca_http_params *params, struct cca_http **ret_http,
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
