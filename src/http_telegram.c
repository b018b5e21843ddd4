/* SPDX-License-Identifier: MIT */
/*
 * POST /api/v1/telegram/webhook: Telegram delivers one Update (webhook mode,
 * docs/TELEGRAM.md). The answer waits until the channel has handled it
 * durably: a 200 tells Telegram it may forget the update, anything else makes
 * it deliver the update again (Bot API "setWebhook").
 */
#include <microhttpd.h>

#include "cca/telegram.h"
#include "http_int.h"

struct webhook {
    struct cca_telegram *tg;
    const char *secret;
    const char *body;
    size_t len;
};

static cca_rc start(void *arg, cca_engine_done_fn done, void *ctx, struct cca_error *err)
{
    struct webhook *w = arg;

    return cca_telegram_webhook(w->tg, w->secret, w->body, w->len, done, ctx, err);
}

void cca_http_handle_telegram_webhook(struct cca_http_request *r)
{
    struct webhook w = {
        .tg = r->http->telegram,
        .secret = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                              "X-Telegram-Bot-Api-Secret-Token"),
        .body = r->body,
        .len = r->body_len,
    };

    cca_http_async(r, start, &w);
}
