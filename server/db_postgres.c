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
 *  - the next call after a failure reconnects.
 *
 * A server that stops answering without closing anything (SIGSTOP, a frozen
 * VM, packets dropped) is bounded by time instead (db_limits): libpq is only
 * used in nonblocking mode, every (re)connection must complete within
 * connect_ms and every statement within statement_ms — the server enforces
 * that itself (statement_timeout, DB_E_TIMEOUT on a usable connection), and
 * a client deadline shortly after it drops a connection that has not
 * answered at all (DB_E_TIMEOUT, then the same rules as a lost connection).
 * Deadlines bound one call; breaker.h bounds the rest: once a call could
 * not reach the database, the other handles fail at once while one call at
 * a time tries it, instead of each waiting out its own deadline.
 *
 * Error messages carry PostgreSQL's primary message and SQLSTATE, never the
 * DETAIL line (which can quote row values) and never the connection url
 * (which can carry a password).
 */
#include "db.h"
#include "breaker.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Type oid of int8 (pg_type.h is a server header, not shipped with libpq). */
#define PG_INT8OID 20

/* How long after statement_ms the client gives up on a server that does
 * not answer (the server's own statement_timeout error comes first when the
 * server is merely slow). */
#define CLIENT_GRACE_MS 500

struct db {
    PGconn *conn;    /* NULL after a timeout dropped it: the next call reconnects */
    char *url;       /* kept for reconnecting; may hold a password: wiped on close */
    int statement_ms;
    int connect_ms;
    /* The connection died inside a transaction the caller has not ended. */
    int tx_lost;
    /* Shared with every handle on this database: fail fast while it does
     * not answer (breaker.h).  May be NULL. */
    breaker *breaker;
    breaker_outcome outcome; /* what the current call learned, for the breaker */
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

static int failed(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK;
}

static int in_transaction(db_t *db)
{
    PGTransactionStatusType t = PQtransactionStatus(db->conn);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/* Closes the connection at once.  In nonblocking mode PQfinish only tries to
 * send its goodbye, so this never waits for a server that does not read. */
static void drop_connection(db_t *db)
{
    PQfinish(db->conn);
    db->conn = NULL;
}

/* Waits until the socket is ready for `events` or the deadline passes.
 * 1 ready, 0 deadline passed, -1 no socket / poll error. */
static int wait_socket(db_t *db, short events, int64_t deadline_ms)
{
    for (;;) {
        int fd = PQsocket(db->conn);
        if (fd < 0)
            return -1;
        int64_t left = deadline_ms - db_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = { .fd = fd, .events = events };
        int n = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* Sends one statement and collects its result before the deadline, without
 * ever blocking inside libpq: a server that stopped (SIGSTOP, a frozen VM, a
 * network that drops packets without a reset) keeps the socket open and
 * would hold a blocking PQexec for as long as TCP lets it — minutes, or for
 * ever on a unix socket.  On failure *res may hold libpq's error result.
 * DB_OK (a result, possibly an error one, in *res), DB_E_TIMEOUT (the
 * deadline passed: the caller drops the connection), or DB_E_CONN. */
static int exec_within(db_t *db, const char *text, int np, const Oid *types,
                       const char *const *values, int64_t deadline_ms, PGresult **res)
{
    *res = NULL;
    if (!PQsendQueryParams(db->conn, text, np, types, values, NULL, NULL, 0))
        return DB_E_CONN;
    for (;;) { /* nonblocking: the statement may not all be sent yet */
        int f = PQflush(db->conn);
        if (f == 0)
            break;
        if (f < 0)
            return DB_E_CONN;
        int w = wait_socket(db, POLLOUT | POLLIN, deadline_ms);
        if (w == 0)
            return DB_E_TIMEOUT;
        /* Reading what the server sends keeps it from blocking on us. */
        if (w < 0 || !PQconsumeInput(db->conn))
            return DB_E_CONN;
    }
    /* Every result up to the NULL that ends the statement; an error result
     * wins over any other (as with PQexec). */
    for (;;) {
        while (PQisBusy(db->conn)) {
            int w = wait_socket(db, POLLIN, deadline_ms);
            if (w == 0) {
                PQclear(*res);
                *res = NULL;
                return DB_E_TIMEOUT;
            }
            /* A lost connection: libpq has made an error result of it,
             * which PQgetResult returns without waiting (no socket). */
            if (w < 0 || !PQconsumeInput(db->conn))
                break;
        }
        PGresult *r = PQgetResult(db->conn);
        if (!r)
            break;
        if (*res && failed(*res)) {
            PQclear(r);
        } else {
            PQclear(*res);
            *res = r;
        }
        if (PQstatus(db->conn) != CONNECTION_OK)
            break; /* nothing more will come */
    }
    return DB_OK;
}

/* Everything a fresh connection needs before the store uses it: the UTF-8
 * check, nonblocking mode, and the server-side statement_timeout, which
 * cancels a statement the server itself is slow with (a lock wait, a bad
 * plan) while the connection stays usable.  DB_OK, or an error in db->err. */
static int setup_connection(db_t *db, int64_t deadline_ms)
{
    PQsetNoticeProcessor(db->conn, ignore_notice, NULL);
    /* The store's text is UTF-8; a server that stores something else would
     * mangle it.  (client_encoding converts, but SQL_ASCII does not check.) */
    const char *enc = PQparameterStatus(db->conn, "server_encoding");
    if (enc && strcmp(enc, "UTF8") != 0) {
        set_err(db, "postgres: database encoding is %s; UTF8 is required", enc);
        return DB_E_OTHER;
    }
    if (PQsetnonblocking(db->conn, 1) != 0) {
        set_err(db, "postgres: cannot switch the connection to nonblocking mode");
        return DB_E_CONN;
    }
    char sql[64];
    snprintf(sql, sizeof(sql), "SET statement_timeout = %d", db->statement_ms);
    PGresult *res = NULL;
    int e = exec_within(db, sql, 0, NULL, NULL, deadline_ms, &res);
    if (e == DB_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
        e = DB_E_CONN;
    if (e != DB_OK) {
        char line[384];
        first_line(res ? PQresultErrorMessage(res) : PQerrorMessage(db->conn), line, sizeof(line));
        if (e == DB_E_TIMEOUT)
            set_err(db, "postgres: cannot connect: the server accepted the connection but did "
                        "not answer within %d ms", db->connect_ms);
        else
            set_err(db, "postgres: cannot connect: setting statement_timeout failed: %s", line);
    }
    PQclear(res);
    return e;
}

/* Opens db->conn within connect_ms (the whole handshake: TCP or unix socket,
 * TLS, authentication, the session settings).  libpq's own connect_timeout
 * is ignored by the nonblocking API used here, and counts whole seconds
 * anyway.  DB_OK, or DB_E_CONN / DB_E_TIMEOUT with db->err set (never
 * naming the url, which may carry a password).  Host names are still
 * resolved synchronously by libpq (getaddrinfo): only the resolver's own
 * timeout bounds that step. */
static int connect_within(db_t *db)
{
    int64_t deadline = db_now_ms() + db->connect_ms;
    if (db->conn)
        drop_connection(db);
    /* Defaults come before the url ("dbname", expanded): a setting in the url
     * overrides them.  keepalives and tcp_user_timeout notice a peer that
     * vanished without closing the connection while the handle is idle (TCP
     * only); a stopped peer is what the deadlines are for. */
    static const char *const keys[] = { "application_name", "client_encoding",  "keepalives",
                                        "keepalives_idle",  "keepalives_interval",
                                        "keepalives_count", "tcp_user_timeout", "dbname",
                                        NULL };
    const char *vals[] = { "aurora-server", "UTF8", "1", "30", "10", "3", "30000", db->url, NULL };
    db->conn = PQconnectStartParams(keys, vals, 1);
    if (!db->conn) {
        set_err(db, "postgres: out of memory");
        return DB_E_OTHER;
    }
    /* libpq's protocol: start as if PGRES_POLLING_WRITING was returned. */
    PostgresPollingStatusType st =
        PQstatus(db->conn) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int w = wait_socket(db, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (w == 0) {
            drop_connection(db);
            set_err(db, "postgres: cannot connect within %d ms (the server does not answer)",
                    db->connect_ms);
            return DB_E_TIMEOUT;
        }
        if (w < 0) {
            drop_connection(db);
            set_err(db, "postgres: cannot connect: the connection has no usable socket");
            return DB_E_CONN;
        }
        st = PQconnectPoll(db->conn);
    }
    if (st == PGRES_POLLING_FAILED) {
        char line[384];
        first_line(PQerrorMessage(db->conn), line, sizeof(line));
        set_err(db, "postgres: cannot connect: %s", line);
        drop_connection(db);
        return DB_E_CONN;
    }
    int e = setup_connection(db, deadline);
    if (e != DB_OK)
        drop_connection(db);
    return e;
}

/* Re-establishes a broken connection.  DB_OK, or DB_E_CONN / DB_E_TIMEOUT. */
static int reconnect(db_t *db)
{
    int e = connect_within(db);
    if (e == DB_OK) {
        db->outcome = BREAKER_REACHED;
        return DB_OK;
    }
    if (e != DB_E_OTHER) /* not: out of memory, or a database this server cannot use */
        db->outcome = BREAKER_UNREACHABLE;
    char msg[sizeof(db->err)];
    snprintf(msg, sizeof(msg), "%s", db->err);
    set_err(db, "postgres: connection lost and cannot reconnect: %s", msg);
    return e == DB_E_OTHER ? DB_E_CONN : e;
}

/* Before a statement outside a transaction: a server that restarted has sent
 * its goodbye (a FATAL message, which libpq takes as a notice while idle)
 * and closed the socket of this idle connection.  Reading until the end of
 * that marks the connection bad, and it is replaced before anything is sent,
 * so a statement is never lost to a connection that was already dead.  A
 * connection dropped after a timeout (db->conn NULL) is replaced here too. */
static int ensure_connected(db_t *db)
{
    for (int i = 0; i < 8 && db->conn && PQstatus(db->conn) == CONNECTION_OK && !in_transaction(db);
         i++) {
        struct pollfd pfd = { .fd = PQsocket(db->conn), .events = POLLIN };
        if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0)
            break;
        if (!PQconsumeInput(db->conn)) /* EOF or error: now CONNECTION_BAD */
            break;
        (void)PQisBusy(db->conn); /* parses what arrived */
    }
    if (!db->conn || PQstatus(db->conn) != CONNECTION_OK)
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
    if (!strcmp(state, "57014")) /* canceled: our statement_timeout */
        return DB_E_TIMEOUT;
    return DB_E_OTHER;
}

/* The client's deadline passed: the server is not answering (stopped, cut
 * off).  libpq 15 has no cancel request that cannot itself block, so the
 * connection is dropped; the server rolls back an open transaction when it
 * notices, and its statement_timeout stops the statement meanwhile.  The
 * next call reconnects (bounded by connect_ms). */
static int timed_out(db_t *db, enum stmt_kind kind, const char *what, int was_in_tx)
{
    drop_connection(db);
    db->outcome = BREAKER_UNREACHABLE;
    if (kind == STMT_COMMIT) {
        set_err(db, "postgres COMMIT: no answer within %d ms; the connection was dropped and "
                    "the transaction rolled back unless the commit reached the server first",
                db->statement_ms);
    } else if (was_in_tx && kind != STMT_ROLLBACK) {
        db->tx_lost = 1;
        set_err(db, "postgres %s: no answer within %d ms inside a transaction; the connection "
                    "was dropped and the transaction is rolled back", what, db->statement_ms);
    } else {
        set_err(db, "postgres %s: no answer within %d ms; the connection was dropped (the "
                    "statement may not have completed)", what, db->statement_ms);
    }
    return DB_E_TIMEOUT;
}

/* Runs one statement (run() below decided it may); on DB_OK *out holds a
 * result the caller PQclear()s.  Sets db->outcome for the breaker. */
static int run_statement(db_t *db, const char *sql, enum stmt_kind kind, const db_param *p,
                         size_t np, PGresult **out, const char *what)
{
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
    /* The server cancels at statement_ms itself (statement_timeout) and
     * answers with an error on a connection that stays usable; the client's
     * deadline, a little later, is for a server that cannot answer at all. */
    int64_t deadline = db_now_ms() + db->statement_ms + CLIENT_GRACE_MS;
    PGresult *res = NULL;
    e = exec_within(db, text, (int)np, types, values, deadline, &res);
    free(values);
    free(types);
    free(ints);
    free(text);
    if (e == DB_E_TIMEOUT)
        return timed_out(db, kind, what, was_in_tx);

    db->outcome = BREAKER_REACHED;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        /* A lost COMMIT has an unknown outcome unless the transaction was
         * already gone; say so rather than guess.  A lost ROLLBACK ended
         * the transaction anyway: nothing is left to report later. */
        e = map_error(db, res, kind == STMT_COMMIT ? "COMMIT" : what,
                      was_in_tx && kind != STMT_ROLLBACK);
        if (e == DB_E_CONN) /* lost, or the server is shutting down (08xxx, 57P0x) */
            db->outcome = BREAKER_UNREACHABLE;
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
    /* A statement that starts a conversation asks the breaker; one inside a
     * transaction that began is bounded by its own deadline, and its caller
     * must learn how the transaction ended. */
    int probe = 0;
    if (!db->conn || !in_transaction(db)) {
        char why[200];
        if (!breaker_admit(db->breaker, &probe, why, sizeof(why))) {
            set_err(db, "postgres %s: %s", what, why);
            return DB_E_CONN;
        }
    }
    db->outcome = BREAKER_NOT_ASKED;
    int e = run_statement(db, sql, kind, p, np, out, what);
    breaker_report(db->breaker, probe, db->outcome, db->err);
    return e;
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

static void free_db(db_t *db)
{
    if (db->conn)
        PQfinish(db->conn);
    breaker_put(db->breaker);
    if (db->url) {
        explicit_bzero(db->url, strlen(db->url));
        free(db->url);
    }
    free(db);
}

static int pg_open(const char *url, db_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!pg_accepts(url)) {
        snprintf(err, errlen, "postgres: bad database url");
        return DB_E_CONN;
    }
    /* libpq's URI errors quote the part they could not read ("invalid
     * percent-encoded token: \"<password>\"", or the whole URI): parse it
     * here, and say only that it is malformed. */
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (perr) {
        explicit_bzero(perr, strlen(perr));
        PQfreemem(perr);
    }
    if (!opts) {
        snprintf(err, errlen, "postgres: DATABASE_URL is not a valid connection URI (check "
                              "that user name and password are percent-encoded)");
        return DB_E_CONN;
    }
    /* A bare '/' or a second '@' in the password parses, but shifts it into
     * the port ("invalid integer value \"<part>\"") or the host name ("could
     * not translate host name \"<part>@host\""), which the connect error
     * quotes: such a URL is refused here the same way. */
    int misread = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val) {
            if ((!strcmp(o->keyword, "port") && o->val[strspn(o->val, "0123456789,")]) ||
                ((!strcmp(o->keyword, "host") || !strcmp(o->keyword, "hostaddr") ||
                  !strcmp(o->keyword, "dbname")) && strchr(o->val, '@')))
                misread = 1;
            explicit_bzero(o->val, strlen(o->val));
        }
    PQconninfoFree(opts);
    if (misread) {
        snprintf(err, errlen, "postgres: DATABASE_URL is not a valid connection URI (check "
                              "that user name and password are percent-encoded)");
        return DB_E_CONN;
    }
    db_t *db = calloc(1, sizeof(*db));
    if (!db || !(db->url = strdup(url))) {
        free(db);
        snprintf(err, errlen, "postgres: out of memory");
        return DB_E_OTHER;
    }
    db_limits lim = db_get_limits();
    db->statement_ms = lim.statement_ms;
    db->connect_ms = lim.connect_ms;
    /* A probe's turn: a reconnect, then a statement, each with its grace. */
    db->breaker = breaker_get(BREAKER_STORE, url, "the database", lim.connect_ms + lim.statement_ms + 2 * CLIENT_GRACE_MS);
    /* Opening is not refused (start-up, the admin CLI), but what it learns counts. */
    int e = connect_within(db);
    breaker_report(db->breaker, 0, e == DB_OK ? BREAKER_REACHED
                                      : e == DB_E_OTHER ? BREAKER_NOT_ASKED : BREAKER_UNREACHABLE,
                      db->err);
    if (e != DB_OK) {
        snprintf(err, errlen, "%s", db->err);
        free_db(db);
        return e;
    }
    *out = db;
    return DB_OK;
}

static void pg_close(db_t *db)
{
    if (db)
        free_db(db);
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
