/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "cca/assign.h"

/* ---- ownership ------------------------------------------------------------------- */

static const char *const owner_names[CCA_OWNER__COUNT] = {
    [CCA_OWNER_AGENT] = "agent",
    [CCA_OWNER_QUEUE] = "queue",
    [CCA_OWNER_OPERATOR] = "operator",
};

static const char *const event_names[CCA_OWNER_EV__COUNT] = {
    [CCA_OWNER_EV_ENQUEUE] = "enqueue",   [CCA_OWNER_EV_ASSIGN] = "assign",
    [CCA_OWNER_EV_REQUEUE] = "requeue",   [CCA_OWNER_EV_TRANSFER] = "transfer",
    [CCA_OWNER_EV_HANDBACK] = "handback",
};

/*
 * The whole state machine. REFUSED marks a pair that is not a transition; a
 * designated initialiser leaves every unnamed pair 0, so the table lists owners
 * plus one and REFUSED is 0: a pair forgotten here is refused, never allowed.
 */
#define REFUSED   0
#define TO(owner) ((signed char)((owner) + 1))

static const signed char transitions[CCA_OWNER__COUNT][CCA_OWNER_EV__COUNT] = {
    [CCA_OWNER_AGENT] =
        {
            [CCA_OWNER_EV_ENQUEUE] = TO(CCA_OWNER_QUEUE),
            [CCA_OWNER_EV_ASSIGN] = TO(CCA_OWNER_OPERATOR),
        },
    [CCA_OWNER_QUEUE] =
        {
            [CCA_OWNER_EV_ASSIGN] = TO(CCA_OWNER_OPERATOR),
            [CCA_OWNER_EV_HANDBACK] = TO(CCA_OWNER_AGENT),
        },
    [CCA_OWNER_OPERATOR] =
        {
            [CCA_OWNER_EV_REQUEUE] = TO(CCA_OWNER_QUEUE),
            [CCA_OWNER_EV_TRANSFER] = TO(CCA_OWNER_OPERATOR),
            [CCA_OWNER_EV_HANDBACK] = TO(CCA_OWNER_AGENT),
        },
};

/* The enums may be unsigned or signed (implementation-defined): test as unsigned. */
static bool in_range(int v, int count)
{
    return (unsigned)v < (unsigned)count;
}

static bool parse_name(const char *s, const char *const *names, int count, int *ret)
{
    if (s == NULL)
        return false;
    for (int i = 0; i < count; i++) {
        if (strcmp(s, names[i]) == 0) {
            *ret = i;
            return true;
        }
    }
    return false;
}

const char *cca_owner_name(enum cca_owner owner)
{
    return in_range((int)owner, CCA_OWNER__COUNT) ? owner_names[owner] : NULL;
}

bool cca_owner_parse(const char *s, enum cca_owner *ret_owner)
{
    int v;

    if (!parse_name(s, owner_names, CCA_OWNER__COUNT, &v))
        return false;
    *ret_owner = (enum cca_owner)v;
    return true;
}

const char *cca_owner_event_name(enum cca_owner_event ev)
{
    return in_range((int)ev, CCA_OWNER_EV__COUNT) ? event_names[ev] : NULL;
}

bool cca_owner_next(enum cca_owner from, enum cca_owner_event ev, enum cca_owner *ret_to)
{
    signed char to;

    if (!in_range((int)from, CCA_OWNER__COUNT) || !in_range((int)ev, CCA_OWNER_EV__COUNT))
        return false;
    to = transitions[from][ev];
    if (to == REFUSED)
        return false;
    *ret_to = (enum cca_owner)(to - 1);
    return true;
}

/* ---- the assignment rule --------------------------------------------------------- */

/* A need of 0, or a candidate set of 0 ("everything"), matches; else any shared bit. */
static bool set_matches(uint32_t have, uint32_t want)
{
    return want == 0 || have == 0 || (have & want) != 0;
}

bool cca_assign_eligible(const struct cca_assign_candidate *c,
                         const struct cca_assign_need *need)
{
    if (c == NULL || c->status != CCA_OPERATOR_AVAILABLE ||
        c->open_dialogs >= c->max_dialogs)
        return false;
    if (need == NULL)
        return true;
    return set_matches(c->languages, need->language) &&
           set_matches(c->skills, need->skill);
}

/*
 * Seen within CCA_ASSIGN_RECENT_MS of @now_ms. The difference is taken in
 * unsigned arithmetic after the ordering test, so no pair of int64 values can
 * overflow (a signed now - seen could, for hostile stored timestamps).
 */
static bool recently_seen(int64_t seen_ms, int64_t now_ms)
{
    if (seen_ms == 0)
        return false;
    if (seen_ms >= now_ms)
        return true; /* clock skew between writers: seen "now" */
    return (uint64_t)now_ms - (uint64_t)seen_ms <= (uint64_t)CCA_ASSIGN_RECENT_MS;
}

/* Never closed counts as the longest ago: before every real time. */
static int64_t closed_key(int64_t closed_ms)
{
    return closed_ms == 0 ? INT64_MIN : closed_ms;
}

int cca_assign_compare(const struct cca_assign_candidate *a,
                       const struct cca_assign_candidate *b, int64_t now_ms)
{
    bool ra = recently_seen(a->last_seen_ms, now_ms);
    bool rb = recently_seen(b->last_seen_ms, now_ms);
    int64_t ca;
    int64_t cb;

    if (ra != rb)
        return ra ? -1 : 1;
    if (a->open_dialogs != b->open_dialogs)
        return a->open_dialogs < b->open_dialogs ? -1 : 1;
    ca = closed_key(a->last_closed_ms);
    cb = closed_key(b->last_closed_ms);
    if (ca != cb)
        return ca < cb ? -1 : 1;
    return 0;
}

/*
 * splitmix64 (Steele, Lea, Flood, OOPSLA 2014; constants from Vigna's public
 * domain splitmix64.c). Chosen over xorshift64* because every state, zero
 * included, is valid: a caller cannot seed it wrong.
 */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

long cca_assign_pick(const struct cca_assign_candidate *c, size_t n,
                     const struct cca_assign_need *need, int64_t now_ms, uint64_t *rng)
{
    long best = -1;
    uint64_t tied = 0; /* candidates seen so far that tie with c[best] */

    if (c == NULL)
        return -1;
    for (size_t i = 0; i < n && i <= (size_t)LONG_MAX; i++) {
        int cmp;

        if (!cca_assign_eligible(&c[i], need))
            continue;
        cmp = best < 0 ? -1 : cca_assign_compare(&c[i], &c[best], now_ms);
        if (cmp < 0) {
            best = (long)i;
            tied = 1;
        } else if (cmp == 0) {
            /* Reservoir of one (algorithm R): keep the k-th tied with chance 1/k. */
            tied++;
            if (rng != NULL && splitmix64(rng) % tied == 0)
                best = (long)i;
        }
    }
    return best;
}

/* ---- queue order ----------------------------------------------------------------- */

static const char *const priority_names[CCA_PRIORITY__COUNT] = {
    [CCA_PRIORITY_LOW] = "low",
    [CCA_PRIORITY_NORMAL] = "normal",
    [CCA_PRIORITY_HIGH] = "high",
    [CCA_PRIORITY_URGENT] = "urgent",
};

const char *cca_priority_name(enum cca_priority p)
{
    return in_range((int)p, CCA_PRIORITY__COUNT) ? priority_names[p] : NULL;
}

bool cca_priority_parse(const char *s, enum cca_priority *ret_p)
{
    int v;

    if (!parse_name(s, priority_names, CCA_PRIORITY__COUNT, &v))
        return false;
    *ret_p = (enum cca_priority)v;
    return true;
}

int cca_queue_compare(const struct cca_queue_key *a, const struct cca_queue_key *b)
{
    if (a->priority != b->priority)
        return (int)a->priority > (int)b->priority ? -1 : 1;
    if (a->requeued != b->requeued)
        return a->requeued ? -1 : 1;
    if (a->since_ms != b->since_ms)
        return a->since_ms < b->since_ms ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

/* ---- estimated wait -------------------------------------------------------------- */

double cca_assign_eta_s(size_t position, unsigned seats, double mean_handle_s,
                        double default_handle_s)
{
    double handle;
    double wait;

    if (seats == 0)
        return -1;
    if (isfinite(mean_handle_s) && mean_handle_s > 0)
        handle = mean_handle_s;
    else if (isfinite(default_handle_s) && default_handle_s > 0)
        handle = default_handle_s;
    else
        return -1;
    if (position == 0)
        return 0;
    wait = (double)position * handle / (double)seats;
    /* The epsilon keeps float noise (100.00000001) from adding a whole second. */
    wait = ceil(wait - 1e-9);
    return wait > 0 ? wait : 0;
}

void cca_assign_mean_add(struct cca_assign_mean *m, double sample_s)
{
    if (m == NULL || !isfinite(sample_s) || sample_s < 0)
        return;
    if (m->n < CCA_ASSIGN_MEAN_WARMUP)
        m->mean += (sample_s - m->mean) / (double)(m->n + 1);
    else
        m->mean += CCA_ASSIGN_MEAN_ALPHA * (sample_s - m->mean);
    if (m->n < UINT64_MAX)
        m->n++;
}
