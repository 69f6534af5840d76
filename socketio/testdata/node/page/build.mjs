// Bundles the page (app.tsx with socket.io-client and React, development
// build) into OUTDIR with its index.html: node page/build.mjs OUTDIR
import { build } from "esbuild";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || "");
if (!process.argv[2]) throw new Error("usage: node page/build.mjs OUTDIR");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "app.tsx")],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"development"' },
  logLevel: "warning",
});
writeFileSync(
  join(out, "index.html"),
  `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Socket.IO app on rthub</title>
<style>body{font:14px system-ui,sans-serif;margin:1rem}#state{font-weight:bold}</style>
<script type="module" src="app.js"></script></head>
<body><div id="root"></div></body></html>
`,
);
