/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libstemmer.h>
#include <utf8proc.h>

#include "cca/mem.h"
#include "cca/text.h"

/*
 * Limits that bound the work done on hostile input (house style 8.5 rule 6).
 * A raw token longer than TOKEN_RAW_MAX bytes is normalised from its first
 * TOKEN_RAW_MAX bytes only; a folded word is cut at WORD_MAX bytes. No real word
 * comes near either limit.
 */
#define TOKEN_RAW_MAX 512
#define WORD_MAX      128
/*
 * One code point decomposes (compatibility + case fold) into at most 18 code
 * points (U+FDFA, 3 bytes), i.e. at most 6 per input byte.
 */
#define DECOMP_MAX (TOKEN_RAW_MAX * 6 + 64)

/* utf8proc_map options of NFKC_Casefold, plus stripping of default ignorables. */
#define NORM_OPTS                                                                        \
    (UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD |          \
     UTF8PROC_IGNORE)

const char *cca_lang_code(enum cca_lang lang)
{
    return lang == CCA_LANG_RU ? "ru" : "en";
}

/*
 * Decode one code point of @s[0..len) (len > 0) into *ret_cp. Returns the number
 * of bytes used, or 0 for an ill-formed sequence (RFC 3629 table in section 4:
 * no overlong forms, no surrogates, nothing above U+10FFFF) or a NUL byte.
 */
static size_t decode(const unsigned char *s, size_t len, int32_t *ret_cp)
{
    unsigned char c = s[0];
    size_t n;
    int32_t cp;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c == 0)
        return 0;
    if (c < 0x80) {
        *ret_cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        unsigned char b = s[i];

        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            return 0;
        cp = (cp << 6) | (b & 0x3F);
    }
    *ret_cp = cp;
    return n;
}

bool cca_text_is_utf8(const char *s, size_t len)
{
    return cca_text_codepoints(s, len) >= 0;
}

bool cca_text_has_control(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7F)
            return true;
        /* U+0080..U+009F are C2 80..C2 9F in UTF-8. */
        if (p[i] == 0xC2 && i + 1 < len && p[i + 1] <= 0x9F)
            return true;
    }
    return false;
}

ssize_t cca_text_codepoints(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    ssize_t count = 0;
    size_t i = 0;

    if (s == NULL)
        return len == 0 ? 0 : -1;
    while (i < len) {
        int32_t cp;
        size_t n;

        /* ASCII fast path: most of our input is plain ASCII or 2-byte Cyrillic. */
        if (p[i] != 0 && p[i] < 0x80) {
            i++;
            count++;
            continue;
        }
        n = decode(p + i, len - i, &cp);
        if (n == 0)
            return -1;
        i += n;
        count++;
    }
    return count;
}

static bool is_cyrillic(int32_t cp)
{
    return (cp >= 0x0400 && cp <= 0x052F) || (cp >= 0x1C80 && cp <= 0x1C8F) ||
           (cp >= 0x2DE0 && cp <= 0x2DFF) || (cp >= 0xA640 && cp <= 0xA69F);
}

static bool is_latin(int32_t cp)
{
    return (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') ||
           (cp >= 0x00C0 && cp <= 0x024F && cp != 0x00D7 && cp != 0x00F7) ||
           (cp >= 0x1E00 && cp <= 0x1EFF) || (cp >= 0xFF21 && cp <= 0xFF3A) ||
           (cp >= 0xFF41 && cp <= 0xFF5A);
}

enum cca_lang cca_text_detect_lang(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t cyr = 0, lat = 0, i = 0;

    if (s == NULL || !cca_text_is_utf8(s, len))
        return CCA_LANG_EN;
    while (i < len) {
        int32_t cp;
        size_t n = decode(p + i, len - i, &cp);

        i += n;
        if (is_cyrillic(cp))
            cyr++;
        else if (is_latin(cp))
            lat++;
    }
    return cyr > lat ? CCA_LANG_RU : CCA_LANG_EN;
}

/*
 * Per-thread state: the two Snowball stemmers (not shareable between threads)
 * and a scratch pool in which one call collects its strings before copying them
 * into a single allocation. Created lazily, destroyed by the key destructor at
 * thread exit or by cca_text_thread_cleanup.
 */
struct text_ctx {
    struct sb_stemmer *stemmer[CCA_LANG__COUNT];
    bool stemmer_failed[CCA_LANG__COUNT];
    char *pool;
    size_t pool_cap;
    size_t pool_len;
    size_t word_off[CCA_TEXT_MAX_TOKENS];
    size_t stem_off[CCA_TEXT_MAX_TOKENS];
};

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static bool ctx_key_ok;

static void ctx_destroy(void *arg)
{
    struct text_ctx *ctx = arg;

    if (ctx == NULL)
        return;
    for (int i = 0; i < CCA_LANG__COUNT; i++)
        sb_stemmer_delete(ctx->stemmer[i]);
    free(ctx->pool);
    free(ctx);
}

static void ctx_key_create(void)
{
    ctx_key_ok = pthread_key_create(&ctx_key, ctx_destroy) == 0;
}

static struct text_ctx *ctx_get(void)
{
    struct text_ctx *ctx;

    (void)pthread_once(&ctx_once, ctx_key_create);
    if (!ctx_key_ok)
        return NULL;
    ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL) {
        ctx = cca_xcalloc(1, sizeof(*ctx));
        if (pthread_setspecific(ctx_key, ctx) != 0) {
            free(ctx);
            return NULL;
        }
    }
    return ctx;
}

void cca_text_thread_cleanup(void)
{
    struct text_ctx *ctx;

    (void)pthread_once(&ctx_once, ctx_key_create);
    if (!ctx_key_ok)
        return;
    ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL)
        return;
    (void)pthread_setspecific(ctx_key, NULL);
    ctx_destroy(ctx);
}

/* Append @n bytes plus a NUL to the pool; returns the offset of the copy. */
static size_t pool_add(struct text_ctx *ctx, const char *s, size_t n)
{
    size_t off = ctx->pool_len;

    if (ctx->pool_cap - ctx->pool_len < n + 1) {
        size_t cap = ctx->pool_cap ? ctx->pool_cap : 1024;

        while (cap - ctx->pool_len < n + 1)
            cap *= 2;
        ctx->pool = cca_xrealloc(ctx->pool, cap);
        ctx->pool_cap = cap;
    }
    memcpy(ctx->pool + off, s, n);
    ctx->pool[off + n] = '\0';
    ctx->pool_len += n + 1;
    return off;
}

/*
 * Stem @word[0..len) into the pool. If a stemmer cannot be created or fails
 * (libstemmer reports out of memory as NULL), the folded word is its own stem:
 * analysis degrades but never fails.
 */
static size_t stem_add(struct text_ctx *ctx, enum cca_lang lang, const char *word,
                       size_t len)
{
    struct sb_stemmer *st = ctx->stemmer[lang];
    const sb_symbol *out;

    if (st == NULL && !ctx->stemmer_failed[lang]) {
        st = sb_stemmer_new(lang == CCA_LANG_RU ? "russian" : "english", "UTF_8");
        ctx->stemmer[lang] = st;
        ctx->stemmer_failed[lang] = st == NULL;
    }
    if (st == NULL)
        return pool_add(ctx, word, len);
    out = sb_stemmer_stem(st, (const sb_symbol *)word, (int)len);
    if (out == NULL)
        return pool_add(ctx, word, len);
    return pool_add(ctx, (const char *)out, (size_t)sb_stemmer_length(st));
}

enum cp_class { CP_SEP, CP_WORD, CP_JOIN };

/*
 * Class of a raw code point for the first, coarse split. Letters and digits
 * start or continue a token; marks and default-ignorable code points (soft
 * hyphen, zero-width joiner) continue one; a symbol whose compatibility form
 * contains a letter or digit ("™", "㎏", "①") counts as a letter.
 */
static enum cp_class classify(int32_t cp)
{
    const utf8proc_property_t *prop;
    utf8proc_int32_t buf[32];
    utf8proc_ssize_t n;
    int bound = 0;

    if (cp < 0x80) {
        if ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') ||
            (cp >= 'A' && cp <= 'Z'))
            return CP_WORD;
        return CP_SEP;
    }
    prop = utf8proc_get_property(cp);
    switch (prop->category) {
        case UTF8PROC_CATEGORY_LU:
        case UTF8PROC_CATEGORY_LL:
        case UTF8PROC_CATEGORY_LT:
        case UTF8PROC_CATEGORY_LM:
        case UTF8PROC_CATEGORY_LO:
        case UTF8PROC_CATEGORY_ND:
        case UTF8PROC_CATEGORY_NL:
        case UTF8PROC_CATEGORY_NO:
            return CP_WORD;
        case UTF8PROC_CATEGORY_MN:
        case UTF8PROC_CATEGORY_MC:
        case UTF8PROC_CATEGORY_ME:
            return CP_JOIN;
        default:
            break;
    }
    if (prop->ignorable)
        return CP_JOIN;
    n = utf8proc_decompose_char(cp, buf, (utf8proc_ssize_t)CCA_ARRAY_SIZE(buf),
                                UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD,
                                &bound);
    for (utf8proc_ssize_t i = 0; i < n && i < (utf8proc_ssize_t)CCA_ARRAY_SIZE(buf);
         i++) {
        utf8proc_category_t c = utf8proc_category(buf[i]);

        if ((c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
            (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO))
            return CP_WORD;
    }
    return CP_SEP;
}

static bool is_word_cp(int32_t cp, bool in_token)
{
    utf8proc_category_t c;

    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z');
    c = utf8proc_category(cp);
    if ((c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
        (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO))
        return true;
    return in_token && c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME;
}

/* Emit one folded word @cps[0..n) as a token (word and stem). */
static void emit(struct text_ctx *ctx, size_t *count, const int32_t *cps, size_t n)
{
    char word[WORD_MAX + 4];
    size_t len = 0;
    bool cyr = false;

    for (size_t i = 0; i < n; i++) {
        int32_t cp = cps[i] == 0x0451 ? 0x0435 : cps[i]; /* ё -> е */
        utf8proc_uint8_t enc[4];
        utf8proc_ssize_t k = utf8proc_encode_char(cp, enc);

        if (k <= 0 || len + (size_t)k > WORD_MAX)
            break;
        memcpy(word + len, enc, (size_t)k);
        len += (size_t)k;
        cyr = cyr || is_cyrillic(cp);
    }
    if (len == 0)
        return;
    ctx->word_off[*count] = pool_add(ctx, word, len);
    ctx->stem_off[*count] = stem_add(ctx, cyr ? CCA_LANG_RU : CCA_LANG_EN, word, len);
    (*count)++;
}

/*
 * Normalise one raw token @raw[0..len) (NFKC + case fold) and emit the runs of
 * letters and digits it contains: normalisation can produce separators ("½" is
 * "1⁄2"), so the result is split again.
 */
static void fold_token(struct text_ctx *ctx, size_t *count, const char *raw, size_t len)
{
    utf8proc_int32_t buf[DECOMP_MAX];
    utf8proc_ssize_t n;
    size_t start = 0;
    bool in_token = false;

    n = utf8proc_decompose((const utf8proc_uint8_t *)raw, (utf8proc_ssize_t)len, buf,
                           (utf8proc_ssize_t)CCA_ARRAY_SIZE(buf), NORM_OPTS);
    if (n <= 0 || n > (utf8proc_ssize_t)CCA_ARRAY_SIZE(buf))
        return;
    n = utf8proc_normalize_utf32(buf, n, NORM_OPTS);
    if (n <= 0)
        return;
    for (size_t i = 0; i <= (size_t)n && *count < CCA_TEXT_MAX_TOKENS; i++) {
        bool w = i < (size_t)n && is_word_cp(buf[i], in_token);

        if (w && !in_token) {
            start = i;
            in_token = true;
        } else if (!w && in_token) {
            emit(ctx, count, buf + start, i - start);
            in_token = false;
        }
    }
}

cca_rc cca_text_analyze(const char *s, size_t len, struct cca_text_tokens *ret)
{
    const unsigned char *p = (const unsigned char *)s;
    struct text_ctx *ctx;
    size_t count = 0, i = 0, tok_start = 0, tok_cut = 0;
    bool in_token = false;
    char **block;
    char *strings;

    memset(ret, 0, sizeof(*ret));
    if (s == NULL && len > 0)
        return CCA_ERR_PARSE;
    if (!cca_text_is_utf8(s, len))
        return CCA_ERR_PARSE;
    ctx = ctx_get();
    if (ctx == NULL)
        return CCA_OK; /* pthread_key_create failed: nothing we can stem with */
    ctx->pool_len = 0;

    /*
     * Coarse split on the raw text, then normalise token by token: no buffer
     * proportional to the input, and the scan stops at CCA_TEXT_MAX_TOKENS.
     */
    while (i <= len && count < CCA_TEXT_MAX_TOKENS) {
        int32_t cp = 0;
        size_t n = 0;
        enum cp_class cls = CP_SEP;

        if (i < len) {
            n = p[i] < 0x80 ? 1 : decode(p + i, len - i, &cp);
            if (p[i] < 0x80)
                cp = p[i];
            cls = classify(cp);
        }
        if (!in_token && cls == CP_WORD) {
            in_token = true;
            tok_start = i;
        }
        if (in_token && cls == CP_SEP) {
            fold_token(ctx, &count, s + tok_start, tok_cut - tok_start);
            in_token = false;
        }
        if (i == len)
            break;
        i += n;
        /* Remember the last code point boundary within TOKEN_RAW_MAX. */
        if (in_token && i - tok_start <= TOKEN_RAW_MAX)
            tok_cut = i;
    }
    if (count == 0)
        return CCA_OK;

    /* One allocation: the two pointer arrays, then the strings. */
    block = cca_xmalloc(2 * count * sizeof(char *) + ctx->pool_len);
    strings = (char *)(block + 2 * count);
    memcpy(strings, ctx->pool, ctx->pool_len);
    ret->count = count;
    ret->stem = block;
    ret->word = block + count;
    for (size_t k = 0; k < count; k++) {
        ret->stem[k] = strings + ctx->stem_off[k];
        ret->word[k] = strings + ctx->word_off[k];
    }
    return CCA_OK;
}

void cca_text_tokens_cleanup(struct cca_text_tokens *t)
{
    if (t == NULL)
        return;
    /* t->stem is the start of the single block that also holds word[] and strings. */
    free(t->stem);
    memset(t, 0, sizeof(*t));
}

bool cca_text_is_blank(const char *s, size_t len)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t left = (utf8proc_ssize_t)len;

    while (left > 0) {
        utf8proc_int32_t c;
        utf8proc_ssize_t n = utf8proc_iterate(p, left, &c);
        const utf8proc_property_t *prop;

        if (n <= 0)
            return false; /* not UTF-8: not blank, the caller's checks decide */
        prop = utf8proc_get_property(c);
        switch (prop->category) {
            case UTF8PROC_CATEGORY_ZS: /* space separators: U+0020, U+00A0, U+3000 */
            case UTF8PROC_CATEGORY_ZL: /* U+2028 */
            case UTF8PROC_CATEGORY_ZP: /* U+2029 */
            case UTF8PROC_CATEGORY_CF: /* format: U+200B, U+FEFF, U+200D */
            case UTF8PROC_CATEGORY_CC: /* controls: \t \n \r ... */
                break;
            default:
                if (!prop->ignorable)
                    return false; /* a default-ignorable (U+034F, U+115F) is blank */
        }
        p += n;
        left -= n;
    }
    return true;
}

size_t cca_text_utf8_cut(const char *s, size_t len, size_t max)
{
    size_t n = len < max ? len : max;

    /* At a cut inside the text, back off while the next byte continues a character. */
    while (n > 0 && n < len && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}
