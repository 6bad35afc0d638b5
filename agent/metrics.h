/* metrics.h — the agent's Prometheus metrics (text exposition format 0.0.4),
 * served on /metrics.  Every update is a relaxed atomic operation, so any
 * thread (event loop, job threads) may record; rendering reads a snapshot.
 *
 *   aurora_agent_info{version,policy_mode}                  gauge 1
 *   aurora_agent_connected                                  gauge 0/1 (tunnel up, `connected` received)
 *   aurora_agent_connection_state{state}                    gauge, one of disconnected|resolving|connecting|connected
 *   aurora_agent_connects_total                             counter, successful connections
 *   aurora_agent_reconnects_total                           counter, reconnect attempts scheduled after a loss/failure
 *   aurora_agent_commands_total{kind,result}                counter
 *   aurora_agent_command_duration_seconds{kind}             histogram (commands that ran)
 *   aurora_agent_commands_in_flight                         gauge
 *   aurora_agent_output_bytes_total{channel}                counter, stdout|stderr bytes streamed / sent
 *   aurora_agent_policy_denials_total                       counter
 *   aurora_agent_reading_paused                             gauge 0/1: the server is not reading
 *                                                           what the agent sends, so the agent
 *                                                           has stopped reading requests
 *   aurora_agent_reading_pauses_total                       counter, times reading was paused
 *   aurora_agent_sandbox_landlock_abi                       gauge, the kernel's Landlock ABI (0: none)
 *   aurora_agent_sandbox_isolation{layer}                   gauge 0/1: filesystem|network|scoped
 *                                                           (Landlock rules in force), uid (a uid per command)
 *   process_resident_memory_bytes, process_open_fds         gauges
 */
#ifndef AURORA_AGENT_METRICS_H
#define AURORA_AGENT_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { MK_KUBECTL = 0, MK_CLOUD_EXEC, MK_OTHER, MK__N } metrics_kind;

typedef enum {
    MR_SUCCESS = 0,   /* exit code 0 */
    MR_FAILURE,       /* non-zero exit code */
    MR_TIMEOUT,
    MR_CANCELLED,
    MR_OUTPUT_LIMIT,
    MR_SPAWN_FAILED,
    MR_POLICY_DENIED,
    MR_BUSY,
    MR_SHUTTING_DOWN,
    MR_BAD_REQUEST,
    MR_DROPPED,       /* connection lost while running */
    MR__N
} metrics_result;

typedef enum {
    MS_DISCONNECTED = 0,
    MS_RESOLVING,
    MS_CONNECTING,
    MS_CONNECTED,
    MS__N
} metrics_state;

void metrics_init(const char *version, const char *policy_mode);
metrics_kind metrics_kind_of(const char *kind); /* NULL = kubectl */
/* A command that ended (ran or was refused).  duration_ms < 0: it never ran
 * (not observed in the histogram). */
void metrics_command(metrics_kind k, metrics_result r, int64_t duration_ms);
/* maps an exec_end error code (NULL = by exit code) to a result */
metrics_result metrics_result_of(const char *error_code, int return_code);
void metrics_in_flight(int delta);
void metrics_bytes(int channel /* 1 stdout, 2 stderr */, int64_t n);
void metrics_policy_denial(void);
/* Reading the tunnel paused (1: counted) or resumed (0), tunnel.c. */
void metrics_reading_paused(int paused);
void metrics_state_set(metrics_state s);
void metrics_connected(void);   /* counts a successful connection */
void metrics_reconnect(void);   /* counts a reconnect attempt scheduled */
/* What isolates cloud commands (sandbox.h), set when the sandbox starts. */
void metrics_sandbox(int landlock_abi, int filesystem, int network, int scoped, int uid_sep);
/* The exposition text, malloc'd (NUL-terminated); NULL on OOM. */
char *metrics_render(size_t *len);

#endif
