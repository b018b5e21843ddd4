/* SPDX-License-Identifier: MIT */
/*
 * Private to the http_*.c files: Server-Sent Events responses over the event
 * log (include/cca/events.h), WHATWG HTML Living Standard section 9.2
 * "Server-sent events".
 */
#ifndef CCA_HTTP_SSE_H
#define CCA_HTTP_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "cca/events.h"

#include "http_int.h"

/*
 * MHD's block size for a stream's response. libmicrohttpd 0.9.75 allocates
 * it inside every response (response.c, MHD_create_response_from_callback)
 * but fills it only for HTTP/1.0 clients (no chunked encoding); HTTP/1.1
 * streams are written straight into the connection's buffer. Kept at the
 * minimum cca_events_read serves because every open stream pays for it
 * (measured: 1024 -> 256 saves 0.75 KiB of RSS per stream); an HTTP/1.0
 * client gets frames in 256-byte pieces, still whole in the end.
 */
#define CCA_HTTP_SSE_BLOCK CCA_EVENTS_READ_MIN

/*
 * cca_http_sse_respond - answer @r with an event stream of the events of the
 * @ntopics topics @topics (borrowed; 1..CCA_EVENTS_MAX_TOPICS) of @ev
 * (borrowed: must outlive every stream, i.e. the HTTP server).
 *
 * Reads the request's Last-Event-ID header to resume, subscribes, and makes
 * the response: r->stream (a new MHD response, from then on owned by the
 * request as http_int.h describes), r->status = 200, r->content_type =
 * "text/event-stream", r->ready = true. The response carries
 * "Cache-Control: no-store" and "X-Accel-Buffering: no" itself. The
 * subscription ends when MHD frees the response (client gone, stream ended,
 * or never queued). On an invalid topic list it answers 400 (a caller bug)
 * through cca_http_respond_error instead.
 *
 * A stream waits without a thread: when nothing is pending its reader
 * suspends the connection, and the subscription's wake resumes it (the
 * design and the libmicrohttpd 0.9.75 facts it rests on are in http_sse.c).
 * It ends (MHD_CONTENT_READER_END_OF_STREAM) once h->quiesced is set and the
 * stream is woken (main.c wakes every stream, cca_events_wake_all, after
 * cca_http_quiesce; the engine's tick sends the heartbeats,
 * CCA_EVENTS_HEARTBEAT_MS).
 *
 * Must be called from a request handler (an MHD thread), once per request.
 */
void cca_http_sse_respond(struct cca_http_request *r, struct cca_events *ev,
                          const char *const *topics, size_t ntopics);

#endif
