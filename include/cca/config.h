/* SPDX-License-Identifier: MIT */
#ifndef CCA_CONFIG_H
#define CCA_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cca/common.h"

/*
 * Configuration: one static table (src/config.c) gives every setting its
 * environment variable, type, default, range and help text (house style 8.7).
 * Sources, later ones winning: defaults, a .env file, the process environment.
 * After cca_config_load the struct is treated as immutable and passed as
 * `const struct cca_config *`.
 */
struct cca_config {
    char host[256];
    unsigned port;
    char storage_path[PATH_MAX];
    char data_dir[PATH_MAX];
    char lexicon_path[PATH_MAX];
    int log_level; /* syslog level */
    char environment[32];
    char openai_base_url[512];
    char openai_api_key[512]; /* secret: never logged or printed */
    char openai_model[128];
    double openai_temperature; /* NAN: use each agent's own temperature */
    unsigned openai_max_tokens;
    double llm_timeout_s;
    unsigned llm_max_retries;
    unsigned llm_connect_timeout_ms;
    size_t llm_max_response_bytes;
    unsigned llm_backoff_ms;
    unsigned max_dialog_history;
    unsigned max_dialog_messages;
    size_t max_body_bytes;
    unsigned dialog_inactivity_timeout_s;
    char router_default_agent[32];
    double router_min_score;
    double router_min_margin;
    unsigned threads;
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned connection_timeout_s;
    size_t connection_memory_limit;
    unsigned max_pending_turns;
    unsigned dialog_cache_mb; /* memory budget of parsed dialogs (estimated) */
    bool storage_fsync;
    unsigned storage_checkpoint_ms; /* delay before a changed file is rewritten */
    char api_keys[4096];            /* secret: comma-separated client keys */
    char api_keys_file[PATH_MAX];
    char admin_api_keys[4096]; /* secret: comma-separated admin keys */
    double rate_limit_rps;     /* 0: no per-client rate limit */
    unsigned rate_limit_burst;
    unsigned dialog_rate_limit_per_min; /* 0: no per-dialog message limit */
    char cors_origins[2048];            /* comma-separated, "*" or "" (CORS off) */
    unsigned idempotency_ttl_s;
    unsigned idempotency_max_keys;       /* create keys remembered at once */
    unsigned idempotency_max_per_dialog; /* records kept in one dialog document */
    bool allow_anonymous;                /* production without API keys, on purpose */
    /* The human side (docs/OPERATORS.md). */
    char operator_secret[512]; /* secret: self-registration with a shared secret */
    char operator_pins[1024];  /* secret: comma-separated registration PINs */
    unsigned operator_max_dialogs;
    unsigned operator_reply_timeout_s;
    char human_handoff[128]; /* "request,supervisor,degraded", any subset */
    unsigned queue_max;
    unsigned queue_default_handle_s;
    unsigned events_log_size;
    unsigned operator_register_per_min;
    /* The Telegram channel (docs/TELEGRAM.md). */
    char telegram_bot_token[256]; /* secret: never logged; "": no channel */
    char telegram_api_base_url[512];
    unsigned telegram_poll_timeout_s;
    double telegram_send_rate;          /* messages per second, all chats */
    unsigned telegram_chat_interval_ms; /* least time between two sends to one chat */
    char telegram_webhook_url[512];     /* "": long polling */
    /* The store backend (docs/internals/store.md, docs/internals/store_pg.md). */
    char store[16];                         /* "file" or "postgres" */
    char database_url[2048];                /* secret: a libpq connection string */
    unsigned database_pool_size;            /* connections: 1 writer + readers */
    unsigned database_statement_timeout_ms; /* statement_timeout of each connection */
};

/* cca_config_warn_fn - receives one warning (unknown .env key ...), NUL-terminated. */
typedef void (*cca_config_warn_fn)(void *ctx, const char *msg);

/*
 * cca_config_load - fill @cfg from defaults, then @env_file (may be NULL or
 * missing: a missing file is not an error), then the environment
 * (secure_getenv). The .env format is KEY=VALUE lines, '#' comments, optional
 * "export " prefix and single or double quotes; a line longer than 4 KiB is an
 * error. Unknown keys in the file go to @warn (may be NULL), never fatal.
 * Returns CCA_OK, or CCA_ERR_INVALID naming the variable and its allowed range
 * in @reterr (a value from the file is prefixed with "<file>:<line>: "),
 * CCA_ERR_IO for an unreadable file. Not thread-safe (startup only).
 */
cca_rc cca_config_load(struct cca_config *cfg, const char *env_file,
                       cca_config_warn_fn warn, void *warn_ctx,
                       struct cca_error *reterr) CCA_WUR;

/* cca_config_print_help - write the settings table (name, default, range, help) to @out.
 */
void cca_config_print_help(FILE *out);

/*
 * cca_config_describe - write "NAME=value" pairs, space separated, into @buf
 * (capped at @size, always NUL-terminated); secrets appear as "<set>" or
 * "<unset>". For the start-up log line.
 */
void cca_config_describe(const struct cca_config *cfg, char *buf, size_t size);

/* cca_config_has_llm - true when an OpenAI API key is configured. */
bool cca_config_has_llm(const struct cca_config *cfg);

#endif
