/* SPDX-License-Identifier: MIT */
#ifndef CCA_METRICS_H
#define CCA_METRICS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Metric primitives and the Prometheus text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/). Each module
 * owns its counters and histograms (lock-free atomics, relaxed ordering) and
 * exposes them read-only; GET /metrics (src/http_routes.c) renders them with
 * the writers below. Names follow https://prometheus.io/docs/practices/naming/:
 * base units (seconds, bytes), "_total" for counters. No label ever carries a
 * dialog id, a customer id or a key.
 */

#define CCA_HIST_MAX_BOUNDS 16

/*
 * struct cca_hist - a fixed-bucket histogram. @bounds: ascending upper bounds
 * in base units (borrowed, static); @n <= CCA_HIST_MAX_BOUNDS. @counts holds
 * non-cumulative bucket counts, the last one for +Inf. @sum_micro is the sum
 * of observations times 1e6, so seconds are summed in whole microseconds.
 */
struct cca_hist {
    const double *bounds;
    unsigned n;
    _Atomic uint64_t counts[CCA_HIST_MAX_BOUNDS + 1];
    _Atomic uint64_t sum_micro;
};

/* Latency bounds in seconds, 0.5 ms .. 60 s (16 buckets). */
extern const double cca_hist_seconds_bounds[];
extern const unsigned cca_hist_seconds_n;

/* Batch-size bounds, 1 .. 1024 (powers of two, 11 buckets). */
extern const double cca_hist_batch_bounds[];
extern const unsigned cca_hist_batch_n;

/* cca_hist_init - zero @h and set its bounds (see struct). Not thread-safe. */
void cca_hist_init(struct cca_hist *h, const double *bounds, unsigned n);

/* cca_hist_observe - add one observation @v (base units, >= 0). Thread-safe. */
void cca_hist_observe(struct cca_hist *h, double v);

/* cca_hist_observe_us - add a duration of @us microseconds as seconds. Thread-safe. */
void cca_hist_observe_us(struct cca_hist *h, int64_t us);

/* cca_hist_count - the number of observations so far. Thread-safe. */
uint64_t cca_hist_count(const struct cca_hist *h);

/*
 * cca_metrics_family - write the "# HELP" and "# TYPE" lines of metric @name.
 * @type: "counter", "gauge" or "histogram". @help: one line, no backslash or
 * newline. Call once per family, before its samples.
 */
void cca_metrics_family(FILE *out, const char *name, const char *type, const char *help);

/*
 * cca_metrics_sample - write one sample line "name{labels} value". @labels is
 * NULL or the text between the braces, already escaped (label values here are
 * fixed identifiers); @value is printed with %.15g (integers below 1e15 exactly).
 */
void cca_metrics_sample(FILE *out, const char *name, const char *labels, double value);

/*
 * cca_metrics_hist - write the _bucket (cumulative, with le="+Inf"), _sum and
 * _count lines of histogram @name with extra @labels (NULL or "k=\"v\"").
 * Reads the atomics once each; concurrent observations may make _count
 * differ from the +Inf bucket by those in flight, which Prometheus tolerates.
 */
void cca_metrics_hist(FILE *out, const char *name, const char *labels,
                      const struct cca_hist *h);

/* cca_metrics_hist_family - the family lines plus one unlabelled histogram @h. */
void cca_metrics_hist_family(FILE *out, const char *name, const char *help,
                             const struct cca_hist *h);

/* cca_metrics_single - the family lines plus one unlabelled sample @value. */
void cca_metrics_single(FILE *out, const char *name, const char *type, const char *help,
                        double value);

/*
 * cca_metrics_results - counter family @name with its two samples
 * result="ok" (@ok) and result="error" (@error): the shape of every
 * "done or failed" counter (store writes, checkpoints, batches, reads).
 */
void cca_metrics_results(FILE *out, const char *name, const char *help, double ok,
                         double error);

/*
 * struct cca_process_stats - this process, from /proc/self (proc(5)).
 * @cpu_seconds: user+system time; @rss_bytes: resident set; @threads;
 * @open_fds; @max_fds: the soft RLIMIT_NOFILE. Fields the kernel does not
 * offer are 0.
 */
struct cca_process_stats {
    double cpu_seconds;
    uint64_t rss_bytes;
    unsigned threads;
    unsigned open_fds;
    uint64_t max_fds;
};

/* cca_process_stats_read - fill *ret. Thread-safe. */
void cca_process_stats_read(struct cca_process_stats *ret);

#endif
