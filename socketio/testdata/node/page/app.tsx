// A React page written as a Socket.IO app would be, against rthub's
// socketio gateway: socket.io-client v4 as is, a usePresence() hook over
// the presence events the gateway forwards (user:online, user:offline) and
// the rthub:presence query, and a readings list. Bundled by build.mjs and
// driven in Chromium by browser.mjs (TestBrowser in node_test.go).
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { io, type Socket } from "socket.io-client";

type Person = { user: string; name?: string };
type PresenceReply = { ok: true; data: { users: Person[] } } | { ok: false; error: { code: string } };

const params = new URLSearchParams(location.search);
// Same origin: the page is served by the server that serves /socket.io/.
// snippet:begin connect
const socket: Socket = io({ auth: { token: params.get("token") }, reconnectionDelay: 200, reconnectionDelayMax: 500 });
// snippet:end
(window as unknown as { socket: Socket }).socket = socket;
// A refusal can come before React mounts: remember it from the start.
type Refusal = Error & { data?: { code?: string } };
let refusedWith: string | undefined;
socket.on("connect_error", (err: Refusal) => (refusedWith = err.data?.code));

// usePresence lists the people in a room: the list from the server on
// every (re)connect, then the online and offline events.
// snippet:begin usePresence
export function usePresence(socket: Socket, room: string): string[] {
  const [people, setPeople] = useState<Map<string, string>>(new Map());
  useEffect(() => {
    const load = () =>
      socket.emit("rthub:presence", room, (res: PresenceReply) => {
        if (res.ok) setPeople(new Map(res.data.users.map((u) => [u.user, u.name ?? u.user])));
      });
    const online = (u: Person) => setPeople((prev) => new Map(prev).set(u.user, u.name ?? u.user));
    const offline = (u: Person) =>
      setPeople((prev) => {
        const next = new Map(prev);
        next.delete(u.user);
        return next;
      });
    socket.on("connect", load);
    socket.on("user:online", online);
    socket.on("user:offline", offline);
    if (socket.connected) load();
    return () => {
      socket.off("connect", load);
      socket.off("user:online", online);
      socket.off("user:offline", offline);
    };
  }, [socket, room]);
  return [...people.values()].sort();
}
// snippet:end

// examples shows the calls docs/socketio.md describes (type-checked, not
// run: browser.mjs makes the same calls).
export async function examples(socket: Socket, draw: (r: unknown) => void, refreshToken: () => Promise<string>) {
  // snippet:begin calls
  socket.on("sensor:data", (reading) => draw(reading)); // events of every room the connection is in
  const joined = await socket.emitWithAck("rthub:join", "device:7"); // {ok: true, data: {room, offset, epoch}}
  if (!joined.ok) console.warn(joined.error.code); // "forbidden", "too_many_rooms", …
  const sent = await socket.emitWithAck("alert:ack", "staff", { id: 3 }); // room, then data: the hub's emit
  if (!sent.ok) console.warn(sent.error.code, sent.error.field); // "bad_payload", "/id"
  const sum = await socket.emitWithAck("math:sum", { A: 2, B: 3 }); // an RPC: {ok: true, data: {Sum: 5}}
  socket.on("connect_error", async (err: Error & { data?: { code: string; status: number } }) => {
    if (err.data?.code === "token_expired") {
      socket.auth = { token: await refreshToken() };
      socket.connect(); // a refused connect is not retried by socket.io-client
    }
  });
  socket.on("rthub:disconnect", ({ code, reason }) => console.info("hub closed", code, reason));
  // snippet:end
  return sum;
}

function useReadings(socket: Socket): number[] {
  const [ns, setNs] = useState<number[]>([]);
  useEffect(() => {
    const on = (d: { n: number }) => setNs((prev) => [...prev, d.n]);
    socket.on("sensor:data", on);
    return () => {
      socket.off("sensor:data", on);
    };
  }, [socket]);
  return ns;
}

function useConnection(socket: Socket) {
  const [state, setState] = useState(socket.connected ? "connected" : refusedWith ? `error:${refusedWith}` : "connecting");
  const [recovered, setRecovered] = useState(false);
  useEffect(() => {
    const up = () => {
      setState("connected");
      setRecovered(socket.recovered);
    };
    const down = () => setState("disconnected");
    const refused = (err: Refusal) => setState(`error:${err.data?.code}`);
    socket.on("connect", up);
    socket.on("disconnect", down);
    socket.on("connect_error", refused);
    if (socket.connected) up();
    else if (refusedWith) setState(`error:${refusedWith}`); // between the first render and now
    return () => {
      socket.off("connect", up);
      socket.off("disconnect", down);
      socket.off("connect_error", refused);
    };
  }, [socket]);
  return { state, recovered };
}

function App() {
  const online = usePresence(socket, "staff");
  const readings = useReadings(socket);
  const { state, recovered } = useConnection(socket);
  return (
    <>
      <h1>Socket.IO app on rthub</h1>
      <p id="state" data-state={state} data-recovered={String(recovered)}>
        {state}
        {recovered ? " (recovered)" : ""}
      </p>
      <h2>Online in staff</h2>
      <ul id="online">
        {online.map((n) => (
          <li key={n}>{n}</li>
        ))}
      </ul>
      <h2>Readings</h2>
      <p id="readings">{readings.join(",")}</p>
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
