/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cca/config.h"
#include "cca/log.h"

enum setting_type { T_STR, T_UINT, T_SIZE, T_DOUBLE, T_BOOL, T_LEVEL, T_AGENT };

struct setting {
    const char *name;
    enum setting_type type;
    size_t offset;
    size_t size; /* T_STR: buffer size */
    const char *def;
    double min;
    double max;
    bool secret;
    const char *help;
};

#define F(field)                                                                         \
    offsetof(struct cca_config, field), sizeof(((struct cca_config *)0)->field)

/* The one table: defaults, ranges and help. --help prints it. */
static const struct setting settings[] = {
    {"HOST", T_STR, F(host), "0.0.0.0", 0, 0, false, "Address to listen on"},
    {"PORT", T_UINT, F(port), "8000", 0, 65535, false, "TCP port (0 picks a free one)"},
    {"DIALOGS_STORAGE_PATH", T_STR, F(storage_path), "storage/dialogs", 0, 0, false,
     "Directory of the dialog files, one <uuid>.json per dialog"},
    {"DATA_DIR", T_STR, F(data_dir), "data", 0, 0, false,
     "Directory holding agents/ (prompts) and knowledge/ (offline answers)"},
    {"ROUTING_LEXICON_PATH", T_STR, F(lexicon_path), "", 0, 0, false,
     "Router lexicon (default: DATA_DIR/routing/lexicon.json)"},
    {"LOG_LEVEL", T_LEVEL, F(log_level), "info", 0, 0, false,
     "error, warning, notice, info or debug"},
    {"ENVIRONMENT", T_STR, F(environment), "development", 0, 0, false,
     "Deployment name shown by health; production refuses to start without API_KEYS or "
     "API_KEYS_FILE unless ALLOW_ANONYMOUS=true"},
    {"OPENAI_BASE_URL", T_STR, F(openai_base_url), "https://api.openai.com/v1", 0, 0,
     false, "Any OpenAI-compatible API; /chat/completions is appended"},
    {"OPENAI_API_KEY", T_STR, F(openai_api_key), "", 0, 0, true,
     "Empty: the built-in offline responder answers"},
    {"OPENAI_MODEL", T_STR, F(openai_model), "gpt-4o-mini", 0, 0, false, "Chat model"},
    {"OPENAI_TEMPERATURE", T_DOUBLE, F(openai_temperature), "", 0, 2, false,
     "Overrides every agent's temperature (empty: per agent, data/agents/agents.json)"},
    {"OPENAI_MAX_TOKENS", T_UINT, F(openai_max_tokens), "1000", 1, 100000, false,
     "max_tokens of an agent reply"},
    {"LLM_TIMEOUT_S", T_DOUBLE, F(llm_timeout_s), "30", 0.1, 600, false,
     "Budget of one customer turn for all LLM calls and retries"},
    {"LLM_MAX_RETRIES", T_UINT, F(llm_max_retries), "2", 0, 10, false,
     "Retries after a 429, 5xx or timeout (within the budget)"},
    {"LLM_CONNECT_TIMEOUT_MS", T_UINT, F(llm_connect_timeout_ms), "5000", 10, 60000,
     false, "TCP/TLS connect timeout of one attempt"},
    {"LLM_MAX_RESPONSE_BYTES", T_SIZE, F(llm_max_response_bytes), "1048576", 1024,
     67108864, false, "Larger LLM responses are rejected"},
    {"LLM_BACKOFF_MS", T_UINT, F(llm_backoff_ms), "500", 1, 60000, false,
     "First retry backoff (doubles, full jitter)"},
    {"MAX_DIALOG_HISTORY", T_UINT, F(max_dialog_history), "20", 0, 1000, false,
     "Last messages of the dialog sent to the LLM as history"},
    {"MAX_DIALOG_MESSAGES", T_UINT, F(max_dialog_messages), "5000", 10, 1000000, false,
     "A dialog with this many messages accepts no more (409)"},
    {"MAX_BODY_BYTES", T_SIZE, F(max_body_bytes), "1048576", 1024, 67108864, false,
     "Largest request body (413 above)"},
    {"DIALOG_INACTIVITY_TIMEOUT_S", T_UINT, F(dialog_inactivity_timeout_s), "1800", 1,
     31536000, false, "DELETE /dialogue/cleanup closes dialogs idle this long"},
    {"ROUTER_DEFAULT_AGENT", T_AGENT, F(router_default_agent), "tech_support", 0, 0,
     false, "Agent of a first message without a clear route"},
    {"ROUTER_MIN_SCORE", T_DOUBLE, F(router_min_score), "1.0", 0.1, 100, false,
     "Keyword score a clear winner needs"},
    {"ROUTER_MIN_MARGIN", T_DOUBLE, F(router_min_margin), "0.5", 0, 100, false,
     "Lead over the runner-up a clear winner needs"},
    {"THREADS", T_UINT, F(threads), "2", 1, 64, false, "HTTP worker threads"},
    {"MAX_CONNECTIONS", T_UINT, F(max_connections), "4096", 1, 1000000, false,
     "Concurrent HTTP connections"},
    {"MAX_CONNECTIONS_PER_IP", T_UINT, F(max_connections_per_ip), "0", 0, 1000000, false,
     "Per client IP (0: no limit)"},
    {"CONNECTION_TIMEOUT_S", T_UINT, F(connection_timeout_s), "30", 1, 3600, false,
     "Idle connection timeout"},
    /*
     * 8 KiB, like nginx's 8k header buffers: request headers up to about 7 KB
     * (the rest is 431); bodies stream through it in chunks, so MAX_BODY_BYTES
     * is not bound by it. Measured (bench S4, 2,000 turns in flight): the
     * pool costs its full size per connection at the peak (libmicrohttpd
     * clears the whole pool when a keep-alive request ends), 64 KiB -> 105 KiB
     * of RSS per turn, 16 KiB -> 55 KiB, 8 KiB -> 47 KiB.
     */
    {"CONNECTION_MEMORY_LIMIT", T_SIZE, F(connection_memory_limit), "8192", 8192,
     16777216, false, "Per-connection memory for request headers and buffers"},
    {"MAX_PENDING_TURNS", T_UINT, F(max_pending_turns), "20000", 1, 1000000, false,
     "Turns queued or in flight before new ones get 503"},
    {"DIALOG_CACHE_MB", T_UINT, F(dialog_cache_mb), "512", 1, 1048576, false,
     "Memory for parsed dialogs (estimated); the least recently used others are read on "
     "use"},
    {"STORAGE_FSYNC", T_BOOL, F(storage_fsync), "true", 0, 0, false,
     "fsync every write (false only for benchmarks)"},
    {"STORAGE_CHECKPOINT_MS", T_UINT, F(storage_checkpoint_ms), "800", 0, 1000, false,
     "A changed dialog file is rewritten from the journal this long after its change"},
    {"API_KEYS", T_STR, F(api_keys), "", 0, 0, true,
     "Comma-separated client keys; set: /api/v1 (but /health, /health/ready, "
     "/health/live) needs one (empty: open)"},
    {"API_KEYS_FILE", T_STR, F(api_keys_file), "", 0, 0, false,
     "File with more client keys, one per line ('#' comments)"},
    {"ADMIN_API_KEYS", T_STR, F(admin_api_keys), "", 0, 0, true,
     "Comma-separated keys that may also DELETE and run cleanups"},
    {"RATE_LIMIT_RPS", T_DOUBLE, F(rate_limit_rps), "0", 0, 1000000, false,
     "Requests per second per API key (per client IP without keys); 0: off"},
    {"RATE_LIMIT_BURST", T_UINT, F(rate_limit_burst), "20", 1, 1000000, false,
     "Token bucket size of RATE_LIMIT_RPS"},
    {"DIALOG_RATE_LIMIT_PER_MIN", T_UINT, F(dialog_rate_limit_per_min), "0", 0, 100000,
     false, "Customer messages per dialog per minute; 0: off"},
    {"CORS_ORIGINS", T_STR, F(cors_origins), "", 0, 0, false,
     "Comma-separated browser origins allowed by CORS, or *; empty: CORS off"},
    {"IDEMPOTENCY_TTL_S", T_UINT, F(idempotency_ttl_s), "86400", 1, 31536000, false,
     "How long an Idempotency-Key is remembered"},
    {"IDEMPOTENCY_MAX_KEYS", T_UINT, F(idempotency_max_keys), "100000", 1, 10000000,
     false, "Create Idempotency-Keys remembered at once; the oldest are forgotten first"},
    {"IDEMPOTENCY_MAX_PER_DIALOG", T_UINT, F(idempotency_max_per_dialog), "100", 1, 10000,
     false, "Idempotency records kept in one dialog; the oldest are dropped first"},
    {"ALLOW_ANONYMOUS", T_BOOL, F(allow_anonymous), "false", 0, 0, false,
     "With ENVIRONMENT=production, start without API keys (an open API) on purpose"},
    {"OPERATOR_SECRET", T_STR, F(operator_secret), "", 0, 0, true,
     "Shared secret that lets operators register themselves (POST /operators/register)"},
    {"OPERATOR_PINS", T_STR, F(operator_pins), "", 0, 0, true,
     "Comma-separated PINs that let operators register themselves"},
    {"OPERATOR_MAX_DIALOGS", T_UINT, F(operator_max_dialogs), "3", 1, 50, false,
     "Default concurrent limit: dialogs one operator holds at once"},
    {"OPERATOR_REPLY_TIMEOUT_S", T_UINT, F(operator_reply_timeout_s), "300", 5, 86400,
     false,
     "An assigned dialog without an operator reply this long goes back to the queue"},
    {"HUMAN_HANDOFF", T_STR, F(human_handoff), "request,supervisor", 0, 0, false,
     "What hands a dialog to a human: request, supervisor, degraded (comma-separated)"},
    {"QUEUE_MAX", T_UINT, F(queue_max), "10000", 0, 1000000, false,
     "Dialogs that may wait for an operator at once; past it they stay with the AI"},
    {"QUEUE_DEFAULT_HANDLE_S", T_UINT, F(queue_default_handle_s), "300", 1, 86400, false,
     "Handle time used for the queue's wait estimate until one is measured"},
    {"EVENTS_LOG_SIZE", T_UINT, F(events_log_size), "10000", 16, 1000000, false,
     "Live events kept for Last-Event-ID resumption"},
    {"OPERATOR_REGISTER_PER_MIN", T_UINT, F(operator_register_per_min), "10", 1, 10000,
     false, "Registration attempts allowed per client address per minute"},
    {"TELEGRAM_BOT_TOKEN", T_STR, F(telegram_bot_token), "", 0, 0, true,
     "Bot token from @BotFather; empty: no Telegram channel (docs/TELEGRAM.md)"},
    {"TELEGRAM_API_BASE_URL", T_STR, F(telegram_api_base_url), "https://api.telegram.org",
     0, 0, false, "Bot API server (a local telegram-bot-api, or a test fake)"},
    {"TELEGRAM_POLL_TIMEOUT_S", T_UINT, F(telegram_poll_timeout_s), "50", 1, 600, false,
     "getUpdates long-polling timeout"},
    {"TELEGRAM_SEND_RATE", T_DOUBLE, F(telegram_send_rate), "30", 0.1, 100000, false,
     "Messages per second the bot sends in all (the Bot API allows about 30)"},
    {"TELEGRAM_CHAT_INTERVAL_MS", T_UINT, F(telegram_chat_interval_ms), "1000", 1, 60000,
     false, "Least time between two messages to one chat (the Bot API: about 1 s)"},
    {"TELEGRAM_WEBHOOK_URL", T_STR, F(telegram_webhook_url), "", 0, 0, false,
     "Public HTTPS URL of POST /api/v1/telegram/webhook; empty: long polling"},
    {"STORE", T_STR, F(store), "file", 0, 0, false,
     "Storage backend: file (DIALOGS_STORAGE_PATH) or postgres (DATABASE_URL; one "
     "instance, preview)"},
    {"DATABASE_URL", T_STR, F(database_url), "", 0, 0, true,
     "libpq connection string or URI of STORE=postgres, e.g. host=/run/postgresql "
     "dbname=cca"},
    {"DATABASE_POOL_SIZE", T_UINT, F(database_pool_size), "2", 2, 16, false,
     "PostgreSQL connections: one writer, the rest for reads"},
    {"DATABASE_STATEMENT_TIMEOUT_MS", T_UINT, F(database_statement_timeout_ms), "5000",
     100, 600000, false, "statement_timeout of every PostgreSQL connection"},
};

static cca_rc set_value(struct cca_config *cfg, const struct setting *s, const char *v,
                        struct cca_error *err)
{
    char *base = (char *)cfg + s->offset;
    char *end = NULL;

    switch (s->type) {
        case T_STR:
            if (strlen(v) >= s->size)
                return cca_error_set(err, CCA_ERR_INVALID, "%s is longer than %zu bytes",
                                     s->name, s->size - 1);
            memcpy(base, v, strlen(v) + 1);
            return CCA_OK;
        case T_UINT:
        case T_SIZE: {
            unsigned long long n;

            errno = 0;
            n = strtoull(v, &end, 10);
            if (errno != 0 || end == v || *end != '\0' || v[0] == '-' ||
                (double)n < s->min || (double)n > s->max)
                return cca_error_set(err, CCA_ERR_INVALID,
                                     "%s='%s' is not an integer in %.0f..%.0f", s->name,
                                     v, s->min, s->max);
            if (s->type == T_UINT)
                *(unsigned *)base = (unsigned)n;
            else
                *(size_t *)base = (size_t)n;
            return CCA_OK;
        }
        case T_DOUBLE: {
            double d;

            /* Empty means "unset" only for a setting whose default is empty
             * (OPENAI_TEMPERATURE); elsewhere NAN would pass every range check. */
            if (v[0] == '\0' && s->def[0] == '\0') {
                *(double *)base = NAN;
                return CCA_OK;
            }
            errno = 0;
            d = strtod(v, &end);
            if (errno != 0 || end == v || *end != '\0' || !(d >= s->min && d <= s->max))
                return cca_error_set(err, CCA_ERR_INVALID,
                                     "%s='%s' is not a number in %g..%g", s->name, v,
                                     s->min, s->max);
            *(double *)base = d;
            return CCA_OK;
        }
        case T_BOOL:
            if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") ||
                !strcasecmp(v, "on")) {
                *(bool *)base = true;
            } else if (!strcasecmp(v, "false") || !strcmp(v, "0") ||
                       !strcasecmp(v, "no") || !strcasecmp(v, "off")) {
                *(bool *)base = false;
            } else {
                return cca_error_set(err, CCA_ERR_INVALID, "%s='%s' is not true or false",
                                     s->name, v);
            }
            return CCA_OK;
        case T_LEVEL: {
            int level = cca_log_parse_level(v);

            if (level < 0)
                return cca_error_set(
                    err, CCA_ERR_INVALID,
                    "%s='%s' is not error, warning, notice, info or debug", s->name, v);
            *(int *)base = level;
            return CCA_OK;
        }
        case T_AGENT: {
            enum cca_agent a;

            if (!cca_agent_parse(v, &a))
                return cca_error_set(err, CCA_ERR_INVALID,
                                     "%s='%s' is not tech_support, sales or supervisor",
                                     s->name, v);
            (void)snprintf(base, s->size, "%s", v);
            return CCA_OK;
        }
    }
    return cca_error_set(err, CCA_ERR_INTERNAL, "bad setting type");
}

static const struct setting *find_setting(const char *name)
{
    for (size_t i = 0; i < CCA_ARRAY_SIZE(settings); i++) {
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    }
    return NULL;
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s &&
           (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

/* Apply one .env line unless the environment already sets the key. */
static cca_rc env_file_line(struct cca_config *cfg, char *line, unsigned lineno,
                            const char *path, cca_config_warn_fn warn, void *warn_ctx,
                            struct cca_error *err)
{
    char msg[256];
    struct cca_error verr = {0};
    char *key;
    char *val;
    char *eq;
    const struct setting *s;
    size_t vlen;

    key = trim(line);
    if (*key == '\0' || *key == '#')
        return CCA_OK;
    if (strncmp(key, "export ", 7) == 0)
        key = trim(key + 7);
    eq = strchr(key, '=');
    if (eq == NULL)
        return cca_error_set(err, CCA_ERR_INVALID, "%s:%u: expected KEY=VALUE", path,
                             lineno);
    *eq = '\0';
    key = trim(key);
    val = trim(eq + 1);
    vlen = strlen(val);
    if (vlen >= 2 && (val[0] == '"' || val[0] == '\'') && val[vlen - 1] == val[0]) {
        val[vlen - 1] = '\0';
        val++;
    }
    s = find_setting(key);
    if (s == NULL) {
        if (warn != NULL) {
            (void)snprintf(msg, sizeof(msg), "%s:%u: unknown setting '%.64s', ignoring",
                           path, lineno, key);
            warn(warn_ctx, msg);
        }
        return CCA_OK;
    }
    if (secure_getenv(key) != NULL)
        return CCA_OK;
    if (set_value(cfg, s, val, &verr) != CCA_OK)
        return cca_error_set(err, verr.code, "%s:%u: %s", path, lineno, verr.msg);
    return CCA_OK;
}

static cca_rc load_env_file(struct cca_config *cfg, const char *path,
                            cca_config_warn_fn warn, void *warn_ctx,
                            struct cca_error *err)
{
    char line[4096];
    unsigned lineno = 0;
    cca_rc rc = CCA_OK;
    FILE *f = fopen(path, "re");

    if (f == NULL) {
        if (errno == ENOENT)
            return CCA_OK;
        return cca_error_set(err, CCA_ERR_IO, "cannot read %s: %s", path,
                             strerror(errno));
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = cca_error_set(err, CCA_ERR_INVALID, "%s:%u: line longer than %zu bytes",
                               path, lineno, sizeof(line) - 2);
            goto out;
        }
        rc = env_file_line(cfg, line, lineno, path, warn, warn_ctx, err);
        if (rc != CCA_OK)
            goto out;
    }
out:
    fclose(f);
    return rc;
}

cca_rc cca_config_load(struct cca_config *cfg, const char *env_file,
                       cca_config_warn_fn warn, void *warn_ctx, struct cca_error *reterr)
{
    cca_rc rc;

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < CCA_ARRAY_SIZE(settings); i++) {
        rc = set_value(cfg, &settings[i], settings[i].def, reterr);
        if (rc != CCA_OK)
            return rc;
    }
    if (env_file != NULL) {
        rc = load_env_file(cfg, env_file, warn, warn_ctx, reterr);
        if (rc != CCA_OK)
            return rc;
    }
    for (size_t i = 0; i < CCA_ARRAY_SIZE(settings); i++) {
        const char *v = secure_getenv(settings[i].name);

        if (v == NULL)
            continue;
        rc = set_value(cfg, &settings[i], v, reterr);
        if (rc != CCA_OK)
            return rc;
    }
    if (cfg->lexicon_path[0] == '\0' &&
        snprintf(cfg->lexicon_path, sizeof(cfg->lexicon_path), "%s/routing/lexicon.json",
                 cfg->data_dir) >= (int)sizeof(cfg->lexicon_path))
        return cca_error_set(reterr, CCA_ERR_INVALID, "DATA_DIR is too long");
    if (cfg->storage_path[0] == '\0')
        return cca_error_set(reterr, CCA_ERR_INVALID, "DIALOGS_STORAGE_PATH is empty");
    if (strcmp(cfg->store, "file") != 0 && strcmp(cfg->store, "postgres") != 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "STORE='%s' is not file or postgres", cfg->store);
    if (strcmp(cfg->store, "postgres") == 0 && cfg->database_url[0] == '\0')
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "STORE=postgres needs DATABASE_URL");
    return CCA_OK;
}

static const char *type_name(enum setting_type t)
{
    static const char *const names[] = {"string",  "integer", "bytes", "number",
                                        "boolean", "level",   "agent"};
    return names[t];
}

void cca_config_print_help(FILE *out)
{
    fprintf(out,
            "Usage: call-center-agents [serve]   start the HTTP service\n"
            "       call-center-agents route [--eval]   route stdin lines, no server\n"
            "       call-center-agents demo-data [--dialogs N ...]   write demo data "
            "(--help)\n"
            "       call-center-agents migrate   apply the PostgreSQL schema "
            "(DATABASE_URL) and exit\n"
            "       call-center-agents import --from-files DIR   copy a file store "
            "into PostgreSQL\n"
            "       call-center-agents version | --version\n"
            "       call-center-agents --help\n\n"
            "Settings (environment variables, also read from ./.env):\n\n");
    fprintf(out, "%-28s %-8s %-26s %s\n", "NAME", "TYPE", "DEFAULT", "RANGE / HELP");
    for (size_t i = 0; i < CCA_ARRAY_SIZE(settings); i++) {
        const struct setting *s = &settings[i];
        char range[64] = "";

        if (s->type == T_UINT || s->type == T_SIZE)
            (void)snprintf(range, sizeof(range), "%.0f..%.0f. ", s->min, s->max);
        else if (s->type == T_DOUBLE)
            (void)snprintf(range, sizeof(range), "%g..%g. ", s->min, s->max);
        fprintf(out, "%-28s %-8s %-26s %s%s\n", s->name, type_name(s->type),
                s->def[0] ? s->def : "\"\"", range, s->help);
    }
}

void cca_config_describe(const struct cca_config *cfg, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < CCA_ARRAY_SIZE(settings) && used < size; i++) {
        const struct setting *s = &settings[i];
        const char *base = (const char *)cfg + s->offset;
        char val[128];
        int n;

        switch (s->type) {
            case T_STR:
            case T_AGENT:
                if (s->secret)
                    (void)snprintf(val, sizeof(val), "%s", base[0] ? "<set>" : "<unset>");
                else
                    (void)snprintf(val, sizeof(val), "'%.100s'", base);
                break;
            case T_UINT:
                (void)snprintf(val, sizeof(val), "%u", *(const unsigned *)base);
                break;
            case T_SIZE:
                (void)snprintf(val, sizeof(val), "%zu", *(const size_t *)base);
                break;
            case T_DOUBLE:
                /* NAN is the unset value of a setting whose default is empty. */
                if (isnan(*(const double *)base))
                    (void)snprintf(val, sizeof(val), "''");
                else
                    (void)snprintf(val, sizeof(val), "%g", *(const double *)base);
                break;
            case T_BOOL:
                (void)snprintf(val, sizeof(val), "%s",
                               *(const bool *)base ? "true" : "false");
                break;
            case T_LEVEL:
                (void)snprintf(val, sizeof(val), "%s",
                               cca_log_level_name(*(const int *)base));
                break;
        }
        n = snprintf(buf + used, size - used, "%s%s=%s", used ? " " : "", s->name, val);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

bool cca_config_has_llm(const struct cca_config *cfg)
{
    return cfg->openai_api_key[0] != '\0';
}
