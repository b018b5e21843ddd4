/* SPDX-License-Identifier: MIT */
#include "cca_test.h"

#include <openssl/evp.h>

#include "cca/web.h"

/*
 * The embedded static files and the HTTP rules of static files: the table
 * against the files in the source tree, the content-coding and If-None-Match
 * parsers against the RFC 9110 examples and hostile values.
 */

static char *read_file(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *ret_len = (size_t)n;
    return buf;
}

/* The file itself of @a: its bytes, decoded when gzip-encoded (new, free()). */
static char *plain_bytes(const struct cca_web_asset *a)
{
    char *plain = NULL;

    if (!a->gzip) {
        plain = malloc(a->len + 1);
        assert_non_null(plain);
        memcpy(plain, a->data, a->len);
        return plain;
    }
    assert_int_equal(cca_web_gunzip(a, &plain), CCA_OK);
    return plain;
}

static void test_find(void **state)
{
    (void)state;
    const struct cca_web_asset *index = cca_web_find("/console/index.html");

    assert_non_null(index);
    assert_string_equal(index->content_type, "text/html; charset=utf-8");
    /* The directory and its slash form give the index; nothing else does. */
    assert_ptr_equal(cca_web_find("/console"), index);
    assert_ptr_equal(cca_web_find("/console/"), index);
    assert_ptr_equal(cca_web_find("/docs"), cca_web_find("/docs/index.html"));
    assert_ptr_equal(cca_web_find("/docs/"), cca_web_find("/docs/index.html"));
    assert_null(cca_web_find("/console//"));
    assert_null(cca_web_find("/consoles"));
    assert_null(cca_web_find("/console/../openapi.yaml"));
    assert_null(cca_web_find("/console/nope.js"));
    assert_null(cca_web_find(""));
    assert_null(cca_web_find("/"));
    assert_string_equal(cca_web_find("/console/console.js")->content_type,
                        "text/javascript; charset=utf-8");
    assert_string_equal(cca_web_find("/console/favicon.svg")->content_type,
                        "image/svg+xml");
    assert_string_equal(cca_web_find("/openapi.yaml")->content_type, "application/yaml");
    /* Every entry is found by its own path (the table is sorted). */
    for (size_t i = 0; i < cca_web_count(); i++)
        assert_ptr_equal(cca_web_find(cca_web_at(i)->path), cca_web_at(i));
    assert_null(cca_web_at(cca_web_count()));
}

/*
 * The source file meson.build maps @url to (CCA_WEB_FILES: "URL=FILE;..."),
 * read whole (new, free()), or NULL when the list has no such URL.
 */
static char *source_of(const char *url, size_t *ret_len)
{
    const char *p = CCA_WEB_FILES;
    size_t n = strlen(url);

    while (*p != '\0') {
        const char *end = strchr(p, ';');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        if (len > n && strncmp(p, url, n) == 0 && p[n] == '=') {
            char path[1024];

            assert_true(len - n - 1 < sizeof(path));
            memcpy(path, p + n + 1, len - n - 1);
            path[len - n - 1] = '\0';
            return read_file(path, ret_len);
        }
        p += len + (end != NULL);
    }
    return NULL;
}

/* Each asset is its file in the tree, and its ETag is that file's SHA-256 prefix. */
static void test_assets_match_the_tree(void **state)
{
    (void)state;
    size_t listed = 1;
    bool saw_gzip = false;

    for (const char *p = CCA_WEB_FILES; *p != '\0'; p++)
        listed += *p == ';';
    assert_int_equal(cca_web_count(), listed); /* nothing dropped, nothing extra */
    for (size_t i = 0; i < cca_web_count(); i++) {
        const struct cca_web_asset *a = cca_web_at(i);
        char *plain = plain_bytes(a);
        size_t len = 0;
        char *tree = source_of(a->path, &len);
        unsigned char md[32];
        char want[32];

        assert_int_equal(EVP_Digest(plain, a->size, md, NULL, EVP_sha256(), NULL), 1);
        want[0] = '"';
        for (int k = 0; k < 12; k++)
            (void)snprintf(want + 1 + 2 * k, 3, "%02x", md[k]);
        want[25] = '"';
        want[26] = '\0';
        assert_string_equal(a->etag, want);
        if (a->gzip) {
            saw_gzip = true;
            assert_true(a->len * 10 <= a->size * 9);
            assert_int_equal(strlen(a->etag_gzip), 29);
            assert_memory_equal(a->etag_gzip, want, 25);
            assert_string_equal(a->etag_gzip + 25, "-gz\"");
        } else {
            assert_int_equal(a->len, a->size);
            assert_string_equal(a->etag_gzip, a->etag);
            assert_int_equal(cca_web_gunzip(a, &plain), CCA_ERR_INVALID);
        }
        assert_non_null(tree);
        assert_int_equal(a->size, len);
        assert_memory_equal(plain, tree, len);
        free(tree);
        free(plain);
    }
    assert_true(saw_gzip); /* Swagger UI's bundle compresses about 4:1 */
    assert_non_null(cca_web_find("/openapi.yaml"));
}

/* A damaged gzip body is refused, never served short or overrun. */
static void test_gunzip_damaged(void **state)
{
    (void)state;
    const struct cca_web_asset *good = cca_web_find("/docs/swagger-ui-bundle.js");
    struct cca_web_asset bad;
    unsigned char *copy;
    char *out = (char *)"untouched";

    assert_non_null(good);
    assert_true(good->gzip);
    copy = malloc(good->len);
    assert_non_null(copy);
    memcpy(copy, good->data, good->len);
    bad = *good;
    bad.data = copy;
    bad.len = good->len / 2; /* truncated */
    assert_int_equal(cca_web_gunzip(&bad, &out), CCA_ERR_INTERNAL);
    assert_null(out);
    bad.len = good->len;
    bad.size = good->size - 1; /* longer than promised */
    assert_int_equal(cca_web_gunzip(&bad, &out), CCA_ERR_INTERNAL);
    bad.size = good->size;
    copy[good->len / 2] ^= 0x55; /* corrupted: the CRC or the stream fails */
    assert_int_equal(cca_web_gunzip(&bad, &out), CCA_ERR_INTERNAL);
    assert_null(out);
    free(copy);
}

static void test_accepts_gzip(void **state)
{
    (void)state;
    assert_false(cca_web_accepts_gzip(NULL));
    assert_false(cca_web_accepts_gzip(""));
    assert_false(cca_web_accepts_gzip("identity"));
    assert_false(cca_web_accepts_gzip("br, deflate"));
    assert_true(cca_web_accepts_gzip("gzip"));
    assert_true(cca_web_accepts_gzip("GZIP"));
    assert_true(cca_web_accepts_gzip("x-gzip"));
    assert_true(cca_web_accepts_gzip("gzip, deflate, br, zstd")); /* Chromium's */
    assert_true(cca_web_accepts_gzip("deflate;q=0.5 , gzip;q=0.8"));
    assert_true(cca_web_accepts_gzip("*"));
    assert_true(cca_web_accepts_gzip("br;q=1.0, *;q=0.1"));
    assert_false(cca_web_accepts_gzip("gzip;q=0"));
    assert_false(cca_web_accepts_gzip("gzip;q=0.000"));
    assert_false(cca_web_accepts_gzip("gzip ; q=0, *")); /* named refusal wins */
    assert_false(cca_web_accepts_gzip("*;q=0"));
    assert_false(cca_web_accepts_gzip("gzipped, xgzip")); /* whole tokens only */
    assert_false(cca_web_accepts_gzip("gzip;q=abc"));     /* malformed: refused */
    assert_false(cca_web_accepts_gzip("gzip;q=2"));
    assert_true(cca_web_accepts_gzip("gzip;level=9;q=0.5")); /* other parameters */
    assert_true(cca_web_accepts_gzip(",,, gzip ,"));
}

static void test_etag_matches(void **state)
{
    (void)state;
    const char *e = "\"0123456789abcdef01234567\"";

    assert_false(cca_web_etag_matches(NULL, e));
    assert_false(cca_web_etag_matches("", e));
    assert_true(cca_web_etag_matches("*", e));
    assert_true(cca_web_etag_matches(" * ", e));
    assert_true(cca_web_etag_matches("\"0123456789abcdef01234567\"", e));
    assert_true(cca_web_etag_matches("W/\"0123456789abcdef01234567\"", e));
    assert_true(cca_web_etag_matches("\"x\", \"0123456789abcdef01234567\"", e));
    assert_true(cca_web_etag_matches("\"x\",W/\"0123456789abcdef01234567\" , \"y\"", e));
    assert_false(cca_web_etag_matches("\"0123456789abcdef01234567-gz\"", e));
    assert_false(cca_web_etag_matches("\"0123456789abcdef0123456\"", e));
    assert_false(cca_web_etag_matches("0123456789abcdef01234567", e)); /* unquoted */
    assert_false(cca_web_etag_matches("\"0123456789abcdef01234567", e));
    assert_false(cca_web_etag_matches("*, \"0123456789abcdef01234567\"", e));
    /* Junk between tags makes the whole list malformed: the full answer, no 304. */
    assert_false(cca_web_etag_matches("\"x\" junk \"0123456789abcdef01234567\"", e));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_assets_match_the_tree),
        cmocka_unit_test(test_gunzip_damaged),
        cmocka_unit_test(test_accepts_gzip),
        cmocka_unit_test(test_etag_matches),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
