/* cloud_argv.h — finds, in a cloud CLI's argv, every argument that selects
 * an account, project, subscription, credential or endpoint, the way the
 * CLI's own parser would read it, so a connector can check each one against
 * what its connection allows (connector.h: cloud_provider.argv_rules).
 *
 * A table per CLI (cloud_cli) says:
 *   flags  which flags select (their values are reported as selectors),
 *          which are refused outright, and which merely take a value (so
 *          that the words after them are not mistaken for positionals);
 *          `--flag value`, `--flag=value`, `-fVALUE` and `-f=VALUE` are all
 *          read; a flag row may apply only under some command words
 *          (az's `-s` is the subscription only in `az account …`);
 *   cmds   command words that are refused (`aws sts assume-role`), or whose
 *          positionals are selectors (`gcloud projects describe ID`);
 *   refs   fragments that name a project/subscription inside any argument
 *          (resource names and URLs: "projects/<id>", "/subscriptions/<id>",
 *          "<sa>@<id>.iam.gserviceaccount.com"), also once percent-decoded.
 *
 * Refused before any connector check, because the CLI and this scanner
 * could read them differently:
 *   - a selector given twice, in any spelling (the CLIs keep the last);
 *   - an abbreviation of a selector or refused flag when the CLI accepts
 *     unambiguous prefixes (argparse: `az … --subs X`, `aws --prof X`);
 *   - a selector without a value;
 *   - argument indirection: az reads `@path` (a whole argument, or after
 *     the first '=') as the file's content — which could be a flag;
 *   - a value the CLI makes part of an API host name (host_part) holding a
 *     character that ends the host ('/', '?', '#', '\\').
 *
 * Positionals: a word that is not a flag, nor the value of a flag the table
 * knows to take one.  After an unknown flag written without '=', the next
 * word counts as a positional too (it might be one): a selector check may
 * then refuse a flag's value, never miss a positional.  Everything after
 * `--` is positional. */
#ifndef AURORA_CLOUD_ARGV_H
#define AURORA_CLOUD_ARGV_H

#include <stddef.h>

typedef enum {
    CLOUD_FLAG_VALUE = 0, /* takes a value; nothing to check */
    CLOUD_FLAG_SELECT,    /* takes a value that selects: reported */
    CLOUD_FLAG_REFUSE,    /* never allowed */
    CLOUD_FLAG_REFER,     /* takes a value naming a dest the command also reaches (not
                             the one it runs in): reported like a reference inside an
                             argument (CLOUD_SEL_EMBEDDED), repeats allowed */
} cloud_flag_kind;

typedef struct {
    const char *name;    /* "--project", "-s"; "--*-project": every long flag that ends
                            with "-project" and no other row names (refused: with abbrev,
                            also a name ending in a prefix of "-project" that holds its
                            first word and '-') */
    cloud_flag_kind kind;
    const char *dest;    /* SELECT: what it selects ("project"); two flags with one dest
                            are one setting ("--subscription" and "-s") */
    int primary;         /* SELECT: the setting the command runs in (--project) */
    const char *context; /* NULL: every command; else the command's leading words must
                            begin with these ("account", "account show") */
    const char *why;     /* REFUSE: the end of "… is not allowed: <why>" */
    int host_part;       /* the CLI builds an API host name from its value (gcloud's
                            regional endpoints, https://<region>-aiplatform.googleapis.com/):
                            a '/', '?', '#' or '\\' in it is refused, as it would end the
                            host there and send the request, token included, elsewhere */
} cloud_flag;

typedef enum { CLOUD_CMD_REFUSE = 0, CLOUD_CMD_SELECT } cloud_cmd_kind;

typedef struct {
    const char *words; /* consecutive positionals ("projects describe"); at the start of
                          the command when the CLI's commands come first, else anywhere
                          (gcloud alpha projects …, aws --region x sts …) */
    cloud_cmd_kind kind;
    const char *dest;  /* SELECT: what the positionals after the words select */
    int keep_last;     /* SELECT: the last positional is not a selector (a file) */
    const char *why;   /* REFUSE */
} cloud_cmd;

typedef struct {
    const char *prefix; /* "projects/": the id follows (case-insensitive; at the start
                           of an argument or after a character that is not [A-Za-z0-9_-]) */
    const char *suffix; /* or ".iam.gserviceaccount.com": the id is between an '@' and it */
    const char *dest;
    int host_part;      /* prefix only: the segment after it (up to the next '/') is put
                           in a host name, as cloud_flag.host_part; checked, not reported */
    const char *why;    /* prefix only: an argument holding it is refused ("… is not
                           allowed: <why>"); the prefix is matched anywhere */
} cloud_ref;

typedef struct {
    const char *program;
    const cloud_flag *flags; /* ends with a row whose name is NULL */
    const cloud_cmd *cmds;   /* ends with a row whose words are NULL; may be NULL */
    const cloud_ref *refs;   /* ends with a row whose prefix and suffix are NULL; may be NULL */
    int abbrev;              /* accepts unambiguous prefixes of long flags (argparse) */
    int at_files;            /* "@path" is replaced by the file's content (az) */
    int commands_first;      /* command words come before any flag (az) */
} cloud_cli;

typedef enum { CLOUD_SEL_FLAG = 0, CLOUD_SEL_POSITIONAL, CLOUD_SEL_EMBEDDED } cloud_sel_source;

typedef struct {
    char *value;       /* malloc'd */
    const char *dest;  /* the table's dest */
    cloud_sel_source source;
    int primary;
    char what[96];     /* for messages: "--project", "projects describe", "argument 3" */
} cloud_selector;

#define CLOUD_ARGV_MAX_SELECTORS 64

typedef struct {
    cloud_selector sel[CLOUD_ARGV_MAX_SELECTORS];
    int n;
    /* when cloud_argv_scan refuses: */
    int status;        /* 400 or 403 */
    const char *code;  /* CLOUD_ARG_REFUSED (403), CLOUD_ARG_AMBIGUOUS, BAD_REQUEST (400) */
    char err[320];
} cloud_argv_result;

/* argv excludes the program.  0 with every selector in out (release with
 * cloud_argv_scan_free), or -1 with out->status, code and err set. */
int cloud_argv_scan(const cloud_cli *cli, int argc, const char *const *argv,
                    cloud_argv_result *out);
void cloud_argv_scan_free(cloud_argv_result *s);
/* The primary selector of dest (at most one: a repeat was refused), or NULL. */
const cloud_selector *cloud_argv_primary(const cloud_argv_result *s, const char *dest);
/* Printable, bounded copy of untrusted text for an error message. */
void cloud_argv_shown(const char *s, char *out, size_t cap);

#endif
