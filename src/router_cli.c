/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/mem.h"
#include "cca/router.h"
#include "cca/router_model.h"
#include "cca/text.h"

/*
 * `call-center-agents route [--eval] [--json] [--current AGENT] [--keywords]
 * [--features]`: the router (cca_router_decide, or the keyword stage alone) on
 * stdin, one decision per line, or an evaluation report, or the model's
 * features of each line (the training script's input). Never calls the LLM. Output goes
 * to stdout; usage and I/O problems go to stderr (this is an edge layer, like main.c).
 */

#define LINE_MAX_BYTES (64 * 1024)
#define DUMP_FLAGS     (JSON_COMPACT | JSON_REAL_PRECISION(15))

struct eval {
    size_t confusion[CCA_AGENT__COUNT][CCA_AGENT__COUNT]; /* [expected][got] */
    size_t total;
    size_t clear;
    size_t clear_correct;
    size_t skipped; /* no or bad expected_agent, or an error line */
    size_t methods[CCA_ROUTE_CLARIFY + 1];
};

enum mode { MODE_DECIDE, MODE_KEYWORDS, MODE_FEATURES, MODE_BENCH };

#define BENCH_MAX_LINES 100000

static double now_us(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

#define BENCH_PASSES 3

/*
 * Time cca_router_decide on @texts[0..n): BENCH_PASSES passes over all of
 * them, one call per message per pass, so a message's calls are never back to
 * back (its stems and features are no warmer than in service). @ret_times
 * [pass * n + i] gets each call's time; @ret_per_msg[i] the median of
 * message i's calls.
 */
static void bench_run(const struct cca_router *router, char **texts, size_t n,
                      double *ret_times, double *ret_per_msg)
{
    struct cca_route r;

    for (int p = 0; p < BENCH_PASSES; p++) {
        for (size_t i = 0; i < n; i++) {
            double a = now_us();

            cca_router_decide(router, texts[i], strlen(texts[i]), CCA_AGENT_NONE, &r);
            ret_times[(size_t)p * n + i] = now_us() - a;
        }
    }
    for (size_t i = 0; i < n; i++) {
        double t[BENCH_PASSES];

        for (int p = 0; p < BENCH_PASSES; p++)
            t[p] = ret_times[(size_t)p * n + i];
        qsort(t, BENCH_PASSES, sizeof(*t), cmp_double);
        ret_per_msg[i] = t[BENCH_PASSES / 2];
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: call-center-agents route [--eval [--json]] [--current AGENT]\n"
               "                                 [--keywords | --features]\n"
               "  Reads one message per line on stdin: plain text, or a JSON object\n"
               "  with \"text\" (other fields, e.g. \"expected_agent\", are copied).\n"
               "  Prints one routing decision per line as JSON. Never calls the LLM:\n"
               "  a first message that neither stage is sure of gets \"clarify\".\n"
               "  --keywords      the keyword stage alone (no model)\n"
               "  --features      print the model's features of each line instead\n"
               "                  (no routing; not with --eval)\n"
               "  --bench         time cca_router_decide: 3 passes over all lines, one\n"
               "                  call per line per pass; print {messages, median_us,\n"
               "                  p90_us, p99_us} over all calls and\n"
               "                  per_message_median_us (median of each line's 3)\n"
               "  --eval          print precision/recall/F1 per agent for JSONL input\n"
               "                  with \"expected_agent\" instead of the decisions\n"
               "  --json          with --eval: print the report as JSON\n"
               "  --current AGENT treat every line as a follow-up in a dialog held\n"
               "                  by AGENT (a \"current_agent\" field overrides it)\n");
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, DUMP_FLAGS);

    if (s != NULL) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

static void print_error(size_t lineno, const char *msg)
{
    json_t *j = json_pack("{s:s, s:I}", "error", msg, "line", (json_int_t)lineno);

    print_json(j);
    json_decref(j);
}

static void add_feature(const char *name, size_t len, void *ctx)
{
    (void)json_array_append_new(ctx, json_stringn(name, len));
}

/* {"features": [...]}: the model's features of @text (empty for invalid UTF-8). */
static json_t *features_json(const char *text, size_t len)
{
    struct cca_text_tokens t = {0};
    json_t *a = json_array();

    if (cca_text_analyze(text, len, &t) == CCA_OK)
        (void)cca_router_model_features(text, len, &t, add_feature, a);
    cca_text_tokens_cleanup(&t);
    return json_pack("{s:o}", "features", a);
}

/*
 * Handle one input line (no newline). Returns the decision object (new) or NULL
 * after printing an error line; *ret_expected is set when the input names one.
 */
static json_t *route_line(const struct cca_router *router, enum mode mode,
                          enum cca_agent current, const char *line, size_t len,
                          size_t lineno, bool quiet, struct cca_route *ret_route,
                          enum cca_agent *ret_expected)
{
    json_t *in = NULL, *out = NULL, *v;
    const char *text = line, *key;
    size_t text_len = len;
    size_t i = 0;

    *ret_expected = CCA_AGENT_NONE;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i < len && line[i] == '{') {
        json_error_t jerr;

        in = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
        v = json_object_get(in, "text");
        if (!json_is_string(v)) {
            if (!quiet)
                print_error(lineno, in == NULL ? "bad JSON" : "no string \"text\"");
            goto out;
        }
        text = json_string_value(v);
        text_len = json_string_length(v);
        v = json_object_get(in, "current_agent");
        if (json_is_string(v))
            (void)cca_agent_parse(json_string_value(v), &current);
        v = json_object_get(in, "expected_agent");
        if (json_is_string(v))
            (void)cca_agent_parse(json_string_value(v), ret_expected);
    }
    if (mode == MODE_FEATURES) {
        out = features_json(text, text_len); /* the features only: nothing routed */
    } else {
        if (mode == MODE_KEYWORDS)
            cca_router_route(router, text, text_len, current, ret_route);
        else
            cca_router_decide(router, text, text_len, current, ret_route);
        out = cca_route_to_json(ret_route);
    }
    v = json_stringn(text, text_len);
    if (v == NULL) {
        if (!quiet)
            print_error(lineno, "text is not valid UTF-8");
        json_decref(out);
        out = NULL;
        goto out;
    }
    (void)json_object_set_new(out, "text", v);
    json_object_foreach (in, key, v) {
        if (json_object_get(out, key) == NULL)
            (void)json_object_set(out, key, v);
    }
out:
    json_decref(in);
    return out;
}

static json_t *eval_report(const struct eval *ev)
{
    json_t *rep = json_object(), *agents = json_object(), *methods = json_object();
    double f1_sum = 0;
    size_t correct = 0;

    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        size_t tp = ev->confusion[a][a], got = 0, support = 0;
        double prec, rec, f1;

        for (int b = 0; b < CCA_AGENT__COUNT; b++) {
            got += ev->confusion[b][a];
            support += ev->confusion[a][b];
        }
        prec = got ? (double)tp / (double)got : 0;
        rec = support ? (double)tp / (double)support : 0;
        f1 = prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0;
        f1_sum += f1;
        correct += tp;
        (void)json_object_set_new(agents, cca_agent_name((enum cca_agent)a),
                                  json_pack("{s:f, s:f, s:f, s:I}", "precision", prec,
                                            "recall", rec, "f1", f1, "support",
                                            (json_int_t)support));
    }
    (void)json_object_set_new(rep, "agents", agents);
    (void)json_object_set_new(rep, "macro_f1", json_real(f1_sum / CCA_AGENT__COUNT));
    (void)json_object_set_new(
        rep, "accuracy", json_real(ev->total ? (double)correct / (double)ev->total : 0));
    (void)json_object_set_new(rep, "messages", json_integer((json_int_t)ev->total));
    (void)json_object_set_new(rep, "skipped", json_integer((json_int_t)ev->skipped));
    (void)json_object_set_new(rep, "clear", json_integer((json_int_t)ev->clear));
    (void)json_object_set_new(
        rep, "clear_share",
        json_real(ev->total ? (double)ev->clear / (double)ev->total : 0));
    (void)json_object_set_new(
        rep, "clear_accuracy",
        json_real(ev->clear ? (double)ev->clear_correct / (double)ev->clear : 0));
    for (size_t m = 0; m < CCA_ARRAY_SIZE(ev->methods); m++)
        (void)json_object_set_new(methods,
                                  cca_route_method_name((enum cca_route_method)m),
                                  json_integer((json_int_t)ev->methods[m]));
    (void)json_object_set_new(rep, "methods", methods);
    return rep;
}

static void print_report_text(const struct eval *ev, json_t *rep)
{
    json_t *agents = json_object_get(rep, "agents");

    printf("%-14s %9s %7s %7s %8s\n", "agent", "precision", "recall", "f1", "support");
    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        const char *name = cca_agent_name((enum cca_agent)a);
        json_t *m = json_object_get(agents, name);

        printf("%-14s %9.3f %7.3f %7.3f %8lld\n", name,
               json_real_value(json_object_get(m, "precision")),
               json_real_value(json_object_get(m, "recall")),
               json_real_value(json_object_get(m, "f1")),
               (long long)json_integer_value(json_object_get(m, "support")));
    }
    printf("macro-F1 %.3f  accuracy %.3f  messages %zu  skipped %zu\n",
           json_real_value(json_object_get(rep, "macro_f1")),
           json_real_value(json_object_get(rep, "accuracy")), ev->total, ev->skipped);
    printf("clear (keyword or model) %zu (%.1f%%), accuracy when clear %.3f; "
           "not clear (clarify/default, LLM candidates) %zu (%.1f%%)\n",
           ev->clear, ev->total ? 100.0 * (double)ev->clear / (double)ev->total : 0.0,
           json_real_value(json_object_get(rep, "clear_accuracy")), ev->total - ev->clear,
           ev->total ? 100.0 * (double)(ev->total - ev->clear) / (double)ev->total : 0.0);
    printf("methods:");
    for (size_t m = 0; m < CCA_ARRAY_SIZE(ev->methods); m++) {
        if (ev->methods[m] > 0)
            printf(" %s %zu", cca_route_method_name((enum cca_route_method)m),
                   ev->methods[m]);
    }
    printf("\n");
    printf("confusion (rows expected, columns routed): tech_support sales supervisor\n");
    for (int a = 0; a < CCA_AGENT__COUNT; a++)
        printf("  %-12s %6zu %6zu %6zu\n", cca_agent_name((enum cca_agent)a),
               ev->confusion[a][0], ev->confusion[a][1], ev->confusion[a][2]);
}

int cca_route_cli(const struct cca_router *router, int argc, char **argv)
{
    enum cca_agent current = CCA_AGENT_NONE;
    enum mode mode = MODE_DECIDE;
    bool eval_mode = false, json_report = false;
    struct eval ev = {0};
    char *buf = NULL;
    char **texts = NULL;
    double *times = NULL, *per_msg = NULL;
    size_t lineno = 0, ntexts = 0;
    int rc = EXIT_SUCCESS;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--eval") == 0) {
            eval_mode = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json_report = true;
        } else if (strcmp(argv[i], "--keywords") == 0 && mode != MODE_FEATURES) {
            mode = MODE_KEYWORDS;
        } else if (strcmp(argv[i], "--features") == 0 && mode != MODE_KEYWORDS) {
            mode = MODE_FEATURES;
        } else if (strcmp(argv[i], "--bench") == 0 && mode == MODE_DECIDE) {
            mode = MODE_BENCH;
        } else if (strcmp(argv[i], "--current") == 0 && i + 1 < argc) {
            if (!cca_agent_parse(argv[++i], &current)) {
                fprintf(stderr, "route: unknown agent '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return EXIT_SUCCESS;
        } else {
            fprintf(stderr, "route: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (eval_mode && mode != MODE_DECIDE && mode != MODE_KEYWORDS) {
        fprintf(stderr,
                "route: --eval routes; it does not go with --features or --bench\n");
        usage(stderr);
        return 2;
    }

    buf = cca_xmalloc(LINE_MAX_BYTES + 1);
    if (mode == MODE_BENCH)
        texts = cca_xmalloc(BENCH_MAX_LINES * sizeof(*texts));
    for (;;) {
        struct cca_route route;
        enum cca_agent expected;
        json_t *out;
        size_t len = 0;
        bool too_long = false;
        int c;

        /* Read one line by hand: embedded NUL bytes stay part of it. */
        while ((c = getc(stdin)) != EOF && c != '\n') {
            if (len < LINE_MAX_BYTES)
                buf[len++] = (char)c;
            else
                too_long = true;
        }
        if (c == EOF && len == 0 && !too_long)
            break;
        lineno++;
        if (too_long) {
            if (eval_mode)
                ev.skipped++;
            else
                print_error(lineno, "line longer than 65536 bytes, skipped");
            continue;
        }
        if (len > 0 && buf[len - 1] == '\r')
            len--;
        buf[len] = '\0';
        if (len == 0)
            continue;
        if (mode == MODE_BENCH) {
            json_t *in = json_loadb(buf, len, 0, NULL);
            const char *text = json_is_string(json_object_get(in, "text"))
                                   ? json_string_value(json_object_get(in, "text"))
                                   : buf;

            if (ntexts < BENCH_MAX_LINES)
                texts[ntexts++] = cca_xstrdup(text);
            json_decref(in);
            continue;
        }
        out = route_line(router, mode, current, buf, len, lineno, eval_mode, &route,
                         &expected);
        if (out == NULL) {
            ev.skipped += eval_mode;
            continue;
        }
        if (!eval_mode) {
            print_json(out);
        } else if (expected == CCA_AGENT_NONE) {
            ev.skipped++;
        } else {
            ev.confusion[expected][route.agent]++;
            ev.total++;
            ev.clear += route.clear;
            ev.clear_correct += route.clear && route.agent == expected;
            if ((size_t)route.method < CCA_ARRAY_SIZE(ev.methods))
                ev.methods[route.method]++;
        }
        json_decref(out);
    }
    if (ferror(stdin)) {
        fprintf(stderr, "route: error reading stdin\n");
        rc = EXIT_FAILURE;
        goto out;
    }
    if (mode == MODE_BENCH && ntexts > 0) {
        size_t ncalls = ntexts * BENCH_PASSES;
        json_t *rep;

        times = cca_xmalloc(ncalls * sizeof(*times));
        per_msg = cca_xmalloc(ntexts * sizeof(*per_msg));
        bench_run(router, texts, ntexts, times, per_msg);
        qsort(times, ncalls, sizeof(*times), cmp_double);
        qsort(per_msg, ntexts, sizeof(*per_msg), cmp_double);
        rep = json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:b}", "messages",
                        (json_int_t)ntexts, "calls", (json_int_t)ncalls, "median_us",
                        times[ncalls / 2], "p90_us", times[ncalls * 9 / 10], "p99_us",
                        times[ncalls * 99 / 100], "per_message_median_us",
                        per_msg[ntexts / 2], "model", cca_router_has_model(router));
        print_json(rep);
        json_decref(rep);
    } else if (eval_mode) {
        json_t *rep = eval_report(&ev);

        if (json_report)
            print_json(rep);
        else
            print_report_text(&ev, rep);
        json_decref(rep);
        if (ev.total == 0) {
            fprintf(stderr, "route: no line had a valid \"expected_agent\"\n");
            rc = EXIT_FAILURE;
        }
    }
out:
    for (size_t i = 0; i < ntexts; i++)
        free(texts[i]);
    free(texts);
    free(per_msg);
    free(times);
    free(buf);
    if (fflush(stdout) != 0)
        rc = EXIT_FAILURE;
    return rc;
}
