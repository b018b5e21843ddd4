/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <jansson.h>

#include "cca/operator.h"
#include "cca/text.h"

#define T0       1736937000123LL /* 2025-01-15T10:30:00.123Z */
#define OP_ID    "0b6f2c7e-4f7a-4c1e-9f3d-2a5b8c9d0e1f"
#define HASH_A   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B   "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SECRET   "Sup3r-S3cret-Value"
#define PIN      "271828"
#define BOTH     (CCA_OPERATOR_LANG_BIT(CCA_LANG_RU) | CCA_OPERATOR_LANG_BIT(CCA_LANG_EN))
#define RU       CCA_OPERATOR_LANG_BIT(CCA_LANG_RU)
#define EN       CCA_OPERATOR_LANG_BIT(CCA_LANG_EN)
#define SK_TECH  CCA_OPERATOR_SKILL_BIT(CCA_AGENT_TECH_SUPPORT)
#define SK_SALES CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SALES)
#define SK_SUP   CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SUPERVISOR)

static json_t *parse_json(const char *s)
{
    json_error_t jerr;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &jerr);

    if (j == NULL)
        fail_msg("bad test JSON: %s", jerr.text);
    return j;
}

static void reg_ok(const char *body, bool need, struct cca_operator_reg *r)
{
    struct cca_error err = {0};
    cca_rc rc = cca_operator_parse_register(body, strlen(body), need, 5, r, &err);

    if (rc != CCA_OK)
        fail_msg("refused %s: %s", body, err.msg);
}

/* A refused body: @ret stays untouched, the detail holds @needle. */
static cca_rc reg_err(const char *body, bool need, const char *needle)
{
    struct cca_operator_reg r = {0};
    struct cca_operator_reg zero = {0};
    struct cca_error err = {0};
    cca_rc rc = cca_operator_parse_register(body, strlen(body), need, 5, &r, &err);

    assert_int_not_equal(rc, CCA_OK);
    assert_int_equal(err.code, rc);
    assert_memory_equal(&r, &zero, sizeof(r));
    if (needle != NULL && strstr(err.msg, needle) == NULL)
        fail_msg("detail \"%s\" lacks \"%s\" (body %s)", err.msg, needle, body);
    assert_null(strstr(err.msg, SECRET));
    assert_null(strstr(err.msg, PIN));
    return rc;
}

static cca_rc patch_err(const char *body, bool admin, const char *needle)
{
    struct cca_operator_patch p = {0};
    struct cca_operator_patch zero = {0};
    struct cca_error err = {0};
    cca_rc rc = cca_operator_parse_patch(body, strlen(body), admin, &p, &err);

    assert_int_not_equal(rc, CCA_OK);
    assert_memory_equal(&p, &zero, sizeof(p));
    if (needle != NULL && strstr(err.msg, needle) == NULL)
        fail_msg("detail \"%s\" lacks \"%s\" (body %s)", err.msg, needle, body);
    return rc;
}

static void patch_ok(const char *body, bool admin, struct cca_operator_patch *p)
{
    struct cca_error err = {0};

    if (cca_operator_parse_patch(body, strlen(body), admin, p, &err) != CCA_OK)
        fail_msg("refused %s: %s", body, err.msg);
}

static json_t *sample_doc(void)
{
    struct cca_operator_reg r = {0};
    json_t *doc;

    reg_ok("{\"pin\":\"" PIN "\",\"name\":\"Анна\",\"languages\":[\"en\",\"ru\"],"
           "\"skills\":[\"sales\"],\"max_dialogs\":3,"
           "\"profile\":{\"city\":\"Омск\",\"experience\":4}}",
           true, &r);
    doc = cca_operator_new_doc(OP_ID, &r, HASH_A, T0);
    cca_operator_reg_cleanup(&r);
    return doc;
}

static void test_status_names(void **state)
{
    enum cca_operator_status s = CCA_OPERATOR_BUSY;

    (void)state;
    assert_string_equal(cca_operator_status_name(CCA_OPERATOR_AVAILABLE), "available");
    assert_string_equal(cca_operator_status_name(CCA_OPERATOR_BUSY), "busy");
    assert_string_equal(cca_operator_status_name(CCA_OPERATOR_OFFLINE), "offline");
    assert_string_equal(cca_operator_status_name(CCA_OPERATOR_STATUS__COUNT), "offline");
    assert_string_equal(cca_operator_status_name((enum cca_operator_status) - 1),
                        "offline");
    for (int i = 0; i < CCA_OPERATOR_STATUS__COUNT; i++) {
        assert_true(cca_operator_status_parse(
            cca_operator_status_name((enum cca_operator_status)i), &s));
        assert_int_equal(s, i);
    }
    s = CCA_OPERATOR_BUSY;
    assert_false(cca_operator_status_parse("Available", &s));
    assert_false(cca_operator_status_parse("", &s));
    assert_false(cca_operator_status_parse(NULL, &s));
    assert_int_equal(s, CCA_OPERATOR_BUSY);
}

static void expect_json(json_t *got, const char *want)
{
    json_t *w = parse_json(want);

    if (!json_equal(got, w)) {
        char *s = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);

        fail_msg("got %s, want %s", s, want);
    }
    json_decref(w);
    json_decref(got);
}

static cca_rc mask_of(bool langs, const char *json, uint32_t *mask, const char *needle)
{
    json_t *arr = parse_json(json);
    struct cca_error err = {0};
    cca_rc rc = langs ? cca_operator_langs_parse(arr, mask, &err)
                      : cca_operator_skills_parse(arr, mask, &err);

    if (needle != NULL && (rc == CCA_OK || strstr(err.msg, needle) == NULL))
        fail_msg("%s: rc %d, detail \"%s\" lacks \"%s\"", json, rc, err.msg, needle);
    json_decref(arr);
    return rc;
}

static void test_masks(void **state)
{
    uint32_t m = 0;

    (void)state;
    expect_json(cca_operator_langs_json(BOTH), "[\"ru\",\"en\"]");
    expect_json(cca_operator_langs_json(EN), "[\"en\"]");
    expect_json(cca_operator_langs_json(RU | 0x80), "[\"ru\"]");
    expect_json(cca_operator_langs_json(0), "[]");
    expect_json(cca_operator_skills_json(SK_TECH | SK_SALES | SK_SUP),
                "[\"tech_support\",\"sales\",\"supervisor\"]");
    expect_json(cca_operator_skills_json(SK_SUP | SK_TECH),
                "[\"tech_support\",\"supervisor\"]");
    expect_json(cca_operator_skills_json(0), "[]");

    /* round trips over every mask */
    for (uint32_t mask = 1; mask <= BOTH; mask++) {
        json_t *j = cca_operator_langs_json(mask);

        assert_int_equal(cca_operator_langs_parse(j, &m, NULL), CCA_OK);
        assert_int_equal(m, mask);
        json_decref(j);
    }
    for (uint32_t mask = 0; mask <= (SK_TECH | SK_SALES | SK_SUP); mask++) {
        json_t *j = cca_operator_skills_json(mask);

        assert_int_equal(cca_operator_skills_parse(j, &m, NULL), CCA_OK);
        assert_int_equal(m, mask);
        json_decref(j);
    }

    /* duplicates are fine */
    assert_int_equal(mask_of(true, "[\"en\",\"en\",\"ru\"]", &m, NULL), CCA_OK);
    assert_int_equal(m, BOTH);
    assert_int_equal(mask_of(false, "[\"sales\",\"sales\"]", &m, NULL), CCA_OK);
    assert_int_equal(m, SK_SALES);
    assert_int_equal(mask_of(false, "[]", &m, NULL), CCA_OK);
    assert_int_equal(m, 0);

    /* refusals name the field; the mask stays untouched */
    m = 77;
    assert_int_equal(mask_of(true, "[]", &m, "languages"), CCA_ERR_INVALID);
    assert_int_equal(mask_of(true, "[\"ru\",\"de\"]", &m, "languages[1]"),
                     CCA_ERR_INVALID);
    assert_int_equal(mask_of(true, "[\"RU\"]", &m, "languages[0]"), CCA_ERR_INVALID);
    assert_int_equal(mask_of(true, "[1]", &m, "languages[0]"), CCA_ERR_INVALID);
    assert_int_equal(mask_of(true, "\"ru\"", &m, "languages"), CCA_ERR_INVALID);
    assert_int_equal(mask_of(true, "null", &m, "languages"), CCA_ERR_INVALID);
    assert_int_equal(mask_of(false, "[\"sales\",\"cook\"]", &m, "skills[1]"),
                     CCA_ERR_INVALID);
    assert_int_equal(mask_of(false, "[null]", &m, "skills[0]"), CCA_ERR_INVALID);
    assert_int_equal(mask_of(false, "{}", &m, "skills"), CCA_ERR_INVALID);
    assert_int_equal(m, 77);
    assert_int_equal(cca_operator_langs_parse(NULL, &m, NULL), CCA_ERR_INVALID);
    assert_int_equal(cca_operator_skills_parse(NULL, &m, NULL), CCA_ERR_INVALID);
}

static void test_register_good(void **state)
{
    struct cca_operator_reg r = {0};

    (void)state;
    reg_ok("{\"secret\":\"" SECRET "\",\"name\":\"Анна Петрова\","
           "\"languages\":[\"ru\"],\"skills\":[\"tech_support\",\"supervisor\"],"
           "\"max_dialogs\":50,\"profile\":{\"full_name\":\"Анна Сергеевна Петрова\","
           "\"city\":\"Новосибирск\",\"birth_date\":\"1990-02-28\",\"position\":"
           "\"Старший специалист\",\"experience\":\"5 лет в банке\"}}",
           true, &r);
    assert_string_equal(r.secret, SECRET);
    assert_null(r.pin);
    assert_string_equal(r.name, "Анна Петрова");
    assert_int_equal(r.languages, RU);
    assert_int_equal(r.skills, SK_TECH | SK_SUP);
    assert_int_equal(r.max_dialogs, 50);
    expect_json(json_incref(r.profile),
                "{\"full_name\":\"Анна Сергеевна Петрова\",\"city\":\"Новосибирск\","
                "\"birth_date\":\"1990-02-28\",\"position\":\"Старший специалист\","
                "\"experience\":\"5 лет в банке\"}");
    cca_operator_reg_cleanup(&r);

    /* defaults: both languages, every skill, @default_max, an empty profile */
    reg_ok("{\"pin\":\"" PIN "\",\"name\":\"Bob\"}", true, &r);
    assert_null(r.secret);
    assert_string_equal(r.pin, PIN);
    assert_int_equal(r.languages, BOTH);
    assert_int_equal(r.skills, 0);
    assert_int_equal(r.max_dialogs, 5);
    assert_true(json_is_object(r.profile));
    assert_int_equal(json_object_size(r.profile), 0);
    cca_operator_reg_cleanup(&r);

    /* a default_max out of range is clamped into 1..50 */
    assert_int_equal(
        cca_operator_parse_register("{\"name\":\"x\"}", 12, false, 0, &r, NULL), CCA_OK);
    assert_int_equal(r.max_dialogs, 1);
    cca_operator_reg_cleanup(&r);
    assert_int_equal(
        cca_operator_parse_register("{\"name\":\"x\"}", 12, false, 500, &r, NULL),
        CCA_OK);
    assert_int_equal(r.max_dialogs, 50);
    cca_operator_reg_cleanup(&r);

    /* the body need not be NUL-terminated */
    assert_int_equal(
        cca_operator_parse_register("{\"name\":\"Zoe\"}garbage", 14, false, 5, &r, NULL),
        CCA_OK);
    assert_string_equal(r.name, "Zoe");
    cca_operator_reg_cleanup(&r);

    /* boundaries: a 256-byte secret, 4 and 12 digit PINs, 100 code points */
    {
        char body[600];
        char secret[257];
        char name[201];

        memset(secret, 's', 256);
        secret[256] = '\0';
        (void)snprintf(body, sizeof(body), "{\"secret\":\"%s\",\"name\":\"n\"}", secret);
        reg_ok(body, true, &r);
        assert_int_equal(strlen(r.secret), 256);
        cca_operator_reg_cleanup(&r);
        for (int i = 0; i < 100; i++)
            memcpy(name + 2 * i, "я", 2); /* 2 bytes, 1 code point */
        name[200] = '\0';
        (void)snprintf(body, sizeof(body), "{\"pin\":\"0000\",\"name\":\"%s\"}", name);
        reg_ok(body, true, &r);
        assert_string_equal(r.pin, "0000");
        assert_string_equal(r.name, name);
        cca_operator_reg_cleanup(&r);
    }
    reg_ok("{\"pin\":\"012345678901\",\"name\":\"n\"}", true, &r);
    assert_string_equal(r.pin, "012345678901");
    cca_operator_reg_cleanup(&r);
}

static void test_register_credentials(void **state)
{
    struct cca_operator_reg r = {0};

    (void)state;
    reg_err("{\"secret\":\"" SECRET "\",\"pin\":\"" PIN "\",\"name\":\"n\"}", true,
            "either secret or pin");
    reg_err("{\"name\":\"n\"}", true, "secret or pin is required");
    reg_err("{\"secret\":\"\",\"name\":\"n\"}", true, "secret must be");
    reg_err("{\"secret\":42,\"name\":\"n\"}", true, "secret must be");
    reg_err("{\"secret\":null,\"name\":\"n\"}", true, "secret must be");
    {
        char body[600];
        char secret[258];

        memset(secret, 's', 257);
        secret[257] = '\0';
        (void)snprintf(body, sizeof(body), "{\"secret\":\"%s\",\"name\":\"n\"}", secret);
        reg_err(body, true, "1 to 256 bytes");
    }
    reg_err("{\"pin\":\"123\",\"name\":\"n\"}", true, "pin must be");
    reg_err("{\"pin\":\"1234567890123\",\"name\":\"n\"}", true, "4 to 12 digits");
    reg_err("{\"pin\":\"12a4\",\"name\":\"n\"}", true, "pin must be");
    reg_err("{\"pin\":\"１２３４\",\"name\":\"n\"}", true, "pin must be"); /* fullwidth */
    reg_err("{\"pin\":\" 1234\",\"name\":\"n\"}", true, "pin must be");
    reg_err("{\"pin\":1234,\"name\":\"n\"}", true, "pin must be");

    /* without a credential requirement both are accepted, unchecked and not kept */
    reg_ok("{\"secret\":\"" SECRET "\",\"pin\":\"x\",\"name\":\"n\"}", false, &r);
    assert_null(r.secret);
    assert_null(r.pin);
    cca_operator_reg_cleanup(&r);
    reg_ok("{\"name\":\"n\"}", false, &r);
    cca_operator_reg_cleanup(&r);
}

static void test_register_name(void **state)
{
    char body[600];
    char name[203];

    (void)state;
    reg_err("{\"pin\":\"" PIN "\"}", true, "name is required");
    reg_err("{\"pin\":\"" PIN "\",\"name\":null}", true, "name must be a string");
    reg_err("{\"pin\":\"" PIN "\",\"name\":7}", true, "name must be a string");
    reg_err("{\"pin\":\"" PIN "\",\"name\":\"\"}", true, "name must have 1 to 100");
    reg_err("{\"pin\":\"" PIN "\",\"name\":\"   \"}", true, "name is blank");
    reg_err("{\"pin\":\"" PIN "\",\"name\":\"\\u00a0\\u200b\"}", true, "name is blank");
    reg_err("{\"pin\":\"" PIN "\",\"name\":\"Ann\\nBob\"}", true, "control");
    reg_err("{\"pin\":\"" PIN "\",\"name\":\"Ann\\tB\"}", true, "control");
    reg_err("{\"pin\":\"" PIN "\",\"name\":\"Ann\\u007f\"}", true, "control");
    reg_err("{\"pin\":\"" PIN "\",\"name\":\"Ann\\u0085\"}", true, "control");
    for (int i = 0; i < 101; i++)
        memcpy(name + 2 * i, "я", 2);
    name[202] = '\0';
    (void)snprintf(body, sizeof(body), "{\"pin\":\"" PIN "\",\"name\":\"%s\"}", name);
    reg_err(body, true, "(has 101)");
}

static void test_register_fields(void **state)
{
    struct cca_operator_reg r = {0};

    (void)state;
    reg_err("{\"name\":\"n\",\"languages\":[]}", false, "languages");
    reg_err("{\"name\":\"n\",\"languages\":null}", false, "languages");
    reg_err("{\"name\":\"n\",\"languages\":[\"fr\"]}", false, "languages[0]");
    reg_err("{\"name\":\"n\",\"languages\":\"ru\"}", false, "languages");
    reg_err("{\"name\":\"n\",\"skills\":[\"billing\"]}", false, "skills[0]");
    reg_err("{\"name\":\"n\",\"skills\":\"sales\"}", false, "skills");
    reg_err("{\"name\":\"n\",\"skills\":null}", false, "skills");
    reg_err("{\"name\":\"n\",\"max_dialogs\":0}", false, "max_dialogs");
    reg_err("{\"name\":\"n\",\"max_dialogs\":51}", false, "max_dialogs");
    reg_err("{\"name\":\"n\",\"max_dialogs\":-3}", false, "max_dialogs");
    reg_err("{\"name\":\"n\",\"max_dialogs\":2.0}", false, "max_dialogs");
    reg_err("{\"name\":\"n\",\"max_dialogs\":\"3\"}", false, "max_dialogs");
    reg_err("{\"name\":\"n\",\"max_dialogs\":true}", false, "max_dialogs");
    reg_err("{\"name\":\"n\",\"max_dialogs\":null}", false, "max_dialogs");
    assert_int_equal(reg_err("{\"name\":\"n\",\"max_dialogs\":99999999999999999999999}",
                             false, "number out of range"),
                     CCA_ERR_INVALID);
    reg_ok("{\"name\":\"n\",\"max_dialogs\":1,\"skills\":[]}", false, &r);
    assert_int_equal(r.max_dialogs, 1);
    assert_int_equal(r.skills, 0);
    cca_operator_reg_cleanup(&r);
}

static void test_register_profile(void **state)
{
    static const char *const good_dates[] = {"1900-01-01", "2100-12-31", "2000-02-29",
                                             "1996-02-29", "2024-04-30"};
    static const char *const bad_dates[] = {"1899-12-31",
                                            "2101-01-01",
                                            "1900-02-29",
                                            "2100-02-29",
                                            "2023-02-29",
                                            "2024-04-31",
                                            "2024-13-01",
                                            "2024-00-10",
                                            "2024-01-00",
                                            "2024-1-05",
                                            "24-01-05",
                                            "2024/01/05",
                                            "2024-01-05T00:00:00Z",
                                            "２０２４-01-05",
                                            ""};
    static const struct {
        const char *key;
        int max;
    } caps[] = {
        {"full_name", 200}, {"city", 100}, {"position", 100}, {"experience", 200}};
    struct cca_operator_reg r = {0};
    char body[500];
    char big[410];

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(good_dates); i++) {
        (void)snprintf(body, sizeof(body),
                       "{\"name\":\"n\",\"profile\":{\"birth_date\":\"%s\"}}",
                       good_dates[i]);
        reg_ok(body, false, &r);
        assert_string_equal(json_string_value(json_object_get(r.profile, "birth_date")),
                            good_dates[i]);
        cca_operator_reg_cleanup(&r);
    }
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bad_dates); i++) {
        (void)snprintf(body, sizeof(body),
                       "{\"name\":\"n\",\"profile\":{\"birth_date\":\"%s\"}}",
                       bad_dates[i]);
        reg_err(body, false, "profile.birth_date");
    }
    reg_err("{\"name\":\"n\",\"profile\":{\"birth_date\":19900101}}", false,
            "profile.birth_date");

    /* experience: text or whole years 0..80 */
    reg_ok("{\"name\":\"n\",\"profile\":{\"experience\":0}}", false, &r);
    assert_int_equal(json_integer_value(json_object_get(r.profile, "experience")), 0);
    cca_operator_reg_cleanup(&r);
    reg_ok("{\"name\":\"n\",\"profile\":{\"experience\":80}}", false, &r);
    cca_operator_reg_cleanup(&r);
    reg_err("{\"name\":\"n\",\"profile\":{\"experience\":81}}", false,
            "profile.experience");
    reg_err("{\"name\":\"n\",\"profile\":{\"experience\":-1}}", false,
            "profile.experience");
    reg_err("{\"name\":\"n\",\"profile\":{\"experience\":2.5}}", false,
            "profile.experience");
    reg_err("{\"name\":\"n\",\"profile\":{\"experience\":[]}}", false,
            "profile.experience");

    /* string caps in code points (2-byte letters here): 200 / 100 / 100 / 200 */
    for (size_t i = 0; i < CCA_ARRAY_SIZE(caps); i++) {
        for (int extra = 0; extra <= 1; extra++) {
            int n = caps[i].max + extra;
            char label[40];

            for (int k = 0; k < n; k++)
                memcpy(big + 2 * k, "ж", 2);
            big[2 * n] = '\0';
            (void)snprintf(body, sizeof(body),
                           "{\"name\":\"n\",\"profile\":{\"%s\":\"%s\"}}", caps[i].key,
                           big);
            if (extra == 0) {
                reg_ok(body, false, &r);
                cca_operator_reg_cleanup(&r);
            } else {
                (void)snprintf(label, sizeof(label), "profile.%s must have 0 to %d",
                               caps[i].key, caps[i].max);
                reg_err(body, false, label);
            }
        }
    }
    reg_err("{\"name\":\"n\",\"profile\":{\"city\":\"Om\\nsk\"}}", false,
            "profile.city must not contain control");
    reg_err("{\"name\":\"n\",\"profile\":{\"position\":5}}", false,
            "profile.position must be a string");
    reg_err("{\"name\":\"n\",\"profile\":[]}", false, "profile must be an object");
    reg_err("{\"name\":\"n\",\"profile\":null}", false, "profile must be an object");

    /* a null profile value is the same as leaving it out */
    reg_ok("{\"name\":\"n\",\"profile\":{\"city\":null,\"position\":\"\"}}", false, &r);
    expect_json(json_incref(r.profile), "{\"position\":\"\"}");
    cca_operator_reg_cleanup(&r);
}

/* cca_operator_check_person_field with @label on the JSON @value: @needle in the detail.
 */
static void person_err(const char *key, const char *value, const char *label,
                       const char *needle)
{
    json_t *v = parse_json(value);
    struct cca_error err = {0};

    assert_int_equal(cca_operator_check_person_field(key, v, label, &err),
                     CCA_ERR_INVALID);
    assert_int_equal(err.code, CCA_ERR_INVALID);
    /* the detail starts with the label: "experience ..." is not "profile.experience" */
    if (strncmp(err.msg, needle, strlen(needle)) != 0)
        fail_msg("%s=%s: detail \"%s\" does not start with \"%s\"", key, value, err.msg,
                 needle);
    json_decref(v);
}

static void person_ok(const char *key, const char *value)
{
    json_t *v = parse_json(value);
    json_t *before = json_deep_copy(v);
    struct cca_error err = {0};

    if (cca_operator_check_person_field(key, v, "x", &err) != CCA_OK)
        fail_msg("%s=%s refused: %s", key, value, err.msg);
    assert_true(json_equal(v, before)); /* not changed */
    json_decref(before);
    json_decref(v);
}

static void test_person_field(void **state)
{
    (void)state;
    person_ok("full_name", "\"Анна Петрова\"");
    person_ok("full_name", "\"\"");
    person_ok("city", "\"Омск\"");
    person_ok("position", "\"lead\"");
    person_ok("birth_date", "\"2000-02-29\"");
    person_ok("experience", "0");
    person_ok("experience", "80");
    person_ok("experience", "\"five years\"");

    /* the label names the field: the operator's "profile.x", the customer's "x" */
    person_err("city", "5", "city", "city must be a string");
    person_err("city", "5", "profile.city", "profile.city must be a string");
    person_err("city", "5", NULL, "city must be a string");
    person_err("city", "\"Om\\u0001sk\"", "city", "city must not contain control");
    person_err("birth_date", "\"2023-02-29\"", "birth_date", "birth_date must be a date");
    person_err("birth_date", "\"2023-02-29\"", "profile.birth_date",
               "profile.birth_date must be a date");
    person_err("experience", "81", "experience", "experience must be 0 to 80");
    person_err("experience", "true", "exp", "exp must be a string or an integer");
    /* null is the caller's business: here it is a wrong type */
    person_err("full_name", "null", "full_name", "full_name must be a string");
    person_err("experience", "null", "experience", "experience must be a string");
    /* only the five person fields */
    person_err("phone", "\"1\"", "phone", "unknown field \"phone\"");
    person_err("name", "\"n\"", NULL, "unknown field");
    {
        struct cca_error err = {0};
        json_t *v = json_string("x");

        assert_int_equal(cca_operator_check_person_field(NULL, v, "l", &err),
                         CCA_ERR_INVALID);
        assert_int_equal(cca_operator_check_person_field("city", NULL, "city", &err),
                         CCA_ERR_INVALID);
        assert_int_equal(cca_operator_check_person_field("city", v, "city", NULL),
                         CCA_OK);
        json_decref(v);
        /* a NUL byte is not text */
        v = json_stringn("a\0b", 3);
        assert_int_equal(cca_operator_check_person_field("position", v, "position", &err),
                         CCA_ERR_INVALID);
        assert_non_null(strstr(err.msg, "position is not valid UTF-8"));
        json_decref(v);
    }
}

static void test_register_unknown_and_syntax(void **state)
{
    struct cca_operator_reg r = {0};
    struct cca_error err = {0};

    (void)state;
    assert_int_equal(reg_err("", true, "empty"), CCA_ERR_PARSE);
    assert_int_equal(cca_operator_parse_register(NULL, 0, true, 5, &r, &err),
                     CCA_ERR_PARSE);
    assert_int_equal(reg_err("{\"name\":", true, "malformed JSON"), CCA_ERR_PARSE);
    assert_int_equal(reg_err("not json", true, "line 1"), CCA_ERR_PARSE);
    assert_int_equal(reg_err("[1,2]", true, "JSON object"), CCA_ERR_INVALID);
    /* JSON, but not an object: 422 like an array (RFC 8259: a scalar is JSON) */
    assert_int_equal(reg_err("\"str\"", true, "JSON object"), CCA_ERR_INVALID);
    assert_int_equal(reg_err("{\"name\":\"a\",\"name\":\"b\"}", false, "duplicate"),
                     CCA_ERR_INVALID);
    assert_int_equal(
        reg_err("{\"name\":\"n\",\"role\":\"admin\"}", false, "unknown field \"role\""),
        CCA_ERR_INVALID);
    assert_int_equal(reg_err("{\"pin\":\"" PIN "\",\"name\":\"n\",\"status\":\"busy\"}",
                             true, "unknown field \"status\""),
                     CCA_ERR_INVALID);
    assert_int_equal(reg_err("{\"name\":\"n\",\"profile\":{\"city\":\"x\",\"age\":3}}",
                             false, "unknown field \"profile.age\""),
                     CCA_ERR_INVALID);
    /* a long key is quoted cut */
    reg_err(
        "{\"name\":\"n\",\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "\":1}",
        false, "unknown field \"aaaa");
}

/* Every refusal with the secret or the PIN in the body leaves them out of the detail. */
static void test_no_credential_in_detail(void **state)
{
    static const char *const bodies[] = {
        "{\"secret\":\"" SECRET "\",\"pin\":\"" PIN "\",\"name\":\"n\"}",
        "{\"secret\":\"" SECRET "\"}",
        "{\"pin\":\"" PIN "\"}",
        "{\"secret\":\"" SECRET "\",\"name\":\"\"}",
        "{\"pin\":\"" PIN "\",\"name\":\"n\",\"languages\":[]}",
        "{\"name\":\"n\",\"secret\":\"" SECRET,
        "{\"name\":\"n\",\"secret\":" SECRET "}",
        "{\"name\":\"n\",\"pin\":" PIN "x}",
        "{\"name\":\"n\",\"pin\":\"" PIN "\"\"}",
        "{\"name\":\"n\",\"pin\":\"" PIN "\",\"pin\":\"" PIN "\"}",
        "{\"name\":\"n\",\"secret\":\"" SECRET "\\x\"}",
        "{\"name\":\"n\",\"pin\":" PIN "99999999999999999999999}",
        "{\"pin\":\"" PIN "a\",\"name\":\"n\"}",
        "{\"secret\":\"" SECRET "\",\"name\":\"n\",\"profile\":{\"age\":1}}",
    };

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bodies); i++) {
        struct cca_operator_reg r = {0};
        struct cca_operator_patch p = {0};
        struct cca_error err = {0};
        size_t len = strlen(bodies[i]);

        /* reg_err asserts the detail has neither */
        (void)reg_err(bodies[i], true, NULL);
        memset(&err, 0, sizeof(err));
        if (cca_operator_parse_register(bodies[i], len, false, 5, &r, &err) == CCA_OK) {
            cca_operator_reg_cleanup(&r);
        } else {
            assert_null(strstr(err.msg, SECRET));
            assert_null(strstr(err.msg, PIN));
        }
        memset(&err, 0, sizeof(err));
        assert_int_not_equal(cca_operator_parse_patch(bodies[i], len, true, &p, &err),
                             CCA_OK);
        assert_null(strstr(err.msg, SECRET));
        assert_null(strstr(err.msg, PIN));
    }
}

static void test_reg_cleanup(void **state)
{
    struct cca_operator_reg r = {0};
    struct cca_operator_reg zero = {0};

    (void)state;
    cca_operator_reg_cleanup(NULL);
    cca_operator_reg_cleanup(&r);
    assert_memory_equal(&r, &zero, sizeof(r));
    reg_ok("{\"secret\":\"" SECRET "\",\"name\":\"n\"}", true, &r);
    cca_operator_reg_cleanup(&r);
    assert_memory_equal(&r, &zero, sizeof(r));
    /* a hand-built, half-filled struct */
    r.pin = strdup("1234");
    r.max_dialogs = 3;
    cca_operator_reg_cleanup(&r);
    assert_memory_equal(&r, &zero, sizeof(r));
    cca_operator_patch_cleanup(NULL);
}

static void test_patch(void **state)
{
    struct cca_operator_patch p = {0};

    (void)state;
    patch_ok("{\"name\":\"Анна\",\"languages\":[\"en\"],\"skills\":[],"
             "\"profile\":{\"city\":\"Омск\",\"position\":null,\"experience\":7}}",
             false, &p);
    assert_string_equal(p.name, "Анна");
    assert_true(p.has_languages);
    assert_int_equal(p.languages, EN);
    assert_true(p.has_skills);
    assert_int_equal(p.skills, 0);
    assert_false(p.has_max_dialogs);
    expect_json(json_incref(p.profile),
                "{\"city\":\"Омск\",\"position\":null,\"experience\":7}");
    cca_operator_patch_cleanup(&p);

    patch_ok("{\"skills\":[\"sales\"]}", false, &p);
    assert_null(p.name);
    assert_false(p.has_languages);
    assert_true(p.has_skills);
    assert_int_equal(p.skills, SK_SALES);
    assert_null(p.profile);
    cca_operator_patch_cleanup(&p);

    /* max_dialogs: admins only */
    patch_ok("{\"max_dialogs\":12}", true, &p);
    assert_true(p.has_max_dialogs);
    assert_int_equal(p.max_dialogs, 12);
    cca_operator_patch_cleanup(&p);
    assert_int_equal(
        patch_err("{\"max_dialogs\":12}", false, "only be changed by an admin"),
        CCA_ERR_INVALID);
    assert_int_equal(
        patch_err("{\"name\":\"x\",\"max_dialogs\":12}", false, "by an admin"),
        CCA_ERR_INVALID);
    patch_err("{\"max_dialogs\":51}", true, "max_dialogs must be");
    patch_err("{\"max_dialogs\":null}", true, "max_dialogs must be");

    /* at least one field; the same rules as registration */
    assert_int_equal(patch_err("{}", false, "nothing to change"), CCA_ERR_INVALID);
    assert_int_equal(patch_err("", false, "empty"), CCA_ERR_PARSE);
    assert_int_equal(patch_err("{\"name\":", false, "malformed"), CCA_ERR_PARSE);
    patch_err("[]", false, "JSON object");
    patch_err("{\"name\":\"\"}", false, "name must have");
    patch_err("{\"name\":\" \"}", false, "name is blank");
    patch_err("{\"name\":null}", false, "name must be a string");
    patch_err("{\"name\":\"a\\u0001\"}", false, "control");
    patch_err("{\"languages\":[]}", false, "languages");
    patch_err("{\"languages\":[\"de\"]}", false, "languages[0]");
    patch_err("{\"skills\":[\"x\"]}", false, "skills[0]");
    patch_err("{\"profile\":{}}", false, "profile must name at least one field");
    patch_err("{\"profile\":null}", false, "profile must be an object");
    patch_err("{\"profile\":{\"birth_date\":\"2023-02-29\"}}", false,
              "profile.birth_date");
    patch_err("{\"profile\":{\"age\":null}}", false, "unknown field \"profile.age\"");
    patch_err("{\"secret\":\"" SECRET "\"}", true, "unknown field \"secret\"");
    patch_err("{\"pin\":\"" PIN "\"}", true, "unknown field \"pin\"");
    patch_err("{\"status\":\"busy\"}", true, "unknown field \"status\"");
    patch_err("{\"token_sha256\":\"" HASH_B "\"}", true, "unknown field");
}

static void test_new_doc_shape(void **state)
{
    json_t *doc = sample_doc();
    static const char *const keys[] = {
        "operator_id", "name",        "languages",    "skills",
        "max_dialogs", "status",      "status_since", "status_ms",
        "created_at",  "updated_at",  "last_seen_at", "last_dialog_closed_at",
        "profile",     "token_sha256"};
    const char *key;
    json_t *v;
    size_t i = 0;

    (void)state;
    /* the keys, in this order */
    assert_int_equal(json_object_size(doc), CCA_ARRAY_SIZE(keys));
    json_object_foreach (doc, key, v) {
        assert_string_equal(key, keys[i]);
        i++;
    }
    expect_json(json_incref(doc),
                "{\"operator_id\":\"" OP_ID "\",\"name\":\"Анна\","
                "\"languages\":[\"ru\",\"en\"],\"skills\":[\"sales\"],\"max_dialogs\":3,"
                "\"status\":\"offline\",\"status_since\":\"2025-01-15T10:30:00.123Z\","
                "\"status_ms\":{\"available\":0,\"busy\":0,\"offline\":0},"
                "\"created_at\":\"2025-01-15T10:30:00.123Z\","
                "\"updated_at\":\"2025-01-15T10:30:00.123Z\",\"last_seen_at\":null,"
                "\"last_dialog_closed_at\":null,"
                "\"profile\":{\"city\":\"Омск\",\"experience\":4},"
                "\"token_sha256\":\"" HASH_A "\"}");
    assert_int_equal(cca_operator_validate(doc, OP_ID, NULL), CCA_OK);

    /* accessors */
    assert_int_equal(cca_operator_get_status(doc), CCA_OPERATOR_OFFLINE);
    assert_int_equal(cca_operator_get_max(doc), 3);
    assert_int_equal(cca_operator_get_langs(doc), BOTH);
    assert_int_equal(cca_operator_get_skills(doc), SK_SALES);
    assert_string_equal(cca_operator_get_name(doc), "Анна");
    assert_string_equal(cca_operator_get_token_hash(doc), HASH_A);
    assert_int_equal(cca_operator_get_time(doc, "created_at"), T0);
    assert_int_equal(cca_operator_get_time(doc, "last_seen_at"), 0);
    assert_int_equal(cca_operator_get_time(doc, "no_such_key"), 0);
    assert_int_equal(cca_operator_get_time(doc, "name"), 0);

    /* a hand-built reg without a profile */
    {
        struct cca_operator_reg r = {
            .name = (char *)"Z", .languages = EN, .max_dialogs = 2};
        json_t *d = cca_operator_new_doc(OP_ID, &r, HASH_B, T0);

        assert_true(json_is_object(json_object_get(d, "profile")));
        assert_int_equal(cca_operator_validate(d, NULL, NULL), CCA_OK);
        assert_int_equal(cca_operator_get_skills(d), 0);
        json_decref(d);
    }
    json_decref(doc);

    /* accessors on something that is not a document */
    assert_int_equal(cca_operator_get_status(NULL), CCA_OPERATOR_OFFLINE);
    assert_int_equal(cca_operator_get_max(NULL), 0);
    assert_int_equal(cca_operator_get_langs(NULL), 0);
    assert_null(cca_operator_get_name(NULL));
    assert_null(cca_operator_get_token_hash(NULL));
}

/* @fresh is what @doc (unchanged) must still equal; frees the new doc. */
static void check_unchanged(json_t *doc, json_t *fresh, json_t *changed)
{
    assert_true(json_equal(doc, fresh));
    assert_ptr_not_equal(doc, changed);
    assert_int_equal(cca_operator_validate(changed, OP_ID, NULL), CCA_OK);
    json_decref(changed);
}

static void test_copy_on_write(void **state)
{
    json_t *doc = sample_doc();
    json_t *fresh = json_deep_copy(doc);
    const int64_t t1 = T0 + 60000;
    struct cca_operator_patch p = {0};
    json_t *d;

    (void)state;
    d = cca_operator_with_status(doc, CCA_OPERATOR_AVAILABLE, t1);
    assert_int_equal(cca_operator_get_status(d), CCA_OPERATOR_AVAILABLE);
    assert_int_equal(cca_operator_get_time(d, "updated_at"), t1);
    assert_int_equal(cca_operator_get_time(d, "created_at"), T0);
    /* untouched children are shared, not copied */
    assert_ptr_equal(json_object_get(d, "profile"), json_object_get(doc, "profile"));
    check_unchanged(doc, fresh, d);

    d = cca_operator_with_times(doc, T0 + 5, 0, t1);
    assert_int_equal(cca_operator_get_time(d, "last_seen_at"), T0 + 5);
    assert_true(json_is_null(json_object_get(d, "last_dialog_closed_at")));
    {
        json_t *d2 = cca_operator_with_times(d, 0, T0 + 9, t1 + 1);

        assert_int_equal(cca_operator_get_time(d2, "last_seen_at"), T0 + 5);
        assert_int_equal(cca_operator_get_time(d2, "last_dialog_closed_at"), T0 + 9);
        assert_int_equal(cca_operator_get_time(d2, "updated_at"), t1 + 1);
        assert_int_equal(cca_operator_get_time(d, "last_dialog_closed_at"), 0);
        json_decref(d2);
    }
    check_unchanged(doc, fresh, d);

    d = cca_operator_with_token(doc, HASH_B, t1);
    assert_string_equal(cca_operator_get_token_hash(d), HASH_B);
    assert_string_equal(cca_operator_get_token_hash(doc), HASH_A);
    check_unchanged(doc, fresh, d);

    patch_ok("{\"name\":\"Bea\",\"languages\":[\"ru\"],\"skills\":[\"sales\","
             "\"supervisor\"],\"max_dialogs\":9,\"profile\":{\"city\":null,"
             "\"position\":\"lead\"}}",
             true, &p);
    d = cca_operator_with_patch(doc, &p, t1);
    cca_operator_patch_cleanup(&p);
    assert_string_equal(cca_operator_get_name(d), "Bea");
    assert_int_equal(cca_operator_get_langs(d), RU);
    assert_int_equal(cca_operator_get_skills(d), SK_SALES | SK_SUP);
    assert_int_equal(cca_operator_get_max(d), 9);
    expect_json(json_incref(json_object_get(d, "profile")),
                "{\"experience\":4,\"position\":\"lead\"}");
    assert_int_equal(cca_operator_get_time(d, "updated_at"), t1);
    check_unchanged(doc, fresh, d);

    /* a patch of one field leaves the others as they were */
    patch_ok("{\"profile\":{\"experience\":\"long\"}}", false, &p);
    d = cca_operator_with_patch(doc, &p, t1);
    cca_operator_patch_cleanup(&p);
    assert_string_equal(cca_operator_get_name(d), "Анна");
    assert_int_equal(cca_operator_get_max(d), 3);
    assert_ptr_equal(json_object_get(d, "languages"), json_object_get(doc, "languages"));
    expect_json(json_incref(json_object_get(d, "profile")),
                "{\"city\":\"Омск\",\"experience\":\"long\"}");
    check_unchanged(doc, fresh, d);

    /* the public view has everything but the token hash */
    d = cca_operator_public_view(doc);
    assert_null(json_object_get(d, "token_sha256"));
    assert_int_equal(json_object_size(d), json_object_size(doc) - 1);
    assert_string_equal(json_string_value(json_object_get(d, "operator_id")), OP_ID);
    assert_true(json_equal(doc, fresh));
    json_decref(d);

    json_decref(fresh);
    json_decref(doc);
}

/* cca_operator_time_in_status of @doc at @now: available, busy, offline. */
static void expect_times(json_t *doc, int64_t now, int64_t avail, int64_t busy,
                         int64_t offline)
{
    int64_t t[CCA_OPERATOR_STATUS__COUNT] = {-1, -1, -1};

    cca_operator_time_in_status(doc, now, t);
    if (t[CCA_OPERATOR_AVAILABLE] != avail || t[CCA_OPERATOR_BUSY] != busy ||
        t[CCA_OPERATOR_OFFLINE] != offline)
        fail_msg("at +%lld: got %lld/%lld/%lld, want %lld/%lld/%lld",
                 (long long)(now - T0), (long long)t[0], (long long)t[1], (long long)t[2],
                 (long long)avail, (long long)busy, (long long)offline);
}

/* @doc's new reference replaced by @next (a step of copy-on-write changes). */
static json_t *step(json_t *doc, json_t *next)
{
    assert_ptr_not_equal(doc, next);
    assert_int_equal(cca_operator_validate(next, OP_ID, NULL), CCA_OK);
    json_decref(doc);
    return next;
}

static void test_time_in_status(void **state)
{
    json_t *doc = sample_doc();
    json_t *fresh;
    json_t *d;

    (void)state;
    /* a new operator is offline since created_at */
    expect_times(doc, T0, 0, 0, 0);
    expect_times(doc, T0 + 5000, 0, 0, 5000);

    fresh = json_deep_copy(doc);
    d = cca_operator_with_status(doc, CCA_OPERATOR_AVAILABLE, T0 + 10000);
    assert_true(json_equal(doc, fresh)); /* the input is not changed */
    json_decref(fresh);
    expect_json(json_incref(json_object_get(d, "status_ms")),
                "{\"available\":0,\"busy\":0,\"offline\":10000}");
    assert_int_equal(cca_operator_get_time(d, "status_since"), T0 + 10000);
    doc = step(doc, d);
    expect_times(doc, T0 + 15000, 5000, 0, 10000);

    doc = step(doc, cca_operator_with_status(doc, CCA_OPERATOR_BUSY, T0 + 20000));
    doc = step(doc, cca_operator_with_status(doc, CCA_OPERATOR_OFFLINE, T0 + 23000));
    expect_json(json_incref(json_object_get(doc, "status_ms")),
                "{\"available\":10000,\"busy\":3000,\"offline\":10000}");
    expect_times(doc, T0 + 30000, 10000, 3000, 17000);
    /* a time before status_since adds no running time (a clock stepped back) */
    expect_times(doc, T0 + 1000, 10000, 3000, 10000);

    /* the same status again: only updated_at moves */
    d = cca_operator_with_status(doc, CCA_OPERATOR_OFFLINE, T0 + 40000);
    assert_ptr_equal(json_object_get(d, "status_ms"), json_object_get(doc, "status_ms"));
    assert_int_equal(cca_operator_get_time(d, "status_since"), T0 + 23000);
    assert_int_equal(cca_operator_get_time(d, "updated_at"), T0 + 40000);
    doc = step(doc, d);
    expect_times(doc, T0 + 50000, 10000, 3000, 37000);

    /* other changes keep the accounting */
    doc = step(doc, cca_operator_with_times(doc, T0 + 51000, 0, T0 + 51000));
    doc = step(doc, cca_operator_with_token(doc, HASH_B, T0 + 52000));
    expect_times(doc, T0 + 60000, 10000, 3000, 47000);

    /* a status change with the clock behind status_since counts nothing */
    d = cca_operator_with_status(doc, CCA_OPERATOR_AVAILABLE, T0 + 20000);
    expect_json(json_incref(json_object_get(d, "status_ms")),
                "{\"available\":10000,\"busy\":3000,\"offline\":10000}");
    assert_int_equal(cca_operator_get_time(d, "status_since"), T0 + 20000);
    doc = step(doc, d);

    /* the public view shows the new fields */
    d = cca_operator_public_view(doc);
    assert_ptr_equal(json_object_get(d, "status_ms"), json_object_get(doc, "status_ms"));
    assert_non_null(json_object_get(d, "status_since"));
    json_decref(d);
    json_decref(doc);

    /* nothing to go on: zeros, never the whole epoch */
    expect_times(NULL, T0, 0, 0, 0);
}

/* A record written before the time per status was kept. */
static void test_time_in_status_old_record(void **state)
{
    json_t *doc = sample_doc();
    json_t *d;

    (void)state;
    (void)json_object_del(doc, "status_since");
    (void)json_object_del(doc, "status_ms");
    (void)json_object_set_new(doc, "status", json_string("available"));
    (void)json_object_set_new(doc, "updated_at", json_string("2025-01-15T10:30:01.123Z"));
    assert_int_equal(cca_operator_validate(doc, OP_ID, NULL), CCA_OK);
    /* the status began at updated_at at the latest */
    expect_times(doc, T0 + 4000, 3000, 0, 0);

    d = cca_operator_with_status(doc, CCA_OPERATOR_BUSY, T0 + 6000);
    assert_int_equal(cca_operator_validate(d, OP_ID, NULL), CCA_OK);
    expect_json(json_incref(json_object_get(d, "status_ms")),
                "{\"available\":5000,\"busy\":0,\"offline\":0}");
    assert_int_equal(cca_operator_get_time(d, "status_since"), T0 + 6000);
    expect_times(d, T0 + 7000, 5000, 1000, 0);
    json_decref(d);

    /* any other change pins status_since to the old updated_at */
    d = cca_operator_with_times(doc, T0 + 9000, 0, T0 + 9000);
    assert_int_equal(cca_operator_get_time(d, "status_since"), T0 + 1000);
    assert_null(json_object_get(d, "status_ms"));
    expect_times(d, T0 + 10000, 9000, 0, 0);
    json_decref(d);
    d = cca_operator_with_status(doc, CCA_OPERATOR_AVAILABLE, T0 + 9000);
    assert_int_equal(cca_operator_get_time(d, "status_since"), T0 + 1000);
    json_decref(d);
    {
        struct cca_operator_patch p = {.name = (char *)"Bea"};

        d = cca_operator_with_patch(doc, &p, T0 + 9000);
        assert_int_equal(cca_operator_get_time(d, "status_since"), T0 + 1000);
        json_decref(d);
    }
    d = cca_operator_with_token(doc, HASH_B, T0 + 9000);
    assert_int_equal(cca_operator_get_time(d, "status_since"), T0 + 1000);
    json_decref(d);

    /* a partial status_ms: the missing statuses are zero */
    (void)json_object_set_new(doc, "status_ms", parse_json("{\"busy\":7}"));
    assert_int_equal(cca_operator_validate(doc, OP_ID, NULL), CCA_OK);
    expect_times(doc, T0 + 2000, 1000, 7, 0);
    d = cca_operator_with_status(doc, CCA_OPERATOR_OFFLINE, T0 + 2000);
    expect_json(json_incref(json_object_get(d, "status_ms")),
                "{\"available\":1000,\"busy\":7,\"offline\":0}");
    json_decref(d);

    /* without updated_at either: created_at */
    (void)json_object_del(doc, "updated_at");
    expect_times(doc, T0 + 2000, 2000, 7, 0);
    json_decref(doc);
}

/* @doc with @key set to the JSON @value (NULL: removed) must be refused. */
static void refuse(json_t *doc, const char *key, const char *value, const char *needle)
{
    json_t *bad = json_deep_copy(doc);
    struct cca_error err = {0};

    if (value == NULL)
        (void)json_object_del(bad, key);
    else
        (void)json_object_set_new(bad, key, parse_json(value));
    assert_int_equal(cca_operator_validate(bad, NULL, &err), CCA_ERR_INVALID);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("%s=%s: detail \"%s\" lacks \"%s\"", key, value ? value : "(absent)",
                 err.msg, needle);
    json_decref(bad);
}

static void test_validate(void **state)
{
    json_t *doc = sample_doc();
    struct cca_error err = {0};
    json_t *d;

    (void)state;
    assert_int_equal(cca_operator_validate(doc, OP_ID, &err), CCA_OK);
    assert_int_equal(cca_operator_validate(doc, NULL, &err), CCA_OK);
    assert_int_equal(
        cca_operator_validate(doc, "0b6f2c7e-4f7a-4c1e-9f3d-2a5b8c9d0e10", &err),
        CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "does not match"));
    d = parse_json("[]");
    assert_int_equal(cca_operator_validate(d, NULL, NULL), CCA_ERR_INVALID);
    json_decref(d);
    assert_int_equal(cca_operator_validate(NULL, NULL, NULL), CCA_ERR_INVALID);

    refuse(doc, "operator_id", NULL, "operator_id");
    refuse(doc, "operator_id", "\"0B6F2C7E-4F7A-4C1E-9F3D-2A5B8C9D0E1F\"", "canonical");
    refuse(doc, "operator_id", "\"../etc/passwd\"", "operator_id");
    refuse(doc, "name", "null", "name");
    refuse(doc, "name", NULL, "name");
    refuse(doc, "languages", "[]", "languages");
    refuse(doc, "languages", "[\"xx\"]", "languages[0]");
    refuse(doc, "languages", NULL, "languages");
    refuse(doc, "skills", "[\"janitor\"]", "skills[0]");
    refuse(doc, "skills", "\"sales\"", "skills");
    refuse(doc, "max_dialogs", "0", "max_dialogs");
    refuse(doc, "max_dialogs", "51", "max_dialogs");
    refuse(doc, "max_dialogs", "\"5\"", "max_dialogs");
    refuse(doc, "status", "\"away\"", "status");
    refuse(doc, "status", NULL, "status");
    refuse(doc, "created_at", "\"yesterday\"", "created_at");
    refuse(doc, "updated_at", NULL, "updated_at");
    refuse(doc, "last_seen_at", "12", "last_seen_at");
    refuse(doc, "last_dialog_closed_at", "\"2025-13-01\"", "last_dialog_closed_at");
    refuse(doc, "profile", "[]", "profile");
    refuse(doc, "status_since", "\"soon\"", "status_since");
    refuse(doc, "status_since", "5", "status_since");
    refuse(doc, "status_ms", "[]", "status_ms");
    refuse(doc, "status_ms", "{\"busy\":-1}", "status_ms.busy");
    refuse(doc, "status_ms", "{\"offline\":\"1\"}", "status_ms.offline");
    refuse(doc, "status_ms", "{\"available\":1.5}", "status_ms.available");
    refuse(doc, "status_ms", "{\"available\":null}", "status_ms.available");
    refuse(doc, "token_sha256", NULL, "token_sha256");
    refuse(doc, "token_sha256", "\"" HASH_B "0\"", "token_sha256");
    refuse(doc, "token_sha256",
           "\"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\"",
           "token_sha256");
    refuse(doc, "token_sha256",
           "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg\"",
           "token_sha256");

    /* optional parts may be absent */
    d = json_deep_copy(doc);
    (void)json_object_del(d, "profile");
    (void)json_object_del(d, "last_seen_at");
    (void)json_object_del(d, "last_dialog_closed_at");
    (void)json_object_del(d, "status_since");
    (void)json_object_del(d, "status_ms");
    assert_int_equal(cca_operator_validate(d, OP_ID, NULL), CCA_OK);
    (void)json_object_set_new(d, "status_since", json_null());
    (void)json_object_set_new(d, "status_ms", parse_json("{\"away\":\"x\"}"));
    assert_int_equal(cca_operator_validate(d, OP_ID, NULL), CCA_OK);
    json_decref(d);
    json_decref(doc);
}

static void test_tokens(void **state)
{
    char t1[CCA_OPERATOR_TOKEN_LEN + 1];
    char t2[CCA_OPERATOR_TOKEN_LEN + 1];
    char h1[65], h2[65], h[65];
    char bad[CCA_OPERATOR_TOKEN_LEN + 2];

    (void)state;
    assert_int_equal(cca_operator_token_new(t1, h1), CCA_OK);
    assert_int_equal(cca_operator_token_new(t2, h2), CCA_OK);
    assert_int_equal(strlen(t1), CCA_OPERATOR_TOKEN_LEN);
    assert_memory_equal(t1, "cco_", 4);
    for (size_t i = 4; i < CCA_OPERATOR_TOKEN_LEN; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                               "0123456789-_",
                               t1[i]));
    assert_string_not_equal(t1, t2);
    assert_string_not_equal(h1, h2);
    assert_true(cca_operator_token_looks_valid(t1, strlen(t1)));
    assert_true(cca_operator_token_looks_valid(t2, strlen(t2)));

    /* the hash: stable, 64 lower-case hex, the one token_new gave */
    cca_operator_token_hash(t1, strlen(t1), h);
    assert_string_equal(h, h1);
    assert_int_equal(strlen(h), 64);
    for (size_t i = 0; i < 64; i++)
        assert_non_null(strchr("0123456789abcdef", h[i]));
    /* FIPS 180-4 test vector "abc" */
    cca_operator_token_hash("abc", 3, h);
    assert_string_equal(
        h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cca_operator_token_hash(NULL, 0, h);
    assert_string_equal(
        h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    /* looks_valid: prefix, length, alphabet, canonical last character */
    assert_false(cca_operator_token_looks_valid(NULL, 0));
    assert_false(cca_operator_token_looks_valid(t1, strlen(t1) - 1));
    memcpy(bad, t1, sizeof(t1));
    bad[0] = 'C';
    assert_false(cca_operator_token_looks_valid(bad, strlen(bad)));
    memcpy(bad, t1, sizeof(t1));
    bad[10] = '+';
    assert_false(cca_operator_token_looks_valid(bad, strlen(bad)));
    bad[10] = '=';
    assert_false(cca_operator_token_looks_valid(bad, strlen(bad)));
    bad[10] = '\0';
    assert_false(cca_operator_token_looks_valid(bad, CCA_OPERATOR_TOKEN_LEN));
    memcpy(bad, t1, sizeof(t1));
    bad[CCA_OPERATOR_TOKEN_LEN] = 'A';
    bad[CCA_OPERATOR_TOKEN_LEN + 1] = '\0';
    assert_false(cca_operator_token_looks_valid(bad, strlen(bad)));
    memcpy(bad, t1, sizeof(t1));
    bad[CCA_OPERATOR_TOKEN_LEN - 1] = 'A'; /* index 0: low bits zero */
    assert_true(cca_operator_token_looks_valid(bad, CCA_OPERATOR_TOKEN_LEN));
    bad[CCA_OPERATOR_TOKEN_LEN - 1] = 'B'; /* index 1: not a canonical encoding */
    assert_false(cca_operator_token_looks_valid(bad, CCA_OPERATOR_TOKEN_LEN));
    assert_false(cca_operator_token_looks_valid("cco_", 4));

    /* many tokens: all well-formed and distinct from the first */
    for (int i = 0; i < 200; i++) {
        assert_int_equal(cca_operator_token_new(t2, h2), CCA_OK);
        assert_true(cca_operator_token_looks_valid(t2, strlen(t2)));
        assert_string_not_equal(t1, t2);
    }
}

static void test_secret_equal(void **state)
{
    (void)state;
    assert_true(
        cca_operator_secret_equal(SECRET, strlen(SECRET), SECRET, strlen(SECRET)));
    assert_false(cca_operator_secret_equal("Sup3r-S3cret-ValuE", 18, SECRET, 18));
    assert_false(cca_operator_secret_equal("xup3r-S3cret-Value", 18, SECRET, 18));
    /* different lengths, a prefix either way */
    assert_false(cca_operator_secret_equal(SECRET, 10, SECRET, strlen(SECRET)));
    assert_false(cca_operator_secret_equal(SECRET, strlen(SECRET), SECRET, 10));
    assert_true(cca_operator_secret_equal("abc\0def", 7, "abc\0def", 7));
    assert_false(cca_operator_secret_equal("abc\0xyz", 7, "abc\0def", 7));
    /* an unset secret lets nobody in, not even an empty one */
    assert_false(cca_operator_secret_equal("", 0, "", 0));
    assert_false(cca_operator_secret_equal(NULL, 0, NULL, 0));
    assert_false(cca_operator_secret_equal(SECRET, strlen(SECRET), "", 0));
    assert_false(cca_operator_secret_equal(SECRET, strlen(SECRET), NULL, 0));
    assert_false(cca_operator_secret_equal(NULL, 0, SECRET, strlen(SECRET)));
    assert_false(cca_operator_secret_equal("", 0, SECRET, strlen(SECRET)));
}

static void test_pin_allowed(void **state)
{
    (void)state;
    assert_true(cca_operator_pin_allowed("1234", 4, "1234"));
    assert_true(cca_operator_pin_allowed("1234", 4, " 0000 , 1234 ,5678"));
    assert_true(cca_operator_pin_allowed("5678", 4, " 0000 , 1234 ,\t5678\t"));
    assert_true(cca_operator_pin_allowed("0000", 4, " 0000 , 1234 ,5678"));
    assert_true(cca_operator_pin_allowed("1234", 4, ",,1234,,"));
    assert_true(cca_operator_pin_allowed("12345", 4, "1234")); /* @len counts */
    assert_false(cca_operator_pin_allowed("1235", 4, " 0000 , 1234 ,5678"));
    assert_false(cca_operator_pin_allowed("123", 3, " 0000 , 1234 ,5678"));
    assert_false(cca_operator_pin_allowed("12345", 5, "1234,5678"));
    assert_false(cca_operator_pin_allowed("1234 5678", 9, "1234 5678x"));
    assert_true(cca_operator_pin_allowed("12 34", 5, "12 34"));
    /* empty pin, empty list */
    assert_false(cca_operator_pin_allowed("", 0, "1234"));
    assert_false(cca_operator_pin_allowed(NULL, 0, "1234"));
    assert_false(cca_operator_pin_allowed("1234", 4, ""));
    assert_false(cca_operator_pin_allowed("1234", 4, NULL));
    assert_false(cca_operator_pin_allowed("1234", 4, " , ,"));
    assert_false(cca_operator_pin_allowed(" ", 1, " , ,"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_masks),
        cmocka_unit_test(test_register_good),
        cmocka_unit_test(test_register_credentials),
        cmocka_unit_test(test_register_name),
        cmocka_unit_test(test_register_fields),
        cmocka_unit_test(test_register_profile),
        cmocka_unit_test(test_person_field),
        cmocka_unit_test(test_register_unknown_and_syntax),
        cmocka_unit_test(test_no_credential_in_detail),
        cmocka_unit_test(test_reg_cleanup),
        cmocka_unit_test(test_patch),
        cmocka_unit_test(test_new_doc_shape),
        cmocka_unit_test(test_copy_on_write),
        cmocka_unit_test(test_time_in_status),
        cmocka_unit_test(test_time_in_status_old_record),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_secret_equal),
        cmocka_unit_test(test_pin_allowed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
