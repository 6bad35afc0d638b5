/* store_migrations.c — the store's schema, as an ordered list of migrations.
 *
 * Rules for this file:
 *  - a released migration is never edited: a schema change is a new entry
 *    with the next version number at the end of the array;
 *  - one SQL statement per string (engines run one statement per call);
 *  - portable SQL only (SQLite 3.40 and PostgreSQL 15): TEXT and BIGINT
 *    columns, no AUTOINCREMENT/SERIAL (ids are generated in code), no
 *    engine-specific functions;
 *  - secret material is never stored: key_hash/token_hash hold SHA-256 hex.
 */
#include "store_migrations.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

typedef struct {
    int64_t version;
    const char *const *stmts; /* NULL-terminated */
} migration;

static const char *const m1_initial[] = {
    "CREATE TABLE orgs ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    /* created_at is in seconds; created_seq (microseconds, strictly
     * increasing per process) orders rows created within the same second. */
    " created_seq BIGINT NOT NULL DEFAULT 0)",
    "CREATE INDEX orgs_created_idx ON orgs (created_at, created_seq)",

    "CREATE TABLE users ("
    " id TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " email TEXT NOT NULL,"
    " role TEXT NOT NULL CHECK (role IN ('admin', 'member')),"
    " created_at BIGINT NOT NULL,"
    " UNIQUE (org_id, email))",

    "CREATE TABLE api_keys ("
    " id TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " user_id TEXT NOT NULL REFERENCES users (id),"
    " name TEXT NOT NULL,"
    " key_hash TEXT NOT NULL UNIQUE,"
    " preview TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " revoked_at BIGINT NOT NULL DEFAULT 0)",
    "CREATE INDEX api_keys_org_idx ON api_keys (org_id)",

    /* created_by is not a foreign key: tokens may be issued on behalf of a
     * caller that is not a row in users (e.g. an operator bootstrap). */
    "CREATE TABLE agent_tokens ("
    " id TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " created_by TEXT NOT NULL,"
    " cluster_id TEXT NOT NULL,"
    " cluster_name TEXT NOT NULL,"
    " notes TEXT NOT NULL DEFAULT '',"
    " preview TEXT NOT NULL,"
    " token_hash TEXT NOT NULL UNIQUE,"
    " created_at BIGINT NOT NULL,"
    " created_seq BIGINT NOT NULL DEFAULT 0,"
    " expires_at BIGINT NOT NULL DEFAULT 0,"
    " revoked_at BIGINT NOT NULL DEFAULT 0)",
    /* Leads with org_id (tenant listings) and also serves revoke_cluster. */
    "CREATE INDEX agent_tokens_org_idx ON agent_tokens (org_id, cluster_id)",
    /* Rate limiting: tokens created by one user since a time. */
    "CREATE INDEX agent_tokens_creator_idx ON agent_tokens (created_by, created_at)",

    /* One row per cluster; `connected` counts live agent sessions, so a
     * replaced agent overlapping its predecessor does not flap the status. */
    "CREATE TABLE connections ("
    " cluster_id TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " token_id TEXT NOT NULL,"
    " cluster_name TEXT NOT NULL,"
    " agent_version TEXT NOT NULL,"
    " protocol TEXT NOT NULL,"
    " connected_at BIGINT NOT NULL DEFAULT 0,"
    " last_heartbeat BIGINT NOT NULL DEFAULT 0,"
    " disconnected_at BIGINT NOT NULL DEFAULT 0,"
    " connected BIGINT NOT NULL DEFAULT 0)",
    "CREATE INDEX connections_org_idx ON connections (org_id)",

    /* id: generated in code (time-ordered, see store.c), not AUTOINCREMENT. */
    "CREATE TABLE audit_log ("
    " id BIGINT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " user_id TEXT NOT NULL,"
    " cluster_id TEXT NOT NULL,"
    " kind TEXT NOT NULL,"
    " argv_json TEXT NOT NULL,"
    " return_code BIGINT NOT NULL,"
    " bytes_out BIGINT NOT NULL,"
    " duration_ms BIGINT NOT NULL,"
    " outcome TEXT NOT NULL,"
    " at BIGINT NOT NULL)",
    "CREATE INDEX audit_log_org_at_idx ON audit_log (org_id, at)",
    NULL,
};

/* Connectors, OAuth state and per-organization settings (issue 5). */
static const char *const m2_connectors[] = {
    /* One row per (org, user, connector).  secret_ref names the secrets
     * backend entry ("backend:path"); metadata_json is the connector's own
     * non-secret data (e.g. GCP projects). */
    "CREATE TABLE connectors ("
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " user_id TEXT NOT NULL,"
    " connector TEXT NOT NULL,"
    " account TEXT NOT NULL DEFAULT '',"
    " secret_ref TEXT NOT NULL DEFAULT '',"
    " status TEXT NOT NULL DEFAULT 'active',"
    " metadata_json TEXT NOT NULL DEFAULT '{}',"
    " created_at BIGINT NOT NULL,"
    " created_seq BIGINT NOT NULL DEFAULT 0,"
    " updated_at BIGINT NOT NULL,"
    " PRIMARY KEY (org_id, user_id, connector))",

    /* Only the SHA-256 of an OAuth state value is stored; used_at makes it
     * single-use (an UPDATE … WHERE used_at = 0 claims it atomically). */
    "CREATE TABLE oauth_states ("
    " state_hash TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " user_id TEXT NOT NULL,"
    " provider TEXT NOT NULL,"
    " redirect_uri TEXT NOT NULL DEFAULT '',"
    " extra TEXT NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL,"
    " expires_at BIGINT NOT NULL,"
    " used_at BIGINT NOT NULL DEFAULT 0)",
    "CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at)",

    /* Create-once settings (e.g. the AWS External ID of an org). */
    "CREATE TABLE org_settings ("
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " setting_key TEXT NOT NULL,"
    " setting_value TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " PRIMARY KEY (org_id, setting_key))",
    NULL,
};

/* Audit rows that survive a crash (issue 8): a command's row is written
 * when it is dispatched (outcome 'started') and completed at its end.  Each
 * server process is a row of server_instances with a lease it renews; a row
 * left 'started' by an instance whose lease lapsed (or that is known dead) is
 * closed as 'interrupted' by any live replica.  Rows written before this
 * migration have instance_id '' and a final outcome, so no sweep touches them. */
static const char *const m3_audit_lifecycle[] = {
    /* proc_space names where `pid` is meaningful (boot id + PID namespace):
     * a replica in the same space may test the pid instead of waiting for
     * the lease.  heartbeat_at = 0: the instance is known to be gone. */
    "CREATE TABLE server_instances ("
    " id TEXT PRIMARY KEY,"
    " hostname TEXT NOT NULL DEFAULT '',"
    " proc_space TEXT NOT NULL DEFAULT '',"
    " pid BIGINT NOT NULL DEFAULT 0,"
    " started_at BIGINT NOT NULL,"
    " heartbeat_at BIGINT NOT NULL)",
    "ALTER TABLE audit_log ADD COLUMN instance_id TEXT NOT NULL DEFAULT ''",
    /* When the row got its final outcome (0 while 'started'). */
    "ALTER TABLE audit_log ADD COLUMN ended_at BIGINT NOT NULL DEFAULT 0",
    /* The sweep reads only the few open rows. */
    "CREATE INDEX audit_log_started_idx ON audit_log (instance_id) WHERE outcome = 'started'",
    NULL,
};

/* Identities named by the trusted backend (issue 9).  The existing Aurora
 * frontend sends X-User-ID/X-Org-ID of users and organizations its own auth
 * created; they are provisioned here on first use.  A user is a member of an
 * organization: the same user id may belong to several (Aurora lets a user
 * move between orgs), so membership is keyed by (org_id, user_id) and every
 * tenant row stays keyed by org.  created_by says who made a row: 'admin'
 * (aurora-server admin), 'backend' (provisioned from a trusted request). */
static const char *const m4_backend_identities[] = {
    "ALTER TABLE orgs ADD COLUMN created_by TEXT NOT NULL DEFAULT 'admin'",
    "CREATE TABLE org_members ("
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " user_id TEXT NOT NULL,"
    " created_by TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " created_seq BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (org_id, user_id))",
    /* A request that names a user but no org resolves the user's newest org. */
    "CREATE INDEX org_members_user_idx ON org_members (user_id, created_at, created_seq)",
    /* Every existing account is a member of its own org. */
    "INSERT INTO org_members (org_id, user_id, created_by, created_at)"
    " SELECT org_id, id, 'admin', created_at FROM users",
    /* When an agent last connected with the token (0: never); the existing
     * service shows it in its token list. */
    "ALTER TABLE agent_tokens ADD COLUMN last_connected_at BIGINT NOT NULL DEFAULT 0",
    /* Fixed-window rate limits shared by every replica (the existing
     * service's limiter counts fixed windows too).  One row per key and
     * window; a conditional upsert takes a slot atomically. */
    "CREATE TABLE rate_counters ("
    " rate_key TEXT NOT NULL,"
    " window_start BIGINT NOT NULL,"
    " hits BIGINT NOT NULL,"
    " PRIMARY KEY (rate_key, window_start))",
    NULL,
};

/* GitHub App installations (issue 10).  installation_id is the key: one
 * installation belongs to one organization (a second org claiming it is
 * refused).  permissions_json / events_json are what GitHub reported for the
 * installation (non-secret); pending = new permissions requested and not yet
 * accepted; suspended_at = 0 while not suspended.  No token is stored:
 * installation tokens live in memory only. */
static const char *const m5_github_installations[] = {
    "CREATE TABLE github_installations ("
    " installation_id BIGINT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " installed_by TEXT NOT NULL DEFAULT '',"
    " account_login TEXT NOT NULL DEFAULT '',"
    " account_type TEXT NOT NULL DEFAULT '',"
    " repository_selection TEXT NOT NULL DEFAULT '',"
    " permissions_json TEXT NOT NULL DEFAULT '{}',"
    " events_json TEXT NOT NULL DEFAULT '[]',"
    " suspended_at BIGINT NOT NULL DEFAULT 0,"
    " pending BIGINT NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL,"
    " created_seq BIGINT NOT NULL DEFAULT 0,"
    " updated_at BIGINT NOT NULL)",
    "CREATE INDEX github_installations_org_idx ON github_installations (org_id, created_at)",
    NULL,
};

/* Inbound webhook deliveries (issue 10, connector kit: kit_webhook.c).  A
 * delivery is committed here before the provider gets its 2xx.
 *  - org_id is NULL while the tenant is not known yet (e.g. a GitHub
 *    installation not yet bound to an organization): such rows are kept,
 *    never shown to any organization, and assigned later;
 *  - tenant_key scopes idempotency: '' for a global endpoint (provider ids
 *    are unique), the path token's owner for per-user URLs, so one tenant's
 *    delivery (or body digest) can never shadow another's;
 *  - body holds the raw bytes: as received when they are UTF-8 without NUL
 *    (body_encoding 'utf8'), else standard base64 ('base64');
 *  - status: 'received' → 'processing' (claimed_at) → 'processed' |
 *    'ignored' | 'failed' (retried while attempts allow); 'unassigned' while
 *    org_id is NULL and the connector processes only assigned rows. */
static const char *const m6_webhook_deliveries[] = {
    "CREATE TABLE webhook_deliveries ("
    " id TEXT PRIMARY KEY,"
    " org_id TEXT REFERENCES orgs (id),"
    " connector TEXT NOT NULL,"
    " tenant_key TEXT NOT NULL DEFAULT '',"
    " delivery_id TEXT NOT NULL,"
    " event TEXT NOT NULL DEFAULT '',"
    " action TEXT NOT NULL DEFAULT '',"
    " verified BIGINT NOT NULL DEFAULT 0,"
    " body TEXT NOT NULL,"
    " body_encoding TEXT NOT NULL CHECK (body_encoding IN ('utf8', 'base64')),"
    " body_sha256 TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " attempts BIGINT NOT NULL DEFAULT 0,"
    " last_error TEXT NOT NULL DEFAULT '',"
    " received_at BIGINT NOT NULL,"
    " received_seq BIGINT NOT NULL,"
    " claimed_at BIGINT NOT NULL DEFAULT 0,"
    " processed_at BIGINT NOT NULL DEFAULT 0,"
    " UNIQUE (connector, tenant_key, delivery_id))",
    /* The events API: one organization's deliveries of one connector, newest first. */
    "CREATE INDEX webhook_deliveries_org_idx ON webhook_deliveries"
    " (org_id, connector, received_seq)",
    /* The recovery sweep reads only the few rows not finished. */
    "CREATE INDEX webhook_deliveries_open_idx ON webhook_deliveries (connector, status)"
    " WHERE status IN ('received', 'processing', 'failed', 'unassigned')",
    NULL,
};

/* GitHub webhooks (issue 10, connectors/github_webhook.c):
 *  - removed_at: the installation was deleted on GitHub (installation.deleted);
 *    the row stays so the deliveries that name it keep their organization;
 *  - github_installation_repositories: the repositories an installation was
 *    granted, kept up to date by installation (created) and
 *    installation_repositories (added/removed) events.  org_id is the
 *    installation's, copied so that every read is scoped by organization. */
static const char *const m7_github_webhooks[] = {
    "ALTER TABLE github_installations ADD COLUMN removed_at BIGINT NOT NULL DEFAULT 0",
    "CREATE TABLE github_installation_repositories ("
    " installation_id BIGINT NOT NULL REFERENCES github_installations (installation_id),"
    " repository_id BIGINT NOT NULL,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " full_name TEXT NOT NULL,"
    " private BIGINT NOT NULL DEFAULT 0,"
    " added_at BIGINT NOT NULL,"
    " PRIMARY KEY (installation_id, repository_id))",
    "CREATE INDEX github_installation_repositories_org_idx ON github_installation_repositories"
    " (org_id, installation_id, full_name)",
    NULL,
};

/* Providers that sign only the body (GitHub: not X-GitHub-Delivery) let a
 * captured delivery be replayed under a fresh id.  body_key holds the body's
 * digest for connectors that ask (kit_webhook_spec.unique_body), NULL
 * otherwise; NULLs never collide, so other connectors are unaffected. */
static const char *const m8_webhook_body_key[] = {
    "ALTER TABLE webhook_deliveries ADD COLUMN body_key TEXT",
    "CREATE UNIQUE INDEX webhook_deliveries_body_key_idx"
    " ON webhook_deliveries (connector, tenant_key, body_key)",
    NULL,
};

/* Incidents (issue 11, incidents.h, store_incidents.c, rca_outbox.c):
 *  - incident_alerts: one row per alert a connector ingested (Grafana: per
 *    element of alerts[]); incident_id NULL when a resolution matched
 *    nothing.  (org_id, delivery_id, idx) and (org_id, source, dedup_key)
 *    make re-processing a delivery a no-op; NULL dedup_keys never collide;
 *  - incidents: status 'open' | 'acknowledged' | 'resolved' | 'closed';
 *    service_key is the normalized service (incident_normalize.c) the
 *    correlator compares; started_seq breaks ties of started_at;
 *    alert_count is also the last incident_pos handed out;
 *  - rca_jobs: the outbox of the investigation service, exactly one row per
 *    incident (UNIQUE incident_id).  status 'pending' | 'claimed' | 'done' |
 *    'dead'; next_attempt_at is when the job can next be claimed (for a
 *    claimed job: its lease end, = lease_until); claim_hash is the SHA-256
 *    of the claim token, never the token;
 *  - grafana_alerts / sentry_events: the per-source tables the connector
 *    guide names, as views over incident_alerts. */
static const char *const m9_incidents[] = {
    "CREATE TABLE incidents ("
    " id TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " source TEXT NOT NULL,"
    " source_alert_id TEXT NOT NULL DEFAULT '',"
    " first_alert_id TEXT NOT NULL DEFAULT '',"
    " fingerprint TEXT NOT NULL DEFAULT '',"
    " title TEXT NOT NULL,"
    " service TEXT NOT NULL DEFAULT '',"
    " service_key TEXT NOT NULL DEFAULT '',"
    " severity TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved', 'closed')),"
    " started_at BIGINT NOT NULL,"
    " started_seq BIGINT NOT NULL,"
    " acknowledged_at BIGINT NOT NULL DEFAULT 0,"
    " resolved_at BIGINT NOT NULL DEFAULT 0,"
    " closed_at BIGINT NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " alert_count BIGINT NOT NULL DEFAULT 0,"
    " summary TEXT NOT NULL DEFAULT '')",
    /* Correlation by service within the window, and the list API. */
    "CREATE INDEX incidents_open_service_idx ON incidents (org_id, service_key, started_at)"
    " WHERE status IN ('open', 'acknowledged')",
    "CREATE INDEX incidents_status_idx ON incidents (org_id, status, started_at, started_seq)",
    "CREATE INDEX incidents_started_idx ON incidents (org_id, started_at, started_seq)",

    "CREATE TABLE incident_alerts ("
    " id TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " user_id TEXT,"
    " source TEXT NOT NULL,"
    " delivery_id TEXT NOT NULL,"
    " idx BIGINT NOT NULL,"
    " dedup_key TEXT,"
    " source_alert_id TEXT NOT NULL DEFAULT '',"
    " fingerprint TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('firing', 'resolved', 'acknowledged', 'info')),"
    " title TEXT NOT NULL,"
    " service TEXT NOT NULL DEFAULT '',"
    " severity TEXT NOT NULL,"
    " message TEXT NOT NULL DEFAULT '',"
    " url TEXT NOT NULL DEFAULT '',"
    " occurred_at BIGINT NOT NULL,"
    " received_at BIGINT NOT NULL,"
    " received_seq BIGINT NOT NULL,"
    " incident_id TEXT REFERENCES incidents (id),"
    /* 1, 2, … within its incident, in the order correlation attached them
     * (under the org's lock): "still firing" compares these, not clocks. */
    " incident_pos BIGINT NOT NULL DEFAULT 0,"
    " raw_json TEXT,"
    " UNIQUE (org_id, delivery_id, idx))",
    "CREATE UNIQUE INDEX incident_alerts_dedup_idx ON incident_alerts (org_id, source, dedup_key)",
    /* Correlation by fingerprint: the org's alerts of one fingerprint. */
    "CREATE INDEX incident_alerts_fp_idx ON incident_alerts (org_id, fingerprint, received_seq)",
    /* An incident's alerts (GET /api/incidents/{id}, the resolve check). */
    "CREATE INDEX incident_alerts_incident_idx ON incident_alerts"
    " (incident_id, fingerprint, incident_pos)",

    "CREATE TABLE rca_jobs ("
    " id TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " incident_id TEXT NOT NULL UNIQUE REFERENCES incidents (id),"
    " source_type TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN ('pending', 'claimed', 'done', 'dead')),"
    " attempts BIGINT NOT NULL DEFAULT 0,"
    " next_attempt_at BIGINT NOT NULL,"
    " lease_until BIGINT NOT NULL DEFAULT 0,"
    " claim_hash TEXT,"
    " last_error TEXT NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL,"
    " created_seq BIGINT NOT NULL,"
    " claimed_at BIGINT NOT NULL DEFAULT 0,"
    " acked_at BIGINT NOT NULL DEFAULT 0,"
    " payload TEXT NOT NULL)",
    "CREATE INDEX rca_jobs_due_idx ON rca_jobs (status, next_attempt_at, created_seq)",

    "CREATE VIEW grafana_alerts AS SELECT id, org_id, user_id, delivery_id, idx,"
    " source_alert_id, fingerprint, state AS status, title, service, severity, message, url,"
    " occurred_at, received_at, incident_id, raw_json AS payload"
    " FROM incident_alerts WHERE source = 'grafana'",
    "CREATE VIEW sentry_events AS SELECT id, org_id, user_id, delivery_id, dedup_key,"
    " source_alert_id AS issue_id, fingerprint, state, title, service, severity, message, url,"
    " occurred_at, received_at, incident_id, raw_json AS payload"
    " FROM incident_alerts WHERE source = 'sentry'",
    NULL,
};

/* Correlation by service: the index must also give the ORDER BY
 * (started_at DESC, started_seq DESC), or SQLite's planner (no ANALYZE
 * statistics) prefers incidents_started_idx for the order and scans every
 * open incident in the window: 3.3x slower with 10k open incidents
 * (bench/webhook_bench.py). */
static const char *const m10_incident_service_order[] = {
    "DROP INDEX incidents_open_service_idx",
    "CREATE INDEX incidents_open_service_idx ON incidents (org_id, service_key, started_at,"
    " started_seq) WHERE status IN ('open', 'acknowledged')",
    NULL,
};

/* Chat notifications (issue 12, kit_chat.h, store_chat.c):
 *  - chat_outbox: one row per message per chat connector; kind 'opened' |
 *    'resolved' (incident hooks, in the incident's transaction) | 'reply';
 *    status 'pending' | 'claimed' | 'sent' | 'dropped' | 'dead'; attempts is
 *    also the claim's identity (a late drainer cannot finish a row claimed
 *    again); channel/thread name the target of a reply to a named thread and,
 *    once sent, where the message went;
 *  - chat_threads: where each incident's thread is, per connector. */
static const char *const m11_chat[] = {
    "CREATE TABLE chat_outbox ("
    " id TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " connector TEXT NOT NULL,"
    " incident_id TEXT REFERENCES incidents (id),"
    " kind TEXT NOT NULL CHECK (kind IN ('opened', 'resolved', 'reply')),"
    " channel TEXT NOT NULL DEFAULT '',"
    " thread TEXT NOT NULL DEFAULT '',"
    " text TEXT NOT NULL DEFAULT '',"
    " status TEXT NOT NULL CHECK (status IN ('pending', 'claimed', 'sent', 'dropped', 'dead')),"
    " attempts BIGINT NOT NULL DEFAULT 0,"
    " next_attempt_at BIGINT NOT NULL,"
    " lease_until BIGINT NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL,"
    " created_seq BIGINT NOT NULL,"
    " sent_at BIGINT NOT NULL DEFAULT 0,"
    " last_error TEXT NOT NULL DEFAULT '')",
    "CREATE INDEX chat_outbox_due_idx ON chat_outbox (status, next_attempt_at, created_seq)",
    /* the order check and the incident's connectors */
    "CREATE INDEX chat_outbox_incident_idx ON chat_outbox (org_id, incident_id, connector,"
    " created_seq)",
    "CREATE INDEX chat_outbox_org_idx ON chat_outbox (org_id, status)",
    "CREATE TABLE chat_threads ("
    " org_id TEXT NOT NULL REFERENCES orgs (id),"
    " connector TEXT NOT NULL,"
    " incident_id TEXT NOT NULL REFERENCES incidents (id),"
    " channel TEXT NOT NULL,"
    " thread TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " PRIMARY KEY (org_id, connector, incident_id))",
    "CREATE INDEX chat_threads_ref_idx ON chat_threads (org_id, connector, channel, thread)",
    NULL,
};

/* Many replicas, one fleet (issue 13): a connection row names the server
 * instance that counted its sessions, so that a replica that starts, or
 * notices another one's lease lapsed, resets only the rows of instances
 * that are gone rather than every row.  Rows written before this migration
 * have '' (no instance): the first sweep resets them, as start-up did. */
static const char *const m12_connection_owner[] = {
    "ALTER TABLE connections ADD COLUMN instance_id TEXT NOT NULL DEFAULT ''",
    NULL,
};

/* Web console sessions (issue 15, store_console.h): only the SHA-256 hex
 * of the session id (the cookie) is stored.  key_id '' names a session the
 * trusted backend's headers signed in.  No foreign key to orgs: a deleted
 * organization takes its keys and members along, which ends its sessions
 * (the lookup requires them), and the prune deletes the rows. */
static const char *const m13_console_sessions[] = {
    "CREATE TABLE console_sessions ("
    " id_hash TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL,"
    " user_id TEXT NOT NULL,"
    " key_id TEXT NOT NULL DEFAULT '',"
    " csrf_token TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " last_seen_at BIGINT NOT NULL,"
    " expires_at BIGINT NOT NULL)",
    "CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at)",
    "CREATE INDEX console_sessions_seen_idx ON console_sessions (last_seen_at)",
    NULL,
};

/* Adopting unassigned webhook deliveries by their tenant (kit_webhook.h):
 * adopt_key is what the connector's resolve_org maps to an organization
 * (GitHub: the installation id; Slack: team_id; Google Chat: space.name),
 * read from the verified body when the delivery is stored; '' when it names
 * none.  Rows stored before this migration have NULL: the connectors' sweep
 * fills it in, a bounded batch per pass (kit_webhook_maintain).  The index
 * holds only the rows waiting for an organization, so a newly bound tenant's
 * deliveries are found by one range read however many unrelated ones wait;
 * the retention prune (oldest first) reads the org index. */
static const char *const m14_webhook_adopt_key[] = {
    "ALTER TABLE webhook_deliveries ADD COLUMN adopt_key TEXT",
    "CREATE INDEX webhook_deliveries_adopt_idx ON webhook_deliveries"
    " (connector, adopt_key, received_seq, id) WHERE org_id IS NULL",
    NULL,
};

/* The browser binding of console-started OAuth flows
 * (connectors/oauth_binding.h): the SHA-256 hex of the nonce the login
 * answer put in a cookie; '' for a flow started without a console session
 * (the frontend's server-side call, an API key). */
static const char *const m15_oauth_browser_binding[] = {
    "ALTER TABLE oauth_states ADD COLUMN browser_hash TEXT NOT NULL DEFAULT ''",
    NULL,
};

/* How the login of an OAuth flow was authenticated ('session', 'internal'
 * for the trusted frontend, 'api_key'; '' for states made before): a flow
 * started with an API key ties to no browser, so its callback must carry
 * the key (connectors/oauth.c, login CSRF).  A migration of its own: 15 was
 * already applied by builds without it. */
static const char *const m16_oauth_started_via[] = {
    "ALTER TABLE oauth_states ADD COLUMN started_via TEXT NOT NULL DEFAULT ''",
    NULL,
};

/* The rows of one connector across every organization in the order they
 * were created (store_connector_page: pollers, and the events that find
 * their organization among every workspace's row): a page is one range
 * read of this index, not a scan and sort of the table per page. */
static const char *const m17_connectors_by_kind[] = {
    "CREATE INDEX connectors_kind_created_idx ON connectors"
    " (connector, created_at, created_seq, org_id, user_id)",
    NULL,
};

/* When a failed webhook delivery may be claimed again (kit_webhook.c's
 * backoff: a provider or database outage of minutes must not use up its
 * attempts in as many sweeps).  NULL on a failed row: never (its attempts
 * are spent).  The failed rows of older builds still had attempts left
 * below their limit, 5: they are due at once, as they were; those that
 * reached it stay given up (a delivery that killed its worker each time
 * is not handed out again by the higher limit).  The default is 0, due:
 * a row an older build inserts (a replica not yet upgraded, during a
 * rolling upgrade) is never left out of the sweep; the sweep's query
 * still reads the status. */
static const char *const m18_webhook_next_attempt[] = {
    "ALTER TABLE webhook_deliveries ADD COLUMN next_attempt_at BIGINT DEFAULT 0",
    "UPDATE webhook_deliveries SET next_attempt_at = NULL WHERE status = 'failed' AND attempts >= 5",
    NULL,
};

/* The recovery sweep's index.  next_attempt_at is now set exactly on the
 * rows the sweep may hand out: 0 on a received row, the claim time on a
 * claimed one, the retry time on a failed one with attempts left; NULL on
 * everything finished (processed, ignored, failed for good) and on rows
 * waiting for an organization.  The index holds only those rows, so a
 * sweep is one range read of the rows due, however many finished ones
 * pile up.  (webhook_deliveries_open_idx kept every failed row, and the
 * sweep's query did not even match its WHERE: it read all of a
 * connector's rows every 20 s.) */
static const char *const m19_webhook_due_idx[] = {
    "UPDATE webhook_deliveries SET next_attempt_at ="
    " CASE WHEN status = 'processing' THEN claimed_at ELSE 0 END"
    " WHERE status IN ('received', 'processing')",
    "UPDATE webhook_deliveries SET next_attempt_at = NULL"
    " WHERE status NOT IN ('received', 'processing', 'failed') AND next_attempt_at IS NOT NULL",
    "DROP INDEX webhook_deliveries_open_idx",
    "CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (connector, next_attempt_at)"
    " WHERE next_attempt_at IS NOT NULL",
    NULL,
};

/* Console sessions and the OAuth flows they start (found in review):
 *  - oauth_states.console_session: the SHA-256 hex of the id of the console
 *    session that started the flow (its console_sessions key, never the id
 *    itself); '' for a flow started otherwise (an API key, the trusted
 *    frontend) and for the states made before.  The callback of such a
 *    flow finishes it only while that session lives (connectors/oauth.c),
 *    and sign-out and key revocation delete its unfinished states, through
 *    oauth_states_session_idx;
 *  - console_sessions_key_idx: the sessions-per-key cap
 *    (store_console_session_create) read the whole table at each sign-in;
 *  - backend sessions whose membership is gone: an organization or member
 *    removed by an older build left them, and they came back to life when
 *    the backend named the organization and user again (the removals now
 *    delete them in their transaction). */
static const char *const m20_console_session_flows[] = {
    "ALTER TABLE oauth_states ADD COLUMN console_session TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX oauth_states_session_idx ON oauth_states (console_session)",
    "CREATE INDEX console_sessions_key_idx ON console_sessions (org_id, user_id, key_id)",
    "DELETE FROM console_sessions WHERE key_id = '' AND NOT EXISTS (SELECT 1 FROM org_members m"
    " WHERE m.org_id = console_sessions.org_id AND m.user_id = console_sessions.user_id)",
    NULL,
};

/* The RCA list cursor (store_rca.c, numberer_take): list_seq is a number given
 * to a job by one numberer at a time, held until the numbering transaction
 * commits, so numbers are committed in increasing order and a watcher's
 * `after` cursor can never pass a job that is still to appear.  created_seq
 * was taken before the commit: on PostgreSQL two ingests committing out of
 * order made a watcher skip the smaller one.  NULL until numbered (rows of
 * older builds: numbered by the periodic task rca-number, rca_outbox.c;
 * a job of this build is numbered by its ingest transaction). */
static const char *const m21_rca_list_seq[] = {
    "ALTER TABLE rca_jobs ADD COLUMN list_seq BIGINT",
    "CREATE UNIQUE INDEX rca_jobs_list_idx ON rca_jobs (list_seq)",
    "CREATE INDEX rca_jobs_unlisted_idx ON rca_jobs (created_seq) WHERE list_seq IS NULL",
    NULL,
};

/* The per-user cap of OAuth states (store_oauth_state_create, found in
 * review): its DELETE reads one user's rows, not the whole table, at each
 * login. */
static const char *const m22_oauth_states_per_user[] = {
    "CREATE INDEX oauth_states_user_idx ON oauth_states (org_id, user_id)",
    NULL,
};

/* Append only; versions strictly increasing. */
static const migration migrations[] = {
    { 1, m1_initial },
    { 2, m2_connectors },
    { 3, m3_audit_lifecycle },
    { 4, m4_backend_identities },
    { 5, m5_github_installations },
    { 6, m6_webhook_deliveries },
    { 7, m7_github_webhooks },
    { 8, m8_webhook_body_key },
    { 9, m9_incidents },
    { 10, m10_incident_service_order },
    { 11, m11_chat },
    { 12, m12_connection_owner },
    { 13, m13_console_sessions },
    { 14, m14_webhook_adopt_key },
    { 15, m15_oauth_browser_binding },
    { 16, m16_oauth_started_via },
    { 17, m17_connectors_by_kind },
    { 18, m18_webhook_next_attempt },
    { 19, m19_webhook_due_idx },
    { 20, m20_console_session_flows },
    { 21, m21_rca_list_seq },
    { 22, m22_oauth_states_per_user },
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

int64_t store_migrations_latest(void)
{
    return migrations[N_MIGRATIONS - 1].version;
}

static int fail(const db_engine *eng, db_t *db, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s: %s", what, eng->errmsg(db));
    return -1;
}

static int parse_i64(const char *s, int64_t *out)
{
    if (!s) {
        *out = 0;
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

int store_migrations_version(const db_engine *eng, db_t *db, int64_t *version, char *err,
                             size_t errlen)
{
    db_result r;
    *version = 0;
    if (eng->query(db, "SELECT MAX(version) FROM schema_migrations", NULL, 0, &r) != DB_OK)
        return fail(eng, db, err, errlen, "reading schema version");
    int rc = 0;
    /* MAX over no rows is NULL: an empty database is version 0. */
    if (r.nrows != 1 || r.ncols != 1 || parse_i64(db_cell(&r, 0, 0), version) < 0) {
        snprintf(err, errlen, "reading schema version: unexpected result");
        rc = -1;
    }
    db_result_free(&r);
    return rc;
}

/* 1 if version is recorded, 0 if not, -1 on error. */
static int is_applied(const db_engine *eng, db_t *db, int64_t version, char *err, size_t errlen)
{
    db_result r;
    db_param p[] = { DB_P_INT(version) };
    if (eng->query(db, "SELECT version FROM schema_migrations WHERE version = ?", p, 1, &r) !=
        DB_OK)
        return fail(eng, db, err, errlen, "reading schema_migrations");
    int applied = r.nrows > 0;
    db_result_free(&r);
    return applied;
}

static void rollback(const db_engine *eng, db_t *db)
{
    /* Best effort: the error that got us here is the one to report. */
    (void)eng->exec(db, "ROLLBACK", NULL, 0, NULL);
}

/* apply_one's answer when another migrator held the lock for longer than
 * one statement may wait: the caller tries again. */
#define MIGRATION_LOCK_BUSY 1

/* How long replicas starting together wait for each other's migrations in
 * total; each wait is one statement, bounded by the statement timeout. */
#define MIGRATION_WAIT_MS (5 * 60 * 1000)

/* Serializes migrators on PostgreSQL for the rest of the transaction.
 * Without it, replicas migrating a fresh database at once wait on each
 * other's catalog and foreign-key locks inside DDL statements, and under
 * load those waits pass the statement timeout.  With it, one migrates and
 * the others wait here, in one cheap statement that can be retried; the
 * re-check below then finds the migration applied.  SQLite's BEGIN is
 * already BEGIN IMMEDIATE (one writer), so it needs nothing more. */
static int take_migration_lock(const db_engine *eng, db_t *db)
{
    if (strcmp(eng->name, "postgres") != 0)
        return DB_OK;
    db_result r;
    /* The key is arbitrary but fixed: "aura" in ASCII. */
    int e = eng->query(db, "SELECT pg_advisory_xact_lock(1635087713)", NULL, 0, &r);
    if (e == DB_OK)
        db_result_free(&r);
    return e;
}

/* Applies one migration in a transaction; a concurrent migrator that got
 * there first is detected by the re-check under the transaction's lock (or
 * by the primary key on schema_migrations) and is not an error. */
static int apply_one(const db_engine *eng, db_t *db, const migration *m, char *err, size_t errlen)
{
    char what[96];
    if (eng->exec(db, "BEGIN", NULL, 0, NULL) != DB_OK)
        return fail(eng, db, err, errlen, "migration: BEGIN");
    int lock = take_migration_lock(eng, db);
    if (lock != DB_OK) {
        fail(eng, db, err, errlen, "migration: waiting for another server's migration");
        rollback(eng, db);
        return lock == DB_E_TIMEOUT ? MIGRATION_LOCK_BUSY : -1;
    }
    int applied = is_applied(eng, db, m->version, err, errlen);
    if (applied != 0) {
        rollback(eng, db);
        return applied < 0 ? -1 : 0;
    }
    for (size_t i = 0; m->stmts[i]; i++) {
        if (eng->exec(db, m->stmts[i], NULL, 0, NULL) != DB_OK) {
            snprintf(what, sizeof(what), "migration %" PRId64 " statement %zu", m->version, i + 1);
            fail(eng, db, err, errlen, what);
            rollback(eng, db);
            /* An engine without a table lock for the re-check (PostgreSQL)
             * fails here when a concurrent migrator committed first. */
            char ignored[8];
            return is_applied(eng, db, m->version, ignored, sizeof(ignored)) == 1 ? 0 : -1;
        }
    }
    db_param p[] = { DB_P_INT(m->version), DB_P_INT(time(NULL)) };
    int e = eng->exec(db, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", p, 2,
                      NULL);
    if (e != DB_OK) {
        snprintf(what, sizeof(what), "migration %" PRId64 ": recording", m->version);
        fail(eng, db, err, errlen, what);
        rollback(eng, db);
        return e == DB_E_CONSTRAINT ? 0 : -1;
    }
    if (eng->exec(db, "COMMIT", NULL, 0, NULL) != DB_OK) {
        snprintf(what, sizeof(what), "migration %" PRId64 ": COMMIT", m->version);
        fail(eng, db, err, errlen, what);
        rollback(eng, db);
        return -1;
    }
    return 0;
}

int store_migrate(const db_engine *eng, db_t *db, char *err, size_t errlen)
{
    /* On PostgreSQL, IF NOT EXISTS does not cover a concurrent creator: the
     * handle that loses the race fails on the catalog's unique index once the
     * winner commits.  The table exists then, so a second attempt skips. */
    static const char create_sql[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                     " version BIGINT PRIMARY KEY,"
                                     " applied_at BIGINT NOT NULL)";
    if (eng->exec(db, create_sql, NULL, 0, NULL) != DB_OK &&
        eng->exec(db, create_sql, NULL, 0, NULL) != DB_OK)
        return fail(eng, db, err, errlen, "creating schema_migrations");

    int64_t current;
    if (store_migrations_version(eng, db, &current, err, errlen) < 0)
        return -1;
    int64_t latest = store_migrations_latest();
    /* An older binary must not write into a schema it does not know. */
    if (current > latest) {
        snprintf(err, errlen,
                 "database schema version %" PRId64 " is newer than this server's (%" PRId64 ")",
                 current, latest);
        return -1;
    }

    int64_t prev = 0;
    for (size_t i = 0; i < N_MIGRATIONS; i++) {
        const migration *m = &migrations[i];
        if (m->version <= prev) { /* a programming error in the table above */
            snprintf(err, errlen, "migration table out of order at version %" PRId64, m->version);
            return -1;
        }
        prev = m->version;
        /* Fast path without a write transaction: already applied. */
        int applied = is_applied(eng, db, m->version, err, errlen);
        if (applied < 0)
            return -1;
        if (applied)
            continue;
        int64_t give_up = db_now_ms() + MIGRATION_WAIT_MS;
        int r;
        while ((r = apply_one(eng, db, m, err, errlen)) == MIGRATION_LOCK_BUSY) {
            if (db_now_ms() >= give_up)
                return -1; /* err names the wait that did not end */
        }
        if (r < 0)
            return -1;
    }
    return 0;
}
