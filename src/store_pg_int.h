/* SPDX-License-Identifier: MIT */
/* Private to the PostgreSQL store (store_pg.c, store_pg_schema.c). */
#ifndef CCA_STORE_PG_INT_H
#define CCA_STORE_PG_INT_H

/*
 * struct cca_store_pg_migration - one step of the schema: version @version
 * (1, 2, ... in order, never renumbered or edited once released), what it
 * does, and its SQL (constant text, several statements; no data in it).
 */
struct cca_store_pg_migration {
    unsigned version;
    const char *description;
    const char *sql;
};

/* The steps, oldest first; cca_store_pg_schema_version() is the last one's. */
extern const struct cca_store_pg_migration cca_store_pg_migrations[];
extern const unsigned cca_store_pg_migrations_n;

#endif
