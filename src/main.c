/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cca/agent.h"
#include "cca/config.h"
#include "cca/demo.h"
#include "cca/engine.h"
#include "cca/http.h"
#include "cca/llm.h"
#include "cca/telegram.h"
#include "cca/log.h"
#include "cca/mem.h"
#include "cca/router.h"
#include "cca/standby.h"
#include "cca/store.h"
#include "cca/store_file.h"
#include "cca/store_pg.h"
#include "cca/text.h"

#ifndef CCA_VERSION
#define CCA_VERSION "0.1.0"
#endif

static void warn_config(void *ctx, const char *msg)
{
    (void)ctx;
    cca_log(LOG_WARNING, "config: %s", msg);
}

static void skip_file(void *ctx, const char *name, const char *why)
{
    (void)ctx;
    cca_log(LOG_WARNING, "store: file='%.100s' reason='%s'", name, why);
}

static cca_rc make_router(const struct cca_config *cfg, struct cca_router **ret,
                          struct cca_error *err)
{
    struct cca_router_params rp = {
        .min_score = cfg->router_min_score,
        .min_margin = cfg->router_min_margin,
        .default_agent = CCA_AGENT_TECH_SUPPORT,
    };

    (void)cca_agent_parse(cfg->router_default_agent, &rp.default_agent);
    return cca_router_new(cfg->lexicon_path, &rp, ret, err);
}

static struct cca_store_pg_params pg_params(const struct cca_config *cfg)
{
    struct cca_store_pg_params pp = {
        .conninfo = cfg->database_url,
        .pool_size = cfg->database_pool_size,
        .statement_timeout_ms = cfg->database_statement_timeout_ms,
        /* import: a server that just crashed may hold its session a moment longer */
        .lock_wait_ms = 10000,
    };

    return pp;
}

/* The store backend STORE names: the file store (default) or PostgreSQL. */
static cca_rc open_store(const struct cca_config *cfg, struct cca_store **ret,
                         struct cca_error *err)
{
    struct cca_store_file_params sp = {
        .dir = cfg->storage_path,
        .fsync = cfg->storage_fsync,
        .max_file_bytes = (size_t)64 << 20,
        .checkpoint_ms = cfg->storage_checkpoint_ms,
        .max_segment_bytes = (size_t)16 << 20,
    };
    struct cca_store_pg_params pp = pg_params(cfg);
    char where[200];

    if (strcmp(cfg->store, "postgres") != 0)
        return cca_store_file_new(&sp, ret, err);
    cca_store_pg_describe(cfg->database_url, where, sizeof(where)); /* no password */
    cca_log(LOG_INFO, "store backend=postgres %s pool=%u", where,
            cfg->database_pool_size);
    pp.lock_wait_ms = 0; /* held: become the standby at once (stand_by) */
    return cca_store_pg_new(&pp, ret, err);
}

/*
 * Another instance is active on the database (STORE=postgres, its instance
 * lock): serve as its standby (standby.h) until the lock is ours, then return
 * the store with the standby still answering, to be promoted once the rest is
 * loaded. Stops on an error that waiting cannot cure: a schema newer than this
 * binary (a newer instance migrated it) or bad settings. A stop signal ends
 * the process meanwhile (watch_stop_signals: not serving yet).
 */
static cca_rc stand_by(const struct cca_config *cfg, struct cca_store **ret,
                       struct cca_standby **ret_sb, struct cca_error *err)
{
    struct cca_store_pg_params pp = pg_params(cfg);
    int64_t since = cca_time_mono_ms();
    cca_rc last = CCA_ERR_UNAVAILABLE;
    cca_rc rc;

    rc = cca_standby_start(cfg, ret_sb, err);
    if (rc != CCA_OK)
        return rc;
    cca_log(LOG_NOTICE, "event=listening host=%s port=%u role=standby: %s", cfg->host,
            cca_standby_port(*ret_sb), err->msg);
    pp.lock_wait_ms = 1000; /* tried every 200 ms within */
    for (;;) {
        struct cca_error e = {0};
        struct timespec pause = {1, 0};

        rc = cca_store_pg_new(&pp, ret, &e);
        if (rc == CCA_OK)
            break;
        if (rc != CCA_ERR_UNAVAILABLE && rc != CCA_ERR_IO) {
            *err = e;
            return rc;
        }
        if (rc != last)
            cca_log(rc == CCA_ERR_IO ? LOG_WARNING : LOG_NOTICE,
                    "event=standby waiting: %s", e.msg);
        last = rc;
        if (rc == CCA_ERR_IO)
            (void)nanosleep(&pause, NULL); /* the database is away: no busy loop */
    }
    cca_log(LOG_NOTICE, "event=promoted standby_ms=%lld: the instance lock is ours",
            (long long)(cca_time_mono_ms() - since));
    return CCA_OK;
}

/* `call-center-agents migrate`: the PostgreSQL schema of DATABASE_URL, then exit. */
static int migrate_cli(const struct cca_config *cfg)
{
    struct cca_store_pg_params pp = pg_params(cfg);
    struct cca_error err = {0};
    unsigned from = 0, to = 0;
    char where[200];

    if (cfg->database_url[0] == '\0') {
        fprintf(stderr, "migrate: DATABASE_URL is not set\n");
        return EXIT_FAILURE;
    }
    cca_store_pg_describe(cfg->database_url, where, sizeof(where));
    if (cca_store_pg_migrate(&pp, &from, &to, &err) != CCA_OK) {
        cca_log(LOG_ERR, "event=migrate_failed %s: %s", where, err.msg);
        return EXIT_FAILURE;
    }
    cca_log(LOG_NOTICE, "event=migrated %s schema_version_before=%u schema_version=%u",
            where, from, to);
    return EXIT_SUCCESS;
}

/* Descriptors the server needs besides connections: store, epoll, logs, timers. */
#define RESERVED_FDS 64

/*
 * Make the descriptor limit fit the settings: every HTTP connection needs one
 * and, with an LLM, so does each call it waits on (one per connection at
 * most). Raise the soft RLIMIT_NOFILE to the hard one; if MAX_CONNECTIONS
 * still does not fit, lower it so that the connections cannot starve the
 * store and the LLM client of descriptors (a refused connection is better
 * than a turn that cannot be written), and say so with the numbers.
 */
static void fit_descriptors(struct cca_config *cfg)
{
    struct rlimit rl;
    unsigned per_conn = cca_config_has_llm(cfg) ? 2 : 1;
    rlim_t need = (rlim_t)cfg->max_connections * per_conn + RESERVED_FDS;
    unsigned fit;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < need && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return;
    fit = rl.rlim_cur > RESERVED_FDS + per_conn
              ? (unsigned)((rl.rlim_cur - RESERVED_FDS) / per_conn)
              : 1;
    cca_log(
        LOG_WARNING,
        "RLIMIT_NOFILE=%llu (hard %llu) is below the %llu descriptors MAX_CONNECTIONS=%u "
        "needs (%u per connection%s, plus %d); MAX_CONNECTIONS lowered to %u. Raise "
        "the limit (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=) or set "
        "MAX_CONNECTIONS=%u",
        (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
        (unsigned long long)need, cfg->max_connections, per_conn,
        per_conn > 1 ? ", with its LLM call" : "", RESERVED_FDS, fit, fit);
    cfg->max_connections = fit;
}

/* How often the main thread looks whether the server went idle (ms). */
#define IDLE_CHECK_MS 500

/* The engine's turn counters, summed: changes whenever a turn committed. */
static uint64_t turns_done(struct cca_engine *engine)
{
    const struct cca_engine_metrics *m = cca_engine_get_metrics(engine);
    uint64_t n = 0;

    for (size_t i = 0; i < CCA_ARRAY_SIZE(m->turns); i++)
        n += atomic_load_explicit(&m->turns[i], memory_order_relaxed);
    return n;
}

/* Heap trimming state of the main thread (see give_back_memory). */
struct trim_state {
    uint64_t seen_turns;    /* turn count at the previous tick */
    uint64_t trimmed_turns; /* turn count at the last trim */
    int64_t next_us;        /* no trim before this time (cca_time_mono_us) */
};

/*
 * give_back_memory - called every IDLE_CHECK_MS: when the server has gone
 * quiet after some work, return the heap's free pages to the kernel.
 *
 * A burst of turns leaves its freed buffers (connection pools, request bodies,
 * curl state) spread over glibc's per-thread arenas between pages that still
 * hold live dialogs, so free() alone cannot shrink them: measured (bench S4,
 * 2,000 turns) 93 MiB of RSS 2 s after the burst for 29 MiB in use, 56 MiB
 * after malloc_trim(0), which also releases the free pages inside the arenas
 * (madvise), not only the top.
 *
 * Quiet: nothing in the engine and no turn committed during the last tick, so
 * the connections of the last answers have closed too; a burst is trimmed
 * once, 0.5 to 1 s after its last answer. A trim locks each arena while it
 * walks it (120 to 160 ms after 9,850 turns on 2 busy cores), so trims are
 * spaced by 100 times the duration of the previous one: at most 1% of the
 * time, under a trickle of turns. An idle or a saturated server never trims.
 */
static void give_back_memory(struct cca_engine *engine, struct trim_state *ts)
{
    struct cca_engine_stats st;
    uint64_t turns = turns_done(engine);
    int64_t t0, took;

    if (turns != ts->seen_turns) {
        ts->seen_turns = turns; /* still busy */
        return;
    }
    if (turns == ts->trimmed_turns)
        return; /* nothing happened since the last trim */
    t0 = cca_time_mono_us();
    if (t0 < ts->next_us)
        return;
    cca_engine_get_stats(engine, &st);
    if (st.in_flight > 0)
        return;
    (void)malloc_trim(0);
    took = cca_time_mono_us() - t0;
    ts->trimmed_turns = turns;
    ts->next_us = t0 + 100 * took;
    cca_log(LOG_DEBUG, "event=heap_trimmed duration_us=%lld", (long long)took);
}

/*
 * Stop signals. SIGTERM and SIGINT are blocked in every thread (the mask is set
 * before any thread exists) and taken by one thread in sigwait(2), so none is
 * lost to a thread that does not care. Before the server is up (loading data,
 * scanning a large or odd storage directory) a stop request ends the process
 * at once: nothing has been acknowledged yet, every store write is atomic, and
 * the kernel releases the storage lock. Once serving, it wakes the main thread
 * for a graceful stop.
 */
struct stop_watch {
    sigset_t signals;
    pthread_mutex_t lock;
    bool serving; /* under lock */
    sem_t stop;   /* posted once a stop signal arrives while serving */
};

static void *watch_stop_signals(void *arg)
{
    struct stop_watch *w = arg;
    int sig = 0;

    (void)pthread_setname_np(pthread_self(), "cca-signals"); /* top -H, perf, gdb */

    if (sigwait(&w->signals, &sig) != 0)
        return NULL;
    pthread_mutex_lock(&w->lock);
    if (!w->serving) {
        cca_log(LOG_NOTICE, "event=stopped signal=%d: stop requested during start-up",
                sig);
        _exit(EXIT_SUCCESS);
    }
    pthread_mutex_unlock(&w->lock);
    (void)sem_post(&w->stop);
    return NULL;
}

/*
 * Wait for the stop signal, trimming the heap whenever the server goes quiet.
 * Returns false when the store was fenced instead (another instance took the
 * database over, store.h): the server must stop and exit non-zero.
 */
static bool wait_for_stop(struct stop_watch *w, struct cca_engine *engine,
                          struct cca_store *store)
{
    struct trim_state ts = {0};

    pthread_mutex_lock(&w->lock);
    w->serving = true;
    pthread_mutex_unlock(&w->lock);
    ts.seen_turns = ts.trimmed_turns = turns_done(engine);
    for (;;) {
        struct cca_store_health sh;
        struct timespec tick;

        (void)clock_gettime(CLOCK_REALTIME, &tick);
        tick.tv_nsec += (IDLE_CHECK_MS % 1000) * 1000000L;
        tick.tv_sec += IDLE_CHECK_MS / 1000 + tick.tv_nsec / 1000000000L;
        tick.tv_nsec %= 1000000000L;
        if (sem_timedwait(&w->stop, &tick) == 0)
            return true;
        if (errno == ETIMEDOUT)
            give_back_memory(engine, &ts);
        if (strcmp(cca_store_backend(store), "postgres") != 0)
            continue; /* only a database is shared, and the file store's health does I/O
                       */
        cca_store_get_health(store, &sh); /* PostgreSQL's: no query, a mutex */
        if (sh.fenced) {
            cca_log(LOG_ERR,
                    "event=fenced: another instance took the database over "
                    "while this one was cut off from it; stopping (%s)",
                    sh.last_error);
            return false;
        }
    }
}

static int serve(const struct cca_config *cfg)
{
    struct cca_error err = {0};
    struct cca_store *store = NULL;
    struct cca_router *router = NULL;
    struct cca_agents *agents = NULL;
    struct cca_llm *llm = NULL;
    struct cca_fetch *fetch = NULL;
    struct cca_telegram *telegram = NULL;
    struct cca_engine *engine = NULL;
    struct cca_http *http = NULL;
    struct cca_standby *standby = NULL; /* while another instance is active */
    bool signalled;
    struct cca_desk *desk = NULL;
    struct cca_events *events = NULL;
    struct stop_watch watch = {.lock = PTHREAD_MUTEX_INITIALIZER};
    pthread_t watcher;
    char desc[4096];
    int64_t deadline;
    int ret = EXIT_FAILURE;
    cca_rc rc;

    cca_config_describe(cfg, desc, sizeof(desc));
    cca_log(LOG_INFO, "starting version=%s %s", CCA_VERSION, desc);
    /*
     * Block SIGTERM and SIGINT before any thread exists: every thread inherits
     * the mask, so the signal stays pending until sigwait below takes it. A
     * handler plus pause() loses it when the kernel delivers it to another thread.
     */
    sigemptyset(&watch.signals);
    sigaddset(&watch.signals, SIGTERM);
    sigaddset(&watch.signals, SIGINT);
    (void)pthread_sigmask(SIG_BLOCK, &watch.signals, NULL);
    if (sem_init(&watch.stop, 0, 0) != 0 ||
        pthread_create(&watcher, NULL, watch_stop_signals, &watch) != 0) {
        cca_log(LOG_ERR, "cannot start the signal thread");
        return EXIT_FAILURE;
    }
    (void)pthread_detach(watcher);
    rc = make_router(cfg, &router, &err);
    if (rc == CCA_OK)
        rc = cca_agents_new(cfg->data_dir, &agents, &err);
    if (rc != CCA_OK) {
        cca_log(LOG_ERR, "cannot load data: %s", err.msg);
        goto out;
    }
    {
        char model[256];

        if (cca_router_model_summary(router, model, sizeof(model)))
            cca_log(LOG_INFO, "router model='%s'", model);
        else
            cca_log(LOG_WARNING, "router model=none reason='%s'", model);
    }
    /* One asynchronous HTTP client for the LLM and Telegram, each on its own lane. */
    if ((cca_config_has_llm(cfg) || cfg->telegram_bot_token[0]) &&
        cca_fetch_new(NULL, &fetch, &err) != CCA_OK) {
        cca_log(LOG_ERR, "cannot start the HTTP client: %s", err.msg);
        goto out;
    }
    if (cca_config_has_llm(cfg)) {
        struct cca_llm_params lp = {
            .fetch = fetch,
            .base_url = cfg->openai_base_url,
            .api_key = cfg->openai_api_key,
            .model = cfg->openai_model,
            .connect_timeout_ms = cfg->llm_connect_timeout_ms,
            .max_retries = cfg->llm_max_retries,
            .max_response_bytes = cfg->llm_max_response_bytes,
            .backoff_base_ms = cfg->llm_backoff_ms,
        };

        rc = cca_llm_new(&lp, &llm, &err);
        if (rc != CCA_OK) {
            cca_log(LOG_ERR, "cannot start the LLM client: %s", err.msg);
            goto out;
        }
        cca_log(LOG_INFO, "llm mode=openai model='%s' base_url='%s'", cfg->openai_model,
                cfg->openai_base_url);
    } else {
        cca_log(LOG_NOTICE, "llm mode=offline: OPENAI_API_KEY is not set, the built-in "
                            "offline responder answers");
    }
    rc = open_store(cfg, &store, &err);
    if (rc == CCA_ERR_UNAVAILABLE) /* another instance is active on the database */
        rc = stand_by(cfg, &store, &standby, &err);
    if (rc != CCA_OK) {
        cca_log(LOG_ERR, "cannot open storage: %s", err.msg);
        goto out;
    }
    {
        struct cca_desk_params dp = {.queue_max = cfg->queue_max,
                                     .default_handle_s = cfg->queue_default_handle_s};

        (void)getrandom(&dp.seed, sizeof(dp.seed), 0); /* the random tie-break only */
        desk = cca_desk_new(&dp);
        /* Frames are small (<= 16 KiB); 2 KiB on average bounds the log's bytes. */
        events =
            cca_events_new(cfg->events_log_size, (size_t)cfg->events_log_size * 2048);
    }
    {
        struct cca_engine_params ep = {
            .cfg = cfg,
            .store = store,
            .router = router,
            .agents = agents,
            .llm = llm,
            .desk = desk,
            .events = events,
            .skip = skip_file,
        };
        struct cca_engine_stats st;
        struct cca_store_health sh;

        rc = cca_engine_new(&ep, &engine, &err);
        if (rc != CCA_OK) {
            cca_log(LOG_ERR, "cannot load dialogs: %s", err.msg);
            goto out;
        }
        cca_engine_get_stats(engine, &st);
        cca_store_get_health(store, &sh); /* its location: a path, or host and dbname */
        cca_log(LOG_INFO, "store loaded backend=%s path='%s' dialogs=%zu",
                cca_store_backend(store), sh.location, st.total);
    }
    {
        struct cca_telegram_params tp = {.cfg = cfg, .engine = engine, .fetch = fetch};

        rc = cca_telegram_new(&tp, &telegram, &err);
        if (rc != CCA_OK) {
            cca_log(LOG_ERR, "cannot start the Telegram channel: %s", err.msg);
            goto out;
        }
    }
    {
        struct cca_http_params hp = {.cfg = cfg,
                                     .engine = engine,
                                     .store = store,
                                     .llm = llm,
                                     .desk = desk,
                                     .events = events,
                                     .telegram = telegram,
                                     .version = CCA_VERSION};

        if (standby != NULL) { /* its socket, with what waits in the backlog */
            hp.has_listen_fd = true;
            hp.listen_fd = cca_standby_promote(standby);
            standby = NULL;
        }
        rc = cca_http_new(&hp, &http, &err);
    }
    if (rc != CCA_OK) {
        cca_log(LOG_ERR, "cannot start HTTP: %s", err.msg);
        goto out;
    }
    cca_log(LOG_INFO, "event=listening host=%s port=%u threads=%u", cfg->host,
            cca_http_port(http), cfg->threads);
    signalled = wait_for_stop(&watch, engine, store);

    /* Stop accepting, let turns in flight finish within the LLM deadline, exit 0. */
    cca_log(LOG_INFO, "event=stopping: finishing turns in flight");
    cca_http_quiesce(http);
    cca_events_wake_all(events); /* open event streams see the quiesce and end */
    /* No new Telegram updates; what is sent within 2 s goes, the rest next run. */
    cca_telegram_stop(telegram, cca_time_mono_ms() + 2000);
    deadline = cca_time_mono_ms() + (int64_t)(cfg->llm_timeout_s * 1000.0) + 2000;
    if (!cca_engine_drain(engine, deadline))
        cca_log(LOG_WARNING, "turns still in flight at the deadline, cancelling them");
    cca_engine_detach_llm(engine); /* no turn step may use the client from here on */
    cca_llm_free(llm);             /* cancels what is left: those turns answer degraded */
    llm = NULL;
    if (!cca_engine_drain(engine, cca_time_mono_ms() + 5000)) {
        /*
         * Operations still wait on the store (a disk that hangs): freeing would
         * pull memory from under them. Nothing was acknowledged for them; the
         * journal and the files are consistent at any moment, and the kernel
         * drops the storage lock.
         */
        cca_log(LOG_ERR, "event=stopped: operations still wait on the storage after the "
                         "deadline; exiting without waiting");
        _exit(EXIT_FAILURE);
    }
    cca_events_wake_all(events); /* a stream that was between reads then */
    if (!cca_http_wait_idle(http, cca_time_mono_ms() + 2000))
        cca_log(LOG_WARNING, "some responses were not sent before the deadline");
    /* Fenced: exit 1, so that the supervisor restarts it (as a standby then). */
    ret = signalled ? EXIT_SUCCESS : EXIT_FAILURE;
out:
    cca_standby_free(standby);
    cca_http_free(http);
    cca_telegram_stop(telegram, cca_time_mono_ms());
    cca_llm_free(llm);
    cca_engine_free(engine);
    cca_telegram_free(telegram); /* after the engine: its last results are freed here */
    cca_fetch_free(fetch);
    cca_events_free(events);
    cca_desk_free(desk);
    cca_store_free(store);
    cca_agents_free(agents);
    cca_router_free(router);
    cca_text_thread_cleanup();
    if (ret == EXIT_SUCCESS)
        cca_log(LOG_INFO, "event=stopped");
    return ret;
}

int main(int argc, char **argv)
{
    struct cca_config cfg;
    struct cca_error err = {0};
    const char *cmd = argc > 1 ? argv[1] : "serve";
    int ret;

    /* House style 8.5 rule 8: jansson allocator and seed, then curl, then config. */
    cca_mem_install_jansson();
    json_object_seed(0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "fatal: curl_global_init failed\n");
        return EXIT_FAILURE;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("call-center-agents %s\n", CCA_VERSION);
        ret = EXIT_SUCCESS;
        goto out;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        cca_config_print_help(stdout);
        ret = EXIT_SUCCESS;
        goto out;
    }
    if (cca_config_load(&cfg, ".env", warn_config, NULL, &err) != CCA_OK) {
        fprintf(stderr, "configuration error: %s\n(see call-center-agents --help)\n",
                err.msg);
        ret = EXIT_FAILURE;
        goto out;
    }
    cca_log_level = cfg.log_level;
    if (strcmp(cmd, "route") == 0) {
        struct cca_router *router = NULL;

        if (make_router(&cfg, &router, &err) != CCA_OK) {
            fprintf(stderr, "cannot load the lexicon: %s\n", err.msg);
            ret = EXIT_FAILURE;
            goto out;
        }
        ret = cca_route_cli(router, argc - 1, argv + 1);
        cca_router_free(router);
        cca_text_thread_cleanup();
    } else if (strcmp(cmd, "demo-data") == 0) {
        /* Writes through the store like the server: refused while one runs on it. */
        ret = cca_demo_cli(&cfg, argc - 1, argv + 1);
        cca_text_thread_cleanup();
    } else if (strcmp(cmd, "migrate") == 0) {
        ret = migrate_cli(&cfg);
    } else if (strcmp(cmd, "import") == 0) {
        struct cca_store_pg_params pp = pg_params(&cfg);

        if (argc != 4 || strcmp(argv[2], "--from-files") != 0 ||
            cfg.database_url[0] == '\0') {
            fprintf(stderr, "usage: call-center-agents import --from-files DIR (with "
                            "DATABASE_URL set)\n");
            ret = EXIT_FAILURE;
        } else {
            ret = cca_store_pg_import_cli(&pp, argv[3]);
        }
        cca_text_thread_cleanup();
    } else if (strcmp(cmd, "serve") == 0) {
        fit_descriptors(&cfg);
        ret = serve(&cfg);
    } else {
        fprintf(stderr, "unknown command '%s'\n\n", cmd);
        cca_config_print_help(stderr);
        ret = EXIT_FAILURE;
    }
out:
    curl_global_cleanup();
    return ret;
}
