/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <utf8proc.h>

#include "cca/mem.h"
#include "cca/router.h"
#include "cca/router_model.h"
#include "cca/text.h"

/*
 * The keyword stage. docs/ROUTING.md describes the pipeline, the lexicon format
 * and the scoring; this file follows it step by step.
 */

#define LEXICON_FORMAT    "cca-lexicon/1"
#define PHRASE_MAX        8      /* stems in one lexicon entry */
#define WEIGHT_MAX        10.0   /* per entry */
#define TERMS_MAX         100000 /* per lexicon: bounds load time and memory */
#define WORD_BYTES_MAX    128    /* cca_text folds words to at most this */
#define NO_STEM           UINT32_MAX
#define AMBIGUOUS         (UINT32_MAX - 1)
#define MATCH_CAPS        "CAPS"
#define MATCH_EXCLAMATION "!!!"
#define MODEL_FILE        "router-model.txt" /* beside the lexicon, by default */

/*
 * A set of NUL-terminated strings with one uint32_t value each; open
 * addressing over an index, load factor at most one half. Built once at load
 * time, read-only afterwards. Index i of a key is its insertion order.
 */
struct strmap {
    char **keys;
    uint32_t *hashes;
    uint32_t *vals;
    size_t count;
    size_t cap;
    uint32_t *slots; /* index + 1, 0 = empty */
    size_t mask;
};

/*
 * One lexicon entry: a sequence of stems and a weight per agent (0 = not an
 * entry of that agent). Terms of different agents with the same stems share one
 * entry, so a match scores for every agent that lists it.
 */
struct entry {
    uint32_t seq_off; /* into router->seq */
    uint32_t len;     /* stems, 1..PHRASE_MAX */
    double weight[CCA_AGENT__COUNT];
    char *text[CCA_AGENT__COUNT]; /* the term as written, owned; NULL if weight 0 */
};

struct anger_params {
    double caps_min_letters; /* cased letters needed before the ratio counts */
    double caps_min_ratio;   /* share of upper-case among cased letters */
    double caps_weight;
    double exclam_min_run; /* consecutive '!' */
    double exclam_weight;
};

struct cca_router {
    struct cca_router_params params;
    struct anger_params anger;
    double fuzzy_min_chars; /* 0 = no typo tolerance */
    /* Stems; value = 1 for a stem on the "ignore" list, else 0. Id = index. */
    struct strmap stems;
    /* Typo tolerance: lexicon words, and each with one code point deleted. */
    struct strmap fz_words;
    struct strmap fz_dels;
    /* Entries sorted by (first stem, length descending). */
    struct entry *entries;
    size_t nentries;
    uint32_t *seq;
    size_t nseq;
    uint32_t *first; /* stems.count + 1 offsets into entries, by first stem */
    struct cca_router_model *model; /* NULL: the keyword stage alone */
    char model_path[256];           /* as loaded, cut; "" without a model */
};

const char *cca_route_method_name(enum cca_route_method m)
{
    switch (m) {
        case CCA_ROUTE_KEYWORD:
            return "keyword";
        case CCA_ROUTE_LLM:
            return "llm";
        case CCA_ROUTE_STICKY:
            return "sticky";
        case CCA_ROUTE_DEFAULT:
            return "default";
        case CCA_ROUTE_MODEL:
            return "model";
        case CCA_ROUTE_CLARIFY:
            return "clarify";
    }
    return "unknown";
}

/* FNV-1a, 32 bit. */
static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

/* Index of @key in @m, or NO_STEM. */
static uint32_t strmap_find(const struct strmap *m, const char *key)
{
    uint32_t h;

    if (m->slots == NULL)
        return NO_STEM;
    h = hash_str(key);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        uint32_t slot = m->slots[i];

        if (slot == 0)
            return NO_STEM;
        if (m->hashes[slot - 1] == h && strcmp(m->keys[slot - 1], key) == 0)
            return slot - 1;
    }
}

static void strmap_place(struct strmap *m, uint32_t idx)
{
    size_t i = m->hashes[idx] & m->mask;

    while (m->slots[i] != 0)
        i = (i + 1) & m->mask;
    m->slots[i] = idx + 1;
}

/* Index of @key, added with value @val if it was missing. */
static uint32_t strmap_add(struct strmap *m, const char *key, uint32_t val)
{
    uint32_t idx = strmap_find(m, key);

    if (idx != NO_STEM)
        return idx;
    if (m->count == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 256;
        m->keys = cca_xrealloc(m->keys, m->cap * sizeof(*m->keys));
        m->hashes = cca_xrealloc(m->hashes, m->cap * sizeof(*m->hashes));
        m->vals = cca_xrealloc(m->vals, m->cap * sizeof(*m->vals));
    }
    idx = (uint32_t)m->count++;
    m->keys[idx] = cca_xstrdup(key);
    m->hashes[idx] = hash_str(key);
    m->vals[idx] = val;
    if (m->slots == NULL || 2 * m->count > m->mask + 1) {
        size_t nslots = m->slots == NULL ? 512 : 2 * (m->mask + 1);

        free(m->slots);
        m->slots = cca_xcalloc(nslots, sizeof(*m->slots));
        m->mask = nslots - 1;
        for (uint32_t k = 0; k < m->count; k++)
            strmap_place(m, k);
    } else {
        strmap_place(m, idx);
    }
    return idx;
}

static void strmap_cleanup(struct strmap *m)
{
    for (size_t i = 0; i < m->count; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->hashes);
    free(m->vals);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

/* Build-time state of the loader. */
struct builder {
    struct cca_router *r;
    size_t entries_cap;
    size_t seq_cap;
};

/*
 * Typo tolerance is for ASCII words only. In Russian, prefixes make many real
 * words one edit apart ("установить"/"остановить", "пополнение"/"дополнение"),
 * so a correction there misfires about as often as it helps (docs/ROUTING.md).
 * Words with digits are never corrected either.
 * Returns the length of @w, or 0 when it does not qualify.
 */
static size_t fuzzy_len(const char *w)
{
    size_t n = 0;

    for (; w[n] != '\0'; n++) {
        unsigned char c = (unsigned char)w[n];

        if (c >= 0x80 || (c >= '0' && c <= '9') || n >= WORD_BYTES_MAX)
            return 0;
    }
    return n;
}

/* @w[0..n) without its character @k, into @buf. */
static void delete_char(const char *w, size_t n, size_t k, char buf[WORD_BYTES_MAX + 1])
{
    memcpy(buf, w, k);
    memcpy(buf + k, w + k + 1, n - k - 1);
    buf[n - 1] = '\0';
}

/* Map @key to @stem in @m; a key that already maps elsewhere becomes AMBIGUOUS. */
static void fuzzy_put(struct strmap *m, const char *key, uint32_t stem)
{
    uint32_t idx = strmap_add(m, key, stem);

    if (m->vals[idx] != stem)
        m->vals[idx] = AMBIGUOUS;
}

/*
 * Index lexicon word @w (folded, stem @stem) for typo tolerance: words of at
 * least fuzzy_min_chars - 1 letters, and the one-deletion variants of words of
 * at least fuzzy_min_chars.
 */
static void fuzzy_index(struct cca_router *r, const char *w, uint32_t stem)
{
    char buf[WORD_BYTES_MAX + 1];
    size_t n;

    if (r->fuzzy_min_chars <= 0)
        return;
    n = fuzzy_len(w);
    if (n == 0 || (double)n + 1 < r->fuzzy_min_chars)
        return;
    fuzzy_put(&r->fz_words, w, stem);
    if ((double)n < r->fuzzy_min_chars)
        return;
    for (size_t k = 0; k < n; k++) {
        delete_char(w, n, k, buf);
        fuzzy_put(&r->fz_dels, buf, stem);
    }
}

static void fuzzy_consider(uint32_t found, uint32_t *cand)
{
    if (found == NO_STEM || *cand == AMBIGUOUS)
        return;
    if (found == AMBIGUOUS || (*cand != NO_STEM && *cand != found))
        *cand = AMBIGUOUS;
    else
        *cand = found;
}

/*
 * The stem of the one lexicon word within one edit (insertion, deletion,
 * substitution or adjacent transposition, found with deletion neighbourhoods)
 * of the message word @w, or NO_STEM when there is none or more than one.
 */
static uint32_t fuzzy_lookup(const struct cca_router *r, const char *w)
{
    char buf[WORD_BYTES_MAX + 1];
    uint32_t cand = NO_STEM, idx;
    size_t n;

    if (r->fuzzy_min_chars <= 0)
        return NO_STEM;
    n = fuzzy_len(w);
    if (n == 0 || (double)n < r->fuzzy_min_chars)
        return NO_STEM;
    idx = strmap_find(&r->fz_dels, w);
    if (idx != NO_STEM)
        fuzzy_consider(r->fz_dels.vals[idx], &cand);
    for (size_t k = 0; k < n && cand != AMBIGUOUS; k++) {
        delete_char(w, n, k, buf);
        idx = strmap_find(&r->fz_words, buf);
        if (idx != NO_STEM)
            fuzzy_consider(r->fz_words.vals[idx], &cand);
        idx = strmap_find(&r->fz_dels, buf);
        if (idx != NO_STEM)
            fuzzy_consider(r->fz_dels.vals[idx], &cand);
    }
    return cand == AMBIGUOUS ? NO_STEM : cand;
}

static int entry_cmp(const struct cca_router *r, const struct entry *a,
                     const struct entry *b)
{
    const uint32_t *sa = r->seq + a->seq_off, *sb = r->seq + b->seq_off;

    if (sa[0] != sb[0])
        return sa[0] < sb[0] ? -1 : 1;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1; /* longest first */
    for (uint32_t i = 1; i < a->len; i++) {
        if (sa[i] != sb[i])
            return sa[i] < sb[i] ? -1 : 1;
    }
    return 0;
}

/* qsort has no context argument; the loader is the only caller, sort by hand. */
static void entries_sort(struct cca_router *r)
{
    /* Insertion sort on an index would be quadratic; use a merge sort. */
    size_t n = r->nentries;
    struct entry *tmp = cca_xmalloc((n ? n : 1) * sizeof(*tmp));

    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;

            while (i < mid && j < hi)
                tmp[k++] = entry_cmp(r, &r->entries[j], &r->entries[i]) < 0
                               ? r->entries[j++]
                               : r->entries[i++];
            while (i < mid)
                tmp[k++] = r->entries[i++];
            while (j < hi)
                tmp[k++] = r->entries[j++];
        }
        memcpy(r->entries, tmp, n * sizeof(*tmp));
    }
    free(tmp);
}

static cca_rc add_term(struct builder *b, enum cca_agent agent, const char *term,
                       double weight, struct cca_error *reterr)
{
    struct cca_router *r = b->r;
    struct cca_text_tokens t = {0};
    uint32_t ids[PHRASE_MAX];
    size_t n = 0;
    struct entry *e;
    cca_rc rc;

    rc = cca_text_analyze(term, strlen(term), &t);
    if (rc != CCA_OK) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "lexicon: term is not UTF-8");
        goto out;
    }
    /* Ignored words are dropped from terms exactly as from messages. */
    for (size_t i = 0; i < t.count && n <= PHRASE_MAX; i++) {
        uint32_t id = strmap_add(&r->stems, t.stem[i], 0);

        if (r->stems.vals[id] != 0)
            continue;
        if (n < PHRASE_MAX)
            ids[n] = id;
        n++; /* one past PHRASE_MAX means too long */
        fuzzy_index(r, t.word[i], id);
    }
    if (n == 0 || n > PHRASE_MAX) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "lexicon: term '%.60s' has %zu words that are not ignored "
                           "(1..%d allowed)",
                           term, n, PHRASE_MAX);
        goto out;
    }
    if (r->nentries == b->entries_cap) {
        b->entries_cap = b->entries_cap ? 2 * b->entries_cap : 256;
        r->entries = cca_xrealloc(r->entries, b->entries_cap * sizeof(*r->entries));
    }
    if (b->seq_cap - r->nseq < n) {
        while (b->seq_cap - r->nseq < n)
            b->seq_cap = b->seq_cap ? 2 * b->seq_cap : 1024;
        r->seq = cca_xrealloc(r->seq, b->seq_cap * sizeof(*r->seq));
    }
    e = &r->entries[r->nentries++];
    memset(e, 0, sizeof(*e));
    e->seq_off = (uint32_t)r->nseq;
    e->len = (uint32_t)n;
    memcpy(r->seq + r->nseq, ids, n * sizeof(*ids));
    r->nseq += n;
    e->weight[agent] = weight;
    e->text[agent] = cca_xstrdup(term);
out:
    cca_text_tokens_cleanup(&t);
    return rc;
}

/*
 * Sort, merge entries with the same stems (one per agent at most) and build the
 * first-stem index.
 */
static cca_rc entries_finish(struct cca_router *r, struct cca_error *reterr)
{
    size_t w = 0;

    entries_sort(r);
    for (size_t i = 0; i < r->nentries; i++) {
        struct entry *e = &r->entries[i];

        if (w > 0 && entry_cmp(r, &r->entries[w - 1], e) == 0) {
            struct entry *keep = &r->entries[w - 1];

            for (int a = 0; a < CCA_AGENT__COUNT; a++) {
                if (e->text[a] == NULL)
                    continue;
                if (keep->text[a] != NULL) {
                    cca_rc rc = cca_error_set(
                        reterr, CCA_ERR_INVALID,
                        "lexicon: '%.50s' and '%.50s' of %s have the same stems",
                        keep->text[a], e->text[a], cca_agent_name((enum cca_agent)a));

                    /* Keep ownership clear: the rest of the array is freed by caller. */
                    r->nentries = w + (r->nentries - i);
                    memmove(&r->entries[w], e, (r->nentries - w) * sizeof(*e));
                    return rc;
                }
                keep->text[a] = e->text[a];
                keep->weight[a] = e->weight[a];
                e->text[a] = NULL;
            }
            continue;
        }
        r->entries[w++] = *e;
    }
    r->nentries = w;
    r->first = cca_xcalloc(r->stems.count + 1, sizeof(*r->first));
    /* Counting pass, then prefix sums: first[s]..first[s+1] are the entries of s. */
    for (size_t i = 0; i < r->nentries; i++)
        r->first[r->seq[r->entries[i].seq_off] + 1]++;
    for (size_t s = 0; s < r->stems.count; s++)
        r->first[s + 1] += r->first[s];
    return CCA_OK;
}

static cca_rc get_number(json_t *obj, const char *key, double lo, double hi, double *ret,
                         struct cca_error *reterr)
{
    json_t *v = json_object_get(obj, key);
    double d;

    if (v == NULL)
        return CCA_OK; /* keep the default */
    if (!json_is_number(v))
        return cca_error_set(reterr, CCA_ERR_INVALID, "lexicon: '%s' is not a number",
                             key);
    d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: '%s' = %g is outside %g..%g", key, d, lo, hi);
    *ret = d;
    return CCA_OK;
}

static cca_rc load_anger(struct cca_router *r, json_t *anger, struct cca_error *reterr)
{
    static const char *const keys[] = {"caps_min_letters", "caps_min_ratio",
                                       "caps_weight", "exclam_min_run", "exclam_weight"};
    const char *key;
    json_t *v;
    cca_rc rc = CCA_OK;

    if (anger == NULL)
        return CCA_OK;
    if (!json_is_object(anger))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: 'anger' is not an object");
    json_object_foreach (anger, key, v) {
        bool known = false;

        for (size_t i = 0; i < CCA_ARRAY_SIZE(keys); i++)
            known = known || strcmp(key, keys[i]) == 0;
        if (!known)
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "lexicon: unknown key 'anger.%.60s'", key);
    }
    rc = get_number(anger, "caps_min_letters", 1, 1000, &r->anger.caps_min_letters,
                    reterr);
    if (rc == CCA_OK)
        rc = get_number(anger, "caps_min_ratio", 0.01, 1, &r->anger.caps_min_ratio,
                        reterr);
    if (rc == CCA_OK)
        rc = get_number(anger, "caps_weight", 0, WEIGHT_MAX, &r->anger.caps_weight,
                        reterr);
    if (rc == CCA_OK)
        rc =
            get_number(anger, "exclam_min_run", 1, 100, &r->anger.exclam_min_run, reterr);
    if (rc == CCA_OK)
        rc = get_number(anger, "exclam_weight", 0, WEIGHT_MAX, &r->anger.exclam_weight,
                        reterr);
    return rc;
}

static cca_rc load_group(struct builder *b, json_t *g, size_t gi, size_t *nterms,
                         struct cca_error *reterr)
{
    json_t *agent_j, *lang_j, *weight_j, *terms_j, *v;
    const char *key;
    enum cca_agent agent;
    double weight = 1.0;
    size_t i;

    if (!json_is_object(g))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: groups[%zu] is not an object", gi);
    json_object_foreach (g, key, v) {
        if (strcmp(key, "agent") != 0 && strcmp(key, "lang") != 0 &&
            strcmp(key, "weight") != 0 && strcmp(key, "terms") != 0 &&
            strcmp(key, "note") != 0)
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "lexicon: groups[%zu] has unknown key '%.60s'", gi, key);
    }
    agent_j = json_object_get(g, "agent");
    if (!json_is_string(agent_j) || !cca_agent_parse(json_string_value(agent_j), &agent))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: groups[%zu].agent is not an agent name", gi);
    lang_j = json_object_get(g, "lang");
    if (!json_is_string(lang_j) || (strcmp(json_string_value(lang_j), "ru") != 0 &&
                                    strcmp(json_string_value(lang_j), "en") != 0))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: groups[%zu].lang is not \"ru\" or \"en\"", gi);
    weight_j = json_object_get(g, "weight");
    if (weight_j != NULL) {
        if (!json_is_number(weight_j))
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "lexicon: groups[%zu].weight is not a number", gi);
        weight = json_number_value(weight_j);
    }
    if (!(weight > 0 && weight <= WEIGHT_MAX))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: groups[%zu].weight must be in (0, %g]", gi,
                             WEIGHT_MAX);
    v = json_object_get(g, "note");
    if (v != NULL && !json_is_string(v))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: groups[%zu].note is not a string", gi);
    terms_j = json_object_get(g, "terms");
    if (!json_is_array(terms_j))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: groups[%zu].terms is not an array", gi);
    json_array_foreach (terms_j, i, v) {
        cca_rc rc;

        if (!json_is_string(v))
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "lexicon: groups[%zu].terms[%zu] is not a string", gi,
                                 i);
        if (++*nterms > TERMS_MAX)
            return cca_error_set(reterr, CCA_ERR_INVALID, "lexicon: more than %d terms",
                                 TERMS_MAX);
        rc = add_term(b, agent, json_string_value(v), weight, reterr);
        if (rc != CCA_OK)
            return rc;
    }
    return CCA_OK;
}

static cca_rc load_ignore(struct builder *b, json_t *ignore, struct cca_error *reterr)
{
    json_t *v;
    size_t i;

    if (ignore == NULL)
        return CCA_OK;
    if (!json_is_array(ignore))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: 'ignore' is not an array");
    json_array_foreach (ignore, i, v) {
        struct cca_text_tokens t = {0};
        uint32_t id;

        if (!json_is_string(v) ||
            cca_text_analyze(json_string_value(v), json_string_length(v), &t) != CCA_OK ||
            t.count != 1) {
            cca_text_tokens_cleanup(&t);
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "lexicon: ignore[%zu] is not a single word", i);
        }
        id = strmap_add(&b->r->stems, t.stem[0], 1);
        b->r->stems.vals[id] = 1;
        cca_text_tokens_cleanup(&t);
    }
    return CCA_OK;
}

static cca_rc load_lexicon(struct cca_router *r, json_t *root, struct cca_error *reterr)
{
    struct builder b = {.r = r};
    json_t *format, *groups, *g;
    const char *key;
    size_t gi, nterms = 0;
    cca_rc rc = CCA_OK;

    if (!json_is_object(root))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: top level is not an object");
    json_object_foreach (root, key, g) {
        if (strcmp(key, "format") != 0 && strcmp(key, "anger") != 0 &&
            strcmp(key, "groups") != 0 && strcmp(key, "ignore") != 0 &&
            strcmp(key, "fuzzy_min_chars") != 0 && strcmp(key, "note") != 0)
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "lexicon: unknown top-level key '%.60s'", key);
    }
    format = json_object_get(root, "format");
    if (!json_is_string(format) || strcmp(json_string_value(format), LEXICON_FORMAT) != 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: \"format\" must be \"" LEXICON_FORMAT "\"");
    rc = load_anger(r, json_object_get(root, "anger"), reterr);
    if (rc != CCA_OK)
        return rc;
    rc = get_number(root, "fuzzy_min_chars", 0, 64, &r->fuzzy_min_chars, reterr);
    if (rc != CCA_OK)
        return rc;
    if (r->fuzzy_min_chars > 0 && r->fuzzy_min_chars < 4)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: 'fuzzy_min_chars' must be 0 (off) or at least 4");
    /* Before the groups: terms drop ignored words as they are added. */
    rc = load_ignore(&b, json_object_get(root, "ignore"), reterr);
    if (rc != CCA_OK)
        return rc;
    groups = json_object_get(root, "groups");
    if (!json_is_array(groups))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "lexicon: 'groups' is not an array");
    json_array_foreach (groups, gi, g) {
        rc = load_group(&b, g, gi, &nterms, reterr);
        if (rc != CCA_OK)
            return rc;
    }
    return entries_finish(r, reterr);
}

/*
 * The model file: @model_path, or with NULL the file MODEL_FILE in the
 * lexicon's directory when it exists (a missing default file means the keyword
 * stage alone), or with "" none.
 */
static cca_rc load_model(struct cca_router *r, const char *lexicon_path,
                         const char *model_path, struct cca_error *reterr)
{
    char path[4096];
    const char *slash;
    struct cca_error err = {0};
    cca_rc rc;

    if (model_path != NULL && model_path[0] == '\0')
        return CCA_OK;
    if (model_path == NULL) {
        size_t dir;

        slash = strrchr(lexicon_path, '/');
        dir = slash == NULL ? 0 : (size_t)(slash - lexicon_path) + 1;
        if (dir + sizeof(MODEL_FILE) > sizeof(path))
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "router: the lexicon's path is too long");
        memcpy(path, lexicon_path, dir);
        memcpy(path + dir, MODEL_FILE, sizeof(MODEL_FILE));
    } else {
        if (strlen(model_path) >= sizeof(path))
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "router: the model's path is too long");
        memcpy(path, model_path, strlen(model_path) + 1);
    }
    rc = cca_router_model_load(path, &r->model, &err);
    if (rc == CCA_ERR_NOT_FOUND && model_path == NULL)
        return CCA_OK;
    if (rc != CCA_OK)
        return cca_error_set(reterr, rc, "%s", err.msg);
    (void)snprintf(r->model_path, sizeof(r->model_path), "%.*s",
                   (int)cca_text_utf8_cut(path, strlen(path), sizeof(r->model_path) - 1),
                   path);
    return CCA_OK;
}

cca_rc cca_router_new(const char *lexicon_path, const struct cca_router_params *params,
                      struct cca_router **ret_router, struct cca_error *reterr)
{
    struct cca_router *r = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    struct stat st;
    FILE *fp = NULL;
    cca_rc rc = CCA_OK;

    if (lexicon_path == NULL || params == NULL || ret_router == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "router: missing argument");
        goto out;
    }
    if (!(params->min_score > 0 && params->min_score <= 1000) ||
        !(params->min_margin >= 0 && params->min_margin <= 1000) ||
        cca_agent_name(params->default_agent) == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "router: min_score must be in (0, 1000], min_margin in "
                           "[0, 1000], default_agent an agent");
        goto out;
    }
    fp = fopen(lexicon_path, "re");
    if (fp == NULL) {
        int e = errno;

        rc = cca_error_set(reterr, e == ENOENT ? CCA_ERR_NOT_FOUND : CCA_ERR_IO,
                           "lexicon '%.100s': %s", lexicon_path, strerror(e));
        goto out;
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "lexicon '%.100s': not a regular file",
                           lexicon_path);
        goto out;
    }
    root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_PARSE, "lexicon line %d: %.100s", jerr.line,
                           jerr.text);
        goto out;
    }
    r = cca_xcalloc(1, sizeof(*r));
    r->params = *params;
    r->anger = (struct anger_params){
        .caps_min_letters = 8,
        .caps_min_ratio = 0.7,
        .caps_weight = 0.7,
        .exclam_min_run = 3,
        .exclam_weight = 0.7,
    };
    rc = load_lexicon(r, root, reterr);
    if (rc != CCA_OK)
        goto out;
    rc = load_model(r, lexicon_path, params->model_path, reterr);
    if (rc != CCA_OK)
        goto out;
    *ret_router = r;
    r = NULL;
out:
    cca_router_free(r);
    json_decref(root);
    if (fp != NULL)
        (void)fclose(fp);
    return rc;
}

void cca_router_free(struct cca_router *router)
{
    if (router == NULL)
        return;
    for (size_t i = 0; i < router->nentries; i++) {
        for (int a = 0; a < CCA_AGENT__COUNT; a++)
            free(router->entries[i].text[a]);
    }
    cca_router_model_free(router->model);
    strmap_cleanup(&router->stems);
    strmap_cleanup(&router->fz_words);
    strmap_cleanup(&router->fz_dels);
    free(router->entries);
    free(router->seq);
    free(router->first);
    free(router);
}

/* Append "agent:what" to ret->matched, cut at a code point boundary. */
static void add_matched(struct cca_route *ret, enum cca_agent agent, const char *what)
{
    char *dst;
    size_t n;

    if (ret->matched_count >= CCA_ROUTE_MAX_MATCHED)
        return;
    dst = ret->matched[ret->matched_count++];
    n = (size_t)snprintf(dst, CCA_ROUTE_MATCH_LEN, "%s:%s", cca_agent_name(agent), what);
    if (n >= CCA_ROUTE_MATCH_LEN) {
        n = CCA_ROUTE_MATCH_LEN - 1;
        /* Drop a partial UTF-8 sequence left by the cut. */
        while (n > 0 && ((unsigned char)dst[n] & 0xC0) == 0x80)
            n--;
        dst[n] = '\0';
    }
}

/*
 * Anger features on the raw text: the share of upper-case letters (only in a
 * message with enough cased letters, so "PIN" or "SMS" alone is not shouting)
 * and the longest run of exclamation marks.
 */
static void score_anger(const struct cca_router *r, const char *text, size_t len,
                        struct cca_route *ret)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)text;
    size_t upper = 0, cased = 0, run = 0, best_run = 0;
    utf8proc_ssize_t i = 0;

    while ((size_t)i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n =
            utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - (size_t)i), &cp);

        if (n <= 0)
            break; /* cannot happen: the text was validated */
        i += n;
        if (cp == '!' || cp == 0xFF01) {
            if (++run > best_run)
                best_run = run;
            continue;
        }
        run = 0;
        if (cp < 0x80) {
            if (cp >= 'A' && cp <= 'Z') {
                upper++;
                cased++;
            } else if (cp >= 'a' && cp <= 'z') {
                cased++;
            }
            continue;
        }
        switch (utf8proc_category(cp)) {
            case UTF8PROC_CATEGORY_LU:
            case UTF8PROC_CATEGORY_LT:
                upper++;
                cased++;
                break;
            case UTF8PROC_CATEGORY_LL:
                cased++;
                break;
            default:
                break;
        }
    }
    if (r->anger.caps_weight > 0 && (double)cased >= r->anger.caps_min_letters &&
        (double)upper >= r->anger.caps_min_ratio * (double)cased) {
        ret->scores[CCA_AGENT_SUPERVISOR] += r->anger.caps_weight;
        add_matched(ret, CCA_AGENT_SUPERVISOR, MATCH_CAPS);
    }
    if (r->anger.exclam_weight > 0 && (double)best_run >= r->anger.exclam_min_run) {
        ret->scores[CCA_AGENT_SUPERVISOR] += r->anger.exclam_weight;
        add_matched(ret, CCA_AGENT_SUPERVISOR, MATCH_EXCLAMATION);
    }
}

/*
 * Lexicon match: leftmost-longest over the stem sequence, matches do not
 * overlap, and each entry scores once per message (repeating a word is not more
 * evidence).
 */
static void score_lexicon(const struct cca_router *r, const struct cca_text_tokens *t,
                          struct cca_route *ret)
{
    uint32_t ids[CCA_TEXT_MAX_TOKENS];
    uint32_t seen[CCA_TEXT_MAX_TOKENS];
    size_t nseen = 0, n = 0;

    for (size_t i = 0; i < t->count && i < CCA_TEXT_MAX_TOKENS; i++) {
        uint32_t id = strmap_find(&r->stems, t->stem[i]);

        if (id == NO_STEM)
            id = fuzzy_lookup(r, t->word[i]);
        else if (r->stems.vals[id] != 0)
            continue; /* on the "ignore" list */
        ids[n++] = id;
    }
    for (size_t i = 0; i < n;) {
        uint32_t id = ids[i];
        size_t step = 1;

        if (id == NO_STEM) {
            i++;
            continue;
        }
        for (uint32_t k = r->first[id]; k < r->first[id + 1]; k++) {
            const struct entry *e = &r->entries[k];
            const uint32_t *seq = r->seq + e->seq_off;
            bool dup = false;

            if (e->len > n - i || memcmp(seq, ids + i, e->len * sizeof(*seq)) != 0)
                continue;
            step = e->len;
            for (size_t s = 0; s < nseen && !dup; s++)
                dup = seen[s] == k;
            if (dup)
                break;
            seen[nseen++] = k;
            for (int a = 0; a < CCA_AGENT__COUNT; a++) {
                if (e->weight[a] > 0) {
                    ret->scores[a] += e->weight[a];
                    add_matched(ret, (enum cca_agent)a, e->text[a]);
                }
            }
            break;
        }
        i += step;
    }
}

/*
 * Confidence of choosing an agent with score @w when the best other agent has
 * @o: (1 - e^-w) grows with the evidence, w / (w + o) is its share.
 */
static double confidence(double w, double o)
{
    if (w <= 0)
        return 0;
    return (1 - exp(-w)) * (w / (w + o));
}

static double best_other(const double *scores, enum cca_agent agent)
{
    double o = 0;

    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        if (a != (int)agent && scores[a] > o)
            o = scores[a];
    }
    return o;
}

/*
 * The keyword stage over an analysed message (@ok: @text is UTF-8 and @t holds
 * its tokens), as cca_router_route documents it.
 */
static void keyword_stage(const struct cca_router *router, const char *text, size_t len,
                          bool ok, const struct cca_text_tokens *t,
                          enum cca_agent current, struct cca_route *ret)
{
    const struct cca_router_params *p = &router->params;
    enum cca_agent best = CCA_AGENT_NONE, winner = CCA_AGENT_NONE;
    double top = 0, second;

    memset(ret, 0, sizeof(*ret));
    if (ok) {
        score_anger(router, text, len, ret);
        score_lexicon(router, t, ret);
    }

    /* @best: highest score; ties go to supervisor, then current, then enum order. */
    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        if (ret->scores[a] > top) {
            top = ret->scores[a];
            best = (enum cca_agent)a;
        }
    }
    if (best != CCA_AGENT_NONE) {
        if (ret->scores[CCA_AGENT_SUPERVISOR] == top)
            best = CCA_AGENT_SUPERVISOR;
        else if (current != CCA_AGENT_NONE && ret->scores[current] == top)
            best = current;
    }
    ret->best = best;

    /*
     * Supervisor cues take precedence: enough supervisor evidence decides
     * whatever the other agents score. Otherwise the best agent must reach
     * min_score and lead every other agent (the current one included, so a
     * follow-up only moves on clear evidence) by min_margin.
     */
    if (ret->scores[CCA_AGENT_SUPERVISOR] >= p->min_score) {
        winner = CCA_AGENT_SUPERVISOR;
    } else if (best != CCA_AGENT_NONE && top >= p->min_score) {
        second = best_other(ret->scores, best);
        if (top - second >= p->min_margin)
            winner = best;
    }
    if (winner != CCA_AGENT_NONE) {
        ret->agent = winner;
        ret->method = CCA_ROUTE_KEYWORD;
        ret->clear = true;
    } else if (current != CCA_AGENT_NONE) {
        ret->agent = current;
        ret->method = CCA_ROUTE_STICKY;
    } else {
        ret->agent = p->default_agent;
        ret->method = CCA_ROUTE_DEFAULT;
    }
    ret->confidence =
        confidence(ret->scores[ret->agent], best_other(ret->scores, ret->agent));
}

void cca_router_route(const struct cca_router *router, const char *text, size_t len,
                      enum cca_agent current, struct cca_route *ret)
{
    struct cca_text_tokens t = {0};
    bool ok;

    if (cca_agent_name(current) == NULL)
        current = CCA_AGENT_NONE;
    ok = text != NULL && cca_text_analyze(text, len, &t) == CCA_OK;
    keyword_stage(router, text, len, ok, &t, current, ret);
    cca_text_tokens_cleanup(&t);
}

bool cca_router_has_model(const struct cca_router *router)
{
    return router != NULL && router->model != NULL;
}

bool cca_router_model_summary(const struct cca_router *router, char *buf, size_t size)
{
    const struct cca_router_model *m = router != NULL ? router->model : NULL;

    if (size == 0)
        return m != NULL;
    if (m == NULL) {
        (void)snprintf(buf, size, "no model (the keyword stage alone)");
        return false;
    }
    (void)snprintf(buf, size, "%s: en %zu features, ru %zu features", router->model_path,
                   cca_router_model_feature_count(m, CCA_LANG_EN),
                   cca_router_model_feature_count(m, CCA_LANG_RU));
    return true;
}

/*
 * The route's trace for a model decision: the features that weighed most for
 * the model's top agent first, named after that agent ("sales:w=цен"; for a
 * clarify whose guess is not the top agent they still name the top agent,
 * which is what they argued for), then the lexicon's matches while there is
 * room.
 */
static void model_matched(struct cca_route *ret, const struct cca_router_model_result *mr)
{
    char lexicon[CCA_ROUTE_MAX_MATCHED][CCA_ROUTE_MATCH_LEN];
    size_t nlex = ret->matched_count;

    memcpy(lexicon, ret->matched, sizeof(lexicon));
    ret->matched_count = 0;
    for (size_t i = 0; i < mr->top_count; i++)
        add_matched(ret, mr->best, mr->top[i]);
    for (size_t i = 0; i < nlex && ret->matched_count < CCA_ROUTE_MAX_MATCHED; i++)
        memcpy(ret->matched[ret->matched_count++], lexicon[i], CCA_ROUTE_MATCH_LEN);
}

/*
 * The agent a clarifying question falls back on: the model's likelier of
 * tech_support and sales (ties: tech_support). Never supervisor: a guess must
 * not escalate the dialog (dialog.c marks a supervisor dialog escalated, and
 * the engine then queues it for a human).
 */
static enum cca_agent clarify_guess(const struct cca_router_model_result *mr)
{
    return mr->prob[CCA_AGENT_SALES] > mr->prob[CCA_AGENT_TECH_SUPPORT]
               ? CCA_AGENT_SALES
               : CCA_AGENT_TECH_SUPPORT;
}

/* The model's top agent decides: method MODEL, clear, its probability. */
static void model_decides(struct cca_route *ret, const struct cca_router_model_result *mr)
{
    ret->agent = mr->best;
    ret->method = CCA_ROUTE_MODEL;
    ret->clear = true;
    ret->confidence = mr->prob[mr->best];
    model_matched(ret, mr);
}

void cca_router_decide(const struct cca_router *router, const char *text, size_t len,
                       enum cca_agent current, struct cca_route *ret)
{
    struct cca_text_tokens t = {0};
    struct cca_router_model_params mp;
    struct cca_router_model_result mr;
    enum cca_lang lang;
    double top;
    bool ok;

    if (cca_agent_name(current) == NULL)
        current = CCA_AGENT_NONE;
    ok = text != NULL && cca_text_analyze(text, len, &t) == CCA_OK;
    keyword_stage(router, text, len, ok, &t, current, ret);
    lang = ok ? cca_text_detect_lang(text, len) : CCA_LANG_EN;
    if (!ok || !cca_router_model_params(router->model, lang, &mp))
        goto out; /* no model for the language: the keyword stage alone */
    /* The lexicon's strong cues stay rules: a human, the law, a refund. */
    if (ret->method == CCA_ROUTE_KEYWORD && ret->agent == CCA_AGENT_SUPERVISOR &&
        ret->scores[CCA_AGENT_SUPERVISOR] >= mp.rule_min_score)
        goto out;
    (void)cca_router_model_predict(router->model, lang, text, len, &t, &mr);
    memcpy(ret->prob, mr.prob, sizeof(ret->prob));
    top = mr.prob[mr.best];
    if (ret->method == CCA_ROUTE_KEYWORD) {
        /*
         * A clear keyword winner stands unless the model disagrees with at
         * least override_min_prob, and never when that is 1. The model's
         * agreement with the current agent counts for nothing here: a clear
         * keyword move of a follow-up is not undone by min_prob.
         */
        if (mr.best != ret->agent && mp.override_min_prob < 1 &&
            top >= mp.override_min_prob)
            model_decides(ret, &mr);
        /* Else (agreement included) the lexicon's precise match explains it. */
    } else if (top >= (current == CCA_AGENT_NONE || mr.best == current
                           ? mp.min_prob
                           : mp.followup_min_prob)) {
        /* A follow-up moves to another agent only on stronger evidence. */
        model_decides(ret, &mr);
    } else if (current != CCA_AGENT_NONE) {
        ret->agent = current; /* sticky, as the keyword stage said */
        ret->confidence = mr.prob[current];
    } else {
        /* Nobody is sure about a first message: ask rather than guess. */
        ret->agent = clarify_guess(&mr);
        ret->method = CCA_ROUTE_CLARIFY;
        ret->confidence = mr.prob[ret->agent];
        model_matched(ret, &mr);
    }
out:
    cca_text_tokens_cleanup(&t);
}

static json_t *rounded(double d)
{
    return json_real(round(d * 1000.0) / 1000.0);
}

json_t *cca_route_to_json(const struct cca_route *route)
{
    json_t *o = json_object(), *scores = json_object(), *matched = json_array();
    const char *agent = cca_agent_name(route->agent);

    (void)json_object_set_new(o, "agent", agent ? json_string(agent) : json_null());
    (void)json_object_set_new(o, "method",
                              json_string(cca_route_method_name(route->method)));
    (void)json_object_set_new(o, "confidence", rounded(route->confidence));
    for (int a = 0; a < CCA_AGENT__COUNT; a++)
        (void)json_object_set_new(scores, cca_agent_name((enum cca_agent)a),
                                  rounded(route->scores[a]));
    (void)json_object_set_new(o, "scores", scores);
    for (size_t i = 0; i < route->matched_count && i < CCA_ROUTE_MAX_MATCHED; i++) {
        json_t *s = json_stringn(route->matched[i],
                                 strnlen(route->matched[i], CCA_ROUTE_MATCH_LEN));

        if (s != NULL)
            (void)json_array_append_new(matched, s);
    }
    (void)json_object_set_new(o, "matched", matched);
    return o;
}
