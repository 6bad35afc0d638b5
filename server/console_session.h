/* console_session.h — the web console's cookie sessions.
 *
 *   POST   /api/console/session  {"api_key": "..."} (or the trusted backend's
 *                                X-Internal-Secret + X-User-ID [+ X-Org-ID])
 *                                → 201, Set-Cookie: aurora_session=…
 *   GET    /api/console/session  → 200 the same body (a reload gets the CSRF
 *                                token back), or 401
 *   DELETE /api/console/session  → 204, the cookie cleared, the row deleted
 *
 * The cookie (HttpOnly, SameSite=Strict, Secure but in plain-HTTP mode)
 * then stands for the API key (or backend identity) on every route that
 * takes one (auth.c); writes must also carry X-CSRF-Token and, when the
 * browser sends Origin, come from this server's origin.  Sessions end after
 * AURORA_CONSOLE_SESSION_TTL, after AURORA_CONSOLE_SESSION_IDLE unused, on
 * sign-out, and when their API key is revoked.  Failed sign-ins are limited
 * per client address (AURORA_CONSOLE_SIGNIN_LIMIT a minute, 429 beyond; past
 * a trusted proxy the client it forwarded for: client_addr.h). */
#ifndef AURORA_CONSOLE_SESSION_H
#define AURORA_CONSOLE_SESSION_H

#include "http_types.h"
#include "worker.h"

/* auth.c, for a request without an Authorization header: 0 when it carries
 * no session cookie (a untouched); 1 with a filled (org, user, key id,
 * session = 1, session_hash) when it carries a live session and, for a
 * method other than GET/HEAD/OPTIONS, passes the CSRF check; -1 with resp
 * filled otherwise (400 malformed cookie, 401 no such live session, 403
 * CSRF_FAILED, 503).  Only a request that passes counts as use of the
 * session (pushes its idle timeout back), and not a timer's refresh. */
int console_session_authenticate(worker_ctx *w, const http_request *req, auth_ctx *a,
                                 http_response *resp);

/* Whether the session whose id hashes to id_hash (auth_ctx.session_hash)
 * still lives now and speaks for org_id/user_id: not signed out, not past
 * its TTL or idle timeout, its API key not revoked nor deleted (a backend
 * session: the user still a member).  Not marked used.  1 or 0, or -1 with
 * a 503 in resp. */
int console_session_live(worker_ctx *w, const char *id_hash, const char *org_id,
                         const char *user_id, http_response *resp);

void console_session_register(void);

/* 1 when this server's cookies must be Secure (and __Host- named): unless
 * the browser talks plain HTTP to this very listener. */
int console_cookie_secure(const worker_ctx *w);

#endif
