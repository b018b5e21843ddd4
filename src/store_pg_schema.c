/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL store's schema as ordered migrations (docs/internals/store_pg.md).
 * A released step is never edited: a change of schema is a new step at the end.
 * Every step runs in the one transaction of cca_store_pg_migrate, under its
 * advisory lock, and records itself in schema_version.
 */
#include "cca/common.h"

#include "store_pg_int.h"

const struct cca_store_pg_migration cca_store_pg_migrations[] = {
    {1, "dialogs, messages, operators, customers, telegram",
     /*
      * dialogs: the columns are copies of the document's fields for queries
      * (the document in doc stays the truth); doc is the document without
      * its "messages"; message_count is the number of message rows (NULL:
      * the document has no "messages" member).
      */
     "CREATE TABLE dialogs ("
     "  id uuid PRIMARY KEY,"
     "  status text,"
     "  customer_id text,"
     "  created_at timestamptz,"
     "  updated_at timestamptz,"
     "  message_count integer,"
     "  doc jsonb NOT NULL"
     ");"
     "CREATE INDEX dialogs_customer_id ON dialogs (customer_id);"
     "CREATE INDEX dialogs_status_updated ON dialogs (status, updated_at);"
     /* One row per message, seq 0.. in the document's order. */
     "CREATE TABLE messages ("
     "  dialog_id uuid NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,"
     "  seq integer NOT NULL CHECK (seq >= 0),"
     "  msg jsonb NOT NULL,"
     "  PRIMARY KEY (dialog_id, seq)"
     ");"
     "CREATE TABLE operators ("
     "  id uuid PRIMARY KEY,"
     "  doc jsonb NOT NULL,"
     "  updated_at timestamptz NOT NULL DEFAULT now()"
     ");"
     "CREATE TABLE customers ("
     "  id uuid PRIMARY KEY,"
     "  doc jsonb NOT NULL,"
     "  updated_at timestamptz NOT NULL DEFAULT now()"
     ");"
     "CREATE TABLE telegram ("
     "  id uuid PRIMARY KEY,"
     "  doc jsonb NOT NULL,"
     "  updated_at timestamptz NOT NULL DEFAULT now()"
     ");"},
};

const unsigned cca_store_pg_migrations_n = CCA_ARRAY_SIZE(cca_store_pg_migrations);
