/**
 * The minimal transport the transfer and handshake code runs over: a request that resolves
 * with the peer's acknowledgement, and a way to register request handlers. socket.io (client
 * or server side) and an in-memory fake both fit, so protocol logic is testable without sockets.
 */
import { PatchFedError } from '../errors.ts';
import { errorReply, type WireReply } from './messages.ts';

export interface RequestTransport {
  /**
   * Sends one message and resolves with the peer's acknowledgement payload (unvalidated).
   * Rejects when the connection drops or no acknowledgement arrives within `timeoutMs`.
   */
  request(type: string, payload: unknown, timeoutMs: number): Promise<unknown>;
}

export type RequestHandler = (payload: unknown) => Promise<WireReply> | WireReply;

export interface HandlerTransport {
  /** Routes requests of `type` to `handler`; returns a function that removes the route. */
  handle(type: string, handler: RequestHandler): () => void;
}

/** What we use of a socket.io Socket (server- or client-side). */
export interface SocketLike {
  timeout(ms: number): { emitWithAck(event: string, ...args: unknown[]): Promise<unknown> };
  // Method syntax: its parameters compare bivariantly, so socket.io's per-event listener types and
  // our handlers with concrete argument types both fit `unknown[]` without resorting to `any`.
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  off(event: string, listener: (...args: unknown[]) => void): unknown;
}

export function socketRequester(socket: SocketLike): RequestTransport {
  return { request: (type, payload, timeoutMs) => socket.timeout(timeoutMs).emitWithAck(type, payload) };
}

/**
 * Turns any thrown value into an error reply: PatchFedErrors keep their code and message,
 * anything else is reported as an internal error without details (logged via `onInternalError`).
 */
export async function runHandler(handler: RequestHandler, payload: unknown, onInternalError?: (e: unknown) => void): Promise<WireReply> {
  try {
    return await handler(payload);
  } catch (e) {
    if (e instanceof PatchFedError) return errorReply({ code: e.code, message: e.message });
    onInternalError?.(e);
    return errorReply({ code: 'internal-error', message: 'The peer failed to handle this message (internal error).' });
  }
}

export function socketHandlers(socket: SocketLike, onInternalError?: (e: unknown) => void): HandlerTransport {
  return {
    handle(type, handler) {
      const listener = (...args: unknown[]) => {
        const ack = args[args.length - 1];
        // A request without an acknowledgement callback cannot be answered; ignore it.
        if (args.length !== 2 || typeof ack !== 'function') return;
        void runHandler(handler, args[0], onInternalError).then((reply) => (ack as (r: WireReply) => void)(reply));
      };
      socket.on(type, listener);
      return () => socket.off(type, listener);
    },
  };
}

/**
 * An in-memory connection for tests and simulations: `client.request` reaches handlers
 * registered on `server`. `disconnect()` makes pending and future requests fail, as a dropped
 * socket would; `tamper` lets a test rewrite a payload in flight.
 */
export class MemoryLink {
  private handlers = new Map<string, RequestHandler>();
  private connected = true;
  private pending = new Set<(e: Error) => void>();
  /** Called on every request payload before delivery; may return a modified payload. */
  tamper: ((type: string, payload: unknown) => unknown) | null = null;
  /** Called after each handled request, with the reply; e.g. to disconnect mid-transfer. */
  onDelivered: ((type: string, reply: WireReply) => void) | null = null;

  readonly server: HandlerTransport = {
    handle: (type, handler) => {
      this.handlers.set(type, handler);
      return () => {
        if (this.handlers.get(type) === handler) this.handlers.delete(type);
      };
    },
  };

  readonly client: RequestTransport = {
    request: (type, payload, timeoutMs) =>
      new Promise<unknown>((resolve, reject) => {
        if (!this.connected) return reject(new Error('socket has been disconnected'));
        const handler = this.handlers.get(type);
        const fail = (e: Error) => {
          clearTimeout(timer);
          this.pending.delete(fail);
          reject(e);
        };
        const timer = setTimeout(() => fail(new Error('operation has timed out')), timeoutMs);
        this.pending.add(fail);
        const delivered = this.tamper ? this.tamper(type, payload) : payload;
        if (!handler) return; // like socket.io: nobody answers, the request times out
        void runHandler(handler, delivered).then((reply) => {
          if (!this.pending.has(fail)) return; // disconnected meanwhile: the ack is lost
          this.pending.delete(fail);
          clearTimeout(timer);
          this.onDelivered?.(type, reply);
          resolve(reply);
        });
      }),
  };

  disconnect(): void {
    this.connected = false;
    for (const fail of [...this.pending]) fail(new Error('socket has been disconnected'));
  }

  get isConnected(): boolean {
    return this.connected;
  }
}
