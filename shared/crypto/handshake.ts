/**
 * Mutual authentication when a site connects, as pure functions (no I/O):
 *
 *   coordinator → site  challenge {sessionId, nonce, coordinatorSignPublicKey}   (fresh per connection)
 *   site → coordinator  auth      {sessionId, siteId, siteNonce, signature}
 *                       signature = Ed25519_site(T("site"))
 *   coordinator → site  accept    {sessionId, signature = Ed25519_coordinator(T("coordinator") | site signature)}
 *
 *   T(role) = "patchfed-hello-v1" | role | sessionId | nonce | siteId | siteNonce
 *             | site box key | site sign key | coordinator sign key
 *
 * The coordinator checks the site's signature against the site's ENROLLED keys, so a stolen
 * old signature is useless under a new session nonce. The site refuses a challenge whose key
 * is not its PINNED coordinator key and then checks the coordinator's signature; the site's own
 * random siteNonce makes a recorded accept from an earlier session useless to an impostor.
 */
import nacl from 'tweetnacl';
import { PatchFedError } from '../errors.ts';
import { bytesEqual, toHex, transcript } from './encoding.ts';
import { fingerprint, type KeyPairs, type PublicKeys } from './keys.ts';

export const HANDSHAKE_LABEL = 'patchfed-hello-v1';
export const SESSION_ID_BYTES = 16;
export const HANDSHAKE_NONCE_BYTES = 32;

export interface Challenge {
  /** Hex of 16 random bytes; also used to name the session in logs. */
  sessionId: string;
  nonce: Uint8Array;
  coordinatorSignPublicKey: Uint8Array;
}

export interface SiteAuth {
  sessionId: string;
  siteId: string;
  siteNonce: Uint8Array;
  signature: Uint8Array;
}

export interface CoordinatorAccept {
  sessionId: string;
  signature: Uint8Array;
}

export function createChallenge(coordinatorSignPublicKey: Uint8Array): Challenge {
  return {
    sessionId: toHex(nacl.randomBytes(SESSION_ID_BYTES)),
    nonce: nacl.randomBytes(HANDSHAKE_NONCE_BYTES),
    coordinatorSignPublicKey,
  };
}

function handshakeTranscript(role: 'site' | 'coordinator', challenge: Challenge, siteId: string, siteNonce: Uint8Array, site: PublicKeys): Uint8Array {
  return transcript(
    HANDSHAKE_LABEL,
    role,
    challenge.sessionId,
    challenge.nonce,
    siteId,
    siteNonce,
    site.boxPublicKey,
    site.signPublicKey,
    challenge.coordinatorSignPublicKey,
  );
}

function checkChallengeShape(challenge: Challenge): void {
  if (challenge.nonce.length !== HANDSHAKE_NONCE_BYTES || challenge.coordinatorSignPublicKey.length !== nacl.sign.publicKeyLength) {
    throw new PatchFedError('handshake-malformed', 'Handshake challenge has a nonce or key of the wrong length.');
  }
}

/** Site side: refuse an unexpected coordinator, else sign the transcript with the site key. */
export function answerChallenge(args: {
  challenge: Challenge;
  siteId: string;
  siteKeys: KeyPairs;
  pinnedCoordinatorSignPublicKey: Uint8Array;
}): SiteAuth {
  const { challenge, siteId, siteKeys } = args;
  checkChallengeShape(challenge);
  if (!bytesEqual(challenge.coordinatorSignPublicKey, args.pinnedCoordinatorSignPublicKey)) {
    throw new PatchFedError(
      'coordinator-key-mismatch',
      `The coordinator presented a signing key that is not the pinned coordinator key; refusing to authenticate (possible impostor, or the pinned coordinator .pub is outdated).`,
      { subject: 'coordinator' },
    );
  }
  const siteNonce = nacl.randomBytes(HANDSHAKE_NONCE_BYTES);
  const signature = nacl.sign.detached(handshakeTranscript('site', challenge, siteId, siteNonce, siteKeys), siteKeys.signSecretKey);
  return { sessionId: challenge.sessionId, siteId, siteNonce, signature };
}

/**
 * Coordinator side: verify the site against the keys it enrolled with, then countersign.
 * `challenge` must be the one THIS connection was sent (never one taken from the message).
 */
export function verifySiteAuth(args: {
  challenge: Challenge;
  auth: SiteAuth;
  enrolledSiteKeys: PublicKeys;
  coordinatorKeys: KeyPairs;
}): CoordinatorAccept {
  const { challenge, auth, enrolledSiteKeys, coordinatorKeys } = args;
  checkChallengeShape(challenge);
  if (!bytesEqual(challenge.coordinatorSignPublicKey, coordinatorKeys.signPublicKey)) {
    throw new Error('verifySiteAuth: challenge was not issued with this coordinator key'); // programming error
  }
  if (auth.sessionId !== challenge.sessionId) {
    throw new PatchFedError('handshake-wrong-session', `Site '${auth.siteId}' answered session ${auth.sessionId}, but this connection's session is ${challenge.sessionId} (replayed or stale answer).`, { subject: auth.siteId });
  }
  if (auth.siteNonce.length !== HANDSHAKE_NONCE_BYTES || auth.signature.length !== nacl.sign.signatureLength) {
    throw new PatchFedError('handshake-malformed', `Site '${auth.siteId}' sent a handshake answer with a nonce or signature of the wrong length.`, { subject: auth.siteId });
  }
  const siteTranscript = handshakeTranscript('site', challenge, auth.siteId, auth.siteNonce, enrolledSiteKeys);
  if (!nacl.sign.detached.verify(siteTranscript, auth.signature, enrolledSiteKeys.signPublicKey)) {
    throw new PatchFedError(
      'handshake-bad-signature',
      `Site '${auth.siteId}' failed authentication: its signature does not verify against the enrolled key ${fingerprint(enrolledSiteKeys)} for this session (wrong key, or a replayed handshake).`,
      { subject: auth.siteId },
    );
  }
  const coordinatorTranscript = coordinatorSigned(challenge, auth, enrolledSiteKeys);
  return { sessionId: challenge.sessionId, signature: nacl.sign.detached(coordinatorTranscript, coordinatorKeys.signSecretKey) };
}

function coordinatorSigned(challenge: Challenge, auth: SiteAuth, site: PublicKeys): Uint8Array {
  const t = handshakeTranscript('coordinator', challenge, auth.siteId, auth.siteNonce, site);
  const out = new Uint8Array(t.length + auth.signature.length);
  out.set(t);
  out.set(auth.signature, t.length);
  return out;
}

/** Site side: the coordinator proved it holds the pinned key, for this very session. */
export function verifyCoordinatorAccept(args: {
  challenge: Challenge;
  auth: SiteAuth;
  accept: CoordinatorAccept;
  siteKeys: PublicKeys;
  pinnedCoordinatorSignPublicKey: Uint8Array;
}): void {
  const { challenge, auth, accept, siteKeys, pinnedCoordinatorSignPublicKey } = args;
  if (accept.sessionId !== challenge.sessionId || auth.sessionId !== challenge.sessionId) {
    throw new PatchFedError('handshake-wrong-session', `The coordinator accepted session ${accept.sessionId}, but this connection's session is ${challenge.sessionId}.`, { subject: 'coordinator' });
  }
  const ok =
    accept.signature.length === nacl.sign.signatureLength &&
    nacl.sign.detached.verify(coordinatorSigned(challenge, auth, siteKeys), accept.signature, pinnedCoordinatorSignPublicKey);
  if (!ok) {
    throw new PatchFedError(
      'coordinator-bad-signature',
      'The coordinator could not prove it holds the pinned coordinator key for this session; refusing to continue (possible impostor or replay).',
      { subject: 'coordinator' },
    );
  }
}
