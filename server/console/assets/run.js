// run.js — Run: a cluster picker and a kubectl command box; the output streams
// as it arrives (POST /api/clusters/{id}/kubectl with Accept:
// text/event-stream, read from fetch's body since EventSource cannot POST).
// A command the agent's policy refuses is shown as a refusal, not as output.
import { h, clear, field, badge, errorBox, announce } from './dom.js';
import { get, streamPost } from './api.js';

function b64bytes(b64) {
  const bin = atob(b64);
  const u = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
  return u;
}

// The page shows at most this much of a command's output (characters).
const MAX_SHOWN = 8 << 20;
// Output is laid out in blocks of about this many characters (see write()).
const BLOCK_CHARS = 32 << 10;

function isPolicyRefusal(r) {
  return r && (r.error_code === 'POLICY_DENIED' ||
    (r.return_code === 126 && typeof r.error === 'string' && r.error.startsWith('POLICY_DENIED')));
}

export function render(main, _params, query) {
  const cluster = h('select', { name: 'cluster', required: true }, h('option', { value: '' }, 'Loading clusters…'));
  const cmd = h('input', { type: 'text', name: 'command', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off',
    placeholder: 'get pods -n default', required: true, class: 'mono' });
  const timeout = h('input', { type: 'number', name: 'timeout', min: '1', max: '3600', value: '60', inputmode: 'numeric' });
  const runBtn = h('button', { type: 'submit', class: 'btn primary' }, 'Run');
  const stopBtn = h('button', { type: 'button', class: 'btn', disabled: true }, 'Stop');
  const out = h('pre', { class: 'terminal', id: 'run-output', role: 'log', 'aria-live': 'polite', 'aria-label': 'Command output', tabindex: '0' });
  const result = h('div', { id: 'run-result', 'aria-live': 'polite' });
  const state = h('p', { class: 'run-state', 'data-state': 'idle' }, 'Ready.');
  const form = h('form', { class: 'card stack run-form', novalidate: true },
    field('Cluster', cluster),
    h('div', { class: 'field' }, h('label', { for: 'run-cmd' }, 'kubectl command'),
      h('div', { class: 'prefixed' }, h('span', { class: 'prefix mono', 'aria-hidden': 'true' }, 'kubectl'), cmd),
      h('p', { class: 'hint', id: 'run-cmd-hint' }, 'Arguments after kubectl. No shell: pipes and $() are plain characters.')),
    field('Timeout (seconds)', timeout),
    h('div', { class: 'row' }, runBtn, stopBtn));
  cmd.id = 'run-cmd';
  cmd.setAttribute('aria-describedby', 'run-cmd-hint');
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Run')),
    h('p', { class: 'lead' }, 'Run a kubectl command in a connected cluster. Output streams as the agent sends it; every command is in the Audit log.'),
    form, state, result, h('h2', { class: 'offscreen' }, 'Output'), out);

  let alive = true;
  let ctrl = null;
  get('/api/kubectl/connections').then((c) => {
    if (!alive) return;
    const conns = (c.connections || []).slice().sort((a, b) => Number(b.connected) - Number(a.connected));
    clear(cluster);
    if (!conns.length) {
      cluster.append(h('option', { value: '' }, 'No clusters yet'));
      result.append(h('p', { class: 'alert alert-info' }, 'No cluster is connected. ', h('a', { href: '/clusters?add=1' }, 'Add Cluster'), ' first.'));
      return;
    }
    for (const x of conns) {
      cluster.append(h('option', { value: x.cluster_id, selected: x.cluster_id === query.get('cluster') },
        `${x.cluster_name || x.cluster_id}${x.connected ? '' : ' (disconnected)'}`));
    }
  }).catch((e) => result.append(errorBox(e)));

  const setState = (s, text) => { state.dataset.state = s; state.textContent = text; };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (ctrl) return;
    clear(result);
    if (!cluster.value) { result.append(errorBox(new Error('Choose a cluster.'))); cluster.focus(); return; }
    const command = cmd.value.trim().replace(/^kubectl\s+/, '');
    if (!command) { result.append(errorBox(new Error('Enter a kubectl command.'))); cmd.focus(); return; }
    const t = Number(timeout.value) || 60;
    clear(out);
    out.dataset.bytes = '0';
    ctrl = new AbortController();
    runBtn.disabled = true;
    stopBtn.disabled = false;
    setState('running', `Running kubectl ${command}…`);
    const decoder = new TextDecoder('utf-8');
    let final = null;
    let shown = 0;
    let cut = false;
    // Output is added once per animation frame, consecutive chunks of one
    // stream into one text node: thousands of small chunks must not cost a
    // layout each. It goes into blocks of about BLOCK_CHARS characters, each
    // ended at a line end: the browser then lays out only the block that grew,
    // where one text node holding megabytes was laid out whole on every frame
    // (a 9 MiB log froze the page for seconds).
    let pending = [];
    let frame = 0;
    let block = null;
    let blockChars = 0;
    let blockLines = 0;
    // A block off screen that was never painted is as tall as this guess
    // (its lines at the page's line height) rather than a fixed placeholder,
    // so the scroll bar fits the whole output.
    const closeBlock = () => {
      block.style.containIntrinsicSize = `auto ${Math.max(1, blockLines) * 1.5}em`;
      block = null;
    };
    const write = (cls, text) => {
      while (text) {
        if (!block) { block = h('span', { class: 'block' }); out.append(block); blockChars = 0; blockLines = 0; }
        const hardEnd = 2 * BLOCK_CHARS - blockChars;
        let take = text.length;
        if (blockChars + take >= BLOCK_CHARS) {
          const nl = text.indexOf('\n', Math.max(0, BLOCK_CHARS - blockChars - 1));
          take = nl >= 0 && nl < hardEnd ? nl + 1 : Math.min(take, hardEnd);
        }
        const piece = text.slice(0, take);
        text = text.slice(take);
        const last = block.lastChild;
        if (last && last.className === cls) last.firstChild.appendData(piece);
        else block.append(h('span', { class: cls }, piece));
        blockChars += piece.length;
        for (let at = piece.indexOf('\n'); at >= 0; at = piece.indexOf('\n', at + 1)) blockLines++;
        // a line longer than two blocks is cut where the second one ends
        if ((blockChars >= BLOCK_CHARS && piece.endsWith('\n')) || blockChars >= 2 * BLOCK_CHARS) closeBlock();
      }
    };
    const paint = () => {
      frame = 0;
      for (const [cls, text] of pending) write(cls, text);
      pending = [];
      out.scrollTop = out.scrollHeight;
    };
    const queue = (cls, text) => {
      if (!text) return;
      const tail = pending[pending.length - 1];
      if (tail && tail[0] === cls) tail[1] += text;
      else pending.push([cls, text]);
      if (!frame) frame = requestAnimationFrame(paint);
    };
    try {
      await streamPost(`/api/clusters/${encodeURIComponent(cluster.value)}/kubectl`, { command, timeout: t }, (name, d) => {
        if (name === 'output') {
          const text = d.base64 !== undefined ? decoder.decode(b64bytes(d.base64), { stream: true }) : (d.text || '');
          shown += text.length;
          if (shown > MAX_SHOWN) {
            // the command keeps running and is audited; the page keeps its memory
            if (!cut) {
              cut = true;
              result.append(h('p', { class: 'alert alert-info' }, `Output beyond ${MAX_SHOWN / (1 << 20)} MiB is not shown here.`));
            }
            return;
          }
          queue(d.stream === 'stderr' ? 'stderr' : 'stdout', text);
        } else if (name === 'result' || name === 'error') {
          final = { ...d, _event: name };
        }
      }, ctrl.signal);
      if (frame) { cancelAnimationFrame(frame); paint(); }
      const note = cut ? result.lastChild : null;
      showResult(result, final);
      if (note) result.append(note);
      setState('done', final ? (isPolicyRefusal(final) ? 'Refused by policy.' : `Finished with exit code ${final.return_code ?? '—'}.`) : 'The stream ended without a result.');
      announce(final && isPolicyRefusal(final) ? 'The command was refused by the agent policy' : 'Command finished');
    } catch (e) {
      if (e && e.name === 'AbortError') {
        setState('stopped', 'Stopped.');
        result.append(h('p', { class: 'alert alert-info', role: 'status' }, 'Stopped: the command was cancelled.'));
      } else {
        setState('failed', 'Failed.');
        result.append(e.code === 'AGENT_NOT_CONNECTED'
          ? errorBox(e, 'The cluster\'s agent is not connected.')
          : errorBox(e));
      }
    } finally {
      ctrl = null;
      runBtn.disabled = false;
      stopBtn.disabled = true;
    }
  });
  stopBtn.addEventListener('click', () => { if (ctrl) ctrl.abort(); });
  return () => { alive = false; if (ctrl) ctrl.abort(); };
}

function showResult(box, r) {
  clear(box);
  if (!r) return;
  if (isPolicyRefusal(r)) {
    const reason = (r.error || '').replace(/^POLICY_DENIED:\s*/, '');
    box.append(h('div', { class: 'alert alert-error refusal', role: 'alert', 'data-testid': 'policy-refusal' },
      h('strong', {}, 'Refused by the agent\'s policy. '), 'The command did not run. ',
      reason ? h('span', { class: 'reason' }, reason) : null,
      h('span', { class: 'code-tag' }, 'POLICY_DENIED')));
    return;
  }
  const ok = r.success && r.return_code === 0;
  const facts = [
    ['Exit code', r.return_code ?? '—'],
    ['Duration', r.duration_ms !== undefined ? `${r.duration_ms} ms` : '—'],
    ['Bytes', r.bytes ?? '—'],
  ];
  box.append(h('div', { class: `result ${ok ? 'ok' : 'failed'}`, 'data-testid': 'run-result' },
    badge(ok ? 'Succeeded' : r.error_code || 'Failed', ok ? 'ok' : 'error'),
    h('dl', { class: 'facts inline' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])),
    r.truncated ? h('p', { class: 'alert alert-info' }, 'Output was truncated at the size limit.') : null,
    r.error ? h('p', { class: 'alert alert-error' }, r.error) : null));
}
