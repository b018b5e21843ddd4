/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cca/agent.h"
#include "cca/text.h"

#define DATA_DIR CCA_SOURCE_ROOT "/data"

/* Every file of data/ that cca_agents_new reads. */
static const char *const data_files[] = {
    "agents/agents.json",         "agents/classifier.en.txt",
    "agents/classifier.ru.txt",   "agents/sales.en.txt",
    "agents/sales.ru.txt",        "agents/supervisor.en.txt",
    "agents/supervisor.ru.txt",   "agents/tech_support.en.txt",
    "agents/tech_support.ru.txt", "knowledge/sales.json",
    "knowledge/supervisor.json",  "knowledge/tech_support.json",
};

static struct cca_agents *agents;

static int group_setup(void **state)
{
    struct cca_error err = {0};

    (void)state;
    if (cca_agents_new(DATA_DIR, &agents, &err) != CCA_OK) {
        fprintf(stderr, "cca_agents_new: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    cca_agents_free(agents);
    agents = NULL;
    cca_text_thread_cleanup();
    return 0;
}

/* The offline reply for a NUL-terminated @text; fails the test on NULL. */
static char *reply(enum cca_agent agent, enum cca_lang lang, const char *text,
                   bool handoff)
{
    char *r = cca_agents_offline_reply(agents, agent, lang, text, strlen(text), handoff);

    assert_non_null(r);
    return r;
}

static void assert_reply_has(enum cca_agent agent, enum cca_lang lang, const char *text,
                             const char *const *needles, size_t n)
{
    char *r = reply(agent, lang, text, false);

    for (size_t i = 0; i < n; i++) {
        if (strstr(r, needles[i]) == NULL)
            fail_msg("reply of %s to '%s' lacks '%s':\n%s", cca_agent_name(agent), text,
                     needles[i], r);
    }
    free(r);
}

static void test_load_ok(void **state)
{
    (void)state;
    assert_non_null(agents);
    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        for (int l = 0; l < CCA_LANG__COUNT; l++) {
            const char *p =
                cca_agents_prompt(agents, (enum cca_agent)a, (enum cca_lang)l);

            assert_non_null(p);
            assert_true(strlen(p) > 200);
            /* Placeholders are expanded; nothing is left for the model to see. */
            assert_null(strstr(p, "{{"));
        }
    }
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        const char *p = cca_agents_classifier_prompt(agents, (enum cca_lang)l);

        assert_non_null(p);
        assert_non_null(strstr(p, "\"agent\""));
        assert_non_null(strstr(p, "\"confidence\""));
        assert_non_null(strstr(p, "\"reason\""));
        assert_non_null(strstr(p, "tech_support"));
        assert_non_null(strstr(p, "sales"));
        assert_non_null(strstr(p, "supervisor"));
        assert_non_null(strstr(p, "current_agent"));
    }
    assert_null(cca_agents_prompt(agents, CCA_AGENT_NONE, CCA_LANG_RU));
    assert_null(cca_agents_prompt(NULL, CCA_AGENT_SALES, CCA_LANG_RU));
}

static void test_prompts(void **state)
{
    static const char *const prices[] = {"990 ₽", "1990 ₽", "3990 ₽", "1490 ₽",
                                         "300 ₽", "600 ₽",  "900 ₽",  "210 ₽"};

    (void)state;
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        const char *sales = cca_agents_prompt(agents, CCA_AGENT_SALES, (enum cca_lang)l);
        const char *sup =
            cca_agents_prompt(agents, CCA_AGENT_SUPERVISOR, (enum cca_lang)l);

        for (size_t i = 0; i < CCA_ARRAY_SIZE(prices); i++) {
            if (strstr(sales, prices[i]) == NULL)
                fail_msg("sales prompt (%s) lacks '%s'", cca_lang_code((enum cca_lang)l),
                         prices[i]);
        }
        assert_non_null(strstr(sup, "5000 ₽"));
    }
    assert_non_null(strstr(cca_agents_prompt(agents, CCA_AGENT_SALES, CCA_LANG_RU),
                           "«Профи» — 1990 ₽/мес"));
    assert_non_null(strstr(cca_agents_prompt(agents, CCA_AGENT_SALES, CCA_LANG_EN),
                           "Pro (Профи) — 1990 ₽"));
}

static void test_temperatures(void **state)
{
    (void)state;
    assert_float_equal(cca_agents_temperature(agents, CCA_AGENT_TECH_SUPPORT), 0.3, 1e-9);
    assert_float_equal(cca_agents_temperature(agents, CCA_AGENT_SALES), 0.4, 1e-9);
    assert_float_equal(cca_agents_temperature(agents, CCA_AGENT_SUPERVISOR), 0.2, 1e-9);
    assert_float_equal(cca_agents_temperature(agents, CCA_AGENT_NONE), 0.0, 1e-9);
}

static void test_demo_ru(void **state)
{
    static const char *const login[] = {"Забыли пароль?", "обновите приложение"};
    static const char *const plans[] = {"«Базовый» — 990 ₽/мес",
                                        "«Профи» — 1990 ₽/мес",
                                        "«Бизнес» — 3990 ₽/мес"};
    static const char *const refund[] = {"возврат", "извинения", "3 рабочих дней",
                                         "10 дней"};

    (void)state;
    assert_reply_has(CCA_AGENT_TECH_SUPPORT, CCA_LANG_RU,
                     "Не работает приложение, не могу войти в аккаунт", login,
                     CCA_ARRAY_SIZE(login));
    assert_reply_has(CCA_AGENT_SALES, CCA_LANG_RU, "Какие у вас тарифы?", plans,
                     CCA_ARRAY_SIZE(plans));
    assert_reply_has(CCA_AGENT_SUPERVISOR, CCA_LANG_RU,
                     "Хочу вернуть деньги, сервис не работает!", refund,
                     CCA_ARRAY_SIZE(refund));
}

static void test_demo_en(void **state)
{
    static const char *const login[] = {"Forgot password?", "update the app"};
    static const char *const plans[] = {"990 ₽", "1990 ₽", "3990 ₽",
                                        "Basic",   "Pro",      "Business"};
    static const char *const refund[] = {"refund", "sorry", "3 business days", "10 days"};

    (void)state;
    assert_reply_has(CCA_AGENT_TECH_SUPPORT, CCA_LANG_EN,
                     "The app does not work, I cannot log in", login,
                     CCA_ARRAY_SIZE(login));
    assert_reply_has(CCA_AGENT_SALES, CCA_LANG_EN, "What plans do you have?", plans,
                     CCA_ARRAY_SIZE(plans));
    assert_reply_has(CCA_AGENT_SUPERVISOR, CCA_LANG_EN,
                     "I want my money back, the service does not work!", refund,
                     CCA_ARRAY_SIZE(refund));
}

/* A few more topics per agent, to catch a knowledge base that only fits the demo. */
static void test_topics(void **state)
{
    static const struct {
        enum cca_agent agent;
        enum cca_lang lang;
        const char *text;
        const char *needle;
    } cases[] = {
        {CCA_AGENT_TECH_SUPPORT, CCA_LANG_RU, "Интернет очень медленный",
         "speedtest.net"},
        {CCA_AGENT_TECH_SUPPORT, CCA_LANG_RU, "Нет интернета, роутер мигает",
         "30 секунд"},
        {CCA_AGENT_TECH_SUPPORT, CCA_LANG_RU, "Приложение вылетает при запуске",
         "Очистите кэш"},
        {CCA_AGENT_TECH_SUPPORT, CCA_LANG_EN, "I do not receive the SMS code",
         "60 seconds"},
        {CCA_AGENT_TECH_SUPPORT, CCA_LANG_EN, "My SIM asks for a PUK code", "PUK"},
        {CCA_AGENT_SALES, CCA_LANG_RU, "Есть скидка для студентов?", "210 ₽"},
        {CCA_AGENT_SALES, CCA_LANG_RU, "Сколько стоит домашний интернет 300 мегабит?",
         "1490 ₽/мес"},
        {CCA_AGENT_SALES, CCA_LANG_EN, "How can I pay?", "SBP"},
        {CCA_AGENT_SALES, CCA_LANG_EN, "I want a cheaper plan", "1st of next month"},
        {CCA_AGENT_SUPERVISOR, CCA_LANG_RU, "Позовите живого человека", "2 часов"},
        {CCA_AGENT_SUPERVISOR, CCA_LANG_RU, "Третий день нет интернета, где компенсация?",
         "5000 ₽"},
        {CCA_AGENT_SUPERVISOR, CCA_LANG_EN, "I will sue you", "written claim"},
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++)
        assert_reply_has(cases[i].agent, cases[i].lang, cases[i].text, &cases[i].needle,
                         1);
}

/* The first line of @r, as a new string. */
static char *first_line(const char *r)
{
    const char *nl = strchr(r, '\n');
    char *line = strndup(r, nl != NULL ? (size_t)(nl - r) : strlen(r));

    assert_non_null(line);
    return line;
}

/*
 * A question about one plan gets that plan's entry, not the catalogue: the
 * first line names the plan with the catalogue's price and no other main
 * plan. Issue 9 item 12: "How much is the Pro plan?" listed all three plans.
 */
static void test_plan_named_first(void **state)
{
    static const struct {
        enum cca_lang lang;
        const char *text;
        const char *line; /* also in the catalogue of the sales prompt */
        const char *others[2];
    } cases[] = {
        {CCA_LANG_EN,
         "How much is the Pro plan?",
         "Pro (Профи) — 1990 ₽ (RUB)/month",
         {"Basic", "Business"}},
        {CCA_LANG_EN,
         "What does the Business plan include?",
         "Business (Бизнес) — 3990 ₽ (RUB)/month",
         {"Basic", "Pro"}},
        {CCA_LANG_EN,
         "How much is the Basic plan?",
         "Basic (Базовый) — 990 ₽ (RUB)/month",
         {"Pro", "Business"}},
        {CCA_LANG_RU,
         "Сколько стоит тариф Pro?",
         "«Профи» — 1990 ₽/мес",
         {"«Базовый»", "«Бизнес»"}},
        {CCA_LANG_RU,
         "Сколько стоит тариф Профи?",
         "«Профи» — 1990 ₽/мес",
         {"«Базовый»", "«Бизнес»"}},
        {CCA_LANG_RU,
         "Что входит в тариф Бизнес?",
         "«Бизнес» — 3990 ₽/мес",
         {"«Базовый»", "«Профи»"}},
        {CCA_LANG_RU,
         "Сколько стоит Базовый?",
         "«Базовый» — 990 ₽/мес",
         {"«Профи»", "«Бизнес»"}},
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        char *r = reply(CCA_AGENT_SALES, cases[i].lang, cases[i].text, false);
        char *line = first_line(r);
        const char *prompt = cca_agents_prompt(agents, CCA_AGENT_SALES, cases[i].lang);

        if (strstr(line, cases[i].line) == NULL)
            fail_msg("reply to '%s' does not open with '%s':\n%s", cases[i].text,
                     cases[i].line, r);
        for (size_t k = 0; k < CCA_ARRAY_SIZE(cases[i].others); k++) {
            if (strstr(line, cases[i].others[k]) != NULL)
                fail_msg("reply to '%s' names %s first:\n%s", cases[i].text,
                         cases[i].others[k], r);
        }
        assert_null(strstr(r, "three main plans"));
        assert_null(strstr(r, "три основных тарифа"));
        /* The plan's own entry and the catalogue quote the same price. */
        assert_non_null(strstr(prompt, cases[i].line));
        free(line);
        free(r);
    }
}

/* Phrases that say the service is broken or promise to repair it. */
static const char *const outage_en[] = {
    "working again", "technical support",       "expect it to work",
    "frustration",   "happened to the service", "service was down",
    "outage"};
static const char *const outage_ru[] = {
    "техническ",           "восстановить работу", "что она работает", "недовольство",
    "случилось со связью", "не было связи",       "перебои"};

static void assert_no_outage(const char *text, const char *r, enum cca_lang lang)
{
    const char *const *v = lang == CCA_LANG_RU ? outage_ru : outage_en;
    size_t n =
        lang == CCA_LANG_RU ? CCA_ARRAY_SIZE(outage_ru) : CCA_ARRAY_SIZE(outage_en);

    for (size_t i = 0; i < n; i++) {
        if (strstr(r, v[i]) != NULL)
            fail_msg(
                "reply to '%s' says '%s' although nothing was said to be broken:\n%s",
                text, v[i], r);
    }
}

/*
 * A refund request that says nothing about a fault gets the refund procedure
 * without "we will get the service working again" (issue 9 item 12).
 */
static void test_refund_no_outage(void **state)
{
    static const struct {
        enum cca_lang lang;
        const char *text;
        const char *needle;
    } cases[] = {
        {CCA_LANG_EN, "I want a refund for my last payment", "3 business days"},
        {CCA_LANG_EN, "How do I get my money back?", "3 business days"},
        {CCA_LANG_EN, "I demand a refund!", "3 business days"},
        {CCA_LANG_RU, "Хочу вернуть деньги за подписку", "3 рабочих дней"},
        {CCA_LANG_RU, "Хочу вернуть деньги", "3 рабочих дней"},
        {CCA_LANG_RU, "Требую возврат денег!", "3 рабочих дней"},
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(cases); i++) {
        char *r = reply(CCA_AGENT_SUPERVISOR, cases[i].lang, cases[i].text, false);

        if (strstr(r, cases[i].needle) == NULL)
            fail_msg("reply to '%s' is not the refund procedure:\n%s", cases[i].text, r);
        assert_no_outage(cases[i].text, r, cases[i].lang);
        free(r);
    }
}

/* When the customer does say it is broken, the reply takes that up. */
static void test_refund_outage(void **state)
{
    char *en = reply(CCA_AGENT_SUPERVISOR, CCA_LANG_EN,
                     "I want my money back, the service does not work!", false);
    char *ru = reply(CCA_AGENT_SUPERVISOR, CCA_LANG_RU,
                     "Хочу вернуть деньги, сервис не работает!", false);

    (void)state;
    assert_non_null(strstr(en, "refund"));
    assert_non_null(strstr(en, "technical support"));
    assert_non_null(strstr(ru, "возврат"));
    assert_non_null(strstr(ru, "техническую поддержку"));
    free(en);
    free(ru);
}

/* Asking about the rules is not reporting an outage. */
static void test_compensation_no_outage(void **state)
{
    char *en =
        reply(CCA_AGENT_SUPERVISOR, CCA_LANG_EN, "Am I entitled to compensation?", false);
    char *ru =
        reply(CCA_AGENT_SUPERVISOR, CCA_LANG_RU, "Положена ли компенсация?", false);

    (void)state;
    assert_non_null(strstr(en, "5000 ₽"));
    assert_null(strstr(en, "I apologise for the outage"));
    assert_non_null(strstr(ru, "5000 ₽"));
    assert_null(strstr(ru, "извинения за перебои"));
    free(en);
    free(ru);
}

/* The reply language is @lang, whatever the text's script. */
static void test_language(void **state)
{
    char *ru = reply(CCA_AGENT_SALES, CCA_LANG_RU, "Какие у вас тарифы?", false);
    char *en = reply(CCA_AGENT_SALES, CCA_LANG_EN, "What plans do you have?", false);
    char *mixed = reply(CCA_AGENT_SALES, CCA_LANG_EN, "Какие у вас тарифы?", false);

    (void)state;
    assert_non_null(strstr(ru, "У нас три основных тарифа"));
    assert_null(strstr(ru, "We have"));
    assert_non_null(strstr(en, "We have three main plans"));
    assert_null(strstr(en, "У нас"));
    assert_int_equal(cca_text_detect_lang(mixed, strlen(mixed)), CCA_LANG_EN);
    free(ru);
    free(en);
    free(mixed);
}

static void test_clarify(void **state)
{
    static const char *const texts[] = {"ыыы", "привет", "asdf qwerty", ""};
    char *r;

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(texts); i++) {
        r = reply(CCA_AGENT_TECH_SUPPORT, CCA_LANG_RU, texts[i], false);
        assert_non_null(strstr(r, "версия приложения"));
        free(r);
        r = reply(CCA_AGENT_TECH_SUPPORT, CCA_LANG_EN, texts[i], false);
        assert_non_null(strstr(r, "app version"));
        free(r);
        r = reply(CCA_AGENT_SALES, CCA_LANG_RU, texts[i], false);
        assert_non_null(strstr(r, "какой бюджет"));
        assert_non_null(strstr(r, "«Базовый» — 990 ₽/мес"));
        free(r);
        r = reply(CCA_AGENT_SALES, CCA_LANG_EN, texts[i], false);
        assert_non_null(strstr(r, "budget"));
        free(r);
        r = reply(CCA_AGENT_SUPERVISOR, CCA_LANG_RU, texts[i], false);
        assert_non_null(strstr(r, "Приношу извинения"));
        free(r);
        r = reply(CCA_AGENT_SUPERVISOR, CCA_LANG_EN, texts[i], false);
        assert_non_null(strstr(r, "I apologise"));
        free(r);
    }
    /* NULL text and invalid UTF-8 also get the clarifying reply. */
    r = cca_agents_offline_reply(agents, CCA_AGENT_TECH_SUPPORT, CCA_LANG_EN, NULL, 0,
                                 false);
    assert_non_null(strstr(r, "app version"));
    free(r);
    r = cca_agents_offline_reply(agents, CCA_AGENT_TECH_SUPPORT, CCA_LANG_EN,
                                 "password \xff\xfe", 11, false);
    assert_non_null(strstr(r, "app version"));
    free(r);
}

static void test_handoff(void **state)
{
    static const char ru_prefix[] = "Вас приветствует отдел продаж.\n\n";
    static const char en_prefix[] = "You are now talking to our sales team.\n\n";
    char *with = reply(CCA_AGENT_SALES, CCA_LANG_RU, "Какие у вас тарифы?", true);
    char *without = reply(CCA_AGENT_SALES, CCA_LANG_RU, "Какие у вас тарифы?", false);
    char *en = reply(CCA_AGENT_SALES, CCA_LANG_EN, "ыыы", true);
    char *tech = reply(CCA_AGENT_TECH_SUPPORT, CCA_LANG_RU, "Забыл пароль", true);

    (void)state;
    assert_memory_equal(with, ru_prefix, strlen(ru_prefix));
    assert_string_equal(with + strlen(ru_prefix), without);
    assert_null(strstr(without, "Вас приветствует"));
    assert_memory_equal(en, en_prefix, strlen(en_prefix));
    assert_non_null(strstr(en, "budget"));
    assert_non_null(strstr(tech, "техническая поддержка"));
    free(with);
    free(without);
    free(en);
    free(tech);
}

static void test_deterministic(void **state)
{
    char *a = reply(CCA_AGENT_SUPERVISOR, CCA_LANG_RU, "Хочу пожаловаться", false);
    char *b = reply(CCA_AGENT_SUPERVISOR, CCA_LANG_RU, "Хочу пожаловаться", false);

    (void)state;
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* The table is immutable: concurrent replies must equal the single-thread ones. */
static void *thread_main(void *arg)
{
    const char *expected = arg;

    for (int i = 0; i < 50; i++) {
        char *r = cca_agents_offline_reply(agents, CCA_AGENT_SALES, CCA_LANG_RU,
                                           "Какие у вас тарифы?",
                                           strlen("Какие у вас тарифы?"), i % 2 == 0);
        const char *body = strstr(r, "У нас три");

        if (body == NULL || strcmp(body, expected) != 0) {
            free(r);
            return (void *)1;
        }
        free(r);
    }
    return NULL;
}

static void test_threads(void **state)
{
    char *expected = reply(CCA_AGENT_SALES, CCA_LANG_RU, "Какие у вас тарифы?", false);
    pthread_t th[4];

    (void)state;
    assert_true(strncmp(expected, "У нас три", strlen("У нас три")) == 0);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(th); i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, expected), 0);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(th); i++) {
        void *res = (void *)1;

        assert_int_equal(pthread_join(th[i], &res), 0);
        assert_null(res);
    }
    free(expected);
}

/* ------------------------------------------------- loading broken data */

static char *path_join(const char *dir, const char *rel)
{
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);

    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, rel);
    return p;
}

static void write_file(const char *dir, const char *rel, const char *data, size_t len)
{
    char *p = path_join(dir, rel);
    FILE *f = fopen(p, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(p);
}

static void copy_file(const char *dir, const char *rel)
{
    char *src = path_join(DATA_DIR, rel);
    FILE *f = fopen(src, "rb");
    char *buf = malloc(1 << 20);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, 1 << 20, f);
    assert_int_equal(fclose(f), 0);
    write_file(dir, rel, buf, n);
    free(buf);
    free(src);
}

/* A private copy of data/ in a new temporary directory (parallel-safe). */
static char *make_data_copy(void)
{
    char *dir = strdup("/tmp/cca-test-agent-XXXXXX");
    char *sub;

    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    sub = path_join(dir, "agents");
    assert_int_equal(mkdir(sub, 0700), 0);
    free(sub);
    sub = path_join(dir, "knowledge");
    assert_int_equal(mkdir(sub, 0700), 0);
    free(sub);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(data_files); i++)
        copy_file(dir, data_files[i]);
    return dir;
}

static void remove_data_copy(char *dir)
{
    char *p;

    for (size_t i = 0; i < CCA_ARRAY_SIZE(data_files); i++) {
        p = path_join(dir, data_files[i]);
        (void)unlink(p);
        free(p);
    }
    p = path_join(dir, "agents");
    assert_int_equal(rmdir(p), 0);
    free(p);
    p = path_join(dir, "knowledge");
    assert_int_equal(rmdir(p), 0);
    free(p);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/*
 * Replace @rel in a fresh copy of data/ with @data (NULL: delete it), load, and
 * check the code and that the message names @rel.
 */
static void expect_load_error(const char *rel, const char *data, size_t len, cca_rc want,
                              const char *msg_part)
{
    char *dir = make_data_copy();
    struct cca_agents *a = NULL;
    struct cca_error err = {0};
    cca_rc rc;

    if (data == NULL) {
        char *p = path_join(dir, rel);

        assert_int_equal(unlink(p), 0);
        free(p);
    } else {
        write_file(dir, rel, data, len);
    }
    rc = cca_agents_new(dir, &a, &err);
    if (rc != want || strstr(err.msg, rel) == NULL ||
        (msg_part != NULL && strstr(err.msg, msg_part) == NULL))
        fail_msg("%s: got %s '%s', want %s naming the file%s%s", rel, cca_strerror(rc),
                 err.msg, cca_strerror(want), msg_part ? " and " : "",
                 msg_part ? msg_part : "");
    assert_null(a);
    assert_int_equal(err.code, want);
    remove_data_copy(dir);
}

#define EXPECT(rel, text, want, part)                                                    \
    expect_load_error(rel, text, strlen(text), want, part)

static void test_load_copy_ok(void **state)
{
    char *dir = make_data_copy();
    struct cca_agents *a = NULL;
    struct cca_error err = {0};

    (void)state;
    assert_int_equal(cca_agents_new(dir, &a, &err), CCA_OK);
    assert_non_null(a);
    cca_agents_free(a);
    cca_agents_free(NULL);
    remove_data_copy(dir);
}

static void test_load_errors(void **state)
{
    static const char no_answer[] =
        "{\"agent\": \"sales\", \"fallback\": {\"ru\": \"а\", \"en\": \"b\"},"
        " \"entries\": [{\"id\": \"x\", \"lang\": \"ru\", \"title\": \"Т\","
        " \"keywords\": [\"тариф\"]}]}";
    static const char blank_answer[] =
        "{\"agent\": \"sales\", \"fallback\": {\"ru\": \"а\", \"en\": \"b\"},"
        " \"entries\": [{\"id\": \"x\", \"lang\": \"ru\", \"title\": \"Т\","
        " \"keywords\": [\"тариф\"], \"answer\": \"  \"}]}";
    static const char no_en[] =
        "{\"agent\": \"sales\", \"fallback\": {\"ru\": \"а\", \"en\": \"b\"},"
        " \"entries\": [{\"id\": \"x\", \"lang\": \"ru\", \"title\": \"Т\","
        " \"keywords\": [\"тариф\"], \"answer\": \"990 ₽\", \"prompt\": true}]}";
    static const char typo[] =
        "{\"agent\": \"sales\", \"fallback\": {\"ru\": \"а\", \"en\": \"b\"},"
        " \"entries\": [{\"id\": \"x\", \"lang\": \"ru\", \"title\": \"Т\","
        " \"keyword\": [\"тариф\"], \"answer\": \"990 ₽\"}]}";
    static const char bad_temp[] = "{\"agents\": {\"tech_support\": {\"temperature\": 3,"
                                   " \"handoff\": {\"ru\": \"а\", \"en\": \"b\"}}}}";
    char *big;

    (void)state;
    EXPECT("knowledge/sales.json", "{ \"agent\": \"sales\", broken", CCA_ERR_PARSE, NULL);
    EXPECT("agents/agents.json", "[1, 2", CCA_ERR_PARSE, NULL);
    EXPECT("knowledge/sales.json", no_answer, CCA_ERR_INVALID, "answer");
    EXPECT("knowledge/sales.json", blank_answer, CCA_ERR_INVALID, "answer");
    EXPECT("knowledge/sales.json", no_en, CCA_ERR_INVALID, "\"en\"");
    EXPECT("knowledge/sales.json", typo, CCA_ERR_INVALID, "keyword");
    EXPECT("knowledge/tech_support.json", "{\"agent\": \"sales\"}", CCA_ERR_INVALID,
           "agent");
    EXPECT("agents/agents.json", bad_temp, CCA_ERR_INVALID, "temperature");
    EXPECT("agents/supervisor.en.txt", " \n\t\n", CCA_ERR_INVALID, "empty");
    EXPECT("agents/classifier.ru.txt", "Ответь {{json}}", CCA_ERR_INVALID, "placeholder");
    EXPECT("agents/sales.ru.txt", "bad \xc3\x28 utf-8", CCA_ERR_PARSE, "UTF-8");
    expect_load_error("knowledge/supervisor.json", NULL, 0, CCA_ERR_NOT_FOUND, NULL);
    expect_load_error("agents/tech_support.ru.txt", NULL, 0, CCA_ERR_NOT_FOUND, NULL);

    big = malloc((1 << 20) + 2);
    assert_non_null(big);
    memset(big, 'a', (1 << 20) + 1);
    big[(1 << 20) + 1] = '\0';
    expect_load_error("agents/sales.en.txt", big, (1 << 20) + 1, CCA_ERR_TOO_LARGE, NULL);
    free(big);
}

/* The quick FAQ of a queued customer: a confident entry, or nothing. */
static void test_kb_answer(void **state)
{
    const char *q = "Не могу войти в аккаунт, забыл пароль";
    char *a =
        cca_agents_kb_answer(agents, CCA_AGENT_TECH_SUPPORT, CCA_LANG_RU, q, strlen(q));
    char *offline;

    (void)state;
    assert_non_null(a);
    /* The same entry the offline responder gives for it. */
    offline = cca_agents_offline_reply(agents, CCA_AGENT_TECH_SUPPORT, CCA_LANG_RU, q,
                                       strlen(q), false);
    assert_string_equal(a, offline);
    free(offline);
    free(a);
    /* Nothing confident: no answer, not the clarifying fallback. */
    assert_null(cca_agents_kb_answer(agents, CCA_AGENT_TECH_SUPPORT, CCA_LANG_RU,
                                     "Позовите оператора", strlen("Позовите оператора")));
    assert_null(cca_agents_kb_answer(agents, CCA_AGENT_SALES, CCA_LANG_EN, "", 0));
    assert_null(cca_agents_kb_answer(agents, CCA_AGENT_NONE, CCA_LANG_RU, q, strlen(q)));
    assert_null(cca_agents_kb_answer(NULL, CCA_AGENT_SALES, CCA_LANG_RU, q, strlen(q)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_ok),
        cmocka_unit_test(test_prompts),
        cmocka_unit_test(test_temperatures),
        cmocka_unit_test(test_demo_ru),
        cmocka_unit_test(test_demo_en),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_plan_named_first),
        cmocka_unit_test(test_refund_no_outage),
        cmocka_unit_test(test_refund_outage),
        cmocka_unit_test(test_compensation_no_outage),
        cmocka_unit_test(test_language),
        cmocka_unit_test(test_clarify),
        cmocka_unit_test(test_handoff),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_load_copy_ok),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_kb_answer),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
