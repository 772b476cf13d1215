/**
 * Confidentiality and authenticity of what moves between a site and the coordinator.
 *
 * Updates (site → coordinator): each chunk is encrypted with nacl.secretbox under the
 * X25519 shared key (nacl.box.before) and a fresh random 24-byte nonce, then the site signs
 *   "patchfed-update-chunk-v1" | round | siteId | transferId | index | nonce | sha256(ciphertext)
 * with its Ed25519 key. The receiver checks the claimed context against what it expects and
 * verifies the signature BEFORE touching the ciphertext, so tampered or replayed chunks are
 * refused without running the decryptor on attacker-chosen bytes.
 *
 * Checkpoints (coordinator → sites) are public to the federation but must be authentic:
 * the coordinator signs "patchfed-checkpoint-v1" | experimentId | version | size | sha256(content).
 */
import nacl from 'tweetnacl';
import { PatchFedError } from '../errors.ts';
import { bytesEqual, fromHex, sha256, toHex, transcript } from './encoding.ts';

export const UPDATE_CHUNK_LABEL = 'patchfed-update-chunk-v1';
export const UPDATE_COMMIT_LABEL = 'patchfed-update-commit-v1';
export const CHECKPOINT_LABEL = 'patchfed-checkpoint-v1';
export const SEAL_NONCE_BYTES = nacl.secretbox.nonceLength; // 24
export const SEAL_OVERHEAD_BYTES = nacl.secretbox.overheadLength; // 16
export const SIGNATURE_BYTES = nacl.sign.signatureLength; // 64

/** The X25519 shared key; both sides derive the same one (cache it per peer). */
export function deriveSharedKey(theirBoxPublicKey: Uint8Array, myBoxSecretKey: Uint8Array): Uint8Array {
  return nacl.box.before(theirBoxPublicKey, myBoxSecretKey);
}

/** Where a chunk belongs; every field is covered by the signature. */
export interface ChunkContext {
  round: number;
  siteId: string;
  transferId: string;
  index: number;
}

export interface SealedChunk {
  nonce: Uint8Array;
  ciphertext: Uint8Array;
  signature: Uint8Array;
}

function chunkTranscript(ctx: ChunkContext, nonce: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  return transcript(UPDATE_CHUNK_LABEL, ctx.round, ctx.siteId, ctx.transferId, ctx.index, nonce, sha256(ciphertext));
}

export function sealChunk(plaintext: Uint8Array, ctx: ChunkContext, keys: { sharedKey: Uint8Array; signSecretKey: Uint8Array }): SealedChunk {
  const nonce = nacl.randomBytes(SEAL_NONCE_BYTES);
  const ciphertext = nacl.secretbox(plaintext, nonce, keys.sharedKey);
  const signature = nacl.sign.detached(chunkTranscript(ctx, nonce, ciphertext), keys.signSecretKey);
  return { nonce, ciphertext, signature };
}

function reject(code: string, ctx: ChunkContext, reason: string): PatchFedError {
  return new PatchFedError(code, `Update chunk ${ctx.index} of transfer ${ctx.transferId} from site '${ctx.siteId}' (round ${ctx.round}) rejected: ${reason}.`, { subject: ctx.siteId });
}

/**
 * Checks, in this order: the claimed context equals the expected one (wrong transfer / site /
 * round / index), field lengths, the signature, and only then decrypts.
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
  if (!nacl.sign.detached.verify(chunkTranscript(expected, chunk.nonce, chunk.ciphertext), chunk.signature, keys.senderSignPublicKey)) {
    throw reject('chunk-bad-signature', chunk, 'bad signature (tampered, corrupted, or not signed by this site\'s enrolled key)');
  }
  const plaintext = nacl.secretbox.open(chunk.ciphertext, chunk.nonce, keys.sharedKey);
  if (plaintext === null) throw reject('chunk-decryption-failed', chunk, 'decryption failed (encrypted for a different coordinator key)');
  return plaintext;
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
  return nacl.sign.detached(commitTranscript(c), signSecretKey);
}

export function verifyCommit(c: CommitContext, signature: Uint8Array, senderSignPublicKey: Uint8Array): void {
  if (signature.length !== SIGNATURE_BYTES || !nacl.sign.detached.verify(commitTranscript(c), signature, senderSignPublicKey)) {
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

export function signCheckpoint(content: Uint8Array, meta: { experimentId: string; version: number }, coordinatorSignSecretKey: Uint8Array): SignedCheckpoint {
  const m: CheckpointMeta = { ...meta, size: content.length, sha256: toHex(sha256(content)) };
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
