'use strict';
// Shared helpers of the chart tests (tests/chart/agent_test.js, server_test.js; run by
// tests/chart/run.sh through chart_test.js, which prints `N passed, M failed`).
//
// Rendering: build/chart/aurora-chart-render, a STAND-IN FOR `helm template` (Helm is not
// installable here) built from Debian's Go packages with the libraries Helm renders with:
// text/template, Sprig, sigs.k8s.io/yaml, gojsonschema (see tests/chart/render/main.go).
// Its Helm semantics are pinned down by the fixture chart tests/chart/fixtures/semantics.
//
// Kubernetes validation: every rendered object is checked against the JSON schema of its
// apiVersion/kind from the npm package kubernetes-models (ajv validators generated from
// the Kubernetes OpenAPI), made strict: a field the schema does not declare is an error
// (the OpenAPI schemas do not say additionalProperties: false, so the validator's own
// property lookups are traced and any key it never looked up is reported). A few
// API-server validations that are not in the schemas (names, labels, references between
// fields) are checked too. Kinds that are not in kubernetes-models (the Prometheus
// Operator's ServiceMonitor) are validated by tests/chart/schemas/*.json (see there).

const fs = require('fs');
const os = require('os');
const path = require('path');
const assert = require('assert');
const cp = require('child_process');
const YAML = require('yaml');
const Ajv = require('ajv');

const ROOT = path.resolve(__dirname, '..', '..');
const HERE = __dirname;
const RENDER = process.env.AURORA_CHART_RENDER || path.join(ROOT, 'build', 'chart', 'aurora-chart-render');
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'aurora-chart-'));
process.on('exit', () => fs.rmSync(TMP, { recursive: true, force: true }));

const NS = 'aurora';

const counts = { passed: 0, failed: 0 };
function test(name, fn) {
  try {
    fn();
    counts.passed++;
    console.log(`ok   - ${name}`);
  } catch (e) {
    counts.failed++;
    const msg = (e && e.message ? e.message : String(e)).split('\n').slice(0, 25).join('\n       ');
    console.log(`FAIL - ${name}\n       ${msg}`);
  }
}

// ------------------------------------------------------------------ helpers

function readYaml(file) {
  const text = fs.readFileSync(file, 'utf8');
  // YAML 1.1 like the Kubernetes/Helm Go decoders (yes/no/on/off are booleans there);
  // duplicate keys are errors.
  const docs = YAML.parseAllDocuments(text, { version: '1.1', uniqueKeys: true, strict: true });
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${path.relative(ROOT, file)}: ${d.errors[0].message}`);
  }
  return docs.map((d) => d.toJS());
}

function writeValues(name, obj) {
  const f = path.join(TMP, name + '.yaml');
  fs.writeFileSync(f, YAML.stringify(obj));
  return f;
}

const renderCache = new Map();
// Renders the chart (or another chart dir) with values files; returns
// { ok, status, stderr, text, objects: [{source, object}], notes, values }.
function render(files, opts = {}) {
  const chart = opts.chart;
  const valuesDir = opts.valuesDir || HERE;
  const key = JSON.stringify([chart, files, opts]);
  if (renderCache.has(key)) return renderCache.get(key);
  const id = String(renderCache.size);
  const json = path.join(TMP, `r${id}.json`);
  const notes = path.join(TMP, `r${id}.notes`);
  const vals = path.join(TMP, `r${id}.values.json`);
  const args = ['--name', opts.name, '--namespace', opts.namespace || NS,
    '--json', json, '--notes', notes, '--values-out', vals];
  if (opts.kubeVersion) args.push('--kube-version', opts.kubeVersion);
  for (const f of files) args.push('-f', path.isAbsolute(f) ? f : path.join(valuesDir, f));
  args.push(chart);
  const r = cp.spawnSync(RENDER, args, { encoding: 'utf8' });
  const res = { ok: r.status === 0, status: r.status, stderr: r.stderr || '', text: r.stdout || '' };
  if (res.ok) {
    res.objects = JSON.parse(fs.readFileSync(json, 'utf8'));
    res.notes = fs.readFileSync(notes, 'utf8');
    res.values = JSON.parse(fs.readFileSync(vals, 'utf8'));
  }
  renderCache.set(key, res);
  return res;
}

function mustRender(files, opts) {
  const r = render(files, opts);
  if (!r.ok) throw new Error(`render failed (exit ${r.status}): ${r.stderr.trim()}`);
  return r;
}

function mustFail(files, re, opts) {
  const r = render(files, opts);
  assert.ok(!r.ok, `render succeeded, expected an error matching ${re}`);
  assert.match(r.stderr, re);
  return r;
}

const objs = (r, kind) => r.objects.map((o) => o.object).filter((o) => !kind || o.kind === kind);
function one(r, kind) {
  const l = objs(r, kind);
  assert.strictEqual(l.length, 1, `expected one ${kind}, got ${l.length}`);
  return l[0];
}
const container = (r) => one(r, 'Deployment').spec.template.spec.containers[0];
function envMap(c) {
  const m = {};
  for (const e of c.env || []) {
    assert.ok(!(e.name in m), `duplicate env ${e.name}`);
    m[e.name] = e;
  }
  return m;
}
const envValue = (c, name) => (envMap(c)[name] || {}).value;

// ------------------------------------------------------------------ Kubernetes schemas

// Wraps obj so that every property the validator reads, and every object whose keys it
// enumerates (maps: labels, resources, data, ...), is recorded.
function traced(obj, p, seen, enumerated) {
  if (obj === null || typeof obj !== 'object') return obj;
  return new Proxy(obj, {
    get(t, k, recv) {
      const v = Reflect.get(t, k, recv);
      if (typeof k !== 'string') return v;
      seen.add(p + '\0' + k);
      return traced(v, p + '/' + k, seen, enumerated);
    },
    has(t, k) {
      if (typeof k === 'string') seen.add(p + '\0' + k);
      return Reflect.has(t, k);
    },
    ownKeys(t) {
      enumerated.add(p);
      return Reflect.ownKeys(t);
    },
  });
}

function modelFor(apiVersion, kind) {
  let mod;
  try {
    mod = require(`kubernetes-models/${apiVersion}`);
  } catch (e) {
    return null;
  }
  return mod[kind] || null;
}

// Strict schema validation of one object: [] or a list of error strings.
function validateK8s(obj) {
  const errors = [];
  if (!obj || typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string') {
    return ['object without apiVersion/kind'];
  }
  const Model = modelFor(obj.apiVersion, obj.kind);
  if (!Model) return [`no Kubernetes schema for ${obj.apiVersion} ${obj.kind}`];
  const seen = new Set();
  const enumerated = new Set();
  try {
    Model.prototype.validate.call(traced(obj, '', seen, enumerated));
  } catch (e) {
    errors.push(`schema: ${e.message}`);
    return errors; // unknown-field tracing is only complete for a valid object
  }
  (function walk(o, p) {
    if (o === null || typeof o !== 'object') return;
    if (Array.isArray(o)) return o.forEach((x, i) => walk(x, `${p}/${i}`));
    for (const k of Object.keys(o)) {
      if (!enumerated.has(p) && !seen.has(p + '\0' + k)) errors.push(`unknown field ${p}/${k}`);
      walk(o[k], `${p}/${k}`);
    }
  })(obj, '');
  return errors;
}

// API-server validations the OpenAPI schemas do not carry (subset).
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const CLUSTER_SCOPED = new Set(['ClusterRole', 'ClusterRoleBinding', 'Namespace', 'PriorityClass']);

function checkKey(k, what, errors) {
  const parts = k.split('/');
  const name = parts.pop();
  if (parts.length > 1 || (parts.length === 1 && (!DNS1123_SUBDOMAIN.test(parts[0]) || parts[0].length > 253))) {
    errors.push(`${what} key ${k}: bad prefix`);
  }
  if (!QUALIFIED_NAME.test(name) || name.length > 63) errors.push(`${what} key ${k}: bad name`);
}
function checkLabels(labels, what, errors) {
  for (const [k, v] of Object.entries(labels || {})) {
    checkKey(k, what, errors);
    if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v)) errors.push(`${what} ${k}: bad value ${JSON.stringify(v)}`);
  }
}
function isSvcName(n) {
  return n.length <= 15 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(n) && /[a-z]/.test(n) && !n.includes('--');
}
function matches(selector, labels) {
  return Object.entries(selector || {}).every(([k, v]) => labels && labels[k] === v);
}

function apiServerChecks(all) {
  const errors = [];
  for (const o of all) {
    const md = o.metadata || {};
    const what = `${o.kind}/${md.name}`;
    const nameRe = o.kind === 'Service' ? DNS1035_LABEL : DNS1123_SUBDOMAIN;
    if (!md.name || !nameRe.test(md.name) || md.name.length > (o.kind === 'Service' ? 63 : 253)) errors.push(`${what}: invalid name`);
    if (CLUSTER_SCOPED.has(o.kind)) {
      if (md.namespace) errors.push(`${what}: cluster-scoped object with a namespace`);
    } else if (md.namespace !== NS) {
      errors.push(`${what}: namespace ${md.namespace}, expected ${NS}`);
    }
    checkLabels(md.labels, `${what} label`, errors);
    for (const k of Object.keys(md.annotations || {})) checkKey(k, `${what} annotation`, errors);
    if (o.kind === 'Deployment') {
      const tpl = o.spec.template;
      if (!matches(o.spec.selector.matchLabels, tpl.metadata.labels)) errors.push(`${what}: selector does not match the pod labels`);
      checkLabels(tpl.metadata.labels, `${what} pod label`, errors);
      for (const k of Object.keys(tpl.metadata.annotations || {})) checkKey(k, `${what} pod annotation`, errors);
      const vols = new Set((tpl.spec.volumes || []).map((v) => v.name));
      if (vols.size !== (tpl.spec.volumes || []).length) errors.push(`${what}: duplicate volume names`);
      for (const c of tpl.spec.containers) {
        if (!DNS1123_LABEL.test(c.name)) errors.push(`${what}: container name ${c.name}`);
        const ports = new Map((c.ports || []).map((p) => [p.name, p.containerPort]));
        for (const p of c.ports || []) if (!isSvcName(p.name)) errors.push(`${what}: port name ${p.name}`);
        if (ports.size !== (c.ports || []).length) errors.push(`${what}: duplicate port names`);
        const seenEnv = new Set();
        for (const e of c.env || []) {
          if (!ENV_NAME.test(e.name)) errors.push(`${what}: env name ${e.name}`);
          if (seenEnv.has(e.name)) errors.push(`${what}: duplicate env ${e.name}`);
          seenEnv.add(e.name);
          if ('value' in e && 'valueFrom' in e) errors.push(`${what}: env ${e.name} has value and valueFrom`);
        }
        for (const m of c.volumeMounts || []) if (!vols.has(m.name)) errors.push(`${what}: mount of unknown volume ${m.name}`);
        for (const pr of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
          const port = c[pr] && c[pr].httpGet && c[pr].httpGet.port;
          if (typeof port === 'string' && !ports.has(port)) errors.push(`${what}: ${pr} names unknown port ${port}`);
          if (c[pr] && pr !== 'readinessProbe' && c[pr].successThreshold !== undefined && c[pr].successThreshold !== 1) {
            errors.push(`${what}: ${pr}.successThreshold must be 1`);
          }
        }
      }
    }
    if (o.kind === 'Service') {
      const dep = all.find((x) => x.kind === 'Deployment');
      if (!dep || !matches(o.spec.selector, dep.spec.template.metadata.labels)) errors.push(`${what}: selector matches no pod of the Deployment`);
      const podPorts = new Set(dep ? dep.spec.template.spec.containers.flatMap((c) => (c.ports || []).map((p) => p.name)) : []);
      for (const p of o.spec.ports) {
        if (typeof p.targetPort === 'string' && !podPorts.has(p.targetPort)) errors.push(`${what}: targetPort ${p.targetPort} is not a pod port`);
      }
    }
    if (o.kind === 'PodDisruptionBudget') {
      const dep = all.find((x) => x.kind === 'Deployment');
      if (!dep || !matches(o.spec.selector.matchLabels, dep.spec.template.metadata.labels)) errors.push(`${what}: selector matches no pod of the Deployment`);
      if ('minAvailable' in o.spec && 'maxUnavailable' in o.spec) errors.push(`${what}: both minAvailable and maxUnavailable`);
    }
    if (o.kind === 'ClusterRoleBinding') {
      const sa = o.subjects[0];
      const dep = all.find((x) => x.kind === 'Deployment');
      if (dep && sa.name !== dep.spec.template.spec.serviceAccountName) errors.push(`${what}: binds ${sa.name}, not the agent's ServiceAccount`);
    }
  }
  return errors;
}


// Helm's map merge of values (user wins, maps merge, lists replace).
function mergeInto(dst, src) {
  for (const [k, v] of Object.entries(src)) {
    const d = dst[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && d && typeof d === 'object' && !Array.isArray(d)) mergeInto(d, v);
    else dst[k] = v;
  }
  return dst;
}

// Paths of the leaves of a values tree: scalars, lists and empty maps.
function leaves(o, p = '', out = []) {
  if (o && typeof o === 'object' && !Array.isArray(o) && Object.keys(o).length) {
    for (const [k, v] of Object.entries(o)) leaves(v, p ? `${p}.${k}` : k, out);
  } else {
    out.push(p);
  }
  return out;
}
function at(o, p) {
  let cur = o;
  for (const k of p.split('.')) {
    if (!cur || typeof cur !== 'object' || !(k in cur)) return { present: false };
    cur = cur[k];
  }
  return { present: true, value: cur };
}

module.exports = {
  fs, path, assert, YAML, Ajv, ROOT, HERE, TMP, NS, counts, test, readYaml, writeValues,
  render, mustRender, mustFail, objs, one, container, envMap, envValue,
  validateK8s, apiServerChecks, mergeInto, leaves, at,
};
