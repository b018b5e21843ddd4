/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/customer.h"
#include "cca/mem.h"
#include "cca/operator.h"
#include "cca/text.h"

#define PHONE_MAX 20  /* code points of a phone, as customer_info.phone */
#define EMAIL_MAX 100 /* code points of an email, as customer_info.email */
#define KEY_QUOTE 40  /* bytes of a client's key quoted in a detail */

/* The namespace of customer keys (customer.h): 6f1c9a3e-2b8d-5e47-9a10-c0ffee5a1e00. */
static const unsigned char key_namespace[16] = {0x6f, 0x1c, 0x9a, 0x3e, 0x2b, 0x8d,
                                                0x5e, 0x47, 0x9a, 0x10, 0xc0, 0xff,
                                                0xee, 0x5a, 0x1e, 0x00};

/* Which rules a field follows. */
enum kind {
    KIND_PERSON,   /* cca_operator_check_person_field: the operator profile's rules */
    KIND_PHONE,    /* string, 1..PHONE_MAX code points, a digit */
    KIND_EMAIL,    /* string, 1..EMAIL_MAX code points, cca_customer_email_ok */
    KIND_LANGUAGE, /* "ru" or "en" */
};

/*
 * The profile fields in document order. @off is the field's place in struct
 * cca_customer_fields: a char * for every kind but experience, the one json_t *.
 */
static const struct field {
    const char *key;
    unsigned bit;
    enum kind kind;
    size_t off;
} fields[] = {
    {"full_name", CCA_CUSTOMER_F_FULL_NAME, KIND_PERSON,
     offsetof(struct cca_customer_fields, full_name)},
    {"city", CCA_CUSTOMER_F_CITY, KIND_PERSON,
     offsetof(struct cca_customer_fields, city)},
    {"birth_date", CCA_CUSTOMER_F_BIRTH_DATE, KIND_PERSON,
     offsetof(struct cca_customer_fields, birth_date)},
    {"position", CCA_CUSTOMER_F_POSITION, KIND_PERSON,
     offsetof(struct cca_customer_fields, position)},
    {"experience", CCA_CUSTOMER_F_EXPERIENCE, KIND_PERSON,
     offsetof(struct cca_customer_fields, experience)},
    {"phone", CCA_CUSTOMER_F_PHONE, KIND_PHONE,
     offsetof(struct cca_customer_fields, phone)},
    {"email", CCA_CUSTOMER_F_EMAIL, KIND_EMAIL,
     offsetof(struct cca_customer_fields, email)},
    {"language", CCA_CUSTOMER_F_LANGUAGE, KIND_LANGUAGE,
     offsetof(struct cca_customer_fields, language)},
};

static bool is_json_field(const struct field *fd)
{
    return fd->off == offsetof(struct cca_customer_fields, experience);
}

static char **str_slot(struct cca_customer_fields *f, const struct field *fd)
{
    return (char **)((char *)f + fd->off);
}

static const char *str_of(const struct cca_customer_fields *f, const struct field *fd)
{
    return *(char *const *)((const char *)f + fd->off);
}

/* The value of @fd in @f as JSON: a new reference, or NULL for "clear". */
static json_t *value_of(const struct cca_customer_fields *f, const struct field *fd)
{
    const char *s;

    if (is_json_field(fd))
        return f->experience != NULL ? json_deep_copy(f->experience) : NULL;
    s = str_of(f, fd);
    return s != NULL ? json_string(s) : NULL;
}

/* Store the non-null JSON @v (a string, or experience's string or integer) into @f. */
static void set_value(struct cca_customer_fields *f, const struct field *fd, json_t *v)
{
    if (is_json_field(fd)) {
        json_decref(f->experience);
        f->experience = json_deep_copy(v);
    } else {
        char **slot = str_slot(f, fd);

        free(*slot);
        *slot = cca_xstrndup(json_string_value(v), json_string_length(v));
    }
    f->set |= fd->bit;
}

bool cca_customer_id_valid(const char *id, size_t len)
{
    ssize_t cp;

    if (id == NULL)
        return false;
    cp = cca_text_codepoints(id, len); /* -1 for bad UTF-8 and for NUL bytes */
    return cp >= 1 && cp <= CCA_CUSTOMER_ID_MAX && !cca_text_has_control(id, len);
}

void cca_customer_key(const char *customer_id, char ret[37])
{
    cca_uuid_v5(key_namespace, customer_id, customer_id != NULL ? strlen(customer_id) : 0,
                ret);
}

void cca_customer_fields_cleanup(struct cca_customer_fields *f)
{
    if (f == NULL)
        return;
    free(f->full_name);
    free(f->city);
    free(f->birth_date);
    free(f->position);
    json_decref(f->experience);
    free(f->phone);
    free(f->email);
    free(f->language);
    memset(f, 0, sizeof(*f));
}

bool cca_customer_phone_ok(const char *s)
{
    for (; s != NULL && *s; s++) {
        if (isdigit((unsigned char)*s))
            return true;
    }
    return false;
}

/* local@domain with a dot in the domain and no spaces: enough to catch typos. */
bool cca_customer_email_ok(const char *s)
{
    const char *at = s != NULL ? strchr(s, '@') : NULL;

    return at != NULL && at != s && strchr(at + 1, '@') == NULL && strchr(at + 1, '.') &&
           at[1] != '.' && s[strlen(s) - 1] != '.' && strpbrk(s, " \t\r\n") == NULL;
}

/* A string of 1..@max code points (NUL bytes and bad UTF-8 count as too short). */
static bool string_within(json_t *v, long max)
{
    ssize_t cp;

    if (!json_is_string(v))
        return false;
    cp = cca_text_codepoints(json_string_value(v), json_string_length(v));
    return cp >= 1 && cp <= max;
}

/*
 * The non-null value @v of field @fd, named @label in the detail. One check for
 * a PUT body, a dialog's data and a stored profile, so a profile the service
 * wrote always validates when it is read back.
 */
static cca_rc check_value(const struct field *fd, json_t *v, const char *label,
                          struct cca_error *err)
{
    const char *s = json_string_value(v);

    switch (fd->kind) {
        case KIND_PERSON:
            return cca_operator_check_person_field(fd->key, v, label, err);
        case KIND_PHONE:
            if (!string_within(v, PHONE_MAX) || !cca_customer_phone_ok(s))
                return cca_error_set(err, CCA_ERR_INVALID,
                                     "%s must be a string of at most %d characters "
                                     "with a digit",
                                     label, PHONE_MAX);
            return CCA_OK;
        case KIND_EMAIL:
            if (!string_within(v, EMAIL_MAX) || !cca_customer_email_ok(s))
                return cca_error_set(err, CCA_ERR_INVALID,
                                     "%s must be an email address (local@domain.tld) "
                                     "of at most %d characters",
                                     label, EMAIL_MAX);
            return CCA_OK;
        case KIND_LANGUAGE:
            if (s == NULL || (strcmp(s, "ru") != 0 && strcmp(s, "en") != 0))
                return cca_error_set(err, CCA_ERR_INVALID, "%s must be \"ru\" or \"en\"",
                                     label);
            return CCA_OK;
    }
    return cca_error_set(err, CCA_ERR_INTERNAL, "%s has no rule", label);
}

static const struct field *field_of(const char *key)
{
    for (size_t i = 0; i < CCA_ARRAY_SIZE(fields); i++) {
        if (strcmp(key, fields[i].key) == 0)
            return &fields[i];
    }
    return NULL;
}

cca_rc cca_customer_parse_put(const char *body, size_t len,
                              struct cca_customer_fields *ret, struct cca_error *reterr)
{
    struct cca_customer_fields f = {0};
    json_t *root = NULL;
    const char *key;
    json_t *v;
    cca_rc rc;

    rc = cca_operator_parse_object(body, len, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    if (json_object_size(root) == 0) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "the body must name at least one field");
        goto out;
    }
    json_object_foreach (root, key, v) {
        const struct field *fd = field_of(key);

        if (fd == NULL) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID, "unknown field \"%.*s\"",
                               (int)cca_text_utf8_cut(key, strlen(key), KEY_QUOTE), key);
            goto out;
        }
        if (json_is_null(v)) {
            f.set |= fd->bit; /* given as null: clear it */
            continue;
        }
        rc = check_value(fd, v, fd->key, reterr);
        if (rc != CCA_OK)
            goto out;
        set_value(&f, fd, v);
    }
    *ret = f;
    memset(&f, 0, sizeof(f));
out:
    cca_customer_fields_cleanup(&f);
    json_decref(root);
    return rc;
}

/* Take the string @v into @f as @key when it is non-empty and keeps the profile rules. */
static void take_from_dialog(struct cca_customer_fields *f, const char *key, json_t *v)
{
    const struct field *fd = field_of(key);

    if (json_string_length(v) == 0)
        return;
    /*
     * A dialog's customer_info was checked by other rules (a name may hold a
     * control character there): what would break the profile is left out, not
     * written into a profile that then fails to load.
     */
    if (check_value(fd, v, key, NULL) == CCA_OK)
        set_value(f, fd, v);
}

bool cca_customer_fields_of_dialog(json_t *doc, struct cca_customer_fields *ret)
{
    json_t *info = json_object_get(doc, "customer_info");
    json_t *id = json_object_get(doc, "customer_id");
    struct cca_customer_fields f = {0};

    if (!json_is_string(id))
        id = json_object_get(info, "customer_id");
    /* An id that cannot be a profile's has no profile (a dialog takes control chars). */
    if (!json_is_string(id) ||
        !cca_customer_id_valid(json_string_value(id), json_string_length(id)))
        return false;
    take_from_dialog(&f, "full_name", json_object_get(info, "name"));
    take_from_dialog(&f, "phone", json_object_get(info, "phone"));
    take_from_dialog(&f, "email", json_object_get(info, "email"));
    take_from_dialog(&f, "language", json_object_get(doc, "language"));
    *ret = f;
    return true;
}

static json_t *time_json(int64_t ms)
{
    char buf[CCA_TIME_LEN];

    cca_time_format(ms, buf);
    return json_string(buf);
}

static json_t *new_profile(const char *customer_id, int64_t now_ms)
{
    json_t *doc = json_object();

    (void)json_object_set_new(doc, "customer_id", json_string(customer_id));
    for (size_t i = 0; i < CCA_ARRAY_SIZE(fields); i++)
        (void)json_object_set_new(doc, fields[i].key, json_null());
    (void)json_object_set_new(doc, "created_at", time_json(now_ms));
    (void)json_object_set_new(doc, "updated_at", time_json(now_ms));
    return doc;
}

json_t *cca_customer_merge(json_t *doc, const char *customer_id,
                           const struct cca_customer_fields *f, bool fill_only,
                           int64_t now_ms)
{
    json_t *copy = doc != NULL ? json_copy(doc) : new_profile(customer_id, now_ms);
    bool changed = doc == NULL;

    for (size_t i = 0; i < CCA_ARRAY_SIZE(fields); i++) {
        const struct field *fd = &fields[i];
        json_t *cur = json_object_get(copy, fd->key);
        bool has = cur != NULL && !json_is_null(cur);
        json_t *v;

        if (!(f->set & fd->bit))
            continue;
        v = value_of(f, fd);
        /* A dialog only fills gaps: it never clears, never overwrites an admin. */
        if (fill_only && (v == NULL || has)) {
            json_decref(v);
            continue;
        }
        /* A hand-built @f that breaks a rule must not make a profile that fails to load.
         */
        if (v != NULL && check_value(fd, v, fd->key, NULL) != CCA_OK) {
            json_decref(v);
            continue;
        }
        if (v == NULL ? !has : (has && json_equal(cur, v))) {
            json_decref(v); /* absent counts as null: no change */
            continue;
        }
        (void)json_object_set_new(copy, fd->key, v != NULL ? v : json_null());
        changed = true;
    }
    if (!changed) {
        json_decref(copy);
        return json_incref(doc);
    }
    (void)json_object_set_new(copy, "updated_at", time_json(now_ms));
    return copy;
}

cca_rc cca_customer_validate(json_t *doc, const char *expected_key,
                             struct cca_error *reterr)
{
    static const char *const times[] = {"created_at", "updated_at"};
    json_t *id = json_object_get(doc, "customer_id");
    char key[37];
    int64_t ms;
    cca_rc rc;

    if (!json_is_object(doc))
        return cca_error_set(reterr, CCA_ERR_INVALID, "not a JSON object");
    if (!json_is_string(id) ||
        !cca_customer_id_valid(json_string_value(id), json_string_length(id)))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "customer_id is not 1 to %d characters without control "
                             "characters",
                             CCA_CUSTOMER_ID_MAX);
    if (expected_key != NULL) {
        cca_customer_key(json_string_value(id), key);
        if (strcmp(key, expected_key) != 0)
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "customer_id does not match the file name");
    }
    /* Absent is null: a field added later need not be in every old profile. */
    for (size_t i = 0; i < CCA_ARRAY_SIZE(fields); i++) {
        json_t *v = json_object_get(doc, fields[i].key);

        if (v != NULL && !json_is_null(v) &&
            (rc = check_value(&fields[i], v, fields[i].key, reterr)) != CCA_OK)
            return rc;
    }
    for (size_t i = 0; i < CCA_ARRAY_SIZE(times); i++) {
        if (!cca_time_parse(json_string_value(json_object_get(doc, times[i])), &ms))
            return cca_error_set(reterr, CCA_ERR_INVALID, "bad %s", times[i]);
    }
    return CCA_OK;
}
