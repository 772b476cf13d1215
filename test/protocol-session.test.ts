import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../shared/protocol/limits.ts';
import { PatchFedError } from '../shared/errors.ts';
import { generateKeyPairs, publicKeysOf, type KeyPairs } from '../shared/crypto/keys.ts';
import { encodeMessage, parseReply } from '../shared/protocol/messages.ts';
import { acceptSiteHandshake, authenticateSite, type AuthenticatedSite } from '../shared/protocol/session.ts';
import { MemoryLink } from '../shared/protocol/transport.ts';

const coordinator = generateKeyPairs();
const siteA = generateKeyPairs();

function coordinatorConnection(coordinatorKeys: KeyPairs = coordinator) {
  const link = new MemoryLink();
  const authenticated: AuthenticatedSite[] = [];
  const rejected: PatchFedError[] = [];
  acceptSiteHandshake(link.server, {
    coordinatorKeys,
    enrolledKeys: (id) => (id === 'hospital-a' ? publicKeysOf(siteA) : undefined),
    onAuthenticated: (s) => authenticated.push(s),
    onRejected: (e) => rejected.push(e),
  });
  return { link, authenticated, rejected };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PatchFedError);
    return (e as PatchFedError).code;
  }
  return 'none';
}

const args = { siteId: 'hospital-a', siteKeys: siteA, pinnedCoordinatorSignPublicKey: coordinator.signPublicKey, agentVersion: '0.1.0' };

describe('handshake over a transport', () => {
  it('authenticates an enrolled site and tells the coordinator which site it is', async () => {
    const c = coordinatorConnection();
    const { sessionId } = await authenticateSite(c.link.client, args);
    expect(c.authenticated).toHaveLength(1);
    expect(c.authenticated[0]).toMatchObject({ siteId: 'hospital-a', sessionId });
    // A second hello on an authenticated connection is refused.
    const again = parseReply('hello', await c.link.client.request('hello', encodeMessage('hello', { protocolVersion: PROTOCOL_VERSION, siteId: 'hospital-a', agentVersion: '1' }), 1000));
    expect(again).toMatchObject({ type: 'error', payload: { code: 'already-authenticated' } });
  });

  it('refuses unknown sites and sites holding the wrong key', async () => {
    const c = coordinatorConnection();
    expect(await codeOf(authenticateSite(c.link.client, { ...args, siteId: 'hospital-x' }))).toBe('unknown-site');
    expect(await codeOf(authenticateSite(c.link.client, { ...args, siteKeys: generateKeyPairs() }))).toBe('handshake-bad-signature');
    expect(c.authenticated).toHaveLength(0);
    expect(c.rejected.map((e) => e.code)).toEqual(['unknown-site', 'handshake-bad-signature']);
  });

  it('site refuses a coordinator that does not hold the pinned key', async () => {
    const rogue = coordinatorConnection(generateKeyPairs());
    expect(await codeOf(authenticateSite(rogue.link.client, args))).toBe('coordinator-key-mismatch');
    expect(rogue.authenticated).toHaveLength(0);
  });

  it('refuses a recorded auth replayed on a new connection, and auth without a challenge', async () => {
    const first = coordinatorConnection();
    let recorded: unknown;
    first.link.tamper = (type, p) => (type === 'auth' && (recorded = p), p);
    await authenticateSite(first.link.client, args);
    const second = coordinatorConnection();
    // No hello on this connection yet: nothing to answer.
    expect(parseReply('auth', await second.link.client.request('auth', recorded, 1000))).toMatchObject({ type: 'auth-fail', payload: { code: 'no-challenge' } });
    // After a fresh hello, the old answer is for the wrong session.
    await second.link.client.request('hello', encodeMessage('hello', { protocolVersion: PROTOCOL_VERSION, siteId: 'hospital-a', agentVersion: '1' }), 1000);
    expect(parseReply('auth', await second.link.client.request('auth', recorded, 1000))).toMatchObject({ type: 'auth-fail', payload: { code: 'handshake-wrong-session' } });
    expect(second.authenticated).toHaveLength(0);
  });

  it('names both protocol versions when a site and the coordinator differ', async () => {
    const c = coordinatorConnection();
    const reply = parseReply('hello', await c.link.client.request('hello', encodeMessage('hello', { protocolVersion: PROTOCOL_VERSION + 1, siteId: 'hospital-a', agentVersion: '9' }), 1000));
    expect(reply).toMatchObject({ type: 'auth-fail', payload: { code: 'protocol-version-mismatch' } });
    expect((reply.payload as { reason: string }).reason).toMatch(new RegExp(`speaks protocol version ${PROTOCOL_VERSION + 1}; this coordinator speaks ${PROTOCOL_VERSION}`));
    // The other way round: an older coordinator answers with its own version and the site says so.
    const old = coordinatorConnection();
    old.link.onDelivered = (type, reply) => {
      if (type === 'hello' && reply.type === 'challenge') (reply.payload as { protocolVersion: number }).protocolVersion = PROTOCOL_VERSION - 1;
    };
    await expect(authenticateSite(old.link.client, args)).rejects.toMatchObject({ code: 'protocol-version-mismatch' });
  });
});
