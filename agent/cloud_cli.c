/* cloud_cli.c — the cloud CLI plug-ins' registry and shared helpers (see cloud_cli.h). */
#include "cloud_cli.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cloud_cli *const all[] = {&cloud_cli_gcloud, &cloud_cli_aws, &cloud_cli_az, NULL};

const cloud_cli *const *cloud_cli_all(void)
{
    return all;
}

const cloud_cli *cloud_cli_find(const char *name)
{
    for (int i = 0; name && all[i]; i++)
        if (!strcmp(all[i]->name, name))
            return all[i];
    return NULL;
}

int cloud_cli_server_env_ok(const cloud_cli *cli, const char *name, size_t len)
{
    for (int i = 0; cli && cli->server_env && cli->server_env[i]; i++)
        if (strlen(cli->server_env[i]) == len && !memcmp(cli->server_env[i], name, len))
            return 1;
    return 0;
}

const char *cloud_cli_env_value(char *const env[], int nenv, const char *name)
{
    size_t nl = strlen(name);
    for (int i = 0; i < nenv; i++)
        if (env[i] && !strncmp(env[i], name, nl) && env[i][nl] == '=')
            return env[i] + nl + 1;
    return NULL;
}

/* ---- probes ------------------------------------------------------------------- */

static ssize_t read_head(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, buf, n - 1);
    close(fd);
    if (r < 0)
        return -1;
    buf[r] = '\0';
    return r;
}

int cloud_cli_first_line(const char *path, char *out, size_t outlen)
{
    char buf[256];
    if (read_head(path, buf, sizeof(buf)) <= 0)
        return -1;
    size_t n = strcspn(buf, "\r\n");
    while (n && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f)
            return -1;
    if (!n || n >= outlen)
        return -1;
    memcpy(out, buf, n + 1);
    return 0;
}

void cloud_cli_interpreter(const char *program, char *out, size_t outlen)
{
    char head[4096];
    out[0] = '\0';
    if (read_head(program, head, sizeof(head)) < 2 || head[0] != '#' || head[1] != '!')
        return;
    /* #!/path/to/python…: that one */
    char *p = head + 2;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strcspn(p, " \t\r\n");
    char first[PATH_MAX];
    if (n && n < sizeof(first)) {
        memcpy(first, p, n);
        first[n] = '\0';
        const char *base = strrchr(first, '/');
        if (first[0] == '/' && base && !strncmp(base + 1, "python", 6)) {
            snprintf(out, outlen, "%s", first);
            return;
        }
    }
    /* a shell wrapper (`/opt/az/bin/python3 -Im azure.cli "$@"`): the first
     * absolute …/bin/python* it names */
    for (char *q = head; (q = strstr(q, "/bin/python")); q++) {
        char *s = q;
        while (s > head && s[-1] != ' ' && s[-1] != '\t' && s[-1] != '\n' && s[-1] != '"' &&
               s[-1] != '\'' && s[-1] != '=')
            s--;
        size_t len = strcspn(s, " \t\r\n\"';");
        if (s[0] == '/' && len < outlen) {
            memcpy(out, s, len);
            out[len] = '\0';
            return;
        }
    }
}

/* dirname(dirname(realpath(p))) */
static int prefix_of(const char *p, char *out, size_t outlen)
{
    char *r = realpath(p, NULL);
    if (!r)
        return -1;
    for (int i = 0; i < 2; i++) {
        char *s = strrchr(r, '/');
        if (!s || s == r) {
            free(r);
            return -1;
        }
        *s = '\0';
    }
    snprintf(out, outlen, "%s", r);
    free(r);
    return 0;
}

/* name is "<dist>-<version>.dist-info" or ".egg-info" (dist compared with
 * '-', '.' and '_' alike, case-insensitively) */
static int dist_match(const char *name, const char *dist, char *ver, size_t verlen)
{
    size_t dl = strlen(dist);
    if (strlen(name) <= dl + 1 || name[dl] != '-')
        return 0;
    for (size_t i = 0; i < dl; i++) {
        char a = name[i], b = dist[i];
        if (a == '-' || a == '.')
            a = '_';
        if (b == '-' || b == '.')
            b = '_';
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (char)(b - 'A' + 'a');
        if (a != b)
            return 0;
    }
    const char *v = name + dl + 1;
    size_t nl = strlen(name);
    const char *end = NULL;
    if (nl > 10 && !strcmp(name + nl - 10, ".dist-info"))
        end = name + nl - 10;
    else if (nl > 9 && !strcmp(name + nl - 9, ".egg-info"))
        end = name + nl - 9;
    if (!end || end <= v)
        return 0;
    /* Debian's egg-info may carry the Python version: 1.21.0.egg-info or
     * msal-1.21.0-py3.11.egg-info */
    const char *py = strstr(v, "-py");
    if (py && py < end)
        end = py;
    size_t n = (size_t)(end - v);
    if (!n || n >= verlen)
        return 0;
    memcpy(ver, v, n);
    ver[n] = '\0';
    return 1;
}

static int scan_dir(const char *dir, const char *dist, char *out, size_t outlen)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int rc = -1;
    struct dirent *de;
    while (rc && (de = readdir(d)))
        if (dist_match(de->d_name, dist, out, outlen))
            rc = 0;
    closedir(d);
    return rc;
}

int cloud_cli_python_dist_version(const char *program, const char *dist, char *out,
                                  size_t outlen)
{
    char interp[PATH_MAX], prefix[PATH_MAX];
    cloud_cli_interpreter(program, interp, sizeof(interp));
    if (prefix_of(interp[0] ? interp : program, prefix, sizeof(prefix)) != 0)
        return -1;
    char lib[PATH_MAX + 8];
    snprintf(lib, sizeof(lib), "%s/lib", prefix);
    DIR *d = opendir(lib);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, "python3", 7))
                continue;
            static const char *const sub[] = {"site-packages", "dist-packages"};
            for (int i = 0; i < 2; i++) {
                char dir[PATH_MAX * 2];
                snprintf(dir, sizeof(dir), "%s/%s/%s", lib, de->d_name, sub[i]);
                if (scan_dir(dir, dist, out, outlen) == 0) {
                    closedir(d);
                    return 0;
                }
            }
        }
        closedir(d);
    }
    return -1;
}

int cloud_cli_version_is(const char *version, const char *prefix)
{
    size_t n = strlen(prefix);
    if (!version || strncmp(version, prefix, n))
        return 0;
    return prefix[n - 1] == '.' || version[n] == '\0' || version[n] == '.';
}
