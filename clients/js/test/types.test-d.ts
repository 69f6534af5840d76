// Type tests, checked by tsc --noEmit -p test/tsconfig.json (TestTypes):
// correct code compiles, and every line after a @ts-expect-error must be a
// compile error (tsc fails if one is not).
import { RthubClient, type AnyContract, type ContractShape, type EventMeta, type JoinReply } from "@rthub/client";
import type { Ack, Contract, ContractFor, ReadingEvent } from "./contract";

declare function fetchToken(reason: string): Promise<string>;

const hub = new RthubClient<Contract>("/ws", { token: ({ reason }) => fetchToken(reason), rooms: ["staff", "device:42"] });

// Correct code compiles, with the payload types of the contract.
hub.on("sensor:data", (r, meta) => {
  const values: { [key: string]: number } = r.values;
  const parent: string | undefined = r.parent?.id;
  const room: string = meta.room;
  void values, parent, room;
});
hub.on("device:status", (s) => {
  const online: boolean = s.online;
  void online;
});
void hub.emit("alert:ack", "staff", { id: 3 });
void hub.emit("alert:ack", "device:7", { id: 3, note: "seen" });
const joined: Promise<JoinReply> = hub.join("device:7");
void joined;
void hub.leave("admin");
hub.presenceRoom("staff").onChange((people) => people.map((p) => p.name));

// A misspelt event name.
// @ts-expect-error "sensor:date" is not an event of the contract
hub.on("sensor:date", () => {});
// @ts-expect-error "alert:akc" is not an emit of the contract
void hub.emit("alert:akc", "staff", { id: 3 });
// @ts-expect-error a received event is not an emit
void hub.emit("sensor:data", "staff", { id: 3 });

// A wrong payload field type.
// @ts-expect-error id is a number
void hub.emit("alert:ack", "staff", { id: "3" });
// @ts-expect-error a required field is missing
void hub.emit("alert:ack", "staff", { note: "x" });
hub.on("sensor:data", (r) => {
  // @ts-expect-error device is a string
  const n: number = r.device;
  void n;
});

// A room outside the contract.
// @ts-expect-error "kitchen" is no room of the contract
void hub.join("kitchen");
// @ts-expect-error nor is "devices:7" (the pattern is device:*)
void hub.emit("alert:ack", "devices:7", { id: 1 });
// @ts-expect-error rooms in the options are checked too
new RthubClient<Contract>("/ws", { token: "t", rooms: ["kitchen"] });

// One role's view: staff receive sensor:data but may emit nothing and not join admin.
const staff = new RthubClient<ContractFor<"staff">>("/ws", { token: "t" });
staff.on("sensor:data", (r: ReadingEvent) => void r);
// @ts-expect-error staff may emit nothing
void staff.emit("alert:ack", "staff", { id: 1 });
// @ts-expect-error staff may not join admin
void staff.join("admin");

// Calls: the RPC name, its request and its result are checked.
const ack: Promise<Ack> = hub.call("device:set-threshold", { device: "d7", limit: 3 }, { timeout: 5000 });
void ack;
void hub.emit("alert:ack", "staff", { id: 3 }, { key: "ack-3" });
// @ts-expect-error "device:reboot" is not a call of the contract
void hub.call("device:reboot", { device: "d7" });
// @ts-expect-error limit is a number
void hub.call("device:set-threshold", { device: "d7", limit: "3" });
hub.call("device:set-threshold", { device: "d7", limit: 3 }).then((a) => {
  // @ts-expect-error the result is an Ack
  const s: string = a.old;
  void s;
});
// @ts-expect-error staff may call nothing
void staff.call("device:set-threshold", { device: "d7", limit: 3 });
// A contract without calls (generated before RPCs existed) has none.
declare const old: RthubClient<{ events: {}; emits: {}; rooms: string }>;
// @ts-expect-error no calls
void old.call("x", {});

// The default, untyped contract: anything goes, like rthub.js.
const loose = new RthubClient("ws://hub/ws", { token: async () => "t" });
loose.on("anything", (d: unknown, m: EventMeta) => void [d, m]);
void loose.emit("whatever", "any:room", { x: 1 });
void loose.call("any:rpc", { x: 1 }).then((r: unknown) => void r);
const any: RthubClient<AnyContract> = loose;
void any;

// The DOM's WebSocket fits the WebSocket option (Node: globalThis.WebSocket, or the ws package's).
new RthubClient("/ws", { token: "t", WebSocket });

// ContractShape is what a contract must be.
type Bad = { events: {}; emits: {} };
// @ts-expect-error a contract needs rooms
type _ = RthubClient<Bad>;
const shape: ContractShape = { events: {}, emits: {}, rooms: "" as string };
void shape;
