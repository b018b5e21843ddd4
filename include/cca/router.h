/* SPDX-License-Identifier: MIT */
#ifndef CCA_ROUTER_H
#define CCA_ROUTER_H

#include <jansson.h>

#include "cca/common.h"

/*
 * Router: picks the agent for one customer turn (not URL routing, which is
 * http_routes.c). Keyword lexicon first; the caller consults the LLM when the
 * keyword stage is not clear (see docs/ROUTING.md for the scoring).
 */

enum cca_route_method {
    CCA_ROUTE_KEYWORD = 0, /* a clear keyword winner */
    CCA_ROUTE_LLM = 1,     /* set by the caller after an LLM classification */
    CCA_ROUTE_STICKY = 2,  /* not clear: stayed with the dialog's current agent */
    CCA_ROUTE_DEFAULT = 3  /* not clear, first message: the configured default */
};

/* cca_route_method_name - "keyword", "llm", "sticky" or "default". Static. */
const char *cca_route_method_name(enum cca_route_method m);

struct cca_router_params {
    double min_score;             /* winner's score must reach this ... */
    double min_margin;            /* ... and beat the runner-up by this much */
    enum cca_agent default_agent; /* first message without a clear winner */
};

#define CCA_ROUTE_MAX_MATCHED 16
#define CCA_ROUTE_MATCH_LEN   64

/*
 * struct cca_route - one routing decision (a plain value, copyable).
 * @agent:      the chosen agent.
 * @method:     how it was chosen.
 * @confidence: 0..1.
 * @scores:     keyword score per agent (index = enum cca_agent), >= 0.
 * @best:       the keyword stage's highest-scoring agent (ties: supervisor, then
 *              the current agent, then tech_support < sales), CCA_AGENT_NONE when
 *              every score is 0.
 * @clear:      true when the keyword stage alone decided (method KEYWORD).
 * @matched:    up to CCA_ROUTE_MAX_MATCHED lexicon entries that matched, as
 *              "agent:entry" strings (e.g. "sales:тариф"), NUL-terminated.
 */
struct cca_route {
    enum cca_agent agent;
    enum cca_route_method method;
    double confidence;
    double scores[CCA_AGENT__COUNT];
    enum cca_agent best;
    bool clear;
    size_t matched_count;
    char matched[CCA_ROUTE_MAX_MATCHED][CCA_ROUTE_MATCH_LEN];
};

struct cca_router;

/*
 * cca_router_new - load the lexicon at @lexicon_path (JSON, format in
 * docs/ROUTING.md) and keep @params (copied).
 * Returns CCA_OK and a new router in *ret_router, or CCA_ERR_NOT_FOUND /
 * CCA_ERR_IO (unreadable file), CCA_ERR_PARSE (bad JSON), CCA_ERR_INVALID (bad
 * entries or params: min_score must be in (0, 1000], min_margin in [0, 1000]),
 * with detail in @reterr (may be NULL). *ret_router is untouched on failure.
 * The router is immutable afterwards: every other function is thread-safe.
 */
cca_rc cca_router_new(const char *lexicon_path, const struct cca_router_params *params,
                      struct cca_router **ret_router, struct cca_error *reterr) CCA_WUR;

/* cca_router_free - release @router. Accepts NULL. */
void cca_router_free(struct cca_router *router);

/*
 * cca_router_route - the keyword stage for one message @text[0..len) (UTF-8).
 * @current: the dialog's current agent, CCA_AGENT_NONE for a first message.
 * Fills *ret: a clear winner gives method KEYWORD; otherwise the agent is
 * @current with method STICKY, or the default agent with method DEFAULT, and
 * clear=false tells the caller it may ask the LLM. Supervisor cues (complaints,
 * refunds, anger such as capitals and "!!!", legal threats, asking for a human)
 * take precedence. Invalid UTF-8 scores zero everywhere. Never fails.
 */
void cca_router_route(const struct cca_router *router, const char *text, size_t len,
                      enum cca_agent current, struct cca_route *ret);

/*
 * cca_route_to_json - {agent, method, confidence, scores:{tech_support, sales,
 * supervisor}, matched:[...]}. Returns a new reference. confidence and scores
 * are reals rounded to 3 decimals: dump with JSON_REAL_PRECISION(n), n <= 15,
 * or jansson prints them with 17 digits (0.632 as 0.63200000000000001).
 */
json_t *cca_route_to_json(const struct cca_route *route);

/*
 * cca_route_cli - the `call-center-agents route` mode: read lines from stdin
 * (plain text, or JSON objects with a "text" field; other fields such as
 * "expected_agent" are copied to the output), print one JSON decision per line
 * to stdout, never start the server or call the LLM. With "--eval", instead
 * print per-agent precision/recall/F1 and macro-F1 for JSONL input that has
 * "expected_agent" ("--json" prints that report as JSON). "--current AGENT"
 * (or a "current_agent" field) routes lines as follow-ups. @argv[0] is the
 * subcommand name. Lines over 64 KiB are skipped with a JSON error line.
 * Returns a process exit code: 0, 1 (I/O error, or --eval without labels) or 2
 * (usage).
 */
int cca_route_cli(const struct cca_router *router, int argc, char **argv);

#endif
