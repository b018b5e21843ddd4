/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the router's text analysis on arbitrary bytes (text.c: UTF-8
 * check, NFKC + case fold, tokens, Snowball stems) and the keyword router
 * (router.c) over the shipped lexicon, loaded once. The lexicon comes from
 * $CCA_DATA_DIR/routing/lexicon.json, else from the source tree's data/.
 * Input: byte 0 picks the dialog's current agent (none, tech_support, sales,
 * supervisor), the rest is the customer message.
 * Invariants checked: text.h's and router.h's contracts (token count and
 * length caps, UTF-8 output, scores and confidence in range, the fallback
 * agent when the keyword stage is not clear, zero scores for invalid UTF-8).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cca/router.h"
#include "cca/text.h"
#include "fuzz.h"

static struct cca_router *router;

static void free_router(void)
{
    cca_router_free(router);
    router = NULL;
    cca_text_thread_cleanup();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const struct cca_router_params params = {
        .min_score = 1.0, /* the defaults of ROUTER_MIN_SCORE, ROUTER_MIN_MARGIN */
        .min_margin = 0.5,
        .default_agent = CCA_AGENT_TECH_SUPPORT,
    };
    const char *dir = getenv("CCA_DATA_DIR");
    struct cca_error err = {0};
    char path[4096];

    (void)argc;
    (void)argv;
    fuzz_init();
    if (dir == NULL || dir[0] == '\0')
        dir = CCA_SOURCE_ROOT "/data";
    (void)snprintf(path, sizeof(path), "%s/routing/lexicon.json", dir);
    if (cca_router_new(path, &params, &router, &err) != CCA_OK) {
        fprintf(stderr, "fuzz_text: cannot load %s: %s\n", path, err.msg);
        exit(1);
    }
    atexit(free_router);
    return 0;
}

static void check_tokens(const char *s, size_t len)
{
    struct cca_text_tokens t;
    bool utf8 = cca_text_is_utf8(s, len);
    ssize_t cp = cca_text_codepoints(s, len);
    cca_rc rc = cca_text_analyze(s, len, &t);

    FUZZ_CHECK(utf8 == (cp >= 0));
    FUZZ_CHECK(cp <= (ssize_t)len);
    FUZZ_CHECK(rc == (utf8 ? CCA_OK : CCA_ERR_PARSE));
    FUZZ_CHECK(t.count <= CCA_TEXT_MAX_TOKENS);
    if (rc != CCA_OK)
        FUZZ_CHECK(t.count == 0);
    for (size_t i = 0; i < t.count; i++) {
        size_t wl = strlen(t.word[i]);
        size_t sl = strlen(t.stem[i]);

        FUZZ_CHECK(wl > 0 && wl <= 128);
        FUZZ_CHECK(cca_text_is_utf8(t.word[i], wl));
        FUZZ_CHECK(cca_text_is_utf8(t.stem[i], sl));
    }
    cca_text_tokens_cleanup(&t);
    FUZZ_CHECK(t.count == 0 && t.word == NULL && t.stem == NULL);
    (void)cca_text_detect_lang(s, len);
}

static void check_route(const char *s, size_t len, enum cca_agent current)
{
    struct cca_route r;
    double sum = 0;
    json_t *j;
    char *dumped;

    memset(&r, 0xA5, sizeof(r)); /* the call must fill every field it promises */
    cca_router_route(router, s, len, current, &r);
    FUZZ_CHECK(cca_agent_name(r.agent) != NULL);
    FUZZ_CHECK(r.method == CCA_ROUTE_KEYWORD || r.method == CCA_ROUTE_STICKY ||
               r.method == CCA_ROUTE_DEFAULT);
    FUZZ_CHECK(r.clear == (r.method == CCA_ROUTE_KEYWORD));
    FUZZ_CHECK(r.confidence >= 0.0 && r.confidence <= 1.0);
    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        FUZZ_CHECK(r.scores[a] >= 0.0 && isfinite(r.scores[a]));
        sum += r.scores[a];
    }
    FUZZ_CHECK(r.best == CCA_AGENT_NONE || cca_agent_name(r.best) != NULL);
    FUZZ_CHECK((r.best == CCA_AGENT_NONE) == (sum == 0.0));
    if (r.method == CCA_ROUTE_STICKY)
        FUZZ_CHECK(current != CCA_AGENT_NONE && r.agent == current);
    if (r.method == CCA_ROUTE_DEFAULT)
        FUZZ_CHECK(current == CCA_AGENT_NONE && r.agent == CCA_AGENT_TECH_SUPPORT);
    if (!cca_text_is_utf8(s, len))
        FUZZ_CHECK(sum == 0.0 && r.matched_count == 0);
    FUZZ_CHECK(r.matched_count <= CCA_ROUTE_MAX_MATCHED);
    for (size_t i = 0; i < r.matched_count; i++) {
        size_t ml = strnlen(r.matched[i], CCA_ROUTE_MATCH_LEN);

        FUZZ_CHECK(ml < CCA_ROUTE_MATCH_LEN);
        FUZZ_CHECK(cca_text_is_utf8(r.matched[i], ml));
    }
    /* What a dialog file stores for the turn (cca_dialog_with_turn). */
    j = cca_route_to_json(&r);
    dumped = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    FUZZ_CHECK(dumped != NULL);
    free(dumped);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum cca_agent agents[] = {CCA_AGENT_NONE, CCA_AGENT_TECH_SUPPORT,
                                            CCA_AGENT_SALES, CCA_AGENT_SUPERVISOR};
    const char *s;
    size_t len;

    if (size == 0)
        return 0;
    s = (const char *)data + 1;
    len = size - 1;
    check_tokens(s, len);
    check_route(s, len, agents[data[0] & 3]);
    return 0;
}
