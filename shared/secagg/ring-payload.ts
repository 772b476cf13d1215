/**
 * A masked vector as it travels ('secagg-ring' uploads: the existing chunked, encrypted,
 * resumable transfer) and as it lies in the coordinator's spool file: a 16-byte header, then the
 * elements of Z_{2^32} as little-endian uint32.
 *
 *   0  "PFSR"   magic (PatchFed secure ring)      8  uint32 LE  element count (d + 1: the weight last)
 *   4  uint8    format version (1)                12  uint32     0 (reserved)
 *   5  uint8    ring bits (32)
 *   6  uint16   0 (reserved)
 *
 * Every 32-bit word is a valid ring element and a masked one is uniformly random by design, so the
 * coordinator can check nothing about the values: what it checks is the exact length (announced
 * at update-begin, counted while chunks arrive) and this header. Bounding what a site puts in
 * (clipping, the clip range of the fixed-point encoding) happens at the site.
 */
import { open } from 'node:fs/promises';
import { PatchFedError } from '../errors.ts';
import { RING_BITS } from './fixed-point.ts';

export const RING_HEADER_BYTES = 16;
const MAGIC = [0x50, 0x46, 0x53, 0x52]; // "PFSR"
const FORMAT_VERSION = 1;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** Most elements a payload may hold (the count is a uint32). */
export const MAX_RING_ELEMENTS = 0xffff_ffff;

/** Bytes of a payload of `elements` ring elements. */
export function ringPayloadBytes(elements: number): number {
  checkCount(elements);
  return RING_HEADER_BYTES + 4 * elements;
}

function checkCount(elements: number): void {
  if (!(Number.isSafeInteger(elements) && elements >= 1 && elements <= MAX_RING_ELEMENTS)) {
    throw new PatchFedError('secagg-ring-format', `A masked vector must have 1..${MAX_RING_ELEMENTS} elements, got ${String(elements)}.`);
  }
}

export interface RingPayload {
  /** The whole payload (header + elements), as uploaded. */
  bytes: Uint8Array;
  /** The elements, sharing memory with `bytes` (mask them in place, then call `sealRingPayload`). */
  words: Uint32Array;
}

/** A zeroed payload of `elements` elements with its header written. */
export function allocateRingPayload(elements: number): RingPayload {
  const total = ringPayloadBytes(elements);
  const buffer = new ArrayBuffer(total);
  const bytes = new Uint8Array(buffer);
  bytes.set(MAGIC, 0);
  bytes[4] = FORMAT_VERSION;
  bytes[5] = RING_BITS;
  new DataView(buffer).setUint32(8, elements, true);
  return { bytes, words: new Uint32Array(buffer, RING_HEADER_BYTES, elements) };
}

/** Makes the element bytes little-endian (a no-op on little-endian hosts); call once, before upload. */
export function sealRingPayload(payload: RingPayload): Uint8Array {
  if (!LITTLE_ENDIAN) swapWords(payload.words);
  return payload.bytes;
}

function swapWords(words: Uint32Array): void {
  for (let i = 0; i < words.length; i++) {
    const w = words[i] ?? 0;
    words[i] = (((w & 0xff) << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24)) >>> 0;
  }
}

/** Throws 'secagg-ring-format' unless `header` (16 bytes) is a version-1, 32-bit ring header for `elements` elements. */
export function checkRingHeader(header: Uint8Array, elements: number, source: string): void {
  const view = new DataView(header.buffer, header.byteOffset, RING_HEADER_BYTES);
  const problems: string[] = [];
  if (MAGIC.some((b, i) => header[i] !== b)) problems.push('it does not start with the masked-vector magic "PFSR"');
  else if (header[4] !== FORMAT_VERSION) problems.push(`format version ${header[4]} (expected ${FORMAT_VERSION})`);
  else if (header[5] !== RING_BITS) problems.push(`a ${header[5]}-bit ring (expected ${RING_BITS})`);
  else if (view.getUint16(6, true) !== 0 || view.getUint32(12, true) !== 0) problems.push('reserved header bytes are not zero');
  else if (view.getUint32(8, true) !== elements) problems.push(`${view.getUint32(8, true)} elements (this round's vectors have ${elements})`);
  if (problems.length > 0) throw new PatchFedError('secagg-ring-format', `${source} is not a valid masked vector: ${problems[0]}.`, { subject: source });
}

/**
 * The coordinator's checks of a 'secagg-ring' upload while its chunks arrive: the header, and
 * that exactly the announced number of element bytes arrives (no more while streaming, all at end).
 */
export class RingPayloadInspection {
  private readonly header = new Uint8Array(RING_HEADER_BYTES);
  private headerBytes = 0;
  private bodyBytes = 0;
  private readonly expectedBody: number;

  constructor(
    private readonly elements: number,
    private readonly source: string,
  ) {
    this.expectedBody = ringPayloadBytes(elements) - RING_HEADER_BYTES;
  }

  push(chunk: Uint8Array): void {
    let rest = chunk;
    if (this.headerBytes < RING_HEADER_BYTES) {
      const take = Math.min(RING_HEADER_BYTES - this.headerBytes, rest.length);
      this.header.set(rest.subarray(0, take), this.headerBytes);
      this.headerBytes += take;
      rest = rest.subarray(take);
      if (this.headerBytes === RING_HEADER_BYTES) checkRingHeader(this.header, this.elements, this.source);
    }
    this.bodyBytes += rest.length;
    if (this.bodyBytes > this.expectedBody) {
      throw new PatchFedError('secagg-ring-format', `${this.source} is longer than the ${this.elements} elements of this round's masked vectors.`, { subject: this.source });
    }
  }

  end(): void {
    if (this.headerBytes < RING_HEADER_BYTES || this.bodyBytes !== this.expectedBody) {
      throw new PatchFedError(
        'secagg-ring-format',
        `${this.source} ended after ${this.headerBytes + this.bodyBytes} bytes; a masked vector of ${this.elements} elements is ${ringPayloadBytes(this.elements)} bytes.`,
        { subject: this.source },
      );
    }
  }
}

/** Elements per read of a spool file: 1 MiB. */
const BLOCK_ELEMENTS = 256 * 1024;

/**
 * Streams a stored payload's elements: `consume(words, offset)` with consecutive blocks (valid
 * during the call), after checking the header and the file's exact length. Memory: one block.
 */
export async function forEachRingBlock(path: string, elements: number, source: string, consume: (words: Uint32Array, offset: number) => void): Promise<void> {
  const file = await open(path, 'r');
  try {
    const size = (await file.stat()).size;
    if (size !== ringPayloadBytes(elements)) {
      throw new PatchFedError('secagg-ring-format', `${source} is ${size} bytes on disk; a masked vector of ${elements} elements is ${ringPayloadBytes(elements)} bytes.`, { subject: source });
    }
    const header = new Uint8Array(RING_HEADER_BYTES);
    await readFully(file, header, 0, source);
    checkRingHeader(header, elements, source);
    const block = new Uint32Array(Math.min(BLOCK_ELEMENTS, elements));
    const bytes = new Uint8Array(block.buffer);
    for (let offset = 0; offset < elements; ) {
      const n = Math.min(block.length, elements - offset);
      await readFully(file, bytes.subarray(0, 4 * n), RING_HEADER_BYTES + 4 * offset, source);
      const words = block.subarray(0, n);
      if (!LITTLE_ENDIAN) swapWords(words);
      consume(words, offset);
      offset += n;
    }
  } finally {
    await file.close();
  }
}

async function readFully(file: Awaited<ReturnType<typeof open>>, into: Uint8Array, position: number, source: string): Promise<void> {
  for (let done = 0; done < into.length; ) {
    const { bytesRead } = await file.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw new PatchFedError('secagg-ring-format', `${source} ended early on disk.`, { subject: source });
    done += bytesRead;
  }
}
