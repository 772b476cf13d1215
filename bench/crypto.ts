/**
 * The per-chunk crypto of the upload path side by side: tweetnacl's XSalsa20-Poly1305 and
 * Ed25519 (protocol v1) against Node's AES-256-GCM and Ed25519 (protocol v2,
 * shared/crypto/seal.ts), on the same chunk and transcript, in one process.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import { ed25519Sign, ed25519Verify } from '../shared/crypto/seal.ts';

export interface CryptoTiming {
  name: string;
  /** Median milliseconds per call. */
  ms: number;
  /** For the AEADs: MB (10^6 bytes) per second on the chunk. */
  mbPerSecond?: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

function time(name: string, calls: number, f: () => void, chunkBytes?: number): CryptoTiming {
  f(); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < calls; i++) {
    const start = process.hrtime.bigint();
    f();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const ms = median(samples);
  return chunkBytes === undefined ? { name, ms } : { name, ms, mbPerSecond: chunkBytes / 1e6 / (ms / 1000) };
}

export function runCryptoBench(chunkMiB = 4, calls = 9): CryptoTiming[] {
  const chunk = randomBytes(chunkMiB << 20);
  const key = randomBytes(32);
  const xnonce = randomBytes(24);
  const boxed = nacl.secretbox(chunk, xnonce, key);
  const iv = randomBytes(12);
  const sealGcm = () => {
    const c = createCipheriv('aes-256-gcm', key, iv);
    return { ct: Buffer.concat([c.update(chunk), c.final()]), tag: c.getAuthTag() };
  };
  const sealed = sealGcm();
  const keys = nacl.sign.keyPair();
  const transcript = randomBytes(128); // the size of a chunk's signed context
  const signature = nacl.sign.detached(transcript, keys.secretKey);
  return [
    time('xsalsa20-poly1305 seal (tweetnacl)', calls, () => nacl.secretbox(chunk, xnonce, key), chunk.length),
    time('xsalsa20-poly1305 open (tweetnacl)', calls, () => nacl.secretbox.open(boxed, xnonce, key), chunk.length),
    time('aes-256-gcm seal (node:crypto)', calls * 4, sealGcm, chunk.length),
    time(
      'aes-256-gcm open (node:crypto)',
      calls * 4,
      () => {
        const d = createDecipheriv('aes-256-gcm', key, iv);
        d.setAuthTag(sealed.tag);
        Buffer.concat([d.update(sealed.ct), d.final()]);
      },
      chunk.length,
    ),
    time('ed25519 sign (tweetnacl)', calls * 2, () => nacl.sign.detached(transcript, keys.secretKey)),
    time('ed25519 verify (tweetnacl)', calls * 2, () => nacl.sign.detached.verify(transcript, signature, keys.publicKey)),
    time('ed25519 sign (node:crypto)', calls * 20, () => ed25519Sign(transcript, keys.secretKey)),
    time('ed25519 verify (node:crypto)', calls * 20, () => ed25519Verify(transcript, signature, keys.publicKey)),
  ];
}
