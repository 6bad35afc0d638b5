'use strict';
// Tests of the server's Helm chart in chart/server/ (run by tests/chart/run.sh through
// main.js, after the agent chart's chart_test.js; the same harness: lib.js).
//
// Rendering: aurora-chart-render, the stand-in for `helm template` (tests/chart/render).
// Kubernetes validation: every rendered object strictly against kubernetes-models, the
// ServiceMonitor against the strict subset of its CRD in lib.js, plus API-server checks.
// Values: chart/server/values.schema.json compiled with ajv (draft-07), independently of the
// renderer's gojsonschema check.
// Settings: the server's own settings tables (config_def in server/*.c and
// server/connectors/*.c, the list `aurora-server --help` prints) and the connector guide
// (/work/shared/seed/connectors.md when present) are read, so that a new secret setting or a
// new guide variable that the chart does not handle fails here.

const fs = require('fs');
const path = require('path');
const assert = require('assert');
const Ajv = require('ajv');
const {
  ROOT, HERE, NS, test, readYaml, writeValues, renderer, objs, one, container, envMap, envValue,
  validateK8s, apiServerChecks, mergeInto, leaves, at, summary,
} = require('./lib');

const CHART = path.join(ROOT, 'chart', 'server');
const RELEASE = 'aurora-server';
const SRV = path.join(HERE, 'server');
const { mustRender, mustFail } = renderer(CHART, RELEASE);
const f = (name) => path.join(SRV, name);
const MINIMAL = f('values-minimal.yaml');
const FULL = f('values-full.yaml');
const AWS = f('values-aws.yaml');
const CLAIM = f('values-existing-claim.yaml');
const GUIDE = process.env.AURORA_CONNECTOR_GUIDE || '/work/shared/seed/connectors.md';

const schema = JSON.parse(fs.readFileSync(path.join(CHART, 'values.schema.json'), 'utf8'));
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
let validateValues = () => true;
function valuesErrors(v) {
  if (validateValues(v)) return [];
  return validateValues.errors.map((e) => `${e.instancePath || '/'} ${e.message}`);
}
const defaults = () => readYaml(path.join(CHART, 'values.yaml'))[0];
const vals = (name, obj) => writeValues('srv-' + name.replace(/\W+/g, '-'), obj);

// The server's settings: [{name, secret}] from every config_def table.
function serverSettings() {
  const files = ['server', 'server/connectors'].flatMap((d) => fs.readdirSync(path.join(ROOT, d))
    .filter((x) => x.endsWith('.c')).map((x) => path.join(ROOT, d, x)));
  const out = new Map();
  const re = /\{\s*"([A-Z][A-Z0-9_]+)",\s*(?:NULL|"[^"]*"),\s*CFG_\w+,\s*(?:NULL|"[^"]*"|\w+),\s*((?:"(?:[^"\\]|\\.)*"\s*)+),\s*([01])/g;
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(re)) if (!out.has(m[1])) out.set(m[1], m[3] === '1');
    // OVH's per-region settings come from a macro: OVH_<REGION>_CLIENT_SECRET is secret
    for (const m of text.matchAll(/OVH_REGION_SETTINGS\("([A-Z]+)"/g)) {
      out.set(`OVH_${m[1]}_CLIENT_ID`, false);
      out.set(`OVH_${m[1]}_CLIENT_SECRET`, true);
      out.set(`OVH_${m[1]}_REDIRECT_URI`, false);
    }
  }
  return out;
}
const RESERVED = ['AURORA_ENV', 'AURORA_PORT', 'AURORA_BIND', 'AURORA_OPS_PORT', 'AURORA_OPS_BIND', 'AURORA_DATA_DIR',
  'AURORA_PLAIN_HTTP', 'AURORA_TLS_TERMINATED_BY_PROXY', 'AURORA_TLS_CERT', 'AURORA_TLS_KEY',
  'AURORA_INTERNAL_ADDR', 'AURORA_MASTER_KEY_FILE', 'SECRETS_BACKEND', 'VAULT_ADDR', 'VAULT_AUTH_METHOD', 'VAULT_K8S_ROLE',
  'VAULT_K8S_JWT_PATH', 'VAULT_KV_MOUNT', 'VAULT_PREFIX', 'VAULT_CACERT', 'AWS_SM_REGION', 'AWS_SM_ENDPOINT'];

// ================================================================== tests

console.log('# chart/server/: rendered with aurora-chart-render, a stand-in for `helm template`');

test('server chart YAML files parse (YAML 1.1, no duplicate keys), templates/ holds only manifests, _helpers.tpl and NOTES.txt', () => {
  const files = ['Chart.yaml', 'values.yaml'].map((x) => path.join(CHART, x))
    .concat(fs.readdirSync(SRV).filter((x) => /\.ya?ml$/.test(x)).map(f));
  for (const file of files) {
    const docs = readYaml(file);
    assert.strictEqual(docs.length, 1, `${file}: ${docs.length} documents`);
  }
  for (const x of fs.readdirSync(path.join(CHART, 'templates'))) {
    assert.ok(/\.yaml$/.test(x) || x === '_helpers.tpl' || x === 'NOTES.txt', `unexpected file templates/${x}`);
  }
  assert.ok(fs.existsSync(path.join(CHART, '.helmignore')));
});

test('server Chart.yaml: apiVersion v2, name aurora-server, SemVer version, appVersion, kubeVersion >= 1.23 (autoscaling/v2)', () => {
  const c = readYaml(path.join(CHART, 'Chart.yaml'))[0];
  assert.strictEqual(c.apiVersion, 'v2');
  assert.strictEqual(c.name, 'aurora-server');
  assert.match(c.version, /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$/);
  assert.strictEqual(typeof c.appVersion, 'string');
  assert.strictEqual(c.kubeVersion, '>=1.23.0-0');
  mustFail([MINIMAL], /chart requires kubeVersion: >=1\.23\.0-0 which is incompatible with Kubernetes v1\.22\.0/, { kubeVersion: '1.22.0' });
});

test('server values.schema.json compiles (draft-07, ajv strict) and the defaults validate', () => {
  assert.strictEqual(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  validateValues = ajv.compile(schema);
  assert.deepStrictEqual(valuesErrors(defaults()), []);
});

const SCENARIOS = {
  minimal: [MINIMAL],
  full: [FULL],
  aws: [AWS],
  'existing-claim': [CLAIM],
  'minimal + ops port + plain HTTP + ServiceMonitor + NetworkPolicy (open egress)': [MINIMAL, 'gen:ops'],
};
function scenario(files) {
  return files.map((x) => (x === 'gen:ops' ? vals('ops', {
    ops: { port: 9102 }, tls: { plainHttp: true },
    serviceMonitor: { enabled: true }, networkPolicy: { enabled: true },
  }) : x));
}

for (const [name, files] of Object.entries(SCENARIOS)) {
  test(`server values (${name}) render; coalesced values validate (ajv); every object validates strictly (Kubernetes schemas + API-server checks)`, () => {
    const r = mustRender(scenario(files));
    assert.deepStrictEqual(valuesErrors(r.values), []);
    const errors = [];
    for (const { source, object } of r.objects) for (const e of validateK8s(object)) errors.push(`${source} ${object.kind}: ${e}`);
    errors.push(...apiServerChecks(objs(r)));
    assert.deepStrictEqual(errors, []);
  });
}

test('server values-full.yaml (with values-aws/existing-claim.yaml) sets every value of values.yaml to a non-default value', () => {
  const d = defaults();
  const files = [FULL, AWS, CLAIM].map((x) => readYaml(x)[0]);
  const sameAsDefaultOk = new Set(['environment', 'podSecurityContext.runAsNonRoot', 'podSecurityContext.seccompProfile.type',
    'securityContext.allowPrivilegeEscalation', 'securityContext.privileged', 'securityContext.readOnlyRootFilesystem',
    'securityContext.runAsNonRoot', 'securityContext.capabilities.drop', 'securityContext.seccompProfile.type',
    'livenessProbe.enabled', 'readinessProbe.enabled', 'serviceAccount.create', 'persistence.enabled', 'tls.plainHttp',
    'secretsBackend.vault.authMethod', 'strategy.type', 'replicaCount', 'persistence.existingClaim']);
  const missing = [];
  const unchanged = [];
  // label maps are compared whole (their keys hold dots)
  const mapValued = ['networkPolicy.opsNamespaceSelector'];
  const all = leaves(d).filter((l) => !mapValued.some((m) => l.startsWith(m + '.'))).concat(mapValued);
  for (const leaf of all) {
    const sets = files.map((x) => at(x, leaf)).filter((x) => x.present);
    if (!sets.length) missing.push(leaf);
    else if (!sameAsDefaultOk.has(leaf) && sets.every((s) => JSON.stringify(s.value) === JSON.stringify(at(d, leaf).value))) unchanged.push(leaf);
  }
  assert.deepStrictEqual(missing, [], 'values not set by any test values file');
  assert.deepStrictEqual(unchanged, [], 'values only ever set to their default');
});

test('the server chart defaults alone fail: secretEnv.INTERNAL_API_SECRET is required (production start-up check)', () => {
  mustFail([], /execution error at \(aurora-server\/templates\/deployment\.yaml:\d+:\d+\): secretEnv\.INTERNAL_API_SECRET is required: AURORA_ENV=production refuses the development default/);
});

const SCHEMA_REJECTS = [
  ['an unknown key (typo secretsbackend)', { secretsbackend: { type: 'vault' } }, /secretsbackend/],
  ['secretsBackend.type gcp', { secretsBackend: { type: 'gcp' } }, /secretsBackend\.type/],
  ['a secretEnv entry without key', { secretEnv: { SLACK_SIGNING_SECRET: { secretName: 'slack' } } }, /secretEnv\.SLACK_SIGNING_SECRET/],
  ['a secretEnv entry with a literal value', { secretEnv: { SLACK_SIGNING_SECRET: { value: 'abc' } } }, /secretEnv\.SLACK_SIGNING_SECRET/],
  ['a secretEnv Secret name with capitals', { secretEnv: { SLACK_SIGNING_SECRET: { secretName: 'Slack', key: 'k' } } }, /secretEnv\.SLACK_SIGNING_SECRET\.secretName/],
  ['a config name that is not a variable name', { config: { 'frontend-url': 'x' } }, /config/],
  ['a config value that is a map', { config: { FRONTEND_URL: { url: 'x' } } }, /config\.FRONTEND_URL/],
  ['ops.port 5080 (the main port)', { ops: { port: 5080 } }, /ops\.port/],
  ['a numeric image tag', { image: { tag: 1.1 } }, /image\.tag/],
  ['environment staging', { environment: 'staging' }, /environment/],
  ['vault.authMethod approle', { secretsBackend: { vault: { authMethod: 'approle' } } }, /secretsBackend\.vault\.authMethod/],
  ['vault.tokenExpirationSeconds 60', { secretsBackend: { vault: { tokenExpirationSeconds: 60 } } }, /tokenExpirationSeconds/],
  ['a vault addr with credentials', { secretsBackend: { vault: { addr: 'https://user:pw@vault:8200' } } }, /secretsBackend\.vault\.addr/],
  ['aws.region "Frankfurt"', { secretsBackend: { aws: { region: 'Frankfurt' } } }, /secretsBackend\.aws\.region/],
  ['persistence.size "lots"', { persistence: { size: 'lots' } }, /persistence\.size/],
  ['ingress.hosts.api with a scheme', { ingress: { hosts: { api: 'https://api.example.com' } } }, /ingress\.hosts\.api/],
  ['autoscaling target 150%', { autoscaling: { targetCPUUtilizationPercentage: 150 } }, /targetCPUUtilizationPercentage/],
  ['serviceMonitor.interval "often"', { serviceMonitor: { interval: 'often' } }, /serviceMonitor\.interval/],
];
for (const [what, override, re] of SCHEMA_REJECTS) {
  test(`server values schema rejects ${what} (ajv and the renderer)`, () => {
    const r = mustFail([MINIMAL, vals('reject-' + what, override)], /values don't meet the specifications of the schema/);
    assert.match(r.stderr, re);
    const merged = [readYaml(MINIMAL)[0], override].reduce(mergeInto, defaults());
    assert.ok(valuesErrors(merged).length > 0, 'ajv accepted it');
  });
}

const MULTI = { secretEnv: { DATABASE_URL: { secretName: 'pg', key: 'url' }, AURORA_REDIS_URL: { secretName: 'redis', key: 'url' },
  AURORA_INTERNAL_FORWARD_SECRET: { secretName: 's', key: 'fwd' }, AURORA_MASTER_KEY: { secretName: 's', key: 'mk' } },
persistence: { enabled: false } };
const RENDER_REJECTS = [
  ['SQLite (no DATABASE_URL) with replicaCount 2', { replicaCount: 2 }, /more than one replica \(replicaCount > 1 or autoscaling\.enabled\) needs PostgreSQL: SQLite is single-process/],
  ['SQLite with autoscaling', { autoscaling: { enabled: true } }, /needs PostgreSQL: SQLite is single-process/],
  ['replicas on PostgreSQL without Redis', { replicaCount: 3, persistence: { enabled: false }, secretEnv: { DATABASE_URL: { secretName: 'pg', key: 'url' } } }, /needs Redis: the replicas share their agent sessions there\. Set secretEnv\.AURORA_REDIS_URL/],
  ['Redis without AURORA_INTERNAL_FORWARD_SECRET', { secretEnv: { AURORA_REDIS_URL: { secretName: 'redis', key: 'url' } } }, /secretEnv\.AURORA_REDIS_URL needs secretEnv\.AURORA_INTERNAL_FORWARD_SECRET/],
  ['persistence with many replicas', Object.assign({}, MULTI, { replicaCount: 2, persistence: { enabled: true } }), /persistence\.enabled with more than one replica/],
  ['SQLite without persistence', { persistence: { enabled: false }, secretEnv: { AURORA_MASTER_KEY: { secretName: 's', key: 'mk' } } }, /SQLite \(no secretEnv\.DATABASE_URL\) keeps the state in AURORA_DATA_DIR: set persistence\.enabled=true/],
  ['the local backend without persistence or AURORA_MASTER_KEY', { persistence: { enabled: false }, secretEnv: { DATABASE_URL: { secretName: 'pg', key: 'url' } } }, /secretsBackend\.type local without persistence: the master key file would be lost/],
  ['vault without addr', { secretsBackend: { type: 'vault', vault: { role: 'r' } } }, /secretsBackend\.vault\.addr is required/],
  ['vault Kubernetes auth without role', { secretsBackend: { type: 'vault', vault: { addr: 'https://vault:8200' } } }, /secretsBackend\.vault\.role is required with authMethod kubernetes/],
  ['vault token auth without VAULT_TOKEN', { secretsBackend: { type: 'vault', vault: { addr: 'https://vault:8200', authMethod: 'token' } } }, /authMethod token needs secretEnv\.VAULT_TOKEN/],
  ['aws_secrets_manager without region', { secretsBackend: { type: 'aws_secrets_manager' } }, /secretsBackend\.aws\.region is required/],
  ['aws_secrets_manager without keys', { secretsBackend: { type: 'aws_secrets_manager', aws: { region: 'eu-west-1' } } }, /needs secretEnv\.AWS_ACCESS_KEY_ID and secretEnv\.AWS_SECRET_ACCESS_KEY/],
  ['ingress without hosts.api', { ingress: { enabled: true } }, /ingress\.hosts\.api is required with ingress\.enabled/],
  ['a secret in config (GITHUB_APP_WEBHOOK_SECRET)', { config: { GITHUB_APP_WEBHOOK_SECRET: 'abc' } }, /config\.GITHUB_APP_WEBHOOK_SECRET is a secret: the ConfigMap never holds secrets\. Put it in a Secret and set secretEnv\.GITHUB_APP_WEBHOOK_SECRET/],
  ['DATABASE_URL in config', { config: { DATABASE_URL: 'postgres://u:p@db/aurora' } }, /config\.DATABASE_URL is a secret/],
  ['a chart-managed setting in config', { config: { SECRETS_BACKEND: 'vault' } }, /config\.SECRETS_BACKEND is set by the chart/],
  ['a chart-managed setting in secretEnv', { secretEnv: { AURORA_ENV: { secretName: 's', key: 'env' } } }, /secretEnv\.AURORA_ENV is set by the chart/],
  ['the same name in config and secretEnv', { config: { SLACK_CLIENT_ID: 'x' }, secretEnv: { SLACK_CLIENT_ID: { secretName: 's', key: 'id' } } }, /SLACK_CLIENT_ID is in both config and secretEnv/],
  ['extraEnv repeating a chart variable', { extraEnv: [{ name: 'AURORA_PORT', value: '1' }] }, /extraEnv AURORA_PORT is already set/],
  ['a PDB with minAvailable and maxUnavailable', { podDisruptionBudget: { enabled: true, maxUnavailable: 1 } }, /set only one of minAvailable and maxUnavailable/],
  ['autoscaling min > max', Object.assign({}, MULTI, { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 3 } }), /autoscaling\.minReplicas is larger than autoscaling\.maxReplicas/],
];
for (const [what, override, re] of RENDER_REJECTS) {
  test(`server render fails with a clear message: ${what}`, () => {
    mustFail([MINIMAL, vals('rej-' + what, override)], re);
  });
}

test('every secret setting of the server and its connectors (config_def secret) is refused in config:, accepted in secretEnv', () => {
  const settings = serverSettings();
  const secrets = [...settings].filter(([, s]) => s).map(([n]) => n);
  assert.ok(secrets.length >= 20 && secrets.includes('SLACK_SIGNING_SECRET') && secrets.includes('OVH_EU_CLIENT_SECRET'), secrets.join(' '));
  const notPassed = [];
  for (const name of secrets) {
    const r = mustFail([MINIMAL, vals('secret-' + name, { config: { [name]: 'x' } })], /is a secret: the ConfigMap never holds secrets/);
    assert.match(r.stderr, new RegExp(`config\\.${name} is a secret`));
  }
  const se = {};
  for (const name of secrets) se[name] = { secretName: 'aurora-secrets', key: name.toLowerCase().replace(/_/g, '-') };
  const c = container(mustRender([MINIMAL, vals('all-secrets', { secretEnv: se })]));
  for (const name of secrets) {
    const e = envMap(c)[name];
    if (!e || !e.valueFrom || !e.valueFrom.secretKeyRef) notPassed.push(name);
  }
  assert.deepStrictEqual(notPassed, [], 'secret settings not passed as secretKeyRef');
});

test('every non-secret server setting the chart does not set itself is accepted in config: and lands in the ConfigMap', () => {
  const settings = serverSettings();
  const plain = [...settings].filter(([n, s]) => !s && !RESERVED.includes(n)).map(([n]) => n);
  assert.ok(plain.includes('FRONTEND_URL') && plain.includes('GITHUB_APP_ID') && plain.length > 100, String(plain.length));
  const config = {};
  for (const n of plain) config[n] = `v-${n.toLowerCase()}`;
  const r = mustRender([MINIMAL, vals('all-plain', { config })]);
  const cm = one(r, 'ConfigMap');
  for (const n of plain) assert.strictEqual(cm.data[n], `v-${n.toLowerCase()}`, n);
  // and every setting the chart sets itself is one the server knows (no typo in the chart)
  for (const n of RESERVED) assert.ok(settings.has(n), `chart-managed ${n} is not a server setting`);
});

test('the connector guide\'s variables: every NAME= it lists is a config: key of values.yaml or a secret (secretEnv)', () => {
  if (!fs.existsSync(GUIDE)) {
    console.log(`#   (connector guide ${GUIDE} not present: checked against values.yaml only)`);
    return;
  }
  const names = new Set([...fs.readFileSync(GUIDE, 'utf8').matchAll(/\b([A-Z][A-Z0-9_]{5,})=/g)].map((m) => m[1]));
  const settings = serverSettings();
  const keys = Object.keys(defaults().config);
  const missing = [];
  for (const n of names) {
    if (n === 'SECRETS_BACKEND' || n === 'AURORA_ENV') continue; // secretsBackend.type, environment
    const secret = settings.get(n) === true || /SECRET|PASSWORD|_TOKEN$|_KEY$/.test(n);
    if (!keys.includes(n) && !secret) missing.push(n);
  }
  assert.deepStrictEqual(missing, []);
  for (const k of ['GITHUB_APP_ID', 'GITHUB_APP_CLIENT_ID', 'NEXT_PUBLIC_GITHUB_APP_SLUG', 'GITHUB_APP_WEBHOOK_URL', 'GITHUB_APP_SETUP_URL', 'FRONTEND_URL', 'SLACK_CLIENT_ID']) {
    assert.ok(keys.includes(k), k);
  }
});

test('config: becomes the ConfigMap (envFrom); empty values left out; numbers and booleans as text; a config change rolls the pods', () => {
  const r = mustRender([FULL]);
  const cm = one(r, 'ConfigMap');
  const full = readYaml(FULL)[0].config;
  for (const [k, v] of Object.entries(full)) assert.strictEqual(cm.data[k], String(v), k);
  assert.strictEqual(cm.data.AURORA_EXEC_MAX_PER_CLUSTER, '256');
  assert.strictEqual(cm.data.NEXT_PUBLIC_ENABLE_JIRA, 'true');
  assert.deepStrictEqual(container(r).envFrom, [{ configMapRef: { name: cm.metadata.name } }]);
  const m = mustRender([MINIMAL]);
  assert.deepStrictEqual(one(m, 'ConfigMap').data, { AURORA_LOG_FORMAT: 'json', AURORA_LOG_LEVEL: 'info' });
  const ann = (x) => one(x, 'Deployment').spec.template.metadata.annotations['checksum/config'];
  assert.match(ann(m), /^[0-9a-f]{64}$/);
  assert.notStrictEqual(ann(mustRender([MINIMAL, vals('cfg2', { config: { FRONTEND_URL: 'https://a.example.com' } })])), ann(m));
  assert.strictEqual(ann(mustRender([MINIMAL, vals('cfg3', { resources: { limits: { memory: '1Gi' } } })])), ann(m));
});

test('secrets only through secretKeyRef to existing Secrets: no Secret object, no secret name in the ConfigMap, no literal value', () => {
  for (const files of [[MINIMAL], [FULL], [AWS], [CLAIM]]) {
    const r = mustRender(files);
    assert.strictEqual(objs(r, 'Secret').length, 0, 'the chart creates no Secret');
    const given = Object.assign({}, r.values.secretEnv);
    const env = envMap(container(r));
    for (const [name, ref] of Object.entries(given)) {
      const want = { name: ref.secretName, key: ref.key };
      if (ref.optional) want.optional = true;
      assert.deepStrictEqual(env[name].valueFrom, { secretKeyRef: want }, name);
    }
    for (const k of Object.keys(one(r, 'ConfigMap').data)) assert.ok(!/SECRET|PASSWORD|_TOKEN$|_KEY$|DATABASE_URL|REDIS_URL/.test(k), k);
    for (const e of container(r).env) {
      if (!RESERVED.includes(e.name) && /SECRET|PASSWORD|_TOKEN$|_KEY$|DATABASE_URL|REDIS_URL|AWS_ACCESS_KEY_ID/.test(e.name)) assert.ok(e.valueFrom && e.valueFrom.secretKeyRef, `${e.name} is not from a Secret`);
    }
  }
});

test('environment: AURORA_ENV=production by default, AURORA_PORT 5080, AURORA_DATA_DIR on the data volume, SECRETS_BACKEND local', () => {
  const c = container(mustRender([MINIMAL]));
  assert.deepStrictEqual(c.args, ['serve']);
  const want = { AURORA_ENV: 'production', AURORA_PORT: '5080', AURORA_OPS_PORT: '0', AURORA_DATA_DIR: '/var/lib/aurora', SECRETS_BACKEND: 'local' };
  for (const [k, v] of Object.entries(want)) assert.strictEqual(envValue(c, k), v, k);
  for (const k of ['AURORA_PLAIN_HTTP', 'AURORA_TLS_CERT', 'POD_IP', 'AURORA_INTERNAL_ADDR', 'VAULT_ADDR', 'AWS_SM_REGION']) assert.ok(!(k in envMap(c)), k);
  assert.ok(c.volumeMounts.some((m) => m.name === 'data' && m.mountPath === '/var/lib/aurora'));
  assert.strictEqual(envValue(container(mustRender([AWS])), 'AURORA_ENV'), 'development');
});

test('probes: liveness GET /health, readiness GET /ready over HTTPS on 5080; on the ops port (HTTP) when ops.port is set; HTTP with tls.plainHttp', () => {
  const probe = (c, p) => [c[p].httpGet.path, c[p].httpGet.port, c[p].httpGet.scheme];
  const m = container(mustRender([MINIMAL]));
  assert.deepStrictEqual(probe(m, 'livenessProbe'), ['/health', 'https', 'HTTPS']);
  assert.deepStrictEqual(probe(m, 'readinessProbe'), ['/ready', 'https', 'HTTPS']);
  assert.ok(!m.startupProbe);
  const full = container(mustRender([FULL]));
  assert.deepStrictEqual(probe(full, 'livenessProbe'), ['/health', 'ops', 'HTTP']);
  assert.deepStrictEqual(probe(full, 'readinessProbe'), ['/ready', 'ops', 'HTTP']);
  assert.deepStrictEqual(probe(full, 'startupProbe'), ['/health', 'ops', 'HTTP']);
  assert.strictEqual(full.readinessProbe.successThreshold, 2);
  assert.strictEqual(full.livenessProbe.periodSeconds, 30);
  assert.deepStrictEqual(full.ports, [{ name: 'https', containerPort: 5080, protocol: 'TCP' }, { name: 'ops', containerPort: 9090, protocol: 'TCP' }]);
  assert.strictEqual(envValue(full, 'AURORA_OPS_PORT'), '9090');
  const plain = container(mustRender([AWS]));
  assert.deepStrictEqual(probe(plain, 'readinessProbe'), ['/ready', 'https', 'HTTP']);
  assert.strictEqual(envValue(plain, 'AURORA_PLAIN_HTTP'), 'true');
  assert.strictEqual(envValue(plain, 'AURORA_TLS_TERMINATED_BY_PROXY'), 'true', 'production start-up check: TLS terminated by the ingress');
});

test('TLS: tls.existingSecret mounted read-only for AURORA_TLS_CERT/KEY; without it the self-signed certificate in the data directory', () => {
  const r = mustRender([FULL]);
  const c = container(r);
  assert.strictEqual(envValue(c, 'AURORA_TLS_CERT'), '/etc/aurora/tls/tls.crt');
  assert.strictEqual(envValue(c, 'AURORA_TLS_KEY'), '/etc/aurora/tls/tls.key');
  assert.ok(c.volumeMounts.some((m) => m.name === 'tls' && m.mountPath === '/etc/aurora/tls' && m.readOnly));
  const vol = one(r, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'tls');
  assert.deepStrictEqual(vol.secret, { secretName: 'aurora-api-tls', defaultMode: 0o440, items: [{ key: 'tls.crt', path: 'tls.crt' }, { key: 'tls.key', path: 'tls.key' }] });
});

test('Service: 5080 named https (targetPort https, appProtocol https); the ops port when set; none with plain HTTP appProtocol', () => {
  const m = one(mustRender([MINIMAL]), 'Service');
  assert.deepStrictEqual(m.spec.ports, [{ name: 'https', port: 5080, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' }]);
  const full = one(mustRender([FULL]), 'Service');
  assert.strictEqual(full.spec.type, 'LoadBalancer');
  assert.deepStrictEqual(full.spec.ports, [{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' },
    { name: 'ops', port: 9090, targetPort: 'ops', protocol: 'TCP', appProtocol: 'http' }]);
  assert.deepStrictEqual(full.metadata.annotations, { 'example.com/lb': 'internal' });
  assert.ok(!('appProtocol' in one(mustRender([AWS]), 'Service').spec.ports[0]));
});

test('Ingress: host ingress.hosts.api (the guide\'s name), / to the Service port https, class, TLS, annotations; none by default', () => {
  assert.strictEqual(objs(mustRender([MINIMAL]), 'Ingress').length, 0);
  const r = mustRender([FULL]);
  const ing = one(r, 'Ingress');
  assert.strictEqual(ing.spec.ingressClassName, 'nginx');
  assert.deepStrictEqual(ing.spec.tls, [{ secretName: 'aurora-api-public-tls', hosts: ['api.aurora.example.com'] }]);
  assert.strictEqual(ing.spec.rules.length, 1);
  assert.strictEqual(ing.spec.rules[0].host, 'api.aurora.example.com');
  assert.deepStrictEqual(ing.spec.rules[0].http.paths, [{ path: '/', pathType: 'Prefix',
    backend: { service: { name: one(r, 'Service').metadata.name, port: { name: 'https' } } } }]);
  assert.strictEqual(ing.metadata.annotations['nginx.ingress.kubernetes.io/backend-protocol'], 'HTTPS');
});

test('many replicas: PostgreSQL and Redis from Secrets, POD_IP from the downward API before AURORA_INTERNAL_ADDR=$(POD_IP):5080', () => {
  const r = mustRender([FULL]);
  const c = container(r);
  const names = c.env.map((e) => e.name);
  assert.deepStrictEqual(envMap(c).POD_IP.valueFrom, { fieldRef: { fieldPath: 'status.podIP' } });
  assert.strictEqual(envValue(c, 'AURORA_INTERNAL_ADDR'), '$(POD_IP):5080');
  assert.ok(names.indexOf('POD_IP') < names.indexOf('AURORA_INTERNAL_ADDR'), 'the kubelet expands $(POD_IP) only from earlier entries');
  assert.deepStrictEqual(envMap(c).DATABASE_URL.valueFrom, { secretKeyRef: { name: 'aurora-postgres', key: 'url' } });
  assert.deepStrictEqual(envMap(c).AURORA_REDIS_URL.valueFrom, { secretKeyRef: { name: 'aurora-redis', key: 'url' } });
  assert.deepStrictEqual(envMap(c).AURORA_INTERNAL_FORWARD_SECRET.valueFrom, { secretKeyRef: { name: 'aurora-server', key: 'forward-secret' } });
  const two = mustRender([MINIMAL, vals('two', Object.assign({}, MULTI, { replicaCount: 2 }))]);
  assert.strictEqual(one(two, 'Deployment').spec.replicas, 2);
  assert.strictEqual(objs(two, 'PersistentVolumeClaim').length, 0);
  assert.deepStrictEqual(one(two, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'data').emptyDir, { sizeLimit: '256Mi' });
});

test('Vault with Kubernetes auth: VAULT_* settings, a projected ServiceAccount token (audience, lifetime, 0440) at VAULT_K8S_JWT_PATH, CA from a ConfigMap; no automounted token', () => {
  const r = mustRender([FULL]);
  const c = container(r);
  const want = { SECRETS_BACKEND: 'vault', VAULT_ADDR: 'https://vault.vault.svc:8200', VAULT_AUTH_METHOD: 'kubernetes',
    VAULT_K8S_ROLE: 'aurora-server', VAULT_K8S_JWT_PATH: '/var/run/secrets/aurora/vault/token', VAULT_KV_MOUNT: 'secret',
    VAULT_PREFIX: 'aurora-prod/', VAULT_CACERT: '/etc/aurora/vault-ca/ca.crt' };
  for (const [k, v] of Object.entries(want)) assert.strictEqual(envValue(c, k), v, k);
  const spec = one(r, 'Deployment').spec.template.spec;
  assert.strictEqual(spec.automountServiceAccountToken, false);
  const tok = spec.volumes.find((v) => v.name === 'vault-token').projected;
  assert.deepStrictEqual(tok, { defaultMode: 0o440, sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 900, audience: 'vault' } }] });
  const mount = c.volumeMounts.find((m) => m.name === 'vault-token');
  assert.strictEqual(`${mount.mountPath}/token`, envValue(c, 'VAULT_K8S_JWT_PATH'));
  assert.deepStrictEqual(spec.volumes.find((v) => v.name === 'vault-ca').configMap, { name: 'vault-ca', defaultMode: 0o444, items: [{ key: 'vault-ca.pem', path: 'ca.crt' }] });
  assert.strictEqual(one(r, 'ServiceAccount').metadata.name, spec.serviceAccountName);
  assert.strictEqual(one(r, 'ServiceAccount').automountServiceAccountToken, false);
  // token auth: VAULT_TOKEN from a Secret, no projected token
  const t = mustRender([MINIMAL, vals('vault-token', { secretsBackend: { type: 'vault', vault: { addr: 'https://vault:8200', authMethod: 'token' } },
    secretEnv: { VAULT_TOKEN: { secretName: 'vault', key: 'token' } } })]);
  assert.deepStrictEqual(envMap(container(t)).VAULT_TOKEN.valueFrom, { secretKeyRef: { name: 'vault', key: 'token' } });
  assert.ok(!one(t, 'Deployment').spec.template.spec.volumes.some((v) => v.name === 'vault-token'));
  assert.ok(!('VAULT_K8S_ROLE' in envMap(container(t))));
});

test('AWS Secrets Manager: AWS_SM_REGION (and endpoint), keys from a Secret; no Vault settings', () => {
  const c = container(mustRender([AWS]));
  assert.strictEqual(envValue(c, 'SECRETS_BACKEND'), 'aws_secrets_manager');
  assert.strictEqual(envValue(c, 'AWS_SM_REGION'), 'eu-central-1');
  assert.ok(!('AWS_SM_ENDPOINT' in envMap(c)));
  assert.deepStrictEqual(envMap(c).AWS_ACCESS_KEY_ID.valueFrom, { secretKeyRef: { name: 'aurora-aws', key: 'access-key-id' } });
  assert.deepStrictEqual(envMap(c).AWS_SECRET_ACCESS_KEY.valueFrom, { secretKeyRef: { name: 'aurora-aws', key: 'secret-access-key' } });
  for (const k of Object.keys(envMap(c))) assert.ok(!k.startsWith('VAULT_'), k);
  const ep = container(mustRender([AWS, vals('aws-ep', { secretsBackend: { aws: { endpoint: 'https://vpce.example.com' } } })]));
  assert.strictEqual(envValue(ep, 'AWS_SM_ENDPOINT'), 'https://vpce.example.com');
});

test('restricted pod security: non-root, read-only root fs, drop ALL, seccomp RuntimeDefault, no privilege escalation; writable data and /tmp are volumes', () => {
  for (const files of [[MINIMAL], [FULL], [AWS]]) {
    const spec = one(mustRender(files), 'Deployment').spec.template.spec;
    assert.strictEqual(spec.securityContext.runAsNonRoot, true);
    assert.ok(spec.securityContext.runAsUser > 0);
    assert.deepStrictEqual(spec.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) assert.ok(!spec[k], k);
    for (const c of spec.containers) {
      const sc = c.securityContext;
      assert.strictEqual(sc.runAsNonRoot, true);
      assert.strictEqual(sc.readOnlyRootFilesystem, true);
      assert.strictEqual(sc.allowPrivilegeEscalation, false);
      assert.strictEqual(sc.privileged, false);
      assert.deepStrictEqual(sc.capabilities, { drop: ['ALL'] });
      assert.deepStrictEqual(sc.seccompProfile, { type: 'RuntimeDefault' });
      assert.ok(!(c.ports || []).some((p) => p.hostPort), 'no host port');
    }
    const allowed = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
    for (const v of spec.volumes) {
      const types = Object.keys(v).filter((k) => k !== 'name');
      assert.ok(types.every((t) => allowed.includes(t)), `volume ${v.name}: ${types}`);
    }
    assert.ok(spec.volumes.some((v) => v.name === 'tmp' && v.emptyDir));
  }
});

test('data volume: a PVC (keep on uninstall) with persistence, an existing claim, or an emptyDir (medium, sizeLimit) with PostgreSQL', () => {
  const m = mustRender([AWS]);
  const pvc = one(m, 'PersistentVolumeClaim');
  assert.deepStrictEqual(pvc.spec, { accessModes: ['ReadWriteOnce'], storageClassName: 'gp3', resources: { requests: { storage: '2Gi' } } });
  assert.strictEqual(pvc.metadata.annotations['helm.sh/resource-policy'], 'keep');
  assert.deepStrictEqual(one(m, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'data').persistentVolumeClaim, { claimName: pvc.metadata.name });
  const c = mustRender([CLAIM]);
  assert.strictEqual(objs(c, 'PersistentVolumeClaim').length, 0);
  assert.deepStrictEqual(one(c, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'data').persistentVolumeClaim, { claimName: 'aurora-data' });
  assert.deepStrictEqual(one(c, 'Deployment').spec.strategy, { type: 'Recreate' });
  assert.strictEqual(one(c, 'Deployment').spec.template.spec.serviceAccountName, 'preexisting-sa');
  assert.strictEqual(objs(c, 'ServiceAccount').length, 0);
  const full = one(mustRender([FULL]), 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'data');
  assert.deepStrictEqual(full.emptyDir, { medium: 'Memory', sizeLimit: '128Mi' });
});

test('PodDisruptionBudget (policy/v1) and HorizontalPodAutoscaler (autoscaling/v2, CPU and memory; the Deployment leaves replicas to it)', () => {
  const r = mustRender([FULL]);
  const pdb = one(r, 'PodDisruptionBudget');
  assert.strictEqual(pdb.apiVersion, 'policy/v1');
  assert.deepStrictEqual(pdb.spec, { maxUnavailable: 1, selector: { matchLabels: one(r, 'Deployment').spec.selector.matchLabels } });
  const hpa = one(r, 'HorizontalPodAutoscaler');
  assert.strictEqual(hpa.apiVersion, 'autoscaling/v2');
  assert.deepStrictEqual([hpa.spec.minReplicas, hpa.spec.maxReplicas], [3, 10]);
  assert.deepStrictEqual(hpa.spec.metrics, [
    { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 60 } } },
    { type: 'Resource', resource: { name: 'memory', target: { type: 'Utilization', averageUtilization: 80 } } }]);
  assert.ok(!('replicas' in one(r, 'Deployment').spec));
  const m = mustRender([MINIMAL]);
  for (const k of ['PodDisruptionBudget', 'HorizontalPodAutoscaler', 'ServiceMonitor', 'NetworkPolicy', 'Ingress']) assert.strictEqual(objs(m, k).length, 0, k);
  assert.deepStrictEqual(one(mustRender([MINIMAL, vals('pdb', { podDisruptionBudget: { enabled: true } })]), 'PodDisruptionBudget').spec.minAvailable, 1);
});

test('ServiceMonitor: /metrics on the ops port over HTTP, or on https (certificate not verified) without one; labels, interval', () => {
  const sm = one(mustRender([FULL]), 'ServiceMonitor');
  assert.strictEqual(sm.metadata.labels.release, 'kube-prometheus-stack');
  assert.deepStrictEqual(sm.spec.endpoints, [{ port: 'ops', path: '/metrics', scheme: 'http', interval: '15s', scrapeTimeout: '5s' }]);
  assert.deepStrictEqual(sm.spec.namespaceSelector, { matchNames: [NS] });
  const main = one(mustRender([MINIMAL, vals('sm-main', { serviceMonitor: { enabled: true } })]), 'ServiceMonitor');
  assert.deepStrictEqual(main.spec.endpoints, [{ port: 'https', path: '/metrics', scheme: 'https', interval: '30s', scrapeTimeout: '10s', tlsConfig: { insecureSkipVerify: true } }]);
  assert.match(validateK8s(Object.assign({}, sm, { spec: Object.assign({}, sm.spec, { bogus: 1 }) })).join(), /additional properties/);
});

test('NetworkPolicy: 5080 from ingressFrom and from the other replicas, the ops port from the namespace selector; egress open unless restricted (replicas always allowed)', () => {
  const r = mustRender([FULL]);
  const np = one(r, 'NetworkPolicy');
  const sel = one(r, 'Deployment').spec.selector.matchLabels;
  assert.deepStrictEqual(np.spec.podSelector, { matchLabels: sel });
  assert.deepStrictEqual(np.spec.policyTypes, ['Ingress', 'Egress']);
  assert.deepStrictEqual(np.spec.ingress, [
    { ports: [{ port: 'https', protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } }] },
    { ports: [{ port: 'https', protocol: 'TCP' }], from: [{ podSelector: { matchLabels: sel } }] },
    { ports: [{ port: 'ops', protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } } }] }]);
  assert.deepStrictEqual(np.spec.egress[0], { ports: [{ port: 5080, protocol: 'TCP' }], to: [{ podSelector: { matchLabels: sel } }] });
  assert.deepStrictEqual(np.spec.egress.slice(1), readYaml(FULL)[0].networkPolicy.egress);
  const open = one(mustRender(scenario([MINIMAL, 'gen:ops'])), 'NetworkPolicy');
  assert.deepStrictEqual(open.spec.policyTypes, ['Ingress']);
  assert.ok(!('egress' in open.spec));
  assert.deepStrictEqual(open.spec.ingress[0], { ports: [{ port: 'https', protocol: 'TCP' }] }, '5080 from anywhere by default');
  assert.deepStrictEqual(open.spec.ingress[1].from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
});

test('labels, names and image: app label, app.kubernetes.io/*, selectors match; overrides; registry, digest, pull secrets', () => {
  const m = mustRender([MINIMAL]);
  const dep = one(m, 'Deployment');
  assert.strictEqual(dep.metadata.name, 'aurora-server');
  assert.strictEqual(dep.spec.template.metadata.labels.app, 'aurora-server');
  assert.strictEqual(dep.spec.template.metadata.labels['app.kubernetes.io/component'], 'server');
  for (const o of objs(m)) assert.strictEqual(o.metadata.labels.app, 'aurora-server', o.kind);
  const appVersion = readYaml(path.join(CHART, 'Chart.yaml'))[0].appVersion;
  assert.strictEqual(container(m).image, `aurora-server:${appVersion}`);
  const f2 = mustRender([FULL]);
  const fd = one(f2, 'Deployment');
  assert.strictEqual(fd.metadata.name, 'aurora-api-prod');
  assert.strictEqual(fd.metadata.labels.tier, 'api');
  assert.strictEqual(fd.metadata.annotations['example.com/owner'], 'platform-team');
  assert.strictEqual(fd.spec.template.metadata.labels['network-policy'], 'aurora-api');
  for (const o of objs(f2)) assert.strictEqual(o.metadata.labels.team, 'platform', `${o.kind} commonLabels`);
  assert.strictEqual(container(f2).image, 'registry.example.com/platform/aurora-server@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef');
  assert.strictEqual(container(f2).imagePullPolicy, 'Always');
  assert.deepStrictEqual(fd.spec.template.spec.imagePullSecrets, [{ name: 'regcred' }]);
  const full = readYaml(FULL)[0];
  const spec = fd.spec.template.spec;
  assert.deepStrictEqual(spec.nodeSelector, full.nodeSelector);
  assert.deepStrictEqual(spec.tolerations, full.tolerations);
  assert.deepStrictEqual(spec.affinity, full.affinity);
  assert.deepStrictEqual(spec.topologySpreadConstraints, full.topologySpreadConstraints);
  assert.strictEqual(spec.priorityClassName, 'aurora-critical');
  assert.strictEqual(spec.terminationGracePeriodSeconds, 60);
  assert.deepStrictEqual(spec.containers[0].resources, full.resources);
  assert.deepStrictEqual(envMap(spec.containers[0]).NODE_NAME.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
  assert.deepStrictEqual(one(f2, 'ServiceAccount').metadata.annotations, { 'example.com/owner': 'platform' });
  assert.strictEqual(one(mustRender([MINIMAL], { name: 'prod' }), 'Deployment').metadata.name, 'prod-aurora-server');
});

test('NOTES.txt: store, secrets backend, pod and readiness checks, bootstrap, the API host and the /internal/forward/ warning', () => {
  const m = mustRender([MINIMAL]);
  assert.match(m.notes, /State store: SQLite on the data volume \(one replica\)\./);
  assert.match(m.notes, /Secrets backend: local\./);
  assert.ok(m.notes.includes('kubectl get pods -n aurora -l app=aurora-server'));
  assert.ok(m.notes.includes('curl -sk https://127.0.0.1:5080/ready'));
  assert.ok(m.notes.includes('aurora-server admin bootstrap'));
  const f2 = mustRender([FULL]);
  assert.match(f2.notes, /State store: PostgreSQL/);
  assert.match(f2.notes, /Redis/);
  assert.ok(f2.notes.includes('curl -s http://127.0.0.1:9090/ready'));
  assert.ok(f2.notes.includes('https://api.aurora.example.com/github/webhook'));
  assert.ok(f2.notes.includes('wss://api.aurora.example.com/kubectl-agent'));
  assert.match(f2.notes, /Block \/internal\/forward\/ at the ingress/);
  assert.ok(!m.text.includes('kubectl get pods'));
});

// ---------------------------------------------------------------- Dockerfile.server

function dockerfile() {
  const text = fs.readFileSync(path.join(ROOT, 'Dockerfile.server'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const args = {};
  for (const l of lines) {
    const m = l.match(/^ARG (\w+)=(\S+)/);
    if (m) args[m[1]] = m[2];
  }
  const stages = [];
  for (const l of lines) {
    const from = l.match(/^FROM (\S+)(?: AS (\S+))?/);
    if (from) stages.push({ image: from[1].replace(/\$\{(\w+)\}/, (_, a) => args[a] || ''), name: from[2], lines: [] });
    else if (stages.length) stages[stages.length - 1].lines.push(l);
  }
  const installs = (st) => st.lines.join(' ').split('apt-get install')[1].split('&&')[0].trim().split(/\s+/).filter((w) => !w.startsWith('-'));
  return { stages, installs };
}

test('Dockerfile.server: every base image pinned by digest; runtime: non-root uid, EXPOSE 5080, HEALTHCHECK with curl, which is installed', () => {
  const { stages, installs } = dockerfile();
  assert.deepStrictEqual(stages.map((s) => s.name), ['build', 'runtime']);
  for (const s of stages) assert.match(s.image, /^debian:bookworm-slim@sha256:[0-9a-f]{64}$/, s.name);
  const rt = stages[1];
  const user = rt.lines.find((l) => l.startsWith('USER ')).split(' ')[1];
  assert.match(user, /^[1-9][0-9]*:[1-9][0-9]*$/);
  assert.strictEqual(user, `${readYaml(path.join(CHART, 'values.yaml'))[0].securityContext.runAsUser}:${readYaml(path.join(CHART, 'values.yaml'))[0].securityContext.runAsGroup}`, 'the chart runs the image\'s uid');
  assert.ok(rt.lines.includes('EXPOSE 5080'));
  const hc = rt.lines.find((l) => l.startsWith('HEALTHCHECK '));
  assert.match(hc, /CMD .*curl -fsSk -o \/dev\/null "https:\/\/127\.0\.0\.1:\$\{AURORA_PORT:-5080\}\/health"/);
  assert.ok(installs(rt).includes('curl') && installs(rt).includes('ca-certificates'));
  assert.ok(rt.lines.some((l) => /^ENTRYPOINT \["\/usr\/local\/bin\/aurora-server"\]/.test(l)));
  assert.ok(rt.lines.some((l) => l === 'CMD ["serve"]'));
});

test('Dockerfile.server: the build stage has the -dev package of every pkg-config module the Makefile asks for; the runtime stage exactly the libraries the binary needs (dpkg)', () => {
  const { stages, installs } = dockerfile();
  const make = fs.readFileSync(path.join(ROOT, 'Makefile'), 'utf8');
  const mods = make.match(/^SERVER_PKGS\s*:=\s*(.*)$/m)[1].trim().split(/\s+/).concat(['libcares']);
  const cp = require('child_process');
  const dpkgS = (p) => {
    const r = cp.spawnSync('dpkg', ['-S', p], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.split(':')[0].trim() : null;
  };
  const pcDir = cp.spawnSync('pkg-config', ['--variable', 'pc_path', 'pkg-config'], { encoding: 'utf8' }).stdout.trim().split(':');
  const build = installs(stages[0]);
  for (const m of mods) {
    const pc = pcDir.map((d) => path.join(d, `${m}.pc`)).find((x) => fs.existsSync(x));
    if (!pc) { console.log(`#   (${m}.pc not installed here: not checked)`); continue; }
    const pkg = dpkgS(pc) || dpkgS(fs.realpathSync(pc));
    assert.ok(pkg && build.includes(pkg), `pkg-config ${m}: ${pkg} missing from the build stage`);
  }
  const bin = path.join(ROOT, 'build', 'rel', 'aurora-server');
  if (!fs.existsSync(bin)) { console.log('#   (build/rel/aurora-server not built: runtime libraries not checked)'); return; }
  const needed = [...cp.spawnSync('readelf', ['-d', bin], { encoding: 'utf8' }).stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const ldd = cp.spawnSync('ldd', [bin], { encoding: 'utf8' }).stdout;
  const want = new Set();
  for (const lib of needed) {
    const where = (ldd.match(new RegExp(`${lib.replace(/\./g, '\\.')} => (\\S+)`)) || [])[1];
    // dpkg knows a file under the path its package ships it at (/lib or /usr/lib: usrmerge)
    const pkg = where && (dpkgS(where) || dpkgS(fs.realpathSync(where)) || dpkgS(fs.realpathSync(where).replace(/^\/usr\/lib\//, '/lib/')));
    assert.ok(pkg, `${lib}: no Debian package`);
    if (pkg !== 'libc6') want.add(pkg.replace(/:.*/, ''));
  }
  const runtime = installs(stages[1]).filter((p) => p !== 'ca-certificates' && p !== 'curl');
  assert.deepStrictEqual(runtime.slice().sort(), [...want].sort());
});

if (require.main === module) summary();
