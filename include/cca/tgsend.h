/* SPDX-License-Identifier: MIT */
#ifndef CCA_TGSEND_H
#define CCA_TGSEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cca/common.h"

/*
 * The Telegram send scheduler: which outgoing message may go now, so that the
 * bot keeps to the Bot API's limits (https://core.telegram.org/bots/faq, "My
 * bot is hitting limits, how do I avoid this?": about one message per second
 * in a chat, about 30 per second overall) and honours 429 retry_after, while
 * every chat's messages leave in the order they were queued.
 *
 * Model: one FIFO per chat; at most one request in flight per chat (so order
 * holds across retries); a chat may start a send when its own spacing has
 * passed (per_chat_interval_ms after its previous send started, also when its
 * queue emptied in between) and the global limit allows: at most global_burst
 * sends start in any window of global_burst / global_per_s seconds (a sliding
 * window, not a token bucket: with the defaults at most 30 in any second,
 * where a bucket of 30 refilled at 30/s would let 59 go in the second after an
 * idle spell). Chats take turns fairly: the chat that has waited longest goes
 * first (round-robin in order of readiness), so one busy chat cannot starve
 * the others. A 429 pauses the chat for retry_after (and, when @global is set,
 * every chat: the Bot API's flood wait is per bot); a retryable failure backs
 * off the chat exponentially (full jitter: uniform in [0, min(max_backoff_ms,
 * backoff_base_ms * 2^(n-1))] for the n-th failure of the item, from a
 * generator seeded with @seed) and keeps the item at the head; a blocked chat
 * is dropped with everything queued for it. Retries keep the per-chat spacing.
 *
 * The scheduler holds opaque items (the caller's pointers) and times given by
 * the caller (monotonic milliseconds), so it is pure and testable with a fake
 * clock. Not thread-safe: one owner thread (telegram.c's).
 *
 * Costs: push O(1) amortised, next and done O(log chats), drop_chat
 * O(items of the chat + log chats); memory O(chats with something queued or
 * sent within the last interval + items + global_burst).
 */

struct cca_tgsend;

/*
 * struct cca_tgsend_params - limits; a zero (or negative) field takes its default.
 * @global_per_s:         sends per second overall, in the long run (30).
 * @global_burst:         sends allowed at once: at most this many start in any
 *                        window of global_burst / global_per_s s (30; rounded
 *                        down, at most 100000).
 * @per_chat_interval_ms: least time between two sends to one chat (1000).
 * @backoff_base_ms:      first backoff after a retryable failure (500).
 * @max_backoff_ms:       cap of the backoff (60000): no retry waits longer.
 * @max_items:            items queued in all (100000): cca_tgsend_push refuses more.
 * @seed:                 seed of the jitter (0: fixed default), for tests.
 */
struct cca_tgsend_params {
    double global_per_s;
    double global_burst;
    int64_t per_chat_interval_ms;
    int64_t backoff_base_ms;
    int64_t max_backoff_ms;
    size_t max_items;
    uint64_t seed;
};

/* cca_tgsend_new - a new, empty scheduler (copies @p; NULL: defaults). Never NULL. */
struct cca_tgsend *cca_tgsend_new(const struct cca_tgsend_params *p);

/*
 * cca_tgsend_free - free @q; the items still queued, those in flight
 * included, are handed to @drop (may be NULL) one by one first, each chat's
 * in order. Accepts NULL.
 */
void cca_tgsend_free(struct cca_tgsend *q, void (*drop)(void *ctx, void *item),
                     void *ctx);

/*
 * cca_tgsend_push - queue @item (borrowed until it comes back from
 * cca_tgsend_next/_drop_chat/_free) at the tail of chat @chat_id's FIFO.
 * Returns CCA_OK, CCA_ERR_LIMIT when max_items are queued (in flight
 * included), or CCA_ERR_INVALID when @item is NULL (in both cases the item is
 * not taken). O(1) amortised.
 */
cca_rc cca_tgsend_push(struct cca_tgsend *q, int64_t chat_id, void *item) CCA_WUR;

/*
 * cca_tgsend_next - the next item that may be sent at @now_ms (monotonic
 * ms; non-decreasing), now marked in flight (its chat sends nothing else
 * until cca_tgsend_done), its chat in *ret_chat_id and 0 in *ret_wait_ms.
 * The item stays borrowed by the scheduler until cca_tgsend_done hands it
 * back. NULL when nothing may go now; *ret_wait_ms is then the exact time
 * until something may (>= 1; a push or a done may shorten it), or -1 when
 * nothing is queued or everything queued waits for an answer in flight.
 * Either output may be NULL. Call it in a loop until it returns NULL.
 * O(log chats).
 */
void *cca_tgsend_next(struct cca_tgsend *q, int64_t now_ms, int64_t *ret_chat_id,
                      int64_t *ret_wait_ms);

/* How a send ended (the caller's reading of cca_tg_classify, tgapi.h). */
enum cca_tgsend_result {
    CCA_TGSEND_SENT,        /* delivered: the item leaves the queue */
    CCA_TGSEND_RETRY_AFTER, /* 429: the item stays first; wait @retry_after_ms */
    CCA_TGSEND_RETRY,       /* transient: the item stays first; back off */
    CCA_TGSEND_FAILED,      /* rejected for good: the item leaves the queue */
};

/*
 * cca_tgsend_done - the answer for the in-flight item of chat @chat_id
 * arrived at @now_ms. @retry_after_ms: for RETRY_AFTER, the wait the Bot API
 * asked for (>= 0); @global: it applies to every chat. For SENT and FAILED
 * the item is no longer the scheduler's (returns it); for the retries it
 * stays queued (returns NULL). Also returns NULL when the chat has nothing in
 * flight (ignored). The answer is matched by chat only: after
 * cca_tgsend_drop_chat took an in-flight item, the caller must not report
 * that item's answer (a fresh push to the chat may be in flight by then).
 * An out-of-range @result is taken as CCA_TGSEND_RETRY. O(log chats).
 */
void *cca_tgsend_done(struct cca_tgsend *q, int64_t chat_id,
                      enum cca_tgsend_result result, int64_t retry_after_ms, bool global,
                      int64_t now_ms);

/*
 * cca_tgsend_drop_chat - forget chat @chat_id (blocked the bot): every
 * queued item, the one in flight included, is handed to @drop (may be NULL).
 * Returns how many were dropped. A later push for the chat starts afresh
 * (no backoff, no pause), except that the per-chat spacing since its last
 * send still holds.
 */
size_t cca_tgsend_drop_chat(struct cca_tgsend *q, int64_t chat_id,
                            void (*drop)(void *ctx, void *item), void *ctx);

/* struct cca_tgsend_stats - counts for metrics. */
struct cca_tgsend_stats {
    size_t queued;    /* items queued, those in flight included */
    size_t chats;     /* chats with something queued */
    size_t in_flight; /* items in flight */
    uint64_t sent, retried, throttled, failed, dropped; /* since new */
};

/* cca_tgsend_get_stats - fill *ret. */
void cca_tgsend_get_stats(const struct cca_tgsend *q, struct cca_tgsend_stats *ret);

#endif
