/* SPDX-License-Identifier: MIT */
#ifndef CCA_TGAPI_H
#define CCA_TGAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"

/*
 * The Telegram Bot API protocol, as data: parse what the Bot API returns and
 * build what we send to it. Source: the Bot API reference,
 * https://core.telegram.org/bots/api ("Making requests", "Getting updates",
 * "Available types", "Available methods", "Updating messages"). Pure: no I/O,
 * no globals; every function is thread-safe. The transport (fetch.c) and the
 * channel's state (telegram.c) live elsewhere.
 *
 * Requests are JSON bodies (Content-Type: application/json) POSTed to
 * <base>/bot<token>/<method>, except sendDocument, which uploads a file as
 * multipart/form-data (RFC 7578). The URL holds the bot token: it is a secret
 * and is never logged (cca_tg_bot_id gives the part that may be).
 */

#define CCA_TG_TEXT_MAX      4096 /* UTF-16 code units of a message text (sendMessage) */
#define CCA_TG_CAPTION_MAX   1024 /* UTF-16 code units of a caption */
#define CCA_TG_CALLBACK_MAX  64   /* bytes of callback_data (InlineKeyboardButton) */
#define CCA_TG_NAME_MAX      256  /* bytes kept of a user's first/last/user name */
#define CCA_TG_FILE_ID_MAX   256  /* bytes kept of a file_id */
#define CCA_TG_COMMAND_MAX   32  /* bytes of a command name ("reply"), BotCommand: 1-32 */
#define CCA_TG_UPDATES_LIMIT 100 /* getUpdates' largest "limit" */

/* What an update carries (Update: message, edited_message, callback_query). */
enum cca_tg_kind {
    CCA_TG_MESSAGE,
    CCA_TG_EDITED,   /* edited_message */
    CCA_TG_CALLBACK, /* callback_query */
    CCA_TG_OTHER,    /* anything else: acknowledged (offset) and ignored */
};

/* The media of a message (Message fields of those names); NONE: text only. */
enum cca_tg_media {
    CCA_TG_MEDIA_NONE,
    CCA_TG_MEDIA_PHOTO, /* the largest PhotoSize's file_id */
    CCA_TG_MEDIA_DOCUMENT,
    CCA_TG_MEDIA_VOICE,
    CCA_TG_MEDIA_AUDIO,
    CCA_TG_MEDIA_VIDEO,
    CCA_TG_MEDIA_VIDEO_NOTE,
    CCA_TG_MEDIA_ANIMATION,
    CCA_TG_MEDIA_STICKER,
    CCA_TG_MEDIA_CONTACT,  /* no file_id */
    CCA_TG_MEDIA_LOCATION, /* no file_id */
    CCA_TG_MEDIA_OTHER,    /* a message with neither text nor a known media field */
    CCA_TG_MEDIA__COUNT,
};

/* cca_tg_media_name - "photo", "document", ..., "other", "" for NONE (static);
 * NULL out of range. */
const char *cca_tg_media_name(enum cca_tg_media media);

/* cca_tg_media_parse - the reverse of cca_tg_media_name; false for anything else. */
bool cca_tg_media_parse(const char *name, enum cca_tg_media *ret);

/*
 * struct cca_tg_update - one Update, flattened. Strings are new (owned by the
 * struct, freed by cca_tg_update_cleanup) or NULL when absent; every string is
 * valid UTF-8 (jansson) and capped as noted (longer ones are cut on a code
 * point boundary).
 * @update_id:     the Update's id (> 0 for anything accepted).
 * @kind:          which field it had.
 * @chat_id:       Message.chat.id (of callback_query.message for a callback).
 * @chat_private:  chat.type is "private".
 * @user_id:       Message.from.id, or callback_query.from.id; 0 when absent.
 * @is_bot:        from.is_bot.
 * @first_name, @last_name, @username: from.*, at most CCA_TG_NAME_MAX bytes.
 * @language_code: from.language_code (IETF tag, at most 15 bytes) or "".
 * @message_id:    Message.message_id (of callback_query.message for a callback).
 * @date:          Message.date (edit_date for an edit), Unix seconds.
 * @text:          Message.text, at most 4 * CCA_TG_TEXT_MAX bytes; NULL if none.
 * @media, @file_id, @caption: the media (see enum); file_id at most
 *                 CCA_TG_FILE_ID_MAX bytes; caption at most 4 * CCA_TG_CAPTION_MAX
 *                 bytes. A contact is @media CONTACT with its phone number in
 *                 @caption; a location has "lat,lon" in @caption ("%.6f,%.6f",
 *                 NULL when out of range). A message with "animation" (which
 *                 also has "document", Bot API) is ANIMATION; a photo's
 *                 file_id is the last (largest) PhotoSize's.
 * @callback_id:   callback_query.id (at most CCA_TG_FILE_ID_MAX bytes);
 *                 @callback_data: its data (at most CCA_TG_CALLBACK_MAX bytes)
 *                 or NULL.
 * A callback_query's @text and @media stay NULL and NONE.
 */
struct cca_tg_update {
    int64_t update_id;
    enum cca_tg_kind kind;
    int64_t chat_id;
    bool chat_private;
    int64_t user_id;
    bool is_bot;
    char *first_name;
    char *last_name;
    char *username;
    char language_code[16];
    int64_t message_id;
    int64_t date;
    char *text;
    enum cca_tg_media media;
    char *file_id;
    char *caption;
    char *callback_id;
    char *callback_data;
};

/* cca_tg_update_cleanup - free @u's strings and zero it. Accepts NULL. */
void cca_tg_update_cleanup(struct cca_tg_update *u);

/*
 * cca_tg_update_parse - flatten the Update object @obj (borrowed) into *ret
 * (zeroed first; cca_tg_update_cleanup it whatever the result).
 * Returns CCA_OK; CCA_ERR_INVALID when @obj is not an object or has no
 * positive integer update_id (detail in @reterr, may be NULL). An Update of
 * a kind we do not handle, or one whose message lacks chat or from, is
 * CCA_OK with @kind CCA_TG_OTHER (its update_id still advances the offset);
 * an OTHER has only @update_id set, and @callback_id when it was a
 * callback_query without from or message (an inline message's: answer it).
 */
cca_rc cca_tg_update_parse(json_t *obj, struct cca_tg_update *ret,
                           struct cca_error *reterr) CCA_WUR;

/*
 * struct cca_tg_response - a Bot API answer ({"ok":..,"result":..} or
 * {"ok":false,"error_code":..,"description":..,"parameters":{..}}).
 * @ok:           "ok" was true.
 * @error_code:   the error's code (0 when ok), else the HTTP status given.
 * @description:  the error's description, at most 255 bytes, "" when none.
 * @retry_after_s: parameters.retry_after in seconds (0 when absent).
 * @migrate_to_chat_id: parameters.migrate_to_chat_id (0 when absent).
 * @result:       "result" (new reference, NULL when absent or not ok).
 */
struct cca_tg_response {
    bool ok;
    long error_code;
    char description[256];
    int64_t retry_after_s;
    int64_t migrate_to_chat_id;
    json_t *result;
};

/* cca_tg_response_cleanup - release @r's result and zero it. Accepts NULL. */
void cca_tg_response_cleanup(struct cca_tg_response *r);

/*
 * cca_tg_response_parse - parse a Bot API answer body @body[0..len) received
 * with HTTP status @http_status into *ret (zeroed first). A body that is not
 * a JSON object with a boolean "ok" (an HTML error page from a proxy, cut
 * JSON) is still answered: ok false, error_code @http_status (or 502 when it
 * was 2xx), description "malformed response". Never fails; @body may be NULL
 * when @len is 0. A negative retry_after reads as 0.
 */
void cca_tg_response_parse(const char *body, size_t len, long http_status,
                           struct cca_tg_response *ret);

/* What a sender should do after an answer (cca_tg_classify). */
enum cca_tg_verdict {
    CCA_TG_DONE,        /* ok */
    CCA_TG_RETRY_AFTER, /* 429: wait retry_after_s, then send again */
    CCA_TG_RETRY,       /* 5xx, a malformed answer, a network error: back off, again */
    CCA_TG_BLOCKED,     /* 403 (blocked by the user, deactivated, kicked): stop for
                           this chat */
    CCA_TG_MIGRATED,    /* 400 with migrate_to_chat_id: the group moved */
    CCA_TG_REJECTED,    /* another 4xx: the request is wrong; retrying cannot help */
};

/*
 * cca_tg_classify - the verdict for @r (parsed by cca_tg_response_parse), or
 * for a transport failure when @r is NULL (CCA_TG_RETRY). A malformed answer
 * (description "malformed response", as the parser writes it) is RETRY
 * whatever its code, and so is an error code below 400.
 */
enum cca_tg_verdict cca_tg_classify(const struct cca_tg_response *r);

/* cca_tg_verdict_name - "done", "retry_after", ... (static; "unknown" out of range). */
const char *cca_tg_verdict_name(enum cca_tg_verdict v);

/*
 * cca_tg_method_url - "<base>/bot<token>/<method>" into @buf (@size bytes;
 * @base without a trailing slash is expected, one is tolerated). The result
 * holds the token: never log it. Returns CCA_OK, or CCA_ERR_INVALID when it
 * does not fit or an argument is empty or holds whitespace or a control
 * character, when the token holds '/', '?', '#', '%' or '\\', or when the
 * method is not [A-Za-z0-9_]+ (then @buf holds "" when @size > 0).
 */
cca_rc cca_tg_method_url(const char *base, const char *token, const char *method,
                         char *buf, size_t size) CCA_WUR;

/*
 * cca_tg_bot_id - the bot's numeric id: the digits before ':' of @token
 * ("123456:ABC..." gives 123456), the only part of a token that may be logged.
 * Returns 0 for a token that does not start with 1..20 digits and ':'.
 */
int64_t cca_tg_bot_id(const char *token);

/*
 * Request bodies. Each returns a new JSON object (the caller dumps it with
 * json_dumps(.., JSON_COMPACT) or hands it to a sender), never NULL. Strings
 * are borrowed and copied (NULL reads as ""; bytes that are not UTF-8 are
 * replaced by U+FFFD). Fields are named as in the Bot API reference.
 *
 * cca_tg_get_updates - getUpdates {offset, limit, timeout, allowed_updates:
 * ["message","edited_message","callback_query"]}; @offset 0 omits it; @limit
 * is kept within 1..CCA_TG_UPDATES_LIMIT, a negative @timeout_s reads as 0.
 */
json_t *cca_tg_get_updates(int64_t offset, int limit, int timeout_s);

/*
 * cca_tg_send_message - sendMessage {chat_id, text, protect_content (when
 * true), reply_markup (when @reply_markup is not NULL: borrowed, copied by
 * reference)}. @text is sent as plain text (no parse_mode): customer words
 * can never become markup. At most CCA_TG_TEXT_MAX UTF-16 units: split longer
 * text first (cca_tg_split).
 */
json_t *cca_tg_send_message(int64_t chat_id, const char *text, bool protect_content,
                            json_t *reply_markup);

/*
 * cca_tg_copy_message - copyMessage {chat_id, from_chat_id, message_id,
 * caption (when not NULL: replaces the original's), protect_content (when
 * true), reply_markup (when not NULL)}.
 */
json_t *cca_tg_copy_message(int64_t chat_id, int64_t from_chat_id, int64_t message_id,
                            const char *caption, bool protect_content,
                            json_t *reply_markup);

/* cca_tg_answer_callback - answerCallbackQuery {callback_query_id, text (if not NULL)}.
 */
json_t *cca_tg_answer_callback(const char *callback_query_id, const char *text);

/* cca_tg_delete_message - deleteMessage {chat_id, message_id}. */
json_t *cca_tg_delete_message(int64_t chat_id, int64_t message_id);

/*
 * cca_tg_edit_markup - editMessageReplyMarkup {chat_id, message_id,
 * reply_markup (NULL: removed, sent as an empty inline keyboard)}.
 */
json_t *cca_tg_edit_markup(int64_t chat_id, int64_t message_id, json_t *reply_markup);

/*
 * cca_tg_set_commands - setMyCommands {commands: @commands (borrowed array of
 * {command, description}, NULL: []), language_code (when @lang is not NULL
 * or "")}. Scope: default (omitted).
 */
json_t *cca_tg_set_commands(json_t *commands, const char *lang);

/*
 * cca_tg_set_webhook - setWebhook {url, secret_token, allowed_updates (as
 * getUpdates), drop_pending_updates: false}; secret_token is omitted when
 * NULL. cca_tg_delete_webhook:
 * deleteWebhook {drop_pending_updates: false}.
 */
json_t *cca_tg_set_webhook(const char *url, const char *secret_token);
json_t *cca_tg_delete_webhook(void);

/*
 * cca_tg_keyboard - an InlineKeyboardMarkup {inline_keyboard: [[{text,
 * callback_data}, ...], ...]} of @n buttons, @per_row (>= 1) to a row;
 * @texts and @datas are borrowed arrays of @n strings (each data at most
 * CCA_TG_CALLBACK_MAX bytes: longer ones are cut on a code point boundary).
 * @per_row 0 reads as 1. New reference.
 */
json_t *cca_tg_keyboard(const char *const *texts, const char *const *datas, size_t n,
                        size_t per_row);

/*
 * cca_tg_document_body - the multipart/form-data body (RFC 7578) of
 * sendDocument: fields chat_id, caption (when not NULL), protect_content
 * (when true), and the file part "document" named @filename (quoted, '"',
 * '\\' and CR/LF replaced by '_'; NULL or "" gives "file") of type @mime
 * (printable ASCII without '"', else application/octet-stream) with
 * @data[0..len) (any bytes).
 * @boundary: 1..70 characters of [0-9A-Za-z'()+_,-./:=?] (RFC 2046 5.1.1)
 * that the caller drew at random (it must not occur in @data); the header to
 * send is "Content-Type: multipart/form-data; boundary=<boundary>".
 * Returns a new buffer (free) and its length in *ret_len, or NULL when
 * @boundary breaks its rule or occurs in @data or @caption.
 */
char *cca_tg_document_body(int64_t chat_id, const char *filename, const char *mime,
                           const char *data, size_t len, const char *caption,
                           bool protect_content, const char *boundary, size_t *ret_len);

/*
 * cca_tg_split - cut @text[0..len) (valid UTF-8) into pieces of at most
 * @max_units UTF-16 code units each (CCA_TG_TEXT_MAX for messages), each cut
 * after the last paragraph break ("\n\n") that fits, else the last line
 * break, else the last space, else on a code point boundary; the whitespace
 * at a cut is dropped and no piece is empty (text that is all whitespace
 * gives one piece: the text itself cut to fit). Whitespace is ASCII (space,
 * \t, \n, \v, \f, \r). Text that fits is one piece, as it is; text that
 * does not also loses the whitespace at its start and end, so every piece
 * then starts and ends with something else. Empty text gives no piece.
 * Writes the pieces' byte
 * offsets and lengths into @offs and @lens (room for @max pieces) and
 * returns the number of pieces there are, which may exceed @max (then only
 * the first @max were written: call again with more room). @max_units >= 2
 * (less reads as 2).
 */
size_t cca_tg_split(const char *text, size_t len, size_t max_units, size_t *offs,
                    size_t *lens, size_t max);

/*
 * cca_tg_utf16_len - the UTF-16 code units of @s[0..len) (valid UTF-8): what
 * the Bot API counts in a text's length.
 */
size_t cca_tg_utf16_len(const char *s, size_t len);

/*
 * cca_tg_command - a bot command (Bot API "Commands"): @text starts with '/'
 * then 1..CCA_TG_COMMAND_MAX of [a-z0-9_] (upper case folded), optionally
 * "@<bot_username>" (compared without case; a command addressed to another
 * bot is not ours: false), then the end of @text or whitespace ("/start-x"
 * is no command). Writes the lower-case name into @name (at least
 * CCA_TG_COMMAND_MAX + 1 bytes) and sets *ret_args (may be NULL) to the rest
 * with leading whitespace skipped (borrowed from @text, "" when none); neither
 * is written on false. Returns false for anything that is not a command of
 * ours. @bot_username may be NULL ("any") and may start with '@'.
 */
bool cca_tg_command(const char *text, const char *bot_username, char *name,
                    const char **ret_args);

#endif
