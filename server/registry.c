/* registry.c — agent sessions registered in Redis, revocations fanned out
 * over pub/sub; see registry.h. */
#include "registry.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "instance.h"
#include "log.h"
#include "prom.h"
#include "secret.h"
#include "store.h"
#include "tunnel.h"
#include "utf8.h"

#define KEY_PREFIX "aurora:agents:"
#define CLOSE_CHANNEL "aurora:close"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define IO_TIMEOUT_MS 2000     /* the registry thread's commands */
#define LOOKUP_TIMEOUT_MS 500  /* a worker's lookup: a command waits on it */
#define MAX_QUEUED_CLOSES 4096 /* publishes kept while Redis is away */
#define FLUSH_BATCH 256        /* of those, published per round trip */
#define PUBLISH_RETRY_MS 1000  /* after Redis refused one (flush_unsent) */
/* A reading of Redis's clock whose round trip took longer is not as good as
 * the one kept (registry_clock_ms is off by up to half the round trip);
 * the first one after a connection is taken whatever it took. */
#define CLOCK_SAMPLE_MAX_RTT_US 100000

/* ---- URL ------------------------------------------------------------------------ */

int registry_parse_url(const char *url, registry_redis_url *o, char *why, size_t whylen)
{
    memset(o, 0, sizeof(*o));
    o->port = 6379;
    if (!url || strncmp(url, "redis://", 8)) {
        snprintf(why, whylen, "must start with redis://");
        return -1;
    }
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            snprintf(why, whylen, "credentials must be [user]:password@");
            return -1;
        }
        size_t ulen = (size_t)(colon - p), plen = (size_t)(at - colon - 1);
        if (ulen >= sizeof(o->user) || plen >= sizeof(o->password) || plen == 0) {
            snprintf(why, whylen, "user or password empty or too long");
            return -1;
        }
        memcpy(o->user, p, ulen);
        memcpy(o->password, colon + 1, plen);
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0 || hlen >= sizeof(o->host)) {
        snprintf(why, whylen, "no host, or a host too long");
        return -1;
    }
    memcpy(o->host, p, hlen);
    for (size_t i = 0; i < hlen; i++)
        if (!isalnum((unsigned char)o->host[i]) && !strchr(".-_", o->host[i])) {
            snprintf(why, whylen, "the host may hold letters, digits, '.', '-' and '_' only");
            return -1;
        }
    p += hlen;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
            snprintf(why, whylen, "the port must be 1-65535");
            return -1;
        }
        o->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end || db < 0 || db > 1000) {
            snprintf(why, whylen, "the database must be a number 0-1000");
            return -1;
        }
        o->db = (int)db;
    } else if (*p && strcmp(p, "/")) {
        snprintf(why, whylen, "unexpected text after the host");
        return -1;
    }
    return 0;
}

/* 1-65535 written in decimal digits only, else -1: atoi took "70000" (lws
 * then dialled it modulo 65536), "+80", "80x" and "80\n". */
static int port_of(const char *s)
{
    long v = 0;
    if (!*s || strlen(s) > 5)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

int registry_parse_addr(const char *addr, char *host, size_t hostcap, int *port)
{
    /* The port is after the last ':' whatever the host. */
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    size_t hlen = colon ? (size_t)(colon - addr) : 0;
    int p = colon ? port_of(colon + 1) : -1;
    if (!hlen || p < 0 || !hostcap)
        return -1;
    const char *h = addr;
    if (hlen > 2 && h[0] == '[' && h[hlen - 1] == ']') { /* lws takes it without them */
        h++;
        hlen -= 2;
    }
    if (hlen >= hostcap)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    /* An IP literal only: lws resolves a name on the event loop, so a name
     * whose DNS never answers would stall every agent and request of the
     * replica dialling it. */
    unsigned char ip[16];
    if (inet_pton(AF_INET, host, ip) != 1 && inet_pton(AF_INET6, host, ip) != 1)
        return -2;
    *port = p;
    return 0;
}

/* ---- seals (registry.h) ---------------------------------------------------------------- */

#define SEAL_LABEL "aurora-registry-v1"
#define SEAL_HEAD ",\"sig\":\""
#define SEAL_LEN (sizeof(SEAL_HEAD) - 1 + 64 + 2) /* ,"sig":"<64 hex>"} */

/* HMAC-SHA256(secret, label): a key of its own for each use of the secret. */
static int derive_key(const char *secret, const char *label, unsigned char key[32])
{
    unsigned int n = 32;
    return secret && HMAC(EVP_sha256(), secret, (int)strlen(secret),
                          (const unsigned char *)label, strlen(label), key, &n) &&
                   n == 32
               ? 0
               : -1;
}

int registry_seal_key(const char *secret, unsigned char key[32])
{
    /* Its own key, not the secret itself: a MAC of these messages is never
     * a value that means anything to forward.c, which checks the secret. */
    return derive_key(secret, SEAL_LABEL, key);
}

static int seal_mac(const unsigned char key[32], const char *msg, size_t len,
                    unsigned char mac[32])
{
    unsigned int n = 32;
    return HMAC(EVP_sha256(), key, 32, (const unsigned char *)msg, len, mac, &n) && n == 32
               ? 0
               : -1;
}

char *registry_seal(const unsigned char key[32], const char *json, long long ts_ms,
                    unsigned long long seq)
{
    size_t n = json ? strlen(json) : 0;
    if (n < 2 || json[0] != '{' || json[n - 1] != '}')
        return NULL;
    size_t cap = n + 64 + SEAL_LEN;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    int k = snprintf(out, cap, "%.*s%s\"ts\":%lld,\"seq\":%llu", (int)(n - 1), json,
                     n > 2 ? "," : "", ts_ms, seq);
    unsigned char mac[32];
    if (k < 0 || (size_t)k + SEAL_LEN >= cap || seal_mac(key, out, (size_t)k, mac) < 0) {
        free(out);
        return NULL;
    }
    memcpy(out + k, SEAL_HEAD, sizeof(SEAL_HEAD) - 1);
    k += (int)sizeof(SEAL_HEAD) - 1;
    crypto_hex(mac, sizeof(mac), out + k);
    k += 64;
    memcpy(out + k, "\"}", 3);
    return out;
}

int registry_unseal(const unsigned char key[32], const char *msg, size_t len)
{
    if (len < SEAL_LEN + 2)
        return 0;
    const char *seal = msg + len - SEAL_LEN;
    if (memcmp(seal, SEAL_HEAD, sizeof(SEAL_HEAD) - 1) || msg[len - 2] != '"' ||
        msg[len - 1] != '}')
        return 0;
    const char *hex = seal + sizeof(SEAL_HEAD) - 1;
    unsigned char want[32], mac[32];
    for (int i = 0; i < 32; i++) {
        int hi = crypto_hex_digit(hex[2 * i]), lo = crypto_hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        want[i] = (unsigned char)(hi << 4 | lo);
    }
    if (seal_mac(key, msg, (size_t)(seal - msg), mac) < 0)
        return -1;
    return crypto_ct_equal(mac, sizeof(mac), want, sizeof(want)) ? 1 : -1;
}

/* ---- sealed registrations (registry.h) ------------------------------------------------ */

#define REG_LABEL "aurora-registration-v1"

int registry_member_key(const char *secret, unsigned char key[32])
{
    return derive_key(secret, REG_LABEL, key);
}

/* The MAC of "<cluster_id>\n<instance> <addr> <expires_ms>" (head: the
 * member's first three fields, headlen bytes). */
static int member_mac(const unsigned char key[32], const char *cluster_id, const char *head,
                      size_t headlen, unsigned char mac[32])
{
    char text[STORE_CLUSTER_ID_LEN + REGISTRY_MEMBER_MAX + 2];
    size_t cl = strlen(cluster_id);
    if (cl + 1 + headlen > sizeof(text))
        return -1;
    memcpy(text, cluster_id, cl);
    text[cl] = '\n';
    memcpy(text + cl + 1, head, headlen);
    return seal_mac(key, text, cl + 1 + headlen, mac);
}

int registry_seal_member(const unsigned char key[32], const char *cluster_id,
                         const char *instance, const char *addr, long long expires_ms, char *out,
                         size_t cap)
{
    int k = snprintf(out, cap, "%s %s %lld ", instance, addr, expires_ms);
    unsigned char mac[32];
    if (k < 0 || (size_t)k + 65 > cap || strchr(instance, ' ') || strchr(addr, ' ') ||
        member_mac(key, cluster_id, out, (size_t)k - 1, mac) < 0)
        return -1;
    crypto_hex(mac, sizeof(mac), out + k);
    out[k + 64] = '\0';
    return 0;
}

int registry_open_member(const unsigned char key[32], const char *cluster_id, const char *member,
                         char *instance, size_t icap, char *addr, size_t acap,
                         long long *expires_ms)
{
    const char *f[4];
    size_t len[4];
    int n = 0;
    for (const char *p = member; n < 4;) {
        const char *sp = strchr(p, ' ');
        f[n] = p;
        len[n++] = sp ? (size_t)(sp - p) : strlen(p);
        if (!sp)
            break;
        p = sp + 1;
    }
    if (n < 2 || len[0] >= icap || len[1] >= acap ||
        (n == 4 && f[3] + len[3] != member + strlen(member)))
        return -1; /* not a registration of any version */
    memcpy(instance, f[0], len[0]);
    instance[len[0]] = '\0';
    memcpy(addr, f[1], len[1]);
    addr[len[1]] = '\0';
    if (n == 2)
        return 0; /* "<instance> <addr>": a version before the seals */
    if (n != 4 || len[2] == 0 || len[2] > 15 || len[3] != 64)
        return -1;
    long long exp = 0;
    for (size_t i = 0; i < len[2]; i++) {
        if (f[2][i] < '0' || f[2][i] > '9')
            return -1;
        exp = exp * 10 + (f[2][i] - '0');
    }
    unsigned char want[32], mac[32];
    for (int i = 0; i < 32; i++) {
        int hi = crypto_hex_digit(f[3][2 * i]), lo = crypto_hex_digit(f[3][2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -2;
        want[i] = (unsigned char)(hi << 4 | lo);
    }
    if (member_mac(key, cluster_id, member, (size_t)(f[3] - 1 - member), mac) < 0 ||
        !crypto_ct_equal(mac, sizeof(mac), want, sizeof(want)))
        return -2;
    *expires_ms = exp;
    return 1;
}

/* ---- state ------------------------------------------------------------------------ */

typedef enum { OP_UP, OP_DOWN, OP_PUBLISH } op_kind;

typedef struct op {
    struct op *next;
    op_kind kind;
    char cluster_id[STORE_CLUSTER_ID_LEN];
    char *message; /* OP_PUBLISH: the JSON */
    int legacy;    /* OP_PUBLISH of a legacy connection's news: announced again anyway */
} op;

typedef struct inbound {
    struct inbound *next;
    char org_id[STORE_ID_LEN];
    char cluster_id[STORE_CLUSTER_ID_LEN]; /* "": re-check every token (see push_recheck) */
    char token_id[STORE_ID_LEN]; /* "" = every session of the cluster */
    char reason[64];
    char instance[65]; /* a supersession: that agent process's older sessions */
    long long conn;
    /* a legacy connection became ready (legacy 1) or ended (legacy 2) on the
     * replica `from`, at legacy_ms; or that replica missed such news and
     * asks for every legacy connection again (legacy 3) */
    int legacy;
    long long legacy_ms;
    char from[STORE_ID_LEN];
    char addr[256]; /* legacy: that replica's AURORA_INTERNAL_ADDR ("": not said) */
    long long renew_ms; /* legacy: that replica's renewal period (0: not said) */
    /* with cluster_id "": a re-check because a sealed message came stamped
     * outside the window (0: because Redis is back) */
    int stale;
} inbound;

/* A sender whose seals were taken: the last seq taken from it. */
typedef struct {
    char from[STORE_ID_LEN];
    unsigned long long seq;
    int64_t heard_ms; /* mono ms */
} sender;
/* Senders remembered; beyond, the one heard from longest ago is forgotten
 * (any message of it replayed is then dropped as stale, once its window has
 * passed).  Only sealed messages make one: a replica restarted is a new
 * sender (a new instance id), so this is the replicas of the last minute. */
#define MAX_SENDERS 256

typedef struct {
    char cluster_id[STORE_CLUSTER_ID_LEN];
    int sessions;
    /* its sealed registration as last written ("": none yet): a renewal
     * writes a new one (the expiry is sealed in it) and removes this */
    char member[REGISTRY_MEMBER_MAX];
} held;

/* Process-wide like instance.c: one registry per server process. */
static struct {
    int enabled;
    registry_redis_url url;
    char addr[256];   /* AURORA_INTERNAL_ADDR */
    /* "<instance_id> <addr>": the registration of a version before the
     * seals, written beside the sealed one with AURORA_REGISTRY_ACCEPT_UNSIGNED */
    char member[STORE_ID_LEN + 260];
    char instance[STORE_ID_LEN];
    int lease;
    struct lws_context *lws;
    pthread_t thread;
    int thread_started;
    int wake[2];
    pthread_mutex_t mu;
    op *ops, *ops_tail;      /* loop -> thread */
    inbound *in, *in_tail;   /* thread -> loop */
    size_t nin;              /* in R.in, at most REGISTRY_MAX_INBOUND */
    /* Messages dropped with R.in full since the loop last took it: the
     * loop re-checks everything once it does (registry_deliver). */
    unsigned long long in_dropped;
    int stop;
    atomic_int connected;
    /* A worker's lookup got no answer: the registry thread checks Redis at
     * once (lookups are skipped meanwhile) rather than at its next renewal. */
    atomic_int suspect;
    /* The registry thread renewed the registrations (1), or a renewal's
     * time came while Redis was away (2): the loop renews the legacy
     * connections' announcements too, or with Redis away only counts the
     * renewal (tunnel_legacy_renew).  A flag, not a message: renewals the
     * loop had no time for count as one. */
    atomic_int renewed;
    /* The numeric address the registry thread last reached Redis at (under
     * mu): workers' lookups connect there and never resolve the host name,
     * since a blocking getaddrinfo would escape every lookup timeout. */
    char lookup_ip[INET6_ADDRSTRLEN];
    pthread_key_t lookup_key;
    int key_made;
    /* the thread's own */
    redisContext *cmd, *sub;
    held *held;
    size_t nheld, capheld;
    op *unsent, *unsent_tail; /* publishes waiting for Redis */
    size_t nunsent;
    prom_family_t *m_up, *m_held, *m_closes, *m_dropped, *m_rejected, *m_reg_rejected;
    unsigned char seal_key[32]; /* registry_seal_key of the forward secret */
    unsigned char member_key[32]; /* registry_member_key of it */
    atomic_llong reg_quiet_until; /* mono ms: a rejected registration said once a minute */
    atomic_ullong reg_unsaid;     /* rejected since, not said */
    int accept_unsigned;        /* AURORA_REGISTRY_ACCEPT_UNSIGNED */
    unsigned long long seq;     /* the thread's: the last seq sealed */
    sender senders[MAX_SENDERS]; /* the thread's */
    size_t nsenders;
    int64_t stale_quiet_until; /* the thread's: mono ms; a stale message re-checks once a window */
    int64_t skew_ms;    /* AURORA_REGISTRY_TEST_CLOCK_SKEW_MS (registry_clock_ms) */
    /* Redis's clock (TIME, µs since the epoch) minus this host's monotonic
     * clock (µs), as the registry thread last read it (sample_clock), once
     * clock_known: registry_clock_ms reads the clock every replica shares. */
    atomic_llong clock_off_us;
    atomic_int clock_known;
    int time_refused; /* the thread's: TIME refused, said once */
    int publish_refused; /* the thread's: PUBLISH refused, said until one is taken */
    int64_t publish_retry_us; /* the thread's: not sent again before (mono_us; 0: now) */
    int ever_connected; /* the thread's: a connect after this one is a reconnect */
    int sub_ping;       /* the thread's: a PING on the subscription awaits its pong */
    int64_t ignored_quiet_until; /* the thread's: mono ms; ignored messages said once a minute */
    unsigned long long ignored_unsaid; /* the thread's: ignored since, not said */
} R = { .wake = { -1, -1 }, .mu = PTHREAD_MUTEX_INITIALIZER };

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Redis's clock carried forward on this host's monotonic one: every replica
 * reads the same clock (to within half a round trip to Redis), whatever its
 * own wall clock says, and a step of the wall clock changes nothing.  Before
 * Redis was first reached (or where it refuses TIME), this host's wall
 * clock. */
int64_t registry_clock_ms(void)
{
    if (atomic_load(&R.clock_known))
        return (mono_us() + (int64_t)atomic_load(&R.clock_off_us)) / 1000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + R.skew_ms;
}

int registry_enabled(void) { return R.enabled; }
const char *registry_self_addr(void) { return R.enabled ? R.addr : ""; }
int registry_connected(void) { return atomic_load(&R.connected); }

static void wake_thread(void)
{
    char c = 1;
    if (R.wake[1] >= 0 && write(R.wake[1], &c, 1) < 0 && errno != EAGAIN)
        log_warn("registry: cannot wake its thread: %s", strerror(errno));
}

static void push_op(op *o)
{
    pthread_mutex_lock(&R.mu);
    if (R.ops_tail)
        R.ops_tail->next = o;
    else
        R.ops = o;
    R.ops_tail = o;
    pthread_mutex_unlock(&R.mu);
    wake_thread();
}

static void queue_cluster(op_kind k, const char *cluster_id)
{
    if (!R.enabled || !cluster_id || !cluster_id[0])
        return;
    op *o = calloc(1, sizeof(*o));
    if (!o) {
        log_error("registry: out of memory; cluster %s not %s", cluster_id,
                  k == OP_UP ? "registered" : "unregistered");
        return;
    }
    o->kind = k;
    snprintf(o->cluster_id, sizeof(o->cluster_id), "%s", cluster_id);
    push_op(o);
}

void registry_session_up(const char *cluster_id) { queue_cluster(OP_UP, cluster_id); }
void registry_session_down(const char *cluster_id) { queue_cluster(OP_DOWN, cluster_id); }

/* A renewal of the registrations every third of the lease. */
static int renew_period_ms(void) { return R.lease * 1000 / 3; }

int registry_aside_renewals(long long their_ms, long long own_ms)
{
    if (own_ms < REGISTRY_MIN_PERIOD_MS)
        own_ms = REGISTRY_MIN_PERIOD_MS;
    if (their_ms < REGISTRY_MIN_PERIOD_MS)
        their_ms = REGISTRY_MIN_PERIOD_MS;
    if (their_ms > REGISTRY_MAX_PERIOD_MS)
        their_ms = REGISTRY_MAX_PERIOD_MS;
    /* the least n whose n - 1 renewals of ours span its lease: (n - 1) * own >= lease */
    long long lease = (long long)(TUNNEL_LEGACY_ASIDE_RENEWALS - 1) * their_ms;
    return (int)((lease + own_ms - 1) / own_ms) + 1;
}

/* Queues message m (consumed) on aurora:close; `legacy`: news of a legacy
 * connection (made again anyway, so the first to go when the queue kept
 * while Redis is away is full).  Out of memory: `lost` is logged. */
static void publish(cJSON *m, int legacy, const char *lost, const char *cluster_id)
{
    op *o = calloc(1, sizeof(*o));
    char *json = m ? cJSON_PrintUnformatted(m) : NULL;
    cJSON_Delete(m);
    if (!o || !json) {
        free(o);
        free(json);
        log_error("registry: out of memory; %s%s", lost, cluster_id ? cluster_id : "");
        return;
    }
    o->kind = OP_PUBLISH;
    o->message = json;
    o->legacy = legacy;
    push_op(o);
}

void registry_publish_close(const char *org_id, const char *cluster_id, const char *token_id,
                            const char *reason)
{
    if (!R.enabled)
        return;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "from", R.instance);
    cJSON_AddStringToObject(m, "org_id", org_id);
    cJSON_AddStringToObject(m, "cluster_id", cluster_id);
    cJSON_AddStringToObject(m, "token_id", token_id ? token_id : "");
    cJSON_AddStringToObject(m, "reason", reason);
    publish(m, 0, "this close reaches no other replica: cluster ", cluster_id);
}

void registry_publish_supersede(const char *org_id, const char *cluster_id,
                                const char *instance, long long conn)
{
    if (!R.enabled)
        return;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "from", R.instance);
    cJSON_AddStringToObject(m, "org_id", org_id);
    cJSON_AddStringToObject(m, "cluster_id", cluster_id);
    cJSON_AddStringToObject(m, "agent_instance", instance);
    cJSON_AddNumberToObject(m, "agent_connection", (double)conn);
    publish(m, 0, "other replicas keep the older sessions of an agent of cluster ", cluster_id);
}

void registry_publish_legacy(const char *org_id, const char *cluster_id, long long ready_ms,
                             int up)
{
    if (!R.enabled)
        return;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "from", R.instance);
    cJSON_AddStringToObject(m, "org_id", org_id);
    cJSON_AddStringToObject(m, "cluster_id", cluster_id);
    cJSON_AddNumberToObject(m, "legacy_ready_ms", (double)ready_ms);
    cJSON_AddBoolToObject(m, "legacy_up", up);
    /* where a replica whose older connection steps aside forwards what it
     * held unsent (tunnel_legacy_elsewhere) */
    cJSON_AddStringToObject(m, "addr", R.addr);
    /* how often it is announced again: the others give it up by it */
    cJSON_AddNumberToObject(m, "renew_ms", renew_period_ms());
    publish(m, 1, "other replicas do not hear of a legacy connection of cluster ", cluster_id);
}

/* This replica was away from the subscription: what it knew of other
 * replicas' legacy connections may be stale, they announce them again. */
static void publish_legacy_resync(void)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "from", R.instance);
    cJSON_AddBoolToObject(m, "legacy_resync", 1);
    publish(m, 0, "legacy connections of other replicas not asked again", NULL);
}

static void push_recheck(void);

/* ---- answers to other replicas' resyncs (loop thread) ------------------------------ */

/* REGISTRY_RESYNC_ANSWER_MS between two announcements of every legacy
 * connection here made for the replicas that ask (registry.h). */
static struct {
    tunnel_hub *hub;         /* the loop's, as registry_deliver last gave it */
    int64_t last_ms;         /* mono ms of the last announcement (0: none yet) */
    int pending;             /* a request waits for the next one (sul scheduled) */
    lws_sorted_usec_list_t sul;
} A;

static int64_t mono_ms(void);

/* Every legacy connection that takes commands here was just announced (a
 * resync's answer, a renewal's, this replica's own resync): what waited
 * is answered. */
static void resync_answered(void)
{
    A.last_ms = mono_ms();
    if (A.pending) {
        A.pending = 0;
        lws_sul_cancel(&A.sul);
    }
}

static void resync_answer_due(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    if (!A.pending || !A.hub)
        return;
    A.pending = 0;
    tunnel_legacy_resync(A.hub, 0, NULL);
    A.last_ms = mono_ms();
}

/* A replica asks (publish_legacy_resync): what it said before is forgotten
 * now; the announcement at once, or with the others that come before the
 * period since the last one is over. */
static void resync_asked(tunnel_hub *h, const char *from)
{
    tunnel_legacy_forget(h, from);
    int64_t now = mono_ms(), due = A.last_ms + REGISTRY_RESYNC_ANSWER_MS;
    if (!A.last_ms || now >= due) {
        tunnel_legacy_resync(h, 0, NULL);
        resync_answered();
        return;
    }
    if (A.pending)
        return;
    A.pending = 1;
    lws_sul_schedule(R.lws, 0, &A.sul, resync_answer_due, (lws_usec_t)(due - now) * LWS_US_PER_MS);
}

/* ---- Redis connection (registry thread) ------------------------------------------ */

static struct timeval ms_tv(int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    return tv;
}

/* Registrations are scored, looked up and trimmed on the clock the
 * replicas share (registry_clock_ms: Redis's once it was reached), not on
 * each host's own: read from a clock a lease or more ahead, a replica's
 * registrations outlived it by as much, every other replica's looked
 * lapsed to its lookups (their clusters' commands found nobody) and its
 * renewals trimmed them from the clusters it held too; from one behind,
 * its own were born lapsed. */
static long long reg_now_ms(void) { return (long long)registry_clock_ms(); }

/* A connected, authenticated context on the configured database at host (a
 * numeric address from a worker: no name to resolve), or NULL. */
static redisContext *redis_open(const char *host, int timeout_ms, char *why, size_t whylen)
{
    redisContext *c = redisConnectWithTimeout(host, R.url.port, ms_tv(timeout_ms));
    if (!c || c->err) {
        snprintf(why, whylen, "%s", c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, ms_tv(timeout_ms));
    redisReply *r = NULL;
    if (R.url.password[0]) {
        r = R.url.user[0] ? redisCommand(c, "AUTH %s %s", R.url.user, R.url.password)
                          : redisCommand(c, "AUTH %s", R.url.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "AUTH refused: %s", r ? r->str : c->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (R.url.db) {
        r = redisCommand(c, "SELECT %d", R.url.db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "SELECT %d refused: %s", R.url.db, r ? r->str : c->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

static void drop_connections(const char *why)
{
    if (R.cmd || R.sub)
        log_warn("registry: lost Redis at %s:%d (%s); reconnecting", R.url.host, R.url.port, why);
    if (R.cmd)
        redisFree(R.cmd);
    if (R.sub)
        redisFree(R.sub);
    R.cmd = R.sub = NULL;
    atomic_store(&R.connected, 0);
    if (R.m_up)
        prom_set(R.m_up, NULL, 0);
}

/* Runs the n commands appended to R.cmd; 0 when every one was carried out.
 * An error answer means this Redis cannot keep the registrations now: a
 * primary demoted to a replica by a failover (READONLY: the connection
 * stays up while the service's address moves to the new primary), one
 * still loading its data (LOADING), out of memory, or wanting a password.
 * The connection is dropped and made again with backoff, which follows a
 * failover to the new primary and registers everything there; kept, every
 * renewal was refused for as long as the connection lived while the
 * registry reported itself connected. */
static int run_pipeline(int n)
{
    char refused[200] = "";
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(R.cmd, (void **)&r) != REDIS_OK) {
            drop_connections(R.cmd->errstr);
            return -1;
        }
        if (r && r->type == REDIS_REPLY_ERROR && !refused[0])
            snprintf(refused, sizeof(refused), "it refused a command: %.150s", r->str);
        freeReplyObject(r);
    }
    if (refused[0]) {
        drop_connections(refused);
        return -1;
    }
    return 0;
}

/* A Redis score: ms as seconds with three decimals, written exactly. */
static void score_of(long long ms, char *out, size_t cap)
{
    snprintf(out, cap, "%lld.%03lld", ms / 1000, ms % 1000);
}

/* h registered (again) until expires_ms: its sealed member, the one it
 * replaces removed (the expiry is in the seal, so each renewal is a new
 * member; one left behind by a lost connection lapses by its seal).  The
 * number of commands appended. */
static int append_register(held *h, long long expires_ms)
{
    char key[sizeof(KEY_PREFIX) + STORE_CLUSTER_ID_LEN];
    snprintf(key, sizeof(key), KEY_PREFIX "%s", h->cluster_id);
    char score[32], member[REGISTRY_MEMBER_MAX];
    score_of(expires_ms, score, sizeof(score));
    int n = 0;
    if (registry_seal_member(R.member_key, h->cluster_id, R.instance, R.addr, expires_ms, member,
                             sizeof(member)) == 0) {
        redisAppendCommand(R.cmd, "ZADD %s %s %s", key, score, member);
        n++;
        if (h->member[0] && strcmp(h->member, member)) {
            redisAppendCommand(R.cmd, "ZREM %s %s", key, h->member);
            n++;
        }
        snprintf(h->member, sizeof(h->member), "%s", member);
    }
    /* During a rolling upgrade, the form a replica of the version before
     * the seals reads: it takes the first member it meets, in the order of
     * the scores, for the address, so this one goes a millisecond above
     * the sealed one, which it cannot read. */
    if (R.accept_unsigned) {
        score_of(expires_ms + 1, score, sizeof(score));
        redisAppendCommand(R.cmd, "ZADD %s %s %s", key, score, R.member);
        n++;
    }
    /* The key outlives its members: nothing to clean.  Every holder sets
     * its time to live, so it must outlast the longest lease any replica may
     * have, not ours: set to two of ours by a replica with a short lease,
     * the key went with it and took a live registration of a replica
     * renewing less often (a lease over six times ours) along, until that
     * one's next renewal, and the cluster took no forwarded command. */
    redisAppendCommand(R.cmd, "EXPIRE %s %d", key, 2 * REGISTRY_MAX_LEASE_S);
    return n + 1;
}

/* h's registrations removed (its last session ended, or the replica
 * stops): the sealed one and the unsigned form.  Commands appended. */
static int append_unregister(held *h)
{
    redisAppendCommand(R.cmd, "ZREM " KEY_PREFIX "%s %s", h->cluster_id, R.member);
    if (!h->member[0])
        return 1;
    redisAppendCommand(R.cmd, "ZREM " KEY_PREFIX "%s %s", h->cluster_id, h->member);
    return 2;
}

/* 0 while R.cmd leads to a primary.  After a failover the old primary,
 * now a replica, keeps its connections: a replica that registers nothing
 * (it holds no agent) would never be refused a write, and would go on
 * publishing its revocations where nobody on the new primary hears them
 * (a replica does not pass a PUBLISH on to its primary).  A Redis that
 * does not know ROLE (renamed away by a managed service) is taken as a
 * primary: the writes tell otherwise. */
static int check_role(void)
{
    redisReply *r = redisCommand(R.cmd, "ROLE");
    if (!r) {
        drop_connections(R.cmd->errstr);
        return -1;
    }
    char role[32] = "";
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_STRING)
        snprintf(role, sizeof(role), "%s", r->element[0]->str);
    freeReplyObject(r);
    if (role[0] && strcmp(role, "master") != 0) {
        char why[96];
        snprintf(why, sizeof(why), "it is a %s, not the primary (a failover?)", role);
        drop_connections(why);
        return -1;
    }
    return 0;
}

/* Every cluster held, registered again (after a heartbeat period, or once
 * Redis is back).  Members other replicas left to lapse are trimmed too. */
static int renew_all(void)
{
    if (!R.cmd || check_role() < 0)
        return -1;
    long long now = reg_now_ms(), expires = now + R.lease * 1000LL;
    char upto[40] = "(";
    score_of(now, upto + 1, sizeof(upto) - 1);
    int n = 0;
    for (size_t i = 0; i < R.nheld; i++) {
        n += append_register(&R.held[i], expires);
        redisAppendCommand(R.cmd, "ZREMRANGEBYSCORE " KEY_PREFIX "%s -inf %s",
                           R.held[i].cluster_id, upto);
        n++;
        /* Bounded batches: a thousand clusters make one round trip per 300. */
        if (n >= 900) {
            if (run_pipeline(n) < 0)
                return -1;
            n = 0;
        }
    }
    return n ? run_pipeline(n) : 0;
}

static int subscribe(void)
{
    redisReply *r = redisCommand(R.sub, "SUBSCRIBE %s", CLOSE_CHANNEL);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof(why), "SUBSCRIBE refused: %.150s", r ? r->str : R.sub->errstr);
        if (r)
            freeReplyObject(r);
        drop_connections(why);
        return -1;
    }
    freeReplyObject(r);
    /* The subscription is read only when poll says so; a read past then
     * would wait for a message. */
    redisSetTimeout(R.sub, ms_tv(IO_TIMEOUT_MS));
    R.sub_ping = 0;
    return 0;
}

/* At each renewal: the subscription answered the PING of the renewal
 * before (read_subscription), and is asked again.  Nothing else is ever
 * sent on it, and Redis says nothing of a subscriber whose connection went
 * silent (a NAT, conntrack or load balancer dropped the flow without a
 * word) while the other connection keeps the registrations: without this
 * the replica heard no revocation, supersession or legacy connection
 * again for as long as it lived.  -1: dropped (reconnected, and what was
 * missed re-checked, push_recheck). */
static void read_subscription(void);

static int check_subscription(void)
{
    if (!R.sub)
        return -1;
    /* what came while this thread was busy elsewhere first */
    struct pollfd pf = { R.sub->fd, POLLIN, 0 };
    if (R.sub_ping && poll(&pf, 1, 0) > 0) {
        read_subscription();
        if (!R.sub)
            return -1;
    }
    if (R.sub_ping) {
        drop_connections("the subscription did not answer a PING within a renewal");
        return -1;
    }
    int done = 0;
    if (redisAppendCommand(R.sub, "PING") != REDIS_OK) {
        drop_connections(R.sub->errstr[0] ? R.sub->errstr : "PING on the subscription");
        return -1;
    }
    while (!done)
        if (redisBufferWrite(R.sub, &done) != REDIS_OK) {
            drop_connections(R.sub->errstr[0] ? R.sub->errstr : "PING on the subscription");
            return -1;
        }
    R.sub_ping = 1;
    return 0;
}

/* The registry thread's first connection: the host name is resolved here,
 * on this thread (where a slow resolver delays only the registry), and each
 * address tried in turn; the one that answered is kept for the lookups. */
static redisContext *open_resolving(char *why, size_t whylen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(R.url.host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(why, whylen, "cannot resolve %.120s: %s", R.url.host, gai_strerror(rc));
        return NULL;
    }
    snprintf(why, whylen, "%.120s has no IPv4 or IPv6 address", R.url.host);
    redisContext *c = NULL;
    for (struct addrinfo *ai = res; ai && !c; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        const void *a = NULL;
        if (ai->ai_family == AF_INET)
            a = &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6)
            a = &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
        if (!a || !inet_ntop(ai->ai_family, a, ip, sizeof(ip)))
            continue;
        if ((c = redis_open(ip, IO_TIMEOUT_MS, why, whylen)) != NULL) {
            pthread_mutex_lock(&R.mu);
            snprintf(R.lookup_ip, sizeof(R.lookup_ip), "%s", ip);
            pthread_mutex_unlock(&R.mu);
        }
    }
    freeaddrinfo(res);
    return c;
}

/* Reads Redis's clock (TIME) for registry_clock_ms, at each connection and
 * renewal: registrations expire on it (now_s), and the legacy connections
 * of a cluster are ranked across replicas by when each became ready, and
 * read from each replica's own wall clock,
 * one whose clock ran ahead outranked the newer connections of the others
 * for as long as it did.  -1: the connection dropped.  A Redis that refuses
 * TIME (renamed away) leaves the clock as it was, said once. */
static int sample_clock(int first)
{
    int64_t t0 = mono_us();
    redisReply *r = redisCommand(R.cmd, "TIME");
    int64_t t1 = mono_us();
    if (!r) {
        drop_connections(R.cmd->errstr[0] ? R.cmd->errstr : "no answer to TIME");
        return -1;
    }
    long long sec = 0, usec = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
        sec = strtoll(r->element[0]->str, NULL, 10);
        usec = strtoll(r->element[1]->str, NULL, 10);
    }
    if (sec > 0 && sec < 9000000000LL && usec >= 0 && usec < 1000000) {
        if (first || t1 - t0 <= CLOCK_SAMPLE_MAX_RTT_US || !atomic_load(&R.clock_known)) {
            /* Redis read its clock somewhere in [t0, t1]: the middle. */
            atomic_store(&R.clock_off_us, sec * 1000000 + usec - (t0 + (t1 - t0) / 2));
            atomic_store(&R.clock_known, 1);
        }
    } else if (!R.time_refused) {
        R.time_refused = 1;
        log_warn("registry: Redis does not tell its time (TIME: %.100s); legacy connections "
                 "are ranked by this host's clock, which must agree with the other replicas'",
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected answer");
    }
    freeReplyObject(r);
    return 0;
}

static int try_connect(void)
{
    char why[256];
    R.cmd = open_resolving(why, sizeof(why));
    if (R.cmd)
        R.sub = redis_open(R.lookup_ip, IO_TIMEOUT_MS, why, sizeof(why)); /* this thread writes it */
    if (!R.cmd || !R.sub) {
        if (R.cmd)
            redisFree(R.cmd);
        R.cmd = NULL;
        return -1;
    }
    /* the clock first: the registrations are scored on it (now_s) */
    if (subscribe() < 0 || sample_clock(1) < 0 || renew_all() < 0)
        return -1;
    R.publish_retry_us = 0; /* what Redis refused goes again at once */
    atomic_store(&R.connected, 1);
    prom_set(R.m_up, NULL, 1);
    if (R.ever_connected)
        push_recheck();
    R.ever_connected = 1;
    log_info("registry: connected to Redis at %s:%d (%s); %zu cluster(s) registered", R.url.host,
             R.url.port, R.lookup_ip, R.nheld);
    return 0;
}

/* ---- held clusters (registry thread) ---------------------------------------------- */

static held *find_held(const char *cluster_id)
{
    for (size_t i = 0; i < R.nheld; i++)
        if (!strcmp(R.held[i].cluster_id, cluster_id))
            return &R.held[i];
    return NULL;
}

static void apply_up(const char *cluster_id)
{
    held *h = find_held(cluster_id);
    if (h) {
        h->sessions++;
        return;
    }
    if (R.nheld == R.capheld) {
        size_t cap = R.capheld ? R.capheld * 2 : 64;
        held *n = realloc(R.held, cap * sizeof(*n));
        if (!n) {
            log_error("registry: out of memory; cluster %s not registered", cluster_id);
            return;
        }
        R.held = n;
        R.capheld = cap;
    }
    h = &R.held[R.nheld++];
    snprintf(h->cluster_id, sizeof(h->cluster_id), "%s", cluster_id);
    h->sessions = 1;
    h->member[0] = '\0';
    if (R.cmd)
        run_pipeline(append_register(h, reg_now_ms() + R.lease * 1000LL));
}

static void apply_down(const char *cluster_id)
{
    held *h = find_held(cluster_id);
    if (!h || --h->sessions > 0)
        return;
    int n = R.cmd ? append_unregister(h) : 0;
    *h = R.held[--R.nheld];
    if (n)
        run_pipeline(n);
}

static void keep_unsent(op *o)
{
    /* Full: a legacy connection's news gives way to a close (a revocation
     * dropped here reaches no replica that kept Redis: nothing there
     * re-checks), as every replica announces its legacy connections again,
     * and forgets what this one said, once this one is back (publish_legacy_resync). */
    if (R.nunsent >= MAX_QUEUED_CLOSES && o->legacy) {
        free(o->message);
        free(o);
        return;
    }
    if (R.nunsent >= MAX_QUEUED_CLOSES) {
        op *prev = NULL, *l = R.unsent;
        while (l && !l->legacy) {
            prev = l;
            l = l->next;
        }
        if (l) {
            if (prev)
                prev->next = l->next;
            else
                R.unsent = l->next;
            if (R.unsent_tail == l)
                R.unsent_tail = prev;
            R.nunsent--;
            free(l->message);
            free(l);
        }
    }
    if (R.nunsent >= MAX_QUEUED_CLOSES) {
        log_error("registry: Redis away and %d closes waiting; dropping one", MAX_QUEUED_CLOSES);
        free(o->message);
        free(o);
        return;
    }
    o->next = NULL;
    if (R.unsent_tail)
        R.unsent_tail->next = o;
    else
        R.unsent = o;
    R.unsent_tail = o;
    R.nunsent++;
}

/* Puts every close ahead of the legacy connections' news, each kind in the
 * order it was queued.  A replica back after an outage had up to 4096
 * messages to publish, the revocation made during it last: the legacy news
 * of agents that came and went ahead of it (the news all stale by then, and
 * made good by the announcements that follow the reconnection) held it back
 * for as long as 4095 round trips took, 30 s and more on a loaded machine. */
static void closes_first(void)
{
    op *closes = NULL, *closes_tail = NULL, *news = NULL, *news_tail = NULL;
    for (op *o = R.unsent, *next; o; o = next) {
        next = o->next;
        o->next = NULL;
        op **head = o->legacy ? &news : &closes, **tail = o->legacy ? &news_tail : &closes_tail;
        if (*tail)
            (*tail)->next = o;
        else
            *head = o;
        *tail = o;
    }
    if (closes_tail)
        closes_tail->next = news;
    R.unsent = closes ? closes : news;
    R.unsent_tail = news_tail ? news_tail : closes_tail;
}

static void flush_unsent(void)
{
    /* A primary a failover demoted takes a PUBLISH (a replica accepts one)
     * and passes it to nobody subscribed on the new primary, where the other
     * replicas listen once they followed it: until this registry's next
     * renewal asks ROLE (a third of the lease later), every close published
     * was spent there.  Asked first, the closes wait for the reconnection. */
    if (!R.unsent || !R.cmd || mono_us() < R.publish_retry_us || check_role() < 0)
        return;
    closes_first();
    /* Pipelined, FLUSH_BATCH at a time: one round trip per batch, not per
     * message.  A message leaves the queue once Redis has published it; one
     * sent whose answer was lost goes again after the reconnection (a close
     * or an announcement heard twice changes nothing).  One Redis answered
     * with an error (ACLs refusing PUBLISH, NOAUTH after a password change,
     * BUSY under a script) reached nobody: it stays, with every one after it
     * (in their order; their answers are still read, the connection's
     * replies in step), and goes again PUBLISH_RETRY_MS later (thread_main
     * wakes for it), or at once after a reconnection.  Counted as sent, a
     * revocation was lost and the token's session stayed up on the replica
     * holding it. */
    while (R.unsent && R.cmd) {
        /* Sealed as it is sent, not as it was queued: a message kept while
         * Redis was away is stamped when it goes, within the receivers'
         * window, and one sent again gets a seq above the first try's. */
        int n = 0;
        for (op *o = R.unsent; o && n < FLUSH_BATCH; o = o->next, n++) {
            char *sealed = registry_seal(R.seal_key, o->message, (long long)registry_clock_ms(),
                                         ++R.seq);
            if (!sealed)
                break; /* out of memory: what is appended goes, the rest waits */
            redisAppendCommand(R.cmd, "PUBLISH %s %s", CLOSE_CHANNEL, sealed);
            free(sealed);
        }
        if (!n) {
            log_error("registry: out of memory sealing a message; %zu kept, sent again later",
                      R.nunsent);
            R.publish_retry_us = mono_us() + PUBLISH_RETRY_MS * 1000;
            return;
        }
        char refused[128] = "";
        for (int i = 0; i < n; i++) {
            redisReply *r = NULL;
            if (redisGetReply(R.cmd, (void **)&r) != REDIS_OK) {
                drop_connections(R.cmd->errstr);
                return;
            }
            if (r->type == REDIS_REPLY_ERROR && !refused[0])
                snprintf(refused, sizeof(refused), "%s", r->str ? r->str : "an error");
            freeReplyObject(r);
            if (refused[0])
                continue; /* kept, this one and the rest */
            op *o = R.unsent;
            R.unsent = o->next;
            if (!R.unsent)
                R.unsent_tail = NULL;
            R.nunsent--;
            free(o->message);
            free(o);
        }
        if (refused[0]) {
            if (!R.publish_refused)
                log_warn("registry: Redis refused to publish (%.100s); %zu message(s) kept, sent "
                         "again until it takes them",
                         refused, R.nunsent);
            R.publish_refused = 1;
            R.publish_retry_us = mono_us() + PUBLISH_RETRY_MS * 1000;
            return;
        }
        if (R.publish_refused)
            log_info("registry: Redis publishes again");
        R.publish_refused = 0;
        R.publish_retry_us = 0;
    }
}

static void apply_ops(void)
{
    pthread_mutex_lock(&R.mu);
    op *o = R.ops;
    R.ops = R.ops_tail = NULL;
    pthread_mutex_unlock(&R.mu);
    while (o) {
        op *next = o->next;
        switch (o->kind) {
        case OP_UP: apply_up(o->cluster_id); free(o); break;
        case OP_DOWN: apply_down(o->cluster_id); free(o); break;
        case OP_PUBLISH: keep_unsent(o); break;
        }
        o = next;
    }
    prom_set(R.m_held, NULL, (double)R.nheld);
    flush_unsent();
}

/* ---- inbound closes (registry thread -> loop) ------------------------------------- */

/* Queues in for the loop; with REGISTRY_MAX_INBOUND already waiting
 * (always_keep 0), drops it instead, and the loop re-checks everything once
 * it has taken what waits: a close, supersession or legacy news dropped
 * here is lost as if Redis had dropped it, and made up for as after a
 * reconnection.  A burst costs at least REGISTRY_MAX_INBOUND messages, so a
 * flood buys one re-check per that many. */
static void queue_inbound(inbound *in, int always_keep)
{
    pthread_mutex_lock(&R.mu);
    if (R.nin >= REGISTRY_MAX_INBOUND && !always_keep) {
        int first = R.in_dropped++ == 0;
        pthread_mutex_unlock(&R.mu);
        free(in);
        prom_add(R.m_dropped, NULL, 1);
        if (first) /* once a burst: the loop says how many when it catches up */
            log_warn("registry: %d messages from Redis wait for the event loop; dropping what "
                     "comes until it takes them, then re-checking every session's token and "
                     "asking the replicas for their legacy connections again",
                     REGISTRY_MAX_INBOUND);
        return;
    }
    if (R.in_tail)
        R.in_tail->next = in;
    else
        R.in = in;
    R.in_tail = in;
    R.nin++;
    pthread_mutex_unlock(&R.mu);
    lws_cancel_service(R.lws);
}

static void push_inbound(inbound *in) { queue_inbound(in, 0); }

/* Subscribed again after losing Redis: pub/sub kept nothing of what was
 * published meanwhile, so every session held looks its token up again.
 * Kept whatever waits: dropped, the replica would miss what was published
 * while it was away. */
static void push_recheck(void)
{
    inbound *in = calloc(1, sizeof(*in));
    if (in)
        queue_inbound(in, 1);
    else
        log_error("registry: out of memory; tokens revoked while Redis was away not re-checked");
}

/* A message for the loop about org's cluster (NULL: out of memory, the
 * message is lost as if Redis had dropped it). */
static inbound *inbound_about(const char *org, const char *cluster)
{
    inbound *in = calloc(1, sizeof(*in));
    if (in) {
        snprintf(in->org_id, sizeof(in->org_id), "%s", org);
        snprintf(in->cluster_id, sizeof(in->cluster_id), "%s", cluster);
    }
    return in;
}

/* A message heard on aurora:close is ignored (what: why, printf-style).
 * Said at most once a minute, the next line counting those not said: a
 * line per message was a line on every replica per PUBLISH, in a loop as
 * fast as whoever may publish likes, to the log pipeline they share. */
#define IGNORED_QUIET_MS 60000
static void ignored_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ignored_message(const char *fmt, ...)
{
    int64_t now = mono_ms();
    if (R.ignored_quiet_until && now < R.ignored_quiet_until) {
        R.ignored_unsaid++;
        return;
    }
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (R.ignored_unsaid)
        log_warn("registry: %s ignored, and %llu other message(s) on " CLOSE_CHANNEL
                 " ignored in the last minute",
                 what, R.ignored_unsaid);
    else
        log_warn("registry: %s ignored (said once a minute at most)", what);
    R.ignored_unsaid = 0;
    R.ignored_quiet_until = now + IGNORED_QUIET_MS;
}

/* src into dst (cap bytes, NUL included) as UTF-8: cut before the
 * character that does not fit, never inside it, and every byte that starts
 * no well-formed character replaced by U+FFFD (a replica's message is
 * parsed by cJSON, which passes any byte on).  The reason goes to the agent
 * in the WebSocket close frame, whose reason must be UTF-8 (RFC 6455 7.4.1:
 * an agent may fail the connection on one that is not), and to the log;
 * snprintf kept the first bytes of a character cut at the 63rd byte. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t n = strlen(src), o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq_len(p + i, n - i);
        const char *c = l ? src + i : "\xEF\xBF\xBD";
        size_t cl = l ? l : 3;
        if (o + cl >= cap)
            break;
        memcpy(dst + o, c, cl);
        o += cl;
        i += l ? l : 1;
    }
    dst[o] = '\0';
}

/* A message on aurora:close dropped for its seal (registry.h): counted by
 * why, and said as ignored messages are. */
static void rejected(const char *why)
{
    const char *v[] = { why };
    prom_add(R.m_rejected, v, 1);
}

/* 1 when seq is above the last one taken from `from` (then it is the last),
 * 0 when it is not: the message was heard before. */
static int fresh_seq(const char *from, unsigned long long seq)
{
    int64_t now = mono_ms();
    sender *slot = NULL;
    for (size_t i = 0; i < R.nsenders; i++) {
        sender *x = &R.senders[i];
        if (!strcmp(x->from, from)) {
            if (seq <= x->seq)
                return 0;
            x->seq = seq;
            x->heard_ms = now;
            return 1;
        }
        /* Silent for two windows: whatever it sealed is stale by now. */
        if (now - x->heard_ms > 2 * REGISTRY_SEAL_WINDOW_MS && !slot)
            slot = x;
    }
    if (!slot && R.nsenders < MAX_SENDERS)
        slot = &R.senders[R.nsenders++];
    if (!slot) { /* the one heard from longest ago */
        slot = &R.senders[0];
        for (size_t i = 1; i < R.nsenders; i++)
            if (R.senders[i].heard_ms < slot->heard_ms)
                slot = &R.senders[i];
    }
    snprintf(slot->from, sizeof(slot->from), "%s", from);
    slot->seq = seq;
    slot->heard_ms = now;
    return 1;
}

/* A genuine seal stamped outside the window: a replay, or a message that
 * took that long to come (Redis or this thread stalled; a clock read off,
 * as where Redis refuses TIME).  Dropped, as it may be a replay; a
 * revocation among such is still honoured by a re-check of every session's
 * token and of the legacy connections, once a window at most (replayed in
 * a loop, old messages buy that and no more). */
static void stale_recheck(void)
{
    int64_t now = mono_ms();
    if (R.stale_quiet_until && now < R.stale_quiet_until)
        return;
    R.stale_quiet_until = now + REGISTRY_SEAL_WINDOW_MS;
    inbound *in = calloc(1, sizeof(*in));
    if (!in) {
        log_error("registry: out of memory; a stale message's re-check not made");
        return;
    }
    in->stale = 1;
    queue_inbound(in, 1);
}

/* 1 when the message (len bytes) may be acted upon, *out its parse (NULL:
 * not JSON, taken unsigned: said as malformed by the caller); 0 when it is
 * dropped for its seal (registry.h) or is this replica's own.  Unparsed
 * unless the seal holds or unsigned messages are taken: a forgery costs a
 * MAC, not a parse. */
static int sealed_message(const char *json, size_t len, cJSON **out)
{
    *out = NULL;
    int sealed = registry_unseal(R.seal_key, json, len);
    if (sealed == 0) {
        /* a "sig" anywhere but where the seal goes is a seal that fails */
        int sig = memmem(json, len, "\"sig\"", 5) != NULL;
        if (!sig && !R.accept_unsigned) {
            rejected("unsigned");
            ignored_message("an unsigned message on " CLOSE_CHANNEL " (not a replica, or one of "
                            "a version that does not sign: AURORA_REGISTRY_ACCEPT_UNSIGNED takes "
                            "them during a rolling upgrade)");
            return 0;
        }
        if (R.accept_unsigned) {
            cJSON *m = cJSON_ParseWithLength(json, len);
            if (!cJSON_GetObjectItem(m, "sig")) {
                *out = m; /* a replica of the version before the seals */
                return 1;
            }
            cJSON_Delete(m);
        }
        sealed = -1;
    }
    if (sealed < 0) {
        rejected("bad_signature");
        ignored_message("a message on " CLOSE_CHANNEL " whose signature does not verify (not a "
                        "replica, or one with another AURORA_INTERNAL_FORWARD_SECRET)");
        return 0;
    }
    cJSON *m = cJSON_ParseWithLength(json, len);
    const char *from = cJSON_GetStringValue(cJSON_GetObjectItem(m, "from"));
    const cJSON *ts = cJSON_GetObjectItem(m, "ts"), *seq = cJSON_GetObjectItem(m, "seq");
    if (!from || strlen(from) >= STORE_ID_LEN || !cJSON_IsNumber(ts) || !cJSON_IsNumber(seq) ||
        !(seq->valuedouble >= 1 && seq->valuedouble < 9e15) ||
        !(ts->valuedouble > 0 && ts->valuedouble < 9e15)) {
        ignored_message("a sealed message on " CLOSE_CHANNEL " without its sender, time or "
                        "sequence");
        cJSON_Delete(m);
        return 0;
    }
    if (!strcmp(from, R.instance)) { /* ours: done here already */
        cJSON_Delete(m);
        return 0;
    }
    long long skew = (long long)ts->valuedouble - (long long)registry_clock_ms();
    if (skew > REGISTRY_SEAL_WINDOW_MS || skew < -REGISTRY_SEAL_WINDOW_MS) {
        rejected("stale");
        ignored_message("a message of replica %.40s stamped %lld ms from this replica's clock "
                        "(a replay, or a clock off; at most %d)",
                        from, skew, REGISTRY_SEAL_WINDOW_MS);
        stale_recheck();
        cJSON_Delete(m);
        return 0;
    }
    if (!fresh_seq(from, (unsigned long long)seq->valuedouble)) {
        rejected("replayed");
        ignored_message("a message of replica %.40s heard before (sequence %.0f: a replay)",
                        from, seq->valuedouble);
        cJSON_Delete(m);
        return 0;
    }
    *out = m;
    return 1;
}

static void on_close_message(const char *json, size_t len)
{
    if (len > REGISTRY_MAX_MESSAGE) {
        ignored_message("a message of %zu bytes on " CLOSE_CHANNEL " (at most %d)", len,
                        REGISTRY_MAX_MESSAGE);
        return;
    }
    cJSON *m;
    if (!sealed_message(json, len, &m))
        return; /* said and counted */
    const char *from = cJSON_GetStringValue(cJSON_GetObjectItem(m, "from"));
    const char *org = cJSON_GetStringValue(cJSON_GetObjectItem(m, "org_id"));
    const char *cluster = cJSON_GetStringValue(cJSON_GetObjectItem(m, "cluster_id"));
    const char *token = cJSON_GetStringValue(cJSON_GetObjectItem(m, "token_id"));
    const char *reason = cJSON_GetStringValue(cJSON_GetObjectItem(m, "reason"));
    const char *agent = cJSON_GetStringValue(cJSON_GetObjectItem(m, "agent_instance"));
    const cJSON *conn = cJSON_GetObjectItem(m, "agent_connection");
    const cJSON *lms = cJSON_GetObjectItem(m, "legacy_ready_ms");
    if (cJSON_IsTrue(cJSON_GetObjectItem(m, "legacy_resync"))) {
        if (from && from[0] && strlen(from) < STORE_ID_LEN && strcmp(from, R.instance)) {
            inbound *in = calloc(1, sizeof(*in));
            if (in) {
                in->legacy = 3;
                snprintf(in->from, sizeof(in->from), "%s", from);
                push_inbound(in);
            }
        }
        cJSON_Delete(m);
        return;
    }
    if (lms) { /* a legacy connection up or down (registry_publish_legacy) */
        const cJSON *up = cJSON_GetObjectItem(m, "legacy_up");
        const char *addr = cJSON_GetStringValue(cJSON_GetObjectItem(m, "addr"));
        if (!from || !org || !cluster || !from[0] || !org[0] || !cluster[0] ||
            strlen(from) >= STORE_ID_LEN || strlen(org) >= STORE_ID_LEN ||
            strlen(cluster) >= STORE_CLUSTER_ID_LEN || !cJSON_IsNumber(lms) ||
            !(lms->valuedouble > 0 && lms->valuedouble < 9e15) || !cJSON_IsBool(up) ||
            (addr && strlen(addr) >= sizeof(((inbound *)0)->addr))) {
            ignored_message("a malformed legacy connection message");
        } else if (strcmp(from, R.instance)) {
            inbound *in = inbound_about(org, cluster);
            if (in) {
                snprintf(in->from, sizeof(in->from), "%s", from);
                snprintf(in->addr, sizeof(in->addr), "%s", addr ? addr : "");
                in->legacy = cJSON_IsTrue(up) ? 1 : 2;
                in->legacy_ms = (long long)lms->valuedouble;
                /* anything but a period in range counts as not said, or as
                 * the bound (registry_aside_renewals) */
                const cJSON *period = cJSON_GetObjectItem(m, "renew_ms");
                if (cJSON_IsNumber(period) && period->valuedouble >= 1)
                    in->renew_ms = period->valuedouble < REGISTRY_MAX_PERIOD_MS
                                       ? (long long)period->valuedouble
                                       : REGISTRY_MAX_PERIOD_MS;
                push_inbound(in);
            }
        }
        cJSON_Delete(m);
        return;
    }
    if (agent) { /* a supersession (registry_publish_supersede) */
        if (!from || !org || !cluster || !org[0] || !cluster[0] || !agent[0] ||
            strlen(org) >= STORE_ID_LEN || strlen(cluster) >= STORE_CLUSTER_ID_LEN ||
            strlen(agent) > 64 || !cJSON_IsNumber(conn)) {
            ignored_message("a malformed supersession message");
        } else if (strcmp(from, R.instance)) {
            inbound *in = inbound_about(org, cluster);
            if (in) {
                snprintf(in->instance, sizeof(in->instance), "%s", agent);
                in->conn = conn->valuedouble >= 0 && conn->valuedouble < 9e15
                               ? (long long)conn->valuedouble
                               : 0;
                push_inbound(in);
            }
        }
        cJSON_Delete(m);
        return;
    }
    if (!from || !org || !cluster || !token || !reason || !org[0] || !cluster[0] ||
        strlen(org) >= STORE_ID_LEN || strlen(cluster) >= STORE_CLUSTER_ID_LEN ||
        strlen(token) >= STORE_ID_LEN) {
        ignored_message("a malformed close message");
        cJSON_Delete(m);
        return;
    }
    if (!strcmp(from, R.instance)) { /* ours: closed here already */
        cJSON_Delete(m);
        return;
    }
    inbound *in = inbound_about(org, cluster);
    if (in) {
        snprintf(in->token_id, sizeof(in->token_id), "%s", token);
        copy_utf8(in->reason, sizeof(in->reason), reason);
        push_inbound(in);
    }
    cJSON_Delete(m);
}

static void read_subscription(void)
{
    if (redisBufferRead(R.sub) != REDIS_OK) {
        drop_connections(R.sub->errstr[0] ? R.sub->errstr : "subscription closed");
        return;
    }
    for (;;) {
        redisReply *r = NULL;
        if (redisGetReplyFromReader(R.sub, (void **)&r) != REDIS_OK) {
            drop_connections(R.sub->errstr);
            return;
        }
        if (!r)
            return;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, "message") &&
            r->element[2]->type == REDIS_REPLY_STRING)
            on_close_message(r->element[2]->str, r->element[2]->len);
        else if ((r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  !strcasecmp(r->element[0]->str, "pong")) ||
                 (r->type == REDIS_REPLY_STATUS && !strcasecmp(r->str, "PONG")))
            R.sub_ping = 0; /* check_subscription's answer */
        freeReplyObject(r);
    }
}

/* Loop thread: what this replica may have missed on aurora:close (Redis was
 * away, or messages were dropped, queue_inbound) is made up for: every
 * session held looks its token up again (revocations, deletions), one
 * authenticating now too, and what it heard of other replicas' legacy
 * connections is asked again, before its own are announced again, as the
 * others forget what it announced before when asked.  A supersession missed
 * is not: the older session waits for its idle timeout. */
static void recheck_all(struct tunnel_hub *tunnels)
{
    tunnel_note_revocation(tunnels);
    tunnel_recheck_tokens(tunnels);
    publish_legacy_resync();
    tunnel_legacy_resync(tunnels, 1, NULL);
    resync_answered();
}

void registry_deliver(struct tunnel_hub *tunnels)
{
    if (!R.enabled)
        return;
    A.hub = tunnels;
    /* Taken first: what was heard before the renewal is applied before it. */
    int renewed = atomic_exchange(&R.renewed, 0);
    pthread_mutex_lock(&R.mu);
    inbound *in = R.in;
    R.in = R.in_tail = NULL;
    R.nin = 0;
    unsigned long long dropped = R.in_dropped;
    R.in_dropped = 0;
    pthread_mutex_unlock(&R.mu);
    while (in) {
        inbound *next = in->next;
        if (in->legacy == 3) { /* another replica asks (publish_legacy_resync) */
            resync_asked(tunnels, in->from);
            free(in);
            in = next;
            continue;
        }
        if (!in->cluster_id[0]) {
            if (in->stale)
                log_warn("registry: a replica's message came stamped outside %d ms (a replay, "
                         "or one held up); re-checking the tokens of %zu session(s) and the "
                         "legacy connections",
                         REGISTRY_SEAL_WINDOW_MS, tunnel_session_count(tunnels));
            else
                log_info("registry: Redis is back; re-checking the tokens of %zu session(s)",
                         tunnel_session_count(tunnels));
            recheck_all(tunnels);
            free(in);
            in = next;
            continue;
        }
        if (in->legacy) {
            tunnel_legacy_elsewhere(tunnels, in->org_id, in->cluster_id, in->from, in->addr,
                                    in->legacy_ms, in->legacy == 1,
                                    registry_aside_renewals(in->renew_ms ? in->renew_ms
                                                                         : renew_period_ms(),
                                                            renew_period_ms()));
            free(in);
            in = next;
            continue;
        }
        if (in->instance[0]) {
            int n = tunnel_close_superseded(tunnels, in->org_id, in->cluster_id, in->instance,
                                            in->conn);
            if (n)
                log_info("closed %d session(s) of cluster %s: the same agent connected to "
                         "another replica", n, in->cluster_id);
            free(in);
            in = next;
            continue;
        }
        /* Any session of that token authenticating right now looks again. */
        tunnel_note_revocation(tunnels);
        int n = tunnel_close_sessions(tunnels, in->org_id, in->cluster_id,
                                      in->token_id[0] ? in->token_id : NULL, in->reason);
        prom_add(R.m_closes, NULL, 1);
        if (n)
            log_info("closed %d session(s) of cluster %s on another replica's word (%s)", n,
                     in->cluster_id, in->reason);
        free(in);
        in = next;
    }
    /* After what was heard before the drops: the replicas' answers to the
     * resync asked here come after it. */
    if (dropped) {
        log_warn("registry: %llu message(s) from Redis dropped while the event loop was behind; "
                 "re-checking the tokens of %zu session(s) and the legacy connections",
                 dropped, tunnel_session_count(tunnels));
        recheck_all(tunnels);
    }
    if (renewed) {
        tunnel_legacy_renew(tunnels, renewed == 2);
        if (renewed == 1) /* announced, after every request taken above */
            resync_answered();
    }
}

/* ---- the thread ---------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void drain_wake(void)
{
    char buf[64];
    while (read(R.wake[0], buf, sizeof(buf)) > 0) {
    }
}

/* A lookup found Redis silent: is it?  Lookups stay skipped (connected 0)
 * unless it answers within the registry's own timeout. */
static void check_suspect(void)
{
    if (!atomic_exchange(&R.suspect, 0) || !R.cmd)
        return;
    redisReply *r = redisCommand(R.cmd, "PING");
    if (!r) {
        drop_connections(R.cmd->errstr[0] ? R.cmd->errstr : "no answer to PING");
        return;
    }
    freeReplyObject(r);
    atomic_store(&R.connected, 1);
}

static void *thread_main(void *arg)
{
    (void)arg;
    int backoff = BACKOFF_MIN_MS;
    int period_ms = renew_period_ms();
    int64_t next_try = 0, next_renew = mono_ms() + period_ms;
    for (;;) {
        pthread_mutex_lock(&R.mu);
        int stop = R.stop;
        pthread_mutex_unlock(&R.mu);
        int64_t now = mono_ms();
        if (!R.cmd && now >= next_try) {
            if (try_connect() == 0) {
                backoff = BACKOFF_MIN_MS;
                next_renew = mono_ms() + period_ms;
            } else {
                drop_connections("connect failed");
                next_try = now + backoff;
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            }
        }
        apply_ops();
        if (stop)
            break;
        check_suspect();
        if (mono_ms() >= next_renew) {
            /* renewed: the loop's legacy announcements too.  Redis away,
             * the renewal's time still counts there: a legacy connection
             * stepped aside for one on another replica hears nothing of it
             * and takes commands again once the lease ran out, as each
             * replica serves the agents it holds (it stepped aside for good
             * and its replica answered 503 for the whole outage). */
            if (!R.cmd) {
                atomic_store(&R.renewed, 2);
                lws_cancel_service(R.lws);
            } else if (check_subscription() == 0 && renew_all() == 0 && sample_clock(0) == 0) {
                atomic_store(&R.renewed, 1);
                lws_cancel_service(R.lws);
            }
            next_renew = mono_ms() + period_ms;
        }
        struct pollfd fds[2] = { { R.wake[0], POLLIN, 0 }, { R.sub ? R.sub->fd : -1, POLLIN, 0 } };
        int64_t until = R.cmd || next_renew < next_try ? next_renew : next_try;
        if (R.cmd && R.unsent && R.publish_retry_us && R.publish_retry_us / 1000 < until)
            until = R.publish_retry_us / 1000 + 1; /* flush_unsent's retry */
        int64_t wait = until - mono_ms();
        if (wait < 0)
            wait = 0;
        if (poll(fds, 2, (int)wait) < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            drain_wake();
        if (R.sub && fds[1].revents)
            read_subscription();
    }
    /* Stopping: the sessions closed, their downs applied; what is left. */
    if (R.cmd) {
        int n = 0;
        for (size_t i = 0; i < R.nheld; i++)
            n += append_unregister(&R.held[i]);
        run_pipeline(n);
    }
    drop_connections("stopping");
    return NULL;
}

/* ---- lookups (worker threads) --------------------------------------------------------- */

/* A registration a lookup passed over for its seal: counted by why
 * (unsigned: none, or not a registration at all; bad_signature), and
 * logged once a minute at most, as each command of the cluster meets it. */
static void member_rejected(const char *cluster_id, const char *why)
{
    const char *v[] = { why };
    prom_add(R.m_reg_rejected, v, 1);
    long long now = mono_ms(), until = atomic_load(&R.reg_quiet_until);
    if ((until && now < until) ||
        !atomic_compare_exchange_strong(&R.reg_quiet_until, &until, now + IGNORED_QUIET_MS)) {
        atomic_fetch_add(&R.reg_unsaid, 1);
        return;
    }
    unsigned long long unsaid = atomic_exchange(&R.reg_unsaid, 0);
    log_warn("registry: a registration of cluster %s ignored: %s (not a replica, or one with "
             "another AURORA_INTERNAL_FORWARD_SECRET%s); %llu other(s) in the last minute",
             cluster_id, !strcmp(why, "unsigned") ? "not signed" : "its signature does not verify",
             !strcmp(why, "unsigned") ? " or of a version that does not sign: "
                                        "AURORA_REGISTRY_ACCEPT_UNSIGNED takes them during a "
                                        "rolling upgrade"
                                      : "",
             unsaid);
}

static void free_lookup_conn(void *c) { redisFree(c); }

/* Redis did not answer a lookup: the commands after it skip Redis until the
 * registry thread has checked (check_suspect).  Without this every command
 * of every cluster, local ones included, held a store worker for a lookup
 * timeout or two until the registry's next renewal noticed. */
static void lookup_unanswered(void)
{
    if (atomic_exchange(&R.connected, 0)) {
        atomic_store(&R.suspect, 1);
        wake_thread();
    }
}

int registry_lookup(const char *cluster_id, char *addr, size_t cap)
{
    addr[0] = '\0';
    if (!R.enabled)
        return 0;
    if (!atomic_load(&R.connected))
        return -1; /* Redis away: do not make every command wait for a timeout */
    /* Registrations live at most the longest lease from now (a minute more
     * for the replicas' clocks): one scored beyond is no replica's. */
    long long now = reg_now_ms();
    char lo[32], hi[32];
    score_of(now, lo, sizeof(lo));
    score_of(now + REGISTRY_MAX_LEASE_S * 1000LL + 60000, hi, sizeof(hi));
    redisReply *r = NULL;
    /* A kept connection may have died with a Redis restart: one fresh try. */
    for (int attempt = 0; attempt < 2 && !r; attempt++) {
        redisContext *c = pthread_getspecific(R.lookup_key);
        if (!c) {
            char why[256], ip[INET6_ADDRSTRLEN];
            pthread_mutex_lock(&R.mu);
            snprintf(ip, sizeof(ip), "%s", R.lookup_ip);
            pthread_mutex_unlock(&R.mu);
            if (!ip[0])
                return -1; /* never reached yet: the registry thread resolves first */
            c = redis_open(ip, LOOKUP_TIMEOUT_MS, why, sizeof(why));
            if (!c) {
                log_warn("registry: lookup of cluster %s: cannot reach Redis (%s)", cluster_id,
                         why);
                lookup_unanswered();
                return -1;
            }
            pthread_setspecific(R.lookup_key, c);
        }
        r = redisCommand(c, "ZREVRANGEBYSCORE " KEY_PREFIX "%s %s %s WITHSCORES LIMIT 0 %d",
                         cluster_id, hi, lo, REGISTRY_LOOKUP_SCAN);
        if (!r) {
            if (attempt)
                log_warn("registry: lookup of cluster %s failed: %s", cluster_id, c->errstr);
            pthread_setspecific(R.lookup_key, NULL);
            redisFree(c);
        }
    }
    if (!r) {
        lookup_unanswered();
        return -1;
    }
    /* The member that lapses last, of another replica, among those whose
     * seal holds: by the expiry sealed in it, not its score, which anyone
     * who may write to Redis can change. */
    long long best = 0;
    int found = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        redisReply *e = r->element[i], *sc = r->element[i + 1];
        if (e->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING)
            continue;
        char inst[STORE_ID_LEN], a[256];
        long long exp = 0;
        int rc = registry_open_member(R.member_key, cluster_id, e->str, inst, sizeof(inst), a,
                                      sizeof(a), &exp);
        if (rc >= 0 && !strcmp(inst, R.instance))
            continue; /* ours (about to be removed): not another replica */
        if (rc < 0 || (rc == 0 && !R.accept_unsigned)) {
            /* a seal that does not verify, or none: anyone's who may write to Redis */
            member_rejected(cluster_id, rc == -2 ? "bad_signature" : "unsigned");
            continue;
        }
        if (rc == 0) /* a replica of the version before the seals: its score */
            exp = (long long)(strtod(sc->str, NULL) * 1000);
        if (exp > now && exp > best && strlen(a) < cap) {
            best = exp;
            snprintf(addr, cap, "%s", a);
            found = 1;
        }
    }
    freeReplyObject(r);
    return found;
}

/* ---- start / stop ------------------------------------------------------------------------ */

int registry_start(const server_config *cfg, struct lws_context *ctx, char *err, size_t errlen)
{
    R.skew_ms = server_setting_int(cfg, "AURORA_REGISTRY_TEST_CLOCK_SKEW_MS");
    const char *url = server_setting(cfg, "AURORA_REDIS_URL");
    if (!url)
        return 0;
    char why[160];
    if (registry_parse_url(url, &R.url, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "AURORA_REDIS_URL: %s", why);
        return -1;
    }
    const char *addr = server_setting(cfg, "AURORA_INTERNAL_ADDR");
    /* What the other replicas dial (forward.c reads it the same way): read
     * with atoi, "5081x" or a trailing newline started the server, and every
     * command forwarded here failed at the others as a bad address. */
    char host[64];
    int port;
    if (!addr || strlen(addr) >= sizeof(R.addr) ||
        registry_parse_addr(addr, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "AURORA_INTERNAL_ADDR must be IP:port (the pod IP and port), the "
                              "address the other replicas reach this one at, when "
                              "AURORA_REDIS_URL is set");
        return -1;
    }
    const char *secret = server_setting(cfg, "AURORA_INTERNAL_FORWARD_SECRET");
    if (!secret || strlen(secret) < 32) {
        snprintf(err, errlen, "AURORA_INTERNAL_FORWARD_SECRET (at least 32 characters, the same "
                              "on every replica) is required when AURORA_REDIS_URL is set");
        return -1;
    }
    if (registry_seal_key(secret, R.seal_key) < 0) {
        snprintf(err, errlen, "registry: cannot derive the key of its messages");
        return -1;
    }
    if (registry_member_key(secret, R.member_key) < 0) {
        snprintf(err, errlen, "registry: cannot derive the key of its registrations");
        return -1;
    }
    R.accept_unsigned = config_bool(&cfg->raw, "AURORA_REGISTRY_ACCEPT_UNSIGNED");
    if (R.accept_unsigned)
        log_warn("AURORA_REGISTRY_ACCEPT_UNSIGNED: unsigned messages on " CLOSE_CHANNEL " and "
                 "unsigned registrations are taken, as from replicas of a version that does not "
                 "sign them, and this replica registers unsigned too, for them; anyone who may "
                 "write to Redis can close any cluster's tunnel and divert its commands: unset "
                 "it once every replica runs this version");
    /* Above every seq this sender may have sealed before under the same id
     * (an instance id that could not be registered is ""): µs since the
     * epoch, counted on from there. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    R.seq = (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000;
    snprintf(R.addr, sizeof(R.addr), "%s", addr);
    snprintf(R.instance, sizeof(R.instance), "%s", instance_id());
    snprintf(R.member, sizeof(R.member), "%s %s", R.instance, R.addr);
    R.lease = (int)server_setting_int(cfg, "AURORA_REGISTRY_LEASE_S");
    if (R.lease < 2)
        R.lease = 30;
    R.lws = ctx;
    R.m_up = prom_family(PROM_GAUGE, "aurora_registry_redis_connected",
                            "1 while this replica's registry is connected to Redis", 0, NULL,
                            NULL, 0);
    R.m_held = prom_family(PROM_GAUGE, "aurora_registry_clusters_held",
                              "Clusters whose agent sessions this replica holds and registers",
                              0, NULL, NULL, 0);
    R.m_closes = prom_family(PROM_COUNTER, "aurora_registry_closes_received_total",
                                "Revocations and deletions other replicas published", 0, NULL,
                                NULL, 0);
    R.m_dropped = prom_family(PROM_COUNTER, "aurora_registry_messages_dropped_total",
                                 "Messages from other replicas dropped, as many as the registry "
                                 "keeps already waited for the event loop; each burst is "
                                 "followed by a re-check of every session's token and of the "
                                 "legacy connections",
                                 0, NULL, NULL, 0);
    prom_add(R.m_dropped, NULL, 0); /* shown at 0: series appear on first use */
    static const char *const why_label[] = { "why" };
    R.m_rejected = prom_family(PROM_COUNTER, "aurora_registry_messages_rejected_total",
                               "Messages on aurora:close dropped for their seal (the key derived "
                               "from AURORA_INTERNAL_FORWARD_SECRET), by why: unsigned, "
                               "bad_signature, stale (stamped outside the window), replayed "
                               "(heard before)",
                               1, why_label, NULL, 0);
    R.m_reg_rejected = prom_family(PROM_COUNTER, "aurora_registry_registrations_rejected_total",
                                   "Registrations (aurora:agents:*) a lookup passed over for their "
                                   "seal (the key derived from AURORA_INTERNAL_FORWARD_SECRET), "
                                   "by why: unsigned, bad_signature; once per lookup that met one",
                                   1, why_label, NULL, 0);
    for (int i = 0; i < 2; i++) {
        const char *v[] = { i ? "bad_signature" : "unsigned" };
        prom_add(R.m_reg_rejected, v, 0);
    }
    static const char *const whys[] = { "unsigned", "bad_signature", "stale", "replayed" };
    for (size_t i = 0; i < sizeof(whys) / sizeof(whys[0]); i++) {
        const char *v[] = { whys[i] };
        prom_add(R.m_rejected, v, 0);
    }
    if (pipe2(R.wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "registry: pipe: %s", strerror(errno));
        return -1;
    }
    if (pthread_key_create(&R.lookup_key, free_lookup_conn) != 0) {
        snprintf(err, errlen, "registry: no thread key");
        return -1;
    }
    R.key_made = 1;
    R.enabled = 1;
    if (pthread_create(&R.thread, NULL, thread_main, NULL) != 0) {
        R.enabled = 0;
        snprintf(err, errlen, "registry: cannot start its thread");
        return -1;
    }
    R.thread_started = 1;
    log_info("registry: Redis %s:%d db %d, this replica at %s, lease %d s", R.url.host, R.url.port,
             R.url.db, R.addr, R.lease);
    return 0;
}

void registry_stop(void)
{
    if (R.thread_started) {
        pthread_mutex_lock(&R.mu);
        R.stop = 1;
        pthread_mutex_unlock(&R.mu);
        wake_thread();
        pthread_join(R.thread, NULL);
        R.thread_started = 0;
    }
    /* The lookup connection of this thread (the workers' went with them). */
    if (R.key_made) {
        redisContext *c = pthread_getspecific(R.lookup_key);
        if (c)
            redisFree(c);
        pthread_setspecific(R.lookup_key, NULL);
        pthread_key_delete(R.lookup_key);
        R.key_made = 0;
    }
    while (R.ops) {
        op *n = R.ops->next;
        free(R.ops->message);
        free(R.ops);
        R.ops = n;
    }
    R.ops_tail = NULL;
    while (R.unsent) {
        op *n = R.unsent->next;
        free(R.unsent->message);
        free(R.unsent);
        R.unsent = n;
    }
    R.unsent_tail = NULL;
    R.nunsent = 0;
    while (R.in) {
        inbound *n = R.in->next;
        free(R.in);
        R.in = n;
    }
    R.in_tail = NULL;
    R.nin = 0;
    R.in_dropped = 0;
    free(R.held);
    R.held = NULL;
    R.nheld = R.capheld = 0;
    for (int i = 0; i < 2; i++)
        if (R.wake[i] >= 0)
            close(R.wake[i]);
    R.wake[0] = R.wake[1] = -1;
    secret_wipe(R.url.password, sizeof(R.url.password));
    /* the metrics' registry may be reset after us */
    R.m_up = R.m_held = R.m_closes = R.m_dropped = R.m_rejected = R.m_reg_rejected = NULL;
    secret_wipe(R.seal_key, sizeof(R.seal_key));
    secret_wipe(R.member_key, sizeof(R.member_key));
    atomic_store(&R.reg_quiet_until, 0);
    atomic_store(&R.reg_unsaid, 0);
    R.accept_unsigned = 0;
    R.seq = 0;
    R.nsenders = 0;
    R.stale_quiet_until = 0;
    R.ever_connected = 0;
    R.skew_ms = 0;
    atomic_store(&R.clock_known, 0);
    atomic_store(&R.clock_off_us, 0);
    R.time_refused = 0;
    R.ignored_quiet_until = 0;
    R.ignored_unsaid = 0;
    R.publish_refused = 0;
    R.publish_retry_us = 0;
    atomic_store(&R.renewed, 0);
    /* a coalesced answer not given: the context may go with us */
    if (A.pending)
        lws_sul_cancel(&A.sul);
    memset(&A, 0, sizeof(A));
    R.enabled = 0;
    R.stop = 0;
}
