/* SPDX-License-Identifier: MIT */
/*
 * Request ids (X-Request-Id): a random version 4 UUID per request from a
 * per-thread PRNG. Used by http_server.c; knows nothing of routes or handlers.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/random.h>

#include "cca/common.h"

#include "http_int.h"

/*
 * xoshiro256** 1.0 (Blackman and Vigna, https://prng.di.unimi.it/xoshiro256starstar.c):
 * 256 bits of state per thread. libuuid's uuid_generate_random costs a
 * getrandom(2), a getpid(2), a getuid(2) and a srandom() per id; this costs a
 * few multiplications.
 */
static _Thread_local uint64_t rid_state[4];
static _Thread_local bool rid_seeded;

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rid_next(void)
{
    uint64_t *s = rid_state;
    uint64_t out = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

/* Seed this thread's generator from getrandom(2); false if the kernel has none. */
static bool rid_seed(void)
{
    uint8_t *p = (uint8_t *)rid_state;
    size_t got = 0;

    while (got < sizeof(rid_state)) {
        ssize_t n = getrandom(p + got, sizeof(rid_state) - got, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    if ((rid_state[0] | rid_state[1] | rid_state[2] | rid_state[3]) == 0)
        rid_state[0] = 1; /* the one state xoshiro cannot leave */
    rid_seeded = true;
    return true;
}

void cca_http_request_id_new(char ret_buf[37])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    uint64_t hi;
    uint64_t lo;
    size_t o = 0;

    if (!rid_seeded && !rid_seed()) {
        cca_uuid_new(ret_buf);
        return;
    }
    hi = rid_next();
    lo = rid_next();
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(hi >> (56 - 8 * i));
        b[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10 */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            ret_buf[o++] = '-';
        ret_buf[o++] = hex[b[i] >> 4];
        ret_buf[o++] = hex[b[i] & 0x0f];
    }
    ret_buf[o] = '\0';
}
