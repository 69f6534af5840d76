/** Waits between reconnection attempts (see {@link backoffDelay}). */
export interface BackoffOptions {
  /** The first wait, in ms (default 1000). */
  min?: number;
  /** The longest wait, in ms (default 30000). */
  max?: number;
  /** Each wait is the previous one times factor (default 2). */
  factor?: number;
  /** Relative jitter: each wait is randomly within ± jitter of its value (default 0.2). */
  jitter?: number;
}

const RECONNECT = [1001, 1006, 1011, 1012, 1013, 1014];

/**
 * Whether a close code means "reconnect" (docs/protocol.md §3): 1001, 1006,
 * 1011–1014 and 4000–4099 do; everything else (1000, 1002, 1003, 1007–1009,
 * 4100–4199, ...) does not.
 */
export function shouldReconnect(code: number): boolean {
  return RECONNECT.includes(code) || (code >= 4000 && code <= 4099);
}

/** Whether a close code says the server refused who the client is (4100–4199): stop and sign in again. */
export function isAuthClose(code: number): boolean {
  return code >= 4100 && code <= 4199;
}

/**
 * The wait before reconnection attempt n (from 0), in ms: min × factor^n,
 * at most max, ± jitter. With the defaults: 1, 2, 4, 8, 16, then 30 s,
 * each ± 20 %.
 *
 * @param rand a random number in [0, 1) (Math.random by default; tests pass their own).
 */
export function backoffDelay(n: number, opts: BackoffOptions = {}, rand: () => number = Math.random): number {
  const { min = 1000, max = 30000, factor = 2, jitter = 0.2 } = opts;
  const d = Math.min(max, min * Math.pow(factor, n));
  return Math.round(d * (1 + jitter * (2 * rand() - 1)));
}
