// A contract in the fixed shape github.com/org/rthub/contract generates
// (written by hand here, for the type tests of the client).

/** Payload of sensor:data. */
export interface ReadingEvent {
  device: string;
  /** RFC 3339 time */
  at: string;
  values: { [key: string]: number };
  note?: string;
  parent: Device | null;
}

export interface Device {
  id: string;
}

/** Payload of device:status. */
export interface StatusEvent {
  device: string;
  online: boolean;
}

/** Payload of alert:ack. */
export interface AlertAck {
  id: number;
  note?: string;
}

/** Every event the server may send: name → payload type. */
export interface Events {
  "sensor:data": ReadingEvent;
  "device:status": StatusEvent;
}

/** Every event some role may emit: name → payload type. */
export interface Emits {
  "alert:ack": AlertAck;
}

/** Request of device:set-threshold. */
export interface Threshold {
  device: string;
  limit: number;
}

/** Result of device:set-threshold. */
export interface Ack {
  device: string;
  old: number;
}

/** Every RPC some role may call: name → request and result types. */
export interface Calls {
  "device:set-threshold": { req: Threshold; res: Ack };
}

/** Role names of the policy. */
export type Role = "admin" | "staff";

/** Per role: the rooms it may join, the events it may receive and emit. */
export interface Roles {
  staff: { join: "staff" | `device:${string}`; receive: "sensor:data" | "device:status"; emit: never; call: never };
  admin: { join: "staff" | "admin" | `device:${string}`; receive: keyof Events; emit: "alert:ack"; call: "device:set-threshold" };
}

/** The contract of the whole hub: the type parameter of RthubClient. */
export interface Contract {
  events: Events;
  emits: Emits;
  rooms: Roles[Role]["join"];
  calls: Calls;
}

/** The contract as one role sees it. */
export type ContractFor<R extends Role> = {
  events: Pick<Events, Roles[R]["receive"]>;
  emits: Pick<Emits, Roles[R]["emit"]>;
  rooms: Roles[R]["join"];
  calls: Pick<Calls, Roles[R]["call"]>;
};
