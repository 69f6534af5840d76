import type { RthubClient } from "./client.js";
import type { AnyContract, PresenceEntry } from "./types.js";

interface Person {
  user: string;
  name: string;
  roles: string[];
  conns: Map<string, string>; // conn → viewing
}

interface OnlineData {
  user: string;
  name?: string;
  roles?: string[];
  seq?: number;
}

interface ViewingData {
  user: string;
  conn: string;
  viewing?: string;
}

/** The most people (and per-person seqs) a PresenceRoom keeps: the server caps its snapshot at 1000 by default. */
const MAX_PEOPLE = 10000;

/**
 * PresenceRoom keeps the list of people in a room with presence: a
 * snapshot (the "presence" command) after every connection, updated by the
 * room's user:online, user:offline and user:viewing events (protocol §2.3;
 * of two online/offline events of one person, the one with the higher seq
 * wins, whatever their order of arrival). Create it with
 * {@link RthubClient.presenceRoom}; close() it when done.
 */
export class PresenceRoom {
  /** The room. */
  readonly room: string;
  /** How many people are in the room (the server's count when its snapshot was truncated). */
  count = 0;
  /** Whether the server's latest snapshot was cut at its cap (then list() is partial). */
  truncated = false;

  private readonly client: RthubClient<AnyContract>;
  private users = new Map<string, Person>();
  private readonly fns = new Set<(list: PresenceEntry[]) => void>();
  // user → seq of the last online/offline event applied (protocol §2.3).
  private readonly seqs = new Map<string, number>();
  private readonly offs: (() => void)[];

  /** Use {@link RthubClient.presenceRoom}. */
  constructor(client: RthubClient<AnyContract>, room: string) {
    this.client = client;
    this.room = room;
    const mine =
      <T>(fn: (d: T) => void) =>
      (data: T, meta: { room: string }) => {
        if (meta.room !== room || !data || typeof data !== "object") return;
        fn(data);
        this.changed();
      };
    this.offs = [
      client.listen(
        "user:online",
        mine<OnlineData>((d) => {
          if (this.fresh(d) && !this.users.has(d.user)) this.put({ user: d.user, name: d.name || d.user, roles: d.roles || [], conns: new Map() });
        }),
      ),
      client.listen(
        "user:offline",
        mine<OnlineData>((d) => {
          if (this.fresh(d)) this.users.delete(d.user);
        }),
      ),
      client.listen(
        "user:viewing",
        mine<ViewingData>((d) => {
          let u = this.users.get(d.user);
          if (!u) this.put((u = { user: d.user, name: d.user, roles: [], conns: new Map() }));
          if (u.conns.size < 1000 || u.conns.has(d.conn)) u.conns.set(d.conn, d.viewing || "");
        }),
      ),
      client.onConnected(() => void this.reload()),
    ];
    if (client.state === "live" || client.state === "stale") void this.reload();
  }

  /** Fetches the snapshot again (done after every connection); errors are logged, not thrown. */
  async reload(): Promise<void> {
    try {
      const p = await this.client.presence(this.room);
      this.users = new Map();
      for (const u of p.users || []) {
        this.put({
          user: u.user,
          name: u.name || u.user,
          roles: u.roles || [],
          conns: new Map((u.conns || []).map((c) => [c.conn, c.viewing || ""])),
        });
      }
      this.count = p.count;
      this.truncated = !!p.truncated;
      this.changed();
    } catch (e) {
      this.client.log.warn(`rthub: presence ${this.room}: ${(e as Error).message}`);
    }
  }

  /** Calls fn(list) on every change; returns the function that unsubscribes. */
  onChange(fn: (list: PresenceEntry[]) => void): () => void {
    if (this.fns.size >= 1000) throw new RangeError("rthub: more than 1000 listeners");
    this.fns.add(fn);
    return () => void this.fns.delete(fn);
  }

  /** The people, sorted by name. */
  list(): PresenceEntry[] {
    return [...this.users.values()]
      .map((u) => ({
        user: u.user,
        name: u.name,
        roles: u.roles,
        conns: u.conns.size,
        viewing: [...new Set([...u.conns.values()].filter(Boolean))],
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The people viewing target (e.g. "device:42"). */
  viewersOf(target: string): PresenceEntry[] {
    return this.list().filter((u) => u.viewing.includes(target));
  }

  /** Stops following the room (the client stays connected). */
  close(): void {
    for (const off of this.offs) off();
    this.offs.length = 0;
    this.fns.clear();
  }

  private put(p: Person): void {
    if (this.users.size < MAX_PEOPLE || this.users.has(p.user)) this.users.set(p.user, p);
  }

  // fresh says whether an online/offline event is newer than the last one
  // applied for that person, and records its seq.
  private fresh(d: OnlineData): boolean {
    if (!d.seq) return true;
    if ((this.seqs.get(d.user) || 0) >= d.seq) return false; // older than what we applied
    this.seqs.delete(d.user);
    if (this.seqs.size >= MAX_PEOPLE) this.seqs.delete(this.seqs.keys().next().value!); // the oldest entry
    this.seqs.set(d.user, d.seq);
    return true;
  }

  private changed(): void {
    this.count = this.truncated ? Math.max(this.count, this.users.size) : this.users.size;
    const l = this.list();
    for (const fn of [...this.fns]) {
      try {
        fn(l);
      } catch (e) {
        this.client.log.error(e);
      }
    }
  }
}
