/* SPDX-License-Identifier: MIT */
/*
 * bare_mhd - the ceiling peer of scenario S1: a bare libmicrohttpd server that
 * answers every GET with the same bytes (a file read once at start), with the
 * threading mode of src/http_server.c (MHD_USE_EPOLL_INTERNAL_THREAD, a thread
 * pool of THREADS, the same connection limit, timeout and memory limit).
 *
 *   bare_mhd --file PATH [--port N] [--threads N] [--port-file PATH]
 *
 * Binds 127.0.0.1; prints "port=N" once listening; stops on SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

static struct MHD_Response *resp;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **ctx)
{
    (void)cls;
    (void)url;
    (void)version;
    (void)upload;
    (void)upload_size;
    if (!*ctx) { /* first call: headers only */
        *ctx = (void *)1;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0) {
        *upload_size = 0;
    }
    return MHD_queue_response(c, MHD_HTTP_OK, resp);
}

int main(int argc, char **argv)
{
    const char *file = NULL, *port_file = NULL;
    unsigned port = 0, threads = 2;
    struct MHD_Daemon *d;
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;
    char *buf;
    long len;
    FILE *f;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--file"))
            file = argv[i + 1];
        else if (!strcmp(argv[i], "--port"))
            port = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--port-file"))
            port_file = argv[i + 1];
    }
    if (!file) {
        fprintf(stderr, "usage: bare_mhd --file PATH [--port N] [--threads N]\n");
        return 2;
    }
    f = fopen(file, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "bare_mhd: %s: %s\n", file, strerror(errno));
        return 1;
    }
    buf = malloc((size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "bare_mhd: cannot read %s\n", file);
        return 1;
    }
    fclose(f);
    resp = MHD_create_response_from_buffer((size_t)len, buf, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "Content-Type", "application/json");

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    signal(SIGPIPE, SIG_IGN);
    d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
        on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, 19000u, MHD_OPTION_CONNECTION_TIMEOUT, 120u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)8192,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "bare_mhd: cannot start the daemon\n");
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    port = info ? info->port : port;
    printf("port=%u\n", port);
    fflush(stdout);
    if (port_file) {
        f = fopen(port_file, "w");
        if (f) {
            fprintf(f, "%u\n", port);
            fclose(f);
        }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    while (!stop)
        pause();
    MHD_stop_daemon(d);
    MHD_destroy_response(resp);
    free(buf);
    return 0;
}
