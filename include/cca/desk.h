/* SPDX-License-Identifier: MIT */
#ifndef CCA_DESK_H
#define CCA_DESK_H
/* placeholder: being written */
#endif
