/* SPDX-License-Identifier: MIT */
/*
 * Integration harness: runs the real server binary (CCA_SERVER) and the fake
 * OpenAI (FAKE_OPENAI) as child processes on loopback ports chosen by the
 * kernel, each in a fresh temporary directory, and talks to them with libcurl.
 */
#ifndef CCA_HARNESS_H
#define CCA_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

struct proc {
    pid_t pid;
    unsigned port;
    char log[256];
};

/* A fresh temporary directory (path written into @dir, 64 bytes). */
void h_tmpdir(char dir[64]);

/* Remove every directory h_tmpdir made in this process (and, in PostgreSQL
 * mode, drop their databases). */
void h_remove_tmpdirs(void);

/*
 * h_store_pg - true in the suite's PostgreSQL mode (tests/pg/suite.sh):
 * CCA_TEST_STORE=postgres and CCA_TEST_DATABASE_URL, a running throwaway
 * server. Then every server h_server_start and h_server_spawn start gets
 * STORE=postgres and a DATABASE_URL of its own (h_database_url).
 */
bool h_store_pg(void);

/*
 * h_database_url - in PostgreSQL mode, the DATABASE_URL of the database of
 * directory @dir (created on first use, named after @dir: a restart in the same
 * directory finds its data again) into @url; false (and "") in file mode.
 */
bool h_database_url(const char *dir, char *url, size_t size);

/* h_database_name - the name of that database (only [a-z0-9_], 63 bytes at most). */
void h_database_name(const char *dir, char name[64]);

/*
 * h_file_store - true in file mode. In PostgreSQL mode prints "# skip in
 * postgres mode: @why" (a TAP comment in the test's output) and returns false:
 * for a check inside a test whose point is the file store (dialogs/ files,
 * journal, locks); a whole test of that kind uses H_FILE_STORE_ONLY.
 */
bool h_file_store(const char *why);

/*
 * H_FILE_STORE_ONLY - at the top of a test whose point is the file store: in
 * PostgreSQL mode print "# skip in postgres mode: @why" and return, so the
 * test counts as passed. Not cmocka's skip(): cmocka 1.1.5 reports a skipped
 * test as "not ok N # SKIP", which meson's TAP parser counts as a failure.
 */
#define H_FILE_STORE_ONLY(why)                                                           \
    do {                                                                                 \
        if (!h_file_store(why))                                                          \
            return;                                                                      \
    } while (0)

/*
 * h_dialogs_listed - the number of dialogs GET /api/v1/dialogues lists on
 * @port (every page), with "Authorization: Bearer @auth" unless @auth is
 * NULL: in PostgreSQL mode it stands for the number of dialog files. -1 when
 * a page is not 200.
 */
int h_dialogs_listed(unsigned port, const char *auth);

/* Start the fake OpenAI with --latency-ms @latency_ms. */
void h_fake_start(struct proc *p, const char *dir, unsigned latency_ms);

/*
 * Start the server with storage in @dir/dialogs; @env is a NULL-terminated list
 * of extra "NAME=value" settings (e.g. OPENAI_API_KEY). Waits for "event=listening".
 */
void h_server_start(struct proc *p, const char *dir, const char *const *env);

/*
 * h_server_spawn - start the server binary with command @cmd (NULL: serve) in
 * @dir, output to @log, without waiting for anything. @env (NULL-terminated,
 * may be NULL) comes before the defaults of h_server_start, so it overrides
 * them (PORT=..., DIALOGS_STORAGE_PATH=...). Returns the pid.
 */
pid_t h_server_spawn(const char *dir, const char *const *env, const char *cmd,
                     const char *log);

/* h_wait_exit - the exit status of @pid within @timeout_ms; -1 killed by a signal,
 * -2 still running (not killed). */
int h_wait_exit(pid_t pid, long timeout_ms);

/*
 * h_run - run the server binary (CCA_SERVER) with @argv (argv[0] its name,
 * NULL-terminated) and exactly the environment @envp, from @dir (no stray
 * .env), its output in @log; wait at most @timeout_ms. Returns its exit
 * status, -1 when a signal ended it, -2 when it ran out of time (then killed).
 */
int h_run(const char *dir, char *const argv[], char *const envp[], const char *log,
          long timeout_ms);

/* h_read_text - the first MiB of file @path as a string (new; "" if missing). */
char *h_read_text(const char *path);

/* SIGKILL @p and reap it (quietly: the death is intended). */
void h_kill(struct proc *p);

/* SIGTERM and wait (bounded); returns the exit status (-1 on signal/timeout). */
int h_stop(struct proc *p);

/*
 * One HTTP request to @port. @body may be NULL; @ctype NULL means
 * application/json when there is a body. Returns the status; *ret_json (if not
 * NULL) gets the parsed body or NULL; *ret_raw (if not NULL) the raw body (new).
 */
long h_http(unsigned port, const char *method, const char *path, const char *body,
            const char *ctype, json_t **ret_json, char **ret_raw, char *ret_allow,
            size_t allow_size);

/*
 * struct h_req - one request: @headers is NULL or a NULL-terminated list of
 * "Name: value" lines; @body_len 0 means strlen(@body); @ctype NULL means
 * application/json when there is a body.
 */
struct h_req {
    const char *method;
    const char *path;
    const char *body;
    size_t body_len;
    const char *ctype;
    const char *const *headers;
};

/* struct h_resp - @status 0 when no response; @json NULL unless the body is JSON. */
struct h_resp {
    long status;
    json_t *json;
    char *raw;
    size_t raw_len;
    char headers[8192];
};

/* h_request - send @req to 127.0.0.1:@port; returns resp->status. Free with h_resp_free.
 */
long h_request(unsigned port, const struct h_req *req, struct h_resp *resp);

/* h_resp_header - copy the first response header @name (any case) into @out. */
bool h_resp_header(const struct h_resp *resp, const char *name, char *out, size_t size);

void h_resp_free(struct h_resp *resp);

/* POST @body to the fake's control endpoint @path; returns the status. */
long h_fake_post(const struct proc *fake, const char *path, const char *body);

/* GET a fake endpoint as JSON (new reference). */
json_t *h_fake_get(const struct proc *fake, const char *path);

/*
 * h_metric - the value of one series of GET /metrics, named exactly as in the
 * exposition text, e.g. "cca_turns_total{reply=\"offline\"}"; -1 when absent.
 */
double h_metric(unsigned port, const char *series);

/* cmocka teardown: SIGKILL every child a failed test left running. */
int h_kill_all(void **state);

/* Number of threads of process @pid (from /proc/<pid>/status), -1 if unknown. */
int h_threads(pid_t pid);

/* Create a dialog with @initial (may be NULL); returns its id in @id (37 bytes). */
void h_create(unsigned port, const char *initial, char id[37]);

/*
 * h_dialog_file - the dialog stored in file @path as GET /dialogue/{id}
 * serves it (cca_dialog_dump, without the store's "store_lsn"): a new buffer,
 * or NULL if the file is missing, is not exactly one JSON document (RFC 8259,
 * as any JSON tool reads it), or is not a valid dialog @id.
 */
char *h_dialog_file(const char *path, const char *id);

/*
 * h_dialog_file_wait - h_dialog_file until it equals @want (the checkpointer
 * rewrites a file within STORAGE_CHECKPOINT_MS of a change), at most 3 s.
 * Returns the last result (new, may be NULL or differ when time ran out).
 */
char *h_dialog_file_wait(const char *path, const char *id, const char *want);

/* ---- operators (issue 11): JSON calls with a bearer, Server-Sent Events ---- */

/*
 * h_call - one request to @port with "Authorization: Bearer @auth" (@auth NULL:
 * no header) and JSON @body (may be NULL). Returns the status (0: no response);
 * *ret_json (if not NULL) gets the parsed body or NULL. Safe on any thread (no
 * cmocka assertion inside).
 */
long h_call(unsigned port, const char *method, const char *path, const char *auth,
            const char *body, json_t **ret_json);

/*
 * struct h_sse - one open event stream read on its own thread (libcurl): every
 * frame received is kept, in order, as {"id","event","data"} with "data" the
 * parsed JSON of the data lines (or the raw string when not JSON).
 */
struct h_sse;

/*
 * h_sse_open - GET @path on @port with "Accept: text/event-stream", a bearer
 * @auth (may be NULL) and, when not NULL, a Last-Event-ID header. Waits (at
 * most 5 s) for the response status and, on 200, for the first bytes of the
 * body (the "retry:" the server sends first), so the subscription exists on
 * return. Never NULL; see h_sse_status.
 */
struct h_sse *h_sse_open(unsigned port, const char *path, const char *auth,
                         const char *last_event_id);

/* h_sse_status - the response status (0: none yet); @ctype (may be NULL, 128
 * bytes) gets the Content-Type. */
long h_sse_status(struct h_sse *s, char *ctype);

/*
 * h_sse_wait - the next frame not yet taken by h_sse_wait whose event is @type
 * and, when @dialog_id is not NULL, whose data.data.dialog_id is @dialog_id;
 * waits at most @timeout_ms. The frame is marked taken. Returns a new reference
 * to {"id","event","data"} or NULL on timeout.
 */
json_t *h_sse_wait(struct h_sse *s, const char *type, const char *dialog_id,
                   long timeout_ms);

/* h_sse_count - frames received so far of @type (NULL: any) for @dialog_id (NULL:
 * any), taken or not. */
size_t h_sse_count(struct h_sse *s, const char *type, const char *dialog_id);

/* h_sse_frames - a new array copy of every frame received so far. */
json_t *h_sse_frames(struct h_sse *s);

/* h_sse_close - stop the stream (bounded: about a second) and free it. NULL ok. */
void h_sse_close(struct h_sse *s);

#endif
