/* SPDX-License-Identifier: MIT */
#ifndef CCA_EVENTS_H
#define CCA_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"

/*
 * The event log: a bounded, in-memory, shared log of live events, read as
 * Server-Sent Events (WHATWG HTML Living Standard, section 9.2 "Server-sent
 * events") by operators' and customers' front ends, and later by the Telegram
 * bridge.
 *
 * Every event belongs to one topic ("operator:<uuid>", "dialog:<uuid>",
 * "operators", ...) and gets the next sequence number of the log (1, 2, ...).
 * Its id on the wire is "<epoch>-<seq>": the epoch is random per log (per
 * process start), so a Last-Event-ID from before a restart is recognised as
 * stale. Each event is serialised once (at publish when a stream of its topic
 * is open, else on its first read) into its SSE frame:
 *
 *   id: <epoch>-<seq>\n
 *   event: <type>\n
 *   data: {"id":"<epoch>-<seq>","type":..,"topic":..,"at":"<RFC 3339>","data":..}\n
 *   \n
 *
 * The log keeps the newest frames in a ring bounded by a count and a byte
 * total; every subscriber reads them from that one ring through its own
 * cursor (no per-subscriber copies). A subscriber that falls behind the ring,
 * or resumes from an id the log cannot serve, gets an "event: resync" frame:
 * the client must fetch the state over REST again, then keeps receiving live
 * events.
 *
 * Waking: each subscription has a wake callback. It is edge-triggered: it is
 * called once when something becomes pending for a subscriber whose last
 * cca_events_read left nothing pending (a frame of its topics, a heartbeat,
 * cca_events_wake_all), and not again until the subscriber has read
 * everything. So a reader must call cca_events_read until it returns 0
 * before it waits for the next wake.
 *
 * Threads: every function is thread-safe (one mutex per log). Wake callbacks
 * are called with that mutex held, from the thread that publishes, beats or
 * wakes: they must be short, must not block, and must not call any
 * cca_events_* function on the same log. This is what makes unsubscribing
 * safe: cca_events_unsubscribe takes the mutex, so once it returns the
 * callback is not running and is never called again.
 */

#define CCA_EVENTS_TOPIC_MAX  63    /* bytes of a topic, without the NUL */
#define CCA_EVENTS_TYPE_MAX   63    /* bytes of an event type */
#define CCA_EVENTS_FRAME_MAX  16384 /* bytes of one serialised frame */
#define CCA_EVENTS_MAX_TOPICS 4     /* topics of one subscription */
#define CCA_EVENTS_READ_MIN   256   /* smallest buffer cca_events_read serves */
#define CCA_EVENTS_MIN_CAP    16    /* smallest capacity */
#define CCA_EVENTS_RETRY_MS   3000  /* the "retry:" sent first to every client */
/* A stream with nothing to read this long gets a ": keep-alive" comment (WHATWG 9.2.7).
 */
#define CCA_EVENTS_HEARTBEAT_MS 15000
#define CCA_EVENTS_ID_MAX       40 /* "<epoch>-<seq>" plus NUL, upper bound */

struct cca_events;
struct cca_events_sub;

/*
 * cca_events_wake_fn - something is pending for the subscription made with
 * @ctx. Called with the log's mutex held (see above): do not block, do not
 * call cca_events_*.
 */
typedef void (*cca_events_wake_fn)(void *ctx);

/*
 * cca_events_new - a new, empty log keeping at most @capacity events (raised
 * to CCA_EVENTS_MIN_CAP if smaller) and at most @max_bytes bytes of frame
 * text (raised to CCA_EVENTS_FRAME_MAX if smaller, so any accepted frame
 * fits). An event published while no stream of its topic is open keeps its
 * data by reference and gets its text on its first read (a stream resuming
 * with Last-Event-ID), so it counts against @max_bytes only from then on.
 * The epoch is drawn from getrandom(2). Returns a new log (cca_events_free);
 * aborts on out of memory.
 */
struct cca_events *cca_events_new(size_t capacity, size_t max_bytes);

/*
 * cca_events_free - free @ev (NULL is fine). Every subscription must have been
 * unsubscribed before (asserted). Not thread-safe against other calls on @ev.
 */
void cca_events_free(struct cca_events *ev);

/*
 * cca_events_publish - append an event to @ev and wake the subscribers of
 * @topic.
 * @topic: 1..CCA_EVENTS_TOPIC_MAX bytes, no control characters. Borrowed.
 * @type:  the SSE event name, 1..CCA_EVENTS_TYPE_MAX bytes of [A-Za-z0-9._:-],
 *         not "resync" (reserved). Borrowed.
 * @data:  the payload, borrowed (a reference is kept until the event's text
 *         is made, so it must not change after the call; NULL is sent as null).
 * @now_ms: Unix time in milliseconds, the event's "at".
 * Evicts the oldest events beyond the log's capacity or byte budget.
 * Cost: O(1) plus O(subscribers of @topic) (plus, amortised, those of the
 * evicted events' topics); never O(all subscribers).
 * The SSE text is made now when a stream of @topic is open, else on the
 * first read (most events are never read: serialising them was the cost).
 * Returns the event's sequence number (>= 1), or 0 when the event is refused:
 * an invalid @topic or @type, or a frame over CCA_EVENTS_FRAME_MAX bytes made
 * now (counted in stats.dropped; one found too large on its first read is
 * skipped by readers and counted then). Thread-safe.
 */
uint64_t cca_events_publish(struct cca_events *ev, const char *topic, const char *type,
                            json_t *data, int64_t now_ms);

/*
 * cca_events_subscribe - subscribe to the events of @ntopics (1..
 * CCA_EVENTS_MAX_TOPICS) topics @topics (borrowed; duplicates are merged).
 * @last_event_id: NULL (or "") to receive the events published from now on;
 *   else the client's Last-Event-ID header (borrowed): the subscriber then
 *   receives every retained event of its topics after that id, in order,
 *   without gaps. When the id is from another epoch, malformed, not issued
 *   yet, or older than the oldest retained event minus one (events may have
 *   been lost), the first read yields an "event: resync" frame saying why, then
 *   live events from the moment of subscribing.
 * @wake, @ctx: the wake callback (see above) and its argument; @wake may be
 *   NULL (the caller polls).
 * On success *ret_sub is a new subscription (cca_events_unsubscribe).
 * Returns CCA_OK, or CCA_ERR_INVALID (no topic, too many, or an invalid one;
 * *ret_sub untouched). Thread-safe.
 */
CCA_WUR cca_rc cca_events_subscribe(struct cca_events *ev, const char *const *topics,
                                    size_t ntopics, const char *last_event_id,
                                    cca_events_wake_fn wake, void *ctx,
                                    struct cca_events_sub **ret_sub);

/*
 * cca_events_read - copy what is pending for @sub into @buf (@size bytes, at
 * least CCA_EVENTS_READ_MIN) and advance its cursor. In this order: on the
 * first read "retry: 3000\n\n"; a resync frame if one is due; ": keep-alive\n\n"
 * if a heartbeat is pending; then the pending frames of its topics, in order.
 * Only whole frames are copied, except one frame larger than @size at the
 * start of a read: it is copied in pieces over the following reads (kept
 * alive while it lasts, even if the ring evicts it), so a stream never
 * stalls on a small buffer and never receives a broken frame. Nothing is
 * NUL-terminated. Returns the bytes copied, 0 when nothing is pending (the
 * wake callback is then armed). Cost: O(events published after the cursor),
 * never a scan of the whole ring. Thread-safe, but one reader per @sub.
 */
size_t cca_events_read(struct cca_events_sub *sub, char *buf, size_t size);

/*
 * cca_events_heartbeat - for every subscriber that has had nothing to read
 * for @idle_ms (measured on the @now_ms clock, any monotonic one, of the
 * successive calls; the first call starts the count), mark a heartbeat
 * pending (": keep-alive\n\n", an SSE comment: it keeps proxies from closing
 * an idle stream, WHATWG 9.2.7 "Authoring notes") and wake it. The service
 * calls this about every second with CCA_EVENTS_HEARTBEAT_MS (engine.c tick).
 * O(all subscribers). Thread-safe.
 */
void cca_events_heartbeat(struct cca_events *ev, int64_t now_ms, int64_t idle_ms);

/*
 * cca_events_wake_all - wake every subscriber whose wake is armed (for
 * shutdown: its reader then sees the server quiescing and ends the stream).
 * O(all subscribers). Thread-safe.
 */
void cca_events_wake_all(struct cca_events *ev);

/*
 * cca_events_unsubscribe - end @sub and free it (NULL is fine). Once this
 * returns, its wake callback is not running and is never called again. Must
 * not be called from a wake callback. Thread-safe.
 */
void cca_events_unsubscribe(struct cca_events_sub *sub);

/*
 * cca_events_has_subscribers - is a stream open on @topic now (so that an
 * event only worth sending live, such as a queue position, may be skipped).
 * O(1); thread-safe.
 */
bool cca_events_has_subscribers(struct cca_events *ev, const char *topic);

/* struct cca_events_stats - counters of a log since cca_events_new. */
struct cca_events_stats {
    size_t subscribers; /* open subscriptions now */
    uint64_t published; /* events accepted */
    uint64_t resyncs;   /* resync frames sent */
    uint64_t dropped;   /* events refused (oversized frame, invalid topic or type) */
};

/* cca_events_get_stats - fill *ret_stats. Thread-safe. */
void cca_events_get_stats(struct cca_events *ev, struct cca_events_stats *ret_stats);

/*
 * cca_events_id_format - "<epoch>-<seq>" of @ev for @seq into @buf. Returns
 * @buf. For callers that echo an event's id (e.g. in a REST answer).
 */
char *cca_events_id_format(const struct cca_events *ev, uint64_t seq,
                           char buf[CCA_EVENTS_ID_MAX]);

#endif
