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
 * a comma, a quote, CR or LF, a semicolon (the separator spreadsheets use in
 * ru and de locales, so "a;=cmd" cannot become two cells, the second a
 * formula), or starts or ends with a space or a tab (which readers such as
 * libcsv would trim); other fields are written raw; UTF-8, no
 * byte order mark unless cca_export_csv_bom writes one. CSV injection (OWASP):
 * a field that a spreadsheet would run as a formula is prefixed with a single
 * quote ('), namely one whose first character is '=', '@', a tab or CR, or
 * '+' or '-' unless every character after that sign is a digit, a space or
 * one of . , ( ) / - (so "-5", "-1.500", "+7 (999) 123-45-67", "+" and "-"
 * stay as they are, while "-2+3+cmd|' /C calc'!A0" and "+A1" get the quote).
 * The prefix comes before quoting ("=a,b" is written "'=a,b" in quotes). A
 * reader gets the field back byte for byte, with that one extra leading quote
 * when the rule applied. Bytes are not checked or changed: valid UTF-8 in,
 * valid UTF-8 out.
 *
 * JSON is one array: "[", the items separated by ",\n", "]\n" (so an empty
 * export is "[]\n"); NDJSON one compact document per line (LF). Text is for
 * people (see cca_export_history_open).
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
bool cca_export_format_parse(const char *s, unsigned allowed,
                             enum cca_export_format *ret);

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
 * 3339 (cca_time_format), durations in seconds with 3 decimals (1500 ms is
 * "1.500", exact), an empty field for "does not apply" (a -1 duration, a time
 * of 0, csat 0, escalation_trigger none).
 */
void cca_export_dialog_csv_row(struct cca_export_buf *b, const struct cca_record *r,
                               json_t *names);

/*
 * cca_export_json_open, _item, _close - a JSON array (@fmt JSON: "[", items
 * separated by ",\n", "]\n") or NDJSON (@fmt NDJSON: each item compact on one
 * line ending "\n"; open and close write nothing). @index is the item's
 * 0-based position (0 writes no separator). @doc is borrowed and written
 * compact (cca_dialog_dump_change), UTF-8 unescaped, keys in stored order; a
 * scalar is written as such (NULL as null). Other formats write nothing.
 */
void cca_export_json_open(struct cca_export_buf *b, enum cca_export_format fmt);
void cca_export_json_item(struct cca_export_buf *b, enum cca_export_format fmt,
                          json_t *doc, size_t index);
void cca_export_json_close(struct cca_export_buf *b, enum cca_export_format fmt);

/*
 * cca_export_dialog_doc - the dialog as exported (JSON, NDJSON, history
 * JSON): @doc without metadata.idempotency (stored responses to retried
 * requests, not part of the conversation). A new reference (copy-on-write,
 * shares the rest of @doc; @doc itself when it has no such records). @doc is
 * not changed.
 */
json_t *cca_export_dialog_doc(json_t *doc);

/* ---- a customer's history (seeds 001, 004) ----------------------------------- */

/*
 * cca_export_history_open, _dialog, _close - a customer's dialogs as one file:
 *  TXT: lines ended by LF. The title "History of customer <customer_id>",
 *       plus " (<customer_name>)" when that is neither NULL nor empty. Per
 *       dialog a blank line, the header "=== Dialog <id> · <created> ·
 *       <status> ===", one line per message "[<time>] <who>: <text>", then
 *       "Closed <time>" (+ ": <close_reason>" when there is one) when
 *       closed_at is set, and "Rating: N/5" (+ " — <comment>") when rated.
 *       <time> is "YYYY-MM-DD HH:MM:SS UTC" from the stored RFC 3339 time (a
 *       time cca_time_parse does not read is shown as stored, a missing one
 *       as "?"). <who> by role: customer "Customer (<customer_info.name>)",
 *       or "Customer" without a name; agent "AI <agent_type>"; operator
 *       "Operator <operator_name>", else "Operator <operator_id>"; system
 *       "System"; another role as it is. Line breaks (CRLF, CR, LF) in a
 *       message or comment continue it on a new line indented by two spaces
 *       (trailing ones are dropped); in any other field they become a space.
 *       The text is always valid UTF-8 with no control character but LF: a
 *       tab becomes a space, every other C0 control, DEL, C1 control
 *       (U+0080..U+009F) and malformed byte becomes U+FFFD.
 *       _close writes nothing.
 *  CSV: header dialog_id, timestamp (as stored), role, who (as in TXT),
 *       operator_id, agent (agent_type), text (content); one row per message,
 *       the fields as stored (quoted and guarded as every CSV field). No BOM
 *       (the caller writes one first if it wants).
 *  JSON, NDJSON: the dialogs (cca_export_dialog_doc) as cca_export_json_open,
 *       _item, _close write them.
 * @doc borrowed (any JSON value: missing or mistyped fields are left out, never
 * a crash); @index its 0-based position.
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
 *  CSV: kind "customer" or "operator", id, then each column from the document
 *       (for an operator full_name, city, birth_date, position and experience
 *       from its "profile", and "language" its "languages" joined with ";").
 *       Strings as they are, numbers in decimal, booleans true/false, and
 *       null, absent or mistyped values empty (a customer has no name,
 *       status or max_dialogs; an operator no phone or email).
 *  JSON, NDJSON: {"kind", "id", then the document's other fields in stored
 *       order}, the id key (customer_id, operator_id) not repeated; an
 *       operator's "profile" object is spread in its place, so both kinds
 *       carry full_name, city, ... at the top level. Keys "kind" and "id" of
 *       the document, and "token_sha256" in a profile, are left out.
 * A @doc that is not an object, and @fmt TXT, write nothing.
 */
void cca_export_profile_row(struct cca_export_buf *b, enum cca_export_format fmt,
                            json_t *doc, bool is_operator, size_t index);

#endif
