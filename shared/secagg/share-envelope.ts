/**
 * The encrypted bundle in which site u sends site v its two shares — of u's self-mask seed b_u and
 * of u's mask secret key — through the coordinator, which must not read them (Bonawitz et al.
 * 2017, §4 "ShareKeys": c_{u,v} = AE.enc(KA.agree(c_u^SK, c_v^PK), u‖v‖shares)).
 *
 * Key: HKDF-SHA256 of X25519(share secret key of one end, share public key of the other), bound to
 * experiment, round, sender, recipient (in that direction) and both share public keys; cipher:
 * XSalsa20-Poly1305 (nacl.secretbox) with a random nonce. An envelope therefore opens only for its
 * recipient, in its round, as coming from its sender: replaying it into another round, pair or
 * direction fails authentication.
 */
import { randomBytes } from 'node:crypto';
import nacl from 'tweetnacl';
import { PatchFedError } from '../errors.ts';
import { transcript } from '../crypto/encoding.ts';
import { contextFields, deriveKey, x25519SharedSecret, type SecAggContext } from './key-agreement.ts';
import { FIELD_BYTES, shareValueFromBytes, shareValueToBytes, type Share } from './shamir.ts';

const ENVELOPE_SALT = new TextEncoder().encode('patchfed-secagg-share-envelope-salt-v1');
const PLAINTEXT_BYTES = 4 + 2 * FIELD_BYTES;

export interface ShareEnvelope {
  from: string;
  to: string;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

/** What v holds of u's secrets: one share of each, at v's x-coordinate. */
export interface SharePair {
  selfMaskShare: Share;
  keyShare: Share;
}

/** Bytes an envelope adds on the wire beyond the two ids (nonce + ciphertext with its tag). */
export const ENVELOPE_BYTES = nacl.secretbox.nonceLength + PLAINTEXT_BYTES + nacl.secretbox.overheadLength;

function envelopeKey(ctx: SecAggContext, from: { id: string; publicKey: Uint8Array }, to: { id: string; publicKey: Uint8Array }, sharedSecret: Uint8Array): Uint8Array {
  const info = transcript('patchfed-secagg-share-envelope-v1', ...contextFields(ctx), from.id, to.id, from.publicKey, to.publicKey);
  return deriveKey(sharedSecret, info, nacl.secretbox.keyLength, ENVELOPE_SALT);
}

export function sealShares(
  ctx: SecAggContext,
  sender: { id: string; shareSecretKey: Uint8Array; sharePublicKey: Uint8Array },
  recipient: { id: string; sharePublicKey: Uint8Array },
  shares: SharePair,
): ShareEnvelope {
  if (shares.selfMaskShare.x !== shares.keyShare.x) throw new PatchFedError('secagg-envelope', 'Secure aggregation: the two shares of an envelope must be for the same participant.');
  const shared = x25519SharedSecret(sender.shareSecretKey, recipient.sharePublicKey, recipient.id);
  const key = envelopeKey(ctx, { id: sender.id, publicKey: sender.sharePublicKey }, { id: recipient.id, publicKey: recipient.sharePublicKey }, shared);
  const plaintext = new Uint8Array(PLAINTEXT_BYTES);
  new DataView(plaintext.buffer).setUint32(0, shares.selfMaskShare.x, false);
  plaintext.set(shareValueToBytes(shares.selfMaskShare.y), 4);
  plaintext.set(shareValueToBytes(shares.keyShare.y), 4 + FIELD_BYTES);
  const nonce = new Uint8Array(randomBytes(nacl.secretbox.nonceLength));
  return { from: sender.id, to: recipient.id, nonce, ciphertext: nacl.secretbox(plaintext, nonce, key) };
}

/** Opens an envelope addressed to `recipient`; a clean error when it is not or was tampered with. */
export function openShares(
  ctx: SecAggContext,
  recipient: { id: string; shareSecretKey: Uint8Array; sharePublicKey: Uint8Array; x: number },
  sender: { id: string; sharePublicKey: Uint8Array },
  envelope: ShareEnvelope,
): SharePair {
  if (envelope.to !== recipient.id || envelope.from !== sender.id) {
    throw new PatchFedError('secagg-envelope', `Secure aggregation: an envelope from '${envelope.from}' to '${envelope.to}' was delivered to '${recipient.id}' as coming from '${sender.id}'.`, { subject: envelope.from });
  }
  if (!(envelope.nonce instanceof Uint8Array) || envelope.nonce.length !== nacl.secretbox.nonceLength || !(envelope.ciphertext instanceof Uint8Array)) {
    throw new PatchFedError('secagg-envelope', `Secure aggregation: the share envelope from '${sender.id}' is malformed.`, { subject: sender.id });
  }
  const shared = x25519SharedSecret(recipient.shareSecretKey, sender.sharePublicKey, sender.id);
  const key = envelopeKey(ctx, { id: sender.id, publicKey: sender.sharePublicKey }, { id: recipient.id, publicKey: recipient.sharePublicKey }, shared);
  const plaintext = nacl.secretbox.open(envelope.ciphertext, envelope.nonce, key);
  if (!plaintext || plaintext.length !== PLAINTEXT_BYTES) {
    throw new PatchFedError('secagg-envelope', `Secure aggregation: the share envelope from '${sender.id}' does not authenticate for this round and recipient.`, { subject: sender.id });
  }
  const x = new DataView(plaintext.buffer, plaintext.byteOffset).getUint32(0, false);
  if (x !== recipient.x) {
    throw new PatchFedError('secagg-envelope', `Secure aggregation: the shares from '${sender.id}' are for participant ${x}, not ${recipient.x}.`, { subject: sender.id });
  }
  return {
    selfMaskShare: { x, y: shareValueFromBytes(plaintext.subarray(4, 4 + FIELD_BYTES), `self-mask share from '${sender.id}'`) },
    keyShare: { x, y: shareValueFromBytes(plaintext.subarray(4 + FIELD_BYTES), `key share from '${sender.id}'`) },
  };
}
