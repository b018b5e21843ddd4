/* SPDX-License-Identifier: MIT */
#ifndef CCA_ROUTER_H
#define CCA_ROUTER_H

#include <jansson.h>

#include "cca/common.h"

/*
 * Router: picks the agent for one customer turn (not URL routing, which is
 * http_routes.c). Two stages (docs/ROUTING.md): the keyword lexicon, whose
 * strong supervisor cues stay rules, and a statistical model
 * (cca/router_model.h) that decides the rest; the caller consults the LLM
 * when neither is sure.
 */

enum cca_route_method {
    CCA_ROUTE_KEYWORD = 0, /* a clear keyword winner */
    CCA_ROUTE_LLM = 1,     /* set by the caller after an LLM classification */
    CCA_ROUTE_STICKY = 2,  /* not clear: stayed with the dialog's current agent */
    CCA_ROUTE_DEFAULT = 3, /* not clear, first message, no model: the default agent */
    CCA_ROUTE_MODEL = 4,   /* the model's calibrated probability was high enough */
    CCA_ROUTE_CLARIFY = 5  /* not clear, first message: ask the customer (agent =
                              the model's likelier of tech_support and sales) */
};

/*
 * cca_route_method_name - "keyword", "llm", "sticky", "default", "model" or
 * "clarify" ("unknown" out of range). Static.
 */
const char *cca_route_method_name(enum cca_route_method m);

struct cca_router_params {
    double min_score;             /* winner's score must reach this ... */
    double min_margin;            /* ... and beat the runner-up by this much */
    enum cca_agent default_agent; /* first message without a clear winner */
    /*
     * The model file (cca/router_model.h). NULL: "router-model.txt" in the
     * lexicon's directory if that file exists, else no model (the keyword
     * stage alone). "": no model. Otherwise the file must load.
     */
    const char *model_path;
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
 *              For method MODEL or CLARIFY the model's features that weighed
 *              most for the agent come first, as "agent:<feature>" (feature
 *              names start with "w=", "b=", "f=", "c=" or "s=", which no
 *              lexicon entry can: e.g. "sales:w=стоимост").
 * @prob:       the model's calibrated probability per agent when it was
 *              consulted (cca_router_decide), else all 0.
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
    double prob[CCA_AGENT__COUNT];
};

struct cca_router;

/*
 * cca_router_new - load the lexicon at @lexicon_path (JSON, format in
 * docs/ROUTING.md) and the model named by @params->model_path (see struct
 * cca_router_params), and keep @params (copied; model_path is not kept).
 * Returns CCA_OK and a new router in *ret_router, or CCA_ERR_NOT_FOUND /
 * CCA_ERR_IO (unreadable file), CCA_ERR_PARSE (bad JSON), CCA_ERR_INVALID (bad
 * entries or params: min_score must be in (0, 1000], min_margin in [0, 1000]),
 * or any error of cca_router_model_load for a model file that exists but is
 * malformed, with detail in @reterr (may be NULL). *ret_router is untouched on
 * failure. The router is immutable afterwards: every other function is
 * thread-safe.
 */
cca_rc cca_router_new(const char *lexicon_path, const struct cca_router_params *params,
                      struct cca_router **ret_router, struct cca_error *reterr) CCA_WUR;

/* cca_router_free - release @router. Accepts NULL. */
void cca_router_free(struct cca_router *router);

/*
 * cca_router_route - the keyword stage alone for one message @text[0..len)
 * (UTF-8). @current: the dialog's current agent, CCA_AGENT_NONE for a first
 * message. Fills *ret: a clear winner gives method KEYWORD; otherwise the agent
 * is @current with method STICKY, or the default agent with method DEFAULT, and
 * clear=false. Supervisor cues (complaints, refunds, anger such as capitals and
 * "!!!", legal threats, asking for a human) take precedence. Invalid UTF-8
 * scores zero everywhere. Never consults the model (@prob stays 0): for
 * callers that want the keyword scores only. Never fails.
 */
void cca_router_route(const struct cca_router *router, const char *text, size_t len,
                      enum cca_agent current, struct cca_route *ret);

/*
 * cca_router_decide - the full routing decision for one customer turn (the
 * pipeline of docs/ROUTING.md): the keyword stage as cca_router_route, then,
 * when the router has a model for the message's language (cca_text_detect_lang)
 * and no strong supervisor rule fired (a keyword supervisor win with a score
 * of at least the model's rule_min_score):
 *   - a clear keyword winner stays KEYWORD, unless the model's top agent is
 *     another one with at least override_min_prob and that is below 1 (1, the
 *     shipped value: never overruled); the model agreeing with @current does
 *     not count against a clear keyword winner;
 *   - otherwise the model's top agent with method MODEL and clear=true,
 *     confidence = its probability, when that reaches min_prob (first
 *     messages, or the current agent) or followup_min_prob (moving a
 *     follow-up to another agent);
 *   - else a follow-up stays with @current (STICKY, clear=false);
 *   - else, for a first message, method CLARIFY, clear=false, agent = the
 *     likelier of tech_support and sales by the model (ties: tech_support),
 *     never supervisor (a guess must not escalate): the caller asks the LLM,
 *     or offline asks the customer a clarifying question.
 * Without a model for the language the result is exactly cca_router_route's.
 * @scores and @best are always the keyword stage's. Never fails; no logging.
 * Cost: one text analysis plus a hash lookup per feature (microseconds).
 */
void cca_router_decide(const struct cca_router *router, const char *text, size_t len,
                       enum cca_agent current, struct cca_route *ret);

/* cca_router_has_model - true if @router (may be NULL) loaded a model file. */
bool cca_router_has_model(const struct cca_router *router);

/*
 * cca_router_model_summary - one line about @router's model (@router may be
 * NULL) for the start-up log, into @buf[0..size) (NUL-terminated, cut to fit):
 * "<path>: en 4185 features, ru 3359 features", or "no model (the keyword
 * stage alone)". Returns cca_router_has_model(@router). Thread-safe.
 */
bool cca_router_model_summary(const struct cca_router *router, char *buf, size_t size);

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
