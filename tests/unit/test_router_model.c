/* SPDX-License-Identifier: MIT */
/* Placeholder until issue 16's model lands: skipped (77), never passed. */
int main(void) { return 77; }
