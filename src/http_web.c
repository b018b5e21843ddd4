/* SPDX-License-Identifier: MIT */
/*
 * GET and HEAD /console[/file], /docs[/file], /openapi.yaml: the embedded
 * static files (include/cca/web.h). Each answer carries its ETag and is
 * revalidated on every use (Cache-Control: no-cache, so a new binary's files
 * show at once); a matching If-None-Match gets 304 (RFC 9110 13.1.2, 15.4.5).
 * gzip-encoded files go out as they are to clients that accept gzip and are
 * decoded for the others (RFC 9110 12.5.3). libmicrohttpd sends no body for
 * HEAD (RFC 9110 9.3.2: the headers of the GET) or 304.
 */
#include <stdlib.h>

#include <microhttpd.h>

#include "cca/web.h"
#include "http_int.h"

static void release_free(void *p)
{
    free(p);
}

void cca_http_handle_web(struct cca_http_request *r)
{
    const struct cca_web_asset *a = cca_web_find(r->path);
    const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                  MHD_HTTP_HEADER_IF_NONE_MATCH);
    bool gzip;
    char *plain = NULL;

    if (a == NULL) {
        cca_http_respond_error(r, 404, "not_found", "no such file");
        return;
    }
    gzip = a->gzip && cca_web_accepts_gzip(MHD_lookup_connection_value(
                          r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING));
    r->web.asset = a;
    r->web.etag = gzip ? a->etag_gzip : a->etag;
    r->web.gzip = gzip;
    if (cca_web_etag_matches(inm, r->web.etag)) {
        /*
         * No body. libmicrohttpd 0.9.75 writes "Content-Length: 0" here, where
         * RFC 9110 8.6 wants the 200's length or none; it cannot be told not to
         * (MHD_RF_HEAD_ONLY_RESPONSE came in 0.9.76), and a 304 with the real
         * length would make it send the body. Browsers and curl ignore it.
         */
        cca_http_respond_shared(r, 304, a->content_type, "", 0, NULL, NULL);
        return;
    }
    if (gzip || !a->gzip) {
        cca_http_respond_shared(r, 200, a->content_type, (const char *)a->data, a->len,
                                NULL, NULL);
        return;
    }
    if (cca_web_gunzip(a, &plain) != CCA_OK) {
        r->web.asset = NULL; /* an error answer: none of the file's headers */
        cca_http_respond_error(r, 500, "internal_error", "an embedded file is damaged");
        return;
    }
    cca_http_respond_shared(r, 200, a->content_type, plain, a->size, release_free, plain);
}
