/* SPDX-License-Identifier: MIT */
#ifndef CCA_EXPORT_H
#define CCA_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/record.h"

/*
 * Export formats (docs/RECORDS.md): the bytes of dialog exports, profile
 * exports and a customer's history, written piece by piece into a buffer so
 * a caller can stream any number of items in constant memory (the HTTP layer
 * drains the buffer into a chunked response between items).
 *
 * CSV follows RFC 4180: fields separated by commas, rows ended by CRLF, a
 * field quoted (and its quotes doubled) by libcsv's csv_write when it holds
 * a comma, a quote, CR or LF, or starts or ends with a space; UTF-8. A field
 * that a spreadsheet would run as a formula (first character = + - @, tab or
 * CR; OWASP "CSV injection") is prefixed with a single quote. JSON is one
 * array; NDJSON one compact document per line (LF). Text is for people.
 *
 * Everything here is pure and thread-safe on distinct buffers.
 */

enum cca_export_format {
    CCA_EXPORT_JSON = 0,
    CCA_EXPORT_NDJSON = 1,
    CCA_EXPORT_CSV = 2,
    CCA_EXPORT_TXT = 3,
    CCA_EXPORT__COUNT,
};

#define CCA_EXPORT_BIT(fmt) (1u << (unsigned)(fmt))

/*
 * cca_export_format_parse - @s ("json", "ndjson", "csv", "txt"; exact) into
 * *ret when its bit is in @allowed (CCA_EXPORT_BIT). False otherwise.
 */
bool cca_export_format_parse(const char *s, unsigned allowed, enum cca_export_format *ret);

/* cca_export_format_name - "json", ... (static); NULL out of range. */
const char *cca_export_format_name(enum cca_export_format fmt);

/* cca_export_content_type - "application/json", "application/x-ndjson",
 * "text/csv; charset=utf-8", "text/plain; charset=utf-8". Static. */
const char *cca_export_content_type(enum cca_export_format fmt);

/*
 * struct cca_export_buf - bytes waiting to be sent: @data[0..len), with @cap
 * allocated (grows as needed). Zero-initialised is empty.
 */
struct cca_export_buf {
    char *data;
    size_t len;
    size_t cap;
};

/* cca_export_buf_add - append @n bytes of @s. */
void cca_export_buf_add(struct cca_export_buf *b, const char *s, size_t n);

/* cca_export_buf_consume - drop the first @n bytes (n <= len). */
void cca_export_buf_consume(struct cca_export_buf *b, size_t n);

/* cca_export_buf_cleanup - free @b's bytes and zero it. Accepts NULL. */
void cca_export_buf_cleanup(struct cca_export_buf *b);

/* ---- CSV --------------------------------------------------------------------- */

/* cca_export_csv_bom - the UTF-8 byte order mark EF BB BF (for spreadsheets). */
void cca_export_csv_bom(struct cca_export_buf *b);

/*
 * cca_export_csv_field - one field: @s (NUL-terminated, NULL = empty), quoted
 * as needed, preceded by a comma unless @first.
 */
void cca_export_csv_field(struct cca_export_buf *b, const char *s, bool first);

/* cca_export_csv_end - end the row (CRLF). */
void cca_export_csv_end(struct cca_export_buf *b);

/* ---- dialogs ----------------------------------------------------------------- */

/*
 * cca_export_dialog_csv_header - the header row of the dialog CSV:
 * dialog_id, customer_id, customer_name, channel, agents, operators,
 * operator_ids, status, created_at, closed_at, messages, tokens,
 * first_response_s, queue_wait_s, first_human_response_s, handle_time_s,
 * escalation_trigger, csat, close_reason.
 */
void cca_export_dialog_csv_header(struct cca_export_buf *b);

/*
 * cca_export_dialog_csv_row - @r (borrowed) as one row: lists (agents,
 * operators) joined with ";", operator names looked up in @names (borrowed
 * object operator_id -> name; the id stands in for an unknown one), times RFC
 * 3339 (cca_time_format), durations in seconds with 3 decimals, an empty
 * field for "does not apply" (-1, no closed_at, csat 0).
 */
void cca_export_dialog_csv_row(struct cca_export_buf *b, const struct cca_record *r,
                               json_t *names);

/*
 * cca_export_json_open, _item, _close - a JSON array (@fmt JSON: "[", items
 * separated by ",\n", "]\n") or NDJSON (@fmt NDJSON: each item compact on one
 * line ending "\n"; open and close write nothing). @index is the item's
 * 0-based position (0 writes no separator). @doc is borrowed and written
 * compact, UTF-8 unescaped, keys in stored order.
 */
void cca_export_json_open(struct cca_export_buf *b, enum cca_export_format fmt);
void cca_export_json_item(struct cca_export_buf *b, enum cca_export_format fmt,
                          json_t *doc, size_t index);
void cca_export_json_close(struct cca_export_buf *b, enum cca_export_format fmt);

/*
 * cca_export_dialog_doc - the dialog as exported (JSON, NDJSON, history
 * JSON): @doc without metadata.idempotency (stored responses to retried
 * requests, not part of the conversation). A new reference (copy-on-write,
 * shares the rest of @doc).
 */
json_t *cca_export_dialog_doc(json_t *doc);

/* ---- a customer's history (seeds 001, 004) ----------------------------------- */

/*
 * cca_export_history_open, _dialog, _close - a customer's dialogs as one file:
 *  TXT: a title line with @customer_id and @customer_name (may be NULL), then
 *       per dialog a header "=== Dialog <id> · <created> · <status> ===" and
 *       one line per message "[YYYY-MM-DD HH:MM:SS UTC] <who>: <text>" where
 *       who is "Customer (<name>)", "AI <agent>", "Operator <name>" or
 *       "System"; multi-line text indented by two spaces; closed_at, reason
 *       and rating when present.
 *  CSV: header dialog_id, timestamp, role, who, operator_id, agent, text; one
 *       row per message.
 *  JSON: an array of dialogs (cca_export_dialog_doc).
 * @doc borrowed; @index its 0-based position.
 */
void cca_export_history_open(struct cca_export_buf *b, enum cca_export_format fmt,
                             const char *customer_id, const char *customer_name);
void cca_export_history_dialog(struct cca_export_buf *b, enum cca_export_format fmt,
                               json_t *doc, size_t index);
void cca_export_history_close(struct cca_export_buf *b, enum cca_export_format fmt);

/* ---- profiles (seed 000's profile database) ---------------------------------- */

/*
 * cca_export_profile_csv_header - kind, id, name, full_name, city,
 * birth_date, position, experience, phone, email, language, status,
 * max_dialogs, created_at.
 */
void cca_export_profile_csv_header(struct cca_export_buf *b);

/*
 * cca_export_profile_row - one profile as a CSV row (@fmt CSV) or a JSON /
 * NDJSON item {"kind", ...profile}: @doc (borrowed) is a customer profile
 * (customer.h, @is_operator false; "id" is its customer_id) or an operator
 * record (operator.h, @is_operator true; only cca_operator_public_view fields:
 * never the token hash; "id" is its operator_id, the profile fields from its
 * "profile"). @index as cca_export_json_item.
 */
void cca_export_profile_row(struct cca_export_buf *b, enum cca_export_format fmt,
                            json_t *doc, bool is_operator, size_t index);

#endif
