/* argv_redact.c — see argv_redact.h. */
#include "argv_redact.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "argv_redact_text.h"
#include "utf8.h"

/* Long flags whose value is a credential, in any of the CLIs: kubectl's
 * --token, --password, --client-key (`config set-credentials`), its
 * --auth-provider-arg and --exec-env (may carry secrets), `create secret`'s
 * --from-literal; az's --password and --client-secret. */
static const char *const secret_flags[] = { "token",        "password",          "client-key",
                                            "client-secret", "auth-provider-arg", "from-literal",
                                            "exec-env",     NULL };

/* Short flags of one CLI whose value is a credential. */
static const struct {
    const char *program;
    const char *flag;
} secret_short[] = {
    { "az", "-p" }, /* az login --service-principal -u <id> -p <secret> */
    { NULL, NULL },
};

/* CLIs built on Python's argparse take any unambiguous prefix of a long
 * flag, even one letter ("--p" for az login's "--password"), as
 * test_cloud_argv.c records for az and aws; kubectl and gcloud take whole
 * names only. */
static int takes_prefixes(const char *program)
{
    return !strcmp(program, "az") || !strcmp(program, "aws");
}

/* Flag names whose last words say they carry a credential, in any CLI:
 * --admin-password, --docker-password, --master-user-password,
 * --root-password, --new-password, --sas-token, --account-key,
 * --secret-string, --connection-string, --client-secret, … */
static const char *const secret_suffixes[] = { "password",      "secret",          "token",
                                               "account-key",   "secret-string",   "connection-string",
                                               "access-key",    "storage-key",     "workspace-key",
                                               "sse-c-key",     "primary-key",     "secondary-key",
                                               "api-key",       "shared-key",      "master-key",
                                               "secret-binary",  "secret-key", NULL };

static int secret_suffix(const char *name, size_t n)
{
    for (const char *const *f = secret_suffixes; *f; f++) {
        size_t fl = strlen(*f);
        if (n < fl || (n > fl && name[n - fl - 1] != '-' && name[n - fl - 1] != '_'))
            continue;
        size_t i = 0;
        while (i < fl && (name[n - fl + i] == '_' ? '-' : name[n - fl + i]) == (*f)[i])
            i++;
        if (i == fl)
            return 1;
    }
    return 0;
}

/* 1 if name (n bytes, '_' read as '-') is one of secret_flags, or (prefixes)
 * the start of one. */
static int secret_long(const char *name, size_t n, int prefixes)
{
    for (const char *const *f = secret_flags; *f; f++) {
        size_t fl = strlen(*f);
        if (n == 0 || n > fl || (n < fl && !prefixes))
            continue;
        size_t i = 0;
        while (i < n && (name[i] == '_' ? '-' : name[i]) == (*f)[i])
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

argv_redact argv_redact_arg(const char *program, const char *arg, char *shown, size_t cap)
{
    if (!strncmp(arg, "--", 2)) {
        const char *name = arg + 2;
        size_t n = strcspn(name, "=");
        if (!secret_long(name, n, takes_prefixes(program)) && !secret_suffix(name, n))
            return ARGV_REDACT_NONE;
        if (!name[n])
            return ARGV_REDACT_NEXT;
        /* cut at a character boundary: the row must stay valid UTF-8 */
        size_t kept = n < 64 ? n : utf8_complete_prefix(name, 64);
        snprintf(shown, cap, "--%.*s=" ARGV_REDACTED, (int)kept, name);
        return ARGV_REDACT_INLINE;
    }
    for (size_t i = 0; secret_short[i].program; i++) {
        size_t fl = strlen(secret_short[i].flag);
        if (strcmp(program, secret_short[i].program) || strncmp(arg, secret_short[i].flag, fl))
            continue;
        if (!arg[fl])
            return ARGV_REDACT_NEXT; /* "-p secret" */
        /* "-psecret" or "-p=secret" */
        snprintf(shown, cap, "%s" ARGV_REDACTED, secret_short[i].flag);
        return ARGV_REDACT_INLINE;
    }
    return ARGV_REDACT_NONE;
}

/* ---- credentials that no flag name announces ----------------------------------------------- */

static int is_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

/* Whether one word (w bytes at p, case ignored) contains needle. */
static int word_has(const char *p, size_t w, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= w; i++)
        if (!strncasecmp(p + i, needle, nl))
            return 1;
    return 0;
}

static int word_is(const char *p, size_t w, const char *word)
{
    return strlen(word) == w && !strncasecmp(p, word, w);
}

/* Whether a name says its value is a credential.  Its words are split at
 * '_', '-', '.' and where camelCase changes case (DBPassword → DB Password,
 * clientSecret → client Secret).  A credential's when a word holds
 * password, passwd, secret, token, apikey, credential or passphrase
 * (PGPASSWORD, ClientSecret, GITHUB_TOKEN), is pwd, ends the name as pass
 * (RABBITMQ_DEFAULT_PASS), or when the name ends in key after another word
 * (API_KEY, AccountKey, SharedAccessKey, STRIPE_KEY) or in key data
 * (client-key-data).  Over-reading costs a value in the audit row
 * (TOKENIZER_MODE, ParameterKey); under-reading costs a credential. */
int argv_credential_name(const char *name, size_t n)
{
    static const char *const inside[] = { "password", "passwd",     "secret",     "token",
                                          "apikey",   "credential", "passphrase", NULL };
    const char *prev = NULL, *last = NULL;
    size_t prev_w = 0, last_w = 0, words = 0;
    for (size_t i = 0; i < n;) {
        if (name[i] == '_' || name[i] == '-' || name[i] == '.') {
            i++;
            continue;
        }
        size_t w = 1;
        while (i + w < n && name[i + w] != '_' && name[i + w] != '-' && name[i + w] != '.' &&
               !(is_lower(name[i + w - 1]) && is_upper(name[i + w])) &&
               !(is_upper(name[i + w - 1]) && is_upper(name[i + w]) && i + w + 1 < n &&
                 name[i + w + 1] >= 'a' && name[i + w + 1] <= 'z'))
            w++;
        for (const char *const *c = inside; *c; c++)
            if (word_has(name + i, w, *c))
                return 1;
        if (word_is(name + i, w, "pwd"))
            return 1;
        prev = last;
        prev_w = last_w;
        last = name + i;
        last_w = w;
        words++;
        i += w;
    }
    if (!last)
        return 0;
    if (word_is(last, last_w, "pass") || (words > 1 && word_is(last, last_w, "key")))
        return 1;
    return words > 2 && word_is(last, last_w, "data") && word_is(prev, prev_w, "key");
}

/* Where the value of the first NAME=VALUE whose NAME is a credential's
 * starts (an environment assignment after `kubectl set env`, `kubectl exec
 * … -- env`, in --env=, --set-env-vars=A=1,DB_PASSWORD=…, --settings,
 * Variables={…}); the value runs to the end of the argument: a list of
 * pairs has no delimiter a value cannot hold, so the pairs after it go too.
 * An option's own "--name=" is not an assignment (argv_redact_arg judges
 * the option: --secret-id=prod/db names a secret, it does not hold one).
 * len when there is none or it reads ARGV_REDACTED already.  Linear: each
 * name is read back only to the '=' before it. */
static size_t assignment_value(const char *arg, size_t len)
{
    /* A short option's value may follow it at once (pflag: -eDB_PASSWORD=…):
     * names start after the option letter. */
    const char *start = arg[0] == '-' && arg[1] && arg[1] != '-' ? arg + 2 : arg;
    const char *eq = memchr(arg, '=', len);
    if (eq && arg[0] == '-' && arg[1] == '-')
        eq = memchr(eq + 1, '=', len - (size_t)(eq + 1 - arg));
    for (; eq; eq = memchr(eq + 1, '=', len - (size_t)(eq + 1 - arg))) {
        const char *name = eq;
        while (name > start && argv_name_char(name[-1]))
            name--;
        if (!argv_credential_name(name, (size_t)(eq - name)))
            continue;
        size_t at = (size_t)(eq + 1 - arg);
        /* --from-file=password=/dev/stdin names where the value is read
         * from: the rule of the line's pipe reads what is written there */
        static const char dev_stdin[] = "/dev/stdin";
        size_t dl = sizeof(dev_stdin) - 1;
        if (len - at >= dl && !memcmp(arg + at, dev_stdin, dl) &&
            (at + dl == len || argv_blank(arg[at + dl]) || strchr("'\";|&)", arg[at + dl])))
            continue;
        return strcmp(arg + at, ARGV_REDACTED) ? at : len;
    }
    return len;
}

/* A byte of a list item's path (env[0].name): a name's or an index's. */
static int pair_char(char c)
{
    return argv_name_char(c) || c == '[' || c == ']';
}

/* Whether text holds "<prefix>.name=V" or "<prefix>.key=V" (the path
 * starting a pair: at the text's start or after ',', '=', a blank or a
 * quote) where V names a credential (DB_PASSWORD, API_KEY). */
static int names_credential(const char *t, const char *prefix, size_t pl)
{
    for (const char *p = t; (p = strstr(p, prefix)); p++) {
        if (p > t && pair_char(p[-1]))
            continue;
        const char *d = p + pl;
        size_t kl = !strncasecmp(d, ".name=", 6) ? 5 : !strncasecmp(d, ".key=", 5) ? 4 : 0;
        if (!kl)
            continue;
        const char *v = d + kl + 1;
        size_t vn = 0;
        while (v[vn] && v[vn] != ',' && !argv_blank(v[vn]) && v[vn] != '\'' && v[vn] != '"')
            vn++;
        if (vn && argv_credential_name(v, vn))
            return 1;
    }
    return 0;
}

/* helm --set env[0].name=DB_PASSWORD,env[0].value=S3cret: where the value
 * of a "<path>.value=" whose sibling "<path>.name=" (or ".key=") names a
 * credential starts, the sibling in this argument or in one of ctx (the
 * other arguments: --set a.name=TOKEN --set a.value=…); len when there is
 * none.  The value runs to the end of the argument, as an assignment's. */
static size_t sibling_value(const char *arg, size_t len, const cJSON *ctx)
{
    for (const char *p = arg; (p = strchr(p, '.')); p++) {
        if (strncasecmp(p + 1, "value=", 6))
            continue;
        const char *b = p;
        while (b > arg && pair_char(b[-1]))
            b--;
        size_t pl = (size_t)(p - b), at = (size_t)(p + 7 - arg);
        if (!pl || pl > 256 || !strcmp(arg + at, ARGV_REDACTED))
            continue;
        char prefix[257];
        memcpy(prefix, b, pl);
        prefix[pl] = '\0';
        int named = names_credential(arg, prefix, pl);
        for (const cJSON *it = ctx ? ctx->child : NULL; it && !named; it = it->next)
            if (cJSON_IsString(it) && it->valuestring)
                named = names_credential(it->valuestring, prefix, pl);
        if (named)
            return at;
    }
    return len;
}

/* The next "://" at or after i and before end, or end. */
static size_t next_scheme(const char *arg, size_t i, size_t end)
{
    for (; i + 3 <= end; i++)
        if (arg[i] == ':' && arg[i + 1] == '/' && arg[i + 2] == '/')
            return i;
    return end;
}

void argv_splice_init(argv_splice *s, const char *src)
{
    memset(s, 0, sizeof(*s));
    s->src = src;
}

void argv_splice_cut(argv_splice *s, size_t start, size_t end)
{
    argv_splice_cut_as(s, start, end, "");
}

/* Replaces src[start, end) by `text` then `after`. */
static void splice(argv_splice *s, size_t start, size_t end, const char *text, const char *after)
{
    if (s->failed || start < s->from || end < start)
        return;
    if (buf_append(&s->out, s->src + s->from, start - s->from) < 0 ||
        buf_append_str(&s->out, text) < 0 || buf_append_str(&s->out, after) < 0)
        s->failed = 1;
    s->from = end;
    s->changed = 1;
}

void argv_splice_cut_as(argv_splice *s, size_t start, size_t end, const char *after)
{
    splice(s, start, end, ARGV_REDACTED, after);
}

void argv_splice_put(argv_splice *s, size_t start, size_t end, const char *text)
{
    splice(s, start, end, text, "");
}

char *argv_splice_finish(argv_splice *s, size_t len)
{
    if (!s->changed)
        return NULL;
    if (!s->failed && s->from < len && buf_append(&s->out, s->src + s->from, len - s->from) < 0)
        s->failed = 1;
    if (s->failed) { /* fail closed: the whole argument goes */
        if (s->out.data)
            OPENSSL_cleanse(s->out.data, s->out.len);
        buf_free(&s->out);
        return strdup(ARGV_REDACTED);
    }
    return buf_detach(&s->out, NULL);
}

/* Whether the scheme before the "://" at arg[i] is ssh's (ssh, git+ssh,
 * svn+ssh, ssh+git) or sftp's. */
static int ssh_scheme(const char *arg, size_t i)
{
    size_t b = i;
    while (b > 0 && (argv_name_char(arg[b - 1]) || arg[b - 1] == '+'))
        b--;
    size_t n = i - b;
    const char *sc = arg + b;
    return (n >= 3 && !strncasecmp(sc + n - 3, "ssh", 3) && (n == 3 || sc[n - 4] == '+')) ||
           (n >= 4 && !strncasecmp(sc, "ssh+", 4)) || (n == 4 && !strncasecmp(sc, "sftp", 4));
}

/* Assignments and URL passwords (the first rule of argv_redact_embedded). */
static char *assignments_and_urls(const char *arg, size_t len, const cJSON *ctx)
{
    size_t cut = assignment_value(arg, len), sib = sibling_value(arg, cut, ctx);
    if (sib < cut)
        cut = sib;
    if (cut == len && !strstr(arg, "://"))
        return NULL; /* the common case, without an allocation */
    size_t red = strlen(ARGV_REDACTED);
    argv_splice s;
    argv_splice_init(&s, arg);
    /* The password of each URL's user info (scheme://user:PASSWORD@host):
     * from the first ':' of the authority, when no '/' comes before it and
     * it starts no port (host:8443/…), to the last '@' before the next URL
     * or a space.  The last '@', not the
     * first delimiter: passwords hold '@', '#', '/' and '?' (a DATABASE_URL
     * with an unencoded password), and a few bytes more redacted in an odd
     * URL cost less than part of a password shown.  Each span is read once. */
    /* User info without a password (https://TOKEN@github.com/…: a personal
     * access token as the user, which git, helm and curl send as Basic
     * credentials) goes whole, up to an '@' before the path, query or
     * fragment; and so does TOKEN:x-oauth-basic (GitHub's placeholder for
     * the password).  Not for ssh (ssh://git@host, sftp://me@host): there
     * the user is a login name, the credential a key.  The user of any
     * other scheme goes too (postgres://app@db: a name, over-redacted). */
    size_t i = next_scheme(arg, 0, cut);
    while (i < cut) {
        size_t host = i + 3, next = next_scheme(arg, host, cut), colon = 0, at = 0, plain_at = 0;
        int in_authority = 1;
        for (size_t k = host; k < next && arg[k] != ' ' && arg[k] != '\t'; k++) {
            if (arg[k] == '/' && !colon)
                break;
            if ((arg[k] == '?' || arg[k] == '#') && !colon)
                in_authority = 0; /* https://h?u=a@b: no user info */
            if (arg[k] == ':' && !colon) {
                size_t d = k + 1;
                while (d < next && arg[d] >= '0' && arg[d] <= '9')
                    d++;
                if (d > k + 1 && (d == next || arg[d] == '/' || arg[d] == '?' || arg[d] == '#'))
                    break; /* host:port/…: no user info (so user:123/x@h keeps "123/x") */
                colon = k;
            }
            if (arg[k] == '@' && colon)
                at = k;
            else if (arg[k] == '@' && in_authority)
                plain_at = k;
        }
        size_t from = 0, to = 0;
        if (colon && at > colon + 1) {
            from = colon + 1;
            to = at;
            static const char oauth_basic[] = "x-oauth-basic";
            if (at - from == sizeof(oauth_basic) - 1 && !memcmp(arg + from, oauth_basic, at - from))
                from = host; /* TOKEN:x-oauth-basic: the token is the user */
        } else if (!colon && plain_at > host && !ssh_scheme(arg, i)) {
            from = host;
            to = plain_at;
        }
        if (to > from && !(to - from == red && !memcmp(arg + from, ARGV_REDACTED, red)))
            argv_splice_cut(&s, from, to);
        i = next;
    }
    if (cut < len)
        argv_splice_cut(&s, cut, len);
    return argv_splice_finish(&s, len);
}

/* Well-known URLs whose path holds a credential: the secret of a Slack
 * incoming webhook (hooks.slack.com/services/T…/B…/SECRET, also its
 * workflow and trigger forms), a Discord webhook's token
 * (discord.com/api[/v10]/webhooks/ID/TOKEN, discordapp.com, ptb., canary.)
 * and a Telegram bot's token (api.telegram.org/botTOKEN/method, /file/bot…).
 * `skip` path segments after the prefix stay (the workspace, channel and
 * webhook ids), the next one goes; `version`: a v<digits>/ segment may
 * come before "webhooks/". */
static const struct {
    const char *prefix, *then;
    int skip, version;
} url_path_secrets[] = {
    { "hooks.slack.com/services/", "", 2, 0 },
    { "hooks.slack.com/workflows/", "", 3, 0 },
    { "hooks.slack.com/triggers/", "", 2, 0 },
    { "discord.com/api/", "webhooks/", 1, 1 },
    { "discordapp.com/api/", "webhooks/", 1, 1 },
    { "api.telegram.org/bot", "", 0, 0 },
    { "api.telegram.org/file/bot", "", 0, 0 },
    { NULL, NULL, 0, 0 },
};

/* Whether a[i] ends a URL path's segment: the next segment, a query or
 * fragment, or what ends the URL in a line (blanks, quotes, a shell's or
 * JSON's punctuation). */
static int segment_end(char c)
{
    return c == '/' || c == '?' || c == '#' || argv_blank(c) || (c && strchr("'\"`\\;|&()<>,{}[]", c));
}

static char *url_path_secret_cuts(const char *arg, size_t len)
{
    argv_splice s;
    argv_splice_init(&s, arg);
    size_t red = strlen(ARGV_REDACTED);
    for (size_t i = 0; i < len; i++) {
        /* a host name starts after a byte that is no name's: "//", a quote,
         * a blank (a URL without its scheme, as curl takes one) */
        if (i > 0 && argv_name_char(arg[i - 1]))
            continue;
        /* ptb.discord.com, canary.discord.com */
        size_t host = i;
        char c = (char)(arg[i] | 0x20);
        if (c == 'p' && !strncasecmp(arg + i, "ptb.", 4))
            host += 4;
        else if (c == 'c' && !strncasecmp(arg + i, "canary.", 7))
            host += 7;
        c = (char)(arg[host] | 0x20);
        if (c != 'h' && c != 'd' && c != 'a')
            continue; /* no prefix starts so: most bytes stop here */
        for (size_t u = 0; url_path_secrets[u].prefix; u++) {
            size_t pl = strlen(url_path_secrets[u].prefix), k = host + pl;
            if (url_path_secrets[u].prefix[0] != c || k > len ||
                strncasecmp(arg + host, url_path_secrets[u].prefix, pl))
                continue;
            if (url_path_secrets[u].version && k + 1 < len && arg[k] == 'v' && arg[k + 1] >= '0' &&
                arg[k + 1] <= '9') {
                k++;
                while (k < len && arg[k] >= '0' && arg[k] <= '9')
                    k++;
                if (k >= len || arg[k] != '/')
                    continue;
                k++;
            }
            size_t tl = strlen(url_path_secrets[u].then);
            if (len - k < tl || strncmp(arg + k, url_path_secrets[u].then, tl))
                continue;
            k += tl;
            int skipped = 0;
            while (skipped < url_path_secrets[u].skip) {
                size_t e = k;
                while (e < len && !segment_end(arg[e]))
                    e++;
                if (e == k || e >= len || arg[e] != '/')
                    break;
                k = e + 1;
                skipped++;
            }
            if (skipped < url_path_secrets[u].skip)
                continue;
            size_t e = k;
            while (e < len && !segment_end(arg[e]))
                e++;
            if (e > k && !(e - k == red && !memcmp(arg + k, ARGV_REDACTED, red)))
                argv_splice_cut(&s, k, e);
            i = e;
            break;
        }
    }
    return argv_splice_finish(&s, len);
}

/* A rule's result (NULL: nothing changed) becomes the text the next rule
 * reads; the one it replaces is wiped.  Returns that text. */
static const char *next_rule(char **now, char *result, const char *text)
{
    if (!result)
        return text;
    if (*now)
        OPENSSL_cleanse(*now, strlen(*now));
    free(*now);
    *now = result;
    return result;
}

/* Every rule over one argument's text, each over the previous one's result;
 * secret_data: the command reads or writes a Secret; ctx: the argv whose
 * argument it is (a sibling naming a value, sibling_value), or NULL. */
static char *embedded(const char *arg, int secret_data, const cJSON *ctx)
{
    char *now = assignments_and_urls(arg, strlen(arg), ctx);
    const char *text = now ? now : arg;
    text = next_rule(&now, url_path_secret_cuts(text, strlen(text)), text);
    text = next_rule(&now, argv_redact_values(text, strlen(text),
                                              secret_data || argv_names_secret(text)), text);
    text = next_rule(&now, argv_redact_js(text, strlen(text)), text);
    text = next_rule(&now, argv_redact_sql(text, strlen(text)), text);
    next_rule(&now, argv_redact_shell(text, strlen(text)), text);
    return now;
}

char *argv_redact_embedded(const char *arg)
{
    return embedded(arg, 0, NULL);
}

/* ---- one command's own credentials ------------------------------------------------------------ */

/* Each CLI's options that take the next argument as their value, wherever
 * they stand (aws --profile dev configure set …): skipped when looking for
 * the command's words.  Any other option stands alone.  A fixed list, not
 * "has no '='": a pass removes a '=' from what it redacts, and a second pass
 * must read the command the same way. */
static const struct {
    const char *program;
    const char *const options[32];
} valued_options[] = {
    { "aws", { "--profile", "--region", "--output", "--endpoint-url", "--query", "--color",
               "--ca-bundle", "--cli-read-timeout", "--cli-connect-timeout", "--cli-binary-format",
               NULL } },
    { "az", { "--subscription", "--output", "-o", "--query", NULL } },
    { "gcloud", { "--project", "--account", "--configuration", "--format", "--verbosity",
                  "--billing-project", "--impersonate-service-account", NULL } },
    { "kubectl", { "--kubeconfig", "--context", "--cluster", "--user", "-n", "--namespace", "-s",
                   "--server", "--as", "--as-group", "--as-uid", "--request-timeout",
                   "--certificate-authority", "--client-certificate", "--tls-server-name", "-v",
                   "--v", "--cache-dir", "--profile", "--log-dir", "--log-file", "-l",
                   "--selector", "--field-selector", "-o", "--output", "-c", "--container",
                   NULL } },
    { NULL, { NULL } },
};

static int takes_value(const char *program, const char *opt)
{
    char shown[ARGV_REDACT_SHOWN_MAX];
    if (argv_redact_arg(program, opt, shown, sizeof(shown)) == ARGV_REDACT_NEXT)
        return 1; /* --token, --password, --client-key, … */
    for (size_t p = 0; valued_options[p].program; p++)
        if (!strcmp(program, valued_options[p].program))
            for (const char *const *o = valued_options[p].options; *o; o++)
                if (!strcmp(opt, *o))
                    return 1;
    return 0;
}

/* The index of the first argument after the command's words (the first
 * arguments that are not options, in order), 0 when the command is another:
 * `az keyvault secret set …`. */
static int after_command(const cJSON *argv, int n, const char *program, const char *const *words)
{
    int i = 1, k = 0;
    while (words[k] && i < n) {
        const cJSON *it = cJSON_GetArrayItem(argv, i);
        if (!cJSON_IsString(it))
            return 0;
        const char *a = it->valuestring;
        if (a[0] == '-') {
            i += takes_value(program, a) ? 2 : 1;
            continue;
        }
        if (strcmp(a, words[k]))
            return 0;
        k++;
        i++;
    }
    return words[k] ? 0 : i;
}

/* Options whose value is a credential only in one command (in any of the
 * command's forms when only its first words are named). */
static const struct {
    const char *program;
    const char *words[4];
    const char *flag;
    const char *short_flag; /* its one-letter spelling, or NULL */
    int many; /* takes every argument up to the next option (argparse's nargs='+') */
} command_flags[] = {
    { "az", { "keyvault", "secret", "set", NULL }, "value", NULL, 0 }, /* the secret itself */
    { "az", { "containerapp", NULL }, "secrets", "-s", 1 },            /* name=value pairs */
    { "aws", { "ssm", "put-parameter", NULL }, "value", NULL, 0 },     /* SecureString or not */
    { "aws", { "kms", "encrypt", NULL }, "plaintext", NULL, 0 },       /* what is kept secret */
    { NULL, { NULL }, NULL, NULL, 0 },
};

/* The command's own credential flag, if arg is it: NEXT, INLINE (shown
 * filled) or NONE. */
static argv_redact command_flag(const char *flag, const char *short_flag, int prefixes,
                                const char *arg, char *shown, size_t cap)
{
    if (short_flag && arg[0] == '-' && arg[1] != '-' && !strncmp(arg, short_flag, 2)) {
        if (!arg[2])
            return ARGV_REDACT_NEXT; /* "-s v" */
        snprintf(shown, cap, "%s" ARGV_REDACTED, short_flag); /* "-sv", "-s=v" */
        return ARGV_REDACT_INLINE;
    }
    if (!flag || strncmp(arg, "--", 2))
        return ARGV_REDACT_NONE;
    const char *name = arg + 2;
    size_t n = strcspn(name, "="), fl = strlen(flag);
    if (n == 0 || n > fl || (n < fl && !prefixes) || strncmp(name, flag, n))
        return ARGV_REDACT_NONE;
    if (!name[n])
        return ARGV_REDACT_NEXT;
    snprintf(shown, cap, "--%.*s=" ARGV_REDACTED, (int)n, name);
    return ARGV_REDACT_INLINE;
}

/* Commands that set a named value: `aws configure set <name> <value>`,
 * `kubectl config set <name> <value>`.  The index of a value whose name is a
 * credential's (aws_secret_access_key, profile.dev.aws_session_token,
 * users.admin.token, users.admin.client-key-data), else 0. */
static int set_value(const cJSON *argv, int n, const char *program)
{
    static const struct {
        const char *program;
        const char *words[3];
    } setters[] = {
        { "aws", { "configure", "set", NULL } },
        { "kubectl", { "config", "set", NULL } },
        { NULL, { NULL } },
    };
    for (size_t s = 0; setters[s].program; s++) {
        if (strcmp(program, setters[s].program))
            continue;
        int i = after_command(argv, n, program, setters[s].words);
        while (i > 0 && i < n) { /* the first argument that is not an option is the name */
            const cJSON *it = cJSON_GetArrayItem(argv, i);
            if (!cJSON_IsString(it))
                return 0;
            const char *a = it->valuestring;
            if (a[0] != '-')
                return i + 1 < n && argv_credential_name(a, strlen(a)) ? i + 1 : 0;
            i += takes_value(program, a) ? 2 : 1;
        }
    }
    return 0;
}

/* Replaces item i of a with a new string (the old one wiped first). */
static int replace_item(cJSON *a, int i, const char *text)
{
    cJSON *old = cJSON_GetArrayItem(a, i);
    if (old && cJSON_IsString(old) && old->valuestring)
        OPENSSL_cleanse(old->valuestring, strlen(old->valuestring));
    cJSON *now = cJSON_CreateString(text);
    return now && cJSON_ReplaceItemInArray(a, i, now) ? 1 : (cJSON_Delete(now), 0);
}

/* aws reads a parameter's value from a file when it starts so (the flag's
 * value is then a name, kept). */
static int aws_paramfile(const char *program, const char *value)
{
    return !strcmp(program, "aws") &&
           (!strncmp(value, "file://", 7) || !strncmp(value, "fileb://", 8));
}

/* A JSON member's PascalCase name as aws's flag (SecretBinary:
 * "--secret-binary", DBInstanceIdentifier: "--db-instance-identifier"),
 * into out (cap bytes); 0 when it does not fit. */
static int aws_flag_of(const char *key, char *out, size_t cap)
{
    size_t o = 0;
    if (cap < 3)
        return 0;
    out[o++] = '-';
    out[o++] = '-';
    for (size_t i = 0; key[i]; i++) {
        char c = key[i];
        int up = c >= 'A' && c <= 'Z';
        if (up && i > 0 &&
            (!(key[i - 1] >= 'A' && key[i - 1] <= 'Z') ||
             (key[i + 1] >= 'a' && key[i + 1] <= 'z'))) {
            if (o + 1 >= cap)
                return 0;
            out[o++] = '-';
        }
        if (o + 1 >= cap)
            return 0;
        out[o++] = up ? (char)(c - 'A' + 'a') : c;
    }
    out[o] = '\0';
    return 1;
}

static void wipe_json(cJSON *j)
{
    for (cJSON *c = j; c; c = c->next) {
        if (cJSON_IsString(c) && c->valuestring)
            OPENSSL_cleanse(c->valuestring, strlen(c->valuestring));
        wipe_json(c->child);
    }
}

/* aws --cli-input-json '{…}': the command's parameters as the members of
 * one object, named as its flags in PascalCase ("SecretBinary",
 * put-parameter's "Value"); a member whose flag carries a credential
 * (argv_redact_arg, the command's own flag) has its value replaced.
 * malloc'd JSON (printed unformatted) when one was, else NULL: text that
 * is no JSON object is left to the keyed-value rule. */
/* Whether the member `key` (n bytes) of aws's --cli-input-json or -yaml
 * is a parameter whose flag carries a credential. */
static int aws_secret_member(const char *own_flag, const char *key, size_t n)
{
    char name[ARGV_REDACT_SHOWN_MAX], flag[ARGV_REDACT_SHOWN_MAX], shown[ARGV_REDACT_SHOWN_MAX];
    if (!n || n >= sizeof(name))
        return 0;
    memcpy(name, key, n);
    name[n] = '\0';
    return aws_flag_of(name, flag, sizeof(flag)) &&
           (argv_redact_arg("aws", flag, shown, sizeof(shown)) == ARGV_REDACT_NEXT ||
            command_flag(own_flag, NULL, 1, flag, shown, sizeof(shown)) == ARGV_REDACT_NEXT);
}

/* The end of a YAML flow value starting at i (Value: 'S3,cret', …): the
 * ',' or '}' closing it at its own depth, quotes and nested brackets
 * read. */
static size_t yaml_flow_end(const char *t, size_t len, size_t i)
{
    int depth = 0;
    for (; i < len; i++) {
        char c = t[i];
        if (c == '\'' || c == '"') {
            const char *q = memchr(t + i + 1, c, len - i - 1);
            i = q ? (size_t)(q - t) : len - 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && depth) {
            depth--;
        } else if (!depth && (c == ',' || c == '}' || c == ']')) {
            return i;
        }
    }
    return len;
}

/* aws --cli-input-yaml's text: the value of each top-level member whose
 * flag carries a credential (aws_secret_member) is cut; in block style a
 * line "Key: value" at the first column, with the lines indented under it
 * (a block scalar, a nested value) or its sequence's items; in flow style
 * ({Name: x, Value: y}) up to the ',' or '}' that ends it.  malloc'd, or
 * NULL when nothing changes. */
static char *aws_input_yaml(const char *own_flag, const char *t)
{
    size_t len = strlen(t), red = strlen(ARGV_REDACTED), i = 0;
    argv_splice s;
    argv_splice_init(&s, t);
    while (i < len && argv_blank(t[i]))
        i++;
    if (i < len && t[i] == '{') { /* flow style */
        for (i++; i < len;) {
            while (i < len && (argv_blank(t[i]) || t[i] == ','))
                i++;
            size_t k = i;
            char q = k < len && (t[k] == '\'' || t[k] == '"') ? t[k] : 0;
            if (q)
                k++;
            size_t ks = k;
            while (k < len && argv_name_char(t[k]))
                k++;
            size_t ke = k;
            if (q && k < len && t[k] == q)
                k++;
            if (k >= len || t[k] != ':')
                break; /* not a mapping this rule reads */
            size_t v = k + 1;
            while (v < len && argv_blank(t[v]))
                v++;
            size_t e = yaml_flow_end(t, len, v), ve = e;
            while (ve > v && argv_blank(t[ve - 1]))
                ve--;
            if (ve > v && aws_secret_member(own_flag, t + ks, ke - ks) &&
                !(ve - v == red && !memcmp(t + v, ARGV_REDACTED, red)))
                argv_splice_cut(&s, v, ve);
            if (e >= len || t[e] != ',')
                break;
            i = e + 1;
        }
        return argv_splice_finish(&s, len);
    }
    for (i = 0; i < len;) { /* block style: one line at a time */
        size_t eol = i;
        while (eol < len && t[eol] != '\n')
            eol++;
        size_t k = i;
        while (k < eol && argv_name_char(t[k]))
            k++;
        if (k > i && k < eol && t[k] == ':' && (k + 1 == eol || argv_blank(t[k + 1])) &&
            aws_secret_member(own_flag, t + i, k - i)) {
            size_t v = k + 1;
            while (v < eol && argv_blank(t[v]))
                v++;
            size_t end = eol;
            /* the lines under it: indented, or its sequence's items */
            while (end < len) {
                size_t next = end + 1;
                if (next >= len || !(argv_blank(t[next]) || t[next] == '-'))
                    break;
                end = next;
                while (end < len && t[end] != '\n')
                    end++;
            }
            while (end > v && argv_blank(t[end - 1]))
                end--;
            if (end > v && !(end - v == red && !memcmp(t + v, ARGV_REDACTED, red)))
                argv_splice_cut(&s, v, end);
            eol = end;
            while (eol < len && t[eol] != '\n')
                eol++;
        }
        i = eol + 1;
    }
    return argv_splice_finish(&s, len);
}

/* aws --cli-input-json or --cli-input-yaml's text: a JSON object's members
 * (aws_input_json), else YAML's (aws --cli-input-yaml, or a prefix such as
 * --cli-input that aws v1 reads as JSON and v2 would refuse). */
static char *aws_input_json(const char *own_flag, const char *json);

static char *aws_input(const char *own_flag, const char *text)
{
    cJSON *o = cJSON_Parse(text);
    int object = cJSON_IsObject(o);
    wipe_json(o);
    cJSON_Delete(o);
    return object ? aws_input_json(own_flag, text) : aws_input_yaml(own_flag, text);
}

/* The length of the option in arg when it is --cli-input-json or
 * --cli-input-yaml or a prefix of them aws's argparse takes (from
 * "--cli-i"; aws-cli 1.45 sends --cli-input-js's and --cli-input's
 * members), else 0. */
static size_t aws_input_option(const char *arg)
{
    size_t n = strcspn(arg, "=");
    if (n < 7 || n > 16)
        return 0;
    return !strncmp(arg, "--cli-input-json", n) || !strncmp(arg, "--cli-input-yaml", n) ? n : 0;
}

static char *aws_input_json(const char *own_flag, const char *json)
{
    cJSON *o = cJSON_Parse(json);
    if (!cJSON_IsObject(o)) {
        wipe_json(o);
        cJSON_Delete(o);
        return NULL;
    }
    int changed = 0, failed = 0;
    for (cJSON *m = o->child; m; m = m->next) {
        char flag[ARGV_REDACT_SHOWN_MAX], shown[ARGV_REDACT_SHOWN_MAX];
        if (!m->string || !aws_flag_of(m->string, flag, sizeof(flag)) ||
            (cJSON_IsString(m) && !strcmp(m->valuestring, ARGV_REDACTED)))
            continue;
        if (argv_redact_arg("aws", flag, shown, sizeof(shown)) != ARGV_REDACT_NEXT &&
            command_flag(own_flag, NULL, 1, flag, shown, sizeof(shown)) != ARGV_REDACT_NEXT)
            continue;
        cJSON *r = cJSON_CreateString(ARGV_REDACTED);
        if (r) /* the member's name is its own (cJSON's allocator is malloc) */
            r->string = strdup(m->string);
        if (!r || !r->string) {
            cJSON_Delete(r);
            failed = 1;
            break;
        }
        wipe_json(m->child);
        if (cJSON_IsString(m) && m->valuestring)
            OPENSSL_cleanse(m->valuestring, strlen(m->valuestring));
        cJSON_ReplaceItemViaPointer(o, m, r);
        m = r;
        changed = 1;
    }
    char *out = changed && !failed ? cJSON_PrintUnformatted(o) : NULL;
    /* fail closed: a member to cut could not be, or the text not printed */
    if (failed || (changed && !out))
        out = strdup(ARGV_REDACTED);
    wipe_json(o);
    cJSON_Delete(o);
    return out;
}

/* One pass over the arguments; the number of items replaced. */
static int redact_once(cJSON *argv, const char *program)
{
    int n = cJSON_GetArraySize(argv), replaced = 0;
    const char *own_flag = NULL, *own_short = NULL; /* this command's own (command_flags) */
    int own_many = 0;
    for (size_t c = 0; command_flags[c].program && !own_flag; c++)
        if (!strcmp(program, command_flags[c].program) &&
            after_command(argv, n, program, command_flags[c].words)) {
            own_flag = command_flags[c].flag;
            own_short = command_flags[c].short_flag;
            own_many = command_flags[c].many;
        }
    int value_at = set_value(argv, n, program);
    /* A command that names a Secret (kubectl patch secret db -p '{"data":…}'):
     * the values under "data" in its arguments are credentials.  The words
     * after "--" are a program's own (kubectl exec … -- mysql -p…). */
    int secret_data = 0, dashdash = 0, option_value = 0;
    for (int i = 1; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(argv, i);
        if (!cJSON_IsString(it) || !it->valuestring)
            continue;
        if (!dashdash && !strcmp(it->valuestring, "--")) {
            dashdash = i;
        } else if (option_value) {
            option_value = 0; /* -n secret, -l app=secret: a name, not the resource */
        } else if (!dashdash) {
            option_value = it->valuestring[0] == '-' && takes_value(program, it->valuestring);
            if (!secret_data)
                secret_data = argv_names_secret(it->valuestring);
        }
    }
    argv_inner inner = ARGV_INNER_INIT;
    /* 0: judge the argument; 1: the previous one was a flag, this is its
     * value; 2: values of a flag that takes every argument up to an option */
    int values = 0, input_json = 0; /* the previous argument was aws's --cli-input-json/-yaml */
    int aws = !strcmp(program, "aws");
    for (int i = 1; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(argv, i);
        if (!cJSON_IsString(it) || !it->valuestring) {
            values = 0;
            inner = (argv_inner)ARGV_INNER_INIT;
            continue;
        }
        /* every word after "--" moves the inner program's state, whichever
         * rule redacts it */
        size_t keep = 0, keep_end = 0;
        int inner_cut = dashdash && i > dashdash &&
                        argv_inner_word(&inner, it->valuestring, strlen(it->valuestring),
                                        &keep, &keep_end) == ARGV_INNER_CUT;
        if (values == 2 && it->valuestring[0] == '-')
            values = 0;
        if (values || i == value_at) {
            if (values == 1)
                values = 0;
            if (strcmp(it->valuestring, ARGV_REDACTED) && !aws_paramfile(program, it->valuestring))
                replaced += replace_item(argv, i, ARGV_REDACTED);
            continue;
        }
        char shown[ARGV_REDACT_SHOWN_MAX];
        argv_redact r = argv_redact_arg(program, it->valuestring, shown, sizeof(shown));
        int many = 0;
        if (r == ARGV_REDACT_NONE) {
            r = command_flag(own_flag, own_short, takes_prefixes(program), it->valuestring,
                             shown, sizeof(shown));
            many = own_many;
        }
        if (r == ARGV_REDACT_NEXT)
            values = many ? 2 : 1;
        const char *eq = strchr(it->valuestring, '=');
        if (r == ARGV_REDACT_INLINE && eq && aws_paramfile(program, eq + 1))
            r = ARGV_REDACT_NONE; /* --secret-binary=fileb://k.bin names a file */
        /* what is kept of the argument (a flag's name too) may still hold one */
        const char *kept = r == ARGV_REDACT_INLINE ? shown : it->valuestring;
        char *input = NULL;
        if (aws && r == ARGV_REDACT_NONE) {
            size_t on = aws_input_option(kept);
            if (input_json) {
                input = aws_input(own_flag, kept);
            } else if (on && kept[on] == '=') {
                char *json = aws_input(own_flag, kept + on + 1);
                if (json) {
                    size_t jl = strlen(json);
                    input = malloc(on + jl + 2);
                    if (input)
                        snprintf(input, on + jl + 2, "%.*s=%s", (int)on, kept, json);
                    else
                        input = strdup(ARGV_REDACTED); /* fail closed */
                    OPENSSL_cleanse(json, jl);
                    free(json);
                }
            }
            input_json = on && !kept[on];
            if (input)
                kept = input;
        } else {
            input_json = 0;
        }
        char *own = NULL;
        if (inner_cut && r != ARGV_REDACT_INLINE) { /* -pS3cret of mysql: "-p" stays */
            argv_splice sp;
            argv_splice_init(&sp, it->valuestring);
            argv_splice_cut(&sp, keep, keep_end);
            own = argv_splice_finish(&sp, strlen(it->valuestring));
            if (own)
                kept = own;
        }
        char *text = embedded(kept, secret_data, argv);
        if (text)
            kept = text;
        if (strcmp(it->valuestring, kept))
            replaced += replace_item(argv, i, kept);
        free(text);
        free(own);
        if (input)
            OPENSSL_cleanse(input, strlen(input));
        free(input);
    }
    return replaced;
}

int argv_redact_array(cJSON *argv)
{
    const cJSON *prog = cJSON_GetArrayItem(argv, 0);
    if (!cJSON_IsArray(argv) || !cJSON_IsString(prog))
        return 0;
    char program[64];
    snprintf(program, sizeof(program), "%s", prog->valuestring);
    /* Until nothing changes: a pass can change how the next one reads an
     * argument (a URL password that held the first '=' of a flag moves
     * where its name ends; a flag left without '=' then takes the next
     * argument), and the rule must be idempotent for admin redact-audit.
     * Every change only replaces text with ARGV_REDACTED, which no rule
     * reads again, so the passes end; the bound is a guard. */
    int total = 0;
    for (int pass = 0; pass < 8; pass++) {
        int r = redact_once(argv, program);
        total += r;
        if (!r)
            return total;
    }
    /* No fixpoint within the bound (a cut that moved quotes changes how the
     * next pass splits a shell line, again and again): fail closed, so that
     * a second run changes nothing.  The items a further pass still changes
     * go whole; if that is not enough, every argument does. */
    cJSON *before = cJSON_Duplicate(argv, 1);
    int n = cJSON_GetArraySize(argv);
    if (before && redact_once(argv, program)) {
        for (int i = 1; i < n; i++) {
            const cJSON *a = cJSON_GetArrayItem(before, i), *b = cJSON_GetArrayItem(argv, i);
            if (cJSON_IsString(a) && cJSON_IsString(b) && strcmp(a->valuestring, b->valuestring))
                total += replace_item(argv, i, ARGV_REDACTED);
        }
    }
    /* the copy held what the passes were still cutting */
    for (int i = 1; before && i < n; i++) {
        const cJSON *a = cJSON_GetArrayItem(before, i);
        if (cJSON_IsString(a) && a->valuestring)
            OPENSSL_cleanse(a->valuestring, strlen(a->valuestring));
    }
    cJSON_Delete(before);
    if (!before || redact_once(argv, program))
        for (int i = 1; i < n; i++) {
            const cJSON *it = cJSON_GetArrayItem(argv, i);
            if (cJSON_IsString(it) && strcmp(it->valuestring, ARGV_REDACTED))
                total += replace_item(argv, i, ARGV_REDACTED);
        }
    return total;
}

char *argv_redact_stored(const char *argv_json)
{
    cJSON *a = argv_json ? cJSON_Parse(argv_json) : NULL;
    char *out = a && argv_redact_array(a) > 0 ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return out;
}
