/* SPDX-License-Identifier: MIT */
#ifndef CCA_ROUTER_MODEL_H
#define CCA_ROUTER_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "cca/common.h"
#include "cca/text.h"

/*
 * Router model: the statistical second stage of the router (issue 16). One
 * multinomial logistic regression per language (Cox 1958; the softmax form as
 * in Bishop 2006, "Pattern Recognition and Machine Learning", 4.3.4) over
 * sparse binary features of a message: Snowball stems (libstemmer, via
 * cca_text_analyze), stem bigrams, character 4-grams of the folded words, the
 * first stem, and a few features of the request's shape (question mark,
 * exclamation mark, shouting, hashtag, mention, length). Probabilities are
 * calibrated with one temperature per language (temperature scaling, Guo et
 * al. 2017, "On Calibration of Modern Neural Networks", the one-parameter form
 * of Platt 1999 scaling) fitted on cross-validated predictions.
 *
 * The weights are trained offline by tools/train_router.py (fixed seed) and
 * shipped as a text file, data/routing/router-model.txt; docs/ROUTING.md
 * documents the format. The C side only extracts features and does inference.
 * The module never logs.
 */

/* File size cap: a bigger file is refused (CCA_ERR_TOO_LARGE). */
#define CCA_ROUTER_MODEL_MAX_BYTES (5 * 1024 * 1024)
/* Features of one language in a file; more is refused (CCA_ERR_INVALID). */
#define CCA_ROUTER_MODEL_MAX_FEATURES 400000
/* Bytes of one feature name, without the NUL (longer names are refused). */
#define CCA_ROUTER_MODEL_FEATURE_LEN 160
/* Distinct features extracted from one message; the rest are dropped. */
#define CCA_ROUTER_MODEL_MAX_MSG_FEATURES 1024
/* Features reported per decision (struct cca_router_model_result.top). */
#define CCA_ROUTER_MODEL_TOP     6
#define CCA_ROUTER_MODEL_TOP_LEN 64

struct cca_router_model;

/*
 * struct cca_router_model_params - the decision thresholds of one language, as
 * written in the model file (docs/ROUTING.md, "Model file").
 * @min_prob:          the model decides a first message when its top
 *                     calibrated probability reaches this (0..1).
 * @followup_min_prob: a follow-up moves to another agent by the model only at
 *                     this probability or above (0..1).
 * @override_min_prob: the model overrules a clear keyword winner only at this
 *                     probability or above (0..1; 1 = never).
 * @rule_min_score:    a keyword supervisor score at or above this is a rule
 *                     (a request for a human, a legal threat, a refund or
 *                     complaint word): the model is not consulted (> 0).
 * @temperature:       the calibration temperature (> 0); logits are divided
 *                     by it before the softmax.
 */
struct cca_router_model_params {
    double min_prob;
    double followup_min_prob;
    double override_min_prob;
    double rule_min_score;
    double temperature;
};

/*
 * struct cca_router_model_result - one prediction (a plain value).
 * @prob:      calibrated probability per agent (index = enum cca_agent), sum 1.
 * @best:      the agent with the highest probability (ties: enum order).
 * @top_count: entries used in @top.
 * @top:       up to CCA_ROUTER_MODEL_TOP features of the message that weighed
 *             most for @best (weight for @best minus the mean weight over the
 *             agents, positive only, largest first), as feature names cut at
 *             63 bytes on a code point boundary, NUL-terminated.
 */
struct cca_router_model_result {
    double prob[CCA_AGENT__COUNT];
    enum cca_agent best;
    size_t top_count;
    char top[CCA_ROUTER_MODEL_TOP][CCA_ROUTER_MODEL_TOP_LEN];
};

/*
 * cca_router_model_load - read the model file at @path (format
 * "cca-router-model/1", docs/ROUTING.md) and validate all of it.
 * Returns CCA_OK and a new model in *ret_model (free with
 * cca_router_model_free), or, with *ret_model untouched and a message in
 * @reterr (may be NULL) that names the line:
 *   CCA_ERR_NOT_FOUND  no such file;
 *   CCA_ERR_IO         unreadable, or not a regular file;
 *   CCA_ERR_TOO_LARGE  over CCA_ROUTER_MODEL_MAX_BYTES;
 *   CCA_ERR_PARSE      not UTF-8, a bad first line, a malformed line or number;
 *   CCA_ERR_INVALID    a rule is broken: unknown or missing key or language, a language
 *                      twice, classes other than the three agents, a
 *                      parameter out of range, a non-finite or too large
 *                      weight (|w| > 1000), a duplicate or empty feature, a
 *                      feature list shorter than its count ("end" inside it:
 *                      "features N, found k"), no language at all. A list
 *                      longer than its count shows as an unknown key (the
 *                      extra line) or CCA_ERR_PARSE at end of file.
 * The model is immutable afterwards; every other function is thread-safe.
 */
cca_rc cca_router_model_load(const char *path, struct cca_router_model **ret_model,
                             struct cca_error *reterr) CCA_WUR;

/* cca_router_model_free - release @model. Accepts NULL. */
void cca_router_model_free(struct cca_router_model *model);

/*
 * cca_router_model_has_lang - true if @model (may be NULL: false) has weights
 * for @lang.
 */
bool cca_router_model_has_lang(const struct cca_router_model *model, enum cca_lang lang);

/*
 * cca_router_model_feature_count - the number of features of @lang in @model
 * (0 when @model is NULL or has no such language).
 */
size_t cca_router_model_feature_count(const struct cca_router_model *model,
                                      enum cca_lang lang);

/*
 * cca_router_model_params - the thresholds of @lang in *ret. Returns false, *ret
 * untouched, when @model is NULL or has no such language.
 */
bool cca_router_model_params(const struct cca_router_model *model, enum cca_lang lang,
                             struct cca_router_model_params *ret);

/*
 * cca_router_model_feature_fn - receives one feature name @name[0..len)
 * (NUL-terminated too, borrowed for the call) and the caller's @ctx.
 */
typedef void (*cca_router_model_feature_fn)(const char *name, size_t len, void *ctx);

/*
 * cca_router_model_features - the features of one message, each once, in a
 * fixed order: for the raw text @text[0..len) (UTF-8, may be NULL when @len is
 * 0) and its analysis @tokens (cca_text_analyze of the same text, borrowed),
 * call @fn once per distinct feature. Feature names (docs/ROUTING.md):
 *   "w=<stem>"          each stem;
 *   "b=<stem>+<stem>"   each pair of adjacent stems;
 *   "f=<stem>"          the first stem;
 *   "c=<4 code points>" character 4-grams of each folded word of at least 3
 *                       code points, padded as "^word$";
 *   "s=?" "s=!" "s=#" "s=@" "s=caps" "s=n<k>" shape: a question mark, an
 *                       exclamation mark, a hashtag, a mention, shouting (as
 *                       the keyword stage defines it), the token count bucket
 *                       k in 1, 2, 3, 5, 9, 17 (1, 2, 3-4, 5-8, 9-16, 17+).
 * Names longer than CCA_ROUTER_MODEL_FEATURE_LEN bytes are skipped; after
 * CCA_ROUTER_MODEL_MAX_MSG_FEATURES features the rest are dropped. The
 * training script gets its features through this function (`route
 * --features`), so training and inference cannot disagree.
 * Returns the number of features passed to @fn. Thread-safe; no allocation.
 */
size_t cca_router_model_features(const char *text, size_t len,
                                 const struct cca_text_tokens *tokens,
                                 cca_router_model_feature_fn fn, void *ctx);

/*
 * cca_router_model_predict - the calibrated probabilities of the three agents
 * for one message (@text, @len and @tokens as for cca_router_model_features),
 * with the weights of @lang, into *ret: z = bias + sum of the weights of the
 * message's features, prob = softmax(z / temperature).
 * Returns false, *ret zeroed, when @model is NULL or has no weights for @lang.
 * Thread-safe; no allocation.
 */
bool cca_router_model_predict(const struct cca_router_model *model, enum cca_lang lang,
                              const char *text, size_t len,
                              const struct cca_text_tokens *tokens,
                              struct cca_router_model_result *ret);

#endif
