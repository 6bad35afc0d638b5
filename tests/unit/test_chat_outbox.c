/* test_chat_outbox.c — the chat outbox (server/store_chat.c) and the kit's
 * drain (connectors/kit_chat.c): announcements written with the incident,
 * resolutions that never overtake them, threads, retries with backoff,
 * dead and dropped messages, leases, replies and the per-org cap.  Runs on
 * a SQLite file and on a throwaway PostgreSQL server (pg_harness.h).
 * Incidents are made the real way, by incident_ingest(); the chat
 * connector of the drain tests is a recording kit_chat_spec (the real ones,
 * Slack and Google Chat, are tested against their fixtures). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "incidents.h"
#include "kit_chat.h"
#include "pg_harness.h"
#include "store.h"
#include "store_chat.h"
#include "store_incidents.h"

#define STORE_PLACE_DB "aurora_chat"
#include "store_place.h"

/* 2026-11-02T10:00:00Z: in the past, so every queued row is due now */
#define T0 1793613600LL

typedef struct {
    store_t *s;
    worker_ctx w;
    store_place at; /* its database (store_place.h) */
    char org[STORE_ID_LEN];
    char user[STORE_ID_LEN];
    int delivery;
} fixture;

static store_t *open_store(const char *url)
{
    store_t *s = NULL;
    char err[256] = "";
    if (store_open(url, &s, err, sizeof(err)) != STORE_OK)
        fail_msg("store_open: %s", err);
    return s;
}

static void init_fixture(fixture *f)
{
    f->s = open_store(f->at.url);
    f->w.store = f->s;
    store_org o;
    assert_int_equal(store_org_create(f->s, "acme", &o), STORE_OK);
    memcpy(f->org, o.id, sizeof(f->org));
    store_user u;
    assert_int_equal(store_user_create(f->s, f->org, "ops@acme.test", "admin", &u), STORE_OK);
    memcpy(f->user, u.id, sizeof(f->user));
}

static int setup_file(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_sqlite(&f->at, "chat");
    init_fixture(f);
    *state = f;
    return 0;
}

static int setup_pg(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    store_place_pg(&f->at);
    init_fixture(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    store_place_remove(&f->at);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------ */

static void declare(const char *a, const char *b)
{
    const char *ids[2] = { a, b };
    store_chat_set_connectors(ids, b ? 2 : 1);
}

static void connect_chat(fixture *f, const char *connector)
{
    store_connector c;
    memset(&c, 0, sizeof(c));
    snprintf(c.org_id, sizeof(c.org_id), "%s", f->org);
    snprintf(c.user_id, sizeof(c.user_id), "%s", f->user);
    snprintf(c.connector, sizeof(c.connector), "%s", connector);
    snprintf(c.account, sizeof(c.account), "T123");
    snprintf(c.status, sizeof(c.status), "active");
    c.metadata_json = "{}";
    c.created_at = c.updated_at = T0;
    assert_int_equal(store_connector_upsert(f->s, &c), STORE_OK);
}

/* Ingests one alert; returns the outcome. */
static incident_outcome alert(fixture *f, const char *fp, alert_state st)
{
    char delivery[32];
    snprintf(delivery, sizeof(delivery), "whd_%d", ++f->delivery);
    incident_alert a = { .source = "grafana", .delivery_id = delivery, .fingerprint = fp,
                         .state = st, .title = "API latency high", .service = "api",
                         .severity = "critical", .occurred_at = T0 + f->delivery };
    incident_outcome o;
    char err[256];
    if (incident_ingest(&f->w, f->org, NULL, &a, T0 + f->delivery, &o, err, sizeof(err)) != 0)
        fail_msg("ingest: %s", err);
    return o;
}

static size_t list(fixture *f, const char *status, const char *incident, store_chat_msg **out)
{
    size_t n = 0;
    if (store_chat_list(f->s, f->org, status, incident, CHAT_LIST_MAX, out, &n) != STORE_OK)
        fail_msg("list: %s", store_errmsg(f->s));
    return n;
}

static size_t count(fixture *f, const char *status, const char *incident)
{
    store_chat_msg *m;
    size_t n = list(f, status, incident, &m);
    store_chat_msgs_free(m, n);
    return n;
}

/* Claims at most one due row at now (lease 60 s, 3 attempts). */
static int claim1(fixture *f, int64_t now, store_chat_msg **m)
{
    size_t n = 0;
    if (store_chat_claim(f->s, now, 60, 3, 1, m, &n) != STORE_OK)
        fail_msg("claim: %s", store_errmsg(f->s));
    return (int)n;
}

#define NOW (T0 + 1000)

/* ---- store ------------------------------------------------------------------------- */

static void test_no_chat_connected_queues_nothing(void **state)
{
    fixture *f = *state;
    declare("slack", "google_chat");
    incident_outcome o = alert(f, "fp-1", ALERT_FIRING);
    assert_int_equal(o.result, INGEST_CREATED);
    assert_int_equal(count(f, NULL, NULL), 0);
}

static void test_opened_then_resolved_in_order(void **state)
{
    fixture *f = *state;
    declare("slack", "google_chat");
    connect_chat(f, "slack"); /* google_chat declared but not connected */
    incident_outcome o = alert(f, "fp-1", ALERT_FIRING);
    assert_int_equal(count(f, "pending", o.incident_id), 1);
    incident_outcome r = alert(f, "fp-1", ALERT_RESOLVED);
    assert_int_equal(r.result, INGEST_ATTACHED);
    assert_int_equal(count(f, "pending", o.incident_id), 2);

    /* The resolution is not due while the announcement is on its way. */
    store_chat_msg *m;
    assert_int_equal(claim1(f, NOW, &m), 1);
    assert_string_equal(m->kind, "opened");
    assert_string_equal(m->connector, "slack");
    int attempts = m->attempts;
    char id[STORE_ID_LEN];
    memcpy(id, m->id, sizeof(id));
    store_chat_msgs_free(m, 1);
    store_chat_msg *none;
    assert_int_equal(claim1(f, NOW, &none), 0);

    assert_int_equal(store_chat_sent(f->s, id, attempts, "C01", "1700000000.000100", NOW),
                     STORE_OK);
    char ch[CHAT_REF_MAX + 1], th[CHAT_REF_MAX + 1];
    assert_int_equal(store_chat_thread_get(f->s, f->org, "slack", o.incident_id, ch, th),
                     STORE_OK);
    assert_string_equal(ch, "C01");
    assert_string_equal(th, "1700000000.000100");
    char inc[STORE_ID_LEN];
    assert_int_equal(store_chat_thread_incident(f->s, f->org, "slack", "C01",
                                                "1700000000.000100", inc),
                     STORE_OK);
    assert_string_equal(inc, o.incident_id);
    assert_int_equal(store_chat_thread_incident(f->s, f->org, "slack", "C01", "other", inc),
                     STORE_NOT_FOUND);

    assert_int_equal(claim1(f, NOW, &m), 1);
    assert_string_equal(m->kind, "resolved");
    assert_int_equal(store_chat_sent(f->s, m->id, m->attempts, "C01", "1700000000.000100", NOW),
                     STORE_OK);
    store_chat_msgs_free(m, 1);
    assert_int_equal(count(f, "sent", o.incident_id), 2);
}

static void test_manual_resolve_and_close(void **state)
{
    fixture *f = *state;
    declare("slack", NULL);
    connect_chat(f, "slack");
    incident_outcome o = alert(f, "fp-1", ALERT_FIRING);
    assert_int_equal(store_incident_set_status(f->s, f->org, o.incident_id, "resolved", NOW),
                     STORE_OK);
    assert_int_equal(count(f, NULL, o.incident_id), 2);
    /* closing a resolved incident tells no chat again; resolving twice neither */
    assert_int_equal(store_incident_set_status(f->s, f->org, o.incident_id, "resolved", NOW),
                     STORE_OK);
    assert_int_equal(store_incident_set_status(f->s, f->org, o.incident_id, "closed", NOW),
                     STORE_OK);
    assert_int_equal(count(f, NULL, o.incident_id), 2);
    /* closing an open incident does */
    incident_outcome p = alert(f, "fp-2", ALERT_FIRING);
    assert_int_equal(store_incident_set_status(f->s, f->org, p.incident_id, "closed", NOW),
                     STORE_OK);
    assert_int_equal(count(f, NULL, p.incident_id), 2);
}

static void test_retry_backoff_and_dead(void **state)
{
    fixture *f = *state;
    declare("slack", NULL);
    connect_chat(f, "slack");
    incident_outcome o = alert(f, "fp-1", ALERT_FIRING);
    store_chat_msg *m;
    assert_int_equal(claim1(f, NOW, &m), 1);
    int dead = -1;
    assert_int_equal(store_chat_retry(f->s, m->id, 1, 30, "Slack rate limited", NOW, 3, &dead),
                     STORE_OK);
    assert_int_equal(dead, 0);
    char id[STORE_ID_LEN];
    memcpy(id, m->id, sizeof(id));
    store_chat_msgs_free(m, 1);
    /* not before its time */
    assert_int_equal(claim1(f, NOW + 29, &m), 0);
    assert_int_equal(claim1(f, NOW + 30, &m), 1);
    assert_int_equal(m->attempts, 2);
    assert_string_equal(m->last_error, "Slack rate limited");
    /* a late answer of the first attempt changes nothing */
    assert_int_equal(store_chat_sent(f->s, id, 1, "C01", "1.2", NOW + 30), STORE_CONFLICT);
    assert_int_equal(store_chat_retry(f->s, id, 2, 30, "again", NOW + 30, 3, &dead), STORE_OK);
    store_chat_msgs_free(m, 1);
    assert_int_equal(claim1(f, NOW + 60, &m), 1);
    assert_int_equal(m->attempts, 3);
    assert_int_equal(store_chat_retry(f->s, id, 3, 30, "still failing", NOW + 60, 3, &dead),
                     STORE_OK);
    assert_int_equal(dead, 1);
    store_chat_msgs_free(m, 1);
    assert_int_equal(count(f, "dead", o.incident_id), 1);
    assert_int_equal(claim1(f, NOW + 10000, &m), 0);
}

static void test_lease_expiry(void **state)
{
    fixture *f = *state;
    declare("slack", NULL);
    connect_chat(f, "slack");
    (void)alert(f, "fp-1", ALERT_FIRING);
    store_chat_msg *m;
    for (int attempt = 1; attempt <= 3; attempt++) {
        /* a drainer that died: the lease (60 s) runs out, the row comes back */
        assert_int_equal(claim1(f, NOW + (attempt - 1) * 61, &m), 1);
        assert_int_equal(m->attempts, attempt);
        store_chat_msgs_free(m, 1);
        assert_int_equal(claim1(f, NOW + (attempt - 1) * 61 + 30, &m), 0);
    }
    /* its last lease expired: dead, not handed out again */
    assert_int_equal(claim1(f, NOW + 3 * 61, &m), 0);
    assert_int_equal(count(f, "dead", NULL), 1);
}

static void test_dropped_announcement_lets_the_next_start_the_thread(void **state)
{
    fixture *f = *state;
    declare("slack", NULL);
    connect_chat(f, "slack");
    incident_outcome o = alert(f, "fp-1", ALERT_FIRING);
    (void)alert(f, "fp-1", ALERT_RESOLVED);
    store_chat_msg *m;
    assert_int_equal(claim1(f, NOW, &m), 1);
    assert_int_equal(store_chat_drop(f->s, m->id, m->attempts, "channel_not_found", NOW),
                     STORE_OK);
    store_chat_msgs_free(m, 1);
    assert_int_equal(claim1(f, NOW, &m), 1);
    assert_string_equal(m->kind, "resolved");
    assert_string_equal(m->thread, "");
    assert_int_equal(store_chat_sent(f->s, m->id, m->attempts, "C02", "9.9", NOW), STORE_OK);
    store_chat_msgs_free(m, 1);
    char ch[CHAT_REF_MAX + 1], th[CHAT_REF_MAX + 1];
    assert_int_equal(store_chat_thread_get(f->s, f->org, "slack", o.incident_id, ch, th),
                     STORE_OK);
    assert_string_equal(th, "9.9");
    assert_int_equal(count(f, "dropped", o.incident_id), 1);
}

static void test_replies_and_cap(void **state)
{
    fixture *f = *state;
    declare("slack", "google_chat");
    connect_chat(f, "slack");
    connect_chat(f, "google_chat");
    incident_outcome o = alert(f, "fp-1", ALERT_FIRING);
    int queued = 0;
    char ids[CHAT_MAX_CONNECTORS][STORE_ID_LEN];
    assert_int_equal(store_chat_queue_reply(f->s, f->org, o.incident_id, NULL, NULL, NULL,
                                            "Root cause: a bad deploy", NOW, 100, &queued, ids),
                     STORE_OK);
    assert_int_equal(queued, 2); /* announced on both */
    assert_int_equal(strncmp(ids[0], "chm_", 4), 0);
    /* another org's incident, or none: not found, nothing queued */
    assert_int_equal(store_chat_queue_reply(f->s, f->org, "inc_nope", NULL, NULL, NULL, "x",
                                            NOW, 100, &queued, NULL),
                     STORE_NOT_FOUND);
    assert_int_equal(queued, 0);
    store_org other;
    assert_int_equal(store_org_create(f->s, "other", &other), STORE_OK);
    assert_int_equal(store_chat_queue_reply(f->s, other.id, o.incident_id, NULL, NULL, NULL,
                                            "x", NOW, 100, &queued, NULL),
                     STORE_NOT_FOUND);
    /* a named thread needs the connector connected in that org */
    assert_int_equal(store_chat_queue_reply(f->s, other.id, NULL, "slack", "C01", "1.1", "hi",
                                            NOW, 100, &queued, NULL),
                     STORE_NOT_FOUND);
    assert_int_equal(store_chat_queue_reply(f->s, f->org, NULL, "slack", "C01", "1.1", "hi",
                                            NOW, 100, &queued, NULL),
                     STORE_OK);
    assert_int_equal(queued, 1);
    assert_int_equal(store_chat_queue_reply(f->s, f->org, NULL, "slack", "C 01", "1.1", "hi",
                                            NOW, 100, &queued, NULL),
                     STORE_ERR);
    /* 2 opened + 2 replies + 1 named: the cap counts waiting rows */
    assert_int_equal(count(f, "pending", NULL), 5);
    assert_int_equal(store_chat_queue_reply(f->s, f->org, NULL, "slack", "C01", "1.1", "hi",
                                            NOW, 5, &queued, NULL),
                     STORE_CONFLICT);
    assert_int_equal(count(f, "pending", NULL), 5);
}

/* ---- the kit's drain ------------------------------------------------------------------ */

typedef struct {
    int calls;
    char kinds[8][16];
    char threads[8][64];
    char texts[8][128];
    char links[8][128];
    kit_chat_send_result next[8];
    const char *answer_thread[8]; /* the provider's thread of a sent message, if set */
} recorder;

static recorder g_rec;

static kit_chat_send_result rec_send(worker_ctx *w, const kit_chat_message *m,
                                     kit_chat_outcome *out)
{
    (void)w;
    int i = g_rec.calls++;
    assert_true(i < 8);
    snprintf(g_rec.kinds[i], sizeof(g_rec.kinds[i]), "%d", (int)m->kind);
    snprintf(g_rec.threads[i], sizeof(g_rec.threads[i]), "%s", m->thread);
    snprintf(g_rec.texts[i], sizeof(g_rec.texts[i]), "%s", m->text);
    snprintf(g_rec.links[i], sizeof(g_rec.links[i]), "%s", m->link);
    kit_chat_send_result r = g_rec.next[i];
    if (r == KIT_CHAT_SENT) {
        snprintf(out->channel, sizeof(out->channel), "C01");
        if (g_rec.answer_thread[i])
            snprintf(out->thread, sizeof(out->thread), "%s", g_rec.answer_thread[i]);
        else if (m->thread[0])
            snprintf(out->thread, sizeof(out->thread), "%s", m->thread);
        else
            snprintf(out->thread, sizeof(out->thread), "ts-%d", i);
    } else if (r == KIT_CHAT_RETRY) {
        out->retry_after_s = 3600; /* the provider's wait, not the kit's backoff */
        snprintf(out->err, sizeof(out->err), "rate limited");
    } else {
        snprintf(out->err, sizeof(out->err), "channel_not_found");
    }
    return r;
}

static const kit_chat_spec g_rec_spec = { .connector = "recchat", .send = rec_send };

/* Queues the investigation's reply to the incident (one chat: one row). */
static void reply_root_cause(fixture *f, const char *incident_id)
{
    int queued = 0;
    char err[256];
    assert_int_equal(kit_chat_reply(&f->w, f->org, incident_id, NULL, NULL, NULL,
                                    "Root cause found", &queued, err, sizeof(err)),
                     AUR_OK);
    assert_int_equal(queued, 1);
}

static void test_drain_sends_in_thread(void **state)
{
    fixture *f = *state;
    memset(&g_rec, 0, sizeof(g_rec));
    assert_int_equal(kit_chat_register(&g_rec_spec), 0);
    assert_int_equal(kit_chat_register(&g_rec_spec), 0); /* again: fine */
    static const kit_chat_spec imposter = { .connector = "recchat", .send = rec_send };
    assert_int_equal(kit_chat_register(&imposter), -1);
    const char *ids[KIT_CHAT_MAX_CONNECTORS];
    assert_true(kit_chat_connectors(ids) >= 1);
    connect_chat(f, "recchat");
    server_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.frontend_url = "https://aurora.example/";
    f->w.cfg = &cfg;

    incident_outcome o = alert(f, "fp-1", ALERT_FIRING);
    (void)alert(f, "fp-1", ALERT_RESOLVED);
    reply_root_cause(f, o.incident_id);
    g_rec.next[0] = KIT_CHAT_SENT;
    g_rec.next[1] = KIT_CHAT_SENT;
    g_rec.next[2] = KIT_CHAT_SENT;
    /* one run sends all three, in order: each is due once the one before is sent */
    (void)kit_chat_drain(&f->w);
    assert_int_equal(g_rec.calls, 3);
    assert_string_equal(g_rec.kinds[0], "0"); /* OPENED */
    assert_string_equal(g_rec.threads[0], "");
    assert_string_equal(g_rec.kinds[1], "1"); /* RESOLVED, in the thread */
    assert_string_equal(g_rec.threads[1], "ts-0");
    assert_non_null(strstr(g_rec.texts[1], "Incident resolved: API latency high"));
    assert_string_equal(g_rec.kinds[2], "2"); /* REPLY */
    assert_string_equal(g_rec.threads[2], "ts-0");
    assert_string_equal(g_rec.texts[2], "Root cause found");
    char want[128];
    snprintf(want, sizeof(want), "https://aurora.example/incidents/%s", o.incident_id);
    assert_string_equal(g_rec.links[0], want);
    assert_int_equal(count(f, "sent", o.incident_id), 3);
    f->w.cfg = NULL;
}

/* The recording connector connected, one incident, and a first drain run
 * whose send answers first (one call). */
static incident_outcome rec_first_drain(fixture *f, kit_chat_send_result first)
{
    memset(&g_rec, 0, sizeof(g_rec));
    assert_int_equal(kit_chat_register(&g_rec_spec), 0);
    connect_chat(f, "recchat");
    incident_outcome o = alert(f, "fp-1", ALERT_FIRING);
    g_rec.next[0] = first;
    (void)kit_chat_drain(&f->w);
    assert_int_equal(g_rec.calls, 1);
    return o;
}

static void test_drain_retry_and_drop(void **state)
{
    fixture *f = *state;
    incident_outcome o = rec_first_drain(f, KIT_CHAT_RETRY);
    store_chat_msg *m;
    assert_int_equal(list(f, "pending", o.incident_id, &m), 1);
    assert_int_equal(m[0].attempts, 1);
    assert_string_equal(m[0].last_error, "rate limited");
    store_chat_msgs_free(m, 1);
    /* a long text is cut at a character boundary with an ellipsis */
    char big[KIT_CHAT_TEXT_MAX + 100];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big + KIT_CHAT_TEXT_MAX - 4, "\xc3\xa9\xc3\xa9", 4); /* é é across the cut */
    int queued = 0;
    char err[256];
    assert_int_equal(kit_chat_reply(&f->w, f->org, NULL, "recchat", "C01", "1.1", big, &queued,
                                    err, sizeof(err)),
                     AUR_OK);
    assert_int_equal(list(f, "pending", NULL, &m), 2);
    size_t len = strlen(m[0].text);
    assert_true(len <= KIT_CHAT_TEXT_MAX);
    assert_memory_equal(m[0].text + len - 3, "\xe2\x80\xa6", 3);
    store_chat_msgs_free(m, 2);
    /* bad input: not UTF-8, no text, not a chat connector, bad reference */
    assert_int_equal(kit_chat_reply(&f->w, f->org, NULL, "recchat", "C01", "1.1", "\xff", &queued,
                                    err, sizeof(err)),
                     AUR_E_INVALID);
    assert_int_equal(kit_chat_reply(&f->w, f->org, NULL, "recchat", "C01", "1.1", "", &queued,
                                    err, sizeof(err)),
                     AUR_E_INVALID);
    assert_int_equal(kit_chat_reply(&f->w, f->org, NULL, "github", "C01", "1.1", "x", &queued,
                                    err, sizeof(err)),
                     AUR_E_INVALID);
    assert_int_equal(kit_chat_reply(&f->w, f->org, NULL, "recchat", "C01\n", "1.1", "x", &queued,
                                    err, sizeof(err)),
                     AUR_E_INVALID);
    /* the named-thread reply is sent (dropped here); the incident's row waits an hour */
    g_rec.next[1] = KIT_CHAT_DROP;
    (void)kit_chat_drain(&f->w);
    assert_int_equal(g_rec.calls, 2);
    assert_int_equal(count(f, "dropped", NULL), 1);
}

/* One statement on the store's database, beside the store (db.h). */
static void sql_exec(fixture *f, const char *sql)
{
    const db_engine *eng = db_engine_for(f->at.url);
    assert_non_null(eng);
    db_t *db = NULL;
    char err[256];
    assert_int_equal(eng->open(f->at.url, &db, err, sizeof(err)), DB_OK);
    if (eng->exec(db, sql, NULL, 0, NULL) != DB_OK)
        fail_msg("%s: %s", sql, eng->errmsg(db));
    eng->close(db);
}

/* The incident's thread cannot be read for a moment (a statement timeout
 * on a busy database): the reply waits and is sent later in the thread.
 * It was sent at once with no thread, i.e. as a new top-level message in
 * the channel, and recorded as sent: never in its thread again. */
static void test_thread_read_failure_retries_not_top_level(void **state)
{
    fixture *f = *state;
    incident_outcome o = rec_first_drain(f, KIT_CHAT_SENT); /* started thread ts-0 */
    reply_root_cause(f, o.incident_id);
    g_rec.next[1] = KIT_CHAT_SENT;
    g_rec.next[2] = KIT_CHAT_SENT;
    sql_exec(f, "ALTER TABLE chat_threads RENAME TO chat_threads_away");
    (void)kit_chat_drain(&f->w);
    if (g_rec.calls > 1)
        fail_msg("the reply was sent while its thread could not be read (thread \"%s\")",
                 g_rec.threads[1]);
    store_chat_msg *m;
    assert_int_equal(list(f, "pending", o.incident_id, &m), 1);
    assert_int_equal(m[0].attempts, 1);
    assert_string_equal(m[0].last_error, "state store unavailable");
    store_chat_msgs_free(m, 1);
    /* the store answers again: the retry goes into the thread */
    sql_exec(f, "ALTER TABLE chat_threads_away RENAME TO chat_threads");
    sql_exec(f, "UPDATE chat_outbox SET next_attempt_at = 0 WHERE status = 'pending'");
    (void)kit_chat_drain(&f->w);
    assert_int_equal(g_rec.calls, 2);
    assert_string_equal(g_rec.kinds[1], "2"); /* REPLY */
    assert_string_equal(g_rec.threads[1], "ts-0");
    assert_int_equal(count(f, "sent", o.incident_id), 2);
}

/* The provider answers a sent message with a thread reference the store
 * cannot keep (a space, non-ASCII): the message was delivered, so it is
 * recorded as sent without a thread.  It stayed claimed, and was sent again
 * at each lease's end up to the attempt limit: duplicates in the channel. */
static void test_sent_with_unstorable_thread_not_resent(void **state)
{
    fixture *f = *state;
    memset(&g_rec, 0, sizeof(g_rec));
    assert_int_equal(kit_chat_register(&g_rec_spec), 0);
    connect_chat(f, "recchat");
    incident_outcome o = alert(f, "fp-1", ALERT_FIRING);
    g_rec.next[0] = KIT_CHAT_SENT;
    g_rec.answer_thread[0] = "1700000000.000100 x\xc3\xa9";
    (void)kit_chat_drain(&f->w);
    assert_int_equal(g_rec.calls, 1);
    store_chat_msg *m;
    size_t n = list(f, NULL, o.incident_id, &m);
    assert_int_equal(n, 1);
    if (strcmp(m[0].status, "sent"))
        fail_msg("a delivered message is %s, to be sent again", m[0].status);
    assert_string_equal(m[0].thread, "");
    assert_string_equal(m[0].channel, "C01");
    store_chat_msgs_free(m, n);
    /* nothing left to claim, however late */
    store_chat_msg *due = NULL;
    assert_int_equal(store_chat_claim(f->s, (int64_t)time(NULL) + 86400, 120, 8, 1, &due, &n),
                     STORE_OK);
    assert_int_equal(n, 0);
    store_chat_msgs_free(due, n);
}

#define BOTH(t)                                                                                    \
    { "file/" #t, t, setup_file, teardown, NULL }, { "postgres/" #t, t, setup_pg, teardown, NULL }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_no_chat_connected_queues_nothing),
        BOTH(test_opened_then_resolved_in_order),
        BOTH(test_manual_resolve_and_close),
        BOTH(test_retry_backoff_and_dead),
        BOTH(test_lease_expiry),
        BOTH(test_dropped_announcement_lets_the_next_start_the_thread),
        BOTH(test_replies_and_cap),
        BOTH(test_drain_sends_in_thread),
        BOTH(test_drain_retry_and_drop),
        BOTH(test_thread_read_failure_retries_not_top_level),
        BOTH(test_sent_with_unstorable_thread_not_resent),
    };
    return cmocka_run_group_tests_name("chat_outbox", tests, store_place_group_setup,
                                       store_place_group_teardown);
}
