/* instance.h — this server process as one of the replicas that may share the
 * state store, so that "every command is audited" survives a crash.
 *
 * A command's audit row is written when it is dispatched (outcome "started")
 * with this process's instance id, and completed at its end.  A process that
 * dies (kill -9, OOM, power) leaves its rows "started"; they are closed as
 * "interrupted" by whichever process sweeps next, at start-up and then every
 * lease/3 seconds.  A replica must never close the rows of a live one, so a
 * row is closed only when its instance is known to be gone:
 *
 *  - its lease lapsed: each instance renews heartbeat_at every lease/3 s
 *    (AURORA_INSTANCE_LEASE, 60 s); after a full lease without renewal any
 *    replica, on any host, takes it for dead.  Clocks of the replicas must
 *    agree to well within the lease (NTP);
 *  - or, without waiting for the lease, when the instance ran in the same
 *    process space as the sweeper (same kernel boot id and PID namespace, so
 *    its pid means the same thing here) and that pid no longer exists, or is
 *    the sweeper's own pid (a restart of the same container/service that
 *    reused it).  A server restarted on the same machine thus closes its
 *    predecessor's rows at once; a replica on another host or in another
 *    container waits for the lease.
 *
 * A lost lease is not fatal: a replica that was paused past its lease finds
 * its rows closed as "interrupted"; its completions still overwrite them with
 * the real outcome, and its next heartbeat registers it again. */
#ifndef AURORA_INSTANCE_H
#define AURORA_INSTANCE_H

#include <stddef.h>
#include <stdint.h>

#include "server_config.h"
#include "store.h"
#include "worker.h"

struct lws_context;

/* This process's instance id ("ins_" + 24 hex); "" before instance_start. */
const char *instance_id(void);

/* Main thread, before serving: registers this instance (random id, host,
 * process space, pid) and sweeps.  -1 with err when the instance cannot be
 * registered: its rows could not be told from a dead process's. */
int instance_start(store_t *st, const server_config *cfg, char *err, size_t errlen);
/* Loop thread, once the workers run: renews the lease and sweeps every
 * lease/3 seconds, on a worker of pool. */
void instance_schedule(struct lws_context *ctx, workers *pool);
/* Main thread after the workers stopped: marks this instance gone, so its
 * rows (none are left "started" after a clean stop) need no lease to expire. */
void instance_stop(const server_config *cfg);

/* One sweep (worker thread, or the main thread before serving): retires
 * instances of this process space whose pid is gone, then closes the audit
 * rows and resets the connection rows (store_connection_reset_dead) of every
 * instance without a live lease.  Returns the rows closed, -1 on a
 * store error. */
int64_t instance_sweep(store_t *st, int64_t now);

#endif
