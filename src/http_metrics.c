/* SPDX-License-Identifier: MIT */
/*
 * GET /metrics: every metric family of the service in the Prometheus text
 * format. The HTTP families are counted by http_server.c (struct
 * cca_http_metrics) and rendered here with those of the engine, the store,
 * the LLM client and the process; each module owns its metrics and exposes
 * them read-only (cca/metrics.h).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "cca/dialog.h"
#include "cca/engine.h"
#include "cca/http.h"
#include "cca/llm.h"
#include "cca/telegram.h"
#include "cca/metrics.h"
#include "cca/store.h"

#include "http_int.h"

/* The route label of metrics slot @slot: the row's pattern, or "unmatched". */
static const char *route_label(const struct cca_http *h, size_t slot)
{
    return slot < h->routes->n ? h->routes->rows[slot].pattern : "unmatched";
}

void cca_http_server_metrics_render(struct cca_http *h, FILE *out)
{
    struct cca_http_metrics *m = h->metrics;
    char labels[256];

    cca_metrics_family(
        out, "cca_http_requests_total", "counter",
        "HTTP requests answered, by method, route pattern and status code");
    for (size_t route = 0; route < m->nroutes; route++) {
        for (size_t me = 0; me < m->nmethods; me++) {
            for (size_t st = 0; st < m->nstatuses; st++) {
                size_t i = (route * m->nmethods + me) * m->nstatuses + st;
                uint64_t v = atomic_load_explicit(&m->requests[i], memory_order_relaxed);
                char status[16];

                if (v == 0)
                    continue;
                if (m->statuses[st] != 0)
                    (void)snprintf(status, sizeof(status), "%u", m->statuses[st]);
                else
                    (void)snprintf(status, sizeof(status), "other");
                (void)snprintf(labels, sizeof(labels),
                               "method=\"%s\",route=\"%s\",status=\"%s\"", m->methods[me],
                               route_label(h, route), status);
                cca_metrics_sample(out, "cca_http_requests_total", labels, (double)v);
            }
        }
    }
    cca_metrics_family(out, "cca_http_request_duration_seconds", "histogram",
                       "Time from the request headers to the response being sent");
    for (size_t route = 0; route < m->nroutes; route++) {
        if (cca_hist_count(&m->durations[route]) == 0)
            continue;
        (void)snprintf(labels, sizeof(labels), "route=\"%s\"", route_label(h, route));
        cca_metrics_hist(out, "cca_http_request_duration_seconds", labels,
                         &m->durations[route]);
    }
    cca_metrics_family(out, "cca_http_rejected_total", "counter",
                       "Requests refused by access control, by reason");
    for (size_t i = 0; i < CCA_HTTP_REJ__N; i++) {
        (void)snprintf(labels, sizeof(labels), "reason=\"%s\"", m->reject_names[i]);
        cca_metrics_sample(
            out, "cca_http_rejected_total", labels,
            (double)atomic_load_explicit(&m->rejected[i], memory_order_relaxed));
    }
    cca_metrics_single(out, "cca_http_open_requests", "gauge",
                       "Requests received and not yet completed",
                       (double)atomic_load(&h->open_requests));
}

static void render_engine(struct cca_engine *engine, FILE *out)
{
    const struct cca_engine_metrics *m = cca_engine_get_metrics(engine);
    struct cca_engine_stats st;
    char labels[64];

    cca_engine_get_stats(engine, &st);
    cca_metrics_family(out, "cca_turns_total", "counter",
                       "Customer turns committed, by who wrote the reply");
    for (int i = 0; i < CCA_ENGINE_REPLY__COUNT; i++) {
        (void)snprintf(labels, sizeof(labels), "reply=\"%s\"",
                       cca_engine_reply_name((enum cca_engine_reply)i));
        cca_metrics_sample(out, "cca_turns_total", labels,
                           (double)atomic_load(&m->turns[i]));
    }
    cca_metrics_hist_family(out, "cca_turn_duration_seconds",
                            "Turn time from receipt to durable commit", &m->turn_seconds);
    cca_metrics_hist_family(out, "cca_turn_overhead_seconds",
                            "Turn time minus the time spent in LLM attempts",
                            &m->overhead_seconds);
    cca_metrics_single(out, "cca_turns_in_flight", "gauge",
                       "Requests accepted by the engine and not yet answered",
                       (double)st.in_flight);
    cca_metrics_single(out, "cca_idempotent_replays_total", "counter",
                       "Requests answered from an Idempotency-Key record",
                       (double)atomic_load(&m->idempotent_replays));
    cca_metrics_single(
        out, "cca_idempotency_keys", "gauge",
        "Create Idempotency-Keys remembered (at most IDEMPOTENCY_MAX_KEYS)",
        (double)atomic_load(&m->idempotency_keys));
    cca_metrics_single(
        out, "cca_idempotency_keys_evicted_total", "counter",
        "Create Idempotency-Keys forgotten before their TTL to stay within "
        "IDEMPOTENCY_MAX_KEYS",
        (double)atomic_load(&m->idempotency_keys_evicted));
    cca_metrics_single(out, "cca_dialog_cache_dialogs", "gauge",
                       "Dialogs whose parsed document is cached in memory",
                       (double)st.cached);
    cca_metrics_single(
        out, "cca_dialog_cache_bytes", "gauge",
        "Estimated memory of the cached dialogs (bounded by DIALOG_CACHE_MB)",
        (double)st.cache_bytes);
    cca_metrics_single(out, "cca_dialog_cache_loads_total", "counter",
                       "Dialog files read back because their document was not cached",
                       (double)atomic_load(&m->cache_loads));
    cca_metrics_family(out, "cca_dialogs", "gauge", "Dialogs in the store, by status");
    for (int s = 0; s < CCA_DIALOG_STATUS__COUNT; s++) {
        (void)snprintf(labels, sizeof(labels), "status=\"%s\"",
                       cca_dialog_status_name((enum cca_dialog_status)s));
        cca_metrics_sample(out, "cca_dialogs", labels, (double)st.dialogs[s]);
    }
}

/* The human side: queue, operators, assignments, waits, CSAT, event streams. */
static void render_human(struct cca_http *h, FILE *out)
{
    static const char *const requeue_causes[] = {"reply_timeout", "operator_offline",
                                                 "operator_revoked"};
    static const char *const escalation_results[] = {"requested", "queued", "refused"};
    const struct cca_engine_metrics *m = cca_engine_get_metrics(h->engine);
    struct cca_desk_stats ds;
    struct cca_events_stats es = {0};
    char labels[96];

    cca_desk_get_stats(h->desk, &ds);
    if (h->events != NULL)
        cca_events_get_stats(h->events, &es);
    cca_metrics_single(out, "cca_queue_length", "gauge",
                       "Dialogs waiting in the queue for a human operator",
                       (double)ds.queued);
    cca_metrics_single(out, "cca_dialogs_with_operator", "gauge",
                       "Dialogs owned by a human operator now", (double)ds.assigned);
    cca_metrics_family(out, "cca_operators", "gauge", "Operators by status");
    for (int i = 0; i < CCA_OPERATOR_STATUS__COUNT; i++) {
        (void)snprintf(labels, sizeof(labels), "status=\"%s\"",
                       cca_operator_status_name((enum cca_operator_status)i));
        cca_metrics_sample(out, "cca_operators", labels, (double)ds.operators[i]);
    }
    cca_metrics_single(out, "cca_operator_free_seats", "gauge",
                       "Free seats (max_dialogs - open) of available operators",
                       (double)ds.seats_free);
    cca_metrics_single(out, "cca_handle_time_mean_seconds", "gauge",
                       "Mean handle time behind the queue's wait estimate",
                       ds.mean_handle_s);
    cca_metrics_family(out, "cca_escalations_total", "counter",
                       "Requests for a human: asked, queued, refused (QUEUE_MAX)");
    for (size_t i = 0; i < CCA_ARRAY_SIZE(escalation_results); i++) {
        (void)snprintf(labels, sizeof(labels), "result=\"%s\"", escalation_results[i]);
        cca_metrics_sample(out, "cca_escalations_total", labels,
                           (double)atomic_load(&m->escalations[i]));
    }
    cca_metrics_single(out, "cca_assignments_total", "counter",
                       "Dialogs given to an operator (pushed or pulled)",
                       (double)atomic_load(&m->assignments));
    cca_metrics_family(out, "cca_requeues_total", "counter",
                       "Dialogs taken back from an operator to the queue, by cause");
    for (size_t i = 0; i < CCA_ARRAY_SIZE(requeue_causes); i++) {
        (void)snprintf(labels, sizeof(labels), "cause=\"%s\"", requeue_causes[i]);
        cca_metrics_sample(out, "cca_requeues_total", labels,
                           (double)atomic_load(&m->requeues[i]));
    }
    cca_metrics_hist_family(out, "cca_queue_wait_seconds",
                            "From asking for a human to an operator, per assignment "
                            "from the queue",
                            &m->queue_wait_seconds);
    cca_metrics_hist_family(out, "cca_first_response_seconds",
                            "From asking for a human to the operator's first reply",
                            &m->first_response_seconds);
    cca_metrics_family(out, "cca_csat_ratings_total", "counter",
                       "Customer ratings (1-5) of closed dialogs, by the last AI agent");
    for (int a = 0; a <= CCA_AGENT__COUNT; a++) {
        for (int sc = 0; sc < 5; sc++) {
            (void)snprintf(labels, sizeof(labels), "agent=\"%s\",score=\"%d\"",
                           a < CCA_AGENT__COUNT ? cca_agent_name((enum cca_agent)a)
                                                : "none",
                           sc + 1);
            cca_metrics_sample(out, "cca_csat_ratings_total", labels,
                               (double)atomic_load(&m->csat[a][sc]));
        }
    }
    cca_metrics_single(out, "cca_event_streams", "gauge",
                       "Open live event streams (Server-Sent Events)",
                       (double)es.subscribers);
    cca_metrics_single(out, "cca_events_published_total", "counter",
                       "Live events published", (double)es.published);
    cca_metrics_single(out, "cca_event_resyncs_total", "counter",
                       "Streams told to resync (Last-Event-ID no longer in the log)",
                       (double)es.resyncs);
}

/* The store backend's own families (cca_store_*). */
static void render_store(struct cca_store *store, FILE *out)
{
    cca_store_render_metrics(store, out);
    /* This instance serves; a standby renders 1 (standby.c). */
    cca_metrics_single(out, CCA_STANDBY_METRIC, "gauge", CCA_STANDBY_METRIC_HELP, 0);
}

/* LLM client families; absent in offline mode (no OPENAI_API_KEY). */
static void render_llm(struct cca_llm *llm, FILE *out)
{
    const struct cca_llm_metrics *m;
    char labels[64];

    if (llm == NULL)
        return;
    m = cca_llm_get_metrics(llm);
    cca_metrics_family(out, "cca_llm_calls_total", "counter",
                       "LLM calls (all attempts of one call) by final outcome");
    for (int i = 0; i < CCA_LLM_OUTCOME_COUNT; i++) {
        (void)snprintf(labels, sizeof(labels), "outcome=\"%s\"",
                       cca_llm_outcome_name((enum cca_llm_outcome)i));
        cca_metrics_sample(out, "cca_llm_calls_total", labels,
                           (double)atomic_load(&m->calls[i]));
    }
    cca_metrics_single(out, "cca_llm_retries_total", "counter",
                       "LLM attempts after the first of a call",
                       (double)atomic_load(&m->retries));
    cca_metrics_family(out, "cca_llm_tokens_total", "counter",
                       "Tokens reported in usage by successful calls");
    cca_metrics_sample(out, "cca_llm_tokens_total", "kind=\"prompt\"",
                       (double)atomic_load(&m->prompt_tokens));
    cca_metrics_sample(out, "cca_llm_tokens_total", "kind=\"completion\"",
                       (double)atomic_load(&m->completion_tokens));
    cca_metrics_family(out, "cca_llm_upstream_duration_seconds", "histogram",
                       "Duration of LLM attempts that got an HTTP response");
    cca_metrics_hist(out, "cca_llm_upstream_duration_seconds", NULL,
                     &m->upstream_seconds);
}

/* The standard process_* families (Prometheus client library conventions). */
static void render_process(struct cca_http *h, FILE *out)
{
    struct cca_process_stats ps;

    cca_process_stats_read(&ps);
    cca_metrics_single(out, "process_cpu_seconds_total", "counter",
                       "User and system CPU time spent", ps.cpu_seconds);
    cca_metrics_single(out, "process_resident_memory_bytes", "gauge",
                       "Resident memory size", (double)ps.rss_bytes);
    cca_metrics_single(out, "process_threads", "gauge", "Threads of the process",
                       ps.threads);
    cca_metrics_single(out, "process_open_fds", "gauge", "Open file descriptors",
                       ps.open_fds);
    cca_metrics_single(out, "process_max_fds", "gauge", "Limit of open file descriptors",
                       (double)ps.max_fds);
    cca_metrics_single(out, "process_uptime_seconds", "gauge", "Seconds since start",
                       (double)(cca_time_mono_ms() - h->started_mono) / 1000.0);
}

void cca_http_metrics_render(struct cca_http *h, FILE *out)
{
    cca_http_server_metrics_render(h, out);
    render_engine(h->engine, out);
    render_human(h, out);
    render_store(h->store, out);
    render_llm(h->llm, out);
    cca_telegram_render_metrics(h->telegram, out);
    render_process(h, out);
}

void cca_http_handle_metrics(struct cca_http_request *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    if (out == NULL) {
        cca_http_respond_error(r, 500, "internal", "cannot render metrics");
        return;
    }
    cca_http_metrics_render(r->http, out);
    fclose(out);
    cca_http_respond_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
