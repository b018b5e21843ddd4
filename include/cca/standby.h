/* SPDX-License-Identifier: MIT */
#ifndef CCA_STANDBY_H
#define CCA_STANDBY_H

#include "cca/common.h"
#include "cca/config.h"

/*
 * The standby: what an instance serves while another instance is active on
 * the same PostgreSQL database (STORE=postgres; the instance lock,
 * docs/internals/store_pg.md "Several instances"). It listens on HOST:PORT
 * from the start, so a load balancer sees it, and answers without touching
 * the database:
 *
 *   GET|HEAD /api/v1/health/live   200 {"status":"alive","role":"standby"}
 *   GET|HEAD /metrics              200, the gauge CCA_STANDBY_METRIC (http.h) at 1
 *                                  (the serving instance renders it at 0)
 *   anything else                  503 {"detail":...,"code":"standby"}
 *                                  with Retry-After: 1
 *
 * /api/v1/health/ready is among "anything else" (503, so a balancer's health
 * check sends no traffic here), and no request is ever acted on, so a proxy
 * may retry any request on the active instance (nginx: proxy_next_upstream
 * http_503 non_idempotent). When the active instance is gone, main.c
 * promotes the standby: cca_standby_promote stops answering and hands the
 * listening socket, with the connections waiting in its backlog, to the real
 * server (cca_http_params.listen_fd), so the port never closes.
 *
 * libmicrohttpd with one internal polling thread; the listening socket is
 * opened by cca_http_listen (the server's own rules: SO_REUSEADDR, never
 * SO_REUSEPORT) and given to libmicrohttpd as a dup(2), so that stopping the
 * daemon leaves the original open and listening.
 */

struct cca_standby;

/*
 * cca_standby_start - listen on cfg->host:cfg->port (0: a free port) and
 * answer as above. @cfg is borrowed and must outlive the standby. Returns
 * CCA_OK and a new standby in *ret; CCA_ERR_INVALID (bad HOST) or CCA_ERR_IO
 * (cannot bind, cannot start the daemon), detail in @reterr. Call from one
 * thread; the standby's own thread answers.
 */
cca_rc cca_standby_start(const struct cca_config *cfg, struct cca_standby **ret,
                         struct cca_error *reterr) CCA_WUR;

/* cca_standby_port - the TCP port bound (the one cfg->port 0 picked). Thread-safe. */
unsigned cca_standby_port(const struct cca_standby *sb);

/*
 * cca_standby_promote - stop answering (connections the standby had accepted
 * are closed; those still in the backlog stay there) and free @sb. Returns
 * the listening socket, owned by the caller from now on (give it to
 * cca_http_new), or -1 when @sb is NULL.
 */
int cca_standby_promote(struct cca_standby *sb);

/* cca_standby_free - stop answering, close the listening socket, free. Accepts NULL. */
void cca_standby_free(struct cca_standby *sb);

#endif
