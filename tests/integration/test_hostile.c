/* SPDX-License-Identifier: MIT */
/*
 * Hostile and malformed input (issue "Reliability", section "Hostile and
 * malformed input"). One static table, one row per attack; every row asserts
 * the exact status and error code, then that the server is still healthy
 * (GET /api/v1/health/live is 200, the process is alive) and that storage
 * holds only <canonical-uuid>.json files, as many as the rows created.
 *
 * Ordinary rows go through libcurl (h_request); rows that curl would normalise
 * or cannot express (literal "../" and "%00" in the request line, a body cut
 * short, chunked uploads left open, header floods) are written byte by byte
 * on a raw socket. Two separate tests cover connection floods beyond
 * MAX_CONNECTIONS and slowloris clients against CONNECTION_TIMEOUT_S.
 *
 * Decisions asserted here (README "Errors", openapi.yaml info):
 * - unknown fields in bodies are ignored;
 * - duplicate keys are rejected: 400 invalid_json;
 * - an upper-case dialog id is canonicalised (same dialog, no new file);
 *   braced, URN, dash-less or suffixed ids are 404 not_found;
 * - a "%00" in the path never truncates it: 404 not_found;
 * - numbers out of range where strings are expected are 422 validation_error;
 * - header floods get libmicrohttpd's own 431 (414 for a huge URL), and a
 *   malformed Content-Length its own 400 or 413: HTML bodies, no "code".
 */
#include "cca_test.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>

#include "cca/common.h"

#include "harness.h"

#define MAX_BODY        1048576     /* MAX_BODY_BYTES of the table's server */
#define READ_TIMEOUT_MS 10000       /* how long a raw row waits for its response */
#define DEEP            100000      /* JSON nesting depth of the deep rows */
#define HUGE_CL         "100000000" /* Content-Length declared by the partial rows */
#define CHUNK           65536

/* ---- raw sockets ------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connected non-blocking TCP socket to 127.0.0.1:@port (-1 on failure). */
static int raw_connect(unsigned port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/*
 * Write @len bytes of @buf, but stop as soon as the server has something to say
 * (an early response, or a close): returns false when it stopped early.
 */
static bool raw_send(int fd, const char *buf, size_t len)
{
    size_t off = 0;

    while (off < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
        ssize_t n;

        if (poll(&p, 1, READ_TIMEOUT_MS) <= 0)
            return false;
        if (p.revents & (POLLIN | POLLERR | POLLHUP))
            return false;
        n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return false;
        off += (size_t)n;
    }
    return true;
}

struct raw_resp {
    long status; /* 0: no response (closed, reset or timed out) */
    json_t *json;
    char *raw;
    size_t len;
    bool eof; /* the server closed the connection */
};

/* Is the response in @r->raw complete (headers and Content-Length bytes)? */
static bool raw_complete(const struct raw_resp *r)
{
    const char *end = strstr(r->raw, "\r\n\r\n");
    const char *cl;
    size_t head;

    if (end == NULL)
        return false;
    head = (size_t)(end - r->raw) + 4;
    for (cl = r->raw; cl < end; cl++) {
        if (strncasecmp(cl, "\r\nContent-Length:", 17) == 0)
            return r->len - head >= strtoull(cl + 17, NULL, 10);
    }
    return false;
}

/* Read one response from @fd for at most @timeout_ms; parse status and JSON body. */
static void raw_read(int fd, int timeout_ms, struct raw_resp *r)
{
    int64_t deadline = now_ms() + timeout_ms;

    memset(r, 0, sizeof(*r));
    r->raw = calloc(1, 1);
    while (!raw_complete(r)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - now_ms();
        char buf[16384];
        ssize_t n;

        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0) {
            r->eof = true;
            break;
        }
        r->raw = realloc(r->raw, r->len + (size_t)n + 1);
        memcpy(r->raw + r->len, buf, (size_t)n);
        r->len += (size_t)n;
        r->raw[r->len] = '\0';
    }
    if (strncmp(r->raw, "HTTP/1.", 7) == 0 && r->len > 12)
        r->status = strtol(r->raw + 9, NULL, 10);
    if (r->status > 0 && strstr(r->raw, "\r\n\r\n") != NULL) {
        const char *body = strstr(r->raw, "\r\n\r\n") + 4;

        r->json = json_loadb(body, r->len - (size_t)(body - r->raw), 0, NULL);
    }
}

static void raw_resp_free(struct raw_resp *r)
{
    json_decref(r->json);
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

/* ---- generated bodies, headers and paths ------------------------------------------- */

typedef char *(*gen_fn)(size_t *ret_len);

static char *fill(size_t len)
{
    char *s = malloc(len + 1);

    assert_non_null(s);
    s[len] = '\0';
    return s;
}

static char *gen_deep_arrays(size_t *ret_len)
{
    char *s = fill(2 * DEEP);

    memset(s, '[', DEEP);
    memset(s + DEEP, ']', DEEP);
    *ret_len = 2 * DEEP;
    return s;
}

static char *gen_deep_open(size_t *ret_len)
{
    char *s = fill(DEEP);

    memset(s, '[', DEEP);
    *ret_len = DEEP;
    return s;
}

/* {"a":{"a":...1...}} */
static char *gen_deep_objects(size_t *ret_len)
{
    size_t len = 5 * (size_t)DEEP + 1 + DEEP;
    char *s = fill(len);
    char *p = s;

    for (int i = 0; i < DEEP; i++, p += 5)
        memcpy(p, "{\"a\":", 5);
    *p++ = '1';
    memset(p, '}', DEEP);
    *ret_len = len;
    return s;
}

/* A well-formed create body of @len bytes: the padding is an unknown field. */
static char *padded_create(size_t len)
{
    static const char head[] = "{\"customer_info\":{\"name\":\"Pad\"},\"pad\":\"";
    char *s = fill(len);

    memcpy(s, head, sizeof(head) - 1);
    memset(s + sizeof(head) - 1, 'a', len - (sizeof(head) - 1) - 2);
    memcpy(s + len - 2, "\"}", 2);
    return s;
}

static char *gen_over_limit(size_t *ret_len)
{
    *ret_len = MAX_BODY + 1;
    return padded_create(*ret_len);
}

static char *gen_chunked_over(size_t *ret_len)
{
    *ret_len = MAX_BODY + MAX_BODY / 2;
    return padded_create(*ret_len);
}

static char *gen_header_flood(size_t *ret_len)
{
    char *s = fill(5000 * 24);
    size_t n = 0;

    for (int i = 0; i < 5000; i++)
        n += (size_t)sprintf(s + n, "X-Flood-%d: v\r\n", i);
    *ret_len = n;
    return s;
}

static char *gen_huge_header(size_t *ret_len)
{
    size_t len = 7 + (1u << 20) + 2;
    char *s = fill(len);

    memcpy(s, "X-Big: ", 7);
    memset(s + 7, 'a', 1u << 20);
    memcpy(s + len - 2, "\r\n", 2);
    *ret_len = len;
    return s;
}

/* One "X-Big: aaa...\r\n" header line of @n value bytes. */
static char *big_header(size_t n, size_t *ret_len)
{
    size_t len = 7 + n + 2;
    char *s = fill(len);

    memcpy(s, "X-Big: ", 7);
    memset(s + 7, 'a', n);
    memcpy(s + len - 2, "\r\n", 2);
    *ret_len = len;
    return s;
}

/* CONNECTION_MEMORY_LIMIT (8 KiB by default) bounds the request headers. */
static char *gen_4k_header(size_t *ret_len)
{
    return big_header(4096, ret_len);
}

static char *gen_16k_header(size_t *ret_len)
{
    return big_header(16384, ret_len);
}

static char *gen_huge_path(size_t *ret_len)
{
    char *s = fill((1u << 20) + 1);

    s[0] = '/';
    memset(s + 1, 'a', 1u << 20);
    *ret_len = (1u << 20) + 1;
    return s;
}

/* ---- the table --------------------------------------------------------------------- */

enum mode {
    M_CURL,         /* h_request */
    M_RAW,          /* the whole request written on a raw socket */
    M_PARTIAL,      /* Content-Length HUGE_CL, only the row's body sent, kept open */
    M_CHUNKED,      /* body as 64 KiB chunks, then the terminating chunk */
    M_CHUNKED_OPEN, /* body as 64 KiB chunks, no terminating chunk, kept open */
};

/*
 * struct row - one hostile request.
 * @path: "{ID}" and "{UPID}" become the test dialog's id (lower, upper case);
 *        @gen_path replaces it.
 * @ctype: NULL means application/json when there is a body; "" none (raw modes).
 * @headers: raw "Name: value\r\n" lines (raw modes); @gen_headers appends more.
 * @body: NULL for none; @body_len 0 means strlen; @gen_body replaces it.
 * @want_code: the JSON "code" of the answer; NULL: the answer has no "code".
 * @new_files: dialog files the row creates.
 * @same_id: the answer's dialog_id is the test dialog's (canonical) id.
 */
struct row {
    const char *name;
    enum mode mode;
    const char *method;
    const char *path;
    gen_fn gen_path;
    const char *ctype;
    const char *headers;
    gen_fn gen_headers;
    const char *body;
    size_t body_len;
    gen_fn gen_body;
    long want_status;
    const char *want_code;
    int new_files;
    bool same_id;
};

#define D      "/api/v1/dialogue"
#define MSG    "{\"message\":\"hello\"}"
#define CREATE "{\"customer_info\":{\"name\":\"Row\"}}"

static const struct row rows[] = {
    /* -- dialog ids: traversal, NUL, absolute paths, non-canonical UUIDs -- */
    {"literal ../ traversal", M_RAW, "GET", D "/../../../etc/passwd", .want_status = 404,
     .want_code = "not_found"},
    {"literal .. as id", M_RAW, "GET", D "/..", .want_status = 404,
     .want_code = "not_found"},
    {"literal .. as id, message", M_RAW, "POST", D "/../message", .body = MSG,
     .want_status = 404, .want_code = "not_found"},
    {"literal ../ inside a valid path", M_RAW, "GET", D "/{ID}/../{ID}",
     .want_status = 404, .want_code = "not_found"},
    {"%2e%2e traversal", M_RAW, "GET", D "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
     .want_status = 404, .want_code = "not_found"},
    {"%2e%2e as id, message", M_RAW, "POST", D "/%2e%2e/message", .body = MSG,
     .want_status = 404, .want_code = "not_found"},
    {"%2E%2E%2F traversal, message", M_RAW, "POST",
     D "/%2E%2E%2F%2E%2E%2Ftmp%2Fpwn/message", .body = MSG, .want_status = 404,
     .want_code = "not_found"},
    {"%00 after a valid id", M_RAW, "GET", D "/{ID}%00.json", .want_status = 404,
     .want_code = "not_found"},
    {"%00 after a valid id, message", M_RAW, "POST", D "/{ID}%00/message", .body = MSG,
     .want_status = 404, .want_code = "not_found"},
    /* "create%00x" is no literal segment, so it is an {id}, and POST /{id} is 405. */
    {"%00 after create", M_RAW, "POST", D "/create%00x", .body = CREATE,
     .want_status = 405, .want_code = "method_not_allowed"},
    {"%00 then traversal", M_RAW, "GET", D "/%00../../etc/passwd", .want_status = 404,
     .want_code = "not_found"},
    {"absolute path", M_RAW, "GET", "/etc/passwd", .want_status = 404,
     .want_code = "not_found"},
    {"absolute path as id", M_RAW, "GET", D "//etc/passwd", .want_status = 404,
     .want_code = "not_found"},
    {"%2F absolute path as id", M_RAW, "GET", D "/%2Fetc%2Fpasswd", .want_status = 404,
     .want_code = "not_found"},
    {"%2F absolute path as id, message", M_RAW, "POST", D "/%2Ftmp%2Fpwn/message",
     .body = MSG, .want_status = 404, .want_code = "not_found"},
    {"overlong UTF-8 dots as id", M_RAW, "GET", D "/%C0%AE%C0%AE", .want_status = 404,
     .want_code = "not_found"},
    {"upper-case uuid, get", M_CURL, "GET", D "/{UPID}", .want_status = 200,
     .same_id = true},
    {"upper-case uuid, status", M_CURL, "GET", D "/{UPID}/status", .want_status = 200,
     .same_id = true},
    {"upper-case uuid, message", M_CURL, "POST", D "/{UPID}/message", .body = MSG,
     .want_status = 200, .same_id = true},
    {"braced uuid", M_CURL, "GET", D "/%7B{ID}%7D", .want_status = 404,
     .want_code = "not_found"},
    {"braced uuid, literal braces", M_RAW, "GET", D "/{{ID}}", .want_status = 404,
     .want_code = "not_found"},
    {"braced uuid, message", M_CURL, "POST", D "/%7B{UPID}%7D/message", .body = MSG,
     .want_status = 404, .want_code = "not_found"},
    {"urn:uuid: prefix", M_CURL, "GET", D "/urn:uuid:{ID}", .want_status = 404,
     .want_code = "not_found"},
    {"uuid with .json suffix", M_CURL, "GET", D "/{ID}.json", .want_status = 404,
     .want_code = "not_found"},
    {"uuid with trailing %20", M_CURL, "GET", D "/{ID}%20", .want_status = 404,
     .want_code = "not_found"},
    /* -- body size -- */
    {"Content-Length over the limit, body not sent", M_PARTIAL, "POST", D "/create",
     .body = "{\"customer_info", .want_status = 413, .want_code = "body_too_large"},
    {"Content-Length over the limit, message", M_PARTIAL, "POST", D "/{ID}/message",
     .body = "{\"mess", .want_status = 413, .want_code = "body_too_large"},
    {"body one byte over the limit", M_CURL, "POST", D "/create",
     .gen_body = gen_over_limit, .want_status = 413, .want_code = "body_too_large"},
    {"chunked over the limit, no last chunk", M_CHUNKED_OPEN, "POST", D "/create",
     .gen_body = gen_chunked_over, .want_status = 413, .want_code = "body_too_large"},
    {"chunked over the limit, last chunk sent", M_CHUNKED, "POST", D "/create",
     .gen_body = gen_chunked_over, .want_status = 413, .want_code = "body_too_large"},
    {"chunked within the limit", M_CHUNKED, "POST", D "/create", .body = CREATE,
     .want_status = 201, .new_files = 1},
    {"Content-Length not a number", M_RAW, "POST", D "/create", .ctype = "",
     .headers = "Content-Type: application/json\r\nContent-Length: abc\r\n",
     .want_status = 400},
    {"Content-Length negative", M_RAW, "POST", D "/create", .ctype = "",
     .headers = "Content-Type: application/json\r\nContent-Length: -1\r\n",
     .want_status = 400},
    {"Content-Length beyond 64 bits", M_RAW, "POST", D "/create", .ctype = "",
     .headers = "Content-Type: application/json\r\nContent-Length: "
                "99999999999999999999999\r\n",
     .want_status = 413},
    /* RFC 9112 6.3: no clear length, 400 and close (a smuggling vector otherwise). */
    {"Content-Length and chunked together", M_CHUNKED, "POST", D "/create",
     .headers = "Content-Length: 5\r\n", .body = CREATE, .want_status = 400,
     .want_code = "bad_framing"},
    {"two Content-Length values that differ", M_RAW, "POST", D "/create", .ctype = "",
     .headers = "Content-Type: application/json\r\nContent-Length: 34\r\n"
                "Content-Length: 35\r\n",
     .want_status = 400, .want_code = "bad_framing"},
    {"two Content-Length values that differ, message", M_RAW, "POST", D "/{ID}/message",
     .ctype = "",
     .headers = "Content-Type: application/json\r\nContent-Length: 19\r\n"
                "Content-Length: 0\r\n",
     .want_status = 400, .want_code = "bad_framing"},
    {"empty body, create", M_CURL, "POST", D "/create", .body = "", .want_status = 400,
     .want_code = "invalid_json"},
    {"empty body, no content type", M_RAW, "POST", D "/create", .ctype = "",
     .headers = "Content-Length: 0\r\n", .want_status = 400, .want_code = "invalid_json"},
    {"empty body, message", M_CURL, "POST", D "/{ID}/message", .body = "",
     .want_status = 400, .want_code = "invalid_json"},
    {"whitespace body", M_CURL, "POST", D "/create", .body = " \r\n\t ",
     .want_status = 400, .want_code = "invalid_json"},
    /* -- content type -- */
    {"text/plain", M_CURL, "POST", D "/create", .ctype = "text/plain", .body = CREATE,
     .want_status = 415, .want_code = "unsupported_media_type"},
    {"missing content type", M_RAW, "POST", D "/create", .ctype = "", .body = CREATE,
     .want_status = 415, .want_code = "unsupported_media_type"},
    {"application/jsonx", M_CURL, "POST", D "/create", .ctype = "application/jsonx",
     .body = CREATE, .want_status = 415, .want_code = "unsupported_media_type"},
    {"form-urlencoded", M_CURL, "POST", D "/{ID}/message",
     .ctype = "application/x-www-form-urlencoded", .body = MSG, .want_status = 415,
     .want_code = "unsupported_media_type"},
    {"multipart", M_CURL, "POST", D "/create", .ctype = "multipart/form-data; boundary=x",
     .body = CREATE, .want_status = 415, .want_code = "unsupported_media_type"},
    {"application/json with charset", M_CURL, "POST", D "/create",
     .ctype = "application/json; charset=utf-8", .body = CREATE, .want_status = 201,
     .new_files = 1},
    /* -- UTF-8 -- */
    {"invalid UTF-8 byte FF", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":{\"name\":\"\xff\"}}", .want_status = 400,
     .want_code = "invalid_utf8"},
    {"overlong C0 AF", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":{\"name\":\"\xc0\xaf\"}}", .want_status = 400,
     .want_code = "invalid_utf8"},
    {"overlong E0 80 AF", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"\xe0\x80\xaf\"}", .want_status = 400,
     .want_code = "invalid_utf8"},
    {"overlong F0 80 80 AF", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"\xf0\x80\x80\xaf\"}", .want_status = 400,
     .want_code = "invalid_utf8"},
    {"UTF-8 encoded surrogate ED A0 80", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"\xed\xa0\x80\"}", .want_status = 400,
     .want_code = "invalid_utf8"},
    {"code point above U+10FFFF", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"\xf4\x90\x80\x80\"}", .want_status = 400,
     .want_code = "invalid_utf8"},
    {"truncated sequence", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"ab\xd0\"}", .want_status = 400, .want_code = "invalid_utf8"},
    {"raw NUL byte in body", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"a\0b\"}", .body_len = 17, .want_status = 400,
     .want_code = "invalid_utf8"},
    /* -- blank in Unicode (separators, format characters): 422 like ASCII blanks -- */
    {"message of U+00A0", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"\xc2\xa0\xc2\xa0\"}", .want_status = 422,
     .want_code = "validation_error"},
    {"message of U+3000", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"\\u3000\"}", .want_status = 422,
     .want_code = "validation_error"},
    {"message of U+2028", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"\xe2\x80\xa8\"}", .want_status = 422,
     .want_code = "validation_error"},
    {"message of U+200B", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"\\u200b\"}", .want_status = 422,
     .want_code = "validation_error"},
    {"message of U+FEFF", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"\xef\xbb\xbf\"}", .want_status = 422,
     .want_code = "validation_error"},
    {"escaped \\u0000", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"a\\u0000b\"}", .want_status = 400,
     .want_code = "invalid_json"},
    {"escaped lone surrogate \\ud800", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":{\"name\":\"\\ud800\"}}", .want_status = 400,
     .want_code = "invalid_json"},
    /* -- JSON structure -- */
    {"nesting depth 100000, arrays", M_CURL, "POST", D "/create",
     .gen_body = gen_deep_arrays, .want_status = 400, .want_code = "invalid_json"},
    {"nesting depth 100000, objects", M_CURL, "POST", D "/create",
     .gen_body = gen_deep_objects, .want_status = 400, .want_code = "invalid_json"},
    {"nesting depth 100000, unterminated", M_CURL, "POST", D "/{ID}/message",
     .gen_body = gen_deep_open, .want_status = 400, .want_code = "invalid_json"},
    {"duplicate top-level key", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":{\"name\":\"A\"},\"customer_info\":{\"name\":\"B\"}}",
     .want_status = 400, .want_code = "invalid_json"},
    {"duplicate nested key", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":{\"name\":\"A\",\"name\":\"B\"}}", .want_status = 400,
     .want_code = "invalid_json"},
    {"duplicate key, message", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"a\",\"message\":\"b\"}", .want_status = 400,
     .want_code = "invalid_json"},
    {"trailing garbage", M_CURL, "POST", D "/{ID}/message", .body = MSG "xyz",
     .want_status = 400, .want_code = "invalid_json"},
    {"NaN literal", M_CURL, "POST", D "/{ID}/message", .body = "{\"message\":NaN}",
     .want_status = 400, .want_code = "invalid_json"},
    {"top-level string", M_CURL, "POST", D "/create", .body = "\"x\"", .want_status = 400,
     .want_code = "invalid_json"},
    {"top-level array", M_CURL, "POST", D "/create", .body = "[]", .want_status = 422,
     .want_code = "validation_error"},
    {"wrong type: name is a number", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":{\"name\":42}}", .want_status = 422,
     .want_code = "validation_error"},
    {"wrong type: customer_info is a string", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":\"Row\"}", .want_status = 422,
     .want_code = "validation_error"},
    {"wrong type: message is an array", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":[\"hello\"]}", .want_status = 422,
     .want_code = "validation_error"},
    {"wrong type: message is an object", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":{\"text\":\"hello\"}}", .want_status = 422,
     .want_code = "validation_error"},
    {"wrong type: message is null", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":null}", .want_status = 422, .want_code = "validation_error"},
    {"wrong type: message is true", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":true}", .want_status = 422, .want_code = "validation_error"},
    {"huge number 1e999 as name", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":{\"name\":1e999}}", .want_status = 422,
     .want_code = "validation_error"},
    {"huge integer as name", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":{\"name\":123456789012345678901234567890}}",
     .want_status = 422, .want_code = "validation_error"},
    {"huge negative number as message", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":-1e999}", .want_status = 422, .want_code = "validation_error"},
    {"unknown fields are ignored, create", M_CURL, "POST", D "/create",
     .body = "{\"customer_info\":{\"name\":\"Row\",\"zz\":[1,{}]},\"foo\":{\"bar\":null},"
             "\"dialog_id\":\"../../etc/passwd\"}",
     .want_status = 201, .new_files = 1},
    {"unknown fields are ignored, message", M_CURL, "POST", D "/{ID}/message",
     .body = "{\"message\":\"hello\",\"extra\":{\"x\":[1,2]},\"dialog_id\":\"/tmp/x\"}",
     .want_status = 200, .same_id = true},
    /* -- the human side's bodies and paths (docs/OPERATORS.md) -- */
    {"operator id: traversal", M_RAW, "GET", "/api/v1/operators/..%2F..%2Fetc%2Fpasswd",
     .want_status = 404, .want_code = "not_found"},
    {"operator id: literal ..", M_RAW, "DELETE", "/api/v1/operators/..",
     .want_status = 404, .want_code = "not_found"},
    {"operator route without a token", M_CURL, "GET", "/api/v1/operators/me",
     .want_status = 401, .want_code = "unauthorized"},
    {"forged operator token", M_RAW, "GET", "/api/v1/operators/me", .ctype = "",
     .headers = "Authorization: Bearer cco_../../../../etc/passwd\r\n",
     .want_status = 401, .want_code = "unauthorized"},
    {"operator token of the right shape, never issued", M_RAW, "GET", "/api/v1/queue",
     .ctype = "",
     .headers =
         "Authorization: Bearer cco_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
     .want_status = 401, .want_code = "unauthorized"},
    {"reply without a token", M_CURL, "POST", D "/{ID}/reply", .body = MSG,
     .want_status = 401, .want_code = "unauthorized"},
    {"take: traversal id, no token", M_RAW, "POST", D "/%2e%2e/take", .want_status = 401,
     .want_code = "unauthorized"},
    {"create operator: NUL in the name", M_CURL, "POST", "/api/v1/operators",
     .body = "{\"name\":\"a\\u0000b\"}", .want_status = 400, .want_code = "invalid_json"},
    {"create operator: control character in the name", M_CURL, "POST",
     "/api/v1/operators", .body = "{\"name\":\"a\\u0007b\"}", .want_status = 422,
     .want_code = "validation_error"},
    {"create operator: name is a path", M_CURL, "POST", "/api/v1/operators",
     .body = "{\"name\":\"x\",\"languages\":[\"../../etc\"]}", .want_status = 422,
     .want_code = "validation_error"},
    {"register: not JSON", M_CURL, "POST", "/api/v1/operators/register",
     .body = "{\"pin\":", .want_status = 403, .want_code = "registration_closed"},
    {"handoff: unknown target", M_CURL, "POST", D "/{ID}/handoff",
     .body = "{\"to\":\"../../root\"}", .want_status = 422,
     .want_code = "validation_error"},
    {"handoff: operator id is a path", M_CURL, "POST", D "/{ID}/handoff",
     .body = "{\"to\":\"operator\",\"operator_id\":\"../../etc/passwd\"}",
     .want_status = 422, .want_code = "validation_error"},
    {"rating: score as a string", M_CURL, "POST", D "/{ID}/rating",
     .body = "{\"score\":\"5\"}", .want_status = 422, .want_code = "validation_error"},
    {"rating: score 1e400", M_CURL, "POST", D "/{ID}/rating", .body = "{\"score\":1e400}",
     .want_status = 422, .want_code = "validation_error"},
    {"messages after a path", M_CURL, "GET", D "/{ID}/messages?after=..%2F..%2Fetc",
     .want_status = 404, .want_code = "message_not_found"},
    {"queue position of a traversal id", M_RAW, "GET", D "/..%2F..%2F/queue",
     .want_status = 404, .want_code = "not_found"},
    /* -- header floods -- */
    {"5000 headers", M_RAW, "GET", "/api/v1/health/live", .gen_headers = gen_header_flood,
     .want_status = 431},
    {"1 MiB header line", M_RAW, "GET", "/api/v1/health/live",
     .gen_headers = gen_huge_header, .want_status = 431},
    {"4 KiB header line (a big cookie) is fine", M_RAW, "GET", "/api/v1/health/live",
     .gen_headers = gen_4k_header, .want_status = 200},
    {"16 KiB header line", M_RAW, "GET", "/api/v1/health/live",
     .gen_headers = gen_16k_header, .want_status = 431},
    {"1 MiB request target", M_RAW, "GET", .gen_path = gen_huge_path, .want_status = 414},
};

/* ---- running a row ----------------------------------------------------------------- */

struct ctx {
    struct proc srv;
    char dir[64];
    char id[37];
    char upid[37];
    int files; /* dialog files expected in storage */
};

/* @in with "{ID}"/"{UPID}" replaced (new). */
static char *subst(const struct ctx *c, const char *in)
{
    size_t size = strlen(in) * 2 + 128;
    char *out = fill(size);
    size_t n = 0;

    while (*in != '\0') {
        if (strncmp(in, "{ID}", 4) == 0) {
            n += (size_t)snprintf(out + n, size - n, "%s", c->id);
            in += 4;
        } else if (strncmp(in, "{UPID}", 6) == 0) {
            n += (size_t)snprintf(out + n, size - n, "%s", c->upid);
            in += 6;
        } else {
            out[n++] = *in++;
        }
    }
    out[n] = '\0';
    return out;
}

/* Append @len bytes to the growing buffer @b. */
struct sbuf {
    char *data;
    size_t len;
};

static void put(struct sbuf *b, const void *p, size_t len)
{
    b->data = realloc(b->data, b->len + len + 1);
    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void puts_(struct sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Send @row on a raw socket; the answer goes to @st, @code, @r. */
static void run_raw(const struct ctx *c, const struct row *row, const char *path,
                    const char *body, size_t body_len, struct raw_resp *r)
{
    struct sbuf b = {0};
    bool chunked = row->mode == M_CHUNKED || row->mode == M_CHUNKED_OPEN;
    char line[128];
    int fd = raw_connect(c->srv.port);

    assert_true(fd >= 0);
    puts_(&b, row->method);
    puts_(&b, " ");
    puts_(&b, path);
    puts_(&b, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if (row->ctype == NULL && body != NULL)
        puts_(&b, "Content-Type: application/json\r\n");
    else if (row->ctype != NULL && row->ctype[0] != '\0') {
        puts_(&b, "Content-Type: ");
        puts_(&b, row->ctype);
        puts_(&b, "\r\n");
    }
    if (row->headers != NULL)
        puts_(&b, row->headers);
    if (row->gen_headers != NULL) {
        size_t n;
        char *h = row->gen_headers(&n);

        put(&b, h, n);
        free(h);
    }
    if (chunked) {
        puts_(&b, "Transfer-Encoding: chunked\r\n\r\n");
        for (size_t off = 0; off < body_len; off += CHUNK) {
            size_t n = body_len - off < CHUNK ? body_len - off : CHUNK;

            (void)snprintf(line, sizeof(line), "%zx\r\n", n);
            puts_(&b, line);
            put(&b, body + off, n);
            puts_(&b, "\r\n");
        }
        if (row->mode == M_CHUNKED)
            puts_(&b, "0\r\n\r\n");
    } else if (row->mode == M_PARTIAL) {
        puts_(&b, "Content-Length: " HUGE_CL "\r\n\r\n");
        put(&b, body, body_len);
    } else {
        if (body != NULL) {
            (void)snprintf(line, sizeof(line), "Content-Length: %zu\r\n", body_len);
            puts_(&b, line);
        }
        puts_(&b, "\r\n");
        if (body != NULL)
            put(&b, body, body_len);
    }
    /* The open modes never send the rest: the answer must come without it. */
    (void)raw_send(fd, b.data, b.len);
    raw_read(fd, READ_TIMEOUT_MS, r);
    free(b.data);
    close(fd);
}

static bool server_alive(struct proc *p)
{
    int status;

    return waitpid(p->pid, &status, WNOHANG) == 0;
}

/* Only <canonical-uuid>.json in dialogs/, c->files of them (PostgreSQL mode: that many
 * dialogs listed); nothing else next to dialogs/. */
static bool storage_scan(const struct ctx *c, char *why, size_t why_size)
{
    char path[128];
    struct dirent *e;
    DIR *d;
    int n = 0;
    bool ok = true;

    (void)snprintf(path, sizeof(path), "%s/dialogs", c->dir);
    d = h_store_pg() ? NULL : opendir(path);
    if (h_store_pg()) {
        /* No files to judge: the database's dialogs, counted through the server;
         * nothing may appear next to dialogs/ (below) either. */
        n = h_dialogs_listed(c->srv.port, NULL);
        if (n != c->files) {
            (void)snprintf(why, why_size, "%d dialogs listed, expected %d", n, c->files);
            ok = false;
        }
    } else if (d == NULL) {
        (void)snprintf(why, why_size, "cannot open %s", path);
        return false;
    }
    while (ok && d != NULL && (e = readdir(d)) != NULL) {
        char canon[37];
        char id[37];
        size_t len = strlen(e->d_name);

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, ".lock") == 0 ||        /* the server's storage lock */
            strcmp(e->d_name, "operators") == 0 ||    /* the operators collection */
            strcmp(e->d_name, "customers") == 0 ||    /* customer profiles */
            strcmp(e->d_name, "telegram") == 0 ||     /* the Telegram channel's */
            strncmp(e->d_name, "journal-", 8) == 0 || /* its journal segments */
            (e->d_name[0] == '.' && len > 9 &&        /* a checkpoint's spare file */
             strcmp(e->d_name + len - 9, ".json.tmp") == 0))
            continue;
        (void)snprintf(id, sizeof(id), "%.36s", e->d_name);
        if (len != 41 || strcmp(e->d_name + 36, ".json") != 0 ||
            !cca_uuid_canonical(id, canon) || strcmp(canon, id) != 0) {
            (void)snprintf(why, why_size, "unexpected file dialogs/'%.200s'", e->d_name);
            ok = false;
        }
        n++;
    }
    if (d != NULL)
        closedir(d);
    if (ok && n != c->files) {
        (void)snprintf(why, why_size, "%d dialog files, expected %d", n, c->files);
        ok = false;
    }
    /* A traversal out of dialogs/ would land next to it. */
    d = opendir(c->dir);
    while (ok && d != NULL && (e = readdir(d)) != NULL) {
        static const char *const known[] = {".", "..", "dialogs", "server.log"};
        bool found = false;

        for (size_t i = 0; i < CCA_ARRAY_SIZE(known); i++)
            found |= strcmp(e->d_name, known[i]) == 0;
        if (!found) {
            (void)snprintf(why, why_size, "unexpected file '%.200s' next to dialogs/",
                           e->d_name);
            ok = false;
        }
    }
    if (d != NULL)
        closedir(d);
    return ok;
}

/*
 * storage_scan once the checkpointer has caught up: files appear within
 * STORAGE_CHECKPOINT_MS of their create, and a checkpoint's temporary file
 * exists for a moment. True as soon as it holds; else after 3 s, with why.
 */
static bool storage_clean(const struct ctx *c, char *why, size_t why_size)
{
    for (int i = 0; i < 300; i++) {
        if (storage_scan(c, why, why_size))
            return true;
        usleep(10000);
    }
    return false;
}

static const char *code_of(json_t *j)
{
    return json_string_value(json_object_get(j, "code"));
}

/* Run one row and check its answer and the server afterwards; false on failure. */
static bool run_row(struct ctx *c, const struct row *row)
{
    char *path = row->gen_path ? NULL : subst(c, row->path);
    char *gen = NULL;
    const char *body = row->body;
    size_t body_len = 0;
    long status;
    json_t *json;
    const char *code;
    char snippet[160] = "";
    char why[256] = "";
    bool ok;
    struct h_resp hr = {0};
    struct raw_resp rr = {0};
    int64_t t0 = now_ms();

    if (row->gen_path != NULL) {
        size_t n;

        path = row->gen_path(&n);
    }
    if (row->gen_body != NULL) {
        body = gen = row->gen_body(&body_len);
    } else if (body != NULL) {
        body_len = row->body_len ? row->body_len : strlen(body);
    }
    if (row->mode == M_CURL) {
        struct h_req req = {.method = row->method,
                            .path = path,
                            .body = body,
                            .body_len = body_len,
                            .ctype = row->ctype};

        status = h_request(c->srv.port, &req, &hr);
        json = hr.json;
        (void)snprintf(snippet, sizeof(snippet), "%.150s", hr.raw ? hr.raw : "");
    } else {
        run_raw(c, row, path, body, body_len, &rr);
        status = rr.status;
        json = rr.json;
        (void)snprintf(snippet, sizeof(snippet), "%.150s", rr.raw ? rr.raw : "");
    }
    code = code_of(json);
    ok = status == row->want_status &&
         (row->want_code == NULL ? code == NULL
                                 : code != NULL && strcmp(code, row->want_code) == 0);
    if (!ok)
        (void)snprintf(why, sizeof(why), "want %ld %s, got %ld %s after %lld ms",
                       row->want_status, row->want_code ? row->want_code : "(no code)",
                       status, code ? code : "(no code)", (long long)(now_ms() - t0));
    if (ok && row->same_id) {
        const char *got = json_string_value(json_object_get(json, "dialog_id"));

        ok = got != NULL && strcmp(got, c->id) == 0;
        if (!ok)
            (void)snprintf(why, sizeof(why), "dialog_id %s, want %s",
                           got ? got : "(none)", c->id);
    }
    /* Count what the server did, right or wrong, so later rows are judged alone. */
    if (status == 201)
        c->files++;
    if (ok && (status == 201) != (row->new_files == 1)) {
        (void)snprintf(why, sizeof(why), "expected %d new dialog files", row->new_files);
        ok = false;
    }
    h_resp_free(&hr);
    raw_resp_free(&rr);
    free(gen);
    free(path);
    /* The server is healthy after every row. */
    if (ok && !server_alive(&c->srv)) {
        (void)snprintf(why, sizeof(why), "server process died (see %.200s)", c->srv.log);
        ok = false;
    }
    if (ok) {
        long live = h_http(c->srv.port, "GET", "/api/v1/health/live", NULL, NULL, NULL,
                           NULL, NULL, 0);

        if (live != 200) {
            (void)snprintf(why, sizeof(why), "health/live is %ld afterwards", live);
            ok = false;
        }
    }
    if (ok)
        ok = storage_clean(c, why, sizeof(why));
    if (!ok) {
        printf("# FAIL row '%s': %s\n#   response: ", row->name, why);
        for (const char *p = snippet; *p; p++)
            putchar(*p == '\n' ? ' ' : isprint((unsigned char)*p) ? *p : '.');
        printf("\n");
        fflush(stdout);
    }
    return ok;
}

static void test_hostile_table(void **state)
{
    static const char *const env[] = {"MAX_BODY_BYTES=1048576", NULL};
    struct ctx c = {0};
    size_t failed = 0;
    int64_t t0 = now_ms();

    (void)state;
    h_tmpdir(c.dir);
    h_server_start(&c.srv, c.dir, env);
    h_create(c.srv.port, NULL, c.id);
    c.files = 1;
    for (size_t i = 0; i < sizeof(c.id); i++)
        c.upid[i] = (char)toupper((unsigned char)c.id[i]);
    for (size_t i = 0; i < CCA_ARRAY_SIZE(rows); i++) {
        if (!run_row(&c, &rows[i]))
            failed++;
        if (!server_alive(&c.srv))
            fail_msg("server died at row '%s' (see %s)", rows[i].name, c.srv.log);
    }
    printf("# hostile table: %zu rows, %zu failed, %lld ms\n", CCA_ARRAY_SIZE(rows),
           failed, (long long)(now_ms() - t0));
    fflush(stdout);
    assert_int_equal(h_stop(&c.srv), 0);
    assert_int_equal(failed, 0);
}

/*
 * Request smuggling (RFC 9112 section 6.3): a request with Content-Length and
 * Transfer-Encoding whose chunked body hides a second request. The server
 * must answer the first with 400 and close the connection, so the hidden
 * request is never read, and no dialog is created by either.
 */
static void test_smuggling(void **state)
{
    struct ctx c = {0};
    struct raw_resp r = {0};
    char attack[1024];
    char more[256];
    ssize_t n = 0;
    int fd;

    (void)state;
    (void)snprintf(attack, sizeof(attack),
                   "POST " D "/create HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Content-Type: application/json\r\nContent-Length: 4\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n"
                   "%zx\r\n" CREATE "\r\n0\r\n\r\n"
                   "POST " D "/create HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n" CREATE,
                   strlen(CREATE), strlen(CREATE));
    h_tmpdir(c.dir);
    h_server_start(&c.srv, c.dir, NULL);
    fd = raw_connect(c.srv.port);
    assert_true(fd >= 0);
    assert_true(raw_send(fd, attack, strlen(attack)));
    raw_read(fd, READ_TIMEOUT_MS, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(code_of(r.json), "bad_framing");
    assert_non_null(strcasestr(r.raw, "\r\nConnection: close\r\n"));
    /* Nothing else comes: the connection closes without a second response. */
    for (int i = 0; i < 100; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};

        assert_true(poll(&p, 1, READ_TIMEOUT_MS) == 1);
        n = recv(fd, more, sizeof(more), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        break;
    }
    assert_true(n <= 0);
    close(fd);
    raw_resp_free(&r);
    c.files = 0;
    {
        char why[256] = "";

        if (!storage_clean(&c, why, sizeof(why)))
            fail_msg("%s", why);
    }
    assert_int_equal(h_stop(&c.srv), 0);
}

/* ---- connections beyond MAX_CONNECTIONS -------------------------------------------- */

#define FLOOD 2000
#define LIMIT 64

enum conn_state { C_PENDING, C_SERVED, C_BUSY, C_CLOSED, C_OTHER };

static void test_connection_flood(void **state)
{
    static const char *const env[] = {"MAX_CONNECTIONS=64", NULL};
    static const char req[] =
        "GET /api/v1/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    struct rlimit rl;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct proc srv = {0};
    char dir[64];
    int *fds = calloc(FLOOD, sizeof(int));
    enum conn_state *st = calloc(FLOOD, sizeof(*st));
    struct pollfd *pfd = calloc(FLOOD, sizeof(*pfd));
    int count[C_OTHER + 1] = {0};
    int64_t deadline;
    int64_t last_change;
    int sent = 0;
    long live = 0;

    (void)state;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < FLOOD + 256) {
        rl.rlim_cur = rl.rlim_max < FLOOD + 1024 ? rl.rlim_max : FLOOD + 1024;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    assert_true(rl.rlim_cur >= FLOOD + 256);
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    sin.sin_port = htons((uint16_t)srv.port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* Open FLOOD connections without waiting for any of them. */
    for (int i = 0; i < FLOOD; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fds[i] >= 0);
        if (connect(fds[i], (struct sockaddr *)&sin, sizeof(sin)) != 0 &&
            errno != EINPROGRESS)
            st[i] = C_CLOSED; /* refused */
    }
    /* Each connected one sends a keep-alive request (served ones keep their slot). */
    deadline = now_ms() + 10000;
    for (int i = 0; i < FLOOD; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLOUT};
        int left = (int)(deadline - now_ms());

        if (st[i] != C_PENDING)
            continue;
        if (poll(&p, 1, left > 0 ? left : 0) == 1 && !(p.revents & (POLLERR | POLLHUP)) &&
            send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)sizeof(req) - 1)
            sent++;
    }
    /* Collect answers until nothing changes for 3 s (at most 20 s). */
    deadline = now_ms() + 20000;
    last_change = now_ms();
    while (now_ms() < deadline && now_ms() - last_change < 3000) {
        int n = 0;
        int *map = calloc(FLOOD, sizeof(int));

        for (int i = 0; i < FLOOD; i++) {
            if (st[i] == C_PENDING) {
                pfd[n] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                map[n++] = i;
            }
        }
        if (n == 0 || poll(pfd, (nfds_t)n, 200) < 0) {
            free(map);
            break;
        }
        for (int k = 0; k < n; k++) {
            char buf[256];
            ssize_t got;
            int i = map[k];

            if (pfd[k].revents == 0)
                continue;
            got = recv(fds[i], buf, sizeof(buf) - 1, 0);
            if (got <= 0) {
                st[i] = C_CLOSED;
            } else {
                buf[got] = '\0';
                st[i] = strncmp(buf, "HTTP/1.1 200", 12) == 0   ? C_SERVED
                        : strncmp(buf, "HTTP/1.1 503", 12) == 0 ? C_BUSY
                                                                : C_OTHER;
            }
            last_change = now_ms();
        }
        free(map);
    }
    for (int i = 0; i < FLOOD; i++)
        count[st[i]]++;
    printf(
        "# connection flood: %d sockets, %d requests sent, %d served (200), %d got 503, "
        "%d closed or refused, %d waiting in the accept queue, %d other\n",
        FLOOD, sent, count[C_SERVED], count[C_BUSY], count[C_CLOSED], count[C_PENDING],
        count[C_OTHER]);
    fflush(stdout);
    assert_true(server_alive(&srv));
    assert_int_equal(count[C_OTHER], 0);
    assert_true(count[C_SERVED] >= 1);
    /* Keep-alive connections hold their slots: never more than the limit at once. */
    assert_true(count[C_SERVED] <= LIMIT);
    assert_int_equal(count[C_SERVED] + count[C_BUSY] + count[C_CLOSED] + count[C_PENDING],
                     FLOOD);
    for (int i = 0; i < FLOOD; i++)
        close(fds[i]);
    /* Once they are gone, a fresh client is served (slots are given back). */
    deadline = now_ms() + 30000;
    while (now_ms() < deadline) {
        live = h_http(srv.port, "GET", "/api/v1/health/live", NULL, NULL, NULL, NULL,
                      NULL, 0);
        if (live == 200)
            break;
        usleep(200000);
    }
    assert_int_equal(live, 200);
    assert_true(server_alive(&srv));
    assert_int_equal(h_stop(&srv), 0);
    free(fds);
    free(st);
    free(pfd);
}

/* ---- slowloris --------------------------------------------------------------------- */

#define SLOW 8

static void test_slowloris(void **state)
{
    static const char *const env[] = {"MAX_CONNECTIONS=8", "CONNECTION_TIMEOUT_S=2",
                                      NULL};
    static const char req[] = "GET /api/v1/health/live HTTP/1.1\r\nHost: "
                              "127.0.0.1\r\nConnection: close\r\n\r\n";
    struct proc srv = {0};
    char dir[64];
    int slow[SLOW];
    int64_t closed_at[SLOW] = {0};
    int64_t t_first;
    int64_t t_slow;
    int64_t t_answer = 0;
    int64_t deadline;
    int fresh;
    int closed = 0;
    struct raw_resp r;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    /* Eight clients take every slot with half a request line, then say nothing. */
    t_first = now_ms();
    for (int i = 0; i < SLOW; i++) {
        slow[i] = raw_connect(srv.port);
        assert_true(slow[i] >= 0);
        assert_true(raw_send(slow[i], "GET /api/v1/hea", 15));
    }
    t_slow = now_ms();
    /* A well-behaved client comes after them (connect() done: queued behind them). */
    fresh = raw_connect(srv.port);
    assert_true(fresh >= 0);
    assert_true(raw_send(fresh, req, sizeof(req) - 1));
    deadline = now_ms() + 15000;
    while (now_ms() < deadline && (closed < SLOW || t_answer == 0)) {
        struct pollfd p[SLOW + 1];

        for (int i = 0; i < SLOW; i++)
            p[i] = (struct pollfd){.fd = closed_at[i] ? -1 : slow[i], .events = POLLIN};
        p[SLOW] = (struct pollfd){.fd = t_answer ? -1 : fresh, .events = POLLIN};
        if (poll(p, SLOW + 1, 100) < 0)
            break;
        for (int i = 0; i < SLOW; i++) {
            char buf[512];

            /* Dropped, with or without a 408 first: read to the end. */
            if (p[i].revents && recv(slow[i], buf, sizeof(buf), 0) <= 0) {
                closed_at[i] = now_ms();
                closed++;
            }
        }
        if (p[SLOW].revents) {
            raw_read(fresh, READ_TIMEOUT_MS, &r);
            t_answer = now_ms();
            printf("# slowloris: the queued client got %ld after %lld ms, %d of %d slow "
                   "clients dropped by then\n",
                   r.status, (long long)(t_answer - t_slow), closed, SLOW);
            assert_int_equal(r.status, 200);
            raw_resp_free(&r);
        }
    }
    for (int i = 0; i < SLOW; i++) {
        printf("# slowloris: slow client %d dropped after %lld ms\n", i,
               closed_at[i] ? (long long)(closed_at[i] - t_slow) : -1LL);
        close(slow[i]);
    }
    fflush(stdout);
    /* Every slot was freed by the connection timeout (2 s; bound 15 s). */
    assert_int_equal(closed, SLOW);
    /* The queued client was blocked while they held the slots: no slot can free
     * before CONNECTION_TIMEOUT_S after the first of them connected (1 s of slack
     * for MHD's clock), so an earlier answer would mean the limit did not hold. */
    assert_true(t_answer != 0);
    assert_true(t_answer - t_first >= 1000);
    close(fresh);
    /* And a new client afterwards is served at once. */
    assert_int_equal(
        h_http(srv.port, "GET", "/api/v1/health/live", NULL, NULL, NULL, NULL, NULL, 0),
        200);
    assert_true(server_alive(&srv));
    assert_int_equal(h_stop(&srv), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_hostile_table, h_kill_all),
        cmocka_unit_test_teardown(test_smuggling, h_kill_all),
        cmocka_unit_test_teardown(test_connection_flood, h_kill_all),
        cmocka_unit_test_teardown(test_slowloris, h_kill_all),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    h_remove_tmpdirs();
    return rc;
}
