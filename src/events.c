/* SPDX-License-Identifier: MIT */
/*
 * The event log (include/cca/events.h): one ring of SSE events (their frames made once),
 * a hash from topic to its subscribers, and per-subscriber cursors.
 *
 * Why this shape:
 * - Frames are built once at publish and shared by every reader; a reader
 *   only memcpy's. A subscription is a cursor and a few flags (~300 bytes), so
 *   thousands of open streams cost no frame buffers.
 * - Sequence numbers are contiguous, so the frame of seq s (if retained) is
 *   slot s % capacity: no search on resume or read.
 * - Each slot keeps its topic's hash next to the frame pointer, so a read
 *   walks the slots after its cursor comparing integers and touches a frame
 *   only when it is one of its topics.
 * - Publish wakes the subscribers of the topic through the topic hash; the
 *   wake is edge-triggered ("armed" flag) so a burst costs one wake per
 *   reader, not one per event.
 * - A subscriber loses events only when the ring evicts a frame of one of its
 *   topics that it has not read; eviction checks exactly those (the evicted
 *   topic's subscribers) and flags them for a resync.
 */
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/events.h"
#include "cca/mem.h"

#define EPOCH_LEN 12 /* hex digits: 48 random bits */

static const char retry_line[] = "retry: 3000\n\n";
static const char keepalive_line[] = ": keep-alive\n\n";

_Static_assert(CCA_EVENTS_RETRY_MS == 3000, "retry_line spells CCA_EVENTS_RETRY_MS");

/*
 * One event; refs: the ring's slot, plus a reader sending it in pieces. Its SSE text is
 * made at publish when a stream of its topic is open, else on the first read (a stream
 * resuming with Last-Event-ID): most events (a dialog without a front end) are never
 * read, and serialising them was the per-turn cost of live events (docs/BENCHMARKS.md,
 * S5). Until then
 * @body holds the envelope without its id, sharing the caller's data.
 */
struct frame {
    uint32_t refs;
    uint32_t len;      /* bytes of @text; 0 until made */
    uint64_t seq;      /* its id's sequence number */
    bool dead;         /* made on a read and over CCA_EVENTS_FRAME_MAX: skipped */
    json_t *body;      /* the envelope until @text is made, then NULL */
    char *text;        /* the frame, NULL until made */
    const char *topic; /* NUL-terminated, in this allocation */
    char topic_buf[];
};

struct slot {
    uint64_t hash; /* of the frame's topic */
    struct frame *f;
};

struct sub_link {
    struct cca_events_sub *sub;
    struct sub_link *prev;
    struct sub_link *next;
};

struct topic {
    struct topic *next; /* bucket chain */
    uint64_t hash;
    struct sub_link *subs;
    char name[CCA_EVENTS_TOPIC_MAX + 1];
};

enum resync_reason {
    RESYNC_NONE,
    RESYNC_STALE_EPOCH,
    RESYNC_MALFORMED,
    RESYNC_UNKNOWN,
    RESYNC_LOST,
};

struct cca_events_sub {
    struct cca_events *ev;
    struct cca_events_sub *prev; /* in ev->subs */
    struct cca_events_sub *next;
    cca_events_wake_fn wake;
    void *ctx;
    uint64_t cursor; /* the last seq consumed (delivered or skipped) */
    int64_t idle_since;
    struct frame *part; /* a frame being sent in pieces, or NULL */
    uint32_t part_off;
    uint8_t ntopics;
    uint8_t resync; /* enum resync_reason due at the next read */
    bool started;   /* the retry line went out */
    bool armed;     /* the last read left nothing pending: wake on the next */
    bool active;    /* got a frame since the last heartbeat */
    bool beat;      /* a keep-alive is pending */
    bool lost;      /* the ring evicted a frame of its topics it had not read */
    uint64_t hash[CCA_EVENTS_MAX_TOPICS];
    struct topic *topic[CCA_EVENTS_MAX_TOPICS];
    struct sub_link link[CCA_EVENTS_MAX_TOPICS];
};

struct cca_events {
    pthread_mutex_t mu;
    char epoch[EPOCH_LEN + 1];
    uint64_t seed; /* of the topic hash */
    struct slot *slots;
    size_t capacity;
    size_t max_bytes;
    size_t count; /* retained frames: seqs first_seq .. next_seq - 1 */
    size_t bytes;
    uint64_t first_seq;
    uint64_t next_seq;
    struct topic **buckets;
    size_t nbuckets; /* a power of two */
    size_t ntopics;
    struct cca_events_sub *subs;
    struct cca_events_stats stats;
};

/* FNV-1a 64, seeded: topics are chosen by clients only through validated ids,
 * but a seed costs nothing and keeps bucket placement unpredictable. */
static uint64_t topic_hash(const struct cca_events *ev, const char *s)
{
    uint64_t h = 14695981039346656037ULL ^ ev->seed;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static bool valid_topic(const char *t)
{
    size_t n = 0;

    if (t == NULL)
        return false;
    for (; t[n] != '\0'; n++) {
        unsigned char c = (unsigned char)t[n];

        if (n >= CCA_EVENTS_TOPIC_MAX || c < 0x20 || c == 0x7f)
            return false;
    }
    return n > 0;
}

static bool valid_type(const char *t)
{
    size_t n = 0;

    if (t == NULL || strcmp(t, "resync") == 0)
        return false;
    for (; t[n] != '\0'; n++) {
        char c = t[n];

        if (n >= CCA_EVENTS_TYPE_MAX)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return n > 0;
}

static void random_bytes(void *buf, size_t n)
{
    if (getrandom(buf, n, GRND_NONBLOCK) != (ssize_t)n) {
        /* Early boot without entropy: an epoch only needs to differ per start. */
        struct timespec ts;
        uint64_t x;

        (void)clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((unsigned char *)buf)[i] = (unsigned char)x;
        }
    }
}

struct cca_events *cca_events_new(size_t capacity, size_t max_bytes)
{
    struct cca_events *ev = cca_xcalloc(1, sizeof(*ev));
    unsigned char r[6];

    if (capacity < CCA_EVENTS_MIN_CAP)
        capacity = CCA_EVENTS_MIN_CAP;
    if (max_bytes < CCA_EVENTS_FRAME_MAX)
        max_bytes = CCA_EVENTS_FRAME_MAX;
    (void)pthread_mutex_init(&ev->mu, NULL);
    random_bytes(r, sizeof(r));
    for (size_t i = 0; i < sizeof(r); i++)
        (void)snprintf(ev->epoch + 2 * i, 3, "%02x", r[i]);
    random_bytes(&ev->seed, sizeof(ev->seed));
    ev->capacity = capacity;
    ev->max_bytes = max_bytes;
    ev->slots = cca_xcalloc(capacity, sizeof(*ev->slots));
    ev->first_seq = 1;
    ev->next_seq = 1;
    ev->nbuckets = 64;
    ev->buckets = cca_xcalloc(ev->nbuckets, sizeof(*ev->buckets));
    return ev;
}

static void frame_unref(struct frame *f)
{
    if (f != NULL && --f->refs == 0) {
        json_decref(f->body);
        free(f->text);
        free(f);
    }
}

/* The envelope of an event: {"type", "topic", "at", "data"} (the id comes first in the
 * text). */
static json_t *envelope(const char *type, const char *topic, int64_t now_ms, json_t *data)
{
    char at[CCA_TIME_LEN];
    json_t *body = json_object();

    cca_time_format(now_ms, at);
    (void)json_object_set_new(body, "type", json_string(type));
    (void)json_object_set_new(body, "topic", json_string(topic));
    (void)json_object_set_new(body, "at", json_string(at));
    (void)json_object_set(body, "data", data != NULL ? data : json_null());
    return body;
}

/*
 * The SSE text of @f's event from its envelope @rest (the compact JSON of the
 * body): "id: I\nevent: T\ndata: {\"id\":\"I\",...}\n\n". Returns a new
 * string and its length, or NULL when over CCA_EVENTS_FRAME_MAX.
 */
static char *frame_text(const struct cca_events *ev, uint64_t seq, const char *type,
                        const char *rest, uint32_t *ret_len)
{
    char id[CCA_EVENTS_ID_MAX];
    size_t max_len = 4 + CCA_EVENTS_ID_MAX + 8 + strlen(type) + 16 + CCA_EVENTS_ID_MAX +
                     2 + strlen(rest) + 2;
    char *text = cca_xmalloc(max_len + 1);
    int n;

    cca_events_id_format(ev, seq, id);
    n = snprintf(text, max_len + 1, "id: %s\nevent: %s\ndata: {\"id\":\"%s\",%s\n\n", id,
                 type, id, rest + 1);
    if (n < 0 || (size_t)n > CCA_EVENTS_FRAME_MAX) {
        free(text);
        return NULL;
    }
    *ret_len = (uint32_t)n;
    return text;
}

/* Make @f's text now (a read under ev->mu). False: too large, counted as dropped. */
static bool frame_make(struct cca_events *ev, struct frame *f)
{
    char *rest;

    if (f->text != NULL)
        return true;
    if (f->dead)
        return false;
    rest = json_dumps(f->body, JSON_COMPACT);
    if (rest != NULL)
        f->text =
            frame_text(ev, f->seq, json_string_value(json_object_get(f->body, "type")),
                       rest, &f->len);
    free(rest);
    json_decref(f->body);
    f->body = NULL;
    if (f->text == NULL) {
        f->dead = true;
        ev->stats.dropped++;
        return false;
    }
    ev->bytes += f->len;
    return true;
}

void cca_events_free(struct cca_events *ev)
{
    if (ev == NULL)
        return;
    /*
     * A subscription left over is a caller bug that freeing cannot make safe: its
     * owner (an open stream) would unsubscribe into freed memory later.
     */
    assert(ev->subs == NULL);
    for (uint64_t s = ev->first_seq; s < ev->next_seq; s++)
        frame_unref(ev->slots[s % ev->capacity].f);
    free(ev->slots);
    free(ev->buckets);
    (void)pthread_mutex_destroy(&ev->mu);
    free(ev);
}

char *cca_events_id_format(const struct cca_events *ev, uint64_t seq,
                           char buf[CCA_EVENTS_ID_MAX])
{
    (void)snprintf(buf, CCA_EVENTS_ID_MAX, "%s-%" PRIu64, ev->epoch, seq);
    return buf;
}

/* ---- topics (under ev->mu) ---------------------------------------------------- */

static struct topic *topic_find(struct cca_events *ev, uint64_t hash, const char *name)
{
    for (struct topic *t = ev->buckets[hash & (ev->nbuckets - 1)]; t != NULL; t = t->next)
        if (t->hash == hash && strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static void topics_grow(struct cca_events *ev)
{
    size_t n = ev->nbuckets * 2;
    struct topic **b = cca_xcalloc(n, sizeof(*b));

    for (size_t i = 0; i < ev->nbuckets; i++) {
        struct topic *t = ev->buckets[i];

        while (t != NULL) {
            struct topic *next = t->next;

            t->next = b[t->hash & (n - 1)];
            b[t->hash & (n - 1)] = t;
            t = next;
        }
    }
    free(ev->buckets);
    ev->buckets = b;
    ev->nbuckets = n;
}

static struct topic *topic_get(struct cca_events *ev, uint64_t hash, const char *name)
{
    struct topic *t = topic_find(ev, hash, name);
    size_t b;

    if (t != NULL)
        return t;
    if (ev->ntopics >= ev->nbuckets)
        topics_grow(ev);
    t = cca_xcalloc(1, sizeof(*t));
    t->hash = hash;
    memcpy(t->name, name, strlen(name) + 1);
    b = hash & (ev->nbuckets - 1);
    t->next = ev->buckets[b];
    ev->buckets[b] = t;
    ev->ntopics++;
    return t;
}

static void topic_drop_if_unused(struct cca_events *ev, struct topic *t)
{
    struct topic **pp = &ev->buckets[t->hash & (ev->nbuckets - 1)];

    if (t->subs != NULL)
        return;
    while (*pp != t)
        pp = &(*pp)->next;
    *pp = t->next;
    ev->ntopics--;
    free(t);
}

/* ---- publish ------------------------------------------------------------------ */

static void wake(struct cca_events_sub *sub)
{
    if (sub->armed && sub->wake != NULL) {
        sub->armed = false;
        sub->wake(sub->ctx);
    }
}

/* Drop the oldest frame; flag the subscribers of its topic that had not read it. */
static void evict_oldest(struct cca_events *ev)
{
    uint64_t seq = ev->first_seq;
    struct slot *sl = &ev->slots[seq % ev->capacity];
    struct topic *t = topic_find(ev, sl->hash, sl->f->topic);

    if (t != NULL)
        for (struct sub_link *l = t->subs; l != NULL; l = l->next)
            if (l->sub->cursor < seq)
                l->sub->lost = true;
    ev->bytes -= sl->f->len;
    frame_unref(sl->f);
    sl->f = NULL;
    ev->count--;
    ev->first_seq++;
}

uint64_t cca_events_publish(struct cca_events *ev, const char *topic, const char *type,
                            json_t *data, int64_t now_ms)
{
    json_t *body = NULL;
    char *rest = NULL;
    struct frame *f = NULL;
    size_t topic_len;
    uint64_t hash;
    uint64_t seq = 0;
    struct topic *t;
    bool live;

    if (!valid_topic(topic) || !valid_type(type)) {
        pthread_mutex_lock(&ev->mu);
        ev->stats.dropped++;
        pthread_mutex_unlock(&ev->mu);
        goto out;
    }
    hash = topic_hash(ev, topic);
    pthread_mutex_lock(&ev->mu);
    t = topic_find(ev, hash, topic);
    live = t != NULL && t->subs != NULL;
    pthread_mutex_unlock(&ev->mu);
    body = envelope(type, topic, now_ms, data);
    /* A stream is open: it reads it at once, so make the text now, outside the lock. */
    if (live) {
        rest = json_dumps(body, JSON_COMPACT);
        if (rest == NULL) { /* not serialisable: refused like an oversized frame */
            pthread_mutex_lock(&ev->mu);
            ev->stats.dropped++;
            pthread_mutex_unlock(&ev->mu);
            goto out;
        }
    }
    topic_len = strlen(topic);
    f = cca_xcalloc(1, sizeof(*f) + topic_len + 1);
    f->refs = 1;
    memcpy(f->topic_buf, topic, topic_len + 1);
    f->topic = f->topic_buf;

    pthread_mutex_lock(&ev->mu);
    f->seq = ev->next_seq;
    if (rest != NULL) {
        f->text = frame_text(ev, f->seq, type, rest, &f->len);
        if (f->text == NULL) {
            ev->stats.dropped++;
            pthread_mutex_unlock(&ev->mu);
            goto out;
        }
    } else {
        f->body = body; /* made on the first read, if any */
        body = NULL;
    }
    while (ev->count > 0 &&
           (ev->count >= ev->capacity || ev->bytes + f->len > ev->max_bytes))
        evict_oldest(ev);
    seq = ev->next_seq++;
    ev->slots[seq % ev->capacity] = (struct slot){hash, f};
    ev->count++;
    ev->bytes += f->len;
    ev->stats.published++;
    f = NULL;
    t = topic_find(ev, hash, topic);
    if (t != NULL)
        for (struct sub_link *l = t->subs; l != NULL; l = l->next) {
            l->sub->active = true;
            wake(l->sub);
        }
    pthread_mutex_unlock(&ev->mu);
out:
    frame_unref(f);
    free(rest);
    json_decref(body);
    return seq;
}

/* ---- subscribe ---------------------------------------------------------------- */

/*
 * Where a Last-Event-ID leaves @sub: *ret_cursor and RESYNC_NONE, or a reason.
 * Called under ev->mu.
 */
static enum resync_reason resume_point(struct cca_events *ev, const char *id,
                                       uint64_t *ret_cursor)
{
    const char *dash = strchr(id, '-');
    uint64_t seq = 0;
    const char *p;
    bool hex = dash != NULL && dash - id == EPOCH_LEN;

    for (p = id; hex && p < dash; p++)
        hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
    if (!hex || dash[1] == '\0' || strlen(dash + 1) > 20)
        return RESYNC_MALFORMED;
    for (p = dash + 1; *p != '\0'; p++) {
        unsigned d = (unsigned)(*p - '0');

        if (d > 9 || seq > (UINT64_MAX - d) / 10)
            return RESYNC_MALFORMED;
        seq = seq * 10 + d;
    }
    if (memcmp(id, ev->epoch, EPOCH_LEN) != 0)
        return RESYNC_STALE_EPOCH;
    if (seq >= ev->next_seq)
        return RESYNC_UNKNOWN;
    if (seq + 1 < ev->first_seq)
        return RESYNC_LOST;
    *ret_cursor = seq;
    return RESYNC_NONE;
}

cca_rc cca_events_subscribe(struct cca_events *ev, const char *const *topics,
                            size_t ntopics, const char *last_event_id,
                            cca_events_wake_fn wake_fn, void *ctx,
                            struct cca_events_sub **ret_sub)
{
    struct cca_events_sub *sub = NULL;
    uint64_t hashes[CCA_EVENTS_MAX_TOPICS];

    if (topics == NULL || ntopics == 0 || ntopics > CCA_EVENTS_MAX_TOPICS)
        return CCA_ERR_INVALID;
    for (size_t i = 0; i < ntopics; i++) {
        if (!valid_topic(topics[i]))
            return CCA_ERR_INVALID;
        hashes[i] = topic_hash(ev, topics[i]);
    }
    sub = cca_xcalloc(1, sizeof(*sub));
    sub->ev = ev;
    sub->wake = wake_fn;
    sub->ctx = ctx;
    sub->idle_since = INT64_MIN;
    pthread_mutex_lock(&ev->mu);
    for (size_t i = 0; i < ntopics; i++) {
        struct topic *t = topic_get(ev, hashes[i], topics[i]);
        struct sub_link *l;
        bool dup = false;

        for (size_t j = 0; j < sub->ntopics; j++)
            dup = dup || sub->topic[j] == t;
        if (dup)
            continue;
        l = &sub->link[sub->ntopics];
        l->sub = sub;
        l->next = t->subs;
        if (t->subs != NULL)
            t->subs->prev = l;
        t->subs = l;
        sub->topic[sub->ntopics] = t;
        sub->hash[sub->ntopics] = t->hash;
        sub->ntopics++;
    }
    sub->cursor = ev->next_seq - 1;
    if (last_event_id != NULL && last_event_id[0] != '\0') {
        sub->resync = (uint8_t)resume_point(ev, last_event_id, &sub->cursor);
        if (sub->resync != RESYNC_NONE)
            sub->cursor = ev->next_seq - 1; /* live from now, after the resync */
    }
    sub->next = ev->subs;
    if (ev->subs != NULL)
        ev->subs->prev = sub;
    ev->subs = sub;
    ev->stats.subscribers++;
    pthread_mutex_unlock(&ev->mu);
    *ret_sub = sub;
    return CCA_OK;
}

void cca_events_unsubscribe(struct cca_events_sub *sub)
{
    struct cca_events *ev;

    if (sub == NULL)
        return;
    ev = sub->ev;
    pthread_mutex_lock(&ev->mu);
    for (size_t i = 0; i < sub->ntopics; i++) {
        struct sub_link *l = &sub->link[i];

        if (l->prev != NULL)
            l->prev->next = l->next;
        else
            sub->topic[i]->subs = l->next;
        if (l->next != NULL)
            l->next->prev = l->prev;
        topic_drop_if_unused(ev, sub->topic[i]);
    }
    if (sub->prev != NULL)
        sub->prev->next = sub->next;
    else
        ev->subs = sub->next;
    if (sub->next != NULL)
        sub->next->prev = sub->prev;
    frame_unref(sub->part);
    ev->stats.subscribers--;
    pthread_mutex_unlock(&ev->mu);
    free(sub);
}

/* ---- read --------------------------------------------------------------------- */

static bool sub_wants(const struct cca_events_sub *sub, const struct slot *sl)
{
    for (size_t i = 0; i < sub->ntopics; i++)
        if (sub->hash[i] == sl->hash && strcmp(sl->f->topic, sub->topic[i]->name) == 0)
            return true;
    return false;
}

static size_t resync_frame(const struct cca_events_sub *sub, enum resync_reason why,
                           char *buf, size_t size)
{
    static const char *const reasons[][2] = {
        [RESYNC_STALE_EPOCH] = {"stale_epoch",
                                "the Last-Event-ID is from before a server restart"},
        [RESYNC_MALFORMED] = {"malformed_id", "the Last-Event-ID is not an event id"},
        [RESYNC_UNKNOWN] = {"unknown_id", "the Last-Event-ID was never issued"},
        [RESYNC_LOST] = {"events_lost", "events after the last one received are gone"},
    };
    char id[CCA_EVENTS_ID_MAX];
    int n = snprintf(
        buf, size,
        "id: %s\nevent: resync\ndata: {\"type\":\"resync\",\"reason\":\"%s\","
        "\"detail\":\"%s; fetch the state again\"}\n\n",
        cca_events_id_format(sub->ev, sub->cursor, id), reasons[why][0], reasons[why][1]);

    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

size_t cca_events_read(struct cca_events_sub *sub, char *buf, size_t size)
{
    struct cca_events *ev = sub->ev;
    size_t out = 0;
    bool more = false;

    if (size < CCA_EVENTS_READ_MIN)
        return 0;
    pthread_mutex_lock(&ev->mu);
    /* The rest of a frame sent in pieces comes before anything else. */
    if (sub->part != NULL) {
        size_t left = sub->part->len - sub->part_off;
        size_t n = left < size ? left : size;

        memcpy(buf, sub->part->text + sub->part_off, n);
        out = n;
        sub->part_off += (uint32_t)n;
        if (sub->part_off < sub->part->len) {
            more = true;
            goto out;
        }
        frame_unref(sub->part);
        sub->part = NULL;
        sub->part_off = 0;
    }
    /* The fixed items below are short: they fit once READ_MIN bytes are free. */
    if (size - out < CCA_EVENTS_READ_MIN) {
        more = true;
        goto out;
    }
    if (!sub->started) {
        memcpy(buf + out, retry_line, sizeof(retry_line) - 1);
        out += sizeof(retry_line) - 1;
        sub->started = true;
    }
    if (sub->lost && sub->resync == RESYNC_NONE) {
        sub->resync = RESYNC_LOST;
        sub->cursor = ev->next_seq - 1; /* the client refetches: live from here */
    }
    if (sub->resync != RESYNC_NONE) {
        out += resync_frame(sub, (enum resync_reason)sub->resync, buf + out, size - out);
        sub->resync = RESYNC_NONE;
        sub->lost = false;
        ev->stats.resyncs++;
    }
    if (sub->beat) {
        memcpy(buf + out, keepalive_line, sizeof(keepalive_line) - 1);
        out += sizeof(keepalive_line) - 1;
        sub->beat = false;
    }
    /* Frames of other topics evicted since the last read: nothing to skip. */
    if (sub->cursor + 1 < ev->first_seq)
        sub->cursor = ev->first_seq - 1;
    for (uint64_t s = sub->cursor + 1; s < ev->next_seq; s++) {
        const struct slot *sl = &ev->slots[s % ev->capacity];

        if (sub_wants(sub, sl) && frame_make(ev, sl->f)) {
            struct frame *f = sl->f;

            if (f->len <= size - out) {
                memcpy(buf + out, f->text, f->len);
                out += f->len;
            } else if (out == 0) {
                /* Larger than the whole buffer: send it in pieces, pinned. */
                memcpy(buf, f->text, size);
                out = size;
                f->refs++;
                sub->part = f;
                sub->part_off = (uint32_t)size;
                sub->cursor = s;
                more = true;
                break;
            } else {
                more = true;
                break;
            }
            sub->active = true;
        }
        sub->cursor = s;
    }
out:
    /* Nothing left behind: the next thing that becomes pending wakes the reader. */
    sub->armed = !more;
    pthread_mutex_unlock(&ev->mu);
    return out;
}

/* ---- heartbeats and stats ------------------------------------------------------- */

void cca_events_heartbeat(struct cca_events *ev, int64_t now_ms, int64_t idle_ms)
{
    pthread_mutex_lock(&ev->mu);
    for (struct cca_events_sub *sub = ev->subs; sub != NULL; sub = sub->next) {
        if (sub->idle_since == INT64_MIN || sub->active) {
            sub->idle_since = now_ms;
            sub->active = false;
        } else if (now_ms - sub->idle_since >= idle_ms) {
            sub->idle_since = now_ms;
            sub->beat = true;
            wake(sub);
        }
    }
    pthread_mutex_unlock(&ev->mu);
}

void cca_events_wake_all(struct cca_events *ev)
{
    pthread_mutex_lock(&ev->mu);
    for (struct cca_events_sub *sub = ev->subs; sub != NULL; sub = sub->next)
        wake(sub);
    pthread_mutex_unlock(&ev->mu);
}

bool cca_events_has_subscribers(struct cca_events *ev, const char *topic)
{
    struct topic *t;
    bool any;

    if (!valid_topic(topic))
        return false;
    pthread_mutex_lock(&ev->mu);
    t = topic_find(ev, topic_hash(ev, topic), topic);
    any = t != NULL && t->subs != NULL;
    pthread_mutex_unlock(&ev->mu);
    return any;
}

void cca_events_get_stats(struct cca_events *ev, struct cca_events_stats *ret_stats)
{
    pthread_mutex_lock(&ev->mu);
    *ret_stats = ev->stats;
    pthread_mutex_unlock(&ev->mu);
}
