/* SPDX-License-Identifier: MIT */
#ifndef CCA_TEST_STORE_MEMORY_H
#define CCA_TEST_STORE_MEMORY_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/store.h"

/*
 * An in-memory store backend for tests (struct cca_store_ops, store.h): a
 * second backend behind the interface, with the knobs a test of the engine
 * needs. Documents live in a table, one current version per (collection, id);
 * a change (commit or removal) completes on the backend's own thread, after
 * an optional delay, and can be made to fail. The backend records what it saw:
 * the versions committed per id in order, the changes in flight per id, the
 * reads. Every function is thread-safe.
 *
 * The stored size of a document is its JSON text with two-space indents (about
 * what the file store keeps); a commit reports what it added to that size.
 */

struct store_memory;

/*
 * store_memory_new - a new backend and the store over it (*ret_store, freed
 * with cca_store_free, which also frees the backend). @ret_mem is the test's
 * handle to the backend, valid until cca_store_free.
 */
void store_memory_new(struct cca_store **ret_store, struct store_memory **ret_mem);

/*
 * store_memory_preset - put @doc (borrowed, the store takes a reference) in
 * the dialogs collection as @id, as if committed by an earlier run: what
 * cca_store_load hands over. Call before the load.
 */
void store_memory_preset(struct store_memory *m, const char *id, json_t *doc);

/* store_memory_set_delay - changes queued from now on complete @ms later. */
void store_memory_set_delay(struct store_memory *m, unsigned ms);

/*
 * store_memory_fail_next - the next @n changes (commits or removals) fail with
 * @rc (CCA_ERR_IO or CCA_ERR_NO_SPACE) and change nothing.
 */
void store_memory_fail_next(struct store_memory *m, unsigned n, cca_rc rc);

/*
 * store_memory_hold - while @on, changes wait (not completed) until it is
 * turned off again; a test uses it to keep an operation in the store.
 */
void store_memory_hold(struct store_memory *m, bool on);

/* store_memory_reads - calls to read so far, all ids. */
size_t store_memory_reads(struct store_memory *m);

/* store_memory_reads_of - calls to read of @id so far. */
size_t store_memory_reads_of(struct store_memory *m, const char *id);

/* store_memory_changes - changes queued so far (commits and removals, all ids). */
size_t store_memory_changes(struct store_memory *m);

/* store_memory_in_flight - changes of @id queued and not completed yet. */
unsigned store_memory_in_flight(struct store_memory *m, const char *id);

/*
 * store_memory_max_in_flight - the most changes of one id that were ever in
 * flight at once (the contract says 1).
 */
unsigned store_memory_max_in_flight(struct store_memory *m);

/*
 * store_memory_bad_calls - calls that broke the store.h contract: a change
 * queued while another of the same id was in flight, a commit of a NULL
 * document, an old_doc that is not the committed version.
 */
size_t store_memory_bad_calls(struct store_memory *m);

/* store_memory_versions - versions of @id committed (successfully) so far. */
size_t store_memory_versions(struct store_memory *m, const char *id);

/*
 * store_memory_version - the @i-th version of @id committed, oldest first
 * (a new reference), or NULL when there is no such version.
 */
json_t *store_memory_version(struct store_memory *m, const char *id, size_t i);

/* store_memory_has - @id is in the store now (committed and not removed). */
bool store_memory_has(struct store_memory *m, const char *id);

#endif
