import nacl from 'tweetnacl';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { canonicalJson } from '../shared/crypto/encoding.ts';
import { generateKeyPairs } from '../shared/crypto/keys.ts';
import {
  deriveSharedKey,
  openChunk,
  openStats,
  sealChunk,
  signCheckpoint,
  signCommit,
  verifyCheckpoint,
  verifyCommit,
  type ChunkContext,
  type CommitContext,
} from '../shared/crypto/seal.ts';

const coordinator = generateKeyPairs();
const site = generateKeyPairs();
const otherSite = generateKeyPairs();
const siteSide = deriveSharedKey(coordinator.boxPublicKey, site.boxSecretKey);
const coordSide = deriveSharedKey(site.boxPublicKey, coordinator.boxSecretKey);
const ctx: ChunkContext = { round: 4, siteId: 'hospital-a', transferId: 'abcdefabcdefabcdef01', index: 2 };
const plaintext = new Uint8Array(5000).map((_, i) => (i * 31) & 0xff);

afterEach(() => vi.restoreAllMocks());

function seal(c: ChunkContext = ctx, signer = site.signSecretKey, key = siteSide) {
  return { ...c, ...sealChunk(plaintext, c, { sharedKey: key, signSecretKey: signer }) };
}

function open(chunk: ReturnType<typeof seal>, expected: ChunkContext = ctx) {
  return openChunk(chunk, expected, { sharedKey: coordSide, senderSignPublicKey: site.signPublicKey });
}

function rejection(fn: () => unknown): PatchFedError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PatchFedError);
    return e as PatchFedError;
  }
  throw new Error('expected a rejection');
}

describe('sealed update chunks', () => {
  it('round-trips, with the same shared key on both sides and a fresh nonce per chunk', () => {
    expect(Buffer.from(siteSide)).toEqual(Buffer.from(coordSide));
    const a = seal();
    const b = seal();
    expect(Buffer.from(a.nonce)).not.toEqual(Buffer.from(b.nonce));
    expect(Buffer.from(a.ciphertext)).not.toEqual(Buffer.from(b.ciphertext));
    expect(Buffer.from(open(a))).toEqual(Buffer.from(plaintext));
    expect(Buffer.from(a.ciphertext).includes(Buffer.from(plaintext.subarray(0, 64)))).toBe(false);
  });

  it('rejects a flipped ciphertext byte by signature, without ever decrypting', () => {
    const before = openStats.decryptions;
    const chunk = seal();
    const tampered = new Uint8Array(chunk.ciphertext);
    tampered[1234]! ^= 0x01;
    const err = rejection(() => open({ ...chunk, ciphertext: tampered }));
    expect(err.code).toBe('chunk-bad-signature');
    expect(err.message).toMatch(/bad signature/);
    expect(err.message).toContain("site 'hospital-a'");
    expect(openStats.decryptions).toBe(before);
    // The untouched chunk still opens, and this time the decryptor runs.
    open(chunk);
    expect(openStats.decryptions).toBe(before + 1);
  });

  it('rejects a flipped nonce or signature byte', () => {
    const chunk = seal();
    const nonce = new Uint8Array(chunk.nonce);
    nonce[0]! ^= 0x80;
    expect(rejection(() => open({ ...chunk, nonce })).code).toBe('chunk-bad-signature');
    const signature = new Uint8Array(chunk.signature);
    signature[63]! ^= 0x01;
    expect(rejection(() => open({ ...chunk, signature })).code).toBe('chunk-bad-signature');
  });

  it('rejects the wrong round, index, transfer or site, also when relabelled to look right', () => {
    const chunk = seal();
    expect(rejection(() => open(chunk, { ...ctx, round: 5 })).code).toBe('chunk-wrong-round');
    expect(rejection(() => open(chunk, { ...ctx, round: 5 })).message).toMatch(/wrong round/);
    expect(rejection(() => open(chunk, { ...ctx, index: 3 })).code).toBe('chunk-wrong-index');
    expect(rejection(() => open(chunk, { ...ctx, transferId: 'ffffffffffffffffffff' })).code).toBe('chunk-wrong-transfer');
    expect(rejection(() => open(chunk, { ...ctx, siteId: 'hospital-b' })).code).toBe('chunk-wrong-site');
    // A chunk from round 4 replayed in round 5 with its label changed: the signature catches it.
    expect(rejection(() => open({ ...chunk, round: 5 }, { ...ctx, round: 5 })).code).toBe('chunk-bad-signature');
    expect(rejection(() => open({ ...chunk, index: 3 }, { ...ctx, index: 3 })).code).toBe('chunk-bad-signature');
    expect(rejection(() => open({ ...chunk, transferId: 'ffffffffffffffffffff' }, { ...ctx, transferId: 'ffffffffffffffffffff' })).code).toBe('chunk-bad-signature');
  });

  it('rejects chunks signed by another site, and reports decryption failure for a validly signed wrong-key chunk', () => {
    expect(rejection(() => open(seal(ctx, otherSite.signSecretKey))).code).toBe('chunk-bad-signature');
    // Signed by the right site but encrypted to another coordinator key.
    const wrongKey = deriveSharedKey(generateKeyPairs().boxPublicKey, site.boxSecretKey);
    const err = rejection(() => open(seal(ctx, site.signSecretKey, wrongKey)));
    expect(err.code).toBe('chunk-decryption-failed');
    expect(err.message).toMatch(/decryption failed/);
  });

  it('rejects impossible field lengths before any crypto', () => {
    const chunk = seal();
    expect(rejection(() => open({ ...chunk, nonce: chunk.nonce.subarray(0, 11) })).code).toBe('chunk-malformed');
    expect(rejection(() => open({ ...chunk, ciphertext: new Uint8Array(10) })).code).toBe('chunk-malformed');
  });
});

describe('signed commit', () => {
  const commit: CommitContext = {
    round: 4,
    siteId: 'hospital-a',
    transferId: 'abcdefabcdefabcdef01',
    totalBytes: 100,
    chunkCount: 1,
    sha256: 'a'.repeat(64),
    samples: 12,
    metricsJson: canonicalJson({ loss: 0.5, dice: { liver: 0.9, tumour: 0.4 } }),
  };

  it('verifies regardless of metrics key order, and refuses changed samples, metrics or hash', () => {
    const sig = signCommit(commit, site.signSecretKey);
    expect(() => verifyCommit({ ...commit, metricsJson: canonicalJson({ dice: { tumour: 0.4, liver: 0.9 }, loss: 0.5 }) }, sig, site.signPublicKey)).not.toThrow();
    for (const changed of [{ samples: 1200 }, { metricsJson: canonicalJson({ loss: 0.1, dice: { liver: 0.9, tumour: 0.4 } }) }, { sha256: 'b'.repeat(64) }, { round: 5 }]) {
      expect(rejection(() => verifyCommit({ ...commit, ...changed }, sig, site.signPublicKey)).code).toBe('commit-bad-signature');
    }
    expect(rejection(() => verifyCommit(commit, sig, otherSite.signPublicKey)).code).toBe('commit-bad-signature');
  });
});

describe('signed checkpoints', () => {
  const content = new Uint8Array(3000).map((_, i) => i & 0xff);
  const meta = { experimentId: 'liver-2026', version: 7 };

  it('verifies an authentic checkpoint', () => {
    const signed = signCheckpoint(content, meta, coordinator.signSecretKey);
    expect(signed.size).toBe(3000);
    expect(signed.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(() => verifyCheckpoint(content, signed, coordinator.signPublicKey)).not.toThrow();
  });

  it('refuses altered content, altered metadata and other signers', () => {
    const signed = signCheckpoint(content, meta, coordinator.signSecretKey);
    const flipped = new Uint8Array(content);
    flipped[100]! ^= 1;
    expect(rejection(() => verifyCheckpoint(flipped, signed, coordinator.signPublicKey)).code).toBe('checkpoint-hash-mismatch');
    expect(rejection(() => verifyCheckpoint(content.subarray(1), signed, coordinator.signPublicKey)).code).toBe('checkpoint-size-mismatch');
    expect(rejection(() => verifyCheckpoint(content, { ...signed, version: 8 }, coordinator.signPublicKey)).code).toBe('checkpoint-bad-signature');
    expect(rejection(() => verifyCheckpoint(content, { ...signed, experimentId: 'other' }, coordinator.signPublicKey)).code).toBe('checkpoint-bad-signature');
    // An attacker re-hashing substituted content cannot re-sign it.
    const forged = signCheckpoint(flipped, meta, generateKeyPairs().signSecretKey);
    const err = rejection(() => verifyCheckpoint(flipped, forged, coordinator.signPublicKey));
    expect(err.code).toBe('checkpoint-bad-signature');
    expect(err.message).toContain("'liver-2026'");
  });
});
