/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cca/customer.h"
#include "cca/mem.h"
#include "cca/text.h"

#include "http_int.h"

/* The one rc -> HTTP mapping (house style 8.4 rule 5). */
static const struct {
    unsigned status;
    const char *code;
} rc_map[CCA_ERR__LAST] = {
    [CCA_OK] = {200, "ok"},
    [CCA_ERR_INVALID] = {422, "validation_error"},
    [CCA_ERR_PARSE] = {400, "invalid_json"},
    [CCA_ERR_NOT_FOUND] = {404, "not_found"},
    [CCA_ERR_CONFLICT] = {409, "conflict"},
    [CCA_ERR_LIMIT] = {409, "limit_reached"},
    [CCA_ERR_MISMATCH] = {422, "idempotency_key_reused"},
    [CCA_ERR_FORBIDDEN] = {403, "forbidden"},
    [CCA_ERR_TOO_LARGE] = {413, "body_too_large"},
    [CCA_ERR_IO] = {503, "storage_unavailable"},
    [CCA_ERR_NO_SPACE] = {507, "insufficient_storage"},
    [CCA_ERR_UPSTREAM] = {502, "upstream_error"},
    [CCA_ERR_TIMEOUT] = {504, "timeout"},
    [CCA_ERR_UNAVAILABLE] = {503, "unavailable"},
    [CCA_ERR_INTERNAL] = {500, "internal"},
};

unsigned cca_http_status_of(cca_rc rc)
{
    if ((int)rc < 0 || rc >= CCA_ERR__LAST)
        return 500;
    return rc_map[rc].status;
}

const char *cca_http_code_of(cca_rc rc)
{
    if ((int)rc < 0 || rc >= CCA_ERR__LAST)
        return "internal";
    return rc_map[rc].code;
}

/*
 * @s with every byte that is not part of a well-formed UTF-8 sequence replaced
 * by '?'. A detail can quote client bytes cut mid-character (jansson's
 * "near '...'", the 160-byte struct cca_error), and json_string refuses those.
 */
static json_t *utf8_string(const char *s)
{
    size_t len = strlen(s);
    char *clean;
    json_t *j;

    if (cca_text_is_utf8(s, len))
        return json_string(s);
    clean = cca_xstrdup(s);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)clean[i];
        size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;

        if (i + n <= len && cca_text_is_utf8(clean + i, n)) {
            i += n;
        } else {
            clean[i++] = '?';
        }
    }
    j = json_string(clean);
    free(clean);
    return j;
}

char *cca_http_error_body(const char *code, const char *detail, size_t *ret_len)
{
    json_t *o = json_object();
    char *s;

    (void)json_object_set_new(o, "detail", utf8_string(detail));
    (void)json_object_set_new(o, "code", json_string(code));
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    *ret_len = strlen(s);
    return s;
}

bool cca_http_parse_uint(const char *s, unsigned long min, unsigned long max,
                         unsigned long *ret)
{
    char *end;
    unsigned long v;

    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *ret = v;
    return true;
}

bool cca_http_parse_bool(const char *s, bool *ret)
{
    static const char *const yes[] = {"true", "1", "yes", "on", "t", "y"};
    static const char *const no[] = {"false", "0", "no", "off", "f", "n"};

    for (size_t i = 0; s != NULL && i < CCA_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return true;
        }
    }
    return false;
}

/* Parse @body as a JSON object: CCA_ERR_PARSE if not JSON, CCA_ERR_INVALID if not an
 * object. */
static cca_rc load_object(const char *body, size_t len, json_t **ret,
                          struct cca_error *err)
{
    json_error_t jerr;
    json_t *root;

    if (len == 0)
        return cca_error_set(err, CCA_ERR_PARSE,
                             "request body is empty; expected a JSON object");
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL && json_error_code(&jerr) == json_error_numeric_overflow)
        /* Well-formed JSON, but no field of ours takes a number this large. */
        return cca_error_set(err, CCA_ERR_INVALID,
                             "number out of range at line %d column %d: %s", jerr.line,
                             jerr.column, jerr.text);
    if (root == NULL)
        return cca_error_set(err, CCA_ERR_PARSE,
                             "malformed JSON at line %d column %d: %s", jerr.line,
                             jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return cca_error_set(err, CCA_ERR_INVALID, "request body must be a JSON object");
    }
    *ret = root;
    return CCA_OK;
}

/*
 * Read an optional string field: absent or null leaves *ret NULL (allowed only
 * when @nullable). Lengths are Unicode code points.
 */
static cca_rc get_string(json_t *obj, const char *key, const char *label, long min_cp,
                         long max_cp, bool nullable, char **ret, struct cca_error *err)
{
    json_t *v = json_object_get(obj, key);
    ssize_t cp;

    *ret = NULL;
    if (v == NULL || json_is_null(v)) {
        if (!nullable && v != NULL)
            return cca_error_set(err, CCA_ERR_INVALID, "%s must be a string, not null",
                                 label);
        return CCA_OK;
    }
    if (!json_is_string(v))
        return cca_error_set(err, CCA_ERR_INVALID, "%s must be a string", label);
    cp = cca_text_codepoints(json_string_value(v), json_string_length(v));
    if (cp < 0)
        return cca_error_set(err, CCA_ERR_INVALID, "%s is not valid UTF-8", label);
    if (cp < min_cp || cp > max_cp)
        return cca_error_set(err, CCA_ERR_INVALID,
                             "%s must have %ld to %ld characters (has %zd)", label,
                             min_cp, max_cp, cp);
    *ret = cca_xstrndup(json_string_value(v), json_string_length(v));
    return CCA_OK;
}

static cca_rc parse_customer_info(json_t *info, struct cca_dialog_create *c,
                                  struct cca_error *err)
{
    cca_rc rc;

    if (!json_is_object(info))
        return cca_error_set(err, CCA_ERR_INVALID, "customer_info must be an object");
    if (json_object_get(info, "name") == NULL)
        return cca_error_set(err, CCA_ERR_INVALID, "customer_info.name is required");
    rc = get_string(info, "name", "customer_info.name", 1, 100, false, &c->name, err);
    if (rc == CCA_OK)
        rc =
            get_string(info, "phone", "customer_info.phone", 0, 20, true, &c->phone, err);
    if (rc == CCA_OK && c->phone != NULL && c->phone[0] &&
        !cca_customer_phone_ok(c->phone))
        rc = cca_error_set(err, CCA_ERR_INVALID,
                           "customer_info.phone must contain digits");
    if (rc == CCA_OK)
        rc = get_string(info, "email", "customer_info.email", 0, 100, true, &c->email,
                        err);
    if (rc == CCA_OK && c->email != NULL && c->email[0] &&
        !cca_customer_email_ok(c->email))
        rc = cca_error_set(err, CCA_ERR_INVALID,
                           "customer_info.email is not an email address");
    if (rc == CCA_OK)
        rc = get_string(info, "customer_id", "customer_info.customer_id", 1, 50, true,
                        &c->customer_id, err);
    return rc;
}

cca_rc cca_http_parse_create(const char *body, size_t len, struct cca_dialog_create *ret,
                             struct cca_error *reterr)
{
    static const char *const priorities[] = {"low", "normal", "high", "urgent"};
    struct cca_dialog_create c = {0};
    json_t *root = NULL;
    json_t *info;
    char *top_id = NULL;
    cca_rc rc;

    rc = load_object(body, len, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    info = json_object_get(root, "customer_info");
    if (info != NULL && !json_is_null(info)) {
        rc = parse_customer_info(info, &c, reterr);
        if (rc != CCA_OK)
            goto out;
    }
    rc = get_string(root, "customer_id", "customer_id", 1, 50, true, &top_id, reterr);
    if (rc != CCA_OK)
        goto out;
    if (top_id != NULL && c.customer_id != NULL && strcmp(top_id, c.customer_id) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "customer_id and customer_info.customer_id differ");
        goto out;
    }
    if (c.customer_id == NULL) {
        c.customer_id = top_id;
        top_id = NULL;
    }
    rc = get_string(root, "initial_message", "initial_message", 0, 2000, true,
                    &c.initial_message, reterr);
    if (rc != CCA_OK)
        goto out;
    if (c.initial_message != NULL && c.initial_message[0] == '\0') {
        free(c.initial_message); /* "" means no initial message, as in the seed */
        c.initial_message = NULL;
    }
    rc = get_string(root, "source", "source", 1, 50, false, &c.source, reterr);
    if (rc != CCA_OK)
        goto out;
    rc = get_string(root, "priority", "priority", 1, 10, false, &c.priority, reterr);
    if (rc != CCA_OK)
        goto out;
    if (c.priority != NULL) {
        bool known = false;

        for (size_t i = 0; i < CCA_ARRAY_SIZE(priorities); i++)
            known |= strcmp(c.priority, priorities[i]) == 0;
        if (!known) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "priority must be one of low, normal, high, urgent");
            goto out;
        }
    }
    if (c.source == NULL)
        c.source = cca_xstrdup("api");
    if (c.priority == NULL)
        c.priority = cca_xstrdup("normal");
    *ret = c;
    memset(&c, 0, sizeof(c));
out:
    free(top_id);
    cca_dialog_create_cleanup(&c);
    json_decref(root);
    return rc;
}

/*
 * {"message"} (1..2000 characters, not blank) into *ret_text (new); with
 * @customer, also the optional "message_type" that must be "user".
 */
static cca_rc parse_text(const char *body, size_t len, bool customer, char **ret_text,
                         struct cca_error *reterr)
{
    json_t *root = NULL;
    char *text = NULL;
    json_t *type;
    cca_rc rc;

    rc = load_object(body, len, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    if (json_object_get(root, "message") == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "message is required");
        goto out;
    }
    rc = get_string(root, "message", "message", 1, 2000, false, &text, reterr);
    if (rc != CCA_OK)
        goto out;
    if (cca_text_is_blank(text, strlen(text))) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "message is blank");
        goto out;
    }
    type = json_object_get(root, "message_type");
    if (customer && type != NULL &&
        !(json_is_string(type) && strcmp(json_string_value(type), "user") == 0)) {
        /* Clients may not inject agent or system turns (seed weakness 10). */
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "message_type must be \"user\"");
        goto out;
    }
    *ret_text = text;
    text = NULL;
out:
    free(text);
    json_decref(root);
    return rc;
}

cca_rc cca_http_parse_message(const char *body, size_t len, char **ret_text,
                              struct cca_error *reterr)
{
    return parse_text(body, len, true, ret_text, reterr);
}

cca_rc cca_http_parse_close(const char *body, size_t len, const char *query_reason,
                            char **ret_reason, struct cca_error *reterr)
{
    json_t *root = NULL;
    char *reason = NULL;
    cca_rc rc = CCA_OK;

    if (len > 0) {
        rc = load_object(body, len, &root, reterr);
        if (rc != CCA_OK)
            goto out;
        rc = get_string(root, "reason", "reason", 1, 200, true, &reason, reterr);
        if (rc != CCA_OK)
            goto out;
    }
    if (reason == NULL && query_reason != NULL) {
        ssize_t cp = cca_text_codepoints(query_reason, strlen(query_reason));

        if (cp < 1 || cp > 200) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "reason must have 1 to 200 characters");
            goto out;
        }
        reason = cca_xstrdup(query_reason);
    }
    *ret_reason = reason != NULL ? reason : cca_xstrdup("manual");
    reason = NULL;
out:
    free(reason);
    json_decref(root);
    return rc;
}

/* The text of an operator's reply: {"message"}, like a customer's but without a type. */
cca_rc cca_http_parse_reply(const char *body, size_t len, char **ret_text,
                            struct cca_error *reterr)
{
    return parse_text(body, len, false, ret_text, reterr);
}

cca_rc cca_http_parse_operator_status(const char *body, size_t len,
                                      enum cca_operator_status *ret_status,
                                      struct cca_error *reterr)
{
    json_t *root = NULL;
    enum cca_operator_status st;
    cca_rc rc;

    rc = load_object(body, len, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    if (!cca_operator_status_parse(json_string_value(json_object_get(root, "status")),
                                   &st)) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "status must be available, busy or offline");
        goto out;
    }
    *ret_status = st;
out:
    json_decref(root);
    return rc;
}

void cca_http_handoff_cleanup(struct cca_http_handoff *h)
{
    if (h == NULL)
        return;
    free(h->reason);
    memset(h, 0, sizeof(*h));
    h->agent = CCA_AGENT_NONE;
}

cca_rc cca_http_parse_handoff(const char *body, size_t len, struct cca_http_handoff *ret,
                              struct cca_error *reterr)
{
    struct cca_http_handoff h = {.to = CCA_OWNER_AGENT, .agent = CCA_AGENT_NONE};
    json_t *root = NULL;
    const char *to;
    json_t *v;
    cca_rc rc;

    rc = load_object(body, len, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    to = json_string_value(json_object_get(root, "to"));
    if (to != NULL && strcmp(to, "human") == 0) {
        h.to = CCA_OWNER_QUEUE;
    } else if (to != NULL && strcmp(to, "ai") == 0) {
        h.to = CCA_OWNER_AGENT;
    } else if (to != NULL && strcmp(to, "operator") == 0) {
        h.to = CCA_OWNER_OPERATOR;
    } else {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "to must be human, ai or operator");
        goto out;
    }
    rc = get_string(root, "reason", "reason", 1, 200, true, &h.reason, reterr);
    if (rc != CCA_OK)
        goto out;
    v = json_object_get(root, "agent");
    if (v != NULL && !json_is_null(v)) {
        if (h.to != CCA_OWNER_AGENT) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "agent is only allowed with \"to\": \"ai\"");
            goto out;
        }
        if (!cca_agent_parse(json_string_value(v), &h.agent)) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "agent must be tech_support, sales or supervisor");
            goto out;
        }
    }
    v = json_object_get(root, "operator_id");
    if (h.to == CCA_OWNER_OPERATOR) {
        if (!json_is_string(v) ||
            !cca_uuid_canonical(json_string_value(v), h.operator_id)) {
            rc = cca_error_set(
                reterr, CCA_ERR_INVALID,
                "operator_id (a UUID) is required with \"to\": \"operator\"");
            goto out;
        }
    } else if (v != NULL && !json_is_null(v)) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "operator_id is only allowed with \"to\": \"operator\"");
        goto out;
    }
    *ret = h;
    memset(&h, 0, sizeof(h));
out:
    cca_http_handoff_cleanup(&h);
    json_decref(root);
    return rc;
}

cca_rc cca_http_parse_rating(const char *body, size_t len, int *ret_score,
                             char **ret_comment, struct cca_error *reterr)
{
    json_t *root = NULL;
    char *comment = NULL;
    json_t *score;
    cca_rc rc;

    rc = load_object(body, len, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    score = json_object_get(root, "score");
    if (!json_is_integer(score) || json_integer_value(score) < 1 ||
        json_integer_value(score) > 5) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "score must be an integer from 1 to 5");
        goto out;
    }
    rc = get_string(root, "comment", "comment", 0, 1000, true, &comment, reterr);
    if (rc != CCA_OK)
        goto out;
    *ret_score = (int)json_integer_value(score);
    *ret_comment = comment;
    comment = NULL;
out:
    free(comment);
    json_decref(root);
    return rc;
}
