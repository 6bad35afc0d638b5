/* registry.h — many replicas, one fleet: where each agent session is held.
 *
 * N aurora-server replicas share PostgreSQL and one Redis (AURORA_REDIS_URL),
 * as GitLab's KAS does.  Each replica registers every cluster whose agent it
 * holds under
 *
 *     aurora:agents:<cluster_id>   sorted set, member
 *                                  "<instance_id> <addr> <expires_ms> <sig>",
 *                                  score = when the registration lapses (unix s),
 *                                  sealed (registry_seal_member, below)
 *
 * with a lease (AURORA_REGISTRY_LEASE_S) renewed by heartbeat every third of
 * it, and removes it when its last session of the cluster ends.  A replica
 * that dies stops renewing: its registrations lapse, its agents connect to
 * another replica, which registers them with a later lapse time.  A request
 * for a cluster held elsewhere is forwarded (forward.h) to the member with
 * the latest lapse time: the replica that renewed last, when the replicas
 * share AURORA_REGISTRY_LEASE_S (they need not; the key lives for two of the
 * longest leases the setting allows, whoever set it last).
 *
 * Token revocations and connection deletions are published on the channel
 * aurora:close, sealed with a key derived from the forward secret
 * (registry_seal, below); every replica closes the sessions it holds of
 * that cluster/token, at once.
 *
 * All Redis traffic of the loop's callers runs on one thread of its own:
 * registry_session_up/down and registry_publish_close only queue, so Redis
 * never blocks the lws loop.  Redis may go away: the thread reconnects with
 * backoff (100 ms doubling to 5 s), registers again every session held and
 * sends the closes queued meanwhile.  Lookups (registry_lookup) run on
 * worker threads, each with its own connection.
 *
 * AURORA_REDIS_URL unset: every function here is a no-op (one replica). */
#ifndef AURORA_REGISTRY_H
#define AURORA_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "server_config.h"

struct lws_context;
struct tunnel_hub;

/* redis://[[user]:password@]host[:port][/db] (port 6379, db 0 by default).
 * 0, or -1 with why. */
typedef struct {
    char host[256];
    int port;
    char user[128];
    char password[256];
    int db;
} registry_redis_url;
int registry_parse_url(const char *url, registry_redis_url *out, char *why, size_t whylen);

/* A replica's address as registered (AURORA_INTERNAL_ADDR) and dialled
 * (forward.c): "IPv4:port", "IPv6:port" (a pod IP as the downward API
 * gives it) or "[IPv6]:port", the port 1-65535 in decimal digits only.
 * host (without brackets, hostcap bytes) and *port; 0, -1 when it is not
 * HOST:PORT of that form, -2 when the host is not an IP literal. */
int registry_parse_addr(const char *addr, char *host, size_t hostcap, int *port);

/* Main thread, once the lws context exists and the instance id is known:
 * validates the settings (AURORA_INTERNAL_ADDR and a forward secret are
 * required with AURORA_REDIS_URL) and starts the registry thread.  0 (also
 * when Redis is not configured), or -1 with err: the server must not start. */
int registry_start(const server_config *cfg, struct lws_context *ctx, char *err, size_t errlen);
/* Main thread, after the sessions closed: removes what is still registered
 * (best effort) and stops the thread. */
void registry_stop(void);
/* 1 when AURORA_REDIS_URL is set. */
int registry_enabled(void);
/* This replica's AURORA_INTERNAL_ADDR ("" when alone). */
const char *registry_self_addr(void);

/* Loop thread: a session of cluster_id became ready / ended.  Counted: the
 * registration lives while at least one session of the cluster is held. */
void registry_session_up(const char *cluster_id);
void registry_session_down(const char *cluster_id);

/* Loop thread: tell every replica to close the sessions of org/cluster
 * (only those of token_id when not NULL), as this one just did. */
void registry_publish_close(const char *org_id, const char *cluster_id, const char *token_id,
                            const char *reason);
/* Loop thread: an agent process (register's "instance") connected here as
 * its connection number conn: every other replica closes its older sessions
 * of it (tunnel_close_superseded).  Published on aurora:close without a
 * token_id, which a replica without this ignores as malformed (it would
 * read an empty one as "every session of the cluster"). */
void registry_publish_supersede(const char *org_id, const char *cluster_id,
                                const char *instance, long long conn);
/* Loop thread: a legacy connection (the Python agent) of org/cluster became
 * ready here at ready_ms (registry_clock_ms: with this replica's instance id,
 * its rank) (up 1), or ended (up 0).  Of a cluster's legacy connections only
 * the newest takes commands, over every replica: each replica's older ones
 * step aside while a newer one is up elsewhere (tunnel_legacy_elsewhere),
 * forwarding what they held unsent to this replica's AURORA_INTERNAL_ADDR,
 * which the message names (`addr`).  Published on aurora:close without a
 * token_id, which a replica without this ignores as malformed.  Each
 * cluster's connection that takes commands on a replica is announced again
 * at every renewal of its registrations (tunnel_legacy_renew): an end never
 * published (a replica killed) lapses like a registration. */
void registry_publish_legacy(const char *org_id, const char *cluster_id, long long ready_ms,
                             int up);
/* The message also names the announcer's renewal period (`renew_ms`, a
 * third of its AURORA_REGISTRY_LEASE_S), as the replicas need not share the
 * setting: a session stepped aside takes commands again after this many of
 * its own replica's renewals without the announcement, their_ms and own_ms
 * the announcer's period and ours.  Enough for a silence of at least
 * TUNNEL_LEGACY_ASIDE_RENEWALS - 1 of the announcer's periods (its lease),
 * as with equal periods (TUNNEL_LEGACY_ASIDE_RENEWALS of ours then): counted
 * in ours, a replica renewing less often was given up while it still
 * announced, and two legacy connections of the cluster took commands.
 * their_ms is bounded by the periods the setting allows (2 s to 3600 s
 * leases): a peer naming a longer one keeps a session aside for an hour at
 * most; a message without it (a replica of an earlier version) counts as
 * our own period, as then. */
int registry_aside_renewals(long long their_ms, long long own_ms);
/* The leases AURORA_REGISTRY_LEASE_S allows (server_config.c), and their
 * renewal periods. */
#define REGISTRY_MIN_LEASE_S 2
#define REGISTRY_MAX_LEASE_S 3600
#define REGISTRY_MIN_PERIOD_MS (REGISTRY_MIN_LEASE_S * 1000 / 3)
#define REGISTRY_MAX_PERIOD_MS (REGISTRY_MAX_LEASE_S * 1000 / 3)
/* Any thread: the clock a legacy connection's ready time is read from
 * (registry_publish_legacy's ready_ms, tunnel_hub_opts.wall_ms), and the
 * registrations' expiry times, ms since the epoch: Redis's (TIME, read by the registry thread at each connection
 * and renewal, carried forward on this host's monotonic clock), the one
 * every replica shares, so that a replica whose clock runs ahead does not
 * outrank the newer connections of the others.  Before Redis was first
 * reached, where it refuses TIME, and with one replica: this host's wall
 * clock, offset by AURORA_REGISTRY_TEST_CLOCK_SKEW_MS (tests: a host whose
 * clock is off).  The message is the same as before: a replica of an
 * earlier version ranks by its wall clock, as it did. */
int64_t registry_clock_ms(void);

/* Messages heard on aurora:close that wait for the event loop
 * (registry_deliver), at most: about 21 MiB, 656 bytes each.  A fleet of
 * 10,000 agents announces at most one legacy connection per cluster in a
 * renewal or in the answers to a resync: three such bursts fit while the
 * loop is busy elsewhere.  Past it, a replica (or anyone who may publish)
 * flooding the channel, or a loop that stalls, would grow the server
 * without limit: what comes is dropped, counted
 * (aurora_registry_messages_dropped_total), logged once a burst, and made
 * up for once the loop has taken what waits, as after a reconnection to
 * Redis: every session's token looked up again, every replica asked to
 * announce its legacy connections again. */
#define REGISTRY_MAX_INBOUND 32768
/* A message on aurora:close longer than this is ignored unparsed: a
 * replica's are under 1 KiB, and parsed, a JSON array of small numbers
 * costs a cJSON node (64 bytes and more) per two bytes, hundreds of MiB on
 * every replica for one message Redis lets through to its subscribers. */
#define REGISTRY_MAX_MESSAGE 16384

/* Every message on aurora:close is sealed by the replica that publishes
 * it, as it publishes it (registry thread): the JSON object gets
 *
 *     "ts":  ms since the epoch on registry_clock_ms (Redis's clock),
 *     "seq": a number that only goes up for each sender ("from"),
 *
 * and then, last, `,"sig":"<64 hex>"}`: HMAC-SHA256, under the key
 * HMAC-SHA256(AURORA_INTERNAL_FORWARD_SECRET, "aurora-registry-v1"), of
 * every byte of the message before `,"sig"`.  Anyone who may PUBLISH on
 * the Redis the replicas share (another application using it, a client
 * holding its password but not the replicas' secret) otherwise closed any
 * cluster's tunnel, superseded any agent and put any legacy connection
 * aside for a lease, on every replica.  A receiver drops, counts
 * (aurora_registry_messages_rejected_total{why}) and logs (once a minute)
 * a message
 *   - without a seal (why="unsigned"; taken as before with
 *     AURORA_REGISTRY_ACCEPT_UNSIGNED, for a rolling upgrade from a version
 *     that does not seal: a replica of that version ignores the new fields),
 *   - whose seal does not verify (why="bad_signature": another secret, or
 *     a message changed after it was sealed),
 *   - stamped further than REGISTRY_SEAL_WINDOW_MS from its own clock
 *     (why="stale": a message heard before, published again later; the
 *     receiver then re-checks every session's token and the legacy
 *     connections, at most once a window, as a late revocation may be
 *     genuine),
 *   - whose seq is not above the last one taken from its sender
 *     (why="replayed": the same message again within the window). */
#define REGISTRY_SEAL_WINDOW_MS 30000
/* The key of the seals, from the forward secret; 0, or -1. */
int registry_seal_key(const char *secret, unsigned char key[32]);
/* json (a JSON object, "{...}") sealed with ts_ms and seq under key;
 * malloc'd, NULL when out of memory or json is not an object. */
char *registry_seal(const unsigned char key[32], const char *json, long long ts_ms,
                    unsigned long long seq);
/* 1 when msg (len bytes) ends in a seal that verifies over what precedes
 * it, 0 when it ends in none, -1 when it ends in one that does not. */
int registry_unseal(const unsigned char key[32], const char *msg, size_t len);

/* Every registration is sealed by the replica that writes it: <sig> is the
 * hex HMAC-SHA256, under the key
 * HMAC-SHA256(AURORA_INTERNAL_FORWARD_SECRET, "aurora-registration-v1"), of
 *
 *     "<cluster_id>\n<instance_id> <addr> <expires_ms>"
 *
 * (the key's cluster, then the member's first three fields): everything a
 * lookup trusts.  Anyone who may write to Redis without the replicas'
 * secret otherwise planted an address for any cluster, scored to outrank
 * its holder, and every replica sent the cluster's commands there, where
 * they failed (the forwarding client's trust store refused the peer)
 * instead of running on the replica holding the agent.  A key of its own
 * (another label than the messages'): a seal of one kind is never taken
 * for the other, whatever either text becomes.  The expiry is in the
 * seal, so a renewal writes a new member and removes the one before;
 * lookups rank by it, not by the score, which anyone may change (a dead
 * replica's registration scored up, a lapsed one scored live).  A lookup
 * passes over, counts (aurora_registry_registrations_rejected_total{why})
 * and logs (once a minute) a member that is not sealed (why="unsigned";
 * "<instance_id> <addr>", the form of a version before the seals, is taken
 * as before with AURORA_REGISTRY_ACCEPT_UNSIGNED, with which this replica
 * also writes that form, a millisecond above its sealed one, since such a
 * replica takes the first member it meets for the address) or whose seal
 * does not verify (why="bad_signature": another secret, another cluster's
 * member copied here, a field changed). */
#define REGISTRY_MEMBER_MAX 416 /* instance (64), addr (255), expiry, seal, spaces */
/* Members a lookup reads, latest first, within the longest lease from now:
 * planted ones beyond these crowd the holder out (a denial, as a DEL of the
 * key is, never a diversion). */
#define REGISTRY_LOOKUP_SCAN 64
/* The key of the registrations' seals, from the forward secret; 0, or -1. */
int registry_member_key(const char *secret, unsigned char key[32]);
/* The sealed member of instance at addr for cluster_id until expires_ms,
 * into out (cap bytes); 0, or -1 when it does not fit or a field holds a
 * space. */
int registry_seal_member(const unsigned char key[32], const char *cluster_id,
                         const char *instance, const char *addr, long long expires_ms, char *out,
                         size_t cap);
/* member of cluster_id's key read: 1 sealed and verified (instance, addr,
 * *expires_ms filled), 0 "<instance_id> <addr>" (unsigned: instance, addr
 * filled), -1 neither form (or a field too long), -2 a seal that does not
 * verify. */
int registry_open_member(const unsigned char key[32], const char *cluster_id, const char *member,
                         char *instance, size_t icap, char *addr, size_t acap,
                         long long *expires_ms);

/* Another replica's legacy_resync (it was away from aurora:close) is
 * answered by announcing every legacy connection that takes commands here:
 * one message per cluster.  Anyone who may publish on the channel can ask,
 * in a loop, under as many names as it likes: answered each time, every
 * replica turned each small request into its whole set of announcements.
 * What a request forgets (what this replica heard from the asker) is done
 * at once; the answer, at most once per this many ms: the first request at
 * once, those that come within the period together at its end (each is
 * answered by announcements made after it came, as a replica back from an
 * outage needs).  A renewal's announcements, and this replica's own
 * resync, answer what waits too. */
#define REGISTRY_RESYNC_ANSWER_MS 2000

/* Loop thread (LWS_CALLBACK_EVENT_WAIT_CANCELLED): closes the sessions that
 * other replicas' messages named, and after each renewal of the
 * registrations renews the legacy connections' announcements
 * (tunnel_legacy_renew; with Redis away a renewal's time counts there all
 * the same, announcing nothing). */
void registry_deliver(struct tunnel_hub *tunnels);

/* Worker thread: the internal address of another live replica holding
 * cluster_id.  1 (addr filled), 0 when none (or only this one), -1 when
 * Redis cannot be asked (then the command runs, or fails, here). */
int registry_lookup(const char *cluster_id, char *addr, size_t cap);

/* For tests and logs: 1 while the registry thread is connected to Redis. */
int registry_connected(void);

#endif
