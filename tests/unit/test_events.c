/* SPDX-License-Identifier: MIT */
/* The event log (include/cca/events.h): ids, topics, resume, resync, wakes. */
#include "cca_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/events.h"

#define BIG 262144

/* Everything pending for @sub, appended to @out (NUL-terminated); its length. */
static size_t drain(struct cca_events_sub *sub, char *out, size_t cap, size_t bufsize)
{
    char *buf = malloc(bufsize);
    size_t len = 0;
    size_t n;

    assert_non_null(buf);
    while ((n = cca_events_read(sub, buf, bufsize)) > 0) {
        assert_true(n <= bufsize);
        assert_true(len + n < cap);
        memcpy(out + len, buf, n);
        len += n;
    }
    out[len] = '\0';
    free(buf);
    return len;
}

/* The sequence numbers of the "id:" lines of @text, into @seqs; how many. */
static size_t ids_of(const char *text, const char *epoch, uint64_t *seqs, size_t max)
{
    size_t n = 0;
    size_t elen = strlen(epoch);

    for (const char *p = text; (p = strstr(p, "id: ")) != NULL; p += 4) {
        if (p != text && p[-1] != '\n')
            continue;
        assert_memory_equal(p + 4, epoch, elen);
        assert_true(n < max);
        seqs[n++] = strtoull(p + 4 + elen + 1, NULL, 10);
    }
    return n;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* The log's epoch ("<epoch>" of "<epoch>-0"). */
static void epoch_of(struct cca_events *ev, char out[CCA_EVENTS_ID_MAX])
{
    cca_events_id_format(ev, 0, out);
    *strrchr(out, '-') = '\0';
}

static uint64_t pub(struct cca_events *ev, const char *topic, int i)
{
    json_t *d = json_pack("{si}", "i", i);
    uint64_t seq = cca_events_publish(ev, topic, "test.event", d, 1700000000000 + i);

    json_decref(d);
    return seq;
}

struct waker {
    atomic_int calls;
};

static void count_wake(void *ctx)
{
    struct waker *w = ctx;

    atomic_fetch_add(&w->calls, 1);
}

static struct cca_events_sub *sub1(struct cca_events *ev, const char *topic,
                                   const char *last_id, struct waker *w)
{
    struct cca_events_sub *sub = NULL;
    const char *topics[] = {topic};

    assert_int_equal(
        cca_events_subscribe(ev, topics, 1, last_id, w ? count_wake : NULL, w, &sub),
        CCA_OK);
    return sub;
}

static void test_ids_and_frame(void **state)
{
    struct cca_events *ev = cca_events_new(64, 1 << 20);
    struct cca_events *ev2 = cca_events_new(64, 1 << 20);
    struct cca_events_sub *sub = sub1(ev, "dialog:x", NULL, NULL);
    char epoch[CCA_EVENTS_ID_MAX], epoch2[CCA_EVENTS_ID_MAX], expect[1024], id[64];
    char *out = malloc(BIG);
    json_t *d = json_pack("{ss}", "text", "two\nlines \"quoted\"");

    (void)state;
    epoch_of(ev, epoch);
    epoch_of(ev2, epoch2);
    assert_int_equal(strlen(epoch), 12);
    assert_string_not_equal(epoch, epoch2); /* 48 random bits each */
    assert_int_equal(drain(sub, out, BIG, 4096), strlen("retry: 3000\n\n"));
    assert_string_equal(out, "retry: 3000\n\n");
    assert_int_equal(cca_events_publish(ev, "dialog:x", "message.created", d, 0), 1);
    assert_int_equal(cca_events_publish(ev, "dialog:x", "message.created", NULL, 1), 2);
    assert_int_equal(pub(ev, "other", 3), 3);
    (void)drain(sub, out, BIG, 4096);
    (void)snprintf(expect, sizeof(expect),
                   "id: %s-1\nevent: message.created\ndata: {\"id\":\"%s-1\","
                   "\"type\":\"message.created\",\"topic\":\"dialog:x\","
                   "\"at\":\"1970-01-01T00:00:00.000Z\","
                   "\"data\":{\"text\":\"two\\nlines \\\"quoted\\\"\"}}\n\n"
                   "id: %s-2\nevent: message.created\ndata: {\"id\":\"%s-2\","
                   "\"type\":\"message.created\",\"topic\":\"dialog:x\","
                   "\"at\":\"1970-01-01T00:00:00.001Z\",\"data\":null}\n\n",
                   epoch, epoch, epoch, epoch);
    assert_string_equal(out, expect);
    (void)snprintf(expect, sizeof(expect), "%s-3", epoch);
    assert_string_equal(cca_events_id_format(ev, 3, id), expect);
    json_decref(d);
    free(out);
    cca_events_unsubscribe(sub);
    cca_events_free(ev);
    cca_events_free(ev2);
}

static void test_order_and_topics(void **state)
{
    struct cca_events *ev = cca_events_new(256, 1 << 20);
    const char *ab[] = {"a", "b", "a"}; /* a duplicate is merged */
    struct cca_events_sub *sa = sub1(ev, "a", NULL, NULL);
    struct cca_events_sub *sb = sub1(ev, "b", NULL, NULL);
    struct cca_events_sub *sab = NULL;
    char epoch[CCA_EVENTS_ID_MAX];
    char *out = malloc(BIG);
    uint64_t seqs[256];
    size_t n;

    (void)state;
    epoch_of(ev, epoch);
    assert_int_equal(cca_events_subscribe(ev, ab, 3, NULL, NULL, NULL, &sab), CCA_OK);
    for (int i = 1; i <= 90; i++)
        assert_int_equal(pub(ev, i % 3 == 0 ? "a" : (i % 3 == 1 ? "b" : "c"), i), i);
    (void)drain(sa, out, BIG, 4096);
    n = ids_of(out, epoch, seqs, 256);
    assert_int_equal(n, 30);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seqs[i], 3 * (i + 1));
    assert_int_equal(count_of(out, "\"topic\":\"a\""), 30);
    (void)drain(sb, out, BIG, 4096);
    n = ids_of(out, epoch, seqs, 256);
    assert_int_equal(n, 30);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seqs[i], 3 * i + 1);
    (void)drain(sab, out, BIG, 4096);
    n = ids_of(out, epoch, seqs, 256);
    assert_int_equal(n, 60);
    for (size_t i = 1; i < n; i++)
        assert_true(seqs[i] > seqs[i - 1]);
    assert_int_equal(count_of(out, "\"topic\":\"c\""), 0);
    cca_events_unsubscribe(sa);
    cca_events_unsubscribe(sb);
    cca_events_unsubscribe(sab);
    free(out);
    cca_events_free(ev);
}

static void test_resume_without_gaps(void **state)
{
    struct cca_events *ev = cca_events_new(64, 1 << 20);
    char epoch[CCA_EVENTS_ID_MAX], last[CCA_EVENTS_ID_MAX];
    char *out = malloc(BIG);
    uint64_t seqs[64];
    struct cca_events_sub *sub;
    size_t n;

    (void)state;
    epoch_of(ev, epoch);
    for (int i = 1; i <= 20; i++)
        (void)pub(ev, i % 2 ? "a" : "b", i);
    /* The client saw up to seq 7 (an "a"): it gets 9, 11, ..., 19 and live ones. */
    sub = sub1(ev, "a", cca_events_id_format(ev, 7, last), NULL);
    (void)pub(ev, "a", 21);
    (void)drain(sub, out, BIG, 4096);
    assert_int_equal(count_of(out, "event: resync"), 0);
    n = ids_of(out, epoch, seqs, 64);
    assert_int_equal(n, 7);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seqs[i], 9 + 2 * i);
    cca_events_unsubscribe(sub);
    /* Resuming from the newest id (or from "<epoch>-0" before anything): no replay. */
    sub = sub1(ev, "a", cca_events_id_format(ev, 21, last), NULL);
    assert_string_equal((drain(sub, out, BIG, 4096), out), "retry: 3000\n\n");
    cca_events_unsubscribe(sub);
    sub = sub1(ev, "a", "", NULL); /* empty header: live */
    assert_string_equal((drain(sub, out, BIG, 4096), out), "retry: 3000\n\n");
    cca_events_unsubscribe(sub);
    free(out);
    cca_events_free(ev);
}

static void expect_resync(struct cca_events *ev, const char *last_id, const char *reason)
{
    char epoch[CCA_EVENTS_ID_MAX], want[128];
    char *out = malloc(BIG);
    uint64_t seqs[64];
    struct cca_events_sub *sub = sub1(ev, "a", last_id, NULL);
    uint64_t live;
    struct cca_events_stats st0, st1;
    size_t n;

    epoch_of(ev, epoch);
    cca_events_get_stats(ev, &st0);
    live = pub(ev, "a", 1000);
    (void)drain(sub, out, BIG, 4096);
    assert_memory_equal(out, "retry: 3000\n\nid: ", 17);
    assert_int_equal(count_of(out, "event: resync\n"), 1);
    (void)snprintf(want, sizeof(want), "\"reason\":\"%s\"", reason);
    assert_non_null(strstr(out, want));
    /* The resync's id is the log's newest before the live event, which follows. */
    n = ids_of(out, epoch, seqs, 64);
    assert_int_equal(n, 2);
    assert_int_equal(seqs[0], live - 1);
    assert_int_equal(seqs[1], live);
    cca_events_get_stats(ev, &st1);
    assert_int_equal(st1.resyncs, st0.resyncs + 1);
    cca_events_unsubscribe(sub);
    free(out);
}

static void test_resync(void **state)
{
    struct cca_events *ev = cca_events_new(16, 1 << 20);
    char epoch[CCA_EVENTS_ID_MAX], id[CCA_EVENTS_ID_MAX + 32];

    (void)state;
    epoch_of(ev, epoch);
    for (int i = 1; i <= 40; i++)
        (void)pub(ev, "a", i); /* retained: 25..40 */
    /* Another epoch: the server restarted. */
    (void)snprintf(id, sizeof(id), "%s-30", epoch);
    id[0] = id[0] == '0' ? '1' : '0';
    expect_resync(ev, id, "stale_epoch");
    expect_resync(ev, "garbage", "malformed_id");
    (void)snprintf(id, sizeof(id), "%s-", epoch);
    expect_resync(ev, id, "malformed_id");
    (void)snprintf(id, sizeof(id), "%s-1x", epoch);
    expect_resync(ev, id, "malformed_id");
    (void)snprintf(id, sizeof(id), "%s-99999999999999999999999", epoch);
    expect_resync(ev, id, "malformed_id");
    (void)snprintf(id, sizeof(id), "%s-999", epoch);
    expect_resync(ev, id, "unknown_id");
    /* Evicted: the oldest retained is now well past 3. */
    (void)snprintf(id, sizeof(id), "%s-3", epoch);
    expect_resync(ev, id, "events_lost");
    cca_events_free(ev);
}

static void test_capacity_and_bytes(void **state)
{
    struct cca_events *ev = cca_events_new(16, 1 << 20);
    char id[CCA_EVENTS_ID_MAX], epoch[CCA_EVENTS_ID_MAX];
    char *out = malloc(BIG);
    uint64_t seqs[64];
    struct cca_events_sub *sub;
    json_t *d;

    (void)state;
    for (int i = 1; i <= 20; i++)
        (void)pub(ev, "a", i); /* capacity 16: 5..20 retained */
    sub = sub1(ev, "a", cca_events_id_format(ev, 4, id), NULL);
    (void)drain(sub, out, BIG, 4096);
    assert_int_equal(count_of(out, "event: resync"), 0);
    epoch_of(ev, epoch);
    assert_int_equal(ids_of(out, epoch, seqs, 64), 16);
    assert_int_equal(seqs[0], 5);
    cca_events_unsubscribe(sub);
    sub = sub1(ev, "a", cca_events_id_format(ev, 3, id), NULL);
    (void)drain(sub, out, BIG, 4096);
    assert_int_equal(count_of(out, "reason\":\"events_lost"), 1);
    cca_events_unsubscribe(sub);
    cca_events_free(ev);

    /* max_bytes: ~2 KiB frames in a 20 KiB budget keep 20000 / len of them. */
    ev = cca_events_new(64, 20000);
    epoch_of(ev, epoch);
    {
        char pad[2001];

        memset(pad, 'x', 2000);
        pad[2000] = '\0';
        d = json_pack("{ss}", "pad", pad);
    }
    sub = sub1(ev, "a", NULL, NULL);
    (void)drain(sub, out, BIG, 4096);
    assert_int_equal(cca_events_publish(ev, "a", "big", d, 0), 1);
    {
        size_t flen = drain(sub, out, BIG, 4096); /* the frame of id 1 */
        uint64_t keep = 20000 / (flen + 1);       /* ids 10..30 are one byte longer */

        /* With a stream open the texts are made at publish, so the budget applies. */
        for (int i = 2; i <= 30; i++)
            assert_int_equal(cca_events_publish(ev, "a", "big", d, 0), i);
        cca_events_unsubscribe(sub);
        assert_true(keep >= 8 && keep <= 10);
        sub = sub1(ev, "a", cca_events_id_format(ev, 30 - keep, id), NULL);
        (void)drain(sub, out, BIG, 4096);
        assert_int_equal(count_of(out, "event: resync"), 0);
        assert_int_equal(ids_of(out, epoch, seqs, 64), keep);
        cca_events_unsubscribe(sub);
        sub = sub1(ev, "a", cca_events_id_format(ev, 30 - keep - 1, id), NULL);
        (void)drain(sub, out, BIG, 4096);
        assert_int_equal(count_of(out, "reason\":\"events_lost"), 1);
        cca_events_unsubscribe(sub);
    }
    json_decref(d);
    free(out);
    cca_events_free(ev);
}

/* A live subscriber that falls behind the ring is told to resync; others are not. */
static void test_slow_subscriber(void **state)
{
    struct cca_events *ev = cca_events_new(16, 1 << 20);
    struct cca_events_sub *slow = sub1(ev, "a", NULL, NULL);
    struct cca_events_sub *other = sub1(ev, "b", NULL, NULL);
    char epoch[CCA_EVENTS_ID_MAX];
    char *out = malloc(BIG);
    uint64_t seqs[64];

    (void)state;
    epoch_of(ev, epoch);
    (void)drain(slow, out, BIG, 4096);
    (void)drain(other, out, BIG, 4096);
    for (int i = 1; i <= 20; i++)
        (void)pub(ev, "a", i);
    (void)drain(other, out, BIG, 4096);
    assert_string_equal(out, ""); /* "a" events evicted: none were its own */
    (void)drain(slow, out, BIG, 4096);
    assert_int_equal(count_of(out, "reason\":\"events_lost"), 1);
    assert_int_equal(ids_of(out, epoch, seqs, 64), 1); /* the resync only */
    assert_int_equal(seqs[0], 20);
    (void)pub(ev, "a", 21);
    (void)drain(slow, out, BIG, 4096);
    assert_int_equal(ids_of(out, epoch, seqs, 64), 1);
    assert_int_equal(seqs[0], 21);
    cca_events_unsubscribe(slow);
    cca_events_unsubscribe(other);
    free(out);
    cca_events_free(ev);
}

static void test_small_buffers(void **state)
{
    struct cca_events *ev = cca_events_new(16, 1 << 20);
    struct cca_events_sub *sub = sub1(ev, "a", NULL, NULL);
    char buf[CCA_EVENTS_READ_MIN + 100];
    char *out = malloc(BIG);
    char *frame = malloc(BIG);
    char pad[3001];
    size_t n, len, flen;
    json_t *d;

    (void)state;
    assert_int_equal(cca_events_read(sub, buf, 100), 0); /* below the minimum */
    assert_int_equal(cca_events_read(sub, buf, sizeof(buf)), 13);
    for (int i = 1; i <= 5; i++)
        (void)pub(ev, "a", i); /* each frame ~180 bytes: one per read */
    for (int i = 0; i < 5; i++) {
        n = cca_events_read(sub, buf, CCA_EVENTS_READ_MIN);
        assert_true(n > 100);
        assert_memory_equal(buf, "id: ", 4);
        assert_memory_equal(buf + n - 2, "\n\n", 2);
        assert_int_equal(count_of((buf[n - 1] = '\0', buf), "id: "), 1);
    }
    assert_int_equal(cca_events_read(sub, buf, CCA_EVENTS_READ_MIN), 0);

    /* A frame larger than the buffer goes out in pieces, intact. */
    memset(pad, 'y', 3000);
    pad[3000] = '\0';
    d = json_pack("{ss}", "pad", pad);
    assert_int_equal(cca_events_publish(ev, "a", "big", d, 0), 6);
    len = 0;
    while ((n = cca_events_read(sub, buf, CCA_EVENTS_READ_MIN)) > 0) {
        memcpy(out + len, buf, n);
        len += n;
    }
    out[len] = '\0';
    assert_true(len > 3000);
    assert_memory_equal(out + len - 2, "\n\n", 2);
    assert_int_equal(count_of(out, "id: "), 1);
    flen = len;
    memcpy(frame, out, flen);

    /* ... even when the ring evicts it half-way: then the resync follows. */
    assert_int_equal(cca_events_publish(ev, "a", "big", d, 0), 7);
    len = cca_events_read(sub, out, CCA_EVENTS_READ_MIN);
    for (int i = 0; i < 40; i++)
        (void)pub(ev, "a", i); /* evicts 7 (pinned) and more of "a" */
    while ((n = cca_events_read(sub, buf, CCA_EVENTS_READ_MIN)) > 0) {
        memcpy(out + len, buf, n);
        len += n;
    }
    out[len] = '\0';
    for (char *p = frame; (p = strstr(p, "-6")) != NULL; p++)
        p[1] = '7'; /* the same frame but for its id */
    assert_memory_equal(out, frame, flen);
    assert_non_null(strstr(out + flen, "event: resync\n"));
    json_decref(d);
    free(out);
    free(frame);
    cca_events_unsubscribe(sub);
    cca_events_free(ev);
}

static void test_heartbeat_idle_only(void **state)
{
    struct cca_events *ev = cca_events_new(64, 1 << 20);
    struct waker wa = {0}, wb = {0};
    struct cca_events_sub *a = sub1(ev, "a", NULL, &wa);
    struct cca_events_sub *b = sub1(ev, "b", NULL, &wb);
    char *out = malloc(BIG);

    (void)state;
    (void)drain(a, out, BIG, 4096);
    (void)drain(b, out, BIG, 4096);
    cca_events_heartbeat(ev, 1000, 15000); /* starts the count */
    assert_int_equal(atomic_load(&wa.calls) + atomic_load(&wb.calls), 0);
    (void)pub(ev, "a", 1);
    assert_int_equal(atomic_load(&wa.calls), 1);
    (void)drain(a, out, BIG, 4096);
    cca_events_heartbeat(ev, 10000, 15000); /* a active, b idle 9 s */
    cca_events_heartbeat(ev, 16000, 15000); /* b idle 15 s: beat; a idle 6 s */
    assert_int_equal(atomic_load(&wa.calls), 1);
    assert_int_equal(atomic_load(&wb.calls), 1);
    assert_int_equal(drain(a, out, BIG, 4096), 0);
    (void)drain(b, out, BIG, 4096);
    assert_string_equal(out, ": keep-alive\n\n");
    cca_events_heartbeat(ev, 17000, 15000);
    assert_int_equal(atomic_load(&wb.calls), 1); /* not again before 31 s */
    cca_events_heartbeat(ev, 25000, 15000);      /* a idle since 10 s: beat */
    assert_int_equal(atomic_load(&wa.calls), 2);
    assert_string_equal((drain(a, out, BIG, 4096), out), ": keep-alive\n\n");
    cca_events_heartbeat(ev, 31000, 15000);
    assert_int_equal(atomic_load(&wb.calls), 2);
    /* A keep-alive goes before pending frames, once. */
    (void)pub(ev, "b", 2);
    assert_int_equal(atomic_load(&wb.calls), 2); /* not re-armed: b did not read */
    (void)drain(b, out, BIG, 4096);
    assert_memory_equal(out, ": keep-alive\n\nid: ", 18);
    cca_events_unsubscribe(a);
    cca_events_unsubscribe(b);
    free(out);
    cca_events_free(ev);
}

static void test_wakes(void **state)
{
    struct cca_events *ev = cca_events_new(64, 1 << 20);
    struct waker w = {0};
    struct cca_events_sub *sub = sub1(ev, "a", NULL, &w);
    char buf[4096];

    (void)state;
    (void)pub(ev, "a", 1);
    assert_int_equal(atomic_load(&w.calls), 0); /* not armed before the first read */
    assert_true(cca_events_read(sub, buf, sizeof(buf)) > 0);
    assert_int_equal(cca_events_read(sub, buf, sizeof(buf)), 0);
    for (int i = 0; i < 5; i++)
        (void)pub(ev, "a", i);
    assert_int_equal(atomic_load(&w.calls), 1); /* one wake per burst */
    (void)pub(ev, "b", 1);
    assert_int_equal(atomic_load(&w.calls), 1);
    assert_true(cca_events_read(sub, buf, sizeof(buf)) > 0);
    (void)pub(ev, "a", 1);
    assert_int_equal(atomic_load(&w.calls), 2); /* a read that drained re-arms */
    cca_events_wake_all(ev);
    assert_int_equal(atomic_load(&w.calls), 2); /* not armed */
    (void)cca_events_read(sub, buf, sizeof(buf));
    cca_events_wake_all(ev);
    assert_int_equal(atomic_load(&w.calls), 3);
    cca_events_unsubscribe(sub);
    cca_events_free(ev);
}

/* ---- unsubscribe against concurrent publishers ---------------------------------- */

struct race {
    struct cca_events *ev;
    atomic_bool stop;
    atomic_long published;
};

struct race_ctx {
    atomic_int in_wake;
    atomic_int alive;
    atomic_int calls;
};

static atomic_int late_wakes;

static void race_wake(void *p)
{
    struct race_ctx *c = p;

    atomic_fetch_add(&c->in_wake, 1);
    if (!atomic_load(&c->alive))
        atomic_fetch_add(&late_wakes, 1);
    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_sub(&c->in_wake, 1);
}

static void *publisher(void *p)
{
    struct race *r = p;
    unsigned i = 0;

    while (!atomic_load(&r->stop)) {
        (void)pub(r->ev, i % 2 ? "t" : "u", (int)i);
        atomic_fetch_add(&r->published, 1);
        i++;
    }
    return NULL;
}

static void test_unsubscribe_races(void **state)
{
    struct race r = {.ev = cca_events_new(1024, 1 << 20)};
    pthread_t th[4];
    const char *topics[] = {"t", "u"};
    char buf[8192];
    int woken = 0;

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(th); i++)
        assert_int_equal(pthread_create(&th[i], NULL, publisher, &r), 0);
    while (atomic_load(&r.published) == 0)
        (void)usleep(1000);
    for (int round = 0; round < 3000; round++) {
        struct race_ctx *c = calloc(1, sizeof(*c));
        struct cca_events_sub *sub = NULL;

        atomic_store(&c->alive, 1);
        assert_int_equal(cca_events_subscribe(r.ev, topics, 2, NULL, race_wake, c, &sub),
                         CCA_OK);
        for (int k = 0; k < round % 4; k++)
            while (cca_events_read(sub, buf, sizeof(buf)) > 0)
                ;
        if (round % 8 == 7) /* armed: let a publisher reach it before leaving */
            for (long p0 = atomic_load(&r.published); atomic_load(&r.published) < p0 + 4;)
                ;
        cca_events_unsubscribe(sub);
        /* No wake is running now, and none may start: ASan sees a use after free. */
        assert_int_equal(atomic_load(&c->in_wake), 0);
        atomic_store(&c->alive, 0);
        woken += atomic_load(&c->calls) > 0;
        free(c);
    }
    atomic_store(&r.stop, true);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(th); i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(atomic_load(&late_wakes), 0);
    assert_true(woken > 0); /* the race was exercised */
    {
        struct cca_events_stats st;

        cca_events_get_stats(r.ev, &st);
        assert_int_equal(st.subscribers, 0);
    }
    cca_events_free(r.ev);
}

/* ---- refusals and stats --------------------------------------------------------- */

/* The frame length of a "pad" payload of @n bytes on a fresh log, or 0 if refused. */
static size_t frame_len(size_t n, uint64_t *ret_dropped)
{
    struct cca_events *ev = cca_events_new(16, 1 << 20);
    struct cca_events_sub *sub = sub1(ev, "a", NULL, NULL);
    char *pad = malloc(n + 1);
    char *out = malloc(BIG);
    struct cca_events_stats st;
    json_t *d;
    size_t len = 0;

    memset(pad, 'z', n);
    pad[n] = '\0';
    d = json_pack("{ss}", "pad", pad);
    (void)drain(sub, out, BIG, 32768);
    if (cca_events_publish(ev, "a", "big", d, 0) != 0)
        len = drain(sub, out, BIG, 32768);
    cca_events_get_stats(ev, &st);
    *ret_dropped = st.dropped;
    json_decref(d);
    free(pad);
    free(out);
    cca_events_unsubscribe(sub);
    cca_events_free(ev);
    return len;
}

/*
 * Published while no stream was open, an event's text is made on its first
 * read: a stream resuming gets it whole and in order; one too large by then is
 * skipped (counted dropped) and the next one still arrives.
 */
static void test_made_on_read(void **state)
{
    struct cca_events *ev = cca_events_new(16, 1 << 20);
    char id[CCA_EVENTS_ID_MAX];
    char epoch[CCA_EVENTS_ID_MAX];
    char *out = malloc(BIG);
    char *pad = malloc(CCA_EVENTS_FRAME_MAX + 1);
    uint64_t seqs[8];
    struct cca_events_sub *sub;
    struct cca_events_stats st;
    json_t *big;

    (void)state;
    memset(pad, 'z', CCA_EVENTS_FRAME_MAX);
    pad[CCA_EVENTS_FRAME_MAX] = '\0';
    big = json_pack("{ss}", "pad", pad);
    (void)pub(ev, "a", 1);
    assert_int_equal(cca_events_publish(ev, "a", "big", big, 0), 2); /* accepted: lazy */
    (void)pub(ev, "a", 3);
    sub = sub1(ev, "a", cca_events_id_format(ev, 0, id), NULL);
    (void)drain(sub, out, BIG, 4096);
    epoch_of(ev, epoch);
    assert_int_equal(ids_of(out, epoch, seqs, 8), 2);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 3);
    assert_int_equal(count_of(out, "event: big"), 0);
    cca_events_get_stats(ev, &st);
    assert_int_equal(st.dropped, 1);
    cca_events_unsubscribe(sub);
    json_decref(big);
    free(pad);
    free(out);
    cca_events_free(ev);
}

static void test_refused(void **state)
{
    struct cca_events *ev = cca_events_new(16, 1 << 20);
    struct cca_events_stats st;
    uint64_t dropped;
    size_t base = frame_len(1000, &dropped);
    size_t fit = 1000 + (CCA_EVENTS_FRAME_MAX - base);
    char long_topic[65];

    (void)state;
    assert_int_equal(dropped, 0);
    assert_int_equal(frame_len(fit, &dropped), CCA_EVENTS_FRAME_MAX);
    assert_int_equal(dropped, 0);
    assert_int_equal(frame_len(fit + 1, &dropped), 0);
    assert_int_equal(dropped, 1);

    memset(long_topic, 't', 64);
    long_topic[64] = '\0';
    assert_int_equal(cca_events_publish(ev, long_topic, "x", NULL, 0), 0);
    long_topic[63] = '\0'; /* 63 bytes: fine */
    assert_int_equal(cca_events_publish(ev, long_topic, "x", NULL, 0), 1);
    assert_int_equal(cca_events_publish(ev, "", "x", NULL, 0), 0);
    assert_int_equal(cca_events_publish(ev, "a\nb", "x", NULL, 0), 0);
    assert_int_equal(cca_events_publish(ev, "a", "resync", NULL, 0), 0);
    assert_int_equal(cca_events_publish(ev, "a", "two words", NULL, 0), 0);
    assert_int_equal(cca_events_publish(ev, "a", "x\ndata: y", NULL, 0), 0);
    assert_int_equal(cca_events_publish(ev, "a", "", NULL, 0), 0);
    assert_int_equal(cca_events_publish(ev, "a", "x", NULL, 0), 2);
    cca_events_get_stats(ev, &st);
    assert_int_equal(st.published, 2);
    assert_int_equal(st.dropped, 7);
    {
        struct cca_events_sub *sub = NULL;
        const char *none[] = {"a", "b", "c", "d", "e"};
        const char *bad[] = {"a", ""};

        assert_int_equal(cca_events_subscribe(ev, none, 0, NULL, NULL, NULL, &sub),
                         CCA_ERR_INVALID);
        assert_int_equal(cca_events_subscribe(ev, none, 5, NULL, NULL, NULL, &sub),
                         CCA_ERR_INVALID);
        assert_int_equal(cca_events_subscribe(ev, bad, 2, NULL, NULL, NULL, &sub),
                         CCA_ERR_INVALID);
        assert_null(sub);
    }
    cca_events_free(ev);
}

static void test_stats(void **state)
{
    struct cca_events *ev = cca_events_new(16, 1 << 20);
    struct cca_events_sub *s1 = sub1(ev, "a", NULL, NULL);
    struct cca_events_sub *s2 = sub1(ev, "a", "bogus", NULL);
    struct cca_events_stats st;
    char buf[4096];

    (void)state;
    for (int i = 0; i < 5; i++)
        (void)pub(ev, "a", i);
    (void)cca_events_read(s2, buf, sizeof(buf));
    cca_events_get_stats(ev, &st);
    assert_int_equal(st.subscribers, 2);
    assert_int_equal(st.published, 5);
    assert_int_equal(st.resyncs, 1);
    assert_int_equal(st.dropped, 0);
    cca_events_unsubscribe(s1);
    cca_events_unsubscribe(s2);
    cca_events_unsubscribe(NULL);
    cca_events_get_stats(ev, &st);
    assert_int_equal(st.subscribers, 0);
    cca_events_free(ev);
    cca_events_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_and_frame),
        cmocka_unit_test(test_order_and_topics),
        cmocka_unit_test(test_resume_without_gaps),
        cmocka_unit_test(test_resync),
        cmocka_unit_test(test_capacity_and_bytes),
        cmocka_unit_test(test_slow_subscriber),
        cmocka_unit_test(test_small_buffers),
        cmocka_unit_test(test_heartbeat_idle_only),
        cmocka_unit_test(test_wakes),
        cmocka_unit_test(test_unsubscribe_races),
        cmocka_unit_test(test_made_on_read),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_stats),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
