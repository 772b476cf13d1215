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
 * refuses before allocating anything the manifest cannot justify. It is the stream parser
 * (weights-stream.ts) plus the finite check, collecting runs into one Float32Array per tensor.
 */
import { PatchFedError } from '../errors.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../weights.ts';
import { parseManifestJson } from './manifest.ts';
import { finiteCheck, firstNonFinite, type WeightsCheck } from './weights-checks.ts';
import { MAGIC_BYTES, WEIGHTS_FORMAT_VERSION, WEIGHTS_HEADER_BYTES, WeightsStreamParser, manifestPadding, swapBytes32, type WeightsStreamOptions } from './weights-stream.ts';
import { endianness } from 'node:os';

export { DEFAULT_MAX_WEIGHTS_BYTES, WEIGHTS_FORMAT_VERSION, WEIGHTS_HEADER_BYTES, WEIGHTS_MAGIC } from './weights-stream.ts';

const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';

export type DecodeWeightsOptions = WeightsStreamOptions;

/** The manifest JSON exactly as encoded: only the four known fields, in a fixed order. */
export function manifestJson(manifest: readonly WeightSpec[]): string {
  return JSON.stringify({ tensors: manifest.map((s) => ({ name: s.name, shape: s.shape, trainable: s.trainable, role: s.role })) });
}

/** Exact encoded size for a manifest, without encoding anything. */
export function encodedWeightsSize(manifest: readonly WeightSpec[]): number {
  const len = Buffer.byteLength(manifestJson(manifest), 'utf8');
  return WEIGHTS_HEADER_BYTES + len + manifestPadding(len) + 4 * manifest.reduce((n, s) => n + sizeOf(s.shape), 0);
}

/** The header and manifest bytes that precede the values (for writers that stream the values). */
export function encodeWeightsHead(manifest: readonly WeightSpec[], source = 'weights'): Uint8Array {
  const json = manifestJson(manifest);
  // Re-validate the manifest the way the decoder will, so we never write what a reader refuses.
  parseManifestJson(json, source);
  const jsonBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(WEIGHTS_HEADER_BYTES + jsonBytes.length + manifestPadding(jsonBytes.length));
  const view = new DataView(out.buffer);
  out.set(MAGIC_BYTES, 0);
  view.setUint32(4, WEIGHTS_FORMAT_VERSION, true);
  view.setUint32(8, jsonBytes.length, true);
  out.set(jsonBytes, WEIGHTS_HEADER_BYTES);
  return out;
}

/** Encodes; refuses inconsistent lengths and non-finite values (naming the tensor). */
export function encodeWeights(weights: NamedWeights, source = 'weights'): Uint8Array {
  const { manifest, values } = weights;
  if (values.length !== manifest.length) {
    throw new PatchFedError('weights-inconsistent', `${source}: manifest lists ${manifest.length} tensors but ${values.length} value arrays were given.`);
  }
  const head = encodeWeightsHead(manifest, source);
  let total = head.length;
  manifest.forEach((spec, i) => {
    const v = values[i];
    if (!(v instanceof Float32Array) || v.length !== sizeOf(spec.shape)) {
      throw new PatchFedError('weights-inconsistent', `${source}: tensor '${spec.name}' has shape [${spec.shape}] (${sizeOf(spec.shape)} values) but ${v instanceof Float32Array ? v.length : 'no Float32Array of'} values.`, { subject: spec.name });
    }
    const bad = firstNonFinite(v);
    if (bad >= 0) throw new PatchFedError('weights-not-finite', `${source}: tensor '${spec.name}' has a non-finite value (${v[bad]}) at element ${bad}.`, { subject: spec.name });
    total += v.byteLength;
  });
  const out = new Uint8Array(total);
  out.set(head, 0);
  let off = head.length;
  for (const v of values) {
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    out.set(bytes, off);
    if (!HOST_IS_LITTLE_ENDIAN) swapBytes32(out.subarray(off, off + bytes.length));
    off += bytes.length;
  }
  return out;
}

/**
 * Incremental decoder: `push` chunks in order, then `finish()`. Every value is checked finite;
 * extra checks (e.g. a norm bound) run in the same pass. Errors are PatchFedErrors naming the
 * payload (and tensor); after an error the decoder is unusable.
 */
export class WeightsDecoder {
  private readonly parser: WeightsStreamParser;
  private readonly checks: WeightsCheck[];
  private values: Float32Array[] = [];

  constructor(options: DecodeWeightsOptions = {}, extraChecks: readonly WeightsCheck[] = []) {
    const source = options.source ?? 'weights payload';
    this.checks = [finiteCheck(source), ...extraChecks];
    this.parser = new WeightsStreamParser(
      {
        manifest: (m) => {
          for (const c of this.checks) c.manifest?.(m);
          this.values = m.map((s) => new Float32Array(sizeOf(s.shape)));
        },
        values: (t, offset, run) => {
          for (const c of this.checks) c.values?.(t, offset, run);
          this.values[t]?.set(run, offset);
        },
      },
      options,
    );
  }

  get bytesReceived(): number {
    return this.parser.bytesReceived;
  }

  /** Total encoded size, known once the manifest has been read; -1 before. */
  get totalBytes(): number {
    return this.parser.totalBytes;
  }

  push(chunk: Uint8Array): void {
    this.parser.push(chunk);
  }

  /** The decoded weights; refuses a payload that stopped early. */
  finish(): NamedWeights {
    this.parser.finish();
    for (const c of this.checks) c.end?.();
    return { manifest: this.parser.manifest.map((s) => ({ ...s, shape: [...s.shape] })), values: this.values };
  }
}

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

/** Decodes a file without reading it into one buffer first. */
export async function decodeWeightsFile(file: string, options: DecodeWeightsOptions = {}): Promise<NamedWeights> {
  const { createReadStream } = await import('node:fs');
  const { stat } = await import('node:fs/promises');
  const st = await stat(file);
  const source = options.source ?? file;
  const maxBytes = options.maxBytes;
  if (maxBytes !== undefined && st.size > maxBytes) throw new PatchFedError('weights-too-large', `${source}: file is ${st.size} bytes, over the ${maxBytes}-byte limit.`, { subject: file });
  return decodeWeightsStream(createReadStream(file, { highWaterMark: 1024 * 1024 }), { ...options, source });
}
