/* SPDX-License-Identifier: MIT */
#ifndef CCA_EVENTS_H
#define CCA_EVENTS_H
/* placeholder: being written */
#endif
