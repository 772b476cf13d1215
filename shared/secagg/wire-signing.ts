/**
 * Signatures of a site's secure-aggregation requests (secagg-keys, secagg-shares, secagg-reveal):
 * Ed25519 with the site's enrolled signing key, like an update commit, over
 *
 *   transcript("patchfed-<type>-v1", experimentId, siteId, canonicalJson(message without signature))
 *
 * The message carries round and attempt, so a signed request is valid for one site, one
 * experiment and one round attempt only: replayed into another attempt (whose keys are fresh
 * anyway) or sent for another site it fails. Binary fields enter canonicalJson as the base64 they
 * travel as. The coordinator's messages the other way are signed control messages
 * (shared/protocol/signed-control.ts), bound to the session as well.
 */
import nacl from 'tweetnacl';
import { PatchFedError } from '../errors.ts';
import { canonicalJson, transcript } from '../crypto/encoding.ts';
import { SIGNATURE_BYTES } from '../crypto/seal.ts';
import type { Message } from '../protocol/messages.ts';

export const SECAGG_SITE_REQUESTS = ['secagg-keys', 'secagg-shares', 'secagg-reveal'] as const;
export type SecAggSiteRequest = (typeof SECAGG_SITE_REQUESTS)[number];
export type SecAggRequestBody<T extends SecAggSiteRequest> = Omit<Message<T>, 'signature'>;

/** Who signs: the site, in the experiment. */
export interface SecAggSigner {
  experimentId: string;
  siteId: string;
}

function signingBytes(type: SecAggSiteRequest, who: SecAggSigner, body: object): Uint8Array {
  return transcript(`patchfed-${type}-v1`, who.experimentId, who.siteId, canonicalJson(body));
}

export function signSecAggRequest<T extends SecAggSiteRequest>(type: T, body: SecAggRequestBody<T>, who: SecAggSigner, signSecretKey: Uint8Array): Message<T> {
  return { ...body, signature: nacl.sign.detached(signingBytes(type, who, body), signSecretKey) } as Message<T>;
}

/** Throws 'secagg-bad-signature' unless the site's enrolled key signed `message` for this experiment. */
export function verifySecAggRequest<T extends SecAggSiteRequest>(type: T, message: Message<T>, who: SecAggSigner, signPublicKey: Uint8Array): SecAggRequestBody<T> {
  const { signature, ...body } = message;
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_BYTES || !nacl.sign.detached.verify(signingBytes(type, who, body), signature, signPublicKey)) {
    throw new PatchFedError('secagg-bad-signature', `'${type}' from site '${who.siteId}' is not signed by its enrolled key for experiment '${who.experimentId}' (forged, altered or replayed).`, {
      subject: who.siteId,
    });
  }
  return body as SecAggRequestBody<T>;
}
