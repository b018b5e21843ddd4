/* SPDX-License-Identifier: MIT */
/*
 * The Telegram bot's words and commands (include/cca/tgbot.h): the command
 * table, the phrases in English and Russian, the operator's cards and lists,
 * the inline keyboards and their callback data. Pure: constant tables only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cca/mem.h"
#include "cca/tgapi.h"
#include "cca/tgbot.h"

#define NUMBER_MAX      9999u /* the largest short number of a client */
#define CARD_LINES      5     /* messages shown on a card */
#define LINE_MAX_CP     300   /* code points of a card line's text, "…" included */
#define NAME_MAX_CP     64    /* code points of a customer name in a card or list */
#define LIST_MAX        100   /* clients listed by /clients and /status */
#define ELLIPSIS        "\xe2\x80\xa6" /* U+2026 */
#define CLIENT_WORD_MAX 64 /* bytes of the first word of parse_client's args */

/* ---- commands ---------------------------------------------------------------- */

/* Every name the bot answers to, aliases included. */
static const struct {
    const char *name;
    enum cca_tgbot_cmd cmd;
} names[] = {
    {"start", CCA_TGBOT_CMD_START},
    {"help", CCA_TGBOT_CMD_HELP},
    {"register", CCA_TGBOT_CMD_REGISTER},
    {"register_support", CCA_TGBOT_CMD_REGISTER}, /* seed 001 */
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
    {"done", CCA_TGBOT_CMD_END},     /* seed 004 */
    {"end_chat", CCA_TGBOT_CMD_END}, /* seed 001 */
    {"history", CCA_TGBOT_CMD_HISTORY},
    {"stats", CCA_TGBOT_CMD_STATS},
    {"ai", CCA_TGBOT_CMD_AI},
};

/* A command's own name (setMyCommands), usage line and menu description. */
struct command {
    const char *name;
    const char *usage[CCA_LANG__COUNT];
    const char *desc[CCA_LANG__COUNT];
};

static const struct command commands[CCA_TGBOT_CMD__COUNT] = {
    [CCA_TGBOT_CMD_START] = {"start",
                             {"/start", "/start"},
                             {"Start a conversation with support",
                              "Начать диалог с поддержкой"}},
    [CCA_TGBOT_CMD_HELP] = {"help",
                            {"/help", "/help"},
                            {"What the bot can do", "Что умеет бот"}},
    [CCA_TGBOT_CMD_REGISTER] = {"register",
                                {"/register <secret>", "/register <секрет>"},
                                {"Register as an operator with the secret",
                                 "Регистрация оператора по секретному коду"}},
    [CCA_TGBOT_CMD_OPERATOR] = {"operator",
                                {"/operator <PIN>", "/operator <PIN>"},
                                {"Sign in as an operator with a PIN",
                                 "Вход оператора по PIN-коду"}},
    [CCA_TGBOT_CMD_AVAILABLE] = {"available",
                                 {"/available", "/available"},
                                 {"Ready to take new clients",
                                  "Готов принимать новых клиентов"}},
    [CCA_TGBOT_CMD_BUSY] = {"busy",
                            {"/busy", "/busy"},
                            {"Busy: keep current clients, take no new ones",
                             "Занят: новых клиентов не назначать"}},
    [CCA_TGBOT_CMD_OFFLINE] = {"offline",
                               {"/offline", "/offline"},
                               {"Go offline", "Уйти из сети"}},
    [CCA_TGBOT_CMD_STATUS] = {"status",
                              {"/status", "/status"},
                              {"Your status and clients", "Ваш статус и клиенты"}},
    [CCA_TGBOT_CMD_CLIENTS] = {"clients",
                               {"/clients", "/clients"},
                               {"Your current clients", "Ваши текущие клиенты"}},
    [CCA_TGBOT_CMD_FOCUS] = {"focus",
                             {"/focus <client>", "/focus <клиент>"},
                             {"Choose the client your messages go to",
                              "Выбрать клиента, которому уходят ваши сообщения"}},
    [CCA_TGBOT_CMD_REPLY] = {"reply",
                             {"/reply <client> <text>", "/reply <клиент> <текст>"},
                             {"Send one message to a client",
                              "Отправить сообщение клиенту"}},
    [CCA_TGBOT_CMD_NEXT] = {"next",
                            {"/next", "/next"},
                            {"Take the next client from the queue",
                             "Взять следующего клиента из очереди"}},
    [CCA_TGBOT_CMD_USE] = {"use",
                           {"/use <client>", "/use <клиент>"},
                           {"Take a client, or choose one of yours",
                            "Взять клиента или выбрать одного из своих"}},
    [CCA_TGBOT_CMD_END] = {"end",
                           {"/end [client]", "/end [клиент]"},
                           {"Close a dialog", "Завершить диалог"}},
    [CCA_TGBOT_CMD_HISTORY] = {"history",
                               {"/history <client> [limit]", "/history <клиент> [число]"},
                               {"A client's message history",
                                "История переписки с клиентом"}},
    [CCA_TGBOT_CMD_STATS] = {"stats",
                             {"/stats", "/stats"},
                             {"Your statistics", "Ваша статистика"}},
    [CCA_TGBOT_CMD_AI] = {"ai",
                          {"/ai [client]", "/ai [клиент]"},
                          {"Hand a client back to the virtual assistant",
                           "Вернуть клиента виртуальному помощнику"}},
};

static enum cca_lang lang_ok(enum cca_lang lang)
{
    return (unsigned)lang < CCA_LANG__COUNT ? lang : CCA_LANG_EN;
}

enum cca_tgbot_cmd cca_tgbot_cmd_parse(const char *name)
{
    for (size_t i = 0; name != NULL && i < CCA_ARRAY_SIZE(names); i++) {
        if (strcmp(name, names[i].name) == 0)
            return names[i].cmd;
    }
    return CCA_TGBOT_CMD_NONE;
}

bool cca_tgbot_cmd_operator(enum cca_tgbot_cmd cmd)
{
    switch (cmd) {
        case CCA_TGBOT_CMD_AVAILABLE:
        case CCA_TGBOT_CMD_BUSY:
        case CCA_TGBOT_CMD_OFFLINE:
        case CCA_TGBOT_CMD_STATUS:
        case CCA_TGBOT_CMD_CLIENTS:
        case CCA_TGBOT_CMD_FOCUS:
        case CCA_TGBOT_CMD_REPLY:
        case CCA_TGBOT_CMD_NEXT:
        case CCA_TGBOT_CMD_USE:
        case CCA_TGBOT_CMD_END:
        case CCA_TGBOT_CMD_HISTORY:
        case CCA_TGBOT_CMD_STATS:
        case CCA_TGBOT_CMD_AI:
            return true;
        default:
            return false;
    }
}

const char *cca_tgbot_usage(enum cca_tgbot_cmd cmd, enum cca_lang lang)
{
    if ((unsigned)cmd >= CCA_TGBOT_CMD__COUNT || commands[cmd].name == NULL)
        return "";
    return commands[cmd].usage[lang_ok(lang)];
}

json_t *cca_tgbot_commands(enum cca_lang lang)
{
    json_t *a = json_array();

    lang = lang_ok(lang);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(commands); i++) {
        if (commands[i].name == NULL)
            continue;
        (void)json_array_append_new(a,
                                    json_pack("{s:s, s:s}", "command", commands[i].name,
                                              "description", commands[i].desc[lang]));
    }
    return a;
}

/* ---- language ------------------------------------------------------------------ */

enum cca_lang cca_tgbot_lang(const char *language_code, const char *text)
{
    static const char *const russian[] = {"ru", "uk", "be", "kk"};

    if (language_code != NULL && language_code[0] != '\0') {
        for (size_t i = 0; i < CCA_ARRAY_SIZE(russian); i++) {
            char end;

            if (strncasecmp(language_code, russian[i], 2) != 0)
                continue;
            end = language_code[2];
            if (end == '\0' || end == '-' || end == '_')
                return CCA_LANG_RU;
        }
        return CCA_LANG_EN;
    }
    if (text == NULL)
        return CCA_LANG_EN;
    return cca_text_detect_lang(text, strlen(text));
}

/* ---- phrases ------------------------------------------------------------------- */

static const char *const phrases[CCA_TGBOT_MSG__COUNT][CCA_LANG__COUNT] = {
    [CCA_TGBOT_GREETING] =
        {"Hello! This is the support service. How may we address you? Please send your "
         "name.",
         "Здравствуйте! Это служба поддержки. Как к вам обращаться? Напишите, "
         "пожалуйста, ваше имя."},
    [CCA_TGBOT_WELCOME_BACK] = {"Welcome back, %s! How can we help you today?",
                                "С возвращением, %s! Чем можем помочь?"},
    [CCA_TGBOT_NAME_SAVED] =
        {"Nice to meet you, %s! Please describe your question and we will help.",
         "Приятно познакомиться, %s! Опишите, пожалуйста, ваш вопрос, и мы поможем."},
    [CCA_TGBOT_BAD_NAME] =
        {"Sorry, that does not look like a name. Please send just your name in a short "
         "message.",
         "Не получилось сохранить имя. Пожалуйста, напишите только ваше имя коротким "
         "сообщением."},
    [CCA_TGBOT_RATE_ASK] =
        {"Please rate our help from 1 (bad) to 5 (excellent).",
         "Пожалуйста, оцените нашу помощь от 1 (плохо) до 5 (отлично)."},
    [CCA_TGBOT_RATE_THANKS] = {"Thank you for your rating (%d of 5)! We are always glad "
                               "to help.",
                               "Спасибо за оценку (%d из 5)! Всегда рады помочь."},
    [CCA_TGBOT_HELP_CUSTOMER] =
        {"Just write your question and our virtual assistant will answer. To talk to a "
         "person, write \"operator\".\n"
         "/start - start over\n"
         "/help - this help",
         "Просто напишите ваш вопрос, и вам ответит виртуальный помощник. Чтобы "
         "поговорить с человеком, напишите «оператор».\n"
         "/start - начать сначала\n"
         "/help - эта справка"},
    [CCA_TGBOT_HELP_OPERATOR] =
        {"Operator commands:\n"
         "/available - take new clients\n"
         "/busy - keep your clients, take no new ones\n"
         "/offline - go offline\n"
         "/status - your status and clients\n"
         "/clients - your clients\n"
         "/focus <client> - send your messages to this client\n"
         "/reply <client> <text> - send one message to a client\n"
         "/next - take the next client from the queue\n"
         "/use <client> - take this client, or choose it if it is already yours\n"
         "/end [client] - close the dialog (also /done)\n"
         "/ai [client] - hand the client back to the virtual assistant\n"
         "/history <client> [limit] - the client's message history\n"
         "/stats - your statistics\n"
         "/help - this help\n"
         "<client> is the client's number (3 or #3) or the dialog id. A message without "
         "a command goes to the chosen client.",
         "Команды оператора:\n"
         "/available - принимать новых клиентов\n"
         "/busy - занят: оставить текущих клиентов, новых не назначать\n"
         "/offline - уйти из сети\n"
         "/status - ваш статус и клиенты\n"
         "/clients - ваши клиенты\n"
         "/focus <клиент> - отправлять ваши сообщения этому клиенту\n"
         "/reply <клиент> <текст> - отправить клиенту одно сообщение\n"
         "/next - взять следующего клиента из очереди\n"
         "/use <клиент> - взять клиента или выбрать его, если он уже ваш\n"
         "/end [клиент] - завершить диалог (также /done)\n"
         "/ai [клиент] - вернуть клиента виртуальному помощнику\n"
         "/history <клиент> [число] - история переписки с клиентом\n"
         "/stats - ваша статистика\n"
         "/help - эта справка\n"
         "<клиент> - номер клиента (3 или #3) или id диалога. Сообщение без команды "
         "уходит выбранному клиенту."},
    [CCA_TGBOT_REGISTERED] =
        {"Welcome, %s! You are registered as an operator. Send /available to start "
         "taking clients, or /help to see all commands.",
         "Добро пожаловать, %s! Вы зарегистрированы как оператор. Отправьте /available, "
         "чтобы начать принимать клиентов, или /help, чтобы увидеть все команды."},
    [CCA_TGBOT_ALREADY] = {"You are already registered as an operator. Send /help to see "
                           "the commands.",
                           "Вы уже зарегистрированы как оператор. Список команд: /help."},
    [CCA_TGBOT_BAD_SECRET] = {"Registration failed: the code is not valid.",
                              "Регистрация не удалась: неверный код."},
    [CCA_TGBOT_TOO_MANY] = {"Too many attempts. Please try again in %d s.",
                            "Слишком много попыток. Попробуйте снова через %d с."},
    [CCA_TGBOT_REG_CLOSED] = {"Operator registration is turned off for this service.",
                              "Регистрация операторов в этом сервисе отключена."},
    [CCA_TGBOT_NOT_OPERATOR] = {"This command is for operators only.",
                                "Эта команда доступна только операторам."},
    [CCA_TGBOT_STATUS_SET] = {"Your status: %s.", "Ваш статус: %s."},
    [CCA_TGBOT_NO_CLIENTS] = {"You have no clients right now.",
                              "Сейчас у вас нет клиентов."},
    [CCA_TGBOT_UNKNOWN_CLIENT] = {"You have no client \"%s\". Send /clients to see your "
                                  "clients.",
                                  "У вас нет клиента «%s». Список ваших клиентов: "
                                  "/clients."},
    [CCA_TGBOT_FOCUS_SET] = {"Now writing to client #%u, %s. Messages without a command "
                             "go to this client.",
                             "Выбран клиент #%u, %s. Сообщения без команды теперь уходят "
                             "этому клиенту."},
    [CCA_TGBOT_NEED_FOCUS] = {"You have several clients. Choose one with /focus <client> "
                              "or send /reply <client> <text>.",
                              "У вас несколько клиентов. Выберите одного командой /focus "
                              "<клиент> или ответьте через /reply <клиент> <текст>."},
    [CCA_TGBOT_QUEUE_EMPTY] = {"Nobody is waiting in the queue.",
                               "В очереди никого нет."},
    [CCA_TGBOT_ENDED] = {"The dialog with client #%u, %s is closed.",
                         "Диалог с клиентом #%u, %s завершён."},
    [CCA_TGBOT_HANDED_BACK] = {"Client #%u, %s is back with the virtual assistant.",
                               "Клиент #%u, %s передан виртуальному помощнику."},
    [CCA_TGBOT_USAGE] = {"Usage: %s", "Формат команды: %s"},
    [CCA_TGBOT_UNKNOWN_COMMAND] = {"Unknown command. Send /help to see the commands.",
                                   "Неизвестная команда. Список команд: /help."},
    [CCA_TGBOT_FAILED] = {"Could not do that: %s", "Не удалось выполнить: %s"},
    [CCA_TGBOT_CUSTOMER_GONE] =
        {"Client #%u, %s has blocked the bot and will not receive "
         "your messages.",
         "Клиент #%u, %s заблокировал бота и не получит ваши "
         "сообщения."},
    [CCA_TGBOT_TRANSFERRED] = {"Client #%u, %s has been transferred to another operator.",
                               "Клиент #%u, %s передан другому оператору."},
};

const char *cca_tgbot_text(enum cca_tgbot_msg m, enum cca_lang lang)
{
    if ((unsigned)m >= CCA_TGBOT_MSG__COUNT || (unsigned)lang >= CCA_LANG__COUNT)
        return "";
    return phrases[m][lang];
}

/* ---- a growing string ---------------------------------------------------------------
 */

struct sbuf {
    char *p;
    size_t len;
    size_t cap;
};

static void sb_grow(struct sbuf *b, size_t more)
{
    size_t need = b->len + more + 1;

    if (need <= b->cap)
        return;
    while (b->cap < need)
        b->cap = b->cap == 0 ? 128 : 2 * b->cap;
    b->p = cca_xrealloc(b->p, b->cap);
    b->p[b->len] = '\0';
}

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    sb_grow(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
/* The formats are the phrase table's and this file's own literals. */
static void sb_vprintf(struct sbuf *b, const char *fmt, va_list ap)
{
    va_list again;
    int n;

    va_copy(again, ap);
    n = vsnprintf(NULL, 0, fmt, again);
    va_end(again);
    if (n <= 0) {
        sb_grow(b, 0);
        return;
    }
    sb_grow(b, (size_t)n);
    (void)vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}
#pragma GCC diagnostic pop

static void sb_printf(struct sbuf *b, const char *fmt, ...) CCA_PRINTF(2, 3);
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

/* The text built, never NULL. */
static char *sb_take(struct sbuf *b)
{
    sb_grow(b, 0);
    return b->p;
}

char *cca_tgbot_format(enum cca_lang lang, enum cca_tgbot_msg m, ...)
{
    struct sbuf b = {0};
    va_list ap;

    va_start(ap, m);
    sb_vprintf(&b, cca_tgbot_text(m, lang), ap);
    va_end(ap);
    return sb_take(&b);
}

/* ---- pieces of text -----------------------------------------------------------------
 */

static bool is_cont(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

/*
 * @s on one line (ASCII controls become spaces, so a customer's line breaks
 * cannot fake lines of the card) and at most @max_cp code points: a longer
 * text keeps @max_cp - 1 of them, then "…".
 */
static void put_line(struct sbuf *b, const char *s, size_t max_cp)
{
    size_t cp = 0;
    size_t cut = 0; /* bytes of the first max_cp - 1 code points */
    size_t i;
    size_t start = b->len;

    for (i = 0; s[i] != '\0'; i++) {
        if (is_cont((unsigned char)s[i]))
            continue;
        if (cp == max_cp - 1)
            cut = i;
        cp++;
    }
    if (cp <= max_cp)
        cut = i;
    sb_put(b, s, cut);
    for (size_t k = start; k < b->len; k++) {
        if ((unsigned char)b->p[k] < 0x20 || b->p[k] == 0x7f)
            b->p[k] = ' ';
    }
    if (cp > max_cp) {
        while (b->len > start && b->p[b->len - 1] == ' ')
            b->p[--b->len] = '\0';
        sb_puts(b, ELLIPSIS);
    }
}

static bool empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* "Anna", or "Client #3" when there is no name. */
static void put_name(struct sbuf *b, const char *name, unsigned number,
                     enum cca_lang lang)
{
    if (empty(name))
        sb_printf(b, lang == CCA_LANG_RU ? "Клиент #%u" : "Client #%u", number);
    else
        put_line(b, name, NAME_MAX_CP);
}

/* "45 s", "2 min 5 s", "1 h 20 min", "3 d 4 h" (rounded to the second). */
static void put_duration(struct sbuf *b, double s, enum cca_lang lang)
{
    bool ru = lang == CCA_LANG_RU;
    long long n;

    if (!isfinite(s) || s < 0)
        s = 0;
    if (s > 1e12) /* beyond any real wait; keeps the cast defined */
        s = 1e12;
    n = llround(s);
    if (n < 60)
        sb_printf(b, ru ? "%lld с" : "%lld s", n);
    else if (n < 3600 && n % 60 == 0)
        sb_printf(b, ru ? "%lld мин" : "%lld min", n / 60);
    else if (n < 3600)
        sb_printf(b, ru ? "%lld мин %lld с" : "%lld min %lld s", n / 60, n % 60);
    else if (n < 86400)
        sb_printf(b, ru ? "%lld ч %lld мин" : "%lld h %lld min", n / 3600, n % 3600 / 60);
    else
        sb_printf(b, ru ? "%lld д %lld ч" : "%lld d %lld h", n / 86400, n % 86400 / 3600);
}

/* A word and how it reads in each language. */
struct word {
    const char *key;
    const char *text[CCA_LANG__COUNT];
};

static const char *pick(const struct word *t, size_t n, const char *key,
                        enum cca_lang lang)
{
    for (size_t i = 0; key != NULL && i < n; i++) {
        if (strcmp(t[i].key, key) == 0)
            return t[i].text[lang_ok(lang)];
    }
    return NULL;
}

const char *cca_tgbot_status_name(const char *status, enum cca_lang lang)
{
    static const struct word t[] = {
        {"available", {"available", "доступен"}},
        {"busy", {"busy", "занят"}},
        {"offline", {"offline", "не в сети"}},
    };
    const char *s = pick(t, CCA_ARRAY_SIZE(t), status, lang);

    return s != NULL ? s : status != NULL ? status : "";
}

/* A dialog status as its operator reads it. */
static const char *dialog_status_name(const char *status, enum cca_lang lang)
{
    static const struct word t[] = {
        {"active", {"with the assistant", "у помощника"}},
        {"escalated", {"escalated", "эскалирован"}},
        {"closed", {"closed", "закрыт"}},
        {"queued", {"in the queue", "в очереди"}},
        {"assigned", {"in progress", "в работе"}},
    };
    const char *s = pick(t, CCA_ARRAY_SIZE(t), status, lang);

    return s != NULL ? s : status != NULL ? status : "?";
}

/* Who said a line of a card (the AI turn's roles and the human side's). */
static const char *role_name(const char *role, enum cca_lang lang)
{
    static const struct word t[] = {
        {"user", {"Client", "Клиент"}},           {"customer", {"Client", "Клиент"}},
        {"assistant", {"Assistant", "Помощник"}}, {"agent", {"Assistant", "Помощник"}},
        {"operator", {"Operator", "Оператор"}},   {"system", {"System", "Система"}},
    };
    const char *s = pick(t, CCA_ARRAY_SIZE(t), role, lang);

    return s != NULL ? s : role != NULL ? role : "?";
}

static const char *lang_name(const char *code, enum cca_lang lang)
{
    static const struct word t[] = {
        {"ru", {"Russian", "русский"}},
        {"en", {"English", "английский"}},
    };
    const char *s = pick(t, CCA_ARRAY_SIZE(t), code, lang);

    return s != NULL ? s : code;
}

/* ---- the card -----------------------------------------------------------------------
 */

char *cca_tgbot_card_text(const struct cca_tgbot_card *c, enum cca_lang lang)
{
    struct sbuf b = {0};
    bool ru;
    size_t first;

    if (c == NULL)
        return cca_xstrdup("");
    lang = lang_ok(lang);
    ru = lang == CCA_LANG_RU;
    if (c->transfer)
        sb_printf(&b, ru ? "Вам передан клиент #%u" : "Transferred to you: client #%u",
                  c->number);
    else
        sb_printf(&b, ru ? "Новый клиент #%u" : "New client #%u", c->number);
    if (!empty(c->name)) {
        sb_puts(&b, ru || !c->transfer ? ": " : ", ");
        put_line(&b, c->name, NAME_MAX_CP);
    }
    sb_puts(&b, "\n");
    if (!empty(c->lang)) {
        sb_puts(&b, ru ? "Язык: " : "Language: ");
        put_line(&b, lang_name(c->lang, lang), 32);
        sb_puts(&b, "\n");
    }
    if (!empty(c->channel)) {
        sb_puts(&b, ru ? "Канал: " : "Channel: ");
        put_line(&b, c->channel, 32);
        sb_puts(&b, "\n");
    }
    if (!empty(c->reason)) {
        sb_puts(&b, ru ? "Причина: " : "Reason: ");
        put_line(&b, c->reason, LINE_MAX_CP);
        sb_puts(&b, "\n");
    }
    if (c->waited_s >= 0 && isfinite(c->waited_s)) {
        sb_puts(&b, ru ? "Ожидание в очереди: " : "Waited in the queue: ");
        put_duration(&b, c->waited_s, lang);
        sb_puts(&b, "\n");
    }
    if (c->lines != NULL && c->nlines > 0) {
        first = c->nlines > CARD_LINES ? c->nlines - CARD_LINES : 0;
        sb_puts(&b, ru ? "\nПоследние сообщения:\n" : "\nLast messages:\n");
        for (size_t i = first; i < c->nlines; i++) {
            sb_printf(&b, "%s: ", role_name(c->lines[i].role, lang));
            put_line(&b, c->lines[i].text != NULL ? c->lines[i].text : "", LINE_MAX_CP);
            sb_puts(&b, "\n");
        }
    }
    sb_printf(&b,
              ru ? "\nНажмите «Ответить» и просто пишите или отправьте /reply %u <текст>."
                 : "\nPress Reply and just write, or send /reply %u <text>.",
              c->number);
    return sb_take(&b);
}

/* ---- keyboards and callback data -------------------------------------------------- */

json_t *cca_tgbot_card_keyboard(unsigned number, enum cca_lang lang)
{
    static const char *const texts[CCA_LANG__COUNT][3] = {
        {"Reply", "Close", "Back to assistant"},
        {"Ответить", "Завершить", "Вернуть помощнику"},
    };
    static const char prefix[3] = {'f', 'e', 'a'};
    char data[3][16];
    const char *datas[3];

    for (size_t i = 0; i < 3; i++) {
        (void)snprintf(data[i], sizeof(data[i]), "%c:%u", prefix[i], number);
        datas[i] = data[i];
    }
    return cca_tg_keyboard(texts[lang_ok(lang)], datas, 3, 3);
}

json_t *cca_tgbot_rate_keyboard(const char *dialog_id)
{
    static const char *const texts[5] = {"1", "2", "3", "4", "5"};
    char id[37];
    char data[5][48];
    const char *datas[5];

    if (dialog_id == NULL || !cca_uuid_canonical(dialog_id, id))
        return NULL;
    for (int i = 0; i < 5; i++) {
        (void)snprintf(data[i], sizeof(data[i]), "r:%d:%s", i + 1, id);
        datas[i] = data[i];
    }
    return cca_tg_keyboard(texts, datas, 5, 5);
}

/* 1..NUMBER_MAX written in decimal digits, no sign, no leading zero, @s[0..n). */
static bool parse_number(const char *s, size_t n, unsigned *ret)
{
    unsigned v = 0;

    if (n == 0 || n > 4 || s[0] == '0')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *ret = v;
    return v >= 1 && v <= NUMBER_MAX;
}

enum cca_tgbot_action cca_tgbot_parse_callback(const char *data, unsigned *ret_number,
                                               int *ret_score, char dialog_id[37])
{
    enum cca_tgbot_action act;
    unsigned number;
    char id[37];

    if (data == NULL || data[0] == '\0' || data[1] != ':')
        return CCA_TGBOT_ACT_NONE;
    switch (data[0]) {
        case 'f':
            act = CCA_TGBOT_ACT_FOCUS;
            break;
        case 'e':
            act = CCA_TGBOT_ACT_END;
            break;
        case 'a':
            act = CCA_TGBOT_ACT_AI;
            break;
        case 'r':
            if (data[2] < '1' || data[2] > '5' || data[3] != ':' ||
                strlen(data + 4) != 36 || !cca_uuid_canonical(data + 4, id))
                return CCA_TGBOT_ACT_NONE;
            if (ret_score != NULL)
                *ret_score = data[2] - '0';
            if (dialog_id != NULL)
                memcpy(dialog_id, id, sizeof(id));
            return CCA_TGBOT_ACT_RATE;
        default:
            return CCA_TGBOT_ACT_NONE;
    }
    if (!parse_number(data + 2, strlen(data + 2), &number))
        return CCA_TGBOT_ACT_NONE;
    if (ret_number != NULL)
        *ret_number = number;
    return act;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool cca_tgbot_parse_client(const char *args, unsigned *ret_number, char dialog_id[37],
                            const char **ret_rest)
{
    const char *w;
    size_t n;
    unsigned number = 0;
    char word[CLIENT_WORD_MAX];
    char id[37] = "";

    if (args == NULL)
        return false;
    w = args;
    while (is_space(*w))
        w++;
    for (n = 0; w[n] != '\0' && !is_space(w[n]); n++)
        ;
    if (n == 0 || n >= sizeof(word))
        return false;
    if (w[0] == '#') {
        if (!parse_number(w + 1, n - 1, &number))
            return false;
    } else if (!parse_number(w, n, &number)) {
        memcpy(word, w, n);
        word[n] = '\0';
        if (!cca_uuid_canonical(word, id))
            return false;
        number = 0;
    }
    w += n;
    while (is_space(*w))
        w++;
    if (ret_number != NULL)
        *ret_number = number;
    memcpy(dialog_id, id, sizeof(id));
    if (ret_rest != NULL)
        *ret_rest = w;
    return true;
}

/* ---- lists and relays ---------------------------------------------------------------
 */

char *cca_tgbot_clients_text(const char *status, const struct cca_tgbot_client *c,
                             size_t n, enum cca_lang lang)
{
    struct sbuf b = {0};
    bool ru;

    lang = lang_ok(lang);
    ru = lang == CCA_LANG_RU;
    if (status != NULL) {
        sb_puts(&b, ru ? "Ваш статус: " : "Your status: ");
        put_line(&b, cca_tgbot_status_name(status, lang), 32);
        sb_puts(&b, "\n");
    }
    if (c == NULL || n == 0) {
        sb_puts(&b, cca_tgbot_text(CCA_TGBOT_NO_CLIENTS, lang));
        return sb_take(&b);
    }
    sb_puts(&b, ru ? "Ваши клиенты:" : "Your clients:");
    for (size_t i = 0; i < n && i < LIST_MAX; i++) {
        sb_printf(&b, "\n%s#%u ", c[i].focused ? "> " : "", c[i].number);
        put_name(&b, c[i].name, c[i].number, lang);
        sb_puts(&b, " - ");
        sb_puts(&b, dialog_status_name(c[i].status, lang));
        if (c[i].waiting_s >= 0 && isfinite(c[i].waiting_s)) {
            sb_puts(&b, ru ? ", ждёт ответа " : ", waiting for a reply ");
            put_duration(&b, c[i].waiting_s, lang);
        }
        if (c[i].focused)
            sb_puts(&b, ru ? " (выбран)" : " (chosen)");
    }
    if (n > LIST_MAX)
        sb_printf(&b, ru ? "\n… и ещё %zu" : "\n… and %zu more", n - LIST_MAX);
    return sb_take(&b);
}

char *cca_tgbot_relay_text(const char *name, unsigned number, const char *media,
                           const char *text)
{
    struct sbuf b = {0};

    if (!empty(name)) {
        put_line(&b, name, NAME_MAX_CP);
        sb_printf(&b, " (#%u):", number);
    } else {
        sb_printf(&b, "#%u:", number);
    }
    if (!empty(media)) {
        sb_puts(&b, " [");
        put_line(&b, media, 32);
        sb_puts(&b, "]");
    }
    if (!empty(text)) {
        sb_puts(&b, " ");
        sb_puts(&b, text);
    }
    return sb_take(&b);
}

/* ---- statistics ---------------------------------------------------------------------
 */

static long long count_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_number(v) ? llround(json_number_value(v)) : 0;
}

/* The p50 of a {"count", "p50", ...} object, or "no data". */
static void put_p50(struct sbuf *b, json_t *durations, enum cca_lang lang)
{
    json_t *p50 = json_object_get(durations, "p50");

    if (json_is_number(p50) && count_of(durations, "count") > 0)
        put_duration(b, json_number_value(p50), lang);
    else
        sb_puts(b, lang == CCA_LANG_RU ? "нет данных" : "no data");
}

char *cca_tgbot_stats_text(json_t *stats, enum cca_lang lang)
{
    struct sbuf b = {0};
    json_t *csat = json_object_get(stats, "csat");
    json_t *avg = json_object_get(csat, "average");
    long long rated = count_of(csat, "count");
    bool ru;

    lang = lang_ok(lang);
    ru = lang == CCA_LANG_RU;
    sb_puts(&b, ru ? "Ваша статистика:\n" : "Your statistics:\n");
    sb_printf(&b,
              ru ? "Диалогов: %lld (открыто сейчас: %lld, закрыто: %lld)\n"
                 : "Dialogs: %lld (open now: %lld, closed: %lld)\n",
              count_of(stats, "dialogs_handled"), count_of(stats, "open_now"),
              count_of(stats, "closed"));
    sb_printf(&b, ru ? "Отправлено сообщений: %lld\n" : "Messages sent: %lld\n",
              count_of(stats, "messages_sent"));
    sb_puts(&b, ru ? "Первый ответ (медиана): " : "First response (median): ");
    put_p50(&b, json_object_get(stats, "first_response_s"), lang);
    sb_puts(&b, ru ? "\nВремя диалога (медиана): " : "\nHandle time (median): ");
    put_p50(&b, json_object_get(stats, "handle_time_s"), lang);
    if (rated > 0 && json_is_number(avg)) {
        double a = json_number_value(avg);
        long long tenths = llround((isfinite(a) && a >= 0 && a <= 5 ? a : 0) * 10);

        /* Tenths by hand: the decimal comma in Russian, and no locale. */
        sb_printf(&b,
                  ru ? "\nОценка клиентов: %lld,%lld из 5 (оценок: %lld)"
                     : "\nCustomer rating: %lld.%lld of 5 (%lld rated)",
                  tenths / 10, tenths % 10, rated);
    } else {
        sb_puts(&b, ru ? "\nОценка клиентов: пока нет оценок"
                       : "\nCustomer rating: no ratings yet");
    }
    return sb_take(&b);
}
