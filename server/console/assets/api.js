// api.js — the console's only way to the server: the documented JSON API
// (docs/openapi.json), authenticated by the session cookie
// (same-origin, HttpOnly: this code never sees it) and, on every write, the
// session's CSRF token in X-CSRF-Token (docs/api.md, Console sessions).

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const msg = (body && (body.error || body.message)) || fallback || `HTTP ${status}`;
    super(msg);
    this.status = status;
    this.body = body || null;
    this.code = (body && (body.error_code || body.code)) || null;
  }
}

export const session = { csrf: null, user_id: null, org_id: null, expires_at: null, idle_expires_at: null };

// Called when any request answers 401: the session ended (expired, signed out
// elsewhere, API key revoked). app.js sends the reader to the sign-in page.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

function headersFor(method, body, extra) {
  const hd = { Accept: 'application/json', ...(extra || {}) };
  if (body !== undefined) hd['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) hd['X-CSRF-Token'] = session.csrf;
  return hd;
}

async function readBody(resp) {
  const text = await resp.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch (_) { return { error: text.slice(0, 300) }; }
}

// api('GET', '/api/kubectl/connections') → parsed JSON; throws ApiError.
// opts.background: a refresh made by a timer, not by the reader; sent with
// X-Aurora-Poll: 1 so that it does not keep the session's idle timeout away.
export async function api(method, path, body, opts = {}) {
  let resp;
  const extra = opts.background ? { ...(opts.headers || {}), 'X-Aurora-Poll': '1' } : opts.headers;
  try {
    resp = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: headersFor(method, body, extra),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: opts.signal,
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, null, 'The server could not be reached. Check your connection and try again.');
  }
  const data = await readBody(resp);
  if (resp.status === 401 && !opts.noAuthRedirect) onUnauthorized();
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const get = (p, o) => api('GET', p, undefined, o);
export const post = (p, b, o) => api('POST', p, b === undefined ? {} : b, o);
export const del = (p, o) => api('DELETE', p, undefined, o);
export const put = (p, b, o) => api('PUT', p, b, o);

// POST with a raw body (the GCP service-account key file as uploaded).
export async function postRaw(path, text) {
  const resp = await fetch(path, {
    method: 'POST', credentials: 'same-origin',
    headers: headersFor('POST', text, {}), body: text,
  });
  const data = await readBody(resp);
  if (resp.status === 401) onUnauthorized();
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// ---- sessions ----------------------------------------------------------------
function keep(s) {
  session.csrf = s.csrf_token || null;
  session.user_id = s.user_id || null;
  session.org_id = s.org_id || null;
  session.expires_at = s.expires_at || null;
  session.idle_expires_at = s.idle_expires_at || null;
  return s;
}

export async function loadSession() {
  try {
    return keep(await api('GET', '/api/console/session', undefined, { noAuthRedirect: true }));
  } catch (e) {
    if (e.status === 401) { keep({}); return null; }
    throw e;
  }
}

// The session's state again, as a timer asks for it (X-Aurora-Poll: not
// use); a session that ended answers 401, which sends the page to sign-in.
export async function checkSession() {
  return keep(await api('GET', '/api/console/session', undefined, { background: true }));
}

export async function signIn(apiKey) {
  return keep(await api('POST', '/api/console/session', { api_key: apiKey }, { noAuthRedirect: true }));
}

// Throws when the server did not say the session ended (503, the network):
// the cookie may still open the console, so the page must not act signed out.
export async function signOut() {
  await api('DELETE', '/api/console/session', undefined, { noAuthRedirect: true });
  keep({});
}

// ---- streaming (SSE over a POST) ---------------------------------------------
// EventSource cannot POST, so the stream is read from fetch's body:
// `event: NAME\ndata: JSON\n\n` blocks (docs/api.md, Running kubectl).
// onEvent(name, data) is called per event. Resolves when the stream ends.
export async function streamPost(path, body, onEvent, signal) {
  const resp = await fetch(path, {
    method: 'POST', credentials: 'same-origin', signal,
    headers: headersFor('POST', body, { Accept: 'text/event-stream' }),
    body: JSON.stringify(body),
  });
  const type = resp.headers.get('Content-Type') || '';
  if (!type.includes('text/event-stream')) {
    const data = await readBody(resp);
    if (resp.status === 401) onUnauthorized();
    if (!resp.ok) throw new ApiError(resp.status, data);
    // a JSON answer (should not happen with Accept: text/event-stream): one result
    onEvent('result', data || {});
    return;
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder('utf-8');
  let buf = '';
  const flush = (block) => {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const k = i < 0 ? line : line.slice(0, i);
      let v = i < 0 ? '' : line.slice(i + 1);
      if (v.startsWith(' ')) v = v.slice(1);
      if (k === 'event') name = v;
      else if (k === 'data') data.push(v);
    }
    if (!data.length) return;
    let parsed;
    try { parsed = JSON.parse(data.join('\n')); } catch (_) { parsed = { text: data.join('\n') }; }
    onEvent(name, parsed);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    buf = buf.replace(/\r\n/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      flush(buf.slice(0, i));
      buf = buf.slice(i + 2);
    }
  }
  buf += decoder.decode();
  if (buf.trim()) flush(buf);
}
