/* store_internal.h — private to the store's own files (store.c and the
 * store_*.c files that hold one area's SQL, e.g. store_incidents.c): the
 * handle's layout and the small helpers every query uses (errors, input
 * checks, result decoding).  Nothing outside the store includes this. */
#ifndef AURORA_STORE_INTERNAL_H
#define AURORA_STORE_INTERNAL_H

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "store.h"
#include "utf8.h"

struct store {
    const db_engine *eng;
    db_t *db;
    char err[512];
};

/* DB_P_TEXT as a function: the macro tests its argument for NULL, which
 * gcc's -Waddress rejects when the argument is a char array (always true). */
static inline db_param p_text(const char *v)
{
    return DB_P_TEXT(v);
}

/* ---- errors ---------------------------------------------------------------- */

static inline int serr(store_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int serr(store_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    return STORE_ERR;
}

/* Engine error -> store result.  Engine messages name columns and
 * constraints, never bound values, so they are safe to pass on. */
static inline int dberr(store_t *s, int e, const char *what)
{
    snprintf(s->err, sizeof(s->err), "%s: %s", what, s->eng->errmsg(s->db));
    return e == DB_E_CONSTRAINT ? STORE_CONFLICT : STORE_ERR;
}

static inline int run_exec(store_t *s, const char *what, const char *sql, const db_param *p, size_t np,
                    int64_t *changes)
{
    int e = s->eng->exec(s->db, sql, p, np, changes);
    return e == DB_OK ? STORE_OK : dberr(s, e, what);
}

static inline int run_query(store_t *s, const char *what, const char *sql, const db_param *p, size_t np,
                     db_result *r)
{
    int e = s->eng->query(s->db, sql, p, np, r);
    if (e != DB_OK) {
        dberr(s, e, what);
        return STORE_ERR; /* a read cannot conflict */
    }
    return STORE_OK;
}

/* v must be non-NULL (and non-empty when required), shorter than cap (the
 * size of the struct field it is read back into) and valid UTF-8. */
static inline int check_text(store_t *s, const char *field, const char *v, size_t cap, int required)
{
    if (!v)
        return serr(s, "%s is missing", field);
    size_t n = strlen(v);
    if (required && n == 0)
        return serr(s, "%s is empty", field);
    if (n >= cap)
        return serr(s, "%s too long (max %zu bytes)", field, cap - 1);
    if (!utf8_valid(v, n))
        return serr(s, "%s is not valid UTF-8", field);
    return STORE_OK;
}

/* ---- output decoding ------------------------------------------------------------------ */

static inline int cell_str(store_t *s, const db_result *r, size_t row, size_t col, char *dst, size_t cap,
                    const char *field)
{
    const char *v = db_cell(r, row, col);
    if (!v)
        v = "";
    size_t n = strlen(v);
    if (n >= cap)
        return serr(s, "stored %s too long (%zu bytes, max %zu)", field, n, cap - 1);
    memcpy(dst, v, n + 1);
    return STORE_OK;
}

static inline int cell_i64(store_t *s, const db_result *r, size_t row, size_t col, int64_t *out,
                    const char *field)
{
    const char *v = db_cell(r, row, col);
    if (!v) {
        *out = 0;
        return STORE_OK;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return serr(s, "stored %s is not an integer", field);
    *out = x;
    return STORE_OK;
}

static inline int cell_int(store_t *s, const db_result *r, size_t row, size_t col, int *out,
                    const char *field)
{
    int64_t v = 0; /* inlined, gcc -O2 cannot see cell_i64 sets it on success */
    if (cell_i64(s, r, row, col, &v, field) != STORE_OK)
        return STORE_ERR;
    if (v < INT_MIN || v > INT_MAX)
        return serr(s, "stored %s out of range", field);
    *out = (int)v;
    return STORE_OK;
}

/* Decodes the single row of r, or NOT_FOUND; frees r either way. */
typedef int (*row_fn)(store_t *s, const db_result *r, size_t row, void *out);

static inline int one_row(store_t *s, db_result *r, row_fn fn, void *out)
{
    int rc = r->nrows == 0 ? STORE_NOT_FOUND : fn(s, r, 0, out);
    db_result_free(r);
    return rc;
}

/* Decodes every row of r into a malloc'd array of elem-sized items; frees r. */
static inline int all_rows(store_t *s, db_result *r, row_fn fn, size_t elem, void **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (r->nrows == 0) {
        db_result_free(r);
        return STORE_OK;
    }
    char *arr = calloc(r->nrows, elem);
    if (!arr) {
        db_result_free(r);
        return serr(s, "out of memory");
    }
    for (size_t i = 0; i < r->nrows; i++) {
        if (fn(s, r, i, arr + i * elem) != STORE_OK) {
            free(arr);
            db_result_free(r);
            return STORE_ERR;
        }
    }
    *out = arr;
    *n = r->nrows;
    db_result_free(r);
    return STORE_OK;
}

/* SHA-256 as 64 lowercase hex characters: the only form of a secret stored. */
static inline int check_hash(store_t *s, const char *field, const char *h)
{
    if (!h)
        return serr(s, "%s is missing", field);
    size_t n = 0;
    for (; h[n]; n++)
        if (!((h[n] >= '0' && h[n] <= '9') || (h[n] >= 'a' && h[n] <= 'f')) || n >= 64)
            return serr(s, "%s is not a SHA-256 hex digest", field);
    if (n != 64)
        return serr(s, "%s is not a SHA-256 hex digest", field);
    return STORE_OK;
}

/* 0 means "not set" in every time column, so a revocation or disconnect
 * stamped 0 would be lost: such a `now` is taken as the current time. */
static inline int64_t now_or_clock(int64_t now)
{
    return now > 0 ? now : (int64_t)time(NULL);
}

/* Microseconds since the epoch, strictly increasing within the process (also
 * across threads and when the wall clock steps back): orders rows created in
 * the same second.  One counter for every store file (store.c). */
int64_t store_next_seq(void);
static inline int64_t next_seq(void)
{
    return store_next_seq();
}

#endif
