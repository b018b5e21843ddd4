/* SPDX-License-Identifier: MIT */
#ifndef CCA_ASSIGN_H
#define CCA_ASSIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cca/common.h"
#include "cca/operator.h"

/*
 * The pure rules of the human-operator side (docs/OPERATORS.md): who owns a
 * dialog and how that may change, which operator gets a waiting dialog, the
 * order of the queue and the estimated wait. Every rule is one pure function
 * so that it can be documented once and unit-tested for every case
 * (tests/unit/test_assign.c).
 *
 * Nothing here allocates, locks, reads a clock or logs: time is always a
 * parameter (Unix milliseconds), and the only state written is what the caller
 * passes in (a PRNG state, a running mean). So every function is thread-safe
 * as long as two threads do not pass the same writable object at once.
 */

/* ---- ownership of a dialog ------------------------------------------------------- */

/*
 * enum cca_owner - who answers the customer of a dialog right now.
 * The values are stored (the dialog record), so they never change meaning.
 */
enum cca_owner {
    CCA_OWNER_AGENT = 0,    /* the AI agents (router.h): the default */
    CCA_OWNER_QUEUE = 1,    /* waiting for a human operator */
    CCA_OWNER_OPERATOR = 2, /* one human operator holds it */
    CCA_OWNER__COUNT,
};

/*
 * enum cca_owner_event - what happens to a dialog's ownership.
 * @CCA_OWNER_EV_ENQUEUE:  the customer asked for a human (or an agent
 *                         escalated) and nobody took it at once.
 * @CCA_OWNER_EV_ASSIGN:   an operator gets the dialog: pushed by the
 *                         assignment rule (cca_assign_pick) or pulled by the
 *                         operator ("take"), from the queue or, when an
 *                         operator is free at once, straight from the agents.
 * @CCA_OWNER_EV_REQUEUE:  taken back from its operator (reply timeout, the
 *                         operator went offline or was revoked).
 * @CCA_OWNER_EV_TRANSFER: the operator hands it to another operator.
 * @CCA_OWNER_EV_HANDBACK: back to the AI agents (the operator is done, or
 *                         the customer stopped waiting).
 */
enum cca_owner_event {
    CCA_OWNER_EV_ENQUEUE = 0,
    CCA_OWNER_EV_ASSIGN = 1,
    CCA_OWNER_EV_REQUEUE = 2,
    CCA_OWNER_EV_TRANSFER = 3,
    CCA_OWNER_EV_HANDBACK = 4,
    CCA_OWNER_EV__COUNT,
};

/*
 * cca_owner_name - "agent", "queue" or "operator" for @owner.
 * Returns a static string, or NULL for a value outside the enum. Thread-safe.
 */
const char *cca_owner_name(enum cca_owner owner);

/*
 * cca_owner_parse - map @s (NUL-terminated; exact, lower case, as written by
 * cca_owner_name) to an owner. Returns true and sets *ret_owner on a match;
 * false for NULL or any other string (*ret_owner untouched). Thread-safe.
 */
bool cca_owner_parse(const char *s, enum cca_owner *ret_owner);

/*
 * cca_owner_event_name - "enqueue", "assign", "requeue", "transfer" or
 * "handback" for @ev. Returns a static string, or NULL for a value outside the
 * enum. Thread-safe.
 */
const char *cca_owner_event_name(enum cca_owner_event ev);

/*
 * cca_owner_next - the ownership state machine, as one table.
 * @from:   the current owner.
 * @ev:     the event.
 * @ret_to: where the new owner is written (must not be NULL).
 *
 * The allowed transitions, and nothing else:
 *
 *   from \ event | enqueue | assign   | requeue | transfer | handback
 *   -------------+---------+----------+---------+----------+---------
 *   agent        | queue   | operator |    -    |    -     |    -
 *   queue        |    -    | operator |    -    |    -     |  agent
 *   operator     |    -    |    -    |  queue  | operator |  agent
 *
 * agent --assign--> operator is the escalation that finds an operator free at
 * once (the dialog never waits in the queue); queue --assign--> operator is
 * both the push assignment and an operator's pull. operator --transfer-->
 * operator changes the operator, not the owner kind. A dialog held by an
 * operator is never assigned again without a requeue or a transfer, so two
 * operators can never both believe they hold it.
 *
 * Returns true and sets *ret_to for an allowed pair; false for every other
 * pair and for out-of-range values of @from or @ev (*ret_to untouched).
 * Thread-safe.
 */
bool cca_owner_next(enum cca_owner from, enum cca_owner_event ev, enum cca_owner *ret_to);

/* ---- the assignment rule --------------------------------------------------------- */

/*
 * CCA_ASSIGN_RECENT_MS - an operator whose client was seen within this many
 * milliseconds counts as "recently online" (seed 001, find_available_support:
 * "available and online within the last 5 minutes" first).
 */
#define CCA_ASSIGN_RECENT_MS (5 * 60 * 1000)

/*
 * struct cca_assign_candidate - what the rule needs to know of one operator.
 * @status:         their own availability (operator.h).
 * @max_dialogs:    how many dialogs they hold at most at once (0: none).
 * @open_dialogs:   how many they hold now.
 * @languages:      CCA_OPERATOR_LANG_BIT mask of the languages they answer
 *                  in; 0 means every language.
 * @skills:         CCA_OPERATOR_SKILL_BIT mask of their skills; 0 means every
 *                  skill.
 * @last_seen_ms:   Unix ms when their client was last seen (any request or a
 *                  live event stream); 0 = never.
 * @last_closed_ms: Unix ms when they last closed (handed back) a dialog;
 *                  0 = never.
 */
struct cca_assign_candidate {
    enum cca_operator_status status;
    unsigned max_dialogs;
    unsigned open_dialogs;
    uint32_t languages;
    uint32_t skills;
    int64_t last_seen_ms;
    int64_t last_closed_ms;
};

/*
 * struct cca_assign_need - what a waiting dialog needs of its operator.
 * @language: one CCA_OPERATOR_LANG_BIT (the dialog's language); 0 = any.
 * @skill:    one CCA_OPERATOR_SKILL_BIT (the agent that escalated, e.g.
 *            sales); 0 = any.
 * A value with several bits set matches a candidate holding any one of them.
 */
struct cca_assign_need {
    uint32_t language;
    uint32_t skill;
};

/*
 * cca_assign_eligible - may candidate @c get a new dialog with needs @need?
 * @c:    the candidate (borrowed; NULL is never eligible).
 * @need: the dialog's needs (borrowed; NULL means any language and skill).
 *
 * Eligible when all of these hold:
 *   - @c->status is CCA_OPERATOR_AVAILABLE (busy and offline operators keep
 *     what they hold but take nothing new, seed 002);
 *   - @c->open_dialogs < @c->max_dialogs (a free seat);
 *   - the language matches: @need->language is 0, or @c->languages is 0
 *     (every language), or they share a bit;
 *   - the skill matches, by the same rule on @need->skill and @c->skills.
 * Returns true when eligible. Thread-safe.
 */
bool cca_assign_eligible(const struct cca_assign_candidate *c,
                         const struct cca_assign_need *need);

/*
 * cca_assign_compare - which of two (eligible) candidates the rule prefers.
 * @a, @b:   the candidates (borrowed; must not be NULL).
 * @now_ms:  the current time, Unix ms (injected: the rule reads no clock).
 *
 * The criteria, in order; the first that differs decides:
 *   1. recently online first: last seen within the last CCA_ASSIGN_RECENT_MS
 *      (now_ms - last_seen_ms <= CCA_ASSIGN_RECENT_MS; a last_seen_ms in the
 *      future, clock skew, counts as recent; 0 never does) before not. Seed
 *      001 ranks "available and online within 5 minutes" first: an operator
 *      who closed the tab is not really there even if marked available.
 *   2. fewer open dialogs first: real load balancing, so one operator does
 *      not collect every dialog while others sit idle (chatwoot/chatwoot issue
 *      #11034: with auto-assignment and a per-agent chat limit, one agent
 *      got more chats instead of an even spread over the online agents).
 *   3. the longest since their last dialog closed first (seed 001's last
 *      step: "those who finished a dialog long ago"; it spreads dialogs over
 *      equally loaded operators and lets the one just done breathe); never
 *      closed (0) counts as the longest ago.
 * Returns -1 when @a is preferred, 1 when @b is, 0 when they tie on all three
 * (cca_assign_pick then chooses at random). Eligibility is not looked at.
 * Thread-safe.
 */
int cca_assign_compare(const struct cca_assign_candidate *a,
                       const struct cca_assign_candidate *b, int64_t now_ms);

/*
 * cca_assign_pick - the operator a waiting dialog goes to.
 * @c:      @n candidates (borrowed; may be NULL when @n is 0).
 * @n:      the number of candidates (at most LONG_MAX).
 * @need:   the dialog's needs (borrowed; NULL means any).
 * @now_ms: the current time, Unix ms.
 * @rng:    the state of the tie-break PRNG (splitmix64; Steele, Lea and Flood,
 *          "Fast Splittable Pseudorandom Number Generators", OOPSLA 2014; the
 *          public-domain reference code by S. Vigna, prng.di.unimi.it). Any
 *          value, zero included, is a valid seed; the caller seeds it (e.g.
 *          from getrandom) and keeps it. Updated in place, and only when two
 *          eligible candidates tie during the scan, so a pick in which every
 *          eligible candidate ranks differently leaves it as it was. NULL makes
 *          the tie-break deterministic: the lowest index among the tied.
 *
 * One pass, O(@n), no allocation: among the eligible candidates
 * (cca_assign_eligible) keeps the best by cca_assign_compare and, among those
 * tied with the best, a uniformly random one (seed 000 gives a dialog to a
 * random free operator; here chance only decides between operators the rule
 * cannot tell apart). The uniform choice is reservoir sampling with a
 * reservoir of one (Vitter, "Random Sampling with a Reservoir", ACM TOMS 11(1),
 * 1985, algorithm R; Knuth, TAOCP vol. 2, 3.4.2): the k-th tied candidate seen
 * replaces the kept one with probability 1/k, which leaves each of the K tied
 * candidates kept with probability 1/K. A strictly better candidate restarts
 * the count. The draw is a 64-bit output modulo k (bias below k / 2^64).
 *
 * Returns the index of the chosen candidate, or -1 when none is eligible.
 * Thread-safe (writes only *@rng).
 */
long cca_assign_pick(const struct cca_assign_candidate *c, size_t n,
                     const struct cca_assign_need *need, int64_t now_ms, uint64_t *rng);

/* ---- queue order ----------------------------------------------------------------- */

/* enum cca_priority - a waiting dialog's priority (stored; values never change). */
enum cca_priority {
    CCA_PRIORITY_LOW = 0,
    CCA_PRIORITY_NORMAL = 1,
    CCA_PRIORITY_HIGH = 2,
    CCA_PRIORITY_URGENT = 3,
    CCA_PRIORITY__COUNT,
};

/*
 * cca_priority_name - "low", "normal", "high" or "urgent" for @p.
 * Returns a static string, or NULL for a value outside the enum. Thread-safe.
 */
const char *cca_priority_name(enum cca_priority p);

/*
 * cca_priority_parse - map @s (NUL-terminated; exact, lower case) to a
 * priority. Returns true and sets *ret_p on a match; false for NULL or any
 * other string (*ret_p untouched). Thread-safe.
 */
bool cca_priority_parse(const char *s, enum cca_priority *ret_p);

/*
 * struct cca_queue_key - what orders one waiting dialog in the queue.
 * @priority: its priority.
 * @requeued: true when it was taken back from an operator (it had already
 *            reached a human once).
 * @since_ms: Unix ms when the customer started waiting for a human (kept
 *            across a requeue: the customer has been waiting all along).
 * @seq:      arrival order in the queue, unique (the final tie-break).
 */
struct cca_queue_key {
    enum cca_priority priority;
    bool requeued;
    int64_t since_ms;
    uint64_t seq;
};

/*
 * cca_queue_compare - which of two waiting dialogs is served first.
 * @a, @b: the keys (borrowed; must not be NULL).
 *
 * The criteria, in order; the first that differs decides:
 *   1. higher priority first (urgent, high, normal, low);
 *   2. requeued before not requeued: a dialog taken back from an operator goes
 *      to the head of its priority, so a timeout or an operator going offline
 *      does not send the customer to the back of the line;
 *   3. earlier @since_ms first (first come, first served);
 *   4. lower @seq first.
 * A total order: returns -1 when @a goes first, 1 when @b does, and 0 only
 * when the keys have the same @seq and tie on everything else (the same
 * entry). Usable with qsort(3) through a wrapper. Thread-safe.
 */
int cca_queue_compare(const struct cca_queue_key *a, const struct cca_queue_key *b);

/* ---- estimated wait -------------------------------------------------------------- */

/*
 * cca_assign_eta_s - the estimated wait, in seconds, of the dialog at queue
 * position @position.
 * @position:         1-based place in the queue (1: served next); 0 (not
 *                    waiting) gives 0 whenever the estimate is known.
 * @seats:            the sum of max_dialogs over the operators who are not
 *                    offline (the dialogs the shift can hold at once).
 * @mean_handle_s:    the measured mean time an operator holds a dialog,
 *                    seconds (cca_assign_mean); <= 0 or not finite when there
 *                    is no measurement yet.
 * @default_handle_s: the configured handle time used until then, seconds.
 *
 * Returns -1 (unknown) when @seats is 0 (nobody is on shift) or when neither
 * handle time is a positive finite number. Otherwise, with handle the measured
 * mean if usable, else the default: when every seat is busy, a seat frees on
 * average every handle / @seats seconds (the departure rate of @seats servers
 * each finishing one dialog per handle seconds; Little's law, L = lambda W,
 * read the other way round), so the dialog at position p waits about
 * p * handle / @seats seconds. Rounded up to whole seconds (an estimate shown
 * to a customer should not promise less than it knows). An estimate, not a
 * bound: it assumes every seat is busy and handle times are typical.
 * Thread-safe.
 */
double cca_assign_eta_s(size_t position, unsigned seats, double mean_handle_s,
                        double default_handle_s);

/* The first CCA_ASSIGN_MEAN_WARMUP samples form a plain mean, then an EWMA. */
#define CCA_ASSIGN_MEAN_WARMUP 20
#define CCA_ASSIGN_MEAN_ALPHA  0.1

/*
 * struct cca_assign_mean - a running mean of handle times, in seconds.
 * @mean: the current estimate (0 while @n is 0).
 * @n:    the number of samples taken in.
 * Zero-initialise it ({0}) to start empty; it holds no resources.
 */
struct cca_assign_mean {
    double mean;
    uint64_t n;
};

/*
 * cca_assign_mean_add - take the sample @sample_s (seconds) into @m.
 * The first CCA_ASSIGN_MEAN_WARMUP samples form the plain running mean
 * (mean += (x - mean) / n, Welford's update, so no sum can overflow); after
 * them it is an exponentially weighted moving average with alpha
 * CCA_ASSIGN_MEAN_ALPHA (mean += alpha * (x - mean)), so the estimate follows
 * the current shift instead of the whole history: a sample's weight halves
 * about every 6.6 samples. The warm-up keeps the first sample from counting
 * as the whole estimate. Negative, NaN and infinite samples are ignored (@m
 * untouched), and so is a NULL @m. Not thread-safe on one @m (the caller
 * serialises), thread-safe otherwise.
 */
void cca_assign_mean_add(struct cca_assign_mean *m, double sample_s);

#endif
