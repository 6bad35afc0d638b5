/* argv_redact.c — see argv_redact.h. */
#include "argv_redact.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
static const char *const secret_suffixes[] = { "password", "secret", "token", "account-key",
                                               "secret-string", "connection-string", NULL };

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

/* Words of a name (split at '_', '-', '.', case ignored) that say its value
 * is a credential: DB_PASSWORD, GITHUB_TOKEN, aws_secret_access_key,
 * client.secret, …; and a last word "key" after another (API_KEY,
 * STRIPE_KEY, private-key). */
static const char *const credential_words[] = { "password", "passwd",      "pwd",
                                                "passphrase", "secret",    "secrets",
                                                "token",    "apikey",      "credential",
                                                "credentials", NULL };

static int credential_name(const char *name, size_t n)
{
    size_t words = 0;
    for (size_t i = 0; i < n;) {
        size_t w = 0;
        while (i + w < n && name[i + w] != '_' && name[i + w] != '-' && name[i + w] != '.')
            w++;
        if (w) {
            words++;
            for (const char *const *c = credential_words; *c; c++)
                if (strlen(*c) == w && !strncasecmp(name + i, *c, w))
                    return 1;
            if (i + w == n && words > 1 && w == 3 && !strncasecmp(name + i, "key", 3))
                return 1;
        }
        i += w + 1;
    }
    return 0;
}

static int name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

/* Where the value of the first NAME=VALUE whose NAME is a credential's
 * starts (an environment assignment after `kubectl set env`, `kubectl exec
 * … -- env`, in --env=, --set-env-vars=A=1,DB_PASSWORD=…, --settings,
 * Variables={…}); the value runs to the end of the argument: a list of
 * pairs has no delimiter a value cannot hold, so the pairs after it go too.
 * len when there is none or it reads ARGV_REDACTED already.  Linear: each
 * name is read back only to the '=' before it. */
static size_t assignment_value(const char *arg, size_t len)
{
    for (const char *eq = memchr(arg, '=', len); eq;
         eq = memchr(eq + 1, '=', len - (size_t)(eq + 1 - arg))) {
        const char *name = eq;
        while (name > arg && name_char(name[-1]))
            name--;
        if (!credential_name(name, (size_t)(eq - name)))
            continue;
        size_t at = (size_t)(eq + 1 - arg);
        return strcmp(arg + at, ARGV_REDACTED) ? at : len;
    }
    return len;
}

char *argv_redact_embedded(const char *arg)
{
    size_t len = strlen(arg), red = strlen(ARGV_REDACTED);
    size_t cut = assignment_value(arg, len);
    if (cut == len && !strstr(arg, "://"))
        return NULL; /* the common case, without an allocation */
    /* Every replaced URL password is at least one byte of at least six
     * ("://:p@"), so the copy grows by at most red per six bytes. */
    char *out = malloc(cut + (cut / 6 + 1) * red + 1);
    if (!out)
        return NULL;
    size_t o = 0, from = 0;
    int changed = cut < len;
    /* The password of each URL's user info (scheme://user:PASSWORD@host)
     * before the cut; a '/' ends a host, and every "://" holds one, so each
     * byte is read at most twice. */
    for (size_t i = 0; i + 3 <= cut; i++) {
        if (memcmp(arg + i, "://", 3))
            continue;
        size_t host = i + 3, stop = host;
        while (stop < cut && !strchr("/?#@", arg[stop]))
            stop++;
        const char *colon = stop < cut && arg[stop] == '@'
                                ? memchr(arg + host, ':', stop - host) : NULL;
        size_t at = colon ? (size_t)(colon + 1 - arg) : 0;
        if (colon && at < stop &&
            !(stop - at == red && !memcmp(arg + at, ARGV_REDACTED, red))) {
            memcpy(out + o, arg + from, at - from);
            o += at - from;
            memcpy(out + o, ARGV_REDACTED, red);
            o += red;
            from = stop;
            changed = 1;
        }
        i = stop - 2; /* the next "://" may start right before the delimiter */
    }
    if (!changed) {
        free(out);
        return NULL;
    }
    memcpy(out + o, arg + from, cut - from);
    o += cut - from;
    if (cut < len) {
        memcpy(out + o, ARGV_REDACTED, red);
        o += red;
    }
    out[o] = '\0';
    return out;
}

/* Flags whose value is a credential only in one command: its words must
 * stand one after the other among the arguments. */
static const struct {
    const char *program;
    const char *words[4];
    const char *flag;
} command_flags[] = {
    { "az", { "keyvault", "secret", "set", NULL }, "value" },      /* the secret itself */
    { "az", { "containerapp", "secret", "set", NULL }, "secrets" }, /* name=value pairs */
    { "aws", { "ssm", "put-parameter", NULL }, "value" },           /* SecureString or not */
    { NULL, { NULL }, NULL },
};

/* Index of the first argument after words[] standing in a row, 0 if absent. */
static int after_words(const cJSON *argv, int n, const char *const *words)
{
    for (int i = 1; i < n; i++) {
        int k = 0;
        while (words[k] && i + k < n) {
            const cJSON *it = cJSON_GetArrayItem(argv, i + k);
            if (!cJSON_IsString(it) || strcmp(it->valuestring, words[k]))
                break;
            k++;
        }
        if (!words[k])
            return i + k;
    }
    return 0;
}

/* The command's own credential flag, if arg is it: NEXT, INLINE (shown
 * filled) or NONE. */
static argv_redact command_flag(const char *flag, int prefixes, const char *arg, char *shown,
                                size_t cap)
{
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

/* `aws configure set <name> <value>`: the index of a value whose name is a
 * credential's (aws_secret_access_key, aws_session_token, a profile's
 * profile.dev.aws_secret_access_key), else 0. */
static int aws_configure_value(const cJSON *argv, int n, const char *program)
{
    static const char *const words[] = { "configure", "set", NULL };
    /* aws's options that take a value as the next argument ("--profile dev");
     * any other option stands alone.  A fixed list, not "has no '='": the
     * pass itself removes a '=' from what it redacts, and a second pass must
     * find the same name. */
    static const char *const valued[] = { "--profile",      "--region",           "--output",
                                          "--endpoint-url", "--query",            "--color",
                                          "--ca-bundle",    "--cli-read-timeout", "--cli-connect-timeout",
                                          "--cli-binary-format", NULL };
    int i = strcmp(program, "aws") ? 0 : after_words(argv, n, words);
    while (i > 0 && i < n) { /* the first argument that is not an option is the name */
        const cJSON *it = cJSON_GetArrayItem(argv, i);
        if (!cJSON_IsString(it))
            return 0;
        const char *a = it->valuestring;
        if (a[0] != '-')
            return i + 1 < n && credential_name(a, strlen(a)) ? i + 1 : 0;
        int takes = 0;
        for (const char *const *v = valued; *v && !takes; v++)
            takes = !strcmp(a, *v);
        i += takes ? 2 : 1;
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

/* One pass over the arguments; the number of items replaced. */
static int redact_once(cJSON *argv, const char *program)
{
    int n = cJSON_GetArraySize(argv), replaced = 0, redact_next = 0;
    const char *own_flag = NULL; /* this command's own credential flag (command_flags) */
    for (size_t c = 0; command_flags[c].program && !own_flag; c++)
        if (!strcmp(program, command_flags[c].program) &&
            after_words(argv, n, command_flags[c].words))
            own_flag = command_flags[c].flag;
    int configured = aws_configure_value(argv, n, program);
    for (int i = 1; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(argv, i);
        if (!cJSON_IsString(it) || !it->valuestring) {
            redact_next = 0;
            continue;
        }
        if (redact_next || i == configured) {
            redact_next = 0;
            if (strcmp(it->valuestring, ARGV_REDACTED))
                replaced += replace_item(argv, i, ARGV_REDACTED);
            continue;
        }
        char shown[ARGV_REDACT_SHOWN_MAX];
        argv_redact r = argv_redact_arg(program, it->valuestring, shown, sizeof(shown));
        if (r == ARGV_REDACT_NONE)
            r = command_flag(own_flag, takes_prefixes(program), it->valuestring, shown,
                             sizeof(shown));
        redact_next = r == ARGV_REDACT_NEXT;
        /* what is kept of the argument (a flag's name too) may still hold one */
        const char *kept = r == ARGV_REDACT_INLINE ? shown : it->valuestring;
        char *inner = argv_redact_embedded(kept);
        if (inner)
            kept = inner;
        if (strcmp(it->valuestring, kept))
            replaced += replace_item(argv, i, kept);
        free(inner);
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
            break;
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
