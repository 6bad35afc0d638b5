/* tls_resume.c — the agent's last TLS session, offered again (see
 * tls_resume.h).  Runs on the lws service thread only. */
#include "tls_resume.h"

static SSL_SESSION *g_session; /* a copy of the last session the server gave */
static int g_last_resumed;

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    /* A copy: the session passed here is the connection's own, which
     * OpenSSL marks not resumable when the connection ends without a TLS
     * shutdown (the server died: exactly when it is needed). */
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (copy) {
        SSL_SESSION_free(g_session);
        g_session = copy;
    }
    return 0; /* OpenSSL keeps its own reference */
}

static void on_info(const SSL *cssl, int where, int ret)
{
    (void)ret;
    SSL *ssl = (SSL *)cssl;
    if ((where & SSL_CB_HANDSHAKE_START) && g_session) {
        /* a copy again: a handshake that fails marks the offered session
         * not resumable, and the next attempt should still offer it */
        SSL_SESSION *offer = SSL_SESSION_dup(g_session);
        if (offer) {
            SSL_set_session(ssl, offer);
            SSL_SESSION_free(offer);
        }
    } else if (where & SSL_CB_HANDSHAKE_DONE) {
        g_last_resumed = SSL_session_reused(ssl);
    }
}

void tls_resume_attach(SSL_CTX *ctx)
{
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    SSL_CTX_set_info_callback(ctx, on_info);
}

int tls_resume_last_resumed(void) { return g_last_resumed; }

void tls_resume_forget(void)
{
    SSL_SESSION_free(g_session);
    g_session = NULL;
}
