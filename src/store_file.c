/* SPDX-License-Identifier: MIT */
/*
 * The file store (include/cca/store_file.h, docs/internals/store.md): plain
 * JSON files, a write-ahead journal with group commit, a checkpoint thread
 * that rewrites changed files (recovery at load: store_recover.c).
 *
 * Threads: the writer appends the journal and acknowledges changes; the
 * checkpointer writes files and deletes journal segments; readers call
 * cca_store_read from any thread. Shared state (the job queue, the dirty
 * documents, health) is under locks; the journal belongs to the writer.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/dialog.h"
#include "cca/jsonpatch.h"
#include "cca/mem.h"
#include "cca/metrics.h"
#include "cca/store_file.h"

#include "store_file_int.h"

/* Documents written per checkpoint pass before the lock is taken again. */
#define CHECKPOINT_BATCH 256

/* After a pass in which every write failed (a full or failing disk), rest this long. */
#define CHECKPOINT_RETRY_MS 100

enum job_kind { JOB_COMMIT, JOB_REMOVE };

/* One queued change. */
struct job {
    struct job *next;
    enum job_kind kind;
    enum cca_store_coll coll;
    char id[37];
    json_t *old_doc; /* JOB_COMMIT: references of our own */
    json_t *new_doc;
    cca_store_done_fn done;
    void *ctx;
    uint64_t lsn;
    size_t line_len;
};

/*
 * A document whose newest change is in the journal and not yet in its file.
 * The checkpointer writes it; readers are answered from it.
 */
struct dirty {
    struct dirty *hnext;
    struct dirty *older; /* the checkpoint queue, oldest first */
    struct dirty *newer;
    enum cca_store_coll coll;
    char id[37];
    json_t *doc;        /* the newest committed version; NULL: removed */
    uint64_t lsn;       /* of its newest change */
    uint64_t first_seq; /* the segment of its oldest change not in the file */
    int64_t since_us;   /* queued at (cca_time_mono_us): due checkpoint_ms later */
    int64_t dirty_us;   /* its file has been behind since (cca_time_mono_us) */
    bool writing;       /* the checkpointer is writing it, outside the lock */
    bool final_try;     /* tried by the last pass before stopping */
};

struct fstore_metrics {
    struct cca_hist flush_seconds;
    struct cca_hist batch_writes;
    _Atomic uint64_t writes;
    _Atomic uint64_t errors;
    _Atomic uint64_t journal_bytes;
    _Atomic uint64_t checkpoints;
    _Atomic uint64_t checkpoint_errors;
    _Atomic uint64_t checkpoint_bytes;
};

struct fstore {
    char *dir;
    int dirfd;
    int lockfd;
    int colldirs[CCA_STORE_COLL__COUNT]; /* [CCA_STORE_DIALOGS] is dirfd */
    bool fsync;
    size_t max_file_bytes;
    unsigned checkpoint_ms;
    size_t max_segment_bytes;

    /* The writer thread and its queue, under @lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head;
    struct job *tail;
    bool stop;
    pthread_t writer;
    bool writer_started;
    bool loaded;                      /* cca_store_load ran: the journal is open */
    struct cca_store_journal journal; /* writer thread only, after load */
    uint64_t next_lsn;                /* writer thread only, after load */

    /* Dirty documents and the checkpointer, under @dlock. */
    pthread_mutex_t dlock;
    pthread_cond_t dcond;
    struct dirty **buckets;
    size_t nbuckets;
    size_t ndirty;
    struct dirty *oldest;
    struct dirty *newest;
    uint64_t open_seq;   /* the segment the writer appends to */
    uint64_t oldest_seq; /* the oldest segment still on disk */
    bool cstop;          /* write everything now and stop */
    pthread_t checkpointer;
    bool checkpointer_started;

    /* Checkpoint failures, under @dlock: health reports them. */
    bool cp_failing;    /* the last write of a file failed */
    char cp_error[128]; /* why */

    /* Health, under @lock. */
    bool last_ok;         /* no change failed since the last success or heal */
    unsigned fail_seq;    /* bumped by every batch with a failure */
    uint64_t need_bytes;  /* largest batch that failed for lack of space */
    char last_error[160]; /* reason of the last failure */
    bool probing;
    unsigned probe_seq;
    int64_t probe_at_us;
    bool probe_ok;

    struct fstore_metrics metrics;
};

cca_rc cca_store_file_errno_rc(int e)
{
    return (e == ENOSPC || e == EDQUOT) ? CCA_ERR_NO_SPACE : CCA_ERR_IO;
}

static int coll_dir(const struct fstore *s, enum cca_store_coll coll)
{
    return s->colldirs[coll];
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

/*
 * Read file @name of directory @dirfd, at most @max bytes. FIFOs, devices and
 * symbolic links are never opened (open(2) of a FIFO blocks until a writer
 * appears). On failure NULL, with why in @why and errno's rc in *ret_rc.
 */
char *cca_store_file_read(int dirfd, const char *name, size_t max, size_t *ret_len,
                          cca_rc *ret_rc, char *why, size_t why_size)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd = -1;

    *ret_rc = CCA_ERR_IO;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            *ret_rc = CCA_ERR_NOT_FOUND;
        (void)snprintf(why, why_size, "cannot stat: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        (void)snprintf(why, why_size, "not a regular file, ignoring");
        goto out;
    }
    /* O_NONBLOCK covers a swap between fstatat and open. */
    fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            *ret_rc = CCA_ERR_NOT_FOUND;
        (void)snprintf(why, why_size, "cannot open: %s", strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        (void)snprintf(why, why_size, "not a regular file, ignoring");
        goto out;
    }
    if ((size_t)st.st_size > max) {
        *ret_rc = CCA_ERR_INVALID;
        (void)snprintf(why, why_size, "larger than %zu bytes, ignoring", max);
        goto out;
    }
    buf = cca_xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* shorter than it was: use what is there */
        got += (size_t)n;
    }
    buf[got] = '\0';
    *ret_len = got;
    *ret_rc = CCA_OK;
out:
    if (fd >= 0)
        close(fd);
    return buf;
}

/*
 * The file bytes of @doc (a JSON object) with its lsn: cca_dialog_dump, and
 * "store_lsn" added as the last member by editing the text (the dump ends in
 * "\n}\n"), which costs no copy of the document. Returns a new buffer.
 */
static char *with_lsn(json_t *doc, uint64_t lsn, size_t *ret_len)
{
    size_t len = 0;
    char *bytes = cca_dialog_dump(doc, &len);
    char tail[64];
    size_t end = len;
    int n;

    while (end > 0 && bytes[end - 1] != '}')
        end--;
    if (end < 2) { /* not an object: cannot happen for a valid document */
        *ret_len = len;
        return bytes;
    }
    end--; /* at the '}' */
    while (end > 0 && (bytes[end - 1] == '\n' || bytes[end - 1] == ' '))
        end--;
    n = snprintf(tail, sizeof(tail),
                 "%s\n  \"" CCA_STORE_FILE_LSN_KEY "\": %" PRIu64 "\n}\n",
                 bytes[end - 1] == '{' ? "" : ",", lsn);
    bytes = cca_xrealloc(bytes, end + (size_t)n + 1);
    memcpy(bytes + end, tail, (size_t)n + 1);
    *ret_len = end + (size_t)n;
    return bytes;
}

/*
 * Write @doc with its lsn as @id's file in @dirfd: temporary file, rename.
 * Flushed (data, then the directory) only when @flush. Returns 0 or an errno.
 */
int cca_store_file_write(int dirfd, const char *id, json_t *doc, uint64_t lsn, bool flush,
                         bool swap, size_t *ret_len)
{
    char tmp[64];
    char fin[64];
    size_t len = 0;
    char *bytes = with_lsn(doc, lsn, &len);
    int e = 0;
    int fd;

    tmp_name(id, tmp);
    final_name(id, fin);
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        e = errno;
        goto out;
    }
    if (!write_all(fd, bytes, len) || (flush && fdatasync(fd) != 0))
        e = errno ? errno : EIO;
    if (close(fd) != 0 && e == 0)
        e = errno;
    if (e != 0)
        goto out;
    /*
     * Swap: the new file takes the name and the old one becomes the next
     * write's temporary file, emptied. Creating a new inode per write, then
     * freeing the old one, cost ext4 about a third of the server's CPU under
     * load (its allocator searches past recently freed inodes: perf, bench S5).
     * A document's first write (no file yet to swap with) renames and makes
     * the empty spare at once, so its later writes allocate nothing; plain
     * rename(2) where the file system cannot exchange (EINVAL).
     */
    if (swap && renameat2(dirfd, tmp, dirfd, fin, RENAME_EXCHANGE) == 0) {
        fd = openat(dirfd, tmp, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0)
            close(fd);
    } else if (renameat(dirfd, tmp, dirfd, fin) != 0) {
        e = errno;
    } else if (swap) {
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                    0640);
        if (fd >= 0)
            close(fd);
    }
    if (flush && e == 0 && fsync(dirfd) != 0)
        e = errno;
out:
    if (e != 0)
        (void)unlinkat(dirfd, tmp, 0);
    free(bytes);
    *ret_len = len;
    return e;
}

/* ---- dirty documents (caller holds dlock) ------------------------------------------ */

size_t cca_store_file_hash(enum cca_store_coll coll, const char *id)
{
    return cca_hash_str(id) ^ ((size_t)coll * 0x9E3779B97F4A7C15ULL);
}

static struct dirty *dirty_find(struct fstore *s, enum cca_store_coll coll,
                                const char *id)
{
    struct dirty *d = s->buckets[cca_store_file_hash(coll, id) % s->nbuckets];

    while (d != NULL && (d->coll != coll || strcmp(d->id, id) != 0))
        d = d->hnext;
    return d;
}

/* Append @d to the checkpoint queue (the newest end). */
static void queue_push(struct fstore *s, struct dirty *d)
{
    d->newer = NULL;
    d->older = s->newest;
    if (s->newest != NULL)
        s->newest->newer = d;
    else
        s->oldest = d;
    s->newest = d;
}

static void queue_unlink(struct fstore *s, struct dirty *d)
{
    if (d->older != NULL)
        d->older->newer = d->newer;
    else
        s->oldest = d->newer;
    if (d->newer != NULL)
        d->newer->older = d->older;
    else
        s->newest = d->older;
    d->older = d->newer = NULL;
}

static void dirty_remove(struct fstore *s, struct dirty *d)
{
    struct dirty **p = &s->buckets[cca_store_file_hash(d->coll, d->id) % s->nbuckets];

    while (*p != d)
        p = &(*p)->hnext;
    *p = d->hnext;
    queue_unlink(s, d);
    s->ndirty--;
    json_decref(d->doc);
    free(d);
}

/* A change acknowledged: @doc (a reference of ours, stolen; NULL removed) is now newest.
 */
static void dirty_set(struct fstore *s, enum cca_store_coll coll, const char *id,
                      json_t *doc, uint64_t lsn, uint64_t seq)
{
    struct dirty *d = dirty_find(s, coll, id);

    if (d == NULL) {
        size_t b = cca_store_file_hash(coll, id) % s->nbuckets;

        d = cca_xcalloc(1, sizeof(*d));
        d->coll = coll;
        memcpy(d->id, id, sizeof(d->id));
        d->first_seq = seq;
        d->since_us = d->dirty_us = cca_time_mono_us();
        d->hnext = s->buckets[b];
        s->buckets[b] = d;
        s->ndirty++;
        /* The checkpointer sleeps until the oldest is due: wake it only when idle. */
        if (s->oldest == NULL)
            pthread_cond_signal(&s->dcond);
        queue_push(s, d);
    }
    json_decref(d->doc);
    d->doc = doc;
    d->lsn = lsn;
}

/* ---- the writer: journal appends, group commit ---------------------------------------
 */

/* The journal line of @j (a new buffer in j->line_len bytes). */
static char *job_line(struct job *j)
{
    json_t *rec = json_object();
    json_t *patch = NULL;
    char *line;

    (void)json_object_set_new(rec, "lsn", json_integer((json_int_t)j->lsn));
    (void)json_object_set_new(rec, "coll", json_string(cca_store_coll_name(j->coll)));
    (void)json_object_set_new(rec, "id", json_string(j->id));
    if (j->kind == JOB_REMOVE) {
        (void)json_object_set_new(rec, "remove", json_true());
    } else {
        if (j->old_doc != NULL)
            patch = cca_jsonpatch_diff(j->old_doc, j->new_doc);
        if (patch != NULL)
            (void)json_object_set_new(rec, "patch", patch);
        else
            (void)json_object_set(rec, "doc", j->new_doc);
    }
    line = cca_dialog_dump_change(rec, &j->line_len);
    json_decref(rec);
    return line;
}

static void record_failure(struct fstore *s, const struct cca_error *err, size_t need)
{
    pthread_mutex_lock(&s->lock);
    s->last_ok = false;
    s->fail_seq++;
    if (err->code == CCA_ERR_NO_SPACE && need > s->need_bytes)
        s->need_bytes = need;
    (void)snprintf(s->last_error, sizeof(s->last_error), "%s", err->msg);
    pthread_mutex_unlock(&s->lock);
}

/* Write @batch's lines to the journal with one write and one flush; then answer. */
static void run_batch(struct fstore *s, struct job *batch)
{
    struct cca_error err = {0};
    char *buf = NULL;
    size_t len = 0;
    size_t cap = 0;
    unsigned n = 0;
    int64_t t0 = cca_time_mono_us();
    cca_rc rc = CCA_OK;

    for (struct job *j = batch; j != NULL; j = j->next) {
        char *line;

        j->lsn = s->next_lsn++;
        line = job_line(j);
        if (len + j->line_len > cap) {
            cap = (len + j->line_len) * 2;
            buf = cca_xrealloc(buf, cap);
        }
        memcpy(buf + len, line, j->line_len);
        len += j->line_len;
        free(line);
        n++;
    }
    if (!s->journal.open ||
        (!s->journal.broken && s->journal.len >= s->max_segment_bytes)) {
        rc = cca_store_journal_open(&s->journal, s->journal.seq + 1, &err);
        if (rc == CCA_OK) {
            pthread_mutex_lock(&s->dlock);
            s->open_seq = s->journal.seq;
            pthread_mutex_unlock(&s->dlock);
        }
    }
    if (rc == CCA_OK)
        rc = cca_store_journal_append(&s->journal, buf, len, &err);
    free(buf);
    cca_hist_observe_us(&s->metrics.flush_seconds, cca_time_mono_us() - t0);
    cca_hist_observe(&s->metrics.batch_writes, n);
    if (rc == CCA_OK) {
        atomic_fetch_add_explicit(&s->metrics.writes, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->metrics.journal_bytes, len, memory_order_relaxed);
        pthread_mutex_lock(&s->lock);
        s->last_ok = true;
        s->need_bytes = 0;
        pthread_mutex_unlock(&s->lock);
        /* Newest versions first, so that a reader never sees an older one. */
        pthread_mutex_lock(&s->dlock);
        for (struct job *j = batch; j != NULL; j = j->next) {
            dirty_set(s, j->coll, j->id, j->kind == JOB_COMMIT ? j->new_doc : NULL,
                      j->lsn, s->journal.seq);
            j->new_doc = NULL; /* moved */
        }
        pthread_mutex_unlock(&s->dlock);
    } else {
        atomic_fetch_add_explicit(&s->metrics.errors, n, memory_order_relaxed);
        record_failure(s, &err, len);
    }
    for (struct job *j = batch, *next; j != NULL; j = next) {
        next = j->next;
        j->done(j->ctx, rc, rc == CCA_OK ? j->line_len : 0, &err);
        json_decref(j->old_doc);
        json_decref(j->new_doc);
        free(j);
    }
}

static void *writer_main(void *arg)
{
    struct fstore *s = arg;

    (void)pthread_setname_np(pthread_self(), "cca-store-write"); /* top -H, perf, gdb */

    for (;;) {
        struct job *batch;

        pthread_mutex_lock(&s->lock);
        while (s->head == NULL && !s->stop)
            pthread_cond_wait(&s->cond, &s->lock);
        batch = s->head;
        s->head = s->tail = NULL;
        pthread_mutex_unlock(&s->lock);
        if (batch == NULL)
            break; /* stop requested and nothing left */
        run_batch(s, batch);
    }
    return NULL;
}

static void enqueue(struct fstore *s, struct job *j)
{
    pthread_mutex_lock(&s->lock);
    if (s->tail != NULL)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void fs_commit(void *impl, enum cca_store_coll coll, const char *id,
                      json_t *old_doc, json_t *new_doc, cca_store_done_fn done, void *ctx)
{
    struct job *j = cca_xcalloc(1, sizeof(*j));

    j->kind = JOB_COMMIT;
    j->coll = coll;
    (void)snprintf(j->id, sizeof(j->id), "%s", id);
    j->old_doc = json_incref(old_doc);
    j->new_doc = json_incref(new_doc);
    j->done = done;
    j->ctx = ctx;
    enqueue(impl, j);
}

static void fs_remove(void *impl, enum cca_store_coll coll, const char *id,
                      cca_store_done_fn done, void *ctx)
{
    struct job *j = cca_xcalloc(1, sizeof(*j));

    j->kind = JOB_REMOVE;
    j->coll = coll;
    (void)snprintf(j->id, sizeof(j->id), "%s", id);
    j->done = done;
    j->ctx = ctx;
    enqueue(impl, j);
}

/* ---- the checkpointer: files and journal retirement ----------------------------------
 */

/* One document to write, taken from the queue. */
struct pending {
    struct dirty *d;
    json_t *doc; /* a reference; NULL: remove the file */
    uint64_t lsn;
    int err;
    size_t len;
};

/* Write (or remove) one document's file, not flushed. Returns 0 or an errno. */
static int checkpoint_one(struct fstore *s, struct pending *p)
{
    int dirfd = coll_dir(s, p->d->coll);
    char fin[64];

    if (p->doc != NULL)
        return cca_store_file_write(dirfd, p->d->id, p->doc, p->lsn, false, true,
                                    &p->len);
    tmp_name(p->d->id, fin);
    (void)unlinkat(dirfd, fin, 0); /* its emptied temporary file, if any */
    final_name(p->d->id, fin);
    return unlinkat(dirfd, fin, 0) == 0 || errno == ENOENT ? 0 : errno;
}

/*
 * Delete the journal segments whose every change is in a file, after making
 * those files durable. Called without dlock.
 */
static void retire_segments(struct fstore *s)
{
    uint64_t below;
    uint64_t oldest;

    pthread_mutex_lock(&s->dlock);
    below = s->open_seq;
    for (struct dirty *d = s->oldest; d != NULL; d = d->newer) {
        if (d->first_seq < below)
            below = d->first_seq;
    }
    oldest = s->oldest_seq;
    pthread_mutex_unlock(&s->dlock);
    if (oldest >= below)
        return;
    if (s->fsync && syncfs(s->dirfd) != 0)
        return; /* try again after the next pass */
    for (uint64_t seq = oldest; seq < below; seq++) {
        char name[64];

        cca_store_journal_name(seq, name);
        (void)unlinkat(s->dirfd, name, 0);
    }
    if (s->fsync)
        (void)fsync(s->dirfd);
    pthread_mutex_lock(&s->dlock);
    s->oldest_seq = below;
    pthread_mutex_unlock(&s->dlock);
}

/*
 * Take up to CHECKPOINT_BATCH documents due at @now_us (all of them when
 * @all) into @out. Caller holds dlock. Returns how many.
 */
static size_t take_due(struct fstore *s, int64_t now_us, bool all, struct pending *out)
{
    int64_t delay = (int64_t)s->checkpoint_ms * 1000;
    size_t n = 0;

    for (struct dirty *d = s->oldest; d != NULL && n < CHECKPOINT_BATCH; d = d->newer) {
        if (!all && d->since_us + delay > now_us)
            break; /* the queue is in time order */
        if (d->writing || (all && d->final_try))
            continue;
        d->writing = true;
        d->final_try = all; /* stopping: one try each, the journal keeps the rest */
        out[n].len = 0;
        out[n].d = d;
        out[n].doc = json_incref(d->doc);
        out[n].lsn = d->lsn;
        n++;
    }
    return n;
}

/*
 * Write what @p holds and settle each document. Called without dlock.
 * Returns how many writes failed.
 */
static size_t settle(struct fstore *s, struct pending *p, size_t n)
{
    size_t failed = 0;
    int64_t now;

    for (size_t i = 0; i < n; i++) {
        p[i].err = checkpoint_one(s, &p[i]);
        failed += p[i].err != 0;
        atomic_fetch_add_explicit(p[i].err == 0 ? &s->metrics.checkpoints
                                                : &s->metrics.checkpoint_errors,
                                  1, memory_order_relaxed);
        if (p[i].err == 0)
            atomic_fetch_add_explicit(&s->metrics.checkpoint_bytes, p[i].len,
                                      memory_order_relaxed);
    }
    now = cca_time_mono_us();
    pthread_mutex_lock(&s->dlock);
    for (size_t i = 0; i < n; i++) {
        struct dirty *d = p[i].d;

        s->cp_failing = p[i].err != 0;
        if (p[i].err != 0)
            (void)snprintf(s->cp_error, sizeof(s->cp_error), "%s.json: %s", d->id,
                           strerror(p[i].err));
        d->writing = false;
        if (p[i].err == 0 && d->lsn == p[i].lsn) {
            dirty_remove(s, d); /* its file is current */
        } else {
            /* Changed meanwhile, or the write failed: again after a delay. */
            d->since_us = now;
            queue_unlink(s, d);
            queue_push(s, d);
        }
        json_decref(p[i].doc);
    }
    pthread_mutex_unlock(&s->dlock);
    return failed;
}

/* Wait on dcond (dlock held) until @us microseconds from now. */
static void wait_dirty(struct fstore *s, int64_t us)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += us / 1000000;
    ts.tv_nsec += (us % 1000000) * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    (void)pthread_cond_timedwait(&s->dcond, &s->dlock, &ts);
}

static void *checkpointer_main(void *arg)
{
    struct fstore *s = arg;
    struct pending *batch = cca_xcalloc(CHECKPOINT_BATCH, sizeof(*batch));

    (void)pthread_setname_np(pthread_self(), "cca-checkpoint"); /* top -H, perf, gdb */
    /*
     * Background work: below the threads that answer requests (Linux nice is
     * per thread), so that rewriting files never delays a turn's answer.
     */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), 10);

    pthread_mutex_lock(&s->dlock);
    for (;;) {
        int64_t now = cca_time_mono_us();
        bool all = s->cstop;
        size_t n = take_due(s, now, all, batch);

        if (n > 0) {
            size_t failed;

            pthread_mutex_unlock(&s->dlock);
            failed = settle(s, batch, n);
            retire_segments(s);
            pthread_mutex_lock(&s->dlock);
            if (failed == n && !s->cstop)
                wait_dirty(s, CHECKPOINT_RETRY_MS * 1000);
            continue;
        }
        if (s->cstop)
            break;
        if (s->oldest == NULL) {
            pthread_cond_wait(&s->dcond, &s->dlock);
        } else {
            int64_t due = s->oldest->since_us + (int64_t)s->checkpoint_ms * 1000;

            wait_dirty(s, due > now ? due - now : 1000);
        }
    }
    pthread_mutex_unlock(&s->dlock);
    free(batch);
    return NULL;
}

/* ---- reads ----------------------------------------------------------------------------
 */

static cca_rc fs_read(void *impl, enum cca_store_coll coll, const char *id,
                      json_t **ret_doc, size_t *ret_bytes, struct cca_error *reterr)
{
    struct fstore *s = impl;
    struct cca_store_file_parsed parsed;
    struct dirty *d;
    json_t *doc = NULL;
    char name[64];
    char why[200];
    size_t len = 0;
    char *bytes;
    cca_rc rc;

    pthread_mutex_lock(&s->dlock);
    d = dirty_find(s, coll, id);
    if (d != NULL) {
        doc = json_incref(d->doc);
        pthread_mutex_unlock(&s->dlock);
        if (doc == NULL)
            return cca_error_set(reterr, CCA_ERR_NOT_FOUND, "%s %s was removed",
                                 cca_store_coll_name(coll), id);
        if (ret_bytes != NULL)
            *ret_bytes = json_dumpb(doc, NULL, 0, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        *ret_doc = doc;
        return CCA_OK;
    }
    pthread_mutex_unlock(&s->dlock);
    final_name(id, name);
    bytes = cca_store_file_read(coll_dir(s, coll), name, s->max_file_bytes, &len, &rc,
                                why, sizeof(why));
    if (bytes == NULL)
        return cca_error_set(reterr, rc, "%s file %s: %s", cca_store_coll_name(coll),
                             name, why);
    rc = cca_store_file_parse(coll, bytes, len, id, &doc, &parsed, reterr);
    free(bytes);
    if (rc != CCA_OK)
        return rc;
    if (ret_bytes != NULL)
        *ret_bytes = len;
    *ret_doc = doc;
    return CCA_OK;
}

/* ---- load ---------------------------------------------------------------------------
 */

static cca_rc fs_load(void *impl, cca_store_load_fn load, cca_store_report_fn report,
                      void *ctx, struct cca_error *reterr)
{
    struct fstore *s = impl;
    struct cca_store_file_dirs dirs = {.dir = s->dir,
                                       .dirfd = s->dirfd,
                                       .colldirs = s->colldirs,
                                       .fsync = s->fsync,
                                       .max_file_bytes = s->max_file_bytes};
    uint64_t next_seq = 1;
    cca_rc rc;

    rc =
        cca_store_file_recover(&dirs, load, report, ctx, &s->next_lsn, &next_seq, reterr);
    if (rc == CCA_OK)
        rc = cca_store_journal_open(&s->journal, next_seq, reterr);
    if (rc != CCA_OK)
        return rc;
    pthread_mutex_lock(&s->dlock);
    s->open_seq = s->oldest_seq = s->journal.seq;
    pthread_mutex_unlock(&s->dlock);
    s->loaded = true;
    return CCA_OK;
}

/* ---- health
 * ------------------------------------------------------------------------------ */

/*
 * The present state of the file system, without touching the writer's data:
 * read-only mount, free space and inodes, write permission. Fills @ret's
 * free_bytes and, on a problem, writable = false and the reason.
 */
static void check_fs(struct fstore *s, uint64_t need_bytes, struct cca_store_health *ret)
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
    } else if (ret->free_bytes < CCA_STORE_FILE_RESERVE_BYTES + need_bytes) {
        ret->writable = false;
        (void)snprintf(ret->last_error, sizeof(ret->last_error),
                       "dialog storage is full: %llu bytes free, %llu needed",
                       (unsigned long long)ret->free_bytes,
                       (unsigned long long)(CCA_STORE_FILE_RESERVE_BYTES + need_bytes));
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
 * Create, fill, flush and remove a small file next to the dialogs. Its name is
 * a temporary-file name, so a leftover is removed by the next load.
 */
static bool probe_write(struct fstore *s, char *why, size_t why_size)
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

/*
 * Always one fstatvfs(2) and one faccessat(2). Only while the last batch has
 * failed and those pass: a probe write, at most once per
 * CCA_STORE_FILE_PROBE_INTERVAL_MS across callers and at once after a new
 * failure; between probes the cached outcome answers. A successful probe
 * clears the failure. A concurrent caller never waits for another's probe.
 */
static void fs_health(void *impl, struct cca_store_health *ret)
{
    struct fstore *s = impl;
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
    (void)snprintf(ret->location, sizeof(ret->location), "%s", s->dir);
    pthread_mutex_lock(&s->lock);
    failed = !s->last_ok;
    need = s->need_bytes;
    seq = s->fail_seq;
    memcpy(last_error, s->last_error, sizeof(last_error));
    pthread_mutex_unlock(&s->lock);
    check_fs(s, need, ret);
    if (ret->writable) {
        /* The journal works but the files cannot be written: it only grows. */
        pthread_mutex_lock(&s->dlock);
        if (s->cp_failing) {
            ret->writable = false;
            (void)snprintf(ret->last_error, sizeof(ret->last_error),
                           "dialog storage cannot write dialog files: %.110s",
                           s->cp_error);
        }
        pthread_mutex_unlock(&s->dlock);
    }
    if (!failed || !ret->writable)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->probing || (s->probe_seq == seq && s->probe_at_us != 0 &&
                       now - s->probe_at_us < CCA_STORE_FILE_PROBE_INTERVAL_MS * 1000)) {
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

/* ---- metrics
 * -------------------------------------------------------------------------------- */

static void fs_metrics(void *impl, FILE *out)
{
    struct fstore *s = impl;
    struct fstore_metrics *m = &s->metrics;
    size_t dirty;
    double lag = 0;

    pthread_mutex_lock(&s->dlock);
    dirty = s->ndirty;
    for (struct dirty *d = s->oldest; d != NULL; d = d->newer) {
        double age = (double)(cca_time_mono_us() - d->dirty_us) / 1e6;

        if (age > lag)
            lag = age; /* requeued documents keep their first time */
    }
    pthread_mutex_unlock(&s->dlock);
    cca_metrics_hist_family(out, "cca_store_flush_duration_seconds",
                            "Time to append one batch of changes to the journal and "
                            "flush it",
                            &m->flush_seconds);
    cca_metrics_hist_family(out, "cca_store_batch_size",
                            "Changes per journal flush (group commit)", &m->batch_writes);
    cca_metrics_results(out, "cca_store_writes_total",
                        "Changes committed (ok) or failed (error)",
                        (double)atomic_load(&m->writes), (double)atomic_load(&m->errors));
    cca_metrics_single(out, "cca_store_journal_bytes_total", "counter",
                       "Bytes appended and flushed to the journal: the bytes on the "
                       "critical path of the changes",
                       (double)atomic_load(&m->journal_bytes));
    cca_metrics_results(out, "cca_store_checkpoints_total",
                        "Document files rewritten from the journal (ok) or that failed "
                        "and will be retried (error)",
                        (double)atomic_load(&m->checkpoints),
                        (double)atomic_load(&m->checkpoint_errors));
    cca_metrics_single(out, "cca_store_checkpoint_bytes_total", "counter",
                       "Bytes of document files rewritten by checkpoints (not flushed "
                       "on a change's critical path)",
                       (double)atomic_load(&m->checkpoint_bytes));
    cca_metrics_single(out, "cca_store_dirty_documents", "gauge",
                       "Documents changed in the journal and not yet in their files",
                       (double)dirty);
    cca_metrics_single(out, "cca_store_checkpoint_lag_seconds", "gauge",
                       "Age of the oldest change not yet in its file (0: none)", lag);
}

/* ---- life cycle
 * ---------------------------------------------------------------------------- */

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
            return cca_error_set(err, cca_store_file_errno_rc(errno),
                                 "cannot create %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return cca_error_set(err, cca_store_file_errno_rc(errno), "cannot create %s: %s",
                             path, strerror(errno));
    return CCA_OK;
}

/*
 * Own the directory: an exclusive flock(2) on its lock file, held until the
 * store is freed (the kernel drops it when the process dies, so a SIGKILL
 * leaves no stale lock). The holder's PID is written in the file for the
 * message of the next one that tries.
 */
static cca_rc lock_dir(struct fstore *s, struct cca_error *reterr)
{
    char pid[32];
    bool written;
    int n, fd;

    /* Held read-only: a file open for writing would stop a remount read-only. */
    s->lockfd = openat(s->dirfd, CCA_STORE_FILE_LOCK,
                       O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0640);
    if (s->lockfd < 0)
        return cca_error_set(reterr, CCA_ERR_IO, "cannot open %s/%s: %s", s->dir,
                             CCA_STORE_FILE_LOCK, strerror(errno));
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
                             CCA_STORE_FILE_LOCK, strerror(e));
    }
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    fd = openat(s->dirfd, CCA_STORE_FILE_LOCK,
                O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    written = fd >= 0 && write(fd, pid, (size_t)n) == n;
    if (fd >= 0 && close(fd) != 0)
        written = false;
    if (!written) /* the flock stays: it belongs to lockfd's open file description */
        return cca_error_set(reterr, CCA_ERR_IO, "cannot write %s/%s: %s", s->dir,
                             CCA_STORE_FILE_LOCK, strerror(errno));
    return CCA_OK;
}

/* The directories of the collections other than dialogs: <dir>/<name>/. */
static cca_rc open_collections(struct fstore *s, struct cca_error *reterr)
{
    s->colldirs[CCA_STORE_DIALOGS] = s->dirfd;
    for (int c = 0; c < CCA_STORE_COLL__COUNT; c++) {
        const char *name = cca_store_coll_name(c);

        if (c == CCA_STORE_DIALOGS)
            continue;
        if (mkdirat(s->dirfd, name, 0750) != 0 && errno != EEXIST)
            return cca_error_set(reterr, cca_store_file_errno_rc(errno),
                                 "cannot create %s/%s: %s", s->dir, name,
                                 strerror(errno));
        s->colldirs[c] =
            openat(s->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (s->colldirs[c] < 0)
            return cca_error_set(reterr, CCA_ERR_IO, "cannot open %s/%s: %s", s->dir,
                                 name, strerror(errno));
    }
    return CCA_OK;
}

static void fs_free(void *impl)
{
    struct fstore *s = impl;

    if (s == NULL)
        return;
    if (s->writer_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer, NULL);
    }
    if (s->checkpointer_started) {
        /* Every acknowledged change into its file, then no journal is left. */
        pthread_mutex_lock(&s->dlock);
        s->cstop = true;
        pthread_cond_signal(&s->dcond);
        pthread_mutex_unlock(&s->dlock);
        pthread_join(s->checkpointer, NULL);
        if (s->loaded && s->ndirty == 0) {
            pthread_mutex_lock(&s->dlock);
            s->open_seq = s->journal.seq + 1; /* the open segment may go too */
            pthread_mutex_unlock(&s->dlock);
            cca_store_journal_close(&s->journal);
            retire_segments(s);
        }
    }
    cca_store_journal_close(&s->journal);
    while (s->oldest != NULL)
        dirty_remove(s, s->oldest);
    for (int c = 0; c < CCA_STORE_COLL__COUNT; c++) {
        if (c != CCA_STORE_DIALOGS && s->colldirs[c] >= 0)
            close(s->colldirs[c]);
    }
    if (s->dirfd >= 0)
        close(s->dirfd);
    if (s->lockfd >= 0)
        close(s->lockfd); /* releases the flock */
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->dlock);
    pthread_cond_destroy(&s->dcond);
    free(s->buckets);
    free(s->dir);
    free(s);
}

static const struct cca_store_ops file_ops = {
    .name = "file",
    .load = fs_load,
    .read = fs_read,
    .commit = fs_commit,
    .remove = fs_remove,
    .health = fs_health,
    .metrics = fs_metrics,
    .free = fs_free,
};

cca_rc cca_store_file_new(const struct cca_store_file_params *params,
                          struct cca_store **ret_store, struct cca_error *reterr)
{
    struct fstore *s = NULL;
    cca_rc rc;

    if (params->checkpoint_ms > 1000 || params->max_segment_bytes == 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "checkpoint_ms must be 0..1000 and segments non-empty");
    rc = mkdir_p(params->dir, reterr);
    if (rc != CCA_OK)
        return rc;
    s = cca_xcalloc(1, sizeof(*s));
    cca_hist_init(&s->metrics.flush_seconds, cca_hist_seconds_bounds, cca_hist_seconds_n);
    cca_hist_init(&s->metrics.batch_writes, cca_hist_batch_bounds, cca_hist_batch_n);
    s->dirfd = s->lockfd = -1;
    for (int c = 0; c < CCA_STORE_COLL__COUNT; c++)
        s->colldirs[c] = -1;
    s->dir = cca_xstrdup(params->dir);
    s->fsync = params->fsync;
    s->max_file_bytes = params->max_file_bytes;
    s->checkpoint_ms = params->checkpoint_ms;
    s->max_segment_bytes = params->max_segment_bytes;
    s->last_ok = true;
    s->nbuckets = 4096;
    s->buckets = cca_xcalloc(s->nbuckets, sizeof(*s->buckets));
    s->journal.fsync = params->fsync;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_mutex_init(&s->dlock, NULL);
    pthread_cond_init(&s->dcond, NULL);
    s->dirfd = open(params->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "cannot open %s: %s", params->dir,
                           strerror(errno));
        goto out;
    }
    s->journal.dirfd = s->dirfd;
    if (faccessat(s->dirfd, ".", W_OK, AT_EACCESS) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "%s is not writable: %s", params->dir,
                           strerror(errno));
        goto out;
    }
    rc = lock_dir(s, reterr);
    if (rc == CCA_OK)
        rc = open_collections(s, reterr);
    if (rc != CCA_OK)
        goto out;
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "cannot start the writer thread");
        goto out;
    }
    s->writer_started = true;
    if (pthread_create(&s->checkpointer, NULL, checkpointer_main, s) != 0) {
        rc =
            cca_error_set(reterr, CCA_ERR_INTERNAL, "cannot start the checkpoint thread");
        goto out;
    }
    s->checkpointer_started = true;
    *ret_store = cca_store_new(&file_ops, s);
    s = NULL;
out:
    fs_free(s);
    return rc;
}
