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
    {2, "documents as json: their text kept exactly",
     /*
      * jsonb reorders the keys of every object (and rewrites some numbers),
      * so a document did not come back as it was written: an Idempotency-Key
      * replay (dialog.c keeps the first response as an object) differed from
      * the first answer byte for byte. json keeps the text as sent (checked
      * as JSON on input); the service never queries inside it, and ->/->>
      * still work for an operator's ad-hoc SQL. Existing rows keep jsonb's
      * order (a cast cannot know the original).
      */
     "ALTER TABLE dialogs ALTER COLUMN doc TYPE json USING doc::json;"
     "ALTER TABLE messages ALTER COLUMN msg TYPE json USING msg::json;"
     "ALTER TABLE operators ALTER COLUMN doc TYPE json USING doc::json;"
     "ALTER TABLE customers ALTER COLUMN doc TYPE json USING doc::json;"
     "ALTER TABLE telegram ALTER COLUMN doc TYPE json USING doc::json;"},
    {3, "instance_epoch: the fencing token of the instance lock",
     /*
      * One row, advanced by every store that takes the instance lock at its
      * start (store_pg.c, epoch_take); a writer that takes the lock again
      * after losing its session must find its own value, or it is fenced.
      */
     "CREATE TABLE instance_epoch ("
     "  id integer PRIMARY KEY CHECK (id = 1),"
     "  n bigint NOT NULL"
     ");"
     "INSERT INTO instance_epoch VALUES (1, 0);"},
};

const unsigned cca_store_pg_migrations_n = CCA_ARRAY_SIZE(cca_store_pg_migrations);
