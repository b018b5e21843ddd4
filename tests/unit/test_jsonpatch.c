/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <jansson.h>

#include "cca/jsonpatch.h"

static json_t *parse(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);

    assert_non_null(j);
    return j;
}

/* Apply @patch to a private deep copy of @from; it must equal @to. */
static void assert_round_trip(json_t *from, json_t *to, json_t *patch)
{
    json_t *copy = json_deep_copy(from);

    assert_non_null(patch);
    assert_int_equal(cca_jsonpatch_apply(copy, patch, NULL), CCA_OK);
    assert_true(json_equal(copy, to));
    json_decref(copy);
}

/* A copy-on-write change: shared children are skipped, grown arrays appended. */
static void test_diff_copy_on_write(void **state)
{
    json_t *from = parse("{\"id\":\"x\",\"status\":\"active\",\"messages\":[{\"n\":1}],"
                         "\"meta\":{\"total\":1,\"times\":[0.5],\"same\":{\"a\":1}},"
                         "\"gone\":true,\"a/b~c\":1}");
    json_t *to = json_copy(from);
    json_t *messages = json_copy(json_object_get(from, "messages"));
    json_t *meta = json_copy(json_object_get(from, "meta"));
    json_t *patch;
    char *text;

    (void)state;
    (void)json_array_append_new(messages, parse("{\"n\":2}"));
    (void)json_array_append_new(messages, parse("{\"n\":3}"));
    (void)json_object_set_new(to, "messages", messages);
    (void)json_object_set_new(meta, "total", json_integer(2));
    (void)json_object_set_new(to, "meta", meta);
    (void)json_object_set_new(to, "status", json_string("active")); /* equal: no op */
    (void)json_object_set_new(to, "new", json_null());
    (void)json_object_del(to, "gone");
    (void)json_object_set_new(to, "a/b~c", json_integer(2));
    patch = cca_jsonpatch_diff(from, to);
    text = json_dumps(patch, JSON_COMPACT);
    assert_string_equal(text,
                        "[{\"op\":\"add\",\"path\":\"/messages/-\",\"value\":{\"n\":2}},"
                        "{\"op\":\"add\",\"path\":\"/messages/-\",\"value\":{\"n\":3}},"
                        "{\"op\":\"replace\",\"path\":\"/meta/total\",\"value\":2},"
                        "{\"op\":\"replace\",\"path\":\"/a~1b~0c\",\"value\":2},"
                        "{\"op\":\"add\",\"path\":\"/new\",\"value\":null},"
                        "{\"op\":\"remove\",\"path\":\"/gone\"}]");
    free(text);
    assert_round_trip(from, to, patch);
    json_decref(patch);

    /* Nothing changed: an empty patch. */
    patch = cca_jsonpatch_diff(from, from);
    assert_int_equal(json_array_size(patch), 0);
    json_decref(patch);
    json_decref(to);
    json_decref(from);
}

/* Arrays that are not a pointer-prefix (rebuilt, shrunk) are replaced whole. */
static void test_diff_replaces(void **state)
{
    json_t *from = parse("{\"list\":[1,2,3],\"kind\":[1]}");
    json_t *to = parse("{\"list\":[1,2],\"kind\":{\"now\":\"object\"}}");
    json_t *patch = cca_jsonpatch_diff(from, to);

    (void)state;
    assert_int_equal(json_array_size(patch), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(patch, 0), "op")), "replace");
    assert_round_trip(from, to, patch);
    json_decref(patch);
    /* Roots of different types cannot be expressed: NULL. */
    json_decref(to);
    to = parse("[1]");
    assert_null(cca_jsonpatch_diff(from, to));
    json_decref(to);
    json_decref(from);
}

/* RFC 6902 section 4 on arrays and objects, and the errors. */
static void test_apply(void **state)
{
    static const struct {
        const char *patch;
        const char *want; /* the document after, or NULL for CCA_ERR_INVALID */
    } rows[] = {
        {"[{\"op\":\"add\",\"path\":\"/a/1\",\"value\":9}]", "{\"a\":[1,9,2],\"o\":{}}"},
        {"[{\"op\":\"add\",\"path\":\"/a/2\",\"value\":9}]", "{\"a\":[1,2,9],\"o\":{}}"},
        {"[{\"op\":\"add\",\"path\":\"/a/3\",\"value\":9}]", NULL},
        {"[{\"op\":\"replace\",\"path\":\"/a/0\",\"value\":0}]",
         "{\"a\":[0,2],\"o\":{}}"},
        {"[{\"op\":\"remove\",\"path\":\"/a/0\"}]", "{\"a\":[2],\"o\":{}}"},
        {"[{\"op\":\"remove\",\"path\":\"/a/01\"}]", NULL},
        {"[{\"op\":\"remove\",\"path\":\"/a/-\"}]", NULL},
        {"[{\"op\":\"add\",\"path\":\"/o/k~1x\",\"value\":1}]",
         "{\"a\":[1,2],\"o\":{\"k/x\":1}}"},
        {"[{\"op\":\"replace\",\"path\":\"/o/missing\",\"value\":1}]", NULL},
        {"[{\"op\":\"add\",\"path\":\"/no/such\",\"value\":1}]", NULL},
        {"[{\"op\":\"add\",\"path\":\"/o/x~2\",\"value\":1}]", NULL},
        {"[{\"op\":\"test\",\"path\":\"/a\",\"value\":1}]", NULL},
        {"[{\"op\":\"add\",\"path\":\"\",\"value\":1}]", NULL},
        {"[{\"op\":\"add\",\"path\":\"/o/v\"}]", NULL},
        {"[1]", NULL},
        {"{}", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *doc = parse("{\"a\":[1,2],\"o\":{}}");
        json_t *patch = json_loads(rows[i].patch, 0, NULL);
        struct cca_error err = {0};
        cca_rc rc;

        assert_non_null(patch);
        rc = cca_jsonpatch_apply(doc, patch, &err);
        if (rows[i].want == NULL) {
            if (rc != CCA_ERR_INVALID || err.msg[0] == '\0')
                fail_msg("row %zu (%s): rc %d, want an error", i, rows[i].patch, rc);
        } else {
            json_t *want = parse(rows[i].want);

            if (rc != CCA_OK || !json_equal(doc, want))
                fail_msg("row %zu (%s): rc %d (%s)", i, rows[i].patch, rc, err.msg);
            json_decref(want);
        }
        json_decref(patch);
        json_decref(doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff_copy_on_write),
        cmocka_unit_test(test_diff_replaces),
        cmocka_unit_test(test_apply),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
