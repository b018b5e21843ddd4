/* SPDX-License-Identifier: MIT */
/* Request ids (http_request_id.c): RFC 9562 version 4 UUIDs, distinct per call and
 * thread. */
#include "cca_test.h"

#include <pthread.h>

#include "cca/common.h"

#include "http_int.h"

#define N 2000

/* Lower-case 8-4-4-4-12 hex, version 4, variant 10; and canonical as is. */
static void check_format(const char *id)
{
    char canon[37];

    assert_int_equal(strlen(id), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(id[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", id[i]));
    }
    assert_int_equal(id[14], '4');
    assert_non_null(strchr("89ab", id[19]));
    assert_true(cca_uuid_canonical(id, canon));
    assert_string_equal(canon, id);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void *make_ids(void *arg)
{
    char(*ids)[37] = arg;

    for (int i = 0; i < N; i++)
        cca_http_request_id_new(ids[i]);
    return NULL;
}

static void test_format_and_unique(void **state)
{
    static char ids[2 * N][37];
    pthread_t th;

    (void)state;
    /* Half from this thread, half from another: each thread seeds its own state. */
    make_ids(ids);
    assert_int_equal(pthread_create(&th, NULL, make_ids, ids + N), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    for (int i = 0; i < 2 * N; i++)
        check_format(ids[i]);
    qsort(ids, 2 * N, sizeof(ids[0]), cmp_id);
    for (int i = 1; i < 2 * N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_unique),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
