/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <utf8proc.h>

#include "cca/mem.h"
#include "cca/router_model.h"

/*
 * The router's statistical stage: feature extraction and inference of the
 * per-language logistic regression trained by tools/train_router.py. The file
 * format and the features are documented in docs/ROUTING.md ("Model file").
 */

#define MODEL_MAGIC    "cca-router-model/1"
#define WEIGHT_ABS_MAX 1000.0
#define DEDUP_SLOTS    2048 /* > 2 x CCA_ROUTER_MODEL_MAX_MSG_FEATURES */
#define NAME_BUF       (CCA_ROUTER_MODEL_FEATURE_LEN + 1)
#define WORD_CPS_MAX   130 /* cca_text folds words to at most 128 bytes */

struct feat {
    uint32_t hash;
    uint32_t name_off; /* into model->buf, NUL-terminated there */
    float w[CCA_AGENT__COUNT];
};

struct lang_model {
    bool present;
    struct cca_router_model_params params;
    double bias[CCA_AGENT__COUNT];
    struct feat *feats;
    size_t nfeats;
    uint32_t *slots; /* index + 1, 0 = empty */
    size_t mask;
};

struct cca_router_model {
    char *buf; /* the file's text; feature names point into it */
    struct lang_model lang[CCA_LANG__COUNT];
};

/* FNV-1a, 32 bit, over @s[0..n). */
static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* ---- Loading ---------------------------------------------------------- */

struct parser {
    char *p;   /* next line */
    char *end; /* buf + size */
    size_t lineno;
    struct cca_error *err;
};

/* The next line, NUL-terminated in place (a trailing '\r' is dropped), or NULL. */
static char *next_line(struct parser *ps)
{
    char *line = ps->p, *nl;

    if (ps->p >= ps->end)
        return NULL;
    nl = memchr(ps->p, '\n', (size_t)(ps->end - ps->p));
    if (nl == NULL)
        nl = ps->end;
    *nl = '\0';
    ps->p = nl + 1;
    ps->lineno++;
    if (nl > line && nl[-1] == '\r')
        nl[-1] = '\0';
    return line;
}

/* Parse @n numbers separated by blanks from @s, nothing after them. */
static bool parse_numbers(const char *s, double *ret, size_t n)
{
    char *end;

    for (size_t i = 0; i < n; i++) {
        if (*s != ' ' && *s != '\t')
            return false;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0')
            return false;
        errno = 0;
        ret[i] = strtod(s, &end);
        if (end == s || errno == ERANGE)
            return false;
        s = end;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == '\0';
}

static cca_rc parse_error(struct parser *ps, const char *what)
{
    return cca_error_set(ps->err, CCA_ERR_PARSE, "router model line %zu: %s", ps->lineno,
                         what);
}

static cca_rc invalid(struct parser *ps, const char *what)
{
    return cca_error_set(ps->err, CCA_ERR_INVALID, "router model line %zu: %s",
                         ps->lineno, what);
}

static cca_rc parse_classes(struct parser *ps, const char *s,
                            int classes[CCA_AGENT__COUNT])
{
    bool seen[CCA_AGENT__COUNT] = {false};
    char word[32];

    for (int k = 0; k < CCA_AGENT__COUNT; k++) {
        size_t n = 0;
        enum cca_agent a;

        while (*s == ' ' || *s == '\t')
            s++;
        while (s[n] != '\0' && s[n] != ' ' && s[n] != '\t')
            n++;
        if (n == 0 || n >= sizeof(word))
            return invalid(ps, "'classes' must list tech_support, sales and supervisor");
        memcpy(word, s, n);
        word[n] = '\0';
        s += n;
        if (!cca_agent_parse(word, &a) || seen[a])
            return invalid(ps, "'classes' must list tech_support, sales and supervisor");
        seen[a] = true;
        classes[k] = (int)a;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s != '\0')
        return invalid(ps, "'classes' must list tech_support, sales and supervisor");
    return CCA_OK;
}

static uint32_t find_slot(const struct lang_model *lm, const char *buf, const char *name,
                          size_t n, uint32_t h)
{
    for (size_t i = h & lm->mask;; i = (i + 1) & lm->mask) {
        uint32_t slot = lm->slots[i];

        if (slot == 0)
            return (uint32_t)i | 0x80000000u; /* free slot i */
        if (lm->feats[slot - 1].hash == h) {
            const char *k = buf + lm->feats[slot - 1].name_off;

            if (strncmp(k, name, n) == 0 && k[n] == '\0')
                return slot - 1;
        }
    }
}

/* "features N" and the N lines after it. */
static cca_rc parse_features(struct parser *ps, struct cca_router_model *m,
                             struct lang_model *lm, const char *arg,
                             const int classes[CCA_AGENT__COUNT])
{
    double d;
    size_t count, nslots = 16;

    if (!parse_numbers(arg, &d, 1) || d != floor(d) || d < 0)
        return parse_error(ps, "'features' needs a count");
    if (d > CCA_ROUTER_MODEL_MAX_FEATURES)
        return invalid(ps, "more than 400000 features");
    count = (size_t)d;
    while (nslots < 2 * count)
        nslots *= 2;
    lm->feats = cca_xcalloc(count ? count : 1, sizeof(*lm->feats));
    lm->slots = cca_xcalloc(nslots, sizeof(*lm->slots));
    lm->mask = nslots - 1;
    for (size_t i = 0; i < count; i++) {
        char *line = next_line(ps), *tab;
        double w[CCA_AGENT__COUNT];
        struct feat *f;
        uint32_t found;
        size_t n;

        if (line == NULL)
            return parse_error(ps, "the file ends inside a feature list");
        if (strcmp(line, "end") == 0)
            return cca_error_set(ps->err, CCA_ERR_INVALID,
                                 "router model line %zu: 'end' inside a feature list: "
                                 "features %zu, found %zu",
                                 ps->lineno, count, i);
        tab = strchr(line, '\t');
        if (tab == NULL)
            return parse_error(ps, "a feature line is <name> TAB <w> <w> <w>");
        n = (size_t)(tab - line);
        if (n == 0 || n > CCA_ROUTER_MODEL_FEATURE_LEN || memchr(line, ' ', n) != NULL)
            return invalid(ps, "a feature name is 1..160 bytes without blanks");
        if (!parse_numbers(tab, w, CCA_AGENT__COUNT))
            return parse_error(ps, "a feature needs three weights");
        *tab = '\0';
        f = &lm->feats[lm->nfeats];
        f->hash = hash_bytes(line, n);
        f->name_off = (uint32_t)(line - m->buf);
        for (int k = 0; k < CCA_AGENT__COUNT; k++) {
            if (!isfinite(w[k]) || fabs(w[k]) > WEIGHT_ABS_MAX)
                return invalid(ps, "a weight is not finite or over 1000 in size");
            f->w[classes[k]] = (float)w[k];
        }
        found = find_slot(lm, m->buf, line, n, f->hash);
        if ((found & 0x80000000u) == 0)
            return invalid(ps, "a feature is listed twice");
        lm->slots[found & ~0x80000000u] = (uint32_t)++lm->nfeats;
    }
    return CCA_OK;
}

enum {
    K_CLASSES = 1 << 0,
    K_TEMPERATURE = 1 << 1,
    K_MIN_PROB = 1 << 2,
    K_FOLLOWUP = 1 << 3,
    K_RULE = 1 << 4,
    K_BIAS = 1 << 5,
    K_FEATURES = 1 << 6,
    K_OVERRIDE = 1 << 7,
    K_ALL = (1 << 8) - 1,
};

/* One number @key in [lo, hi] (lo excluded when @open_lo). */
static cca_rc parse_param(struct parser *ps, const char *arg, double lo, double hi,
                          bool open_lo, double *ret)
{
    double d;

    if (!parse_numbers(arg, &d, 1))
        return parse_error(ps, "a parameter needs one number");
    if (!isfinite(d) || d < lo || d > hi || (open_lo && d == lo))
        return invalid(ps, "a parameter is out of range");
    *ret = d;
    return CCA_OK;
}

/* The lines of one "lang" block after its header, up to and including "end". */
static cca_rc parse_lang(struct parser *ps, struct cca_router_model *m,
                         struct lang_model *lm)
{
    int classes[CCA_AGENT__COUNT] = {0, 1, 2};
    unsigned seen = 0;
    char *line;
    cca_rc rc = CCA_OK;

    while ((line = next_line(ps)) != NULL) {
        char *arg = line;
        unsigned key;

        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (strcmp(line, "end") == 0) {
            if (seen != K_ALL)
                return invalid(ps, "a language block misses one of classes, "
                                   "temperature, min_prob, followup_min_prob, "
                                   "override_min_prob, rule_min_score, bias, "
                                   "features");
            lm->present = true;
            return CCA_OK;
        }
        while (*arg != '\0' && *arg != ' ' && *arg != '\t')
            arg++;
#define KEY(s) ((size_t)(arg - line) == strlen(s) && strncmp(line, s, strlen(s)) == 0)
        if (KEY("classes")) {
            key = K_CLASSES;
            if (seen & (K_BIAS | K_FEATURES))
                return invalid(ps, "'classes' must come before 'bias' and 'features'");
            rc = parse_classes(ps, arg, classes);
        } else if (KEY("temperature")) {
            key = K_TEMPERATURE;
            rc = parse_param(ps, arg, 0.01, 100, false, &lm->params.temperature);
        } else if (KEY("min_prob")) {
            key = K_MIN_PROB;
            rc = parse_param(ps, arg, 0, 1, false, &lm->params.min_prob);
        } else if (KEY("followup_min_prob")) {
            key = K_FOLLOWUP;
            rc = parse_param(ps, arg, 0, 1, false, &lm->params.followup_min_prob);
        } else if (KEY("override_min_prob")) {
            key = K_OVERRIDE;
            rc = parse_param(ps, arg, 0, 1, false, &lm->params.override_min_prob);
        } else if (KEY("rule_min_score")) {
            key = K_RULE;
            rc = parse_param(ps, arg, 0, 1000, true, &lm->params.rule_min_score);
        } else if (KEY("bias")) {
            double b[CCA_AGENT__COUNT];

            key = K_BIAS;
            if (!parse_numbers(arg, b, CCA_AGENT__COUNT))
                return parse_error(ps, "'bias' needs three numbers");
            for (int k = 0; k < CCA_AGENT__COUNT; k++) {
                if (!isfinite(b[k]) || fabs(b[k]) > WEIGHT_ABS_MAX)
                    return invalid(ps, "a bias is not finite or over 1000 in size");
                lm->bias[classes[k]] = b[k];
            }
        } else if (KEY("features")) {
            key = K_FEATURES;
            if (!(seen & K_CLASSES))
                return invalid(ps, "'classes' must come before 'features'");
            if (!(seen & K_FEATURES))
                rc = parse_features(ps, m, lm, arg, classes);
        } else {
            return invalid(ps, "unknown key");
        }
#undef KEY
        if (rc != CCA_OK)
            return rc;
        if (seen & key)
            return invalid(ps, "a key is given twice");
        seen |= key;
    }
    return parse_error(ps, "the file ends inside a language block (no 'end')");
}

static cca_rc parse_model(struct parser *ps, struct cca_router_model *m)
{
    char *line = next_line(ps);
    bool any = false;

    if (line == NULL || strcmp(line, MODEL_MAGIC) != 0)
        return parse_error(ps, "the first line must be \"" MODEL_MAGIC "\"");
    while ((line = next_line(ps)) != NULL) {
        enum cca_lang lang;
        cca_rc rc;

        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (strcmp(line, "lang en") == 0)
            lang = CCA_LANG_EN;
        else if (strcmp(line, "lang ru") == 0)
            lang = CCA_LANG_RU;
        else if (strncmp(line, "lang ", 5) == 0)
            return invalid(ps, "the language must be en or ru");
        else
            return invalid(ps, "expected \"lang en\" or \"lang ru\"");
        if (m->lang[lang].present || m->lang[lang].feats != NULL)
            return invalid(ps, "a language is given twice");
        rc = parse_lang(ps, m, &m->lang[lang]);
        if (rc != CCA_OK)
            return rc;
        any = true;
    }
    if (!any)
        return invalid(ps, "no language block");
    return CCA_OK;
}

cca_rc cca_router_model_load(const char *path, struct cca_router_model **ret_model,
                             struct cca_error *reterr)
{
    struct cca_router_model *m = NULL;
    struct parser ps = {.err = reterr};
    struct stat st;
    FILE *fp = NULL;
    size_t size;
    cca_rc rc = CCA_OK;

    if (path == NULL || ret_model == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "router model: missing argument");
        goto out;
    }
    fp = fopen(path, "re");
    if (fp == NULL) {
        int e = errno;

        rc = cca_error_set(reterr, e == ENOENT ? CCA_ERR_NOT_FOUND : CCA_ERR_IO,
                           "router model '%.100s': %s", path, strerror(e));
        goto out;
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = cca_error_set(reterr, CCA_ERR_IO,
                           "router model '%.100s': not a regular file", path);
        goto out;
    }
    if (st.st_size > CCA_ROUTER_MODEL_MAX_BYTES) {
        rc = cca_error_set(reterr, CCA_ERR_TOO_LARGE,
                           "router model '%.100s': over %d bytes", path,
                           CCA_ROUTER_MODEL_MAX_BYTES);
        goto out;
    }
    m = cca_xcalloc(1, sizeof(*m));
    m->buf = cca_xmalloc((size_t)st.st_size + 1);
    /* Read one byte past the size: a file that grew since fstat is refused. */
    size = fread(m->buf, 1, (size_t)st.st_size + 1, fp);
    if (ferror(fp) || size > (size_t)st.st_size) {
        rc =
            cca_error_set(reterr, CCA_ERR_IO, "router model '%.100s': read failed", path);
        goto out;
    }
    m->buf[size] = '\0';
    if (!cca_text_is_utf8(m->buf, size)) {
        rc = cca_error_set(reterr, CCA_ERR_PARSE,
                           "router model '%.100s': not UTF-8 text (or a NUL byte)", path);
        goto out;
    }
    ps.p = m->buf;
    ps.end = m->buf + size;
    rc = parse_model(&ps, m);
    if (rc != CCA_OK)
        goto out;
    *ret_model = m;
    m = NULL;
out:
    cca_router_model_free(m);
    if (fp != NULL)
        (void)fclose(fp);
    return rc;
}

void cca_router_model_free(struct cca_router_model *model)
{
    if (model == NULL)
        return;
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        free(model->lang[l].feats);
        free(model->lang[l].slots);
    }
    free(model->buf);
    free(model);
}

bool cca_router_model_has_lang(const struct cca_router_model *model, enum cca_lang lang)
{
    return model != NULL && (unsigned)lang < CCA_LANG__COUNT && model->lang[lang].present;
}

size_t cca_router_model_feature_count(const struct cca_router_model *model,
                                      enum cca_lang lang)
{
    return cca_router_model_has_lang(model, lang) ? model->lang[lang].nfeats : 0;
}

bool cca_router_model_params(const struct cca_router_model *model, enum cca_lang lang,
                             struct cca_router_model_params *ret)
{
    if (!cca_router_model_has_lang(model, lang))
        return false;
    *ret = model->lang[lang].params;
    return true;
}

/* ---- Features ---------------------------------------------------------- */

struct extractor {
    uint32_t seen[DEDUP_SLOTS]; /* hash of each emitted name (0 is stored as 1) */
    size_t count;
    cca_router_model_feature_fn fn;
    void *ctx;
};

static bool full(const struct extractor *x)
{
    return x->count >= CCA_ROUTER_MODEL_MAX_MSG_FEATURES;
}

/* Pass @name[0..n) on unless it is empty, too long, a repeat or over the cap. */
static void emit(struct extractor *x, char *name, size_t n)
{
    uint32_t h;
    size_t i;

    if (n == 0 || n > CCA_ROUTER_MODEL_FEATURE_LEN || full(x))
        return;
    h = hash_bytes(name, n);
    if (h == 0)
        h = 1;
    for (i = h & (DEDUP_SLOTS - 1); x->seen[i] != 0; i = (i + 1) & (DEDUP_SLOTS - 1)) {
        if (x->seen[i] == h)
            return; /* the same name, or (rarely) a 32-bit collision: both agree */
    }
    x->seen[i] = h;
    x->count++;
    name[n] = '\0';
    x->fn(name, n, x->ctx);
}

/* @prefix followed by up to two strings joined by @sep (0: none). */
static void emit_join(struct extractor *x, const char *prefix, const char *a, char sep,
                      const char *b)
{
    char name[NAME_BUF + 1];
    size_t np = strlen(prefix), na = strlen(a), nb = b ? strlen(b) : 0;
    size_t n = np + na + (b ? 1 + nb : 0);

    if (n > CCA_ROUTER_MODEL_FEATURE_LEN)
        return;
    memcpy(name, prefix, np);
    memcpy(name + np, a, na);
    if (b != NULL) {
        name[np + na] = sep;
        memcpy(name + np + na + 1, b, nb);
    }
    emit(x, name, n);
}

/*
 * Shape of the raw text: punctuation, hashtags and mentions, and shouting with
 * the keyword stage's definition (at least 8 cased letters, 70 % upper case).
 */
static void shape_features(struct extractor *x, const char *text, size_t len,
                           size_t ntokens)
{
    static const size_t buckets[] = {17, 9, 5, 3, 2, 1};
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)text;
    bool q = false, ex = false, hash = false, at = false;
    size_t upper = 0, cased = 0;
    utf8proc_ssize_t i = 0;
    char name[16];

    while (text != NULL && (size_t)i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n =
            utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - (size_t)i), &cp);

        if (n <= 0)
            break;
        i += n;
        if (cp == '?' || cp == 0xFF1F)
            q = true;
        else if (cp == '!' || cp == 0xFF01)
            ex = true;
        else if (cp == '#')
            hash = true;
        else if (cp == '@')
            at = true;
        else if (cp >= 0x80 || (cp >= 'A' && cp <= 'z')) {
            utf8proc_category_t c = utf8proc_category(cp);

            if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT) {
                upper++;
                cased++;
            } else if (c == UTF8PROC_CATEGORY_LL) {
                cased++;
            }
        }
    }
    if (q)
        emit(x, strcpy(name, "s=?"), 3);
    if (ex)
        emit(x, strcpy(name, "s=!"), 3);
    if (hash)
        emit(x, strcpy(name, "s=#"), 3);
    if (at)
        emit(x, strcpy(name, "s=@"), 3);
    if (cased >= 8 && 10 * upper >= 7 * cased)
        emit(x, strcpy(name, "s=caps"), 6);
    for (size_t b = 0; b < CCA_ARRAY_SIZE(buckets); b++) {
        if (ntokens >= buckets[b]) {
            int n = snprintf(name, sizeof(name), "s=n%zu", buckets[b]);

            emit(x, name, (size_t)n);
            break;
        }
    }
}

/* Character 4-grams of "^word$" for a word of at least 3 code points. */
static void char_grams(struct extractor *x, const char *word)
{
    size_t off[WORD_CPS_MAX + 3]; /* byte offset of each code point, plus the end */
    size_t ncp = 0, wl = strlen(word);
    char name[NAME_BUF + 1];

    for (size_t i = 0; i < wl && ncp < WORD_CPS_MAX; i++) {
        if (((unsigned char)word[i] & 0xC0) != 0x80)
            off[ncp++] = i;
    }
    if (ncp < 3 || ncp >= WORD_CPS_MAX)
        return;
    off[ncp] = wl;
    /* Virtual sequence: 0 = '^', 1..ncp = the word's code points, ncp + 1 = '$'. */
    for (size_t s = 0; s + 4 <= ncp + 2 && !full(x); s++) {
        size_t n = 2;

        name[0] = 'c';
        name[1] = '=';
        for (size_t v = s; v < s + 4; v++) {
            if (v == 0) {
                name[n++] = '^';
            } else if (v == ncp + 1) {
                name[n++] = '$';
            } else {
                size_t b = off[v - 1], e = off[v];

                if (n + (e - b) > CCA_ROUTER_MODEL_FEATURE_LEN)
                    return;
                memcpy(name + n, word + b, e - b);
                n += e - b;
            }
        }
        emit(x, name, n);
    }
}

size_t cca_router_model_features(const char *text, size_t len,
                                 const struct cca_text_tokens *tokens,
                                 cca_router_model_feature_fn fn, void *ctx)
{
    /* On the stack (8 KiB of dedup slots): a heap block would cost a malloc per
     * message on the routing path. */
    struct extractor x = {.fn = fn, .ctx = ctx};

    shape_features(&x, text, len, tokens->count);
    if (tokens->count > 0)
        emit_join(&x, "f=", tokens->stem[0], 0, NULL);
    for (size_t i = 0; i < tokens->count && !full(&x); i++)
        emit_join(&x, "w=", tokens->stem[i], 0, NULL);
    for (size_t i = 0; i + 1 < tokens->count && !full(&x); i++)
        emit_join(&x, "b=", tokens->stem[i], '+', tokens->stem[i + 1]);
    for (size_t i = 0; i < tokens->count && !full(&x); i++)
        char_grams(&x, tokens->word[i]);
    return x.count;
}

/* ---- Inference --------------------------------------------------------- */

struct scorer {
    const struct cca_router_model *m;
    const struct lang_model *lm;
    double z[CCA_AGENT__COUNT];
    uint32_t found[CCA_ROUTER_MODEL_MAX_MSG_FEATURES];
    size_t nfound;
};

static void score_feature(const char *name, size_t len, void *ctx)
{
    struct scorer *s = ctx;
    uint32_t idx = find_slot(s->lm, s->m->buf, name, len, hash_bytes(name, len));
    const struct feat *f;

    if (idx & 0x80000000u)
        return; /* not in the model */
    f = &s->lm->feats[idx];
    for (int a = 0; a < CCA_AGENT__COUNT; a++)
        s->z[a] += f->w[a];
    if (s->nfound < CCA_ARRAY_SIZE(s->found))
        s->found[s->nfound++] = idx;
}

/* Copy @src into a top slot, cut on a code point boundary. */
static void copy_top(char dst[CCA_ROUTER_MODEL_TOP_LEN], const char *src)
{
    size_t n = strlen(src);

    if (n >= CCA_ROUTER_MODEL_TOP_LEN) {
        n = CCA_ROUTER_MODEL_TOP_LEN - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void top_features(const struct scorer *s, struct cca_router_model_result *ret)
{
    double best_d[CCA_ROUTER_MODEL_TOP];
    uint32_t best_i[CCA_ROUTER_MODEL_TOP];
    size_t k = 0;

    for (size_t i = 0; i < s->nfound; i++) {
        const struct feat *f = &s->lm->feats[s->found[i]];
        double mean = 0, d;
        size_t j;

        for (int a = 0; a < CCA_AGENT__COUNT; a++)
            mean += f->w[a];
        d = f->w[ret->best] - mean / CCA_AGENT__COUNT;
        if (!(d > 0) || (k == CCA_ROUTER_MODEL_TOP && d <= best_d[k - 1]))
            continue;
        if (k < CCA_ROUTER_MODEL_TOP)
            k++;
        /* Insertion into the sorted array, largest first. */
        for (j = k - 1; j > 0 && best_d[j - 1] < d; j--) {
            best_d[j] = best_d[j - 1];
            best_i[j] = best_i[j - 1];
        }
        best_d[j] = d;
        best_i[j] = s->found[i];
    }
    for (size_t j = 0; j < k; j++)
        copy_top(ret->top[j], s->m->buf + s->lm->feats[best_i[j]].name_off);
    ret->top_count = k;
}

bool cca_router_model_predict(const struct cca_router_model *model, enum cca_lang lang,
                              const char *text, size_t len,
                              const struct cca_text_tokens *tokens,
                              struct cca_router_model_result *ret)
{
    struct scorer s;
    double zmax, sum = 0;

    memset(ret, 0, sizeof(*ret));
    ret->best = CCA_AGENT_TECH_SUPPORT;
    if (!cca_router_model_has_lang(model, lang))
        return false;
    s.m = model;
    s.lm = &model->lang[lang];
    s.nfound = 0;
    for (int a = 0; a < CCA_AGENT__COUNT; a++)
        s.z[a] = s.lm->bias[a];
    (void)cca_router_model_features(text, len, tokens, score_feature, &s);
    zmax = s.z[0] / s.lm->params.temperature;
    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        s.z[a] /= s.lm->params.temperature;
        if (s.z[a] > zmax)
            zmax = s.z[a];
    }
    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        ret->prob[a] = exp(s.z[a] - zmax);
        sum += ret->prob[a];
    }
    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        ret->prob[a] /= sum;
        if (ret->prob[a] > ret->prob[ret->best])
            ret->best = (enum cca_agent)a;
    }
    top_features(&s, ret);
    return true;
}
