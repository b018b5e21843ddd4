/* SPDX-License-Identifier: MIT */
#ifndef CCA_JSONPATCH_H
#define CCA_JSONPATCH_H

#include <jansson.h>

#include "cca/common.h"

/*
 * JSON Patch (RFC 6902) between two versions of a document, with paths in
 * JSON Pointer syntax (RFC 6901). The file store writes one patch per
 * committed change to its journal instead of the whole document
 * (docs/internals/store.md).
 *
 * Only the operations "add", "remove" and "replace" are produced or
 * accepted; "move", "copy" and "test" are rejected by cca_jsonpatch_apply.
 */

/*
 * cca_jsonpatch_diff - a patch that turns @from into @to (both borrowed, not
 * changed). Built for copy-on-write versions (src/dialog.c), where an
 * unchanged child is the same json_t in both:
 *   - a member whose value is the same pointer, or an equal scalar, is skipped;
 *   - objects on both sides are compared member by member, recursively;
 *   - an array whose old elements are the leading elements of the new one
 *     (same pointers) becomes one {"op":"add","path":".../-"} per new element;
 *   - anything else is a "replace" of the whole value, a new member an "add",
 *     a vanished member a "remove".
 * Cost: O(members + array elements compared by pointer + bytes of the new
 * values). Applying the result to a document equal to @from yields a
 * document equal to @to (json_equal), with new members appended in @to's
 * order. Returns a new array, empty when nothing changed, or NULL when a
 * change cannot be expressed (the roots differ in type, or a path would
 * exceed 1 KiB): the caller then stores the whole document. Thread-safe for
 * documents no thread mutates.
 */
json_t *cca_jsonpatch_diff(json_t *from, json_t *to);

/*
 * cca_jsonpatch_apply - apply @patch (borrowed: an array of operations) to
 * @doc in place (RFC 6902 section 4.1-4.3; "-" appends to an array, an array
 * index must be within bounds). @doc must not be shared with another thread
 * or document. Values from @patch are added by reference.
 * Returns CCA_OK, or CCA_ERR_INVALID with the first failing operation's
 * index and reason in @reterr; operations before it stay applied.
 */
cca_rc cca_jsonpatch_apply(json_t *doc, json_t *patch, struct cca_error *reterr) CCA_WUR;

#endif
