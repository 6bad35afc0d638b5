/* argv_redact_text.h — the pieces of the audit argv rule (argv_redact.h)
 * that read inside one argument's text, shared by its files:
 *   argv_redact.c         flags, assignments, URL passwords, a command's own
 *   argv_redact_values.c  keyed values: JSON members, YAML and header lines
 *                         and a database statement's password literal
 *   argv_redact_inner.c   the options of programs a command runs
 *                         (kubectl exec … -- mysql -p…, sh -c "curl -u …")
 * Every rule replaces text with ARGV_REDACTED and never reads that text as
 * a credential again, and keeps the quotes and separators that split a
 * shell line, so passes reach a point where nothing changes; should they
 * not within argv_redact_array's bound, what still changes is replaced
 * whole, so a second run changes nothing. */
#ifndef AURORA_ARGV_REDACT_TEXT_H
#define AURORA_ARGV_REDACT_TEXT_H

#include <stddef.h>

#include "buf.h"

/* A character of a name (PGPASSWORD, client-key-data, x.y) and a blank
 * between words, as every rule reads them. */
static inline int argv_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

static inline int argv_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether a name (n bytes) says its value is a credential (PGPASSWORD,
 * ClientSecret, API_KEY, client-key-data, …; argv_redact.c). */
int argv_credential_name(const char *name, size_t n);

/* A copy of src with spans replaced by ARGV_REDACTED, built lazily: nothing
 * is allocated until the first span.  Spans come in order and do not
 * overlap. */
typedef struct {
    const char *src;
    size_t from; /* src bytes before this are in out */
    buf_t out;
    int changed, failed;
} argv_splice;

void argv_splice_init(argv_splice *s, const char *src);
/* Replaces src[start, end) (start >= the previous span's end). */
void argv_splice_cut(argv_splice *s, size_t start, size_t end);
/* The same, with `after` written behind ARGV_REDACTED (a closing quote). */
void argv_splice_cut_as(argv_splice *s, size_t start, size_t end, const char *after);
/* Replaces src[start, end) by text (a nested line's own result). */
void argv_splice_put(argv_splice *s, size_t start, size_t end, const char *text);
/* The result over src's first len bytes: malloc'd text when a span was cut,
 * NULL when nothing changed.  When memory ran out the whole argument is
 * replaced (ARGV_REDACTED): failing closed keeps a credential out of the
 * row at the cost of the argument. */
char *argv_splice_finish(argv_splice *s, size_t len);

/* Keyed values in one argument (argv_redact_values.c): the value of a JSON
 * member, a YAML line or a header line whose key names a credential
 * ("password":"…", password: …, X-Api-Key: …), an Authorization or Cookie
 * header's credentials (the scheme stays), and every string value under
 * "stringData" (and "data" when secret_data: the command reads or writes a
 * Secret).  malloc'd, or NULL when nothing changes. */
char *argv_redact_values(const char *arg, size_t len, int secret_data);

/* A password a database statement sets (psql -c "ALTER USER app PASSWORD
 * '…'", mysql -e "… IDENTIFIED BY '…'", SET PASSWORD FOR u = '…', cqlsh's
 * WITH PASSWORD = '…'): the text of the string literal after PASSWORD or
 * IDENTIFIED … BY, its quotes kept (argv_redact_values.c).  malloc'd, or
 * NULL when nothing changes. */
char *argv_redact_sql(const char *arg, size_t len);

/* Passwords in script code (argv_redact_values.c): the string value of an
 * object's unquoted key naming a credential (mongosh --eval
 * "db.createUser({user:'u', pwd:'…'})"), and the second argument of
 * db.auth('u', '…'), changeUserPassword('u', '…'), Python's auth=('u', '…')
 * and HTTPBasicAuth('u', '…'); the quotes stay.  malloc'd, or NULL when
 * nothing changes. */
char *argv_redact_js(const char *arg, size_t len);

/* Whether an argument is, or holds, a Secret (kubectl get secret, secrets/x,
 * "kind":"Secret"): its "data" values are credentials. */
int argv_names_secret(const char *arg);

/* ---- programs a command runs (argv_redact_inner.c) ---- */

/* Where a word sequence is: which program's options the words are (mysql,
 * curl, redis-cli, …; none until a word names one), whether the previous
 * word was an option whose value is a credential, and how far a positional
 * credential (vault login <token>, redis-cli AUTH <password>) is. */
typedef struct {
    int program;   /* index into the rule's table, -1: none */
    int after_sub; /* words that are not options since the program's subcommand or the
                    * word a position counts from, -1: not seen */
    int pending;   /* 1 + how to read this word as the previous option's value, 0: none */
    int skip;      /* this word is the value of an option that is no credential */
    int anchor;    /* the program's position rule whose word was seen (AUTH), -1: none */
    unsigned long long letters; /* the short options given (htpasswd -b), a bit each */
} argv_inner;

#define ARGV_INNER_INIT { -1, -1, 0, 0, -1, 0 }

typedef enum {
    ARGV_INNER_NONE = 0, /* keep the word */
    ARGV_INNER_CUT,      /* replace the word from *keep on */
} argv_inner_verdict;

/* Judges one word (n bytes) of a program's command line and moves st on.
 * For ARGV_INNER_CUT, the bytes [*keep, *end) go (*end leaves a trailing
 * shell separator, "S3cret;", in place). */
argv_inner_verdict argv_inner_word(argv_inner *st, const char *w, size_t n, size_t *keep,
                                   size_t *end);

/* The words of a command line that is not the audit argv itself (a shell
 * line inside one argument, a JSON array of strings): the programs' options
 * as above, and the value after a flag every CLI's rule knows
 * (--password S3cret, argv_redact_arg). */
typedef struct {
    argv_inner inner;
    int next_flag; /* the previous word was such a flag */
} argv_words;

#define ARGV_WORDS_INIT { ARGV_INNER_INIT, 0 }

/* argv_inner_word for such a word. */
argv_inner_verdict argv_words_next(argv_words *ws, const char *w, size_t n, size_t *keep,
                                   size_t *end);

/* Cuts what argv_words_next judged of the word a[start, start + n): [keep,
 * end) from its start, unless it reads ARGV_REDACTED already; a quote its
 * kept part opened is closed after the replacement. */
void argv_splice_cut_words(argv_splice *s, const char *a, size_t start, size_t n, size_t keep,
                           size_t end);

/* The same over the words of a shell command line inside one argument
 * (sh -c "mysql -uroot -pS3cret", gcloud compute ssh --command "…"):
 * split at blanks and operators (; | & ( ) `, so cd /x&&mysql -p… and
 * $(redis-cli -a …) too), quoted parts read as lines of their own
 * (bash -c 'mysql -p…' inside sh -c "…").  malloc'd, or NULL when nothing
 * changes or the argument has no blank. */
char *argv_redact_shell(const char *arg, size_t len);

#endif
