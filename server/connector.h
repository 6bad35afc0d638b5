/* connector.h — the one small interface every connector (GCP, AWS, Azure,
 * OVH, later GitHub, Slack, …) implements.  A connector is one file; it is
 * listed once in server/connectors.c.  Connectors reach the outside world
 * only through http_client.h, the store, the secrets backend and the router:
 * never libwebsockets or SQL directly. */
#ifndef AURORA_CONNECTOR_H
#define AURORA_CONNECTOR_H

#include "argv.h"
#include "http.h"
#include "worker.h"

struct cJSON;

#define CLOUD_MAX_ENV 16

/* Short-lived credentials for one cloud command, handed to the agent as that
 * command's environment.  Values are secrets: cloud_creds_clear wipes them. */
typedef struct {
    char *env[CLOUD_MAX_ENV]; /* "NAME=value", malloc'd */
    int nenv;
    char target[256];         /* project / account / subscription acted on */
} cloud_creds;

int cloud_creds_add(cloud_creds *c, const char *name, const char *value);
void cloud_creds_clear(cloud_creds *c);

typedef struct cloud_provider {
    const char *program; /* "gcloud", "aws", "az", "openstack" */
    /* Outbound worker.  Checks the request against the connector's own
     * policy (e.g. GCP_PROJECT_DISABLED), resolves fresh credentials for the
     * caller and rewrites argv (argv excludes the program; e.g. --project is
     * injected).  `target` is the caller's project/account/subscription or
     * NULL.  Returns 0, or -1 with resp filled (status, error, error_code). */
    int (*prepare)(worker_ctx *w, const auth_ctx *who, const char *target, argv_t *argv,
                   cloud_creds *out, http_response *resp);
} cloud_provider;

typedef struct connector {
    const char *id;   /* stable: stored in the database, used in routes */
    const char *name; /* for people */
    void (*register_routes)(void);
    /* Adds what `who` has connected to `out` (an object), never a secret. */
    void (*status)(worker_ctx *w, const auth_ctx *who, struct cJSON *out);
    const cloud_provider *cloud; /* NULL: no cloud_exec */
} connector;

/* The table, defined in connectors.c. */
const connector *connector_find(const char *id);
size_t connector_count(void);
const connector *connector_at(size_t i);
void connectors_register(void);

#endif
