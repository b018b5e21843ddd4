/* SPDX-License-Identifier: MIT */
#ifndef CCA_AGENT_H
#define CCA_AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include "cca/common.h"
#include "cca/text.h"

/*
 * Agents: a table of {name, system prompt per language, temperature, offline
 * knowledge base}. Prompts live in data/agents/, the knowledge base (catalogue,
 * tariffs, procedures) in data/knowledge/. The offline responder answers
 * without any network: it is the default with no API key and the fallback when
 * the LLM fails. File formats: data/knowledge/README.md.
 *
 * Files read from the data directory (each capped at 1 MiB):
 *   agents/agents.json               temperature and handoff line per agent
 *   agents/<agent>.<ru|en>.txt       system prompts; "{{knowledge}}" expands to
 *                                    the agent's entries marked "prompt": true
 *   agents/classifier.<ru|en>.txt    routing classifier prompts
 *   knowledge/<agent>.json           entries and the clarifying reply
 * Nothing here logs.
 */

struct cca_agents;

/*
 * cca_agents_new - load prompts and knowledge from @data_dir (the directory
 * holding agents/ and knowledge/), validate them and index the knowledge base.
 * Returns CCA_OK and a new table in *ret_agents (caller frees with
 * cca_agents_free), or, with *ret_agents untouched:
 *   CCA_ERR_NOT_FOUND  a file is missing;
 *   CCA_ERR_IO         a file cannot be read or is not a regular file;
 *   CCA_ERR_TOO_LARGE  a file is over 1 MiB;
 *   CCA_ERR_PARSE      bad JSON (with line:column) or a prompt that is not UTF-8;
 *   CCA_ERR_INVALID    a rule is broken: empty prompt, unknown placeholder,
 *                      entry without answer, missing language, temperature
 *                      outside 0..2, unknown agent or key, ...
 * @reterr (may be NULL) gets a message that starts with the file's path
 * relative to @data_dir, e.g. "knowledge/sales.json:12:5: ...".
 * Not meant to run concurrently with itself (strerror); the table is immutable
 * afterwards and every other function is thread-safe.
 */
cca_rc cca_agents_new(const char *data_dir, struct cca_agents **ret_agents,
                      struct cca_error *reterr) CCA_WUR;

/* cca_agents_free - release @agents. Accepts NULL. */
void cca_agents_free(struct cca_agents *agents);

/*
 * cca_agents_prompt - system prompt of @agent in @lang, with the knowledge
 * (sales: the price catalogue) already expanded. Borrowed, valid until
 * cca_agents_free. Never NULL for a valid agent and language; NULL for
 * CCA_AGENT_NONE or another out-of-range value, or NULL @agents. It never
 * contains customer text: that goes only into `user` messages.
 */
const char *cca_agents_prompt(const struct cca_agents *agents, enum cca_agent agent,
                              enum cca_lang lang);

/*
 * cca_agents_temperature - sampling temperature for @agent (0..2, from
 * agents/agents.json); 0.0 for an out-of-range @agent or NULL @agents.
 */
double cca_agents_temperature(const struct cca_agents *agents, enum cca_agent agent);

/*
 * cca_agents_classifier_prompt - system prompt of the LLM routing
 * classification in @lang: it demands exactly the JSON object
 * {"agent": "tech_support"|"sales"|"supervisor", "confidence": 0..1,
 * "reason": "..."}, gives the supervisor precedence (complaints, refunds, anger,
 * legal threats, asking for a human), and tells the model that a line after it
 * or a later system message naming the dialog's agent ("current_agent: sales"
 * or "The dialog is currently handled by: sales") means: keep that agent unless
 * the message clearly belongs to another one. Borrowed, never NULL (an
 * out-of-range @lang gives the English prompt).
 */
const char *cca_agents_classifier_prompt(const struct cca_agents *agents,
                                         enum cca_lang lang);

/*
 * cca_agents_offline_reply - the offline responder: the best-matching entry of
 * @agent's knowledge base for @text[0..len) (stemmed token overlap scored like
 * BM25, Robertson and Zaragoza 2009, "The Probabilistic Relevance Framework"),
 * or an agent-specific clarifying reply when nothing matches well, in @lang.
 * Only the entries in @lang are searched, so the reply is always in @lang.
 * @text may be NULL when @len is 0; empty, unmatched or invalid UTF-8 text gets
 * the clarifying reply. Deterministic: the same input gives the same reply.
 * @handoff: true when the dialog was just handed to @agent from another agent;
 * the reply then opens with a short line such as "Вас приветствует отдел
 * продаж." followed by an empty line.
 * @agent must be a real agent (not CCA_AGENT_NONE) and @lang in range
 * (asserted; with NDEBUG the supervisor and English are used instead).
 * Returns a new NUL-terminated UTF-8 string (caller frees). Never NULL.
 * Thread-safe.
 */
char *cca_agents_offline_reply(const struct cca_agents *agents, enum cca_agent agent,
                               enum cca_lang lang, const char *text, size_t len,
                               bool handoff);

/*
 * cca_agents_clarify_question - the short question a first message gets when
 * neither routing stage is sure and no LLM is configured (route method
 * "clarify", docs/ROUTING.md): it asks whether the customer has a technical
 * problem, a question about products and prices, or a complaint, in @lang
 * (Russian or English; an out-of-range @lang gives English). Static string,
 * never NULL. Thread-safe.
 */
const char *cca_agents_clarify_question(enum cca_lang lang);

/*
 * cca_agents_kb_answer - the knowledge-base answer of @agent in @lang for
 * @text[0..len) when an entry matches confidently (the offline responder's
 * threshold), else NULL: what a queued customer gets besides their position
 * (seed 004's quick FAQ). Returns a new string (caller frees) or NULL (also for
 * an out-of-range @agent or @lang). Thread-safe.
 */
char *cca_agents_kb_answer(const struct cca_agents *agents, enum cca_agent agent,
                           enum cca_lang lang, const char *text, size_t len);

#endif
