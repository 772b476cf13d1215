/**
 * Clients that misbehave before authenticating, for the hardening tests and the fuzz bench.
 *
 * `RawWebSocket` speaks the websocket protocol over a bare TCP socket, so it can send what no
 * library client would: socket.io binary attachments before `hello`, packets for no namespace,
 * oversized or malformed frames, or nothing at all. Its frames are masked with an all-zero key
 * (valid: RFC 6455 only requires the mask bit), so one prebuilt frame buffer is written to any
 * number of connections without a per-connection copy — a flood of 4 MiB frames costs the
 * attacker no memory, exactly the asymmetry the coordinator must not fall for.
 */
import { randomBytes } from 'node:crypto';
import { connect as connectTcp, type Socket as TcpSocket } from 'node:net';
import { PROTOCOL_VERSION } from '../shared/protocol/limits.ts';

const MiB = 1024 * 1024;

/** A client → server websocket frame (FIN set, masked with a zero key). */
export function clientFrame(opcode: 'text' | 'binary' | 'close' | 'ping', payload: Buffer): Buffer {
  const code = { text: 0x1, binary: 0x2, close: 0x8, ping: 0x9 }[opcode];
  const n = payload.length;
  const header = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  header[0] = 0x80 | code;
  if (n < 126) header[1] = 0x80 | n;
  else if (n < 65536) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(n, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([header, Buffer.alloc(4), payload]); // zero mask: payload unchanged
}

/** A socket.io BINARY_EVENT header for `event` with `attachments` placeholders, as an engine.io message. */
export function binaryEventHeader(event: string, attachments: number, namespace = '/'): string {
  const placeholders = Array.from({ length: attachments }, (_, num) => ({ _placeholder: true, num }));
  const nsp = namespace === '/' ? '' : `${namespace},`;
  return `45${attachments}-${nsp}${JSON.stringify([event, ...placeholders])}`;
}

/** A socket.io EVENT (with an ack id when given) as an engine.io message. */
export function eventMessage(event: string, payload: unknown, ackId?: number): string {
  return `42${ackId ?? ''}${JSON.stringify([event, payload])}`;
}

export interface RawWebSocketOptions {
  /** Source address (every 127/8 address is local on Linux, so a test can be "many clients"). */
  localAddress?: string;
  timeoutMs?: number;
}

/**
 * A websocket to the coordinator's socket.io endpoint. Resolves once the engine.io open packet
 * arrived; rejects when the server refuses the upgrade or the timeout passes.
 */
export class RawWebSocket {
  /** Text messages received (engine.io packets, e.g. '40{...}', '430[...]'). */
  readonly received: string[] = [];
  private closedFlag = false;
  private pending: Buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(readonly tcp: TcpSocket) {}

  static open(url: string, options: RawWebSocketOptions = {}): Promise<RawWebSocket> {
    const target = new URL(url);
    const port = Number(target.port || 80);
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const tcp = connectTcp({ host: target.hostname, port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
      const ws = new RawWebSocket(tcp);
      let upgraded = false;
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => fail(new Error(`no websocket open from ${url} within ${timeoutMs} ms`)), timeoutMs);
      const fail = (e: Error) => {
        clearTimeout(timer);
        tcp.destroy();
        reject(e);
      };
      tcp.on('error', (e) => (upgraded ? undefined : fail(e)));
      tcp.on('close', () => {
        ws.closedFlag = true;
        if (!upgraded) fail(new Error('connection closed before the websocket opened'));
        for (const w of ws.waiters.splice(0)) w();
      });
      tcp.on('connect', () => {
        tcp.write(
          `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      tcp.on('data', (chunk: Buffer) => {
        if (!upgraded) {
          head = Buffer.concat([head, chunk]);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          const status = head.subarray(0, head.indexOf('\r\n')).toString();
          if (!/^HTTP\/1\.1 101/.test(status)) return fail(new Error(`upgrade refused: ${status}`));
          upgraded = true;
          ws.onBytes(head.subarray(end + 4));
          return;
        }
        ws.onBytes(chunk);
      });
      ws.waitFor((m) => m.startsWith('0'), timeoutMs).then(
        () => {
          clearTimeout(timer);
          resolve(ws);
        },
        (e: Error) => fail(e),
      );
    });
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Writes a prebuilt frame (see clientFrame); false once the connection is gone. */
  writeFrame(frame: Buffer): boolean {
    if (this.closedFlag || this.tcp.destroyed) return false;
    this.tcp.write(frame, () => {});
    return true;
  }

  sendText(text: string): boolean {
    return this.writeFrame(clientFrame('text', Buffer.from(text, 'utf8')));
  }

  /** Resolves with the first received text message matching `match` (already received or future). */
  waitFor(match: (message: string) => boolean, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`no matching message within ${timeoutMs} ms`)), timeoutMs);
      const check = () => {
        const hit = this.received.find(match);
        if (hit !== undefined) return done(hit);
        if (this.closedFlag) return done(new Error('connection closed'));
        this.waiters.push(check);
      };
      const done = (result: string | Error) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        if (typeof result === 'string') resolve(result);
        else reject(result);
      };
      check();
    });
  }

  /** Resolves when the server has closed the connection (true) or after `timeoutMs` (false). */
  closedWithin(timeoutMs: number): Promise<boolean> {
    if (this.closedFlag) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onClose = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.tcp.off('close', onClose);
        resolve(false);
      }, timeoutMs);
      this.tcp.once('close', onClose);
    });
  }

  destroy(): void {
    this.tcp.destroy();
  }

  /** Server frames are unmasked; collects text frames, answers engine.io pings, notes close. */
  private onBytes(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    for (;;) {
      const b = this.pending;
      if (b.length < 2) return;
      const opcode = b[0]! & 0x0f;
      let len = b[1]! & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      if (b.length < offset + len) return;
      const payload = b.subarray(offset, offset + len);
      this.pending = b.subarray(offset + len);
      if (opcode === 0x1) {
        const text = payload.toString('utf8');
        if (text === '2') this.sendText('3'); // engine.io ping → pong
        else this.received.push(text);
      } else if (opcode === 0x8) {
        this.closedFlag = true;
        this.tcp.end();
      }
      for (const w of this.waiters.splice(0)) w();
    }
  }
}

export type PreAuthFloodKind = 'binary-attachments' | 'binary-attachments-in-namespace' | 'big-hello' | 'max-allowed' | 'idle';

/** Just under the coordinator's 8 KiB pre-auth message limit (connection-gate.ts), 7 of them < 64 KiB. */
const ALLOWED_HELLO_CHARS = 8000;
const ALLOWED_HELLOS = 7;

export interface PreAuthFloodOptions {
  url: string;
  connections: number;
  /**
   * What each connection sends before it would authenticate:
   *  - 'binary-attachments': a socket.io BINARY_EVENT announcing `attachments` attachments, then
   *    `attachments - 1` binary frames of `attachmentBytes` (the last never comes, so a decoder
   *    that buffers attachments holds them all), without joining any namespace;
   *  - 'binary-attachments-in-namespace': the same after joining the site namespace;
   *  - 'big-hello': joins the site namespace and sends one `hello` of `attachmentBytes` text;
   *  - 'max-allowed': the most the coordinator lets through before authentication, then silence:
   *    joins the site namespace and sends 7 `hello` messages of just under 8 KiB (56 KiB in all);
   *  - 'idle': joins nothing and sends nothing.
   */
  kind: PreAuthFloodKind;
  attachments?: number;
  attachmentBytes?: number;
  localAddress?: (index: number) => string | undefined;
  openTimeoutMs?: number;
}

export interface PreAuthFloodResult {
  sockets: RawWebSocket[];
  /** Connections the server accepted at the transport level. */
  opened: number;
  /** Connections refused before opening (HTTP error, reset, timeout). */
  refused: number;
  /** Bytes handed to the kernel across all connections (what the server had to read or drop). */
  bytesOffered: number;
  close(): void;
}

/**
 * Opens `connections` websockets that each send the largest thing `kind` allows before
 * authentication, and leaves them open.
 */
export async function preAuthFlood(options: PreAuthFloodOptions): Promise<PreAuthFloodResult> {
  const attachments = options.attachments ?? 10;
  const attachmentBytes = options.attachmentBytes ?? 4 * MiB;
  const results = await Promise.allSettled(
    Array.from({ length: options.connections }, (_, i) => RawWebSocket.open(options.url, { localAddress: options.localAddress?.(i), timeoutMs: options.openTimeoutMs })),
  );
  const sockets = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  // Built once, shared by every connection.
  const blob = clientFrame('binary', Buffer.alloc(attachmentBytes, 0x41));
  const header = clientFrame('text', Buffer.from(binaryEventHeader('update-chunk', attachments)));
  const joinSiteNamespace = clientFrame('text', Buffer.from('40'));
  const bigHello = clientFrame('text', Buffer.from(eventMessage('hello', { protocolVersion: PROTOCOL_VERSION, siteId: 'x', agentVersion: 'a'.repeat(attachmentBytes) }, 0)));
  const allowedHello = clientFrame('text', Buffer.from(eventMessage('hello', { protocolVersion: PROTOCOL_VERSION, siteId: 'x', agentVersion: 'a'.repeat(ALLOWED_HELLO_CHARS - 80) })));
  let bytesOffered = 0;
  const write = (s: RawWebSocket, frame: Buffer) => {
    if (s.writeFrame(frame)) bytesOffered += frame.length;
  };
  for (const s of sockets) {
    switch (options.kind) {
      case 'idle':
        break;
      case 'binary-attachments':
      case 'binary-attachments-in-namespace':
        if (options.kind === 'binary-attachments-in-namespace') write(s, joinSiteNamespace);
        write(s, header);
        for (let a = 0; a < attachments - 1; a++) write(s, blob);
        break;
      case 'big-hello':
        write(s, joinSiteNamespace);
        write(s, bigHello);
        break;
      case 'max-allowed':
        write(s, joinSiteNamespace);
        for (let m = 0; m < ALLOWED_HELLOS; m++) write(s, allowedHello);
        break;
    }
  }
  return {
    sockets,
    opened: sockets.length,
    refused: options.connections - sockets.length,
    bytesOffered,
    close: () => {
      for (const s of sockets) s.destroy();
    },
  };
}

export interface SlotHogOptions {
  url: string;
  /** Connections kept open at once (each reopened as soon as it closes or is refused). */
  loops: number;
  localAddress?: (loop: number) => string | undefined;
  /** What each connection does once open: nothing ('idle'), or a `hello` for an unknown site. */
  behaviour?: 'idle' | 'unknown-hello';
}

export interface SlotHog {
  /** Connection attempts so far, and how many of them the server accepted. */
  attempts(): number;
  opened(): number;
  /** Connections open right now. */
  open(): number;
  stop(): Promise<void>;
}

/**
 * A client that tries to hold every connection slot: `loops` connections, each reopened the
 * moment the server closes or refuses it (a short pause after a refusal only, so the loop does
 * not spin on a dead server).
 */
export function hogSlots(options: SlotHogOptions): SlotHog {
  let stopped = false;
  let attempts = 0;
  let opened = 0;
  const live = new Set<RawWebSocket>();
  const loop = async (i: number): Promise<void> => {
    let unknownSite = 0;
    while (!stopped) {
      attempts++;
      let ws: RawWebSocket;
      try {
        ws = await RawWebSocket.open(options.url, { localAddress: options.localAddress?.(i), timeoutMs: 5000 });
      } catch {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      opened++;
      live.add(ws);
      if (stopped) ws.destroy();
      if (options.behaviour === 'unknown-hello') {
        ws.sendText('40');
        ws.sendText(eventMessage('hello', { protocolVersion: PROTOCOL_VERSION, siteId: `intruder-${i}-${unknownSite++}`, agentVersion: '1' }, 0));
      }
      while (!ws.closed && !stopped) await ws.closedWithin(1000);
      live.delete(ws);
      ws.destroy();
    }
  };
  const loops = Array.from({ length: options.loops }, (_, i) => loop(i));
  return {
    attempts: () => attempts,
    opened: () => opened,
    open: () => live.size,
    stop: async () => {
      stopped = true;
      for (const ws of live) ws.destroy();
      await Promise.all(loops);
    },
  };
}
