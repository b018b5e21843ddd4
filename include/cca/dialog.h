/* SPDX-License-Identifier: MIT */
#ifndef CCA_DIALOG_H
#define CCA_DIALOG_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/assign.h"
#include "cca/common.h"
#include "cca/router.h"

/*
 * The dialog document: what GET /dialogue/{id} returns and what a dialog file
 * (storage/dialogs/<uuid>.json, layout in store.h) holds, with its changes. Format
 * (README "Формат диалога", extended): {dialog_id, customer_id,
 * customer_info{name,phone,email,customer_id}, status, assigned_agent, current_agent,
 * priority, source, created_at, updated_at, closed_at, close_reason, summary,
 * messages[{id, role, content, timestamp, agent_type, route?, tokens?, latency_ms?,
 * degraded?}], metadata{total_tokens, processing_times[], handoffs[{from,to,reason,at}]}}
 *
 * Documents are copy-on-write: every function that "changes" a document
 * returns a new top-level object that shares the untouched children with the
 * old one, and never mutates its input. A committed document is therefore
 * immutable and may be read by several threads at once (jansson
 * doc/threadsafety.rst: read-only sharing is safe; refcounts are atomic).
 * All functions are thread-safe on that basis.
 */

enum cca_dialog_status {
    CCA_DIALOG_ACTIVE = 0,
    CCA_DIALOG_ESCALATED = 1, /* the supervisor took over; still accepts messages */
    CCA_DIALOG_CLOSED = 2,
    CCA_DIALOG_QUEUED = 3,    /* waits in the queue for a human operator */
    CCA_DIALOG_ASSIGNED = 4,  /* a human operator owns it; the AI is silent */
    CCA_DIALOG_STATUS__COUNT, /* a new status: one line here, its name in dialog.c */
};

/* cca_dialog_status_name - "active", "escalated", "closed", "queued", "assigned". Static.
 */
const char *cca_dialog_status_name(enum cca_dialog_status s);

/* cca_dialog_status_parse - the reverse; false for anything else. */
bool cca_dialog_status_parse(const char *name, enum cca_dialog_status *ret);

/*
 * struct cca_dialog_create - a validated create request. Every string is new
 * (owned by the struct) or NULL when absent. @priority and @source are never NULL
 * after validation. Released with cca_dialog_create_cleanup.
 */
struct cca_dialog_create {
    char *customer_id;
    char *name;
    char *phone;
    char *email;
    char *initial_message; /* NULL or non-empty */
    char *source;
    char *priority;
};

/* cca_dialog_create_cleanup - free the strings of @c and zero it. Accepts NULL. */
void cca_dialog_create_cleanup(struct cca_dialog_create *c);

/*
 * cca_dialog_new_doc - a new document for @id (canonical UUID) from @c
 * (borrowed), status active, no messages, timestamps @now_ms (Unix ms).
 * Returns a new reference.
 */
json_t *cca_dialog_new_doc(const char *id, const struct cca_dialog_create *c,
                           int64_t now_ms);

/*
 * struct cca_dialog_turn - everything one customer turn adds (all borrowed).
 * @previous: the agent before a handoff, CCA_AGENT_NONE when there was none.
 * @handoff_reason: NULL unless @previous is set.
 */
struct cca_dialog_turn {
    const char *customer_msg_id;
    const char *agent_msg_id;
    const char *text;
    const struct cca_route *route;
    enum cca_agent agent;
    enum cca_agent previous;
    const char *handoff_reason;
    const char *reply;
    long tokens;
    int64_t latency_ms;
    bool degraded;
    int64_t received_ms; /* Unix ms */
    int64_t replied_ms;  /* Unix ms */
    double processing_s;
    json_t *channel; /* NULL, or the customer message's "channel" object (borrowed) */
};

/*
 * cca_dialog_with_turn - @doc plus the customer and agent messages of @turn, the
 * updated agents, status (escalated when the agent is the supervisor; it stays
 * escalated), tokens, processing time and handoff. @doc is borrowed and not
 * changed. Returns a new reference.
 */
json_t *cca_dialog_with_turn(json_t *doc, const struct cca_dialog_turn *turn);

/*
 * cca_dialog_closed - @doc closed at @now_ms with @reason, with its summary
 * {total_messages, total_tokens, duration_minutes, resolution}. @doc is
 * borrowed and not changed. Returns a new reference.
 */
json_t *cca_dialog_closed(json_t *doc, const char *reason, int64_t now_ms);

/*
 * cca_dialog_validate - check that @doc (borrowed) is a well-formed dialog
 * document whose dialog_id is @expected_id (may be NULL to skip that check).
 * Returns CCA_OK or CCA_ERR_INVALID with the first problem in @reterr.
 */
cca_rc cca_dialog_validate(json_t *doc, const char *expected_id,
                           struct cca_error *reterr);

/*
 * cca_dialog_dump - the file bytes of @doc: pretty-printed (2 spaces), UTF-8
 * with Cyrillic unescaped, keys in insertion order, trailing newline.
 * Returns a new NUL-terminated buffer and its length in *ret_len.
 */
char *cca_dialog_dump(json_t *doc, size_t *ret_len);

/*
 * cca_dialog_dump_change - the bytes of a journal line (store_file.h): @patch
 * (any JSON value, borrowed: a change record) compact on one line, numbers as in
 * cca_dialog_dump, trailing newline (jansson escapes control characters in
 * strings, so the line holds no other newline). Returns a new NUL-terminated
 * buffer and its length in *ret_len.
 */
char *cca_dialog_dump_change(json_t *patch, size_t *ret_len);

/*
 * cca_dialog_llm_history - the last @max messages of @doc as OpenAI chat
 * messages (customer -> "user", agent -> "assistant"; system messages skipped).
 * Returns a new array (possibly empty).
 */
json_t *cca_dialog_llm_history(json_t *doc, unsigned max);

/*
 * Short views of @doc (borrowed); each returns a new reference.
 * status:   {dialog_id, status, current_agent, message_count, created_at,
 *            updated_at, customer_name}
 * summary:  {dialog_id, customer_id, customer_name, status, current_agent,
 *            priority, source, message_count, created_at, updated_at}
 * close:    {dialog_id, status, reason, closed_at, summary} (closed docs only)
 */
json_t *cca_dialog_status_view(json_t *doc);
json_t *cca_dialog_summary_view(json_t *doc);
json_t *cca_dialog_close_view(json_t *doc);

/*
 * Idempotency records (IETF draft-ietf-httpapi-idempotency-key-header): the
 * first response to a request that carried an Idempotency-Key, kept in the
 * dialog it created or changed so a retry gets the same answer even after a
 * restart: metadata.idempotency = [{key, operation ("create" or "message"),
 * request_hash, created_at, response}]. Records older than @ttl_ms are
 * dropped whenever a record is added.
 *
 * cca_dialog_find_idempotency - the record of @key for @operation in @doc
 * that is younger than @ttl_ms at @now_ms (Unix ms), or NULL. Borrowed from
 * @doc. Malformed records are ignored.
 */
json_t *cca_dialog_find_idempotency(json_t *doc, const char *key, const char *operation,
                                    int64_t now_ms, int64_t ttl_ms);

/*
 * cca_dialog_idempotency_hash, cca_dialog_idempotency_response - a record's
 * request fingerprint (NULL if malformed) and recorded response (borrowed;
 * NULL if none).
 */
const char *cca_dialog_idempotency_hash(json_t *rec);
json_t *cca_dialog_idempotency_response(json_t *rec);

/*
 * cca_dialog_create_key - the Idempotency-Key of the create that made @doc,
 * if its record is younger than @ttl_ms at @now_ms (Unix ms); else NULL.
 * Borrowed from @doc.
 */
const char *cca_dialog_create_key(json_t *doc, int64_t now_ms, int64_t ttl_ms);

/*
 * cca_dialog_with_idempotency - @doc plus a record {@key, @operation,
 * @request_hash, created_at @now_ms, @response (borrowed, copied by
 * reference)}, without the records older than @ttl_ms. When @max_records
 * (>= 1) records would be kept, only the newest @max_records / 2 of the old
 * ones stay: a dialog holds at most @max_records records, and the list is
 * cut in halves, not one record per turn, so the change journaled per turn
 * stays small on average (a cut rewrites the list). @doc is borrowed and not
 * changed. Returns a new reference.
 */
json_t *cca_dialog_with_idempotency(json_t *doc, const char *key, const char *operation,
                                    const char *request_hash, json_t *response,
                                    int64_t now_ms, int64_t ttl_ms, size_t max_records);

/*
 * The human side (docs/OPERATORS.md). A dialog's owner is
 * "owner": {"kind": "agent"|"queue"|"operator", "operator_id", "operator_name",
 * "since", "waiting_since", "requeued", "replied", "queue_seq" (queued only:
 * the order of dialogs that started waiting in the same millisecond)}
 * (absent in older dialogs:
 * the AI); every change of owner is recorded in metadata.transitions[] as
 * {at, event, from, to, operator_id, prev_operator_id, actor, reason}.
 *
 * struct cca_dialog_transition - one change of owner (all borrowed).
 * @event, @from, @to: as assign.h (@to follows from the state machine).
 * @operator_id, @operator_name: the new owner when @to is an operator, else NULL.
 * @prev_operator_id: the owner before when it was an operator, else NULL.
 * @actor, @reason: who did it ("customer", "system", "client", "admin",
 *                  "operator:<id>") and why ("customer_request", "backlog", ...).
 * @requeued: to the queue from an operator.
 * @at_ms: Unix ms.
 */
struct cca_dialog_transition {
    enum cca_owner_event event;
    enum cca_owner from;
    enum cca_owner to;
    const char *operator_id;
    const char *operator_name;
    const char *prev_operator_id;
    const char *actor;
    const char *reason;
    bool requeued;
    uint64_t queue_seq; /* to the queue: the desk's sequence number, else 0 */
    int64_t at_ms;
};

/*
 * cca_dialog_with_transition - @doc with its owner changed and the transition
 * recorded; status becomes queued (queue), assigned (operator) or, back with
 * the AI, escalated when the current agent is the supervisor else active.
 * A closed dialog keeps its status. @doc is borrowed. Returns a new reference.
 */
json_t *cca_dialog_with_transition(json_t *doc, const struct cca_dialog_transition *t);

/*
 * cca_dialog_with_replied - @doc whose owner (an operator) has answered: the
 * reply timeout no longer applies after a restart. A new reference.
 */
json_t *cca_dialog_with_replied(json_t *doc);

/*
 * struct cca_dialog_message - a message that is not part of an AI turn.
 * @role: "customer" (while a human owns the dialog), "operator" or "system".
 * @operator_id, @operator_name: for "operator", else NULL.
 * @kind: for "system": "queue", "assigned", "closing", "csat", "notice"; else NULL.
 * @channel: NULL, or what the message's channel knows of it (borrowed, kept by
 *   reference as the message's "channel" object): for Telegram {"name":
 *   "telegram", "chat_id", "message_id", and for media "media", "file_id",
 *   "caption"; "edit": true for an edited message} (docs/TELEGRAM.md).
 */
struct cca_dialog_message {
    const char *id;
    const char *role;
    const char *content;
    const char *operator_id;
    const char *operator_name;
    const char *kind;
    int64_t at_ms;
    json_t *channel;
};

/*
 * cca_dialog_with_message - @doc plus message @m, updated_at @m->at_ms. @doc is
 * borrowed. Returns a new reference.
 */
json_t *cca_dialog_with_message(json_t *doc, const struct cca_dialog_message *m);

/*
 * cca_dialog_with_rating - @doc rated by its customer (CSAT, seed 000):
 * "rating": {score 1..5, comment (string or null), rated_at, operator_id (the
 * last operator, or null), agent (the last AI agent, or null)}. A new reference.
 */
json_t *cca_dialog_with_rating(json_t *doc, int score, const char *comment,
                               int64_t now_ms);

/*
 * cca_dialog_with_language - @doc with "language" @code ("ru" or "en"), the
 * customer's language at the last turn; @doc itself (a new reference to it)
 * when unchanged.
 */
json_t *cca_dialog_with_language(json_t *doc, const char *code);

/*
 * cca_dialog_get_owner - the owner kind (the AI when absent); with an
 * operator, their id (borrowed) in *ret_operator_id (may be NULL).
 * cca_dialog_owner_field - a field of "owner" (borrowed; NULL when absent).
 */
enum cca_owner cca_dialog_get_owner(json_t *doc, const char **ret_operator_id);
json_t *cca_dialog_owner_field(json_t *doc, const char *key);

/*
 * cca_dialog_messages_after - the messages after the one with id @after_id
 * (all when NULL; none... when @after_id is unknown: *ret_found false).
 * A new array sharing the message objects.
 */
json_t *cca_dialog_messages_after(json_t *doc, const char *after_id, bool *ret_found);

/*
 * Field accessors for a validated @doc (borrowed). Strings are borrowed from
 * @doc; NULL when the field is null.
 */
enum cca_dialog_status cca_dialog_get_status(json_t *doc);
enum cca_agent cca_dialog_get_agent(json_t *doc);
const char *cca_dialog_get_str(json_t *doc, const char *key);
size_t cca_dialog_message_count(json_t *doc);
int64_t cca_dialog_get_time(json_t *doc, const char *key); /* Unix ms, 0 if absent */

#endif
