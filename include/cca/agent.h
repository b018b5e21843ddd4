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
 * the LLM fails.
 */

struct cca_agents;

/*
 * cca_agents_new - load prompts and knowledge from @data_dir (the directory
 * holding agents/ and knowledge/). Returns CCA_OK and a new table in
 * *ret_agents, or CCA_ERR_NOT_FOUND/CCA_ERR_IO/CCA_ERR_PARSE/CCA_ERR_INVALID
 * with detail in @reterr (may be NULL). Immutable afterwards: every other
 * function is thread-safe.
 */
cca_rc cca_agents_new(const char *data_dir, struct cca_agents **ret_agents,
                      struct cca_error *reterr) CCA_WUR;

/* cca_agents_free - release @agents. Accepts NULL. */
void cca_agents_free(struct cca_agents *agents);

/*
 * cca_agents_prompt - system prompt of @agent in @lang. Borrowed, valid until
 * cca_agents_free. Never NULL for a valid agent and language. It never contains
 * customer text.
 */
const char *cca_agents_prompt(const struct cca_agents *agents, enum cca_agent agent,
                              enum cca_lang lang);

/* cca_agents_temperature - sampling temperature for @agent (0..2). */
double cca_agents_temperature(const struct cca_agents *agents, enum cca_agent agent);

/*
 * cca_agents_classifier_prompt - system prompt of the LLM routing
 * classification in @lang: it demands exactly the JSON object
 * {"agent": "tech_support"|"sales"|"supervisor", "confidence": 0..1,
 * "reason": "..."}. Borrowed, never NULL.
 */
const char *cca_agents_classifier_prompt(const struct cca_agents *agents,
                                         enum cca_lang lang);

/*
 * cca_agents_offline_reply - the offline responder: the best-matching entry of
 * @agent's knowledge base for @text[0..len) (stemmed token overlap scored like
 * BM25, Robertson and Zaragoza 2009, "The Probabilistic Relevance Framework"),
 * or an agent-specific clarifying reply when nothing matches well, in @lang.
 * @handoff: true when the dialog was just handed to @agent from another agent;
 * the reply then opens with a short "you are now talking to ..." line.
 * Returns a new NUL-terminated UTF-8 string (caller frees). Never NULL.
 */
char *cca_agents_offline_reply(const struct cca_agents *agents, enum cca_agent agent,
                               enum cca_lang lang, const char *text, size_t len,
                               bool handoff);

#endif
