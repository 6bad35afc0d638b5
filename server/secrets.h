/* secrets.h — where connector credentials and system keys live.
 *
 * One interface over interchangeable backends, chosen by SECRETS_BACKEND:
 *   local                AES-256-GCM encrypted file store under AURORA_DATA_DIR
 *                        (the embedded default; secrets_local.c)
 *   vault                HashiCorp Vault KV v2 over HTTPS (secrets_vault.c)
 *   aws_secrets_manager  AWS Secrets Manager, SigV4-signed (secrets_aws.c)
 *
 * The state database never holds a secret value, only a reference (backend
 * and path, see secrets_ref()).  Values are bytes: a multi-line PEM comes
 * back byte-identical, binary values (NUL bytes, invalid UTF-8) round-trip
 * too.
 *
 * Paths are the connector guide's logical paths, identical in every backend:
 *   aurora/system/github-app/private-key, aurora/system/github-app/webhook-secret,
 *   aurora/orgs/<org id>/users/<user id>/<connector>/<field>   (secrets_user_path())
 * (before issue 10: aurora/users/<user id>/<connector>/<field>; rows written
 * then keep working, the database holding the reference to the full path)
 * Every path starts with "aurora/", is at most SECRETS_MAX_PATH bytes of
 * [A-Za-z0-9/_+=.@-] (the characters AWS allows in a secret name), has no
 * empty, "." or ".." segment and does not end in '/'.
 *
 * Errors: every function returns a SECRETS_* code and, unless OK, writes a
 * message to err that names the backend, the operation and the path — never
 * the value (a backend answer that quotes the value being written is
 * withheld).  A backend that is down answers SECRETS_E_UNAVAILABLE within
 * the configured timeout; opening a remote backend does no network I/O, so
 * the server starts and serves everything else while it is down.
 *
 * Thread safety: a secrets_t may be shared by threads (each backend
 * serializes what it must).
 */
#ifndef AURORA_SECRETS_H
#define AURORA_SECRETS_H

#include <stddef.h>

#include "err.h"

/* Largest value accepted by every backend: 64 KiB (AWS Secrets Manager's own
 * limit for a SecretString is 65536 bytes). */
#define SECRETS_MAX_VALUE (64 * 1024)
#define SECRETS_MAX_PATH 256
#define SECRETS_ROOT "aurora/"

#define SECRETS_PATH_GITHUB_APP_PRIVATE_KEY "aurora/system/github-app/private-key"
#define SECRETS_PATH_GITHUB_APP_WEBHOOK_SECRET "aurora/system/github-app/webhook-secret"
#define SECRETS_PATH_GITHUB_APP_CLIENT_SECRET "aurora/system/github-app/client-secret"

/* The shared codes (common/err.h) under this module's names. */
enum {
    SECRETS_OK = AUR_OK,
    SECRETS_NOT_FOUND = AUR_NOT_FOUND,
    SECRETS_E_INVALID = AUR_E_INVALID,         /* bad path, empty or oversized value, bad config */
    SECRETS_E_UNAVAILABLE = AUR_E_UNAVAILABLE, /* unreachable, timed out, 5xx, throttled, sealed */
    SECRETS_E_DENIED = AUR_E_DENIED,           /* authentication or authorization refused */
    SECRETS_E_INTEGRITY = AUR_E_INTEGRITY,     /* stored data fails verification: tampered, wrong key, corrupt */
    SECRETS_E_OTHER = AUR_E_INTERNAL,          /* unexpected answer, out of memory, I/O */
};

typedef struct {
    const char *backend; /* "local" (default when NULL), "vault", "aws_secrets_manager" */
    /* local */
    const char *data_dir;        /* the store is <data_dir>/secrets.db */
    const char *master_key;      /* AURORA_MASTER_KEY: 32 bytes as 64 hex chars or base64 */
    const char *master_key_file; /* AURORA_MASTER_KEY_FILE; default <data_dir>/master.key */
    /* vault */
    const char *vault_addr;        /* https://vault.example:8200 */
    const char *vault_token;       /* token auth */
    const char *vault_auth_method; /* "token" (default) | "kubernetes" */
    const char *vault_k8s_role;
    const char *vault_k8s_jwt_path; /* default: the pod's service-account token */
    const char *vault_kv_mount;     /* default "aurora" */
    const char *vault_prefix;       /* folder inside the mount; default none */
    const char *vault_cacert;       /* CA bundle for VAULT_ADDR */
    /* aws_secrets_manager */
    const char *aws_region;   /* AWS_SM_REGION */
    const char *aws_endpoint; /* AWS_SM_ENDPOINT; default https://secretsmanager.<region>.amazonaws.com */
    const char *aws_access_key_id;
    const char *aws_secret_access_key;
    const char *aws_session_token; /* optional (temporary credentials) */
    /* Without static keys: web identity (EKS IRSA), STS AssumeRoleWithWebIdentity
     * with the token read from the file at every refresh (it rotates). */
    const char *aws_role_arn;                /* AWS_ROLE_ARN */
    const char *aws_web_identity_token_file; /* AWS_WEB_IDENTITY_TOKEN_FILE */
    const char *aws_role_session_name;       /* AWS_ROLE_SESSION_NAME; default "aurora-server" */
    const char *aws_sts_endpoint;            /* AWS_SM_STS_ENDPOINT; default https://sts.<region>.amazonaws.com */
    /* every network request; 0 = SECRETS_DEFAULT_TIMEOUT_MS */
    long timeout_ms;
    /* The most paths one secrets_list returns; 0 = SECRETS_LIST_MAX_PATHS.
     * A listing that would return more fails (SECRETS_E_OTHER, "listing
     * stopped: …") rather than holding its thread and memory for as long as
     * a huge or hostile tree lasts; Vault's LIST walk is bounded by it too
     * (secrets_vault.c: at most this many LIST requests, 4 times as many
     * names read).  It also sets a remote listing's deadline
     * (secrets_list_deadline_ms: Vault's LIST walk, AWS's ListSecrets
     * pages): a backend answering each request slowly fails it
     * SECRETS_E_UNAVAILABLE, "listing stopped: not done within N ms". */
    size_t list_max_paths;
} secrets_config;

#define SECRETS_DEFAULT_TIMEOUT_MS 10000
/* Whole-store listings (the operator CLI's list and migrate): ~26 MB of
 * paths at most. */
#define SECRETS_LIST_MAX_PATHS 100000
/* The server only ever lists one connection's folder (a few fields). */
#define SECRETS_LIST_MAX_PATHS_SERVER 1000

typedef struct secrets secrets_t;

/* Opens the configured backend.  Local: opens (or creates) the store and
 * its key, and refuses a key that does not match the store.  Remote: checks
 * the configuration only. */
int secrets_open(const secrets_config *cfg, secrets_t **out, char *err, size_t errlen);
void secrets_close(secrets_t *s);
/* "local", "vault", "aws_secrets_manager". */
const char *secrets_backend_name(const secrets_t *s);

/* Creates or replaces the value at path (1..SECRETS_MAX_VALUE bytes). */
int secrets_put(secrets_t *s, const char *path, const void *val, size_t len, char *err,
                size_t errlen);
/* *val is malloc'd (NUL-terminated after len bytes, for text use); release
 * it with secrets_free(), which wipes it.  NOT_FOUND if nothing is there. */
int secrets_get(secrets_t *s, const char *path, unsigned char **val, size_t *len, char *err,
                size_t errlen);
/* Deletes the value and every version of it.  Deleting what is not there
 * succeeds (the end state is the same). */
int secrets_delete(secrets_t *s, const char *path, char *err, size_t errlen);
/* Every path that starts with prefix ("" or "aurora/" for all), sorted,
 * each once.  *paths is malloc'd; free with secrets_list_free(). */
int secrets_list(secrets_t *s, const char *prefix, char ***paths, size_t *n, char *err,
                 size_t errlen);
void secrets_list_free(char **paths, size_t n);
void secrets_free(unsigned char *val, size_t len);

/* Upkeep of the backend's credentials, from a periodic task on the outbound
 * pool (never a store worker): Vault's token auth renews a renewable
 * VAULT_TOKEN at half its TTL and logs when it cannot (not renewable, at
 * its maximum TTL, refused) and when the token will expire.  Returns the
 * seconds until the next run wanted, 0 when the backend needs none. */
long secrets_maintain(secrets_t *s);

/* 1 if path is a valid secret path (rules above). */
int secrets_path_valid(const char *path);
/* aurora/orgs/<org_id>/users/<user_id>/<connector>/<field>: one user's
 * secrets are per organization (the same user id may belong to two), as
 * connector rows are per (org, user, connector).  0, or -1 if a part is
 * empty or holds a '/' or the result is not a valid path. */
int secrets_user_path(char *out, size_t cap, const char *org_id, const char *user_id,
                      const char *connector, const char *field);
/* aurora/orgs/<org_id>/users/<user_id>/<connector>/ (with the '/'): what
 * secrets_list takes to find every field of one connection.  0 or -1. */
int secrets_user_prefix(char *out, size_t cap, const char *org_id, const char *user_id,
                        const char *connector);
/* The reference the state database stores instead of a value:
 * "<backend>:<path>" (e.g. "vault:aurora/orgs/org_1/users/usr_1/github/token").
 * 0, or -1 if path is invalid or out is too small. */
int secrets_ref(const secrets_t *s, const char *path, char *out, size_t cap);
/* Splits a reference; *path points into ref.  0, or -1 if malformed. */
int secrets_ref_parse(const char *ref, char *backend, size_t bcap, const char **path);
/* Short name of a result code ("not found", "backend unavailable", …). */
const char *secrets_strerror(int rc);

/* Marks the calling thread as one that must never wait on the secrets
 * backend: the store workers (worker.c), which every API call, agent
 * connect and command needs, while a remote backend (Vault, AWS) may take
 * its whole timeout per call.  get/put/delete/list on such a thread fail at
 * once with SECRETS_E_INVALID and a logged error naming the operation, so a
 * route registered on the wrong pool fails its tests instead of waiting in
 * production.  kind names the thread in that error ("store worker"). */
void secrets_forbid_on_this_thread(const char *kind);

/* ---- for backend implementations ------------------------------------------ */

/* Turns every control character of s (C0 and DEL) into a space, in place.
 * What a remote backend answers (an error code or message, a name, a time)
 * goes into errors and from there into the log: a line break in it would
 * start a log line of the endpoint's choosing, an escape sequence would
 * reach the operator's terminal. */
void secrets_printable(char *s);

/* Reads a credential file that the kubelet keeps fresh (a projected
 * service-account token: Vault's Kubernetes auth, AWS web identity), read
 * anew on every use because it rotates.  Trailing white space is dropped.
 * The result holds *cap bytes: release it with secret_free_n(tok, *cap).
 * NULL when the file cannot be read, is empty or longer than max; *why
 * then says which ("unreadable", "empty", "too large", "out of memory"). */
char *secrets_read_token_file(const char *path, size_t max, size_t *cap, const char **why);

/* The monotonic clock in ms: deadlines that a wall-clock jump does not move. */
long long secrets_mono_ms(void);

/* A whole listing's deadline, in ms from its start: one per-request
 * timeout for every SECRETS_LIST_PATHS_PER_TIMEOUT paths the listing may
 * hold (list_max: secrets_config.list_max_paths), at least
 * SECRETS_LIST_MIN_TIMEOUTS (the server's bound of 1000 paths: 3 timeouts,
 * 30 s by default; the operator CLI's whole-store 100000: 100).  A remote
 * listing is one request after the other (Vault's LIST per folder, AWS's
 * ListSecrets per page): each answers in milliseconds, so a listing within
 * its bound ends long before, while an endpoint answering each one just
 * under the timeout would hold the calling worker for one timeout per
 * request, up to the bound's number of requests. */
#define SECRETS_LIST_MIN_TIMEOUTS 3
#define SECRETS_LIST_PATHS_PER_TIMEOUT 1000
long secrets_list_deadline_ms(long timeout_ms, size_t list_max);

/* How long one attempt of a request may wait: timeout_ms, cut to what is
 * left before deadline (secrets_mono_ms; 0: no deadline); 0 once it has
 * passed.  A wait so cut that times out says nothing of whether the
 * endpoint answers: the backends do not report it to their breaker. */
long secrets_attempt_timeout_ms(long long deadline, long timeout_ms);

/* 1 if a pause of pause_ms before a retry leaves time for the retry before
 * deadline (0: no deadline, always). */
int secrets_pause_fits(long long deadline, long pause_ms);

/* Before attempt number `attempt` (from 1) of a backend's request bounded by
 * deadline (0: none): after a failed attempt, sleeps the retry's backoff.
 * 1: make the attempt, waiting at most *timeout_ms (per_request_ms cut to
 * the deadline); 0: the backoff would not leave time for it (the caller's
 * error still says the last attempt's failure); -1: no time is left for a
 * request at all.  The Vault and AWS backends share it, so both cut their
 * retries to a listing's deadline the same way. */
int secrets_next_attempt(int attempt, long long deadline, long per_request_ms, long *timeout_ms);

typedef struct {
    const char *name;
    int (*open)(const secrets_config *cfg, void **impl, char *err, size_t errlen);
    void (*close)(void *impl);
    /* err gets the detail only; the caller adds backend, operation and path. */
    int (*put)(void *impl, const char *path, const unsigned char *val, size_t len, char *err,
               size_t errlen);
    int (*get)(void *impl, const char *path, unsigned char **val, size_t *len, char *err,
               size_t errlen);
    int (*del)(void *impl, const char *path, char *err, size_t errlen);
    /* Calls add(ctx, path) for candidate paths under prefix (duplicates and
     * paths outside the prefix are tolerated: the caller filters); add
     * returns -1 on out of memory or once the listing holds
     * cfg->list_max_paths paths, and the backend then stops and fails. */
    int (*list)(void *impl, const char *prefix, int (*add)(void *ctx, const char *path),
                void *ctx, char *err, size_t errlen);
    /* Optional upkeep of the backend's credentials (Vault: renews a static
     * token before it expires); returns the seconds until it wants to run
     * again, 0 when it needs no upkeep. */
    long (*maintain)(void *impl);
} secrets_backend;

extern const secrets_backend secrets_backend_local;
extern const secrets_backend secrets_backend_vault;
extern const secrets_backend secrets_backend_aws;

/* The backend's own state, for backend-specific operations (rotate-key). */
void *secrets_impl(secrets_t *s);

#endif
