/* SPDX-License-Identifier: MIT */
#ifndef CCA_STORE_H
#define CCA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/metrics.h"

/*
 * Durable storage of dialog documents, one file <uuid>.json per dialog
 * (docs/internals/store.md). A file is the dialog document, pretty-printed,
 * followed by zero or more lines, each a JSON Patch (RFC 6902) of one
 * committed change, compact, ending in '\n':
 *
 *   {"dialog_id": ..., "messages": [...], ...}        <- written whole
 *   [{"op":"add","path":"/messages/-","value":{...}}, ...]   <- appended
 *
 * Two kinds of write:
 *   - a replace (cca_store_write) writes the whole document atomically: the
 *     bytes go to a temporary file in the same directory, are flushed,
 *     renamed over the target, and the directory is flushed (the redis
 *     rdbSave pattern; rename alone is atomic but not durable, Pillai et al.,
 *     OSDI 2014). A crash leaves the old or the new complete file.
 *   - an append (cca_store_append) writes one patch line at the end of the
 *     valid content and flushes the file (fdatasync(2); no new inode, no
 *     rename, bytes proportional to the change, not to the dialog). A crash
 *     can leave a cut last line; it was never acknowledged, and the scan drops
 *     it (cca_store_parse).
 *
 * One writer thread performs the writes in batches (group commit): every
 * write queued while a batch is being flushed joins the next batch, which
 * costs one syncfs(2) for the data and, if it renamed or removed a file, one
 * fsync(2) of the directory, whatever its size.
 */

struct cca_store_params {
    const char *dir;       /* created (mode 0750) if missing; copied */
    bool fsync;            /* false skips the flushes: benchmarks only */
    size_t max_file_bytes; /* larger files are skipped by the scan */
};

struct cca_store;

/* The lock file in the directory: flock(2)ed by the one server that owns it. */
#define CCA_STORE_LOCK_FILE ".lock"

/*
 * cca_store_new - open (and create) the directory, check it is writable, take
 * an exclusive flock(2) on its CCA_STORE_LOCK_FILE (writing our PID in it),
 * and start the writer thread. Two servers on one directory would interleave
 * their writes, so the second is refused.
 * Returns CCA_OK and a new store in *ret_store; CCA_ERR_CONFLICT when another
 * process holds the lock (its PID in the message); CCA_ERR_IO /
 * CCA_ERR_NO_SPACE otherwise, with detail in @reterr. The lock is released by
 * cca_store_free or by the process's death.
 */
cca_rc cca_store_new(const struct cca_store_params *params, struct cca_store **ret_store,
                     struct cca_error *reterr) CCA_WUR;

/*
 * cca_store_free - finish every queued write (their callbacks run), stop the
 * writer thread and close the directory. Accepts NULL.
 */
void cca_store_free(struct cca_store *store);

/*
 * struct cca_store_extent - the layout of one dialog file.
 * @file_len: bytes that hold the dialog (the document and every complete
 *            change line): where the next append goes.
 * @doc_len:  bytes of the leading document, with its newline.
 * @patches:  change lines applied.
 * @dropped:  bytes after @file_len: a last line cut short by a crash.
 * @damaged:  bytes from the first damaged change line (not valid JSON, or a
 *            change that does not apply, before the last line) to the end:
 *            dropped with everything after it; 0 when the file is sound.
 * @damage:   why, when @damaged > 0 ("change N at byte B: reason"), else "".
 */
struct cca_store_extent {
    size_t file_len;
    size_t doc_len;
    unsigned patches;
    size_t dropped;
    size_t damaged;
    char damage[120];
};

/*
 * cca_store_parse - the dialog in a file's @bytes[0..len) (need not be
 * NUL-terminated): the leading document with every change line applied in
 * order (cca_jsonpatch_apply), then validated (cca_dialog_validate, with
 * @expected_id, which may be NULL). Blank lines are skipped. A last line that
 * is not valid JSON (with or without its newline) is a cut append: it is
 * reported in ret->dropped and ignored. Any other invalid line, or a change
 * that does not apply, is damage: the dialog is salvaged as it was before that
 * change (no part of the failing change applied) and ret->damaged and
 * ret->damage say what was dropped. Only a leading document that is not JSON,
 * or a folded dialog that fails validation, makes the file invalid.
 * Returns CCA_OK with a new document in *ret_doc and the layout in *ret, or
 * CCA_ERR_INVALID with the reason in @reterr (nothing returned). Pure and
 * thread-safe.
 */
cca_rc cca_store_parse(const char *bytes, size_t len, const char *expected_id,
                       json_t **ret_doc, struct cca_store_extent *ret,
                       struct cca_error *reterr) CCA_WUR;

/*
 * cca_store_read - read and parse <@id>.json now (cca_store_parse with @id;
 * a cut last line is ignored, not truncated). Returns CCA_OK with a new
 * document in *ret_doc and the layout in *ret, CCA_ERR_NOT_FOUND if there is
 * no such file, CCA_ERR_INVALID or CCA_ERR_IO with detail in @reterr. A read
 * that overlaps a write of @id may see the write's bytes (a cut last line is
 * dropped; a complete one is applied): the caller must not trust the result
 * unless it knows no write ran meanwhile (engine.c doc_ref). Thread-safe.
 */
cca_rc cca_store_read(struct cca_store *store, const char *id, json_t **ret_doc,
                      struct cca_store_extent *ret, struct cca_error *reterr) CCA_WUR;

/*
 * cca_store_load_fn - one valid dialog found by the scan: @doc (the folded,
 * validated dialog document) is stolen by the callee; @ext (borrowed) is the
 * file's layout, after any cut last line was removed.
 */
typedef void (*cca_store_load_fn)(void *ctx, const char *id, json_t *doc,
                                  const struct cca_store_extent *ext);

/* cca_store_skip_fn - a file the scan skipped (@name) and why; nothing is deleted. */
typedef void (*cca_store_skip_fn)(void *ctx, const char *name, const char *why);

/*
 * cca_store_scan - read every <uuid>.json once (start-up), with
 * cca_store_parse. Corrupt, foreign, oversized or non-regular files (a FIFO
 * or a device is never opened for reading) are reported to @skip (may be
 * NULL) and left alone; leftover temporary files of interrupted writes are
 * removed, and a cut last line is truncated away (both reported; the file is
 * still loaded). A damaged file (cca_store_extent.damaged) is renamed to
 * <uuid>.json.damaged-<UTC time> and the salvaged dialog written whole as
 * <uuid>.json (atomic and flushed), both reported; nothing is deleted.
 * Returns CCA_OK, or CCA_ERR_IO if the directory cannot be listed.
 * Call before any write; not thread-safe with respect to writes.
 */
cca_rc cca_store_scan(struct cca_store *store, cca_store_load_fn load,
                      cca_store_skip_fn skip, void *ctx,
                      struct cca_error *reterr) CCA_WUR;

/*
 * cca_store_done_fn - a write or removal finished; @rc is CCA_OK when it is
 * durable, CCA_ERR_NO_SPACE (ENOSPC, EDQUOT) or CCA_ERR_IO otherwise, with
 * detail in @err. Called on the writer thread; must not block for long.
 * A failed write leaves no temporary file and the previous <id>.json
 * untouched (a failed append is cut back), with one exception: when only the
 * final directory fsync(2) of a replace fails, the rename has happened, so
 * the file holds the new bytes although @rc reports CCA_ERR_IO (their
 * durability is unknown).
 */
typedef void (*cca_store_done_fn)(void *ctx, cca_rc rc, const struct cca_error *err);

/*
 * cca_store_write - queue an atomic replace of <@id>.json with @bytes[0..len).
 * @id must be a canonical UUID (cca_uuid_canonical); @bytes is borrowed until
 * @done runs. Thread-safe; one write per id at a time (see cca_store_append).
 */
void cca_store_write(struct cca_store *store, const char *id, const char *bytes,
                     size_t len, cca_store_done_fn done, void *ctx);

/*
 * cca_store_append - queue an append of @bytes[0..len) (one or more complete
 * change lines, each ending in '\n') at byte @offset of <@id>.json, which
 * must be the file's current cca_store_extent.file_len (the caller tracks it:
 * the scan's value, then + @len after each successful append, or the length
 * of the last replace). Anything in the file after @offset is cut. On failure
 * the file is cut back to @offset, so it holds exactly what it held before.
 * @bytes is borrowed until @done runs. Thread-safe, but at most one write,
 * append or removal per id may be queued at a time (the engine holds a
 * dialog for its whole operation): a replace and an append of one id in the
 * same batch would not be ordered.
 */
void cca_store_append(struct cca_store *store, const char *id, size_t offset,
                      const char *bytes, size_t len, cca_store_done_fn done, void *ctx);

/* cca_store_remove - queue a durable unlink of <@id>.json (missing is OK). Thread-safe.
 */
void cca_store_remove(struct cca_store *store, const char *id, cca_store_done_fn done,
                      void *ctx);

/* Free space below this many bytes makes the store report itself not writable. */
#define CCA_STORE_RESERVE_BYTES ((uint64_t)16384)

/* A health call runs at most one probe write per this many milliseconds. */
#define CCA_STORE_PROBE_INTERVAL_MS 1000

/*
 * struct cca_store_health - the storage as it is now.
 * @writable:   writes are expected to succeed: the file system is not mounted
 *              read-only, has free inodes, at least CCA_STORE_RESERVE_BYTES
 *              free (plus the size of the largest write that failed for lack
 *              of space, until the store heals), and the directory passes
 *              access(W_OK); and, if the last batch failed, a probe write has
 *              succeeded since (see cca_store_get_health).
 * @free_bytes: statvfs f_bavail * f_frsize, 0 if unknown.
 * @last_error: "" when @writable, else why not; begins with "dialog storage".
 */
struct cca_store_health {
    bool writable;
    uint64_t free_bytes;
    char last_error[160];
};

/*
 * cca_store_get_health - fill *ret with the present state of the storage, so
 * that readiness recovers without a write once space or permission returns
 * (an orchestrator that stops traffic to an unready server would never send
 * the write that heals it).
 *
 * Always: one fstatvfs(2) and one faccessat(2). Only while the last batch has
 * failed and those checks pass: a probe write (create, write 512 bytes, no
 * flush, unlink ".cca-health-probe.tmp" in the directory), at most once per
 * CCA_STORE_PROBE_INTERVAL_MS across all callers and at once after a new
 * failure; between probes the cached outcome answers. A successful probe
 * clears the failure (as a successful batch does). A concurrent caller never
 * waits for another's probe: it answers not writable.
 *
 * Never blocks on the writer thread; may block on the file system for one
 * small file operation. Thread-safe.
 */
void cca_store_get_health(struct cca_store *store, struct cca_store_health *ret);

/*
 * struct cca_store_metrics - counters since start, updated by the writer
 * thread. @flush_seconds: time from a batch's first write(2) to its directory
 * fsync; @batch_writes: writes and removals per batch; @writes: operations
 * committed; @errors: operations that failed (ENOSPC, EIO, ...).
 */
struct cca_store_metrics {
    struct cca_hist flush_seconds;
    struct cca_hist batch_writes;
    _Atomic uint64_t writes;
    _Atomic uint64_t errors;
};

/* cca_store_get_metrics - live counters, borrowed until cca_store_free. Thread-safe. */
const struct cca_store_metrics *cca_store_get_metrics(const struct cca_store *store);

/* cca_store_dir - the directory path. Borrowed, valid until cca_store_free. */
const char *cca_store_dir(const struct cca_store *store);

#endif
