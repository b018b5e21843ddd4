/* SPDX-License-Identifier: MIT */
/* The turn pipeline (include/cca/turn.h): route, classify, reply. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/mem.h"
#include "cca/turn.h"

/* {"role": @role, "content": @content[0..len)} appended to @messages. */
static void add_chat_message(json_t *messages, const char *role, const char *content,
                             size_t len)
{
    json_t *m = json_object();

    (void)json_object_set_new(m, "role", json_string(role));
    (void)json_object_set_new(m, "content", json_stringn(content, len));
    (void)json_array_append_new(messages, m);
}

static void offline_reply(struct cca_turn *t, const struct cca_turn_env *env)
{
    free(t->reply);
    /* A first message nobody was sure of: ask instead of guessing. */
    if (t->route.method == CCA_ROUTE_CLARIFY)
        t->reply = cca_xstrdup(cca_agents_clarify_question(t->lang));
    else
        t->reply = cca_agents_offline_reply(env->agents, t->route.agent, t->lang, t->text,
                                            t->len, t->previous != CCA_AGENT_NONE);
}

/*
 * "<method>: sales:тариф ...": how the route was decided ("keyword", "model",
 * cca_route_method_name), then the new agent's matched entries (lexicon
 * entries, or the model's features such as "sales:w=цен"), whole ones only (a
 * cut entry could end inside a UTF-8 character).
 */
static void route_reason(struct cca_turn *t)
{
    const char *prefix = cca_agent_name(t->route.agent);
    size_t plen = strlen(prefix);
    size_t used = (size_t)snprintf(t->handoff_reason, sizeof(t->handoff_reason),
                                   "%s:", cca_route_method_name(t->route.method));

    for (size_t i = 0; i < t->route.matched_count; i++) {
        const char *m = t->route.matched[i];
        size_t n = strnlen(m, CCA_ROUTE_MATCH_LEN - 1);

        if (strncmp(m, prefix, plen) != 0 || m[plen] != ':')
            continue;
        if (used + 1 + n >= sizeof(t->handoff_reason))
            break;
        t->handoff_reason[used++] = ' ';
        memcpy(t->handoff_reason + used, m, n);
        used += n;
        t->handoff_reason[used] = '\0';
    }
}

/* The reply: offline, or an LLM call with the agent's prompt and the history. */
static enum cca_turn_step reply_stage(struct cca_turn *t, const struct cca_turn_env *env,
                                      json_t *doc, cca_llm_done_fn done, void *ctx)
{
    struct cca_llm_request req = {0};
    json_t *messages;
    const char *prompt;

    t->previous = CCA_AGENT_NONE;
    if (t->current != CCA_AGENT_NONE && t->current != t->route.agent) {
        t->previous = t->current;
        /* An LLM route already wrote the classifier's reason. */
        if (t->route.method != CCA_ROUTE_LLM)
            route_reason(t);
    }
    if (env->llm == NULL || t->route.method == CCA_ROUTE_CLARIFY) {
        offline_reply(t, env);
        return CCA_TURN_DONE;
    }
    t->stage = CCA_TURN_REPLY;
    messages = json_array();
    prompt = cca_agents_prompt(env->agents, t->route.agent, t->lang);
    add_chat_message(messages, "system", prompt, strlen(prompt));
    if (doc != NULL) {
        json_t *history = cca_dialog_llm_history(doc, env->cfg->max_dialog_history);

        (void)json_array_extend(messages, history); /* copies: extend does not steal */
        json_decref(history);
    }
    add_chat_message(messages, "user", t->text, t->len);
    req.messages = messages;
    req.temperature = isnan(env->cfg->openai_temperature)
                          ? cca_agents_temperature(env->agents, t->route.agent)
                          : env->cfg->openai_temperature;
    req.max_tokens = env->cfg->openai_max_tokens;
    req.deadline_ms = t->deadline_ms;
    if (cca_llm_submit(env->llm, &req, done, ctx) != CCA_OK) {
        t->degraded = true;
        offline_reply(t, env);
        return CCA_TURN_DONE;
    }
    return CCA_TURN_WAITING;
}

bool cca_turn_parse_classification(struct cca_turn *t, const char *content)
{
    json_t *root = content ? json_loads(content, JSON_REJECT_DUPLICATES, NULL) : NULL;
    enum cca_agent agent;
    json_t *conf;
    const char *reason;
    bool ok = false;

    if (!json_is_object(root) ||
        !cca_agent_parse(json_string_value(json_object_get(root, "agent")), &agent))
        goto out;
    conf = json_object_get(root, "confidence");
    reason = json_string_value(json_object_get(root, "reason"));
    t->route.agent = agent;
    t->route.method = CCA_ROUTE_LLM;
    t->route.confidence = json_is_number(conf) ? json_number_value(conf) : 0.5;
    if (!(t->route.confidence >= 0.0))
        t->route.confidence = 0.0;
    if (t->route.confidence > 1.0)
        t->route.confidence = 1.0;
    if (reason == NULL)
        reason = "classified by the LLM";
    /* At most 150 bytes of the reason, never half a character. */
    (void)snprintf(t->handoff_reason, sizeof(t->handoff_reason), "llm: %.*s",
                   (int)cca_text_utf8_cut(reason, strlen(reason), 150), reason);
    ok = true;
out:
    json_decref(root);
    return ok;
}

/*
 * True if the last customer message of @doc was routed with method "clarify":
 * the dialog then waits for the answer to the clarifying question.
 */
static bool last_route_was_clarify(json_t *doc)
{
    json_t *messages = json_object_get(doc, "messages");

    for (size_t i = json_array_size(messages); i > 0; i--) {
        json_t *m = json_array_get(messages, i - 1);
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *method;

        if (role == NULL || strcmp(role, "customer") != 0)
            continue;
        method =
            json_string_value(json_object_get(json_object_get(m, "route"), "method"));
        return method != NULL &&
               strcmp(method, cca_route_method_name(CCA_ROUTE_CLARIFY)) == 0;
    }
    return false;
}

enum cca_turn_step cca_turn_start(struct cca_turn *t, const struct cca_turn_env *env,
                                  const char *text, size_t len, json_t *doc,
                                  int64_t deadline_ms, cca_llm_done_fn done, void *ctx)
{
    struct cca_llm_request req = {0};
    const char *prompt;
    json_t *messages;

    memset(t, 0, sizeof(*t));
    t->text = text;
    t->len = len;
    t->deadline_ms = deadline_ms;
    t->previous = CCA_AGENT_NONE;
    t->current = doc != NULL ? cca_dialog_get_agent(doc) : CCA_AGENT_NONE;
    /*
     * The answer to a clarifying question is routed as a first message: the
     * dialog's agent is only the clarify turn's guess, and keeping it as a
     * follow-up's current agent would let the guess win on weak evidence.
     * One question is enough: if the answer is unclear too, the turn is routed
     * as the follow-up it is (sticky with the guess), not asked again.
     */
    t->routed_as = t->current != CCA_AGENT_NONE && last_route_was_clarify(doc)
                       ? CCA_AGENT_NONE
                       : t->current;
    cca_router_decide(env->router, text, len, t->routed_as, &t->route);
    if (t->route.method == CCA_ROUTE_CLARIFY && t->routed_as != t->current) {
        t->routed_as = t->current;
        cca_router_decide(env->router, text, len, t->routed_as, &t->route);
    }
    t->lang = cca_text_detect_lang(text, len);
    if (env->llm == NULL || t->route.clear)
        return reply_stage(t, env, doc, done, ctx);
    t->stage = CCA_TURN_CLASSIFY;
    messages = json_array();
    prompt = cca_agents_classifier_prompt(env->agents, t->lang);
    add_chat_message(messages, "system", prompt, strlen(prompt));
    if (t->routed_as != CCA_AGENT_NONE) {
        /* Our own words, never customer text: a second system message. */
        char line[96];
        int n = snprintf(line, sizeof(line), "current_agent: %s",
                         cca_agent_name(t->routed_as));

        add_chat_message(messages, "system", line, (size_t)n);
    }
    add_chat_message(messages, "user", text, len);
    req.messages = messages;
    req.temperature = 0.0;
    req.max_tokens = 100;
    req.json_mode = true;
    req.deadline_ms = deadline_ms;
    if (cca_llm_submit(env->llm, &req, done, ctx) != CCA_OK)
        return reply_stage(t, env, doc, done, ctx);
    return CCA_TURN_WAITING;
}

enum cca_turn_step cca_turn_resume(struct cca_turn *t, const struct cca_turn_env *env,
                                   struct cca_llm_result *res, json_t *doc,
                                   cca_llm_done_fn done, void *ctx)
{
    /* Saturate: usage counts are clamped to LONG_MAX by the parser. */
    if (__builtin_add_overflow(t->tokens, res->total_tokens, &t->tokens))
        t->tokens = LONG_MAX;
    t->llm_ms += res->upstream_ms;
    if (t->stage == CCA_TURN_CLASSIFY) {
        if (res->rc != CCA_OK || !cca_turn_parse_classification(t, res->content)) {
            /* Unusable answer: a first message takes the keyword best, if any. */
            if (t->routed_as == CCA_AGENT_NONE && t->route.best != CCA_AGENT_NONE) {
                t->route.agent = t->route.best;
                t->route.method = CCA_ROUTE_KEYWORD;
            }
        }
        return reply_stage(t, env, doc, done, ctx);
    }
    if (res->rc == CCA_OK) {
        free(t->reply);
        t->reply = res->content;
        res->content = NULL; /* moved */
    } else {
        t->degraded = true;
        offline_reply(t, env);
    }
    return CCA_TURN_DONE;
}

const char *cca_turn_stage_name(const struct cca_turn *t)
{
    return t->stage == CCA_TURN_CLASSIFY ? "classify" : "reply";
}

void cca_turn_to_dialog(const struct cca_turn *t, struct cca_dialog_turn *ret)
{
    ret->text = t->text;
    ret->route = &t->route;
    ret->agent = t->route.agent;
    ret->previous = t->previous;
    ret->handoff_reason = t->previous != CCA_AGENT_NONE ? t->handoff_reason : NULL;
    ret->reply = t->reply;
    ret->tokens = t->tokens;
    ret->latency_ms = t->llm_ms;
    ret->degraded = t->degraded;
}

void cca_turn_cleanup(struct cca_turn *t)
{
    free(t->reply);
    memset(t, 0, sizeof(*t));
}
