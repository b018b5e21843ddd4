/* SPDX-License-Identifier: MIT */
#ifndef CCA_ASSIGN_H
#define CCA_ASSIGN_H
/* placeholder: being written */
#endif
