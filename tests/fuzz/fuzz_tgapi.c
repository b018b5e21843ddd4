/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the Telegram Bot API protocol as data (tgapi.c).
 * Input, read three ways:
 *  - as a Bot API answer body (cca_tg_response_parse, under a few HTTP
 *    statuses); when it is ok with a result array, every element goes through
 *    cca_tg_update_parse, and so does the body itself when it is a JSON object
 *    (a webhook delivers one Update);
 *  - as text, when it is valid UTF-8: cca_tg_utf16_len, cca_tg_split under
 *    several limits, cca_tg_command with and without a bot name;
 *  - as bytes: the text of a sendMessage body and a keyboard button, a
 *    sendDocument file and a bot token.
 * Invariants checked: tgapi.h's contracts. Parsed strings are valid UTF-8
 * within their caps, an accepted update has a positive id, an OTHER carries
 * nothing but ids, a photo's file_id is the last PhotoSize's; an answer's
 * verdict follows its code; split pieces are non-empty, within the limit, in
 * order, on code point boundaries, cover the text but for dropped whitespace,
 * and a hard cut happens only where no whitespace could serve; a command is
 * lower case [a-z0-9_]{1,32}; bodies always dump; the parsed JSON is never
 * changed.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cca/text.h"
#include "cca/tgapi.h"
#include "fuzz.h"

#define BOUNDARY "fUzZ-bOuNdArY-7f3a"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    return 0;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* NULL, or valid UTF-8 of at most @cap bytes. */
static void check_str(const char *s, size_t cap)
{
    size_t n;

    if (s == NULL)
        return;
    n = strlen(s);
    FUZZ_CHECK(n <= cap);
    FUZZ_CHECK(n == 0 || cca_text_is_utf8(s, n));
}

/* ---- updates ----------------------------------------------------------------- */

static void check_update(json_t *obj)
{
    struct cca_tg_update u;
    struct cca_error err = {0};
    json_t *before = json_deep_copy(obj);
    json_t *msg = json_object_get(obj, "message");
    cca_rc rc = cca_tg_update_parse(obj, &u, &err);

    FUZZ_CHECK(json_equal(obj, before)); /* borrowed means unchanged */
    json_decref(before);
    if (rc != CCA_OK) {
        FUZZ_CHECK(rc == CCA_ERR_INVALID && err.code == rc);
        FUZZ_CHECK(u.update_id == 0 && u.text == NULL && u.first_name == NULL);
        cca_tg_update_cleanup(&u);
        return;
    }
    FUZZ_CHECK(u.update_id > 0);
    FUZZ_CHECK((unsigned)u.kind <= CCA_TG_OTHER);
    FUZZ_CHECK((unsigned)u.media < CCA_TG_MEDIA__COUNT);
    check_str(u.first_name, CCA_TG_NAME_MAX);
    check_str(u.last_name, CCA_TG_NAME_MAX);
    check_str(u.username, CCA_TG_NAME_MAX);
    check_str(u.language_code, 15);
    check_str(u.text, 4 * CCA_TG_TEXT_MAX);
    check_str(u.file_id, CCA_TG_FILE_ID_MAX);
    check_str(u.caption, 4 * CCA_TG_CAPTION_MAX);
    check_str(u.callback_id, CCA_TG_FILE_ID_MAX);
    check_str(u.callback_data, CCA_TG_CALLBACK_MAX);
    switch (u.kind) {
        case CCA_TG_OTHER:
            FUZZ_CHECK(u.chat_id == 0 && u.user_id == 0 && u.message_id == 0);
            FUZZ_CHECK(u.first_name == NULL && u.text == NULL && u.file_id == NULL);
            FUZZ_CHECK(u.caption == NULL && u.callback_data == NULL);
            FUZZ_CHECK(u.language_code[0] == '\0' && u.media == CCA_TG_MEDIA_NONE);
            break;
        case CCA_TG_CALLBACK:
            FUZZ_CHECK(u.callback_id != NULL);
            FUZZ_CHECK(u.text == NULL && u.media == CCA_TG_MEDIA_NONE);
            break;
        case CCA_TG_MESSAGE:
        case CCA_TG_EDITED:
            FUZZ_CHECK(u.callback_id == NULL && u.callback_data == NULL);
            FUZZ_CHECK(u.media != CCA_TG_MEDIA_NONE || u.text != NULL);
            FUZZ_CHECK(u.media != CCA_TG_MEDIA_OTHER || u.text == NULL);
            break;
    }
    if (u.media == CCA_TG_MEDIA_CONTACT || u.media == CCA_TG_MEDIA_LOCATION ||
        u.media == CCA_TG_MEDIA_OTHER || u.media == CCA_TG_MEDIA_NONE)
        FUZZ_CHECK(u.file_id == NULL);
    if (u.kind == CCA_TG_MESSAGE && u.media == CCA_TG_MEDIA_PHOTO) {
        json_t *photo = json_object_get(msg, "photo");
        size_t n = json_array_size(photo);
        const char *last = json_string_value(
            json_object_get(json_array_get(photo, n > 0 ? n - 1 : 0), "file_id"));

        FUZZ_CHECK(json_is_array(photo));
        /* The largest size's id, capped (so a prefix of it). */
        if (last != NULL)
            FUZZ_CHECK(u.file_id != NULL &&
                       strncmp(u.file_id, last, strlen(u.file_id)) == 0);
    }
    cca_tg_update_cleanup(&u);
    FUZZ_CHECK(u.update_id == 0 && u.text == NULL);
}

/* ---- answers ----------------------------------------------------------------- */

static void check_answer(const uint8_t *data, size_t size, long status)
{
    struct cca_tg_response r;
    enum cca_tg_verdict v;
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)data, size, 0, &jerr);
    bool malformed = !json_is_boolean(json_object_get(doc, "ok"));

    json_decref(doc);
    cca_tg_response_parse((const char *)data, size, status, &r);
    check_str(r.description, 255);
    FUZZ_CHECK(r.retry_after_s >= 0);
    v = cca_tg_classify(&r);
    FUZZ_CHECK(strcmp(cca_tg_verdict_name(v), "unknown") != 0);
    if (malformed) {
        FUZZ_CHECK(!r.ok && v == CCA_TG_RETRY && r.result == NULL);
        FUZZ_CHECK(r.error_code == (status / 100 == 2 ? 502 : status));
        FUZZ_CHECK(strcmp(r.description, "malformed response") == 0);
    } else if (r.ok) {
        FUZZ_CHECK(v == CCA_TG_DONE && r.error_code == 0);
        FUZZ_CHECK(r.description[0] == '\0' && r.retry_after_s == 0);
        FUZZ_CHECK(r.migrate_to_chat_id == 0);
    } else {
        FUZZ_CHECK(r.result == NULL && v != CCA_TG_DONE);
        if (strcmp(r.description, "malformed response") == 0)
            FUZZ_CHECK(v == CCA_TG_RETRY);
        else if (r.error_code == 429)
            FUZZ_CHECK(v == CCA_TG_RETRY_AFTER);
        else if (r.error_code >= 500 || r.error_code < 400)
            FUZZ_CHECK(v == CCA_TG_RETRY);
        else if (r.error_code == 403)
            FUZZ_CHECK(v == CCA_TG_BLOCKED);
        else
            FUZZ_CHECK(v == (r.error_code == 400 && r.migrate_to_chat_id != 0
                                 ? CCA_TG_MIGRATED
                                 : CCA_TG_REJECTED));
    }
    if (r.ok && json_is_array(r.result)) {
        size_t i;
        json_t *el;

        json_array_foreach (r.result, i, el)
            check_update(el);
    }
    cca_tg_response_cleanup(&r);
    FUZZ_CHECK(r.result == NULL && !r.ok);
}

static void check_webhook(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &jerr);

    if (json_is_object(doc))
        check_update(doc);
    json_decref(doc);
}

/* ---- text -------------------------------------------------------------------- */

static size_t units_of(const char *s, size_t len)
{
    size_t u = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x80 || c >= 0xC0)
            u += c >= 0xF0 ? 2 : 1;
    }
    return u;
}

static void check_split(const char *text, size_t len, size_t max_units)
{
    size_t n = cca_tg_split(text, len, max_units, NULL, NULL, 0);
    size_t *offs = cca_xmalloc((n + 1) * sizeof(*offs));
    size_t *lens = cca_xmalloc((n + 1) * sizeof(*lens));
    size_t at = 0;
    bool blank = true;

    for (size_t i = 0; i < len; i++)
        blank = blank && is_ws(text[i]);
    FUZZ_CHECK(cca_tg_split(text, len, max_units, offs, lens, n) == n);
    if (len == 0) {
        FUZZ_CHECK(n == 0);
        goto out;
    }
    FUZZ_CHECK(n >= 1);
    if (units_of(text, len) <= max_units) {
        FUZZ_CHECK(n == 1 && offs[0] == 0 && lens[0] == len);
        goto out;
    }
    if (blank) {
        FUZZ_CHECK(n == 1 && offs[0] == 0 && lens[0] > 0);
        FUZZ_CHECK(cca_text_is_utf8(text, lens[0]));
        FUZZ_CHECK(units_of(text, lens[0]) <= max_units);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *p = text + offs[i];
        size_t end = offs[i] + lens[i];

        FUZZ_CHECK(offs[i] >= at && lens[i] > 0 && end <= len);
        for (; at < offs[i]; at++) /* only whitespace is dropped */
            FUZZ_CHECK(is_ws(text[at]));
        FUZZ_CHECK(cca_text_is_utf8(p, lens[i])); /* cut on code point boundaries */
        FUZZ_CHECK(units_of(p, lens[i]) <= max_units);
        FUZZ_CHECK(!is_ws(p[0]) && !is_ws(p[lens[i] - 1]));
        if (i + 1 < n && end == offs[i + 1]) {
            /* A hard cut: no whitespace within reach could have served. */
            for (size_t k = 1; k < lens[i]; k++)
                FUZZ_CHECK(!is_ws(p[k]));
        }
        at = end;
    }
    for (; at < len; at++)
        FUZZ_CHECK(is_ws(text[at]));
out:
    free(offs);
    free(lens);
}

static void check_command(const char *text, size_t len)
{
    char name[CCA_TG_COMMAND_MAX + 1];
    char name_any[CCA_TG_COMMAND_MAX + 1];
    const char *args = NULL;
    const char *args_any = NULL;
    bool ours = cca_tg_command(text, "Support_Bot", name, &args);
    bool any = cca_tg_command(text, NULL, name_any, &args_any);

    FUZZ_CHECK(!ours || any);
    if (!any)
        return;
    FUZZ_CHECK(text[0] == '/');
    FUZZ_CHECK(strlen(name_any) >= 1 && strlen(name_any) <= CCA_TG_COMMAND_MAX);
    for (const char *p = name_any; *p != '\0'; p++)
        FUZZ_CHECK((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
    FUZZ_CHECK(args_any >= text && args_any <= text + len);
    FUZZ_CHECK(!is_ws(*args_any));
    if (ours)
        FUZZ_CHECK(strcmp(name, name_any) == 0 && args == args_any);
}

static void check_text(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t extra = size > 0 ? 1 + data[0] % 64 : 2;
    char *z;

    if (!cca_text_is_utf8(text, size))
        return;
    FUZZ_CHECK(cca_tg_utf16_len(text, size) == units_of(text, size));
    check_split(text, size, 2);
    check_split(text, size, 3);
    check_split(text, size, extra < 2 ? 2 : extra);
    check_split(text, size, CCA_TG_TEXT_MAX);
    z = cca_xstrndup(text, size);
    check_command(z, size);
    free(z);
}

/* ---- bodies ------------------------------------------------------------------ */

static void check_dumps(json_t *j)
{
    char *s;

    FUZZ_CHECK(j != NULL);
    s = json_dumps(j, JSON_COMPACT);
    FUZZ_CHECK(s != NULL); /* only valid UTF-8 made it in */
    free(s);
    json_decref(j);
}

static void check_bodies(const uint8_t *data, size_t size)
{
    char *z = cca_xstrndup((const char *)data, size); /* up to the first NUL */
    const char *texts[] = {z};
    const char *datas[] = {z};
    json_t *k = cca_tg_keyboard(texts, datas, 1, 1);
    const char *cb = json_string_value(json_object_get(
        json_array_get(json_array_get(json_object_get(k, "inline_keyboard"), 0), 0),
        "callback_data"));
    char url[512];
    size_t len = 0;
    char *body;

    check_str(cb, CCA_TG_CALLBACK_MAX);
    check_dumps(k);
    check_dumps(cca_tg_send_message(-1, z, true, NULL));
    check_dumps(cca_tg_copy_message(1, 2, 3, z, false, NULL));
    check_dumps(cca_tg_answer_callback(z, z));

    if (cca_tg_method_url("https://api.telegram.org", z, "getMe", url, sizeof(url)) ==
        CCA_OK) {
        FUZZ_CHECK(z[0] != '\0' && strchr(z, '/') == NULL);
        for (const char *p = z; *p != '\0'; p++)
            FUZZ_CHECK(!is_ws(*p));
        FUZZ_CHECK(strncmp(url, "https://api.telegram.org/bot", 28) == 0);
    }
    if (cca_tg_bot_id(z) > 0)
        FUZZ_CHECK(z[0] >= '0' && z[0] <= '9' && strchr(z, ':') != NULL);

    body = cca_tg_document_body(42, z, "application/octet-stream", (const char *)data,
                                size, NULL, false, BOUNDARY, &len);
    if (memmem(data, size, BOUNDARY, strlen(BOUNDARY)) != NULL) {
        FUZZ_CHECK(body == NULL);
    } else {
        static const char tail[] = "\r\n--" BOUNDARY "--\r\n";
        size_t t = sizeof(tail) - 1;

        FUZZ_CHECK(body != NULL && len > size + t);
        FUZZ_CHECK(strncmp(body, "--" BOUNDARY "\r\n", strlen(BOUNDARY) + 4) == 0);
        FUZZ_CHECK(memcmp(body + len - t, tail, t) == 0);
        FUZZ_CHECK(size == 0 || memcmp(body + len - t - size, data, size) == 0);
        FUZZ_CHECK(memcmp(body + len - t - size - 4, "\r\n\r\n", 4) == 0);
        /* The headers before the file hold no stray CR or LF. */
        for (size_t i = 0; i < len - t - size - 4; i++) {
            if (body[i] == '\r')
                FUZZ_CHECK(body[i + 1] == '\n');
            if (body[i] == '\n')
                FUZZ_CHECK(i > 0 && body[i - 1] == '\r');
        }
    }
    free(body);
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_answer(data, size, 200);
    check_answer(data, size, 403);
    check_answer(data, size, 502);
    check_webhook(data, size);
    check_text(data, size);
    check_bodies(data, size);
    return 0;
}
