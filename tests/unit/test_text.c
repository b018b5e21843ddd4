/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <pthread.h>

#include "cca/mem.h"
#include "cca/text.h"

/* Analyse @s and return its tokens; fails the test on an error. */
static struct cca_text_tokens analyze(const char *s)
{
    struct cca_text_tokens t;

    assert_int_equal(cca_text_analyze(s, strlen(s), &t), CCA_OK);
    return t;
}

static void test_stem_russian(void **state)
{
    struct cca_text_tokens a = analyze("тарифы"), b = analyze("тарифов"),
                           c = analyze("ТАРИФ");

    (void)state;
    assert_int_equal(a.count, 1);
    assert_int_equal(b.count, 1);
    assert_int_equal(c.count, 1);
    assert_string_equal(a.stem[0], b.stem[0]);
    assert_string_equal(a.stem[0], c.stem[0]);
    assert_string_equal(a.stem[0], "тариф");
    assert_string_equal(b.word[0], "тарифов");
    cca_text_tokens_cleanup(&a);
    cca_text_tokens_cleanup(&b);
    cca_text_tokens_cleanup(&c);
}

static void test_stem_english(void **state)
{
    struct cca_text_tokens t = analyze("Passwords, crashed; deliveries");

    (void)state;
    assert_int_equal(t.count, 3);
    assert_string_equal(t.word[0], "passwords");
    assert_string_equal(t.stem[0], "password");
    assert_string_equal(t.stem[1], "crash");
    assert_string_equal(t.stem[2], "deliveri");
    cca_text_tokens_cleanup(&t);
}

static void test_tokenise(void **state)
{
    /* Punctuation, hyphens and apostrophes separate; digits are tokens. */
    struct cca_text_tokens t = analyze("  Не работает PIN-код!!! can't 2fa  ");
    static const char *const words[] = {"не",  "работает", "pin", "код",
                                        "can", "t",        "2fa"};

    (void)state;
    assert_int_equal(t.count, CCA_ARRAY_SIZE(words));
    for (size_t i = 0; i < CCA_ARRAY_SIZE(words); i++)
        assert_string_equal(t.word[i], words[i]);
    /* Each token is stemmed by its own script: "pin" by the English stemmer. */
    assert_string_equal(t.stem[2], "pin");
    assert_string_equal(t.stem[1], "работа");
    cca_text_tokens_cleanup(&t);
}

static void test_nfkc_casefold(void **state)
{
    /* Fullwidth ABC, "Ё" folded to "е", the "ﬁ" ligature, "™", a soft hyphen. */
    struct cca_text_tokens t = analyze("ＡＢＣ Ёлка ёжик ﬁle Brand™ тар\xC2\xAD"
                                       "иф");

    (void)state;
    assert_int_equal(t.count, 6);
    assert_string_equal(t.word[0], "abc");
    assert_string_equal(t.word[1], "елка");
    assert_string_equal(t.word[2], "ежик");
    assert_string_equal(t.word[3], "file");
    assert_string_equal(t.word[4], "brandtm");
    assert_string_equal(t.word[5], "тариф");
    cca_text_tokens_cleanup(&t);
}

static void test_decomposed_input(void **state)
{
    /* "й" as и + combining breve and "ё" as е + diaeresis compose, then fold. */
    struct cca_text_tokens t = analyze("И\xCC\x86ОГУРТ е\xCC\x88ж");

    (void)state;
    assert_int_equal(t.count, 2);
    assert_string_equal(t.word[0], "йогурт");
    assert_string_equal(t.word[1], "еж");
    cca_text_tokens_cleanup(&t);
}

static void test_invalid_utf8(void **state)
{
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        {"\xC3\x28", 2},             /* bad continuation */
        {"\xC0\xAF", 2},             /* overlong "/" */
        {"\xE0\x80\xAF", 3},         /* overlong, 3 bytes */
        {"\xED\xA0\x80", 3},         /* UTF-16 surrogate */
        {"\xF4\x90\x80\x80", 4},     /* above U+10FFFF */
        {"\xF8\x88\x80\x80\x80", 5}, /* 5-byte form */
        {"abc\xE2\x82", 5},          /* truncated at the end */
        {"ab\0cd", 5},               /* NUL byte */
        {"\x80", 1},                 /* lone continuation byte */
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bad); i++) {
        struct cca_text_tokens t;

        assert_false(cca_text_is_utf8(bad[i].s, bad[i].len));
        assert_int_equal(cca_text_codepoints(bad[i].s, bad[i].len), -1);
        assert_int_equal(cca_text_analyze(bad[i].s, bad[i].len, &t), CCA_ERR_PARSE);
        assert_int_equal(t.count, 0);
        assert_null(t.stem);
        cca_text_tokens_cleanup(&t);
    }
    assert_true(cca_text_is_utf8("", 0));
    assert_true(cca_text_is_utf8("\xF4\x8F\xBF\xBF", 4)); /* U+10FFFF */
    assert_true(cca_text_is_utf8("\xEF\xBB\xBF", 3));     /* BOM is fine */
}

static void test_codepoints(void **state)
{
    (void)state;
    assert_int_equal(cca_text_codepoints("", 0), 0);
    assert_int_equal(cca_text_codepoints("abc", 3), 3);
    assert_int_equal(cca_text_codepoints("тест", strlen("тест")), 4);
    assert_int_equal(cca_text_codepoints("héllo", strlen("héllo")), 5);
    assert_int_equal(cca_text_codepoints("€😀", strlen("€😀")), 2);
    /* Only @len bytes count. */
    assert_int_equal(cca_text_codepoints("тест", 4), 2);
}

static void test_detect_lang(void **state)
{
    (void)state;
    assert_int_equal(cca_text_detect_lang("Привет, мир", strlen("Привет, мир")),
                     CCA_LANG_RU);
    assert_int_equal(cca_text_detect_lang("Hello world", 11), CCA_LANG_EN);
    /* More Cyrillic than Latin letters wins, whatever the order. */
    assert_int_equal(
        cca_text_detect_lang("PIN-код не работает", strlen("PIN-код не работает")),
        CCA_LANG_RU);
    assert_int_equal(cca_text_detect_lang("my карта", strlen("my карта")), CCA_LANG_RU);
    assert_int_equal(cca_text_detect_lang("my card дa", strlen("my card дa")),
                     CCA_LANG_EN);
    assert_int_equal(cca_text_detect_lang("12345 !!!", 9), CCA_LANG_EN);
    assert_int_equal(cca_text_detect_lang("\xD0", 1), CCA_LANG_EN);
    assert_string_equal(cca_lang_code(CCA_LANG_RU), "ru");
    assert_string_equal(cca_lang_code(CCA_LANG_EN), "en");
}

static void test_token_cap(void **state)
{
    size_t n = 3 * CCA_TEXT_MAX_TOKENS;
    char *s = cca_xmalloc(3 * n + 1);
    struct cca_text_tokens t;

    (void)state;
    for (size_t i = 0; i < n; i++)
        memcpy(s + 3 * i, "ab ", 3);
    s[3 * n] = '\0';
    assert_int_equal(cca_text_analyze(s, 3 * n, &t), CCA_OK);
    assert_int_equal(t.count, CCA_TEXT_MAX_TOKENS);
    assert_string_equal(t.word[CCA_TEXT_MAX_TOKENS - 1], "ab");
    cca_text_tokens_cleanup(&t);
    free(s);
}

static void test_huge_input(void **state)
{
    /* 1 MiB: one giant token, then a long run of separators, then words. */
    size_t len = 1024 * 1024;
    char *s = cca_xmalloc(len);
    struct cca_text_tokens t;
    int64_t start;

    (void)state;
    memset(s, 'x', len / 2);
    memset(s + len / 2, '!', len / 2);
    memcpy(s + len - 6, " ok go", 6);
    start = cca_time_mono_ms();
    assert_int_equal(cca_text_analyze(s, len, &t), CCA_OK);
    assert_true(cca_time_mono_ms() - start < 2000);
    assert_int_equal(t.count, 3);
    assert_true(strlen(t.word[0]) <= 128); /* giant token is cut */
    assert_string_equal(t.word[2], "go");
    cca_text_tokens_cleanup(&t);
    free(s);
}

static void test_empty_and_cleanup(void **state)
{
    struct cca_text_tokens t;
    struct cca_text_tokens zero = {0};

    (void)state;
    assert_int_equal(cca_text_analyze("", 0, &t), CCA_OK);
    assert_int_equal(t.count, 0);
    cca_text_tokens_cleanup(&t);
    assert_int_equal(cca_text_analyze(" ,.!? — ", strlen(" ,.!? — "), &t), CCA_OK);
    assert_int_equal(t.count, 0);
    cca_text_tokens_cleanup(&t);
    cca_text_tokens_cleanup(&zero);
    cca_text_tokens_cleanup(NULL);
    /* The per-thread stemmers can be dropped and are re-created on demand. */
    cca_text_thread_cleanup();
    cca_text_thread_cleanup();
    t = analyze("тарифы");
    assert_string_equal(t.stem[0], "тариф");
    cca_text_tokens_cleanup(&t);
}

#define THREAD_ROUNDS 2000

static void *stem_worker(void *arg)
{
    const char *text = arg;
    struct cca_text_tokens ref = analyze(text);
    bool same = true;

    for (int i = 0; i < THREAD_ROUNDS && same; i++) {
        struct cca_text_tokens t = analyze(text);

        same = t.count == ref.count;
        for (size_t k = 0; same && k < t.count; k++)
            same = strcmp(t.stem[k], ref.stem[k]) == 0;
        cca_text_tokens_cleanup(&t);
    }
    cca_text_tokens_cleanup(&ref);
    return same ? arg : NULL;
}

static void test_threads(void **state)
{
    /* Stemmers are per thread: concurrent analysis gives stable results. */
    static char ru[] = "Не могу войти в приложение, пароли не подходят";
    static char en[] = "Connections keep failing and passwords are rejected";
    pthread_t th[4];

    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, stem_worker, i % 2 ? ru : en), 0);
    for (int i = 0; i < 4; i++) {
        void *ret = NULL;

        assert_int_equal(pthread_join(th[i], &ret), 0);
        assert_non_null(ret);
    }
}

static int teardown(void **state)
{
    (void)state;
    cca_text_thread_cleanup();
    return 0;
}

/* cca_text_utf8_cut: never inside a character, never over the cap. */
static void test_utf8_cut(void **state)
{
    static const char ru[] = "тариф"; /* 10 bytes, 2 per letter */
    static const char mix[] = "a€b";  /* 1 + 3 + 1 bytes */

    (void)state;
    assert_int_equal(cca_text_utf8_cut(ru, 10, 100), 10);
    assert_int_equal(cca_text_utf8_cut(ru, 10, 10), 10);
    assert_int_equal(cca_text_utf8_cut(ru, 10, 5), 4);
    assert_int_equal(cca_text_utf8_cut(ru, 10, 4), 4);
    assert_int_equal(cca_text_utf8_cut(ru, 10, 1), 0);
    assert_int_equal(cca_text_utf8_cut(mix, 5, 2), 1);
    assert_int_equal(cca_text_utf8_cut(mix, 5, 3), 1);
    assert_int_equal(cca_text_utf8_cut(mix, 5, 4), 4);
    assert_int_equal(cca_text_utf8_cut("", 0, 3), 0);
    for (size_t max = 0; max <= 10; max++) {
        size_t n = cca_text_utf8_cut(ru, 10, max);

        assert_true(n <= max);
        assert_true(cca_text_is_utf8(ru, n));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_cut),      cmocka_unit_test(test_stem_russian),
        cmocka_unit_test(test_stem_english),  cmocka_unit_test(test_tokenise),
        cmocka_unit_test(test_nfkc_casefold), cmocka_unit_test(test_decomposed_input),
        cmocka_unit_test(test_invalid_utf8),  cmocka_unit_test(test_codepoints),
        cmocka_unit_test(test_detect_lang),   cmocka_unit_test(test_token_cap),
        cmocka_unit_test(test_huge_input),    cmocka_unit_test(test_empty_and_cleanup),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, NULL, teardown);
}
