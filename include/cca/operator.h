/* SPDX-License-Identifier: MIT */
#ifndef CCA_OPERATOR_H
#define CCA_OPERATOR_H

#include <stdbool.h>
#include <stdint.h>

#include "cca/common.h"

/*
 * Human operators (docs/OPERATORS.md): the operator record, its validation,
 * tokens and secrets. (Being written: the record functions follow.)
 */

/* An operator's own availability (seed 002): set by PUT /operators/me/status. */
enum cca_operator_status {
    CCA_OPERATOR_AVAILABLE = 0, /* takes new dialogs */
    CCA_OPERATOR_BUSY = 1,      /* keeps their dialogs, takes no new ones */
    CCA_OPERATOR_OFFLINE = 2,   /* away: their open dialogs go back to the queue */
    CCA_OPERATOR_STATUS__COUNT,
};

/*
 * Language and skill sets as bit masks: bit (1u << enum cca_lang) for
 * languages (text.h), bit (1u << enum cca_agent) for skills (common.h).
 * An empty skill set means "every skill".
 */
#define CCA_OPERATOR_LANG_BIT(lang)   (1u << (unsigned)(lang))
#define CCA_OPERATOR_SKILL_BIT(agent) (1u << (unsigned)(agent))

#endif
