// Bundles the React page (app.tsx, React bundled in, development build:
// StrictMode double-invokes effects only there) with the package as built
// by scripts/build.mjs, into a directory served by TestReactPage:
//
//   node test/react-page/build.mjs DIST OUTDIR
//
// DIST is the package's build (dist/index.js, dist/react.js); OUTDIR gets
// index.html and app.js.
import { build } from "esbuild";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const [dist, out] = process.argv.slice(2).map((p) => resolve(p));
if (!dist || !out) throw new Error("usage: node build.mjs DIST OUTDIR");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "app.tsx")],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  jsx: "automatic",
  sourcemap: "inline",
  define: { "process.env.NODE_ENV": '"development"' },
  // The page imports the package by its name; it gets the build under test.
  alias: { "@rthub/client/react": join(dist, "react.js"), "@rthub/client": join(dist, "index.js") },
  nodePaths: [join(here, "../../node_modules")],
  logLevel: "warning",
});
writeFileSync(
  join(out, "index.html"),
  `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>@rthub/client/react test page</title>
<style>body{font:14px system-ui,sans-serif;margin:1rem}#state{font-weight:bold}</style>
<script type="module" src="app.js"></script></head>
<body><div id="root"></div></body></html>
`,
);
