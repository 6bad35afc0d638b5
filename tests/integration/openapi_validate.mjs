// openapi_validate.mjs [FILE] — validates docs/openapi.json (or FILE) with a real
// OpenAPI validator, @apidevtools/swagger-parser (the OpenAPI 3.0/3.1 JSON Schema
// plus its semantic checks: $refs resolve, path parameters are declared, …), then
// checks the conventions the project's document keeps: unique operationIds, every
// error answer in the `{error, error_code}` shape, 401s that name the scheme
// (WWW-Authenticate), 429s that say when to retry (Retry-After).
// Prints one PASS/FAIL line per check and, last, `N passed, M failed`; exit 1 when
// anything failed.  Run from anywhere: the package resolves from tests/node_modules.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const file = process.argv[2] || path.join(here, "..", "..", "docs", "openapi.json");

let passed = 0;
let failed = 0;
function report(name, problems) {
  if (problems.length === 0) {
    passed++;
    console.log(`PASS ${name}`);
    return;
  }
  failed++;
  console.log(`FAIL ${name}`);
  for (const p of problems.slice(0, 50)) console.log(`    ${p}`);
  if (problems.length > 50) console.log(`    … and ${problems.length - 50} more`);
}

const VERBS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

function operations(doc) {
  const out = [];
  for (const [p, item] of Object.entries(doc.paths || {}))
    for (const v of VERBS) if (item[v]) out.push({ path: p, verb: v, op: item[v] });
  return out;
}

// Follows a local "#/components/…" reference (the document uses no remote ones).
function deref(doc, obj) {
  let o = obj;
  for (let i = 0; o && o.$ref && i < 10; i++) {
    const parts = o.$ref.replace(/^#\//, "").split("/");
    o = parts.reduce((acc, k) => (acc ? acc[k] : undefined), doc);
  }
  return o;
}

function refersToError(doc, schema) {
  const s = deref(doc, schema);
  if (!s) return false;
  if (schema && schema.$ref === "#/components/schemas/Error") return true;
  return (s.allOf || []).some((x) => refersToError(doc, x));
}

let doc;
try {
  doc = JSON.parse(readFileSync(file, "utf8"));
  report("document is JSON", []);
} catch (e) {
  report("document is JSON", [`${file}: ${e.message}`]);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
}

let SwaggerParser;
try {
  SwaggerParser = require("@apidevtools/swagger-parser");
} catch (e) {
  report("validator installed", [
    "@apidevtools/swagger-parser is missing from tests/node_modules (scripts/install-deps.sh --test)",
  ]);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
}

try {
  // validate() mutates what it is given (dereferences it): a copy.
  await SwaggerParser.validate(structuredClone(doc));
  report(`valid OpenAPI ${doc.openapi} (swagger-parser)`, []);
} catch (e) {
  report(`valid OpenAPI ${doc.openapi} (swagger-parser)`, String(e.message).split("\n"));
}

const ops = operations(doc);

{
  const seen = new Map();
  const problems = [];
  for (const { path: p, verb, op } of ops) {
    if (!op.operationId) problems.push(`${verb} ${p}: no operationId`);
    else if (seen.has(op.operationId))
      problems.push(`${verb} ${p}: operationId ${op.operationId} also on ${seen.get(op.operationId)}`);
    else seen.set(op.operationId, `${verb} ${p}`);
  }
  report("operationIds are present and unique", problems);
}

{
  const problems = [];
  for (const { path: p, verb, op } of ops)
    for (const [status, r0] of Object.entries(op.responses || {})) {
      if (!/^[45]/.test(status)) continue;
      const r = deref(doc, r0);
      const schema = r && r.content && r.content["application/json"] && r.content["application/json"].schema;
      if (!refersToError(doc, schema)) problems.push(`${verb} ${p} ${status}: not the Error shape`);
      const codes = schema && schema.allOf && schema.allOf[1] && schema.allOf[1].properties &&
        schema.allOf[1].properties.error_code && schema.allOf[1].properties.error_code.enum;
      if (!Array.isArray(codes) || codes.length === 0)
        problems.push(`${verb} ${p} ${status}: names no error_code`);
      else
        for (const c of codes)
          if (!/^[A-Z][A-Z0-9_]*$/.test(c)) problems.push(`${verb} ${p} ${status}: error_code ${c}`);
    }
  report("every 4xx/5xx answer is {error, error_code} with its codes", problems);
}

{
  const problems = [];
  for (const { path: p, verb, op } of ops) {
    const sec = op.security || doc.security || [];
    const r401 = deref(doc, (op.responses || {})["401"]);
    if (sec.length > 0) {
      if (!r401) problems.push(`${verb} ${p}: authenticated but no 401`);
      else if (!r401.headers || !r401.headers["WWW-Authenticate"])
        problems.push(`${verb} ${p}: 401 without WWW-Authenticate`);
    }
    const r429 = deref(doc, (op.responses || {})["429"]);
    if (r429 && (!r429.headers || !r429.headers["Retry-After"]))
      problems.push(`${verb} ${p}: 429 without Retry-After`);
  }
  report("401 names the scheme, 429 says when to retry", problems);
}

{
  // OpenAPI requires each template parameter to be declared `in: path`, required,
  // and no path parameter that the template lacks (swagger-parser checks this for
  // Swagger 2.0 only).
  const problems = [];
  for (const { path: p, verb, op } of ops) {
    const inPath = [...p.matchAll(/{([^}]+)}/g)].map((m) => m[1]);
    const declared = [...(doc.paths[p].parameters || []), ...(op.parameters || [])]
      .map((x) => deref(doc, x))
      .filter((x) => x && x.in === "path");
    for (const name of inPath) {
      const d = declared.find((x) => x.name === name);
      if (!d) problems.push(`${verb} ${p}: {${name}} not declared`);
      else if (d.required !== true) problems.push(`${verb} ${p}: {${name}} not required`);
    }
    for (const d of declared)
      if (!inPath.includes(d.name)) problems.push(`${verb} ${p}: path parameter ${d.name} not in the path`);
  }
  report("path parameters match the path template", problems);
}

{
  const schemes = (doc.components && doc.components.securitySchemes) || {};
  const problems = [];
  for (const { path: p, verb, op } of ops)
    for (const req of op.security || [])
      for (const name of Object.keys(req))
        if (!schemes[name]) problems.push(`${verb} ${p}: unknown security scheme ${name}`);
  report("security names declared schemes", problems);
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
