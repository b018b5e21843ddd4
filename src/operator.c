/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "cca/mem.h"
#include "cca/operator.h"
#include "cca/text.h"

#define SHA256_LEN 32
#define TOKEN_RAW  32 /* random bytes in a token: 256 bits */
#define KEY_QUOTE  40 /* bytes of a client's key quoted in a detail */

static const char *const status_names[CCA_OPERATOR_STATUS__COUNT] = {
    [CCA_OPERATOR_AVAILABLE] = "available",
    [CCA_OPERATOR_BUSY] = "busy",
    [CCA_OPERATOR_OFFLINE] = "offline",
};

/* The order of the "languages" array: the service's first language first. */
static const enum cca_lang lang_order[] = {CCA_LANG_RU, CCA_LANG_EN};

const char *cca_operator_status_name(enum cca_operator_status status)
{
    if ((int)status < 0 || (size_t)status >= CCA_ARRAY_SIZE(status_names))
        return "offline";
    return status_names[status];
}

bool cca_operator_status_parse(const char *name, enum cca_operator_status *ret_status)
{
    for (size_t i = 0; name != NULL && i < CCA_ARRAY_SIZE(status_names); i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *ret_status = (enum cca_operator_status)i;
            return true;
        }
    }
    return false;
}

json_t *cca_operator_langs_json(uint32_t mask)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < CCA_ARRAY_SIZE(lang_order); i++) {
        if (mask & CCA_OPERATOR_LANG_BIT(lang_order[i]))
            (void)json_array_append_new(arr, json_string(cca_lang_code(lang_order[i])));
    }
    return arr;
}

cca_rc cca_operator_langs_parse(json_t *arr, uint32_t *ret_mask, struct cca_error *reterr)
{
    uint32_t mask = 0;
    json_t *v;
    size_t i;

    if (!json_is_array(arr))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "languages must be an array of \"ru\" and \"en\"");
    if (json_array_size(arr) == 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "languages must name at least one language");
    json_array_foreach (arr, i, v) {
        const char *s = json_string_value(v);
        bool known = false;

        for (size_t j = 0; s != NULL && j < CCA_ARRAY_SIZE(lang_order); j++) {
            if (strcmp(s, cca_lang_code(lang_order[j])) == 0) {
                mask |= CCA_OPERATOR_LANG_BIT(lang_order[j]);
                known = true;
            }
        }
        if (!known)
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "languages[%zu] must be \"ru\" or \"en\"", i);
    }
    *ret_mask = mask;
    return CCA_OK;
}

json_t *cca_operator_skills_json(uint32_t mask)
{
    json_t *arr = json_array();

    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        if (mask & CCA_OPERATOR_SKILL_BIT(a))
            (void)json_array_append_new(arr,
                                        json_string(cca_agent_name((enum cca_agent)a)));
    }
    return arr;
}

cca_rc cca_operator_skills_parse(json_t *arr, uint32_t *ret_mask,
                                 struct cca_error *reterr)
{
    uint32_t mask = 0;
    json_t *v;
    size_t i;

    if (!json_is_array(arr))
        return cca_error_set(reterr, CCA_ERR_INVALID, "skills must be an array");
    json_array_foreach (arr, i, v) {
        enum cca_agent a;

        if (!json_is_string(v) || !cca_agent_parse(json_string_value(v), &a))
            return cca_error_set(
                reterr, CCA_ERR_INVALID,
                "skills[%zu] must be \"tech_support\", \"sales\" or \"supervisor\"", i);
        mask |= CCA_OPERATOR_SKILL_BIT(a);
    }
    *ret_mask = mask;
    return CCA_OK;
}

/* Body parsing. */

/*
 * A JSON syntax error is reported by position only: jansson's text quotes the
 * input "near" the error, and that can be the secret or the PIN (an
 * unterminated string, a bare word). Any JSON text is decoded (RFC 8259: a
 * scalar is JSON too), so "not JSON" and "JSON but not an object" differ.
 */
cca_rc cca_operator_parse_object(const char *body, size_t len, json_t **ret,
                                 struct cca_error *err)
{
    json_error_t jerr;
    json_t *root;

    if (body == NULL || len == 0)
        return cca_error_set(err, CCA_ERR_PARSE,
                             "request body is empty; expected a JSON object");
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        switch (json_error_code(&jerr)) {
            case json_error_duplicate_key:
                return cca_error_set(err, CCA_ERR_INVALID,
                                     "duplicate key at line %d column %d", jerr.line,
                                     jerr.column);
            case json_error_numeric_overflow:
                return cca_error_set(err, CCA_ERR_INVALID,
                                     "number out of range at line %d column %d",
                                     jerr.line, jerr.column);
            default:
                return cca_error_set(err, CCA_ERR_PARSE,
                                     "malformed JSON at line %d column %d", jerr.line,
                                     jerr.column);
        }
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return cca_error_set(err, CCA_ERR_INVALID, "request body must be a JSON object");
    }
    *ret = root;
    return CCA_OK;
}

/*
 * Wipe the string @key of @root in place before the tree is freed: jansson
 * frees without clearing, and a secret should not outlive the request in freed
 * heap. The tree was loaded by us and is not shared, so writing its buffer is
 * safe; the length jansson keeps is unchanged.
 */
static void wipe_string(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);

    if (json_is_string(v))
        explicit_bzero((char *)json_string_value(v), json_string_length(v));
}

static int key_quote_len(const char *key)
{
    return (int)cca_text_utf8_cut(key, strlen(key), KEY_QUOTE);
}

/* Refuse the first key of @obj that is not in @allowed, quoting it (cut). */
static cca_rc only_keys(json_t *obj, const char *const *allowed, size_t n,
                        const char *prefix, struct cca_error *err)
{
    const char *key;
    json_t *v;

    json_object_foreach (obj, key, v) {
        bool known = false;

        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known)
            return cca_error_set(err, CCA_ERR_INVALID, "unknown field \"%s%.*s\"", prefix,
                                 key_quote_len(key), key);
    }
    return CCA_OK;
}

/*
 * Check the string @v for @label: at most @max code points (at least @min), no
 * control characters. Never quotes the value.
 */
static cca_rc check_text(json_t *v, const char *label, long min, long max,
                         struct cca_error *err)
{
    ssize_t cp;

    if (!json_is_string(v))
        return cca_error_set(err, CCA_ERR_INVALID, "%s must be a string", label);
    cp = cca_text_codepoints(json_string_value(v), json_string_length(v));
    if (cp < 0)
        return cca_error_set(err, CCA_ERR_INVALID, "%s is not valid UTF-8", label);
    if (cp < min || cp > max)
        return cca_error_set(err, CCA_ERR_INVALID,
                             "%s must have %ld to %ld characters (has %zd)", label, min,
                             max, cp);
    if (cca_text_has_control(json_string_value(v), json_string_length(v)))
        return cca_error_set(err, CCA_ERR_INVALID,
                             "%s must not contain control characters", label);
    return CCA_OK;
}

static cca_rc parse_name(json_t *v, char **ret, struct cca_error *err)
{
    cca_rc rc = check_text(v, "name", 1, CCA_OPERATOR_NAME_MAX, err);

    if (rc != CCA_OK)
        return rc;
    if (cca_text_is_blank(json_string_value(v), json_string_length(v)))
        return cca_error_set(err, CCA_ERR_INVALID, "name is blank");
    *ret = cca_xstrndup(json_string_value(v), json_string_length(v));
    return CCA_OK;
}

static cca_rc parse_max(json_t *v, unsigned *ret, struct cca_error *err)
{
    json_int_t n = json_integer_value(v);

    if (!json_is_integer(v) || n < 1 || n > CCA_OPERATOR_MAX_DIALOGS_MAX)
        return cca_error_set(err, CCA_ERR_INVALID,
                             "max_dialogs must be an integer from 1 to %d",
                             CCA_OPERATOR_MAX_DIALOGS_MAX);
    *ret = (unsigned)n;
    return CCA_OK;
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

static int num(const char *s, size_t n)
{
    int v = 0;

    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* "YYYY-MM-DD", a real date of the proleptic Gregorian calendar, 1900..2100. */
static bool date_ok(const char *s, size_t len)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d, max;

    if (len != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4) || !digits(s + 5, 2) ||
        !digits(s + 8, 2))
        return false;
    y = num(s, 4);
    m = num(s + 5, 2);
    d = num(s + 8, 2);
    if (y < 1900 || y > 2100 || m < 1 || m > 12)
        return false;
    max = mdays[m - 1];
    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
        max = 29;
    return d >= 1 && d <= max;
}

static const char *const profile_keys[] = {"full_name", "city", "birth_date", "position",
                                           "experience"};

cca_rc cca_operator_check_person_field(const char *key, json_t *v, const char *label,
                                       struct cca_error *reterr)
{
    if (key == NULL)
        return cca_error_set(reterr, CCA_ERR_INVALID, "unknown field");
    if (label == NULL)
        label = key;
    if (strcmp(key, "full_name") == 0)
        return check_text(v, label, 0, 200, reterr);
    if (strcmp(key, "city") == 0 || strcmp(key, "position") == 0)
        return check_text(v, label, 0, 100, reterr);
    if (strcmp(key, "birth_date") == 0) {
        if (!json_is_string(v) || !date_ok(json_string_value(v), json_string_length(v)))
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "%s must be a date \"YYYY-MM-DD\" from 1900 to 2100",
                                 label);
        return CCA_OK;
    }
    if (strcmp(key, "experience") == 0) {
        /* Free text, or whole years. */
        if (json_is_integer(v)) {
            if (json_integer_value(v) < 0 || json_integer_value(v) > 80)
                return cca_error_set(reterr, CCA_ERR_INVALID, "%s must be 0 to 80 years",
                                     label);
            return CCA_OK;
        }
        if (!json_is_string(v))
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "%s must be a string or an integer", label);
        return check_text(v, label, 0, 200, reterr);
    }
    return cca_error_set(reterr, CCA_ERR_INVALID, "unknown field \"%.*s\"",
                         key_quote_len(key), key);
}

/*
 * The profile object @v: a new object with the given keys. A null value is left
 * out (@patch false) or kept as null, "remove this key" (@patch true).
 */
static cca_rc parse_profile(json_t *v, bool patch, json_t **ret, struct cca_error *err)
{
    json_t *out = NULL;
    const char *key;
    json_t *val;
    cca_rc rc;

    if (!json_is_object(v))
        return cca_error_set(err, CCA_ERR_INVALID, "profile must be an object");
    if (patch && json_object_size(v) == 0)
        return cca_error_set(err, CCA_ERR_INVALID,
                             "profile must name at least one field");
    rc = only_keys(v, profile_keys, CCA_ARRAY_SIZE(profile_keys), "profile.", err);
    if (rc != CCA_OK)
        goto out;
    out = json_object();
    json_object_foreach (v, key, val) {
        /* Keys are known (only_keys above), so "profile." + key fits. */
        char label[32];

        if (json_is_null(val)) {
            if (patch)
                (void)json_object_set_new(out, key, json_null());
            continue;
        }
        (void)snprintf(label, sizeof(label), "profile.%s", key);
        rc = cca_operator_check_person_field(key, val, label, err);
        if (rc != CCA_OK)
            goto out;
        (void)json_object_set(out, key, val);
    }
    *ret = out;
    out = NULL;
out:
    json_decref(out);
    return rc;
}

static cca_rc parse_secret(json_t *v, char **ret, struct cca_error *err)
{
    size_t n = json_string_length(v);

    if (!json_is_string(v) || n < 1 || n > CCA_OPERATOR_SECRET_MAX)
        return cca_error_set(err, CCA_ERR_INVALID,
                             "secret must be a string of 1 to %d bytes",
                             CCA_OPERATOR_SECRET_MAX);
    *ret = cca_xstrndup(json_string_value(v), n);
    return CCA_OK;
}

static cca_rc parse_pin(json_t *v, char **ret, struct cca_error *err)
{
    size_t n = json_string_length(v);

    if (!json_is_string(v) || n < CCA_OPERATOR_PIN_MIN || n > CCA_OPERATOR_PIN_MAX ||
        !digits(json_string_value(v), n))
        return cca_error_set(err, CCA_ERR_INVALID,
                             "pin must be a string of %d to %d digits",
                             CCA_OPERATOR_PIN_MIN, CCA_OPERATOR_PIN_MAX);
    *ret = cca_xstrndup(json_string_value(v), n);
    return CCA_OK;
}

static unsigned clamp_max(unsigned n)
{
    if (n < 1)
        return 1;
    return n > CCA_OPERATOR_MAX_DIALOGS_MAX ? CCA_OPERATOR_MAX_DIALOGS_MAX : n;
}

/*
 * The fields a registration and a patch share (name, languages, skills,
 * max_dialogs, profile) from @root into @ret, each with its has_ flag when
 * given; @patch: a profile may remove fields (null). On failure @ret keeps
 * what it parsed (the caller frees it).
 */
static cca_rc parse_fields(json_t *root, bool patch, struct cca_operator_patch *ret,
                           struct cca_error *reterr)
{
    json_t *v;
    cca_rc rc = CCA_OK;

    if ((v = json_object_get(root, "name")) != NULL &&
        (rc = parse_name(v, &ret->name, reterr)) != CCA_OK)
        return rc;
    if ((v = json_object_get(root, "languages")) != NULL) {
        if ((rc = cca_operator_langs_parse(v, &ret->languages, reterr)) != CCA_OK)
            return rc;
        ret->has_languages = true;
    }
    if ((v = json_object_get(root, "skills")) != NULL) {
        if ((rc = cca_operator_skills_parse(v, &ret->skills, reterr)) != CCA_OK)
            return rc;
        ret->has_skills = true;
    }
    if ((v = json_object_get(root, "max_dialogs")) != NULL) {
        if ((rc = parse_max(v, &ret->max_dialogs, reterr)) != CCA_OK)
            return rc;
        ret->has_max_dialogs = true;
    }
    if ((v = json_object_get(root, "profile")) != NULL)
        rc = parse_profile(v, patch, &ret->profile, reterr);
    return rc;
}

cca_rc cca_operator_parse_register(const char *body, size_t len, bool need_credential,
                                   unsigned default_max, struct cca_operator_reg *ret,
                                   struct cca_error *reterr)
{
    static const char *const keys[] = {"secret", "pin",         "name",   "languages",
                                       "skills", "max_dialogs", "profile"};
    struct cca_operator_reg r = {0};
    json_t *root = NULL;
    json_t *secret, *pin;
    cca_rc rc;

    rc = cca_operator_parse_object(body, len, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    rc = only_keys(root, keys, CCA_ARRAY_SIZE(keys), "", reterr);
    if (rc != CCA_OK)
        goto out;
    secret = json_object_get(root, "secret");
    pin = json_object_get(root, "pin");
    if (need_credential) {
        if (secret != NULL && pin != NULL) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "give either secret or pin, not both");
            goto out;
        }
        if (secret == NULL && pin == NULL) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID, "secret or pin is required");
            goto out;
        }
        rc = secret != NULL ? parse_secret(secret, &r.secret, reterr)
                            : parse_pin(pin, &r.pin, reterr);
        if (rc != CCA_OK)
            goto out;
    }
    if (json_object_get(root, "name") == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "name is required");
        goto out;
    }
    {
        struct cca_operator_patch f = {0};

        rc = parse_fields(root, false, &f, reterr);
        r.name = f.name;
        r.languages = f.has_languages ? f.languages
                                      : CCA_OPERATOR_LANG_BIT(CCA_LANG_RU) |
                                            CCA_OPERATOR_LANG_BIT(CCA_LANG_EN);
        r.skills = f.skills;
        r.max_dialogs = f.has_max_dialogs ? f.max_dialogs : clamp_max(default_max);
        r.profile = f.profile != NULL ? f.profile : json_object();
        if (rc != CCA_OK)
            goto out;
    }
    *ret = r;
    memset(&r, 0, sizeof(r));
out:
    cca_operator_reg_cleanup(&r);
    if (root != NULL) {
        wipe_string(root, "secret");
        wipe_string(root, "pin");
    }
    json_decref(root);
    return rc;
}

static void free_wiped(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void cca_operator_reg_cleanup(struct cca_operator_reg *r)
{
    if (r == NULL)
        return;
    free_wiped(r->secret);
    free_wiped(r->pin);
    free(r->name);
    json_decref(r->profile);
    memset(r, 0, sizeof(*r));
}

cca_rc cca_operator_parse_patch(const char *body, size_t len, bool admin,
                                struct cca_operator_patch *ret, struct cca_error *reterr)
{
    static const char *const keys[] = {"name", "languages", "skills", "max_dialogs",
                                       "profile"};
    struct cca_operator_patch p = {0};
    json_t *root = NULL;
    json_t *v;
    cca_rc rc;

    rc = cca_operator_parse_object(body, len, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    rc = only_keys(root, keys, CCA_ARRAY_SIZE(keys), "", reterr);
    if (rc != CCA_OK)
        goto out;
    if (json_object_size(root) == 0) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "nothing to change: give at least one of name, languages, "
                           "skills, profile%s",
                           admin ? ", max_dialogs" : "");
        goto out;
    }
    v = json_object_get(root, "max_dialogs");
    if (v != NULL && !admin) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "max_dialogs can only be changed by an admin");
        goto out;
    }
    rc = parse_fields(root, true, &p, reterr);
    if (rc != CCA_OK)
        goto out;
    *ret = p;
    memset(&p, 0, sizeof(p));
out:
    cca_operator_patch_cleanup(&p);
    json_decref(root);
    return rc;
}

void cca_operator_patch_cleanup(struct cca_operator_patch *p)
{
    if (p == NULL)
        return;
    free(p->name);
    json_decref(p->profile);
    memset(p, 0, sizeof(*p));
}

/* The document. */

static json_t *time_json(int64_t ms)
{
    char buf[CCA_TIME_LEN];

    cca_time_format(ms, buf);
    return json_string(buf);
}

/*
 * The milliseconds of @status accumulated in @doc's "status_ms": 0 when the
 * record predates the field or the value is not a non-negative integer.
 */
static int64_t status_ms_of(json_t *doc, enum cca_operator_status status)
{
    json_t *v = json_object_get(json_object_get(doc, "status_ms"),
                                cca_operator_status_name(status));

    return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : 0;
}

/*
 * A new "status_ms" object: the values of @doc (NULL: all zero). Always all
 * three keys, in enum order, so the record has one shape however old it was.
 */
static json_t *status_ms_json(json_t *doc)
{
    json_t *o = json_object();

    for (int i = 0; i < CCA_OPERATOR_STATUS__COUNT; i++) {
        enum cca_operator_status st = (enum cca_operator_status)i;

        (void)json_object_set_new(o, cca_operator_status_name(st),
                                  json_integer(status_ms_of(doc, st)));
    }
    return o;
}

/*
 * When @doc's current status began. A record written before "status_since"
 * existed has only its last change (updated_at) as a bound: the status began
 * then at the latest, so the time counted is never more than was spent.
 */
static int64_t status_since_of(json_t *doc)
{
    int64_t ms = cca_operator_get_time(doc, "status_since");

    if (ms == 0)
        ms = cca_operator_get_time(doc, "updated_at");
    if (ms == 0)
        ms = cca_operator_get_time(doc, "created_at");
    return ms;
}

/*
 * Give @copy (of @doc, before its updated_at moves) a "status_since" when @doc
 * has none: otherwise every later change of an old record would move the
 * fallback (updated_at) forward and lose the time already spent in the status.
 */
static void pin_status_since(json_t *copy, json_t *doc)
{
    int64_t since;

    if (cca_operator_get_time(doc, "status_since") != 0)
        return;
    since = status_since_of(doc);
    if (since != 0)
        (void)json_object_set_new(copy, "status_since", time_json(since));
}

json_t *cca_operator_new_doc(const char *id, const struct cca_operator_reg *reg,
                             const char *token_sha256_hex, int64_t now_ms)
{
    json_t *doc = json_object();
    json_t *profile = reg->profile != NULL ? json_deep_copy(reg->profile) : NULL;

    (void)json_object_set_new(doc, "operator_id", json_string(id));
    (void)json_object_set_new(doc, "name", json_string(reg->name));
    (void)json_object_set_new(doc, "languages", cca_operator_langs_json(reg->languages));
    (void)json_object_set_new(doc, "skills", cca_operator_skills_json(reg->skills));
    (void)json_object_set_new(doc, "max_dialogs",
                              json_integer((json_int_t)clamp_max(reg->max_dialogs)));
    (void)json_object_set_new(
        doc, "status", json_string(cca_operator_status_name(CCA_OPERATOR_OFFLINE)));
    (void)json_object_set_new(doc, "status_since", time_json(now_ms));
    (void)json_object_set_new(doc, "status_ms", status_ms_json(NULL));
    (void)json_object_set_new(doc, "created_at", time_json(now_ms));
    (void)json_object_set_new(doc, "updated_at", time_json(now_ms));
    (void)json_object_set_new(doc, "last_seen_at", json_null());
    (void)json_object_set_new(doc, "last_dialog_closed_at", json_null());
    (void)json_object_set_new(doc, "profile", profile != NULL ? profile : json_object());
    (void)json_object_set_new(doc, "token_sha256", json_string(token_sha256_hex));
    return doc;
}

json_t *cca_operator_with_patch(json_t *doc, const struct cca_operator_patch *patch,
                                int64_t now_ms)
{
    json_t *copy = json_copy(doc);

    if (patch->name != NULL)
        (void)json_object_set_new(copy, "name", json_string(patch->name));
    if (patch->has_languages)
        (void)json_object_set_new(copy, "languages",
                                  cca_operator_langs_json(patch->languages));
    if (patch->has_skills)
        (void)json_object_set_new(copy, "skills",
                                  cca_operator_skills_json(patch->skills));
    if (patch->has_max_dialogs)
        (void)json_object_set_new(
            copy, "max_dialogs", json_integer((json_int_t)clamp_max(patch->max_dialogs)));
    if (patch->profile != NULL) {
        /* A shallow copy: the values are strings and integers, never changed. */
        json_t *profile = json_copy(json_object_get(doc, "profile"));
        const char *key;
        json_t *v;

        if (!json_is_object(profile)) {
            json_decref(profile);
            profile = json_object();
        }
        json_object_foreach (patch->profile, key, v) {
            if (json_is_null(v))
                (void)json_object_del(profile, key);
            else
                (void)json_object_set(profile, key, v);
        }
        (void)json_object_set_new(copy, "profile", profile);
    }
    pin_status_since(copy, doc);
    (void)json_object_set_new(copy, "updated_at", time_json(now_ms));
    return copy;
}

json_t *cca_operator_with_status(json_t *doc, enum cca_operator_status status,
                                 int64_t now_ms)
{
    enum cca_operator_status old = cca_operator_get_status(doc);
    json_t *copy = json_copy(doc);

    if (status != old) {
        int64_t since = status_since_of(doc);
        int64_t spent = since != 0 ? now_ms - since : 0;
        json_t *acc = status_ms_json(doc);

        /* A wall clock stepped back counts as no time, never as negative time. */
        if (spent > 0 && status_ms_of(doc, old) <= INT64_MAX - spent)
            (void)json_object_set_new(acc, cca_operator_status_name(old),
                                      json_integer(status_ms_of(doc, old) + spent));
        (void)json_object_set_new(copy, "status_ms", acc);
        (void)json_object_set_new(copy, "status_since", time_json(now_ms));
    } else {
        pin_status_since(copy, doc);
    }
    (void)json_object_set_new(copy, "status",
                              json_string(cca_operator_status_name(status)));
    (void)json_object_set_new(copy, "updated_at", time_json(now_ms));
    return copy;
}

void cca_operator_time_in_status(json_t *doc, int64_t now_ms,
                                 int64_t ret_ms[CCA_OPERATOR_STATUS__COUNT])
{
    enum cca_operator_status cur = cca_operator_get_status(doc);
    int64_t since = status_since_of(doc);
    int64_t running = since != 0 ? now_ms - since : 0;

    for (int i = 0; i < CCA_OPERATOR_STATUS__COUNT; i++)
        ret_ms[i] = status_ms_of(doc, (enum cca_operator_status)i);
    if (running > 0 && ret_ms[cur] <= INT64_MAX - running)
        ret_ms[cur] += running;
}

json_t *cca_operator_with_times(json_t *doc, int64_t last_seen_ms, int64_t last_closed_ms,
                                int64_t now_ms)
{
    json_t *copy = json_copy(doc);

    if (last_seen_ms != 0)
        (void)json_object_set_new(copy, "last_seen_at", time_json(last_seen_ms));
    if (last_closed_ms != 0)
        (void)json_object_set_new(copy, "last_dialog_closed_at",
                                  time_json(last_closed_ms));
    pin_status_since(copy, doc);
    (void)json_object_set_new(copy, "updated_at", time_json(now_ms));
    return copy;
}

json_t *cca_operator_with_token(json_t *doc, const char *token_sha256_hex, int64_t now_ms)
{
    json_t *copy = json_copy(doc);

    (void)json_object_set_new(copy, "token_sha256", json_string(token_sha256_hex));
    pin_status_since(copy, doc);
    (void)json_object_set_new(copy, "updated_at", time_json(now_ms));
    return copy;
}

json_t *cca_operator_public_view(json_t *doc)
{
    json_t *view = json_copy(doc);

    (void)json_object_del(view, "token_sha256");
    return view;
}

static bool is_hex64(const char *s)
{
    size_t i;

    for (i = 0; s != NULL && s[i] != '\0'; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return s != NULL && i == 64;
}

static bool time_or_null(json_t *v)
{
    int64_t ms;

    return v == NULL || json_is_null(v) || cca_time_parse(json_string_value(v), &ms);
}

cca_rc cca_operator_validate(json_t *doc, const char *expected_id,
                             struct cca_error *reterr)
{
    static const char *const required_times[] = {"created_at", "updated_at"};
    static const char *const optional_times[] = {"last_seen_at", "last_dialog_closed_at"};
    const char *id = json_string_value(json_object_get(doc, "operator_id"));
    json_t *max = json_object_get(doc, "max_dialogs");
    json_t *profile = json_object_get(doc, "profile");
    json_t *status_ms = json_object_get(doc, "status_ms");
    struct cca_error inner = {0};
    enum cca_operator_status st;
    char canon[37];
    uint32_t mask;
    int64_t ms;

    if (!json_is_object(doc))
        return cca_error_set(reterr, CCA_ERR_INVALID, "not a JSON object");
    if (id == NULL || !cca_uuid_canonical(id, canon) || strcmp(canon, id) != 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "operator_id is not a canonical UUID");
    if (expected_id != NULL && strcmp(id, expected_id) != 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "operator_id does not match the file name");
    if (!json_is_string(json_object_get(doc, "name")))
        return cca_error_set(reterr, CCA_ERR_INVALID, "name is not a string");
    if (cca_operator_langs_parse(json_object_get(doc, "languages"), &mask, &inner) !=
            CCA_OK ||
        cca_operator_skills_parse(json_object_get(doc, "skills"), &mask, &inner) !=
            CCA_OK)
        return cca_error_set(reterr, CCA_ERR_INVALID, "%s", inner.msg);
    if (!json_is_integer(max) || json_integer_value(max) < 1 ||
        json_integer_value(max) > CCA_OPERATOR_MAX_DIALOGS_MAX)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "max_dialogs is not an integer from 1 to %d",
                             CCA_OPERATOR_MAX_DIALOGS_MAX);
    if (!cca_operator_status_parse(json_string_value(json_object_get(doc, "status")),
                                   &st))
        return cca_error_set(reterr, CCA_ERR_INVALID, "bad status");
    if (!time_or_null(json_object_get(doc, "status_since")))
        return cca_error_set(reterr, CCA_ERR_INVALID, "bad status_since");
    /* Both absent in records written before the time per status was kept. */
    if (status_ms != NULL) {
        if (!json_is_object(status_ms))
            return cca_error_set(reterr, CCA_ERR_INVALID, "status_ms is not an object");
        for (int i = 0; i < CCA_OPERATOR_STATUS__COUNT; i++) {
            const char *name = cca_operator_status_name((enum cca_operator_status)i);
            json_t *v = json_object_get(status_ms, name);

            if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 0))
                return cca_error_set(reterr, CCA_ERR_INVALID,
                                     "status_ms.%s is not a non-negative integer", name);
        }
    }
    for (size_t i = 0; i < CCA_ARRAY_SIZE(required_times); i++) {
        if (!cca_time_parse(json_string_value(json_object_get(doc, required_times[i])),
                            &ms))
            return cca_error_set(reterr, CCA_ERR_INVALID, "bad %s", required_times[i]);
    }
    for (size_t i = 0; i < CCA_ARRAY_SIZE(optional_times); i++) {
        if (!time_or_null(json_object_get(doc, optional_times[i])))
            return cca_error_set(reterr, CCA_ERR_INVALID, "bad %s", optional_times[i]);
    }
    if (profile != NULL && !json_is_object(profile))
        return cca_error_set(reterr, CCA_ERR_INVALID, "profile is not an object");
    if (!is_hex64(json_string_value(json_object_get(doc, "token_sha256"))))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "token_sha256 is not 64 lower-case hex digits");
    return CCA_OK;
}

enum cca_operator_status cca_operator_get_status(json_t *doc)
{
    enum cca_operator_status s = CCA_OPERATOR_OFFLINE;

    (void)cca_operator_status_parse(json_string_value(json_object_get(doc, "status")),
                                    &s);
    return s;
}

unsigned cca_operator_get_max(json_t *doc)
{
    json_int_t n = json_integer_value(json_object_get(doc, "max_dialogs"));

    return n >= 1 && n <= CCA_OPERATOR_MAX_DIALOGS_MAX ? (unsigned)n : 0;
}

uint32_t cca_operator_get_langs(json_t *doc)
{
    uint32_t mask = 0;

    if (cca_operator_langs_parse(json_object_get(doc, "languages"), &mask, NULL) !=
        CCA_OK)
        mask = 0;
    return mask;
}

uint32_t cca_operator_get_skills(json_t *doc)
{
    uint32_t mask = 0;

    if (cca_operator_skills_parse(json_object_get(doc, "skills"), &mask, NULL) != CCA_OK)
        mask = 0;
    return mask;
}

const char *cca_operator_get_name(json_t *doc)
{
    return json_string_value(json_object_get(doc, "name"));
}

const char *cca_operator_get_token_hash(json_t *doc)
{
    return json_string_value(json_object_get(doc, "token_sha256"));
}

int64_t cca_operator_get_time(json_t *doc, const char *key)
{
    int64_t ms = 0;

    if (!cca_time_parse(json_string_value(json_object_get(doc, key)), &ms))
        ms = 0;
    return ms;
}

/* Tokens and secrets. */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* SHA-256 of @s[0..len) into @md; false only on a library failure. */
static bool sha256(const void *s, size_t len, unsigned char md[SHA256_LEN])
{
    unsigned int n = 0;

    if (s == NULL)
        s = "";
    return EVP_Digest(s, len, md, &n, EVP_sha256(), NULL) == 1 && n == SHA256_LEN;
}

/* RFC 4648 section 5 without padding: 4 characters per 3 bytes, the tail shorter. */
static size_t base64url(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    size_t i;

    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];

        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
        out[o++] = b64url[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);

        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
    }
    return o;
}

static void hex(const unsigned char *md, size_t n, char *out)
{
    static const char digits16[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits16[md[i] >> 4];
        out[2 * i + 1] = digits16[md[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Fill @buf from the kernel CSPRNG (getrandom(2): no fd, no short read <= 256 B). */
static bool random_bytes(unsigned char *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

cca_rc cca_operator_token_new(char ret_token[CCA_OPERATOR_TOKEN_LEN + 1],
                              char ret_hash_hex[65])
{
    unsigned char raw[TOKEN_RAW];
    unsigned char md[SHA256_LEN];
    char token[CCA_OPERATOR_TOKEN_LEN + 1];
    size_t plen = strlen(CCA_OPERATOR_TOKEN_PREFIX);
    cca_rc rc = CCA_ERR_INTERNAL;

    if (!random_bytes(raw, sizeof(raw)))
        goto out;
    memcpy(token, CCA_OPERATOR_TOKEN_PREFIX, plen);
    if (plen + base64url(raw, sizeof(raw), token + plen) != CCA_OPERATOR_TOKEN_LEN)
        goto out;
    token[CCA_OPERATOR_TOKEN_LEN] = '\0';
    if (!sha256(token, CCA_OPERATOR_TOKEN_LEN, md))
        goto out;
    memcpy(ret_token, token, sizeof(token));
    hex(md, sizeof(md), ret_hash_hex);
    rc = CCA_OK;
out:
    explicit_bzero(raw, sizeof(raw));
    explicit_bzero(token, sizeof(token));
    return rc;
}

void cca_operator_token_hash(const char *token, size_t len, char ret_hex[65])
{
    unsigned char md[SHA256_LEN];

    if (sha256(token, len, md))
        hex(md, sizeof(md), ret_hex);
    else
        ret_hex[0] = '\0';
}

bool cca_operator_token_looks_valid(const char *token, size_t len)
{
    size_t plen = strlen(CCA_OPERATOR_TOKEN_PREFIX);
    const char *last;

    if (token == NULL || len != CCA_OPERATOR_TOKEN_LEN ||
        memcmp(token, CCA_OPERATOR_TOKEN_PREFIX, plen) != 0)
        return false;
    for (size_t i = plen; i < len; i++) {
        if (token[i] == '\0' || strchr(b64url, token[i]) == NULL)
            return false;
    }
    /* 32 bytes end in a group of 2: the last character holds 4 bits and 2 zeros. */
    last = strchr(b64url, token[len - 1]);
    return ((last - b64url) & 3) == 0;
}

bool cca_operator_secret_equal(const char *given, size_t given_len, const char *expected,
                               size_t expected_len)
{
    unsigned char a[SHA256_LEN];
    unsigned char b[SHA256_LEN];
    bool eq;

    if (expected == NULL || expected_len == 0)
        return false;
    if (given == NULL)
        given_len = 0;
    eq = sha256(given, given_len, a) && sha256(expected, expected_len, b) &&
         CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    explicit_bzero(a, sizeof(a));
    explicit_bzero(b, sizeof(b));
    return eq;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

bool cca_operator_pin_allowed(const char *pin, size_t len, const char *pins_csv)
{
    unsigned char given[SHA256_LEN];
    unsigned char entry[SHA256_LEN] = {0};
    bool found = false;
    bool ok = true;
    const char *p = pins_csv;

    if (pin == NULL || len == 0 || pins_csv == NULL || !sha256(pin, len, given))
        return false;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        const char *b = p;
        const char *e = end != NULL ? end : p + strlen(p);

        while (b < e && is_space(*b))
            b++;
        while (e > b && is_space(e[-1]))
            e--;
        if (e > b) {
            /* Every entry is hashed and compared: no exit at the first match. */
            ok &= sha256(b, (size_t)(e - b), entry);
            found |= CRYPTO_memcmp(given, entry, sizeof(entry)) == 0;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    explicit_bzero(given, sizeof(given));
    explicit_bzero(entry, sizeof(entry));
    return ok && found;
}
