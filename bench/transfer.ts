/**
 * Transfer benchmark: a synthetic model update (encoded with the weights codec) uploaded
 * through a real socket.io server and client on 127.0.0.1, with the full stack: handshake,
 * sealed chunks, a forced disconnect part-way, reconnect + re-authentication, resume, commit,
 * and the coordinator decoding the received file. `patchfed bench transfer` calls benchTransfer.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Server } from 'socket.io';
import { io as connectClient, type Socket as ClientSocket } from 'socket.io-client';
import { encodeWeights, decodeWeightsFile } from '../shared/codec/weights-codec.ts';
import { generateKeyPairs, publicKeysOf, type KeyPairs } from '../shared/crypto/keys.ts';
import { deriveSharedKey } from '../shared/crypto/seal.ts';
import { DEFAULT_CHUNK_BYTES, SOCKET_IO_MAX_HTTP_BUFFER_SIZE } from '../shared/protocol/limits.ts';
import type { Metrics } from '../shared/protocol/messages.ts';
import { acceptSiteHandshake, authenticateSite } from '../shared/protocol/session.ts';
import { UpdateReceiver, UpdateSender, uploadWithResume } from '../shared/protocol/transfer.ts';
import { socketHandlers, socketRequester, type HandlerTransport } from '../shared/protocol/transport.ts';
import type { NamedWeights, WeightSpec } from '../shared/weights.ts';

export interface TransferBenchOptions {
  /** Payload size in MiB (default 200). */
  megabytes?: number;
  chunkBytes?: number;
  window?: number;
  /** The server drops the connection right after acknowledging this many chunks; null = never. Default: half. */
  disconnectAfterChunks?: number | null;
  log?: (line: string) => void;
  /** Flip one byte of this chunk's ciphertext on arrival at the server (tamper test); the upload must fail. */
  tamperChunkIndex?: number;
}

export interface TransferBenchResult {
  bytes: number;
  chunkCount: number;
  seconds: number;
  megabytesPerSecond: number;
  /** Where each attempt started ([0, k] after one disconnect). */
  resumedFrom: number[];
  /** Chunks the server had acknowledged when it dropped the connection (null if it never did). */
  ackedBeforeDisconnect: number | null;
  chunksSent: number;
  chunksResent: number;
  /** Chunks the receiver stored, and how many arrived again although already stored. */
  chunksStored: number;
  duplicateChunks: number;
  sha256Sent: string;
  /** sha256 of the file the coordinator received, computed independently of the transfer code. */
  sha256Received: string;
  /** The coordinator decoded the received file back into the same tensors. */
  decodedEqual: boolean;
}

/** ~`megabytes` MiB of float32 weights in a few tensors, deterministic and finite. */
export function syntheticWeights(megabytes: number): NamedWeights {
  const totalValues = Math.floor((megabytes * 1024 * 1024) / 4);
  const manifest: WeightSpec[] = [];
  const values: Float32Array[] = [];
  const tensors = 8;
  let left = totalValues;
  for (let t = 0; t < tensors && left > 0; t++) {
    const n = t === tensors - 1 ? left : Math.floor(totalValues / tensors);
    left -= n;
    manifest.push({ name: `block${t}/conv/kernel`, shape: [n], trainable: true, role: 'conv-kernel' });
    const v = new Float32Array(n);
    let x = (t + 1) * 2654435761;
    for (let i = 0; i < n; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      v[i] = (x / 4294967296 - 0.5) * 0.1;
    }
    values.push(v);
  }
  return { manifest, values };
}

function sameWeights(a: NamedWeights, b: NamedWeights): boolean {
  if (a.values.length !== b.values.length) return false;
  return a.values.every((v, i) => Buffer.compare(Buffer.from(v.buffer, v.byteOffset, v.byteLength), Buffer.from(b.values[i]!.buffer, b.values[i]!.byteOffset, b.values[i]!.byteLength)) === 0);
}

async function sha256OfFile(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Wraps a handler transport to flip one ciphertext byte of chunk `index` before the receiver sees it. */
function flipByteOfChunk(inner: HandlerTransport, index: number): HandlerTransport {
  return {
    handle(type, handler) {
      return inner.handle(type, (payload) => {
        const m = payload as { index?: unknown; ciphertext?: unknown };
        if (type === 'update-chunk' && m.index === index && m.ciphertext instanceof Uint8Array) {
          const ciphertext = new Uint8Array(m.ciphertext);
          ciphertext[ciphertext.length >> 1]! ^= 0x01;
          return handler({ ...m, ciphertext });
        }
        return handler(payload);
      });
    },
  };
}

/** Wraps a handler transport to drop the connection right after the n-th chunk acknowledgement. */
function dropAfterAcks(inner: HandlerTransport, n: number, drop: () => void, onDrop: () => void): HandlerTransport {
  let acks = 0;
  return {
    handle(type, handler) {
      return inner.handle(type, async (payload) => {
        const reply = await handler(payload);
        if (type === 'update-chunk' && reply.type === 'chunk-ack' && ++acks === n) {
          onDrop();
          setImmediate(drop); // after socket.io has sent this acknowledgement
        }
        return reply;
      });
    },
  };
}

export async function benchTransfer(options: TransferBenchOptions = {}): Promise<TransferBenchResult> {
  const log = options.log ?? (() => undefined);
  const megabytes = options.megabytes ?? 200;
  const round = 3;
  const siteId = 'bench-site';
  const coordinator = generateKeyPairs();
  const site = generateKeyPairs();
  const weights = syntheticWeights(megabytes);
  const payload = encodeWeights(weights);
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const chunkCount = Math.ceil(payload.length / chunkBytes);
  const disconnectAfter = options.disconnectAfterChunks === undefined ? Math.floor(chunkCount / 2) : options.disconnectAfterChunks;
  const server = await startBenchCoordinator({ coordinator, site, siteId, round, weights, disconnectAfter, tamperChunkIndex: options.tamperChunkIndex, log });
  const client = siteConnector({ port: server.port, coordinator, site, siteId, log });

  const sender = new UpdateSender({
    payload,
    round,
    siteId,
    keys: { sharedKey: deriveSharedKey(coordinator.boxPublicKey, site.boxSecretKey), signSecretKey: site.signSecretKey },
    chunkBytes,
    window: options.window,
  });
  const metrics: Metrics = { loss: 0.5, dice: { tumour: 0.7 }, timeMs: 1, peakMemoryBytes: 1, backend: 'cpu', patch: [64, 64, 48], batch: 1 };
  const started = performance.now();
  try {
    await uploadWithResume(sender, client.connect, { samples: 10, metrics }, { onInterrupted: (e) => log(`client: ${e.message}`) });
  } finally {
    client.disconnectAll();
    await server.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const result: TransferBenchResult = {
    bytes: payload.length,
    chunkCount: sender.chunkCount,
    seconds,
    megabytesPerSecond: payload.length / (1024 * 1024) / seconds,
    resumedFrom: sender.stats.resumedFrom,
    ackedBeforeDisconnect: server.seen.ackedBeforeDisconnect,
    chunksSent: sender.stats.chunksSent,
    chunksResent: sender.stats.chunksResent,
    chunksStored: server.receiver.stats.chunksStored,
    duplicateChunks: server.receiver.stats.duplicateChunks,
    sha256Sent: createHash('sha256').update(payload).digest('hex'),
    sha256Received: server.seen.sha256Received,
    decodedEqual: server.seen.decodedEqual,
  };
  log(
    `transfer: ${(result.bytes / 1048576).toFixed(1)} MiB in ${result.chunkCount} chunks, ${seconds.toFixed(2)} s, ` +
      `${result.megabytesPerSecond.toFixed(1)} MiB/s; resumed from ${result.resumedFrom.join(' → ')}, ${result.chunksResent} chunk(s) re-sent`,
  );
  return result;
}

interface BenchCoordinatorOptions {
  coordinator: KeyPairs;
  site: KeyPairs;
  siteId: string;
  round: number;
  weights: NamedWeights;
  /** Drop the first connection after this many acknowledged chunks (null: never). */
  disconnectAfter: number | null;
  tamperChunkIndex?: number;
  log: (line: string) => void;
}

interface BenchCoordinator {
  port: number;
  receiver: UpdateReceiver;
  /** What the coordinator saw, filled in while the upload runs. */
  seen: { sha256Received: string; decodedEqual: boolean; ackedBeforeDisconnect: number | null };
  /** Closes the server and the receiver and removes the received files. */
  close(): Promise<void>;
}

/** The coordinator side on a free loopback port: socket.io server, site handshake and update receiver. */
async function startBenchCoordinator(o: BenchCoordinatorOptions): Promise<BenchCoordinator> {
  const { coordinator, site, siteId, round, weights, disconnectAfter, log } = o;
  const dir = await mkdtemp(path.join(tmpdir(), 'patchfed-transfer-'));
  const receiver = new UpdateReceiver({ directory: dir, coordinatorBoxSecretKey: coordinator.boxSecretKey });
  const seen: BenchCoordinator['seen'] = { sha256Received: '', decodedEqual: false, ackedBeforeDisconnect: null };
  let dropped = false;

  const http = createServer();
  const server = new Server(http, { maxHttpBufferSize: SOCKET_IO_MAX_HTTP_BUFFER_SIZE, transports: ['websocket'] });
  server.on('connection', (socket) => {
    const plain = socketHandlers(socket, (e) => log(`internal error: ${String(e)}`));
    const base = o.tamperChunkIndex === undefined ? plain : flipByteOfChunk(plain, o.tamperChunkIndex);
    // Only the first connection is dropped; the resumed one runs to the end.
    const handlers = disconnectAfter !== null && !dropped ? dropAfterAcks(base, disconnectAfter, () => socket.disconnect(true), () => {
      dropped = true;
      seen.ackedBeforeDisconnect = disconnectAfter;
      log(`server: dropping the connection after ${disconnectAfter} acknowledged chunks`);
    }) : base;
    acceptSiteHandshake(handlers, {
      coordinatorKeys: coordinator,
      enrolledKeys: (id) => (id === siteId ? publicKeysOf(site) : undefined),
      onAuthenticated: (s) => {
        receiver.attach(handlers, {
          siteId: s.siteId,
          siteKeys: s.siteKeys,
          currentRound: () => round,
          onComplete: async (upload) => {
            seen.sha256Received = await sha256OfFile(upload.path);
            seen.decodedEqual = sameWeights(weights, await decodeWeightsFile(upload.path, { expectedManifest: weights.manifest }));
          },
        });
      },
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  return {
    port,
    receiver,
    seen,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await receiver.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The site side: each connect() is a fresh socket.io connection, authenticated (as after a reconnect). */
function siteConnector(o: { port: number; coordinator: KeyPairs; site: KeyPairs; siteId: string; log: (line: string) => void }) {
  const clients: ClientSocket[] = [];
  const connect = async (attempt: number) => {
    const socket = connectClient(`http://127.0.0.1:${o.port}`, { transports: ['websocket'], reconnection: false, forceNew: true });
    clients.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    const transport = socketRequester(socket);
    await authenticateSite(transport, { siteId: o.siteId, siteKeys: o.site, pinnedCoordinatorSignPublicKey: o.coordinator.signPublicKey, agentVersion: 'bench' });
    o.log(`client: connected and authenticated (attempt ${attempt})`);
    return transport;
  };
  return { connect, disconnectAll: () => clients.forEach((c) => c.disconnect()) };
}
