/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cca/metrics.h"

const double cca_hist_seconds_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                          0.05,   0.1,   0.25,   0.5,   1,    2.5,
                                          5,      10,    30,     60};
const unsigned cca_hist_seconds_n =
    sizeof(cca_hist_seconds_bounds) / sizeof(cca_hist_seconds_bounds[0]);

const double cca_hist_batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
const unsigned cca_hist_batch_n =
    sizeof(cca_hist_batch_bounds) / sizeof(cca_hist_batch_bounds[0]);

void cca_hist_init(struct cca_hist *h, const double *bounds, unsigned n)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->n = n < CCA_HIST_MAX_BOUNDS ? n : CCA_HIST_MAX_BOUNDS;
}

/* Count @v (>= 0) in its bucket, and @micro (v times 1e6, rounded) in the sum. */
static void observe(struct cca_hist *h, double v, uint64_t micro)
{
    unsigned i = 0;

    /* Linear scan: at most 16 compares, cheaper than a branchy bisection here. */
    while (i < h->n && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_micro, micro, memory_order_relaxed);
}

void cca_hist_observe(struct cca_hist *h, double v)
{
    if (!(v >= 0))
        v = 0;
    observe(h, v, (uint64_t)llround(v * 1e6));
}

void cca_hist_observe_us(struct cca_hist *h, int64_t us)
{
    /* The same bucket and sum as cca_hist_observe(us / 1e6), without llround. */
    if (us < 0)
        us = 0;
    observe(h, (double)us / 1e6, (uint64_t)us);
}

uint64_t cca_hist_count(const struct cca_hist *h)
{
    uint64_t n = 0;

    for (unsigned i = 0; i <= h->n; i++)
        n += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    return n;
}

void cca_metrics_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void cca_metrics_sample(FILE *out, const char *name, const char *labels, double value)
{
    if (labels != NULL && labels[0] != '\0')
        fprintf(out, "%s{%s} %.15g\n", name, labels, value);
    else
        fprintf(out, "%s %.15g\n", name, value);
}

void cca_metrics_hist(FILE *out, const char *name, const char *labels,
                      const struct cca_hist *h)
{
    const char *sep = labels != NULL && labels[0] != '\0' ? "," : "";
    const char *lab = labels != NULL ? labels : "";
    uint64_t cum = 0;

    for (unsigned i = 0; i <= h->n; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->n)
            fprintf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, lab, sep, h->bounds[i],
                    (unsigned long long)cum);
        else
            fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, lab, sep,
                    (unsigned long long)cum);
    }
    fprintf(out, "%s_sum%s%s%s %.6f\n", name, lab[0] ? "{" : "", lab, lab[0] ? "}" : "",
            (double)atomic_load_explicit(&h->sum_micro, memory_order_relaxed) / 1e6);
    fprintf(out, "%s_count%s%s%s %llu\n", name, lab[0] ? "{" : "", lab, lab[0] ? "}" : "",
            (unsigned long long)cum);
}

void cca_metrics_hist_family(FILE *out, const char *name, const char *help,
                             const struct cca_hist *h)
{
    cca_metrics_family(out, name, "histogram", help);
    cca_metrics_hist(out, name, NULL, h);
}

void cca_metrics_single(FILE *out, const char *name, const char *type, const char *help,
                        double value)
{
    cca_metrics_family(out, name, type, help);
    cca_metrics_sample(out, name, NULL, value);
}

void cca_metrics_results(FILE *out, const char *name, const char *help, double ok,
                         double error)
{
    cca_metrics_family(out, name, "counter", help);
    cca_metrics_sample(out, name, "result=\"ok\"", ok);
    cca_metrics_sample(out, name, "result=\"error\"", error);
}

void cca_process_stats_read(struct cca_process_stats *ret)
{
    char buf[1024];
    struct rlimit rl;
    FILE *f;
    DIR *d;
    long tick = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);

    memset(ret, 0, sizeof(*ret));
    f = fopen("/proc/self/stat", "r");
    if (f != NULL) {
        if (fgets(buf, sizeof(buf), f) != NULL) {
            /* Fields after the ")" that ends comm (proc(5)): state is field 3. */
            const char *p = strrchr(buf, ')');
            unsigned long utime = 0, stime = 0;
            long threads = 0, rss = 0;

            if (p != NULL &&
                sscanf(p + 2,
                       "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
                       "%*d %ld %*d %*u %*u %ld",
                       &utime, &stime, &threads, &rss) == 4) {
                ret->cpu_seconds = tick > 0 ? (double)(utime + stime) / (double)tick : 0;
                ret->threads = (unsigned)threads;
                ret->rss_bytes = (uint64_t)rss * (uint64_t)(page > 0 ? page : 4096);
            }
        }
        fclose(f);
    }
    d = opendir("/proc/self/fd");
    if (d != NULL) {
        struct dirent *e;

        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                ret->open_fds++;
        closedir(d);
        if (ret->open_fds > 0)
            ret->open_fds--; /* the DIR's own descriptor */
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        ret->max_fds = (uint64_t)rl.rlim_cur;
}
