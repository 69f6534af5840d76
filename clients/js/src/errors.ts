/**
 * Error of a command the server refused, or of the client itself.
 *
 * `code` is the server's error code (docs/protocol.md §2.4: "forbidden",
 * "bad_room", "bad_payload", "rate_limited", "unknown_event", "token_*", ...)
 * or one of the client's own: "disconnected" (the connection dropped before
 * the reply), "timeout" (no reply within `commandTimeout`), "closed" (the
 * client was closed or stopped), "overloaded" (too many commands pending).
 */
export class RthubError extends Error {
  /** The error code: the server's (protocol §2.4) or the client's own. */
  readonly code: string;

  /** @param code the error code; @param message a human-readable message (default: the code). */
  constructor(code: string, message?: string) {
    super(message || code);
    this.name = "RthubError";
    this.code = code;
  }
}

/**
 * What made the client stop for good because of who it is: a close with a
 * code of 4100–4199 (the server refused the token or identity, or
 * disconnected the user: reconnecting with the same sign-in cannot work), or
 * a token function that threw an error with `fatal` set.
 */
export interface AuthErrorInfo {
  /** The close code (4100–4199), or 0 for a fatal token error. */
  code: number;
  /** The close frame's reason (e.g. "token_signature_invalid"), or "". */
  reason: string;
  /** True for 4102: the token was revoked (a revocation closes the connection, and refuses a handshake with the token, with it); only a new sign-in helps. */
  revoked: boolean;
  /** The error the client stopped with (also in the "closed" state's info). */
  error: Error;
}

/** An error a token function throws to stop the client (no more attempts). */
export interface FatalError extends Error {
  /** Set to true to stop reconnecting. */
  fatal: true;
}
