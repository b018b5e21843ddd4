/* SPDX-License-Identifier: MIT */
#ifndef CCA_OPERATOR_H
#define CCA_OPERATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"

/*
 * Human operators (docs/OPERATORS.md): the operator record, its validation,
 * tokens and secrets.
 *
 * Everything here is pure: no I/O, no logging, no global state (only the token
 * generator reads the kernel's random source). Every function is thread-safe.
 * Operator documents are copy-on-write exactly like dialog documents (dialog.h):
 * a function that "changes" one returns a new top-level object sharing the
 * untouched children and never mutates its input, so a committed document may be
 * read by several threads at once. No error detail written here ever contains a
 * secret, a PIN or a token.
 */

/* An operator's own availability (seed 002): set by PUT /operators/me/status. */
enum cca_operator_status {
    CCA_OPERATOR_AVAILABLE = 0, /* takes new dialogs */
    CCA_OPERATOR_BUSY = 1,      /* keeps their dialogs, takes no new ones */
    CCA_OPERATOR_OFFLINE = 2,   /* away: their open dialogs go back to the queue */
    CCA_OPERATOR_STATUS__COUNT,
};

/*
 * Language and skill sets as bit masks: bit (1u << enum cca_lang) for
 * languages (text.h), bit (1u << enum cca_agent) for skills (common.h).
 * An empty skill set means "every skill".
 */
#define CCA_OPERATOR_LANG_BIT(lang)   (1u << (unsigned)(lang))
#define CCA_OPERATOR_SKILL_BIT(agent) (1u << (unsigned)(agent))

/* Limits of the operator record (docs/OPERATORS.md). */
#define CCA_OPERATOR_NAME_MAX        100 /* code points of "name" */
#define CCA_OPERATOR_SECRET_MAX      256 /* bytes of a registration secret */
#define CCA_OPERATOR_PIN_MIN         4   /* ASCII digits of a PIN */
#define CCA_OPERATOR_PIN_MAX         12
#define CCA_OPERATOR_MAX_DIALOGS_MAX 50 /* "max_dialogs" is 1..50 */

/*
 * cca_operator_status_name - "available", "busy" or "offline". Static string;
 * "offline" for a value out of range (the state that takes no work).
 */
const char *cca_operator_status_name(enum cca_operator_status status);

/*
 * cca_operator_status_parse - the reverse of cca_operator_status_name for the
 * NUL-terminated @name (may be NULL). Returns true and sets *ret_status on a
 * match; false otherwise (*ret_status untouched).
 */
bool cca_operator_status_parse(const char *name, enum cca_operator_status *ret_status);

/*
 * cca_operator_langs_json - the languages of @mask (CCA_OPERATOR_LANG_BIT of
 * enum cca_lang) as an array of codes, "ru" before "en"; unknown bits are
 * ignored. Returns a new reference (an empty array for 0).
 */
json_t *cca_operator_langs_json(uint32_t mask);

/*
 * cca_operator_langs_parse - the mask of @arr (borrowed): a non-empty array of
 * "ru" and "en", duplicates allowed (an operator speaks something). Returns
 * CCA_OK and sets *ret_mask, or CCA_ERR_INVALID naming "languages" (and the
 * position of a bad element) in @reterr (may be NULL); *ret_mask is untouched
 * on failure. @arr NULL is "not an array".
 */
cca_rc cca_operator_langs_parse(json_t *arr, uint32_t *ret_mask,
                                struct cca_error *reterr) CCA_WUR;

/*
 * cca_operator_skills_json - the skills of @mask (CCA_OPERATOR_SKILL_BIT of enum
 * cca_agent) as an array of agent names in enum order ("tech_support", "sales",
 * "supervisor"); unknown bits are ignored. An empty array means every skill.
 * Returns a new reference.
 */
json_t *cca_operator_skills_json(uint32_t mask);

/*
 * cca_operator_skills_parse - the mask of @arr (borrowed): an array of agent
 * names (cca_agent_parse), duplicates allowed; an empty array is allowed and
 * gives 0, "every skill". Returns CCA_OK and sets *ret_mask, or CCA_ERR_INVALID
 * naming "skills" in @reterr (may be NULL); *ret_mask untouched on failure.
 */
cca_rc cca_operator_skills_parse(json_t *arr, uint32_t *ret_mask,
                                 struct cca_error *reterr) CCA_WUR;

/*
 * cca_operator_check_person_field - the one rule set of a person's profile
 * field, shared by operator profiles and customer profiles (customer.h):
 *   full_name  string, at most 200 code points
 *   city       string, at most 100 code points
 *   position   string, at most 100 code points
 *   birth_date "YYYY-MM-DD", a real Gregorian date, year 1900..2100
 *   experience string of at most 200 code points, or integer 0..80 (years)
 * Strings are valid UTF-8 without control characters (Cc) and may be empty.
 * @key:   the field's name (NUL-terminated); any other key is refused
 *         ("unknown field", quoting at most 40 bytes of it).
 * @v:     the value (borrowed, not changed). JSON null is not a value here:
 *         what null means (absent, remove, clear) is the caller's rule, and
 *         null is refused like any other wrong type.
 * @label: how the detail names the field ("profile.city", "city"); NULL: @key.
 * Returns CCA_OK or CCA_ERR_INVALID with the detail in @reterr (may be NULL);
 * the detail never quotes the value. Pure and thread-safe.
 */
cca_rc cca_operator_check_person_field(const char *key, json_t *v, const char *label,
                                       struct cca_error *reterr) CCA_WUR;

/*
 * struct cca_operator_reg - a validated registration body (POST
 * /api/v1/operators/register by the operator, POST /api/v1/operators by an
 * admin). Owned by the caller's storage; released with cca_operator_reg_cleanup.
 * @secret:      new, 1..CCA_OPERATOR_SECRET_MAX bytes, or NULL.
 * @pin:         new, CCA_OPERATOR_PIN_MIN..MAX ASCII digits, or NULL. With a
 *               credential required exactly one of @secret and @pin is set.
 * @name:        new, never NULL after parsing.
 * @languages:   CCA_OPERATOR_LANG_BIT mask, never 0.
 * @skills:      CCA_OPERATOR_SKILL_BIT mask, 0 = every skill.
 * @max_dialogs: 1..CCA_OPERATOR_MAX_DIALOGS_MAX.
 * @profile:     new reference, always an object after parsing (possibly empty),
 *               holding only the profile keys that were given non-null.
 */
struct cca_operator_reg {
    char *secret;
    char *pin;
    char *name;
    uint32_t languages;
    uint32_t skills;
    unsigned max_dialogs;
    json_t *profile;
};

/*
 * cca_operator_parse_register - validate the registration body @body[0..len)
 * (need not be NUL-terminated) into @ret.
 *
 * The body is a JSON object (RFC 8259; duplicate keys refused) with:
 *   "secret"      string of 1..256 bytes   } with @need_credential exactly one
 *   "pin"         string of 4..12 digits   } is required; without it both are
 *                                            accepted, not checked and not kept
 *   "name"        required, 1..100 code points, not blank (cca_text_is_blank),
 *                 no control characters (Cc: U+0000..U+001F, U+007F..U+009F)
 *   "languages"   array for cca_operator_langs_parse, default ["ru","en"]
 *   "skills"      array for cca_operator_skills_parse, default [] (every skill)
 *   "max_dialogs" integer 1..50, default @default_max (clamped into 1..50)
 *   "profile"     object with only the optional keys full_name, city,
 *                 birth_date, position and experience, each checked by
 *                 cca_operator_check_person_field; a null profile value is the
 *                 same as leaving the key out.
 * Any other key, in the body or in the profile, is refused naming the key. A
 * null top-level value is refused like any other wrong type.
 *
 * Returns CCA_OK and fills @ret (which the caller releases with
 * cca_operator_reg_cleanup); CCA_ERR_PARSE for an empty body or one that is not
 * JSON; CCA_ERR_INVALID for a broken rule, the detail naming the field. @ret is
 * not written on failure. The detail (@reterr, may be NULL) never contains the
 * secret or the PIN: JSON syntax errors give only the position. The secret and
 * PIN bytes of the parsed tree are wiped before it is freed. Thread-safe.
 */
cca_rc cca_operator_parse_register(const char *body, size_t len, bool need_credential,
                                   unsigned default_max, struct cca_operator_reg *ret,
                                   struct cca_error *reterr) CCA_WUR;

/*
 * cca_operator_reg_cleanup - wipe the bytes of @r->secret and @r->pin
 * (explicit_bzero) and free them, free the name, release the profile, and zero
 * @r. Accepts NULL and a zeroed or half-filled struct.
 */
void cca_operator_reg_cleanup(struct cca_operator_reg *r);

/*
 * struct cca_operator_patch - a validated change (PATCH /api/v1/operators/me by
 * the operator, PATCH /api/v1/operators/{id} by an admin). A field that was not
 * in the body keeps its has_ flag false (or its pointer NULL) and is not changed.
 * @name:            new, or NULL when unchanged.
 * @languages:       the mask to set (never 0) when @has_languages.
 * @skills:          the mask to set (0 = every skill) when @has_skills.
 * @max_dialogs:     1..50 when @has_max_dialogs (admins only).
 * @profile:         new reference or NULL: a non-empty object of profile keys;
 *                   a string or integer value replaces that key, json null
 *                   removes it; profile keys not named stay as they are.
 * Released with cca_operator_patch_cleanup.
 */
struct cca_operator_patch {
    char *name;
    bool has_languages;
    uint32_t languages;
    bool has_skills;
    uint32_t skills;
    bool has_max_dialogs;
    unsigned max_dialogs;
    json_t *profile;
};

/*
 * cca_operator_parse_patch - validate the patch body @body[0..len) into @ret.
 * Keys: "name", "languages", "skills", "profile" (an object with at least one
 * key), and "max_dialogs" only when @admin; each with the rules of
 * cca_operator_parse_register, except that a profile value may be null (remove
 * that key). At least one key is required. Anything else ("secret", "pin",
 * "status", ...) is refused naming the key.
 * Returns CCA_OK and fills @ret (release with cca_operator_patch_cleanup);
 * CCA_ERR_PARSE for an empty body or one that is not JSON; CCA_ERR_INVALID for
 * a broken rule, naming the field; CCA_ERR_INVALID with the detail
 * "max_dialogs can only be changed by an admin" when !@admin and the body has
 * "max_dialogs" (common.h has no "forbidden" code; the HTTP layer answers 422).
 * @ret is not written on failure. Thread-safe.
 */
cca_rc cca_operator_parse_patch(const char *body, size_t len, bool admin,
                                struct cca_operator_patch *ret,
                                struct cca_error *reterr) CCA_WUR;

/*
 * cca_operator_parse_object - @body[0..len) (need not be NUL-terminated) as a
 * JSON object into *ret (new reference): the loader of the operator and
 * customer bodies (customer.h). Returns CCA_OK; CCA_ERR_PARSE for an empty
 * body or one that is not JSON (the detail gives the position only, never
 * the text near it, which may be a secret or a PIN); CCA_ERR_INVALID for a
 * duplicate key, a number out of range, or JSON that is not an object.
 * Thread-safe.
 */
cca_rc cca_operator_parse_object(const char *body, size_t len, json_t **ret,
                                 struct cca_error *reterr) CCA_WUR;

/* cca_operator_patch_cleanup - free what @p owns and zero it. Accepts NULL. */
void cca_operator_patch_cleanup(struct cca_operator_patch *p);

/*
 * The operator document: one JSON file per operator in the store's operators
 * collection (store.h, CCA_STORE_OPERATORS), read back at start-up:
 *   {"operator_id", "name", "languages": [...], "skills": [...], "max_dialogs",
 *    "status", "status_since", "status_ms": {"available", "busy", "offline"},
 *    "created_at", "updated_at", "last_seen_at", "last_dialog_closed_at",
 *    "profile": {...}, "token_sha256"}
 * Times are cca_time_format strings (RFC 3339 UTC, milliseconds) or null;
 * "token_sha256" is the lower-case hex SHA-256 of the operator's bearer token
 * (the token itself is never stored). "status_since" is when the current status
 * began; "status_ms" holds the whole milliseconds spent in each status before
 * it (the running status is not in it: cca_operator_time_in_status adds it).
 * Records written before these two fields existed have neither; they read as
 * all zeros and as a status that began at updated_at (else created_at), and
 * the next change of such a record writes "status_since" with that time.
 */

/*
 * cca_operator_new_doc - a new document for @id (a canonical UUID) from @reg
 * (borrowed, as cca_operator_parse_register fills it; its profile is deep-copied,
 * a NULL profile gives {}, max_dialogs is clamped into 1..50), status
 * "offline", created_at = updated_at = @now_ms (Unix ms), last_seen_at and
 * last_dialog_closed_at null, token_sha256 @token_sha256_hex (64 lower-case hex,
 * as written by cca_operator_token_new), status_since @now_ms and status_ms all
 * zeros. Returns a new reference.
 */
json_t *cca_operator_new_doc(const char *id, const struct cca_operator_reg *reg,
                             const char *token_sha256_hex, int64_t now_ms);

/*
 * cca_operator_with_patch - @doc with the fields of @patch (borrowed) applied
 * and updated_at @now_ms (max_dialogs clamped into 1..50). The profile is a new
 * object: @patch's string and integer values replace, its nulls remove. @doc is
 * borrowed and not changed.
 * Returns a new reference.
 */
json_t *cca_operator_with_patch(json_t *doc, const struct cca_operator_patch *patch,
                                int64_t now_ms);

/*
 * cca_operator_with_status - @doc with status @status and updated_at @now_ms.
 * When @status differs from the current one, the time since status_since
 * (@now_ms minus it; nothing if the clock went back) is added to the old
 * status's entry of status_ms and status_since becomes @now_ms; the same status
 * again leaves the time accounting as it was. @doc is borrowed and not changed.
 * Returns a new reference.
 */
json_t *cca_operator_with_status(json_t *doc, enum cca_operator_status status,
                                 int64_t now_ms);

/*
 * cca_operator_time_in_status - the milliseconds @doc (borrowed) has spent in
 * each status up to @now_ms (Unix ms) into @ret_ms, indexed by enum
 * cca_operator_status: status_ms plus, for the current status, @now_ms minus
 * status_since (0 if negative). Records without the fields read as described
 * above; a document with no time at all (not valid, NULL) gives only what
 * its status_ms holds, zeros at worst. Pure and thread-safe.
 */
void cca_operator_time_in_status(json_t *doc, int64_t now_ms,
                                 int64_t ret_ms[CCA_OPERATOR_STATUS__COUNT]);

/*
 * cca_operator_with_times - @doc with last_seen_at @last_seen_ms and
 * last_dialog_closed_at @last_closed_ms (Unix ms; 0 leaves that one unchanged)
 * and updated_at @now_ms. @doc is borrowed and not changed. Returns a new
 * reference.
 */
json_t *cca_operator_with_times(json_t *doc, int64_t last_seen_ms, int64_t last_closed_ms,
                                int64_t now_ms);

/*
 * cca_operator_with_token - @doc with token_sha256 @token_sha256_hex (a new
 * token replaces the old one, which stops working) and updated_at @now_ms. @doc
 * is borrowed and not changed. Returns a new reference.
 */
json_t *cca_operator_with_token(json_t *doc, const char *token_sha256_hex,
                                int64_t now_ms);

/*
 * cca_operator_public_view - what the API shows of @doc (borrowed): a shallow
 * copy without "token_sha256". Returns a new reference.
 */
json_t *cca_operator_public_view(json_t *doc);

/*
 * cca_operator_validate - check that @doc (borrowed, e.g. a file read back at
 * start-up) is a well-formed operator document: an object; operator_id a
 * canonical UUID, equal to @expected_id unless that is NULL; name a string;
 * languages as for cca_operator_langs_parse (non-empty) and skills as for
 * cca_operator_skills_parse; max_dialogs an integer 1..50; status a known name;
 * created_at and updated_at times; last_seen_at, last_dialog_closed_at and
 * status_since null, absent or times; status_ms absent or an object whose
 * "available", "busy" and "offline" are absent or non-negative integers (other
 * keys ignored); profile absent or an object; token_sha256 64 lower-case hex
 * digits. Returns CCA_OK or CCA_ERR_INVALID with the first problem in @reterr
 * (may be NULL; the detail never quotes the hash). Thread-safe.
 */
cca_rc cca_operator_validate(json_t *doc, const char *expected_id,
                             struct cca_error *reterr) CCA_WUR;

/*
 * Accessors for a validated @doc (borrowed). Strings are borrowed from @doc
 * (valid while the caller holds it). On a document that is not valid they return
 * CCA_OPERATOR_OFFLINE, 0 or NULL rather than crash.
 * cca_operator_get_time - the Unix ms of the time field @key, 0 when null or
 * absent (cca_time_parse).
 */
enum cca_operator_status cca_operator_get_status(json_t *doc);
unsigned cca_operator_get_max(json_t *doc);
uint32_t cca_operator_get_langs(json_t *doc);
uint32_t cca_operator_get_skills(json_t *doc);
const char *cca_operator_get_name(json_t *doc);
const char *cca_operator_get_token_hash(json_t *doc);
int64_t cca_operator_get_time(json_t *doc, const char *key);

/*
 * Bearer tokens (RFC 6750): "cco_" followed by the base64url encoding without
 * padding (RFC 4648 section 5) of 32 random bytes, 43 characters.
 */
#define CCA_OPERATOR_TOKEN_PREFIX "cco_"
#define CCA_OPERATOR_TOKEN_LEN    47 /* 4 + 43, without the NUL */

/*
 * cca_operator_token_new - a new token from getrandom(2) into @ret_token
 * (NUL-terminated) and its SHA-256 (cca_operator_token_hash) into @ret_hash_hex.
 * Returns CCA_OK, or CCA_ERR_INTERNAL when the kernel's random source or the
 * digest fails (then both buffers are untouched). May block only before the
 * kernel's entropy pool is first initialised (early boot). Thread-safe.
 */
cca_rc cca_operator_token_new(char ret_token[CCA_OPERATOR_TOKEN_LEN + 1],
                              char ret_hash_hex[65]) CCA_WUR;

/*
 * cca_operator_token_hash - SHA-256 (FIPS 180-4, OpenSSL EVP_Digest) of
 * @token[0..len) as 64 lower-case hex digits plus NUL into @ret_hex: the key
 * under which a token is looked up. Should the digest fail (a broken OpenSSL
 * setup) @ret_hex is "", which matches no stored hash. Thread-safe.
 */
void cca_operator_token_hash(const char *token, size_t len, char ret_hex[65]);

/*
 * cca_operator_token_looks_valid - a cheap shape check of @token[0..len) before
 * any lookup: the "cco_" prefix, CCA_OPERATOR_TOKEN_LEN bytes, base64url
 * characters, and a last character whose unused low bits are zero (RFC 4648
 * section 3.5: a canonical encoding). Says nothing about whether the token was
 * issued. Pure.
 */
bool cca_operator_token_looks_valid(const char *token, size_t len);

/*
 * cca_operator_secret_equal - true if @given[0..given_len) equals
 * @expected[0..expected_len) (the configured registration secret). Always
 * false when @expected is NULL or empty (an unset secret lets nobody in). The
 * SHA-256 digests of both are compared with CRYPTO_memcmp, so the time does not
 * depend on where the inputs differ, nor on the expected length beyond the
 * number of 64-byte SHA-256 blocks. Either pointer may be NULL with length 0.
 * Thread-safe.
 */
bool cca_operator_secret_equal(const char *given, size_t given_len, const char *expected,
                               size_t expected_len);

/*
 * cca_operator_pin_allowed - true if @pin[0..len) is one of the comma-separated
 * PINs in @pins_csv (OPERATOR_PINS; spaces and tabs around an entry ignored,
 * empty entries skipped). The digest of @pin is compared with the digest of
 * every entry (CRYPTO_memcmp) without stopping at a match. False for a NULL or
 * empty @pins_csv, a list with no entries, or an empty @pin. Thread-safe.
 */
bool cca_operator_pin_allowed(const char *pin, size_t len, const char *pins_csv);

#endif
