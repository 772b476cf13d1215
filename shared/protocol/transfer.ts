/**
 * Chunked, resumable, authenticated upload of an update (site → coordinator).
 *
 *   update-begin  {transferId, round, totalBytes, chunkBytes, chunkCount, sha256}  → transfer-status {nextIndex}
 *   update-chunk  {transferId, index, nonce, ciphertext, signature}  (×chunkCount) → chunk-ack {index}
 *   update-commit {transferId, samples, metrics, signature}                        → commit-ok {sha256}
 *
 * Each chunk is sealed (crypto/seal.ts): encrypted to the coordinator and signed over its
 * round, site, transfer and index. The receiver accepts chunks strictly in order, writes them to
 * a file in its directory (100 MB updates never sit in RAM), hashes them as they arrive, and
 * acknowledges only what is on disk. After a dropped connection the sender asks where to continue
 * (update-resume, or a repeated update-begin) and sends from there, so only unacknowledged chunks
 * move again. The commit is signed over the whole-payload sha256, sample count and metrics.
 */
import { createHash, type Hash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import { PatchFedError, errorMessage } from '../errors.ts';
import { canonicalJson, sha256Hex, toHex } from '../crypto/encoding.ts';
import type { PublicKeys } from '../crypto/keys.ts';
import { SEAL_OVERHEAD_BYTES, deriveSharedKey, openChunk, sealChunk, signCommit, verifyCommit } from '../crypto/seal.ts';
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MAX_PAYLOAD_BYTES, MIN_CHUNK_BYTES } from './limits.ts';
import {
  encodeMessage,
  makeReply,
  parseMessage,
  parseReply,
  type Message,
  type Metrics,
  type Reply,
  type RequestType,
  type WireReply,
} from './messages.ts';
import type { HandlerTransport, RequestTransport } from './transport.ts';

export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_WINDOW = 2;
export const DEFAULT_RETAIN_MS = 30 * 60_000;

export function newTransferId(): string {
  return toHex(nacl.randomBytes(16));
}

// ======================= sender (site side) =======================

export interface UploadProgress {
  transferId: string;
  chunksAcked: number;
  chunkCount: number;
  bytesAcked: number;
  totalBytes: number;
}

export interface UpdateSenderOptions {
  /** The encoded update (shared/codec encodeWeights). */
  payload: Uint8Array;
  round: number;
  siteId: string;
  /** Shared key with the coordinator (deriveSharedKey) and the site's signing key. */
  keys: { sharedKey: Uint8Array; signSecretKey: Uint8Array };
  transferId?: string;
  /** Plaintext bytes per chunk, 1–4 MiB (default 2 MiB). */
  chunkBytes?: number;
  /** Chunks in flight before waiting for the oldest acknowledgement (default 2). */
  window?: number;
  timeoutMs?: number;
  onProgress?: (p: UploadProgress) => void;
  /** What the payload is, announced at update-begin: PFW weights (default) or a masked secure-aggregation ring vector. */
  payloadKind?: 'weights' | 'secagg-ring';
}

export interface SenderStats {
  /** Calls to upload(): 1 + number of resumes. */
  attempts: number;
  /** Chunks put on the wire, including re-sends. */
  chunksSent: number;
  /** Chunks sent again after an interruption (their first copy was not acknowledged). */
  chunksResent: number;
  /** The index the receiver asked to continue from, per attempt. */
  resumedFrom: number[];
}

export interface CommitInfo {
  samples: number;
  metrics: Metrics;
}

/** True for errors after which reconnecting and calling upload() again is the right response. */
export function isTransferInterrupted(e: unknown): boolean {
  return e instanceof PatchFedError && e.code === 'transfer-interrupted';
}

export class UpdateSender {
  readonly transferId: string;
  readonly totalBytes: number;
  readonly chunkBytes: number;
  readonly chunkCount: number;
  readonly sha256: string;
  readonly stats: SenderStats = { attempts: 0, chunksSent: 0, chunksResent: 0, resumedFrom: [] };
  private readonly opts: UpdateSenderOptions;
  private readonly window: number;
  private readonly timeoutMs: number;
  private begun = false;
  private highestSent = -1;
  private acked = new Set<number>();

  constructor(options: UpdateSenderOptions) {
    this.opts = options;
    this.transferId = options.transferId ?? newTransferId();
    this.chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isInteger(this.chunkBytes) || this.chunkBytes < MIN_CHUNK_BYTES || this.chunkBytes > MAX_CHUNK_BYTES) {
      throw new PatchFedError('bad-chunk-size', `Chunk size must be ${MIN_CHUNK_BYTES}..${MAX_CHUNK_BYTES} bytes (1–4 MiB), got ${this.chunkBytes}.`);
    }
    this.totalBytes = options.payload.length;
    if (this.totalBytes < 1 || this.totalBytes > MAX_PAYLOAD_BYTES) {
      throw new PatchFedError('payload-too-large', `An update must be 1..${MAX_PAYLOAD_BYTES} bytes, got ${this.totalBytes}.`);
    }
    this.chunkCount = Math.ceil(this.totalBytes / this.chunkBytes);
    this.window = Math.max(1, Math.min(16, Math.floor(options.window ?? DEFAULT_WINDOW)));
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.sha256 = sha256Hex(options.payload);
  }

  /**
   * Uploads (or, after an interruption, continues uploading) and commits. On a dropped
   * connection it throws PatchFedError 'transfer-interrupted': reconnect, authenticate, and call
   * upload() again with the new transport. Any other error is final.
   */
  async upload(transport: RequestTransport, commit: CommitInfo): Promise<{ sha256: string }> {
    this.stats.attempts++;
    const status = await this.negotiate(transport);
    this.stats.resumedFrom.push(status.nextIndex);
    for (let i = 0; i < status.nextIndex; i++) this.acked.add(i);
    await this.sendChunks(transport, status.nextIndex);
    return this.commit(transport, commit);
  }

  private beginMessage(): Message<'update-begin'> {
    return {
      transferId: this.transferId,
      round: this.opts.round,
      totalBytes: this.totalBytes,
      chunkBytes: this.chunkBytes,
      chunkCount: this.chunkCount,
      sha256: this.sha256,
      ...(this.opts.payloadKind === 'secagg-ring' ? { payload: 'secagg-ring' as const } : {}),
    };
  }

  private async negotiate(transport: RequestTransport): Promise<Message<'transfer-status'>> {
    let reply: Reply<'update-begin'>;
    if (!this.begun) {
      reply = await this.request(transport, 'update-begin', this.beginMessage());
    } else {
      try {
        reply = await this.request(transport, 'update-resume', { transferId: this.transferId });
      } catch (e) {
        // The receiver forgot the transfer (expired or restarted): start it over.
        if (!(e instanceof PatchFedError && e.code === 'unknown-transfer')) throw e;
        reply = await this.request(transport, 'update-begin', this.beginMessage());
      }
    }
    const status = reply.payload as Message<'transfer-status'>;
    if (status.transferId !== this.transferId || status.chunkCount !== this.chunkCount) {
      throw new PatchFedError('bad-reply', `Coordinator answered transfer ${this.transferId} with status for ${status.transferId} (${status.chunkCount} chunks, expected ${this.chunkCount}).`);
    }
    this.begun = true;
    return status;
  }

  private async sendChunks(transport: RequestTransport, start: number): Promise<void> {
    const inflight: Promise<void>[] = [];
    let failure: { error: unknown } | null = null;
    for (let i = start; i < this.chunkCount && !failure; i++) {
      if (inflight.length >= this.window) await inflight.shift();
      if (failure) break;
      inflight.push(
        this.sendChunk(transport, i).catch((error: unknown) => {
          failure ??= { error };
        }),
      );
    }
    await Promise.all(inflight);
    if (failure) throw (failure as { error: unknown }).error;
  }

  private async sendChunk(transport: RequestTransport, index: number): Promise<void> {
    const begin = index * this.chunkBytes;
    const plaintext = this.opts.payload.subarray(begin, Math.min(begin + this.chunkBytes, this.totalBytes));
    const sealed = sealChunk(plaintext, { round: this.opts.round, siteId: this.opts.siteId, transferId: this.transferId, index }, this.opts.keys);
    this.stats.chunksSent++;
    if (index <= this.highestSent) this.stats.chunksResent++;
    this.highestSent = Math.max(this.highestSent, index);
    const reply = await this.request(transport, 'update-chunk', { transferId: this.transferId, index, ...sealed });
    const ack = reply.payload as Message<'chunk-ack'>;
    if (ack.transferId !== this.transferId || ack.index !== index) {
      throw new PatchFedError('bad-reply', `Coordinator acknowledged chunk ${ack.index} of ${ack.transferId} when chunk ${index} of ${this.transferId} was sent.`);
    }
    this.acked.add(index);
    this.opts.onProgress?.({
      transferId: this.transferId,
      chunksAcked: this.acked.size,
      chunkCount: this.chunkCount,
      bytesAcked: Math.min(this.acked.size * this.chunkBytes, this.totalBytes),
      totalBytes: this.totalBytes,
    });
  }

  private async commit(transport: RequestTransport, info: CommitInfo): Promise<{ sha256: string }> {
    const signature = signCommit(
      {
        round: this.opts.round,
        siteId: this.opts.siteId,
        transferId: this.transferId,
        totalBytes: this.totalBytes,
        chunkCount: this.chunkCount,
        sha256: this.sha256,
        samples: info.samples,
        metricsJson: canonicalJson(info.metrics),
      },
      this.opts.keys.signSecretKey,
    );
    const reply = await this.request(transport, 'update-commit', { transferId: this.transferId, samples: info.samples, metrics: info.metrics, signature });
    const ok = reply.payload as Message<'commit-ok'>;
    if (ok.transferId !== this.transferId || ok.sha256 !== this.sha256) {
      throw new PatchFedError('bad-reply', `Coordinator confirmed transfer ${ok.transferId} with sha256 ${ok.sha256}; expected ${this.transferId} with ${this.sha256}.`);
    }
    return { sha256: ok.sha256 };
  }

  private async request<R extends RequestType>(transport: RequestTransport, type: R, data: Message<R>): Promise<Reply<R>> {
    const wire = encodeMessage(type, data);
    let raw: unknown;
    try {
      raw = await transport.request(type, wire, this.timeoutMs);
    } catch (e) {
      throw new PatchFedError('transfer-interrupted', `Upload ${this.transferId} interrupted during '${type}' (${errorMessage(e)}); reconnect and resume.`, { subject: this.transferId, cause: e });
    }
    const reply = parseReply(type, raw);
    if (reply.type === 'error') {
      const { code, message } = reply.payload as Message<'error'>;
      // A peer must not be able to make us retry forever by claiming an interruption.
      throw new PatchFedError(code === 'transfer-interrupted' ? 'remote-error' : code, `Coordinator refused '${type}' of upload ${this.transferId}: ${message}`, { subject: this.transferId });
    }
    return reply;
  }
}

/**
 * Drives an upload across reconnects: `connect(attempt)` must return a fresh, authenticated
 * transport. Gives up after `maxAttempts` interruptions; other errors propagate at once.
 */
export async function uploadWithResume(
  sender: UpdateSender,
  connect: (attempt: number) => Promise<RequestTransport>,
  commit: CommitInfo,
  options: { maxAttempts?: number; onInterrupted?: (e: PatchFedError, attempt: number) => void } = {},
): Promise<{ sha256: string }> {
  const maxAttempts = options.maxAttempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    const transport = await connect(attempt);
    try {
      return await sender.upload(transport, commit);
    } catch (e) {
      if (!isTransferInterrupted(e) || attempt >= maxAttempts) throw e;
      options.onInterrupted?.(e as PatchFedError, attempt);
    }
  }
}

// ======================= receiver (coordinator side) =======================

export interface CompletedUpload {
  siteId: string;
  transferId: string;
  round: number;
  totalBytes: number;
  sha256: string;
  samples: number;
  metrics: Metrics;
  /** The plaintext payload on disk; deleted after onComplete resolves. */
  path: string;
}

export interface SitePeer {
  /** The authenticated site on this connection. */
  siteId: string;
  siteKeys: PublicKeys;
  /** The round this site may upload for right now. */
  currentRound: () => number;
  /**
   * Called when an upload begins: the checks its plaintext must pass, fed every chunk as it is
   * decrypted and ended at commit (shared/codec StreamingInspection). A check that throws refuses
   * the chunk (or the commit) with its error, and the transfer is discarded.
   */
  inspect?: (upload: { transferId: string; round: number; totalBytes: number }) => UploadInspection;
  /**
   * Called once per verified upload. Read the file inside it; throw a PatchFedError to
   * refuse the update (the site receives that error instead of commit-ok).
   */
  onComplete: (upload: CompletedUpload) => Promise<void> | void;
}

/** Checks run over an upload's plaintext while it arrives. */
export interface UploadInspection {
  push(plaintext: Uint8Array): void;
  /** After the last chunk, before onComplete: whole-payload checks (length, norm bound). */
  end(): void;
}

export interface UpdateReceiverOptions {
  /** Where partial uploads are written (created, mode 0700). */
  directory: string;
  coordinatorBoxSecretKey: Uint8Array;
  /** How long an idle partial upload is kept for a resume (default 30 min). */
  retainMs?: number;
  maxPayloadBytes?: number;
  onInternalError?: (e: unknown) => void;
  /** Clock, injectable for tests. */
  now?: () => number;
}

interface PartialUpload {
  siteId: string;
  transferId: string;
  round: number;
  totalBytes: number;
  chunkBytes: number;
  chunkCount: number;
  sha256: string;
  nextIndex: number;
  hash: Hash;
  file: FileHandle;
  path: string;
  lastActivity: number;
  inspection: UploadInspection | null;
}

interface FinishedUpload {
  chunkCount: number;
  sha256: string;
  commitSignature: Uint8Array;
  expiresAt: number;
}

export interface ReceiverStats {
  chunksStored: number;
  duplicateChunks: number;
  chunksRejected: number;
}

/**
 * Coordinator side of uploads, shared by all connections. Idle partial uploads are dropped
 * lazily on begin/resume; call sweep() periodically as well to release their files sooner.
 */
export class UpdateReceiver {
  readonly stats: ReceiverStats = { chunksStored: 0, duplicateChunks: 0, chunksRejected: 0 };
  private readonly directory: string;
  private readonly retainMs: number;
  private readonly maxPayloadBytes: number;
  private readonly now: () => number;
  private readonly partial = new Map<string, PartialUpload>();
  private readonly finished = new Map<string, FinishedUpload>();
  /** Requests of one site are handled one after another, in arrival order. */
  private readonly siteQueues = new Map<string, Promise<unknown>>();

  constructor(private readonly options: UpdateReceiverOptions) {
    this.directory = path.resolve(options.directory);
    mkdirSync(this.directory, { recursive: true, mode: 0o700 });
    // Partial-upload state lives only in memory: .part files left by an earlier process can never be resumed.
    for (const name of readdirSync(this.directory)) if (/^[0-9a-f]{32}\.part$/.test(name)) rmSync(path.join(this.directory, name), { force: true });
    this.retainMs = options.retainMs ?? DEFAULT_RETAIN_MS;
    this.maxPayloadBytes = Math.min(options.maxPayloadBytes ?? MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES);
    this.now = options.now ?? Date.now;
  }

  get partialUploads(): number {
    return this.partial.size;
  }

  /** Serves one authenticated site connection; returns a function that detaches the handlers. */
  attach(handlers: HandlerTransport, peer: SitePeer): () => void {
    const sharedKey = deriveSharedKey(peer.siteKeys.boxPublicKey, this.options.coordinatorBoxSecretKey);
    const serial = (fn: (payload: unknown) => Promise<WireReply>) => (payload: unknown) => this.enqueue(peer.siteId, () => fn(payload));
    const off = [
      handlers.handle('update-begin', serial((p) => this.begin(peer, p))),
      handlers.handle('update-resume', serial((p) => this.resume(peer, p))),
      handlers.handle('update-chunk', serial((p) => this.chunk(peer, sharedKey, p))),
      handlers.handle('update-commit', serial((p) => this.commit(peer, p))),
    ];
    return () => off.forEach((f) => f());
  }

  private enqueue<T>(siteId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.siteQueues.get(siteId) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.siteQueues.set(siteId, settled);
    void settled.then(() => {
      if (this.siteQueues.get(siteId) === settled) this.siteQueues.delete(siteId);
    });
    return run;
  }

  private key(siteId: string, transferId: string): string {
    return `${siteId}\u0000${transferId}`;
  }

  private async begin(peer: SitePeer, payload: unknown): Promise<WireReply> {
    const m = parseMessage('update-begin', payload);
    await this.sweep();
    const key = this.key(peer.siteId, m.transferId);
    const done = this.finished.get(key);
    if (done) return makeReply('transfer-status', { transferId: m.transferId, nextIndex: done.chunkCount, chunkCount: done.chunkCount });
    const existing = this.partial.get(key);
    if (existing) {
      const same = existing.round === m.round && existing.totalBytes === m.totalBytes && existing.chunkBytes === m.chunkBytes && existing.sha256 === m.sha256;
      if (!same) throw new PatchFedError('transfer-conflict', `Upload ${m.transferId} from site '${peer.siteId}' was begun with different parameters; use a new transfer id.`, { subject: peer.siteId });
      existing.lastActivity = this.now();
      return makeReply('transfer-status', { transferId: m.transferId, nextIndex: existing.nextIndex, chunkCount: existing.chunkCount });
    }
    const round = peer.currentRound();
    if (m.round !== round) {
      throw new PatchFedError('wrong-round', `Site '${peer.siteId}' began an upload for round ${m.round}, but the current round is ${round}.`, { subject: peer.siteId });
    }
    if (m.totalBytes > this.maxPayloadBytes) {
      throw new PatchFedError('payload-too-large', `Site '${peer.siteId}' announced a ${m.totalBytes}-byte update; the limit is ${this.maxPayloadBytes} bytes.`, { subject: peer.siteId });
    }
    const inspection = peer.inspect?.({ transferId: m.transferId, round: m.round, totalBytes: m.totalBytes }) ?? null;
    // One upload in progress per site bounds disk use: a new one replaces an abandoned one.
    for (const [k, t] of this.partial) if (t.siteId === peer.siteId) await this.discard(k);
    const file = path.join(this.directory, `${sha256Hex(new TextEncoder().encode(key)).slice(0, 32)}.part`);
    const handle = await open(file, 'w', 0o600);
    this.partial.set(key, {
      siteId: peer.siteId,
      transferId: m.transferId,
      round: m.round,
      totalBytes: m.totalBytes,
      chunkBytes: m.chunkBytes,
      chunkCount: m.chunkCount,
      sha256: m.sha256,
      nextIndex: 0,
      hash: createHash('sha256'),
      file: handle,
      path: file,
      lastActivity: this.now(),
      inspection,
    });
    return makeReply('transfer-status', { transferId: m.transferId, nextIndex: 0, chunkCount: m.chunkCount });
  }

  private async resume(peer: SitePeer, payload: unknown): Promise<WireReply> {
    const m = parseMessage('update-resume', payload);
    await this.sweep();
    const key = this.key(peer.siteId, m.transferId);
    const done = this.finished.get(key);
    if (done) return makeReply('transfer-status', { transferId: m.transferId, nextIndex: done.chunkCount, chunkCount: done.chunkCount });
    const t = this.partial.get(key);
    if (!t) throw new PatchFedError('unknown-transfer', `No upload ${m.transferId} from site '${peer.siteId}' is in progress (expired or never begun).`, { subject: peer.siteId });
    t.lastActivity = this.now();
    return makeReply('transfer-status', { transferId: t.transferId, nextIndex: t.nextIndex, chunkCount: t.chunkCount });
  }

  private async chunk(peer: SitePeer, sharedKey: Uint8Array, payload: unknown): Promise<WireReply> {
    const m = parseMessage('update-chunk', payload);
    const key = this.key(peer.siteId, m.transferId);
    const done = this.finished.get(key);
    if (done && m.index < done.chunkCount) {
      this.stats.duplicateChunks++;
      return makeReply('chunk-ack', { transferId: m.transferId, index: m.index });
    }
    const t = this.partial.get(key);
    if (!t) throw new PatchFedError('unknown-transfer', `Chunk ${m.index} for upload ${m.transferId}, which site '${peer.siteId}' has not begun (or which expired).`, { subject: peer.siteId });
    t.lastActivity = this.now();
    if (m.index < t.nextIndex) {
      // Sent again because its acknowledgement was lost: we already have it.
      this.stats.duplicateChunks++;
      return makeReply('chunk-ack', { transferId: m.transferId, index: m.index });
    }
    if (m.index >= t.chunkCount) {
      throw new PatchFedError('chunk-wrong-index', `Chunk index ${m.index} is beyond the ${t.chunkCount} chunks of upload ${t.transferId}.`, { subject: peer.siteId });
    }
    const expectedPlain = Math.min(t.chunkBytes, t.totalBytes - m.index * t.chunkBytes);
    let plaintext: Uint8Array;
    try {
      if (m.index > t.nextIndex) {
        throw new PatchFedError('chunk-wrong-index', `Upload ${t.transferId} from site '${peer.siteId}': got chunk ${m.index}, expected chunk ${t.nextIndex} (chunks must arrive in order).`, { subject: peer.siteId });
      }
      if (m.ciphertext.length !== expectedPlain + SEAL_OVERHEAD_BYTES) {
        throw new PatchFedError('chunk-wrong-size', `Upload ${t.transferId} from site '${peer.siteId}': chunk ${m.index} carries ${m.ciphertext.length - SEAL_OVERHEAD_BYTES} bytes, expected ${expectedPlain}.`, { subject: peer.siteId });
      }
      plaintext = openChunk(
        { transferId: m.transferId, siteId: peer.siteId, round: t.round, index: m.index, nonce: m.nonce, ciphertext: m.ciphertext, signature: m.signature },
        { transferId: t.transferId, siteId: peer.siteId, round: peer.currentRound(), index: t.nextIndex },
        { sharedKey, senderSignPublicKey: peer.siteKeys.signPublicKey },
      );
    } catch (e) {
      this.stats.chunksRejected++;
      throw e;
    }
    try {
      t.inspection?.push(plaintext);
    } catch (e) {
      // The update itself is unacceptable (wrong manifest, a NaN...): nothing more of it is taken.
      this.stats.chunksRejected++;
      await this.discard(key);
      throw e;
    }
    await t.file.write(plaintext, 0, plaintext.length, m.index * t.chunkBytes);
    t.hash.update(plaintext);
    t.nextIndex++;
    this.stats.chunksStored++;
    return makeReply('chunk-ack', { transferId: t.transferId, index: m.index });
  }

  private async commit(peer: SitePeer, payload: unknown): Promise<WireReply> {
    const m = parseMessage('update-commit', payload);
    const key = this.key(peer.siteId, m.transferId);
    const done = this.finished.get(key);
    if (done) {
      // The site did not get our commit-ok (dropped connection) and asks again.
      if (Buffer.compare(done.commitSignature, m.signature) === 0) return makeReply('commit-ok', { transferId: m.transferId, sha256: done.sha256 });
      throw new PatchFedError('transfer-complete', `Upload ${m.transferId} from site '${peer.siteId}' was already committed.`, { subject: peer.siteId });
    }
    const t = this.partial.get(key);
    if (!t) throw new PatchFedError('unknown-transfer', `Commit for upload ${m.transferId}, which site '${peer.siteId}' has not begun (or which expired).`, { subject: peer.siteId });
    if (t.nextIndex !== t.chunkCount) {
      throw new PatchFedError('transfer-incomplete', `Upload ${t.transferId} from site '${peer.siteId}' is incomplete: ${t.nextIndex} of ${t.chunkCount} chunks received.`, { subject: peer.siteId });
    }
    verifyCommit(
      {
        round: t.round,
        siteId: peer.siteId,
        transferId: t.transferId,
        totalBytes: t.totalBytes,
        chunkCount: t.chunkCount,
        sha256: t.sha256,
        samples: m.samples,
        metricsJson: canonicalJson(m.metrics),
      },
      m.signature,
      peer.siteKeys.signPublicKey,
    );
    const actual = t.hash.digest('hex');
    if (actual !== t.sha256) {
      await this.discard(key);
      throw new PatchFedError('payload-hash-mismatch', `Upload ${t.transferId} from site '${peer.siteId}' has sha256 ${actual}, but ${t.sha256} was announced; discarded.`, { subject: peer.siteId });
    }
    const round = peer.currentRound();
    if (t.round !== round) {
      await this.discard(key);
      throw new PatchFedError('wrong-round', `Upload ${t.transferId} from site '${peer.siteId}' is for round ${t.round}, but the current round is ${round}; discarded.`, { subject: peer.siteId });
    }
    try {
      t.inspection?.end();
    } catch (e) {
      await this.discard(key);
      throw e;
    }
    await t.file.close();
    this.partial.delete(key);
    try {
      await peer.onComplete({
        siteId: peer.siteId,
        transferId: t.transferId,
        round: t.round,
        totalBytes: t.totalBytes,
        sha256: t.sha256,
        samples: m.samples,
        metrics: m.metrics,
        path: t.path,
      });
    } finally {
      await rm(t.path, { force: true });
    }
    this.finished.set(key, { chunkCount: t.chunkCount, sha256: t.sha256, commitSignature: m.signature, expiresAt: this.now() + this.retainMs });
    return makeReply('commit-ok', { transferId: t.transferId, sha256: t.sha256 });
  }

  private async discard(key: string): Promise<void> {
    const t = this.partial.get(key);
    if (!t) return;
    this.partial.delete(key);
    await t.file.close().catch(() => undefined);
    await rm(t.path, { force: true });
  }

  /** Drops partial uploads idle for longer than retainMs; returns how many were dropped. */
  async sweep(): Promise<number> {
    const now = this.now();
    let dropped = 0;
    for (const [key, t] of [...this.partial]) {
      if (now - t.lastActivity > this.retainMs) {
        await this.discard(key);
        dropped++;
      }
    }
    for (const [key, f] of [...this.finished]) if (f.expiresAt < now) this.finished.delete(key);
    return dropped;
  }

  /** Closes and deletes every partial upload. */
  async close(): Promise<void> {
    for (const key of [...this.partial.keys()]) await this.discard(key);
    this.finished.clear();
  }
}
