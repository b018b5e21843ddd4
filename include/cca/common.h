/* SPDX-License-Identifier: MIT */
#ifndef CCA_COMMON_H
#define CCA_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CCA_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CCA_WUR           __attribute__((warn_unused_result))
#define CCA_PRINTF(f, a)  __attribute__((format(printf, f, a)))

/*
 * cca_rc - the one error enum of the project (house style 8.4).
 * CCA_OK is zero; every other value names one reason. Only the HTTP layer maps
 * these to status codes (http_json.c).
 */
typedef enum {
    CCA_OK = 0,
    CCA_ERR_INVALID,     /* the input breaks a documented rule */
    CCA_ERR_PARSE,       /* the input is not well-formed (JSON, UTF-8) */
    CCA_ERR_NOT_FOUND,   /* no such dialog, file or entry */
    CCA_ERR_CONFLICT,    /* the object's state forbids the operation */
    CCA_ERR_LIMIT,       /* a configured cap on the object is reached */
    CCA_ERR_MISMATCH,    /* an idempotency key repeated with a different request */
    CCA_ERR_TOO_LARGE,   /* a capped buffer would overflow */
    CCA_ERR_IO,          /* a system call on storage failed */
    CCA_ERR_NO_SPACE,    /* storage is full (ENOSPC, EDQUOT) */
    CCA_ERR_UPSTREAM,    /* the LLM answered with an error or garbage */
    CCA_ERR_TIMEOUT,     /* a deadline passed */
    CCA_ERR_UNAVAILABLE, /* overloaded or shutting down */
    CCA_ERR_INTERNAL,    /* a bug or a library failure */
    CCA_ERR_FORBIDDEN,   /* the caller may not act on this object */
    CCA_ERR__LAST        /* sentinel, never returned */
} cca_rc;

/*
 * struct cca_error - optional error detail, filled by the callee on failure.
 * @code: the cca_rc that was returned.
 * @msg:  human-readable, NUL-terminated, never contains a secret.
 */
struct cca_error {
    cca_rc code;
    char msg[160];
};

/*
 * cca_error_set - fill @err (which may be NULL) with @code and a printf message.
 * Returns @code, so a caller can write `return cca_error_set(err, rc, ...)`.
 * Thread-safe.
 */
cca_rc cca_error_set(struct cca_error *err, cca_rc code, const char *fmt, ...)
    CCA_PRINTF(3, 4);

/*
 * cca_strerror - stable machine name of @rc ("invalid", "not_found", ...).
 * Returns a static string; never NULL, "unknown" for values out of range.
 */
const char *cca_strerror(cca_rc rc);

/*
 * enum cca_agent - the AI agents a turn can be handed to.
 * CCA_AGENT_NONE marks "no agent yet" (a dialog before its first turn).
 */
enum cca_agent {
    CCA_AGENT_TECH_SUPPORT = 0,
    CCA_AGENT_SALES = 1,
    CCA_AGENT_SUPERVISOR = 2,
    CCA_AGENT__COUNT = 3,
    CCA_AGENT_NONE = -1
};

/*
 * cca_agent_name - "tech_support", "sales" or "supervisor"; NULL for any other
 * value. Static string. Thread-safe.
 */
const char *cca_agent_name(enum cca_agent agent);

/*
 * cca_agent_parse - map @name (NUL-terminated) to an agent.
 * Returns true and sets *ret_agent on a match, false otherwise (*ret_agent untouched).
 */
bool cca_agent_parse(const char *name, enum cca_agent *ret_agent);

/* Wall-clock and monotonic time. All thread-safe. */

/* cca_time_mono_ms - CLOCK_MONOTONIC in milliseconds: for deadlines and durations. */
int64_t cca_time_mono_ms(void);

/* cca_time_mono_us - CLOCK_MONOTONIC in microseconds: for short durations. */
int64_t cca_time_mono_us(void);

/* cca_time_wall_ms - CLOCK_REALTIME in milliseconds since the Unix epoch (UTC). */
int64_t cca_time_wall_ms(void);

#define CCA_TIME_LEN 25 /* "2025-01-15T10:30:00.123Z" + NUL */

/*
 * cca_time_format - write @unix_ms as RFC 3339 UTC with milliseconds and "Z"
 * (RFC 3339 section 5.6, e.g. "2025-01-15T10:30:00.123Z") into @buf.
 */
void cca_time_format(int64_t unix_ms, char buf[CCA_TIME_LEN]);

/*
 * cca_time_parse - parse the format written by cca_time_format (the fraction is
 * optional, "Z" or "+00:00" required; a date the calendar lacks, such as
 * 2026-02-30, is refused). Returns true and sets *ret_ms on success.
 */
bool cca_time_parse(const char *s, int64_t *ret_ms);

/*
 * cca_uuid_canonical - validate @s (NUL-terminated) as a UUID with uuid_parse(3)
 * and write its canonical lower-case form (36 chars + NUL) into @ret_buf.
 * Returns false for anything uuid_parse rejects; @ret_buf is then untouched.
 * This is the only gate through which an id from a request reaches a path.
 */
bool cca_uuid_canonical(const char *s, char ret_buf[37]);

/*
 * cca_uuid_v5 - the name-based (version 5, SHA-1) UUID of @name[0..len) in
 * namespace @ns (16 bytes), RFC 9562 section 5.5, lower case, into @ret;
 * "" when libcrypto fails. Deterministic: the same name gives the same id,
 * so it can key a store document for any string (customer.h, telegram.c).
 * Thread-safe.
 */
void cca_uuid_v5(const unsigned char ns[16], const char *name, size_t len, char ret[37]);

/* cca_uuid_new - a new random (version 4) UUID, lower case, into @ret_buf. */
void cca_uuid_new(char ret_buf[37]);

/*
 * cca_hash_str - FNV-1a (64 bit) of the NUL-terminated @s: the bucket hash of
 * the in-memory id tables (not for untrusted keys an attacker can choose:
 * access.c seeds its own). Pure and thread-safe.
 */
size_t cca_hash_str(const char *s);

#endif
