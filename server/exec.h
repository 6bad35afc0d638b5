/* exec.h — runs one command through the tunnel on behalf of an HTTP request:
 * collects a capped JSON result or streams Server-Sent Events, returns
 * flow-control credit as output leaves, and writes the audit record. */
#ifndef AURORA_EXEC_H
#define AURORA_EXEC_H

#include <stdint.h>

#include "argv.h"
#include "http.h"
#include "store.h"

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
} exec_spec;

void exec_spec_free(exec_spec *e);
/* Wipes and frees e->env. */
void exec_spec_wipe_env(exec_spec *e);
/* Loop thread.  Takes ownership of e.  0: exec.c now owns the response;
 * -1: the txn's response holds an error to send. */
int exec_start(http_txn *t, exec_spec *e);
/* Records an exec that never reached an agent (worker thread). */
void exec_audit_now(store_t *st, const exec_spec *e, const char *outcome);

#endif
