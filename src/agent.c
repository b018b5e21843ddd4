/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/agent.h"
#include "cca/mem.h"
#include "cca/text.h"

/*
 * Limits on the data files (house style 8.5 rule 6). The files are ours, but a
 * cap turns a mistake (a huge file in the wrong place) into a clear error.
 */
#define AGENT_FILE_MAX  (1024 * 1024)
#define KB_ENTRIES_MAX  1000
#define KB_PLACEHOLDER  "{{knowledge}}"
#define KB_PROMPT_TITLE "### "

/*
 * BM25 (Robertson and Zaragoza 2009, section 3.3) with the usual k1 and b, and
 * the non-negative idf of Lucene, log(1 + (N - n + 0.5) / (n + 0.5)): with a
 * knowledge base of ten or so entries per language the classic idf goes
 * negative for any stem found in more than half the entries.
 *
 * Fields are weighted as in BM25F (section 4.2 of the same paper) by adding
 * the weight, not 1, to a stem's frequency: keywords are written to be
 * matched, example questions are longer and noisier. Titles are for people
 * (and the prompt) and are not indexed: "Мобильные тарифы" in a title would
 * dilute "тариф" for the entry that answers "Какие у вас тарифы?".
 */
#define BM25_K1         1.2
#define BM25_B          0.75
#define WEIGHT_KEYWORD  2.0
#define WEIGHT_QUESTION 1.0

/*
 * Minimum score for an entry to be used as the answer. In these knowledge
 * bases one query stem found in the keywords of a single entry scores 2 to 4,
 * a stem shared by most entries well under 0.5, so a match needs at least one
 * stem that is specific to few entries. Below the threshold the clarifying
 * reply is the better answer.
 */
#define KB_MIN_SCORE 1.5

/*
 * Function words dropped from both the knowledge base and the customer text,
 * compared with the folded word (NFKC + case fold, "ё" folded to "е").
 * Without them a question like "Какие у вас тарифы?" would score on "у" and
 * "вас" in whichever entry happens to contain them.
 */
static const char *const stopwords_ru[] = {
    "а",      "без",    "бы",     "был",        "была",       "были",         "было",
    "быть",   "в",      "вам",    "вас",        "ваш",        "ваша",         "ваше",
    "ваши",   "во",     "вот",    "все",        "всем",       "всех",         "вы",
    "где",    "да",     "для",    "до",         "добрый",     "его",          "ее",
    "если",   "есть",   "еще",    "же",         "за",         "здравствуйте", "и",
    "из",     "или",    "им",     "их",         "к",          "как",          "какая",
    "какие",  "каких",  "какой",  "ко",         "когда",      "кто",          "ли",
    "либо",   "мне",    "мной",   "мог",        "могу",       "можете",       "можно",
    "мой",    "моя",    "мое",    "мои",        "моих",       "мы",           "на",
    "нам",    "нас",    "наш",    "не",         "нет",        "ни",           "но",
    "ну",     "о",      "об",     "он",         "она",        "они",          "оно",
    "от",     "очень",  "по",     "подскажите", "пожалуйста", "помогите",     "помочь",
    "помощь", "при",    "привет", "про",        "с",          "скажите",      "со",
    "так",    "также",  "там",    "нужен",      "нужна",      "нужно",        "то",
    "тоже",   "только", "у",      "уже",        "хочу",       "хотел",        "хотела",
    "хотим",  "что",    "чтобы",  "это",        "этот",       "эта",          "эти",
    "я"};

static const char *const stopwords_en[] = {
    "a",    "about", "am",    "an",   "and",  "any",   "are",   "as",   "assistance",
    "at",   "be",    "been",  "but",  "by",   "can",   "could", "did",  "didn",
    "do",   "does",  "doesn", "don",  "for",  "from",  "get",   "got",  "had",
    "has",  "have",  "hello", "help", "hi",   "how",   "i",     "if",   "im",
    "in",   "is",    "isn",   "it",   "its",  "just",  "know",  "like", "me",
    "my",   "need",  "no",    "not",  "of",   "on",    "or",    "our",  "please",
    "so",   "some",  "tell",  "that", "the",  "there", "this",  "to",   "us",
    "want", "was",   "we",    "were", "what", "when",  "which", "will", "with",
    "won",  "would", "you",   "your"};

/* struct kb_term - one stem of an entry and its weighted frequency. */
struct kb_term {
    char *stem;
    double tf;
};

/*
 * struct kb_entry - one knowledge-base answer.
 * @terms: sorted by stem (strcmp), unique; indexed from keywords and questions,
 *         never from the title or the answer.
 * @len:   document length for BM25: the sum of @terms' frequencies.
 */
struct kb_entry {
    char *id;
    char *title;
    char *answer;
    bool in_prompt;
    struct kb_term *terms;
    size_t nterms;
    double len;
};

/* struct kb_df - document frequency of a stem; @stem is borrowed from an entry. */
struct kb_df {
    const char *stem;
    size_t n;
};

/* struct kb - the entries of one agent in one language, with BM25 statistics. */
struct kb {
    struct kb_entry *entries;
    size_t count;
    struct kb_df *df; /* sorted by stem */
    size_t ndf;
    double avgdl;
    char *fallback; /* the clarifying reply */
};

struct agent_def {
    double temperature;
    char *handoff[CCA_LANG__COUNT];
    char *prompt[CCA_LANG__COUNT];
    struct kb kb[CCA_LANG__COUNT];
};

struct cca_agents {
    struct agent_def agent[CCA_AGENT__COUNT];
    char *classifier[CCA_LANG__COUNT];
};

/* A growable string; out of memory aborts (cca_xrealloc). */
struct strbuf {
    char *p;
    size_t len;
    size_t cap;
};

static void sb_append(struct strbuf *sb, const char *s, size_t n)
{
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 256;

        while (cap < sb->len + n + 1)
            cap *= 2;
        sb->p = cca_xrealloc(sb->p, cap);
        sb->cap = cap;
    }
    memcpy(sb->p + sb->len, s, n);
    sb->len += n;
    sb->p[sb->len] = '\0';
}

static void sb_puts(struct strbuf *sb, const char *s)
{
    sb_append(sb, s, strlen(s));
}

/* Returns the buffer (never NULL) and leaves @sb empty. */
static char *sb_take(struct strbuf *sb)
{
    char *p = sb->p ? sb->p : cca_xstrdup("");

    sb->p = NULL;
    sb->len = sb->cap = 0;
    return p;
}

static bool is_stopword(const char *word)
{
    for (size_t i = 0; i < CCA_ARRAY_SIZE(stopwords_ru); i++) {
        if (strcmp(word, stopwords_ru[i]) == 0)
            return true;
    }
    for (size_t i = 0; i < CCA_ARRAY_SIZE(stopwords_en); i++) {
        if (strcmp(word, stopwords_en[i]) == 0)
            return true;
    }
    return false;
}

/* A token worth matching: not a function word, longer than one code point. */
static bool is_content_word(const char *word)
{
    return cca_text_codepoints(word, strlen(word)) > 1 && !is_stopword(word);
}

static bool is_blank(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ files */

/*
 * Read @dir/@rel whole into a new NUL-terminated buffer. @rel names the file in
 * error messages: it is short enough to survive the 160-byte message, and the
 * caller knows @dir.
 */
static cca_rc read_file(const char *dir, const char *rel, char **ret_buf, size_t *ret_len,
                        struct cca_error *reterr)
{
    char path[PATH_MAX];
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    size_t cap;
    int fd = -1;
    int n;
    cca_rc rc = CCA_OK;

    n = snprintf(path, sizeof(path), "%s/%s", dir, rel);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: data directory path too long",
                           rel);
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;

        rc = cca_error_set(reterr, err == ENOENT ? CCA_ERR_NOT_FOUND : CCA_ERR_IO,
                           "%s: cannot open: %s", rel, strerror(err));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "%s: cannot stat: %s", rel,
                           strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = cca_error_set(reterr, CCA_ERR_IO, "%s: not a regular file", rel);
        goto out;
    }
    if (st.st_size > AGENT_FILE_MAX) {
        rc = cca_error_set(reterr, CCA_ERR_TOO_LARGE, "%s: larger than %d bytes", rel,
                           AGENT_FILE_MAX);
        goto out;
    }
    /*
     * Room for one byte more than fstat saw, so that EOF is seen without a
     * realloc; a file that grew meanwhile is still read whole, up to the cap.
     */
    cap = (size_t)st.st_size + 1;
    buf = cca_xmalloc(cap + 1);
    for (;;) {
        ssize_t got;

        if (len > AGENT_FILE_MAX) {
            rc = cca_error_set(reterr, CCA_ERR_TOO_LARGE, "%s: larger than %d bytes", rel,
                               AGENT_FILE_MAX);
            goto out;
        }
        if (len == cap) {
            cap = cap * 2 > AGENT_FILE_MAX + 1 ? AGENT_FILE_MAX + 1 : cap * 2;
            buf = cca_xrealloc(buf, cap + 1);
        }
        got = read(fd, buf + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = cca_error_set(reterr, CCA_ERR_IO, "%s: read failed: %s", rel,
                               strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    buf[len] = '\0';
    *ret_buf = buf;
    *ret_len = len;
    buf = NULL;
out:
    free(buf);
    if (fd >= 0)
        (void)close(fd);
    return rc;
}

static cca_rc load_json(const char *dir, const char *rel, json_t **ret_root,
                        struct cca_error *reterr)
{
    char *buf = NULL;
    size_t len = 0;
    json_error_t jerr;
    json_t *root;
    cca_rc rc;

    rc = read_file(dir, rel, &buf, &len, reterr);
    if (rc != CCA_OK)
        goto out;
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_PARSE, "%s:%d:%d: %s", rel, jerr.line,
                           jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        rc =
            cca_error_set(reterr, CCA_ERR_INVALID, "%s: top level is not an object", rel);
        goto out;
    }
    *ret_root = root;
out:
    free(buf);
    return rc;
}

/*
 * Read a prompt file: valid UTF-8, no NUL, not blank. Surrounding whitespace is
 * trimmed so that a trailing newline does not reach the model.
 */
static cca_rc load_text(const char *dir, const char *rel, char **ret_text,
                        struct cca_error *reterr)
{
    char *buf = NULL;
    size_t len = 0;
    size_t start = 0;
    cca_rc rc;

    rc = read_file(dir, rel, &buf, &len, reterr);
    if (rc != CCA_OK)
        goto out;
    if (!cca_text_is_utf8(buf, len)) {
        rc = cca_error_set(reterr, CCA_ERR_PARSE, "%s: not valid UTF-8 text", rel);
        goto out;
    }
    while (len > 0 && strchr(" \t\r\n", buf[len - 1]) != NULL)
        len--;
    while (start < len && strchr(" \t\r\n", buf[start]) != NULL)
        start++;
    if (start == len) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: empty prompt", rel);
        goto out;
    }
    *ret_text = cca_xstrndup(buf + start, len - start);
out:
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ agents.json */

/* A non-blank string member @key of @obj, or NULL. */
static const char *get_text(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s != NULL && !is_blank(s) ? s : NULL;
}

/* Fill @ret[lang] from an object {"ru": "...", "en": "..."}. */
static cca_rc load_lang_pair(const json_t *obj, const char *rel, const char *what,
                             char *ret[CCA_LANG__COUNT], struct cca_error *reterr)
{
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        const char *code = cca_lang_code((enum cca_lang)l);
        const char *s = json_is_object(obj) ? get_text(obj, code) : NULL;

        if (s == NULL)
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "%s: %s needs a non-empty \"%s\" string", rel, what,
                                 code);
        ret[l] = cca_xstrdup(s);
    }
    return CCA_OK;
}

static cca_rc load_agents_json(struct cca_agents *a, const char *dir,
                               struct cca_error *reterr)
{
    static const char rel[] = "agents/agents.json";
    json_t *root = NULL;
    json_t *agents;
    json_t *val;
    const char *key;
    cca_rc rc;

    rc = load_json(dir, rel, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    agents = json_object_get(root, "agents");
    if (!json_is_object(agents)) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: missing \"agents\" object", rel);
        goto out;
    }
    json_object_foreach (agents, key, val) {
        enum cca_agent id;

        if (!cca_agent_parse(key, &id)) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: unknown agent '%s'", rel,
                               key);
            goto out;
        }
    }
    for (int i = 0; i < CCA_AGENT__COUNT; i++) {
        const char *name = cca_agent_name((enum cca_agent)i);
        struct agent_def *ag = &a->agent[i];
        json_t *temp;

        val = json_object_get(agents, name);
        if (!json_is_object(val)) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: missing agent \"%s\"", rel,
                               name);
            goto out;
        }
        temp = json_object_get(val, "temperature");
        if (!json_is_number(temp) || json_number_value(temp) < 0.0 ||
            json_number_value(temp) > 2.0) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "%s: %s.temperature must be a number in 0..2", rel, name);
            goto out;
        }
        ag->temperature = json_number_value(temp);
        rc = load_lang_pair(json_object_get(val, "handoff"), rel, "handoff", ag->handoff,
                            reterr);
        if (rc != CCA_OK)
            goto out;
    }
out:
    json_decref(root);
    return rc;
}

/* --------------------------------------------------------- knowledge base */

/* Terms collected for one entry before sorting and merging. */
struct term_acc {
    struct kb_term *v;
    size_t n;
    size_t cap;
};

static void acc_text(struct term_acc *acc, const char *s, double weight)
{
    struct cca_text_tokens t;

    /* jansson strings are valid UTF-8, so this cannot fail with PARSE. */
    (void)cca_text_analyze(s, strlen(s), &t);
    for (size_t i = 0; i < t.count; i++) {
        if (!is_content_word(t.word[i]))
            continue;
        if (acc->n == acc->cap) {
            acc->cap = acc->cap ? acc->cap * 2 : 32;
            acc->v = cca_xrealloc(acc->v, acc->cap * sizeof(*acc->v));
        }
        acc->v[acc->n].stem = cca_xstrdup(t.stem[i]);
        acc->v[acc->n].tf = weight;
        acc->n++;
    }
    cca_text_tokens_cleanup(&t);
}

static int cmp_term(const void *a, const void *b)
{
    return strcmp(((const struct kb_term *)a)->stem, ((const struct kb_term *)b)->stem);
}

static int cmp_df(const void *a, const void *b)
{
    return strcmp(((const struct kb_df *)a)->stem, ((const struct kb_df *)b)->stem);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort @acc, merge equal stems (summing frequencies) and move it into @e. */
static void entry_set_terms(struct kb_entry *e, struct term_acc *acc)
{
    size_t out = 0;

    qsort(acc->v, acc->n, sizeof(*acc->v), cmp_term);
    for (size_t i = 0; i < acc->n; i++) {
        if (out > 0 && strcmp(acc->v[out - 1].stem, acc->v[i].stem) == 0) {
            acc->v[out - 1].tf += acc->v[i].tf;
            free(acc->v[i].stem);
            continue;
        }
        acc->v[out++] = acc->v[i];
    }
    e->terms = acc->v;
    e->nterms = out;
    e->len = 0.0;
    for (size_t i = 0; i < out; i++)
        e->len += e->terms[i].tf;
    acc->v = NULL;
    acc->n = acc->cap = 0;
}

/* Add every string of the optional array @key of @obj to @acc. */
static cca_rc acc_array(struct term_acc *acc, const json_t *obj, const char *key,
                        double weight, const char *rel, size_t idx,
                        struct cca_error *reterr)
{
    const json_t *arr = json_object_get(obj, key);
    size_t i;
    json_t *v;

    if (arr == NULL)
        return CCA_OK;
    if (!json_is_array(arr))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "%s: entry %zu: \"%s\" must be an array of strings", rel,
                             idx, key);
    json_array_foreach (arr, i, v) {
        if (!json_is_string(v))
            return cca_error_set(reterr, CCA_ERR_INVALID,
                                 "%s: entry %zu: \"%s\" must be an array of strings", rel,
                                 idx, key);
        acc_text(acc, json_string_value(v), weight);
    }
    return CCA_OK;
}

static const char *const entry_keys[] = {"id",        "lang",   "title", "keywords",
                                         "questions", "answer", "prompt"};

/* Parse entry number @idx of @rel into @e (zeroed by the caller); sets *ret_lang. */
static cca_rc load_entry(struct kb_entry *e, enum cca_lang *ret_lang, json_t *obj,
                         const char *rel, size_t idx, struct cca_error *reterr)
{
    struct term_acc acc = {0};
    const char *key;
    const char *lang;
    const json_t *prompt;
    json_t *val;
    cca_rc rc = CCA_OK;

    if (!json_is_object(obj)) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: entry %zu is not an object", rel,
                           idx);
        goto out;
    }
    /* Unknown keys are rejected: a typo such as "answers" must not pass silently. */
    json_object_foreach (obj, key, val) {
        bool known = false;

        for (size_t k = 0; k < CCA_ARRAY_SIZE(entry_keys); k++)
            known = known || strcmp(key, entry_keys[k]) == 0;
        if (!known) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: entry %zu: unknown key '%s'",
                               rel, idx, key);
            goto out;
        }
    }
    if (get_text(obj, "id") == NULL || get_text(obj, "title") == NULL ||
        get_text(obj, "answer") == NULL) {
        rc = cca_error_set(
            reterr, CCA_ERR_INVALID,
            "%s: entry %zu needs non-empty \"id\", \"title\" and \"answer\"", rel, idx);
        goto out;
    }
    lang = json_string_value(json_object_get(obj, "lang"));
    if (lang != NULL && strcmp(lang, "ru") == 0) {
        *ret_lang = CCA_LANG_RU;
    } else if (lang != NULL && strcmp(lang, "en") == 0) {
        *ret_lang = CCA_LANG_EN;
    } else {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "%s: entry %zu: \"lang\" must be \"ru\" or \"en\"", rel, idx);
        goto out;
    }
    prompt = json_object_get(obj, "prompt");
    if (prompt != NULL && !json_is_boolean(prompt)) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "%s: entry %zu: \"prompt\" must be a boolean", rel, idx);
        goto out;
    }
    e->id = cca_xstrdup(get_text(obj, "id"));
    e->title = cca_xstrdup(get_text(obj, "title"));
    e->answer = cca_xstrdup(get_text(obj, "answer"));
    e->in_prompt = json_is_true(prompt);

    rc = acc_array(&acc, obj, "keywords", WEIGHT_KEYWORD, rel, idx, reterr);
    if (rc != CCA_OK)
        goto out;
    rc = acc_array(&acc, obj, "questions", WEIGHT_QUESTION, rel, idx, reterr);
    if (rc != CCA_OK)
        goto out;
    if (acc.n == 0) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "%s: entry %zu (\"%s\") has no searchable words", rel, idx,
                           e->id);
        goto out;
    }
    entry_set_terms(e, &acc);
out:
    for (size_t i = 0; i < acc.n; i++)
        free(acc.v[i].stem);
    free(acc.v);
    return rc;
}

/* Document frequencies and the mean length, once all entries are in. */
static void kb_index(struct kb *kb)
{
    size_t total = 0;
    size_t out = 0;
    double sum = 0.0;

    for (size_t i = 0; i < kb->count; i++) {
        total += kb->entries[i].nterms;
        sum += kb->entries[i].len;
    }
    kb->avgdl = kb->count > 0 ? sum / (double)kb->count : 1.0;
    kb->df = cca_xcalloc(total, sizeof(*kb->df));
    for (size_t i = 0; i < kb->count; i++) {
        for (size_t j = 0; j < kb->entries[i].nterms; j++)
            kb->df[out++].stem = kb->entries[i].terms[j].stem;
    }
    qsort(kb->df, total, sizeof(*kb->df), cmp_df);
    /* Stems are unique within an entry, so a run of equal stems counts entries. */
    out = 0;
    for (size_t i = 0; i < total; i++) {
        if (out > 0 && strcmp(kb->df[out - 1].stem, kb->df[i].stem) == 0) {
            kb->df[out - 1].n++;
            continue;
        }
        kb->df[out].stem = kb->df[i].stem;
        kb->df[out].n = 1;
        out++;
    }
    kb->ndf = out;
}

static void entry_cleanup(struct kb_entry *e)
{
    for (size_t i = 0; i < e->nterms; i++)
        free(e->terms[i].stem);
    free(e->terms);
    free(e->id);
    free(e->title);
    free(e->answer);
}

static void kb_cleanup(struct kb *kb)
{
    for (size_t i = 0; i < kb->count; i++)
        entry_cleanup(&kb->entries[i]);
    free(kb->entries);
    free(kb->df);
    free(kb->fallback);
    memset(kb, 0, sizeof(*kb));
}

static bool kb_has_id(const struct kb *kb, const char *id)
{
    for (size_t i = 0; i < kb->count; i++) {
        if (strcmp(kb->entries[i].id, id) == 0)
            return true;
    }
    return false;
}

static cca_rc load_knowledge(struct agent_def *ag, enum cca_agent agent, const char *dir,
                             struct cca_error *reterr)
{
    const char *name = cca_agent_name(agent);
    char rel[64];
    char *fallback[CCA_LANG__COUNT] = {NULL, NULL};
    json_t *root = NULL;
    json_t *entries;
    json_t *obj;
    size_t idx;
    cca_rc rc;

    (void)snprintf(rel, sizeof(rel), "knowledge/%s.json", name);
    rc = load_json(dir, rel, &root, reterr);
    if (rc != CCA_OK)
        goto out;
    if (json_string_value(json_object_get(root, "agent")) == NULL ||
        strcmp(json_string_value(json_object_get(root, "agent")), name) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: \"agent\" must be \"%s\"", rel,
                           name);
        goto out;
    }
    rc = load_lang_pair(json_object_get(root, "fallback"), rel, "fallback", fallback,
                        reterr);
    if (rc != CCA_OK)
        goto out;
    entries = json_object_get(root, "entries");
    if (!json_is_array(entries) || json_array_size(entries) > KB_ENTRIES_MAX) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID,
                           "%s: \"entries\" must be an array of at most %d entries", rel,
                           KB_ENTRIES_MAX);
        goto out;
    }
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        ag->kb[l].entries =
            cca_xcalloc(json_array_size(entries), sizeof(struct kb_entry));
        ag->kb[l].fallback = fallback[l];
        fallback[l] = NULL;
    }
    json_array_foreach (entries, idx, obj) {
        struct kb_entry e = {0};
        enum cca_lang lang = CCA_LANG_EN;
        struct kb *kb;

        rc = load_entry(&e, &lang, obj, rel, idx, reterr);
        if (rc != CCA_OK) {
            entry_cleanup(&e);
            goto out;
        }
        kb = &ag->kb[lang];
        if (kb_has_id(kb, e.id)) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: duplicate id \"%s\" for %s",
                               rel, e.id, cca_lang_code(lang));
            entry_cleanup(&e);
            goto out;
        }
        kb->entries[kb->count++] = e;
    }
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        if (ag->kb[l].count == 0) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID, "%s: no entries for \"%s\"", rel,
                               cca_lang_code((enum cca_lang)l));
            goto out;
        }
        kb_index(&ag->kb[l]);
    }
out:
    for (int l = 0; l < CCA_LANG__COUNT; l++)
        free(fallback[l]);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------- prompts */

/*
 * Expand KB_PLACEHOLDER in @text with the entries of @kb marked "prompt": the
 * knowledge base is the single source of prices and procedures, so the model
 * and the offline responder can never disagree. Any other "{{" is an error.
 */
static cca_rc expand_prompt(const char *text, const struct kb *kb, const char *rel,
                            char **ret_prompt, struct cca_error *reterr)
{
    struct strbuf sb = {0};
    struct strbuf know = {0};
    const char *p = text;
    const char *hit;
    cca_rc rc = CCA_OK;

    for (size_t i = 0; kb != NULL && i < kb->count; i++) {
        if (!kb->entries[i].in_prompt)
            continue;
        if (know.len > 0)
            sb_puts(&know, "\n\n");
        sb_puts(&know, KB_PROMPT_TITLE);
        sb_puts(&know, kb->entries[i].title);
        sb_puts(&know, "\n");
        sb_puts(&know, kb->entries[i].answer);
    }
    while ((hit = strstr(p, "{{")) != NULL) {
        if (kb == NULL || strncmp(hit, KB_PLACEHOLDER, strlen(KB_PLACEHOLDER)) != 0) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "%s: unknown placeholder near '%.20s'", rel, hit);
            goto out;
        }
        if (know.len == 0) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "%s: uses " KB_PLACEHOLDER
                               " but no knowledge entry has \"prompt\": true",
                               rel);
            goto out;
        }
        sb_append(&sb, p, (size_t)(hit - p));
        sb_append(&sb, know.p, know.len);
        p = hit + strlen(KB_PLACEHOLDER);
    }
    sb_puts(&sb, p);
    *ret_prompt = sb_take(&sb);
out:
    free(sb.p);
    free(know.p);
    return rc;
}

static cca_rc load_prompt(const char *dir, const char *base, enum cca_lang lang,
                          const struct kb *kb, char **ret_prompt,
                          struct cca_error *reterr)
{
    char rel[64];
    char *text = NULL;
    cca_rc rc;

    (void)snprintf(rel, sizeof(rel), "agents/%s.%s.txt", base, cca_lang_code(lang));
    rc = load_text(dir, rel, &text, reterr);
    if (rc != CCA_OK)
        goto out;
    rc = expand_prompt(text, kb, rel, ret_prompt, reterr);
out:
    free(text);
    return rc;
}

/* ------------------------------------------------------------- public API */

cca_rc cca_agents_new(const char *data_dir, struct cca_agents **ret_agents,
                      struct cca_error *reterr)
{
    struct cca_agents *a = NULL;
    cca_rc rc;

    if (data_dir == NULL || *data_dir == '\0') {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "agents: empty data directory");
        goto out;
    }
    a = cca_xcalloc(1, sizeof(*a));
    rc = load_agents_json(a, data_dir, reterr);
    if (rc != CCA_OK)
        goto out;
    for (int i = 0; i < CCA_AGENT__COUNT; i++) {
        enum cca_agent id = (enum cca_agent)i;
        struct agent_def *ag = &a->agent[i];

        rc = load_knowledge(ag, id, data_dir, reterr);
        if (rc != CCA_OK)
            goto out;
        for (int l = 0; l < CCA_LANG__COUNT; l++) {
            rc = load_prompt(data_dir, cca_agent_name(id), (enum cca_lang)l, &ag->kb[l],
                             &ag->prompt[l], reterr);
            if (rc != CCA_OK)
                goto out;
        }
    }
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        rc = load_prompt(data_dir, "classifier", (enum cca_lang)l, NULL,
                         &a->classifier[l], reterr);
        if (rc != CCA_OK)
            goto out;
    }
    *ret_agents = a;
    a = NULL;
out:
    cca_agents_free(a);
    return rc;
}

void cca_agents_free(struct cca_agents *agents)
{
    if (agents == NULL)
        return;
    for (int i = 0; i < CCA_AGENT__COUNT; i++) {
        struct agent_def *ag = &agents->agent[i];

        for (int l = 0; l < CCA_LANG__COUNT; l++) {
            free(ag->handoff[l]);
            free(ag->prompt[l]);
            kb_cleanup(&ag->kb[l]);
        }
    }
    for (int l = 0; l < CCA_LANG__COUNT; l++)
        free(agents->classifier[l]);
    free(agents);
}

static bool agent_ok(enum cca_agent agent)
{
    return (int)agent >= 0 && agent < CCA_AGENT__COUNT;
}

static bool lang_ok(enum cca_lang lang)
{
    return (int)lang >= 0 && lang < CCA_LANG__COUNT;
}

const char *cca_agents_prompt(const struct cca_agents *agents, enum cca_agent agent,
                              enum cca_lang lang)
{
    if (agents == NULL || !agent_ok(agent) || !lang_ok(lang))
        return NULL;
    return agents->agent[agent].prompt[lang];
}

double cca_agents_temperature(const struct cca_agents *agents, enum cca_agent agent)
{
    if (agents == NULL || !agent_ok(agent))
        return 0.0;
    return agents->agent[agent].temperature;
}

const char *cca_agents_classifier_prompt(const struct cca_agents *agents,
                                         enum cca_lang lang)
{
    assert(agents != NULL);
    return agents->classifier[lang_ok(lang) ? lang : CCA_LANG_EN];
}

static double kb_idf(const struct kb *kb, const char *stem)
{
    struct kb_df key = {.stem = stem};
    const struct kb_df *df = bsearch(&key, kb->df, kb->ndf, sizeof(*kb->df), cmp_df);
    double n = df != NULL ? (double)df->n : 0.0;
    double total = (double)kb->count;

    return log(1.0 + (total - n + 0.5) / (n + 0.5));
}

static double kb_score(const struct kb *kb, const struct kb_entry *e, char *const *query,
                       size_t nquery)
{
    double norm = BM25_K1 * (1.0 - BM25_B + BM25_B * e->len / kb->avgdl);
    double score = 0.0;

    for (size_t i = 0; i < nquery; i++) {
        struct kb_term key = {.stem = query[i]};
        const struct kb_term *t =
            bsearch(&key, e->terms, e->nterms, sizeof(*e->terms), cmp_term);

        if (t != NULL)
            score += kb_idf(kb, t->stem) * t->tf * (BM25_K1 + 1.0) / (t->tf + norm);
    }
    return score;
}

/* Remove adjacent duplicates from the sorted @v; returns the new count. */
static size_t dedupe_sorted(char **v, size_t n)
{
    size_t out = 0;

    for (size_t i = 0; i < n; i++) {
        if (out == 0 || strcmp(v[out - 1], v[i]) != 0)
            v[out++] = v[i];
    }
    return out;
}

/*
 * The best entry of @kb for @text, or NULL when none reaches KB_MIN_SCORE.
 * Ties keep the earlier entry, so the file order decides and replies are
 * deterministic.
 */
static const struct kb_entry *kb_best(const struct kb *kb, const char *text, size_t len)
{
    struct cca_text_tokens t = {0};
    char **query = NULL;
    size_t nquery = 0;
    const struct kb_entry *best = NULL;
    double best_score = 0.0;

    if (text == NULL || len == 0)
        goto out;
    if (cca_text_analyze(text, len, &t) != CCA_OK)
        goto out;
    /* BM25 sums over distinct query terms; the stems stay owned by @t. */
    query = cca_xcalloc(t.count, sizeof(*query));
    for (size_t i = 0; i < t.count; i++) {
        if (is_content_word(t.word[i]))
            query[nquery++] = t.stem[i];
    }
    qsort(query, nquery, sizeof(*query), cmp_str);
    nquery = dedupe_sorted(query, nquery);
    for (size_t i = 0; i < kb->count; i++) {
        double s = kb_score(kb, &kb->entries[i], query, nquery);

        if (s >= KB_MIN_SCORE && (best == NULL || s > best_score)) {
            best = &kb->entries[i];
            best_score = s;
        }
    }
out:
    free(query);
    cca_text_tokens_cleanup(&t);
    return best;
}

char *cca_agents_offline_reply(const struct cca_agents *agents, enum cca_agent agent,
                               enum cca_lang lang, const char *text, size_t len,
                               bool handoff)
{
    const struct agent_def *ag;
    const struct kb *kb;
    const struct kb_entry *best;
    struct strbuf sb = {0};

    assert(agents != NULL && agent_ok(agent) && lang_ok(lang));
    /* Out-of-range values are caller bugs; with NDEBUG answer as the supervisor. */
    if (!agent_ok(agent))
        agent = CCA_AGENT_SUPERVISOR;
    if (!lang_ok(lang))
        lang = CCA_LANG_EN;
    ag = &agents->agent[agent];
    kb = &ag->kb[lang];
    best = kb_best(kb, text, len);
    if (handoff) {
        sb_puts(&sb, ag->handoff[lang]);
        sb_puts(&sb, "\n\n");
    }
    sb_puts(&sb, best != NULL ? best->answer : kb->fallback);
    return sb_take(&sb);
}

char *cca_agents_kb_answer(const struct cca_agents *agents, enum cca_agent agent,
                           enum cca_lang lang, const char *text, size_t len)
{
    const struct kb_entry *best;

    if (agents == NULL || !agent_ok(agent) || !lang_ok(lang))
        return NULL;
    best = kb_best(&agents->agent[agent].kb[lang], text, len);
    return best != NULL ? cca_xstrdup(best->answer) : NULL;
}

const char *cca_agents_clarify_question(enum cca_lang lang)
{
    /* Our own words, in the three agents' terms: the answer routes clearly. */
    if (lang == CCA_LANG_RU)
        return "Уточните, пожалуйста, чтобы я передал вас нужному специалисту: у вас "
               "техническая проблема (что-то не работает, ошибка, не получается войти), "
               "вопрос о товарах, ценах или заказе, или жалоба либо возврат денег?";
    return "Could you tell me a little more, so that the right specialist can help: is "
           "it a technical problem (something not working, an error, trouble logging "
           "in), a question about products, prices or ordering, or a complaint or "
           "refund?";
}
