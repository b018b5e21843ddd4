/* SPDX-License-Identifier: MIT */
/*
 * The desk (include/cca/desk.h): escalation, the queue order, the backlog
 * sweep, requeue on offline / revoke / reply timeout, take and transfer, the
 * restart path, the estimate and visibility, and a long random run that checks
 * the invariants (never over capacity, never two owners, nothing queued while
 * an eligible operator has a free seat, every move consistent with the state).
 * Operator records are real documents (cca_operator_new_doc).
 */
#include "cca_test.h"

#include <math.h>

#include <jansson.h>

#include "cca/desk.h"
#include "cca/operator.h"
#include "cca/text.h"

#define NOW 1700000000000LL /* Unix ms, 2023-11-14 */
#define SEC 1000LL

#define RU CCA_OPERATOR_LANG_BIT(CCA_LANG_RU)
#define EN CCA_OPERATOR_LANG_BIT(CCA_LANG_EN)

/* ---- fixture helpers ------------------------------------------------------------ */

struct op {
    char id[37];
    char name[32];
    char token[64];
    char hash[65];
    json_t *doc; /* the current record */
};

static void op_init(struct op *o, unsigned n, const char *name, uint32_t langs,
                    uint32_t skills, unsigned max, enum cca_operator_status st)
{
    struct cca_operator_reg reg = {0};
    json_t *doc;

    memset(o, 0, sizeof(*o));
    (void)snprintf(o->id, sizeof(o->id), "00000000-0000-4000-8000-%012u", n);
    (void)snprintf(o->name, sizeof(o->name), "%s", name);
    (void)snprintf(o->token, sizeof(o->token), "cco_test_token_%u", n);
    cca_operator_token_hash(o->token, strlen(o->token), o->hash);
    reg.name = o->name;
    reg.languages = langs;
    reg.skills = skills;
    reg.max_dialogs = max;
    doc = cca_operator_new_doc(o->id, &reg, o->hash, NOW);
    assert_non_null(doc);
    assert_int_equal(cca_operator_get_status(doc), CCA_OPERATOR_OFFLINE);
    o->doc = cca_operator_with_status(doc, st, NOW);
    json_decref(doc);
    assert_int_equal(cca_operator_get_status(o->doc), st);
}

static void op_free(struct op *o)
{
    json_decref(o->doc);
    o->doc = NULL;
}

/* A record with status @st; the desk is told (update_operator). */
static cca_rc op_status(struct cca_desk *d, struct op *o, enum cca_operator_status st,
                        int64_t now, struct cca_desk_moves *mv)
{
    json_t *doc = cca_operator_with_status(o->doc, st, now);

    json_decref(o->doc);
    o->doc = doc;
    return cca_desk_update_operator(d, doc, "admin", now, mv);
}

static void did(char buf[37], unsigned n)
{
    (void)snprintf(buf, 37, "d0000000-0000-4000-8000-%012u", n);
}

static struct cca_desk *desk_new(unsigned queue_max)
{
    struct cca_desk_params p = {
        .queue_max = queue_max, .default_handle_s = 300, .seed = 42};

    return cca_desk_new(&p);
}

static const struct cca_desk_need ANY = {0, 0, CCA_PRIORITY_NORMAL};

static struct cca_desk_need need_of(uint32_t lang, uint32_t skill, enum cca_priority p)
{
    return (struct cca_desk_need){.language = lang, .skill = skill, .priority = p};
}

static enum cca_desk_escalation esc(struct cca_desk *d, unsigned n,
                                    const struct cca_desk_need *need, int64_t now,
                                    struct cca_desk_moves *mv)
{
    char id[37];

    did(id, n);
    return cca_desk_escalate(d, id, need, "customer_request", "customer", now, mv);
}

/* The queue's dialog ids, in order, into @ids (at most @max); returns the length. */
static size_t queue_ids(struct cca_desk *d, char ids[][37], size_t max)
{
    json_t *v = cca_desk_queue_view(d, NOW, 100000);
    json_t *items = json_object_get(v, "items");
    size_t n = json_array_size(items);

    assert_int_equal(json_integer_value(json_object_get(v, "length")), n);
    for (size_t i = 0; i < n && i < max; i++) {
        json_t *it = json_array_get(items, i);

        assert_int_equal(json_integer_value(json_object_get(it, "position")), i + 1);
        (void)snprintf(ids[i], 37, "%s",
                       json_string_value(json_object_get(it, "dialog_id")));
    }
    json_decref(v);
    return n;
}

/* The queue is exactly dialogs @order[0..n) (numbers given to did()). */
static void assert_queue(struct cca_desk *d, const unsigned *order, size_t n)
{
    char ids[64][37];
    size_t len = queue_ids(d, ids, 64);

    assert_int_equal(len, n);
    for (size_t i = 0; i < n; i++) {
        char want[37];

        did(want, order[i]);
        assert_string_equal(ids[i], want);
    }
}

static void assert_owner(struct cca_desk *d, unsigned n, enum cca_owner owner,
                         const char *op_id)
{
    char id[37];
    char who[37] = "x";

    did(id, n);
    assert_int_equal(cca_desk_owner(d, id, who), owner);
    if (owner == CCA_OWNER_OPERATOR)
        assert_string_equal(who, op_id);
}

static unsigned open_of(struct cca_desk *d, const struct op *o)
{
    struct cca_desk_operator_info info;

    assert_true(cca_desk_operator(d, o->id, &info));
    return info.open_dialogs;
}

static void assert_move(const struct cca_desk_move *m, unsigned dialog,
                        enum cca_owner_event ev, enum cca_owner from, enum cca_owner to,
                        const char *op_id, const char *reason)
{
    char id[37];

    did(id, dialog);
    assert_string_equal(m->dialog_id, id);
    assert_int_equal(m->event, ev);
    assert_int_equal(m->from, from);
    assert_int_equal(m->to, to);
    assert_string_equal(m->operator_id, op_id != NULL ? op_id : "");
    if (reason != NULL)
        assert_string_equal(m->reason, reason);
}

/* ---- escalation --------------------------------------------------------------- */

static void test_escalate_assigned(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct op a;
    char who[37];

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 2, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_int_equal(mv.n, 0);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_ERR_CONFLICT);

    assert_int_equal(esc(d, 1, &ANY, NOW + SEC, &mv), CCA_DESK_ASSIGNED);
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 1, CCA_OWNER_EV_ASSIGN, CCA_OWNER_AGENT, CCA_OWNER_OPERATOR,
                a.id, "customer_request");
    assert_string_equal(mv.v[0].operator_name, "Анна");
    assert_string_equal(mv.v[0].prev_operator_id, "");
    assert_string_equal(mv.v[0].actor, "customer");
    assert_int_equal(mv.v[0].at_ms, NOW + SEC);
    assert_false(mv.v[0].requeued);
    assert_owner(d, 1, CCA_OWNER_OPERATOR, a.id);
    assert_int_equal(open_of(d, &a), 1);
    {
        json_t *l = cca_desk_operator_dialogs(d, a.id);
        char id[37];

        did(id, 1);
        assert_int_equal(json_array_size(l), 1);
        assert_string_equal(json_string_value(json_array_get(l, 0)), id);
        json_decref(l);
    }
    /* a dialog the desk does not hold belongs to the AI */
    did(who, 77);
    assert_int_equal(cca_desk_owner(d, who, NULL), CCA_OWNER_AGENT);
    /* a held dialog: ALREADY, nothing changes */
    assert_int_equal(esc(d, 1, &ANY, NOW + 2 * SEC, &mv), CCA_DESK_ALREADY);
    assert_int_equal(mv.n, 1);
    assert_int_equal(open_of(d, &a), 1);

    cca_desk_moves_cleanup(&mv);
    assert_null(mv.v);
    assert_int_equal(mv.n, 0);
    op_free(&a);
    cca_desk_free(d);
    cca_desk_free(NULL);
}

static void test_escalate_queued_full(void **state)
{
    struct cca_desk *d = desk_new(3);
    struct cca_desk_moves mv = {0};
    struct op a;
    size_t pos;
    double eta;
    char id[37];

    (void)state;
    /* an operator who is busy: nobody free, but on shift */
    op_init(&a, 1, "Анна", RU | EN, 0, 1, CCA_OPERATOR_BUSY);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    for (unsigned i = 1; i <= 3; i++) {
        assert_int_equal(esc(d, i, &ANY, NOW + i * SEC, &mv), CCA_DESK_QUEUED);
        assert_int_equal(mv.n, i);
        assert_move(&mv.v[i - 1], i, CCA_OWNER_EV_ENQUEUE, CCA_OWNER_AGENT,
                    CCA_OWNER_QUEUE, NULL, "customer_request");
        assert_int_equal(mv.v[i - 1].position, i);
        assert_false(mv.v[i - 1].requeued);
        /* one seat on shift, 300 s handle: p * 300 s */
        assert_true(mv.v[i - 1].eta_s > 0);
        assert_true(fabs(mv.v[i - 1].eta_s - 300.0 * i) < 1e-9);
        assert_owner(d, i, CCA_OWNER_QUEUE, NULL);
        did(id, i);
        assert_true(cca_desk_position(d, id, &pos, &eta));
        assert_int_equal(pos, i);
    }
    assert_queue(d, (const unsigned[]){1, 2, 3}, 3);
    /* QUEUE_MAX reached: FULL, no move, not held */
    assert_int_equal(esc(d, 4, &ANY, NOW + 9 * SEC, &mv), CCA_DESK_FULL);
    assert_int_equal(mv.n, 3);
    assert_owner(d, 4, CCA_OWNER_AGENT, NULL);
    /* a queued dialog escalating again: ALREADY */
    assert_int_equal(esc(d, 2, &ANY, NOW + 9 * SEC, &mv), CCA_DESK_ALREADY);
    assert_int_equal(mv.n, 3);
    assert_queue(d, (const unsigned[]){1, 2, 3}, 3);
    {
        struct cca_desk_stats st;

        cca_desk_get_stats(d, &st);
        assert_int_equal(st.queued, 3);
        assert_int_equal(st.assigned, 0);
        assert_int_equal(st.operators[CCA_OPERATOR_BUSY], 1);
        assert_int_equal(st.seats_free, 0);
    }
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    cca_desk_free(d);
}

/* ---- queue order ------------------------------------------------------------- */

static void test_queue_order(void **state)
{
    struct cca_desk *d = desk_new(100);
    struct cca_desk_moves mv = {0};
    struct cca_desk_need normal = need_of(0, 0, CCA_PRIORITY_NORMAL);
    struct cca_desk_need urgent = need_of(0, 0, CCA_PRIORITY_URGENT);
    struct cca_desk_need low = need_of(0, 0, CCA_PRIORITY_LOW);
    struct cca_desk_need high = need_of(0, 0, CCA_PRIORITY_HIGH);
    struct op a;
    json_t *v;
    json_t *items;

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 1, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    /* dialog 10 reaches Анна at once (her only seat) */
    assert_int_equal(esc(d, 10, &normal, NOW, &mv), CCA_DESK_ASSIGNED);
    /* then everyone waits */
    assert_int_equal(esc(d, 1, &normal, NOW + 1 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 2, &urgent, NOW + 2 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 3, &normal, NOW + 3 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 4, &low, NOW + 4 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 5, &urgent, NOW + 5 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 6, &high, NOW + 6 * SEC, &mv), CCA_DESK_QUEUED);
    /* the enqueue move's position is the place at the move (urgent 5 is 2nd) */
    assert_int_equal(mv.v[mv.n - 2].position, 2);
    assert_int_equal(mv.v[mv.n - 1].position, 3);
    assert_queue(d, (const unsigned[]){2, 5, 6, 1, 3, 4}, 6);

    /* Анна leaves: 10 (normal, requeued) goes before the normal ones only */
    mv.n = 0;
    assert_int_equal(op_status(d, &a, CCA_OPERATOR_OFFLINE, NOW + 10 * SEC, &mv), CCA_OK);
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 10, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR, CCA_OWNER_QUEUE,
                NULL, "operator_offline");
    assert_true(mv.v[0].requeued);
    assert_int_equal(mv.v[0].position, 4);
    assert_queue(d, (const unsigned[]){2, 5, 6, 10, 1, 3, 4}, 7);

    v = cca_desk_queue_view(d, NOW + 11 * SEC, 3);
    items = json_object_get(v, "items");
    assert_int_equal(json_integer_value(json_object_get(v, "length")), 7);
    assert_int_equal(json_array_size(items), 3); /* limit */
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(items, 0), "priority")),
        "urgent");
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(items, 0), "waiting_s")), 9);
    assert_true(json_is_null(json_object_get(json_array_get(items, 0), "language")));
    assert_true(json_is_null(json_object_get(json_array_get(items, 0), "skill")));
    assert_true(json_is_false(json_object_get(json_array_get(items, 0), "requeued")));
    json_decref(v);
    v = cca_desk_queue_view(d, NOW + 11 * SEC, 10);
    items = json_object_get(v, "items");
    assert_true(json_is_true(json_object_get(json_array_get(items, 3), "requeued")));
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(items, 3), "priority")),
        "normal");
    /* waiting since the escalation, kept across the requeue */
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(items, 3), "waiting_s")), 11);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(items, 6), "priority")), "low");
    json_decref(v);

    /* the sweep serves that order: one seat at a time */
    mv.n = 0;
    assert_int_equal(op_status(d, &a, CCA_OPERATOR_AVAILABLE, NOW + 20 * SEC, &mv),
                     CCA_OK);
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 2, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "backlog");
    assert_string_equal(mv.v[0].actor, "system");
    assert_queue(d, (const unsigned[]){5, 6, 10, 1, 3, 4}, 6);

    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    cca_desk_free(d);
}

/* Language and skill codes show in the queue view. */
static void test_queue_view_needs(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct cca_desk_need n =
        need_of(EN, CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SALES), CCA_PRIORITY_HIGH);
    json_t *v;
    json_t *it;

    (void)state;
    assert_int_equal(esc(d, 1, &n, NOW, &mv), CCA_DESK_QUEUED);
    v = cca_desk_queue_view(d, NOW, 10);
    it = json_array_get(json_object_get(v, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(it, "language")), "en");
    assert_string_equal(json_string_value(json_object_get(it, "skill")), "sales");
    assert_string_equal(json_string_value(json_object_get(it, "priority")), "high");
    json_decref(v);
    cca_desk_moves_cleanup(&mv);
    cca_desk_free(d);
}

/* ---- the backlog sweep --------------------------------------------------------- */

static void test_sweep_on_available(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct op a;

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 2, CCA_OPERATOR_OFFLINE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    for (unsigned i = 1; i <= 3; i++)
        assert_int_equal(esc(d, i, &ANY, NOW + i * SEC, &mv), CCA_DESK_QUEUED);
    /* with nobody on shift the estimate is unknown */
    assert_true(mv.v[0].eta_s < 0);
    mv.n = 0;
    /* busy: still nothing */
    assert_int_equal(op_status(d, &a, CCA_OPERATOR_BUSY, NOW + 5 * SEC, &mv), CCA_OK);
    assert_int_equal(mv.n, 0);
    /* available: the two heads, up to max_dialogs */
    assert_int_equal(op_status(d, &a, CCA_OPERATOR_AVAILABLE, NOW + 6 * SEC, &mv),
                     CCA_OK);
    assert_int_equal(mv.n, 2);
    assert_move(&mv.v[0], 1, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "backlog");
    assert_move(&mv.v[1], 2, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "backlog");
    assert_string_equal(mv.v[1].operator_name, "Анна");
    assert_int_equal(mv.v[1].at_ms, NOW + 6 * SEC);
    assert_int_equal(open_of(d, &a), 2);
    assert_queue(d, (const unsigned[]){3}, 1);
    /* unknown operator */
    {
        struct op ghost;

        op_init(&ghost, 99, "Ghost", RU, 0, 1, CCA_OPERATOR_AVAILABLE);
        assert_int_equal(cca_desk_update_operator(d, ghost.doc, "admin", NOW, &mv),
                         CCA_ERR_NOT_FOUND);
        op_free(&ghost);
    }
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    cca_desk_free(d);
}

static void test_sweep_on_register(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct op b;
    struct op c;

    (void)state;
    for (unsigned i = 1; i <= 3; i++)
        assert_int_equal(esc(d, i, &ANY, NOW + i * SEC, &mv), CCA_DESK_QUEUED);
    mv.n = 0;
    /* registering an offline operator takes nothing */
    op_init(&c, 3, "Вера", RU | EN, 0, 5, CCA_OPERATOR_OFFLINE);
    assert_int_equal(cca_desk_add_operator(d, c.doc, NOW + 4 * SEC, &mv), CCA_OK);
    assert_int_equal(mv.n, 0);
    /* an available one: the sweep */
    op_init(&b, 2, "Борис", RU | EN, 0, 2, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, b.doc, NOW + 5 * SEC, &mv), CCA_OK);
    assert_int_equal(mv.n, 2);
    assert_move(&mv.v[0], 1, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                b.id, "backlog");
    assert_move(&mv.v[1], 2, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                b.id, "backlog");
    assert_queue(d, (const unsigned[]){3}, 1);
    assert_int_equal(open_of(d, &b), 2);
    assert_int_equal(open_of(d, &c), 0);
    cca_desk_moves_cleanup(&mv);
    op_free(&b);
    op_free(&c);
    cca_desk_free(d);
}

static void test_sweep_on_close(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct cca_desk_operator_info info;
    struct op a;
    char id[37];

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 1, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_int_equal(esc(d, 1, &ANY, NOW, &mv), CCA_DESK_ASSIGNED);
    assert_int_equal(esc(d, 2, &ANY, NOW + SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 3, &ANY, NOW + 2 * SEC, &mv), CCA_DESK_QUEUED);
    mv.n = 0;
    /* close 1: no move for it, 2 goes to Анна at once */
    did(id, 1);
    assert_true(cca_desk_release(d, id, false, "closed", "client", NOW + 60 * SEC, &mv));
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 2, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "backlog");
    assert_owner(d, 1, CCA_OWNER_AGENT, NULL);
    assert_owner(d, 2, CCA_OWNER_OPERATOR, a.id);
    assert_true(cca_desk_operator(d, a.id, &info));
    assert_int_equal(info.open_dialogs, 1);
    assert_int_equal(info.last_closed_ms, NOW + 60 * SEC);
    {
        struct cca_desk_stats st;

        cca_desk_get_stats(d, &st);
        assert_true(fabs(st.mean_handle_s - 60.0) < 1e-9); /* the one measured */
    }
    /* released again: the desk no longer holds it */
    assert_false(cca_desk_release(d, id, false, "closed", "client", NOW + 61 * SEC, &mv));
    assert_int_equal(mv.n, 1);
    /* hand 2 back to the AI: a HANDBACK move, then 3 is assigned */
    mv.n = 0;
    did(id, 2);
    assert_true(cca_desk_release(d, id, true, "operator_done", "operator:x",
                                 NOW + 70 * SEC, &mv));
    assert_int_equal(mv.n, 2);
    assert_move(&mv.v[0], 2, CCA_OWNER_EV_HANDBACK, CCA_OWNER_OPERATOR, CCA_OWNER_AGENT,
                NULL, "operator_done");
    assert_string_equal(mv.v[0].prev_operator_id, a.id);
    assert_string_equal(mv.v[0].actor, "operator:x");
    assert_move(&mv.v[1], 3, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "backlog");
    /* a hand-back is not a close */
    assert_true(cca_desk_operator(d, a.id, &info));
    assert_int_equal(info.last_closed_ms, NOW + 60 * SEC);
    /* a queued dialog handed back (the customer stopped waiting) */
    assert_int_equal(esc(d, 4, &ANY, NOW + 80 * SEC, &mv), CCA_DESK_QUEUED);
    mv.n = 0;
    did(id, 4);
    assert_true(
        cca_desk_release(d, id, true, "customer_left", "customer", NOW + 81 * SEC, &mv));
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 4, CCA_OWNER_EV_HANDBACK, CCA_OWNER_QUEUE, CCA_OWNER_AGENT,
                NULL, "customer_left");
    assert_string_equal(mv.v[0].prev_operator_id, "");
    assert_queue(d, NULL, 0);
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    cca_desk_free(d);
}

static void test_sweep_skips_mismatch(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    uint32_t sales = CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SALES);
    uint32_t tech = CCA_OPERATOR_SKILL_BIT(CCA_AGENT_TECH_SUPPORT);
    struct cca_desk_need ru = need_of(RU, 0, CCA_PRIORITY_NORMAL);
    struct cca_desk_need en = need_of(EN, 0, CCA_PRIORITY_NORMAL);
    struct cca_desk_need en_tech = need_of(EN, tech, CCA_PRIORITY_NORMAL);
    struct cca_desk_need en_sales = need_of(EN, sales, CCA_PRIORITY_NORMAL);
    struct op e;

    (void)state;
    assert_int_equal(esc(d, 1, &ru, NOW + 1 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 2, &en_tech, NOW + 2 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 3, &ru, NOW + 3 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 4, &en_sales, NOW + 4 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 5, &en, NOW + 5 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 6, &en, NOW + 6 * SEC, &mv), CCA_DESK_QUEUED);
    mv.n = 0;
    /* English-only sales operator, two seats: skips 1, 2 (tech), 3 -> 4 and 5 */
    op_init(&e, 1, "Emma", EN, sales, 2, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, e.doc, NOW + 10 * SEC, &mv), CCA_OK);
    assert_int_equal(mv.n, 2);
    assert_move(&mv.v[0], 4, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                e.id, "backlog");
    assert_move(&mv.v[1], 5, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                e.id, "backlog");
    assert_queue(d, (const unsigned[]){1, 2, 3, 6}, 4);
    /* a new Russian dialog does not go to her even with a seat free */
    {
        char id[37];

        did(id, 4);
        assert_true(
            cca_desk_release(d, id, false, "closed", "client", NOW + 20 * SEC, &mv));
        /* the seat went to 6 */
        assert_int_equal(mv.n, 3);
        assert_move(&mv.v[2], 6, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                    e.id, "backlog");
        did(id, 5);
        assert_true(
            cca_desk_release(d, id, false, "closed", "client", NOW + 21 * SEC, &mv));
        assert_int_equal(mv.n, 3); /* nothing eligible left for her */
        assert_int_equal(open_of(d, &e), 1);
        assert_int_equal(esc(d, 7, &ru, NOW + 22 * SEC, &mv), CCA_DESK_QUEUED);
        assert_int_equal(esc(d, 8, &en, NOW + 23 * SEC, &mv), CCA_DESK_ASSIGNED);
        assert_string_equal(mv.v[mv.n - 1].operator_id, e.id);
    }
    assert_queue(d, (const unsigned[]){1, 2, 3, 7}, 4);
    cca_desk_moves_cleanup(&mv);
    op_free(&e);
    cca_desk_free(d);
}

/* A full queue does not stop a dialog that an operator can take at once. */
static void test_full_queue_still_assigns(void **state)
{
    struct cca_desk *d = desk_new(1);
    struct cca_desk_moves mv = {0};
    struct cca_desk_need ru = need_of(RU, 0, CCA_PRIORITY_NORMAL);
    struct cca_desk_need en = need_of(EN, 0, CCA_PRIORITY_NORMAL);
    struct op e;

    (void)state;
    op_init(&e, 1, "Emma", EN, 0, 1, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, e.doc, NOW, &mv), CCA_OK);
    assert_int_equal(esc(d, 1, &ru, NOW, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 2, &ru, NOW, &mv), CCA_DESK_FULL);
    assert_int_equal(esc(d, 3, &en, NOW, &mv), CCA_DESK_ASSIGNED);
    assert_int_equal(esc(d, 4, &en, NOW, &mv), CCA_DESK_FULL);
    assert_int_equal(mv.n, 2);
    cca_desk_moves_cleanup(&mv);
    op_free(&e);
    cca_desk_free(d);
}

/* Lowering max_dialogs keeps the open dialogs; no new ones until below it. */
static void test_lower_max_keeps_open(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct cca_operator_patch patch = {.has_max_dialogs = true, .max_dialogs = 1};
    struct op a;
    json_t *doc;
    char id[37];
    char got[37];

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 3, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    for (unsigned i = 1; i <= 3; i++)
        assert_int_equal(esc(d, i, &ANY, NOW + i * SEC, &mv), CCA_DESK_ASSIGNED);
    assert_int_equal(esc(d, 4, &ANY, NOW + 4 * SEC, &mv), CCA_DESK_QUEUED);
    doc = cca_operator_with_patch(a.doc, &patch, NOW + 5 * SEC);
    json_decref(a.doc);
    a.doc = doc;
    mv.n = 0;
    assert_int_equal(cca_desk_update_operator(d, doc, "admin", NOW + 5 * SEC, &mv),
                     CCA_OK);
    assert_int_equal(mv.n, 0);
    assert_int_equal(open_of(d, &a), 3);
    assert_int_equal(cca_desk_take(d, a.id, NULL, NOW, got, &mv), CCA_ERR_LIMIT);
    /* closing two leaves one: still at the limit */
    did(id, 1);
    assert_true(cca_desk_release(d, id, false, "closed", "client", NOW + 6 * SEC, &mv));
    did(id, 2);
    assert_true(cca_desk_release(d, id, false, "closed", "client", NOW + 7 * SEC, &mv));
    assert_int_equal(mv.n, 0);
    assert_int_equal(open_of(d, &a), 1);
    /* the last one: a seat, 4 goes to her */
    did(id, 3);
    assert_true(cca_desk_release(d, id, true, "done", "client", NOW + 8 * SEC, &mv));
    assert_int_equal(mv.n, 2);
    assert_move(&mv.v[1], 4, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "backlog");
    assert_int_equal(open_of(d, &a), 1);
    /* raising it sweeps */
    assert_int_equal(esc(d, 5, &ANY, NOW + 9 * SEC, &mv), CCA_DESK_QUEUED);
    patch.max_dialogs = 2;
    doc = cca_operator_with_patch(a.doc, &patch, NOW + 10 * SEC);
    json_decref(a.doc);
    a.doc = doc;
    mv.n = 0;
    assert_int_equal(cca_desk_update_operator(d, doc, "admin", NOW + 10 * SEC, &mv),
                     CCA_OK);
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 5, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "backlog");
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    cca_desk_free(d);
}

/* ---- offline, revoke, authentication ------------------------------------------ */

static void test_offline_requeues(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct op a;
    struct op b;
    json_t *l;

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 2, CCA_OPERATOR_AVAILABLE);
    op_init(&b, 2, "Борис", RU | EN, 0, 1, CCA_OPERATOR_BUSY);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_int_equal(cca_desk_add_operator(d, b.doc, NOW, &mv), CCA_OK);
    assert_int_equal(esc(d, 1, &ANY, NOW + 1 * SEC, &mv), CCA_DESK_ASSIGNED);
    assert_int_equal(esc(d, 2, &ANY, NOW + 2 * SEC, &mv), CCA_DESK_ASSIGNED);
    assert_int_equal(esc(d, 3, &ANY, NOW + 3 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 4, &ANY, NOW + 4 * SEC, &mv), CCA_DESK_QUEUED);
    mv.n = 0;
    assert_int_equal(op_status(d, &a, CCA_OPERATOR_OFFLINE, NOW + 10 * SEC, &mv), CCA_OK);
    assert_int_equal(mv.n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(mv.v[i].event, CCA_OWNER_EV_REQUEUE);
        assert_int_equal(mv.v[i].from, CCA_OWNER_OPERATOR);
        assert_int_equal(mv.v[i].to, CCA_OWNER_QUEUE);
        assert_true(mv.v[i].requeued);
        assert_string_equal(mv.v[i].reason, "operator_offline");
        assert_string_equal(mv.v[i].prev_operator_id, a.id);
        assert_string_equal(mv.v[i].operator_id, "");
        assert_string_equal(mv.v[i].actor, "admin");
        assert_true(mv.v[i].position >= 1 && mv.v[i].position <= 2);
    }
    /* both back at the head, in waiting order, before 3 and 4 */
    assert_queue(d, (const unsigned[]){1, 2, 3, 4}, 4);
    assert_int_equal(open_of(d, &a), 0);
    l = cca_desk_operator_dialogs(d, a.id);
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);

    /* Борис takes 1, then is revoked */
    {
        char got[37];
        char id[37];

        did(id, 1);
        mv.n = 0;
        assert_int_equal(cca_desk_take(d, b.id, NULL, NOW + 20 * SEC, got, &mv), CCA_OK);
        assert_string_equal(got, id);
        assert_true(cca_desk_authenticate(d, b.hash, NOW + 21 * SEC, got));
        assert_string_equal(got, b.id);
        mv.n = 0;
        assert_int_equal(cca_desk_remove_operator(d, b.id, "admin", NOW + 30 * SEC, &mv),
                         CCA_OK);
        assert_int_equal(mv.n, 1);
        assert_move(&mv.v[0], 1, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR,
                    CCA_OWNER_QUEUE, NULL, "operator_revoked");
        assert_string_equal(mv.v[0].prev_operator_id, b.id);
        assert_string_equal(mv.v[0].actor, "admin");
        assert_true(mv.v[0].requeued);
        assert_int_equal(mv.v[0].position, 1);
        assert_queue(d, (const unsigned[]){1, 2, 3, 4}, 4);
        /* gone: no longer authenticates, unknown everywhere */
        assert_false(cca_desk_authenticate(d, b.hash, NOW + 31 * SEC, got));
        assert_false(cca_desk_operator(d, b.id, &(struct cca_desk_operator_info){0}));
        assert_int_equal(cca_desk_remove_operator(d, b.id, "admin", NOW, &mv),
                         CCA_ERR_NOT_FOUND);
        assert_true(cca_desk_visible(d, id, a.id)); /* queued: visible */
    }
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    op_free(&b);
    cca_desk_free(d);
}

/* Removing an available operator with a free seat elsewhere sweeps the requeued. */
static void test_remove_sweeps(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct op a;
    struct op b;

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 1, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_int_equal(esc(d, 1, &ANY, NOW + SEC, &mv), CCA_DESK_ASSIGNED);
    op_init(&b, 2, "Борис", RU | EN, 0, 1, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, b.doc, NOW + 2 * SEC, &mv), CCA_OK);
    mv.n = 0;
    assert_int_equal(cca_desk_remove_operator(d, a.id, "admin", NOW + 3 * SEC, &mv),
                     CCA_OK);
    assert_int_equal(mv.n, 2);
    assert_move(&mv.v[0], 1, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR, CCA_OWNER_QUEUE,
                NULL, "operator_revoked");
    assert_move(&mv.v[1], 1, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                b.id, "backlog");
    assert_owner(d, 1, CCA_OWNER_OPERATOR, b.id);
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    op_free(&b);
    cca_desk_free(d);
}

static void test_authenticate(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct cca_desk_operator_info info;
    struct op a;
    struct op b;
    char wrong[65];
    char got[37] = "";

    (void)state;
    op_init(&a, 1, "Анна", RU, 0, 1, CCA_OPERATOR_OFFLINE);
    op_init(&b, 2, "Борис", RU, 0, 1, CCA_OPERATOR_OFFLINE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_int_equal(cca_desk_add_operator(d, b.doc, NOW, &mv), CCA_OK);
    assert_true(cca_desk_authenticate(d, a.hash, NOW + 5 * SEC, got));
    assert_string_equal(got, a.id);
    assert_true(cca_desk_operator(d, a.id, &info));
    assert_int_equal(info.last_seen_ms, NOW + 5 * SEC);
    assert_true(cca_desk_authenticate(d, b.hash, NOW, got));
    assert_string_equal(got, b.id);
    /* a wrong hash, a changed digit, a short string, empty */
    cca_operator_token_hash("cco_not_issued", 14, wrong);
    (void)snprintf(got, sizeof(got), "%s", "unchanged");
    assert_false(cca_desk_authenticate(d, wrong, NOW, got));
    assert_string_equal(got, "unchanged");
    (void)snprintf(wrong, sizeof(wrong), "%s", a.hash);
    wrong[63] = wrong[63] == '0' ? '1' : '0';
    assert_false(cca_desk_authenticate(d, wrong, NOW, got));
    wrong[63] = '\0';
    assert_false(cca_desk_authenticate(d, wrong, NOW, got));
    assert_false(cca_desk_authenticate(d, "", NOW, got));
    /* a new token replaces the old one */
    {
        char hash[65];
        json_t *doc;

        cca_operator_token_hash("cco_rotated", 11, hash);
        doc = cca_operator_with_token(a.doc, hash, NOW);
        json_decref(a.doc);
        a.doc = doc;
        assert_int_equal(cca_desk_update_operator(d, a.doc, "admin", NOW, &mv), CCA_OK);
        assert_false(cca_desk_authenticate(d, a.hash, NOW, got));
        assert_true(cca_desk_authenticate(d, hash, NOW, got));
        assert_string_equal(got, a.id);
    }
    /* touch records last seen */
    cca_desk_touch(d, b.id, NOW + 99 * SEC);
    assert_true(cca_desk_operator(d, b.id, &info));
    assert_int_equal(info.last_seen_ms, NOW + 99 * SEC);
    cca_desk_touch(d, "nobody", NOW); /* harmless */
    assert_int_equal(mv.n, 0);
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    op_free(&b);
    cca_desk_free(d);
}

/* ---- reply timeouts ------------------------------------------------------------- */

static void test_timeouts(void **state)
{
    const int64_t timeout = 120 * SEC;
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct cca_desk_operator_info info;
    struct op a;
    struct op b;
    json_t *busy;
    double wait = -1;
    char id[37];

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 2, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_int_equal(esc(d, 1, &ANY, NOW, &mv), CCA_DESK_ASSIGNED);
    assert_int_equal(esc(d, 2, &ANY, NOW, &mv), CCA_DESK_ASSIGNED);
    op_init(&b, 2, "Борис", RU | EN, 0, 1, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, b.doc, NOW + SEC, &mv), CCA_OK);
    /* Анна answers in 2 */
    did(id, 2);
    assert_true(cca_desk_replied(d, id, NOW + 3 * SEC, &wait));
    assert_true(fabs(wait - 3.0) < 1e-9);
    wait = -1;
    assert_false(cca_desk_replied(d, id, NOW + 4 * SEC, &wait)); /* only the first */
    assert_true(wait == -1);
    did(id, 99);
    assert_false(cca_desk_replied(d, id, NOW + 4 * SEC, &wait)); /* unknown */

    /* not yet */
    mv.n = 0;
    busy = json_array();
    cca_desk_timeouts(d, NOW + timeout - 1, timeout, &mv, busy);
    assert_int_equal(mv.n, 0);
    assert_int_equal(json_array_size(busy), 0);
    /* 1 timed out: requeued at the head, Анна busy, then Борис gets it */
    cca_desk_timeouts(d, NOW + timeout, timeout, &mv, busy);
    assert_int_equal(mv.n, 2);
    assert_move(&mv.v[0], 1, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR, CCA_OWNER_QUEUE,
                NULL, "reply_timeout");
    assert_true(mv.v[0].requeued);
    assert_string_equal(mv.v[0].actor, "system");
    assert_string_equal(mv.v[0].prev_operator_id, a.id);
    assert_int_equal(mv.v[0].position, 1);
    assert_move(&mv.v[1], 1, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                b.id, "backlog");
    assert_int_equal(json_array_size(busy), 1);
    assert_string_equal(json_string_value(json_array_get(busy, 0)), a.id);
    assert_true(cca_desk_operator(d, a.id, &info));
    assert_int_equal(info.status, CCA_OPERATOR_BUSY);
    assert_int_equal(info.open_dialogs, 1); /* keeps 2, which was answered */
    assert_owner(d, 2, CCA_OWNER_OPERATOR, a.id);
    json_decref(busy);

    /* Борис's timer started at his assignment: a later run is quiet until then */
    mv.n = 0;
    busy = json_array();
    cca_desk_timeouts(d, NOW + 2 * timeout - 1, timeout, &mv, busy);
    assert_int_equal(mv.n, 0);
    /* he does not answer either: back to the queue, nobody free */
    cca_desk_timeouts(d, NOW + 2 * timeout, timeout, &mv, busy);
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 1, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR, CCA_OWNER_QUEUE,
                NULL, "reply_timeout");
    assert_string_equal(mv.v[0].prev_operator_id, b.id);
    assert_int_equal(json_array_size(busy), 1);
    assert_string_equal(json_string_value(json_array_get(busy, 0)), b.id);
    assert_queue(d, (const unsigned[]){1}, 1);
    json_decref(busy);

    /* a queued dialog never times out; a replied one neither */
    mv.n = 0;
    busy = json_array();
    cca_desk_timeouts(d, NOW + 100 * timeout, timeout, &mv, busy);
    assert_int_equal(mv.n, 0);
    assert_int_equal(json_array_size(busy), 0);
    json_decref(busy);
    /* replied on a queued dialog: false */
    did(id, 1);
    assert_false(cca_desk_replied(d, id, NOW, &wait));

    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    op_free(&b);
    cca_desk_free(d);
}

/* ---- take and transfer ----------------------------------------------------------- */

static void test_take(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct cca_desk_need ru = need_of(RU, 0, CCA_PRIORITY_NORMAL);
    struct cca_desk_need en = need_of(EN, 0, CCA_PRIORITY_NORMAL);
    struct op a;
    struct op e;
    char got[37];
    char id[37];
    char actor[48];

    (void)state;
    /* busy operators take nothing by push but may pull */
    op_init(&a, 1, "Анна", RU | EN, 0, 1, CCA_OPERATOR_BUSY);
    op_init(&e, 2, "Emma", EN, 0, 2, CCA_OPERATOR_BUSY);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_int_equal(cca_desk_add_operator(d, e.doc, NOW, &mv), CCA_OK);

    /* empty queue */
    assert_int_equal(cca_desk_take(d, a.id, NULL, NOW, got, &mv), CCA_ERR_NOT_FOUND);
    assert_int_equal(cca_desk_take(d, "nobody", NULL, NOW, got, &mv), CCA_ERR_NOT_FOUND);

    assert_int_equal(esc(d, 1, &ru, NOW + 1 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 2, &en, NOW + 2 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 3, &en, NOW + 3 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 4, &ru, NOW + 4 * SEC, &mv), CCA_DESK_QUEUED);
    mv.n = 0;

    /* a given queued dialog */
    did(id, 2);
    assert_int_equal(cca_desk_take(d, a.id, id, NOW + 10 * SEC, got, &mv), CCA_OK);
    assert_string_equal(got, id);
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 2, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "operator_take");
    (void)snprintf(actor, sizeof(actor), "operator:%s", a.id);
    assert_string_equal(mv.v[0].actor, actor);
    assert_string_equal(mv.v[0].operator_name, "Анна");
    assert_queue(d, (const unsigned[]){1, 3, 4}, 3);
    /* at max_dialogs */
    assert_int_equal(cca_desk_take(d, a.id, NULL, NOW, got, &mv), CCA_ERR_LIMIT);
    did(id, 1);
    assert_int_equal(cca_desk_take(d, a.id, id, NOW, got, &mv), CCA_ERR_LIMIT);
    assert_int_equal(mv.n, 1);

    /* the first eligible one: Emma skips Russian 1 and gets 3 */
    did(id, 3);
    assert_int_equal(cca_desk_take(d, e.id, NULL, NOW + 11 * SEC, got, &mv), CCA_OK);
    assert_string_equal(got, id);
    assert_move(&mv.v[1], 3, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                e.id, "operator_take");
    /* nothing left for her */
    assert_int_equal(cca_desk_take(d, e.id, NULL, NOW, got, &mv), CCA_ERR_NOT_FOUND);
    /* not queued: held by someone, or unknown */
    did(id, 2);
    assert_int_equal(cca_desk_take(d, e.id, id, NOW, got, &mv), CCA_ERR_CONFLICT);
    did(id, 3);
    assert_int_equal(cca_desk_take(d, e.id, id, NOW, got, &mv), CCA_ERR_CONFLICT);
    did(id, 42);
    assert_int_equal(cca_desk_take(d, e.id, id, NOW, got, &mv), CCA_ERR_CONFLICT);
    assert_int_equal(mv.n, 2);
    assert_owner(d, 2, CCA_OWNER_OPERATOR, a.id);
    assert_owner(d, 3, CCA_OWNER_OPERATOR, e.id);
    assert_queue(d, (const unsigned[]){1, 4}, 2);

    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    op_free(&e);
    cca_desk_free(d);
}

static void test_transfer(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct op a;
    struct op b;
    struct op c;
    struct op f;
    char id[37];

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 1, CCA_OPERATOR_AVAILABLE);
    op_init(&b, 2, "Борис", RU | EN, 0, 2, CCA_OPERATOR_BUSY);
    op_init(&c, 3, "Вера", RU | EN, 0, 2, CCA_OPERATOR_OFFLINE);
    op_init(&f, 4, "Фёдор", RU | EN, 0, 1, CCA_OPERATOR_BUSY);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_int_equal(cca_desk_add_operator(d, b.doc, NOW, &mv), CCA_OK);
    assert_int_equal(cca_desk_add_operator(d, c.doc, NOW, &mv), CCA_OK);
    assert_int_equal(cca_desk_add_operator(d, f.doc, NOW, &mv), CCA_OK);
    assert_int_equal(esc(d, 1, &ANY, NOW + 1 * SEC, &mv), CCA_DESK_ASSIGNED); /* Анна */
    assert_int_equal(esc(d, 2, &ANY, NOW + 2 * SEC, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 3, &ANY, NOW + 3 * SEC, &mv), CCA_DESK_QUEUED);
    {
        char got[37];

        did(id, 3);
        assert_int_equal(cca_desk_take(d, f.id, id, NOW + 4 * SEC, got, &mv), CCA_OK);
    }
    mv.n = 0;
    did(id, 1);
    /* refusals: unknown, offline, full, the same operator */
    assert_int_equal(cca_desk_transfer(d, id, "nobody", "admin", NOW, &mv),
                     CCA_ERR_NOT_FOUND);
    assert_int_equal(cca_desk_transfer(d, id, c.id, "admin", NOW, &mv), CCA_ERR_LIMIT);
    assert_int_equal(cca_desk_transfer(d, id, f.id, "admin", NOW, &mv), CCA_ERR_LIMIT);
    assert_int_equal(cca_desk_transfer(d, id, a.id, "admin", NOW, &mv), CCA_ERR_CONFLICT);
    /* not operator-owned: queued, or not held at all */
    did(id, 2);
    assert_int_equal(cca_desk_transfer(d, id, b.id, "admin", NOW, &mv), CCA_ERR_CONFLICT);
    did(id, 50);
    assert_int_equal(cca_desk_transfer(d, id, b.id, "admin", NOW, &mv), CCA_ERR_CONFLICT);
    assert_int_equal(mv.n, 0);

    /* OK to a busy operator with a free seat; Анна's seat takes 2 */
    did(id, 1);
    assert_int_equal(cca_desk_transfer(d, id, b.id, "operator:x", NOW + 10 * SEC, &mv),
                     CCA_OK);
    assert_int_equal(mv.n, 2);
    assert_move(&mv.v[0], 1, CCA_OWNER_EV_TRANSFER, CCA_OWNER_OPERATOR,
                CCA_OWNER_OPERATOR, b.id, "transfer");
    assert_string_equal(mv.v[0].operator_name, "Борис");
    assert_string_equal(mv.v[0].prev_operator_id, a.id);
    assert_string_equal(mv.v[0].actor, "operator:x");
    assert_move(&mv.v[1], 2, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "backlog");
    assert_owner(d, 1, CCA_OWNER_OPERATOR, b.id);
    assert_owner(d, 2, CCA_OWNER_OPERATOR, a.id);
    assert_int_equal(open_of(d, &a), 1);
    assert_int_equal(open_of(d, &b), 1);
    /* the new owner's reply timer starts at the transfer */
    {
        json_t *busy = json_array();

        mv.n = 0;
        cca_desk_timeouts(d, NOW + 10 * SEC + 60 * SEC - 1, 60 * SEC, &mv, busy);
        for (size_t i = 0; i < mv.n; i++) {
            did(id, 1);
            assert_string_not_equal(mv.v[i].dialog_id, id);
        }
        json_decref(busy);
    }
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    op_free(&b);
    op_free(&c);
    op_free(&f);
    cca_desk_free(d);
}

/* ---- restart -------------------------------------------------------------------- */

static void test_load_after_restart(void **state)
{
    struct cca_desk *d = desk_new(100);
    struct cca_desk_moves mv = {0};
    struct cca_desk_need normal = need_of(0, 0, CCA_PRIORITY_NORMAL);
    struct cca_desk_need urgent = need_of(0, 0, CCA_PRIORITY_URGENT);
    struct op a;
    struct op b;
    struct op c;
    struct op gone;
    char id[37];

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 2, CCA_OPERATOR_AVAILABLE);
    op_init(&b, 2, "Борис", RU | EN, 0, 2, CCA_OPERATOR_OFFLINE);
    op_init(&c, 3, "Вера", RU | EN, 0, 1, CCA_OPERATOR_BUSY);
    op_init(&gone, 4, "Gone", RU | EN, 0, 1, CCA_OPERATOR_AVAILABLE); /* never loaded */
    cca_desk_load_operator(d, a.doc);
    cca_desk_load_operator(d, b.doc);
    cca_desk_load_operator(d, c.doc);
    cca_desk_load_operator(d, a.doc); /* twice: ignored */

    /* queued ones, loaded in no particular order */
    did(id, 1);
    cca_desk_load_dialog(d, id, &normal, NULL, false, NOW + 100, 0, 0, false, &mv);
    did(id, 2);
    cca_desk_load_dialog(d, id, &urgent, NULL, false, NOW + 200, 0, 0, false, &mv);
    did(id, 3);
    cca_desk_load_dialog(d, id, &normal, NULL, true, NOW + 300, 0, 0, false, &mv);
    did(id, 4);
    cca_desk_load_dialog(d, id, &normal, NULL, false, NOW + 50, 0, 0, false, &mv);
    assert_int_equal(mv.n, 0);
    assert_queue(d, (const unsigned[]){2, 3, 4, 1}, 4);
    /* owned ones */
    did(id, 11); /* Анна's, kept */
    cca_desk_load_dialog(d, id, &normal, a.id, false, NOW + 10, 0, NOW + 20, false, &mv);
    did(id, 14); /* Вера (busy) keeps hers, answered */
    cca_desk_load_dialog(d, id, &normal, c.id, false, NOW + 10, 0, NOW + 20, true, &mv);
    assert_int_equal(mv.n, 0);
    did(id, 12); /* Борис is offline: requeued */
    cca_desk_load_dialog(d, id, &normal, b.id, false, NOW + 250, 0, NOW + 260, false,
                         &mv);
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 12, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR, CCA_OWNER_QUEUE,
                NULL, "operator_offline");
    assert_string_equal(mv.v[0].prev_operator_id, b.id);
    assert_true(mv.v[0].requeued);
    did(id, 13); /* an unknown operator: requeued */
    cca_desk_load_dialog(d, id, &normal, gone.id, false, NOW + 260, 0, NOW + 270, false,
                         &mv);
    assert_int_equal(mv.n, 2);
    assert_move(&mv.v[1], 13, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR, CCA_OWNER_QUEUE,
                NULL, "operator_revoked");
    assert_string_equal(mv.v[1].prev_operator_id, gone.id);
    did(id, 15); /* over Вера's limit: requeued */
    cca_desk_load_dialog(d, id, &normal, c.id, false, NOW + 270, 0, NOW + 280, false,
                         &mv);
    assert_int_equal(mv.n, 3);
    assert_int_equal(mv.v[2].event, CCA_OWNER_EV_REQUEUE);
    assert_string_equal(mv.v[2].prev_operator_id, c.id);
    /* loaded twice: ignored */
    did(id, 11);
    cca_desk_load_dialog(d, id, &normal, NULL, false, NOW, 0, 0, false, &mv);
    assert_int_equal(mv.n, 3);
    assert_owner(d, 11, CCA_OWNER_OPERATOR, a.id);
    assert_owner(d, 14, CCA_OWNER_OPERATOR, c.id);
    assert_int_equal(open_of(d, &a), 1);
    assert_int_equal(open_of(d, &b), 0);
    assert_int_equal(open_of(d, &c), 1);
    /* requeued normals by waiting time, then the rest */
    assert_queue(d, (const unsigned[]){2, 12, 13, 15, 3, 4, 1}, 7);

    /* start: Анна's free seat takes the head */
    mv.n = 0;
    cca_desk_start(d, NOW + 1000, &mv);
    assert_int_equal(mv.n, 1);
    assert_move(&mv.v[0], 2, CCA_OWNER_EV_ASSIGN, CCA_OWNER_QUEUE, CCA_OWNER_OPERATOR,
                a.id, "backlog");
    assert_queue(d, (const unsigned[]){12, 13, 15, 3, 4, 1}, 6);
    {
        json_t *l = cca_desk_operator_dialogs(d, a.id);

        /* oldest assignment first: 11 (NOW + 20) before 2 (NOW + 1000) */
        assert_int_equal(json_array_size(l), 2);
        did(id, 11);
        assert_string_equal(json_string_value(json_array_get(l, 0)), id);
        did(id, 2);
        assert_string_equal(json_string_value(json_array_get(l, 1)), id);
        json_decref(l);
    }
    /* the loaded reply state: 11 times out from its assigned time, 14 never */
    {
        json_t *busy = json_array();

        mv.n = 0;
        cca_desk_timeouts(d, NOW + 20 + 120 * SEC, 120 * SEC, &mv, busy);
        assert_int_equal(mv.n, 1);
        assert_move(&mv.v[0], 11, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR,
                    CCA_OWNER_QUEUE, NULL, "reply_timeout");
        json_decref(busy);
    }
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    op_free(&b);
    op_free(&c);
    op_free(&gone);
    cca_desk_free(d);
}

/* ---- estimate and visibility ---------------------------------------------------- */

static void test_position_eta(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct op a;
    struct op b;
    size_t pos = 0;
    double eta = 0;
    char id[37];

    (void)state;
    assert_int_equal(esc(d, 1, &ANY, NOW, &mv), CCA_DESK_QUEUED);
    assert_int_equal(esc(d, 2, &ANY, NOW, &mv), CCA_DESK_QUEUED);
    did(id, 2);
    assert_true(cca_desk_position(d, id, &pos, &eta));
    assert_int_equal(pos, 2);
    assert_true(eta == -1); /* nobody at all */
    op_init(&a, 1, "Анна", RU | EN, 0, 2, CCA_OPERATOR_OFFLINE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_true(cca_desk_position(d, id, &pos, &eta));
    assert_true(eta == -1); /* nobody on shift */
    op_init(&b, 2, "Борис", RU | EN, 0, 2, CCA_OPERATOR_BUSY);
    assert_int_equal(cca_desk_add_operator(d, b.doc, NOW, &mv), CCA_OK);
    assert_true(cca_desk_position(d, id, &pos, &eta));
    assert_int_equal(pos, 2);
    /* 2 seats on shift, 300 s default handle: position 2 waits 300 s */
    assert_true(eta > 0);
    assert_true(fabs(eta - 300.0) < 1e-9);
    did(id, 1);
    assert_true(cca_desk_position(d, id, &pos, &eta));
    assert_int_equal(pos, 1);
    assert_true(fabs(eta - 150.0) < 1e-9);
    /* not queued: false */
    did(id, 9);
    assert_false(cca_desk_position(d, id, &pos, &eta));
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    op_free(&b);
    cca_desk_free(d);
}

static void test_visible(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    struct op a;
    struct op b;
    char id[37];

    (void)state;
    op_init(&a, 1, "Анна", RU | EN, 0, 1, CCA_OPERATOR_AVAILABLE);
    op_init(&b, 2, "Борис", RU | EN, 0, 1, CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_int_equal(esc(d, 1, &ANY, NOW, &mv), CCA_DESK_ASSIGNED); /* Анна */
    assert_int_equal(cca_desk_add_operator(d, b.doc, NOW, &mv), CCA_OK);
    assert_int_equal(esc(d, 2, &ANY, NOW, &mv), CCA_DESK_ASSIGNED); /* Борис */
    assert_int_equal(esc(d, 3, &ANY, NOW, &mv), CCA_DESK_QUEUED);
    assert_owner(d, 1, CCA_OWNER_OPERATOR, a.id);
    assert_owner(d, 2, CCA_OWNER_OPERATOR, b.id);
    did(id, 1);
    assert_true(cca_desk_visible(d, id, a.id));  /* own */
    assert_false(cca_desk_visible(d, id, b.id)); /* another's */
    did(id, 2);
    assert_false(cca_desk_visible(d, id, a.id));
    assert_true(cca_desk_visible(d, id, b.id));
    did(id, 3);
    assert_true(cca_desk_visible(d, id, a.id)); /* queued */
    assert_true(cca_desk_visible(d, id, b.id));
    did(id, 4);
    assert_false(cca_desk_visible(d, id, a.id)); /* with the AI */
    cca_desk_moves_cleanup(&mv);
    op_free(&a);
    op_free(&b);
    cca_desk_free(d);
}

/* ---- the random run -------------------------------------------------------------- */

#define R_OPS     20
#define R_DIALOGS 300
#define R_STEPS   4000

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* Moves seen by kind, and the most dialogs queued / held at once. */
static size_t r_events[CCA_OWNER_EV__COUNT];
static size_t r_max_queued;
static size_t r_max_open;

struct shadow {
    enum cca_owner owner;
    int op; /* index into ops, -1 */
};

/* Mostly a dialog the shadow says @owner holds (when there is one), else any. */
static unsigned pick_dialog(const struct shadow *sh, enum cca_owner owner)
{
    unsigned v[R_DIALOGS];
    unsigned n = 0;

    for (unsigned i = 0; i < R_DIALOGS; i++) {
        if (sh[i].owner == owner)
            v[n++] = i;
    }
    if (n == 0 || rnd_below(5) == 0)
        return rnd_below(R_DIALOGS);
    return v[rnd_below(n)];
}

static int op_index(struct op *ops, const char *id)
{
    for (int i = 0; i < R_OPS; i++) {
        if (strcmp(ops[i].id, id) == 0)
            return i;
    }
    return -1;
}

/* Apply the moves to the shadow owners, each allowed by the state machine. */
static void shadow_apply(struct shadow *sh, struct op *ops,
                         const struct cca_desk_moves *mv, size_t from, unsigned step)
{
    for (size_t i = from; i < mv->n; i++) {
        const struct cca_desk_move *m = &mv->v[i];
        unsigned n = 0;
        enum cca_owner to;

        assert_int_equal(sscanf(m->dialog_id, "d0000000-0000-4000-8000-%12u", &n), 1);
        assert_true(n < R_DIALOGS);
        if (sh[n].owner != m->from)
            fail_msg("step %u: move %zu of %s from %d, shadow says %d", step, i,
                     m->dialog_id, m->from, sh[n].owner);
        assert_true(cca_owner_next(m->from, m->event, &to));
        assert_int_equal(to, m->to);
        if (m->from == CCA_OWNER_OPERATOR)
            assert_int_equal(op_index(ops, m->prev_operator_id), sh[n].op);
        r_events[m->event]++;
        sh[n].owner = m->to;
        sh[n].op = m->to == CCA_OWNER_OPERATOR ? op_index(ops, m->operator_id) : -1;
        if (m->to == CCA_OWNER_OPERATOR)
            assert_true(sh[n].op >= 0);
        if (m->to == CCA_OWNER_QUEUE)
            assert_true(m->position >= 1);
    }
}

static void check_invariants(struct cca_desk *d, struct op *ops, const bool *present,
                             const struct shadow *sh, unsigned step)
{
    int holder[R_DIALOGS];
    bool queued[R_DIALOGS] = {0};
    bool free_seat = false;
    size_t total_open = 0;
    json_t *v;
    json_t *items;
    size_t qn;
    struct cca_desk_stats st;

    for (int i = 0; i < R_DIALOGS; i++)
        holder[i] = -1;
    for (int k = 0; k < R_OPS; k++) {
        struct cca_desk_operator_info info;
        json_t *l;

        if (!present[k]) {
            assert_false(cca_desk_operator(d, ops[k].id, &info));
            continue;
        }
        assert_true(cca_desk_operator(d, ops[k].id, &info));
        if (info.open_dialogs > info.max_dialogs)
            fail_msg("step %u: operator %d holds %u > max %u", step, k, info.open_dialogs,
                     info.max_dialogs);
        if (info.status == CCA_OPERATOR_AVAILABLE && info.open_dialogs < info.max_dialogs)
            free_seat = true;
        l = cca_desk_operator_dialogs(d, ops[k].id);
        assert_int_equal(json_array_size(l), info.open_dialogs);
        for (size_t j = 0; j < json_array_size(l); j++) {
            const char *id = json_string_value(json_array_get(l, j));
            unsigned n = 0;
            char who[37];

            assert_int_equal(sscanf(id, "d0000000-0000-4000-8000-%12u", &n), 1);
            assert_true(n < R_DIALOGS);
            if (holder[n] != -1)
                fail_msg("step %u: dialog %u listed by operators %d and %d", step, n,
                         holder[n], k);
            holder[n] = k;
            assert_int_equal(cca_desk_owner(d, id, who), CCA_OWNER_OPERATOR);
            assert_string_equal(who, ops[k].id);
        }
        total_open += info.open_dialogs;
        json_decref(l);
    }
    v = cca_desk_queue_view(d, NOW, 100000);
    items = json_object_get(v, "items");
    qn = json_array_size(items);
    assert_int_equal(json_integer_value(json_object_get(v, "length")), qn);
    for (size_t j = 0; j < qn; j++) {
        json_t *it = json_array_get(items, j);
        const char *id = json_string_value(json_object_get(it, "dialog_id"));
        unsigned n = 0;

        assert_int_equal(json_integer_value(json_object_get(it, "position")), j + 1);
        assert_int_equal(sscanf(id, "d0000000-0000-4000-8000-%12u", &n), 1);
        assert_false(queued[n]);
        assert_int_equal(holder[n], -1);
        queued[n] = true;
        assert_int_equal(cca_desk_owner(d, id, NULL), CCA_OWNER_QUEUE);
    }
    json_decref(v);
    if (qn > 0 && free_seat)
        fail_msg("step %u: %zu queued while an available operator has a free seat", step,
                 qn);
    cca_desk_get_stats(d, &st);
    if (qn > r_max_queued)
        r_max_queued = qn;
    if (total_open > r_max_open)
        r_max_open = total_open;
    assert_int_equal(st.queued, qn);
    assert_int_equal(st.assigned, total_open);
    /* every dialog: the desk, the lists and the shadow of the moves agree */
    for (unsigned n = 0; n < R_DIALOGS; n++) {
        char id[37];
        enum cca_owner o;

        did(id, n);
        o = cca_desk_owner(d, id, NULL);
        if (o != sh[n].owner)
            fail_msg("step %u: dialog %u owner %d, moves say %d", step, n, o,
                     sh[n].owner);
        if (o == CCA_OWNER_OPERATOR) {
            assert_int_equal(holder[n], sh[n].op);
        } else {
            assert_int_equal(holder[n], -1);
            assert_int_equal(queued[n], o == CCA_OWNER_QUEUE);
        }
    }
}

static void test_random_invariants(void **state)
{
    const int64_t timeout = 90 * SEC;
    struct cca_desk *d = desk_new(60);
    struct cca_desk_moves mv = {0};
    struct op ops[R_OPS];
    bool present[R_OPS];
    struct shadow sh[R_DIALOGS];
    int64_t now = NOW;
    unsigned counts[10] = {0};

    (void)state;
    rnd_state = 20240611;
    for (unsigned n = 0; n < R_DIALOGS; n++)
        sh[n] = (struct shadow){CCA_OWNER_AGENT, -1};
    for (int k = 0; k < R_OPS; k++) {
        op_init(&ops[k], (unsigned)k + 1, "op", RU | EN, 0, 1 + rnd_below(4),
                (enum cca_operator_status)rnd_below(3));
        present[k] = rnd_below(4) != 0;
        if (present[k])
            assert_int_equal(cca_desk_add_operator(d, ops[k].doc, now, &mv), CCA_OK);
    }
    shadow_apply(sh, ops, &mv, 0, 0);
    check_invariants(d, ops, present, sh, 0);

    for (unsigned step = 1; step <= R_STEPS; step++) {
        unsigned what = rnd_below(100);
        unsigned n;
        int k = (int)rnd_below(R_OPS);
        size_t before;
        char id[37];
        char got[37];

        /* release, take and transfer mostly aim at dialogs they can act on */
        if (what >= 30 && what < 45)
            n = pick_dialog(sh, rnd_below(3) ? CCA_OWNER_OPERATOR : CCA_OWNER_QUEUE);
        else if (what >= 67 && what < 77)
            n = pick_dialog(sh, CCA_OWNER_QUEUE);
        else if (what >= 77 && what < 87)
            n = pick_dialog(sh, CCA_OWNER_OPERATOR);
        else
            n = rnd_below(R_DIALOGS);
        now += rnd_below(20) * SEC;
        did(id, n);
        mv.n = 0;
        before = mv.n;
        if (what < 30) { /* escalate */
            struct cca_desk_need need =
                need_of(rnd_below(2) ? RU : EN, 0, (enum cca_priority)rnd_below(4));
            enum cca_desk_escalation r =
                cca_desk_escalate(d, id, &need, "customer_request", "customer", now, &mv);

            if (sh[n].owner != CCA_OWNER_AGENT)
                assert_int_equal(r, CCA_DESK_ALREADY);
            if (r == CCA_DESK_ALREADY || r == CCA_DESK_FULL)
                assert_int_equal(mv.n, 0);
            else
                assert_int_equal(mv.n, 1);
            counts[0]++;
        } else if (what < 45) { /* close or hand back */
            bool handback = rnd_below(2) != 0;
            bool held = sh[n].owner != CCA_OWNER_AGENT;

            assert_int_equal(
                cca_desk_release(d, id, handback, "done", "client", now, &mv), held);
            if (held && !handback) {
                sh[n] = (struct shadow){CCA_OWNER_AGENT, -1};
            } else if (held) {
                assert_true(mv.n >= 1);
                assert_int_equal(mv.v[0].event, CCA_OWNER_EV_HANDBACK);
            }
            counts[1]++;
        } else if (what < 60) { /* status flip */
            if (present[k])
                assert_int_equal(op_status(d, &ops[k],
                                           (enum cca_operator_status)rnd_below(3), now,
                                           &mv),
                                 CCA_OK);
            counts[2]++;
        } else if (what < 67) { /* reply timeouts (and some replies first) */
            json_t *busy = json_array();
            double w;

            for (unsigned r = 0; r < 5; r++) {
                char rid[37];

                did(rid, rnd_below(R_DIALOGS));
                (void)cca_desk_replied(d, rid, now, &w);
            }
            cca_desk_timeouts(d, now, timeout, &mv, busy);
            for (size_t j = 0; j < json_array_size(busy); j++) {
                int b = op_index(ops, json_string_value(json_array_get(busy, j)));
                json_t *doc;

                /* the engine records the status */
                assert_true(b >= 0 && present[b]);
                doc = cca_operator_with_status(ops[b].doc, CCA_OPERATOR_BUSY, now);
                json_decref(ops[b].doc);
                ops[b].doc = doc;
            }
            json_decref(busy);
            counts[3]++;
        } else if (what < 77) { /* take */
            bool given = rnd_below(2) != 0;
            cca_rc rc = cca_desk_take(d, ops[k].id, given ? id : NULL, now, got, &mv);

            if (!present[k])
                assert_int_equal(rc, CCA_ERR_NOT_FOUND);
            if (given && rc == CCA_OK)
                assert_int_equal(sh[n].owner, CCA_OWNER_QUEUE);
            if (given && present[k] && sh[n].owner != CCA_OWNER_QUEUE)
                assert_true(rc == CCA_ERR_CONFLICT || rc == CCA_ERR_LIMIT);
            assert_int_equal(mv.n, rc == CCA_OK ? 1 : 0);
            counts[4]++;
        } else if (what < 87) { /* transfer */
            cca_rc rc = cca_desk_transfer(d, id, ops[k].id, "admin", now, &mv);

            if (rc != CCA_OK)
                assert_int_equal(mv.n, 0);
            if (rc == CCA_OK) {
                assert_int_equal(sh[n].owner, CCA_OWNER_OPERATOR);
                assert_int_equal(mv.v[0].event, CCA_OWNER_EV_TRANSFER);
            }
            if (!present[k])
                assert_int_equal(rc, CCA_ERR_NOT_FOUND);
            counts[5]++;
        } else if (what < 92) { /* remove */
            cca_rc rc = cca_desk_remove_operator(d, ops[k].id, "admin", now, &mv);

            assert_int_equal(rc, present[k] ? CCA_OK : CCA_ERR_NOT_FOUND);
            present[k] = false;
            counts[6]++;
        } else if (what < 97) { /* (re)register */
            cca_rc rc = cca_desk_add_operator(d, ops[k].doc, now, &mv);

            assert_int_equal(rc, present[k] ? CCA_ERR_CONFLICT : CCA_OK);
            present[k] = true;
            counts[7]++;
        } else { /* raise max_dialogs (never lower it here) */
            if (present[k]) {
                struct cca_operator_patch p = {.has_max_dialogs = true};
                json_t *doc;

                p.max_dialogs = cca_operator_get_max(ops[k].doc) + 1;
                doc = cca_operator_with_patch(ops[k].doc, &p, now);
                json_decref(ops[k].doc);
                ops[k].doc = doc;
                assert_int_equal(cca_desk_update_operator(d, doc, "admin", now, &mv),
                                 CCA_OK);
            }
            counts[8]++;
        }
        shadow_apply(sh, ops, &mv, before, step);
        check_invariants(d, ops, present, sh, step);
    }
    /* the run did exercise every operation and filled the desk */
    for (int i = 0; i < 9; i++)
        assert_true(counts[i] > 0);
    for (int e = 0; e < CCA_OWNER_EV__COUNT; e++)
        assert_true(r_events[e] > 20);
    assert_true(r_max_queued >= 20);
    assert_true(r_max_open >= 10);
    print_message("# random run: enqueue %zu assign %zu requeue %zu transfer %zu "
                  "handback %zu; at most %zu queued, %zu held\n",
                  r_events[0], r_events[1], r_events[2], r_events[3], r_events[4],
                  r_max_queued, r_max_open);
    cca_desk_moves_cleanup(&mv);
    for (int k = 0; k < R_OPS; k++)
        op_free(&ops[k]);
    cca_desk_free(d);
}

/*
 * Dialogs that started waiting in the same millisecond come back from a
 * restart in their recorded sequence (owner.queue_seq), and new arrivals
 * queue after them; the moves carry the sequence to record.
 */
static void test_restore_same_millisecond(void **state)
{
    struct cca_desk *d = desk_new(100);
    struct cca_desk_need normal = need_of(0, 0, CCA_PRIORITY_NORMAL);
    struct cca_desk_moves mv = {0};
    char a[37];
    char b[37];
    char c[37];
    char ids[4][37];

    (void)state;
    did(a, 1);
    did(b, 2);
    did(c, 3);
    /* loaded in the other order: b (seq 9), then a (seq 4), same since */
    cca_desk_load_dialog(d, b, &normal, NULL, false, NOW, 9, 0, false, &mv);
    cca_desk_load_dialog(d, a, &normal, NULL, false, NOW, 4, 0, false, &mv);
    assert_int_equal(mv.n, 0);
    assert_int_equal(
        cca_desk_escalate(d, c, &normal, "customer_request", "customer", NOW, &mv),
        CCA_DESK_QUEUED);
    assert_int_equal(mv.n, 1);
    assert_true(mv.v[0].queue_seq > 9); /* after the recorded ones */
    assert_int_equal(queue_ids(d, ids, 4), 3);
    assert_string_equal(ids[0], a);
    assert_string_equal(ids[1], b);
    assert_string_equal(ids[2], c);
    cca_desk_moves_cleanup(&mv);
    cca_desk_free(d);
}

/* The supervisor trigger's question: someone with the skill, or every skill. */
static void test_has_skill(void **state)
{
    struct cca_desk *d = desk_new(10);
    struct cca_desk_moves mv = {0};
    uint32_t sup = CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SUPERVISOR);
    uint32_t sales = CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SALES);
    struct op a;
    struct op b;

    (void)state;
    op_init(&a, 1, "Sales only", 0, sales, 3, CCA_OPERATOR_OFFLINE);
    op_init(&b, 2, "Everything", 0, 0, 3, CCA_OPERATOR_OFFLINE);
    assert_false(cca_desk_has_skill(d, sup));
    assert_int_equal(cca_desk_add_operator(d, a.doc, NOW, &mv), CCA_OK);
    assert_false(cca_desk_has_skill(d, sup));
    assert_true(cca_desk_has_skill(d, sales));
    assert_int_equal(cca_desk_add_operator(d, b.doc, NOW, &mv), CCA_OK);
    assert_true(cca_desk_has_skill(d, sup)); /* offline counts: they may come back */
    op_free(&a);
    op_free(&b);
    cca_desk_moves_cleanup(&mv);
    cca_desk_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escalate_assigned),
        cmocka_unit_test(test_escalate_queued_full),
        cmocka_unit_test(test_queue_order),
        cmocka_unit_test(test_queue_view_needs),
        cmocka_unit_test(test_sweep_on_available),
        cmocka_unit_test(test_sweep_on_register),
        cmocka_unit_test(test_sweep_on_close),
        cmocka_unit_test(test_sweep_skips_mismatch),
        cmocka_unit_test(test_full_queue_still_assigns),
        cmocka_unit_test(test_lower_max_keeps_open),
        cmocka_unit_test(test_offline_requeues),
        cmocka_unit_test(test_remove_sweeps),
        cmocka_unit_test(test_authenticate),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_take),
        cmocka_unit_test(test_transfer),
        cmocka_unit_test(test_load_after_restart),
        cmocka_unit_test(test_position_eta),
        cmocka_unit_test(test_visible),
        cmocka_unit_test(test_random_invariants),
        cmocka_unit_test(test_restore_same_millisecond),
        cmocka_unit_test(test_has_skill),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
