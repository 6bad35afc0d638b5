/* connector.h — the one small interface every connector (GCP, AWS, Azure,
 * OVH, later GitHub, Slack, …) implements.  A connector is one file; it is
 * listed once in server/connectors/connectors.c.  Connectors reach the outside world
 * only through http_client.h, the store, the secrets backend and the router:
 * never libwebsockets or SQL directly.  What they have in common is the
 * connector kit beside them: kit_oauth.h (OAuth 2.0 authorization code,
 * PKCE, refresh, revocation, error codes), kit_secrets.h (credentials in the
 * secrets backend, references in the row, status), kit_cache.h (short-lived
 * provider credentials); their settings are declared in connector.settings. */
#ifndef AURORA_CONNECTOR_H
#define AURORA_CONNECTOR_H

#include "argv.h"
#include "cloud_argv.h"
#include "config.h"
#include "http.h"
#include "worker.h"

struct cJSON;

/* A provider call's time limit when neither AURORA_PROVIDER_TIMEOUT_MS nor
 * the connector's own default (connector.timeout_ms) says otherwise. */
#define CONNECTOR_TIMEOUT_MS 15000

#define CLOUD_MAX_ENV 16
#define CLOUD_MAX_ENV_NAME 128        /* [A-Z0-9_], not starting with a digit */
#define CLOUD_MAX_ENV_VALUE (8 * 1024) /* the wire protocol's limit per value */

/* Short-lived credentials for one cloud command, handed to the agent as that
 * command's environment.  Values are secrets: cloud_creds_clear wipes them. */
typedef struct {
    char *env[CLOUD_MAX_ENV]; /* "NAME=value", malloc'd */
    int nenv;
    char target[256];         /* project / account / subscription acted on */
    int lifetime;             /* in: seconds the command may run (its timeout, set
                               * before prepare()): credentials should outlive it */
} cloud_creds;

/* 0, or -1 when the name is not [A-Z0-9_]+, the value is over
 * CLOUD_MAX_ENV_VALUE, the name is already set or the table is full. */
int cloud_creds_add(cloud_creds *c, const char *name, const char *value);
/* Adds every {name, value, …, NULL} pair (a NULL name ends the list, so an
 * optional last pair may be left out with a NULL name).  0, or -1 with out
 * cleared and a 500 INTERNAL in resp. */
int cloud_creds_set(cloud_creds *c, const char *const *pairs, http_response *resp);
/* Wipes and frees every value (call it on every path, success or not). */
void cloud_creds_clear(cloud_creds *c);
/* 1 if name is a valid environment variable name for a cloud command. */
int cloud_env_name_ok(const char *name);

typedef struct cloud_provider {
    const char *program; /* "gcloud", "aws", "az", "openstack" */
    /* What in the program's argv selects an account, project, subscription,
     * identity or endpoint (cloud_argv.h).  Required: api_cloud_exec scans
     * every command with it before prepare() and refuses what cannot be
     * checked (refused flags, repeats, abbreviations, @file). */
    const cloud_cli *argv_rules;
    /* Outbound worker.  Checks the request against the connector's own
     * policy (e.g. GCP_PROJECT_DISABLED) — the request's target and every
     * selector the scan found — resolves fresh credentials for the caller
     * and rewrites argv (argv excludes the program; e.g. --project is
     * injected).  `target` is the caller's project/account/subscription or
     * NULL.  Returns 0, or -1 with resp filled (status, error, error_code). */
    int (*prepare)(worker_ctx *w, const auth_ctx *who, const char *target,
                   const cloud_argv_result *scan, argv_t *argv, cloud_creds *out,
                   http_response *resp);
} cloud_provider;

typedef struct connector {
    const char *id;   /* stable: stored in the database, used in routes */
    const char *name; /* for people */
    void (*register_routes)(void);
    /* Adds what `who` has connected to `out` (an object), never a secret.
     * `out` is this connector's own object in GET /api/connectors/status
     * ({"connectors":{"<id>":{…}}}); it runs in the store pool, so it reads
     * the store only (no provider or secrets calls).  Set "connected"
     * (bool); when absent it is reported as false. */
    void (*status)(worker_ctx *w, const auth_ctx *who, struct cJSON *out);
    const cloud_provider *cloud; /* NULL: no cloud_exec */
    /* Optional: after DELETE /api/connectors/{id} removed the row and every
     * secret of the connection (e.g. drop cached tokens). */
    void (*disconnected)(worker_ctx *w, const auth_ctx *who);
    /* Optional: before that, while the row and its secrets are still there
     * (e.g. revoke an OAuth grant at the provider).  Best effort: it cannot
     * stop the disconnect. */
    void (*disconnecting)(worker_ctx *w, const auth_ctx *who, const store_connector *row);
    /* The connector's own settings, declared here and nowhere else: env
     * name, YAML key, type, one default, help, secret flag (and a range for
     * integers), ended by an entry whose env is NULL.  server_config.c loads
     * them after the server's own; `aurora-server --help` lists them. */
    const config_def *settings;
    /* Time limit of one call to this provider (ms) when
     * AURORA_PROVIDER_TIMEOUT_MS is unset; 0: CONNECTOR_TIMEOUT_MS. */
    long timeout_ms;
    /* Optional: checks the connector's settings once they are loaded (a
     * value config_def cannot judge, e.g. a key that must be one-line JSON).
     * -1 with err (one line naming the setting and the fix, never its
     * value) makes the server refuse to start. */
    int (*check_settings)(const config_t *cfg, char *err, size_t errlen);
    /* Optional: the setting that names the OAuth redirect URI this connector
     * sends to its provider.  GET /api/connectors/status shows its value as
     * "redirect_uri": what must be registered at the provider, which the
     * console cannot guess (the API may live on another host than the page). */
    const char *redirect_setting;
} connector;

/* The table, defined in connectors.c. */
const connector *connector_find(const char *id);
size_t connector_count(void);
const connector *connector_at(size_t i);
/* Registers GET /api/connectors/status, DELETE /api/connectors/{connector}
 * and every connector's routes (called from modules.c). */
void connectors_register(void);

/* The server's settings table followed by every connector's own, for
 * config_load (one array, built once; later calls return the same).  NULL
 * with err when two declare the same environment name or there are more
 * than the table holds. */
const config_def *connector_config_defs(const config_def *server, size_t nserver, size_t *n,
                                        char *err, size_t errlen);
/* The time limit of one call to c's provider (ms): AURORA_PROVIDER_TIMEOUT_MS
 * when set, else the connector's declared default. */
long connector_timeout_ms(const worker_ctx *w, const connector *c);

/* ---- helpers for connector handlers ---------------------------------------- */

/* -1 with a 400 in resp when the caller has no user (internal secret
 * without X-User-ID): connectors belong to a user. */
int connector_require_user(const auth_ctx *who, http_response *resp);
/* -1 with a 503 SECRETS_UNAVAILABLE when the server has no secrets backend. */
int connector_secrets_ready(worker_ctx *w, http_response *resp);
/* Logs err (it names backend, operation and path, never a value) and fills
 * resp with a 503 SECRETS_UNAVAILABLE that does not echo it. */
void connector_secrets_error(int rc, const char *err, http_response *resp);

#endif
