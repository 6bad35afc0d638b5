#!/usr/bin/env node
// idle_agents.js — many idle legacy-dialect agents in one process, for the
// server-memory benchmark (bench/rss_bench.py drives it).
//
//   node bench/idle_agents.js --url wss://127.0.0.1:PORT/kubectl-agent --ca FILE
//        --tokens FILE            one JSON object per line: {"token","cluster_id",...}
//        [--parallel N]           handshakes in flight at once (default 64)
//        [--heartbeat S]          legacy heartbeat interval (default 60, like the old agent)
//        [--handshake-timeout S]  per connection, until `connected` (default 20)
//
// Each connection uses its own token, offers no subprotocol (so the server picks
// the legacy dialect), sends Authorization + X-Cluster-ID, waits for
// {"type":"connected"} (checking cluster_id), answers with `register`, then
// stays idle apart from heartbeats.
//
// Stdin, one command per line:            Stdout, one JSON object per line:
//   up N     open connections 0..N-1      {"event":"up","target":N,"open":..,"failed":..,"errors":[..]}
//   down     close every connection       {"event":"down","open":0,...}
//   status                                {"event":"status","open":..,"dropped":..,...}
//   quit     close everything and exit
// Stdin closing (the driver died) also closes everything and exits.
'use strict';

const path = require('path');
const fs = require('fs');
const crypto = require('crypto');
const tls = require('tls');
const readline = require('readline');

let WebSocket;
try {
  WebSocket = require(path.join(__dirname, '..', 'tests', 'node_modules', 'ws'));
} catch (e) {
  process.stderr.write('idle_agents: the ws package is missing (run scripts/install-deps.sh --test)\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { parallel: 64, heartbeat: 60, handshakeTimeout: 20 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--url': o.url = next(); break;
      case '--ca': o.ca = next(); break;
      case '--tokens': o.tokens = next(); break;
      case '--parallel': o.parallel = Number(next()); break;
      case '--heartbeat': o.heartbeat = Number(next()); break;
      case '--handshake-timeout': o.handshakeTimeout = Number(next()); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!o.url || !o.tokens || !o.ca) throw new Error('--url, --ca and --tokens are required');
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`idle_agents: ${e.message}\n`);
  process.exit(2);
}

// One TLS context for every connection: a `ca` option per connection made
// OpenSSL parse the CA file and build a fresh context for each, most of this
// process's CPU in a run of thousands of handshakes.
const secureContext = tls.createSecureContext({ ca: fs.readFileSync(opts.ca) });
const tokens = fs.readFileSync(opts.tokens, 'utf8').split('\n').filter((l) => l.trim())
  .map((l) => JSON.parse(l));

function emit(ev) {
  process.stdout.write(JSON.stringify(ev) + '\n');
}

// conns[i]: { ws, state: 'connecting'|'open'|'closed', hb }
const conns = [];
const errors = []; // first few problems, verbatim
let failed = 0; // never reached `connected`
let dropped = 0; // closed by the server after `connected`
let closingOnPurpose = false;

function noteError(i, what) {
  if (errors.length < 10) errors.push(`agent ${i}: ${what}`);
}

function clusterIdFor(token) {
  return 'cluster-' + crypto.createHash('sha256').update(token).digest('hex').slice(0, 16);
}

// Opens connection i; resolves true once `connected` arrived and `register` was sent.
function openOne(i) {
  return new Promise((resolve) => {
    const t = tokens[i];
    const cid = clusterIdFor(t.token);
    if (t.cluster_id && t.cluster_id !== cid) {
      noteError(i, `token's cluster_id ${t.cluster_id} != computed ${cid}`);
    }
    const ws = new WebSocket(opts.url, {
      headers: { Authorization: `Bearer ${t.token}`, 'X-Cluster-ID': cid },
      secureContext,
      perMessageDeflate: false,
      handshakeTimeout: opts.handshakeTimeout * 1000,
    });
    const c = { ws, state: 'connecting', hb: null };
    conns[i] = c;
    let settled = false;
    const settle = (ok, why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!ok) {
        failed++;
        noteError(i, why);
      }
      resolve(ok);
    };
    const timer = setTimeout(() => {
      settle(false, `no "connected" within ${opts.handshakeTimeout}s`);
      try { ws.terminate(); } catch (e) { /* ignore */ }
    }, opts.handshakeTimeout * 1000);
    ws.on('unexpected-response', (req, res) => {
      settle(false, `HTTP ${res.statusCode} on upgrade`);
      res.resume();
      try { ws.terminate(); } catch (e) { /* ignore */ }
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let msg;
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch (e) {
        noteError(i, 'non-JSON frame from server');
        return;
      }
      if (msg.type === 'connected' && c.state === 'connecting') {
        if (msg.cluster_id !== cid) {
          settle(false, `connected as ${msg.cluster_id}, expected ${cid}`);
          ws.close(1000);
          return;
        }
        c.state = 'open';
        ws.send(JSON.stringify({ type: 'register', cluster_id: cid,
                                 agent_version: 'bench-idle-legacy/1.0' }));
        if (opts.heartbeat > 0) {
          c.hb = setInterval(() => {
            if (ws.readyState === WebSocket.OPEN) {
              ws.send(JSON.stringify({ type: 'heartbeat', cluster_id: cid }));
            }
          }, opts.heartbeat * 1000);
        }
        settle(true);
      }
    });
    ws.on('error', (err) => {
      if (c.state === 'connecting') settle(false, `error: ${err.code || err.message}`);
    });
    ws.on('close', (code, reason) => {
      if (c.hb) clearInterval(c.hb);
      const was = c.state;
      c.state = 'closed';
      if (was === 'connecting') {
        settle(false, `closed before connected: ${code} ${reason.toString('utf8')}`);
      } else if (was === 'open' && !closingOnPurpose) {
        dropped++;
        noteError(i, `dropped by server: ${code} ${reason.toString('utf8')}`);
      }
    });
  });
}

function openCount() {
  return conns.filter((c) => c && c.state === 'open').length;
}

function snapshot(event, extra) {
  emit(Object.assign({ event, open: openCount(), failed, dropped, errors: errors.slice() },
                     extra || {}));
}

async function up(n) {
  if (n > tokens.length) {
    snapshot('up', { target: n, fatal: `only ${tokens.length} tokens` });
    return;
  }
  const t0 = Date.now();
  const todo = [];
  for (let i = 0; i < n; i++) if (!conns[i] || conns[i].state === 'closed') todo.push(i);
  let next = 0;
  async function lane() {
    while (next < todo.length) {
      const i = todo[next++];
      await openOne(i);
    }
  }
  const lanes = [];
  for (let k = 0; k < Math.max(1, opts.parallel); k++) lanes.push(lane());
  await Promise.all(lanes);
  snapshot('up', { target: n, seconds: (Date.now() - t0) / 1000 });
}

function closeAll() {
  closingOnPurpose = true;
  const waits = [];
  for (const c of conns) {
    if (!c || c.state === 'closed') continue;
    if (c.hb) clearInterval(c.hb);
    waits.push(new Promise((resolve) => {
      c.ws.once('close', resolve);
      setTimeout(() => { try { c.ws.terminate(); } catch (e) { /* ignore */ } resolve(); }, 5000);
      try { c.ws.close(1000, 'bench done'); } catch (e) { resolve(); }
    }));
  }
  return Promise.all(waits);
}

let busy = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  busy = busy.then(async () => {
    switch (cmd) {
      case 'up': closingOnPurpose = false; await up(Number(arg)); break;
      case 'down': await closeAll(); snapshot('down'); break;
      case 'status': snapshot('status'); break;
      case 'quit': await closeAll(); process.exit(0); break;
      case '': break;
      default: emit({ event: 'error', message: `unknown command ${cmd}` });
    }
  });
});
rl.on('close', () => {
  busy.then(closeAll).then(() => process.exit(0));
});
