/* exec.h — runs one command through the tunnel on behalf of an HTTP request:
 * admits it (per-cluster limit, the "started" audit row), collects a capped
 * JSON result within the output budgets (exec_limits.h) or streams
 * Server-Sent Events, returns flow-control credit as output leaves, and
 * completes the audit row. */
#ifndef AURORA_EXEC_H
#define AURORA_EXEC_H

#include <stdint.h>

#include "argv.h"
#include "exec_limits.h"
#include "http.h"
#include "server_config.h"
#include "store.h"
#include "worker.h"

#define EC_CLUSTER_BUSY "CLUSTER_BUSY"
#define EC_ORG_OUTPUT_BUDGET "ORG_OUTPUT_BUDGET_EXCEEDED"
#define EC_SERVER_OUTPUT_BUDGET "SERVER_OUTPUT_BUDGET_EXCEEDED"
#define EC_AUDIT_UNAVAILABLE "AUDIT_UNAVAILABLE"

struct tunnel_hub;

/* The commands' context (opaque), one per server: where commands are sent
 * (tunnel.h), where their audit rows are written (the pool) and the limits
 * they run under (exec_limits.h, owned).  Created by server.c; handlers
 * reach it through worker_ctx.exec, exec_start through the spec that
 * exec_admit tied to it. */
typedef struct exec_ctx exec_ctx;

/* Server start: the limits of exec_limits.h from the settings; tunnels and
 * pool are not owned.  NULL when out of memory. */
exec_ctx *exec_ctx_new(const server_config *cfg, struct tunnel_hub *tunnels, workers *pool);
/* Loop thread, before the workers stop: queues the write of every command
 * end still waiting for a start to carry it or for the store to answer
 * again (audit_starts.h), at once: the last try before they are logged. */
void exec_ctx_flush_audit(exec_ctx *x);
/* After every exec has ended (the lws context is destroyed). */
void exec_ctx_free(exec_ctx *x);
/* Server shutdown (SIGTERM), loop thread: from now on exec_admit and
 * exec_admit_forwarded refuse new commands with 503 SERVER_SHUTTING_DOWN;
 * those already admitted run on. */
void exec_ctx_drain(exec_ctx *x);
/* 1 once exec_ctx_drain was called (any thread). */
int exec_ctx_draining(const exec_ctx *x);
/* Loop thread: commands admitted and not ended, plus their answers not yet
 * written whole to their clients' connections (a JSON body, what a stream
 * still holds, its end event included): the server keeps serving until this
 * is 0 or AURORA_SHUTDOWN_DRAIN_S passes. */
int64_t exec_ctx_busy(exec_ctx *x);
exec_limits *exec_ctx_limits(exec_ctx *x);

typedef struct exec_spec {
    char org_id[STORE_ID_LEN];
    char user_id[STORE_ID_LEN];
    char cluster_id[STORE_CLUSTER_ID_LEN];
    char kind[16];   /* "kubectl" or "cloud_exec" */
    char program[72]; /* cloud_exec: "gcloud", "aws", …; "" for kubectl */
    char **env;      /* cloud_exec: nenv "NAME=value" credentials, malloc'd; wiped
                        (exec_spec_wipe_env) as soon as the exec frame is queued,
                        never logged or audited */
    int nenv;
    argv_t argv;     /* without the program name */
    char *command;   /* the caller's command string (without "kubectl"), if given:
                        legacy agents receive it verbatim */
    double timeout;  /* seconds */
    int64_t max_output;
    int stream;      /* text/event-stream */
    int64_t audit_id; /* its "started" audit row (exec_admit); 0: none yet */
    exec_slot slot;   /* its place in the cluster's command count (exec_admit) */
    exec_ctx *ctx;    /* where it runs (exec_admit) */
    /* Many replicas (registry.h, forward.h): */
    char owner_addr[256]; /* exec_admit: another replica holding the cluster's agent,
                             where exec_start sends it when no agent is held here */
    int forwarded;        /* run here for another replica, which audits it */
} exec_spec;

/* Frees e and releases its cluster slot. */
void exec_spec_free(exec_spec *e);
/* Wipes and frees e->env. */
void exec_spec_wipe_env(exec_spec *e);
/* Worker thread, the last step before a handler sets resp->exec = e: ties e
 * to w->exec, takes a slot of the cluster (else 429 CLUSTER_BUSY, audited;
 * 503 SERVER_SHUTTING_DOWN once exec_ctx_drain was called) and writes the
 * "started" audit row (else 503 AUDIT_UNAVAILABLE: a command that cannot be
 * audited is not run).  0, or -1 with the error in resp (e still the
 * caller's to free). */
int exec_admit(worker_ctx *w, exec_spec *e, http_response *resp);
/* The same for a command another replica forwarded here (forward.c): it was
 * audited there, so only the cluster's slot is taken.  All the cluster's
 * commands run through the replica holding its agent, so this is where
 * AURORA_EXEC_MAX_PER_CLUSTER holds for the whole fleet.  0, or -1 with 429
 * CLUSTER_BUSY (or 503 SERVER_SHUTTING_DOWN) in resp. */
int exec_admit_forwarded(worker_ctx *w, exec_spec *e, http_response *resp);
/* Loop thread, e admitted.  Takes ownership of e.  0: exec.c now owns the response;
 * -1: the txn's response holds an error to send. */
int exec_start(http_txn *t, exec_spec *e);
/* Loop thread, e admitted: the caller left before exec_start could send it.
 * Its "started" audit row is closed as client_gone (nothing ran) and e is
 * freed, its slot released. */
void exec_never_sent(exec_spec *e);
/* Worker thread: the one audit row of a command refused before it was
 * admitted (outcome cluster_busy, refused), written on w's store before the
 * answer; if the store fails it, kept and written later (audit_starts.h). */
void exec_audit_now(worker_ctx *w, const exec_spec *e, const char *outcome);

#endif
