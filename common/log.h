/* log.h — one line per event on stderr, as text or JSON, with a level filter.
 * Thread-safe: each line is formatted into a local buffer and written with a
 * single write(2).  Never pass secrets (tokens, keys, credentials, command
 * environment) to these functions. */
#ifndef AURORA_LOG_H
#define AURORA_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* level: "debug"|"info"|"warn"|"error"; format: "text"|"json". Returns -1 on bad names. */
int log_setup(const char *component, const char *level, const char *format);
int log_level_from_name(const char *name);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int log_enabled(enum log_level lvl);

/* on: a line stderr cannot take at once (a pipe whose reader stopped
 * reading: a stalled container runtime, a terminal paused with Ctrl-S) is
 * dropped and counted instead of stopping the calling thread, which in a
 * server is its event loop.  A reader that is only behind gets up to 10 ms;
 * once that ran out, lines are dropped at once until one gets through.  The
 * next line that gets through is preceded by one saying how many were
 * dropped.  For the long-running services; a
 * command-line tool (off, the default) waits for its reader. */
void log_never_block(int on);
/* Lines dropped since the process started (for /metrics). */
unsigned long long log_lines_dropped(void);

/* A structured field of one log line: a string (str non-NULL) or a number.
 * In JSON the fields are properties of the line beside ts/level/msg, so a
 * log pipeline filters on them without parsing the message; in text they
 * follow the message as key=value (quoted when needed). */
typedef struct {
    const char *key;
    const char *str;
    long long num;
} log_field;
static inline const char *log_str_or_empty(const char *s) { return s ? s : ""; }
#define LOG_STR(k, v) ((log_field){ .key = (k), .str = log_str_or_empty(v) })
#define LOG_NUM(k, v) ((log_field){ .key = (k), .str = NULL, .num = (long long)(v) })

void log_fields(enum log_level lvl, const char *msg, const log_field *fields, int nfields);

#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
