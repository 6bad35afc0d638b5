'use strict';
// Tests of the server's Helm chart in chart/server/ (required by chart_test.js, run by
// tests/chart/run.sh; helpers, the `helm template` stand-in and the strict Kubernetes
// validation are in lib.js). Values files: tests/chart/server/values-*.yaml.
//
// Besides rendering and strict validation of every object (the ServiceMonitor against
// tests/chart/schemas/servicemonitor-v1.json, the part of the Prometheus Operator CRD the
// chart uses), the chart is checked against its sources of truth: the settings the
// connector guide lists (/work/shared/seed/connectors.md when present, else the names
// recorded in this file) must be in config:, and every setting the server declares secret
// in its settings tables (server/*.c, server/connectors/*.c) must be refused as a literal.

const {
  fs, path, assert, Ajv, ROOT, HERE, NS, test, readYaml, writeValues,
  objs, one, container, envMap, envValue, validateK8s, apiServerChecks, mergeInto, leaves, at,
} = require('./lib');
const lib = require('./lib');

const CHART = path.join(ROOT, 'chart', 'server');
const VALUES = path.join(HERE, 'server');
const RELEASE = 'aurora-server';

const withDefaults = (opts = {}) => Object.assign({ chart: CHART, name: RELEASE, valuesDir: VALUES }, opts);
const mustRender = (files, opts) => lib.mustRender(files, withDefaults(opts));
const mustFail = (files, re, opts) => lib.mustFail(files, re, withDefaults(opts));
const w = (name, obj) => writeValues('srv-' + name, obj);
const valuesFile = (f) => readYaml(path.join(VALUES, f))[0];
const defaults = () => readYaml(path.join(CHART, 'values.yaml'))[0];

console.log('# chart/server/: rendered with the same stand-in; ServiceMonitor checked against tests/chart/schemas/servicemonitor-v1.json');

// ------------------------------------------------------------------ the server's settings

// Settings tables of the server: { "NAME", yaml|NULL, CFG_TYPE, default, "help" "...", secret
// (plus OVH's per-region macro, expanded here).
function serverSettings() {
  const files = [];
  for (const dir of ['server', path.join('server', 'connectors')]) {
    for (const f of fs.readdirSync(path.join(ROOT, dir))) if (/\.[ch]$/.test(f)) files.push(path.join(ROOT, dir, f));
  }
  const STR = '"(?:[^"\\\\]|\\\\.)*"';
  const re = new RegExp(`\\{\\s*"([A-Z][A-Z0-9_]*)",\\s*(?:NULL|${STR}),\\s*CFG_[A-Z]+,\\s*(?:NULL|[A-Za-z_]+|(?:${STR}\\s*)+),\\s*(?:${STR}\\s*)+,\\s*([01])`, 'g');
  const out = new Map();
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    let m;
    while ((m = re.exec(text))) out.set(m[1], { secret: m[2] === '1', file: path.relative(ROOT, f) });
    const flat = text.replace(/\\\n/g, ' ');
    const macro = /\{ "OVH_" UP "_([A-Z_]+)",[^}]*?,\s*([01]) \}/g;
    while ((m = macro.exec(flat))) {
      for (const r of ['EU', 'CA', 'US']) out.set(`OVH_${r}_${m[1]}`, { secret: m[2] === '1', file: path.relative(ROOT, f) });
    }
  }
  return out;
}

// The settings the connector guide lists (NAME=... lines and names in its prose).
const GUIDE = '/work/shared/seed/connectors.md';
const GUIDE_SETTINGS_RECORDED = ['ATLASSIAN_CLIENT_ID', 'ATLASSIAN_CLIENT_SECRET', 'AURORA_ENV', 'AWS_ACCESS_KEY_ID',
  'AWS_DEFAULT_REGION', 'AWS_SECRET_ACCESS_KEY', 'AWS_SM_REGION', 'BB_OAUTH_CLIENT_ID', 'BB_OAUTH_CLIENT_SECRET', 'CLIENT_ID',
  'CLIENT_SECRET', 'FRONTEND_URL', 'GH_API_BASE_URL', 'GH_BASE_URL', 'GH_OAUTH_CLIENT_ID', 'GH_OAUTH_CLIENT_SECRET',
  'GITHUB_APP_CLIENT_ID', 'GITHUB_APP_ID', 'GITHUB_APP_SETUP_URL', 'GITHUB_APP_WEBHOOK_SECRET', 'GITHUB_APP_WEBHOOK_URL',
  'GITHUB_AUTH_MODE', 'GOOGLE_CHAT_CLIENT_ID', 'GOOGLE_CHAT_CLIENT_SECRET', 'GOOGLE_CHAT_SERVICE_ACCOUNT_KEY',
  'INTERNAL_API_SECRET', 'NEXT_PUBLIC_BACKEND_URL', 'NEXT_PUBLIC_ENABLE_CONFLUENCE', 'NEXT_PUBLIC_ENABLE_JIRA',
  'NEXT_PUBLIC_ENABLE_OVH', 'NEXT_PUBLIC_ENABLE_PAGERDUTY_OAUTH', 'NEXT_PUBLIC_GITHUB_APP_SLUG', 'OVH_CA_CLIENT_ID',
  'OVH_CA_CLIENT_SECRET', 'OVH_CA_REDIRECT_URI', 'OVH_EU_CLIENT_ID', 'OVH_EU_CLIENT_SECRET', 'OVH_EU_REDIRECT_URI',
  'OVH_US_CLIENT_ID', 'OVH_US_CLIENT_SECRET', 'OVH_US_REDIRECT_URI', 'PAGERDUTY_CLIENT_ID', 'PAGERDUTY_CLIENT_SECRET',
  'SECRETS_BACKEND', 'SLACK_CLIENT_ID', 'SLACK_CLIENT_SECRET', 'SLACK_SIGNING_SECRET'];
function guideSettings(settings) {
  if (!fs.existsSync(GUIDE)) return GUIDE_SETTINGS_RECORDED;
  const names = new Set(fs.readFileSync(GUIDE, 'utf8').match(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g));
  // only what the server reads (the guide also names placeholders: YOUR_ORG_ID, API_URL, ...)
  return [...names].filter((n) => settings.has(n)).sort();
}

// Set by the chart from structured values, refused in config (chart/server/templates/_helpers.tpl).
const MANAGED = {
  AURORA_PORT: 'port', AURORA_OPS_PORT: 'opsPort', AURORA_BIND: 'the chart', AURORA_OPS_BIND: 'the chart',
  AURORA_DATA_DIR: 'the chart', AURORA_TLS_CERT: 'tls.existingSecret', AURORA_TLS_KEY: 'tls.existingSecret',
  AURORA_TLS_TICKET_KEY_FILE: 'tls.ticketKeySecret', AURORA_PLAIN_HTTP: 'tls.enabled', AURORA_TLS_TERMINATED_BY_PROXY: 'tls.enabled', SECRETS_BACKEND: 'secretsBackend.type',
  AURORA_MASTER_KEY: 'secretsBackend.local.masterKey', AURORA_MASTER_KEY_FILE: 'the chart', VAULT_ADDR: 'secretsBackend.vault.addr',
  VAULT_TOKEN: 'secretsBackend.vault.token', VAULT_AUTH_METHOD: 'secretsBackend.vault.authMethod',
  VAULT_K8S_ROLE: 'secretsBackend.vault.role', VAULT_K8S_JWT_PATH: 'secretsBackend.vault.serviceAccountToken',
  VAULT_KV_MOUNT: 'secretsBackend.vault.kvMount', VAULT_PREFIX: 'secretsBackend.vault.prefix',
  VAULT_CACERT: 'secretsBackend.vault.caBundle', AWS_SM_REGION: 'secretsBackend.aws.region', AWS_SM_ENDPOINT: 'secretsBackend.aws.endpoint',
  AWS_SM_STS_ENDPOINT: 'secretsBackend.aws.stsEndpoint', AWS_ROLE_ARN: 'secretsBackend.aws.roleArn',
  AWS_WEB_IDENTITY_TOKEN_FILE: 'the chart',
  AURORA_INTERNAL_ADDR: 'the chart', AURORA_INTERNAL_PORT: 'internalPort', POD_IP: 'the chart',
  AURORA_SHUTDOWN_DRAIN_S: 'lifecycle.shutdownDrainSeconds', AURORA_TRUSTED_PROXIES: 'trustedProxies',
};

// ------------------------------------------------------------------ validation

const schema = JSON.parse(fs.readFileSync(path.join(CHART, 'values.schema.json'), 'utf8'));
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
let validateValues = () => true;
function valuesErrors(v) {
  if (validateValues(v)) return [];
  return validateValues.errors.map((e) => `${e.instancePath || '/'} ${e.message}`);
}
let validateServiceMonitor = () => true;

// Strict validation of one object: kubernetes-models, or our CRD subset for ServiceMonitor.
function validateObject(o) {
  if (o && o.apiVersion === 'monitoring.coreos.com/v1') {
    if (o.kind !== 'ServiceMonitor') return [`no schema for ${o.apiVersion} ${o.kind}`];
    if (validateServiceMonitor(o)) return [];
    return validateServiceMonitor.errors.map((e) => `schema: ${e.instancePath || '/'} ${e.message}${e.params && e.params.additionalProperty ? ' ' + e.params.additionalProperty : ''}`);
  }
  return validateK8s(o);
}

// Cross-object checks of the server chart beyond lib's apiServerChecks.
function serverChecks(all) {
  const errors = apiServerChecks(all);
  const dep = all.find((o) => o.kind === 'Deployment');
  const svc = all.find((o) => o.kind === 'Service');
  const podLabels = dep.spec.template.metadata.labels;
  const matches = (sel) => Object.entries(sel || {}).every(([k, v]) => podLabels[k] === v);
  for (const o of all) {
    const what = `${o.kind}/${o.metadata.name}`;
    if (o.kind === 'Ingress') {
      for (const r of o.spec.rules) {
        for (const p of r.http.paths) {
          const b = p.backend.service;
          if (b.name !== svc.metadata.name) errors.push(`${what}: backend ${b.name} is not the Service`);
          if (!svc.spec.ports.some((sp) => sp.name === b.port.name)) errors.push(`${what}: backend port ${b.port.name} is not a Service port`);
        }
      }
    }
    if (o.kind === 'HorizontalPodAutoscaler') {
      const t = o.spec.scaleTargetRef;
      if (t.kind !== 'Deployment' || t.name !== dep.metadata.name || t.apiVersion !== 'apps/v1') errors.push(`${what}: scales ${t.kind}/${t.name}`);
      if (o.spec.minReplicas > o.spec.maxReplicas) errors.push(`${what}: minReplicas > maxReplicas`);
      if ('replicas' in dep.spec) errors.push(`${what}: the Deployment also sets replicas (the autoscaler's count would be reset on upgrade)`);
    }
    if (o.kind === 'NetworkPolicy' && !matches(o.spec.podSelector.matchLabels)) errors.push(`${what}: podSelector matches no server pod`);
    if (o.kind === 'ServiceMonitor') {
      if (!Object.entries(o.spec.selector.matchLabels).every(([k, v]) => svc.metadata.labels[k] === v)) errors.push(`${what}: selects no Service`);
      for (const e of o.spec.endpoints) if (!svc.spec.ports.some((p) => p.name === e.port)) errors.push(`${what}: port ${e.port} is not a Service port`);
    }
    if (o.kind === 'Deployment') {
      const spec = o.spec.template.spec;
      const c = spec.containers[0];
      for (const e of c.env || []) {
        const ref = e.valueFrom && e.valueFrom.secretKeyRef;
        if (ref && (!ref.name || !ref.key)) errors.push(`${what}: env ${e.name}: secretKeyRef without name or key`);
      }
      for (const f of c.envFrom || []) {
        const cm = f.configMapRef && all.find((x) => x.kind === 'ConfigMap' && x.metadata.name === f.configMapRef.name);
        if (!cm) errors.push(`${what}: envFrom names no ConfigMap of the chart`);
      }
      for (const v of spec.volumes || []) {
        if (v.persistentVolumeClaim && !all.some((x) => x.kind === 'PersistentVolumeClaim' && x.metadata.name === v.persistentVolumeClaim.claimName) &&
          v.persistentVolumeClaim.claimName !== 'preexisting-claim') errors.push(`${what}: volume ${v.name} names a claim the chart does not create`);
      }
      if (o.spec.strategy && o.spec.strategy.type === 'Recreate' && o.spec.strategy.rollingUpdate) errors.push(`${what}: Recreate with rollingUpdate`);
    }
  }
  return errors;
}

// ================================================================== tests

const chartYamlFiles = ['Chart.yaml', 'values.yaml'].map((f) => path.join(CHART, f))
  .concat(fs.readdirSync(VALUES).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(VALUES, f)));

test('server chart YAML files parse (YAML 1.1, no duplicate keys): ' + chartYamlFiles.map((f) => path.relative(ROOT, f)).join(', '), () => {
  for (const f of chartYamlFiles) {
    const docs = readYaml(f);
    assert.strictEqual(docs.length, 1, `${f}: ${docs.length} documents`);
    assert.ok(docs[0] && typeof docs[0] === 'object' && !Array.isArray(docs[0]), `${f}: not a map`);
  }
});

test('server templates/ holds only .yaml manifests, _helpers.tpl and NOTES.txt; .helmignore parses', () => {
  for (const f of fs.readdirSync(path.join(CHART, 'templates'))) {
    assert.ok(/\.yaml$/.test(f) || f === '_helpers.tpl' || f === 'NOTES.txt', `unexpected file templates/${f}`);
  }
  for (const l of fs.readFileSync(path.join(CHART, '.helmignore'), 'utf8').split('\n')) assert.ok(!/^\s+\S/.test(l), l);
});

test('server Chart.yaml: apiVersion v2, name aurora-server, SemVer version, appVersion, kubeVersion >= 1.23 (autoscaling/v2)', () => {
  const c = readYaml(path.join(CHART, 'Chart.yaml'))[0];
  assert.strictEqual(c.apiVersion, 'v2');
  assert.strictEqual(c.name, 'aurora-server');
  assert.strictEqual(c.type, 'application');
  assert.match(c.version, /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/);
  assert.strictEqual(typeof c.appVersion, 'string');
  assert.strictEqual(c.kubeVersion, '>=1.23.0-0');
  mustFail(['values-minimal.yaml'], /chart requires kubeVersion: >=1\.23\.0-0 which is incompatible with Kubernetes v1\.22\.0/, { kubeVersion: '1.22.0' });
});

test('server values.schema.json compiles (ajv draft-07, strict); the ServiceMonitor schema compiles', () => {
  assert.strictEqual(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  validateValues = ajv.compile(schema);
  validateServiceMonitor = new Ajv({ allErrors: true, strict: true }).compile(JSON.parse(fs.readFileSync(path.join(HERE, 'schemas', 'servicemonitor-v1.json'), 'utf8')));
});

test('server chart defaults (values.yaml) validate against values.schema.json (ajv)', () => {
  assert.deepStrictEqual(valuesErrors(defaults()), []);
});

const SCENARIOS = {
  minimal: ['values-minimal.yaml'],
  full: ['values-full.yaml'],
  sqlite: ['values-sqlite.yaml'],
  aws: ['values-aws.yaml'],
  'aws-irsa': ['values-aws-irsa.yaml'],
  'vault-token': ['values-vault-token.yaml'],
};
for (const files of Object.values(SCENARIOS)) {
  test(`server values ${files.join(' ')} render, and the coalesced values validate against values.schema.json (ajv)`, () => {
    const r = mustRender(files);
    assert.deepStrictEqual(valuesErrors(r.values), []);
  });
}

test('server values-full.yaml (with the alternatives in the other values files) sets every value of values.yaml', () => {
  const d = defaults();
  const full = valuesFile('values-full.yaml');
  const alternates = ['values-sqlite.yaml', 'values-aws.yaml', 'values-aws-irsa.yaml', 'values-vault-token.yaml', 'values-minimal.yaml'].map(valuesFile);
  const sameAsDefaultOk = new Set(['podSecurityContext.runAsNonRoot', 'podSecurityContext.seccompProfile.type',
    'securityContext.allowPrivilegeEscalation', 'securityContext.privileged', 'securityContext.readOnlyRootFilesystem',
    'securityContext.runAsNonRoot', 'securityContext.capabilities.drop', 'securityContext.seccompProfile.type',
    'livenessProbe.enabled', 'readinessProbe.enabled', 'serviceAccount.create', 'tls.enabled', 'config.AURORA_ENV',
    'persistence.enabled', 'secretsBackend.vault.authMethod']);
  // persistence.existingClaim is set by the SQLite test's own values; annotation names hold
  // dots, so ingress.annotations is compared as a whole below.
  const elsewhere = new Set(['persistence.existingClaim']);
  const leafList = leaves(d).filter((l) => !l.startsWith('ingress.annotations.') && !elsewhere.has(l));
  assert.notDeepStrictEqual(full.ingress.annotations, d.ingress.annotations);
  const missing = [];
  const unchanged = [];
  for (const leaf of leafList) {
    const def = at(d, leaf).value;
    const sets = [full, ...alternates].map((f) => at(f, leaf)).filter((x) => x.present);
    if (!sets.length) missing.push(leaf);
    else if (!sameAsDefaultOk.has(leaf) && sets.every((s) => JSON.stringify(s.value) === JSON.stringify(def))) unchanged.push(leaf);
  }
  assert.deepStrictEqual(missing, [], 'values not set by any test values file');
  assert.deepStrictEqual(unchanged, [], 'values only ever set to their default');
  const fullOnly = leafList.filter((l) => !at(full, l).present).sort();
  const exclusive = ['persistence.accessModes', 'persistence.enabled', 'persistence.size',
    'persistence.storageClass', 'secretsBackend.aws.endpoint', 'secretsBackend.aws.region', 'secretsBackend.aws.roleArn',
    'secretsBackend.aws.stsEndpoint', 'secretsBackend.aws.tokenExpirationSeconds',
    'secretsBackend.local.masterKey', 'secretsBackend.vault.caBundle.secret', 'secretsBackend.vault.token'].sort();
  assert.deepStrictEqual(fullOnly, exclusive, 'values-full.yaml leaves out more than the exclusive alternatives');
});

// ---------------------------------------------------------------- settings: guide and server

test('config: lists every setting of the connector guide (those SECRETS_BACKEND/AWS_SM_REGION the chart sets come from secretsBackend)', () => {
  const settings = serverSettings();
  const cfg = defaults().config;
  const guide = guideSettings(settings);
  assert.ok(guide.length >= 40, `only ${guide.length} guide settings found`);
  const missing = guide.filter((n) => !(n in cfg) && !(n in MANAGED));
  assert.deepStrictEqual(missing, []);
  for (const n of ['GITHUB_APP_ID', 'GITHUB_APP_CLIENT_ID', 'GITHUB_APP_WEBHOOK_URL', 'GITHUB_APP_SETUP_URL', 'GITHUB_APP_WEBHOOK_SECRET',
    'NEXT_PUBLIC_GITHUB_APP_SLUG', 'FRONTEND_URL', 'NEXT_PUBLIC_BACKEND_URL', 'SLACK_CLIENT_ID', 'SLACK_SIGNING_SECRET']) assert.ok(n in cfg, n);
  // every key of config is a setting the server reads
  const unknown = Object.keys(cfg).filter((n) => !settings.has(n));
  assert.deepStrictEqual(unknown, [], 'config lists settings the server does not declare');
});

test('every setting the server declares secret is secretKeyRef-only in the schema (or set by the chart from a Secret)', () => {
  const settings = serverSettings();
  const secrets = [...settings].filter(([, s]) => s.secret).map(([n]) => n);
  for (const n of ['DATABASE_URL', 'INTERNAL_API_SECRET', 'SLACK_SIGNING_SECRET', 'GITHUB_APP_WEBHOOK_SECRET', 'OVH_EU_CLIENT_SECRET', 'VAULT_TOKEN']) {
    assert.ok(secrets.includes(n), `the settings parser missed the secret ${n}`);
  }
  const props = schema.properties.config.properties;
  const wrong = [];
  for (const n of secrets) {
    const p = props[n];
    const ok = p && (p.$ref === '#/definitions/secretRef' || (n in MANAGED && p.not));
    if (!ok) wrong.push(n);
    // and ajv refuses the literal
    const v = mergeInto(defaults(), { config: { [n]: 'literal-secret-value' } });
    if (!valuesErrors(v).length) wrong.push(`${n} (ajv accepted a literal)`);
  }
  assert.deepStrictEqual(wrong, []);
  assert.strictEqual(props.AURORA_REDIS_URL.$ref, '#/definitions/secretRef', 'AURORA_REDIS_URL carries a password');
  assert.ok(secrets.includes('AURORA_REDIS_URL') && secrets.includes('AURORA_INTERNAL_FORWARD_SECRET'));
});

// ---------------------------------------------------------------- schema and render refusals

const SCHEMA_REJECTS = [
  ['an unknown top-level key (typo replicas)', { replicas: 3 }, /replicas/],
  ['a literal INTERNAL_API_SECRET', { config: { INTERNAL_API_SECRET: 'x'.repeat(40) } }, /config\.INTERNAL_API_SECRET/],
  ['a literal DATABASE_URL', { config: { DATABASE_URL: 'postgres://u:p@db/aurora' } }, /config\.DATABASE_URL/],
  ['a literal AURORA_REDIS_URL', { config: { AURORA_REDIS_URL: 'redis://:p@redis:6379/0' } }, /config\.AURORA_REDIS_URL/],
  ['a literal GITHUB_APP_WEBHOOK_SECRET', { config: { GITHUB_APP_WEBHOOK_SECRET: 'abc' } }, /config\.GITHUB_APP_WEBHOOK_SECRET/],
  ['a literal GITHUB_APP_CLIENT_SECRET', { config: { GITHUB_APP_CLIENT_SECRET: 'abc' } }, /config\.GITHUB_APP_CLIENT_SECRET/],
  ['a secretKeyRef without key', { config: { SLACK_SIGNING_SECRET: { secretKeyRef: { name: 'slack' } } } }, /config\.SLACK_SIGNING_SECRET/],
  ['a secretKeyRef with a bad Secret name', { config: { SLACK_SIGNING_SECRET: { secretKeyRef: { name: 'Slack_Secret', key: 'k' } } } }, /config\.SLACK_SIGNING_SECRET/],
  ['AURORA_PORT in config (set from port)', { config: { AURORA_PORT: 8080 } }, /config\.AURORA_PORT/],
  ['SECRETS_BACKEND in config (set from secretsBackend.type)', { config: { SECRETS_BACKEND: 'vault' } }, /config\.SECRETS_BACKEND/],
  ['a lower-case config name', { config: { frontend_url: 'https://a' } }, /config/],
  ['a config value that is a list', { config: { FRONTEND_URL: ['https://a'] } }, /config\.FRONTEND_URL/],
  ['AURORA_ENV staging', { config: { AURORA_ENV: 'staging' } }, /config\.AURORA_ENV/],
  ['secretsBackend.type hashicorp', { secretsBackend: { type: 'hashicorp' } }, /secretsBackend\.type/],
  ['a Vault address with credentials', { secretsBackend: { vault: { addr: 'https://u:p@vault:8200' } } }, /secretsBackend\.vault\.addr/],
  ['vault authMethod approle', { secretsBackend: { vault: { authMethod: 'approle' } } }, /secretsBackend\.vault\.authMethod/],
  ['a Vault token lifetime under 10 minutes', { secretsBackend: { vault: { serviceAccountToken: { expirationSeconds: 60 } } } }, /expirationSeconds/],
  ['an AWS region that is not one', { secretsBackend: { aws: { region: 'Europe' } } }, /secretsBackend\.aws\.region/],
  ['a roleArn that is not an IAM role', { secretsBackend: { aws: { roleArn: 'aurora-server' } } }, /secretsBackend\.aws\.roleArn/],
  ['a negative replicaCount', { replicaCount: -1 }, /replicaCount/],
  ['a numeric image tag', { image: { tag: 1.1 } }, /image\.tag/],
  ['an image digest that is not sha256', { image: { digest: 'latest' } }, /image\.digest/],
  ['port 0', { port: 0 }, /port/],
  ['opsPort 70000', { opsPort: 70000 }, /opsPort/],
  ['ingress.hosts.api with a scheme', { ingress: { hosts: { api: 'https://api.example.com' } } }, /ingress\.hosts\.api/],
  ['an unknown ingress host key (the guide names only api)', { ingress: { hosts: { web: 'aurora.example.com' } } }, /web/],
  ['service.type ExternalName', { service: { type: 'ExternalName' } }, /service\.type/],
  ['PDB minAvailable "half"', { podDisruptionBudget: { minAvailable: 'half' } }, /minAvailable/],
  ['HPA CPU target 0', { autoscaling: { targetCPUUtilizationPercentage: 0 } }, /targetCPUUtilizationPercentage/],
  ['ServiceMonitor interval "soon"', { serviceMonitor: { interval: 'soon' } }, /serviceMonitor\.interval/],
  ['persistence.size "lots"', { persistence: { size: 'lots' } }, /persistence\.size/],
  ['tmpVolume.sizeLimit "64MB" (not a quantity)', { tmpVolume: { sizeLimit: '64MB' } }, /tmpVolume\.sizeLimit/],
  ['tmpVolume.sizeLimit 64 (a number: bytes or Mi?)', { tmpVolume: { sizeLimit: 64 } }, /tmpVolume\.sizeLimit/],
  ['tmpVolume.medium HugePages', { tmpVolume: { medium: 'HugePages' } }, /tmpVolume\.medium/],
  ['an unknown tmpVolume key', { tmpVolume: { size: '1Gi' } }, /size/],
  ['readinessProbe.periodSeconds 0', { readinessProbe: { periodSeconds: 0 } }, /readinessProbe\.periodSeconds/],
  ['trustedProxies as one string (a list of entries)', { trustedProxies: '10.0.0.0/8,127.0.0.1' }, /trustedProxies/],
  ['a trustedProxies entry that is a name', { trustedProxies: ['ingress-nginx.ingress'] }, /trustedProxies/],
  ['a trustedProxies IPv4 prefix of 33', { trustedProxies: ['10.0.0.0/33'] }, /trustedProxies/],
  ['a trustedProxies IPv6 prefix of 129', { trustedProxies: ['fd00::/129'] }, /trustedProxies/],
  ['a trustedProxies entry with two addresses', { trustedProxies: ['10.0.0.1,10.0.0.2'] }, /trustedProxies/],
  // what the server refuses at start (a crash loop), not a schema that lets it through
  ['a trustedProxies entry with a port', { trustedProxies: ['10.0.0.1:8080'] }, /trustedProxies/],
  ['a trustedProxies IPv6 entry with a port', { trustedProxies: ['[fd00::1]:8080'] }, /trustedProxies/],
  ['a trustedProxies IPv6 entry of nine groups', { trustedProxies: ['1:2:3:4:5:6:7:8:9'] }, /trustedProxies/],
  ['a trustedProxies IPv6 entry with a zone', { trustedProxies: ['fe80::1%eth0'] }, /trustedProxies/],
  ['AURORA_TRUSTED_PROXIES in config (set from trustedProxies)', { config: { AURORA_TRUSTED_PROXIES: '10.0.0.0/8' } }, /config\.AURORA_TRUSTED_PROXIES/],
];
for (const [what, override, re] of SCHEMA_REJECTS) {
  test(`server values schema rejects ${what} (ajv and the renderer)`, () => {
    const r = mustFail(['values-minimal.yaml', w('reject-' + what.replace(/\W+/g, '-'), override)], /values don't meet the specifications of the schema/);
    assert.match(r.stderr, re);
    const merged = [valuesFile('values-minimal.yaml'), override].reduce(mergeInto, defaults());
    assert.ok(valuesErrors(merged).length > 0, 'ajv accepted it');
  });
}

test('the server chart defaults alone fail: INTERNAL_API_SECRET is required in production (clear message)', () => {
  mustFail([], /Error: execution error at \(aurora-server\/templates\/deployment\.yaml:\d+:\d+\): config\.INTERNAL_API_SECRET is required with AURORA_ENV production: \{secretKeyRef/);
});

const PG = { secretKeyRef: { name: 'db', key: 'url' } };
const REDIS = { secretKeyRef: { name: 'redis', key: 'url' } };
const RENDER_REJECTS = [
  ['2 replicas on SQLite (single process)', ['values-sqlite.yaml'], { replicaCount: 2 }, /2 replicas need PostgreSQL: set config\.DATABASE_URL .*SQLite is a single process/],
  ['an autoscaler on SQLite', ['values-sqlite.yaml'], { autoscaling: { enabled: true } }, /6 replicas need PostgreSQL/],
  ['2 replicas without Redis', ['values-minimal.yaml'], { replicaCount: 2 }, /2 replicas need Redis: set config\.AURORA_REDIS_URL/],
  ['Redis without the forward secret', ['values-aws.yaml'], { config: { AURORA_INTERNAL_FORWARD_SECRET: null } }, /config\.AURORA_INTERNAL_FORWARD_SECRET is required with config\.AURORA_REDIS_URL/],
  ['Redis on SQLite', ['values-sqlite.yaml'], { config: { AURORA_REDIS_URL: REDIS } }, /config\.AURORA_REDIS_URL joins replicas that share PostgreSQL/],
  ['replicas with per-pod self-signed certificates and no CA to verify each other', ['values-aws.yaml'], { config: { AURORA_INTERNAL_CA_FILE: null } }, /replicas with TLS in the pod need tls\.existingSecret .*impostor/],
  ['the local backend on PostgreSQL without a master key', ['values-minimal.yaml'], { secretsBackend: { local: { masterKey: null } } }, /secretsBackend\.local\.masterKey is required/],
  ['the local backend on SQLite without persistence or master key', ['values-sqlite.yaml'], { persistence: { enabled: false } }, /secretsBackend\.local\.masterKey is required/],
  ['the local backend on PostgreSQL without persistence (its store would be an emptyDir)', ['values-minimal.yaml'], { persistence: { enabled: false } }, /secretsBackend\.type local keeps the stored connector credentials in the pod's data volume .*for 1 replica\(s\) without persistence use secretsBackend\.type vault or aws_secrets_manager/],
  ['the local backend shared by 2 replicas (a store in each pod)', ['values-minimal.yaml'], { replicaCount: 2, config: { AURORA_REDIS_URL: REDIS, AURORA_INTERNAL_FORWARD_SECRET: { secretKeyRef: { name: 'f', key: 'f' } } }, tls: { existingSecret: 'shared-tls' } }, /secretsBackend\.type local keeps the stored connector credentials .*for 2 replica\(s\) use secretsBackend\.type vault/],
  ['vault without addr', ['values-minimal.yaml'], { secretsBackend: { type: 'vault', vault: { role: 'r' } } }, /secretsBackend\.vault\.addr is required/],
  ['vault Kubernetes auth without role', ['values-minimal.yaml'], { secretsBackend: { type: 'vault', vault: { addr: 'https://v:8200' } } }, /secretsBackend\.vault\.role is required with authMethod kubernetes/],
  ['vault token auth without token', ['values-minimal.yaml'], { secretsBackend: { type: 'vault', vault: { addr: 'https://v:8200', authMethod: 'token' } } }, /secretsBackend\.vault\.token is required/],
  ['two Vault CA sources', ['values-vault-token.yaml'], { secretsBackend: { vault: { caBundle: { configMap: 'ca' } } } }, /set only one of secretsBackend\.vault\.caBundle/],
  ['aws without region', ['values-aws.yaml'], { secretsBackend: { aws: { region: '' } } }, /secretsBackend\.aws\.region is required/],
  ['aws with one of the two access keys', ['values-aws.yaml'], { config: { AWS_SECRET_ACCESS_KEY: null } }, /set both config\.AWS_ACCESS_KEY_ID and config\.AWS_SECRET_ACCESS_KEY .*or neither to use IRSA/],
  ['aws with neither access keys nor an IRSA role', ['values-aws.yaml'], { config: { AWS_ACCESS_KEY_ID: null, AWS_SECRET_ACCESS_KEY: null }, secretsBackend: { aws: { roleArn: '' } } }, /aws_secrets_manager needs credentials: IRSA \(secretsBackend\.aws\.roleArn, or serviceAccount\.annotations eks\.amazonaws\.com\/role-arn.*or static keys config\.AWS_ACCESS_KEY_ID and config\.AWS_SECRET_ACCESS_KEY/],
  ['AWS_ROLE_ARN in config (set from secretsBackend.aws.roleArn)', ['values-aws-irsa.yaml'], { config: { AWS_ROLE_ARN: 'arn:aws:iam::123456789012:role/x' } }, /config\.AWS_ROLE_ARN: Must not validate/],
  ['an STS endpoint that is not a URL', ['values-aws-irsa.yaml'], { secretsBackend: { aws: { stsEndpoint: 'sts.internal' } } }, /secretsBackend\.aws\.stsEndpoint/],
  ['an Ingress without ingress.hosts.api', ['values-minimal.yaml'], { ingress: { hosts: { api: '' } } }, /ingress\.hosts\.api is required with ingress\.enabled/],
  ['a PDB with minAvailable and maxUnavailable', ['values-minimal.yaml'], { podDisruptionBudget: { enabled: true, minAvailable: 1 } }, /set only one of minAvailable and maxUnavailable/],
  ['opsPort equal to port', ['values-minimal.yaml'], { opsPort: 5080 }, /opsPort must differ from port/],
  ['a grace period the preStop sleep would eat', ['values-minimal.yaml'], { terminationGracePeriodSeconds: 10 }, /terminationGracePeriodSeconds \(10\) must be at least lifecycle\.preStopSleepSeconds \(5\) \+ lifecycle\.shutdownDrainSeconds \(10\) \+ 15/],
  ['a preStop sleep longer than the grace period leaves', ['values-minimal.yaml'], { lifecycle: { preStopSleepSeconds: 20 } }, /terminationGracePeriodSeconds \(30\) must be at least lifecycle\.preStopSleepSeconds \(20\) \+ lifecycle\.shutdownDrainSeconds \(10\) \+ 15/],
  ['a command drain the grace period does not cover', ['values-minimal.yaml'], { lifecycle: { shutdownDrainSeconds: 11 } }, /terminationGracePeriodSeconds \(30\) must be at least lifecycle\.preStopSleepSeconds \(5\) \+ lifecycle\.shutdownDrainSeconds \(11\) \+ 15/],
  ['AURORA_SHUTDOWN_DRAIN_S in config (the grace period check follows lifecycle.shutdownDrainSeconds)', ['values-minimal.yaml'], { config: { AURORA_SHUTDOWN_DRAIN_S: 5 } }, /config\.AURORA_SHUTDOWN_DRAIN_S: Must not validate/],
  ['internalPort equal to port (replicas)', ['values-aws.yaml'], { internalPort: 5080 }, /internalPort must differ from port and opsPort/],
  ['AURORA_INTERNAL_PORT in config (AURORA_INTERNAL_ADDR and the NetworkPolicy follow internalPort)', ['values-aws.yaml'], { config: { AURORA_INTERNAL_PORT: 6000 } }, /config\.AURORA_INTERNAL_PORT: Must not validate/],
  ['plain HTTP in production with no ingress in front', ['values-minimal.yaml'], { tls: { enabled: false }, ingress: { enabled: false } }, /tls\.enabled false serves plain HTTP/],
  ['a secret-looking setting the chart does not list, as a literal', ['values-minimal.yaml'], { config: { NEWRELIC_API_TOKEN: 'NRAK-1' } }, /config\.NEWRELIC_API_TOKEN looks like a secret/],
  ['AURORA_MASTER_KEY through extraEnv', ['values-minimal.yaml'], { extraEnv: [{ name: 'AURORA_MASTER_KEY', value: 'k' }] }, /extraEnv AURORA_MASTER_KEY: set it under config/],
  ['POD_IP through extraEnv (the chart sets it for AURORA_INTERNAL_ADDR)', ['values-minimal.yaml'], { extraEnv: [{ name: 'POD_IP', value: '10.0.0.1' }] }, /extraEnv POD_IP/],
  ['a config setting repeated in extraEnv', ['values-minimal.yaml'], { extraEnv: [{ name: 'FRONTEND_URL', value: 'https://x' }] }, /extraEnv FRONTEND_URL/],
];
for (const [what, base, override, re] of RENDER_REJECTS) {
  test(`server render fails with a clear message: ${what}`, () => {
    mustFail([...base, w('rej-' + what.replace(/\W+/g, '-'), override)], re);
  });
}

test('more than one replica renders with PostgreSQL and Redis (replicaCount and the autoscaler)', () => {
  const ha = { config: { DATABASE_URL: PG, AURORA_REDIS_URL: REDIS, AURORA_INTERNAL_FORWARD_SECRET: { secretKeyRef: { name: 'f', key: 'f' } } },
    tls: { existingSecret: 'shared-tls' },
    // replicas cannot share the local backend's store (a file in each pod's data volume)
    secretsBackend: { type: 'vault', vault: { addr: 'https://vault:8200', role: 'aurora-server' } } };
  assert.strictEqual(one(mustRender(['values-minimal.yaml', w('ha3', { replicaCount: 3, ...ha })]), 'Deployment').spec.replicas, 3);
  assert.strictEqual(objs(mustRender(['values-minimal.yaml', w('hpa', { autoscaling: { enabled: true }, ...ha })]), 'HorizontalPodAutoscaler').length, 1);
});

// ---------------------------------------------------------------- Kubernetes validation

test('ServiceMonitor validator self-test: unknown fields, bad scheme and durations are caught', () => {
  const sm = JSON.parse(JSON.stringify(one(mustRender(['values-full.yaml']), 'ServiceMonitor')));
  assert.deepStrictEqual(validateObject(sm), []);
  const cases = [
    [(o) => { o.spec.endpoints[0].schema = 'http'; }, /schema/],
    [(o) => { o.spec.endpoints[0].scheme = 'HTTP'; }, /scheme|allowed values/],
    [(o) => { o.spec.endpoints[0].interval = '30 seconds'; }, /interval|pattern/],
    [(o) => { delete o.spec.selector; }, /selector/],
  ];
  for (const [mutate, re] of cases) {
    const bad = JSON.parse(JSON.stringify(sm));
    mutate(bad);
    assert.match(validateObject(bad).join('\n'), re);
  }
});

const K8S_SCENARIOS = Object.assign({}, SCENARIOS, {
  'minimal, TLS off behind the Ingress, ops port, egress policy': ['values-minimal.yaml', 'generated:plain'],
});
const scenarioFiles = (files) => files.map((f) => (f === 'generated:plain' ? w('plain', {
  tls: { enabled: false }, opsPort: 9102, networkPolicy: { enabled: true, egress: { enabled: true } },
  serviceMonitor: { enabled: true }, podDisruptionBudget: { enabled: true },
}) : f));
for (const [name, files] of Object.entries(K8S_SCENARIOS)) {
  test(`every rendered server object (${name}) validates strictly against its schema, plus API-server and cross-object checks`, () => {
    const r = mustRender(scenarioFiles(files));
    const errors = [];
    for (const { source, object } of r.objects) for (const e of validateObject(object)) errors.push(`${source} ${object.kind}: ${e}`);
    errors.push(...serverChecks(objs(r)));
    assert.deepStrictEqual(errors, []);
  });
}

// ---------------------------------------------------------------- content

test('objects for the minimal values: ServiceAccount, ConfigMap, Service, Deployment, Ingress; full adds PDB, HPA, ServiceMonitor, NetworkPolicy', () => {
  assert.deepStrictEqual(objs(mustRender(['values-minimal.yaml'])).map((o) => o.kind),
    ['ServiceAccount', 'ConfigMap', 'PersistentVolumeClaim', 'Service', 'Deployment', 'Ingress']);
  assert.deepStrictEqual(objs(mustRender(['values-full.yaml'])).map((o) => o.kind).sort(),
    ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Ingress', 'NetworkPolicy', 'PodDisruptionBudget', 'Service', 'ServiceAccount', 'ServiceMonitor']);
  assert.deepStrictEqual(objs(mustRender(['values-sqlite.yaml'])).map((o) => o.kind),
    ['ServiceAccount', 'ConfigMap', 'PersistentVolumeClaim', 'Service', 'Deployment']);
  for (const f of Object.values(SCENARIOS)) assert.strictEqual(objs(mustRender(f), 'Secret').length, 0, `${f}: the chart creates no Secret`);
});

test('config: plain settings go to the ConfigMap (envFrom) as strings; numbers and booleans as the server reads them; empty ones are left out', () => {
  const r = mustRender(['values-full.yaml']);
  const cm = one(r, 'ConfigMap');
  const full = valuesFile('values-full.yaml').config;
  const plain = Object.entries(full).filter(([, v]) => typeof v !== 'object');
  assert.ok(plain.length >= 30, `${plain.length} plain settings in values-full.yaml`);
  for (const [k, v] of plain) assert.strictEqual(cm.data[k], String(v), k);
  assert.strictEqual(cm.data.GITHUB_APP_ID, '123456');
  assert.strictEqual(cm.data.NEXT_PUBLIC_ENABLE_JIRA, 'false');
  assert.strictEqual(cm.data.AURORA_EXEC_MAX_PER_CLUSTER, '256', 'a setting the chart does not list passes through');
  assert.deepStrictEqual(Object.keys(cm.data).sort(), plain.map(([k]) => k).sort());
  assert.deepStrictEqual(container(r).envFrom, [{ configMapRef: { name: cm.metadata.name } }]);
  const min = one(mustRender(['values-minimal.yaml']), 'ConfigMap').data;
  assert.deepStrictEqual(min, { AURORA_ENV: 'production', AURORA_LOG_FORMAT: 'json', AURORA_LOG_LEVEL: 'info',
    AURORA_PUBLIC_URL: 'https://api.aurora.example.com', FRONTEND_URL: 'https://aurora.example.com' });
  const big = one(mustRender(['values-minimal.yaml', w('big', { config: { AURORA_EXEC_OUTPUT_BUDGET: 1073741824 } })]), 'ConfigMap').data;
  assert.strictEqual(big.AURORA_EXEC_OUTPUT_BUDGET, '1073741824', 'no 1.073741824e+09');
});

test('config: secret settings reach the pod only through secretKeyRef, never a ConfigMap or a literal value anywhere', () => {
  const r = mustRender(['values-full.yaml']);
  const c = container(r);
  const full = valuesFile('values-full.yaml').config;
  const secret = Object.entries(full).filter(([, v]) => v && typeof v === 'object');
  assert.ok(secret.length >= 18, `${secret.length} secret settings in values-full.yaml`);
  for (const [k, v] of secret) {
    const e = envMap(c)[k];
    assert.ok(e && !('value' in e), `${k}: a literal value`);
    assert.deepStrictEqual(e.valueFrom, { secretKeyRef: v.secretKeyRef }, k);
    assert.ok(!(k in one(r, 'ConfigMap').data), `${k} in the ConfigMap`);
  }
  const settings = serverSettings();
  for (const o of objs(r)) {
    for (const [k, s] of settings) {
      if (s.secret && o.kind === 'ConfigMap') assert.ok(!(k in o.data), `${k} in ConfigMap`);
    }
  }
  for (const e of c.env) if (settings.has(e.name) && settings.get(e.name).secret) assert.ok(!('value' in e), `${e.name} literal`);
  // the guide's three: INTERNAL_API_SECRET, DATABASE_URL, AURORA_REDIS_URL
  assert.deepStrictEqual(envMap(c).INTERNAL_API_SECRET.valueFrom.secretKeyRef, { name: 'aurora-server', key: 'internal-api-secret' });
  assert.deepStrictEqual(envMap(c).DATABASE_URL.valueFrom.secretKeyRef, { name: 'aurora-postgres', key: 'url' });
  assert.deepStrictEqual(envMap(c).AURORA_REDIS_URL.valueFrom.secretKeyRef, { name: 'aurora-redis', key: 'url' });
  assert.deepStrictEqual(envMap(c).POD_NAME.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, 'extraEnv');
});

test('every other setting the server declares (not secret, not set by the chart) is accepted in config: and reaches the ConfigMap', () => {
  const settings = serverSettings();
  // what the chart sets itself must be settings the server reads (a typo would never reach it)
  for (const k of Object.keys(MANAGED)) assert.ok(settings.has(k) || k === 'POD_IP', `${k} (MANAGED) is not a server setting`);
  const enums = { AURORA_ENV: 'development', AURORA_LOG_LEVEL: 'debug', AURORA_LOG_FORMAT: 'text' };
  const config = {};
  for (const [k, s] of settings) {
    if (s.secret || k in MANAGED) continue;
    config[k] = enums[k] || `v-${k.toLowerCase()}`;
  }
  assert.ok(Object.keys(config).length > 100 && 'SPLUNK_SEARCH_TIMEOUT_MS' in config && 'OVH_EU_REDIRECT_URI' in config, String(Object.keys(config).length));
  const values = { config, secretsBackend: { local: { masterKey: { secretKeyRef: { name: 'aurora-server', key: 'master-key' } } } } };
  assert.deepStrictEqual(valuesErrors(mergeInto(mergeInto(defaults(), valuesFile('values-minimal.yaml')), values)), []);
  const data = one(mustRender(['values-minimal.yaml', w('every-plain-setting', values)]), 'ConfigMap').data;
  const lost = Object.entries(config).filter(([k, v]) => data[k] !== v).map(([k]) => k);
  assert.deepStrictEqual(lost, []);
});

test('AURORA_ENV is production by default; AURORA_PUBLIC_URL defaults to https://<ingress.hosts.api>, an explicit one wins', () => {
  assert.strictEqual(defaults().config.AURORA_ENV, 'production');
  assert.strictEqual(one(mustRender(['values-minimal.yaml']), 'ConfigMap').data.AURORA_ENV, 'production');
  assert.strictEqual(one(mustRender(['values-full.yaml']), 'ConfigMap').data.AURORA_PUBLIC_URL, 'https://aurora-api.example.com');
  assert.ok(!('AURORA_PUBLIC_URL' in one(mustRender(['values-sqlite.yaml']), 'ConfigMap').data));
});

test('settings set by the chart are refused in config by the schema, each naming the value to use instead', () => {
  const props = schema.properties.config.properties;
  const helpers = fs.readFileSync(path.join(CHART, 'templates', '_helpers.tpl'), 'utf8');
  for (const [k, from] of Object.entries(MANAGED)) {
    assert.ok(props[k] && props[k].not, `${k} is not refused by the schema`);
    assert.match(helpers, new RegExp(`^${k}: ${from.replace(/[.()]/g, '\\$&')}`, 'm'), `${k} in aurora-server.managed`);
  }
});

test('secretsBackend vault, Kubernetes auth: VAULT_* settings, a projected ServiceAccount token for Vault only, CA from a ConfigMap', () => {
  const r = mustRender(['values-full.yaml']);
  const c = container(r);
  const want = { SECRETS_BACKEND: 'vault', VAULT_ADDR: 'https://vault.example.com:8200', VAULT_AUTH_METHOD: 'kubernetes',
    VAULT_K8S_ROLE: 'aurora-server', VAULT_K8S_JWT_PATH: '/var/run/secrets/aurora/vault/token', VAULT_KV_MOUNT: 'secret',
    VAULT_PREFIX: 'aurora-prod/', VAULT_CACERT: '/etc/aurora/vault-ca/ca.crt' };
  for (const [k, v] of Object.entries(want)) assert.strictEqual(envValue(c, k), v, k);
  assert.ok(!('VAULT_TOKEN' in envMap(c)));
  const spec = one(r, 'Deployment').spec.template.spec;
  assert.strictEqual(spec.automountServiceAccountToken, false);
  assert.strictEqual(spec.serviceAccountName, 'aurora-api-sa');
  assert.strictEqual(one(r, 'ServiceAccount').metadata.name, 'aurora-api-sa');
  assert.strictEqual(one(r, 'ServiceAccount').automountServiceAccountToken, false);
  const vol = spec.volumes.find((v) => v.name === 'vault-token');
  assert.deepStrictEqual(vol.projected, { defaultMode: 0o440, sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 900, audience: 'vault' } }] });
  assert.ok(c.volumeMounts.some((m) => m.name === 'vault-token' && m.mountPath === '/var/run/secrets/aurora/vault' && m.readOnly));
  assert.deepStrictEqual(spec.volumes.find((v) => v.name === 'vault-ca').configMap,
    { name: 'vault-ca', defaultMode: 0o444, items: [{ key: 'vault-ca.pem', path: 'ca.crt' }] });
  // the server's defaults (server/server_config.c) for what the chart leaves alone
  const cfg = fs.readFileSync(path.join(ROOT, 'server', 'server_config.c'), 'utf8');
  assert.match(cfg, /"VAULT_K8S_JWT_PATH", "[^"]+", CFG_STRING/);
  assert.match(cfg, /"VAULT_KV_MOUNT", "[^"]+", CFG_STRING, "aurora"/);
  assert.strictEqual(defaults().secretsBackend.vault.kvMount, 'aurora');
  const src = fs.readFileSync(path.join(ROOT, 'server', 'secrets_vault.c'), 'utf8');
  assert.match(src, /auth\/kubernetes\/login/, 'the server logs in at auth/kubernetes/login');
});

test('secretsBackend vault, token auth: VAULT_TOKEN from its Secret, no ServiceAccount token, CA from a Secret', () => {
  const r = mustRender(['values-vault-token.yaml']);
  const c = container(r);
  assert.strictEqual(envValue(c, 'VAULT_AUTH_METHOD'), 'token');
  assert.deepStrictEqual(envMap(c).VAULT_TOKEN.valueFrom, { secretKeyRef: { name: 'aurora-vault', key: 'token' } });
  for (const k of ['VAULT_K8S_ROLE', 'VAULT_K8S_JWT_PATH', 'VAULT_PREFIX']) assert.ok(!(k in envMap(c)), k);
  const spec = one(r, 'Deployment').spec.template.spec;
  assert.ok(!spec.volumes.some((v) => v.name === 'vault-token'));
  assert.deepStrictEqual(spec.volumes.find((v) => v.name === 'vault-ca').secret,
    { secretName: 'vault-ca', defaultMode: 0o444, items: [{ key: 'ca.pem', path: 'ca.crt' }] });
});

test('secretsBackend aws_secrets_manager: AWS_SM_REGION/ENDPOINT, keys from Secrets, IRSA role annotation on the ServiceAccount', () => {
  const r = mustRender(['values-aws.yaml']);
  const c = container(r);
  assert.strictEqual(envValue(c, 'SECRETS_BACKEND'), 'aws_secrets_manager');
  assert.strictEqual(envValue(c, 'AWS_SM_REGION'), 'eu-west-1');
  assert.match(envValue(c, 'AWS_SM_ENDPOINT'), /^https:\/\/vpce-/);
  assert.deepStrictEqual(envMap(c).AWS_ACCESS_KEY_ID.valueFrom, { secretKeyRef: { name: 'aurora-aws', key: 'access-key-id' } });
  assert.deepStrictEqual(envMap(c).AWS_SECRET_ACCESS_KEY.valueFrom, { secretKeyRef: { name: 'aurora-aws', key: 'secret-access-key' } });
  assert.deepStrictEqual(one(r, 'ServiceAccount').metadata.annotations, { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/aurora-server' });
  for (const k of ['VAULT_ADDR', 'AURORA_MASTER_KEY']) assert.ok(!(k in envMap(c)), k);
  // the annotation belongs to the AWS backend only
  assert.strictEqual(one(mustRender(['values-full.yaml']), 'ServiceAccount').metadata.annotations['eks.amazonaws.com/role-arn'], undefined);
});

test('secretsBackend aws_secrets_manager with IRSA alone: role annotation, AWS_ROLE_ARN + projected web identity token, no keys', () => {
  const r = mustRender(['values-aws-irsa.yaml']);
  const c = container(r);
  const env = envMap(c);
  assert.strictEqual(envValue(c, 'SECRETS_BACKEND'), 'aws_secrets_manager');
  assert.strictEqual(envValue(c, 'AWS_SM_REGION'), 'us-east-2');
  assert.strictEqual(envValue(c, 'AWS_ROLE_ARN'), 'arn:aws:iam::123456789012:role/aurora-secrets');
  assert.strictEqual(envValue(c, 'AWS_WEB_IDENTITY_TOKEN_FILE'), '/var/run/secrets/eks.amazonaws.com/serviceaccount/token');
  assert.match(envValue(c, 'AWS_SM_STS_ENDPOINT'), /^https:\/\/vpce-.*\.sts\.us-east-2\./);
  assert.strictEqual(one(r, 'ConfigMap').data.AWS_ROLE_SESSION_NAME, 'aurora-server-prod');
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_SM_ENDPOINT']) assert.ok(!(k in env), k);
  assert.deepStrictEqual(one(r, 'ServiceAccount').metadata.annotations, { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/aurora-secrets' });
  const spec = one(r, 'Deployment').spec.template.spec;
  assert.strictEqual(spec.automountServiceAccountToken, false);
  assert.deepStrictEqual(spec.volumes.find((v) => v.name === 'aws-iam-token').projected,
    { defaultMode: 0o440, sources: [{ serviceAccountToken: { path: 'token', audience: 'sts.amazonaws.com', expirationSeconds: 3600 } }] });
  assert.deepStrictEqual(c.volumeMounts.find((m) => m.name === 'aws-iam-token'),
    { name: 'aws-iam-token', mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount', readOnly: true });

  // The role given as the ServiceAccount's annotation instead of secretsBackend.aws.roleArn.
  const a = mustRender(['values-aws-irsa.yaml', w('irsa-annotation', {
    secretsBackend: { aws: { roleArn: '', stsEndpoint: '' } },
    serviceAccount: { annotations: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/from-annotation' } } })]);
  const ac = container(a);
  assert.strictEqual(envValue(ac, 'AWS_ROLE_ARN'), 'arn:aws:iam::123456789012:role/from-annotation');
  assert.ok(!('AWS_SM_STS_ENDPOINT' in envMap(ac)), 'default STS endpoint: the server picks sts.<region>');
  assert.deepStrictEqual(one(a, 'ServiceAccount').metadata.annotations, { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/from-annotation' });
  assert.strictEqual(one(a, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'aws-iam-token').projected.sources[0].serviceAccountToken.expirationSeconds, 3600);

  // Static keys win over IRSA (values-aws.yaml has both): no web identity in the pod.
  const s = one(mustRender(['values-aws.yaml']), 'Deployment').spec.template.spec;
  assert.ok(!('AWS_ROLE_ARN' in envMap(s.containers[0])));
  assert.ok(!('AWS_WEB_IDENTITY_TOKEN_FILE' in envMap(s.containers[0])));
  assert.ok(!s.volumes.some((v) => v.name === 'aws-iam-token'));
  assert.match(r.notes, /Secrets backend: aws_secrets_manager \(us-east-2, IRSA role arn:aws:iam::123456789012:role\/aurora-secrets\)\./);
  assert.match(mustRender(['values-aws.yaml']).notes, /Secrets backend: aws_secrets_manager \(eu-west-1, static keys config\.AWS_ACCESS_KEY_ID\)\./);
  // Nor with another backend.
  assert.ok(!one(mustRender(['values-minimal.yaml']), 'Deployment').spec.template.spec.volumes.some((v) => v.name === 'aws-iam-token'));
});

test('secretsBackend local: AURORA_MASTER_KEY from its Secret; on SQLite with persistence the key file stays in the volume', () => {
  const c = container(mustRender(['values-minimal.yaml']));
  assert.strictEqual(envValue(c, 'SECRETS_BACKEND'), 'local');
  assert.deepStrictEqual(envMap(c).AURORA_MASTER_KEY.valueFrom, { secretKeyRef: { name: 'aurora-server', key: 'master-key' } });
  const s = container(mustRender(['values-sqlite.yaml']));
  assert.ok(!('AURORA_MASTER_KEY' in envMap(s)));
  assert.strictEqual(envValue(s, 'AURORA_DATA_DIR'), '/var/lib/aurora');
});

test('SQLite: a PersistentVolumeClaim (kept on uninstall) at /var/lib/aurora, one replica, Recreate; existingClaim; with PostgreSQL a claim only for the local secrets backend', () => {
  const r = mustRender(['values-sqlite.yaml']);
  const pvc = one(r, 'PersistentVolumeClaim');
  assert.deepStrictEqual(pvc.spec, { accessModes: ['ReadWriteOncePod'], storageClassName: 'fast-ssd', resources: { requests: { storage: '5Gi' } } });
  assert.strictEqual(pvc.metadata.annotations['helm.sh/resource-policy'], 'keep');
  const dep = one(r, 'Deployment');
  assert.strictEqual(dep.spec.replicas, 1);
  assert.deepStrictEqual(dep.spec.strategy, { type: 'Recreate' });
  assert.deepStrictEqual(dep.spec.template.spec.volumes.find((v) => v.name === 'data').persistentVolumeClaim, { claimName: pvc.metadata.name });
  assert.ok(container(r).volumeMounts.some((m) => m.name === 'data' && m.mountPath === '/var/lib/aurora'));
  assert.ok(!('DATABASE_URL' in envMap(container(r))));
  const ex = mustRender(['values-sqlite.yaml', w('claim', { persistence: { existingClaim: 'preexisting-claim' } })]);
  assert.strictEqual(objs(ex, 'PersistentVolumeClaim').length, 0);
  assert.strictEqual(one(ex, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'data').persistentVolumeClaim.claimName, 'preexisting-claim');
  // PostgreSQL with the local secrets backend: its store (secrets.db) is in
  // the data directory, so that outlives the pod too, and one pod at a time
  const pgLocal = mustRender(['values-minimal.yaml']);
  const pvcLocal = one(pgLocal, 'PersistentVolumeClaim');
  assert.deepStrictEqual(one(pgLocal, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'data').persistentVolumeClaim,
    { claimName: pvcLocal.metadata.name });
  assert.deepStrictEqual(one(pgLocal, 'Deployment').spec.strategy, { type: 'Recreate' });
  // PostgreSQL and a secrets backend elsewhere: nothing in the data directory outlives the pod
  const pg = mustRender(['values-aws-irsa.yaml']);
  assert.strictEqual(objs(pg, 'PersistentVolumeClaim').length, 0);
  assert.deepStrictEqual(one(pg, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'data').emptyDir, {});
  assert.deepStrictEqual(one(pg, 'Deployment').spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  assert.deepStrictEqual(one(mustRender(['values-vault-token.yaml']), 'Deployment').spec.strategy, { type: 'Recreate' });
});

test('Redis: AURORA_REDIS_URL and AURORA_INTERNAL_FORWARD_SECRET from Secrets, AURORA_INTERNAL_ADDR the pod IP and internalPort; nothing without Redis', () => {
  const f = container(mustRender(['values-full.yaml']));
  assert.deepStrictEqual(envMap(f).POD_IP.valueFrom, { fieldRef: { fieldPath: 'status.podIP' } });
  // forwarded commands go to the replicas' own listener, which alone serves them
  assert.strictEqual(envValue(f, 'AURORA_INTERNAL_PORT'), '9443');
  assert.strictEqual(envValue(f, 'AURORA_INTERNAL_ADDR'), '$(POD_IP):9443');
  const names = f.env.map((e) => e.name);
  assert.ok(names.indexOf('POD_IP') < names.indexOf('AURORA_INTERNAL_ADDR'), 'POD_IP is defined before it is referenced');
  assert.deepStrictEqual(envMap(f).AURORA_INTERNAL_FORWARD_SECRET.valueFrom, { secretKeyRef: { name: 'aurora-server', key: 'forward-secret' } });
  const a = container(mustRender(['values-aws.yaml']));
  assert.strictEqual(envValue(a, 'AURORA_INTERNAL_PORT'), '5081', 'on by default with replicas');
  assert.strictEqual(envValue(a, 'AURORA_INTERNAL_ADDR'), '$(POD_IP):5081');
  assert.ok(a.ports.some((p) => p.name === 'internal' && p.containerPort === 5081), 'a container port named internal');
  // internalPort 0: a single port, forwarded commands on it (the edge must refuse the path)
  const single = container(mustRender(['values-aws.yaml', w('internal-off', { internalPort: 0 })]));
  assert.ok(!('AURORA_INTERNAL_PORT' in envMap(single)));
  assert.strictEqual(envValue(single, 'AURORA_INTERNAL_ADDR'), '$(POD_IP):5080');
  assert.ok(!single.ports.some((p) => p.name === 'internal'));
  assert.ok(a.volumeMounts.some((m) => m.mountPath === '/etc/aurora/peer-ca'), 'the peers\' CA is mounted where AURORA_INTERNAL_CA_FILE points');
  const m = container(mustRender(['values-minimal.yaml']));
  for (const k of ['POD_IP', 'AURORA_INTERNAL_ADDR', 'AURORA_INTERNAL_PORT', 'AURORA_REDIS_URL', 'AURORA_INTERNAL_FORWARD_SECRET']) assert.ok(!(k in envMap(m)), k);
  // the server requires exactly these with Redis (server/registry.c)
  const reg = fs.readFileSync(path.join(ROOT, 'server', 'registry.c'), 'utf8');
  for (const k of ['AURORA_INTERNAL_ADDR', 'AURORA_INTERNAL_FORWARD_SECRET']) assert.ok(reg.includes(`"${k}"`), k);
});

test('replicas and autoscaling: replicaCount on the Deployment; with the HPA (autoscaling/v2) the Deployment leaves replicas to it', () => {
  assert.strictEqual(one(mustRender(['values-aws.yaml']), 'Deployment').spec.replicas, 2);
  const r = mustRender(['values-full.yaml']);
  assert.ok(!('replicas' in one(r, 'Deployment').spec));
  const hpa = one(r, 'HorizontalPodAutoscaler');
  assert.strictEqual(hpa.apiVersion, 'autoscaling/v2');
  assert.deepStrictEqual(hpa.spec, {
    scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'aurora-api-prod' }, minReplicas: 3, maxReplicas: 10,
    metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 60 } } },
      { type: 'Resource', resource: { name: 'memory', target: { type: 'Utilization', averageUtilization: 80 } } }],
  });
  assert.strictEqual(objs(mustRender(['values-minimal.yaml']), 'HorizontalPodAutoscaler').length, 0);
});

test('Service: HTTPS + WSS on one port (5080 by default), the ops port beside it when set; plain http name with TLS off', () => {
  const d = mustRender(['values-minimal.yaml']);
  assert.deepStrictEqual(one(d, 'Service').spec.ports, [{ name: 'https', port: 5080, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' },
    { name: 'ops', port: 9090, targetPort: 'ops', protocol: 'TCP', appProtocol: 'http' }]);
  const m = mustRender(['values-minimal.yaml', w('ops-off', { opsPort: 0 })]);
  assert.deepStrictEqual(one(m, 'Service').spec.ports, [{ name: 'https', port: 5080, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' }]);
  assert.deepStrictEqual(container(m).ports, [{ name: 'https', containerPort: 5080, protocol: 'TCP' }]);
  assert.strictEqual(envValue(container(m), 'AURORA_PORT'), '5080');
  assert.strictEqual(envValue(container(m), 'AURORA_OPS_PORT'), '0');
  const f = mustRender(['values-full.yaml']);
  const svc = one(f, 'Service');
  assert.strictEqual(svc.spec.type, 'LoadBalancer');
  assert.deepStrictEqual(svc.metadata.annotations, { 'service.beta.kubernetes.io/aws-load-balancer-type': 'nlb' });
  assert.deepStrictEqual(svc.spec.ports, [{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' },
    { name: 'ops', port: 9102, targetPort: 'ops', protocol: 'TCP', appProtocol: 'http' }]);
  assert.deepStrictEqual(container(f).ports, [{ name: 'https', containerPort: 8443, protocol: 'TCP' }, { name: 'ops', containerPort: 9102, protocol: 'TCP' },
    { name: 'internal', containerPort: 9443, protocol: 'TCP' }]);
  assert.strictEqual(envValue(container(f), 'AURORA_PORT'), '8443');
  assert.strictEqual(envValue(container(f), 'AURORA_OPS_PORT'), '9102');
  assert.strictEqual(one(mustRender(['values-sqlite.yaml']), 'Service').spec.ports[0].name, 'http');
  // the server's own default port is the chart's
  assert.match(fs.readFileSync(path.join(ROOT, 'server', 'server_config.c'), 'utf8'), /"AURORA_PORT", "[^"]+", CFG_INT, "5080"/);
});

test('Ingress: the guide\'s ingress.hosts.api, / to the Service\'s HTTPS port, class, TLS, long WebSocket timeouts, HTTPS backend with TLS in the pod', () => {
  const m = one(mustRender(['values-minimal.yaml']), 'Ingress');
  assert.strictEqual(m.spec.rules[0].host, 'api.aurora.example.com');
  assert.deepStrictEqual(m.spec.rules[0].http.paths, [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'aurora-server', port: { name: 'https' } } } }]);
  assert.deepStrictEqual(m.metadata.annotations, { 'nginx.ingress.kubernetes.io/backend-protocol': 'HTTPS',
    'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600', 'nginx.ingress.kubernetes.io/proxy-send-timeout': '3600' });
  assert.strictEqual(m.spec.ingressClassName, undefined);
  const f = one(mustRender(['values-full.yaml']), 'Ingress');
  assert.strictEqual(f.spec.ingressClassName, 'nginx');
  assert.deepStrictEqual(f.spec.tls, [{ secretName: 'aurora-api-tls', hosts: ['api.aurora.example.com'] }]);
  assert.strictEqual(f.metadata.annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'], '7200');
  assert.strictEqual(f.metadata.annotations['nginx.ingress.kubernetes.io/proxy-body-size'], '2m');
  const plain = one(mustRender(['values-minimal.yaml', w('ing-plain', { tls: { enabled: false } })]), 'Ingress');
  assert.ok(!('nginx.ingress.kubernetes.io/backend-protocol' in plain.metadata.annotations));
  assert.strictEqual(plain.spec.rules[0].http.paths[0].backend.service.port.name, 'http');
  assert.strictEqual(objs(mustRender(['values-sqlite.yaml']), 'Ingress').length, 0);
  const guide = fs.existsSync(GUIDE) ? fs.readFileSync(GUIDE, 'utf8') : 'ingress.hosts.api';
  assert.ok(guide.includes('ingress.hosts.api'));
});

test('probes: liveness GET /health, readiness GET /ready; HTTPS on the main port with TLS, HTTP on the ops port or without TLS', () => {
  const m = container(mustRender(['values-minimal.yaml', w('probes-ops-off', { opsPort: 0 })]));
  assert.deepStrictEqual(m.livenessProbe, { httpGet: { path: '/health', port: 'https', scheme: 'HTTPS' }, initialDelaySeconds: 5, periodSeconds: 20, timeoutSeconds: 3, failureThreshold: 3 });
  assert.deepStrictEqual(m.readinessProbe, { httpGet: { path: '/ready', port: 'https', scheme: 'HTTPS' }, initialDelaySeconds: 2, periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 });
  const f = container(mustRender(['values-full.yaml']));
  assert.deepStrictEqual(f.livenessProbe, { httpGet: { path: '/health', port: 'ops', scheme: 'HTTP' }, initialDelaySeconds: 11, periodSeconds: 31, timeoutSeconds: 6, failureThreshold: 4 });
  assert.deepStrictEqual(f.readinessProbe, { httpGet: { path: '/ready', port: 'ops', scheme: 'HTTP' }, initialDelaySeconds: 3, periodSeconds: 7, timeoutSeconds: 2, failureThreshold: 5, successThreshold: 2 });
  const s = container(mustRender(['values-sqlite.yaml', w('probes-ops-off', { opsPort: 0 })]));
  assert.deepStrictEqual(s.livenessProbe.httpGet, { path: '/health', port: 'http', scheme: 'HTTP' });
  const off = container(mustRender(['values-minimal.yaml', w('probes-off', { livenessProbe: { enabled: false }, readinessProbe: { enabled: false } })]));
  assert.strictEqual(off.livenessProbe, undefined);
  assert.strictEqual(off.readinessProbe, undefined);
});

test('the default install probes and scrapes the ops listener (plain HTTP, exempt from connection admission), not the API port', () => {
  // The API port refuses new connections at accept beyond AURORA_MAX_PENDING_HANDSHAKES
  // (or AURORA_ACCEPT_RATE): during a reconnect storm or a flood of idle connections, a
  // probe there is refused like any client, and three refused liveness probes restart a
  // pod that was serving every tunnel it held. The ops listener is never refused.
  const r = mustRender(['values-minimal.yaml', w('ops-default-sm', { serviceMonitor: { enabled: true }, networkPolicy: { enabled: true } })]);
  const c = container(r);
  assert.strictEqual(envValue(c, 'AURORA_OPS_PORT'), '9090');
  assert.deepStrictEqual(c.livenessProbe.httpGet, { path: '/health', port: 'ops', scheme: 'HTTP' });
  assert.deepStrictEqual(c.readinessProbe.httpGet, { path: '/ready', port: 'ops', scheme: 'HTTP' });
  assert.ok(c.ports.some((p) => p.name === 'ops' && p.containerPort === 9090));
  assert.deepStrictEqual(one(r, 'ServiceMonitor').spec.endpoints[0].port, 'ops');
  assert.ok(one(r, 'NetworkPolicy').spec.ingress.some((i) => i.ports[0].port === 9090), 'the policy lets probes and scrapes in');
});

test('startup probe: the server migrates the state store before it listens at all; liveness waits for GET /health to answer first (up to 10 minutes by default)', () => {
  // store_open (schema migrations under an advisory lock, instance_start's sweep) runs
  // before any listener, the ops one included: a migration longer than the liveness
  // probe's ~65 s got the pod killed mid-migration, the transaction rolled back, and the
  // next start began again, forever.
  const m = container(mustRender(['values-minimal.yaml']));
  assert.deepStrictEqual(m.startupProbe, { httpGet: { path: '/health', port: 'ops', scheme: 'HTTP' }, initialDelaySeconds: 0, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 120 });
  const off = container(mustRender(['values-minimal.yaml', w('ops-off-startup', { opsPort: 0 })]));
  assert.deepStrictEqual(off.startupProbe.httpGet, { path: '/health', port: 'https', scheme: 'HTTPS' });
  const f = container(mustRender(['values-full.yaml']));
  assert.deepStrictEqual(f.startupProbe, { httpGet: { path: '/health', port: 'ops', scheme: 'HTTP' }, initialDelaySeconds: 1, periodSeconds: 4, timeoutSeconds: 2, failureThreshold: 300 });
  assert.strictEqual(container(mustRender(['values-minimal.yaml', w('startup-off', { startupProbe: { enabled: false } })])).startupProbe, undefined);
});

test('the data volume keeps its files\' modes across restarts: fsGroupChangePolicy OnRootMismatch', () => {
  // With the default (Always) the kubelet walks an fsGroup volume at every mount and adds
  // group read-write to every file: the local backend's master.key (0600 on the claim of a
  // single SQLite replica) became 0660 at the first restart, and the server refuses a key
  // file others could replace ("accessible by other users (mode 0660)"): every stored
  // credential unusable, the pod never ready.
  for (const f of ['values-sqlite.yaml', 'values-minimal.yaml', 'values-full.yaml']) {
    const psc = one(mustRender([f]), 'Deployment').spec.template.spec.securityContext;
    assert.strictEqual(psc.fsGroupChangePolicy, 'OnRootMismatch', f);
    assert.ok(psc.fsGroup, f);
  }
});

test('TLS: the certificate of tls.existingSecret mounted 0440 (AURORA_TLS_CERT/KEY); TLS off sets AURORA_PLAIN_HTTP and AURORA_TLS_TERMINATED_BY_PROXY', () => {
  const r = mustRender(['values-full.yaml']);
  const c = container(r);
  assert.strictEqual(envValue(c, 'AURORA_TLS_CERT'), '/etc/aurora/tls/tls.crt');
  assert.strictEqual(envValue(c, 'AURORA_TLS_KEY'), '/etc/aurora/tls/tls.key');
  assert.deepStrictEqual(one(r, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'tls').secret,
    { secretName: 'aurora-server-tls', defaultMode: 0o440, items: [{ key: 'tls.crt', path: 'tls.crt' }, { key: 'tls.key', path: 'tls.key' }] });
  assert.ok(c.volumeMounts.some((m) => m.name === 'tls' && m.mountPath === '/etc/aurora/tls' && m.readOnly));
  for (const k of ['AURORA_PLAIN_HTTP', 'AURORA_TLS_TERMINATED_BY_PROXY']) assert.ok(!(k in envMap(c)), k);
  const m = container(mustRender(['values-minimal.yaml']));
  for (const k of ['AURORA_TLS_CERT', 'AURORA_TLS_KEY', 'AURORA_PLAIN_HTTP']) assert.ok(!(k in envMap(m)), `${k}: self-signed by default`);
  const s = container(mustRender(['values-sqlite.yaml']));
  assert.strictEqual(envValue(s, 'AURORA_PLAIN_HTTP'), 'true');
  assert.strictEqual(envValue(s, 'AURORA_TLS_TERMINATED_BY_PROXY'), 'true');
});

test('TLS session tickets: tls.ticketKeySecret mounted 0440 as AURORA_TLS_TICKET_KEY_FILE (shared by the pods, kept across restarts); unset: none', () => {
  const r = mustRender(['values-full.yaml', w('ticket-key', { tls: { ticketKeySecret: 'aurora-ticket-key' } })]);
  const c = container(r);
  assert.strictEqual(envValue(c, 'AURORA_TLS_TICKET_KEY_FILE'), '/etc/aurora/tls-ticket/tls-ticket.key');
  assert.deepStrictEqual(one(r, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'tls-ticket').secret,
    { secretName: 'aurora-ticket-key', defaultMode: 0o440, items: [{ key: 'tls-ticket.key', path: 'tls-ticket.key' }] });
  assert.ok(c.volumeMounts.some((m) => m.name === 'tls-ticket' && m.mountPath === '/etc/aurora/tls-ticket' && m.readOnly));
  const m = container(mustRender(['values-minimal.yaml']));
  assert.ok(!('AURORA_TLS_TICKET_KEY_FILE' in envMap(m)), 'the data directory by default');
  // the admission settings are plain config entries
  const a = container(mustRender(['values-minimal.yaml', w('admission', { config: { AURORA_MAX_PENDING_HANDSHAKES: 512, AURORA_ACCEPT_RATE: 2000 } })]));
  const cm = one(mustRender(['values-minimal.yaml', w('admission2', { config: { AURORA_MAX_PENDING_HANDSHAKES: 512 } })]), 'ConfigMap');
  assert.strictEqual(String(cm.data.AURORA_MAX_PENDING_HANDSHAKES), '512');
  assert.ok(a);
});

test('restricted pod security in every scenario: non-root, read-only root fs, drop ALL, seccomp RuntimeDefault, no token automount, allowed volume types', () => {
  for (const files of Object.values(SCENARIOS)) {
    const spec = one(mustRender(files), 'Deployment').spec.template.spec;
    assert.strictEqual(spec.securityContext.runAsNonRoot, true);
    assert.ok(spec.securityContext.runAsUser > 0);
    assert.deepStrictEqual(spec.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    assert.strictEqual(spec.automountServiceAccountToken, false);
    for (const c of spec.containers) {
      const sc = c.securityContext;
      assert.strictEqual(sc.runAsNonRoot, true);
      assert.strictEqual(sc.readOnlyRootFilesystem, true);
      assert.strictEqual(sc.allowPrivilegeEscalation, false);
      assert.strictEqual(sc.privileged, false);
      assert.deepStrictEqual(sc.capabilities, { drop: ['ALL'] });
      assert.deepStrictEqual(sc.seccompProfile, { type: 'RuntimeDefault' });
      for (const p of c.ports) assert.ok(!p.hostPort && p.containerPort >= 1024, `port ${p.containerPort}: unprivileged, no hostPort`);
      assert.ok(c.volumeMounts.some((m) => m.mountPath === '/tmp'), 'a writable /tmp');
    }
    for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) assert.ok(!spec[k], k);
    // no Docker-link variables: a Service named "aurora" would otherwise inject
    // AURORA_PORT=tcp://... into the server's own settings namespace
    assert.strictEqual(spec.enableServiceLinks, false);
    const allowed = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
    for (const v of spec.volumes) assert.ok(Object.keys(v).filter((k) => k !== 'name').every((t) => allowed.includes(t)), v.name);
  }
  // the chart's uid is the image's (Dockerfile.server)
  const docker = fs.readFileSync(path.join(ROOT, 'Dockerfile.server'), 'utf8');
  assert.match(docker, new RegExp(`USER ${defaults().podSecurityContext.runAsUser}:${defaults().podSecurityContext.runAsGroup}`));
});

test('/tmp: an emptyDir of tmpVolume.sizeLimit (64Mi by default) on tmpVolume.medium', () => {
  const tmpOf = (r) => one(r, 'Deployment').spec.template.spec.volumes.find((v) => v.name === 'tmp');
  const min = mustRender(['values-minimal.yaml']);
  assert.ok(container(min).volumeMounts.some((m) => m.name === 'tmp' && m.mountPath === '/tmp' && !m.readOnly));
  assert.deepStrictEqual(tmpOf(min).emptyDir, { sizeLimit: '64Mi' });
  assert.strictEqual(defaults().tmpVolume.sizeLimit, '64Mi');
  assert.deepStrictEqual(tmpOf(mustRender(['values-full.yaml'])).emptyDir, { medium: 'Memory', sizeLimit: '256Mi' });
  // null: no limit of the chart's (the node's or, with Memory, the container's)
  assert.deepStrictEqual(tmpOf(mustRender(['values-minimal.yaml', w('tmp-unlimited', { tmpVolume: { sizeLimit: null } })])).emptyDir, {});
});

test('PodDisruptionBudget (policy/v1) only when enabled: minAvailable from values-full, maxUnavailable 1 by default', () => {
  assert.strictEqual(objs(mustRender(['values-minimal.yaml']), 'PodDisruptionBudget').length, 0);
  const f = one(mustRender(['values-full.yaml']), 'PodDisruptionBudget');
  assert.strictEqual(f.apiVersion, 'policy/v1');
  assert.deepStrictEqual(f.spec, { minAvailable: 2, unhealthyPodEvictionPolicy: 'IfHealthyBudget', selector: { matchLabels: { 'app.kubernetes.io/name': 'aurora-api', 'app.kubernetes.io/instance': RELEASE } } });
  assert.strictEqual(one(mustRender(['values-aws.yaml']), 'PodDisruptionBudget').spec.maxUnavailable, 1);
  const pct = one(mustRender(['values-aws.yaml', w('pdb-pct', { podDisruptionBudget: { maxUnavailable: '50%' } })]), 'PodDisruptionBudget');
  assert.strictEqual(pct.spec.maxUnavailable, '50%');
});

test('PodDisruptionBudget by default exactly when more than one replica may run (a drain leaves the others serving); enabled false: none', () => {
  const auto = w('pdb-auto', { podDisruptionBudget: { enabled: null } });
  const pdb = one(mustRender(['values-aws.yaml', auto]), 'PodDisruptionBudget');
  assert.strictEqual(pdb.spec.maxUnavailable, 1, 'two replicas');
  assert.strictEqual(one(mustRender(['values-aws.yaml', auto, w('pdb-hpa', { replicaCount: 1, autoscaling: { enabled: true } })]), 'PodDisruptionBudget').spec.maxUnavailable, 1, 'autoscaled');
  assert.strictEqual(objs(mustRender(['values-minimal.yaml']), 'PodDisruptionBudget').length, 0, 'one replica: a budget would only block drains');
  assert.strictEqual(objs(mustRender(['values-aws.yaml', w('pdb-off', { podDisruptionBudget: { enabled: false } })]), 'PodDisruptionBudget').length, 0);
  mustFail(['values-aws.yaml', auto, w('pdb-both', { podDisruptionBudget: { minAvailable: 1 } })], /set only one of minAvailable and maxUnavailable/);
});

test('PodDisruptionBudget: unready replicas (state store or secrets backend down: all of them at once) never block a node drain: unhealthyPodEvictionPolicy AlwaysAllow from Kubernetes 1.27', () => {
  assert.strictEqual(one(mustRender(['values-aws.yaml']), 'PodDisruptionBudget').spec.unhealthyPodEvictionPolicy, 'AlwaysAllow');
  assert.ok(!('unhealthyPodEvictionPolicy' in one(mustRender(['values-aws.yaml'], { kubeVersion: '1.26.9' }), 'PodDisruptionBudget').spec), 'unknown before 1.27');
});

test('ServiceMonitor (monitoring.coreos.com/v1) only when enabled: /metrics on the ops port over HTTP, or on the HTTPS port with tlsConfig', () => {
  assert.strictEqual(objs(mustRender(['values-minimal.yaml']), 'ServiceMonitor').length, 0);
  const f = one(mustRender(['values-full.yaml']), 'ServiceMonitor');
  assert.strictEqual(f.apiVersion, 'monitoring.coreos.com/v1');
  assert.strictEqual(f.metadata.labels.release, 'kube-prometheus-stack');
  assert.deepStrictEqual(f.spec.endpoints, [{ port: 'ops', path: '/metrics', scheme: 'http', interval: '15s', scrapeTimeout: '5s' }]);
  assert.deepStrictEqual(f.spec.namespaceSelector, { matchNames: [NS] });
  const t = one(mustRender(['values-vault-token.yaml']), 'ServiceMonitor');
  assert.deepStrictEqual(t.spec.endpoints, [{ port: 'https', path: '/metrics', scheme: 'https', interval: '30s', scrapeTimeout: '10s', tlsConfig: { insecureSkipVerify: true } }]);
});

test('NetworkPolicy only when enabled: the API port from apiFrom, the ops port from opsFrom, egress DNS + the given rules when restricted', () => {
  assert.strictEqual(objs(mustRender(['values-minimal.yaml']), 'NetworkPolicy').length, 0);
  const f = one(mustRender(['values-full.yaml']), 'NetworkPolicy');
  const full = valuesFile('values-full.yaml').networkPolicy;
  assert.deepStrictEqual(f.spec.policyTypes, ['Ingress', 'Egress']);
  const peers = { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'aurora-api', 'app.kubernetes.io/instance': RELEASE } } };
  // forwarded commands: the internal port, from the server's own pods only; the API port
  // from apiFrom alone
  assert.deepStrictEqual(f.spec.ingress, [
    { ports: [{ port: 8443, protocol: 'TCP' }], from: full.apiFrom },
    { ports: [{ port: 9443, protocol: 'TCP' }], from: [peers] },
    { ports: [{ port: 9102, protocol: 'TCP' }], from: full.opsFrom }]);
  // restricted egress still lets a replica forward a command to the replica holding the
  // agent (Redis: many replicas), on the internal port
  assert.deepStrictEqual(f.spec.egress, [{ ports: [{ port: 53, protocol: 'UDP' }, { port: 53, protocol: 'TCP' }] },
    { ports: [{ port: 9443, protocol: 'TCP' }], to: [peers] }, ...full.egress.to]);
  // internalPort 0 (one port): the replicas reach each other on the API port
  const one_port = one(mustRender(['values-full.yaml', w('np-internal-off', { internalPort: 0 })]), 'NetworkPolicy');
  assert.deepStrictEqual(one_port.spec.ingress, [
    { ports: [{ port: 8443, protocol: 'TCP' }], from: [...full.apiFrom, peers] },
    { ports: [{ port: 9102, protocol: 'TCP' }], from: full.opsFrom }]);
  assert.deepStrictEqual(one_port.spec.egress[1], { ports: [{ port: 8443, protocol: 'TCP' }], to: [peers] });
  const single = one(mustRender(['values-minimal.yaml', w('np-egress-single', { networkPolicy: { enabled: true, egress: { enabled: true } } })]), 'NetworkPolicy');
  assert.deepStrictEqual(single.spec.egress, [{ ports: [{ port: 53, protocol: 'UDP' }, { port: 53, protocol: 'TCP' }] }], 'one replica: no peer rule');
  const open = one(mustRender(['values-minimal.yaml', w('np-open', { networkPolicy: { enabled: true } })]), 'NetworkPolicy');
  assert.deepStrictEqual(open.spec, { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'aurora-server', 'app.kubernetes.io/instance': RELEASE } },
    policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 5080, protocol: 'TCP' }] }, { ports: [{ port: 9090, protocol: 'TCP' }] }] });
});

test('rollouts: a preStop sleep before SIGTERM (the kubelet\'s sleep from 1.30, the image\'s sleep before), and a grace period that covers it plus the shutdown', () => {
  const m = one(mustRender(['values-minimal.yaml']), 'Deployment').spec.template.spec;
  assert.deepStrictEqual(m.containers[0].lifecycle, { preStop: { sleep: { seconds: 5 } } });
  assert.strictEqual(m.terminationGracePeriodSeconds, 30);
  const old = container(mustRender(['values-minimal.yaml'], { kubeVersion: '1.29.5' }));
  assert.deepStrictEqual(old.lifecycle, { preStop: { exec: { command: ['sleep', '5'] } } });
  // the exec form needs a sleep binary in the image: the runtime stage is Debian (coreutils)
  const docker = fs.readFileSync(path.join(ROOT, 'Dockerfile.server'), 'utf8');
  const stages = docker.split('\n').filter((l) => /^FROM /.test(l));
  assert.strictEqual(stages[stages.length - 1], 'FROM ${DEBIAN_IMAGE}', 'the runtime image has /bin/sleep');
  assert.match(docker, /^ARG DEBIAN_IMAGE=debian:/m);
  const f = one(mustRender(['values-full.yaml']), 'Deployment').spec.template.spec;
  assert.deepStrictEqual(f.containers[0].lifecycle, { preStop: { sleep: { seconds: 10 } } });
  const off = container(mustRender(['values-minimal.yaml', w('prestop-off', { lifecycle: { preStopSleepSeconds: 0 } })]));
  assert.ok(!('lifecycle' in off), 'preStopSleepSeconds 0: no hook');
  // the commands running at SIGTERM may end first: the drain is the server's setting, and in the grace
  assert.strictEqual(envValue(m.containers[0], 'AURORA_SHUTDOWN_DRAIN_S'), '10');
  assert.strictEqual(envValue(f.containers[0], 'AURORA_SHUTDOWN_DRAIN_S'), '30');
  assert.match(fs.readFileSync(path.join(ROOT, 'server', 'server_config.c'), 'utf8'),
    /\{ "AURORA_SHUTDOWN_DRAIN_S", "[a-z_.]+", CFG_INT, "10",/, 'the chart default is the server default');
  const noDrain = mustRender(['values-minimal.yaml', w('drain-off', { lifecycle: { shutdownDrainSeconds: 0 }, terminationGracePeriodSeconds: 20 })]);
  assert.strictEqual(envValue(container(noDrain), 'AURORA_SHUTDOWN_DRAIN_S'), '0');
  assert.strictEqual(one(noDrain, 'Deployment').spec.template.spec.terminationGracePeriodSeconds, 20);
});

test('trustedProxies: none by default (no AURORA_TRUSTED_PROXIES), a list renders as the comma-separated setting', () => {
  assert.deepStrictEqual(defaults().trustedProxies, []);
  assert.ok(!('AURORA_TRUSTED_PROXIES' in envMap(container(mustRender(['values-minimal.yaml'])))));
  assert.doesNotMatch(fs.readFileSync(path.join(ROOT, 'server', 'server_config.c'), 'utf8'),
    /\{ "AURORA_TRUSTED_PROXIES", "[a-z_.]+", CFG_STRING, "/, 'the server trusts nothing by default either');
  const list = ['10.0.0.0/8', '192.168.1.7', 'fd00:10::/64', '::ffff:10.0.0.0/104'];
  const v = { trustedProxies: list };
  assert.deepStrictEqual(valuesErrors(mergeInto(mergeInto(defaults(), valuesFile('values-minimal.yaml')), v)), []);
  const r = mustRender(['values-minimal.yaml', w('trusted-proxies', v)]);
  assert.strictEqual(envValue(container(r), 'AURORA_TRUSTED_PROXIES'), list.join(','));
  assert.ok(!('AURORA_TRUSTED_PROXIES' in one(r, 'ConfigMap').data), 'an env entry, not in the ConfigMap');
});

test('labels and names: app: aurora-server and app.kubernetes.io/* on every object, selectors match, overrides apply', () => {
  const r = mustRender(['values-minimal.yaml']);
  for (const o of objs(r)) {
    assert.strictEqual(o.metadata.labels.app, 'aurora-server', o.kind);
    assert.strictEqual(o.metadata.labels['app.kubernetes.io/component'], 'server', o.kind);
    assert.strictEqual(o.metadata.name, 'aurora-server', o.kind);
    assert.strictEqual(o.metadata.namespace, NS, o.kind);
  }
  const f = mustRender(['values-full.yaml']);
  for (const o of objs(f)) {
    assert.strictEqual(o.metadata.name, o.kind === 'ServiceAccount' ? 'aurora-api-sa' : 'aurora-api-prod', o.kind);
    assert.strictEqual(o.metadata.labels.team, 'platform', `${o.kind} commonLabels`);
  }
  const dep = one(f, 'Deployment');
  assert.strictEqual(dep.metadata.labels.tier, 'api');
  assert.strictEqual(dep.metadata.annotations['example.com/owner'], 'platform-team');
  assert.strictEqual(dep.spec.template.metadata.labels['network-policy'], 'aurora-api');
  assert.strictEqual(dep.spec.template.metadata.annotations['example.com/scrape-logs'], 'true');
  assert.strictEqual(one(mustRender(['values-minimal.yaml'], { name: 'prod' }), 'Deployment').metadata.name, 'prod-aurora-server');
});

test('pod labels: the chart\'s app.kubernetes.io/* labels and commonLabels on the pods too, as on every object', () => {
  for (const files of [['values-minimal.yaml'], ['values-full.yaml']]) {
    const dep = one(mustRender(files), 'Deployment');
    const pod = dep.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(dep.metadata.labels)) {
      if (k in (valuesFile(files[files.length - 1]).labels || {})) continue; // the Deployment's own labels
      assert.strictEqual(pod[k], v, `${files}: pod label ${k}`);
    }
    for (const [k, v] of Object.entries(dep.spec.selector.matchLabels)) assert.strictEqual(pod[k], v, `selector ${k}`);
  }
});

test('labels: commonLabels, labels and podLabels merge into one map (the most specific wins); selector keys refused', () => {
  const r = mustRender(['values-minimal.yaml', w('labels-merge', {
    commonLabels: { team: 'common', app: 'aurora-api', cost: 'c1' },
    labels: { team: 'deploy' },
    podLabels: { team: 'pod', cost: 'c2' },
  })]);
  for (const o of objs(r)) assert.strictEqual(o.metadata.labels.app, 'aurora-api', `${o.kind}: commonLabels overrides app`);
  const dep = one(r, 'Deployment');
  assert.strictEqual(dep.metadata.labels.team, 'deploy');
  const pod = dep.spec.template.metadata.labels;
  assert.strictEqual(pod.team, 'pod');
  assert.strictEqual(pod.cost, 'c2');
  assert.strictEqual(pod.app, 'aurora-api');
  for (const [k, v] of Object.entries(dep.spec.selector.matchLabels)) assert.strictEqual(pod[k], v, `selector ${k}`);
  for (const key of ['commonLabels', 'labels', 'podLabels']) {
    for (const sel of ['app.kubernetes.io/name', 'app.kubernetes.io/instance']) {
      mustFail(['values-minimal.yaml', w(`labels-sel-${key}-${sel.replace(/\W/g, '')}`, { [key]: { [sel]: 'other' } })],
        new RegExp(`${key}.*${sel.replace(/\./g, '\\.')}.*selector`));
    }
  }
});

test('replicas: spread over nodes by default (preferred anti-affinity on the hostname); one replica, or affinity / topologySpreadConstraints given: none added', () => {
  const spread = {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [{
        weight: 100,
        podAffinityTerm: {
          topologyKey: 'kubernetes.io/hostname',
          labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'aurora-server', 'app.kubernetes.io/instance': RELEASE } },
        },
      }],
    },
  };
  const spec = (files) => one(mustRender(files), 'Deployment').spec.template.spec;
  assert.deepStrictEqual(spec(['values-aws.yaml']).affinity, spread, 'two replicas');
  assert.deepStrictEqual(spec(['values-aws.yaml', w('hpa', { replicaCount: 1, autoscaling: { enabled: true } })]).affinity, spread, 'autoscaled');
  assert.strictEqual(spec(['values-minimal.yaml']).affinity, undefined, 'one replica');
  const given = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['aurora'] }] }] } } };
  assert.deepStrictEqual(spec(['values-aws.yaml', w('aff', { affinity: given })]).affinity, given, 'affinity given');
  const tsc = [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'aurora-server' } } }];
  const s = spec(['values-aws.yaml', w('tsc', { topologySpreadConstraints: tsc })]);
  assert.strictEqual(s.affinity, undefined, 'topologySpreadConstraints given');
  assert.deepStrictEqual(s.topologySpreadConstraints, tsc);
});

test('scheduling and pod values of values-full.yaml reach the pod; image by digest from the registry', () => {
  const full = valuesFile('values-full.yaml');
  const dep = one(mustRender(['values-full.yaml']), 'Deployment');
  const spec = dep.spec.template.spec;
  assert.strictEqual(dep.spec.revisionHistoryLimit, 5);
  assert.deepStrictEqual(dep.spec.strategy, full.strategy);
  for (const k of ['nodeSelector', 'tolerations', 'affinity', 'topologySpreadConstraints', 'imagePullSecrets']) assert.deepStrictEqual(spec[k], full[k], k);
  assert.strictEqual(spec.priorityClassName, 'aurora-critical');
  assert.strictEqual(spec.terminationGracePeriodSeconds, 60);
  assert.deepStrictEqual(spec.containers[0].resources, full.resources);
  assert.deepStrictEqual(spec.volumes.find((v) => v.name === 'extra-ca'), full.extraVolumes[0]);
  assert.deepStrictEqual(spec.containers[0].volumeMounts.find((v) => v.name === 'extra-ca'), full.extraVolumeMounts[0]);
  assert.strictEqual(spec.containers[0].image, `registry.example.com/platform/aurora/server@${full.image.digest}`);
  assert.strictEqual(spec.containers[0].imagePullPolicy, 'Always');
  assert.deepStrictEqual(spec.containers[0].args, ['serve']);
  const appVersion = readYaml(path.join(CHART, 'Chart.yaml'))[0].appVersion;
  assert.strictEqual(container(mustRender(['values-minimal.yaml'])).image, `aurora-server:${appVersion}`);
});

test('checksum annotations: a changed setting (plain or secret reference) restarts the pods; the same values do not', () => {
  const ann = (files) => one(mustRender(files), 'Deployment').spec.template.metadata.annotations;
  const base = ann(['values-minimal.yaml']);
  assert.match(base['checksum/config'], /^[0-9a-f]{64}$/);
  assert.deepStrictEqual(ann(['values-minimal.yaml']), base);
  assert.notStrictEqual(ann(['values-minimal.yaml', w('ck1', { config: { FRONTEND_URL: 'https://other.example.com' } })])['checksum/config'], base['checksum/config']);
  const ref = ann(['values-minimal.yaml', w('ck2', { config: { INTERNAL_API_SECRET: { secretKeyRef: { name: 'aurora-server', key: 'rotated' } } } })]);
  assert.notStrictEqual(ref['checksum/env'], base['checksum/env']);
});

test('NOTES.txt: state store, secrets backend, verification commands, the agent\'s wss:// URL on ingress.hosts.api and its chart', () => {
  const r = mustRender(['values-minimal.yaml']);
  assert.match(r.notes, /State store: PostgreSQL \(config\.DATABASE_URL\); 1 replica\(s\)\./);
  assert.match(r.notes, /Secrets backend: local\./);
  assert.ok(r.notes.includes('kubectl get pods -n aurora -l app=aurora-server'));
  assert.ok(r.notes.includes('curl -s localhost:9090/health'));
  assert.ok(mustRender(['values-minimal.yaml', w('notes-ops-off', { opsPort: 0 })]).notes.includes('curl -sk https://localhost:5080/health'));
  assert.ok(r.notes.includes('wss://api.aurora.example.com/kubectl-agent'));
  assert.ok(r.notes.includes('helm install aurora-kubectl-agent ./chart/agent'));
  assert.match(r.notes, /self-signed certificate/);
  const f = mustRender(['values-full.yaml']);
  assert.match(f.notes, /3-10 replicas \(autoscaled\)/);
  assert.match(f.notes, /Secrets backend: vault \(https:\/\/vault\.example\.com:8200, kubernetes auth, role aurora-server\)\./);
  assert.ok(f.notes.includes('curl -s localhost:9102/health'));
  assert.ok(!f.notes.includes('self-signed'));
  assert.match(f.notes, /forward commands to each other at\n\$\(POD_IP\):9443 \(internalPort\), on neither the Service nor the Ingress; port 8443\nanswers \/internal\/forward\/ 404/);
  const single = mustRender(['values-full.yaml', w('notes-internal-off', { internalPort: 0 })]);
  assert.match(single.notes, /forward commands to each other at\n\$\(POD_IP\):8443 under \/internal\/forward\/ \(internalPort 0\)\. Refuse that path at\nthe edge/);
  assert.ok(!r.notes.includes('/internal/forward/'));
  const s = mustRender(['values-sqlite.yaml', w('notes-nopvc', { persistence: { enabled: false }, secretsBackend: { local: { masterKey: { secretKeyRef: { name: 'k', key: 'k' } } } } })]);
  assert.match(s.notes, /WARNING: SQLite on an emptyDir/);
  assert.ok(!r.text.includes('kubectl get pods -n'), 'NOTES is not a manifest');
});

test('Dockerfile.server: base images pinned by digest, HEALTHCHECK on /health, the chart\'s port and uid', () => {
  const d = fs.readFileSync(path.join(ROOT, 'Dockerfile.server'), 'utf8');
  const froms = d.match(/^FROM\s+\S+/gm);
  assert.ok(froms.length >= 2);
  const args = Object.fromEntries([...d.matchAll(/^ARG\s+([A-Z_]+)=(\S+)/gm)].map((m) => [m[1], m[2]]));
  for (const f of froms) {
    const img = f.split(/\s+/)[1].replace(/^\$\{([A-Z_]+)\}$/, (_, a) => args[a] || '');
    assert.match(img, /^debian:12-slim@sha256:[0-9a-f]{64}$/, f);
  }
  const hc = d.match(/^HEALTHCHECK (?:.*\\\n)*.*$/m);
  assert.ok(hc, 'a HEALTHCHECK instruction');
  assert.match(hc[0], /\/health/);
  assert.match(hc[0], /AURORA_OPS_PORT/, 'follows /health to the ops listener');
  assert.match(d, /apt-get install[^\n]*(?:\\\n[^\n]*)*\bcurl\b/, 'the image has what the check runs (curl)');
  // runtime packages come from the binary's DT_NEEDED libraries, not a hand-kept list
  assert.match(d, /readelf -d [^\n]*NEEDED/);
  assert.match(d, /^EXPOSE 5080$/m);
  assert.strictEqual(defaults().port, 5080);
});
