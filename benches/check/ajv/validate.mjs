// ajv side of benches/check.
//
//   node validate.mjs SCHEMA_DIR PAYLOADS.jsonl
//
// Compiles every *.schema.json in SCHEMA_DIR once (draft 2020-12, ajv-formats),
// keyed by the schema's `properties.type.const` (the contract name), then reads the
// JSON Lines file in large chunks, JSON.parse-s each line, picks the validator by the
// payload's `type` and validates it. A payload that does not parse, has no known
// `type`, or fails its schema counts as invalid.
//
// Prints one JSON object on stdout:
//   {"tool":"ajv","payloads":N,"invalid":K,"seconds":S,"payloads_per_s":R,...}
// where `seconds` covers reading + parsing + validating (not node start-up or schema
// compilation, which are reported separately as `compile_seconds`).
// Exits 1 when any payload is invalid (the first few are described on stderr).

import fs from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const [schemaDir, file] = process.argv.slice(2);
if (!schemaDir || !file) {
  console.error("usage: node validate.mjs SCHEMA_DIR PAYLOADS.jsonl");
  process.exit(2);
}

const t0 = performance.now();
const ajv = new Ajv2020({ allErrors: false, strict: true });
addFormats(ajv);
const validators = new Map();
for (const name of fs.readdirSync(schemaDir).sort()) {
  if (!name.endsWith(".schema.json")) continue;
  const schema = JSON.parse(fs.readFileSync(path.join(schemaDir, name), "utf8"));
  const contract = schema?.properties?.type?.const;
  if (typeof contract !== "string") {
    console.error(`${name}: no properties.type.const, skipped`);
    continue;
  }
  validators.set(contract, ajv.compile(schema));
}
if (validators.size === 0) {
  console.error(`no *.schema.json with properties.type.const in ${schemaDir}`);
  process.exit(2);
}
const t1 = performance.now();

let payloads = 0;
let invalid = 0;
let shown = 0;
const perType = {};
function report(line, why) {
  invalid++;
  if (shown < 5) {
    shown++;
    console.error(`invalid payload at line ${payloads}: ${why}: ${line.slice(0, 200)}`);
  }
}
function judge(line) {
  if (line.length === 0) return;
  payloads++;
  let value;
  try {
    value = JSON.parse(line);
  } catch (err) {
    report(line, `not JSON (${err.message})`);
    return;
  }
  const type = value !== null && typeof value === "object" ? value.type : undefined;
  const validate = validators.get(type);
  if (validate === undefined) {
    report(line, `no schema for type ${JSON.stringify(type)}`);
    return;
  }
  perType[type] = (perType[type] ?? 0) + 1;
  if (!validate(value)) report(line, ajv.errorsText(validate.errors));
}

// Read the whole file in 16 MiB chunks; decode each chunk up to its last newline in
// one go and split it, carrying the incomplete tail (as bytes) to the next chunk.
// (A >512 MiB file cannot be one JS string, hence no readFileSync(...).toString().)
const CHUNK = 16 << 20;
const fd = fs.openSync(file, "r");
let buf = Buffer.allocUnsafe(CHUNK);
let filled = 0;
for (;;) {
  if (filled === buf.length) {
    // A single line longer than the buffer: grow it.
    const bigger = Buffer.allocUnsafe(buf.length * 2);
    buf.copy(bigger, 0, 0, filled);
    buf = bigger;
  }
  const n = fs.readSync(fd, buf, filled, buf.length - filled, null);
  const end = filled + n;
  if (n === 0) {
    if (end > 0) judge(buf.toString("utf8", 0, end).replace(/\r$/, ""));
    break;
  }
  const lastNl = buf.lastIndexOf(10, end - 1);
  if (lastNl < 0) {
    filled = end;
    continue;
  }
  const text = buf.toString("utf8", 0, lastNl);
  let start = 0;
  for (;;) {
    const nl = text.indexOf("\n", start);
    const stop = nl < 0 ? text.length : nl;
    let line = text.slice(start, stop);
    if (line.endsWith("\r")) line = line.slice(0, -1);
    judge(line);
    if (nl < 0) break;
    start = nl + 1;
  }
  buf.copy(buf, 0, lastNl + 1, end);
  filled = end - (lastNl + 1);
}
fs.closeSync(fd);
const t2 = performance.now();

const seconds = (t2 - t1) / 1000;
console.log(
  JSON.stringify({
    tool: "ajv",
    payloads,
    invalid,
    per_type: perType,
    compile_seconds: +((t1 - t0) / 1000).toFixed(4),
    seconds: +seconds.toFixed(4),
    payloads_per_s: Math.round(payloads / seconds),
  }),
);
process.exit(invalid === 0 ? 0 : 1);
