/**
 * The single entry point of everything a site socket sends. It is the HandlerTransport the
 * handshake, the checkpoint server and the upload receiver register on, and it applies the
 * rules every message must pass before any handler runs:
 *  - only site message types; unknown names, numeric events and malformed argument lists are refused;
 *  - before authentication only `hello` and `auth` (anything else closes the connection);
 *  - a per-socket token bucket (limits.maxMessagesPerSecond); persistent abuse closes the connection;
 *  - refusals are logged at warn level for authenticated sites only (a few per socket); for
 *    unauthenticated sockets at debug level: the caller summarises those (onAbuse), since an
 *    attacker can open any number of them;
 *  - every handler runs wrapped: a PatchFedError becomes an 'error' reply, anything else an
 *    'internal-error' reply plus a log line. The connection survives both.
 */
import type { Socket } from 'socket.io';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { REPLY_TYPES, errorReply, isSiteMessageType, type WireReply } from '../../shared/protocol/messages.ts';
import { runHandler, type HandlerTransport, type RequestHandler } from '../../shared/protocol/transport.ts';
import type { Log } from './log.ts';

/** Events a site sends without expecting an acknowledgement. */
export type EventHandler = (payload: unknown) => void;

export interface SocketRouterOptions {
  maxMessagesPerSecond: number;
  log: Log;
  /** Called when the router closes the connection because of abuse (for the event log). */
  onAbuse?: (reason: string) => void;
}

const PRE_AUTH_TYPES = new Set(['hello', 'auth']);
/** Violations (unknown types, missing acks, rate excess) tolerated before disconnecting. */
const MAX_STRIKES = 50;
/** Log lines per socket for refused messages; the rest are counted only. */
const MAX_LOGGED_REFUSALS = 5;

export class SocketRouter implements HandlerTransport {
  private readonly routes = new Map<string, RequestHandler>();
  private readonly events = new Map<string, EventHandler>();
  private authenticated = false;
  private strikes = 0;
  private refusalsLogged = 0;
  private tokens: number;
  private lastRefill = Date.now();
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly opts: SocketRouterOptions,
  ) {
    this.tokens = Math.max(1, opts.maxMessagesPerSecond);
    socket.onAny((event: unknown, ...args: unknown[]) => this.dispatch(event, args));
    // Sites may send an 'error' event; Node's EventEmitter would throw it with no listener.
    socket.on('error', () => {});
  }

  /** Lets the remaining site message types through (after a successful handshake). */
  markAuthenticated(): void {
    this.authenticated = true;
  }

  get isAuthenticated(): boolean {
    return this.authenticated;
  }

  handle(type: string, handler: RequestHandler): () => void {
    this.routes.set(type, handler);
    return () => {
      if (this.routes.get(type) === handler) this.routes.delete(type);
    };
  }

  onEvent(type: string, handler: EventHandler): () => void {
    this.events.set(type, handler);
    return () => {
      if (this.events.get(type) === handler) this.events.delete(type);
    };
  }

  /**
   * Stops dispatching and closes the connection shortly after, so an acknowledgement being
   * issued right now (e.g. auth-fail) still goes out first. Idempotent. `abuse` reports it.
   */
  close(reason: string, abuse = true): void {
    if (this.closed) return;
    this.closed = true;
    this.opts.log(this.authenticated ? 'warn' : 'debug', 'closing site connection', { socket: this.socket.id, reason });
    if (abuse) this.opts.onAbuse?.(reason);
    setTimeout(() => this.socket.disconnect(true), 50).unref();
  }

  private dispatch(event: unknown, args: unknown[]): void {
    try {
      this.dispatchUnsafe(event, args);
    } catch (e) {
      // Nothing above should throw; if it does, keep the process and the connection alive.
      this.opts.log('error', 'site message dispatch failed', { socket: this.socket.id, error: errorMessage(e) });
    }
  }

  private dispatchUnsafe(event: unknown, args: unknown[]): void {
    if (this.closed) return;
    const last = args[args.length - 1];
    const ack = typeof last === 'function' ? (last as (reply: WireReply) => void) : undefined;
    const data = ack ? args.slice(0, -1) : args;
    if (!this.takeToken()) {
      this.refuse(ack, 'rate-limited', `Too many messages (limit ${this.opts.maxMessagesPerSecond}/s); slow down.`);
      return;
    }
    if (!isSiteMessageType(event)) {
      this.refuse(ack, 'unknown-message-type', `Unknown message type '${String(event).slice(0, 64)}'.`);
      return;
    }
    if (!this.authenticated && !PRE_AUTH_TYPES.has(event)) {
      ack?.(errorReply({ code: 'not-authenticated', message: `'${event}' is not allowed before authentication (send hello, then auth).` }));
      this.close(`'${event}' sent before authentication`);
      return;
    }
    if (data.length !== 1) {
      this.refuse(ack, 'bad-message', `Message '${event}' must carry exactly one payload, got ${data.length}.`);
      return;
    }
    const payload = data[0];
    if (Object.prototype.hasOwnProperty.call(REPLY_TYPES, event)) {
      const handler = this.routes.get(event);
      if (!ack) {
        this.refuse(undefined, 'missing-ack', `Request '${event}' was sent without an acknowledgement callback.`);
        return;
      }
      if (!handler) {
        ack(errorReply({ code: 'unexpected-message', message: `'${event}' is not accepted on this connection now.` }));
        return;
      }
      // Acknowledged even when the connection is closing: an auth-fail must still reach the site.
      void runHandler(handler, payload, (e) => this.opts.log('error', `handler of '${event}' failed`, { socket: this.socket.id, error: errorMessage(e), stack: (e as Error)?.stack })).then(ack);
      return;
    }
    const handler = this.events.get(event);
    if (!handler) return; // a known event nobody listens to right now: nothing to do
    try {
      handler(payload);
    } catch (e) {
      if (!(e instanceof PatchFedError)) this.opts.log('error', `handler of '${event}' failed`, { socket: this.socket.id, error: errorMessage(e) });
      else this.noteRefusal(`'${event}' refused: ${e.message}`);
    }
  }

  private refuse(ack: ((reply: WireReply) => void) | undefined, code: string, message: string): void {
    ack?.(errorReply({ code, message }));
    this.noteRefusal(message);
    if (++this.strikes > MAX_STRIKES) this.close(`too many refused messages (last: ${message})`);
  }

  private noteRefusal(message: string): void {
    if (!this.authenticated) this.opts.log('debug', 'refused message before authentication', { socket: this.socket.id, reason: message });
    else if (this.refusalsLogged++ < MAX_LOGGED_REFUSALS) this.opts.log('warn', 'refused site message', { socket: this.socket.id, reason: message });
  }

  private takeToken(): boolean {
    const rate = this.opts.maxMessagesPerSecond;
    const now = Date.now();
    this.tokens = Math.min(Math.max(1, rate), this.tokens + ((now - this.lastRefill) / 1000) * rate);
    this.lastRefill = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
