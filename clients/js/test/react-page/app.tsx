// The React page of TestReactPage (react_test.go): the hooks of
// @rthub/client/react in <StrictMode> (development React: every effect runs,
// is cleaned up and runs again), against a real hub. The page takes the
// hub's URL and a token from its query string and exposes what the test
// reads in window.probe; drive.mjs clicks and reads it in Chromium.
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { HubProvider, useConnectionState, useEvent, useHub, useRoom } from "@rthub/client/react";
import type { Contract } from "./contract";
import { Online } from "./online";

// The hooks are typed by the test hub's contract (see types.test-d.tsx).
declare module "@rthub/client/react" {
  interface Register {
    contract: Contract;
  }
}

/** What the test reads from the page. */
interface Probe {
  /** Runs of App's mount effect: 2 under StrictMode in development. */
  effects: number;
  /** The connection states the page went through, in order, without repeats. */
  states: string[];
  /** The n of every sensor:data event of device:7, in arrival order. */
  events: number[];
  /** The client's listeners now, by kind (event name, "state", "connected", "reset"): a leak shows as extra ones. */
  listeners?: () => Record<string, number>;
}

declare global {
  interface Window {
    probe: Probe;
  }
}

const probe: Probe = (window.probe = { effects: 0, states: [], events: [] });

function Status() {
  const { state, attempt } = useConnectionState();
  useEffect(() => {
    if (probe.states[probe.states.length - 1] !== state) probe.states.push(state);
  }, [state]);
  return (
    <p id="state" data-state={state}>
      {state}
      {attempt > 0 && ` (attempt ${attempt})`}
    </p>
  );
}

// Two of these share device:7: one join, left when both are gone.
function Device({ label }: { label: string }) {
  const { joined, error, resets } = useRoom("device:7");
  return (
    <li id={`room-${label}`} data-joined={String(joined)} data-resets={resets}>
      {label}: device:7 {joined ? "joined" : error ? `error: ${error.message}` : "joining"} · resets {resets}
    </li>
  );
}

function Readings() {
  const [ns, setNs] = useState<number[]>([]);
  useEvent("sensor:data", (r, { room }) => {
    if (room !== "device:7") return;
    probe.events.push(r.n);
    setNs((prev) => [...prev, r.n]);
  });
  return <p id="readings">{ns.join(",")}</p>;
}

// Exposes the client's listener counts (its private fields: a test's look
// inside) so that drive.mjs can check the hooks leave none behind.
function ListenerProbe() {
  const hub = useHub();
  useEffect(() => {
    const c = hub as unknown as { handlers: Map<string, Set<unknown>>; stateFns: Set<unknown>; connFns: Set<unknown>; resetFns: Set<unknown> };
    probe.listeners = () => {
      const out: Record<string, number> = { state: c.stateFns.size, connected: c.connFns.size, reset: c.resetFns.size };
      for (const [event, fns] of c.handlers) out[event] = fns.size;
      return out;
    };
  }, [hub]);
  return null;
}

function App() {
  const [shown, setShown] = useState({ a: true, b: true });
  useEffect(() => {
    probe.effects++;
  }, []);
  return (
    <main>
      <Status />
      <ListenerProbe />
      <section id="online">
        <h2>Online</h2>
        <Online />
      </section>
      <ul id="rooms">
        {shown.a && <Device label="a" />}
        {shown.b && <Device label="b" />}
      </ul>
      <button id="toggle-a" onClick={() => setShown((s) => ({ ...s, a: !s.a }))}>
        toggle a
      </button>
      <button id="toggle-b" onClick={() => setShown((s) => ({ ...s, b: !s.b }))}>
        toggle b
      </button>
      <h2>device:7 readings</h2>
      <Readings />
    </main>
  );
}

const q = new URLSearchParams(location.search);
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <HubProvider url={q.get("hub") || ""} token={q.get("token") || ""} options={{ backoff: { min: 200, max: 1000 } }}>
      <App />
    </HubProvider>
  </StrictMode>,
);
