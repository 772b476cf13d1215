/**
 * The site's connection to the coordinator: one socket.io client socket (websocket only),
 * authenticated with the challenge–response handshake against the PINNED coordinator key after
 * every (re)connect, and reconnected forever with exponential backoff and jitter — whether the
 * coordinator restarted, the network dropped, or authentication was refused.
 *
 * Work that needs the coordinator awaits `ready()`, which resolves with a request transport once
 * the connection is authenticated. Everything sent goes through `send` / that transport, and only
 * site message types are ever put on the wire.
 *
 * Operators must not be left guessing: every failed attempt is logged at warn level with what
 * failed and why (refused, TLS verification, HTTP 404, a plain/TLS mix-up) and when the next try
 * is. A refusal that retrying cannot fix (site not enrolled, wrong pinned key, another protocol
 * version) is reported as permanent and retried only every PERMANENT_RETRY_MS.
 */
import { readFileSync } from 'node:fs';
import { io, type Socket } from 'socket.io-client';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import type { KeyPairs, PublicKeys } from '../../shared/crypto/keys.ts';
import { encodeMessage, type Message, type SiteMessageType } from '../../shared/protocol/messages.ts';
import { authenticateSite } from '../../shared/protocol/session.ts';
import { socketRequester, type RequestTransport } from '../../shared/protocol/transport.ts';

export type ClientLogLevel = 'debug' | 'info' | 'warn' | 'error';
export type ClientLog = (level: ClientLogLevel, msg: string, fields?: Record<string, unknown>) => void;

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 1000, maxMs: 60_000 };

/** Authentication refusals that no retry can fix: the configuration on one side must change. */
export const PERMANENT_AUTH_FAILURES: ReadonlySet<string> = new Set(['unknown-site', 'coordinator-key-mismatch', 'protocol-version-mismatch', 'handshake-bad-signature']);
/** Retry interval after a permanent refusal (for clients that keep running, e.g. under test). */
export const PERMANENT_RETRY_MS = 10 * 60_000;

const TLS_VERIFY_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Why a socket.io connect attempt failed, in words an operator can act on. socket.io-client
 * wraps the cause: `description` is the transport's ErrorEvent, whose `error` carries the errno
 * or TLS code.
 */
export function describeConnectError(e: unknown, url: string): { kind: 'refused' | 'dns' | 'tls' | 'protocol-mismatch' | 'http-status' | 'timeout' | 'other'; reason: string } {
  const description = (e as { description?: unknown } | null)?.description;
  const cause = (description as { error?: unknown } | null)?.error ?? description;
  const code = typeof (cause as { code?: unknown } | null)?.code === 'string' ? String((cause as { code: string }).code) : '';
  const text = (cause as { message?: unknown } | null)?.message ?? (description as { message?: unknown } | null)?.message ?? (e as { message?: unknown } | null)?.message ?? String(e);
  const [firstLine = ''] = String(text).split('\n');
  const message = firstLine.slice(0, 200);
  const secure = url.startsWith('https:');
  if (code === 'ECONNREFUSED') return { kind: 'refused', reason: `connection refused (${message}): is the coordinator running, and is the port right?` };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { kind: 'dns', reason: `host not found (${message})` };
  if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || message === 'timeout') return { kind: 'timeout', reason: `no answer (${message})` };
  if (TLS_VERIFY_CODES.has(code) || /certificate/i.test(message)) {
    return { kind: 'tls', reason: `TLS certificate verification failed (${code || 'TLS'}: ${message}): set federation.caCertificate to the coordinator's certificate or its CA` };
  }
  if (code === 'EPROTO' || /wrong version number|ssl/i.test(message)) {
    return { kind: 'protocol-mismatch', reason: secure ? `TLS handshake failed (${message}): does the coordinator serve plain HTTP? try an http:// URL` : `protocol error (${message})` };
  }
  if (!secure && (code === 'ECONNRESET' || /socket hang up/i.test(message))) {
    return { kind: 'protocol-mismatch', reason: `the connection was closed at once (${message}): does the coordinator serve HTTPS? try an https:// URL` };
  }
  const status = /Unexpected server response: (\d{3})/.exec(message);
  if (status) {
    const hint = status[1] === '404' ? ': something answers there, but not a PatchFed coordinator (wrong port or path?)' : '';
    return { kind: 'http-status', reason: `HTTP ${status[1]}${hint}` };
  }
  if (/connection limit/i.test(message)) return { kind: 'other', reason: message };
  return { kind: 'other', reason: code ? `${code}: ${message}` : message };
}

function clock(ms: number): string {
  return new Date(Date.now() + ms).toISOString().slice(11, 19);
}

/** "Equal jitter": half the exponential delay fixed, half random, so restarts do not stampede. */
export function backoffDelay(failures: number, backoff: Backoff, random: () => number = Math.random): number {
  const exp = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(failures, 30));
  return Math.round(exp / 2 + (exp / 2) * random());
}

export interface ConnectionOptions {
  url: string;
  siteId: string;
  keys: KeyPairs;
  coordinatorPublicKey: PublicKeys;
  caCertificate?: string;
  backoff: Backoff;
  agentVersion: string;
  log: ClientLog;
  /** Instrumentation hook (tests): sees the socket once, before it first connects. */
  instrumentSocket?: (socket: Socket) => void;
}

export interface ConnectionEvents {
  authenticated(sessionId: string): void;
  disconnected(reason: string): void;
  /** `permanent`: retrying cannot help (see PERMANENT_AUTH_FAILURES). */
  authFailed(error: PatchFedError, permanent: boolean): void;
  /** A coordinator push (experiment, round-task, ...): payload unvalidated; `sessionId` is the session it came on. */
  message(type: string, payload: unknown, sessionId: string): void;
}

const COORDINATOR_PUSHES = ['experiment', 'round-task', 'round-cancel', 'experiment-complete', 'secagg-roster', 'secagg-envelopes', 'secagg-unmask'] as const;
const MAX_EARLY_PUSHES = 8;

export class CoordinatorConnection {
  private socket: Socket | null = null;
  /** Session of the authenticated connection: signed coordinator pushes are bound to it. */
  private sessionId: string | null = null;
  private transport: RequestTransport | null = null;
  private handshake: RequestTransport | null = null;
  private authenticated = false;
  private failures = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Pushes that arrived between auth-ok and the end of our handshake (see start()). */
  private early: [string, unknown][] = [];
  private waiters: { resolve: (t: RequestTransport) => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];

  constructor(
    private readonly opts: ConnectionOptions,
    private readonly on: ConnectionEvents,
  ) {}

  get connected(): boolean {
    return this.authenticated;
  }

  /** Session of the authenticated connection (site-signed messages are bound to it), or null. */
  get session(): string | null {
    return this.authenticated ? this.sessionId : null;
  }

  start(): void {
    if (this.socket || this.stopped) return;
    const ca = this.opts.caCertificate !== undefined ? readCa(this.opts.caCertificate) : undefined;
    const socket = io(this.opts.url, {
      transports: ['websocket'],
      autoConnect: false,
      reconnection: false, // our own loop: it also covers refused authentication
      forceNew: true,
      timeout: 20_000,
      ...(ca !== undefined ? { ca } : {}),
    });
    this.socket = socket;
    this.handshake = socketRequester(socket);
    // socket.io buffers emits while disconnected and flushes them on the next connect, before the
    // handshake (the coordinator then drops the connection): only emit while authenticated.
    this.transport = {
      request: (type, payload, timeoutMs) =>
        this.authenticated && socket.connected ? socket.timeout(timeoutMs).emitWithAck(type, payload) : Promise.reject(new Error('not connected to the coordinator')),
    };
    this.opts.instrumentSocket?.(socket);
    socket.on('connect', () => void this.authenticate(socket));
    socket.on('connect_error', (e: Error) => {
      const { kind, reason } = describeConnectError(e, this.opts.url);
      const delay = this.scheduleReconnect();
      if (delay !== null) {
        this.opts.log('warn', `cannot reach the coordinator at ${this.opts.url}: ${reason} — retrying in ${Math.round(delay / 1000)} s (at ${clock(delay)} UTC)`, { kind });
      }
    });
    socket.on('disconnect', (reason: string) => {
      const was = this.authenticated;
      this.authenticated = false;
      this.sessionId = null;
      this.early = [];
      socket.sendBuffer = []; // nothing sent in the old session may replay into the next one
      if (was) this.on.disconnected(reason);
      this.scheduleReconnect();
    });
    for (const type of COORDINATOR_PUSHES) {
      socket.on(type, (...args: unknown[]) => {
        if (args.length !== 1) {
          this.opts.log('warn', `ignored a malformed '${type}' from the coordinator`);
        } else if (this.authenticated && this.sessionId) {
          this.on.message(type, args[0], this.sessionId);
        } else if (this.early.length < MAX_EARLY_PUSHES) {
          // The coordinator pushes right after auth-ok; websocket frames read together are
          // delivered before our handshake continuation runs, so hold them until it has.
          this.early.push([type, args[0]]);
        }
      });
    }
    socket.connect();
  }

  /** Disconnects for good; pending ready() calls reject. */
  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const waiters = this.waiters.splice(0);
    for (const w of waiters) {
      if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
      w.reject(new PatchFedError('client-stopped', 'The coordinator client was stopped.'));
    }
    this.authenticated = false;
    this.socket?.disconnect();
  }

  /** Resolves with a transport as soon as (or if already) the connection is authenticated. */
  ready(signal?: AbortSignal): Promise<RequestTransport> {
    if (this.stopped) return Promise.reject(new PatchFedError('client-stopped', 'The coordinator client was stopped.'));
    if (signal?.aborted) return Promise.reject(signal.reason ?? new PatchFedError('aborted', 'aborted'));
    if (this.authenticated && this.transport) return Promise.resolve(this.transport);
    return new Promise((resolve, reject) => {
      const waiter: (typeof this.waiters)[number] = { resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(signal.reason ?? new PatchFedError('aborted', 'aborted'));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.waiters.push(waiter);
    });
  }

  /** Sends a site event (no acknowledgement) if authenticated; false otherwise. */
  send<T extends SiteMessageType>(type: T, data: Message<T>): boolean {
    if (!this.authenticated || !this.socket) return false;
    this.socket.emit(type, encodeMessage(type, data));
    return true;
  }

  private async authenticate(socket: Socket): Promise<void> {
    try {
      const { sessionId } = await authenticateSite(this.handshake!, {
        siteId: this.opts.siteId,
        siteKeys: this.opts.keys,
        pinnedCoordinatorSignPublicKey: this.opts.coordinatorPublicKey.signPublicKey,
        agentVersion: this.opts.agentVersion,
      });
      if (this.stopped || socket !== this.socket || !socket.connected) return;
      this.authenticated = true;
      this.sessionId = sessionId;
      this.failures = 0;
      this.opts.log('info', 'authenticated with the coordinator', { url: this.opts.url, session: sessionId.slice(0, 8) });
      this.on.authenticated(sessionId);
      for (const [type, payload] of this.early.splice(0)) this.on.message(type, payload, sessionId);
      for (const w of this.waiters.splice(0)) {
        if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
        w.resolve(this.transport!);
      }
    } catch (e) {
      if (this.stopped) return;
      const error = e instanceof PatchFedError ? e : new PatchFedError('auth-failed', `Authentication with the coordinator failed: ${errorMessage(e)}`, { cause: e });
      const permanent = PERMANENT_AUTH_FAILURES.has(error.code);
      const delay = this.scheduleReconnect(permanent ? PERMANENT_RETRY_MS : undefined);
      if (error.code === 'handshake-interrupted') {
        if (delay !== null) this.opts.log('warn', `the connection to the coordinator dropped during authentication (${error.message}) — retrying in ${Math.round(delay / 1000)} s`);
      } else {
        // Permanent refusals are reported once by the listener (the daemon exits on them).
        if (!permanent && delay !== null) this.opts.log('warn', `authentication refused by the coordinator (${error.code}): ${error.message} — retrying in ${Math.round(delay / 1000)} s (at ${clock(delay)} UTC)`);
        this.on.authFailed(error, permanent);
      }
      socket.disconnect(); // the 'disconnect' handler finds the reconnect already scheduled
    }
  }

  /** Schedules the next connect attempt (backoff, or `fixedMs`); returns its delay, or null if none was scheduled. */
  private scheduleReconnect(fixedMs?: number): number | null {
    if (this.stopped || this.reconnectTimer || !this.socket) return null;
    const delay = fixedMs ?? backoffDelay(this.failures++, this.opts.backoff);
    this.opts.log('debug', 'reconnecting to the coordinator', { inMs: delay });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopped && this.socket && !this.socket.connected) this.socket.connect();
    }, delay);
    return delay;
  }
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new PatchFedError('ca-unreadable', `CA certificate ${file} cannot be read: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}.`, { subject: file });
  }
}
