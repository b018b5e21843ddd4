/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cca/log.h"

int cca_log_level = LOG_INFO;

static _Thread_local char request_id[40];

static const char *level_name(int level)
{
    switch (level) {
        case LOG_EMERG:
        case LOG_ALERT:
        case LOG_CRIT:
        case LOG_ERR:
            return "ERROR";
        case LOG_WARNING:
            return "WARN";
        case LOG_NOTICE:
            return "NOTICE";
        case LOG_INFO:
            return "INFO";
        default:
            return "DEBUG";
    }
}

void cca_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    char buf[2048];
    char ts[CCA_TIME_LEN];
    const char *base = strrchr(file, '/');
    va_list ap;
    int n;
    int m;

    cca_time_format(cca_time_wall_ms(), ts);
    n = snprintf(buf, sizeof(buf), "%s %-6s %s:%d req=%s ", ts, level_name(level),
                 base ? base + 1 : file, line, request_id[0] ? request_id : "-");
    if (n < 0)
        return;
    va_start(ap, fmt);
    m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2; /* truncated: the line still ends with \n */
    buf[n++] = '\n';
    /* One write(2) per line keeps lines from different threads whole. */
    (void)!write(STDERR_FILENO, buf, (size_t)n);
}

/* The level names; the first of each level is the one cca_log_level_name gives. */
static const struct {
    const char *name;
    int level;
} levels[] = {
    {"error", LOG_ERR},     {"warning", LOG_WARNING}, {"warn", LOG_WARNING},
    {"notice", LOG_NOTICE}, {"info", LOG_INFO},       {"debug", LOG_DEBUG},
};

int cca_log_parse_level(const char *name)
{
    for (size_t i = 0; name != NULL && i < CCA_ARRAY_SIZE(levels); i++) {
        if (strcasecmp(name, levels[i].name) == 0)
            return levels[i].level;
    }
    return -1;
}

const char *cca_log_level_name(int level)
{
    for (size_t i = 0; i < CCA_ARRAY_SIZE(levels); i++) {
        if (levels[i].level == level)
            return levels[i].name;
    }
    return "unknown";
}

void cca_log_set_request_id(const char *id)
{
    if (id == NULL) {
        request_id[0] = '\0';
        return;
    }
    (void)snprintf(request_id, sizeof(request_id), "%s", id);
}
