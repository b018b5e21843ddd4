/* SPDX-License-Identifier: MIT */
/*
 * Common include for every test: cmocka needs <setjmp.h>, <stdarg.h> and
 * <stddef.h> before it (house style 8.8 "verified gotcha"), so tests include
 * only this file.
 */
#ifndef CCA_TEST_H
#define CCA_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Source tree root, set by meson (tests read data/ from it). */
#ifndef CCA_SOURCE_ROOT
#define CCA_SOURCE_ROOT "."
#endif

#endif
