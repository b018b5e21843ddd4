/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cca/router.h"
#include "cca/router_model.h"
#include "cca/text.h"

#define MODEL CCA_SOURCE_ROOT "/data/routing/router-model.txt"
/* What out-pointers hold before a call that must not write them on failure. */
#define UNTOUCHED ((struct cca_router_model *)1)
#define LEXICON   CCA_SOURCE_ROOT "/data/routing/lexicon.json"

/* A small hand-written model: the numbers below are what the tests expect. */
#define TINY_HEAD                                                                        \
    "cca-router-model/1\n"                                                               \
    "# a comment\n"                                                                      \
    "lang en\n"                                                                          \
    "classes sales tech_support supervisor\n"                                            \
    "temperature 1\n"                                                                    \
    "min_prob 0.6\n"                                                                     \
    "followup_min_prob 0.8\n"                                                            \
    "override_min_prob 0.9\n"                                                            \
    "rule_min_score 2\n"                                                                 \
    "bias 0 0 0\n"
#define TINY                                                                             \
    TINY_HEAD "features 3\n"                                                             \
              "w=price\t2 0 0\n"                                                         \
              "w=broken\t0 3 0\n"                                                        \
              "s=?\t0.5 0 -0.5\n"                                                        \
              "end\n"

static void write_temp(const char *content, size_t len, char path[64])
{
    FILE *f;

    snprintf(path, 64, "/tmp/cca_test_model_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static cca_rc load_text(const char *content, struct cca_router_model **ret,
                        struct cca_error *err)
{
    char path[64];
    cca_rc rc;

    write_temp(content, strlen(content), path);
    *ret = UNTOUCHED; /* a failure must leave it as it was */
    rc = cca_router_model_load(path, ret, err);
    unlink(path);
    return rc;
}

struct collect {
    size_t calls; /* every call, also past the 64 kept */
    size_t n;
    char names[64][64];
};

static void collect(const char *name, size_t len, void *ctx)
{
    struct collect *c = ctx;

    c->calls++;
    assert_int_equal(strlen(name), len);
    assert_true(len > 0 && len <= CCA_ROUTER_MODEL_FEATURE_LEN);
    assert_true(cca_text_is_utf8(name, len));
    if (c->n < 64)
        snprintf(c->names[c->n++], 64, "%s", name);
}

static bool has(const struct collect *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->names[i], name) == 0)
            return true;
    }
    return false;
}

static size_t features_of(const char *text, struct collect *c)
{
    struct cca_text_tokens t = {0};
    size_t n;

    memset(c, 0, sizeof(*c));
    assert_int_equal(cca_text_analyze(text, strlen(text), &t), CCA_OK);
    n = cca_router_model_features(text, strlen(text), &t, collect, c);
    cca_text_tokens_cleanup(&t);
    return n;
}

static void test_features(void **state)
{
    struct collect c;
    size_t n;

    (void)state;
    n = features_of("How much is the Price??", &c);
    assert_int_equal(n, c.n);
    assert_true(has(&c, "s=?"));
    assert_false(has(&c, "s=!"));
    assert_true(has(&c, "s=n5"));
    assert_true(has(&c, "f=how"));
    assert_true(has(&c, "w=price"));
    assert_true(has(&c, "b=how+much"));
    assert_true(has(&c, "c=^pri"));
    assert_true(has(&c, "c=ice$"));
    assert_false(has(&c, "c=^is$")); /* words under 3 code points: no n-grams */
    /* Shape: shouting, hashtag, mention; each feature once. */
    n = features_of("@SHOP WHERE IS MY ORDER!!! #FAIL #FAIL", &c);
    assert_true(has(&c, "s=!") && has(&c, "s=#") && has(&c, "s=@"));
    assert_true(has(&c, "s=caps"));
    for (size_t i = 0; i < c.n; i++) {
        for (size_t j = i + 1; j < c.n; j++)
            assert_string_not_equal(c.names[i], c.names[j]);
    }
    /* Cyrillic: stems and code-point 4-grams (not bytes). */
    features_of("Не работает", &c);
    assert_true(has(&c, "b=не+работа"));
    assert_true(has(&c, "c=^раб"));
    assert_true(has(&c, "s=n2"));
    /* Empty text: no tokens, still a length bucket is absent. */
    assert_int_equal(features_of("", &c), 0);
}

/* A long message stops at the feature cap. */
static void test_features_cap(void **state)
{
    struct cca_text_tokens t = {0};
    char *text = malloc(20000);
    struct collect c = {0};
    size_t len = 0, n;

    (void)state;
    for (int i = 0; len < 19000; i++)
        len += (size_t)snprintf(text + len, 20000 - len, "word%dx ", i);
    assert_int_equal(cca_text_analyze(text, len, &t), CCA_OK);
    n = cca_router_model_features(text, len, &t, collect, &c);
    assert_int_equal(n, CCA_ROUTER_MODEL_MAX_MSG_FEATURES);
    assert_int_equal(c.calls, n); /* the callback saw each, and no more */
    cca_text_tokens_cleanup(&t);
    free(text);
}

/* @text[0..len): analysed and its features extracted; the count is returned. */
static size_t hostile_features(const char *text, size_t len)
{
    struct cca_text_tokens t = {0};
    struct collect c = {0};
    size_t n = 0;

    if (cca_text_analyze(text, len, &t) == CCA_OK)
        n = cca_router_model_features(text, len, &t, collect, &c);
    assert_int_equal(c.calls, n);
    assert_true(n <= CCA_ROUTER_MODEL_MAX_MSG_FEATURES);
    cca_text_tokens_cleanup(&t);
    return n;
}

/*
 * Hostile text: stacked combining marks, emoji ZWJ sequences, one 100 KB word,
 * 1 MB of short words with no NUL. Each stays within the cap and the names
 * stay UTF-8 (checked in collect); nothing crashes (ASan build too).
 */
static void test_features_hostile(void **state)
{
    static const char zalgo[] = "a\xcc\x81\xcc\x82\xcc\x83\xcc\x84\xcc\x85";
    static const char family[] = "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9"
                                 "\xe2\x80\x8d\xf0\x9f\x91\xa7 ";
    size_t cap = 1024 * 1024;
    char *text = malloc(cap + 64);
    size_t len;

    (void)state;
    assert_non_null(text);
    /* One word of 20,000 code points, each with five combining marks. */
    for (len = 0; len + sizeof(zalgo) < 100 * 1024;)
        len += (size_t)snprintf(text + len, cap - len, "%s", zalgo);
    assert_true(hostile_features(text, len) > 0);
    /* Emoji ZWJ families, words of them and of letters between. */
    for (len = 0; len + 64 < 100 * 1024;)
        len += (size_t)snprintf(text + len, cap - len, "%sx%s ", family, zalgo);
    (void)hostile_features(text, len);
    /* One word of 100 KB of ASCII, and of Cyrillic. */
    memset(text, 'a', 100 * 1024);
    assert_true(hostile_features(text, 100 * 1024) <= 8);
    for (len = 0; len < 100 * 1024; len += 2)
        memcpy(text + len, "\xd0\xb6", 2);
    (void)hostile_features(text, len);
    /* 1 MB of distinct short words: the cap holds. */
    for (len = 0; len + 16 < cap;)
        len += (size_t)snprintf(text + len, cap - len, "w%zux ", len);
    assert_int_equal(hostile_features(text, len), CCA_ROUTER_MODEL_MAX_MSG_FEATURES);
    /* Only separators and punctuation. */
    memset(text, '!', cap);
    assert_true(hostile_features(text, cap) <= 2);
    free(text);
    cca_text_thread_cleanup();
}

static void predict(const struct cca_router_model *m, const char *text,
                    struct cca_router_model_result *r)
{
    struct cca_text_tokens t = {0};

    assert_int_equal(cca_text_analyze(text, strlen(text), &t), CCA_OK);
    assert_true(cca_router_model_predict(m, CCA_LANG_EN, text, strlen(text), &t, r));
    cca_text_tokens_cleanup(&t);
}

static void test_tiny_predict(void **state)
{
    struct cca_router_model *m = NULL;
    struct cca_router_model_params p;
    struct cca_router_model_result r;
    struct cca_error err = {0};
    double z, sum;

    (void)state;
    assert_int_equal(load_text(TINY, &m, &err), CCA_OK);
    assert_true(cca_router_model_has_lang(m, CCA_LANG_EN));
    assert_false(cca_router_model_has_lang(m, CCA_LANG_RU));
    assert_true(cca_router_model_params(m, CCA_LANG_EN, &p));
    assert_true(fabs(p.min_prob - 0.6) < 1e-9 && fabs(p.rule_min_score - 2) < 1e-9);
    /* "price?": sales logit 2 + 0.5, supervisor -0.5, tech 0 (classes reordered). */
    predict(m, "price?", &r);
    z = exp(2.5) + exp(0) + exp(-0.5);
    assert_int_equal(r.best, CCA_AGENT_SALES);
    assert_true(fabs(r.prob[CCA_AGENT_SALES] - exp(2.5) / z) < 1e-6);
    assert_true(fabs(r.prob[CCA_AGENT_SUPERVISOR] - exp(-0.5) / z) < 1e-6);
    sum = r.prob[0] + r.prob[1] + r.prob[2];
    assert_true(fabs(sum - 1) < 1e-9);
    assert_int_equal(r.top_count, 2);
    assert_string_equal(r.top[0], "w=price"); /* 2 - 2/3 beats 0.5 - 0 */
    assert_string_equal(r.top[1], "s=?");
    predict(m, "it is broken", &r);
    assert_int_equal(r.best, CCA_AGENT_TECH_SUPPORT);
    assert_string_equal(r.top[0], "w=broken");
    /* Nothing known: the bias alone, uniform, ties go to enum order. */
    predict(m, "hello", &r);
    assert_int_equal(r.best, CCA_AGENT_TECH_SUPPORT);
    assert_true(fabs(r.prob[CCA_AGENT_SALES] - 1.0 / 3) < 1e-9);
    assert_int_equal(r.top_count, 0);
    cca_router_model_free(m);
    /* No model: false, zeroed. */
    assert_false(cca_router_model_predict(NULL, CCA_LANG_EN, "x", 1, NULL, &r));
    assert_true(r.prob[0] == 0 && r.top_count == 0);
}

static void test_temperature(void **state)
{
    static const char text[] =
        "cca-router-model/1\nlang en\nclasses tech_support sales supervisor\n"
        "temperature 2\nmin_prob 0.5\nfollowup_min_prob 0.8\noverride_min_prob 0.9\n"
        "rule_min_score 2\nbias 0 0 0\nfeatures 1\nw=price\t0 2 0\nend\n";
    struct cca_router_model *m = NULL;
    struct cca_router_model_result r;

    (void)state;
    assert_int_equal(load_text(text, &m, NULL), CCA_OK);
    predict(m, "price", &r);
    /* logits / 2: sales e^1 against e^0 twice. */
    assert_true(fabs(r.prob[CCA_AGENT_SALES] - exp(1) / (exp(1) + 2)) < 1e-6);
    cca_router_model_free(m);
}

/* Each malformed file is refused with its code and a message naming the problem. */
static void test_malformed(void **state)
{
    static const struct {
        const char *text;
        cca_rc rc;
        const char *msg;
    } cases[] = {
        {"", CCA_ERR_PARSE, "first line"},
        {"cca-router-model/2\n", CCA_ERR_PARSE, "first line"},
        {"cca-router-model/1\n", CCA_ERR_INVALID, "no language"},
        {"cca-router-model/1\nlang fr\n", CCA_ERR_INVALID, "en or ru"},
        {"cca-router-model/1\nhello\n", CCA_ERR_INVALID, "expected"},
        {TINY_HEAD, CCA_ERR_PARSE, "no 'end'"},
        {TINY_HEAD "end\n", CCA_ERR_INVALID, "misses"},
        {TINY_HEAD "features 2\nw=a\t1 2 3\n", CCA_ERR_PARSE, "ends inside"},
        {TINY_HEAD "features 3\nw=a\t1 2 3\nend\n", CCA_ERR_INVALID,
         "features 3, found 1"},
        {TINY_HEAD "features 1\nend\n", CCA_ERR_INVALID, "features 1, found 0"},
        {TINY_HEAD "features 1\nw=a\t1 2 3\nw=b\t1 2 3\nend\n", CCA_ERR_INVALID,
         "unknown key"},
        {TINY_HEAD "features 1\nw=a 1 2 3\nend\n", CCA_ERR_PARSE, "TAB"},
        {TINY_HEAD "features 1\nw=a\t1 2\nend\n", CCA_ERR_PARSE, "three weights"},
        {TINY_HEAD "features 1\nw=a\t1 2 x\nend\n", CCA_ERR_PARSE, "three weights"},
        {TINY_HEAD "features 1\nw=a\t1 2 3 4\nend\n", CCA_ERR_PARSE, "three weights"},
        {TINY_HEAD "features 1\nw=a\t1 nan 3\nend\n", CCA_ERR_INVALID, "not finite"},
        {TINY_HEAD "features 1\nw=a\t1 1e9 3\nend\n", CCA_ERR_INVALID, "over 1000"},
        {TINY_HEAD "features 1\nw=a\t1 1e999 3\nend\n", CCA_ERR_PARSE, "three weights"},
        {TINY_HEAD "features 2\nw=a\t1 2 3\nw=a\t1 2 3\nend\n", CCA_ERR_INVALID, "twice"},
        {TINY_HEAD "features 1\n\t1 2 3\nend\n", CCA_ERR_INVALID, "1..160 bytes"},
        {TINY_HEAD "features 1\nw a\t1 2 3\nend\n", CCA_ERR_INVALID, "1..160 bytes"},
        {TINY_HEAD "features -1\nend\n", CCA_ERR_PARSE, "count"},
        {TINY_HEAD "features 1.5\nend\n", CCA_ERR_PARSE, "count"},
        {TINY_HEAD "features 999999\nend\n", CCA_ERR_INVALID, "400000"},
        {TINY_HEAD "features 0\nfeatures 0\nend\n", CCA_ERR_INVALID, "twice"},
        {TINY_HEAD "colour blue\nend\n", CCA_ERR_INVALID, "unknown key"},
        {"cca-router-model/1\nlang en\ntemperature 0\n", CCA_ERR_INVALID, "out of range"},
        {"cca-router-model/1\nlang en\nmin_prob 1.5\n", CCA_ERR_INVALID, "out of range"},
        {"cca-router-model/1\nlang en\nrule_min_score 0\n", CCA_ERR_INVALID,
         "out of range"},
        {"cca-router-model/1\nlang en\nmin_prob\n", CCA_ERR_PARSE, "one number"},
        {"cca-router-model/1\nlang en\nclasses sales sales supervisor\n", CCA_ERR_INVALID,
         "classes"},
        {"cca-router-model/1\nlang en\nclasses sales tech_support\n", CCA_ERR_INVALID,
         "classes"},
        {"cca-router-model/1\nlang en\nclasses a b c d\n", CCA_ERR_INVALID, "classes"},
        {"cca-router-model/1\nlang en\nfeatures 0\n", CCA_ERR_INVALID, "before"},
        {"cca-router-model/1\nlang en\nbias 0 0\n", CCA_ERR_PARSE, "three numbers"},
        {TINY "lang en\n", CCA_ERR_INVALID, "twice"},
    };
    struct cca_router_model *m;
    struct cca_error err;

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        cca_rc rc;

        memset(&err, 0, sizeof(err));
        rc = load_text(cases[i].text, &m, &err);
        if (rc != cases[i].rc || strstr(err.msg, cases[i].msg) == NULL)
            fail_msg("case %zu: rc %d, '%s'", i, (int)rc, err.msg);
        assert_ptr_equal(m, UNTOUCHED);
        assert_non_null(strstr(err.msg, "router model"));
    }
}

static void test_bad_files(void **state)
{
    static const char nul[] = "cca-router-model/1\nlang en\0\n";
    struct cca_router_model *m = NULL;
    struct cca_error err = {0};
    char path[64];
    char *big;
    FILE *f;

    (void)state;
    m = UNTOUCHED;
    assert_int_equal(cca_router_model_load("/nonexistent/model.txt", &m, &err),
                     CCA_ERR_NOT_FOUND);
    assert_ptr_equal(m, UNTOUCHED);
    assert_int_equal(cca_router_model_load("/tmp", &m, &err), CCA_ERR_IO);
    assert_ptr_equal(m, UNTOUCHED);
    /* NUL bytes and invalid UTF-8 are not text. */
    write_temp(nul, sizeof(nul) - 1, path);
    assert_int_equal(cca_router_model_load(path, &m, &err), CCA_ERR_PARSE);
    assert_ptr_equal(m, UNTOUCHED);
    unlink(path);
    write_temp("cca-router-model/1\n\xff\n", 21, path);
    assert_int_equal(cca_router_model_load(path, &m, &err), CCA_ERR_PARSE);
    assert_ptr_equal(m, UNTOUCHED);
    unlink(path);
    /* Over the size cap. */
    write_temp("cca-router-model/1\n", 19, path);
    f = fopen(path, "a");
    assert_non_null(f);
    big = calloc(1, CCA_ROUTER_MODEL_MAX_BYTES);
    memset(big, '#', CCA_ROUTER_MODEL_MAX_BYTES);
    assert_int_equal(fwrite(big, 1, CCA_ROUTER_MODEL_MAX_BYTES, f),
                     CCA_ROUTER_MODEL_MAX_BYTES);
    assert_int_equal(fclose(f), 0);
    free(big);
    assert_int_equal(cca_router_model_load(path, &m, &err), CCA_ERR_TOO_LARGE);
    unlink(path);
    assert_ptr_equal(m, UNTOUCHED);
    assert_int_equal(cca_router_model_load(NULL, &m, &err), CCA_ERR_INVALID);
    assert_ptr_equal(m, UNTOUCHED);
    cca_router_model_free(NULL);
}

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
#define LOAD_MAX_MS 2000.0 /* sanitizers make it several times slower */
#else
#define LOAD_MAX_MS 100.0 /* the issue's bound */
#endif

/*
 * The shipped model loads within the issue's 100 ms of CPU time (the process's
 * own: other jobs on the machine do not count), has both languages and is
 * under 5 MB.
 */
static void test_shipped(void **state)
{
    struct cca_router_model *m = NULL;
    struct cca_error err = {0};
    struct timespec a, b;
    struct stat st;
    double ms;

    (void)state;
    assert_int_equal(stat(MODEL, &st), 0);
    assert_true(st.st_size < CCA_ROUTER_MODEL_MAX_BYTES);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    if (cca_router_model_load(MODEL, &m, &err) != CCA_OK)
        fail_msg("%s", err.msg);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    print_message("# shipped model loaded in %.1f ms of CPU time\n", ms);
    assert_true(cca_router_model_has_lang(m, CCA_LANG_EN));
    assert_true(cca_router_model_has_lang(m, CCA_LANG_RU));
    assert_true(cca_router_model_feature_count(m, CCA_LANG_EN) > 1000);
    assert_true(cca_router_model_feature_count(m, CCA_LANG_RU) > 1000);
    if (ms > LOAD_MAX_MS)
        fail_msg("loading took %.1f ms of CPU time (bound %.0f)", ms, LOAD_MAX_MS);
    cca_router_model_free(m);
}

/* The two stages through cca_router_decide with the shipped files. */
static void test_decide(void **state)
{
    const struct cca_router_params params = {
        .min_score = 1.0, .min_margin = 0.5, .default_agent = CCA_AGENT_TECH_SUPPORT};
    const struct cca_router_params no_model = {.min_score = 1.0,
                                               .min_margin = 0.5,
                                               .default_agent = CCA_AGENT_TECH_SUPPORT,
                                               .model_path = ""};
    struct cca_router *r = NULL, *k = NULL;
    struct cca_error err = {0};
    struct cca_route d, kw;
    const char *s;

    (void)state;
    if (cca_router_new(LEXICON, &params, &r, &err) != CCA_OK)
        fail_msg("%s", err.msg);
    assert_true(cca_router_has_model(r));
    assert_int_equal(cca_router_new(LEXICON, &no_model, &k, &err), CCA_OK);
    assert_false(cca_router_has_model(k));
    {
        char line[160];

        assert_true(cca_router_model_summary(r, line, sizeof(line)));
        assert_non_null(strstr(line, "router-model.txt: en "));
        assert_non_null(strstr(line, " features, ru "));
        assert_false(cca_router_model_summary(k, line, sizeof(line)));
        assert_string_equal(line, "no model (the keyword stage alone)");
        assert_false(cca_router_model_summary(NULL, line, 8));
        assert_string_equal(line, "no mode");
    }

    /* A strong rule (a human, a refund) stays a keyword decision. */
    s = "I want to speak to a manager, I demand a refund";
    cca_router_decide(r, s, strlen(s), CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_KEYWORD);
    assert_int_equal(d.agent, CCA_AGENT_SUPERVISOR);
    assert_true(d.prob[0] == 0 && d.prob[1] == 0 && d.prob[2] == 0);

    /* No keyword at all: the model decides, and says why. */
    s = "My parcel is three weeks late and nobody answers my emails";
    cca_router_route(r, s, strlen(s), CCA_AGENT_NONE, &kw);
    assert_false(kw.clear);
    cca_router_decide(r, s, strlen(s), CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_MODEL);
    assert_int_equal(d.agent, CCA_AGENT_SUPERVISOR);
    assert_true(d.clear);
    assert_true(d.confidence >= 0.5 && d.confidence <= 1.0);
    assert_true(fabs(d.prob[0] + d.prob[1] + d.prob[2] - 1) < 1e-9);
    assert_true(d.matched_count > 0);
    assert_non_null(strstr(d.matched[0], "supervisor:"));
    assert_non_null(strchr(d.matched[0], '='));

    /* A greeting: nobody is sure; a first message asks, a follow-up stays. */
    s = "привет";
    cca_router_decide(r, s, strlen(s), CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_CLARIFY);
    assert_false(d.clear);
    /* The guess: never supervisor, the likelier of the others (ties: tech). */
    assert_int_equal(d.agent, d.prob[CCA_AGENT_SALES] > d.prob[CCA_AGENT_TECH_SUPPORT]
                                  ? CCA_AGENT_SALES
                                  : CCA_AGENT_TECH_SUPPORT);
    cca_router_decide(r, s, strlen(s), CCA_AGENT_SALES, &d);
    assert_int_equal(d.method, CCA_ROUTE_STICKY);
    assert_int_equal(d.agent, CCA_AGENT_SALES);

    /* Without a model the decision is the keyword stage's, field for field. */
    cca_router_decide(k, s, strlen(s), CCA_AGENT_NONE, &d);
    cca_router_route(k, s, strlen(s), CCA_AGENT_NONE, &kw);
    assert_memory_equal(&d, &kw, sizeof(d));
    assert_int_equal(d.method, CCA_ROUTE_DEFAULT);

    /* Invalid UTF-8: the keyword stage's answer, the model is not asked. */
    cca_router_decide(r, "\xff\xfe", 2, CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_DEFAULT);
    cca_router_decide(r, NULL, 0, CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_DEFAULT);

    assert_string_equal(cca_route_method_name(CCA_ROUTE_MODEL), "model");
    assert_string_equal(cca_route_method_name(CCA_ROUTE_CLARIFY), "clarify");
    cca_router_free(r);
    cca_router_free(k);
    cca_text_thread_cleanup();
}

/*
 * Every branch of cca_router_decide with controlled weights: a hand-written
 * English model (made-up words the lexicon does not know) beside the shipped
 * lexicon. Probabilities, with bias 0 and temperature 1 (softmax over
 * tech_support, sales, supervisor):
 *   zorp     supervisor 1          -> 0.576 supervisor: unsure, guess a tie
 *   blip     sales 0.3, sup. 1     -> 0.536 supervisor: unsure, sales likelier
 *   frob     sales 1.2             -> 0.624 sales: >= min_prob, < followup
 *   qux      sales 3               -> 0.909 sales: >= followup_min_prob
 *   zzcrash  tech_support 50       -> 1.000 tech_support (rounds to 1)
 *   cost     sales 2               -> agrees with the lexicon's "cost"
 *   glorb    tech_support 3.5      -> with "cost": 0.798 tech_support
 */
#define DECIDE_MODEL(override)                                                           \
    "cca-router-model/1\nlang en\nclasses tech_support sales supervisor\n"               \
    "temperature 1\nmin_prob 0.6\nfollowup_min_prob 0.8\n"                               \
    "override_min_prob " override "\nrule_min_score 2\nbias 0 0 0\nfeatures 7\n"         \
    "w=zorp\t0 0 1\nw=blip\t0 0.3 1\nw=frob\t0 1.2 0\nw=qux\t0 3 0\n"                    \
    "w=zzcrash\t50 0 0\nw=cost\t0 2 0\nw=glorb\t3.5 0 0\nend\n"

static struct cca_router *decide_router(const char *model)
{
    struct cca_router_params params = {
        .min_score = 1.0, .min_margin = 0.5, .default_agent = CCA_AGENT_TECH_SUPPORT};
    struct cca_router *r = NULL;
    struct cca_error err = {0};
    char path[64];

    write_temp(model, strlen(model), path);
    params.model_path = path;
    if (cca_router_new(LEXICON, &params, &r, &err) != CCA_OK)
        fail_msg("%s", err.msg);
    unlink(path);
    assert_true(cca_router_has_model(r));
    return r;
}

static void decide(const struct cca_router *r, const char *text, enum cca_agent current,
                   struct cca_route *d)
{
    cca_router_decide(r, text, strlen(text), current, d);
}

static void test_decide_branches(void **state)
{
    struct cca_router *r = decide_router(DECIDE_MODEL("1"));
    struct cca_router *r09 = decide_router(DECIDE_MODEL("0.9"));
    const char *sales_kw = "How much does the Premium plan cost?";
    char buf[128];
    struct cca_route d;

    (void)state;
    /* A strong supervisor cue is final: the model is not even asked. */
    decide(r, "I want to speak to a manager, I demand a refund qux", CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_KEYWORD);
    assert_int_equal(d.agent, CCA_AGENT_SUPERVISOR);
    assert_true(d.prob[0] == 0 && d.prob[1] == 0 && d.prob[2] == 0);

    /* A clear keyword winner the model agrees with stays "keyword". */
    decide(r, sales_kw, CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_KEYWORD);
    assert_int_equal(d.agent, CCA_AGENT_SALES);
    assert_true(d.prob[CCA_AGENT_SALES] > 0.5);
    assert_string_equal(d.matched[0], "sales:how much"); /* the lexicon explains it */

    /* override_min_prob 1: never overruled, not even at a probability of 1. */
    (void)snprintf(buf, sizeof(buf), "%s zzcrash", sales_kw);
    decide(r, buf, CCA_AGENT_NONE, &d);
    assert_true(d.prob[CCA_AGENT_TECH_SUPPORT] >= 1.0 - 1e-9);
    assert_int_equal(d.method, CCA_ROUTE_KEYWORD);
    assert_int_equal(d.agent, CCA_AGENT_SALES);
    /* With 0.9 the same message is overruled: the threshold is what decides. */
    decide(r09, buf, CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_MODEL);
    assert_int_equal(d.agent, CCA_AGENT_TECH_SUPPORT);

    /*
     * The model agreeing with the current agent does not undo a clear keyword
     * move (tech_support 0.798 >= min_prob, but sales won by keywords), with
     * either override threshold.
     */
    (void)snprintf(buf, sizeof(buf), "%s glorb", sales_kw);
    decide(r, buf, CCA_AGENT_TECH_SUPPORT, &d);
    assert_int_equal(d.best, CCA_AGENT_SALES);
    assert_true(d.prob[CCA_AGENT_TECH_SUPPORT] > 0.7 &&
                d.prob[CCA_AGENT_TECH_SUPPORT] < 0.9);
    assert_int_equal(d.method, CCA_ROUTE_KEYWORD);
    assert_int_equal(d.agent, CCA_AGENT_SALES);
    decide(r09, buf, CCA_AGENT_TECH_SUPPORT, &d);
    assert_int_equal(d.method, CCA_ROUTE_KEYWORD);
    assert_int_equal(d.agent, CCA_AGENT_SALES);

    /* A first message without keywords: the model decides at >= min_prob. */
    decide(r, "frob", CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_MODEL);
    assert_int_equal(d.agent, CCA_AGENT_SALES);
    assert_true(d.clear);
    assert_true(fabs(d.confidence - exp(1.2) / (exp(1.2) + 2)) < 1e-6);
    assert_string_equal(d.matched[0], "sales:w=frob");

    /* A follow-up: kept below followup_min_prob, moved at or above it. */
    decide(r, "frob", CCA_AGENT_TECH_SUPPORT, &d);
    assert_int_equal(d.method, CCA_ROUTE_STICKY);
    assert_int_equal(d.agent, CCA_AGENT_TECH_SUPPORT);
    assert_false(d.clear);
    decide(r, "frob", CCA_AGENT_SALES, &d); /* the current agent needs min_prob only */
    assert_int_equal(d.method, CCA_ROUTE_MODEL);
    assert_int_equal(d.agent, CCA_AGENT_SALES);
    decide(r, "qux", CCA_AGENT_TECH_SUPPORT, &d);
    assert_int_equal(d.method, CCA_ROUTE_MODEL);
    assert_int_equal(d.agent, CCA_AGENT_SALES);
    assert_true(d.confidence >= 0.8);

    /*
     * Nobody sure of a first message: clarify. The model leans supervisor, but
     * a guess never takes supervisor (it would escalate the dialog): the
     * likelier of the other two, ties to tech_support.
     */
    decide(r, "zorp", CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_CLARIFY);
    assert_false(d.clear);
    assert_true(d.prob[CCA_AGENT_SUPERVISOR] > d.prob[CCA_AGENT_SALES]);
    assert_int_equal(d.agent, CCA_AGENT_TECH_SUPPORT);
    assert_true(fabs(d.confidence - 1 / (exp(1) + 2)) < 1e-6);
    assert_string_equal(d.matched[0], "supervisor:w=zorp"); /* what the model leaned on */
    decide(r, "blip", CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_CLARIFY);
    assert_int_equal(d.agent, CCA_AGENT_SALES);
    /* The same as a follow-up stays with its agent. */
    decide(r, "zorp", CCA_AGENT_SALES, &d);
    assert_int_equal(d.method, CCA_ROUTE_STICKY);
    assert_int_equal(d.agent, CCA_AGENT_SALES);

    /* Russian text: this model has no Russian, so the keyword stage alone. */
    decide(r, "привет", CCA_AGENT_NONE, &d);
    assert_int_equal(d.method, CCA_ROUTE_DEFAULT);
    cca_router_free(r);
    cca_router_free(r09);
    cca_text_thread_cleanup();
}

/* A model file that exists but is broken stops the router's load. */
static void test_router_rejects_bad_model(void **state)
{
    struct cca_router_params params = {
        .min_score = 1.0, .min_margin = 0.5, .default_agent = CCA_AGENT_TECH_SUPPORT};
    struct cca_router *r = NULL;
    struct cca_error err = {0};
    char path[64];

    (void)state;
    write_temp("cca-router-model/1\nlang xx\n", 27, path);
    params.model_path = path;
    assert_int_equal(cca_router_new(LEXICON, &params, &r, &err), CCA_ERR_INVALID);
    assert_null(r);
    assert_non_null(strstr(err.msg, "router model line 2"));
    unlink(path);
    params.model_path = "/nonexistent/router-model.txt";
    assert_int_equal(cca_router_new(LEXICON, &params, &r, &err), CCA_ERR_NOT_FOUND);
    assert_null(r);
    cca_text_thread_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_features_cap),
        cmocka_unit_test(test_features_hostile),
        cmocka_unit_test(test_tiny_predict),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_shipped),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_decide_branches),
        cmocka_unit_test(test_router_rejects_bad_model),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    cca_text_thread_cleanup();
    return rc;
}
