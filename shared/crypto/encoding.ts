/**
 * Byte helpers shared by keys, handshake and sealing: strict base64, sha256, and the
 * domain-separated transcript every signature in PatchFed is computed over.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { PatchFedError } from '../errors.ts';

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Decodes canonical base64 only (Buffer.from silently skips garbage, which would let two
 * different strings name the same key). `what` names the field in the error.
 */
export function fromBase64(text: string, what: string, expectedLength?: number): Uint8Array {
  if (typeof text !== 'string' || !BASE64_RE.test(text)) {
    throw new PatchFedError('bad-base64', `${what} is not valid base64.`, { subject: what });
  }
  const bytes = new Uint8Array(Buffer.from(text, 'base64'));
  if (expectedLength !== undefined && bytes.length !== expectedLength) {
    throw new PatchFedError('bad-length', `${what} must be ${expectedLength} bytes, got ${bytes.length}.`, { subject: what });
  }
  return bytes;
}

export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

export function sha256Hex(...parts: Uint8Array[]): string {
  return toHex(sha256(...parts));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

const HEX_RE = /^(?:[0-9a-f]{2})*$/;

export function fromHex(text: string, what: string, expectedLength?: number): Uint8Array {
  if (typeof text !== 'string' || !HEX_RE.test(text)) {
    throw new PatchFedError('bad-hex', `${what} is not lower-case hex.`, { subject: what });
  }
  const bytes = new Uint8Array(Buffer.from(text, 'hex'));
  if (expectedLength !== undefined && bytes.length !== expectedLength) {
    throw new PatchFedError('bad-length', `${what} must be ${expectedLength} bytes, got ${bytes.length}.`, { subject: what });
  }
  return bytes;
}

/** Constant-time equality (lengths may leak, contents do not). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export type TranscriptField = string | Uint8Array | number;

/**
 * Unambiguous encoding of a labelled list of fields: the label, then for each field a type tag,
 * a 4-byte big-endian length and the bytes. Length-prefixing means no choice of field values
 * can make two different transcripts collide, and the label keeps a signature made for one
 * purpose (say a handshake) from being valid for another (say a chunk).
 */
export function transcript(label: string, ...fields: TranscriptField[]): Uint8Array {
  const encoded: Uint8Array[] = [];
  const push = (tag: number, bytes: Uint8Array) => {
    const head = new Uint8Array(5);
    head[0] = tag;
    new DataView(head.buffer).setUint32(1, bytes.length, false);
    encoded.push(head, bytes);
  };
  push(0x4c /* L */, new TextEncoder().encode(label));
  for (const f of fields) {
    if (typeof f === 'string') push(0x53 /* S */, new TextEncoder().encode(f));
    else if (typeof f === 'number') {
      if (!Number.isSafeInteger(f) || f < 0) throw new Error(`transcript: number fields must be non-negative safe integers, got ${f}`);
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, BigInt(f), false);
      push(0x4e /* N */, b);
    } else push(0x42 /* B */, f);
  }
  const total = encoded.reduce((n, b) => n + b.length, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const b of encoded) {
    out.set(b, off);
    off += b.length;
  }
  return out;
}

/**
 * JSON with object keys sorted at every level, so signer and verifier hash the same bytes
 * whatever order a parser produced. Only for plain data (objects, arrays, strings, finite numbers,
 * booleans, null); binary fields are written as their base64 string, as they travel.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (value instanceof Uint8Array) return JSON.stringify(toBase64(value));
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`canonicalJson: non-finite number ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    // Keys whose value is undefined are skipped, as JSON.stringify does.
    const keys = Object.keys(value as object)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  throw new Error(`canonicalJson: unsupported value of type ${typeof value}`);
}
