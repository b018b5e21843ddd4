/* SPDX-License-Identifier: MIT */
#ifndef CCA_LOG_H
#define CCA_LOG_H

#include <syslog.h>

#include "cca/common.h"

/*
 * Logging (house style 8.6): one line per event on stderr,
 *   2025-01-15T10:30:00.123Z INFO  file.c:42 req=<uuid|-> msg key=value ...
 * Levels are the syslog constants. The level check happens before the arguments
 * are evaluated. Only edge layers log; secrets are never passed in.
 */
extern int cca_log_level;

#define cca_log(level, ...)                                                              \
    do {                                                                                 \
        if ((level) <= cca_log_level)                                                    \
            cca_log_write((level), __FILE__, __LINE__, __VA_ARGS__);                     \
    } while (0)

/* cca_log_write - format and write one line. Thread-safe (one write(2) per line). */
void cca_log_write(int level, const char *file, int line, const char *fmt, ...)
    CCA_PRINTF(4, 5);

/*
 * cca_log_parse_level - "error", "warning", "notice", "info", "debug"
 * (case-insensitive; "warn" too). Returns the syslog level or -1.
 */
int cca_log_parse_level(const char *name);

/*
 * cca_log_level_name - the name of syslog @level as LOG_LEVEL takes it
 * ("info"), or "unknown". Static string; thread-safe.
 */
const char *cca_log_level_name(int level);

/*
 * cca_log_set_request_id - set the request id printed by this thread's log lines
 * (NULL clears it). @id is copied. Thread-local.
 */
void cca_log_set_request_id(const char *id);

#endif
