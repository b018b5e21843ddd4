/* SPDX-License-Identifier: MIT */
/*
 * cca_http_new: the HTTP server (http_server.c) started over the service's
 * URL route table (http_routes.c). This is the one file that knows both. The
 * handlers of http_routes.c, http_health.c and http_metrics.c call the
 * server's responding functions; the server matches every request over the
 * table it is given here (http_match.c) and never calls into http_routes.c,
 * so the dependencies run one way: routes -> server -> match.
 */
#include "cca/http.h"

#include "http_int.h"

cca_rc cca_http_new(const struct cca_http_params *params, struct cca_http **ret_http,
                    struct cca_error *reterr)
{
    return cca_http_server_new(params, cca_http_routes(), ret_http, reterr);
}
