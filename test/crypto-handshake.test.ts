import { describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { generateKeyPairs, publicKeysOf } from '../shared/crypto/keys.ts';
import { answerChallenge, createChallenge, verifyCoordinatorAccept, verifySiteAuth, type Challenge } from '../shared/crypto/handshake.ts';

const coordinator = generateKeyPairs();
const site = generateKeyPairs();
const siteId = 'hospital-a';

/** The PatchFedError code fn throws, or 'none'. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PatchFedError);
    return (e as PatchFedError).code;
  }
  return 'none';
}

function fullHandshake(challenge: Challenge = createChallenge(coordinator.signPublicKey)) {
  const auth = answerChallenge({ challenge, siteId, siteKeys: site, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey });
  const accept = verifySiteAuth({ challenge, auth, enrolledSiteKeys: publicKeysOf(site), coordinatorKeys: coordinator });
  return { challenge, auth, accept };
}

describe('handshake', () => {
  it('authenticates both sides with fresh randomness per session', () => {
    const a = fullHandshake();
    expect(() =>
      verifyCoordinatorAccept({ ...a, siteKeys: site, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey }),
    ).not.toThrow();
    const b = fullHandshake();
    expect(b.challenge.sessionId).not.toBe(a.challenge.sessionId);
    expect(Buffer.from(b.challenge.nonce)).not.toEqual(Buffer.from(a.challenge.nonce));
    expect(a.challenge.sessionId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('rejects a replayed site answer under a new session nonce', () => {
    const old = fullHandshake();
    const fresh = createChallenge(coordinator.signPublicKey);
    // Attacker replays the recorded answer, relabelled with the new session id.
    const replay = { ...old.auth, sessionId: fresh.sessionId };
    expect(codeOf(() => verifySiteAuth({ challenge: fresh, auth: replay, enrolledSiteKeys: publicKeysOf(site), coordinatorKeys: coordinator }))).toBe('handshake-bad-signature');
    // ...or unchanged: refused for the session mismatch.
    expect(codeOf(() => verifySiteAuth({ challenge: fresh, auth: old.auth, enrolledSiteKeys: publicKeysOf(site), coordinatorKeys: coordinator }))).toBe('handshake-wrong-session');
    // Same session id but a different nonce (the nonce is what the signature binds).
    const sameIdNewNonce = { ...old.challenge, nonce: createChallenge(coordinator.signPublicKey).nonce };
    expect(codeOf(() => verifySiteAuth({ challenge: sameIdNewNonce, auth: old.auth, enrolledSiteKeys: publicKeysOf(site), coordinatorKeys: coordinator }))).toBe('handshake-bad-signature');
  });

  it('rejects a site whose key is not the enrolled one, or that claims another site id', () => {
    const challenge = createChallenge(coordinator.signPublicKey);
    const impostor = generateKeyPairs();
    const auth = answerChallenge({ challenge, siteId, siteKeys: impostor, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey });
    let err: PatchFedError | undefined;
    try {
      verifySiteAuth({ challenge, auth, enrolledSiteKeys: publicKeysOf(site), coordinatorKeys: coordinator });
    } catch (e) {
      err = e as PatchFedError;
    }
    expect(err?.code).toBe('handshake-bad-signature');
    expect(err?.message).toContain(`'${siteId}'`);
    const genuine = answerChallenge({ challenge, siteId, siteKeys: site, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey });
    expect(codeOf(() => verifySiteAuth({ challenge, auth: { ...genuine, siteId: 'hospital-b' }, enrolledSiteKeys: publicKeysOf(site), coordinatorKeys: coordinator }))).toBe('handshake-bad-signature');
    const flipped = new Uint8Array(genuine.signature);
    flipped[0]! ^= 1;
    expect(codeOf(() => verifySiteAuth({ challenge, auth: { ...genuine, signature: flipped }, enrolledSiteKeys: publicKeysOf(site), coordinatorKeys: coordinator }))).toBe('handshake-bad-signature');
  });

  it('site refuses a coordinator that is not the pinned one', () => {
    const rogue = generateKeyPairs();
    // Rogue presents its own key: refused before the site signs anything.
    const challenge = createChallenge(rogue.signPublicKey);
    expect(codeOf(() => answerChallenge({ challenge, siteId, siteKeys: site, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey }))).toBe('coordinator-key-mismatch');
  });

  it('site refuses an accept not signed with the pinned key for this session (impostor or replay)', () => {
    const challenge = createChallenge(coordinator.signPublicKey);
    const auth = answerChallenge({ challenge, siteId, siteKeys: site, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey });
    const check = (accept: { sessionId: string; signature: Uint8Array }) =>
      codeOf(() => verifyCoordinatorAccept({ challenge, auth, accept, siteKeys: site, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey }));

    // An impostor presenting the real coordinator's public key cannot produce its signature.
    expect(check({ sessionId: challenge.sessionId, signature: new Uint8Array(64).fill(7) })).toBe('coordinator-bad-signature');
    // A rogue countersigning the same session with its own key.
    const rogue = generateKeyPairs();
    const rogueChallenge = { ...challenge, coordinatorSignPublicKey: rogue.signPublicKey };
    const authForRogue = answerChallenge({ challenge: rogueChallenge, siteId, siteKeys: site, pinnedCoordinatorSignPublicKey: rogue.signPublicKey });
    const rogueAccept = verifySiteAuth({ challenge: rogueChallenge, auth: authForRogue, enrolledSiteKeys: publicKeysOf(site), coordinatorKeys: rogue });
    expect(check(rogueAccept)).toBe('coordinator-bad-signature');
    // An accept for another session.
    const genuine = verifySiteAuth({ challenge, auth, enrolledSiteKeys: publicKeysOf(site), coordinatorKeys: coordinator });
    expect(check({ ...genuine, sessionId: createChallenge(coordinator.signPublicKey).sessionId })).toBe('handshake-wrong-session');
    expect(check(genuine)).toBe('none');

    // Replay: an impostor reuses a recorded challenge and accept; the site's fresh nonce defeats it.
    const recorded = fullHandshake();
    const newAuth = answerChallenge({ challenge: recorded.challenge, siteId, siteKeys: site, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey });
    expect(
      codeOf(() => verifyCoordinatorAccept({ challenge: recorded.challenge, auth: newAuth, accept: recorded.accept, siteKeys: site, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey })),
    ).toBe('coordinator-bad-signature');
  });
});
