/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/mem.h"
#include "cca/router.h"
#include "cca/text.h"

#define LEXICON CCA_SOURCE_ROOT "/data/routing/lexicon.json"

static const struct cca_router_params params = {
    .min_score = 1.0,
    .min_margin = 0.5,
    .default_agent = CCA_AGENT_TECH_SUPPORT,
};

/* The shipped lexicon, loaded once for the whole group. */
static struct cca_router *shipped;

static int setup(void **state)
{
    struct cca_error err = {0};

    (void)state;
    if (cca_router_new(LEXICON, &params, &shipped, &err) != CCA_OK) {
        fprintf(stderr, "lexicon: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cca_router_free(shipped);
    shipped = NULL;
    cca_text_thread_cleanup();
    return 0;
}

static struct cca_route route(const struct cca_router *r, const char *text,
                              enum cca_agent current)
{
    struct cca_route ret;

    cca_router_route(r, text, strlen(text), current, &ret);
    return ret;
}

static bool has_match(const struct cca_route *r, const char *what)
{
    for (size_t i = 0; i < r->matched_count; i++) {
        if (strcmp(r->matched[i], what) == 0)
            return true;
    }
    return false;
}

/* Write @content to a new temporary file; its path goes to @path. */
static void write_temp(const char *content, char path[64])
{
    int fd;
    size_t len = strlen(content);

    snprintf(path, 64, "/tmp/cca_test_router_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* Load a lexicon given as text; returns the cca_rc, the router in *ret. */
static cca_rc load_text(const char *content, struct cca_router **ret,
                        struct cca_error *err)
{
    char path[64];
    cca_rc rc;

    write_temp(content, path);
    *ret = NULL;
    rc = cca_router_new(path, &params, ret, err);
    unlink(path);
    return rc;
}

static void test_demo_ru(void **state)
{
    struct cca_route r;

    (void)state;
    /* First message: a technical problem. */
    r = route(shipped, "Не работает приложение, не могу войти в аккаунт", CCA_AGENT_NONE);
    assert_int_equal(r.agent, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.method, CCA_ROUTE_KEYWORD);
    assert_true(r.clear);
    assert_true(has_match(&r, "tech_support:не работает"));
    assert_true(has_match(&r, "tech_support:не могу войти"));
    /* Follow-up about tariffs while with tech support: a clear handoff to sales. */
    r = route(shipped, "Какие у вас тарифы?", CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.agent, CCA_AGENT_SALES);
    assert_int_equal(r.method, CCA_ROUTE_KEYWORD);
    assert_true(r.clear);
    assert_true(has_match(&r, "sales:тариф"));
    /* Refund demand plus a technical complaint: supervisor takes precedence. */
    r = route(shipped, "Хочу вернуть деньги, сервис не работает!", CCA_AGENT_SALES);
    assert_int_equal(r.agent, CCA_AGENT_SUPERVISOR);
    assert_int_equal(r.method, CCA_ROUTE_KEYWORD);
    assert_true(r.clear);
    assert_true(r.scores[CCA_AGENT_TECH_SUPPORT] > 0);
}

static void test_demo_en(void **state)
{
    struct cca_route r;

    (void)state;
    r = route(shipped, "The app is not working, I can't log in to my account",
              CCA_AGENT_NONE);
    assert_int_equal(r.agent, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.method, CCA_ROUTE_KEYWORD);
    r = route(shipped, "What plans do you have and what are the prices?",
              CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.agent, CCA_AGENT_SALES);
    assert_int_equal(r.method, CCA_ROUTE_KEYWORD);
    r = route(shipped, "I want my money back, the service doesn't work!",
              CCA_AGENT_SALES);
    assert_int_equal(r.agent, CCA_AGENT_SUPERVISOR);
    assert_int_equal(r.method, CCA_ROUTE_KEYWORD);
    r = route(shipped, "Let me talk to a human, please", CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.agent, CCA_AGENT_SUPERVISOR);
}

static void test_anger(void **state)
{
    struct cca_route r;

    (void)state;
    r = route(shipped, "ВЫ ЧТО НЕ ПОНИМАЕТЕ!!!", CCA_AGENT_NONE);
    assert_int_equal(r.agent, CCA_AGENT_SUPERVISOR);
    assert_int_equal(r.method, CCA_ROUTE_KEYWORD);
    assert_true(has_match(&r, "supervisor:CAPS"));
    assert_true(has_match(&r, "supervisor:!!!"));
    r = route(shipped, "WHY IS NOTHING HAPPENING!!!!", CCA_AGENT_SALES);
    assert_int_equal(r.agent, CCA_AGENT_SUPERVISOR);
    /* Short upper-case words (PIN, SMS) are not shouting. */
    r = route(shipped, "My PIN and SMS code", CCA_AGENT_NONE);
    assert_false(has_match(&r, "supervisor:CAPS"));
    assert_true(r.scores[CCA_AGENT_SUPERVISOR] == 0);
    /* An insult decides on its own. */
    r = route(shipped, "вы идиоты", CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.agent, CCA_AGENT_SUPERVISOR);
    assert_true(r.clear);
    /* Legal threats. */
    r = route(shipped, "Подам в суд и напишу в прокуратуру", CCA_AGENT_SALES);
    assert_int_equal(r.agent, CCA_AGENT_SUPERVISOR);
    assert_true(has_match(&r, "supervisor:прокуратура"));
}

static void test_sticky_and_default(void **state)
{
    struct cca_route r;

    (void)state;
    r = route(shipped, "ok thanks", CCA_AGENT_SALES);
    assert_int_equal(r.agent, CCA_AGENT_SALES);
    assert_int_equal(r.method, CCA_ROUTE_STICKY);
    assert_false(r.clear);
    assert_int_equal(r.best, CCA_AGENT_NONE);
    r = route(shipped, "Хорошо, спасибо", CCA_AGENT_SUPERVISOR);
    assert_int_equal(r.agent, CCA_AGENT_SUPERVISOR);
    assert_int_equal(r.method, CCA_ROUTE_STICKY);
    r = route(shipped, "hello", CCA_AGENT_NONE);
    assert_int_equal(r.agent, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.method, CCA_ROUTE_DEFAULT);
    assert_false(r.clear);
    assert_true(r.confidence == 0);
    /* A single weak cue does not move a follow-up. */
    r = route(shipped, "and the card?", CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.agent, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(r.method, CCA_ROUTE_STICKY);
    assert_int_equal(r.best, CCA_AGENT_SALES);
}

static void test_negation(void **state)
{
    struct cca_route r;

    (void)state;
    r = route(shipped, "работает", CCA_AGENT_NONE);
    assert_true(r.scores[CCA_AGENT_TECH_SUPPORT] == 0);
    r = route(shipped, "не работает", CCA_AGENT_NONE);
    assert_true(r.scores[CCA_AGENT_TECH_SUPPORT] >= 1.0);
    /* Inflections and filler words between the parts still match. */
    r = route(shipped, "оно не будет работать", CCA_AGENT_NONE);
    assert_true(has_match(&r, "tech_support:не работает"));
    r = route(shipped, "it works", CCA_AGENT_NONE);
    assert_true(r.scores[CCA_AGENT_TECH_SUPPORT] == 0);
    r = route(shipped, "it does not work", CCA_AGENT_NONE);
    assert_int_equal(r.agent, CCA_AGENT_TECH_SUPPORT);
    assert_true(r.clear);
}

static void test_json(void **state)
{
    struct cca_route r = route(shipped, "Какие у вас тарифы?", CCA_AGENT_NONE);
    json_t *j = cca_route_to_json(&r), *scores, *matched;
    double conf;

    (void)state;
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 5);
    assert_string_equal(json_string_value(json_object_get(j, "agent")), "sales");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "keyword");
    assert_true(json_is_real(json_object_get(j, "confidence")));
    conf = json_real_value(json_object_get(j, "confidence"));
    assert_true(conf > 0 && conf <= 1);
    /* Rounded to 3 decimals. */
    assert_true(fabs(conf * 1000 - round(conf * 1000)) < 1e-6);
    assert_true(fabs(conf - r.confidence) < 0.0005 + 1e-9);
    scores = json_object_get(j, "scores");
    assert_int_equal(json_object_size(scores), 3);
    assert_true(json_is_number(json_object_get(scores, "tech_support")));
    assert_true(json_is_number(json_object_get(scores, "sales")));
    assert_true(json_is_number(json_object_get(scores, "supervisor")));
    assert_true(json_number_value(json_object_get(scores, "sales")) >= 1.0);
    matched = json_object_get(j, "matched");
    assert_true(json_is_array(matched));
    assert_int_equal(json_array_size(matched), r.matched_count);
    assert_string_equal(json_string_value(json_array_get(matched, 0)), "sales:тариф");
    json_decref(j);
    assert_string_equal(cca_route_method_name(CCA_ROUTE_LLM), "llm");
    assert_string_equal(cca_route_method_name(CCA_ROUTE_STICKY), "sticky");
    assert_string_equal(cca_route_method_name(CCA_ROUTE_DEFAULT), "default");
}

static void test_load_errors(void **state)
{
    static const struct {
        const char *text;
        cca_rc rc;
    } cases[] = {
        {"{\"format\": \"cca-lexicon/1\", \"groups\": [", CCA_ERR_PARSE},
        {"", CCA_ERR_PARSE},
        {"[]", CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/9\", \"groups\": []}", CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\"}", CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"groups\": [], \"typo\": 1}", CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"groups\": [{\"agent\": \"cook\", "
         "\"lang\": \"en\", \"terms\": [\"x\"]}]}",
         CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"groups\": [{\"agent\": \"sales\", "
         "\"lang\": \"de\", \"terms\": [\"x\"]}]}",
         CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"groups\": [{\"agent\": \"sales\", "
         "\"lang\": \"en\", \"weight\": -1, \"terms\": [\"x\"]}]}",
         CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"groups\": [{\"agent\": \"sales\", "
         "\"lang\": \"en\", \"terms\": [\"!!!\"]}]}",
         CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"groups\": [{\"agent\": \"sales\", "
         "\"lang\": \"en\", \"terms\": [\"a b c d e f g h i\"]}]}",
         CCA_ERR_INVALID},
        /* Two spellings of one stem for one agent is a lexicon mistake. */
        {"{\"format\": \"cca-lexicon/1\", \"groups\": [{\"agent\": \"sales\", "
         "\"lang\": \"ru\", \"terms\": [\"тарифы\", \"тарифов\"]}]}",
         CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"anger\": {\"caps_min_ratio\": 2}, "
         "\"groups\": []}",
         CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"ignore\": [\"two words\"], \"groups\": []}",
         CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"ignore\": [\"the\"], \"groups\": "
         "[{\"agent\": \"sales\", \"lang\": \"en\", \"terms\": [\"the\"]}]}",
         CCA_ERR_INVALID},
        {"{\"format\": \"cca-lexicon/1\", \"groups\": []}", CCA_OK},
    };
    struct cca_router *r = NULL;
    struct cca_error err = {0};
    struct cca_router_params bad = params;

    (void)state;
    assert_int_equal(cca_router_new("/nonexistent/lexicon.json", &params, &r, &err),
                     CCA_ERR_NOT_FOUND);
    assert_null(r);
    assert_int_equal(err.code, CCA_ERR_NOT_FOUND);
    assert_true(strlen(err.msg) > 0);
    /* A directory opens but cannot be read as a file. */
    assert_int_equal(cca_router_new("/tmp", &params, &r, NULL), CCA_ERR_IO);
    assert_null(r);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(load_text(cases[i].text, &r, &err), cases[i].rc);
        if (cases[i].rc == CCA_OK) {
            assert_non_null(r);
        } else {
            assert_null(r);
            assert_int_equal(err.code, cases[i].rc);
        }
        cca_router_free(r);
    }
    /* On failure *ret_router is not written. */
    r = NULL;
    bad.min_score = 0;
    assert_int_equal(cca_router_new(LEXICON, &bad, &r, &err), CCA_ERR_INVALID);
    bad = params;
    bad.min_margin = NAN;
    assert_int_equal(cca_router_new(LEXICON, &bad, &r, &err), CCA_ERR_INVALID);
    bad = params;
    bad.default_agent = CCA_AGENT_NONE;
    assert_int_equal(cca_router_new(LEXICON, &bad, &r, &err), CCA_ERR_INVALID);
    assert_null(r);
    cca_router_free(NULL);
}

/* Matching rules on a small lexicon of our own, independent of the shipped one. */
static const char *const small_lexicon =
    "{\"format\": \"cca-lexicon/1\", \"fuzzy_min_chars\": 6,"
    " \"anger\": {\"caps_weight\": 0, \"exclam_weight\": 0},"
    " \"ignore\": [\"my\", \"the\"],"
    " \"groups\": ["
    "  {\"agent\": \"tech_support\", \"lang\": \"en\", \"weight\": 1.0,"
    "   \"terms\": [\"log in\", \"password\"]},"
    "  {\"agent\": \"tech_support\", \"lang\": \"en\", \"weight\": 2.0,"
    "   \"terms\": [\"can't log in\"]},"
    "  {\"agent\": \"sales\", \"lang\": \"en\", \"weight\": 0.5, \"terms\": [\"card\"]},"
    "  {\"agent\": \"sales\", \"lang\": \"en\", \"weight\": 1.0,"
    "   \"terms\": [\"delivery\", \"price\"]},"
    "  {\"agent\": \"supervisor\", \"lang\": \"en\", \"weight\": 0.7, \"terms\": "
    "[\"card\"]},"
    "  {\"agent\": \"supervisor\", \"lang\": \"en\", \"weight\": 2.0,"
    "   \"terms\": [\"money back\"]}"
    " ]}";

static void test_matching_rules(void **state)
{
    struct cca_router *r = NULL;
    struct cca_error err = {0};
    struct cca_route ret;

    (void)state;
    assert_int_equal(load_text(small_lexicon, &r, &err), CCA_OK);

    /* Longest match wins and consumes its words: "log in" does not score too. */
    ret = route(r, "I can't log in", CCA_AGENT_NONE);
    assert_true(ret.scores[CCA_AGENT_TECH_SUPPORT] == 2.0);
    assert_int_equal(ret.matched_count, 1);
    assert_string_equal(ret.matched[0], "tech_support:can't log in");

    /* An entry scores once per message, however often it is repeated. */
    ret = route(r, "password password PASSWORDS", CCA_AGENT_NONE);
    assert_true(ret.scores[CCA_AGENT_TECH_SUPPORT] == 1.0);

    /* Ignored words are dropped before phrases are matched. */
    ret = route(r, "I want my money back", CCA_AGENT_NONE);
    assert_true(ret.scores[CCA_AGENT_SUPERVISOR] == 2.0);
    ret = route(r, "money, back", CCA_AGENT_NONE); /* punctuation does not break it */
    assert_true(ret.scores[CCA_AGENT_SUPERVISOR] == 2.0);
    ret = route(r, "money not back", CCA_AGENT_NONE);
    assert_true(ret.scores[CCA_AGENT_SUPERVISOR] == 0);

    /* One entry listed by two agents scores for both. */
    ret = route(r, "card", CCA_AGENT_NONE);
    assert_true(ret.scores[CCA_AGENT_SALES] == 0.5);
    assert_true(fabs(ret.scores[CCA_AGENT_SUPERVISOR] - 0.7) < 1e-9);
    assert_int_equal(ret.matched_count, 2);

    /* Typos within one edit of a word of 6+ letters. */
    ret = route(r, "delivry", CCA_AGENT_NONE); /* deletion */
    assert_true(ret.scores[CCA_AGENT_SALES] == 1.0);
    ret = route(r, "passwrod", CCA_AGENT_NONE); /* transposition */
    assert_true(ret.scores[CCA_AGENT_TECH_SUPPORT] == 1.0);
    ret = route(r, "deliverys", CCA_AGENT_NONE); /* insertion */
    assert_true(ret.scores[CCA_AGENT_SALES] == 1.0);
    ret = route(r, "prise", CCA_AGENT_NONE); /* too short to correct */
    assert_true(ret.scores[CCA_AGENT_SALES] == 0);

    /* Confidence: (1 - e^-w) * w / (w + o). */
    ret = route(r, "price", CCA_AGENT_NONE);
    assert_int_equal(ret.agent, CCA_AGENT_SALES);
    assert_true(fabs(ret.confidence - (1 - exp(-1.0))) < 1e-9);
    ret = route(r, "price and the password", CCA_AGENT_NONE);
    assert_false(ret.clear); /* a tie: no margin */
    assert_int_equal(ret.method, CCA_ROUTE_DEFAULT);
    assert_true(fabs(ret.confidence - (1 - exp(-1.0)) * 0.5) < 1e-9);
    /* Ties: the current agent before the enum order. */
    ret = route(r, "price and the password", CCA_AGENT_SALES);
    assert_int_equal(ret.best, CCA_AGENT_SALES);
    assert_int_equal(ret.agent, CCA_AGENT_SALES);
    assert_int_equal(ret.method, CCA_ROUTE_STICKY);
    ret = route(r, "price and the password", CCA_AGENT_NONE);
    assert_int_equal(ret.best, CCA_AGENT_TECH_SUPPORT);

    /* Supervisor precedence: it wins once it reaches min_score, margin or not. */
    ret = route(r, "can't log in, delivery, price, money back", CCA_AGENT_NONE);
    assert_true(ret.scores[CCA_AGENT_SALES] > ret.scores[CCA_AGENT_SUPERVISOR] - 0.01);
    assert_int_equal(ret.agent, CCA_AGENT_SUPERVISOR);
    assert_true(ret.clear);

    /* A handoff needs the margin over the current agent too. */
    ret = route(r, "delivery price password", CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(ret.agent, CCA_AGENT_SALES);
    assert_int_equal(ret.method, CCA_ROUTE_KEYWORD);
    ret = route(r, "delivery and log in", CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(ret.agent, CCA_AGENT_TECH_SUPPORT);
    assert_int_equal(ret.method, CCA_ROUTE_STICKY);

    cca_router_free(r);
}

static void test_hostile_input(void **state)
{
    static const char bad[] = "\xFF\xFE не работает \xC0\xAF";
    size_t len = 1024 * 1024;
    char *big = cca_xmalloc(len);
    struct cca_route ret;
    int64_t start;

    (void)state;
    /* Invalid UTF-8 and NUL bytes score zero everywhere. */
    cca_router_route(shipped, bad, sizeof(bad) - 1, CCA_AGENT_NONE, &ret);
    assert_int_equal(ret.method, CCA_ROUTE_DEFAULT);
    assert_true(ret.scores[0] == 0 && ret.scores[1] == 0 && ret.scores[2] == 0);
    cca_router_route(shipped, "не\0работает", 21, CCA_AGENT_SALES, &ret);
    assert_int_equal(ret.method, CCA_ROUTE_STICKY);
    assert_int_equal(ret.matched_count, 0);
    cca_router_route(shipped, NULL, 0, CCA_AGENT_NONE, &ret);
    assert_int_equal(ret.method, CCA_ROUTE_DEFAULT);
    /* An out-of-range current agent counts as none. */
    cca_router_route(shipped, "hi", 2, (enum cca_agent)42, &ret);
    assert_int_equal(ret.method, CCA_ROUTE_DEFAULT);

    /* 1 MiB of repeated cues: bounded time, matched list capped. */
    for (size_t i = 0; i < len; i++)
        big[i] = "refund price error !! "[i % 22];
    start = cca_time_mono_ms();
    cca_router_route(shipped, big, len, CCA_AGENT_NONE, &ret);
    assert_true(cca_time_mono_ms() - start < 2000);
    assert_int_equal(ret.agent, CCA_AGENT_SUPERVISOR);
    assert_true(ret.matched_count <= CCA_ROUTE_MAX_MATCHED);
    /* Every byte value, in 1 MiB of pseudo-random data. */
    srand(1);
    for (size_t i = 0; i < len; i++)
        big[i] = (char)(rand() & 0xFF);
    cca_router_route(shipped, big, len, CCA_AGENT_SALES, &ret);
    assert_int_equal(ret.agent, CCA_AGENT_SALES);
    free(big);
}

static void test_matched_truncation(void **state)
{
    /* A long term is cut at a code point boundary inside CCA_ROUTE_MATCH_LEN. */
    static const char lex[] =
        "{\"format\": \"cca-lexicon/1\", \"groups\": [{\"agent\": \"supervisor\","
        " \"lang\": \"ru\", \"terms\": [\"защита прав потребителей в суде общей "
        "юрисдикции\"]}]}";
    struct cca_router *r = NULL;
    struct cca_route ret;
    json_t *j;

    (void)state;
    assert_int_equal(load_text(lex, &r, NULL), CCA_OK);
    ret = route(r, "Защита прав потребителей в суде общей юрисдикции!", CCA_AGENT_NONE);
    assert_int_equal(ret.matched_count, 1);
    assert_true(strlen(ret.matched[0]) < CCA_ROUTE_MATCH_LEN);
    assert_true(cca_text_is_utf8(ret.matched[0], strlen(ret.matched[0])));
    assert_true(
        strncmp(ret.matched[0], "supervisor:защита", strlen("supervisor:защита")) == 0);
    j = cca_route_to_json(&ret);
    assert_int_equal(json_array_size(json_object_get(j, "matched")), 1);
    json_decref(j);
    cca_router_free(r);
}

/*
 * Messages we wrote for the telecom/SaaS side of the service (not from the dev
 * sets): each must be decided by keywords alone, for the expected agent.
 */
static void test_own_messages(void **state)
{
    static const struct {
        const char *text;
        enum cca_agent agent;
    } cases[] = {
        {"Интернет пропал со вчерашнего вечера, роутер мигает красным",
         CCA_AGENT_TECH_SUPPORT},
        {"Приложение вылетает при открытии", CCA_AGENT_TECH_SUPPORT},
        {"Не приходит код подтверждения по СМС", CCA_AGENT_TECH_SUPPORT},
        {"Как сбросить пароль от личного кабинета?", CCA_AGENT_TECH_SUPPORT},
        {"Карта не проходит при оплате в магазине", CCA_AGENT_TECH_SUPPORT},
        {"Хочу подключить тариф подороже, какие есть варианты?", CCA_AGENT_SALES},
        {"Сколько стоит безлимитный интернет для дома?", CCA_AGENT_SALES},
        {"Можно ли перейти на годовую подписку со скидкой?", CCA_AGENT_SALES},
        {"Какая комиссия за перевод за границу?", CCA_AGENT_SALES},
        {"Позовите вашего начальника, я устал объяснять одно и то же",
         CCA_AGENT_SUPERVISOR},
        {"Я буду жаловаться в Роспотребнадзор", CCA_AGENT_SUPERVISOR},
        {"Соедините меня с живым человеком, а не с ботом", CCA_AGENT_SUPERVISOR},
        {"My internet keeps dropping every evening", CCA_AGENT_TECH_SUPPORT},
        {"The app crashes on startup after the latest update", CCA_AGENT_TECH_SUPPORT},
        {"My password reset link has expired", CCA_AGENT_TECH_SUPPORT},
        {"Do you offer a student discount on the premium plan?", CCA_AGENT_SALES},
        {"How long does delivery take to Canada?", CCA_AGENT_SALES},
        {"Is there a free trial for the pro version?", CCA_AGENT_SALES},
        {"I need to speak with a manager right now", CCA_AGENT_SUPERVISOR},
        {"This is the third time I'm writing, this is unacceptable",
         CCA_AGENT_SUPERVISOR},
        {"I will contact my lawyer if this is not fixed", CCA_AGENT_SUPERVISOR},
        {"You charged me twice this month, I want a refund", CCA_AGENT_SUPERVISOR},
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        struct cca_route r = route(shipped, cases[i].text, CCA_AGENT_NONE);

        if (r.agent != cases[i].agent || r.method != CCA_ROUTE_KEYWORD)
            fail_msg("'%s' -> %s (%s)", cases[i].text, cca_agent_name(r.agent),
                     cca_route_method_name(r.method));
    }
}

/* Run cca_route_cli with @input on stdin; returns its stdout (caller frees). */
static char *run_cli(const char *input, int argc, char **argv, int *ret_rc)
{
    char in_path[64], out_path[64];
    int saved, fd;
    FILE *f;
    char *out;
    long size;

    write_temp(input, in_path);
    write_temp("", out_path);
    assert_non_null(freopen(in_path, "r", stdin));
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    fd = open(out_path, O_WRONLY | O_TRUNC);
    assert_true(saved >= 0 && fd >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    close(fd);
    *ret_rc = cca_route_cli(shipped, argc, argv);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    f = fopen(out_path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    rewind(f);
    out = cca_xcalloc(1, (size_t)size + 1);
    assert_int_equal(fread(out, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    unlink(in_path);
    unlink(out_path);
    return out;
}

static void test_cli(void **state)
{
    char arg0[] = "route", eval[] = "--eval", json[] = "--json", bogus[] = "--bogus";
    char *argv_plain[] = {arg0, NULL};
    char *argv_eval[] = {arg0, eval, json, NULL};
    char *argv_bad[] = {arg0, bogus, NULL};
    size_t long_len = 70 * 1024;
    char *input = cca_xmalloc(long_len + 512);
    char *out, *line, *p, *save = NULL;
    json_t *j;
    int rc, n = 0;

    (void)state;
    /* Plain text, JSONL with extra fields, a too-long line, bad JSON, a blank line. */
    p = stpcpy(input, "Какие у вас тарифы?\n"
                      "{\"text\": \"I forgot my password\", \"expected_agent\": "
                      "\"tech_support\", \"source\": \"x\"}\n");
    memset(p, 'a', long_len);
    strcpy(p + long_len, "\n{\"text\": 5}\n\nrefund please");
    out = run_cli(input, 1, argv_plain, &rc);
    assert_int_equal(rc, 0);
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        j = json_loads(line, 0, NULL);
        assert_non_null(j);
        switch (n++) {
            case 0:
                assert_string_equal(json_string_value(json_object_get(j, "agent")),
                                    "sales");
                assert_string_equal(json_string_value(json_object_get(j, "text")),
                                    "Какие у вас тарифы?");
                break;
            case 1:
                assert_string_equal(json_string_value(json_object_get(j, "agent")),
                                    "tech_support");
                assert_string_equal(
                    json_string_value(json_object_get(j, "expected_agent")),
                    "tech_support");
                assert_string_equal(json_string_value(json_object_get(j, "source")), "x");
                break;
            case 2:
            case 3:
                assert_non_null(json_object_get(j, "error"));
                assert_true(json_is_integer(json_object_get(j, "line")));
                break;
            case 4: /* the last line has no newline */
                assert_string_equal(json_string_value(json_object_get(j, "agent")),
                                    "supervisor");
                break;
            default:
                fail();
        }
        json_decref(j);
    }
    assert_int_equal(n, 5);
    free(out);

    out = run_cli("{\"text\": \"price of the plan\", \"expected_agent\": \"sales\"}\n"
                  "{\"text\": \"hello\", \"expected_agent\": \"supervisor\"}\n"
                  "no label here\n",
                  3, argv_eval, &rc);
    assert_int_equal(rc, 0);
    j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "messages")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "skipped")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "clear")), 1);
    assert_true(fabs(json_real_value(json_object_get(j, "accuracy")) - 0.5) < 1e-9);
    assert_true(
        json_is_object(json_object_get(json_object_get(j, "agents"), "supervisor")));
    json_decref(j);
    free(out);

    out = run_cli("", 2, argv_bad, &rc);
    assert_int_equal(rc, 2);
    free(out);
    free(input);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_ru),       cmocka_unit_test(test_demo_en),
        cmocka_unit_test(test_anger),         cmocka_unit_test(test_sticky_and_default),
        cmocka_unit_test(test_negation),      cmocka_unit_test(test_json),
        cmocka_unit_test(test_load_errors),   cmocka_unit_test(test_matching_rules),
        cmocka_unit_test(test_hostile_input), cmocka_unit_test(test_matched_truncation),
        cmocka_unit_test(test_own_messages),  cmocka_unit_test(test_cli),
    };

    cca_mem_install_jansson();
    return cmocka_run_group_tests(tests, setup, teardown);
}
