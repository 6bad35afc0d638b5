/* landlock.h — the Landlock rules of one cloud command (sandbox.h).
 *
 * Landlock is the Linux security module an unprivileged process uses to
 * restrict itself (and everything it starts) to the files and TCP ports it
 * names; it works inside a restricted pod, under no_new_privs, without any
 * capability.  The agent speaks it with raw system calls (no library): the
 * kernel's ABI version, probed once, says which access rights exist:
 *
 *   ABI 1  files: execute, read, write, list, create and remove entries
 *   ABI 2  + REFER (link/rename across directories)
 *   ABI 3  + TRUNCATE
 *   ABI 4  + TCP bind and connect by port
 *   ABI 5  + IOCTL_DEV (ioctl on device files)
 *   ABI 6  + scoping: no signals to, no abstract unix sockets of, processes
 *            outside the command's own domain (the agent, other commands)
 *   ABI 7  audit logging controls (nothing the agent needs)
 *
 * Every right the running kernel knows is handled (denied unless a rule
 * grants it), so an older kernel enforces less but never fails a command.
 *
 * What a command may do (the plan, built once at start; a ruleset per command):
 *   - read and execute below each read-only path (AURORA_SANDBOX_READONLY_PATHS),
 *     except below the never-reachable paths (AURORA_SANDBOX_DENY_PATHS, the
 *     ServiceAccount token's directory, the agent's config file, the sandbox
 *     base directory with the other commands' directories).  A read-only path
 *     that contains a never-reachable one is replaced by its entries, down to
 *     the never-reachable one, which is left out (Landlock only ever grants);
 *     symlinks among those entries are left out too (a rule on a symlink would
 *     grant its target);
 *   - read the extra files the operator hands the command (CA bundles named
 *     by its environment), unless never-reachable;
 *   - read and write /dev/null, /dev/zero, /dev/full, read /dev/random and
 *     /dev/urandom;
 *   - everything but execute in its own HOME and TMPDIR (no device nodes);
 *   - ABI >= 4: connect to the allowed TCP ports only (AURORA_SANDBOX_ALLOWED_PORTS,
 *     plus the port of an egress proxy the operator configured), bind none. */
#ifndef AURORA_AGENT_LANDLOCK_H
#define AURORA_AGENT_LANDLOCK_H

#include <stddef.h>
#include <stdint.h>

#define LL_MAX_PORTS 64
#define LL_NOTHING (-2)

/* The kernel's Landlock ABI version, 0 without Landlock (then *why says
 * why: the errno of the probe). */
int ll_abi(int *why);
/* A sentence for the errno of a failed probe. */
const char *ll_unavailable_reason(int why);

typedef struct ll_plan ll_plan;

typedef struct {
    int abi;                  /* what to enforce (<= the kernel's) */
    const char *readonly;     /* comma-separated absolute paths */
    const char *deny;         /* comma-separated absolute paths */
    const char *ports;        /* comma-separated TCP ports, or "all" */
} ll_settings;

/* Checks a comma-separated list of absolute paths (no "..", no control
 * characters).  0, or -1 with err naming `what`. */
int ll_check_paths(const char *list, const char *what, char *err, size_t errlen);
/* Parses the ports setting ("all" or 1..65535, at most LL_MAX_PORTS).
 * Sets *all for "all".  Returns the number of ports, or -1 with err. */
int ll_parse_ports(const char *list, uint16_t *ports, int *all, char *err, size_t errlen);

/* Builds the plan (resolves paths, expands read-only paths around the
 * never-reachable ones).  extra_deny: more never-reachable paths (NULL-
 * terminated; missing ones are fine).  NULL with err on a bad setting or OOM. */
ll_plan *ll_plan_build(const ll_settings *s, const char *const *extra_deny, char *err,
                       size_t errlen);
void ll_plan_free(ll_plan *p);
int ll_plan_abi(const ll_plan *p);
int ll_plan_fs(const ll_plan *p);     /* file system rules enforced */
int ll_plan_net(const ll_plan *p);    /* TCP ports enforced */
int ll_plan_scoped(const ll_plan *p); /* signals and abstract sockets scoped */
/* 1 if path is, or is inside, a never-reachable path. */
int ll_plan_denied(const ll_plan *p, const char *path);
/* 1 if a command may read path: below a read-only path and not never-reachable
 * (always 1 without file system rules). */
int ll_plan_readable(const ll_plan *p, const char *path);
/* Number of rules and the ports (for logs and register). */
int ll_plan_nrules(const ll_plan *p);
int ll_plan_ports(const ll_plan *p, const uint16_t **ports);
/* The read-only and never-reachable paths as given, resolved (for logs). */
const char *ll_plan_readonly_text(const ll_plan *p);
const char *ll_plan_deny_text(const ll_plan *p);

/* One command's ruleset: the plan, read+write (not execute) below rw[0..nrw),
 * read below ro[0..nro) (skipped when never-reachable or missing), connect to
 * ports[0..nports) too.  Returns the ruleset's descriptor (close-on-exec),
 * LL_NOTHING when the plan enforces nothing (no Landlock), or -1 with err. */
int ll_ruleset(const ll_plan *p, const char *const *rw, int nrw, const char *const *ro, int nro,
               const uint16_t *ports, int nports, char *err, size_t errlen);
/* In the child, after no_new_privs: enforce the ruleset.  0, or -1 (errno). */
int ll_restrict_self(int ruleset_fd);

#endif
