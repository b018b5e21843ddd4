/* SPDX-License-Identifier: MIT */
#ifndef CCA_ACCESS_H
#define CCA_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cca/common.h"

/*
 * Access control building blocks for the HTTP server (src/http_server.c):
 * API keys compared in constant time, bounded token-bucket tables for rate
 * limits, and the CORS origin list. Pure and non-logging: callers log. No
 * function here ever copies a key into an error message.
 */

#define CCA_ACCESS_KEY_MAX 256 /* bytes of one API key */
#define CCA_ACCESS_ID_MAX  40  /* bytes of one rate-limit bucket identity */

/* enum cca_access_key_class - what a presented key turned out to be. */
enum cca_access_key_class {
    CCA_ACCESS_KEY_NONE = 0, /* matches no configured key */
    CCA_ACCESS_KEY_CLIENT,   /* an API_KEYS / API_KEYS_FILE key */
    CCA_ACCESS_KEY_ADMIN,    /* an ADMIN_API_KEYS key (valid for every route) */
};

struct cca_access_keys;

/*
 * cca_access_keys_new - build the key set from @client_csv (API_KEYS, comma
 * separated), @client_file (API_KEYS_FILE: one key per line, '#' comments and
 * blank lines ignored; read now) and @admin_csv (ADMIN_API_KEYS). Each may be
 * NULL or "". Every key is trimmed of spaces and tabs and must be 1 to
 * CCA_ACCESS_KEY_MAX bytes of printable ASCII without spaces (0x21..0x7e). A key in
 * both the client and the admin lists is an admin key. Returns CCA_OK and a new
 * set in *ret_keys (possibly empty: cca_access_keys_count 0 means "no auth"),
 * CCA_ERR_INVALID naming the setting and the key's position (never the key), or
 * CCA_ERR_IO when @client_file cannot be read. Not thread-safe (start-up).
 */
cca_rc cca_access_keys_new(const char *client_csv, const char *client_file,
                           const char *admin_csv, struct cca_access_keys **ret_keys,
                           struct cca_error *reterr) CCA_WUR;

/* cca_access_keys_free - accepts NULL; wipes the key bytes before freeing. */
void cca_access_keys_free(struct cca_access_keys *keys);

/* cca_access_keys_count - distinct configured keys (client + admin). Thread-safe. */
size_t cca_access_keys_count(const struct cca_access_keys *keys);

/*
 * cca_access_keys_check - classify the presented key @key (@len bytes, need not
 * be NUL-terminated). Compares against every configured key over
 * CCA_ACCESS_KEY_MAX bytes each, without early exit, so the time taken depends
 * only on the number of keys, not on which key matched or how much of it.
 * @ret_index (may be NULL) gets a stable small index of the matched key (for a
 * rate-limit bucket; never the key text), untouched on CCA_ACCESS_KEY_NONE.
 * Thread-safe (read-only).
 */
enum cca_access_key_class cca_access_keys_check(const struct cca_access_keys *keys,
                                                const char *key, size_t len,
                                                uint32_t *ret_index);

/*
 * cca_access_bearer - the token of an "Authorization: Bearer <token>" value
 * @value (RFC 6750 section 2.1; scheme case-insensitive, RFC 9110 section 11.1).
 * Returns true and sets *ret_token (borrowed, points into @value) and *ret_len;
 * false for NULL, another scheme or an empty token. Thread-safe.
 */
bool cca_access_bearer(const char *value, const char **ret_token, size_t *ret_len);

/*
 * struct cca_access_limiter - a bounded table of token buckets, one per
 * identity (an API key index, a client address, a dialog id), each refilled
 * at @rate tokens per second up to @burst. The table has a fixed capacity set
 * at creation; a new identity replaces, within its hash set of 8 entries, an
 * empty entry, else one whose bucket is full again (nothing lost), else the
 * least recently used one. So memory never grows with the number of clients;
 * under a flood of identities beyond the capacity an evicted client starts
 * again with a full bucket.
 */
struct cca_access_limiter;

/*
 * cca_access_limiter_new - @rate > 0 tokens per second, @burst >= 1 tokens,
 * room for at least @capacity identities (rounded up to a power of two, at
 * least 8). Returns a new table (aborts on out of memory).
 */
struct cca_access_limiter *cca_access_limiter_new(double rate, double burst,
                                                  size_t capacity);

/* cca_access_limiter_free - accepts NULL. */
void cca_access_limiter_free(struct cca_access_limiter *lim);

/*
 * cca_access_limiter_take - take one token from the bucket of identity @id
 * (@len bytes, at most CCA_ACCESS_ID_MAX; longer ids are cut) at time @now_us
 * (microseconds, monotonic; injected so tests control the clock). Returns true
 * when allowed; false when the bucket is empty, with *ret_retry_after_s (may be
 * NULL) set to the whole seconds until a token is back: ceil, at least 1 (the
 * HTTP Retry-After value, RFC 9110 section 10.2.3). O(1); thread-safe (striped
 * mutexes).
 */
bool cca_access_limiter_take(struct cca_access_limiter *lim, const void *id, size_t len,
                             int64_t now_us, unsigned *ret_retry_after_s);

/* cca_access_limiter_size - identities currently held (<= capacity). Thread-safe. */
size_t cca_access_limiter_size(struct cca_access_limiter *lim);

/* cca_access_limiter_capacity - the fixed capacity. Thread-safe. */
size_t cca_access_limiter_capacity(const struct cca_access_limiter *lim);

/*
 * cca_access_retry_after_s - whole seconds until a bucket holding @tokens
 * (< 1) refilled at @rate per second has one token: ceil((1 - tokens) / rate),
 * at least 1. Pure.
 */
unsigned cca_access_retry_after_s(double tokens, double rate);

/* The CORS origin list (CORS_ORIGINS). */
struct cca_access_cors;

/*
 * cca_access_cors_new - parse @csv: comma-separated exact origins
 * ("scheme://host[:port]", no path) or "*" (any origin); NULL or "" turns CORS
 * off. Returns CCA_OK and a new list in *ret_cors, or CCA_ERR_INVALID naming
 * the position of a malformed entry. Not thread-safe (start-up).
 */
cca_rc cca_access_cors_new(const char *csv, struct cca_access_cors **ret_cors,
                           struct cca_error *reterr) CCA_WUR;

/* cca_access_cors_free - accepts NULL. */
void cca_access_cors_free(struct cca_access_cors *cors);

/* cca_access_cors_enabled - true when at least one origin (or "*") is configured. */
bool cca_access_cors_enabled(const struct cca_access_cors *cors);

/*
 * cca_access_cors_allow_origin - the Access-Control-Allow-Origin value for a
 * request with Origin @origin (may be NULL): "*" when any origin is allowed,
 * @origin itself (borrowed) when it is listed (compared case-insensitively,
 * RFC 6454 serialises scheme and host in lower case), NULL when CORS is off,
 * @origin is NULL or not listed. Thread-safe (read-only).
 */
const char *cca_access_cors_allow_origin(const struct cca_access_cors *cors,
                                         const char *origin);

#endif
