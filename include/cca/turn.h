/* SPDX-License-Identifier: MIT */
#ifndef CCA_TURN_H
#define CCA_TURN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/agent.h"
#include "cca/common.h"
#include "cca/config.h"
#include "cca/dialog.h"
#include "cca/llm.h"
#include "cca/router.h"
#include "cca/text.h"

/*
 * The turn pipeline (docs/internals/engine.md, "A turn"): what one customer
 * message becomes.
 *
 *   route (router.c: keyword rules, then the model) --clear--> reply
 *        \--not clear, LLM set--> classify (LLM, JSON mode) --> reply
 *        \--not clear, offline, first message--> the clarifying question
 *          (route method "clarify", cca_agents_clarify_question); the
 *          customer's answer is routed as a first message again
 *   reply: the offline responder (agent.c) without a key, else the LLM with
 *          the agent's prompt and the dialog's last MAX_DIALOG_HISTORY
 *          messages (OpenAI Chat Completions, llm.h); a failed or late call
 *          falls back to the offline responder (degraded)
 *
 * A step that needs the LLM submits the call and returns CCA_TURN_WAITING;
 * the caller gets the LLM's completion through its own callback (on the LLM
 * thread), brings it back to its thread and calls cca_turn_resume. The turn
 * holds no lock and calls back nobody: the engine owns the threads.
 */

/* What a turn needs from the service; all borrowed. @llm NULL: offline. */
struct cca_turn_env {
    const struct cca_config *cfg;
    struct cca_router *router;
    struct cca_agents *agents;
    struct cca_llm *llm;
};

enum cca_turn_stage { CCA_TURN_CLASSIFY, CCA_TURN_REPLY };

/*
 * struct cca_turn - one turn, in caller storage (cca_turn_cleanup frees what
 * it owns). The outcome fields are valid once a step returned CCA_TURN_DONE.
 * @route:          the routing decision (keywords, or the LLM's class).
 * @lang:           the customer's language (cca_text_detect_lang).
 * @current:        the dialog's agent before the turn (CCA_AGENT_NONE: new).
 * @routed_as:      the current agent the router was given: @current, or
 *                  CCA_AGENT_NONE for a new dialog and for the answer to a
 *                  clarifying question (the previous customer message was
 *                  routed "clarify"), which is routed as a first message
 *                  unless that is unclear too (then @current, sticky: one
 *                  question only).
 * @previous:       @current when the turn handed off to another agent, else
 *                  CCA_AGENT_NONE; @handoff_reason says why then.
 * @reply:          the agent's answer (new, owned).
 * @tokens:         LLM tokens used by the turn (saturating).
 * @llm_ms:         time spent waiting on LLM attempts.
 * @degraded:       the LLM failed or ran out of time: the offline responder
 *                  answered instead.
 */
struct cca_turn {
    struct cca_route route;
    enum cca_lang lang;
    enum cca_agent current;
    enum cca_agent routed_as;
    enum cca_agent previous;
    char handoff_reason[200];
    char *reply;
    long tokens;
    int64_t llm_ms;
    bool degraded;
    /* Private. */
    enum cca_turn_stage stage;
    const char *text; /* borrowed from the caller for the turn's life */
    size_t len;
    int64_t deadline_ms;
};

enum cca_turn_step {
    CCA_TURN_DONE,    /* the outcome is ready */
    CCA_TURN_WAITING, /* an LLM call is out: cca_turn_resume with its result */
};

/*
 * cca_turn_start - begin the turn of customer text @text[0..len) (UTF-8,
 * borrowed until the turn is done) on dialog @doc (borrowed; NULL for a new
 * dialog). LLM calls end by @deadline_ms (cca_time_mono_ms) and complete
 * through @done(@ctx) on the LLM thread. @t is initialised here.
 * Returns CCA_TURN_DONE or CCA_TURN_WAITING. Not thread-safe on @t.
 */
enum cca_turn_step cca_turn_start(struct cca_turn *t, const struct cca_turn_env *env,
                                  const char *text, size_t len, json_t *doc,
                                  int64_t deadline_ms, cca_llm_done_fn done, void *ctx);

/*
 * cca_turn_resume - continue after the LLM call of a CCA_TURN_WAITING step:
 * @res is its result (its content is moved out; the caller still cleans it
 * up); @doc as given to cca_turn_start. Returns CCA_TURN_DONE or, after a
 * classification, CCA_TURN_WAITING again for the reply.
 */
enum cca_turn_step cca_turn_resume(struct cca_turn *t, const struct cca_turn_env *env,
                                   struct cca_llm_result *res, json_t *doc,
                                   cca_llm_done_fn done, void *ctx);

/* cca_turn_stage_name - "classify" or "reply": the step an LLM call served. */
const char *cca_turn_stage_name(const struct cca_turn *t);

/*
 * cca_turn_to_dialog - the fields of @t as a dialog turn (dialog.h), for
 * cca_dialog_with_turn: text, route, agents, handoff, reply, tokens, latency,
 * degraded. Pointers are borrowed from @t; the caller adds ids and times.
 */
void cca_turn_to_dialog(const struct cca_turn *t, struct cca_dialog_turn *ret);

/* cca_turn_cleanup - free what @t owns and zero it. Accepts a zeroed struct. */
void cca_turn_cleanup(struct cca_turn *t);

/*
 * cca_turn_parse_classification - apply a classifier answer @content
 * ({"agent", "confidence", "reason"}, the JSON the classifier prompt asks
 * for) to @t's route: agent, method CCA_ROUTE_LLM, confidence clamped to
 * 0..1 (0.5 when absent), the handoff reason "llm: <reason>". Returns false,
 * @t unchanged, when @content is not such an object or names no agent.
 */
bool cca_turn_parse_classification(struct cca_turn *t, const char *content);

#endif
