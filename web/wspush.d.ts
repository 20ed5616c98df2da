// TypeScript declarations for the wspush browser client (wspush.js / wspush.mjs).
// As a classic <script>, the same API is the global `wspush`.

export as namespace wspush;

export type State = "connecting" | "open" | "reconnecting" | "closed";

/** Why the state changed: the close code and reason that caused it, and for
 * "reconnecting" the delay in ms before the next attempt (absent while the
 * client waits for a subscribe() because nothing is subscribed).
 *
 * A browser reports every refused handshake (403 origin not allowed, 404,
 * 503) and an unreachable server alike, as code 1006 before the socket
 * opens. After the third such failure in a row the client retries only
 * every 15-30 s until an attempt opens, and calls onstatechange once more
 * with "reconnecting" (the same state) and this `reason`:
 * "no connection after 3 attempts (origin not allowed? wrong URL? server
 * down?); retrying every 15-30 s". */
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
 * another user) and the server's reason. */
export interface AuthError {
  code: number;
  reason: string;
}

/** The rejection of subscribe()/unsubscribe(): `code` is the server's error
 * code (4400, 4401, 4403, 4429), the close code when the connection dropped
 * before the reply, 1000 after close(), 0 when unsubscribe() cancelled a
 * subscribe() not yet sent. */
export interface WspushError extends Error {
  code: number;
}

/** message: in envelope mode the pushed value (a string stays a string, any
 * other JSON value arrives parsed) and event is the event it was pushed on;
 * with envelope: false, the raw frame text and event is null. */
export type Handler = (message: any, event: string | null) => void;

export interface Options {
  /** The token sent with every register. A function is called before every
   * connection attempt (the token-refresh hook); it may return a Promise. */
  token?: string | (() => string | Promise<string>);
  /** Default true: the client adds envelope=1 to the URL and dispatches each
   * push to its event's handler. false: every handler gets every push. */
  envelope?: boolean;
  /** Token rejected (not retried); the client is then "closed". */
  onAuthError?: (error: AuthError) => void;
  /** Called on each change of `state` (not for the initial "connecting"),
   * and once more with "reconnecting" when retries slow down (StateInfo). */
  onstatechange?: (state: State, info?: StateInfo) => void;
  /** Close 4001: the server dropped this client with "reconnect": false; the
   * client is then "closed" and does not reconnect. (Close 4000, a plain
   * /drop, reconnects.) */
  onclose?: (info: CloseInfo) => void;
}

export interface Client {
  readonly state: State;
  onstatechange: ((state: State, info?: StateInfo) => void) | null;
  onAuthError: ((error: AuthError) => void) | null;
  onclose: ((info: CloseInfo) => void) | null;
  /** Registers the event (now, or as soon as the connection opens) and keeps
   * it registered across reconnects. Subscribing again replaces the handler.
   * Resolves on the server's ok reply; rejects with a WspushError. */
  subscribe(event: string, handler: Handler): Promise<void>;
  /** Stops the event now (its handler is not called again) and resolves on
   * the server's reply, or at once when not connected. */
  unsubscribe(event: string): Promise<void>;
  /** Closes with code 1000 and never reconnects; pending promises reject. */
  close(): void;
}

/** url: the WebSocket URL, e.g. "wss://example.com/ws". */
export function connect(url: string, options?: Options): Client;
