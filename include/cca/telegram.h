/* SPDX-License-Identifier: MIT */
#ifndef CCA_TELEGRAM_H
#define CCA_TELEGRAM_H

#include <stdio.h>

#include "cca/common.h"
#include "cca/config.h"
#include "cca/engine.h"
#include "cca/fetch.h"

/*
 * The Telegram channel (docs/TELEGRAM.md): customers chat with the bot,
 * operators work from Telegram, over the Bot API (tgapi.h) on a lane of the
 * shared asynchronous HTTP client (fetch.h). It runs on a thread of its own
 * and is a client of the engine like the HTTP layer: every change is an
 * engine operation; it never touches another module's state.
 *
 * In: getUpdates long polling (TELEGRAM_POLL_TIMEOUT_S, 50 s). A batch of
 * updates is processed in order per chat (chats in parallel), each one as
 * engine operations whose Idempotency-Key is "tg:<update_id>"; only when the
 * whole batch is durable is the next offset asked for (and stored in the
 * "telegram" collection within 500 ms). A SIGKILL anywhere re-reads at most
 * the updates Telegram has not seen confirmed, and the keys make their
 * second processing a replay: no update is lost or handled twice.
 *
 * Out: the dialog documents are the outbox. The engine tells the channel of
 * every committed dialog (cca_engine_set_observer); the channel sends what a
 * document holds beyond its delivery cursor (per dialog, in the "telegram"
 * collection): to the customer's chat every message that is not the
 * customer's (AI, operator, system notices) and the rating question after
 * the close; to a Telegram operator who owns the dialog its assignment card
 * and the customer's messages (copyMessage for media, seed 002). A cursor
 * moves, and is stored, only after the Bot API confirmed the send, so a
 * SIGKILL before that sends again (at least once; what repeats is what was
 * sent after the dialog's oldest unconfirmed send, docs/TELEGRAM.md). Sends keep the Bot
 * API's limits (tgsend.h); a 403 from a customer marks them unreachable and drops their
 * sends; from an operator, sets them offline (their dialogs are requeued).
 *
 * The bot token is a secret: it appears only in request URLs, which are
 * never logged; log lines name the bot by its id (cca_tg_bot_id).
 */

struct cca_telegram;

/*
 * struct cca_telegram_params - what the channel works with (all borrowed;
 * each must outlive the channel).
 * @cfg:    TELEGRAM_* settings (config.h), OPERATOR_SECRET and OPERATOR_PINS.
 * @engine: dialogs, operators, profiles and the channel's own collection.
 * @fetch:  the shared HTTP client; the channel opens a lane on it.
 */
struct cca_telegram_params {
    const struct cca_config *cfg;
    struct cca_engine *engine;
    struct cca_fetch *fetch;
};

/*
 * cca_telegram_new - start the channel when TELEGRAM_BOT_TOKEN is set: its
 * thread asks getMe (for the log; again every 5 s until it answers), sets
 * the webhook or deletes any (webhook mode or polling), registers the
 * commands (setMyCommands: customers' in ru and en, every command in each
 * operator's chat), resumes the sends a previous run left undelivered, then
 * polls (unless in webhook mode). Returns CCA_OK with a new channel in *ret (NULL
 * when no token is set: the channel does not exist), or CCA_ERR_INVALID for a
 * malformed token or base URL, CCA_ERR_INTERNAL when the thread or the lane
 * cannot start; detail in @reterr. Call after cca_engine_new.
 */
cca_rc cca_telegram_new(const struct cca_telegram_params *params,
                        struct cca_telegram **ret, struct cca_error *reterr) CCA_WUR;

/*
 * cca_telegram_stop - stop polling and sending: the poll in flight is
 * cancelled (its updates, if any, are asked for again by the next run), the
 * sends in flight are let finish for up to @deadline_ms (monotonic), the
 * rest stays in the outbox for the next run. Detaches from the engine. Call
 * before cca_engine_drain. Accepts NULL.
 */
void cca_telegram_stop(struct cca_telegram *tg, int64_t deadline_ms);

/*
 * cca_telegram_webhook - one Update that Telegram POSTed to
 * POST /api/v1/telegram/webhook (webhook mode: TELEGRAM_WEBHOOK_URL is set, and
 * the channel called setWebhook with that URL and a secret_token derived from
 * the bot token; Bot API "setWebhook").
 * @secret: the X-Telegram-Bot-Api-Secret-Token header (NULL when absent),
 *          compared in constant time (cca_operator_secret_equal).
 * @body[0..len): the Update (JSON); borrowed for the call.
 * Returns CCA_OK, and later calls @done(@ctx, rc, result, err) exactly once,
 * from the channel's thread, when the update is handled and its change is
 * durable: CCA_OK with an empty object (Telegram's 200), or
 * CCA_ERR_UNAVAILABLE after a transient failure (a 503: Telegram delivers it
 * again, and the "tg:<update_id>" keys make that a replay). Without calling
 * @done: CCA_ERR_NOT_FOUND when @tg is NULL or polls, CCA_ERR_FORBIDDEN for a
 * wrong or missing secret, CCA_ERR_PARSE / CCA_ERR_INVALID when @body is not
 * an Update, CCA_ERR_UNAVAILABLE when stopping; detail in @reterr.
 * Thread-safe.
 */
cca_rc cca_telegram_webhook(struct cca_telegram *tg, const char *secret, const char *body,
                            size_t len, cca_engine_done_fn done, void *ctx,
                            struct cca_error *reterr) CCA_WUR;

/* cca_telegram_free - free a stopped channel (stops it first if needed). Accepts NULL. */
void cca_telegram_free(struct cca_telegram *tg);

/*
 * cca_telegram_render_metrics - the channel's Prometheus families
 * (cca_telegram_*: updates by kind, replays, sends by method and verdict,
 * outbox size, relay latency) to @out. Accepts NULL (writes nothing).
 * Thread-safe.
 */
void cca_telegram_render_metrics(struct cca_telegram *tg, FILE *out);

#endif
