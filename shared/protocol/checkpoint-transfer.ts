/**
 * Checkpoint download (coordinator → site), pulled by the site chunk by chunk:
 *   checkpoint-request {experimentId, version, index} → checkpoint-chunk {index, chunkCount, data}
 * The site checks the coordinator's signature over the announced size and sha256 BEFORE
 * downloading, decodes while it downloads (no second copy of the payload), and accepts the
 * weights only if size and sha256 match at the end. A download resumes where it stopped.
 */
import { createHash } from 'node:crypto';
import { PatchFedError, errorMessage } from '../errors.ts';
import type { NamedWeights, WeightSpec } from '../weights.ts';
import { verifyCheckpointDigest, verifyCheckpointSignature, type SignedCheckpoint } from '../crypto/seal.ts';
import { WeightsDecoder } from '../codec/weights-codec.ts';
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from './limits.ts';
import { encodeMessage, makeReply, parseMessage, parseReply, type Message } from './messages.ts';
import type { HandlerTransport, RequestTransport } from './transport.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS } from './transfer.ts';

/** A checkpoint's bytes as the server reads them: its size and any range of it. */
export interface CheckpointBytes {
  size: number;
  read(offset: number, length: number): Uint8Array;
}

/** Coordinator side: answers checkpoint-request from the checkpoint `lookup` returns (a buffer, or bytes read on demand). */
export function serveCheckpoints(
  handlers: HandlerTransport,
  lookup: (experimentId: string, version: number) => Uint8Array | CheckpointBytes | undefined,
  chunkBytes = DEFAULT_CHUNK_BYTES,
): () => void {
  if (!Number.isInteger(chunkBytes) || chunkBytes < MIN_CHUNK_BYTES || chunkBytes > MAX_CHUNK_BYTES) {
    throw new PatchFedError('bad-chunk-size', `Chunk size must be ${MIN_CHUNK_BYTES}..${MAX_CHUNK_BYTES} bytes, got ${chunkBytes}.`);
  }
  return handlers.handle('checkpoint-request', (payload) => {
    const m = parseMessage('checkpoint-request', payload);
    const found = lookup(m.experimentId, m.version);
    if (!found) throw new PatchFedError('unknown-checkpoint', `No checkpoint v${m.version} of experiment '${m.experimentId}' is available.`, { subject: m.experimentId });
    const content: CheckpointBytes = found instanceof Uint8Array ? { size: found.length, read: (offset, length) => found.subarray(offset, offset + length) } : found;
    const chunkCount = Math.ceil(content.size / chunkBytes);
    if (m.index >= chunkCount) throw new PatchFedError('chunk-wrong-index', `Checkpoint v${m.version} has ${chunkCount} chunks; chunk ${m.index} does not exist.`, { subject: m.experimentId });
    const start = m.index * chunkBytes;
    const data = content.read(start, Math.min(chunkBytes, content.size - start));
    return makeReply('checkpoint-chunk', { experimentId: m.experimentId, version: m.version, index: m.index, chunkCount, data });
  });
}

export interface CheckpointDownloadOptions {
  experimentId: string;
  /** As announced in the round task. */
  checkpoint: Message<'round-task'>['checkpoint'];
  pinnedCoordinatorSignPublicKey: Uint8Array;
  /** If given, the checkpoint must have exactly these tensors. */
  expectedManifest?: readonly WeightSpec[];
  timeoutMs?: number;
  onProgress?: (bytes: number, total: number) => void;
}

export class CheckpointDownload {
  private readonly signed: SignedCheckpoint;
  private readonly decoder: WeightsDecoder;
  private readonly hash = createHash('sha256');
  private nextIndex = 0;
  private chunkCount = -1;
  private received = 0;
  private result: NamedWeights | null = null;
  private digest: Uint8Array | null = null;

  constructor(private readonly opts: CheckpointDownloadOptions) {
    this.signed = { experimentId: opts.experimentId, ...opts.checkpoint };
    // Refuse a forged announcement before moving a single byte.
    verifyCheckpointSignature(this.signed, opts.pinnedCoordinatorSignPublicKey);
    this.decoder = new WeightsDecoder({
      maxBytes: opts.checkpoint.size,
      expectedManifest: opts.expectedManifest,
      source: `checkpoint v${opts.checkpoint.version} of experiment '${opts.experimentId}'`,
    });
  }

  /** Downloads the remaining chunks; call again with a new transport after 'transfer-interrupted'. */
  async run(transport: RequestTransport): Promise<NamedWeights> {
    if (this.result) return this.result;
    const { experimentId } = this.opts;
    const { version, size } = this.opts.checkpoint;
    while (this.chunkCount < 0 || this.nextIndex < this.chunkCount) {
      const request = { experimentId, version, index: this.nextIndex };
      let raw: unknown;
      try {
        raw = await transport.request('checkpoint-request', encodeMessage('checkpoint-request', request), this.opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
      } catch (e) {
        throw new PatchFedError('transfer-interrupted', `Checkpoint download interrupted at chunk ${this.nextIndex} (${errorMessage(e)}); reconnect and resume.`, { subject: experimentId, cause: e });
      }
      const reply = parseReply('checkpoint-request', raw);
      if (reply.type === 'error') {
        const err = reply.payload as Message<'error'>;
        throw new PatchFedError(err.code === 'transfer-interrupted' ? 'remote-error' : err.code, `Coordinator refused checkpoint chunk ${this.nextIndex}: ${err.message}`, { subject: experimentId });
      }
      const c = reply.payload as Message<'checkpoint-chunk'>;
      if (c.experimentId !== experimentId || c.version !== version || c.index !== this.nextIndex || (this.chunkCount >= 0 && c.chunkCount !== this.chunkCount)) {
        throw new PatchFedError('bad-reply', `Coordinator sent checkpoint chunk ${c.index}/${c.chunkCount} of '${c.experimentId}' v${c.version} when chunk ${this.nextIndex} of '${experimentId}' v${version} was requested.`, { subject: experimentId });
      }
      this.chunkCount = c.chunkCount;
      if (this.received + c.data.length > size) {
        throw new PatchFedError('checkpoint-size-mismatch', `Checkpoint v${version} of '${experimentId}' is larger than the announced ${size} bytes; refusing it.`, { subject: experimentId });
      }
      this.hash.update(c.data);
      this.decoder.push(c.data);
      this.received += c.data.length;
      this.nextIndex++;
      this.opts.onProgress?.(this.received, size);
    }
    this.digest ??= new Uint8Array(this.hash.digest());
    verifyCheckpointDigest(this.digest, this.received, this.signed, this.opts.pinnedCoordinatorSignPublicKey);
    this.result = this.decoder.finish();
    return this.result;
  }
}
