/* SPDX-License-Identifier: MIT */
/* Private to the file store (store_file.c, store_journal.c) and its unit tests. */
#ifndef CCA_STORE_FILE_INT_H
#define CCA_STORE_FILE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cca/common.h"

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
 * cca_store_journal_list - the numbers of the segments in @dirfd, ascending
 * (*ret_seqs new, caller frees). Returns CCA_OK or CCA_ERR_IO.
 */
cca_rc cca_store_journal_list(int dirfd, uint64_t **ret_seqs, size_t *ret_n,
                              struct cca_error *reterr);

#endif
