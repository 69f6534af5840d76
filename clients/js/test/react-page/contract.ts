// The contract of the test hub of clients/js (testhub_test.go), written as
// github.com/org/rthub/contract would generate it: the React page is typed
// by it through the hooks' Register interface.

/** Payload of sensor:data. */
export interface Reading {
  device: string;
  n: number;
  values?: { [key: string]: number };
}

/** Payload of alert:ack. */
export interface AlertAck {
  id: number;
  note?: string;
}

/** Every event the server may send. */
export interface Events {
  "sensor:data": Reading;
}

/** Every event a client may emit. */
export interface Emits {
  "alert:ack": AlertAck;
}

/** The contract of the test hub. */
export interface Contract {
  events: Events;
  emits: Emits;
  rooms: "staff" | "admin" | `device:${string}`;
}
