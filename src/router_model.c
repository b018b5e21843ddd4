/* SPDX-License-Identifier: MIT */
#include "cca/router_model.h"

/* The statistical second stage of the router: written by issue 16. */
