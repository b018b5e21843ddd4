/* SPDX-License-Identifier: MIT */
#ifndef CCA_WEB_H
#define CCA_WEB_H

#include <stdbool.h>
#include <stddef.h>

#include "cca/common.h"

/*
 * Web: the static files the binary serves (the operator console under
 * /console, the API docs under /docs, /openapi.yaml), compiled in at build
 * time by tools/embed-web from the files meson.build lists, so that nothing
 * depends on the working directory or the network. This module is the table
 * and the HTTP rules that go with static files (content coding, validators);
 * src/http_web.c answers the requests with it. Pure functions over constant
 * data: every function here is thread-safe.
 */

/*
 * The Content-Security-Policy of every served file: scripts, styles,
 * connections and fonts from this origin only, no inline script or style
 * attribute, images also as data: URIs (Swagger UI's CSS icons), no plugins,
 * no framing, no forms posting anywhere (W3C CSP Level 3).
 */
#define CCA_WEB_CSP                                                                      \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "    \
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "          \
    "frame-ancestors 'none'; form-action 'none'"

/*
 * struct cca_web_asset - one embedded file (static, generated).
 * @path:         the URL path it is served at, e.g. "/console/console.js".
 * @content_type: its media type with charset for text, e.g.
 *                "text/javascript; charset=utf-8".
 * @data:         @len bytes: the file itself, or its gzip encoding (RFC 1952)
 *                when @gzip (the generator keeps gzip only when it saves at
 *                least 10%).
 * @len:          bytes at @data.
 * @size:         bytes of the file itself (== @len unless @gzip).
 * @gzip:         @data is gzip-encoded.
 * @etag:         the strong entity tag of the file itself, quotes included
 *                (RFC 9110 8.8.3): the first 96 bits of its SHA-256 in hex.
 * @etag_gzip:    the entity tag of the gzip representation (the same with
 *                "-gz" inside the quotes); equal to @etag when not @gzip.
 */
struct cca_web_asset {
    const char *path;
    const char *content_type;
    const unsigned char *data;
    size_t len;
    size_t size;
    bool gzip;
    const char *etag;
    const char *etag_gzip;
};

/*
 * cca_web_find - the asset served at @path (NUL-terminated, the request path
 * without query). A directory path ("/console", "/console/", "/docs",
 * "/docs/") gives its "index.html". Returns a borrowed static asset, or NULL
 * when none is served there.
 */
const struct cca_web_asset *cca_web_find(const char *path);

/* cca_web_count - the number of embedded assets; cca_web_at - the @i-th (NULL past). */
size_t cca_web_count(void);
const struct cca_web_asset *cca_web_at(size_t i);

/*
 * cca_web_accepts_gzip - whether an Accept-Encoding field value (RFC 9110
 * 12.5.3; NULL when the header is absent) accepts "gzip": "gzip", "x-gzip" or
 * "*" listed with a q-value above 0 (q=0 refuses). A missing header or one
 * that does not name gzip gets the file itself.
 */
bool cca_web_accepts_gzip(const char *accept_encoding);

/*
 * cca_web_etag_matches - whether an If-None-Match field value (RFC 9110
 * 13.1.2; NULL when absent) matches @etag (quotes included) by the weak
 * comparison: "*" matches any, and "W/" prefixes are ignored. A malformed list
 * matches nothing (the full answer is sent, never a wrong 304).
 */
bool cca_web_etag_matches(const char *if_none_match, const char *etag);

/*
 * cca_web_gunzip - decode @a's gzip data for a client that does not accept
 * gzip. Returns CCA_OK with *@ret (new, malloc'd; free() it) of exactly
 * @a->size bytes; CCA_ERR_INVALID when @a is not gzip-encoded; CCA_ERR_INTERNAL
 * when zlib fails or the size differs (a build defect). Uses zlib's inflate
 * (RFC 1950-1952).
 */
cca_rc cca_web_gunzip(const struct cca_web_asset *a, char **ret);

#endif
