// The TypeScript blocks of docs/rpc.md: each region below is copied exactly
// into the doc (the root TestDocs checks it: internal/doccheck) and
// type-checked here by TestTypes (tsc --noEmit -p test/tsconfig.json).
/* eslint-disable */
import type { Contract } from "./contract";
declare function fetchToken(reason: string): Promise<string>;
declare function show(text: string): void;
declare const cancelButton: { onclick: (() => void) | null };

// snippet:begin call
import { RthubClient, RthubError } from "@rthub/client";

const hub = new RthubClient<Contract>("/ws", { token: ({ reason }) => fetchToken(reason) });
hub.connect();

const ac = new AbortController();
cancelButton.onclick = () => ac.abort(); // rejects with "canceled"; the server cancels the handler
try {
  // Checked against the contract: the RPC's name, its request and its result.
  const ack = await hub.call("device:set-threshold", { device: "d7", limit: 42 }, { timeout: 5000, signal: ac.signal });
  show(`threshold of ${ack.device} was ${ack.old}`);
} catch (e) {
  if (e instanceof RthubError && e.code === "unknown_device") show("no such device");
  else throw e; // "forbidden", "timeout", "canceled", "expired", ...
}
// snippet:end

// snippet:begin outbox
// An emit with options (here a key of the application's own) goes through the outbox:
// sent again after a reconnection until the server answers; the server runs it once.
await hub.emit("alert:ack", "staff", { id: 7 }, { key: "ack-7" });
hub.onExpired(({ op, name, key }) => show(`${op} ${name} (${key}) got no answer: try again later`));
console.log(hub.outbox); // { pending, sent, retries, expired }
// snippet:end
