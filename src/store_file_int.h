/* SPDX-License-Identifier: MIT */
/*
 * Private to the file store (store_file.c: writer, checkpointer, reads;
 * store_recover.c: parse and recovery; store_journal.c: segments) and its tests.
 */
#ifndef CCA_STORE_FILE_INT_H
#define CCA_STORE_FILE_INT_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/store.h"

/*
 * The journal: numbered segment files "journal-<seq, 16 digits>.wal" in the
 * store's directory. One segment is open for appending at a time; a change is
 * one line. Only the writer thread appends; recovery reads.
 */
struct cca_store_journal {
    int dirfd;    /* borrowed */
    bool fsync;   /* flush appends and new segments */
    uint64_t seq; /* the open segment, 0 before the first */
    bool open;    /* a segment is open for appends */
    uint64_t len; /* its valid bytes: where the next append goes */
    bool broken;  /* a failed append is not yet cut back: no append before it is */
};

/* Segment @seq's file name into @buf (64 bytes). */
void cca_store_journal_name(uint64_t seq, char buf[64]);

/* True if @name is a segment's file name; its number in *ret_seq. */
bool cca_store_journal_parse_name(const char *name, uint64_t *ret_seq);

/*
 * cca_store_journal_open - close the open segment, if any, and create segment
 * @seq (O_EXCL: never reuse one) with its directory entry flushed. Returns
 * CCA_OK, or CCA_ERR_IO / CCA_ERR_NO_SPACE (detail in @reterr; no segment is
 * open then).
 */
cca_rc cca_store_journal_open(struct cca_store_journal *j, uint64_t seq,
                              struct cca_error *reterr);

/*
 * cca_store_journal_append - write @bytes[0..len) (whole lines) at the end of
 * the open segment and flush them (fdatasync(2)) when j->fsync. On failure the
 * segment is cut back to what it held. If even that fails (the disk is gone),
 * the segment is marked broken and every later append first retries the cut
 * and fails while it cannot be made: a failed change must never be replayed,
 * and a later change written after it could be replayed on top of it.
 * Returns CCA_OK, CCA_ERR_NO_SPACE or CCA_ERR_IO.
 */
cca_rc cca_store_journal_append(struct cca_store_journal *j, const char *bytes,
                                size_t len, struct cca_error *reterr);

/* cca_store_journal_close - stop appending to the open segment (its file stays). */
void cca_store_journal_close(struct cca_store_journal *j);

/*
 * cca_store_file_opendir - a listing of directory @dirfd from its start, on a
 * descriptor of its own (closedir leaves @dirfd open). NULL with errno set.
 */
DIR *cca_store_file_opendir(int dirfd);

/*
 * cca_store_journal_list - the numbers of the segments in @dirfd, ascending
 * (*ret_seqs new, caller frees). Returns CCA_OK or CCA_ERR_IO.
 */
cca_rc cca_store_journal_list(int dirfd, uint64_t **ret_seqs, size_t *ret_n,
                              struct cca_error *reterr);

/* The member of a file that holds the lsn of the last change in it. */
#define CCA_STORE_FILE_LSN_KEY "store_lsn"

/* CCA_ERR_NO_SPACE for ENOSPC and EDQUOT, else CCA_ERR_IO. */
cca_rc cca_store_file_errno_rc(int e);

/* FNV-1a of (@coll, @id): the bucket of a document in the store's tables. */
size_t cca_store_file_hash(enum cca_store_coll coll, const char *id);

/*
 * cca_store_file_read - file @name of directory @dirfd, at most @max bytes,
 * as a new NUL-terminated buffer (its length in *ret_len). FIFOs, devices and
 * symbolic links are never opened (open(2) of a FIFO blocks until a writer
 * appears). On failure NULL, why in @why, and in *ret_rc CCA_ERR_NOT_FOUND,
 * CCA_ERR_INVALID (too large) or CCA_ERR_IO.
 */
char *cca_store_file_read(int dirfd, const char *name, size_t max, size_t *ret_len,
                          cca_rc *ret_rc, char *why, size_t why_size);

/*
 * cca_store_file_write - write @doc with its lsn as <@id>.json in @dirfd:
 * the temporary file .<@id>.json.tmp, then rename(2) over the name, or with
 * @swap renameat2(RENAME_EXCHANGE), which keeps the old inode as the emptied
 * temporary file for the next write (no inode allocated per write). Flushed
 * (data, then the directory) only when @flush. Its size in *ret_len. Returns
 * 0 or an errno (the temporary file is removed then).
 */
int cca_store_file_write(int dirfd, const char *id, json_t *doc, uint64_t lsn, bool flush,
                         bool swap, size_t *ret_len);

/* Where recovery works (borrowed). */
struct cca_store_file_dirs {
    const char *dir;     /* for messages */
    int dirfd;           /* the dialogs and the journal */
    const int *colldirs; /* [CCA_STORE_COLL__COUNT] */
    bool fsync;
    size_t max_file_bytes;
};

/*
 * cca_store_file_recover - the load of store_file.h: read every collection's
 * files, replay the journal's segments into them, keep damage aside, write
 * what changed, flush and delete the segments; then hand every document to
 * @load (stolen) and tell @report (may be NULL) what was skipped or repaired.
 * Returns CCA_OK with the next lsn and the next segment number, or
 * CCA_ERR_IO / CCA_ERR_NO_SPACE (detail in @reterr). Single-threaded.
 */
cca_rc cca_store_file_recover(const struct cca_store_file_dirs *dirs,
                              cca_store_load_fn load, cca_store_report_fn report,
                              void *ctx, uint64_t *ret_next_lsn, uint64_t *ret_next_seq,
                              struct cca_error *reterr);

#endif
