/* conn_admission.h — connection admission (admission.h) on the server's
 * lws context: which callbacks feed it, the once-a-second tick (pending
 * handshakes past their deadline dropped, refusals logged), and memory
 * given back after a storm.  Loop thread only; one per process. */
#ifndef AURORA_CONN_ADMISSION_H
#define AURORA_CONN_ADMISSION_H

#include <libwebsockets.h>

#include "admission.h"

/* Before the context: 0, or -1 (out of memory). */
int conn_admission_init(const admission_opts *o);
/* Once the context exists: the tick (its timer lives in the context). */
void conn_admission_start(struct lws_context *ctx);
/* Before the context is destroyed: the tick stops. */
void conn_admission_stop(void);
/* After the context is destroyed (its closing connections end their
 * handshakes meanwhile). */
void conn_admission_free(void);

/* LWS_CALLBACK_FILTER_NETWORK_CONNECTION on the main port's listener:
 * 0 to go on, 1 to close the connection before any TLS work. */
int conn_admission_filter(void);
/* LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED on the main port. */
void conn_admission_begin(struct lws *wsi);
/* The connection's first request is in, or it is gone. */
void conn_admission_over(struct lws *wsi);

#endif
