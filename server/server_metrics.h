/* server_metrics.h — what aurora-server measures, one call per event, on
 * the registry of metrics.h.  Every function is safe from any thread and a
 * no-op before server_metrics_init().
 *
 *   aurora_server_info{version}                              gauge 1
 *   aurora_agents_connected{dialect}                         gauge (legacy|v2)
 *   aurora_agent_sessions_opened_total{dialect}              counter
 *   aurora_agent_sessions_closed_total{dialect,reason}       counter
 *   aurora_agent_commands_inflight / _waiting                gauges, at agents / queued for a slot
 *   aurora_commands_total{kind,outcome}                      counter (kubectl|cloud_exec, outcome)
 *   aurora_command_duration_seconds{kind}                    histogram
 *   aurora_command_output_bytes_total{kind}                  counter, bytes streamed to clients
 *   aurora_http_requests_total{method,route,status}          counter (route = the pattern)
 *   aurora_http_request_duration_seconds{method,route}       histogram
 *   aurora_webhook_deliveries_total{source,outcome}          counter
 *   aurora_store_call_duration_seconds{op}                   histogram; op = query|exec
 *   aurora_store_errors_total{op}                            counter
 *   aurora_store_fast_failures_total                         counter, refused by breaker.h
 *   aurora_secrets_call_duration_seconds{backend,op}         histogram; op = get|put|delete
 *   aurora_secrets_errors_total{backend,op}                  counter
 *   aurora_secrets_fast_failures_total                       counter, refused by breaker.h
 *   aurora_worker_queue_depth{pool}                          gauge (collector)
 *   aurora_audit_ends_retried_total                          counter, command completions (and
 *                                                            refused commands' rows) the store
 *                                                            failed, kept to try again
 *   aurora_audit_ends_dropped_total                          counter, those given up
 *                                                            (AUDIT_ENDS_MAX waiting)
 *   process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 *   process_open_fds, process_max_fds, process_start_time_seconds   (collector, /proc/self)
 */
#ifndef AURORA_SERVER_METRICS_H
#define AURORA_SERVER_METRICS_H

#include <stddef.h>

struct workers;

void server_metrics_init(const char *version);
/* Adds the worker pools' queue depths to every scrape (NULL: none). */
void server_metrics_watch_workers(struct workers *wp);

void sm_http(const char *method, const char *route, int status, double seconds);
void sm_session_opened(const char *dialect);
void sm_session_closed(const char *dialect, const char *reason);
void sm_agent_commands(int inflight_delta, int waiting_delta);
void sm_command(const char *kind, const char *outcome, double seconds);
void sm_output_bytes(const char *kind, size_t n);
void sm_webhook(const char *source, const char *outcome);
/* A failed accept on the shared port (reason: emfile, enfile, enobufs,
 * enomem, other); the listener rests after each. */
void sm_accept_failed(const char *reason);
void sm_store_call(const char *op, double seconds, int ok);
/* A store call failed at once: the database was not answering (breaker.h). */
void sm_store_failed_fast(void);
void sm_secrets_call(const char *backend, const char *op, double seconds, int ok);
/* A secrets call failed at once: the backend was not answering (breaker.h). */
void sm_secrets_failed_fast(void);

/* Command audit completions (audit_starts.h): n the store failed to write,
 * kept to be tried again (once per failure); n dropped, too many waiting. */
void sm_audit_ends_retried(size_t n);
void sm_audit_ends_dropped(size_t n);

/* Monotonic seconds, for durations. */
double sm_now(void);

#endif
