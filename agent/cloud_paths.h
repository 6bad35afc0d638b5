/* cloud_paths.h — arguments of a cloud command that name the command's own
 * process files.
 *
 * The injected credentials live in the command's environment (aws, gcloud)
 * and so in /proc/self/environ, which Landlock cannot take away from a
 * process (/proc is read-only, not absent: the CLIs' interpreters use it).
 * The CLIs read files their arguments name and quote them back: aws reads
 * every `file://…`/`fileb://…` argument value (awscli paramfile, also after
 * `@=` in shorthand), after expanding `$NAME` and `~` in the path, and
 * quotes the file or the path it could not open in its error; `s3 cp`,
 * `gcloud storage cp`, `az storage blob upload --file` copy a local path to a
 * bucket the caller reads (aws 1.45 copies procfs files empty: it sizes them
 * by stat; an uploader that streams would not).  The caller may not see the credentials (the
 * printers are refused for that reason), so these arguments are refused. */
#ifndef AURORA_AGENT_CLOUD_PATHS_H
#define AURORA_AGENT_CLOUD_PATHS_H

#include <stddef.h>

/* 1 (and why, never quoting the argument) when arg names, lexically, a path
 * below /proc or /dev (absolute, or relative climbing with "..": taken to
 * reach the root whatever the depth of HOME), wherever a path may start in
 * it (its start, after '=', ',', '@', after `file://`/`fileb://`, a leading
 * `~` read as HOME), or holds a `file://`/`fileb://` path with '$'. */
int cloud_arg_names_process_files(const char *arg, char *why, size_t whylen);

#endif
