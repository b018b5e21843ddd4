/* SPDX-License-Identifier: MIT */
#ifndef CCA_DEMO_H
#define CCA_DEMO_H

#include "cca/config.h"

/*
 * The demo data generator (docs/RECORDS.md; seed 000's main.py):
 * `call-center-agents demo-data --operators 5 --customers 10 --dialogs 120
 *  --seed N [--days D] [--storage DIR] [--quiet]`.
 *
 * Writes operators, customer profiles and dialogs through the same store the
 * server uses (store_file.h, the directory lock held: refused while a server
 * runs on it), built with the same document functions as the service
 * (dialog.h, operator.h, customer.h), so the server loads them like its own.
 * The same seed, counts and day give the same data (ids, names, texts, times;
 * operator tokens are random and printed once, never stored). Then prints the
 * seed's four exports as a readable summary: all dialogs, one customer's, one
 * operator's, and the profiles.
 *
 * cca_demo_cli - run it. @cfg (borrowed) gives STORAGE_DIR and DATA_DIR;
 * @argv[0] is the subcommand name. Returns a process exit code: 0, 1 (the
 * store failed: the message on stderr) or 2 (usage). Not thread-safe: one
 * call per process.
 */
int cca_demo_cli(const struct cca_config *cfg, int argc, char **argv);

#endif
