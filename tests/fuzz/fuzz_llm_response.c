/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: what the LLM client reads from upstream (llm.c): the body of a
 * 2xx chat completion (cca_llm_parse_response), the reason kept for an error
 * status (cca_llm_error_reason) and the Retry-After / retry-after-ms headers
 * (cca_llm_parse_retry_after). Formats: OpenAI's published OpenAPI document
 * (CreateChatCompletionResponse, ErrorResponse), RFC 9110 section 10.2.3.
 * Input: byte 0 picks the function (mod 3). parse_response: the rest is the
 * body. error_reason: byte 1 picks the status (400..655) and byte 2 the size
 * of the output buffer (1..64), the rest is the body. retry_after: the rest
 * is "<Retry-After>\n<retry-after-ms>" (C strings, as curl hands headers
 * over); no '\n' means no retry-after-ms header, and bit 2 of byte 0 drops
 * the Retry-After header.
 * Invariants checked: llm.h's contracts (content only on success, reason
 * "HTTP <status>" plus at most a short identifier, never more than @size
 * bytes; a wait of -1 or 0..1 day).
 */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "cca/llm.h"
#include "fuzz.h"

#define NOW_S 1736937000 /* 2025-01-15T10:30:00Z */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    return 0;
}

static void check_response(const char *body, size_t len)
{
    struct cca_llm_result res;
    cca_rc rc;

    memset(&res, 0, sizeof(res));
    rc = cca_llm_parse_response(body, len, &res);
    FUZZ_CHECK(rc == CCA_OK || rc == CCA_ERR_UPSTREAM);
    FUZZ_CHECK(memchr(res.error, '\0', sizeof(res.error)) != NULL);
    if (rc == CCA_OK)
        FUZZ_CHECK(res.content != NULL);
    else
        FUZZ_CHECK(res.content == NULL && res.error[0] != '\0');
    cca_llm_result_cleanup(&res);
    FUZZ_CHECK(res.content == NULL);
}

/* "HTTP <status>" then optionally " (<id>)", id of 1..40 bytes [A-Za-z0-9_.-]. */
static bool reason_shape_ok(const char *s, long status)
{
    char head[32];
    size_t n = (size_t)snprintf(head, sizeof(head), "HTTP %ld", status);
    size_t id = 0;

    if (strncmp(s, head, n) != 0)
        return false;
    s += n;
    if (*s == '\0')
        return true;
    if (strncmp(s, " (", 2) != 0)
        return false;
    for (s += 2; *s != '\0' && *s != ')'; s++, id++) {
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
            return false;
    }
    return *s == ')' && s[1] == '\0' && id >= 1 && id <= 40;
}

static void check_error_reason(const uint8_t *data, size_t size)
{
    long status;
    size_t out_size;
    char *out;

    if (size < 2)
        return;
    status = 400 + data[0];
    out_size = 1 + data[1] % 64;
    out = cca_xmalloc(out_size); /* exact size: ASan sees any overflow */
    memset(out, 'x', out_size);
    cca_llm_error_reason(status, (const char *)data + 2, size - 2, out, out_size);
    FUZZ_CHECK(memchr(out, '\0', out_size) != NULL);
    /* A buffer wide enough for any reason holds the whole, well-shaped one. */
    if (out_size >= 64)
        FUZZ_CHECK(reason_shape_ok(out, status));
    else
        FUZZ_CHECK(strncmp(out, "HTTP", strlen(out) < 4 ? strlen(out) : 4) == 0);
    free(out);
}

static void check_retry_after(const char *s, size_t len, bool drop_value)
{
    char *copy = cca_xstrndup(s, len); /* headers are C strings */
    char *nl = strchr(copy, '\n');
    const char *ms_value = NULL;
    int64_t wait;

    if (nl != NULL) {
        *nl = '\0';
        ms_value = nl + 1;
    }
    wait = cca_llm_parse_retry_after(drop_value ? NULL : copy, ms_value, NOW_S);
    FUZZ_CHECK(wait == -1 || (wait >= 0 && wait <= 86400LL * 1000));
    if (drop_value && ms_value == NULL)
        FUZZ_CHECK(wait == -1);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
        case 0:
            check_response((const char *)data + 1, size - 1);
            break;
        case 1:
            check_error_reason(data + 1, size - 1);
            break;
        case 2:
            check_retry_after((const char *)data + 1, size - 1, (data[0] & 4) != 0);
            break;
    }
    return 0;
}
