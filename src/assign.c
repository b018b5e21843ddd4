/* SPDX-License-Identifier: MIT */
/* placeholder: being written */
#include "cca/assign.h"
