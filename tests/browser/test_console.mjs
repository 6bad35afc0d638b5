#!/usr/bin/env node
// test_console.mjs — the web console (issue 15) in a real browser: Debian's
// chromium, headless, driven by playwright-core, against the real
// aurora-server (build/asan) and real aurora-agent processes on loopback.
// Peers: tests/fixtures/gcp_fixture.py (Google's token endpoint and Cloud
// Resource Manager), tests/fixtures/oauth_google.js (oauth2-mock-server playing
// Google's OAuth), tests/fixtures/kube_api.py (the Kubernetes API server the
// agents' real kubectl talks to),
// and for the AWS test a real moto_server behind tests/fixtures/aws_sts_proxy.py
// with the real `aws` CLI.
//
//   node tests/browser/test_console.mjs [name-filter ...]
//
// The last line is `N passed, M failed`. Nothing here sleeps for something to
// happen: every wait is for a selector, a state or an API answer, with a deadline.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { World, waitFor, ROOT } from './world.mjs';
import { test, run } from './runner.mjs';

const TOKEN_RE = /^aurora_kubectl_[A-Za-z0-9_-]{64}$/;
// The servers' provider timeout in the tests' own worlds (as the shared
// world's, world.mjs): no test waits for one, and a fixture a loaded machine
// delays must not turn into a 504 before the page's own 20 s wait is over.
const PROVIDER_TIMEOUT_MS = '30000';
const SHARED = {};
const SESSION = /\/api\/console\/session$/;

async function signIn(page, world) {
  await page.goto(`${world.origin}/connectors`);
  await page.waitForURL(/\/signin/);
  await page.getByLabel('API key').fill(world.apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Connectors' }).waitFor();
}

// An OAuth popup that ends by closing itself: it may be closed already when
// the test gets to wait (the whole redirect chain can finish first, a
// machine under load makes that likely), and then no 'close' event comes.
async function popupClosed(popup) {
  if (!popup.isClosed()) await popup.waitForEvent('close', { timeout: 30000 });
}

// Clicks a Copy button and waits until it said "Copied". It says so for
// 2 s only (dom.js), and a test that starts looking after its click came
// back can miss those 2 s on a loaded machine: the page itself watches the
// button, from before the click.
async function copyAndSeeCopied(page, button) {
  await button.evaluate((b) => {
    window.__auroraCopied = false;
    const seen = () => {
      if (b.textContent !== 'Copied') return;
      window.__auroraCopied = true;
      obs.disconnect();
    };
    const obs = new MutationObserver(seen);
    obs.observe(b, { childList: true, characterData: true, subtree: true });
  });
  await button.click();
  await page.waitForFunction(() => window.__auroraCopied === true);
}

async function stateOf(locator) {
  return locator.locator('.state').first().getAttribute('data-state');
}

// ---------------------------------------------------------------------------
test('keyboard_only_sign_in_and_out', async (t) => {
  const ctx = await t.context();
  const page = await t.page(ctx);
  t.allowHttp(SESSION, 401); // GET before signing in, and the wrong key below
  await page.goto(`${t.world.origin}/`);
  await page.waitForURL(/\/signin\?next=/);
  // the key field has focus on arrival; everything below is keys only
  await page.getByRole('heading', { name: 'Sign in to Aurora' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.name), 'api_key', 'focus starts in the API key field');
  await page.keyboard.type('aurora_not_a_real_key');
  await page.keyboard.press('Enter');
  await page.getByRole('alert').filter({ hasText: 'That API key was not accepted.' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.name), 'api_key', 'focus back in the field after an error');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(t.world.apiKey);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Sign in', 'Tab reaches the Sign in button');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Connectors' }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/', 'back where the reader wanted to go');
  // focus moved to the page's heading; going back with Shift+Tab passes
  // Sign out and every navigation link, and ends at the skip link
  const active = () => page.evaluate(() => {
    const a = document.activeElement;
    return { tag: a.tagName, id: a.id, text: (a.textContent || '').trim() };
  });
  assert.deepEqual(await active(), { tag: 'H1', id: '', text: 'Connectors' }, 'focus on the heading after signing in');
  const seen = [];
  for (let i = 0; i < 15; i++) {
    await page.keyboard.press('Shift+Tab');
    const a = await active();
    seen.push(a.id || a.text);
    if (a.text === 'Skip to content') break;
  }
  for (const want of ['signout', 'Connectors', 'Kubernetes', 'Run', 'Audit', 'Incidents', 'Skip to content']) {
    assert.ok(seen.includes(want), `Shift+Tab reaches ${want} (${seen})`);
  }
  assert.ok(await page.getByRole('link', { name: 'Skip to content' }).isVisible(), 'the skip link shows when focused');
  await page.keyboard.press('Enter');
  assert.equal((await active()).tag, 'MAIN', 'the skip link moves focus to the content');
  // Sign out is the control just before the content
  await page.keyboard.press('Shift+Tab');
  assert.equal((await active()).id, 'signout', 'Shift+Tab from the content reaches Sign out');
  const focusRing = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(focusRing, 'none', 'the focused control shows a focus outline');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Sign in to Aurora' }).waitFor();
  // the session is gone on the server too
  await page.goto(`${t.world.origin}/audit`);
  await page.waitForURL(/\/signin\?next=%2Faudit/);
});

test('session_end_sends_every_tab_to_sign_in', async (t) => {
  const ctx = await t.context();
  const a = await t.page(ctx);
  t.allowHttp(SESSION, 401);
  t.allowHttp(/\/api\/kubectl\/(connections|tokens)$/, 401);
  await signIn(a, t.world);
  const b = await t.page(ctx);
  await b.goto(`${t.world.origin}/clusters`);
  await b.getByRole('heading', { level: 1, name: 'Kubernetes' }).waitFor();
  await a.getByRole('button', { name: 'Sign out' }).click();
  await a.getByRole('heading', { name: 'Sign in to Aurora' }).waitFor();
  // the other tab finds out on its next request (the clusters poll)
  await b.getByText('Your session ended. Sign in again.').waitFor();
  await b.waitForURL(/\/signin\?next=%2Fclusters&reason=expired/);
  await b.getByLabel('API key').fill(t.world.apiKey);
  await b.getByRole('button', { name: 'Sign in' }).click();
  await b.getByRole('heading', { level: 1, name: 'Kubernetes' }).waitFor();
});

test('a_failed_sign_out_does_not_say_signed_out', async (t) => {
  // On a shared computer the reader signs out and walks away: if the server
  // did not end the session (store down, a proxy's 502, the network), the
  // page must not show the sign-in page as if it had, while the cookie still
  // opens the console to whoever sits down next.
  const ctx = await t.context();
  const page = await t.page(ctx);
  t.allowHttp(SESSION, 401);
  t.allowHttp(SESSION, 503);
  await signIn(page, t.world);
  await page.route(SESSION, (route) => (route.request().method() === 'DELETE'
    ? route.fulfill({ status: 503, contentType: 'application/json',
      body: JSON.stringify({ error: 'database unavailable', error_code: 'STORE_UNAVAILABLE' }) })
    : route.continue()));
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('alert').filter({ hasText: 'still signed in' }).waitFor();
  assert.equal(await page.getByRole('heading', { name: 'Sign in to Aurora' }).count(), 0, 'no sign-in page while the session lives');
  assert.ok(await page.getByRole('button', { name: 'Sign out' }).isVisible(), 'Sign out can be tried again');
  const live = await page.evaluate(async () => (await fetch('/api/console/session')).status);
  assert.equal(live, 200, 'the session is indeed still live');
  // once the server answers, signing out works from the same page
  await page.unroute(SESSION);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to Aurora' }).waitFor();
  const gone = await page.evaluate(async () => (await fetch('/api/console/session')).status);
  assert.equal(gone, 401, 'the session ended');
});

test('sign_in_next_stays_on_this_origin', async (t) => {
  // ?next= comes from a link anyone can craft: after signing in the console
  // goes there only when it stays on this origin (as the browser resolves it)
  // ('/.//evil.example/x' stays on this origin with the path '//evil.example/x',
  // which history.replaceState resolves as another host: a SecurityError)
  const cases = [['//evil.example/x', '/connectors'], ['/\\evil.example/x', '/connectors'],
    ['/.//evil.example/x', '/connectors'],
    ['https://evil.example/', '/connectors'], ['javascript:alert(1)', '/connectors'],
    ['/signin?next=%2Faudit', '/connectors'], ['/audit?q=1', '/audit']];
  t.allowHttp(SESSION, 401);
  const here = (page) => { const u = new URL(page.url()); return [u.origin, u.pathname]; };
  // through the form
  for (const [next, want] of cases.slice(0, 3).concat(cases.slice(6))) {
    const page = await t.page(await t.context());
    await page.goto(`${t.world.origin}/signin?next=${encodeURIComponent(next)}`);
    await page.getByLabel('API key').fill(t.world.apiKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.pathname === want);
    assert.deepEqual(here(page), [t.world.origin, want], `next=${next}`);
  }
  // a signed-in visit to /signin?next=… goes on at once
  const page = await t.page();
  for (const [next, want] of cases) {
    await page.goto(`${t.world.origin}/signin?next=${encodeURIComponent(next)}`);
    await page.waitForURL((u) => u.pathname === want);
    assert.deepEqual(here(page), [t.world.origin, want], `signed in, next=${next}`);
  }
});

test('cookie_writes_need_the_csrf_token', async (t) => {
  const page = await t.page();
  t.allowHttp(/\/api\/kubectl\/tokens$/, 403);
  await page.goto(`${t.world.origin}/audit`);
  await page.getByRole('heading', { level: 1, name: 'Audit' }).waitFor();
  const r = await page.evaluate(async () => {
    const post = (headers) => fetch('/api/kubectl/tokens', { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ cluster_name: 'csrf-check' }) })
      .then(async (x) => ({ status: x.status, body: await x.json().catch(() => null) }));
    const s = await fetch('/api/console/session', { credentials: 'same-origin' }).then((x) => x.json());
    return { none: await post({}), wrong: await post({ 'X-CSRF-Token': 'x'.repeat(43) }), right: await post({ 'X-CSRF-Token': s.csrf_token }) };
  });
  assert.deepEqual([r.none.status, r.none.body && r.none.body.error_code], [403, 'CSRF_FAILED'], JSON.stringify(r.none));
  assert.deepEqual([r.wrong.status, r.wrong.body && r.wrong.body.error_code], [403, 'CSRF_FAILED'], JSON.stringify(r.wrong));
  assert.equal(r.right.status, 201, JSON.stringify(r.right));
  // tidy: that cluster would otherwise show in later tests' tables
  const del = await t.world.request('DELETE', `/api/kubectl/tokens/${r.right.body.token_id}`);
  assert.equal(del.status, 200);
});

test('connectors_page_cards_states_and_urls', async (t) => {
  const page = await t.page();
  t.allowHttp(/\/aws\/onboarding$/, 503); // no AWS credentials in this deployment
  await page.goto(`${t.world.origin}/connectors`);
  await page.getByRole('heading', { level: 1, name: 'Connectors' }).waitFor();
  const status = (await t.world.request('GET', '/api/connectors/status')).json.connectors;
  for (const [id, s] of Object.entries(status)) {
    const card = page.locator(`[data-connector="${id}"]`);
    await card.waitFor();
    assert.ok((await card.locator('h3').textContent()).includes(s.name), `${id} card is named ${s.name}`);
  }
  assert.equal(await stateOf(page.locator('[data-connector="gcp"]')), 'Not connected');
  assert.equal(await stateOf(page.locator('[data-connector="ovh"]')), 'Disabled', 'OVH is off (NEXT_PUBLIC_ENABLE_OVH unset)');
  assert.equal(await stateOf(page.locator('[data-connector="kubernetes"]')), 'Not connected');

  // Grafana: the webhook URL of this deployment and this user, with a Copy button
  const grafana = page.locator('[data-connector="grafana"]');
  await grafana.getByRole('button', { name: 'Manage' }).click();
  const dlg = page.getByRole('dialog', { name: 'Grafana' });
  await dlg.waitFor();
  const want = `${t.world.origin}/grafana/alerts/webhook/${t.world.userId}`;
  const urlBox = dlg.locator('[data-testid="grafana-webhook"]');
  assert.equal((await urlBox.locator('code').textContent()).trim(), want, 'Grafana webhook URL');
  await copyAndSeeCopied(page, urlBox.getByRole('button', { name: 'Copy' }));
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), want, 'the clipboard holds the URL');
  await page.keyboard.press('Escape');
  await dlg.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Manage', 'focus returns to the Manage button');

  // Sentry and the Google Chat setup page show their exact URLs too
  await page.locator('[data-connector="sentry"]').getByRole('button', { name: 'Manage' }).click();
  const sdlg = page.getByRole('dialog', { name: 'Sentry' });
  await sdlg.getByText(`${t.world.origin}/sentry/webhook/${t.world.userId}`, { exact: false }).first().waitFor();
  await sdlg.getByRole('button', { name: 'Close' }).click();
  await page.locator('[data-connector="google_chat"]').getByRole('button', { name: 'Manage' }).click();
  const gdlg = page.getByRole('dialog', { name: 'Google Chat' });
  await gdlg.getByText(`${t.world.origin}/google-chat/events`, { exact: true }).waitFor();
  await gdlg.getByRole('button', { name: 'Close' }).click();

  // Slack without SLACK_CLIENT_ID: the login route refuses in the popup; the
  // dialog shows the guide's message and the popup closes
  t.allowHttp(/\/slack\/login$/, 503);
  await page.locator('[data-connector="slack"]').getByRole('button', { name: 'Manage' }).click();
  const sl = page.getByRole('dialog', { name: 'Slack' });
  const [popup] = await Promise.all([page.waitForEvent('popup'), sl.getByRole('button', { name: 'Connect Slack' }).click()]);
  await popupClosed(popup);
  await sl.getByRole('alert').filter({ hasText: 'Slack OAuth credentials not configured' }).getByText('SLACK_OAUTH_NOT_CONFIGURED').waitFor();
  // the redirect URI to register is the server's SLACK_REDIRECT_URI
  await sl.locator('code', { hasText: `${API_HOST}/slack/callback` }).waitFor();
  await sl.getByRole('button', { name: 'Close' }).click();
  // so are Azure's and GitHub's OAuth callbacks
  for (const [id, name, url] of [['azure', 'Microsoft Azure', `${API_HOST}/azure/callback`], ['github', 'GitHub', `${API_HOST}/github/callback`],
    ['github', 'GitHub', `${API_HOST}/github/app/install/callback`]]) { // and the App's Setup URL
    await page.locator(`[data-connector="${id}"]`).getByRole('button', { name: 'Manage' }).click();
    const d = page.getByRole('dialog', { name });
    await d.locator('code', { hasText: url }).waitFor();
    assert.equal(await d.locator('code', { hasText: `${t.world.origin}/${id}/callback` }).count(), 0, `${id}: not this page's origin`);
    await d.getByRole('button', { name: 'Close' }).click();
  }

  // AWS without Aurora's own credentials: the guide's troubleshooting message
  await page.locator('[data-connector="aws"]').getByRole('button', { name: 'Manage' }).click();
  const adlg = page.getByRole('dialog', { name: 'Amazon Web Services' });
  await adlg.getByRole('alert').filter({ hasText: "Unable to determine Aurora's AWS account ID" }).waitFor();
  await adlg.getByRole('button', { name: 'Close' }).click();
});

test('grafana_connects_on_its_test_webhook_then_disconnect_and_reconnect', async (t) => {
  const page = await t.page();
  await page.goto(`${t.world.origin}/connectors`);
  const card = page.locator('[data-connector="grafana"]');
  await card.getByRole('button', { name: 'Manage' }).click();
  const dlg = page.getByRole('dialog', { name: 'Grafana' });
  await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
  const url = (await dlg.locator('[data-testid="grafana-webhook"] code').textContent()).trim();
  // what Grafana's contact point "Test" button sends, to the URL shown on screen
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const r = await t.world.request('POST', new URL(url).pathname, { auth: false, body: {
    receiver: 'test', status: 'firing', orgId: 1, groupKey: `test-${Date.now()}`, version: '1', title: '[FIRING:1] TestAlert Grafana ',
    state: 'alerting', message: 'Notification test', externalURL: 'https://grafana.example.test/', truncatedAlerts: 0,
    groupLabels: { alertname: 'TestAlert' }, commonLabels: { alertname: 'TestAlert', instance: 'Grafana' }, commonAnnotations: { summary: 'Notification test' },
    alerts: [{ status: 'firing', labels: { alertname: 'TestAlert', instance: 'Grafana' }, annotations: { summary: 'Notification test' },
      startsAt: now, endsAt: '0001-01-01T00:00:00Z', generatorURL: '', fingerprint: '57c6d9296de2ad39', silenceURL: '',
      dashboardURL: '', panelURL: '', values: null, valueString: '' }] } });
  assert.equal(r.status, 200, r.text);
  // the open dialog flips by itself
  await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
  // Disconnect deactivates; Reconnect brings the same URL back
  await dlg.getByRole('button', { name: 'Disconnect' }).click();
  await dlg.getByRole('button', { name: 'Yes, disconnect Grafana' }).click();
  await dlg.locator('.dialog-head .state[data-state="Disabled"]').waitFor();
  await dlg.getByRole('button', { name: 'Reconnect' }).click();
  await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
  assert.equal((await dlg.locator('[data-testid="grafana-webhook"] code').textContent()).trim(), url, 'the same URL');
  await dlg.getByRole('button', { name: 'Close' }).click();
  await card.locator('.state[data-state="Connected"]').waitFor();
});

test('add_cluster_token_shown_once_and_card_flips_live', async (t) => {
  const page = await t.page();
  await page.goto(`${t.world.origin}/connectors`);
  await page.locator('[data-connector="kubernetes"]').getByRole('link', { name: 'Add Cluster' }).click();
  await page.getByRole('heading', { level: 1, name: 'Kubernetes' }).waitFor();
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.getByLabel('Cluster name').fill('browser-prod');
  await page.getByRole('button', { name: 'Create token' }).click();
  const panel = page.locator('.token-panel');
  await panel.waitFor();
  const token = (await panel.locator('[data-testid="agent-token"] code').textContent()).trim();
  assert.match(token, TOKEN_RE, 'the agent token');
  await panel.getByText('it will only be shown once', { exact: false }).waitFor();
  const values = await panel.locator('[data-testid="values-yaml"] pre').textContent();
  assert.ok(values.includes(`agentToken: "${token}"`), 'values.yaml carries the token');
  assert.ok(values.includes(`wsEndpoint: "wss://${new URL(t.world.origin).host}/kubectl-agent"`), `values.yaml wsEndpoint: ${values}`);
  assert.ok((await panel.locator('[data-testid="helm-install"] pre').textContent()).includes('helm install aurora-kubectl-agent'), 'helm install');
  assert.ok((await panel.locator('[data-testid="helm-command"] pre').textContent()).includes(token), 'one-line helm command');
  const clusterId = await panel.getAttribute('data-cluster-id');
  const live = panel.locator('[data-testid="new-cluster-state"] .state');
  assert.equal(await live.getAttribute('data-state'), 'Waiting for agent');

  const agent = await t.world.startAgent(token, 'agent-browser-prod');
  SHARED.agent = agent;
  SHARED.clusterId = clusterId;
  SHARED.token = token;
  await page.waitForFunction(() => document.querySelector('[data-testid="new-cluster-state"] .state').dataset.state === 'Connected', null, { timeout: 30000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload: the page flipped by itself');
  const row = page.locator(`tr[data-cluster-id="${clusterId}"]`);
  await row.locator('.state[data-state="Connected"]').waitFor();
  const cells = await row.locator('td').allTextContents();
  assert.equal(cells[3], '1', `one agent (${cells})`);
  assert.notEqual(cells[1], '—', 'agent version shown');
  // the token is not shown again anywhere once the page is left
  await page.goto(`${t.world.origin}/clusters`);
  await row.waitFor();
  assert.equal(await page.getByText(token).count(), 0, 'the token is shown only once');
  // the Connectors card counts it
  await page.goto(`${t.world.origin}/connectors`);
  await page.locator('[data-connector="kubernetes"] .state[data-state="Connected"]').waitFor();
});

test('back_forward_cache_keeps_no_token_or_typed_secret', async (t) => {
  // A reader's browser keeps a page it leaves in its back/forward cache and
  // shows it again as it was on Back: the token shown once, a secret typed
  // into a form, the data of a session that ended meanwhile. The page must
  // drop them when it is hidden and draw itself anew from the API when shown.
  const browser = await t.launchBrowser({ ignoreDefaultArgs: ['--disable-back-forward-cache'] });
  const ctx = await t.context({}, { browser });
  const page = await t.page(ctx);
  t.allowHttp(SESSION, 401);
  await page.addInitScript(() => {
    window.addEventListener('pageshow', (e) => { if (e.persisted) window.__auroraRestored = true; });
  });
  await signIn(page, t.world); // a session of its own: this test ends it
  await page.goto(`${t.world.origin}/clusters?add=1`);
  await page.getByLabel('Cluster name').fill('bfcache-check');
  await page.getByRole('button', { name: 'Create token' }).click();
  const panel = page.locator('.token-panel');
  await panel.waitFor();
  const token = (await panel.locator('[data-testid="agent-token"] code').textContent()).trim();
  assert.match(token, TOKEN_RE);
  const clusterId = await panel.getAttribute('data-cluster-id');
  try {
    await page.goto(`${t.world.origin}/console/favicon.svg`);
    await page.goBack({ waitUntil: 'commit' }); // a restored page fires no load event
    await page.waitForFunction(() => window.__auroraRestored === true, null, { timeout: 10000 })
      .catch(() => { throw new Error('the page did not come back from the back/forward cache: the test proves nothing'); });
    await page.locator(`tr[data-cluster-id="${clusterId}"]`).waitFor();
    assert.equal(await page.getByText(token).count(), 0, 'the token came back with the cached page');
    assert.equal(await page.locator('.token-panel').count(), 0, 'the token panel came back');

    // a secret typed into a connector's form and left there
    await page.goto(`${t.world.origin}/connectors`);
    await page.locator('[data-connector="netdata"]').getByRole('button', { name: 'Manage' }).click();
    const typed = `typed-secret-${Date.now()}`;
    await page.getByRole('dialog').getByLabel('API token').fill(typed);
    await page.evaluate(() => { window.__auroraRestored = false; });
    await page.goto(`${t.world.origin}/console/favicon.svg`);
    await page.goBack({ waitUntil: 'commit' }); // a restored page fires no load event
    await page.waitForFunction(() => window.__auroraRestored === true, null, { timeout: 10000 });
    await page.getByRole('heading', { level: 1, name: 'Connectors' }).waitFor();
    await page.locator('[data-connector="netdata"]').waitFor();
    const left = await page.evaluate((v) => [...document.querySelectorAll('input')].filter((i) => i.value === v).length, typed);
    assert.equal(left, 0, 'the typed secret came back with the cached page');

    // the session ends while the reader is elsewhere: Back shows sign-in,
    // not the audit log as it was
    await page.goto(`${t.world.origin}/audit`);
    await page.getByRole('heading', { level: 1, name: 'Audit' }).waitFor();
    await page.locator('main .loading').first().waitFor({ state: 'detached' });
    await page.evaluate(() => { window.__auroraRestored = false; });
    await page.goto(`${t.world.origin}/console/favicon.svg`);
    const other = await t.page(ctx);
    await other.goto(`${t.world.origin}/console/favicon.svg`);
    assert.equal(await other.evaluate(async () => {
      const s = await (await fetch('/api/console/session')).json();
      return (await fetch('/api/console/session', { method: 'DELETE', headers: { 'X-CSRF-Token': s.csrf_token } })).status;
    }), 204);
    await page.goBack({ waitUntil: 'commit' });
    await page.waitForFunction(() => window.__auroraRestored === true, null, { timeout: 10000 });
    await page.getByRole('heading', { name: 'Sign in to Aurora' }).waitFor();
    assert.equal(await page.getByRole('heading', { level: 1, name: 'Audit' }).count(), 0, 'the audit log came back after the session ended');
  } finally {
    await t.world.request('DELETE', `/api/kubectl/connections/${clusterId}`);
  }
});

test('an_unattended_page_leaves_when_its_session_ends', async (t) => {
  // The Run, Audit and Incidents pages make no request of their own once
  // drawn: left open, they kept showing command output and audit rows after
  // the session's idle timeout, to whoever came to the unattended screen.
  // At the session's end as the server gave it, the page asks (a check that
  // is not use) and goes to sign-in.
  await inOwnWorld(t, async (w) => { w.extraEnv = { AURORA_CONSOLE_SESSION_IDLE: '6' }; }, async (w, page) => {
    await page.goto(`${w.origin}/audit`);
    await page.getByRole('heading', { level: 1, name: 'Audit' }).waitFor();
    await page.locator('main .loading').first().waitFor({ state: 'detached' });
    const shown = Date.now();
    await page.getByText('Your session ended. Sign in again.').waitFor({ timeout: 30000 });
    assert.equal(await page.getByRole('heading', { level: 1, name: 'Audit' }).count(), 0, 'the audit log is gone');
    await page.waitForURL(/\/signin\?next=%2Faudit&reason=expired/);
    t.note(`left ${((Date.now() - shown) / 1000).toFixed(1)} s after the page was drawn (idle timeout 6 s)`);
  });
}, { timeout: 120000 });

// kube_api.py's log pods (the agent runs the real kubectl against it):
// stream-TAG writes STREAM_HEAD of its STREAM_LINES lines, then the rest once
// the test opens the gate TAG; pattern-N is N bytes of PATTERN_LINE.
const STREAM_LINES = 6;
const STREAM_HEAD = 3;
const streamLine = (tag, i) => `stream ${tag} line ${i} of ${STREAM_LINES}\n`;
const PATTERN_LINE = 'aurora frame test 0123456789\n';

test('run_streams_output_and_shows_policy_refusal', async (t) => {
  assert.ok(SHARED.agent, 'needs the cluster of add_cluster_token_shown_once_and_card_flips_live');
  const page = await t.page();
  await page.goto(`${t.world.origin}/run?cluster=${SHARED.clusterId}`);
  await page.getByRole('heading', { level: 1, name: 'Run' }).waitFor();
  await page.waitForFunction((id) => document.querySelector('select[name="cluster"]').value === id, SHARED.clusterId);
  const tag = `run-${crypto.randomBytes(4).toString('hex')}`;
  const streamed = `logs -f stream-${tag}`;
  await page.getByLabel('kubectl command').fill(streamed);
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  const out = page.locator('#run-output');
  // the first lines arrive while the command is still running …
  await out.getByText(streamLine(tag, STREAM_HEAD).trim()).waitFor();
  assert.equal(await page.locator('.run-state').getAttribute('data-state'), 'running', 'still running when the first lines show');
  assert.ok(!(await out.textContent()).includes(streamLine(tag, STREAM_HEAD + 1).trim()), 'the rest has not been written yet');
  // … and the rest once the log's gate is open
  await t.world.kubeFixture(`/fixture/open/${tag}`);
  await out.getByText(streamLine(tag, STREAM_LINES).trim()).waitFor();
  await page.locator('.run-state[data-state="done"]').waitFor();
  const result = page.locator('[data-testid="run-result"]');
  await result.getByText('Succeeded').waitFor();
  assert.ok((await result.textContent()).includes('Exit code0'), await result.textContent());
  const all = Array.from({ length: STREAM_LINES }, (_, i) => streamLine(tag, i + 1)).join('');
  assert.equal(await out.textContent(), all, 'the whole log, once, in order');

  // a command the agent's policy (readonly) refuses
  await page.getByLabel('kubectl command').fill('delete pod web-1');
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  const refusal = page.locator('[data-testid="policy-refusal"]');
  await refusal.waitFor();
  const text = await refusal.textContent();
  assert.ok(text.includes("Refused by the agent's policy") && text.includes('POLICY_DENIED'), text);
  assert.equal(await refusal.getAttribute('role'), 'alert');
  assert.equal(await out.textContent(), '', 'nothing ran, nothing printed');

  // a large output (9 MiB): the page shows 8 MiB of it, from the start, and says so
  await page.getByLabel('kubectl command').fill(`logs pattern-${9 << 20}`);
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await page.locator('.run-state[data-state="done"]').waitFor({ timeout: 60000 });
  // (looked for in the result box: a text search of the whole page reads the
  // 8 MiB of output too, seconds of the page's thread on a loaded machine)
  await page.locator('#run-result').getByText('Output beyond 8 MiB is not shown here.').waitFor();
  const shown = await out.evaluate((el, line) => {
    const s = el.textContent;
    let bad = -1;
    for (let i = 0; i < s.length && bad < 0; i += line.length) {
      const piece = s.slice(i, i + line.length);
      if (piece !== line.slice(0, piece.length)) bad = i;
    }
    // the output is laid out in blocks, each ended at a line end, so the page
    // lays out only the block that grew
    const blocks = Array.from(el.children, (b) => b.textContent);
    // blocks never painted (content-visibility) still give the scroll bar
    // about the height of their lines
    let lines = 0;
    for (let at = s.indexOf('\n'); at >= 0; at = s.indexOf('\n', at + 1)) lines++;
    const lineHeight = parseFloat(getComputedStyle(el).lineHeight);
    return { length: s.length, bad, blocks: blocks.length, longest: Math.max(...blocks.map((b) => b.length)),
      cutLines: blocks.slice(0, -1).filter((b) => !b.endsWith('\n')).length,
      height: el.scrollHeight, linesHeight: lines * lineHeight };
  }, PATTERN_LINE);
  assert.ok(shown.length > 7 * (1 << 20) && shown.length <= 8 * (1 << 20), `characters shown: ${shown.length}`);
  assert.equal(shown.bad, -1, `what is shown is the log's start (first difference at ${shown.bad})`);
  assert.ok(shown.blocks >= 128 && shown.longest <= 64 * 1024, `${shown.blocks} blocks, the longest ${shown.longest} characters`);
  assert.equal(shown.cutLines, 0, 'no line is cut between two blocks');
  assert.ok(shown.height > 0.8 * shown.linesHeight && shown.height < 1.25 * shown.linesHeight,
    `the output's scroll height ${shown.height} px, its lines ${shown.linesHeight} px`);
  await result.getByText('Succeeded').waitFor();

  // Stop cancels a running command: kubectl is ended (its connection to the
  // API server closes while the log waits for a gate never opened)
  const stopTag = `stop-${crypto.randomBytes(4).toString('hex')}`;
  const stopped = `logs -f stream-${stopTag}`;
  await page.getByLabel('kubectl command').fill(stopped);
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await out.getByText(streamLine(stopTag, STREAM_HEAD).trim()).waitFor();
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.locator('.run-state[data-state="stopped"]').waitFor();
  await page.getByText('Stopped: the command was cancelled.').waitFor();
  const ended = await waitFor(async () => {
    const r = await t.world.request('GET', `/api/audit?cluster_id=${SHARED.clusterId}`);
    const e = r.json.entries.find((x) => x.argv.join(' ') === `kubectl ${stopped}`);
    return e && e.outcome !== 'started' ? e : null;
  }, 20000, 'the stopped command to end in the audit log');
  assert.ok(['client_gone', 'cancelled'].includes(ended.outcome), `stopped command outcome ${ended.outcome}`);
  await waitFor(async () => (await t.world.kubeFixture(`/fixture/logstat/stream-${stopTag}`)).closed, 20000,
    'the stopped kubectl to close its connection to the API server');

  // all three are in the audit log
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.locator('tr', { hasText: `kubectl ${stopped}` }).getByText(ended.outcome).waitFor();
  await page.getByRole('heading', { level: 1, name: 'Audit' }).waitFor();
  await page.locator('tr', { hasText: 'kubectl delete pod web-1' }).getByText('policy_denied').waitFor();
  await page.locator('tr', { hasText: `kubectl ${streamed}` }).getByText('ok', { exact: true }).waitFor();
});

test('revoke_token_disconnects_the_agent', async (t) => {
  assert.ok(SHARED.agent, 'needs the cluster of add_cluster_token_shown_once_and_card_flips_live');
  const page = await t.page();
  await page.goto(`${t.world.origin}/clusters`);
  await page.locator(`tr[data-cluster-id="${SHARED.clusterId}"]`).getByRole('link', { name: /^Manage/ }).click();
  await page.getByRole('heading', { level: 1, name: 'browser-prod' }).waitFor();
  await page.locator('[data-testid="cluster-state"][data-state="Connected"]').waitFor();
  const tokens = async () => (await t.world.request('GET', '/api/kubectl/tokens')).json.tokens.filter((x) => x.cluster_id === SHARED.clusterId);
  const [old] = await tokens();
  // Rotate: a new token for the same cluster, shown once; the old one stays valid
  await page.getByRole('button', { name: 'Rotate token' }).click();
  const panel = page.locator('.token-panel');
  const fresh = (await panel.locator('[data-testid="agent-token"] code').textContent()).trim();
  assert.match(fresh, TOKEN_RE);
  assert.notEqual(fresh, SHARED.token, 'a new token');
  await panel.getByText('The old tokens stay valid until you revoke them', { exact: false }).waitFor();
  const active = page.locator('tr[data-token-id]').filter({ has: page.getByRole('button', { name: /^Revoke/ }) });
  await waitFor(async () => (await active.count()) === 2, 10000, 'two active tokens');
  // revoke the token the agent uses: its tunnel is closed
  SHARED.agent.tolerateExit = true; // a revoked agent may give up by itself
  await page.locator(`tr[data-token-id="${old.id}"]`).getByRole('button', { name: /^Revoke/ }).click();
  await page.locator('[data-testid="cluster-state"][data-state="Disconnected"]').waitFor({ timeout: 30000 });
  await page.locator(`tr[data-token-id="${old.id}"]`).getByText('revoked').waitFor();
  const after = await tokens();
  assert.deepEqual(after.map((x) => x.status).sort(), ['active', 'revoked'], 'the rotated token stays active');
  const c = (await t.world.request('GET', '/api/kubectl/connections')).json.connections.find((x) => x.cluster_id === SHARED.clusterId);
  assert.equal(c.connected, false, 'the server closed the tunnel');
  await page.goto(`${t.world.origin}/clusters`);
  await page.locator(`tr[data-cluster-id="${SHARED.clusterId}"] .state[data-state="Disconnected"]`).waitFor();
});

test('gcp_oauth_connect_then_service_account_and_projects', async (t) => {
  t.allowHttp(/\/gcp\/projects\/proj-beta\/root$/, 409); // Set as Root on a disabled project
  t.allowHttp(/\/gcp\/projects$/, 404);                  // before any connection
  const page = await t.page();
  await page.goto(`${t.world.origin}/connectors`);
  await page.locator('[data-connector="gcp"]').getByRole('button', { name: 'Manage' }).click();
  const dlg = page.getByRole('dialog', { name: 'Google Cloud Platform' });
  await dlg.waitFor();
  // "Select Service Account authentication" is the default; OAuth is the other choice
  assert.ok(await dlg.getByRole('radio', { name: 'Service Account' }).isChecked(), 'service account is the default method');
  assert.ok(!(await dlg.getByRole('button', { name: 'Connect with Google' }).isVisible()), 'only the chosen flow shows');
  await dlg.getByRole('radio', { name: 'OAuth 2.0' }).check();
  assert.equal((await dlg.locator('.copyable code').first().textContent()).trim(), `${t.world.origin}/callback`, 'the redirect URI of this deployment');
  // OAuth: a popup through this server's /login to the mock, back to /callback,
  // then to FRONTEND_URL/connectors, which tells this page and closes
  const [popup] = await Promise.all([
    page.waitForEvent('popup'),
    dlg.getByRole('button', { name: 'Connect with Google' }).click(),
  ]);
  await popupClosed(popup);
  await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
  await page.locator('#connectors-banner').getByText('gcp: connected').waitFor();
  const s = (await t.world.request('GET', '/api/connectors/status')).json.connectors.gcp;
  assert.equal(s.connected, true);
  assert.equal(s.auth, 'oauth');
  await dlg.getByRole('button', { name: 'Close' }).click();
  await page.locator('[data-connector="gcp"] .state[data-state="Connected"]').waitFor();

  // Option A: upload a service account key file; the projects list appears
  const key = await t.world.makeServiceAccountKey('proj-alpha');
  await page.locator('[data-connector="gcp"]').getByRole('button', { name: 'Manage' }).click();
  await dlg.waitFor();
  assert.ok(await dlg.getByRole('radio', { name: 'OAuth 2.0' }).isChecked(), 'connected with OAuth: that method is selected');
  await dlg.getByRole('radio', { name: 'Service Account' }).check();
  await dlg.getByLabel('Service account key file (JSON)').setInputFiles({ name: 'aurora-sa-key.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(key)) });
  await dlg.getByRole('button', { name: 'Connect with service account' }).click();
  const projects = dlg.locator('[data-testid="gcp-projects"]');
  const beta = projects.locator('tr[data-project="proj-beta"]');
  await beta.waitFor();
  assert.equal((await t.world.request('GET', '/api/connectors/status')).json.connectors.gcp.auth, 'service_account');
  // disable proj-beta: shown as GCP_PROJECT_DISABLED
  await beta.getByRole('button', { name: 'Disable proj-beta' }).click();
  await beta.getByText('GCP_PROJECT_DISABLED').waitFor();
  await beta.getByRole('button', { name: 'Enable proj-beta' }).waitFor();
  let v = (await t.world.request('GET', '/gcp/projects')).json;
  assert.equal(v.projects.find((p) => p.id === 'proj-beta').enabled, false, 'the server has it disabled');
  // a disabled project cannot be the root: the server's refusal is shown
  await beta.getByRole('button', { name: 'Set proj-beta as Root' }).click();
  await dlg.getByRole('alert').filter({ hasText: 'GCP_PROJECT_DISABLED' }).waitFor();
  // enable it again, then pin it as root
  await beta.getByRole('button', { name: 'Enable proj-beta' }).click();
  await beta.getByRole('button', { name: 'Disable proj-beta' }).waitFor();
  await beta.getByRole('button', { name: 'Set proj-beta as Root' }).click();
  await beta.locator('.badge', { hasText: 'Root' }).waitFor();
  v = (await t.world.request('GET', '/gcp/projects')).json;
  assert.equal(v.root, 'proj-beta');
  assert.equal(v.projects.find((p) => p.id === 'proj-beta').enabled, true);
  // disconnect
  await dlg.getByRole('button', { name: 'Disconnect' }).click();
  await dlg.getByRole('button', { name: 'Yes, disconnect Google Cloud Platform' }).click();
  await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
  assert.equal((await t.world.request('GET', '/api/connectors/status')).json.connectors.gcp.connected, false);
});

// A test in a server of its own, for settings the shared one must not have:
// prepare(w) starts its peers and sets w.extraEnv, then the server starts, a
// page signs in to it and body(w, page) runs, with this test's HTTP checks on
// that server. Its requests count for pages_use_only_documented_routes.
async function inOwnWorld(t, prepare, body, worldOpts = { googlePeers: false }) {
  const shared = t.world;
  const w = new World(worldOpts);
  try {
    await prepare(w);
    await w.start();
    t.world = w;
    t.allowHttp(SESSION, 401);
    const page = await t.page(await t.context());
    await signIn(page, w);
    await body(w, page);
  } catch (e) {
    // the pages close below (before this server stops), so the shots are taken here
    e.message += `\n    screenshots: ${(await t.screenshots()).join(', ')}`;
    throw e;
  } finally {
    for (const r of w.seenRequests) shared.seenRequests.add(r);
    t.world = shared;
    await t.close();
    t.problems.push(...(await w.stop()));
  }
}

// AWS, the guide's happy path, in its own server: the shared one has no AWS
// credentials (the connectors page test shows the guide's message for that).
// The customer's side is played by the real `aws` CLI against moto_server,
// with the trust policy the page's Copy button put on the clipboard;
// aws_sts_proxy.py evaluates that policy as AWS's STS would.
const MOTO_ACCOUNT = '123456789012'; // moto's fixed account
const AWS_GUIDE_ASSUME = 'Aurora cannot assume this role';

function awsCli(motoUrl, ...args) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_')) env[k] = v;
  Object.assign(env, { AWS_ACCESS_KEY_ID: 'AKIACUSTOMER00000001', AWS_SECRET_ACCESS_KEY: 'customer',
    AWS_DEFAULT_REGION: 'us-east-1', AWS_PAGER: '', AWS_EC2_METADATA_DISABLED: 'true' });
  const r = spawnSync(process.env.AURORA_AWS_CLI || 'aws', ['--endpoint-url', motoUrl, '--output', 'json', ...args],
    { env, timeout: 120000 });
  if (r.status !== 0) throw new Error(`aws ${args.slice(0, 2).join(' ')}: ${r.status} ${r.stderr}`);
  return JSON.parse(r.stdout.toString() || '{}');
}


// The guide registers http://localhost:5080/callback while the server speaks
// TLS on that port: the provider's redirect arrives in plain HTTP, is sent on
// to the same URL over https (307, server/https_redirect.c), and the flow
// finishes there, in the browser that started it (its cookie is Secure).
test('oauth_redirect_uri_over_plain_http_reaches_the_https_callback', async (t) => {
  await inOwnWorld(t, async () => {}, async (w, page) => {
    const plainHops = [];
    page.context().on('response', (r) => {
      if (r.url().startsWith(`${w.redirectOrigin}/callback?`)) plainHops.push([r.status(), r.headers().location || '']);
    });
    await page.goto(`${w.origin}/connectors`);
    await page.locator('[data-connector="gcp"]').getByRole('button', { name: 'Manage' }).click();
    const dlg = page.getByRole('dialog', { name: 'Google Cloud Platform' });
    await dlg.waitFor();
    await dlg.getByRole('radio', { name: 'OAuth 2.0' }).check();
    assert.equal((await dlg.locator('.copyable code').first().textContent()).trim(), `${w.redirectOrigin}/callback`,
      'the page shows the http:// redirect URI the guide registers');
    const [popup] = await Promise.all([
      page.waitForEvent('popup'),
      dlg.getByRole('button', { name: 'Connect with Google' }).click(),
    ]);
    await popupClosed(popup);
    await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
    assert.equal((await w.request('GET', '/api/connectors/status')).json.connectors.gcp.auth, 'oauth');
    assert.equal(plainHops.length, 1, `one plain-HTTP hop: ${JSON.stringify(plainHops)}`);
    assert.equal(plainHops[0][0], 307, 'answered with a redirect');
    assert.ok(plainHops[0][1].startsWith(`${w.origin}/callback?`), `to the https callback: ${plainHops[0][1]}`);
    t.note('the provider\'s plain-HTTP redirect went on to https and the flow finished');
  }, { googlePeers: true, redirectScheme: 'http' });
}, { timeout: 180000 });

// Login CSRF: a flow started in one browser (the signed-in console) and
// finished in another (a victim handed the provider's URL) is refused at the
// callback; the flow's cookie is HttpOnly, SameSite=Lax and Secure, as the
// browser stored it.
test('oauth_flow_finishes_only_in_the_browser_that_started_it', async (t) => {
  t.allowHttp(/\/callback\?/, 400);
  const page = await t.page();
  const ctx = page.context();
  const r = await ctx.request.get(`${t.world.origin}/login`, { maxRedirects: 0 });
  assert.equal(r.status(), 302, 'the console starts a Google flow');
  const provider = r.headers().location;
  const state = new URL(provider).searchParams.get('state');
  const name = `__Host-aurora_oauth_${crypto.createHash('sha256').update(state).digest('hex').slice(0, 16)}`;
  const mine = (await ctx.cookies(t.world.origin)).find((c) => c.name === name);
  assert.ok(mine, 'the browser that started the flow holds its cookie');
  assert.deepEqual([mine.httpOnly, mine.secure, mine.sameSite, mine.path], [true, true, 'Lax', '/'], 'cookie flags');
  const victim = await t.page(await t.context());
  await victim.goto(provider); // the mock approves and sends this browser to /callback
  await victim.waitForURL((u) => u.pathname === '/callback');
  const body = JSON.parse(await victim.locator('body').innerText());
  assert.equal(body.error_code, 'OAUTH_STATE_INVALID');
  assert.match(body.error, /another browser/);
  t.note('a flow started in the console and finished in another browser was refused');
});
test('aws_connect_with_the_trust_policy_shown_then_disconnect', async (t) => {
  let aws;
  await inOwnWorld(t, async (w) => {
    aws = await w.startAwsPeers();
    w.extraEnv = { AWS_ACCESS_KEY_ID: 'AKIAAURORASERVER0001', AWS_SECRET_ACCESS_KEY: `aurora-${crypto.randomBytes(8).toString('hex')}`,
      AWS_DEFAULT_REGION: 'us-east-1', AWS_STS_ENDPOINT: `${aws.proxyUrl}/`, AURORA_PROVIDER_TIMEOUT_MS: PROVIDER_TIMEOUT_MS };
  }, async (w, page) => {
    t.allowHttp(/\/aws\/connect$/, 400); // the refused role, below
    await page.locator('[data-connector="aws"]').getByRole('button', { name: 'Manage' }).click();
    const dlg = page.getByRole('dialog', { name: 'Amazon Web Services' });
    await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
    // step 1 of the guide: Aurora's account (moto's GetCallerIdentity), this org's External ID
    const acct = dlg.locator('[data-testid="aws-account-id"] code');
    await acct.waitFor();
    assert.equal((await acct.textContent()).trim(), MOTO_ACCOUNT);
    const ext = (await dlg.locator('[data-testid="aws-external-id"] code').textContent()).trim();
    assert.match(ext, /^[A-Za-z0-9_+=,.@:\/-]{2,1224}$/, 'an External ID as STS accepts it');
    await copyAndSeeCopied(page, dlg.locator('[data-testid="aws-trust-policy"]').getByRole('button', { name: 'Copy' }));
    const policy = JSON.parse(await page.evaluate(() => navigator.clipboard.readText()));
    assert.equal(policy.Statement[0].Condition.StringEquals['sts:ExternalId'], ext, 'the copied policy requires this External ID');

    // a role trusting another External ID: refused with the guide's message, nothing connected
    const wrong = JSON.parse(JSON.stringify(policy));
    wrong.Statement[0].Condition.StringEquals['sts:ExternalId'] = `not-${ext}`;
    const wrongArn = awsCli(aws.motoUrl, 'iam', 'create-role', '--role-name', `WrongRole-${crypto.randomBytes(3).toString('hex')}`,
      '--assume-role-policy-document', JSON.stringify(wrong)).Role.Arn;
    await dlg.getByLabel('Role ARN').fill(wrongArn);
    await dlg.getByRole('button', { name: 'Connect', exact: true }).click();
    await dlg.getByRole('alert').filter({ hasText: AWS_GUIDE_ASSUME }).getByText('AWS_ASSUME_ROLE_DENIED').waitFor();
    assert.equal((await w.request('GET', '/api/connectors/status')).json.connectors.aws.connected, false);

    // the role made with the copied policy connects
    const arn = awsCli(aws.motoUrl, 'iam', 'create-role', '--role-name', 'AuroraRole',
      '--assume-role-policy-document', JSON.stringify(policy)).Role.Arn;
    await dlg.getByLabel('Role ARN').fill(arn);
    await dlg.getByLabel('Region').fill('eu-west-1');
    await dlg.getByRole('button', { name: 'Connect', exact: true }).click();
    await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
    const facts = dlg.locator('dl.facts');
    await facts.getByText(arn, { exact: true }).waitFor();
    await facts.getByText('eu-west-1', { exact: true }).waitFor();
    const st = (await w.request('GET', '/api/connectors/status')).json.connectors.aws;
    assert.equal(st.connected, true);
    assert.equal(st.account, arn);
    assert.equal(st.account_id, MOTO_ACCOUNT);
    assert.equal(st.region, 'eu-west-1');
    // what STS was asked: that role, with the External ID the page showed
    const stats = await (await fetch(`${aws.proxyUrl}/_fixture/stats`)).json();
    assert.equal(stats.last.AssumeRole.RoleArn, arn);
    assert.equal(stats.last.AssumeRole.ExternalId, ext);
    await dlg.getByRole('button', { name: 'Close' }).click();
    await page.locator('[data-connector="aws"] .state[data-state="Connected"]').waitFor();

    // disconnect from the dialog
    await page.locator('[data-connector="aws"]').getByRole('button', { name: 'Manage' }).click();
    await dlg.getByRole('button', { name: 'Disconnect' }).click();
    await dlg.getByRole('button', { name: 'Yes, disconnect Amazon Web Services' }).click();
    await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
    assert.equal((await w.request('GET', '/api/connectors/status')).json.connectors.aws.connected, false);
  });
}, { timeout: 240000 });

// The API-key connect forms, each against its provider's stand-in (the
// same tests/fixtures/ the integration tests use; each checks the
// credentials from its own configuration, not the server's code): a wrong
// key is refused with the connector's error code in the dialog, the right
// one connects (what the form sent reached the provider), and the dialog's
// Disconnect removes it. A form field named differently from what the
// server reads fails here, not in front of a user.
const rnd = (n) => crypto.randomBytes(n).toString('hex');
const API_KEY_CONNECTORS = [
  { id: 'datadog', webhook: '/datadog/webhook', script: 'datadog_api.mjs', env: (u) => ({ AURORA_DATADOG_BASE_URL: u }),
    creds: { api: rnd(16), app: rnd(20) },
    config: (c) => ({ orgs: [{ api_key: c.api, app_keys: [c.app] }], monitors: 0, events: 0 }),
    fill: (c, good) => ({ 'API key': good ? c.api : rnd(16), 'Application key': c.app }),
    refused: 'DATADOG_INVALID_API_KEY' },
  { id: 'pagerduty', webhook: '/pagerduty/webhook', webhookOrg: false, script: 'pagerduty_api.mjs', env: (u) => ({ PAGERDUTY_API_BASE_URL: u }),
    creds: { key: `u+${rnd(9)}` },
    config: (c) => ({ user_keys: { [c.key]: { id: 'PUSER01', email: 'oncall@example.test', name: 'On Call' } }, account_keys: [] }),
    fill: (c, good) => ({ 'API token': good ? c.key : `u+${rnd(9)}` }),
    refused: 'PAGERDUTY_INVALID_TOKEN', facts: ['oncall@example.test'] },
  { id: 'netdata', webhook: '/netdata/webhook', script: 'netdata_cloud.mjs', env: (u) => ({ NETDATA_API_BASE_URL: u }),
    creds: { token: `ndc.${rnd(12)}` },
    config: (c) => ({ token: c.token, spaces: [{ id: '6a1c6c1e-0000-4000-8000-000000000001', name: 'Production', slug: 'production' }], rooms: {}, nodes: {} }),
    fill: (c, good) => ({ 'API token': good ? c.token : `ndc.wrong-${rnd(4)}` }),
    refused: 'NETDATA_AUTH_FAILED' },
  { id: 'newrelic', webhook: '/newrelic/webhook', script: 'newrelic_nerdgraph.mjs',
    env: (u) => ({ AURORA_NEWRELIC_US_GRAPHQL_URL: `${u}/us/graphql`, AURORA_NEWRELIC_EU_GRAPHQL_URL: `${u}/eu/graphql` }),
    creds: { key: `NRAK-${crypto.randomBytes(27).map((b) => 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'.charCodeAt(b % 36)).toString('latin1')}`, account: String(1000000 + crypto.randomInt(8999999)) },
    config: (c) => ({ keys: { [c.key]: { region: 'US', accounts: [Number(c.account)] } }, accounts: { [c.account]: 'Acme' } }),
    fill: (c, good) => ({ 'User API Key': good ? c.key : `NRAK-${'X'.repeat(27)}`, 'Account ID': c.account }),
    refused: 'NEWRELIC_INVALID_API_KEY', facts: [null] /* the account id, below */ },
  { id: 'sentry', webhook: '/sentry/webhook', script: 'sentry_api.mjs', env: (u) => ({ SENTRY_US_BASE_URL: u, SENTRY_ALLOW_LOOPBACK: 'true' }),
    creds: { token: `sntrys_${rnd(12)}` },
    config: (c) => ({ orgs: { 'acme-co': { id: '1001', name: 'Acme Co', token: c.token, projects: 3 } } }),
    fill: (c, good) => ({ 'Organization Slug': 'acme-co', 'Auth Token': good ? c.token : `sntrys_${rnd(12)}` }),
    refused: 'SENTRY_INVALID_TOKEN', facts: ['acme-co'] },
  { id: 'splunk', script: 'splunk_api.mjs', env: () => ({ SPLUNK_ALLOW_LOOPBACK: 'true' }),
    creds: { token: `eyJ${rnd(16)}` },
    config: (c) => ({ tokens: { [c.token]: { username: 'aurora-svc', capabilities: ['search', 'rest_properties_get'] } }, events: [], indexes: [], sourcetypes: [] }),
    fill: (c, good, base) => ({ 'Splunk instance URL': base, 'API token': good ? c.token : `eyJ${rnd(16)}` }),
    refused: 'SPLUNK_AUTH_FAILED' },
];

test('api_key_connect_forms_reach_their_providers', async (t) => {
  const bases = {};
  await inOwnWorld(t, async (w) => {
    for (const c of API_KEY_CONNECTORS) bases[c.id] = await w.startFixture(c.id, ['node', path.join(ROOT, 'tests', 'fixtures', c.script)]);
    for (const c of API_KEY_CONNECTORS) {
      const r = await fetch(`${bases[c.id]}/_fixture/config`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(c.config(c.creds)) });
      assert.ok(r.ok, `${c.id} fixture config: ${r.status}`);
    }
    w.extraEnv = Object.assign({ AURORA_PROVIDER_TIMEOUT_MS: PROVIDER_TIMEOUT_MS }, ...API_KEY_CONNECTORS.map((c) => c.env(bases[c.id])));
  }, async (w, page) => {
    const names = (await w.request('GET', '/api/connectors/status')).json.connectors;
    for (const c of API_KEY_CONNECTORS) {
      for (const st of [400, 401, 403, 502]) t.allowHttp(new RegExp(`/${c.id}/connect$`), st); // the wrong key
      await page.locator(`[data-connector="${c.id}"]`).getByRole('button', { name: 'Manage' }).click();
      const dlg = page.getByRole('dialog', { name: names[c.id].name });
      await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
      const submit = async (good) => {
        for (const [label, v] of Object.entries(c.fill(c.creds, good, bases[c.id]))) await dlg.getByLabel(label, { exact: true }).fill(v);
        await dlg.getByRole('button', { name: 'Connect', exact: true }).click();
      };
      await submit(false);
      await dlg.getByRole('alert').getByText(c.refused).waitFor();
      assert.equal((await w.request('GET', '/api/connectors/status')).json.connectors[c.id].connected, false, `${c.id}: a refused key connects nothing`);
      await submit(true);
      await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
      for (const f of c.facts || []) await dlg.locator('dl.facts').getByText(f === null ? c.creds.account : f, { exact: true }).first().waitFor();
      assert.equal((await w.request('GET', '/api/connectors/status')).json.connectors[c.id].connected, true, `${c.id}: connected`);
      // the webhook URL to paste, as the server builds it: the user and (but for
      // PagerDuty, which names the org only for a user of several) the org
      if (c.webhook) {
        const want = `${w.origin}${c.webhook}/${w.userId}${c.webhookOrg === false ? '' : `?org_id=${w.orgId}`}`;
        await dlg.locator('code').filter({ hasText: new RegExp(`^${want.replace(/[.?*+^$()|[\]\\]/g, '\\$&')}$`) }).waitFor();
      }
      // the card behind the dialog follows, still titled with the connector's name
      const cardEl = page.locator(`[data-connector="${c.id}"]`);
      await cardEl.locator('.state[data-state="Connected"]').waitFor();
      assert.equal((await cardEl.locator('h3').textContent()).trim(), names[c.id].name, `${c.id}: the card's title`);
      await dlg.getByRole('button', { name: 'Disconnect' }).click();
      await dlg.getByRole('button', { name: `Yes, disconnect ${names[c.id].name}` }).click();
      await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
      assert.equal((await w.request('GET', '/api/connectors/status')).json.connectors[c.id].connected, false, `${c.id}: disconnected`);
      await dlg.getByRole('button', { name: 'Close' }).click();
      t.note(`${c.id}: refused ${c.refused}, connected, disconnected`);
    }
  });
}, { timeout: 240000 });

// GitHub, the guide's recommended path (Path A, GitHub App), in its own
// server: Install GitHub App opens GitHub's install page (github_api.mjs,
// which stands in for GitHub and verifies the App's JWTs with `jose`), whose
// Install goes to the App's Setup URL on this server; the popup ends on
// /connectors, the dialog shows the installation. The App's key pair is made
// here with Node's crypto and stored with `aurora-server secrets put`.
async function githubAppInstall(t, verify) {
  const APP_ID = '424242';
  const CLIENT_ID = 'Iv23liAuroraBrowser1';
  const SLUG = 'aurora-browser-test';
  const IID = 4711;
  const SECRET = `app-secret-${rnd(12)}`;
  let gh;
  await inOwnWorld(t, async (w) => {
    gh = await w.startFixture('github_api', ['node', path.join(ROOT, 'tests', 'fixtures', 'github_api.mjs')]);
    w.extraEnv = (x) => ({ GITHUB_APP_ID: APP_ID, GITHUB_APP_CLIENT_ID: CLIENT_ID, NEXT_PUBLIC_GITHUB_APP_SLUG: SLUG,
      GITHUB_APP_SETUP_URL: `${x.origin}/github/app/install/callback`, GH_BASE_URL: gh, GH_API_BASE_URL: `${gh}/api/v3/`,
      GITHUB_APP_KEY_REFRESH_S: '1', AURORA_PROVIDER_TIMEOUT_MS: PROVIDER_TIMEOUT_MS,
      ...(verify ? { GITHUB_APP_CLIENT_SECRET: SECRET } : {}) });
  }, async (w, page) => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    w.secretsPut('aurora/system/github-app/private-key', privateKey.export({ type: 'pkcs1', format: 'pem' }));
    const perms = { contents: 'read', issues: 'write', metadata: 'read', pull_requests: 'write' };
    const r = await fetch(`${gh}/_fixture/config`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({
      public_key: publicKey.export({ type: 'spki', format: 'pem' }), issuers: [CLIENT_ID],
      setup_url: `${w.origin}/github/app/install/callback`, install_id: IID,
      app: { client_id: CLIENT_ID, client_secret: SECRET, callback_urls: [`${w.origin}/github/callback`] },
      user: { login: 'octo-browser-admin', installations: [IID], memberships: { 'octo-browser': 'admin' } },
      authorize_page: true,
      installations: { [IID]: { id: IID, app_id: Number(APP_ID), app_slug: SLUG, target_type: 'Organization',
        account: { login: 'octo-browser', id: IID * 10, type: 'Organization' }, repository_selection: 'selected',
        permissions: perms, events: ['issues', 'pull_request'], suspended_at: null, created_at: '2026-01-01T00:00:00Z' } } }) });
    assert.ok(r.ok, `github fixture config: ${r.status}`);
    await page.locator('[data-connector="github"]').getByRole('button', { name: 'Manage' }).click();
    const dlg = page.getByRole('dialog', { name: 'GitHub' });
    await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
    await dlg.getByText('Recommended').waitFor();
    const [popup] = await Promise.all([page.waitForEvent('popup'), dlg.getByRole('button', { name: 'Install GitHub App' }).click()]);
    // GitHub's install page for this App, with the state the server made
    await popup.waitForURL((u) => u.href.startsWith(`${gh}/apps/${SLUG}/installations/new?state=`));
    await popup.getByRole('link', { name: 'Install' }).click();
    if (verify) {
      // GitHub asks the user to authorize the App: the server checks on
      // GitHub that this user can access the installation before binding it
      await popup.waitForURL((u) => u.href.startsWith(`${gh}/login/oauth/authorize?`));
      await popup.getByRole('link', { name: 'Authorize' }).click();
    }
    await popupClosed(popup);
    await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
    const inst = dlg.locator('li', { hasText: 'octo-browser' });
    await inst.waitFor();
    await inst.locator('.badge', { hasText: 'Connected' }).waitFor();
    await page.locator('#connectors-banner').getByText('github: connected').waitFor();
    const st = (await w.request('GET', '/api/connectors/status')).json.connectors.github;
    assert.equal(st.connected, true);
    assert.equal(st.name, 'GitHub');
    assert.equal(Number(st.installations), 1);
    const stats = await (await fetch(`${gh}/_fixture/stats`)).json();
    assert.equal(stats.install_pages, 1, 'one visit of the install page');
    assert.ok(stats.jwt_ok > 0 && stats.jwt_rejects === 0, `the App's JWTs verified: ${JSON.stringify(stats)}`);
    assert.equal(stats.authorizations, verify ? 1 : 0, 'user authorizations');
    assert.deepEqual(stats.exchanges, verify ? [{ ok: true }] : [], 'code exchanges');
    assert.equal(stats.revocations, verify ? 1 : 0, 'the user token revoked after the check');
    t.note(`installation ${IID} connected through the popup${verify ? ' after GitHub confirmed the installer' : ''}; ` +
      `${stats.jwt_ok} App JWTs verified by jose`);
  });
}

test('github_app_install_from_the_console', (t) => githubAppInstall(t, false), { timeout: 240000 });

// The same with the App's client secret: after the install GitHub's user
// authorization page comes up in the popup, and only its answer binds the
// installation. The second leg is tied to the browser like the first (its own
// flow cookie, set on the Setup URL's redirect), so this also shows Chromium
// carrying that cookie through GitHub and back.
test('github_app_install_checks_the_installer', (t) => githubAppInstall(t, true), { timeout: 240000 });

// Slack: Connect Slack opens Slack's install page (slack_api.mjs, which
// stands in for slack.com and its Web API and issues the code), Allow comes
// back to this server's /slack/callback, the popup closes; the dialog then
// lists the workspace's channels and saves the incidents channel; Disconnect
// revokes the bot token at Slack.
test('slack_install_choose_channel_disconnect', async (t) => {
  let sl;
  const CLIENT_SECRET = `slack-${crypto.randomBytes(8).toString('hex')}`;
  await inOwnWorld(t, async (w) => {
    sl = await w.startFixture('slack_api', ['node', path.join(ROOT, 'tests', 'fixtures', 'slack_api.mjs')]);
    w.extraEnv = (x) => ({ SLACK_CLIENT_ID: 'slack-browser', SLACK_CLIENT_SECRET: CLIENT_SECRET,
      SLACK_SIGNING_SECRET: crypto.randomBytes(16).toString('hex'), SLACK_REDIRECT_URI: `${x.origin}/slack/callback`,
      SLACK_AUTHORIZE_URL: `${sl}/oauth/v2/authorize`, SLACK_TOKEN_URL: `${sl}/oauth.v2.access`, SLACK_API_BASE_URL: sl,
      AURORA_PROVIDER_TIMEOUT_MS: PROVIDER_TIMEOUT_MS });
  }, async (w, page) => {
    const r = await fetch(`${sl}/_fixture/config`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({
      client_id: 'slack-browser', client_secret: CLIENT_SECRET, redirect_uri: `${w.origin}/slack/callback`,
      team_id: 'T0BROWSER', team_name: 'Acme Browser' }) });
    assert.ok(r.ok, `slack fixture config: ${r.status}`);
    await page.locator('[data-connector="slack"]').getByRole('button', { name: 'Manage' }).click();
    const dlg = page.getByRole('dialog', { name: 'Slack' });
    await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
    const [popup] = await Promise.all([page.waitForEvent('popup'), dlg.getByRole('button', { name: 'Connect Slack' }).click()]);
    await popup.getByRole('heading', { name: /requesting permission to access Acme Browser/ }).waitFor();
    await popup.getByRole('link', { name: 'Allow' }).click();
    await popupClosed(popup);
    await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
    await dlg.locator('dl.facts').getByText('Acme Browser', { exact: true }).waitFor();
    // the incidents channel, from the workspace's channel list
    const channel = dlg.getByLabel('Channel', { exact: true });
    await channel.locator('option[value="C0INCIDENT"]').waitFor({ state: 'attached' });
    await channel.selectOption('C0INCIDENT');
    await dlg.getByRole('button', { name: 'Use this channel' }).click();
    await page.locator('#announcer').getByText('Incidents channel saved').waitFor({ state: 'attached' });
    // the dialog's facts follow (the status names the channel now)
    await dlg.locator('dl.facts').getByText('incidents', { exact: true }).waitFor();
    let st = (await w.request('GET', '/api/connectors/status')).json.connectors.slack;
    assert.equal(st.connected, true);
    assert.equal(st.team_id, 'T0BROWSER');
    assert.equal(st.channel_id, 'C0INCIDENT');
    const tokenCall = (await (await fetch(`${sl}/_fixture/stats`)).json()).calls.find((c) => c.method === 'oauth.v2.access');
    assert.equal(tokenCall.body.redirect_uri, `${w.origin}/slack/callback`, 'the code exchanged with the redirect URI Slack sent it to');
    // disconnect: the bot token is revoked at Slack
    await dlg.getByRole('button', { name: 'Disconnect' }).click();
    await dlg.getByRole('button', { name: 'Yes, disconnect Slack' }).click();
    await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
    st = (await w.request('GET', '/api/connectors/status')).json.connectors.slack;
    assert.equal(st.connected, false);
    const calls = (await (await fetch(`${sl}/_fixture/stats`)).json()).calls.map((c) => c.method);
    assert.ok(calls.includes('auth.revoke'), `auth.revoke called: ${calls.join(', ')}`);
  });
}, { timeout: 240000 });

// OAuth connects through the popup, each against its provider's stand-in
// (oauth2-mock-server with the provider's client and grant checks, as the
// integration tests use them): the provider's authorize endpoint sends the
// browser back to this server's callback with a code, the server exchanges
// it, the popup ends on /connectors and closes; the dialog shows the account,
// and its Disconnect removes the connection.
const POPUP_CONNECTORS = [
  { id: 'bitbucket', script: 'bitbucket_api.mjs', button: 'Connect Bitbucket', secret: `bb-${rnd(8)}`,
    env: (u, o, sec) => ({ BB_OAUTH_CLIENT_ID: 'bb-browser', BB_OAUTH_CLIENT_SECRET: sec, NEXT_PUBLIC_BACKEND_URL: o,
      BITBUCKET_AUTHORIZE_URL: `${u}/site/oauth2/authorize`, BITBUCKET_TOKEN_URL: `${u}/site/oauth2/access_token`,
      BITBUCKET_API_BASE_URL: `${u}/2.0` }),
    config: (o, sec) => ({ client_id: 'bb-browser', client_secret: sec, expires_in: 7200 }),
    facts: ['jdoe', 'Jane Doe'] },
  { id: 'pagerduty', script: 'pagerduty_api.mjs', button: 'Connect with PagerDuty', secret: `pd-${rnd(8)}`,
    env: (u, o, sec) => ({ PAGERDUTY_CLIENT_ID: 'pd-browser', PAGERDUTY_CLIENT_SECRET: sec, NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH: 'true',
      PAGERDUTY_REDIRECT_URI: `${o}/pagerduty/oauth/callback`, PAGERDUTY_OAUTH_AUTHORIZE_URL: `${u}/oauth/authorize`,
      PAGERDUTY_OAUTH_TOKEN_URL: `${u}/oauth/token`, PAGERDUTY_OAUTH_REVOKE_URL: `${u}/oauth/revoke`, PAGERDUTY_API_BASE_URL: u }),
    config: (o, sec) => ({ client_id: 'pd-browser', client_secret: sec, redirect_uris: [`${o}/pagerduty/oauth/callback`] }),
    facts: ['oauth@example.test', 'OAuth User'] },
  { id: 'google_chat', script: 'google_chat_api.mjs', button: 'Connect Google Chat', secret: `gc-${rnd(8)}`,
    env: (u, o, sec) => ({ GOOGLE_CHAT_CLIENT_ID: 'gchat-browser', GOOGLE_CHAT_CLIENT_SECRET: sec,
      GOOGLE_CHAT_REDIRECT_URI: `${o}/google-chat/callback`, GOOGLE_CHAT_AUTH_URL: `${u}/o/oauth2/v2/auth`,
      GOOGLE_CHAT_TOKEN_URL: `${u}/token`, GOOGLE_CHAT_REVOKE_URL: `${u}/revoke`, GOOGLE_CHAT_API_BASE_URL: u,
      GOOGLE_CHAT_CERTS_URL: `${u}/certs/x509`, GOOGLE_CHAT_OIDC_CERTS_URL: `${u}/certs/jwks` }),
    config: (o, sec) => ({ client_id: 'gchat-browser', client_secret: sec, redirect_uris: [`${o}/google-chat/callback`] }),
    facts: [] },
  { id: 'atlassian', script: 'atlassian_api.mjs', button: 'Connect with Atlassian', secret: `atl-${rnd(8)}`,
    env: (u, o, sec) => ({ ATLASSIAN_CLIENT_ID: 'atl-browser', ATLASSIAN_CLIENT_SECRET: sec,
      ATLASSIAN_REDIRECT_URI: `${o}/atlassian/callback`, ATLASSIAN_AUTH_URL: `${u}/authorize`,
      ATLASSIAN_TOKEN_URL: `${u}/oauth/token`, ATLASSIAN_API_BASE_URL: u,
      NEXT_PUBLIC_ENABLE_CONFLUENCE: 'true', NEXT_PUBLIC_ENABLE_JIRA: 'true' }),
    config: (o, sec) => ({ client_id: 'atl-browser', client_secret: sec, redirect_uris: [`${o}/atlassian/callback`], mode: 'both', expires_in: 3600 }),
    facts: ['https://acme.atlassian.net'] },
  { id: 'github', script: 'github_oauth.mjs', button: 'Connect via OAuth', secret: `gh-${rnd(8)}`,
    env: (u, o, sec) => ({ GITHUB_AUTH_MODE: 'oauth', GH_OAUTH_CLIENT_ID: 'Ov23liBrowser', GH_OAUTH_CLIENT_SECRET: sec,
      GH_OAUTH_REDIRECT_URI: `${o}/github/callback`,
      GH_BASE_URL: u, GH_API_BASE_URL: `${u}/api/v3` }),
    config: (o, sec) => ({ client_id: 'Ov23liBrowser', client_secret: sec, login: 'octo-browser' }),
    facts: [] },
  { id: 'ovh', script: 'ovh_oauth.mjs', button: 'Connect with OVH', secret: `ovh-${rnd(8)}`,
    env: (u, o, sec) => ({ NEXT_PUBLIC_ENABLE_OVH: 'true', OVH_EU_CLIENT_ID: 'eu-browser', OVH_EU_CLIENT_SECRET: sec,
      OVH_EU_REDIRECT_URI: `${o}/ovh_api/ovh/oauth2/callback`, OVH_EU_AUTH_BASE: `${u}/auth`, OVH_EU_API_BASE: `${u}/1.0`,
      OVH_CA_REDIRECT_URI: 'https://api.aurora.example.test/ovh/oauth2/callback' }),
    config: (o, sec) => ({ client_id: 'eu-browser', client_secret: sec, redirect_uris: [`${o}/ovh_api/ovh/oauth2/callback`], nichandle: 'eu12345-ovh' }),
    // each region's callback as the server has it (OVH_<REGION>_REDIRECT_URI)
    before: async (dlg, w) => {
      const region = dlg.getByLabel('Region', { exact: true });
      await region.selectOption('ca');
      await dlg.locator('code', { hasText: 'https://api.aurora.example.test/ovh/oauth2/callback' }).waitFor();
      await region.selectOption('eu');
      await dlg.locator('code', { hasText: `${w.origin}/ovh_api/ovh/oauth2/callback` }).waitFor();
    },
    facts: ['eu12345-ovh'] },
];

test('oauth_popup_connects_reach_their_providers', async (t) => {
  const bases = {};
  await inOwnWorld(t, async (w) => {
    for (const c of POPUP_CONNECTORS) bases[c.id] = await w.startFixture(c.id, ['node', path.join(ROOT, 'tests', 'fixtures', c.script)]);
    w.extraEnv = (x) => Object.assign({ AURORA_PROVIDER_TIMEOUT_MS: PROVIDER_TIMEOUT_MS }, ...POPUP_CONNECTORS.map((c) => c.env(bases[c.id], x.origin, c.secret)));
  }, async (w, page) => {
    const names = (await w.request('GET', '/api/connectors/status')).json.connectors;
    for (const c of POPUP_CONNECTORS) {
      const r = await fetch(`${bases[c.id]}/_fixture/config`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(c.config(w.origin, c.secret)) });
      assert.ok(r.ok, `${c.id} fixture config: ${r.status}`);
      await page.locator(`[data-connector="${c.id}"]`).getByRole('button', { name: 'Manage' }).click();
      const dlg = page.getByRole('dialog', { name: names[c.id].name });
      await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
      if (c.before) await c.before(dlg, w);
      const [popup] = await Promise.all([page.waitForEvent('popup'), dlg.getByRole('button', { name: c.button }).click()]);
      await popupClosed(popup);
      await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
      for (const f of c.facts) await dlg.getByText(f, { exact: true }).first().waitFor();
      const st = (await w.request('GET', '/api/connectors/status')).json.connectors[c.id];
      assert.equal(st.connected, true, `${c.id}: connected`);
      assert.equal(st.name, names[c.id].name, `${c.id}: still named as the connector`);
      await dlg.getByRole('button', { name: 'Disconnect' }).click();
      await dlg.getByRole('button', { name: `Yes, disconnect ${names[c.id].name}` }).click();
      await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
      assert.equal((await w.request('GET', '/api/connectors/status')).json.connectors[c.id].connected, false, `${c.id}: disconnected`);
      await dlg.getByRole('button', { name: 'Close' }).click();
      t.note(`${c.id}: connected through the popup, disconnected`);
    }
  });
}, { timeout: 240000 });

// Azure, both ways the guide offers: a service principal's form (the
// Microsoft identity platform and Azure Resource Manager played by
// azure_login.mjs, oauth2-mock-server with Microsoft's client checks, and
// azure_management.py, which verifies the tokens against its JWKS), then
// "Sign in with Microsoft" through the popup with Aurora's own App.
test('azure_service_principal_then_microsoft_sign_in', async (t) => {
  const APP = crypto.randomUUID(), APP_SECRET = `app-${rnd(8)}`;
  const SP = crypto.randomUUID(), SP_SECRET = `sp~${rnd(8)}`;
  const TENANT = crypto.randomUUID(), HOME = crypto.randomUUID();
  const subs = [{ subscriptionId: crypto.randomUUID(), displayName: 'old', state: 'Disabled' },
    { subscriptionId: crypto.randomUUID(), displayName: 'prod', state: 'Enabled' }];
  let login, mgmt;
  const ctl = async (base, p, body) => {
    const r = await fetch(`${base}${p}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    assert.ok(r.ok, `${p}: ${r.status}`);
  };
  await inOwnWorld(t, async (w) => {
    login = await w.startFixture('azure_login', ['node', path.join(ROOT, 'tests', 'fixtures', 'azure_login.mjs')]);
    mgmt = await w.startFixture('azure_management', ['python3', path.join(ROOT, 'tests', 'fixtures', 'azure_management.py'),
      '--issuer', login, '--jwks', `${login}/discovery/v2.0/keys`]);
    await ctl(mgmt, '/_fixture/subscriptions', { tenant: TENANT, pages: [subs] });
    await ctl(mgmt, '/_fixture/subscriptions', { tenant: HOME, pages: [[{ subscriptionId: crypto.randomUUID(), displayName: 'home', state: 'Enabled' }]] });
    w.extraEnv = (x) => ({ AZURE_LOGIN_BASE: login, AZURE_MANAGEMENT_BASE: mgmt, AZURE_CLIENT_ID: APP, AZURE_CLIENT_SECRET: APP_SECRET,
      AZURE_REDIRECT_URI: `${x.origin}/azure/callback`, AURORA_PROVIDER_TIMEOUT_MS: PROVIDER_TIMEOUT_MS });
  }, async (w, page) => {
    await ctl(login, '/_fixture/config', { apps: { [APP]: { secret: APP_SECRET, redirect_uris: [`${w.origin}/azure/callback`] },
      [SP]: { secret: SP_SECRET, redirect_uris: [] } }, tenants: [TENANT, HOME], home_tenant: HOME });
    t.allowHttp(/\/azure\/connect$/, 400);
    t.allowHttp(/\/azure\/connect$/, 401);
    await page.locator('[data-connector="azure"]').getByRole('button', { name: 'Manage' }).click();
    const dlg = page.getByRole('dialog', { name: 'Microsoft Azure' });
    await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
    const fill = async (secret) => {
      await dlg.getByLabel('Directory (tenant) ID', { exact: true }).fill(TENANT);
      await dlg.getByLabel('Application (client) ID', { exact: true }).fill(SP);
      await dlg.getByLabel('Client secret', { exact: true }).fill(secret);
      await dlg.getByRole('button', { name: 'Connect', exact: true }).click();
    };
    await fill(`wrong-${rnd(4)}`);
    await dlg.getByRole('alert').getByText('AZURE_INVALID_CREDENTIALS').waitFor();
    await fill(SP_SECRET);
    await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
    const facts = dlg.locator('dl.facts');
    await facts.locator('dt:text-is("Tenant") + dd').getByText(TENANT, { exact: true }).waitFor();
    await facts.getByText(subs[1].subscriptionId, { exact: true }).waitFor(); // the first Enabled one
    let st = (await w.request('GET', '/api/connectors/status')).json.connectors.azure;
    assert.equal(st.auth, 'service_principal');
    assert.equal(st.client_id, SP);
    await dlg.getByRole('button', { name: 'Disconnect' }).click();
    await dlg.getByRole('button', { name: 'Yes, disconnect Microsoft Azure' }).click();
    await dlg.locator('.dialog-head .state[data-state="Not connected"]').waitFor();
    // Aurora's App: Microsoft's sign-in in the popup, back to /azure/callback
    const [popup] = await Promise.all([page.waitForEvent('popup'), dlg.getByRole('button', { name: 'Sign in with Microsoft' }).click()]);
    await popupClosed(popup);
    await dlg.locator('.dialog-head .state[data-state="Connected"]').waitFor();
    st = (await w.request('GET', '/api/connectors/status')).json.connectors.azure;
    assert.equal(st.connected, true);
    assert.notEqual(st.auth, 'service_principal', `signed in with Microsoft: ${JSON.stringify(st)}`);
    // each fact under its own label: the tenant is not the signed-in user
    const fact = (label) => facts.locator(`dt:text-is("${label}") + dd`);
    await fact('Signed in as').getByText('alice@contoso.example', { exact: true }).waitFor();
    assert.equal((await fact('Tenant').textContent()).trim(), HOME);
    t.note(`service principal (${subs.length} subscriptions) and Microsoft sign-in (auth ${st.auth}) connected`);
  });
}, { timeout: 240000 });

test('incidents_with_correlated_alerts', async (t) => {
  const w = t.world;
  const fp = `fp-${Date.now()}`;
  for (const [i, state] of [[0, 'firing'], [1, 'firing']]) {
    const r = await w.request('POST', '/internal/incidents/alerts', { auth: false,
      headers: { 'X-Internal-Secret': w.secret, 'X-Org-ID': w.orgId },
      body: { source: 'grafana', delivery_id: `browser-${fp}-${i}`, fingerprint: fp, state,
        title: i ? 'Checkout latency high (again)' : 'Checkout latency high', service: 'checkout', severity: 'critical',
        message: `p99 over 2 s (${i})`, url: 'https://grafana.example.test/alerting/1' } });
    assert.ok([200, 201].includes(r.status), `intake ${r.status} ${r.text}`);
  }
  const page = await t.page();
  await page.goto(`${w.origin}/incidents`);
  await page.getByRole('heading', { level: 1, name: 'Incidents' }).waitFor();
  await page.getByRole('link', { name: 'Checkout latency high', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'Checkout latency high' }).waitFor();
  await page.getByRole('heading', { name: 'Correlated alerts (2)' }).waitFor();
  assert.equal(await page.locator('tr[data-alert-id]').count(), 2);
  await page.getByRole('button', { name: 'Resolve incident' }).click();
  await page.locator('.facts .badge', { hasText: 'resolved' }).waitFor();
});

test('works_at_360px', async (t) => {
  const ctx = await t.context({ viewport: { width: 360, height: 740 }, storageState: await SHARED.storage() });
  const page = await t.page(ctx);
  for (const [p, h1] of [['/connectors', 'Connectors'], ['/clusters', 'Kubernetes'], ['/run', 'Run'], ['/audit', 'Audit'], ['/incidents', 'Incidents']]) {
    await page.goto(`${t.world.origin}${p}`);
    await page.getByRole('heading', { level: 1, name: h1 }).waitFor();
    await page.locator('main .loading').first().waitFor({ state: 'detached' });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 360, `${p}: the page is ${wide}px wide at a 360px viewport`);
    const nav = await page.getByRole('navigation', { name: 'Main' }).boundingBox();
    assert.ok(nav && nav.x >= 0 && nav.x + nav.width <= 361, `${p}: navigation fits`);
  }
  // a dialog fits as well, and its Copy buttons are reachable
  await page.goto(`${t.world.origin}/connectors`);
  await page.locator('[data-connector="grafana"]').getByRole('button', { name: 'Manage' }).click();
  const dlg = page.getByRole('dialog', { name: 'Grafana' });
  await dlg.waitFor();
  const box = await dlg.boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 360, `dialog fits (${JSON.stringify(box)})`);
  const copy = await dlg.getByRole('button', { name: 'Copy' }).first().boundingBox();
  assert.ok(copy.x + copy.width <= 360, 'Copy button on screen');
});

test('hostile_strings_render_as_text', async (t) => {
  // names and titles come from users and providers: they must show as text,
  // never become markup (the CSP would block a script; nothing may even try)
  const evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
  const tok = await t.world.request('POST', '/api/kubectl/tokens', { body: { cluster_name: `x${evil}`.slice(0, 100) } });
  assert.equal(tok.status, 201, tok.text);
  const r = await t.world.request('POST', '/internal/incidents/alerts', { auth: false,
    headers: { 'X-Internal-Secret': t.world.secret, 'X-Org-ID': t.world.orgId },
    body: { source: 'grafana', delivery_id: `evil-${Date.now()}`, fingerprint: `evil-${Date.now()}`, state: 'firing',
      title: `Disk full ${evil}`, service: evil, severity: 'high', message: evil, url: 'javascript:alert(1)' } });
  assert.ok([200, 201].includes(r.status), r.text);
  const page = await t.page();
  let dialogs = 0;
  page.on('dialog', (d) => { dialogs += 1; d.dismiss(); });
  await page.goto(`${t.world.origin}/clusters`);
  await page.locator(`tr[data-cluster-id="${tok.json.cluster_id}"]`).getByText('<img src=x', { exact: false }).first().waitFor();
  await page.goto(`${t.world.origin}/incidents/${r.json.incident_id}`);
  await page.getByRole('heading', { level: 1, name: `Disk full ${evil}` }).waitFor();
  await page.getByText('Correlated alerts (1)').waitFor();
  assert.equal(await page.locator('main img, main script').count(), 0, 'no element made from the strings');
  assert.equal(await page.locator('a[href^="javascript:"]').count(), 0, 'no javascript: link');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(dialogs, 0);
  await t.world.request('DELETE', `/api/kubectl/connections/${tok.json.cluster_id}`);
  await t.world.request('POST', `/api/incidents/${r.json.incident_id}/close`, { body: {} });
});

test('crafted_popup_result_links_show_no_text_of_theirs', async (t) => {
  // /connectors?provider=X&status=Y is where an OAuth popup lands, and anyone
  // can link to it (or send the popup there from the provider's page): what
  // the console says there must be its own words, never the URL's
  const spoof = 'Security notice: your API key leaked, paste it at evil.example';
  const q = `provider=${encodeURIComponent(spoof)}&status=${encodeURIComponent('call +1 555 0100')}`;
  const page = await t.page();
  await page.goto(`${t.world.origin}/connectors?${q}`);
  await page.locator('[data-connector="kubernetes"]').waitFor();
  assert.equal(await page.locator('#connectors-banner').textContent(), '', 'a crafted link puts no text on the page');
  assert.equal(new URL(page.url()).search, '', 'the query is dropped either way');
  // a known connector with a status the server sends still says so
  await page.goto(`${t.world.origin}/connectors?provider=github&status=requested`);
  await page.locator('#connectors-banner')
    .getByText('github: installation requested; an owner must approve it', { exact: true }).waitFor();
  await page.goto(`${t.world.origin}/connectors?provider=github&status=${encodeURIComponent('<b>hacked</b>')}`);
  await page.locator('[data-connector="kubernetes"]').waitFor();
  assert.equal(await page.locator('#connectors-banner').textContent(), '', 'an unknown status shows nothing');
  // the same URL in a window this page opened: it posts the result here
  // (same origin, so the message is accepted); still no text of its own
  // (a listener added after the page's own runs after it for each message)
  await page.evaluate(() => window.addEventListener('message', (e) => { window.__auroraGot = e.data; }));
  const [popup] = await Promise.all([page.waitForEvent('popup'),
    page.evaluate((u) => { window.open(u, 'aurora-oauth'); }, `/connectors?${q}`)]);
  await popupClosed(popup);
  await page.waitForFunction(() => window.__auroraGot && window.__auroraGot.aurora_oauth);
  assert.equal(await page.locator('#connectors-banner').textContent(), '', 'a forged popup message puts no text on the page');
  assert.equal(await page.getByText(spoof, { exact: false }).count(), 0);
});

test('another_sites_window_keeps_no_hold_on_the_console', async (t) => {
  // A page of another site that opens the console (window.open) must not
  // keep a live reference to it: with one it could later navigate the
  // signed-in console to a look-alike sign-in page. The same server reached
  // as localhost is another origin (and site) than 127.0.0.1.
  const hostile = await t.page();
  await hostile.goto(`${t.world.origin.replace('127.0.0.1', 'localhost')}/health`);
  const open = async (path) => {
    const [w] = await Promise.all([hostile.waitForEvent('popup'),
      hostile.evaluate((u) => { window.__console = window.open(u); }, `${t.world.origin}${path}`)]);
    return w;
  };
  for (const [path, heading] of [['/connectors', 'Connectors'], ['/clusters', 'Kubernetes']]) {
    const w = await open(path);
    await w.getByRole('heading', { level: 1, name: heading }).waitFor();
    assert.equal(await w.evaluate(() => window.opener === null), true, `${path}: the console has no opener`);
    assert.equal(await hostile.evaluate(() => window.__console.closed), true, `${path}: the opener's reference is dead`);
    await w.close();
  }
  // where an OAuth popup lands (served without the policy, so that the
  // console's own popups keep their opener): opened by another site, it
  // moves to /connectors, which has it, and still says what it landed with
  const w = await open('/connectors?provider=github&status=requested');
  await w.locator('#connectors-banner')
    .getByText('github: installation requested; an owner must approve it', { exact: true }).waitFor();
  assert.equal(new URL(w.url()).pathname + new URL(w.url()).search, '/connectors', 'moved to /connectors');
  assert.equal(await w.evaluate(() => window.opener === null), true, 'landing: the console has no opener');
  assert.equal(await hostile.evaluate(() => window.__console.closed), true, "landing: the opener's reference is dead");
  await w.close();
});

// WCAG 2.x contrast of two sRGB colours
function contrast(fg, bg) {
  const lum = ([r, g, b]) => {
    const f = (c) => { const v = c / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}

test('controls_are_labelled_and_text_has_contrast', async (t) => {
  const page = await t.page();
  const problems = [];
  const counted = { controls: 0, texts: 0 };
  const audit = async (where) => {
    const r = await page.evaluate(() => {
      const out = { unlabelled: [], colours: [], controls: 0 };
      const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
      for (const el of document.querySelectorAll('input, select, textarea, button, a[href]')) {
        if (!visible(el)) continue;
        out.controls += 1;
        const name = (el.labels && [...el.labels].map((l) => l.textContent).join(' ').trim()) ||
          el.getAttribute('aria-label') || (el.getAttribute('aria-labelledby') && document.getElementById(el.getAttribute('aria-labelledby'))?.textContent) ||
          (['BUTTON', 'A'].includes(el.tagName) ? el.textContent.trim() : '');
        if (!name) out.unlabelled.push(el.outerHTML.slice(0, 120));
      }
      const parse = (c) => (c.match(/[\d.]+/g) || []).map(Number);
      const bgOf = (el) => {
        for (let e = el; e; e = e.parentElement) {
          const c = parse(getComputedStyle(e).backgroundColor);
          if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
        }
        return [255, 255, 255];
      };
      for (const el of document.querySelectorAll('body *')) {
        if (!visible(el) || el.closest('[disabled], .btn:disabled')) continue;
        const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
        if (!own) continue;
        const cs = getComputedStyle(el);
        out.colours.push({ what: `${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 30)}"`, fg: parse(cs.color).slice(0, 3), bg: bgOf(el) });
      }
      return out;
    });
    counted.controls += r.controls;
    counted.texts += r.colours.length;
    for (const u of r.unlabelled) problems.push(`${where}: control without a name: ${u}`);
    for (const c of r.colours) {
      const ratio = contrast(c.fg, c.bg);
      if (ratio < 4.5) problems.push(`${where}: contrast ${ratio.toFixed(2)} < 4.5 for ${c.what}`);
    }
  };
  for (const p of ['/connectors', '/clusters', '/run', '/audit', '/incidents']) {
    await page.goto(`${t.world.origin}${p}`);
    await page.locator('main h1').waitFor();
    await page.locator('main .loading').first().waitFor({ state: 'detached' });
    await audit(p);
  }
  await page.goto(`${t.world.origin}/clusters`);
  await page.getByRole('button', { name: 'Add Cluster' }).click();
  await audit('/clusters Add Cluster');
  // every connector's Manage dialog
  await page.goto(`${t.world.origin}/connectors`);
  t.allowHttp(/\/aws\/onboarding$/, 503);
  t.allowHttp(/\/gcp\/projects$/, 404);
  await page.locator('[data-connector="bitbucket"]').waitFor();
  const ids = await page.locator('[data-connector]').evaluateAll((els) => els.map((e) => e.dataset.connector).filter((x) => x !== 'kubernetes'));
  for (const id of ids) {
    await page.locator(`[data-connector="${id}"]`).getByRole('button', { name: 'Manage' }).click();
    const dlg = page.locator(`dialog[data-dialog="${id}"]`);
    await dlg.waitFor();
    await dlg.locator('.loading').first().waitFor({ state: 'detached' });
    await audit(`${id} dialog`);
    await page.keyboard.press('Escape');
    await dlg.waitFor({ state: 'detached' });
  }
  assert.deepEqual(problems, []);
  assert.ok(counted.controls > 100 && counted.texts > 300, JSON.stringify(counted));
  t.note(`${counted.controls} controls named, ${counted.texts} text colours at >= 4.5:1`);
});

test('connector_states_follow_the_guide', async () => {
  // states.js is plain logic: checked here directly, for the GitHub states
  // no fixture in this run produces (installations, suspension, new permissions)
  const { connectorState } = await import('../../server/console/assets/states.js');
  const cases = [
    [['gcp', undefined], 'Not connected'],
    [['gcp', { connected: false }], 'Not connected'],
    [['gcp', { connected: true }], 'Connected'],
    [['ovh', { enabled: false, connected: false }], 'Disabled'],
    [['jira', { enabled: false, connected: true }], 'Disabled'],
    [['grafana', { connected: false, status: 'disabled' }], 'Disabled'],
    [['grafana', { connected: true, status: 'active' }], 'Connected'],
    [['github', { connected: false, installations: 0, suspended: 0, pending: 0 }], 'Not connected'],
    [['github', { connected: true, installations: 1, suspended: 0, pending: 0 }], 'Connected'],
    [['github', { connected: true, installations: 2, suspended: 0, pending: 1 }], 'Pending permissions'],
    [['github', { connected: false, installations: 1, suspended: 1, pending: 0 }], 'Suspended'],
    [['github', { connected: false, installations: 0, oauth_connected: true, auth_mode: 'app' }], 'Available'],
  ];
  for (const [args, want] of cases) assert.equal(connectorState(...args).label, want, JSON.stringify(args));
});

// Last: everything the pages asked the server for during the tests above is
// a page, an asset, or a route of docs/openapi.json with that method.
test('pages_use_only_documented_routes', async (t) => {
  const spec = JSON.parse(fs.readFileSync(path.join(ROOT, 'docs', 'openapi.json'), 'utf8'));
  const routes = Object.entries(spec.paths).map(([p, ops]) => ({
    re: new RegExp(`^${p.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}$`),
    methods: new Set(Object.keys(ops).map((m) => m.toUpperCase())),
  }));
  const pages = /^\/(|connectors|clusters(\/[^/]+)?|run|audit|incidents(\/[^/]+)?|signin)$/;
  const undocumented = [];
  for (const r of [...t.world.seenRequests].sort()) {
    const [method, p] = r.split(' ');
    if (method === 'GET' && (pages.test(p) || /^\/console\/[A-Za-z0-9._-]+$/.test(p) || p === '/favicon.ico')) continue;
    if (!routes.some((x) => x.re.test(p) && x.methods.has(method))) undocumented.push(r);
  }
  assert.deepEqual(undocumented, [], 'requests to routes docs/openapi.json does not have');
  assert.ok(t.world.seenRequests.size > 10, `requests seen: ${t.world.seenRequests.size}`);
  t.note(`${t.world.seenRequests.size} distinct requests, all documented`);
});

// ---------------------------------------------------------------------------
// Redirect URIs on another host than the console's (the API behind its own
// name, as the guide's <API_URL>): the dialogs must show these, not guess
// from the page's origin. No credentials come with them here.
const API_HOST = 'https://api.aurora.example.test';

async function main() {
  const world = new World({ extraEnv: { AZURE_REDIRECT_URI: `${API_HOST}/azure/callback`,
    GH_OAUTH_REDIRECT_URI: `${API_HOST}/github/callback`, SLACK_REDIRECT_URI: `${API_HOST}/slack/callback`,
    GITHUB_APP_SETUP_URL: `${API_HOST}/github/app/install/callback` } });
  let result = { passed: 0, failed: 1 };
  let setupError = null;
  try {
    await world.start();
    result = await run(world, async (t, shared) => {
      const page = await t.page(shared.ctx);
      t.allowHttp(SESSION, 401);
      await signIn(page, world);
      SHARED.storage = () => shared.ctx.storageState();
      await page.close();
    }, process.argv.slice(2));
  } catch (e) {
    setupError = e;
  }
  const problems = await world.stop(!!setupError || result.failed > 0);
  if (setupError) console.log(`FAIL setup\n    ${String(setupError.stack || setupError).split('\n').join('\n    ')}`);
  if (problems.length) {
    console.log('FAIL processes (server, agents, fixtures)');
    for (const p of problems) console.log(`    ${p.split('\n').join('\n    ')}`);
    result.failed += 1;
  } else if (!setupError) {
    result.passed += 1;
    console.log('PASS processes (server, agents, fixtures exit cleanly, no sanitizer report)');
  }
  if (problems.length || setupError || result.failed) console.log(`    temp dir kept: ${world.tmp}`);
  console.log(`${result.passed} passed, ${result.failed} failed`);
  process.exit(result.failed ? 1 : 0);
}

main();
