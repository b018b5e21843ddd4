/* SPDX-License-Identifier: MIT */
#ifndef CCA_CUSTOMER_H
#define CCA_CUSTOMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"

/*
 * Customer profiles (docs/RECORDS.md; seed 000's User(Person)): one document
 * per customer in the store's customers collection (store.h,
 * CCA_STORE_CUSTOMERS, storage/dialogs/customers/<key>.json):
 *   {"customer_id", "full_name", "city", "birth_date", "position",
 *    "experience", "phone", "email", "language", "created_at", "updated_at"}
 * Every field but customer_id and the times may be null. The document's store
 * id (its key) is a name-based UUID of the customer_id (cca_customer_key), so
 * any customer_id a dialog accepts maps to a safe file name.
 *
 * Everything here is pure (no I/O, no logging, no global state) and
 * thread-safe. Documents are copy-on-write like dialog documents (dialog.h).
 */

#define CCA_CUSTOMER_ID_MAX 50 /* code points of a customer_id (as a dialog's) */

/*
 * cca_customer_id_valid - @id[0..len) is a customer_id: valid UTF-8, 1..50
 * code points, no control characters (Cc). Thread-safe.
 */
bool cca_customer_id_valid(const char *id, size_t len);

/*
 * cca_customer_key - the store id of customer @customer_id (NUL-terminated):
 * the version 5 (SHA-1, name-based) UUID of the name @customer_id in the
 * namespace 6f1c9a3e-2b8d-5e47-9a10-c0ffee5a1e00 (RFC 9562 section 5.5),
 * lower case, into @ret. Deterministic: the same id always gives the same key.
 */
void cca_customer_key(const char *customer_id, char ret[37]);

/*
 * struct cca_customer_fields - profile fields to set. Each pointer is new or
 * NULL; @set has bit CCA_CUSTOMER_F_<field> for every field given (a given
 * field whose value is NULL clears it: JSON null).
 */
enum cca_customer_field {
    CCA_CUSTOMER_F_FULL_NAME = 1u << 0,
    CCA_CUSTOMER_F_CITY = 1u << 1,
    CCA_CUSTOMER_F_BIRTH_DATE = 1u << 2,
    CCA_CUSTOMER_F_POSITION = 1u << 3,
    CCA_CUSTOMER_F_EXPERIENCE = 1u << 4,
    CCA_CUSTOMER_F_PHONE = 1u << 5,
    CCA_CUSTOMER_F_EMAIL = 1u << 6,
    CCA_CUSTOMER_F_LANGUAGE = 1u << 7,
};

struct cca_customer_fields {
    unsigned set;
    char *full_name;
    char *city;
    char *birth_date; /* "YYYY-MM-DD" */
    char *position;
    json_t *experience; /* integer 0..80 or string, as operator profiles */
    char *phone;
    char *email;
    char *language; /* "ru" or "en" */
};

/* cca_customer_fields_cleanup - free what @f owns and zero it. Accepts NULL. */
void cca_customer_fields_cleanup(struct cca_customer_fields *f);

/*
 * cca_customer_parse_put - validate the body of PUT /api/v1/customers/{id}
 * (@body[0..len), need not be NUL-terminated): a JSON object with only the
 * keys full_name, city, birth_date, position, experience (the rules of an
 * operator's profile, operator.h), phone (at most 20 code points, with a
 * digit), email (local@domain.tld, at most 100), language ("ru" or "en"); each
 * may be null (clears it). At least one key. Returns CCA_OK and fills *ret
 * (cca_customer_fields_cleanup); CCA_ERR_PARSE (empty, not JSON),
 * CCA_ERR_INVALID (a broken rule; the detail names the field).
 */
cca_rc cca_customer_parse_put(const char *body, size_t len,
                              struct cca_customer_fields *ret,
                              struct cca_error *reterr) CCA_WUR;

/*
 * cca_customer_fields_of_dialog - what dialog @doc (borrowed) says about its
 * customer: customer_info.name -> full_name, phone, email (when non-empty)
 * and the dialog's language; a value that breaks the profile's rules is left
 * out. Fills *ret (overwritten). Returns false when the dialog has no
 * customer_id, or one cca_customer_id_valid refuses (a dialog's customer_id may
 * hold control characters); then nothing is filled.
 */
bool cca_customer_fields_of_dialog(json_t *doc, struct cca_customer_fields *ret);

/*
 * cca_customer_merge - the profile of @customer_id after @f (borrowed):
 * @doc is the stored profile or NULL (a new one, created_at @now_ms). With
 * @fill_only (data from a dialog) a field is set only where the profile has
 * none, so what an admin wrote is never overwritten by what a customer typed;
 * else (PUT) every given field is set or cleared. updated_at is @now_ms when
 * something changed. Returns a new reference: json_incref(@doc) itself when
 * nothing changed (callers compare pointers to skip the write).
 */
json_t *cca_customer_merge(json_t *doc, const char *customer_id,
                           const struct cca_customer_fields *f, bool fill_only,
                           int64_t now_ms);

/*
 * cca_customer_validate - @doc (borrowed) is a well-formed profile whose key
 * (cca_customer_key of its customer_id) is @expected_key (NULL: not checked).
 * Returns CCA_OK or CCA_ERR_INVALID with the first problem in @reterr.
 */
cca_rc cca_customer_validate(json_t *doc, const char *expected_key,
                             struct cca_error *reterr);

/*
 * cca_customer_email_ok, cca_customer_phone_ok - the checks of customer_info
 * and profiles (also used by http_json.c): an email is local@domain with a dot
 * in the domain and no spaces; a phone has a digit. NUL-terminated input.
 */
bool cca_customer_email_ok(const char *s);
bool cca_customer_phone_ok(const char *s);

#endif
