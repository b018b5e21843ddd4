/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: request body validation of every endpoint, as the server runs
 * it (http_server.c: a non-empty body must be UTF-8, then the route's parser;
 * http_routes.c: the handlers).
 * Input: byte 0 picks the parser (bits 0-1: create, message, close, bool;
 * bit 2 for close: a "?reason=" query is present), the rest is the body. For
 * close with a query, the body ends at the first NUL byte and the query value
 * follows it (MHD hands query values over as C strings). For bool, the rest is
 * the query value (up to the first NUL).
 * Invariants checked: a validated create builds a document that validates and
 * survives a dump/reload; a validated message is UTF-8, 1..2000 code points;
 * a close reason is UTF-8, 1..200 code points; parse_bool's answer is stable; a
 * rejected body gets the error shape {"detail", "code"} (both strings).
 */
#include <stdbool.h>
#include <string.h>

#include "cca/dialog.h"
#include "cca/text.h"
#include "fuzz.h"
#include "http_int.h"

#define FUZZ_ID "123e4567-e89b-42d3-a456-426614174000"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    return 0;
}

/* What the engine does with a validated create: build, validate, dump, reload. */
static void check_create(const struct cca_dialog_create *c)
{
    struct cca_error err = {0};
    json_t *doc = cca_dialog_new_doc(FUZZ_ID, c, 1736937000123);
    json_t *again;
    size_t len = 0;
    char *bytes;

    FUZZ_CHECK(c->source != NULL && c->priority != NULL);
    FUZZ_CHECK(c->initial_message == NULL || c->initial_message[0] != '\0');
    FUZZ_CHECK(cca_dialog_validate(doc, FUZZ_ID, &err) == CCA_OK);
    bytes = cca_dialog_dump(doc, &len);
    FUZZ_CHECK(cca_text_is_utf8(bytes, len));
    again = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(cca_dialog_validate(again, FUZZ_ID, &err) == CCA_OK);
    FUZZ_CHECK(json_equal(doc, again));
    json_decref(again);
    free(bytes);
    json_decref(doc);
}

/*
 * What respond_rc (http_routes.c) sends for a rejected body: the error shape
 * {"detail", "code"}, both strings (openapi.yaml Error), whatever the input.
 */
static void check_error_body(cca_rc rc, const struct cca_error *err)
{
    size_t len = 0;
    char *body = cca_http_error_body(cca_http_code_of(rc), err->msg, &len);
    json_t *o = json_loadb(body, len, 0, NULL);

    FUZZ_CHECK(err->code == rc);
    FUZZ_CHECK(cca_http_status_of(rc) >= 400 && cca_http_status_of(rc) < 500);
    FUZZ_CHECK(o != NULL);
    FUZZ_CHECK(json_is_string(json_object_get(o, "code")));
    FUZZ_CHECK(json_is_string(json_object_get(o, "detail")));
    json_decref(o);
    free(body);
}

static void check_text(const char *s, long min_cp, long max_cp)
{
    ssize_t cp = cca_text_codepoints(s, strlen(s));

    FUZZ_CHECK(cp >= min_cp && cp <= max_cp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cca_dialog_create create = {0};
    struct cca_error err = {0};
    const char *body;
    char *query = NULL;
    char *text = NULL;
    size_t len;
    uint8_t mode;
    cca_rc rc = CCA_OK;

    if (size == 0)
        return 0;
    mode = data[0];
    body = (const char *)data + 1;
    len = size - 1;

    if ((mode & 3) == 3) {
        /* DELETE ?force=: a query value, never a body. */
        bool v1 = false;
        bool v2 = true;

        query = cca_xstrndup(body, len);
        if (cca_http_parse_bool(query, &v1)) {
            FUZZ_CHECK(cca_http_parse_bool(query, &v2));
            FUZZ_CHECK(v1 == v2);
        }
        goto out;
    }
    if ((mode & 3) == 2 && (mode & 4) != 0) {
        const char *nul = memchr(body, '\0', len);

        if (nul != NULL) {
            query = cca_xstrndup(nul + 1, len - (size_t)(nul + 1 - body));
            len = (size_t)(nul - body);
        } else {
            query = cca_xstrdup("");
        }
    }
    /* http_server.c: a non-empty body must be UTF-8 before any handler runs. */
    if (len > 0 && !cca_text_is_utf8(body, len))
        goto out;
    if (len == 0)
        body = NULL; /* no upload: r->body stays NULL */

    switch (mode & 3) {
        case 0:
            rc = cca_http_parse_create(body, len, &create, &err);
            FUZZ_CHECK(rc == CCA_OK || rc == CCA_ERR_PARSE || rc == CCA_ERR_INVALID);
            if (rc == CCA_OK)
                check_create(&create);
            break;
        case 1:
            rc = cca_http_parse_message(body, len, &text, &err);
            FUZZ_CHECK(rc == CCA_OK || rc == CCA_ERR_PARSE || rc == CCA_ERR_INVALID);
            if (rc == CCA_OK)
                check_text(text, 1, 2000);
            break;
        case 2:
            rc = cca_http_parse_close(body, len, query, &text, &err);
            FUZZ_CHECK(rc == CCA_OK || rc == CCA_ERR_PARSE || rc == CCA_ERR_INVALID);
            if (rc == CCA_OK)
                check_text(text, 1, 200);
            break;
    }
    if (rc != CCA_OK)
        check_error_body(rc, &err);
out:
    cca_dialog_create_cleanup(&create);
    free(text);
    free(query);
    return 0;
}
