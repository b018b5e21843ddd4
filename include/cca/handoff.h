/* SPDX-License-Identifier: MIT */
#ifndef CCA_HANDOFF_H
#define CCA_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/desk.h"
#include "cca/dialog.h"
#include "cca/text.h"

/*
 * The human side's document work (docs/OPERATORS.md): when a customer asks
 * for a person, what the customer is told in their language, and how a desk
 * move (desk.h) becomes a change of the dialog document plus the live events
 * (events.h) to publish once that change is durable. Pure functions on
 * copy-on-write documents; thread-safe.
 */

/*
 * cca_handoff_wants_human - does @text[0..len) (UTF-8) ask for a person:
 * "позовите оператора", "живой человек", "talk to a human", "real person",
 * "agent please", or a message that is only "оператор" / "operator" /
 * "human". Phrases are matched on stems (cca_text_analyze), so inflected
 * forms count. Invalid UTF-8: false.
 */
bool cca_handoff_wants_human(const char *text, size_t len);

/* enum cca_handoff_trigger - the HUMAN_HANDOFF list (bits). */
enum cca_handoff_trigger {
    CCA_HANDOFF_REQUEST = 1,    /* the customer asks for a person */
    CCA_HANDOFF_SUPERVISOR = 2, /* a turn routed to the supervisor agent */
    CCA_HANDOFF_DEGRADED = 4,   /* the LLM failed for the turn */
};

/*
 * cca_handoff_parse_triggers - "request,supervisor,degraded" (any subset,
 * spaces ignored, "" or "none" for none) into a bit set. Returns CCA_OK, or
 * CCA_ERR_INVALID naming the unknown entry.
 */
cca_rc cca_handoff_parse_triggers(const char *csv, unsigned *ret,
                                  struct cca_error *reterr);

/*
 * cca_handoff_dialog_lang - the customer's language of @doc ("language", else
 * detected from the last customer message, else Russian).
 */
enum cca_lang cca_handoff_dialog_lang(json_t *doc);

/*
 * cca_handoff_need - what @doc asks of an operator: its language, the current
 * agent as skill (none: any), its priority.
 */
struct cca_desk_need cca_handoff_need(json_t *doc);

/*
 * cca_handoff_events_add - append {topic, type, data (stolen)} to @events (an
 * array), for publishing after the commit.
 */
void cca_handoff_events_add(json_t *events, const char *topic_kind, const char *id,
                            const char *type, json_t *data);

/*
 * cca_handoff_apply - @doc (borrowed) with move @m recorded: the transition,
 * and a system message to the customer in their language (queue position
 * and wait, operator joined, back in the queue, transferred, back with the
 * assistant). The events of the move are appended to @events: "owner" to the
 * dialog, "assigned" / "unassigned" to the operators concerned, the notice's
 * "message" (queue lengths and positions are the engine's, coalesced).
 * Returns a new reference.
 */
json_t *cca_handoff_apply(json_t *doc, const struct cca_desk_move *m, json_t *events);

/*
 * cca_handoff_notice - the system message texts that are not moves, in @lang
 * (static strings with printf %zu / %s slots as documented):
 * "full" (no operator can take it), "position" (%zu: still in the queue),
 * "closing" (closed, thanks), "csat" (rate 1-5).
 */
const char *cca_handoff_notice(const char *what, enum cca_lang lang);

/*
 * cca_handoff_with_system - @doc plus a system message of @kind with @text
 * (a new message id), and its "message" event in @events. A new reference.
 */
json_t *cca_handoff_with_system(json_t *doc, const char *kind, const char *text,
                                int64_t now_ms, json_t *events);

/*
 * cca_handoff_message_event - the "message" event of message @msg (borrowed)
 * of dialog @dialog_id to the dialog's stream and, when @operator_id is not
 * NULL, to that operator's stream.
 */
void cca_handoff_message_event(json_t *events, const char *dialog_id, json_t *msg,
                               const char *operator_id);

#endif
