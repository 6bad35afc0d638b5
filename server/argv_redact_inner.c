/* argv_redact_inner.c — the options of programs a command runs, which carry
 * credentials under names no rule of the outer CLI knows (argv_redact_text.h):
 *   kubectl exec db-0 -- mysql -uroot -pS3cret
 *   kubectl exec api -- sh -c "curl -u admin:S3cret http://localhost/…"
 *   kubectl run tmp --image=redis -- redis-cli -h redis -a S3cret PING
 *   gcloud compute ssh vm --command "PGPASSWORD=… psql …; sshpass -p S3cret …"
 * A word naming one of the programs below (its base name: /usr/bin/mysql,
 * "mysql) switches the words after it to that program's options, until a
 * shell separator or another program. */
#include "argv_redact_text.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "argv_redact.h"

typedef enum {
    FORM_SHORT,    /* -a S3cret, -aS3cret */
    FORM_ATTACHED, /* -pS3cret only: a bare -p asks for the password (mysql) */
    FORM_LONG,     /* --pass S3cret, --pass=S3cret; -passin S3cret (openssl) */
} opt_form;

typedef enum {
    VALUE_WHOLE,    /* the value is the credential */
    VALUE_USERPASS, /* user:password: what follows the first ':' (curl -u) */
    VALUE_COOKIE,   /* name=value cookies (curl -b); a file name when it has no '=' */
    VALUE_OPTIONAL, /* the value, unless the next word is an option: mongosh -p prompts */
    VALUE_BASIC,    /* user:password as VALUE_USERPASS, but KEY: (an empty password) is a
                     * key as the user (curl -u sk_live_…:, Stripe's and Mailgun's way) */
    VALUE_PROXY,    /* [user[:password]@]host[:port]: the user info as a URL's (curl -x) */
    VALUE_SAMBA,    /* [domain\\]user[%password]: what follows the first '%' (smbclient -U) */
    VALUE_ORACLE,   /* user/password[@connect]: from the first '/' to the last '@' before a
                     * blank (sqlplus app/pw@//h:1521/svc); "/", "/nolog", @script are none */
} opt_value;

typedef struct {
    const char *flag;
    opt_form form;
    opt_value value;
} inner_opt;

/* A credential at a position: the nth word that is no option (nor an
 * option's value) counted from a word of the command. */
typedef struct {
    const char *after;  /* the word the count starts from (redis-cli AUTH); NULL: the
                         * program's name, or its subcommand when it has subs */
    int nth;            /* 0: no rule */
    int rest;           /* every word after the nth too (AUTH [user] password) */
    const char *prefix; /* only a word starting with one of these, cut after it
                         * (ACL SETUSER bob on >password) */
    const char *when;   /* short options that must all have been given (htpasswd -b) */
    const char *unless; /* short options none of which was given (htpasswd -n) */
    opt_value value;    /* how the word holds it (sqlplus user/password@db); 0: whole */
} inner_position;

typedef struct {
    const char *const *names;
    const char *subs[4];       /* options count only after one of these words (docker login) */
    inner_opt opts[14];
    inner_position pos[6];     /* positional credentials (vault login <token>) */
    const char *valued[28];    /* options that take the next word, for counting positions */
    int pairs;                 /* a word with '=' is a key=value pair, not the position (vault) */
    const char *bundle;        /* short options without a value, which may be bundled before
                                * a credential's (curl -fsSu user:pw, ldapsearch -xw pw) or
                                * one of valued (htpasswd -bC 10) */
    int nocase;                /* the words of pos are the program's commands, in any case */
} inner_program;

static const char *const mysql_names[] = {
    "mysql",        "mysqldump",     "mysqlcheck",     "mysqlimport",   "mysqlshow",
    "mysqlslap",    "mysqlpump",     "mysqlbinlog",    "mysqlsh",       "mariadb",
    "mariadb-dump", "mariadb-check", "mariadb-import", "mariadb-show",  "mariadb-binlog",
    "mariadb-slap", NULL
};
static const char *const mysqladmin_names[] = { "mysqladmin", "mariadb-admin", NULL };
static const char *const redis_names[] = { "redis-cli", "valkey-cli", "keydb-cli", NULL };
static const char *const curl_names[] = { "curl", NULL };
static const char *const mongo_names[] = { "mongo",       "mongosh",   "mongodump", "mongorestore",
                                           "mongoexport", "mongoimport", "mongostat", "mongotop",
                                           "mongofiles",  NULL };
static const char *const sshpass_names[] = { "sshpass", NULL };
static const char *const openssl_names[] = { "openssl", NULL };
static const char *const influx_names[] = { "influx", NULL };
static const char *const registry_names[] = { "docker", "podman", "nerdctl", "buildah", "helm",
                                              "oras",   "crane",  "regctl",  "az",      NULL };
static const char *const skopeo_names[] = { "skopeo", NULL };
static const char *const etcd_names[] = { "etcdctl", NULL };
static const char *const ldap_names[] = { "ldapsearch", "ldapadd",     "ldapmodify", "ldapdelete",
                                          "ldapwhoami", "ldapcompare", "ldapmodrdn", "ldapexop",
                                          NULL };
static const char *const ldappasswd_names[] = { "ldappasswd", NULL };
static const char *const mssql_names[] = { "sqlcmd", "bcp", "osql", NULL };
static const char *const cqlsh_names[] = { "cqlsh", NULL };
static const char *const vault_names[] = { "vault", "bao", NULL };
static const char *const rabbit_names[] = { "rabbitmqctl", NULL };
static const char *const htpasswd_names[] = { "htpasswd", NULL };
static const char *const keytool_names[] = { "keytool", NULL };
static const char *const rabbitadmin_names[] = { "rabbitmqadmin", "cypher-shell", NULL };
static const char *const smbclient_names[] = { "smbclient", NULL };
static const char *const samba_names[] = { "rpcclient", "smbcacls", "smbcquotas", "smbtree",
                                           "smbget",    "smbspool", NULL };
static const char *const oracle_names[] = { "sqlplus", "expdp", "impdp", "sqlldr", "dgmgrl",
                                            NULL };
static const char *const mc_names[] = { "mc", "mcli", NULL };
static const char *const zip_names[] = { "zip", NULL };
static const char *const unzip_names[] = { "unzip", NULL };
static const char *const sevenzip_names[] = { "7z", "7za", "7zr", "7zz", NULL };
static const char *const rar_names[] = { "rar", "unrar", NULL };
static const char *const neo4j_names[] = { "neo4j-admin", NULL };

/* curl's and OpenLDAP's short options that take no value (their manuals;
 * ldapdelete's and ldapmodrdn's -r too): any of them may come before a
 * credential's letter in one word. */
#define CURL_FLAGS_WITHOUT_VALUE "012346#:aBfgGiIjJkLlMNnOpqRsSvVZ"
#define LDAP_FLAGS_WITHOUT_VALUE "AcCILMnNQrtuvVWxZ"

static const inner_program programs[] = {
    { .names = mysql_names, .opts = { { "-p", FORM_ATTACHED, VALUE_WHOLE } } },
    /* mysqladmin … password <new password> (its commands in any case) */
    { .names = mysqladmin_names, .opts = { { "-p", FORM_ATTACHED, VALUE_WHOLE } },
      .pos = { { "password", 1, 0, NULL, NULL, NULL } },
      .valued = { "-h", "-u", "-P", "-S", "--host", "--user", "--port", "--socket", NULL },
      .nocase = 1 },
    /* the client's -a and --pass; AUTH [user] password (HELLO 3 AUTH …,
     * MIGRATE … AUTH2 user password), CONFIG SET requirepass|masterauth
     * <password>, ACL SETUSER name … >password (<password removes one,
     * #sha256 sets its hash) */
    { .names = redis_names,
      .opts = { { "-a", FORM_SHORT, VALUE_WHOLE }, { "--pass", FORM_LONG, VALUE_WHOLE } },
      .pos = { { "auth", 1, 1, NULL, NULL, NULL },
               { "auth2", 1, 1, NULL, NULL, NULL },
               { "requirepass", 1, 0, NULL, NULL, NULL },
               { "masterauth", 1, 0, NULL, NULL, NULL },
               { "setuser", 1, 1, "<>#", NULL, NULL } },
      .valued = { "-h", "-p", "-s", "-n", "-u", "--user", "-r", "-i", "-d", NULL },
      .nocase = 1 },
    { .names = curl_names,
      .opts = { { "-u", FORM_SHORT, VALUE_BASIC },
                { "--user", FORM_LONG, VALUE_BASIC },
                { "-U", FORM_SHORT, VALUE_BASIC },
                { "--proxy-user", FORM_LONG, VALUE_BASIC },
                { "-x", FORM_SHORT, VALUE_PROXY },
                { "--proxy", FORM_LONG, VALUE_PROXY },
                { "-E", FORM_SHORT, VALUE_USERPASS }, /* certificate:passphrase */
                { "--cert", FORM_LONG, VALUE_USERPASS },
                { "--oauth2-bearer", FORM_LONG, VALUE_WHOLE },
                { "-b", FORM_SHORT, VALUE_COOKIE },
                { "--cookie", FORM_LONG, VALUE_COOKIE },
                { "--pass", FORM_LONG, VALUE_WHOLE } },
      .bundle = CURL_FLAGS_WITHOUT_VALUE },
    { .names = mongo_names, .opts = { { "-p", FORM_SHORT, VALUE_OPTIONAL } } },
    { .names = sshpass_names, .opts = { { "-p", FORM_SHORT, VALUE_WHOLE } } },
    { .names = openssl_names,
      .opts = { { "-pass", FORM_LONG, VALUE_WHOLE },
                { "-passin", FORM_LONG, VALUE_WHOLE },
                { "-passout", FORM_LONG, VALUE_WHOLE },
                { "-password", FORM_LONG, VALUE_WHOLE },
                { "-k", FORM_LONG, VALUE_WHOLE } } },
    { .names = influx_names,
      .opts = { { "-password", FORM_LONG, VALUE_WHOLE }, { "-t", FORM_LONG, VALUE_WHOLE } } },
    { .names = registry_names, .subs = { "login", NULL },
      .opts = { { "-p", FORM_SHORT, VALUE_WHOLE } } },
    { .names = skopeo_names,
      .opts = { { "--creds", FORM_LONG, VALUE_USERPASS },
                { "--src-creds", FORM_LONG, VALUE_USERPASS },
                { "--dest-creds", FORM_LONG, VALUE_USERPASS } } },
    { .names = etcd_names, .opts = { { "--user", FORM_LONG, VALUE_USERPASS } } },
    { .names = ldap_names, .opts = { { "-w", FORM_SHORT, VALUE_WHOLE } },
      .bundle = LDAP_FLAGS_WITHOUT_VALUE },
    { .names = ldappasswd_names,
      .opts = { { "-w", FORM_SHORT, VALUE_WHOLE },
                { "-s", FORM_SHORT, VALUE_WHOLE },
                { "-a", FORM_SHORT, VALUE_WHOLE } },
      .bundle = LDAP_FLAGS_WITHOUT_VALUE },
    { .names = mssql_names, .opts = { { "-P", FORM_SHORT, VALUE_WHOLE } } },
    { .names = cqlsh_names, .opts = { { "-p", FORM_SHORT, VALUE_WHOLE } } },
    /* vault login <token>: the first word after login that is no option and
     * no method=… pair */
    { .names = vault_names, .subs = { "login", NULL }, .pos = { { NULL, 1, 0, NULL, NULL, NULL } },
      .valued = { "-address", "-namespace", "-method", "-path", "-ca-cert", "-ca-path",
                  "-client-cert", "-client-key", "-tls-server-name", "-header", "-mfa",
                  "-wrap-ttl", "-format", "-field", NULL },
      .pairs = 1 },
    /* rabbitmqctl add_user|change_password|authenticate_user <name> <password> */
    { .names = rabbit_names, .subs = { "add_user", "change_password", "authenticate_user", NULL },
      .pos = { { NULL, 2, 0, NULL, NULL, NULL } },
      .valued = { "-n", "--node", "-t", "--timeout", NULL } },
    /* htpasswd -b file user password, htpasswd -nb user password (-C cost
     * and -r rounds take a value) */
    { .names = htpasswd_names,
      .pos = { { NULL, 3, 0, NULL, "b", "n" }, { NULL, 2, 0, NULL, "bn", NULL } },
      .valued = { "-C", "-r", NULL }, .bundle = "bcnimBd25spDvi" },
    /* keytool: the password itself after each; -storepass:env NAME and
     * -storepass:file PATH are other options (no '=' form: none matches) */
    { .names = keytool_names,
      .opts = { { "-storepass", FORM_LONG, VALUE_WHOLE },
                { "-keypass", FORM_LONG, VALUE_WHOLE },
                { "-srcstorepass", FORM_LONG, VALUE_WHOLE },
                { "-deststorepass", FORM_LONG, VALUE_WHOLE },
                { "-srckeypass", FORM_LONG, VALUE_WHOLE },
                { "-destkeypass", FORM_LONG, VALUE_WHOLE },
                { "-new", FORM_LONG, VALUE_WHOLE } } }, /* -storepasswd, -keypasswd */
    /* rabbitmqadmin -p, cypher-shell -p (--password is every CLI's) */
    { .names = rabbitadmin_names, .opts = { { "-p", FORM_SHORT, VALUE_WHOLE } } },
    /* smbclient -U [domain\]user%password, and its password as the word
     * after the service (smbclient //srv/share <password>) */
    { .names = smbclient_names,
      .opts = { { "-U", FORM_SHORT, VALUE_SAMBA }, { "--user", FORM_LONG, VALUE_SAMBA } },
      .pos = { { NULL, 2, 0, NULL, NULL, NULL, VALUE_WHOLE } },
      .valued = { "-W", "-c", "-I", "-p", "-D", "-T", "-n", "-i", "-O", "-s", "-l", "-A", "-M",
                  "-L", "-d", "-m", "-t", "-b", "-R", "--workgroup", "--command", "--directory",
                  "--port", "--authentication-file", "--configfile", "--ip-address",
                  "--message", NULL } },
    { .names = samba_names,
      .opts = { { "-U", FORM_SHORT, VALUE_SAMBA }, { "--user", FORM_LONG, VALUE_SAMBA } } },
    /* sqlplus [-S] user/password@db [@script]: the first word that is no
     * option (-M and -R take one) */
    { .names = oracle_names, .pos = { { NULL, 1, 0, NULL, NULL, NULL, VALUE_ORACLE } },
      .valued = { "-M", "-MARKUP", "-R", "-C", NULL } },
    /* mc alias set NAME URL ACCESS SECRET, mc config host add NAME URL
     * ACCESS SECRET, mc admin user add ALIAS USER PASSWORD: the fifth word
     * after alias, host or admin (mc admin config set ALIAS k=v …'s fifth
     * word goes too) */
    { .names = mc_names, .subs = { "alias", "host", "admin", NULL },
      .pos = { { NULL, 5, 0, NULL, NULL, NULL, VALUE_WHOLE } },
      .valued = { "--api", "--path", "--config-dir", "-C", NULL } },
    /* zip -P password (zip -rP pw: its options without a value bundled) */
    { .names = zip_names, .opts = { { "-P", FORM_SHORT, VALUE_WHOLE } },
      .bundle = "0123456789ADFJLRSTXcdefgjklmoqruvwyz" },
    { .names = unzip_names, .opts = { { "-P", FORM_SHORT, VALUE_WHOLE } },
      .bundle = "acfhjlnopqtuvxzCKLMVWX" },
    /* 7z -p<password> (a bare -p asks; its switches in any case), rar's
     * -p<password> and -hp<password> */
    { .names = sevenzip_names,
      .opts = { { "-p", FORM_ATTACHED, VALUE_WHOLE }, { "-P", FORM_ATTACHED, VALUE_WHOLE } } },
    { .names = rar_names,
      .opts = { { "-p", FORM_ATTACHED, VALUE_WHOLE }, { "-hp", FORM_ATTACHED, VALUE_WHOLE } } },
    /* neo4j-admin [dbms] set-initial-password <password> */
    { .names = neo4j_names, .pos = { { "set-initial-password", 1, 0, NULL, NULL, NULL,
                                       VALUE_WHOLE } },
      .valued = { "--additional-config", NULL } },
    { .names = NULL },
};

/* The program a word names, or -1: its base name, quotes and an option's
 * "name=" before it dropped (/usr/bin/mysql, "mysql, --command=mysql). */
static int program_named(const char *w, size_t n)
{
    while (n && (w[n - 1] == '"' || w[n - 1] == '\''))
        n--;
    size_t start = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i] == '/' || w[i] == '=' || w[i] == '"' || w[i] == '\'')
            start = i + 1;
    w += start;
    n -= start;
    if (!n)
        return -1;
    for (int p = 0; programs[p].names; p++)
        for (const char *const *name = programs[p].names; *name; name++)
            if (strlen(*name) == n && !memcmp(*name, w, n))
                return p;
    return -1;
}

static int word_is(const char *w, size_t n, const char *word)
{
    return strlen(word) == n && !memcmp(w, word, n);
}

/* The bit of a short option's letter in argv_inner.letters, 0 for others. */
static unsigned long long letter_bit(char c)
{
    if (c >= 'a' && c <= 'z')
        return 1ull << (c - 'a');
    if (c >= 'A' && c <= 'Z')
        return 1ull << (26 + c - 'A');
    return 0;
}

/* Whether each of letters was given (given: 1) or none was (given: 0). */
static int letters_are(unsigned long long seen, const char *letters, int given)
{
    for (; letters && *letters; letters++)
        if (((seen & letter_bit(*letters)) != 0) != given)
            return 0;
    return 1;
}

/* Whether a word that is no option is a positional credential of p; *keep
 * as value_keep's.  Counts it (after_sub) and notes the word a rule counts
 * from (AUTH). */
static int value_keep(int value, const char *w, size_t n, size_t *keep, size_t *tail);

static argv_inner_verdict positional(argv_inner *st, const inner_program *p, const char *w,
                                     size_t n, size_t *keep, size_t *tail)
{
    st->after_sub++;
    for (int r = 0; r < (int)(sizeof(p->pos) / sizeof(p->pos[0])) && p->pos[r].nth; r++) {
        const inner_position *ps = &p->pos[r];
        if ((ps->after ? st->anchor != r : st->anchor >= 0) ||
            !(st->after_sub == ps->nth || (ps->rest && st->after_sub > ps->nth)) ||
            !letters_are(st->letters, ps->when, 1) || !letters_are(st->letters, ps->unless, 0))
            continue;
        if ((p->pairs && memchr(w, '=', n)) ||
            (n == 1 && w[0] == '-') || /* vault login -: the token is read from stdin */
            (n == strlen(ARGV_REDACTED) && !memcmp(w, ARGV_REDACTED, n)))
            return ARGV_INNER_NONE;
        if (ps->prefix) {
            if (n < 2 || !strchr(ps->prefix, w[0]) || !w[0] ||
                (n - 1 == strlen(ARGV_REDACTED) && !memcmp(w + 1, ARGV_REDACTED, n - 1)))
                continue;
            *keep = 1;
        }
        if (ps->value != VALUE_WHOLE) /* sqlplus app/pw@db: the user and the @db stay */
            return value_keep((int)ps->value, w, n, keep, tail) ? ARGV_INNER_CUT
                                                                 : ARGV_INNER_NONE;
        return ARGV_INNER_CUT;
    }
    /* a word the count starts from again (redis-cli … AUTH, CONFIG SET requirepass) */
    for (int r = 0; r < (int)(sizeof(p->pos) / sizeof(p->pos[0])) && p->pos[r].nth; r++)
        if (p->pos[r].after && strlen(p->pos[r].after) == n &&
            !(p->nocase ? strncasecmp(w, p->pos[r].after, n) : memcmp(w, p->pos[r].after, n))) {
            st->anchor = r;
            st->after_sub = 0;
        }
    return ARGV_INNER_NONE;
}

/* Whether a value word (read as `value`) holds a credential to cut; *keep
 * is how many of its bytes stay before it (the user of user:password),
 * *tail how many after it (the ':' of KEY:, the @host of a proxy). */
static int value_keep(int value, const char *w, size_t n, size_t *keep, size_t *tail)
{
    *tail = 0;
    if (value == VALUE_USERPASS || value == VALUE_BASIC) {
        const char *colon = memchr(w, ':', n);
        if (!colon)
            return 0; /* a user alone: the program asks for the password */
        *keep = (size_t)(colon + 1 - w);
        if (value == VALUE_BASIC && *keep == n) { /* KEY: */
            *keep = 0;
            *tail = 1;
        }
    } else if (value == VALUE_PROXY) {
        const char *at = NULL;
        for (const char *c = w; c < w + n; c++)
            if (*c == '@')
                at = c;
        if (!at || memmem(w, n, "://", 3))
            return 0; /* no user info, or a URL: the URL rule reads it */
        const char *colon = memchr(w, ':', (size_t)(at - w));
        *keep = colon ? (size_t)(colon + 1 - w) : 0;
        *tail = n - (size_t)(at - w);
    } else if (value == VALUE_SAMBA) {
        const char *pc = memchr(w, '%', n);
        if (!pc)
            return 0; /* a user alone: the program asks */
        *keep = (size_t)(pc + 1 - w);
    } else if (value == VALUE_ORACLE) {
        const char *slash = memchr(w, '/', n);
        if (!slash || slash == w || memchr(w, '@', (size_t)(slash - w)))
            return 0; /* "/", /nolog, @/path/script.sql, user@db (it asks) */
        for (const char *c = w; c < slash; c++)
            if (argv_blank(*c))
                return 0;
        size_t stop = (size_t)(slash - w) + 1, at = 0;
        while (stop < n && !argv_blank(w[stop])) {
            if (w[stop] == '@')
                at = stop;
            stop++;
        }
        *keep = (size_t)(slash + 1 - w);
        *tail = n - (at ? at : stop);
    } else if (value == VALUE_COOKIE) {
        if (!memchr(w, '=', n))
            return 0; /* a cookie file */
        *keep = 0;
    } else {
        *keep = 0;
    }
    size_t rest = n - *keep - *tail;
    return rest && !(rest == strlen(ARGV_REDACTED) && !memcmp(w + *keep, ARGV_REDACTED, rest));
}

/* Shell words after which the next command starts. */
static int separator(const char *w, size_t n)
{
    return n && (w[n - 1] == ';' || w[n - 1] == '|' || w[n - 1] == '&');
}

/* Short options bundled in one word before a credential's (curl -fsSu
 * user:pw, -su user:pw, ldapsearch -xwS3cret): the letters before it must
 * all be options without a value, else one of them takes the rest. */
static argv_inner_verdict bundled(argv_inner *st, const inner_program *p, const char *w, size_t n,
                                  size_t *keep, size_t *tail)
{
    if (!p->bundle || n < 3 || w[1] == '-')
        return ARGV_INNER_NONE;
    size_t k = 1;
    while (k < n && w[k] && strchr(p->bundle, w[k]))
        k++;
    if (k == 1 || k == n)
        return ARGV_INNER_NONE;
    for (size_t o = 0; o < sizeof(p->opts) / sizeof(p->opts[0]) && p->opts[o].flag; o++) {
        const inner_opt *opt = &p->opts[o];
        if (opt->form != FORM_SHORT || strlen(opt->flag) != 2 || opt->flag[1] != w[k])
            continue;
        if (k + 1 == n) {
            st->pending = 1 + (int)opt->value;
            return ARGV_INNER_NONE;
        }
        size_t v = 0;
        if (!value_keep((int)opt->value, w + k + 1, n - k - 1, &v, tail))
            return ARGV_INNER_NONE;
        *keep = k + 1 + v;
        return ARGV_INNER_CUT;
    }
    return ARGV_INNER_NONE;
}

static argv_inner_verdict judge(argv_inner *st, const char *w, size_t n, size_t *keep,
                                size_t *tail)
{
    if (st->pending) { /* the value of the option before */
        int value = st->pending - 1;
        st->pending = 0;
        if (!(value == VALUE_OPTIONAL && n > 1 && w[0] == '-'))
            return value_keep(value, w, n, keep, tail) ? ARGV_INNER_CUT : ARGV_INNER_NONE;
    }
    int named = program_named(w, n);
    if (named >= 0) {
        st->program = named;
        st->after_sub = programs[named].subs[0] ? -1 : 0;
        st->skip = 0;
        st->anchor = -1;
        st->letters = 0;
        return ARGV_INNER_NONE;
    }
    if (st->program < 0)
        return ARGV_INNER_NONE;
    const inner_program *p = &programs[st->program];
    if (st->after_sub < 0) {
        for (size_t s = 0; p->subs[s]; s++)
            if (word_is(w, n, p->subs[s]))
                st->after_sub = 0;
        return ARGV_INNER_NONE;
    }
    if (n > 1 && w[0] == '-') {
        /* Go's flag package (vault) reads --flag as -flag */
        const char *ow = p->pairs && n > 2 && w[1] == '-' ? w + 1 : w;
        size_t on = n - (size_t)(ow - w);
        /* options without a value bundled before one with (htpasswd -bC 10):
         * only when every letter before the last is such an option, so
         * that -uroot's "t" or -pS3cretu's "u" is no option */
        size_t b = 1;
        while (p->bundle && b < n - 1 && w[b] && strchr(p->bundle, w[b]))
            b++;
        int bundled_last = p->bundle && n > 2 && b == n - 1;
        for (size_t v = 0; p->valued[v]; v++)
            if (word_is(ow, on, p->valued[v]) ||
                (bundled_last && strlen(p->valued[v]) == 2 && p->valued[v][1] == w[n - 1]))
                st->skip = 1; /* its value is not a position */
        /* a flag every CLI's rule knows (--password, --secret-key) takes the
         * next word, which its rule cuts: no position either */
        char flag[128], shown[ARGV_REDACT_SHOWN_MAX];
        if (w[1] == '-' && n < sizeof(flag)) {
            memcpy(flag, w, n);
            flag[n] = '\0';
            if (argv_redact_arg("", flag, shown, sizeof(shown)) == ARGV_REDACT_NEXT)
                st->skip = 1;
        }
        if (w[1] != '-') /* the letters given, for a position's conditions (-nb) */
            for (size_t k = 1; k < n && w[k] != '='; k++)
                st->letters |= letter_bit(w[k]);
        for (size_t o = 0; o < sizeof(p->opts) / sizeof(p->opts[0]) && p->opts[o].flag; o++) {
            const inner_opt *opt = &p->opts[o];
            size_t fl = strlen(opt->flag);
            if (n < fl || memcmp(w, opt->flag, fl))
                continue;
            if (n == fl) {
                if (opt->form == FORM_ATTACHED)
                    return ARGV_INNER_NONE; /* -p alone: a prompt */
                st->pending = 1 + (int)opt->value;
                return ARGV_INNER_NONE;
            }
            size_t at = fl;
            if (opt->form == FORM_LONG) {
                if (w[fl] != '=')
                    continue; /* --password-file is another option */
                at = fl + 1;
            } else if (w[fl] == '=') {
                at = fl + 1; /* -a=S3cret */
            }
            size_t k = 0;
            if (!value_keep((int)opt->value, w + at, n - at, &k, tail))
                return ARGV_INNER_NONE;
            *keep = at + k;
            return ARGV_INNER_CUT;
        }
        return bundled(st, p, w, n, keep, tail);
    }
    if (st->skip) {
        st->skip = 0;
        return ARGV_INNER_NONE;
    }
    return positional(st, p, w, n, keep, tail);
}

argv_inner_verdict argv_inner_word(argv_inner *st, const char *w, size_t n, size_t *keep,
                                   size_t *end)
{
    /* "-pS3cret;" is still mysql's, and the ';' stays: a pass that cut it
     * would let the next pass read the words after it as mysql's too */
    size_t m = n;
    while (m && (w[m - 1] == ';' || w[m - 1] == '|' || w[m - 1] == '&'))
        m--;
    /* a word quoted whole ("-p$PW", 'S3 cret', \"-p…\" in a line inside
     * "…") is read without its quotes, which stay */
    size_t q = 0;
    if (m >= 2 && (w[0] == '"' || w[0] == '\'') && w[m - 1] == w[0] &&
        !memchr(w + 1, w[0], m - 2))
        q = 1;
    else if (m >= 4 && w[0] == '\\' && w[1] == '"' && w[m - 2] == '\\' && w[m - 1] == '"' &&
             !memchr(w + 2, '"', m - 4))
        q = 2;
    size_t tail = 0;
    *keep = 0;
    argv_inner_verdict v = m ? judge(st, w + q, m - 2 * q, keep, &tail) : ARGV_INNER_NONE;
    *keep += q;
    *end = m - q - (v == ARGV_INNER_CUT ? tail : 0);
    if (separator(w, n)) {
        st->program = -1;
        st->pending = 0;
    }
    return v;
}

/* A shell operator at a[i], which ends the word and, but for a redirection,
 * the command before it: ; | & ( ) and the backquote, so that in
 * "cd /x&&mysql -p…" and "$(redis-cli -a …)" the program is a word of its
 * own.  The '&' of a redirection (2>&1, &>file) belongs to its word. */
static int shell_operator(const char *a, size_t i, size_t from, size_t stop)
{
    char c = a[i];
    if (c == ';' || c == '|' || c == '(' || c == ')' || c == '`')
        return 1;
    return c == '&' && !(i > from && (a[i - 1] == '>' || a[i - 1] == '<')) &&
           !(i + 1 < stop && a[i + 1] == '>');
}

/* Whether a redirection starts at a[i] inside a word, which it ends there:
 * S3cret>out, S3cret&>log, S3cret<in; not the operator's own bytes (>>,
 * 2>&1, &>) nor an fd number's (2>log). */
static int redirection_at(const char *a, size_t i, size_t from, size_t stop)
{
    if (a[i] != '>' && a[i] != '<' && !(a[i] == '&' && i + 1 < stop && a[i + 1] == '>'))
        return 0;
    if (i == from || a[i - 1] == '>' || a[i - 1] == '<' || a[i - 1] == '&')
        return 0;
    for (size_t k = from; k < i; k++) /* at most twice per word: after this '>' is in it */
        if (a[k] < '0' || a[k] > '9')
            return 1;
    return 0;
}

/* In a \"…\" part, how many bytes the escape at a[i] (a backslash) takes:
 * 0 when it is the \" that ends the part; \\ escapes what follows it, so
 * \\\" (a quote inside the part) is one. */
static size_t escaped_unit(const char *a, size_t i, size_t stop)
{
    if (i + 1 >= stop)
        return 1;
    if (a[i + 1] == '"')
        return 0;
    if (a[i + 1] == '\\' && i + 2 < stop)
        return a[i + 2] == '\\' && i + 3 < stop ? 4 : 3;
    return 2;
}

/* In a line inside "…" (esc), an escaped line break or tab ("set -e\nmysql
 * -p…" in a JSON string): 'n' for \n and \r, which end a command as a
 * newline does, 't' for \t, a blank; 0 for anything else.  In a shell's
 * "…" the shell keeps \n as it is: read as a break, it costs a word more
 * redacted at most. */
static char escaped_blank(const char *a, size_t i, size_t stop, int esc)
{
    if (!esc || a[i] != '\\' || i + 1 >= stop)
        return 0;
    return a[i + 1] == 'n' || a[i + 1] == 'r' ? 'n' : a[i + 1] == 't' ? 't' : 0;
}

/* Scans a shell word from i to the first blank, operator or redirection
 * (S3cret>out) outside quotes ('a b', "a b", a\ b) or stop; *quote (when
 * not NULL) is the quote still open there (0: none, 'e': \").  In a line
 * that is the text of a "…" part (esc: sh -c "mysql -p\"S3;cret\"", a JSON
 * string) \" is a quote too: the shell that runs the line reads it as one. */
static size_t scan_word(const char *a, size_t i, size_t stop, int esc, char *quote)
{
    size_t from = i;
    char q = 0;
    for (; i < stop && (q || (!argv_blank(a[i]) && !escaped_blank(a, i, stop, esc) &&
                              !shell_operator(a, i, from, stop) &&
                              !redirection_at(a, i, from, stop)));
         i++) {
        if (q == 'e') {
            size_t u = a[i] == '\\' ? escaped_unit(a, i, stop) : 1;
            if (!u)
                q = 0;
            i += u ? u - 1 : 1;
        } else if (q) {
            if (a[i] == q)
                q = 0;
            else if (a[i] == '\\' && q == '"' && i + 1 < stop)
                i++;
        } else if (a[i] == '\'' || a[i] == '"') {
            q = a[i];
        } else if (a[i] == '\\' && i + 1 < stop) {
            if (a[++i] == '"' && esc)
                q = 'e';
        }
    }
    if (quote)
        *quote = q;
    return i;
}

argv_inner_verdict argv_words_next(argv_words *ws, const char *w, size_t n, size_t *keep,
                                   size_t *end)
{
    int flag = ws->next_flag;
    ws->next_flag = 0;
    argv_inner_verdict v = argv_inner_word(&ws->inner, w, n, keep, end);
    if (v == ARGV_INNER_CUT)
        return *end > *keep ? ARGV_INNER_CUT : ARGV_INNER_NONE;
    if (flag) {
        /* JSON's punctuation after a quoted flag ({"args": [ "--token" ], …})
         * is no value: cutting it would only break the text */
        size_t k = *keep;
        while (k < *end && strchr("[]{},:", w[k]) && w[k])
            k++;
        return k < *end ? ARGV_INNER_CUT : ARGV_INNER_NONE;
    }
    /* a flag every CLI's rule knows: its value is the next word */
    char shown[ARGV_REDACT_SHOWN_MAX], word[128];
    size_t fn = *end - *keep;
    if (fn && fn < sizeof(word) && w[*keep] == '-') {
        memcpy(word, w + *keep, fn);
        word[fn] = '\0';
        ws->next_flag = argv_redact_arg("", word, shown, sizeof(shown)) == ARGV_REDACT_NEXT;
    }
    return ARGV_INNER_NONE;
}

static void cut_word(argv_splice *s, const char *a, size_t start, size_t n, size_t keep,
                     size_t end, int esc)
{
    /* 'admin:S3cret': a quote the kept part opened and the kept tail (a
     * trailing ';', the closing quote of a word quoted whole) does not
     * close is closed after the replacement, so the line splits into the
     * same words again (a later pass, admin redact-audit) */
    char q = 0;
    scan_word(a, start, start + keep, esc, &q);
    const char *close = q == 'e' ? "\\\"" : q == '"' ? "\"" : q == '\'' ? "'" : "";
    if (q && memchr(a + start + end, q == 'e' ? '"' : q, n - end))
        close = "";
    const char *rest = a + start + keep;
    size_t red = strlen(ARGV_REDACTED), rn = end - keep, cn = strlen(close);
    if ((rn == red || (cn && rn == red + cn && !memcmp(rest + red, close, cn))) &&
        !memcmp(rest, ARGV_REDACTED, red))
        return; /* already */
    argv_splice_cut_as(s, start + keep, start + end, close);
}

void argv_splice_cut_words(argv_splice *s, const char *a, size_t start, size_t n, size_t keep,
                           size_t end)
{
    cut_word(s, a, start, n, keep, end, 0);
}

/* How deep quoted shell lines are read inside each other. */
#define SHELL_NESTING 4

static char *redact_line(const char *arg, size_t len, int depth, int esc);

/* The quoted parts of a word a[start, end) are read as shell lines of their
 * own: bash -c 'mysql -p…' inside sh -c "…", "$(redis-cli -a …)", a JSON
 * "command" string, and in a line inside "…" (esc) a \"…\" part.  What
 * replaces a credential there holds no quote of the part's kind (its text
 * cannot hold one unescaped), so the word still ends where it did. */
static void nested_lines(argv_splice *s, const char *a, size_t start, size_t end, int depth,
                         int esc)
{
    for (size_t i = start; i < end; i++) {
        int escaped = esc && a[i] == '\\' && i + 1 < end && a[i + 1] == '"';
        if (a[i] == '\\' && !escaped) {
            i++;
            continue;
        }
        if (!escaped && a[i] != '\'' && a[i] != '"')
            continue;
        char q = a[i];
        size_t open = escaped ? i + 2 : i + 1, c = open;
        for (; c < end; c++) {
            size_t u = escaped && a[c] == '\\' ? escaped_unit(a, c, end) : 1;
            if (!u || (!escaped && a[c] == q))
                break;
            if (!escaped && q == '"' && a[c] == '\\' && c + 1 < end)
                c++;
            c += u - 1;
        }
        /* the text of "…" writes its quotes \" (esc), that of '…' as the
         * line does; a \"…\" part's own are \\\", not read as quotes: its
         * words split at blanks */
        int inner_esc = q == '"' ? 1 : q == '\'' ? esc : 0;
        char *inner = redact_line(a + open, c - open, depth + 1, inner_esc);
        if (inner) {
            argv_splice_put(s, open, c, inner);
            OPENSSL_cleanse(inner, strlen(inner));
            free(inner);
        }
        i = escaped && c < end ? c + 1 : c;
    }
}

/* ---- a password written to a program's stdin ---- */

/* The words of one command in a shell line, as far as they are kept. */
#define CMD_WORDS 64
typedef struct {
    size_t start[CMD_WORDS], n[CMD_WORDS];
    int count;
} cmd_words;

/* Where the words whose text is a password start (echo's and printf's data
 * piped into chpasswd, a here-string's word). */
#define STDIN_MARKS 128
typedef struct {
    size_t at[STDIN_MARKS];
    int count;
} stdin_marks;

static void mark_word(stdin_marks *m, size_t at)
{
    if (m->count < STDIN_MARKS)
        m->at[m->count++] = at;
}

static int marked(const stdin_marks *m, size_t at)
{
    for (int k = 0; k < m->count; k++)
        if (m->at[k] == at)
            return 1;
    return 0;
}

/* Bytes of quoting around a word quoted whole: 1 for '…' and "…", 2 for
 * \"…\" (in a line inside "…"), 0 otherwise. */
static size_t whole_quote(const char *w, size_t n)
{
    if (n >= 2 && (w[0] == '"' || w[0] == '\'') && w[n - 1] == w[0] && !memchr(w + 1, w[0], n - 2))
        return 1;
    if (n >= 4 && w[0] == '\\' && w[1] == '"' && w[n - 2] == '\\' && w[n - 1] == '"' &&
        !memchr(w + 2, '"', n - 4))
        return 2;
    return 0;
}

/* Whether word k of c is `name` (its quotes and directory dropped). */
static int cmd_is(const char *a, const cmd_words *c, int k, const char *name)
{
    const char *w = a + c->start[k];
    size_t n = c->n[k], q = whole_quote(w, n);
    w += q;
    n -= 2 * q;
    for (size_t i = n; i > 0; i--)
        if (w[i - 1] == '/') {
            n -= i;
            w += i;
            break;
        }
    return word_is(w, n, name);
}

static int cmd_has(const char *a, const cmd_words *c, int from, const char *word)
{
    for (int k = from; k < c->count; k++)
        if (word_is(a + c->start[k], c->n[k], word))
            return 1;
    return 0;
}

/* Whether a word sets a variable (A=1 before a command). */
static int assignment_word(const char *w, size_t n)
{
    size_t k = 0;
    while (k < n && (argv_name_char(w[k]) && w[k] != '-' && w[k] != '.'))
        k++;
    return k > 0 && k < n && w[k] == '=';
}

/* The index of the program a command runs: past assignments and the
 * wrappers that hand it their stdin (env, nohup, exec, sudo [options]);
 * *sudo_stdin: sudo -S reads its own password from stdin. */
static int command_program(const char *a, const cmd_words *c, int *sudo_stdin)
{
    static const char *const wrappers[] = { "env", "nohup", "exec", "command", "builtin", "time",
                                            "sudo", "doas", NULL };
    *sudo_stdin = 0;
    int k = 0;
    for (;;) {
        while (k < c->count && assignment_word(a + c->start[k], c->n[k]))
            k++;
        int wrapper = 0;
        for (const char *const *w = wrappers; k < c->count && *w; w++)
            if (cmd_is(a, c, k, *w))
                wrapper = 1;
        if (!wrapper)
            return k;
        int sudo = cmd_is(a, c, k, "sudo");
        for (k++; k < c->count && c->n[k] > 1 && a[c->start[k]] == '-'; k++) {
            const char *o = a + c->start[k];
            size_t n = c->n[k];
            if (sudo && (word_is(o, n, "--stdin") || (o[1] != '-' && memchr(o, 'S', n))))
                *sudo_stdin = 1;
            /* sudo's and doas's options that take the next word */
            if (n == 2 && strchr("ugpCDhrtUT", o[1]))
                k++;
        }
    }
}

/* Whether a command reads a password (or a secret) from its stdin:
 * chpasswd, passwd, cryptsetup, …; an option --password-stdin (docker,
 * podman, helm, oras login), sudo -S, vault login -, openssl's -pass*
 * stdin, gpg --passphrase-fd 0, and a command naming a Secret that reads
 * a file from stdin (kubectl create secret … --from-file=k=/dev/stdin,
 * docker secret create name -). */
static int reads_password(const char *a, const cmd_words *c)
{
    static const char *const always[] = { "chpasswd", "chgpasswd", "passwd", "smbpasswd",
                                          "cryptsetup", "newusers", NULL };
    int sudo_stdin = 0, p = command_program(a, c, &sudo_stdin);
    if (sudo_stdin)
        return 1;
    if (p >= c->count)
        return 0;
    for (const char *const *name = always; *name; name++)
        if (cmd_is(a, c, p, *name))
            return 1;
    int secret = 0, dash = 0;
    for (int k = p + 1; k < c->count; k++) {
        const char *w = a + c->start[k];
        size_t n = c->n[k];
        if (n > 8 && w[0] == '-' && w[1] == '-' && !memcmp(w + n - 6, "-stdin", 6) &&
            argv_credential_name(w + 2, n - 8))
            return 1; /* --password-stdin, --passphrase-stdin */
        char word[64];
        if (n < sizeof(word)) {
            memcpy(word, w, n);
            word[n] = '\0';
            secret |= argv_names_secret(word);
        }
        dash |= word_is(w, n, "-") || memmem(w, n, "/dev/stdin", 10) != NULL;
    }
    if (secret && dash)
        return 1;
    if ((cmd_is(a, c, p, "vault") || cmd_is(a, c, p, "bao")) && cmd_has(a, c, p + 1, "login") &&
        cmd_has(a, c, p + 1, "-"))
        return 1;
    if (cmd_is(a, c, p, "openssl") && (cmd_has(a, c, p + 1, "stdin") || cmd_has(a, c, p + 1, "fd:0")))
        return 1;
    if (cmd_is(a, c, p, "htpasswd") && cmd_has(a, c, p + 1, "-i"))
        return 1;
    if (cmd_is(a, c, p, "gpg") || cmd_is(a, c, p, "gpg2"))
        for (int k = p + 1; k + 1 < c->count; k++)
            if (word_is(a + c->start[k], c->n[k], "--passphrase-fd") &&
                word_is(a + c->start[k + 1], c->n[k + 1], "0"))
                return 1;
    if (cmd_is(a, c, p, "sshpass")) { /* without -p, -f, -d or -e it reads stdin */
        for (int k = p + 1; k < c->count; k++) {
            const char *w = a + c->start[k];
            if (c->n[k] >= 2 && w[0] == '-' && strchr("pfde", w[1]))
                return 0;
        }
        return 1;
    }
    return 0;
}

/* The data words of an echo or printf that feeds a pipe: echo's words
 * after its options; printf's arguments, and its format too unless it
 * has a conversion and arguments follow it (printf '%s' pw). */
static void mark_feeder(const char *a, const cmd_words *c, stdin_marks *m)
{
    int sudo_stdin = 0, p = command_program(a, c, &sudo_stdin), k = p + 1;
    if (p >= c->count)
        return;
    if (cmd_is(a, c, p, "echo")) {
        while (k < c->count && c->n[k] > 1 && a[c->start[k]] == '-' &&
               strspn(a + c->start[k] + 1, "neE") >= c->n[k] - 1)
            k++;
    } else if (cmd_is(a, c, p, "printf")) {
        if (k < c->count && word_is(a + c->start[k], c->n[k], "-v"))
            k += 2;
        if (k < c->count && word_is(a + c->start[k], c->n[k], "--"))
            k++;
        if (k + 1 < c->count && memchr(a + c->start[k], '%', c->n[k]))
            k++; /* the format: a template, the arguments are the data */
    } else {
        return;
    }
    for (; k < c->count; k++)
        mark_word(m, c->start[k]);
}

/* A here-string's word (chpasswd <<< 'root:…', <<<pw). */
static void mark_here_strings(const char *a, const cmd_words *c, stdin_marks *m)
{
    for (int k = 0; k < c->count; k++) {
        const char *w = a + c->start[k];
        if (c->n[k] >= 3 && !memcmp(w, "<<<", 3)) {
            if (c->n[k] > 3)
                mark_word(m, c->start[k]);
            else if (k + 1 < c->count)
                mark_word(m, c->start[k + 1]);
        }
    }
}

/* The words of a shell line that are a password written to a program's
 * stdin: echo/printf's data piped into one that reads a password there
 * (echo root:pw | chpasswd, printf '%s' pw | docker login
 * --password-stdin), and here-strings given to one. */
static void stdin_passwords(const char *a, size_t len, int esc, stdin_marks *m)
{
    cmd_words prev = { .count = 0 }, cur = { .count = 0 };
    int piped = 0; /* prev's output is cur's input */
    size_t i = 0;
    for (;;) {
        int ends = 0, pipe = 0, op = 0;
        if (i >= len) {
            ends = 1;
        } else {
            char eb = escaped_blank(a, i, len, esc);
            if (argv_blank(a[i]) || eb) {
                ends = a[i] == '\n' || eb == 'n';
                i += eb ? 2 : 1;
            } else if (shell_operator(a, i, i, len)) {
                ends = op = 1;
                /* a pipe, not || nor |& */
                pipe = a[i] == '|' && !(i + 1 < len && (a[i + 1] == '|' || a[i + 1] == '&')) &&
                       !(i > 0 && a[i - 1] == '|');
                i++;
            } else {
                size_t start = i;
                i = scan_word(a, start, len, esc, NULL);
                if (cur.count < CMD_WORDS) {
                    cur.start[cur.count] = start;
                    cur.n[cur.count++] = i - start;
                }
                continue;
            }
        }
        if (ends && cur.count) {
            if (reads_password(a, &cur)) {
                if (piped)
                    mark_feeder(a, &prev, m);
                mark_here_strings(a, &cur, m);
            }
            prev = cur;
            cur.count = 0;
            piped = pipe;
        } else if (op) {
            piped = 0; /* echo x; | … is no pipe; a newline after | is (echo x |\n chpasswd) */
        }
        if (i >= len)
            return;
    }
}

static char *redact_line(const char *arg, size_t len, int depth, int esc)
{
    if (depth > SHELL_NESTING)
        return NULL;
    size_t i = 0;
    while (i < len && !argv_blank(arg[i]) && !escaped_blank(arg, i, len, esc))
        i++;
    if (i == len)
        return NULL; /* one word: not a command line */
    stdin_marks stdin_pw = { .count = 0 };
    stdin_passwords(arg, len, esc, &stdin_pw);
    argv_splice s;
    argv_splice_init(&s, arg);
    argv_words ws = ARGV_WORDS_INIT;
    for (i = 0; i < len;) {
        char eb = escaped_blank(arg, i, len, esc);
        if (argv_blank(arg[i]) || eb) {
            if (arg[i] == '\n' || eb == 'n') /* a command ends with its line */
                ws = (argv_words)ARGV_WORDS_INIT;
            i += eb ? 2 : 1;
            continue;
        }
        if (shell_operator(arg, i, i, len)) {
            ws = (argv_words)ARGV_WORDS_INIT;
            i++;
            continue;
        }
        size_t start = i;
        i = scan_word(arg, start, len, esc, NULL);
        size_t keep = 0, end = 0;
        argv_inner_verdict v = argv_words_next(&ws, arg + start, i - start, &keep, &end);
        if (marked(&stdin_pw, start)) { /* written to a program's stdin: the whole word */
            keep = i - start >= 3 && !memcmp(arg + start, "<<<", 3) ? 3 : 0;
            size_t q = whole_quote(arg + start + keep, i - start - keep);
            end = i - start - q;
            keep += q;
            v = end > keep ? ARGV_INNER_CUT : ARGV_INNER_NONE;
        }
        if (v == ARGV_INNER_CUT)
            cut_word(&s, arg, start, i - start, keep, end, esc);
        else
            nested_lines(&s, arg, start, i, depth, esc);
    }
    return argv_splice_finish(&s, len);
}

char *argv_redact_shell(const char *arg, size_t len)
{
    return redact_line(arg, len, 0, 0);
}
