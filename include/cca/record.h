/* SPDX-License-Identifier: MIT */
#ifndef CCA_RECORD_H
#define CCA_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/dialog.h"

/*
 * Support records (docs/RECORDS.md): what one dialog amounts to for reports,
 * computed from its stored document, and the statistics folded over many.
 *
 * The engine keeps one struct cca_record per dialog in its index, remade at
 * every commit (cca_record_of), so /stats, the CSV export and an operator's
 * statistics read the index, never every document, and survive restarts (the
 * records are rebuilt from the stored dialogs at load). The CSV export writes
 * the very fields the statistics fold, so the two always agree.
 *
 * Everything here is pure: no I/O, no locks, no global state. Functions are
 * thread-safe on distinct objects.
 *
 * Definitions (times are milliseconds; -1 means "does not apply"):
 *   first response:  from the first customer message to the first message
 *                    after it by an AI agent or an operator.
 *   escalation:      the first change of owner away from the AI (a
 *                    metadata.transitions[] entry with from "agent"); its
 *                    trigger is the transition's reason: "customer_request",
 *                    "supervisor", "degraded", anything else "api" (an
 *                    explicit handoff through the API).
 *   queue wait:      from the escalation to the first transition to an
 *                    operator (0 when an operator took it at once).
 *   first human response: from the escalation to the first operator message.
 *   handle time:     from the first transition to an operator to closed_at
 *                    (closed dialogs that a human had).
 *   contained:       closed and never escalated (AI containment).
 *   abandoned:       escalated and closed before any operator had it (the
 *                    customer left the queue, or it was closed there).
 * An operator's part of a dialog (struct cca_record_op):
 *   assigned:        their first transition to them (to "operator" with their
 *                    operator_id).
 *   first response:  from that assignment to their first message after it.
 *   handle time:     the dialog's handle time, counted for the last operator
 *                    who owned it (the one who closed or handed it back).
 */

/* How a dialog first left the AI (enum order is the JSON order). */
enum cca_record_trigger {
    CCA_TRIGGER_NONE = 0,
    CCA_TRIGGER_REQUEST = 1,    /* "customer_request": the customer asked */
    CCA_TRIGGER_SUPERVISOR = 2, /* "supervisor": routed to the supervisor */
    CCA_TRIGGER_DEGRADED = 3,   /* "degraded": the LLM failed */
    CCA_TRIGGER_API = 4,        /* any other reason: POST .../handoff */
    CCA_TRIGGER__COUNT,
};

/* cca_record_trigger_name - "none", "customer_request", "supervisor", "degraded", "api".
 * Static; "none" for a value out of range. */
const char *cca_record_trigger_name(enum cca_record_trigger t);

/*
 * struct cca_record_op - one operator's part of a dialog.
 * @operator_id:     canonical UUID.
 * @messages:        messages with role "operator" and this operator_id.
 * @assigned_ms:     Unix ms of their first assignment.
 * @first_reply_ms:  first response (see above), -1 if they never answered.
 * @last_owner:      they are the last operator who owned the dialog.
 * @rated:           the rating's operator_id is theirs.
 */
struct cca_record_op {
    char operator_id[37];
    uint32_t messages;
    int64_t assigned_ms;
    int64_t first_reply_ms;
    bool last_owner;
    bool rated;
};

/*
 * struct cca_record - one dialog for reports. Strings are new (owned by the
 * record; NULL when the document has none); release with cca_record_cleanup.
 * @dialog_id:      canonical UUID.
 * @customer_id, @customer_name (customer_info.name), @channel ("source"),
 *                  @close_reason: as stored.
 * @created_ms, @closed_ms: Unix ms; @closed_ms 0 while open.
 * @status:         as stored.
 * @agents:         bit (1u << agent) for every AI agent that answered.
 * @last_agent:     current_agent (CCA_AGENT_NONE before the first turn).
 * @messages:       all messages, system notices included.
 * @tokens:         metadata.total_tokens.
 * @tokens_by_agent: the "tokens" of AI messages, summed by agent_type.
 * @first_response_ms, @queue_wait_ms, @first_human_ms, @handle_ms: as defined
 *                  above, -1 when they do not apply.
 * @escalated_ms:   Unix ms of the escalation, 0 if none.
 * @trigger:        the escalation's trigger (CCA_TRIGGER_NONE if none).
 * @human:          an operator owned it at some time.
 * @owner_operator: index in @ops of the operator who owns it now, -1 if none.
 * @csat:           the rating's score 1..5, 0 when not rated.
 * @ops, @nops:     the operators who owned it, in order of first assignment
 *                  (new array, NULL when @nops is 0).
 */
struct cca_record {
    char dialog_id[37];
    char *customer_id;
    char *customer_name;
    char *channel;
    char *close_reason;
    int64_t created_ms;
    int64_t closed_ms;
    enum cca_dialog_status status;
    uint32_t agents;
    enum cca_agent last_agent;
    uint32_t messages;
    int64_t tokens;
    int64_t tokens_by_agent[CCA_AGENT__COUNT];
    int64_t first_response_ms;
    int64_t escalated_ms;
    int64_t queue_wait_ms;
    int64_t first_human_ms;
    int64_t handle_ms;
    enum cca_record_trigger trigger;
    bool human;
    int owner_operator;
    int csat;
    struct cca_record_op *ops;
    size_t nops;
};

/*
 * cca_record_of - fill *ret from @doc (borrowed, a document that passed
 * cca_dialog_validate; fields it lacks count as absent, never as an error).
 * *ret is overwritten (call cca_record_cleanup first when it held a record).
 */
void cca_record_of(json_t *doc, struct cca_record *ret);

/* cca_record_cleanup - free what @r owns and zero it. Accepts NULL. */
void cca_record_cleanup(struct cca_record *r);

/* cca_record_copy - a deep copy of @src into *ret (which is overwritten). */
void cca_record_copy(const struct cca_record *src, struct cca_record *ret);

/*
 * cca_record_find_op - the index in @r->ops of operator @operator_id, or -1.
 */
int cca_record_find_op(const struct cca_record *r, const char *operator_id);

/*
 * struct cca_record_filter - which dialogs a report covers. NULL / -1 / 0
 * mean "any".
 * @customer_id:  exact customer_id.
 * @operator_id:  canonical UUID: an operator who owned the dialog (any time).
 * @agent:        enum cca_agent that answered in it, -1 any.
 * @status:       enum cca_dialog_status, -1 any.
 * @from_ms, @to_ms: created_at in [@from_ms, @to_ms) (Unix ms; 0 = open end).
 */
struct cca_record_filter {
    const char *customer_id;
    const char *operator_id;
    int agent;
    int status;
    int64_t from_ms;
    int64_t to_ms;
};

/* cca_record_filter_init - every field "any". */
void cca_record_filter_init(struct cca_record_filter *f);

/* cca_record_matches - @r passes @f. */
bool cca_record_matches(const struct cca_record *r, const struct cca_record_filter *f);

/*
 * Statistics. A struct cca_stats folds records one by one (cca_stats_add,
 * O(1) amortised, no document read) and renders JSON at the end; percentiles
 * are exact nearest-rank over every value (docs/RECORDS.md): pN is the value
 * at 1-based rank ceil(N/100 * count) of the sorted values, in seconds, null
 * when there is none.
 *
 * cca_stats_new - an empty fold. For the service (@operator_id NULL) or for
 * one operator (@operator_id a canonical UUID: only dialogs they owned count,
 * with their part of each). Returns a new object (cca_stats_free).
 */
struct cca_stats;
struct cca_stats *cca_stats_new(const char *operator_id);

/* cca_stats_add - fold @r (borrowed) in; an operator's fold skips dialogs they
 * never owned. */
void cca_stats_add(struct cca_stats *s, const struct cca_record *r);

/*
 * cca_stats_service_json - the service's figures (GET /api/v1/stats,
 * openapi.yaml Stats):
 *   {"dialogs": {"total", "by_status": {<every status>: n},
 *                "by_channel": {<channel>: n}},
 *    "messages": n,
 *    "ai": {"closed", "contained", "containment_rate"},
 *    "escalations": {"total", "rate", "abandoned", "by_trigger": {<trigger>: n}},
 *    "queue_wait_s", "first_human_response_s", "handle_time_s",
 *    "first_response_s": {"count", "p50", "p90", "mean"},
 *    "csat": {"count", "average", "distribution": {"1".."5": n}},
 *    "tokens": {"total", "by_agent": {<agent>: n}}}
 * Rates are in [0, 1], null when their denominator is 0. Returns a new reference.
 */
json_t *cca_stats_service_json(const struct cca_stats *s);

/*
 * cca_stats_operator_json - an operator's figures (GET /operators/{id}/stats):
 *   {"dialogs_handled", "open_now", "closed", "messages_sent",
 *    "first_response_s", "handle_time_s": {"count", "p50", "p90", "mean"},
 *    "csat": {"count", "average", "distribution"}}
 * (the caller adds who, the window and the time per status). Returns a new
 * reference.
 */
json_t *cca_stats_operator_json(const struct cca_stats *s);

/* cca_stats_free - release @s. Accepts NULL. */
void cca_stats_free(struct cca_stats *s);

#endif
