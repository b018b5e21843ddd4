/* SPDX-License-Identifier: MIT */
/* The file store's journal segments (src/store_file_int.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cca/mem.h"

#include "store_file_int.h"

#define PREFIX "journal-"
#define SUFFIX ".wal"

static cca_rc errno_rc(int e)
{
    return (e == ENOSPC || e == EDQUOT) ? CCA_ERR_NO_SPACE : CCA_ERR_IO;
}

void cca_store_journal_name(uint64_t seq, char buf[64])
{
    (void)snprintf(buf, 64, PREFIX "%016" PRIu64 SUFFIX, seq);
}

bool cca_store_journal_parse_name(const char *name, uint64_t *ret_seq)
{
    size_t len = strlen(name);
    size_t pre = strlen(PREFIX);
    uint64_t seq = 0;

    if (len != pre + 16 + strlen(SUFFIX) || strncmp(name, PREFIX, pre) != 0 ||
        strcmp(name + pre + 16, SUFFIX) != 0)
        return false;
    for (size_t i = pre; i < pre + 16; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        seq = seq * 10 + (uint64_t)(name[i] - '0');
    }
    *ret_seq = seq;
    return true;
}

void cca_store_journal_close(struct cca_store_journal *j)
{
    j->open = false;
    j->len = 0;
    j->broken = false;
}

cca_rc cca_store_journal_open(struct cca_store_journal *j, uint64_t seq,
                              struct cca_error *reterr)
{
    char name[64];
    int fd;

    cca_store_journal_close(j);
    cca_store_journal_name(seq, name);
    fd = openat(j->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                0640);
    if (fd < 0)
        return cca_error_set(reterr, errno_rc(errno), "cannot create journal %s: %s",
                             name, strerror(errno));
    close(fd);
    /* The new name must survive a crash before the first change relies on it. */
    if (j->fsync && fsync(j->dirfd) != 0) {
        int e = errno;

        (void)unlinkat(j->dirfd, name, 0);
        return cca_error_set(reterr, errno_rc(e), "cannot flush the directory of %s: %s",
                             name, strerror(e));
    }
    j->open = true;
    j->seq = seq;
    j->len = 0;
    j->broken = false;
    return CCA_OK;
}

/*
 * The segment is opened for each append and closed after it (a few
 * microseconds against the flush): a file held open for writing would stop an
 * administrator's remount of the file system read-only.
 */
/* Cut the open segment back to its valid length, flushed. Returns 0 or an errno. */
static int cut_back(struct cca_store_journal *j, int fd)
{
    if (ftruncate(fd, (off_t)j->len) != 0 || (j->fsync && fdatasync(fd) != 0))
        return errno ? errno : EIO;
    return 0;
}

cca_rc cca_store_journal_append(struct cca_store_journal *j, const char *bytes,
                                size_t len, struct cca_error *reterr)
{
    const char *p = bytes;
    size_t left = len;
    off_t at = (off_t)j->len;
    char name[64];
    int e = 0;
    int fd;

    cca_store_journal_name(j->seq, name);
    fd = openat(j->dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return cca_error_set(reterr, errno_rc(errno), "cannot open journal %s: %s", name,
                             strerror(errno));
    if (j->broken) {
        e = cut_back(j, fd);
        if (e != 0) {
            close(fd);
            return cca_error_set(reterr, CCA_ERR_IO,
                                 "journal %s still holds a failed write that cannot be "
                                 "cut off: %s",
                                 name, strerror(e));
        }
        j->broken = false;
    }
    while (left > 0) {
        ssize_t n = pwrite(fd, p, left, at);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? errno : EIO;
            break;
        }
        p += n;
        left -= (size_t)n;
        at += n;
    }
    if (e == 0 && j->fsync && fdatasync(fd) != 0)
        e = errno;
    if (e == 0) {
        j->len += len;
        close(fd); /* the data is flushed: a close error cannot lose it */
        return CCA_OK;
    }
    /*
     * Cut back, so the lines of the failed batch are never read back by a
     * recovery as if they had been acknowledged. If the cut fails too, the
     * segment is broken: no append goes after those lines until it is cut.
     */
    if (cut_back(j, fd) != 0)
        j->broken = true;
    close(fd);
    return cca_error_set(reterr, errno_rc(e), "cannot append to journal %s: %s", name,
                         strerror(e));
}

DIR *cca_store_file_opendir(int dirfd)
{
    int fd = dup(dirfd);
    DIR *d;

    if (fd < 0)
        return NULL;
    d = fdopendir(fd);
    if (d == NULL) {
        int e = errno;

        close(fd);
        errno = e;
        return NULL;
    }
    rewinddir(d); /* the descriptor may have been read before */
    return d;
}

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

cca_rc cca_store_journal_list(int dirfd, uint64_t **ret_seqs, size_t *ret_n,
                              struct cca_error *reterr)
{
    uint64_t *seqs = NULL;
    size_t n = 0;
    size_t cap = 0;
    struct dirent *de;
    DIR *d = cca_store_file_opendir(dirfd);

    if (d == NULL)
        return cca_error_set(reterr, CCA_ERR_IO, "cannot list the journal: %s",
                             strerror(errno));
    while ((de = readdir(d)) != NULL) {
        uint64_t seq;

        if (!cca_store_journal_parse_name(de->d_name, &seq))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            seqs = cca_xrealloc(seqs, cap * sizeof(*seqs));
        }
        seqs[n++] = seq;
    }
    closedir(d);
    if (n > 1)
        qsort(seqs, n, sizeof(*seqs), cmp_seq);
    *ret_seqs = seqs;
    *ret_n = n;
    return CCA_OK;
}
