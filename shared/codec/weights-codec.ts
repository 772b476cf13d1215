/**
 * NamedWeights <-> bytes, the payload of every update and checkpoint.
 *
 *   offset 0   'PFW1'                      magic
 *          4   uint32 LE                   format version (1)
 *          8   uint32 LE                   manifest length L (bytes of UTF-8 JSON)
 *         12   L bytes                     manifest JSON {"tensors":[WeightSpec...]}
 *     12 + L   0-3 zero bytes              padding to a multiple of 4
 *          …   float32 LE values           tensors in manifest order, no gaps
 *
 * Decoding is strict (exact total length, schema-checked manifest, every value finite) and
 * refuses before allocating anything the manifest cannot justify. The decoder accepts the bytes
 * in arbitrary chunks and copies each byte once, straight into the destination Float32Arrays.
 */
import { endianness } from 'node:os';
import { PatchFedError } from '../errors.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../weights.ts';
import { checkManifestMatches, parseManifestJson } from './manifest.ts';

export const WEIGHTS_MAGIC = 'PFW1';
export const WEIGHTS_FORMAT_VERSION = 1;
export const WEIGHTS_HEADER_BYTES = 12;
/** Default cap on a whole encoded payload (the thesis U-Net is ~100 MB). */
export const DEFAULT_MAX_WEIGHTS_BYTES = 1024 * 1024 * 1024;

const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';
const MAGIC_BYTES = new TextEncoder().encode(WEIGHTS_MAGIC);

export interface DecodeWeightsOptions {
  /** Refuse payloads larger than this many bytes (default 1 GiB). */
  maxBytes?: number;
  /** If given, the payload must carry exactly these tensor names and shapes, in this order. */
  expectedManifest?: readonly WeightSpec[];
  /** Names the payload in error messages, e.g. "update from site 'a' round 3". */
  source?: string;
}

function manifestPadding(manifestLength: number): number {
  return (4 - (manifestLength % 4)) % 4;
}

/** Exact encoded size for a manifest, without encoding anything. */
export function encodedWeightsSize(manifest: readonly WeightSpec[]): number {
  const json = manifestJson(manifest);
  const len = Buffer.byteLength(json, 'utf8');
  return WEIGHTS_HEADER_BYTES + len + manifestPadding(len) + 4 * manifest.reduce((n, s) => n + sizeOf(s.shape), 0);
}

function manifestJson(manifest: readonly WeightSpec[]): string {
  // Only the four known fields, in a fixed order, so equal manifests encode to equal bytes.
  return JSON.stringify({ tensors: manifest.map((s) => ({ name: s.name, shape: s.shape, trainable: s.trainable, role: s.role })) });
}

function nonFiniteError(name: string, index: number, value: number, source: string): PatchFedError {
  return new PatchFedError('weights-not-finite', `${source}: tensor '${name}' has a non-finite value (${value}) at element ${index}.`, { subject: name });
}

/** First non-finite element, or -1. A plain loop: ~25M floats take a few tens of ms. */
export function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v - v !== 0) return i; // NaN - NaN and ±Inf - ±Inf are NaN
  }
  return -1;
}

function swapBytes32(bytes: Uint8Array): void {
  for (let i = 0; i + 3 < bytes.length; i += 4) {
    const a = bytes[i]!, b = bytes[i + 1]!;
    bytes[i] = bytes[i + 3]!;
    bytes[i + 1] = bytes[i + 2]!;
    bytes[i + 2] = b;
    bytes[i + 3] = a;
  }
}

/** Encodes; refuses inconsistent lengths and non-finite values (naming the tensor). */
export function encodeWeights(weights: NamedWeights, source = 'weights'): Uint8Array {
  const { manifest, values } = weights;
  if (values.length !== manifest.length) {
    throw new PatchFedError('weights-inconsistent', `${source}: manifest lists ${manifest.length} tensors but ${values.length} value arrays were given.`);
  }
  // Re-validate the manifest the same way the decoder will, so we never send what the peer refuses.
  const json = manifestJson(manifest);
  parseManifestJson(json, source);
  for (let i = 0; i < manifest.length; i++) {
    const spec = manifest[i]!;
    const v = values[i]!;
    if (!(v instanceof Float32Array) || v.length !== sizeOf(spec.shape)) {
      throw new PatchFedError('weights-inconsistent', `${source}: tensor '${spec.name}' has shape [${spec.shape}] (${sizeOf(spec.shape)} values) but ${v instanceof Float32Array ? v.length : 'no Float32Array of'} values.`, { subject: spec.name });
    }
    const bad = firstNonFinite(v);
    if (bad >= 0) throw nonFiniteError(spec.name, bad, v[bad]!, source);
  }
  const jsonBytes = new TextEncoder().encode(json);
  const pad = manifestPadding(jsonBytes.length);
  const total = WEIGHTS_HEADER_BYTES + jsonBytes.length + pad + 4 * values.reduce((n, v) => n + v.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(MAGIC_BYTES, 0);
  view.setUint32(4, WEIGHTS_FORMAT_VERSION, true);
  view.setUint32(8, jsonBytes.length, true);
  out.set(jsonBytes, WEIGHTS_HEADER_BYTES);
  let off = WEIGHTS_HEADER_BYTES + jsonBytes.length + pad;
  for (const v of values) {
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    out.set(bytes, off);
    if (!HOST_IS_LITTLE_ENDIAN) swapBytes32(out.subarray(off, off + bytes.length));
    off += bytes.length;
  }
  return out;
}

type Phase = 'header' | 'manifest' | 'values' | 'done';

/**
 * Incremental decoder: `push` chunks in order, then `finish()`. Errors are PatchFedErrors
 * naming the payload (and tensor, where there is one); after an error the decoder is unusable.
 */
export class WeightsDecoder {
  private readonly maxBytes: number;
  private readonly source: string;
  private readonly expected?: readonly WeightSpec[];
  private phase: Phase = 'header';
  private received = 0;
  private readonly header = new Uint8Array(WEIGHTS_HEADER_BYTES);
  private manifestBytes = new Uint8Array(0);
  private manifestFill = 0;
  private manifest: WeightSpec[] = [];
  private values: Float32Array[] = [];
  private tensor = 0;
  private tensorFill = 0; // bytes of values[tensor] written so far
  private expectedTotal = -1;
  private failed: PatchFedError | null = null;

  constructor(options: DecodeWeightsOptions = {}) {
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_WEIGHTS_BYTES;
    this.source = options.source ?? 'weights payload';
    this.expected = options.expectedManifest;
  }

  get bytesReceived(): number {
    return this.received;
  }

  /** Total encoded size, known once the manifest has been read; -1 before. */
  get totalBytes(): number {
    return this.expectedTotal;
  }

  private fail(code: string, reason: string, subject?: string): never {
    this.failed = new PatchFedError(code, `${this.source}: ${reason}`, { subject: subject ?? this.source });
    throw this.failed;
  }

  push(chunk: Uint8Array): void {
    if (this.failed) throw this.failed;
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
        case 'values': {
          const target = this.values[this.tensor]!;
          const n = Math.min(target.byteLength - this.tensorFill, chunk.length - pos);
          new Uint8Array(target.buffer, this.tensorFill, n).set(chunk.subarray(pos, pos + n));
          this.tensorFill += n;
          pos += n;
          this.received += n;
          if (this.tensorFill === target.byteLength) this.completeTensor();
          break;
        }
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
    const maxManifest = Math.min(MAX_MANIFEST_BYTES_FOR_DECODE, this.maxBytes);
    if (len < 2 || len > maxManifest) this.fail('weights-bad-manifest', `manifest length ${len} is outside 2..${maxManifest} bytes.`);
    this.manifestBytes = new Uint8Array(len + manifestPadding(len));
    this.phase = 'manifest';
  }

  private readManifest(): void {
    const len = new DataView(this.header.buffer).getUint32(8, true);
    for (let i = len; i < this.manifestBytes.length; i++) {
      if (this.manifestBytes[i] !== 0) this.fail('weights-bad-manifest', 'manifest padding bytes are not zero.');
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(this.manifestBytes.subarray(0, len));
    } catch {
      this.fail('weights-bad-manifest', 'manifest is not valid UTF-8.');
    }
    const manifest = parseManifestJson(text, this.source);
    if (this.expected) checkManifestMatches(this.expected, manifest, this.source);
    // Count elements with an early exit, so absurd shapes are refused before any allocation.
    let elements = 0;
    const budget = (this.maxBytes - this.received) / 4;
    for (const spec of manifest) {
      elements += sizeOf(spec.shape);
      if (elements > budget) {
        this.fail('weights-too-large', `the manifest describes more than ${this.maxBytes} bytes (the limit for this payload).`);
      }
    }
    this.expectedTotal = this.received + 4 * elements;
    this.manifest = manifest;
    this.values = manifest.map((s) => new Float32Array(sizeOf(s.shape)));
    this.manifestBytes = new Uint8Array(0);
    this.phase = 'values';
    this.skipEmptyTensors();
  }

  private completeTensor(): void {
    const values = this.values[this.tensor]!;
    if (!HOST_IS_LITTLE_ENDIAN) swapBytes32(new Uint8Array(values.buffer));
    const bad = firstNonFinite(values);
    const name = this.manifest[this.tensor]!.name;
    if (bad >= 0) {
      this.failed = nonFiniteError(name, bad, values[bad]!, this.source);
      throw this.failed;
    }
    this.tensor++;
    this.tensorFill = 0;
    this.skipEmptyTensors();
  }

  private skipEmptyTensors(): void {
    while (this.tensor < this.values.length && this.values[this.tensor]!.length === 0) this.tensor++;
    if (this.tensor === this.values.length) this.phase = 'done';
  }

  /** The decoded weights; refuses a payload that stopped early. */
  finish(): NamedWeights {
    if (this.failed) throw this.failed;
    if (this.phase !== 'done') {
      const expected = this.expectedTotal >= 0 ? `${this.expectedTotal} bytes` : 'a complete header and manifest';
      const where = this.phase === 'values' ? ` (stopped inside tensor '${this.manifest[this.tensor]!.name}')` : '';
      this.fail('weights-truncated', `truncated after ${this.received} bytes, expected ${expected}${where}.`);
    }
    return { manifest: this.manifest, values: this.values };
  }
}

/** Manifest JSON cap: ~4096 tensors with long names fit comfortably. */
const MAX_MANIFEST_BYTES_FOR_DECODE = 4 * 1024 * 1024;

/** Decodes one buffer or a sequence of chunks (each byte is copied once). */
export function decodeWeights(input: Uint8Array | Iterable<Uint8Array>, options: DecodeWeightsOptions = {}): NamedWeights {
  const decoder = new WeightsDecoder(options);
  if (input instanceof Uint8Array) decoder.push(input);
  else for (const chunk of input) decoder.push(chunk);
  return decoder.finish();
}

export async function decodeWeightsStream(chunks: AsyncIterable<Uint8Array>, options: DecodeWeightsOptions = {}): Promise<NamedWeights> {
  const decoder = new WeightsDecoder(options);
  for await (const chunk of chunks) decoder.push(chunk);
  return decoder.finish();
}

/** Decodes a file (e.g. a completed transfer) without reading it into one buffer first. */
export async function decodeWeightsFile(file: string, options: DecodeWeightsOptions = {}): Promise<NamedWeights> {
  const { createReadStream } = await import('node:fs');
  const { stat } = await import('node:fs/promises');
  const st = await stat(file);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_WEIGHTS_BYTES;
  const source = options.source ?? file;
  if (st.size > maxBytes) throw new PatchFedError('weights-too-large', `${source}: file is ${st.size} bytes, over the ${maxBytes}-byte limit.`, { subject: file });
  return decodeWeightsStream(createReadStream(file, { highWaterMark: 1024 * 1024 }), { ...options, source });
}
