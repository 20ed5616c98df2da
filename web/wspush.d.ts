// TypeScript declarations for the wspush browser client (wspush.js / wspush.mjs).
// As a classic <script>, the same API is the global `wspush`.

export as namespace wspush;

export type State = "connecting" | "open" | "reconnecting" | "closed";

/** "auto" (the default): WebSocket first; after 3 failed opens in a row
 * (no open in between) Server-Sent Events for the rest of this client's
 * life (WebSocket again on the next page load). "websocket" or "sse": only
 * that one. SSE needs the server's GET /sse and the EventSource API. */
export type Transport = "auto" | "websocket" | "sse";

/** Why the state changed: the close code and reason that caused it, and for
 * "reconnecting" the delay in ms before the next attempt (absent while the
 * client waits for a subscribe() because nothing is subscribed; over SSE,
 * unsubscribing the last event closes the stream: code 1000, reason
 * "nothing subscribed"). Over SSE the server's `event: close` gives the
 * code and reason (the same codes as WebSocket closes); a stream that fails
 * or ends without one is 1006 "connection failed".
 *
 * A browser reports every refused handshake (403 origin not allowed, 404,
 * 503) and an unreachable server alike, as code 1006 before the socket
 * opens. After the third such failure in a row the client retries only
 * every 15-30 s until an attempt opens, and calls onstatechange once more
 * with "reconnecting" (the same state) and this `reason`:
 * "no connection after 3 attempts (origin not allowed? wrong URL? server
 * down?); retrying every 15-30 s". With transport "auto" the third such
 * WebSocket failure switches to SSE instead, with the reason "no WebSocket
 * connection after 3 attempts; trying Server-Sent Events", and three SSE
 * failures in a row then slow down as above. EventSource shows no HTTP
 * status either: every refused stream (400, 401, 403, 429, 503) is such a
 * failure, a rejected token included (no onAuthError before a stream
 * opens). */
export interface StateInfo {
  code: number;
  reason: string;
  delay?: number;
}

/** Passed to onclose: the server ended the client for good (close 4001,
 * a /drop with "reconnect": false). */
export interface CloseInfo {
  code: number;
  reason: string;
}

/** Passed to onAuthError: the close code (4401 token rejected, 4403 token of
 * another user) and the server's reason. A 4403 "event not allowed" is no
 * auth error: it rejects that subscribe() only. */
export interface AuthError {
  code: number;
  reason: string;
}

/** The rejection of subscribe()/unsubscribe(): `code` is the server's error
 * code (4400, 4401, 4403, 4429), the close code when the connection dropped
 * before the reply, 1000 after close(), 0 when unsubscribe() cancelled a
 * subscribe() not yet sent. Over SSE: 1006 when the new stream failed before
 * opening (the subscription is kept and retried; an unsubscribe still took
 * effect), or the code of the server's `event: close`. */
export interface WspushError extends Error {
  code: number;
}

/** message: in envelope mode the pushed value (a string stays a string, any
 * other JSON value arrives parsed) and event is the event it was pushed on;
 * with envelope: false, the raw frame text and event is null (every handler
 * gets every push). The same over SSE (which always asks the server for
 * envelopes; with envelope: false a JSON value is handed on as its compact
 * JSON text). */
export type Handler = (message: any, event: string | null) => void;

export interface Options {
  /** The token sent with every register. A function is called before every
   * connection attempt (the token-refresh hook); it may return a Promise.
   * When a function returns a JWT with `exp`, the client also renews it
   * before it expires: at 80 % of its life (`exp - iat`) or 30 s before
   * `exp`, whichever comes first, but not before half of it, counted from
   * `iat` (at once if that moment has passed) — by sending
   * `{"type": "refresh", "token": T}` on the open WebSocket, or by opening
   * a new SSE stream with the new token. */
  token?: string | (() => string | Promise<string>);
  /** Default true: the client adds envelope=1 to the URL and dispatches each
   * push to its event's handler. false: every handler gets every push. */
  envelope?: boolean;
  /** Default "auto". */
  transport?: Transport;
  /** The SSE endpoint. Default: the WebSocket URL with ws: -> http:, wss: ->
   * https:, path /sse, its query kept (but envelope), no fragment:
   * "wss://example.com/ws?x=1" -> "https://example.com/sse?x=1". The client
   * adds envelope=1, token=<token> (EventSource cannot send headers) and
   * event=E for each subscribed event. */
  sseUrl?: string;
  /** Token rejected (not retried); the client is then "closed". */
  onAuthError?: (error: AuthError) => void;
  /** Called on each change of `state` (not for the initial "connecting"),
   * and once more with "reconnecting" when retries slow down (StateInfo). */
  onstatechange?: (state: State, info?: StateInfo) => void;
  /** Close 4001: the server dropped this client with "reconnect": false; the
   * client is then "closed" and does not reconnect. (Close 4000, a plain
   * /drop, reconnects.) */
  onclose?: (info: CloseInfo) => void;
  /** With a server started with --history: a re-register (after a
   * reconnect) carried the event's last cursor as "since" (over SSE the
   * reopened stream carries since= the last cursor seen), and the server
   * said it cannot replay everything missed since (evicted, another server
   * process, unknown cursor). Only live messages follow: re-fetch the
   * event's state. When it can, the missed messages arrive first, in order,
   * each once, and this is not called. */
  onGap?: (event: string) => void;
}

export interface Client {
  readonly state: State;
  /** The transport in use now: "websocket", or "sse" (forced, or after
   * "auto" switched). */
  readonly transport: "websocket" | "sse";
  onstatechange: ((state: State, info?: StateInfo) => void) | null;
  onAuthError: ((error: AuthError) => void) | null;
  onclose: ((info: CloseInfo) => void) | null;
  onGap: ((event: string) => void) | null;
  /** Registers the event (now, or as soon as the connection opens) and keeps
   * it registered across reconnects. Subscribing again replaces the handler.
   * Resolves on the server's ok reply; rejects with a WspushError. Over SSE
   * the stream is reopened with the new set of events (once for all calls
   * in the same tick, or at the next retry while backing off) and this
   * resolves when it opens. */
  subscribe(event: string, handler: Handler): Promise<void>;
  /** Stops the event now (its handler is not called again) and resolves on
   * the server's reply, or at once when not connected. Over SSE: when the
   * stream without it opens (unsubscribing the last event closes it and
   * resolves). */
  unsubscribe(event: string): Promise<void>;
  /** Closes with code 1000 (or closes the stream) and never reconnects;
   * pending promises reject. */
  close(): void;
}

/** url: the WebSocket URL, e.g. "wss://example.com/ws" (also the base of
 * the default sseUrl). */
export function connect(url: string, options?: Options): Client;
