// connectors.js — the Connectors page: one card per connector of
// GET /api/connectors/status with its state, and a Manage dialog per card with
// its connect flow (OAuth popup, API-key / PAT form, service-account key
// upload), the exact callback / webhook URLs of this deployment with Copy
// buttons, and disconnect / reconnect. The labels follow the connector guide.
import { h, append, fill, clear, field, copyable, badge, errorBox, announce, time, scrollTable, nextId } from './dom.js';
import { get, post, del, put, postRaw, session } from './api.js';
import { connectorState } from './states.js';

const ORIGIN = location.origin;
const userWebhook = (path) => `${ORIGIN}${path}/${encodeURIComponent(session.user_id || '{user_id}')}`;
// A webhook URL as the server gives it in the status (a path is put under
// this origin); before that, the same shape: the user, and the org that keeps
// the URL unambiguous once the user belongs to several organizations.
const serverWebhook = (url, path) => (url ? (url.startsWith('/') ? ORIGIN + url : url)
  : `${userWebhook(path)}?org_id=${encodeURIComponent(session.org_id || '{org_id}')}`);

// Order and grouping of the guide's sections.
const GROUPS = [
  ['Cloud providers', ['gcp', 'aws', 'azure', 'ovh']],
  ['Kubernetes', ['kubernetes']],
  ['Communication', ['github', 'slack', 'google_chat']],
  ['Documentation & project management', ['atlassian', 'confluence', 'jira']],
  ['Observability', ['pagerduty', 'datadog', 'grafana', 'newrelic', 'sentry', 'netdata', 'splunk']],
  ['Development', ['bitbucket']],
];

const BLURB = {
  gcp: 'Service account key or OAuth 2.0.',
  aws: 'IAM role with External ID (STS AssumeRole).',
  azure: 'Service principal or Microsoft sign-in.',
  ovh: 'OAuth 2.0, per region.',
  kubernetes: 'The kubectl agent connects outbound from your cluster.',
  github: 'GitHub App (recommended) or OAuth.',
  slack: 'OAuth 2.0 for your workspace.',
  google_chat: 'OAuth for setup, a service account for messages.',
  atlassian: 'Confluence and Jira: Atlassian Cloud OAuth or Data Center PAT.',
  confluence: 'Part of the Atlassian connection.',
  jira: 'Part of the Atlassian connection.',
  pagerduty: 'OAuth 2.0 or API token, plus a webhook.',
  datadog: 'API key + application key, plus a webhook.',
  grafana: 'Webhook contact point; no API key.',
  newrelic: 'User API key (NerdGraph), plus a webhook.',
  sentry: 'Internal Integration auth token, plus a webhook.',
  netdata: 'API token.',
  splunk: 'API token for Splunk Cloud or Enterprise.',
  bitbucket: 'OAuth consumer for Bitbucket Cloud.',
};

// What an OAuth popup's landing (/connectors?provider=X&status=Y, or the
// message the popup posts from there) may make this page say. The server
// only ever sends a connector's id with `connected` or `requested`; anyone can
// link to that URL (or send a popup there from a provider's page), so the
// words are this page's own and anything else shows nothing.
const KNOWN_CONNECTORS = new Set(GROUPS.flatMap((g) => g[1]));
const POPUP_STATUS = { connected: 'connected', requested: 'installation requested; an owner must approve it' };
export function popupResultText(r) {
  if (!r || typeof r.provider !== 'string' || typeof r.status !== 'string' ||
      !KNOWN_CONNECTORS.has(r.provider) || !Object.hasOwn(POPUP_STATUS, r.status)) return null;
  return { text: `${r.provider}: ${POPUP_STATUS[r.status]}`, ok: r.status === 'connected' };
}

const WAITS_FOR_WEBHOOK = new Set(['grafana']);
const WEBHOOK_POLL_MS = 2000;

let statusCache = {};
let clusterCount = { total: 0, connected: 0 };

// The result an OAuth landing without a console opener left for this tab
// as it moved here (app.js), read once.
function landedResult() {
  try {
    const v = sessionStorage.getItem('aurora-oauth-result');
    if (v === null) return null;
    sessionStorage.removeItem('aurora-oauth-result');
    const r = JSON.parse(v);
    return r && typeof r === 'object' ? r : null;
  } catch (_) { return null; }
}

export function render(main, _params, query) {
  const landed = landedResult();
  const popupResult = query.get('provider') ? { provider: query.get('provider'), status: query.get('status') } : landed;
  const banner = h('div', { id: 'connectors-banner' });
  const grid = h('div', { class: 'groups' }, h('p', { class: 'loading' }, 'Loading connectors…'));
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Connectors')),
    h('p', { class: 'lead' }, 'Connect cloud providers, chat and observability tools. Open a card with Manage to connect, copy its URLs or disconnect.'),
    banner, grid);
  if (popupResult) {
    const said = popupResultText(popupResult);
    if (said) banner.append(h('div', { class: `alert ${said.ok ? 'alert-ok' : 'alert-info'}`, role: 'status' }, said.text));
    if (location.search) history.replaceState(null, '', '/connectors');
  }
  let alive = true;
  // background: a timer's refresh, not the reader's (X-Aurora-Poll)
  const refresh = async (background = false) => {
    const o = { background };
    try {
      const [st, conns] = await Promise.all([
        get('/api/connectors/status', o),
        get('/api/kubectl/connections', o).catch(() => ({ connections: [] })),
      ]);
      if (!alive) return;
      statusCache = st.connectors || {};
      const list = conns.connections || [];
      clusterCount = { total: list.length, connected: list.filter((c) => c.connected).length };
      drawGrid(grid, refresh);
      refreshOpenDialog();
    } catch (e) {
      if (!alive) return;
      clear(grid).append(errorBox(e, 'Could not load the connectors.'));
    }
  };
  const onMessage = (ev) => {
    if (ev.origin !== ORIGIN || !ev.data || !ev.data.aurora_oauth) return;
    const said = popupResultText(ev.data.aurora_oauth);
    if (said) clear(banner).append(h('div', { class: `alert ${said.ok ? 'alert-ok' : 'alert-info'}`, role: 'status' }, said.text));
    refresh();
  };
  window.addEventListener('message', onMessage);
  refresh();
  return () => { alive = false; window.removeEventListener('message', onMessage); closeDialog(); };
}

function drawGrid(grid, refresh) {
  clear(grid);
  for (const [title, ids] of GROUPS) {
    const cards = ids.filter((id) => id === 'kubernetes' || statusCache[id]).map((id) => card(id, refresh));
    if (!cards.length) continue;
    const hid = nextId('grp');
    grid.append(h('section', { class: 'group', 'aria-labelledby': hid },
      h('h2', { id: hid }, title), h('ul', { class: 'cards' }, cards)));
  }
  // connectors the server knows and this page does not group yet
  const known = new Set(GROUPS.flatMap((g) => g[1]));
  const extra = Object.keys(statusCache).filter((id) => !known.has(id));
  if (extra.length) {
    grid.append(h('section', { class: 'group' }, h('h2', {}, 'Other'),
      h('ul', { class: 'cards' }, extra.map((id) => card(id, refresh)))));
  }
}

function kubeState() {
  if (clusterCount.connected) return { label: 'Connected', kind: 'ok' };
  return { label: 'Not connected', kind: 'neutral' };
}

function card(id, refresh) {
  const s = id === 'kubernetes' ? null : statusCache[id];
  const name = id === 'kubernetes' ? 'Kubernetes' : s.name || id;
  const st = id === 'kubernetes' ? kubeState() : connectorState(id, s);
  const hid = `card-${id}-title`;
  const summary = id === 'kubernetes'
    ? `${clusterCount.connected} of ${clusterCount.total} cluster${clusterCount.total === 1 ? '' : 's'} connected`
    : accountLine(id, s);
  const actions = id === 'kubernetes'
    ? [h('a', { class: 'btn primary', href: '/clusters?add=1', 'aria-describedby': hid }, 'Add Cluster'),
       h('a', { class: 'btn', href: '/clusters', 'aria-describedby': hid }, 'Manage')]
    : [h('button', { type: 'button', class: 'btn', 'aria-describedby': hid,
        onclick: (ev) => openDialog(id, refresh, ev.currentTarget) }, 'Manage')];
  return h('li', { class: 'card connector', 'data-connector': id, 'aria-labelledby': hid },
    h('div', { class: 'card-head' },
      h('h3', { id: hid }, name),
      h('span', { class: 'state', 'data-state': st.label }, badge(st.label, st.kind))),
    h('p', { class: 'muted small' }, BLURB[id] || ''),
    summary ? h('p', { class: 'account-line' }, summary) : null,
    h('div', { class: 'card-actions' }, actions));
}

function accountLine(id, s) {
  if (!s || !s.connected) return null;
  const bits = [];
  const who = s.account || s.email || s.team_name || s.login || s.oauth_login || s.org_slug || s.site_url ||
    s.username || s.space_display_name || s.instance_url;
  if (who) bits.push(String(who));
  if (s.auth) bits.push(String(s.auth).replace(/_/g, ' '));
  if (id === 'github' && s.installations) bits.push(`${s.installations} installation${s.installations === 1 ? '' : 's'}`);
  return bits.join(' · ');
}

// Appends what is there: a section a connector does not have is null.
function add(el, ...children) { append(el, children); }

// ---- the Manage dialog --------------------------------------------------------
let dlg = null;          // { el, id, body, refresh, opener }

function closeDialog() {
  if (dlg && dlg.el.open) dlg.el.close();
}

function openDialog(id, refresh, opener) {
  closeDialog();
  const titleId = nextId('dlg');
  const body = h('div', { class: 'dialog-body' });
  const st = connectorState(id, statusCache[id]);
  const stateEl = h('span', { class: 'state', 'data-state': st.label }, badge(st.label, st.kind));
  const el = h('dialog', { class: 'dialog', 'aria-labelledby': titleId, 'data-dialog': id },
    h('div', { class: 'dialog-head' },
      h('h2', { id: titleId }, statusCache[id].name || id), stateEl,
      h('button', { type: 'button', class: 'btn small close', 'aria-label': 'Close', onclick: () => el.close() }, 'Close')),
    body);
  // A webhook connector connects itself when its first delivery arrives
  // (Grafana's "Test" button): while its dialog is open and it waits for
  // that, the status is polled so the dialog flips without a reload.
  const poll = setInterval(() => {
    if (dlg && dlg.el === el && WAITS_FOR_WEBHOOK.has(id) && connectorState(id, statusCache[id]).label === 'Not connected') {
      refresh(true);
    }
  }, WEBHOOK_POLL_MS);
  el.addEventListener('close', () => {
    clearInterval(poll);
    el.remove();
    if (dlg && dlg.el === el) {
      if (dlg.opener && dlg.opener.isConnected) dlg.opener.focus();
      else {
        const again = document.querySelector(`[data-connector="${id}"] button`);
        if (again) again.focus();
      }
      dlg = null;
    }
  });
  document.body.append(el);
  dlg = { el, id, body, refresh, opener, stateEl };
  drawDialog();
  el.showModal();
}

// The status was reloaded (after an OAuth popup, a connect, a disconnect):
// the open dialog is redrawn only when what it shows changed, so a refresh
// that changes nothing never pulls a control from under the reader.
function dialogKey(id) {
  const ids = ['atlassian', 'confluence', 'jira'].includes(id) ? ['atlassian', 'confluence', 'jira'] : [id];
  // what decides the dialog's layout, not every detail (GCP's status also
  // carries the projects, which the dialog updates in place)
  const pick = (x) => {
    const v = statusCache[x] || {};
    return [connectorState(x, v).label, v.connected, v.auth, v.account, v.status, v.enabled, v.installations, v.oauth_connected, v.region,
      v.channel_id]; // Slack's facts name the channel chosen in the dialog
  };
  return JSON.stringify(ids.map(pick));
}

function refreshOpenDialog() {
  if (!dlg) return;
  const st = connectorState(dlg.id, statusCache[dlg.id]);
  clear(dlg.stateEl).append(badge(st.label, st.kind));
  dlg.stateEl.dataset.state = st.label;
  if (dialogKey(dlg.id) !== dlg.drawnKey) {
    drawDialog();
    // the control that was used may be gone: keep keyboard focus in the dialog
    if (!dlg.el.contains(document.activeElement) || document.activeElement === document.body) {
      const title = dlg.el.querySelector('h2');
      title.setAttribute('tabindex', '-1');
      title.focus();
    }
  }
}

function drawDialog() {
  const { id, body } = dlg;
  const s = statusCache[id] || {};
  clear(body);
  dlg.drawnKey = dialogKey(id);
  const flows = FLOWS[id] || genericFlow;
  flows(body, s, id);
}

async function reload() {
  if (dlg) await dlg.refresh();
}

// Runs an action from a dialog: busy state on the button, errors shown in place.
function action(btn, out, fn, doneText) {
  return async (ev) => {
    if (ev) ev.preventDefault();
    clear(out);
    const label = btn.textContent;
    btn.disabled = true;
    btn.textContent = label + '…';
    try {
      const r = await fn();
      if (doneText) announce(doneText);
      await reload();
      return r;
    } catch (e) {
      out.append(errorBox(e));
      return null;
    } finally {
      btn.disabled = false;
      btn.textContent = label;
    }
  };
}

function section(title, ...children) {
  const hid = nextId('sec');
  return h('section', { class: 'dsection', 'aria-labelledby': hid }, h('h3', { id: hid }, title), children);
}

function disconnectSection(id, s, opts = {}) {
  if (!s.connected && !opts.always) return null;
  const out = h('div', {});
  const btn = h('button', { type: 'button', class: 'btn danger' }, opts.label || 'Disconnect');
  const confirmBtn = h('button', { type: 'button', class: 'btn danger', hidden: true }, `Yes, disconnect ${s.name || id}`);
  const cancel = h('button', { type: 'button', class: 'btn', hidden: true }, 'Cancel');
  btn.addEventListener('click', () => { btn.hidden = true; confirmBtn.hidden = false; cancel.hidden = false; confirmBtn.focus(); });
  cancel.addEventListener('click', () => { btn.hidden = false; confirmBtn.hidden = true; cancel.hidden = true; btn.focus(); });
  confirmBtn.addEventListener('click', action(confirmBtn, out,
    () => (opts.run ? opts.run() : del(`/api/connectors/${encodeURIComponent(id)}`)), `${s.name || id} disconnected`));
  return section('Disconnect',
    h('p', { class: 'muted small' }, opts.note || 'Removes the stored credentials of this connection. You can connect again at any time.'),
    h('div', { class: 'row' }, btn, confirmBtn, cancel), out);
}

// An OAuth popup to one of this server's login routes (the session cookie
// goes with it: same site). The popup comes back to /connectors?provider=…,
// which posts a message here; the status is also polled while it is open.
function oauthButton(label, urlFn, out) {
  const btn = h('button', { type: 'button', class: 'btn primary' }, label);
  btn.addEventListener('click', () => {
    clear(out);
    const url = typeof urlFn === 'function' ? urlFn() : urlFn;
    const w = window.open(url, 'aurora-oauth', 'popup,width=640,height=760');
    if (!w) {
      out.append(h('p', { class: 'alert alert-info' }, 'The popup was blocked. ',
        h('a', { href: url, target: '_blank', rel: 'noopener' }, 'Open the sign-in page'), ' instead.'));
      return;
    }
    out.append(h('p', { class: 'muted small', role: 'status' }, 'Finish in the popup window…'));
    const timer = setInterval(() => {
      if (w.closed) {
        clearInterval(timer);
        clear(out);
        reload();
        return;
      }
      // The login route refused before sending the browser to the provider
      // (e.g. 503 "… OAuth credentials not configured"): that answer is a
      // JSON page of this origin in the popup. Show it here and close it.
      // (The provider's own pages are another origin: reading them throws.)
      let doc = null;
      try { doc = w.location.origin === location.origin ? w.document : null; } catch (_) { doc = null; }
      if (!doc || doc.readyState !== 'complete' || !/json/.test(doc.contentType || '')) return;
      const text = (doc.querySelector('pre') || doc.body || {}).textContent || '';
      let body = null;
      try { body = JSON.parse(text); } catch (_) { body = null; }
      clearInterval(timer);
      w.close();
      clear(out).append(errorBox(Object.assign(new Error((body && body.error) || 'The sign-in could not start.'),
        { code: body && body.error_code })));
    }, 250);
  });
  return btn;
}

// "Select Service Account authentication": a radio group that shows one flow.
function authChoice(name, choices, initial) {
  const panels = choices.map(([, , panel]) => panel);
  const radios = choices.map(([value, label], i) => {
    const input = h('input', { type: 'radio', name, value, checked: value === initial });
    input.addEventListener('change', () => { panels.forEach((p, j) => { p.hidden = j !== i; }); });
    return h('label', { class: 'check' }, input, ' ', label);
  });
  panels.forEach((p, j) => { p.hidden = choices[j][0] !== initial; });
  return [h('fieldset', { class: 'auth-choice' }, h('legend', {}, 'Authentication'), radios), panels];
}

function urls(...items) {
  const list = items.filter(Boolean);
  if (!list.length) return null;
  return section('URLs for this deployment', list.map(([label, value]) => copyable(label, value)));
}

function form(fields, submitLabel, onSubmit, out) {
  const btn = h('button', { type: 'submit', class: 'btn primary' }, submitLabel);
  const f = h('form', { class: 'stack', novalidate: true }, fields, h('div', { class: 'row' }, btn));
  f.addEventListener('submit', action(btn, out, async () => {
    for (const el of f.querySelectorAll('[required]')) {
      if (!el.value.trim()) {
        el.focus();
        throw new Error(`${el.labels && el.labels[0] ? el.labels[0].textContent : el.name} is required.`);
      }
    }
    const r = await onSubmit(f);
    announce(`${submitLabel}: done`);
    return r;
  }));
  return f;
}

const input = (name, attrs = {}) => h('input', { name, type: 'text', autocomplete: 'off', spellcheck: 'false', ...attrs });
const secret = (name, attrs = {}) => input(name, { type: 'password', ...attrs });
const select = (name, options, value) => h('select', { name },
  options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
const val = (f, name) => { const el = f.elements[name]; return el ? el.value.trim() : ''; };

function connectedFacts(s, keys) {
  const rows = keys.filter(([k]) => s[k] !== undefined && s[k] !== null && s[k] !== '')
    .map(([k, label]) => [h('dt', {}, label), h('dd', {}, /_at$/.test(k) ? time(s[k]) : String(s[k]))]);
  return rows.length ? h('dl', { class: 'facts' }, rows) : null;
}

function genericFlow(body, s, id) {
  add(body, connectedFacts(s, [['account', 'Account'], ['connected_at', 'Connected']]) || '',
    disconnectSection(id, s) || h('p', {}, 'Not connected.'));
}

// ---- per-connector flows ------------------------------------------------------
// The redirect URIs shown are the server's (its status's redirect_uri, from
// GCP_REDIRECT_URI, SLACK_REDIRECT_URI, …): what the provider must have
// registered. This page's origin is only the fallback: the API may be served
// from another host.
const FLOWS = {
  gcp(body, s) {
    const out = h('div', {});
    if (s.connected) {
      add(body, connectedFacts(s, [['account', 'Account'], ['auth', 'Authentication'],
        ['default_project', 'Key default project'], ['connected_at', 'Connected']]));
      add(body, gcpProjects());
    }
    // Option A: service account key
    const file = h('input', { type: 'file', name: 'keyfile', accept: 'application/json,.json' });
    const paste = h('textarea', { name: 'keytext', rows: '5', spellcheck: 'false',
      placeholder: '{"type": "service_account", …}' });
    const saOut = h('div', {});
    const saForm = form([
      field('Service account key file (JSON)', file),
      field('Or paste the JSON key file contents', paste),
    ], 'Connect with service account', async () => {
      let text = paste.value.trim();
      if (!text && file.files && file.files[0]) text = (await file.files[0].text()).trim();
      if (!text) throw new Error('Upload or paste the service account JSON key.');
      const r = await postRaw('/gcp/service-account', text);
      paste.value = '';
      file.value = '';
      return r;
    }, saOut);
    const saSection = section(s.connected ? 'Replace the credentials: service account key' : 'Option A: Service Account Key',
      h('p', { class: 'muted small' }, 'Upload the JSON key: no consent screen, no redirect URI. Aurora validates the key, lists accessible projects, and connects.'),
      saForm, saOut);
    const oauthSection = section('Option B: OAuth 2.0',
      h('p', { class: 'muted small' }, 'Interactive consent with your Google account.'),
      h('div', { class: 'row' }, oauthButton('Connect with Google', '/login', out)), out,
      copyable('Authorized redirect URI (GCP_REDIRECT_URI)', s.redirect_uri || `${ORIGIN}/callback`));
    add(body, authChoice('gcp-auth', [['sa', 'Service Account', saSection], ['oauth', 'OAuth 2.0', oauthSection]],
      s.auth === 'oauth' ? 'oauth' : 'sa'));
    add(body, disconnectSection('gcp', s));
  },

  aws(body, s) {
    const out = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['account', 'Role ARN'], ['account_id', 'Account ID'],
      ['region', 'Region'], ['assumed_role_arn', 'Assumed role'], ['connected_at', 'Connected']]));
    const onboarding = h('div', {}, h('p', { class: 'loading' }, 'Loading onboarding details…'));
    get('/aws/onboarding').then((o) => {
      fill(clear(onboarding), 
        copyable("Aurora's AWS Account ID", String(o.aurora_account_id || ''), { testid: 'aws-account-id' }),
        copyable('External ID', String(o.external_id || ''), { testid: 'aws-external-id' }),
        o.role_name ? copyable('Role name', String(o.role_name)) : null,
        copyable('Trust policy', typeof o.trust_policy === 'string' ? o.trust_policy : JSON.stringify(o.trust_policy, null, 2),
          { multiline: true, testid: 'aws-trust-policy' }));
    }).catch((e) => clear(onboarding).append(errorBox(e)));
    add(body, section('1. Create the IAM role in your account',
      h('p', { class: 'muted small' }, 'IAM > Roles > Create role > Another AWS account: enter Aurora\'s account ID, check Require external ID, attach ReadOnlyAccess, name it AuroraRole.'),
      onboarding));
    add(body, section(s.connected ? 'Reconnect with another role' : '2. Connect the role',
      form([field('Role ARN', input('role_arn', { required: true, placeholder: 'arn:aws:iam::123456789012:role/AuroraRole' })),
        field('Region', input('region', { placeholder: 'us-east-1' }))], 'Connect',
      (f) => post('/aws/connect', { role_arn: val(f, 'role_arn'), ...(val(f, 'region') ? { region: val(f, 'region') } : {}) }), out), out));
    add(body, disconnectSection('aws', s));
  },

  azure(body, s) {
    const out = h('div', {});
    const oOut = h('div', {});
    // the account is the tenant for a service principal but the user for a
    // Microsoft sign-in: the tenant and the user are shown by their own fields
    if (s.connected) add(body, connectedFacts(s, [['tenant_id', 'Tenant'], ['user', 'Signed in as'], ['auth', 'Authentication'],
      ['client_id', 'Client ID'], ['default_subscription_id', 'Default subscription'], ['connected_at', 'Connected']]));
    add(body, section('Service principal',
      form([field('Directory (tenant) ID', input('tenant_id', { required: true })),
        field('Application (client) ID', input('client_id', { required: true })),
        field('Client secret', secret('client_secret', { required: true })),
        field('Subscription ID (optional)', input('subscription_id'))], 'Connect',
      (f) => post('/azure/connect', { tenant_id: val(f, 'tenant_id'), client_id: val(f, 'client_id'),
        client_secret: val(f, 'client_secret'), ...(val(f, 'subscription_id') ? { subscription_id: val(f, 'subscription_id') } : {}) }), out), out));
    add(body, section('Or sign in with Microsoft',
      h('div', { class: 'row' }, oauthButton('Sign in with Microsoft', '/azure/login', oOut)), oOut,
      copyable('Redirect URI (Web)', s.redirect_uri || `${ORIGIN}/azure/callback`)));
    add(body, disconnectSection('azure', s));
  },

  ovh(body, s) {
    if (s.enabled === false) {
      add(body, h('p', { class: 'alert alert-info' }, 'OVH connector not enabled: set NEXT_PUBLIC_ENABLE_OVH=true and restart Aurora.'));
      add(body, disconnectSection('ovh', s));
      return;
    }
    const out = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['account', 'Account'], ['region', 'Region'], ['connected_at', 'Connected']]));
    const region = select('region', [['eu', 'Europe (EU)'], ['ca', 'Canada (CA)'], ['us', 'United States (US)']], s.region || 'eu');
    // the chosen region's OVH_<REGION>_REDIRECT_URI, as the server has it
    const callback = h('div', {});
    const drawCallback = () => fill(clear(callback), copyable('Callback URL (HTTPS only)',
      (s.redirect_uris || {})[region.value] || `${ORIGIN}/ovh_api/ovh/oauth2/callback`));
    region.addEventListener('change', drawCallback);
    drawCallback();
    add(body, section('Connect with OVH', field('Region', region),
      h('div', { class: 'row' }, oauthButton('Connect with OVH', () => `/ovh_api/ovh/oauth2/initiate?region=${encodeURIComponent(region.value)}`, out)), out,
      callback));
    add(body, disconnectSection('ovh', s));
  },

  github(body, s) {
    const out = h('div', {});
    const actions = h('div', { class: 'row' }, h('p', { class: 'loading' }, 'Loading…'));
    // the App's Setup and Webhook URLs as the server has them configured
    // (GITHUB_APP_SETUP_URL, GITHUB_APP_WEBHOOK_URL), once /github/status says
    const urlBox = h('div', {});
    const drawUrls = (app) => fill(clear(urlBox), urls(['Webhook URL', app.webhook_url || `${ORIGIN}/github/webhook`],
      ['Setup URL', app.setup_url || `${ORIGIN}/github/app/install/callback`],
      ['Callback URL', s.redirect_uri || `${ORIGIN}/github/callback`]));
    drawUrls({});
    get('/github/status').then((g) => {
      drawUrls(g.app || {});
      clear(actions);
      for (const a of g.actions || []) {
        const path = a.action === 'app_install' ? '/github/app/install' : '/github/login';
        const b = oauthButton(a.label || (a.action === 'app_install' ? 'Install GitHub App' : 'Connect via OAuth'), path, out);
        if (a.available === false) b.disabled = true;
        actions.append(h('div', { class: 'stack' }, b,
          a.recommended ? h('span', { class: 'muted small' }, 'Recommended') : null,
          a.error ? h('p', { class: 'alert alert-info small' }, a.error) : null));
      }
    }).catch((e) => clear(actions).append(errorBox(e)));
    add(body, section('Connect', actions, out));
    if (s.installations) add(body, githubInstallations());
    add(body, urlBox);
    if (s.oauth_connected) {
      add(body, disconnectSection('github', s, { always: true, label: 'Disconnect OAuth',
        note: 'Revokes the OAuth grant and deletes the user token. App installations are managed on GitHub.' }));
    }
  },

  slack(body, s) {
    const out = h('div', {});
    if (s.connected) {
      add(body, connectedFacts(s, [['team_name', 'Workspace'], ['channel_name', 'Incidents channel'], ['connected_at', 'Connected']]));
      add(body, slackChannel(s));
    }
    add(body, section(s.connected ? 'Reconnect' : 'Connect',
      h('div', { class: 'row' }, oauthButton('Connect Slack', '/slack/login', out)), out,
      s.oauth_configured === false ? h('p', { class: 'alert alert-info small' }, 'Slack OAuth credentials not configured: set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET in .env.') : null));
    add(body, urls(['Redirect URL', s.redirect_uri || `${ORIGIN}/slack/callback`], ['Event Subscriptions Request URL', `${ORIGIN}/slack/events`]));
    add(body, disconnectSection('slack', s));
  },

  google_chat(body, s) {
    const out = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['email', 'Account'], ['space_display_name', 'Space'], ['identity', 'Messages sent as'], ['connected_at', 'Connected']]));
    if (s.warning) add(body, h('p', { class: 'alert alert-info' }, h('strong', {}, s.warning + '. '), s.hint || ''));
    add(body, section(s.connected ? 'Reconnect' : 'Connect',
      h('div', { class: 'row' }, oauthButton('Connect Google Chat', '/google-chat/login', out)), out));
    add(body, urls(['Authorized redirect URI', s.redirect_uri || `${ORIGIN}/google-chat/callback`],
      ['HTTP endpoint URL (Connection settings)', s.events_url || `${ORIGIN}/google-chat/events`]));
    add(body, disconnectSection('google_chat', s));
  },

  atlassian(body, s) { atlassianFlow(body, s, null); },
  confluence(body, s) { atlassianFlow(body, s, 'confluence'); },
  jira(body, s) { atlassianFlow(body, s, 'jira'); },

  pagerduty(body, s) {
    const out = h('div', {});
    const oOut = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['account', 'Account'], ['user_name', 'User'], ['auth', 'Authentication'], ['email', 'Email'], ['connected_at', 'Connected']]));
    if (s.oauth_enabled) {
      add(body, section('Option A: OAuth', h('div', { class: 'row' }, oauthButton('Connect with PagerDuty', '/pagerduty/oauth/login', oOut)), oOut,
        copyable('Redirect URL', s.redirect_uri || `${ORIGIN}/pagerduty/oauth/callback`)));
    }
    add(body, section(s.oauth_enabled ? 'Option B: API Token' : 'API Token',
      form([field('API token', secret('api_token', { required: true })),
        field('Webhook signing secret (optional)', secret('webhook_secret'))], 'Connect',
      (f) => post('/pagerduty/connect', { api_token: val(f, 'api_token'), ...(val(f, 'webhook_secret') ? { webhook_secret: val(f, 'webhook_secret') } : {}) }), out), out));
    add(body, urls(['Webhook URL (Generic Webhooks v3)', s.webhook_url || userWebhook('/pagerduty/webhook')]));
    add(body, disconnectSection('pagerduty', s));
  },

  datadog(body, s) {
    const out = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['site', 'Site'], ['account', 'Account'], ['connected_at', 'Connected']]));
    add(body, section(s.connected ? 'Reconnect' : 'Connect',
      form([field('API key', secret('api_key', { required: true })),
        field('Application key', secret('app_key')),
        field('Site', select('site', [['datadoghq.com', 'US1 (datadoghq.com)'], ['us3.datadoghq.com', 'US3'], ['us5.datadoghq.com', 'US5'], ['datadoghq.eu', 'EU (datadoghq.eu)']], s.site || 'datadoghq.com'))],
      'Connect', (f) => post('/datadog/connect', { api_key: val(f, 'api_key'), site: val(f, 'site'), ...(val(f, 'app_key') ? { app_key: val(f, 'app_key') } : {}) }), out), out));
    add(body, urls(['Webhook URL', serverWebhook(s.webhook && s.webhook.url, '/datadog/webhook')]));
    add(body, disconnectSection('datadog', s));
  },

  grafana(body, s) {
    const out = h('div', {});
    const url = s.webhook_url || (s.webhook_path ? ORIGIN + s.webhook_path : userWebhook('/grafana/alerts/webhook'));
    add(body, section('Webhook',
      h('p', { class: 'muted small' }, 'In Grafana: Alerting > Contact points > New contact point, type Webhook, paste this URL and click Test. Aurora connects when the test webhook arrives.'),
      copyable('Webhook URL', url, { testid: 'grafana-webhook' }),
      connectedFacts(s, [['deliveries', 'Deliveries'], ['last_delivery_at', 'Last delivery'], ['connected_at', 'Connected'], ['disconnected_at', 'Disconnected']])));
    if (s.status === 'disabled') {
      const b = h('button', { type: 'button', class: 'btn primary' }, 'Reconnect');
      b.addEventListener('click', action(b, out, () => post('/grafana/reconnect', {}), 'Grafana reconnected'));
      add(body, section('Disconnected', h('p', { class: 'muted small' }, 'Incoming webhooks are rejected until you reconnect. The contact point does not need to change.'), h('div', { class: 'row' }, b), out));
    } else if (s.connected) {
      add(body, disconnectSection('grafana', s, { run: () => post('/grafana/disconnect', {}),
        note: 'Deactivates the connection: incoming webhooks are rejected until you click Reconnect.' }));
    }
  },

  newrelic(body, s) {
    const out = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['account_id', 'Account ID'], ['region', 'Region'], ['connected_at', 'Connected']]));
    add(body, section(s.connected ? 'Reconnect' : 'Connect',
      form([field('User API Key', secret('api_key', { required: true, placeholder: 'NRAK-…' })),
        field('Account ID', input('account_id', { required: true, inputmode: 'numeric' })),
        field('Region', select('region', [['US', 'US'], ['EU', 'EU']], s.region || 'US')),
        field('License Key (optional)', secret('license_key'))], 'Connect',
      (f) => post('/newrelic/connect', { api_key: val(f, 'api_key'), account_id: val(f, 'account_id'), region: val(f, 'region'),
        ...(val(f, 'license_key') ? { license_key: val(f, 'license_key') } : {}) }), out), out));
    add(body, urls(['Webhook URL', serverWebhook(s.webhook && s.webhook.url, '/newrelic/webhook')]));
    add(body, disconnectSection('newrelic', s));
  },

  sentry(body, s) {
    const out = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['org_slug', 'Organization'], ['region', 'Region'], ['connected_at', 'Connected']]));
    const wh = s.webhook_url ? (s.webhook_url.startsWith('/') ? ORIGIN + s.webhook_url : s.webhook_url) : userWebhook('/sentry/webhook');
    add(body, urls(['Webhook URL', wh]));
    add(body, section(s.connected ? 'Reconnect' : 'Connect',
      form([field('Organization Slug', input('org_slug', { required: true, placeholder: 'acme-co' })),
        field('Region', select('region', [['us', 'US (sentry.io)'], ['eu', 'EU (de.sentry.io)']], s.region || 'us')),
        field('Auth Token', secret('auth_token', { required: true, placeholder: 'sntrys_…' })),
        field('Client Secret', secret('client_secret'))], 'Connect',
      (f) => post('/sentry/connect', { org_slug: val(f, 'org_slug'), region: val(f, 'region'), auth_token: val(f, 'auth_token'),
        ...(val(f, 'client_secret') ? { client_secret: val(f, 'client_secret') } : {}) }), out), out));
    add(body, disconnectSection('sentry', s));
  },

  netdata(body, s) {
    const out = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['account', 'Account'], ['connected_at', 'Connected']]));
    add(body, section(s.connected ? 'Reconnect' : 'Connect',
      form([field('API token', secret('api_token', { required: true }))], 'Connect',
        (f) => post('/netdata/connect', { api_token: val(f, 'api_token') }), out), out));
    add(body, urls(['Webhook URL', serverWebhook(s.webhook_url || s.webhook_path, '/netdata/webhook')]));
    add(body, disconnectSection('netdata', s));
  },

  splunk(body, s) {
    const out = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['instance_url', 'Instance'], ['account', 'Account'], ['connected_at', 'Connected']]));
    add(body, section(s.connected ? 'Reconnect' : 'Connect',
      form([field('Splunk instance URL', input('instance_url', { required: true, placeholder: 'https://your-splunk:8089', inputmode: 'url' })),
        field('API token', secret('token', { required: true }))], 'Connect',
      (f) => post('/splunk/connect', { instance_url: val(f, 'instance_url'), token: val(f, 'token') }), out), out));
    add(body, disconnectSection('splunk', s));
  },

  bitbucket(body, s) {
    const out = h('div', {});
    if (s.connected) add(body, connectedFacts(s, [['username', 'Account'], ['display_name', 'Name'], ['connected_at', 'Connected']]));
    add(body, section(s.connected ? 'Reconnect' : 'Connect',
      h('div', { class: 'row' }, oauthButton('Connect Bitbucket', '/bitbucket/login', out)), out,
      s.oauth_configured === false ? h('p', { class: 'alert alert-info small' }, 'Bitbucket OAuth credentials not configured: set BB_OAUTH_CLIENT_ID and BB_OAUTH_CLIENT_SECRET.') : null));
    add(body, urls(['Callback URL', s.callback_url || `${ORIGIN}/bitbucket/callback`]));
    add(body, disconnectSection('bitbucket', s));
  },
};

function atlassianFlow(body, s, only) {
  const out = h('div', {});
  const pOut = h('div', {});
  const conf = statusCache.confluence || {};
  const jira = statusCache.jira || {};
  const products = [['confluence', 'Confluence', conf], ['jira', 'Jira', jira]].filter(([id]) => !only || id === only);
  add(body, section('Products', h('ul', { class: 'plain' }, products.map(([id, label, ps]) => {
    const st = connectorState(id, ps);
    return h('li', { class: 'row' }, h('strong', {}, label), badge(st.label, st.kind),
      ps.site_url || ps.base_url ? h('span', { class: 'muted small' }, ps.site_url || ps.base_url) : null);
  }))));
  const boxes = products.map(([id, label, ps]) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'products', value: id, checked: ps.enabled !== false, disabled: ps.enabled === false }), ' ', label));
  add(body, section('Option A: Atlassian Cloud (OAuth)',
    h('fieldset', {}, h('legend', {}, 'Products to connect'), boxes),
    h('div', { class: 'row' }, oauthButton('Connect with Atlassian', () => {
      const picked = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      return '/atlassian/login' + (picked.length ? '?products=' + encodeURIComponent(picked.join(',')) : '');
    }, out)), out,
    copyable('Callback URL', (statusCache.atlassian || {}).redirect_uri || `${ORIGIN}/atlassian/callback`)));
  // Data Center: per product, its Base URL and Personal Access Token
  const patGroups = products.map(([id, label, ps]) => {
    const use = h('input', { type: 'checkbox', name: `pat-use-${id}`, checked: products.length === 1 || id === 'confluence', disabled: ps.enabled === false });
    const base = input(`base_url_${id}`, { placeholder: `https://${id}.yourcompany.com`, inputmode: 'url' });
    const pat = secret(`pat_${id}`);
    const fields = h('div', {}, field(`${label} Base URL`, base), field(`${label} Personal Access Token`, pat));
    const sync = () => { fields.hidden = !use.checked; };
    use.addEventListener('change', sync);
    sync();
    return { id, label, use, base, pat, el: h('fieldset', {}, h('legend', {}, h('label', { class: 'check' }, use, ' ', label)), fields) };
  });
  add(body, section('Option B: Data Center (PAT)',
    form(patGroups.map((g) => g.el), 'Connect with PAT', () => {
      const chosen = patGroups.filter((g) => g.use.checked);
      if (!chosen.length) throw new Error('Select Confluence, Jira or both.');
      for (const g of chosen) {
        if (!g.base.value.trim()) { g.base.focus(); throw new Error(`${g.label} Base URL is required.`); }
        if (!g.pat.value.trim()) { g.pat.focus(); throw new Error(`${g.label} Personal Access Token is required.`); }
      }
      const list = chosen.map((g) => ({ product: g.id, base_url: g.base.value.trim(), pat: g.pat.value.trim() }));
      return post('/atlassian/connect', list.length === 1 ? list[0] : { products: list });
    }, pOut), pOut));
  if (jira.connected && (!only || only === 'jira')) add(body, jiraTier());
  const target = only || 'atlassian';
  add(body, disconnectSection(target, only ? s : { ...s, connected: conf.connected || jira.connected || s.connected }));
}

function jiraTier() {
  const out = h('div', {});
  const sel = select('tier', [['read_only', 'Read Only'], ['full_access', 'Full Access']], 'read_only');
  get('/jira/permissions').then((p) => { sel.value = p.tier || 'read_only'; }).catch(() => {});
  const b = h('button', { type: 'button', class: 'btn' }, 'Save permission tier');
  b.addEventListener('click', action(b, out, () => put('/jira/permissions', { tier: sel.value }), 'Jira permission tier saved'));
  return section('Jira agent permissions', field('Permission tier', sel), h('div', { class: 'row' }, b), out);
}

function slackChannel(s) {
  const out = h('div', {});
  const sel = h('select', { name: 'channel' }, h('option', { value: '' }, 'Loading channels…'));
  get('/slack/channels').then((r) => {
    // fill, not the DOM's append: the options come as an array
    fill(clear(sel), h('option', { value: '' }, 'Choose a channel'),
      (r.channels || []).map((c) => h('option', { value: c.id, selected: c.id === s.channel_id }, '#' + c.name)));
  }).catch((e) => { clear(sel); out.append(errorBox(e)); });
  const b = h('button', { type: 'button', class: 'btn' }, 'Use this channel');
  b.addEventListener('click', action(b, out, () => {
    if (!sel.value) throw new Error('Choose a channel first.');
    return post('/slack/channel', { channel_id: sel.value });
  }, 'Incidents channel saved'));
  return section('Incidents channel', field('Channel', sel), h('div', { class: 'row' }, b), out);
}

function githubInstallations() {
  const box = h('div', {}, h('p', { class: 'loading' }, 'Loading installations…'));
  get('/api/github/installations').then((r) => {
    clear(box);
    const list = r.installations || [];
    if (!list.length) { box.append(h('p', {}, 'No installations.')); return; }
    box.append(h('ul', { class: 'plain' }, list.map((i) => {
      const st = i.suspended ? ['Suspended', 'warn'] : i.pending ? ['Pending permissions', 'warn'] : i.removed ? ['Removed', 'neutral'] : ['Connected', 'ok'];
      return h('li', { class: 'row' }, h('strong', {}, i.account_login || String(i.installation_id)),
        badge(st[0], st[1]), h('span', { class: 'muted small' }, i.repository_selection === 'all' ? 'all repositories' : `${(i.repositories || []).length} repositories`),
        i.manage_url ? h('a', { class: 'btn small', href: i.manage_url, target: '_blank', rel: 'noopener noreferrer' }, 'Manage') : null);
    })));
  }).catch((e) => clear(box).append(errorBox(e)));
  return section('Connected GitHub Installations', box);
}

// GCP Project Management: enable / disable, Set as Root; a disabled project
// is what cloud_exec refuses with GCP_PROJECT_DISABLED.
function gcpProjects() {
  const box = h('div', { 'data-testid': 'gcp-projects' }, h('p', { class: 'loading' }, 'Loading projects…'));
  const out = h('div', { 'aria-live': 'polite' });
  const draw = (v) => {
    clear(box);
    const projects = v.projects || [];
    if (v.warning) box.append(h('p', { class: 'alert alert-warn', role: 'status' }, v.warning));
    if (!projects.length) { box.append(h('p', {}, 'No accessible projects. Grant at least roles/viewer on the target project.')); return; }
    const rows = projects.map((p) => {
      const isRoot = v.root === p.id;
      const toggle = h('button', { type: 'button', class: 'btn small' + (p.enabled ? '' : ' primary'),
        'aria-label': `${p.enabled ? 'Disable' : 'Enable'} ${p.id}` }, p.enabled ? 'Disable' : 'Enable');
      toggle.addEventListener('click', async () => {
        clear(out);
        toggle.disabled = true;
        try {
          const nv = await post(`/gcp/projects/${encodeURIComponent(p.id)}/${p.enabled ? 'disable' : 'enable'}`, {});
          draw(nv);
          announce(`${p.id} ${p.enabled ? 'disabled' : 'enabled'}`);
          const again = box.querySelector(`[data-project="${CSS.escape(p.id)}"] button`);
          if (again) again.focus();
        } catch (e) { out.append(errorBox(e)); toggle.disabled = false; }
      });
      const rootBtn = h('button', { type: 'button', class: 'btn small', disabled: isRoot,
        'aria-label': `Set ${p.id} as Root` }, isRoot ? 'Root' : 'Set as Root');
      rootBtn.addEventListener('click', async () => {
        clear(out);
        rootBtn.disabled = true;
        try {
          draw(await post(`/gcp/projects/${encodeURIComponent(p.id)}/root`, {}));
          announce(`${p.id} is the root project`);
        } catch (e) {
          out.append(errorBox(e, e.code === 'GCP_PROJECT_DISABLED' ? 'Enable the project first.' : null));
          rootBtn.disabled = false;
        }
      });
      return h('tr', { 'data-project': p.id, class: p.enabled ? '' : 'disabled-row' },
        h('th', { scope: 'row' }, h('span', { class: 'mono' }, p.id), p.name && p.name !== p.id ? h('span', { class: 'muted small block' }, p.name) : null),
        h('td', { class: 'project-state' }, p.enabled ? badge('Enabled', 'ok')
          : h('span', {}, badge('Disabled', 'warn'), ' ', h('span', { class: 'code-tag', title: 'cloud_exec commands that target this project are refused' }, 'GCP_PROJECT_DISABLED')),
          isRoot ? [' ', badge('Root', 'info')] : null),
        h('td', { class: 'actions' }, toggle, ' ', rootBtn));
    });
    box.append(scrollTable('GCP projects', h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Project'), h('th', { scope: 'col' }, 'State'), h('th', { scope: 'col' }, 'Actions'))),
      h('tbody', {}, rows))),
    h('p', { class: 'muted small' }, 'Disabled projects are excluded from discovery, and commands that target them are refused (GCP_PROJECT_DISABLED). Root: the default project of agent commands.',
      v.default_project ? ` The key's own project: ${v.default_project}.` : ''));
  };
  get('/gcp/projects').then(draw).catch((e) => clear(box).append(errorBox(e)));
  return section('GCP Project Management', box, out);
}
