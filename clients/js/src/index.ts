/**
 * @rthub/client: a typed client of rthub hubs (protocol rthub.v1) for
 * browsers and Node ≥ 20. See {@link RthubClient}.
 *
 * @packageDocumentation
 */
export { RthubClient } from "./client.js";
export { PresenceRoom } from "./presence.js";
export { RthubError, type AuthErrorInfo, type FatalError } from "./errors.js";
export { backoffDelay, shouldReconnect, isAuthClose, type BackoffOptions } from "./backoff.js";
export type {
  AnyContract,
  CallName,
  CallRequest,
  CallResult,
  ClientOptions,
  ConnState,
  ContractShape,
  EmitData,
  EmitName,
  EventData,
  EventHandler,
  EventMeta,
  EventName,
  ExpiredInfo,
  JoinOptions,
  JoinReply,
  OutboxStats,
  PresenceConn,
  PresenceEntry,
  PresenceSnapshot,
  PresenceUser,
  Room,
  SendOptions,
  Snapshot,
  StateInfo,
  StreamPosition,
  TokenFn,
  TokenReason,
  WebSocketCtor,
  WebSocketLike,
  Welcome,
} from "./types.js";
