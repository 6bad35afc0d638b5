// audit.js — the audit log (GET /api/audit): every command run in the
// organization's clusters, newest first, with filters and paging.
import { h, clear, field, badge, errorBox, time, scrollTable } from './dom.js';
import { get } from './api.js';

const OUTCOME_KIND = { ok: 'ok', started: 'info', policy_denied: 'error', refused: 'error', failed: 'warn', timeout: 'warn' };

export function render(main, _params, query) {
  const f = {
    cluster_id: h('input', { type: 'text', name: 'cluster_id', value: query.get('cluster_id') || '', autocomplete: 'off' }),
    user_id: h('input', { type: 'text', name: 'user_id', value: query.get('user_id') || '', autocomplete: 'off' }),
    outcome: h('select', { name: 'outcome' }, ['', 'ok', 'failed', 'timeout', 'truncated', 'cancelled', 'policy_denied', 'agent_disconnected',
      'agent_not_connected', 'refused', 'started', 'interrupted'].map((o) => h('option', { value: o, selected: o === (query.get('outcome') || '') }, o || 'Any'))),
  };
  const btn = h('button', { type: 'submit', class: 'btn primary' }, 'Filter');
  const form = h('form', { class: 'card filters', novalidate: true },
    field('Cluster ID', f.cluster_id), field('User ID', f.user_id), field('Outcome', f.outcome), h('div', { class: 'row end' }, btn));
  const box = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more');
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Audit')),
    h('p', { class: 'lead' }, 'Every command run through Aurora, with who ran it and how it ended.'), form, box, h('div', { class: 'row' }, more));
  let cursor = null;
  let tbody = null;
  const params = () => {
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(f)) if (el.value.trim()) q.set(k, el.value.trim());
    return q;
  };
  const load = async (append) => {
    const q = params();
    q.set('limit', '50');
    if (append && cursor) q.set('cursor', cursor);
    try {
      const r = await get('/api/audit?' + q.toString());
      cursor = r.next_cursor || null;
      more.hidden = !cursor;
      const rows = (r.entries || []).map(row);
      if (!append) {
        clear(box);
        if (!rows.length) { box.append(h('p', { class: 'empty' }, 'No commands match.')); tbody = null; return; }
        tbody = h('tbody', {}, rows);
        box.append(scrollTable('Audit log', h('table', { class: 'audit' },
          h('thead', {}, h('tr', {}, ['Time', 'Command', 'Outcome', 'Exit', 'Cluster', 'User', 'Duration', 'Bytes'].map((x) => h('th', { scope: 'col' }, x)))),
          tbody)));
      } else if (tbody) {
        tbody.append(...rows);
      }
    } catch (e) {
      clear(box).append(errorBox(e));
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    history.replaceState(null, '', '/audit' + (params().toString() ? '?' + params().toString() : ''));
    load(false);
  });
  more.addEventListener('click', () => load(true));
  load(false);
  return null;
}

function row(e) {
  const argv = Array.isArray(e.argv) ? e.argv.join(' ') : String(e.argv || '');
  return h('tr', { 'data-audit-id': e.id },
    h('td', {}, time(e.at)),
    h('th', { scope: 'row', class: 'mono cmd' }, argv),
    h('td', {}, badge(e.outcome || '—', OUTCOME_KIND[e.outcome] || 'neutral')),
    h('td', {}, e.return_code === null || e.return_code === undefined ? '—' : String(e.return_code)),
    h('td', { class: 'mono small' }, e.cluster_id || '—'),
    h('td', { class: 'small' }, e.user_id || '—'),
    h('td', {}, e.duration_ms === null || e.duration_ms === undefined ? '—' : `${e.duration_ms} ms`),
    h('td', {}, e.bytes_out === null || e.bytes_out === undefined ? '—' : String(e.bytes_out)));
}
