/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the dialog file loader run at start-up. Runs cca_store_file_parse
 * (store_file.c: one JSON document with its store_lsn, or the earlier format's
 * document and RFC 6902 change lines folded; then cca_dialog_validate) as the
 * load does, and what the engine then does with
 * a loaded document (engine.c load_one/entry_commit: status, created_at; the
 * read views of GET; the LLM history of the next turn; a new turn; a close).
 * The input is the whole file. Its "dialog_id", when it is a string, plays the
 * file name (the scan only opens <canonical uuid>.json, so a mismatch is just
 * one more rejected file).
 * Invariants checked: a valid document dumps to UTF-8 that reloads to a valid
 * document with the same dump; the views and the history are well-formed; a turn added to
 * or a close of a valid document gives a valid document; the turn's journal
 * record (cca_jsonpatch_diff) replayed on the document gives the turn's
 * document, which also survives a file round trip with its store_lsn.
 */
#include <string.h>

#include "cca/dialog.h"
#include "cca/jsonpatch.h"
#include "cca/router.h"
#include "cca/store.h"
#include "cca/store_file.h"
#include "cca/text.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    return 0;
}

static json_int_t total_tokens(json_t *doc)
{
    return json_integer_value(
        json_object_get(json_object_get(doc, "metadata"), "total_tokens"));
}

/*
 * The journal record of the change from @doc to @next (store_file.c: a JSON
 * Patch, cca_jsonpatch_diff), applied at recovery to the version in the file
 * (a deep copy of @doc), must give @next (compared as dumps: reals are
 * written with 10 significant digits); and @next written as a file with its
 * store_lsn must read back as @next with that lsn.
 */
static void check_change(json_t *doc, json_t *next, const char *id)
{
    struct cca_store_file_parsed parsed;
    struct cca_error err = {0};
    json_t *patch = cca_jsonpatch_diff(doc, next);
    json_t *line_back;
    json_t *replayed = json_deep_copy(doc);
    json_t *copy = json_copy(next);
    json_t *back = NULL;
    size_t line_len, want_len, got_len, file_len;
    char *line;
    char *want;
    char *got;
    char *file;

    FUZZ_CHECK(patch != NULL && json_array_size(patch) > 0);
    line = cca_dialog_dump_change(patch, &line_len);
    FUZZ_CHECK(memchr(line, '\n', line_len - 1) == NULL && line[line_len - 1] == '\n');
    line_back = json_loadb(line, line_len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(line_back != NULL);
    FUZZ_CHECK(cca_jsonpatch_apply(replayed, line_back, &err) == CCA_OK);
    want = cca_dialog_dump(next, &want_len);
    got = cca_dialog_dump(replayed, &got_len);
    FUZZ_CHECK(want_len == got_len && memcmp(want, got, want_len) == 0);
    free(got);
    (void)json_object_set_new(copy, "store_lsn", json_integer(7));
    file = cca_dialog_dump(copy, &file_len);
    FUZZ_CHECK(cca_store_file_parse(CCA_STORE_DIALOGS, file, file_len, id, &back, &parsed,
                                    &err) == CCA_OK);
    FUZZ_CHECK(parsed.lsn == 7 && !parsed.legacy && parsed.damaged == 0);
    got = cca_dialog_dump(back, &got_len);
    FUZZ_CHECK(want_len == got_len && memcmp(want, got, want_len) == 0);
    free(got);
    free(want);
    free(file);
    free(line);
    json_decref(back);
    json_decref(copy);
    json_decref(replayed);
    json_decref(line_back);
    json_decref(patch);
}

/* The next customer turn, as the engine would add it (engine.c). */
static void check_turn(json_t *doc, const char *id)
{
    struct cca_route route = {.agent = CCA_AGENT_SALES,
                              .method = CCA_ROUTE_KEYWORD,
                              .confidence = 0.75,
                              .scores = {0.5, 2.0, 0.0},
                              .best = CCA_AGENT_SALES,
                              .clear = true,
                              .matched_count = 1,
                              .matched = {"sales:tariff"}};
    struct cca_dialog_turn turn = {
        .customer_msg_id = "00000000-0000-4000-8000-000000000001",
        .agent_msg_id = "00000000-0000-4000-8000-000000000002",
        .text = "Какие у вас тарифы?",
        .route = &route,
        .agent = CCA_AGENT_SALES,
        .previous = cca_dialog_get_agent(doc),
        .handoff_reason = "routing",
        .reply = "Our plans: Basic and Pro.",
        .tokens = 42,
        .latency_ms = 120,
        .degraded = false,
        .received_ms = 1736937000000,
        .replied_ms = 1736937000120,
        .processing_s = 0.12,
    };
    struct cca_error err = {0};
    json_t *next;
    json_t *closed;

    if (turn.previous == CCA_AGENT_SALES)
        turn.previous = CCA_AGENT_NONE;
    if (turn.previous == CCA_AGENT_NONE)
        turn.handoff_reason = NULL;
    next = cca_dialog_with_turn(doc, &turn);
    FUZZ_CHECK(cca_dialog_validate(next, id, &err) == CCA_OK);
    check_change(doc, next, id);
    FUZZ_CHECK(cca_dialog_message_count(next) == cca_dialog_message_count(doc) + 2);
    /* Token totals only grow (a wrap would be signed overflow in dialog.c). */
    FUZZ_CHECK(total_tokens(next) >= total_tokens(doc));
    closed = cca_dialog_closed(next, "problem_resolved", 1736937060000);
    FUZZ_CHECK(cca_dialog_validate(closed, id, &err) == CCA_OK);
    FUZZ_CHECK(cca_dialog_get_status(closed) == CCA_DIALOG_CLOSED);
    json_decref(closed);
    json_decref(next);
}

static void check_valid(json_t *doc, const char *id)
{
    struct cca_error err = {0};
    json_t *again;
    json_t *view;
    size_t again_len = 0;
    size_t len = 0;
    char *again_bytes;
    char *bytes;

    /* entry_commit */
    (void)cca_dialog_get_status(doc);
    (void)cca_dialog_get_time(doc, "created_at");

    /* The file bytes the engine keeps and GET returns. */
    bytes = cca_dialog_dump(doc, &len);
    FUZZ_CHECK(bytes != NULL && bytes[len] == '\0' && len > 0 && bytes[len - 1] == '\n');
    FUZZ_CHECK(cca_text_is_utf8(bytes, len));
    again = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(cca_dialog_validate(again, id, &err) == CCA_OK);
    /* Reals are written with 10 significant digits, so compare dumps, not values. */
    again_bytes = cca_dialog_dump(again, &again_len);
    FUZZ_CHECK(again_len == len && memcmp(again_bytes, bytes, len) == 0);
    FUZZ_CHECK(cca_dialog_message_count(again) == cca_dialog_message_count(doc));
    free(again_bytes);
    json_decref(again);
    free(bytes);

    view = cca_dialog_status_view(doc);
    FUZZ_CHECK(json_is_object(view));
    FUZZ_CHECK(json_integer_value(json_object_get(view, "message_count")) ==
               (json_int_t)cca_dialog_message_count(doc));
    json_decref(view);
    view = cca_dialog_summary_view(doc);
    FUZZ_CHECK(json_is_object(view));
    json_decref(view);
    if (cca_dialog_get_status(doc) == CCA_DIALOG_CLOSED) {
        view = cca_dialog_close_view(doc);
        FUZZ_CHECK(json_is_object(view));
        json_decref(view);
    }
    for (unsigned max = 0; max <= 40; max += 20) {
        json_t *h = cca_dialog_llm_history(doc, max);
        size_t i;
        json_t *m;

        FUZZ_CHECK(json_is_array(h) && json_array_size(h) <= max);
        json_array_foreach (h, i, m) {
            FUZZ_CHECK(json_is_string(json_object_get(m, "role")));
            FUZZ_CHECK(json_is_string(json_object_get(m, "content")));
        }
        json_decref(h);
    }
    if (cca_dialog_get_status(doc) != CCA_DIALOG_CLOSED)
        check_turn(doc, id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cca_store_file_parsed parsed;
    struct cca_error err = {0};
    json_t *doc = NULL;

    if (cca_store_file_parse(CCA_STORE_DIALOGS, (const char *)data, size, NULL, &doc,
                             &parsed, &err) != CCA_OK) {
        FUZZ_CHECK(err.code == CCA_ERR_INVALID);
        return 0;
    }
    FUZZ_CHECK(parsed.dropped + parsed.damaged <= size);
    FUZZ_CHECK((parsed.damaged > 0) == (parsed.damage[0] != '\0'));
    FUZZ_CHECK(parsed.dropped == 0 || parsed.damaged == 0);
    FUZZ_CHECK(parsed.legacy || (parsed.dropped == 0 && parsed.damaged == 0));
    FUZZ_CHECK(json_object_get(doc, "store_lsn") == NULL);
    check_valid(doc, json_string_value(json_object_get(doc, "dialog_id")));
    json_decref(doc);
    return 0;
}
