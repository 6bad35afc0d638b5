// world.mjs — the real processes the browser tests drive, on loopback only
// (modelled on tests/integration/harness.py): aurora-server (build/asan) with
// its own data dir and a free port, bootstrapped with `admin bootstrap`;
// aurora-agent processes; tests/fixtures/gcp_fixture.py (Google's token
// endpoint + Cloud Resource Manager) and tests/fixtures/oauth_google.js
// (oauth2-mock-server playing Google's OAuth); with the first agent,
// tests/fixtures/kube_api.py (the Kubernetes API server the agents' real
// kubectl talks to: there is none to install); on request (startAwsPeers) a real
// moto_server with tests/fixtures/aws_sts_proxy.py in front of it (AWS STS and
// IAM; the proxy evaluates the roles' trust policies, which moto does not).
// Every process gets a
// sanitizer log dir; stop() reports any ASan/UBSan report and any process
// that did not exit 0 on SIGTERM.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUILD = path.resolve(ROOT, process.env.AURORA_BUILD_DIR || 'build/asan');
export const SERVER_BIN = path.join(BUILD, 'aurora-server');
export const AGENT_BIN = path.join(BUILD, 'aurora-agent');
export const FIXTURES = path.join(ROOT, 'tests', 'fixtures');
// the agents' kubectl: the real one (as tests/integration/harness.py's KUBECTL)
export const KUBECTL = process.env.AURORA_TEST_KUBECTL || '/usr/bin/kubectl';
const GOOGLE_TOKEN_URI = 'https://oauth2.googleapis.com/token';

function ephemeralLow() {
  try { return Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]) || 32768; }
  catch (_) { return 32768; }
}

// A port below the kernel's ephemeral range (as harness.free_port: tests run
// in parallel, and an ephemeral port can be taken by an outgoing connection).
// Only a guess until our process binds it: another program can bind it in
// between, and the process that lost it is started again on another
// (lostPortRace).
export async function freePort() {
  const hi = ephemeralLow() - 1;
  const lo = hi > 12000 ? 10000 : 1024;
  for (let i = 0; i < 200; i++) {
    const p = lo + crypto.randomInt(hi - lo);
    const ok = await new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return p;
  }
  throw new Error('no free port');
}

// How many times a process the world starts on a port of freePort's choosing
// is started again on another one when it found the port taken (as
// harness.PORT_TRIES).
const PORT_TRIES = 4;

// Whether proc exited by itself because another process had bound `port`
// (EADDRINUSE): freePort's pick is only a guess until our process binds it,
// and the integration programs pick from the same range at the same time
// (as harness.lost_port_race). `lines`: what proc logs when it cannot listen.
function lostPortRace(proc, port, lines) {
  if (proc.alive()) return false;
  const log = proc.logText();
  return lines.every((l) => log.includes(l));
}

// What lws logs beside our message when its bind fails with EADDRINUSE (98).
const lwsInUse = (port) => `to port ${port} (-1 98)`;

// Whether process pid holds a listening TCP socket on port (by the socket
// inodes of /proc/net/tcp{,6} and of its descriptors; as harness.listens_on).
function listensOn(pid, port) {
  const inodes = new Set();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let rows;
    try { rows = fs.readFileSync(table, 'utf8').split('\n').slice(1); } catch (_) { continue; }
    for (const row of rows) {
      const col = row.trim().split(/\s+/);
      if (col.length > 9 && col[3] === '0A' && parseInt(col[1].split(':').pop(), 16) === port) inodes.add(`socket:[${col[9]}]`);
    }
  }
  if (!inodes.size) return false;
  let names;
  try { names = fs.readdirSync(`/proc/${pid}/fd`); } catch (_) { return false; }
  return names.some((n) => {
    try { return inodes.has(fs.readlinkSync(`/proc/${pid}/fd/${n}`)); } catch (_) { return false; }
  });
}

// pred may throw: the wait goes on, unless the error has .fatal set (a
// process it waits for exited: no use waiting longer).
export async function waitFor(pred, timeoutMs, what, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try { last = await pred(); } catch (e) { if (e && e.fatal) throw e; last = undefined; }
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function sanEnv(dir) {
  fs.mkdirSync(dir, { recursive: true });
  return {
    // the integration harness's quarantine (tests/integration/harness.py: ASAN_QUARANTINE)
    ASAN_OPTIONS: `detect_leaks=1:abort_on_error=0:quarantine_size_mb=32:log_path=${dir}/asan`,
    UBSAN_OPTIONS: `print_stacktrace=1:halt_on_error=1:log_path=${dir}/ubsan`,
  };
}

function baseEnv(home) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(AURORA_|ASAN_|UBSAN_|LSAN_|KUBECONFIG|INTERNAL_API_SECRET|NEXT_PUBLIC_)/.test(k)) continue;
    if (['http_proxy', 'https_proxy', 'all_proxy'].includes(k.toLowerCase())) continue;
    env[k] = v;
  }
  fs.mkdirSync(home, { recursive: true });
  env.HOME = home;
  env.NO_PROXY = env.no_proxy = '127.0.0.1,localhost';
  return env;
}

class Proc {
  constructor(name, argv, env, dir, opts = {}) {
    this.name = name;
    this.dir = dir;
    this.sandir = path.join(dir, 'san');
    fs.mkdirSync(dir, { recursive: true });
    this.logPath = path.join(dir, `${name}.log`);
    const log = fs.openSync(this.logPath, 'a');
    this.p = spawn(argv[0], argv.slice(1), {
      env: { ...env, ...sanEnv(this.sandir) }, cwd: dir, detached: true,
      stdio: ['ignore', opts.pipeStdout ? 'pipe' : log, log],
    });
    fs.closeSync(log);
    this.exit = new Promise((resolve) => this.p.once('exit', (code, sig) => resolve({ code, sig })));
    this.exited = null;
    this.exit.then((x) => { this.exited = x; });
    this.killed = false;
  }

  alive() { return this.exited === null; }

  logText() {
    try { return fs.readFileSync(this.logPath, 'utf8'); } catch (_) { return ''; }
  }

  logTail(n = 40) {
    return this.logText().split('\n').slice(-n).join('\n');
  }

  // The log of a process that lost its port moves aside: `${name}.log` is
  // the one started in its place.
  moveLogAside(suffix) {
    const old = this.logPath.replace(/\.log$/, `-${suffix}.log`);
    fs.renameSync(this.logPath, old);
    this.logPath = old;
  }

  // SIGTERM, wait; returns problems (empty if clean).
  async stop(timeoutMs = 20000) {
    const problems = [];
    if (this.checked) return problems;
    this.checked = true;
    const selfExited = !this.alive();
    if (!selfExited) {
      try { process.kill(this.p.pid, 'SIGTERM'); } catch (_) { /* already gone */ }
      const t = setTimeout(() => {
        problems.push(`${this.name} did not exit within ${timeoutMs} ms of SIGTERM; killed`);
        try { process.kill(this.p.pid, 'SIGKILL'); } catch (_) { /* gone */ }
      }, timeoutMs);
      await this.exit;
      clearTimeout(t);
    }
    const { code, sig } = this.exited;
    if (!this.killed && code !== 0 && !(selfExited && this.tolerateExit)) problems.push(`${this.name} exited with ${code === null ? 'signal ' + sig : 'status ' + code}\n${this.logTail(30)}`);
    problems.push(...sanitizerReports(this.sandir).map((r) => `${this.name}: sanitizer report ${r}`));
    return problems;
  }
}

export function sanitizerReports(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => /^(asan|ubsan|lsan)/.test(f))
    .map((f) => `${path.join(dir, f)}:\n${fs.readFileSync(path.join(dir, f), 'utf8').slice(0, 20000)}`);
}

// Lines of a child's stdout as JSON objects (the fixtures report that way).
function jsonLines(child, onLine) {
  const rl = readline.createInterface({ input: child.stdout });
  rl.on('line', (line) => {
    let v;
    try { v = JSON.parse(line); } catch (_) { v = line.trim(); }
    onLine(v);
  });
}

const MOTO = process.env.AURORA_MOTO_SERVER || 'moto_server';

export class World {
  // extraEnv: more settings for the server (added after the defaults below);
  // a function of the world when a value needs its origin
  // googlePeers: false leaves out gcp_fixture.py and the OAuth mock (a
  // world for other connectors' tests needs neither)
  // redirectScheme: 'http' registers the GCP redirect URI as the guide
  // writes it (http://…/callback) on this TLS-only port
  constructor({ extraEnv = {}, googlePeers = true, redirectScheme = 'https' } = {}) {
    this.extraEnv = extraEnv;
    this.googlePeers = googlePeers;
    this.redirectScheme = redirectScheme;
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aurora-browser-'));
    this.procs = [];
    this.agents = [];
    this.problems = [];
    this.seenRequests = new Set(); // "METHOD /path" the pages sent to the server
  }

  get origin() { return `https://127.0.0.1:${this.port}`; }
  get redirectOrigin() { return `${this.redirectScheme}://127.0.0.1:${this.port}`; }
  get ca() { return path.join(this.dataDir, 'tls', 'server.crt'); }

  serverEnv() {
    return {
      ...baseEnv(path.join(this.tmp, 'server-home')),
      AURORA_DATA_DIR: this.dataDir,
      AURORA_PORT: String(this.port),
      AURORA_BIND: '127.0.0.1',
      AURORA_PUBLIC_URL: this.origin,
      FRONTEND_URL: this.origin,
      INTERNAL_API_SECRET: this.secret,
      AURORA_LOG_LEVEL: 'info',
      AURORA_TOKEN_RATE_LIMIT_PER_MINUTE: '1000',
      ...(this.googlePeers ? this.googleEnv() : {}),
      ...(typeof this.extraEnv === 'function' ? this.extraEnv(this) : this.extraEnv),
    };
  }

  // the GCP connector's peers: gcp_fixture.py and the OAuth mock
  googleEnv() {
    return {
      GCP_TOKEN_URI_OVERRIDE: `http://127.0.0.1:${this.gcpPort}/token`,
      GCP_CRM_URL: `http://127.0.0.1:${this.gcpPort}`,
      // no test waits for a provider timeout: ample, for a loaded machine
      AURORA_PROVIDER_TIMEOUT_MS: '30000',
      CLIENT_ID: this.oauthClient.id,
      CLIENT_SECRET: this.oauthClient.secret,
      GCP_REDIRECT_URI: `${this.redirectOrigin}/callback`,
      GCP_AUTH_URL: `${this.oauthIssuer}/authorize`,
      GCP_TOKEN_URL: `${this.oauthIssuer}/token`,
      GCP_REVOKE_URL: `${this.oauthIssuer}/revoke`,
    };
  }

  // A provider stand-in of tests/fixtures/ that prints "PORT <n>" once
  // listening; returns its base URL. Stopped with the world.
  async startFixture(name, argv) {
    const dir = path.join(this.tmp, name);
    const p = new Proc(name, argv, baseEnv(path.join(dir, 'home')), dir, { pipeStdout: true });
    p.killed = true;
    this.procs.push(p);
    const port = await new Promise((resolve, reject) => {
      const rl = readline.createInterface({ input: p.p.stdout });
      rl.once('line', (l) => (/^PORT \d+$/.test(l.trim()) ? resolve(Number(l.trim().split(' ')[1])) : reject(new Error(`${name}: ${l}`))));
      p.exit.then(() => reject(new Error(`${name} exited: ${p.logTail()}`)));
    });
    return `http://127.0.0.1:${port}`;
  }

  // moto_server (AWS's IAM and STS) and aws_sts_proxy.py in front of it;
  // returns { motoUrl, proxyUrl }. Both are stopped with the world.
  async startAwsPeers() {
    const dir = path.join(this.tmp, 'aws');
    let motoPort;
    for (let tries = 1; ; tries++) {
      motoPort = await freePort();
      const moto = new Proc('moto_server', [MOTO, '-H', '127.0.0.1', '-p', String(motoPort)], baseEnv(path.join(dir, 'home')), dir);
      moto.killed = true; // SIGTERM ends it with a Python status
      this.procs.push(moto);
      try {
        // its imports take seconds, minutes on a busy machine; its own
        // listener, not another process's on a port both picked
        await waitFor(async () => {
          if (!moto.alive()) throw Object.assign(new Error(`moto_server exited: ${moto.logTail()}`), { fatal: true });
          return listensOn(moto.p.pid, motoPort);
        }, 180000, `moto_server on port ${motoPort}`, 100);
        break;
      } catch (e) {
        // werkzeug's words for EADDRINUSE; nothing has been told the port yet
        if (tries >= PORT_TRIES || !lostPortRace(moto, motoPort, [`Port ${motoPort} is in use by another program`])) throw e;
        this.portTaken(moto, motoPort, tries);
      }
    }
    const motoUrl = `http://127.0.0.1:${motoPort}`;
    const proxyUrl = await this.startFixture('aws_sts_proxy', ['python3', path.join(FIXTURES, 'aws_sts_proxy.py'), '--upstream', motoUrl]);
    return { motoUrl, proxyUrl };
  }

  async start() {
    for (const bin of [SERVER_BIN, AGENT_BIN]) {
      if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: make build/asan/aurora-server build/asan/aurora-agent`);
    }
    this.port = await freePort();
    this.dataDir = path.join(this.tmp, 'server', 'data');
    fs.mkdirSync(this.dataDir, { recursive: true });
    this.secret = crypto.randomBytes(24).toString('hex');
    if (this.googlePeers) {
      await this.startGcpFixture();
      await this.startOAuthMock();
    }
    for (let tries = 1; ; tries++) {
      this.server = new Proc('server', [SERVER_BIN], this.serverEnv(), path.join(this.tmp, 'server'));
      this.procs.push(this.server);
      try {
        await this.waitHealthy();
        break;
      } catch (e) {
        // The port was picked above, so only this world knows it: the
        // settings made from it (serverEnv, extraEnv's function) follow a
        // new one, and so does the OAuth mock, started again with the new
        // redirect URI.
        if (tries >= PORT_TRIES || !lostPortRace(this.server, this.port,
          [`cannot start the listener on 127.0.0.1:${this.port}`, lwsInUse(this.port)])) throw e;
        this.portTaken(this.server, this.port, tries);
        this.port = await freePort();
        if (this.googlePeers) {
          this.problems.push(...(await this.oauthMock.stop()));
          await this.startOAuthMock();
        }
      }
    }
    const boot = this.admin('bootstrap');
    for (const k of ['org_id', 'user_id', 'api_key']) if (!boot[k]) throw new Error(`admin bootstrap: no ${k}`);
    Object.assign(this, { orgId: boot.org_id, userId: boot.user_id, apiKey: boot.api_key });
  }

  async startGcpFixture() {
    const dir = path.join(this.tmp, 'gcp-fixture');
    const p = new Proc('gcp_fixture', ['python3', path.join(FIXTURES, 'gcp_fixture.py')], baseEnv(path.join(dir, 'home')), dir, { pipeStdout: true });
    this.procs.push(p);
    p.killed = true; // stopped by SIGTERM on purpose: Python's default is status -15
    this.gcpPort = await new Promise((resolve, reject) => {
      const rl = readline.createInterface({ input: p.p.stdout });
      rl.once('line', (l) => (/^\d+$/.test(l.trim()) ? resolve(Number(l)) : reject(new Error(`gcp_fixture: ${l}`))));
      p.exit.then(() => reject(new Error(`gcp_fixture exited: ${p.logTail()}`)));
    });
  }

  // tests/fixtures/kube_api.py, this world's own (its gates and log
  // statistics are per process); sets kubeUrl and kubeconfig. It binds port 0
  // itself and prints the port it got.
  async startKubeApi() {
    const dir = path.join(this.tmp, 'kube-api');
    const kubeconfig = path.join(dir, 'kubeconfig');
    const p = new Proc('kube_api', ['python3', path.join(FIXTURES, 'kube_api.py'), '--kubeconfig', kubeconfig],
      baseEnv(path.join(dir, 'home')), dir, { pipeStdout: true });
    p.killed = true; // stopped by SIGTERM on purpose: Python's default is status -15
    this.procs.push(p);
    const port = await new Promise((resolve, reject) => {
      const rl = readline.createInterface({ input: p.p.stdout });
      rl.once('line', (l) => (/^\d+$/.test(l.trim()) ? resolve(Number(l)) : reject(new Error(`kube_api: ${l}`))));
      p.exit.then(() => reject(new Error(`kube_api exited: ${p.logTail()}`)));
    });
    this.kubeUrl = `http://127.0.0.1:${port}`;
    this.kubeconfig = kubeconfig;
  }

  // GET on kube_api.py's control paths (/fixture/open/TAG, /fixture/logstat/POD)
  async kubeFixture(p) {
    const r = await fetch(`${this.kubeUrl}${p}`);
    const text = await r.text();
    if (!r.ok) throw new Error(`kube_api ${p}: ${r.status} ${text}`);
    return r.headers.get('content-type')?.startsWith('application/json') ? JSON.parse(text) : text;
  }

  async startOAuthMock() {
    const dir = path.join(this.tmp, 'oauth-mock');
    this.oauthClient = { id: '1234-aurora-browser.apps.googleusercontent.com', secret: `GOCSPX-browser-${crypto.randomBytes(6).toString('hex')}` };
    this.oauthEvents = [];
    this.oauthIssuer = null; // this mock's, not a mock's stopped for another port
    // the redirect URI names the server's port, chosen above
    const p = new Proc('oauth_google', ['node', path.join(FIXTURES, 'oauth_google.js'),
      '--client-id', this.oauthClient.id, '--client-secret', this.oauthClient.secret,
      '--redirect-uri', `${this.redirectOrigin}/callback`], baseEnv(path.join(dir, 'home')), dir, { pipeStdout: true });
    p.killed = true;
    this.procs.push(p);
    this.oauthMock = p;
    this.oauthIssuer = await new Promise((resolve, reject) => {
      jsonLines(p.p, (v) => {
        if (v && v.issuer && !this.oauthIssuer) resolve(String(v.issuer).replace(/\/$/, ''));
        else this.oauthEvents.push(v);
      });
      p.exit.then(() => reject(new Error(`oauth_google exited: ${p.logTail()}`)));
    });
  }

  // proc exited because another process took the port freePort picked for
  // it: as it should, and its log moves aside for the next one's.
  portTaken(proc, port, tries) {
    console.log(`note: ${proc.name}: port ${port} was taken by another process; trying another`);
    proc.tolerateExit = true;
    proc.moveLogAside(`port-taken-${tries}`);
  }

  async waitHealthy() {
    await waitFor(async () => {
      if (!this.server.alive()) throw Object.assign(new Error('server exited'), { fatal: true });
      if (!fs.existsSync(this.ca)) return false;
      // its own listener first: a process that took the port meanwhile may
      // hold a request for its 30 s (and the server exits, to be retried)
      if (!listensOn(this.server.p.pid, this.port)) return false;
      const r = await this.request('GET', '/health', { auth: false });
      return r.status === 200;
    }, 30000, 'the server to answer /health').catch((e) => {
      throw new Error(`${e.message}\n${this.server.logTail()}`);
    });
  }

  admin(...args) {
    const sandir = path.join(this.tmp, 'admin-san');
    const r = spawnSync(SERVER_BIN, ['admin', ...args], { env: { ...this.serverEnv(), ...sanEnv(sandir) }, cwd: path.join(this.tmp, 'server'), timeout: 60000 });
    const out = r.stdout.toString();
    const reports = sanitizerReports(sandir);
    if (reports.length) throw new Error(`admin ${args.join(' ')}: ${reports[0]}`);
    if (r.status !== 0) throw new Error(`admin ${args.join(' ')} exited ${r.status}: ${out} ${r.stderr}`);
    const lines = out.trim().split('\n').reverse();
    for (const l of lines) { try { return JSON.parse(l); } catch (_) { /* next */ } }
    return JSON.parse(out);
  }

  // `aurora-server secrets put <path>` with data from a file (removed after),
  // as the connector guide's operator does
  secretsPut(secretPath, data) {
    const f = path.join(this.tmp, `secret-${crypto.randomBytes(4).toString('hex')}`);
    fs.writeFileSync(f, data, { mode: 0o600 });
    const sandir = path.join(this.tmp, 'secrets-san');
    const r = spawnSync(SERVER_BIN, ['secrets', 'put', secretPath, '--file', f], { env: { ...this.serverEnv(), ...sanEnv(sandir) }, cwd: path.join(this.tmp, 'server'), timeout: 60000 });
    fs.rmSync(f, { force: true });
    const reports = sanitizerReports(sandir);
    if (reports.length) throw new Error(`secrets put ${secretPath}: ${reports[0]}`);
    if (r.status !== 0) throw new Error(`secrets put ${secretPath} exited ${r.status}: ${r.stdout} ${r.stderr}`);
  }

  // One HTTPS request to the server, verifying its certificate with its CA.
  // A connection of its own (agent: false): Node's global agent keeps
  // connections alive for 5 s, the server closes an idle one after 5 s, and a
  // request written on a connection the server is closing fails at once with
  // ECONNRESET, not a status a test can check.
  request(method, p, opts = {}) {
    return new Promise((resolve, reject) => {
      const headers = { ...(opts.headers || {}) };
      if (opts.auth !== false) headers.Authorization = `Bearer ${opts.key || this.apiKey}`;
      let body;
      if (opts.body !== undefined) {
        body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = Buffer.byteLength(body);
      }
      const req = https.request({ host: '127.0.0.1', port: this.port, path: p, method, headers,
        ca: fs.readFileSync(this.ca), timeout: 30000, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json = null;
          try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      if (body) req.write(body);
      req.end();
    });
  }

  async startAgent(token, name, extraEnv = {}) {
    if (!this.kubeUrl) await this.startKubeApi();
    const dir = path.join(this.tmp, name);
    let healthPort = await freePort();
    const env = {
      ...baseEnv(path.join(dir, 'home')),
      NEXT_PUBLIC_WEBSOCKET_URL: `wss://127.0.0.1:${this.port}/kubectl-agent`,
      AURORA_AGENT_TOKEN: token,
      AURORA_CA_FILE: this.ca,
      AURORA_HEALTH_PORT: String(healthPort),
      AURORA_KUBECTL_PATH: KUBECTL,
      KUBECONFIG: this.kubeconfig,
      AURORA_LOG_LEVEL: 'info',
      ...extraEnv,
    };
    // a health port of extraEnv's is the caller's: not ours to change
    const portIsOurs = env.AURORA_HEALTH_PORT === String(healthPort);
    for (let tries = 1; ; tries++) {
      const a = new Proc(name, [AGENT_BIN], env, dir);
      a.healthPort = healthPort;
      this.procs.push(a);
      if (portIsOurs) {
        // it listens on its health port before it connects: that (its own
        // listener, not another process's on a port both picked), or its exit
        await waitFor(() => !a.alive() || listensOn(a.p.pid, healthPort), 30000,
          `${name} to listen on its health port ${healthPort}`);
        if (tries < PORT_TRIES && lostPortRace(a, healthPort,
          [`health: cannot listen on 0.0.0.0:${healthPort}`, lwsInUse(healthPort)])) {
          this.portTaken(a, healthPort, tries);
          healthPort = await freePort();
          env.AURORA_HEALTH_PORT = String(healthPort);
          continue;
        }
      }
      this.agents.push(a);
      return a;
    }
  }

  // gcp_fixture.py's control API (plain HTTP on loopback)
  async gcpControl(body) {
    const r = await fetch(`http://127.0.0.1:${this.gcpPort}/_control`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (!r.ok) throw new Error(`gcp_fixture /_control: ${r.status}`);
  }

  // A service account key file, made here with Node's crypto (not our C code),
  // whose public key the fixture verifies the server's JWT assertion with.
  async makeServiceAccountKey(projectId = 'proj-alpha') {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const email = `aurora-${crypto.randomBytes(3).toString('hex')}@${projectId}.iam.gserviceaccount.com`;
    await this.gcpControl({ pubkeys: { [email]: publicKey.export({ type: 'spki', format: 'pem' }) }, expected_aud: GOOGLE_TOKEN_URI });
    return {
      type: 'service_account', project_id: projectId, private_key_id: crypto.randomBytes(20).toString('hex'),
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }), client_email: email,
      client_id: '1' + crypto.randomInt(1e9), auth_uri: 'https://accounts.google.com/o/oauth2/auth', token_uri: GOOGLE_TOKEN_URI,
    };
  }

  async stopAgent(a) {
    const problems = await a.stop();
    this.problems.push(...problems);
    return problems;
  }

  // Agents first, then the server, then the fixtures.
  async stop(keep = false) {
    const order = [...this.agents, ...this.procs.filter((p) => !this.agents.includes(p))];
    for (const p of order) this.problems.push(...(await p.stop()));
    if (!keep && !this.problems.length && process.env.AURORA_KEEP_TMP !== '1') fs.rmSync(this.tmp, { recursive: true, force: true });
    return this.problems;
  }
}
