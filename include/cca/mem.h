/* SPDX-License-Identifier: MIT */
#ifndef CCA_MEM_H
#define CCA_MEM_H

#include <stddef.h>

/*
 * Allocation wrappers (house style 8.5 rule 5): out of memory is fatal. They log
 * one line on stderr and abort(). They wrap malloc(3), so free(3) releases what
 * they return. All thread-safe. Each returns a new pointer the caller frees.
 */
#define CCA_XALLOC __attribute__((returns_nonnull, warn_unused_result))
void *cca_xmalloc(size_t size) CCA_XALLOC __attribute__((malloc));
void *cca_xcalloc(size_t n, size_t size) CCA_XALLOC __attribute__((malloc));
void *cca_xrealloc(void *p, size_t size) CCA_XALLOC;
char *cca_xstrdup(const char *s) CCA_XALLOC __attribute__((malloc));
char *cca_xstrndup(const char *s, size_t n) CCA_XALLOC __attribute__((malloc));

/*
 * cca_mem_install_jansson - make jansson allocate through cca_xmalloc/free.
 * Call once, before any other jansson call (jansson doc/apiref.rst,
 * json_set_alloc_funcs). Not thread-safe.
 */
void cca_mem_install_jansson(void);

#endif
