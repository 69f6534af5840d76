// The TypeScript blocks of README.md: each region below is copied exactly
// into the README (the root TestDocs checks it: internal/doccheck) and type-checked here by
// TestTypes (tsc --noEmit -p test/tsconfig.json).
/* eslint-disable */
declare function fetchToken(reason: string): Promise<string>;
declare function draw(room: string, values: { [key: string]: number }): void;
declare function reloadRoom(room: string): void;
declare function showSignIn(why: string): void;
declare function render(html: string): void;
declare const badge: { textContent: string };

// snippet:begin quickstart
import { RthubClient, RthubError } from "@rthub/client";

const hub = new RthubClient("wss://example.com/ws", {
  token: ({ reason }) => fetchToken(reason), // before every connection and refresh
  rooms: ["device:42"], // joined, and rejoined after each reconnection
});
hub.onState((state) => (badge.textContent = state));
hub.on("sensor:data", (data, { room }) => console.log(room, data));
hub.connect();

try {
  await hub.join("device:7");
} catch (e) {
  if (e instanceof RthubError && e.code === "forbidden") console.log("not for you");
}
// snippet:end

// snippet:begin typed
import type { Contract } from "./contract"; // generated from the Go events and policy

const typed = new RthubClient<Contract>("/ws", { token: ({ reason }) => fetchToken(reason) });
typed.on("sensor:data", (r, { room }) => draw(room, r.values)); // r: ReadingEvent
await typed.emit("alert:ack", "staff", { id: 3 }); // checked: event, room and payload
// typed.emit("alert:ack", "staff", { id: "3" });  // error: Type 'string' is not assignable to type 'number'
// typed.on("sensor:date", ...);                    // error: not an event of the contract
// typed.join("kitchen");                           // error: not a room of the contract
// snippet:end

// snippet:begin role
import type { ContractFor } from "./contract";

const staff = new RthubClient<ContractFor<"staff">>("/ws", { token: ({ reason }) => fetchToken(reason) });
// staff.emit(...) does not compile: the policy lets staff emit nothing.
// snippet:end
void staff;

// snippet:begin lifecycle
hub.onReset((room) => reloadRoom(room)); // events were missed and cannot be replayed
hub.onConnected((welcome) => console.log("connected as", welcome.user)); // after every (re)connection
hub.onAuthError(({ code, reason }) => showSignIn(`${code} ${reason}`)); // 4100–4199: stopped for good
hub.onState((state, info) => {
  if (state === "reconnecting") badge.textContent = `retrying in ${Math.round((info.nextRetryAt - Date.now()) / 1000)} s`;
});
// snippet:end

// snippet:begin presence
const people = hub.presenceRoom("staff"); // a live list of who is there
people.onChange((list) => render(list.map((p) => `${p.name} (${p.viewing.join(", ")})`).join("<br>")));
await hub.viewing("device:42"); // what this tab shows; restored after reconnection
// later: people.close();
// snippet:end


// snippet:begin fallback
import { withFallback } from "@rthub/client/fallback";

const viaAnyNetwork = new RthubClient("/ws", {
  token: ({ reason }) => fetchToken(reason),
  // WebSocket while it works; after 2 failures in a row (not opening, or
  // closing within 5 s), the HTTP stream for a minute, then WebSocket again.
  WebSocket: withFallback({ onTransport: (t) => console.log("transport", t) }),
});
viaAnyNetwork.connect();
// snippet:end
