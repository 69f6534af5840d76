// Validates the generated contract (../contract) with well-kept validators
// from npm; run by contract_test.go (TestContract_Validators), which passes a
// job file as the only argument:
//   {"contractDir": "...", "workDir": "...", "payloads": [{"event", "data", "valid"}]}
//
// 1. schema.json is a valid JSON Schema 2020-12 (Ajv2020, strict, with
//    ajv-formats), and each payload validates (or fails) as the Go side says.
// 2. asyncapi.json parses with @asyncapi/parser with zero errors.
// 3. tsc --noEmit --strict accepts contract.d.ts with a program using it, and
//    rejects a program with a misspelt event, a wrong payload field, a
//    payload field of the wrong type and a room no role may join, each on
//    the line expected.
// 4. The golden documents of package contract (job.golden: pairs of
//    {schema, asyncapi} paths, e.g. contract/testdata/sample.*: recursive
//    and anonymous types, RPCs) pass the checks of 1 and 2 too.
// Prints one line per check and PASS at the end; exits 1 on any failure.
import { readFileSync, writeFileSync, copyFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { Parser } from "@asyncapi/parser";

const here = dirname(fileURLToPath(import.meta.url));
const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
const fail = (msg) => { failed++; console.log("FAIL " + msg); };
const ok = (msg) => console.log("ok   " + msg);

// 1. JSON Schema.
{
  const schema = JSON.parse(readFileSync(join(job.contractDir, "schema.json"), "utf8"));
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  if (!ajv.validateSchema(schema)) {
    fail("schema.json is not a valid 2020-12 schema: " + ajv.errorsText(ajv.errors));
  } else {
    ok("schema.json validates against the 2020-12 meta-schema");
  }
  try {
    ajv.addSchema(schema);
    ajv.getSchema(schema.$id); // compiles it all: strict mode errors surface here
    ok("schema.json compiles (Ajv2020 strict)");
  } catch (e) {
    fail("schema.json does not compile: " + e.message);
  }
  for (const p of job.payloads) {
    const v = ajv.getSchema(schema.$id + "#/$defs/" + p.event);
    if (!v) { fail(`no schema for event ${p.event}`); continue; }
    const valid = v(p.data);
    const what = `${p.event} ${JSON.stringify(p.data).slice(0, 80)}`;
    if (valid === p.valid) {
      ok(`${p.valid ? "valid  " : "invalid"} ${what}${valid ? "" : " (" + ajv.errorsText(v.errors) + ")"}`);
    } else {
      fail(`${what}: Ajv says ${valid ? "valid" : "invalid (" + ajv.errorsText(v.errors) + ")"}, Go says ${p.valid ? "valid" : "invalid"}`);
    }
  }
}

// 2. AsyncAPI.
{
  const text = readFileSync(join(job.contractDir, "asyncapi.json"), "utf8");
  const { document, diagnostics } = await new Parser().parse(text);
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const d of errors) fail(`asyncapi.json: ${d.code}: ${d.message} at ${d.path.join("/")}`);
  for (const d of diagnostics.filter((d) => d.severity !== 0)) {
    console.log(`note asyncapi.json: ${d.code} (severity ${d.severity}): ${d.message} at ${d.path.join("/")}`);
  }
  if (!document) {
    fail("asyncapi.json: no document");
  } else if (errors.length === 0) {
    const msgs = document.allMessages().length, ops = document.allOperations().length;
    ok(`asyncapi.json parses (AsyncAPI ${document.version()}): ${msgs} messages, ${ops} operations, ` +
      `${diagnostics.length} warnings or hints`);
    if (document.version() !== "3.0.0") fail("asyncapi.json: version " + document.version());
  }
}

// 3. TypeScript.
{
  const tsc = join(here, "node_modules", ".bin", "tsc");
  copyFileSync(join(job.contractDir, "contract.d.ts"), join(job.workDir, "contract.d.ts"));
  // The client's typing, as @rthub/client declares it (docs/contract.md).
  const client = `export interface ContractShape { events: object; emits: object; rooms: string }
export type AnyContract = { events: Record<string, unknown>; emits: Record<string, unknown>; rooms: string };
export declare class RthubClient<C extends ContractShape = AnyContract> {
  constructor(url: string, opts: { token: string });
  on<K extends keyof C["events"] & string>(event: K, fn: (data: C["events"][K], meta: { room: string; offset?: number; epoch?: string }) => void): () => void;
  emit<K extends keyof C["emits"] & string>(event: K, room: C["rooms"], data: C["emits"][K]): Promise<unknown>;
  join(room: C["rooms"]): Promise<unknown>;
}
`;
  writeFileSync(join(job.workDir, "client.d.ts"), client);
  const good = `import type { Contract, ContractFor, Alert, ReadingEvent } from "./contract";
import { RthubClient } from "./client";
const hub = new RthubClient<Contract>("/ws", { token: "t" });
hub.on("sensor:data", (r: ReadingEvent) => { const t: number | undefined = r.values["temperature"]; void t; });
hub.on("alert:acked", (a: Alert) => { const by: string | undefined = a.acked_by; void by; });
hub.on("system:health", (h) => { const n: number | null = h.open_alerts; void n; });
void hub.emit("alert:ack", "staff", { id: 3 });
void hub.emit("alert:ack", "staff", { id: 3, note: "on my way" });
void hub.join("device:42");
const staff = new RthubClient<ContractFor<"staff">>("/ws", { token: "t" });
staff.on("alert:new", (a) => a.device);
void staff.emit("alert:ack", "staff", { id: 1 });
`;
  // Each line marked with the TypeScript error it must produce.
  const bad = [
    `import type { Contract, ContractFor } from "./contract";`,
    `import { RthubClient } from "./client";`,
    `const hub = new RthubClient<Contract>("/ws", { token: "t" });`,
    [`void hub.emit("alert:akc", "staff", { id: 3 });`, "TS2345"],            // misspelt event
    [`void hub.emit("alert:ack", "staff", { id: 3, colour: "red" });`, "TS2353"], // unknown payload field
    [`void hub.emit("alert:ack", "staff", { id: "3" });`, "TS2322"],          // wrong field type
    [`void hub.emit("alert:ack", "staff", { note: "x" });`, "TS2741"],        // missing id
    [`hub.on("sensor:dta", () => {});`, "TS2345"],                             // misspelt event
    [`hub.on("sensor:data", (r) => r.value);`, "TS2551"],                      // wrong payload field
    [`void hub.join("nowhere");`, "TS2345"],                                   // no role may join it
    `const staff = new RthubClient<ContractFor<"staff">>("/ws", { token: "t" });`,
    [`staff.on("audit:entry", () => {});`, "TS2345"],                          // staff does not receive it
    [`void staff.join("admin");`, "TS2345"],                                   // staff may not join admin
  ];
  writeFileSync(join(job.workDir, "good.ts"), good);
  writeFileSync(join(job.workDir, "bad.ts"), bad.map((l) => (Array.isArray(l) ? l[0] : l)).join("\n") + "\n");
  const run = (file) => spawnSync(tsc, ["--noEmit", "--strict", "--target", "es2022", "--module", "esnext",
    "--moduleResolution", "bundler", "--pretty", "false", file], { cwd: job.workDir, encoding: "utf8" });

  const g = run("good.ts");
  if (g.status === 0) ok("tsc --noEmit --strict accepts contract.d.ts and good.ts");
  else fail("tsc refuses good.ts:\n" + g.stdout + g.stderr);

  const b = run("bad.ts");
  const out = b.stdout + b.stderr;
  if (b.status === 0) fail("tsc accepts bad.ts");
  const errLines = new Map();
  for (const m of out.matchAll(/^bad\.ts\((\d+),\d+\): error (TS\d+)/gm)) errLines.set(Number(m[1]), m[2]);
  bad.forEach((l, i) => {
    const line = i + 1;
    if (!Array.isArray(l)) {
      if (errLines.has(line)) fail(`bad.ts:${line}: unexpected ${errLines.get(line)}: ${l}`);
      return;
    }
    if (errLines.get(line) === l[1]) ok(`tsc rejects bad.ts:${line} with ${l[1]}: ${l[0]}`);
    else fail(`bad.ts:${line}: want ${l[1]}, got ${errLines.get(line) ?? "no error"}: ${l[0]}\n${out}`);
  });
}

// 4. The golden documents of package contract.
for (const g of job.golden ?? []) {
  const schema = JSON.parse(readFileSync(g.schema, "utf8"));
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  if (!ajv.validateSchema(schema)) {
    fail(`${g.schema} is not a valid 2020-12 schema: ` + ajv.errorsText(ajv.errors));
  } else {
    try {
      ajv.addSchema(schema);
      ajv.getSchema(schema.$id);
      ok(`${g.schema} validates against the 2020-12 meta-schema and compiles (Ajv2020 strict)`);
    } catch (e) {
      fail(`${g.schema} does not compile: ` + e.message);
    }
  }
  const { document, diagnostics } = await new Parser().parse(readFileSync(g.asyncapi, "utf8"));
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const d of errors) fail(`${g.asyncapi}: ${d.code}: ${d.message} at ${d.path.join("/")}`);
  if (!document) fail(`${g.asyncapi}: no document`);
  else if (document.version() !== "3.0.0") fail(`${g.asyncapi}: version ${document.version()}`);
  else if (errors.length === 0) ok(`${g.asyncapi} parses (AsyncAPI ${document.version()}): ${document.allMessages().length} messages`);
}

if (failed > 0) {
  console.log(`${failed} check(s) failed`);
  process.exit(1);
}
console.log("PASS");
