/**
 * Confidentiality and authenticity of what moves between a site and the coordinator.
 *
 * Updates (site → coordinator), protocol v2: each chunk is encrypted with AES-256-GCM (Node's
 * built-in AEAD: hardware AES, ~20× the pure-JS XSalsa20-Poly1305 it replaces) under a key
 * derived per transfer, HKDF-SHA256(X25519 shared key, "patchfed-update-v2", site | round |
 * transfer), with a fresh random 96-bit nonce per chunk (per-transfer keys keep the number of
 * nonces under one key small, so random nonces are safe) and the chunk's context — round, site,
 * transfer, index — as associated data. The site then signs
 *   "patchfed-update-chunk-v2" | round | siteId | transferId | index | nonce | sha256(ciphertext)
 * with its Ed25519 key (Node's implementation; the same keys and signatures as tweetnacl's). The
 * receiver checks the claimed context against what it expects and verifies the signature BEFORE
 * touching the ciphertext, so tampered or replayed chunks are refused without running the
 * decryptor on attacker-chosen bytes; the AEAD tag then also authenticates the ciphertext under
 * the shared key.
 *
 * Checkpoints (coordinator → sites) are public to the federation but must be authentic:
 * the coordinator signs "patchfed-checkpoint-v1" | experimentId | version | size | sha256(content).
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, hkdfSync, randomBytes, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';
import { PatchFedError } from '../errors.ts';
import { bytesEqual, fromHex, sha256, toHex, transcript } from './encoding.ts';

export const UPDATE_CHUNK_LABEL = 'patchfed-update-chunk-v2';
export const UPDATE_COMMIT_LABEL = 'patchfed-update-commit-v1';
export const CHECKPOINT_LABEL = 'patchfed-checkpoint-v1';
const TRANSFER_KEY_LABEL = 'patchfed-update-v2';
const AEAD = 'aes-256-gcm';
export const SEAL_NONCE_BYTES = 12;
/** The AEAD tag appended to every ciphertext. */
export const SEAL_OVERHEAD_BYTES = 16;
export const SIGNATURE_BYTES = nacl.sign.signatureLength; // 64

/** The X25519 shared key; both sides derive the same one (cache it per peer). */
export function deriveSharedKey(theirBoxPublicKey: Uint8Array, myBoxSecretKey: Uint8Array): Uint8Array {
  return nacl.box.before(theirBoxPublicKey, myBoxSecretKey);
}

/** Where a chunk belongs; every field is covered by the signature and the AEAD. */
export interface ChunkContext {
  round: number;
  siteId: string;
  transferId: string;
  index: number;
}

export interface SealedChunk {
  nonce: Uint8Array;
  /** AES-GCM ciphertext followed by its 16-byte tag. */
  ciphertext: Uint8Array;
  signature: Uint8Array;
}

// ---- Ed25519 through node:crypto, keyed by the tweetnacl key bytes (converted once, cached) ----

const signingKeys = new WeakMap<Uint8Array, KeyObject>();
const verifyingKeys = new WeakMap<Uint8Array, KeyObject>();

/** Node KeyObject for a tweetnacl Ed25519 secret key (64 bytes: seed ‖ public key). */
function signingKey(secretKey: Uint8Array): KeyObject {
  let key = signingKeys.get(secretKey);
  if (!key) {
    if (secretKey.length !== 64) throw new PatchFedError('bad-key', `An Ed25519 secret key is 64 bytes, got ${secretKey.length}.`);
    const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
    key = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: b64(secretKey.subarray(0, 32)), x: b64(secretKey.subarray(32)) }, format: 'jwk' });
    signingKeys.set(secretKey, key);
  }
  return key;
}

function verifyingKey(publicKey: Uint8Array): KeyObject {
  let key = verifyingKeys.get(publicKey);
  if (!key) {
    if (publicKey.length !== 32) throw new PatchFedError('bad-key', `An Ed25519 public key is 32 bytes, got ${publicKey.length}.`);
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('base64url') }, format: 'jwk' });
    verifyingKeys.set(publicKey, key);
  }
  return key;
}

/** Ed25519 signature, byte-identical to nacl.sign.detached (RFC 8032 signatures are deterministic). */
export function ed25519Sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return new Uint8Array(nodeSign(null, message, signingKey(secretKey)));
}

export function ed25519Verify(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES) return false;
  try {
    return nodeVerify(null, message, verifyingKey(publicKey), signature);
  } catch {
    return false;
  }
}

// ---- update chunks ----

/** The per-transfer AEAD key (HKDF-SHA256 of the shared key, bound to site, round and transfer). */
export function transferKey(sharedKey: Uint8Array, ctx: Pick<ChunkContext, 'round' | 'siteId' | 'transferId'>): Buffer {
  return Buffer.from(hkdfSync('sha256', sharedKey, TRANSFER_KEY_LABEL, transcript(TRANSFER_KEY_LABEL, ctx.siteId, ctx.round, ctx.transferId), 32));
}

function associatedData(ctx: ChunkContext): Uint8Array {
  return transcript(UPDATE_CHUNK_LABEL, ctx.round, ctx.siteId, ctx.transferId, ctx.index);
}

function chunkTranscript(ctx: ChunkContext, nonce: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  return transcript(UPDATE_CHUNK_LABEL, ctx.round, ctx.siteId, ctx.transferId, ctx.index, nonce, sha256(ciphertext));
}

/** One key derivation per transfer: senders and receivers seal/open many chunks of one transfer. */
const transferKeys = new WeakMap<Uint8Array, { id: string; key: Buffer }>();

function keyFor(sharedKey: Uint8Array, ctx: ChunkContext): Buffer {
  const id = `${ctx.siteId}\u0000${ctx.round}\u0000${ctx.transferId}`;
  const cached = transferKeys.get(sharedKey);
  if (cached?.id === id) return cached.key;
  const key = transferKey(sharedKey, ctx);
  transferKeys.set(sharedKey, { id, key });
  return key;
}

export function sealChunk(plaintext: Uint8Array, ctx: ChunkContext, keys: { sharedKey: Uint8Array; signSecretKey: Uint8Array }): SealedChunk {
  const nonce = new Uint8Array(randomBytes(SEAL_NONCE_BYTES));
  const cipher = createCipheriv(AEAD, keyFor(keys.sharedKey, ctx), nonce, { authTagLength: SEAL_OVERHEAD_BYTES });
  cipher.setAAD(associatedData(ctx));
  const body = cipher.update(plaintext);
  const last = cipher.final();
  const tag = cipher.getAuthTag();
  const ciphertext = new Uint8Array(body.length + last.length + tag.length);
  ciphertext.set(body, 0);
  ciphertext.set(last, body.length);
  ciphertext.set(tag, body.length + last.length);
  const signature = ed25519Sign(chunkTranscript(ctx, nonce, ciphertext), keys.signSecretKey);
  return { nonce, ciphertext, signature };
}

/** How often openChunk ran the decryptor (tests check that refused chunks never reach it). */
export const openStats = { decryptions: 0 };

function reject(code: string, ctx: ChunkContext, reason: string): PatchFedError {
  return new PatchFedError(code, `Update chunk ${ctx.index} of transfer ${ctx.transferId} from site '${ctx.siteId}' (round ${ctx.round}) rejected: ${reason}.`, { subject: ctx.siteId });
}

/**
 * Checks, in this order: the claimed context equals the expected one (wrong transfer / site /
 * round / index), field lengths, the signature, and only then decrypts (which checks the tag).
 */
export function openChunk(
  chunk: SealedChunk & ChunkContext,
  expected: ChunkContext,
  keys: { sharedKey: Uint8Array; senderSignPublicKey: Uint8Array },
): Uint8Array {
  if (chunk.transferId !== expected.transferId) throw reject('chunk-wrong-transfer', chunk, `it belongs to transfer ${chunk.transferId}, expected ${expected.transferId}`);
  if (chunk.siteId !== expected.siteId) throw reject('chunk-wrong-site', chunk, `it claims site '${chunk.siteId}' but the connection is site '${expected.siteId}'`);
  if (chunk.round !== expected.round) throw reject('chunk-wrong-round', chunk, `wrong round (chunk is for round ${chunk.round}, the current round is ${expected.round})`);
  if (chunk.index !== expected.index) throw reject('chunk-wrong-index', chunk, `wrong index (got ${chunk.index}, expected ${expected.index})`);
  if (chunk.nonce.length !== SEAL_NONCE_BYTES || chunk.signature.length !== SIGNATURE_BYTES || chunk.ciphertext.length < SEAL_OVERHEAD_BYTES) {
    throw reject('chunk-malformed', chunk, 'nonce, signature or ciphertext has an impossible length');
  }
  if (!ed25519Verify(chunkTranscript(expected, chunk.nonce, chunk.ciphertext), chunk.signature, keys.senderSignPublicKey)) {
    throw reject('chunk-bad-signature', chunk, "bad signature (tampered, corrupted, or not signed by this site's enrolled key)");
  }
  const bodyLength = chunk.ciphertext.length - SEAL_OVERHEAD_BYTES;
  openStats.decryptions++;
  try {
    const decipher = createDecipheriv(AEAD, keyFor(keys.sharedKey, expected), chunk.nonce, { authTagLength: SEAL_OVERHEAD_BYTES });
    decipher.setAAD(associatedData(expected));
    decipher.setAuthTag(chunk.ciphertext.subarray(bodyLength));
    const body = decipher.update(chunk.ciphertext.subarray(0, bodyLength));
    const last = decipher.final(); // throws when the tag does not verify
    if (last.length === 0) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    const out = new Uint8Array(body.length + last.length);
    out.set(body, 0);
    out.set(last, body.length);
    return out;
  } catch {
    throw reject('chunk-decryption-failed', chunk, 'decryption failed (encrypted for a different coordinator key, or altered)');
  }
}

// ---- commit: binds the whole payload and what the site claims about it ----

export interface CommitContext {
  round: number;
  siteId: string;
  transferId: string;
  totalBytes: number;
  chunkCount: number;
  /** Hex sha256 of the whole plaintext payload. */
  sha256: string;
  /** Number of training samples; weights the site in FedAvg, so it must be authentic. */
  samples: number;
  /** Canonical JSON of the metrics object (the caller serialises once, both sides hash the same bytes). */
  metricsJson: string;
}

function commitTranscript(c: CommitContext): Uint8Array {
  return transcript(UPDATE_COMMIT_LABEL, c.round, c.siteId, c.transferId, c.totalBytes, c.chunkCount, fromHex(c.sha256, 'payload sha256', 32), c.samples, c.metricsJson);
}

export function signCommit(c: CommitContext, signSecretKey: Uint8Array): Uint8Array {
  return ed25519Sign(commitTranscript(c), signSecretKey);
}

export function verifyCommit(c: CommitContext, signature: Uint8Array, senderSignPublicKey: Uint8Array): void {
  if (!ed25519Verify(commitTranscript(c), signature, senderSignPublicKey)) {
    throw new PatchFedError('commit-bad-signature', `Update commit of transfer ${c.transferId} from site '${c.siteId}' (round ${c.round}) rejected: bad signature over payload hash, sample count and metrics.`, { subject: c.siteId });
  }
}

// ---- checkpoints ----

export interface CheckpointMeta {
  experimentId: string;
  version: number;
  /** Bytes of the encoded checkpoint. */
  size: number;
  /** Hex sha256 of the encoded checkpoint. */
  sha256: string;
}

export interface SignedCheckpoint extends CheckpointMeta {
  signature: Uint8Array;
}

function checkpointTranscript(m: CheckpointMeta): Uint8Array {
  return transcript(CHECKPOINT_LABEL, m.experimentId, m.version, m.size, fromHex(m.sha256, 'checkpoint sha256', 32));
}

/**
 * Signs a checkpoint announcement. `digest` gives size and sha256 when the caller already hashed
 * the content while writing it (then `content` is not read: a large checkpoint is hashed once).
 */
export function signCheckpoint(
  content: Uint8Array,
  meta: { experimentId: string; version: number },
  coordinatorSignSecretKey: Uint8Array,
  digest?: { size: number; sha256: string },
): SignedCheckpoint {
  const m: CheckpointMeta = { ...meta, size: digest?.size ?? content.length, sha256: digest?.sha256 ?? toHex(sha256(content)) };
  return { ...m, signature: nacl.sign.detached(checkpointTranscript(m), coordinatorSignSecretKey) };
}

/**
 * Checks the coordinator's signature over the announced metadata. Sites call this as soon as
 * a round task arrives, before downloading anything.
 */
export function verifyCheckpointSignature(signed: SignedCheckpoint, pinnedCoordinatorSignPublicKey: Uint8Array): void {
  const ok =
    signed.signature.length === SIGNATURE_BYTES &&
    /^[0-9a-f]{64}$/.test(signed.sha256) &&
    nacl.sign.detached.verify(checkpointTranscript(signed), signed.signature, pinnedCoordinatorSignPublicKey);
  if (!ok) {
    throw new PatchFedError('checkpoint-bad-signature', `Checkpoint v${signed.version} of experiment '${signed.experimentId}' is not signed by the pinned coordinator key; refusing it.`, { subject: signed.experimentId });
  }
}

/** For content that arrived in chunks: the caller hashed it incrementally. Checks size, hash and signature. */
export function verifyCheckpointDigest(digest: Uint8Array, size: number, signed: SignedCheckpoint, pinnedCoordinatorSignPublicKey: Uint8Array): void {
  verifyCheckpointSignature(signed, pinnedCoordinatorSignPublicKey);
  const what = `Checkpoint v${signed.version} of experiment '${signed.experimentId}'`;
  if (size !== signed.size) throw new PatchFedError('checkpoint-size-mismatch', `${what} is ${size} bytes, but the coordinator announced ${signed.size}; refusing it.`, { subject: signed.experimentId });
  if (!bytesEqual(digest, fromHex(signed.sha256, 'checkpoint sha256', 32))) {
    throw new PatchFedError('checkpoint-hash-mismatch', `${what} has sha256 ${toHex(digest)}, but the coordinator announced ${signed.sha256}; refusing it (corrupted or substituted).`, { subject: signed.experimentId });
  }
}

/** Checks a whole checkpoint held in memory: signature over its metadata, size and sha256. */
export function verifyCheckpoint(content: Uint8Array, signed: SignedCheckpoint, pinnedCoordinatorSignPublicKey: Uint8Array): void {
  verifyCheckpointDigest(sha256(content), content.length, signed, pinnedCoordinatorSignPublicKey);
}
