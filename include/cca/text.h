/* SPDX-License-Identifier: MIT */
#ifndef CCA_TEXT_H
#define CCA_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "cca/common.h"

/*
 * Text analysis shared by the router and the offline responder:
 * UTF-8 checks, NFKC case folding (utf8proc), tokenising and Snowball stemming
 * (libstemmer, algorithms "russian" and "english",
 * https://snowballstem.org/algorithms/).
 */

enum cca_lang { CCA_LANG_EN = 0, CCA_LANG_RU = 1, CCA_LANG__COUNT = 2 };

/* cca_lang_code - "en" or "ru". Static string, never NULL. */
const char *cca_lang_code(enum cca_lang lang);

/*
 * cca_text_is_utf8 - true if @s[0..len) is well-formed UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). NUL bytes are
 * rejected too. Thread-safe.
 */
bool cca_text_is_utf8(const char *s, size_t len);

/*
 * cca_text_utf8_cut - the length of the longest prefix of @s[0..len) that is
 * at most @max bytes and does not end inside a UTF-8 sequence (it never splits
 * a character, RFC 3629: continuation bytes are 10xxxxxx). For capping text
 * that must stay valid UTF-8. Pure and thread-safe.
 */
size_t cca_text_utf8_cut(const char *s, size_t len, size_t max);

/*
 * cca_text_is_blank - true if @s[0..len) shows nothing: every code point is a
 * separator (Unicode general categories Zs, Zl, Zp), a control (Cc), a format
 * character (Cf: U+200B, U+FEFF ...) or default-ignorable, by utf8proc's
 * character properties. An empty string is blank; a string that is not UTF-8
 * is not. Thread-safe.
 */
bool cca_text_is_blank(const char *s, size_t len);

/*
 * cca_text_has_control - true if the well-formed UTF-8 @s[0..len) holds a
 * control character (Unicode category Cc: U+0000..U+001F, U+007F..U+009F).
 * Names and ids refuse them. Pure and thread-safe.
 */
bool cca_text_has_control(const char *s, size_t len);

/*
 * cca_text_codepoints - number of Unicode code points in @s[0..len), or -1 if
 * it is not valid UTF-8 as defined by cca_text_is_utf8. Thread-safe.
 */
ssize_t cca_text_codepoints(const char *s, size_t len);

/*
 * cca_text_detect_lang - CCA_LANG_RU when @s has more Cyrillic letters than
 * Latin ones, else CCA_LANG_EN (also for invalid UTF-8 or no letters).
 * Thread-safe.
 */
enum cca_lang cca_text_detect_lang(const char *s, size_t len);

/*
 * struct cca_text_tokens - the analysed form of a text.
 * @count: number of tokens (at most CCA_TEXT_MAX_TOKENS; extra ones are dropped).
 * @stem:  @count NUL-terminated stems, each owned by the struct.
 * @word:  @count NUL-terminated folded words (NFKC + case fold, "ё" -> "е"),
 *         before stemming, each owned by the struct.
 * Tokens are maximal runs of letters and digits; everything else separates.
 * Combining marks and default-ignorable code points (soft hyphen, zero-width
 * joiner) inside a word do not split it; a symbol whose compatibility form is a
 * letter counts as one ("™" -> "tm"). A folded word is cut at 128 bytes (on a
 * code point boundary), so no single token can make the work unbounded.
 */
#define CCA_TEXT_MAX_TOKENS 512
struct cca_text_tokens {
    size_t count;
    char **stem;
    char **word;
};

/*
 * cca_text_analyze - normalise (NFKC, case fold), tokenise and stem @s[0..len).
 * Each token is stemmed with the Russian stemmer when it contains Cyrillic
 * letters, else with the English one. @ret is initialised by the call and must
 * be released with cca_text_tokens_cleanup, also on failure.
 * Returns CCA_OK, or CCA_ERR_PARSE for invalid UTF-8 (then @ret is empty).
 * Thread-safe: stemmers are per thread (libstemmer objects are not shareable).
 */
cca_rc cca_text_analyze(const char *s, size_t len, struct cca_text_tokens *ret);

/* cca_text_tokens_cleanup - free what @t owns and zero it. Accepts a zeroed struct. */
void cca_text_tokens_cleanup(struct cca_text_tokens *t);

/*
 * cca_text_thread_cleanup - free this thread's stemmers now (they are also freed
 * automatically at thread exit). Safe to call when none were created.
 */
void cca_text_thread_cleanup(void);

#endif
