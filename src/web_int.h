/* SPDX-License-Identifier: MIT */
/* Private to web.c and the table tools/embed-web generates (web_assets.c). */
#ifndef CCA_WEB_INT_H
#define CCA_WEB_INT_H

#include "cca/web.h"

/* The embedded files, sorted by path (the generator sorts them). */
extern const struct cca_web_asset cca_web_table[];
extern const size_t cca_web_table_len;

#endif
