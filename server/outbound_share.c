/* outbound_share.c — per-organization places on the outbound pool
 * (outbound_share.h). */
#include "outbound_share.h"

#include <pthread.h>
#include <string.h>

#include "store.h"

/* One row per organization holding a place.  Rows are held by running
 * requests only, at most one each, and the pool has at most 256 threads
 * (server_config.c), so 256 rows never run out. */
#define SHARE_ROWS 256

typedef struct {
    char org[STORE_ID_LEN];
    int held; /* 0: the row is free */
} share_row;

static share_row g_rows[SHARE_ROWS];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

int outbound_share_limit(int workers, int setting)
{
    if (setting > 0)
        return setting;
    if (workers < 4)
        return 0;
    return (workers + 1) / 2;
}

static share_row *find(const char *org)
{
    for (int i = 0; i < SHARE_ROWS; i++)
        if (g_rows[i].held && !strcmp(g_rows[i].org, org))
            return &g_rows[i];
    return NULL;
}

int outbound_share_take(const char *org, int limit)
{
    if (limit <= 0 || !org || !*org || strlen(org) >= STORE_ID_LEN)
        return -1;
    int taken = 0;
    pthread_mutex_lock(&g_mu);
    share_row *r = find(org);
    if (r) {
        if (r->held < limit) {
            r->held++;
            taken = 1;
        }
    } else {
        for (int i = 0; i < SHARE_ROWS; i++)
            if (!g_rows[i].held) {
                memcpy(g_rows[i].org, org, strlen(org) + 1);
                g_rows[i].held = 1;
                taken = 1;
                break;
            }
        /* No free row cannot happen (see SHARE_ROWS); were it to, the
         * request runs uncounted rather than being refused for our
         * bookkeeping. */
        if (!taken)
            taken = -1;
    }
    pthread_mutex_unlock(&g_mu);
    return taken;
}

void outbound_share_release(const char *org)
{
    if (!org || !*org)
        return;
    pthread_mutex_lock(&g_mu);
    share_row *r = find(org);
    if (r)
        r->held--;
    pthread_mutex_unlock(&g_mu);
}

int outbound_share_held(const char *org)
{
    pthread_mutex_lock(&g_mu);
    share_row *r = find(org);
    int n = r ? r->held : 0;
    pthread_mutex_unlock(&g_mu);
    return n;
}
