/* SPDX-License-Identifier: MIT */
/*
 * The turn pipeline (include/cca/turn.h) without an LLM: keyword routing of
 * clear Russian and English messages, the default and sticky agents, handoffs
 * and their "<method>:" reasons, clarify turns and the answer to them (with a
 * hand-written model), cca_turn_to_dialog, the classifier answer
 * parser, resuming from an LLM result (set up by hand), stage names.
 */
#include "cca_test.h"

#include <limits.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/agent.h"
#include "cca/config.h"
#include "cca/dialog.h"
#include "cca/mem.h"
#include "cca/router.h"
#include "cca/text.h"
#include "cca/turn.h"

#define DATA_DIR CCA_SOURCE_ROOT "/data"
#define LEXICON  CCA_SOURCE_ROOT "/data/routing/lexicon.json"

static struct cca_config cfg;
static struct cca_router *router;
static struct cca_agents *agents;
static struct cca_turn_env env; /* llm NULL: offline */

static int group_setup(void **state)
{
    struct cca_router_params rp = {.default_agent = CCA_AGENT_TECH_SUPPORT};
    struct cca_error err = {0};

    (void)state;
    if (cca_config_load(&cfg, NULL, NULL, NULL, &err) != CCA_OK) {
        fprintf(stderr, "config: %s\n", err.msg);
        return -1;
    }
    rp.min_score = cfg.router_min_score;
    rp.min_margin = cfg.router_min_margin;
    if (cca_router_new(LEXICON, &rp, &router, &err) != CCA_OK) {
        fprintf(stderr, "lexicon: %s\n", err.msg);
        return -1;
    }
    if (cca_agents_new(DATA_DIR, &agents, &err) != CCA_OK) {
        fprintf(stderr, "agents: %s\n", err.msg);
        return -1;
    }
    env = (struct cca_turn_env){.cfg = &cfg, .router = router, .agents = agents};
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    cca_agents_free(agents);
    cca_router_free(router);
    cca_text_thread_cleanup();
    return 0;
}

/* Offline, no step may call the LLM. */
static void no_llm(void *ctx, struct cca_llm_result *res)
{
    (void)ctx;
    (void)res;
    fail_msg("an LLM call completed in an offline turn");
}

/* An offline turn of @text on @doc (NULL: a new dialog); it must be done at once. */
static void start(struct cca_turn *t, const char *text, json_t *doc)
{
    assert_int_equal(cca_turn_start(t, &env, text, strlen(text), doc,
                                    cca_time_mono_ms() + 1000, no_llm, NULL),
                     CCA_TURN_DONE);
    assert_non_null(t->reply);
    assert_true(strlen(t->reply) > 0);
    assert_true(cca_text_is_utf8(t->reply, strlen(t->reply)));
    assert_int_equal(t->tokens, 0);
    assert_int_equal(t->llm_ms, 0);
    assert_false(t->degraded);
}

/* @doc (NULL: a new dialog) after turn @t: what the engine would commit. */
static json_t *apply_turn(json_t *doc, const struct cca_turn *t)
{
    struct cca_dialog_turn dt = {0};
    struct cca_dialog_create c = {0};
    char cid[37];
    char aid[37];
    int64_t now = cca_time_wall_ms();
    json_t *base = doc != NULL ? json_incref(doc) : NULL;
    json_t *next;

    if (base == NULL) {
        char id[37];

        cca_uuid_new(id);
        c.customer_id = cca_xstrdup("turn-test");
        c.source = cca_xstrdup("api");
        c.priority = cca_xstrdup("normal");
        base = cca_dialog_new_doc(id, &c, now);
        cca_dialog_create_cleanup(&c);
    }
    cca_uuid_new(cid);
    cca_uuid_new(aid);
    cca_turn_to_dialog(t, &dt);
    dt.customer_msg_id = cid;
    dt.agent_msg_id = aid;
    dt.received_ms = now;
    dt.replied_ms = now;
    next = cca_dialog_with_turn(base, &dt);
    json_decref(base);
    assert_int_equal(cca_dialog_validate(next, NULL, NULL), CCA_OK);
    return next;
}

/* A dialog whose only turn was @text (a new reference). */
static json_t *dialog_after(const char *text)
{
    struct cca_turn t;
    json_t *doc;

    start(&t, text, NULL);
    doc = apply_turn(NULL, &t);
    cca_turn_cleanup(&t);
    return doc;
}

/* ---- routing ------------------------------------------------------------- */

static void test_route_clear(void **state)
{
    /* Each routes clearly with the shipped lexicon (`call-center-agents route`). */
    static const struct {
        const char *text;
        enum cca_agent agent;
        enum cca_lang lang;
    } cases[] = {
        {"Не работает приложение, не могу войти в аккаунт", CCA_AGENT_TECH_SUPPORT,
         CCA_LANG_RU},
        {"My internet is not working, the router keeps rebooting", CCA_AGENT_TECH_SUPPORT,
         CCA_LANG_EN},
        {"Какие у вас тарифы?", CCA_AGENT_SALES, CCA_LANG_RU},
        {"How much does the Premium plan cost?", CCA_AGENT_SALES, CCA_LANG_EN},
        {"Хочу вернуть деньги, сервис не работает!", CCA_AGENT_SUPERVISOR, CCA_LANG_RU},
        {"I want to speak to a manager, I demand a refund", CCA_AGENT_SUPERVISOR,
         CCA_LANG_EN},
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        struct cca_turn t;

        start(&t, cases[i].text, NULL);
        if (t.route.agent != cases[i].agent)
            fail_msg("'%s' went to %s", cases[i].text, cca_agent_name(t.route.agent));
        assert_int_equal(t.route.method, CCA_ROUTE_KEYWORD);
        assert_true(t.route.clear);
        assert_true(t.route.matched_count > 0);
        assert_int_equal(t.lang, cases[i].lang);
        /* A first message: nobody to hand off from. */
        assert_int_equal(t.current, CCA_AGENT_NONE);
        assert_int_equal(t.previous, CCA_AGENT_NONE);
        cca_turn_cleanup(&t);
    }
}

/*
 * Not clear, no LLM: a first message gets the clarifying question (issue 16;
 * the agent is the model's guess), a follow-up stays.
 */
static void test_route_unclear(void **state)
{
    struct cca_turn t;
    json_t *doc;

    (void)state;
    start(&t, "привет", NULL);
    assert_false(t.route.clear);
    assert_int_equal(t.route.method, CCA_ROUTE_CLARIFY);
    assert_non_null(cca_agent_name(t.route.agent));
    assert_string_equal(t.reply, cca_agents_clarify_question(CCA_LANG_RU));
    assert_int_equal(t.lang, CCA_LANG_RU);
    cca_turn_cleanup(&t);

    doc = dialog_after("How much does the Premium plan cost?");
    start(&t, "hello", doc);
    assert_false(t.route.clear);
    assert_int_equal(t.route.method, CCA_ROUTE_STICKY);
    assert_int_equal(t.current, CCA_AGENT_SALES);
    assert_int_equal(t.route.agent, CCA_AGENT_SALES);
    assert_int_equal(t.previous, CCA_AGENT_NONE);
    assert_int_equal(t.lang, CCA_LANG_EN);
    cca_turn_cleanup(&t);
    json_decref(doc);
}

/* ---- handoffs ------------------------------------------------------------ */

/* Every word of @reason after "keyword:" is a lexicon entry of @agent. */
static void assert_keyword_reason(const char *reason, enum cca_agent agent)
{
    char *copy = cca_xstrdup(reason);
    char *save = NULL;
    const char *name = cca_agent_name(agent);
    char *tok;
    int n = 0;

    assert_true(strncmp(reason, "keyword:", 8) == 0);
    assert_true(cca_text_is_utf8(reason, strlen(reason)));
    for (tok = strtok_r(copy + 8, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        /* Entries may hold spaces ("sales:how much"): only a new entry has a ':'. */
        if (strchr(tok, ':') == NULL)
            continue;
        if (strncmp(tok, name, strlen(name)) != 0 || tok[strlen(name)] != ':')
            fail_msg("'%s' names another agent than %s", reason, name);
        n++;
    }
    assert_true(n > 0);
    free(copy);
}

static void test_handoff(void **state)
{
    struct cca_turn t;
    struct cca_dialog_turn dt;
    json_t *doc;
    json_t *next;
    json_t *handoffs;

    (void)state;
    doc = dialog_after("Не работает приложение, не могу войти в аккаунт");
    assert_int_equal(cca_dialog_get_agent(doc), CCA_AGENT_TECH_SUPPORT);

    /* tech_support -> sales on a clear keyword. */
    start(&t, "Какие у вас тарифы?", doc);
    assert_int_equal(t.current, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(t.route.agent, CCA_AGENT_SALES);
    assert_int_equal(t.previous, CCA_AGENT_TECH_SUPPORT);
    assert_string_equal(t.handoff_reason, "keyword: sales:тариф");
    memset(&dt, 0, sizeof(dt));
    cca_turn_to_dialog(&t, &dt);
    assert_int_equal(dt.previous, CCA_AGENT_TECH_SUPPORT);
    assert_ptr_equal(dt.handoff_reason, t.handoff_reason);
    next = apply_turn(doc, &t);
    json_decref(doc);
    doc = next;
    cca_turn_cleanup(&t);

    /* sales -> supervisor: the reason names only the supervisor's entries. */
    start(&t, "Хочу вернуть деньги, сервис не работает!", doc);
    assert_int_equal(t.route.agent, CCA_AGENT_SUPERVISOR);
    assert_int_equal(t.previous, CCA_AGENT_SALES);
    assert_keyword_reason(t.handoff_reason, CCA_AGENT_SUPERVISOR);
    assert_non_null(strstr(t.handoff_reason, "supervisor:вернуть деньги"));
    next = apply_turn(doc, &t);
    json_decref(doc);
    doc = next;
    cca_turn_cleanup(&t);
    assert_int_equal(cca_dialog_get_status(doc), CCA_DIALOG_ESCALATED);
    handoffs = json_object_get(json_object_get(doc, "metadata"), "handoffs");
    assert_int_equal(json_array_size(handoffs), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(handoffs, 0), "reason")),
        "keyword: sales:тариф");

    /* The same agent again: no handoff. */
    start(&t, "I want to speak to a manager, I demand a refund", doc);
    assert_int_equal(t.route.agent, CCA_AGENT_SUPERVISOR);
    assert_int_equal(t.previous, CCA_AGENT_NONE);
    memset(&dt, 0, sizeof(dt));
    cca_turn_to_dialog(&t, &dt);
    assert_int_equal(dt.previous, CCA_AGENT_NONE);
    assert_null(dt.handoff_reason);
    cca_turn_cleanup(&t);
    json_decref(doc);
}

/*
 * A handoff on a message that matches many lexicon entries: the reason is cut
 * to its buffer, and must stay UTF-8 (it goes into the dialog and the REST
 * answer through json_string, which refuses anything else).
 */
static void test_handoff_reason_long(void **state)
{
    static const char *const texts[] = {
        "тариф цена стоимость прайс расценки скидка акция промокод подписка рассрочка "
        "безлимит роуминг",
        "Сколько стоит тарифный план, какая цена доставки, есть ли скидка, рассрочка, "
        "промокод, подписка, безлимит и роуминг?",
    };
    json_t *doc;

    (void)state;
    doc = dialog_after("Не работает приложение, не могу войти в аккаунт");
    for (size_t i = 0; i < CCA_ARRAY_SIZE(texts); i++) {
        struct cca_turn t;
        json_t *next;
        json_t *handoffs;

        start(&t, texts[i], doc);
        assert_int_equal(t.route.agent, CCA_AGENT_SALES);
        assert_int_equal(t.previous, CCA_AGENT_TECH_SUPPORT);
        assert_true(strlen(t.handoff_reason) < sizeof(t.handoff_reason));
        if (!cca_text_is_utf8(t.handoff_reason, strlen(t.handoff_reason)))
            fail_msg("handoff reason of %zu bytes is not UTF-8 (cut inside a character)",
                     strlen(t.handoff_reason));
        assert_keyword_reason(t.handoff_reason, CCA_AGENT_SALES);
        next = apply_turn(doc, &t);
        handoffs = json_object_get(json_object_get(next, "metadata"), "handoffs");
        assert_non_null(
            json_string_value(json_object_get(json_array_get(handoffs, 0), "reason")));
        json_decref(next);
        cca_turn_cleanup(&t);
    }
    json_decref(doc);
}

/*
 * A router with a hand-written English model (words the lexicon does not
 * know), so the clarify turns below do not depend on the trained weights:
 * "hello" is uniform (nobody sure: clarify, guess tech_support), "zorp" leans
 * supervisor at 0.576 (unsure), "frob" is sales at 0.624 (>= min_prob 0.6, <
 * followup_min_prob 0.8).
 */
static struct cca_router *tiny_router(void)
{
    static const char model[] =
        "cca-router-model/1\nlang en\nclasses tech_support sales supervisor\n"
        "temperature 1\nmin_prob 0.6\nfollowup_min_prob 0.8\noverride_min_prob 1\n"
        "rule_min_score 2\nbias 0 0 0\nfeatures 2\nw=zorp\t0 0 1\nw=frob\t0 1.2 0\nend\n";
    struct cca_router_params rp = {.default_agent = CCA_AGENT_TECH_SUPPORT};
    struct cca_router *r = NULL;
    struct cca_error err = {0};
    char path[] = "/tmp/cca_test_turn_model_XXXXXX";
    int fd = mkstemp(path);
    FILE *f;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(model, 1, sizeof(model) - 1, f), sizeof(model) - 1);
    assert_int_equal(fclose(f), 0);
    rp.min_score = cfg.router_min_score;
    rp.min_margin = cfg.router_min_margin;
    rp.model_path = path;
    if (cca_router_new(LEXICON, &rp, &r, &err) != CCA_OK)
        fail_msg("%s", err.msg);
    (void)unlink(path);
    return r;
}

/*
 * A clarify turn never escalates: its guess is never supervisor, even when
 * the model leans that way, so the dialog stays active (a supervisor dialog
 * is "escalated" and queued for a human).
 */
static void test_clarify_not_escalated(void **state)
{
    struct cca_router *shipped = env.router;
    struct cca_turn t;
    json_t *doc;

    (void)state;
    env.router = tiny_router();
    start(&t, "zorp", NULL);
    assert_int_equal(t.route.method, CCA_ROUTE_CLARIFY);
    assert_true(t.route.prob[CCA_AGENT_SUPERVISOR] > t.route.prob[CCA_AGENT_SALES]);
    assert_int_equal(t.route.agent, CCA_AGENT_TECH_SUPPORT);
    assert_string_equal(t.reply, cca_agents_clarify_question(CCA_LANG_EN));
    doc = apply_turn(NULL, &t);
    assert_int_equal(cca_dialog_get_status(doc), CCA_DIALOG_ACTIVE);
    assert_int_equal(cca_dialog_get_agent(doc), CCA_AGENT_TECH_SUPPORT);
    cca_turn_cleanup(&t);
    json_decref(doc);
    cca_router_free(env.router);
    env.router = shipped;
}

/*
 * The answer to the clarifying question is routed as a first message, not as
 * a follow-up of the guess: "frob" (sales 0.624) would stay with the guess
 * tech_support as a follow-up (below followup_min_prob), but as a first
 * message the model decides it. The handoff from the guess names the method.
 * An answer nobody is sure of either stays with the guess: no second question.
 */
static void test_clarify_answer(void **state)
{
    struct cca_router *shipped = env.router;
    struct cca_turn t;
    struct cca_route follow;
    json_t *asked;
    json_t *doc;

    (void)state;
    env.router = tiny_router();
    start(&t, "hello", NULL);
    assert_int_equal(t.route.method, CCA_ROUTE_CLARIFY);
    assert_int_equal(t.route.agent, CCA_AGENT_TECH_SUPPORT);
    asked = apply_turn(NULL, &t);
    cca_turn_cleanup(&t);

    cca_router_decide(env.router, "frob", 4, CCA_AGENT_TECH_SUPPORT, &follow);
    assert_int_equal(follow.method, CCA_ROUTE_STICKY); /* what the old routing did */
    start(&t, "frob", asked);
    assert_int_equal(t.current, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(t.routed_as, CCA_AGENT_NONE);
    assert_int_equal(t.route.method, CCA_ROUTE_MODEL);
    assert_int_equal(t.route.agent, CCA_AGENT_SALES);
    assert_int_equal(t.previous, CCA_AGENT_TECH_SUPPORT);
    assert_string_equal(t.handoff_reason, "model: sales:w=frob");
    doc = apply_turn(asked, &t);
    cca_turn_cleanup(&t);

    /* Not after a clarify: the same text is an ordinary follow-up again. */
    start(&t, "hello", doc);
    assert_int_equal(t.routed_as, CCA_AGENT_SALES);
    assert_int_equal(t.route.method, CCA_ROUTE_STICKY);
    cca_turn_cleanup(&t);
    json_decref(doc);

    /* An unclear answer: sticky with the guess, not a second question. */
    start(&t, "hello again", asked);
    assert_int_equal(t.route.method, CCA_ROUTE_STICKY);
    assert_int_equal(t.route.agent, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(t.routed_as, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(t.previous, CCA_AGENT_NONE);
    assert_string_not_equal(t.reply, cca_agents_clarify_question(CCA_LANG_EN));
    cca_turn_cleanup(&t);

    /* A clear keyword answer moves with "keyword:" as before. */
    start(&t, "How much does the Premium plan cost?", asked);
    assert_int_equal(t.route.method, CCA_ROUTE_KEYWORD);
    assert_int_equal(t.route.agent, CCA_AGENT_SALES);
    assert_keyword_reason(t.handoff_reason, CCA_AGENT_SALES);
    cca_turn_cleanup(&t);
    json_decref(asked);
    cca_router_free(env.router);
    env.router = shipped;
}

/* ---- cca_turn_to_dialog, cleanup, stage names ---------------------------- */

static void test_to_dialog(void **state)
{
    struct cca_turn t;
    struct cca_dialog_turn dt;
    const char *text = "How much does the Premium plan cost?";

    (void)state;
    start(&t, text, NULL);
    memset(&dt, 0, sizeof(dt));
    cca_turn_to_dialog(&t, &dt);
    assert_ptr_equal(dt.text, text);
    assert_ptr_equal(dt.route, &t.route);
    assert_int_equal(dt.agent, CCA_AGENT_SALES);
    assert_int_equal(dt.previous, CCA_AGENT_NONE);
    assert_null(dt.handoff_reason);
    assert_ptr_equal(dt.reply, t.reply);
    assert_int_equal(dt.tokens, 0);
    assert_int_equal(dt.latency_ms, 0);
    assert_false(dt.degraded);
    /* Ids and times are the caller's. */
    assert_null(dt.customer_msg_id);
    assert_null(dt.agent_msg_id);
    assert_int_equal(dt.received_ms, 0);
    assert_int_equal(dt.replied_ms, 0);

    /* The LLM's share of a turn, as resuming would leave it. */
    t.tokens = 42;
    t.llm_ms = 1500;
    t.degraded = true;
    cca_turn_to_dialog(&t, &dt);
    assert_int_equal(dt.tokens, 42);
    assert_int_equal(dt.latency_ms, 1500);
    assert_true(dt.degraded);

    cca_turn_cleanup(&t);
    assert_null(t.reply);
    assert_int_equal(t.tokens, 0);
    cca_turn_cleanup(&t); /* a zeroed struct */
}

static void test_stage_names(void **state)
{
    struct cca_turn t = {0};

    (void)state;
    t.stage = CCA_TURN_CLASSIFY;
    assert_string_equal(cca_turn_stage_name(&t), "classify");
    t.stage = CCA_TURN_REPLY;
    assert_string_equal(cca_turn_stage_name(&t), "reply");
}

/* ---- the classifier's answer --------------------------------------------- */

static void test_parse_classification(void **state)
{
    static const struct {
        const char *content;
        bool ok;
        enum cca_agent agent;
        double confidence;
        const char *reason;
    } cases[] = {
        {"{\"agent\":\"sales\",\"confidence\":0.8,\"reason\":\"asks about prices\"}",
         true, CCA_AGENT_SALES, 0.8, "llm: asks about prices"},
        {"{\"agent\":\"supervisor\",\"confidence\":1,\"reason\":\"refund\"}", true,
         CCA_AGENT_SUPERVISOR, 1.0, "llm: refund"},
        {"{\"agent\":\"tech_support\"}", true, CCA_AGENT_TECH_SUPPORT, 0.5,
         "llm: classified by the LLM"},
        {"{\"agent\":\"sales\",\"confidence\":7.5,\"reason\":\"x\"}", true,
         CCA_AGENT_SALES, 1.0, "llm: x"},
        {"{\"agent\":\"sales\",\"confidence\":-2,\"reason\":\"x\"}", true,
         CCA_AGENT_SALES, 0.0, "llm: x"},
        {"{\"agent\":\"sales\",\"confidence\":\"high\"}", true, CCA_AGENT_SALES, 0.5,
         "llm: classified by the LLM"},
        {"{\"agent\":\"sales\",\"reason\":42}", true, CCA_AGENT_SALES, 0.5,
         "llm: classified by the LLM"},
        /* Refused: @t unchanged. */
        {"{\"confidence\":0.9,\"reason\":\"no agent\"}", false, 0, 0, NULL},
        {"{\"agent\":\"billing\",\"confidence\":0.9}", false, 0, 0, NULL},
        {"{\"agent\":\"Sales\"}", false, 0, 0, NULL},
        {"{\"agent\":1}", false, 0, 0, NULL},
        {"{\"agent\":null}", false, 0, 0, NULL},
        {"[\"sales\"]", false, 0, 0, NULL},
        {"\"sales\"", false, 0, 0, NULL},
        {"sales", false, 0, 0, NULL},
        {"{\"agent\":\"sales\"", false, 0, 0, NULL},
        {"{\"agent\":\"sales\",\"agent\":\"supervisor\"}", false, 0, 0, NULL},
        {"", false, 0, 0, NULL},
        {NULL, false, 0, 0, NULL},
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        struct cca_turn t;
        struct cca_turn before;
        bool ok;

        start(&t, "привет", NULL);
        before = t;
        ok = cca_turn_parse_classification(&t, cases[i].content);
        if (ok != cases[i].ok)
            fail_msg("case %zu '%s': %s", i, cases[i].content ? cases[i].content : "NULL",
                     ok ? "accepted" : "refused");
        if (!ok) {
            assert_memory_equal(&t, &before, sizeof(t));
        } else {
            assert_int_equal(t.route.agent, cases[i].agent);
            assert_int_equal(t.route.method, CCA_ROUTE_LLM);
            assert_true(t.route.confidence == cases[i].confidence);
            assert_string_equal(t.handoff_reason, cases[i].reason);
        }
        cca_turn_cleanup(&t);
    }

    /* A long reason is capped: 150 bytes after "llm: ". */
    {
        char reason[301];
        json_t *answer;
        char *content;
        struct cca_turn t;

        memset(reason, 'r', 300);
        reason[300] = '\0';
        answer = json_pack("{s:s, s:s}", "agent", "sales", "reason", reason);
        content = json_dumps(answer, 0);
        start(&t, "привет", NULL);
        assert_true(cca_turn_parse_classification(&t, content));
        assert_int_equal(strlen(t.handoff_reason), 5 + 150);
        assert_true(strncmp(t.handoff_reason, "llm: rrr", 8) == 0);
        cca_turn_cleanup(&t);
        free(content);
        json_decref(answer);
    }
}

/* A long reason is capped (150 bytes after "llm: ") and stays UTF-8. */
static void test_parse_classification_reason_cap(void **state)
{
    /* ASCII first, then Cyrillic (two bytes each): the cut falls at any parity. */
    static const char *const prefixes[] = {"", "a", "ab", "VPN "};

    (void)state;
    for (size_t p = 0; p < CCA_ARRAY_SIZE(prefixes); p++) {
        char reason[1024];
        size_t used = (size_t)snprintf(reason, sizeof(reason), "%s", prefixes[p]);
        json_t *answer;
        char *content;
        struct cca_turn t;
        size_t len;

        for (int i = 0; i < 200; i++)
            used += (size_t)snprintf(reason + used, sizeof(reason) - used, "я");
        answer = json_pack("{s:s, s:f, s:s}", "agent", "sales", "confidence", 0.9,
                           "reason", reason);
        content = json_dumps(answer, 0);
        start(&t, "привет", NULL);
        assert_true(cca_turn_parse_classification(&t, content));
        len = strlen(t.handoff_reason);
        assert_true(strncmp(t.handoff_reason, "llm: ", 5) == 0);
        assert_true(len <= 5 + 150);
        assert_true(len >= 5 + 148); /* cut, not dropped */
        assert_true(strncmp(t.handoff_reason + 5, reason, len - 5) == 0);
        if (!cca_text_is_utf8(t.handoff_reason, len))
            fail_msg("prefix '%s': the capped reason is not UTF-8 (cut in a character)",
                     prefixes[p]);
        cca_turn_cleanup(&t);
        free(content);
        json_decref(answer);
    }
}

/* ---- resuming from an LLM result (the waiting state set by hand: no LLM here) --- */

static void test_resume_classify(void **state)
{
    struct cca_llm_result res = {0};
    struct cca_turn t;
    json_t *doc;

    (void)state;
    /* A usable class on a follow-up: handoff with the classifier's reason. */
    doc = dialog_after("Не работает приложение, не могу войти в аккаунт");
    start(&t, "hello", doc);
    t.stage = CCA_TURN_CLASSIFY;
    res.rc = CCA_OK;
    res.content =
        cca_xstrdup("{\"agent\":\"sales\",\"confidence\":0.7,\"reason\":\"plans\"}");
    res.total_tokens = 30;
    res.upstream_ms = 120;
    assert_int_equal(cca_turn_resume(&t, &env, &res, doc, no_llm, NULL), CCA_TURN_DONE);
    assert_int_equal(t.route.agent, CCA_AGENT_SALES);
    assert_int_equal(t.route.method, CCA_ROUTE_LLM);
    assert_int_equal(t.previous, CCA_AGENT_TECH_SUPPORT);
    assert_string_equal(t.handoff_reason, "llm: plans");
    assert_int_equal(t.tokens, 30);
    assert_int_equal(t.llm_ms, 120);
    assert_non_null(t.reply);
    assert_false(t.degraded); /* the classifier's failure never degrades a reply */
    cca_llm_result_cleanup(&res);
    cca_turn_cleanup(&t);

    /* A failed call on a follow-up: the agent stays, no handoff. */
    start(&t, "hello", doc);
    t.stage = CCA_TURN_CLASSIFY;
    res = (struct cca_llm_result){.rc = CCA_ERR_TIMEOUT};
    assert_int_equal(cca_turn_resume(&t, &env, &res, doc, no_llm, NULL), CCA_TURN_DONE);
    assert_int_equal(t.route.agent, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(t.route.method, CCA_ROUTE_STICKY);
    assert_int_equal(t.previous, CCA_AGENT_NONE);
    assert_false(t.degraded);
    cca_turn_cleanup(&t);
    json_decref(doc);

    /* Garbage on a first message with a keyword best (weak): the best is taken. */
    start(&t, "а карта?", NULL);
    assert_false(t.route.clear);
    assert_int_equal(t.route.method, CCA_ROUTE_CLARIFY);
    assert_int_equal(t.route.best, CCA_AGENT_SALES);
    t.stage = CCA_TURN_CLASSIFY;
    res = (struct cca_llm_result){.rc = CCA_OK, .content = cca_xstrdup("not json")};
    assert_int_equal(cca_turn_resume(&t, &env, &res, NULL, no_llm, NULL), CCA_TURN_DONE);
    assert_int_equal(t.route.agent, CCA_AGENT_SALES);
    assert_int_equal(t.route.method, CCA_ROUTE_KEYWORD);
    assert_int_equal(t.previous, CCA_AGENT_NONE);
    cca_llm_result_cleanup(&res);
    cca_turn_cleanup(&t);
}

static void test_resume_reply(void **state)
{
    struct cca_llm_result res = {0};
    struct cca_turn t;

    (void)state;
    /* The LLM's answer becomes the reply (moved out of the result). */
    start(&t, "How much does the Premium plan cost?", NULL);
    t.stage = CCA_TURN_REPLY;
    t.tokens = 10;
    res.rc = CCA_OK;
    res.content = cca_xstrdup("Premium costs 1990 a month.");
    res.total_tokens = 25;
    res.upstream_ms = 300;
    assert_int_equal(cca_turn_resume(&t, &env, &res, NULL, no_llm, NULL), CCA_TURN_DONE);
    assert_string_equal(t.reply, "Premium costs 1990 a month.");
    assert_null(res.content);
    assert_int_equal(t.tokens, 35);
    assert_int_equal(t.llm_ms, 300);
    assert_false(t.degraded);
    cca_turn_cleanup(&t);

    /* A failed reply: the offline responder answers, degraded. */
    start(&t, "How much does the Premium plan cost?", NULL);
    t.stage = CCA_TURN_REPLY;
    res = (struct cca_llm_result){.rc = CCA_ERR_UPSTREAM, .upstream_ms = 50};
    assert_int_equal(cca_turn_resume(&t, &env, &res, NULL, no_llm, NULL), CCA_TURN_DONE);
    assert_true(t.degraded);
    assert_non_null(t.reply);
    assert_true(strlen(t.reply) > 0);
    assert_int_equal(t.llm_ms, 50);
    cca_turn_cleanup(&t);

    /* Token counts saturate. */
    start(&t, "How much does the Premium plan cost?", NULL);
    t.stage = CCA_TURN_REPLY;
    t.tokens = LONG_MAX - 5;
    res = (struct cca_llm_result){.rc = CCA_OK, .content = cca_xstrdup("ok")};
    res.total_tokens = 100;
    assert_int_equal(cca_turn_resume(&t, &env, &res, NULL, no_llm, NULL), CCA_TURN_DONE);
    assert_int_equal(t.tokens, LONG_MAX);
    cca_llm_result_cleanup(&res);
    cca_turn_cleanup(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_clear),
        cmocka_unit_test(test_route_unclear),
        cmocka_unit_test(test_handoff),
        cmocka_unit_test(test_handoff_reason_long),
        cmocka_unit_test(test_clarify_not_escalated),
        cmocka_unit_test(test_clarify_answer),
        cmocka_unit_test(test_to_dialog),
        cmocka_unit_test(test_stage_names),
        cmocka_unit_test(test_parse_classification),
        cmocka_unit_test(test_parse_classification_reason_cap),
        cmocka_unit_test(test_resume_classify),
        cmocka_unit_test(test_resume_reply),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
