/* SPDX-License-Identifier: MIT */
#ifndef CCA_DESK_H
#define CCA_DESK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/assign.h"
#include "cca/common.h"
#include "cca/operator.h"

/*
 * The desk: the live state of the human side (docs/OPERATORS.md). Who is on
 * shift (operators, their status, seats and tokens), which dialogs a human
 * owns (the queue and each operator's dialogs), and every ownership decision:
 * escalation, assignment, the backlog sweep, pull, transfer, requeue on a
 * reply timeout or when an operator leaves, hand-back to the AI, close.
 *
 * The desk is the one place ownership is decided (the state machine and the
 * rules are assign.h). Each decision changes the desk at once and returns
 * "moves": the transitions the dialog documents must record. The engine
 * writes each move into its dialog, in its dialog's operation order, and
 * publishes its events once it is durable; until then a dialog's document
 * may lag the desk by the operations queued before it.
 *
 * Invariants, kept by every function under one mutex: a dialog has at most one
 * owner; no operator holds more than max_dialogs; after every decision that
 * can free a seat or add one (a close, a hand-back, a requeue, an operator
 * becoming available or registering, max_dialogs raised) no queued dialog is
 * left while an eligible operator has a free seat (the sweep).
 *
 * Threads: decisions (functions taking a struct cca_desk_moves) are made by
 * the engine thread only; lookups (authentication, visibility, the queue
 * view) from any thread. All functions are thread-safe.
 */

/* struct cca_desk_move - one ownership transition of one dialog. */
struct cca_desk_move {
    char dialog_id[37];
    enum cca_owner_event event;
    enum cca_owner from;
    enum cca_owner to;
    char operator_id[37];      /* the owner after the move, "" unless an operator */
    char operator_name[128];   /* their display name */
    char prev_operator_id[37]; /* the owner before, "" unless an operator */
    const char *reason;        /* static: "customer_request", "reply_timeout", ... */
    char actor[48];      /* "customer", "system", "client", "admin", "operator:<id>" */
    bool requeued;       /* to the queue: taken back from an operator */
    size_t position;     /* to the queue: 1-based position at the move */
    double eta_s;        /* to the queue: estimated wait, -1 unknown */
    size_t queue_length; /* dialogs queued right after the move */
    uint64_t queue_seq;  /* to the queue: its sequence number (ties in a millisecond) */
    int64_t waiting_since_ms; /* when the customer started waiting for a human */
    int64_t at_ms;            /* Unix ms */
};

/* struct cca_desk_moves - a growable list of moves (cca_desk_moves_cleanup). */
struct cca_desk_moves {
    struct cca_desk_move *v;
    size_t n;
    size_t cap;
};

/* cca_desk_moves_cleanup - free the list and zero it. */
void cca_desk_moves_cleanup(struct cca_desk_moves *m);

/*
 * struct cca_desk_need - what a dialog asks of an operator and where it
 * queues: its language and skill (0 = any, see assign.h) and priority.
 */
struct cca_desk_need {
    uint32_t language;
    uint32_t skill;
    enum cca_priority priority;
};

struct cca_desk_params {
    unsigned queue_max;      /* QUEUE_MAX: dialogs that may wait at once */
    double default_handle_s; /* handle time for the estimate before any is measured */
    uint64_t seed;           /* random tie-break (cca_assign_pick) */
};

struct cca_desk;

/* cca_desk_new - an empty desk. Returns a new desk (aborts on out of memory). */
struct cca_desk *cca_desk_new(const struct cca_desk_params *params);

/* cca_desk_free - accepts NULL. */
void cca_desk_free(struct cca_desk *desk);

/* ---- start-up (before the engine thread runs) ----------------------------- */

/*
 * cca_desk_load_operator - add the operator record @doc (borrowed, validated
 * by cca_operator_validate). Operators come back with the status they had.
 */
void cca_desk_load_operator(struct cca_desk *desk, json_t *doc);

/*
 * cca_desk_load_dialog - a dialog owned by the queue or an operator at the
 * last commit (@owner_id: the operator's id, NULL for the queue; @since_ms:
 * when the customer started waiting for a human; @seq: its queue sequence
 * number as recorded (owner.queue_seq; 0 if none), which orders dialogs that
 * started waiting in the same millisecond; @assigned_ms: when the operator got
 * it; @replied: the operator has answered since). Queued dialogs are put in
 * queue order (assign.h); a dialog whose operator is unknown or offline, or
 * which would put them over their limit, goes back to the queue (requeued; a
 * move is added to @moves). Call after every operator is loaded.
 */
void cca_desk_load_dialog(struct cca_desk *desk, const char *dialog_id,
                          const struct cca_desk_need *need, const char *owner_id,
                          bool requeued, int64_t since_ms, uint64_t seq,
                          int64_t assigned_ms, bool replied,
                          struct cca_desk_moves *moves);

/*
 * cca_desk_start - after loading: the backlog sweep (moves into @moves), so a
 * restart assigns what waited for operators who are available.
 */
void cca_desk_start(struct cca_desk *desk, int64_t now_ms, struct cca_desk_moves *moves);

/* ---- operators -------------------------------------------------------------- */

/*
 * cca_desk_add_operator - register the operator of record @doc (borrowed) and
 * sweep the queue for them. Returns CCA_OK, or CCA_ERR_CONFLICT if the id
 * exists.
 */
cca_rc cca_desk_add_operator(struct cca_desk *desk, json_t *doc, int64_t now_ms,
                             struct cca_desk_moves *moves);

/*
 * cca_desk_update_operator - the record of an operator changed (@doc
 * borrowed: name, languages, skills, max_dialogs, status, token). The
 * status decides as cca_desk_set_status; lowering max_dialogs below the open
 * count keeps the open dialogs (no new ones until below). Returns CCA_OK or
 * CCA_ERR_NOT_FOUND.
 */
cca_rc cca_desk_update_operator(struct cca_desk *desk, json_t *doc, const char *actor,
                                int64_t now_ms, struct cca_desk_moves *moves);

/*
 * cca_desk_remove_operator - revoke: the token stops working at once and the
 * operator's open dialogs go back to the head of the queue (reason
 * "operator_revoked"), then the sweep. Returns CCA_OK or CCA_ERR_NOT_FOUND.
 */
cca_rc cca_desk_remove_operator(struct cca_desk *desk, const char *operator_id,
                                const char *actor, int64_t now_ms,
                                struct cca_desk_moves *moves);

/*
 * cca_desk_authenticate - the operator whose token hashes to @token_hex
 * (cca_operator_token_hash), compared in constant time; records @now_ms as
 * last seen. Returns true and their id in @ret_id, else false.
 */
bool cca_desk_authenticate(struct cca_desk *desk, const char *token_hex, int64_t now_ms,
                           char ret_id[37]);

/*
 * cca_desk_rated - a dialog last owned by @operator_id was rated @score
 * (1..5; CSAT per operator, in memory: the engine counts the stored ratings
 * again at start-up). Unknown operators and scores are ignored.
 */
void cca_desk_rated(struct cca_desk *desk, const char *operator_id, int score);

/*
 * cca_desk_has_skill - is there an operator, whatever their status, with the
 * skill @skill (a CCA_OPERATOR_SKILL_BIT) or with every skill. O(operators).
 */
bool cca_desk_has_skill(struct cca_desk *desk, uint32_t skill);

/* cca_desk_touch - @operator_id was seen at @now_ms (an open event stream). */
void cca_desk_touch(struct cca_desk *desk, const char *operator_id, int64_t now_ms);

/*
 * struct cca_desk_operator_info - an operator's live state (a copy).
 */
struct cca_desk_operator_info {
    char id[37];
    char name[128];
    enum cca_operator_status status;
    unsigned max_dialogs;
    unsigned open_dialogs;
    int64_t last_seen_ms;
    int64_t last_closed_ms;
    unsigned long csat[5]; /* ratings of their dialogs by score 1..5 ([0] = 1) */
};

/* cca_desk_operator - fill @ret for @operator_id; false when unknown. */
bool cca_desk_operator(struct cca_desk *desk, const char *operator_id,
                       struct cca_desk_operator_info *ret);

/*
 * cca_desk_operator_dialogs - the ids of @operator_id's open dialogs, oldest
 * assignment first: a new array of strings (empty when none or unknown).
 */
json_t *cca_desk_operator_dialogs(struct cca_desk *desk, const char *operator_id);

/* ---- dialogs ------------------------------------------------------------------- */

/* enum cca_desk_escalation - what cca_desk_escalate did. */
enum cca_desk_escalation {
    CCA_DESK_ASSIGNED, /* an operator had a free seat */
    CCA_DESK_QUEUED,   /* it waits in the queue */
    CCA_DESK_FULL,     /* QUEUE_MAX reached: it stays with the AI */
    CCA_DESK_ALREADY,  /* a human owns it already: nothing changed */
};

/*
 * cca_desk_escalate - dialog @dialog_id, owned by the AI, asks for a human
 * (@reason static, @actor as in struct cca_desk_move). Assigned to the best
 * eligible operator (cca_assign_pick), else queued, else FULL. The move (if
 * any) is added to @moves.
 */
enum cca_desk_escalation cca_desk_escalate(struct cca_desk *desk, const char *dialog_id,
                                           const struct cca_desk_need *need,
                                           const char *reason, const char *actor,
                                           int64_t now_ms, struct cca_desk_moves *moves);

/*
 * cca_desk_owner - who owns @dialog_id now: CCA_OWNER_AGENT when the desk does
 * not hold it; with an operator, their id into @ret_operator_id (may be NULL).
 */
enum cca_owner cca_desk_owner(struct cca_desk *desk, const char *dialog_id,
                              char ret_operator_id[37]);

/*
 * cca_desk_position - a queued dialog's 1-based position and estimated wait
 * (seconds, -1 when no operator is on shift). False when it is not queued.
 */
bool cca_desk_position(struct cca_desk *desk, const char *dialog_id, size_t *ret_position,
                       double *ret_eta_s);

/*
 * cca_desk_replied - the owning operator answered in @dialog_id at @now_ms:
 * stops the reply timeout. Returns true the first time since the assignment
 * (the first human response), with the seconds since the customer started
 * waiting in @ret_wait_s.
 */
bool cca_desk_replied(struct cca_desk *desk, const char *dialog_id, int64_t now_ms,
                      double *ret_wait_s);

/*
 * cca_desk_take - operator @operator_id pulls queued @dialog_id, or with
 * @dialog_id NULL the first queued dialog they are eligible for (ignoring
 * their status, but never over max_dialogs). Returns CCA_OK with the dialog's
 * id in @ret_dialog_id and the move in @moves; CCA_ERR_NOT_FOUND (unknown
 * operator, or nothing queued for them), CCA_ERR_CONFLICT (@dialog_id is not
 * queued), CCA_ERR_LIMIT (at max_dialogs).
 */
cca_rc cca_desk_take(struct cca_desk *desk, const char *operator_id,
                     const char *dialog_id, int64_t now_ms, char ret_dialog_id[37],
                     struct cca_desk_moves *moves);

/*
 * cca_desk_transfer - @dialog_id, owned by an operator, to @to_operator_id
 * (not offline, with a free seat). Returns CCA_OK, CCA_ERR_NOT_FOUND (no such
 * operator), CCA_ERR_CONFLICT (not owned by an operator, or already theirs),
 * CCA_ERR_LIMIT (no free seat or offline). The seat freed triggers the sweep.
 */
cca_rc cca_desk_transfer(struct cca_desk *desk, const char *dialog_id,
                         const char *to_operator_id, const char *actor, int64_t now_ms,
                         struct cca_desk_moves *moves);

/*
 * cca_desk_release - @dialog_id leaves the human side: handed back to the AI
 * (@handback true: a HANDBACK move) or closed (no move; the operator's last
 * close time and the handle time are recorded). Frees the seat and sweeps.
 * Returns false when the desk did not hold it.
 */
bool cca_desk_release(struct cca_desk *desk, const char *dialog_id, bool handback,
                      const char *reason, const char *actor, int64_t now_ms,
                      struct cca_desk_moves *moves);

/*
 * cca_desk_timeouts - dialogs whose operator has not replied within
 * @timeout_ms of the assignment go back to the head of the queue (reason
 * "reply_timeout") and that operator is set busy (@ret_busy gets their ids,
 * a new array of strings, so the engine records the status); then the sweep.
 */
void cca_desk_timeouts(struct cca_desk *desk, int64_t now_ms, int64_t timeout_ms,
                       struct cca_desk_moves *moves, json_t *ret_busy);

/*
 * cca_desk_visible - may @operator_id see @dialog_id: it is theirs or it is
 * queued.
 */
bool cca_desk_visible(struct cca_desk *desk, const char *dialog_id,
                      const char *operator_id);

/*
 * cca_desk_queue_view - the queue in order: {"length", "items": [{dialog_id,
 * position, waiting_s, priority, language, skill, requeued}]} at @now_ms,
 * at most @limit items. A new reference.
 */
json_t *cca_desk_queue_view(struct cca_desk *desk, int64_t now_ms, size_t limit);

/*
 * cca_desk_positions - call @fn(@ctx, dialog_id, position, eta_s) for every
 * queued dialog in queue order (under the desk's lock: @fn must not call the
 * desk). For live position updates.
 */
void cca_desk_positions(struct cca_desk *desk,
                        void (*fn)(void *ctx, const char *dialog_id, size_t position,
                                   double eta_s),
                        void *ctx);

/* struct cca_desk_stats - for /metrics and health. */
struct cca_desk_stats {
    size_t queued;
    size_t assigned;
    size_t operators[CCA_OPERATOR_STATUS__COUNT];
    size_t seats_free; /* free seats of available operators */
    double mean_handle_s;
};

/* cca_desk_get_stats - fill @ret. */
void cca_desk_get_stats(struct cca_desk *desk, struct cca_desk_stats *ret);

#endif
