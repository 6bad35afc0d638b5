/* argv_redact_values.c — credentials written as keyed values inside one
 * argument of a command (argv_redact_text.h): a JSON patch or override
 * (kubectl patch secret s -p '{"stringData":{"password":"…"}}',
 * --overrides='{…"env":[{"name":"X","value":"…"}]…}'), a YAML line, an HTTP
 * header (curl -H "Authorization: Bearer …" inside kubectl exec).
 *
 * One pass over the text, no parser: an argument is often not JSON at all
 * (a shell line holding a JSON body, YAML flow style, a truncated paste), and
 * whatever it is, the value after a credential's key must not reach the
 * audit row.  Keys and structure stay, so the row still says what changed. */
#include "argv_redact_text.h"

#include <string.h>
#include <strings.h>

#include "argv_redact.h"

static int is(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && !strncasecmp(p, word, n);
}

static int already(const char *p, size_t n)
{
    return n == strlen(ARGV_REDACTED) && !memcmp(p, ARGV_REDACTED, n);
}

static size_t skip_blank(const char *a, size_t len, size_t i)
{
    while (i < len && argv_blank(a[i]))
        i++;
    return i;
}

/* The index of the quote that closes the string opening at i, or len. */
static size_t string_end(const char *a, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (a[i] == '\\')
            i++;
        else if (a[i] == '"')
            return i;
    }
    return len;
}

static int reference_key(const char *k, size_t n);
static size_t scalar_end(const char *a, size_t len, size_t v);
static int literal(const char *v, size_t n);

/* Whether a name's last word is a credential's (X-Api-Key, Private-Token,
 * token; not secret-manager): such a name is read as a header even with no
 * blank after its colon. */
static int ends_in_credential(const char *k, size_t n)
{
    static const char *const last_words[] = { "password", "passwd", "pass",  "pwd",
                                              "token",    "secret", "apikey", "key",
                                              "credential", "credentials", NULL };
    if (!argv_credential_name(k, n))
        return 0;
    size_t w = n;
    while (w && k[w - 1] != '-' && k[w - 1] != '_' && k[w - 1] != '.')
        w--;
    for (const char *const *l = last_words; *l; l++)
        if (is(k + w, n - w, *l))
            return 1;
    return 0;
}

/* Whether a name is an Authorization or a Cookie header's, whose value is
 * a credential whatever its name says. */
static int auth_name(const char *k, size_t n)
{
    return is(k, n, "authorization") || is(k, n, "proxy-authorization");
}

static int cookie_name(const char *k, size_t n)
{
    return is(k, n, "cookie") || is(k, n, "set-cookie");
}

/* The same for a member (a JSON or Python dict's key) and its value
 * a[v, end): a Cookie's holds one when it has a name=value pair
 * ("session=…"; {"cookie": "secure"} is a setting). */
static int header_member(const char *k, size_t n, const char *a, size_t v, size_t end)
{
    return auth_name(k, n) || (cookie_name(k, n) && memchr(a + v, '=', end - v));
}

/* Where the credentials of an Authorization value a[v, end) start: after
 * the scheme ("Bearer ", "Basic "), which stays, or at v when the value is
 * one word. */
static size_t after_scheme(const char *a, size_t v, size_t end)
{
    size_t sp = v;
    while (sp < end && a[sp] != ' ' && a[sp] != '\t')
        sp++;
    size_t after = sp;
    while (after < end && (a[after] == ' ' || a[after] == '\t'))
        after++;
    return after < end ? after : v;
}

/* Where a Python string at a[v] opens its quote ('…', "…", after a prefix:
 * b'…', rb"…", f'…'), or limit when none starts there. */
static size_t py_quote(const char *a, size_t limit, size_t v)
{
    size_t p = v;
    while (p < limit && p - v < 2 && a[p] && strchr("bBrRuUfF", a[p]))
        p++;
    return p < limit && (a[p] == '\'' || a[p] == '"') ? p : limit;
}

/* The index of the quote closing the string whose quote is a[q], or limit. */
static size_t py_close(const char *a, size_t limit, size_t q)
{
    size_t end = q + 1;
    while (end < limit && a[end] != a[q])
        end += a[end] == '\\' && end + 1 < limit ? 2 : 1;
    return end;
}

/* A Python-style dict member at a[i], the quote opening its key:
 * {'password': 'S3cret'} or , 'api_key': "…" (print(dict), a script's
 * literal).  Cuts the value when the key names a credential; returns where
 * the member's value ends, or 0 when there is no such member here. */
static size_t python_member(argv_splice *s, const char *a, size_t i, size_t limit)
{
    size_t b = i;
    while (b > 0 && argv_blank(a[b - 1]))
        b--;
    if (!b || (a[b - 1] != '{' && a[b - 1] != ','))
        return 0;
    size_t k = i + 1;
    while (k < limit && argv_name_char(a[k]))
        k++;
    if (k >= limit || a[k] != '\'' || k == i + 1)
        return 0;
    size_t colon = skip_blank(a, limit, k + 1), kn = k - i - 1;
    /* headers={'Authorization': 'Bearer …'}: judged with the value below */
    int auth = auth_name(a + i + 1, kn), header = auth || cookie_name(a + i + 1, kn);
    if (colon >= limit || a[colon] != ':' ||
        (!header && (reference_key(a + i + 1, kn) || !argv_credential_name(a + i + 1, kn))))
        return 0;
    size_t v = skip_blank(a, limit, colon + 1), start = v, end;
    size_t red = strlen(ARGV_REDACTED);
    if (limit - v >= red && !memcmp(a + v, ARGV_REDACTED, red))
        return v + red; /* already */
    if (v >= limit || a[v] == '[' || a[v] == '{')
        return 0; /* a container: its strings are no credential by this key alone */
    size_t q = py_quote(a, limit, v);
    int quoted = q < limit;
    if (quoted) {
        end = py_close(a, limit, q);
        start = q + 1;
    } else {
        end = scalar_end(a, limit, v);
        if (literal(a + v, end - v) || is(a + v, end - v, "none"))
            return end;
    }
    if (auth)
        start = after_scheme(a, start, end);
    if (end > start && !already(a + start, end - start) &&
        (!header || header_member(a + i + 1, kn, a, start, end)))
        argv_splice_cut(s, start, end);
    /* past the closing quote; a bare value's ',' or '}' is read by the
     * caller (a '}' skipped would leave the caller's depth one too deep) */
    return quoted && end < limit ? end + 1 : end;
}

/* Whether a shell word starts at a[i]: the argument's start, a blank or a
 * quote before it. */
static int word_start(const char *a, size_t i)
{
    return i == 0 || argv_blank(a[i - 1]) || a[i - 1] == '\'' || a[i - 1] == '"';
}

/* Whether a[i] starts the word after curl's -H or --header, blanks between
 * (curl -H X-Api-Key:abc in a shell line). */
static int after_header_option(const char *a, size_t i)
{
    size_t b = i;
    while (b > 0 && (a[b - 1] == ' ' || a[b - 1] == '\t'))
        b--;
    if (b == i)
        return 0;
    return (b >= 2 && !memcmp(a + b - 2, "-H", 2) && word_start(a, b - 2)) ||
           (b >= 8 && !memcmp(a + b - 8, "--header", 8) && word_start(a, b - 8));
}

/* A line break at k: a newline, or "\n" / "\r" written as an escape (a
 * JSON string, printf's format). */
static int line_break(const char *a, size_t k, size_t limit)
{
    return a[k] == '\n' || a[k] == '\r' ||
           (a[k] == '\\' && k + 1 < limit && (a[k + 1] == 'n' || a[k + 1] == 'r'));
}

/* Whether a name may start at i: the byte before it is no name's, or ends
 * an escaped line break ("…\npassword: …"). */
static int name_start(const char *a, size_t from, size_t i)
{
    if (i == from || !argv_name_char(a[i - 1]))
        return 1;
    return i >= from + 2 && a[i - 2] == '\\' &&
           (a[i - 1] == 'n' || a[i - 1] == 'r' || a[i - 1] == 't');
}

/* Header lines and YAML keys starting in a[from, to): "Name: value" where
 * the name says credential (password: …, X-Api-Key: …, Private-Token: …),
 * or is Authorization / Proxy-Authorization (the credentials after the
 * scheme go, the scheme stays: "Authorization: Bearer [REDACTED]") or
 * Cookie / Set-Cookie.  The value runs to the end of its line, up to limit
 * (quotes in it included: password: "a b").  Returns where the caller goes
 * on: to, or the end of the last value read past it.  Each byte is read
 * once: a name not followed by ": " is skipped whole. */
static size_t header_lines(argv_splice *s, const char *a, size_t from, size_t to, size_t limit)
{
    size_t i = from;
    while (i < to) {
        if (a[i] == '\\' && i + 1 < to && (a[i + 1] == 'n' || a[i + 1] == 'r' || a[i + 1] == 't')) {
            i += 2; /* an escaped line break or tab: the next name starts after it */
            continue;
        }
        if (a[i] == '\'') {
            size_t past = python_member(s, a, i, limit);
            i = past ? past : i + 1;
            continue;
        }
        if (!argv_name_char(a[i]) || !name_start(a, from, i)) {
            i++;
            continue;
        }
        size_t e = i;
        while (e < to && argv_name_char(a[e]))
            e++;
        if (e + 1 >= to || a[e] != ':') {
            i = e;
            continue;
        }
        size_t n = e - i, at = i;
        int tight = a[e + 1] != ' ' && a[e + 1] != '\t', word = 0;
        if (tight) {
            /* "X-Api-Key:abc" (curl takes a header without the blank): only
             * at the start of the argument or of a quoted part, or as the
             * value of curl's -H in a shell line (-H X-Api-Key:abc,
             * -HX-Api-Key:abc; there it ends with its word, and its name has
             * a '-' or is Authorization's or Cookie's: grep -H token:x is no
             * header), for a name that ends in a credential's word, and not
             * before a path or a template (TOKEN:.data.token, custom-columns) */
            if (n > 3 && a[i] == '-' && a[i + 1] == 'H' && word_start(a, i)) {
                i += 2; /* -HX-Api-Key:abc */
                n -= 2;
                word = 1;
            } else if (i > 0 && a[i - 1] != '\'' && a[i - 1] != '"') {
                word = after_header_option(a, i);
                if (!word) {
                    i = e;
                    continue;
                }
            }
            int header_like = memchr(a + i, '-', n) || auth_name(a + i, n) || cookie_name(a + i, n);
            if ((word && !header_like) || strchr("./{[$:\\", a[e + 1])) {
                i = e;
                continue;
            }
        }
        /* "-HAuthorization: Bearer …" (curl's -H with its header in one
         * argument or quoted part): the header's name is after the -H */
        if (!tight && n > 3 && a[i] == '-' && a[i + 1] == 'H' && word_start(a, i) &&
            (auth_name(a + i + 2, n - 2) || cookie_name(a + i + 2, n - 2))) {
            i += 2;
            n -= 2;
        }
        int auth = auth_name(a + i, n), cookie = cookie_name(a + i, n);
        if (tight && !auth && !cookie && !ends_in_credential(a + i, n)) {
            i = e;
            continue;
        }
        if (!auth && !cookie && !argv_credential_name(a + i, n)) {
            i = e + 1; /* read before its value: each byte once */
            continue;
        }
        size_t v = e + 1;
        while (v < limit && (a[v] == ' ' || a[v] == '\t'))
            v++;
        /* inside quotes ('Authorization: Bearer …' in a shell line) the
         * value ends at the closing one, an escaped one (\") too */
        char quote = at > 0 && (a[at - 1] == '\'' || a[at - 1] == '"') ? a[at - 1] : 0;
        /* after '{' or ',' the name is a flow mapping's key (YAML flow,
         * a JMESPath multiselect: --query "{Token: accessToken, Id: id}"):
         * the value ends at the next ',' or '}' */
        size_t before = i;
        while (before > from && (a[before - 1] == ' ' || a[before - 1] == '\t'))
            before--;
        int flow = before > 0 && (a[before - 1] == '{' || a[before - 1] == ',');
        size_t eol = v;
        while (eol < limit && !line_break(a, eol, limit) && a[eol] != quote &&
               !(flow && (a[eol] == ',' || a[eol] == '}'))) {
            if (word && a[eol] == '\\' && eol + 1 < limit && a[eol + 1] != quote) {
                eol += 2; /* Bearer\ S3cret: an escaped blank is the word's */
                continue;
            }
            if (word && (argv_blank(a[eol]) || (a[eol] && strchr(";|&()`", a[eol]))))
                break; /* the end of the shell word */
            if (word && (a[eol] == '\'' || a[eol] == '"')) { /* a part of it quoted */
                const char *c = memchr(a + eol + 1, a[eol], limit - eol - 1);
                eol = c ? (size_t)(c - a) : limit - 1;
            }
            eol++;
        }
        if (quote && eol < limit && a[eol] == quote && eol > v && a[eol - 1] == '\\')
            eol--;
        /* a YAML block scalar (tls.key: |): the lines indented deeper go too */
        if (eol > v && (a[v] == '|' || a[v] == '>') && eol - v <= 3) {
            size_t bol = i;
            while (bol > from && !line_break(a, bol - 1, limit) &&
                   !(bol >= from + 2 && a[bol - 2] == '\\' && a[bol - 1] == 'n'))
                bol--;
            size_t indent = i - bol, k = eol;
            for (;;) {
                size_t nl = k;
                if (nl >= limit || !line_break(a, nl, limit))
                    break;
                nl += a[nl] == '\\' ? 2 : 1;
                size_t d = nl;
                while (d < limit && a[d] == ' ')
                    d++;
                if (d < limit && !line_break(a, d, limit) && d - nl <= indent)
                    break; /* the block ends at a line indented no deeper */
                k = d;
                while (k < limit && !line_break(a, k, limit) && a[k] != quote)
                    k++;
                eol = k;
                if (k >= limit || a[k] == quote)
                    break;
            }
        }
        size_t cut = auth ? after_scheme(a, v, eol) : v;
        if (cut < eol && !already(a + cut, eol - cut))
            argv_splice_cut(s, cut, eol);
        i = eol; /* the value is read: the next name starts after it */
    }
    return i > to ? i : to;
}

/* A bare JSON or YAML-flow scalar after a credential's key: "pin": 1234. */
static size_t scalar_end(const char *a, size_t len, size_t v)
{
    while (v < len && !argv_blank(a[v]) && a[v] != ',' && a[v] != '}' && a[v] != ']')
        v++;
    return v;
}

/* Keys whose string value names another member's: {"name": "DB_PASSWORD",
 * "value": "…"} (a container's env), {"ParameterKey": "DbPassword",
 * "ParameterValue": "…"} (CloudFormation), {"Key": …, "Value": …} (tags). */
static int names_a_value(const char *k, size_t n)
{
    return is(k, n, "name") || is(k, n, "key") || is(k, n, "ParameterKey") ||
           is(k, n, "OptionName");
}

static int is_the_value(const char *k, size_t n)
{
    return is(k, n, "value") || is(k, n, "ParameterValue");
}

/* A JSON patch operation's "path" (RFC 6902: {"op":"replace",
 * "path":"/data/password","value":"…"}) names its "value": a credential
 * when the last segment says so, or when it is under /data or /stringData
 * of a Secret. */
static int path_names_credential(const char *p, size_t n, int secret_data)
{
    if (n >= 12 && !strncmp(p, "/stringData", 11) && p[11] == '/')
        return 1;
    if (secret_data && n >= 6 && !strncmp(p, "/data", 5) && p[5] == '/')
        return 1;
    size_t last = n;
    while (last && p[last - 1] != '/')
        last--;
    return last < n && !reference_key(p + last, n - last) && argv_credential_name(p + last, n - last);
}

/* Keys that refer to a credential kept elsewhere, not hold one
 * (secretKeyRef, secretName, imagePullSecrets' names, tokenSecretRef,
 * passwordFile): their last word. */
static int reference_key(const char *k, size_t n)
{
    static const char *const last_words[] = { "name", "names", "ref", "refs", "file",
                                              "path", "namespace", "selector", NULL };
    size_t w = n;
    while (w && !(k[w - 1] >= 'A' && k[w - 1] <= 'Z') && k[w - 1] != '_' && k[w - 1] != '-' &&
           k[w - 1] != '.')
        w--;
    if (w && k[w - 1] >= 'A' && k[w - 1] <= 'Z')
        w--; /* secretKeyRef: "Ref" */
    for (const char *const *l = last_words; *l; l++)
        if (is(k + w, n - w, *l) || (w < n && (k[w] == '_' || k[w] == '-' || k[w] == '.') &&
                                     is(k + w + 1, n - w - 1, *l)))
            return 1;
    return 0;
}

/* true, false, null: no credential */
static int literal(const char *v, size_t n)
{
    return is(v, n, "true") || is(v, n, "false") || is(v, n, "null");
}

#define NAMED_DEPTHS 64 /* objects nested deeper are not tracked (bits of named) */
#define LOOKAHEAD_MAX 4096 /* bytes read ahead for a member naming an earlier "value" */

/* Whether a later member of the object whose member's value starts at
 * from names that value a credential: {"value": "…", "name": "DB_PASSWORD"},
 * {"value": …, "op": "add", "path": "/data/password"}.  Reads up to the
 * object's end, at most LOOKAHEAD_MAX bytes; once per object. */
static int named_later(const char *a, size_t len, size_t from, int secret_data)
{
    size_t stop = len - from > LOOKAHEAD_MAX ? from + LOOKAHEAD_MAX : len, depth = 0;
    for (size_t i = from; i < stop; i++) {
        char c = a[i];
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (!depth)
                return 0;
            depth--;
        } else if (c == '"') {
            size_t e = string_end(a, stop, i);
            if (e >= stop)
                return 0;
            size_t colon = skip_blank(a, stop, e + 1), v;
            if (depth || colon >= stop || a[colon] != ':' ||
                (v = skip_blank(a, stop, colon + 1)) >= stop || a[v] != '"') {
                i = e;
                continue;
            }
            size_t ve = string_end(a, stop, v);
            if (ve >= stop)
                return 0;
            const char *k = a + i + 1, *val = a + v + 1;
            size_t kn = e - i - 1, vn = ve - v - 1;
            if (vn && ((names_a_value(k, kn) && argv_credential_name(val, vn)) ||
                       (is(k, kn, "path") && path_names_credential(val, vn, secret_data))))
                return 1;
            i = ve;
        }
    }
    return 0;
}

char *argv_redact_values(const char *arg, size_t len, int secret_data)
{
    /* Every rule needs a key and a ':' after it, or an array of words. */
    if (!memchr(arg, ':', len) && !memchr(arg, '[', len))
        return NULL;
    argv_splice s;
    argv_splice_init(&s, arg);
    /* secret_at: the nesting depth from which every string value is a
     * credential ("stringData": {…}, "password": [...]), 0 outside one. */
    size_t i = 0, depth = 0, secret_at = 0;
    int secret_refs = 0; /* secret_at opened by a credential's key, not stringData / data */
    /* bit d: the object at depth d has named a credential ("name":
     * "DB_PASSWORD"), so its "value" member is one; a name after its value
     * is read ahead (named_later). */
    unsigned long long named = 0;
    /* bit d: the object at depth d was read ahead for a name that comes
     * after its value (named_later); the container at depth d is an array */
    unsigned long long looked = 0, arrays = 0;
    /* the strings of an array are a command's words: "command": ["mysql",
     * "-uroot", "-pS3cret"], "args": ["--password", "S3cret"]; those of the
     * arrays of one object (words_at: its depth) are one command, as a
     * container's "command": ["redis-cli"] and "args": ["-a", "S3cret"] */
    argv_words words = ARGV_WORDS_INIT;
    size_t words_at = 0;
    while (i < len) {
        char c = arg[i];
        if (c == '{' || c == '[') {
            depth++;
            if (depth < NAMED_DEPTHS) {
                named &= ~(1ULL << depth);
                looked &= ~(1ULL << depth);
                arrays = c == '[' ? arrays | 1ULL << depth : arrays & ~(1ULL << depth);
            }
            i++;
            continue;
        }
        if (c == '}' || c == ']') {
            if (depth < NAMED_DEPTHS) {
                named &= ~(1ULL << depth);
                looked &= ~(1ULL << depth);
                arrays &= ~(1ULL << depth);
            }
            if (depth <= words_at) /* the object whose arrays they were ends */
                words = (argv_words)ARGV_WORDS_INIT;
            if (depth)
                depth--;
            if (secret_at && depth < secret_at)
                secret_at = 0;
            i++;
            continue;
        }
        if (c != '"') {
            /* outside strings: YAML and header lines, to the end of a line */
            size_t eol = i;
            while (eol < len && arg[eol] != '"' && arg[eol] != '{' && arg[eol] != '}' &&
                   arg[eol] != '[' && arg[eol] != ']')
                eol++;
            i = header_lines(&s, arg, i, eol, len);
            continue;
        }
        size_t end = string_end(arg, len, i);
        size_t after = end < len ? end + 1 : len;
        size_t colon = skip_blank(arg, len, after);
        if (colon >= len || arg[colon] != ':') {
            /* a string that is no key: an array item, or a value read below */
            size_t keep = 0, wend = 0;
            int word = depth < NAMED_DEPTHS && (arrays >> depth & 1);
            if (word && depth - 1 != words_at) { /* an array of another object */
                words = (argv_words)ARGV_WORDS_INIT;
                words_at = depth - 1;
            }
            if (secret_at && end > i + 1 && !already(arg + i + 1, end - i - 1))
                argv_splice_cut(&s, i + 1, end);
            else if (word && argv_words_next(&words, arg + i + 1, end - i - 1, &keep, &wend) ==
                                 ARGV_INNER_CUT)
                argv_splice_cut_words(&s, arg, i + 1, end - i - 1, keep, wend);
            else
                header_lines(&s, arg, i + 1, end, end); /* "Authorization: Bearer …" */
            i = after;
            continue;
        }
        const char *key = arg + i + 1;
        size_t kn = end - i - 1, v = skip_blank(arg, len, colon + 1);
        int naming = names_a_value(key, kn);
        int path = is(key, kn, "path");
        int ref = reference_key(key, kn);
        int cred = !naming && !ref && argv_credential_name(key, kn);
        if (depth < NAMED_DEPTHS && is_the_value(key, kn)) {
            if (!(named >> depth & 1) && !(looked >> depth & 1)) {
                looked |= 1ULL << depth;
                if (named_later(arg, len, v, secret_data))
                    named |= 1ULL << depth;
            }
            if (named >> depth & 1)
                cred = 1;
        }
        if (v < len && arg[v] == '"') {
            size_t vend = string_end(arg, len, v);
            if (naming && depth < NAMED_DEPTHS && vend > v + 1 &&
                argv_credential_name(arg + v + 1, vend - v - 1))
                named |= 1ULL << depth;
            if (path && depth < NAMED_DEPTHS && vend > v + 1 &&
                path_names_credential(arg + v + 1, vend - v - 1, secret_data))
                named |= 1ULL << depth;
            /* "Authorization": "Bearer …" and "Cookie" as header lines are read */
            int auth = auth_name(key, kn), header = header_member(key, kn, arg, v + 1, vend);
            size_t from = auth ? after_scheme(arg, v + 1, vend) : v + 1;
            if ((cred || header || (secret_at && !(secret_refs && ref))) && vend > from &&
                !already(arg + from, vend - from))
                argv_splice_cut(&s, from, vend);
            else
                header_lines(&s, arg, v + 1, vend, vend);
            i = vend < len ? vend + 1 : len;
            continue;
        }
        if (v < len && (arg[v] == '{' || arg[v] == '[')) {
            if (!secret_at && (cred || is(key, kn, "stringData") ||
                               (secret_data && is(key, kn, "data")))) {
                secret_at = depth + 1; /* the container opening at v */
                /* under "secret": {…} the names of what it refers to stay */
                secret_refs = cred;
            }
            i = v;
            continue;
        }
        if ((cred || secret_at) && v < len) {
            /* {"token": 'S3 cret'}: a Python string, to its closing quote;
             * only a single-quoted one: b"…" read as a string here and as
             * a JSON key elsewhere would make the text read otherwise
             * when no credential's key comes before it */
            size_t q = py_quote(arg, len, v);
            if (q < len && arg[q] != '\'')
                q = len;
            size_t from = q < len ? q + 1 : v;
            size_t e = q < len ? py_close(arg, len, q) : scalar_end(arg, len, v);
            if (e > from && !already(arg + from, e - from) && !literal(arg + from, e - from))
                argv_splice_cut(&s, from, e);
            i = q < len && e < len ? e + 1 : e > v ? e : v;
            continue;
        }
        i = v;
    }
    return argv_splice_finish(&s, len);
}

/* ---- passwords in script code -------------------------------------------------------------------- */

/* A string literal opening at a[i]: '…', "…", `…`, or \"…\" (a line inside
 * "…": sh -c "mongosh --eval \"db.auth(…)\""); a backslash escapes what
 * follows it.  *open is its text's first byte, *close its closing quote
 * (len when it is never closed). */
static int js_string(const char *a, size_t len, size_t i, size_t *open, size_t *close)
{
    if (i + 1 < len && a[i] == '\\' && a[i + 1] == '"') {
        size_t k = i + 2;
        while (k < len && !(a[k] == '\\' && k + 1 < len && a[k + 1] == '"'))
            k += a[k] == '\\' && k + 1 < len ? 2 : 1;
        *open = i + 2;
        *close = k < len ? k : len;
        return 1;
    }
    if (i >= len || (a[i] != '\'' && a[i] != '"' && a[i] != '`'))
        return 0;
    size_t k = i + 1;
    while (k < len && a[k] != a[i])
        k += a[k] == '\\' && k + 1 < len ? 2 : 1;
    *open = i + 1;
    *close = k < len ? k : len;
    return 1;
}

/* Past a string literal's closing quote (two bytes for \"). */
static size_t js_past(const char *a, size_t len, size_t close)
{
    if (close >= len)
        return len;
    return a[close] == '\\' ? close + 2 : close + 1;
}

static int js_ident_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '$';
}

/* Calls whose second argument is a password: mongosh's db.auth('u', '…')
 * and db.changeUserPassword('u', '…'), Python's auth=('u', '…') (requests)
 * and HTTPBasicAuth('u', '…'). */
static int password_call(const char *k, size_t n)
{
    return is(k, n, "auth") || is(k, n, "changeUserPassword") || is(k, n, "HTTPBasicAuth") ||
           is(k, n, "HTTPDigestAuth") || is(k, n, "BasicAuth");
}

/* Where a call's first argument ends, from i (after its '('): past a
 * string literal or a plain expression up to ','; len when it is another
 * form (an object: db.auth({user, pwd}) is read as one). */
static size_t first_argument_end(const char *a, size_t len, size_t i)
{
    size_t open, close;
    if (js_string(a, len, i, &open, &close))
        return js_past(a, len, close);
    while (i < len && a[i] != ',' && a[i] != ')' && a[i] != '(' && a[i] != '{' && a[i] != '[' &&
           a[i] != ';' && a[i] != '\'' && a[i] != '"')
        i++;
    return i;
}

char *argv_redact_js(const char *arg, size_t len)
{
    if (!memchr(arg, '(', len) && !memchr(arg, ':', len))
        return NULL;
    argv_splice s;
    argv_splice_init(&s, arg);
    for (size_t i = 0; i < len;) {
        if (!js_ident_char(arg[i]) || (i > 0 && js_ident_char(arg[i - 1]))) {
            i++;
            continue;
        }
        size_t e = i;
        while (e < len && js_ident_char(arg[e]))
            e++;
        size_t n = e - i, k = skip_blank(arg, len, e), open = 0, close = 0;
        if (k < len && arg[k] == ':' && !(k + 1 < len && arg[k + 1] == ':')) {
            /* {user:'u', pwd:'…'}: an object's unquoted key, after '{' or ',' */
            size_t b = i;
            while (b > 0 && argv_blank(arg[b - 1]))
                b--;
            size_t v = skip_blank(arg, len, k + 1);
            if (b > 0 && (arg[b - 1] == '{' || arg[b - 1] == ',') &&
                argv_credential_name(arg + i, n) && !reference_key(arg + i, n) &&
                js_string(arg, len, v, &open, &close)) {
                if (close > open && !already(arg + open, close - open))
                    argv_splice_cut(&s, open, close);
                i = js_past(arg, len, close);
                continue;
            }
        } else if (password_call(arg + i, n)) {
            if (k < len && arg[k] == '=' && is(arg + i, n, "auth"))
                k = skip_blank(arg, len, k + 1); /* auth=('u', '…') */
            if (k < len && arg[k] == '(') {
                size_t c = skip_blank(arg, len, first_argument_end(arg, len,
                                                                   skip_blank(arg, len, k + 1)));
                if (c < len && arg[c] == ',' &&
                    js_string(arg, len, skip_blank(arg, len, c + 1), &open, &close)) {
                    if (close > open && !already(arg + open, close - open))
                        argv_splice_cut(&s, open, close);
                    i = js_past(arg, len, close);
                    continue;
                }
            }
        }
        i = e;
    }
    return argv_splice_finish(&s, len);
}

/* ---- passwords set by a database statement ---------------------------------------------------- */

/* Whether the word a[i, e) is kw (case ignored). */
static int sql_is(const char *a, size_t i, size_t e, const char *kw)
{
    return is(a + i, e - i, kw);
}

/* The end of the word of name characters starting at i. */
static size_t word_end(const char *a, size_t len, size_t i)
{
    while (i < len && argv_name_char(a[i]))
        i++;
    return i;
}

/* The quoted parts and name characters of a user written after FOR
 * ('app'@'%', app@localhost, "u"): where they end. */
static size_t sql_user(const char *a, size_t len, size_t i)
{
    while (i < len) {
        if (a[i] == '\'' || a[i] == '"' || a[i] == '`') {
            const char *c = memchr(a + i + 1, a[i], len - i - 1);
            i = c ? (size_t)(c - a) + 1 : len;
        } else if (argv_name_char(a[i]) || a[i] == '@' || a[i] == '%' || argv_blank(a[i])) {
            i++;
        } else {
            break;
        }
    }
    return i;
}

/* The string literal after PASSWORD or IDENTIFIED … BY, from i (just past
 * the keyword): [= ] [PASSWORD] [(] then '…', "…", E'…' or, in a line
 * inside "…", \"…\".  A quote doubled inside ('S3''cret') or escaped by a
 * backslash (MySQL) does not end it; one never closed runs to the end.
 * Cuts its text, the quotes stay (a shell line holding the statement
 * splits the same way again); returns where the caller goes on. */
static size_t sql_literal(argv_splice *s, const char *a, size_t len, size_t i, int after_password)
{
    i = skip_blank(a, len, i);
    if (after_password && i < len && word_end(a, len, i) > i &&
        sql_is(a, i, word_end(a, len, i), "for")) { /* SET PASSWORD FOR 'app'@'%' = … */
        i = sql_user(a, len, word_end(a, len, i));
        if (i >= len || a[i] != '=')
            return i;
    }
    if (i < len && a[i] == '=')
        i = skip_blank(a, len, i + 1);
    size_t w = word_end(a, len, i);
    if (w > i && sql_is(a, i, w, "password")) /* = PASSWORD('…'), BY PASSWORD '*hash' */
        i = skip_blank(a, len, w);
    if (i < len && a[i] == '(')
        i = skip_blank(a, len, i + 1);
    if (i + 1 < len && (a[i] == 'E' || a[i] == 'e') && a[i + 1] == '\'')
        i++;
    int esc = i + 1 < len && a[i] == '\\' && a[i + 1] == '"';
    if (i >= len || (!esc && a[i] != '\'' && a[i] != '"'))
        return i;
    char q = esc ? '"' : a[i];
    size_t open = i + (esc ? 2 : 1), k = open;
    while (k < len) {
        if (esc && a[k] == '\\' && k + 1 < len && a[k + 1] == '"')
            break;
        if (!esc && a[k] == q) {
            if (k + 1 < len && a[k + 1] == q) {
                k += 2;
                continue;
            }
            break;
        }
        k += a[k] == '\\' && k + 1 < len ? 2 : 1;
    }
    if (k > open && !already(a + open, k - open))
        argv_splice_cut(s, open, k);
    return k;
}

char *argv_redact_sql(const char *arg, size_t len)
{
    argv_splice s;
    argv_splice_init(&s, arg);
    int identified = 0; /* IDENTIFIED seen: its BY comes before the literal */
    for (size_t i = 0; i < len;) {
        if (arg[i] == ';')
            identified = 0;
        if (!argv_name_char(arg[i]) || (i > 0 && argv_name_char(arg[i - 1]))) {
            i++;
            continue;
        }
        size_t e = word_end(arg, len, i);
        /* a keyword stands between blanks ("password": "…" is a JSON key,
         * password: … a YAML one, read by the rules above) */
        int keyword = (i == 0 || argv_blank(arg[i - 1]) || arg[i - 1] == '(' || arg[i - 1] == '"') &&
                      e < len && (argv_blank(arg[e]) || arg[e] == '=' || arg[e] == '(');
        if (!keyword) {
            i = e;
        } else if (sql_is(arg, i, e, "password")) {
            i = sql_literal(&s, arg, len, e, 1);
        } else if (identified && sql_is(arg, i, e, "by")) {
            identified = 0;
            i = sql_literal(&s, arg, len, e, 0);
        } else {
            if (sql_is(arg, i, e, "identified"))
                identified = 1;
            i = e;
        }
    }
    return argv_splice_finish(&s, len);
}

/* "kind": "Secret" (JSON) or kind: Secret (YAML) at p, read backwards from
 * the start of "Secret". */
static int kind_before(const char *arg, const char *p)
{
    while (p > arg && (p[-1] == ' ' || p[-1] == '\t' || p[-1] == '"'))
        p--;
    if (p == arg || p[-1] != ':')
        return 0;
    p--;
    while (p > arg && (p[-1] == ' ' || p[-1] == '\t' || p[-1] == '"'))
        p--;
    return p - arg >= 4 && !strncmp(p - 4, "kind", 4) && (p - 4 == arg || !argv_name_char(p[-5]));
}

int argv_names_secret(const char *arg)
{
    /* kubectl's resource words: secret, secrets, secret/name, secrets.v1, a
     * comma list (configmap,secret); not an option or a line of text */
    if (*arg != '-' && !strpbrk(arg, " \t\n"))
        for (const char *w = arg; *w;) {
            size_t n = strcspn(w, ",");
            size_t r = strcspn(w, "/.,");
            if ((r == 6 && !strncmp(w, "secret", 6)) || (r == 7 && !strncmp(w, "secrets", 7)))
                return 1;
            w += n;
            if (*w)
                w++;
        }
    for (const char *p = arg; (p = strstr(p, "Secret")); p += 6) {
        char next = p[6];
        if ((next == '\0' || next == '"' || argv_blank(next) || next == ',' || next == '}') &&
            kind_before(arg, p))
            return 1;
    }
    return 0;
}
