/* exec_limits.h — what running commands may hold at once, so that one tenant
 * cannot take the server's memory or a cluster's agent for itself:
 *
 *  - buffered output: what the server holds of a command's output for its
 *    caller is charged to a server-wide budget (AURORA_EXEC_OUTPUT_BUDGET)
 *    and to its organization's budget (AURORA_EXEC_ORG_OUTPUT_BUDGET): a
 *    JSON-mode capture as it grows, then the JSON answer built from it until
 *    the caller has it, and streamed (SSE) output waiting for a slow caller
 *    (a legacy agent's whole answer; a v2 agent's, beyond what flow control
 *    keeps in the stream);
 *  - commands per cluster (running at the agent or queued for it), across
 *    every agent session of the cluster (AURORA_EXEC_MAX_PER_CLUSTER).
 *
 * One exec_limits object per server (created in server.c, reached through
 * exec.h's context).  Thread-safe (one mutex per object, held only for table
 * updates): slots are taken on workers and released wherever an exec ends;
 * output is charged on the loop; the usage route reads on a worker.  Every
 * holder remembers the object it holds from and releases exactly what it
 * holds, and releasing twice is harmless. */
#ifndef AURORA_EXEC_LIMITS_H
#define AURORA_EXEC_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct exec_limits exec_limits;

/* A command's place in its cluster's count. */
typedef struct {
    exec_limits *limits; /* where it is held (set by acquire) */
    char org_id[STORE_ID_LEN];
    char cluster_id[STORE_CLUSTER_ID_LEN];
    int held;
} exec_slot;

/* What one command has charged to the output budgets. */
typedef struct {
    exec_limits *limits; /* where it is charged (set by the first reserve) */
    char org_id[STORE_ID_LEN];
    int64_t bytes;
} exec_budget;

enum { EXEC_BUDGET_OK = 0, EXEC_BUDGET_ORG = 1, EXEC_BUDGET_SERVER = 2 };

/* NULL when out of memory. */
exec_limits *exec_limits_new(int64_t server_budget, int64_t org_budget, int max_per_cluster);
/* Once nothing is held any more. */
void exec_limits_free(exec_limits *L);

/* 0: slot taken.  -1: the cluster already has the maximum (*count gets it). */
int exec_limits_slot_acquire(exec_limits *L, exec_slot *s, const char *org_id,
                             const char *cluster_id, int *count);
void exec_limits_slot_release(exec_slot *s);

/* Charges n more bytes to b (whose org_id and limits are set on first use),
 * or nothing: EXEC_BUDGET_ORG / EXEC_BUDGET_SERVER say which budget has no
 * room.  b is charged to L only. */
int exec_limits_reserve(exec_limits *L, exec_budget *b, const char *org_id, int64_t n);
/* Charges n more bytes to b whatever the budgets say, for memory that is
 * already allocated and must be counted (a JSON answer built from a capture
 * that fitted): the budgets may go over, and then refuse every reservation
 * until enough is released.  EXEC_BUDGET_OK when b still fits, else which
 * budget is over. */
int exec_limits_charge(exec_limits *L, exec_budget *b, const char *org_id, int64_t n);
/* Returns n of what b holds (at most all of it). */
void exec_limits_unreserve(exec_budget *b, int64_t n);
/* Returns everything b holds. */
void exec_limits_release(exec_budget *b);

typedef struct {
    int64_t org_bytes, org_budget;       /* buffered output of the organization */
    int64_t server_bytes, server_budget; /* of every organization */
    int64_t server_commands;             /* slots held, server-wide */
    int max_per_cluster;
} exec_usage;

typedef struct {
    char cluster_id[STORE_CLUSTER_ID_LEN];
    int commands;
} exec_cluster_usage;

/* The organization's numbers and up to cap of its clusters with commands
 * (*ncl gets how many were written). */
void exec_limits_usage(exec_limits *L, const char *org_id, exec_usage *u,
                       exec_cluster_usage *cl, size_t cap, size_t *ncl);

#endif
