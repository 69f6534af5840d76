// Builds the package into dist/ (or the directory given as the first
// argument): for each entry below, dist/<name>.js (ESM, readable),
// dist/<name>.min.js (minified bundle, only for the size check: not
// published) and, from tsc, dist/<name>.d.ts.
//
//   node scripts/build.mjs [outdir]
//
// Adding an entry (e.g. the React hooks, src/react.ts) is one line in
// ENTRIES, plus its export in package.json.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ENTRIES = {
  index: "src/index.ts",
  react: "src/react.ts",
  fallback: "src/fallback.ts",
};

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = resolve(process.argv[2] || join(root, "dist"));
const external = ["react", "react-dom", "react/jsx-runtime"];

// The other entries import the core as "./index.js" (so tsc checks them
// against src/index.ts): that import stays an import of dist/index.js, so
// the client class is defined once however many entries a page loads.
const coreExternal = {
  name: "core-external",
  setup(b) {
    b.onResolve({ filter: /^\.\/index\.js$/ }, (args) => (args.kind === "entry-point" ? undefined : { path: "./index.js", external: true }));
  },
};

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const common = {
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, src]) => [name, join(root, src)])),
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  external,
  plugins: [coreExternal],
  logLevel: "warning",
};
// Readable ESM: what the package ships, one bundled file per entry.
await build({ ...common, outdir: out, outExtension: { ".js": ".js" }, legalComments: "inline" });
// Minified: for the size budget (test/size.test.mjs).
await build({ ...common, outdir: out, outExtension: { ".js": ".min.js" }, minify: true, legalComments: "none" });
// Declarations.
execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.json"), "--outDir", out], {
  stdio: "inherit",
});
