// incidents.js — Incidents (GET /api/incidents) and one incident with its
// correlated alerts (GET /api/incidents/{id}); resolve and close.
import { h, fill, clear, field, badge, errorBox, announce, time, scrollTable } from './dom.js';
import { get, post } from './api.js';

const SEV_KIND = { critical: 'error', high: 'warn', medium: 'warn', low: 'info', info: 'neutral', unknown: 'neutral' };
const STATUS_KIND = { open: 'error', acknowledged: 'warn', resolved: 'ok', closed: 'muted' };
const STATE_KIND = { firing: 'error', resolved: 'ok', acknowledged: 'warn', info: 'neutral' };

export function renderList(main, _params, query) {
  const status = h('select', { name: 'status' }, ['', 'open', 'acknowledged', 'resolved', 'closed']
    .map((s) => h('option', { value: s, selected: s === (query.get('status') || '') }, s || 'Any')));
  const source = h('input', { type: 'text', name: 'source', value: query.get('source') || '', autocomplete: 'off', placeholder: 'grafana' });
  const form = h('form', { class: 'card filters', novalidate: true }, field('Status', status), field('Source', source),
    h('div', { class: 'row end' }, h('button', { type: 'submit', class: 'btn primary' }, 'Filter')));
  const box = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more');
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Incidents')),
    h('p', { class: 'lead' }, 'Alerts from your monitoring connectors, correlated into incidents.'), form, box, h('div', { class: 'row' }, more));
  let cursor = null;
  let tbody = null;
  const params = () => {
    const q = new URLSearchParams();
    if (status.value) q.set('status', status.value);
    if (source.value.trim()) q.set('source', source.value.trim());
    return q;
  };
  const load = async (append) => {
    const q = params();
    if (append && cursor) q.set('cursor', cursor);
    try {
      const r = await get('/api/incidents?' + q.toString());
      cursor = r.next_cursor || null;
      more.hidden = !cursor;
      const rows = (r.incidents || []).map((i) => h('tr', { 'data-incident-id': i.id },
        h('th', { scope: 'row' }, h('a', { href: `/incidents/${encodeURIComponent(i.id)}` }, i.title || i.id)),
        h('td', {}, badge(i.status, STATUS_KIND[i.status])),
        h('td', {}, badge(i.severity || 'unknown', SEV_KIND[i.severity] || 'neutral')),
        h('td', {}, i.service || '—'),
        h('td', {}, i.source || '—'),
        h('td', {}, String(i.alert_count ?? '—')),
        h('td', {}, time(i.started_at))));
      if (!append) {
        clear(box);
        if (!rows.length) { box.append(h('p', { class: 'empty' }, 'No incidents.')); return; }
        tbody = h('tbody', {}, rows);
        box.append(scrollTable('Incidents', h('table', {},
          h('thead', {}, h('tr', {}, ['Incident', 'Status', 'Severity', 'Service', 'Source', 'Alerts', 'Started'].map((x) => h('th', { scope: 'col' }, x)))),
          tbody)));
      } else if (tbody) tbody.append(...rows);
    } catch (e) { clear(box).append(errorBox(e)); }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    history.replaceState(null, '', '/incidents' + (params().toString() ? '?' + params().toString() : ''));
    load(false);
  });
  more.addEventListener('click', () => load(true));
  load(false);
  return null;
}

export function renderDetail(main, params) {
  const id = params[0];
  const head = h('h1', {}, 'Incident');
  const box = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  main.append(h('p', { class: 'crumbs' }, h('a', { href: '/incidents' }, 'Incidents'), ' / ', id), head, box);
  const load = async () => {
    try {
      draw(await get(`/api/incidents/${encodeURIComponent(id)}`));
    } catch (e) {
      fill(clear(box), errorBox(e, e.status === 404 ? 'No such incident in your organization.' : null));
    }
  };
  const draw = (i) => {
    head.textContent = i.title || id;
    document.title = `${i.title || id} · Aurora`;
    const out = h('div', {});
    const actions = [];
    if (i.status === 'open' || i.status === 'acknowledged') actions.push(['Resolve incident', 'resolve']);
    if (i.status !== 'closed') actions.push(['Close incident', 'close']);
    const buttons = actions.map(([label, verb]) => {
      const b = h('button', { type: 'button', class: 'btn' }, label);
      b.addEventListener('click', async () => {
        b.disabled = true;
        clear(out);
        try {
          await post(`/api/incidents/${encodeURIComponent(id)}/${verb}`, {});
          announce(`Incident ${verb === 'resolve' ? 'resolved' : 'closed'}`);
          await load();
        } catch (e) { out.append(errorBox(e)); b.disabled = false; }
      });
      return b;
    });
    const alerts = i.alerts || [];
    fill(clear(box), 
      h('dl', { class: 'facts' },
        h('dt', {}, 'Status'), h('dd', {}, badge(i.status, STATUS_KIND[i.status])),
        h('dt', {}, 'Severity'), h('dd', {}, badge(i.severity || 'unknown', SEV_KIND[i.severity] || 'neutral')),
        h('dt', {}, 'Service'), h('dd', {}, i.service || '—'),
        h('dt', {}, 'Source'), h('dd', {}, i.source || '—'),
        h('dt', {}, 'Started'), h('dd', {}, time(i.started_at)),
        h('dt', {}, 'Acknowledged'), h('dd', {}, time(i.acknowledged_at)),
        h('dt', {}, 'Resolved'), h('dd', {}, time(i.resolved_at)),
        h('dt', {}, 'Closed'), h('dd', {}, time(i.closed_at))),
      i.summary ? h('section', { class: 'card' }, h('h2', {}, 'Summary'), h('p', { class: 'summary' }, i.summary)) : null,
      buttons.length ? h('div', { class: 'row' }, buttons) : null, out,
      h('h2', {}, `Correlated alerts (${alerts.length}${i.alerts_truncated ? '+' : ''})`),
      alerts.length ? scrollTable('Correlated alerts', h('table', { class: 'alerts' },
        h('thead', {}, h('tr', {}, ['#', 'Alert', 'State', 'Severity', 'Service', 'Source', 'Occurred'].map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, alerts.map((a) => h('tr', { 'data-alert-id': a.id },
          h('td', {}, String(a.position ?? '')),
          h('th', { scope: 'row' }, a.url && /^https?:\/\//.test(a.url)
            ? h('a', { href: a.url, target: '_blank', rel: 'noopener noreferrer' }, a.title || a.fingerprint)
            : (a.title || a.fingerprint || '—'),
          a.message ? h('span', { class: 'muted small block' }, a.message) : null),
          h('td', {}, badge(a.state, STATE_KIND[a.state])),
          h('td', {}, badge(a.severity || 'unknown', SEV_KIND[a.severity] || 'neutral')),
          h('td', {}, a.service || '—'),
          h('td', {}, a.source || '—'),
          h('td', {}, time(a.occurred_at || a.received_at))))))) : h('p', { class: 'empty' }, 'No alerts.'),
      i.alerts_truncated ? h('p', { class: 'muted small' }, 'Only the first alerts are shown.') : null);
  };
  load();
  return null;
}
