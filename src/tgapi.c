/* SPDX-License-Identifier: MIT */
/*
 * The Telegram Bot API protocol as data (tgapi.h): Update and answer parsing,
 * the verdict on an answer, request bodies (JSON and sendDocument's
 * multipart/form-data), message splitting in UTF-16 code units and bot
 * commands. Pure: no I/O, no globals.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/mem.h"
#include "cca/text.h"
#include "cca/tgapi.h"

#define DESCRIPTION_MAX (sizeof(((struct cca_tg_response *)0)->description) - 1)
#define LANG_MAX        (sizeof(((struct cca_tg_update *)0)->language_code) - 1)
#define MALFORMED       "malformed response"

/* ---- names ------------------------------------------------------------------- */

static const char *const media_names[CCA_TG_MEDIA__COUNT] = {
    [CCA_TG_MEDIA_NONE] = "",
    [CCA_TG_MEDIA_PHOTO] = "photo",
    [CCA_TG_MEDIA_DOCUMENT] = "document",
    [CCA_TG_MEDIA_VOICE] = "voice",
    [CCA_TG_MEDIA_AUDIO] = "audio",
    [CCA_TG_MEDIA_VIDEO] = "video",
    [CCA_TG_MEDIA_VIDEO_NOTE] = "video_note",
    [CCA_TG_MEDIA_ANIMATION] = "animation",
    [CCA_TG_MEDIA_STICKER] = "sticker",
    [CCA_TG_MEDIA_CONTACT] = "contact",
    [CCA_TG_MEDIA_LOCATION] = "location",
    [CCA_TG_MEDIA_OTHER] = "other",
};

static const char *const verdict_names[] = {
    [CCA_TG_DONE] = "done",         [CCA_TG_RETRY_AFTER] = "retry_after",
    [CCA_TG_RETRY] = "retry",       [CCA_TG_BLOCKED] = "blocked",
    [CCA_TG_MIGRATED] = "migrated", [CCA_TG_REJECTED] = "rejected",
};

const char *cca_tg_media_name(enum cca_tg_media media)
{
    if ((unsigned)media >= CCA_TG_MEDIA__COUNT)
        return NULL;
    return media_names[media];
}

bool cca_tg_media_parse(const char *name, enum cca_tg_media *ret)
{
    if (name == NULL)
        return false;
    for (unsigned i = 0; i < CCA_TG_MEDIA__COUNT; i++) {
        if (strcmp(name, media_names[i]) == 0) {
            *ret = (enum cca_tg_media)i;
            return true;
        }
    }
    return false;
}

const char *cca_tg_verdict_name(enum cca_tg_verdict v)
{
    if ((unsigned)v >= CCA_ARRAY_SIZE(verdict_names))
        return "unknown";
    return verdict_names[v];
}

/* ---- UTF-8 helpers ----------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_cont(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

/* The bytes a UTF-8 sequence led by @c takes (1 for a byte that leads none). */
static size_t seq_len(unsigned char c)
{
    if (c >= 0xF0)
        return 4;
    if (c >= 0xE0)
        return 3;
    if (c >= 0xC0)
        return 2;
    return 1;
}

/*
 * A copy of @s[0..len) with every byte that does not start a well-formed UTF-8
 * sequence replaced by U+FFFD, at most @cap bytes (cut on a code point
 * boundary); its length in *ret_len. New.
 */
static char *utf8_sanitize(const char *s, size_t len, size_t cap, size_t *ret_len)
{
    char *out = cca_xmalloc(len * 3 + 1);
    size_t n = 0;

    for (size_t i = 0; i < len;) {
        size_t k = seq_len((unsigned char)s[i]);

        if (i + k <= len && cca_text_is_utf8(s + i, k)) {
            memcpy(out + n, s + i, k);
            n += k;
            i += k;
        } else {
            memcpy(out + n, "\xEF\xBF\xBD", 3);
            n += 3;
            i++;
        }
    }
    n = cca_text_utf8_cut(out, n, cap);
    out[n] = '\0';
    *ret_len = n;
    return out;
}

/*
 * A JSON string of the C string @s (NULL reads as ""), at most @cap bytes,
 * bytes that are not UTF-8 replaced by U+FFFD. New, never NULL.
 */
static json_t *jstr_cap(const char *s, size_t cap)
{
    size_t len = s != NULL ? strlen(s) : 0;
    size_t n;
    char *clean;
    json_t *j;

    if (len == 0)
        return json_string("");
    if (cca_text_is_utf8(s, len))
        return json_stringn(s, cca_text_utf8_cut(s, len, cap));
    clean = utf8_sanitize(s, len, cap, &n);
    j = json_stringn(clean, n);
    free(clean);
    return j;
}

static json_t *jstr(const char *s)
{
    return jstr_cap(s, SIZE_MAX);
}

/* ---- updates ----------------------------------------------------------------- */

void cca_tg_update_cleanup(struct cca_tg_update *u)
{
    if (u == NULL)
        return;
    free(u->first_name);
    free(u->last_name);
    free(u->username);
    free(u->text);
    free(u->file_id);
    free(u->caption);
    free(u->callback_id);
    free(u->callback_data);
    memset(u, 0, sizeof(*u));
}

/* The string @v cut to @cap bytes on a code point boundary (new), NULL if not a string.
 */
static char *dup_capped(json_t *v, size_t cap)
{
    const char *s = json_string_value(v);

    if (s == NULL)
        return NULL;
    return cca_xstrndup(s, cca_text_utf8_cut(s, strlen(s), cap));
}

static bool get_int(json_t *obj, const char *key, int64_t *ret)
{
    json_t *v = json_object_get(obj, key);

    if (!json_is_integer(v))
        return false;
    *ret = (int64_t)json_integer_value(v);
    return true;
}

/* The sender (a User object) into @u; false when @from is not one. */
static bool parse_user(json_t *from, struct cca_tg_update *u)
{
    const char *lang;

    if (!json_is_object(from) || !get_int(from, "id", &u->user_id))
        return false;
    u->is_bot = json_is_true(json_object_get(from, "is_bot"));
    u->first_name = dup_capped(json_object_get(from, "first_name"), CCA_TG_NAME_MAX);
    u->last_name = dup_capped(json_object_get(from, "last_name"), CCA_TG_NAME_MAX);
    u->username = dup_capped(json_object_get(from, "username"), CCA_TG_NAME_MAX);
    lang = json_string_value(json_object_get(from, "language_code"));
    if (lang != NULL) {
        size_t n = cca_text_utf8_cut(lang, strlen(lang), LANG_MAX);

        memcpy(u->language_code, lang, n);
        u->language_code[n] = '\0';
    }
    return true;
}

/* The chat and message ids of the Message @msg into @u; false when it has none. */
static bool parse_where(json_t *msg, struct cca_tg_update *u)
{
    json_t *chat = json_object_get(msg, "chat");
    const char *type;

    if (!json_is_object(msg) || !json_is_object(chat) ||
        !get_int(chat, "id", &u->chat_id))
        return false;
    type = json_string_value(json_object_get(chat, "type"));
    u->chat_private = type != NULL && strcmp(type, "private") == 0;
    (void)get_int(msg, "message_id", &u->message_id);
    (void)get_int(msg, "date", &u->date);
    return true;
}

/* Message fields whose value carries a file_id, in the order they are looked at. */
static const struct {
    const char *field;
    enum cca_tg_media media;
} file_media[] = {
    /* animation first: such a message also has "document" (Bot API, Message). */
    {"animation", CCA_TG_MEDIA_ANIMATION}, {"document", CCA_TG_MEDIA_DOCUMENT},
    {"voice", CCA_TG_MEDIA_VOICE},         {"audio", CCA_TG_MEDIA_AUDIO},
    {"video", CCA_TG_MEDIA_VIDEO},         {"video_note", CCA_TG_MEDIA_VIDEO_NOTE},
    {"sticker", CCA_TG_MEDIA_STICKER},
};

static void parse_media(json_t *msg, struct cca_tg_update *u)
{
    json_t *photo = json_object_get(msg, "photo");
    json_t *contact = json_object_get(msg, "contact");
    json_t *loc = json_object_get(msg, "location");

    u->caption = dup_capped(json_object_get(msg, "caption"), 4 * CCA_TG_CAPTION_MAX);
    if (json_is_array(photo)) {
        /* PhotoSizes come smallest first: the last one is the largest. */
        u->media = CCA_TG_MEDIA_PHOTO;
        for (size_t i = json_array_size(photo); i > 0 && u->file_id == NULL; i--)
            u->file_id =
                dup_capped(json_object_get(json_array_get(photo, i - 1), "file_id"),
                           CCA_TG_FILE_ID_MAX);
        return;
    }
    for (size_t i = 0; i < CCA_ARRAY_SIZE(file_media); i++) {
        json_t *m = json_object_get(msg, file_media[i].field);

        if (json_is_object(m)) {
            u->media = file_media[i].media;
            u->file_id = dup_capped(json_object_get(m, "file_id"), CCA_TG_FILE_ID_MAX);
            return;
        }
    }
    if (json_is_object(contact)) {
        u->media = CCA_TG_MEDIA_CONTACT;
        free(u->caption);
        u->caption =
            dup_capped(json_object_get(contact, "phone_number"), 4 * CCA_TG_CAPTION_MAX);
        return;
    }
    if (json_is_object(loc)) {
        json_t *lat = json_object_get(loc, "latitude");
        json_t *lon = json_object_get(loc, "longitude");
        char buf[64];

        u->media = CCA_TG_MEDIA_LOCATION;
        free(u->caption);
        u->caption = NULL;
        if (json_is_number(lat) && json_is_number(lon) && json_number_value(lat) >= -90 &&
            json_number_value(lat) <= 90 && json_number_value(lon) >= -180 &&
            json_number_value(lon) <= 180) {
            snprintf(buf, sizeof(buf), "%.6f,%.6f", json_number_value(lat),
                     json_number_value(lon));
            u->caption = cca_xstrdup(buf);
        }
        return;
    }
    u->media = u->text != NULL ? CCA_TG_MEDIA_NONE : CCA_TG_MEDIA_OTHER;
}

/* Drop everything but update_id (and a callback's id, so it can be answered). */
static void make_other(struct cca_tg_update *u)
{
    int64_t id = u->update_id;
    char *cb = u->callback_id;

    u->callback_id = NULL;
    cca_tg_update_cleanup(u);
    u->update_id = id;
    u->kind = CCA_TG_OTHER;
    u->callback_id = cb;
}

cca_rc cca_tg_update_parse(json_t *obj, struct cca_tg_update *ret,
                           struct cca_error *reterr)
{
    json_t *msg;
    json_t *cb;
    int64_t edit_date;

    memset(ret, 0, sizeof(*ret));
    ret->kind = CCA_TG_OTHER;
    if (!json_is_object(obj))
        return cca_error_set(reterr, CCA_ERR_INVALID, "an update is not an object");
    if (!get_int(obj, "update_id", &ret->update_id) || ret->update_id <= 0) {
        ret->update_id = 0;
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "an update has no positive integer update_id");
    }

    if ((msg = json_object_get(obj, "message")) != NULL ||
        (msg = json_object_get(obj, "edited_message")) != NULL) {
        ret->kind =
            json_object_get(obj, "message") != NULL ? CCA_TG_MESSAGE : CCA_TG_EDITED;
        if (!parse_where(msg, ret) || !parse_user(json_object_get(msg, "from"), ret)) {
            make_other(ret);
            return CCA_OK;
        }
        if (ret->kind == CCA_TG_EDITED && get_int(msg, "edit_date", &edit_date))
            ret->date = edit_date;
        ret->text = dup_capped(json_object_get(msg, "text"), 4 * CCA_TG_TEXT_MAX);
        parse_media(msg, ret);
        return CCA_OK;
    }

    cb = json_object_get(obj, "callback_query");
    if (json_is_object(cb)) {
        ret->kind = CCA_TG_CALLBACK;
        ret->callback_id = dup_capped(json_object_get(cb, "id"), CCA_TG_FILE_ID_MAX);
        ret->callback_data = dup_capped(json_object_get(cb, "data"), CCA_TG_CALLBACK_MAX);
        if (ret->callback_id == NULL || !parse_user(json_object_get(cb, "from"), ret) ||
            !parse_where(json_object_get(cb, "message"), ret))
            make_other(ret);
        return CCA_OK;
    }
    return CCA_OK;
}

/* ---- answers ----------------------------------------------------------------- */

void cca_tg_response_cleanup(struct cca_tg_response *r)
{
    if (r == NULL)
        return;
    json_decref(r->result);
    memset(r, 0, sizeof(*r));
}

static void set_description(struct cca_tg_response *r, const char *s)
{
    size_t n = cca_text_utf8_cut(s, strlen(s), DESCRIPTION_MAX);

    memcpy(r->description, s, n);
    r->description[n] = '\0';
}

void cca_tg_response_parse(const char *body, size_t len, long http_status,
                           struct cca_tg_response *ret)
{
    json_error_t jerr;
    json_t *doc = NULL;
    json_t *ok;
    json_t *params;
    const char *desc;

    memset(ret, 0, sizeof(*ret));
    if (body != NULL && len > 0)
        doc = json_loadb(body, len, 0, &jerr);
    ok = json_object_get(doc, "ok");
    if (!json_is_boolean(ok)) {
        ret->error_code = http_status >= 200 && http_status <= 299 ? 502 : http_status;
        set_description(ret, MALFORMED);
        goto out;
    }
    if (json_is_true(ok)) {
        ret->ok = true;
        ret->result = json_incref(json_object_get(doc, "result"));
        goto out;
    }
    if (json_is_integer(json_object_get(doc, "error_code")))
        ret->error_code = (long)json_integer_value(json_object_get(doc, "error_code"));
    else
        ret->error_code = http_status;
    desc = json_string_value(json_object_get(doc, "description"));
    if (desc != NULL)
        set_description(ret, desc);
    params = json_object_get(doc, "parameters");
    if (get_int(params, "retry_after", &ret->retry_after_s) && ret->retry_after_s < 0)
        ret->retry_after_s = 0;
    (void)get_int(params, "migrate_to_chat_id", &ret->migrate_to_chat_id);
out:
    json_decref(doc);
}

enum cca_tg_verdict cca_tg_classify(const struct cca_tg_response *r)
{
    if (r == NULL)
        return CCA_TG_RETRY;
    if (r->ok)
        return CCA_TG_DONE;
    if (strcmp(r->description, MALFORMED) == 0)
        return CCA_TG_RETRY;
    if (r->error_code == 429)
        return CCA_TG_RETRY_AFTER;
    if (r->error_code >= 500)
        return CCA_TG_RETRY;
    if (r->error_code == 403)
        return CCA_TG_BLOCKED;
    if (r->error_code == 400 && r->migrate_to_chat_id != 0)
        return CCA_TG_MIGRATED;
    if (r->error_code >= 400)
        return CCA_TG_REJECTED;
    return CCA_TG_RETRY; /* no error code we know: as a malformed answer */
}

/* ---- URLs and tokens --------------------------------------------------------- */

/* True when @s is not empty and has no byte <= 0x20 (whitespace, controls) nor DEL. */
static bool url_safe(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7F)
            return false;
    }
    return true;
}

static bool token_ok(const char *s)
{
    return url_safe(s) && strpbrk(s, "/?#%\\") == NULL;
}

static bool method_ok(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    }
    return true;
}

cca_rc cca_tg_method_url(const char *base, const char *token, const char *method,
                         char *buf, size_t size)
{
    size_t blen;
    int n;

    if (buf != NULL && size > 0)
        buf[0] = '\0';
    if (buf == NULL || size == 0 || !url_safe(base) || !token_ok(token) ||
        !method_ok(method))
        return CCA_ERR_INVALID;
    blen = strlen(base);
    if (base[blen - 1] == '/')
        blen--;
    if (blen == 0 || blen > INT32_MAX)
        return CCA_ERR_INVALID;
    n = snprintf(buf, size, "%.*s/bot%s/%s", (int)blen, base, token, method);
    if (n < 0 || (size_t)n >= size) {
        buf[0] = '\0';
        return CCA_ERR_INVALID;
    }
    return CCA_OK;
}

int64_t cca_tg_bot_id(const char *token)
{
    uint64_t v = 0;
    size_t i = 0;

    if (token == NULL)
        return 0;
    for (; token[i] >= '0' && token[i] <= '9'; i++) {
        if (i == 20)
            return 0;
        uint64_t d = (uint64_t)(token[i] - '0');

        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (i == 0 || token[i] != ':')
        return 0;
    return (int64_t)v;
}

/* ---- request bodies ---------------------------------------------------------- */

static json_t *allowed_updates(void)
{
    return json_pack("[sss]", "message", "edited_message", "callback_query");
}

/* obj[key] = @v (stolen); @v is never NULL here (jstr & co, json_pack abort on OOM). */
static void put(json_t *obj, const char *key, json_t *v)
{
    (void)json_object_set_new(obj, key, v);
}

json_t *cca_tg_get_updates(int64_t offset, int limit, int timeout_s)
{
    json_t *o = json_object();

    if (limit < 1)
        limit = 1;
    if (limit > CCA_TG_UPDATES_LIMIT)
        limit = CCA_TG_UPDATES_LIMIT;
    if (timeout_s < 0)
        timeout_s = 0;
    if (offset != 0)
        put(o, "offset", json_integer((json_int_t)offset));
    put(o, "limit", json_integer(limit));
    put(o, "timeout", json_integer(timeout_s));
    put(o, "allowed_updates", allowed_updates());
    return o;
}

json_t *cca_tg_send_message(int64_t chat_id, const char *text, bool protect_content,
                            json_t *reply_markup)
{
    json_t *o = json_object();

    put(o, "chat_id", json_integer((json_int_t)chat_id));
    put(o, "text", jstr(text));
    if (protect_content)
        put(o, "protect_content", json_true());
    if (reply_markup != NULL)
        (void)json_object_set(o, "reply_markup", reply_markup);
    return o;
}

json_t *cca_tg_copy_message(int64_t chat_id, int64_t from_chat_id, int64_t message_id,
                            const char *caption, bool protect_content,
                            json_t *reply_markup)
{
    json_t *o = json_object();

    put(o, "chat_id", json_integer((json_int_t)chat_id));
    put(o, "from_chat_id", json_integer((json_int_t)from_chat_id));
    put(o, "message_id", json_integer((json_int_t)message_id));
    if (caption != NULL)
        put(o, "caption", jstr(caption));
    if (protect_content)
        put(o, "protect_content", json_true());
    if (reply_markup != NULL)
        (void)json_object_set(o, "reply_markup", reply_markup);
    return o;
}

json_t *cca_tg_answer_callback(const char *callback_query_id, const char *text)
{
    json_t *o = json_object();

    put(o, "callback_query_id", jstr(callback_query_id));
    if (text != NULL)
        put(o, "text", jstr(text));
    return o;
}

json_t *cca_tg_delete_message(int64_t chat_id, int64_t message_id)
{
    json_t *o = json_object();

    put(o, "chat_id", json_integer((json_int_t)chat_id));
    put(o, "message_id", json_integer((json_int_t)message_id));
    return o;
}

json_t *cca_tg_edit_markup(int64_t chat_id, int64_t message_id, json_t *reply_markup)
{
    json_t *o = json_object();

    put(o, "chat_id", json_integer((json_int_t)chat_id));
    put(o, "message_id", json_integer((json_int_t)message_id));
    if (reply_markup != NULL)
        (void)json_object_set(o, "reply_markup", reply_markup);
    else
        put(o, "reply_markup", json_pack("{s:[]}", "inline_keyboard"));
    return o;
}

json_t *cca_tg_set_commands(json_t *commands, const char *lang)
{
    json_t *o = json_object();

    if (commands != NULL)
        (void)json_object_set(o, "commands", commands);
    else
        put(o, "commands", json_array());
    if (lang != NULL && lang[0] != '\0')
        put(o, "language_code", jstr(lang));
    return o;
}

json_t *cca_tg_set_webhook(const char *url, const char *secret_token)
{
    json_t *o = json_object();

    put(o, "url", jstr(url));
    if (secret_token != NULL)
        put(o, "secret_token", jstr(secret_token));
    put(o, "allowed_updates", allowed_updates());
    put(o, "drop_pending_updates", json_false());
    return o;
}

json_t *cca_tg_delete_webhook(void)
{
    json_t *o = json_object();

    put(o, "drop_pending_updates", json_false());
    return o;
}

json_t *cca_tg_keyboard(const char *const *texts, const char *const *datas, size_t n,
                        size_t per_row)
{
    json_t *rows = json_array();
    json_t *row = NULL;

    if (per_row == 0)
        per_row = 1;
    for (size_t i = 0; i < n; i++) {
        json_t *button = json_object();

        put(button, "text", jstr(texts != NULL ? texts[i] : NULL));
        put(button, "callback_data",
            jstr_cap(datas != NULL ? datas[i] : NULL, CCA_TG_CALLBACK_MAX));
        if (row == NULL) {
            row = json_array();
            (void)json_array_append_new(rows, row);
        }
        (void)json_array_append_new(row, button);
        if (json_array_size(row) == per_row)
            row = NULL;
    }
    return json_pack("{s:o}", "inline_keyboard", rows);
}

/* ---- multipart/form-data ----------------------------------------------------- */

struct mbuf {
    char *data;
    size_t len;
    size_t cap;
};

static void mb_add(struct mbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = cca_xrealloc(b->data, b->cap);
    }
    if (n > 0)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void mb_str(struct mbuf *b, const char *s)
{
    mb_add(b, s, strlen(s));
}

/* "--<boundary>\r\nContent-Disposition: form-data; name="<name>"" */
static void mb_part(struct mbuf *b, const char *boundary, const char *name)
{
    mb_str(b, "--");
    mb_str(b, boundary);
    mb_str(b, "\r\nContent-Disposition: form-data; name=\"");
    mb_str(b, name);
    mb_str(b, "\"");
}

static void mb_field(struct mbuf *b, const char *boundary, const char *name,
                     const char *value)
{
    mb_part(b, boundary, name);
    mb_str(b, "\r\n\r\n");
    mb_str(b, value);
    mb_str(b, "\r\n");
}

/* RFC 2046 5.1.1 bchars, without the space (a boundary may not end with one). */
static bool boundary_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n < 1 || n > 70)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
              (c >= 'a' && c <= 'z') || strchr("'()+_,-./:=?", c) != NULL))
            return false;
    }
    return true;
}

/* A media type we can put on a header line: printable ASCII, no quote. */
static bool mime_ok(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7F || *s == '"')
            return false;
    }
    return true;
}

char *cca_tg_document_body(int64_t chat_id, const char *filename, const char *mime,
                           const char *data, size_t len, const char *caption,
                           bool protect_content, const char *boundary, size_t *ret_len)
{
    struct mbuf b = {0};
    char num[32];
    size_t start;

    if (!boundary_ok(boundary) || (len > 0 && data == NULL))
        return NULL;
    if (len > 0 && memmem(data, len, boundary, strlen(boundary)) != NULL)
        return NULL;
    if (caption != NULL && strstr(caption, boundary) != NULL)
        return NULL;

    snprintf(num, sizeof(num), "%" PRId64, chat_id);
    mb_field(&b, boundary, "chat_id", num);
    if (caption != NULL)
        mb_field(&b, boundary, "caption", caption);
    if (protect_content)
        mb_field(&b, boundary, "protect_content", "true");
    mb_part(&b, boundary, "document");
    mb_str(&b, "; filename=\"");
    start = b.len;
    mb_str(&b, filename != NULL && filename[0] != '\0' ? filename : "file");
    for (size_t i = start; i < b.len; i++) {
        if (b.data[i] == '"' || b.data[i] == '\r' || b.data[i] == '\n' ||
            b.data[i] == '\\')
            b.data[i] = '_';
    }
    mb_str(&b, "\"\r\nContent-Type: ");
    mb_str(&b, mime_ok(mime) ? mime : "application/octet-stream");
    mb_str(&b, "\r\n\r\n");
    mb_add(&b, data, len);
    mb_str(&b, "\r\n--");
    mb_str(&b, boundary);
    mb_str(&b, "--\r\n");
    *ret_len = b.len;
    return b.data;
}

/* ---- splitting --------------------------------------------------------------- */

size_t cca_tg_utf16_len(const char *s, size_t len)
{
    size_t units = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!is_cont((char)c))
            units += c >= 0xF0 ? 2 : 1;
    }
    return units;
}

/*
 * The end of the longest prefix of @text[pos..len) on a code point boundary
 * that is at most @max units.
 */
static size_t fit_end(const char *text, size_t len, size_t pos, size_t max)
{
    size_t units = 0;
    size_t i = pos;

    while (i < len) {
        size_t k = seq_len((unsigned char)text[i]);
        size_t u = k == 4 ? 2 : 1;
        size_t j = i + 1;

        while (j < len && j < i + k && is_cont(text[j]))
            j++;
        if (units + u > max)
            break;
        units += u;
        i = j;
    }
    return i;
}

/*
 * Where to cut the piece that starts at @pos (not whitespace) and must end by
 * @end (< @limit, the end of the text left): the start of the last "\n\n",
 * else "\n", else whitespace in (pos, end]; else @end.
 */
static size_t find_cut(const char *text, size_t limit, size_t pos, size_t end)
{
    for (size_t i = end; i > pos; i--) {
        if (i + 1 < limit && text[i] == '\n' && text[i + 1] == '\n')
            return i;
    }
    for (size_t i = end; i > pos; i--) {
        if (text[i] == '\n')
            return i;
    }
    for (size_t i = end; i > pos; i--) {
        if (is_space(text[i]))
            return i;
    }
    return end;
}

static size_t add_piece(size_t n, size_t off, size_t len, size_t *offs, size_t *lens,
                        size_t max)
{
    if (n < max) {
        offs[n] = off;
        lens[n] = len;
    }
    return n + 1;
}

size_t cca_tg_split(const char *text, size_t len, size_t max_units, size_t *offs,
                    size_t *lens, size_t max)
{
    size_t n = 0;
    size_t pos = 0;
    size_t end = len;

    if (len == 0)
        return 0;
    if (max_units < 2)
        max_units = 2;
    if (cca_tg_utf16_len(text, len) <= max_units)
        return add_piece(0, 0, len, offs, lens, max);

    /* Too long: whitespace at the text's ends is dropped like that at a cut. */
    while (pos < len && is_space(text[pos]))
        pos++;
    while (end > pos && is_space(text[end - 1]))
        end--;
    if (pos == end) /* all whitespace */
        return add_piece(0, 0, fit_end(text, len, 0, max_units), offs, lens, max);

    while (pos < end) {
        size_t fit = fit_end(text, end, pos, max_units);
        size_t cut;
        size_t stop;

        if (fit == end)
            return add_piece(n, pos, end - pos, offs, lens, max);
        cut = find_cut(text, end, pos, fit);
        stop = cut;
        while (stop > pos && is_space(text[stop - 1]))
            stop--;
        n = add_piece(n, pos, stop - pos, offs, lens, max);
        pos = cut;
        while (pos < end && is_space(text[pos]))
            pos++;
    }
    return n;
}

/* ---- commands ---------------------------------------------------------------- */

static bool is_word(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

bool cca_tg_command(const char *text, const char *bot_username, char *name,
                    const char **ret_args)
{
    char buf[CCA_TG_COMMAND_MAX + 1];
    const char *p;
    size_t n = 0;

    if (text == NULL || text[0] != '/')
        return false;
    for (p = text + 1; is_word(*p); p++) {
        if (n == CCA_TG_COMMAND_MAX)
            return false;
        buf[n++] = lower(*p);
    }
    if (n == 0)
        return false;
    buf[n] = '\0';
    if (*p == '@') {
        const char *bot = ++p;
        const char *want = bot_username;

        while (is_word(*p))
            p++;
        if (p == bot)
            return false;
        if (want != NULL && want[0] == '@')
            want++;
        if (want != NULL) {
            size_t k = (size_t)(p - bot);

            if (strlen(want) != k)
                return false;
            for (size_t i = 0; i < k; i++) {
                if (lower(bot[i]) != lower(want[i]))
                    return false;
            }
        }
    }
    if (*p != '\0' && !is_space(*p))
        return false;
    while (is_space(*p))
        p++;
    memcpy(name, buf, n + 1);
    if (ret_args != NULL)
        *ret_args = p;
    return true;
}
