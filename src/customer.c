/* SPDX-License-Identifier: MIT */
/* Placeholder: written in this change. */
typedef int cca_placeholder_customer_t;
