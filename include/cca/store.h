/* SPDX-License-Identifier: MIT */
#ifndef CCA_STORE_H
#define CCA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "cca/common.h"

/*
 * The store: durable collections of JSON documents, in the terms the service
 * thinks in (a dialog, its id, its new version), not in files or rows. The
 * engine and the HTTP layer call only these functions; a backend (the file
 * store, store_file.h; PostgreSQL later) implements struct cca_store_ops.
 *
 * Contract every backend keeps:
 *   - cca_store_commit and cca_store_remove call @done once; CCA_OK means the
 *     change is durable (it survives a crash or a power loss once @done ran).
 *     A failed change is not applied: the next read returns the old version.
 *   - At most one commit or removal per (collection, id) is in flight at a
 *     time: the caller (the engine) holds a document until its change is done,
 *     so changes of one document are applied in the order they were made.
 *     Changes of different documents are independent and may be batched
 *     (group commit).
 *   - cca_store_read returns the newest committed version, from any thread.
 *   - Documents are never changed by the store: it keeps references to the
 *     versions it was given (jansson's read-only sharing between threads).
 */

/*
 * The collections. Each holds documents keyed by a canonical UUID; a new
 * collection (operators, Telegram offsets) is one more line here plus its
 * name in cca_store_coll_name, and every backend stores it like the others.
 */
enum cca_store_coll {
    CCA_STORE_DIALOGS,
    CCA_STORE_OPERATORS, /* operator records (operator.h), <dir>/operators/ */
    CCA_STORE_CUSTOMERS, /* customer profiles (customer.h), <dir>/customers/ */
    CCA_STORE_TELEGRAM,  /* the Telegram channel's offset, chats and delivery
                            cursors (telegram.h), <dir>/telegram/ */
    CCA_STORE_COLL__COUNT,
};

/* cca_store_coll_name - "dialogs", ... (static string), or NULL for a bad value. */
const char *cca_store_coll_name(enum cca_store_coll coll);

/*
 * cca_store_load_fn - one document found at load: @doc (new reference) is
 * stolen by the callee; @bytes is the size it takes in the store (for memory
 * estimates: the file store gives the file's size).
 */
typedef void (*cca_store_load_fn)(void *ctx, enum cca_store_coll coll, const char *id,
                                  json_t *doc, size_t bytes);

/*
 * cca_store_report_fn - something the load skipped or repaired, for the log:
 * @what names it (a file, a journal record), @why says what happened. Nothing
 * is ever deleted without a copy kept (see the backend).
 */
typedef void (*cca_store_report_fn)(void *ctx, const char *what, const char *why);

/*
 * cca_store_done_fn - a commit or removal finished. @rc: CCA_OK (durable),
 * CCA_ERR_NO_SPACE (ENOSPC, EDQUOT) or CCA_ERR_IO, detail in @err. @bytes:
 * how much the change took in the store (the file store: its journal record),
 * for callers that budget memory by stored size; 0 on failure. Called on a
 * store thread; must not block for long.
 */
typedef void (*cca_store_done_fn)(void *ctx, cca_rc rc, size_t bytes,
                                  const struct cca_error *err);

/*
 * struct cca_store_health - the storage as it is now.
 * @writable:   changes are expected to succeed (see the backend for how it
 *              knows); false after a failed change until the cause is gone.
 * @free_bytes: space left for the store, 0 if unknown.
 * @location:   where the data lives, safe to show to an operator (a path, a
 *              database name; never a password).
 * @last_error: "" when @writable, else why not; begins with "dialog storage".
 * @fenced:     another instance held the storage while this one was cut off
 *              from it (PostgreSQL: the instance lock and its fencing token,
 *              store_pg.h): this instance never writes again and must stop
 *              (main.c does). Never goes back to false.
 */
struct cca_store_health {
    bool writable;
    bool fenced;
    uint64_t free_bytes;
    char location[256];
    char last_error[160];
};

struct cca_store;

/*
 * cca_store_load - read every collection once, recovering from an interrupted
 * run (the backend's recovery rule), and hand each document to @load.
 * @report (may be NULL) hears of everything skipped or repaired. Call once,
 * before any commit, from one thread. Returns CCA_OK, or CCA_ERR_IO /
 * CCA_ERR_NO_SPACE when the store cannot be read or its recovery cannot be
 * made durable (detail in @reterr).
 */
cca_rc cca_store_load(struct cca_store *store, cca_store_load_fn load,
                      cca_store_report_fn report, void *ctx,
                      struct cca_error *reterr) CCA_WUR;

/*
 * cca_store_read - the newest committed version of @id in @coll (@id a
 * canonical UUID, cca_uuid_canonical). Returns CCA_OK with a new reference in
 * *ret_doc and its stored size in *ret_bytes (may be NULL), CCA_ERR_NOT_FOUND,
 * or CCA_ERR_IO / CCA_ERR_INVALID when it cannot be read (detail in @reterr).
 * Thread-safe; may block on the disk or the database.
 */
cca_rc cca_store_read(struct cca_store *store, enum cca_store_coll coll, const char *id,
                      json_t **ret_doc, size_t *ret_bytes,
                      struct cca_error *reterr) CCA_WUR;

/*
 * cca_store_commit - queue the change of @id in @coll from @old_doc (its
 * committed version, or NULL for a new document or when the caller no longer
 * has it) to @new_doc. Both are borrowed: the store takes its own references
 * and never changes them. @done runs once (see above). Thread-safe, but at
 * most one change per (@coll, @id) may be in flight.
 */
void cca_store_commit(struct cca_store *store, enum cca_store_coll coll, const char *id,
                      json_t *old_doc, json_t *new_doc, cca_store_done_fn done,
                      void *ctx);

/*
 * cca_store_remove - queue the durable removal of @id from @coll (missing is
 * OK). @done runs once. Thread-safe, one change per id in flight.
 */
void cca_store_remove(struct cca_store *store, enum cca_store_coll coll, const char *id,
                      cca_store_done_fn done, void *ctx);

/*
 * cca_store_get_health - fill *ret with the present state, so that readiness
 * recovers without a change once space or permission returns. Never waits for
 * queued changes; may block for one small disk or network operation.
 * Thread-safe.
 */
void cca_store_get_health(struct cca_store *store, struct cca_store_health *ret);

/*
 * cca_store_render_metrics - write the backend's Prometheus families
 * (text exposition format 0.0.4) to @out. Thread-safe.
 */
void cca_store_render_metrics(struct cca_store *store, FILE *out);

/*
 * cca_store_free - finish every queued change (their @done run), stop the
 * backend's threads and release it. Accepts NULL.
 */
void cca_store_free(struct cca_store *store);

/* ---- for backends -------------------------------------------------------------- */

/*
 * struct cca_store_ops - a backend: one function per call above, each taking
 * the backend's own state @impl. Every member is required.
 */
struct cca_store_ops {
    const char *name; /* "file", "postgres" */
    cca_rc (*load)(void *impl, cca_store_load_fn load, cca_store_report_fn report,
                   void *ctx, struct cca_error *reterr);
    cca_rc (*read)(void *impl, enum cca_store_coll coll, const char *id, json_t **ret_doc,
                   size_t *ret_bytes, struct cca_error *reterr);
    void (*commit)(void *impl, enum cca_store_coll coll, const char *id, json_t *old_doc,
                   json_t *new_doc, cca_store_done_fn done, void *ctx);
    void (*remove)(void *impl, enum cca_store_coll coll, const char *id,
                   cca_store_done_fn done, void *ctx);
    void (*health)(void *impl, struct cca_store_health *ret);
    void (*metrics)(void *impl, FILE *out);
    void (*free)(void *impl);
};

/*
 * cca_store_new - a store over backend @ops with state @impl (stolen: freed
 * by ops->free in cca_store_free). Returns a new store; never NULL.
 */
struct cca_store *cca_store_new(const struct cca_store_ops *ops, void *impl);

/* cca_store_backend - the backend's name ("file"). Static string. Thread-safe. */
const char *cca_store_backend(const struct cca_store *store);

#endif
