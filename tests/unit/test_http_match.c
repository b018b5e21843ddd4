/* SPDX-License-Identifier: MIT */
/*
 * The URL matcher (http_match.c) over tables of its own, and the service's
 * table (http_routes.c) as the server sees it.
 */
#include "cca_test.h"

#include "http_int.h"

static void handler(struct cca_http_request *r)
{
    (void)r;
}

#define ROW(m, p)                                                                        \
    {                                                                                    \
        (m), (p), handler, 200, NULL, CCA_ACCESS_PUBLIC                                  \
    }

/* "{id}" rows first on purpose: a literal segment must still win. */
static const struct cca_http_route rows[] = {
    ROW("GET", "/d/{id}"),   ROW("DELETE", "/d/{id}"),
    ROW("GET", "/d/{id}/h"), ROW("DELETE", "/d/cleanup"),
    ROW("GET", "/d/{id}/h"), ROW("POST", "/d/{id}/h"),
    ROW("GET", "/"),
};

static struct cca_http_table table;

static int setup(void **state)
{
    (void)state;
    return cca_http_table_init(&table, rows, CCA_ARRAY_SIZE(rows)) ? 0 : -1;
}

static const struct cca_http_route *match(const char *method, const char *path,
                                          bool *known, char allow[64], char seg[16])
{
    return cca_http_table_match(&table, method, path, known, allow, 64, seg, 16);
}

static void test_literal_wins_over_id(void **state)
{
    char allow[64];
    char seg[16];
    bool known = false;
    const struct cca_http_route *r;

    (void)state;
    r = match("DELETE", "/d/cleanup", &known, allow, seg);
    assert_ptr_equal(r, &rows[3]);
    assert_true(known);
    /* Only the literal row's methods: GET /d/{id} does not apply to "cleanup". */
    r = match("GET", "/d/cleanup", &known, allow, seg);
    assert_null(r);
    assert_true(known);
    assert_string_equal(allow, "DELETE");
}

static void test_id_segment(void **state)
{
    char allow[64];
    char seg[16];
    bool known = false;
    const struct cca_http_route *r;

    (void)state;
    r = match("DELETE", "/d/abc", &known, allow, seg);
    assert_ptr_equal(r, &rows[1]);
    assert_string_equal(seg, "abc");
    assert_int_equal(cca_http_table_index(&table, r), 1);
    /* First match wins among rows with the same method and pattern. */
    r = match("GET", "/d/xyz/h", &known, allow, seg);
    assert_ptr_equal(r, &rows[2]);
    assert_string_equal(seg, "xyz");
    /* Cut to the buffer, never unterminated. */
    r = match("GET", "/d/0123456789abcdefghij", &known, allow, seg);
    assert_ptr_equal(r, &rows[0]);
    assert_string_equal(seg, "0123456789abcde");
}

static void test_no_match(void **state)
{
    static const char *const paths[] = {"/d/", "/d//h", "/d/a/b",      "/d/a/h/",
                                        "/x",  "",      "/d/cleanup/x"};
    char allow[64];
    char seg[16];
    bool known = true;

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(paths); i++) {
        assert_null(match("GET", paths[i], &known, allow, seg));
        assert_false(known);
        assert_string_equal(allow, "");
    }
}

static void test_allow_list(void **state)
{
    char allow[64];
    char small[8];
    char seg[16];
    bool known = false;

    (void)state;
    /* Each method once, in row order. */
    assert_null(match("PUT", "/d/a/h", &known, allow, seg));
    assert_true(known);
    assert_string_equal(allow, "GET, POST");
    assert_null(match("PUT", "/d/a", &known, allow, seg));
    assert_string_equal(allow, "GET, DELETE");
    /* Cut like snprintf. */
    assert_null(cca_http_table_match(&table, "PUT", "/d/a", &known, small, sizeof(small),
                                     seg, sizeof(seg)));
    assert_true(known);
    assert_string_equal(small, "GET, DE");
}

static void test_table_size(void **state)
{
    static struct cca_http_route many[CCA_HTTP_MAX_ROUTES + 1];
    struct cca_http_table t;

    (void)state;
    for (size_t i = 0; i < CCA_ARRAY_SIZE(many); i++)
        many[i] = (struct cca_http_route)ROW("GET", "/");
    assert_false(cca_http_table_init(&t, many, CCA_ARRAY_SIZE(many)));
    assert_true(cca_http_table_init(&t, many, CCA_HTTP_MAX_ROUTES));
    assert_int_equal(t.n, CCA_HTTP_MAX_ROUTES);
    assert_true(cca_http_table_init(&t, many, 0));
}

/* Every row of the service's table is what its own pattern, with an id, matches. */
static void test_service_table(void **state)
{
    const struct cca_http_table *t = cca_http_routes();
    char allow[64];
    char seg[128];
    bool known;

    (void)state;
    assert_ptr_equal(t, cca_http_routes());
    assert_int_equal(t->n, cca_http_route_count());
    for (size_t i = 0; i < t->n; i++) {
        const struct cca_http_route *row = &t->rows[i];
        const char *brace = strstr(row->pattern, "{id}");
        char path[256];

        if (brace != NULL)
            (void)snprintf(path, sizeof(path), "%.*s%s%s", (int)(brace - row->pattern),
                           row->pattern, "6f1c2a4e-0b7d-4e8a-9c3f-2d5e7a9b1c04",
                           brace + 4);
        else
            (void)snprintf(path, sizeof(path), "%s", row->pattern);
        assert_ptr_equal(cca_http_table_match(t, row->method, path, &known, allow,
                                              sizeof(allow), seg, sizeof(seg)),
                         row);
        assert_ptr_equal(cca_http_route_at(i), row);
        assert_int_equal(cca_http_table_index(t, row), i);
        assert_non_null(row->handler);
    }
}

/* The service's routes through cca_http_match (moved from test_http_json.c). */
static void test_url_matching(void **state)
{
    char allow[64];
    char seg[128];
    bool known;
    const struct cca_http_route *r;

    (void)state;
    r = cca_http_match("DELETE", "/api/v1/dialogue/cleanup", &known, allow, sizeof(allow),
                       seg, sizeof(seg));
    assert_non_null(r);
    assert_string_equal(r->pattern, "/api/v1/dialogue/cleanup");
    r = cca_http_match("DELETE", "/api/v1/dialogue/abc", &known, allow, sizeof(allow),
                       seg, sizeof(seg));
    assert_non_null(r);
    assert_string_equal(seg, "abc");
    r = cca_http_match("PUT", "/api/v1/dialogue/abc", &known, allow, sizeof(allow), seg,
                       sizeof(seg));
    assert_null(r);
    assert_true(known);
    assert_non_null(strstr(allow, "GET"));
    assert_non_null(strstr(allow, "DELETE"));
    r = cca_http_match("GET", "/api/v1/dialogue/abc/history", &known, allow,
                       sizeof(allow), seg, sizeof(seg));
    assert_non_null(r);
    r = cca_http_match("GET", "/api/v1/dialogue/a/b/c", &known, allow, sizeof(allow), seg,
                       sizeof(seg));
    assert_null(r);
    assert_false(known);
    r = cca_http_match("GET", "/api/v1/dialogue//history", &known, allow, sizeof(allow),
                       seg, sizeof(seg));
    assert_null(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_wins_over_id),
        cmocka_unit_test(test_id_segment),
        cmocka_unit_test(test_no_match),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_table_size),
        cmocka_unit_test(test_service_table),
        cmocka_unit_test(test_url_matching),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
