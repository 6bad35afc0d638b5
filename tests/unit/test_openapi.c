/* test_openapi.c — docs/openapi.json against the server's route table.
 *
 * The document is written by hand (descriptions, bodies and error codes need
 * a person), so this test is what keeps it true: it registers every module
 * (modules_register_all, as the server does at start-up), walks the table
 * with router_foreach and fails naming
 *   - every registered route (method + pattern) the document lacks,
 *   - every documented operation the server does not register,
 *   - every operation whose security does not match the route's auth level
 *     (public: `security: []`; ROUTE_AUTH_API: the bearer API key or the
 *     internal secret; ROUTE_AUTH_INTERNAL: the internal secret only),
 *   - every `{param}` of a pattern not declared as a path parameter.
 * Structural validation against the OpenAPI schema is the integration test
 * tests/integration/test_openapi.mjs (a real validator from npm).
 * Unit tests run from the repository root (tests/run-unit.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "http.h"
#include "router.h"

#define OPENAPI_PATH "docs/openapi.json"

/* The names docs/openapi.json gives its two security schemes. */
#define SCHEME_API_KEY "apiKey"
#define SCHEME_INTERNAL "internalSecret"

static cJSON *g_doc;

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    buf_t b;
    buf_init(&b);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    buf_append(&b, "", 1);
    return buf_detach(&b, NULL);
}

static int setup(void **state)
{
    (void)state;
    char *text = read_file(OPENAPI_PATH);
    if (!text) {
        fprintf(stderr, "cannot read %s (run from the repository root)\n", OPENAPI_PATH);
        return -1;
    }
    g_doc = cJSON_Parse(text);
    free(text);
    if (!g_doc) {
        fprintf(stderr, "%s is not valid JSON near: %.40s\n", OPENAPI_PATH,
                cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
        return -1;
    }
    router_reset();
    modules_register_all();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    router_reset();
    cJSON_Delete(g_doc);
    g_doc = NULL;
    return 0;
}

static void lower(const char *in, char *out, size_t outlen)
{
    size_t i = 0;
    for (; in[i] && i + 1 < outlen; i++)
        out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    out[i] = '\0';
}

static const cJSON *paths(void)
{
    return cJSON_GetObjectItemCaseSensitive(g_doc, "paths");
}

static const cJSON *operation(http_method m, const char *pattern)
{
    char verb[16];
    lower(http_method_name(m), verb, sizeof(verb));
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(paths(), pattern);
    return item ? cJSON_GetObjectItemCaseSensitive(item, verb) : NULL;
}

/* The auth level an operation's security requirement says, or -1 when it
 * matches none of the three the router knows. */
static int documented_auth(const cJSON *op)
{
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(op, "security");
    if (!sec)
        sec = cJSON_GetObjectItemCaseSensitive(g_doc, "security");
    if (!cJSON_IsArray(sec))
        return -1;
    int n = cJSON_GetArraySize(sec), api_key = 0, internal = 0, other = 0;
    if (n == 0)
        return ROUTE_PUBLIC;
    const cJSON *req;
    cJSON_ArrayForEach(req, sec) {
        /* Each requirement is one scheme alone: "any of" these. */
        if (!cJSON_IsObject(req) || cJSON_GetArraySize(req) != 1) {
            other++;
            continue;
        }
        const char *name = req->child->string;
        if (!strcmp(name, SCHEME_API_KEY))
            api_key++;
        else if (!strcmp(name, SCHEME_INTERNAL))
            internal++;
        else
            other++;
    }
    if (other || api_key > 1 || internal > 1)
        return -1;
    if (api_key && internal)
        return ROUTE_AUTH_API;
    if (internal)
        return ROUTE_AUTH_INTERNAL;
    return -1; /* an API key alone is no route's level: the internal secret always works */
}

static const char *auth_name(int a)
{
    switch (a) {
    case ROUTE_PUBLIC: return "public";
    case ROUTE_AUTH_API: return "api (apiKey or internalSecret)";
    case ROUTE_AUTH_INTERNAL: return "internal (internalSecret)";
    default: return "unrecognized";
    }
}

typedef struct {
    buf_t problems;
    int count;
} findings;

static void note(findings *f, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    buf_append(&f->problems, "  ", 2);
    buf_append(&f->problems, line, strlen(line));
    buf_append(&f->problems, "\n", 1);
    f->count++;
}

static void finish(findings *f, const char *what)
{
    if (f->count) {
        buf_append(&f->problems, "", 1);
        print_error("%d %s:\n%s", f->count, what, f->problems.data);
    }
    int n = f->count;
    buf_free(&f->problems);
    assert_int_equal(n, 0);
}

static void count_route(http_method m, const char *pattern, route_auth auth, void *arg)
{
    (void)m, (void)pattern, (void)auth;
    (*(int *)arg)++;
}

static void check_documented(http_method m, const char *pattern, route_auth auth, void *arg)
{
    (void)auth;
    if (!operation(m, pattern))
        note(arg, "%s %s", http_method_name(m), pattern);
}

static void test_every_route_is_documented(void **state)
{
    (void)state;
    int n = 0;
    router_foreach(count_route, &n);
    assert_true(n > 100); /* the walk saw the real table, not an empty one */
    findings f = { 0 };
    buf_init(&f.problems);
    router_foreach(check_documented, &f);
    finish(&f, "registered routes missing from " OPENAPI_PATH);
}

typedef struct {
    http_method m;
    const char *pattern;
    int found;
} lookup;

static void find_route(http_method m, const char *pattern, route_auth auth, void *arg)
{
    (void)auth;
    lookup *l = arg;
    if (l->m == m && !strcmp(l->pattern, pattern))
        l->found = 1;
}

static const char *const g_verbs[] = { "get", "post", "put", "patch", "delete", "options",
                                       "head", "trace" };

static void test_every_documented_operation_is_registered(void **state)
{
    (void)state;
    findings f = { 0 };
    buf_init(&f.problems);
    const cJSON *p;
    assert_non_null(paths());
    cJSON_ArrayForEach(p, paths()) {
        for (size_t v = 0; v < sizeof(g_verbs) / sizeof(g_verbs[0]); v++) {
            if (!cJSON_GetObjectItemCaseSensitive(p, g_verbs[v]))
                continue;
            lookup l = { HTTP_OTHER, p->string, 0 };
            for (http_method m = HTTP_GET; m < HTTP_OTHER; m++) {
                char verb[16];
                lower(http_method_name(m), verb, sizeof(verb));
                if (!strcmp(verb, g_verbs[v]))
                    l.m = m;
            }
            if (l.m != HTTP_OTHER)
                router_foreach(find_route, &l);
            if (!l.found)
                note(&f, "%s %s", g_verbs[v], p->string);
        }
    }
    finish(&f, "documented operations the server does not register");
}

static void check_auth(http_method m, const char *pattern, route_auth auth, void *arg)
{
    const cJSON *op = operation(m, pattern);
    if (!op)
        return; /* reported by test_every_route_is_documented */
    int doc = documented_auth(op);
    if (doc != (int)auth)
        note(arg, "%s %s: server %s, document %s", http_method_name(m), pattern,
             auth_name((int)auth), auth_name(doc));
}

static void test_auth_levels_match(void **state)
{
    (void)state;
    findings f = { 0 };
    buf_init(&f.problems);
    router_foreach(check_auth, &f);
    finish(&f, "operations whose security differs from the route's auth level");
}

/* 1 if `name` is declared `in: path` in a parameters array (a $ref to
 * #/components/parameters/X is followed). */
static int declares_path_param(const cJSON *params, const char *name)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, params) {
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(p, "$ref");
        if (cJSON_IsString(ref)) {
            const char *prefix = "#/components/parameters/";
            if (strncmp(ref->valuestring, prefix, strlen(prefix)))
                continue;
            const cJSON *comps = cJSON_GetObjectItemCaseSensitive(g_doc, "components");
            const cJSON *all = cJSON_GetObjectItemCaseSensitive(comps, "parameters");
            p = cJSON_GetObjectItemCaseSensitive(all, ref->valuestring + strlen(prefix));
            if (!p)
                continue;
        }
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(p, "in");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "name");
        if (cJSON_IsString(in) && !strcmp(in->valuestring, "path") && cJSON_IsString(n) &&
            !strcmp(n->valuestring, name))
            return 1;
    }
    return 0;
}

static void check_params(http_method m, const char *pattern, route_auth auth, void *arg)
{
    (void)auth;
    const cJSON *op = operation(m, pattern);
    if (!op)
        return;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(paths(), pattern);
    for (const char *s = strchr(pattern, '{'); s; s = strchr(s + 1, '{')) {
        const char *e = strchr(s, '}');
        if (!e)
            break;
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(e - s - 1), s + 1);
        if (!declares_path_param(cJSON_GetObjectItemCaseSensitive(op, "parameters"), name) &&
            !declares_path_param(cJSON_GetObjectItemCaseSensitive(item, "parameters"), name))
            note(arg, "%s %s: {%s}", http_method_name(m), pattern, name);
    }
}

static void test_path_params_declared(void **state)
{
    (void)state;
    findings f = { 0 };
    buf_init(&f.problems);
    router_foreach(check_params, &f);
    finish(&f, "path parameters not declared `in: path`");
}

/* Every operation says what it does and answers the documented error shape
 * for at least one failure (or is one that cannot fail in JSON). */
static void test_operations_have_summary_and_responses(void **state)
{
    (void)state;
    findings f = { 0 };
    buf_init(&f.problems);
    const cJSON *p;
    cJSON_ArrayForEach(p, paths()) {
        for (size_t v = 0; v < sizeof(g_verbs) / sizeof(g_verbs[0]); v++) {
            const cJSON *op = cJSON_GetObjectItemCaseSensitive(p, g_verbs[v]);
            if (!op)
                continue;
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(op, "summary");
            if (!cJSON_IsString(s) || !s->valuestring[0])
                note(&f, "%s %s: no summary", g_verbs[v], p->string);
            const cJSON *r = cJSON_GetObjectItemCaseSensitive(op, "responses");
            if (!cJSON_IsObject(r) || cJSON_GetArraySize(r) == 0)
                note(&f, "%s %s: no responses", g_verbs[v], p->string);
        }
    }
    finish(&f, "operations without a summary or responses");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_is_documented),
        cmocka_unit_test(test_every_documented_operation_is_registered),
        cmocka_unit_test(test_auth_levels_match),
        cmocka_unit_test(test_path_params_declared),
        cmocka_unit_test(test_operations_have_summary_and_responses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
