/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <jansson.h>

#include "cca/mem.h"
#include "cca/text.h"
#include "cca/tgapi.h"

/* ---- helpers ----------------------------------------------------------------- */

static json_t *parse_json(const char *s)
{
    json_error_t jerr;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &jerr);

    if (j == NULL)
        fail_msg("bad JSON (%s): %s", jerr.text, s);
    return j;
}

/* @got (stolen) equals the JSON text @want. */
static void assert_json(json_t *got, const char *want)
{
    json_t *w = parse_json(want);

    assert_non_null(got);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        char *e = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);

        fail_msg("got %s\nwant %s", g, e);
    }
    json_decref(w);
    json_decref(got);
}

static cca_rc parse_update(const char *s, struct cca_tg_update *u)
{
    json_t *j = parse_json(s);
    struct cca_error err = {0};
    cca_rc rc = cca_tg_update_parse(j, u, &err);

    assert_int_equal(err.code, rc);
    json_decref(j);
    return rc;
}

static void parse_answer(const char *body, long status, struct cca_tg_response *r)
{
    cca_tg_response_parse(body, body != NULL ? strlen(body) : 0, status, r);
}

/* @n copies of @unit, NUL-terminated (new). */
static char *repeat(const char *unit, size_t n)
{
    size_t k = strlen(unit);
    char *s = cca_xmalloc(k * n + 1);

    for (size_t i = 0; i < n; i++)
        memcpy(s + i * k, unit, k);
    s[k * n] = '\0';
    return s;
}

#define FROM                                                                             \
    "\"from\":{\"id\":42,\"is_bot\":false,\"first_name\":\"Ann\",\"language_code\":"     \
    "\"en\"}"
#define PCHAT "\"chat\":{\"id\":42,\"type\":\"private\",\"first_name\":\"Ann\"}"
#define MSG(x)                                                                           \
    "{\"update_id\":7,\"message\":{\"message_id\":5," FROM "," PCHAT                     \
    ",\"date\":1700000000," x "}}"

/* ---- names ------------------------------------------------------------------- */

static void test_names(void **state)
{
    enum cca_tg_media m;

    (void)state;
    for (int i = 0; i < CCA_TG_MEDIA__COUNT; i++) {
        const char *name = cca_tg_media_name((enum cca_tg_media)i);

        assert_non_null(name);
        assert_true(cca_tg_media_parse(name, &m));
        assert_int_equal(m, i);
    }
    assert_string_equal(cca_tg_media_name(CCA_TG_MEDIA_NONE), "");
    assert_string_equal(cca_tg_media_name(CCA_TG_MEDIA_PHOTO), "photo");
    assert_string_equal(cca_tg_media_name(CCA_TG_MEDIA_VIDEO_NOTE), "video_note");
    assert_null(cca_tg_media_name(CCA_TG_MEDIA__COUNT));
    m = CCA_TG_MEDIA_PHOTO;
    assert_false(cca_tg_media_parse("Photo", &m));
    assert_false(cca_tg_media_parse(NULL, &m));
    assert_int_equal(m, CCA_TG_MEDIA_PHOTO);

    assert_string_equal(cca_tg_verdict_name(CCA_TG_DONE), "done");
    assert_string_equal(cca_tg_verdict_name(CCA_TG_RETRY_AFTER), "retry_after");
    assert_string_equal(cca_tg_verdict_name(CCA_TG_RETRY), "retry");
    assert_string_equal(cca_tg_verdict_name(CCA_TG_BLOCKED), "blocked");
    assert_string_equal(cca_tg_verdict_name(CCA_TG_MIGRATED), "migrated");
    assert_string_equal(cca_tg_verdict_name(CCA_TG_REJECTED), "rejected");
    assert_string_equal(cca_tg_verdict_name((enum cca_tg_verdict)99), "unknown");
}

/* ---- updates ----------------------------------------------------------------- */

static void test_update_text(void **state)
{
    struct cca_tg_update u;

    (void)state;
    assert_int_equal(
        parse_update(
            "{\"update_id\":123456789,\"message\":{\"message_id\":11,"
            "\"from\":{\"id\":987654321,\"is_bot\":false,\"first_name\":"
            "\"Иван\",\"last_name\":\"Petrov\",\"username\":\"ivan_p\","
            "\"language_code\":\"ru\"},\"chat\":{\"id\":987654321,\"first_name\":"
            "\"Иван\",\"type\":\"private\"},\"date\":1718000000,\"text\":"
            "\"Здравствуйте, не работает оплата\"}}",
            &u),
        CCA_OK);
    assert_int_equal(u.update_id, 123456789);
    assert_int_equal(u.kind, CCA_TG_MESSAGE);
    assert_int_equal(u.chat_id, 987654321);
    assert_true(u.chat_private);
    assert_int_equal(u.user_id, 987654321);
    assert_false(u.is_bot);
    assert_string_equal(u.first_name, "Иван");
    assert_string_equal(u.last_name, "Petrov");
    assert_string_equal(u.username, "ivan_p");
    assert_string_equal(u.language_code, "ru");
    assert_int_equal(u.message_id, 11);
    assert_int_equal(u.date, 1718000000);
    assert_string_equal(u.text, "Здравствуйте, не работает оплата");
    assert_int_equal(u.media, CCA_TG_MEDIA_NONE);
    assert_null(u.file_id);
    assert_null(u.caption);
    assert_null(u.callback_id);
    cca_tg_update_cleanup(&u);
    assert_null(u.text);
    assert_int_equal(u.update_id, 0);
    cca_tg_update_cleanup(NULL);

    /* A group chat; a bot sender; no last name, no language. */
    assert_int_equal(
        parse_update(
            "{\"update_id\":8,\"message\":{\"message_id\":1,\"from\":{\"id\":5,"
            "\"is_bot\":true,\"first_name\":\"B\"},\"chat\":{\"id\":-100123,"
            "\"type\":\"supergroup\",\"title\":\"T\"},\"date\":1,\"text\":\"hi\"}}",
            &u),
        CCA_OK);
    assert_int_equal(u.chat_id, -100123);
    assert_false(u.chat_private);
    assert_true(u.is_bot);
    assert_null(u.last_name);
    assert_null(u.username);
    assert_string_equal(u.language_code, "");
    cca_tg_update_cleanup(&u);
}

static void test_update_photo(void **state)
{
    struct cca_tg_update u;

    (void)state;
    assert_int_equal(
        parse_update(
            MSG("\"photo\":[{\"file_id\":\"small\",\"file_unique_id\":\"a\","
                "\"width\":90,\"height\":67,\"file_size\":1200},"
                "{\"file_id\":\"medium\",\"file_unique_id\":\"b\",\"width\":320,"
                "\"height\":240},{\"file_id\":\"large\",\"file_unique_id\":\"c\","
                "\"width\":1280,\"height\":960}],\"caption\":\"чек\""),
            &u),
        CCA_OK);
    assert_int_equal(u.kind, CCA_TG_MESSAGE);
    assert_int_equal(u.media, CCA_TG_MEDIA_PHOTO);
    assert_string_equal(u.file_id, "large");
    assert_string_equal(u.caption, "чек");
    assert_null(u.text);
    cca_tg_update_cleanup(&u);

    /* The last PhotoSize lacks a file_id: the largest one that has it. */
    assert_int_equal(
        parse_update(MSG("\"photo\":[{\"file_id\":\"s\"},{\"file_id\":\"m\"},{\"x\":1}]"),
                     &u),
        CCA_OK);
    assert_string_equal(u.file_id, "m");
    assert_null(u.caption);
    cca_tg_update_cleanup(&u);
}

static void test_update_media(void **state)
{
    static const struct {
        const char *fields;
        enum cca_tg_media media;
        const char *file_id;
        const char *caption;
    } cases[] = {
        {"\"document\":{\"file_id\":\"D1\",\"file_name\":\"a.pdf\"},\"caption\":\"c\"",
         CCA_TG_MEDIA_DOCUMENT, "D1", "c"},
        {"\"voice\":{\"file_id\":\"V1\",\"duration\":3}", CCA_TG_MEDIA_VOICE, "V1", NULL},
        {"\"audio\":{\"file_id\":\"A1\"}", CCA_TG_MEDIA_AUDIO, "A1", NULL},
        {"\"video\":{\"file_id\":\"VI\"}", CCA_TG_MEDIA_VIDEO, "VI", NULL},
        {"\"video_note\":{\"file_id\":\"VN\"}", CCA_TG_MEDIA_VIDEO_NOTE, "VN", NULL},
        {"\"animation\":{\"file_id\":\"AN\"},\"document\":{\"file_id\":\"AN\"}",
         CCA_TG_MEDIA_ANIMATION, "AN", NULL},
        {"\"document\":{\"file_id\":\"DD\"},\"animation\":{\"file_id\":\"AA\"}",
         CCA_TG_MEDIA_ANIMATION, "AA", NULL},
        {"\"sticker\":{\"file_id\":\"ST\",\"emoji\":\"😀\"}", CCA_TG_MEDIA_STICKER, "ST",
         NULL},
        {"\"contact\":{\"phone_number\":\"+79991234567\",\"first_name\":\"A\"}",
         CCA_TG_MEDIA_CONTACT, NULL, "+79991234567"},
        {"\"location\":{\"latitude\":55.755826,\"longitude\":37.6173}",
         CCA_TG_MEDIA_LOCATION, NULL, "55.755826,37.617300"},
        {"\"location\":{\"latitude\":-33,\"longitude\":-70.5}", CCA_TG_MEDIA_LOCATION,
         NULL, "-33.000000,-70.500000"},
        {"\"location\":{\"latitude\":91,\"longitude\":0}", CCA_TG_MEDIA_LOCATION, NULL,
         NULL},
        {"\"location\":{\"latitude\":\"1\",\"longitude\":0}", CCA_TG_MEDIA_LOCATION, NULL,
         NULL},
        {"\"poll\":{\"id\":\"p\",\"question\":\"q\"}", CCA_TG_MEDIA_OTHER, NULL, NULL},
        {"\"document\":{\"file_name\":\"no id\"}", CCA_TG_MEDIA_DOCUMENT, NULL, NULL},
        {"\"text\":\"t\",\"voice\":\"not an object\"", CCA_TG_MEDIA_NONE, NULL, NULL},
    };
    char buf[512];

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        struct cca_tg_update u;

        snprintf(buf, sizeof(buf), MSG("%s"), cases[i].fields);
        assert_int_equal(parse_update(buf, &u), CCA_OK);
        assert_int_equal(u.kind, CCA_TG_MESSAGE);
        if (u.media != cases[i].media)
            fail_msg("case %zu: media %d, want %d", i, u.media, cases[i].media);
        if (cases[i].file_id == NULL)
            assert_null(u.file_id);
        else
            assert_string_equal(u.file_id, cases[i].file_id);
        if (cases[i].caption == NULL)
            assert_null(u.caption);
        else
            assert_string_equal(u.caption, cases[i].caption);
        cca_tg_update_cleanup(&u);
    }
}

static void test_update_edited(void **state)
{
    struct cca_tg_update u;

    (void)state;
    assert_int_equal(
        parse_update("{\"update_id\":9,\"edited_message\":{\"message_id\":5," FROM
                     "," PCHAT
                     ",\"date\":1700000000,\"edit_date\":1700000100,\"text\":\"fixed\"}}",
                     &u),
        CCA_OK);
    assert_int_equal(u.kind, CCA_TG_EDITED);
    assert_int_equal(u.date, 1700000100);
    assert_int_equal(u.message_id, 5);
    assert_string_equal(u.text, "fixed");
    cca_tg_update_cleanup(&u);

    /* No edit_date: the date. */
    assert_int_equal(
        parse_update("{\"update_id\":9,\"edited_message\":{\"message_id\":5," FROM
                     "," PCHAT ",\"date\":1700000000,\"text\":\"x\"}}",
                     &u),
        CCA_OK);
    assert_int_equal(u.date, 1700000000);
    cca_tg_update_cleanup(&u);
}

static void test_update_callback(void **state)
{
    struct cca_tg_update u;
    char *data = repeat("я", 40); /* 80 bytes */
    char buf[1024];

    (void)state;
    assert_int_equal(
        parse_update(
            "{\"update_id\":10,\"callback_query\":{\"id\":\"4382bfdwdsb323b2d9\","
            "\"from\":{\"id\":42,\"is_bot\":false,\"first_name\":\"Ann\","
            "\"language_code\":\"de\"},\"message\":{\"message_id\":77,\"from\":"
            "{\"id\":1,\"is_bot\":true,\"first_name\":\"Bot\"},\"chat\":{\"id\":42,"
            "\"type\":\"private\"},\"date\":1700000000,\"text\":\"Rate us\"},"
            "\"chat_instance\":\"-1\",\"data\":\"csat:5\"}}",
            &u),
        CCA_OK);
    assert_int_equal(u.kind, CCA_TG_CALLBACK);
    assert_string_equal(u.callback_id, "4382bfdwdsb323b2d9");
    assert_string_equal(u.callback_data, "csat:5");
    assert_int_equal(u.user_id, 42); /* the one who pressed, not the bot */
    assert_false(u.is_bot);
    assert_string_equal(u.language_code, "de");
    assert_int_equal(u.chat_id, 42);
    assert_int_equal(u.message_id, 77);
    assert_null(u.text);
    assert_int_equal(u.media, CCA_TG_MEDIA_NONE);
    cca_tg_update_cleanup(&u);

    /* Data capped at 64 bytes on a code point boundary; no data is NULL. */
    snprintf(buf, sizeof(buf),
             "{\"update_id\":10,\"callback_query\":{\"id\":\"q\",\"from\":{\"id\":3},"
             "\"message\":{\"message_id\":1,\"chat\":{\"id\":3,\"type\":\"private\"},"
             "\"date\":0},\"data\":\"%s\"}}",
             data);
    assert_int_equal(parse_update(buf, &u), CCA_OK);
    assert_int_equal(u.kind, CCA_TG_CALLBACK);
    assert_int_equal(strlen(u.callback_data), 64);
    assert_true(cca_text_is_utf8(u.callback_data, 64));
    cca_tg_update_cleanup(&u);
    assert_int_equal(
        parse_update("{\"update_id\":10,\"callback_query\":{\"id\":\"q\","
                     "\"from\":{\"id\":3},\"message\":{\"message_id\":1,"
                     "\"chat\":{\"id\":3,\"type\":\"private\"},\"date\":0}}}",
                     &u),
        CCA_OK);
    assert_int_equal(u.kind, CCA_TG_CALLBACK);
    assert_null(u.callback_data);
    cca_tg_update_cleanup(&u);

    /* An inline message's callback (no message): OTHER, but still answerable. */
    assert_int_equal(parse_update("{\"update_id\":11,\"callback_query\":{\"id\":\"q2\","
                                  "\"from\":{\"id\":3},\"inline_message_id\":\"im\","
                                  "\"data\":\"d\"}}",
                                  &u),
                     CCA_OK);
    assert_int_equal(u.kind, CCA_TG_OTHER);
    assert_int_equal(u.update_id, 11);
    assert_string_equal(u.callback_id, "q2");
    assert_null(u.callback_data);
    assert_int_equal(u.user_id, 0);
    cca_tg_update_cleanup(&u);
    free(data);
}

static void test_update_invalid(void **state)
{
    static const char *const bad[] = {
        "[]",
        "{}",
        "{\"update_id\":0,\"message\":{}}",
        "{\"update_id\":-5}",
        "{\"update_id\":\"7\"}",
        "{\"update_id\":7.5}",
        "null",
    };
    static const char *const other[] = {
        "{\"update_id\":3,\"channel_post\":{\"message_id\":1,\"chat\":{\"id\":-1,"
        "\"type\":\"channel\"},\"date\":1,\"text\":\"x\"}}",
        "{\"update_id\":3,\"message\":{\"message_id\":1," PCHAT
        ",\"date\":1,\"text\":\"x\"}}",
        "{\"update_id\":3,\"message\":{\"message_id\":1," FROM
        ",\"date\":1,\"text\":\"x\"}}",
        "{\"update_id\":3,\"message\":{\"message_id\":1," FROM
        ",\"chat\":{\"id\":\"42\"},\"text\":\"x\"}}",
        "{\"update_id\":3,\"message\":\"text\"}",
        "{\"update_id\":3,\"callback_query\":{\"id\":\"q\",\"message\":{\"message_id\":1,"
        "\"chat\":{\"id\":3}}}}",
        "{\"update_id\":3,\"callback_query\":{\"from\":{\"id\":3},\"message\":{"
        "\"message_id\":1,\"chat\":{\"id\":3}}}}",
        "{\"update_id\":3}",
    };
    struct cca_tg_update u;
    struct cca_error err = {0};

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bad); i++) {
        assert_int_equal(parse_update(bad[i], &u), CCA_ERR_INVALID);
        assert_int_equal(u.update_id, 0);
        cca_tg_update_cleanup(&u);
    }
    assert_int_equal(cca_tg_update_parse(NULL, &u, &err), CCA_ERR_INVALID);
    assert_int_equal(err.code, CCA_ERR_INVALID);
    assert_true(strlen(err.msg) > 0);
    assert_int_equal(cca_tg_update_parse(NULL, &u, NULL), CCA_ERR_INVALID);
    cca_tg_update_cleanup(&u);

    for (size_t i = 0; i < CCA_ARRAY_SIZE(other); i++) {
        assert_int_equal(parse_update(other[i], &u), CCA_OK);
        if (u.kind != CCA_TG_OTHER)
            fail_msg("case %zu: kind %d", i, u.kind);
        assert_int_equal(u.update_id, 3);
        assert_int_equal(u.chat_id, 0);
        assert_int_equal(u.user_id, 0);
        assert_null(u.text);
        assert_null(u.first_name);
        cca_tg_update_cleanup(&u);
    }
}

static void test_update_caps(void **state)
{
    struct cca_tg_update u;
    char *name = repeat("€", 300);   /* 900 bytes */
    char *text = repeat("ab", 9000); /* 18000 bytes */
    char *cap = repeat("д", 3000);   /* 6000 bytes */
    char *fid = repeat("F", 400);
    size_t size = 64 * 1024;
    char *buf = cca_xmalloc(size);
    json_t *doc;

    (void)state;
    snprintf(buf, size,
             "{\"update_id\":1,\"message\":{\"message_id\":1,\"from\":{\"id\":1,"
             "\"first_name\":\"%s\",\"last_name\":\"%s\",\"username\":\"%s\","
             "\"language_code\":\"zh-Hant-TW-x-very-long\"},\"chat\":{\"id\":1,"
             "\"type\":\"private\"},\"date\":1,\"text\":\"%s\"}}",
             name, name, name, text);
    assert_int_equal(parse_update(buf, &u), CCA_OK);
    assert_int_equal(strlen(u.first_name), 255); /* 85 whole euro signs */
    assert_int_equal(strlen(u.last_name), 255);
    assert_int_equal(strlen(u.username), 255);
    assert_true(cca_text_is_utf8(u.first_name, 255));
    assert_string_equal(u.language_code, "zh-Hant-TW-x-ve");
    assert_int_equal(strlen(u.text), 4 * CCA_TG_TEXT_MAX);
    cca_tg_update_cleanup(&u);

    /* A language code cut inside a character drops the whole character; a
     * string with NUL (JSON_ALLOW_NUL) ends there. */
    doc = parse_json("{\"update_id\":1,\"message\":{\"message_id\":1,\"from\":{\"id\":1,"
                     "\"language_code\":\"abcdefghijklmnя\"},\"chat\":{\"id\":1},"
                     "\"date\":1}}");
    (void)json_object_set_new(json_object_get(doc, "message"), "text",
                              json_stringn("a\0b", 3));
    assert_int_equal(cca_tg_update_parse(doc, &u, NULL), CCA_OK);
    assert_string_equal(u.language_code, "abcdefghijklmn");
    assert_string_equal(u.text, "a");
    cca_tg_update_cleanup(&u);
    json_decref(doc);

    snprintf(buf, size,
             "{\"update_id\":1,\"message\":{\"message_id\":1,\"from\":{\"id\":1},"
             "\"chat\":{\"id\":1},\"date\":1,\"document\":{\"file_id\":\"%s\"},"
             "\"caption\":\"%s\"}}",
             fid, cap);
    assert_int_equal(parse_update(buf, &u), CCA_OK);
    assert_int_equal(strlen(u.file_id), CCA_TG_FILE_ID_MAX);
    assert_int_equal(strlen(u.caption), 4 * CCA_TG_CAPTION_MAX);
    assert_true(cca_text_is_utf8(u.caption, strlen(u.caption)));
    cca_tg_update_cleanup(&u);

    free(buf);
    free(name);
    free(text);
    free(cap);
    free(fid);
}

/* ---- answers ----------------------------------------------------------------- */

static void test_response_ok(void **state)
{
    struct cca_tg_response r;

    (void)state;
    parse_answer("{\"ok\":true,\"result\":[{\"update_id\":1,\"message\":{}},"
                 "{\"update_id\":2}]}",
                 200, &r);
    assert_true(r.ok);
    assert_int_equal(r.error_code, 0);
    assert_string_equal(r.description, "");
    assert_true(json_is_array(r.result));
    assert_int_equal(json_array_size(r.result), 2);
    assert_int_equal(r.result->refcount, 1); /* ours alone: the document is gone */
    assert_int_equal(cca_tg_classify(&r), CCA_TG_DONE);
    cca_tg_response_cleanup(&r);
    assert_null(r.result);
    cca_tg_response_cleanup(NULL);

    parse_answer("{\"ok\":true,\"result\":true,\"description\":\"Webhook was set\"}", 200,
                 &r);
    assert_true(r.ok);
    assert_true(json_is_true(r.result));
    cca_tg_response_cleanup(&r);

    parse_answer("{\"ok\":true}", 200, &r);
    assert_true(r.ok);
    assert_null(r.result);
    assert_int_equal(cca_tg_classify(&r), CCA_TG_DONE);
    cca_tg_response_cleanup(&r);
}

static void test_response_errors(void **state)
{
    static const struct {
        const char *body;
        long status;
        long code;
        const char *description;
        int64_t retry_after;
        int64_t migrate;
        enum cca_tg_verdict verdict;
    } cases[] = {
        {"{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry "
         "after 35\",\"parameters\":{\"retry_after\":35}}",
         429, 429, "Too Many Requests: retry after 35", 35, 0, CCA_TG_RETRY_AFTER},
        {"{\"ok\":false,\"error_code\":429,\"description\":\"x\",\"parameters\":"
         "{\"retry_after\":-3}}",
         429, 429, "x", 0, 0, CCA_TG_RETRY_AFTER},
        {"{\"ok\":false,\"error_code\":403,\"description\":\"Forbidden: bot was blocked "
         "by the user\"}",
         403, 403, "Forbidden: bot was blocked by the user", 0, 0, CCA_TG_BLOCKED},
        {"{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: group chat "
         "was upgraded to a supergroup chat\",\"parameters\":{\"migrate_to_chat_id\":"
         "-1001234567890}}",
         400, 400, "Bad Request: group chat was upgraded to a supergroup chat", 0,
         -1001234567890LL, CCA_TG_MIGRATED},
        {"{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: message text "
         "is empty\"}",
         400, 400, "Bad Request: message text is empty", 0, 0, CCA_TG_REJECTED},
        {"{\"ok\":false,\"error_code\":401,\"description\":\"Unauthorized\"}", 401, 401,
         "Unauthorized", 0, 0, CCA_TG_REJECTED},
        {"{\"ok\":false,\"error_code\":409,\"description\":\"Conflict: terminated by "
         "other getUpdates request\"}",
         409, 409, "Conflict: terminated by other getUpdates request", 0, 0,
         CCA_TG_REJECTED},
        {"{\"ok\":false,\"error_code\":500,\"description\":\"Internal Server Error\"}",
         500, 500, "Internal Server Error", 0, 0, CCA_TG_RETRY},
        {"{\"ok\":false,\"error_code\":502,\"description\":\"Bad Gateway\"}", 502, 502,
         "Bad Gateway", 0, 0, CCA_TG_RETRY},
        /* No error_code: the HTTP status. */
        {"{\"ok\":false,\"description\":\"d\"}", 403, 403, "d", 0, 0, CCA_TG_BLOCKED},
        {"{\"ok\":false}", 200, 200, "", 0, 0, CCA_TG_RETRY},
        /* Malformed. */
        {"<html><body>502 Bad Gateway</body></html>", 502, 502, "malformed response", 0,
         0, CCA_TG_RETRY},
        {"<html>Forbidden</html>", 403, 403, "malformed response", 0, 0, CCA_TG_RETRY},
        {"{\"ok\":true,\"result\":[", 200, 502, "malformed response", 0, 0, CCA_TG_RETRY},
        {"{\"ok\":\"true\"}", 200, 502, "malformed response", 0, 0, CCA_TG_RETRY},
        {"[true]", 204, 502, "malformed response", 0, 0, CCA_TG_RETRY},
        {"", 200, 502, "malformed response", 0, 0, CCA_TG_RETRY},
        {NULL, 504, 504, "malformed response", 0, 0, CCA_TG_RETRY},
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        struct cca_tg_response r;

        parse_answer(cases[i].body, cases[i].status, &r);
        assert_false(r.ok);
        if (r.error_code != cases[i].code)
            fail_msg("case %zu: code %ld", i, r.error_code);
        assert_string_equal(r.description, cases[i].description);
        assert_int_equal(r.retry_after_s, cases[i].retry_after);
        assert_int_equal(r.migrate_to_chat_id, cases[i].migrate);
        assert_null(r.result);
        if (cca_tg_classify(&r) != cases[i].verdict)
            fail_msg("case %zu: verdict %s", i, cca_tg_verdict_name(cca_tg_classify(&r)));
        cca_tg_response_cleanup(&r);
    }
    assert_int_equal(cca_tg_classify(NULL), CCA_TG_RETRY);
}

static void test_response_description_cap(void **state)
{
    struct cca_tg_response r;
    char *d = repeat("ж", 200); /* 400 bytes */
    char buf[1024];

    (void)state;
    snprintf(buf, sizeof(buf), "{\"ok\":false,\"error_code\":400,\"description\":\"%s\"}",
             d);
    parse_answer(buf, 400, &r);
    assert_int_equal(strlen(r.description), 254); /* 127 whole characters */
    assert_true(cca_text_is_utf8(r.description, 254));
    assert_int_equal(cca_tg_classify(&r), CCA_TG_REJECTED);
    cca_tg_response_cleanup(&r);

    /* The body is not NUL-terminated: only len bytes are read. */
    cca_tg_response_parse("{\"ok\":true}garbage", 11, 200, &r);
    assert_true(r.ok);
    cca_tg_response_cleanup(&r);
    free(d);
}

/* ---- URLs and tokens --------------------------------------------------------- */

static void test_method_url(void **state)
{
    char buf[128];
    const char *tok = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";

    (void)state;
    assert_int_equal(cca_tg_method_url("https://api.telegram.org", tok, "getUpdates", buf,
                                       sizeof(buf)),
                     CCA_OK);
    assert_string_equal(buf, "https://api.telegram.org/"
                             "bot123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11/getUpdates");
    assert_int_equal(cca_tg_method_url("http://127.0.0.1:8081/", "1:x", "sendMessage",
                                       buf, sizeof(buf)),
                     CCA_OK);
    assert_string_equal(buf, "http://127.0.0.1:8081/bot1:x/sendMessage");

    /* Exactly fits, one byte short. */
    assert_int_equal(cca_tg_method_url("http://h", "1:x", "m", buf, 18), CCA_OK);
    assert_string_equal(buf, "http://h/bot1:x/m");
    assert_int_equal(cca_tg_method_url("http://h", "1:x", "m", buf, 17), CCA_ERR_INVALID);
    assert_string_equal(buf, "");

    assert_int_equal(cca_tg_method_url("http://h", "", "m", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("http://h", NULL, "m", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("http://h", "1:x/../2:y", "m", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("http://h", "1:x y", "m", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("http://h", "1:x\n", "m", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("http://h", "1:x?a=b", "m", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("http://h", "1:x", "", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("http://h", "1:x", "a/b", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(
        cca_tg_method_url("http://h", "1:x", "send Message", buf, sizeof(buf)),
        CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("", "1:x", "m", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("/", "1:x", "m", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("http://h x", "1:x", "m", buf, sizeof(buf)),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_tg_method_url("http://h", "1:x", "m", NULL, 0), CCA_ERR_INVALID);
}

static void test_bot_id(void **state)
{
    (void)state;
    assert_int_equal(cca_tg_bot_id("123456:ABC-DEF"), 123456);
    assert_int_equal(cca_tg_bot_id("7:"), 7);
    assert_int_equal(cca_tg_bot_id("9223372036854775807:x"), INT64_MAX);
    assert_int_equal(cca_tg_bot_id("9223372036854775808:x"), 0);
    assert_int_equal(cca_tg_bot_id("00000000000000000001:x"), 1);  /* 20 digits */
    assert_int_equal(cca_tg_bot_id("000000000000000000001:x"), 0); /* 21 */
    assert_int_equal(cca_tg_bot_id("123456"), 0);
    assert_int_equal(cca_tg_bot_id(":abc"), 0);
    assert_int_equal(cca_tg_bot_id("abc:def"), 0);
    assert_int_equal(cca_tg_bot_id(" 1:x"), 0);
    assert_int_equal(cca_tg_bot_id("-1:x"), 0);
    assert_int_equal(cca_tg_bot_id(""), 0);
    assert_int_equal(cca_tg_bot_id(NULL), 0);
}

/* ---- request bodies ---------------------------------------------------------- */

static void test_bodies(void **state)
{
    json_t *markup =
        parse_json("{\"inline_keyboard\":[[{\"text\":\"a\",\"callback_data\":"
                   "\"b\"}]]}");
    json_t *cmds = parse_json("[{\"command\":\"start\",\"description\":\"Begin\"}]");
    json_t *j;

    (void)state;
    assert_json(cca_tg_get_updates(0, 100, 30),
                "{\"limit\":100,\"timeout\":30,\"allowed_updates\":[\"message\","
                "\"edited_message\",\"callback_query\"]}");
    assert_json(cca_tg_get_updates(123457, 500, -1),
                "{\"offset\":123457,\"limit\":100,\"timeout\":0,\"allowed_updates\":"
                "[\"message\",\"edited_message\",\"callback_query\"]}");
    assert_json(cca_tg_get_updates(-1, 0, 5),
                "{\"offset\":-1,\"limit\":1,\"timeout\":5,\"allowed_updates\":"
                "[\"message\",\"edited_message\",\"callback_query\"]}");

    assert_json(cca_tg_send_message(-1001234567890LL, "<b>not markup</b>", false, NULL),
                "{\"chat_id\":-1001234567890,\"text\":\"<b>not markup</b>\"}");
    j = cca_tg_send_message(42, "hi", true, markup);
    assert_int_equal(markup->refcount, 2);
    assert_ptr_equal(json_object_get(j, "reply_markup"), markup);
    assert_null(json_object_get(j, "parse_mode"));
    assert_json(j, "{\"chat_id\":42,\"text\":\"hi\",\"protect_content\":true,"
                   "\"reply_markup\":{\"inline_keyboard\":[[{\"text\":\"a\","
                   "\"callback_data\":\"b\"}]]}}");
    assert_int_equal(markup->refcount, 1);
    /* Not UTF-8: replaced, never NULL. */
    assert_json(cca_tg_send_message(1,
                                    "a\xFF"
                                    "b\xE2\x82",
                                    false, NULL),
                "{\"chat_id\":1,\"text\":\"a\\ufffdb\\ufffd\\ufffd\"}");
    assert_json(cca_tg_send_message(1, NULL, false, NULL),
                "{\"chat_id\":1,\"text\":\"\"}");

    assert_json(cca_tg_copy_message(1, 2, 3, NULL, false, NULL),
                "{\"chat_id\":1,\"from_chat_id\":2,\"message_id\":3}");
    assert_json(cca_tg_copy_message(1, 2, 3, "new", true, markup),
                "{\"chat_id\":1,\"from_chat_id\":2,\"message_id\":3,\"caption\":\"new\","
                "\"protect_content\":true,\"reply_markup\":{\"inline_keyboard\":[[{"
                "\"text\":\"a\",\"callback_data\":\"b\"}]]}}");
    assert_json(cca_tg_copy_message(1, 2, 3, "", false, NULL),
                "{\"chat_id\":1,\"from_chat_id\":2,\"message_id\":3,\"caption\":\"\"}");

    assert_json(cca_tg_answer_callback("q1", NULL), "{\"callback_query_id\":\"q1\"}");
    assert_json(cca_tg_answer_callback("q1", "Спасибо"),
                "{\"callback_query_id\":\"q1\",\"text\":\"Спасибо\"}");
    assert_json(cca_tg_delete_message(5, 6), "{\"chat_id\":5,\"message_id\":6}");
    assert_json(
        cca_tg_edit_markup(5, 6, NULL),
        "{\"chat_id\":5,\"message_id\":6,\"reply_markup\":{\"inline_keyboard\":[]}}");
    assert_json(cca_tg_edit_markup(5, 6, markup),
                "{\"chat_id\":5,\"message_id\":6,\"reply_markup\":{\"inline_keyboard\":"
                "[[{\"text\":\"a\",\"callback_data\":\"b\"}]]}}");

    assert_json(cca_tg_set_commands(cmds, NULL),
                "{\"commands\":[{\"command\":\"start\",\"description\":\"Begin\"}]}");
    assert_json(cca_tg_set_commands(cmds, ""),
                "{\"commands\":[{\"command\":\"start\",\"description\":\"Begin\"}]}");
    assert_json(cca_tg_set_commands(cmds, "ru"),
                "{\"commands\":[{\"command\":\"start\",\"description\":\"Begin\"}],"
                "\"language_code\":\"ru\"}");
    assert_int_equal(cmds->refcount, 1);
    assert_json(cca_tg_set_commands(NULL, NULL), "{\"commands\":[]}");

    assert_json(
        cca_tg_set_webhook("https://example.com/tg/hook", "s3cr3t_T0ken"),
        "{\"url\":\"https://example.com/tg/hook\",\"secret_token\":\"s3cr3t_T0ken\","
        "\"allowed_updates\":[\"message\",\"edited_message\",\"callback_query\"],"
        "\"drop_pending_updates\":false}");
    assert_json(cca_tg_set_webhook("https://e/h", NULL),
                "{\"url\":\"https://e/h\",\"allowed_updates\":[\"message\","
                "\"edited_message\",\"callback_query\"],\"drop_pending_updates\":false}");
    assert_json(cca_tg_delete_webhook(), "{\"drop_pending_updates\":false}");

    /* A body dumps (valid JSON, so valid UTF-8). */
    j = cca_tg_send_message(1, "\xC0\xAF\xED\xA0\x80", false, NULL);
    {
        char *s = json_dumps(j, JSON_COMPACT);

        assert_non_null(s);
        free(s);
    }
    json_decref(j);
    json_decref(markup);
    json_decref(cmds);
}

static void test_keyboard(void **state)
{
    const char *texts[] = {"1", "2", "3", "4", "5"};
    const char *datas[] = {"csat:1", "csat:2", "csat:3", "csat:4", "csat:5"};
    char *long_data = repeat("ю", 40); /* 80 bytes */
    const char *t1[] = {"Да"};
    const char *d1[] = {long_data};
    json_t *k;
    const char *cut;

    (void)state;
    assert_json(cca_tg_keyboard(texts, datas, 5, 2),
                "{\"inline_keyboard\":[[{\"text\":\"1\",\"callback_data\":\"csat:1\"},"
                "{\"text\":\"2\",\"callback_data\":\"csat:2\"}],[{\"text\":\"3\","
                "\"callback_data\":\"csat:3\"},{\"text\":\"4\",\"callback_data\":"
                "\"csat:4\"}],[{\"text\":\"5\",\"callback_data\":\"csat:5\"}]]}");
    assert_json(cca_tg_keyboard(texts, datas, 2, 0),
                "{\"inline_keyboard\":[[{\"text\":\"1\",\"callback_data\":\"csat:1\"}],"
                "[{\"text\":\"2\",\"callback_data\":\"csat:2\"}]]}");
    assert_json(cca_tg_keyboard(texts, datas, 3, 5),
                "{\"inline_keyboard\":[[{\"text\":\"1\",\"callback_data\":\"csat:1\"},"
                "{\"text\":\"2\",\"callback_data\":\"csat:2\"},{\"text\":\"3\","
                "\"callback_data\":\"csat:3\"}]]}");
    assert_json(cca_tg_keyboard(NULL, NULL, 0, 1), "{\"inline_keyboard\":[]}");

    k = cca_tg_keyboard(t1, d1, 1, 1);
    cut = json_string_value(json_object_get(
        json_array_get(json_array_get(json_object_get(k, "inline_keyboard"), 0), 0),
        "callback_data"));
    assert_non_null(cut);
    assert_int_equal(strlen(cut), CCA_TG_CALLBACK_MAX);
    assert_memory_equal(cut, long_data, CCA_TG_CALLBACK_MAX);
    json_decref(k);
    free(long_data);
}

static void test_document_body(void **state)
{
    static const char want[] =
        "--Xq7zB\r\n"
        "Content-Disposition: form-data; name=\"chat_id\"\r\n"
        "\r\n"
        "-1001\r\n"
        "--Xq7zB\r\n"
        "Content-Disposition: form-data; name=\"caption\"\r\n"
        "\r\n"
        "Отчёт\r\n"
        "--Xq7zB\r\n"
        "Content-Disposition: form-data; name=\"protect_content\"\r\n"
        "\r\n"
        "true\r\n"
        "--Xq7zB\r\n"
        "Content-Disposition: form-data; name=\"document\"; filename=\"dialog.csv\"\r\n"
        "Content-Type: text/csv\r\n"
        "\r\n"
        "a,b\r\n\0\xFF\r\n"
        "--Xq7zB--\r\n";
    static const char want_min[] =
        "--b\r\n"
        "Content-Disposition: form-data; name=\"chat_id\"\r\n"
        "\r\n"
        "7\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=\"document\"; filename=\"a_b_c__d\"\r\n"
        "Content-Type: application/octet-stream\r\n"
        "\r\n"
        "\r\n"
        "--b--\r\n";
    char *b71 = repeat("a", 71);
    char *b70 = repeat("a", 70);
    size_t len = 0;
    char *body;

    (void)state;
    body = cca_tg_document_body(-1001, "dialog.csv", "text/csv", "a,b\r\n\0\xFF", 7,
                                "Отчёт", true, "Xq7zB", &len);
    assert_non_null(body);
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(body, want, len);
    free(body);

    body = cca_tg_document_body(7, "a\"b\rc\n\\d", "text/plain\r\nX-Evil: 1", NULL, 0,
                                NULL, false, "b", &len);
    assert_non_null(body);
    assert_int_equal(len, sizeof(want_min) - 1);
    assert_memory_equal(body, want_min, len);
    free(body);

    body = cca_tg_document_body(7, NULL, "application/pdf", "x", 1, NULL, false,
                                "0-9A'()+_,-./:=?z", &len);
    assert_non_null(body);
    assert_non_null(
        strstr(body, "filename=\"file\"\r\nContent-Type: application/pdf\r\n"));
    free(body);
    body = cca_tg_document_body(7, "f", "a/b", "x", 1, NULL, false, b70, &len);
    assert_non_null(body);
    free(body);

    len = 12345;
    assert_null(cca_tg_document_body(7, "f", "a/b", "x", 1, NULL, false, b71, &len));
    assert_null(cca_tg_document_body(7, "f", "a/b", "x", 1, NULL, false, "", &len));
    assert_null(cca_tg_document_body(7, "f", "a/b", "x", 1, NULL, false, NULL, &len));
    assert_null(cca_tg_document_body(7, "f", "a/b", "x", 1, NULL, false, "a b", &len));
    assert_null(cca_tg_document_body(7, "f", "a/b", "x", 1, NULL, false, "a\"b", &len));
    assert_null(cca_tg_document_body(7, "f", "a/b", "x", 1, NULL, false, "a\r\n", &len));
    assert_null(
        cca_tg_document_body(7, "f", "a/b", "12--BND--34", 11, NULL, false, "BND", &len));
    assert_null(
        cca_tg_document_body(7, "f", "a/b", "x", 1, "see BND", false, "BND", &len));
    assert_int_equal(len, 12345);
    free(b70);
    free(b71);
}

/* ---- splitting --------------------------------------------------------------- */

static void test_utf16_len(void **state)
{
    (void)state;
    assert_int_equal(cca_tg_utf16_len("", 0), 0);
    assert_int_equal(cca_tg_utf16_len("hello", 5), 5);
    assert_int_equal(cca_tg_utf16_len("é", strlen("é")), 1);
    assert_int_equal(cca_tg_utf16_len("€", strlen("€")), 1);
    assert_int_equal(cca_tg_utf16_len("😀", strlen("😀")), 2);
    assert_int_equal(cca_tg_utf16_len("a😀бв𝄞", strlen("a😀бв𝄞")), 7);
    assert_int_equal(cca_tg_utf16_len("ab", 1), 1);
}

/* Splits @text and compares the pieces with the NULL-terminated @want. */
static void check_split(const char *text, size_t max_units, const char *const *want)
{
    size_t offs[64];
    size_t lens[64];
    size_t n = cca_tg_split(text, strlen(text), max_units, offs, lens, 64);
    size_t k = 0;

    while (want[k] != NULL)
        k++;
    if (n != k)
        fail_msg("'%s' / %zu: %zu pieces, want %zu", text, max_units, n, k);
    for (size_t i = 0; i < n; i++) {
        if (lens[i] != strlen(want[i]) || memcmp(text + offs[i], want[i], lens[i]) != 0)
            fail_msg("'%s' / %zu: piece %zu is '%.*s', want '%s'", text, max_units, i,
                     (int)lens[i], text + offs[i], want[i]);
        assert_true(cca_tg_utf16_len(text + offs[i], lens[i]) <= max_units);
    }
}

static void test_split(void **state)
{
    (void)state;
    /* Fits: as it is. */
    check_split("hello", 5, (const char *[]){"hello", NULL});
    check_split("  hi  ", 10, (const char *[]){"  hi  ", NULL});
    check_split("", 5, (const char *[]){NULL});
    /* Paragraph before line before space. */
    check_split("aa bb\ncc\n\ndd ee", 12, (const char *[]){"aa bb\ncc", "dd ee", NULL});
    /* The last paragraph break wins over a later line break or space. */
    check_split("aa\n\nbb\ncc dd", 11, (const char *[]){"aa", "bb\ncc dd", NULL});
    check_split("aa bb\ncc dd", 9, (const char *[]){"aa bb", "cc dd", NULL});
    check_split("aa bb cc dd", 9, (const char *[]){"aa bb cc", "dd", NULL});
    check_split("aaa bbbb", 5, (const char *[]){"aaa", "bbbb", NULL});
    check_split("a\tb c\td", 4, (const char *[]){"a\tb", "c\td", NULL});
    /* A break right after the limit still counts (it is dropped). */
    check_split("abcd\n\nef", 4, (const char *[]){"abcd", "ef", NULL});
    check_split("abcd efgh", 4, (const char *[]){"abcd", "efgh", NULL});
    /* No break: a hard cut on a code point boundary. */
    check_split("abcdefghij", 4, (const char *[]){"abcd", "efgh", "ij", NULL});
    check_split("ёжикёжик", 3, (const char *[]){"ёжи", "кёж", "ик", NULL});
    /* Astral code points count 2 units and are never split. */
    check_split("😀😀😀", 3, (const char *[]){"😀", "😀", "😀", NULL});
    check_split("a😀😀", 4, (const char *[]){"a😀", "😀", NULL});
    /* Whitespace at a cut is dropped, all of it, and the text's ends too. */
    check_split("aaa   \n\n \n  bbb", 5, (const char *[]){"aaa", "bbb", NULL});
    check_split("  aaa bbb  ", 4, (const char *[]){"aaa", "bbb", NULL});
    check_split("\n\naaaa\n\n", 4, (const char *[]){"aaaa", NULL});
    check_split("          x", 4, (const char *[]){"x", NULL});
    /* All whitespace: one piece, cut to fit. */
    check_split("       ", 3, (const char *[]){"   ", NULL});
    check_split(" \n ", 3, (const char *[]){" \n ", NULL});
    /* Breaks before the piece's start do not count. */
    check_split("a\n\nbcdefghijkl", 5,
                (const char *[]){"a", "bcdef", "ghijk", "l", NULL});
}

static void test_split_room(void **state)
{
    size_t offs[2] = {99, 99};
    size_t lens[2] = {99, 99};
    const char *text = "aa bb cc dd ee";

    (void)state;
    assert_int_equal(cca_tg_split(text, strlen(text), 2, NULL, NULL, 0), 5);
    assert_int_equal(cca_tg_split(text, strlen(text), 2, offs, lens, 1), 5);
    assert_int_equal(offs[0], 0);
    assert_int_equal(lens[0], 2);
    assert_int_equal(offs[1], 99);
    /* Fewer than 2 units reads as 2. */
    assert_int_equal(cca_tg_split(text, strlen(text), 0, offs, lens, 2), 5);
    assert_int_equal(offs[1], 3);
    assert_int_equal(lens[1], 2);
}

static void test_split_message(void **state)
{
    /* 2000 paragraphs of "Строка N ..." with emoji: real message sizes. */
    size_t cap = 400 * 1000;
    char *text = cca_xmalloc(cap);
    size_t len = 0;
    size_t offs[64];
    size_t lens[64];
    size_t n;
    size_t at = 0;

    (void)state;
    for (int i = 0; i < 2000; i++)
        len += (size_t)snprintf(text + len, cap - len, "Строка %d 😀 текст.%s", i,
                                i % 3 == 2 ? "\n\n" : " ");
    n = cca_tg_split(text, len, CCA_TG_TEXT_MAX, offs, lens, 64);
    assert_true(n > 1 && n <= 64);
    for (size_t i = 0; i < n; i++) {
        size_t units = cca_tg_utf16_len(text + offs[i], lens[i]);

        assert_true(units <= CCA_TG_TEXT_MAX);
        assert_true(units > CCA_TG_TEXT_MAX - 200 || i == n - 1); /* well filled */
        assert_true(lens[i] > 0);
        assert_true(cca_text_is_utf8(text + offs[i], lens[i]));
        for (; at < offs[i]; at++) /* gaps hold whitespace only */
            assert_true(strchr(" \n", text[at]) != NULL);
        /* Cut after a paragraph: the next piece starts a paragraph. */
        if (i > 0)
            assert_memory_equal(text + offs[i] - 2, "\n\n", 2);
        at = offs[i] + lens[i];
    }
    assert_int_equal(at, len - 1); /* the final space is dropped */
    free(text);
}

/* ---- commands ---------------------------------------------------------------- */

static void test_command(void **state)
{
    char name[CCA_TG_COMMAND_MAX + 1];
    const char *args = NULL;
    char *long32 = repeat("a", 32);
    char *long33 = repeat("a", 33);
    char buf[64];

    (void)state;
    assert_true(cca_tg_command("/start", "SupportBot", name, &args));
    assert_string_equal(name, "start");
    assert_string_equal(args, "");

    assert_true(
        cca_tg_command("/Operator@SupportBot  need a human", "supportbot", name, &args));
    assert_string_equal(name, "operator");
    assert_string_equal(args, "need a human");
    assert_true(cca_tg_command("/help@supportBOT", "@SupportBot", name, &args));
    assert_string_equal(name, "help");
    assert_true(cca_tg_command("/rate_5\n\n thanks", NULL, name, &args));
    assert_string_equal(name, "rate_5");
    assert_string_equal(args, "thanks");
    assert_true(cca_tg_command("/start@AnyBot x", NULL, name, &args));
    assert_string_equal(args, "x");
    assert_true(cca_tg_command("/x", "b", name, NULL));

    snprintf(buf, sizeof(buf), "/%s arg", long32);
    assert_true(cca_tg_command(buf, NULL, name, &args));
    assert_string_equal(name, long32);

    strcpy(name, "untouched");
    args = "same";
    snprintf(buf, sizeof(buf), "/%s", long33);
    assert_false(cca_tg_command(buf, NULL, name, &args));
    assert_false(cca_tg_command("/start@OtherBot", "SupportBot", name, &args));
    assert_false(cca_tg_command("/start@SupportBot2", "SupportBot", name, &args));
    assert_false(cca_tg_command("/start@Support", "SupportBot", name, &args));
    assert_false(cca_tg_command("/start@", NULL, name, &args));
    assert_false(cca_tg_command("/", NULL, name, &args));
    assert_false(cca_tg_command("/ start", NULL, name, &args));
    assert_false(cca_tg_command("start", NULL, name, &args));
    assert_false(cca_tg_command(" /start", NULL, name, &args));
    assert_false(cca_tg_command("/start-now", NULL, name, &args));
    assert_false(cca_tg_command("/старт", NULL, name, &args));
    assert_false(cca_tg_command("/start.", NULL, name, &args));
    assert_false(cca_tg_command("", NULL, name, &args));
    assert_false(cca_tg_command(NULL, NULL, name, &args));
    assert_string_equal(name, "untouched");
    assert_string_equal(args, "same");
    free(long32);
    free(long33);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_update_text),
        cmocka_unit_test(test_update_photo),
        cmocka_unit_test(test_update_media),
        cmocka_unit_test(test_update_edited),
        cmocka_unit_test(test_update_callback),
        cmocka_unit_test(test_update_invalid),
        cmocka_unit_test(test_update_caps),
        cmocka_unit_test(test_response_ok),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_response_description_cap),
        cmocka_unit_test(test_method_url),
        cmocka_unit_test(test_bot_id),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_keyboard),
        cmocka_unit_test(test_document_body),
        cmocka_unit_test(test_utf16_len),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_room),
        cmocka_unit_test(test_split_message),
        cmocka_unit_test(test_command),
    };

    cca_mem_install_jansson();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
