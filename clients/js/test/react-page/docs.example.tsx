// The other TypeScript blocks of docs/react.md (doccheck compares each
// block with its region below); type-checked by TestReactPage with the
// rest of this directory (tsc -p test/react-page).
import { useState } from "react";
import { HubProvider, useConnectionState, useEvent, useHub, useRoom } from "@rthub/client/react";
import type { Reading } from "./contract";
import { Online } from "./online";

declare function fetchToken(reason: string): Promise<string>;
declare function reloadDevice(id: string): void;

// snippet:begin register
import type { Contract } from "./contract"; // generated from the Go events and policy

declare module "@rthub/client/react" {
  interface Register {
    contract: Contract;
  }
}
// snippet:end

// snippet:begin provider
export function App() {
  return (
    <HubProvider url="/ws" token={({ reason }) => fetchToken(reason)} options={{ heartbeat: 10_000 }}>
      <ConnectionBadge />
      <Online />
      <Device id="7" />
    </HubProvider>
  );
}
// snippet:end

// snippet:begin device
function Device({ id }: { id: string }) {
  const { joined, error } = useRoom(`device:${id}`, { onReset: () => reloadDevice(id) });
  const [last, setLast] = useState<Reading | null>(null);
  useEvent("sensor:data", (r, { room }) => room === `device:${id}` && setLast(r));
  if (error) return <p>device {id}: {error.message}</p>;
  return <p>device {id}: {joined ? `reading ${last?.n ?? "…"}` : "joining…"}</p>;
}
// snippet:end

// snippet:begin badge
function ConnectionBadge() {
  const { state, nextRetryAt } = useConnectionState();
  const wait = Math.max(0, Math.ceil((nextRetryAt - Date.now()) / 1000));
  return <span className={`conn-${state}`}>{state === "reconnecting" ? `reconnecting in ${wait} s` : state}</span>;
}
// snippet:end

// snippet:begin emit
export function AckButton({ alertId }: { alertId: number }) {
  const hub = useHub();
  return <button onClick={() => hub.emit("alert:ack", "staff", { id: alertId }).catch((e) => alert(e.message))}>Acknowledge</button>;
}
// snippet:end
