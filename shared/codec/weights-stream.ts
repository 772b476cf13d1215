/**
 * The one parser of the PFW weights format (weights-codec.ts describes the layout): bytes go in,
 * in chunks of any size, and come out as the manifest followed by runs of float32 values, tensor
 * by tensor. Everything that reads weights builds on it — the decoder that collects a checkpoint
 * into arrays, the checks that inspect an update while its chunks arrive, the aggregator that
 * streams a spooled update from disk — so the format is parsed in one place.
 *
 * Runs are handed out as Float32Array views that are valid only during the callback: aligned
 * little-endian input is viewed in place (no copy); otherwise the bytes go through one reusable
 * scratch buffer. A value split across two chunks is carried over. Nothing is allocated in
 * proportion to the payload.
 */
import { endianness } from 'node:os';
import { PatchFedError } from '../errors.ts';
import { sizeOf, type WeightSpec } from '../weights.ts';
import { checkManifestMatches, parseManifestJson } from './manifest.ts';

export const WEIGHTS_MAGIC = 'PFW1';
export const WEIGHTS_FORMAT_VERSION = 1;
export const WEIGHTS_HEADER_BYTES = 12;
/** Default cap on a whole encoded payload (the thesis U-Net is ~100 MB; 250M parameters ~1 GB). */
export const DEFAULT_MAX_WEIGHTS_BYTES = 2 * 1024 * 1024 * 1024;
/** Manifest JSON cap: ~4096 tensors with long names fit comfortably. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';
export const MAGIC_BYTES = new TextEncoder().encode(WEIGHTS_MAGIC);
/** Values per scratch run when input must be copied (unaligned or big-endian host). */
const SCRATCH_VALUES = 256 * 1024;

export function manifestPadding(manifestLength: number): number {
  return (4 - (manifestLength % 4)) % 4;
}

/** Bytes before the first value, for a manifest JSON of `manifestLength` bytes. */
export function valuesOffset(manifestLength: number): number {
  return WEIGHTS_HEADER_BYTES + manifestLength + manifestPadding(manifestLength);
}

export interface WeightsStreamOptions {
  /** Refuse payloads larger than this many bytes (default 2 GiB). */
  maxBytes?: number;
  /** If given, the payload must carry exactly these tensors (names, shapes, roles), in order. */
  expectedManifest?: readonly WeightSpec[];
  /** Names the payload in error messages, e.g. "update from site 'a' (round 3)". */
  source?: string;
}

export interface WeightsStreamHandler {
  /** Once, when the manifest has been read and checked; `totalBytes` is the exact payload size. */
  manifest?(manifest: readonly WeightSpec[], totalBytes: number): void;
  /** Consecutive values of tensor `tensor` from element `offset`; `run` is valid only during the call. */
  values?(tensor: number, offset: number, run: Float32Array): void;
}

type Phase = 'header' | 'manifest' | 'values' | 'done';

/**
 * Push-style parser. Errors are PatchFedErrors naming the payload (and the tensor, where there is
 * one); a handler may throw its own to stop the stream. After an error the parser is unusable.
 */
export class WeightsStreamParser {
  readonly source: string;
  private readonly maxBytes: number;
  private readonly expected?: readonly WeightSpec[];
  private phase: Phase = 'header';
  private received = 0;
  private readonly header = new Uint8Array(WEIGHTS_HEADER_BYTES);
  private manifestBytes = new Uint8Array(0);
  private manifestFill = 0;
  private specs: WeightSpec[] = [];
  private sizes: number[] = [];
  private tensor = 0;
  /** Values of the current tensor already handed out. */
  private offset = 0;
  private readonly carry = new Uint8Array(4);
  private carryFill = 0;
  private scratch: Float32Array | null = null;
  private expectedTotal = -1;
  private failed: unknown = null;

  constructor(
    private readonly handler: WeightsStreamHandler,
    options: WeightsStreamOptions = {},
  ) {
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_WEIGHTS_BYTES;
    this.source = options.source ?? 'weights payload';
    this.expected = options.expectedManifest;
  }

  get bytesReceived(): number {
    return this.received;
  }

  /** Exact encoded size, known once the manifest has been read; -1 before. */
  get totalBytes(): number {
    return this.expectedTotal;
  }

  /** The manifest, once read (empty before). */
  get manifest(): readonly WeightSpec[] {
    return this.specs;
  }

  get done(): boolean {
    return this.phase === 'done';
  }

  fail(code: string, reason: string, subject?: string): never {
    const error = new PatchFedError(code, `${this.source}: ${reason}`, { subject: subject ?? this.source });
    this.failed = error;
    throw error;
  }

  push(chunk: Uint8Array): void {
    if (this.failed) throw this.failed;
    try {
      this.consume(chunk);
    } catch (e) {
      this.failed = e;
      throw e;
    }
  }

  /** Refuses a payload that stopped early. */
  finish(): void {
    if (this.failed) throw this.failed;
    if (this.phase === 'done') return;
    const expected = this.expectedTotal >= 0 ? `${this.expectedTotal} bytes` : 'a complete header and manifest';
    const where = this.phase === 'values' ? ` (stopped inside tensor '${this.specs[this.tensor]?.name ?? '?'}')` : '';
    this.fail('weights-truncated', `truncated after ${this.received} bytes, expected ${expected}${where}.`);
  }

  private consume(chunk: Uint8Array): void {
    let pos = 0;
    while (pos < chunk.length) {
      switch (this.phase) {
        case 'header': {
          const n = Math.min(WEIGHTS_HEADER_BYTES - this.received, chunk.length - pos);
          this.header.set(chunk.subarray(pos, pos + n), this.received);
          pos += n;
          this.received += n;
          if (this.received === WEIGHTS_HEADER_BYTES) this.readHeader();
          break;
        }
        case 'manifest': {
          const n = Math.min(this.manifestBytes.length - this.manifestFill, chunk.length - pos);
          this.manifestBytes.set(chunk.subarray(pos, pos + n), this.manifestFill);
          this.manifestFill += n;
          pos += n;
          this.received += n;
          if (this.manifestFill === this.manifestBytes.length) this.readManifest();
          break;
        }
        case 'values':
          pos = this.consumeValues(chunk, pos);
          break;
        case 'done':
          this.fail('weights-trailing-bytes', `${chunk.length - pos} bytes after the last tensor (expected exactly ${this.expectedTotal} bytes).`);
      }
    }
  }

  private readHeader(): void {
    const view = new DataView(this.header.buffer);
    for (let i = 0; i < 4; i++) {
      if (this.header[i] !== MAGIC_BYTES[i]) this.fail('weights-bad-magic', `not a PatchFed weights payload (magic is not '${WEIGHTS_MAGIC}').`);
    }
    const version = view.getUint32(4, true);
    if (version !== WEIGHTS_FORMAT_VERSION) this.fail('weights-bad-version', `format version ${version} is not supported (this PatchFed reads version ${WEIGHTS_FORMAT_VERSION}).`);
    const len = view.getUint32(8, true);
    const maxManifest = Math.min(MAX_MANIFEST_BYTES, this.maxBytes);
    if (len < 2 || len > maxManifest) this.fail('weights-bad-manifest', `manifest length ${len} is outside 2..${maxManifest} bytes.`);
    this.manifestBytes = new Uint8Array(len + manifestPadding(len));
    this.phase = 'manifest';
  }

  private readManifest(): void {
    const len = new DataView(this.header.buffer).getUint32(8, true);
    for (let i = len; i < this.manifestBytes.length; i++) {
      if (this.manifestBytes[i] !== 0) this.fail('weights-bad-manifest', 'manifest padding bytes are not zero.');
    }
    let text = '';
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(this.manifestBytes.subarray(0, len));
    } catch {
      this.fail('weights-bad-manifest', 'manifest is not valid UTF-8.');
    }
    const manifest = parseManifestJson(text, this.source);
    if (this.expected) checkManifestMatches(this.expected, manifest, this.source);
    // Count elements with an early exit, so absurd shapes are refused before anything is allocated.
    let elements = 0;
    const budget = (this.maxBytes - this.received) / 4;
    for (const spec of manifest) {
      elements += sizeOf(spec.shape);
      if (elements > budget) this.fail('weights-too-large', `the manifest describes more than ${this.maxBytes} bytes (the limit for this payload).`);
    }
    this.expectedTotal = this.received + 4 * elements;
    this.specs = manifest;
    this.sizes = manifest.map((s) => sizeOf(s.shape));
    this.manifestBytes = new Uint8Array(0);
    this.phase = 'values';
    this.handler.manifest?.(manifest, this.expectedTotal);
    this.skipCompleteTensors();
  }

  private consumeValues(chunk: Uint8Array, start: number): number {
    let pos = start;
    // A value split across chunks: complete it first.
    if (this.carryFill > 0) {
      const n = Math.min(4 - this.carryFill, chunk.length - pos);
      this.carry.set(chunk.subarray(pos, pos + n), this.carryFill);
      this.carryFill += n;
      pos += n;
      this.received += n;
      if (this.carryFill < 4) return pos;
      this.carryFill = 0;
      this.emit(this.carry, 0, 1);
    }
    while (this.phase === 'values') {
      const whole = Math.floor((chunk.length - pos) / 4);
      if (whole === 0) break;
      const n = Math.min(whole, (this.sizes[this.tensor] ?? 0) - this.offset);
      this.emit(chunk, pos, n);
      pos += 4 * n;
      this.received += 4 * n;
    }
    if (this.phase === 'values' && pos < chunk.length) {
      const rest = chunk.length - pos;
      this.carry.set(chunk.subarray(pos), 0);
      this.carryFill = rest;
      this.received += rest;
      pos = chunk.length;
    }
    return pos;
  }

  /** Hands out `count` values of the current tensor starting at bytes[at], then advances. */
  private emit(bytes: Uint8Array, at: number, count: number): void {
    const onValues = this.handler.values;
    const absolute = bytes.byteOffset + at;
    if (HOST_IS_LITTLE_ENDIAN && absolute % 4 === 0) {
      onValues?.call(this.handler, this.tensor, this.offset, new Float32Array(bytes.buffer, absolute, count));
    } else if (onValues) {
      // Unaligned input or a big-endian host: copy through the scratch buffer in bounded runs.
      const scratch = (this.scratch ??= new Float32Array(SCRATCH_VALUES));
      const scratchBytes = new Uint8Array(scratch.buffer);
      for (let done = 0; done < count; ) {
        const n = Math.min(SCRATCH_VALUES, count - done);
        scratchBytes.set(bytes.subarray(at + 4 * done, at + 4 * (done + n)));
        if (!HOST_IS_LITTLE_ENDIAN) swapBytes32(scratchBytes.subarray(0, 4 * n));
        onValues.call(this.handler, this.tensor, this.offset + done, scratch.subarray(0, n));
        done += n;
      }
    }
    this.offset += count;
    this.skipCompleteTensors();
  }

  private skipCompleteTensors(): void {
    while (this.tensor < this.sizes.length && this.offset === this.sizes[this.tensor]) {
      this.tensor++;
      this.offset = 0;
    }
    if (this.tensor === this.sizes.length) this.phase = 'done';
  }
}

export function swapBytes32(bytes: Uint8Array): void {
  for (let i = 0; i + 3 < bytes.length; i += 4) {
    const a = bytes[i] ?? 0;
    const b = bytes[i + 1] ?? 0;
    bytes[i] = bytes[i + 3] ?? 0;
    bytes[i + 1] = bytes[i + 2] ?? 0;
    bytes[i + 2] = b;
    bytes[i + 3] = a;
  }
}
