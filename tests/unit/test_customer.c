/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <jansson.h>

#include "cca/customer.h"
#include "cca/dialog.h"

#define T0        1736937000123LL /* 2025-01-15T10:30:00.123Z */
#define T0_S      "2025-01-15T10:30:00.123Z"
#define T1        (T0 + 60000)
#define T1_S      "2025-01-15T10:31:00.123Z"
#define CUST      "cust-42"
#define CUST_KEY  "268a9ff4-a329-5427-b96b-bda34ff27ad2" /* Python uuid.uuid5 */
#define DIALOG_ID "0b6f2c7e-4f7a-4c1e-9f3d-2a5b8c9d0e1f"

static json_t *parse_json(const char *s)
{
    json_error_t jerr;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &jerr);

    if (j == NULL)
        fail_msg("bad test JSON: %s", jerr.text);
    return j;
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

/* A string of @n copies of the UTF-8 character @ch (static buffer, one at a time). */
static const char *repeat(const char *ch, int n)
{
    static char buf[1024];
    size_t w = strlen(ch);

    assert_true(w * (size_t)n < sizeof(buf));
    for (int i = 0; i < n; i++)
        memcpy(buf + w * (size_t)i, ch, w);
    buf[w * (size_t)n] = '\0';
    return buf;
}

static void test_key_vector(void **state)
{
    /* expected values from Python's uuid.uuid5(namespace, name), independent of us */
    static const struct {
        const char *name;
        const char *key;
    } vectors[] = {
        {CUST, CUST_KEY},
        {"Иван", "f4bb0c3c-3613-537a-855d-f76ad888b4d4"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "2555c820-ecf0-5bbc-9250-204e7ca7e76b"},
        {"", "a05983ea-ba14-5779-a44a-f44c777c9c8b"},
    };
    char key[37];
    char again[37];
    char canon[37];

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(vectors); i++) {
        memset(key, 'X', sizeof(key));
        cca_customer_key(vectors[i].name, key);
        assert_string_equal(key, vectors[i].key);
        /* a canonical UUID: the store's only gate for ids accepts it as is */
        assert_true(cca_uuid_canonical(key, canon));
        assert_string_equal(canon, key);
        assert_int_equal(key[14], '5');           /* version */
        assert_non_null(strchr("89ab", key[19])); /* RFC variant */
        cca_customer_key(vectors[i].name, again); /* deterministic */
        assert_string_equal(again, key);
    }
    cca_customer_key("cust-43", key);
    assert_string_not_equal(key, CUST_KEY);
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(cca_customer_id_valid(CUST, strlen(CUST)));
    assert_true(cca_customer_id_valid("x", 1));
    assert_true(cca_customer_id_valid("Иван Петров", strlen("Иван Петров")));
    assert_true(cca_customer_id_valid("a\xc2\xa0"
                                      "b",
                                      4)); /* NBSP is not a control */
    /* @len counts, not the NUL */
    assert_true(cca_customer_id_valid("ab\n", 2));
    assert_false(cca_customer_id_valid("ab\n", 3));

    /* empty */
    assert_false(cca_customer_id_valid("", 0));
    assert_false(cca_customer_id_valid(CUST, 0));
    assert_false(cca_customer_id_valid(NULL, 0));
    /* 50 code points (100 bytes) yes, 51 no */
    assert_true(cca_customer_id_valid(repeat("ж", 50), 100));
    assert_false(cca_customer_id_valid(repeat("ж", 51), 102));
    assert_true(cca_customer_id_valid(repeat("a", 50), 50));
    assert_false(cca_customer_id_valid(repeat("a", 51), 51));
    /* control characters: C0, DEL, C1 */
    assert_false(cca_customer_id_valid("a\tb", 3));
    assert_false(cca_customer_id_valid("a\x1f", 2));
    assert_false(cca_customer_id_valid("a\x7f", 2));
    assert_false(cca_customer_id_valid("a\xc2\x85", 3));
    assert_false(cca_customer_id_valid("a\xc2\x9f", 3));
    /* not UTF-8 */
    assert_false(cca_customer_id_valid("a\xff", 2));
    assert_false(cca_customer_id_valid("a\xc3", 2));        /* cut */
    assert_false(cca_customer_id_valid("\xc0\xaf", 2));     /* overlong */
    assert_false(cca_customer_id_valid("\xed\xa0\x80", 3)); /* surrogate */
    assert_false(cca_customer_id_valid("a\0b", 3));         /* NUL */
}

static void test_email_phone(void **state)
{
    (void)state;
    assert_true(cca_customer_email_ok("i@example.com"));
    assert_true(cca_customer_email_ok("a.b+c@mail.example.ru"));
    assert_false(cca_customer_email_ok("nope"));
    assert_false(cca_customer_email_ok("a@b"));
    assert_false(cca_customer_email_ok("@b.c"));
    assert_false(cca_customer_email_ok("a@b@c.d"));
    assert_false(cca_customer_email_ok("a@.bc"));
    assert_false(cca_customer_email_ok("a@b.c."));
    assert_false(cca_customer_email_ok("a b@c.d"));
    assert_false(cca_customer_email_ok("a@c.d\n"));
    assert_false(cca_customer_email_ok(""));
    assert_false(cca_customer_email_ok(NULL));

    assert_true(cca_customer_phone_ok("+7 (999) 123-45-67"));
    assert_true(cca_customer_phone_ok("ext. 5"));
    assert_false(cca_customer_phone_ok("call me"));
    assert_false(cca_customer_phone_ok("٣")); /* Arabic-Indic digit: ASCII digits only */
    assert_false(cca_customer_phone_ok(""));
    assert_false(cca_customer_phone_ok(NULL));
}

static void put_ok(const char *body, struct cca_customer_fields *f)
{
    struct cca_error err = {0};

    if (cca_customer_parse_put(body, strlen(body), f, &err) != CCA_OK)
        fail_msg("refused %s: %s", body, err.msg);
}

/* A refused body: *ret untouched, the detail holds @needle. */
static cca_rc put_err(const char *body, size_t len, const char *needle)
{
    struct cca_customer_fields f;
    struct cca_customer_fields sentinel;
    struct cca_error err = {0};
    cca_rc rc;

    memset(&f, 0xA5, sizeof(f));
    memset(&sentinel, 0xA5, sizeof(sentinel));
    rc = cca_customer_parse_put(body, len, &f, &err);
    assert_int_not_equal(rc, CCA_OK);
    assert_int_equal(err.code, rc);
    assert_memory_equal(&f, &sentinel, sizeof(f));
    if (needle != NULL && strstr(err.msg, needle) == NULL)
        fail_msg("detail \"%s\" lacks \"%s\" (body %s)", err.msg, needle,
                 body != NULL ? body : "(null)");
    return rc;
}

static cca_rc put_err_s(const char *body, const char *needle)
{
    return put_err(body, strlen(body), needle);
}

static void test_parse_put_all(void **state)
{
    struct cca_customer_fields f = {0};

    (void)state;
    put_ok(
        "{\"full_name\":\"Иван Петров\",\"city\":\"Омск\",\"birth_date\":\"1990-05-17\","
        "\"position\":\"CTO\",\"experience\":12,\"phone\":\"+7 999 123-45-67\","
        "\"email\":\"ivan@example.ru\",\"language\":\"ru\"}",
        &f);
    assert_int_equal(f.set, 0xFFu);
    assert_string_equal(f.full_name, "Иван Петров");
    assert_string_equal(f.city, "Омск");
    assert_string_equal(f.birth_date, "1990-05-17");
    assert_string_equal(f.position, "CTO");
    assert_true(json_is_integer(f.experience));
    assert_int_equal(json_integer_value(f.experience), 12);
    assert_string_equal(f.phone, "+7 999 123-45-67");
    assert_string_equal(f.email, "ivan@example.ru");
    assert_string_equal(f.language, "ru");
    cca_customer_fields_cleanup(&f);
    assert_int_equal(f.set, 0);
    assert_null(f.full_name);
    assert_null(f.experience);
    cca_customer_fields_cleanup(&f); /* twice is fine */
    cca_customer_fields_cleanup(NULL);

    /* one key at a time: only its bit */
    put_ok("{\"city\":\"\"}", &f);
    assert_int_equal(f.set, CCA_CUSTOMER_F_CITY);
    assert_string_equal(f.city, "");
    assert_null(f.full_name);
    cca_customer_fields_cleanup(&f);
    put_ok("{\"experience\":\"since 2010\"}", &f);
    assert_int_equal(f.set, CCA_CUSTOMER_F_EXPERIENCE);
    assert_string_equal(json_string_value(f.experience), "since 2010");
    cca_customer_fields_cleanup(&f);
    put_ok("{\"language\":\"en\"}", &f);
    assert_int_equal(f.set, CCA_CUSTOMER_F_LANGUAGE);
    assert_string_equal(f.language, "en");
    cca_customer_fields_cleanup(&f);

    /* null clears: the bit is set, the value NULL */
    put_ok("{\"phone\":null,\"experience\":null,\"email\":\"a@b.cd\"}", &f);
    assert_int_equal(f.set, CCA_CUSTOMER_F_PHONE | CCA_CUSTOMER_F_EXPERIENCE |
                                CCA_CUSTOMER_F_EMAIL);
    assert_null(f.phone);
    assert_null(f.experience);
    assert_string_equal(f.email, "a@b.cd");
    cca_customer_fields_cleanup(&f);
    put_ok("{\"full_name\":null,\"city\":null,\"birth_date\":null,\"position\":null,"
           "\"experience\":null,\"phone\":null,\"email\":null,\"language\":null}",
           &f);
    assert_int_equal(f.set, 0xFFu);
    assert_null(f.full_name);
    assert_null(f.language);
    cca_customer_fields_cleanup(&f);

    /* the body need not be NUL-terminated: only len bytes are read */
    {
        const char body[] = "{\"city\":\"Омск\"}GARBAGE";

        assert_int_equal(cca_customer_parse_put(body, strlen(body) - 7, &f, NULL),
                         CCA_OK);
        assert_string_equal(f.city, "Омск");
        cca_customer_fields_cleanup(&f);
    }
}

static void test_parse_put_fields(void **state)
{
    static const struct {
        const char *body;
        const char *needle;
    } bad[] = {
        /* person fields: the operator profile's rules, named without "profile." */
        {"{\"full_name\":5}", "full_name must be a string"},
        {"{\"full_name\":\"a\\u0007b\"}", "full_name must not contain control"},
        {"{\"city\":[]}", "city must be a string"},
        {"{\"city\":\"Om\\nsk\"}", "city must not contain control"},
        {"{\"birth_date\":\"2023-02-29\"}", "birth_date must be a date"},
        {"{\"birth_date\":\"1899-12-31\"}", "birth_date must be a date"},
        {"{\"birth_date\":19900101}", "birth_date must be a date"},
        {"{\"position\":true}", "position must be a string"},
        {"{\"experience\":81}", "experience must be 0 to 80"},
        {"{\"experience\":-1}", "experience must be 0 to 80"},
        {"{\"experience\":2.5}", "experience must be a string or an integer"},
        {"{\"experience\":{}}", "experience must be a string or an integer"},
        /* phone: at most 20, a digit */
        {"{\"phone\":\"\"}", "phone must be"},
        {"{\"phone\":\"call me\"}", "phone must be"},
        {"{\"phone\":79991234567}", "phone must be"},
        {"{\"phone\":\"123456789012345678901\"}", "phone must be"},
        /* email */
        {"{\"email\":\"nope\"}", "email must be an email address"},
        {"{\"email\":\"a b@c.de\"}", "email must be an email address"},
        {"{\"email\":\"\"}", "email must be an email address"},
        {"{\"email\":[\"a@b.cd\"]}", "email must be an email address"},
        /* language */
        {"{\"language\":\"de\"}", "language must be \"ru\" or \"en\""},
        {"{\"language\":\"RU\"}", "language must be \"ru\" or \"en\""},
        {"{\"language\":\"\"}", "language must be \"ru\" or \"en\""},
        {"{\"language\":1}", "language must be \"ru\" or \"en\""},
        /* one bad field refuses the whole body */
        {"{\"city\":\"Омск\",\"language\":\"fr\"}", "language must be"},
    };
    struct cca_customer_fields f = {0};
    char body[1200];

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(bad); i++) {
        struct cca_error err = {0};

        assert_int_equal(put_err_s(bad[i].body, bad[i].needle), CCA_ERR_INVALID);
        /* named as the customer's field, not as "profile.<field>" */
        assert_int_equal(
            cca_customer_parse_put(bad[i].body, strlen(bad[i].body), &f, &err),
            CCA_ERR_INVALID);
        if (strncmp(err.msg, bad[i].needle, strlen(bad[i].needle)) != 0)
            fail_msg("detail \"%s\" does not start with \"%s\"", err.msg, bad[i].needle);
    }

    /* the caps, in code points: full_name 200, city 100, position 100,
     * experience 200, phone 20, email 100 */
    (void)snprintf(body, sizeof(body), "{\"full_name\":\"%s\"}", repeat("ж", 200));
    put_ok(body, &f);
    cca_customer_fields_cleanup(&f);
    (void)snprintf(body, sizeof(body), "{\"full_name\":\"%s\"}", repeat("ж", 201));
    put_err_s(body, "full_name must have 0 to 200");
    (void)snprintf(body, sizeof(body), "{\"city\":\"%s\"}", repeat("ж", 100));
    put_ok(body, &f);
    cca_customer_fields_cleanup(&f);
    (void)snprintf(body, sizeof(body), "{\"city\":\"%s\"}", repeat("ж", 101));
    put_err_s(body, "city must have 0 to 100");
    (void)snprintf(body, sizeof(body), "{\"position\":\"%s\"}", repeat("ж", 101));
    put_err_s(body, "position must have 0 to 100");
    (void)snprintf(body, sizeof(body), "{\"experience\":\"%s\"}", repeat("ж", 201));
    put_err_s(body, "experience must have 0 to 200");
    /* an ASCII digit and 19 Arabic-Indic ones: 20 code points in 39 bytes */
    (void)snprintf(body, sizeof(body), "{\"phone\":\"7%s\"}", repeat("٣", 19));
    put_ok(body, &f);
    cca_customer_fields_cleanup(&f);
    (void)snprintf(body, sizeof(body), "{\"phone\":\"7%s\"}", repeat("٣", 20));
    put_err_s(body, "phone must be a string of at most 20");
    put_ok("{\"phone\":\"12345678901234567890\"}", &f);
    assert_string_equal(f.phone, "12345678901234567890");
    cca_customer_fields_cleanup(&f);
    (void)snprintf(body, sizeof(body), "{\"email\":\"%s@example.com\"}", repeat("я", 88));
    put_ok(body, &f); /* 88 + 12 = 100 */
    cca_customer_fields_cleanup(&f);
    (void)snprintf(body, sizeof(body), "{\"email\":\"%s@example.com\"}", repeat("я", 89));
    put_err_s(body, "email must be");

    /* good values of the person fields */
    put_ok("{\"birth_date\":\"2000-02-29\",\"experience\":0}", &f);
    assert_string_equal(f.birth_date, "2000-02-29");
    assert_int_equal(json_integer_value(f.experience), 0);
    cca_customer_fields_cleanup(&f);
    put_ok("{\"experience\":80,\"position\":\"\"}", &f);
    cca_customer_fields_cleanup(&f);
}

static void test_parse_put_shape(void **state)
{
    struct cca_customer_fields f;
    char body[1200];

    (void)state;
    /* unknown keys, named */
    put_err_s("{\"name\":\"Иван\"}", "unknown field \"name\"");
    put_err_s("{\"city\":\"Омск\",\"customer_id\":\"x\"}",
              "unknown field \"customer_id\"");
    put_err_s("{\"created_at\":null}", "unknown field \"created_at\"");
    put_err_s("{\"Full_Name\":\"x\"}", "unknown field \"Full_Name\"");
    /* a long key is quoted cut, on a character boundary */
    (void)snprintf(body, sizeof(body), "{\"%s\":1}", repeat("ж", 60));
    put_err_s(body, "unknown field \"жжжжжжжжжжжжжжжжжжжж\"");

    /* duplicate keys */
    assert_int_equal(put_err_s("{\"city\":\"A\",\"city\":\"B\"}", "duplicate key"),
                     CCA_ERR_INVALID);
    assert_int_equal(put_err_s("{\"phone\":null,\"phone\":\"1\"}", "duplicate"),
                     CCA_ERR_INVALID);

    /* at least one key */
    assert_int_equal(put_err_s("{}", "at least one field"), CCA_ERR_INVALID);
    assert_int_equal(put_err_s(" { } ", "at least one field"), CCA_ERR_INVALID);

    /* not an object */
    assert_int_equal(put_err_s("[]", "must be a JSON object"), CCA_ERR_INVALID);
    assert_int_equal(put_err_s("null", "must be a JSON object"), CCA_ERR_INVALID);
    assert_int_equal(put_err_s("\"city\"", "must be a JSON object"), CCA_ERR_INVALID);
    assert_int_equal(put_err_s("5", "must be a JSON object"), CCA_ERR_INVALID);

    /* not JSON */
    assert_int_equal(put_err_s("", "empty"), CCA_ERR_PARSE);
    assert_int_equal(put_err(NULL, 0, "empty"), CCA_ERR_PARSE);
    assert_int_equal(put_err("{\"city\":\"x\"}", 0, "empty"), CCA_ERR_PARSE);
    assert_int_equal(put_err_s("{", "malformed JSON"), CCA_ERR_PARSE);
    assert_int_equal(put_err_s("{\"city\":}", "malformed JSON"), CCA_ERR_PARSE);
    assert_int_equal(put_err_s("city=Omsk", "malformed JSON"), CCA_ERR_PARSE);
    assert_int_equal(put_err_s("{\"city\":\"x\"} {}", "malformed JSON"), CCA_ERR_PARSE);
    assert_int_equal(put_err_s("{\"city\":\"\xff\"}", NULL), CCA_ERR_PARSE);
    /* a number no field takes */
    assert_int_equal(put_err_s("{\"experience\":1e999}", "out of range"),
                     CCA_ERR_INVALID);

    /* a NULL error detail is fine */
    memset(&f, 0, sizeof(f));
    assert_int_equal(cca_customer_parse_put("{}", 2, &f, NULL), CCA_ERR_INVALID);
}

/* A dialog of @customer_id with customer_info name, phone, email (any may be NULL). */
static json_t *dialog(const char *customer_id, const char *name, const char *phone,
                      const char *email)
{
    struct cca_dialog_create c = {
        .customer_id = (char *)customer_id,
        .name = (char *)name,
        .phone = (char *)phone,
        .email = (char *)email,
        .source = (char *)"api",
        .priority = (char *)"normal",
    };

    return cca_dialog_new_doc(DIALOG_ID, &c, T0);
}

static void test_fields_of_dialog(void **state)
{
    struct cca_customer_fields f;
    struct cca_customer_fields sentinel;
    json_t *doc;
    json_t *d;

    (void)state;
    doc = dialog(CUST, "Иван", "+7 999", "i@example.com");
    memset(&f, 0xA5, sizeof(f)); /* overwritten, not freed */
    assert_true(cca_customer_fields_of_dialog(doc, &f));
    assert_int_equal(f.set, CCA_CUSTOMER_F_FULL_NAME | CCA_CUSTOMER_F_PHONE |
                                CCA_CUSTOMER_F_EMAIL);
    assert_string_equal(f.full_name, "Иван");
    assert_string_equal(f.phone, "+7 999");
    assert_string_equal(f.email, "i@example.com");
    assert_null(f.city);
    assert_null(f.experience);
    assert_null(f.language); /* the dialog has no language yet */
    cca_customer_fields_cleanup(&f);

    /* the dialog's language */
    d = cca_dialog_with_language(doc, "en");
    assert_true(cca_customer_fields_of_dialog(d, &f));
    assert_true(f.set & CCA_CUSTOMER_F_LANGUAGE);
    assert_string_equal(f.language, "en");
    cca_customer_fields_cleanup(&f);
    json_decref(d);
    json_decref(doc);

    /* empty values are not data */
    doc = dialog(CUST, "Иван", "", "");
    assert_true(cca_customer_fields_of_dialog(doc, &f));
    assert_int_equal(f.set, CCA_CUSTOMER_F_FULL_NAME);
    assert_null(f.phone);
    assert_null(f.email);
    cca_customer_fields_cleanup(&f);
    json_decref(doc);
    doc = dialog(CUST, NULL, NULL, NULL);
    assert_true(cca_customer_fields_of_dialog(doc, &f));
    assert_int_equal(f.set, 0);
    cca_customer_fields_cleanup(&f);
    json_decref(doc);

    /* what would break the profile's rules is left out, the rest is kept */
    doc = dialog(CUST, "Ив\x01ан", "abc", "i@example.com");
    assert_true(cca_customer_fields_of_dialog(doc, &f));
    assert_int_equal(f.set, CCA_CUSTOMER_F_EMAIL);
    cca_customer_fields_cleanup(&f);
    json_decref(doc);

    /* no customer_id, or one that cannot be a profile's: false, nothing filled */
    memset(&sentinel, 0xA5, sizeof(sentinel));
    doc = dialog(NULL, "Иван", "+7 999", NULL);
    memset(&f, 0xA5, sizeof(f));
    assert_false(cca_customer_fields_of_dialog(doc, &f));
    assert_memory_equal(&f, &sentinel, sizeof(f));
    json_decref(doc);
    doc = dialog("cust\n42", "Иван", NULL, NULL);
    assert_false(cca_customer_fields_of_dialog(doc, &f));
    assert_memory_equal(&f, &sentinel, sizeof(f));
    json_decref(doc);
    doc = dialog("", "Иван", NULL, NULL);
    assert_false(cca_customer_fields_of_dialog(doc, &f));
    json_decref(doc);
    assert_false(cca_customer_fields_of_dialog(NULL, &f));
    assert_memory_equal(&f, &sentinel, sizeof(f));
}

static json_t *merge_put(json_t *doc, const char *body, int64_t now)
{
    struct cca_customer_fields f = {0};
    json_t *out;

    put_ok(body, &f);
    out = cca_customer_merge(doc, CUST, &f, false, now);
    cca_customer_fields_cleanup(&f);
    return out;
}

static void test_merge_new(void **state)
{
    static const char *const keys[] = {
        "customer_id", "full_name", "city",     "birth_date", "position",  "experience",
        "phone",       "email",     "language", "created_at", "updated_at"};
    struct cca_customer_fields f = {0};
    const char *key;
    json_t *v;
    json_t *doc;
    size_t i = 0;

    (void)state;
    /* a new profile from a dialog */
    f.set = CCA_CUSTOMER_F_FULL_NAME | CCA_CUSTOMER_F_PHONE;
    f.full_name = (char *)"Иван";
    f.phone = NULL; /* a clear is nothing to fill */
    doc = cca_customer_merge(NULL, CUST, &f, true, T0);
    assert_int_equal(json_object_size(doc), CCA_ARRAY_SIZE(keys));
    json_object_foreach (doc, key, v) {
        assert_string_equal(key, keys[i]);
        i++;
    }
    expect_json(json_incref(doc),
                "{\"customer_id\":\"" CUST "\",\"full_name\":\"Иван\",\"city\":null,"
                "\"birth_date\":null,\"position\":null,\"experience\":null,"
                "\"phone\":null,\"email\":null,\"language\":null,"
                "\"created_at\":\"" T0_S "\",\"updated_at\":\"" T0_S "\"}");
    assert_int_equal(cca_customer_validate(doc, CUST_KEY, NULL), CCA_OK);
    json_decref(doc);

    /* a new profile with nothing to set is still a new profile */
    f.set = 0;
    doc = cca_customer_merge(NULL, CUST, &f, false, T1);
    assert_non_null(doc);
    assert_true(json_is_null(json_object_get(doc, "full_name")));
    assert_string_equal(json_string_value(json_object_get(doc, "created_at")), T1_S);
    assert_int_equal(cca_customer_validate(doc, CUST_KEY, NULL), CCA_OK);
    json_decref(doc);

    /* a new profile from a PUT */
    doc = merge_put(NULL, "{\"experience\":7,\"language\":\"en\",\"city\":null}", T0);
    assert_int_equal(json_integer_value(json_object_get(doc, "experience")), 7);
    assert_string_equal(json_string_value(json_object_get(doc, "language")), "en");
    assert_true(json_is_null(json_object_get(doc, "city")));
    assert_int_equal(cca_customer_validate(doc, CUST_KEY, NULL), CCA_OK);
    json_decref(doc);
}

static void test_merge_fill_only(void **state)
{
    struct cca_customer_fields f = {0};
    json_t *dlg = dialog(CUST, "Иван", "+7 999", "i@example.com");
    json_t *doc = merge_put(NULL, "{\"full_name\":\"Иван Петрович Сидоров\"}", T0);
    json_t *fresh = json_deep_copy(doc);
    json_t *out;
    json_t *again;

    (void)state;
    assert_true(cca_customer_fields_of_dialog(dlg, &f));
    out = cca_customer_merge(doc, CUST, &f, true, T1);
    assert_ptr_not_equal(out, doc);
    assert_true(json_equal(doc, fresh)); /* the input is not changed */
    /* what the admin wrote stays; the gaps are filled */
    assert_string_equal(json_string_value(json_object_get(out, "full_name")),
                        "Иван Петрович Сидоров");
    assert_string_equal(json_string_value(json_object_get(out, "phone")), "+7 999");
    assert_string_equal(json_string_value(json_object_get(out, "email")),
                        "i@example.com");
    assert_string_equal(json_string_value(json_object_get(out, "created_at")), T0_S);
    assert_string_equal(json_string_value(json_object_get(out, "updated_at")), T1_S);
    assert_int_equal(cca_customer_validate(out, CUST_KEY, NULL), CCA_OK);

    /* the same dialog again: nothing to fill, the same document */
    again = cca_customer_merge(out, CUST, &f, true, T1 + 5000);
    assert_ptr_equal(again, out);
    assert_int_equal(out->refcount, 2);
    assert_string_equal(json_string_value(json_object_get(out, "updated_at")), T1_S);
    json_decref(again);
    cca_customer_fields_cleanup(&f);

    /* fill_only never clears */
    f.set = CCA_CUSTOMER_F_PHONE | CCA_CUSTOMER_F_EMAIL;
    again = cca_customer_merge(out, CUST, &f, true, T1 + 5000);
    assert_ptr_equal(again, out);
    json_decref(again);

    /* nor overwrites a value with another one */
    f.set = CCA_CUSTOMER_F_PHONE;
    f.phone = (char *)"+1 555";
    again = cca_customer_merge(out, CUST, &f, true, T1 + 5000);
    assert_ptr_equal(again, out);
    assert_string_equal(json_string_value(json_object_get(out, "phone")), "+7 999");
    json_decref(again);

    json_decref(out);
    json_decref(fresh);
    json_decref(doc);
    json_decref(dlg);
}

static void test_merge_put(void **state)
{
    json_t *doc = merge_put(NULL,
                            "{\"full_name\":\"Иван\",\"phone\":\"+7 999\","
                            "\"experience\":\"long\",\"language\":\"ru\"}",
                            T0);
    json_t *fresh = json_deep_copy(doc);
    json_t *out;
    json_t *again;

    (void)state;
    /* PUT overwrites and clears; other fields stay */
    out = merge_put(doc, "{\"full_name\":\"Пётр\",\"phone\":null,\"experience\":3}", T1);
    assert_ptr_not_equal(out, doc);
    assert_true(json_equal(doc, fresh));
    assert_string_equal(json_string_value(json_object_get(out, "full_name")), "Пётр");
    assert_true(json_is_null(json_object_get(out, "phone")));
    assert_int_equal(json_integer_value(json_object_get(out, "experience")), 3);
    assert_string_equal(json_string_value(json_object_get(out, "language")), "ru");
    assert_string_equal(json_string_value(json_object_get(out, "created_at")), T0_S);
    assert_string_equal(json_string_value(json_object_get(out, "updated_at")), T1_S);
    assert_int_equal(cca_customer_validate(out, CUST_KEY, NULL), CCA_OK);
    /* untouched children are shared, not copied */
    assert_ptr_equal(json_object_get(out, "language"), json_object_get(doc, "language"));

    /* the same values again: unchanged, the same pointer, updated_at kept */
    again = merge_put(out, "{\"full_name\":\"Пётр\",\"phone\":null,\"experience\":3}",
                      T1 + 1000);
    assert_ptr_equal(again, out);
    assert_int_equal(out->refcount, 2);
    assert_string_equal(json_string_value(json_object_get(again, "updated_at")), T1_S);
    json_decref(again);
    /* an integer is not the same as its text */
    again = merge_put(out, "{\"experience\":\"3\"}", T1 + 1000);
    assert_ptr_not_equal(again, out);
    assert_string_equal(json_string_value(json_object_get(again, "experience")), "3");
    json_decref(again);

    /* clearing a field an older profile does not have is no change */
    (void)json_object_del(fresh, "city");
    again = merge_put(fresh, "{\"city\":null}", T1);
    assert_ptr_equal(again, fresh);
    json_decref(again);
    /* setting it is */
    again = merge_put(fresh, "{\"city\":\"Омск\"}", T1);
    assert_ptr_not_equal(again, fresh);
    assert_string_equal(json_string_value(json_object_get(again, "city")), "Омск");
    assert_null(json_object_get(fresh, "city"));
    json_decref(again);

    /* a hand-built value that breaks a rule is not written */
    {
        struct cca_customer_fields f = {.set = CCA_CUSTOMER_F_LANGUAGE,
                                        .language = (char *)"de"};

        again = cca_customer_merge(out, CUST, &f, false, T1 + 2000);
        assert_ptr_equal(again, out);
        json_decref(again);
    }

    json_decref(out);
    json_decref(fresh);
    json_decref(doc);
}

/* @doc with @key set to the JSON @value (NULL: removed) is refused naming @needle. */
static void refuse(json_t *doc, const char *key, const char *value, const char *needle)
{
    json_t *bad = json_deep_copy(doc);
    struct cca_error err = {0};

    if (value == NULL)
        (void)json_object_del(bad, key);
    else
        (void)json_object_set_new(bad, key, parse_json(value));
    assert_int_equal(cca_customer_validate(bad, NULL, &err), CCA_ERR_INVALID);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("%s=%s: detail \"%s\" lacks \"%s\"", key, value ? value : "(absent)",
                 err.msg, needle);
    json_decref(bad);
}

static void test_validate(void **state)
{
    json_t *doc = merge_put(NULL,
                            "{\"full_name\":\"Иван\",\"city\":\"Омск\",\"birth_date\":"
                            "\"1990-05-17\",\"position\":\"CTO\",\"experience\":12,"
                            "\"phone\":\"+7 999\",\"email\":\"i@example.com\","
                            "\"language\":\"ru\"}",
                            T0);
    struct cca_error err = {0};
    char key[37];
    json_t *d;

    (void)state;
    assert_int_equal(cca_customer_validate(doc, CUST_KEY, &err), CCA_OK);
    assert_int_equal(cca_customer_validate(doc, NULL, &err), CCA_OK);
    cca_customer_key("cust-43", key);
    assert_int_equal(cca_customer_validate(doc, key, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "customer_id does not match"));
    assert_int_equal(cca_customer_validate(doc, "not-a-key", NULL), CCA_ERR_INVALID);
    assert_int_equal(cca_customer_validate(NULL, NULL, &err), CCA_ERR_INVALID);
    d = parse_json("[]");
    assert_int_equal(cca_customer_validate(d, NULL, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "not a JSON object"));
    json_decref(d);

    refuse(doc, "customer_id", NULL, "customer_id");
    refuse(doc, "customer_id", "null", "customer_id");
    refuse(doc, "customer_id", "\"\"", "customer_id");
    refuse(doc, "customer_id", "42", "customer_id");
    refuse(doc, "customer_id", "\"a\\tb\"", "customer_id");
    refuse(doc, "customer_id", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
           "customer_id");
    refuse(doc, "full_name", "5", "full_name");
    refuse(doc, "city", "\"a\\nb\"", "city");
    refuse(doc, "birth_date", "\"1990-02-30\"", "birth_date");
    refuse(doc, "position", "[]", "position");
    refuse(doc, "experience", "99", "experience");
    refuse(doc, "phone", "\"no digits\"", "phone");
    refuse(doc, "email", "\"nope\"", "email");
    refuse(doc, "language", "\"de\"", "language");
    refuse(doc, "created_at", NULL, "created_at");
    refuse(doc, "created_at", "null", "created_at");
    refuse(doc, "updated_at", "\"yesterday\"", "updated_at");

    /* null and absent fields are fine; keys of later versions are ignored */
    d = json_deep_copy(doc);
    (void)json_object_set_new(d, "full_name", json_null());
    (void)json_object_del(d, "city");
    (void)json_object_del(d, "language");
    (void)json_object_set_new(d, "notes", json_string("later"));
    assert_int_equal(cca_customer_validate(d, CUST_KEY, &err), CCA_OK);
    json_decref(d);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_vector),       cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_email_phone),      cmocka_unit_test(test_parse_put_all),
        cmocka_unit_test(test_parse_put_fields), cmocka_unit_test(test_parse_put_shape),
        cmocka_unit_test(test_fields_of_dialog), cmocka_unit_test(test_merge_new),
        cmocka_unit_test(test_merge_fill_only),  cmocka_unit_test(test_merge_put),
        cmocka_unit_test(test_validate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
