/* SPDX-License-Identifier: MIT */
#ifndef CCA_STORE_PG_H
#define CCA_STORE_PG_H

#include <stddef.h>

#include "cca/common.h"
#include "cca/store.h"

/*
 * The PostgreSQL store (docs/internals/store_pg.md): a backend of cca_store
 * over libpq, for ONE server instance (several instances on one database are
 * not supported yet: nothing serialises their changes of one dialog).
 *
 * Tables: dialogs (one row per dialog: the fields worth querying as columns,
 * the rest of the document as jsonb without its messages), messages (one row
 * per message, keyed (dialog_id, seq)), operators, customers, telegram (id,
 * doc jsonb, updated_at); schema_version records the migrations applied.
 * A commit of a dialog writes only the messages that are new or changed
 * (compared with the old version it is given) and the dialog's row.
 *
 * Durability: commits and removals are queued to one writer thread that
 * writes everything queued meanwhile in ONE transaction (group commit) and
 * calls each done after COMMIT returned (CCA_OK), or fails them all with
 * CCA_ERR_IO and resets its connection with backoff (100 ms doubling to 5 s).
 * Reads use the other connections of the pool, never waiting behind a batch.
 */

/*
 * struct cca_store_pg_params - how to reach the database.
 * @conninfo:             a libpq connection string or URI (secret: it may hold
 *                        a password; never logged, never in an error message).
 * @pool_size:            connections, 2..16: one writer, the rest readers.
 * @statement_timeout_ms: set on every connection (statement_timeout).
 * @lock_wait_ms:         cca_store_pg_new waits this long for the instance
 *                        lock of another server (0: refuse at once).
 */
struct cca_store_pg_params {
    const char *conninfo;
    unsigned pool_size;
    unsigned statement_timeout_ms;
    unsigned lock_wait_ms;
};

/* The newest schema version this binary knows (the number of migrations). */
unsigned cca_store_pg_schema_version(void);

/*
 * cca_store_pg_migrate - connect and apply the migrations the database lacks,
 * in one transaction under pg_advisory_xact_lock(CCA_STORE_PG_LOCK_KEY), then
 * disconnect. *ret_from / *ret_to (may be NULL) get the versions before and
 * after. Returns CCA_OK; CCA_ERR_CONFLICT when the database's schema is newer
 * than this binary knows (nothing changed), or its encoding is not UTF8;
 * CCA_ERR_IO when it cannot be reached or a step fails (rolled back);
 * CCA_ERR_INVALID for bad parameters. Detail in @reterr, without secrets.
 */
cca_rc cca_store_pg_migrate(const struct cca_store_pg_params *params, unsigned *ret_from,
                            unsigned *ret_to, struct cca_error *reterr) CCA_WUR;

/*
 * cca_store_pg_new - connect, take the instance lock (a session advisory lock
 * on CCA_STORE_PG_INSTANCE_KEY, held by the writer's connection and taken
 * again when it reconnects, before any write: only the active instance
 * writes), apply the missing migrations (as cca_store_pg_migrate, same
 * errors) and start the writer thread. Returns CCA_OK and a new store in
 * *ret_store; CCA_ERR_UNAVAILABLE when another instance holds the lock after
 * @params->lock_wait_ms (the holder's backend pid and address in @reterr: the
 * caller may wait as a standby, standby.h). Taking the lock advances the
 * fencing token (table instance_epoch). If the writer, reconnecting, finds the
 * lock held by another instance, or free but the token moved (another held it
 * meanwhile), the store is fenced for good (struct cca_store_health.fenced):
 * it never tries the lock again and every change fails with CCA_ERR_IO.
 * Thread-safe (each call its own connections).
 */
cca_rc cca_store_pg_new(const struct cca_store_pg_params *params,
                        struct cca_store **ret_store, struct cca_error *reterr) CCA_WUR;

/*
 * cca_store_pg_import_cli - `call-center-agents import --from-files DIR`: open
 * the file store in @dir (its lock: refused while a server runs on it; its
 * recovery runs as at a start), and upsert every document of every collection
 * whole into the database of @params (migrated first). Idempotent and
 * resumable: run it again after a failure or a crash. Prints the counts on
 * stdout, problems on stderr. Returns EXIT_SUCCESS or EXIT_FAILURE.
 */
int cca_store_pg_import_cli(const struct cca_store_pg_params *params, const char *dir);

/*
 * cca_store_pg_describe - "host=H port=P dbname=D" of @conninfo (what libpq
 * would use; never the password or other options) into @buf (capped, always
 * NUL-terminated): safe to log. "(invalid connection string)" when libpq
 * cannot parse it.
 */
void cca_store_pg_describe(const char *conninfo, char *buf, size_t size);

/* The advisory lock key under which migrations run ("cca" schema lock). */
#define CCA_STORE_PG_LOCK_KEY 0x63636100LL

/* The session advisory lock of the one server using a database. */
#define CCA_STORE_PG_INSTANCE_KEY 0x63636101LL

/* health: writable while a query succeeded within this many milliseconds. */
#define CCA_STORE_PG_HEALTHY_MS 2000

/* The writer's probe (SELECT 1) runs when it was idle this long. */
#define CCA_STORE_PG_PROBE_MS 1000

/* Reconnection backoff: first delay and cap (doubling in between). */
#define CCA_STORE_PG_BACKOFF_MIN_MS 100
#define CCA_STORE_PG_BACKOFF_MAX_MS 5000

/*
 * The writer sends a batch in pipeline mode, at most this many changes per
 * round trip (a larger batch stays one transaction over several round
 * trips): it bounds the results the server buffers for us while we are still
 * sending, so a blocking send never waits on a reader that is not reading.
 */
#define CCA_STORE_PG_PIPELINE_MAX 256

#endif
