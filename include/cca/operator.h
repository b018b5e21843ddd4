/* SPDX-License-Identifier: MIT */
#ifndef CCA_OPERATOR_H
#define CCA_OPERATOR_H
/* placeholder: being written */
#endif
