/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "cca/access.h"
#include "cca/mem.h"

/* ---- API keys ------------------------------------------------------------------- */

/* One key, zero-padded to a fixed width so every comparison does the same work. */
struct key {
    unsigned char bytes[CCA_ACCESS_KEY_MAX];
    size_t len;
    bool admin;
};

struct cca_access_keys {
    struct key *v;
    size_t n;
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Add @s (@len bytes, untrimmed) to @keys. @what and @pos name the key in an
 * error ("API_KEYS" key 3, "API_KEYS_FILE" line 7): never the key itself.
 */
static cca_rc add_key(struct cca_access_keys *keys, const char *s, size_t len, bool admin,
                      const char *what, const char *unit, size_t pos,
                      struct cca_error *reterr)
{
    while (len > 0 && is_blank(*s)) {
        s++;
        len--;
    }
    while (len > 0 && is_blank(s[len - 1]))
        len--;
    if (len == 0)
        return cca_error_set(reterr, CCA_ERR_INVALID, "%s: %s %zu: the key is empty",
                             what, unit, pos);
    if (len > CCA_ACCESS_KEY_MAX)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "%s: %s %zu: the key is longer than %d bytes", what, unit,
                             pos, CCA_ACCESS_KEY_MAX);
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "%s: %s %zu: the key has a character outside printable "
                                 "ASCII (or a space)",
                                 what, unit, pos);
    }
    /* Duplicates collapse; a key that is also an admin key becomes admin. */
    for (size_t i = 0; i < keys->n; i++) {
        if (keys->v[i].len == len && memcmp(keys->v[i].bytes, s, len) == 0) {
            keys->v[i].admin |= admin;
            return CCA_OK;
        }
    }
    keys->v = cca_xrealloc(keys->v, (keys->n + 1) * sizeof(keys->v[0]));
    memset(&keys->v[keys->n], 0, sizeof(keys->v[0]));
    memcpy(keys->v[keys->n].bytes, s, len);
    keys->v[keys->n].len = len;
    keys->v[keys->n].admin = admin;
    keys->n++;
    return CCA_OK;
}

static cca_rc add_csv(struct cca_access_keys *keys, const char *csv, bool admin,
                      const char *what, struct cca_error *reterr)
{
    size_t pos = 1;
    const char *p = csv;
    cca_rc rc = CCA_OK;

    if (csv == NULL)
        return CCA_OK;
    while (*p != '\0' && is_blank(*p))
        p++;
    if (*p == '\0')
        return CCA_OK; /* unset */
    for (;;) {
        size_t n = strcspn(p, ",");

        rc = add_key(keys, p, n, admin, what, "key", pos++, reterr);
        if (rc != CCA_OK || p[n] == '\0')
            break;
        p += n + 1;
    }
    return rc;
}

static cca_rc add_file(struct cca_access_keys *keys, const char *path,
                       struct cca_error *reterr)
{
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t lineno = 0;
    cca_rc rc = CCA_OK;

    if (path == NULL || path[0] == '\0')
        return CCA_OK;
    f = fopen(path, "re");
    if (f == NULL)
        return cca_error_set(reterr, CCA_ERR_IO, "cannot read API_KEYS_FILE '%.100s': %s",
                             path, strerror(errno));
    while ((n = getline(&line, &cap, f)) >= 0) {
        const char *s = line;
        size_t len = (size_t)n;

        lineno++;
        while (len > 0 && is_blank(*s)) {
            s++;
            len--;
        }
        if (len == 0 || *s == '#')
            continue;
        rc = add_key(keys, s, len, false, "API_KEYS_FILE", "line", lineno, reterr);
        if (rc != CCA_OK)
            goto out;
    }
    if (ferror(f))
        rc =
            cca_error_set(reterr, CCA_ERR_IO, "cannot read API_KEYS_FILE '%.100s'", path);
out:
    if (line != NULL)
        explicit_bzero(line, cap);
    free(line);
    fclose(f);
    return rc;
}

cca_rc cca_access_keys_new(const char *client_csv, const char *client_file,
                           const char *admin_csv, struct cca_access_keys **ret_keys,
                           struct cca_error *reterr)
{
    struct cca_access_keys *keys = cca_xcalloc(1, sizeof(*keys));
    cca_rc rc;

    rc = add_csv(keys, admin_csv, true, "ADMIN_API_KEYS", reterr);
    if (rc == CCA_OK)
        rc = add_csv(keys, client_csv, false, "API_KEYS", reterr);
    if (rc == CCA_OK)
        rc = add_file(keys, client_file, reterr);
    if (rc != CCA_OK)
        goto out;
    *ret_keys = keys;
    keys = NULL;
out:
    cca_access_keys_free(keys);
    return rc;
}

void cca_access_keys_free(struct cca_access_keys *keys)
{
    if (keys == NULL)
        return;
    if (keys->v != NULL)
        explicit_bzero(keys->v, keys->n * sizeof(keys->v[0]));
    free(keys->v);
    free(keys);
}

size_t cca_access_keys_count(const struct cca_access_keys *keys)
{
    return keys != NULL ? keys->n : 0;
}

/* All ones when @x is zero, else zero; without a branch on @x. */
static uint32_t zero_mask(uint32_t x)
{
    return (uint32_t)(((uint64_t)x - 1) >> 32);
}

enum cca_access_key_class cca_access_keys_check(const struct cca_access_keys *keys,
                                                const char *key, size_t len,
                                                uint32_t *ret_index)
{
    unsigned char given[CCA_ACCESS_KEY_MAX] = {0};
    uint32_t client = 0;
    uint32_t admin = 0;
    uint32_t index = 0;

    /* The presented length is the client's own business, not a secret. */
    if (keys == NULL || key == NULL || len == 0 || len > CCA_ACCESS_KEY_MAX)
        return CCA_ACCESS_KEY_NONE;
    memcpy(given, key, len);
    for (size_t i = 0; i < keys->n; i++) {
        const struct key *k = &keys->v[i];
        volatile uint32_t diff = (uint32_t)(k->len ^ len);
        uint32_t eq;

        for (size_t j = 0; j < CCA_ACCESS_KEY_MAX; j++)
            diff |= (uint32_t)(k->bytes[j] ^ given[j]);
        eq = zero_mask(diff);
        index |= eq & (uint32_t)i;
        admin |= eq & (uint32_t) - (int32_t)k->admin;
        client |= eq;
    }
    explicit_bzero(given, sizeof(given));
    if (client == 0)
        return CCA_ACCESS_KEY_NONE;
    if (ret_index != NULL)
        *ret_index = index;
    return admin != 0 ? CCA_ACCESS_KEY_ADMIN : CCA_ACCESS_KEY_CLIENT;
}

bool cca_access_bearer(const char *value, const char **ret_token, size_t *ret_len)
{
    size_t len;

    if (value == NULL || strncasecmp(value, "Bearer", 6) != 0 ||
        (value[6] != ' ' && value[6] != '\t'))
        return false;
    value += 6;
    while (*value == ' ' || *value == '\t')
        value++;
    len = strlen(value);
    while (len > 0 && is_blank(value[len - 1]))
        len--;
    if (len == 0)
        return false;
    *ret_token = value;
    *ret_len = len;
    return true;
}

/* ---- token buckets ---------------------------------------------------------------- */

#define WAYS    8   /* entries per hash set */
#define STRIPES 256 /* mutexes, each guarding every STRIPES-th set */

struct bucket {
    unsigned char id[CCA_ACCESS_ID_MAX];
    uint8_t len; /* 0: free */
    double tokens;
    int64_t last_us;
};

struct cca_access_limiter {
    double rate;
    double burst;
    size_t nsets; /* power of two */
    uint64_t seed;
    struct bucket *b; /* nsets * WAYS */
    pthread_mutex_t locks[STRIPES];
    atomic_size_t used;
};

struct cca_access_limiter *cca_access_limiter_new(double rate, double burst,
                                                  size_t capacity)
{
    struct cca_access_limiter *lim = cca_xcalloc(1, sizeof(*lim));
    size_t nsets = 1;

    while (nsets * WAYS < capacity)
        nsets <<= 1;
    lim->rate = rate > 0 ? rate : 1e-9;
    lim->burst = burst >= 1 ? burst : 1;
    lim->nsets = nsets;
    /* A secret seed: nobody can aim identities at one set to evict a victim. */
    if (getrandom(&lim->seed, sizeof(lim->seed), GRND_NONBLOCK) != sizeof(lim->seed))
        lim->seed = (uint64_t)cca_time_mono_us() * 0x9e3779b97f4a7c15ULL;
    lim->b = cca_xcalloc(nsets * WAYS, sizeof(lim->b[0]));
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&lim->locks[i], NULL);
    return lim;
}

void cca_access_limiter_free(struct cca_access_limiter *lim)
{
    if (lim == NULL)
        return;
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&lim->locks[i]);
    free(lim->b);
    free(lim);
}

size_t cca_access_limiter_size(struct cca_access_limiter *lim)
{
    return atomic_load(&lim->used);
}

size_t cca_access_limiter_capacity(const struct cca_access_limiter *lim)
{
    return lim->nsets * WAYS;
}

/* FNV-1a with a seed, then the splitmix64 finaliser for the low bits. */
static uint64_t hash_id(uint64_t seed, const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;

    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

unsigned cca_access_retry_after_s(double tokens, double rate)
{
    /* The epsilon keeps float noise (10.0000001) from adding a whole second. */
    double s = rate > 0 ? ceil((1.0 - tokens) / rate - 1e-6) : 1;

    if (!(s >= 1))
        return 1;
    if (s > 86400.0 * 365)
        return 86400u * 365;
    return (unsigned)s;
}

/* The bucket's tokens at @now_us (refilled, capped at burst). */
static double refilled(const struct cca_access_limiter *lim, const struct bucket *b,
                       int64_t now_us)
{
    double t = b->tokens;

    if (now_us > b->last_us)
        t += (double)(now_us - b->last_us) / 1e6 * lim->rate;
    return t < lim->burst ? t : lim->burst;
}

bool cca_access_limiter_take(struct cca_access_limiter *lim, const void *id, size_t len,
                             int64_t now_us, unsigned *ret_retry_after_s)
{
    uint64_t h;
    size_t set;
    struct bucket *ways;
    struct bucket *b = NULL;
    pthread_mutex_t *lock;
    bool fresh = false;
    bool ok;

    if (len > CCA_ACCESS_ID_MAX)
        len = CCA_ACCESS_ID_MAX;
    if (len == 0) {
        id = "";
        len = 1;
    }
    h = hash_id(lim->seed, id, len);
    set = (size_t)h & (lim->nsets - 1);
    ways = &lim->b[set * WAYS];
    lock = &lim->locks[set % STRIPES];
    pthread_mutex_lock(lock);
    for (unsigned i = 0; i < WAYS && b == NULL; i++) {
        if (ways[i].len == len && memcmp(ways[i].id, id, len) == 0)
            b = &ways[i];
    }
    if (b != NULL) {
        b->tokens = refilled(lim, b, now_us);
    } else {
        /* Victim: a free entry, else a full (idle) bucket, else the least recent. */
        struct bucket *lru = &ways[0];

        for (unsigned i = 0; i < WAYS && b == NULL; i++) {
            if (ways[i].len == 0) {
                b = &ways[i];
                atomic_fetch_add(&lim->used, 1);
            }
        }
        for (unsigned i = 0; i < WAYS && b == NULL; i++) {
            if (refilled(lim, &ways[i], now_us) >= lim->burst)
                b = &ways[i];
            else if (ways[i].last_us < lru->last_us)
                lru = &ways[i];
        }
        if (b == NULL)
            b = lru;
        fresh = true;
        memcpy(b->id, id, len);
        b->len = (uint8_t)len;
        b->tokens = lim->burst;
    }
    if (fresh || now_us > b->last_us)
        b->last_us = now_us;
    ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    else if (ret_retry_after_s != NULL)
        *ret_retry_after_s = cca_access_retry_after_s(b->tokens, lim->rate);
    pthread_mutex_unlock(lock);
    return ok;
}

/* ---- CORS ------------------------------------------------------------------------- */

struct cca_access_cors {
    bool any;
    char **origins;
    size_t n;
};

cca_rc cca_access_cors_new(const char *csv, struct cca_access_cors **ret_cors,
                           struct cca_error *reterr)
{
    struct cca_access_cors *c = cca_xcalloc(1, sizeof(*c));
    const char *p = csv != NULL ? csv : "";
    size_t pos = 1;
    cca_rc rc = CCA_OK;

    while (is_blank(*p))
        p++;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        const char *s = p;
        size_t len = n;
        const char *scheme_end;

        while (len > 0 && is_blank(*s)) {
            s++;
            len--;
        }
        while (len > 0 && is_blank(s[len - 1]))
            len--;
        scheme_end = memmem(s, len, "://", 3);
        if (len == 1 && s[0] == '*') {
            c->any = true;
        } else if (len == 0 || len > 255 || scheme_end == NULL || scheme_end == s ||
                   (size_t)(scheme_end - s) + 3 >= len ||
                   memchr(scheme_end + 3, '/', len - (size_t)(scheme_end - s) - 3) ||
                   memchr(s, ' ', len) != NULL) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "CORS_ORIGINS: entry %zu is not '*' or an origin like "
                               "https://app.example.com (scheme://host[:port], no path)",
                               pos);
            goto out;
        } else {
            c->origins = cca_xrealloc(c->origins, (c->n + 1) * sizeof(c->origins[0]));
            c->origins[c->n++] = cca_xstrndup(s, len);
        }
        pos++;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    *ret_cors = c;
    c = NULL;
out:
    cca_access_cors_free(c);
    return rc;
}

void cca_access_cors_free(struct cca_access_cors *cors)
{
    if (cors == NULL)
        return;
    for (size_t i = 0; i < cors->n; i++)
        free(cors->origins[i]);
    free(cors->origins);
    free(cors);
}

bool cca_access_cors_enabled(const struct cca_access_cors *cors)
{
    return cors != NULL && (cors->any || cors->n > 0);
}

const char *cca_access_cors_allow_origin(const struct cca_access_cors *cors,
                                         const char *origin)
{
    if (!cca_access_cors_enabled(cors) || origin == NULL || origin[0] == '\0')
        return NULL;
    if (cors->any)
        return "*";
    for (size_t i = 0; i < cors->n; i++) {
        if (strcasecmp(cors->origins[i], origin) == 0)
            return origin;
    }
    return NULL;
}
