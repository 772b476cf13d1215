/**
 * Per-round keys and the seeds derived from them (Bonawitz et al. 2017, §4 "AdvertiseKeys" and
 * "MaskedInputCollection"; Bell et al. 2020 keep the same structure on a sparser graph).
 *
 * Each site makes two fresh X25519 key pairs per round: the *mask* pair (s_u in the paper), whose
 * Diffie–Hellman secret with a peer seeds their pairwise mask, and the *share* pair (c_u), which
 * encrypts the Shamir shares the site sends its peers through the coordinator. They are separate
 * because a dropped site's mask secret key is reconstructed by the coordinator: had it also
 * encrypted shares, the coordinator could then read them (Bonawitz et al. 2017, §4, footnote on
 * the two key pairs).
 *
 * Pairwise seed s_uv = HKDF-SHA256(X25519(sk_u, pk_v), info = experiment, round, both ids and both
 * public keys in id order): both ends derive the same 32 bytes, bound to this round and this pair,
 * so a seed can never be replayed into another round or pair. Self-mask seeds b_u are 32 fresh
 * random bytes per site and round.
 */
import { hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import nacl from 'tweetnacl';
import { PatchFedError } from '../errors.ts';
import { transcript } from '../crypto/encoding.ts';
import { MASK_SEED_BYTES } from './mask-prg.ts';

export const X25519_KEY_BYTES = 32;
const ZERO_KEY = new Uint8Array(X25519_KEY_BYTES);
const PAIRWISE_SALT = new TextEncoder().encode('patchfed-secagg-pairwise-salt-v1');

/** What binds every derived key to one aggregation: the experiment, the round and (in a federation) its attempt. */
export interface SecAggContext {
  experiment: string;
  round: number;
  /** The round attempt; a retried round runs a new aggregation with fresh keys. */
  attempt?: number;
}

/** The context's fields for a transcript (the attempt only when there is one, so older contexts keep their bytes). */
export function contextFields(ctx: SecAggContext): (string | number)[] {
  return ctx.attempt === undefined ? [ctx.experiment, ctx.round] : [ctx.experiment, ctx.round, ctx.attempt];
}

export interface X25519KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export function generateX25519KeyPair(): X25519KeyPair {
  const kp = nacl.box.keyPair();
  return { publicKey: kp.publicKey, secretKey: kp.secretKey };
}

/** The public key of a secret key (to check a reconstructed secret against the advertised key). */
export function x25519PublicKeyOf(secretKey: Uint8Array): Uint8Array {
  checkKey(secretKey, 'X25519 secret key');
  return nacl.scalarMult.base(secretKey);
}

export function newSelfMaskSeed(): Uint8Array {
  return new Uint8Array(randomBytes(MASK_SEED_BYTES));
}

/**
 * The raw X25519 shared secret, refusing an all-zero result: that comes from a low-order peer key,
 * which would make the "secret" known to everyone (RFC 7748 §6.1). Compared in constant time.
 */
export function x25519SharedSecret(secretKey: Uint8Array, peerPublicKey: Uint8Array, peer: string): Uint8Array {
  checkKey(secretKey, 'X25519 secret key');
  checkKey(peerPublicKey, `public key of '${peer}'`);
  const shared = nacl.scalarMult(secretKey, peerPublicKey);
  if (timingSafeEqual(shared, ZERO_KEY)) {
    throw new PatchFedError('secagg-bad-key', `Secure aggregation: the public key of '${peer}' is a low-order point; refusing it.`, { subject: peer });
  }
  return shared;
}

/** HKDF-SHA256 (RFC 5869) of a shared secret into `bytes` bytes, bound to `info`. */
export function deriveKey(sharedSecret: Uint8Array, info: Uint8Array, bytes = 32, salt: Uint8Array = PAIRWISE_SALT): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', sharedSecret, salt, info, bytes));
}

/**
 * s_uv: the pairwise mask seed of sites `ownId` and `peerId` (same bytes on both ends, and for the
 * coordinator when it recomputes it from a dropped site's reconstructed secret key).
 */
export function pairwiseMaskSeed(
  ctx: SecAggContext,
  own: { id: string; secretKey: Uint8Array; publicKey: Uint8Array },
  peer: { id: string; publicKey: Uint8Array },
): Uint8Array {
  if (own.id === peer.id) throw new PatchFedError('secagg-bad-key', `Secure aggregation: site '${own.id}' cannot share a pairwise mask with itself.`, { subject: own.id });
  const shared = x25519SharedSecret(own.secretKey, peer.publicKey, peer.id);
  const [a, b] = own.id < peer.id ? [own, peer] : [peer, own];
  const info = transcript('patchfed-secagg-pairwise-v1', ...contextFields(ctx), a.id, b.id, a.publicKey, b.publicKey);
  return deriveKey(shared, info, MASK_SEED_BYTES);
}

function checkKey(key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length !== X25519_KEY_BYTES) {
    throw new PatchFedError('secagg-bad-key', `Secure aggregation: ${what} must be ${X25519_KEY_BYTES} bytes.`, { subject: what });
  }
}
