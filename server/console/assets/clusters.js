// clusters.js — Kubernetes: Add Cluster (name → POST /api/kubectl/tokens →
// the token shown once, values.yaml and the helm command to copy, then the
// state flips to Connected when the agent registers: GET
// /api/kubectl/connections every 2 s, no reload), the clusters table, and a
// cluster's page with its tokens (rotate, revoke) and removal.
import { h, fill, clear, field, copyable, badge, errorBox, announce, time, ago, scrollTable } from './dom.js';
import { get, post, del } from './api.js';

const POLL_MS = 2000;

function connState(c) {
  if (!c) return { label: 'Waiting for agent', kind: 'neutral' };
  if (c.connected && c.status === 'active') return { label: 'Connected', kind: 'ok' };
  if (c.connected) return { label: 'Connected (no heartbeat)', kind: 'warn' };
  return { label: 'Disconnected', kind: 'muted' };
}

function policyText(c) {
  const p = c && c.sessions && c.sessions.find((x) => x.policy);
  if (!p) return '—';
  const pol = p.policy;
  if (typeof pol === 'string') return pol;
  return pol.mode || JSON.stringify(pol);
}

function versionText(c) {
  if (!c) return '—';
  return c.agent_version || (c.sessions && c.sessions[0] && c.sessions[0].agent_version) || '—';
}

// Merges tokens (clusters made here, maybe never connected) with connections.
function clusterRows(tokens, conns) {
  const byId = new Map();
  for (const c of conns) byId.set(c.cluster_id, { id: c.cluster_id, name: c.cluster_name, conn: c, tokens: [] });
  for (const t of tokens) {
    if (!byId.has(t.cluster_id)) byId.set(t.cluster_id, { id: t.cluster_id, name: t.cluster_name, conn: null, tokens: [] });
    byId.get(t.cluster_id).tokens.push(t);
  }
  // a cluster all of whose tokens are revoked and that has no connection row was removed
  return [...byId.values()].filter((r) => r.conn || r.tokens.some((t) => t.status === 'active'));
}

function valuesYaml(tok) {
  const ws = tok.ws_url || `${location.origin.replace(/^http/, 'ws')}/kubectl-agent`;
  return [
    'aurora:',
    `  backendUrl: "${location.origin}"`,
    `  wsEndpoint: "${ws}"`,
    `  agentToken: "${tok.token}"`,
    'agent:',
    '  image:',
    '    repository: your-registry/aurora-kubectl-agent',
    '    tag: "1.0.3"',
    '',
  ].join('\n');
}

const HELM_INSTALL = 'helm install aurora-kubectl-agent ./chart/agent \\\n  --namespace aurora --create-namespace \\\n  -f values.yaml';

// The token panel shown once after Add Cluster or Rotate, with the live state.
function tokenPanel(tok, opts = {}) {
  const stateEl = h('span', { class: 'state', 'data-state': 'Waiting for agent' }, badge('Waiting for agent', 'neutral'));
  const live = h('p', { class: 'live-state', role: 'status', 'aria-live': 'polite', 'data-testid': 'new-cluster-state' },
    `${tok.cluster_name}: `, stateEl);
  const panel = h('section', { class: 'card token-panel', 'aria-label': `Agent token for ${tok.cluster_name}`, 'data-cluster-id': tok.cluster_id },
    h('h2', {}, opts.rotated ? `New token for ${tok.cluster_name}` : `Cluster ${tok.cluster_name} added`),
    h('p', { class: 'alert alert-warn' }, tok.message || 'Save this token - it will only be shown once!'),
    copyable('Agent token', tok.token, { testid: 'agent-token' }),
    copyable('values.yaml', valuesYaml(tok), { multiline: true, testid: 'values-yaml' }),
    copyable('Install with Helm', HELM_INSTALL, { multiline: true, testid: 'helm-install' }),
    tok.helm_command ? copyable('Or in one line (no values file)', tok.helm_command, { multiline: true, testid: 'helm-command' }) : null,
    opts.rotated ? h('p', { class: 'muted small' }, 'The old tokens stay valid until you revoke them: roll the agent out with the new token, then revoke the old ones below.') : null,
    live);
  let flipped = false;
  const update = (conns) => {
    const c = conns.find((x) => x.cluster_id === tok.cluster_id);
    const st = connState(c && c.connected ? c : null);
    if (stateEl.dataset.state !== st.label) {
      clear(stateEl).append(badge(st.label, st.kind));
      stateEl.dataset.state = st.label;
      if (st.label === 'Connected' && !flipped) {
        flipped = true;
        announce(`${tok.cluster_name} is connected`);
      }
    }
  };
  return { panel, update };
}

function addClusterForm(onCreated) {
  const out = h('div', {});
  const name = h('input', { type: 'text', name: 'cluster_name', maxlength: '100', autocomplete: 'off', required: true });
  const btn = h('button', { type: 'submit', class: 'btn primary' }, 'Create token');
  const f = h('form', { class: 'card stack add-cluster', novalidate: true, 'aria-labelledby': 'add-cluster-title' },
    h('h2', { id: 'add-cluster-title' }, 'Add Cluster'),
    field('Cluster name', name, 'A name you recognise, e.g. prod-eu-1. The agent token for it is shown once.'),
    h('div', { class: 'row' }, btn), out);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(out);
    if (!name.value.trim()) { out.append(errorBox(new Error('Enter a cluster name.'))); name.focus(); return; }
    btn.disabled = true;
    try {
      const tok = await post('/api/kubectl/tokens', { cluster_name: name.value.trim() });
      name.value = '';
      onCreated(tok);
    } catch (e) {
      out.append(errorBox(e));
    } finally { btn.disabled = false; }
  });
  return { form: f, focus: () => name.focus() };
}

export function renderList(main, _params, query) {
  const tokenArea = h('div', {});
  const tableBox = h('div', {}, h('p', { class: 'loading' }, 'Loading clusters…'));
  const addBtn = h('button', { type: 'button', class: 'btn primary', 'aria-expanded': 'false', 'aria-controls': 'add-cluster-area' }, 'Add Cluster');
  const addArea = h('div', { id: 'add-cluster-area', hidden: true });
  const panels = [];
  const { form, focus } = addClusterForm((tok) => {
    const p = tokenPanel(tok);
    panels.push(p);
    clear(tokenArea).append(p.panel);
    addArea.hidden = true;
    addBtn.setAttribute('aria-expanded', 'false');
    p.panel.querySelector('h2').setAttribute('tabindex', '-1');
    p.panel.querySelector('h2').focus();
    announce(`Token created for ${tok.cluster_name}. It is shown once.`);
    poll();
  });
  addArea.append(form);
  addBtn.addEventListener('click', () => {
    addArea.hidden = !addArea.hidden;
    addBtn.setAttribute('aria-expanded', String(!addArea.hidden));
    if (!addArea.hidden) focus();
  });
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Kubernetes'), addBtn),
    h('p', { class: 'lead' }, 'The kubectl agent runs in your cluster and connects outbound to Aurora. Add a cluster to get its agent token.'),
    addArea, tokenArea, h('h2', {}, 'Clusters'), tableBox);
  if (query.get('add')) {
    addArea.hidden = false;
    addBtn.setAttribute('aria-expanded', 'true');
    history.replaceState(null, '', '/clusters');
    setTimeout(focus, 0);
  }
  let alive = true;
  let timer = null;
  let lastErr = null;
  // background: called by the timer (the reader did nothing: X-Aurora-Poll)
  async function poll(background = false) {
    clearTimeout(timer);
    const o = { background };
    try {
      const [t, c] = await Promise.all([get('/api/kubectl/tokens', o), get('/api/kubectl/connections', o)]);
      if (!alive) return;
      lastErr = null;
      const conns = c.connections || [];
      for (const p of panels) p.update(conns);
      drawTable(tableBox, clusterRows(t.tokens || [], conns), poll);
    } catch (e) {
      if (!alive) return;
      if (!lastErr) clear(tableBox).append(errorBox(e, 'Could not load the clusters.'));
      lastErr = e;
    }
    if (alive) timer = setTimeout(() => poll(true), POLL_MS);
  }
  poll();
  return () => { alive = false; clearTimeout(timer); };
}

function drawTable(box, rows, poll) {
  // keep focus on a control across redraws (the table redraws every 2 s)
  const active = document.activeElement;
  const focusKey = active && box.contains(active) ? active.dataset.key : null;
  clear(box);
  if (!rows.length) {
    box.append(h('p', { class: 'empty' }, 'No clusters yet. Click Add Cluster to create an agent token.'));
    return;
  }
  const trs = rows.map((r) => {
    const st = connState(r.conn);
    return h('tr', { 'data-cluster-id': r.id },
      h('th', { scope: 'row' }, h('a', { href: `/clusters/${encodeURIComponent(r.id)}`, 'data-key': `link-${r.id}` }, r.name || r.id),
        h('span', { class: 'muted small block mono' }, r.id)),
      h('td', { class: 'status-cell' }, h('span', { class: 'state', 'data-state': st.label }, badge(st.label, st.kind))),
      h('td', {}, versionText(r.conn)),
      h('td', {}, policyText(r.conn)),
      h('td', {}, r.conn ? String(r.conn.agents ?? 0) : '0'),
      h('td', {}, r.conn ? ago(r.conn.last_heartbeat) : h('span', { class: 'muted' }, 'never')),
      h('td', { class: 'actions' },
        r.conn && r.conn.connected ? h('a', { class: 'btn small', href: `/run?cluster=${encodeURIComponent(r.id)}`, 'data-key': `run-${r.id}` }, 'Run') : null,
        ' ', h('a', { class: 'btn small', href: `/clusters/${encodeURIComponent(r.id)}`, 'data-key': `manage-${r.id}`, 'aria-label': `Manage ${r.name || r.id}` }, 'Manage')));
  });
  box.append(scrollTable('Clusters', h('table', { class: 'clusters' },
    h('thead', {}, h('tr', {}, ['Cluster', 'Status', 'Version', 'Policy', 'Agents', 'Last heartbeat', 'Actions'].map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, trs))));
  if (focusKey) {
    const again = box.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    if (again) again.focus();
  }
}

export function renderDetail(main, params) {
  const id = params[0];
  const head = h('h1', {}, id);
  const info = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  const tokenArea = h('div', {});
  const tokensBox = h('div', {});
  const out = h('div', {});
  const rotateBtn = h('button', { type: 'button', class: 'btn primary' }, 'Rotate token');
  const removeBtn = h('button', { type: 'button', class: 'btn danger' }, 'Remove cluster');
  const confirmRemove = h('button', { type: 'button', class: 'btn danger', hidden: true }, 'Yes, revoke every token and remove');
  const panels = [];
  main.append(h('p', { class: 'crumbs' }, h('a', { href: '/clusters' }, 'Kubernetes'), ' / ', id), head,
    info, h('div', { class: 'row' }, rotateBtn, removeBtn, confirmRemove, h('a', { class: 'btn', href: `/run?cluster=${encodeURIComponent(id)}` }, 'Run a command')), out, tokenArea,
    h('h2', {}, 'Agent tokens'), tokensBox);
  let name = id;
  rotateBtn.addEventListener('click', async () => {
    clear(out);
    rotateBtn.disabled = true;
    try {
      const tok = await post('/api/kubectl/tokens', { cluster_id: id });
      const p = tokenPanel(tok, { rotated: true });
      panels.push(p);
      clear(tokenArea).append(p.panel);
      p.panel.querySelector('h2').setAttribute('tabindex', '-1');
      p.panel.querySelector('h2').focus();
      poll();
    } catch (e) { out.append(errorBox(e)); } finally { rotateBtn.disabled = false; }
  });
  removeBtn.addEventListener('click', () => { removeBtn.hidden = true; confirmRemove.hidden = false; confirmRemove.focus(); });
  confirmRemove.addEventListener('click', async () => {
    clear(out);
    confirmRemove.disabled = true;
    try {
      const r = await del(`/api/kubectl/connections/${encodeURIComponent(id)}`);
      announce(`${name} removed`);
      fill(clear(main), h('h1', { tabindex: '-1' }, `${name} removed`),
        h('p', {}, r.message || 'Every token of the cluster was revoked.'),
        r.uninstall_hint ? h('p', {}, r.uninstall_hint) : null,
        r.delete_command ? copyable('Uninstall the agent', r.delete_command, { multiline: true }) : null,
        h('p', {}, h('a', { href: '/clusters' }, 'Back to Kubernetes')));
      main.querySelector('h1').focus();
      alive = false;
    } catch (e) { out.append(errorBox(e)); confirmRemove.disabled = false; }
  });
  let alive = true;
  let timer = null;
  // background: called by the timer (the reader did nothing: X-Aurora-Poll)
  async function poll(background = false) {
    clearTimeout(timer);
    const o = { background };
    try {
      const [t, c] = await Promise.all([get('/api/kubectl/tokens', o), get('/api/kubectl/connections', o)]);
      if (!alive) return;
      const conn = (c.connections || []).find((x) => x.cluster_id === id) || null;
      const tokens = (t.tokens || []).filter((x) => x.cluster_id === id);
      if (!conn && !tokens.length) {
        clear(info).append(errorBox(new Error('No such cluster in your organization.')));
        rotateBtn.disabled = removeBtn.disabled = true;
        return;
      }
      name = (conn && conn.cluster_name) || (tokens[0] && tokens[0].cluster_name) || id;
      head.textContent = name;
      document.title = `${name} · Aurora`;
      for (const p of panels) p.update(c.connections || []);
      const st = connState(conn);
      clear(info).append(h('dl', { class: 'facts' },
        h('dt', {}, 'Cluster ID'), h('dd', { class: 'mono' }, id),
        h('dt', {}, 'Status'), h('dd', {}, h('span', { class: 'state', 'data-state': st.label, 'data-testid': 'cluster-state' }, badge(st.label, st.kind))),
        h('dt', {}, 'Agent version'), h('dd', {}, versionText(conn)),
        h('dt', {}, 'Policy'), h('dd', {}, policyText(conn)),
        h('dt', {}, 'Agents connected'), h('dd', {}, conn ? String(conn.agents ?? 0) : '0'),
        h('dt', {}, 'Protocol'), h('dd', {}, (conn && conn.protocol) || '—'),
        h('dt', {}, 'Last heartbeat'), h('dd', {}, conn ? ago(conn.last_heartbeat) : 'never'),
        h('dt', {}, 'Connected at'), h('dd', {}, time(conn && conn.connected_at)),
        h('dt', {}, 'Disconnected at'), h('dd', {}, time(conn && conn.disconnected_at))));
      drawTokens(tokensBox, tokens, poll);
    } catch (e) {
      if (alive) clear(info).append(errorBox(e));
    }
    if (alive) timer = setTimeout(() => poll(true), POLL_MS);
  }
  poll();
  return () => { alive = false; clearTimeout(timer); };
}

function drawTokens(box, tokens, poll) {
  const active = document.activeElement;
  const focusKey = active && box.contains(active) ? active.dataset.key : null;
  const errBox = box.querySelector('.token-error');
  const keepErr = errBox && errBox.firstChild ? errBox.firstChild : null;
  clear(box);
  const err = h('div', { class: 'token-error' }, keepErr);
  const rows = tokens.map((t) => {
    const stKind = t.status === 'active' ? 'ok' : t.status === 'revoked' ? 'muted' : 'warn';
    const revoke = t.status === 'active'
      ? h('button', { type: 'button', class: 'btn small danger', 'data-key': `revoke-${t.id}`, 'aria-label': `Revoke token ${t.token_preview || t.preview || t.id}` }, 'Revoke')
      : null;
    if (revoke) {
      revoke.addEventListener('click', async () => {
        clear(err);
        revoke.disabled = true;
        try {
          const r = await del(`/api/kubectl/tokens/${encodeURIComponent(t.id)}`);
          announce(`Token revoked${r.disconnected ? `; ${r.disconnected} agent connection closed` : ''}`);
          await poll();
        } catch (e) { err.append(errorBox(e)); revoke.disabled = false; }
      });
    }
    return h('tr', { 'data-token-id': t.id },
      h('th', { scope: 'row', class: 'mono' }, t.token_preview || t.preview || t.id),
      h('td', {}, badge(t.status, stKind)),
      h('td', {}, time(t.created_at)),
      h('td', {}, ago(t.last_connected_at)),
      h('td', {}, time(t.expires_at)),
      h('td', { class: 'actions' }, revoke));
  });
  box.append(err, rows.length ? scrollTable('Agent tokens', h('table', {},
    h('thead', {}, h('tr', {}, ['Token', 'Status', 'Created', 'Last connected', 'Expires', 'Actions'].map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows))) : h('p', { class: 'empty' }, 'No tokens.'));
  if (focusKey) {
    const again = box.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    if (again) again.focus();
  }
}
