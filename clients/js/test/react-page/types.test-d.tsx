// Type tests of the hooks (tsc --noEmit -p test/react-page, run by
// TestReactPage): with the contract registered (app.tsx), every line
// marked ts-expect-error must be an error, or tsc fails.
import { createHubHooks, useEvent, useHub, usePresence, useRoom } from "@rthub/client/react";
import type { Contract } from "./contract";

export function Typed() {
  useEvent("sensor:data", (r) => r.values?.["temp"]?.toFixed(1));
  useEvent<"sensor:data">("sensor:data", (r) => r.n.toFixed());
  // @ts-expect-error: a misspelt event
  useEvent("sensor:date", () => {});
  // @ts-expect-error: no such field in the payload
  useEvent("sensor:data", (r) => r.temperature);
  useRoom("device:7");
  // @ts-expect-error: a room outside the contract
  useRoom("kitchen");
  usePresence(null);
  const hub = useHub();
  void hub.emit("alert:ack", "staff", { id: 1 });
  // @ts-expect-error: a wrong payload type
  void hub.emit("alert:ack", "staff", { id: "1" });
  return null;
}

// Hooks typed by a contract given explicitly rather than registered.
const hooks = createHubHooks<{ events: { "a:b": { x: number } }; emits: {}; rooms: "r" }>();
export function Explicit() {
  hooks.useEvent("a:b", (d) => d.x.toFixed());
  // @ts-expect-error: not an event of that contract
  hooks.useEvent("sensor:data", () => {});
  // @ts-expect-error: not a room of that contract
  hooks.useRoom("staff");
  return null;
}
void (null as unknown as Contract);
