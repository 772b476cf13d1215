/**
 * The handshake of crypto/handshake.ts run over a transport: `authenticateSite` on the site,
 * `acceptSiteHandshake` on the coordinator (one call per connection). Only after
 * onAuthenticated should the coordinator attach anything else (e.g. UpdateReceiver) to the socket.
 */
import { PatchFedError, errorMessage } from '../errors.ts';
import { answerChallenge, createChallenge, verifyCoordinatorAccept, verifySiteAuth, type Challenge, type SiteAuth } from '../crypto/handshake.ts';
import type { KeyPairs, PublicKeys } from '../crypto/keys.ts';
import { PROTOCOL_VERSION } from './limits.ts';
import { encodeMessage, errorReply, makeReply, parseMessage, parseReply, type Message, type Reply, type RequestType } from './messages.ts';
import type { HandlerTransport, RequestTransport } from './transport.ts';

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 15_000;

async function ask<R extends RequestType>(transport: RequestTransport, type: R, data: Message<R>, timeoutMs: number): Promise<Reply<R>> {
  let raw: unknown;
  try {
    raw = await transport.request(type, encodeMessage(type, data), timeoutMs);
  } catch (e) {
    throw new PatchFedError('handshake-interrupted', `Handshake with the coordinator interrupted during '${type}': ${errorMessage(e)}.`, { subject: 'coordinator', cause: e });
  }
  return parseReply(type, raw);
}

function refused(reply: { type: string; payload: unknown }, step: string): PatchFedError {
  const p = reply.payload as { code: string; reason?: string; message?: string };
  return new PatchFedError(p.code === 'handshake-interrupted' ? 'auth-failed' : p.code, `The coordinator refused ${step}: ${p.reason ?? p.message}`, { subject: 'coordinator' });
}

/** Site side: proves the site's identity and checks the coordinator's. Resolves with the session id. */
export async function authenticateSite(
  transport: RequestTransport,
  args: { siteId: string; siteKeys: KeyPairs; pinnedCoordinatorSignPublicKey: Uint8Array; agentVersion: string; timeoutMs?: number },
): Promise<{ sessionId: string }> {
  const timeoutMs = args.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const hello = await ask(transport, 'hello', { protocolVersion: PROTOCOL_VERSION, siteId: args.siteId, agentVersion: args.agentVersion }, timeoutMs);
  if (hello.type !== 'challenge') throw refused(hello, `site '${args.siteId}'`);
  const c = hello.payload as Message<'challenge'>;
  if (c.protocolVersion !== PROTOCOL_VERSION) {
    throw new PatchFedError('protocol-version-mismatch', `The coordinator speaks protocol version ${c.protocolVersion}; this site agent speaks ${PROTOCOL_VERSION}. Run the same PatchFed release on both sides.`, { subject: 'coordinator' });
  }
  const challenge: Challenge = { sessionId: c.sessionId, nonce: c.nonce, coordinatorSignPublicKey: c.coordinatorSignPublicKey };
  const auth = answerChallenge({ challenge, siteId: args.siteId, siteKeys: args.siteKeys, pinnedCoordinatorSignPublicKey: args.pinnedCoordinatorSignPublicKey });
  const reply = await ask(transport, 'auth', auth, timeoutMs);
  if (reply.type !== 'auth-ok') throw refused(reply, `the authentication of site '${args.siteId}'`);
  const ok = reply.payload as Message<'auth-ok'>;
  verifyCoordinatorAccept({ challenge, auth, accept: ok, siteKeys: args.siteKeys, pinnedCoordinatorSignPublicKey: args.pinnedCoordinatorSignPublicKey });
  return { sessionId: challenge.sessionId };
}

export interface AuthenticatedSite {
  siteId: string;
  sessionId: string;
  siteKeys: PublicKeys;
}

/**
 * Coordinator side, for one connection: answers hello with a fresh challenge and auth with
 * auth-ok (after verifying against the enrolled key) or auth-fail. Each challenge is usable once.
 */
export function acceptSiteHandshake(
  handlers: HandlerTransport,
  args: {
    coordinatorKeys: KeyPairs;
    /** The keys a site enrolled with, or undefined if the site is unknown. */
    enrolledKeys: (siteId: string) => PublicKeys | undefined;
    onAuthenticated: (site: AuthenticatedSite) => void;
    onRejected?: (error: PatchFedError) => void;
  },
): () => void {
  let pending: { challenge: Challenge; siteId: string; keys: PublicKeys } | null = null;
  let authenticated = false;
  const fail = (code: string, reason: string, siteId?: string) => {
    const error = new PatchFedError(code, reason, { subject: siteId });
    args.onRejected?.(error);
    return makeReply('auth-fail', { code, reason });
  };
  const offHello = handlers.handle('hello', (payload) => {
    if (authenticated) return errorReply({ code: 'already-authenticated', message: 'This connection is already authenticated.' });
    const hello = parseMessage('hello', payload);
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      return fail('protocol-version-mismatch', `Site '${hello.siteId}' speaks protocol version ${hello.protocolVersion}; this coordinator speaks ${PROTOCOL_VERSION}. Run the same PatchFed release on both sides.`, hello.siteId);
    }
    const keys = args.enrolledKeys(hello.siteId);
    if (!keys) return fail('unknown-site', `Site '${hello.siteId}' is not enrolled with this coordinator.`, hello.siteId);
    const challenge = createChallenge(args.coordinatorKeys.signPublicKey);
    pending = { challenge, siteId: hello.siteId, keys };
    return makeReply('challenge', { protocolVersion: PROTOCOL_VERSION, ...challenge });
  });
  const offAuth = handlers.handle('auth', (payload) => {
    if (authenticated) return errorReply({ code: 'already-authenticated', message: 'This connection is already authenticated.' });
    const auth: SiteAuth = parseMessage('auth', payload);
    const current = pending;
    pending = null; // one answer per challenge
    if (!current) return fail('no-challenge', `Site '${auth.siteId}' sent auth without a pending challenge (send hello first).`, auth.siteId);
    if (auth.siteId !== current.siteId) return fail('handshake-wrong-site', `Auth for site '${auth.siteId}' on a connection that said hello as '${current.siteId}'.`, auth.siteId);
    try {
      const accept = verifySiteAuth({ challenge: current.challenge, auth, enrolledSiteKeys: current.keys, coordinatorKeys: args.coordinatorKeys });
      authenticated = true;
      args.onAuthenticated({ siteId: auth.siteId, sessionId: accept.sessionId, siteKeys: current.keys });
      return makeReply('auth-ok', accept);
    } catch (e) {
      if (e instanceof PatchFedError) return fail(e.code, e.message, auth.siteId);
      throw e;
    }
  });
  return () => {
    offHello();
    offAuth();
  };
}
