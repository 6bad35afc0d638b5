'use strict';
// Tests of the agent's Helm chart in chart/agent/ (required by chart_test.js, run by
// tests/chart/run.sh; helpers, the renderer and the strict Kubernetes validation are in
// lib.js). Values files: tests/chart/agent/values-*.yaml.
//
// Values: chart/agent/values.schema.json is compiled with ajv (draft-07) and every values
// file is validated with it, independently of the renderer's gojsonschema check.

const {
  fs, path, assert, Ajv, ROOT, HERE, NS, test, readYaml, writeValues,
  objs, one, container, envMap, envValue, validateK8s, apiServerChecks, mergeInto, leaves, at,
} = require('./lib');
const lib = require('./lib');

const CHART = path.join(ROOT, 'chart', 'agent');
const VALUES = path.join(HERE, 'agent');
const TOKEN = 'aurora_kubectl_ChartTestToken_not-a-real-secret_0123456789abcdefghijklmnopqrstu';
const RELEASE = 'aurora-kubectl-agent';

// The agent chart, its release name and values directory unless a test names others.
const withDefaults = (opts = {}) => Object.assign({ chart: CHART, name: RELEASE, valuesDir: VALUES }, opts);
const render = (files, opts) => lib.render(files, withDefaults(opts));
const mustRender = (files, opts) => lib.mustRender(files, withDefaults(opts));
const mustFail = (files, re, opts) => lib.mustFail(files, re, withDefaults(opts));

// ------------------------------------------------------------------ values schema (ajv)

const schema = JSON.parse(fs.readFileSync(path.join(CHART, 'values.schema.json'), 'utf8'));
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
let validateValues;

function valuesErrors(v) {
  if (validateValues(v)) return [];
  return validateValues.errors.map((e) => `${e.instancePath || '/'} ${e.message}`);
}


// ================================================================== tests

console.log('# chart/agent/: rendered with aurora-chart-render, a stand-in for `helm template`');
console.log('#   (Go text/template + Sprig + sigs.k8s.io/yaml + gojsonschema from Debian; Helm 3 semantics)');
console.log(`# Kubernetes schemas: kubernetes-models ${require('kubernetes-models/package.json').version} (ajv), strict: unknown fields fail`);

// ---------------------------------------------------------------- files parse

const chartYamlFiles = ['Chart.yaml', 'values.yaml'].map((f) => path.join(CHART, f))
  .concat(fs.readdirSync(VALUES).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(VALUES, f)))
  .concat(fs.readdirSync(path.join(HERE, 'fixtures')).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(HERE, 'fixtures', f)));

test('chart YAML files parse (YAML 1.1, no duplicate keys): ' + chartYamlFiles.map((f) => path.relative(ROOT, f)).join(', '), () => {
  for (const f of chartYamlFiles) {
    const docs = readYaml(f);
    assert.strictEqual(docs.length, 1, `${f}: ${docs.length} documents`);
    assert.ok(docs[0] && typeof docs[0] === 'object' && !Array.isArray(docs[0]), `${f}: not a map`);
  }
});

test('templates/ holds only .yaml manifests, _helpers.tpl and NOTES.txt; .helmignore parses', () => {
  for (const f of fs.readdirSync(path.join(CHART, 'templates'))) {
    assert.ok(/\.yaml$/.test(f) || f === '_helpers.tpl' || f === 'NOTES.txt', `unexpected file templates/${f}`);
  }
  for (const l of fs.readFileSync(path.join(CHART, '.helmignore'), 'utf8').split('\n')) {
    assert.ok(!/^\s+\S/.test(l), `.helmignore: leading blanks in ${JSON.stringify(l)}`);
  }
});

test('Chart.yaml: apiVersion v2, name aurora-kubectl-agent, SemVer version, appVersion, kubeVersion, known fields only', () => {
  const c = readYaml(path.join(CHART, 'Chart.yaml'))[0];
  const known = ['apiVersion', 'name', 'version', 'kubeVersion', 'description', 'type', 'keywords', 'home',
    'sources', 'dependencies', 'maintainers', 'icon', 'appVersion', 'deprecated', 'annotations'];
  for (const k of Object.keys(c)) assert.ok(known.includes(k), `unknown Chart.yaml field ${k}`);
  assert.strictEqual(c.apiVersion, 'v2');
  assert.strictEqual(c.name, 'aurora-kubectl-agent');
  assert.match(c.version, /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/);
  assert.strictEqual(typeof c.appVersion, 'string');
  assert.strictEqual(c.type, 'application');
  assert.ok(c.kubeVersion, 'kubeVersion');
});

test('values.schema.json is JSON and compiles as a draft-07 schema (ajv, strict mode)', () => {
  assert.strictEqual(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  validateValues = ajv.compile(schema);
});
if (!validateValues) validateValues = () => true;

// ---------------------------------------------------------------- the renderer's Helm semantics

test('renderer semantics (fixture chart): -f files merge left to right, null deletes a default, maps merge', () => {
  const r = mustRender(['fixtures/semantics-override-1.yaml', 'fixtures/semantics-override-2.yaml'],
    { chart: path.join(HERE, 'fixtures', 'semantics'), name: 'rel', namespace: 'ns', valuesDir: HERE });
  const d = one(r, 'ConfigMap').data;
  assert.strictEqual(d.keep, 'kept');
  assert.strictEqual(d.override, 'from-file-2');
  assert.strictEqual(d.removed, 'false');
  assert.strictEqual(d.list, 'c', 'lists are replaced, not merged');
  assert.strictEqual(d.yaml, 'keep: kept\noverride: from-file-2\n');
});

test('renderer semantics: .Release .Chart .Capabilities .Template, include/tpl/default/toYaml/fromYaml/toJson/lookup, <no value> erased', () => {
  const r = mustRender([], { chart: path.join(HERE, 'fixtures', 'semantics'), name: 'rel', namespace: 'ns', kubeVersion: '1.27.3' });
  const cm = one(r, 'ConfigMap');
  assert.strictEqual(cm.metadata.name, 'label-default-name');
  assert.strictEqual(cm.metadata.namespace, 'ns');
  assert.deepStrictEqual(
    [cm.data.release, cm.data.service, cm.data.isInstall, cm.data.chart, cm.data.isRoot, cm.data.kube, cm.data.hasPolicyV1],
    ['rel', 'Helm', 'true', 'semantics-1.2.3-9.8.7', 'true', 'v1.27.3/1/27', 'true']);
  assert.strictEqual(cm.data.template, 'semantics/templates/configmap.yaml');
  assert.strictEqual(cm.data.basePath, 'semantics/templates');
  assert.strictEqual(cm.data.tpl, 'hello rel');
  assert.strictEqual(cm.data.missing, '[]');
  assert.strictEqual(cm.data.default, 'fallback');
  assert.strictEqual(cm.data.fromYaml, '1');
  assert.strictEqual(cm.data.json, '["a","b"]');
  assert.strictEqual(cm.data.lookup, '0');
  assert.strictEqual(cm.data.sha, 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('renderer semantics: `_` files only define, NOTES.txt is not a manifest, empty and comment-only documents dropped, install order', () => {
  const r = mustRender([], { chart: path.join(HERE, 'fixtures', 'semantics'), name: 'rel', namespace: 'ns', valuesDir: HERE });
  assert.deepStrictEqual(r.objects.map((o) => `${o.object.kind}@${o.source}`),
    ['ServiceAccount@semantics/templates/z-serviceaccount.yaml', 'ConfigMap@semantics/templates/configmap.yaml']);
  assert.ok(!r.text.includes('must never be rendered'));
  assert.strictEqual(r.notes.trim(), 'Notes for rel.');
  assert.ok(!r.text.includes('Notes for'));
  assert.match(r.text, /^---\n# Source: semantics\/templates\/z-serviceaccount.yaml\n/);
});

test('renderer semantics: required/fail stop the render with file:line and message; schema and kubeVersion are enforced', () => {
  const chart = path.join(HERE, 'fixtures', 'semantics');
  mustFail([writeValues('sem-req', { checkRequired: true })],
    /Error: execution error at \(semantics\/templates\/required\.yaml:2:\d+\): needed must be set/, { chart });
  mustFail([writeValues('sem-fail', { checkFail: true })],
    /execution error at \(semantics\/templates\/required\.yaml:\d+:\d+\): failing on purpose/, { chart });
  mustFail([writeValues('sem-schema', { name: 'x'.repeat(30) })],
    /values don't meet the specifications of the schema\(s\) in the following chart\(s\):\nsemantics:\n- name: /, { chart });
  mustFail([], /chart requires kubeVersion: >=1\.21\.0-0 which is incompatible with Kubernetes v1\.20\.0/, { chart, kubeVersion: '1.20.0' });
});

// ---------------------------------------------------------------- values and schema

test('chart defaults (values.yaml) validate against values.schema.json (ajv)', () => {
  const errs = valuesErrors(readYaml(path.join(CHART, 'values.yaml'))[0]);
  assert.deepStrictEqual(errs, []);
});

const SCENARIOS = {
  minimal: ['values-minimal.yaml'],
  full: ['values-full.yaml'],
  'existing-secret': ['values-existing-secret.yaml'],
  'ca-secret': ['values-ca-secret.yaml'],
};

for (const [name, files] of Object.entries(SCENARIOS)) {
  test(`values ${files.join(' ')} render, and the coalesced values validate against values.schema.json (ajv)`, () => {
    const r = mustRender(files);
    assert.deepStrictEqual(valuesErrors(r.values), []);
    assert.ok(r.objects.length >= 1);
  });
}

test('values-full.yaml (with the exclusive alternatives in values-existing-secret/ca-secret.yaml) sets every value of values.yaml', () => {
  const defaults = readYaml(path.join(CHART, 'values.yaml'))[0];
  const full = readYaml(path.join(VALUES, 'values-full.yaml'))[0];
  const alternates = ['values-existing-secret.yaml', 'values-ca-secret.yaml'].map((f) => readYaml(path.join(VALUES, f))[0]);
  // Values whose useful settings are the defaults themselves (the restricted security
  // context) or that cannot change without invalidating their siblings.
  const sameAsDefaultOk = new Set([
    'agent.podSecurityContext.runAsNonRoot', 'agent.podSecurityContext.seccompProfile.type',
    'agent.securityContext.allowPrivilegeEscalation', 'agent.securityContext.privileged',
    'agent.securityContext.readOnlyRootFilesystem', 'agent.securityContext.runAsNonRoot',
    'agent.securityContext.capabilities.drop', 'agent.securityContext.seccompProfile.type',
    'agent.livenessProbe.enabled', 'agent.readinessProbe.enabled',
    'serviceAccount.create', 'rbac.create', 'service.enabled', 'podDisruptionBudget.enabled' ]);
  const missing = [];
  const unchanged = [];
  for (const leaf of leaves(defaults)) {
    const def = at(defaults, leaf).value;
    const sets = [full, ...alternates].map((f) => at(f, leaf)).filter((x) => x.present);
    if (!sets.length) missing.push(leaf);
    else if (!sameAsDefaultOk.has(leaf) && sets.every((s) => JSON.stringify(s.value) === JSON.stringify(def))) unchanged.push(leaf);
  }
  assert.deepStrictEqual(missing, [], 'values not set by any test values file');
  assert.deepStrictEqual(unchanged, [], 'values only ever set to their default');
  const fullOnly = leaves(defaults).filter((l) => !at(full, l).present);
  const exclusive = ['aurora.existingSecret', 'aurora.existingSecretKey', 'aurora.existingCaConfigMap', 'aurora.existingCaSecret'];
  assert.deepStrictEqual(fullOnly.sort(), exclusive.sort(), 'values-full.yaml leaves out more than the exclusive alternatives');
});

const SCHEMA_REJECTS = [
  ['an unknown key (typo aurora.wsendpoint)', { aurora: { wsendpoint: 'wss://x/kubectl-agent' } }, /wsendpoint/],
  ['policy.mode admin', { policy: { mode: 'admin' } }, /policy\.mode/],
  ['a policy entry with a comma', { policy: { mode: 'custom', allow: ['get,delete'] } }, /policy\.allow\.0/],
  ['a numeric image tag (1.10 would become 1.1)', { agent: { image: { tag: 1.1 } } }, /agent\.image\.tag/],
  ['a non-string agent.env value', { agent: { env: { FOO: 5 } } }, /agent\.env\.FOO/],
  ['an http:// wsEndpoint', { aurora: { wsEndpoint: 'https://aurora.example.com' } }, /aurora\.wsEndpoint/],
  ['a token with whitespace', { aurora: { agentToken: 'aurora_kubectl_abc def' } }, /aurora\.agentToken/],
  ['network.heartbeatInterval 0', { network: { heartbeatInterval: 0 } }, /network\.heartbeatInterval/],
  ['monitoring.logging.level trace', { monitoring: { logging: { level: 'trace' } } }, /monitoring\.logging\.level/],
  ['serviceAccountToken.expirationSeconds 60', { agent: { serviceAccountToken: { mode: 'projected', expirationSeconds: 60 } } }, /expirationSeconds/],
  ['an RBAC rule without verbs', { rbac: { rules: [{ apiGroups: [''], resources: ['pods'] }] } }, /rbac\.rules\.0/],
  ['cloudExec.enabled "enabled" (a string)', { cloudExec: { enabled: 'enabled' } }, /cloudExec\.enabled/],
  ['a cloud program with a relative path', { cloudExec: { programs: ['az=bin/az'] } }, /cloudExec\.programs\.0/],
  ['an empty cloudExec.programs (use enabled: false)', { cloudExec: { programs: [] } }, /cloudExec\.programs/],
  ['sandbox.uidRange "all"', { sandbox: { uidRange: 'all' } }, /sandbox\.uidRange/],
  ['sandbox.uidRange below uid 1000', { sandbox: { uidRange: '500-999' } }, /sandbox\.uidRange/],
  ['sandbox.limits.memoryMB 32 (0 or at least 64)', { sandbox: { limits: { memoryMB: 32 } } }, /sandbox\.limits\.memoryMB/],
  ['sandbox.limits.openFiles 8', { sandbox: { limits: { openFiles: 8 } } }, /sandbox\.limits\.openFiles/],
  ['an unknown sandbox limit', { sandbox: { limits: { stackMB: 8 } } }, /stackMB/],
  ['a sandbox.envPassthrough entry that is not a variable name', { sandbox: { envPassthrough: ['A,B'] } }, /sandbox\.envPassthrough\.0/],
  ['a relative sandbox.path entry', { sandbox: { path: '/usr/bin:bin' } }, /sandbox\.path/],
  ['sandbox.landlock "maybe"', { sandbox: { landlock: 'maybe' } }, /sandbox\.landlock/],
  ['a relative sandbox.readOnlyPaths entry', { sandbox: { readOnlyPaths: ['/usr', 'opt'] } }, /sandbox\.readOnlyPaths\.1/],
  ['a sandbox.readOnlyPaths entry with a comma', { sandbox: { readOnlyPaths: ['/usr,/var'] } }, /sandbox\.readOnlyPaths\.0/],
  ['a sandbox.denyPaths entry with ..', { sandbox: { denyPaths: ['/var/../run/secrets'] } }, /sandbox\.denyPaths\.0/],
  ['sandbox.allowedPorts 0', { sandbox: { allowedPorts: [0] } }, /sandbox\.allowedPorts\.0/],
  ['sandbox.allowedPorts 65536', { sandbox: { allowedPorts: [443, 65536] } }, /sandbox\.allowedPorts\.1/],
  ['sandbox.allowedPorts as a string', { sandbox: { allowedPorts: '443' } }, /sandbox\.allowedPorts/],
  ['a sandbox.cliEnv CLI without a plug-in', { sandbox: { cliEnv: { kubectl: { A: 'b' } } } }, /kubectl/],
  ['a sandbox.cliEnv value with a comma', { sandbox: { cliEnv: { gcloud: { NO_PROXY: 'a,b' } } } }, /sandbox\.cliEnv\.gcloud\.NO_PROXY/],
];
for (const [what, override, re] of SCHEMA_REJECTS) {
  test(`values schema rejects ${what} (ajv and the renderer)`, () => {
    const f = writeValues('reject-' + what.replace(/\W+/g, '-'), override);
    const r = mustFail(['values-minimal.yaml', f], /values don't meet the specifications of the schema/);
    assert.match(r.stderr, re);
    // the same values, coalesced in JS (defaults < minimal < override), for ajv
    const merged = [readYaml(path.join(VALUES, 'values-minimal.yaml'))[0], override]
      .reduce(mergeInto, readYaml(path.join(CHART, 'values.yaml'))[0]);
    assert.ok(valuesErrors(merged).length > 0, 'ajv accepted it');
  });
}

// ---------------------------------------------------------------- render errors

test('the chart defaults alone fail: aurora.wsEndpoint is required (clear message)', () => {
  mustFail([], /Error: execution error at \(aurora-kubectl-agent\/templates\/[a-z-]+\.yaml:\d+:\d+\): aurora\.wsEndpoint is required: the Aurora tunnel endpoint/);
});
test('no token and no existingSecret fails: aurora.agentToken is required ... or set aurora.existingSecret', () => {
  const f = writeValues('no-token', { aurora: { wsEndpoint: 'wss://aurora.example.com/kubectl-agent' } });
  mustFail([f], /aurora\.agentToken is required \(the token from Aurora > Connectors > Kubernetes > Add Cluster\), or set aurora\.existingSecret/);
});
const RENDER_REJECTS = [
  ['agentToken and existingSecret together', { aurora: { existingSecret: 's' } }, /set only one of aurora\.agentToken and aurora\.existingSecret/],
  ['a ws:// endpoint without allowInsecureWs', { aurora: { wsEndpoint: 'ws://aurora.example.com/kubectl-agent' } }, /plain ws:\/\/ URL/],
  ['policy custom without allow', { policy: { mode: 'custom' } }, /policy\.allow must not be empty/],
  ['policy.allow with mode readonly', { policy: { allow: ['rollout restart'] } }, /policy\.allow is only used with policy\.mode custom/],
  ['AURORA_AGENT_TOKEN in agent.env', { agent: { env: { AURORA_AGENT_TOKEN: 'x' } } }, /agent\.env\.AURORA_AGENT_TOKEN is set by the chart/],
  ['AURORA_AGENT_TOKEN in agent.extraEnv', { agent: { extraEnv: [{ name: 'AURORA_AGENT_TOKEN', value: 'x' }] } }, /agent\.extraEnv AURORA_AGENT_TOKEN is set by the chart/],
  ['a chart-managed variable in agent.env', { agent: { env: { AURORA_LOG_LEVEL: 'debug' } } }, /agent\.env\.AURORA_LOG_LEVEL is set by the chart/],
  ['two CA sources', { aurora: { caBundle: 'pem', existingCaSecret: 'corp-ca' } }, /set only one of aurora\.caBundle/],
  ['a sandbox variable in agent.env', { agent: { env: { AURORA_SANDBOX_NPROC: '64' } } }, /agent\.env\.AURORA_SANDBOX_NPROC is set by the chart \(from .*sandbox\.\*/],
  ['AURORA_CLOUD_EXEC in agent.extraEnv', { agent: { extraEnv: [{ name: 'AURORA_CLOUD_EXEC', value: 'enabled' }] } }, /agent\.extraEnv AURORA_CLOUD_EXEC is set by the chart/],
  ['uidSeparation with fewer uids than agent.maxConcurrent', { sandbox: { uidSeparation: true, uidRange: '100000-100009' } }, /sandbox\.uidRange 100000-100009 has 10 uids, fewer than agent\.maxConcurrent \(16\)/],
  ['uidSeparation with an inverted uidRange', { sandbox: { uidSeparation: true, uidRange: '200000-100000' } }, /sandbox\.uidRange 200000-100000: lo must be at least 1000, hi at least lo/],
  ['a PDB with minAvailable and maxUnavailable', { podDisruptionBudget: { enabled: true, minAvailable: 1, maxUnavailable: 1 } }, /set only one of minAvailable and maxUnavailable/],
  ['the automounted (world-readable) token with cloudExec', { agent: { serviceAccountToken: { mode: 'automount' } }, cloudExec: { enabled: true } }, /serviceAccountToken\.mode automount mounts the kubelet's token world-readable \(0644\): with cloudExec\.enabled a cloud command could read it/],
  ['the projected token without fsGroup (the agent could not read it)', { agent: { podSecurityContext: { fsGroup: null } } }, /set agent\.podSecurityContext\.fsGroup/],
  ['a Landlock variable in agent.env', { agent: { env: { AURORA_SANDBOX_ALLOWED_PORTS: 'all' } } }, /agent\.env\.AURORA_SANDBOX_ALLOWED_PORTS is set by the chart/],
  ['AURORA_CLOUD_ENV in agent.extraEnv', { agent: { extraEnv: [{ name: 'AURORA_CLOUD_ENV', value: 'gcloud:A=b' }] } }, /agent\.extraEnv AURORA_CLOUD_ENV is set by the chart/],
  ['rbac.create bound to the namespace\'s default ServiceAccount (every pod in it would read the cluster)', { serviceAccount: { create: false } }, /rbac\.create binds the agent's ClusterRole to its ServiceAccount: with serviceAccount\.create false, name an existing account in serviceAccount\.name.*"default".*every pod of namespace aurora/],
  // the agent needs the grace, then up to 10 s to cancel what still runs, send its results
  // and close the tunnel (agent/tunnel.c SHUTDOWN_SLACK_MS) before the kubelet's SIGKILL
  ['a termination grace period shorter than the agent\'s shutdown grace + 10 s', { agent: { shutdownGracePeriod: 60 } }, /agent\.terminationGracePeriodSeconds \(30\) must be at least agent\.shutdownGracePeriod \(60\) \+ 10/],
  ['rbac.create bound to "default" by name', { serviceAccount: { create: false, name: 'default' } }, /rbac\.create binds the agent's ClusterRole to its ServiceAccount/],
];
for (const [what, override, re] of RENDER_REJECTS) {
  test(`render fails with a clear message: ${what}`, () => {
    mustFail(['values-minimal.yaml', writeValues('rej-' + what.replace(/\W+/g, '-'), override)], re);
  });
}

// ---------------------------------------------------------------- Kubernetes validation

test('validator self-test: unknown fields, wrong types and missing required fields are caught', () => {
  const r = mustRender(['values-minimal.yaml']);
  const dep = JSON.parse(JSON.stringify(one(r, 'Deployment')));
  assert.deepStrictEqual(validateK8s(dep), []);
  const cases = [
    [(d) => { d.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true; }, /unknown field .*readOnlyRootFileSystem/],
    [(d) => { d.spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef.secret = 'x'; }, /unknown field .*secretKeyRef\/secret/],
    [(d) => { d.spec.template.spec.bogus = 1; }, /unknown field \/spec\/template\/spec\/bogus/],
    [(d) => { d.metadata.label = {}; }, /unknown field \/metadata\/label$/],
    [(d) => { d.spec.replicas = '2'; }, /replicas must be integer/],
    [(d) => { delete d.spec.template.spec.containers[0].name; }, /must have required property '?name'?/],
    [(d) => { d.spec.template.spec.containers[0].resources.limits.memory = 'lots'; }, /memory/],
  ];
  for (const [mutate, re] of cases) {
    const bad = JSON.parse(JSON.stringify(dep));
    mutate(bad);
    assert.match(validateK8s(bad).join('\n'), re);
  }
  assert.match(validateK8s({ apiVersion: 'policy/v1beta1', kind: 'Nope', metadata: {} }).join(), /no Kubernetes schema/);
});

const K8S_SCENARIOS = Object.assign({}, SCENARIOS, {
  'minimal, projected token, proxy defaults, metrics off': ['values-minimal.yaml', 'generated:extras'],
});
function scenarioFiles(files) {
  return files.map((f) => (f === 'generated:extras' ? writeValues('extras', {
    agent: { serviceAccountToken: { mode: 'projected' } },
    proxy: { httpsProxy: 'http://proxy.example.com:3128' },
    monitoring: { metrics: { port: 0, prometheusScrape: true } },
  }) : f));
}
for (const [name, files] of Object.entries(K8S_SCENARIOS)) {
  test(`every rendered object (${name}) validates strictly against the Kubernetes schemas, plus API-server checks`, () => {
    const r = mustRender(scenarioFiles(files));
    const errors = [];
    for (const { source, object } of r.objects) {
      for (const e of validateK8s(object)) errors.push(`${source} ${object.kind}: ${e}`);
    }
    errors.push(...apiServerChecks(objs(r)));
    assert.deepStrictEqual(errors, []);
  });
}

// ---------------------------------------------------------------- content

test('objects rendered for the guide values: ServiceAccount, Secret, ClusterRole, ClusterRoleBinding, Service, Deployment (no PDB, no CA)', () => {
  const r = mustRender(['values-minimal.yaml']);
  assert.deepStrictEqual(objs(r).map((o) => o.kind),
    ['ServiceAccount', 'Secret', 'ClusterRole', 'ClusterRoleBinding', 'Service', 'Deployment']);
  assert.deepStrictEqual(objs(r).map((o) => o.metadata.name),
    ['aurora-kubectl-agent', 'aurora-kubectl-agent-token', 'aurora-kubectl-agent', 'aurora-kubectl-agent', 'aurora-kubectl-agent', 'aurora-kubectl-agent']);
});

test('the token travels only through the Secret: secretKeyRef, never a literal env value, nowhere else in the manifests', () => {
  for (const files of [['values-minimal.yaml'], ['values-full.yaml'], ['values-ca-secret.yaml']]) {
    const r = mustRender(files);
    const c = container(r);
    const t = envMap(c).AURORA_AGENT_TOKEN;
    assert.ok(t && !('value' in t), 'AURORA_AGENT_TOKEN has a literal value');
    const secret = one(r, 'Secret');
    assert.deepStrictEqual(t.valueFrom, { secretKeyRef: { name: secret.metadata.name, key: 'token' } });
    assert.strictEqual(Buffer.from(secret.data.token, 'base64').toString(), TOKEN);
    for (const e of c.env) assert.ok(!String(e.value || '').includes(TOKEN), `env ${e.name} carries the token`);
    assert.ok(!r.text.includes(TOKEN), 'the token appears in clear in the manifests');
    const b64 = Buffer.from(TOKEN).toString('base64');
    for (const o of objs(r)) {
      if (o.kind !== 'Secret') assert.ok(!JSON.stringify(o).includes(b64), `${o.kind} carries the encoded token`);
    }
    assert.ok(!r.notes.includes(TOKEN), 'NOTES.txt shows the token');
  }
});

test('existingSecret mode: no Secret object, secretKeyRef to the existing Secret and key; CA from the existing ConfigMap', () => {
  const r = mustRender(['values-existing-secret.yaml']);
  assert.strictEqual(objs(r, 'Secret').length, 0);
  assert.deepStrictEqual(envMap(container(r)).AURORA_AGENT_TOKEN.valueFrom,
    { secretKeyRef: { name: 'aurora-agent-token', key: 'agent-token' } });
  assert.strictEqual(objs(r, 'ConfigMap').length, 0);
  const vol = one(r, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'aurora-ca');
  assert.deepStrictEqual(vol.configMap, { name: 'corporate-ca', defaultMode: 0o444, items: [{ key: 'ca.crt', path: 'ca.crt' }] });
  assert.strictEqual(envValue(container(r), 'AURORA_CA_FILE'), '/etc/aurora/ca/ca.crt');
  assert.match(r.notes, /rollout restart deployment\/aurora-kubectl-agent/);
});

test('optional objects off: serviceAccount.create, rbac.create, service.enabled false create none; the pod uses the named account', () => {
  const r = mustRender(['values-existing-secret.yaml']);
  for (const k of ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Service']) assert.strictEqual(objs(r, k).length, 0, k);
  assert.strictEqual(one(r, 'Deployment').spec.template.spec.serviceAccountName, 'preexisting-sa');
});

test('restricted pod security: non-root, read-only root fs, capabilities drop ALL, seccomp RuntimeDefault, no privilege escalation', () => {
  // values-full.yaml turns sandbox.uidSeparation on (root + six capabilities, tested below);
  // with it off, its own security contexts (uid 10001) must be restricted.
  const fullShared = writeValues('full-shared-uid', { sandbox: { uidSeparation: false } });
  for (const files of [['values-minimal.yaml'], ['values-full.yaml', fullShared]]) {
    const r = mustRender(files);
    const spec = one(r, 'Deployment').spec.template.spec;
    assert.strictEqual(spec.securityContext.runAsNonRoot, true);
    assert.deepStrictEqual(spec.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    assert.ok(spec.securityContext.runAsUser > 0);
    for (const c of spec.containers) {
      const sc = c.securityContext;
      assert.strictEqual(sc.runAsNonRoot, true);
      assert.strictEqual(sc.readOnlyRootFilesystem, true);
      assert.strictEqual(sc.allowPrivilegeEscalation, false);
      assert.strictEqual(sc.privileged, false);
      assert.deepStrictEqual(sc.capabilities, { drop: ['ALL'] });
      assert.deepStrictEqual(sc.seccompProfile, { type: 'RuntimeDefault' });
    }
    for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) assert.ok(!spec[k], k);
    // Pod Security Standard "restricted": only these volume types, no host ports
    const allowed = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
    for (const v of spec.volumes) {
      const types = Object.keys(v).filter((k) => k !== 'name');
      assert.ok(types.every((t) => allowed.includes(t)), `volume ${v.name}: ${types}`);
    }
    for (const c of spec.containers) for (const p of c.ports || []) assert.ok(!p.hostPort, 'hostPort');
  }
});

const UID_SEPARATION_CAPS = ['SETUID', 'SETGID', 'CHOWN', 'KILL', 'DAC_OVERRIDE', 'FOWNER'];
// Pod Security Standard "baseline": the capabilities a container may add.
const BASELINE_CAPS = ['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD',
  'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT'];

test('sandbox.uidSeparation: root with exactly SETUID SETGID CHOWN KILL DAC_OVERRIDE FOWNER (baseline PSS); everything else unchanged', () => {
  // the capabilities are those agent/sandbox.h names for a uid per command
  const header = fs.readFileSync(path.join(ROOT, 'agent', 'sandbox.h'), 'utf8').replace(/\s*\n\s*\*\s*/g, ' ');
  const m = header.match(/run the agent as root with ((?:CAP_[A-Z_]+(?:, | and )?)+) only/);
  assert.ok(m, 'agent/sandbox.h names the capabilities of uid separation');
  assert.deepStrictEqual(m[1].split(/, | and /).map((c) => c.replace(/^CAP_/, '')).sort(), [...UID_SEPARATION_CAPS].sort());
  const pairs = [
    [['values-minimal.yaml', writeValues('uidsep-on', { sandbox: { uidSeparation: true } })], ['values-minimal.yaml']],
    [['values-full.yaml'], ['values-full.yaml', writeValues('full-shared-uid', { sandbox: { uidSeparation: false } })]],
  ];
  for (const [onFiles, offFiles] of pairs) {
    const on = one(mustRender(onFiles), 'Deployment').spec.template.spec;
    const off = one(mustRender(offFiles), 'Deployment').spec.template.spec;
    const sc = on.containers[0].securityContext;
    assert.strictEqual(on.securityContext.runAsUser, 0);
    assert.strictEqual(on.securityContext.runAsNonRoot, false);
    assert.strictEqual(sc.runAsUser, 0);
    assert.strictEqual(sc.runAsNonRoot, false);
    assert.deepStrictEqual(sc.capabilities, { drop: ['ALL'], add: UID_SEPARATION_CAPS });
    assert.ok(sc.capabilities.add.every((c) => BASELINE_CAPS.includes(c)), 'baseline allows every added capability');
    assert.strictEqual(sc.readOnlyRootFilesystem, true);
    assert.strictEqual(sc.allowPrivilegeEscalation, false);
    assert.strictEqual(sc.privileged, false);
    assert.deepStrictEqual(sc.seccompProfile, { type: 'RuntimeDefault' });
    assert.deepStrictEqual(on.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    // the rest of the pod is the same as without uid separation
    const strip = (x) => { const y = JSON.parse(JSON.stringify(x)); delete y.runAsUser; delete y.runAsNonRoot; delete y.capabilities; return y; };
    assert.deepStrictEqual(strip(on.securityContext), strip(off.securityContext));
    assert.deepStrictEqual(strip(sc), strip(off.containers[0].securityContext));
    assert.deepStrictEqual(off.containers[0].securityContext.capabilities, { drop: ['ALL'] });
    const rest = (spec) => {
      const y = JSON.parse(JSON.stringify(spec));
      delete y.securityContext;
      delete y.containers[0].securityContext;
      y.containers[0].env = y.containers[0].env.filter((e) => e.name !== 'AURORA_SANDBOX_UID_RANGE');
      return y;
    };
    assert.deepStrictEqual(rest(on), rest(off));
    for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) assert.ok(!on[k], k);
  }
  const c = container(mustRender(['values-minimal.yaml', writeValues('uidsep-on', { sandbox: { uidSeparation: true } })]));
  assert.strictEqual(envValue(c, 'AURORA_SANDBOX_UID_RANGE'), '100000-100999');
  assert.strictEqual(envValue(container(mustRender(['values-minimal.yaml'])), 'AURORA_SANDBOX_UID_RANGE'), 'off');
  assert.strictEqual(envValue(container(mustRender(['values-full.yaml'])), 'AURORA_SANDBOX_UID_RANGE'), '200000-200063');
});

test('cloudExec and sandbox defaults reach the agent: cloud_exec disabled (the default image has no cloud CLIs), shared uid, the agent\'s own limits', () => {
  const c = container(mustRender(['values-minimal.yaml']));
  const want = {
    AURORA_CLOUD_EXEC: 'disabled', AURORA_CLOUD_PROGRAMS: 'gcloud,aws,az', AURORA_SANDBOX_UID_RANGE: 'off',
    AURORA_SANDBOX_CPU_SECONDS: '120', AURORA_SANDBOX_MEMORY_MB: '2048', AURORA_SANDBOX_NOFILE: '256',
    AURORA_SANDBOX_FSIZE_MB: '64',
  };
  for (const [k, v] of Object.entries(want)) assert.strictEqual(envValue(c, k), v, k);
  for (const k of ['AURORA_SANDBOX_NPROC', 'AURORA_SANDBOX_DIR', 'AURORA_SANDBOX_PATH', 'AURORA_SANDBOX_ENV_PASSTHROUGH', 'AURORA_CLOUD_ENV']) {
    assert.ok(!(k in envMap(c)), `${k} set without a value asking for it`);
  }
  // the chart's limits are the agent's own defaults (agent/agent_config.c), and its
  // uid range is the agent's default range (agent/sandbox.h)
  const cfg = fs.readFileSync(path.join(ROOT, 'agent', 'agent_config.c'), 'utf8');
  const agentDefault = (name) => {
    const m = cfg.match(new RegExp(`\\{"${name}", "[^"]*", CFG_[A-Z]+, (NULL|"[^"]*")`));
    assert.ok(m, `agent setting ${name}`);
    return m[1] === 'NULL' ? null : m[1].slice(1, -1);
  };
  for (const k of ['AURORA_SANDBOX_CPU_SECONDS', 'AURORA_SANDBOX_MEMORY_MB', 'AURORA_SANDBOX_NOFILE', 'AURORA_SANDBOX_FSIZE_MB', 'AURORA_CLOUD_PROGRAMS']) {
    assert.strictEqual(envValue(c, k), agentDefault(k), k);
  }
  assert.strictEqual(agentDefault('AURORA_SANDBOX_NPROC'), null);
  const defaults = readYaml(path.join(CHART, 'values.yaml'))[0];
  const header = fs.readFileSync(path.join(ROOT, 'agent', 'sandbox.h'), 'utf8');
  assert.strictEqual(`"${defaults.sandbox.uidRange}"`, header.match(/#define SANDBOX_DEFAULT_UID_RANGE ("[^"]*")/)[1]);
  // Landlock: the chart's defaults are the agent's own (agent/sandbox.h)
  const macro = (name) => header.match(new RegExp(`#define ${name} "([^"]*)"`))[1];
  assert.strictEqual(envValue(c, 'AURORA_SANDBOX_LANDLOCK'), macro('SANDBOX_DEFAULT_LANDLOCK'));
  assert.strictEqual(envValue(c, 'AURORA_SANDBOX_READONLY_PATHS'), macro('SANDBOX_DEFAULT_READONLY_PATHS'));
  assert.strictEqual(envValue(c, 'AURORA_SANDBOX_DENY_PATHS'), macro('SANDBOX_DEFAULT_DENY_PATHS'));
  assert.strictEqual(envValue(c, 'AURORA_SANDBOX_ALLOWED_PORTS'), macro('SANDBOX_DEFAULT_ALLOWED_PORTS'));
  assert.strictEqual(envValue(c, 'AURORA_SANDBOX_ALLOWED_PORTS'), '443');
  const on = container(mustRender(['values-minimal.yaml', writeValues('cloud-on', { cloudExec: { enabled: true } })]));
  assert.strictEqual(envValue(on, 'AURORA_CLOUD_EXEC'), 'enabled');
  const zero = container(mustRender(['values-minimal.yaml', writeValues('limits-zero', { sandbox: { limits: { cpuSeconds: 0, memoryMB: 0, processes: 0, fileSizeMB: 0 } } })]));
  for (const k of ['AURORA_SANDBOX_CPU_SECONDS', 'AURORA_SANDBOX_MEMORY_MB', 'AURORA_SANDBOX_NPROC', 'AURORA_SANDBOX_FSIZE_MB']) {
    assert.strictEqual(envValue(zero, k), '0', `${k}: 0 (unlimited) is passed, not dropped`);
  }
});

test('cloudExec and sandbox values reach the agent with the values given (values-full.yaml)', () => {
  const c = container(mustRender(['values-full.yaml']));
  const want = {
    AURORA_CLOUD_EXEC: 'enabled', AURORA_CLOUD_PROGRAMS: 'gcloud,aws,az=/opt/az/bin/az',
    AURORA_SANDBOX_UID_RANGE: '200000-200063', AURORA_SANDBOX_DIR: '/tmp/sandboxes',
    AURORA_SANDBOX_PATH: '/opt/az/bin:/usr/bin:/bin',
    AURORA_SANDBOX_ENV_PASSTHROUGH: 'AWS_REGION,CLOUDSDK_CORE_DISABLE_PROMPTS',
    AURORA_SANDBOX_CPU_SECONDS: '300', AURORA_SANDBOX_MEMORY_MB: '4096', AURORA_SANDBOX_NOFILE: '1024',
    AURORA_SANDBOX_NPROC: '64', AURORA_SANDBOX_FSIZE_MB: '256',
    // sandbox.cliEnv, sorted by CLI then name
    AURORA_CLOUD_ENV: 'aws:AWS_ENDPOINT_URL_STS=https://sts.us-gov-west-1.amazonaws.com,'
      + 'az:AZURE_ARM_ENDPOINT_OVERRIDE=https://management.usgovcloudapi.net/,'
      + 'gcloud:CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=https://compute.example.internal/compute/v1/,'
      + 'gcloud:CLOUDSDK_PROXY_TYPE=http',
    AURORA_SANDBOX_LANDLOCK: 'required',
    AURORA_SANDBOX_READONLY_PATHS: '/usr,/lib,/lib64,/bin,/sbin,/etc,/opt/az,/proc',
    AURORA_SANDBOX_DENY_PATHS: '/var/run/secrets,/run/secrets,/etc/aurora',
    AURORA_SANDBOX_ALLOWED_PORTS: '443,8443',
  };
  for (const [k, v] of Object.entries(want)) assert.strictEqual(envValue(c, k), v, k);
  assert.strictEqual(envValue(container(mustRender(['values-ca-secret.yaml'])), 'AURORA_SANDBOX_ALLOWED_PORTS'), 'all');
  const big = container(mustRender(['values-minimal.yaml', writeValues('limits-big', { sandbox: { limits: { memoryMB: 1048576, openFiles: 1048576 } } })]));
  assert.strictEqual(envValue(big, 'AURORA_SANDBOX_MEMORY_MB'), '1048576');
  assert.strictEqual(envValue(big, 'AURORA_SANDBOX_NOFILE'), '1048576');
});

test('a writable /tmp (emptyDir) is HOME and TMPDIR', () => {
  const r = mustRender(['values-minimal.yaml']);
  const c = container(r);
  assert.strictEqual(envValue(c, 'HOME'), '/tmp');
  assert.strictEqual(envValue(c, 'TMPDIR'), '/tmp');
  assert.ok(c.volumeMounts.some((m) => m.name === 'tmp' && m.mountPath === '/tmp' && !m.readOnly));
  const vol = one(r, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'tmp');
  assert.deepStrictEqual(vol.emptyDir, { sizeLimit: '512Mi' });
  const full = one(mustRender(['values-full.yaml']), 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'tmp');
  assert.deepStrictEqual(full.emptyDir, { medium: 'Memory', sizeLimit: '1Gi' });
  // null, the schema allows it: no limit of the chart's, and still an emptyDir (a bare
  // `emptyDir:` would be a volume without a source)
  const unlimited = mustRender(['values-minimal.yaml', writeValues('tmp-unlimited', { agent: { tmpVolume: { sizeLimit: null } } })]);
  assert.deepStrictEqual(one(unlimited, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'tmp').emptyDir, {});
});

test('service account token: projected by default, 0440 (root and the agent\'s group, never other uids, never world), automount nowhere', () => {
  // issue 8: the kubelet's automounted token volume is 0644, so a cloud command (another
  // uid with sandbox.uidSeparation, or any uid without Landlock) could read it
  for (const files of [['values-minimal.yaml'], ['values-full.yaml']]) {
    const r = mustRender(files);
    assert.strictEqual(one(r, 'ServiceAccount').automountServiceAccountToken, false);
    const spec = one(r, 'Deployment').spec.template.spec;
    assert.strictEqual(spec.automountServiceAccountToken, false);
    const vol = spec.volumes.find((v) => v.name === 'kube-api-access');
    assert.ok(vol && vol.projected, `${files}: the chart's projected token volume`);
    assert.strictEqual(vol.projected.defaultMode, 0o440, `${files}: defaultMode`);
    assert.ok(!vol.projected.sources.some((src) => Object.values(src).some((x) => x && x.items && x.items.some((i) => 'mode' in i))),
      'no per-file mode widens it');
    assert.deepStrictEqual(vol.projected.sources[1].configMap.name, 'kube-root-ca.crt');
    assert.ok(spec.containers[0].volumeMounts.some((m) => m.name === 'kube-api-access' &&
      m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount' && m.readOnly === true));
    // the group that may read it is the agent's own: root (uid separation) or fsGroup 1000
    const sc = spec.securityContext;
    assert.ok(sc.runAsUser === 0 || sc.fsGroup === (spec.containers[0].securityContext.runAsGroup ?? sc.runAsGroup),
      `${files}: fsGroup is the agent's group`);
    // and Landlock keeps cloud commands away from the mount point
    const deny = envValue(container(r), 'AURORA_SANDBOX_DENY_PATHS').split(',');
    assert.ok(deny.some((d) => '/var/run/secrets/kubernetes.io/serviceaccount/token'.startsWith(d + '/')),
      `${files}: the token's directory is in AURORA_SANDBOX_DENY_PATHS`);
  }
  const f = mustRender(['values-full.yaml']);
  const vol = one(f, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'kube-api-access');
  assert.deepStrictEqual(vol.projected.sources[0].serviceAccountToken,
    { path: 'token', expirationSeconds: 7200, audience: 'https://kubernetes.default.svc.cluster.local' });
  assert.deepStrictEqual(one(mustRender(['values-minimal.yaml']), 'Deployment').spec.template.spec.volumes
    .find((v) => v.name === 'kube-api-access').projected.sources[0].serviceAccountToken, { path: 'token', expirationSeconds: 3600 });
  assert.strictEqual(one(f, 'Deployment').spec.template.spec.serviceAccountName, 'aurora-agent-sa');
  assert.strictEqual(one(f, 'ServiceAccount').metadata.name, 'aurora-agent-sa');
  assert.deepStrictEqual(one(f, 'ServiceAccount').metadata.annotations, { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/aurora-agent' });
  // automount stays possible where no cloud command runs (cloudExec off): the pod opts in
  const a = one(mustRender(['values-existing-secret.yaml']), 'Deployment').spec.template.spec;
  assert.strictEqual(a.automountServiceAccountToken, true);
  assert.ok(!a.volumes.some((v) => v.name === 'kube-api-access'));
});

test('probes: liveness GET /health, readiness GET /ready on the health port; startup probe only when enabled; timings from values', () => {
  const r = mustRender(['values-minimal.yaml']);
  const c = container(r);
  assert.deepStrictEqual(c.livenessProbe.httpGet, { path: '/health', port: 'health' });
  assert.deepStrictEqual(c.readinessProbe.httpGet, { path: '/ready', port: 'health' });
  assert.strictEqual(c.startupProbe, undefined);
  assert.deepStrictEqual(c.ports, [{ name: 'health', containerPort: 8080, protocol: 'TCP' }]);
  assert.strictEqual(envValue(c, 'AURORA_HEALTH_PORT'), '8080');
  const f = container(mustRender(['values-full.yaml']));
  assert.deepStrictEqual(f.livenessProbe, { httpGet: { path: '/health', port: 'health' }, initialDelaySeconds: 11, periodSeconds: 31, timeoutSeconds: 6, failureThreshold: 4 });
  assert.deepStrictEqual(f.readinessProbe, { httpGet: { path: '/ready', port: 'health' }, initialDelaySeconds: 3, periodSeconds: 7, timeoutSeconds: 2, failureThreshold: 5, successThreshold: 2 });
  assert.deepStrictEqual(f.startupProbe, { httpGet: { path: '/health', port: 'health' }, initialDelaySeconds: 1, periodSeconds: 4, timeoutSeconds: 2, failureThreshold: 30 });
  assert.strictEqual(f.ports.find((p) => p.name === 'health').containerPort, 9090);
  assert.strictEqual(envValue(f, 'AURORA_HEALTH_PORT'), '9090');
  const off = container(mustRender(['values-minimal.yaml', writeValues('probes-off', { agent: { livenessProbe: { enabled: false }, readinessProbe: { enabled: false } } })]));
  assert.strictEqual(off.livenessProbe, undefined);
  assert.strictEqual(off.readinessProbe, undefined);
});

test('PodDisruptionBudget only when enabled (policy/v1; policy/v1beta1 before Kubernetes 1.21)', () => {
  assert.strictEqual(objs(mustRender(['values-minimal.yaml']), 'PodDisruptionBudget').length, 0);
  const pdb = one(mustRender(['values-full.yaml']), 'PodDisruptionBudget');
  assert.strictEqual(pdb.apiVersion, 'policy/v1');
  assert.deepStrictEqual(pdb.spec, { minAvailable: 1, unhealthyPodEvictionPolicy: 'IfHealthyBudget', selector: { matchLabels: { 'app.kubernetes.io/name': 'aurora-agent', 'app.kubernetes.io/instance': RELEASE } } });
  assert.deepStrictEqual(one(mustRender(['values-existing-secret.yaml']), 'PodDisruptionBudget').spec.maxUnavailable, '50%');
  const defaultPdb = one(mustRender(['values-minimal.yaml', writeValues('pdb-on', { podDisruptionBudget: { enabled: true } })]), 'PodDisruptionBudget');
  assert.strictEqual(defaultPdb.spec.maxUnavailable, 1);
  const old = one(mustRender(['values-full.yaml'], { kubeVersion: '1.20.15' }), 'PodDisruptionBudget');
  assert.strictEqual(old.apiVersion, 'policy/v1beta1');
});

test('PodDisruptionBudget: unready agents (no tunnel while Aurora is unreachable) never block a node drain: unhealthyPodEvictionPolicy AlwaysAllow from Kubernetes 1.27', () => {
  const on = writeValues('pdb-on-unhealthy', { podDisruptionBudget: { enabled: true } });
  assert.strictEqual(one(mustRender(['values-minimal.yaml', on]), 'PodDisruptionBudget').spec.unhealthyPodEvictionPolicy, 'AlwaysAllow');
  assert.ok(!('unhealthyPodEvictionPolicy' in one(mustRender(['values-minimal.yaml', on], { kubeVersion: '1.26.9' }), 'PodDisruptionBudget').spec), 'unknown before 1.27');
  assert.ok(!('unhealthyPodEvictionPolicy' in one(mustRender(['values-full.yaml'], { kubeVersion: '1.20.15' }), 'PodDisruptionBudget').spec), 'policy/v1beta1');
});

test('NetworkPolicy: on with cloudExec (null follows it), or as set; ingress only to the health/metrics port, egress DNS and all but the metadata endpoints', () => {
  // off by default (cloud_exec is), on when cloud_exec is, and as set either way
  assert.strictEqual(objs(mustRender(['values-minimal.yaml']), 'NetworkPolicy').length, 0);
  const cloud = mustRender(['values-minimal.yaml', writeValues('np-cloud', { cloudExec: { enabled: true } })]);
  const np = one(cloud, 'NetworkPolicy');
  assert.deepStrictEqual(np.spec.podSelector, one(cloud, 'Deployment').spec.selector, 'the agent\'s own pods');
  assert.deepStrictEqual(np.spec.policyTypes, ['Ingress', 'Egress']);
  assert.deepStrictEqual(np.spec.ingress, [{ ports: [{ port: 8080, protocol: 'TCP' }] }]);
  assert.deepStrictEqual(np.spec.egress[0], { ports: [{ port: 53, protocol: 'UDP' }, { port: 53, protocol: 'TCP' }] });
  assert.deepStrictEqual(np.spec.egress[1], { to: [
    { ipBlock: { cidr: '0.0.0.0/0', except: ['169.254.0.0/16', '168.63.129.16/32', '100.100.100.200/32'] } },
    { ipBlock: { cidr: '::/0', except: ['fd00:ec2::254/128'] } }] });
  assert.strictEqual(objs(mustRender(['values-minimal.yaml', writeValues('np-off', { cloudExec: { enabled: true }, networkPolicy: { enabled: false } })]), 'NetworkPolicy').length, 0);
  assert.strictEqual(objs(mustRender(['values-minimal.yaml', writeValues('np-on', { networkPolicy: { enabled: true } })]), 'NetworkPolicy').length, 1);
  // values-full: its own list, a separate metrics port, scrapes from one namespace
  const rf = mustRender(['values-full.yaml']);
  const full = one(rf, 'NetworkPolicy');
  assert.notStrictEqual(rf.values.monitoring.metrics.port, rf.values.agent.healthPort);
  assert.deepStrictEqual(full.spec.ingress[0].ports.map((p) => p.port), [rf.values.agent.healthPort, rf.values.monitoring.metrics.port]);
  assert.deepStrictEqual(full.spec.ingress[0].from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
  assert.deepStrictEqual(full.spec.egress[1].to[0].ipBlock.except, ['169.254.169.254/32', '10.0.0.10/32']);
  assert.deepStrictEqual(full.spec.egress[2], { ports: [{ port: 6443, protocol: 'TCP' }] });
  mustFail(['values-minimal.yaml', writeValues('np-bad', { networkPolicy: { denyCidrs: ['metadata.internal'] } })], /denyCidrs/);
});

test('NetworkPolicy: the API server\'s ports open to every destination (Cilium matches no ipBlock for a kube-apiserver on the cluster\'s nodes)', () => {
  // kubectl reaches the API server's endpoints (kubeadm, k3s, RKE2: a node's address, port
  // 6443; managed clusters 443). Cilium, by default, selects no node address with an ipBlock,
  // 0.0.0.0/0 included: without a rule that names no peer, every kubectl command timed out.
  const np = one(mustRender(['values-minimal.yaml', writeValues('np-api', { cloudExec: { enabled: true } })]), 'NetworkPolicy');
  assert.deepStrictEqual(np.spec.egress[2], { ports: [{ port: 443, protocol: 'TCP' }, { port: 6443, protocol: 'TCP' }] },
    'a rule with ports and no peer: any destination on the API server\'s ports');
  assert.strictEqual(np.spec.egress.length, 3);
  // no metadata endpoint listens on those ports (plain HTTP on 80); the rest stays as it was
  assert.ok(!np.spec.egress[2].ports.some((p) => p.port === 80));
  const custom = one(mustRender(['values-minimal.yaml', writeValues('np-api-custom', { networkPolicy: { enabled: true, apiServerPorts: [16443] } })]), 'NetworkPolicy');
  assert.deepStrictEqual(custom.spec.egress[2], { ports: [{ port: 16443, protocol: 'TCP' }] });
  const none = one(mustRender(['values-minimal.yaml', writeValues('np-api-none', { networkPolicy: { enabled: true, apiServerPorts: [] } })]), 'NetworkPolicy');
  assert.strictEqual(none.spec.egress.length, 2, 'apiServerPorts [] adds no rule');
});

test('Kubernetes 1.19 (no kube-root-ca.crt ConfigMap): the projected token is refused with what to do; automount renders', () => {
  mustFail(['values-minimal.yaml'], /kube-root-ca\.crt ConfigMap, which Kubernetes publishes from 1\.20 on \(this cluster: v1\.19\.16\).*set agent\.serviceAccountToken\.mode automount/, { kubeVersion: '1.19.16' });
  const r = mustRender(['values-minimal.yaml', writeValues('k119', { agent: { serviceAccountToken: { mode: 'automount' } } })], { kubeVersion: '1.19.16' });
  assert.strictEqual(one(r, 'Deployment').spec.template.spec.automountServiceAccountToken, true);
  assert.strictEqual(objs(mustRender(['values-minimal.yaml'], { kubeVersion: '1.20.0' }), 'Deployment').length, 1);
});

test('ClusterRole rules equal rbac.rules (the read-only default, and a custom list); bound to the agent ServiceAccount', () => {
  const defaults = readYaml(path.join(CHART, 'values.yaml'))[0];
  const r = mustRender(['values-minimal.yaml']);
  assert.deepStrictEqual(one(r, 'ClusterRole').rules, defaults.rbac.rules);
  const verbs = new Set(defaults.rbac.rules.flatMap((x) => x.verbs));
  assert.deepStrictEqual([...verbs].sort(), ['get', 'list', 'watch'], 'default rules are read-only');
  assert.ok(!defaults.rbac.rules.some((x) => x.resources.includes('secrets') || x.resources.includes('*')), 'no secrets by default');
  for (const res of ['pods', 'pods/log', 'events', 'nodes', 'namespaces', 'services', 'endpoints', 'configmaps', 'persistentvolumes', 'persistentvolumeclaims']) {
    assert.ok(defaults.rbac.rules.some((x) => x.apiGroups.includes('') && x.resources.includes(res)), res);
  }
  for (const [g, res] of [['apps', 'deployments'], ['apps', 'replicasets'], ['apps', 'statefulsets'], ['apps', 'daemonsets'],
    ['batch', 'jobs'], ['batch', 'cronjobs'], ['networking.k8s.io', 'ingresses'], ['metrics.k8s.io', 'pods'], ['metrics.k8s.io', 'nodes']]) {
    assert.ok(defaults.rbac.rules.some((x) => x.apiGroups.includes(g) && x.resources.includes(res)), `${g}/${res}`);
  }
  const binding = one(r, 'ClusterRoleBinding');
  assert.deepStrictEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: one(r, 'ClusterRole').metadata.name });
  assert.deepStrictEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'aurora-kubectl-agent', namespace: NS }]);
  const full = readYaml(path.join(VALUES, 'values-full.yaml'))[0];
  assert.deepStrictEqual(one(mustRender(['values-full.yaml']), 'ClusterRole').rules, full.rbac.rules);
});

test('network, monitoring and policy values reach the agent as environment variables (defaults)', () => {
  const c = container(mustRender(['values-minimal.yaml']));
  const want = {
    NEXT_PUBLIC_WEBSOCKET_URL: 'wss://your-aurora-instance.com/kubectl-agent',
    AURORA_RECONNECT_INTERVAL: '5', AURORA_RECONNECT_MAX: '30', AURORA_HEARTBEAT_INTERVAL: '30',
    AURORA_COMMAND_TIMEOUT_MAX: '300', AURORA_LOG_LEVEL: 'info', AURORA_LOG_FORMAT: 'json',
    AURORA_METRICS_PORT: '8080', AURORA_POLICY_MODE: 'readonly', AURORA_MAX_CONCURRENT: '16',
    AURORA_MAX_OUTPUT: '10485760', AURORA_SHUTDOWN_GRACE: '20',
  };
  for (const [k, v] of Object.entries(want)) assert.strictEqual(envValue(c, k), v, k);
  for (const k of ['AURORA_POLICY_ALLOW', 'AURORA_POLICY_DENY', 'AGENT_VERSION', 'AURORA_CA_FILE',
    'AURORA_TLS_INSECURE_SKIP_VERIFY', 'AURORA_ALLOW_INSECURE_WS', 'HTTPS_PROXY', 'NO_PROXY']) {
    assert.ok(!(k in envMap(c)), `${k} set without a value asking for it`);
  }
});

test('network, monitoring, policy and agent values reach the agent with the values given (values-full.yaml)', () => {
  const r = mustRender(['values-full.yaml']);
  const c = container(r);
  const want = {
    NEXT_PUBLIC_WEBSOCKET_URL: 'wss://aurora.example.com:5080/kubectl-agent',
    AURORA_RECONNECT_INTERVAL: '7', AURORA_RECONNECT_MAX: '120', AURORA_HEARTBEAT_INTERVAL: '45',
    AURORA_COMMAND_TIMEOUT_MAX: '600', AURORA_LOG_LEVEL: 'debug', AURORA_LOG_FORMAT: 'text',
    AURORA_METRICS_PORT: '9100', AURORA_POLICY_MODE: 'custom',
    AURORA_POLICY_ALLOW: 'get,describe,logs,top,events', AURORA_POLICY_DENY: 'delete,exec,get secrets',
    AURORA_MAX_CONCURRENT: '8', AURORA_MAX_OUTPUT: '2097152', AURORA_SHUTDOWN_GRACE: '40',
    AGENT_VERSION: '0.2.0-rc.1', AURORA_CA_FILE: '/etc/aurora/ca/ca.crt',
    AURORA_TLS_INSECURE_SKIP_VERIFY: 'true', AURORA_ALLOW_INSECURE_WS: 'true',
    HTTPS_PROXY: 'http://proxy.corp.example.com:3128', https_proxy: 'http://proxy.corp.example.com:3128',
    HTTP_PROXY: 'http://proxy.corp.example.com:3128', http_proxy: 'http://proxy.corp.example.com:3128',
    NO_PROXY: '10.0.0.0/8,.corp.example.com', no_proxy: '10.0.0.0/8,.corp.example.com',
    CLOUDSDK_CORE_DISABLE_PROMPTS: '1', AWS_REGION: 'eu-west-1',
  };
  for (const [k, v] of Object.entries(want)) assert.strictEqual(envValue(c, k), v, k);
  assert.deepStrictEqual(envMap(c).POD_NAME.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
  const rw = container(mustRender(['values-ca-secret.yaml']));
  assert.strictEqual(envValue(rw, 'AURORA_POLICY_MODE'), 'readwrite');
  assert.strictEqual(envValue(rw, 'AURORA_POLICY_DENY'), 'delete');
  assert.ok(!('AURORA_POLICY_ALLOW' in envMap(rw)));
  // large numbers are printed as integers, not 1e+06
  const big = container(mustRender(['values-minimal.yaml', writeValues('big', { agent: { maxOutputBytes: 1073741824 }, network: { commandTimeout: 86400 } })]));
  assert.strictEqual(envValue(big, 'AURORA_MAX_OUTPUT'), '1073741824');
  assert.strictEqual(envValue(big, 'AURORA_COMMAND_TIMEOUT_MAX'), '86400');
});

test('proxy block: upper- and lower-case variables; NO_PROXY gets the API server and cluster names appended by default', () => {
  const c = container(mustRender(['values-minimal.yaml', writeValues('proxy', { proxy: { httpsProxy: 'http://p:3128', noProxy: '.corp' } })]));
  assert.strictEqual(envValue(c, 'HTTPS_PROXY'), 'http://p:3128');
  assert.strictEqual(envValue(c, 'https_proxy'), 'http://p:3128');
  assert.ok(!('HTTP_PROXY' in envMap(c)));
  const no = '.corp,$(KUBERNETES_SERVICE_HOST),kubernetes.default.svc,.svc,.cluster.local,localhost,127.0.0.1';
  assert.strictEqual(envValue(c, 'NO_PROXY'), no);
  assert.strictEqual(envValue(c, 'no_proxy'), no);
  const names = container(mustRender(['values-minimal.yaml', writeValues('proxy', { proxy: { httpsProxy: 'http://p:3128', noProxy: '.corp' } })])).env.map((e) => e.name);
  assert.ok(names.indexOf('NO_PROXY') > names.indexOf('HOME'));
  const viaEnv = container(mustRender(['values-existing-secret.yaml']));
  assert.strictEqual(envValue(viaEnv, 'HTTPS_PROXY'), 'http://proxy.corp.example.com:3128');
  assert.strictEqual(envValue(viaEnv, 'NO_PROXY'), '10.96.0.1,.svc,.cluster.local');
});

test('labels: pods carry app: aurora-kubectl-agent (the guide\'s selector) and app.kubernetes.io/*; selectors match', () => {
  const r = mustRender(['values-minimal.yaml']);
  const dep = one(r, 'Deployment');
  const pl = dep.spec.template.metadata.labels;
  assert.strictEqual(pl.app, 'aurora-kubectl-agent');
  for (const k of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/managed-by', 'helm.sh/chart']) assert.ok(pl[k], k);
  assert.deepStrictEqual(dep.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'aurora-kubectl-agent', 'app.kubernetes.io/instance': RELEASE });
  assert.deepStrictEqual(one(r, 'Service').spec.selector, dep.spec.selector.matchLabels);
  for (const o of objs(r)) assert.strictEqual(o.metadata.labels.app, 'aurora-kubectl-agent', o.kind);
  const f = mustRender(['values-full.yaml']);
  const fd = one(f, 'Deployment');
  assert.strictEqual(fd.metadata.name, 'aurora-agent-prod');
  assert.strictEqual(fd.spec.template.metadata.labels.app, 'aurora-agent');
  assert.strictEqual(fd.spec.template.metadata.labels['network-policy'], 'egress-aurora');
  assert.strictEqual(fd.metadata.labels.tier, 'ops');
  assert.strictEqual(fd.metadata.annotations['example.com/owner'], 'platform-team');
  for (const o of objs(f)) assert.strictEqual(o.metadata.labels.team, 'platform', `${o.kind} commonLabels`);
  const other = one(mustRender(['values-minimal.yaml'], { name: 'prod-agent' }), 'Deployment');
  assert.strictEqual(other.metadata.name, 'prod-agent-aurora-kubectl-agent');
  assert.strictEqual(other.spec.template.metadata.labels.app, 'aurora-kubectl-agent');
});

test('labels: commonLabels, agent.labels and agent.podLabels merge into one map (the most specific wins); selector keys refused', () => {
  const base = 'values-minimal.yaml';
  const r = mustRender([base, writeValues('agent-labels-merge', {
    commonLabels: { team: 'common', app: 'aurora-agent-x', cost: 'c1' },
    agent: { labels: { team: 'deploy' }, podLabels: { team: 'pod', cost: 'c2' } },
  })]);
  for (const o of objs(r)) assert.strictEqual(o.metadata.labels.app, 'aurora-agent-x', `${o.kind}: commonLabels overrides app`);
  const dep = one(r, 'Deployment');
  assert.strictEqual(dep.metadata.labels.team, 'deploy');
  const pod = dep.spec.template.metadata.labels;
  assert.strictEqual(pod.team, 'pod');
  assert.strictEqual(pod.cost, 'c2');
  for (const [k, v] of Object.entries(dep.spec.selector.matchLabels)) assert.strictEqual(pod[k], v, `selector ${k}`);
  const cases = [
    ['commonLabels', (l) => ({ commonLabels: l })],
    ['agent.labels', (l) => ({ agent: { labels: l } })],
    ['agent.podLabels', (l) => ({ agent: { podLabels: l } })],
  ];
  for (const [key, mk] of cases) {
    for (const sel of ['app.kubernetes.io/name', 'app.kubernetes.io/instance']) {
      mustFail([base, writeValues(`agent-labels-sel-${key}-${sel.replace(/\W/g, '')}`, mk({ [sel]: 'other' }))],
        new RegExp(`${key.replace(/\./g, '\\.')}.*${sel.replace(/\./g, '\\.')}.*selector`));
    }
  }
});

test('image: repository:appVersion by default; registry, tag, digest and pull policy from values', () => {
  const appVersion = readYaml(path.join(CHART, 'Chart.yaml'))[0].appVersion;
  const f = writeValues('noimage', { aurora: { wsEndpoint: 'wss://a.example.com/kubectl-agent', agentToken: TOKEN } });
  const c = container(mustRender([f]));
  assert.strictEqual(c.image, `aurora-kubectl-agent:${appVersion}`);
  assert.strictEqual(c.imagePullPolicy, 'IfNotPresent');
  assert.strictEqual(container(mustRender(['values-minimal.yaml'])).image, 'your-registry/aurora-kubectl-agent:1.0.3');
  const full = mustRender(['values-full.yaml']);
  assert.strictEqual(container(full).image, 'registry.example.com/platform/aurora-kubectl-agent@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef');
  assert.strictEqual(container(full).imagePullPolicy, 'Always');
  assert.deepStrictEqual(one(full, 'Deployment').spec.template.spec.imagePullSecrets, [{ name: 'regcred' }]);
});

test('checksum annotations: a new token or CA bundle changes the pod template, other values do not', () => {
  const ann = (files) => one(mustRender(files), 'Deployment').spec.template.metadata.annotations;
  const base = ann(['values-minimal.yaml']);
  assert.match(base['checksum/secret'], /^[0-9a-f]{64}$/);
  const other = ann(['values-minimal.yaml', writeValues('tok2', { aurora: { agentToken: TOKEN.replace('Chart', 'Other') } })]);
  assert.notStrictEqual(other['checksum/secret'], base['checksum/secret']);
  const ca = ann(['values-minimal.yaml', writeValues('ca2', { aurora: { caBundle: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' } })]);
  assert.notStrictEqual(ca['checksum/ca'], base['checksum/ca']);
  assert.strictEqual(ca['checksum/secret'], base['checksum/secret']);
  const log = ann(['values-minimal.yaml', writeValues('log2', { monitoring: { logging: { level: 'debug' } } })]);
  assert.strictEqual(log['checksum/secret'], base['checksum/secret']);
});

test('CA bundle: caBundle becomes a ConfigMap mounted at /etc/aurora/ca/ca.crt; existingCaSecret mounts the Secret', () => {
  const r = mustRender(['values-full.yaml']);
  const cm = one(r, 'ConfigMap');
  const full = readYaml(path.join(VALUES, 'values-full.yaml'))[0];
  assert.strictEqual(cm.data['aurora-ca.pem'], full.aurora.caBundle);
  const spec = one(r, 'Deployment').spec.template.spec;
  assert.deepStrictEqual(spec.volumes.find((v) => v.name === 'aurora-ca').configMap,
    { name: cm.metadata.name, defaultMode: 0o444, items: [{ key: 'aurora-ca.pem', path: 'ca.crt' }] });
  assert.ok(spec.containers[0].volumeMounts.some((m) => m.name === 'aurora-ca' && m.mountPath === '/etc/aurora/ca' && m.readOnly));
  const s = mustRender(['values-ca-secret.yaml']);
  assert.strictEqual(objs(s, 'ConfigMap').length, 0);
  assert.deepStrictEqual(one(s, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'aurora-ca').secret,
    { secretName: 'aurora-ca-secret', defaultMode: 0o444, items: [{ key: 'ca.pem', path: 'ca.crt' }] });
  assert.strictEqual(envValue(container(s), 'AURORA_CA_FILE'), '/etc/aurora/ca/ca.crt');
});

test('service and metrics: one port when metrics share the health port; a metrics port, Service port and scrape annotations otherwise; 0 turns metrics off', () => {
  const m = mustRender(['values-minimal.yaml']);
  assert.deepStrictEqual(one(m, 'Service').spec.ports, [{ name: 'health', port: 8080, targetPort: 'health', protocol: 'TCP' }]);
  assert.strictEqual(one(m, 'Service').spec.type, 'ClusterIP');
  const f = mustRender(['values-full.yaml']);
  assert.deepStrictEqual(container(f).ports.find((p) => p.name === 'metrics'), { name: 'metrics', containerPort: 9100, protocol: 'TCP' });
  const svc = one(f, 'Service');
  assert.strictEqual(svc.spec.type, 'NodePort');
  assert.deepStrictEqual(svc.spec.ports, [{ name: 'health', port: 19090, targetPort: 'health', protocol: 'TCP' },
    { name: 'metrics', port: 9100, targetPort: 'metrics', protocol: 'TCP' }]);
  assert.deepStrictEqual(svc.metadata.annotations, { 'example.com/exposed': 'false' });
  const a = one(f, 'Deployment').spec.template.metadata.annotations;
  assert.strictEqual(a['prometheus.io/scrape'], 'true');
  assert.strictEqual(a['prometheus.io/port'], '9100');
  assert.strictEqual(a['prometheus.io/path'], '/custom-metrics');
  assert.strictEqual(a['example.com/scrape-logs'], 'true');
  const off = mustRender(['values-minimal.yaml', 'generated:extras'].map((x) => (x === 'generated:extras' ? scenarioFiles([x])[0] : x)));
  assert.strictEqual(envValue(container(off), 'AURORA_METRICS_PORT'), '0');
  assert.strictEqual(container(off).ports.length, 1);
  assert.ok(!('prometheus.io/scrape' in one(off, 'Deployment').spec.template.metadata.annotations));
});

test('scheduling values: replicas, strategy, node selector, tolerations, affinity, spread, priority class, grace period', () => {
  const full = readYaml(path.join(VALUES, 'values-full.yaml'))[0].agent;
  const dep = one(mustRender(['values-full.yaml']), 'Deployment');
  const spec = dep.spec.template.spec;
  assert.strictEqual(dep.spec.replicas, 2);
  assert.strictEqual(dep.spec.revisionHistoryLimit, 5);
  assert.deepStrictEqual(dep.spec.strategy, full.strategy);
  assert.deepStrictEqual(spec.nodeSelector, full.nodeSelector);
  assert.deepStrictEqual(spec.tolerations, full.tolerations);
  assert.deepStrictEqual(spec.affinity, full.affinity);
  assert.deepStrictEqual(spec.topologySpreadConstraints, full.topologySpreadConstraints);
  assert.strictEqual(spec.priorityClassName, 'system-cluster-critical');
  assert.strictEqual(spec.terminationGracePeriodSeconds, 60);
  assert.deepStrictEqual(spec.containers[0].resources, full.resources);
  assert.deepStrictEqual(spec.volumes.find((v) => v.name === 'gcloud-key'), full.extraVolumes[0]);
  assert.deepStrictEqual(spec.containers[0].volumeMounts.find((v) => v.name === 'gcloud-key'), full.extraVolumeMounts[0]);
  assert.strictEqual(spec.enableServiceLinks, false);
  const recreate = one(mustRender(['values-ca-secret.yaml']), 'Deployment');
  assert.deepStrictEqual(recreate.spec.strategy, { type: 'Recreate' }, 'Recreate drops the default rollingUpdate');
  assert.deepStrictEqual(one(mustRender(['values-minimal.yaml']), 'Deployment').spec.strategy,
    { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
});

test('NOTES.txt: the guide\'s verification commands for the release namespace and label, not among the manifests', () => {
  const r = mustRender(['values-minimal.yaml']);
  assert.ok(r.notes.includes('kubectl get pods -n aurora -l app=aurora-kubectl-agent'), r.notes);
  assert.ok(r.notes.includes('kubectl logs -n aurora -l app=aurora-kubectl-agent --tail=50'));
  assert.ok(r.notes.includes('kubectl auth can-i --list --as=system:serviceaccount:aurora:aurora-kubectl-agent'));
  assert.ok(r.notes.includes('https://your-aurora-instance.com'));
  assert.ok(!r.text.includes('kubectl get pods -n'));
  const f = mustRender(['values-full.yaml']);
  assert.match(f.notes, /WARNING: aurora\.insecureSkipTLSVerify/);
  assert.match(f.notes, /Command policy: custom; allowed: get, describe, logs, top, events; denied: delete, exec, get secrets\./);
  assert.match(f.notes, /cloud_exec: enabled \(gcloud, aws, az=\/opt\/az\/bin\/az; the image must be the `cloud` target/);
  assert.match(f.notes, /sandbox\.uidSeparation is true: .* must allow the baseline Pod Security Standard/s);
  assert.match(r.notes, /cloud_exec: disabled\./);
  assert.ok(!r.notes.includes('uidSeparation'));
});

test('NOTES.txt: warns when cloudExec\'s concurrent CLIs outgrow the memory limit, reading the quantity as Kubernetes does', () => {
  const notes = (name, v) => mustRender(['values-minimal.yaml', writeValues(name, v)]).notes;
  const on = (agent) => ({ cloudExec: { enabled: true }, agent });
  // the defaults: 16 at once against 1Gi
  const d = notes('mem-default', on({}));
  assert.match(d, /WARNING: cloudExec is enabled with agent\.maxConcurrent 16: /);
  assert.match(d, /The memory limit\s+1Gi \(1024 MiB\) is below 64 MiB \+ 16 x 128 MiB = 2112 MiB/);
  const lim = (memory, maxConcurrent = 16) => notes(`mem-${memory}-${maxConcurrent}`.replace(/[^A-Za-z0-9-]/g, '_'),
    on({ maxConcurrent, resources: { limits: { memory } } }));
  for (const [q, mib] of [['1500M', 1430], ['2147483648', 2048], ['1.5Gi', 1536], ['2000000k', 1907]]) {
    assert.match(lim(q), new RegExp(`\\(${mib} MiB\\) is below`), q);
  }
  for (const q of ['3G', '2112Mi', '3Gi', '1Ti']) assert.ok(!lim(q).includes('WARNING: cloudExec'), q);
  assert.ok(!lim('1Gi', 4).includes('WARNING: cloudExec'), '4 at once fit in 1Gi');
  assert.ok(!lim('lots').includes('WARNING: cloudExec'), 'a quantity it cannot read: no guess');
  assert.ok(!notes('mem-off', { agent: { resources: { limits: { memory: '256Mi' } } } }).includes('WARNING: cloudExec'),
    'cloudExec disabled: kubectl only');
  assert.ok(!mustRender(['values-full.yaml']).notes.includes('WARNING: cloudExec'), '8 at once in 2Gi');
});

test('namespaced objects are in the release namespace; ClusterRole/Binding are cluster-scoped', () => {
  const r = mustRender(['values-full.yaml'], { namespace: 'aurora' });
  for (const o of objs(r)) {
    if (o.kind.startsWith('Cluster')) assert.strictEqual(o.metadata.namespace, undefined, o.kind);
    else assert.strictEqual(o.metadata.namespace, 'aurora', o.kind);
  }
});
