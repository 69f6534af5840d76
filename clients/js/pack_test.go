package js_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub/internal/testenv"
)

// TestPack packs the package (npm pack of package.json, README.md and the
// build), installs the tarball offline into a fresh project, imports it
// from an ES module that node runs (the exports resolve, the client
// works as far as it can without a hub) and type-checks a TypeScript file
// importing it with moduleResolution bundler and node16 (the types ship
// and resolve), typed by the contract the IoT example generates: a
// misspelt event or payload field, a wrong field type and a room outside
// the contract must each fail to compile (@ts-expect-error).
func TestPack(t *testing.T) {
	node, dir := tools(t)
	npm := testenv.Tool(t, "npm", "install npm (Debian package npm)")
	dist := built(t)
	tmp := t.TempDir()
	env := []string{"npm_config_cache=" + filepath.Join(tmp, "npm-cache"), "npm_config_update_notifier=false"}

	// The package as npm would pack it after a build: its files, in a copy.
	stage := filepath.Join(tmp, "stage")
	copyFile(t, filepath.Join(dir, "package.json"), filepath.Join(stage, "package.json"))
	copyFile(t, filepath.Join(dir, "README.md"), filepath.Join(stage, "README.md"))
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		copyFile(t, filepath.Join(dist, e.Name()), filepath.Join(stage, "dist", e.Name()))
	}
	out := run(t, stage, env, time.Minute, npm, "pack", "--json", "--pack-destination", tmp, "--no-audit", "--no-fund")
	var packed []struct {
		Filename string `json:"filename"`
		Files    []struct {
			Path string `json:"path"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &packed); err != nil || len(packed) != 1 {
		t.Fatalf("npm pack --json: %v\n%s", err, out)
	}
	var files []string
	for _, f := range packed[0].Files {
		files = append(files, f.Path)
	}
	for _, want := range []string{"package.json", "README.md", "dist/index.js", "dist/index.d.ts", "dist/client.d.ts", "dist/react.js", "dist/react.d.ts", "dist/fallback.js", "dist/fallback.d.ts"} {
		if !slices.Contains(files, want) {
			t.Errorf("the tarball lacks %s: %v", want, files)
		}
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".min.js") || strings.HasPrefix(f, "src/") || strings.HasPrefix(f, "test/") {
			t.Errorf("the tarball holds %s, which is not to be published", f)
		}
	}
	tarball := filepath.Join(tmp, packed[0].Filename)
	t.Logf("%s: %v", packed[0].Filename, files)

	// A fresh project installs it offline: no runtime dependency to fetch.
	app := filepath.Join(tmp, "app")
	writeFile(t, filepath.Join(app, "package.json"), `{"name":"app","private":true,"type":"module"}`)
	run(t, app, env, time.Minute, npm, "install", "--offline", "--no-audit", "--no-fund", tarball)

	writeFile(t, filepath.Join(app, "main.mjs"), `import { RthubClient, RthubError, PresenceRoom, backoffDelay, shouldReconnect } from "@rthub/client";
import pkg from "@rthub/client/package.json" with { type: "json" };
if (pkg.name !== "@rthub/client" || pkg.dependencies) throw new Error("package.json: " + JSON.stringify(pkg));
// The React entry resolves (loading it needs React, which this project lacks: an optional peer).
if (!import.meta.resolve("@rthub/client/react").endsWith("/dist/react.js")) throw new Error("@rthub/client/react resolves to " + import.meta.resolve("@rthub/client/react"));
const { withFallback, httpStream } = await import("@rthub/client/fallback");
if (typeof withFallback() !== "function" || typeof httpStream() !== "function") throw new Error("fallback entry");
if (backoffDelay(5, { jitter: 0 }) !== 30000 || !shouldReconnect(4002) || shouldReconnect(4101)) throw new Error("helpers");
if (typeof PresenceRoom !== "function" || new RthubError("forbidden").code !== "forbidden") throw new Error("classes");
class NoWS { constructor() { throw new Error("no network here"); } }
const c = new RthubClient("ws://127.0.0.1:9/ws", { token: "t", WebSocket: NoWS, commandTimeout: 50 });
c.connect();
c.close();
await c.ping().then(() => { throw new Error("ping after close"); }, (e) => { if (e.code !== "closed") throw e; });
console.log("imported", pkg.version, c.state);
`)
	if out := run(t, app, env, time.Minute, node, "main.mjs"); !strings.Contains(out, "imported 0.1.0 closed") {
		t.Fatalf("main.mjs: %s", out)
	}

	// The contract the IoT example generates from its Go events and policy
	// (examples/iotserver/contract, kept fresh by its TestContract), as an
	// application would commit it next to its code.
	copyFile(t, filepath.Join(dir, "..", "..", "examples", "iotserver", "contract", "contract.d.ts"), filepath.Join(app, "contract.d.ts"))
	writeFile(t, filepath.Join(app, "check.ts"), `import { RthubClient } from "@rthub/client";
import type { Contract, ContractFor } from "./contract.js";

const hub = new RthubClient<Contract>("/ws", { token: async ({ reason }) => reason });
hub.on("sensor:data", (r, { room }) => console.log(room, r.device, r.values["temp"]! + 1));
hub.on("alert:acked", (a) => console.log(a.id + 1, a.acked_by));
void hub.emit("alert:ack", "staff", { id: 3, note: "on it" });
// @ts-expect-error a wrong payload field type
void hub.emit("alert:ack", "staff", { id: "3" });
// @ts-expect-error a misspelt payload field
void hub.emit("alert:ack", "staff", { id: 3, note_: "x" });
// @ts-expect-error a misspelt event
hub.on("sensor:dta", () => {});
// @ts-expect-error an event the server sends but clients may not emit
void hub.emit("sensor:data", "staff", { device: "d", at: "", values: {} });
// @ts-expect-error a room outside the contract
void hub.join("kitchen");

const staff = new RthubClient<ContractFor<"staff">>("/ws", { token: "t" });
void staff.join("device:7");
// @ts-expect-error staff may not join admin
void staff.join("admin");
`)
	tsc := filepath.Join(dir, "node_modules", "typescript", "bin", "tsc")
	for _, mode := range []struct{ module, resolution string }{{"esnext", "bundler"}, {"node16", "node16"}} {
		cfg := `{"compilerOptions":{"strict":true,"noEmit":true,"target":"es2022","lib":["es2022","dom"],"types":[],` +
			`"noUncheckedIndexedAccess":true,"module":"` + mode.module + `","moduleResolution":"` + mode.resolution + `"},"files":["check.ts"]}`
		writeFile(t, filepath.Join(app, "tsconfig."+mode.resolution+".json"), cfg)
		run(t, app, env, time.Minute, node, tsc, "-p", "tsconfig."+mode.resolution+".json")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b))
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
