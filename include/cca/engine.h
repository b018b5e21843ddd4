/* SPDX-License-Identifier: MIT */
#ifndef CCA_ENGINE_H
#define CCA_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/agent.h"
#include "cca/common.h"
#include "cca/config.h"
#include "cca/customer.h"
#include "cca/desk.h"
#include "cca/dialog.h"
#include "cca/events.h"
#include "cca/llm.h"
#include "cca/operator.h"
#include "cca/metrics.h"
#include "cca/record.h"
#include "cca/router.h"
#include "cca/store.h"
#include "cca/turn.h"

/*
 * The dialog engine (docs/internals/engine.md): the in-memory index of every
 * dialog, the document cache, the per-dialog queue that serialises operations
 * in arrival order, and their dispatch: a turn (turn.h) -> the new document
 * (dialog.h) -> a durable commit (store.h) -> the outcome, rendered by the
 * caller's view function (the HTTP layer's REST bodies, http_views.c).
 *
 * All changes run on one engine thread, so a dialog's document has a single
 * writer. HTTP threads submit operations and get the outcome through a
 * callback; they never wait on the LLM or the disk. An operation's result is
 * delivered only after its change is durable (cca_store), and the in-memory
 * document that readers see is replaced only then, so a reader never sees data
 * that a crash could lose.
 */

enum cca_engine_op {
    CCA_OP_CREATE,           /* .create */
    CCA_OP_MESSAGE,          /* .id, .text */
    CCA_OP_CLOSE,            /* .id, .reason */
    CCA_OP_DELETE,           /* .id, .force */
    CCA_OP_CLEANUP_INACTIVE, /* close dialogs idle longer than the configured timeout */
    CCA_OP_CLEANUP_CLOSED,   /* .older_than_days */
    /* The human side (docs/OPERATORS.md). .actor says who asks. */
    CCA_OP_HANDOFF,         /* .id, .handoff_to, .reason, .agent, .target */
    CCA_OP_REPLY,           /* .id, .text: the reply of operator .actor_operator */
    CCA_OP_TAKE,            /* .id, or "" for the first queued dialog: .actor_operator */
    CCA_OP_RATE,            /* .id, .score, .text (comment, may be NULL) */
    CCA_OP_OPERATOR_CREATE, /* .operator_doc (stolen): a new operator record */
    CCA_OP_OPERATOR_UPDATE, /* .target: .patch (NULL: none) and/or .status (has_status) */
    CCA_OP_OPERATOR_DELETE, /* .target: revoke */
    CCA_OP_MOVE,            /* internal: record a dialog's pending desk moves */
    /* Support records (docs/RECORDS.md). */
    CCA_OP_CUSTOMER_PUT, /* .target (cca_customer_key), .text (the customer_id),
                            .customer (stolen); .fill_only from a dialog */
    /* A channel's own documents (docs/TELEGRAM.md). */
    CCA_OP_PUT, /* .coll (CCA_STORE_TELEGRAM), .target, .doc (stolen): store .doc
                   as the whole document (made when missing; nothing is written
                   when it equals the stored one) */
};

/*
 * struct cca_engine_outcome - what an operation did, for the caller's view
 * (all borrowed, valid during the render call only).
 * @op, @dialog_id: the operation and its dialog (NULL for cleanups).
 * @doc:            the dialog after the operation (create, message, close);
 *                  NULL for deletes and cleanups.
 * @turn:           the turn of a message, or of a create with an initial
 *                  message; else NULL.
 * @message_id:     the customer message's id when @turn is set.
 * @processing_s:   seconds from submit to the new document.
 * @already_closed: a close found the dialog closed (the stored record answers).
 * @count:          dialogs a cleanup closed or deleted.
 * @older_than_days, @inactivity_timeout_s: a cleanup's limits.
 * @owner:          who owns the dialog after the operation (the desk's view).
 * @operator_id:    with an operator owner, their id; else "".
 * @position, @eta_s: when queued, the 1-based position and estimated wait
 *                  (seconds, -1 unknown); else 0 and -1.
 * @escalation:     a message or handoff that asked for a human: what happened
 *                  (CCA_DESK_ALREADY when nothing did).
 * @escalated:      @escalation is set.
 * @human_turn:     a customer message stored for a human: the AI did not answer.
 * @operator_doc:   operator operations: the record after it.
 * @rating_repeat:  a rating equal to the stored one (nothing changed).
 * @customer_doc:   CCA_OP_CUSTOMER_PUT: the profile after it.
 * @created:        CCA_OP_CUSTOMER_PUT: the profile is new.
 */
struct cca_engine_outcome {
    enum cca_engine_op op;
    const char *dialog_id;
    json_t *doc;
    const struct cca_turn *turn;
    const char *message_id;
    double processing_s;
    bool already_closed;
    unsigned count;
    unsigned older_than_days;
    unsigned inactivity_timeout_s;
    enum cca_owner owner;
    char operator_id[37];
    size_t position;
    double eta_s;
    bool escalated;
    enum cca_desk_escalation escalation;
    bool human_turn;
    json_t *operator_doc;
    bool rating_repeat;
    json_t *customer_doc;
    bool created;
};

/*
 * cca_engine_render_fn - the result of an operation as the caller wants it
 * (a new reference): the body given to cca_engine_done_fn and, for a create
 * or message with an Idempotency-Key, kept in the dialog to answer repeats
 * byte for byte. Called on the engine thread; must not block. NULL means
 * "no body" (a cleanup's skipped close).
 */
typedef json_t *(*cca_engine_render_fn)(const struct cca_engine_outcome *o);

/*
 * struct cca_engine_request - one operation. Strings are owned by the struct
 * (new) and stolen by cca_engine_submit; @id is a canonical UUID.
 * @idempotency_key: NULL, or the Idempotency-Key of a CREATE or MESSAGE
 * (validated by the caller, at most 255 bytes, scoped by the caller to its
 * client); @request_hash then fingerprints the request (see http_routes.c).
 * A repeat with the same key and hash within IDEMPOTENCY_TTL_S gets the first
 * result without running again (concurrent repeats wait for the first); the
 * same key with another hash fails with CCA_ERR_MISMATCH. An operator's
 * REPLY takes a key the same way (the Telegram channel's "tg:<update_id>").
 * @channel: NULL, or the "channel" object of the message a MESSAGE, a CREATE
 * with an initial message, or a REPLY adds (dialog.h struct
 * cca_dialog_message); stolen.
 */
struct cca_engine_request {
    enum cca_engine_op op;
    cca_engine_render_fn render; /* required */
    char id[37];
    struct cca_dialog_create create;
    char *text;
    char *reason;
    bool force;
    unsigned older_than_days;
    char *idempotency_key;
    char request_hash[37];
    /* The human side. */
    char actor[48];          /* "client", "admin", "operator:<id>"; "" = "client" */
    char actor_operator[37]; /* the operator making the request, "" if none */
    enum cca_owner handoff_to;
    enum cca_agent agent; /* a hand-back's agent, CCA_AGENT_NONE = keep */
    char target[37];      /* a transfer's operator; an operator operation's id */
    int score;
    json_t *operator_doc;
    struct cca_operator_patch *patch; /* new, owned; NULL = none */
    bool has_status;
    enum cca_operator_status status;
    struct cca_customer_fields *customer; /* new, owned; CCA_OP_CUSTOMER_PUT */
    bool fill_only;
    json_t *channel;          /* new, owned; see above */
    enum cca_store_coll coll; /* CCA_OP_PUT */
    json_t *doc;              /* new, owned; CCA_OP_PUT */
};

/*
 * cca_engine_done_fn - outcome of a submitted request, called exactly once on
 * the engine thread. @rc: CCA_OK with @result (new reference, stolen by the
 * callee) or an error with @result NULL and detail in @err:
 * CCA_ERR_NOT_FOUND (no such dialog or operator; nothing queued for a take),
 * CCA_ERR_CONFLICT (closed dialog, open dialog without force; a handoff or
 * take that the ownership state forbids; a rating that differs from the stored
 * one; a rating of an open dialog), CCA_ERR_FORBIDDEN (an operator acting on a
 * dialog that is not theirs), CCA_ERR_LIMIT
 * (MAX_DIALOG_MESSAGES reached), CCA_ERR_MISMATCH (idempotency key reused with
 * another request), CCA_ERR_NO_SPACE / CCA_ERR_IO (the write
 * failed; nothing changed), CCA_ERR_UNAVAILABLE (shutting down).
 * The result is what the request's render function made of the outcome, or
 * the recorded result of an idempotent repeat.
 */
typedef void (*cca_engine_done_fn)(void *ctx, cca_rc rc, json_t *result,
                                   const struct cca_error *err);

/* cca_engine_skip_fn - a dialog file the start-up scan skipped, and why. */
typedef void (*cca_engine_skip_fn)(void *ctx, const char *name, const char *why);

struct cca_engine_params {
    const struct cca_config *cfg; /* borrowed, must outlive the engine */
    struct cca_store *store;      /* borrowed */
    struct cca_router *router;    /* borrowed */
    struct cca_agents *agents;    /* borrowed */
    struct cca_llm *llm;          /* borrowed; NULL: offline responder only */
    struct cca_desk *desk;        /* borrowed: the human side's live state */
    struct cca_events *events;    /* borrowed: where committed changes are published */
    cca_engine_skip_fn skip;      /* may be NULL */
    void *skip_ctx;
};

struct cca_engine;

/*
 * cca_engine_new - load every dialog from the store (one scan) and start the
 * engine thread. Returns CCA_OK and a new engine in *ret_engine, or the store's
 * scan error / CCA_ERR_INTERNAL, detail in @reterr.
 */
cca_rc cca_engine_new(const struct cca_engine_params *params,
                      struct cca_engine **ret_engine, struct cca_error *reterr) CCA_WUR;

/*
 * cca_engine_free - stop the engine thread and free the engine. Call only when
 * cca_engine_drain returned true (nothing in flight: no store change or LLM
 * call still holds an operation) and after cca_engine_detach_llm and
 * cca_llm_free, before cca_store_free. Accepts NULL.
 */
void cca_engine_free(struct cca_engine *engine);

/*
 * cca_engine_request_cleanup - free what @req owns (its strings, documents,
 * patch, profile fields, channel object), for a request that is not
 * submitted after all. Accepts a zeroed request.
 */
void cca_engine_request_cleanup(struct cca_engine_request *req);

/*
 * cca_engine_submit - queue @req (its strings are stolen, also on failure).
 * Returns CCA_OK (@done will be called), or CCA_ERR_UNAVAILABLE when
 * MAX_PENDING_TURNS requests are already in flight or the engine is stopping
 * (@done is then not called). Thread-safe.
 */
cca_rc cca_engine_submit(struct cca_engine *engine, struct cca_engine_request *req,
                         cca_engine_done_fn done, void *ctx) CCA_WUR;

/*
 * Reads. The engine keeps every dialog in its index, and the parsed documents
 * of the most recently used ones in a cache bounded by DIALOG_CACHE_MB
 * (memory estimated from the size the store reports); a read of an evicted
 * dialog reads it back (cca_store_read) on the calling thread and caches it again.
 *
 * cca_engine_get_document - the committed document of dialog @id as
 * cca_dialog_dump bytes (kept until the next change, so repeated reads only
 * copy). Returns CCA_OK with a new buffer in *ret_bytes (caller frees) and its
 * length, CCA_ERR_NOT_FOUND, or CCA_ERR_IO / CCA_ERR_INVALID if the file
 * cannot be read back, CCA_ERR_UNAVAILABLE if it stays busy (detail in
 * @reterr, may be NULL). Thread-safe; never waits on a turn.
 */
cca_rc cca_engine_get_document(struct cca_engine *engine, const char *id,
                               char **ret_bytes, size_t *ret_len,
                               struct cca_error *reterr) CCA_WUR;

/*
 * cca_engine_get_dialog - the committed document of dialog @id, for views
 * (dialog.h). Returns CCA_OK with a new reference in *ret (never to be
 * changed: it is shared), or an error as cca_engine_get_document. Thread-safe.
 */
cca_rc cca_engine_get_dialog(struct cca_engine *engine, const char *id, json_t **ret,
                             struct cca_error *reterr) CCA_WUR;

/*
 * cca_engine_get_operator - the committed record of operator @id (operator.h;
 * with its token hash: callers show cca_operator_public_view). As
 * cca_engine_get_dialog; CCA_ERR_NOT_FOUND for an unknown operator.
 */
cca_rc cca_engine_get_operator(struct cca_engine *engine, const char *id, json_t **ret,
                               struct cca_error *reterr) CCA_WUR;

/*
 * cca_engine_list_operators - every committed operator record (new array of
 * shared references, never to be changed), in no order. Thread-safe.
 */
json_t *cca_engine_list_operators(struct cca_engine *engine);

/*
 * struct cca_engine_query - GET /dialogues filters. @status and @agent are -1
 * for "any". @cursor is NULL or a next_cursor from an earlier page. @limit 1..100.
 */
struct cca_engine_query {
    const char *customer_id;
    int status;
    int agent;
    unsigned limit;
    const char *cursor;
};

/*
 * struct cca_engine_page - one page of cca_engine_list.
 * @docs:        @n documents (new references, never to be changed), newest first.
 * @next_cursor: the cursor of the next page, "" when this is the last.
 */
struct cca_engine_page {
    json_t **docs;
    size_t n;
    char next_cursor[64];
};

/* cca_engine_page_cleanup - release @page's documents. Accepts a zeroed struct. */
void cca_engine_page_cleanup(struct cca_engine_page *page);

/*
 * cca_engine_list - dialogs matching @q, newest first (created_at, then
 * dialog_id, both descending); cursors are "<created_ms>_<dialog_id>".
 * Returns CCA_OK with *ret filled (cca_engine_page_cleanup), or
 * CCA_ERR_INVALID for a malformed cursor. Thread-safe.
 */
cca_rc cca_engine_list(struct cca_engine *engine, const struct cca_engine_query *q,
                       struct cca_engine_page *ret, struct cca_error *reterr) CCA_WUR;

/*
 * Support records (record.h, docs/RECORDS.md). The index keeps a struct
 * cca_record of every dialog, remade at each commit and at load.
 *
 * cca_engine_select - the ids of the documents of @coll, oldest first
 * (created_at, then id); for dialogs only those whose record matches @f (NULL:
 * all). Returns a new array of *ret_n ids (free; NULL when none). Under the
 * engine lock: one pass over the index, or over the customer's dialogs only
 * when @f names a customer_id (the engine keeps them by customer); 48 bytes
 * per match are copied, no document is read. Thread-safe.
 */
char (*cca_engine_select(struct cca_engine *engine, enum cca_store_coll coll,
                         const struct cca_record_filter *f, size_t *ret_n))[37];

/*
 * cca_engine_get_record - a copy of dialog @id's record into *ret
 * (cca_record_cleanup). Returns CCA_OK or CCA_ERR_NOT_FOUND. Thread-safe.
 */
cca_rc cca_engine_get_record(struct cca_engine *engine, const char *id,
                             struct cca_record *ret) CCA_WUR;

/*
 * cca_engine_fold_records - call @fn(@ctx, record) for every dialog whose
 * record matches @f (NULL: all), in no order, under the engine lock (only the
 * customer's dialogs are visited when @f names a customer_id): @fn must do no
 * I/O and must not call the engine; the engine's other work waits meanwhile
 * (docs/BENCHMARKS.md S8: /stats folds 100,000 records in tens of ms). The
 * record is borrowed for the call. Thread-safe.
 */
void cca_engine_fold_records(struct cca_engine *engine, const struct cca_record_filter *f,
                             void (*fn)(void *ctx, const struct cca_record *r),
                             void *ctx);

/*
 * cca_engine_read - the committed document @id of @coll for a bulk reader
 * (exports): as cca_engine_get_dialog, but a document that is not cached is
 * read from the store without entering the cache, so an export of every
 * dialog does not evict the ones in use. New reference in *ret. Thread-safe.
 */
cca_rc cca_engine_read(struct cca_engine *engine, enum cca_store_coll coll,
                       const char *id, json_t **ret, struct cca_error *reterr) CCA_WUR;

/*
 * cca_engine_observe_fn - a dialog's change became durable and visible:
 * @doc is the committed document (borrowed for the call; take a reference to
 * keep it, never change it), NULL when the dialog was deleted. Called on the
 * engine thread after every committed dialog change, in commit order per
 * dialog: it must be short and must not block or call the engine
 * synchronously (cca_engine_submit is fine).
 */
typedef void (*cca_engine_observe_fn)(void *ctx, const char *dialog_id, json_t *doc);

/*
 * cca_engine_set_observer - make @fn (NULL: none) the observer of committed
 * dialogs, with @ctx. Once it returns, the previous observer is not running
 * and is never called again. One observer at a time (a channel).
 * Thread-safe.
 */
void cca_engine_set_observer(struct cca_engine *engine, cca_engine_observe_fn fn,
                             void *ctx);

/* Who wrote a turn's reply: the LLM, the offline responder (no key), or the
 * offline responder because the LLM failed (degraded). */
enum cca_engine_reply {
    CCA_ENGINE_REPLY_LLM,
    CCA_ENGINE_REPLY_OFFLINE,
    CCA_ENGINE_REPLY_DEGRADED,
    CCA_ENGINE_REPLY__COUNT,
};

/* cca_engine_reply_name - "llm", "offline", "degraded" (static). */
const char *cca_engine_reply_name(enum cca_engine_reply r);

/* struct cca_engine_stats - counts for health and metrics. */
struct cca_engine_stats {
    size_t dialogs[CCA_DIALOG_STATUS__COUNT]; /* by enum cca_dialog_status */
    size_t total;                             /* all dialogs */
    size_t in_flight;   /* requests submitted and not yet answered */
    size_t cached;      /* dialogs whose document is cached */
    size_t cache_bytes; /* their estimated memory, against DIALOG_CACHE_MB */
};

/*
 * struct cca_engine_metrics - counters since start (engine thread writes).
 * @turns:            committed customer turns by who wrote the reply
 *                    (enum cca_engine_reply).
 * @turn_seconds:     turn time from submit to durable commit.
 * @overhead_seconds: the same minus the time spent waiting on LLM attempts.
 * @idempotent_replays: requests answered from an idempotency record.
 * @cache_loads:      dialog files read back because their document was not cached.
 * @idempotency_keys: create Idempotency-Keys remembered now (at most
 *                    IDEMPOTENCY_MAX_KEYS, about 150 bytes each).
 * @idempotency_keys_evicted: create keys forgotten before their TTL to stay
 *                    within IDEMPOTENCY_MAX_KEYS.
 * The human side (docs/OPERATORS.md):
 * @escalations:      [0] asked for a human, [1] queued, [2] refused (QUEUE_MAX).
 * @assignments:      dialogs given to an operator (push, pull, transfer excluded).
 * @requeues:         dialogs taken back from an operator: [0] reply timeout,
 *                    [1] operator offline, [2] operator revoked.
 * @queue_wait_seconds: from asking for a human to an operator, per assignment
 *                    from the queue.
 * @first_response_seconds: from asking for a human to the operator's first reply.
 * @csat:             ratings by the dialog's last AI agent (enum cca_agent,
 *                    [CCA_AGENT__COUNT] = none) and score 1..5.
 */
struct cca_engine_metrics {
    _Atomic uint64_t turns[CCA_ENGINE_REPLY__COUNT];
    struct cca_hist turn_seconds;
    struct cca_hist overhead_seconds;
    _Atomic uint64_t idempotent_replays;
    _Atomic uint64_t cache_loads;
    _Atomic uint64_t idempotency_keys;
    _Atomic uint64_t idempotency_keys_evicted;
    _Atomic uint64_t escalations[3];
    _Atomic uint64_t assignments;
    _Atomic uint64_t requeues[3];
    struct cca_hist queue_wait_seconds;
    struct cca_hist first_response_seconds;
    _Atomic uint64_t csat[CCA_AGENT__COUNT + 1][5];
};

/* cca_engine_get_metrics - live counters, borrowed until cca_engine_free. Thread-safe. */
const struct cca_engine_metrics *cca_engine_get_metrics(const struct cca_engine *engine);

/* cca_engine_get_stats - fill *ret. Thread-safe. */
void cca_engine_get_stats(struct cca_engine *engine, struct cca_engine_stats *ret);

/*
 * cca_engine_detach_llm - make the engine forget its LLM client, and wait
 * until the engine thread has done so: from then on every turn step answers
 * offline (a turn whose call is cancelled answers degraded), so the client
 * can be freed (cca_llm_free cancels what is in flight). Call once, before
 * cca_llm_free, from any thread but the engine's.
 */
void cca_engine_detach_llm(struct cca_engine *engine);

/*
 * cca_engine_drain - wait until no request is in flight or @deadline_ms
 * (cca_time_mono_ms) passes. Returns true when drained. Thread-safe.
 */
bool cca_engine_drain(struct cca_engine *engine, int64_t deadline_ms);

#endif
