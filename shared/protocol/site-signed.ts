/**
 * Site → coordinator messages that change what the coordinator does with a round (today: a
 * `round-decline`, a `final-evaluation`) are signed by the site over the session they are sent on, like the
 * coordinator's signed control messages the other way (signed-control.ts): on a plaintext
 * deployment an on-path attacker can neither forge a decline (to push a site out of rounds) nor
 * replay one from an earlier session.
 *
 * Signed bytes: transcript("patchfed-<type>-v1", sessionId, canonicalJson(message without signature)).
 */
import nacl from 'tweetnacl';
import { PatchFedError } from '../errors.ts';
import { canonicalJson, transcript } from '../crypto/encoding.ts';
import { SIGNATURE_BYTES } from '../crypto/seal.ts';
import type { Message } from './messages.ts';

export const SITE_SIGNED_TYPES = ['round-decline', 'final-evaluation'] as const;
export type SiteSignedType = (typeof SITE_SIGNED_TYPES)[number];
export type SiteSignedBody<T extends SiteSignedType> = Omit<Message<T>, 'signature'>;

function signingBytes(type: SiteSignedType, sessionId: string, body: object): Uint8Array {
  return transcript(`patchfed-${type}-v1`, sessionId, canonicalJson(body));
}

export function signBySite<T extends SiteSignedType>(type: T, body: SiteSignedBody<T>, sessionId: string, siteSignSecretKey: Uint8Array): Message<T> {
  const signature = nacl.sign.detached(signingBytes(type, sessionId, body), siteSignSecretKey);
  return { ...body, signature } as Message<T>;
}

/** Throws 'site-bad-signature' unless `message` was signed by the site's enrolled key for this session. */
export function verifySiteSigned<T extends SiteSignedType>(type: T, message: Message<T>, sessionId: string, siteSignPublicKey: Uint8Array): SiteSignedBody<T> {
  const { signature, ...body } = message;
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_BYTES || !nacl.sign.detached.verify(signingBytes(type, sessionId, body), signature, siteSignPublicKey)) {
    throw new PatchFedError('site-bad-signature', `'${type}' is not signed by the site's enrolled key for this session (forged, altered or replayed).`, { subject: type });
  }
  return body as SiteSignedBody<T>;
}
