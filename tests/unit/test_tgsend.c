/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include "cca/mem.h"
#include "cca/tgsend.h"

/*
 * The Telegram send scheduler against a fake clock: every time below is a
 * number the test chooses, so nothing depends on the machine's speed.
 */

#define T0 1000000 /* a monotonic clock that does not start at zero */

/* One queued message: its chat and its place in that chat's FIFO. */
struct msg {
    int64_t chat;
    int n;
};

/* Chat ids as Telegram has them: users positive, groups negative. */
static int64_t chat_id(int k)
{
    return (k % 2 == 0 ? 1 : -1) * (100000 + (int64_t)k * 7919);
}

static void push_ok(struct cca_tgsend *q, struct msg *m)
{
    assert_int_equal(cca_tgsend_push(q, m->chat, m), CCA_OK);
}

static struct cca_tgsend_stats stats(const struct cca_tgsend *q)
{
    struct cca_tgsend_stats s;

    cca_tgsend_get_stats(q, &s);
    return s;
}

/* next() that must return nothing, with wait @want. */
static void expect_wait(struct cca_tgsend *q, int64_t now, int64_t want)
{
    int64_t chat = 12345;
    int64_t wait = 777;

    assert_null(cca_tgsend_next(q, now, &chat, &wait));
    assert_int_equal(wait, want);
    assert_int_equal(chat, 12345); /* untouched */
}

/* next() that must return @want. */
static void expect_item(struct cca_tgsend *q, int64_t now, const struct msg *want)
{
    int64_t chat = 0;
    int64_t wait = 777;
    struct msg *m = cca_tgsend_next(q, now, &chat, &wait);

    assert_ptr_equal(m, want);
    assert_int_equal(chat, want->chat);
    assert_int_equal(wait, 0);
}

struct dropped {
    struct msg *v[64];
    size_t n;
};

static void on_drop(void *ctx, void *item)
{
    struct dropped *d = ctx;

    assert_true(d->n < CCA_ARRAY_SIZE(d->v));
    d->v[d->n++] = item;
}

/* ---- basics -------------------------------------------------------------------- */

static void test_empty_and_wait(void **state)
{
    struct cca_tgsend *q = cca_tgsend_new(NULL);
    struct msg a = {7, 0};
    struct msg b = {7, 1};
    struct cca_tgsend_stats s;
    int64_t wait = 0;

    (void)state;
    expect_wait(q, T0, -1);
    s = stats(q);
    assert_int_equal(s.queued + s.chats + s.in_flight, 0);
    assert_int_equal(s.sent + s.retried + s.throttled + s.failed + s.dropped, 0);
    assert_int_equal(cca_tgsend_push(q, 7, NULL), CCA_ERR_INVALID);
    assert_int_equal(stats(q).queued, 0);

    push_ok(q, &a);
    push_ok(q, &b);
    s = stats(q);
    assert_int_equal(s.queued, 2);
    assert_int_equal(s.chats, 1);
    assert_int_equal(s.in_flight, 0);
    expect_item(q, T0, &a);
    /* the only chat waits for its answer: nothing to wait for by the clock */
    expect_wait(q, T0, -1);
    expect_wait(q, T0 + 5000, -1);
    s = stats(q);
    assert_int_equal(s.queued, 2);
    assert_int_equal(s.in_flight, 1);

    /* answers for the wrong chat or a chat not in flight are ignored */
    assert_null(cca_tgsend_done(q, 8, CCA_TGSEND_SENT, 0, false, T0 + 100));
    assert_ptr_equal(cca_tgsend_done(q, 7, CCA_TGSEND_SENT, 0, false, T0 + 100), &a);
    assert_null(cca_tgsend_done(q, 7, CCA_TGSEND_SENT, 0, false, T0 + 100));
    s = stats(q);
    assert_int_equal(s.sent, 1);
    assert_int_equal(s.queued, 1);
    assert_int_equal(s.in_flight, 0);

    /* the wait is exact: the spacing ends 1000 ms after the send started */
    expect_wait(q, T0 + 100, 900);
    expect_wait(q, T0 + 999, 1);
    /* the outputs may be NULL */
    assert_ptr_equal(cca_tgsend_next(q, T0 + 1000, NULL, NULL), &b);
    assert_null(cca_tgsend_next(q, T0 + 1000, NULL, &wait));
    assert_int_equal(wait, -1);
    assert_ptr_equal(cca_tgsend_done(q, 7, CCA_TGSEND_FAILED, 0, false, T0 + 1001), &b);
    s = stats(q);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.queued + s.chats + s.in_flight, 0);
    expect_wait(q, T0 + 1001, -1);
    cca_tgsend_free(q, NULL, NULL);
    cca_tgsend_free(NULL, NULL, NULL);
}

static void test_fifo_across_retries(void **state)
{
    struct cca_tgsend *q = cca_tgsend_new(NULL);
    struct msg m[3] = {{-42, 0}, {-42, 1}, {-42, 2}};
    int64_t t = T0;
    int64_t wait;

    (void)state;
    for (int i = 0; i < 3; i++)
        push_ok(q, &m[i]);
    expect_item(q, t, &m[0]);
    /* a transient failure keeps the item first */
    assert_null(cca_tgsend_done(q, -42, CCA_TGSEND_RETRY, 0, false, t + 50));
    assert_null(cca_tgsend_next(q, t + 50, NULL, &wait));
    assert_true(wait >= 950); /* the spacing holds for retries too */
    t += 50 + wait;
    expect_item(q, t, &m[0]);
    expect_wait(q, t, -1); /* never two in flight in one chat */
    /* a 429 keeps it first too */
    assert_null(cca_tgsend_done(q, -42, CCA_TGSEND_RETRY_AFTER, 2000, false, t + 10));
    expect_wait(q, t + 10, 2000);
    t += 2010;
    expect_item(q, t, &m[0]);
    assert_ptr_equal(cca_tgsend_done(q, -42, CCA_TGSEND_SENT, 0, false, t + 10), &m[0]);
    expect_item(q, t + 1000, &m[1]);
    assert_ptr_equal(cca_tgsend_done(q, -42, CCA_TGSEND_FAILED, 0, false, t + 1010),
                     &m[1]);
    expect_item(q, t + 2000, &m[2]);
    assert_ptr_equal(cca_tgsend_done(q, -42, CCA_TGSEND_SENT, 0, false, t + 2010), &m[2]);
    assert_int_equal(stats(q).sent, 2);
    assert_int_equal(stats(q).failed, 1);
    assert_int_equal(stats(q).retried, 1);
    assert_int_equal(stats(q).throttled, 1);
    cca_tgsend_free(q, NULL, NULL);
}

static void test_spacing_survives_empty_queue(void **state)
{
    struct cca_tgsend *q = cca_tgsend_new(NULL);
    struct msg a = {5, 0};
    struct msg b = {5, 1};
    struct msg c = {5, 2};
    struct msg other = {6, 0};

    (void)state;
    push_ok(q, &a);
    expect_item(q, T0, &a);
    assert_ptr_equal(cca_tgsend_done(q, 5, CCA_TGSEND_SENT, 0, false, T0 + 10), &a);
    assert_int_equal(stats(q).chats, 0);
    /* the queue emptied, but the chat sent at T0: not again before T0 + 1000 */
    push_ok(q, &b);
    push_ok(q, &other);
    expect_item(q, T0 + 20, &other);
    expect_wait(q, T0 + 20, 980);
    expect_item(q, T0 + 1000, &b);
    assert_ptr_equal(cca_tgsend_done(q, 5, CCA_TGSEND_SENT, 0, false, T0 + 1010), &b);
    assert_ptr_equal(cca_tgsend_done(q, 6, CCA_TGSEND_SENT, 0, false, T0 + 1010), &other);
    /* long after: the chat is forgotten and sends at once */
    expect_wait(q, T0 + 5000, -1);
    push_ok(q, &c);
    expect_item(q, T0 + 5000, &c);
    /* an answer that comes after the spacing: the record goes at once */
    assert_ptr_equal(cca_tgsend_done(q, 5, CCA_TGSEND_SENT, 0, false, T0 + 6001), &c);
    assert_int_equal(stats(q).chats, 0);
    expect_wait(q, T0 + 6001, -1);
    cca_tgsend_free(q, NULL, NULL);
}

/* ---- the global limit ------------------------------------------------------------ */

static void test_global_window(void **state)
{
    struct cca_tgsend *q = cca_tgsend_new(NULL);
    struct cca_tgsend_params p = {.global_per_s = 10, .global_burst = 1};
    struct msg m[40];

    (void)state;
    for (int i = 0; i < 40; i++) {
        m[i] = (struct msg){chat_id(i), 0};
        push_ok(q, &m[i]);
    }
    /* 30 at once, in the order pushed; the 31st waits for the window */
    for (int i = 0; i < 30; i++)
        expect_item(q, T0, &m[i]);
    expect_wait(q, T0, 1000);
    expect_wait(q, T0 + 999, 1);
    for (int i = 30; i < 40; i++)
        expect_item(q, T0 + 1000, &m[i]);
    expect_wait(q, T0 + 1000, -1);
    cca_tgsend_free(q, NULL, NULL);

    /* 10/s without a burst: one every 100 ms */
    q = cca_tgsend_new(&p);
    for (int i = 0; i < 5; i++)
        push_ok(q, &m[i]);
    expect_item(q, T0, &m[0]);
    expect_wait(q, T0, 100);
    expect_wait(q, T0 + 99, 1);
    expect_item(q, T0 + 100, &m[1]);
    expect_wait(q, T0 + 150, 50);
    expect_item(q, T0 + 200, &m[2]);
    /* a late caller does not earn a burst */
    expect_item(q, T0 + 5000, &m[3]);
    expect_wait(q, T0 + 5000, 100);
    cca_tgsend_free(q, NULL, NULL);
}

/*
 * Drive @q with answers that come back at once as SENT, stepping the fake
 * clock by the returned wait, until nothing is queued. Logs every send. Checks
 * FIFO order and the per-chat spacing on the way.
 */
struct run {
    int64_t *t;
    int64_t *chat;
    int *item; /* the n of the item */
    size_t n;
    size_t wakeups; /* next() calls that returned NULL with a wait */
};

static void run_flood(struct cca_tgsend *q, int64_t now, struct run *r, size_t max,
                      int64_t interval)
{
    for (;;) {
        int64_t chat = 0;
        int64_t wait = 0;
        struct msg *m = cca_tgsend_next(q, now, &chat, &wait);

        if (m == NULL) {
            if (wait < 0)
                break;
            assert_true(wait > 0);
            now += wait;
            r->wakeups++;
            continue;
        }
        assert_true(r->n < max);
        assert_int_equal(m->chat, chat);
        /* the chat's previous send: FIFO and spacing */
        for (size_t i = r->n; i-- > 0;) {
            if (r->chat[i] == chat) {
                assert_true(now - r->t[i] >= interval);
                break;
            }
        }
        r->t[r->n] = now;
        r->chat[r->n] = chat;
        r->item[r->n] = m->n;
        r->n++;
        assert_ptr_equal(cca_tgsend_done(q, chat, CCA_TGSEND_SENT, 0, false, now), m);
    }
}

/* No window of @window ms (half-open) holds more than @limit sends. */
static void assert_window(const int64_t *t, size_t n, size_t limit, int64_t window)
{
    for (size_t i = 0; i + limit < n; i++)
        assert_true(t[i + limit] - t[i] >= window);
}

static void test_flood(void **state)
{
    enum { CHATS = 200, PER = 5, N = CHATS * PER };
    struct cca_tgsend *q = cca_tgsend_new(NULL);
    struct msg *m = cca_xcalloc(N, sizeof(*m));
    struct run r = {.t = cca_xcalloc(N, sizeof(int64_t)),
                    .chat = cca_xcalloc(N, sizeof(int64_t)),
                    .item = cca_xcalloc(N, sizeof(int))};
    int next_n[CHATS] = {0};
    struct cca_tgsend_stats s;

    (void)state;
    /* interleaved pushes: chat k gets items 0..4 */
    for (int i = 0; i < N; i++) {
        m[i] = (struct msg){chat_id(i % CHATS), i / CHATS};
        push_ok(q, &m[i]);
    }
    s = stats(q);
    assert_int_equal(s.queued, N);
    assert_int_equal(s.chats, CHATS);
    run_flood(q, T0, &r, N, 1000);
    assert_int_equal(r.n, N);
    /* at most 30 in any second */
    assert_window(r.t, r.n, 30, 1000);
    /* and no slower than that: the 1000th send goes in the 34th second */
    assert_int_equal(r.t[0], T0);
    assert_int_equal(r.t[N - 1] - r.t[0], (N - 1) / 30 * 1000);
    assert_true(r.wakeups <= N / 30 + 1); /* no busy polling */
    /* FIFO per chat */
    for (size_t i = 0; i < r.n; i++) {
        int k = 0;

        while (chat_id(k) != r.chat[i])
            k++;
        assert_int_equal(r.item[i], next_n[k]++);
        assert_int_equal(r.item[i], i / CHATS); /* rounds: every chat once each */
    }
    s = stats(q);
    assert_int_equal(s.sent, N);
    assert_int_equal(s.queued + s.chats + s.in_flight, 0);
    cca_tgsend_free(q, NULL, NULL);
    free(r.t);
    free(r.chat);
    free(r.item);
    free(m);
}

/* ---- 429 and backoff --------------------------------------------------------------- */

static void test_retry_after(void **state)
{
    struct cca_tgsend *q = cca_tgsend_new(NULL);
    struct msg a = {1, 0}, a2 = {1, 1}, b = {2, 0}, b2 = {2, 1}, c = {3, 0}, d = {4, 0};
    struct msg e = {5, 0};

    (void)state;
    push_ok(q, &a);
    push_ok(q, &b);
    push_ok(q, &c);
    expect_item(q, T0, &a);
    expect_item(q, T0, &b);
    expect_item(q, T0, &c);
    /* per chat: only that chat waits */
    assert_null(cca_tgsend_done(q, 1, CCA_TGSEND_RETRY_AFTER, 5000, false, T0 + 100));
    assert_ptr_equal(cca_tgsend_done(q, 2, CCA_TGSEND_SENT, 0, false, T0 + 100), &b);
    expect_wait(q, T0 + 100, 5000);
    push_ok(q, &b2);
    expect_wait(q, T0 + 200, 800);
    expect_item(q, T0 + 1000, &b2);
    assert_ptr_equal(cca_tgsend_done(q, 2, CCA_TGSEND_SENT, 0, false, T0 + 1000), &b2);
    expect_wait(q, T0 + 5099, 1);
    expect_item(q, T0 + 5100, &a); /* the same item, first */

    /* global: every chat waits, new ones included */
    assert_null(cca_tgsend_done(q, 3, CCA_TGSEND_RETRY_AFTER, 3000, true, T0 + 5200));
    assert_ptr_equal(cca_tgsend_done(q, 1, CCA_TGSEND_SENT, 0, false, T0 + 5200), &a);
    push_ok(q, &a2);
    push_ok(q, &d);
    expect_wait(q, T0 + 5200, 3000);
    expect_wait(q, T0 + 8199, 1);
    /* then in order of readiness: d (pushed at 5200), a2 (its spacing ended at
     * 6100), c (its own retry_after ended at 8200) */
    expect_item(q, T0 + 8200, &d);
    expect_item(q, T0 + 8200, &a2);
    expect_item(q, T0 + 8200, &c);
    /* a shorter global wait does not shorten a longer one */
    assert_null(cca_tgsend_done(q, 4, CCA_TGSEND_RETRY_AFTER, 4000, true, T0 + 8300));
    assert_null(cca_tgsend_done(q, 1, CCA_TGSEND_RETRY_AFTER, 1000, true, T0 + 8300));
    push_ok(q, &e);
    expect_wait(q, T0 + 8300, 4000);
    expect_item(q, T0 + 12300, &e);
    /* retry_after 0 or negative: only the spacing */
    assert_null(cca_tgsend_done(q, 5, CCA_TGSEND_RETRY_AFTER, -5, false, T0 + 12300));
    /* a2 waits since 9300, d since 12300 */
    assert_ptr_equal(cca_tgsend_next(q, T0 + 12300, NULL, NULL), &a2);
    assert_ptr_equal(cca_tgsend_next(q, T0 + 12300, NULL, NULL), &d);
    expect_wait(q, T0 + 12300, 1000);
    expect_item(q, T0 + 13300, &e);
    assert_int_equal(stats(q).throttled, 5);
    assert_int_equal(stats(q).in_flight, 4);
    cca_tgsend_free(q, NULL, NULL);
}

static void test_backoff_jitter(void **state)
{
    enum { CHATS = 400, ROUNDS = 8 };
    const struct cca_tgsend_params p = {.per_chat_interval_ms = 1,
                                        .backoff_base_ms = 100,
                                        .max_backoff_ms = 1500,
                                        .global_per_s = 100000,
                                        .global_burst = 1000,
                                        .seed = 42};
    const int64_t cap[ROUNDS + 1] = {0, 100, 200, 400, 800, 1500, 1500, 1500, 1500};
    struct cca_tgsend *q = cca_tgsend_new(&p);
    struct msg *m = cca_xcalloc(2 * CHATS, sizeof(*m));
    int attempts[CHATS] = {0};
    int64_t done_at[CHATS] = {0};
    int64_t max_delay[ROUNDS + 1] = {0};
    int64_t sum_delay[ROUNDS + 1] = {0};
    int64_t now = T0;
    size_t left = CHATS;

    (void)state;
    for (int k = 0; k < CHATS; k++) {
        m[k] = (struct msg){k, 0};
        push_ok(q, &m[k]);
    }
    /* each chat's item fails ROUNDS times, then goes */
    while (left > 0) {
        int64_t chat;
        int64_t wait;
        struct msg *it = cca_tgsend_next(q, now, &chat, &wait);

        if (it == NULL) {
            assert_true(wait > 0);
            now += wait;
            continue;
        }
        if (attempts[chat] > 0) {
            int64_t d = now - done_at[chat];

            assert_true(d >= 0);
            /* jitter in [0, cap]; 1 is the spacing when the draw was 0 */
            assert_true(d <= (cap[attempts[chat]] > 1 ? cap[attempts[chat]] : 1));
            if (d > max_delay[attempts[chat]])
                max_delay[attempts[chat]] = d;
            sum_delay[attempts[chat]] += d;
        }
        if (attempts[chat] == ROUNDS) {
            assert_ptr_equal(cca_tgsend_done(q, chat, CCA_TGSEND_SENT, 0, false, now),
                             it);
            left--;
            continue;
        }
        assert_null(cca_tgsend_done(q, chat, CCA_TGSEND_RETRY, 0, false, now));
        attempts[chat]++;
        done_at[chat] = now;
    }
    /* it grows up to the cap, and the draws spread over [0, cap] */
    for (int n = 1; n <= ROUNDS; n++) {
        int64_t mean = sum_delay[n] / CHATS;

        assert_true(max_delay[n] <= cap[n]);
        assert_true(max_delay[n] >= cap[n] * 9 / 10);
        assert_true(mean >= cap[n] * 4 / 10 && mean <= cap[n] * 6 / 10);
        if (n > 1 && cap[n] > cap[n - 1])
            assert_true(max_delay[n] > cap[n - 1]);
    }
    assert_int_equal(stats(q).retried, CHATS * ROUNDS);

    /* after a success the backoff starts again from the base */
    for (int k = 0; k < CHATS; k++) {
        m[CHATS + k] = (struct msg){k, 1};
        push_ok(q, &m[CHATS + k]);
        attempts[k] = 0;
    }
    left = CHATS;
    while (left > 0) {
        int64_t chat;
        int64_t wait;
        struct msg *it = cca_tgsend_next(q, now, &chat, &wait);

        if (it == NULL) {
            assert_true(wait > 0);
            now += wait;
            continue;
        }
        if (attempts[chat] == 1) {
            assert_true(now - done_at[chat] <= 100);
            assert_ptr_equal(cca_tgsend_done(q, chat, CCA_TGSEND_SENT, 0, false, now),
                             it);
            left--;
            continue;
        }
        assert_null(cca_tgsend_done(q, chat, CCA_TGSEND_RETRY, 0, false, now));
        attempts[chat] = 1;
        done_at[chat] = now;
    }
    cca_tgsend_free(q, NULL, NULL);
    free(m);
}

/* The n-th retry's wait of one chat with seed @seed. */
static void jitter_series(uint64_t seed, int64_t *ret, int n)
{
    const struct cca_tgsend_params p = {.per_chat_interval_ms = 1,
                                        .backoff_base_ms = 1000,
                                        .max_backoff_ms = 1000,
                                        .seed = seed};
    struct cca_tgsend *q = cca_tgsend_new(&p);
    struct msg a = {9, 0};
    int64_t now = T0;

    push_ok(q, &a);
    expect_item(q, now, &a);
    for (int i = 0; i < n; i++) {
        int64_t wait = 0;

        assert_null(cca_tgsend_done(q, 9, CCA_TGSEND_RETRY, 0, false, now));
        if (cca_tgsend_next(q, now, NULL, &wait) == NULL) {
            now += wait;
            assert_ptr_equal(cca_tgsend_next(q, now, NULL, NULL), &a);
        } else {
            wait = 0;
        }
        ret[i] = wait;
    }
    cca_tgsend_free(q, NULL, NULL);
}

static void test_jitter_seed(void **state)
{
    int64_t a[16], b[16], c[16];

    (void)state;
    jitter_series(1, a, 16);
    jitter_series(1, b, 16);
    jitter_series(2, c, 16);
    assert_memory_equal(a, b, sizeof(a)); /* reproducible */
    assert_true(memcmp(a, c, sizeof(a)) != 0);
    for (int i = 0; i < 16; i++)
        assert_true(a[i] >= 0 && a[i] <= 1000 && c[i] >= 0 && c[i] <= 1000);
}

/* ---- drop and limits ----------------------------------------------------------------
 */

static void test_drop_chat(void **state)
{
    struct cca_tgsend *q = cca_tgsend_new(NULL);
    struct msg m[3] = {{5, 0}, {5, 1}, {5, 2}};
    struct msg other = {6, 0};
    struct msg never[2] = {{7, 0}, {7, 1}};
    struct msg again = {5, 3};
    struct dropped d = {0};
    struct cca_tgsend_stats s;

    (void)state;
    for (int i = 0; i < 3; i++)
        push_ok(q, &m[i]);
    expect_item(q, T0, &m[0]);
    push_ok(q, &other);
    push_ok(q, &never[0]);
    push_ok(q, &never[1]);
    /* the one in flight comes back too, first */
    assert_int_equal(cca_tgsend_drop_chat(q, 5, on_drop, &d), 3);
    assert_int_equal(d.n, 3);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(d.v[i], &m[i]);
    s = stats(q);
    assert_int_equal(s.queued, 3);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(s.chats, 2);
    assert_int_equal(s.dropped, 3);
    /* a late answer for the dropped chat is ignored */
    assert_null(cca_tgsend_done(q, 5, CCA_TGSEND_SENT, 0, false, T0 + 10));
    assert_int_equal(stats(q).sent, 0);
    assert_int_equal(cca_tgsend_drop_chat(q, 5, on_drop, &d), 0);
    assert_int_equal(cca_tgsend_drop_chat(q, 99, on_drop, &d), 0);
    /* a waiting chat that never sent; no callback */
    assert_int_equal(cca_tgsend_drop_chat(q, 7, NULL, NULL), 2);
    assert_int_equal(d.n, 3);
    s = stats(q);
    assert_int_equal(s.queued, 1);
    assert_int_equal(s.chats, 1);
    assert_int_equal(s.dropped, 5);
    /* afresh, but within the spacing of its last send */
    push_ok(q, &again);
    expect_item(q, T0 + 10, &other);
    expect_wait(q, T0 + 10, 990);
    expect_item(q, T0 + 1000, &again);
    assert_ptr_equal(cca_tgsend_done(q, 5, CCA_TGSEND_SENT, 0, false, T0 + 1010), &again);
    assert_int_equal(stats(q).sent, 1);
    cca_tgsend_free(q, NULL, NULL);
}

static void test_max_items(void **state)
{
    const struct cca_tgsend_params p = {.max_items = 3};
    struct cca_tgsend *q = cca_tgsend_new(&p);
    struct msg m[5] = {{1, 0}, {2, 0}, {2, 1}, {3, 0}, {3, 1}};

    (void)state;
    push_ok(q, &m[0]);
    push_ok(q, &m[1]);
    push_ok(q, &m[2]);
    assert_int_equal(cca_tgsend_push(q, 3, &m[3]), CCA_ERR_LIMIT);
    assert_int_equal(stats(q).queued, 3);
    assert_int_equal(stats(q).chats, 2);
    /* in flight still counts */
    expect_item(q, T0, &m[0]);
    assert_int_equal(cca_tgsend_push(q, 3, &m[3]), CCA_ERR_LIMIT);
    assert_ptr_equal(cca_tgsend_done(q, 1, CCA_TGSEND_SENT, 0, false, T0 + 1), &m[0]);
    push_ok(q, &m[3]);
    assert_int_equal(cca_tgsend_push(q, 3, &m[4]), CCA_ERR_LIMIT);
    /* dropping frees room */
    assert_int_equal(cca_tgsend_drop_chat(q, 2, NULL, NULL), 2);
    push_ok(q, &m[4]);
    expect_item(q, T0 + 1, &m[3]);
    cca_tgsend_free(q, NULL, NULL);
}

static void count_drop(void *ctx, void *item)
{
    (void)item;
    (*(int *)ctx)++;
}

static void test_free_hands_back(void **state)
{
    struct cca_tgsend *q = cca_tgsend_new(NULL);
    struct msg m[6] = {{1, 0}, {1, 1}, {2, 0}, {3, 0}, {3, 1}, {3, 2}};
    int n = 0;

    (void)state;
    for (int i = 0; i < 6; i++)
        push_ok(q, &m[i]);
    expect_item(q, T0, &m[0]);
    expect_item(q, T0, &m[2]);
    cca_tgsend_free(q, count_drop, &n);
    assert_int_equal(n, 6);
}

/* ---- fairness ------------------------------------------------------------------- */

static void test_fairness_order(void **state)
{
    const struct cca_tgsend_params p = {.global_per_s = 1, .global_burst = 1};
    struct cca_tgsend *q = cca_tgsend_new(&p);
    struct msg a = {1, 0}, a2 = {1, 1}, b = {2, 0}, c = {3, 0};
    struct msg big[500];
    struct msg small = {20, 0};

    (void)state;
    /* one a second: whoever has been ready longest goes next */
    push_ok(q, &a);
    push_ok(q, &a2);
    push_ok(q, &b);
    expect_item(q, T0, &a);
    assert_ptr_equal(cca_tgsend_done(q, 1, CCA_TGSEND_SENT, 0, false, T0), &a);
    push_ok(q, &c);
    expect_wait(q, T0 + 500, 500);
    expect_item(q, T0 + 1000, &b);  /* ready since T0 */
    expect_item(q, T0 + 2000, &c);  /* ready since the push (T0 .. T0 + 500) */
    expect_item(q, T0 + 3000, &a2); /* ready since T0 + 1000 */
    cca_tgsend_free(q, NULL, NULL);

    /* a chat with 500 items does not hold back one with 1 */
    q = cca_tgsend_new(NULL);
    for (int i = 0; i < 500; i++) {
        big[i] = (struct msg){10, i};
        push_ok(q, &big[i]);
    }
    expect_item(q, T0, &big[0]);
    assert_ptr_equal(cca_tgsend_done(q, 10, CCA_TGSEND_SENT, 0, false, T0 + 5), &big[0]);
    push_ok(q, &small);
    expect_item(q, T0 + 10, &small);
    expect_wait(q, T0 + 10, 990);
    cca_tgsend_free(q, NULL, NULL);
}

/* New chats arriving faster than the global rate do not starve an old one. */
static void test_no_starvation_by_new_chats(void **state)
{
    enum { NEW = 40 };
    const struct cca_tgsend_params p = {.global_per_s = 1, .global_burst = 1};
    struct cca_tgsend *q = cca_tgsend_new(&p);
    struct msg a[2] = {{1, 0}, {1, 1}};
    struct msg fresh[NEW];
    int64_t a_sent = -1;

    (void)state;
    push_ok(q, &a[0]);
    push_ok(q, &a[1]);
    expect_item(q, T0, &a[0]);
    assert_ptr_equal(cca_tgsend_done(q, 1, CCA_TGSEND_SENT, 0, false, T0), &a[0]);
    /* one new chat every 500 ms, two for each send the rate allows */
    for (int i = 0; i < NEW; i++) {
        int64_t now = T0 + 500 * (i + 1);
        int64_t chat;
        struct msg *m;

        fresh[i] = (struct msg){100 + i, 0};
        push_ok(q, &fresh[i]);
        while ((m = cca_tgsend_next(q, now, &chat, NULL)) != NULL) {
            if (m == &a[1])
                a_sent = now;
            assert_ptr_equal(cca_tgsend_done(q, chat, CCA_TGSEND_SENT, 0, false, now), m);
        }
    }
    /* ready at T0 + 1000, behind the two chats that were ready before it */
    assert_true(a_sent > 0 && a_sent <= T0 + 3000);
    cca_tgsend_free(q, NULL, NULL);
}

static void test_fairness_round_robin(void **state)
{
    enum { CHATS = 100, PER = 50, N = CHATS * PER + 1 };
    struct cca_tgsend *q = cca_tgsend_new(NULL);
    struct msg *m = cca_xcalloc(N, sizeof(*m));
    int64_t *t = cca_xcalloc(N, sizeof(int64_t));
    int64_t *who = cca_xcalloc(N, sizeof(int64_t));
    size_t n = 0;
    int64_t now = T0;
    int64_t pushed_at = -1;
    int64_t small_sent = -1;
    /* a round: every busy chat once, at 30 a second */
    const int64_t round_ms = (CHATS + 29) / 30 * 1000;

    (void)state;
    for (int i = 0; i < CHATS * PER; i++) {
        m[i] = (struct msg){i % CHATS, i / CHATS};
        push_ok(q, &m[i]);
    }
    m[N - 1] = (struct msg){-1, 0};
    for (;;) {
        int64_t chat;
        int64_t wait;
        struct msg *it;

        /* the one-item chat arrives in the middle of the flood */
        if (pushed_at < 0 && now >= T0 + 20000) {
            push_ok(q, &m[N - 1]);
            pushed_at = now;
        }
        it = cca_tgsend_next(q, now, &chat, &wait);
        if (it == NULL) {
            if (wait < 0)
                break;
            now += wait;
            continue;
        }
        if (chat == -1)
            small_sent = now;
        t[n] = now;
        who[n++] = chat;
        assert_ptr_equal(cca_tgsend_done(q, chat, CCA_TGSEND_SENT, 0, false, now), it);
    }
    assert_int_equal(n, N);
    assert_true(pushed_at >= 0 && small_sent >= pushed_at);
    assert_true(small_sent - pushed_at <= round_ms);
    assert_window(t, n, 30, 1000);
    /* strict round-robin: between two sends of a chat, no other chat sends twice */
    for (size_t i = 0; i < n; i++) {
        bool seen[CHATS + 1] = {false};
        size_t j = i + 1;

        while (j < n && who[j] != who[i])
            j++;
        if (j == n)
            continue; /* the chat's last send */
        for (size_t b = i + 1; b < j; b++) {
            size_t k = who[b] < 0 ? CHATS : (size_t)who[b];

            assert_false(seen[k]);
            seen[k] = true;
        }
    }
    cca_tgsend_free(q, NULL, NULL);
    free(who);
    free(t);
    free(m);
}

/* ---- a random simulation --------------------------------------------------------- */

/* xorshift64*: the test's own random numbers. */
static uint64_t rnd_state = 0x2545f4914f6cdd1dULL;

static uint64_t rnd(uint64_t n)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return (rnd_state * 0x2545f4914f6cdd1dULL) % n;
}

enum { SIM_CHATS = 60, SIM_ITEMS = 4000 };

struct sim_chat {
    int pushed;  /* items pushed so far (their n are 0..pushed-1) */
    int head;    /* n of the first item not yet gone */
    bool flying; /* an item is in flight */
    int64_t answer_at;
    bool has_sent;
    int64_t last_start;
    int64_t not_before; /* a 429 for this chat */
    struct msg *msgs[SIM_ITEMS];
};

struct sim {
    struct sim_chat c[SIM_CHATS];
    struct msg pool[SIM_ITEMS];
    int used;
    int64_t global_not_before;
    int64_t starts[SIM_ITEMS * 8];
    size_t nstarts;
    uint64_t sent, failed, dropped, retried, throttled;
};

static void sim_push(struct cca_tgsend *q, struct sim *s, int k)
{
    struct msg *m = &s->pool[s->used++];

    *m = (struct msg){chat_id(k), s->c[k].pushed};
    s->c[k].msgs[s->c[k].pushed++] = m;
    push_ok(q, m);
}

static int sim_index(int64_t chat)
{
    for (int k = 0; k < SIM_CHATS; k++) {
        if (chat_id(k) == chat)
            return k;
    }
    fail();
    return -1;
}

static void sim_check_stats(const struct cca_tgsend *q, const struct sim *s)
{
    struct cca_tgsend_stats st = stats(q);
    size_t queued = 0, chats = 0, flying = 0;

    for (int k = 0; k < SIM_CHATS; k++) {
        queued += (size_t)(s->c[k].pushed - s->c[k].head);
        chats += s->c[k].pushed > s->c[k].head;
        flying += s->c[k].flying;
    }
    assert_int_equal(st.queued, queued);
    assert_int_equal(st.chats, chats);
    assert_int_equal(st.in_flight, flying);
    assert_int_equal(st.sent, s->sent);
    assert_int_equal(st.failed, s->failed);
    assert_int_equal(st.dropped, s->dropped);
    assert_int_equal(st.retried, s->retried);
    assert_int_equal(st.throttled, s->throttled);
}

/* A send started at @now: check it and book its answer. */
static void sim_book(struct sim *s, const struct msg *m, int64_t chat, int64_t now)
{
    int k = sim_index(chat);
    struct sim_chat *c = &s->c[k];

    assert_false(c->flying);                                  /* one in flight per chat */
    assert_ptr_equal(m, c->msgs[c->head]);                    /* FIFO, across retries */
    assert_true(!c->has_sent || now - c->last_start >= 1000); /* spacing */
    assert_true(now >= c->not_before);                        /* the chat's 429 */
    assert_true(now >= s->global_not_before);                 /* a global 429 */
    c->flying = true;
    c->has_sent = true;
    c->last_start = now;
    c->answer_at = now + 10 + (int64_t)rnd(600);
    assert_true(s->nstarts < CCA_ARRAY_SIZE(s->starts));
    s->starts[s->nstarts++] = now;
}

static void sim_answer(struct cca_tgsend *q, struct sim *s, int k, int64_t now)
{
    struct sim_chat *c = &s->c[k];
    size_t left = (size_t)(c->pushed - c->head);
    uint64_t r = rnd(100);
    int64_t id = chat_id(k);

    c->flying = false;
    if (r < 2 && left <= CCA_ARRAY_SIZE(((struct dropped *)NULL)->v)) {
        /* the bot was blocked: everything goes, the one in flight first */
        struct dropped d = {0};

        assert_int_equal(cca_tgsend_drop_chat(q, id, on_drop, &d), left);
        assert_int_equal(d.n, left);
        for (size_t i = 0; i < left; i++)
            assert_ptr_equal(d.v[i], c->msgs[c->head + (int)i]);
        c->head = c->pushed;
        s->dropped += left;
    } else if (r < 10) {
        assert_null(cca_tgsend_done(q, id, CCA_TGSEND_RETRY, 0, false, now));
        s->retried++;
    } else if (r < 15) {
        int64_t ra = (int64_t)rnd(4000);

        assert_null(cca_tgsend_done(q, id, CCA_TGSEND_RETRY_AFTER, ra, false, now));
        c->not_before = now + ra;
        s->throttled++;
    } else if (r < 17) {
        int64_t ra = (int64_t)rnd(2000);

        assert_null(cca_tgsend_done(q, id, CCA_TGSEND_RETRY_AFTER, ra, true, now));
        if (now + ra > s->global_not_before)
            s->global_not_before = now + ra;
        s->throttled++;
    } else if (r < 22) {
        assert_ptr_equal(cca_tgsend_done(q, id, CCA_TGSEND_FAILED, 0, false, now),
                         c->msgs[c->head]);
        c->head++;
        s->failed++;
    } else {
        assert_ptr_equal(cca_tgsend_done(q, id, CCA_TGSEND_SENT, 0, false, now),
                         c->msgs[c->head]);
        c->head++;
        s->sent++;
    }
}

/*
 * 60 chats, 4000 items pushed at random moments, answers after 10..610 ms:
 * 78% sent, 5% failed, 8% transient, 5% 429 for the chat, 2% global 429, 2%
 * blocked. Every send is checked against every rule, and every wait is
 * checked to be exact whenever nothing else happens before it ends.
 */
static void test_random_simulation(void **state)
{
    const struct cca_tgsend_params p = {
        .backoff_base_ms = 200, .max_backoff_ms = 3000, .seed = 7};
    struct cca_tgsend *q = cca_tgsend_new(&p);
    struct sim *s = cca_xcalloc(1, sizeof(*s));
    int64_t now = T0;
    size_t probes = 0;

    (void)state;
    for (int i = 0; i < SIM_ITEMS / 2; i++)
        sim_push(q, s, (int)rnd(SIM_CHATS));
    for (;;) {
        int64_t chat;
        int64_t wait;
        int64_t next_event = INT64_MAX;
        struct msg *m;

        /* more items arrive now and then */
        if (s->used < SIM_ITEMS && rnd(4) == 0)
            sim_push(q, s, (int)rnd(SIM_CHATS));
        m = cca_tgsend_next(q, now, &chat, &wait);
        if (m != NULL) {
            sim_book(s, m, chat, now);
            sim_check_stats(q, s);
            continue;
        }
        for (int k = 0; k < SIM_CHATS; k++) {
            if (s->c[k].flying && s->c[k].answer_at < next_event)
                next_event = s->c[k].answer_at;
        }
        if (wait < 0 && next_event == INT64_MAX) {
            if (s->used == SIM_ITEMS)
                break;
            sim_push(q, s, (int)rnd(SIM_CHATS));
            continue;
        }
        assert_true(wait != 0);
        if (wait > 0 && now + wait <= next_event) {
            /* nothing else happens before the wait ends: it must be exact */
            if (wait > 1)
                expect_wait(q, now + wait - 1, 1);
            now += wait;
            m = cca_tgsend_next(q, now, &chat, &wait);
            assert_non_null(m);
            sim_book(s, m, chat, now);
            probes++;
            continue;
        }
        now = next_event;
        for (int k = 0; k < SIM_CHATS; k++) {
            if (s->c[k].flying && s->c[k].answer_at <= now)
                sim_answer(q, s, k, now);
        }
        sim_check_stats(q, s);
    }
    assert_true(probes > 100);
    assert_int_equal(s->sent + s->failed + s->dropped, SIM_ITEMS);
    assert_true(s->retried > 0 && s->throttled > 0 && s->dropped > 0 && s->failed > 0);
    assert_window(s->starts, s->nstarts, 30, 1000);
    sim_check_stats(q, s);
    cca_tgsend_free(q, NULL, NULL);
    free(s);
}

/* ---- scale ---------------------------------------------------------------------- */

static void test_many_chats(void **state)
{
    enum { CHATS = 5000, PER = 20, N = CHATS * PER };
    const struct cca_tgsend_params p = {.global_per_s = 5000, .global_burst = 100};
    struct cca_tgsend *q = cca_tgsend_new(&p);
    struct msg *m = cca_xcalloc(N, sizeof(*m));
    int64_t *t = cca_xcalloc(N, sizeof(int64_t));
    size_t n = 0;
    int64_t now = T0;
    int *next_n = cca_xcalloc(CHATS, sizeof(int));

    (void)state;
    /* chat by chat this time: the 20 items of chat 0, then chat 1, ... */
    for (int i = 0; i < N; i++) {
        m[i] = (struct msg){i / PER, i % PER};
        push_ok(q, &m[i]);
    }
    assert_int_equal(stats(q).chats, CHATS);
    for (;;) {
        int64_t chat = 0;
        int64_t wait = 0;
        struct msg *it = cca_tgsend_next(q, now, &chat, &wait);

        if (it == NULL) {
            if (wait < 0)
                break;
            assert_true(wait > 0);
            now += wait;
            continue;
        }
        assert_int_equal(it->n, next_n[chat]++); /* FIFO */
        assert_true(n < N);
        t[n++] = now;
        assert_ptr_equal(cca_tgsend_done(q, chat, CCA_TGSEND_SENT, 0, false, now), it);
    }
    assert_int_equal(n, N);
    assert_window(t, n, 100, 20);
    /* 5000/s over 5000 chats: one round a second, 20 rounds */
    assert_true(t[N - 1] - T0 < PER * 1000);
    assert_int_equal(stats(q).queued, 0);
    assert_int_equal(stats(q).chats, 0);
    cca_tgsend_free(q, NULL, NULL);
    free(next_n);
    free(t);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_wait),
        cmocka_unit_test(test_fifo_across_retries),
        cmocka_unit_test(test_spacing_survives_empty_queue),
        cmocka_unit_test(test_global_window),
        cmocka_unit_test(test_flood),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_backoff_jitter),
        cmocka_unit_test(test_jitter_seed),
        cmocka_unit_test(test_drop_chat),
        cmocka_unit_test(test_max_items),
        cmocka_unit_test(test_free_hands_back),
        cmocka_unit_test(test_fairness_order),
        cmocka_unit_test(test_no_starvation_by_new_chats),
        cmocka_unit_test(test_fairness_round_robin),
        cmocka_unit_test(test_random_simulation),
        cmocka_unit_test(test_many_chats),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
