// runner.mjs — a small test runner for the browser tests: one headless
// Debian chromium (playwright-core, pointed at /usr/bin/chromium), tests run
// one after another, each with its own pages; prints PASS/FAIL per test and
// `N passed, M failed` last.
//
// Every page a test opens is watched: a Content-Security-Policy violation
// (the document's securitypolicyviolation event), a console error, an
// uncaught page error or an HTTP error answer the test did not declare with
// t.allowHttp() fails the test. On failure each page's screenshot is saved
// under build/browser-failures/.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT } from './world.mjs';

const FAILURES = path.join(ROOT, 'build', 'browser-failures');
const CHROMIUM = process.env.AURORA_CHROMIUM || '/usr/bin/chromium';
const tests = [];

export function test(name, fn, opts = {}) {
  tests.push({ name, fn, timeout: opts.timeout || 90000 });
}

// Reports CSP violations from inside the page. Runs before any page script;
// init scripts are injected by the browser's debugging protocol, not by the
// page, so the page's own CSP does not apply to this one.
const WATCH = `document.addEventListener('securitypolicyviolation', (e) => {
  window.__auroraCsp && window.__auroraCsp({ directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample, source: e.sourceFile, line: e.lineNumber });
}, true);`;

class T {
  constructor(name, browser, world, shared) {
    this.name = name;
    this.browser = browser;
    this.world = world;
    this.shared = shared;
    this.pages = [];
    this.contexts = [];
    this.browsers = [];  // launched by launchBrowser, closed with the test
    this.problems = [];
    this.allowed = [];   // [{re, status}]
    this.notes = [];
  }

  // Declares an HTTP error answer the test expects (else it fails the test).
  allowHttp(re, status) { this.allowed.push({ re, status }); }

  note(msg) { this.notes.push(msg); }

  // A second chromium with other switches than the shared one, closed with
  // the test: playwright starts chromium with --disable-back-forward-cache,
  // and a reader's browser has that cache, so a test of what it keeps uses
  // launchBrowser({ ignoreDefaultArgs: ['--disable-back-forward-cache'] }).
  async launchBrowser(opts = {}) {
    const b = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
      ...opts,
    });
    this.browsers.push(b);
    return b;
  }

  // A browser context; `shared: true` is the signed-in context every test
  // uses, whose CSP reports go to the test running at the time; `browser`:
  // one the test launched itself (launchBrowser), watched the same way.
  async context(opts = {}, { shared = false, browser = this.browser } = {}) {
    const ctx = await browser.newContext({
      ignoreHTTPSErrors: true, // the server's self-signed certificate
      viewport: opts.viewport || { width: 1280, height: 900 },
      permissions: ['clipboard-read', 'clipboard-write'],
      ...opts,
    });
    await ctx.exposeBinding('__auroraCsp', (_src, v) => {
      const sink = shared ? (this.shared.current || this) : this;
      sink.problems.push(`CSP violation: ${JSON.stringify(v)}`);
    });
    await ctx.addInitScript(WATCH);
    ctx.on('page', (p) => this.watch(p));
    this.contexts.push(ctx);
    return ctx;
  }

  watch(page) {
    if (this.pages.includes(page)) return;
    this.pages.push(page);
    page.setDefaultTimeout(20000);
    page.on('pageerror', (e) => this.problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const loc = m.location() || {};
      // Chromium logs every HTTP error answer as a console error; those the
      // test expects are declared with allowHttp.
      const http = /the server responded with a status of (\d+)/.exec(m.text());
      if (http && this.allowed.some((a) => a.re.test(loc.url || '') && a.status === Number(http[1]))) return;
      this.problems.push(`console error: ${m.text()} ${loc.url || ''}`);
    });
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.origin === this.world.origin) this.world.seenRequests.add(`${r.method()} ${u.pathname}`);
    });
    page.on('response', (r) => {
      const u = new URL(r.url());
      if (r.status() >= 400 && u.origin === this.world.origin &&
          !this.allowed.some((a) => a.re.test(r.url()) && a.status === r.status())) {
        this.problems.push(`unexpected HTTP ${r.status()} for ${r.request().method()} ${u.pathname}${u.search}`);
      }
    });
  }

  async page(ctx) {
    const c = ctx || this.shared.ctx;
    const p = await c.newPage();
    this.watch(p);
    return p;
  }

  async screenshots() {
    fs.mkdirSync(FAILURES, { recursive: true });
    const out = [];
    let i = 0;
    for (const p of this.pages) {
      if (p.isClosed()) continue;
      i += 1;
      const file = path.join(FAILURES, `${this.name}-${i}.png`);
      try {
        await p.screenshot({ path: file, fullPage: true, timeout: 10000 });
        out.push(file);
      } catch (e) { out.push(`(screenshot failed: ${e.message})`); }
    }
    return out;
  }

  async close() {
    for (const p of this.pages) if (!p.isClosed() && p.context() === this.shared.ctx) await p.close().catch(() => {});
    for (const c of this.contexts) await c.close().catch(() => {});
    for (const b of this.browsers) await b.close().catch(() => {});
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([promise, new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`${what} exceeded ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
}

export async function run(world, setupShared, filters) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // root in a container: chromium's own sandbox needs user namespaces
    args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
  });
  const shared = {};
  let passed = 0;
  let failed = 0;
  try {
    const setupT = new T('setup', browser, world, shared);
    shared.ctx = await setupT.context({}, { shared: true });
    shared.setupT = setupT;
    await setupShared(setupT, shared);
    if (setupT.problems.length) throw new Error(`shared setup: ${setupT.problems.join('\n')}`);
    for (const tc of tests) {
      if (filters.length && !filters.some((f) => tc.name.includes(f))) continue;
      const t = new T(tc.name, browser, world, shared);
      // the shared context's pages report to the running test
      shared.ctx.removeAllListeners('page');
      shared.ctx.on('page', (p) => t.watch(p));
      shared.current = t;
      const started = Date.now();
      let err = null;
      try {
        await withTimeout(tc.fn(t), tc.timeout, tc.name);
      } catch (e) { err = e; }
      const dur = ((Date.now() - started) / 1000).toFixed(1);
      if (!err && !t.problems.length) {
        passed += 1;
        console.log(`PASS ${tc.name} (${dur}s)`);
        for (const n of t.notes) console.log(`    note: ${n}`);
      } else {
        failed += 1;
        console.log(`FAIL ${tc.name} (${dur}s)`);
        if (err) for (const line of String(err.stack || err).split('\n').slice(0, 12)) console.log(`    ${line}`);
        for (const p of t.problems) console.log(`    ${p}`);
        for (const f of await t.screenshots()) console.log(`    screenshot: ${f}`);
      }
      await t.close();
    }
  } finally {
    await browser.close().catch(() => {});
  }
  return { passed, failed };
}

export function currentTest(shared) { return shared.current; }
