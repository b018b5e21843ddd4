/* SPDX-License-Identifier: MIT */
/*
 * The Telegram bot's words and commands (include/cca/tgbot.h): command names
 * and aliases, the user's language, the phrases in both languages and their
 * printf slots, usage lines, the operator help, setMyCommands, cards, inline
 * keyboards and callback data, client references, lists, relays and stats.
 */
#include "cca_test.h"

#include <jansson.h>

#include "cca/record.h"
#include "cca/text.h"
#include "cca/tgapi.h"
#include "cca/tgbot.h"

#define DIALOG    "0f8fad5b-d9cb-469f-a165-70867728950e"
#define DIALOG_UC "0F8FAD5B-D9CB-469F-A165-70867728950E"
#define OP_A      "00000000-0000-4000-8000-00000000000a"

static size_t cps(const char *s)
{
    ssize_t n = cca_text_codepoints(s, strlen(s));

    assert_true(n >= 0);
    return (size_t)n;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("\"%s\" not found in:\n%s", needle, hay);
}

static void assert_lacks(const char *hay, const char *needle)
{
    if (strstr(hay, needle) != NULL)
        fail_msg("\"%s\" should not be in:\n%s", needle, hay);
}

/* ---- commands ------------------------------------------------------------------ */

static void test_cmd_parse(void **state)
{
    static const struct {
        const char *name;
        enum cca_tgbot_cmd cmd;
    } cases[] = {
        {"start", CCA_TGBOT_CMD_START},
        {"help", CCA_TGBOT_CMD_HELP},
        {"register", CCA_TGBOT_CMD_REGISTER},
        {"register_support", CCA_TGBOT_CMD_REGISTER},
        {"operator", CCA_TGBOT_CMD_OPERATOR},
        {"available", CCA_TGBOT_CMD_AVAILABLE},
        {"busy", CCA_TGBOT_CMD_BUSY},
        {"offline", CCA_TGBOT_CMD_OFFLINE},
        {"status", CCA_TGBOT_CMD_STATUS},
        {"clients", CCA_TGBOT_CMD_CLIENTS},
        {"focus", CCA_TGBOT_CMD_FOCUS},
        {"reply", CCA_TGBOT_CMD_REPLY},
        {"next", CCA_TGBOT_CMD_NEXT},
        {"use", CCA_TGBOT_CMD_USE},
        {"end", CCA_TGBOT_CMD_END},
        {"done", CCA_TGBOT_CMD_END},
        {"end_chat", CCA_TGBOT_CMD_END},
        {"history", CCA_TGBOT_CMD_HISTORY},
        {"stats", CCA_TGBOT_CMD_STATS},
        {"ai", CCA_TGBOT_CMD_AI},
        /* not ours: the caller lower-cases and strips '/' and "@bot" */
        {"", CCA_TGBOT_CMD_NONE},
        {"Start", CCA_TGBOT_CMD_NONE},
        {"/start", CCA_TGBOT_CMD_NONE},
        {"start@bot", CCA_TGBOT_CMD_NONE},
        {"registe", CCA_TGBOT_CMD_NONE},
        {"register_supportx", CCA_TGBOT_CMD_NONE},
        {"menu", CCA_TGBOT_CMD_NONE},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cca_tgbot_cmd_parse(cases[i].name) != cases[i].cmd)
            fail_msg("cmd_parse(\"%s\") = %d, want %d", cases[i].name,
                     (int)cca_tgbot_cmd_parse(cases[i].name), (int)cases[i].cmd);
    }
    assert_int_equal(cca_tgbot_cmd_parse(NULL), CCA_TGBOT_CMD_NONE);
}

static void test_cmd_operator(void **state)
{
    (void)state;
    for (int c = 0; c < CCA_TGBOT_CMD__COUNT; c++) {
        bool customer_side = c == CCA_TGBOT_CMD_NONE || c == CCA_TGBOT_CMD_START ||
                             c == CCA_TGBOT_CMD_HELP || c == CCA_TGBOT_CMD_REGISTER ||
                             c == CCA_TGBOT_CMD_OPERATOR;

        if (cca_tgbot_cmd_operator((enum cca_tgbot_cmd)c) == customer_side)
            fail_msg("cmd_operator(%d) should be %s", c,
                     customer_side ? "false" : "true");
    }
    assert_false(cca_tgbot_cmd_operator(CCA_TGBOT_CMD__COUNT));
}

/* ---- language ------------------------------------------------------------------ */

static void test_lang(void **state)
{
    (void)state;
    assert_int_equal(cca_tgbot_lang("ru", NULL), CCA_LANG_RU);
    assert_int_equal(cca_tgbot_lang("ru-RU", "hello"), CCA_LANG_RU);
    assert_int_equal(cca_tgbot_lang("uk", NULL), CCA_LANG_RU);
    assert_int_equal(cca_tgbot_lang("be-BY", NULL), CCA_LANG_RU);
    assert_int_equal(cca_tgbot_lang("kk", NULL), CCA_LANG_RU);
    assert_int_equal(cca_tgbot_lang("RU", NULL), CCA_LANG_RU);
    /* another tag wins over the script of the text */
    assert_int_equal(cca_tgbot_lang("en", "Привет, мне нужна помощь"), CCA_LANG_EN);
    assert_int_equal(cca_tgbot_lang("de-DE", NULL), CCA_LANG_EN);
    assert_int_equal(cca_tgbot_lang("rus", NULL), CCA_LANG_EN);
    assert_int_equal(cca_tgbot_lang("r", NULL), CCA_LANG_EN);
    assert_int_equal(cca_tgbot_lang("ukr", "Привет"), CCA_LANG_EN);
    /* no tag: the script */
    assert_int_equal(cca_tgbot_lang("", "Привет, мне нужна помощь"), CCA_LANG_RU);
    assert_int_equal(cca_tgbot_lang(NULL, "Здравствуйте"), CCA_LANG_RU);
    assert_int_equal(cca_tgbot_lang(NULL, "Hello there"), CCA_LANG_EN);
    assert_int_equal(cca_tgbot_lang("", "12345"), CCA_LANG_EN);
    assert_int_equal(cca_tgbot_lang(NULL, NULL), CCA_LANG_EN);
    assert_int_equal(cca_tgbot_lang("", NULL), CCA_LANG_EN);
}

/* ---- phrases ------------------------------------------------------------------- */

/* The printf conversions of @fmt, in order ("su" for "%s ... %u"). */
static void conversions(const char *fmt, char *out, size_t size)
{
    size_t n = 0;

    for (const char *p = fmt; *p != '\0'; p++) {
        if (*p != '%')
            continue;
        p++;
        assert_true(*p != '\0');
        if (*p == '%')
            continue;
        assert_true(n + 1 < size);
        out[n++] = *p;
    }
    out[n] = '\0';
}

/* What each phrase takes, as documented in the enum. */
static const char *const slots[CCA_TGBOT_MSG__COUNT] = {
    [CCA_TGBOT_GREETING] = "",        [CCA_TGBOT_WELCOME_BACK] = "s",
    [CCA_TGBOT_NAME_SAVED] = "s",     [CCA_TGBOT_BAD_NAME] = "",
    [CCA_TGBOT_RATE_ASK] = "",        [CCA_TGBOT_RATE_THANKS] = "d",
    [CCA_TGBOT_HELP_CUSTOMER] = "",   [CCA_TGBOT_HELP_OPERATOR] = "",
    [CCA_TGBOT_REGISTERED] = "s",     [CCA_TGBOT_ALREADY] = "",
    [CCA_TGBOT_BAD_SECRET] = "",      [CCA_TGBOT_TOO_MANY] = "d",
    [CCA_TGBOT_REG_CLOSED] = "",      [CCA_TGBOT_NOT_OPERATOR] = "",
    [CCA_TGBOT_STATUS_SET] = "s",     [CCA_TGBOT_NO_CLIENTS] = "",
    [CCA_TGBOT_UNKNOWN_CLIENT] = "s", [CCA_TGBOT_FOCUS_SET] = "us",
    [CCA_TGBOT_NEED_FOCUS] = "",      [CCA_TGBOT_QUEUE_EMPTY] = "",
    [CCA_TGBOT_ENDED] = "us",         [CCA_TGBOT_HANDED_BACK] = "us",
    [CCA_TGBOT_USAGE] = "s",          [CCA_TGBOT_UNKNOWN_COMMAND] = "",
    [CCA_TGBOT_FAILED] = "s",         [CCA_TGBOT_CUSTOMER_GONE] = "us",
    [CCA_TGBOT_TRANSFERRED] = "us",
};

/* Every phrase exists in both languages, in its language's script, with
 * exactly the documented printf slots, and without Markdown. */
static void test_phrases(void **state)
{
    (void)state;
    for (int m = 0; m < CCA_TGBOT_MSG__COUNT; m++) {
        const char *en = cca_tgbot_text((enum cca_tgbot_msg)m, CCA_LANG_EN);
        const char *ru = cca_tgbot_text((enum cca_tgbot_msg)m, CCA_LANG_RU);
        char conv[8];

        assert_non_null(slots[m]);
        assert_non_null(en);
        assert_non_null(ru);
        if (en[0] == '\0' || ru[0] == '\0')
            fail_msg("phrase %d is missing a language", m);
        assert_string_not_equal(en, ru);
        assert_true(cca_text_is_utf8(en, strlen(en)));
        assert_true(cca_text_is_utf8(ru, strlen(ru)));
        assert_int_equal(cca_text_detect_lang(en, strlen(en)), CCA_LANG_EN);
        assert_int_equal(cca_text_detect_lang(ru, strlen(ru)), CCA_LANG_RU);
        conversions(en, conv, sizeof(conv));
        if (strcmp(conv, slots[m]) != 0)
            fail_msg("phrase %d (en) takes \"%s\", want \"%s\"", m, conv, slots[m]);
        conversions(ru, conv, sizeof(conv));
        if (strcmp(conv, slots[m]) != 0)
            fail_msg("phrase %d (ru) takes \"%s\", want \"%s\"", m, conv, slots[m]);
        /* plain text: nothing a reader would take for Markdown */
        assert_null(strchr(en, '*'));
        assert_null(strchr(ru, '*'));
        assert_null(strchr(en, '`'));
        assert_null(strchr(ru, '`'));
        /* Russian is polite: "вы", never "ты" */
        assert_lacks(ru, " ты ");
        assert_lacks(ru, "Ты ");
        assert_lacks(ru, "твой");
    }
    assert_string_equal(cca_tgbot_text(CCA_TGBOT_MSG__COUNT, CCA_LANG_EN), "");
    assert_string_equal(cca_tgbot_text((enum cca_tgbot_msg) - 1, CCA_LANG_RU), "");
    assert_string_equal(cca_tgbot_text(CCA_TGBOT_GREETING, CCA_LANG__COUNT), "");
}

static void test_format(void **state)
{
    char *s;

    (void)state;
    s = cca_tgbot_format(CCA_LANG_RU, CCA_TGBOT_WELCOME_BACK, "Анна");
    assert_string_equal(s, "С возвращением, Анна! Чем можем помочь?");
    free(s);
    s = cca_tgbot_format(CCA_LANG_EN, CCA_TGBOT_WELCOME_BACK, "Anna");
    assert_string_equal(s, "Welcome back, Anna! How can we help you today?");
    free(s);

    s = cca_tgbot_format(CCA_LANG_RU, CCA_TGBOT_RATE_THANKS, 4);
    assert_contains(s, "4 из 5");
    free(s);
    s = cca_tgbot_format(CCA_LANG_EN, CCA_TGBOT_TOO_MANY, 30);
    assert_contains(s, "30 s");
    free(s);

    s = cca_tgbot_format(CCA_LANG_EN, CCA_TGBOT_FOCUS_SET, 3u, "Anna");
    assert_contains(s, "#3, Anna");
    free(s);
    s = cca_tgbot_format(CCA_LANG_RU, CCA_TGBOT_ENDED, 12u, "Иван");
    assert_string_equal(s, "Диалог с клиентом #12, Иван завершён.");
    free(s);

    /* an argument is data, never a format */
    s = cca_tgbot_format(CCA_LANG_EN, CCA_TGBOT_UNKNOWN_CLIENT, "%s%n%x");
    assert_contains(s, "\"%s%n%x\"");
    free(s);

    s = cca_tgbot_format(CCA_LANG_EN, CCA_TGBOT_USAGE,
                         cca_tgbot_usage(CCA_TGBOT_CMD_REPLY, CCA_LANG_EN));
    assert_string_equal(s, "Usage: /reply <client> <text>");
    free(s);

    /* phrases without slots come out as they are */
    s = cca_tgbot_format(CCA_LANG_RU, CCA_TGBOT_HELP_OPERATOR);
    assert_string_equal(s, cca_tgbot_text(CCA_TGBOT_HELP_OPERATOR, CCA_LANG_RU));
    free(s);

    /* a bad value: "" but never NULL */
    s = cca_tgbot_format(CCA_LANG_EN, CCA_TGBOT_MSG__COUNT);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

static void test_status_name(void **state)
{
    (void)state;
    assert_string_equal(cca_tgbot_status_name("available", CCA_LANG_RU), "доступен");
    assert_string_equal(cca_tgbot_status_name("busy", CCA_LANG_RU), "занят");
    assert_string_equal(cca_tgbot_status_name("offline", CCA_LANG_RU), "не в сети");
    assert_string_equal(cca_tgbot_status_name("available", CCA_LANG_EN), "available");
    assert_string_equal(cca_tgbot_status_name("offline", CCA_LANG_EN), "offline");
    assert_string_equal(cca_tgbot_status_name("away", CCA_LANG_RU), "away");
    assert_string_equal(cca_tgbot_status_name(NULL, CCA_LANG_RU), "");
}

/* ---- usage, help, setMyCommands ---------------------------------------------- */

static const char *const cmd_names[CCA_TGBOT_CMD__COUNT] = {
    [CCA_TGBOT_CMD_START] = "start",
    [CCA_TGBOT_CMD_HELP] = "help",
    [CCA_TGBOT_CMD_REGISTER] = "register",
    [CCA_TGBOT_CMD_OPERATOR] = "operator",
    [CCA_TGBOT_CMD_AVAILABLE] = "available",
    [CCA_TGBOT_CMD_BUSY] = "busy",
    [CCA_TGBOT_CMD_OFFLINE] = "offline",
    [CCA_TGBOT_CMD_STATUS] = "status",
    [CCA_TGBOT_CMD_CLIENTS] = "clients",
    [CCA_TGBOT_CMD_FOCUS] = "focus",
    [CCA_TGBOT_CMD_REPLY] = "reply",
    [CCA_TGBOT_CMD_NEXT] = "next",
    [CCA_TGBOT_CMD_USE] = "use",
    [CCA_TGBOT_CMD_END] = "end",
    [CCA_TGBOT_CMD_HISTORY] = "history",
    [CCA_TGBOT_CMD_STATS] = "stats",
    [CCA_TGBOT_CMD_AI] = "ai",
};

static void test_usage(void **state)
{
    (void)state;
    for (int c = 1; c < CCA_TGBOT_CMD__COUNT; c++) {
        for (int l = 0; l < CCA_LANG__COUNT; l++) {
            const char *u = cca_tgbot_usage((enum cca_tgbot_cmd)c, (enum cca_lang)l);
            size_t n = strlen(cmd_names[c]);

            assert_true(u[0] == '/');
            assert_memory_equal(u + 1, cmd_names[c], n);
            assert_true(u[1 + n] == '\0' || u[1 + n] == ' ');
        }
    }
    assert_string_equal(cca_tgbot_usage(CCA_TGBOT_CMD_REPLY, CCA_LANG_EN),
                        "/reply <client> <text>");
    assert_string_equal(cca_tgbot_usage(CCA_TGBOT_CMD_REPLY, CCA_LANG_RU),
                        "/reply <клиент> <текст>");
    assert_string_equal(cca_tgbot_usage(CCA_TGBOT_CMD_HISTORY, CCA_LANG_EN),
                        "/history <client> [limit]");
    assert_string_equal(cca_tgbot_usage(CCA_TGBOT_CMD_END, CCA_LANG_EN), "/end [client]");
    assert_string_equal(cca_tgbot_usage(CCA_TGBOT_CMD_REGISTER, CCA_LANG_EN),
                        "/register <secret>");
    assert_string_equal(cca_tgbot_usage(CCA_TGBOT_CMD_OPERATOR, CCA_LANG_EN),
                        "/operator <PIN>");
    assert_string_equal(cca_tgbot_usage(CCA_TGBOT_CMD_NONE, CCA_LANG_EN), "");
    assert_string_equal(cca_tgbot_usage(CCA_TGBOT_CMD__COUNT, CCA_LANG_RU), "");
}

/* The operator help has every operator command's usage at the start of a line. */
static void test_help(void **state)
{
    (void)state;
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        const char *help = cca_tgbot_text(CCA_TGBOT_HELP_OPERATOR, (enum cca_lang)l);
        const char *cust = cca_tgbot_text(CCA_TGBOT_HELP_CUSTOMER, (enum cca_lang)l);

        size_t listed = 0;
        size_t lines = 0;

        for (int c = 1; c < CCA_TGBOT_CMD__COUNT; c++) {
            const char *u = cca_tgbot_usage((enum cca_tgbot_cmd)c, (enum cca_lang)l);
            char line[128];

            if (!cca_tgbot_cmd_operator((enum cca_tgbot_cmd)c) && c != CCA_TGBOT_CMD_HELP)
                continue;
            (void)snprintf(line, sizeof(line), "\n%s - ", u);
            if (strstr(help, line) == NULL)
                fail_msg("operator help (%d) lacks the line \"%s\"", l, u);
            listed++;
        }
        /* one command a line: as many lines start with '/' as commands listed */
        for (const char *p = help; p != NULL; p = strchr(p + 1, '\n'))
            lines += p[p == help ? 0 : 1] == '/';
        assert_int_equal(lines, listed);
        assert_int_equal(listed, 14);
        assert_contains(help, "/done");
        assert_contains(cust, "/start");
        assert_contains(cust, "/help");
        /* customers are not shown operator commands */
        assert_lacks(cust, "/reply");
        assert_lacks(cust, "/register");
    }
}

static void test_commands(void **state)
{
    (void)state;
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        json_t *a = cca_tgbot_commands((enum cca_lang)l);
        bool seen[CCA_TGBOT_CMD__COUNT] = {false};
        size_t i;
        json_t *v;

        assert_true(json_is_array(a));
        assert_int_equal(json_array_size(a), CCA_TGBOT_CMD__COUNT - 1);
        json_array_foreach (a, i, v) {
            const char *name = json_string_value(json_object_get(v, "command"));
            const char *desc = json_string_value(json_object_get(v, "description"));
            enum cca_tgbot_cmd c;

            assert_int_equal(json_object_size(v), 2);
            assert_non_null(name);
            assert_non_null(desc);
            assert_true(strlen(name) >= 1 && strlen(name) <= 32);
            assert_int_equal(strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_"),
                             strlen(name));
            assert_true(cps(desc) >= 1 && cps(desc) <= 256);
            assert_int_equal(cca_text_detect_lang(desc, strlen(desc)), (enum cca_lang)l);
            c = cca_tgbot_cmd_parse(name);
            assert_int_not_equal(c, CCA_TGBOT_CMD_NONE);
            /* no alias: the name is the command's own */
            assert_string_equal(name, cmd_names[c]);
            assert_false(seen[c]);
            seen[c] = true;
        }
        json_decref(a);
    }
}

/* ---- the card ------------------------------------------------------------------- */

static void test_card_ru(void **state)
{
    static const struct cca_tgbot_line lines[] = {
        {"user", "Здравствуйте, у меня не работает роутер"},
        {"assistant", "Попробуйте перезагрузить его"},
        {"user", "Позовите оператора"},
    };
    struct cca_tgbot_card c = {.number = 3,
                               .name = "Анна",
                               .lang = "ru",
                               .channel = "telegram",
                               .reason = "просит оператора",
                               .waited_s = 125,
                               .lines = lines,
                               .nlines = 3};
    char *s;

    (void)state;
    s = cca_tgbot_card_text(&c, CCA_LANG_RU);
    assert_true(
        strncmp(s, "Новый клиент #3: Анна\n", strlen("Новый клиент #3: Анна\n")) == 0);
    assert_contains(s, "Язык: русский\n");
    assert_contains(s, "Канал: telegram\n");
    assert_contains(s, "Причина: просит оператора\n");
    assert_contains(s, "2 мин 5 с\n");
    assert_contains(s, "\nКлиент: Здравствуйте, у меня не работает роутер\n"
                       "Помощник: Попробуйте перезагрузить его\n"
                       "Клиент: Позовите оператора\n");
    assert_contains(s, "/reply 3 ");
    assert_true(cca_text_is_utf8(s, strlen(s)));
    free(s);

    c.transfer = true;
    s = cca_tgbot_card_text(&c, CCA_LANG_RU);
    assert_true(strncmp(s, "Вам передан клиент #3: Анна\n",
                        strlen("Вам передан клиент #3: Анна\n")) == 0);
    free(s);
}

static void test_card_en_minimal(void **state)
{
    struct cca_tgbot_card c = {.number = 42, .waited_s = -1};
    char *s;

    (void)state;
    s = cca_tgbot_card_text(&c, CCA_LANG_EN);
    assert_true(strncmp(s, "New client #42\n", strlen("New client #42\n")) == 0);
    assert_lacks(s, "Language");
    assert_lacks(s, "Channel");
    assert_lacks(s, "Reason");
    assert_lacks(s, "Waited");
    assert_lacks(s, "Last messages");
    assert_contains(s, "/reply 42 <text>");
    free(s);

    c.name = "";
    c.transfer = true;
    c.waited_s = 3725;
    c.lang = "de";
    s = cca_tgbot_card_text(&c, CCA_LANG_EN);
    assert_true(strncmp(s, "Transferred to you: client #42\n",
                        strlen("Transferred to you: client #42\n")) == 0);
    assert_contains(s, "1 h 2 min");
    assert_contains(s, "Language: de\n");
    free(s);
}

/* At most 5 messages, the last ones; each one line of at most 300 code points. */
static void test_card_limits(void **state)
{
    struct cca_tgbot_line lines[8];
    char texts[8][16];
    char big[1200];
    char *s;
    const char *at;
    char *line;
    struct cca_tgbot_card c = {.number = 1, .name = "Bob", .waited_s = -1};

    (void)state;
    for (int i = 0; i < 8; i++) {
        (void)snprintf(texts[i], sizeof(texts[i]), "message %d", i);
        lines[i].role = i % 2 ? "operator" : "customer";
        lines[i].text = texts[i];
    }
    c.lines = lines;
    c.nlines = 8;
    s = cca_tgbot_card_text(&c, CCA_LANG_EN);
    assert_lacks(s, "message 2\n");
    assert_contains(s, "Operator: message 3\nClient: message 4\nOperator: message 5\n"
                       "Client: message 6\nOperator: message 7\n");
    free(s);

    /* 400 Cyrillic letters: cut to 299 and "…" */
    big[0] = '\0';
    for (int i = 0; i < 400; i++)
        strcat(big, "я");
    lines[0].text = big;
    lines[0].role = "user";
    c.nlines = 1;
    s = cca_tgbot_card_text(&c, CCA_LANG_EN);
    at = strstr(s, "Client: ");
    assert_non_null(at);
    at += strlen("Client: ");
    line = strndup(at, strcspn(at, "\n"));
    assert_int_equal(cps(line), 300);
    assert_string_equal(line + strlen(line) - strlen("…"), "…");
    assert_int_equal(strncmp(line, "яяя", 6), 0);
    free(line);
    free(s);

    /* exactly 300: not cut */
    big[0] = '\0';
    for (int i = 0; i < 300; i++)
        strcat(big, "ж");
    s = cca_tgbot_card_text(&c, CCA_LANG_EN);
    assert_contains(s, big);
    assert_lacks(s, "ж…");
    free(s);

    /* line breaks in a message cannot fake lines of the card */
    lines[0].text = "hi\nOperator: fake\r\tend";
    s = cca_tgbot_card_text(&c, CCA_LANG_EN);
    assert_contains(s, "Client: hi Operator: fake  end\n");
    free(s);

    /* NULL text, unknown role */
    lines[0].text = NULL;
    lines[0].role = "robot";
    s = cca_tgbot_card_text(&c, CCA_LANG_EN);
    assert_contains(s, "\nrobot: \n");
    free(s);

    s = cca_tgbot_card_text(NULL, CCA_LANG_EN);
    assert_string_equal(s, "");
    free(s);
}

/* ---- keyboards and callback data ------------------------------------------------ */

static const char *button(json_t *kb, size_t row, size_t col, const char *field)
{
    json_t *rows = json_object_get(kb, "inline_keyboard");

    return json_string_value(
        json_object_get(json_array_get(json_array_get(rows, row), col), field));
}

static void test_card_keyboard(void **state)
{
    json_t *kb;
    json_t *rows;

    (void)state;
    kb = cca_tgbot_card_keyboard(7, CCA_LANG_RU);
    rows = json_object_get(kb, "inline_keyboard");
    assert_int_equal(json_array_size(rows), 1);
    assert_int_equal(json_array_size(json_array_get(rows, 0)), 3);
    assert_string_equal(button(kb, 0, 0, "callback_data"), "f:7");
    assert_string_equal(button(kb, 0, 1, "callback_data"), "e:7");
    assert_string_equal(button(kb, 0, 2, "callback_data"), "a:7");
    assert_string_equal(button(kb, 0, 0, "text"), "Ответить");
    assert_string_equal(button(kb, 0, 1, "text"), "Завершить");
    json_decref(kb);

    kb = cca_tgbot_card_keyboard(9999, CCA_LANG_EN);
    assert_string_equal(button(kb, 0, 0, "text"), "Reply");
    assert_string_equal(button(kb, 0, 2, "callback_data"), "a:9999");
    for (size_t i = 0; i < 3; i++) {
        unsigned n = 0;

        assert_int_not_equal(
            cca_tgbot_parse_callback(button(kb, 0, i, "callback_data"), &n, NULL, NULL),
            CCA_TGBOT_ACT_NONE);
        assert_int_equal(n, 9999);
    }
    json_decref(kb);
}

static void test_rate_keyboard(void **state)
{
    json_t *kb;
    json_t *rows;

    (void)state;
    kb = cca_tgbot_rate_keyboard(DIALOG_UC);
    assert_non_null(kb);
    rows = json_object_get(kb, "inline_keyboard");
    assert_int_equal(json_array_size(rows), 1);
    assert_int_equal(json_array_size(json_array_get(rows, 0)), 5);
    for (size_t i = 0; i < 5; i++) {
        const char *data = button(kb, 0, i, "callback_data");
        char want[64];
        char id[37] = "";
        int score = 0;

        (void)snprintf(want, sizeof(want), "r:%zu:%s", i + 1, DIALOG);
        assert_string_equal(data, want);
        assert_true(strlen(data) <= CCA_TG_CALLBACK_MAX);
        assert_true(button(kb, 0, i, "text")[0] == (char)('1' + i));
        assert_int_equal(cca_tgbot_parse_callback(data, NULL, &score, id),
                         CCA_TGBOT_ACT_RATE);
        assert_int_equal(score, (int)i + 1);
        assert_string_equal(id, DIALOG);
    }
    json_decref(kb);

    assert_null(cca_tgbot_rate_keyboard("not-a-uuid"));
    assert_null(cca_tgbot_rate_keyboard(NULL));
}

static void test_parse_callback(void **state)
{
    static const char *const bad[] = {
        "",
        "f",
        "f:",
        "f:0",
        "f:07",
        "f:10000",
        "f:-1",
        "f:+1",
        "f: 1",
        "f:1 ",
        "f:1x",
        "x:1",
        "ff:1",
        "F:1",
        "r:0:" DIALOG,
        "r:6:" DIALOG,
        "r:5",
        "r:5:",
        "r:5:not-a-uuid",
        "r:5:" DIALOG "x",
        "r:5:{" DIALOG "}",
        "r:55:" DIALOG,
        "r:" DIALOG,
    };
    unsigned n = 77;
    int score = 77;
    char id[37] = "untouched";

    (void)state;
    assert_int_equal(cca_tgbot_parse_callback("f:1", &n, &score, id),
                     CCA_TGBOT_ACT_FOCUS);
    assert_int_equal(n, 1);
    assert_int_equal(cca_tgbot_parse_callback("e:25", &n, &score, id), CCA_TGBOT_ACT_END);
    assert_int_equal(n, 25);
    assert_int_equal(cca_tgbot_parse_callback("a:9999", &n, &score, id),
                     CCA_TGBOT_ACT_AI);
    assert_int_equal(n, 9999);
    assert_int_equal(score, 77);
    assert_string_equal(id, "untouched");
    assert_int_equal(cca_tgbot_parse_callback("r:3:" DIALOG_UC, &n, &score, id),
                     CCA_TGBOT_ACT_RATE);
    assert_int_equal(score, 3);
    assert_string_equal(id, DIALOG);

    n = 77;
    score = 77;
    strcpy(id, "untouched");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cca_tgbot_parse_callback(bad[i], &n, &score, id) != CCA_TGBOT_ACT_NONE)
            fail_msg("callback \"%s\" should be refused", bad[i]);
    }
    assert_int_equal(cca_tgbot_parse_callback(NULL, &n, &score, id), CCA_TGBOT_ACT_NONE);
    assert_int_equal(n, 77);
    assert_int_equal(score, 77);
    assert_string_equal(id, "untouched");
}

static void test_parse_client(void **state)
{
    static const char *const bad[] = {
        "",   "   ",  "0",   "#0",  "#",   "10000",    "#10000",
        "-3", "3abc", "abc", "##3", "# 3", DIALOG "0", "03",
    };
    unsigned n = 77;
    char id[37] = "untouched";
    const char *rest = NULL;

    (void)state;
    assert_true(cca_tgbot_parse_client("3 hello there", &n, id, &rest));
    assert_int_equal(n, 3);
    assert_string_equal(id, "");
    assert_string_equal(rest, "hello there");

    assert_true(cca_tgbot_parse_client("#12 \t\n  multi\nline", &n, id, &rest));
    assert_int_equal(n, 12);
    assert_string_equal(rest, "multi\nline");

    assert_true(cca_tgbot_parse_client("  9999", &n, id, &rest));
    assert_int_equal(n, 9999);
    assert_string_equal(rest, "");

    assert_true(cca_tgbot_parse_client(DIALOG_UC " 20", &n, id, &rest));
    assert_int_equal(n, 0);
    assert_string_equal(id, DIALOG);
    assert_string_equal(rest, "20");

    n = 77;
    strcpy(id, "untouched");
    rest = "untouched";
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cca_tgbot_parse_client(bad[i], &n, id, &rest))
            fail_msg("client \"%s\" should be refused", bad[i]);
    }
    assert_false(cca_tgbot_parse_client(NULL, &n, id, &rest));
    assert_int_equal(n, 77);
    assert_string_equal(id, "untouched");
    assert_string_equal(rest, "untouched");
}

/* ---- lists, relays, stats ------------------------------------------------------- */

static void test_clients_text(void **state)
{
    const struct cca_tgbot_client c[] = {
        {.number = 1, .name = "Анна", .status = "assigned", .waiting_s = 65},
        {.number = 2,
         .name = NULL,
         .status = "assigned",
         .waiting_s = -1,
         .focused = true},
    };
    struct cca_tgbot_client many[150];
    char *s;

    (void)state;
    s = cca_tgbot_clients_text(NULL, c, 2, CCA_LANG_RU);
    assert_string_equal(s, "Ваши клиенты:\n"
                           "#1 Анна - в работе, ждёт ответа 1 мин 5 с\n"
                           "> #2 Клиент #2 - в работе (выбран)");
    free(s);

    s = cca_tgbot_clients_text("busy", c, 2, CCA_LANG_EN);
    assert_true(strncmp(s, "Your status: busy\nYour clients:\n#1 Анна - ",
                        strlen("Your status: busy\nYour clients:\n#1 Анна - ")) == 0);
    assert_contains(s, "waiting for a reply 1 min 5 s\n");
    assert_contains(s, "> #2 Client #2 - in progress (chosen)");
    free(s);

    s = cca_tgbot_clients_text("available", NULL, 0, CCA_LANG_RU);
    assert_string_equal(s, "Ваш статус: доступен\nСейчас у вас нет клиентов.");
    free(s);
    s = cca_tgbot_clients_text(NULL, c, 0, CCA_LANG_EN);
    assert_string_equal(s, cca_tgbot_text(CCA_TGBOT_NO_CLIENTS, CCA_LANG_EN));
    free(s);

    /* a long list is capped */
    for (size_t i = 0; i < 150; i++)
        many[i] = (struct cca_tgbot_client){
            .number = (unsigned)i + 1, .name = "X", .status = "queued", .waiting_s = -1};
    s = cca_tgbot_clients_text(NULL, many, 150, CCA_LANG_EN);
    assert_contains(s, "\n#100 X - in the queue\n");
    assert_lacks(s, "#101 ");
    assert_contains(s, "and 50 more");
    free(s);
}

static void test_relay_text(void **state)
{
    char *s;

    (void)state;
    s = cca_tgbot_relay_text("Анна", 3, NULL, "Здравствуйте!");
    assert_string_equal(s, "Анна (#3): Здравствуйте!");
    free(s);
    s = cca_tgbot_relay_text("Bob", 12, "photo", "my receipt");
    assert_string_equal(s, "Bob (#12): [photo] my receipt");
    free(s);
    s = cca_tgbot_relay_text("Bob", 12, "voice", NULL);
    assert_string_equal(s, "Bob (#12): [voice]");
    free(s);
    s = cca_tgbot_relay_text("Bob", 1, "", "a\nb");
    assert_string_equal(s, "Bob (#1): a\nb");
    free(s);
    s = cca_tgbot_relay_text(NULL, 5, NULL, "hi");
    assert_string_equal(s, "#5: hi");
    free(s);
    /* a name cannot add lines */
    s = cca_tgbot_relay_text("Eve\nOperator", 5, NULL, "hi");
    assert_string_equal(s, "Eve Operator (#5): hi");
    free(s);
}

static void test_stats_text(void **state)
{
    struct cca_stats *st = cca_stats_new(OP_A);
    json_t *real = cca_stats_operator_json(st);
    json_t *o;
    char *s;

    (void)state;
    /* the fields read exist in what record.c makes */
    assert_non_null(json_object_get(real, "dialogs_handled"));
    assert_non_null(json_object_get(real, "open_now"));
    assert_non_null(json_object_get(real, "closed"));
    assert_non_null(json_object_get(real, "messages_sent"));
    assert_non_null(json_object_get(json_object_get(real, "first_response_s"), "p50"));
    assert_non_null(json_object_get(json_object_get(real, "handle_time_s"), "p50"));
    assert_non_null(json_object_get(json_object_get(real, "csat"), "average"));
    assert_non_null(json_object_get(json_object_get(real, "csat"), "count"));

    s = cca_tgbot_stats_text(real, CCA_LANG_RU);
    assert_string_equal(s, "Ваша статистика:\n"
                           "Диалогов: 0 (открыто сейчас: 0, закрыто: 0)\n"
                           "Отправлено сообщений: 0\n"
                           "Первый ответ (медиана): нет данных\n"
                           "Время диалога (медиана): нет данных\n"
                           "Оценка клиентов: пока нет оценок");
    free(s);
    json_decref(real);
    cca_stats_free(st);

    o = json_pack("{s:i, s:i, s:i, s:i, s:{s:i, s:f, s:f, s:f}, s:{s:i, s:f, s:f, s:f},"
                  " s:{s:i, s:f, s:{}}}",
                  "dialogs_handled", 12, "open_now", 2, "closed", 10, "messages_sent", 85,
                  "first_response_s", "count", 10, "p50", 65.4, "p90", 200.0, "mean",
                  90.0, "handle_time_s", "count", 10, "p50", 720.0, "p90", 1800.0, "mean",
                  800.0, "csat", "count", 7, "average", 4.5714, "distribution");
    assert_non_null(o);
    s = cca_tgbot_stats_text(o, CCA_LANG_RU);
    assert_contains(s, "Диалогов: 12 (открыто сейчас: 2, закрыто: 10)\n");
    assert_contains(s, "Отправлено сообщений: 85\n");
    assert_contains(s, "Первый ответ (медиана): 1 мин 5 с\n");
    assert_contains(s, "Время диалога (медиана): 12 мин\n");
    assert_contains(s, "Оценка клиентов: 4,6 из 5 (оценок: 7)");
    free(s);
    s = cca_tgbot_stats_text(o, CCA_LANG_EN);
    assert_contains(s, "Dialogs: 12 (open now: 2, closed: 10)\n");
    assert_contains(s, "Messages sent: 85\n");
    assert_contains(s, "First response (median): 1 min 5 s\n");
    assert_contains(s, "Handle time (median): 12 min\n");
    assert_contains(s, "Customer rating: 4.6 of 5 (7 rated)");
    free(s);
    json_decref(o);

    /* not an object: still an answer */
    s = cca_tgbot_stats_text(NULL, CCA_LANG_EN);
    assert_contains(s, "Dialogs: 0 ");
    assert_contains(s, "no ratings yet");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_parse),
        cmocka_unit_test(test_cmd_operator),
        cmocka_unit_test(test_lang),
        cmocka_unit_test(test_phrases),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_status_name),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_card_ru),
        cmocka_unit_test(test_card_en_minimal),
        cmocka_unit_test(test_card_limits),
        cmocka_unit_test(test_card_keyboard),
        cmocka_unit_test(test_rate_keyboard),
        cmocka_unit_test(test_parse_callback),
        cmocka_unit_test(test_parse_client),
        cmocka_unit_test(test_clients_text),
        cmocka_unit_test(test_relay_text),
        cmocka_unit_test(test_stats_text),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
