/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <unistd.h>

#include "cca/access.h"

#define SEC 1000000LL /* microseconds */

static struct cca_access_keys *keys_ok(const char *client, const char *file,
                                       const char *admin)
{
    struct cca_access_keys *k = NULL;
    struct cca_error err = {0};

    assert_int_equal(cca_access_keys_new(client, file, admin, &k, &err), CCA_OK);
    assert_non_null(k);
    return k;
}

static cca_rc keys_err(const char *client, const char *file, const char *admin,
                       struct cca_error *err)
{
    struct cca_access_keys *k = NULL;
    cca_rc rc = cca_access_keys_new(client, file, admin, &k, err);

    assert_null(k);
    return rc;
}

static enum cca_access_key_class check(const struct cca_access_keys *k, const char *key,
                                       uint32_t *idx)
{
    return cca_access_keys_check(k, key, strlen(key), idx);
}

static void test_keys_parse(void **state)
{
    struct cca_access_keys *k;
    struct cca_error err = {0};
    char big[300];

    (void)state;
    k = keys_ok(NULL, NULL, NULL);
    assert_int_equal(cca_access_keys_count(k), 0);
    assert_int_equal(check(k, "anything", NULL), CCA_ACCESS_KEY_NONE);
    cca_access_keys_free(k);
    k = keys_ok("  ", "", "");
    assert_int_equal(cca_access_keys_count(k), 0);
    cca_access_keys_free(k);

    /* trimmed, duplicates collapse */
    k = keys_ok(" alpha , beta,alpha", NULL, NULL);
    assert_int_equal(cca_access_keys_count(k), 2);
    assert_int_equal(check(k, "alpha", NULL), CCA_ACCESS_KEY_CLIENT);
    assert_int_equal(check(k, "beta", NULL), CCA_ACCESS_KEY_CLIENT);
    assert_int_equal(check(k, " alpha", NULL), CCA_ACCESS_KEY_NONE);
    cca_access_keys_free(k);

    /* errors name the position, never the key */
    assert_int_equal(keys_err("good,,other", NULL, NULL, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "API_KEYS: key 2"));
    assert_null(strstr(err.msg, "good"));
    assert_int_equal(keys_err("secret1,sec ret2", NULL, NULL, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "key 2"));
    assert_null(strstr(err.msg, "sec"));
    assert_int_equal(keys_err("ok", NULL, "adm\x01x", &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "ADMIN_API_KEYS: key 1"));
    memset(big, 'k', sizeof(big));
    big[257] = '\0';
    assert_int_equal(keys_err(big, NULL, NULL, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "longer than 256"));
    big[256] = '\0';
    k = keys_ok(big, NULL, NULL);
    assert_int_equal(check(k, big, NULL), CCA_ACCESS_KEY_CLIENT);
    big[255] = '\0';
    assert_int_equal(check(k, big, NULL), CCA_ACCESS_KEY_NONE);
    cca_access_keys_free(k);
    assert_int_equal(keys_err("a,", NULL, NULL, &err), CCA_ERR_INVALID);
}

static void test_keys_file(void **state)
{
    char path[] = "/tmp/cca-keys-XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    struct cca_access_keys *k;
    struct cca_error err = {0};

    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs("# client keys\n\n  file-key-1  \n\t# indented comment\nfile-key-2\r\n", f);
    fclose(f);
    k = keys_ok("env-key", path, "admin-key");
    assert_int_equal(cca_access_keys_count(k), 4);
    assert_int_equal(check(k, "file-key-1", NULL), CCA_ACCESS_KEY_CLIENT);
    assert_int_equal(check(k, "file-key-2", NULL), CCA_ACCESS_KEY_CLIENT);
    assert_int_equal(check(k, "env-key", NULL), CCA_ACCESS_KEY_CLIENT);
    assert_int_equal(check(k, "admin-key", NULL), CCA_ACCESS_KEY_ADMIN);
    assert_int_equal(check(k, "# client keys", NULL), CCA_ACCESS_KEY_NONE);
    cca_access_keys_free(k);

    /* a bad line names the line number */
    f = fopen(path, "w");
    fputs("fine\n# c\nbad key\n", f);
    fclose(f);
    assert_int_equal(keys_err(NULL, path, NULL, &err), CCA_ERR_INVALID);
    assert_non_null(strstr(err.msg, "API_KEYS_FILE: line 3"));
    assert_null(strstr(err.msg, "bad"));
    unlink(path);
    /* unreadable file: a start-up error */
    assert_int_equal(keys_err(NULL, path, NULL, &err), CCA_ERR_IO);
    assert_non_null(strstr(err.msg, "API_KEYS_FILE"));
}

static void test_keys_classes(void **state)
{
    struct cca_access_keys *k;
    uint32_t a = 99;
    uint32_t b = 99;
    uint32_t c = 99;

    (void)state;
    /* only admin keys: auth is on */
    k = keys_ok(NULL, NULL, "root");
    assert_int_equal(cca_access_keys_count(k), 1);
    assert_int_equal(check(k, "root", NULL), CCA_ACCESS_KEY_ADMIN);
    assert_int_equal(check(k, "roo", NULL), CCA_ACCESS_KEY_NONE);
    assert_int_equal(check(k, "roott", NULL), CCA_ACCESS_KEY_NONE);
    cca_access_keys_free(k);

    /* a key in both lists is admin; indexes are distinct and stable */
    k = keys_ok("c1,shared,c2", NULL, "shared,a1");
    assert_int_equal(cca_access_keys_count(k), 4);
    assert_int_equal(check(k, "shared", &a), CCA_ACCESS_KEY_ADMIN);
    assert_int_equal(check(k, "c1", &b), CCA_ACCESS_KEY_CLIENT);
    assert_int_equal(check(k, "c2", &c), CCA_ACCESS_KEY_CLIENT);
    assert_true(a != b && b != c && a != c);
    assert_int_equal(check(k, "c1", &a), CCA_ACCESS_KEY_CLIENT);
    assert_int_equal(a, b);
    a = 1234;
    assert_int_equal(check(k, "c3", &a), CCA_ACCESS_KEY_NONE);
    assert_int_equal(a, 1234); /* untouched */
    assert_int_equal(cca_access_keys_check(k, "c1xyz", 2, NULL), CCA_ACCESS_KEY_CLIENT);
    assert_int_equal(cca_access_keys_check(k, "", 0, NULL), CCA_ACCESS_KEY_NONE);
    assert_int_equal(cca_access_keys_check(k, NULL, 0, NULL), CCA_ACCESS_KEY_NONE);
    cca_access_keys_free(k);
}

static void test_bearer(void **state)
{
    const char *t = NULL;
    size_t n = 0;

    (void)state;
    assert_true(cca_access_bearer("Bearer abc", &t, &n));
    assert_int_equal(n, 3);
    assert_memory_equal(t, "abc", 3);
    assert_true(cca_access_bearer("bearer   k-2  ", &t, &n));
    assert_int_equal(n, 3);
    assert_memory_equal(t, "k-2", 3);
    assert_false(cca_access_bearer("Basic abc", &t, &n));
    assert_false(cca_access_bearer("Bearer", &t, &n));
    assert_false(cca_access_bearer("Bearer   ", &t, &n));
    assert_false(cca_access_bearer(NULL, &t, &n));
}

static void test_retry_after_math(void **state)
{
    (void)state;
    assert_int_equal(cca_access_retry_after_s(0.0, 1.0), 1);
    assert_int_equal(cca_access_retry_after_s(0.5, 1.0), 1);
    assert_int_equal(cca_access_retry_after_s(0.0, 0.5), 2);
    assert_int_equal(cca_access_retry_after_s(0.1, 0.1), 9);
    assert_int_equal(cca_access_retry_after_s(0.0, 1.0 / 60.0), 60);
    assert_int_equal(cca_access_retry_after_s(0.99, 100.0), 1);
}

static void test_bucket_refill(void **state)
{
    struct cca_access_limiter *lim = cca_access_limiter_new(2.0, 3.0, 16);
    unsigned retry = 0;
    int64_t t = 1000 * SEC;

    (void)state;
    /* burst of 3, then refused */
    for (int i = 0; i < 3; i++)
        assert_true(cca_access_limiter_take(lim, "a", 1, t, &retry));
    assert_false(cca_access_limiter_take(lim, "a", 1, t, &retry));
    assert_int_equal(retry, 1); /* 0.5 s to a token, rounded up */
    /* another identity is unaffected */
    assert_true(cca_access_limiter_take(lim, "b", 1, t, &retry));
    /* 0.4 s later: 0.8 tokens, still refused */
    assert_false(cca_access_limiter_take(lim, "a", 1, t + 4 * SEC / 10, &retry));
    /* 0.5 s: one token */
    assert_true(cca_access_limiter_take(lim, "a", 1, t + 5 * SEC / 10, &retry));
    assert_false(cca_access_limiter_take(lim, "a", 1, t + 5 * SEC / 10, &retry));
    /* long idle: refill caps at the burst */
    t += 3600 * SEC;
    for (int i = 0; i < 3; i++)
        assert_true(cca_access_limiter_take(lim, "a", 1, t, &retry));
    assert_false(cca_access_limiter_take(lim, "a", 1, t, &retry));
    cca_access_limiter_free(lim);

    /* per-minute limit: 2 per minute, Retry-After 30 s */
    lim = cca_access_limiter_new(2.0 / 60.0, 2.0, 8);
    assert_true(cca_access_limiter_take(lim, "d", 1, t, &retry));
    assert_true(cca_access_limiter_take(lim, "d", 1, t, &retry));
    assert_false(cca_access_limiter_take(lim, "d", 1, t, &retry));
    assert_int_equal(retry, 30);
    assert_false(cca_access_limiter_take(lim, "d", 1, t + 20 * SEC, &retry));
    assert_int_equal(retry, 10);
    assert_true(cca_access_limiter_take(lim, "d", 1, t + 30 * SEC, &retry));
    cca_access_limiter_free(lim);
}

static void test_table_bound(void **state)
{
    struct cca_access_limiter *lim = cca_access_limiter_new(1.0, 2.0, 8);
    int64_t t = 50 * SEC;
    unsigned char id[8] = {0};

    (void)state;
    assert_int_equal(cca_access_limiter_capacity(lim), 8);
    /* a flood of identities never grows the table */
    for (uint32_t i = 0; i < 10000; i++) {
        memcpy(id, &i, sizeof(i));
        (void)cca_access_limiter_take(lim, id, sizeof(id), t, NULL);
        assert_true(cca_access_limiter_size(lim) <= 8);
    }
    assert_int_equal(cca_access_limiter_size(lim), 8);
    cca_access_limiter_free(lim);

    /*
     * Eviction prefers full buckets: 8 identities in the one set, "drained" has
     * used its burst, the 7 others one token each. 1.5 s later the 7 are full
     * again, "drained" holds 1.5. A newcomer must evict a full one, so
     * "drained" keeps its 1.5 tokens: one take, then refused.
     */
    lim = cca_access_limiter_new(1.0, 2.0, 8);
    assert_true(cca_access_limiter_take(lim, "drained", 7, t, NULL));
    assert_true(cca_access_limiter_take(lim, "drained", 7, t, NULL));
    for (char c = '1'; c <= '7'; c++)
        assert_true(cca_access_limiter_take(lim, &c, 1, t, NULL));
    assert_int_equal(cca_access_limiter_size(lim), 8);
    assert_true(cca_access_limiter_take(lim, "newcomer", 8, t + 3 * SEC / 2, NULL));
    assert_int_equal(cca_access_limiter_size(lim), 8);
    assert_true(cca_access_limiter_take(lim, "drained", 7, t + 3 * SEC / 2, NULL));
    assert_false(cca_access_limiter_take(lim, "drained", 7, t + 3 * SEC / 2, NULL));

    /* with nothing full, the least recently used goes */
    cca_access_limiter_free(lim);
    lim = cca_access_limiter_new(0.001, 2.0, 8);
    for (char c = '0'; c <= '7'; c++) {
        assert_true(cca_access_limiter_take(lim, &c, 1, t + (c - '0') * SEC, NULL));
        assert_true(cca_access_limiter_take(lim, &c, 1, t + (c - '0') * SEC, NULL));
    }
    /* "0" is the oldest: a newcomer evicts it, so "0" comes back with a full bucket */
    assert_true(cca_access_limiter_take(lim, "x", 1, t + 10 * SEC, NULL));
    assert_false(cca_access_limiter_take(lim, "1", 1, t + 10 * SEC, NULL));
    assert_true(cca_access_limiter_take(lim, "0", 1, t + 10 * SEC, NULL));
    cca_access_limiter_free(lim);
}

static void test_cors_origins(void **state)
{
    struct cca_access_cors *c = NULL;
    struct cca_error err = {0};
    const char *o;

    (void)state;
    assert_int_equal(cca_access_cors_new("", &c, &err), CCA_OK);
    assert_false(cca_access_cors_enabled(c));
    assert_null(cca_access_cors_allow_origin(c, "https://a.example"));
    cca_access_cors_free(c);

    assert_int_equal(
        cca_access_cors_new(" https://a.example , http://localhost:3000", &c, &err),
        CCA_OK);
    assert_true(cca_access_cors_enabled(c));
    o = cca_access_cors_allow_origin(c, "https://a.example");
    assert_non_null(o);
    assert_string_equal(o, "https://a.example");
    assert_non_null(cca_access_cors_allow_origin(c, "HTTPS://A.EXAMPLE"));
    assert_non_null(cca_access_cors_allow_origin(c, "http://localhost:3000"));
    assert_null(cca_access_cors_allow_origin(c, "http://localhost:3001"));
    assert_null(cca_access_cors_allow_origin(c, "https://a.example.evil"));
    assert_null(cca_access_cors_allow_origin(c, "https://evil.example"));
    assert_null(cca_access_cors_allow_origin(c, "null"));
    assert_null(cca_access_cors_allow_origin(c, NULL));
    cca_access_cors_free(c);

    assert_int_equal(cca_access_cors_new("*", &c, &err), CCA_OK);
    assert_string_equal(cca_access_cors_allow_origin(c, "https://any.example"), "*");
    assert_null(cca_access_cors_allow_origin(c, NULL));
    cca_access_cors_free(c);

    c = NULL;
    assert_int_equal(cca_access_cors_new("https://a.example,a.example", &c, &err),
                     CCA_ERR_INVALID);
    assert_null(c);
    assert_non_null(strstr(err.msg, "entry 2"));
    assert_int_equal(cca_access_cors_new("https://a.example/path", &c, &err),
                     CCA_ERR_INVALID);
    assert_int_equal(cca_access_cors_new("https://a.example,,", &c, &err),
                     CCA_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_parse),       cmocka_unit_test(test_keys_file),
        cmocka_unit_test(test_keys_classes),     cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_retry_after_math), cmocka_unit_test(test_bucket_refill),
        cmocka_unit_test(test_table_bound),      cmocka_unit_test(test_cors_origins),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
