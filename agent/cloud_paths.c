/* cloud_paths.c — arguments naming the command's own process files (see
 * cloud_paths.h). */
#include "cloud_paths.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is_name(const char *c, size_t n, const char *name)
{
    return n == strlen(name) && !memcmp(c, name, n);
}

/* Walks the path p[0..n) component by component as the kernel resolves it
 * (symlinks aside: none under the read-only paths leads into /proc as a
 * directory).  A relative path starts one level below an unknown root, so a
 * ".." above its start may be the root: a name pushed there is checked.
 * Refused: anything below /proc (environ, and every fd of the process), and
 * below /dev (/dev/fd, /dev/stdin: links into /proc/self) except /dev/shm,
 * a tmpfs of plain files where the agent's TMPDIR, and with it the command's
 * own directory and the files it names, may well be (refusing it refused
 * every command naming its own input file there). */
static int path_reaches(const char *p, size_t n)
{
    size_t i = 0;
    int depth = 1;
    int below_dev = 0; /* the root's child walked through is "dev" */
    if (n && p[0] == '/')
        depth = 0;
    else if (n && p[0] == '~') /* ~ or ~user: HOME or another home, one level down */
        while (i < n && p[i] != '/')
            i++;
    while (i < n) {
        while (i < n && p[i] == '/')
            i++;
        size_t s = i;
        while (i < n && p[i] != '/')
            i++;
        size_t len = i - s;
        if (len == 0 || (len == 1 && p[s] == '.'))
            continue;
        if (len == 2 && p[s] == '.' && p[s + 1] == '.') {
            if (depth > 0)
                depth--;
            continue;
        }
        if (depth == 0) {
            if (is_name(p + s, len, "proc"))
                return 1;
            below_dev = is_name(p + s, len, "dev");
        } else if (depth == 1 && below_dev && !is_name(p + s, len, "shm")) {
            return 1;
        }
        depth++;
    }
    return 0;
}

/* A candidate path starting at p: up to the end of the argument, and up to
 * the next ',' (a list element: `key=/proc/self/environ,other=…`). */
static int candidate_reaches(const char *p)
{
    if (p[0] != '/' && p[0] != '.' && p[0] != '~')
        return 0;
    return path_reaches(p, strlen(p)) || path_reaches(p, strcspn(p, ","));
}

int cloud_arg_names_process_files(const char *arg, char *why, size_t whylen)
{
    static const char *const schemes[] = {"file://", "fileb://", NULL};
    for (const char *q = arg; *q; q++) {
        if (q == arg || q[-1] == '=' || q[-1] == ',' || q[-1] == '@') {
            if (candidate_reaches(q)) {
                snprintf(why, whylen,
                         "names a path below /proc or /dev (the command's own process files: "
                         "its environment holds its credentials)");
                return 1;
            }
        }
        for (int s = 0; schemes[s]; s++) {
            size_t sl = strlen(schemes[s]);
            if (strncasecmp(q, schemes[s], sl))
                continue;
            const char *path = q + sl;
            if (strchr(path, '$')) {
                snprintf(why, whylen,
                         "holds a %s path with '$' (aws expands it from the command's "
                         "environment, which holds its credentials, and quotes the result)",
                         schemes[s]);
                return 1;
            }
            if (candidate_reaches(path)) {
                snprintf(why, whylen,
                         "names a path below /proc or /dev (the command's own process files: "
                         "its environment holds its credentials)");
                return 1;
            }
        }
    }
    return 0;
}
