/* outbound_share.h — one organization's share of the outbound pool.
 *
 * The outbound workers (AURORA_OUTBOUND_WORKERS) are shared by every
 * organization's provider calls: connects, OAuth exchanges, repository and
 * project listings, searches.  A provider call may wait seconds, up to its
 * timeout, so one organization sending a handful of slow ones (a self-hosted
 * base URL that never answers, say) held every thread and everyone else's
 * connects queued behind them.  An authenticated request on that pool now
 * takes a place under its organization before its handler runs; an
 * organization at its share is answered 429 OUTBOUND_BUSY at once, which
 * costs a thread only for the key lookup.
 *
 * A place is held only while a request runs on an outbound thread, so no more
 * organizations than threads ever hold one: the table is that big and never
 * fills. */
#ifndef AURORA_OUTBOUND_SHARE_H
#define AURORA_OUTBOUND_SHARE_H

/* The share per organization for a pool of `workers` threads when
 * AURORA_OUTBOUND_PER_ORG is `setting` (0: automatic, half the pool rounded
 * up; a pool of fewer than 4 threads is not divided).  0 means no limit. */
int outbound_share_limit(int workers, int setting);

/* Takes a place for org when it holds fewer than limit.  1 when taken (give
 * it back with outbound_share_release), 0 when the organization is at its
 * share, -1 when nothing is counted (limit 0, no organization): run, and give
 * nothing back. */
int outbound_share_take(const char *org, int limit);

/* Gives back a place outbound_share_take returned 1 for. */
void outbound_share_release(const char *org);

/* Places org holds now (tests, metrics). */
int outbound_share_held(const char *org);

#endif
