/* SPDX-License-Identifier: MIT */
/* An in-memory store backend for tests (tests/unit/store_memory.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cca/mem.h"
#include "store_memory.h"

/* One id: its committed version and what the backend saw of it. */
struct record {
    char id[37];
    json_t *doc; /* NULL: absent (never committed, or removed) */
    size_t bytes;
    unsigned in_flight;
    size_t reads;
    json_t *versions; /* every version committed, oldest first */
};

/* A queued change: a commit (@new_doc set) or a removal. */
struct change {
    struct change *next;
    int64_t due_ms; /* cca_time_mono_ms */
    struct record *rec;
    json_t *new_doc;
    bool remove;
    cca_rc fail; /* CCA_OK, or the error to answer with */
    cca_store_done_fn done;
    void *ctx;
};

struct store_memory {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* the queue, the hold or @stop changed (CLOCK_MONOTONIC) */
    pthread_t thread;
    bool stop;
    bool hold;
    struct record **recs;
    size_t nrecs;
    struct change *head;
    struct change *tail;
    unsigned delay_ms;
    unsigned fail_left;
    cca_rc fail_rc;
    size_t reads;
    size_t changes;
    size_t failed;
    unsigned max_in_flight;
    size_t bad_calls;
};

static void lock(struct store_memory *m)
{
    pthread_mutex_lock(&m->lock);
}

static void unlock(struct store_memory *m)
{
    pthread_mutex_unlock(&m->lock);
}

/* The record of @id, or NULL. Caller holds the lock. */
static struct record *find(struct store_memory *m, const char *id)
{
    for (size_t i = 0; i < m->nrecs; i++) {
        if (strcmp(m->recs[i]->id, id) == 0)
            return m->recs[i];
    }
    return NULL;
}

/* The record of @id, made when missing. Caller holds the lock. */
static struct record *find_or_add(struct store_memory *m, const char *id)
{
    struct record *r = find(m, id);

    if (r != NULL)
        return r;
    r = cca_xcalloc(1, sizeof(*r));
    (void)snprintf(r->id, sizeof(r->id), "%s", id);
    r->versions = json_array();
    m->recs = cca_xrealloc(m->recs, (m->nrecs + 1) * sizeof(*m->recs));
    m->recs[m->nrecs++] = r;
    return r;
}

/* The size @doc takes "on disk": its JSON text with two-space indents. */
static size_t stored_size(json_t *doc)
{
    char *text = json_dumps(doc, JSON_INDENT(2));
    size_t n = text != NULL ? strlen(text) + 1 : 0;

    free(text);
    return n;
}

/* Apply @c (caller holds the lock); returns what the change added to the store. */
static size_t apply(struct record *r, struct change *c)
{
    size_t before = r->doc != NULL ? r->bytes : 0;

    if (c->remove) {
        json_decref(r->doc);
        r->doc = NULL;
        r->bytes = 0;
        return 0;
    }
    json_decref(r->doc);
    r->doc = json_incref(c->new_doc);
    r->bytes = stored_size(c->new_doc);
    (void)json_array_append(r->versions, c->new_doc);
    return r->bytes > before ? r->bytes - before : 0;
}

static struct timespec mono_abs(int64_t ms)
{
    return (struct timespec){.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
}

/*
 * The completion thread: changes complete in queue order, each once its
 * delay passed (and no hold is on). A stopping backend completes what is
 * queued without waiting (cca_store_free's contract).
 */
static void *worker(void *arg)
{
    struct store_memory *m = arg;

    lock(m);
    for (;;) {
        struct change *c = m->head;
        struct cca_error err = {0};
        size_t bytes = 0;
        cca_rc rc;

        if (c == NULL || (m->hold && !m->stop)) {
            if (m->stop)
                break;
            pthread_cond_wait(&m->cond, &m->lock);
            continue;
        }
        if (!m->stop && c->due_ms > cca_time_mono_ms()) {
            struct timespec ts = mono_abs(c->due_ms);

            (void)pthread_cond_timedwait(&m->cond, &m->lock, &ts);
            continue;
        }
        m->head = c->next;
        if (m->head == NULL)
            m->tail = NULL;
        rc = c->fail;
        if (rc == CCA_OK)
            bytes = apply(c->rec, c);
        else
            (void)cca_error_set(&err, rc, "dialog storage: injected failure (%s)",
                                cca_strerror(rc));
        /* Before @done: the engine may queue the next change from inside it. */
        c->rec->in_flight--;
        unlock(m);
        c->done(c->ctx, rc, bytes, &err);
        json_decref(c->new_doc);
        free(c);
        lock(m);
    }
    unlock(m);
    return NULL;
}

static void enqueue(struct store_memory *m, const char *id, json_t *old_doc,
                    json_t *new_doc, bool remove, cca_store_done_fn done, void *ctx)
{
    struct change *c = cca_xcalloc(1, sizeof(*c));
    struct record *r;

    c->new_doc = json_incref(new_doc);
    c->remove = remove;
    c->done = done;
    c->ctx = ctx;
    lock(m);
    r = find_or_add(m, id);
    c->rec = r;
    if (r->in_flight > 0)
        m->bad_calls++;
    if (!remove && old_doc != NULL && old_doc != r->doc &&
        (r->doc == NULL || !json_equal(old_doc, r->doc)))
        m->bad_calls++;
    if (!remove && new_doc == NULL) {
        m->bad_calls++;
        c->fail = CCA_ERR_IO; /* nothing to store: refuse rather than crash */
    } else if (m->fail_left > 0) {
        m->fail_left--;
        c->fail = m->fail_rc;
    }
    if (c->fail != CCA_OK)
        m->failed++;
    if (++r->in_flight > m->max_in_flight)
        m->max_in_flight = r->in_flight;
    m->changes++;
    c->due_ms = cca_time_mono_ms() + m->delay_ms;
    if (m->tail != NULL)
        m->tail->next = c;
    else
        m->head = c;
    m->tail = c;
    pthread_cond_signal(&m->cond);
    unlock(m);
}

/* ---- struct cca_store_ops ------------------------------------------------ */

static cca_rc mem_load(void *impl, cca_store_load_fn load, cca_store_report_fn report,
                       void *ctx, struct cca_error *reterr)
{
    struct store_memory *m = impl;
    size_t n;
    struct record **found;

    (void)report;
    (void)reterr;
    /* Hand the documents over outside the lock: @load may call back into us. */
    lock(m);
    found = cca_xcalloc(m->nrecs + 1, sizeof(*found));
    n = 0;
    for (size_t i = 0; i < m->nrecs; i++) {
        if (m->recs[i]->doc != NULL)
            found[n++] = m->recs[i];
    }
    unlock(m);
    for (size_t i = 0; i < n; i++)
        load(ctx, CCA_STORE_DIALOGS, found[i]->id, json_incref(found[i]->doc),
             found[i]->bytes);
    free(found);
    return CCA_OK;
}

static cca_rc mem_read(void *impl, enum cca_store_coll coll, const char *id,
                       json_t **ret_doc, size_t *ret_bytes, struct cca_error *reterr)
{
    struct store_memory *m = impl;
    struct record *r;
    cca_rc rc = CCA_OK;

    lock(m);
    m->reads++;
    r = coll == CCA_STORE_DIALOGS ? find(m, id) : NULL;
    if (r != NULL)
        r->reads++;
    if (r == NULL || r->doc == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_NOT_FOUND, "dialog %s not found", id);
    } else {
        *ret_doc = json_incref(r->doc);
        if (ret_bytes != NULL)
            *ret_bytes = r->bytes;
    }
    unlock(m);
    return rc;
}

static void mem_commit(void *impl, enum cca_store_coll coll, const char *id,
                       json_t *old_doc, json_t *new_doc, cca_store_done_fn done,
                       void *ctx)
{
    (void)coll;
    enqueue(impl, id, old_doc, new_doc, false, done, ctx);
}

static void mem_remove(void *impl, enum cca_store_coll coll, const char *id,
                       cca_store_done_fn done, void *ctx)
{
    (void)coll;
    enqueue(impl, id, NULL, NULL, true, done, ctx);
}

static void mem_health(void *impl, struct cca_store_health *ret)
{
    struct store_memory *m = impl;

    memset(ret, 0, sizeof(*ret));
    lock(m);
    ret->writable = m->fail_left == 0;
    (void)snprintf(ret->location, sizeof(ret->location), "memory");
    if (!ret->writable)
        (void)snprintf(ret->last_error, sizeof(ret->last_error),
                       "dialog storage: the next %u changes fail (%s)", m->fail_left,
                       cca_strerror(m->fail_rc));
    unlock(m);
}

static void mem_metrics(void *impl, FILE *out)
{
    struct store_memory *m = impl;

    lock(m);
    (void)fprintf(out,
                  "# TYPE cca_store_memory_changes_total counter\n"
                  "cca_store_memory_changes_total %zu\n"
                  "# TYPE cca_store_memory_failed_total counter\n"
                  "cca_store_memory_failed_total %zu\n"
                  "# TYPE cca_store_memory_reads_total counter\n"
                  "cca_store_memory_reads_total %zu\n",
                  m->changes, m->failed, m->reads);
    unlock(m);
}

static void mem_free(void *impl)
{
    struct store_memory *m = impl;

    lock(m);
    m->stop = true;
    pthread_cond_signal(&m->cond);
    unlock(m);
    pthread_join(m->thread, NULL);
    for (size_t i = 0; i < m->nrecs; i++) {
        json_decref(m->recs[i]->doc);
        json_decref(m->recs[i]->versions);
        free(m->recs[i]);
    }
    free(m->recs);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}

static const struct cca_store_ops memory_ops = {
    .name = "memory",
    .load = mem_load,
    .read = mem_read,
    .commit = mem_commit,
    .remove = mem_remove,
    .health = mem_health,
    .metrics = mem_metrics,
    .free = mem_free,
};

/* ---- test handle --------------------------------------------------------- */

void store_memory_new(struct cca_store **ret_store, struct store_memory **ret_mem)
{
    struct store_memory *m = cca_xcalloc(1, sizeof(*m));
    pthread_condattr_t attr;

    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&m->thread, NULL, worker, m) != 0)
        abort();
    *ret_mem = m;
    *ret_store = cca_store_new(&memory_ops, m);
}

void store_memory_preset(struct store_memory *m, const char *id, json_t *doc)
{
    struct record *r;

    lock(m);
    r = find_or_add(m, id);
    json_decref(r->doc);
    r->doc = json_incref(doc);
    r->bytes = stored_size(doc);
    unlock(m);
}

void store_memory_set_delay(struct store_memory *m, unsigned ms)
{
    lock(m);
    m->delay_ms = ms;
    unlock(m);
}

void store_memory_fail_next(struct store_memory *m, unsigned n, cca_rc rc)
{
    lock(m);
    m->fail_left = n;
    m->fail_rc = rc;
    unlock(m);
}

void store_memory_hold(struct store_memory *m, bool on)
{
    lock(m);
    m->hold = on;
    pthread_cond_signal(&m->cond);
    unlock(m);
}

size_t store_memory_reads(struct store_memory *m)
{
    size_t n;

    lock(m);
    n = m->reads;
    unlock(m);
    return n;
}

size_t store_memory_reads_of(struct store_memory *m, const char *id)
{
    struct record *r;
    size_t n;

    lock(m);
    r = find(m, id);
    n = r != NULL ? r->reads : 0;
    unlock(m);
    return n;
}

size_t store_memory_changes(struct store_memory *m)
{
    size_t n;

    lock(m);
    n = m->changes;
    unlock(m);
    return n;
}

unsigned store_memory_in_flight(struct store_memory *m, const char *id)
{
    struct record *r;
    unsigned n;

    lock(m);
    r = find(m, id);
    n = r != NULL ? r->in_flight : 0;
    unlock(m);
    return n;
}

unsigned store_memory_max_in_flight(struct store_memory *m)
{
    unsigned n;

    lock(m);
    n = m->max_in_flight;
    unlock(m);
    return n;
}

size_t store_memory_bad_calls(struct store_memory *m)
{
    size_t n;

    lock(m);
    n = m->bad_calls;
    unlock(m);
    return n;
}

size_t store_memory_versions(struct store_memory *m, const char *id)
{
    struct record *r;
    size_t n;

    lock(m);
    r = find(m, id);
    n = r != NULL ? json_array_size(r->versions) : 0;
    unlock(m);
    return n;
}

json_t *store_memory_version(struct store_memory *m, const char *id, size_t i)
{
    struct record *r;
    json_t *doc = NULL;

    lock(m);
    r = find(m, id);
    if (r != NULL)
        doc = json_incref(json_array_get(r->versions, i));
    unlock(m);
    return doc;
}

bool store_memory_has(struct store_memory *m, const char *id)
{
    struct record *r;
    bool has;

    lock(m);
    r = find(m, id);
    has = r != NULL && r->doc != NULL;
    unlock(m);
    return has;
}
