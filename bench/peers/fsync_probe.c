/* SPDX-License-Identifier: MIT */
/*
 * fsync_probe - the disk peer of scenario S2: the serial write+fsync rate and
 * the fsync latency of a directory's file system, the physical limit of
 * "every acknowledged message is durable" without group commit.
 *
 *   fsync_probe --dir DIR [--seconds S] [--bytes N]
 *
 * Serially: pwrite N bytes (default 4096) at offset 0 of one file in DIR,
 * fsync it; repeat for S seconds (default 2). The file is removed at the end.
 * Prints one JSON object: {"ops","seconds","rate_per_s","p50_us","p99_us",
 * "max_us","bytes"}; the latencies are of write+fsync, from every sample.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p)
{
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    return n ? v[(k < 1 ? 1 : k) - 1] : 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    double seconds = 2, t0, t;
    size_t bytes = 4096, n = 0, cap = 1 << 16;
    char path[4096], *buf;
    double *lat;
    int fd;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--bytes"))
            bytes = (size_t)atol(argv[i + 1]);
    }
    if (!dir || bytes == 0) {
        fprintf(stderr, "usage: fsync_probe --dir DIR [--seconds S] [--bytes N]\n");
        return 2;
    }
    snprintf(path, sizeof(path), "%s/.fsync_probe.%d", dir, (int)getpid());
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    buf = malloc(bytes);
    lat = malloc(cap * sizeof(*lat));
    if (fd < 0 || !buf || !lat) {
        fprintf(stderr, "fsync_probe: %s: %s\n", path, strerror(errno));
        return 1;
    }
    memset(buf, 'x', bytes);
    t0 = now_s();
    do {
        double a = now_s();
        if (pwrite(fd, buf, bytes, 0) != (ssize_t)bytes || fsync(fd) != 0) {
            fprintf(stderr, "fsync_probe: %s\n", strerror(errno));
            return 1;
        }
        t = now_s();
        if (n == cap) {
            cap *= 2;
            lat = realloc(lat, cap * sizeof(*lat));
            if (!lat)
                return 1;
        }
        lat[n++] = (t - a) * 1e6;
    } while (t - t0 < seconds);
    close(fd);
    unlink(path);
    qsort(lat, n, sizeof(*lat), cmp_double);
    printf("{\"ops\": %zu, \"seconds\": %.3f, \"rate_per_s\": %.1f, \"p50_us\": %.0f, "
           "\"p99_us\": %.0f, \"max_us\": %.0f, \"bytes\": %zu}\n",
           n, t - t0, (double)n / (t - t0), pct(lat, n, 50), pct(lat, n, 99), lat[n - 1],
           bytes);
    free(lat);
    free(buf);
    return 0;
}
