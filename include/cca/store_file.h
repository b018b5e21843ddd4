/* SPDX-License-Identifier: MIT */
#ifndef CCA_STORE_FILE_H
#define CCA_STORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/store.h"

/*
 * The file store (docs/internals/store.md): the embedded default backend of
 * cca_store. One directory; every document is a plain JSON file that any JSON
 * tool reads, and a write-ahead journal makes changes durable:
 *
 *   <dir>/<uuid>.json                 a dialog: one JSON document (RFC 8259),
 *                                     pretty-printed, its current state plus
 *                                     "store_lsn" (see below)
 *   <dir>/<collection>/<uuid>.json    documents of the other collections
 *   <dir>/journal-<seq>.wal           journal segments: one JSON line per change
 *   <dir>/.lock                       flock(2)ed by the one server that owns it
 *
 * A change is one journal line, {"lsn":N,"coll":"dialogs","id":"<uuid>",
 * "patch":[RFC 6902 operations]} (or "doc":{...} for a whole document,
 * "remove":true for a removal), appended to the open segment and flushed with
 * fdatasync(2) before its commit is acknowledged; one writer thread writes
 * every change queued meanwhile with one write and one flush (group commit).
 * The bytes flushed per change are proportional to the change, not to the
 * document.
 *
 * A checkpoint thread then rewrites the changed documents' files whole
 * (temporary file + rename(2), atomic, not flushed), checkpoint_ms after a
 * document's change (<= 1000), with every change made meanwhile: a change is
 * normally in its file within checkpoint_ms plus the pass that writes it
 * (docs/internals/store.md, "The bound", for when a pass is busy or a write
 * fails; health reports failing writes). A file's
 * "store_lsn" is the sequence number of the last change it holds. A segment
 * is deleted once every change it holds is in files that were flushed
 * (syncfs(2)).
 *
 * Recovery (cca_store_load): read every file, then replay the journal's
 * segments in order, applying each change whose lsn is above its document's
 * store_lsn; then write the replayed documents, flush, and delete the
 * segments. A last line cut by a crash was never acknowledged and is dropped.
 * Damage anywhere else (a line that is not JSON, a change that does not
 * apply) keeps the document as it was before that change, logs what was
 * dropped, and keeps the damaged file aside as <name>.damaged-<UTC time>.
 * Files in the format of earlier versions (a document followed by change
 * lines) are folded and rewritten as plain JSON.
 */

struct cca_store_file_params {
    const char *dir;          /* created (mode 0750) if missing; copied */
    bool fsync;               /* false skips every flush: benchmarks only */
    size_t max_file_bytes;    /* larger files are skipped at load */
    unsigned checkpoint_ms;   /* 0..1000: delay before a changed file is rewritten */
    size_t max_segment_bytes; /* a journal segment is closed past this size */
};

/*
 * cca_store_file_new - open (and create) @params->dir, check it is writable,
 * take an exclusive flock(2) on its .lock file (writing our PID in it: two
 * servers on one directory would interleave their writes, so the second is
 * refused), and start the writer and checkpoint threads.
 * Returns CCA_OK and a new store in *ret_store; CCA_ERR_CONFLICT when another
 * process holds the lock (its PID in the message); CCA_ERR_INVALID for bad
 * parameters; CCA_ERR_IO / CCA_ERR_NO_SPACE otherwise, detail in @reterr.
 * The lock is released by cca_store_free or by the process's death.
 */
cca_rc cca_store_file_new(const struct cca_store_file_params *params,
                          struct cca_store **ret_store, struct cca_error *reterr) CCA_WUR;

/* The lock file in the directory. */
#define CCA_STORE_FILE_LOCK ".lock"

/* Free space below this many bytes makes the store report itself not writable. */
#define CCA_STORE_FILE_RESERVE_BYTES ((uint64_t)16384)

/* A health call runs at most one probe write per this many milliseconds. */
#define CCA_STORE_FILE_PROBE_INTERVAL_MS 1000

/*
 * struct cca_store_file_parsed - what cca_store_file_parse found.
 * @lsn:      the file's "store_lsn" (0 when absent: a file of an earlier
 *            version or made by hand).
 * @legacy:   the file is in the earlier format (a document and change lines);
 *            it must be rewritten.
 * @changes:  change lines folded (@legacy only).
 * @dropped:  bytes of a last change line cut by a crash (@legacy only).
 * @damaged:  bytes from the first damaged change line to the end, dropped
 *            (@legacy only); 0 when the file is sound.
 * @damage:   why, when @damaged > 0 ("change N at byte B: reason"), else "".
 */
struct cca_store_file_parsed {
    uint64_t lsn;
    bool legacy;
    unsigned changes;
    size_t dropped;
    size_t damaged;
    char damage[120];
};

/*
 * cca_store_file_parse - the document of @coll in a file's @bytes[0..len)
 * (need not be NUL-terminated): exactly one JSON value, whose "store_lsn"
 * member is removed and reported; or, in the earlier format, a document
 * followed by change lines (each an RFC 6902 patch), folded in order: a last
 * line that is not valid JSON is a cut append and is dropped; any other bad
 * line, or a change that does not apply, is damage: the document is kept as
 * it was before that change (none of the failing change applied). A dialog is
 * then validated with cca_dialog_validate (@expected_id may be NULL).
 * Returns CCA_OK with a new document in *ret_doc and *ret filled, or
 * CCA_ERR_INVALID with the reason in @reterr (nothing returned). Pure and
 * thread-safe.
 */
cca_rc cca_store_file_parse(enum cca_store_coll coll, const char *bytes, size_t len,
                            const char *expected_id, json_t **ret_doc,
                            struct cca_store_file_parsed *ret,
                            struct cca_error *reterr) CCA_WUR;

#endif
