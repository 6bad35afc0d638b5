/* landlock.c — Landlock rulesets over raw system calls (see landlock.h). */
#include "landlock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

/* Debian 12's <linux/landlock.h> describes ABI 2; the later rights are the
 * kernel's stable UAPI values (Documentation/userspace-api/landlock.rst). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#endif
#ifndef LANDLOCK_ACCESS_NET_CONNECT_TCP
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif
#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif

/* enum landlock_rule_type */
#define RULE_PATH_BENEATH 1
#define RULE_NET_PORT 2

/* struct landlock_ruleset_attr as of ABI 6; the size passed says which
 * fields the kernel reads (8: ABI 1-3, 16: ABI 4-5, 24: ABI 6+). */
struct ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
};

#define FS_EXEC LANDLOCK_ACCESS_FS_EXECUTE
#define FS_READ LANDLOCK_ACCESS_FS_READ_FILE
#define FS_WRITE LANDLOCK_ACCESS_FS_WRITE_FILE
#define FS_LIST LANDLOCK_ACCESS_FS_READ_DIR
/* the rights a rule on a non-directory may carry */
#define FS_FILE_RIGHTS                                                                       \
    (FS_EXEC | FS_READ | FS_WRITE | LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)

#define ACCESS_RO (FS_EXEC | FS_READ | FS_LIST)
#define ACCESS_DEV_RW (FS_READ | FS_WRITE | LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)
#define ACCESS_DEV_RO (FS_READ | LANDLOCK_ACCESS_FS_IOCTL_DEV)

#define MAX_RULES 65536
#define MAX_DEPTH 64

static uint64_t fs_handled(int abi)
{
    uint64_t a = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0..12 */
    if (abi >= 2)
        a |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        a |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        a |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return a;
}

/* HOME and TMPDIR: everything the ABI knows but executing files and making
 * device nodes (writable xor executable). */
static uint64_t rw_access(int abi)
{
    return fs_handled(abi) &
           ~(FS_EXEC | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_BLOCK);
}

int ll_abi(int *why)
{
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (v < 0) {
        if (why)
            *why = errno;
        return 0;
    }
    if (why)
        *why = 0;
    return (int)v;
}

const char *ll_unavailable_reason(int why)
{
    switch (why) {
    case ENOSYS:
        return "the kernel has no Landlock (built without CONFIG_SECURITY_LANDLOCK)";
    case EOPNOTSUPP:
        return "Landlock is built in but not enabled (it is missing from the kernel's lsm= list)";
    case EPERM:
    case EACCES:
        return "a seccomp profile refuses the Landlock system calls";
    default:
        return strerror(why);
    }
}

/* ---- paths ------------------------------------------------------------------ */

/* child is parent or below it */
static int within(const char *child, const char *parent)
{
    size_t n = strlen(parent);
    if (n == 1 && parent[0] == '/')
        return 1;
    return !strncmp(child, parent, n) && (child[n] == '\0' || child[n] == '/');
}

/* realpath of the longest existing prefix of an absolute path, with the
 * rest appended (a path that does not exist yet still compares right). */
static int resolve(const char *path, char *out, size_t outlen)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);
    if (path[0] != '/' || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, len + 1);
    size_t cut = len;
    for (;;) {
        char *r;
        if (cut == 0) {
            r = realpath("/", NULL);
        } else {
            char c = tmp[cut];
            tmp[cut] = '\0';
            r = realpath(tmp, NULL);
            tmp[cut] = c;
        }
        if (r) {
            const char *rest = path + cut;
            int n = snprintf(out, outlen, "%s%s", strcmp(r, "/") ? r : "", rest);
            free(r);
            if (n <= 0) {
                snprintf(out, outlen, "/");
                return 0;
            }
            return (size_t)n < outlen ? 0 : -1;
        }
        if (cut == 0)
            return -1;
        do
            cut--;
        while (cut > 0 && tmp[cut] != '/');
    }
}

/* Calls fn for every entry of a comma-separated list, trimmed, with
 * repeated and trailing slashes removed.  Stops at the first non-zero. */
static int each_entry(const char *list, int (*fn)(void *ctx, const char *entry), void *ctx)
{
    const char *p = list ? list : "";
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n) {
            char buf[PATH_MAX];
            size_t k = 0;
            for (size_t i = 0; i < n && k + 1 < sizeof(buf); i++) {
                if (p[i] == '/' && k && buf[k - 1] == '/')
                    continue;
                buf[k++] = p[i];
            }
            while (k > 1 && buf[k - 1] == '/')
                k--;
            buf[k] = '\0';
            if (n >= sizeof(buf))
                buf[0] = '\0'; /* too long: reported as invalid */
            int r = fn(ctx, buf);
            if (r)
                return r;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

typedef struct {
    const char *what;
    char *err;
    size_t errlen;
} check_ctx;

static int check_one(void *vctx, const char *e)
{
    check_ctx *c = vctx;
    const char *why = NULL;
    if (e[0] != '/')
        why = "is not an absolute path";
    for (const char *q = e; !why && *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            why = "contains control characters";
    for (const char *q = e; !why && (q = strstr(q, "/.")); q++)
        if (q[2] == '/' || q[2] == '\0' || (q[2] == '.' && (q[3] == '/' || q[3] == '\0')))
            why = "has a . or .. component";
    if (why) {
        snprintf(c->err, c->errlen, "%s: %.200s %s", c->what, e[0] ? e : "(too long)", why);
        return -1;
    }
    return 0;
}

int ll_check_paths(const char *list, const char *what, char *err, size_t errlen)
{
    check_ctx c = {what, err, errlen};
    return each_entry(list, check_one, &c) ? -1 : 0;
}

int ll_parse_ports(const char *list, uint16_t *ports, int *all, char *err, size_t errlen)
{
    *all = 0;
    int n = 0;
    const char *p = list ? list : "";
    while (*p == ' ')
        p++;
    if (!strcmp(p, "all")) {
        *all = 1;
        return 0;
    }
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *s = p;
        long v = 0;
        while (*p >= '0' && *p <= '9' && v <= 65535)
            v = v * 10 + (*p++ - '0');
        if (p == s || v < 1 || v > 65535 || (*p && *p != ',' && *p != ' ')) {
            snprintf(err, errlen, "AURORA_SANDBOX_ALLOWED_PORTS must be \"all\" or TCP ports "
                                  "1-65535 separated by commas");
            return -1;
        }
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= ports[i] == (uint16_t)v;
        if (dup)
            continue;
        if (n >= LL_MAX_PORTS) {
            snprintf(err, errlen, "AURORA_SANDBOX_ALLOWED_PORTS: at most %d ports", LL_MAX_PORTS);
            return -1;
        }
        ports[n++] = (uint16_t)v;
    }
    return n;
}

/* ---- the plan ------------------------------------------------------------------ */

typedef struct {
    char *path;
    uint64_t access; /* before masking by ABI and file type */
} rule;

struct ll_plan {
    int abi, fs, net, scoped;
    rule *rules;
    int nrules, cap;
    char **deny, **ro;
    int ndeny, nro;
    uint16_t ports[LL_MAX_PORTS];
    int nports;
    char *ro_text, *deny_text;
    int oom;
};

static char **push_str(char **arr, int *n, const char *s, int *oom)
{
    char **na = realloc(arr, sizeof(char *) * (size_t)(*n + 1));
    char *d = strdup(s);
    if (!na || !d) {
        free(d);
        *oom = 1;
        return na ? na : arr;
    }
    na[(*n)++] = d;
    return na;
}

static int push_rule(ll_plan *p, const char *path, uint64_t access)
{
    if (p->nrules >= MAX_RULES)
        return -1;
    if (p->nrules == p->cap) {
        int nc = p->cap ? p->cap * 2 : 64;
        rule *nr = realloc(p->rules, sizeof(rule) * (size_t)nc);
        if (!nr) {
            p->oom = 1;
            return -1;
        }
        p->rules = nr;
        p->cap = nc;
    }
    char *d = strdup(path);
    if (!d) {
        p->oom = 1;
        return -1;
    }
    p->rules[p->nrules].path = d;
    p->rules[p->nrules].access = access;
    p->nrules++;
    return 0;
}

static int is_denied(const ll_plan *p, const char *resolved)
{
    for (int i = 0; i < p->ndeny; i++)
        if (within(resolved, p->deny[i]))
            return 1;
    return 0;
}

/* A never-reachable path strictly below dir? */
static int holds_denied(const ll_plan *p, const char *dir)
{
    for (int i = 0; i < p->ndeny; i++)
        if (strcmp(p->deny[i], dir) && within(p->deny[i], dir))
            return 1;
    return 0;
}

/* Grants read+execute below path, or, when a never-reachable path lies
 * below it, below each of its entries but that one (recursively). */
static int add_tree(ll_plan *p, const char *path, int depth)
{
    if (!holds_denied(p, path))
        return push_rule(p, path, ACCESS_RO);
    if (depth >= MAX_DEPTH)
        return 0; /* give up on this branch: granting nothing is the safe side */
    DIR *d = opendir(path);
    if (!d) {
        log_warn("sandbox: cannot list %s to leave out the never-reachable paths below it (%s): "
                 "not made readable",
                 path, strerror(errno));
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char child[PATH_MAX];
        if (snprintf(child, sizeof(child), "%s/%s", strcmp(path, "/") ? path : "", de->d_name) >=
            (int)sizeof(child))
            continue;
        struct stat st;
        if (lstat(child, &st) != 0 || S_ISLNK(st.st_mode))
            continue; /* a rule on a symlink would grant its target */
        if (is_denied(p, child))
            continue;
        rc = add_tree(p, child, depth + 1);
    }
    closedir(d);
    return rc;
}

typedef struct {
    ll_plan *p;
    char *err;
    size_t errlen;
} build_ctx;

static int add_deny(ll_plan *p, const char *path, char *err, size_t errlen)
{
    char r[PATH_MAX];
    if (resolve(path, r, sizeof(r)) != 0) {
        snprintf(err, errlen, "cannot resolve the never-reachable path %.200s", path);
        return -1;
    }
    for (int i = 0; i < p->ndeny; i++)
        if (within(r, p->deny[i]))
            return 0; /* already never reachable */
    p->deny = push_str(p->deny, &p->ndeny, r, &p->oom);
    return p->oom ? -1 : 0;
}

static int deny_entry(void *vctx, const char *e)
{
    build_ctx *c = vctx;
    return add_deny(c->p, e, c->err, c->errlen);
}

static int ro_entry(void *vctx, const char *e)
{
    build_ctx *c = vctx;
    ll_plan *p = c->p;
    char *r = realpath(e, NULL);
    if (!r) {
        log_debug("sandbox: read-only path %s: %s (skipped)", e, strerror(errno));
        return 0;
    }
    int rc = 0;
    int dup = 0;
    for (int i = 0; i < p->nro; i++)
        dup |= within(r, p->ro[i]); /* /lib is /usr/lib on a merged-/usr system */
    if (is_denied(p, r)) {
        log_warn("sandbox: read-only path %s is inside a never-reachable path: left out", e);
    } else if (!dup) {
        p->ro = push_str(p->ro, &p->nro, r, &p->oom);
        rc = p->oom ? -1 : add_tree(p, r, 0);
        if (rc && !p->oom)
            snprintf(c->err, c->errlen, "more than %d Landlock rules below %.200s", MAX_RULES, e);
    }
    free(r);
    return rc;
}

static char *join(char **v, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(s, ",");
        strcat(s, v[i]);
    }
    return s;
}

int ll_restrict_self(int ruleset_fd)
{
    return (int)syscall(SYS_landlock_restrict_self, ruleset_fd, 0);
}

ll_plan *ll_plan_build(const ll_settings *s, const char *const *extra_deny, char *err,
                       size_t errlen)
{
    if (ll_check_paths(s->readonly, "AURORA_SANDBOX_READONLY_PATHS", err, errlen) ||
        ll_check_paths(s->deny, "AURORA_SANDBOX_DENY_PATHS", err, errlen))
        return NULL;
    ll_plan *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int all = 0;
    int n = ll_parse_ports(s->ports, p->ports, &all, err, errlen);
    if (n < 0)
        goto fail;
    p->nports = n;
    p->abi = s->abi > 0 ? s->abi : 0;
    p->fs = p->abi >= 1;
    p->net = p->abi >= 4 && !all;
    p->scoped = p->abi >= 6;
    build_ctx c = {p, err, errlen};
    err[0] = '\0';
    if (each_entry(s->deny, deny_entry, &c))
        goto fail;
    for (int i = 0; extra_deny && extra_deny[i]; i++)
        if (extra_deny[i][0] == '/' && add_deny(p, extra_deny[i], err, errlen))
            goto fail;
    if (p->fs) {
        if (each_entry(s->readonly, ro_entry, &c))
            goto fail;
        static const char *const rw_dev[] = {"/dev/null", "/dev/zero", "/dev/full", NULL};
        static const char *const ro_dev[] = {"/dev/random", "/dev/urandom", NULL};
        for (int i = 0; rw_dev[i]; i++)
            if (push_rule(p, rw_dev[i], ACCESS_DEV_RW))
                goto fail;
        for (int i = 0; ro_dev[i]; i++)
            if (push_rule(p, ro_dev[i], ACCESS_DEV_RO))
                goto fail;
    }
    p->ro_text = join(p->ro, p->nro);
    p->deny_text = join(p->deny, p->ndeny);
    if (p->oom || !p->ro_text || !p->deny_text)
        goto fail;
    return p;
fail:
    if (p->oom || !err[0])
        snprintf(err, errlen, "out of memory");
    ll_plan_free(p);
    return NULL;
}

void ll_plan_free(ll_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nrules; i++)
        free(p->rules[i].path);
    for (int i = 0; i < p->ndeny; i++)
        free(p->deny[i]);
    for (int i = 0; i < p->nro; i++)
        free(p->ro[i]);
    free(p->rules);
    free(p->deny);
    free(p->ro);
    free(p->ro_text);
    free(p->deny_text);
    free(p);
}

int ll_plan_abi(const ll_plan *p) { return p ? p->abi : 0; }
int ll_plan_fs(const ll_plan *p) { return p ? p->fs : 0; }
int ll_plan_net(const ll_plan *p) { return p ? p->net : 0; }
int ll_plan_scoped(const ll_plan *p) { return p ? p->scoped : 0; }
int ll_plan_nrules(const ll_plan *p) { return p ? p->nrules : 0; }
const char *ll_plan_readonly_text(const ll_plan *p) { return p && p->ro_text ? p->ro_text : ""; }
const char *ll_plan_deny_text(const ll_plan *p) { return p && p->deny_text ? p->deny_text : ""; }

int ll_plan_ports(const ll_plan *p, const uint16_t **ports)
{
    *ports = p ? p->ports : NULL;
    return p ? p->nports : 0;
}

int ll_plan_denied(const ll_plan *p, const char *path)
{
    char r[PATH_MAX];
    if (!p || !path || path[0] != '/')
        return 0;
    if (resolve(path, r, sizeof(r)) != 0)
        return 1; /* cannot tell: treat as never-reachable */
    return is_denied(p, r);
}

int ll_plan_readable(const ll_plan *p, const char *path)
{
    if (!p || !p->fs)
        return 1;
    char r[PATH_MAX];
    if (!path || path[0] != '/' || resolve(path, r, sizeof(r)) != 0 || is_denied(p, r))
        return 0;
    for (int i = 0; i < p->nro; i++)
        if (within(r, p->ro[i]))
            return 1;
    return 0;
}

/* ---- one command's ruleset ------------------------------------------------------- */

/* 1 added, 0 skipped (missing, a symlink, nothing to grant), -1 failed */
static int add_path(int rfd, int abi, const char *path, uint64_t access, int must_be_dir)
{
    int pfd = open(path, O_PATH | O_CLOEXEC | O_NOFOLLOW | (must_be_dir ? O_DIRECTORY : 0));
    if (pfd < 0)
        return must_be_dir ? -1 : 0;
    struct stat st;
    if (fstat(pfd, &st) != 0 || S_ISLNK(st.st_mode)) {
        close(pfd);
        return must_be_dir ? -1 : 0;
    }
    access &= fs_handled(abi);
    if (!S_ISDIR(st.st_mode))
        access &= FS_FILE_RIGHTS;
    int rc = 0;
    if (access) {
        struct path_beneath_attr pb = {.allowed_access = access, .parent_fd = pfd};
        rc = syscall(SYS_landlock_add_rule, rfd, RULE_PATH_BENEATH, &pb, 0) == 0 ? 1 : -1;
    }
    int e = errno;
    close(pfd);
    errno = e;
    return rc;
}

static int add_port(int rfd, uint16_t port)
{
    struct net_port_attr np = {.allowed_access = LANDLOCK_ACCESS_NET_CONNECT_TCP, .port = port};
    return (int)syscall(SYS_landlock_add_rule, rfd, RULE_NET_PORT, &np, 0);
}

int ll_ruleset(const ll_plan *p, const char *const *rw, int nrw, const char *const *ro, int nro,
               const uint16_t *ports, int nports, char *err, size_t errlen)
{
    if (!p || p->abi < 1)
        return LL_NOTHING;
    struct ruleset_attr attr = {0};
    attr.handled_access_fs = fs_handled(p->abi);
    if (p->net)
        attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
    if (p->scoped)
        attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
    size_t size = p->abi >= 6 ? 24 : p->abi >= 4 ? 16 : 8;
    int rfd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (rfd < 0) {
        snprintf(err, errlen, "landlock_create_ruleset (ABI %d): %s", p->abi, strerror(errno));
        return -1;
    }
    /* a read-only rule the kernel refuses only grants less: skipped, not fatal */
    for (int i = 0; i < p->nrules; i++)
        if (add_path(rfd, p->abi, p->rules[i].path, p->rules[i].access, 0) < 0)
            log_debug("sandbox: no Landlock rule for %s: %s", p->rules[i].path, strerror(errno));
    for (int i = 0; i < nrw; i++)
        if (add_path(rfd, p->abi, rw[i], rw_access(p->abi), 1) < 0) {
            snprintf(err, errlen, "Landlock rule for %.200s: %s", rw[i], strerror(errno));
            goto fail;
        }
    for (int i = 0; i < nro; i++) {
        if (!ro[i] || ro[i][0] != '/')
            continue;
        if (ll_plan_denied(p, ro[i])) {
            log_warn("sandbox: %s is inside a never-reachable path: not made readable", ro[i]);
            continue;
        }
        char r[PATH_MAX];
        if (resolve(ro[i], r, sizeof(r)) == 0 && add_path(rfd, p->abi, r, ACCESS_RO, 0) < 0)
            log_debug("sandbox: no Landlock rule for %s: %s", r, strerror(errno));
    }
    if (p->net) {
        for (int i = 0; i < p->nports; i++)
            if (add_port(rfd, p->ports[i]) != 0) {
                snprintf(err, errlen, "Landlock rule for port %u: %s", p->ports[i],
                         strerror(errno));
                goto fail;
            }
        for (int i = 0; i < nports; i++)
            if (ports[i] && add_port(rfd, ports[i]) != 0) {
                snprintf(err, errlen, "Landlock rule for port %u: %s", ports[i], strerror(errno));
                goto fail;
            }
    }
    return rfd;
fail:
    close(rfd);
    return -1;
}
