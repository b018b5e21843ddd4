/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/dialog.h"
#include "cca/jsonpatch.h"
#include "cca/mem.h"
#include "cca/store.h"

enum job_kind { JOB_WRITE, JOB_APPEND, JOB_REMOVE };

struct job {
    struct job *next;
    enum job_kind kind;
    char id[37];
    const char *bytes;
    size_t len;
    size_t offset; /* JOB_APPEND: where the bytes go */
    cca_store_done_fn done;
    void *ctx;
    cca_rc rc;
    struct cca_error err;
};

struct cca_store {
    char *dir;
    int dirfd;
    int lockfd; /* CCA_STORE_LOCK_FILE, flock(2)ed while the store is open */
    bool fsync;
    size_t max_file_bytes;
    pthread_t writer;
    bool writer_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head;
    struct job *tail;
    bool stop;
    /* health, under lock */
    bool last_ok;         /* no operation failed since the last success or heal */
    unsigned fail_seq;    /* bumped by every batch with a failure */
    uint64_t need_bytes;  /* largest write that failed for lack of space */
    char last_error[160]; /* reason of the last failure */
    bool probing;         /* a health call is running the probe write */
    unsigned probe_seq;   /* fail_seq the cached probe result belongs to */
    int64_t probe_at_us;  /* when the last probe ran, 0 never */
    bool probe_ok;        /* its outcome */
    struct cca_store_metrics metrics;
};

static cca_rc errno_rc(int e)
{
    return (e == ENOSPC || e == EDQUOT) ? CCA_ERR_NO_SPACE : CCA_ERR_IO;
}

static void tmp_name(const char *id, char buf[64])
{
    (void)snprintf(buf, 64, ".%s.json.tmp", id);
}

static void final_name(const char *id, char buf[64])
{
    (void)snprintf(buf, 64, "%s.json", id);
}

static bool write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool pwrite_all(int fd, const char *p, size_t len, off_t offset)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, offset);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += n;
        len -= (size_t)n;
        offset += n;
    }
    return true;
}

static void job_fail(struct job *j, int e, const char *what)
{
    j->rc =
        cca_error_set(&j->err, errno_rc(e), "%s %s.json: %s", what, j->id, strerror(e));
}

/* Step 1 of a batch: the data of each write into its temporary file. */
static void write_tmp(struct cca_store *s, struct job *j, bool flush_now)
{
    char name[64];
    int fd;

    tmp_name(j->id, name);
    fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        job_fail(j, errno, "cannot create temporary file for");
        return;
    }
    if (!write_all(fd, j->bytes, j->len)) {
        job_fail(j, errno, "cannot write");
    } else if (flush_now && fdatasync(fd) != 0) {
        job_fail(j, errno, "cannot flush");
    }
    if (close(fd) != 0 && j->rc == CCA_OK)
        job_fail(j, errno, "cannot close");
    if (j->rc != CCA_OK)
        (void)unlinkat(s->dirfd, name, 0);
}

/*
 * Cut the file of a failed append back to where the append began. Best effort
 * and not flushed: if it fails, the next append of the dialog, which goes to
 * the same offset (the engine never advanced it), cuts the rest, and the scan
 * drops an invalid last line.
 */
static void cut_back(int fd, const struct job *j)
{
    if (ftruncate(fd, (off_t)j->offset) != 0)
        return;
}

/*
 * An append: the bytes at j->offset (the end of the valid content), the file
 * cut right after them (anything beyond was an interrupted append), and on any
 * failure the file cut back to j->offset, so it holds exactly what it held.
 */
static void write_append(struct cca_store *s, struct job *j, bool flush_now)
{
    char name[64];
    off_t end = (off_t)(j->offset + j->len);
    struct stat st;
    int fd;

    final_name(j->id, name);
    fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        job_fail(j, errno, "cannot open");
        return;
    }
    if (fstat(fd, &st) != 0)
        job_fail(j, errno, "cannot stat");
    else if ((size_t)st.st_size < j->offset)
        /* Shorter than the caller thinks: appending would leave a hole of NULs. */
        job_fail(j, EIO, "unexpected length of");
    if (j->rc != CCA_OK) {
        close(fd);
        return;
    }
    if (!pwrite_all(fd, j->bytes, j->len, (off_t)j->offset))
        job_fail(j, errno, "cannot append to");
    else if (fstat(fd, &st) != 0 || (st.st_size > end && ftruncate(fd, end) != 0))
        job_fail(j, errno, "cannot truncate");
    else if (flush_now && fdatasync(fd) != 0)
        job_fail(j, errno, "cannot flush");
    if (j->rc != CCA_OK)
        cut_back(fd, j);
    if (close(fd) != 0 && j->rc == CCA_OK)
        job_fail(j, errno, "cannot close");
}

/* Undo an append whose batch failed to flush (best effort: the cut is not flushed). */
static void undo_append(struct cca_store *s, struct job *j)
{
    char name[64];
    int fd;

    final_name(j->id, name);
    fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        cut_back(fd, j);
        close(fd);
    }
}

static void run_batch(struct cca_store *s, struct job *batch)
{
    char tmp[64];
    char fin[64];
    size_t writes = 0;
    bool renamed = false;
    struct job *j;

    for (j = batch; j != NULL; j = j->next)
        writes += j->kind != JOB_REMOVE;
    /* A batch of one flushes just its file; a larger batch is flushed by one syncfs. */
    for (j = batch; j != NULL; j = j->next) {
        if (j->kind == JOB_WRITE)
            write_tmp(s, j, s->fsync && writes == 1);
        else if (j->kind == JOB_APPEND)
            write_append(s, j, s->fsync && writes == 1);
    }
    if (s->fsync && writes > 1 && syncfs(s->dirfd) != 0) {
        int e = errno;

        for (j = batch; j != NULL; j = j->next) {
            if (j->kind == JOB_REMOVE || j->rc != CCA_OK)
                continue;
            job_fail(j, e, "cannot flush");
            if (j->kind == JOB_APPEND) {
                undo_append(s, j);
            } else {
                tmp_name(j->id, tmp);
                (void)unlinkat(s->dirfd, tmp, 0);
            }
        }
    }
    for (j = batch; j != NULL; j = j->next) {
        if (j->rc != CCA_OK || j->kind == JOB_APPEND)
            continue;
        final_name(j->id, fin);
        if (j->kind == JOB_WRITE) {
            tmp_name(j->id, tmp);
            if (renameat(s->dirfd, tmp, s->dirfd, fin) != 0) {
                job_fail(j, errno, "cannot rename");
                (void)unlinkat(s->dirfd, tmp, 0);
                continue;
            }
        } else if (unlinkat(s->dirfd, fin, 0) != 0 && errno != ENOENT) {
            job_fail(j, errno, "cannot remove");
            continue;
        }
        renamed = true;
    }
    if (s->fsync && renamed && fsync(s->dirfd) != 0) {
        int e = errno;

        /* Appends were flushed with their data and need no directory entry. */
        for (j = batch; j != NULL; j = j->next) {
            if (j->rc == CCA_OK && j->kind != JOB_APPEND)
                job_fail(j, e, "cannot flush the directory after writing");
        }
    }
}

static void *writer_main(void *arg)
{
    struct cca_store *s = arg;

    for (;;) {
        struct job *batch;
        struct job *next;
        bool ok = true;
        int64_t t0;
        unsigned n;

        pthread_mutex_lock(&s->lock);
        while (s->head == NULL && !s->stop)
            pthread_cond_wait(&s->cond, &s->lock);
        batch = s->head;
        s->head = s->tail = NULL;
        pthread_mutex_unlock(&s->lock);
        if (batch == NULL)
            break; /* stop requested and nothing left */

        t0 = cca_time_mono_us();
        run_batch(s, batch);
        cca_hist_observe_us(&s->metrics.flush_seconds, cca_time_mono_us() - t0);
        n = 0;
        for (struct job *j = batch; j != NULL; j = j->next) {
            n++;
            atomic_fetch_add_explicit(j->rc == CCA_OK ? &s->metrics.writes
                                                      : &s->metrics.errors,
                                      1, memory_order_relaxed);
            if (j->rc != CCA_OK) {
                ok = false;
                pthread_mutex_lock(&s->lock);
                (void)snprintf(s->last_error, sizeof(s->last_error), "%s", j->err.msg);
                pthread_mutex_unlock(&s->lock);
            }
        }
        cca_hist_observe(&s->metrics.batch_writes, n);
        pthread_mutex_lock(&s->lock);
        s->last_ok = ok;
        if (ok) {
            s->need_bytes = 0;
        } else {
            s->fail_seq++;
            for (struct job *j = batch; j != NULL; j = j->next) {
                if (j->rc == CCA_ERR_NO_SPACE && j->len > s->need_bytes)
                    s->need_bytes = j->len;
            }
        }
        pthread_mutex_unlock(&s->lock);
        for (struct job *j = batch; j != NULL; j = next) {
            next = j->next;
            j->done(j->ctx, j->rc, &j->err);
            free(j);
        }
    }
    return NULL;
}

static cca_rc mkdir_p(const char *dir, struct cca_error *err)
{
    char path[4096];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path))
        return cca_error_set(err, CCA_ERR_INVALID, "storage path is empty or too long");
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            return cca_error_set(err, errno_rc(errno), "cannot create %s: %s", path,
                                 strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return cca_error_set(err, errno_rc(errno), "cannot create %s: %s", path,
                             strerror(errno));
    return CCA_OK;
}

/*
 * Own the directory: an exclusive flock(2) on its lock file, held until
 * cca_store_free (the kernel drops it when the process dies, so a SIGKILL
 * leaves no stale lock). The holder's PID is written in the file for the
 * message of the next one that tries.
 */
static cca_rc lock_dir(struct cca_store *s, struct cca_error *reterr)
{
    char pid[32];
    bool written;
    int n, fd;

    /* Held read-only: a file open for writing would stop a remount read-only. */
    s->lockfd = openat(s->dirfd, CCA_STORE_LOCK_FILE,
                       O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0640);
    if (s->lockfd < 0)
        return cca_error_set(reterr, CCA_ERR_IO, "cannot open %s/%s: %s", s->dir,
                             CCA_STORE_LOCK_FILE, strerror(errno));
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        ssize_t got = pread(s->lockfd, pid, sizeof(pid) - 1, 0);

        pid[got > 0 ? got : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            return cca_error_set(reterr, CCA_ERR_CONFLICT,
                                 "storage directory %s is in use by another server "
                                 "(pid %s)",
                                 s->dir, pid[0] ? pid : "unknown");
        return cca_error_set(reterr, CCA_ERR_IO, "cannot lock %s/%s: %s", s->dir,
                             CCA_STORE_LOCK_FILE, strerror(e));
    }
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    fd = openat(s->dirfd, CCA_STORE_LOCK_FILE,
                O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    written = fd >= 0 && write(fd, pid, (size_t)n) == n;
    if (fd >= 0 && close(fd) != 0)
        written = false;
    if (!written) /* the flock stays: it belongs to lockfd's open file description */
        return cca_error_set(reterr, CCA_ERR_IO, "cannot write %s/%s: %s", s->dir,
                             CCA_STORE_LOCK_FILE, strerror(errno));
    return CCA_OK;
}

cca_rc cca_store_new(const struct cca_store_params *params, struct cca_store **ret_store,
                     struct cca_error *reterr)
{
    struct cca_store *s = NULL;
    cca_rc rc;

    rc = mkdir_p(params->dir, reterr);
    if (rc != CCA_OK)
        goto out;
    s = cca_xcalloc(1, sizeof(*s));
    cca_hist_init(&s->metrics.flush_seconds, cca_hist_seconds_bounds, cca_hist_seconds_n);
    cca_hist_init(&s->metrics.batch_writes, cca_hist_batch_bounds, cca_hist_batch_n);
    s->dirfd = -1;
    s->lockfd = -1;
    s->dir = cca_xstrdup(params->dir);
    s->fsync = params->fsync;
    s->max_file_bytes = params->max_file_bytes;
    s->last_ok = true;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->dirfd = open(params->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "cannot open %s: %s", params->dir,
                           strerror(errno));
        goto out;
    }
    if (faccessat(s->dirfd, ".", W_OK, AT_EACCESS) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "%s is not writable: %s", params->dir,
                           strerror(errno));
        goto out;
    }
    rc = lock_dir(s, reterr);
    if (rc != CCA_OK)
        goto out;
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "cannot start the writer thread");
        goto out;
    }
    s->writer_started = true;
    *ret_store = s;
    s = NULL;
out:
    cca_store_free(s);
    return rc;
}

void cca_store_free(struct cca_store *s)
{
    if (s == NULL)
        return;
    if (s->writer_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer, NULL);
    }
    if (s->dirfd >= 0)
        close(s->dirfd);
    if (s->lockfd >= 0)
        close(s->lockfd); /* releases the flock */
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->dir);
    free(s);
}

static bool is_dialog_file(const char *name, char id[37])
{
    size_t len = strlen(name);
    char canon[37];

    if (len != 36 + 5 || strcmp(name + 36, ".json") != 0)
        return false;
    memcpy(id, name, 36);
    id[36] = '\0';
    return cca_uuid_canonical(id, canon) && strcmp(canon, id) == 0;
}

static bool is_tmp_file(const char *name)
{
    size_t len = strlen(name);

    return name[0] == '.' && len > 4 && strcmp(name + len - 4, ".tmp") == 0;
}

/* Read one dialog file; on failure say why in @why. */
static char *read_file(struct cca_store *s, const char *name, size_t *ret_len, char *why,
                       size_t why_size)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd = -1;

    /*
     * Look before opening: open(2) of a FIFO blocks until a writer appears, and
     * a device may do anything. O_NONBLOCK covers a swap between the two calls.
     */
    if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        (void)snprintf(why, why_size, "cannot stat: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        (void)snprintf(why, why_size, "not a regular file, ignoring");
        goto out;
    }
    fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        (void)snprintf(why, why_size, "cannot open: %s", strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        (void)snprintf(why, why_size, "not a regular file, ignoring");
        goto out;
    }
    if ((size_t)st.st_size > s->max_file_bytes) {
        (void)snprintf(why, why_size, "larger than %zu bytes", s->max_file_bytes);
        goto out;
    }
    buf = cca_xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            (void)snprintf(why, why_size, "read failed");
            free(buf);
            buf = NULL;
            goto out;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    *ret_len = got;
out:
    if (fd >= 0)
        close(fd);
    return buf;
}

/* The next line of @p[0..len) from @at: its end (the '\n'), or NULL if it has none. */
static const char *line_end(const char *p, size_t len, size_t at)
{
    return memchr(p + at, '\n', len - at);
}

/* @p[0..len) holds only blanks. */
static bool is_blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    }
    return true;
}

/*
 * Fold the document at the head of @bytes and at most @limit change lines into
 * *ret_doc (new), filling @ext. Stops at the first damaged line (ext->damaged
 * set); a change that fails half-way may leave its first operations applied,
 * so the caller folds again with @limit = ext->patches to drop them.
 */
static cca_rc fold(const char *bytes, size_t len, unsigned limit, json_t **ret_doc,
                   struct cca_store_extent *ext, struct cca_error *reterr)
{
    json_error_t jerr;
    json_t *doc;
    size_t at;

    memset(ext, 0, sizeof(*ext));
    doc = json_loadb(bytes, len, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        return cca_error_set(reterr, CCA_ERR_INVALID, "corrupt JSON at line %d: %s",
                             jerr.line, jerr.text);
    at = (size_t)jerr.position; /* bytes read: the document ends there */
    if (at < len && bytes[at] == '\n')
        at++;
    ext->doc_len = at;
    while (at < len) {
        const char *nl = line_end(bytes, len, at);
        size_t end = nl != NULL ? (size_t)(nl - bytes) : len;
        struct cca_error perr = {0};
        json_t *patch;

        if (is_blank(bytes + at, end - at)) {
            at = end + 1; /* a blank line (hand-edited file) */
            continue;
        }
        if (nl == NULL) {
            /*
             * No newline: an append cut short, even if what is there parses (an
             * append is acknowledged only once its '\n' is flushed, and the next
             * append at file_len would glue its line onto this one).
             */
            ext->dropped = len - at;
            break;
        }
        patch = json_loadb(bytes + at, end - at, JSON_REJECT_DUPLICATES, &jerr);
        if (patch == NULL && end + 1 == len) {
            /* The last line, cut short: an append interrupted before it was flushed. */
            ext->dropped = len - at;
            break;
        }
        if (patch == NULL || ext->patches == limit ||
            cca_jsonpatch_apply(doc, patch, &perr) != CCA_OK) {
            /* Damage in the middle (a second writer, a disk fault, a hand edit). */
            if (ext->patches < limit)
                (void)snprintf(ext->damage, sizeof(ext->damage),
                               "change %u at byte %zu: %.70s", ext->patches + 1, at,
                               patch == NULL ? jerr.text : perr.msg);
            json_decref(patch);
            ext->damaged = len - at;
            break;
        }
        json_decref(patch);
        ext->patches++;
        at = end + 1;
    }
    ext->file_len = len - ext->dropped - ext->damaged;
    *ret_doc = doc;
    return CCA_OK;
}

cca_rc cca_store_parse(const char *bytes, size_t len, const char *expected_id,
                       json_t **ret_doc, struct cca_store_extent *ret,
                       struct cca_error *reterr)
{
    struct cca_store_extent ext;
    json_t *doc = NULL;
    cca_rc rc;

    rc = fold(bytes, len, UINT_MAX, &doc, &ext, reterr);
    if (rc == CCA_OK && ext.damaged > 0) {
        /* Fold again up to the last good change: a failed one may be half-applied. */
        char damage[sizeof(ext.damage)];

        memcpy(damage, ext.damage, sizeof(damage));
        json_decref(doc);
        doc = NULL;
        rc = fold(bytes, len, ext.patches, &doc, &ext, reterr);
        memcpy(ext.damage, damage, sizeof(damage));
    }
    if (rc != CCA_OK)
        goto out;
    rc = cca_dialog_validate(doc, expected_id, reterr);
    if (rc != CCA_OK)
        goto out;
    *ret_doc = doc;
    doc = NULL;
    *ret = ext;
out:
    json_decref(doc);
    return rc;
}

cca_rc cca_store_read(struct cca_store *s, const char *id, json_t **ret_doc,
                      struct cca_store_extent *ret, struct cca_error *reterr)
{
    char name[64];
    char why[200];
    size_t len = 0;
    char *bytes;
    cca_rc rc;

    final_name(id, name);
    bytes = read_file(s, name, &len, why, sizeof(why));
    if (bytes == NULL)
        return cca_error_set(reterr,
                             faccessat(s->dirfd, name, F_OK, 0) != 0 && errno == ENOENT
                                 ? CCA_ERR_NOT_FOUND
                                 : CCA_ERR_IO,
                             "dialog file %s: %s", name, why);
    rc = cca_store_parse(bytes, len, id, ret_doc, ret, reterr);
    free(bytes);
    return rc;
}

/* Cut @name to @len bytes (an interrupted append removed). */
static bool truncate_file(struct cca_store *s, const char *name, size_t len)
{
    int fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    bool ok = fd >= 0 && ftruncate(fd, (off_t)len) == 0 && (!s->fsync || fsync(fd) == 0);

    if (fd >= 0)
        close(fd);
    return ok;
}

/*
 * Keep a damaged file aside as <id>.json.damaged-<time> and put the salvaged
 * @doc in its place, written whole (tmp + flush + rename + directory flush).
 * On success @ext describes the new file. Returns false, with the file left
 * as it was, if any step fails.
 */
static bool salvage(struct cca_store *s, const char *id, json_t *doc,
                    struct cca_store_extent *ext, char *aside, size_t aside_size)
{
    struct job j = {.kind = JOB_WRITE};
    char fin[64];
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    bool ok;

    (void)strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
    final_name(id, fin);
    (void)snprintf(aside, aside_size, "%.41s.damaged-%.20s", fin, stamp);
    (void)snprintf(j.id, sizeof(j.id), "%s", id);
    j.bytes = cca_dialog_dump(doc, &j.len);
    write_tmp(s, &j, s->fsync);
    ok = j.rc == CCA_OK && linkat(s->dirfd, fin, s->dirfd, aside, 0) == 0;
    if (ok) {
        char tmp[64];

        tmp_name(id, tmp);
        ok = renameat(s->dirfd, tmp, s->dirfd, fin) == 0 &&
             (!s->fsync || fsync(s->dirfd) == 0);
        if (!ok)
            (void)unlinkat(s->dirfd, aside, 0);
    }
    if (!ok && j.rc == CCA_OK) {
        char tmp[64];

        tmp_name(id, tmp);
        (void)unlinkat(s->dirfd, tmp, 0);
    }
    if (ok) {
        memset(ext, 0, sizeof(*ext));
        ext->file_len = ext->doc_len = j.len;
    }
    free((char *)j.bytes);
    return ok;
}

cca_rc cca_store_scan(struct cca_store *s, cca_store_load_fn load, cca_store_skip_fn skip,
                      void *ctx, struct cca_error *reterr)
{
    struct dirent *de;
    DIR *d;
    int fd = dup(s->dirfd);

    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return cca_error_set(reterr, CCA_ERR_IO, "cannot list %s: %s", s->dir,
                             strerror(errno));
    }
    rewinddir(d);
    while ((de = readdir(d)) != NULL) {
        struct cca_store_extent ext;
        struct cca_error err = {0};
        char id[37];
        char why[240];
        json_t *doc = NULL;
        size_t len = 0;
        char *bytes;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, ".gitkeep") == 0 ||
            strcmp(de->d_name, CCA_STORE_LOCK_FILE) == 0)
            continue;
        if (is_tmp_file(de->d_name)) {
            /* An interrupted write: the target still holds the previous version. */
            (void)unlinkat(s->dirfd, de->d_name, 0);
            if (skip != NULL)
                skip(ctx, de->d_name,
                     "leftover temporary file of an interrupted write, removed");
            continue;
        }
        if (!is_dialog_file(de->d_name, id)) {
            if (skip != NULL)
                skip(ctx, de->d_name, "not a <uuid>.json dialog file, ignoring");
            continue;
        }
        bytes = read_file(s, de->d_name, &len, why, sizeof(why));
        if (bytes == NULL) {
            if (skip != NULL)
                skip(ctx, de->d_name, why);
            continue;
        }
        if (cca_store_parse(bytes, len, id, &doc, &ext, &err) != CCA_OK) {
            (void)snprintf(why, sizeof(why), "invalid dialog: %s, ignoring", err.msg);
            if (skip != NULL)
                skip(ctx, de->d_name, why);
            free(bytes);
            continue;
        }
        free(bytes);
        if (ext.damaged > 0) {
            char aside[96];
            char damage[sizeof(ext.damage)];
            unsigned kept = ext.patches;
            size_t lost = ext.damaged;

            memcpy(damage, ext.damage, sizeof(damage));
            if (salvage(s, id, doc, &ext, aside, sizeof(aside)))
                (void)snprintf(why, sizeof(why),
                               "damaged: %s; salvaged with %u changes, %zu bytes "
                               "dropped; the damaged file is kept as %s",
                               damage, kept, lost, aside);
            else
                (void)snprintf(why, sizeof(why),
                               "damaged: %s; loaded with %u changes, %zu bytes "
                               "ignored (the salvaged copy cannot be written)",
                               damage, kept, lost);
            if (skip != NULL)
                skip(ctx, de->d_name, why);
        } else if (ext.dropped > 0) {
            bool cut = truncate_file(s, de->d_name, ext.file_len);

            (void)snprintf(why, sizeof(why),
                           "%zu bytes of an interrupted append after byte %zu %s",
                           ext.dropped, ext.file_len,
                           cut ? "removed" : "ignored (the file cannot be truncated)");
            if (skip != NULL)
                skip(ctx, de->d_name, why);
        }
        load(ctx, id, doc, &ext);
    }
    closedir(d);
    return CCA_OK;
}

/* Queue a job of @kind for @id (the three public writers differ only in these). */
static void enqueue(struct cca_store *s, enum job_kind kind, const char *id,
                    size_t offset, const char *bytes, size_t len, cca_store_done_fn done,
                    void *ctx)
{
    struct job *j = cca_xcalloc(1, sizeof(*j));

    j->kind = kind;
    (void)snprintf(j->id, sizeof(j->id), "%s", id);
    j->offset = offset;
    j->bytes = bytes;
    j->len = len;
    j->done = done;
    j->ctx = ctx;
    pthread_mutex_lock(&s->lock);
    if (s->tail != NULL)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void cca_store_write(struct cca_store *s, const char *id, const char *bytes, size_t len,
                     cca_store_done_fn done, void *ctx)
{
    enqueue(s, JOB_WRITE, id, 0, bytes, len, done, ctx);
}

void cca_store_append(struct cca_store *s, const char *id, size_t offset,
                      const char *bytes, size_t len, cca_store_done_fn done, void *ctx)
{
    enqueue(s, JOB_APPEND, id, offset, bytes, len, done, ctx);
}

void cca_store_remove(struct cca_store *s, const char *id, cca_store_done_fn done,
                      void *ctx)
{
    enqueue(s, JOB_REMOVE, id, 0, NULL, 0, done, ctx);
}

/*
 * The present state of the file system, without touching the writer's data:
 * read-only mount, free space and inodes, write permission. Fills @ret's
 * free_bytes and, on a problem, writable = false and the reason.
 */
static void check_fs(struct cca_store *s, uint64_t need_bytes,
                     struct cca_store_health *ret)
{
    struct statvfs vfs;

    if (fstatvfs(s->dirfd, &vfs) != 0) {
        ret->writable = false;
        (void)snprintf(ret->last_error, sizeof(ret->last_error),
                       "dialog storage cannot be examined: %s", strerror(errno));
        return;
    }
    ret->free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (vfs.f_flag & ST_RDONLY) {
        ret->writable = false;
        (void)snprintf(ret->last_error, sizeof(ret->last_error),
                       "dialog storage is on a read-only file system");
    } else if (ret->free_bytes < CCA_STORE_RESERVE_BYTES + need_bytes) {
        ret->writable = false;
        (void)snprintf(ret->last_error, sizeof(ret->last_error),
                       "dialog storage is full: %llu bytes free, %llu needed",
                       (unsigned long long)ret->free_bytes,
                       (unsigned long long)(CCA_STORE_RESERVE_BYTES + need_bytes));
    } else if (vfs.f_files > 0 && vfs.f_favail == 0) {
        ret->writable = false;
        (void)snprintf(ret->last_error, sizeof(ret->last_error),
                       "dialog storage is full: no free inodes");
    } else if (faccessat(s->dirfd, ".", W_OK, AT_EACCESS) != 0) {
        ret->writable = false;
        (void)snprintf(ret->last_error, sizeof(ret->last_error),
                       "dialog storage directory is not writable: %s", strerror(errno));
    }
}

/*
 * Create, fill and remove a small file next to the dialogs (no flush: cheap).
 * Its name is a temporary-file name, so a leftover is removed by the next scan.
 */
static bool probe_write(struct cca_store *s, char *why, size_t why_size)
{
    static const char name[] = ".cca-health-probe.tmp";
    char buf[512] = {0};
    bool ok = false;
    int fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);

    if (fd < 0) {
        (void)snprintf(why, why_size, "dialog storage probe cannot create a file: %s",
                       strerror(errno));
        goto out;
    }
    if (!write_all(fd, buf, sizeof(buf))) {
        (void)snprintf(why, why_size, "dialog storage probe cannot write: %s",
                       strerror(errno));
        goto out;
    }
    /* Flushed, so a disk that fails with EIO is not declared healed by the page cache. */
    if (s->fsync && fdatasync(fd) != 0) {
        (void)snprintf(why, why_size, "dialog storage probe cannot flush: %s",
                       strerror(errno));
        goto out;
    }
    ok = true;
out:
    if (fd >= 0) {
        if (close(fd) != 0 && ok) {
            ok = false;
            (void)snprintf(why, why_size, "dialog storage probe cannot close: %s",
                           strerror(errno));
        }
        (void)unlinkat(s->dirfd, name, 0);
    }
    return ok;
}

void cca_store_get_health(struct cca_store *s, struct cca_store_health *ret)
{
    char why[sizeof(ret->last_error)] = "";
    char last_error[sizeof(s->last_error)];
    uint64_t need;
    unsigned seq;
    bool failed;
    bool probe = false;
    bool cached_ok = false;
    int64_t now = cca_time_mono_us();

    memset(ret, 0, sizeof(*ret));
    ret->writable = true;
    pthread_mutex_lock(&s->lock);
    failed = !s->last_ok;
    need = s->need_bytes;
    seq = s->fail_seq;
    memcpy(last_error, s->last_error, sizeof(last_error));
    pthread_mutex_unlock(&s->lock);
    check_fs(s, need, ret);
    if (!failed || !ret->writable)
        return;
    /*
     * The last batch failed but the file system looks fine now: a probe write
     * decides, at most once per CCA_STORE_PROBE_INTERVAL_MS (and at once after
     * a new failure); in between, the cached outcome answers.
     */
    pthread_mutex_lock(&s->lock);
    if (s->probing || (s->probe_seq == seq && s->probe_at_us != 0 &&
                       now - s->probe_at_us < CCA_STORE_PROBE_INTERVAL_MS * 1000)) {
        /* Another caller is probing, or a fresh outcome exists. */
        cached_ok = s->probe_seq == seq && s->probe_at_us != 0 && s->probe_ok;
    } else {
        s->probing = true;
        probe = true;
    }
    pthread_mutex_unlock(&s->lock);
    if (probe) {
        bool ok = probe_write(s, why, sizeof(why));

        pthread_mutex_lock(&s->lock);
        s->probing = false;
        s->probe_seq = seq;
        s->probe_at_us = now;
        s->probe_ok = ok;
        if (ok && s->fail_seq == seq) {
            /* Healed: space or permission came back. */
            s->last_ok = true;
            s->need_bytes = 0;
        }
        pthread_mutex_unlock(&s->lock);
        cached_ok = ok;
    }
    if (cached_ok)
        return;
    ret->writable = false;
    if (why[0] != '\0')
        (void)snprintf(ret->last_error, sizeof(ret->last_error), "%s", why);
    else
        (void)snprintf(ret->last_error, sizeof(ret->last_error),
                       "dialog storage failed a write: %.100s", last_error);
}

const struct cca_store_metrics *cca_store_get_metrics(const struct cca_store *s)
{
    return &s->metrics;
}

const char *cca_store_dir(const struct cca_store *s)
{
    return s->dir;
}
