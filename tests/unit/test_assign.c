/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <math.h>

#include "cca/assign.h"
#include "cca/text.h"

#define MIN_MS (60 * 1000LL)
#define NOW    1700000000000LL /* Unix ms, 2023-11-14 */

/* ---- ownership ------------------------------------------------------------------- */

/* One (from, event) pair of the state machine and its expected outcome. */
struct owner_case {
    enum cca_owner from;
    enum cca_owner_event ev;
    bool allowed;
    enum cca_owner to;
};

/* Run by one named TAP line per pair (see main): all 15 are listed there. */
static void test_owner_transition(void **state)
{
    const struct owner_case *tc = *state;
    enum cca_owner to = (enum cca_owner)99;

    assert_int_equal(cca_owner_next(tc->from, tc->ev, &to), tc->allowed);
    if (tc->allowed)
        assert_int_equal(to, tc->to);
    else
        assert_int_equal(to, 99); /* refused: untouched */
}

static void test_owner_table_shape(void **state)
{
    unsigned allowed = 0;
    unsigned into[CCA_OWNER__COUNT] = {0};

    (void)state;
    /* exactly the 7 documented transitions over the 15 pairs */
    for (int f = 0; f < CCA_OWNER__COUNT; f++) {
        for (int e = 0; e < CCA_OWNER_EV__COUNT; e++) {
            enum cca_owner to;

            if (cca_owner_next((enum cca_owner)f, (enum cca_owner_event)e, &to)) {
                allowed++;
                into[to]++;
            }
        }
    }
    assert_int_equal(allowed, 7);
    assert_int_equal(into[CCA_OWNER_AGENT], 2);
    assert_int_equal(into[CCA_OWNER_QUEUE], 2);
    assert_int_equal(into[CCA_OWNER_OPERATOR], 3);
}

static void test_owner_out_of_range(void **state)
{
    enum cca_owner to = CCA_OWNER_QUEUE;

    (void)state;
    assert_false(cca_owner_next(CCA_OWNER__COUNT, CCA_OWNER_EV_HANDBACK, &to));
    assert_false(cca_owner_next((enum cca_owner) - 1, CCA_OWNER_EV_ASSIGN, &to));
    assert_false(cca_owner_next((enum cca_owner)1000, CCA_OWNER_EV_ASSIGN, &to));
    assert_false(cca_owner_next(CCA_OWNER_AGENT, CCA_OWNER_EV__COUNT, &to));
    assert_false(cca_owner_next(CCA_OWNER_OPERATOR, (enum cca_owner_event) - 1, &to));
    assert_false(cca_owner_next(CCA_OWNER_QUEUE, (enum cca_owner_event)77, &to));
    assert_int_equal(to, CCA_OWNER_QUEUE);
}

static void test_owner_names(void **state)
{
    static const char *const owners[] = {"agent", "queue", "operator"};
    static const char *const events[] = {"enqueue", "assign", "requeue", "transfer",
                                         "handback"};
    enum cca_owner o = CCA_OWNER_QUEUE;

    (void)state;
    assert_int_equal(CCA_ARRAY_SIZE(owners), CCA_OWNER__COUNT);
    assert_int_equal(CCA_ARRAY_SIZE(events), CCA_OWNER_EV__COUNT);
    for (int i = 0; i < CCA_OWNER__COUNT; i++) {
        assert_string_equal(cca_owner_name((enum cca_owner)i), owners[i]);
        assert_true(cca_owner_parse(owners[i], &o));
        assert_int_equal(o, i);
    }
    for (int i = 0; i < CCA_OWNER_EV__COUNT; i++)
        assert_string_equal(cca_owner_event_name((enum cca_owner_event)i), events[i]);
    /* the stored values never change meaning */
    assert_int_equal(CCA_OWNER_AGENT, 0);
    assert_int_equal(CCA_OWNER_QUEUE, 1);
    assert_int_equal(CCA_OWNER_OPERATOR, 2);

    assert_null(cca_owner_name(CCA_OWNER__COUNT));
    assert_null(cca_owner_name((enum cca_owner) - 1));
    assert_null(cca_owner_event_name(CCA_OWNER_EV__COUNT));
    assert_null(cca_owner_event_name((enum cca_owner_event) - 1));

    o = CCA_OWNER_OPERATOR;
    assert_false(cca_owner_parse("Agent", &o));
    assert_false(cca_owner_parse("agent ", &o));
    assert_false(cca_owner_parse("ag", &o));
    assert_false(cca_owner_parse("", &o));
    assert_false(cca_owner_parse(NULL, &o));
    assert_int_equal(o, CCA_OWNER_OPERATOR); /* untouched */
}

/* ---- eligibility ----------------------------------------------------------------- */

#define EN    CCA_OPERATOR_LANG_BIT(CCA_LANG_EN)
#define RU    CCA_OPERATOR_LANG_BIT(CCA_LANG_RU)
#define TECH  CCA_OPERATOR_SKILL_BIT(CCA_AGENT_TECH_SUPPORT)
#define SALES CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SALES)

/* An eligible candidate, recently seen, one open dialog of three, closed 1 h ago. */
static struct cca_assign_candidate cand(void)
{
    struct cca_assign_candidate c = {
        .status = CCA_OPERATOR_AVAILABLE,
        .max_dialogs = 3,
        .open_dialogs = 1,
        .languages = 0,
        .skills = 0,
        .last_seen_ms = NOW - MIN_MS,
        .last_closed_ms = NOW - 60 * MIN_MS,
    };

    return c;
}

static void test_eligible_baseline(void **state)
{
    struct cca_assign_candidate c = cand();
    struct cca_assign_need any = {0};
    struct cca_assign_need en_tech = {.language = EN, .skill = TECH};

    (void)state;
    assert_true(cca_assign_eligible(&c, &any));
    assert_true(cca_assign_eligible(&c, NULL));
    assert_true(cca_assign_eligible(&c, &en_tech)); /* empty sets: everything */
    /* eligibility ignores recency and history: those only rank */
    c.last_seen_ms = 0;
    c.last_closed_ms = 0;
    assert_true(cca_assign_eligible(&c, &en_tech));
    assert_false(cca_assign_eligible(NULL, &any));
}

static void test_ineligible_status(void **state)
{
    struct cca_assign_candidate c = cand();

    (void)state;
    c.status = CCA_OPERATOR_BUSY;
    assert_false(cca_assign_eligible(&c, NULL));
    c.status = CCA_OPERATOR_OFFLINE;
    assert_false(cca_assign_eligible(&c, NULL));
    c.status = CCA_OPERATOR_STATUS__COUNT;
    assert_false(cca_assign_eligible(&c, NULL));
    c.status = (enum cca_operator_status) - 1;
    assert_false(cca_assign_eligible(&c, NULL));
}

static void test_ineligible_full(void **state)
{
    struct cca_assign_candidate c = cand();

    (void)state;
    c.open_dialogs = 2;
    assert_true(cca_assign_eligible(&c, NULL)); /* the last free seat */
    c.open_dialogs = 3;
    assert_false(cca_assign_eligible(&c, NULL));
    c.open_dialogs = 4; /* over the cap after the cap was lowered */
    assert_false(cca_assign_eligible(&c, NULL));
    c.open_dialogs = 0;
    c.max_dialogs = 0;
    assert_false(cca_assign_eligible(&c, NULL));
}

static void test_ineligible_language(void **state)
{
    struct cca_assign_candidate c = cand();
    struct cca_assign_need en = {.language = EN};
    struct cca_assign_need ru = {.language = RU};
    struct cca_assign_need any = {0};

    (void)state;
    c.languages = RU;
    assert_false(cca_assign_eligible(&c, &en));
    assert_true(cca_assign_eligible(&c, &ru));
    assert_true(cca_assign_eligible(&c, &any));
    c.languages = EN | RU;
    assert_true(cca_assign_eligible(&c, &en));
    assert_true(cca_assign_eligible(&c, &ru));
    c.languages = 0;
    assert_true(cca_assign_eligible(&c, &en));
    /* the skill set does not stand in for the language set */
    c.languages = RU;
    c.skills = 0;
    assert_false(cca_assign_eligible(&c, &en));
}

static void test_ineligible_skill(void **state)
{
    struct cca_assign_candidate c = cand();
    struct cca_assign_need sales = {.skill = SALES};
    struct cca_assign_need tech = {.skill = TECH};
    struct cca_assign_need ru_sales = {.language = RU, .skill = SALES};

    (void)state;
    c.skills = TECH;
    assert_false(cca_assign_eligible(&c, &sales));
    assert_true(cca_assign_eligible(&c, &tech));
    c.skills = TECH | SALES;
    assert_true(cca_assign_eligible(&c, &sales));
    c.skills = 0;
    assert_true(cca_assign_eligible(&c, &sales));
    /* both must match */
    c.languages = EN;
    c.skills = SALES;
    assert_false(cca_assign_eligible(&c, &ru_sales));
    c.languages = RU;
    c.skills = TECH;
    assert_false(cca_assign_eligible(&c, &ru_sales));
    c.skills = SALES;
    assert_true(cca_assign_eligible(&c, &ru_sales));
}

/* ---- the ranking: each tie-break in isolation ------------------------------------ */

/* cmp(a, b) and cmp(b, a) must disagree: -1 and 1. */
static void assert_prefers(const struct cca_assign_candidate *a,
                           const struct cca_assign_candidate *b, int64_t now)
{
    assert_int_equal(cca_assign_compare(a, b, now), -1);
    assert_int_equal(cca_assign_compare(b, a, now), 1);
}

static void test_compare_recent_first(void **state)
{
    struct cca_assign_candidate a = cand();
    struct cca_assign_candidate b = cand();

    (void)state;
    /* a is recent but worse on both later criteria: recency still wins */
    a.last_seen_ms = NOW - 4 * MIN_MS;
    a.open_dialogs = 2;
    a.last_closed_ms = NOW - 1000;
    b.last_seen_ms = NOW - 10 * MIN_MS;
    b.open_dialogs = 0;
    b.last_closed_ms = 0;
    assert_prefers(&a, &b, NOW);

    /* the 5-minute boundary: exactly 5 minutes is recent, one ms more is not */
    a.last_seen_ms = NOW - CCA_ASSIGN_RECENT_MS;
    b.last_seen_ms = NOW - CCA_ASSIGN_RECENT_MS - 1;
    assert_prefers(&a, &b, NOW);
    assert_int_equal(CCA_ASSIGN_RECENT_MS, 300000);

    /* never seen is not recent */
    a.last_seen_ms = NOW;
    b.last_seen_ms = 0;
    assert_prefers(&a, &b, NOW);

    /* seen "in the future" (clock skew) counts as recent */
    a.last_seen_ms = NOW + 30000;
    b.last_seen_ms = NOW - 6 * MIN_MS;
    assert_prefers(&a, &b, NOW);

    /* the clock is the parameter: later, a is no longer recent either */
    a.last_seen_ms = NOW - 4 * MIN_MS;
    b.last_seen_ms = NOW - 10 * MIN_MS;
    assert_prefers(&b, &a, NOW + 2 * MIN_MS); /* both stale: fewer open wins */
    /* hostile timestamps do not overflow */
    a.last_seen_ms = INT64_MIN;
    b.last_seen_ms = INT64_MAX;
    assert_prefers(&b, &a, NOW);
}

static void test_compare_fewer_open(void **state)
{
    struct cca_assign_candidate a = cand();
    struct cca_assign_candidate b = cand();

    (void)state;
    /* equally recent; a has fewer open dialogs but closed one just now */
    a.open_dialogs = 0;
    a.last_closed_ms = NOW - 1000;
    b.open_dialogs = 1;
    b.last_closed_ms = 0;
    assert_prefers(&a, &b, NOW);
    /* the same when neither is recent */
    a.last_seen_ms = 0;
    b.last_seen_ms = NOW - 7 * MIN_MS;
    assert_prefers(&a, &b, NOW);
    /* and when both are, with different seen times inside the window */
    a.last_seen_ms = NOW - 4 * MIN_MS;
    b.last_seen_ms = NOW;
    assert_prefers(&a, &b, NOW);
    /* max_dialogs (capacity) does not rank: only the current load does */
    a.max_dialogs = 1;
    b.max_dialogs = 10;
    assert_prefers(&a, &b, NOW);
}

static void test_compare_longest_since_closed(void **state)
{
    struct cca_assign_candidate a = cand();
    struct cca_assign_candidate b = cand();

    (void)state;
    /* same recency, same load: the one who closed a dialog longer ago */
    a.last_closed_ms = NOW - 30 * MIN_MS;
    b.last_closed_ms = NOW - 2 * MIN_MS;
    assert_prefers(&a, &b, NOW);
    /* never closed counts as the longest ago */
    a.last_closed_ms = 0;
    b.last_closed_ms = 1; /* the earliest real time there is */
    assert_prefers(&a, &b, NOW);
    /* how recently they were seen inside the window does not matter */
    a.last_closed_ms = NOW - 30 * MIN_MS;
    b.last_closed_ms = NOW - 2 * MIN_MS;
    a.last_seen_ms = NOW - 4 * MIN_MS;
    b.last_seen_ms = NOW;
    assert_prefers(&a, &b, NOW);
}

static void test_compare_tie(void **state)
{
    struct cca_assign_candidate a = cand();
    struct cca_assign_candidate b = cand();

    (void)state;
    assert_int_equal(cca_assign_compare(&a, &b, NOW), 0);
    assert_int_equal(cca_assign_compare(&a, &a, NOW), 0);
    /* differences outside the three criteria do not break a tie */
    b.last_seen_ms = NOW - 3 * MIN_MS; /* still recent */
    b.max_dialogs = 9;
    b.languages = EN;
    b.skills = SALES;
    b.status = CCA_OPERATOR_BUSY;
    assert_int_equal(cca_assign_compare(&a, &b, NOW), 0);
    assert_int_equal(cca_assign_compare(&b, &a, NOW), 0);
    /* never seen, never closed, no dialogs: tied too */
    a = cand();
    b = cand();
    a.last_seen_ms = b.last_seen_ms = 0;
    a.last_closed_ms = b.last_closed_ms = 0;
    a.open_dialogs = b.open_dialogs = 0;
    assert_int_equal(cca_assign_compare(&a, &b, NOW), 0);
}

/* ---- the pick -------------------------------------------------------------------- */

static void test_pick_none(void **state)
{
    struct cca_assign_candidate c[3] = {cand(), cand(), cand()};
    struct cca_assign_need ru = {.language = RU};
    uint64_t rng = 42;

    (void)state;
    assert_int_equal(cca_assign_pick(NULL, 0, NULL, NOW, &rng), -1);
    assert_int_equal(cca_assign_pick(c, 0, NULL, NOW, &rng), -1);
    assert_int_equal(cca_assign_pick(NULL, 5, NULL, NOW, &rng), -1);
    c[0].status = CCA_OPERATOR_BUSY;
    c[1].open_dialogs = c[1].max_dialogs;
    c[2].languages = EN;
    assert_int_equal(cca_assign_pick(c, 3, &ru, NOW, &rng), -1);
    assert_int_equal(rng, 42);
    /* with no need, c[2] is the only one left */
    assert_int_equal(cca_assign_pick(c, 3, NULL, NOW, &rng), 2);
}

static void test_pick_skips_ineligible(void **state)
{
    struct cca_assign_candidate c[5] = {cand(), cand(), cand(), cand(), cand()};
    struct cca_assign_need en_sales = {.language = EN, .skill = SALES};
    uint64_t rng = 7;

    (void)state;
    /* each of 0..3 would win the ranking but is ineligible for one reason */
    for (int i = 0; i < 4; i++) {
        c[i].open_dialogs = 0;
        c[i].last_closed_ms = 0;
    }
    c[0].status = CCA_OPERATOR_OFFLINE;
    c[1].max_dialogs = 0;
    c[2].languages = RU;
    c[3].skills = TECH;
    c[4].open_dialogs = 2;
    c[4].last_seen_ms = 0;
    assert_int_equal(cca_assign_pick(c, 5, &en_sales, NOW, &rng), 4);
    assert_int_equal(rng, 7); /* no tie, no draw */
}

static void test_pick_each_rule(void **state)
{
    struct cca_assign_candidate c[4] = {cand(), cand(), cand(), cand()};
    uint64_t rng = 1;

    (void)state;
    /*
     * Every candidate ranks differently (distinct close times), so these picks
     * never tie: rule 1: the only recent one wins, wherever it sits.
     */
    for (int win = 0; win < 4; win++) {
        for (int i = 0; i < 4; i++) {
            c[i] = cand();
            c[i].last_seen_ms = i == win ? NOW - 2 * MIN_MS : NOW - 20 * MIN_MS;
            c[i].open_dialogs = i == win ? 2 : 0;
            c[i].last_closed_ms = i == win ? NOW : NOW - (i + 1) * MIN_MS;
        }
        assert_int_equal(cca_assign_pick(c, 4, NULL, NOW, &rng), win);
    }
    /* rule 2: fewest open dialogs among the recent ones */
    for (int win = 0; win < 4; win++) {
        for (int i = 0; i < 4; i++) {
            c[i] = cand();
            c[i].open_dialogs = i == win ? 0 : 1 + (unsigned)i % 2;
            c[i].last_closed_ms = i == win ? NOW : NOW - (i + 1) * MIN_MS;
        }
        assert_int_equal(cca_assign_pick(c, 4, NULL, NOW, &rng), win);
    }
    /* rule 3: longest since the last close among the equally loaded */
    for (int win = 0; win < 4; win++) {
        for (int i = 0; i < 4; i++) {
            c[i] = cand();
            c[i].last_closed_ms = i == win ? NOW - 90 * MIN_MS : NOW - (i + 1) * MIN_MS;
        }
        assert_int_equal(cca_assign_pick(c, 4, NULL, NOW, &rng), win);
    }
    assert_int_equal(rng, 1); /* no two candidates ever tied: no draw */
}

static void test_pick_better_restarts_ties(void **state)
{
    struct cca_assign_candidate c[4] = {cand(), cand(), cand(), cand()};
    uint64_t rng = 3;
    unsigned hits[4] = {0};

    (void)state;
    /* three ties, then a strictly better one: always the better one */
    c[3].open_dialogs = 0;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(cca_assign_pick(c, 4, NULL, NOW, &rng), 3);
    /* best, worse, a tie of the best: the two best share the picks */
    c[0] = cand();
    c[1] = cand();
    c[1].open_dialogs = 2;
    c[2] = cand();
    for (int i = 0; i < 2000; i++)
        hits[cca_assign_pick(c, 3, NULL, NOW, &rng)]++;
    assert_int_equal(hits[1], 0);
    assert_true(hits[0] > 850 && hits[2] > 850);
}

static void test_pick_uniform(void **state)
{
    /* 3 tied, interleaved with a worse one and an ineligible better one */
    struct cca_assign_candidate c[6] = {cand(), cand(), cand(), cand(), cand(), cand()};
    unsigned hits[6] = {0};
    uint64_t rng = 0; /* zero is a valid splitmix64 seed */
    const unsigned rounds = 30000;

    (void)state;
    c[1].open_dialogs = 2;           /* worse */
    c[3].status = CCA_OPERATOR_BUSY; /* would win, but busy */
    c[3].open_dialogs = 0;
    c[5].last_seen_ms = 0; /* worse */
    for (unsigned i = 0; i < rounds; i++) {
        long k = cca_assign_pick(c, 6, NULL, NOW, &rng);

        assert_true(k >= 0 && k < 6);
        hits[k]++;
    }
    assert_int_equal(hits[1] + hits[3] + hits[5], 0);
    for (int i = 0; i < 6; i += 2) {
        double share = (double)hits[i] / rounds;

        assert_true(share >= 0.28 && share <= 0.39);
    }
}

static void test_pick_deterministic(void **state)
{
    struct cca_assign_candidate c[5] = {cand(), cand(), cand(), cand(), cand()};
    long first[100];
    uint64_t a = 0x123456789abcdefULL;
    uint64_t b = 0x123456789abcdefULL;
    uint64_t other = 0xfedcba987654321ULL;
    unsigned differ = 0;

    (void)state;
    for (int i = 0; i < 100; i++) {
        first[i] = cca_assign_pick(c, 5, NULL, NOW, &a);
        assert_int_equal(cca_assign_pick(c, 5, NULL, NOW, &b), first[i]);
    }
    assert_true(a == b);
    assert_true(a != 0x123456789abcdefULL); /* the state moved */
    for (int i = 0; i < 100; i++)
        differ += cca_assign_pick(c, 5, NULL, NOW, &other) != first[i];
    assert_true(differ > 30); /* another seed, another sequence */
    /* no state: the lowest tied index, every time */
    for (int i = 0; i < 10; i++)
        assert_int_equal(cca_assign_pick(c, 5, NULL, NOW, NULL), 0);
    c[0].status = CCA_OPERATOR_BUSY;
    assert_int_equal(cca_assign_pick(c, 5, NULL, NOW, NULL), 1);
}

/* ---- queue order ----------------------------------------------------------------- */

static void test_priority_names(void **state)
{
    static const char *const names[] = {"low", "normal", "high", "urgent"};
    enum cca_priority p = CCA_PRIORITY_HIGH;

    (void)state;
    assert_int_equal(CCA_ARRAY_SIZE(names), CCA_PRIORITY__COUNT);
    for (int i = 0; i < CCA_PRIORITY__COUNT; i++) {
        assert_string_equal(cca_priority_name((enum cca_priority)i), names[i]);
        assert_true(cca_priority_parse(names[i], &p));
        assert_int_equal(p, i);
    }
    assert_null(cca_priority_name(CCA_PRIORITY__COUNT));
    assert_null(cca_priority_name((enum cca_priority) - 1));
    p = CCA_PRIORITY_LOW;
    assert_false(cca_priority_parse("Urgent", &p));
    assert_false(cca_priority_parse("URGENT", &p));
    assert_false(cca_priority_parse(" high", &p));
    assert_false(cca_priority_parse("medium", &p));
    assert_false(cca_priority_parse("", &p));
    assert_false(cca_priority_parse(NULL, &p));
    assert_int_equal(p, CCA_PRIORITY_LOW);
}

static void assert_first(const struct cca_queue_key *a, const struct cca_queue_key *b)
{
    assert_int_equal(cca_queue_compare(a, b), -1);
    assert_int_equal(cca_queue_compare(b, a), 1);
}

static void test_queue_priority(void **state)
{
    struct cca_queue_key a = {.priority = CCA_PRIORITY_URGENT, .since_ms = NOW, .seq = 9};
    struct cca_queue_key b = {.priority = CCA_PRIORITY_HIGH,
                              .requeued = true,
                              .since_ms = NOW - 3600000,
                              .seq = 1};

    (void)state;
    /* higher priority beats requeued, waiting longer and arriving earlier */
    assert_first(&a, &b);
    for (int hi = 1; hi < CCA_PRIORITY__COUNT; hi++) {
        for (int lo = 0; lo < hi; lo++) {
            a.priority = (enum cca_priority)hi;
            b.priority = (enum cca_priority)lo;
            assert_first(&a, &b);
        }
    }
}

static void test_queue_requeued(void **state)
{
    struct cca_queue_key a = {
        .priority = CCA_PRIORITY_NORMAL, .requeued = true, .since_ms = NOW, .seq = 50};
    struct cca_queue_key b = {
        .priority = CCA_PRIORITY_NORMAL, .since_ms = NOW - 600000, .seq = 2};

    (void)state;
    /* head of its priority, before those waiting longer */
    assert_first(&a, &b);
    /* but not ahead of a higher priority */
    b.priority = CCA_PRIORITY_HIGH;
    assert_first(&b, &a);
    /* between two requeued ones, the wait decides */
    b.priority = CCA_PRIORITY_NORMAL;
    b.requeued = true;
    assert_first(&b, &a);
}

static void test_queue_since_then_seq(void **state)
{
    struct cca_queue_key a = {
        .priority = CCA_PRIORITY_LOW, .since_ms = NOW - 1, .seq = 8};
    struct cca_queue_key b = {.priority = CCA_PRIORITY_LOW, .since_ms = NOW, .seq = 7};

    (void)state;
    assert_first(&a, &b); /* earlier since beats lower seq */
    b.since_ms = a.since_ms;
    assert_first(&b, &a); /* same since: lower seq */
    /* a total order: 0 only for the same entry */
    assert_int_equal(cca_queue_compare(&a, &a), 0);
    b.seq = a.seq;
    assert_int_equal(cca_queue_compare(&a, &b), 0);
    /* seq compared unsigned, over its whole range */
    a.seq = 1;
    b.seq = UINT64_MAX;
    assert_first(&a, &b);
}

static int qcmp(const void *a, const void *b)
{
    return cca_queue_compare(a, b);
}

static void test_queue_sort(void **state)
{
    /* seq doubles as the expected position after sorting */
    struct cca_queue_key k[] = {
        {CCA_PRIORITY_LOW, false, NOW - 900, 9},
        {CCA_PRIORITY_NORMAL, false, NOW - 50, 7},
        {CCA_PRIORITY_URGENT, false, NOW, 1},
        {CCA_PRIORITY_HIGH, false, NOW - 10, 4},
        {CCA_PRIORITY_NORMAL, true, NOW - 1, 5},
        {CCA_PRIORITY_LOW, true, NOW, 8},
        {CCA_PRIORITY_HIGH, true, NOW, 2},
        {CCA_PRIORITY_NORMAL, false, NOW - 50, 6},
        {CCA_PRIORITY_HIGH, false, NOW - 20, 3},
        {CCA_PRIORITY_LOW, false, NOW - 900, 10},
    };
    const size_t n = CCA_ARRAY_SIZE(k);

    (void)state;
    /* antisymmetric on every pair, transitive on every triple */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int ij = cca_queue_compare(&k[i], &k[j]);

            assert_int_equal(ij, -cca_queue_compare(&k[j], &k[i]));
            assert_true(i == j || ij != 0);
            for (size_t l = 0; l < n; l++) {
                if (ij < 0 && cca_queue_compare(&k[j], &k[l]) < 0)
                    assert_true(cca_queue_compare(&k[i], &k[l]) < 0);
            }
        }
    }
    qsort(k, n, sizeof(k[0]), qcmp);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(k[i].seq, i + 1);
}

/* ---- estimated wait -------------------------------------------------------------- */

static void test_eta_unknown(void **state)
{
    (void)state;
    /* nobody on shift */
    assert_true(cca_assign_eta_s(1, 0, 120.0, 300.0) == -1);
    assert_true(cca_assign_eta_s(0, 0, 120.0, 300.0) == -1);
    assert_true(cca_assign_eta_s(50, 0, 0, 300.0) == -1);
    /* no usable handle time at all */
    assert_true(cca_assign_eta_s(1, 4, 0, 0) == -1);
    assert_true(cca_assign_eta_s(1, 4, -5.0, -1.0) == -1);
    assert_true(cca_assign_eta_s(1, 4, NAN, NAN) == -1);
    assert_true(cca_assign_eta_s(1, 4, INFINITY, INFINITY) == -1);
}

static void test_eta_estimate(void **state)
{
    (void)state;
    /* position 1: one seat's share of the handle time */
    assert_true(cca_assign_eta_s(1, 4, 120.0, 300.0) == 30);
    assert_true(cca_assign_eta_s(1, 1, 120.0, 300.0) == 120);
    /* linear in the position */
    assert_true(cca_assign_eta_s(2, 4, 120.0, 300.0) == 60);
    assert_true(cca_assign_eta_s(10, 4, 120.0, 300.0) == 300);
    /* more seats, shorter wait */
    assert_true(cca_assign_eta_s(10, 8, 120.0, 300.0) == 150);
    /* rounded up to whole seconds, without float noise adding one */
    assert_true(cca_assign_eta_s(1, 3, 100.0, 300.0) == 34);
    assert_true(cca_assign_eta_s(3, 3, 100.0, 300.0) == 100);
    assert_true(cca_assign_eta_s(3, 7, 0.7, 300.0) == 1);
    assert_true(cca_assign_eta_s(7, 10, 0.1 * 3, 300.0) == 1); /* 0.21 s */
    assert_true(cca_assign_eta_s(10, 10, 0.1 * 3 * 10, 300.0) == 3);
    /* position 0: not waiting */
    assert_true(cca_assign_eta_s(0, 4, 120.0, 300.0) == 0);
}

static void test_eta_default_used(void **state)
{
    (void)state;
    assert_true(cca_assign_eta_s(1, 2, 0, 300.0) == 150);
    assert_true(cca_assign_eta_s(1, 2, -1.0, 300.0) == 150);
    assert_true(cca_assign_eta_s(1, 2, NAN, 300.0) == 150);
    assert_true(cca_assign_eta_s(1, 2, INFINITY, 300.0) == 150);
    /* a measurement, once there, replaces the default */
    assert_true(cca_assign_eta_s(1, 2, 60.0, 300.0) == 30);
    /* a measurement without a default still gives an estimate */
    assert_true(cca_assign_eta_s(1, 2, 60.0, 0) == 30);
}

/* ---- the running mean ------------------------------------------------------------ */

static void test_mean_warmup(void **state)
{
    struct cca_assign_mean m = {0};

    (void)state;
    cca_assign_mean_add(&m, 100.0);
    assert_int_equal(m.n, 1);
    assert_true(m.mean == 100.0);
    cca_assign_mean_add(&m, 0.0); /* zero is a real sample */
    assert_int_equal(m.n, 2);
    assert_true(m.mean == 50.0);
    /* samples 1..20: the plain mean, 10.5 */
    m = (struct cca_assign_mean){0};
    for (int i = 1; i <= CCA_ASSIGN_MEAN_WARMUP; i++)
        cca_assign_mean_add(&m, i);
    assert_int_equal(m.n, 20);
    assert_true(fabs(m.mean - 10.5) < 1e-9);
}

static void test_mean_ewma(void **state)
{
    struct cca_assign_mean m = {0};

    (void)state;
    for (int i = 1; i <= 20; i++)
        cca_assign_mean_add(&m, i);
    /* the 21st sample weighs 0.1, not 1/21 */
    cca_assign_mean_add(&m, 100.0);
    assert_int_equal(m.n, 21);
    assert_true(fabs(m.mean - (10.5 + 0.1 * (100.0 - 10.5))) < 1e-9); /* 19.45 */
    assert_true(fabs(m.mean - 19.45) < 1e-9);
    /* a new shift: 100 samples of 50 and the old history is all but gone */
    for (int i = 0; i < 100; i++)
        cca_assign_mean_add(&m, 50.0);
    assert_int_equal(m.n, 121);
    assert_true(fabs(m.mean - 50.0) < 0.01);
    /* a plain mean would still remember: (210 + 100 + 5000) / 121 = 43.9 */
}

static void test_mean_ignores_bad(void **state)
{
    struct cca_assign_mean m = {0};

    (void)state;
    cca_assign_mean_add(&m, -1.0);
    cca_assign_mean_add(&m, NAN);
    cca_assign_mean_add(&m, INFINITY);
    cca_assign_mean_add(&m, -INFINITY);
    assert_int_equal(m.n, 0);
    assert_true(m.mean == 0);
    /* the ETA then uses its default */
    assert_true(cca_assign_eta_s(1, 1, m.mean, 240.0) == 240);
    cca_assign_mean_add(&m, 30.0);
    cca_assign_mean_add(&m, -30.0);
    cca_assign_mean_add(&m, NAN);
    assert_int_equal(m.n, 1);
    assert_true(m.mean == 30.0);
    assert_true(cca_assign_eta_s(1, 1, m.mean, 240.0) == 30);
    cca_assign_mean_add(NULL, 5.0); /* no crash */
}

/* One TAP line per (from, event) pair: "owner: <from> --<event>--> <to | refused>". */
#define ALLOW(f, e, t)                                                                   \
    {                                                                                    \
        "owner: " #f " --" #e "--> " #t, test_owner_transition, NULL, NULL,              \
            &(struct owner_case)                                                         \
        {                                                                                \
            CCA_OWNER_##f, CCA_OWNER_EV_##e, true, CCA_OWNER_##t                         \
        }                                                                                \
    }
#define REFUSE(f, e)                                                                     \
    {                                                                                    \
        "owner: " #f " --" #e "--> refused", test_owner_transition, NULL, NULL,          \
            &(struct owner_case)                                                         \
        {                                                                                \
            CCA_OWNER_##f, CCA_OWNER_EV_##e, false, CCA_OWNER_AGENT                      \
        }                                                                                \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* the 15 (from, event) pairs: 7 allowed, 8 refused */
        ALLOW(AGENT, ENQUEUE, QUEUE),
        ALLOW(AGENT, ASSIGN, OPERATOR),
        REFUSE(AGENT, REQUEUE),
        REFUSE(AGENT, TRANSFER),
        REFUSE(AGENT, HANDBACK),
        REFUSE(QUEUE, ENQUEUE),
        ALLOW(QUEUE, ASSIGN, OPERATOR),
        REFUSE(QUEUE, REQUEUE),
        REFUSE(QUEUE, TRANSFER),
        ALLOW(QUEUE, HANDBACK, AGENT),
        REFUSE(OPERATOR, ENQUEUE),
        REFUSE(OPERATOR, ASSIGN),
        ALLOW(OPERATOR, REQUEUE, QUEUE),
        ALLOW(OPERATOR, TRANSFER, OPERATOR),
        ALLOW(OPERATOR, HANDBACK, AGENT),
        cmocka_unit_test(test_owner_table_shape),
        cmocka_unit_test(test_owner_out_of_range),
        cmocka_unit_test(test_owner_names),
        cmocka_unit_test(test_eligible_baseline),
        cmocka_unit_test(test_ineligible_status),
        cmocka_unit_test(test_ineligible_full),
        cmocka_unit_test(test_ineligible_language),
        cmocka_unit_test(test_ineligible_skill),
        cmocka_unit_test(test_compare_recent_first),
        cmocka_unit_test(test_compare_fewer_open),
        cmocka_unit_test(test_compare_longest_since_closed),
        cmocka_unit_test(test_compare_tie),
        cmocka_unit_test(test_pick_none),
        cmocka_unit_test(test_pick_skips_ineligible),
        cmocka_unit_test(test_pick_each_rule),
        cmocka_unit_test(test_pick_better_restarts_ties),
        cmocka_unit_test(test_pick_uniform),
        cmocka_unit_test(test_pick_deterministic),
        cmocka_unit_test(test_priority_names),
        cmocka_unit_test(test_queue_priority),
        cmocka_unit_test(test_queue_requeued),
        cmocka_unit_test(test_queue_since_then_seq),
        cmocka_unit_test(test_queue_sort),
        cmocka_unit_test(test_eta_unknown),
        cmocka_unit_test(test_eta_estimate),
        cmocka_unit_test(test_eta_default_used),
        cmocka_unit_test(test_mean_warmup),
        cmocka_unit_test(test_mean_ewma),
        cmocka_unit_test(test_mean_ignores_bad),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
