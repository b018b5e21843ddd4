/* SPDX-License-Identifier: MIT */
/*
 * Server-Sent Events responses (http_sse.h) on libmicrohttpd 0.9.75, run as
 * MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME with a thread pool.
 *
 * An idle stream must cost no thread and no CPU. What the 0.9.75 sources say:
 *
 * 1. A content reader that returns 0 without suspending busy-loops. In
 *    try_ready_chunked_body (connection.c:1242) a 0 sets the state to
 *    MHD_CONNECTION_CHUNKED_BODY_UNREADY, whose event-loop info is
 *    MHD_EVENT_LOOP_INFO_BLOCK (connection.c:2545). MHD_epoll keeps such a
 *    connection in its "eready" list (daemon.c:5153-5167 removes only READ,
 *    WRITE and CLEANUP ones) and MHD_get_timeout answers 0 while that list is
 *    not empty (daemon.c:3922-3932): the worker spins. microhttpd.h:2558 says
 *    as much: "returning zero should only be used in conjunction with
 *    MHD_suspend_connection() to avoid busy waiting".
 *
 * 2. Suspending from inside the reader is allowed: "The only safe way to call
 *    this function is to call it from the MHD_AccessHandlerCallback or
 *    MHD_ContentReaderCallback" (microhttpd.h:3256; MHD's own
 *    test_quiesce_stream.c does it). The reader runs on the connection's
 *    worker thread, which internal_suspend_connection_ asserts
 *    (daemon.c:3112). After the reader returns 0, MHD_connection_handle_idle
 *    leaves its loop (`while (! connection->suspended)`, connection.c:4425)
 *    and skips the timeout check, the event-loop update and the epoll update
 *    for a suspended connection (connection.c:4196, 2410, 4862).
 *    MHD_resume_connection may be called from any thread ("safe to resume a
 *    suspended connection at any time", daemon.c:3238); it flags the
 *    connection and signals the worker's ITC (MHD_ALLOW_SUSPEND_RESUME
 *    includes MHD_USE_ITC). The worker moves it back and marks it read- and
 *    write-ready (daemon.c:3357), so its idle handler calls the reader again.
 *
 * 3. MHD_OPTION_CONNECTION_TIMEOUT does not close a suspended stream:
 *    suspending takes the connection off the timeout lists (daemon.c:3126-3135),
 *    connection_check_timedout returns false for it (connection.c:4196), and
 *    resuming restarts the timer (daemon.c:3339 "Reset timeout timer on
 *    resume"). The timeout still closes a stream whose client stops reading
 *    (the connection then waits to write, not suspended): wanted. Heartbeats
 *    (15 s) go out anyway, for proxies.
 *
 * 4. A suspended connection is not watched: MHD does not see a client leave
 *    (microhttpd.h:3253) and MHD_stop_daemon panics on suspended connections
 *    (daemon.c:7549-7551). So before suspending the reader peeks at the socket
 *    (a 0-byte recv is the client's FIN), every heartbeat resumes idle
 *    streams (a gone client then fails the write or shows EPOLLHUP), and on
 *    shutdown every stream is woken and ends (main.c: cca_events_wake_all).
 *
 * Races, and why there are none:
 * - Lost wake. The wake (any thread, with the event log's mutex held) and the
 *   reader (the worker) share s->mu and two flags. The reader clears
 *   `pending`, reads, and if nothing came takes s->mu again: `pending` set
 *   means a wake came in between, so it reads again; otherwise it suspends
 *   and sets `suspended` under s->mu. The wake, under s->mu, resumes a
 *   suspended stream, else sets `pending`. MHD_resume_connection is thus only
 *   called on a connection this stream suspended, exactly once per suspend.
 * - Wake after free. The subscription is ended in the response's free
 *   callback, before the stream is freed; cca_events_unsubscribe waits for
 *   the log's mutex, under which every wake runs, so no wake is running or
 *   will run once it returns. The connection outlives its response
 *   (cleanup_connection destroys the response first, connection.c:4253-4257), so a
 *   wake never resumes a freed connection; MHD calls the free callback without
 *   any of its locks held (response.c:1964-1969).
 * - Lock order: event log -> s->mu -> MHD's cleanup_connection_mutex (resume
 *   and suspend both take it). The reader holds MHD's response mutex and
 *   takes the log's mutex and s->mu one at a time, never the log's inside
 *   s->mu.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <microhttpd.h>

#include "cca/events.h"
#include "cca/mem.h"

#include "http_int.h"
#include "http_sse.h"

struct sse_stream {
    pthread_mutex_t mu;
    bool suspended; /* this stream suspended its connection; a wake resumes it */
    bool pending;   /* a wake came while not suspended: read again */
    struct cca_http *http;
    struct MHD_Connection *conn;
    struct cca_events_sub *sub;
};

/* Event log (any thread, log mutex held): something is pending for @ctx. */
static void sse_wake(void *ctx)
{
    struct sse_stream *s = ctx;

    pthread_mutex_lock(&s->mu);
    if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    } else {
        s->pending = true;
    }
    pthread_mutex_unlock(&s->mu);
}

/* The client closed its side (FIN or reset): end the stream now, not at the
 * next heartbeat. Pipelined bytes (recv > 0) are left to MHD. */
static bool peer_gone(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    char c;
    ssize_t n;

    if (ci == NULL)
        return false;
    n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* MHD worker, response mutex held. */
static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sse_stream *s = cls;

    (void)pos;
    for (;;) {
        size_t n;

        pthread_mutex_lock(&s->mu);
        s->pending = false;
        pthread_mutex_unlock(&s->mu);
        if (atomic_load(&s->http->quiesced))
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (max < CCA_EVENTS_READ_MIN) /* not with an 8 KiB pool; never stall */
            return MHD_CONTENT_READER_END_WITH_ERROR;
        n = cca_events_read(s->sub, buf, max);
        if (n > 0)
            return (ssize_t)n;
        if (peer_gone(s->conn))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        pthread_mutex_lock(&s->mu);
        if (!s->pending) {
            MHD_suspend_connection(s->conn);
            s->suspended = true;
            pthread_mutex_unlock(&s->mu);
            return 0;
        }
        pthread_mutex_unlock(&s->mu);
    }
}

static void sse_stream_free(struct sse_stream *s)
{
    if (s == NULL)
        return;
    cca_events_unsubscribe(s->sub); /* from here on no wake runs */
    (void)pthread_mutex_destroy(&s->mu);
    free(s);
}

/* MHD: the response is gone (any thread, no MHD lock held). */
static void sse_free(void *cls)
{
    sse_stream_free(cls);
}

void cca_http_sse_respond(struct cca_http_request *r, struct cca_events *ev,
                          const char *const *topics, size_t ntopics)
{
    struct sse_stream *s = cca_xcalloc(1, sizeof(*s));
    struct MHD_Response *resp = NULL;
    const char *last_id =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");

    (void)pthread_mutex_init(&s->mu, NULL);
    s->http = r->http;
    s->conn = r->conn;
    if (cca_events_subscribe(ev, topics, ntopics, last_id, sse_wake, s, &s->sub) !=
        CCA_OK) {
        cca_http_respond_error(r, 400, "invalid", "invalid event topics");
        goto out;
    }
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, CCA_HTTP_SSE_BLOCK,
                                             sse_reader, s, sse_free);
    if (resp == NULL) {
        cca_http_respond_error(r, 500, "internal", "cannot create the event stream");
        goto out;
    }
    s = NULL; /* the response owns it now: sse_free */
    /* Streams must reach the client as written: no caching, no proxy buffering. */
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    (void)MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    if (r->stream != NULL)
        MHD_destroy_response(r->stream);
    r->stream = resp;
    r->status = 200;
    r->content_type = "text/event-stream";
    r->ready = true;
out:
    sse_stream_free(s);
}
