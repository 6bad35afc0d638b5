// app.js — the console's shell: session check, sign-in, navigation and the
// history-API router. Every page lives in its own module and exports
// render(main, params, query) → optional cleanup function (timers, streams).
import { h, clear, field, errorBox, announce } from './dom.js';
import { loadSession, checkSession, signIn, signOut, session, setUnauthorizedHandler } from './api.js';
import * as connectors from './connectors.js';
import * as clusters from './clusters.js';
import * as run from './run.js';
import * as audit from './audit.js';
import * as incidents from './incidents.js';

const routes = [
  { re: /^\/(?:connectors)?$/, nav: 'connectors', page: connectors.render, title: 'Connectors' },
  { re: /^\/clusters$/, nav: 'clusters', page: clusters.renderList, title: 'Kubernetes' },
  { re: /^\/clusters\/([^/]+)$/, nav: 'clusters', page: clusters.renderDetail, title: 'Cluster' },
  { re: /^\/run$/, nav: 'run', page: run.render, title: 'Run' },
  { re: /^\/audit$/, nav: 'audit', page: audit.render, title: 'Audit' },
  { re: /^\/incidents$/, nav: 'incidents', page: incidents.renderList, title: 'Incidents' },
  { re: /^\/incidents\/([^/]+)$/, nav: 'incidents', page: incidents.renderDetail, title: 'Incident' },
];

const main = document.getElementById('main');
let cleanup = null;

export function navigate(path, opts = {}) {
  if (opts.replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route();
}

function setChrome(signedIn) {
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('account').hidden = !signedIn;
  document.getElementById('who').textContent = signedIn ? `${session.user_id} · ${session.org_id}` : '';
}

function focusHeading() {
  const h1 = main.querySelector('h1');
  if (h1) {
    h1.setAttribute('tabindex', '-1');
    h1.focus({ preventScroll: false });
  }
}

async function route() {
  if (cleanup) { try { cleanup(); } catch (_) { /* page already gone */ } cleanup = null; }
  const path = location.pathname.replace(/\/+$/, '') || '/';
  const query = new URLSearchParams(location.search);
  if (path === '/signin' || !session.csrf) {
    renderSignIn(query.get('next'), query.get('reason'));
    return;
  }
  watchSession();
  const r = routes.find((x) => x.re.test(path));
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (r && a.dataset.nav === r.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  clear(main);
  if (!r) {
    document.title = 'Not found · Aurora';
    main.append(h('h1', {}, 'Page not found'),
      h('p', {}, 'Nothing lives at this address. ', h('a', { href: '/connectors' }, 'Go to Connectors'), '.'));
    focusHeading();
    return;
  }
  document.title = `${r.title} · Aurora`;
  const params = path.match(r.re).slice(1).map(decodeURIComponent);
  try {
    cleanup = r.page(main, params, query) || null;
  } catch (e) {
    main.append(errorBox(e, 'This page failed to load.'));
  }
  focusHeading();
}

// The Run, Audit and Incidents pages make no request once drawn: left open,
// they would show command output and audit rows after the session ended
// (idle timeout, TTL, signed out elsewhere, key revoked) to whoever comes to
// the unattended screen. So at the session's end as the server last gave it,
// and at least every CHECK_MAX_MS, the page asks the server (X-Aurora-Poll:
// the check is not use); an ended session answers 401 and the page goes to
// sign-in. A clock running ahead of the server's would find the session
// alive at each check: the wait then doubles instead of asking again and again.
const CHECK_MIN_MS = 5000;
const CHECK_MAX_MS = 5 * 60 * 1000;
let sessionTimer = 0;
let lastWait = { end: NaN, ms: 0 };
function watchSession(afterCheck = false) {
  clearTimeout(sessionTimer);
  if (!session.csrf) return;
  const end = Math.min(Date.parse(session.expires_at), Date.parse(session.idle_expires_at));
  let ms = Number.isNaN(end) ? CHECK_MAX_MS : end - Date.now() + 1000;
  if (afterCheck && end === lastWait.end) ms = Math.max(ms, 2 * lastWait.ms);
  ms = Math.min(CHECK_MAX_MS, Math.max(CHECK_MIN_MS, ms));
  lastWait = { end, ms };
  sessionTimer = setTimeout(async () => {
    if (!session.csrf) return;
    try {
      await checkSession();
    } catch (e) {
      if (e.status === 401) return; // the page is on sign-in already
    }
    watchSession(true);
  }, ms);
}

// Where to go after signing in: ?next= is whatever a link put there, so it
// is resolved the way the browser would ('/\evil.example', '//evil.example'
// and 'https:evil.example' all leave the origin) and kept only when it stays
// on this origin and is not the sign-in page again.
function safeNext(next) {
  const fallback = '/connectors';
  if (!next) return fallback;
  let u;
  try {
    u = new URL(next, location.origin);
  } catch (e) {
    return fallback;
  }
  // A path that begins '//' ('/.//evil.example' resolves to it) would be read
  // by history.replaceState as another host: refused there with a
  // SecurityError, which left the page stuck on sign-in.
  if (u.origin !== location.origin || u.pathname.startsWith('//') ||
      u.pathname === '/signin' || u.pathname.startsWith('/signin/')) {
    return fallback;
  }
  return u.pathname + u.search + u.hash;
}

function renderSignIn(nextArg, reason) {
  setChrome(false);
  let next = nextArg;
  if (location.pathname !== '/signin') {
    const here = location.pathname + location.search;
    next = here;
    history.replaceState(null, '', '/signin?next=' + encodeURIComponent(here) +
      (reason ? '&reason=' + encodeURIComponent(reason) : ''));
  }
  document.title = 'Sign in · Aurora';
  clear(main);
  const key = h('input', { type: 'password', name: 'api_key', autocomplete: 'off', required: true,
    spellcheck: 'false', autocapitalize: 'off' });
  const err = h('div', { class: 'form-error' });
  const btn = h('button', { type: 'submit', class: 'btn primary' }, 'Sign in');
  const form = h('form', { class: 'card signin', novalidate: true },
    field('API key', key, ['A key from ', h('code', {}, 'aurora-server admin create-key'), ' (or the one ', h('code', {}, 'make run'), ' printed).']),
    err, btn);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(err);
    if (!key.value.trim()) {
      err.append(errorBox(new Error('Enter your API key.')));
      key.focus();
      return;
    }
    btn.disabled = true;
    btn.textContent = 'Signing in…';
    try {
      await signIn(key.value.trim());
      key.value = '';
      setChrome(true);
      announce('Signed in');
      navigate(safeNext(next), { replace: true });
    } catch (e) {
      let msg = e;
      if (e.status === 401) msg = Object.assign(new Error('That API key was not accepted.'), { code: e.code });
      else if (e.status === 429) msg = Object.assign(new Error('Too many sign-in attempts. Wait a minute and try again.'), { code: e.code });
      err.append(errorBox(msg));
      key.focus();
    } finally {
      btn.disabled = false;
      btn.textContent = 'Sign in';
    }
  });
  main.append(h('div', { class: 'signin-wrap' },
    h('h1', {}, 'Sign in to Aurora'),
    reason === 'expired' ? h('p', { class: 'alert alert-info', role: 'status' }, 'Your session ended. Sign in again.') : null,
    form));
  key.focus();
}

// Links inside the console navigate without a reload.
document.addEventListener('click', (ev) => {
  const a = ev.target.closest && ev.target.closest('a');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  if (a.target || a.hasAttribute('download') || (a.getAttribute('href') || '').startsWith('#')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  if (!/^\/(connectors|clusters|run|audit|incidents|signin)?(\/|$)/.test(url.pathname)) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', route);

let signOutError = null;
document.getElementById('signout').addEventListener('click', async (ev) => {
  const btn = ev.currentTarget;
  if (signOutError) { signOutError.remove(); signOutError = null; }
  btn.disabled = true;
  try {
    await signOut();
  } catch (e) {
    // The session may well be alive: showing the sign-in page now would let
    // the reader walk away from a console the next person can open.
    signOutError = errorBox(e, 'Sign-out failed: you are still signed in. Try again.');
    main.prepend(signOutError);
    announce('Sign-out failed: you are still signed in');
    return;
  } finally {
    btn.disabled = false;
  }
  setChrome(false);
  navigate('/signin', { replace: true });
  announce('Signed out');
});

setUnauthorizedHandler(() => {
  if (!session.csrf) return;
  session.csrf = null;
  // stop the page's timers and streams and close its dialogs first
  if (cleanup) { try { cleanup(); } catch (_) { /* page already gone */ } cleanup = null; }
  setChrome(false);
  renderSignIn(location.pathname + location.search, 'expired');
});

// An OAuth popup comes back to FRONTEND_URL/connectors?provider=X&status=Y:
// hand the result to the console window that opened it and close, before
// anything else (it needs no session of its own). That URL is the one page
// the server sends without Cross-Origin-Opener-Policy (with it, the popup
// back from the provider would be cut off from its opener), so when no
// page of this console opened this window (a link, the blocked-popup
// fallback, another site's window.open) it moves to /connectors, which has
// the policy: whatever opened it then loses its hold on this window. The
// result goes along in this tab's sessionStorage.
const OAUTH_RESULT_KEY = 'aurora-oauth-result';
function oauthPopupLanded() {
  const q = new URLSearchParams(location.search);
  if (location.pathname !== '/connectors' || !q.get('provider')) return false;
  const result = { provider: q.get('provider'), status: q.get('status') };
  let consoleOpener = false;
  try { consoleOpener = !!window.opener && !window.opener.closed && window.opener.location.origin === location.origin; } catch (_) { consoleOpener = false; }
  if (!consoleOpener) {
    try { sessionStorage.setItem(OAUTH_RESULT_KEY, JSON.stringify(result)); } catch (_) { /* no banner then */ }
    location.replace('/connectors');
    return true;
  }
  try { window.opener.postMessage({ aurora_oauth: result }, location.origin); } catch (_) { return false; }
  clear(main);
  const said = connectors.popupResultText(result);
  main.append(h('h1', {}, said ? said.text : 'Aurora'), h('p', {}, 'You can close this window.'));
  window.close();
  return true;
}

// Leaving the page (another site, a file, a reload) lets the browser keep
// this document in its back/forward cache and show it again, as it was, on
// Back: an agent token shown once, a secret typed into a form, the data of a
// session that has ended since. So the page drops what it shows as it is
// hidden, and when it is shown again it asks the server for the session
// afresh and draws the page anew.
window.addEventListener('pagehide', (ev) => {
  if (!ev.persisted) return;
  if (cleanup) { try { cleanup(); } catch (_) { /* page already gone */ } cleanup = null; }
  clear(main);
});
window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) boot();
});

async function boot() {
  if (oauthPopupLanded()) return;
  try {
    const s = await loadSession();
    setChrome(!!s);
  } catch (e) {
    clear(main);
    main.append(h('h1', {}, 'Aurora console'), errorBox(e, 'The server did not answer.'));
    return;
  }
  if (session.csrf && location.pathname === '/signin') {
    const next = new URLSearchParams(location.search).get('next');
    history.replaceState(null, '', safeNext(next));
  }
  route();
}
boot();
