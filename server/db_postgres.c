/* db_postgres.c — the PostgreSQL engine behind db.h (libpq), selected by a
 * "postgres://" or "postgresql://" DATABASE_URL.
 *
 * One db_t wraps one PGconn, used by one thread at a time (db.h).  The store
 * writes portable SQL with '?' placeholders; they are rewritten to $1..$n
 * here, outside string literals, quoted identifiers and comments.  Values
 * travel as text; integers are typed int8 so that PostgreSQL never has to
 * guess a type it cannot infer, text is left for the server to infer from the
 * column it meets.
 *
 * Connection loss (the server restarted, a failover, a network cut) is a
 * normal event, handled so that nothing is half-written:
 *  - before a statement that is not inside a transaction, an idle connection
 *    the server has already closed is noticed (its socket is readable) and
 *    re-established, so requests that arrive after a restart just work;
 *  - a statement that loses the connection while running fails with
 *    DB_E_CONN; it is never resent (it may or may not have been applied — a
 *    single statement is atomic on the server either way);
 *  - if the connection is lost inside BEGIN … COMMIT, the server has rolled
 *    the transaction back; every later statement of that transaction fails
 *    with DB_E_CONN (it must not silently run in autocommit on a new
 *    connection), COMMIT reports the loss, and ROLLBACK ends the episode;
 *  - the next call after a failure reconnects (bounded by connect_timeout).
 *
 * Error messages carry PostgreSQL's primary message and SQLSTATE, never the
 * DETAIL line (which can quote row values) and never the connection url
 * (which can carry a password).
 */
#include "db.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Type oid of int8 (pg_type.h is a server header, not shipped with libpq). */
#define PG_INT8OID 20

struct db {
    PGconn *conn;
    /* The connection died inside a transaction the caller has not ended. */
    int tx_lost;
    char err[512];
};

static void set_err(db_t *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(db_t *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->err, sizeof(db->err), fmt, ap);
    va_end(ap);
}

/* libpq messages end with a newline and may run over several lines (a
 * DETAIL or HINT, or one line per address tried): the first line is the
 * one to report. */
static void first_line(const char *msg, char *out, size_t cap)
{
    if (!msg || !*msg)
        msg = "unknown error";
    size_t n = strcspn(msg, "\r\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, msg, n);
    out[n] = '\0';
}

/* Server notices ("relation already exists, skipping", "there is no
 * transaction in progress", a FATAL goodbye read while idle) would go to
 * stderr by default; none of them needs the operator, and errors that do are
 * reported through the result. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* ---- url ------------------------------------------------------------------ */

static int pg_accepts(const char *url)
{
    return url && (strncasecmp(url, "postgres://", 11) == 0 ||
                   strncasecmp(url, "postgresql://", 13) == 0);
}

/* ---- statement classification ------------------------------------------- */

enum stmt_kind { STMT_OTHER, STMT_BEGIN, STMT_COMMIT, STMT_ROLLBACK };

/* The transaction-control words of the statement (first keyword only). */
static enum stmt_kind classify(const char *sql)
{
    while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r')
        sql++;
    size_t n = 0;
    while ((sql[n] >= 'A' && sql[n] <= 'Z') || (sql[n] >= 'a' && sql[n] <= 'z'))
        n++;
    if ((n == 5 && !strncasecmp(sql, "BEGIN", 5)) || (n == 5 && !strncasecmp(sql, "START", 5)))
        return STMT_BEGIN;
    if ((n == 6 && !strncasecmp(sql, "COMMIT", 6)) || (n == 3 && !strncasecmp(sql, "END", 3)))
        return STMT_COMMIT;
    if ((n == 8 && !strncasecmp(sql, "ROLLBACK", 8)) || (n == 5 && !strncasecmp(sql, "ABORT", 5)))
        return STMT_ROLLBACK;
    return STMT_OTHER;
}

/* ---- '?' -> $n ------------------------------------------------------------ */

static int ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || (unsigned char)c >= 0x80;
}

/* Length of a dollar-quote tag at p ("$$" or "$tag$"), 0 if p is not one. */
static size_t dollar_tag(const char *p)
{
    if (p[0] != '$')
        return 0;
    size_t n = 1;
    if (p[1] >= '0' && p[1] <= '9') /* $1 is a parameter, not a tag */
        return 0;
    while (p[n] && p[n] != '$' && ident_char(p[n]))
        n++;
    return p[n] == '$' ? n + 1 : 0;
}

/* Rewrites the '?' placeholders of sql into a malloc'd copy with $1..$n and
 * returns their count in *count.  NULL on out of memory. */
static char *rewrite_placeholders(const char *sql, size_t *count)
{
    size_t len = strlen(sql), q = 0;
    for (size_t i = 0; i < len; i++)
        q += sql[i] == '?';
    /* "$" + up to 10 digits per '?' */
    char *out = malloc(len + q * 10 + 1);
    if (!out)
        return NULL;
    size_t o = 0, n = 0;
    const char *p = sql;
    while (*p) {
        if (*p == '\'') { /* string literal; E'' strings honour backslashes */
            int esc = p > sql && (p[-1] == 'E' || p[-1] == 'e') &&
                      (p - 1 == sql || !ident_char(p[-2]));
            out[o++] = *p++;
            while (*p) {
                if (esc && *p == '\\' && p[1]) {
                    out[o++] = *p++;
                    out[o++] = *p++;
                    continue;
                }
                if (*p == '\'') {
                    out[o++] = *p++;
                    if (*p == '\'') { /* doubled quote: still inside */
                        out[o++] = *p++;
                        continue;
                    }
                    break;
                }
                out[o++] = *p++;
            }
        } else if (*p == '"') { /* quoted identifier */
            out[o++] = *p++;
            while (*p && *p != '"')
                out[o++] = *p++;
            if (*p)
                out[o++] = *p++;
        } else if (p[0] == '-' && p[1] == '-') { /* line comment */
            while (*p && *p != '\n')
                out[o++] = *p++;
        } else if (p[0] == '/' && p[1] == '*') { /* block comment, nests */
            int depth = 0;
            do {
                if (p[0] == '/' && p[1] == '*') {
                    depth++;
                    out[o++] = *p++;
                } else if (p[0] == '*' && p[1] == '/') {
                    depth--;
                    out[o++] = *p++;
                }
                out[o++] = *p++;
            } while (*p && depth > 0);
        } else if (*p == '$' && (p == sql || !ident_char(p[-1])) && dollar_tag(p)) {
            size_t t = dollar_tag(p);
            const char *tag = p;
            memcpy(out + o, p, t);
            o += t;
            p += t;
            while (*p && strncmp(p, tag, t) != 0)
                out[o++] = *p++;
            if (*p) {
                memcpy(out + o, p, t);
                o += t;
                p += t;
            }
        } else if (*p == '?') {
            o += (size_t)sprintf(out + o, "$%zu", ++n);
            p++;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    *count = n;
    return out;
}

/* ---- connection handling --------------------------------------------------- */

static int in_transaction(db_t *db)
{
    PGTransactionStatusType t = PQtransactionStatus(db->conn);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/* Re-establishes a broken connection.  DB_OK or DB_E_CONN. */
static int reconnect(db_t *db)
{
    PQreset(db->conn);
    if (PQstatus(db->conn) == CONNECTION_OK)
        return DB_OK;
    char line[384];
    first_line(PQerrorMessage(db->conn), line, sizeof(line));
    set_err(db, "postgres: connection lost and cannot reconnect: %s", line);
    return DB_E_CONN;
}

/* Before a statement outside a transaction: a server that restarted has sent
 * its goodbye (a FATAL message, which libpq takes as a notice while idle)
 * and closed the socket of this idle connection.  Reading until the end of
 * that marks the connection bad, and it is replaced before anything is sent,
 * so a statement is never lost to a connection that was already dead. */
static int ensure_connected(db_t *db)
{
    for (int i = 0; i < 8 && PQstatus(db->conn) == CONNECTION_OK && !in_transaction(db); i++) {
        struct pollfd pfd = { .fd = PQsocket(db->conn), .events = POLLIN };
        if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0)
            break;
        if (!PQconsumeInput(db->conn)) /* EOF or error: now CONNECTION_BAD */
            break;
        (void)PQisBusy(db->conn); /* parses what arrived */
    }
    if (PQstatus(db->conn) != CONNECTION_OK)
        return reconnect(db);
    return DB_OK;
}

/* Maps a failed result to a DB_E_* kind; a connection that died inside a
 * transaction (was_in_tx) marks the transaction lost. */
static int map_error(db_t *db, PGresult *res, const char *what, int was_in_tx)
{
    if (PQstatus(db->conn) != CONNECTION_OK) {
        char line[384];
        first_line(res ? PQresultErrorMessage(res) : PQerrorMessage(db->conn), line,
                   sizeof(line));
        if (was_in_tx) {
            db->tx_lost = 1;
            set_err(db, "postgres %s: connection lost inside a transaction (rolled back by the "
                        "server): %s", what, line);
        } else {
            set_err(db, "postgres %s: connection lost (the statement may not have completed): %s",
                    what, line);
        }
        return DB_E_CONN;
    }
    if (!res) {
        char line[384];
        first_line(PQerrorMessage(db->conn), line, sizeof(line));
        set_err(db, "postgres %s: %s", what, line);
        return DB_E_OTHER;
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char line[384];
    first_line(primary ? primary : PQresultErrorMessage(res), line, sizeof(line));
    set_err(db, "postgres %s: %s (SQLSTATE %s)", what, line, state ? state : "none");
    if (!state)
        return DB_E_OTHER;
    if (!strncmp(state, "23", 2))
        return DB_E_CONSTRAINT;
    if (!strncmp(state, "08", 2) || !strcmp(state, "57P01") || !strcmp(state, "57P02") ||
        !strcmp(state, "57P03"))
        return DB_E_CONN;
    if (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03"))
        return DB_E_BUSY;
    return DB_E_OTHER;
}

/* Runs one statement; on DB_OK *out holds a result the caller PQclear()s. */
static int run(db_t *db, const char *sql, const db_param *p, size_t np, PGresult **out,
               const char *what)
{
    *out = NULL;
    if (!sql)
        return set_err(db, "postgres: NULL statement"), DB_E_OTHER;
    enum stmt_kind kind = classify(sql);

    if (db->tx_lost) {
        /* The server already rolled the transaction back with the old
         * connection; the caller learns it until it ends the transaction. */
        if (kind == STMT_ROLLBACK) {
            db->tx_lost = 0;
            return DB_OK;
        }
        if (kind == STMT_COMMIT)
            db->tx_lost = 0;
        set_err(db, "postgres %s: the connection was lost inside this transaction; it was rolled "
                    "back and nothing of it was written", what);
        return DB_E_CONN;
    }
    int e = ensure_connected(db);
    if (e != DB_OK)
        return e;

    size_t nph = 0;
    char *text = rewrite_placeholders(sql, &nph);
    if (!text)
        return set_err(db, "postgres: out of memory"), DB_E_OTHER;
    if (nph != np) {
        set_err(db, "postgres: statement has %zu placeholders, %zu values given", nph, np);
        free(text);
        return DB_E_OTHER;
    }
    if (np > 65535) {
        free(text);
        return set_err(db, "postgres: too many parameters"), DB_E_OTHER;
    }
    const char **values = NULL;
    Oid *types = NULL;
    char (*ints)[24] = NULL;
    if (np) {
        values = calloc(np, sizeof(*values));
        types = calloc(np, sizeof(*types));
        ints = calloc(np, sizeof(*ints));
        if (!values || !types || !ints) {
            free(values);
            free(types);
            free(ints);
            free(text);
            return set_err(db, "postgres: out of memory"), DB_E_OTHER;
        }
    }
    for (size_t i = 0; i < np; i++) {
        switch (p[i].type) {
        case DB_NULL:
            values[i] = NULL;
            break;
        case DB_TEXT:
            values[i] = p[i].text; /* NULL text binds SQL NULL */
            break;
        case DB_INT:
            snprintf(ints[i], sizeof(ints[i]), "%lld", (long long)p[i].i);
            values[i] = ints[i];
            types[i] = PG_INT8OID;
            break;
        default:
            set_err(db, "postgres: bad parameter type %d at %zu", (int)p[i].type, i + 1);
            free(values);
            free(types);
            free(ints);
            free(text);
            return DB_E_OTHER;
        }
    }

    int was_in_tx = in_transaction(db);
    PGresult *res = PQexecParams(db->conn, text, (int)np, types, values, NULL, NULL, 0);
    free(values);
    free(types);
    free(ints);
    free(text);

    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        /* A lost COMMIT has an unknown outcome unless the transaction was
         * already gone; say so rather than guess. */
        e = map_error(db, res, kind == STMT_COMMIT ? "COMMIT" : what, was_in_tx);
        if (e == DB_E_CONN && kind == STMT_COMMIT && db->tx_lost) {
            db->tx_lost = 0;
            set_err(db, "postgres COMMIT: connection lost while committing; the transaction "
                        "was rolled back unless the commit reached the server first");
        }
        PQclear(res);
        return e;
    }
    /* COMMIT of a transaction that failed earlier is answered "ROLLBACK"
     * without an error: report it, or the caller would think it was saved. */
    if (kind == STMT_COMMIT && !strcmp(PQcmdStatus(res), "ROLLBACK")) {
        PQclear(res);
        set_err(db, "postgres COMMIT: the transaction had failed and was rolled back");
        return DB_E_OTHER;
    }
    *out = res;
    return DB_OK;
}

/* ---- db.h entry points --------------------------------------------------------- */

static int pg_exec(db_t *db, const char *sql, const db_param *p, size_t np, int64_t *changes)
{
    PGresult *res;
    if (changes)
        *changes = 0;
    int e = run(db, sql, p, np, &res, "exec");
    if (e != DB_OK)
        return e;
    if (changes && res) {
        const char *t = PQcmdTuples(res); /* "" for statements without a count */
        *changes = *t ? strtoll(t, NULL, 10) : 0;
    }
    PQclear(res);
    return DB_OK;
}

static int pg_query(db_t *db, const char *sql, const db_param *p, size_t np, db_result *out)
{
    PGresult *res;
    memset(out, 0, sizeof(*out));
    int e = run(db, sql, p, np, &res, "query");
    if (e != DB_OK)
        return e;
    if (!res) /* a ROLLBACK after a lost transaction: no rows */
        return DB_OK;
    size_t nrows = (size_t)PQntuples(res), ncols = (size_t)PQnfields(res);
    char **cells = NULL;
    if (nrows && ncols) {
        if (nrows > SIZE_MAX / ncols / sizeof(char *)) {
            PQclear(res);
            return set_err(db, "postgres query: result too large"), DB_E_OTHER;
        }
        cells = calloc(nrows * ncols, sizeof(char *));
        if (!cells) {
            PQclear(res);
            return set_err(db, "postgres query: out of memory"), DB_E_OTHER;
        }
        for (size_t r = 0; r < nrows; r++) {
            for (size_t c = 0; c < ncols; c++) {
                if (PQgetisnull(res, (int)r, (int)c))
                    continue;
                /* Text format: values hold no NUL byte. */
                const char *v = PQgetvalue(res, (int)r, (int)c);
                size_t len = (size_t)PQgetlength(res, (int)r, (int)c);
                char *cell = malloc(len + 1);
                if (!cell) {
                    db_result tmp = { nrows, ncols, cells };
                    db_result_free(&tmp);
                    PQclear(res);
                    return set_err(db, "postgres query: out of memory"), DB_E_OTHER;
                }
                memcpy(cell, v, len);
                cell[len] = '\0';
                cells[r * ncols + c] = cell;
            }
        }
    }
    PQclear(res);
    out->nrows = nrows;
    out->ncols = ncols;
    out->cells = cells;
    return DB_OK;
}

static int pg_open(const char *url, db_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!pg_accepts(url)) {
        snprintf(err, errlen, "postgres: bad database url");
        return DB_E_CONN;
    }
    db_t *db = calloc(1, sizeof(*db));
    if (!db) {
        snprintf(err, errlen, "postgres: out of memory");
        return DB_E_OTHER;
    }
    /* Defaults come before the url ("dbname", expanded): a setting in the url
     * overrides them.  connect_timeout bounds every (re)connect; keepalives
     * and tcp_user_timeout notice a peer that vanished without closing the
     * connection (TCP only; a unix socket fails at once). */
    static const char *const keys[] = { "connect_timeout",  "application_name", "client_encoding",
                                        "keepalives",       "keepalives_idle",  "keepalives_interval",
                                        "keepalives_count", "tcp_user_timeout", "dbname",
                                        NULL };
    const char *vals[] = { "5", "aurora-server", "UTF8", "1", "30", "10", "3", "30000", url, NULL };
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (!db->conn) {
        free(db);
        snprintf(err, errlen, "postgres: out of memory");
        return DB_E_OTHER;
    }
    PQsetNoticeProcessor(db->conn, ignore_notice, NULL); /* kept across PQreset */
    if (PQstatus(db->conn) != CONNECTION_OK) {
        char line[384];
        first_line(PQerrorMessage(db->conn), line, sizeof(line));
        snprintf(err, errlen, "postgres: cannot connect: %s", line);
        PQfinish(db->conn);
        free(db);
        return DB_E_CONN;
    }
    /* The store's text is UTF-8; a server that stores something else would
     * mangle it.  (client_encoding converts, but SQL_ASCII does not check.) */
    const char *enc = PQparameterStatus(db->conn, "server_encoding");
    if (enc && strcmp(enc, "UTF8") != 0) {
        snprintf(err, errlen, "postgres: database encoding is %s; UTF8 is required", enc);
        PQfinish(db->conn);
        free(db);
        return DB_E_OTHER;
    }
    *out = db;
    return DB_OK;
}

static void pg_close(db_t *db)
{
    if (!db)
        return;
    PQfinish(db->conn);
    free(db);
}

static const char *pg_errmsg(db_t *db)
{
    return db ? db->err : "no database";
}

const db_engine db_engine_postgres = {
    .name = "postgres",
    .accepts = pg_accepts,
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .query = pg_query,
    .errmsg = pg_errmsg,
};
