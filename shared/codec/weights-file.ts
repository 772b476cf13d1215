/**
 * Random access to the values of a PFW file on disk, without loading it: the coordinator's
 * global model lives in its checkpoint file, and the aggregator and the norm-bound check read the
 * stretch of it they need, when they need it (positional reads, served from the page cache), so
 * the coordinator's memory does not hold a copy of the model.
 *
 * `GlobalValues` is the read interface both need; an in-memory NamedWeights offers it too.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { PatchFedError } from '../errors.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../weights.ts';
import { parseManifestJson } from './manifest.ts';
import { MAGIC_BYTES, WEIGHTS_FORMAT_VERSION, WEIGHTS_HEADER_BYTES, swapBytes32, valuesOffset } from './weights-stream.ts';

const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';

export interface GlobalValues {
  readonly manifest: readonly WeightSpec[];
  /**
   * `length` values of tensor `tensor` from element `offset`. The returned view is valid until
   * the next call (it may be a scratch buffer).
   */
  read(tensor: number, offset: number, length: number): Float32Array;
}

export function inMemoryValues(weights: NamedWeights): GlobalValues {
  return {
    manifest: weights.manifest,
    read: (tensor, offset, length) => {
      const v = weights.values[tensor];
      if (!v || offset + length > v.length) throw new PatchFedError('weights-read-out-of-range', `No values ${offset}..${offset + length} in tensor #${tensor}.`);
      return v.subarray(offset, offset + length);
    },
  };
}

/** A PFW file opened for positional reads. Synchronous: reads are small and come from the page cache. */
export class WeightsFile implements GlobalValues {
  readonly manifest: WeightSpec[];
  readonly sizeBytes: number;
  /** Byte offset of each tensor's first value. */
  private readonly starts: number[];
  private readonly fd: number;
  private scratch = new Float32Array(0);
  private closed = false;

  constructor(
    readonly path: string,
    readonly source = path,
  ) {
    this.fd = openSync(path, 'r');
    try {
      this.sizeBytes = fstatSync(this.fd).size;
      const header = this.bytes(0, WEIGHTS_HEADER_BYTES);
      if (!MAGIC_BYTES.every((b, i) => header[i] === b)) throw new PatchFedError('weights-bad-magic', `${source}: not a PatchFed weights file.`, { subject: path });
      const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
      if (view.getUint32(4, true) !== WEIGHTS_FORMAT_VERSION) throw new PatchFedError('weights-bad-version', `${source}: unsupported weights format version ${view.getUint32(4, true)}.`, { subject: path });
      const len = view.getUint32(8, true);
      if (len < 2 || WEIGHTS_HEADER_BYTES + len > this.sizeBytes) throw new PatchFedError('weights-bad-manifest', `${source}: manifest length ${len} does not fit the file.`, { subject: path });
      const text = new TextDecoder('utf-8', { fatal: true }).decode(this.bytes(WEIGHTS_HEADER_BYTES, len));
      this.manifest = parseManifestJson(text, source);
      this.starts = [];
      let at = valuesOffset(len);
      for (const spec of this.manifest) {
        this.starts.push(at);
        at += 4 * sizeOf(spec.shape);
      }
      if (at !== this.sizeBytes) throw new PatchFedError('weights-truncated', `${source}: the manifest describes ${at} bytes but the file has ${this.sizeBytes}.`, { subject: path });
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  read(tensor: number, offset: number, length: number): Float32Array {
    if (this.closed) throw new PatchFedError('weights-file-closed', `${this.source}: read after close.`);
    const spec = this.manifest[tensor];
    const start = this.starts[tensor];
    if (!spec || start === undefined || offset < 0 || offset + length > sizeOf(spec.shape)) {
      throw new PatchFedError('weights-read-out-of-range', `${this.source}: no values ${offset}..${offset + length} in tensor #${tensor}.`);
    }
    if (this.scratch.length < length) this.scratch = new Float32Array(Math.max(length, 64 * 1024));
    const out = this.scratch.subarray(0, length);
    const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    this.fill(bytes, start + 4 * offset);
    if (!HOST_IS_LITTLE_ENDIAN) swapBytes32(bytes);
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  private bytes(position: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.fill(out, position);
    return out;
  }

  private fill(target: Uint8Array, position: number): void {
    let done = 0;
    while (done < target.length) {
      const n = readSync(this.fd, target, done, target.length - done, position + done);
      if (n <= 0) throw new PatchFedError('weights-truncated', `${this.source}: unexpected end of file at byte ${position + done}.`, { subject: this.path });
      done += n;
    }
  }
}
