// dom.js — building the page without innerHTML: every string a user, a
// provider or the API gave us becomes a text node, so nothing it contains can
// turn into markup or script (and the CSP forbids inline script anyway).

// h('button', {class: 'x', onclick: fn, 'aria-label': '…'}, 'text', child, …)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected' ||
             k === 'required' || k === 'readOnly' || k === 'multiple') el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let uid = 0;
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

// A labelled form field: <div class="field"><label for>…</label><input id>…</div>
export function field(label, input, hint) {
  if (!input.id) input.id = nextId('f');
  const parts = [h('label', { for: input.id }, label), input];
  if (hint) {
    const hid = nextId('hint');
    input.setAttribute('aria-describedby', hid);
    parts.push(h('p', { class: 'hint', id: hid }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

// Times: the API sends RFC 3339 UTC; shown in the reader's locale, with the
// exact value in a tooltip and the datetime attribute.
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', {}, String(iso));
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

export function ago(iso) {
  if (!iso) return h('span', { class: 'muted' }, 'never');
  const d = new Date(iso);
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  let text;
  if (s < 5) text = 'just now';
  else if (s < 60) text = `${s} s ago`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min ago`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ago`;
  else text = d.toLocaleDateString();
  return h('time', { datetime: iso, title: iso }, text);
}

// A read-only value with a Copy button (URLs, tokens, values.yaml, helm).
export function copyable(label, value, opts = {}) {
  const id = nextId('copy');
  const box = opts.multiline
    ? h('pre', { class: 'code', id, tabindex: '0', 'aria-label': label }, value)
    : h('code', { class: 'code inline', id }, value);
  const btn = h('button', { type: 'button', class: 'btn small', 'aria-describedby': id,
    'data-copy-for': id }, 'Copy');
  btn.addEventListener('click', () => copyText(value, btn));
  const wrap = h('div', { class: 'copyable' + (opts.multiline ? ' multiline' : '') },
    h('span', { class: 'copy-label' }, label), h('div', { class: 'copy-row' }, box, btn));
  if (opts.testid) wrap.dataset.testid = opts.testid;
  return wrap;
}

export async function copyText(text, btn) {
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      ok = true;
    }
  } catch (_) { ok = false; }
  if (!ok) {
    // Clipboard API refused (plain HTTP, permissions): select a hidden
    // textarea and use the legacy command.
    const ta = h('textarea', { class: 'offscreen', 'aria-hidden': 'true' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
    ta.remove();
  }
  if (btn) {
    btn.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { btn.textContent = 'Copy'; }, 2000);
  }
  announce(ok ? 'Copied to the clipboard' : 'Could not copy; select the text instead');
  return ok;
}

// Polite announcements for screen readers (one live region in index.html).
export function announce(text) {
  const r = document.getElementById('announcer');
  if (!r) return;
  r.textContent = '';
  // a fresh text node so the same message twice is read twice
  setTimeout(() => { r.textContent = text; }, 30);
}

// A status badge: the state as text (never colour alone) plus a class for colour.
export function badge(text, kind) {
  return h('span', { class: `badge badge-${kind || 'neutral'}` }, text);
}

// Error box for an ApiError or any Error.
export function errorBox(err, prefix) {
  const code = err && err.code ? err.code : null;
  return h('div', { class: 'alert alert-error', role: 'alert' },
    prefix ? h('strong', {}, prefix + ' ') : null,
    err && err.message ? err.message : String(err),
    code ? h('span', { class: 'code-tag' }, code) : null);
}

export function scrollTable(label, table) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': label }, table);
}

// el.append(...) that leaves out null/false children (optional sections).
export function fill(el, ...children) {
  return append(el, children);
}
