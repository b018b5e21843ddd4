/* SPDX-License-Identifier: MIT */
/*
 * The completions of store changes, for the store tests (test_store.c,
 * test_store_pg.c): on_done is the cca_store_done_fn they pass, @w counts and
 * keeps the last outcome, waiter_wait blocks until enough completions came.
 * Include after cmocka (cca_test.h).
 */
#ifndef CCA_STORE_WAITER_H
#define CCA_STORE_WAITER_H

#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "cca/common.h"

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int failed;
    cca_rc last_rc;
    size_t last_bytes;  /* of the last completion */
    char last_msg[160]; /* of the last failure */
};

static struct waiter w = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, CCA_OK, 0, ""};

static void on_done(void *ctx, cca_rc rc, size_t bytes, const struct cca_error *err)
{
    (void)ctx;
    pthread_mutex_lock(&w.lock);
    w.done++;
    if (rc != CCA_OK) {
        w.failed++;
        (void)snprintf(w.last_msg, sizeof(w.last_msg), "%s", err->msg);
    }
    w.last_rc = rc;
    w.last_bytes = bytes;
    pthread_cond_broadcast(&w.cond);
    pthread_mutex_unlock(&w.lock);
}

/* Wait until @n completions came or @timeout_s passed; how many came. */
static int waiter_wait(int n, int timeout_s)
{
    struct timespec ts;
    int done;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_s;
    pthread_mutex_lock(&w.lock);
    while (w.done < n) {
        if (pthread_cond_timedwait(&w.cond, &w.lock, &ts) != 0)
            break;
    }
    done = w.done;
    pthread_mutex_unlock(&w.lock);
    return done;
}

static void waiter_reset(void)
{
    pthread_mutex_lock(&w.lock);
    w.done = w.failed = 0;
    w.last_rc = CCA_OK;
    w.last_bytes = 0;
    w.last_msg[0] = '\0';
    pthread_mutex_unlock(&w.lock);
}

#endif
