/* SPDX-License-Identifier: MIT */
/*
 * `call-center-agents import --from-files DIR` (docs/internals/store_pg.md,
 * "Import"): every document of a file store copied into PostgreSQL through the
 * two backends' own interfaces. Idempotent and resumable: each document is
 * upserted whole (no old version given, so its message rows are made equal to
 * the document), so a run cut short is finished by running it again, and a
 * second run changes nothing but updated_at.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/store.h"
#include "cca/store_file.h"
#include "cca/store_pg.h"

/* Documents in flight at once: enough for group commit, bounded memory. */
#define IMPORT_IN_FLIGHT 256

struct import {
    struct cca_store *dst;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned in_flight;
    size_t copied[CCA_STORE_COLL__COUNT];
    size_t failed;
    size_t skipped;
    char first_error[160];
};

static void copied(void *ctx, cca_rc rc, size_t bytes, const struct cca_error *err)
{
    struct import *im = ctx;

    (void)bytes;
    pthread_mutex_lock(&im->lock);
    if (rc != CCA_OK) {
        if (im->failed++ == 0)
            (void)snprintf(im->first_error, sizeof(im->first_error), "%s", err->msg);
    }
    im->in_flight--;
    pthread_cond_signal(&im->cond);
    pthread_mutex_unlock(&im->lock);
}

/* One document the file store loaded: upserted whole (stolen @doc). */
static void copy_one(void *ctx, enum cca_store_coll coll, const char *id, json_t *doc,
                     size_t bytes)
{
    struct import *im = ctx;

    (void)bytes;
    pthread_mutex_lock(&im->lock);
    while (im->in_flight >= IMPORT_IN_FLIGHT)
        pthread_cond_wait(&im->cond, &im->lock);
    im->in_flight++;
    im->copied[coll]++;
    pthread_mutex_unlock(&im->lock);
    cca_store_commit(im->dst, coll, id, NULL, doc, copied, im);
    json_decref(doc); /* the store took its own reference */
}

static void skipped(void *ctx, const char *what, const char *why)
{
    struct import *im = ctx;

    im->skipped++;
    fprintf(stderr, "import: skipped '%.100s': %s\n", what, why);
}

int cca_store_pg_import_cli(const struct cca_store_pg_params *params, const char *dir)
{
    struct cca_store_file_params fp = {.dir = dir,
                                       .fsync = true,
                                       .max_file_bytes = (size_t)64 << 20,
                                       .checkpoint_ms = 800,
                                       .max_segment_bytes = (size_t)16 << 20};
    struct import im = {.lock = PTHREAD_MUTEX_INITIALIZER,
                        .cond = PTHREAD_COND_INITIALIZER};
    struct cca_store *src = NULL;
    struct cca_error err = {0};
    size_t total = 0;
    int ret = EXIT_FAILURE;

    /* The file store takes the directory's lock: refused while a server runs on it. */
    if (cca_store_pg_new(params, &im.dst, &err) != CCA_OK) {
        fprintf(stderr, "import: cannot open the database: %s\n", err.msg);
        goto out;
    }
    if (cca_store_file_new(&fp, &src, &err) != CCA_OK) {
        fprintf(stderr, "import: cannot open %s: %s\n", dir, err.msg);
        goto out;
    }
    if (cca_store_load(src, copy_one, skipped, &im, &err) != CCA_OK) {
        fprintf(stderr, "import: cannot read %s: %s\n", dir, err.msg);
        goto out;
    }
    pthread_mutex_lock(&im.lock);
    while (im.in_flight > 0)
        pthread_cond_wait(&im.cond, &im.lock);
    pthread_mutex_unlock(&im.lock);
    for (int c = 0; c < CCA_STORE_COLL__COUNT; c++) {
        printf("%s%s=%zu", c ? " " : "import: ", cca_store_coll_name(c), im.copied[c]);
        total += im.copied[c];
    }
    printf(" failed=%zu skipped=%zu\n", im.failed, im.skipped);
    if (im.failed > 0) {
        fprintf(stderr, "import: %zu of %zu documents failed (first: %s); run it again\n",
                im.failed, total, im.first_error);
        goto out;
    }
    ret = EXIT_SUCCESS;
out:
    cca_store_free(src);
    cca_store_free(im.dst); /* waits for every queued change */
    return ret;
}
