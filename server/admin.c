/* admin.c — operator subcommands; every one prints a JSON object on stdout. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "crypto.h"
#include "store.h"
#include "token.h"

void admin_usage(FILE *f)
{
    fprintf(f,
            "Admin subcommands (same environment as the server; each prints JSON):\n"
            "  admin bootstrap [--org-name N] [--email E]   first org, admin user and API key (once)\n"
            "  admin create-org --name N\n"
            "  admin create-user --org ORG_ID --email E [--role admin|member]\n"
            "  admin create-key --org ORG_ID --user USER_ID [--name N]\n"
            "  admin add-member --org ORG_ID --user USER_ID   record a user id the trusted backend\n"
            "                                               names (org created if missing)\n"
            "  admin create-agent-token --org ORG_ID --user USER_ID --cluster-name N [--expires-days D]\n"
            "  admin expire-token --id TOKEN_ID             mark an agent token expired now\n"
            "  admin expire-oauth-state --state STATE       make a pending OAuth state expire now\n");
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return NULL;
}

static int print_json(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return 1;
    printf("%s\n", s);
    free(s);
    return 0;
}

static int fail(const char *fmt, const char *arg)
{
    fprintf(stderr, "admin: ");
    fprintf(stderr, fmt, arg ? arg : "");
    fputc('\n', stderr);
    return 2;
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

int admin_main(const server_config *cfg, int argc, char **argv)
{
    if (argc < 1) {
        admin_usage(stderr);
        return 2;
    }
    const char *cmd = argv[0];
    store_t *st = NULL;
    char err[512];
    if (store_open(cfg->database_url, &st, err, sizeof(err)) != STORE_OK)
        return fail("cannot open the state store: %s", err);
    int rc = 0;
    cJSON *o = cJSON_CreateObject();

    if (!strcmp(cmd, "bootstrap")) {
        store_org org;
        int r = store_org_first(st, &org);
        if (r == STORE_OK) {
            cJSON_AddStringToObject(o, "org_id", org.id);
            cJSON_AddNullToObject(o, "user_id");
            cJSON_AddNullToObject(o, "api_key");
            cJSON_AddBoolToObject(o, "already_bootstrapped", 1);
        } else {
            const char *oname = opt(argc, argv, "--org-name");
            const char *email = opt(argc, argv, "--email");
            store_user u;
            if (store_org_create(st, oname ? oname : "default", &org) != STORE_OK ||
                store_user_create(st, org.id, email ? email : "admin@localhost", "admin", &u) !=
                    STORE_OK) {
                rc = fail("bootstrap failed: %s", store_errmsg(st));
                goto out;
            }
            cJSON_AddStringToObject(o, "org_id", org.id);
            cJSON_AddStringToObject(o, "user_id", u.id);
            if (new_key(st, org.id, u.id, "bootstrap", o) < 0) {
                rc = fail("creating the API key failed: %s", store_errmsg(st));
                goto out;
            }
        }
    } else if (!strcmp(cmd, "create-org")) {
        const char *name = opt(argc, argv, "--name");
        store_org org;
        if (!name)
            rc = fail("create-org needs --name%s", NULL);
        else if (store_org_create(st, name, &org) != STORE_OK)
            rc = fail("create-org failed: %s", store_errmsg(st));
        else
            cJSON_AddStringToObject(o, "id", org.id);
    } else if (!strcmp(cmd, "create-user")) {
        const char *org = opt(argc, argv, "--org"), *email = opt(argc, argv, "--email");
        const char *role = opt(argc, argv, "--role");
        store_org og;
        store_user u;
        if (!org || !email)
            rc = fail("create-user needs --org and --email%s", NULL);
        else if (role && strcmp(role, "admin") && strcmp(role, "member"))
            rc = fail("--role must be admin or member%s", NULL);
        else if (store_org_get(st, org, &og) != STORE_OK)
            rc = fail("no such organization: %s", org);
        else if (store_user_create(st, org, email, role ? role : "member", &u) != STORE_OK)
            rc = fail("create-user failed: %s", store_errmsg(st));
        else
            cJSON_AddStringToObject(o, "id", u.id);
    } else if (!strcmp(cmd, "add-member")) {
        /* Ahead of the backend's first call for that user: lets its kubectl
         * tool reach the org's clusters before the user opened any page. */
        const char *org = opt(argc, argv, "--org"), *user = opt(argc, argv, "--user");
        int created = 0;
        if (!org || !user)
            rc = fail("add-member needs --org and --user%s", NULL);
        else if (!auth_id_valid(org) || !auth_id_valid(user))
            rc = fail("ids are 1-64 characters from A-Z a-z 0-9 . _ - @%s", NULL);
        else if (store_identity_provision(st, org, user, "admin", &created) != STORE_OK)
            rc = fail("add-member failed: %s", store_errmsg(st));
        else {
            cJSON_AddStringToObject(o, "org_id", org);
            cJSON_AddStringToObject(o, "user_id", user);
            cJSON_AddBoolToObject(o, "org_created", (created & STORE_PROVISIONED_ORG) != 0);
            cJSON_AddBoolToObject(o, "member_created", (created & STORE_PROVISIONED_MEMBER) != 0);
        }
    } else if (!strcmp(cmd, "create-key")) {
        const char *org = opt(argc, argv, "--org"), *user = opt(argc, argv, "--user");
        const char *name = opt(argc, argv, "--name");
        store_user u;
        if (!org || !user)
            rc = fail("create-key needs --org and --user%s", NULL);
        else if (store_user_get(st, org, user, &u) != STORE_OK)
            rc = fail("no such user in that organization: %s", user);
        else if (new_key(st, org, user, name ? name : "admin", o) < 0)
            rc = fail("create-key failed: %s", store_errmsg(st));
        else
            cJSON_AddStringToObject(o, "id", cJSON_GetObjectItem(o, "key_id")->valuestring);
        if (!rc)
            cJSON_AddStringToObject(o, "key", cJSON_GetObjectItem(o, "api_key")->valuestring);
    } else if (!strcmp(cmd, "create-agent-token")) {
        const char *org = opt(argc, argv, "--org"), *user = opt(argc, argv, "--user");
        const char *name = opt(argc, argv, "--cluster-name");
        const char *days = opt(argc, argv, "--expires-days");
        store_user u;
        char *end = NULL;
        long long ndays = days ? strtoll(days, &end, 10) : 0;
        if (!org || !user || !name) {
            rc = fail("create-agent-token needs --org, --user and --cluster-name%s", NULL);
        } else if (days && (!*days || *end || ndays < 1 || ndays > 3650)) {
            rc = fail("--expires-days must be a whole number from 1 to 3650, not '%s'", days);
        } else if (store_user_get(st, org, user, &u) != STORE_OK) {
            rc = fail("no such user in that organization: %s", user);
        } else {
            char tok[AGENT_TOKEN_LEN + 1], hash[65];
            store_agent_token t;
            memset(&t, 0, sizeof(t));
            if (token_new_agent(tok) < 0) {
                rc = fail("random number generator failed%s", NULL);
                goto out;
            }
            token_hash(tok, hash);
            snprintf(t.org_id, sizeof(t.org_id), "%s", org);
            snprintf(t.created_by, sizeof(t.created_by), "%s", user);
            token_cluster_id(tok, t.cluster_id);
            snprintf(t.cluster_name, sizeof(t.cluster_name), "%s", name);
            token_preview(tok, t.preview);
            t.expires_at = days ? (int64_t)time(NULL) + (int64_t)ndays * 86400 : 0;
            if (store_agent_token_create(st, &t, hash) != STORE_OK) {
                rc = fail("create-agent-token failed: %s", store_errmsg(st));
                goto out;
            }
            cJSON_AddStringToObject(o, "token", tok);
            cJSON_AddStringToObject(o, "token_id", t.id);
            cJSON_AddStringToObject(o, "cluster_id", t.cluster_id);
            memset(tok, 0, sizeof(tok));
        }
    } else if (!strcmp(cmd, "expire-token")) {
        const char *id = opt(argc, argv, "--id");
        int r = id ? store_agent_token_set_expiry(st, id, (int64_t)time(NULL) - 1) : STORE_ERR;
        if (!id)
            rc = fail("expire-token needs --id%s", NULL);
        else if (r == STORE_NOT_FOUND)
            rc = fail("no such token: %s", id);
        else if (r != STORE_OK)
            rc = fail("expire-token failed: %s", store_errmsg(st));
        else
            cJSON_AddBoolToObject(o, "expired", 1);
    } else if (!strcmp(cmd, "expire-oauth-state")) {
        const char *state = opt(argc, argv, "--state");
        char hash[65];
        int r = STORE_ERR;
        if (state) {
            crypto_sha256_hex(state, strlen(state), hash);
            r = store_oauth_state_set_expiry(st, hash, (int64_t)time(NULL) - 1);
        }
        if (!state)
            rc = fail("expire-oauth-state needs --state%s", NULL);
        else if (r == STORE_NOT_FOUND)
            rc = fail("no such OAuth state%s", "");
        else if (r != STORE_OK)
            rc = fail("expire-oauth-state failed: %s", store_errmsg(st));
        else
            cJSON_AddBoolToObject(o, "expired", 1);
    } else {
        admin_usage(stderr);
        rc = 2;
    }
out:
    if (rc == 0)
        rc = print_json(o);
    else
        cJSON_Delete(o);
    store_close(st);
    return rc;
}
