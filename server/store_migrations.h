/* store_migrations.h — private to the store: versioned schema migrations. */
#ifndef AURORA_STORE_MIGRATIONS_H
#define AURORA_STORE_MIGRATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"

/* Applies every pending migration, each in its own transaction, and records
 * it in schema_migrations.  Safe to run from several handles at once.
 * 0 on success; -1 with a message in err otherwise (also when the database
 * was migrated by a newer server than this one). */
int store_migrate(const db_engine *eng, db_t *db, char *err, size_t errlen);

/* Highest applied version (0 for an empty database); 0 or -1 with err. */
int store_migrations_version(const db_engine *eng, db_t *db, int64_t *version, char *err,
                             size_t errlen);

/* Highest version this build knows. */
int64_t store_migrations_latest(void);

#endif
