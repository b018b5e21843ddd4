/* SPDX-License-Identifier: MIT */
/*
 * Shared by the libFuzzer targets (fuzz_<target>.c) and the replay main
 * (replay.c). Each target defines LLVMFuzzerTestOneInput and, to make every run
 * deterministic, LLVMFuzzerInitialize calling fuzz_init().
 */
#ifndef CCA_FUZZ_H
#define CCA_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cca/log.h"
#include "cca/mem.h"

/* Source tree root, set by meson. */
#ifndef CCA_SOURCE_ROOT
#define CCA_SOURCE_ROOT "."
#endif

/* The libFuzzer entry points (https://llvm.org/docs/LibFuzzer.html). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * FUZZ_CHECK - an invariant of the code under test: abort (a libFuzzer crash,
 * a failed replay test) when @cond is false.
 */
#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/*
 * fuzz_init - what main.c does before any JSON (cca_xmalloc in jansson), but a
 * fixed hash seed so runs are reproducible, and only errors logged.
 */
static inline void fuzz_init(void)
{
    cca_mem_install_jansson();
    json_object_seed(1);
    cca_log_level = LOG_ERR;
}

#endif
