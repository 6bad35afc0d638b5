/* argv_redact.c — see argv_redact.h. */
#include "argv_redact.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Replaces item i of a with a new string (the old one wiped first). */
static int replace_item(cJSON *a, int i, const char *text)
{
    cJSON *old = cJSON_GetArrayItem(a, i);
    if (old && cJSON_IsString(old) && old->valuestring)
        OPENSSL_cleanse(old->valuestring, strlen(old->valuestring));
    cJSON *now = cJSON_CreateString(text);
    return now && cJSON_ReplaceItemInArray(a, i, now) ? 1 : (cJSON_Delete(now), 0);
}

int argv_redact_array(cJSON *argv)
{
    const cJSON *prog = cJSON_GetArrayItem(argv, 0);
    if (!cJSON_IsArray(argv) || !cJSON_IsString(prog))
        return 0;
    char program[64];
    snprintf(program, sizeof(program), "%s", prog->valuestring);
    int n = cJSON_GetArraySize(argv), replaced = 0, redact_next = 0;
    for (int i = 1; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(argv, i);
        if (!cJSON_IsString(it) || !it->valuestring) {
            redact_next = 0;
            continue;
        }
        if (redact_next) {
            redact_next = 0;
            if (strcmp(it->valuestring, ARGV_REDACTED))
                replaced += replace_item(argv, i, ARGV_REDACTED);
            continue;
        }
        char shown[ARGV_REDACT_SHOWN_MAX];
        argv_redact r = argv_redact_arg(program, it->valuestring, shown, sizeof(shown));
        if (r == ARGV_REDACT_INLINE && strcmp(it->valuestring, shown))
            replaced += replace_item(argv, i, shown);
        redact_next = r == ARGV_REDACT_NEXT;
    }
    return replaced;
}

char *argv_redact_stored(const char *argv_json)
{
    cJSON *a = argv_json ? cJSON_Parse(argv_json) : NULL;
    char *out = a && argv_redact_array(a) > 0 ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return out;
}
