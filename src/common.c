/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <uuid/uuid.h>

#include "cca/common.h"

cca_rc cca_error_set(struct cca_error *err, cca_rc code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    (void)vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

const char *cca_strerror(cca_rc rc)
{
    static const char *const names[] = {
        [CCA_OK] = "ok",
        [CCA_ERR_INVALID] = "invalid",
        [CCA_ERR_PARSE] = "parse_error",
        [CCA_ERR_NOT_FOUND] = "not_found",
        [CCA_ERR_CONFLICT] = "conflict",
        [CCA_ERR_LIMIT] = "limit_reached",
        [CCA_ERR_MISMATCH] = "idempotency_key_reused",
        [CCA_ERR_FORBIDDEN] = "forbidden",
        [CCA_ERR_TOO_LARGE] = "too_large",
        [CCA_ERR_IO] = "io_error",
        [CCA_ERR_NO_SPACE] = "no_space",
        [CCA_ERR_UPSTREAM] = "upstream_error",
        [CCA_ERR_TIMEOUT] = "timeout",
        [CCA_ERR_UNAVAILABLE] = "unavailable",
        [CCA_ERR_INTERNAL] = "internal",
    };

    if ((int)rc < 0 || rc >= CCA_ERR__LAST || names[rc] == NULL)
        return "unknown";
    return names[rc];
}

static const char *const agent_names[CCA_AGENT__COUNT] = {
    [CCA_AGENT_TECH_SUPPORT] = "tech_support",
    [CCA_AGENT_SALES] = "sales",
    [CCA_AGENT_SUPERVISOR] = "supervisor",
};

const char *cca_agent_name(enum cca_agent agent)
{
    if ((int)agent < 0 || agent >= CCA_AGENT__COUNT)
        return NULL;
    return agent_names[agent];
}

bool cca_agent_parse(const char *name, enum cca_agent *ret_agent)
{
    for (int i = 0; name != NULL && i < CCA_AGENT__COUNT; i++) {
        if (strcmp(name, agent_names[i]) == 0) {
            *ret_agent = (enum cca_agent)i;
            return true;
        }
    }
    return false;
}

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;

    (void)clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cca_time_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

int64_t cca_time_mono_us(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cca_time_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

void cca_time_format(int64_t unix_ms, char buf[CCA_TIME_LEN])
{
    time_t secs = (time_t)(unix_ms / 1000);
    int ms = (int)(unix_ms % 1000);
    struct tm tm;
    char tmp[80]; /* wide enough for any int fields: keeps -Wformat-truncation quiet */

    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    (void)gmtime_r(&secs, &tm);
    (void)snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ms);
    memcpy(buf, tmp, CCA_TIME_LEN - 1);
    buf[CCA_TIME_LEN - 1] = '\0';
}

/* Days from 1970-01-01 to the civil date @y-@m-@d (H. Hinnant, "chrono-Compatible
 * Low-Level Date Algorithms", days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe;
    unsigned doy;
    unsigned doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* @n ASCII digits at @s as a number, or -1. */
static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/*
 * The exact form cca_time_format writes, "YYYY-MM-DDTHH:MM:SS.mmmZ", without
 * strptime and timegm: every stored time has it, and the support records parse
 * each message's time at every commit. False for anything else.
 */
static bool parse_canonical(const char *s, int64_t *ret_ms)
{
    int y = digits(s, 4);
    int mo = y >= 0 && s[4] == '-' ? digits(s + 5, 2) : -1;
    int d = mo >= 0 && s[7] == '-' ? digits(s + 8, 2) : -1;
    int h = d >= 0 && s[10] == 'T' ? digits(s + 11, 2) : -1;
    int mi = h >= 0 && s[13] == ':' ? digits(s + 14, 2) : -1;
    int sec = mi >= 0 && s[16] == ':' ? digits(s + 17, 2) : -1;
    int ms = sec >= 0 && s[19] == '.' ? digits(s + 20, 3) : -1;
    static const unsigned char mdays[12] = {31, 29, 31, 30, 31, 30,
                                            31, 31, 30, 31, 30, 31};

    if (ms < 0 || s[23] != 'Z' || s[24] != '\0' || mo < 1 || mo > 12 || d < 1 ||
        d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return false;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return false;
    *ret_ms =
        ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 24 + h) * 60 + mi) * 60000 +
        (int64_t)sec * 1000 + ms;
    return true;
}

bool cca_time_parse(const char *s, int64_t *ret_ms)
{
    struct tm tm = {0};
    int ms = 0;
    const char *p;

    if (s == NULL)
        return false;
    if (strlen(s) == CCA_TIME_LEN - 1 && parse_canonical(s, ret_ms))
        return true;
    p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return false;
    if (*p == '.') {
        int digits = 0;

        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        }
        if (digits == 0)
            return false;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
        return false;
    {
        struct tm asked = tm; /* timegm normalises: 02-30 would become 03-02 */
        time_t t = timegm(&tm);

        if (tm.tm_mday != asked.tm_mday || tm.tm_mon != asked.tm_mon)
            return false;
        *ret_ms = (int64_t)t * 1000 + ms;
    }
    return true;
}

bool cca_uuid_canonical(const char *s, char ret_buf[37])
{
    uuid_t u;

    if (s == NULL || strlen(s) != 36 || uuid_parse(s, u) != 0)
        return false;
    uuid_unparse_lower(u, ret_buf);
    return true;
}

void cca_uuid_new(char ret_buf[37])
{
    uuid_t u;

    uuid_generate_random(u);
    uuid_unparse_lower(u, ret_buf);
}

size_t cca_hash_str(const char *s)
{
    size_t h = 1469598103934665603ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void cca_uuid_v5(const unsigned char ns[16], const char *name, size_t len, char ret[37])
{
    static const char digits16[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t o = 0;

    ret[0] = '\0'; /* a broken OpenSSL setup: "" is no UUID, the store refuses it */
    /* RFC 9562 section 5.5: SHA-1 over the namespace's 16 bytes, then the name. */
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, ns, 16) != 1 ||
        (len > 0 && EVP_DigestUpdate(ctx, name, len) != 1) ||
        EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len != 20)
        goto out;
    md[6] = (unsigned char)((md[6] & 0x0F) | 0x50); /* version 5 */
    md[8] = (unsigned char)((md[8] & 0x3F) | 0x80); /* variant 10 (RFC 9562) */
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            ret[o++] = '-';
        ret[o++] = digits16[md[i] >> 4];
        ret[o++] = digits16[md[i] & 15];
    }
    ret[o] = '\0';
out:
    EVP_MD_CTX_free(ctx);
}
