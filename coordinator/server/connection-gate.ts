/**
 * The coordinator's front door: what a connection may cost before it has proved who it is.
 *
 * Every websocket (the coordinator speaks no other transport) is unauthenticated until a site
 * completes the key handshake on it or a dashboard viewer shows the token. Until then:
 *  - it holds one of `maxPreAuthConnections` slots, at most `maxPreAuthConnectionsPerIp` of them
 *    per client address (IPv6: per /64), separate from the authenticated connections;
 *  - it may send PRE_AUTH_MAX_BYTES raw bytes in all (counted on the TCP socket, so a 4 MiB
 *    frame is cut off after 64 KiB instead of being buffered whole), only text messages of at
 *    most PRE_AUTH_MAX_MESSAGE_BYTES, no binary data and no socket.io binary packets;
 *  - it is closed `handshakeTimeoutSeconds` after it opened (socket.io's own 45 s connectTimeout
 *    for engine connections that join no namespace never comes into play).
 * Breaking a rule closes it at once (the TCP socket is destroyed, so nothing more is read).
 *
 * When the pre-auth slots are full, a newcomer evicts the oldest connection of the address that
 * holds the most slots if that address holds at least two more than the newcomer's; otherwise the
 * oldest pre-auth connection once it has waited longer than a handshake takes (HANDSHAKE_GRACE_MS).
 * So junk can fill the slots but not keep them: an enrolled site's handshake (milliseconds)
 * still gets through. And an address a site has authenticated from (in the last KNOWN_SITE_TTL_MS)
 * does not need a shared slot at all — only its per-address limit applies — so strangers, however
 * many addresses they have, cannot keep a known site out. Refusals are reported through `report`
 * (digested by the caller).
 */
import type { IncomingMessage } from 'node:http';
import type { Socket as TcpSocket } from 'node:net';
import type { Server, Socket } from 'socket.io';

/** The engine.io connection under a socket.io socket. */
export type EngineConnection = Socket['conn'];

export const PRE_AUTH_MAX_BYTES = 64 * 1024;
export const PRE_AUTH_MAX_MESSAGE_BYTES = 8 * 1024;
/** A pre-auth connection younger than this may be mid-handshake and is not evicted. */
export const HANDSHAKE_GRACE_MS = 1000;
/** How long an address a site authenticated from keeps its reserved way in. */
export const KNOWN_SITE_TTL_MS = 7 * 24 * 3600 * 1000;
/** Addresses remembered at most (oldest forgotten first); sites are few, this is a safety bound. */
const MAX_KNOWN_SITE_ADDRESSES = 1024;

export interface GateLimits {
  maxConnections: number;
  maxPreAuthConnections: number;
  maxPreAuthConnectionsPerIp: number;
  handshakeTimeoutSeconds: number;
}

export type RefusalReason =
  | 'pre-auth-limit'
  | 'pre-auth-ip-limit'
  | 'pre-auth-evicted'
  | 'pre-auth-timeout'
  | 'pre-auth-too-many-bytes'
  | 'pre-auth-binary'
  | 'pre-auth-message-too-large'
  | 'authenticated-limit';

export interface GateStats {
  /** Unauthenticated connections, all of them; `preAuthShared` of them hold a shared slot. */
  preAuth: number;
  preAuthShared: number;
  authenticated: number;
  /** Unauthenticated connections per client address, most first (at most 10). */
  topClients: [string, number][];
  /** Refusals and closes since start, by reason. */
  refused: Record<RefusalReason, number>;
}

interface PreAuthEntry {
  conn: EngineConnection;
  client: string;
  /** From an address a site authenticated from: holds no shared slot. */
  known: boolean;
  openedAt: number;
  bytes: number;
  tcp: TcpSocket | null;
  timer: NodeJS.Timeout;
  detach: () => void;
}

const REFUSAL_MESSAGES: Record<RefusalReason, string> = {
  'pre-auth-limit': 'all unauthenticated connection slots are taken',
  'pre-auth-ip-limit': 'this address holds its maximum of unauthenticated connections',
  'pre-auth-evicted': 'evicted to make room: it had not authenticated',
  'pre-auth-timeout': 'it did not authenticate in time',
  'pre-auth-too-many-bytes': `it sent more than ${PRE_AUTH_MAX_BYTES} bytes before authenticating`,
  'pre-auth-binary': 'it sent binary data before authenticating',
  'pre-auth-message-too-large': `it sent a message larger than ${PRE_AUTH_MAX_MESSAGE_BYTES} bytes before authenticating`,
  'authenticated-limit': 'all authenticated connection slots are taken',
};

export class ConnectionGate {
  private readonly preAuth = new Map<EngineConnection, PreAuthEntry>();
  private readonly perClient = new Map<string, number>();
  /** Pre-auth connections holding a shared slot (not from a known site address). */
  private shared = 0;
  private readonly knownSiteClients = new Map<string, number>();
  private readonly authenticated = new Set<EngineConnection>();
  private readonly refusedCounts = Object.fromEntries(Object.keys(REFUSAL_MESSAGES).map((r) => [r, 0])) as Record<RefusalReason, number>;
  private closed = false;

  constructor(
    private readonly limits: GateLimits,
    /** One refusal: its reason, the client address (for the summary) and a sentence. */
    private readonly report: (reason: RefusalReason, client: string, message: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * engine.io's allowRequest: runs before the websocket upgrade of a new connection, so a
   * refused client costs an HTTP response, nothing more.
   */
  readonly allowRequest = (req: IncomingMessage, callback: (err: string | null | undefined, success: boolean) => void): void => {
    const client = clientKey(req.socket.remoteAddress);
    const verdict = this.admit(client);
    if (verdict === null) return callback(null, true);
    this.refuse(verdict, client);
    callback(REFUSAL_MESSAGES[verdict], false);
  };

  /** Starts watching the engine connections of `io` (call once, right after creating it). */
  attach(io: Server): void {
    io.engine.on('connection', (conn: EngineConnection) => this.onConnection(conn));
  }

  /** A site proved its enrolled key on `conn`. Sites are bounded by enrolment, so always admitted. */
  siteAuthenticated(conn: EngineConnection): void {
    const client = this.preAuth.get(conn)?.client ?? clientKey(conn.remoteAddress);
    this.knownSiteClients.delete(client); // re-insert: Map order = least recently seen first
    this.knownSiteClients.set(client, this.now());
    if (this.knownSiteClients.size > MAX_KNOWN_SITE_ADDRESSES) {
      const oldest = this.knownSiteClients.keys().next();
      if (!oldest.done) this.knownSiteClients.delete(oldest.value);
    }
    this.promote(conn);
  }

  /** A dashboard viewer showed the token on `conn`; false (and refused) when the slots are full. */
  viewerAuthenticated(conn: EngineConnection): boolean {
    if (!this.authenticated.has(conn) && this.authenticated.size >= this.limits.maxConnections) {
      const client = this.preAuth.get(conn)?.client ?? clientKey(conn.remoteAddress);
      this.refuse('authenticated-limit', client);
      return false;
    }
    this.promote(conn);
    return true;
  }

  stats(): GateStats {
    const topClients = [...this.perClient.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10);
    return { preAuth: this.preAuth.size, preAuthShared: this.shared, authenticated: this.authenticated.size, topClients, refused: { ...this.refusedCounts } };
  }

  /** Stops the timers; connections are closed by the server. */
  close(): void {
    this.closed = true;
    for (const entry of this.preAuth.values()) {
      clearTimeout(entry.timer);
      entry.detach();
    }
    this.preAuth.clear();
    this.perClient.clear();
    this.shared = 0;
    this.authenticated.clear();
  }

  private onConnection(conn: EngineConnection): void {
    if (this.closed) return void conn.close();
    const client = clientKey(conn.remoteAddress);
    // allowRequest admitted it, but others may have been admitted meanwhile: decide again.
    const verdict = this.admit(client);
    if (verdict !== null) {
      this.refuse(verdict, client);
      const tcp = conn.request.socket;
      conn.close();
      tcp.destroy();
      return;
    }
    const tcp = conn.request.socket ?? null;
    const onData = (chunk: Buffer) => {
      entry.bytes += chunk.length;
      if (entry.bytes > PRE_AUTH_MAX_BYTES) this.drop(entry, 'pre-auth-too-many-bytes');
    };
    const onPacket = (packet: { type: string; data?: unknown }) => {
      if (packet.type !== 'message') return;
      if (typeof packet.data !== 'string') return this.drop(entry, 'pre-auth-binary');
      if (Buffer.byteLength(packet.data) > PRE_AUTH_MAX_MESSAGE_BYTES) return this.drop(entry, 'pre-auth-message-too-large');
      // socket.io BINARY_EVENT / BINARY_ACK: attachments would follow and be buffered until complete.
      if (packet.data[0] === '5' || packet.data[0] === '6') return this.drop(entry, 'pre-auth-binary');
    };
    const onClose = () => this.forget(conn);
    tcp?.on('data', onData);
    conn.on('packet', onPacket);
    conn.once('close', onClose);
    const entry: PreAuthEntry = {
      conn,
      client,
      known: this.isKnownSite(client),
      openedAt: this.now(),
      bytes: 0,
      tcp,
      timer: setTimeout(() => this.drop(entry, 'pre-auth-timeout'), this.limits.handshakeTimeoutSeconds * 1000),
      detach: () => {
        tcp?.off('data', onData);
        conn.off('packet', onPacket);
      },
    };
    entry.timer.unref();
    this.preAuth.set(conn, entry);
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    if (!entry.known) this.shared++;
    conn.once('close', () => this.authenticated.delete(conn));
  }

  /** null = admit `client` now (after evicting someone if needed); else why not. */
  private admit(client: string): RefusalReason | null {
    const mine = this.perClient.get(client) ?? 0;
    if (mine >= this.limits.maxPreAuthConnectionsPerIp) return 'pre-auth-ip-limit';
    if (this.isKnownSite(client) || this.shared < this.limits.maxPreAuthConnections) return null;
    const victim = this.evictionCandidate(client, mine);
    if (!victim) return 'pre-auth-limit';
    this.drop(victim, 'pre-auth-evicted');
    return null;
  }

  private evictionCandidate(client: string, mine: number): PreAuthEntry | null {
    let hog: string | null = null;
    let hogCount = 0;
    for (const [c, n] of this.perClient) {
      if (c !== client && n > hogCount) {
        hog = c;
        hogCount = n;
      }
    }
    let oldest: PreAuthEntry | null = null;
    let oldestOfHog: PreAuthEntry | null = null;
    for (const e of this.preAuth.values()) {
      if (e.known) continue;
      if (!oldest || e.openedAt < oldest.openedAt) oldest = e;
      if (e.client === hog && (!oldestOfHog || e.openedAt < oldestOfHog.openedAt)) oldestOfHog = e;
    }
    if (hog !== null && hogCount >= mine + 2 && oldestOfHog) return oldestOfHog;
    if (oldest && this.now() - oldest.openedAt >= HANDSHAKE_GRACE_MS) return oldest;
    return null;
  }

  private promote(conn: EngineConnection): void {
    const entry = this.preAuth.get(conn);
    if (entry) {
      this.forget(conn);
      entry.detach();
    }
    this.authenticated.add(conn);
  }

  /** Closes a pre-auth connection for `reason` and stops reading from it. */
  private drop(entry: PreAuthEntry, reason: RefusalReason): void {
    if (this.preAuth.get(entry.conn) !== entry) return;
    this.forget(entry.conn);
    entry.detach();
    this.refuse(reason, entry.client);
    entry.conn.close();
    entry.tcp?.destroy();
  }

  private forget(conn: EngineConnection): void {
    const entry = this.preAuth.get(conn);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.preAuth.delete(conn);
    if (!entry.known) this.shared--;
    const left = (this.perClient.get(entry.client) ?? 1) - 1;
    if (left > 0) this.perClient.set(entry.client, left);
    else this.perClient.delete(entry.client);
  }

  private isKnownSite(client: string): boolean {
    const seen = this.knownSiteClients.get(client);
    return seen !== undefined && this.now() - seen < KNOWN_SITE_TTL_MS;
  }

  private refuse(reason: RefusalReason, client: string): void {
    this.refusedCounts[reason]++;
    this.report(reason, client, `Refused a connection from ${client}: ${REFUSAL_MESSAGES[reason]}.`);
  }
}

/**
 * The address a client is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64,
 * since one IPv6 host usually owns a whole /64 and could otherwise take a slot per address.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = address.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = address.includes('::') ? [...headGroups, ...Array(Math.max(0, 8 - headGroups.length - tailGroups.length)).fill('0'), ...tailGroups] : address.split(':');
  return `${groups.slice(0, 4).map((g) => (g || '0').toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
