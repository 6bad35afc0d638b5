/* admin.c — `aurora-server admin …`: operator commands on the state store.
 *
 * Each command is one row of the table at the end: its options (parsed by
 * cli_parse), its usage text and its function.  A command checks its
 * option values first and opens the store (loading the settings) only then,
 * so a bad command line or --help touches nothing.  Output: one JSON object
 * for a command that acts, one JSON object a line for a listing (empty
 * output when there is nothing to list). */
#include "admin.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api_audit.h"
#include "api_util.h"
#include "auth.h"
#include "argv_redact.h"
#include "cli.h"
#include "connectors/kit_webhook.h"
#include "http.h"
#include "router.h"
#include "secret.h"
#include "store.h"
#include "timefmt.h"
#include "token.h"

#define ADMIN_MAX_OPTS 9

typedef struct admin_cmd admin_cmd;

/* One run of one command. */
typedef struct {
    const admin_cmd *cmd;
    char name[96]; /* "aurora-server admin <command>" for messages */
    const char *values[ADMIN_MAX_OPTS];
    const server_config *given;
    server_config own;
    const server_config *cfg;
    store_t *st;
    int rc; /* exit status when admin_store failed */
} admin_call;

struct admin_cmd {
    const char *name;
    const char *synopsis; /* what follows "admin <name>" */
    const char *summary;  /* one line */
    const char *details;  /* NULL, or more for <name> --help */
    int (*run)(admin_call *c);
    cli_option opts[ADMIN_MAX_OPTS]; /* ends at the first without a name */
};

/* ---- helpers ------------------------------------------------------------------------------- */

static size_t count_opts(const admin_cmd *cmd)
{
    size_t n = 0;
    while (n < ADMIN_MAX_OPTS && cmd->opts[n].name)
        n++;
    return n;
}

/* The value of option `name` (declared in the command's table row). */
static const char *val(const admin_call *c, const char *name)
{
    for (size_t i = 0; i < count_opts(c->cmd); i++)
        if (!strcmp(c->cmd->opts[i].name, name))
            return c->values[i];
    return NULL;
}

/* The command ran and failed: one line on stderr, exit 1. */
static int failed(const admin_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int failed(const admin_call *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", c->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_FAILED;
}

/* The settings, then the store, on first use; NULL with c->rc set. */
static store_t *admin_store(admin_call *c)
{
    if (c->st)
        return c->st;
    c->rc = cli_config_begin(c->given, &c->own, &c->cfg);
    if (c->rc)
        return NULL;
    char err[512];
    if (store_open(c->cfg->database_url, &c->st, err, sizeof(err)) != STORE_OK) {
        c->rc = failed(c, "cannot open the state store: %s", err);
        c->st = NULL;
        return NULL;
    }
    return c->st;
}

/* Prints o (consumed) as one line.  0, or 1 when stdout failed. */
static int print_json(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return CLI_EXIT_FAILED;
    int bad = printf("%s\n", s) < 0;
    free(s);
    return bad || fflush(stdout) != 0 ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

/* A time column: Unix seconds, or null for 0 ("never"/"not set"). */
static void add_time(cJSON *o, const char *key, int64_t t)
{
    if (t)
        cJSON_AddNumberToObject(o, key, (double)t);
    else
        cJSON_AddNullToObject(o, key);
}

static int new_key(store_t *st, const char *org, const char *user, const char *name, cJSON *o)
{
    char key[API_KEY_LEN + 1], hash[65], preview[TOKEN_PREVIEW_LEN];
    if (token_new_api_key(key) < 0)
        return -1;
    token_hash(key, hash);
    token_preview(key, preview);
    store_api_key k;
    if (store_api_key_create(st, org, user, name, hash, preview, &k) != STORE_OK)
        return -1;
    cJSON_AddStringToObject(o, "key_id", k.id);
    cJSON_AddStringToObject(o, "api_key", key);
    memset(key, 0, sizeof(key));
    return 0;
}

/* ---- organizations ------------------------------------------------------------------------- */

static int cmd_bootstrap(admin_call *c)
{
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    store_org org;
    cJSON *o = cJSON_CreateObject();
    if (store_org_first(st, &org) == STORE_OK) {
        cJSON_AddStringToObject(o, "org_id", org.id);
        cJSON_AddNullToObject(o, "user_id");
        cJSON_AddNullToObject(o, "api_key");
        cJSON_AddBoolToObject(o, "already_bootstrapped", 1);
        return print_json(o);
    }
    const char *oname = val(c, "org-name"), *email = val(c, "email");
    store_user u;
    if (store_org_create(st, oname ? oname : "default", &org) != STORE_OK ||
        store_user_create(st, org.id, email ? email : "admin@localhost", "admin", &u) != STORE_OK) {
        cJSON_Delete(o);
        return failed(c, "bootstrap failed: %s", store_errmsg(st));
    }
    cJSON_AddStringToObject(o, "org_id", org.id);
    cJSON_AddStringToObject(o, "user_id", u.id);
    if (new_key(st, org.id, u.id, "bootstrap", o) < 0) {
        cJSON_Delete(o);
        return failed(c, "creating the API key failed: %s", store_errmsg(st));
    }
    return print_json(o);
}

/* A user of org and, when with_key, an API key acting as it, added to o
 * ("user_id"; "key_id", "api_key").  0, or -1 with the store's error. */
static int new_user(store_t *st, const char *org, const char *email, const char *role,
                    int with_key, cJSON *o, const char *id_field)
{
    store_user u;
    if (store_user_create(st, org, email, role ? role : "member", &u) != STORE_OK)
        return -1;
    cJSON_AddStringToObject(o, id_field, u.id);
    return with_key ? new_key(st, org, u.id, "admin", o) : 0;
}

static int role_ok(const char *role)
{
    return !role || !strcmp(role, "admin") || !strcmp(role, "member");
}

static int cmd_create_org(admin_call *c)
{
    /* With --user-email, onboarding a tenant is one command: the org, its
     * first user and that user's API key. */
    const char *email = val(c, "user-email"), *role = val(c, "role");
    if (role && !email)
        return cli_usage_error(c->name, "--role needs --user-email");
    if (!role_ok(role))
        return cli_usage_error(c->name, "--role must be admin or member, not '%s'", role);
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    store_org org;
    if (store_org_create(st, val(c, "name"), &org) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", org.id);
    if (email && new_user(st, org.id, email, role, 1, o, "user_id") < 0) {
        cJSON_Delete(o);
        /* the org stays: say so, so that a retry does not make a second one */
        return failed(c, "organization %s was created, its user or API key was not: %s", org.id,
                      store_errmsg(st));
    }
    return print_json(o);
}

static cJSON *org_json(const store_org *org)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", org->id);
    cJSON_AddStringToObject(o, "name", org->name);
    cJSON_AddStringToObject(o, "created_by", org->created_by);
    cJSON_AddNumberToObject(o, "created_at", (double)org->created_at);
    return o;
}

static int cmd_list_orgs(admin_call *c)
{
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    store_org *orgs = NULL;
    size_t n = 0;
    if (store_org_list(st, &orgs, &n) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++)
        rc = print_json(org_json(&orgs[i]));
    free(orgs);
    return rc;
}

static int cmd_delete_org(admin_call *c)
{
    const char *id = val(c, "id");
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    int r = store_org_delete(st, id);
    if (r == STORE_NOT_FOUND)
        return failed(c, "no such organization: %s", id);
    if (r != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddBoolToObject(o, "deleted", 1);
    return print_json(o);
}

/* ---- users --------------------------------------------------------------------------------- */

static int cmd_create_user(admin_call *c)
{
    const char *org = val(c, "org"), *email = val(c, "email"), *role = val(c, "role");
    if (!role_ok(role))
        return cli_usage_error(c->name, "--role must be admin or member, not '%s'", role);
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    store_org og;
    int r = store_org_get(st, org, &og);
    if (r == STORE_NOT_FOUND)
        return failed(c, "no such organization: %s", org);
    cJSON *o = cJSON_CreateObject();
    if (r != STORE_OK || new_user(st, org, email, role, val(c, "with-key") != NULL, o, "id") < 0) {
        int made = cJSON_GetObjectItem(o, "id") != NULL;
        char id[80];
        snprintf(id, sizeof(id), "%s", made ? cJSON_GetObjectItem(o, "id")->valuestring : "");
        cJSON_Delete(o);
        if (made)
            return failed(c, "user %s was created, its API key was not: %s", id, store_errmsg(st));
        return failed(c, "%s", store_errmsg(st));
    }
    return print_json(o);
}

static int cmd_add_member(admin_call *c)
{
    /* Ahead of the backend's first call for that user: lets its kubectl
     * tool reach the org's clusters before the user opened any page. */
    const char *org = val(c, "org"), *user = val(c, "user");
    if (!auth_id_valid(org) || !auth_id_valid(user))
        return cli_usage_error(c->name, "ids are 1-64 characters from A-Z a-z 0-9 . _ - @");
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    int created = 0;
    if (store_identity_provision(st, org, user, "admin", &created) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "org_id", org);
    cJSON_AddStringToObject(o, "user_id", user);
    cJSON_AddBoolToObject(o, "org_created", (created & STORE_PROVISIONED_ORG) != 0);
    cJSON_AddBoolToObject(o, "member_created", (created & STORE_PROVISIONED_MEMBER) != 0);
    return print_json(o);
}

static int cmd_list_users(admin_call *c)
{
    const char *org = val(c, "org");
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    store_org og;
    int r = store_org_get(st, org, &og);
    if (r == STORE_NOT_FOUND)
        return failed(c, "no such organization: %s", org);
    store_member *m = NULL;
    size_t n = 0;
    if (r != STORE_OK || store_member_list(st, org, &m, &n) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++) {
        /* An account made here has a users row (email, role); an id the
         * trusted backend named is a member only. */
        store_user u;
        int ur = store_user_get(st, org, m[i].user_id, &u);
        if (ur != STORE_OK && ur != STORE_NOT_FOUND) {
            rc = failed(c, "%s", store_errmsg(st));
            break;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", m[i].user_id);
        cJSON_AddStringToObject(o, "org_id", m[i].org_id);
        if (ur == STORE_OK) {
            cJSON_AddStringToObject(o, "email", u.email);
            cJSON_AddStringToObject(o, "role", u.role);
        } else {
            cJSON_AddNullToObject(o, "email");
            cJSON_AddNullToObject(o, "role");
        }
        cJSON_AddStringToObject(o, "created_by", m[i].created_by);
        cJSON_AddNumberToObject(o, "created_at", (double)m[i].created_at);
        rc = print_json(o);
    }
    free(m);
    return rc;
}

static int cmd_remove_user(admin_call *c)
{
    const char *org = val(c, "org"), *user = val(c, "user");
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    int keys = 0;
    int r = store_user_remove(st, org, user, &keys);
    if (r == STORE_NOT_FOUND)
        return failed(c, "no such user in organization %s: %s", org, user);
    if (r != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "org_id", org);
    cJSON_AddStringToObject(o, "user_id", user);
    cJSON_AddBoolToObject(o, "removed", 1);
    cJSON_AddNumberToObject(o, "api_keys_deleted", keys);
    return print_json(o);
}

/* ---- API keys ------------------------------------------------------------------------------ */

static int cmd_create_key(admin_call *c)
{
    const char *org = val(c, "org"), *user = val(c, "user"), *name = val(c, "name");
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    store_user u;
    int r = store_user_get(st, org, user, &u);
    if (r == STORE_NOT_FOUND)
        return failed(c, "no such user in organization %s: %s", org, user);
    cJSON *o = cJSON_CreateObject();
    if (r != STORE_OK || new_key(st, org, user, name ? name : "admin", o) < 0) {
        cJSON_Delete(o);
        return failed(c, "%s", store_errmsg(st));
    }
    /* "id"/"key": the names this command printed first, kept for scripts. */
    cJSON_AddStringToObject(o, "id", cJSON_GetObjectItem(o, "key_id")->valuestring);
    cJSON_AddStringToObject(o, "key", cJSON_GetObjectItem(o, "api_key")->valuestring);
    return print_json(o);
}

static cJSON *key_json(const store_api_key *k)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", k->id);
    cJSON_AddStringToObject(o, "org_id", k->org_id);
    cJSON_AddStringToObject(o, "user_id", k->user_id);
    cJSON_AddStringToObject(o, "name", k->name);
    cJSON_AddStringToObject(o, "preview", k->preview);
    cJSON_AddNumberToObject(o, "created_at", (double)k->created_at);
    add_time(o, "revoked_at", k->revoked_at);
    return o;
}

static int cmd_list_keys(admin_call *c)
{
    const char *org = val(c, "org");
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    store_org og;
    int r = org ? store_org_get(st, org, &og) : STORE_OK;
    if (r == STORE_NOT_FOUND)
        return failed(c, "no such organization: %s", org);
    store_api_key *keys = NULL;
    size_t n = 0;
    if (r != STORE_OK || store_api_key_list(st, org, &keys, &n) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++)
        rc = print_json(key_json(&keys[i]));
    free(keys);
    return rc;
}

static int cmd_revoke_key(admin_call *c)
{
    const char *id = val(c, "id");
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    store_api_key k;
    int r = store_api_key_get(st, id, &k);
    if (r == STORE_NOT_FOUND)
        return failed(c, "no such API key: %s", id);
    if (r == STORE_OK)
        r = store_api_key_revoke(st, k.org_id, k.id, (int64_t)time(NULL));
    if (r == STORE_OK)
        r = store_api_key_get(st, id, &k); /* the time it was first revoked */
    if (r != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    return print_json(key_json(&k));
}

/* ---- agent tokens -------------------------------------------------------------------------- */

/* Records agent token tok (well formed) for --org/--user/--cluster-name
 * [--expires-days]; prints it back only when print_token (a new one). */
static int save_agent_token(admin_call *c, char tok[AGENT_TOKEN_LEN + 1], int print_token)
{
    const char *org = val(c, "org"), *user = val(c, "user");
    const char *name = val(c, "cluster-name"), *days = val(c, "expires-days");
    char *end = NULL;
    long long ndays = days ? strtoll(days, &end, 10) : 0;
    if (days && (*end || ndays < 1 || ndays > 3650))
        return cli_usage_error(c->name,
                               "--expires-days must be a whole number from 1 to 3650, not '%s'",
                               days);
    /* The API's rule for the name (api_tokens.c), not a silent cut at the
     * column's size: it is shown in the console and the connections list. */
    char why[128];
    if (api_check_chars(name, "--cluster-name", 1, 100, why, sizeof(why)) < 0)
        return cli_usage_error(c->name, "%s", why);
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    store_user u;
    int r = store_user_get(st, org, user, &u);
    if (r == STORE_NOT_FOUND)
        return failed(c, "no such user in organization %s: %s", org, user);
    if (r != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    char hash[65];
    store_agent_token t;
    memset(&t, 0, sizeof(t));
    token_hash(tok, hash);
    snprintf(t.org_id, sizeof(t.org_id), "%s", org);
    snprintf(t.created_by, sizeof(t.created_by), "%s", user);
    token_cluster_id(tok, t.cluster_id);
    snprintf(t.cluster_name, sizeof(t.cluster_name), "%s", name);
    token_preview(tok, t.preview);
    t.expires_at = days ? (int64_t)time(NULL) + (int64_t)ndays * 86400 : 0;
    if (store_agent_token_create(st, &t, hash) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    cJSON *o = cJSON_CreateObject();
    if (print_token)
        cJSON_AddStringToObject(o, "token", tok);
    cJSON_AddStringToObject(o, "token_id", t.id);
    cJSON_AddStringToObject(o, "cluster_id", t.cluster_id);
    if (!print_token)
        cJSON_AddBoolToObject(o, "imported", 1);
    return print_json(o);
}

static int cmd_create_agent_token(admin_call *c)
{
    char tok[AGENT_TOKEN_LEN + 1];
    if (token_new_agent(tok) < 0)
        return failed(c, "random number generator failed");
    int rc = save_agent_token(c, tok, 1);
    secret_wipe(tok, sizeof(tok));
    return rc;
}

/* A token the existing service issued, which an agent already deployed
 * holds: read from stdin (never the command line, where ps shows it),
 * kept as its hash like one made here.  The agent then connects unchanged
 * (DESIGN.md: deployed agents keep working against this server). */
static int cmd_import_agent_token(admin_call *c)
{
    /* A terminal echoes the token as it is typed or pasted, and the read
     * below waits for an end of file nobody knows to send: not read. */
    if (isatty(STDIN_FILENO))
        return failed(c, "stdin is a terminal: give the token on a pipe or from a file "
                         "(< TOKEN_FILE), not typed (a terminal echoes it)");
    char line[AGENT_TOKEN_LEN + 64];
    size_t n = fread(line, 1, sizeof(line) - 1, stdin);
    line[n] = '\0';
    /* more than one token's room: not one token (a second one, or a file
     * given by mistake), refused rather than read in part; nor a NUL, which
     * would hide what follows it from the check below */
    int more = n == sizeof(line) - 1 && fgetc(stdin) != EOF;
    int nul = memchr(line, '\0', n) != NULL;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
        line[--n] = '\0';
    int rc;
    if (more || nul || !token_agent_well_formed(line)) {
        rc = failed(c, "stdin must hold one agent token: aurora_kubectl_ and 64 URL-safe "
                       "characters (%s%zu bytes read%s)", more ? "more than " : "", n,
                    nul ? ", a NUL among them" : "");
    } else {
        char tok[AGENT_TOKEN_LEN + 1];
        memcpy(tok, line, AGENT_TOKEN_LEN + 1);
        rc = save_agent_token(c, tok, 0);
        secret_wipe(tok, sizeof(tok));
    }
    secret_wipe(line, sizeof(line));
    return rc;
}

static int cmd_expire_token(admin_call *c)
{
    const char *id = val(c, "id");
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    int r = store_agent_token_set_expiry(st, id, (int64_t)time(NULL) - 1);
    if (r == STORE_NOT_FOUND)
        return failed(c, "no such agent token: %s", id);
    if (r != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddBoolToObject(o, "expired", 1);
    return print_json(o);
}

/* ---- redact passes ------------------------------------------------------------------------ */

/* After a redact pass over `table`, where the old values still are.
 * SQLite: whether the old page versions left the WAL; when a reader of
 * another process held it, the operator is told to run the command again
 * (which then finds nothing to rewrite, and truncates).  PostgreSQL: its
 * dead row versions keep them until VACUUM reuses their space, without
 * zeroing it; --vacuum-full rewrites the table's files (store_vacuum_full).
 * Returns the exit status. */
static int finish_scrub(admin_call *c, cJSON *o, const char *table, int64_t redacted)
{
    store_t *st = c->st;
    if (!store_keeps_dead_rows(st)) {
        int done = store_scrub_end(st);
        cJSON_AddBoolToObject(o, "wal_truncated", done == 1);
        if (done != 1)
            fprintf(stderr, "%s: the WAL still holds the old values (%s): run the command again "
                            "when the server is less busy\n",
                    c->name, done < 0 ? store_errmsg(st) : "a reader kept it");
        return print_json(o);
    }
    int vacuum = val(c, "vacuum-full") != NULL;
    if (vacuum && store_vacuum_full(st, table) != STORE_OK) {
        char why[600];
        snprintf(why, sizeof(why), "%s", store_errmsg(st));
        cJSON_Delete(o);
        return failed(c, "the rows are rewritten (%lld this run), but VACUUM FULL of %s failed: "
                         "%s; run again (with a longer AURORA_DB_STATEMENT_TIMEOUT_MS for a "
                         "large table)",
                      (long long)redacted, table, why);
    }
    cJSON_AddBoolToObject(o, "vacuumed", vacuum);
    if (!vacuum && redacted > 0)
        fprintf(stderr, "%s: PostgreSQL keeps the old values in dead row versions until VACUUM "
                        "reuses their space; run again with --vacuum-full to rewrite %s's files "
                        "(it locks the table meanwhile)\n",
                c->name, table);
    return print_json(o);
}

#define VACUUM_FULL_HELP                                                                       \
    "On PostgreSQL the old values stay in dead row versions until VACUUM reuses\n"              \
    "their space, and the answer has \"vacuumed\" instead of \"wal_truncated\":\n"              \
    "--vacuum-full then rewrites the table's files (VACUUM FULL), so they leave\n"             \
    "them; it locks the table meanwhile (commands or deliveries wait for it) and\n"            \
    "must finish within AURORA_DB_STATEMENT_TIMEOUT_MS (raise it for this run).\n"

/* ---- the audit log ------------------------------------------------------------------------- */

/* Rows written before the argv redaction existed keep what was typed: this
 * rewrites them with today's rule (argv_redact.h).  Safe to run again:
 * a row already redacted is left as it is. */
static int cmd_redact_audit(admin_call *c)
{
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    int64_t seen = 0, changed = 0;
    if (store_scrub_begin(st) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    if (store_audit_rewrite_argv(st, argv_redact_stored, 500, &seen, &changed) != STORE_OK) {
        char why[600];
        snprintf(why, sizeof(why), "%s", store_errmsg(st));
        store_scrub_end(st); /* what was rewritten leaves the WAL too */
        return failed(c, "%s (%lld rows read, %lld redacted before it)", why, (long long)seen,
                      (long long)changed);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rows", (double)seen);
    cJSON_AddNumberToObject(o, "redacted", (double)changed);
    return finish_scrub(c, o, "audit_log", changed);
}

/* ---- webhook deliveries --------------------------------------------------------------------- */

typedef struct {
    store_t *st;
    cJSON *per_connector;
    int64_t rows, redacted;
    char err[600]; /* the first failure; the pass stops there */
} redact_pass;

static void redact_connector(const kit_webhook_spec *spec, void *arg)
{
    redact_pass *p = arg;
    if (p->err[0] || !spec->secret_fields || !spec->secret_fields[0])
        return;
    int64_t seen = 0, changed = 0;
    int rc = kit_webhook_redact_stored(p->st, spec, &seen, &changed);
    p->rows += seen;
    p->redacted += changed;
    if (rc != STORE_OK) {
        snprintf(p->err, sizeof(p->err), "%s: %s", spec->connector, store_errmsg(p->st));
        return;
    }
    cJSON *o = cJSON_AddObjectToObject(p->per_connector, spec->connector);
    cJSON_AddNumberToObject(o, "rows", (double)seen);
    cJSON_AddNumberToObject(o, "redacted", (double)changed);
}

/* Deliveries stored before their connector removed a credential its
 * provider puts in every body (Slack's verification token, Sentry's grant
 * code: kit_webhook_spec.secret_fields) still hold it, and the event read
 * APIs hand it to the organization's members.  This rewrites them as they
 * are stored today.  Safe to run again, and beside a serving server. */
static int cmd_redact_webhooks(admin_call *c)
{
    modules_register_all(); /* the connectors' specs name the fields */
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    if (store_scrub_begin(st) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    redact_pass p = { .st = st, .per_connector = cJSON_CreateObject() };
    kit_webhook_foreach(redact_connector, &p);
    if (p.err[0]) {
        store_scrub_end(st); /* what was rewritten leaves the WAL too */
        cJSON_Delete(p.per_connector);
        return failed(c, "%s (%lld rows read, %lld redacted before it)", p.err, (long long)p.rows,
                      (long long)p.redacted);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rows", (double)p.rows);
    cJSON_AddNumberToObject(o, "redacted", (double)p.redacted);
    cJSON_AddItemToObject(o, "connectors", p.per_connector);
    return finish_scrub(c, o, "webhook_deliveries", p.redacted);
}

static int audit_time(admin_call *c, const char *opt, int64_t *out);

typedef struct {
    const char *want;
    int found;
    char names[256]; /* the connectors that take webhooks, for the message */
} spec_find;

static void find_spec(const kit_webhook_spec *spec, void *arg)
{
    spec_find *f = arg;
    if (!strcmp(spec->connector, f->want))
        f->found = 1;
    size_t n = strlen(f->names);
    snprintf(f->names + n, sizeof(f->names) - n, "%s%s", n ? ", " : "", spec->connector);
}

/* Deliveries that failed (their attempts spent over the retry window, e.g.
 * during a long provider outage) are put back: attempts 0, due at once;
 * the server's next sweep processes them.  Safe beside a serving server. */
static int cmd_webhooks_retry(admin_call *c)
{
    int64_t since = 0;
    if (audit_time(c, "since", &since) < 0)
        return CLI_EXIT_USAGE;
    modules_register_all(); /* the connectors' specs: which ones take webhooks */
    spec_find f = { .want = val(c, "connector") };
    kit_webhook_foreach(find_spec, &f);
    if (!f.found)
        return cli_usage_error(c->name, "--connector must be one of %s, not '%s'", f.names,
                               f.want);
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    int64_t n = 0;
    if (store_webhook_retry_failed(st, f.want, since, &n) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "connector", f.want);
    cJSON_AddNumberToObject(o, "retried", (double)n);
    return print_json(o);
}

/* RFC 3339 or Unix seconds, as GET /api/audit takes them. */
static int audit_time(admin_call *c, const char *opt, int64_t *out)
{
    const char *v = val(c, opt);
    if (!v)
        return 0;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (*v && *end == '\0' && n >= 0) {
        *out = n;
        return 0;
    }
    if (time_parse_rfc3339(v, out) == 0 && *out >= 0)
        return 0;
    cli_usage_error(c->name, "--%s must be an RFC 3339 time or Unix seconds, not '%s'", opt, v);
    return -1;
}

/* The same filters and page as GET /api/audit; without --org, every
 * organization (an operator's view).  One JSON object: entries and
 * next_cursor, to pass back as --cursor. */
static int cmd_audit(admin_call *c)
{
    store_audit_filter f;
    memset(&f, 0, sizeof(f));
    f.org_id = val(c, "org");
    f.cluster_id = val(c, "cluster-id");
    f.user_id = val(c, "user-id");
    f.outcome = val(c, "outcome");
    if (audit_time(c, "since", &f.since) < 0 || audit_time(c, "until", &f.until) < 0)
        return CLI_EXIT_USAGE;
    if (f.since && f.until && f.until < f.since)
        return cli_usage_error(c->name, "--until must not be before --since");
    int limit = 100;
    const char *lim = val(c, "limit");
    if (lim) {
        char *end = NULL;
        long n = strtol(lim, &end, 10);
        if (!*lim || *end || n < 1 || n > 500)
            return cli_usage_error(c->name, "--limit must be a whole number from 1 to 500, not '%s'",
                                   lim);
        limit = (int)n;
    }
    const char *cur = val(c, "cursor");
    if (cur) {
        long long at = -1, id = -1;
        char tail;
        if (sscanf(cur, "%lld.%lld%c", &at, &id, &tail) != 2 || at < 0 || id < 0)
            return cli_usage_error(c->name, "--cursor must be a next_cursor this command printed");
        f.before_at = at;
        f.before_id = id;
    }
    store_t *st = admin_store(c);
    if (!st)
        return c->rc;
    f.limit = limit + 1; /* one more: is there a next page? */
    store_audit *rows = NULL;
    size_t n = 0;
    if (store_audit_query(st, &f, &rows, &n) != STORE_OK)
        return failed(c, "%s", store_errmsg(st));
    cJSON *page = api_audit_page(rows, n, limit);
    /* Across organizations, each entry says whose it is. */
    cJSON *arr = cJSON_GetObjectItem(page, "entries");
    for (int i = 0; i < cJSON_GetArraySize(arr) && (size_t)i < n; i++)
        cJSON_AddStringToObject(cJSON_GetArrayItem(arr, i), "org_id", rows[i].org_id);
    store_audit_list_free(rows, n);
    return print_json(page);
}

/* ---- the route table ----------------------------------------------------------------------- */

typedef struct {
    int rc;
} route_print;

static void print_route(http_method m, const char *pattern, route_auth auth, void *arg)
{
    route_print *p = arg;
    if (p->rc)
        return;
    static const char *const auth_names[] = { "public", "api", "internal" };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", http_method_name(m));
    cJSON_AddStringToObject(o, "pattern", pattern);
    cJSON_AddStringToObject(o, "auth", (unsigned)auth < 3 ? auth_names[auth] : "unknown");
    p->rc = print_json(o);
}

/* The modules' registration only fills the in-memory table (no settings,
 * store or network), so this needs nothing else. */
static int cmd_routes(admin_call *c)
{
    (void)c;
    modules_register_all();
    route_print p = { CLI_EXIT_OK };
    router_foreach(print_route, &p);
    return p.rc;
}

/* ---- the table ----------------------------------------------------------------------------- */

static const admin_cmd commands[] = {
    { "bootstrap", "[--org-name N] [--email E]", "first org, admin user and API key (once)",
      "Creates the first organization, its admin user and an API key; when an\n"
      "organization exists already, prints its id and \"already_bootstrapped\": true.\n",
      cmd_bootstrap, { { "org-name", 1, 0 }, { "email", 1, 0 } } },
    { "create-org", "--name N [--user-email E [--role admin|member]]", "a new organization",
      "With --user-email, also its first user (role member unless --role says\n"
      "admin) and an API key acting as that user: prints id, user_id, key_id and\n"
      "api_key.\n",
      cmd_create_org, { { "name", 1, 1 }, { "user-email", 1, 0 }, { "role", 1, 0 } } },
    { "list-orgs", "", "every organization, oldest first (one JSON object a line)", NULL,
      cmd_list_orgs, { { NULL, 0, 0 } } },
    { "delete-org", "--id ORG_ID", "delete an organization that holds nothing but accounts",
      "Deletes the organization with its users, memberships, API keys, settings,\n"
      "pending OAuth states and console sessions.  Refused while it has clusters\n"
      "(agent tokens, even revoked ones) or any other data (connectors, incidents,\n"
      "webhook deliveries, audit rows, GitHub installations): those keep their\n"
      "history.  The trusted backend provisions an organization again when it\n"
      "names it again (without the old one's sessions).\n",
      cmd_delete_org, { { "id", 1, 1 } } },
    { "create-user", "--org ORG_ID --email E [--role admin|member] [--with-key]",
      "a user who can hold API keys",
      "With --with-key, also an API key acting as the new user: prints id, key_id\n"
      "and api_key.\n",
      cmd_create_user,
      { { "org", 1, 1 }, { "email", 1, 1 }, { "role", 1, 0 }, { "with-key", 0, 0 } } },
    { "add-member", "--org ORG_ID --user USER_ID",
      "record a user id the trusted backend names (org created if missing)", NULL, cmd_add_member,
      { { "org", 1, 1 }, { "user", 1, 1 } } },
    { "list-users", "--org ORG_ID", "the organization's members (one JSON object a line)",
      "Accounts made with create-user carry their email and role; ids the trusted\n"
      "backend named have none (null).\n",
      cmd_list_users, { { "org", 1, 1 } } },
    { "remove-user", "--org ORG_ID --user USER_ID", "remove a user and delete its API keys",
      "Deletes the user's membership, its account, its API keys (the next call\n"
      "with one of them is answered 401), its console sessions and its pending\n"
      "OAuth states.  Refused while the user has connectors (their credentials\n"
      "are in the secrets backend: disconnect them first).  A user the trusted\n"
      "backend names is provisioned again on its next request.\n",
      cmd_remove_user, { { "org", 1, 1 }, { "user", 1, 1 } } },
    { "create-key", "--org ORG_ID --user USER_ID [--name N]", "an API key acting as that user",
      NULL, cmd_create_key, { { "org", 1, 1 }, { "user", 1, 1 }, { "name", 1, 0 } } },
    { "list-keys", "[--org ORG_ID]", "API keys (never the key itself), oldest first",
      "One JSON object a line: id, org_id, user_id, name, preview, created_at and\n"
      "revoked_at (null while the key works).\n",
      cmd_list_keys, { { "org", 1, 0 } } },
    { "revoke-key", "--id KEY_ID", "revoke an API key (the next call with it is 401)",
      "Its console sessions end, and the OAuth flows they started and did not\n"
      "finish are deleted.  Revoking a revoked key again succeeds and keeps the\n"
      "first revocation time.\n",
      cmd_revoke_key, { { "id", 1, 1 } } },
    { "create-agent-token", "--org ORG_ID --user USER_ID --cluster-name N [--expires-days D]",
      "a token for an agent (a new cluster)", NULL, cmd_create_agent_token,
      { { "org", 1, 1 }, { "user", 1, 1 }, { "cluster-name", 1, 1 }, { "expires-days", 1, 0 } } },
    { "import-agent-token",
      "--org ORG_ID --user USER_ID --cluster-name N [--expires-days D] < TOKEN",
      "record a token an agent already holds (the existing service's)",
      "Reads the token (aurora_kubectl_ and 64 URL-safe characters) from stdin, a\n"
      "pipe or a file (a terminal, which would echo it, is refused), so it never\n"
      "goes on a command line, and keeps only its SHA-256, as for a token made\n"
      "here.  An agent already deployed with it then connects unchanged, as cluster\n"
      "cluster-<first 16 hex characters of SHA-256(token)>.  A token this server\n"
      "already knows is refused.  The token is not printed.\n",
      cmd_import_agent_token,
      { { "org", 1, 1 }, { "user", 1, 1 }, { "cluster-name", 1, 1 }, { "expires-days", 1, 0 } } },
    { "expire-token", "--id TOKEN_ID", "mark an agent token expired now",
      "The agent using it is refused at its next connection with \"token expired\" (a\n"
      "session already open is not cut: revoke the token through the API for that).\n"
      "Works in any organization, without an API key for it.\n",
      cmd_expire_token, { { "id", 1, 1 } } },
    { "audit",
      "[--org ORG_ID] [--cluster-id C] [--user-id U] [--outcome O] [--since T] [--until T] "
      "[--limit N] [--cursor C]",
      "the command audit log, newest first (GET /api/audit's filters)",
      "Prints {\"entries\": [...], \"next_cursor\": ...}; pass next_cursor back as --cursor\n"
      "for the next page.  Without --org, every organization (each entry has its\n"
      "org_id).  Times are RFC 3339 or Unix seconds; --until is exclusive; --limit\n"
      "1 to 500 (100).  AURORA_AUDIT_RETENTION_DAYS decides how far back rows go.\n",
      cmd_audit,
      { { "org", 1, 0 }, { "cluster-id", 1, 0 }, { "user-id", 1, 0 }, { "outcome", 1, 0 },
        { "since", 1, 0 }, { "until", 1, 0 }, { "limit", 1, 0 }, { "cursor", 1, 0 } } },
    { "redact-audit", "[--vacuum-full]", "redact credentials typed into commands of older audit rows",
      "Rewrites every audit row's argv with the rule rows are written with now:\n"
      "the value of a flag that carries a credential (--token, --password, az's -p,\n"
      "...) becomes [REDACTED].  Rows written before that rule existed keep what was\n"
      "typed until this runs; run it once after upgrading (again is harmless).\n"
      "Prints {\"rows\": read, \"redacted\": rewritten, \"wal_truncated\": false when\n"
      "a reader kept the old values in SQLite's WAL}.\n" VACUUM_FULL_HELP,
      cmd_redact_audit, { { "vacuum-full", 0, 0 } } },
    { "redact-webhooks", "[--vacuum-full]", "remove provider credentials from older webhook deliveries",
      "Rewrites every stored delivery of a connector whose provider puts a\n"
      "credential in its bodies (Slack's and Google Chat's verification token,\n"
      "Sentry's installation grant code) without it, as new ones are stored.\n"
      "Deliveries stored before that rule existed keep it until this runs; run it\n"
      "once after upgrading (again is harmless).  Prints {\"rows\": read,\n"
      "\"redacted\": rewritten, \"connectors\": {id: {rows, redacted}},\n"
      "\"wal_truncated\": false when a reader kept the old values in SQLite's WAL}.\n"
      VACUUM_FULL_HELP,
      cmd_redact_webhooks, { { "vacuum-full", 0, 0 } } },
    { "webhooks-retry", "--connector C [--since T]",
      "put a connector's failed webhook deliveries back for processing",
      "A delivery whose processing failed is retried with a backoff (30 s, 2 min,\n"
      "8 min, ... at most 2 h apart, 8 attempts over ~7 hours) and then left\n"
      "\"failed\".  This gives every failed delivery of the connector received at\n"
      "or after --since (RFC 3339 or Unix seconds; default: all) its attempts back;\n"
      "the server's next sweep (within 30 s) processes them.  Safe beside a serving\n"
      "server and to run again.  Prints {\"connector\", \"retried\": rows put back}.\n",
      cmd_webhooks_retry, { { "connector", 1, 1 }, { "since", 1, 0 } } },
    { "routes", "", "the server's route table (one JSON object a line)",
      "Each line: {\"method\", \"pattern\", \"auth\"} with auth public, api (API key or\n"
      "internal secret) or internal (internal secret only).  Reads no settings.\n",
      cmd_routes, { { NULL, 0, 0 } } },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

void admin_usage(FILE *f)
{
    fprintf(f, "Admin commands (same environment as the server; JSON on stdout):\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const admin_cmd *c = &commands[i];
        fprintf(f, "  admin %s%s%s\n      %s\n", c->name, *c->synopsis ? " " : "", c->synopsis,
                c->summary);
    }
}

static void command_usage(FILE *f, const admin_cmd *c)
{
    fprintf(f, "Usage: aurora-server admin %s%s%s\n\n%c%s.\n", c->name, *c->synopsis ? " " : "",
            c->synopsis, toupper((unsigned char)c->summary[0]), c->summary + 1);
    if (c->details)
        fprintf(f, "\n%s", c->details);
    if (c->run != cmd_routes)
        fprintf(f, "\nUses the server's settings (environment, AURORA_CONFIG) to reach the store.\n");
}

int admin_main(const server_config *cfg, int argc, char **argv)
{
    static const char self[] = "aurora-server admin";
    int head = cli_group_head(self, argc, argv, admin_usage);
    if (head != CLI_GO_ON)
        return head;
    const char *name = argv[0];
    const admin_cmd *cmd = NULL;
    for (size_t i = 0; i < N_COMMANDS && !cmd; i++)
        if (!strcmp(commands[i].name, name))
            cmd = &commands[i];
    if (!cmd)
        return cli_unknown_command(self, name);
    admin_call c;
    memset(&c, 0, sizeof(c));
    c.cmd = cmd;
    c.given = cfg;
    snprintf(c.name, sizeof(c.name), "%s %s", self, cmd->name);
    char *pos[1];
    size_t npos = 0;
    int p = cli_parse(c.name, argc, argv, cmd->opts, count_opts(cmd), c.values, pos, 0, &npos);
    if (p == CLI_HELP) {
        command_usage(stdout, cmd);
        return CLI_EXIT_OK;
    }
    if (p == CLI_BAD)
        return CLI_EXIT_USAGE;
    int rc = cmd->run(&c);
    if (c.st)
        store_close(c.st);
    if (c.cfg)
        cli_config_done(c.given, &c.own);
    return rc;
}
