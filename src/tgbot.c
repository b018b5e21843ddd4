/* SPDX-License-Identifier: MIT */
/* placeholder: written in issue 13 */
#include "cca/tgbot.h"
