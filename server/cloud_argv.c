/* cloud_argv.c — selectors in a cloud CLI's argv (see cloud_argv.h). */
#include "cloud_argv.h"
#include "crypto.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EC_REFUSED "CLOUD_ARG_REFUSED"
#define EC_AMBIGUOUS "CLOUD_ARG_AMBIGUOUS"
#define MAX_CMD_WORDS 4
#define MAX_DECODE_ROUNDS 3

void cloud_argv_shown(const char *s, char *out, size_t cap)
{
    size_t k = 0;
    if (!cap)
        return;
    for (size_t i = 0; s && s[i] && k + 1 < cap; i++) {
        if (i >= 64) {
            if (k + 4 < cap) {
                memcpy(out + k, "...", 3);
                k += 3;
            }
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[k] = '\0';
}

static int refuse(cloud_argv_result *s, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(cloud_argv_result *s, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    s->status = status;
    s->code = code;
    cloud_argv_scan_free(s); /* nothing half-found is handed back */
    return -1;
}

void cloud_argv_scan_free(cloud_argv_result *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->sel[i].value);
        s->sel[i].value = NULL;
    }
    s->n = 0;
}

const cloud_selector *cloud_argv_primary(const cloud_argv_result *s, const char *dest)
{
    for (int i = 0; i < s->n; i++)
        if (s->sel[i].primary && !strcmp(s->sel[i].dest, dest))
            return &s->sel[i];
    return NULL;
}

/* ---- the table ----------------------------------------------------------------- */

/* 1 if the space-separated words are the first words of lead. */
static int words_lead(const char *words, const char *const *lead, int nlead)
{
    const char *p = words;
    for (int k = 0; *p; k++) {
        size_t n = strcspn(p, " ");
        if (k >= nlead || strlen(lead[k]) != n || strncmp(lead[k], p, n))
            return 0;
        p += n;
        while (*p == ' ')
            p++;
    }
    return 1;
}

static int context_ok(const cloud_flag *f, const char *const *lead, int nlead)
{
    return !f->context || words_lead(f->context, lead, nlead);
}

static int wildcard(const cloud_flag *f)
{
    return !strncmp(f->name, "--*", 3);
}

static const cloud_flag *find_flag(const cloud_cli *cli, const char *name, size_t len,
                                   const char *const *lead, int nlead)
{
    for (const cloud_flag *f = cli->flags; f && f->name; f++)
        if (!wildcard(f) && strlen(f->name) == len && !strncmp(f->name, name, len) &&
            context_ok(f, lead, nlead))
            return f;
    /* "--*-project": a long flag (not "--" alone) that ends with "-project" */
    for (const cloud_flag *f = cli->flags; f && f->name; f++) {
        if (!wildcard(f) || !context_ok(f, lead, nlead))
            continue;
        size_t sl = strlen(f->name + 3);
        if (len > 2 + sl && name[0] == '-' && name[1] == '-' &&
            !strncmp(name + len - sl, f->name + 3, sl))
            return f;
    }
    return NULL;
}

/* 1 if name could abbreviate a flag the refused wildcard f stands for
 * ("--*-account-key"): it ends with a proper prefix of f's suffix that holds
 * at least the suffix's first word and its '-' ("--source-account-k").  A
 * shorter one ("--source-acc") cannot be told from other flags without the
 * CLI's own list. */
static int wildcard_abbreviation(const cloud_flag *f, const char *name, size_t len)
{
    const char *suf = f->name + 3; /* "-account-key" */
    size_t sl = strlen(suf), first = strcspn(suf + 1, "-") + 2; /* "-account-" */
    if (f->kind != CLOUD_FLAG_REFUSE || first > sl)
        return 0;
    for (size_t i = 3; i < len; i++) {
        size_t rest = len - i;
        if (name[i] == '-' && rest >= first && rest < sl && !strncmp(name + i, suf, rest))
            return 1;
    }
    return 0;
}

/* A selector or refused long flag that name (not itself a flag of the table)
 * is a proper prefix of, when the CLI accepts abbreviations. */
static const cloud_flag *abbreviation_of(const cloud_cli *cli, const char *name, size_t len,
                                         const char *const *lead, int nlead)
{
    if (!cli->abbrev || len < 3 || name[1] != '-')
        return NULL;
    for (const cloud_flag *f = cli->flags; f && f->name; f++) {
        if (f->kind == CLOUD_FLAG_VALUE || f->name[1] != '-' || !context_ok(f, lead, nlead))
            continue;
        if (wildcard(f) ? wildcard_abbreviation(f, name, len)
                        : strlen(f->name) > len && !strncmp(f->name, name, len))
            return f;
    }
    return NULL;
}

/* ---- selectors ----------------------------------------------------------------- */

static int add_sel(cloud_argv_result *s, const char *value, size_t len, const char *dest,
                   cloud_sel_source src, int primary, const char *what)
{
    if (src != CLOUD_SEL_FLAG) /* flags: a repeat is refused by the caller */
        for (int i = 0; i < s->n; i++)
            if (s->sel[i].source == src && !strcmp(s->sel[i].dest, dest) &&
                strlen(s->sel[i].value) == len && !strncmp(s->sel[i].value, value, len))
                return 0; /* the same one again: raw and decoded forms, or
                             "billing projects describe" ⊃ "projects describe" */
    if (s->n >= CLOUD_ARGV_MAX_SELECTORS)
        return refuse(s, 400, EC_AMBIGUOUS,
                      "the command names more than %d projects, subscriptions or accounts: "
                      "split it", CLOUD_ARGV_MAX_SELECTORS);
    cloud_selector *c = &s->sel[s->n];
    memset(c, 0, sizeof(*c));
    c->value = malloc(len + 1);
    if (!c->value)
        return refuse(s, 500, "INTERNAL", "out of memory");
    memcpy(c->value, value, len);
    c->value[len] = '\0';
    c->dest = dest;
    c->source = src;
    c->primary = primary;
    snprintf(c->what, sizeof(c->what), "%s", what);
    s->n++;
    return 0;
}

/* az replaces an argument "@path" — or the part after its first '=' — by
 * the file's content ("@-": standard input), before parsing. */
static int at_file(const char *t)
{
    if (t[0] == '@' && t[1])
        return 1;
    const char *eq = strchr(t, '=');
    return eq && eq[1] == '@' && eq[2];
}

/* The characters that end an id inside a resource name or URL. */
static int ends_id(unsigned char c)
{
    return c <= 0x20 || c == 0x7f || strchr("/?#&,;=\"'()[]\\|<>@", c) != NULL;
}

static int word_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-';
}

/* The characters that end a URL's host (urllib3 and WHATWG parsers). */
static const char *host_breaker(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strchr("/?#\\", v[i]))
            return v + i;
    return NULL;
}

static int refuse_host_part(cloud_argv_result *s, const cloud_cli *cli, const char *where,
                            const char *v)
{
    char shown[80];
    cloud_argv_shown(v, shown, sizeof(shown));
    return refuse(s, 403, EC_REFUSED,
                  "%s (%s) is not allowed: %s builds an API host name from it, and a '/', '?', "
                  "'#' or '\\' there would send the request and its credentials to another host",
                  where, shown, cli->program);
}

static int scan_refs_in(cloud_argv_result *s, const cloud_cli *cli, const char *text, int argi)
{
    char what[32];
    snprintf(what, sizeof(what), "argument %d", argi + 1);
    for (const cloud_ref *r = cli->refs; r && (r->prefix || r->suffix); r++) {
        if (r->prefix && r->why) {
            if (strcasestr(text, r->prefix)) /* the argument is not echoed: a credential */
                return refuse(s, 403, EC_REFUSED, "%s is not allowed: %s", what, r->why);
        } else if (r->prefix && r->host_part) {
            size_t pl = strlen(r->prefix);
            for (const char *p = strcasestr(text, r->prefix); p; p = strcasestr(p + 1, r->prefix)) {
                if (isalnum((unsigned char)r->prefix[0]) && p > text &&
                    word_char((unsigned char)p[-1]))
                    continue;
                const char *seg = p + pl;
                size_t n = 0;
                while (seg[n] && seg[n] != '/' && (unsigned char)seg[n] > 0x20)
                    n++;
                if (host_breaker(seg, n))
                    return refuse_host_part(s, cli, what, seg);
            }
        } else if (r->prefix) {
            size_t pl = strlen(r->prefix);
            for (const char *p = strcasestr(text, r->prefix); p; p = strcasestr(p + 1, r->prefix)) {
                if (isalnum((unsigned char)r->prefix[0]) && p > text &&
                    word_char((unsigned char)p[-1]))
                    continue; /* "myprojects/x" */
                const char *id = p + pl;
                size_t n = 0;
                while (id[n] && !ends_id((unsigned char)id[n]))
                    n++;
                if (n && add_sel(s, id, n, r->dest, CLOUD_SEL_EMBEDDED, 0, what) < 0)
                    return -1;
            }
        } else {
            size_t sl = strlen(r->suffix);
            for (const char *p = strcasestr(text, r->suffix); p; p = strcasestr(p + sl, r->suffix)) {
                const char *q = p;
                while (q > text && q[-1] != '@' && !ends_id((unsigned char)q[-1]))
                    q--;
                if (q > text && q[-1] == '@' && q < p &&
                    add_sel(s, q, (size_t)(p - q), r->dest, CLOUD_SEL_EMBEDDED, 0, what) < 0)
                    return -1;
            }
        }
    }
    return 0;
}

/* One round of %XX decoding into out (as long as in); 1 if anything changed. */
static int percent_decode(const char *in, char *out)
{
    int changed = 0;
    size_t k = 0;
    for (size_t i = 0; in[i]; i++) {
        int hi, lo;
        if (in[i] == '%' && (hi = crypto_hex_digit(in[i + 1])) >= 0 && (lo = crypto_hex_digit(in[i + 2])) >= 0 &&
            (hi || lo)) {
            out[k++] = (char)(hi * 16 + lo);
            i += 2;
            changed = 1;
        } else {
            out[k++] = in[i];
        }
    }
    out[k] = '\0';
    return changed;
}

/* References in an argument, as written and as a server would decode it. */
static int scan_refs(cloud_argv_result *s, const cloud_cli *cli, const char *arg, int argi)
{
    if (!cli->refs)
        return 0;
    if (scan_refs_in(s, cli, arg, argi) < 0)
        return -1;
    if (!strchr(arg, '%'))
        return 0;
    size_t n = strlen(arg);
    char *a = malloc(n + 1), *b = malloc(n + 1);
    int rc = 0;
    if (!a || !b) {
        free(a);
        free(b);
        return refuse(s, 500, "INTERNAL", "out of memory");
    }
    memcpy(a, arg, n + 1);
    for (int round = 0; round < MAX_DECODE_ROUNDS && rc == 0 && percent_decode(a, b); round++) {
        rc = scan_refs_in(s, cli, b, argi);
        char *t = a;
        a = b;
        b = t;
    }
    free(a);
    free(b);
    return rc;
}

/* ---- commands -------------------------------------------------------------------- */

static int split_words(const char *words, const char *out[MAX_CMD_WORDS], size_t lens[MAX_CMD_WORDS])
{
    int n = 0;
    for (const char *p = words; *p && n < MAX_CMD_WORDS;) {
        size_t l = strcspn(p, " ");
        out[n] = p;
        lens[n++] = l;
        p += l;
        while (*p == ' ')
            p++;
    }
    return n;
}

static int scan_cmds(cloud_argv_result *s, const cloud_cli *cli, const char *const *argv,
                     const int *pos, int npos)
{
    for (const cloud_cmd *c = cli->cmds; c && c->words; c++) {
        const char *w[MAX_CMD_WORDS];
        size_t wl[MAX_CMD_WORDS];
        int nw = split_words(c->words, w, wl);
        int last_start = cli->commands_first ? 0 : npos - nw;
        for (int st = 0; st <= last_start && st + nw <= npos; st++) {
            int ok = 1;
            for (int k = 0; ok && k < nw; k++) {
                const char *a = argv[pos[st + k]];
                ok = strlen(a) == wl[k] && !strncmp(a, w[k], wl[k]);
            }
            if (!ok)
                continue;
            if (c->kind == CLOUD_CMD_REFUSE)
                return refuse(s, 403, EC_REFUSED, "%s %s is not allowed: %s", cli->program,
                              c->words, c->why);
            int end = npos;
            if (c->keep_last && npos - (st + nw) >= 2)
                end--;
            for (int k = st + nw; k < end; k++) {
                const char *a = argv[pos[k]];
                if (add_sel(s, a, strlen(a), c->dest, CLOUD_SEL_POSITIONAL, 0, c->words) < 0)
                    return -1;
            }
        }
    }
    return 0;
}

/* ---- the scan ---------------------------------------------------------------------- */

int cloud_argv_scan(const cloud_cli *cli, int argc, const char *const *argv, cloud_argv_result *s)
{
    memset(s, 0, sizeof(*s));
    if (argc < 0 || (argc > 0 && !argv))
        return refuse(s, 400, "BAD_REQUEST", "malformed command");
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return refuse(s, 400, "BAD_REQUEST", "malformed command");
    /* The command's leading words (for flag contexts). */
    int nlead = 0;
    while (nlead < argc && argv[nlead][0] != '-')
        nlead++;
    int *pos = malloc(sizeof(int) * (size_t)(argc + 1));
    if (!pos)
        return refuse(s, 500, "INTERNAL", "out of memory");
    const char *seen[CLOUD_ARGV_MAX_SELECTORS]; /* dests set by a flag */
    int nseen = 0, npos = 0, dashdash = 0, rc = -1;
    char shown[80];
    /* Every argument, whatever the parser makes of it: file indirection and
     * references inside resource names and URLs. */
    for (int i = 0; i < argc; i++) {
        if (cli->at_files && at_file(argv[i])) {
            cloud_argv_shown(argv[i], shown, sizeof(shown));
            refuse(s, 403, EC_REFUSED,
                   "argument %d (%s) is not allowed: %s reads \"@file\" arguments from files; "
                   "give the value itself", i + 1, shown, cli->program);
            goto out;
        }
        if (scan_refs(s, cli, argv[i], i) < 0)
            goto out;
    }
    /* Flags and positionals, as the CLI's parser reads them. */
    for (int i = 0; i < argc; i++) {
        const char *t = argv[i];
        if (dashdash || t[0] != '-' || !t[1]) {
            pos[npos++] = i;
            continue;
        }
        if (!strcmp(t, "--")) {
            dashdash = 1;
            continue;
        }
        const cloud_flag *f = NULL;
        const char *val = NULL;
        int attached = 0;
        const char *const *lead = argv; /* its first nlead words */
        if (t[1] == '-') {
            const char *eq = strchr(t, '=');
            size_t len = eq ? (size_t)(eq - t) : strlen(t);
            if (eq) {
                val = eq + 1;
                attached = 1;
            }
            f = find_flag(cli, t, len, lead, nlead);
            const cloud_flag *ab = f ? NULL : abbreviation_of(cli, t, len, lead, nlead);
            if (ab) {
                char typed[80];
                snprintf(typed, sizeof(typed), "%.*s", (int)(len < 64 ? len : 64), t);
                cloud_argv_shown(typed, shown, sizeof(shown));
                if (wildcard(ab))
                    refuse(s, 400, EC_AMBIGUOUS,
                           "%s would read %s as a flag ending in %s: write the flag in full",
                           cli->program, shown, ab->name + 2);
                else
                    refuse(s, 400, EC_AMBIGUOUS,
                           "%s would read %s as %s: write %s in full", cli->program, shown,
                           ab->name, ab->name);
                goto out;
            }
        } else {
            char nm[3] = { '-', t[1], '\0' };
            f = find_flag(cli, nm, 2, lead, nlead);
            int at = 1; /* where the flag's letter is */
            if (!f) {
                /* argparse reads "-yS…" as -y then -S…: a selector or refused
                 * letter after unknown ones is that flag */
                for (int k = 2; t[k] && t[k] != '='; k++) {
                    char n2[3] = { '-', t[k], '\0' };
                    const cloud_flag *g = find_flag(cli, n2, 2, lead, nlead);
                    if (g && g->kind == CLOUD_FLAG_VALUE)
                        break; /* the rest is that flag's value */
                    if (g) {
                        f = g;
                        at = k;
                        break;
                    }
                }
            }
            if (f && t[at + 1]) {
                val = t[at + 1] == '=' ? t + at + 2 : t + at + 1;
                attached = 1;
            }
        }
        if (!f)
            continue; /* unknown: its value, if any, counts as a positional */
        if (f->kind == CLOUD_FLAG_REFUSE) { /* named from the table: its value is not echoed */
            if (wildcard(f)) { /* the flag as typed, up to its '=' */
                char typed[80];
                size_t tl = strcspn(t, "=");
                snprintf(typed, sizeof(typed), "%.*s", (int)(tl < 64 ? tl : 64), t);
                cloud_argv_shown(typed, shown, sizeof(shown));
            }
            refuse(s, 403, EC_REFUSED, "%s %s is not allowed: %s", cli->program,
                   wildcard(f) ? shown : f->name, f->why);
            goto out;
        }
        if (!attached && i + 1 < argc && !(argv[i + 1][0] == '-' && argv[i + 1][1]))
            val = argv[++i];
        if (f->host_part && val && host_breaker(val, strlen(val))) {
            refuse_host_part(s, cli, f->name, val);
            goto out;
        }
        if (f->kind == CLOUD_FLAG_REFER && val && *val) {
            char typed[80];
            size_t tl = strcspn(t, "=");
            snprintf(typed, sizeof(typed), "%.*s", (int)(tl < 64 ? tl : 64), t);
            cloud_argv_shown(typed, shown, sizeof(shown));
            if (add_sel(s, val, strlen(val), f->dest, CLOUD_SEL_EMBEDDED, 0, shown) < 0)
                goto out;
            /* a boolean flag may end the same way: its "value" is checked as
             * a positional too, as after an unknown flag */
            if (!attached)
                pos[npos++] = i;
        }
        if (f->kind != CLOUD_FLAG_SELECT)
            continue;
        if (!val || !*val) {
            refuse(s, 400, "BAD_REQUEST", "%s needs a value", f->name);
            goto out;
        }
        for (int k = 0; k < nseen; k++)
            if (!strcmp(seen[k], f->dest)) {
                refuse(s, 400, EC_AMBIGUOUS,
                       "the %s is given more than once (%s keeps the last one): give it once",
                       f->dest, cli->program);
                goto out;
            }
        if (nseen < CLOUD_ARGV_MAX_SELECTORS)
            seen[nseen++] = f->dest;
        if (add_sel(s, val, strlen(val), f->dest, CLOUD_SEL_FLAG, f->primary, f->name) < 0)
            goto out;
    }
    if (scan_cmds(s, cli, argv, pos, npos) < 0)
        goto out;
    rc = 0;
out:
    free(pos);
    return rc;
}
