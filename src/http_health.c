/* SPDX-License-Identifier: MIT */
/*
 * The health endpoints (/api/v1/health, /detailed, /ready, /live): the state of
 * storage and of the LLM client aggregated into one status. Handlers of the
 * route table in http_routes.c.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cca/engine.h"
#include "cca/llm.h"
#include "cca/store.h"

#include "http_int.h"

struct health {
    const char *status;
    const char *openai;
    struct cca_store_health store;
    struct cca_llm_status llm;
};

static void get_health(struct cca_http *h, struct health *ret)
{
    memset(ret, 0, sizeof(*ret));
    cca_store_get_health(h->store, &ret->store);
    if (h->llm == NULL) {
        ret->openai = "offline";
    } else {
        cca_llm_get_status(h->llm, &ret->llm);
        if (ret->llm.auth_failed)
            ret->openai = "unhealthy";
        else if (ret->llm.calls == 0)
            ret->openai = "unknown";
        else
            ret->openai = ret->llm.last_http_status / 100 == 2 ? "healthy" : "unhealthy";
    }
    if (!ret->store.writable)
        ret->status = "unhealthy";
    else if (strcmp(ret->openai, "unhealthy") == 0)
        ret->status = "degraded"; /* the offline responder still answers */
    else
        ret->status = "healthy";
}

static json_t *health_json(struct cca_http *h, const struct health *hs)
{
    json_t *o = json_object();
    json_t *comp = json_object();
    char ts[CCA_TIME_LEN];
    char up[64];
    int64_t secs = (cca_time_mono_ms() - h->started_mono) / 1000;

    cca_time_format(cca_time_wall_ms(), ts);
    (void)snprintf(up, sizeof(up), "%lldh %lldm %llds", (long long)(secs / 3600),
                   (long long)(secs / 60 % 60), (long long)(secs % 60));
    (void)json_object_set_new(comp, "openai_api", json_string(hs->openai));
    (void)json_object_set_new(comp, "dialog_storage",
                              json_string(hs->store.writable ? "healthy" : "unhealthy"));
    (void)json_object_set_new(comp, "agents", json_string("initialized"));
    (void)json_object_set_new(o, "status", json_string(hs->status));
    (void)json_object_set_new(o, "timestamp", json_string(ts));
    (void)json_object_set_new(o, "version", json_string(h->version));
    (void)json_object_set_new(o, "environment", json_string(h->cfg->environment));
    (void)json_object_set_new(o, "components", comp);
    (void)json_object_set_new(o, "uptime", json_string(up));
    (void)json_object_set_new(o, "uptime_seconds", json_integer(secs));
    return o;
}

static unsigned health_status_code(const struct health *hs)
{
    return strcmp(hs->status, "unhealthy") == 0 ? 503 : 200;
}

void cca_http_handle_health(struct cca_http_request *r)
{
    struct health hs;

    get_health(r->http, &hs);
    cca_http_respond_json(r, health_status_code(&hs), health_json(r->http, &hs));
}

static json_t *int_or_null(bool present, long long v)
{
    return present ? json_integer(v) : json_null();
}

void cca_http_handle_health_detailed(struct cca_http_request *r)
{
    struct cca_http *h = r->http;
    struct health hs;
    struct cca_engine_stats st;
    json_t *o;
    json_t *d = json_object();
    json_t *s = json_object();
    json_t *l = json_object();
    bool have;

    get_health(h, &hs);
    have = h->llm != NULL && hs.llm.calls > 0;
    cca_engine_get_stats(h->engine, &st);
    o = health_json(h, &hs);
    (void)json_object_set_new(d, "total", json_integer((json_int_t)st.total));
    for (int i = 0; i < CCA_DIALOG_STATUS__COUNT; i++)
        (void)json_object_set_new(d, cca_dialog_status_name((enum cca_dialog_status)i),
                                  json_integer((json_int_t)st.dialogs[i]));
    (void)json_object_set_new(o, "dialogs", d);
    (void)json_object_set_new(o, "turns_in_flight",
                              json_integer((json_int_t)st.in_flight));
    (void)json_object_set_new(s, "path", json_string(hs.store.location));
    (void)json_object_set_new(s, "writable", json_boolean(hs.store.writable));
    (void)json_object_set_new(s, "free_bytes",
                              json_integer((json_int_t)hs.store.free_bytes));
    (void)json_object_set_new(o, "storage", s);
    (void)json_object_set_new(l, "mode",
                              json_string(h->llm != NULL ? "openai" : "offline"));
    (void)json_object_set_new(l, "model", json_string(h->cfg->openai_model));
    (void)json_object_set_new(l, "base_url", json_string(h->cfg->openai_base_url));
    (void)json_object_set_new(l, "calls", json_integer((json_int_t)hs.llm.calls));
    (void)json_object_set_new(l, "failures", json_integer((json_int_t)hs.llm.failures));
    (void)json_object_set_new(l, "last_error",
                              hs.llm.last_error[0] ? json_string(hs.llm.last_error)
                                                   : json_null());
    (void)json_object_set_new(l, "last_http_status",
                              int_or_null(have, hs.llm.last_http_status));
    (void)json_object_set_new(l, "last_latency_ms",
                              int_or_null(have, hs.llm.last_latency_ms));
    (void)json_object_set_new(o, "llm", l);
    cca_http_respond_json(r, health_status_code(&hs), o);
}

void cca_http_handle_ready(struct cca_http_request *r)
{
    struct cca_store_health sh;
    struct cca_engine_stats st;
    json_t *o = json_object();
    json_t *reasons = json_array();

    cca_store_get_health(r->http->store, &sh);
    cca_engine_get_stats(r->http->engine, &st);
    if (!sh.writable)
        (void)json_array_append_new(
            reasons,
            json_string(sh.last_error[0] ? sh.last_error : "storage is not writable"));
    if (st.in_flight >= r->http->cfg->max_pending_turns)
        (void)json_array_append_new(reasons, json_string("too many turns in flight"));
    if (json_array_size(reasons) == 0) {
        json_decref(reasons);
        (void)json_object_set_new(o, "status", json_string("ready"));
        cca_http_respond_json(r, 200, o);
        return;
    }
    (void)json_object_set_new(o, "status", json_string("not_ready"));
    (void)json_object_set_new(o, "reasons", reasons);
    cca_http_respond_json(r, 503, o);
}

void cca_http_handle_live(struct cca_http_request *r)
{
    json_t *o = json_object();

    (void)json_object_set_new(o, "status", json_string("alive"));
    cca_http_respond_json(r, 200, o);
}
